"""The confirmed-rumour bank (art13): rumours a trust team confirmed, matched with no window.

The bank's entries are stored by the repository (``rumor_bank`` table) with their signatures, so
that an entry added by post id needs no text; every server process holds the same entries in its
own ``MinHashLSH`` and reloads them when the stored set changes. A post whose verified similarity
to an entry reaches the index threshold gets its rumour score raised to that similarity, with the
entry and its debunk notice as evidence.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import numpy as np

from service.neardup.fingerprint import Fingerprinter, Signature, similarity
from service.neardup.index import new_lsh
from service.record import ScoreRecord
from service.review import views
from service.review.items import ConflictError, NotFoundError
from service.review.refusals import RefusedError
from service.storage.repository import (
    Idempotency,
    Repository,
    RumorCopy,
    StorageError,
    StoredRumor,
)

if TYPE_CHECKING:
    from service.neardup import NearDuplicates

log = logging.getLogger(__name__)


class UnmatchableError(RefusedError):
    """The rumour's text is boilerplate or too short to match anything."""


@dataclass(frozen=True, slots=True)
class BankMatch:
    rumor: StoredRumor
    similarity: float


@dataclass(frozen=True, slots=True)
class BankChange:
    """A change of the bank, committed: the entry added or removed, and whether this process's
    bank holds the change already (``refreshed``) or from its next periodic refresh."""

    rumor: views.Rumor
    refreshed: bool


def to_signature(rumor: StoredRumor) -> Signature:
    return np.frombuffer(rumor.signature, dtype=np.uint32)


class RumorBank:
    def __init__(self, fingerprinter: Fingerprinter, threshold: float) -> None:
        self.fingerprinter = fingerprinter
        self.threshold = threshold
        self._entries: dict[str, StoredRumor] = {}
        self._given: set[str] = set()
        self._lsh = new_lsh(threshold, fingerprinter.num_perm)

    def __len__(self) -> int:
        return len(self._entries)

    def ids(self) -> set[str]:
        """The ids of the last :meth:`load`, usable or not."""
        return set(self._given)

    def load(self, rumors: Sequence[StoredRumor]) -> list[str]:
        """Hold exactly ``rumors``; the ids skipped because their signatures were made with other
        fingerprint parameters (they must be added again)."""
        usable = [r for r in rumors if r.fingerprint == self.fingerprinter.version]
        self._given = {r.rumor_id for r in rumors}
        self._entries = {r.rumor_id: r for r in usable}
        self._lsh = new_lsh(self.threshold, self.fingerprinter.num_perm)
        for rumor in usable:
            minhash = self.fingerprinter.minhash(to_signature(rumor))
            self._lsh.insert(rumor.rumor_id, minhash, check_duplication=False)
        return [r.rumor_id for r in rumors if r.fingerprint != self.fingerprinter.version]

    def match(self, signature: Signature) -> BankMatch | None:
        """The most similar banked rumour at or above the threshold."""
        if not self._entries:
            return None
        candidates = self._lsh.query(self.fingerprinter.minhash(signature))
        if not candidates:
            return None
        rumors = [self._entries[c] for c in candidates]
        sims = similarity(signature, np.stack([to_signature(r) for r in rumors]))
        best = int(np.argmax(sims))
        if sims[best] < self.threshold:
            return None
        return BankMatch(rumors[best], float(sims[best]))


def rumor_copy(record: ScoreRecord) -> RumorCopy | None:
    """The copy of a banked rumour ``record`` is, if it matched one (flagged or not)."""
    match = record.confirmed_rumor
    if match is None:
        return None
    return RumorCopy(
        rumor_id=match.rumor_id,
        post_id=record.id,
        account_id=record.account_id,
        created_at=match.at,
        similarity=match.similarity,
        model_version=record.model_version,
    )


def bank_rumor(
    near: NearDuplicates,
    repository: Repository,
    *,
    text: str | None,
    post_id: str | None,
    notice: str,
    by: str,
    idem: Idempotency | None = None,
) -> BankChange:
    """Store a confirmed rumour (its text, or a post of the live window), added ``by`` whom (a
    console user's name, else a key's id), and reload this process's bank (:func:`reload`);
    raises :class:`NotFoundError` for a post not in the window, :class:`UnmatchableError` for
    a text too short to match, :class:`ConflictError` for a rumour the bank matches already (a
    second entry would split its copies between two listings), ``StorageError``. A retry with
    ``idem`` gets the first answer: the bank is read in the write's transaction, after its
    key."""
    signature = near.signature_of(text, post_id)
    if signature is None and post_id is None:
        raise UnmatchableError("unmatchable")  # as the first try of the same text was

    def entry(bank: list[StoredRumor], now: datetime) -> StoredRumor:
        if signature is None:
            # after the key: the post a first try banked may have left the window since
            raise NotFoundError("post_not_live", post_id=post_id)
        near.sync_bank(bank)  # entries other processes added count too
        banked = near.banked(signature)
        if banked is not None:
            raise ConflictError(
                "banked_already", rumor_id=banked.rumor.rumor_id, similarity=banked.similarity
            )
        return StoredRumor(
            rumor_id=secrets.token_hex(8),
            text=text,
            post_id=post_id,
            notice=notice,
            fingerprint=near.fingerprinter.version,
            signature=signature.tobytes(),
            created_at=now,
            created_by=by,
        )

    added = repository.add_rumor(entry, idem=idem)
    return BankChange(added, reload(near, repository))


def unbank_rumor(
    near: NearDuplicates,
    repository: Repository,
    rumor_id: str,
    *,
    by: str,
    idem: Idempotency | None = None,
) -> BankChange:
    """Remove an entry (``by`` whom, for its audit record) and reload this process's bank; the
    entry removed (the answer a retry with ``idem`` gets); :class:`NotFoundError` if absent."""
    removed = repository.delete_rumor(rumor_id, by, idem=idem)
    return BankChange(removed, reload(near, repository))


def reload(near: NearDuplicates, repository: Repository) -> bool:
    """Reload this process's bank after a change committed; False where storage did not answer
    the read. The change stands all the same: the periodic refresh (every
    ``neardup_bank_refresh_s``, :func:`service.api.app.sync_bank`) loads it, as it loads it in
    every other process, so the change is answered as made, not as storage down, which would
    have its client send it again."""
    try:
        near.sync_bank(repository.rumors())
    except StorageError as exc:
        log.warning(
            "the rumour bank changed; this process reloads it at its next refresh",
            extra={"problem": str(exc)},
        )
        return False
    return True
