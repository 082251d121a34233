"""The route class of the JSON endpoints."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute

NOT_UTF8 = "the body is not UTF-8, so it is not JSON"


class JsonRoute(APIRoute):
    """Answers a body that is not UTF-8 with a 422 like any other malformed JSON, where FastAPI
    would answer an undocumented 400."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            body = await request.body()
            try:
                body.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise RequestValidationError(
                    [{"loc": ("body", exc.start), "msg": NOT_UTF8, "type": "json_invalid"}]
                ) from None
            return await handler(request)

        return handle
