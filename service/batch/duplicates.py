"""The post ids a run has seen, to count the posts that repeat one (each is still scored).

A run may read a hundred million posts, so the ids are not kept as text: each is kept as a 64-bit
digest (BLAKE2b), 8 bytes, in sorted arrays. Two different ids share a digest with a
probability of about n² / 2⁶⁵ for n posts (one in 4,000 for a hundred million), which would
count one post too many; no id that repeats is missed. The arrays are runs of sizes that at
least double from the newest to the oldest (merged as they grow, as a binary counter carries),
so that a batch is looked up in a few binary searches and adding n ids costs O(n log² n) in all.
"""

from __future__ import annotations

from collections.abc import Sequence
from hashlib import blake2b

import numpy as np
import numpy.typing as npt

Digests = npt.NDArray[np.uint64]


class SeenIds:
    def __init__(self) -> None:
        self._runs: list[Digests] = []
        """Sorted digests without repeats, each run at least twice the size of the next."""

    def add(self, ids: Sequence[str]) -> list[int]:
        """Remember ``ids`` (in input order); the positions in ``ids`` of those seen before,
        earlier in ``ids`` included."""
        digests = np.fromiter(map(_digest, ids), dtype=np.uint64, count=len(ids))
        unique, first = np.unique(digests, return_index=True)
        known = np.zeros(len(unique), dtype=bool)
        for run in self._runs:
            at = np.minimum(np.searchsorted(run, unique), len(run) - 1)
            known |= run[at] == unique
        # every later copy within ``ids`` repeats; the first one only when seen before
        repeats = np.ones(len(digests), dtype=bool)
        repeats[first] = known
        if not known.all():
            self._push(unique[~known])
        return np.flatnonzero(repeats).tolist()

    def _push(self, run: Digests) -> None:
        self._runs.append(run)
        while len(self._runs) > 1 and len(self._runs[-2]) < 2 * len(self._runs[-1]):
            newer, older = self._runs.pop(), self._runs.pop()
            # no digest is in two runs: a run takes only the digests that none held
            self._runs.append(np.sort(np.concatenate([older, newer])))


def _digest(post_id: str) -> int:
    return int.from_bytes(blake2b(post_id.encode(), digest_size=8).digest(), "little")
