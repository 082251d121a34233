"""The ids a run has seen: every repeat found, in batches of every size, through the merges of
the sorted runs that hold them."""

from __future__ import annotations

import random

from service.batch.duplicates import SeenIds


def test_every_repeat_is_found_within_a_batch_and_across_batches() -> None:
    rng = random.Random(7)
    seen, reference = SeenIds(), set()
    for size in [0, 1, 3000, *(rng.randrange(200) for _ in range(300))]:
        ids = [f"p{rng.randrange(20_000)}" for _ in range(size)]
        expected = []
        for i, post_id in enumerate(ids):
            if post_id in reference:
                expected.append(i)
            reference.add(post_id)
        assert seen.add(ids) == expected


def test_a_batch_of_ids_seen_before_only_is_all_repeats() -> None:
    seen = SeenIds()
    assert seen.add(["a", "b", "a"]) == [2]
    assert seen.add(["b", "a", "b"]) == [0, 1, 2]
    assert seen.add(["c"]) == []
