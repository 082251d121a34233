"""Storage going away or hanging: the publish path still answers (degraded, a call that hangs
given up at its deadline), flagged records wait in the spool and reach storage exactly once when
it is back, even across a killed server or a write that lands after it was given up; the review
API and the console answer 503 at the deadline, and a server stopped meanwhile exits."""

from __future__ import annotations

import errno
import json
import os
import signal
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx2 as httpx
import psycopg
import pytest
from fastapi.testclient import TestClient
from servicekit import (
    Api,
    Held,
    Proxy,
    build_app,
    free_port,
    given_up_at,
    migrate,
    open_api,
    open_impatient_api,
    serve,
    wait_for,
    write_policy,
)
from sqlalchemy.pool import QueuePool
from test_console import sign_in

from service.gate import THREADS
from service.pipeline import Pipeline
from service.policy import Policy
from service.record import Post, ScoreRecord
from service.scoring import FULL, NOT_KEPT, UNWRITABLE, ScoringService
from service.security import create_key
from service.settings import Settings
from service.spool import Spool, Stamp
from service.storage import Pending, Repository, SqlRepository, open_repository, sql, upgrade

RUMOR = "紧急扩散！明天起全市停水三天，自来水厂已被污染，赶紧囤水，转给家人！"


def ready(client: httpx.Client | Api) -> bool:
    http = client.client if isinstance(client, Api) else client
    body = http.get("/readyz").json()
    return bool(body["status"] == "ready" and body["spooled"] == 0)


def stored_once(repository: Repository, ids: list[str], versions: tuple[str, str]) -> None:
    assert set(repository.find_records(ids, *versions)) == set(ids)
    assert sorted(q.post_id for q in repository.queue() if q.post_id in ids) == sorted(ids)


@pytest.fixture
def proxy() -> Iterator[Proxy]:
    running = Proxy(target=5432)
    yield running
    running.close()


def through(proxy: Proxy, url: str) -> str:
    return url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")


def test_postgres_refusing_connections_degrades_spools_and_catches_up(
    tmp_path: Path, pipeline: Pipeline, postgres_url: str, proxy: Proxy
) -> None:
    with open_api(
        tmp_path,
        through(proxy, postgres_url),
        pipeline.classifier,
        migrate_url=postgres_url,
        storage_retry_s=0.2,
        # a request that waited for the database would wait this long: the bound below, well
        # short of it, is far from what four requests take on a loaded host
        storage_deadline_s=60,
    ) as api:
        assert api.score({"id": "before", "text": RUMOR}).json()["degraded"] is False
        reviewer = api.headers(api.new_key("reviewer"))
        assert api.client.get("/v1/review/items", headers=reviewer).status_code == 200
        proxy.refuse()
        for path in ("/v1/review/items", "/v1/bank/rumors"):
            # the driver's words (host, port, tables) go to the log, not to the caller
            refused = api.client.get(path, headers=reviewer)
            assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
            assert refused.json() == {"detail": "storage is unavailable; try again"}
        started = time.monotonic()
        down = [api.score({"id": f"d{i}", "text": RUMOR}) for i in range(3)]
        batch = api.batch([{"id": "d3", "text": RUMOR}, {"id": "d0", "text": RUMOR}])
        assert time.monotonic() - started < 30  # no request waited long for the database
        assert [r.status_code for r in down] == [200, 200, 200]
        assert all(r.json()["degraded"] for r in down)
        assert batch.json()["degraded"] is True
        assert batch.json()["records"][1] == down[0].json()  # idempotent while degraded too
        readiness = api.client.get("/readyz").json()
        assert readiness["status"] == "degraded" and readiness["spooled"] == 4
        assert any("storage unreachable" in p for p in readiness["problems"])
        assert "qinglang_storage_up 0.0" in api.client.get("/metrics").text
        proxy.restore()
        wait_for(lambda: ready(api))
        assert "qinglang_storage_up 1.0" in api.client.get("/metrics").text
        scoring = api.services.scoring
        versions = scoring.model_version, scoring.policy.version
        stored_once(scoring.repository, ["before", "d0", "d1", "d2", "d3"], versions)
        again = api.score({"id": "d1", "text": RUMOR}).json()
        assert again == {**down[1].json(), "degraded": False}
        assert len(api.services.scoring.repository.queue()) == 5


def test_review_items_asked_for_in_an_outage_are_queued_once_when_storage_is_back(
    tmp_path: Path, pipeline: Pipeline, postgres_url: str, proxy: Proxy
) -> None:
    """A coordinated batch that completes in an outage, with no later post, and a bank match
    get their review items once storage answers: spooled after the records, replayed once."""
    with open_api(
        tmp_path,
        through(proxy, postgres_url),
        pipeline.classifier,
        migrate_url=postgres_url,
        storage_retry_s=3600,
    ) as api:
        admin = api.headers(api.new_key("admin"))
        rumour = "网传某地自来水厂被投毒，喝了会生病，千万别喝自来水！"
        banked = {"text": rumour, "notice": "已辟谣"}
        added = api.client.post("/v1/bank/rumors", json=banked, headers=admin)
        assert added.status_code == 201, added.text
        assert api.score({"id": "up", "text": "今天天气很好"}).status_code == 200  # key verified
        proxy.refuse()
        now = time.time()
        for i in range(6):
            post = {"id": f"o{i}", "text": f"{RUMOR}o{i}", "account_id": f"oa{i}"}
            assert api.score({**post, "created_at": now}).json()["degraded"] is True
        copy = api.score({"id": "copy", "text": f"速看！{rumour}", "created_at": now})
        assert copy.json()["degraded"] is True
        api.settle()
        proxy.restore()
        scoring = api.services.scoring
        for _ in range(2):  # the second finds nothing left to replay
            scoring.recover()
        assert scoring.health.problem is None and scoring.spool.pending() == 0
        assert isinstance(scoring.repository, SqlRepository)
        items = scoring.repository.list_items(scoring.policy).items
        (batch,) = [i for i in items if i.kind == "cluster"]
        assert batch.reach == 6 and batch.evidence is not None
        assert sorted(m["post_id"] for m in batch.evidence["members"]) == [
            f"o{i}" for i in range(6)
        ]
        matched = [i for i in items if i.post_id == "copy"]
        assert len(matched) == 1 and matched[0].evidence is not None
        assert matched[0].evidence["confirmed_rumor"] == added.json()["id"]


def test_a_server_started_while_postgres_is_down_lets_in_the_keys_verified_before(
    tmp_path: Path, pipeline: Pipeline, postgres_url: str, proxy: Proxy
) -> None:
    """A server restarted in an outage lets in the keys storage last said were valid (kept in
    ``state_dir``), so the publish path goes on; a key storage revoked, or one never verified,
    waits for storage (503), and is answered by it once it is back."""
    options: dict[str, Any] = {
        "migrate_url": postgres_url,
        "storage_retry_s": 0.2,
        "key_cache_s": 0,
    }
    url = through(proxy, postgres_url)
    with open_api(tmp_path, url, pipeline.classifier, **options) as api:
        revoked, never = api.new_key("publisher"), api.new_key("publisher")
        assert api.score({"id": "up", "text": RUMOR}).status_code == 200
        assert api.score({"id": "up", "text": RUMOR}, key=revoked).status_code == 200
        api.services.scoring.repository.revoke_key(revoked.split("_")[1])
        assert api.score({"id": "up", "text": RUMOR}, key=revoked).status_code == 401
        key = api.key
    proxy.refuse()
    restarted = build_app(tmp_path, url, pipeline.classifier, **options)
    with TestClient(restarted) as client:
        restarted_api = Api(client, restarted.state.services, key, url)
        answered = restarted_api.score({"id": "down", "text": RUMOR})
        assert answered.status_code == 200 and answered.json()["degraded"] is True
        for refused in (revoked, never):
            unverified = restarted_api.score({"id": "down", "text": RUMOR}, key=refused)
            assert unverified.status_code == 503 and unverified.headers["retry-after"] == "5"
        proxy.restore()
        wait_for(lambda: ready(restarted_api))
        assert restarted_api.score({"id": "down", "text": RUMOR}, key=revoked).status_code == 401
        assert restarted_api.score({"id": "down", "text": RUMOR}, key=never).status_code == 200


def test_a_locked_sqlite_database_degrades_and_catches_up(
    tmp_path: Path, pipeline: Pipeline
) -> None:
    path = tmp_path / "locked.db"
    with open_api(
        tmp_path, f"sqlite:///{path}", pipeline.classifier, db_timeout_s=0.2, storage_retry_s=0.2
    ) as api:
        api.score({"id": "warm", "text": RUMOR})
        locker = sqlite3.connect(path, isolation_level=None)
        locker.execute("BEGIN EXCLUSIVE")
        try:
            locked = api.score({"id": "L1", "text": RUMOR})
            assert locked.status_code == 200 and locked.json()["degraded"] is True
        finally:
            locker.execute("ROLLBACK")
            locker.close()
        wait_for(lambda: ready(api))
        scoring = api.services.scoring
        stored_once(
            scoring.repository, ["warm", "L1"], (scoring.model_version, scoring.policy.version)
        )


def test_a_server_killed_between_spool_and_write_loses_and_duplicates_nothing(
    tmp_path: Path, postgres_url: str, proxy: Proxy
) -> None:
    upgrade(postgres_url)
    repository = open_repository(postgres_url, 2.0)
    key = create_key(repository, "publisher")
    env = {
        **os.environ,
        "QINGLANG_DATABASE_URL": through(proxy, postgres_url),
        "QINGLANG_STATE_DIR": str(tmp_path / "state"),
        "QINGLANG_POLICY_FILE": str(write_policy(tmp_path / "policy.toml")),
        "QINGLANG_STORAGE_RETRY_S": "0.3",
    }
    port = free_port()
    headers = {"Authorization": f"Bearer {key}"}
    out = tmp_path / "server"
    server = serve(env, port, out)
    try:
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers)
        assert client.post("/v1/score", json={"id": "k-warm", "text": RUMOR}).status_code == 200
        proxy.refuse()
        spooled = [client.post("/v1/score", json={"id": f"k{i}", "text": RUMOR}) for i in range(3)]
        assert all(r.status_code == 200 and r.json()["degraded"] for r in spooled)
        server.send_signal(signal.SIGKILL)
        server.wait()
        proxy.restore()
        # as if the dead server had written k0 and died before deleting its spool file
        written = ScoreRecord.model_validate({**spooled[0].json(), "degraded": False})
        repository.save_records([Pending(written, enqueue=True)])
        server = serve(env, port, out)
        wait_for(lambda: ready(client))
        versions = spooled[0].json()["model_version"], spooled[0].json()["policy_version"]
        stored_once(repository, ["k-warm", "k0", "k1", "k2"], versions)
        for response in spooled:
            stored = repository.find_records([response.json()["id"]], *versions)
            assert stored[response.json()["id"]].model_dump(mode="json") == {
                **response.json(),
                "degraded": False,
            }
        assert client.post("/v1/score", json={"id": "k2", "text": RUMOR}).json() == {
            **spooled[2].json(),
            "degraded": False,
        }
        assert client.post("/v1/score", json={"id": "k2", "text": "别的"}).status_code == 409
    finally:
        server.kill()
        server.wait()
        repository.close()
    # what the operator sees: where it listens and how to get a key; then JSON logs only,
    # each request's line with its id, no post text
    printed = out.with_suffix(".stdout").read_text()
    assert f"listening on http://127.0.0.1:{port}" in printed
    assert "qinglang keys create --role publisher" in printed
    logs = [json.loads(line) for line in out.with_suffix(".stderr").read_text().splitlines()]
    requests = [entry for entry in logs if entry["logger"] == "service.access"]
    assert len(requests) >= 6 and all(entry["request_id"] for entry in requests)
    assert RUMOR not in out.with_suffix(".stderr").read_text()


def test_a_spooled_record_storage_refuses_is_set_aside_and_readiness_says_so(
    tmp_path: Path, pipeline: Pipeline, postgres_url: str
) -> None:
    # spooled by a version that let the account through; PostgreSQL refuses it (varchar 256)
    refused = Post.model_construct(id="long", text=RUMOR, account_id="A" * 300, source=None)
    spool = Spool(Settings(state_dir=tmp_path / "state").spool_dir)
    for post in (refused, Post(id="fine", text=RUMOR)):
        record = pipeline.score_many([post])[0]
        spool.append([Pending(record, enqueue=True, text=post.text, post=post)])
    spool.close()
    with open_api(tmp_path, postgres_url, pipeline.classifier, storage_retry_s=0.2) as api:
        wait_for(lambda: api.client.get("/readyz").json()["spooled"] == 0)
        readiness = api.client.get("/readyz").json()
        assert readiness["status"] == "degraded" and readiness["rejected"] == 1
        assert any("refused by storage and set aside" in p for p in readiness["problems"])
        assert "qinglang_storage_up 1.0" in api.client.get("/metrics").text
        scoring = api.services.scoring
        versions = scoring.model_version, scoring.policy.version
        assert set(scoring.repository.find_records(["long", "fine"], *versions)) == {"fine"}
        # storage stays in use: the next flagged post is stored, not spooled
        assert api.score({"id": "after", "text": RUMOR}).json()["degraded"] is False


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """The SQLite database at ``path`` locked by another connection: storage is down."""
    locker = sqlite3.connect(path, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        locker.execute("ROLLBACK")
        locker.close()


@contextmanager
def full(spool: Spool, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """``spool``'s disk full: an append fails as on a real one, with none of it written."""

    def no_room(items: object, scored_at: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(spool.folder))

    with monkeypatch.context() as patched:
        patched.setattr(spool, "append", no_room)
        patched.setattr(spool, "room", lambda: 0)
        yield


def test_a_full_spool_while_storage_is_down_is_a_json_503_and_the_retry_keeps_the_record(
    tmp_path: Path, pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "locked.db"
    with open_api(
        tmp_path, f"sqlite:///{path}", pipeline.classifier, db_timeout_s=0.2, storage_retry_s=0.2
    ) as api:
        api.score({"id": "warm", "text": RUMOR})
        spool = api.services.scoring.spool
        with locked(path):
            with full(spool, monkeypatch):
                refused = api.score({"id": "F1", "text": RUMOR})
                readiness = api.client.get("/readyz").json()
            assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
            detail = refused.json()["detail"]
            assert detail == NOT_KEPT.format(cause=FULL)
            assert "could be neither stored" in detail and "spool's disk is full" in detail
            assert str(spool.folder) not in detail  # the server's paths are the operator's
            assert readiness["status"] == "degraded"
            assert any("spool's disk is full" in p for p in readiness["problems"])
            # the retry is scored again and spooled, not answered from memory unkept
            retried = api.score({"id": "F1", "text": RUMOR})
            assert retried.status_code == 200 and retried.json()["degraded"] is True
            assert spool.pending() == 1
        wait_for(lambda: ready(api))
        scoring = api.services.scoring
        stored_once(
            scoring.repository, ["warm", "F1"], (scoring.model_version, scoring.policy.version)
        )


def test_a_spool_folder_it_cannot_write_is_reported_ready_or_not_and_its_503_says_so(
    tmp_path: Path, pipeline: Pipeline
) -> None:
    path = tmp_path / "locked.db"
    with open_api(
        tmp_path, f"sqlite:///{path}", pipeline.classifier, db_timeout_s=0.2, storage_retry_s=0.2
    ) as api:
        api.score({"id": "warm", "text": RUMOR})
        spool = api.services.scoring.spool
        # a file in the folder's place: it stops the root the tests run as, as permissions
        # or a read-only mount stop a service's user
        spool.folder.rmdir()
        spool.folder.write_bytes(b"")
        readiness = api.client.get("/readyz").json()
        assert readiness["status"] == "degraded"
        assert any(p.startswith(UNWRITABLE) for p in readiness["problems"])
        assert not any(str(spool.folder) in p for p in readiness["problems"])
        with locked(path):
            refused = api.score({"id": "F1", "text": RUMOR})
            assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
            assert refused.json()["detail"] == NOT_KEPT.format(cause=UNWRITABLE)
            assert str(spool.folder) not in refused.json()["detail"]
            spool.folder.unlink()
            spool.folder.mkdir()
            retried = api.score({"id": "F1", "text": RUMOR})
            assert retried.status_code == 200 and retried.json()["degraded"] is True
        wait_for(lambda: ready(api))


def test_a_request_for_a_post_being_kept_shares_its_outcome_never_an_unkept_record(
    tmp_path: Path, pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "locked.db"
    with open_api(
        tmp_path, f"sqlite:///{path}", pipeline.classifier, db_timeout_s=0.2, storage_retry_s=0.2
    ) as api:
        api.score({"id": "warm", "text": RUMOR})
        scoring = api.services.scoring
        spool = scoring.spool
        appending, looked = threading.Event(), threading.Event()
        room: list[bool] = []
        append, get = spool.append, scoring.first.get

        def held_append(items: Sequence[Pending], scored_at: Stamp) -> None:
            # the first request's record is on its way to the spool: the second looks now
            appending.set()
            looked.wait(30)
            if not room:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(spool.folder))
            append(items, scored_at)

        def looking(post_id: str, version: str) -> ScoreRecord | None:
            held = get(post_id, version)
            if appending.is_set():
                looked.set()  # the second request has looked for the post in memory
            return held

        monkeypatch.setattr(spool, "append", held_append)
        monkeypatch.setattr(scoring.first, "get", looking)

        def both() -> tuple[httpx.Response, httpx.Response]:
            """The post sent twice, the second while the first is keeping its record."""
            appending.clear()
            looked.clear()
            with ThreadPoolExecutor(1) as other:
                first = other.submit(api.score, {"id": "F1", "text": RUMOR})
                assert appending.wait(30)
                second = api.score({"id": "F1", "text": RUMOR})
                return first.result(), second

        with locked(path):
            # the spool's disk full: neither caller may hold the record that was never kept
            first, second = both()
            assert first.status_code == second.status_code == 503
            assert second.headers["retry-after"] == "1"
            assert first.json() == second.json() == {"detail": NOT_KEPT.format(cause=FULL)}
            assert spool.pending() == 0
            # with room, both get the one record, spooled once
            room.append(True)
            first, second = both()
            assert first.status_code == second.status_code == 200
            assert first.json() == second.json() and second.json()["degraded"] is True
            assert spool.pending() == 1
        wait_for(lambda: ready(api))
        stored_once(
            scoring.repository, ["warm", "F1"], (scoring.model_version, scoring.policy.version)
        )
        metrics = api.client.get("/metrics").text
        assert 'qinglang_decisions_total{decision="review"} 2.0' in metrics  # warm, F1 once


def test_a_store_that_fails_unforeseen_leaves_nothing_in_memory_to_answer_the_retry(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    scoring = api.services.scoring
    failures: list[str] = []

    def broken(items: Sequence[Pending], policy: Policy | None = None) -> list[ScoreRecord]:
        failures.append(items[0].record.id)
        raise RuntimeError("a failure no handler foresaw")

    with monkeypatch.context() as patched:
        patched.setattr(scoring.repository, "save_records", broken)
        with pytest.raises(RuntimeError, match="no handler foresaw"):  # a 500 to the caller
            api.score({"id": "U1", "text": RUMOR})
    assert failures == ["U1"]
    # the retry is scored again and stored, not answered from memory with a record never kept
    retried = api.score({"id": "U1", "text": RUMOR})
    assert retried.status_code == 200 and retried.json()["degraded"] is False
    stored = scoring.repository.find_records(["U1"], scoring.model_version, scoring.policy.version)
    assert stored["U1"].model_dump(mode="json") == retried.json()


def test_a_full_spool_while_storage_is_down_fails_only_the_batch_posts_whose_records_are_kept(
    tmp_path: Path, pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    # an empty text scores 0 on every risk and passes (its record is not kept), any other
    # text scores above 0.001 on some risk and is reviewed (kept)
    path, policy = tmp_path / "locked.db", write_policy(tmp_path / "policy.toml", review=0.001)
    posts = [{"id": "P1", "text": ""}, {"id": "F1", "text": RUMOR}]
    with open_api(
        tmp_path,
        f"sqlite:///{path}",
        pipeline.classifier,
        policy=policy,
        db_timeout_s=0.2,
        storage_retry_s=0.2,
    ) as api:
        api.score({"id": "warm", "text": RUMOR})
        scoring = api.services.scoring
        spool = scoring.spool
        with locked(path):
            with full(spool, monkeypatch):
                first = api.batch(posts)
            # memory holds the passing post's record, not the refused one's
            held = [scoring.first.get(i, scoring.model_version) for i in ("P1", "F1")]
            assert held[0] is not None and held[1] is None
            assert first.status_code == 200 and first.headers["retry-after"] == "1"
            assert first.json()["degraded"] is True
            passed, refused = first.json()["records"]
            assert passed["id"] == "P1" and passed["decision"] == "pass" and passed["degraded"]
            problem = {"loc": [], "msg": NOT_KEPT.format(cause=FULL), "type": "not_kept"}
            assert refused == {
                "index": 1,
                "id": "F1",
                "id_chars": None,
                "status": 503,
                "errors": [problem],
            }
            # the passing post is answered as before; the refused one is scored again and spooled
            second = api.batch(posts)
            assert second.status_code == 200 and "retry-after" not in second.headers
            again, kept = second.json()["records"]
            assert again == passed
            assert kept["id"] == "F1" and kept["decision"] == "review" and kept["degraded"]
            assert spool.pending() == 1
        wait_for(lambda: ready(api))
        versions = scoring.model_version, scoring.policy.version
        stored_once(scoring.repository, ["warm", "F1"], versions)
        assert "P1" not in scoring.repository.find_records(["P1"], *versions)


def test_a_batch_post_not_kept_is_answered_degraded_though_storage_answers_reads_meanwhile(
    tmp_path: Path, pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The maintenance may find storage answering (a SQLite file a writer locked still reads)
    between a request's failed write and its answer: the answer says degraded all the same."""
    monkeypatch.setattr(ScoringService, "maintain", no_upkeep)
    path = tmp_path / "locked.db"
    with open_api(
        tmp_path, f"sqlite:///{path}", pipeline.classifier, db_timeout_s=0.2, storage_retry_s=3600
    ) as api:
        scoring = api.services.scoring
        assert scoring.recover() == 0  # the policy kept: what follows only reads

        def full_after_recovery(items: object, scored_at: object) -> None:
            scoring.recover()  # as the maintenance, on its own thread, meanwhile
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(scoring.spool.folder))

        with locked(path), monkeypatch.context() as patched:
            patched.setattr(scoring.spool, "append", full_after_recovery)
            answer = api.batch([{"id": "F1", "text": RUMOR}])
            assert scoring.health.problem is None
        (refused,) = answer.json()["records"]
        assert refused["status"] == 503 and answer.headers["retry-after"] == "1"
        assert answer.json()["degraded"] is True


def test_a_spool_that_cannot_be_written_out_keeps_the_maintenance_going(
    tmp_path: Path, pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a drain that fails on the spool's own disk (setting a refused record aside with no room)
    # once, then works: the loop that retries storage and drains the spool must live through it
    spool = Spool(Settings(state_dir=tmp_path / "state").spool_dir)
    post = Post(id="waiting", text=RUMOR)
    spool.append([Pending(pipeline.score_many([post])[0], enqueue=True, text=RUMOR, post=post)])
    spool.close()
    failures: list[int] = []
    drain = Spool.drain

    def full_once(self: Spool, *args: object) -> int:
        if not failures:
            failures.append(1)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.folder))
        return drain(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(Spool, "drain", full_once)
    with open_api(
        tmp_path, f"sqlite:///{tmp_path / 'q.db'}", pipeline.classifier, storage_retry_s=0.2
    ) as api:
        wait_for(lambda: api.client.get("/readyz").json()["spooled"] == 0, seconds=10)
        assert failures == [1]
        scoring = api.services.scoring
        versions = scoring.model_version, scoring.policy.version
        assert set(scoring.repository.find_records(["waiting"], *versions)) == {"waiting"}


async def no_upkeep(self: ScoringService, every_s: float) -> None:
    """No maintenance loop: the test writes the spool out (``recover``) when it means to."""


def test_a_write_storage_does_not_answer_is_given_up_at_its_deadline_and_kept_once(
    tmp_path: Path, pipeline: Pipeline, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ScoringService, "maintain", no_upkeep)
    with open_api(tmp_path, database_url, pipeline.classifier, storage_retry_s=3600) as api:
        scoring = api.services.scoring
        versions = scoring.model_version, scoring.policy.version
        assert api.score({"id": "warm", "text": RUMOR}).json()["degraded"] is False
        held = Held(scoring.repository.save_records)
        with given_up_at(1.0), monkeypatch.context() as patched:
            patched.setattr(scoring.repository, "save_records", held)
            first = api.score({"id": "H1", "text": RUMOR})
            # answered while its write still waits for storage
            assert held.waiting == 1
            assert first.status_code == 200 and first.json()["degraded"] is True
            assert scoring.spool.pending() == 1
            assert "within storage_deadline_s (1 s)" in (scoring.health.problem or "")
            # storage is known to be down: the next request skips it rather than wait as long
            second = api.score({"id": "H2", "text": RUMOR})
            assert second.status_code == 200 and second.json()["degraded"] is True
            assert held.calls == 1 and scoring.spool.pending() == 2
            readiness = api.client.get("/readyz").json()
            assert readiness["status"] == "degraded"
            assert any("storage unreachable" in p for p in readiness["problems"])
            assert "qinglang_storage_up 0.0" in api.client.get("/metrics").text
            held.release()
            wait_for(lambda: held.finished == 1)
        # the write given up landed after all, its record spooled too: the drain stores it once
        assert set(scoring.repository.find_records(["H1", "H2"], *versions)) == {"H1"}
        assert scoring.recover() == 2
        assert scoring.spool.pending() == 0 and scoring.health.problem is None
        stored_once(scoring.repository, ["warm", "H1", "H2"], versions)
        again = api.score({"id": "H1", "text": RUMOR})
        assert again.json() == {**first.json(), "degraded": False}


def test_storage_that_hangs_every_call_leaves_the_spool_and_its_drain_working(
    tmp_path: Path, pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    with open_impatient_api(tmp_path, "hung.db", pipeline.classifier, storage_retry_s=0.2) as api:
        scoring = api.services.scoring
        held = Held(scoring.repository.find_records)
        answers: list[httpx.Response] = []

        def another() -> bool:
            answers.append(api.score({"id": f"T{len(answers)}", "text": RUMOR}))
            return held.waiting == THREADS

        with monkeypatch.context() as patched:
            patched.setattr(scoring.repository, "find_records", held)
            # the maintenance finds storage up (its own calls answer), and the next request's
            # look-up is stuck on one more storage thread, until every one is
            wait_for(another)
            answers.append(api.score({"id": "last", "text": RUMOR}))
            # its look-up, given up while it waited for a thread, never started
            assert held.calls == THREADS
            assert all(r.status_code == 200 and r.json()["degraded"] for r in answers)
            # spooled, and written out by the maintenance on a thread of its own meanwhile
            wait_for(lambda: scoring.spool.pending() == 0)
            assert held.waiting == THREADS
            held.release()
        versions = scoring.model_version, scoring.policy.version
        stored_once(scoring.repository, [r.json()["id"] for r in answers], versions)


def test_a_key_never_seen_while_storage_hangs_gets_503_at_the_deadline_and_known_keys_work(
    tmp_path: Path, pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ScoringService, "maintain", no_upkeep)
    with open_impatient_api(tmp_path, "keys.db", pipeline.classifier) as api:
        scoring = api.services.scoring
        assert api.score({"id": "warm", "text": RUMOR}).json()["degraded"] is False  # known
        new, newer = api.new_key("publisher"), api.new_key("publisher")
        held = Held(scoring.repository.get_key)
        with monkeypatch.context() as patched:
            patched.setattr(scoring.repository, "get_key", held)
            refused = api.score({"id": "K1", "text": RUMOR}, key=new)
            assert held.waiting == 1
            assert refused.status_code == 503 and refused.headers["retry-after"] == "5"
            assert refused.json() == {"detail": "cannot verify the API key: storage is unavailable"}
            # storage is known to be down: another new key is refused without asking it
            assert api.score({"id": "K1", "text": RUMOR}, key=newer).status_code == 503
            assert held.calls == 1
            # a known key goes on, its record spooled
            known = api.score({"id": "K1", "text": RUMOR})
            assert known.status_code == 200 and known.json()["degraded"] is True
            held.release()
        assert scoring.recover() == 1
        assert api.score({"id": "K2", "text": RUMOR}, key=new).status_code == 200


def test_postgres_that_stops_answering_on_an_open_connection_is_given_up_at_the_deadline(
    tmp_path: Path,
    pipeline: Pipeline,
    postgres_url: str,
    proxy: Proxy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ScoringService, "maintain", no_upkeep)
    with open_api(
        tmp_path,
        through(proxy, postgres_url),
        pipeline.classifier,
        migrate_url=postgres_url,
        storage_retry_s=3600,
    ) as api:
        scoring = api.services.scoring
        versions = scoring.model_version, scoring.policy.version
        assert api.score({"id": "warm", "text": RUMOR}).json()["degraded"] is False
        save = scoring.repository.save_records

        def stalled(items: Sequence[Pending], policy: Policy | None = None) -> list[ScoreRecord]:
            proxy.pause()  # on the pooled connection, open: no timeout of PostgreSQL's ends it
            return save(items, policy)

        with given_up_at(1.0, lambda call: call is stalled), monkeypatch.context() as patched:
            patched.setattr(scoring.repository, "save_records", stalled)
            answered = api.score({"id": "P1", "text": RUMOR})
        assert answered.status_code == 200 and answered.json()["degraded"] is True
        assert scoring.spool.pending() == 1
        assert "within storage_deadline_s" in (scoring.health.problem or "")
        proxy.resume()
        # the stalled write goes on once the server hears it, and lands; the drain adds nothing
        wait_for(lambda: "P1" in scoring.repository.find_records(["P1"], *versions))
        assert scoring.recover() == 1
        stored_once(scoring.repository, ["warm", "P1"], versions)


def test_postgres_that_stops_answering_holds_no_review_or_console_request_past_the_deadline(
    tmp_path: Path,
    pipeline: Pipeline,
    postgres_url: str,
    proxy: Proxy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The review API and the console call storage under the publish path's deadline, on
    threads of their own: the first call into a database that stopped answering is given up
    at the deadline and storage is known to be down, so every request after it, of any surface,
    gets its 503 without a call (one connection waits on the database, not one a request). A
    write given up so may still land: its 503 says so, and its retry with the same key gets
    its answer, the write made once."""
    monkeypatch.setattr(ScoringService, "maintain", no_upkeep)
    with (
        given_up_at(1.0, lambda call: proxy.paused),
        open_api(
            tmp_path,
            through(proxy, postgres_url),
            pipeline.classifier,
            migrate_url=postgres_url,
            storage_retry_s=3600,
            neardup_bank_refresh_s=3600,  # read at start only: no refresh meets the pause
            # the publisher key, verified at the start, stays so: the settling of its evidence
            # by the idle-scheduled process can take a loaded host past the default minute, and
            # its check then met the pause before the report's write
            key_cache_s=3600,
        ) as api,
    ):
        scoring = api.services.scoring
        assert isinstance(scoring.repository, SqlRepository)
        pool = scoring.repository.engine.pool
        assert isinstance(pool, QueuePool)
        assert api.score({"id": "p1", "text": RUMOR, "account_id": "a1"}).status_code == 200
        api.settle()
        reviewer = api.headers(api.new_key("reviewer"))
        (item,) = api.client.get("/v1/review/items", headers=reviewer).json()["items"]
        sign_in(api, "li")
        # a request that waits for storage after all fails its test rather than hangs it
        safety = threading.Timer(60, proxy.resume)
        safety.start()
        try:
            proxy.pause()
            page = api.client.get("/console/queue")
            assert page.status_code == 503 and page.headers["retry-after"] == "1"
            assert "数据库暂时无法访问" in page.text
            for path in (
                "/v1/review/items",
                f"/v1/review/items/{item['id']}",
                "/v1/accounts/a1",
                "/v1/dispositions",
                "/v1/appeals",
                "/v1/protected-names",
                "/v1/bank/rumors",
                "/console/queue",
            ):
                refused = api.client.get(path, headers=reviewer)
                assert (refused.status_code, refused.headers["retry-after"]) == (503, "1"), path
                if path.startswith("/v1/"):
                    assert refused.json() == {"detail": "storage is unavailable; try again"}
            # the publish path skips storage known to be down too, and the probes answer
            assert api.score({"id": "p2", "text": RUMOR}).json()["degraded"] is True
            assert api.client.get("/healthz").status_code == 200
            assert pool.checkedout() == 1
            proxy.resume()
            wait_for(lambda: pool.checkedout() == 0)  # the call given up returns
            assert scoring.recover() == 1  # storage answers again: p2 is written out
            proxy.pause()
            report = {"post_id": "p1", "category": "rumor"}
            keyed = {**api.headers(), "Idempotency-Key": "complaint-1"}
            filed = api.client.post("/v1/reports", json=report, headers=keyed)
            assert filed.status_code == 503 and filed.headers["retry-after"] == "1"
            assert "the change may still be made" in filed.json()["detail"]
            assert "Idempotency-Key" in filed.json()["detail"]
        finally:
            safety.cancel()
            proxy.resume()
        wait_for(lambda: pool.checkedout() == 0)  # the report given up lands
        scoring.recover()
        retried = api.client.post("/v1/reports", json=report, headers=keyed)
        assert retried.status_code == 200 and retried.json()["item_reports"] == 1
        shown = api.client.get(f"/v1/review/items/{item['id']}", headers=reviewer).json()
        assert shown["reports"] == 1


def test_a_read_storage_does_not_answer_in_time_says_so_and_not_that_a_change_may_land(
    tmp_path: Path, pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``POST /v1/registrations/check`` writes nothing: given up at ``storage_deadline_s``, its
    503 says storage is unavailable, with no word of a change that may still be made nor of an
    Idempotency-Key it does not take. A write given up so says it may land, and promises a
    retry with the same key makes it once only where its route takes a key (a report, a
    profile, a protected name or a rumour added or removed), not where it takes none (a
    claim); a profile retried with its key once storage answers is set once."""
    monkeypatch.setattr(ScoringService, "maintain", no_upkeep)
    with open_impatient_api(tmp_path, "late.db", pipeline.classifier) as api:
        scoring = api.services.scoring
        repository = scoring.repository
        assert isinstance(repository, SqlRepository)
        admin, reviewer = api.new_key("admin"), api.new_key("reviewer")
        profile = {**api.headers(), "Idempotency-Key": "profile-1"}
        entry = {"name": "新华社", "kind": "organisation"}
        rumor = {"text": RUMOR, "notice": "已辟谣"}
        cases = (
            (
                "check_registration",
                "post",
                "/v1/registrations/check",
                {"name": "n", "subject_id": "s"},
                api.headers(),
            ),
            (
                "file_report",
                "post",
                "/v1/reports",
                {"account_id": "a1", "category": "rumor"},
                api.headers(),
            ),
            ("put_account", "put", "/v1/accounts/a1", {"followers": 3}, profile),
            ("add_protected_name", "post", "/v1/protected-names", entry, api.headers(admin)),
            ("remove_protected_name", "delete", "/v1/protected-names/1", None, api.headers(admin)),
            ("claim", "post", "/v1/review/items/1/claim", None, api.headers(reviewer)),
            ("add_rumor", "post", "/v1/bank/rumors", rumor, api.headers(admin)),
            ("delete_rumor", "delete", "/v1/bank/rumors/r1", None, api.headers(admin)),
        )
        answers = {}
        for method, verb, path, body, headers in cases:
            held = Held(getattr(repository, method))
            with monkeypatch.context() as patched:
                patched.setattr(repository, method, held)
                answered = api.client.request(verb, path, json=body, headers=headers)
                held.release()
                wait_for(lambda held=held: held.finished == 1)  # type: ignore[misc]
            assert answered.status_code == 503 and answered.headers["retry-after"] == "1"
            answers[method] = answered.json()["detail"]
            scoring.recover()  # storage answers again
        assert answers.pop("check_registration") == "storage is unavailable; try again"
        keyed = {
            "file_report",
            "put_account",
            "add_protected_name",
            "remove_protected_name",
            "add_rumor",
            "delete_rumor",
        }
        for method, detail in answers.items():
            assert "the change may still be made" in detail, method
            promised = "retry with the same Idempotency-Key" in detail
            assert promised == (method in keyed), (method, detail)
        # the profile given up landed; its retry with the key gets its answer, set once
        retried = api.client.put("/v1/accounts/a1", json={"followers": 3}, headers=profile)
        assert retried.status_code == 200 and retried.json()["followers"] == 3
        changes = [e for e in repository.audit_entries() if e.kind == "account.profile"]
        assert len(changes) == 1


def test_a_bank_change_whose_reload_storage_does_not_answer_is_answered_as_made(
    tmp_path: Path, pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rumour banked (and an entry removed) is committed before this process reloads its
    copy of the bank: that reload given up at ``storage_deadline_s`` leaves the change made,
    so it is answered 201 (204) with ``Bank-Refresh: pending``, not as storage unavailable,
    which had its client send it again (a retry without the key 409, or 404); the process's
    next periodic refresh loads the change, and a copy scored after it matches the entry. A
    retry with the key gets the first answer, the change made once."""
    monkeypatch.setattr(ScoringService, "maintain", no_upkeep)
    with open_impatient_api(
        tmp_path, "bank.db", pipeline.classifier, neardup_bank_refresh_s=0.5
    ) as api:
        scoring, bank = api.services.scoring, api.services.neardup.bank
        repository = scoring.repository
        assert isinstance(repository, SqlRepository)
        admin = api.headers(api.new_key("admin"))

        def unanswered_reload(send: Callable[[], httpx.Response]) -> httpx.Response:
            held = Held(repository.rumors)
            with monkeypatch.context() as patched:
                patched.setattr(repository, "rumors", held)
                answered = send()
                held.release()
                wait_for(lambda: held.calls >= 1 and held.waiting == 0)
            scoring.recover()  # storage answers again
            return answered

        keyed = {**admin, "Idempotency-Key": "bank-1"}
        rumor = {"text": RUMOR, "notice": "已辟谣"}
        added = unanswered_reload(
            lambda: api.client.post("/v1/bank/rumors", json=rumor, headers=keyed)
        )
        assert added.status_code == 201, added.text
        assert added.headers["bank-refresh"] == "pending"
        rumor_id = added.json()["id"]
        assert [r.rumor_id for r in repository.rumors()] == [rumor_id]
        wait_for(lambda: bank.ids() == {rumor_id})  # the periodic refresh
        copy = api.score({"id": "copy1", "text": RUMOR}).json()
        matched = [r["evidence"].get("confirmed_rumor") for r in copy["reasons"]]
        assert rumor_id in matched
        retried = api.client.post("/v1/bank/rumors", json=rumor, headers=keyed)
        assert retried.status_code == 201 and retried.json() == added.json()
        assert retried.headers["bank-refresh"] == "done"
        banked = [e for e in repository.audit_entries() if e.kind == "rumor.banked"]
        assert len(banked) == 1
        removal = {**admin, "Idempotency-Key": "unbank-1"}
        path = f"/v1/bank/rumors/{rumor_id}"
        removed = unanswered_reload(lambda: api.client.delete(path, headers=removal))
        assert removed.status_code == 204 and removed.headers["bank-refresh"] == "pending"
        assert repository.rumors() == []
        wait_for(lambda: bank.ids() == set())
        again = api.client.delete(path, headers=removal)
        assert again.status_code == 204 and again.headers["bank-refresh"] == "done"
        unbanked = [e for e in repository.audit_entries() if e.kind == "rumor.unbanked"]
        assert len(unbanked) == 1


def test_readyz_leaves_a_migration_to_the_maintenance(
    tmp_path: Path, pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A schema short of this release's (a database emptied, or restored from an older
    release, while the server ran) is migrated by the maintenance, which has no deadline, not
    by ``/readyz``: a migration outlasting the probe's deadline was given up there and had
    storage marked down as not answering, while it went on (and could meet the maintenance's
    own migration)."""
    monkeypatch.setattr(ScoringService, "maintain", no_upkeep)
    with open_impatient_api(tmp_path, "short.db", pipeline.classifier) as api:
        scoring = api.services.scoring
        assert isinstance(scoring.repository, SqlRepository)
        with scoring.repository.engine.begin() as connection:
            migrate(connection, "-1", down=True)
        migration = Held(upgrade)  # one that takes longer than the deadline
        # where SqlRepository.ping looks it up, not where it is defined (storage.database)
        monkeypatch.setattr(sql, "upgrade", migration)
        readiness = api.client.get("/readyz").json()
        assert readiness["status"] == "degraded"
        assert any("storage unreachable" in p for p in readiness["problems"])
        assert migration.calls == 0
        assert "storage_deadline_s" not in (scoring.health.problem or "")
        migration.release()
        assert scoring.recover() == 0
        assert migration.calls == 1 and ready(api)


def test_a_maintenance_sweep_under_way_is_finished_before_the_server_stops(
    tmp_path: Path, database_url: str, pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stop waits for the sweep under way (within ``storage_deadline_s``): one left running
    after storage closed kept its transaction open, and a schema dropped next deadlocked with
    it."""
    entered, stopping, finished = threading.Event(), threading.Event(), threading.Event()
    finish_charges = SqlRepository.finish_charges

    def slow(self: SqlRepository, policy: Policy, *args: Any) -> int:
        entered.set()
        stopping.wait(60)
        time.sleep(0.5)  # the stop is under way
        went = finish_charges(self, policy, *args)
        finished.set()
        return went

    monkeypatch.setattr(SqlRepository, "finish_charges", slow)
    with open_api(tmp_path, database_url, pipeline.classifier):
        assert entered.wait(60)
        stopping.set()
    assert finished.is_set(), "the server stopped with its sweep under way"


def test_a_server_stopped_while_postgres_stops_answering_exits(
    tmp_path: Path, postgres_url: str, proxy: Proxy
) -> None:
    """SIGTERM stops the server while PostgreSQL stops answering on an open connection: the
    calls left waiting on it (a request's, given up at its deadline; the maintenance's, which
    has none) hold neither the shutdown nor the exit, where the kernel would give them up after
    minutes, or never while the database's kernel still acknowledges."""
    upgrade(postgres_url)
    repository = open_repository(postgres_url, 2.0)
    key = create_key(repository, "publisher")
    repository.close()
    env = {
        **os.environ,
        "QINGLANG_DATABASE_URL": through(proxy, postgres_url),
        "QINGLANG_STATE_DIR": str(tmp_path / "state"),
        "QINGLANG_POLICY_FILE": str(write_policy(tmp_path / "policy.toml")),
        "QINGLANG_DB_TIMEOUT_S": "0.5",
        "QINGLANG_STORAGE_DEADLINE_S": "1",
        "QINGLANG_STORAGE_RETRY_S": "0.3",
        "QINGLANG_NEARDUP_BANK_REFRESH_S": "0.3",
    }
    server = serve(env, port := free_port(), tmp_path / "server")
    try:
        client = httpx.Client(
            base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {key}"}
        )
        assert client.post("/v1/score", json={"id": "warm", "text": RUMOR}).status_code == 200
        proxy.pause()
        answered = client.post("/v1/score", json={"id": "s1", "text": RUMOR})
        assert answered.status_code == 200 and answered.json()["degraded"] is True
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)  # the database still silent
    finally:
        server.kill()
        server.wait()
    assert server.returncode == 128 + signal.SIGTERM


def test_a_write_whose_commit_went_unanswered_says_it_may_be_made_and_its_retry_makes_it_once(
    tmp_path: Path, pipeline: Pipeline, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connection lost while PostgreSQL committed a write (a failover, the network between)
    leaves the write made or not, the client cannot tell which: answered "try again", a
    client without the key sent it again, and one with it had no word that the change was made."""
    monkeypatch.setattr(ScoringService, "maintain", no_upkeep)
    with open_api(tmp_path, postgres_url, pipeline.classifier, storage_retry_s=3600) as api:
        repository = api.services.scoring.repository
        assert isinstance(repository, SqlRepository)
        assert api.score({"id": "p1", "text": RUMOR, "account_id": "a1"}).status_code == 200
        api.settle()
        armed = threading.Event()
        file_report, commit = repository.file_report, repository.engine.dialect.do_commit

        def arming(*args: Any, **kwargs: Any) -> object:
            armed.set()  # the first try's commit alone
            monkeypatch.setattr(repository, "file_report", file_report)
            return file_report(*args, **kwargs)

        def lost(connection: Any) -> None:
            commit(connection)
            if armed.is_set():
                # committed, and the connection gone before its answer came back
                armed.clear()
                connection.dbapi_connection.close()
                raise psycopg.OperationalError("server closed the connection unexpectedly")

        monkeypatch.setattr(repository, "file_report", arming)
        monkeypatch.setattr(repository.engine.dialect, "do_commit", lost)
        report = {"post_id": "p1", "category": "rumor"}
        keyed = {**api.headers(), "Idempotency-Key": "complaint-1"}
        filed = api.client.post("/v1/reports", json=report, headers=keyed)
        assert filed.status_code == 503 and filed.headers["retry-after"] == "1"
        assert "the change may still be made" in filed.json()["detail"]
        again = api.client.post("/v1/reports", json=report, headers=keyed)
        # the first try's answer: no second report was filed after it
        assert again.status_code == 200 and again.json()["item_reports"] == 1
        after = api.client.get(f"/v1/reports/{again.json()['id'] + 1}", headers=keyed)
        assert after.status_code == 404
