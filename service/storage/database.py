"""The database under :class:`~service.storage.sql.SqlRepository`: its engines (every wait
bounded, :func:`make_engine`; a PostgreSQL server that stopped answering dropped,
:func:`tcp_liveness`), its schema's Alembic migrations (:func:`upgrade`, :func:`head_revision`)
with the check of the subject key its digests were made with, and the driver's errors as
:class:`StorageError`. The openers that build a repository on it are in
:mod:`service.storage.sql`."""

from __future__ import annotations

import contextlib
import math
import os
import threading
from functools import lru_cache
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import Connection, Engine, create_engine, event, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import (
    DBAPIError,
    DisconnectionError,
    InterfaceError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from service.review.registration import SubjectKey
from service.storage.repository import (
    StorageError,
    StorageUnansweredError,
    StorageUnavailableError,
)
from service.storage.tables import SubjectKeyFingerprint
from service.subject_key import installed as installed_subject_key

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def shown_url(url: str) -> str:
    """``url`` as an operator may see it, in a terminal or a log: the password masked."""
    return make_url(url).render_as_string(hide_password=True)


def _owners_alone(path: Path) -> None:
    """Make the SQLite file ``path``, where there is none yet, readable by its owner alone: it
    holds posts, reports, appeals and the console users' password hashes, and SQLite gives
    its WAL and shared-memory files the same mode. An empty file is a new database to SQLite;
    one there already keeps its mode."""
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def make_engine(url: str, timeout_s: float, *, read_only: bool = False) -> Engine:
    """An engine whose every wait (connect, pool, lock, statement) ends within about
    ``timeout_s``, so that a stuck database turns into a degraded answer, not a stuck request,
    and whose connections to a PostgreSQL server that stopped answering end within a few times
    it (:func:`tcp_liveness`).
    ``read_only`` leaves a SQLite file's journal mode as it is: setting it is a write (the mode
    is kept in the file), and a command that only reads changes nothing."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database:
            folder = Path(parsed.database).parent
            try:
                folder.mkdir(parents=True, exist_ok=True)
                if not read_only and parsed.database != ":memory:":
                    _owners_alone(Path(parsed.database))
            except OSError as exc:
                raise StorageError(f"cannot make {folder} for the database: {exc}") from exc
        engine = create_engine(
            url,
            connect_args={"timeout": timeout_s, "check_same_thread": False},
            pool_timeout=timeout_s,
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            if not read_only:
                # WAL lets readers (idempotency look-ups) go on while a record is written
                dbapi_conn.execute("PRAGMA journal_mode=WAL")
            # in WAL mode NORMAL syncs at checkpoints, not at every commit: a commit survives
            # the server being killed (the OS holds it), not a power cut before the next
            # checkpoint; an fsync per commit took up to 12 ms (p99 of a commit here), on the
            # publish path. A deployment that needs every commit on disk runs PostgreSQL.
            dbapi_conn.execute("PRAGMA synchronous=NORMAL")
            dbapi_conn.execute("PRAGMA foreign_keys=ON")

        return engine
    engine = create_engine(
        url,
        connect_args={"connect_timeout": max(1, math.ceil(timeout_s)), **tcp_liveness(timeout_s)},
        pool_timeout=timeout_s,
        pool_pre_ping=True,
    )
    millis = int(timeout_s * 1000)

    @event.listens_for(engine, "connect")
    def _pg_timeouts(dbapi_conn: Any, _record: Any) -> None:
        with dbapi_conn.cursor() as cur:
            cur.execute(f"SET statement_timeout = {millis}")
            cur.execute(f"SET lock_timeout = {millis}")
        dbapi_conn.commit()

    return engine


KEEPALIVE_PROBES = 3
"""Unanswered TCP keepalive probes after which the kernel drops a PostgreSQL connection."""


def tcp_liveness(timeout_s: float) -> dict[str, int]:
    """libpq's TCP settings that have the kernel drop a PostgreSQL connection whose server
    stopped answering without closing it (dropped packets, a failover, a hung host) about
    ``(1 + KEEPALIVE_PROBES) * timeout_s`` (whole seconds) after it last heard from it.

    ``statement_timeout`` is the server's to enforce and ``connect_timeout`` covers connecting
    only: a query on an open connection to a server that is gone waited for the kernel, about
    15 minutes of retransmissions, and for ever for a reply on a connection with nothing left
    to send. Keepalive probes cover the wait for a reply (a live server's kernel answers them,
    however long its statement runs); ``tcp_user_timeout`` covers data sent and never
    acknowledged, and on Linux it is also when probing gives up, so it is the same span.
    """
    every = max(1, math.ceil(timeout_s))
    return {
        "keepalives": 1,
        "keepalives_idle": every,
        "keepalives_interval": every,
        "keepalives_count": KEEPALIVE_PROBES,
        "tcp_user_timeout": (1 + KEEPALIVE_PROBES) * every * 1000,
    }


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


_MIGRATING = threading.Lock()
"""Held by the thread running a migration: Alembic's commands work through module globals
(``alembic.context``, ``alembic.op``), which a second migration in the process (a server's
maintenance beside a recovery, tests beside either) would swap out from under the first,
failing both and leaving its proxies broken for every later one."""


def upgrade(url: str, timeout_s: float = 10.0, *, subject_key: SubjectKey | None = None) -> None:
    """Bring the database at ``url`` to the newest migration (creating it from empty), then
    check that ``subject_key`` (default: the settings', :func:`service.subject_key.installed`)
    is the one its subject digests were made with (:class:`SubjectKeyError`).
    ``timeout_s`` bounds connecting and waiting for a lock, not the migrations' statements: one
    that fills a table from a large one (0010 reads every account's audit records) takes what it
    takes, and cut short by the publish path's statement timeout it would fail alike on every
    retry. On PostgreSQL the processes that migrate one schema at once do it one after the
    other: the second finds the first's revision, so that a migration that converts rows
    (0028 keys the subject digests) converts them once (SQLite: the second's version update
    finds none to update, and its transaction is rolled back whole)."""
    key = subject_key or installed_subject_key()
    engine = make_engine(url, timeout_s)
    try:
        with engine.connect() as connection:
            if connection.dialect.name == "postgresql":
                # this engine's own connection, disposed of below: no pooled session keeps it,
                # nor the lock, which its closing releases
                connection.exec_driver_sql("SET statement_timeout = 0")
                connection.execute(
                    text("SELECT pg_advisory_lock(hashtextextended(current_schema() || :key, 0))"),
                    {"key": "/migrations"},
                )
                connection.commit()
            config = alembic_config()
            config.attributes["connection"] = _transactional_ddl(connection)
            config.attributes["subject_key"] = key.key
            with _MIGRATING:
                command.upgrade(config, "head")
            _check_subject_key(connection, key)
    except SQLAlchemyError as exc:
        raise StorageError(f"cannot migrate {engine.url!r}: {exc}") from exc
    except CommandError as exc:
        raise StorageError(
            f"cannot migrate {engine.url!r}: {exc} (a database of a newer release?)"
        ) from None
    finally:
        engine.dispose()


class SubjectKeyError(StorageError):
    """The subject key is not the one the database's subject digests were made with: every
    subject check would miss (a taken subject registering again, an authorised one refused)."""


def _check_subject_key(connection: Connection, key: SubjectKey) -> None:
    kept = connection.scalars(select(SubjectKeyFingerprint.fingerprint)).all()
    connection.commit()
    if kept != [key.fingerprint]:
        raise SubjectKeyError(
            "the subject key (the subject_key setting, else the file subject.key in state_dir) "
            "is not the one the database's subject digests were made with: set "
            "QINGLANG_SUBJECT_KEY to the deployment's key (a different one would match no "
            "stored subject)"
        )


def _transactional_ddl(connection: Connection) -> Connection:
    """``connection``, whose transactions hold DDL too. sqlite3 (before Python 3.12's
    ``autocommit=False``) begins a transaction only before an INSERT, UPDATE or DELETE, so a
    CREATE TABLE was committed as it ran and a migration stopped midway left its first tables
    behind ("table ... already exists" on every later run). Here sqlite3 begins nothing and
    SQLAlchemy emits BEGIN (the recipe of its pysqlite documentation), on this connection only:
    the other sessions rely on sqlite3's handling (``BEGIN IMMEDIATE`` of a write), and the
    isolation level is reset when the connection goes back to the pool. PostgreSQL's DDL is
    transactional as it is."""
    if connection.dialect.name != "sqlite":
        return connection
    connection.execution_options(isolation_level="AUTOCOMMIT")
    event.listen(connection, "begin", _begin)
    return connection


def _begin(connection: Connection) -> None:
    connection.exec_driver_sql("BEGIN")


def short_of_head(found: str | None) -> str:
    if found is None:
        return "has no schema (no migration recorded): run qinglang migrate"
    if found not in _revisions():
        return f"is at migration {found}, unknown to this release (a database of a newer release?)"
    return f"is at migration {found}, not {head_revision()}: run qinglang migrate"


def stored_revision(engine: Engine) -> str | None:
    """The migration the database is at; None where it has no ``alembic_version`` table."""
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    except SQLAlchemyError as exc:
        raise storage_error(exc) from exc


_UNAVAILABLE = (OperationalError, InterfaceError, DisconnectionError, PoolTimeoutError)
"""What the drivers raise when the database did not do a call now: a lock or statement timeout,
a lost connection, a read-only or full database (SQLite and psycopg alike)."""


def storage_error(exc: SQLAlchemyError, *, committing: bool = False) -> StorageError:
    """The :class:`StorageError` of ``exc``, a :class:`StorageUnavailableError` where a later try
    may succeed, in the first line of the driver's words; a
    :class:`StorageUnansweredError` where the connection was lost ``committing``: the database
    may have committed before it went, and a client told to try again made the change twice."""
    kind = StorageUnavailableError if isinstance(exc, _UNAVAILABLE) else StorageError
    if committing and isinstance(exc, DBAPIError) and exc.connection_invalidated:
        kind = StorageUnansweredError
    return kind(f"{type(exc).__name__}: {exc}".splitlines()[0])


@lru_cache(maxsize=1)
def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str | None:
    """The newest migration of this release."""
    return _scripts().get_current_head()


@lru_cache(maxsize=1)
def _revisions() -> frozenset[str]:
    """Every migration of this release."""
    return frozenset(script.revision for script in _scripts().walk_revisions())
