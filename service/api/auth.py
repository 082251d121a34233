"""The API's side of :mod:`service.security`: a dependency per set of allowed roles.

A JSON route checks its caller before it reads the body (:class:`service.api.routes.JsonRoute`
calls :func:`authenticate` first), so that a caller without a valid key learns nothing from a
malformed body's 422; the dependency then finds the caller already checked, and the key's rate
limit is charged once a request.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import Request, Security
from fastapi.dependencies.models import Dependant
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from service.api.state import services
from service.security import Principal
from service.storage.repository import Role

# declares the scheme in the OpenAPI document; the check itself is the guard's
bearer = HTTPBearer(auto_error=False, description="an API key from `qinglang keys create`")

_ROLES: dict[Callable[..., Awaitable[Principal]], tuple[Role, ...]] = {}
"""The roles each :func:`require` dependency allows, for :func:`required_roles`."""


async def authenticate(request: Request, roles: tuple[Role, ...]) -> Principal:
    """The caller behind the request's key, allowed one of ``roles``; checked once a request."""
    checked: dict[tuple[Role, ...], Principal] | None = getattr(request.state, "callers", None)
    if checked is None:
        checked = request.state.callers = {}
    if roles in checked:
        return checked[roles]
    guard = services(request).guard
    header = request.headers.get("authorization")
    caller = guard.check_known(header, roles)
    if caller is None:
        # a key not seen lately: the guard asks storage, which must not block the loop
        caller = await run_in_threadpool(guard.check, header, roles)
    checked[roles] = caller
    return caller


def require(*roles: Role) -> Callable[..., Awaitable[Principal]]:
    # the roles as the scheme's scopes: OpenAPI 3.1 lists there the roles a route requires, for
    # any scheme but OAuth's (app.py tells by them where the guard may answer 403); a default,
    # as an annotation under postponed evaluation could not reach ``roles``
    key = Security(bearer, scopes=roles)

    async def caller(request: Request, _: HTTPAuthorizationCredentials | None = key) -> Principal:
        return await authenticate(request, roles)

    _ROLES[caller] = roles
    return caller


def required_roles(dependant: Dependant) -> list[tuple[Role, ...]]:
    """The role sets of the :func:`require` dependencies among ``dependant``'s."""
    found = [_ROLES[d.call] for d in dependant.dependencies if d.call in _ROLES]
    for inner in dependant.dependencies:
        found += required_roles(inner)
    return found
