"""Storage: the repository interface the service talks to, and its SQLAlchemy implementation.

The rest of the service depends on :class:`Repository` only; :func:`open_repository` picks the
implementation (SQLAlchemy over SQLite or PostgreSQL, by URL) and :func:`upgrade` brings a
database's schema to the newest Alembic migration.
"""

from service.storage.repository import (
    ApiKey,
    Pending,
    QueueItem,
    Repository,
    StorageError,
    StoredRumor,
)
from service.storage.sql import SqlRepository, open_repository, upgrade

__all__ = [
    "ApiKey",
    "Pending",
    "QueueItem",
    "Repository",
    "SqlRepository",
    "StorageError",
    "StoredRumor",
    "open_repository",
    "upgrade",
]
