"""Clusters of near-copies: the earliest source, coordinated batches, accounts in batches.

A post with verified near-copies joins the cluster they weigh most for; a post with none is a
cluster of one, named after it but not kept as an object until a later post matches it (most
posts never are). Clusters are not merged: a chain of edits that drifts past the threshold
starts a new one. The id is derived from the first post's id (and, for a post edited into a new
text, from that text's digest), so a re-run over the same posts gives the same ids.

**Coordinated batch** (art18.4): a cluster that has had ``K`` (``batch_accounts``) distinct
accounts within ``T`` (``batch_s``) of its newest post. From the post that completes the batch on,
every post that joins the cluster is flagged; the posts before it are listed in the cluster.
Posts without an account do not count toward ``K``.

**Accounts in batches**: per account, the flagged clusters it posted in during the last
``ACCOUNT_WINDOW_S`` (a rolling week).

Memory per cluster is bounded whatever its size: the first ``max_members`` members are kept and
the rest counted, distinct accounts are kept up to ``max_accounts`` and counted past it, and the
batch window holds at most ``max(4K, 64)`` accounts.
"""

from __future__ import annotations

import hashlib
import re
from collections import OrderedDict
from dataclasses import dataclass, field

ACCOUNT_WINDOW_S = 7 * 24 * 3600.0


@dataclass(frozen=True, slots=True)
class Member:
    post_id: str
    account_id: str | None
    created_at: float


CLUSTER_ID = re.compile(r"c_[0-9a-f]{16}")
"""What :func:`cluster_id` gives, and so every cluster id: any other text names no cluster (and,
in Redis, could name another key: ``ID:m`` is a cluster's member list)."""


def cluster_id(first_post_id: str, version: str = "") -> str:
    """The id of a cluster whose first post is ``first_post_id``; ``version``: the digest of an
    edited post's new text (:func:`~service.neardup.fingerprint.digest`), so that the cluster
    its new text starts is not the one its earlier text may have started."""
    named = f"{first_post_id}\0{version}" if version else first_post_id
    return "c_" + hashlib.sha256(named.encode()).hexdigest()[:16]


@dataclass
class Cluster:
    id: str
    earliest: Member
    first_at: float
    last_at: float
    size: int = 0
    members: list[Member] = field(default_factory=list)
    accounts: set[str] = field(default_factory=set)
    accounts_over: int = 0
    """Distinct accounts past ``max_accounts`` that were counted but not kept."""
    recent: dict[str, float] = field(default_factory=dict)
    """Account to its newest post time, for the accounts within ``T`` of the newest post."""
    batch_at: float | None = None
    """When the cluster became a coordinated batch (the newest post time among the accounts
    that made it one); None while it is not one."""
    batch_accounts: list[str] = field(default_factory=list)

    @property
    def distinct_accounts(self) -> int:
        return len(self.accounts) + self.accounts_over


class ClusterBook:
    """The live clusters, and the flagged ones (kept after they leave the window)."""

    def __init__(
        self,
        *,
        batch_accounts: int,
        batch_s: float,
        max_members: int = 100,
        max_accounts: int = 10_000,
        max_flagged: int = 1000,
    ) -> None:
        self.k, self.t = batch_accounts, batch_s
        self.max_members, self.max_accounts, self.max_flagged = (
            max_members,
            max_accounts,
            max_flagged,
        )
        self._live: dict[str, Cluster] = {}
        self._flagged: OrderedDict[str, Cluster] = OrderedDict()
        self._account_batches: dict[str, dict[str, float]] = {}

    def get(self, cid: str) -> Cluster | None:
        return self._live.get(cid) or self._flagged.get(cid)

    def live(self, cid: str) -> Cluster | None:
        """The live cluster ``cid`` (the one a post joins), None when it has expired."""
        return self._live.get(cid)

    def account_history(self, since: float) -> list[tuple[str, str, float]]:
        """Every (account, flagged cluster, time) noted at or after ``since``, sorted: what
        :meth:`account_batches` can still count for a post at ``since + ACCOUNT_WINDOW_S`` on."""
        return sorted(
            (account, cid, at)
            for account, seen in self._account_batches.items()
            for cid, at in seen.items()
            if at >= since
        )

    def flagged(self, limit: int) -> list[Cluster]:
        """Flagged clusters, most recently flagged first."""
        return list(reversed(self._flagged.values()))[:limit]

    def add(self, member: Member, cid: str | None, seed: Member | None = None) -> Cluster:
        """Put ``member`` in cluster ``cid``. A cluster not live (or None: a new one named after
        ``member``) is made, with ``seed`` first when given: the post ``member`` matched, which
        was alone until now (a post with no copy gets no cluster object)."""
        cluster = self._live.get(cid) if cid else None
        if cluster is None:
            first = seed or member
            new_id = cid or cluster_id(member.post_id)
            cluster = self._live[new_id] = Cluster(
                new_id, first, first.created_at, first.created_at
            )
            if seed is not None:
                self._join(cluster, seed)
        self._join(cluster, member)
        return cluster

    def _join(self, cluster: Cluster, member: Member) -> None:
        cluster.size += 1
        if len(cluster.members) < self.max_members:
            cluster.members.append(member)
        if member.created_at < cluster.earliest.created_at:
            cluster.earliest = member
        cluster.first_at = min(cluster.first_at, member.created_at)
        cluster.last_at = max(cluster.last_at, member.created_at)
        account = member.account_id
        if account is not None:
            if account in cluster.accounts:
                pass
            elif len(cluster.accounts) < self.max_accounts:
                cluster.accounts.add(account)
            else:
                cluster.accounts_over += 1
            self._note_recent(cluster, account, member.created_at)
        if cluster.batch_at is None and len(cluster.recent) >= self.k:
            # when its K-th account had posted: a post that arrives late and completes the
            # batch is older than the posts it completes it with
            cluster.batch_at = max(cluster.recent.values())
            cluster.batch_accounts = list(cluster.recent)
            for earlier in cluster.batch_accounts:
                self._account_batches.setdefault(earlier, {})[cluster.id] = cluster.batch_at
        if cluster.batch_at is not None:
            self._flagged[cluster.id] = cluster
            self._flagged.move_to_end(cluster.id)
            while len(self._flagged) > self.max_flagged:
                self._flagged.popitem(last=False)
            if account is not None:
                self._account_batches.setdefault(account, {})[cluster.id] = member.created_at

    def _note_recent(self, cluster: Cluster, account: str, at: float) -> None:
        recent = cluster.recent
        recent[account] = max(at, recent.get(account, at))
        # by time, not by arrival: a post that arrives late (a re-score out of order, a slow
        # producer) is as old as its time says, and must not keep or complete a batch
        horizon = cluster.last_at - self.t
        for stale in [a for a, t in recent.items() if t < horizon]:
            del recent[stale]
        over = len(recent) - max(4 * self.k, 64)
        if over > 0:
            for oldest in sorted(recent, key=recent.__getitem__)[:over]:
                del recent[oldest]

    def account_batches(self, account: str | None, now: float) -> int:
        """Flagged clusters ``account`` posted in during the week before ``now``."""
        seen = self._account_batches.get(account or "")
        if not seen:
            return 0
        for cid in [c for c, t in seen.items() if t < now - ACCOUNT_WINDOW_S]:
            del seen[cid]
        return sum(t <= now for t in seen.values())

    def expire(self, cids: list[str], horizon: float) -> None:
        """Forget live clusters among ``cids`` whose newest post is older than ``horizon``."""
        for cid in set(cids):
            cluster = self._live.get(cid)
            if cluster is not None and cluster.last_at < horizon:
                del self._live[cid]
