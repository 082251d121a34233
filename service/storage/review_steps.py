"""The pieces of a review write, run inside one transaction (:class:`Tx`): locking, credit
changes, dispositions, reversals, new items, and appending the chained records."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Select,
    SQLColumnExpression,
    and_,
    exists,
    func,
    literal,
    or_,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import Insert as PostgresqlInsert
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import Insert as SqliteInsert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import InstrumentedAttribute, Session

from service.heads import Risk
from service.policy import Policy
from service.review import appeals, chain, credit, dispositions, dormancy, items, protected, views
from service.review.items import Action, Category, ConflictError, NotFoundError, Violation
from service.storage.repository import Role, StorageError
from service.storage.review_rows import (
    APPLIED,
    LIFTED,
    change_view,
    disposition_view,
    maybe_utc,
    utc,
)
from service.storage.tables import (
    AuditHead,
    AuditRecord,
    CreditEntry,
    HeldName,
    ProtectedNameSubject,
    ReviewDecision,
    ReviewItem,
    StoredAccount,
    StoredAppeal,
    StoredDisposition,
    StoredPost,
    StoredProtectedName,
)

OPEN_STATUSES = ("open", "escalated")


@dataclass
class Tx:
    """One write: its session, its moment, its policy, and the records it appends at the end."""

    session: Session
    now: datetime
    policy: Policy
    log: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)

    def record(self, kind: str, subject: str, payload: dict[str, Any]) -> None:
        self.log.append((kind, subject, payload))


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


def lost_race(exc: StorageError) -> bool:
    cause = exc.__cause__
    if isinstance(cause, IntegrityError):
        return True
    # PostgreSQL: deadlock detected, serialization failure
    code = getattr(getattr(cause, "orig", None), "sqlstate", None)
    return isinstance(cause, DBAPIError) and code in {"40P01", "40001"}


def locked_item(tx: Tx, item_id: int) -> ReviewItem:
    item = tx.session.scalar(select(ReviewItem).where(ReviewItem.id == item_id).with_for_update())
    if item is None:
        raise NotFoundError("no_item", item_id=item_id)
    return item


def held_item(tx: Tx, item_id: int, reviewer: str, role: Role) -> ReviewItem:
    """The item, locked, when ``reviewer`` of ``role`` may hold it now
    (:func:`items.check_claim`)."""
    item = locked_item(tx, item_id)
    escalated_by = None
    if item.status == "escalated":
        escalated_by = tx.session.scalar(
            select(ReviewDecision.reviewer)
            .where(ReviewDecision.item_id == item.id, ReviewDecision.action == "escalate")
            .order_by(ReviewDecision.id.desc())
            .limit(1)
        )
    items.check_claim(
        item.status,
        item.assignee,
        maybe_utc(item.lease_until),
        reviewer,
        tx.now,
        escalated_by,
        role,
    )
    return item


def escalated(session: Session, item_id: int) -> bool:
    """Whether the item was escalated: it is, or was before its final decision."""
    query = exists().where(ReviewDecision.item_id == item_id, ReviewDecision.action == "escalate")
    return bool(session.scalar(select(query)))


def new_account(
    tx: Tx, account_id: str, used: datetime | None = None
) -> dict[str, str | int | datetime]:
    """The row of an account new to the service, at the initial credit, without a profile (no
    name, subject nor followers given). Its dormancy clock starts at its registration, as far
    as the service knows: now; or at ``used``, the post that made the service know it."""
    rules = tx.policy.credit
    return {
        "account_id": account_id,
        "credit": rules.initial,
        "level": credit.level(rules, rules.initial).name,
        "followers": 0,
        "clean_since": tx.now,
        "policy_version": tx.policy.version,
        "active_at": tx.now if used is None else used,
        "active_by": "registration" if used is None else "post",
    }


def account_insert(tx: Tx) -> SqliteInsert | PostgresqlInsert:
    """An insert into ``accounts`` in the transaction's dialect, which can be told to do
    nothing on a row another writer made first."""
    insert = sqlite_insert if tx.session.get_bind().dialect.name == "sqlite" else postgresql_insert
    return insert(StoredAccount)


def locked_account(tx: Tx, account_id: str) -> StoredAccount:
    """The account's row, locked; created at the initial credit when it is new."""
    statement = account_insert(tx).values(new_account(tx, account_id))
    tx.session.execute(statement.on_conflict_do_nothing(index_elements=["account_id"]))
    account = tx.session.scalar(
        select(StoredAccount)
        .where(StoredAccount.account_id == account_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    assert account is not None
    return account


def change_credit(
    tx: Tx,
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
    change = change_view(entry)
    tx.record(
        "credit.change",
        f"account:{account.account_id}",
        change.model_dump(mode="json", exclude={"at", "account_id"}),
    )
    return change


def restore(tx: Tx, account: StoredAccount) -> views.CreditChange | None:
    due = credit.restoration(tx.policy.credit, account.credit, utc(account.clean_since), tx.now)
    if due is None:
        return None
    delta, until = due
    account.clean_since = until
    return change_credit(tx, account, delta, "restore")


def reversed_items(account_id: str) -> Select[int | None]:
    """The items whose violation of ``account_id`` an upheld appeal reversed."""
    return select(CreditEntry.item_id).where(
        CreditEntry.account_id == account_id, CreditEntry.reason == "reversal"
    )


def violations_since(tx: Tx, account_id: str, since: datetime) -> int:
    count = tx.session.scalar(
        select(func.count())
        .select_from(CreditEntry)
        .where(
            CreditEntry.account_id == account_id,
            CreditEntry.reason == "violation",
            CreditEntry.at >= since,
            CreditEntry.item_id.not_in(reversed_items(account_id)),
        )
    )
    return int(count or 0)


def accounts_of(item: ReviewItem) -> list[str]:
    """The accounts a confirmed item is a violation of: its own, and a cluster's members'."""
    members = (item.evidence or {}).get("members", [])
    found = {m["account_id"] for m in members if isinstance(m, dict) and m.get("account_id")}
    if item.account_id is not None:
        found.add(item.account_id)
    return sorted(found)


def violation(
    tx: Tx, item: ReviewItem, account_id: str, category: Violation, reviewer: str
) -> tuple[views.CreditChange, list[views.Disposition]]:
    account = locked_account(tx, account_id)
    restore(tx, account)
    rules = tx.policy.credit
    earlier = violations_since(tx, account.account_id, tx.now - timedelta(days=rules.window_days))
    delta = credit.deduction(rules, account.credit, category, item.severity, earlier)
    change = change_credit(tx, account, delta, "violation", category=category, item_id=item.id)
    account.clean_since = tx.now
    active = active_kinds(tx, account.account_id)
    steps = dispositions.due(tx.policy.dispositions, account.level, earlier + 1, active, category)
    applied = [
        apply_disposition(
            tx, account_id, s.kind, s.basis, item.id, dispositions.ends_at(s, tx.now), reviewer
        )
        for s in steps
    ]
    return change, applied


def active_kinds(tx: Tx, account_id: str) -> set[str]:
    return set(
        tx.session.scalars(
            select(StoredDisposition.kind).where(
                StoredDisposition.account_id == account_id, active_now(tx.now)
            )
        )
    )


def apply_disposition(
    tx: Tx,
    account_id: str,
    kind: str,
    basis: str,
    item_id: int | None,
    ends_at: datetime | None,
    reviewer: str,
) -> views.Disposition:
    """Apply a disposition, on the item whose decision called for it (none: the dormancy
    sweep's, on the policy alone), decided by ``reviewer``."""
    row = StoredDisposition(
        account_id=account_id,
        kind=kind,
        basis=basis,
        item_id=item_id,
        starts_at=tx.now,
        ends_at=ends_at,
        decided_by=reviewer,
        policy_version=tx.policy.version,
    )
    tx.session.add(row)
    tx.session.flush()
    shown = disposition_view(row, tx.now)
    tx.record(
        APPLIED,
        f"account:{account_id}",
        shown.model_dump(mode="json", exclude={"account_id", "active", "starts_at"}),
    )
    return shown


def reverse(
    tx: Tx, appeal: StoredAppeal, reviewer: str
) -> list[views.CreditChange | views.Disposition]:
    account = locked_account(tx, appeal.account_id)
    done: list[views.CreditChange | views.Disposition] = []
    ladder = tx.policy.dispositions
    since = tx.now - timedelta(days=tx.policy.credit.window_days)
    before = dispositions.called_for(
        ladder, account.level, violations_since(tx, account.account_id, since)
    )
    deducted = tx.session.scalar(
        select(CreditEntry).where(
            CreditEntry.item_id == appeal.item_id,
            CreditEntry.account_id == appeal.account_id,
            CreditEntry.reason == "violation",
        )
    )
    ids, entries = standing_entries(tx, account.account_id)
    if deducted is not None and deducted.id in ids:
        delta = credit.reversal(tx.policy.credit, account.credit, entries, ids.index(deducted.id))
        # written when nothing comes back too: this entry is what stops the violation counting
        # (:func:`reversed_items`)
        done.append(
            change_credit(
                tx,
                account,
                delta,
                "reversal",
                category=deducted.category,
                item_id=appeal.item_id,
                appeal_id=appeal.id,
            )
        )
    # the decision's own dispositions, and those that only its weight on the level or the count
    # of violations called for, whichever violation they were applied on
    gone = before - dispositions.called_for(
        ladder, account.level, violations_since(tx, account.account_id, since)
    )
    lifted = tx.session.scalars(
        select(StoredDisposition).where(
            StoredDisposition.account_id == appeal.account_id,
            StoredDisposition.lifted_at.is_(None),
            or_(
                StoredDisposition.item_id == appeal.item_id,
                and_(StoredDisposition.kind.in_(gone), active_now(tx.now)),
            ),
        )
    ).all()
    done += [lift(tx, row, reviewer, {"appeal": appeal.id}) for row in lifted]
    done += still_due(tx, account, lifted, reviewer)
    return done


def lift(tx: Tx, row: StoredDisposition, by: str | None, why: dict[str, Any]) -> views.Disposition:
    """Lift ``row`` now, ``by`` whom, with its record: ``why`` names the upheld appeal
    (``appeal``) or another ``cause`` (a correction, an entry removed, a dormant account's
    return) and what it was."""
    row.lifted_at, row.lifted_by = tx.now, by
    tx.record(
        LIFTED,
        f"account:{row.account_id}",
        {"disposition": row.id, "kind": row.kind, **why, "by": by},
    )
    return disposition_view(row, tx.now)


def standing_entries(tx: Tx, account_id: str) -> tuple[list[int], list[credit.Standing]]:
    """The account's standing violations and restorations in ledger order, and their ids."""
    rows = tx.session.execute(
        select(
            CreditEntry.id,
            CreditEntry.at,
            CreditEntry.category,
            CreditEntry.delta,
            ReviewItem.severity,
        )
        .outerjoin(ReviewItem, ReviewItem.id == CreditEntry.item_id)
        .where(
            CreditEntry.account_id == account_id,
            or_(
                CreditEntry.reason == "restore",
                and_(
                    CreditEntry.reason == "violation",
                    CreditEntry.item_id.not_in(reversed_items(account_id)),
                ),
            ),
        )
        .order_by(CreditEntry.at, CreditEntry.id)
    ).all()
    entries = [
        credit.Standing(utc(row.at), cast(Violation, row.category), row.severity)
        if row.category is not None
        else credit.Standing(utc(row.at), delta=row.delta)
        for row in rows
    ]
    return [row.id for row in rows], entries


def still_due(
    tx: Tx, account: StoredAccount, lifted: Sequence[StoredDisposition], reviewer: str
) -> list[views.Disposition]:
    """The ``lifted`` dispositions that the account's level or standing violations still call
    for, applied again under its latest standing violation until they would have ended: an
    upheld appeal undoes what its decision caused, not what the other violations cause."""
    rules = tx.policy.credit
    standing = violations_since(tx, account.account_id, tx.now - timedelta(days=rules.window_days))
    active = active_kinds(tx, account.account_id)
    steps = dispositions.due(tx.policy.dispositions, account.level, standing, active)
    due = {s.kind for s in steps}
    latest = tx.session.scalar(
        select(CreditEntry.item_id)
        .where(
            CreditEntry.account_id == account.account_id,
            CreditEntry.reason == "violation",
            CreditEntry.item_id.not_in(reversed_items(account.account_id)),
        )
        .order_by(CreditEntry.at.desc(), CreditEntry.id.desc())
        .limit(1)
    )
    if latest is None:
        return []
    return [
        apply_disposition(
            tx, account.account_id, row.kind, row.basis, latest, maybe_utc(row.ends_at), reviewer
        )
        for row in lifted
        if row.kind in due and dispositions.is_active(maybe_utc(row.ends_at), False, tx.now)
    ]


def subject_holds(
    session: Session,
    policy: Policy,
    digests: set[str],
    now: datetime,
    other_than: str | None = None,
) -> int:
    """How many accounts (other than ``other_than``) a subject of ``digests`` holds towards its
    cap (art10): those under an active ``uncounted_by`` disposition (closed) hold none."""
    uncounted = select(StoredDisposition.account_id).where(
        StoredDisposition.kind.in_(policy.registration.uncounted_by), active_now(now)
    )
    where: list[ColumnElement[bool]] = [
        StoredAccount.subject_digest.in_(digests),
        StoredAccount.account_id.not_in(uncounted),
    ]
    if other_than is not None:
        where.append(StoredAccount.account_id != other_than)
    return int(session.scalar(select(func.count()).select_from(StoredAccount).where(*where)) or 0)


def subject_blacklisted_by(
    session: Session, policy: Policy, digests: set[str], now: datetime
) -> list[str]:
    """The accounts of a subject of ``digests`` under an active ``subjects_refused_by``
    disposition (blacklisted), in id order: each refuses the subject to registration (art8)."""
    return list(
        session.scalars(
            select(StoredAccount.account_id)
            .join(StoredDisposition, StoredDisposition.account_id == StoredAccount.account_id)
            .where(
                StoredAccount.subject_digest.in_(digests),
                StoredDisposition.kind.in_(policy.registration.subjects_refused_by),
                active_now(now),
            )
            .distinct()
            .order_by(StoredAccount.account_id)
        )
    )


def holds(
    folded_name: SQLColumnExpression[str | None], entry: SQLColumnExpression[str]
) -> ColumnElement[bool]:
    """Whether a folded name holds a protected name's folding (contains it). Foldings are
    letters and digits only, so neither holds LIKE's wildcards, and both are lower case, as
    SQLite's LIKE (case-blind for ASCII) and PostgreSQL's then agree."""
    return folded_name.contains(entry)


def not_authorised(
    entry_id: SQLColumnExpression[int], digests: Collection[str]
) -> ColumnElement[bool]:
    """Whether the protected name ``entry_id`` authorises no subject of ``digests``."""
    return ~exists().where(
        ProtectedNameSubject.entry_id == entry_id, ProtectedNameSubject.subject_digest.in_(digests)
    )


def protected_in(
    session: Session, folded_name: str, digests: Collection[str]
) -> list[tuple[int, str, str]]:
    """The (entry id, name, kind) of the protected names ``folded_name`` holds that a subject
    of ``digests`` is not authorised to use, oldest entry first (art8)."""
    entry = StoredProtectedName
    rows = session.execute(
        select(entry.id, entry.name, entry.kind)
        .where(holds(literal(folded_name), entry.folded_name), not_authorised(entry.id, digests))
        .order_by(entry.id)
    ).all()
    return [(row.id, row.name, row.kind) for row in rows]


def unauthorised(session: Session, account: StoredAccount) -> list[tuple[int, str, str]]:
    """The protected names the account's name holds that its stored subject (none: none) is
    not authorised to use, as :func:`protected_in` gives them."""
    if account.folded_name is None:
        return []
    digests = {account.subject_digest} if account.subject_digest else set()
    return protected_in(session, account.folded_name, digests)


def art8_suspended(tx: Tx, account_id: str) -> list[StoredDisposition]:
    """The account's active suspensions that a confirmed impersonation called for
    (:func:`protected.suspensions`), to be lifted once its name is corrected."""
    return list(
        tx.session.scalars(
            select(StoredDisposition)
            .join(ReviewItem, ReviewItem.id == StoredDisposition.item_id)
            .where(
                StoredDisposition.account_id == account_id,
                StoredDisposition.kind.in_(protected.suspensions(tx.policy.dispositions)),
                ReviewItem.kind == protected.KIND,
                active_now(tx.now),
            )
            .order_by(StoredDisposition.id)
        )
    )


def lock_protected_names(tx: Tx, *, shared: bool = False) -> None:
    """Hold the protected names until the transaction ends: an entry being added (exclusive)
    waits for the renames under way (shared), and they for it, so that each sees the other: a
    rename is checked against the entry, or the entry finds the new name among those that hold
    it."""
    _advisory_lock(tx, "protected-names", shared=shared)


def lock_bank(session: Session) -> None:
    """Hold the rumour bank until the transaction ends: an entry being added reads the bank to
    refuse a duplicate, and two adds of one rumour at once would each find it absent."""
    _advisory(session, "pg_advisory_xact_lock", "rumor-bank")


def lock_subject(tx: Tx, digest: str) -> None:
    """Hold the subject until the transaction ends, so that two accounts given one subject at
    once are counted one after the other."""
    _advisory_lock(tx, f"subject:{digest}")


def _advisory_lock(tx: Tx, key: str, *, shared: bool = False) -> None:
    """Hold ``key`` until the transaction ends, on PostgreSQL (SQLite has one writer at a time
    already). An advisory lock is the database's, not a schema's: the key names the schema the
    tables are found in (``current_schema()``, the search path's first), so that the service of
    one schema never waits for another's sharing the database (a staging copy, a tenant, each
    test), nor takes one schema's subject for another's."""
    _advisory(
        tx.session, "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock", key
    )


def try_advisory_lock(session: Session, key: str) -> bool:
    """Hold ``key`` until the transaction ends where no other transaction holds it (True), as
    :func:`_advisory_lock` keys it; else False at once. True on SQLite, whose write
    transactions run one at a time."""
    return _advisory(session, "pg_try_advisory_xact_lock", key) is not False


def _advisory(session: Session, function: str, key: str) -> object:
    """``function`` of PostgreSQL's advisory locks on ``key`` in the schema's name, and what it
    answered; None on SQLite."""
    if session.get_bind().dialect.name != "postgresql":
        return None
    return session.scalar(
        text(f"SELECT {function}(hashtextextended(current_schema() || '/' || :key, 0))"),
        {"key": key},
    )


def hold_name(tx: Tx, account_id: str, folded_name: str) -> None:
    """Keep ``folded_name`` among the names the account held, once: re-registration is
    checked against each of them when the account is closed (art8). Under the account's lock,
    so that two writes of one name keep it once."""
    held = tx.session.scalar(
        select(HeldName.id)
        .where(HeldName.account_id == account_id, HeldName.folded_name == folded_name)
        .limit(1)
    )
    if held is None:
        tx.session.add(HeldName(account_id=account_id, folded_name=folded_name))


OVERTURNED = and_(
    ReviewItem.status == "confirmed",
    select(StoredAppeal.id)
    .where(
        StoredAppeal.item_id == ReviewItem.id,
        StoredAppeal.account_id == ReviewItem.account_id,
        StoredAppeal.status == "upheld",
    )
    .exists(),
)
"""Whether an upheld appeal overturned the item's confirmation of its post, as SQL over the
item's row: the appeal of the post's account (the item's own; a batch member's appeal clears
that member alone). The one rule for every reader: report answers, labels and the console."""


def overturned(session: Session, item: ReviewItem) -> bool:
    """Whether :data:`OVERTURNED` holds for ``item`` as this transaction has it."""
    session.flush()
    return bool(session.scalar(select(OVERTURNED).where(ReviewItem.id == item.id)))


def after_cursor(
    moment: InstrumentedAttribute[datetime],
    row_id: InstrumentedAttribute[int],
    cursor: tuple[float, int],
) -> ColumnElement[bool]:
    """The rows a listing ordered by ``moment`` and ``row_id`` holds after ``cursor``, the
    moment and id of the last row a page gave (:func:`service.review.appeals.cursor`)."""
    after, last_id = appeals.cursor_deadline(cursor[0]), cursor[1]
    return or_(moment > after, and_(moment == after, row_id > last_id))


def known_account(session: Session, account_id: str) -> bool:
    """Whether the service knows the account: it has a credit record (it was charged or given
    a profile), or a post it stored, or a review item."""
    if session.get(StoredAccount, account_id) is not None:
        return True
    for column in (StoredPost.account_id, ReviewItem.account_id):
        if session.scalar(select(column).where(column == account_id).limit(1)) is not None:
            return True
    return False


def post_owner(tx: Tx, post_id: str | None) -> str | None:
    """The account of a post the service stored, or of an earlier review item about it."""
    if post_id is None:
        return None
    stored = tx.session.get(StoredPost, post_id)
    if stored is not None and stored.account_id is not None:
        return stored.account_id
    return tx.session.scalar(
        select(ReviewItem.account_id)
        .where(ReviewItem.post_id == post_id, ReviewItem.account_id.is_not(None))
        .order_by(ReviewItem.id.desc())
        .limit(1)
    )


def record_decision(
    tx: Tx,
    item: ReviewItem,
    action: Action,
    category: Category | None,
    basis: str | None,
    note: str | None,
    reviewer: str,
) -> ReviewDecision:
    """Decide ``item`` (its status, its lease ended) with the decision's row and its record
    ``review.decision``."""
    item.status = items.OUTCOME[action]
    item.assignee = item.lease_until = None
    row = ReviewDecision(
        item_id=item.id,
        action=action,
        category=category,
        basis=basis,
        note=note,
        reviewer=reviewer,
        policy_version=tx.policy.version,
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
            "policy_version": tx.policy.version,
        },
    )
    return row


def withdraw(tx: Tx, item: ReviewItem, by: str, note: str) -> None:
    """Dismiss an open ``item`` whose ground is gone (the protected name it was about removed,
    the dormant account back, the posts its findings named another account's), ``by`` the key
    or the service that removed the ground, ``note`` saying so: nothing is left for a reviewer
    to decide."""
    record_decision(tx, item, "dismiss", None, None, note, by)


def open_item(tx: Tx, merge_key: str) -> ReviewItem | None:
    """The open (or escalated) item of ``merge_key``, locked."""
    return tx.session.scalar(
        select(ReviewItem)
        .where(ReviewItem.merge_key == merge_key, ReviewItem.status.in_(OPEN_STATUSES))
        .with_for_update()
    )


def apply_dormancy(
    tx: Tx, account_id: str, item_id: int | None, by: str
) -> list[views.Disposition]:
    """Apply the measures a dormancy calls for (:func:`dormancy.measures`) that are not active
    already, on ``item_id`` (a confirmed ``dormant`` item; none: the sweep's), decided ``by``
    the reviewer or the service. No credit changes: a dormancy is no violation."""
    active = active_kinds(tx, account_id)
    return [
        apply_disposition(
            tx, account_id, s.kind, s.basis, item_id, dispositions.ends_at(s, tx.now), by
        )
        for s in dormancy.measures(tx.policy.dispositions)
        if s.kind not in active
    ]


RETURNED_NOTE = (
    "账号已重新登录或发帖,休眠结束 / the account logged in or posted again: its dormancy ended"
)


def wake(
    tx: Tx,
    account: StoredAccount,
    item: ReviewItem | None,
    at: datetime,
    via: dormancy.Via,
    by: str,
) -> bool:
    """Use of the locked ``account`` at ``at`` (a login reported, a post scored): its dormancy
    clock moves there when that is later (use reported late moves nothing), and the warning
    and the dormancy it was given on the clock end: what they brought is lifted (cause
    ``returned``, ``by`` the reporting key or the service), the open item (``item``, locked
    before the account, as every writer locks) dismissed, and the record ``account.returned``
    says when it was found dormant and what ended that. Whether a dormancy ended."""
    if not dormancy.returned(maybe_utc(account.active_at), at):
        return False
    account.active_at, account.active_by = at, via
    dormant, warned = account.dormant_at, account.warned_at
    # a new clock: warned again, and found dormant again, once it is as old again
    account.dormant_at = account.warned_at = None
    if dormant is None and warned is None:
        return False
    if dormant is not None:
        tx.record(
            "account.returned",
            f"account:{account.account_id}",
            {"dormant_at": utc(dormant).isoformat(), "at": at.isoformat(), "via": via},
        )
    brought = tx.session.scalars(
        select(StoredDisposition)
        .outerjoin(ReviewItem, ReviewItem.id == StoredDisposition.item_id)
        .where(
            StoredDisposition.account_id == account.account_id,
            StoredDisposition.kind.in_(dormancy.kinds(tx.policy.dispositions)),
            # the sweep's own, or a confirmed dormant item's: never a violation's
            or_(StoredDisposition.item_id.is_(None), ReviewItem.kind == dormancy.KIND),
            active_now(tx.now),
        )
        .order_by(StoredDisposition.id)
    ).all()
    for row in brought:
        lift(tx, row, by, {"cause": "returned", "via": via})
    if item is not None:
        withdraw(tx, item, by, RETURNED_NOTE)
    return dormant is not None


def new_item(
    tx: Tx,
    *,
    kind: str,
    post_id: str | None,
    account_id: str | None,
    merge_key: str,
    head: str,
    severity: str,
    reach: int,
    evidence: dict[str, Any],
    after: int | None = None,
) -> ReviewItem:
    """Open an item with its :func:`enqueued` record; ``after`` names the item decided on the
    same merge key before it."""
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
    tx.session.flush()
    tx.record(*enqueued(item.id, kind, merge_key, head, severity, after))
    return item


def flag_account(
    tx: Tx,
    item: ReviewItem | None,
    *,
    kind: str,
    merge_key: str,
    account_id: str,
    head: str,
    reach: int,
    listed: str,
    found: list[dict[str, Any]],
    grown: dict[str, Any],
    kept: int | None = None,
) -> ReviewItem:
    """Open the account's item of ``kind`` (``merge_key``, :func:`open_item`) listing ``found``
    under ``listed`` in its evidence, or add them to the open ``item``, at ``reach``, with a
    ``review.grown`` record that also holds ``grown``: one case per account while it is open,
    whose reviewer sees every finding of it. ``kept``: the most the evidence lists, the
    latest. A new item names the account's item of ``merge_key`` decided last under
    :data:`~service.review.items.EARLIER`, as a batch that grew after a decision does: its
    reviewer weighs these findings knowing how the last ones were judged."""
    if item is not None:
        evidence = item.evidence or {}
        entries = [*evidence.get(listed, []), *found]
        item.evidence = {**evidence, listed: entries[-kept:] if kept else entries}
        item.reach = reach
        item.urgency = urgency_of(tx.policy, item)
        tx.record(
            "review.grown",
            f"item:{item.id}",
            {"merge_key": item.merge_key, "reach": reach, **grown},
        )
        return item
    decided = last_decided(tx.session, merge_key)
    linked = {items.EARLIER: earlier_decision(tx.session, decided)} if decided else {}
    item = new_item(
        tx,
        kind=kind,
        post_id=None,
        account_id=account_id,
        merge_key=merge_key,
        head=head,
        severity="review",
        reach=reach,
        evidence={listed: found[-kept:] if kept else found, **linked},
        after=None if decided is None else decided.id,
    )
    item.urgency = urgency_of(tx.policy, item)
    return item


def enqueued(
    item_id: int,
    kind: str,
    merge_key: str,
    head: str | None,
    severity: str,
    after: int | None = None,
) -> tuple[str, str, dict[str, Any]]:
    """The ``review.enqueued`` record of an item opened: one per item, whatever its source,
    chained in the transaction that opens it; ``after``, the item decided on the same merge
    key before it, where there is one."""
    payload: dict[str, Any] = {
        "kind": kind,
        "merge_key": merge_key,
        "head": head,
        "severity": severity,
    }
    if after is not None:
        payload["after"] = after
    return "review.enqueued", f"item:{item_id}", payload


def urgency_of(policy: Policy, item: ReviewItem) -> float:
    rules = policy.review
    base = items.base_priority(rules, item.severity, item.reach, item.reports)
    return items.urgency(rules, base, utc(item.enqueued_at))


def item_to_join(
    session: Session, post_id: str | None, account_id: str | None
) -> ReviewItem | None:
    """The open item, locked, that a new report, match or flagged record of the post (or,
    without a post, a report on the account) joins."""
    if post_id is not None:
        where = ReviewItem.post_id == post_id
    else:
        where = ReviewItem.merge_key == f"account:{account_id}"
    return session.scalar(
        select(ReviewItem)
        .where(where, ReviewItem.status.in_(OPEN_STATUSES))
        .order_by(ReviewItem.id)
        .limit(1)
        .with_for_update()
    )


def last_decided(session: Session, merge_key: str) -> ReviewItem | None:
    """The item last decided (confirmed or dismissed) on ``merge_key``."""
    return session.scalar(
        select(ReviewItem)
        .where(ReviewItem.merge_key == merge_key, ReviewItem.status.in_(items.FINAL))
        .order_by(ReviewItem.id.desc())
        .limit(1)
    )


def earlier_decision(session: Session, decided: ReviewItem) -> dict[str, Any]:
    """What an item opened on the key of ``decided`` says of it (evidence ``EARLIER``)."""
    decision = final_decision(session, decided.id)
    return {
        "item_id": decided.id,
        "status": decided.status,
        "reviewer": decision.reviewer,
        "decided_at": utc(decision.decided_at).isoformat(),
        "reach": decided.reach,
    }


def final_decision(session: Session, item_id: int) -> ReviewDecision:
    decision = session.scalar(
        select(ReviewDecision)
        .where(ReviewDecision.item_id == item_id, ReviewDecision.action.in_(("confirm", "dismiss")))
        .order_by(ReviewDecision.id.desc())
        .limit(1)
    )
    if decision is None:
        raise ConflictError("no_decision", item_id=item_id)
    return decision


def active_now(now: datetime) -> Any:
    return and_(
        StoredDisposition.lifted_at.is_(None),
        or_(StoredDisposition.ends_at.is_(None), StoredDisposition.ends_at > now),
    )


def confirmed_item(tx: Tx, post_id: str | None) -> ReviewItem | None:
    """The item that confirmed the post, locked: what a later report or match of it joins."""
    if post_id is None:
        return None
    return tx.session.scalar(
        select(ReviewItem)
        .where(ReviewItem.post_id == post_id, ReviewItem.status == "confirmed")
        .order_by(ReviewItem.id.desc())
        .limit(1)
        .with_for_update()
    )


@dataclass(frozen=True)
class PostDecided:
    """What review decided of a post before: the item decided on it last (None: none was),
    and the heads its confirmations decided (each confirmed item's category, and the head it
    was about, which its reviewer weighed in choosing the category)."""

    last: ReviewItem | None
    confirmed: frozenset[str]

    def new_heads(self, flagged: Collection[Risk]) -> list[Risk]:
        """The heads among ``flagged`` no confirmation of the post decided: what a re-score's
        record brings for review. None of them: the violation it flags is decided (and charged)
        already, so it opens no item."""
        return [head for head in flagged if head not in self.confirmed]


def post_decided(session: Session, post_id: str) -> PostDecided:
    """:class:`PostDecided` of ``post_id``, from its confirmed and dismissed items."""
    rows = session.execute(
        select(ReviewItem, ReviewDecision.category)
        .join(ReviewDecision, ReviewDecision.item_id == ReviewItem.id)
        .where(
            ReviewItem.post_id == post_id,
            ReviewItem.status.in_(items.FINAL),
            ReviewDecision.action.in_(("confirm", "dismiss")),
        )
        .order_by(ReviewItem.id)
    ).all()
    confirmed = {
        head
        for item, category in rows
        if item.status == "confirmed"
        for head in (category, item.head)
        if head is not None
    }
    return PostDecided(rows[-1][0] if rows else None, frozenset(confirmed))


def charged_already(tx: Tx, item: ReviewItem, account_id: str) -> views.Uncharged | None:
    """Why confirming ``item`` charges ``account_id`` nothing: another item's confirmation
    charged the account for one of the same posts (an appeal's reversal included: the post
    was decided)."""
    posts = items.posts_charged(item.post_id, item.account_id, item.evidence, account_id)
    if not posts:
        return None
    charged = tx.session.execute(
        select(ReviewItem.id, ReviewItem.post_id, ReviewItem.account_id, ReviewItem.evidence)
        .join(CreditEntry, CreditEntry.item_id == ReviewItem.id)
        .where(
            CreditEntry.account_id == account_id,
            CreditEntry.reason == "violation",
            ReviewItem.id != item.id,
        )
        .order_by(ReviewItem.id)
    ).all()
    for other, post_id, owner, evidence in charged:
        same = posts & items.posts_charged(post_id, owner, evidence, account_id)
        if same:
            return views.Uncharged(
                account_id=account_id,
                reason=f"post {min(same)} was charged to the account by item {other}",
                charged_by=other,
            )
    return None
