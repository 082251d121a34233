"""``rescore --compare``: the diff against an earlier output, and ``--enqueue`` into the review
queue (on SQLite and the real PostgreSQL), idempotent across runs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from batchkit import LengthScorer, expected_record, length_scorer, posts_of, shuffled_posts
from sqlalchemy import select

from service.batch.diff import diff, enqueue
from service.batch.records import RecordWriter, read_records
from service.batch.work import Scorer
from service.cli import main
from service.policy import load_policy
from service.policy.governance import Violation
from service.record import ScoreRecord
from service.settings import Settings, get_settings
from service.storage import StorageError, open_migrated, open_repository
from service.storage.console_sql import ConsoleReads
from service.storage.repository import Pending
from service.storage.tables import StoredRecord


def write(path: Path, records: list[ScoreRecord]) -> None:
    writer = RecordWriter(path, parquet=path.suffix == ".parquet")
    writer.write(records)
    writer.close()


def flagged(record: ScoreRecord, decision: str, **flags: bool) -> ScoreRecord:
    return record.model_copy(update={"decision": decision, "flags": {**record.flags, **flags}})


POSTS = 30
REVIEWED = 27
"""The one post the stand-in sends to review (its text is 50 characters long)."""


def earlier_and_now() -> tuple[list[ScoreRecord], list[ScoreRecord]]:
    """Three posts change: post 0 is cleared, post 2 moves from review to pass, and post 27 is
    newly flagged."""
    now = [expected_record(post) for post in posts_of(shuffled_posts(POSTS))]
    assert [i for i, r in enumerate(now) if r.decision != "pass"] == [REVIEWED]
    earlier = list(now)
    earlier[0] = flagged(now[0], "review", incitement=True)
    earlier[2] = flagged(now[2], "review")
    earlier[REVIEWED] = flagged(now[REVIEWED], "pass", rumor=False)
    return earlier, now


@pytest.mark.parametrize("reorder", [False, True])
def test_the_diff_counts_changes_per_head_with_examples(tmp_path: Path, reorder: bool) -> None:
    earlier, now = earlier_and_now()
    write(tmp_path / "before.jsonl", earlier[::-1] if reorder else earlier)
    write(tmp_path / "now.parquet", [*now, now[0].model_copy(update={"id": "new"})])

    report = diff(tmp_path / "before.jsonl", tmp_path / "now.parquet")

    assert (report.compared, report.only_current, report.only_previous) == (POSTS, 1, 0)
    assert report.counts["newly flagged"] == {"rumor": 1}
    assert report.counts["newly cleared"] == {"incitement": 1}
    assert report.counts["decision changed"] == {"incitement": 1, "rumor": 1}
    assert report.examples["newly flagged"]["rumor"] == [now[REVIEWED].id]
    assert report.decisions == {("review", "pass"): 2, ("pass", "review"): 1}
    changes = [json.loads(line) for line in report.changes_path.read_text().splitlines()]
    assert [c["id"] for c in changes] == [now[0].id, now[2].id, now[REVIEWED].id]
    assert changes[2] == {
        "id": now[REVIEWED].id,
        "record": REVIEWED + 1,
        "decision": ["pass", "review"],
        "newly_flagged": ["rumor"],
        "newly_cleared": [],
    }
    table = report.render()
    assert "rumor" in table and "review->pass 2" in table


def test_a_repeated_id_is_compared_occurrence_by_occurrence_in_any_order(tmp_path: Path) -> None:
    """Both runs score every line, repeated ids too (the Weibo reposts repeat 30 in their first
    300,000): each occurrence is compared with the same occurrence before, as when the outputs
    are walked side by side. Held by id, the second occurrence was "only now" and compared with
    a passed post (newly flagged, for --enqueue), and one before was left out."""
    now = [expected_record(post) for post in posts_of(shuffled_posts(POSTS))]
    repeat = now[REVIEWED].model_copy(update={"id": now[1].id})
    now.append(repeat)  # flagged, as now[1] is not: the same id, another post
    write(tmp_path / "now.jsonl", now)
    write(tmp_path / "before.jsonl", [now[-2], *now[:-2], now[-1]])  # another order

    report = diff(tmp_path / "before.jsonl", tmp_path / "now.jsonl")

    assert (report.compared, report.only_current, report.only_previous) == (POSTS + 1, 0, 0)
    assert report.changed_posts == 0
    assert (tmp_path / "now.jsonl.changes.jsonl").read_text() == ""


def test_the_table_names_a_post_once_in_a_row_whatever_columns_it_is_in(tmp_path: Path) -> None:
    earlier, now = earlier_and_now()
    write(tmp_path / "before.jsonl", earlier)
    write(tmp_path / "now.jsonl", now)

    table = diff(tmp_path / "before.jsonl", tmp_path / "now.jsonl").render().splitlines()
    # a head's row: its name, three counts, then the examples
    rows = {line.split()[0]: line.split(maxsplit=4)[4:] for line in table[2:6]}

    # post 27 is newly flagged with a changed decision, post 0 newly cleared with one
    assert rows["rumor"] == [now[REVIEWED].id]
    assert rows["incitement"] == [now[0].id]
    assert rows["coordination"] == []


@pytest.fixture
def database(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("QINGLANG_DATABASE_URL", database_url)
    get_settings.cache_clear()
    yield database_url
    get_settings.cache_clear()


def test_compare_and_enqueue_put_the_newly_flagged_in_the_queue_once(
    tmp_path: Path, database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = shuffled_posts(POSTS)
    (tmp_path / "in.jsonl").write_bytes(b"".join(lines))
    earlier, now = earlier_and_now()
    write(tmp_path / "before.jsonl", earlier)
    args = ["rescore", str(tmp_path / "in.jsonl"), "-o", str(tmp_path / "now.jsonl")]
    args += ["--workers", "1", "--no-progress", "--compare", str(tmp_path / "before.jsonl")]

    assert main([*args, "--enqueue"], load_scorer=length_scorer) == 0
    err = capsys.readouterr().err
    assert "review queue: 1 newly flagged records stored" in err
    summary = json.loads((tmp_path / "now.jsonl.diff.json").read_text())
    assert summary["heads"]["rumor"]["newly flagged"] == {
        "posts": 1,
        "examples": [now[REVIEWED].id],
    }

    assert main([*args, "--enqueue"], load_scorer=length_scorer) == 0
    assert "review queue: 0 newly flagged records stored" in capsys.readouterr().err

    repository = open_repository(database, 5.0)
    try:
        queue = repository.queue()
        # the console shows the records against the thresholds of the policy that queued them
        policy = load_policy(get_settings().policy_file)
        kept = ConsoleReads(repository.engine).policy_thresholds(policy.version)
    finally:
        repository.close()
    assert [(item.post_id, item.decision) for item in queue] == [(now[REVIEWED].id, "review")]
    assert kept == {risk: (rule.review, rule.block) for risk, rule in policy.risks.items()}


def test_enqueue_into_a_database_out_of_reach_stops_before_the_model_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Found only when enqueueing, after a run of hours: OUTPUT replaced, status 2, and the
    same command scoring every post again to enqueue them."""
    (tmp_path / "in.jsonl").write_bytes(b"".join(shuffled_posts(POSTS)))
    earlier, _ = earlier_and_now()
    write(tmp_path / "before.jsonl", earlier)
    nowhere = "postgresql+psycopg://qinglang@127.0.0.1:1/qinglang"
    monkeypatch.setenv("QINGLANG_DATABASE_URL", nowhere)
    get_settings.cache_clear()
    loaded: list[Settings] = []

    def scorer(settings: Settings) -> Scorer:
        loaded.append(settings)
        return length_scorer(settings)

    args = ["rescore", str(tmp_path / "in.jsonl"), "-o", str(tmp_path / "now.jsonl")]
    args += ["--workers", "1", "--no-progress", "--compare", str(tmp_path / "before.jsonl")]
    try:
        assert main([*args, "--enqueue"], load_scorer=scorer) == 2
    finally:
        get_settings.cache_clear()
    err = capsys.readouterr().err
    assert err.startswith(
        f"qinglang rescore: error: cannot enqueue the newly flagged posts: cannot migrate {nowhere}"
    )
    assert loaded == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["before.jsonl", "in.jsonl"]


def test_an_enqueue_that_fails_after_the_run_is_done_again_without_scoring_again(
    tmp_path: Path,
    database: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A database lost after the check before the run (a restart, a network fault): the run
    left OUTPUT written and no checkpoint, and only scoring every post again enqueued them."""
    (tmp_path / "in.jsonl").write_bytes(b"".join(shuffled_posts(POSTS)))
    earlier, now = earlier_and_now()
    write(tmp_path / "before.jsonl", earlier)
    output = tmp_path / "now.jsonl"
    args = ["rescore", str(tmp_path / "in.jsonl"), "-o", str(output), "--workers", "1"]
    args += ["--no-progress", "--compare", str(tmp_path / "before.jsonl"), "--enqueue"]
    stored = enqueue

    def lost(report: object, settings: Settings) -> int:
        raise StorageError("the server closed the connection")

    monkeypatch.setattr("service.batch.diff.enqueue", lost)
    assert main(args, load_scorer=length_scorer) == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-1] == (
        "qinglang rescore: error: cannot enqueue the newly flagged posts: the server closed the "
        f"connection; every post is scored into {output} and the checkpoint in "
        f"{tmp_path}/.now.jsonl.rescore kept: run the same command again to finish without "
        "scoring again"
    )
    assert list(read_records(output)) == now

    monkeypatch.setattr("service.batch.diff.enqueue", stored)
    again = LengthScorer()
    assert main(args, load_scorer=lambda settings: again) == 0
    assert again.calls == 0
    assert "review queue: 1 newly flagged records stored" in capsys.readouterr().err
    assert list(read_records(output)) == now
    assert not (tmp_path / ".now.jsonl.rescore").exists()
    repository = open_repository(database, 5.0)
    try:
        assert [item.post_id for item in repository.queue()] == [now[REVIEWED].id]
    finally:
        repository.close()


@pytest.mark.parametrize("since", ["untouched", "removed", "rejects removed"])
def test_a_rerun_after_a_failed_enqueue_copies_no_part_into_an_output_joined_already(
    tmp_path: Path,
    database: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    since: str,
) -> None:
    """Before, the same command joined every part into OUTPUT again (a second copy of the
    output written beside it, on a disk that must hold both) to enqueue what the first run had
    scored and joined already; an OUTPUT or reject file changed since is joined again."""
    (tmp_path / "in.jsonl").write_bytes(b"".join(shuffled_posts(POSTS)) + b"not json\n")
    earlier, now = earlier_and_now()
    write(tmp_path / "before.jsonl", earlier)
    output, rejects = tmp_path / "now.jsonl", tmp_path / "now.rejects.jsonl"
    args = ["rescore", str(tmp_path / "in.jsonl"), "-o", str(output), "--workers", "1"]
    args += ["--no-progress", "--compare", str(tmp_path / "before.jsonl"), "--enqueue"]
    stored = enqueue

    def lost(report: object, settings: Settings) -> int:
        raise StorageError("the server closed the connection")

    monkeypatch.setattr("service.batch.diff.enqueue", lost)
    assert main(args, load_scorer=length_scorer) == 2
    rejected = rejects.read_bytes()
    if since == "removed":
        output.unlink()
    elif since == "rejects removed":
        rejects.unlink()
    written = [(f.stat().st_ino, f.stat().st_mtime_ns) for f in (output, rejects) if f.exists()]
    capsys.readouterr()

    monkeypatch.setattr("service.batch.diff.enqueue", stored)
    again = LengthScorer()
    assert main(args, load_scorer=lambda settings: again) == 1  # the line rejected
    assert again.calls == 0
    assert "review queue: 1 newly flagged records stored" in capsys.readouterr().err
    kept = [(f.stat().st_ino, f.stat().st_mtime_ns) for f in (output, rejects)]
    assert (kept == written) == (since == "untouched")
    assert list(read_records(output)) == now
    assert rejects.read_bytes() == rejected
    assert not (tmp_path / ".now.jsonl.rescore").exists()
    repository = open_repository(database, 5.0)
    try:
        assert [item.post_id for item in repository.queue()] == [now[REVIEWED].id]
    finally:
        repository.close()


def test_enqueue_queues_the_newly_flagged_occurrence_of_a_repeated_id(
    tmp_path: Path, database: str
) -> None:
    """Two posts of one id, the second newly flagged: the flagged record is stored and queued.
    Taken by id, the first record of the id was, a passed post the reviewer found nothing in,
    and the flagged one never reached the queue."""
    now = [expected_record(post) for post in posts_of(shuffled_posts(POSTS))]
    repeat = now[REVIEWED].model_copy(update={"id": now[1].id})  # flagged, as now[1] is not
    now.append(repeat)
    write(tmp_path / "before.jsonl", [*now[:-1], flagged(repeat, "pass", rumor=False)])
    write(tmp_path / "now.jsonl", now)

    report = diff(tmp_path / "before.jsonl", tmp_path / "now.jsonl")
    assert enqueue(report, get_settings()) == 1

    repository = open_repository(database, 5.0)
    try:
        queue = repository.queue()
    finally:
        repository.close()
    assert [(item.post_id, item.decision) for item in queue] == [(repeat.id, "review")]


def test_a_policy_change_queues_the_newly_flagged_posts_stored_under_the_earlier_policy(
    tmp_path: Path, database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The service stored every post (``persist`` lists ``pass``) under an earlier policy; the
    re-score under the current one queues the post it newly flags, once, and the record stored
    then stays beside the new one, which is now the post's record."""
    lines = shuffled_posts(POSTS)
    (tmp_path / "in.jsonl").write_bytes(b"".join(lines))
    earlier, now = earlier_and_now()
    earlier = [r.model_copy(update={"policy_version": "earlier"}) for r in earlier]
    write(tmp_path / "before.jsonl", earlier)
    repository = open_migrated(database, 5.0)
    try:
        prior = zip(earlier, posts_of(lines), strict=True)
        repository.save_records([Pending(r, enqueue=False, post=p) for r, p in prior])
    finally:
        repository.close()
    args = ["rescore", str(tmp_path / "in.jsonl"), "-o", str(tmp_path / "now.jsonl")]
    args += ["--workers", "1", "--no-progress", "--compare", str(tmp_path / "before.jsonl")]

    assert main([*args, "--enqueue"], load_scorer=length_scorer) == 0
    assert "review queue: 1 newly flagged records stored" in capsys.readouterr().err
    assert main([*args, "--enqueue"], load_scorer=length_scorer) == 0
    assert "review queue: 0 newly flagged records stored" in capsys.readouterr().err

    post, policy = now[REVIEWED].id, now[REVIEWED].policy_version
    repository = open_repository(database, 5.0)
    try:
        queue = repository.queue()
        found = repository.find_records(
            [post], now[REVIEWED].model_version, now[REVIEWED].policy_version
        )
        with repository.engine.connect() as connection:
            stored = connection.execute(
                select(StoredRecord.policy_version, StoredRecord.decision)
                .where(StoredRecord.post_id == post)
                .order_by(StoredRecord.id)
            ).all()
    finally:
        repository.close()
    assert [(item.post_id, item.policy_version, item.decision) for item in queue] == [
        (post, policy, "review")
    ]
    assert [tuple(row) for row in stored] == [("earlier", "pass"), (policy, "review")]
    assert found[post].policy_version == policy


def test_a_re_score_that_newly_flags_a_post_under_review_joins_its_open_item(
    tmp_path: Path, database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The post was in the queue for incitement under the earlier policy and is newly flagged
    on rumour now: its new record joins the open item, so it is reviewed once."""
    lines = shuffled_posts(POSTS)
    (tmp_path / "in.jsonl").write_bytes(b"".join(lines))
    earlier, now = earlier_and_now()
    earlier[REVIEWED] = flagged(now[REVIEWED], "review", rumor=False, incitement=True)
    earlier = [r.model_copy(update={"policy_version": "earlier"}) for r in earlier]
    write(tmp_path / "before.jsonl", earlier)
    repository = open_migrated(database, 5.0)
    try:
        repository.save_records([Pending(earlier[REVIEWED], enqueue=True)])
    finally:
        repository.close()
    args = ["rescore", str(tmp_path / "in.jsonl"), "-o", str(tmp_path / "now.jsonl")]
    args += ["--workers", "1", "--no-progress", "--compare", str(tmp_path / "before.jsonl")]

    for _ in range(2):
        assert main([*args, "--enqueue"], load_scorer=length_scorer) == 0
    err = capsys.readouterr().err
    assert "review queue: 1 newly flagged records stored" in err
    assert "review queue: 0 newly flagged records stored" in err

    repository = open_repository(database, 5.0)
    try:
        queue = repository.queue()
    finally:
        repository.close()
    assert [(item.post_id, item.policy_version, item.status) for item in queue] == [
        (now[REVIEWED].id, now[REVIEWED].policy_version, "open")
    ]


@pytest.mark.parametrize("confirmed_as", ["rumor", "incitement"])
def test_a_re_score_flagging_a_confirmed_violation_again_opens_no_second_review(
    tmp_path: Path, database: str, confirmed_as: Violation, capsys: pytest.CaptureFixture[str]
) -> None:
    """The live service flagged the post and a reviewer confirmed it; a new model, compared with
    an output in which the post passed, flags it newly. Flagged on the confirmed head, it is
    no new case: nothing is queued, the confirmed item stays as it was. Flagged on another
    head, it opens one item about that head, naming the confirmed item, whose confirmation
    charges the post no second time."""
    lines = shuffled_posts(POSTS)
    # the account the live service was given the post with, which its confirmation charged
    post = posts_of(lines)[REVIEWED].model_copy(update={"account_id": "acc1"})
    lines[REVIEWED] = post.model_dump_json().encode() + b"\n"
    (tmp_path / "in.jsonl").write_bytes(b"".join(lines))
    earlier, now = earlier_and_now()
    earlier[REVIEWED] = earlier[REVIEWED].model_copy(update={"account_id": "acc1"})
    write(tmp_path / "before.jsonl", earlier)
    live = flagged(now[REVIEWED], "review", rumor=confirmed_as == "rumor", incitement=True)
    live = live.model_copy(update={"policy_version": "live", "account_id": "acc1"})
    policy = load_policy(get_settings().policy_file)
    repository = open_migrated(database, 5.0)
    try:
        repository.save_records([Pending(live, enqueue=True, post=post)])
        (item,) = repository.list_items(policy).items
        confirmed = repository.decide(policy, item.id, "r1", "confirm", confirmed_as, "art18.6")
        assert confirmed.credits
    finally:
        repository.close()
    args = ["rescore", str(tmp_path / "in.jsonl"), "-o", str(tmp_path / "now.jsonl")]
    args += ["--workers", "1", "--no-progress", "--compare", str(tmp_path / "before.jsonl")]

    assert main([*args, "--enqueue"], load_scorer=length_scorer) == 0
    capsys.readouterr()

    repository = open_migrated(database, 5.0)
    try:
        queued = repository.list_items(policy).items
        assert repository.get_item(policy, item.id).status == "confirmed"
        if confirmed_as == "rumor":
            assert queued == []
            return
        (anew,) = queued
        assert (anew.post_id, anew.head, anew.kind) == (post.id, "rumor", "score")
        assert anew.evidence is not None
        assert anew.evidence["earlier"]["item_id"] == item.id
        assert anew.evidence["earlier"]["status"] == "confirmed"
        again = repository.decide(policy, anew.id, "r2", "confirm", "rumor", "art18.6")
        assert again.credits == [] and [u.charged_by for u in again.uncharged] == [item.id]
    finally:
        repository.close()


def test_enqueue_without_compare_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "in.jsonl").write_bytes(b"".join(shuffled_posts(2)))
    args = ["rescore", str(tmp_path / "in.jsonl"), "-o", str(tmp_path / "o.jsonl"), "--enqueue"]
    assert main(args, load_scorer=length_scorer) == 2
    assert "--enqueue needs --compare" in capsys.readouterr().err


def test_enqueue_without_evidence_is_a_usage_error_unless_the_posts_are_stored(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "in.jsonl").write_bytes(b"".join(shuffled_posts(2)))
    args = ["rescore", str(tmp_path / "in.jsonl"), "-o", str(tmp_path / "o.jsonl")]
    args += ["--compare", str(tmp_path / "in.jsonl"), "--enqueue", "--no-evidence"]
    assert main(args, load_scorer=length_scorer) == 2
    assert "--enqueue with --no-evidence needs --from-db" in capsys.readouterr().err
    assert not (tmp_path / "o.jsonl").exists()
