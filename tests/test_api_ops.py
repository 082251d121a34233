"""Probes, metrics, the OpenAPI document, request ids and the JSON logs."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory
from servicekit import Api, free_port, open_api

from service.api.ops import IN_THE_LOG
from service.batching import OverloadedError
from service.logs import JsonFormatter
from service.pipeline import Pipeline
from service.storage import StorageError, database
from service.storage.repository import Role

SECRET_TEXT = "只在请求里出现的正文内容"
RUMOR = "紧急扩散！明天起全市停水三天，自来水厂已被污染，赶紧囤水，转给家人！"


def test_healthz_and_readyz_when_all_is_well(api: Api) -> None:
    assert api.client.get("/healthz").json() == {"status": "ok"}
    ready = api.client.get("/readyz").json()
    assert ready["status"] == "ready" and ready["problems"] == [] and ready["spooled"] == 0
    assert ready["model_version"] == api.services.scoring.model_version
    assert ready["policy_version"] == "test-review-all"


def test_the_probes_answer_head_as_get_without_a_body(api: Api) -> None:
    # an uptime monitor that probes with HEAD must not find a live process down (405)
    for probe in ("/healthz", "/readyz"):
        head = api.client.head(probe)
        assert head.status_code == 200, probe
        assert head.content == b""
        assert head.headers["content-type"] == "application/json"


def test_readyz_names_storage_down_without_the_drivers_words_which_go_to_the_log(
    api: Api, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    said = 'connection to server at "db.internal" failed: no password for user "qinglang_rw"'

    def down() -> None:
        raise StorageError(said)

    monkeypatch.setattr(api.services.scoring.repository, "check", down)
    caplog.set_level(logging.WARNING)
    response = api.client.get("/readyz")
    assert response.status_code == 200
    ready = response.json()
    assert ready["status"] == "degraded"
    assert [p for p in ready["problems"] if p.startswith("storage unreachable")]
    assert "db.internal" not in response.text and "qinglang_rw" not in response.text
    assert [r for r in caplog.records if getattr(r, "problem", None) == said]


def test_readyz_names_the_shared_index_away_without_its_address(
    tmp_path: Path, pipeline: Pipeline, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    url = f"sqlite:///{tmp_path / 'r.db'}"
    with open_api(tmp_path, url, pipeline.classifier, redis_url="redis://127.0.0.1:1/0") as api:
        post = {"id": "x", "text": "紧急扩散！明天起全市停水三天，赶紧囤水，转给家人！"}
        assert api.score({**post, "account_id": "a", "created_at": time.time()}).json()["degraded"]
        response = api.client.get("/readyz")
    assert [p for p in response.json()["problems"] if "near-duplicate index" in p]
    assert "127.0.0.1:1" not in response.text
    assert [r for r in caplog.records if "127.0.0.1:1" in getattr(r, "problem", "")]


def test_readyz_asks_the_shared_index_before_any_post_is_scored(
    tmp_path: Path, pipeline: Pipeline
) -> None:
    url = f"sqlite:///{tmp_path / 'q.db'}"
    with open_api(
        tmp_path, url, pipeline.classifier, redis_url=f"redis://127.0.0.1:{free_port()}/0"
    ) as api:
        response = api.client.get("/readyz")
    assert response.status_code == 200
    ready = response.json()
    assert ready["status"] == "degraded"
    assert ready["problems"] == [f"shared near-duplicate index unavailable {IN_THE_LOG}"]


def test_readyz_counts_set_aside_records_without_their_folder_which_goes_to_the_log(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    folder = api.services.scoring.spool.folder / "rejected"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "set-aside.jsonl").write_text('{"error": "a"}\n{"error": "b"}\n')
    response = api.client.get("/readyz")
    ready = response.json()
    assert ready["status"] == "degraded" and ready["rejected"] == 2
    assert [p for p in ready["problems"] if p.startswith("2 spooled records were refused")]
    assert str(api.services.scoring.spool.folder) not in response.text
    assert [r for r in caplog.records if getattr(r, "folder", None) == str(folder)]


def test_the_first_readyz_finds_the_release_s_migrations_loaded_however_long_they_took(
    tmp_path: Path, pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The schema check compares the database's migration with the release's newest, read from
    its migration scripts (dozens of modules; a second or two to load on a loaded host, twice
    over where the maintenance's check loaded them beside /readyz's): the first /readyz loaded
    them under the storage deadline, and past it said "storage unreachable" at start-up, and
    had storage skipped, the publish path answering degraded, for ``storage_retry_s``."""
    load = ScriptDirectory.from_config

    class Slow:
        @staticmethod
        def from_config(config: Config) -> ScriptDirectory:
            time.sleep(3)  # well past the deadline below
            return load(config)

    database._scripts.cache_clear()
    monkeypatch.setattr(database, "ScriptDirectory", Slow)
    try:
        url = f"sqlite:///{tmp_path / 'slow.db'}"
        with open_api(tmp_path, url, pipeline.classifier, storage_deadline_s=1.0) as api:
            ready = api.client.get("/readyz").json()
            assert ready["problems"] == []
            assert api.services.scoring.health.problem is None
    finally:
        database._scripts.cache_clear()


def test_alembic_says_its_info_lines_while_migrating_only(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    env = {**os.environ, "QINGLANG_DATABASE_URL": url, "QINGLANG_LOG_LEVEL": "INFO"}

    def run(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, *args],
            check=False,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        return done.stderr

    migrated = run("-m", "service.cli", "migrate")
    assert "Running upgrade" in migrated and "alembic" in migrated
    # as the server checks the schema: at each /readyz and storage retry
    checked = run(
        "-c",
        "from service.logs import configure; from service.storage import open_repository; "
        f"configure('INFO'); r = open_repository({url!r}, 5.0); r.ping(); r.ping()",
    )
    assert "alembic" not in checked


def test_metrics_count_requests_scores_decisions_batches_and_name_the_model(api: Api) -> None:
    api.batch([{"id": str(i), "text": "文字"} for i in range(5)])
    api.score({"id": "x", "text": "文字"})
    api.client.post("/v1/score", json={"id": "y"}, headers=api.headers())
    text = api.client.get("/metrics").text
    assert 'qinglang_requests_total{method="POST",route="/v1/score",status="200"} 1.0' in text
    assert 'qinglang_requests_total{method="POST",route="/v1/score",status="422"} 1.0' in text
    assert 'qinglang_request_seconds_count{method="POST",route="/v1/score/batch"} 1.0' in text
    assert 'qinglang_decisions_total{decision="review"} 6.0' in text
    assert 'qinglang_score_count{risk="rumor"} 6.0' in text
    assert 'qinglang_flags_total{risk="incitement"} 6.0' in text
    assert "qinglang_batch_posts_count 2.0" in text
    assert "qinglang_queue_depth 0.0" in text
    assert "qinglang_storage_up 1.0" in text
    model = api.services.scoring.model_version
    assert (
        f'qinglang_model_info{{model_version="{model}",policy_version="test-review-all"}}' in text
    )


def test_a_body_over_the_limit_is_counted_under_its_route(api: Api) -> None:
    too_large = b"a" * (api.services.settings.max_body_bytes + 1)

    def streamed() -> Iterator[bytes]:  # no Content-Length: refused once read past the limit
        yield too_large

    headers = {**api.headers(), "Content-Type": "application/json"}
    assert api.client.post("/v1/score", content=too_large, headers=headers).status_code == 413
    assert api.client.post("/v1/score", content=streamed(), headers=headers).status_code == 413
    text = api.client.get("/metrics").text
    assert 'qinglang_requests_total{method="POST",route="/v1/score",status="413"} 2.0' in text


def test_the_openapi_document_describes_the_endpoints(api: Api) -> None:
    schema = api.client.get("/openapi.json").json()
    assert {"/v1/score", "/v1/score/batch", "/healthz", "/readyz", "/metrics"} <= set(
        schema["paths"]
    )
    score = schema["paths"]["/v1/score"]["post"]
    assert {"200", "401", "403", "413", "422", "429"} <= set(score["responses"])
    # the roles that may call it, as OpenAPI 3.1 lists them for a scheme other than OAuth's
    assert score["security"] == [{"HTTPBearer": ["publisher", "admin"]}]
    batch = schema["components"]["schemas"]["BatchRequest"]["properties"]["posts"]
    assert batch["maxItems"] == 256


def test_the_openapi_document_lists_the_answers_every_route_of_its_kind_may_give(
    api: Api,
) -> None:
    # a client generated from the document must know every status it can be answered with:
    # the guard's on any route that takes a key, the edge's on any that reads a body
    paths = api.client.get("/openapi.json").json()["paths"]
    for path, operations in paths.items():
        for method, operation in operations.items():
            answers = set(operation["responses"])
            if "security" in operation:
                assert {"401", "429", "503"} <= answers, (method, path)
            if "requestBody" in operation:
                assert {"408", "413"} <= answers, (method, path)
    # and only what the route answers: a bank entry added is 201, one removed 204
    bank = paths["/v1/bank/rumors"]["post"]["responses"]
    removal = paths["/v1/bank/rumors/{rumor_id}"]["delete"]["responses"]
    assert "201" in bank and "204" not in bank
    assert "204" in removal and "201" not in removal


ROUTE_ANSWERS = {
    # no key, role, rate, storage down, limit=0; nothing to find missing or in conflict
    ("get", "/v1/clusters"): {"200", "401", "403", "422", "429", "503"},
    # no parameter to refuse
    ("get", "/v1/bank/rumors"): {"200", "401", "403", "429", "503"},
    # a post in conflict or not kept is an entry of the 200, not the batch's answer
    ("post", "/v1/score/batch"): {"200", "401", "403", "408", "413", "422", "429", "503"},
    # any key may read an account: no 403
    ("get", "/v1/accounts/{account_id}"): {"200", "401", "404", "422", "429", "503"},
    ("post", "/v1/review/items/{item_id}/claim"): {
        *("200", "401", "403", "404", "409", "422", "429", "503")
    },
    ("post", "/v1/bank/rumors"): {
        *("201", "401", "403", "404", "408", "409", "413", "422", "429", "503")
    },
}
"""What a sample of routes can answer, each status traced through its code."""


def test_each_route_lists_the_statuses_it_can_answer_and_no_others(api: Api) -> None:
    paths = api.client.get("/openapi.json").json()["paths"]
    listed = {route: set(paths[route[1]][route[0]]["responses"]) for route in ROUTE_ANSWERS}
    assert listed == ROUTE_ANSWERS


def test_each_documented_error_of_a_route_is_answered_by_it(
    tmp_path: Path, pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a burst of 2 a key: each request below has a key of its own, but the one driven to 429
    with open_api(
        tmp_path,
        f"sqlite:///{tmp_path / 'db.sqlite'}",
        pipeline.classifier,
        rate_limit_per_s=0.001,
        rate_limit_burst=2,
    ) as api:
        assert api.score({"id": "p1", "text": RUMOR, "account_id": "acc1"}).status_code == 200
        reviewer = api.new_key("reviewer")
        (item,) = api.client.get("/v1/review/items", headers=api.headers(reviewer)).json()["items"]
        claim = f"/v1/review/items/{item['id']}/claim"

        def status(method: str, url: str, role: Role | None = "reviewer") -> int:
            headers = api.headers(api.new_key(role)) if role else {}
            return api.client.request(method, url, headers=headers).status_code

        def limited(method: str, url: str) -> int:
            headers = api.headers(api.new_key("reviewer"))
            return [api.client.request(method, url, headers=headers) for _ in range(3)][
                -1
            ].status_code

        def down(method: str, url: str, call: str) -> int:
            def refuse(*_: object, **__: object) -> None:
                raise StorageError("the database is away")

            with monkeypatch.context() as patched:
                patched.setattr(api.services.review, call, refuse)
                return status(method, url)

        answered = {
            ("get", "/v1/accounts/{account_id}"): {
                status("GET", "/v1/accounts/acc1"),
                status("GET", "/v1/accounts/acc1", None),
                status("GET", "/v1/accounts/nobody"),
                status("GET", "/v1/accounts/%20"),
                limited("GET", "/v1/accounts/acc1"),
                down("GET", "/v1/accounts/acc1", "get_account"),
            },
            ("post", "/v1/review/items/{item_id}/claim"): {
                status("POST", claim),
                status("POST", claim, None),
                status("POST", claim, "publisher"),
                status("POST", "/v1/review/items/999/claim"),
                status("POST", claim),  # held by the first claim's reviewer
                status("POST", "/v1/review/items/0/claim"),
                limited("POST", "/v1/review/items/999/claim"),
                down("POST", claim, "claim"),
            },
        }
        paths = api.client.get("/openapi.json").json()["paths"]
    for (method, path), statuses in answered.items():
        assert {str(s) for s in statuses} == set(paths[path][method]["responses"]), path


def test_a_callers_request_id_is_kept_and_a_bad_one_replaced(api: Api) -> None:
    given = api.client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert given.headers["x-request-id"] == "abc-123"
    bad = api.client.get("/healthz", headers={"X-Request-ID": "a b\tc"})
    assert bad.headers["x-request-id"] != "a b\tc"


def test_logs_are_json_with_the_request_id_and_without_the_post_text(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    response = api.client.post(
        "/v1/score",
        json={"id": "p", "text": SECRET_TEXT},
        headers={**api.headers(), "X-Request-ID": "req-42"},
    )
    assert response.status_code == 200
    api.client.post("/v1/score", json={"id": 1, "text": [SECRET_TEXT]}, headers=api.headers())
    lines = [JsonFormatter().format(r) for r in caplog.records]
    entries = [json.loads(line) for line in lines]
    access = [e for e in entries if e["logger"] == "service.access"]
    assert any(e["request_id"] == "req-42" and e["status"] == 200 for e in access)
    assert all(e["request_id"] for e in access)
    assert not [line for line in lines if SECRET_TEXT in line]


def test_an_overloaded_model_queue_answers_503_with_retry_after(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def full(posts: object) -> None:
        raise OverloadedError("600 posts are waiting for the model")

    monkeypatch.setattr(api.services.scoring.batcher, "score", full)
    response = api.score({"id": "busy", "text": "文字"})
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert "overloaded" in response.json()["detail"]
