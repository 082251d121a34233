"""Scoring on the publish path: idempotency, persistence by policy, degraded mode.

A post id scored again with the same model gets its record back (from memory, or from storage
for stored records), is not scored again and is counted, stored and enqueued once. Of a post
stored under several policies (``rescore`` under a new one), a process answers with the post's
record under its own policy where there is one, else with the post's earliest record: every
process of one policy answers alike, from memory or from storage. A request for a post whose
record another request of the process is storing or spooling waits for it and shares its
answer, the record or :class:`NotKept` (:meth:`ScoringService._keep`). A post id names one post, of
one account and one text: sent again by another account (or without the account it had), or
with another text (an edit, or a producer reusing ids), it gets an :class:`IdConflict` instead,
since the first record would let the new text through unscored, or hand one account's record to
another. The near-duplicate window applies the same rule to a post
whose first record is not held here (never stored, after a restart, on another replica), as
long as it knows the id: it refuses the post and leaves the window as it was
(:mod:`service.neardup.store`).
Records whose decision the policy lists in ``persist`` are stored, with a review-queue item when
it lists the decision in ``enqueue``. The answer goes out before the evidence spans of its flagged
risks are found (one more model call per flagged post): an idle-scheduled process of its own
finds them (:mod:`service.evidence_process`), one call at a time, and they are added to the
stored records afterwards. When storage fails, or has not answered a call by its
deadline (:class:`~service.gate.StorageGate`), the answer still goes out, marked ``degraded``,
and those records wait in the durable :class:`~service.spool.Spool` until storage answers
again; a post whose record the spool cannot take either gets :class:`NotKept`, the others of
its call their records. Nothing here knows about HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import Counter, OrderedDict
from collections.abc import Callable, Coroutine, Mapping, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from service.batching import MicroBatcher
from service.evidence_process import EvidenceHungError, EvidenceLostError, EvidenceProcess
from service.explaining import Explaining, search_failed
from service.gate import DaemonThreads, StorageGate
from service.metrics import Metrics
from service.neardup.bank import rumor_copy
from service.neardup.match import HELD, TAKEN
from service.policy import Policy
from service.record import Post, ScoreRecord, text_decision, text_digest
from service.review.dispositions import Standing
from service.review.items import QueueRequest
from service.spool import Spool, no_room, stamp
from service.storage import Pending, Repository, StorageError, SweepIncompleteError
from service.storage.repository import RumorCopy
from service.usage import RecentUse

log = logging.getLogger(__name__)

NOT_KEPT = (
    "the post was scored, but its record could be neither stored (storage is unavailable) nor "
    "spooled ({cause}); try again"
)
"""The words for a post answered :class:`NotKept`, alone or in a batch, with its ``cause``."""
FULL = "the spool's disk is full"
UNWRITABLE = "the spool's folder cannot be written"
ABANDONED = "the request keeping it ended first"
"""The cause of a post whose record another request was keeping when that request failed (its
client gone, say): whether it was kept is unknown, and the retry finds out."""


class PolicyScorer(Protocol):
    """What the service needs of :class:`service.pipeline.Pipeline`."""

    @property
    def model_version(self) -> str: ...

    @property
    def policy(self) -> Policy: ...

    @property
    def evidence(self) -> bool:
        """Whether this process finds evidence spans (:attr:`Settings.evidence`)."""

    def prepare(self, posts: Sequence[Post], *, evidence: bool = True) -> Sequence[Any]: ...

    def ordered(
        self,
        posts: Sequence[Post],
        prepared: Sequence[Any],
        accounts: Mapping[str, Standing] | None = None,
        *,
        edits: bool = True,
    ) -> list[ScoreRecord]: ...

    def explaining(self) -> Explaining: ...

    def review_requests(
        self, posts: Sequence[Post], records: Sequence[ScoreRecord]
    ) -> list[QueueRequest]: ...


@dataclass(frozen=True)
class IdConflict:
    """The post's id names another post, which stands: one of another account (``account``), or
    scored before with another text."""

    id: str
    account: bool

    @property
    def problem(self) -> str:
        if self.account:
            return (
                f"post {self.id!r} belongs to another account: a post id names one post, so a "
                "post of this account needs an id of its own"
            )
        return (
            f"post {self.id!r} was scored before with another text: a post id names one text, "
            "so an edited post needs an id of its own"
        )


@dataclass(frozen=True)
class NotKept:
    """The post was scored, but its record, which the policy keeps, could be neither stored nor
    spooled (storage down, and the spool's disk full or its folder unwritable: ``cause``,
    :data:`FULL`, :data:`UNWRITABLE`, or :data:`ABANDONED`). Answered, the record would be
    lost, and a flagged post let out with no review item; unanswered, the publish path retries
    it as any other unavailable answer, and the retry is scored again and kept once there is
    room."""

    id: str
    cause: str

    @property
    def problem(self) -> str:
        return NOT_KEPT.format(cause=self.cause)


def _stored_key(record: ScoreRecord) -> tuple[str, str, str]:
    """Which stored record ``record`` is: storage keeps one per post, model and policy."""
    return record.id, record.model_version, record.policy_version


def _conflict(post: Post, account_id: str | None, digest: str | None) -> IdConflict | None:
    """Whether ``post`` is another post than the one its id names, of ``account_id`` and of the
    text of ``digest`` (a record stored before digests were kept has none: its text is taken as
    the post's)."""
    if post.account_id != account_id:
        return IdConflict(post.id, account=True)
    if digest not in (None, text_digest(post.text)):
        return IdConflict(post.id, account=False)
    return None


def _answer(post: Post, record: ScoreRecord, degraded: bool) -> ScoreRecord | IdConflict:
    conflict = _conflict(post, record.account_id, record.text_digest)
    return conflict or record.model_copy(update={"degraded": degraded})


def _refused(record: ScoreRecord) -> IdConflict | None:
    """The near-duplicate window's refusal of the post of ``record``, if it refused it."""
    if HELD in record.warnings:
        return IdConflict(record.id, account=True)
    if TAKEN in record.warnings:
        return IdConflict(record.id, account=False)
    return None


def _refusal(
    post: Post, firsts: dict[str, Post], refused: dict[str, IdConflict | NotKept]
) -> IdConflict | NotKept:
    """The answer to ``post``, whose id the window refused or whose record was not kept: the
    first post of its id in the call (``firsts``) was the one matched and scored, and the
    others are compared with it."""
    first = firsts[post.id]
    return _conflict(post, first.account_id, text_digest(first.text)) or refused[post.id]


class FirstRecords:
    """The record of each (post id, model version) under this process's policy, most recently
    used kept.

    A record under another policy (the answer to a post this policy never scored) is not kept:
    a re-score under this policy may store the post's own record later, which every process then
    answers with, so such a post is looked up in storage each time.

    Records are kept as their JSON text: a hundred thousand records as objects are millions of
    objects for the garbage collector to walk (a full collection then paused the server for
    most of a second), as strings none.
    """

    def __init__(self, size: int, policy_version: str) -> None:
        self.size = size
        self.policy_version = policy_version
        self._records: OrderedDict[tuple[str, str], str] = OrderedDict()

    def get(self, post_id: str, model_version: str) -> ScoreRecord | None:
        key = (post_id, model_version)
        kept = self._records.get(key)
        if kept is None:
            return None
        self._records.move_to_end(key)
        return ScoreRecord.model_validate_json(kept)

    def keep(self, record: ScoreRecord) -> ScoreRecord:
        """Keep ``record`` unless one is kept for its post already; return the kept one
        (``record`` itself when it is the one kept)."""
        if record.policy_version != self.policy_version:
            return record
        key = (record.id, record.model_version)
        kept = self._records.get(key)
        if kept is not None:
            return ScoreRecord.model_validate_json(kept)
        self._records[key] = record.model_dump_json()
        while len(self._records) > self.size:
            self._records.popitem(last=False)
        return record

    def replace(self, record: ScoreRecord) -> None:
        self._records[(record.id, record.model_version)] = record.model_dump_json()


class ScoringService:
    def __init__(
        self,
        scorer: PolicyScorer,
        repository: Repository,
        spool: Spool,
        gate: StorageGate,
        *,
        window_s: float,
        max_posts: int,
        max_queue: int,
        workers: int,
        cache_size: int,
        evidence_lease_s: float,
        evidence_deadline_s: float,
        evidence_attempts: int,
        idempotency_keep_s: float,
        metrics: Metrics,
    ) -> None:
        self.scorer = scorer
        self.repository = repository
        self.spool = spool
        self.metrics = metrics
        self.gate = gate
        """Every storage call of the publish path and its background work goes through it."""
        self.health = gate.health
        self.first = FirstRecords(cache_size, scorer.policy.version)
        self.accounts: Mapping[str, Standing] = {}
        """Accounts at the levels the policy treats more strictly or with a disposition that
        stops them publishing, refreshed by :meth:`recover` (a level change or a disposition
        reaches the publish path within ``retry_s``; while storage is away the last read
        stands, and a disposition in it still ends when it ends)."""
        self.batcher: MicroBatcher[Any] = MicroBatcher(
            lambda posts: scorer.prepare(posts, evidence=False),
            # a post id names one text here: the window refuses an edit as the first record does
            lambda posts, ready: scorer.ordered(posts, ready, self.accounts, edits=False),
            window_s=window_s,
            max_posts=max_posts,
            max_queue=max_queue,
            workers=workers,
            on_batch=metrics.batches.observe,
            on_depth=metrics.queue,
        )
        # the spool's appends and the window's reads: never storage, whose calls may hang for
        # as long as the kernel keeps a dead connection (the gate's threads hold them), so that
        # a record is spooled while storage hangs
        self._io = ThreadPoolExecutor(max_workers=4, thread_name_prefix="io")
        # maintenance of its own: it drains the spool while the gate's threads are stuck; its
        # thread, as theirs, does not hold the process's exit (a drain cut short is done again)
        self._upkeep = DaemonThreads(1, "upkeep")
        # a batch's charges of their own: thousands of members take minutes, which held the
        # upkeep's drains and the accounts' refresh behind them
        self._charges = DaemonThreads(1, "charges")
        self._charging: asyncio.Future[None] | None = None
        self._charges_asked = False
        """Whether :meth:`finish_charges` is to run again once the run under way ends."""
        self._stopping = threading.Event()
        """Set by :meth:`close`, which a second time finds it set: a run of :meth:`finish_charges`
        begins no further chunk."""
        self.evidence_process = EvidenceProcess(scorer.explaining(), evidence_deadline_s)
        # it waits on the evidence process, one call at a time: at the normal priority, as it
        # holds the GIL only to send and receive (idle-scheduled, it held it for long spells)
        self._explainer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="evidence")
        self._later: set[asyncio.Future[None]] = set()
        self._explaining: set[asyncio.Future[None]] = set()
        """The evidence jobs among :attr:`_later`: :meth:`close` cancels them."""
        self._keeping: dict[tuple[str, str], asyncio.Future[ScoreRecord | NotKept]] = {}
        """The outcome of each (post id, model version) a request is storing or spooling now:
        the record once kept, :class:`NotKept` when it was not (:meth:`_keep`)."""
        self.usage = RecentUse()
        """The accounts that posted, for their dormancy clock (art10), until the maintenance
        thread writes them (:meth:`record_use`)."""
        self._dormancies_read: int | None = None
        """The audit chain's record up to which the warnings and dormancies given are known to
        :attr:`usage` (None: none read yet)."""
        self._waiting_evidence = 0
        self._searching: Counter[tuple[str, str, str]] = Counter()
        """The stored records (post id, model version, policy version) whose evidence is being
        found here until it is stored: each sweep renews their claims, and claims none again."""
        self.max_waiting_evidence = max_queue
        """Records waiting for their spans beyond this many stay ``evidence_pending``: under a
        load the evidence process cannot follow, the backlog stays bounded."""
        self.evidence_lease_s = evidence_lease_s
        self.evidence_attempts = evidence_attempts
        """Searches a stored record's post may fail on before its evidence is given up."""
        self.idempotency_keep = timedelta(seconds=idempotency_keep_s)
        """How long a write's answer is kept for its retry (:meth:`prune_idempotency_keys`)."""
        self._policy_kept = False
        """Whether storage keeps the policy's rules under its version (:meth:`recover`)."""

    @property
    def model_version(self) -> str:
        return self.scorer.model_version

    @property
    def policy(self) -> Policy:
        return self.scorer.policy

    async def score(
        self, posts: Sequence[Post]
    ) -> tuple[list[ScoreRecord | IdConflict | NotKept], bool]:
        """The records of ``posts`` in order (an :class:`IdConflict` in place of a post whose id
        names another post, a :class:`NotKept` in place of one whose record could not be kept),
        and whether storage was out of reach (degraded)."""
        version = self.model_version
        found: dict[str, ScoreRecord] = {}
        waiting: dict[str, asyncio.Future[ScoreRecord | NotKept]] = {}
        # one post per id: a batch that repeats an id scores and stores its first post once
        firsts: dict[str, Post] = {}
        for post in posts:
            if firsts.setdefault(post.id, post) is post:
                self._recall(post.id, version, found, waiting)
        degraded = False
        unknown = [i for i in firsts if i not in found and i not in waiting]
        if unknown:
            try:
                earlier = await self.gate.call(
                    self.repository.find_records, unknown, version, self.policy.version
                )
                found.update({i: self.first.keep(r) for i, r in earlier.items()})
            except StorageError:
                degraded = True
        fresh = [p for i, p in firsts.items() if i not in found and i not in waiting]
        new: list[ScoreRecord] = []
        refused: dict[str, IdConflict | NotKept] = {}
        for scored in await self.batcher.score(fresh):
            refusal = _refused(scored)
            if refusal is not None:
                refused[scored.id] = refusal
            elif not self._recall(scored.id, scored.model_version, found, waiting):
                new.append(scored)
                if scored.decision not in self.policy.persist:
                    # nothing to keep: in memory at once, where its first record answers a retry
                    found[scored.id] = self.first.keep(scored)
        persisted = [r for r in new if r.decision in self.policy.persist]
        kept, spooled, cause = await self._keep(persisted, firsts)
        found.update(kept)
        # a retry must score these again and keep them; what follows a record (metrics, review
        # items, copies) follows the retry's
        refused.update((r.id, NotKept(r.id, cause)) for r in persisted if r.id not in kept)
        if waiting:
            await self._share(waiting, found, refused)
        new = [r for r in new if not isinstance(refused.get(r.id), NotKept)]
        for record in new:
            self.metrics.scored(record)
        stored = [] if spooled else list(kept.values())
        self._explain_later(firsts, [s for s in stored if s.evidence_pending])
        self._queue_later(firsts, [r for r in new if r.flags["coordination"] or r.flags["rumor"]])
        self._record_copies_later([c for r in new if (c := rumor_copy(r)) is not None])
        # a record not kept is storage's failure for this request, whatever the health says by
        # now: the maintenance may have found storage answering its reads meanwhile
        degraded = degraded or spooled or any(isinstance(r, NotKept) for r in refused.values())
        degraded = degraded or self.health.problem is not None
        # a record is degraded on its own when the shared near-duplicate index did not answer,
        # or when it was spooled for another request that kept it
        degraded = degraded or any(r.degraded for r in found.values())
        answers = [
            _answer(p, found[p.id], degraded) if p.id in found else _refusal(p, firsts, refused)
            for p in posts
        ]
        self.metrics.conflicts.inc(sum(isinstance(a, IdConflict) for a in answers))
        # a post scored is use of its account (art10): remembered here, written off this path
        self.usage.seen(
            (
                p.account_id
                for p, a in zip(posts, answers, strict=True)
                if p.account_id is not None and isinstance(a, ScoreRecord)
            ),
            datetime.now(UTC),
        )
        return answers, degraded

    def _recall(
        self,
        post_id: str,
        version: str,
        found: dict[str, ScoreRecord],
        waiting: dict[str, asyncio.Future[ScoreRecord | NotKept]],
    ) -> bool:
        """Whether this process holds the post's record: kept in memory (put in ``found``), or
        being stored or spooled by another request now (the outcome to wait for put in
        ``waiting``)."""
        known = self.first.get(post_id, version)
        if known is not None:
            found[post_id] = known
            return True
        outcome = self._keeping.get((post_id, version))
        if outcome is not None:
            waiting[post_id] = outcome
            return True
        return False

    @staticmethod
    async def _share(
        waiting: dict[str, asyncio.Future[ScoreRecord | NotKept]],
        found: dict[str, ScoreRecord],
        refused: dict[str, IdConflict | NotKept],
    ) -> None:
        """Answer the posts another request was keeping as it is answered: with the record it
        kept (in ``found``), or with its 503 (in ``refused``)."""
        for post_id, outcome in waiting.items():
            # shielded: a caller gone away must not cancel the outcome the others wait for
            kept = await asyncio.shield(outcome)
            if isinstance(kept, NotKept):
                refused[post_id] = kept
            else:
                found[post_id] = kept

    async def _keep(
        self, records: list[ScoreRecord], posts: dict[str, Post]
    ) -> tuple[dict[str, ScoreRecord], bool, str]:
        """Store ``records`` (their decisions are the policy's ``persist``) or spool them; the
        kept records by post id (none when they could be neither stored nor spooled), whether
        they were spooled, and why none were kept (:class:`NotKept`'s cause) when none were.

        A record enters memory, where other requests find it, only once it is kept: one found
        there earlier would be answered 200 while its own request might yet answer 503 and
        lose it. Meanwhile a request for one of these posts waits for the outcome and shares
        it (the record, or the 503) rather than scoring the post again, which would store,
        count and enqueue it twice, and answer two records for one post. Only such a request
        waits, and no longer than this one does: a post answered from memory, and the first
        request of a post, wait for nothing more than before."""
        if not records:
            return {}, False, ABANDONED
        loop = asyncio.get_running_loop()
        outcomes = {r.id: loop.create_future() for r in records}
        self._keeping.update({(r.id, r.model_version): outcomes[r.id] for r in records})
        kept: dict[str, ScoreRecord] = {}
        spooled, cause = False, ABANDONED
        try:
            done, spooled, cause = await self._persist(records, posts)
            for record in done:
                kept[record.id] = self.first.keep(record)
                # a waiting request's answer says the record waits in the spool, as this one's
                outcomes[record.id].set_result(
                    kept[record.id].model_copy(update={"degraded": True})
                    if spooled
                    else kept[record.id]
                )
        finally:
            for record in records:
                del self._keeping[(record.id, record.model_version)]
                if not outcomes[record.id].done():  # not kept, or this request failed
                    outcomes[record.id].set_result(NotKept(record.id, cause))
        return kept, spooled, cause

    def _explain_later(self, posts: dict[str, Post], records: list[ScoreRecord]) -> None:
        """Find the evidence of stored ``records`` in the background, then store it."""
        if not records or not self.scorer.evidence:
            return
        if self._waiting_evidence + len(records) > self.max_waiting_evidence:
            self.metrics.evidence_skipped.inc(len(records))
            log.warning("evidence backlog full: records stay evidence_pending")
            return
        self._backlog(len(records))
        self._explain_in_background([posts[r.id] for r in records], records)

    def _explain_in_background(self, posts: list[Post], records: list[ScoreRecord]) -> None:
        self._searching.update(map(_stored_key, records))
        job = self._in_background(self._find_evidence(posts, records))
        self._explaining.add(job)
        job.add_done_callback(self._explaining.discard)

    async def _find_evidence(self, posts: list[Post], records: list[ScoreRecord]) -> None:
        try:
            while records:
                done = await self._search(posts, records)
                self._searched(records[:done])
                # past a failure, the rest of the call had no part in it: they go to the next
                # process at once, as the next call's would, not to a sweep a lease later
                posts, records = posts[done:], records[done:]
        finally:
            self._searched(records)

    def _searched(self, records: list[ScoreRecord]) -> None:
        """Done with ``records`` here, as each search ends rather than once their call does:
        out of the backlog, and their claims no longer renewed, so that the one a search failed
        on is a sweep's a lease later however long the rest of its call takes."""
        self._backlog(-len(records))
        for key in map(_stored_key, records):
            self._searching[key] -= 1
            if not self._searching[key]:
                del self._searching[key]

    async def _search(self, posts: list[Post], records: list[ScoreRecord]) -> int:
        """Search ``records`` on the evidence process, store what it found, and count a failure
        against the post it failed on; how many of them it is done with, each once: those
        explained and the one it failed on, which stays ``evidence_pending`` for a sweep."""
        loop = asyncio.get_running_loop()
        blamed: ScoreRecord | None = None
        try:
            explained = await loop.run_in_executor(
                self._explainer, self.evidence_process.explain, posts, records
            )
            done = len(records)
        except EvidenceLostError as exc:
            # those before it keep what was found
            if isinstance(exc, EvidenceHungError):
                self.metrics.evidence_hung.inc()
            explained, blamed = exc.explained, exc.blamed
            # a closed process fails every call after: the rest wait for the next server's sweep
            done = len(records) if self.evidence_process.closed else len(explained) + 1
            log.warning(
                "evidence not found",
                extra={"problem": str(exc), "post_id": records[len(explained)].id},
            )
        if blamed is not None:
            await self._count_failed_search(blamed)
        if explained:
            await self._store_evidence(explained)
        return done

    async def _store_evidence(self, explained: list[ScoreRecord]) -> None:
        try:
            await self.gate.call(self.repository.update_records, explained)
        except StorageError as exc:
            # the records stand, marked evidence_pending; only their spans are missing
            self._lost("evidence not stored", exc)
            return
        for record in explained:
            self.first.replace(record)

    async def _count_failed_search(self, record: ScoreRecord) -> None:
        """Count a search that failed on ``record``'s post; at :attr:`evidence_attempts`, give
        its evidence up (stored without spans, saying so), so that a post that ends or hangs the
        evidence process every time is not every sweep's first for ever."""
        given_up = search_failed(record)
        try:
            if not await self.gate.call(
                self.repository.count_failed_search, record, given_up, self.evidence_attempts
            ):
                return
        except StorageError as exc:
            # uncounted: the record is tried once more than it might have been
            self._lost("evidence search failure not counted", exc)
            return
        self.metrics.evidence_given_up.inc()
        log.warning(
            "evidence given up",
            extra={"post_id": record.id, "attempts": self.evidence_attempts},
        )
        self.first.replace(given_up)

    def _backlog(self, change: int) -> None:
        self._waiting_evidence += change
        self.metrics.evidence(self._waiting_evidence)

    def _queue_later(self, posts: dict[str, Post], records: list[ScoreRecord]) -> None:
        """Put the coordinated batches and bank matches of ``records`` in the review queue, in
        the background (the members come from the window: one Redis call per batch)."""
        if records:
            self._in_background(self._queue([posts[r.id] for r in records], records))

    def _in_background(self, work: Coroutine[Any, Any, None]) -> asyncio.Future[None]:
        """Run ``work`` after the answer; :meth:`settle` waits for it, :meth:`close` too
        unless it finds evidence."""
        job = asyncio.ensure_future(work)
        self._later.add(job)
        job.add_done_callback(self._later.discard)
        return job

    async def _queue(self, posts: list[Post], records: list[ScoreRecord]) -> None:
        loop = asyncio.get_running_loop()
        found = await loop.run_in_executor(self._io, self.scorer.review_requests, posts, records)
        if not found:
            return
        try:
            await self.gate.call(self.repository.enqueue_requests, self.policy, found)
        except StorageError as exc:
            # as the records they follow: nothing else queues a batch that ended in the outage,
            # nor the bank match of a post whose record the policy does not keep
            try:
                await loop.run_in_executor(self._io, self.spool.append, found)
            except OSError as failed:
                # the answer is out: the operator's to know, from the log
                log.error(
                    "review items not kept",
                    extra={
                        "problem": f"{len(found)} review items neither queued ({exc}) nor "
                        f"spooled in {self.spool.folder} ({failed})"
                    },
                )

    def _record_copies_later(self, copies: list[RumorCopy]) -> None:
        """Record the bank matches among the new records, flagged or not, in the background."""
        if copies:
            self._in_background(self._record_copies(copies))

    async def _record_copies(self, copies: list[RumorCopy]) -> None:
        try:
            await self.gate.call(self.repository.record_rumor_copies, copies)
        except StorageError as exc:
            # not spooled: these stay listed while the window holds them, and later copies
            # still record once storage answers
            self._lost("rumour copies not recorded", exc, copies=len(copies))

    def _lost(self, loss: str, error: StorageError, **counts: int) -> None:
        """Log ``loss``, work after an answer that storage did not take: once an outage
        (:meth:`~service.gate.StorageHealth.first`), whose start is logged already."""
        if self.health.first(loss):
            log.warning(
                loss,
                extra={
                    "problem": str(error),
                    "until_storage_answers": "not logged again",
                    **counts,
                },
            )

    async def settle(self) -> None:
        """Wait until the evidence and review items of every record answered so far are
        stored."""
        while self._later:
            await asyncio.gather(*self._later)

    async def _persist(
        self, records: list[ScoreRecord], posts: dict[str, Post]
    ) -> tuple[list[ScoreRecord], bool, str]:
        """Store ``records``; the records kept (stored: another process may have stored a post
        first, and its record is the one; or spooled, when storage failed), whether they had
        to be spooled, and why none were kept (:class:`NotKept`'s cause) when none were, as
        they could be neither stored nor spooled (the spool takes all or none)."""
        policy = self.policy
        # a post blocked for its account's disposition alone is stored (the record of what was
        # refused) but queued as its text alone would be: that holds what a reviewer judges
        items = [
            Pending(
                r,
                enqueue=text_decision(r) in policy.enqueue,
                text=posts[r.id].text,
                post=posts[r.id],
            )
            for r in records
        ]
        if not items:
            return [], False, ABANDONED
        # before the storage attempt, which may wait out its deadline: the spool writes a post
        # scored by two processes first as the one that first tried storage
        scored_at = stamp()
        try:
            stored = await self.gate.call(self.repository.save_records, items, policy)
        except StorageError as exc:
            try:
                await asyncio.get_running_loop().run_in_executor(
                    self._io, self.spool.append, items, scored_at
                )
            except OSError as failed:
                # the paths and errors are the operator's: the callers get NOT_KEPT's words
                log.error(
                    "records not kept",
                    extra={
                        "problem": f"{len(items)} records neither stored ({exc}) nor spooled "
                        f"in {self.spool.folder} ({failed})"
                    },
                )
                return [], False, FULL if no_room(failed) else UNWRITABLE
            self.metrics.spooled.inc(len(items))
            return records, True, ABANDONED
        return stored, False, ABANDONED

    def recover(self) -> int:
        """Check storage and write the spool out; the number of spooled lines written.

        Blocking; called periodically off the loop, on a thread of its own. It has no deadline
        (a drain of many records takes what it takes) and is not the gate's to skip: it is what
        tries storage again. Raises nothing: a failure is recorded in :attr:`health` and the
        spool waits for the next try.
        """
        try:
            self.repository.ping()
            policy = self.policy
            if not self._policy_kept:
                # once per process: a new version comes with a new process
                self.repository.keep_policy(policy)
                self._policy_kept = True
            written = self.spool.drain(
                lambda items: self.repository.save_records(items, policy),
                self.repository.ping,
                lambda requests: self.repository.enqueue_requests(policy, requests),
            )
            self.accounts = self.repository.account_standings(
                policy.stricter_levels, policy.publishing_stops
            )
        except StorageError as exc:
            self.health.failed(str(exc))
            return 0
        except OSError as exc:
            # the spool's folder (a full disk where a refused record is set aside): storage may
            # be fine, and the next try may find room
            log.error("the spool could not be written out", extra={"problem": str(exc)})
            return 0
        self.health.ok()
        return written

    async def sweep_evidence(self) -> int:
        """Claim stored records of this model left ``evidence_pending`` (by a full backlog, a
        storage failure, a process that stopped) and find their evidence in the background;
        the number claimed. The sweep fills only the lower half of the evidence backlog, so that
        the records being answered now keep room for theirs.

        First it renews, for ``evidence_lease_s``, the claims of the records whose evidence is
        being found here, the sweep's and the publish path's: their search may wait far longer
        than a lease (for an idle core, on a busy host), and a claim run out meanwhile had the
        next sweep, this process's or another's, claim and search them again. A claim lapses
        only once its process stops renewing it, a lease after its last sweep; one of these
        records claimed anyway (a lease shorter than the time between sweeps) is not searched
        again here, nor counted."""
        try:
            if self._searching:
                await self.gate.call(
                    self.repository.renew_evidence_claims,
                    list(self._searching),
                    self.evidence_lease_s,
                )
            room = self.max_waiting_evidence // 2 - self._waiting_evidence
            if room <= 0 or not self.scorer.evidence:
                return 0
            claimed = await self.gate.call(
                self.repository.claim_pending_evidence,
                self.model_version,
                room,
                self.evidence_lease_s,
            )
        except StorageError:
            return 0
        claimed = [(p, r) for p, r in claimed if _stored_key(r) not in self._searching]
        if claimed:
            self._backlog(len(claimed))
            self.metrics.evidence_swept.inc(len(claimed))
            posts, records = zip(*claimed, strict=True)
            self._explain_in_background(list(posts), list(records))
        return len(claimed)

    async def _upkeep_sweep(
        self, work: Callable[..., int], *args: Any, failed: str, on: Executor | None = None
    ) -> int:
        """``work(*args)`` on the maintenance thread (or ``on``, a thread of its own): not the
        storage gate's, whose deadline is the publish path's, nor under its health, which a
        failure here would wrongly mark down, as a lost race with another process is no
        outage. 0 while storage is known to be down, or when it fails (logged as ``failed``):
        the next sweep finds the same work left. A sweep that went past accounts it could not
        write (:meth:`_went_past`) answers what it did for the others."""
        if self.health.problem is not None:
            return 0
        try:
            done: int = await asyncio.get_running_loop().run_in_executor(
                on or self._upkeep, work, *args
            )
        except SweepIncompleteError as exc:
            return self._went_past(exc)
        except StorageError as exc:
            log.warning(failed, extra={"problem": str(exc)})
            return 0
        return done

    def _went_past(self, incomplete: SweepIncompleteError) -> int:
        """What ``incomplete``'s sweep did; its accounts that failed (each logged by the sweep,
        and tried again by its next run) counted in ``qinglang_sweep_failures_total``."""
        self.metrics.sweep_failures.labels(incomplete.sweep).inc(len(incomplete.failed))
        return incomplete.done

    async def settle_deadlines(self) -> int:
        """Settle the art8 suspensions that have ended (the repository's
        :meth:`~service.storage.repository.Repository.settle_deadlines`: an uncorrected name
        terminates the service); how many accounts were terminated."""
        terminated = await self._upkeep_sweep(
            self.repository.settle_deadlines, self.policy, failed="art8 deadlines not settled"
        )
        if terminated:
            log.info("service terminated at art8 deadlines", extra={"accounts": terminated})
        return terminated

    async def record_use(self) -> int:
        """Write the use the publish path saw since the last call (:attr:`usage`) to the
        accounts' dormancy clocks, with the day's use of the accounts warned or found dormant
        since by any process (:meth:`~service.usage.RecentUse.watch`), whose posts the day's
        grain left unwritten; how many dormancies it ended. Use not written (storage down, or
        failing), and that of an account whose warning or dormancy could not be ended
        (:meth:`_went_past`), waits for the next call."""
        if self.health.problem is not None:
            return 0
        loop = asyncio.get_running_loop()
        try:
            clocks, self._dormancies_read = await loop.run_in_executor(
                self._upkeep, self.repository.dormancies_after, self._dormancies_read
            )
            self.usage.watch(clocks)
        except StorageError as exc:
            log.warning("dormancies not read", extra={"problem": str(exc)})
        used = self.usage.take()
        if not used:
            return 0
        try:
            return await loop.run_in_executor(
                self._upkeep, self.repository.record_use, self.policy, used
            )
        except SweepIncompleteError as exc:
            self.usage.give_back({account: used[account] for account in exc.failed})
            return self._went_past(exc)
        except StorageError as exc:
            self.usage.give_back(used)
            log.warning("account use not recorded", extra={"problem": str(exc)})
            return 0

    async def settle_dormancy(self) -> int:
        """Warn of the dormancy of the accounts unused for the policy's ``dormancy.after_days``
        less its ``warn_days``, then find those whose dormancy has taken effect and apply its
        ``[dormancy]`` (the repository's
        :meth:`~service.storage.repository.Repository.warn_dormancy` and
        :meth:`~service.storage.repository.Repository.settle_dormancy`); how many were found."""
        warned = await self._upkeep_sweep(
            self.repository.warn_dormancy, self.policy, failed="dormancy warnings not given"
        )
        if warned:
            log.info("accounts warned of dormancy", extra={"accounts": warned})
        found = await self._upkeep_sweep(
            self.repository.settle_dormancy, self.policy, failed="dormancy not settled"
        )
        if found:
            log.info("accounts found dormant", extra={"accounts": found})
        return found

    async def finish_charges(self) -> int:
        """Finish the charges of the registration batches whose confirmation has members left to
        charge (the repository's
        :meth:`~service.storage.repository.Repository.finish_charges`), on the charges' thread:
        one the review API and the console answered before charging them, one whose process
        stopped midway; how many members it went through."""
        went = await self._upkeep_sweep(
            self.repository.finish_charges,
            self.policy,
            None,
            self._stopping,
            failed="batch charges not finished",
            on=self._charges,
        )
        if went:
            log.info("batch charges finished", extra={"accounts": went})
        return went

    def finish_charges_soon(self) -> None:
        """Have :meth:`finish_charges` run now, in the background, not at the maintenance's
        next period: a confirmation was answered with members left to charge. Asked while a
        run is under way, it runs again after it (that run may have read the confirmations
        left before this one committed); asked again before then, once. Asked once
        :meth:`close` has begun, nothing: the members are the next start's sweep."""
        if self._stopping.is_set():
            return
        self._charges_asked = True
        if self._charging is None or self._charging.done():
            self._charging = asyncio.ensure_future(self._finish_charges_while_asked())

    def charges_hand_off(self) -> Callable[[], None]:
        """:meth:`finish_charges_soon` on this loop, to be called from any thread: the
        repository's ``decide`` calls it (its ``charge_later``) on the thread that committed a
        confirmation with members left, so that the charges start at once whatever became of
        the request that asked for it (cancelled, or given up at its deadline, as it
        committed). Made on the loop."""
        loop = asyncio.get_running_loop()

        def hand_off() -> None:
            # a loop closed since: the server stopped, and the members are the next start's
            # sweep
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self.finish_charges_soon)

        return hand_off

    async def _finish_charges_while_asked(self) -> None:
        while self._charges_asked:
            self._charges_asked = False
            try:
                await self.finish_charges()
            except Exception:
                # as the maintenance's: a failure nobody foresaw ends this run, not the asks
                # made while it ran, nor its report (no one awaits this task)
                log.exception("batch charges failed; asked again, they run again")

    async def prune_idempotency_keys(self) -> int:
        """Delete the answers of writes made with an ``Idempotency-Key`` older than
        :attr:`idempotency_keep` (the repository's
        :meth:`~service.storage.repository.Repository.prune_idempotency_keys`); how many."""
        pruned = await self._upkeep_sweep(
            self.repository.prune_idempotency_keys,
            datetime.now(UTC) - self.idempotency_keep,
            failed="idempotency keys not pruned",
        )
        if pruned:
            log.info("idempotency keys pruned", extra={"keys": pruned})
        return pruned

    async def maintain(self, every_s: float) -> None:
        """Run :meth:`recover`, :meth:`sweep_evidence`, :meth:`settle_deadlines`,
        :meth:`record_use`, :meth:`settle_dormancy` and :meth:`prune_idempotency_keys` every
        ``every_s`` seconds, until cancelled, and ask for :meth:`finish_charges`
        (:meth:`finish_charges_soon`), which it does not wait for: a batch's charges may take
        minutes."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                await loop.run_in_executor(self._upkeep, self.recover)
                await self.sweep_evidence()
                await self.settle_deadlines()
                # the use first: an account that posted is not then found dormant
                await self.record_use()
                await self.settle_dormancy()
                self.finish_charges_soon()
                await self.prune_idempotency_keys()
            except Exception:
                # a failure nobody foresaw must not end the loop: the spool would never be
                # written out again, nor storage retried
                log.exception("maintenance failed; trying again in %s s", every_s)
            await asyncio.sleep(every_s)

    async def close(self, until: float) -> None:
        """Stop; evidence not found yet is dropped (its records stay ``evidence_pending``),
        so that stopping never waits for a backlog, nor for the search under way. Storage calls
        under way (a maintenance sweep, a write given up at its deadline) are waited for until
        ``until`` (a :func:`time.monotonic` time), so that none outlives the repository. A
        second close finds it closed: an app whose lifespan ran twice (an ASGI client of its
        own, as the schema tests' runs it) closes it from each, on loops of their own."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        await self.batcher.close()
        self._explainer.shutdown(wait=False, cancel_futures=True)
        for job in self._explaining:
            job.cancel()
        await asyncio.gather(*self._later, return_exceptions=True)
        if self._charging is not None:
            # the run under way is waited for below, until ``until``, with the other storage
            # calls
            self._charging.cancel()
            await asyncio.gather(self._charging, return_exceptions=True)
        self.evidence_process.close()
        self._io.shutdown(wait=True)
        # a drain or a storage call stuck on a database that stopped answering is not waited
        # for past ``until``, here or at exit: its records are in the spool, and a drain stopped
        # midway stores each once when the next process drains it
        self._upkeep.shutdown(wait=False, cancel_futures=True)
        self._charges.shutdown(wait=False, cancel_futures=True)
        self.gate.close(until)
        self._upkeep.join(until)
        self._charges.join(until)
        self.spool.close()
        self.metrics.close()
