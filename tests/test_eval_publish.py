"""The publish-path benchmark's own parts: the long posts it sends, its table."""

from __future__ import annotations

import random

from eval.publish import Round, long_texts, table


def test_long_posts_are_real_posts_joined_up_to_the_length() -> None:
    texts = ["甲" * 7, "乙" * 11, "丙" * 13]
    made = long_texts(texts, 5, 60, random.Random(1))
    assert len(made) == 5 and all(len(t) == 60 for t in made)
    for text in made:
        *whole, last = text.split("\n")
        assert all(part in texts for part in whole)
        assert any(t.startswith(last) for t in texts)  # the last one cut at the length
    assert len(set(made)) > 1


def test_the_table_has_a_row_per_server_with_the_median() -> None:
    rounds = {"this tree": [Round(40, 7000), Round(60, 7100), Round(50, 6900)]}
    header, _, row = table(rounds).splitlines()
    assert "single post ms: median" in header
    assert [c.strip() for c in row.split("|")[1:-1]] == [
        "this tree",
        "3",
        "50",
        "40",
        "60",
        "7000",
        "6900",
        "7100",
    ]
