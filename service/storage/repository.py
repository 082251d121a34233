"""What the service needs of storage, free of any database detail."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

from service.record import Decision, ScoreRecord

Role = Literal["publisher", "reviewer", "admin"]


class StorageError(Exception):
    """Storage could not be reached or did not answer in time; the caller degrades."""


@dataclass(frozen=True)
class ApiKey:
    """A stored API key: never the key itself, only its id and the digest of its secret."""

    key_id: str
    digest: str
    role: Role
    created_at: datetime
    revoked: bool = False


@dataclass(frozen=True)
class QueueItem:
    """A flagged record waiting for review (the workflow on it: :mod:`service.review`)."""

    post_id: str
    model_version: str
    policy_version: str
    decision: Decision
    status: str


@dataclass(frozen=True)
class Pending:
    """A record to store, and whether the policy puts it in the review queue."""

    record: ScoreRecord
    enqueue: bool
    text: str | None = None
    """The post's text, kept with its review item so that decisions become training labels."""


class Repository(Protocol):
    """Every method raises :class:`StorageError` when storage is unreachable or too slow."""

    def ping(self) -> None:
        """Return when storage answers a query."""

    def find_records(self, post_ids: Sequence[str], model_version: str) -> dict[str, ScoreRecord]:
        """The stored records of ``post_ids`` scored by ``model_version``, by post id."""

    def save_records(self, items: Sequence[Pending]) -> list[ScoreRecord]:
        """Store each record (and its review-queue item when asked) in one transaction, unless
        a record of the same post and model version is stored already; return the stored
        records in order, so that saving a record twice (a spool replayed after a crash, two
        processes scoring one post) stores it once and both callers get the first."""

    def add_key(self, key: ApiKey) -> None: ...

    def get_key(self, key_id: str) -> ApiKey | None: ...

    def queue(self) -> list[QueueItem]:
        """The review queue, oldest first."""

    def account_levels(self, levels: list[str]) -> dict[str, str]:
        """Accounts at any of ``levels``, with their level, by account id."""
