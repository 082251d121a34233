"""The one settings object: environment variables ``QINGLANG_*`` and an optional TOML file.

The TOML file is named by ``QINGLANG_CONFIG`` (default ``qinglang.toml`` in the working folder,
read only when it exists). Environment variables win over the file.
"""

from __future__ import annotations

import os
import sys
import tomllib
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, available_timezones

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

PACKAGE = Path(__file__).resolve().parent
"""The ``service`` package, with the data it reads at run time: in a checkout and in an installed
wheel alike."""
ROOT = PACKAGE.parent
"""The repository in a checkout (an editable install included); in an installed wheel, the
``site-packages`` folder the package lies in."""
CHECKOUT = (ROOT / "pyproject.toml").is_file()
"""Whether the package runs from a checkout, not from an installed wheel: a wheel puts no
``pyproject.toml`` beside its packages."""

PREFIX = "QINGLANG_"
"""Of the environment variables that set :class:`Settings`' fields."""
MAX_WORKERS = 64
"""Most server or rescore worker processes: each loads the model (about 100 MB), so far more
would only exhaust memory."""

YEAR_S = 366 * 24 * 3600
"""Longest duration a setting may give, past every use of one (two days' idempotency keys, a
week's near-duplicates): a longer one overflows the clocks it is added to, a ``timedelta`` or a
socket's timeout (a traceback at start, or a maintenance that fails every time it runs)."""

MIN_SECRET_BYTES = 32
"""Of a key that is set (the console's, the subject digests'): as many as the HMAC-SHA256 key
drawn when none is."""

SHARED_METRICS_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
"""Turns on prometheus_client's multiprocess mode, with the folder where each process writes its
values; read when prometheus_client is imported. ``qinglang serve`` sets it to
:attr:`Settings.metrics_dir`."""


def default_state_dir() -> Path:
    """``state_dir`` where no setting names one. In a checkout its ``./data`` (ignored by git),
    where ``make serve`` keeps it beside the code it runs. An installed package's is not beside
    its code: ``site-packages`` is often not writable, shared by whatever runs from that
    environment, and replaced by an upgrade, which would lose the database and the subject key.
    It is the user's state folder instead, as the XDG base directory specification names it
    (``$XDG_STATE_HOME/qinglang``, else ``~/.local/state/qinglang``): one per user, whichever
    environment or working folder ``qinglang`` runs from, and kept across upgrades. Where no
    home folder is known (a user id the system has no entry for, no ``HOME``), the working
    folder's ``./data``."""
    if CHECKOUT:
        return ROOT / "data"
    # the specification has a relative value ignored
    xdg = os.environ.get("XDG_STATE_HOME", "")
    if os.path.isabs(xdg):
        return Path(xdg, "qinglang")
    try:
        return Path.home() / ".local" / "state" / "qinglang"
    except RuntimeError:
        return Path("data")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=PREFIX, extra="forbid")

    data_dir: Path = ROOT.parent / "shared" / "data"
    """The labelled corpora (read by training and evaluation only)."""
    model_dir: Path = PACKAGE / "models"
    """The shipped classifier: ``model.onnx``, ``tokenizer.json``, ``card.json``. In a checkout
    ``service/models`` links to ``models/``; a wheel carries the files, so that an installed
    ``qinglang`` (a Ray cluster's workers, the image) serves and re-scores with it."""
    policy_file: Path = PACKAGE / "policy" / "default.toml"
    """Thresholds, reason codes and actions; versioned, readable by trust and legal teams."""
    intra_op_threads: int = Field(default=1, ge=1)
    """ONNX Runtime threads per session: one, so that every core serves its own batch."""
    evidence: bool = True
    """Find the evidence spans of flagged posts. Off (``qinglang rescore --no-evidence``, or a
    server process that only scores), flagged records keep ``evidence_pending`` and their reasons
    carry no spans: a re-score runs several times faster, and a server process with it on finds
    the spans of the stored ones in its sweep (``evidence_lease_s``)."""
    evidence_threads: int = Field(default=1, ge=1)
    """ONNX Runtime threads of the session that finds evidence spans after the answer. One: it
    then runs on the calling thread, in the server the idle-scheduled evidence process's
    (:mod:`service.evidence_process`), so spans use only CPU time that scoring leaves."""
    batch_size: int = Field(default=64, ge=1)
    """Posts per model call in batch scoring (posts are sorted by length within a chunk)."""

    # --- the service (``qinglang serve``) ---
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    workers: int = Field(default=1, ge=1, le=MAX_WORKERS)
    """Server processes; each loads the model and runs its own inference thread."""
    state_dir: Path = Field(default_factory=default_state_dir)
    """The service's own files: the SQLite database by default, the spool, the metric values of
    the server's processes. Default: :func:`default_state_dir`."""
    database_url: str | None = None
    """SQLAlchemy URL (``postgresql+psycopg://...``); default: SQLite in ``state_dir``."""
    subject_key: SecretStr | None = None
    """Key of the digests stored of subject identifiers (ID card and licence numbers), at least
    :data:`MIN_SECRET_BYTES`: HMAC-SHA256 of their SHA-256, which without the key cannot be
    reversed by trying every number. Every process of a deployment sets the same one, kept
    as its other secrets are; the database keeps its fingerprint and the service refuses to
    start with another. Default: the file ``subject.key`` in ``state_dir``, drawn once (mode
    0600), for a single-host install; losing it loses every stored subject."""
    # PostgreSQL takes whole milliseconds (0 turns its timeout off) up to about 24 days
    db_timeout_s: float = Field(default=1.0, ge=0.001, le=3600)
    """How long one wait of a storage call may last (SQLite lock, PostgreSQL statement or
    lock, connecting) before the request gives up on storage and answers degraded. A
    PostgreSQL connection whose server stopped answering (dropped packets, a failover, a hung
    host) is dropped by the kernel after about four times this, whole seconds (libpq's TCP
    keepalives and ``tcp_user_timeout``)."""
    # 5 s: a call waits for a pooled connection and for a lock (each up to db_timeout_s) and
    # runs many statements, each bounded alone: writing one batch of 256 flagged posts is about
    # 1,030 statements, which took 1.4 to 2.1 s on PostgreSQL and 0.8 s on SQLite on two busy
    # cores. A deadline of db_timeout_s would give up such writes (answered degraded, storage
    # skipped by every request for storage_retry_s) where nothing is wrong.
    storage_deadline_s: float = Field(default=5.0, gt=0, le=3600, validate_default=True)
    """How long a request waits for one storage call in all, whatever it waits on, before it
    gives up on it and answers degraded from the spool, storage skipped for ``storage_retry_s``
    (a server that stops answering on an open connection is noticed by no timeout of the
    database's own). At least ``db_timeout_s``, which bounds each wait within the call."""
    storage_retry_s: float = Field(default=2.0, gt=0, le=YEAR_S)
    """After a storage failure, requests skip storage for this long; then it is tried again
    (by one call at a time until one succeeds) and the spool is written out."""
    idempotency_keep_hours: float = Field(default=48.0, gt=0, le=YEAR_S // 3600)
    """How long the answer to a write made with an ``Idempotency-Key`` (the console's decision
    and appeal forms' keys too) is kept for its retry; the maintenance of each server process
    deletes older ones. A retry later than this is made again."""
    evidence_lease_s: float = Field(default=300.0, gt=0, le=YEAR_S)
    """A stored record still ``evidence_pending`` this long after it was stored (the evidence
    backlog was full, storage failed, the process stopped) is claimed by a process's sweep,
    which finds its evidence; a claim lasts as long, renewed by each sweep of its process while
    the search waits (longer than ``storage_retry_s``, or it lapses between sweeps)."""
    evidence_deadline_s: float = Field(default=300.0, gt=0, le=YEAR_S)
    """How long the evidence process may take over one post's search (its start included, for
    the first) before it is taken for hung, killed and started again by the next search; the
    records of the call stay ``evidence_pending``, for the sweep. Idle-scheduled, the process
    may be slow on a busy host: each deadline missed in a row doubles the next, up to eight
    times this, so that a process merely starved of CPU is not killed before it ends, again and
    again."""
    evidence_attempts: int = Field(default=3, ge=1)
    """How many evidence searches a stored record's post may fail on (the process ended, or
    hung while it had a core) before its evidence is given up: stored without spans, with the
    ``service.explaining.NO_EVIDENCE`` warning, so that a post that ends or hangs the search
    every time is not tried by every sweep for ever, first as the oldest, ahead of the records
    behind it.
    A deadline missed by a process starved of CPU is not counted."""
    serve_threads: int = Field(default=2, ge=1)
    """ONNX Runtime threads per model call in the server."""
    inference_workers: int = Field(default=1, ge=1)
    """Model calls the server runs at once. One call with two ONNX threads on the 2-core target:
    concurrent requests are already merged into one batch, and a second call would only split
    the cores between two batches."""
    batch_window_ms: float = Field(default=2.0, ge=0, le=YEAR_S * 1000)
    """How long the first request of a micro-batch waits for others to join it."""
    batch_max_posts: int = Field(default=64, ge=1)
    """Most posts per model call; a request of more is scored in calls of this many, with other
    requests' calls between them."""
    max_queue_posts: int = Field(default=512, ge=1)
    """Posts that may wait for the model; past it requests get 503 at once rather than an
    answer that comes too late for the publish path to use."""
    cache_size: int = Field(default=100_000, ge=0)
    """Score records kept in memory per process, so that a post id scored again gets its first
    record back without storage (``pass`` records are not stored)."""
    max_text_chars: int = Field(default=10_000, ge=1)
    max_body_bytes: int = Field(default=2 * 1024 * 1024, ge=1)
    body_read_timeout_s: float = Field(default=10.0, gt=0, le=YEAR_S)
    """How long a request's body may take to arrive, from its headers on; past it the request
    is answered 408 and its connection closed (a caller that never finishes its body would
    otherwise hold a connection and a request for ever)."""
    max_batch_posts: int = Field(default=256, ge=1)
    rate_limit_per_s: float = Field(default=1000.0, gt=0)
    """Requests per second per API key (token bucket), per server process."""
    rate_limit_burst: int = Field(default=2000, ge=1)
    key_cache_s: float = Field(default=60.0, ge=0, le=YEAR_S)
    """How long a verified key is trusted without asking storage again (a revoked key keeps
    working this long; a known key keeps working while storage is down, and after a restart
    while it is down: ``verified_keys_file``)."""
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"

    # --- near-duplicates: the fingerprint and match stages (service/neardup) ---
    neardup_window_hours: float = Field(default=72.0, gt=0, le=YEAR_S // 3600)
    """How far back a new post is compared with earlier ones."""
    neardup_bucket_hours: float = Field(default=12.0, gt=0, validate_default=True)
    """Width of one time bucket of the window; old posts expire a whole bucket at a time."""
    neardup_threshold: float = Field(default=0.4, gt=0, lt=1)
    """Estimated Jaccard similarity of shingle sets from which two posts are near-copies."""
    neardup_shingle: int = Field(default=2, ge=1, le=3)
    """Characters per shingle: two, as a Chinese word is mostly two characters; with three, the
    tenth of characters a campaign replaces breaks too many shingles (eval/neardup.py)."""
    neardup_num_perm: int = Field(default=128, ge=16)
    """MinHash permutations: the estimate's standard error is sqrt(J(1-J)/num_perm)."""
    neardup_min_shingles: int = Field(default=8, ge=1)
    """Texts with fewer distinct shingles are boilerplate: they never form or join a cluster."""
    neardup_excerpt_chars: int = Field(default=500, ge=0)
    """Characters of each indexed post's text the window keeps (and forgets with it), so that a
    fake-originality finding can show the earlier post's text beside its copy; 0 keeps none."""
    neardup_snapshot_s: float = Field(default=300.0, gt=0, le=YEAR_S)
    """How often each server process writes its window to ``state_dir`` (and at shutdown)."""
    neardup_replay: bool = False
    """Re-scoring (set by ``qinglang rescore``): a post without ``created_at`` takes the newest
    ``created_at`` seen before it instead of the wall clock, so that a run is reproducible."""
    neardup_bank_refresh_s: float = Field(default=5.0, gt=0, le=YEAR_S)
    """How often each server process reloads the confirmed-rumour bank if it changed."""
    redis_url: str | None = None
    """Redis (``redis://127.0.0.1:6379/0``) for the near-duplicate window and clusters, shared by
    every server process and replica; default: each process keeps its own."""
    redis_timeout_s: float = Field(default=0.05, gt=0, le=YEAR_S)
    """How long one call to Redis may take before the post is matched locally (degraded)."""
    neardup_redis_prefix: str = "qinglang:nd"
    neardup_redis_retry_s: float = Field(default=5.0, gt=0, le=YEAR_S)
    """After Redis failed, posts are matched locally for this long before Redis is tried again."""
    neardup_max_future_s: float = Field(default=300.0, ge=0, le=YEAR_S)
    """A created_at further ahead of the clock than this is replaced by the arrival time."""

    # --- the web console (service/console) ---
    console_secret: SecretStr | None = None
    """Key that signs console session cookies, at least :data:`MIN_SECRET_BYTES`;
    default: a random one per process, so sessions end with the process and do not cross server
    processes (``qinglang serve`` with several workers draws one that they share)."""
    console_session_hours: float = Field(default=8.0, gt=0, le=YEAR_S // 3600)
    """How long a console sign-in lasts."""
    console_secure_cookie: bool = False
    """Send the session cookie over HTTPS only, whatever scheme the request came in: it is so
    already for a request that came over HTTPS as uvicorn reads it (set it behind a proxy that
    ends TLS without saying so in ``X-Forwarded-Proto``)."""
    console_sign_in_failures: int = Field(default=5, ge=1)
    """Failed sign-ins under one user name within ``console_sign_in_window_minutes`` after
    which further attempts under that name are refused (429) until the oldest leave the window."""
    console_sign_in_address_failures: int = Field(default=20, ge=1)
    """The same for one client address (IPv6: one /64), whatever the names: higher, because an
    office behind one address signs in many people."""
    console_sign_in_window_minutes: float = Field(default=15.0, gt=0, le=YEAR_S // 60)
    # the default checked too: without a time-zone database no zone is known
    console_timezone: str = Field(default="Asia/Shanghai", validate_default=True)
    """The IANA time zone every moment on the console's pages is shown in, its offset named
    (``2026-12-06 15:43 UTC+8``), and whose dates the dashboard counts per day. Beijing time by
    default: a Chinese platform's trust team reads its moments and counts its days in China
    Standard Time (UTC+8, no summer time), whereas a UTC date turns at 08:00 there, splitting
    the working day's early hours off onto the day before; ``UTC`` for a team spread across
    zones."""
    regulation_file: Path = ROOT.parent / "shared" / "regulation" / "provisions-zh.txt"
    """The Provisions' text, whose articles the console shows next to each reason code. The
    default is beside the repository (its parent's ``shared/regulation``), not in the working
    folder; a file that cannot be read leaves reason codes only, with a warning at start."""

    @property
    def database(self) -> str:
        """The storage URL in effect."""
        return self.database_url or f"sqlite:///{self.state_dir / 'qinglang.db'}"

    @property
    def console_zone(self) -> ZoneInfo:
        return ZoneInfo(self.console_timezone)

    @property
    def spool_dir(self) -> Path:
        return self.state_dir / "spool"

    @property
    def metrics_dir(self) -> Path:
        """Where the server's processes keep their metric values, emptied when ``qinglang
        serve`` starts (service/metrics.py)."""
        return self.state_dir / "metrics"

    @property
    def verified_keys_file(self) -> Path:
        """The API keys storage last said were valid, for a server started while storage is
        down (:class:`service.security.VerifiedKeys`)."""
        return self.state_dir / "verified-keys.json"

    @property
    def listening_file(self) -> Path:
        """Where ``qinglang serve`` writes the host and port it listens on, its ``--host`` and
        ``--port`` included, for ``python -m service.healthcheck`` to probe."""
        return self.state_dir / "serve.address"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_file = Path(os.environ.get("QINGLANG_CONFIG", "qinglang.toml"))
        return (
            init_settings,
            env_settings,
            TomlConfigSettingsSource(settings_cls, toml_file=toml_file),
        )

    @field_validator("storage_deadline_s")
    @classmethod
    def _whole_call(cls, value: float, info: ValidationInfo) -> float:
        timeout = info.data.get("db_timeout_s")
        if timeout is not None and value < timeout:
            raise ValueError(
                f"below db_timeout_s ({timeout:g}): a storage call waits up to db_timeout_s "
                "for each lock or statement, and the deadline bounds the whole call"
            )
        return value

    @field_validator("neardup_bucket_hours")
    @classmethod
    def _within_window(cls, value: float, info: ValidationInfo) -> float:
        window = info.data.get("neardup_window_hours")
        if window is not None and value > window:
            # the index expires the window a whole bucket at a time (service/neardup/index.py)
            raise ValueError(f"above neardup_window_hours ({window:g}): a bucket is a part of it")
        return value

    @field_validator("database_url")
    @classmethod
    def _database(cls, value: str | None) -> str | None:
        # checked here, so that a mistyped URL stops every command at once (a server would
        # otherwise take it for a database that is down, and serve degraded for ever)
        if value is None:
            return None
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            backend = make_url(value).get_backend_name()
        except ArgumentError:
            raise ValueError(
                "not a database URL (sqlite:///FILE or postgresql+psycopg://USER@HOST/DB)"
            ) from None
        if backend not in ("sqlite", "postgresql"):
            raise ValueError(f"{backend} is not supported: SQLite or PostgreSQL")
        url = make_url(value)
        if backend == "sqlite" and not url.database:
            # an in-memory database would lose everything at the end of each connection
            raise ValueError("a SQLite URL names its file: sqlite:///FILE")
        if backend == "sqlite" and (str(url.database).startswith("file:") or "uri" in url.query):
            # storage takes the URL's database for the file's path (to make its folder, to check
            # that the file a read-only command reads exists): a URI filename is no path, and
            # "file:/tmp/x.db" was looked for, and its folder made, under ./file:/tmp
            raise ValueError(
                "a SQLite URI filename (file:, uri=true) is not supported: sqlite:///FILE"
            )
        if backend == "postgresql" and url.get_driver_name() != "psycopg":
            raise ValueError(
                f"the driver {url.get_driver_name()} is not installed: postgresql+psycopg://"
            )
        return value

    @field_validator(
        "data_dir",
        "model_dir",
        "policy_file",
        "state_dir",
        "regulation_file",
        "host",
        mode="before",
    )
    @classmethod
    def _not_empty(cls, value: object) -> object:
        # an empty path is the working folder (and serve empties state_dir's metrics folder),
        # an empty host every interface: an unset shell variable, not a choice
        if isinstance(value, str) and not value.strip():
            raise ValueError("is empty")
        return value

    @field_validator("console_secret", "subject_key")
    @classmethod
    def _long_secret(cls, value: SecretStr | None) -> SecretStr | None:
        # anyone can get a cookie signed with the console's (the sign-in page's) to guess a
        # short one against, and anyone with the database a subject digest
        if value is not None and len(value.get_secret_value().encode()) < MIN_SECRET_BYTES:
            raise ValueError(
                f"at least {MIN_SECRET_BYTES} bytes: draw one with "
                "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
            )
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis(cls, value: str | None) -> str | None:
        # checked here, as database_url is: the server reads it when it loads its pipeline, whose
        # error was then put down to the model
        if value is None:
            return None
        from urllib.parse import urlsplit

        import redis

        form = "redis://HOST:PORT/DB, rediss://, unix://PATH?db=DB"
        if value.split("://", 1)[0] not in ("redis", "rediss", "unix"):
            raise ValueError(f"not a Redis URL ({form})")
        try:
            # parses the URL and its options as the client will, opening no connection
            redis.ConnectionPool.from_url(value).make_connection()
            url = urlsplit(value)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"not a Redis URL: {exc} ({form})") from None
        database = url.path[1:]
        if url.scheme != "unix" and database and not database.isdecimal():
            # the client takes any other path for database 0, another application's perhaps
            raise ValueError(f"the database is a number: /DB ({form})")
        return value

    @field_validator("console_timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        # checked at start: a zone unknown there would fail every console page that shows a time
        if not _time_zones():
            raise ValueError("no time-zone database: neither the system's nor the tzdata package")
        if value not in _time_zones():
            raise ValueError(
                "not a time zone of the IANA database (Asia/Shanghai, UTC, Europe/Berlin; "
                "case counts)"
            )
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value


OWN_VARIABLES = frozenset({"QINGLANG_CONFIG"})
"""Variables of the prefix that name no setting of :class:`Settings` but are read all the same."""
TEST_PREFIX = "QINGLANG_TEST_"
"""The test suite's own variables (its PostgreSQL and Redis), which the service never reads."""


@lru_cache(maxsize=1)
def _time_zones() -> frozenset[str]:
    """The zones the IANA database names, the system's or the ``tzdata`` package's (read from
    disk: once)."""
    return frozenset(available_timezones())


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """The variables of ``environ`` with the settings' prefix that name nothing: pydantic would
    ignore them, so that ``QINGLANG_DATABSE_URL`` left a server on its embedded database."""
    known = OWN_VARIABLES | {PREFIX + name.upper() for name in Settings.model_fields}
    return sorted(
        name
        for name in environ
        if name.upper().startswith(PREFIX)
        and not name.upper().startswith(TEST_PREFIX)
        and name.upper() not in known
    )


def address(host: str, port: int) -> str:
    """``host:port`` as a URL writes it: an IPv6 literal (a host with a colon, as uvicorn tells
    them) in brackets, ``[::1]:8000``."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class SettingsError(ValueError):
    """The settings cannot be read: which setting (or file), and why."""


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings; :class:`SettingsError` names what is wrong, for a one-line message where
    pydantic's would be a traceback."""
    config = os.environ.get("QINGLANG_CONFIG")
    if config is not None and not Path(config).is_file():
        raise SettingsError(f"QINGLANG_CONFIG names {config}, which is not a file")
    unknown = unknown_variables(os.environ)
    if unknown:
        raise SettingsError(
            f"{', '.join(unknown)}: no such setting (a misspelt name would be ignored, and its "
            "default used: the settings are listed in service/settings.py)"
        )
    try:
        return Settings()
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SettingsError(f"{config or 'qinglang.toml'} is not TOML: {exc}") from None
    except OSError as exc:
        raise SettingsError(f"cannot read {config or 'qinglang.toml'}: {exc.strerror}") from None
    except ValidationError as exc:
        raise SettingsError("; ".join(_problem(e) for e in exc.errors())) from None


def settings_or_exit(prog: str) -> Settings:
    """:func:`get_settings` for a ``python -m`` program: a setting it cannot use ends it as
    argparse ends it for a bad argument, ``{prog}: error: ...`` and status 2, before any work."""
    try:
        return get_settings()
    except SettingsError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


SECRETS = frozenset(
    name for name, field in Settings.model_fields.items() if field.annotation == SecretStr | None
)
"""The settings whose values are never shown: a refused one is half a deployment's key."""


def _problem(error: Any) -> str:
    name = ".".join(str(part) for part in error["loc"])
    if error["type"] == "extra_forbidden":
        return f"{name} is not a setting (in the config file)"
    # neither a secret nor a URL that may hold a password is echoed
    shown = "" if name in SECRETS or "url" in name else f", got {error['input']!r}"
    return f"setting {name} (QINGLANG_{name.upper()}): {error['msg']}{shown}"
