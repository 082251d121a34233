"""Where the window and the clusters live: this process (:class:`LocalStore`, the embedded
default) or Redis shared by every replica (:class:`service.neardup.shared.RedisStore`).

A store answers two calls per post: :meth:`Store.match` (the verified near-copies among live
posts) and :meth:`Store.add` (index the post and put it in a cluster, idempotent by post id).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from service.neardup.cluster import Cluster, ClusterBook, Member
from service.neardup.fingerprint import Signature
from service.neardup.index import Entry, Match, WindowIndex


class StoreUnavailableError(Exception):
    """The shared store did not answer; the caller falls back to its local store."""


@dataclass(frozen=True)
class ClusterState:
    """A cluster as the rules see it just after a post joined it."""

    id: str
    size: int
    distinct_accounts: int
    recent_accounts: int
    """Distinct accounts within ``T`` of its newest post."""
    first_at: float
    last_at: float
    earliest: Member
    batch_at: float | None
    account_batches: int = 0
    """Flagged clusters the joining post's account took part in during the last week."""


@dataclass(frozen=True)
class Added:
    cluster: ClusterState
    kept: bool
    """False when the post was not indexed: seen before, or older than the window."""


class Store(Protocol):
    def match(
        self, signature: Signature, keys: list[bytes], at: float, exclude: str | None
    ) -> list[Match]: ...

    def add(
        self,
        member: Member,
        signature: Signature,
        keys: list[bytes],
        target: str | None,
        index: bool,
    ) -> Added:
        """Put the post in cluster ``target`` (or a new one) and, when ``index``, in the window;
        a post id seen before is not added again and gets its cluster as it is now."""

    def get(self, post_id: str) -> Entry | None: ...

    def cluster(self, cid: str) -> Cluster | None: ...

    def flagged(self, limit: int) -> list[Cluster]: ...


def state(cluster: Cluster, account_batches: int) -> ClusterState:
    return ClusterState(
        id=cluster.id,
        size=cluster.size,
        distinct_accounts=cluster.distinct_accounts,
        recent_accounts=len(cluster.recent),
        first_at=cluster.first_at,
        last_at=cluster.last_at,
        earliest=cluster.earliest,
        batch_at=cluster.batch_at,
        account_batches=account_batches,
    )


class LocalStore:
    """The window and the clusters in this process (not thread-safe: the caller locks)."""

    def __init__(self, index: WindowIndex, book: ClusterBook) -> None:
        self.index, self.book = index, book

    def match(
        self, signature: Signature, keys: list[bytes], at: float, exclude: str | None
    ) -> list[Match]:
        self.book.expire(self.index.advance(at), self.index.horizon)
        return self.index.query(signature, keys, exclude)

    def add(
        self,
        member: Member,
        signature: Signature,
        keys: list[bytes],
        target: str | None,
        index: bool,
    ) -> Added:
        known = self.index.get(member.post_id)
        cluster = self.book.get(known.cluster_id) if known else None
        kept = False
        if cluster is None:
            cluster = self.book.add(member, target)
            entry = Entry(
                member.post_id, member.account_id, member.created_at, cluster.id, signature
            )
            kept = not index or self.index.insert(entry, keys)
        batches = self.book.account_batches(member.account_id, member.created_at)
        return Added(state(cluster, batches), kept or known is not None)

    def get(self, post_id: str) -> Entry | None:
        return self.index.get(post_id)

    def cluster(self, cid: str) -> Cluster | None:
        return self.book.get(cid)

    def flagged(self, limit: int) -> list[Cluster]:
        return self.book.flagged(limit)
