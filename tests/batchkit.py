"""Stand-in scorers for the batch tests, importable by worker processes and Ray actors.

Each scores like the pipeline (in order of text length, records back in input order) and gives
a record that is a function of the post's text alone, so a record written next to the wrong
line, twice, or not at all shows up in the output.
"""

from __future__ import annotations

import gzip
import json
import multiprocessing
import os
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

from service.batch.work import Scorer
from service.heads import RISKS
from service.normalise import WINDOW
from service.record import Post, ScoreRecord
from service.rescore import Engine, Summary, rescore
from service.settings import Settings, get_settings
from service.storage.repository import StoredRumor

RAISE = "RAISE"
"""A post whose text holds this makes the scorer raise."""
DIE = "DIE"
"""A post whose text holds this kills the process that scores it."""
DIE_ONCE = "DIE-ONCE:"
"""``DIE-ONCE:/path`` kills the process the first time only (it creates ``/path``)."""
BREAK_ORDERED = "BREAK-ORDERED"
"""A post whose text holds this makes the ordered stage raise (a fault past the model)."""
SLOW_S_ENV = "QINGLANG_TEST_SLOW_S"
"""Seconds the scorer sleeps per call, so that a test can kill a run half way."""
SLOW_LOAD_S_ENV = "QINGLANG_TEST_SLOW_LOAD_S"
"""Seconds :func:`length_scorer` takes to load in a worker process, as a model does, so that a
test can stop a run while its workers start."""


def expected_record(post: Post) -> ScoreRecord:
    """The record the stand-in gives a post: a function of its text alone."""
    n = len(post.text)
    rumor = n % 101 / 100
    return ScoreRecord(
        id=post.id,
        account_id=post.account_id,
        scores={risk: (n * (i + 1)) % 101 / 100 for i, risk in enumerate(RISKS)},
        flags={risk: risk == "rumor" and rumor >= 0.5 for risk in RISKS},
        signals={"originality_claim": float(post.declared_original)},
        decision="block" if rumor >= 0.9 else "review" if rumor >= 0.5 else "pass",
        reasons=[],
        model_version=LengthScorer.model_version,
        policy_version=LengthScorer.policy_version,
        truncated=n > WINDOW,
        warnings=[] if post.text.strip() else ["empty text"],
    )


@dataclass(frozen=True)
class StandInModel:
    batch_size: int
    digest: str = "sha256:test-model"


class LengthScorer:
    model_version = "test-length"
    policy_version = "test"
    policy_digest = "sha256:test-policy"
    evidence = True

    def __init__(self, *, fail_on_call: int = 0, batch_size: int = 64) -> None:
        self.classifier = StandInModel(batch_size)
        """Read for the checkpoint's fingerprint only: the stand-in scores a task at once."""
        self.calls = 0
        self.bank: list[str] = []
        self.batch_sizes: list[int] = []
        self._fail_on_call = fail_on_call
        self._slow_s = float(os.environ.get(SLOW_S_ENV, "0"))

    def score_many(self, posts: Sequence[Post]) -> list[ScoreRecord]:
        return self.ordered(posts, self.prepare(posts))

    def prepare(self, posts: Sequence[Post]) -> list[ScoreRecord]:
        """The stateless stage gives the records themselves; the ordered stage passes them."""
        self.calls += 1
        self.batch_sizes.append(len(posts))
        time.sleep(self._slow_s)
        if self.calls == self._fail_on_call:
            raise RuntimeError("the model ran out of memory")
        for post in posts:
            _misbehave(post.text)
        by_length = sorted(range(len(posts)), key=lambda i: len(posts[i].text))
        records = {i: expected_record(posts[i]) for i in by_length}
        return [records[i] for i in range(len(posts))]

    def ordered(self, posts: Sequence[Post], prepared: Sequence[ScoreRecord]) -> list[ScoreRecord]:
        if any(BREAK_ORDERED in post.text for post in posts):
            raise RuntimeError("the ordered stage broke")
        return list(prepared)

    def explain(self, posts: Sequence[Post], records: Sequence[ScoreRecord]) -> list[ScoreRecord]:
        return list(records)

    def use_bank(self, rumors: Sequence[StoredRumor]) -> None:
        self.bank = [r.rumor_id for r in rumors]

    memory_s = 0.0

    def state(self) -> bytes:
        return b"no state"

    def use_state(self, state: bytes | None) -> bool:
        return state in (None, b"no state")

    def warm(self, posts: Sequence[Post]) -> None:
        """Nothing to warm: every record is a function of its post alone."""

    def frontier(self) -> str:
        return "no state"


class CountingScorer(LengthScorer):
    """A stand-in whose ordered stage holds state that no warm-up rebuilds (it warms nothing):
    each record's signals count the posts ordered before it in the process, so every warmed-up
    segment's boundary fails, and ``calls`` counts the stateless stage's (the model's) calls."""

    def __init__(self, *, batch_size: int = 64) -> None:
        super().__init__(batch_size=batch_size)
        self.ordered_posts = 0

    def ordered(self, posts: Sequence[Post], prepared: Sequence[ScoreRecord]) -> list[ScoreRecord]:
        records = []
        for record in prepared:
            seen = {"ordered_before": float(self.ordered_posts)}
            records.append(record.model_copy(update={"signals": record.signals | seen}))
            self.ordered_posts += 1
        return records

    def state(self) -> bytes:
        return str(self.ordered_posts).encode()

    def use_state(self, state: bytes | None) -> bool:
        self.ordered_posts = int(state or b"0")
        return True

    def frontier(self) -> str:
        return str(self.ordered_posts)


def _misbehave(text: str) -> None:
    if RAISE in text:
        raise ValueError("this post breaks the scorer")
    if text.startswith(DIE_ONCE):
        marker = Path(text.removeprefix(DIE_ONCE))
        if not marker.exists():
            marker.touch()
            os._exit(70)
    elif DIE in text:
        os._exit(70)


def length_scorer(settings: Settings) -> Scorer:
    """The factory that worker processes and actors call (a module-level function pickles)."""
    if multiprocessing.parent_process() is not None:
        time.sleep(float(os.environ.get(SLOW_LOAD_S_ENV, "0")))
    return LengthScorer(batch_size=settings.batch_size)


def counting_scorer(settings: Settings) -> Scorer:
    return CountingScorer(batch_size=settings.batch_size)


class ColdScorer(LengthScorer):
    """A stand-in that kills its process when asked to warm up: a segment after the first dies
    before any of its posts is scored, whichever way it is tried."""

    def warm(self, posts: Sequence[Post]) -> None:
        os._exit(70)


def cold_scorer(settings: Settings) -> Scorer:
    return ColdScorer(batch_size=settings.batch_size)


def missing_model(settings: Settings) -> Scorer:
    raise FileNotFoundError("model.onnx")


def rescore_lines(folder: Path, lines: Sequence[bytes], engine: Engine, **options: Any) -> Summary:
    """``lines`` written to ``folder/in.jsonl`` and scored into ``folder/out.jsonl``."""
    (folder / "in.jsonl").write_bytes(b"".join(lines))
    return rescore(folder / "in.jsonl", folder / "out.jsonl", engine, progress=False, **options)


def real_posts() -> list[bytes]:
    """Posts the shipped model flags and clears, long and short, in mixed lengths."""
    texts = [
        "紧急扩散！明天起全市停水三天，自来水厂已被污染，赶紧囤水，转给家人！",
        "周末和家人去公园散步，天气很好，拍了几张荷花的照片。",
        "这帮人都该死，大家明天一起去把他们的店砸了！",
        "[蜡烛][蜡烛]",
        "iPhone 15 真的太贵了 but 我还是买了",
        "長" * 300,
    ]
    return [post_line(f"r{i}", texts[i % len(texts)] * (1 + i % 3)) for i in range(40)]


CAMPAIGN = "网传某地明天起全市停水三天，自来水厂已被污染，请大家赶紧囤水并转给家人朋友！"


def campaign_lines() -> list[bytes]:
    """Posts with near-duplicates in play, in ``created_at`` order: a campaign of variants of one
    text from many accounts (a coordinated batch forms part way), copies that claim originality,
    boilerplate reposts, undated posts, and unrelated posts, so that chunks split the batch."""
    lines = []
    for i in range(36):
        at = 1_700_000_000 + 45 * i
        if i % 6 == 5:
            lines.append(post_line(f"b{i}", "转发微博", account_id=f"u{i}", created_at=at))
        elif i % 9 == 4:
            lines.append(post_line(f"n{i}", f"今天第{i}天，周末和家人去公园散步，拍了几张荷花。"))
        elif i % 4 == 3:
            text = "原创：" + CAMPAIGN.replace("三", str(i))
            lines.append(
                post_line(f"o{i}", text, account_id=f"t{i}", created_at=at, declared_original=True)
            )
        else:
            prefix = "速看！" if i % 2 else ""
            text = prefix + CAMPAIGN.replace("全市", f"第{i}区")
            lines.append(post_line(f"c{i}", text, account_id=f"a{i % 11}", created_at=at))
    return lines


REPOSTS = Path("weibo16") / "reposts.jsonl.gz"
OTHER_CAMPAIGN = (
    "重要通知：本市所有银行明天起暂停取款一周，请立即去取出存款，消息来自内部人士，速转！"
)


def reposts_with_campaigns() -> list[bytes]:
    """About 280 real reposts of the Weibo corpus over 20 days (at most 30 every two days, from a
    stretch with posts on every day; more than the 10.5 days a segment's warm-up replays), in
    ``created_at`` order, with two campaigns woven in: variants of one text every 34 hours from
    sixteen accounts, from three days before the reposts (one cluster that chains across 21 days,
    longer than a warm-up, some copies claiming originality), and a burst of seven copies of
    another text within 20 minutes from seven accounts in the middle (a coordinated batch)."""
    with gzip.open(get_settings().data_dir / REPOSTS, "rt", encoding="utf-8") as corpus:
        rows = [json.loads(line) for line in islice(corpus, 20_000)]
    rows.sort(key=lambda row: (row["created_at"], row["id"]))
    start = rows[18_600]["created_at"]
    per_bin: Counter[int] = Counter()
    posts = []
    for r in rows[18_600:]:
        two_days = int((r["created_at"] - start) // (2 * 86400))
        per_bin[two_days] += 1
        if two_days < 10 and per_bin[two_days] <= 30:
            at = r["created_at"]
            posts.append(
                {"id": r["id"], "text": r["text"], "account_id": r["account"], "created_at": at}
            )
    first = posts[0]["created_at"]
    for i in range(16):
        text = ("原创：" if i % 3 == 2 else "") + CAMPAIGN.replace("全市", f"第{i}区")
        at = first + (i * 34 - 72) * 3600
        posts.append(
            {"id": f"chain{i}", "text": text, "account_id": f"chain-{i}", "created_at": at}
            | ({"declared_original": True} if i % 3 == 2 else {})
        )
    middle = posts[len(posts) // 2]["created_at"]
    for i in range(7):
        text = OTHER_CAMPAIGN.replace("一周", f"{i + 7}天")
        posts.append(
            {
                "id": f"burst{i}",
                "text": text,
                "account_id": f"burst-{i}",
                "created_at": middle + 170 * i,
            }
        )
    posts.sort(key=lambda post: (post["created_at"], post["id"]))
    return [json.dumps(post, ensure_ascii=False).encode() + b"\n" for post in posts]


def chunked_records(pipeline: Scorer, lines: Sequence[bytes], chunk: int) -> list[ScoreRecord]:
    """What one process gives calling the pipeline on ``chunk`` posts at a time, in order, as
    the live service does on its batches: the reference every engine must equal."""
    posts = posts_of(lines)
    out: list[ScoreRecord] = []
    for start in range(0, len(posts), chunk):
        out += pipeline.score_many(posts[start : start + chunk])
    return out


def post_line(post_id: str | int, text: str, **fields: object) -> bytes:
    line = {"id": post_id, "text": text, **fields}
    return json.dumps(line, ensure_ascii=False).encode() + b"\n"


def shuffled_posts(n: int, prefix: str = "p") -> list[bytes]:
    """Lengths in no order, so that scoring sorted by length and writing that order shows."""
    return [post_line(f"{prefix}{i}", "字" * ((i * 37) % 50 + 1)) for i in range(n)]


def posts_of(lines: Sequence[bytes]) -> list[Post]:
    return [Post.model_validate_json(line) for line in lines]


def read_records(path: Path) -> list[ScoreRecord]:
    return [ScoreRecord.model_validate_json(line) for line in path.read_text().splitlines()]


def read_rejects(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def main() -> None:
    """``python batchkit.py rescore ...``: the CLI with the stand-in scorer, for tests that run
    (and kill) it as a process of its own."""
    # by its module name, so that worker processes can unpickle it
    from batchkit import length_scorer as factory

    from service.cli import main as cli

    raise SystemExit(cli(sys.argv[1:], load_scorer=factory))


if __name__ == "__main__":
    main()


def own_model_scorer(settings: Settings) -> Scorer:
    """A stand-in whose model file differs in each process, as a copy on another host may."""
    scorer = LengthScorer(batch_size=settings.batch_size)
    scorer.classifier = StandInModel(settings.batch_size, f"sha256:model-of-pid-{os.getpid()}")
    return scorer
