"""``POST /v1/score`` and ``/v1/score/batch``: records, policy actions, idempotency, bad input."""

from __future__ import annotations

import gzip
import json
import logging
import re
import shutil
import threading
import time
import zlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio.to_thread
import pytest
from servicekit import Api, Troubled, open_api, wait_for, write_policy

from service.classify import Classifier
from service.evidence_process import EvidenceLostError
from service.explaining import NO_EVIDENCE
from service.ingest import LineError, PostLine, parse_line
from service.pipeline import Pipeline
from service.record import SHOWN_CHARS, Post, ScoreRecord, text_digest, unix_seconds
from service.storage import Pending, open_repository

RUMOR = "紧急扩散！明天起全市停水三天，自来水厂已被污染，赶紧囤水，转给家人！"
PLAIN = "周末和家人去公园散步，天气很好，拍了几张荷花的照片。"


def test_a_post_gets_its_score_record_and_a_request_id(api: Api) -> None:
    response = api.score({"id": 42, "text": RUMOR, "account_id": "u1"})
    assert response.status_code == 200
    record = ScoreRecord.model_validate(response.json())
    assert (record.id, record.account_id) == ("42", "u1")
    assert record.decision == "review"  # the test policy reviews everything
    assert record.policy_version == "test-review-all"
    assert record.model_version == api.services.scoring.model_version
    assert not record.degraded
    assert all(0.0 <= s <= 1.0 for s in record.scores.values())
    assert len(response.headers["x-request-id"]) >= 16


def test_a_post_of_a_known_key_is_answered_without_a_hand_off_to_the_thread_pool(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each hand-off is a wake-up of a pool thread and of the loop again, for every post: a
    known key, the services and the answer need none."""
    assert api.score({"id": "first", "text": PLAIN}).status_code == 200
    handed: list[object] = []
    run_sync = anyio.to_thread.run_sync

    async def counted(func: Callable[..., object], *args: object, **kwargs: Any) -> object:
        handed.append(func)
        return await run_sync(func, *args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", counted)
    assert api.score({"id": "second", "text": PLAIN}).status_code == 200
    assert handed == []


def test_the_same_post_id_again_returns_the_first_record_and_is_counted_once(
    tmp_path: Path, database_url: str, pipeline: Pipeline
) -> None:
    with open_api(tmp_path, database_url, pipeline.classifier) as api:
        first = api.score({"id": "p1", "text": RUMOR}).json()
        again = api.score({"id": "p1", "text": RUMOR}).json()
        in_batch = api.batch([{"id": "p1", "text": RUMOR}]).json()["records"][0]
        # the evidence spans may arrive between the answers: everything else is the first record
        assert {
            json.dumps(without_evidence(r), sort_keys=True) for r in (first, again, in_batch)
        } == {json.dumps(without_evidence(first), sort_keys=True)}
        assert first["text_digest"] == text_digest(RUMOR)
        api.settle()
        explained = api.score({"id": "p1", "text": RUMOR}).json()
        assert without_evidence(explained) == without_evidence(first)
        assert not explained["evidence_pending"]
        repository = api.services.scoring.repository
        assert [(q.post_id, q.policy_version) for q in repository.queue()] == [
            ("p1", "test-review-all")
        ]
        assert (
            repository.find_records(["p1"], first["model_version"], first["policy_version"])[
                "p1"
            ].model_dump(mode="json")
            == explained
        )
        metrics = api.client.get("/metrics").text
        assert 'qinglang_decisions_total{decision="review"} 1.0' in metrics


def without_evidence(record: dict[str, object]) -> dict[str, object]:
    return {k: v for k, v in record.items() if k not in ("reasons", "evidence_pending")}


def test_the_answer_goes_out_before_the_evidence_which_is_stored_after(api: Api) -> None:
    answer = api.score({"id": "ev", "text": RUMOR}).json()
    assert answer["evidence_pending"]  # the test policy flags every risk
    assert all("spans" not in r["evidence"] for r in answer["reasons"])
    api.settle()
    stored = api.services.scoring.repository.find_records(
        ["ev"], answer["model_version"], answer["policy_version"]
    )["ev"]
    assert not stored.evidence_pending
    assert without_evidence(stored.model_dump(mode="json")) == without_evidence(answer)
    by_code = {r.code: r.evidence for r in stored.reasons}
    rumor = next(r for r in answer["reasons"] if r["code"].endswith("false_information"))
    spans = by_code[rumor["code"]]["spans"]
    assert isinstance(spans, list)
    assert spans, "a post flagged at review 0 for rumour has the spans that drove its score"
    assert all(RUMOR[s["start"] : s["end"]] == s["text"] for s in spans)


def test_the_evidence_backlog_is_a_gauge(tmp_path: Path, pipeline: Pipeline) -> None:
    search = Troubled(pipeline.classifier, tmp_path)
    search.hold.touch()
    with open_api(tmp_path, f"sqlite:///{tmp_path / 'held.db'}", search) as api:
        api.batch([{"id": f"g{i}", "text": f"{RUMOR}{i}"} for i in range(3)])
        assert "qinglang_evidence_waiting 3.0" in api.client.get("/metrics").text
        search.hold.unlink()
        api.settle()
        assert "qinglang_evidence_waiting 0.0" in api.client.get("/metrics").text


def test_past_the_evidence_backlog_records_stay_pending_and_are_counted(api: Api) -> None:
    api.services.scoring.max_waiting_evidence = 0
    answer = api.score({"id": "full", "text": RUMOR}).json()
    api.settle()
    stored = api.services.scoring.repository.find_records(
        ["full"], answer["model_version"], answer["policy_version"]
    )
    assert stored["full"].evidence_pending
    assert "qinglang_evidence_skipped_records_total 1.0" in api.client.get("/metrics").text


def test_a_server_stopped_while_the_evidence_process_searches_does_not_wait_for_the_search(
    tmp_path: Path, pipeline: Pipeline
) -> None:
    """The evidence process is idle-scheduled: on a busy host one search takes minutes. Stopping
    waits for it no more than the few seconds it gives the process to end; its record stays
    pending, for a sweep."""
    search = Troubled(pipeline.classifier, tmp_path)
    search.hold.touch()
    # a stop that waited for the search would wait this long, not for ever
    released = threading.Timer(60, search.hold.unlink)
    released.start()
    url = f"sqlite:///{tmp_path / 'stop.db'}"
    try:
        with open_api(tmp_path, url, search) as api:
            answer = api.score({"id": "slow", "text": RUMOR}).json()
            wait_for(lambda: "qinglang_evidence_waiting 1.0" in api.client.get("/metrics").text)
            stopping = time.monotonic()
        stopped = time.monotonic() - stopping
    finally:
        released.cancel()
    assert stopped < 30
    repository = open_repository(url, 2.0)
    try:
        versions = answer["model_version"], answer["policy_version"]
        assert repository.find_records(["slow"], *versions)["slow"].evidence_pending
    finally:
        repository.close()


def test_a_record_left_evidence_pending_gets_its_spans_from_the_next_process_sweep(
    tmp_path: Path, pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'sweep.db'}"
    with open_api(tmp_path, url, pipeline.classifier) as full:
        full.services.scoring.max_waiting_evidence = 0
        answer = full.score({"id": "left", "text": RUMOR}).json()
        full.settle()
    versions = answer["model_version"], answer["policy_version"]
    lease_s = 0.5
    with open_api(
        tmp_path, url, pipeline.classifier, evidence_lease_s=lease_s, storage_retry_s=0.05
    ) as next_process:
        scoring = next_process.services.scoring
        repository = scoring.repository
        search = scoring.evidence_process.explain
        released = threading.Event()
        searched: list[list[str]] = []

        def held(posts: list[Post], records: list[ScoreRecord]) -> list[ScoreRecord]:
            # the idle-scheduled process of a busy host, which starts once a core falls idle
            searched.append([r.id for r in records])
            released.wait()
            return search(posts, records)

        monkeypatch.setattr(scoring.evidence_process, "explain", held)
        try:
            # the sweep runs when the process starts and every storage_retry_s, and claims the
            # record once it is older than the lease
            wait_for(lambda: searched == [["left"]])
            claimed = time.monotonic()
            # sweeps go on while the search waits past its claim's lease: none takes it again
            wait_for(lambda: time.monotonic() - claimed > 4 * lease_s)
        finally:
            released.set()

        def filled() -> bool:
            next_process.settle()
            return not repository.find_records(["left"], *versions)["left"].evidence_pending

        wait_for(filled)
        stored = repository.find_records(["left"], *versions)["left"]
        assert without_evidence(stored.model_dump(mode="json")) == without_evidence(answer)
        rumor = next(r for r in stored.reasons if r.code.endswith("false_information"))
        assert rumor.evidence["spans"]
        assert searched == [["left"]]
        metrics = next_process.client.get("/metrics").text
        assert "qinglang_evidence_swept_records_total 1.0" in metrics


def test_a_process_without_evidence_leaves_the_spans_to_one_with_it(
    tmp_path: Path, pipeline: Pipeline
) -> None:
    url = f"sqlite:///{tmp_path / 'roles.db'}"
    with open_api(
        tmp_path, url, pipeline.classifier, evidence=False, evidence_lease_s=0.01
    ) as fast:
        answer = fast.score({"id": "fast", "text": RUMOR}).json()
        fast.settle()
        assert fast.services.scoring.repository.find_records(
            ["fast"], answer["model_version"], answer["policy_version"]
        )["fast"].evidence_pending
        assert "qinglang_evidence_swept_records_total 0.0" in fast.client.get("/metrics").text
    with open_api(tmp_path, url, pipeline.classifier, evidence_lease_s=0.01) as full:
        repository = full.services.scoring.repository

        def filled() -> bool:
            full.settle()
            return not repository.find_records(
                ["fast"], answer["model_version"], answer["policy_version"]
            )["fast"].evidence_pending

        wait_for(filled)


def test_a_post_whose_evidence_search_fails_is_stored_without_spans_and_not_swept_again(
    tmp_path: Path, pipeline: Pipeline
) -> None:
    search = Troubled(pipeline.classifier, tmp_path)
    search.fail.touch()
    with open_api(tmp_path, f"sqlite:///{tmp_path / 'failing.db'}", search) as api:
        answer = api.score({"id": "poison", "text": f"{RUMOR}（出错）"}).json()
        api.settle()
        repository = api.services.scoring.repository
        versions = answer["model_version"], answer["policy_version"]
        stored = repository.find_records(["poison"], *versions)["poison"]
        assert (stored.scores, stored.decision) == (answer["scores"], answer["decision"])
        assert not stored.evidence_pending and NO_EVIDENCE in stored.warnings
        assert repository.claim_pending_evidence(answer["model_version"], 10, lease_s=0.0) == []


def test_a_post_whose_search_ends_the_evidence_process_is_given_up_after_its_attempts(
    tmp_path: Path, pipeline: Pipeline, caplog: pytest.LogCaptureFixture
) -> None:
    search = Troubled(pipeline.classifier, tmp_path)
    search.poison.write_text("荷花")  # of PLAIN alone: its search ends the evidence process
    url = f"sqlite:///{tmp_path / 'poison.db'}"
    posts = [{"id": "fine", "text": RUMOR}, {"id": "poison", "text": PLAIN}]
    with open_api(tmp_path, url, search, evidence_attempts=2) as api:
        (fine, poison) = api.batch(posts).json()["records"]
        api.settle()
        repository = api.services.scoring.repository
        versions = fine["model_version"], fine["policy_version"]
        stored = repository.find_records(["fine", "poison"], *versions)
        # the search of the call's first post stands, though the process ended on the second
        assert not stored["fine"].evidence_pending
        rumor = next(r for r in stored["fine"].reasons if r.code.endswith("false_information"))
        assert rumor.evidence["spans"]
        assert stored["poison"].evidence_pending
    # its claim, renewed by the first process's sweeps while it searched, lapsed a lease after
    # the last: as if that lease had passed
    lapsed = datetime.now(UTC) - timedelta(seconds=1)
    repository.renew_evidence_claims([("poison", *versions)], 0.0, lapsed)
    # the next process's sweep tries once more, and gives it up
    with open_api(tmp_path, url, search, evidence_attempts=2, evidence_lease_s=0.01) as api:
        repository = api.services.scoring.repository

        def given_up() -> bool:
            api.settle()
            return not repository.find_records(["poison"], *versions)["poison"].evidence_pending

        wait_for(given_up, 60)
        stored = repository.find_records(["poison"], *versions)
        assert NO_EVIDENCE in stored["poison"].warnings
        assert stored["poison"].decision == poison["decision"]
        assert repository.claim_pending_evidence(versions[0], 10, lease_s=0.0) == []
        metrics = api.client.get("/metrics").text
        assert "qinglang_evidence_given_up_records_total 1.0" in metrics
    (said,) = [r for r in caplog.records if r.getMessage() == "evidence given up"]
    assert said.post_id == "poison"  # type: ignore[attr-defined]


def test_the_posts_after_one_whose_search_ends_the_process_are_searched_by_the_next_at_once(
    tmp_path: Path, database_url: str, pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The process ended on the call's first post: the posts after it are innocent of it, and
    are searched by the next process in the same call, not left for a sweep a lease later; only
    the post it ended on has the failure counted against it."""
    search = Troubled(pipeline.classifier, tmp_path)
    search.poison.write_text("荷花")  # of PLAIN alone: its search ends the evidence process
    posts = [{"id": "poison", "text": PLAIN}, {"id": "after", "text": RUMOR}]
    with open_api(tmp_path, database_url, search, evidence_attempts=2) as api:
        repository = api.services.scoring.repository
        count = repository.count_failed_search
        counted: list[str] = []

        def counting(record: ScoreRecord, given_up: ScoreRecord, attempts: int) -> bool:
            counted.append(record.id)
            return count(record, given_up, attempts)

        monkeypatch.setattr(repository, "count_failed_search", counting)
        (poison, _) = api.batch(posts).json()["records"]
        api.settle()
        versions = poison["model_version"], poison["policy_version"]
        stored = repository.find_records(["poison", "after"], *versions)
        assert not stored["after"].evidence_pending
        assert NO_EVIDENCE not in stored["after"].warnings
        rumor = next(r for r in stored["after"].reasons if r.code.endswith("false_information"))
        assert rumor.evidence["spans"]
        assert stored["poison"].evidence_pending
        assert counted == ["poison"]


def test_the_post_a_search_failed_on_is_left_to_the_sweep_while_its_call_goes_on(
    tmp_path: Path, pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The process stopped on the call's first post; the next one searches the rest of the call,
    as long as that takes on a busy host. The post it stopped on is no longer searched here: its
    claim is not renewed meanwhile, and a sweep takes it up a lease after it was stored, not a
    lease after the whole call is done."""
    url = f"sqlite:///{tmp_path / 'left.db'}"
    with open_api(
        tmp_path, url, pipeline.classifier, evidence_lease_s=0.01, storage_retry_s=0.05
    ) as api:
        scoring = api.services.scoring
        search = scoring.evidence_process.explain
        released = threading.Event()
        calls: list[list[str]] = []

        def stopping_once(posts: list[Post], records: list[ScoreRecord]) -> list[ScoreRecord]:
            calls.append([r.id for r in records])
            if len(calls) == 1:
                raise EvidenceLostError("the evidence process stopped (exit code 70)")
            # the next process, idle-scheduled on a busy host, waits for a core
            released.wait()
            return search(posts, records)

        monkeypatch.setattr(scoring.evidence_process, "explain", stopping_once)
        try:
            api.batch([{"id": "lost", "text": f"{RUMOR}1"}, {"id": "after", "text": f"{RUMOR}2"}])
            wait_for(lambda: calls == [["lost", "after"], ["after"]])
            swept = "qinglang_evidence_swept_records_total 1.0"
            wait_for(lambda: swept in api.client.get("/metrics").text)
        finally:
            released.set()
        api.settle()
        assert calls == [["lost", "after"], ["after"], ["lost"]]


def test_the_posts_of_a_call_on_a_closed_evidence_process_are_left_to_a_sweep_at_once(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    """A closed process fails every call: the call's posts are left ``evidence_pending`` for the
    next server's sweep together, with one warning, not handed one by one to a process that will
    never come."""
    api.services.scoring.evidence_process.close()
    caplog.set_level(logging.WARNING, logger="service.scoring")
    records = api.batch([{"id": f"r{i}", "text": f"{RUMOR}{i}"} for i in range(4)]).json()
    api.settle()
    assert all(record["evidence_pending"] for record in records["records"])
    assert [r.getMessage() for r in caplog.records].count("evidence not found") == 1


def test_a_new_process_finds_the_stored_record_instead_of_scoring_again(
    tmp_path: Path, database_url: str, pipeline: Pipeline
) -> None:
    with open_api(tmp_path, database_url, pipeline.classifier) as api:
        first = api.score({"id": "p1", "text": RUMOR}).json()
        api.settle()
    with open_api(tmp_path, database_url, pipeline.classifier) as restarted:
        found = restarted.score({"id": "p1", "text": RUMOR}).json()
        # the first process stored the evidence
        assert without_evidence(found) == without_evidence(first)
        assert not found["evidence_pending"]
        # the stored record names its text, so an edit is refused after a restart too
        assert restarted.score({"id": "p1", "text": PLAIN}).status_code == 409
        assert len(restarted.services.scoring.repository.queue()) == 1


def test_the_same_id_with_another_text_is_refused_and_the_first_record_stands(
    tmp_path: Path, database_url: str, pipeline: Pipeline
) -> None:
    with open_api(tmp_path, database_url, pipeline.classifier) as api:
        first = api.score({"id": "p1", "text": RUMOR}).json()
        edited = api.score({"id": "p1", "text": RUMOR + "（已更正）"})
        assert edited.status_code == 409
        assert "'p1' was scored before with another text" in edited.json()["detail"]
        # in a batch: an error in place, whether the first text came earlier or in this batch
        records = api.batch(
            [
                {"id": "p1", "text": PLAIN},
                {"id": "p2", "text": PLAIN},
                {"id": "p2", "text": RUMOR},
                {"id": "p1", "text": RUMOR},
            ]
        ).json()["records"]
        assert [(r["index"], r["status"], r["id"]) for r in records if "status" in r] == [
            (0, 409, "p1"),
            (2, 409, "p2"),
        ]
        assert records[1]["text_digest"] == text_digest(PLAIN)
        assert records[3]["text_digest"] == first["text_digest"] == text_digest(RUMOR)
        api.settle()
        repository = api.services.scoring.repository
        # one record and one item for p1, of its first text
        assert [q.post_id for q in repository.queue()].count("p1") == 1
        assert repository.find_records(["p1"], first["model_version"], first["policy_version"])[
            "p1"
        ].text_digest == (text_digest(RUMOR))
        metrics = api.client.get("/metrics").text
        assert "qinglang_score_conflicts_total 3.0" in metrics


def test_a_post_id_of_another_account_is_refused_and_its_post_stands(
    tmp_path: Path, database_url: str, pipeline: Pipeline
) -> None:
    post = {"id": "p1", "text": RUMOR, "account_id": "a"}
    with open_api(tmp_path, database_url, pipeline.classifier) as api:
        first = api.score(post).json()
        # another account, or none, with the text of the post or another: the post is a's
        for taken in ({**post, "account_id": "b"}, {**post, "text": PLAIN, "account_id": "b"}):
            refused = api.score(taken)
            assert refused.status_code == 409
            assert "post 'p1' belongs to another account" in refused.json()["detail"]
        assert api.score({"id": "p1", "text": RUMOR}).status_code == 409
        # in a batch: the post of another account, whether the first came earlier or in it
        records = api.batch(
            [
                {**post, "account_id": "b"},
                {"id": "p2", "text": PLAIN, "account_id": "b"},
                {"id": "p2", "text": PLAIN, "account_id": "c"},
            ]
        ).json()["records"]
        assert [(r["index"], r["status"]) for r in records if "status" in r] == [(0, 409), (2, 409)]
        assert "belongs to another account" in records[2]["errors"][0]["msg"]
        api.settle()
        assert "qinglang_score_conflicts_total 5.0" in api.client.get("/metrics").text
    with open_api(tmp_path, database_url, pipeline.classifier) as restarted:
        # the stored record names its account
        assert restarted.score({**post, "account_id": "b"}).status_code == 409
        again = restarted.score(post).json()
        assert without_evidence(again) == without_evidence(first)
        repository = restarted.services.scoring.repository
        assert [q.post_id for q in repository.queue()].count("p1") == 1
        stored = repository.find_records(["p1"], first["model_version"], first["policy_version"])[
            "p1"
        ]
        assert (stored.account_id, stored.text_digest) == ("a", text_digest(RUMOR))


def test_a_changed_model_scores_again_into_a_new_versioned_record(
    tmp_path: Path, pipeline: Pipeline
) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    model_dir = tmp_path / "model-v2"
    shutil.copytree(pipeline.classifier.path.parent, model_dir)
    card = json.loads((model_dir / "card.json").read_text())
    card["model_version"] = "sha256:retrained000000"
    (model_dir / "card.json").write_text(json.dumps(card))
    with open_api(tmp_path, url, pipeline.classifier) as api:
        old = api.score({"id": "p1", "text": RUMOR}).json()
    with open_api(tmp_path, url, Classifier(model_dir)) as api:
        new = api.score({"id": "p1", "text": RUMOR}).json()
        queue = api.services.scoring.repository.queue()
    assert (old["model_version"], new["model_version"]) == (
        pipeline.model_version,
        "sha256:retrained000000",
    )
    # the post is reviewed once: its open item moved to the new model's record
    assert [q.model_version for q in queue] == [new["model_version"]]


def test_the_policy_decides_what_is_stored_and_what_is_enqueued(
    tmp_path: Path, pipeline: Pipeline
) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    nothing = write_policy(tmp_path / "nothing.toml", persist=(), enqueue=(), version="v-none")
    with open_api(tmp_path, url, pipeline.classifier, policy=nothing) as api:
        record = api.score({"id": "a", "text": RUMOR}).json()
        assert record["decision"] == "review"
        assert (
            api.services.scoring.repository.find_records(
                ["a"], record["model_version"], record["policy_version"]
            )
            == {}
        )
    stored = write_policy(tmp_path / "store.toml", persist=("review",), enqueue=(), version="v-s")
    with open_api(tmp_path, url, pipeline.classifier, policy=stored) as api:
        record = api.score({"id": "b", "text": RUMOR}).json()
        repository = api.services.scoring.repository
        found = repository.find_records(["b"], record["model_version"], record["policy_version"])[
            "b"
        ]
        assert found.policy_version == "v-s"
        assert repository.queue() == []


def test_a_batch_answers_in_input_order_with_errors_in_place(api: Api) -> None:
    response = api.batch(
        [
            {"id": "b0", "text": RUMOR},
            {"id": "b1"},
            7,
            {"id": "b3", "text": "长" * 10_001},
            {"id": "b4", "text": "a\x00b"},
            {"id": "b0", "text": PLAIN},
            {"id": "b6", "text": PLAIN},
        ]
    )
    assert response.status_code == 200
    body = response.json()
    records = body["records"]
    assert [r.get("id") for r in records] == ["b0", "b1", None, "b3", "b4", "b0", "b6"]
    assert "scores" in records[0] and "scores" in records[6]
    assert [(r["index"], r["status"]) for r in records if "status" in r] == [
        (1, 422),
        (2, 422),
        (3, 413),
        (4, 422),
        (5, 409),
    ]
    assert records[1]["errors"][0]["loc"] == ["text"]
    assert "10000" in records[3]["errors"][0]["msg"]
    assert body["degraded"] is False
    assert len(api.services.scoring.repository.queue()) == 2  # b0 once, b6


def test_a_copy_claimed_original_with_source_the_net_is_flagged_and_one_naming_a_source_not(
    tmp_path: Path, pipeline: Pipeline
) -> None:
    """Article 17 asks a repost to name a source that can be traced: 网络 names none."""
    policy = write_policy(tmp_path / "half.toml", review=0.5, version="v-half")
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    now = time.time()
    reasons: dict[str, list[str]] = {}
    with open_api(tmp_path, url, pipeline.classifier, policy=policy) as api:
        original = {"id": "o", "text": RUMOR, "account_id": "author", "created_at": now - 600}
        assert api.score(original).status_code == 200
        for source in ("网络", "新华网"):
            copy = {
                "id": f"copy-{source}",
                "text": "速看！" + RUMOR.replace("三", "五"),
                "account_id": f"copier-{source}",
                "created_at": now,
                "declared_original": True,
                "source": source,
            }
            record = ScoreRecord.model_validate(api.score(copy).json())
            assert record.flags["fake_originality"] == (record.scores["fake_originality"] > 0.5)
            reasons[source] = [r.code for r in record.reasons if r.evidence.get("earlier_post")]
    assert reasons == {"网络": ["art18.6.forged_originality"], "新华网": []}


def test_declared_original_takes_json_booleans_and_null_as_not_given(api: Api) -> None:
    assert api.score({"id": "n", "text": PLAIN, "declared_original": None}).status_code == 200
    refused = api.score({"id": "y", "text": PLAIN, "declared_original": "yes"})
    assert refused.status_code == 422
    assert refused.json()["detail"][0]["loc"][-1] == "declared_original"


def test_batch_limits(api: Api) -> None:
    assert api.batch([]).json() == {"records": [], "degraded": False}
    many = [{"id": str(i), "text": "文"} for i in range(256)]
    assert len(api.batch(many).json()["records"]) == 256
    too_many = api.batch([*many, {"id": "x", "text": "文"}])
    assert too_many.status_code == 422
    assert too_many.json()["detail"][0]["loc"] == ["body", "posts"]
    assert "257 posts; the limit is 256" in too_many.json()["detail"][0]["msg"]


def test_the_batch_limit_is_the_setting(tmp_path: Path, pipeline: Pipeline) -> None:
    url = f"sqlite:///{tmp_path / 'api.db'}"
    with open_api(tmp_path, url, pipeline.classifier, max_batch_posts=300) as api:
        posts = [{"id": str(i), "text": "文"} for i in range(300)]
        assert len(api.batch(posts).json()["records"]) == 300
        over = api.batch([*posts, {"id": "x", "text": "文"}])
        assert over.status_code == 422 and "the limit is 300" in over.json()["detail"][0]["msg"]
        document = api.client.get("/openapi.json").json()["components"]["schemas"]
        assert document["BatchRequest"]["properties"]["posts"]["maxItems"] == 300
    (tmp_path / "small").mkdir()
    with open_api(tmp_path / "small", url, pipeline.classifier, max_batch_posts=5) as api:
        assert api.batch(posts[:6]).status_code == 422
        assert api.batch(posts[:5]).status_code == 200


def test_bad_input_is_a_4xx_with_the_field_and_never_a_500(api: Api) -> None:
    def post(body: bytes) -> tuple[int, object]:
        headers = {**api.headers(), "Content-Type": "application/json"}
        response = api.client.post("/v1/score", content=body, headers=headers)
        return response.status_code, response.json()

    status, detail = post(b'{"id": "1", "text": ')
    assert status == 422 and detail["detail"][0]["type"] == "json_invalid"  # type: ignore[index]
    cases = {
        b'{"text": "x"}': ["body", "id"],
        b'{"id": "1", "text": 5}': ["body", "text"],
        b'{"id": [1], "text": "x"}': ["body", "id"],
        b'{"id": " \\t", "text": "x"}': ["body", "id"],
        b'{"id": "1", "text": "a\\u0000b"}': ["body", "text"],
        b'{"id": "1", "text": "a\\ud800b"}': ["body", "text"],
        b'{"id": "1\\udfff", "text": "x"}': ["body", "id"],
        b'{"id": "1", "text": "x", "created_at": "yesterday"}': ["body", "created_at"],
        # values storage cannot hold are refused at the door, not spooled for ever
        b'{"id": "1", "text": "x", "created_at": NaN}': ["body", "created_at"],
        b'{"id": "1", "text": "x", "created_at": "inf"}': ["body", "created_at"],
        b'{"id": "1", "text": "x", "created_at": 1733400000000}': ["body", "created_at"],
        b'{"id": "1", "text": "x", "account_id": "' + b"A" * 257 + b'"}': ["body", "account_id"],
        b'{"id": "1", "text": "x", "account_id": " "}': ["body", "account_id"],
        b'["not", "an", "object"]': ["body"],
    }
    for body, loc in cases.items():
        status, detail = post(body)
        assert status == 422, body
        assert detail["detail"][0]["loc"] == loc, body  # type: ignore[index]
    status, detail = post(b'{"id": "1", "text": "\xff\xfe"}')
    assert status == 422 and detail["detail"][0]["loc"] == ["body", 21]  # type: ignore[index]
    assert detail["detail"][0]["msg"] == "the body is not UTF-8, so it is not JSON"  # type: ignore[index]
    for content_type in ("text/plain", "application/x-www-form-urlencoded"):
        plain = api.client.post(
            "/v1/score",
            content=b'{"id": "1", "text": "x"}',
            headers={**api.headers(), "Content-Type": content_type},
        )
        assert plain.status_code == 422
        (problem,) = plain.json()["detail"]
        assert problem["loc"] == ["header", "content-type"] and content_type in problem["msg"]
    # FastAPI reads no body without a content type as JSON, and said only "not an object"
    untyped = api.client.post(
        "/v1/score", content=b'{"id": "1", "text": "x"}', headers=api.headers()
    )
    assert "content-type" not in untyped.request.headers
    assert untyped.status_code == 422 and untyped.json()["detail"] == [
        {
            "loc": ["header", "content-type"],
            "msg": "the body is read as JSON: send it as application/json (a Content-Type was "
            "not given)",
            "type": "content_type",
        }
    ]
    typed = {**api.headers(), "Content-Type": "application/json; charset=utf-8"}
    assert api.client.post("/v1/score", json={"id": "1", "text": "x"}, headers=typed).is_success
    status, detail = post(json.dumps({"id": "1", "text": "长" * 10_001}).encode())
    assert status == 413 and "10001 characters" in detail["detail"]  # type: ignore[index]
    status, detail = post(b'{"id": "1", "text": "' + b"a" * (2 * 1024 * 1024) + b'"}')
    assert status == 413 and "limit" in detail["detail"]  # type: ignore[index]
    assert post(json.dumps({"id": "long", "text": "长" * 10_000}).encode())[0] == 200


def test_an_rfc_3339_created_at_may_write_its_t_and_z_lower_case(api: Api) -> None:
    lower = api.score({"id": "lower", "text": PLAIN, "created_at": "2026-01-01t08:00:00z"})
    assert lower.status_code == 200, lower.text
    assert unix_seconds("2026-01-01t08:00:00z") == unix_seconds("2026-01-01T08:00:00Z")


def test_an_iso_created_at_out_of_range_is_named_as_given(api: Api) -> None:
    # its seconds were shown instead, and past 9999 taken for milliseconds
    for given in ("9999-12-31T23:59:59-01:00", "1970-01-01T00:00:00+01:00"):
        response = api.score({"id": "late", "text": PLAIN, "created_at": given})
        assert response.status_code == 422
        (problem,) = response.json()["detail"]
        assert problem["loc"] == ["body", "created_at"]
        assert problem["msg"] == (
            f"Value error, created_at {given!r} is not a time from 1970 to 9999 (UTC)"
        )


def test_a_created_at_integer_too_large_for_a_float_is_named_out_of_range(api: Api) -> None:
    # past about 1.8e308 pydantic made no float of it and said "Input should be a valid number"
    # of a number, where a smaller one out of range is named as no time
    headers = {**api.headers(), "Content-Type": "application/json"}
    for given, shown in (
        ("9" * 400, "9" * 400),
        ("-" + "9" * 400, "-" + "9" * 400),
        # cut as any value a refusal quotes
        ("9" * 4000, "9" * SHOWN_CHARS + "… (4,000 characters)"),
    ):
        body = b'{"id": "big", "text": "x", "created_at": ' + given.encode() + b"}"
        said = f"Value error, created_at {shown} is not a time from 1970 to 9999"
        single = api.client.post("/v1/score", content=body, headers=headers)
        assert single.status_code == 422
        assert single.json()["detail"] == [
            {"loc": ["body", "created_at"], "msg": said, "type": "value_error"}
        ]
        batch = b'{"posts": [' + body + b"]}"
        response = api.client.post("/v1/score/batch", content=batch, headers=headers)
        (entry,) = response.json()["records"]
        assert entry["errors"] == [{"loc": ["created_at"], "msg": said, "type": "value_error"}]


def test_a_refused_value_is_quoted_cut_to_its_start_and_its_length(api: Api) -> None:
    # a 1.8 MB created_at made a 1.8 MB answer, and a batch entry echoed a long id whole
    given = "x" * 1_800_000
    response = api.score({"id": "long-time", "text": PLAIN, "created_at": given})
    assert response.status_code == 422
    (problem,) = response.json()["detail"]
    assert problem["loc"] == ["body", "created_at"]
    assert problem["msg"] == (
        f"Value error, created_at {given[:SHOWN_CHARS]!r}… (1,800,000 characters) is neither "
        "unix seconds nor ISO 8601"
    )
    # no other field of a post quotes what was given, in the single answer nor in a batch's
    for field in ("id", "account_id", "source", "created_at"):
        post = {"id": "long-field", "text": PLAIN, field: "长" * 300_000}
        single = api.score(post)
        assert single.status_code == 422 and len(single.content) < 4 * SHOWN_CHARS, field
        batch = api.batch([post])
        assert batch.status_code == 200 and len(batch.content) < 4 * SHOWN_CHARS, field
    (entry,) = api.batch([{"id": "长" * 300_000, "text": PLAIN}]).json()["records"]
    assert entry["status"] == 422 and entry["errors"][0]["loc"] == ["id"]
    assert (entry["id"], entry["id_chars"]) == ("长" * SHOWN_CHARS, 300_000)
    (entry,) = api.batch([{"id": "short", "text": 5}]).json()["records"]
    assert (entry["id"], entry["id_chars"]) == ("short", None)


def test_an_id_of_invisible_characters_is_blank_and_one_held_before_still_reads(api: Api) -> None:
    # a zero-width space passed the blank check (str.strip keeps it), and named a post or an
    # account that no reviewer could read
    for field in ("id", "account_id"):
        for given, first in (
            ("\u200b", "U+200B at index 0"),
            (" \u2060\ufeff", "U+2060 at index 1"),
            # combining marks with no letter to mark: shown on whatever precedes the id
            ("\u0301\u0301", "U+0301 at index 0"),
            ("\u200b\u20dd", "U+200B at index 0"),
        ):
            post = {"id": "visible", "text": PLAIN, field: given}
            response = api.score(post)
            assert response.status_code == 422, (field, given)
            (problem,) = response.json()["detail"]
            assert problem["loc"] == ["body", field] and problem["type"] == "blank"
            assert problem["msg"] == (
                f"{field} is blank: it holds only white space, invisible characters and "
                f"combining marks ({first})"
            )
            (entry,) = api.batch([post]).json()["records"]
            assert entry["status"] == 422 and entry["errors"][0]["loc"] == [field]
    # one that shows something beside them names a post
    assert api.score({"id": "p\u200b1", "text": PLAIN, "account_id": "\u200bu"}).status_code == 200
    assert api.score({"id": "e\u0301", "text": PLAIN, "account_id": "\u0301u"}).status_code == 200
    held = Post.accepted({"id": "\u200b", "text": PLAIN, "account_id": "\ufeff"})
    assert (held.id, held.account_id) == ("\u200b", "\ufeff")


def test_a_path_with_a_stray_trailing_slash_is_a_404_naming_the_route_not_a_redirect(
    api: Api,
) -> None:
    # Starlette redirected it (307) to an absolute http:// URL: a downgrade behind a proxy that
    # ends TLS, and a POST the client never meant to make twice
    post = {"id": "slash", "text": PLAIN}
    for method, path, meant in (
        ("post", "/v1/score/", "/v1/score"),
        ("post", "/v1/score/batch/", "/v1/score/batch"),
        ("get", "/v1/clusters/", "/v1/clusters"),
        ("get", "/healthz/", "/healthz"),
    ):
        answer = api.client.request(
            method, path, json=post, headers=api.headers(), follow_redirects=False
        )
        assert answer.status_code == 404 and "location" not in answer.headers, path
        assert answer.json() == {"detail": f"no such path: {path!r}; the path is {meant!r}"}
    assert api.client.get("/v1/nowhere").json() == {"detail": "no such path: '/v1/nowhere'"}
    # a route's own 404 keeps its words
    reviewer = api.headers(api.new_key("reviewer"))
    gone = api.client.get("/v1/clusters/c_0", headers=reviewer)
    assert (gone.status_code, gone.json()) == (404, {"detail": "no live cluster 'c_0'"})


def test_a_compressed_body_is_a_422_naming_its_content_encoding(api: Api) -> None:
    # read as it came, a gzip body was refused as "not UTF-8" at byte 1: nothing said that the
    # compression was the problem
    body = json.dumps({"id": "gz", "text": PLAIN}).encode()
    for encoding, sent in (("gzip", gzip.compress(body)), ("deflate", zlib.compress(body))):
        response = api.client.post(
            "/v1/score",
            content=sent,
            headers={
                **api.headers(),
                "Content-Type": "application/json",
                "Content-Encoding": encoding,
            },
        )
        assert response.status_code == 422
        assert response.json()["detail"] == [
            {
                "loc": ["header", "content-encoding"],
                "msg": "the body is read as sent: send it uncompressed, without "
                f"Content-Encoding (not {encoding!r})",
                "type": "content_encoding",
            }
        ]
    plain = {**api.headers(), "Content-Type": "application/json", "Content-Encoding": "identity"}
    assert api.client.post("/v1/score", content=body, headers=plain).status_code == 200


def test_a_body_the_json_parser_refuses_otherwise_is_a_422_on_every_json_route(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    # json.loads raises ValueError, RecursionError or UnicodeDecodeError for these, not the
    # JSONDecodeError FastAPI turns into a 422: FastAPI answered 400 "error parsing the body"
    refused = {
        b'{"id": ' + b"1" * 4301 + b', "text": "x"}': (
            ["body", "id"],
            "an integer of 4,301 digits, more than the 4,300 an integer may have",
        ),
        b'{"id": "1", "text": "x", "extra": ' + b"[" * 5000 + b"]" * 5000 + b"}": (
            ["body"],
            "JSON decode error: nested deeper than the parser allows (fewer than 1000 levels)",
        ),
        # valid UTF-8, but json.loads takes leading NUL bytes for UTF-32 and cannot decode it
        b'{\x00\x00\x00"': (
            ["body", 1],
            "JSON decode error: a NUL byte, which JSON text cannot hold",
        ),
    }
    paths = api.client.get("/openapi.json").json()["paths"]
    routes = [
        (re.sub(r"\{\w+\}", "1", path), method.upper())
        for path, operations in paths.items()
        for method, operation in operations.items()
        if "requestBody" in operation
    ]
    assert ("/v1/score/batch", "POST") in routes and ("/v1/accounts/1", "PUT") in routes
    headers = {**api.headers(api.new_key("admin")), "Content-Type": "application/json"}
    caplog.set_level(logging.INFO)
    for path, method in routes:
        # the body is parsed before the path's item or account is looked up
        for body, (loc, msg) in refused.items():
            response = api.client.request(method, path, content=body, headers=headers)
            assert response.status_code == 422, (path, body[:20], response.text)
            assert response.json() == {"detail": [{"loc": loc, "msg": msg, "type": "json_invalid"}]}
    assert api.score({"id": "after", "text": PLAIN}).status_code == 200
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    metrics = api.client.get("/metrics").text
    assert 'route="/v1/score",status="422"} 3.0' in metrics
    assert 'route="/v1/review/items/{item_id}/decision",status="422"} 3.0' in metrics
    assert 'status="400"' not in metrics


def test_an_integer_too_long_to_read_is_refused_at_its_field_as_rescore_refuses_it(
    api: Api,
) -> None:
    """int() reads 4,300 digits at most, and says so naming no field: the 422 was the whole
    body's ("an integer of more than 4300 digits") where ``qinglang rescore``'s reader named
    the field. Both read JSON by one rule (:func:`service.jsonload.loads`)."""
    headers = {**api.headers(), "Content-Type": "application/json"}
    long = b"-1" + b"0" * 5000
    for body, loc in (
        (b'{"id": "a", "text": "x", "account": {"id": ' + long + b"}}", ["account", "id"]),
        # outside the posts a batch checks one by one: the whole body's
        (b'{"posts": [{"id": "a", "text": "x"}], "n": ' + long + b"}", ["n"]),
    ):
        path = "/v1/score/batch" if "posts" in body.decode() else "/v1/score"
        response = api.client.post(path, content=body, headers=headers)
        assert response.status_code == 422
        (problem,) = response.json()["detail"]
        said = "an integer of 5,001 digits, more than the 4,300 an integer may have"
        assert problem == {"loc": ["body", *loc], "msg": said, "type": "json_invalid"}
        line = parse_line(1, body + b"\n")
        assert isinstance(line, LineError)
        assert line.message == f"{'.'.join(map(str, loc))}: {said}"
    # a key given twice keeps its last value: the long integer it replaced is not in the body,
    # as it is not in rescore's line (FastAPI's own parse refused it with a 400)
    replaced = b'{"id": ' + long + b', "id": "a", "text": "' + PLAIN.encode() + b'"}'
    answer = api.client.post("/v1/score", content=replaced, headers=headers)
    assert answer.status_code == 200 and answer.json()["id"] == "a"
    assert isinstance(parse_line(1, replaced + b"\n"), PostLine)


def test_an_integer_too_long_to_read_in_one_batch_post_is_that_post_s_entry(api: Api) -> None:
    """One post of a batch with an integer int() cannot read, in a field of its own or one the
    API ignores, refused the whole batch, the good posts beside it with it; it gets an entry in
    its place, at its field, as any other bad post of a batch."""
    long = b"1" + b"0" * 5000
    good = json.dumps({"id": "fine", "text": PLAIN}).encode()
    body = (
        b'{"posts": [' + good + b', {"id": ' + long + b', "text": "x"}, '
        b'{"id": "ignored-field", "text": "x", "extra": [0, ' + long + b"]}, " + good + b"]}"
    )
    headers = {**api.headers(), "Content-Type": "application/json"}
    response = api.client.post("/v1/score/batch", content=body, headers=headers)
    assert response.status_code == 200, response.text
    records = response.json()["records"]
    said = "an integer of 5,001 digits, more than the 4,300 an integer may have"
    assert records[1] == {
        "index": 1,
        "id": None,
        "id_chars": None,
        "status": 422,
        "errors": [{"loc": ["id"], "msg": said, "type": "json_invalid"}],
    }
    assert records[2] == {
        "index": 2,
        "id": "ignored-field",
        "id_chars": None,
        "status": 422,
        "errors": [{"loc": ["extra", 1], "msg": said, "type": "json_invalid"}],
    }
    assert ScoreRecord.model_validate(records[0]) == ScoreRecord.model_validate(records[3])
    assert records[0]["id"] == "fine"


def test_a_post_stored_under_two_policies_gets_each_process_s_own_policy_record(
    tmp_path: Path, pipeline: Pipeline
) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    first = write_policy(tmp_path / "first.toml", version="v-1")
    second = write_policy(tmp_path / "second.toml", version="v-2")
    post = {"id": "p1", "text": RUMOR}

    def judged(api: Api) -> tuple[str, str]:
        answer = api.score(post).json()
        return answer["policy_version"], answer["decision"]

    with open_api(tmp_path, url, pipeline.classifier, policy=first) as api:
        assert judged(api) == ("v-1", "review")
        api.settle()
        earliest = api.services.scoring.repository.find_records(
            ["p1"], pipeline.model_version, "v-1"
        )
    with open_api(tmp_path, url, pipeline.classifier, policy=second) as api:
        # no record under v-2 yet: the earliest answers
        assert judged(api) == ("v-1", "review")
        # a re-score under v-2 stores the post's own record (rescore --enqueue)
        rescored = earliest["p1"].model_copy(update={"policy_version": "v-2", "decision": "block"})
        api.services.scoring.repository.save_records([Pending(rescored, enqueue=True)])
        assert judged(api) == ("v-2", "block")
    with open_api(tmp_path, url, pipeline.classifier, policy=first) as api:
        assert judged(api) == ("v-1", "review")
