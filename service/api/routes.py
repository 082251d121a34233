"""The route class of the JSON endpoints, and the 422 they answer a bad value with."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute

from service.api.auth import authenticate, required_roles

NOT_UTF8 = "the body is not UTF-8, so it is not JSON"


def invalid(loc: tuple[str | int, ...], msg: str, kind: str = "value_error") -> Exception:
    """The 422 for the value at ``loc``, shaped as FastAPI's own (``{"detail": [{"loc", "msg",
    "type"}]}``), so that a client reads every refusal one way."""
    return RequestValidationError([{"loc": loc, "msg": msg, "type": kind}])


def json_type(content_type: str | None) -> bool:
    """Whether FastAPI reads a body of ``content_type`` as JSON (none given counts as JSON)."""
    if not content_type:
        return True
    media = content_type.split(";")[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


class JsonRoute(APIRoute):
    """Checks the caller's key before the body (FastAPI reads the body first, so a caller
    without a key got a malformed body's 422 before its 401). Answers a body that is not UTF-8
    with a 422 like any other malformed JSON, where FastAPI would answer an undocumented 400,
    and a body of another content type with a 422 that names it, where FastAPI would say only
    that the body is not an object."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        roles = required_roles(self.dependant)

        async def handle(request: Request) -> Response:
            for allowed in roles:
                await authenticate(request, allowed)
            body = await request.body()
            content_type = request.headers.get("content-type")
            if body and not json_type(content_type):
                raise invalid(
                    ("header", "content-type"),
                    f"the body is read as JSON: send it as application/json, not {content_type!r}",
                    "content_type",
                )
            try:
                body.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise invalid(("body", exc.start), NOT_UTF8, "json_invalid") from None
            return await handler(request)

        return handle
