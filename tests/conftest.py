"""Shared fixtures: the shipped model's pipeline, loaded once per session; the databases."""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from servicekit import Api, migrated, open_api
from sqlalchemy import Connection, create_engine, text

from service import security
from service.pipeline import Pipeline
from service.policy import Policy, load_policy
from service.settings import Settings
from service.storage import SqlRepository, open_repository

# one subject key for the whole run and the processes it starts, as a deployment sets one: a
# database migrated here and served by a ``qinglang serve`` of its own state folder (whose key
# file would be another) must be keyed alike; the key file's own tests set none
os.environ.setdefault("QINGLANG_SUBJECT_KEY", "qinglang-tests-subject-key-0123456789abcdef")
# a state folder of the run's own for whatever opens the default database, never the checkout's
# ./data: that is `make serve`'s, whose database is keyed with the subject key it drew, so a
# test meeting it (rescore --enqueue, --from-db) failed, and one on a clean checkout wrote there
os.environ.setdefault("QINGLANG_STATE_DIR", tempfile.mkdtemp(prefix="qinglang-tests-"))
# the publish path gives Redis 50 ms, which a CI host under the whole suite's load can miss on a
# healthy server: tests that need Redis away refuse its connections (servicekit.Proxy) rather
# than wait it out, so they are patient with the real one
os.environ.setdefault("QINGLANG_REDIS_TIMEOUT_S", "5")


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings()


@pytest.fixture(scope="session")
def pipeline(settings: Settings) -> Pipeline:
    return Pipeline.load(settings)


# --- the service's storage: every storage test runs on a temporary SQLite file and on the real
# PostgreSQL server (127.0.0.1:5432, database ``test``), in a schema of its own so that
# concurrent runs do not meet.

POSTGRES = os.environ.get(
    "QINGLANG_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@contextmanager
def postgres_schema() -> Iterator[str]:
    """A URL whose tables live in a new schema, dropped afterwards. Its connections are named
    for the schema, so that one still at work when the test has ended (a server's sweep left
    running, whose transaction the drop deadlocked with) is named in an error of its own and
    ended, rather than met as a deadlock."""
    schema = f"t_{uuid.uuid4().hex[:16]}"
    admin = create_engine(POSTGRES, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        # in the order SQLAlchemy renders a URL's query, which messages that name the database show
        yield f"{POSTGRES}?application_name={schema}&options=-csearch_path%3D{schema}"
    finally:
        with admin.connect() as connection:
            lingering = _at_work(connection, schema)
            connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()
        assert not lingering, f"connections of {schema} at work after the test: {lingering}"


def _at_work(connection: Connection, schema: str) -> list[str]:
    """The connections named ``schema`` still at work (active, or in a transaction) 10 s after
    the test ended, each ended: a server whose client went away ends its own by then."""
    at_work = text(
        "SELECT pid, state, left(query, 300) FROM pg_stat_activity "
        "WHERE application_name = :schema AND state <> 'idle'"
    )
    deadline = time.monotonic() + 10
    while (rows := connection.execute(at_work, {"schema": schema}).all()) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.05)
    for pid, _, _ in rows:
        connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    return [f"{pid} ({state}): {query}" for pid, state, query in rows]


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database: a temporary SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'qinglang.db'}"
    else:
        with postgres_schema() as url:
            yield url


@pytest.fixture(scope="module")
def policy() -> Policy:
    """The shipped policy (a module that needs another defines its own)."""
    return load_policy(Settings().policy_file)


@pytest.fixture
def repo(database_url: str, policy: Policy) -> Iterator[SqlRepository]:
    """A migrated repository on each database, with ``policy``'s review rules."""
    migrated(database_url)
    repository = open_repository(database_url, 5.0, policy.review)
    yield repository
    repository.close()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    with postgres_schema() as url:
        yield url


@pytest.fixture
def other_postgres_url() -> Iterator[str]:
    """A second schema of the database ``postgres_url``'s is in."""
    with postgres_schema() as url:
        yield url


@pytest.fixture
def api(tmp_path: Path, pipeline: Pipeline) -> Iterator[Api]:
    """The app on a temporary SQLite file, with the review-all test policy."""
    with open_api(tmp_path, f"sqlite:///{tmp_path / 'api.db'}", pipeline.classifier) as running:
        yield running


@pytest.fixture
def quick_passwords(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Console passwords hashed with argon2id at its least cost, for tests of what is done with
    a password, not of what a guess costs: at the library's defaults (the service's) a hash or a
    check takes 0.2 s of CPU and 64 MiB, a console test's sign-in two of them. The digest kept
    for names nobody has is made again under each hasher, so that none outlives its test."""
    monkeypatch.setattr(
        security, "PASSWORDS", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    )
    security._absent_user_digest.cache_clear()
    yield
    security._absent_user_digest.cache_clear()
