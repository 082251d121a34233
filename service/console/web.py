"""The request plumbing every console page shares: who is signed in (:func:`viewer`,
:func:`admin`), forms whose CSRF token checked out (:func:`form`), pages rendered with the
security headers (:func:`render`), and redirects that carry a refusal back (:func:`back`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, TypeVar
from urllib.parse import parse_qsl, urlencode

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment
from markupsafe import Markup
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from service.api.state import Services
from service.console.i18n import translator
from service.console.session import COOKIE, Session, Sessions
from service.neardup.bank import UnmatchableError
from service.review.appeals import AppealClosedError
from service.review.items import (
    ConflictError,
    ForbiddenError,
    NotFoundError,
)
from service.security import SignInLimits
from service.settings import Settings
from service.storage import StorageError
from service.storage.console_sql import ConsoleReads

LANG_COOKIE = "ql_lang"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)
REFUSALS = (
    ValidationError,
    ConflictError,
    ForbiddenError,
    NotFoundError,
    StorageError,
    UnmatchableError,
    AppealClosedError,
)
"""What a write may be refused with: the console shows the reason on the page it came from."""


def refusal(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(str(e["msg"]) for e in exc.errors())
    return str(exc)


T = TypeVar("T")


class SignInRequiredError(Exception):
    """No valid session: the browser goes to the sign-in page."""


class NotAllowedError(Exception):
    """The signed-in user's role may not open this page."""


@dataclass(frozen=True)
class Console:
    settings: Settings
    sessions: Sessions
    env: Environment
    articles: dict[str, str]
    reads: ConsoleReads
    limits: SignInLimits
    dashboards: dict[str, tuple[float, datetime, dict[str, Markup]]] = field(default_factory=dict)
    """The last dashboard this process drew (key ``"plots"``), with when."""


@dataclass(frozen=True)
class Viewer:
    """A signed-in request: who, the app's services, the console's own parts."""

    session: Session
    found: Services
    console: Console
    request: Request

    @property
    def name(self) -> str:
        assert self.session.user is not None
        return self.session.user

    @property
    def admin(self) -> bool:
        return self.session.role == "admin"

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await run_in_threadpool(lambda: fn(*args, **kwargs))

    def page(self, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        return render(self.request, self.console, self.session, name, status, **context)


def render(
    request: Request,
    console: Console,
    session: Session,
    template: str,
    status: int = 200,
    **context: Any,
) -> HTMLResponse:
    language = request.cookies.get(LANG_COOKIE, "zh")
    html = console.env.get_template(template).render(
        t=translator(language),
        lang=language,
        session=session,
        csrf=console.sessions.csrf(session),
        path=request.url.path,
        error=request.query_params.get("error"),
        **context,
    )
    response = HTMLResponse(html, status)
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Cache-Control"] = "no-store"
    set_session(response, console, session)
    return response


def set_session(response: Response, console: Console, session: Session) -> None:
    response.set_cookie(
        COOKIE,
        console.sessions.dump(session),
        max_age=int(console.sessions.max_age_s),
        path="/console",
        httponly=True,
        samesite="strict",
        secure=console.settings.console_secure_cookie,
    )


def back(url: str, error: str | None = None) -> RedirectResponse:
    """303 to ``url`` (a console path), with the refusal to show there."""
    if error is not None:
        url = f"{url}{'&' if '?' in url else '?'}{urlencode({'error': error})}"
    return RedirectResponse(url, 303)


def console_of(request: Request) -> Console:
    found: Console = request.app.state.console
    return found


def session_of(request: Request) -> Session | None:
    return console_of(request).sessions.load(request.cookies.get(COOKIE), time.time())


async def viewer(request: Request) -> Viewer:
    session = session_of(request)
    if session is None or not session.signed_in:
        raise SignInRequiredError
    return Viewer(session, request.app.state.services, console_of(request), request)


async def admin(request: Request) -> Viewer:
    who = await viewer(request)
    if not who.admin:
        raise NotAllowedError
    return who


Signed = Annotated[Viewer, Depends(viewer)]
Admin = Annotated[Viewer, Depends(admin)]


async def form(request: Request) -> dict[str, str]:
    """The posted form, after its CSRF token checked out against the session's."""
    fields = dict(parse_qsl((await request.body()).decode("utf-8", "replace")))
    session = session_of(request)
    if session is None or not console_of(request).sessions.check_csrf(session, fields.get("csrf")):
        raise NotAllowedError
    return fields


Form = Annotated[dict[str, str], Depends(form)]


async def to_sign_in(request: Request, _: Exception) -> Response:
    return RedirectResponse("/console/login", 303)


async def not_allowed(request: Request, _: Exception) -> Response:
    console = console_of(request)
    session = session_of(request) or console.sessions.new(time.time())
    return render(request, console, session, "error.html", 403, message_key="forbidden")
