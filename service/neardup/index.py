"""Stage: match. The live window of recent posts: datasketch ``MinHashLSH`` per time bucket.

**Candidates.** LSH splits a signature of ``num_perm = b * r`` values into ``b`` bands of ``r``;
two posts are candidates when any band is equal, which happens with probability
``1 - (1 - J^r)^b`` for Jaccard similarity ``J``. datasketch chooses ``(b, r)`` for the threshold
so that false negatives and false positives weigh the same (``threshold = 0.4`` and 128
permutations give ``b = 32, r = 4``: a pair at ``J = 0.4`` is a candidate with probability 0.56,
at ``J = 0.6`` with 0.988; the copies a campaign makes sit mostly above 0.5).

**Verification.** A candidate counts only when its stored signature estimates ``J`` at or above
the threshold (:func:`~service.neardup.fingerprint.similarity`); band collisions below it are
dropped.

**The window.** Posts go to the bucket of ``floor(created_at / bucket_s)``, one ``MinHashLSH``
per bucket. The index's clock is the newest ``created_at`` seen; a bucket that ends before
``clock - window_s`` is dropped whole, which is how old posts expire (no per-post deletes). A
post older than the window is matched against what is live but not kept. The band keys of a
query are computed once and looked up in every live bucket's hash tables.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from datasketch import MinHashLSH

from service.neardup.fingerprint import Fingerprinter, Signature, similarity


@lru_cache(maxsize=8)
def lsh_params(threshold: float, num_perm: int) -> tuple[int, int]:
    """datasketch's ``(b, r)`` for the threshold: computed once, as finding them integrates the
    error probabilities numerically (25 ms, too slow to repeat for every bucket)."""
    probe = MinHashLSH(threshold=threshold, num_perm=num_perm)
    return probe.b, probe.r


def new_lsh(threshold: float, num_perm: int) -> MinHashLSH:
    return MinHashLSH(num_perm=num_perm, params=lsh_params(threshold, num_perm))


@dataclass(slots=True)
class Entry:
    """One indexed post."""

    post_id: str
    account_id: str | None
    created_at: float
    cluster_id: str
    signature: Signature


@dataclass(frozen=True, slots=True)
class Match:
    entry: Entry
    similarity: float


@dataclass
class _Bucket:
    lsh: MinHashLSH
    entries: dict[str, Entry] = field(default_factory=dict)


class WindowIndex:
    """Recent posts by time bucket; see the module's docstring for the parameters."""

    def __init__(
        self,
        fingerprinter: Fingerprinter,
        *,
        threshold: float,
        window_s: float,
        bucket_s: float,
    ) -> None:
        if not 0 < bucket_s <= window_s:
            raise ValueError(f"bucket of {bucket_s} s must be positive and within the window")
        self.fingerprinter = fingerprinter
        self.threshold = threshold
        self.window_s = window_s
        self.bucket_s = bucket_s
        self.clock = float("-inf")
        self._buckets: dict[int, _Bucket] = {}
        self._where: dict[str, int] = {}
        self.bands: list[tuple[int, int]] = new_lsh(threshold, fingerprinter.num_perm).hashranges
        self._live_keys: list[dict[bytes, int]] = [{} for _ in self.bands]
        """Per band, each key to the number of live posts that have it: a query looks in the
        buckets only for the bands some live post shares, so a post with no copy (most of them)
        costs ``b`` dictionary look-ups, not ``b`` per bucket."""

    def __len__(self) -> int:
        return len(self._where)

    @property
    def horizon(self) -> float:
        """Posts created before this time have left the window."""
        return self.clock - self.window_s

    def live(self, created_at: float) -> bool:
        return created_at >= self.horizon

    def advance(self, created_at: float) -> list[str]:
        """Move the clock to ``created_at`` if it is newer; drop expired buckets and return the
        cluster ids of the posts that left."""
        if created_at <= self.clock:
            return []
        self.clock = created_at
        gone: list[str] = []
        for number in [n for n in self._buckets if (n + 1) * self.bucket_s <= self.horizon]:
            for post_id, entry in self._buckets.pop(number).entries.items():
                del self._where[post_id]
                gone.append(entry.cluster_id)
                for key, live in zip(self.keys(entry.signature), self._live_keys, strict=True):
                    left = live[key] - 1
                    if left:
                        live[key] = left
                    else:
                        del live[key]
        return gone

    def get(self, post_id: str) -> Entry | None:
        number = self._where.get(post_id)
        return None if number is None else self._buckets[number].entries[post_id]

    def entries(self) -> Iterator[Entry]:
        for bucket in self._buckets.values():
            yield from bucket.entries.values()

    def keys(self, signature: Signature) -> list[bytes]:
        """The signature's band keys: the bytes MinHashLSH computes for each band (its default,
        unhashed keys), computed once per post for the query of every bucket and the insert."""
        swapped = signature.byteswap().tobytes()
        return [swapped[4 * s : 4 * e] for s, e in self.bands]

    def query(
        self, signature: Signature, keys: list[bytes], exclude: str | None = None
    ) -> list[Match]:
        """Verified near-copies among live posts, most similar first."""
        shared = [i for i, live in enumerate(self._live_keys) if keys[i] in live]
        found: dict[str, Entry] = {}
        for bucket in self._buckets.values() if shared else ():
            candidates: set[str] = set()
            for i in shared:
                candidates.update(bucket.lsh.hashtables[i].get(keys[i]))
            for post_id in candidates:
                found[post_id] = bucket.entries[post_id]
        found.pop(exclude or "", None)
        if not found:
            return []
        entries = list(found.values())
        sims = similarity(signature, np.stack([e.signature for e in entries]))
        matches = [
            Match(e, float(s)) for e, s in zip(entries, sims, strict=True) if s >= self.threshold
        ]
        matches.sort(key=lambda m: (-m.similarity, m.entry.created_at))
        return matches

    def insert(self, entry: Entry, keys: list[bytes]) -> bool:
        """Keep ``entry`` unless its post is indexed already or has left the window."""
        if entry.post_id in self._where or not self.live(entry.created_at):
            return False
        number = int(entry.created_at // self.bucket_s)
        bucket = self._buckets.get(number)
        if bucket is None:
            lsh = new_lsh(self.threshold, self.fingerprinter.num_perm)
            bucket = self._buckets[number] = _Bucket(lsh)
        # what MinHashLSH.insert does to its band tables, with the keys the query computed;
        # its key-to-bands table serves only single removes, which a bucket never needs
        for key, table in zip(keys, bucket.lsh.hashtables, strict=True):
            table.insert(key, entry.post_id)
        bucket.entries[entry.post_id] = entry
        self._where[entry.post_id] = number
        for key, live in zip(keys, self._live_keys, strict=True):
            live[key] = live.get(key, 0) + 1
        return True
