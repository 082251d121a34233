"""What every request goes through first: a request id, the body limits, metrics, the access log,
and the JSON API's response headers.

A plain ASGI middleware rather than Starlette's ``BaseHTTPMiddleware``: it adds no task per
request and sees the body before the app does, so an oversized body is refused unread, and a
body that has not arrived within the read time is waited for no longer (uvicorn has no such
limit: a caller that never finished its body held a connection and a request for ever). The
request still reaches the app, whose route answers 413 or 408 when it reads the body: the
refusal is counted under that route, after the route's own answers (404, 405, 401) where they
come first.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid

from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.logs import request_id
from service.metrics import Metrics

log = logging.getLogger("service.access")

HEADER = b"x-request-id"
CLIENT_CLOSED = 499
"""The status logged and counted for a request whose caller disconnected before its body was
read (nginx's code: no response is sent)."""
# a caller's id is kept when it is short and plain, so that it can be logged safely
_CALLER_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
API_HEADERS = ((b"cache-control", b"no-store"), (b"x-content-type-options", b"nosniff"))
"""What every answer outside the console carries, its errors too (a 401, 404 or 413 describes
the request it answers): accounts, appeals, reports and review items are personal data, which
no shared cache keeps and no browser reads as anything but the JSON it is. The console's pages
set their own (``service.console.web.render``), and its static files stay cacheable."""


def in_console(path: str) -> bool:
    """Whether ``path`` is the console's (its pages, error pages and static files), not the JSON
    API's."""
    return path == "/console" or path.startswith("/console/")


class Edge:
    def __init__(
        self, app: ASGIApp, *, metrics: Metrics, max_body_bytes: int, body_read_timeout_s: float
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.body_read_timeout_s = body_read_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = _request_id(scope)
        token = request_id.set(rid)
        own = [(HEADER, rid.encode())]
        if not in_console(scope["path"]):
            own += API_HEADERS
        started = time.perf_counter()
        status = 500
        unread = False

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), *own]
                if unread:
                    # the rest of the body is not read: uvicorn would keep the connection for a
                    # next request, and the caller that trickles it in holds it for ever
                    message["headers"].append((b"connection", b"close"))
            await send(message)

        try:
            body = await self._body(scope, receive)
            if isinstance(body, HTTPException):
                unread, given = True, _refuse(body)
            else:
                given = _replay(body, receive)
            await self.app(scope, given, send_with_id)
        except ClientDisconnect:
            # the caller went away before its body arrived: no one to answer, and no fault of
            # the server's (uvicorn would log a traceback, and this a 500)
            status = CLIENT_CLOSED
        finally:
            seconds = time.perf_counter() - started
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")
            self.metrics.request(path, scope["method"], status, seconds)
            log.info(
                "request",
                extra={
                    "request_id": rid,
                    "method": scope["method"],
                    "route": path,
                    "status": status,
                    "ms": round(seconds * 1000, 2),
                },
            )
            request_id.reset(token)

    async def _body(self, scope: Scope, receive: Receive) -> list[Message] | HTTPException:
        """The request's body messages, or the refusal of a body over the size limit (413) or
        not arrived within ``body_read_timeout_s`` (408)."""
        try:
            async with asyncio.timeout(self.body_read_timeout_s):
                body = await self._read_body(scope, receive)
        except TimeoutError:
            return HTTPException(
                408, f"the request body did not arrive within {self.body_read_timeout_s:g} s"
            )
        if body is None:
            return HTTPException(
                413, f"request body is over the limit of {self.max_body_bytes} bytes"
            )
        return body

    async def _read_body(self, scope: Scope, receive: Receive) -> list[Message] | None:
        """The request's body messages, or None when it is over the limit."""
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.max_body_bytes:
                return None
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                return messages
            size += len(message.get("body", b""))
            if size > self.max_body_bytes:
                return None
            if not message.get("more_body", False):
                return messages


def _request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == HEADER:
            given: str = value.decode("latin-1")
            if _CALLER_ID.fullmatch(given):
                return given
    return uuid.uuid4().hex


def _replay(messages: list[Message], then: Receive) -> Receive:
    """The body messages already read, then the connection's own (its disconnect)."""
    pending = list(messages)

    async def receive() -> Message:
        return pending.pop(0) if pending else await then()

    return receive


def _refuse(refusal: HTTPException) -> Receive:
    """The body of a request refused unread: reading it answers ``refusal``. The app still
    routes the request, so that the refusal is counted under the route it was sent to."""

    async def receive() -> Message:
        raise refusal

    return receive
