"""The edge every request goes through: request id, body limits, metrics, access log."""

from __future__ import annotations

import asyncio
import json
import re
import socket
from pathlib import Path

import httpx2 as httpx
import pytest
from fastapi import FastAPI
from servicekit import Api, listening, routes, wait_for
from starlette.requests import Request
from starlette.types import Message, Receive, Scope, Send

from service.api.edge import Edge, in_console
from service.pipeline import Pipeline
from service.storage import SqlRepository, StorageError


class Counted:
    """Records what the edge counts for each request."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, int]] = []

    def request(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.append((route, method, status))


async def reads_the_body(scope: Scope, receive: Receive, send: Send) -> None:
    body = await Request(scope, receive).body()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


def test_a_caller_gone_before_its_body_arrived_is_counted_499_not_a_server_error() -> None:
    counted = Counted()
    edge = Edge(
        reads_the_body,
        metrics=counted,  # type: ignore[arg-type]
        max_body_bytes=1024,
        body_read_timeout_s=60,
    )
    arriving: list[Message] = [
        {"type": "http.request", "body": b'{"id": "a", "te', "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[Message] = []

    async def receive() -> Message:
        return arriving.pop(0)

    async def send(message: Message) -> None:
        sent.append(message)

    scope: Scope = {"type": "http", "method": "POST", "path": "/v1/score", "headers": []}
    asyncio.run(edge(scope, receive, send))
    assert sent == []  # no one to answer
    assert counted.requests == [("unmatched", "POST", 499)]


BODY = b'{"id": "slow", "text": "\xe4\xbb\x8a\xe5\xa4\xa9"}'


def half_sent(port: int, key: str) -> socket.socket:
    """A connection that sent a score request's headers and half its body, and no more."""
    connection = socket.create_connection(("127.0.0.1", port))
    connection.settimeout(60)  # not a measure: the test fails, not hangs, on a server that waits
    connection.sendall(
        b"POST /v1/score HTTP/1.1\r\nHost: qinglang\r\n"
        + f"Authorization: Bearer {key}\r\n".encode()
        + b"Content-Type: application/json\r\n"
        + f"Content-Length: {len(BODY)}\r\n\r\n".encode()
        + BODY[: len(BODY) // 2]
    )
    return connection


def counted(port: int, status: int) -> float:
    """How many ``POST /v1/score`` requests the server counted with ``status``."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    line = f'qinglang_requests_total{{method="POST",route="/v1/score",status="{status}"}} '
    return sum(float(row.removeprefix(line)) for row in text.splitlines() if row.startswith(line))


def test_a_body_that_stops_arriving_is_answered_408_and_its_connection_closed(
    tmp_path: Path, pipeline: Pipeline
) -> None:
    url = f"sqlite:///{tmp_path / 'q.db'}"
    with (
        listening(tmp_path, url, pipeline.classifier, body_read_timeout_s=0.5) as (port, key),
        half_sent(port, key) as connection,
    ):
        answer = b""
        while chunk := connection.recv(65536):  # until the server closes the connection
            answer += chunk
        head, _, body = answer.partition(b"\r\n\r\n")
        status, *headers = head.decode().split("\r\n")
        assert status == "HTTP/1.1 408 Request Timeout"
        fields = {name.lower(): value for name, value in (h.split(": ", 1) for h in headers)}
        assert fields["connection"] == "close" and fields["x-request-id"]
        assert fields["content-type"] == "application/json"
        assert json.loads(body) == {"detail": "the request body did not arrive within 0.5 s"}
        assert counted(port, 408) == 1


def test_a_caller_that_goes_away_mid_body_is_still_counted_499(
    tmp_path: Path, pipeline: Pipeline
) -> None:
    url = f"sqlite:///{tmp_path / 'q.db'}"
    # a read time no run reaches: the disconnect, not the time, ends the wait
    with listening(tmp_path, url, pipeline.classifier, body_read_timeout_s=3600) as (port, key):
        half_sent(port, key).close()
        wait_for(lambda: counted(port, 499) == 1)
        assert counted(port, 408) == 0 and counted(port, 500) == 0


def test_every_json_answer_success_or_error_is_kept_from_caches_and_sniffing(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each route of the JSON API (the probes and metrics too), answered and refused: its
    answers describe accounts, appeals, reports and review items, and its refusals the request
    they refuse."""
    app = api.client.app
    assert isinstance(app, FastAPI)
    statuses: set[int] = set()

    def kept_from_caches(answer: httpx.Response, what: object) -> None:
        assert answer.headers.get_list("cache-control") == ["no-store"], what
        assert answer.headers.get_list("x-content-type-options") == ["nosniff"], what
        statuses.add(answer.status_code)

    assert api.score({"id": "p1", "text": "明天全市停水", "account_id": "1"}).status_code == 200
    admin = api.headers(api.new_key("admin"))
    reviewer = api.headers(api.new_key("reviewer"))
    too_large = b"{" * (api.services.settings.max_body_bytes + 1)
    for method, path, _ in routes(app):
        if in_console(path):
            continue
        url = re.sub(r"\{[a-z_]+\}", "1", path)
        for headers in ({}, admin, reviewer):
            kept_from_caches(api.client.request(method, url, headers=headers), (method, path))
        if method in ("POST", "PUT"):
            oversized = api.client.request(method, url, headers=admin, content=too_large)
            assert oversized.status_code == 413, (method, path)
            kept_from_caches(oversized, (method, path))
    kept_from_caches(api.score({"id": "p2", "text": "周末去公园散步"}), "the publish path")
    kept_from_caches(api.client.get("/v1/nowhere"), "a path no route takes")
    kept_from_caches(api.client.request("PATCH", "/v1/score"), "a method the route does not take")
    other = api.headers(api.new_key("reviewer", "zhao"))
    kept_from_caches(api.client.post("/v1/review/items/1/claim", headers=other), "a claim held")

    def down(*_: object, **__: object) -> None:
        raise StorageError("connection refused")

    monkeypatch.setattr(SqlRepository, "get_item", down)
    kept_from_caches(api.client.get("/v1/review/items/1", headers=admin), "storage down")
    assert {200, 401, 403, 404, 405, 409, 413, 422, 503} <= statuses


def test_the_consoles_static_files_stay_cacheable(api: Api) -> None:
    script = api.client.get("/console/static/console.js")
    assert script.status_code == 200
    assert "cache-control" not in script.headers
