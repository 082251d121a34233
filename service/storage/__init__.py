"""Storage: the repository interface the service talks to, and its SQLAlchemy implementation.

The rest of the service depends on :class:`Repository` only; :func:`open_repository` picks the
implementation (SQLAlchemy over SQLite or PostgreSQL, by URL), :func:`upgrade` brings a
database's schema to the newest Alembic migration, and :func:`open_existing` opens one for a
command that only reads, refusing a database that is missing or not migrated; :func:`shown_url`
is a database URL as the commands show it, its password masked.
"""

from service.storage.database import SubjectKeyError, shown_url, upgrade
from service.storage.repository import (
    ApiKey,
    ConsoleAccount,
    Pending,
    QueueItem,
    Repository,
    StorageError,
    StorageUnansweredError,
    StorageUnavailableError,
    StoredRumor,
    SweepIncompleteError,
)
from service.storage.sql import SqlRepository, open_existing, open_migrated, open_repository

__all__ = [
    "ApiKey",
    "ConsoleAccount",
    "Pending",
    "QueueItem",
    "Repository",
    "SqlRepository",
    "StorageError",
    "StorageUnansweredError",
    "StorageUnavailableError",
    "StoredRumor",
    "SubjectKeyError",
    "SweepIncompleteError",
    "open_existing",
    "open_migrated",
    "open_repository",
    "shown_url",
    "upgrade",
]
