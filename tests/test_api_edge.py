"""The edge every request goes through: request id, body limits, metrics, access log."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path

import httpx2 as httpx
from servicekit import listening, wait_for
from starlette.requests import Request
from starlette.types import Message, Receive, Scope, Send

from service.api.edge import Edge
from service.pipeline import Pipeline


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
