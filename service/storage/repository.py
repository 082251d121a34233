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
    """A flagged record waiting for review (the review queue's own workflow is a later issue)."""

    post_id: str
    model_version: str
    policy_version: str
    decision: Decision
    status: str


@dataclass(frozen=True)
class StoredRumor:
    """An entry of the confirmed-rumour bank: the text (or the post it was taken from), the
    debunk notice, and the MinHash signature with the fingerprint parameters that made it."""

    rumor_id: str
    text: str | None
    post_id: str | None
    notice: str
    fingerprint: str
    signature: bytes
    created_at: datetime
    created_by: str


@dataclass(frozen=True)
class Pending:
    """A record to store, and whether the policy puts it in the review queue."""

    record: ScoreRecord
    enqueue: bool


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

    def update_records(self, records: Sequence[ScoreRecord]) -> None:
        """Replace the stored records of the same post and model version (the evidence the
        publish path adds after answering); a record that is not stored is left out."""

    def add_key(self, key: ApiKey) -> None: ...

    def get_key(self, key_id: str) -> ApiKey | None: ...

    def queue(self) -> list[QueueItem]:
        """The review queue, oldest first."""

    def add_rumor(self, rumor: StoredRumor) -> None: ...

    def rumors(self) -> list[StoredRumor]:
        """The confirmed-rumour bank, oldest first."""

    def delete_rumor(self, rumor_id: str) -> bool:
        """Remove an entry; whether it was there."""
