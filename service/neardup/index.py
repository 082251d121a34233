"""Stage: match. The live window of recent posts: LSH band tables per time bucket.

**Candidates.** LSH splits a signature of ``num_perm`` values into ``b`` bands of ``r``; two posts
are candidates when any band is equal, which happens with probability ``1 - (1 - J^r)^b`` for
Jaccard similarity ``J``. datasketch's ``MinHashLSH`` chooses ``(b, r)`` for the threshold so
that false negatives and false positives weigh the same (``threshold = 0.4`` and 128
permutations give ``b = 32, r = 4``: a pair at ``J = 0.4`` is a candidate with probability 0.56,
at ``J = 0.6`` with 0.988; the copies a campaign makes sit mostly above 0.5); the window uses
those bands (:func:`lsh_params`, ``hashranges``).

**Band keys.** A band's ``r`` values are folded into one 60-bit integer with the band's number
mixed in (:meth:`WindowIndex.batch_keys`: a multiply-xor over the values and the MurmurHash3
64-bit finaliser), for a whole batch of signatures in a few numpy operations. Two different bands
share a key with probability about ``2^-60``; such a collision only adds a candidate that
verification drops.

**Verification.** A candidate counts only when its stored signature estimates ``J`` at or above
the threshold (:func:`~service.neardup.fingerprint.similarity`, over all of a bucket's
candidates at once); band collisions below it are dropped.

**The window.** Posts go to the bucket of ``floor(created_at / bucket_s)``. The index's clock is
the newest ``created_at`` seen; a bucket that ends before ``clock - window_s`` is dropped whole,
which is how old posts expire (no per-post deletes). A post older than the window is matched
against what is live but not kept.

**Why the band tables are not datasketch's.** ``MinHashLSH`` keeps, per band, a dict from the
band's bytes to a Python ``set`` of keys: 32 sets per indexed post, 11.5 KB a post, and two
thirds of the time the whole near-duplicate step took per post went into filling them
(measured on the Weibo16 reposts, ``eval.neardup``). A bucket here holds one dict for all its
bands, from band key to the slot of its one post (an ``int`` shared by the post's 32 entries),
or to a tuple of slots once a second post has the key; the signatures in one growing ``uint32``
array; the posts' ids, accounts, times, clusters and text excerpts in lists by slot. A new
post's 32 keys are added in one ``dict.update``. One ``set`` holds every live key: a post with
no copy (most posts) is settled by one ``isdisjoint`` on it, else each bucket is looked at (a
few set unions and one vectorised comparison). A leaving bucket's keys leave that set in one
``difference_update``, bar the few that another live bucket holds too (kept track of when a
post brings a key the window already has). The
MinHash itself is still datasketch's (a test holds the signatures equal), and so are
``(b, r)``; the confirmed-rumour bank, small and without a window, keeps ``MinHashLSH``.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from dataclasses import dataclass
from functools import lru_cache
from itertools import repeat

import numpy as np
import numpy.typing as npt
from datasketch import MinHashLSH

from service.neardup.fingerprint import Fingerprinter, Signature, similarity

INDEX_FORMAT = "bands-4"
"""Names the layout below: a snapshot of another layout is not read (its band keys differ)."""

Keys = list[int]
"""A signature's band keys, one per band (:meth:`WindowIndex.batch_keys`)."""

_KEY_BITS = 60
"""Keys below ``2^60`` are 32-byte Python ints; wider ones take 36."""

_GROW = 8
"""Slots a new bucket starts with; its arrays double as it fills."""

_SLOTS = 1 << 32
"""Slots a bucket may hold: a post's place is ``bucket * _SLOTS + slot``."""


@lru_cache(maxsize=8)
def lsh_params(threshold: float, num_perm: int) -> tuple[int, int]:
    """datasketch's ``(b, r)`` for the threshold: computed once, as finding them integrates the
    error probabilities numerically (25 ms, too slow to repeat)."""
    probe = MinHashLSH(threshold=threshold, num_perm=num_perm)
    return probe.b, probe.r


def new_lsh(threshold: float, num_perm: int) -> MinHashLSH:
    return MinHashLSH(num_perm=num_perm, params=lsh_params(threshold, num_perm))


@lru_cache(maxsize=8)
def _salts(bands: int) -> npt.NDArray[np.uint64]:
    salts = np.arange(1, bands + 1, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    return salts.reshape(1, bands)


def band_keys(signatures: Signature, threshold: float) -> list[Keys]:
    """The band keys of each row of ``[n, num_perm]`` signatures for ``threshold``'s bands (see
    the module's docstring), computed for all rows at once: the window's, and what the Redis
    store checks its candidates against."""
    b, r = lsh_params(threshold, signatures.shape[1])
    values = np.ascontiguousarray(signatures[:, : b * r]).reshape(len(signatures), b, r)
    h = np.repeat(_salts(b), len(signatures), axis=0)
    for j in range(r):
        h ^= values[:, :, j].astype(np.uint64)
        h *= np.uint64(0xFF51AFD7ED558CCD)
        h ^= h >> np.uint64(29)
    h ^= h >> np.uint64(33)
    h *= np.uint64(0xC4CEB9FE1A85EC53)
    h ^= h >> np.uint64(33)
    keys: list[Keys] = (h >> np.uint64(64 - _KEY_BITS)).tolist()
    return keys


@dataclass(slots=True)
class Entry:
    """One indexed post."""

    post_id: str
    account_id: str | None
    created_at: float
    cluster_id: str
    signature: Signature
    excerpt: str = ""
    """The beginning of the post's text (``neardup_excerpt_chars``), kept only while the post is
    in the window: the earlier text a fake-originality finding shows."""


@dataclass(frozen=True, slots=True)
class Match:
    entry: Entry
    similarity: float


class _Bucket:
    """The posts of one time bucket, by slot (see the module's docstring)."""

    __slots__ = (
        "accounts",
        "clusters",
        "excerpts",
        "post_ids",
        "signatures",
        "table",
        "times",
    )

    def __init__(self, num_perm: int) -> None:
        self.table: dict[int, int | tuple[int, ...]] = {}
        self.signatures = np.empty((_GROW, num_perm), dtype=np.uint32)
        self.post_ids: list[str] = []
        self.accounts: list[str | None] = []
        self.times: list[float] = []
        self.clusters: list[str] = []
        self.excerpts: list[str] = []

    def entry(self, slot: int) -> Entry:
        return Entry(
            self.post_ids[slot],
            self.accounts[slot],
            self.times[slot],
            self.clusters[slot],
            self.signatures[slot].copy(),
            self.excerpts[slot],
        )

    def add(self, entry: Entry, keys: Keys, fresh: bool) -> int:
        """Keep ``entry`` in the next slot, and return it; ``fresh``: none of ``keys`` is in the
        table yet."""
        slot = len(self.post_ids)
        if slot == len(self.signatures):
            grown = np.empty((2 * slot, self.signatures.shape[1]), dtype=np.uint32)
            grown[:slot] = self.signatures
            self.signatures = grown
        self.signatures[slot] = entry.signature
        self.post_ids.append(entry.post_id)
        self.accounts.append(entry.account_id)
        self.times.append(entry.created_at)
        self.clusters.append(entry.cluster_id)
        self.excerpts.append(entry.excerpt)
        table = self.table
        if fresh or table.keys().isdisjoint(keys):
            # a post sharing no band with this bucket (most posts): one C-level update
            table.update(zip(keys, repeat(slot)))
            return slot
        for key in keys:
            held = table.get(key)
            if held is None:
                table[key] = slot
            elif isinstance(held, int):
                table[key] = (held, slot)
            else:
                # a tuple of ints, unlike a list, leaves the garbage collector's lists: a
                # full collection then walks none of the window's slots
                table[key] = (*held, slot)
        return slot

    def remove(self, slot: int, keys: Keys) -> list[int]:
        """Take ``slot`` (whose band keys are ``keys``) out of the table, and return the keys
        the table no longer holds. Its row in the arrays stays, unreachable: the bucket leaves
        whole, and an edit is rare enough that compacting it would cost more than the row."""
        table = self.table
        gone: list[int] = []
        for key in keys:
            held = table.get(key)
            if held == slot:
                del table[key]
                gone.append(key)
            elif isinstance(held, tuple) and slot in held:
                rest = tuple(s for s in held if s != slot)
                table[key] = rest[0] if len(rest) == 1 else rest
        return gone

    def candidates(self, keys: Keys) -> set[int]:
        """The slots that share a band with ``keys``."""
        found: set[int] = set()
        for key in keys:
            held = self.table.get(key)
            if held is None:
                continue
            if isinstance(held, int):
                found.add(held)
            else:
                found.update(held)
        return found


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
        """Each indexed post's bucket and slot, as ``bucket * 2^32 + slot``."""
        self._expires_at = float("inf")
        """The clock at which the oldest live bucket leaves: ``advance`` looks no further
        before it."""
        self._disjoint: tuple[Keys, set[int] | None] | None = None
        """The last query's keys and the buckets that had none of them (None: no bucket had
        any), until the next insert."""
        self._keys: set[int] = set()
        """Every band key of every live bucket: one look-up settles a post that shares no band
        with any live post (most posts), where the buckets would take one each."""
        self._shared: set[int] = set()
        """Keys that went into the window while already in it: every key that more than one
        live bucket holds is here, so that a bucket leaving keeps those in ``_keys``."""
        b, r = lsh_params(threshold, fingerprinter.num_perm)
        self.bands: list[tuple[int, int]] = [(i * r, (i + 1) * r) for i in range(b)]

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
        if created_at < self._expires_at:
            return []
        horizon = self.horizon
        gone: list[str] = []
        where = self._where
        for number in [n for n in self._buckets if (n + 1) * self.bucket_s <= horizon]:
            bucket = self._buckets.pop(number)
            for post_id in bucket.post_ids:
                # a post removed from this bucket (an edit) may be held by a later one now
                code = where.get(post_id)
                if code is not None and code // _SLOTS == number:
                    del where[post_id]
            gone += bucket.clusters
            self._release(bucket.table.keys())
        self._expires_at = self._expiry()
        return gone

    def _release(self, keys: Collection[int]) -> None:
        """Take ``keys``, which a bucket no longer holds (it left, or a post left it), out of
        ``_keys`` (one C-level pass), bar those another live bucket holds too (all among
        ``_shared``)."""
        self._keys.difference_update(keys)
        for key in self._shared.intersection(keys):
            holders = sum(key in other.table for other in self._buckets.values())
            if holders:
                self._keys.add(key)
            if holders < 2:
                self._shared.discard(key)

    def _expiry(self) -> float:
        if not self._buckets:
            return float("inf")
        return (min(self._buckets) + 1) * self.bucket_s + self.window_s

    def get(self, post_id: str) -> Entry | None:
        code = self._where.get(post_id)
        if code is None:
            return None
        number, slot = divmod(code, _SLOTS)
        return self._buckets[number].entry(slot)

    def entries(self) -> Iterator[Entry]:
        """Every indexed post (by :attr:`_where`: a removed post's row stays in its bucket)."""
        for code in self._where.values():
            number, slot = divmod(code, _SLOTS)
            yield self._buckets[number].entry(slot)

    def batch_keys(self, signatures: Signature) -> list[Keys]:
        """The band keys of each row of ``[n, num_perm]`` signatures (see the module's
        docstring), computed for all rows at once."""
        return band_keys(signatures, self.threshold)

    def keys(self, signature: Signature) -> Keys:
        """One signature's band keys; :meth:`batch_keys` for many."""
        return self.batch_keys(signature.reshape(1, -1))[0]

    def query(self, signature: Signature, keys: Keys, exclude: str | None = None) -> list[Match]:
        """Verified near-copies among live posts, most similar first."""
        if self._keys.isdisjoint(keys):
            self._disjoint = (keys, None)
            return []
        matches: list[Match] = []
        disjoint: set[int] = set()
        for number, bucket in self._buckets.items():
            if bucket.table.keys().isdisjoint(keys):
                disjoint.add(number)
                continue
            slots = bucket.candidates(keys)
            if exclude is not None and exclude in self._where:
                held, slot = divmod(self._where[exclude], _SLOTS)
                if held == number:
                    slots.discard(slot)
            if not slots:
                continue
            found = list(slots)
            sims = similarity(signature, bucket.signatures[found]).tolist()
            threshold = self.threshold
            matches += [
                Match(bucket.entry(slot), sim)
                for slot, sim in zip(found, sims, strict=True)
                if sim >= threshold
            ]
        self._disjoint = (keys, disjoint)
        if len(matches) > 1:
            matches.sort(key=lambda m: (-m.similarity, m.entry.created_at))
        return matches

    def insert(self, entry: Entry, keys: Keys) -> bool:
        """Keep ``entry`` unless its post is indexed already or has left the window."""
        if not self.live(entry.created_at) or self.holds(entry.post_id):
            return False
        number = int(entry.created_at // self.bucket_s)
        bucket = self._buckets.get(number)
        if bucket is None:
            bucket = self._buckets[number] = _Bucket(self.fingerprinter.num_perm)
            self._expires_at = self._expiry()
        # the query of these very keys just found the window, or this bucket, without them: no
        # need to look again
        last, self._disjoint = self._disjoint, None
        nowhere = fresh = False
        if last is not None and last[0] is keys:
            nowhere = last[1] is None
            fresh = last[1] is None or number in last[1]
        if not nowhere:
            self._shared.update(key for key in keys if key in self._keys)
        self._keys.update(keys)
        self._where[entry.post_id] = number * _SLOTS + bucket.add(entry, keys, fresh)
        return True

    def remove(self, post_id: str) -> None:
        """Take ``post_id`` out of the window, if it is in it: the post was edited, and the text
        kept for it is no longer its text, so no later post may be matched against it."""
        code = self._where.pop(post_id, None)
        if code is None:
            return
        number, slot = divmod(code, _SLOTS)
        bucket = self._buckets[number]
        # the keys are not kept: they are the signature's, computed again
        self._release(bucket.remove(slot, self.keys(bucket.signatures[slot])))

    def holds(self, post_id: str) -> bool:
        """Whether ``post_id`` is indexed (:meth:`get` without building its entry)."""
        return post_id in self._where
