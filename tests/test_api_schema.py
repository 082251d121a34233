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
