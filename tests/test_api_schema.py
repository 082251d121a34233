"""A bounded schemathesis pass over the app's own OpenAPI document: generated requests, valid
and not, never get a 5xx, and every response matches the documented status codes and schemas."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.strategies import SearchStrategy
from jsonschema_rs import Draft202012Validator
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from servicekit import Api, listening

from service.pipeline import Pipeline
from service.record import MAX_SOURCE_CHARS, NOT_AN_ID, Post
from service.settings import ROOT

EXAMPLES = 25
"""Per operation and mode: bounded, so that the pass takes seconds."""
RESCORE_DOC = (ROOT / "docs" / "rescore.md").read_text(encoding="utf-8")
"""docs/rescore.md, whose "Scoring a file" lists a post's fields."""

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@dataclass(frozen=True)
class Served:
    """The app served over HTTP on a port of its own, and a publisher key."""

    url: str
    key: str


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, pipeline: Pipeline) -> Iterator[Served]:
    # served by uvicorn, not reached through schemathesis's ASGI transport: that starts the
    # app's lifespan a second time, on an event loop of its own, beside the test client's
    tmp: Path = tmp_path_factory.mktemp("schema")
    with listening(tmp, f"sqlite:///{tmp / 'db.sqlite'}", pipeline.classifier) as (port, key):
        yield Served(f"http://127.0.0.1:{port}", key)


def test_generated_requests_get_no_5xx_and_match_the_schema(served: Served) -> None:
    schema = schemathesis.openapi.from_url(f"{served.url}/openapi.json")
    failures: list[str] = []
    for operation in schema.get_all_operations():
        op = operation.ok()  # type: ignore[union-attr]
        # an operation without a body (the probes) has no invalid input to generate
        modes = list(schemathesis.GenerationMode) if len(op.body) else ["positive"]
        for mode in map(schemathesis.GenerationMode, modes):
            try:
                _run(op.as_strategy(generation_mode=mode), served)
            except Exception as exc:
                failures.append(f"{op.label} ({mode}): {exc}")
    assert not failures, "\n\n".join(failures)


def _run(strategy: SearchStrategy[schemathesis.Case[Any]], served: Served) -> None:
    headers = {"Authorization": f"Bearer {served.key}"}

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,  # the same cases on every run: CI is not a lottery
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    @given(case=strategy)
    def check(case: schemathesis.Case[Any]) -> None:
        case.call_and_validate(base_url=served.url, headers=headers, checks=CHECKS)

    check()


def test_every_text_field_of_a_post_but_text_has_a_documented_limit(api: Api) -> None:
    # text's limit is a setting, answered 413 (service/api/score.py); created_at's text is read
    # as a time and kept as unix seconds, so that its length bounds nothing stored
    fields = api.client.get("/openapi.json").json()["components"]["schemas"]["Post"]
    unbounded = [
        name
        for name, field in fields["properties"].items()
        if name not in ("text", "created_at")
        and any(t.get("type") == "string" for t in field.get("anyOf", [field]))
        and not any("maxLength" in t for t in [field, *field.get("anyOf", [])])
    ]
    assert unbounded == []


def test_a_source_over_its_limit_is_refused_at_its_field_and_one_held_still_reads(api: Api) -> None:
    longest = "s" * MAX_SOURCE_CHARS
    fits = api.score({"id": "src-fits", "text": "转自人民日报", "source": longest})
    assert fits.status_code == 200, fits.text
    over = api.score({"id": "src-over", "text": "转自人民日报", "source": longest + "s"})
    assert over.status_code == 422
    (problem,) = over.json()["detail"]
    assert problem["loc"] == ["body", "source"] and str(MAX_SOURCE_CHARS) in problem["msg"]
    batch = api.batch([{"id": "src-batch", "text": "x", "source": longest + "s"}])
    (refused,) = batch.json()["records"]
    assert refused["status"] == 422 and refused["errors"][0]["loc"] == ["source"]
    # stored or spooled before the limit: read back as it was accepted
    held = Post.accepted({"id": "old", "text": "x", "source": longest * 2})
    assert held.source == longest * 2


ACCEPTED_POSTS: list[dict[str, object]] = [
    # a Weibo id sent unquoted, an ISO 8601 time with its zone, null for what is not given
    {
        "id": 4_621_539_270_183_025,
        "text": "今天天气不错",
        "account_id": 1_234_567_890,
        "created_at": "2021-03-01T09:30:00+08:00",
        "declared_original": None,
        "source": None,
    },
    {"id": "p-text-time", "text": "转自人民日报", "created_at": "1614562200", "source": "人民日报"},
    {"id": "p-number-time", "text": "原创", "created_at": 1614562200.5, "declared_original": True},
]


def test_the_published_post_schema_takes_every_post_the_service_accepts(api: Api) -> None:
    post = api.client.get("/openapi.json").json()["components"]["schemas"]["Post"]
    fields = post["properties"]
    for name in ("id", "account_id"):
        kinds = {t["type"]: t for t in fields[name]["anyOf"]}
        assert {"string", "integer"} <= kinds.keys(), name
        assert "decimal text" in kinds["integer"]["description"]
        # JSON Schema's integer is 7.0 too, which the service refuses: the schema says so
        assert "7.0 and 7e0 are refused" in kinds["integer"]["description"]
        for number in (7.0, 7e0, 7.5):
            refused = api.score({"id": "p", "text": "好", name: number})
            assert refused.status_code == 422, (name, number)
            (problem,) = refused.json()["detail"]
            assert problem["loc"] == ["body", name] and problem["msg"] == NOT_AN_ID
    times = {t["type"]: t for t in fields["created_at"]["anyOf"]}
    assert times.keys() == {"number", "string", "null"}
    assert "unix seconds" in times["number"]["description"]
    assert "ISO 8601" in times["string"]["description"]
    validator = Draft202012Validator(post)
    for accepted in ACCEPTED_POSTS:
        assert api.score(accepted).status_code == 200, accepted
        assert [e.message for e in validator.iter_errors(accepted)] == [], accepted
    # docs/rescore.md's list of a post's fields is the schema's
    listed = RESCORE_DOC.split("Input: one JSON object a line with ", 1)[1].split("; `null`", 1)[0]
    assert set(re.findall(r"`(\w+)`", listed)) - {"true", "false"} == fields.keys()
