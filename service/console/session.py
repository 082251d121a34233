"""Console sessions: a signed cookie (HMAC-SHA256) that carries who signed in, their role, the
user's session epoch then, when it expires, and a random nonce the CSRF token of every form is
derived from.

The session itself is kept in the cookie alone; every page looks its user up
(:func:`service.console.web.viewer`), so that a session ends, copies of its cookie included, when
it expires (``console_session_hours``), when its user is disabled or given another role, and
when its user signs out (which raises the user's epoch: every session signed in before ends).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import asdict, dataclass, replace
from typing import cast

from service.storage.repository import ConsoleAccount, Role

COOKIE = "ql_console"


@dataclass(frozen=True)
class Session:
    nonce: str
    expires: float
    user: str | None = None
    role: Role | None = None
    epoch: int = 0
    """The user's session epoch when it signed in (:attr:`ConsoleAccount.session_epoch`)."""

    @property
    def signed_in(self) -> bool:
        return self.user is not None


class Sessions:
    def __init__(self, secret: bytes, max_age_s: float) -> None:
        self._secret = secret
        self.max_age_s = max_age_s

    def _sign(self, payload: bytes) -> str:
        return hmac.new(self._secret, payload, hashlib.sha256).hexdigest()

    def new(self, now: float) -> Session:
        """A session nobody has signed in to yet (the sign-in form needs its CSRF token)."""
        return Session(nonce=secrets.token_urlsafe(16), expires=now + self.max_age_s)

    def sign_in(self, user: ConsoleAccount, now: float) -> Session:
        """A new nonce as well, so that a token seen before signing in is worth nothing after."""
        return replace(self.new(now), user=user.name, role=user.role, epoch=user.session_epoch)

    def dump(self, session: Session) -> str:
        payload = base64.urlsafe_b64encode(json.dumps(asdict(session)).encode()).decode()
        return f"{payload}.{self._sign(payload.encode())}"

    def load(self, cookie: str | None, now: float) -> Session | None:
        """The cookie's session, or None when it is missing, forged or expired."""
        if not cookie or "." not in cookie:
            return None
        payload, signature = cookie.rsplit(".", 1)
        if not hmac.compare_digest(self._sign(payload.encode()), signature):
            return None
        try:
            fields = json.loads(base64.urlsafe_b64decode(payload))
            session = Session(
                nonce=str(fields["nonce"]),
                expires=float(fields["expires"]),
                user=fields.get("user"),
                role=cast(Role | None, fields.get("role")),
                epoch=int(fields.get("epoch", 0)),
            )
        except (ValueError, KeyError, TypeError):
            return None
        return session if session.expires > now else None

    def csrf(self, session: Session) -> str:
        return self._sign(f"csrf:{session.nonce}".encode())

    def check_csrf(self, session: Session, token: str | None) -> bool:
        return token is not None and hmac.compare_digest(self.csrf(session), token)
