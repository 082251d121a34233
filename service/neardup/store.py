"""Where the window and the clusters live: this process (:class:`LocalStore`, the embedded
default) or Redis shared by every replica (:class:`service.neardup.shared.RedisStore`).

A store answers two calls per post: :meth:`Store.match` (the verified near-copies among live
posts) and :meth:`Store.add` (index the post and put it in a cluster, idempotent by post id and
text); and :meth:`Store.withdraw` for a post whose text has no fingerprint (boilerplate).

**A post id seen before** (:func:`judge`). A post id names one post, of the account it came
with (or of none): sent by another account, or without the account it had, it is refused, and
nothing of the post the id names changes (an account could otherwise edit another's post out of
the window). With the text it had (the same signature, :func:`~service.neardup.fingerprint.digest`),
it is the same post: sent again (a retry, a re-score, a replay) it gets its cluster as it is now
and counts nothing twice. With another text, where the caller refuses edits (the publish path,
where a post id names one text), it is refused too; else it is an edit of that post, as a
platform that lets authors edit keeps the id: its earlier text leaves the window (no later post
is matched against what the post no longer says), and the new text is matched, clustered and
indexed as a new post's would be, in a cluster of its own when it has no copy
(:func:`~service.neardup.cluster.cluster_id` with the new text's digest, not the one its earlier
text may have started). A text with no fingerprint is another text too
(:data:`NO_TEXT`): the earlier one leaves the window, and nothing takes its place. The clusters
the earlier texts were in keep the post among their members and counts: what was posted was
seen, and an edit must not take an account out of a batch it made (posting, then editing, would
otherwise escape the batch rule). A post is counted once in a cluster however often it is edited:
an edit whose copies are in a cluster one of its texts was in (a typo fixed, or an edit undone:
A, then B, then A again) is the member it was, not a second one.

**How long an id is known.** An indexed post while its bucket is in the window (the store can
still match it); one not indexed (older than the window, crowded out, or withdrawn) for the
window and a bucket after it was added, by the clock. Past that it is a post never seen: sent
again, with any text, it is counted again in the clusters it joins.

The rules are the stores' own, in :class:`LocalStore` and in Redis's scripts
(:mod:`service.neardup.shared`), where they are atomic with the add, so that every caller, the
live service and a batch replay alike, gets them and no process can interleave.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from service.neardup.cluster import Cluster, ClusterBook, Member, cluster_id
from service.neardup.fingerprint import Signature, digest
from service.neardup.index import Entry, Keys, Match, WindowIndex

NO_TEXT = "-"
"""The version of a text with no fingerprint (boilerplate), where a text has its signature's
digest (hex, never this)."""


Seen = Literal["", "edited", "account", "text"]
"""What a store made of a post whose id it knew (:func:`judge`): nothing to do (the same post,
or an id it did not know), an edit, or a refusal that changed nothing: the id is held for another
account, or known with another text where edits are refused."""

REFUSED: tuple[Seen, ...] = ("account", "text")
"""What a store refuses, changing nothing."""

Poster = tuple[str, str | None]
"""A post id and the account that sent it."""


def judge(text: str, owner: str | None, version: str, account: str | None, edits: bool) -> Seen:
    """A post id known with the text ``text`` (its signature's digest, empty when unknown) and
    the account ``owner`` ("" for none, None when unknown), sent again with ``version`` by
    ``account``: the module's docstring. Redis's scripts apply the same rule
    (:mod:`service.neardup.shared`)."""
    if owner is not None and owner != (account or ""):
        return "account"
    if text in ("", version):
        return ""
    return "edited" if edits else "text"


class StoreUnavailableError(Exception):
    """The shared store did not answer; the caller falls back to its local store."""


@dataclass(slots=True)
class ClusterState:
    """A cluster as the rules see it just after a post joined it (made for every post: not
    frozen, as a frozen dataclass takes five times as long to make)."""

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


@dataclass(slots=True)
class Added:
    cluster: ClusterState
    kept: bool
    """False when the post was not indexed, being older than the window (a post seen before with
    the same text, or refused, is True: it is where it was)."""
    seen: Seen = ""
    """What the post id was, when seen before (see the module's docstring)."""
    withdrawn: tuple[Seen, ...] = ()
    """What each of the posts :meth:`Store.add` was given to withdraw after it was."""


class Store(Protocol):
    def match(
        self, signature: Signature, keys: Keys, at: float | None, exclude: str | None
    ) -> list[Match]:
        """The verified near-copies of a post at ``at`` among every live post (the window
        before the store's clock, the newest ``created_at`` seen or ``at``), ``exclude`` aside.
        ``at`` None: a lookup for no post, at the store's clock, which it leaves as it is."""

    def add(
        self,
        member: Member,
        signature: Signature,
        keys: Keys,
        target: Entry | None,
        index: bool,
        excerpt: str = "",
        then: Sequence[Poster] = (),
        edits: bool = True,
    ) -> Added:
        """Put the post in the cluster of ``target`` (a copy it matched; a cluster is made for
        the two when ``target`` was alone) and, when ``index``, in the window. A post with no
        target stays alone: no cluster object until a later post matches it. A post id seen
        before with the same signature is not added again and gets its cluster as it is now;
        with another, it is an edit, or refused unless ``edits``; sent by another account, it is
        refused (the module's docstring). ``excerpt``: the beginning of its text, kept with it
        in the window. ``then``: the posts with no fingerprint that came next, withdrawn after
        it (:meth:`withdraw`) in the same call, one round trip in Redis."""

    def withdraw(self, posts: Sequence[Poster], edits: bool = True) -> list[Seen]:
        """Posts sent with a text that has no fingerprint, in order: each one known with a text
        is an edit to :data:`NO_TEXT` (the module's docstring; refused unless ``edits``), which
        neither moves the clock nor joins a cluster; one known for another account is refused;
        an id not known is not noted. What each was."""

    def get(self, post_id: str) -> Entry | None: ...

    def cluster(self, cid: str) -> Cluster | None: ...

    def flagged(self, limit: int) -> list[Cluster]: ...

    def ping(self) -> None:
        """Raise :class:`StoreUnavailableError` unless the store answers."""


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


def alone(member: Member, account_batches: int, cid: str | None = None) -> ClusterState:
    """The cluster of a post with no copy: itself (``cid``: its id, when already computed)."""
    accounts = int(member.account_id is not None)
    return ClusterState(
        id=cid or cluster_id(member.post_id),
        size=1,
        distinct_accounts=accounts,
        recent_accounts=accounts,
        first_at=member.created_at,
        last_at=member.created_at,
        earliest=member,
        batch_at=None,
        account_batches=account_batches,
    )


def seed(entry: Entry) -> Member:
    return Member(entry.post_id, entry.account_id, entry.created_at)


MAX_UNINDEXED = 100_000
"""Ids of posts not indexed that :class:`LocalStore` keeps at most (about 30 MB): a flood of
one text or a replay of posts older than the window, whose clock stands still, stays bounded;
past it the id noted longest ago is forgotten first."""


class LocalStore:
    """The window and the clusters in this process (not thread-safe: the caller locks).

    A post id is one member however often it comes with one text, as in Redis (its
    ``P:w:<post>`` key), and as long (the module's docstring): an indexed post is known by the
    index (with its signature and account), one added but not indexed (older than the window,
    crowded out, or withdrawn) by :attr:`unindexed` (with its signature's digest and account),
    which keeps it the window and a bucket, by the index's clock (and at most
    :data:`MAX_UNINDEXED`)."""

    def __init__(self, index: WindowIndex, book: ClusterBook) -> None:
        self.index, self.book = index, book
        self.unindexed: OrderedDict[str, tuple[str, float, str, str | None]] = OrderedDict()
        """Post id to its cluster id, the clock when it was added, its signature's digest
        (empty when unknown) and its account ("" for none, None when unknown), oldest first."""
        self.earlier: OrderedDict[str, tuple[tuple[str, ...], float]] = OrderedDict()
        """Edited post id to the clusters its earlier texts were in (a post is counted once in
        each) and the clock when it was last edited, oldest first. Read only while the id is
        known, which it is no longer than the window and a bucket after that edit: forgotten
        then, as :attr:`unindexed` is."""

    def __setstate__(self, state: dict[str, Any]) -> None:
        # a snapshot written before ``unindexed`` was: its window, with no such id known
        noted = state.setdefault("unindexed", OrderedDict())
        # one written before it kept digests (two fields) or accounts (three): those texts and
        # accounts are unknown, each taken as the one its post has (as a stored record without
        # a text digest is, in service.scoring)
        for post_id, kept in noted.items():
            if len(kept) < 4:
                noted[post_id] = (*kept, *("", None)[len(kept) - 2 :])
        # one written before edits were remembered: the one cluster each post is known in
        state.setdefault("earlier", OrderedDict())
        self.__dict__.update(state)

    def match(
        self, signature: Signature, keys: Keys, at: float | None, exclude: str | None
    ) -> list[Match]:
        gone = [] if at is None else self.index.advance(at)
        if gone:
            self.book.expire(gone, self.index.horizon)
        return self.index.query(signature, keys, exclude)

    def add(
        self,
        member: Member,
        signature: Signature,
        keys: Keys,
        target: Entry | None,
        index: bool,
        excerpt: str = "",
        then: Sequence[Poster] = (),
        edits: bool = True,
    ) -> Added:
        added = self._add(member, signature, keys, target, index, excerpt, edits)
        if then:
            added.withdrawn = tuple(self.withdraw(then, edits))
        return added

    def _add(
        self,
        member: Member,
        signature: Signature,
        keys: Keys,
        target: Entry | None,
        index: bool,
        excerpt: str,
        edits: bool,
    ) -> Added:
        self._forget()
        known = self._known(member.post_id)
        # the digest (a microsecond) only for an id seen before or one noted: most posts are
        # neither
        version = "" if known is None else digest(signature)
        batches = self.book.account_batches(member.account_id, member.created_at)
        seen: Seen = "" if known is None else judge(*known[1:], version, member.account_id, edits)
        if seen in REFUSED:
            return Added(alone(member, batches), True, seen)
        if known is not None and seen == "":
            cluster = self.book.get(known[0])
            return Added(
                alone(member, batches) if cluster is None else state(cluster, batches), True
            )
        edited = seen == "edited"
        counted: tuple[str, ...] = ()
        if known is not None:
            counted = self._edit(member.post_id, known[0])
        elif self.earlier:
            # an id forgotten and sent again is a new post: what it counted before is not kept
            self.earlier.pop(member.post_id, None)
        if target is None:
            cid = cluster_id(member.post_id, version if edited else "")
        else:
            cid = target.cluster_id
            if cid not in counted:
                self.book.add(member, cid, seed(target))
                batches = self.book.account_batches(member.account_id, member.created_at)
        entry = Entry(member.post_id, member.account_id, member.created_at, cid, signature, excerpt)
        indexed = index and self.index.insert(entry, keys)
        if not indexed:
            self._note(member.post_id, cid, version or digest(signature), member.account_id)
        found = self.book.get(cid)
        kept = indexed or not index
        cluster_state = alone(member, batches, cid) if found is None else state(found, batches)
        return Added(cluster_state, kept, seen)

    def withdraw(self, posts: Sequence[Poster], edits: bool = True) -> list[Seen]:
        self._forget()
        found: list[Seen] = []
        for post_id, account in posts:
            known = self._known(post_id)
            # an id not known stays so: most posts with no fingerprint are no edit
            seen: Seen = "" if known is None else judge(*known[1:], NO_TEXT, account, edits)
            if known is not None and seen == "edited":
                self._edit(post_id, known[0])
                self._note(post_id, "", NO_TEXT, account)
            found.append(seen)
        return found

    def _edit(self, post_id: str, cid: str) -> tuple[str, ...]:
        """Take the earlier text of ``post_id`` (in cluster ``cid``) out of the window; the
        clusters its texts were in, remembered from now on."""
        self.index.remove(post_id)
        self.unindexed.pop(post_id, None)
        held = self.earlier.pop(post_id, None)
        counted = () if held is None else held[0]
        if cid and cid not in counted:
            counted = (*counted, cid)
        self.earlier[post_id] = (counted, self.index.clock)
        return counted

    def _known(self, post_id: str) -> tuple[str, str, str | None] | None:
        """The cluster id of ``post_id``, its text's digest (empty when unknown) and its account
        ("" for none, None when unknown) if it was added before and is still remembered."""
        entry = self.index.get(post_id)
        if entry is not None:
            return entry.cluster_id, digest(entry.signature), entry.account_id or ""
        noted = self.unindexed.get(post_id)
        return None if noted is None else (noted[0], noted[2], noted[3])

    def _note(self, post_id: str, cid: str, version: str, account: str | None) -> None:
        self.unindexed[post_id] = (cid, self.index.clock, version, account or "")
        if len(self.unindexed) > MAX_UNINDEXED:
            self.unindexed.popitem(last=False)

    def _forget(self) -> None:
        """Drop the ids noted a window and a bucket before the clock (which only moves on, so
        they are the first ones), and the clusters of edits as long ago."""
        expired = self.index.clock - self.index.window_s - self.index.bucket_s
        noted = self.unindexed
        while noted and next(iter(noted.values()))[1] <= expired:
            noted.popitem(last=False)
        edits = self.earlier
        while edits and next(iter(edits.values()))[1] <= expired:
            edits.popitem(last=False)

    def get(self, post_id: str) -> Entry | None:
        return self.index.get(post_id)

    def cluster(self, cid: str) -> Cluster | None:
        return self.book.get(cid)

    def flagged(self, limit: int) -> list[Cluster]:
        return self.book.flagged(limit)

    def ping(self) -> None:
        """In this process: it always answers."""
