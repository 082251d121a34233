"""``python -m eval.engagement`` on a small made-up Weibo16: which cascades its table counts."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from eval import engagement
from service.settings import get_settings
from training import data

PUBLISHED = 1_300_000_000


@pytest.fixture
def corpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Three source posts: a small account's post whose 4,000 reposts all came in its first
    hour, with 5,000 comments, a large account's that spread as far over a day, and one whose
    150 reposts were made by ten accounts, with 5,000 comments from its 100,000 followers."""
    posts = [
        ("burst", "small", 10, 4_000, 5_000),
        ("spread", "large", 1_000_000, 4_000, 0),
        ("ring", "ring", 100_000, 150, 5_000),
    ]
    reposts = [
        *(("burst", f"u{n}", 60 + n % 600) for n in range(4_000)),
        *(("spread", f"v{n}", 20 * n) for n in range(4_000)),
        *(("ring", f"w{n % 10}", 60 * n) for n in range(150)),
    ]
    folder = tmp_path / "data"
    (folder / "weibo16").mkdir(parents=True)
    with open(folder / data.WEIBO16_POSTS, "w", encoding="utf-8") as out:
        for post_id, account, followers, shared, comments in posts:
            line = {
                "id": post_id,
                "text": "帖子",
                "label": 0,
                "created_at": PUBLISHED,
                "account": {"id": account, "followers": followers},
                "reposts": shared,
                "comments": comments,
            }
            out.write(json.dumps(line) + "\n")
    with gzip.open(folder / data.WEIBO16_REPOSTS, "wt", encoding="utf-8") as out:
        for n, (event, account, after) in enumerate(reposts):
            repost = {"id": str(n), "event": event, "parent": event, "account": account}
            out.write(json.dumps({**repost, "text": "转发微博", "created_at": PUBLISHED + after}))
            out.write("\n")
    monkeypatch.setenv("QINGLANG_DATA_DIR", str(folder))
    get_settings.cache_clear()
    yield folder
    get_settings.cache_clear()


def test_the_table_counts_the_posts_each_check_flags(
    corpus: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert engagement.main([]) == 0
    rows = {
        tuple(cell.strip() for cell in line.split("|")[1:4]): line.split("|")[4].strip()
        for line in capsys.readouterr().out.splitlines()
        if line.startswith("| jump") or line.startswith("| per_reposter")
    }
    # the burst, from the small account, at every cadence; the large account's spread never
    assert rows[("jump", "reposts", "hourly")] == "1 of 3 (33.33%)"
    assert rows[("jump", "reposts", "once (the final count)")] == "1 of 3 (33.33%)"
    assert rows[("jump", "comments", "once (the final count)")] == "1 of 3 (33.33%)"
    assert rows[("jump", "reposts", "daily")] == "1 of 3 (33.33%)"
    assert rows[("per_reposter", "reposts, reposters", "hourly")] == "1 of 3 (33.33%)"
