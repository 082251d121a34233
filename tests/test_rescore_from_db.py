"""``qinglang rescore --from-db --since --until``: the service keeps the post of every persisted
record (migration ``0004_batch``) and a re-score reads a period of them in time order and records
the model and policy versions it ran with; on SQLite and on the real PostgreSQL."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

import pytest
from batchkit import (
    RAISE,
    LengthScorer,
    cold_scorer,
    expected_record,
    length_scorer,
    missing_model,
    read_records,
)
from servicekit import migrate, open_api, record
from sqlalchemy import create_engine, inspect, text

from service.batch import diff as batch_diff
from service.batch import stored
from service.batch.checkpoint import CheckpointError, WorkFolder
from service.batch.paths import default_reject_path
from service.batch.work import Scorer
from service.cli import main
from service.pipeline import Pipeline
from service.record import Post, ScoreRecord
from service.settings import Settings, get_settings
from service.storage import Pending, SqlRepository, open_repository, upgrade
from service.storage.database import make_engine

T0 = 1_700_000_000.0


@pytest.fixture
def database(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("QINGLANG_DATABASE_URL", database_url)
    get_settings.cache_clear()
    upgrade(database_url)
    yield database_url
    get_settings.cache_clear()


@pytest.fixture
def repo(database: str) -> Iterator[SqlRepository]:
    repository = open_repository(database, 10.0)
    yield repository
    repository.close()


def posts() -> list[Post]:
    """Stored out of time order; one undated (it takes the time it was stored: now)."""
    return [
        Post(id="p3", text="第三条" * 3, account_id="a", created_at=T0 + 300),
        Post(id="p1", text="第一条", account_id="b", created_at=T0 + 100, declared_original=True),
        Post(id="p0", text="更早的一条", created_at=T0 - 100),
        Post(id="p2", text="第二条，转自@某人", created_at=T0 + 200, source="某人"),
        Post(id="undated", text="没有时间"),
    ]


def store(repo: SqlRepository) -> None:
    repo.save_records([Pending(record(p.id), True, p.text, p) for p in posts()])


def test_stored_posts_of_a_period_come_back_whole_in_time_order(repo: SqlRepository) -> None:
    store(repo)
    store(repo)  # saved twice: kept once
    found = list(repo.stored_posts(T0, T0 + 300, chunk=2))
    by_id = {p.id: p for p in posts()}
    assert [p.id for p in found] == ["p1", "p2"]
    assert found == [by_id["p1"], by_id["p2"]]
    assert [p.id for p in repo.stored_posts(None, None, chunk=2)] == [
        "p0",
        "p1",
        "p2",
        "p3",
        "undated",
    ]


def test_an_export_is_the_period_as_stored_when_it_began(
    repo: SqlRepository, database: str
) -> None:
    store(repo)
    exported = repo.stored_posts(None, None, chunk=2)
    first_page = [next(exported).id, next(exported).id]
    # the service stores two posts of the period while the export is between its pages: one
    # earlier than the page already read, one later
    service = open_repository(database, 10.0)
    try:
        late = [
            Post(id="early", text="迟到的早帖", created_at=T0 - 500),
            Post(id="later", text="迟到的晚帖", created_at=T0 + 250),
        ]
        service.save_records([Pending(record(p.id), True, p.text, p) for p in late])
    finally:
        service.close()
    # neither is in this export (it is the period as stored when it began), both in the next
    assert first_page + [p.id for p in exported] == ["p0", "p1", "p2", "p3", "undated"]
    assert [p.id for p in repo.stored_posts(None, None, chunk=2)] == [
        "early",
        "p0",
        "p1",
        "p2",
        "later",
        "p3",
        "undated",
    ]


def test_rescore_from_db_scores_the_period_and_records_the_run(
    tmp_path: Path, repo: SqlRepository, database: str
) -> None:
    store(repo)
    out = tmp_path / "again.jsonl"
    args = ["rescore", "--from-db", "--since", "2023-11-14T22:13:20Z", "--until", str(T0 + 301)]
    args += ["-o", str(out), "--workers", "1", "--no-progress"]
    assert main(args, load_scorer=length_scorer) == 0
    by_id = {p.id: p for p in posts()}
    assert read_records(out) == [expected_record(by_id[i]) for i in ("p1", "p2", "p3")]
    assert not list(tmp_path.glob(".again.jsonl.from-db*"))
    with create_engine(database).connect() as connection:
        runs = connection.execute(
            text("SELECT since, until, model_version, policy_version, posts FROM rescore_runs")
        ).all()
    assert [tuple(r) for r in runs] == [(T0, T0 + 301, "test-length", "test", 3)]


def test_a_run_records_its_output_as_an_absolute_path(
    tmp_path: Path, repo: SqlRepository, monkeypatch: pytest.MonkeyPatch, database: str
) -> None:
    store(repo)
    (tmp_path / "runs").mkdir()
    # OUTPUT given relative to the folder the command ran in: a later run from another folder
    # must still find it
    monkeypatch.chdir(tmp_path / "runs")
    args = ["rescore", "--from-db", "-o", "again.jsonl", "--workers", "1", "--no-progress"]
    assert main(args, load_scorer=length_scorer) == 0
    with create_engine(database).connect() as connection:
        outputs = connection.execute(text("SELECT output FROM rescore_runs")).scalars().all()
    assert outputs == [str((tmp_path / "runs" / "again.jsonl").resolve())]


def test_an_export_left_by_a_killed_run_serves_only_its_own_period(
    tmp_path: Path, repo: SqlRepository
) -> None:
    store(repo)
    out = tmp_path / "again.jsonl"
    base = ["rescore", "--from-db", "-o", str(out), "--workers", "1", "--no-progress"]
    # a run that stopped after exporting every stored post (its model would not load)
    assert main(base, load_scorer=missing_model) == 2
    assert len(list(tmp_path.glob(".again.jsonl.from-db.*.jsonl"))) == 1
    # another period exports its own posts, and the other period's file goes
    assert main([*base, "--since", str(T0 + 100)], load_scorer=length_scorer) == 0
    assert {r.id for r in read_records(out)} == {"p1", "p2", "p3", "undated"}
    assert not list(tmp_path.glob(".again.jsonl.from-db*"))
    nowhere = ["rescore", "--from-db", "-o", str(tmp_path / "no" / "x.jsonl"), "--workers", "1"]
    assert main(nowhere, load_scorer=length_scorer) == 2


def test_an_export_cut_short_by_a_killed_run_is_removed_by_a_run_of_another_period(
    tmp_path: Path, repo: SqlRepository
) -> None:
    store(repo)
    out = tmp_path / "again.jsonl"
    # what a run killed (SIGKILL, the out-of-memory killer) while it exported every stored
    # post leaves: the export half written, beside the name it would have been renamed to
    export = stored.export_path(out, None, None)
    half = export.with_name(export.name + ".tmp")
    half.write_text(json.dumps({"id": "p0", "text": "更早"}) + "\n{")
    args = ["rescore", "--from-db", "--since", str(T0 + 100), "-o", str(out), "--workers", "1"]
    assert main([*args, "--no-progress"], load_scorer=length_scorer) == 0
    assert {r.id for r in read_records(out)} == {"p1", "p2", "p3", "undated"}
    assert not list(tmp_path.glob(".again.jsonl.*"))


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["in.jsonl", "--from-db"], "give INPUT or --from-db, not both"),
        (["in.jsonl", "--since", "0"], "--since and --until need --from-db"),
        ([], "give INPUT, or --from-db"),
        (
            ["in.jsonl", "--segment-posts", "8", "--checkpoint-every", "2"],
            "--checkpoint-every 2 is less than --segment-posts 8: a checkpoint falls at a "
            "segment's end",
        ),
        (["--from-db", "--since", "yesterday"], "'yesterday' is neither unix seconds"),
        (["--from-db", "--until", "2026-01-01T00:00:00"], "has no time zone"),
        (["--from-db", "--since", "nan"], "'nan' is not a time: give finite unix seconds"),
        (["--from-db", "--until=-inf"], "'-inf' is not a time: give finite unix seconds"),
        (["--from-db", "--until", "1e20"], "1e+20 is not a time from 1970 to 9999"),
        (
            ["--from-db", "--since", "2023-11-14T22:13:21Z", "--until", str(T0)],
            f"--since {T0 + 1!r} is not before --until {T0!r} (unix seconds): the period is empty",
        ),
        (["--from-db", "--since", str(T0), "--until", str(T0)], "the period is empty"),
    ],
)
def test_bad_sources_are_usage_errors(
    tmp_path: Path,
    database: str,
    extra: list[str],
    message: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "in.jsonl").write_text(json.dumps({"id": "x", "text": "y"}) + "\n")
    args = ["rescore", *[str(tmp_path / a) if a == "in.jsonl" else a for a in extra]]
    args += ["-o", str(tmp_path / "o.jsonl"), "--workers", "1"]
    assert main(args, load_scorer=length_scorer) == 2
    assert message in capsys.readouterr().err
    # nothing exported, nothing recorded as run
    assert not list(tmp_path.glob(".o.jsonl*"))
    with create_engine(database).connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM rescore_runs")).scalar() == 0


class InterruptedScorer(LengthScorer):
    """Ctrl-C while the second batch is scored."""

    def ordered(self, posts: Sequence[Post], prepared: Sequence[ScoreRecord]) -> list[ScoreRecord]:
        if len(self.batch_sizes) == 2:
            raise KeyboardInterrupt
        return super().ordered(posts, prepared)


def interrupted_scorer(settings: Settings) -> Scorer:
    return InterruptedScorer()


def test_a_run_of_another_period_keeps_the_export_that_a_killed_run_continues_on(
    tmp_path: Path, repo: SqlRepository, capsys: pytest.CaptureFixture[str]
) -> None:
    store(repo)
    out = tmp_path / "again.jsonl"
    base = ["rescore", "--from-db", "-o", str(out), "--workers", "1", "--no-progress"]
    base += ["--chunk-size", "1", "--segment-posts", "1", "--checkpoint-every", "1"]
    assert main(base, load_scorer=interrupted_scorer) == 2
    assert "continue after 1 of " in capsys.readouterr().err
    [export] = tmp_path.glob(".again.jsonl.from-db.*.jsonl")
    kept = export.read_bytes()

    assert main([*base, "--since", str(T0 + 100)], load_scorer=length_scorer) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path}/.again.jsonl.rescore holds the checkpoint of a run of another period" in err
    assert list(tmp_path.glob(".again.jsonl.from-db.*.jsonl")) == [export]
    assert export.read_bytes() == kept

    assert main(base, load_scorer=length_scorer) == 0
    assert "resumed        after 1 posts" in capsys.readouterr().err
    assert [r.id for r in read_records(out)] == ["p0", "p1", "p2", "p3", "undated"]
    assert not list(tmp_path.glob(".again.jsonl.*"))


def test_a_run_of_another_period_keeps_the_export_of_a_run_that_is_running(
    tmp_path: Path, database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "again.jsonl"
    running = tmp_path / ".again.jsonl.from-db.start-now.jsonl"
    running.write_text(json.dumps({"id": "x", "text": "y"}) + "\n")
    args = ["rescore", "--from-db", "--since", str(T0), "-o", str(out), "--workers", "1"]
    with WorkFolder(out).held(default_reject_path(out)):
        assert main(args, load_scorer=length_scorer) == 2
    assert f"another run (pid {os.getpid()}) is writing {out}" in capsys.readouterr().err
    assert list(tmp_path.glob(".again.jsonl.from-db.*")) == [running]


def test_one_hold_covers_the_export_the_run_its_record_and_the_comparison(
    tmp_path: Path, repo: SqlRepository, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run started while the command exports, records the run or compares would remove the
    export it reads or replace the OUTPUT it compares: each step finds OUTPUT held, by one
    hold (the lock file is the same file throughout)."""
    store(repo)
    out, previous = tmp_path / "again.jsonl", tmp_path / "before.jsonl"
    args = ["rescore", "--from-db", "-o", str(out), "--workers", "1", "--no-progress"]
    assert main(args, load_scorer=length_scorer) == 0
    previous.write_bytes(out.read_bytes())
    lock = tmp_path / ".again.jsonl.rescore.lock"
    steps: dict[str, int] = {}
    # each kept open, so that a lock file removed and made again cannot reuse its inode
    seen: list[TextIO] = []

    def check(step: str) -> None:
        with (
            pytest.raises(CheckpointError, match="is writing"),
            WorkFolder(out).held(default_reject_path(out)),
        ):
            pass
        seen.append(lock.open())
        steps.setdefault(step, os.fstat(seen[-1].fileno()).st_ino)

    def during(step: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            check(step)
            return real(*args, **kwargs)

        return wrapped

    monkeypatch.setattr(stored, "_write", during("export", stored._write))
    monkeypatch.setattr(stored, "finish", during("record", stored.finish))
    monkeypatch.setattr(batch_diff, "diff", during("compare", batch_diff.diff))

    class Checking(LengthScorer):
        def prepare(self, posts: Sequence[Post]) -> list[ScoreRecord]:
            check("score")
            return super().prepare(posts)

    try:
        assert main([*args, "--compare", str(previous)], load_scorer=lambda _: Checking()) == 0
    finally:
        for file in seen:
            file.close()
    # the record last: it removes the export, which the same command scores again should the
    # comparison fail
    assert list(steps) == ["export", "score", "compare", "record"]
    assert len(set(steps.values())) == 1
    assert not lock.exists()


def test_a_run_stopped_after_its_record_before_its_folder_went_lets_the_next_start_over(
    tmp_path: Path,
    repo: SqlRepository,
    database: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A stop (SIGTERM, a crash) after the run was recorded and its export removed, before its
    work folder went: the checkpoint names posts that are gone, which no run can continue on.
    Before, every later run of the period was refused as "a run of another period"."""
    store(repo)
    out = tmp_path / "again.jsonl"
    args = ["rescore", "--from-db", "-o", str(out), "--workers", "1", "--no-progress"]

    def stopped(self: WorkFolder) -> None:
        raise KeyboardInterrupt

    with monkeypatch.context() as patched:
        patched.setattr(WorkFolder, "remove", stopped)
        assert main(args, load_scorer=length_scorer) == 2
    assert "interrupted" in capsys.readouterr().err
    assert not list(tmp_path.glob(".again.jsonl.from-db*"))
    work = WorkFolder(out).path
    assert work.is_dir()

    store(repo)  # nothing new; the same posts again
    assert main(args, load_scorer=length_scorer) == 0
    err = capsys.readouterr().err
    assert (
        f"qinglang rescore: warning: {work} holds the checkpoint of a run of this period whose "
        "export is gone" in err
    )
    assert "resumed" not in err
    assert [r.id for r in read_records(out)] == ["p0", "p1", "p2", "p3", "undated"]
    assert not work.exists()
    assert not list(tmp_path.glob(".again.jsonl.*"))
    with create_engine(database).connect() as connection:
        assert connection.execute(text("SELECT posts FROM rescore_runs")).scalars().all() == [5, 5]


def test_the_service_keeps_the_post_of_each_record_it_stores(
    tmp_path: Path, database_url: str, pipeline: Pipeline
) -> None:
    rumour = "震惊！某地明天要封城，赶紧转发告诉家人！"
    shipped = Settings().policy_file
    with open_api(tmp_path, database_url, pipeline.classifier, policy=shipped) as api:
        flagged = api.score({"id": "r1", "text": rumour, "account_id": "u", "created_at": T0})
        assert flagged.json()["decision"] != "pass"
        api.score({"id": "calm", "text": "周末和家人去公园散步，天气很好。", "created_at": T0})
        api.settle()
    repository = open_repository(database_url, 10.0)
    try:
        kept = list(repository.stored_posts(None, None))
    finally:
        repository.close()
    # the policy persists flagged records only: their posts are what a re-score can read
    assert kept == [Post(id="r1", text=rumour, account_id="u", created_at=T0)]


def test_the_migration_goes_down_to_the_review_schema_and_up_again(database_url: str) -> None:
    upgrade(database_url)
    engine = make_engine(database_url, 5.0)

    def tables() -> set[str]:
        with engine.connect() as connection:
            return set(inspect(connection).get_table_names())

    try:
        assert {"stored_posts", "rescore_runs"} <= tables()
        with engine.begin() as connection:
            migrate(connection, "0003_review", down=True)
        assert not {"stored_posts", "rescore_runs"} & tables()
        assert "review_queue" in tables()
    finally:
        engine.dispose()
    upgrade(database_url)
    repository = open_repository(database_url, 10.0)
    try:
        assert list(repository.stored_posts(None, None)) == []
    finally:
        repository.close()


def test_a_re_score_judges_the_text_a_closed_account_was_refused_for(
    tmp_path: Path, database: str, pipeline: Pipeline
) -> None:
    """The publish path blocks a closed account's post (and stores it, unqueued: there is no
    text to judge); a re-score of the period scores that text as text, without the account's
    state as it stood when the post came."""
    rumour = "震惊！某地明天要封城，赶紧转发告诉家人！"
    calm = {"id": "calm", "text": "周末和家人去公园散步，天气很好。", "account_id": "u"}
    shipped = Settings().policy_file
    with open_api(tmp_path, database, pipeline.classifier, policy=shipped) as api:
        policy, reviewer = api.services.scoring.policy, api.new_key("reviewer")
        for n in range(len(policy.credit.levels)):
            api.score({"id": f"r{n}", "text": rumour, "account_id": "u", "created_at": T0})
            listed = api.client.get("/v1/review/items", headers=api.headers(reviewer)).json()
            (item,) = [i for i in listed["items"] if i["post_id"] == f"r{n}"]
            api.services.review.decide(policy, item["id"], "r1", "confirm", "rumor", "art18.6")
            account = api.client.get("/v1/accounts/u", headers=api.headers()).json()
            if "close_account" in {d["kind"] for d in account["dispositions"]}:
                break
        api.services.scoring.recover()
        refused = api.score({**calm, "created_at": T0 + 1}).json()
        assert refused["decision"] == "block" and not any(refused["flags"].values())
        assert "art19.close_account" in {r["code"] for r in refused["reasons"]}
        api.settle()
        listed = api.client.get("/v1/review/items", headers=api.headers(reviewer)).json()
        assert "calm" not in {i["post_id"] for i in listed["items"]}
    out = tmp_path / "again.jsonl"
    args = ["rescore", "--from-db", "--since", str(T0 + 1), "--until", str(T0 + 2)]
    assert main([*args, "-o", str(out), "--workers", "1", "--no-progress"]) == 0
    (again,) = read_records(out)
    assert (again.id, again.decision, again.reasons) == ("calm", "pass", [])


def test_the_summary_names_the_stored_posts_read_not_the_export(
    tmp_path: Path, repo: SqlRepository, database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    store(repo)
    out = tmp_path / "again.jsonl"
    args = ["rescore", "--from-db", "--since", "2023-11-14T22:13:20Z", "-o", str(out)]
    assert main([*args, "--workers", "1", "--no-progress"], load_scorer=length_scorer) == 0
    err = capsys.readouterr().err
    first = next(line for line in err.splitlines() if line.startswith("rescored "))
    assert first == (
        f"rescored the stored posts of {database} (table stored_posts, since "
        "2023-11-14T22:13:20Z) with model test-length (one process)"
    )
    assert ".from-db." not in err


def test_the_summary_masks_the_password_of_the_database_url(
    tmp_path: Path,
    postgres_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # the test server trusts every connection: the password is only carried, never checked
    url = postgres_url.replace("://postgres@", "://postgres:s3cret-pw@", 1)
    assert url != postgres_url
    monkeypatch.setenv("QINGLANG_DATABASE_URL", url)
    get_settings.cache_clear()
    try:
        upgrade(url)
        repository = open_repository(url, 10.0)
        try:
            store(repository)
        finally:
            repository.close()
        out = tmp_path / "again.jsonl"
        args = ["rescore", "--from-db", "--until", str(T0 + 301), "-o", str(out), "--workers", "1"]
        assert main([*args, "--no-progress"], load_scorer=length_scorer) == 0
    finally:
        get_settings.cache_clear()
    err = capsys.readouterr().err
    assert "s3cret-pw" not in err
    masked = postgres_url.replace("://postgres@", "://postgres:***@", 1)
    assert f"rescored the stored posts of {masked} (table stored_posts, until {T0 + 301})" in err


def test_warnings_and_rejects_name_the_stored_post_by_its_id_not_the_export(
    tmp_path: Path, repo: SqlRepository, database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = [
        Post(id="fine", text="一条正常的帖子", created_at=T0 + 1),
        # the stand-in scorer fails on it, as a model may on a post it was never given
        Post(id="breaks", text="RAISE 这条让模型出错", created_at=T0 + 2),
        Post(id="blank", text="   ", created_at=T0 + 3),
    ]
    repo.save_records([Pending(record(p.id), True, p.text, p) for p in bad])
    out = tmp_path / "again.jsonl"
    args = ["rescore", "--from-db", "--since", str(T0), "-o", str(out), "--workers", "1"]
    assert main([*args, "--no-progress"], load_scorer=length_scorer) == 1
    err = capsys.readouterr().err
    assert ".from-db." not in err
    source = f"{database}, table stored_posts"
    said = err.splitlines()
    assert f"stored post 'blank' ({source}): warning: empty text" in said
    assert (
        f"stored post 'breaks' ({source}): error: scorer_error: the scorer failed on this post: "
        "ValueError('this post breaks the scorer')"
    ) in said
    (reject,) = [json.loads(line) for line in (tmp_path / "again.rejects.jsonl").open()]
    assert (reject["file"], reject["line"], reject["id"]) == (
        f"the stored posts of {database} (table stored_posts, since {T0})",
        None,
        "breaks",
    )


def test_a_scorer_that_fails_on_every_post_names_the_stored_posts_by_their_ids(
    tmp_path: Path, repo: SqlRepository, database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = [Post(id=f"q{n}", text=f"{RAISE} 第{n}条", created_at=T0 + n) for n in range(3)]
    repo.save_records([Pending(record(p.id), True, p.text, p) for p in broken])
    out = tmp_path / "again.jsonl"
    args = ["rescore", "--from-db", "--since", str(T0), "-o", str(out), "--workers", "1"]
    assert main([*args, "--no-progress"], load_scorer=length_scorer) == 2
    err = capsys.readouterr().err
    assert ".from-db." not in err
    assert err.startswith(
        "qinglang rescore: error: the scorer failed on every post of stored posts 'q0' to 'q2' "
        f"({database}, table stored_posts): ValueError('this post breaks the scorer'); the "
        "checkpoint in "
    )


def test_a_worker_that_dies_before_any_post_names_the_stored_posts_by_their_ids(
    tmp_path: Path, repo: SqlRepository, database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    store(repo)
    out = tmp_path / "again.jsonl"
    args = ["rescore", "--from-db", "-o", str(out), "--workers", "2", "--no-progress"]
    # one post a task, two a segment: the second segment (p2, p3) is the first to warm up
    args += ["--chunk-size", "1", "--segment-posts", "2"]
    assert main(args, load_scorer=cold_scorer) == 2
    err = capsys.readouterr().err
    assert ".from-db." not in err
    assert err.startswith(
        "qinglang rescore: error: a worker process died before scoring any post of stored posts "
        f"'p2' to 'p3' ({database}, table stored_posts); the checkpoint in "
    )
