"""The edge every request goes through: request id, body limit, metrics, access log."""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.types import Message, Receive, Scope, Send

from service.api.edge import Edge


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
    edge = Edge(reads_the_body, metrics=counted, max_body_bytes=1024)  # type: ignore[arg-type]
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
