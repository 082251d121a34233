"""The request plumbing every console page shares: who is signed in (:func:`viewer`,
:func:`allowed`), forms whose CSRF token checked out (:func:`form`), pages rendered with the
security headers (:func:`render`), redirects (:func:`back`), a refused form to show again as it
was sent (:class:`Refusal`), and the error page for whatever the console refuses to show
(:func:`error_page`), in the page's language.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

from fastapi import Depends, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from jinja2 import Environment
from markupsafe import Markup
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from service.api.edge import in_console
from service.api.routes import no_route, slash_twin
from service.api.state import Services
from service.console.i18n import explain, explain_refusal, translator
from service.console.present import Tallies
from service.console.session import COOKIE, Session, Sessions
from service.review.refusals import RefusedError
from service.security import BANK_EDITORS, SignInLimits, session_holds
from service.settings import Settings
from service.storage import StorageError, StorageUnansweredError
from service.storage.console_sql import ConsoleReads
from service.storage.repository import Idempotency, IdempotencyMismatchError, Role

log = logging.getLogger(__name__)

LANG_COOKIE = "ql_lang"
KEYS_COOKIE = "ql_keys"
"""``off`` where this browser's reader turned the single-key shortcuts off."""
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)
REFUSALS = (ValidationError, RefusedError, StorageError, IdempotencyMismatchError)
"""What a write may be refused with: the console shows the reason on the page it came from."""
Refused = ValidationError | RefusedError | StorageError | IdempotencyMismatchError
ONCE_CHARS = 43
"""A form's one-time key (:func:`sent_once`): 256 random bits in base64url."""
WRITTEN = ("text", "notice", "reason", "note")
"""The fields of the console's forms a person writes in, in words of their own: a form refused
as out of date shows them back to copy (:func:`stale_form`). The others are filled in by the
page, picked from a list, or a sign-in's name and password, which are never shown."""


def language_of(request: Request) -> str:
    return request.cookies.get(LANG_COOKIE, "zh")


def shortcuts_on(request: Request) -> bool:
    return request.cookies.get(KEYS_COOKIE) != "off"


def refusal(exc: Refused, request: Request) -> str:
    """Why a write was refused, in the page's language: a request model's reasons, or a
    rule's with the ids, states and moments it names; storage's in no words of the database's
    (they are the operator's: they go to the log)."""
    t = translator(language_of(request))
    if isinstance(exc, ValidationError):
        return explain(exc.errors(), t)
    if isinstance(exc, RefusedError):
        return explain_refusal(exc, t, console_of(request).settings.console_zone)
    if isinstance(exc, IdempotencyMismatchError):
        return t("sent_otherwise")
    log.warning("storage failed a console request", extra={"problem": str(exc)})
    return t("storage_down")


def invalid_fields(exc: Refused) -> frozenset[str]:
    """The fields a request model refused, by name (the last name in each error's place, as
    :func:`~service.console.i18n.explain` names them); none for a rule's refusal, which is the
    form's as a whole."""
    if not isinstance(exc, ValidationError):
        return frozenset()
    return frozenset(
        names[-1]
        for error in exc.errors()
        if (names := [part for part in error["loc"] if isinstance(part, str)])
    )


def status_of(exc: Refused) -> int:
    """A refused form's page's status: 422 for values its request model refuses, 503 with
    storage down, 409 for a review rule's refusal (the JSON API's 403 and 404 among them: the
    page answers the form, and is no missing or forbidden page) and for a form sent again
    with other values."""
    if isinstance(exc, ValidationError):
        return 422
    return 503 if isinstance(exc, StorageError) else 409


@dataclass
class Refusal:
    """A form the console refused, answered with the page the form is on (``page``, its
    address) and the form (``form``, its id on the page) as it was sent: the values
    ``typed`` in it, and ``why`` beside it (:meth:`beside`), so that nothing typed is lost. A
    page that no longer shows that form (an appeal resolved meanwhile) says why above it
    (``base.html`` reads :attr:`shown`). The fields a request model refused are ``invalid``,
    so that the page marks them (``aria-invalid``) for a screen reader."""

    page: str = ""
    form: str = ""
    typed: Mapping[str, str] = field(default_factory=dict)
    why: str = ""
    status: int = 200
    shown: bool = False
    invalid: frozenset[str] = frozenset()

    def beside(self, form: str) -> str:
        """Why ``form`` was refused, if it is the refused one; else nothing."""
        if form != self.form:
            return ""
        self.shown = True
        return self.why

    def value(self, form: str, name: str, default: str = "") -> str:
        """What was typed in ``form``'s field ``name``, if it is the refused form; else
        ``default``, the value the page offers."""
        return self.typed.get(name, "") if form == self.form else default


T = TypeVar("T")


class SignInRequiredError(Exception):
    """No valid session: the browser goes to the sign-in page."""


class NotAllowedError(Exception):
    """The signed-in user's role may not open this page."""


class StaleFormError(Exception):
    """A form whose CSRF token is not its session's: sent from a page shown before the latest
    sign-in in this browser (a tab left open while the user signed in again in another), or
    forged. Nothing in it is done; ``fields`` are the form as sent."""

    def __init__(self, fields: Mapping[str, str]) -> None:
        super().__init__("a form out of date")
        self.fields = fields


@dataclass
class Dashboard:
    """The dashboard's tallies this process last read (once a while for every language) and
    their plots drawn in each language (its key)."""

    read_at: float = 0.0
    tallies: Tallies | None = None
    drawn: dict[str, dict[str, Markup]] = field(default_factory=dict)


@dataclass(frozen=True)
class Console:
    settings: Settings
    sessions: Sessions
    env: Environment
    articles: dict[str, str]
    reads: ConsoleReads
    limits: SignInLimits
    dashboard: Dashboard = field(default_factory=Dashboard)


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
    def role(self) -> Role:
        assert self.session.role is not None
        return self.session.role

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await run_in_threadpool(lambda: fn(*args, **kwargs))

    def page(
        self, name: str, status: int = 200, *, refused: Refusal | None = None, **context: Any
    ) -> HTMLResponse:
        """``name`` rendered; with ``refused``, as the answer to that refused form (its status,
        and the language switch back to the form's page)."""
        status = refused.status if refused else status
        here = refused.page if refused else None
        page = render(
            self.request,
            self.console,
            self.session,
            name,
            status,
            refused=refused,
            here=here,
            **context,
        )
        if status == 503:
            page.headers["Retry-After"] = "1"
        return page

    def refusal(self, page: str, form: str, fields: Mapping[str, str], exc: Refused) -> Refusal:
        """``form`` on ``page`` (a console path) refused with ``exc``, with ``fields`` as
        typed. A write storage did not answer within the deadline is raised again, no refusal:
        it may still be made, and the page, which reads storage known to be down since, could not
        be shown (:class:`ConsoleRoute` answers the page that says so)."""
        if isinstance(exc, StorageUnansweredError):
            raise exc
        typed = {name: value for name, value in fields.items() if name != "csrf"}
        why, status = refusal(exc, self.request), status_of(exc)
        return Refusal(page, form, typed, why, status, invalid=invalid_fields(exc))


def render(
    request: Request,
    console: Console,
    session: Session,
    template: str,
    status: int = 200,
    *,
    error: str | None = None,
    refused: Refusal | None = None,
    here: str | None = None,
    cookie: bool = True,
    **context: Any,
) -> HTMLResponse:
    """``template`` with ``error`` shown above it, or the ``refused`` form as it was sent, its
    refusal beside it. ``here`` is the page's address, where the language switch comes back
    to: by default the request's, filters and paging included. Without ``cookie``, the page
    sets no session's cookie."""
    language = language_of(request)
    html = console.env.get_template(template).render(
        t=translator(language),
        lang=language,
        keys=shortcuts_on(request),
        session=session,
        csrf=console.sessions.csrf(session),
        here=here or address_of(request),
        error=error,
        refused=refused or Refusal(),
        once=secrets.token_urlsafe(32),
        **context,
    )
    response = HTMLResponse(html, status)
    guard(response)
    if cookie:
        set_session(response, request, session)
    return response


def address_of(request: Request) -> str:
    """The page ``request`` asks for: its path and query, without scheme and host."""
    return request.url.path + (f"?{request.url.query}" if request.url.query else "")


def guard(page: Response) -> None:
    """Every page's security headers: the CSP, no framing for a browser that does not read the
    CSP's ``frame-ancestors`` either, no sniffing, no address sent to another site, nothing kept
    in a cache."""
    page.headers["Content-Security-Policy"] = CSP
    page.headers["X-Frame-Options"] = "DENY"
    page.headers["X-Content-Type-Options"] = "nosniff"
    page.headers["Referrer-Policy"] = "same-origin"
    page.headers["Cache-Control"] = "no-store"


def set_session(response: Response, request: Request, session: Session) -> None:
    """The session's cookie, ``Secure`` with ``console_secure_cookie`` and wherever the request
    came over HTTPS (uvicorn takes the scheme from ``X-Forwarded-Proto`` where the proxy is in
    ``FORWARDED_ALLOW_IPS``): a console served over TLS whose setting was left off would
    otherwise have the browser send the session in the clear to any ``http://`` address of
    its host."""
    console = console_of(request)
    response.set_cookie(
        COOKIE,
        console.sessions.dump(session),
        max_age=int(console.sessions.max_age_s),
        path="/console",
        httponly=True,
        samesite="strict",
        secure=console.settings.console_secure_cookie or request.url.scheme == "https",
    )


def back(url: str) -> RedirectResponse:
    """303 to ``url`` (a console path)."""
    return RedirectResponse(url, 303)


def console_of(request: Request) -> Console:
    found: Console = request.app.state.console
    return found


def session_of(request: Request) -> Session | None:
    return console_of(request).sessions.load(request.cookies.get(COOKIE), time.time())


async def viewer(request: Request) -> Viewer:
    """The signed-in request, if its session goes on: a user disabled, given another role or
    signed out since signing in is sent to sign in again. Storage down: the console's 503
    page."""
    session = session_of(request)
    if session is None or session.user is None:
        raise SignInRequiredError
    found: Services = request.app.state.services
    holds = session.role is not None and await run_in_threadpool(
        session_holds, found.repository, session.user, session.role, session.epoch
    )
    if not holds:
        raise SignInRequiredError
    return Viewer(session, found, console_of(request), request)


def allowed(*roles: Role) -> Callable[[Request], Coroutine[Any, Any, Viewer]]:
    """The signed-in request, if its user has one of ``roles``; else the console's 403 page."""

    async def check(request: Request) -> Viewer:
        who = await viewer(request)
        if who.session.role not in roles:
            raise NotAllowedError
        return who

    return check


Signed = Annotated[Viewer, Depends(viewer)]
Admin = Annotated[Viewer, Depends(allowed("admin"))]
BankEditor = Annotated[Viewer, Depends(allowed(*BANK_EDITORS))]


async def form(request: Request) -> dict[str, str]:
    """The posted form, after its CSRF token checked out against the session's."""
    fields = dict(parse_qsl((await request.body()).decode("utf-8", "replace")))
    session = session_of(request)
    if session is None or not console_of(request).sessions.check_csrf(session, fields.get("csrf")):
        raise StaleFormError(fields)
    return fields


Form = Annotated[dict[str, str], Depends(form)]


def sent_once(who: Viewer, fields: Mapping[str, str], route: str) -> Idempotency | None:
    """The write a form asks for, keyed by the one-time key its page drew for it (field
    ``once``), so that the form sent twice (pressed twice, or sent again by the browser) is
    written once and answered the same both times; sent again with other values, it is
    refused. None for a form without one, which is then written as any request is."""
    key = fields.get("once", "")
    if len(key) != ONCE_CHARS:
        return None
    # a console user's name is up to 64 characters, the key's caller column too
    caller = "console:" + hashlib.blake2b(who.name.encode(), digest_size=12).hexdigest()
    body = {name: value for name, value in fields.items() if name not in ("csrf", "once")}
    return Idempotency.of(caller, f"{route}:{key}", route, body)


def given(fields: Mapping[str, str], *names: str) -> dict[str, str]:
    """The fields among ``names`` that were filled in, trimmed. One left empty (a browser posts
    it so) counts as not given, so that a request model refuses it as missing, not as malformed,
    and one left out of a confirmation gets the model's own reason."""
    return {name: value for name in names if (value := fields.get(name, "").strip())}


class ConsoleRoute(APIRoute):
    """Answers a path or query value its type refuses, and a storage failure, with the
    console's error page, where the app's handlers answer in the JSON API's shape."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                why = explain(exc.errors(), translator(language_of(request)))
                return error_page(request, 422, "invalid_request", why)
            except StorageError as exc:
                # a page that reads storage: the console's page, not the JSON API's 503
                log.warning("storage failed a console page", extra={"problem": str(exc)})
                late = isinstance(exc, StorageUnansweredError) and request.method == "POST"
                page = error_page(request, 503, "storage_late" if late else "storage_down")
                page.headers["Retry-After"] = "1"
                return page

        return handle


def error_page(
    request: Request,
    status: int,
    message_key: str,
    detail: str | None = None,
    *,
    again: str | None = None,
    written: Sequence[tuple[str, str]] = (),
) -> HTMLResponse:
    """The console's page for what it refuses to show, to anyone (signed in or not); with
    ``again``, a link to that console page, to open it again; with ``written``, the words a
    refused form's fields (their names) held, to copy; without a session, it sets no cookie.
    The page answering a form has its language switch come back to the page the form was sent
    from: the form's own address is no page to read."""
    console = console_of(request)
    session = session_of(request)
    here = None if request.method in ("GET", "HEAD") else sent_from(request) or "/console/queue"
    return render(
        request,
        console,
        session or console.sessions.new(time.time()),
        "error.html",
        status,
        error=detail,
        here=here,
        # the page has no form to draw a session for; a new one's cookie would take the place
        # of one the browser did not send (a page opened from another site, which a
        # ``SameSite=Strict`` cookie is not sent with)
        cookie=session is not None,
        message_key=message_key,
        again=again,
        written=written,
    )


def without_dot_segments(path: str) -> str:
    """``path`` as a browser resolves it (RFC 3986 "remove_dot_segments"), a segment ``..`` or
    ``.`` percent-encoded (``%2e%2e``) included, since browsers resolve those too; the other
    segments kept as written."""
    kept: list[str] = []
    segments = path.split("/")[1:]
    for position, segment in enumerate(segments):
        dots = unquote(segment)
        if dots in (".", ".."):
            if dots == ".." and kept:
                kept.pop()
            if position == len(segments) - 1:
                kept.append("")
        else:
            kept.append(segment)
    return "/" + "/".join(kept)


def console_page(target: str) -> str | None:
    """``target`` (a path and its query) where a browser sent there stays on a page of the
    console; None otherwise: never a redirect elsewhere, nor a path the browser resolves
    outside the console (``/console/../x``)."""
    parts = urlsplit(target)
    path = without_dot_segments(parts.path) if parts.path.startswith("/") else ""
    inside = not (parts.scheme or parts.netloc) and path.startswith("/console/")
    if not inside or "//" in path:
        return None
    return urlunsplit(("", "", path, parts.query, ""))


def from_another_site(request: Request) -> bool:
    """A page opened from another site (a link in a ticket or a chat) without the session's
    cookie: the browser sends a ``SameSite=Strict`` cookie with no request another site starts
    (``Sec-Fetch-Site: cross-site``), however signed in it is."""
    return (
        request.method in ("GET", "HEAD")
        and COOKIE not in request.cookies
        and request.headers.get("sec-fetch-site") == "cross-site"
    )


def asked_again(request: Request) -> HTMLResponse:
    """The page asked for, asked for again by the console's own page (a refresh at once, and a
    link for a browser that does not follow it): a request of the console's site, which carries
    the session's cookie. Answered with the sign-in page instead, the reviewer would sign in
    although signed in, and that page's new session's cookie would take the place of theirs,
    signing out every tab they have open."""
    language = language_of(request)
    # no session's cookie set: the browser's own is the one the next request carries
    page = HTMLResponse(
        console_of(request)
        .env.get_template("again.html")
        .render(
            t=translator(language),
            lang=language,
            here=address_of(request),
        )
    )
    guard(page)
    return page


async def to_sign_in(request: Request, _: Exception) -> Response:
    """The sign-in page, which comes back to the page asked for once signed in: a form's, the
    page it was sent from (its ``Referer``), since the form was not taken. Where a session had
    ended (expired after ``console_session_hours``, signed out elsewhere, the user changed) or a
    form went unsent, the page says so: a reviewer whose session ends mid-day would otherwise
    find the queue and nothing telling that their decision was never written. A page opened
    from another site is asked for again first (:func:`asked_again`)."""
    if from_another_site(request):
        return asked_again(request)
    page = console_page(address_of(request)) if request.method == "GET" else sent_from(request)
    query: dict[str, str] = {}
    if page is not None:
        query["next"] = page
    # a signed-in session that no longer holds, or one gone (expired: it no longer loads);
    # the sign-in page's own session, no one's, ended nothing
    session = session_of(request)
    ended = COOKIE in request.cookies and (session is None or session.user is not None)
    if request.method != "GET":
        query["why"] = "unsent"
    elif ended:
        query["why"] = "ended"
    response = RedirectResponse("/console/login" + (f"?{urlencode(query)}" if query else ""), 303)
    # a session whose user was disabled is ended, not shown again on the sign-in page
    forget_session(response, request)
    return response


def forget_session(response: Response, request: Request) -> None:
    """The session's cookie deleted, where ``request`` carried it: a form another site sends
    carries none (the browser sends a ``SameSite=Strict`` cookie with no request another site
    starts), and yet the browser takes the answer's deletion, so that a page anywhere could
    sign the reviewer out of every tab they have open."""
    if COOKIE in request.cookies:
        response.delete_cookie(COOKIE, path="/console")


def sent_from(request: Request) -> str | None:
    """The console page a form was sent from (its ``Referer``, which the console's
    ``Referrer-Policy`` keeps to its own origin); None where it names none."""
    sent = urlsplit(request.headers.get("referer", ""))
    return console_page(urlunsplit(("", "", sent.path, sent.query, "")))


async def not_allowed(request: Request, _: Exception) -> Response:
    return error_page(request, 403, "forbidden")


async def stale_form(request: Request, exc: Exception) -> Response:
    """A form whose token is refused (:class:`StaleFormError`): 403, on a page that says the
    form was out of date and nothing was done, with a link to the page it was sent from, whose
    forms carry the token of the session signed in now, and what was written in the form
    (:data:`WRITTEN`), read-only, so that a reviewer's note is copied, not written again. Not
    the page a role may not open: a reviewer who signed in again in another tab would read that
    their decision was forbidden."""
    assert isinstance(exc, StaleFormError)
    # a form of the console's own pages carries the browser's session's cookie; one another
    # site sends carries none, and its words are no reviewer's to show on the console's page
    sent = exc.fields if COOKIE in request.cookies else {}
    written = [(name, value) for name, value in sent.items() if name in WRITTEN and value]
    return error_page(request, 403, "form_stale", again=sent_from(request), written=written)


async def no_page(request: Request, exc: Exception) -> Response:
    """An address of the console that names no page (or not for this method) gets the
    console's page, or, where only its trailing slash is wrong, a browser reading it a redirect
    to the page (``Location`` a path, so that the browser stays on the scheme and host it
    used); a form the edge refused (:mod:`service.api.edge`: its body over ``max_body_bytes``,
    413, or not arrived within ``body_read_timeout_s``, 408) the console's page that says so;
    any other address is the JSON API's (:func:`service.api.routes.no_route`)."""
    assert isinstance(exc, HTTPException)
    if not in_console(request.url.path):
        return await no_route(request, exc)
    if exc.status_code in (408, 413):
        return edge_refusal(request, exc.status_code)
    if exc.status_code not in (404, 405):
        return await http_exception_handler(request, exc)
    twin = slash_twin(request)
    if twin is not None and request.method in ("GET", "HEAD"):
        query = request.url.query
        return RedirectResponse(quote(twin) + (f"?{query}" if query else ""), 307)
    page = error_page(request, exc.status_code, "no_page")
    page.headers.update(exc.headers or {})
    return page


def edge_refusal(request: Request, status: int) -> HTMLResponse:
    """The page for a form whose body the edge refused, in the page's language, with the limit
    it went over: nothing in it was read, so nothing was done."""
    t = translator(language_of(request))
    settings = console_of(request).settings
    if status == 413:
        why = t("body_too_large_limit").format(limit=f"{settings.max_body_bytes:,}")
        return error_page(request, 413, "body_too_large", why)
    why = t("body_too_slow_limit").format(seconds=f"{settings.body_read_timeout_s:g}")
    return error_page(request, 408, "body_too_slow", why)
