"""``/v1/clusters`` and ``/v1/bank/rumors`` over HTTP, on SQLite and on the real PostgreSQL."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from servicekit import Api, open_api, wait_for, write_policy

from service.neardup.bank import rumor_copy
from service.pipeline import Pipeline
from service.record import ScoreRecord
from service.review import chain
from service.review.chain import text_digest
from service.settings import Settings

REDIS = os.environ.get("QINGLANG_TEST_REDIS", "redis://127.0.0.1:6379/0")
RUMOUR = "网传某地明天起全市停水三天，自来水厂已被污染，请大家赶紧囤水并转给家人朋友！"
LONGEST_NAME = "审核" * 32  # a console user's name at its longest, 64 characters


@pytest.fixture
def service(tmp_path: Path, database_url: str, pipeline: Pipeline) -> Iterator[Api]:
    with open_api(tmp_path, database_url, pipeline.classifier) as running:
        yield running


def copy(i: int) -> str:
    return f"{'速看！' if i % 2 else ''}{RUMOUR.replace('三', str(i))}[怒]"


def test_bank_add_match_copies_notice_and_delete(service: Api) -> None:
    reviewer = service.headers(service.new_key("reviewer"))
    admin = service.headers(service.new_key("admin"))
    body = {"text": RUMOUR, "notice": "自来水厂已辟谣：水质正常"}
    # an entry blocks every later copy on the publish path: admin keys alone add and remove
    for caller in (service.headers(), reviewer):  # a publisher key, a reviewer key
        refused = service.client.post("/v1/bank/rumors", json=body, headers=caller)
        assert refused.status_code == 403, refused.text
    assert service.client.get("/v1/bank/rumors", headers=reviewer).json() == []
    added = service.client.post("/v1/bank/rumors", json=body, headers=admin)
    assert added.status_code == 201
    rumor = added.json()
    # the same rumour again, or a near-copy of it, is the entry there already
    for again in (body, {"text": copy(4), "notice": "另一份辟谣"}):
        twice = service.client.post("/v1/bank/rumors", json=again, headers=admin)
        assert twice.status_code == 409, twice.text
        assert f"already: {rumor['id']}" in twice.json()["detail"]
    now = time.time()
    scored = service.score({"id": "c1", "text": copy(1), "account_id": "a1", "created_at": now})
    reason = next(r for r in scored.json()["reasons"] if r["code"] == "art18.6.false_information")
    assert reason["evidence"]["confirmed_rumor"] == rumor["id"]
    assert reason["evidence"]["notice"] == body["notice"]
    service.score({"id": "c0", "text": copy(2), "account_id": "a2", "created_at": now - 60})
    listed = service.client.get("/v1/bank/rumors", headers=reviewer).json()
    assert [r["id"] for r in listed] == [rumor["id"]]
    got = service.client.get(f"/v1/bank/rumors/{rumor['id']}", headers=reviewer).json()
    assert got["notice"] == body["notice"]
    copies = service.client.get(f"/v1/bank/rumors/{rumor['id']}/copies", headers=reviewer).json()
    assert [c["id"] for c in copies] == ["c0", "c1"]  # earliest first
    kept = service.client.delete(f"/v1/bank/rumors/{rumor['id']}", headers=reviewer)
    assert kept.status_code == 403, kept.text
    assert service.client.get(f"/v1/bank/rumors/{rumor['id']}", headers=reviewer).status_code == 200
    gone = service.client.delete(f"/v1/bank/rumors/{rumor['id']}", headers=admin)
    assert gone.status_code == 204
    assert service.client.delete(f"/v1/bank/rumors/{rumor['id']}", headers=admin).status_code == 404
    assert service.client.get("/v1/bank/rumors", headers=reviewer).json() == []
    later = service.score({"id": "c2", "text": copy(3), "account_id": "a3", "created_at": now})
    assert all("confirmed_rumor" not in r["evidence"] for r in later.json()["reasons"])


@pytest.mark.parametrize("owner", [None, LONGEST_NAME], ids=["keys-own", "owners"])
def test_banking_and_removing_a_rumour_are_chained_with_who_and_the_copies(
    service: Api, owner: str | None
) -> None:
    """Art13's identification and debunking, and the copies traced to the rumour, outlive the
    bank entry: its removal erases the copies' listing, not the record of them. The entry as
    stored and shown, and both audit records, name who acted: the console user the admin key
    belongs to (a name of the longest a user has), as the review's records do, else the key's
    id."""
    admin_key = service.new_key("admin", owner)
    admin = service.headers(admin_key)
    actor = admin_key.split("_")[1] if owner is None else owner
    body = {"text": RUMOUR, "notice": "自来水厂已辟谣：水质正常"}
    added = service.client.post("/v1/bank/rumors", json=body, headers=admin)
    assert added.status_code == 201, added.text
    rumor_id = added.json()["id"]
    shown = service.client.get(f"/v1/bank/rumors/{rumor_id}", headers=admin).json()
    assert added.json()["created_by"] == shown["created_by"] == actor
    assert [r.created_by for r in service.services.scoring.repository.rumors()] == [actor]
    now = time.time()
    service.score({"id": "c1", "text": copy(1), "account_id": "a1", "created_at": now})
    service.score({"id": "c0", "text": copy(2), "account_id": "a2", "created_at": now - 60})
    # the copies are recorded after the answers, in the background (the listing shows a copy
    # the live window holds before it is recorded)
    wait_for(lambda: [r for _, r, _ in _copies(service, rumor_id, admin)] == [True, True])
    assert service.client.delete(f"/v1/bank/rumors/{rumor_id}", headers=admin).status_code == 204
    assert service.client.delete(f"/v1/bank/rumors/{rumor_id}", headers=admin).status_code == 404
    review = service.services.review
    entries = [e for e in review.audit_entries() if e.subject == f"rumor:{rumor_id}"]
    assert [e.kind for e in entries] == ["rumor.banked", "rumor.unbanked"]
    banked, unbanked = (e.payload for e in entries)
    assert banked == {
        "post_id": None,
        "text_sha256": text_digest(RUMOUR),
        "notice_sha256": text_digest(body["notice"]),
        "by": actor,
    }
    assert unbanked == {
        "by": actor,
        "copies": [{"post_id": "c0", "account_id": "a2"}, {"post_id": "c1", "account_id": "a1"}],
    }
    assert chain.verify(review.audit_entries(), review.audit_head()) == []


def test_a_rumour_banked_or_removed_again_with_its_key_gets_the_first_answer(
    service: Api,
) -> None:
    """A client told to retry (a 503 past ``storage_deadline_s``) sends its write again with
    the same ``Idempotency-Key``: the entry is banked once, in storage and in the bank this
    process matches with, and removed once; the key sent with another body is refused."""
    admin_key = service.new_key("admin")
    admin = service.headers(admin_key)
    body = {"text": RUMOUR, "notice": "自来水厂已辟谣：水质正常"}
    keyed = {**admin, "Idempotency-Key": "bank-1"}
    first = service.client.post("/v1/bank/rumors", json=body, headers=keyed)
    assert first.status_code == 201, first.text
    again = service.client.post("/v1/bank/rumors", json=body, headers=keyed)
    assert again.status_code == 201, again.text
    assert again.json() == first.json()
    rumor_id = first.json()["id"]
    listed = service.client.get("/v1/bank/rumors", headers=admin).json()
    assert [r["id"] for r in listed] == [rumor_id]
    assert service.services.neardup.bank.ids() == {rumor_id}
    post = {"id": "c1", "text": copy(1), "account_id": "a1", "created_at": time.time()}
    scored = service.score(post).json()
    assert scored["confirmed_rumor"]["rumor_id"] == rumor_id
    other = {"text": copy(4), "notice": "另一份辟谣"}
    reused = service.client.post("/v1/bank/rumors", json=other, headers=keyed)
    assert reused.status_code == 422
    assert reused.json()["detail"][0]["loc"] == ["header", "Idempotency-Key"]
    # without the key a retry is a second request: the rumour is banked already
    assert service.client.post("/v1/bank/rumors", json=body, headers=admin).status_code == 409
    removal = {**admin, "Idempotency-Key": "unbank-1"}
    for _ in range(2):
        gone = service.client.delete(f"/v1/bank/rumors/{rumor_id}", headers=removal)
        assert gone.status_code == 204, gone.text
    assert service.client.delete(f"/v1/bank/rumors/{rumor_id}", headers=admin).status_code == 404
    assert service.client.get("/v1/bank/rumors", headers=admin).json() == []
    assert service.services.neardup.bank.ids() == set()
    review = service.services.review
    kinds = [e.kind for e in review.audit_entries() if e.subject == f"rumor:{rumor_id}"]
    assert kinds == ["rumor.banked", "rumor.unbanked"]


def _bank(api: Api) -> str:
    admin = api.headers(api.new_key("admin"))
    added = api.client.post(
        "/v1/bank/rumors", json={"text": RUMOUR, "notice": "已辟谣"}, headers=admin
    )
    assert added.status_code == 201
    rumor_id: str = added.json()["id"]
    return rumor_id


def _copies(api: Api, rumor_id: str, reviewer: dict[str, str]) -> list[tuple[str, bool, bool]]:
    got = api.client.get(f"/v1/bank/rumors/{rumor_id}/copies", headers=reviewer)
    assert got.status_code == 200
    return [(c["id"], c["recorded"], c["live"]) for c in got.json()]


def test_copies_stay_listed_after_the_window_forgets_them(
    tmp_path: Path, database_url: str, pipeline: Pipeline
) -> None:
    now = time.time()
    (tmp_path / "first").mkdir()
    (tmp_path / "fresh").mkdir()
    # recording copies is best effort: a storage call past the 1 s default (or the whole call
    # past the 5 s deadline) is dropped, which a loaded machine's SQLite can hit; this test is
    # about the window, not the timeouts
    waits = {"db_timeout_s": 10.0, "storage_deadline_s": 10.0}
    with open_api(tmp_path / "first", database_url, pipeline.classifier, **waits) as api:
        reviewer = api.headers(api.new_key("reviewer"))
        rumor_id = _bank(api)
        scored = api.score({"id": "c1", "text": copy(1), "account_id": "a1", "created_at": now})
        api.score({"id": "c0", "text": copy(2), "account_id": "a2", "created_at": now - 60})
        api.settle()
        assert _copies(api, rumor_id, reviewer) == [("c0", True, True), ("c1", True, True)]
        # recording again (a re-score, another process) changes nothing
        again = rumor_copy(ScoreRecord.model_validate(scored.json()))
        assert again is not None and again.rumor_id == rumor_id
        assert api.services.scoring.repository.record_rumor_copies([again]) == 0
    # a fresh process on the same database: its window holds none of them
    with open_api(tmp_path / "fresh", database_url, pipeline.classifier, **waits) as api:
        assert _copies(api, rumor_id, reviewer) == [("c0", True, False), ("c1", True, False)]
        api.score({"id": "c1", "text": copy(1), "account_id": "a1", "created_at": now})
        api.score({"id": "c2", "text": copy(3), "account_id": "a3", "created_at": now + 60})
        api.settle()
        listed = api.client.get(f"/v1/bank/rumors/{rumor_id}/copies", headers=reviewer).json()
        assert [(c["id"], c["recorded"], c["live"]) for c in listed] == [
            ("c0", True, False),
            ("c1", True, False),  # its stored record was answered: not scored, not in the window
            ("c2", True, True),
        ]
        assert listed[0]["account_id"] == "a2" and listed[0]["created_at"] == now - 60
        first = api.client.get(f"/v1/bank/rumors/{rumor_id}/copies?limit=1", headers=reviewer)
        assert [c["id"] for c in first.json()] == ["c0"]
        pages, after = [], f"after_time={now - 60}&after_id=c0"
        while True:
            page = api.client.get(
                f"/v1/bank/rumors/{rumor_id}/copies?limit=1&{after}", headers=reviewer
            ).json()
            if not page:
                break
            pages.append(page[0]["id"])
            after = f"after_time={page[0]['created_at']}&after_id={page[0]['id']}"
        assert pages == ["c1", "c2"]  # the recorded c1, then c2 from storage or the window
        half = api.client.get(f"/v1/bank/rumors/{rumor_id}/copies?after_id=c0", headers=reviewer)
        assert half.status_code == 422
        assert half.json()["detail"][0]["loc"] == ["query", "after_time"]
        nan = api.client.get(
            f"/v1/bank/rumors/{rumor_id}/copies?after_time=nan&after_id=c0", headers=reviewer
        )
        assert nan.status_code == 422 and nan.json()["detail"][0]["loc"] == ["query", "after_time"]
        admin = api.headers(api.new_key("admin"))
        gone = api.client.delete(f"/v1/bank/rumors/{rumor_id}", headers=admin)
        assert gone.status_code == 204
        assert api.services.scoring.repository.rumor_copies(rumor_id) == []


def test_a_match_under_the_rumour_threshold_is_recorded(
    tmp_path: Path, database_url: str, pipeline: Pipeline
) -> None:
    policy = write_policy(tmp_path / "policy.toml")
    # the rumour risk is never flagged: the bank match raises its score, and nothing more
    text = policy.read_text()
    policy.write_text(text.replace("[risks.rumor]\nreview = 0.0", "[risks.rumor]\nreview = 1.0"))
    assert policy.read_text() != text
    (tmp_path / "fresh").mkdir()
    with open_api(tmp_path, database_url, pipeline.classifier, policy=policy) as api:
        reviewer = api.headers(api.new_key("reviewer"))
        rumor_id = _bank(api)
        scored = api.score(
            {"id": "quiet", "text": copy(1), "account_id": "a1", "created_at": time.time()}
        ).json()
        assert not scored["flags"]["rumor"]
        assert all("confirmed_rumor" not in r["evidence"] for r in scored["reasons"])
        assert scored["confirmed_rumor"]["rumor_id"] == rumor_id
        api.settle()
    with open_api(tmp_path / "fresh", database_url, pipeline.classifier, policy=policy) as api:
        assert _copies(api, rumor_id, reviewer) == [("quiet", True, False)]


def test_a_rumour_is_banked_by_the_id_of_a_live_post(service: Api) -> None:
    admin = service.headers(service.new_key("admin"))
    service.score({"id": "src", "text": RUMOUR, "account_id": "a", "created_at": time.time()})
    by_id = {"post_id": "src", "notice": "已辟谣"}
    added = service.client.post("/v1/bank/rumors", json=by_id, headers=admin)
    assert added.status_code == 201 and added.json()["post_id"] == "src"
    missing = service.client.post(
        "/v1/bank/rumors", json={"post_id": "nope", "notice": "x"}, headers=admin
    )
    assert missing.status_code == 404 and "not in the live window" in missing.json()["detail"]
    both = {"post_id": "src", "text": RUMOUR, "notice": "x"}
    assert service.client.post("/v1/bank/rumors", json=both, headers=admin).status_code == 422
    short = service.client.post(
        "/v1/bank/rumors", json={"text": "转发微博", "notice": "x"}, headers=admin
    )
    assert short.status_code == 422
    assert short.json()["detail"][0]["loc"] == ["body", "text"]
    # what storage could not hold is refused at the door (PostgreSQL took a NUL for an outage)
    typed = {**admin, "Content-Type": "application/json"}
    for field, body in (
        ("text", json.dumps({"text": RUMOUR + "\u0000", "notice": "x"})),
        ("notice", json.dumps({"text": RUMOUR, "notice": "已辟谣\ud800"})),  # a lone surrogate
        ("post_id", json.dumps({"post_id": "src\u0000", "notice": "x"})),
        ("post_id", json.dumps({"post_id": "src\ud800", "notice": "x"})),
    ):
        refused = service.client.post("/v1/bank/rumors", content=body.encode(), headers=typed)
        assert refused.status_code == 422
        (problem,) = refused.json()["detail"]
        assert problem["loc"] == ["body", field]
        assert " NUL " in problem["msg"] or "lone surrogate (U+D800)" in problem["msg"]


def test_clusters_of_a_batch_are_listed_and_shown_with_members(
    tmp_path: Path, pipeline: Pipeline
) -> None:
    with open_api(tmp_path, f"sqlite:///{tmp_path / 'c.db'}", pipeline.classifier) as api:
        reviewer = api.headers(api.new_key("reviewer"))
        now = time.time()
        posts = [
            {"id": f"p{i}", "text": copy(i), "account_id": f"acct{i}", "created_at": now + i}
            for i in range(6)
        ]
        records = api.batch(posts).json()["records"]
        cid = records[-1]["cluster"]["id"]
        assert records[-1]["cluster"]["batch"]
        assert api.client.get("/v1/clusters", headers=api.headers()).status_code == 403
        flagged = api.client.get("/v1/clusters", headers=reviewer).json()
        assert [c["id"] for c in flagged] == [cid]
        detail = api.client.get(f"/v1/clusters/{cid}", headers=reviewer).json()
        assert detail["earliest"]["id"] == "p0" and detail["size"] == 6
        assert [m["id"] for m in detail["members"]] == [p["id"] for p in posts]
        assert detail["batch_accounts"] == [f"acct{i}" for i in range(5)]
        assert api.client.get("/v1/clusters/c_nope", headers=reviewer).status_code == 404


def test_a_restart_keeps_the_window(tmp_path: Path, pipeline: Pipeline) -> None:
    url = f"sqlite:///{tmp_path / 'r.db'}"
    now = time.time()
    with open_api(tmp_path, url, pipeline.classifier) as api:
        api.score({"id": "before", "text": copy(1), "account_id": "a1", "created_at": now})
    assert (tmp_path / "state" / "neardup.pickle").is_file()
    with open_api(tmp_path, url, pipeline.classifier) as api:
        after = api.score({"id": "after", "text": copy(2), "account_id": "a2", "created_at": now})
        assert after.json()["cluster"]["earliest"]["id"] == "before"


BENIGN = "周末和家人去公园散步，天气很好，拍了几张荷花的照片，晚上吃了火锅"
KITTEN = "我家的小猫今天学会了开冰箱门，偷吃了一整盒酸奶，还若无其事地躺在沙发上睡觉"


def _taken(api: Api, post: dict[str, object]) -> list[tuple[int, str]]:
    """The answers to an edit of ``post`` and to its id sent by another account, or by none."""
    edit = {**post, "text": KITTEN}
    answers = [
        api.score(p)
        for p in (edit, {**post, "account_id": "intruder"}, {**edit, "account_id": None})
    ]
    return [(a.status_code, a.json()["detail"]) for a in answers]


def test_an_edit_or_another_accounts_post_is_refused_after_a_restart_as_before(
    tmp_path: Path, pipeline: Pipeline
) -> None:
    # the shipped policy stores no passing record: after a restart only the window knows q4
    url, shipped = f"sqlite:///{tmp_path / 'e.db'}", Settings().policy_file
    posts = [
        {
            "id": f"q{i}",
            "text": BENIGN,
            "account_id": f"qa{i}",
            "created_at": 1_710_000_000 + 60 * i,
        }
        for i in range(1, 5)
    ]
    with open_api(tmp_path, url, pipeline.classifier, policy=shipped) as api:
        scored = [api.score(p).json() for p in posts]
        assert [r["decision"] for r in scored] == ["pass"] * 4
        before = _taken(api, posts[-1])
    assert [status for status, _ in before] == [409] * 3
    assert "'q4' was scored before with another text" in before[0][1]
    assert all("'q4' belongs to another account" in detail for _, detail in before[1:])
    with open_api(tmp_path, url, pipeline.classifier, policy=shipped) as api:
        assert _taken(api, posts[-1]) == before
        # the post stands as it was: its text in the window, counted once, its own again
        again = api.score(posts[-1]).json()
        assert again["cluster"]["size"] == 4 and again["account_id"] == "qa4"
        copy = {**posts[-1], "id": "q9", "account_id": "qa9"}
        assert api.score(copy).json()["cluster"]["size"] == 5
        kitten = api.score({**copy, "id": "k1", "text": KITTEN}).json()
        assert kitten["cluster"] is None


def test_replicas_on_one_redis_refuse_an_edit_or_another_accounts_post(
    tmp_path: Path, pipeline: Pipeline
) -> None:
    prefix = f"test:{uuid.uuid4().hex[:12]}"
    shared: dict[str, Any] = {"redis_url": REDIS, "neardup_redis_prefix": prefix}
    shipped = Settings().policy_file
    post = {"id": "r1", "text": BENIGN, "account_id": "ra", "created_at": time.time()}
    for side in ("a", "b"):
        (tmp_path / side).mkdir()
    try:
        with (
            open_api(
                tmp_path / "a",
                f"sqlite:///{tmp_path / 'a.db'}",
                pipeline.classifier,
                policy=shipped,
                **shared,
            ) as first,
            open_api(
                tmp_path / "b",
                f"sqlite:///{tmp_path / 'b.db'}",
                pipeline.classifier,
                policy=shipped,
                **shared,
            ) as second,
        ):
            assert first.score(post).json()["decision"] == "pass"
            # the second replica never held the post's record: the shared window refuses alike
            assert _taken(second, post) == _taken(first, post)
            copy = second.score({**post, "id": "r2", "account_id": "rb"}).json()
            assert copy["cluster"]["size"] == 2 and copy["cluster"]["earliest"]["id"] == "r1"
    finally:
        client = redis.Redis.from_url(REDIS)
        for key in client.scan_iter(f"{prefix}:*"):
            client.delete(key)


def test_readiness_reports_a_shared_index_that_is_away(tmp_path: Path, pipeline: Pipeline) -> None:
    url = f"sqlite:///{tmp_path / 'd.db'}"
    with open_api(tmp_path, url, pipeline.classifier, redis_url="redis://127.0.0.1:1/0") as api:
        scored = api.score(
            {"id": "x", "text": copy(1), "account_id": "a", "created_at": time.time()}
        )
        assert scored.status_code == 200 and scored.json()["degraded"]
        ready = api.client.get("/readyz").json()
        assert ready["status"] == "degraded"
        assert any("near-duplicate index" in p for p in ready["problems"])


def test_a_cluster_id_names_a_cluster_and_nothing_else_in_redis(
    tmp_path: Path, pipeline: Pipeline
) -> None:
    prefix = f"test:{uuid.uuid4().hex[:12]}"
    url = f"sqlite:///{tmp_path / 'k.db'}"
    now = time.time()
    posts = [
        {"id": f"p{i}", "text": copy(i), "account_id": f"acct{i}", "created_at": now + i}
        for i in range(6)
    ]
    try:
        with open_api(
            tmp_path, url, pipeline.classifier, redis_url=REDIS, neardup_redis_prefix=prefix
        ) as api:
            cid = api.batch(posts).json()["records"][-1]["cluster"]["id"]
            reviewer = api.headers(api.new_key("reviewer"))
            assert api.client.get(f"/v1/clusters/{cid}", headers=reviewer).status_code == 200
            # the cluster's member list, account set and recent accounts are keys beside it
            for other in (f"{cid}:m", f"{cid}:a", f"{cid}:r", f"{cid}%0A", "c_nope", "x:y"):
                got = api.client.get(f"/v1/clusters/{other}", headers=reviewer)
                assert got.status_code == 404, (other, got.text)
    finally:
        client = redis.Redis.from_url(REDIS)
        for key in client.scan_iter(f"{prefix}:*"):
            client.delete(key)


def test_clusters_are_503_while_the_shared_index_is_away(
    tmp_path: Path, pipeline: Pipeline
) -> None:
    url = f"sqlite:///{tmp_path / 'e.db'}"
    with open_api(tmp_path, url, pipeline.classifier, redis_url="redis://127.0.0.1:1/0") as api:
        reviewer = api.headers(api.new_key("reviewer"))
        # scoring falls back to this process's window, which the cluster reads do not answer from
        scored = api.score({"id": "p1", "text": copy(1), "account_id": "a"})
        assert scored.status_code == 200, scored.text
        for path in ("/v1/clusters", "/v1/clusters/c_0123456789abcdef"):
            away = api.client.get(path, headers=reviewer)
            assert away.status_code == 503, (path, away.text)
            assert away.headers["Retry-After"] == "1"
            assert away.json() == {"detail": "the near-duplicate index is unavailable; try again"}


def test_two_apps_on_one_redis_see_one_batch(tmp_path: Path, pipeline: Pipeline) -> None:
    prefix = f"test:{uuid.uuid4().hex[:12]}"
    shared: dict[str, Any] = {"redis_url": REDIS, "neardup_redis_prefix": prefix}
    now = time.time()
    posts = [
        {"id": f"p{i}", "text": copy(i), "account_id": f"acct{i}", "created_at": now + i}
        for i in range(6)
    ]
    for side in ("a", "b"):
        (tmp_path / side).mkdir()
    try:
        with (
            open_api(
                tmp_path / "a", f"sqlite:///{tmp_path / 'a.db'}", pipeline.classifier, **shared
            ) as first,
            open_api(
                tmp_path / "b", f"sqlite:///{tmp_path / 'b.db'}", pipeline.classifier, **shared
            ) as second,
        ):
            assert first.batch(posts[:3]).status_code == 200
            records = second.batch(posts[3:]).json()["records"]
            assert [r["flags"]["coordination"] for r in records] == [True] * 3
            assert [r["scores"]["coordination"] for r in records] == [0.8, 1.0, 1.0]
            assert records[-1]["cluster"]["earliest"]["id"] == "p0"
            cid = records[-1]["cluster"]["id"]
            reviewer = first.headers(first.new_key("reviewer"))
            assert first.client.get(f"/v1/clusters/{cid}", headers=reviewer).json()["size"] == 6
    finally:
        client = redis.Redis.from_url(REDIS)
        for key in client.scan_iter(f"{prefix}:*"):
            client.delete(key)


def test_the_window_is_written_while_serving(tmp_path: Path, pipeline: Pipeline) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    snapshot = tmp_path / "state" / "neardup.pickle"
    with open_api(tmp_path, url, pipeline.classifier, neardup_snapshot_s=0.05) as api:
        api.score({"id": "p", "text": copy(1), "account_id": "a", "created_at": time.time()})
        deadline = time.monotonic() + 60  # a bound of the test's own: written every 0.05 s
        while not snapshot.is_file() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert snapshot.is_file()
