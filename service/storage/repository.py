"""What the service needs of storage, free of any database detail."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from threading import Event
from types import EllipsisType
from typing import Any, Literal, Protocol, TypeVar

from service.policy import Policy
from service.record import Decision, Post, ScoreRecord
from service.review import chain, views
from service.review.appeals import AppealAction, AppealStatus
from service.review.credit import HISTORY_PAGE, HistoryOrder, HistoryPlace
from service.review.dispositions import ACTIVE_PAGE, Standing
from service.review.engagement import Counts
from service.review.items import Action, Category, Kind, QueueRequest, Shown, Violation
from service.review.protected import ProtectedKind

Role = Literal["publisher", "reviewer", "admin"]
D = TypeVar("D")
READS_ONLY = "storage_reads_only"
"""The attribute :func:`reads_only` sets."""


def reads_only(defined: D) -> D:
    """Marks a storage method, or a class whose methods all are, as writing nothing: a call of
    it given up at the deadline leaves nothing to land (:class:`service.gate.Deadlined`), so its
    request is told that storage did not answer, not that a change may still be made."""
    setattr(defined, READS_ONLY, True)
    return defined


def writes_nothing(kind: type, method: str) -> bool:
    """Whether ``kind``'s ``method`` is marked by :func:`reads_only` (or ``kind`` is): read from
    the class, so that a method replaced on an instance keeps what its definition says."""
    return getattr(kind, READS_ONLY, False) or getattr(
        getattr(kind, method, None), READS_ONLY, False
    )


class StorageError(Exception):
    """Storage could not be reached or did not answer in time; the caller degrades."""


class StorageUnavailableError(StorageError):
    """Storage did not do the call now (unreachable, locked, timed out, read-only, full), where
    a later try may, unlike a refusal of the data (a constraint, a value a column cannot hold),
    which fails every try."""


class StorageUnansweredError(StorageUnavailableError):
    """A call whose outcome storage did not tell, so that what it writes may land, or have
    landed: given up at the deadline after it had started (it goes on in its thread,
    :class:`service.gate.StorageGate`), or its connection lost while the database committed
    it."""


class SweepIncompleteError(StorageError):
    """A sweep over accounts, each written in a transaction of its own, could not write some of
    them other than by an outage (a row the rules cannot take, a value the code cannot handle, a
    bug), and went on past them, so that one account failing every time holds back none after
    it: ``done`` is what the sweep did for the others (what it returns when nothing fails), and
    ``failed`` says why each failed, by account id (each logged as it failed). The next run tries
    them again. An outage (:class:`StorageUnavailableError`) stops a sweep at once instead: it
    would fail every account after it too."""

    def __init__(self, sweep: str, done: int, failed: Mapping[str, str]) -> None:
        self.sweep = sweep
        self.done = done
        self.failed = dict(failed)
        first, problem = next(iter(self.failed.items()))
        super().__init__(
            f"{sweep}: {len(self.failed)} accounts not written (the first, {first}: {problem})"
        )


@dataclass(frozen=True)
class ApiKey:
    """A stored API key: never the key itself, only its id and the digest of its secret."""

    key_id: str
    digest: str
    role: Role
    created_at: datetime
    revoked: bool = False
    owner: str | None = None
    """The console user the key belongs to (``keys create --user``): what the review records
    name as its actor, so that one person is one actor in the console and through the API.
    None for a key of nobody's (a platform's, or one created before ``0032_key_owners``)."""


@dataclass(frozen=True)
class ConsoleAccount:
    """A stored console user: the password only as its argon2id digest. A disabled user keeps
    the row, so that the name stays taken: decisions and audit records name their reviewer."""

    name: str
    digest: str
    role: Role
    created_at: datetime
    disabled: bool = False
    session_epoch: int = 0
    """Raised by each sign-out: sessions signed in under an earlier one have ended."""


@dataclass(frozen=True)
class QueueItem:
    """A flagged record waiting for review (the workflow on it: :mod:`service.review`)."""

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
    """Who added it, as :attr:`service.review.views.Rumor.created_by` says."""

    def view(self) -> views.Rumor:
        """The entry as the API shows it, and as a write with a key stores it."""
        return views.Rumor(
            id=self.rumor_id,
            text=self.text,
            post_id=self.post_id,
            notice=self.notice,
            created_at=self.created_at,
            created_by=self.created_by,
        )


@dataclass(frozen=True)
class RumorCopy:
    """A post found to be a copy of a banked rumour (art13: tracing a rumour to its source):
    recorded when it is scored, so that the copy stays listed after the near-duplicate window
    forgets it, and whether or not the match flagged it."""

    rumor_id: str
    post_id: str
    account_id: str | None
    created_at: float
    """The post's time as the near-duplicate step used it (unix seconds)."""
    similarity: float
    model_version: str


@dataclass(frozen=True)
class SignInAttempts:
    """A sign-in attempt just stored, and the times (unix seconds) of the other attempts still
    in the window: those under the same user name, and those from the same client address."""

    attempt_id: int
    by_name: list[float]
    by_address: list[float]


@dataclass(frozen=True)
class Pending:
    """A record to store, and whether the policy puts it in the review queue."""

    record: ScoreRecord
    enqueue: bool
    text: str | None = None
    """The post's text, kept with its review item so that decisions become training labels."""
    post: Post | None = None
    """The post itself, kept so that ``qinglang rescore --from-db`` can score it again."""


@dataclass(frozen=True)
class RescoreRun:
    """A finished re-score of stored posts: the period (unix seconds) and what scored it."""

    since: float | None
    until: float | None
    model_version: str
    policy_version: str
    posts: int
    output: str


class Repository(Protocol):
    """Every method raises :class:`StorageError` when storage is unreachable or too slow."""

    def ping(self) -> None:
        """Return when storage answers a query (bringing its schema to this release's first,
        where it is short of it)."""

    def check(self) -> None:
        """Return when storage answers a query with this release's schema; changes nothing
        (:class:`StorageUnavailableError` where the schema is short of it: :meth:`ping` migrates
        it)."""

    def find_records(
        self, post_ids: Sequence[str], model_version: str, policy_version: str
    ) -> dict[str, ScoreRecord]:
        """The stored records of ``post_ids`` scored by ``model_version``, by post id: of a post
        stored under several policies, its record under ``policy_version`` where it has one,
        else its earliest record."""

    def save_records(
        self, items: Sequence[Pending], policy: Policy | None = None
    ) -> list[ScoreRecord]:
        """Store each record (and its review-queue item when asked) in one transaction, unless
        a record of the same post, model version and policy version is stored already; return
        the stored records in order, so that saving a record twice (a spool replayed after a
        crash, two processes scoring one post, a second re-score) stores it once and both
        callers get the first. A record under another policy stays beside it. With ``policy``
        (the publish path's), a post stored here for the first time whose engagement counts
        were reported for another account takes them, and their findings leave that account's
        ``engagement`` item (withdrawn once it lists none), weighed again for the post's own;
        without it, the post's owner moves them at its next report."""

    def update_records(self, records: Sequence[ScoreRecord]) -> None:
        """Replace the stored records of the same post, model version and policy version (the
        evidence the publish path adds after answering); a record that is not stored is left
        out."""

    def count_failed_search(
        self, record: ScoreRecord, given_up: ScoreRecord, attempts: int
    ) -> bool:
        """Count an evidence search that failed on the post of the stored ``record`` (same post,
        model version and policy version); at the ``attempts``-th, store ``given_up`` in its place
        (no longer ``evidence_pending``), in the same transaction. Whether it was given up now: a
        record not stored, or no longer pending, is left as it is."""

    def claim_pending_evidence(
        self, model_version: str, limit: int, lease_s: float, now: datetime | None = None
    ) -> list[tuple[Post, ScoreRecord]]:
        """Up to ``limit`` stored records of ``model_version`` still ``evidence_pending``, with
        their posts, oldest first, each claimed for ``lease_s`` seconds: no other claim takes it
        until then, nor until :meth:`update_records` stores its evidence. A record younger than
        ``lease_s`` is left to the process that stored it; a record whose post was not stored
        is never claimed."""

    def renew_evidence_claims(
        self, keys: Sequence[tuple[str, str, str]], lease_s: float, now: datetime | None = None
    ) -> None:
        """Claim the stored records of ``keys`` (post id, model version, policy version) still
        ``evidence_pending`` for ``lease_s`` seconds from ``now``, whether claimed before or
        not: the process whose search of them is still waiting keeps other sweeps off them for
        as long as it runs, and for no more than a lease once it stops."""

    def stored_posts(
        self, since: float | None, until: float | None, chunk: int = 5000
    ) -> Iterator[Post]:
        """The stored posts of ``since <= time < until`` in time order (``created_at``, or when
        they were stored), read ``chunk`` at a time in one snapshot: the period as stored when
        the first page was read, none of the posts stored meanwhile."""

    def add_rescore_run(self, run: RescoreRun) -> None: ...

    def keep_policy(self, policy: Policy) -> None:
        """Keep ``policy``'s rules under its version, for the console to show each record
        against the thresholds it was decided with. Rules kept under the version already stay;
        where they are not ``policy``'s (a policy edited without a new version) the log says
        so, since the console shows its records against the first rules."""

    def enqueue_requests(self, policy: Policy, requests: Sequence[QueueRequest]) -> list[int]:
        """Queue each item of another source (a coordinated batch, a bank match) once while it
        is open; the ids of the open items, in order."""

    def add_key(self, key: ApiKey) -> None: ...

    def get_key(self, key_id: str) -> ApiKey | None: ...

    def revoke_key(self, key_id: str) -> ApiKey | None:
        """Mark the key revoked (a second time changes nothing); the key as it was before, None
        when there is no such key."""
        ...

    def list_keys(self) -> list[ApiKey]:
        """Every key, oldest first."""
        ...

    def add_user(self, name: str, digest: str, role: Role) -> None:
        """Store a console user; raises :class:`StorageError` when the name is taken."""

    def get_user(self, name: str) -> ConsoleAccount | None:
        """A console user, disabled or not."""

    def disable_user(self, name: str) -> ConsoleAccount | None:
        """Disable a console user (a second time changes nothing); the user as it was before,
        None when there is no such user."""
        ...

    def list_users(self) -> list[ConsoleAccount]:
        """Every console user, oldest first."""
        ...

    def end_sessions(self, name: str, epoch: int) -> None:
        """Raise the user's session epoch from ``epoch``, which ends every session it signed in
        to so far; nothing when it is another already (a session that ended ends no others,
        even with its cookie's CSRF token) or there is no such user."""

    def add_sign_in_attempt(
        self, name_digest: str, address: str, at: float, window_s: float
    ) -> SignInAttempts:
        """Store an attempt to sign in under the typed name whose digest is ``name_digest``
        (:meth:`~service.security.SignInLimits.name_digest`) from ``address`` and commit it before
        counting, so that of two concurrent attempts in any processes the later count sees
        both; delete attempts older than ``window_s``."""

    def drop_sign_in_attempt(self, attempt_id: int) -> None:
        """Forget an attempt that was refused before its password was checked."""

    def clear_sign_in_attempts(self, name_digest: str) -> None:
        """Forget every attempt under the name of ``name_digest`` (it signed in)."""

    def queue(self) -> list[QueueItem]:
        """The review queue, oldest first."""

    def add_rumor(
        self,
        entry: Callable[[list[StoredRumor], datetime], StoredRumor],
        *,
        idem: Idempotency | None = None,
    ) -> views.Rumor:
        """Bank the rumour ``entry`` makes of the bank as stored and the moment, with an audit
        record ``rumor.banked``, in one transaction with the read (what ``entry`` raises
        refuses it) and with the answer a retry with ``idem`` gets, before anything is read."""

    def rumors(self) -> list[StoredRumor]:
        """The confirmed-rumour bank, oldest first."""

    def delete_rumor(
        self, rumor_id: str, by: str, *, idem: Idempotency | None = None
    ) -> views.Rumor:
        """Remove an entry and its recorded copies, with an audit record ``rumor.unbanked``
        naming ``by`` and the copies, answering the entry as it was (the answer a retry with
        ``idem`` gets); :class:`~service.review.items.NotFoundError` if absent."""

    def record_rumor_copies(self, copies: Sequence[RumorCopy]) -> int:
        """Record each copy once per rumour and post (a copy recorded again, by a re-score or
        another process, is left as first recorded); how many were new."""

    def rumor_copies(
        self, rumor_id: str, *, after: tuple[float, str] | None = None, limit: int = 1000
    ) -> list[RumorCopy]:
        """The recorded copies of ``rumor_id``, earliest first (by time, then post id),
        ``limit`` at a time after the (time, post id) ``after``."""

    def account_standings(
        self, levels: list[str], stops: list[str], now: datetime | None = None
    ) -> dict[str, Standing]:
        """Accounts at any of ``levels`` or with a disposition of a kind in ``stops`` active at
        ``now``, with their level and those dispositions (oldest first), by account id."""

    def settle_deadlines(self, policy: Policy, now: datetime | None = None) -> int:
        """Settle, once whatever the processes calling it, every art8 suspension that ended by
        ``now`` unlifted: a name still uncorrected terminates the service. How many accounts
        were terminated. It, :meth:`record_use`, :meth:`warn_dormancy`,
        :meth:`settle_dormancy` and ``restore_credit`` write each account in a transaction of
        its own, and raise :class:`SweepIncompleteError` where they went past some they could
        not write."""

    def record_use(
        self, policy: Policy, used: Mapping[str, datetime], now: datetime | None = None
    ) -> int:
        """Move each account's dormancy clock to when ``used`` says it posted, where that is
        later (an account without a row gets one, its clock there), and end, at ``now``, the
        warning or dormancy of those warned or found dormant (art10). How many dormancies
        ended."""

    def warn_dormancy(self, policy: Policy, now: datetime | None = None) -> int:
        """Warn, once per clock whatever the processes calling it, of the dormancy of the
        accounts unused for the policy's ``dormancy.after_days`` less its ``warn_days`` by
        ``now``. How many were warned."""

    def settle_dormancy(self, policy: Policy, now: datetime | None = None) -> int:
        """Find, once whatever the processes calling it, the accounts unused for the policy's
        ``dormancy.after_days`` by ``now`` (and warned ``warn_days`` before, where it gives
        warnings), and apply its ``[dormancy]``. How many were found dormant."""

    def finish_charges(
        self, policy: Policy, now: datetime | None = None, stopping: Event | None = None
    ) -> int:
        """Charge, once whatever the processes calling it, the members of the registration
        batches (art10) whose confirmation's process stopped before it had charged them all,
        a bounded chunk a transaction, none begun once ``stopping`` is set. How many members
        it went through."""

    def dormancies_after(self, after: int | None) -> tuple[dict[str, datetime], int]:
        """The accounts warned or found dormant since the audit chain's record ``after`` (None:
        none, where nothing was read before), each with the clock it was on, and the record to
        read after next time."""

    def prune_idempotency_keys(self, before: datetime) -> int:
        """Delete, once whatever the processes calling it, the answers of writes made with an
        ``Idempotency-Key`` stored before ``before``. How many were deleted."""


class IdempotencyMismatchError(Exception):
    """An idempotency key used again with a different request (HTTP 422)."""


@dataclass(frozen=True)
class Idempotency:
    """A client's ``Idempotency-Key``: per caller, and tied to the request it came with."""

    caller: str
    key: str
    fingerprint: str

    @classmethod
    def of(cls, caller: str, key: str | None, route: str, body: object) -> Idempotency | None:
        if key is None:
            return None
        raw = json.dumps([route, body], sort_keys=True, default=str).encode()
        return cls(caller, key, hashlib.sha256(raw).hexdigest())


class ReviewRepository(Protocol):
    """The review workflow's storage. Each write is one transaction that applies the rules of
    :mod:`service.review` with ``policy`` and appends its hash-chained records; ``now`` defaults
    to the clock. Raises :class:`~service.review.items.NotFoundError`,
    :class:`~service.review.items.ConflictError` or :class:`~service.review.items.ForbiddenError`
    when the rules refuse, :class:`IdempotencyMismatchError` for a key reused with another
    request, :class:`StorageError` when storage fails."""

    def list_items(
        self,
        policy: Policy,
        *,
        status: str = "open",
        head: str | None = None,
        assignee: str | None = None,
        kind: str | None = None,
        free_for: str | None = None,
        role: Role = "reviewer",
        cursor: tuple[float, int] | None = None,
        limit: int | None = None,
        now: datetime | None = None,
    ) -> views.ItemPage:
        """Items by priority, highest first, ``limit`` at a time after ``cursor``; with
        ``free_for``, only those that reviewer, of ``role``, may take now."""

    def get_item(self, policy: Policy, item_id: int, now: datetime | None = None) -> views.Item: ...

    def claim(
        self,
        policy: Policy,
        item_id: int,
        reviewer: str,
        now: datetime | None = None,
        *,
        role: Role = "reviewer",
    ) -> views.Lease:
        """Keep the item to ``reviewer`` for the policy's lease; an escalated item only to a
        role it goes to (:data:`~service.review.items.ESCALATED_TO`)."""
        ...

    def decide(
        self,
        policy: Policy,
        item_id: int,
        reviewer: str,
        action: Action,
        category: Category | None,
        basis: str | None,
        note: str | None = None,
        *,
        role: Role = "reviewer",
        shown: Shown | None = None,
        idem: Idempotency | None = None,
        now: datetime | None = None,
        charge_later: Callable[[], None] | None = None,
    ) -> views.Decision: ...

    def put_account(
        self,
        policy: Policy,
        account_id: str,
        *,
        name: str | EllipsisType | None = ...,
        subject_id: str | None = None,
        followers: int | None = None,
        login_at: datetime | None = None,
        by: str | None = None,
        idem: Idempotency | None = None,
        now: datetime | None = None,
    ) -> views.Account:
        """Set the profile fields given; ``...`` (name) or ``None`` (subject, followers, login)
        keeps the stored value. A name or subject that corrects an account under art8's
        suspension lifts it, and a login (use, art10) ends a dormancy, ``by`` whom."""
        ...

    def put_engagement(
        self,
        policy: Policy,
        post_id: str,
        account_id: str,
        counts: Counts,
        *,
        idem: Idempotency | None = None,
        now: datetime | None = None,
    ) -> views.Engagement:
        """Store the post's engagement counts (None keeps a stored one) and open or join the
        account's ``engagement`` item for what they show abnormal (art12); a post another
        account's is refused (ConflictError)."""

    def get_engagement(self, post_id: str) -> views.EngagementCounts:
        """The post's counts as last reported; NotFoundError for a post without any (one the
        service never kept, or one it kept whose counts were never reported)."""
        ...

    def get_account(
        self,
        policy: Policy,
        account_id: str,
        cursor: HistoryPlace | None = None,
        limit: int = HISTORY_PAGE,
        order: HistoryOrder = "oldest",
        active_limit: int = ACTIVE_PAGE,
        now: datetime | None = None,
    ) -> views.Account:
        """The account, with its first ``active_limit`` active dispositions and ``limit``
        entries of its history after ``cursor`` in ``order``; one known without a credit
        record is at ``policy``'s initial credit."""
        ...

    def account_dispositions(
        self,
        account_id: str,
        cursor: tuple[float, int] | None = None,
        limit: int = ACTIVE_PAGE,
        now: datetime | None = None,
    ) -> views.DispositionPage:
        """The ``limit`` dispositions active on the account after ``cursor``, in the order
        they were applied; none for one known without a credit record."""
        ...

    def disposition_changes(self, after: int = 0, limit: int = 100) -> views.DispositionFeed:
        """Dispositions applied and lifted after the audit record ``after``, in commit order;
        ValueError for an ``after`` past the chain's last record."""
        ...

    def restore_credit(self, policy: Policy, now: datetime | None = None) -> int:
        """Restore every account due points for clean periods; how many were."""

    def file_report(
        self,
        policy: Policy,
        *,
        post_id: str | None,
        account_id: str | None,
        category: Violation,
        text_: str,
        reporter: str,
        reporter_id: str | None = None,
        idem: Idempotency | None = None,
        now: datetime | None = None,
    ) -> views.Report: ...

    def enqueue(
        self,
        policy: Policy,
        *,
        kind: Kind,
        merge_key: str,
        head: str,
        severity: str,
        reach: int,
        evidence: dict[str, Any],
        post_id: str | None = None,
        account_id: str | None = None,
        model_version: str | None = None,
        text_: str | None = None,
        now: datetime | None = None,
    ) -> views.Item:
        """Queue an item of another source (a cluster, a bank match) once while it is open."""

    def get_report(
        self, policy: Policy, report_id: int, now: datetime | None = None
    ) -> views.Report: ...

    def file_appeal(
        self,
        policy: Policy,
        *,
        account_id: str,
        item_id: int,
        reason: str,
        filed_by: str,
        on_behalf: bool = False,
        idem: Idempotency | None = None,
        now: datetime | None = None,
    ) -> views.Appeal: ...

    def get_appeal(self, appeal_id: int, now: datetime | None = None) -> views.Appeal:
        """The appeal with its status, answer and deadline (art20: the appellant's feedback)."""

    def decide_appeal(
        self,
        policy: Policy,
        appeal_id: int,
        reviewer: str,
        action: AppealAction,
        note: str | None,
        *,
        role: Role = "reviewer",
        idem: Idempotency | None = None,
        now: datetime | None = None,
    ) -> views.Appeal:
        """Uphold or reject an appeal, as ``reviewer`` of ``role``: not the one who decided,
        and an admin where the decision was taken on an escalated item."""
        ...

    def list_appeals(
        self,
        *,
        status: AppealStatus | None = None,
        overdue_only: bool = False,
        cursor: tuple[float, int] | None = None,
        limit: int = 100,
        now: datetime | None = None,
    ) -> views.AppealPage:
        """Appeals by deadline (``status`` only, when given), ``limit`` after ``cursor``."""

    def check_registration(
        self, policy: Policy, name: str, subject_id: str, now: datetime | None = None
    ) -> views.Registration: ...

    def add_protected_name(
        self,
        policy: Policy,
        *,
        name: str,
        kind: ProtectedKind,
        subject_ids: list[str],
        by: str,
        idem: Idempotency | None = None,
        now: datetime | None = None,
    ) -> views.ProtectedNameAdded:
        """Protect ``name`` (art8) for ``subject_ids``, and send the accounts whose names hold
        it to review; :class:`~service.review.protected.EntryNameError` for a name that folds
        too short or too long."""
        ...

    def protected_names(self) -> list[views.ProtectedName]: ...

    def remove_protected_name(
        self,
        policy: Policy,
        entry_id: int,
        by: str,
        *,
        idem: Idempotency | None = None,
        now: datetime | None = None,
    ) -> views.ProtectedName:
        """Remove the entry; the entry as it was."""
        ...

    def audit_entries(
        self,
        start: datetime | None = None,
        end: datetime | None = None,
        chunk: int = 5000,
        through: int | None = None,
    ) -> Iterator[chain.Entry]: ...

    def audit_head(self) -> tuple[int, str]: ...

    def stored_texts(
        self, text: chain.Text, keys: Sequence[str]
    ) -> dict[str, tuple[str, str | None]]: ...

    def unrecorded_texts(self, text: chain.Text) -> Iterator[tuple[str, str]]: ...

    def labels(self) -> Iterator[dict[str, Any]]: ...

    def batch_decisions(self) -> int: ...
