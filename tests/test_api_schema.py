"""A bounded schemathesis pass over the app's own OpenAPI document: generated requests, valid
and not, never get a 5xx, and every response matches the documented status codes and schemas."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.strategies import SearchStrategy
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from servicekit import Api, open_api

from service.pipeline import Pipeline
from service.record import MAX_SOURCE_CHARS, Post

EXAMPLES = 25
"""Per operation and mode: bounded, so that the pass takes seconds."""

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory, pipeline: Pipeline) -> Iterator[Api]:
    tmp: Path = tmp_path_factory.mktemp("schema")
    with open_api(tmp, f"sqlite:///{tmp / 'db.sqlite'}", pipeline.classifier) as api:
        yield api


def test_generated_requests_get_no_5xx_and_match_the_schema(running: Api) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", running.client.app)
    failures: list[str] = []
    for operation in schema.get_all_operations():
        op = operation.ok()  # type: ignore[union-attr]
        # an operation without a body (the probes) has no invalid input to generate
        modes = list(schemathesis.GenerationMode) if len(op.body) else ["positive"]
        for mode in map(schemathesis.GenerationMode, modes):
            try:
                _run(op.as_strategy(generation_mode=mode), running)
            except Exception as exc:
                failures.append(f"{op.label} ({mode}): {exc}")
    assert not failures, "\n\n".join(failures)


def _run(strategy: SearchStrategy[schemathesis.Case[Any]], running: Api) -> None:
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,  # the same cases on every run: CI is not a lottery
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    @given(case=strategy)
    def check(case: schemathesis.Case[Any]) -> None:
        case.call_and_validate(headers=running.headers(), checks=CHECKS)

    check()


def test_every_text_field_of_a_post_but_text_has_a_documented_limit(api: Api) -> None:
    # text's limit is a setting, answered 413 (service/api/score.py)
    fields = api.client.get("/openapi.json").json()["components"]["schemas"]["Post"]
    unbounded = [
        name
        for name, field in fields["properties"].items()
        if name != "text"
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
