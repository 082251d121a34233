"""API keys, roles and rate limits: everything that decides who may call what, in one place.

A key is ``ql_<key id>_<secret>``: the id finds the stored key, the secret is checked against the
stored SHA-256 digest in constant time. The secret is 256 random bits, so a plain digest is as
strong as a slow password hash would be, and keeps verification cheap on the publish path. The
key itself is shown once, when it is created, and never stored.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import ipaddress
import json
import logging
import math
import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any, Protocol, get_args

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from service.storage import ApiKey, ConsoleAccount, StorageError
from service.storage.repository import Role, SignInAttempts

log = logging.getLogger(__name__)

ROLES: tuple[Role, ...] = get_args(Role)
BANK_EDITORS: tuple[Role, ...] = ("admin",)
"""Who may add and remove confirmed rumours, through the JSON API and the console alike: an
entry raises the rumour score of every later copy on the publish path. Reviewers read the bank."""
PREFIX = "ql"
KEY_ID_BYTES = 6
SECRET_BYTES = 32
KEY_ID_CHARS = 2 * KEY_ID_BYTES  # token_hex: two lowercase hex digits a byte
SECRET_CHARS = math.ceil(SECRET_BYTES * 4 / 3)  # token_urlsafe: base64url without padding
KEY_ID = re.compile(rf"[0-9a-f]{{{KEY_ID_CHARS}}}")
"""A key's id as :func:`create_key` draws it (what ``keys list`` shows)."""
KEY = re.compile(rf"{PREFIX}_({KEY_ID.pattern})_([A-Za-z0-9_-]{{{SECRET_CHARS}}})")
"""A key as :func:`create_key` makes it, and no other: anything else is refused before storage
or the cache sees it."""
DIGEST = re.compile(r"[0-9a-f]{64}")
"""A secret's digest as :func:`_digest` writes it."""
MAX_UNKNOWN_IDS = 1_000
"""Key ids storage does not know, remembered apart from known keys (which they never evict)."""
VERIFIED_KEYS_FORMAT = 2
"""Written in the verified keys file (:class:`VerifiedKeys`), whose every entry names its key's
owner. It moved from 1 with the owners, so that an earlier release, which reads format 1 only,
refuses this file (and writes its own) rather than taking it and writing it back without them."""
EARLIER_VERIFIED_KEYS_FORMAT = 1
"""Read as well: written by the releases before :data:`VERIFIED_KEYS_FORMAT`, its entries
without an owner (keys had none), or with one (written before the number moved). A file of any
other format is not read."""


class AuthError(Exception):
    """The request may not go on: ``status`` is 401, 403, 429 or 503."""

    def __init__(self, status: int, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after


class KeyReader(Protocol):
    """What checking keys needs of storage."""

    def get_key(self, key_id: str) -> ApiKey | None: ...


class KeyStore(KeyReader, Protocol):
    """What keys need of storage (the :class:`~service.storage.Repository` has it)."""

    def add_key(self, key: ApiKey) -> None: ...


class UserStore(Protocol):
    def add_user(self, name: str, digest: str, role: Role) -> None:
        """Store a console user; raises :class:`StorageError` when the name is taken."""

    def get_user(self, name: str) -> ConsoleAccount | None:
        """The user, disabled or not."""


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_key(repository: KeyStore, role: Role, owner: str | None = None) -> str:
    """Store a new key of ``role``, the console user ``owner``'s where given (checked by
    :func:`owner_refusal` first), and return the key itself (the only time it is seen)."""
    key_id = secrets.token_hex(KEY_ID_BYTES)
    secret = secrets.token_urlsafe(SECRET_BYTES)
    repository.add_key(
        ApiKey(
            key_id=key_id,
            digest=_digest(secret),
            role=role,
            created_at=datetime.now(UTC),
            owner=owner,
        )
    )
    return f"{PREFIX}_{key_id}_{secret}"


def owner_refusal(user: ConsoleAccount | None, name: str, role: Role) -> str | None:
    """Why the console user ``name`` (``user``, None where nobody has the name) may not own a
    new key of ``role``, or None where they may: an enabled user of that very role. A key
    above its owner's role would give the person through the API what the console refuses
    them; one below it would give one person two roles."""
    if user is None:
        return f"no console user {name!r} (see: qinglang users list)"
    if user.disabled:
        return f"console user {name!r} is disabled: nobody acts as them any more"
    if user.role != role:
        return (
            f"console user {name!r} has the role {user.role}: a key of theirs has it too, "
            f"not {role}"
        )
    return None


PASSWORDS = PasswordHasher()
"""argon2id with the library's default (RFC 9106 low-memory) parameters."""


def password_digest(password: str) -> str:
    """argon2id, because unlike an API key's secret a person's password may be guessable."""
    return PASSWORDS.hash(password)


def check_password(password: str, digest: str) -> bool:
    try:
        return PASSWORDS.verify(digest, password)
    except (VerificationError, InvalidHashError):
        return False


class SignInStore(UserStore, Protocol):
    """What the sign-in limits need of storage (the :class:`~service.storage.Repository`)."""

    def add_sign_in_attempt(
        self, name_digest: str, address: str, at: float, window_s: float
    ) -> SignInAttempts: ...

    def drop_sign_in_attempt(self, attempt_id: int) -> None: ...

    def clear_sign_in_attempts(self, name_digest: str) -> None: ...


@dataclass(frozen=True)
class SignInLimits:
    """At most ``per_name`` failed sign-ins under one user name, and ``per_address`` from one
    client address, within ``window_s``; the next attempt is refused until enough of them have
    left the window."""

    per_name: int
    per_address: int
    window_s: float
    key: bytes
    """Keys :meth:`name_digest`: the console's signing key, which every process that counts
    the same attempts shares."""

    def name_digest(self, name: str) -> str:
        """What is stored of the user name an attempt was typed under: people type their
        password into the name field at times, and a plain digest of a guessable password would
        give it away as an argon2id digest does not. The prefix keeps it from ever equalling a
        session cookie's signature (base64, no colon) under the same key."""
        return hmac.new(self.key, f"sign-in-name:{name}".encode(), hashlib.sha256).hexdigest()


@cache
def _absent_user_digest() -> str:
    return password_digest(secrets.token_urlsafe(18))


def client_address(host: str | None) -> str:
    """What the per-address limit counts: the client's address, or for IPv6 its /64 network
    (the usual allocation of one subscriber, who can use any address in it). An IPv6 address
    that carries an IPv4 client's (what a listener on ``::`` gives IPv4 clients, 6to4, Teredo)
    counts as that IPv4 address: its /64 holds every such client (or a whole 6to4 site's /48)."""
    try:
        address = ipaddress.ip_address(host or "")
    except ValueError:
        return (host or "unknown")[:64]
    if isinstance(address, ipaddress.IPv6Address):
        teredo_client = address.teredo[1] if address.teredo else None
        ipv4 = address.ipv4_mapped or address.sixtofour or teredo_client
        if ipv4 is not None:
            return str(ipv4)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


def _wait(others: list[float], limit: int, now: float, window_s: float) -> float | None:
    """None when fewer than ``limit`` other attempts (oldest first) are in the window, else
    the seconds until enough of them have left it for one more."""
    if len(others) < limit:
        return None
    return max(others[len(others) - limit] + window_s - now, 1.0)


def sign_in(
    store: SignInStore,
    limits: SignInLimits,
    name: str,
    password: str,
    address: str,
    now: float,
) -> ConsoleAccount:
    """The user ``name`` if ``password`` is its password; raises :class:`AuthError` 401 if
    not, and 429 (with ``retry_after``) without checking the password once too many attempts
    failed under the name or from the address. The attempt is stored before it is counted, so
    the limits hold across server processes and for concurrent attempts; a name nobody has is
    counted, hashed and refused exactly like a wrong password, so that neither the answer nor
    its time tells whether the user exists. Signing in forgets the name's failed attempts."""
    typed = limits.name_digest(name)
    attempt = store.add_sign_in_attempt(typed, address, now, limits.window_s)
    waits = [
        _wait(attempt.by_name, limits.per_name, now, limits.window_s),
        _wait(attempt.by_address, limits.per_address, now, limits.window_s),
    ]
    wait = max((w for w in waits if w is not None), default=None)
    if wait is not None:
        # not counted: a refused attempt checked nothing, and must not prolong the wait
        store.drop_sign_in_attempt(attempt.attempt_id)
        raise AuthError(429, "too many failed sign-ins; try again later", retry_after=wait)
    user = _enabled(store, name)
    digest = _absent_user_digest() if user is None else user.digest
    if not check_password(password, digest) or user is None:
        raise AuthError(401, "wrong name or password")
    store.clear_sign_in_attempts(typed)
    return user


def session_holds(store: UserStore, name: str, role: Role, epoch: int) -> bool:
    """Whether a session that ``name`` signed in to as ``role`` under ``epoch`` goes on: not
    when no user has the name, it is disabled, has another role, or signed out since (its
    epoch is another)."""
    user = _enabled(store, name)
    return user is not None and user.role == role and user.session_epoch == epoch


def _enabled(store: UserStore, name: str) -> ConsoleAccount | None:
    # a disabled user is answered exactly as one nobody has
    user = store.get_user(name)
    return None if user is None or user.disabled else user


def create_user(repository: UserStore, name: str, role: Role) -> str:
    """Store a console user of ``role`` with a new random password, and return the password."""
    password = secrets.token_urlsafe(18)
    repository.add_user(name, password_digest(password), role)
    return password


@dataclass(frozen=True)
class Principal:
    key_id: str
    role: Role
    owner: str | None = None
    """The console user the key belongs to (:attr:`ApiKey.owner`)."""

    @property
    def actor(self) -> str:
        """Who the review records name and its separation-of-duty checks compare (an
        escalation's escalator, an appealed decision's reviewer): the owner, as the console
        names that user, so that one person is one actor in both; else the key's id."""
        return self.key_id if self.owner is None else self.owner


class TokenBucket:
    """``rate`` tokens a second up to ``burst``; one token per request."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float]) -> None:
        self.rate, self.burst, self.clock = rate, burst, clock
        self.tokens = float(burst)
        self.stamp = clock()

    def take(self) -> float:
        """0 when a token was taken, else the seconds until one will be there."""
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


class VerifiedKeys:
    """The keys storage last said were valid, in a file (``Settings.verified_keys_file``, mode
    0600), so that a server started while storage is down still lets them in.

    An entry is what storage holds of a key: its id, digest, role, creation time and owner,
    never a secret (a digest of 256 random bits gives none away). A key storage says is revoked,
    or does not know, is dropped, so that the file holds what storage said last: a key revoked
    while storage is down is let in by a server that reads it until storage answers again. The
    file is written only when that changes, re-read under a lock first, as the server's
    processes share it: none loses a key another wrote, and none reads half a file (it is
    written under another name, then renamed). One that cannot be read or written is a
    warning, never a refusal: the keys then wait for storage, as they did before the file.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._keys: dict[str, ApiKey] = {}
        # the file's inode, modification time and size when last read: another process's
        # rename changes them
        self._read_as: tuple[int, int, int] | None = None
        # what was last warned of, so that a look-up per request in an outage warns once
        self._problem: str | None = None
        self._lock = threading.Lock()
        self._refresh()

    def get(self, key_id: str) -> ApiKey | None:
        """The key as storage last said it was, where it is valid; None where not kept."""
        with self._lock:
            self._refresh()  # another process may have verified it since
            return self._keys.get(key_id)

    def note(self, key_id: str, stored: ApiKey | None) -> None:
        """Keep what storage said of ``key_id`` (None: it does not know the id)."""
        kept = None if stored is None or stored.revoked else stored
        with self._lock:
            self._refresh()
            if self._keys.get(key_id) == kept:
                return
            try:
                with self._file_lock():
                    self._refresh()
                    keys = {k: v for k, v in self._keys.items() if k != key_id}
                    if kept is not None:
                        keys[key_id] = kept
                    if keys != self._keys:
                        self._write(keys)
            except OSError as exc:
                # the next answer of storage about this key tries again
                log.warning(
                    "cannot write the verified keys file",
                    extra={"file": str(self.path), "problem": str(exc)},
                )

    def _refresh(self) -> None:
        """Read the file again where it changed since it was last read."""
        try:
            found = os.stat(self.path)
        except FileNotFoundError:
            self._keys, self._read_as, self._problem = {}, None, None
            return
        except OSError as exc:
            self._keys, self._read_as = {}, None
            self._unusable(exc)
            return
        read_as = (found.st_ino, found.st_mtime_ns, found.st_size)
        if read_as == self._read_as:
            return
        self._read_as = read_as  # one that cannot be used is not read again until it changes
        try:
            self._keys, self._problem = _parse_verified(self.path.read_bytes()), None
        except (OSError, ValueError) as exc:
            self._keys = {}
            self._unusable(exc)

    def _unusable(self, exc: Exception) -> None:
        if str(exc) == self._problem:
            return
        self._problem = str(exc)
        log.warning(
            "the verified keys file cannot be used: while storage is down, only the keys this "
            "process verified are let in, until a key storage verifies has the file written again",
            extra={"file": str(self.path), "problem": self._problem},
        )

    @contextmanager
    def _file_lock(self) -> Iterator[None]:
        """Held by one process at a time, from reading the file to its rename."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(f"{self.path.name}.lock"), "ab") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def _write(self, keys: dict[str, ApiKey]) -> None:
        document = {
            "format": VERIFIED_KEYS_FORMAT,
            "keys": [
                {
                    "key_id": key.key_id,
                    "digest": key.digest,
                    "role": key.role,
                    "created_at": key.created_at.isoformat(),
                    "owner": key.owner,
                }
                for key in sorted(keys.values(), key=lambda key: key.key_id)
            ],
        }
        partial = self.path.with_name(f".{self.path.name}.{os.getpid()}.partial")
        descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(descriptor, "w") as out:
                json.dump(document, out)
                out.flush()
                # on disk before the rename, so that a power cut leaves the old file or this one
                os.fsync(out.fileno())
            os.replace(partial, self.path)
        except OSError:
            partial.unlink(missing_ok=True)
            raise
        found = os.stat(self.path)
        self._keys, self._read_as = keys, (found.st_ino, found.st_mtime_ns, found.st_size)


def _parse_verified(data: bytes) -> dict[str, ApiKey]:
    """The keys of a verified keys file; ValueError naming what is wrong with it."""
    try:
        document: Any = json.loads(data)
        found = document["format"]
        if found not in (VERIFIED_KEYS_FORMAT, EARLIER_VERIFIED_KEYS_FORMAT):
            raise ValueError(f"format {found!r}, not {VERIFIED_KEYS_FORMAT}")
        keys = [
            ApiKey(
                key_id=entry["key_id"],
                digest=entry["digest"],
                role=entry["role"],
                created_at=datetime.fromisoformat(entry["created_at"]),
                owner=entry["owner"] if found == VERIFIED_KEYS_FORMAT else entry.get("owner"),
            )
            for entry in document["keys"]
        ]
    except (KeyError, TypeError) as exc:
        raise ValueError(f"not a verified keys file: {exc!r}") from None
    for key in keys:
        if not (
            isinstance(key.key_id, str)
            and KEY_ID.fullmatch(key.key_id)
            and isinstance(key.digest, str)
            and DIGEST.fullmatch(key.digest)
            and key.role in ROLES
            and (key.owner is None or isinstance(key.owner, str))
        ):
            raise ValueError(
                f"not a key: {key.key_id!r}, {key.digest!r}, {key.role!r}, {key.owner!r}"
            )
    return {key.key_id: key for key in keys}


class Guard:
    """Checks a bearer key, its role and its rate; keeps verified keys for ``cache_s`` seconds.

    Keys are kept so that a request does not cost a storage round trip, and so that known keys go
    on working while storage is down (publish must not block): those verified in this process,
    and those storage last said were valid in ``known`` (:class:`VerifiedKeys`), read only when
    storage cannot answer. Any other key then gets 503.
    """

    def __init__(
        self,
        repository: KeyReader,
        *,
        rate: float,
        burst: int,
        cache_s: float,
        known: VerifiedKeys,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.repository = repository
        self.known = known
        self.rate, self.burst, self.cache_s, self.clock = rate, burst, cache_s, clock
        # ids storage knows, with when they were read: no more than were ever created
        self._keys: dict[str, tuple[float, ApiKey]] = {}
        # ids storage does not know, apart, so that one retried does not ask storage each time
        # and no number of them pushes a known key out
        self._unknown: dict[str, float] = {}
        self._buckets: dict[str, TokenBucket] = {}
        self._lock = threading.Lock()

    def check(self, authorization: str | None, allowed: tuple[Role, ...]) -> Principal:
        """The caller behind an ``Authorization`` header value, allowed one of ``allowed``.

        Blocking (it may ask storage): call it off the event loop.
        """
        key_id, secret = _parse(authorization)
        return self._verify(key_id, secret, self._lookup(key_id), allowed)

    def check_known(self, authorization: str | None, allowed: tuple[Role, ...]) -> Principal | None:
        """:meth:`check` without storage: None when the key is not cached (then call
        :meth:`check` off the loop). Most requests come from known keys and end here."""
        key_id, secret = _parse(authorization)
        now = self.clock()
        cached = self._keys.get(key_id)
        if cached is not None and now - cached[0] < self.cache_s:
            return self._verify(key_id, secret, cached[1], allowed)
        if now - self._unknown.get(key_id, -math.inf) < self.cache_s:
            return self._verify(key_id, secret, None, allowed)
        return None

    def _verify(
        self, key_id: str, secret: str, stored: ApiKey | None, allowed: tuple[Role, ...]
    ) -> Principal:
        if (
            stored is None
            or stored.revoked
            or not hmac.compare_digest(_digest(secret), stored.digest)
        ):
            raise AuthError(401, "unknown or revoked API key")
        if stored.role not in allowed:
            raise AuthError(
                403, f"a {stored.role} key may not call this; it needs one of {list(allowed)}"
            )
        with self._lock:
            bucket = self._buckets.get(key_id)
            if bucket is None:
                bucket = self._buckets[key_id] = TokenBucket(self.rate, self.burst, self.clock)
            wait = bucket.take()
        if wait:
            raise AuthError(429, "rate limit exceeded for this API key", retry_after=wait)
        return Principal(key_id=key_id, role=stored.role, owner=stored.owner)

    def _lookup(self, key_id: str) -> ApiKey | None:
        now = self.clock()
        cached = self._keys.get(key_id)
        if cached is not None and now - cached[0] < self.cache_s:
            return cached[1]
        if now - self._unknown.get(key_id, -math.inf) < self.cache_s:
            return None
        try:
            stored = self.repository.get_key(key_id)
        except StorageError:
            if cached is not None:
                return cached[1]
            kept = self.known.get(key_id)
            if kept is not None:
                return kept
            raise AuthError(503, "cannot verify the API key: storage is unavailable", 5.0) from None
        self.known.note(key_id, stored)
        if stored is not None:
            self._keys[key_id] = (now, stored)
            self._unknown.pop(key_id, None)
            return stored
        if len(self._unknown) >= MAX_UNKNOWN_IDS:
            self._unknown.clear()
        self._unknown[key_id] = now
        return None


def _parse(authorization: str | None) -> tuple[str, str]:
    """The key id and secret of a key in :data:`KEY`'s format; 401 for anything else."""
    if not authorization:
        raise AuthError(401, "missing API key: send Authorization: Bearer KEY")
    scheme, _, key = authorization.partition(" ")
    found = KEY.fullmatch(key.strip())
    if scheme.lower() != "bearer" or found is None:
        raise AuthError(401, "malformed API key: send Authorization: Bearer KEY")
    return found.group(1), found.group(2)
