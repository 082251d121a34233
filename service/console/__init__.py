"""The trust team's web console under ``/console/``: server-rendered pages over the same
repository transactions and request models as the JSON API (:mod:`service.api.review`,
:mod:`service.neardup.bank`), so every rule is the API's own.

Pages are Jinja2 templates with autoescaping; the only script is ``static/console.js`` (keyboard
shortcuts, a refused form's page put in its POST's place in the history, and the focus moved to
why it was refused), and the
Content-Security-Policy allows no inline script or style. Every form carries the session's CSRF
token (:mod:`service.console.session`), and a decision or appeal form a one-time key that makes
sending it twice write it once (:func:`service.console.web.sent_once`).
"""

from __future__ import annotations

import secrets
from functools import partial
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader
from starlette.exceptions import HTTPException

from service.console import articles, pages, times
from service.console.i18n import FAMILIES, code_filter, in_words
from service.console.session import Sessions
from service.console.web import (
    Console,
    NotAllowedError,
    SignInRequiredError,
    StaleFormError,
    no_page,
    not_allowed,
    stale_form,
    to_sign_in,
)
from service.security import SignInLimits
from service.settings import Settings
from service.storage.console_sql import ConsoleReads

HERE = Path(__file__).parent


def mount(app: FastAPI, settings: Settings, reads: ConsoleReads) -> None:
    """Serve the console from ``app`` under ``/console/``."""
    secret = settings.console_secret
    key = secret.get_secret_value().encode() if secret else secrets.token_bytes(32)
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=True)
    env.filters["when"] = partial(times.when, zone=settings.console_zone)
    env.filters["duration"] = in_words(times.duration)
    env.filters["article"] = in_words(articles.name)
    for family in FAMILIES:
        env.filters[family] = code_filter(family)
    app.state.console = Console(
        settings=settings,
        sessions=Sessions(key, settings.console_session_hours * 3600),
        env=env,
        articles=articles.load(settings.regulation_file),
        reads=reads,
        limits=SignInLimits(
            per_name=settings.console_sign_in_failures,
            per_address=settings.console_sign_in_address_failures,
            window_s=settings.console_sign_in_window_minutes * 60,
            key=key,
        ),
    )
    app.include_router(pages.router)
    app.mount("/console/static", StaticFiles(directory=HERE / "static"), name="console-static")
    app.add_exception_handler(SignInRequiredError, to_sign_in)
    app.add_exception_handler(NotAllowedError, not_allowed)
    app.add_exception_handler(StaleFormError, stale_form)
    app.add_exception_handler(HTTPException, no_page)
