"""The route class of the JSON endpoints, and the 422 they answer a bad value with."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from fastapi import Request, Response
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.routing import Match

from service import jsonload
from service.api.auth import authenticate, required_roles
from service.api.schemas import Problem
from service.record import quoted
from service.review.items import ConflictError, ForbiddenError, NotFoundError
from service.storage import StorageError

KEY_HEADER = "Idempotency-Key"
"""The header a write a client may retry takes (:attr:`JsonRoute.takes_key`)."""
NOT_UTF8 = "the body is not UTF-8, so it is not JSON"
UNREADABLE = "JSON decode error"
"""FastAPI's words for a body that is not JSON, which the refusals here begin with too."""


REFUSALS: dict[type[Exception], int] = {
    NotFoundError: 404,
    ForbiddenError: 403,
    ConflictError: 409,
    StorageError: 503,
}
"""The errors of the review rules and of storage a route may raise, and the status app.py
answers each with (a subclass as its class), the error's words its ``detail``."""

Answers = dict[int | str, dict[str, Any]]
"""A route's ``responses``, as FastAPI takes them."""

STORAGE_DOWN = "storage is unavailable, or did not answer within storage_deadline_s"
"""Why a route that reads or writes storage answers 503 (:data:`REFUSALS`' ``StorageError``)."""
KEYED_WRITE_DOWN = (
    f"{STORAGE_DOWN} (the change may still be made: a retry with the same Idempotency-Key "
    "makes it once)"
)
"""The same for a write that takes the :data:`KEY_HEADER` (app.py's ``WRITE_UNANSWERED``)."""


def answers(reasons: Mapping[type[Exception] | int, str]) -> Answers:
    """The ``responses`` of a route that fails for each of ``reasons``: an error of
    :data:`REFUSALS` it may raise, or a status its own code answers, with the words a client
    tells that failure by; the reasons of one status are joined. What every route of its kind
    may answer (the guard's, the edge's) is not for the route to list: app.py adds it."""
    said: dict[int, list[str]] = {}
    for reason, words in reasons.items():
        status = reason if isinstance(reason, int) else refused_with(reason)
        said.setdefault(status, []).append(words)
    return {
        status: {"model": Problem, "description": "; or ".join(told)}
        for status, told in said.items()
    }


def refused_with(error: type[Exception]) -> int:
    """The status app.py answers ``error`` with: its own class's in :data:`REFUSALS`, or its
    nearest base's."""
    return REFUSALS[next(kind for kind in error.__mro__ if kind in REFUSALS)]


def invalid(loc: tuple[str | int, ...], msg: str, kind: str = "value_error") -> Exception:
    """The 422 for the value at ``loc``, shaped as FastAPI's own (``{"detail": [{"loc", "msg",
    "type"}]}``), so that a client reads every refusal one way."""
    return RequestValidationError([{"loc": loc, "msg": msg, "type": kind}])


def slash_twin(request: Request) -> str | None:
    """The path a route takes that the request's path, which none takes, is with its trailing
    slash left off or put on; None when there is none, or a route took the path.

    The app answers such a path as any other that no route takes (``redirect_slashes`` off):
    Starlette redirected it with 307 to an absolute URL of the scheme it was served on, the
    ``http://`` of a proxy that ends TLS, and a client that posts to a redirect is sent
    somewhere it did not ask to go. Its answer names this path instead (:func:`no_route`); the
    console redirects a browser to it with a relative ``Location``
    (:func:`service.console.web.no_page`)."""
    path = request.url.path
    if "endpoint" in request.scope or path == "/":
        return None
    twin = path.removesuffix("/") if path.endswith("/") else f"{path}/"
    scope = {**request.scope, "path": twin}
    routes = request.app.router.routes
    return twin if any(r.matches(scope)[0] is not Match.NONE for r in routes) else None


async def no_route(request: Request, exc: Exception) -> Response:
    """FastAPI's answer to ``exc``, but for a path no route takes: a 404 that names it, and the
    path meant where only a trailing slash is wrong (:func:`slash_twin`)."""
    assert isinstance(exc, HTTPException)
    if exc.status_code != 404 or "endpoint" in request.scope:
        return await http_exception_handler(request, exc)
    detail = f"no such path: {quoted(request.url.path)}"
    if (twin := slash_twin(request)) is not None:
        detail += f"; the path is {quoted(twin)}"
    return JSONResponse({"detail": detail}, 404)


def json_type(content_type: str | None) -> bool:
    """Whether FastAPI reads a body of ``content_type`` as JSON (none given does not: FastAPI
    would hand the route the bytes, and say only that the body is not an object)."""
    if not content_type:
        return False
    media = content_type.split(";")[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


class JsonRoute(APIRoute):
    """Checks the caller's key before the body (FastAPI reads the body first, so a caller
    without a key got a malformed body's 422 before its 401). Answers a body that is not UTF-8
    with a 422 like any other malformed JSON, where FastAPI would answer an undocumented 400,
    and so a body the JSON parser refuses without saying where (:func:`_parse`), and a body of
    another content type, or of none, or compressed (``Content-Encoding``), with a 422 that
    names the header, where FastAPI would say only that the body is not an object, or not
    UTF-8."""

    @property
    def takes_key(self) -> bool:
        """Whether the route takes the :data:`KEY_HEADER` (a header parameter of its own), so
        that a retry of its write with the key is made once: what its 503 may promise."""
        return any(param.alias == KEY_HEADER for param in self.dependant.header_params)

    @property
    def items(self) -> str | None:
        """The field of the route's body whose items its endpoint checks one by one (its body
        model's ``ITEMS``: a batch's posts), if any."""
        model = self.body_field.field_info.annotation if self.body_field else None
        return getattr(model, "ITEMS", None)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        roles = required_roles(self.dependant)

        async def handle(request: Request) -> Response:
            for allowed in roles:
                await authenticate(request, allowed)
            body = await request.body()
            content_type = request.headers.get("content-type")
            if body and not json_type(content_type):
                given = f"not {content_type!r}" if content_type else "a Content-Type was not given"
                raise invalid(
                    ("header", "content-type"),
                    f"the body is read as JSON: send it as application/json ({given})",
                    "content_type",
                )
            encoding = request.headers.get("content-encoding", "").strip().lower()
            if body and encoding not in ("", "identity"):
                # the bytes would be read as they came, and a compressed body refused as "not
                # UTF-8", which names neither the header nor what to do about it
                raise invalid(
                    ("header", "content-encoding"),
                    f"the body is read as sent: send it uncompressed, without Content-Encoding "
                    f"(not {encoding!r})",
                    "content_encoding",
                )
            if body:
                await _parse(request, body, self.items)
            return await handler(request)

        return handle


async def _parse(request: Request, body: bytes, items: str | None) -> None:
    """Parse the body for FastAPI, which reads the parsed value from ``request``, answering
    what it would answer with a 400 that says nothing with a 422 that says what: a body that is
    not UTF-8, one that holds a NUL byte (json.loads takes leading ones for UTF-16 or UTF-32;
    UTF-8 JSON has none), an integer too long for ``int`` (at its field, by the rule ``qinglang
    rescore`` reads a line by: :func:`service.jsonload.loads`) or nesting too deep for the
    parser. Malformed JSON is left to FastAPI, whose 422 gives its position. An item of the
    body's field ``items`` that holds such an integer is left to the endpoint, which refuses it
    in its place (a :class:`~service.jsonload.Unreadable`), so that the items beside it are
    read."""
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise invalid(("body", exc.start), NOT_UTF8, "json_invalid") from None
    if (nul := body.find(b"\x00")) >= 0:
        raise invalid(
            ("body", nul), f"{UNREADABLE}: a NUL byte, which JSON text cannot hold", "json_invalid"
        )
    try:
        value, long = jsonload.loads(body)
    except json.JSONDecodeError:
        return
    except RecursionError:
        # the parser's depth is the interpreter's recursion limit less the stack beneath it
        limit = sys.getrecursionlimit()
        raise invalid(
            ("body",),
            f"{UNREADABLE}: nested deeper than the parser allows (fewer than {limit} levels)",
            "json_invalid",
        ) from None
    if long is not None and items is not None:
        long = jsonload.set_apart(value, items)
    if long is not None:
        raise invalid(("body", *long.path), long.message, "json_invalid")
    # Starlette's cache of request.json(), which FastAPI reads: parsed again there, with int(),
    # a long integer that a later value of its key replaced would be refused as a 400
    request._json = value
