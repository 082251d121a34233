"""The review machinery's storage over SQLAlchemy: each write is one transaction that runs the
rules of :mod:`service.review` and appends its hash-chained records, so a write is stored whole
or not at all. Here the transactions and the queue (its items, their claims and decisions); the
other stores mix this in (accounts and the re-registration check in
:mod:`~service.storage.accounts_sql`, reports and appeals in :mod:`~service.storage.reports_sql`,
the records and labels in :mod:`~service.storage.audit_sql`, protected names, engagement,
dormancy), sharing the steps of :mod:`~service.storage.item_steps`,
:mod:`~service.storage.credit_steps` and :mod:`~service.storage.protected_steps`, run in a
:mod:`~service.storage.transaction`.

Writers that race lock rows in one order: the item (or appeal), then the account, then the
chain's head last, each ``FOR NO KEY UPDATE`` (:func:`~service.storage.transaction.locking`), so
that the check of a row inserted referring to one (``FOR KEY SHARE``), which comes in whatever
order the rows are inserted, waits for none of them. On SQLite every write transaction begins
``IMMEDIATE`` (one writer at a time, taken before the first read, so that no transaction has to
upgrade its lock and fail).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from threading import Event
from typing import Any, Concatenate, ParamSpec, TypeVar, cast

from pydantic import BaseModel
from sqlalchemy import Engine, and_, exists, or_, select, text
from sqlalchemy.orm import Session

from service.policy import Policy
from service.review import dormancy, items, registration, signups, views
from service.review.items import EARLIER, Action, Category, NotFoundError, Violation
from service.review.signups import SIGNUP_BATCHES
from service.storage.credit_steps import (
    accounts_of,
    apply_dormancy,
    locked_account,
    unlisted_members,
    violation,
    violator,
)
from service.storage.item_steps import (
    charge_members,
    charged_already,
    confirmed_item,
    earlier_decision,
    held_item,
    item_to_join,
    last_decided,
    new_item,
    open_item,
    record_decision,
    signup_batches,
    urgency_of,
)
from service.storage.repository import (
    Idempotency,
    IdempotencyMismatchError,
    Role,
    StorageError,
    StorageUnavailableError,
    SweepIncompleteError,
)
from service.storage.review_rows import item_view
from service.storage.tables import IdempotentWrite, ReviewDecision, ReviewItem, StoredRecord
from service.storage.transaction import (
    Tx,
    append_records,
    as_of_first_read,
    lock_key,
    lost_race,
)
from service.subject_key import installed as installed_subject_key

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")
P = ParamSpec("P")
RETRIES = 5

log = logging.getLogger(__name__)


@dataclass
class Sweep:
    """One run of a sweep over accounts (:meth:`ReviewSql._swept`): the accounts it could not
    write, by id, with why."""

    name: str
    """What the sweep is, as its log lines and the service's metrics name it."""
    of: str = "account"
    """What it writes one at a time, as its log lines name it: an account, or an item whose
    confirmation's charges it finishes."""
    failed: dict[str, str] = field(default_factory=dict)

    def done(self, count: int) -> int:
        """``count``, what the run did; :class:`SweepIncompleteError`, carrying it, where an
        account failed."""
        if self.failed:
            raise SweepIncompleteError(self.name, count, self.failed)
        return count


class ReviewSql:
    """Mixed into :class:`~service.storage.sql.SqlRepository`."""

    engine: Engine
    _subject_key: registration.SubjectKey | None
    _session: Callable[[], AbstractContextManager[Session]]

    @cached_property
    def subjects(self) -> registration.SubjectKey:
        """The key subjects are stored and compared under: the one the repository was given,
        else the settings' (read when first needed: a command that compares no subject reads
        no key, nor draws a key file)."""
        return self._subject_key or installed_subject_key()

    # --- transactions ---------------------------------------------------------------------

    @contextmanager
    def _writing(self) -> Iterator[Session]:
        """A write transaction; on SQLite it takes the write lock before its first read."""
        with self._session() as session:
            if self.engine.dialect.name == "sqlite":
                session.execute(text("BEGIN IMMEDIATE"))
            yield session

    @contextmanager
    def _snapshot(self) -> Iterator[Session]:
        """A read transaction whose statements all see the database as it was at its first
        (:func:`~service.storage.transaction.as_of_first_read`)."""
        with self._session() as session:
            as_of_first_read(session)
            yield session

    @contextmanager
    def _write(self, policy: Policy, now: datetime | None) -> Iterator[Tx]:
        with self._writing() as session:
            tx = Tx(session, now or datetime.now(UTC), policy)
            yield tx
            append_records(session, tx.now, tx.log)

    def _once(
        self,
        policy: Policy,
        now: datetime | None,
        idem: Idempotency | None,
        model: type[M],
        run: Callable[[Tx], M],
    ) -> M:
        """Run ``run`` in a write transaction, once per idempotency key: a retry with the key
        gets the stored answer. Retried on a lost race (unique key, deadlock)."""
        return self._write_retried(
            policy, now, lambda tx: self._keyed(tx.session, tx.now, idem, model, lambda: run(tx))
        )

    def _write_retried(
        self,
        policy: Policy,
        now: datetime | None,
        run: Callable[Concatenate[Tx, P], T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """``run(tx, *args, **kwargs)`` in a write transaction of its own, tried again on a lost
        race (:meth:`_retried`): a request's write, or a sweep's on one account. A sweep that
        stopped at a race would leave the accounts after it to its next run (the server's
        next maintenance, or the next ``qinglang credit restore``), and fail with a storage
        error that is no outage."""

        def write() -> T:
            with self._write(policy, now) as tx:
                return run(tx, *args, **kwargs)

        return self._retried(write)

    def _swept(
        self,
        sweep: Sweep,
        key: str,
        policy: Policy,
        now: datetime | None,
        run: Callable[Concatenate[Tx, P], int],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> int:
        """:meth:`_write_retried` of ``sweep``'s write on ``key`` (an account's id, or the
        item's its :attr:`Sweep.of` names); 0 where it fails other than by an outage (a row the
        rules cannot take, a value the code cannot handle, a bug), logged and kept in
        ``sweep``, so that an account failing every time holds back none after it, every run.
        An outage (:class:`StorageUnavailableError`) ends the sweep: it would fail every
        account after it as well."""
        try:
            return self._write_retried(policy, now, run, *args, **kwargs)
        except StorageUnavailableError:
            raise
        except Exception as exc:
            problem = f"{type(exc).__name__}: {exc}".splitlines()[0]
            sweep.failed[key] = problem
            # once per account and run; where it is not storage's refusal, where the code failed
            log.error(
                "%s: %s %s not written, left to the next run: %s",
                sweep.name,
                sweep.of,
                key,
                problem,
                exc_info=None if isinstance(exc, StorageError) else exc,
                extra={"sweep": sweep.name, sweep.of: key, "problem": problem},
            )
            return 0

    def _keyed(
        self,
        session: Session,
        now: datetime,
        idem: Idempotency | None,
        model: type[M],
        run: Callable[[], M],
    ) -> M:
        """``run()``'s answer, stored under ``idem`` in ``session``'s transaction; the answer
        stored already where a try with the key was made (:class:`IdempotencyMismatchError`
        where it was made with another request), waited for where that try is under way
        (:func:`~service.storage.transaction.lock_key`)."""
        if idem is not None:
            lock_key(session, idem.caller, idem.key)
            stored = session.get(IdempotentWrite, (idem.caller, idem.key))
            if stored is not None:
                if stored.fingerprint != idem.fingerprint:
                    raise IdempotencyMismatchError(
                        "this Idempotency-Key was used with a different request"
                    )
                return model.model_validate(stored.response)
        result = run()
        if idem is not None:
            session.add(
                IdempotentWrite(
                    caller=idem.caller,
                    key=idem.key,
                    fingerprint=idem.fingerprint,
                    response=result.model_dump(mode="json"),
                    created_at=now,
                )
            )
        return result

    @staticmethod
    def _retried(write: Callable[[], T]) -> T:
        """``write()``, tried again on a lost race (unique key, deadlock)."""
        for attempt in range(RETRIES):
            try:
                return write()
            except StorageError as exc:
                if attempt == RETRIES - 1 or not lost_race(exc):
                    raise
        raise AssertionError("unreachable")

    # --- the queue ------------------------------------------------------------------------

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
        """Items by priority (highest first), ``limit`` at a time after ``cursor``; with
        ``free_for``, only those that reviewer, of ``role``, may take now: no other reviewer
        holds a live lease on them, they did not escalate them, and an escalated one only for
        a role it goes to (:data:`~service.review.items.ESCALATED_TO`)."""
        limit = limit or policy.review.page_size
        moment = now or datetime.now(UTC)
        query = select(ReviewItem, StoredRecord.record).outerjoin(
            StoredRecord, StoredRecord.id == ReviewItem.record_id
        )
        query = query.where(ReviewItem.status == status)
        if head is not None:
            query = query.where(ReviewItem.head == head)
        if assignee is not None:
            # a lease that ended holds the item to nobody, as the item itself then shows
            query = query.where(ReviewItem.assignee == assignee, ReviewItem.lease_until > moment)
        if kind is not None:
            query = query.where(ReviewItem.kind == kind)
        if free_for is not None:
            # the complement of what items.check_claim refuses: another's lease, and an
            # escalation by this reviewer (which asks for another's eyes)
            escalated_by = exists().where(
                ReviewDecision.item_id == ReviewItem.id,
                ReviewDecision.action == "escalate",
                ReviewDecision.reviewer == free_for,
            )
            query = query.where(
                or_(
                    ReviewItem.assignee.is_(None),
                    ReviewItem.assignee == free_for,
                    ReviewItem.lease_until.is_(None),
                    ReviewItem.lease_until <= moment,
                ),
                ~escalated_by,
            )
            if role not in items.ESCALATED_TO:
                query = query.where(ReviewItem.status != "escalated")
        if cursor is not None:
            after, last_id = cursor
            query = query.where(
                or_(
                    ReviewItem.urgency < after,
                    and_(ReviewItem.urgency == after, ReviewItem.id < last_id),
                )
            )
        query = query.order_by(ReviewItem.urgency.desc(), ReviewItem.id.desc()).limit(limit + 1)
        with self._session() as session:
            rows = session.execute(query).all()
        page = [item_view(policy, row[0], row[1], moment) for row in rows[:limit]]
        more = len(rows) > limit
        last = rows[limit - 1][0] if more else None
        return views.ItemPage(
            items=page, next=f"{last.urgency!r}_{last.id}" if last is not None else None
        )

    def get_item(self, policy: Policy, item_id: int, now: datetime | None = None) -> views.Item:
        with self._session() as session:
            row = session.execute(
                select(ReviewItem, StoredRecord.record)
                .outerjoin(StoredRecord, StoredRecord.id == ReviewItem.record_id)
                .where(ReviewItem.id == item_id)
            ).first()
        if row is None:
            raise NotFoundError("no_item", item_id=item_id)
        return item_view(policy, row[0], row[1], now or datetime.now(UTC), with_text=True)

    def claim(
        self,
        policy: Policy,
        item_id: int,
        reviewer: str,
        now: datetime | None = None,
        *,
        role: Role = "reviewer",
    ) -> views.Lease:
        """Keep the item to ``reviewer``, of ``role``, for the policy's lease (again, to renew
        it)."""
        with self._write(policy, now) as tx:
            item = held_item(tx, item_id, reviewer, role)
            item.assignee = reviewer
            item.lease_until = items.lease_end(policy.review, tx.now)
            return views.Lease(item_id=item.id, assignee=reviewer, lease_until=item.lease_until)

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
        shown: items.Shown | None = None,
        idem: Idempotency | None = None,
        now: datetime | None = None,
        charge_later: Callable[[], None] | None = None,
    ) -> views.Decision:
        """Decide an item, as ``reviewer`` of ``role``: its status, the decision, and on a
        confirmed violation the account's credit change and dispositions, all in one
        transaction (a registration batch's members past the ones its item lists are charged
        after it, a chunk a transaction: :func:`charge_members`, and where storage fails one
        the decision is answered all the same, ``charges_pending``, the rest left to a retry
        with the key or to :meth:`finish_charges`); refused where the item holds another score
        record than the one the reviewer was ``shown``
        (:func:`~service.review.items.check_shown`). With ``charge_later`` those members are
        left to :meth:`finish_charges`: the answer comes once the decision commits,
        ``charges_pending`` while any are left, and ``charge_later`` is called then, on the
        thread that made the decision (the server's hand-off to its charges' thread,
        :meth:`~service.scoring.ScoringService.charges_hand_off`), whatever became of the
        request meanwhile."""

        def run(tx: Tx) -> views.Decision:
            item = held_item(tx, item_id, reviewer, role)
            items.check_shown(item.id, item.record_id, shown)
            items.check_action(item.status, action)
            if action == "confirm" and category is not None:
                items.check_category(item.kind, category, item.id)
            row = record_decision(tx, item, action, category, basis, note, reviewer)
            changes: list[views.CreditChange] = []
            applied: list[views.Disposition] = []
            uncharged: list[views.Uncharged] = []
            unlisted = 0
            if action == "confirm" and category == dormancy.CATEGORY:
                # the measure the service agreement provides, charged to nobody
                if item.account_id is not None:
                    locked_account(tx, item.account_id)
                    applied = apply_dormancy(tx, item.account_id, item.id, reviewer)
            elif action == "confirm" and category is not None:
                listed = accounts_of(item)
                if not listed:
                    uncharged.append(_nobody_to_charge(item))
                if item.kind == signups.KIND:
                    # the accounts the item lists that are its members are charged here, the
                    # ones its answer tells of; the others after the decision, a chunk a
                    # transaction (charge_members), so that no write holds the locks of a
                    # batch of thousands
                    listed = [a for a in listed if violator(tx.session, item, a)]
                    unlisted = unlisted_members(tx.session, item.id, listed)
                    row.charging_after = "" if unlisted else None
                # in one order everywhere, so that two decisions on overlapping clusters
                # cannot wait for each other's account
                for account_id in listed:
                    # under the account's lock, so that two items of one post confirmed at
                    # once charge it once
                    locked_account(tx, account_id)
                    charged = charged_already(tx, item, account_id)
                    if charged is not None:
                        uncharged.append(charged)
                        continue
                    change, steps = violation(
                        tx, item, account_id, cast(Violation, category), reviewer
                    )
                    changes.append(change)
                    applied += steps
            return views.Decision(
                id=row.id,
                item_id=item.id,
                action=action,
                category=category,
                basis=basis,
                note=note,
                reviewer=reviewer,
                decided_at=tx.now,
                status=items.OUTCOME[action],
                credits=changes,
                dispositions=applied,
                uncharged=uncharged,
                charged_unlisted=unlisted,
            )

        decision = self._once(policy, now, idem, views.Decision, run)
        if not decision.charged_unlisted:
            return decision
        try:
            if charge_later is None:
                # a chunk a transaction until none is left, each tried again on a lost race; a
                # retry with the key finishes what a process that stopped midway left as well
                while self._write_retried(policy, now, charge_members, item_id):
                    continue
                return decision
            # read, not assumed: a retry's answer comes after the charges may have ended
            pending = self._charging(item_id)
        except StorageError as exc:
            # the decision is committed: answered as failed, it would be taken for one not
            # made, while the members left are the retry's or the maintenance's
            # (finish_charges) all the same
            log.warning(
                "batch charges left to finish",
                extra={"item": item_id, "problem": f"{type(exc).__name__}: {exc}"},
            )
            pending = True
        if pending and charge_later is not None:
            # here, not by the caller once answered: a request cancelled (or given up at its
            # deadline) while the decision committed would leave them to the maintenance's
            # next period
            charge_later()
        return decision.model_copy(update={"charges_pending": pending})

    def _charging(self, item_id: int) -> bool:
        """Whether the item's confirmation has members left to charge."""
        with self._session() as session:
            left = session.scalar(
                select(ReviewDecision.id).where(
                    ReviewDecision.item_id == item_id, ReviewDecision.charging_after.is_not(None)
                )
            )
        return left is not None

    def finish_charges(
        self, policy: Policy, now: datetime | None = None, stopping: Event | None = None
    ) -> int:
        """Charge, once whatever the processes calling it, the members of every registration
        batch whose confirmation's process stopped before it had charged them all; how many
        members it went through. A confirmation that fails every time is logged and passed
        (:meth:`_swept`), the others finished all the same. Once ``stopping`` is set no chunk
        is begun: a stopping server leaves the rest to the next sweep, as a stopped one does,
        rather than charge on past its storage's close."""
        with self._session() as session:
            pending = session.scalars(
                select(ReviewDecision.item_id)
                .where(ReviewDecision.charging_after.is_not(None))
                .order_by(ReviewDecision.id)
            ).all()
        sweep = Sweep("batch_charges", of="item")
        went = 0
        for item_id in pending:
            while not (stopping and stopping.is_set()) and (
                chunk := self._swept(sweep, str(item_id), policy, now, charge_members, item_id)
            ):
                went += chunk
        return sweep.done(went)

    def enqueue(
        self,
        policy: Policy,
        *,
        kind: items.Kind,
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
        """Queue an item from another source (a flagged cluster, a confirmed-rumour bank
        match), once while it is open: ``merge_key`` names what it is about (the cluster, the
        post and the bank entry), and the same key again returns the open item. A request with
        a greater ``reach`` than the open item's (a coordinated batch that gained members since
        it was queued: reach is its size, which only grows) replaces the item's reach and
        evidence (its members) and re-ranks it; the same request again, or an older one that
        arrives late, changes nothing.

        Once the key's item is decided, a request no greater than its reach returns it (the
        decision stands for what it saw); a greater one (the batch grew after a dismissal or a
        confirmation) opens a new item whose evidence names the decided one under
        :data:`~service.review.items.EARLIER`: its status, reviewer, moment and reach."""

        def run(tx: Tx) -> views.Item:
            stated = evidence
            if kind == "cluster":
                # members registered in one flagged batch (art10) say so to its reviewer
                registered = signup_batches(tx.session, evidence)
                stated = {**evidence, SIGNUP_BATCHES: registered} if registered else evidence
            about_post = item_to_join(tx.session, post_id, None) if post_id is not None else None
            if about_post is not None and about_post.merge_key != merge_key:
                # the post's open item (its score or reports) is where its bank match goes:
                # one post is one open item, decided once and charged once
                about_post.evidence = {**(about_post.evidence or {}), **stated}
                about_post.text = about_post.text or text_
                about_post.model_version = about_post.model_version or model_version
                return item_view(policy, about_post, None, tx.now)
            confirmed = confirmed_item(tx, post_id) if about_post is None else None
            if confirmed is not None:
                # the post was decided and charged: another source of it is not a second case
                return item_view(policy, confirmed, None, tx.now)
            waiting = open_item(tx, merge_key)
            if waiting is not None:
                if reach > waiting.reach:
                    # the request knows nothing of the item decided before this one: its link
                    # stays
                    kept = {k: v for k, v in (waiting.evidence or {}).items() if k == EARLIER}
                    waiting.reach, waiting.evidence = reach, {**stated, **kept}
                    waiting.urgency = urgency_of(policy, waiting)
                    tx.record(
                        "review.grown",
                        f"item:{waiting.id}",
                        {"merge_key": merge_key, "reach": reach},
                    )
                return item_view(policy, waiting, None, tx.now)
            decided = last_decided(tx.session, merge_key)
            if decided is not None and reach <= decided.reach:
                # the decision stands for what it saw: a re-run, or a state older than it
                return item_view(policy, decided, None, tx.now)
            # a new item names the decided one, which stays as it was
            linked = {EARLIER: earlier_decision(tx.session, decided)} if decided else {}
            item = new_item(
                tx,
                kind=kind,
                post_id=post_id,
                account_id=account_id,
                merge_key=merge_key,
                head=head,
                severity=severity,
                reach=reach,
                evidence={**stated, **linked},
                after=None if decided is None else decided.id,
            )
            item.model_version, item.text = model_version, text_
            item.urgency = urgency_of(policy, item)
            tx.session.flush()
            return item_view(policy, item, None, tx.now)

        return self._once(policy, now, None, views.Item, run)


def _nobody_to_charge(item: ReviewItem) -> views.Uncharged:
    if item.post_id is not None:
        why = f"the item names no account: post {item.post_id} is unknown to the service"
    else:
        why = "the item names no account"
    return views.Uncharged(account_id=None, reason=why)
