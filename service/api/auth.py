"""The API's side of :mod:`service.security`: a dependency per set of allowed roles."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from service.api.state import Found
from service.security import Principal
from service.storage.repository import Role

# declares the scheme in the OpenAPI document; the check itself is the guard's
bearer = HTTPBearer(auto_error=False, description="an API key from `qinglang keys create`")


def require(*roles: Role) -> Callable[..., Awaitable[Principal]]:
    async def caller(
        request: Request,
        found: Found,
        _: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> Principal:
        header = request.headers.get("authorization")
        known = found.guard.check_known(header, roles)
        if known is not None:
            return known
        # a key not seen lately: the guard asks storage, which must not block the loop
        return await run_in_threadpool(found.guard.check, header, roles)

    return caller
