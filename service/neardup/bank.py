"""The confirmed-rumour bank (art13): rumours a trust team confirmed, matched with no window.

The bank's entries are stored by the repository (``rumor_bank`` table) with their signatures, so
that an entry added by post id needs no text; every server process holds the same entries in its
own ``MinHashLSH`` and reloads them when the stored set changes. A post whose verified similarity
to an entry reaches the index threshold gets its rumour score raised to that similarity, with the
entry and its debunk notice as evidence.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from service.neardup.fingerprint import Fingerprinter, Signature, similarity
from service.neardup.index import new_lsh
from service.storage.repository import StoredRumor


@dataclass(frozen=True, slots=True)
class BankMatch:
    rumor: StoredRumor
    similarity: float


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
