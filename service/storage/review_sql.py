"""The review machinery's storage over SQLAlchemy: each write is one transaction that runs the
rules of :mod:`service.review` and appends its hash-chained records, so a write is stored whole
or not at all.

Writers that race lock rows in one order: the item (or appeal), then the account, then the
chain's head last. On SQLite every write transaction begins ``IMMEDIATE`` (one writer at a time,
taken before the first read, so that no transaction has to upgrade its lock and fail).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar, cast

from pydantic import BaseModel
from sqlalchemy import Engine, and_, func, or_, select, text
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from service.policy import Policy
from service.review import appeals as appeal_rules
from service.review import chain, credit, dispositions, items, registration, views
from service.review.appeals import AppealAction
from service.review.items import (
    FINAL,
    Action,
    Category,
    ConflictError,
    NotFoundError,
)
from service.storage.repository import Idempotency, IdempotencyMismatchError, StorageError
from service.storage.tables import (
    AuditHead,
    AuditRecord,
    CreditEntry,
    IdempotentWrite,
    ReviewDecision,
    ReviewItem,
    StoredAccount,
    StoredAppeal,
    StoredDisposition,
    StoredRecord,
    StoredReport,
)

M = TypeVar("M", bound=BaseModel)
OPEN_STATUSES = ("open", "escalated")
RETRIES = 5


def utc(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes (stored as UTC wall time); PostgreSQL aware ones."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def maybe_utc(moment: datetime | None) -> datetime | None:
    return None if moment is None else utc(moment)


@dataclass
class _Tx:
    """One write: its session, its moment, its policy, and the records it appends at the end."""

    session: Session
    now: datetime
    policy: Policy
    log: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)

    def record(self, kind: str, subject: str, payload: dict[str, Any]) -> None:
        self.log.append((kind, subject, payload))


class ReviewSql:
    """Mixed into :class:`~service.storage.sql.SqlRepository`."""

    engine: Engine
    _session: Callable[[], AbstractContextManager[Session]]

    # --- transactions ---------------------------------------------------------------------

    @contextmanager
    def _writing(self) -> Iterator[Session]:
        """A write transaction; on SQLite it takes the write lock before its first read."""
        with self._session() as session:
            if self.engine.dialect.name == "sqlite":
                session.execute(text("BEGIN IMMEDIATE"))
            yield session

    @contextmanager
    def _write(self, policy: Policy, now: datetime | None) -> Iterator[_Tx]:
        with self._writing() as session:
            tx = _Tx(session, now or datetime.now(UTC), policy)
            yield tx
            append_records(session, tx.now, tx.log)

    def _once(
        self,
        policy: Policy,
        now: datetime | None,
        idem: Idempotency | None,
        model: type[M],
        run: Callable[[_Tx], M],
    ) -> M:
        """Run ``run`` in a write transaction, once per idempotency key: a retry with the key
        gets the stored answer. Retried on a lost race (unique key, deadlock)."""
        for attempt in range(RETRIES):
            try:
                with self._write(policy, now) as tx:
                    if idem is not None:
                        stored = tx.session.get(IdempotentWrite, (idem.caller, idem.key))
                        if stored is not None:
                            if stored.fingerprint != idem.fingerprint:
                                raise IdempotencyMismatchError(
                                    "this Idempotency-Key was used with a different request"
                                )
                            return model.model_validate(stored.response)
                    result = run(tx)
                    if idem is not None:
                        tx.session.add(
                            IdempotentWrite(
                                caller=idem.caller,
                                key=idem.key,
                                fingerprint=idem.fingerprint,
                                response=result.model_dump(mode="json"),
                                created_at=tx.now,
                            )
                        )
                    return result
            except StorageError as exc:
                if attempt == RETRIES - 1 or not _lost_race(exc):
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
        cursor: tuple[float, int] | None = None,
        limit: int | None = None,
        now: datetime | None = None,
    ) -> views.ItemPage:
        """Items by priority (highest first), ``limit`` at a time after ``cursor``."""
        limit = limit or policy.review.page_size
        query = select(ReviewItem, StoredRecord.record).outerjoin(
            StoredRecord, StoredRecord.id == ReviewItem.record_id
        )
        query = query.where(ReviewItem.status == status)
        if head is not None:
            query = query.where(ReviewItem.head == head)
        if assignee is not None:
            query = query.where(ReviewItem.assignee == assignee)
        if kind is not None:
            query = query.where(ReviewItem.kind == kind)
        if cursor is not None:
            after, last_id = cursor
            query = query.where(
                or_(
                    ReviewItem.urgency < after,
                    and_(ReviewItem.urgency == after, ReviewItem.id < last_id),
                )
            )
        query = query.order_by(ReviewItem.urgency.desc(), ReviewItem.id.desc()).limit(limit + 1)
        moment = now or datetime.now(UTC)
        with self._session() as session:
            rows = session.execute(query).all()
        page = [_item(policy, row[0], row[1], moment) for row in rows[:limit]]
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
            raise NotFoundError(f"no review item {item_id}")
        return _item(policy, row[0], row[1], now or datetime.now(UTC))

    def claim(
        self, policy: Policy, item_id: int, reviewer: str, now: datetime | None = None
    ) -> views.Lease:
        """Keep the item to ``reviewer`` for the policy's lease (again, to renew it)."""
        with self._write(policy, now) as tx:
            item = _locked_item(tx, item_id)
            items.check_claim(
                item.status, item.assignee, maybe_utc(item.lease_until), reviewer, tx.now
            )
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
        idem: Idempotency | None = None,
        now: datetime | None = None,
    ) -> views.Decision:
        """Decide an item: its status, the decision, and on a confirmed violation the account's
        credit change and dispositions, all in one transaction."""

        def run(tx: _Tx) -> views.Decision:
            item = _locked_item(tx, item_id)
            items.check_claim(
                item.status, item.assignee, maybe_utc(item.lease_until), reviewer, tx.now
            )
            status = items.OUTCOME[action]
            item.status = status
            item.assignee = item.lease_until = None
            row = ReviewDecision(
                item_id=item.id,
                action=action,
                category=category,
                basis=basis,
                note=note,
                reviewer=reviewer,
                policy_version=policy.version,
                decided_at=tx.now,
            )
            tx.session.add(row)
            tx.session.flush()
            tx.record(
                "review.decision",
                f"item:{item.id}",
                {
                    "decision": row.id,
                    "action": action,
                    "category": category,
                    "basis": basis,
                    "reviewer": reviewer,
                    "policy_version": policy.version,
                },
            )
            changes: list[views.CreditChange] = []
            applied: list[views.Disposition] = []
            if action == "confirm" and category is not None:
                # in one order everywhere, so that two decisions on overlapping clusters
                # cannot wait for each other's account
                for account_id in _accounts_of(item):
                    change, steps = _violation(tx, item, account_id, category, reviewer)
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
                status=status,
                credits=changes,
                dispositions=applied,
            )

        return self._once(policy, now, idem, views.Decision, run)

    # --- accounts -------------------------------------------------------------------------

    def put_account(
        self,
        policy: Policy,
        account_id: str,
        *,
        name: str | None,
        subject_id: str | None,
        followers: int,
        now: datetime | None = None,
    ) -> views.Account:
        """Create or update an account's profile (credit is only changed by the ledger)."""
        with self._write(policy, now) as tx:
            account = _locked_account(tx, account_id)
            account.name = name
            account.folded_name = None if name is None else registration.fold_name(name)
            if subject_id is not None:
                account.subject_digest = registration.subject_digest(subject_id)
            account.followers = followers
            tx.record(
                "account.profile",
                f"account:{account_id}",
                {"name": name, "followers": followers, "subject": account.subject_digest},
            )
            tx.session.flush()
            return _account(tx.session, account, tx.now)

    def get_account(self, account_id: str, now: datetime | None = None) -> views.Account:
        with self._session() as session:
            account = session.get(StoredAccount, account_id)
            if account is None:
                raise NotFoundError(f"no account {account_id!r}")
            return _account(session, account, now or datetime.now(UTC))

    def account_levels(self, levels: list[str]) -> dict[str, str]:
        """Accounts at any of ``levels``: the ones whose posts the policy treats more strictly."""
        with self._session() as session:
            rows = session.execute(
                select(StoredAccount.account_id, StoredAccount.level).where(
                    StoredAccount.level.in_(levels)
                )
            )
            return {account: level for account, level in rows}

    def restore_credit(self, policy: Policy, now: datetime | None = None) -> int:
        """Give back the points of completed clean periods to every account due them; the
        number of accounts restored."""
        moment = now or datetime.now(UTC)
        due_before = moment - timedelta(days=policy.credit.restore_every_days)
        with self._session() as session:
            due = session.scalars(
                select(StoredAccount.account_id).where(
                    StoredAccount.credit < policy.credit.initial,
                    StoredAccount.clean_since <= due_before,
                )
            ).all()
        restored = 0
        for account_id in due:
            with self._write(policy, moment) as tx:
                restored += _restore(tx, _locked_account(tx, account_id)) is not None
        return restored

    # --- reports and appeals --------------------------------------------------------------

    def file_report(
        self,
        policy: Policy,
        *,
        post_id: str | None,
        account_id: str | None,
        category: Category,
        text_: str,
        reporter: str,
        idem: Idempotency | None = None,
        now: datetime | None = None,
    ) -> views.Report:
        """Store a complaint and join it to the post's (or account's) open item, raising its
        priority, or open a report item for it."""

        def run(tx: _Tx) -> views.Report:
            item = _item_to_join(tx, post_id, account_id)
            if item is None:
                known = tx.session.get(StoredAccount, account_id) if account_id else None
                item = _new_item(
                    tx,
                    kind="report",
                    post_id=post_id,
                    account_id=account_id,
                    merge_key=f"post:{post_id}" if post_id else f"account:{account_id}",
                    head=category,
                    severity="report",
                    reach=known.followers if known is not None else 0,
                    evidence={"categories": {}},
                )
            item.reports += 1
            counts = dict((item.evidence or {}).get("categories", {}))
            counts[category] = counts.get(category, 0) + 1
            item.evidence = {**(item.evidence or {}), "categories": counts}
            item.urgency = _urgency(policy, item)
            tx.session.flush()
            report = StoredReport(
                post_id=post_id,
                account_id=account_id,
                category=category,
                text=text_,
                item_id=item.id,
                reporter=reporter,
                created_at=tx.now,
            )
            tx.session.add(report)
            tx.session.flush()
            tx.record(
                "report.filed",
                f"report:{report.id}",
                {
                    "item": item.id,
                    "post_id": post_id,
                    "account_id": account_id,
                    "category": category,
                    "text_sha256": hashlib.sha256(text_.encode()).hexdigest(),
                    "reporter": reporter,
                },
            )
            return _report(report, item)

        return self._once(policy, now, idem, views.Report, run)

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
        post and the bank entry), and the same key again returns the open item."""

        def run(tx: _Tx) -> views.Item:
            open_item = tx.session.scalar(
                select(ReviewItem).where(
                    ReviewItem.merge_key == merge_key, ReviewItem.status.in_(OPEN_STATUSES)
                )
            )
            if open_item is not None:
                return _item(policy, open_item, None, tx.now)
            item = _new_item(
                tx,
                kind=kind,
                post_id=post_id,
                account_id=account_id,
                merge_key=merge_key,
                head=head,
                severity=severity,
                reach=reach,
                evidence=evidence,
            )
            item.model_version, item.text = model_version, text_
            item.urgency = _urgency(policy, item)
            tx.session.flush()
            tx.record(
                "review.enqueued",
                f"item:{item.id}",
                {"kind": kind, "merge_key": merge_key, "head": head, "severity": severity},
            )
            return _item(policy, item, None, tx.now)

        return self._once(policy, now, None, views.Item, run)

    def get_report(self, report_id: int) -> views.Report:
        with self._session() as session:
            report = session.get(StoredReport, report_id)
            if report is None:
                raise NotFoundError(f"no report {report_id}")
            item = session.get(ReviewItem, report.item_id)
            assert item is not None
            return _report(report, item)

    def file_appeal(
        self,
        policy: Policy,
        *,
        account_id: str,
        item_id: int,
        reason: str,
        filed_by: str,
        idem: Idempotency | None = None,
        now: datetime | None = None,
    ) -> views.Appeal:
        def run(tx: _Tx) -> views.Appeal:
            if tx.session.get(StoredAccount, account_id) is None:
                raise NotFoundError(f"no account {account_id!r}")
            item = tx.session.get(ReviewItem, item_id)
            if item is None:
                raise NotFoundError(f"no review item {item_id}")
            if account_id not in _accounts_of(item) or item.status != "confirmed":
                raise ConflictError(
                    f"item {item_id} is not a confirmed violation of account {account_id!r}"
                )
            decision = _final_decision(tx.session, item_id)
            deadline = appeal_rules.check_filing(policy.appeals, utc(decision.decided_at), tx.now)
            earlier = tx.session.scalar(
                select(StoredAppeal.id).where(
                    StoredAppeal.item_id == item_id, StoredAppeal.account_id == account_id
                )
            )
            if earlier is not None:
                raise ConflictError(f"item {item_id} was appealed already (appeal {earlier})")
            appeal = StoredAppeal(
                account_id=account_id,
                item_id=item_id,
                reason=reason,
                status="pending",
                filed_by=filed_by,
                filed_at=tx.now,
                deadline=deadline,
            )
            tx.session.add(appeal)
            tx.session.flush()
            tx.record(
                "appeal.filed",
                f"appeal:{appeal.id}",
                {
                    "account_id": account_id,
                    "item": item_id,
                    "deadline": deadline.isoformat(),
                    "reason_sha256": hashlib.sha256(reason.encode()).hexdigest(),
                },
            )
            return _appeal(appeal, tx.now)

        return self._once(policy, now, idem, views.Appeal, run)

    def decide_appeal(
        self,
        policy: Policy,
        appeal_id: int,
        reviewer: str,
        action: AppealAction,
        note: str | None,
        *,
        idem: Idempotency | None = None,
        now: datetime | None = None,
    ) -> views.Appeal:
        """Resolve an appeal; upholding it reverses the credit change and lifts the
        dispositions of the appealed decision, by new ledger entries and records."""

        def run(tx: _Tx) -> views.Appeal:
            appeal = tx.session.scalar(
                select(StoredAppeal).where(StoredAppeal.id == appeal_id).with_for_update()
            )
            if appeal is None:
                raise NotFoundError(f"no appeal {appeal_id}")
            if appeal.status != "pending":
                raise ConflictError(f"appeal {appeal_id} is resolved already ({appeal.status})")
            decided_by = _final_decision(tx.session, appeal.item_id).reviewer
            appeal_rules.check_resolver(decided_by, reviewer)
            appeal.status = "upheld" if action == "uphold" else "rejected"
            appeal.resolved_by, appeal.resolved_at, appeal.note = reviewer, tx.now, note
            tx.record(
                "appeal.decision",
                f"appeal:{appeal.id}",
                {"action": action, "reviewer": reviewer, "item": appeal.item_id},
            )
            reversed_: list[views.CreditChange | views.Disposition] = []
            if action == "uphold":
                reversed_ = _reverse(tx, appeal, reviewer)
            return _appeal(appeal, tx.now, reversed_)

        return self._once(policy, now, idem, views.Appeal, run)

    def list_appeals(
        self, *, overdue_only: bool = False, limit: int = 100, now: datetime | None = None
    ) -> views.AppealPage:
        moment = now or datetime.now(UTC)
        late = and_(StoredAppeal.status == "pending", StoredAppeal.deadline < moment)
        query = select(StoredAppeal).order_by(StoredAppeal.deadline, StoredAppeal.id)
        if overdue_only:
            query = query.where(late)
        with self._session() as session:
            rows = session.scalars(query.limit(limit)).all()
            overdue = session.scalar(select(func.count()).select_from(StoredAppeal).where(late))
        return views.AppealPage(
            appeals=[_appeal(a, moment) for a in rows], overdue=int(overdue or 0)
        )

    # --- re-registration ------------------------------------------------------------------

    def check_registration(
        self, policy: Policy, name: str, subject_id: str, now: datetime | None = None
    ) -> views.Registration:
        moment = now or datetime.now(UTC)
        rules = policy.registration
        with self._session() as session:
            blacklisted = session.scalars(
                select(StoredAccount.account_id)
                .join(StoredDisposition, StoredDisposition.account_id == StoredAccount.account_id)
                .where(
                    StoredAccount.subject_digest == registration.subject_digest(subject_id),
                    StoredDisposition.kind.in_(rules.subjects_refused_by),
                    _active(moment),
                )
                .distinct()
            ).all()
            closed = session.execute(
                select(StoredAccount.account_id, StoredAccount.folded_name)
                .join(StoredDisposition, StoredDisposition.account_id == StoredAccount.account_id)
                .where(
                    StoredAccount.folded_name.is_not(None),
                    StoredDisposition.kind.in_(rules.names_refused_by),
                    _active(moment),
                )
                .distinct()
            ).all()
        refusals = registration.check(
            rules, name, blacklisted, [(a, n) for a, n in closed if n is not None]
        )
        return views.Registration(
            allowed=not refusals,
            reasons=[{"code": r.code, "detail": r.detail} for r in refusals],
        )

    # --- records and labels ---------------------------------------------------------------

    def audit_entries(
        self, start: datetime | None = None, end: datetime | None = None, chunk: int = 5000
    ) -> Iterator[chain.Entry]:
        """The records in sequence order (``start <= at < end`` when given), read in chunks."""
        after = 0
        while True:
            query = select(AuditRecord).where(AuditRecord.seq > after)
            if start is not None:
                query = query.where(AuditRecord.at >= start)
            if end is not None:
                query = query.where(AuditRecord.at < end)
            with self._session() as session:
                rows = session.scalars(query.order_by(AuditRecord.seq).limit(chunk)).all()
            if not rows:
                return
            for row in rows:
                yield chain.Entry(
                    seq=row.seq,
                    at=utc(row.at),
                    kind=row.kind,
                    subject=row.subject,
                    payload=row.payload,
                    prev_hash=row.prev_hash,
                    hash=row.hash,
                )
            after = rows[-1].seq

    def audit_head(self) -> tuple[int, str]:
        with self._session() as session:
            head = session.get(AuditHead, 1)
            assert head is not None, "the audit head row is created by the migration"
            return head.seq, head.hash

    def labels(self) -> Iterator[dict[str, Any]]:
        """Reviewers' final decisions as training labels: 1 for a confirmed violation (unless
        an appeal against it was upheld), 0 for a dismissal."""
        upheld = select(StoredAppeal.item_id).where(StoredAppeal.status == "upheld")
        query = (
            select(ReviewDecision, ReviewItem)
            .join(ReviewItem, ReviewItem.id == ReviewDecision.item_id)
            .where(ReviewDecision.action.in_(("confirm", "dismiss")))
            .order_by(ReviewDecision.id)
        )
        with self._session() as session:
            appealed = set(session.scalars(upheld))
            for decision, item in session.execute(query):
                confirmed = decision.action == "confirm" and item.id not in appealed
                yield {
                    "item_id": item.id,
                    "post_id": item.post_id,
                    "text": item.text,
                    "head": decision.category or item.head,
                    "label": int(confirmed),
                    "action": decision.action,
                    "appeal_upheld": item.id in appealed,
                    "decided_at": utc(decision.decided_at).isoformat(),
                    "policy_version": decision.policy_version,
                    "model_version": item.model_version,
                }


# --- the pieces of a write ------------------------------------------------------------------


def append_records(
    session: Session, at: datetime, log: list[tuple[str, str, dict[str, Any]]]
) -> None:
    """Append ``log`` to the chain, holding its head's lock until the transaction ends."""
    if not log:
        return
    head = session.scalar(select(AuditHead).where(AuditHead.id == 1).with_for_update())
    assert head is not None, "the audit head row is created by the migration"
    seq, prev = head.seq, head.hash
    for kind, subject, payload in log:
        seq += 1
        digest = chain.link(prev, seq, at, kind, subject, payload)
        session.add(
            AuditRecord(
                seq=seq,
                at=at,
                kind=kind,
                subject=subject,
                payload=payload,
                prev_hash=prev,
                hash=digest,
            )
        )
        prev = digest
    head.seq, head.hash = seq, prev


def _lost_race(exc: StorageError) -> bool:
    cause = exc.__cause__
    if isinstance(cause, IntegrityError):
        return True
    # PostgreSQL: deadlock detected, serialization failure
    code = getattr(getattr(cause, "orig", None), "sqlstate", None)
    return isinstance(cause, DBAPIError) and code in {"40P01", "40001"}


def _locked_item(tx: _Tx, item_id: int) -> ReviewItem:
    item = tx.session.scalar(select(ReviewItem).where(ReviewItem.id == item_id).with_for_update())
    if item is None:
        raise NotFoundError(f"no review item {item_id}")
    return item


def _locked_account(tx: _Tx, account_id: str) -> StoredAccount:
    """The account's row, locked; created at the initial credit when it is new."""
    rules = tx.policy.credit
    insert = sqlite_insert if tx.session.get_bind().dialect.name == "sqlite" else postgresql_insert
    values = {
        "account_id": account_id,
        "credit": rules.initial,
        "level": credit.level(rules, rules.initial).name,
        "followers": 0,
        "clean_since": tx.now,
        "policy_version": tx.policy.version,
    }
    statement = insert(StoredAccount).values(values)
    tx.session.execute(statement.on_conflict_do_nothing(index_elements=["account_id"]))
    account = tx.session.scalar(
        select(StoredAccount)
        .where(StoredAccount.account_id == account_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    assert account is not None
    return account


def _credit(
    tx: _Tx,
    account: StoredAccount,
    delta: int,
    reason: str,
    *,
    category: str | None = None,
    item_id: int | None = None,
    appeal_id: int | None = None,
) -> views.CreditChange:
    rules = tx.policy.credit
    account.credit += delta
    account.level = credit.level(rules, account.credit).name
    account.policy_version = tx.policy.version
    entry = CreditEntry(
        account_id=account.account_id,
        delta=delta,
        credit=account.credit,
        level=account.level,
        reason=reason,
        category=category,
        item_id=item_id,
        appeal_id=appeal_id,
        policy_version=tx.policy.version,
        at=tx.now,
    )
    tx.session.add(entry)
    tx.session.flush()
    change = _change(entry)
    tx.record(
        "credit.change",
        f"account:{account.account_id}",
        change.model_dump(mode="json", exclude={"at", "account_id"}),
    )
    return change


def _restore(tx: _Tx, account: StoredAccount) -> views.CreditChange | None:
    due = credit.restoration(tx.policy.credit, account.credit, utc(account.clean_since), tx.now)
    if due is None:
        return None
    delta, until = due
    account.clean_since = until
    return _credit(tx, account, delta, "restore")


def _violations_since(tx: _Tx, account_id: str, since: datetime) -> int:
    reversed_items = select(CreditEntry.item_id).where(
        CreditEntry.account_id == account_id, CreditEntry.reason == "reversal"
    )
    count = tx.session.scalar(
        select(func.count())
        .select_from(CreditEntry)
        .where(
            CreditEntry.account_id == account_id,
            CreditEntry.reason == "violation",
            CreditEntry.at >= since,
            CreditEntry.item_id.not_in(reversed_items),
        )
    )
    return int(count or 0)


def _accounts_of(item: ReviewItem) -> list[str]:
    """The accounts a confirmed item is a violation of: its own, and a cluster's members'."""
    members = (item.evidence or {}).get("members", [])
    found = {m["account_id"] for m in members if isinstance(m, dict) and m.get("account_id")}
    if item.account_id is not None:
        found.add(item.account_id)
    return sorted(found)


def _violation(
    tx: _Tx, item: ReviewItem, account_id: str, category: Category, reviewer: str
) -> tuple[views.CreditChange, list[views.Disposition]]:
    account = _locked_account(tx, account_id)
    _restore(tx, account)
    rules = tx.policy.credit
    earlier = _violations_since(tx, account.account_id, tx.now - timedelta(days=rules.window_days))
    delta = credit.deduction(rules, account.credit, category, item.severity, earlier)
    change = _credit(tx, account, delta, "violation", category=category, item_id=item.id)
    account.clean_since = tx.now
    active = set(
        tx.session.scalars(
            select(StoredDisposition.kind).where(
                StoredDisposition.account_id == account.account_id, _active(tx.now)
            )
        )
    )
    applied = []
    for step in dispositions.due(tx.policy.dispositions, account.level, earlier + 1, active):
        row = StoredDisposition(
            account_id=account.account_id,
            kind=step.kind,
            basis=step.basis,
            item_id=item.id,
            starts_at=tx.now,
            ends_at=dispositions.ends_at(step, tx.now),
            decided_by=reviewer,
            policy_version=tx.policy.version,
        )
        tx.session.add(row)
        tx.session.flush()
        shown = _disposition(row, tx.now)
        applied.append(shown)
        tx.record(
            "disposition.applied",
            f"account:{account.account_id}",
            shown.model_dump(mode="json", exclude={"account_id", "active", "starts_at"}),
        )
    return change, applied


def _reverse(
    tx: _Tx, appeal: StoredAppeal, reviewer: str
) -> list[views.CreditChange | views.Disposition]:
    account = _locked_account(tx, appeal.account_id)
    done: list[views.CreditChange | views.Disposition] = []
    deducted = tx.session.scalar(
        select(CreditEntry).where(
            CreditEntry.item_id == appeal.item_id,
            CreditEntry.account_id == appeal.account_id,
            CreditEntry.reason == "violation",
        )
    )
    if deducted is not None and deducted.delta:
        done.append(
            _credit(
                tx,
                account,
                -deducted.delta,
                "reversal",
                category=deducted.category,
                item_id=appeal.item_id,
                appeal_id=appeal.id,
            )
        )
    lifted = tx.session.scalars(
        select(StoredDisposition).where(
            StoredDisposition.item_id == appeal.item_id,
            StoredDisposition.account_id == appeal.account_id,
            StoredDisposition.lifted_at.is_(None),
        )
    ).all()
    for row in lifted:
        row.lifted_at, row.lifted_by = tx.now, reviewer
        tx.record(
            "disposition.lifted",
            f"account:{row.account_id}",
            {"disposition": row.id, "kind": row.kind, "appeal": appeal.id, "by": reviewer},
        )
        done.append(_disposition(row, tx.now))
    return done


def _new_item(
    tx: _Tx,
    *,
    kind: str,
    post_id: str | None,
    account_id: str | None,
    merge_key: str,
    head: str,
    severity: str,
    reach: int,
    evidence: dict[str, Any],
) -> ReviewItem:
    item = ReviewItem(
        kind=kind,
        post_id=post_id,
        account_id=account_id,
        merge_key=merge_key,
        head=head,
        policy_version=tx.policy.version,
        decision="review",
        severity=severity,
        reach=reach,
        reports=0,
        urgency=0.0,
        status="open",
        evidence=evidence,
        enqueued_at=tx.now,
    )
    tx.session.add(item)
    return item


def _urgency(policy: Policy, item: ReviewItem) -> float:
    rules = policy.review
    base = items.base_priority(rules, item.severity, item.reach, item.reports)
    return items.urgency(rules, base, utc(item.enqueued_at))


def _item_to_join(tx: _Tx, post_id: str | None, account_id: str | None) -> ReviewItem | None:
    """The open item a new report on the post (or, without a post, the account) joins."""
    if post_id is not None:
        where = ReviewItem.post_id == post_id
    else:
        where = ReviewItem.merge_key == f"account:{account_id}"
    return tx.session.scalar(
        select(ReviewItem)
        .where(where, ReviewItem.status.in_(OPEN_STATUSES))
        .order_by(ReviewItem.id)
        .limit(1)
        .with_for_update()
    )


def _final_decision(session: Session, item_id: int) -> ReviewDecision:
    decision = session.scalar(
        select(ReviewDecision)
        .where(ReviewDecision.item_id == item_id, ReviewDecision.action.in_(("confirm", "dismiss")))
        .order_by(ReviewDecision.id.desc())
        .limit(1)
    )
    if decision is None:
        raise ConflictError(f"item {item_id} has no decision to appeal")
    return decision


def _active(now: datetime) -> Any:
    return and_(
        StoredDisposition.lifted_at.is_(None),
        or_(StoredDisposition.ends_at.is_(None), StoredDisposition.ends_at > now),
    )


# --- rows to views ----------------------------------------------------------------------------


def _item(
    policy: Policy, row: ReviewItem, record: dict[str, Any] | None, now: datetime
) -> views.Item:
    lease = maybe_utc(row.lease_until)
    live = lease is not None and lease > now and row.status not in FINAL
    evidence = row.evidence
    if record is not None:
        evidence = {**(evidence or {}), "record": record}
    return views.Item(
        id=row.id,
        kind=cast(items.Kind, row.kind),
        head=row.head,
        post_id=row.post_id,
        account_id=row.account_id,
        priority=items.priority(policy.review, row.urgency, now),
        severity=row.severity,
        reach=row.reach,
        reports=row.reports,
        status=cast(items.Status, row.status),
        assignee=row.assignee if live else None,
        lease_until=lease if live else None,
        deadline=items.report_deadline(policy.review, utc(row.enqueued_at), row.reports),
        enqueued_at=utc(row.enqueued_at),
        model_version=row.model_version,
        policy_version=row.policy_version,
        evidence=evidence,
    )


def _change(entry: CreditEntry) -> views.CreditChange:
    return views.CreditChange(
        id=entry.id,
        account_id=entry.account_id,
        delta=entry.delta,
        credit=entry.credit,
        level=entry.level,
        reason=entry.reason,
        item_id=entry.item_id,
        appeal_id=entry.appeal_id,
        policy_version=entry.policy_version,
        at=utc(entry.at),
    )


def _disposition(row: StoredDisposition, now: datetime) -> views.Disposition:
    ends = maybe_utc(row.ends_at)
    return views.Disposition(
        id=row.id,
        account_id=row.account_id,
        kind=row.kind,
        basis=row.basis,
        item_id=row.item_id,
        starts_at=utc(row.starts_at),
        ends_at=ends,
        decided_by=row.decided_by,
        policy_version=row.policy_version,
        lifted_at=maybe_utc(row.lifted_at),
        lifted_by=row.lifted_by,
        active=dispositions.is_active(ends, row.lifted_at is not None, now),
    )


def _account(session: Session, account: StoredAccount, now: datetime) -> views.Account:
    entries = session.scalars(
        select(CreditEntry)
        .where(CreditEntry.account_id == account.account_id)
        .order_by(CreditEntry.id)
    ).all()
    rows = session.scalars(
        select(StoredDisposition)
        .where(StoredDisposition.account_id == account.account_id)
        .order_by(StoredDisposition.id)
    ).all()
    shown = [_disposition(row, now) for row in rows]
    history: list[views.CreditChange | views.Disposition] = [_change(e) for e in entries]
    history += shown
    history.sort(key=lambda h: h.at if isinstance(h, views.CreditChange) else h.starts_at)
    return views.Account(
        account_id=account.account_id,
        credit=account.credit,
        level=account.level,
        name=account.name,
        followers=account.followers,
        dispositions=[d for d in shown if d.active],
        history=history,
    )


def _report(report: StoredReport, item: ReviewItem) -> views.Report:
    return views.Report(
        id=report.id,
        post_id=report.post_id,
        account_id=report.account_id,
        category=cast(Category, report.category),
        text=report.text,
        item_id=item.id,
        item_reports=item.reports,
        status=cast(items.Status, item.status),
        created_at=utc(report.created_at),
    )


def _appeal(
    appeal: StoredAppeal,
    now: datetime,
    reversed_: list[views.CreditChange | views.Disposition] | None = None,
) -> views.Appeal:
    deadline = utc(appeal.deadline)
    return views.Appeal(
        id=appeal.id,
        account_id=appeal.account_id,
        item_id=appeal.item_id,
        reason=appeal.reason,
        status=cast(appeal_rules.AppealStatus, appeal.status),
        filed_at=utc(appeal.filed_at),
        deadline=deadline,
        overdue=appeal_rules.overdue(appeal.status, deadline, now),
        resolved_by=appeal.resolved_by,
        resolved_at=maybe_utc(appeal.resolved_at),
        note=appeal.note,
        reversed=reversed_ or [],
    )
