"""The steps of a review write on accounts: their rows and credit, the violations charged and
reversed, and the dispositions applied and lifted (a violation's, an upheld appeal's, a
dormancy's). Its own module because items, protected names and dormancy change credit and
dispositions through these steps alone."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar, cast

from sqlalchemy import ColumnElement, Select, SQLColumnExpression, and_, func, or_, select
from sqlalchemy.dialects.postgresql import Insert as PostgresqlInsert
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import Insert as SqliteInsert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from service.review import credit, dispositions, dormancy, signups, views
from service.review.items import Violation
from service.storage.review_rows import (
    APPLIED,
    LIFTED,
    change_view,
    disposition_view,
    utc,
)
from service.storage.tables import (
    CreditEntry,
    ReviewItem,
    SignupBatchMember,
    StoredAccount,
    StoredAppeal,
    StoredDisposition,
)
from service.storage.transaction import CodePoints, Tx, locking

Row = TypeVar("Row")
"""The row of a select of dispositions (:func:`active_on`)."""


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


def locked_account(tx: Tx, account_id: str, *, registering: bool = False) -> StoredAccount:
    """The account's row, locked; created at the initial credit when it is new, ``registering``
    it (a profile made it: ``registered_at``, which a batch of registrations counts, art10)."""
    values: dict[str, str | int | datetime] = new_account(tx, account_id)
    if registering:
        values["registered_at"] = tx.now
    statement = account_insert(tx).values(values)
    tx.session.execute(statement.on_conflict_do_nothing(index_elements=["account_id"]))
    account = tx.session.scalar(
        locking(
            select(StoredAccount).where(StoredAccount.account_id == account_id)
        ).execution_options(populate_existing=True)
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


CHARGE_CHUNK = 100
"""The most accounts one transaction of a confirmation charges: a registration batch's
decision charges the accounts its item lists (:data:`~service.review.signups.LISTED`, as many),
and its members are then charged this many a transaction, so that no write holds more account
locks than this however large the batch (:func:`~service.storage.item_steps.charge_members`)."""


def accounts_of(item: ReviewItem) -> list[str]:
    """The accounts an item names: its own, a cluster's members and the accounts a
    registration batch lists (:mod:`service.review.signups`), the ones its answers show. In
    account order: the order its confirmation locks them in, as every writer of several
    accounts does."""
    evidence = item.evidence or {}
    listed = [*evidence.get("members", []), *evidence.get("accounts", [])]
    found = {m["account_id"] for m in listed if isinstance(m, dict) and m.get("account_id")}
    if item.account_id is not None:
        found.add(item.account_id)
    return sorted(found)


def members_after(session: Session, item_id: int, after: str) -> list[str]:
    """The next :data:`CHARGE_CHUNK` members of a registration batch's item
    (``signup_batch_members``) after the account ``after`` (empty: from the first), in account
    order: Python's, by code point (:class:`~service.storage.transaction.CodePoints`) whatever
    the database's collation, the order a confirmation locks them in, as every writer of
    several accounts does."""
    account = CodePoints(SignupBatchMember.account_id)
    return list(
        session.scalars(
            select(SignupBatchMember.account_id)
            .where(SignupBatchMember.item_id == item_id, account > after)
            .order_by(account)
            .limit(CHARGE_CHUNK)
        )
    )


def unlisted_members(session: Session, item_id: int, listed: Collection[str]) -> int:
    """How many members of a registration batch's item its listing leaves out."""
    count = session.scalar(
        select(func.count())
        .select_from(SignupBatchMember)
        .where(SignupBatchMember.item_id == item_id, SignupBatchMember.account_id.not_in(listed))
    )
    return int(count or 0)


def charged_by(session: Session, item_id: int, accounts: Collection[str]) -> set[str]:
    """Those of ``accounts`` the item's confirmation charged already (their violation entries,
    one per item and account: ``uq_credit_item_reason``)."""
    return set(
        session.scalars(
            select(CreditEntry.account_id).where(
                CreditEntry.item_id == item_id,
                CreditEntry.reason == "violation",
                CreditEntry.account_id.in_(accounts),
            )
        )
    )


def charged_at(session: Session, item_id: int, account_id: str) -> datetime | None:
    """When the item's confirmation charged ``account_id`` (its violation entry), if it did:
    the decision's moment, or a later one for a registration batch's member charged after the
    decision (:func:`~service.storage.item_steps.charge_members`)."""
    at = session.scalar(
        select(CreditEntry.at).where(
            CreditEntry.item_id == item_id,
            CreditEntry.reason == "violation",
            CreditEntry.account_id == account_id,
        )
    )
    return None if at is None else utc(at)


def violator(session: Session, item: ReviewItem, account_id: str) -> bool:
    """Whether a confirmation of the item is a violation of ``account_id``: an account it names
    (:func:`accounts_of`), or any member of a registration batch, listed or not."""
    if item.kind != signups.KIND:
        return account_id in accounts_of(item)
    return session.get(SignupBatchMember, (item.id, account_id)) is not None


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
            tx,
            account_id,
            s.kind,
            s.basis,
            item.id,
            dispositions.ends_at(s, tx.now),
            reviewer,
            standing=dispositions.reached(s, account.level, earlier + 1),
        )
        for s in steps
    ]
    return change, applied


def active_kinds(tx: Tx, account_id: str) -> set[str]:
    """The kinds of the dispositions active on the account now."""
    return {
        kind
        for query in active_on(select(StoredDisposition.kind), account_id, tx.now)
        for kind in tx.session.scalars(query)
    }


def apply_disposition(
    tx: Tx,
    account_id: str,
    kind: str,
    basis: str,
    item_id: int | None,
    ends_at: datetime | None,
    reviewer: str,
    *,
    standing: bool = False,
) -> views.Disposition:
    """Apply a disposition, on the item whose decision called for it (none: the dormancy
    sweep's, on the policy alone), decided by ``reviewer``; ``standing``: a step of the ladder
    that the account's standing reached (:attr:`StoredDisposition.standing`)."""
    row = StoredDisposition(
        account_id=account_id,
        kind=kind,
        basis=basis,
        item_id=item_id,
        starts_at=tx.now,
        ends_at=ends_at,
        decided_by=reviewer,
        policy_version=tx.policy.version,
        standing=standing,
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
        undone, rules = ids.index(deducted.id), tx.policy.credit
        delta = credit.reversal(rules, account.credit, entries, undone)
        account.clean_since = credit.clean_since_reversed(
            rules, utc(account.clean_since), entries, undone
        )
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
    # of violations called for, whichever violation they were applied on: those the standing
    # reached, of a kind it no longer calls for, so that one of the same kind applied on other
    # grounds stays (art8's termination of an uncorrected name is a `close_account` too, and
    # rests on the name alone). Not by their basis: the ladder's may have changed since.
    gone = before - dispositions.called_for(
        ladder, account.level, violations_since(tx, account.account_id, since)
    )
    lifted = appealed(tx, appeal.account_id, appeal.item_id, gone)
    done += [lift(tx, row, reviewer, {"appeal": appeal.id}) for row in lifted]
    done += still_due(tx, account, lifted, reviewer)
    return done


def appealed(
    tx: Tx, account_id: str, item_id: int, gone: Collection[str]
) -> list[StoredDisposition]:
    """What an upheld appeal of the account's item lifts, in the order they were written (id):
    the dispositions applied on the item, not lifted (ended ones too), and the active ones the
    standing reached of the kinds in ``gone``. The first read off
    ``ix_dispositions_item_account``, the second as :func:`active_on` reads them: neither along
    the account's history, which grows without bound."""
    stored = StoredDisposition
    own = tx.session.scalars(
        select(stored).where(
            stored.item_id == item_id,
            stored.account_id == account_id,
            stored.lifted_at.is_(None),
        )
    ).all()
    reached = (
        active_rows(tx, select(stored).where(stored.standing.is_(True)), account_id, gone)
        if gone
        else []
    )
    # one applied on the item that the standing reached too is one to lift
    return sorted({row.id: row for row in [*own, *reached]}.values(), key=lambda row: row.id)


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
    for, applied again under its latest standing violation until they would have ended had
    the reversed one never been confirmed: the step's days from that violation, not the
    lifted row's end, which ran from the reversed one (a warning lifted with a violation
    confirmed after the other's warning had run out is not given again, and one lifted with
    a violation before it runs its days from the other). An upheld appeal undoes what its
    decision caused, not what the other violations cause. Each rests on the basis the ladder
    gives its step now, as one the standing called for now."""
    rules = tx.policy.credit
    standing = violations_since(tx, account.account_id, tx.now - timedelta(days=rules.window_days))
    active = active_kinds(tx, account.account_id)
    steps = {
        s.kind: s for s in dispositions.due(tx.policy.dispositions, account.level, standing, active)
    }
    latest = tx.session.execute(
        select(CreditEntry.item_id, CreditEntry.at)
        .where(
            CreditEntry.account_id == account.account_id,
            CreditEntry.reason == "violation",
            CreditEntry.item_id.not_in(reversed_items(account.account_id)),
        )
        .order_by(CreditEntry.at.desc(), CreditEntry.id.desc())
        .limit(1)
    ).first()
    if latest is None:
        return []
    ends = {
        row.id: dispositions.ends_at(steps[row.kind], utc(latest.at))
        for row in lifted
        if row.kind in steps
    }
    return [
        apply_disposition(
            tx,
            account.account_id,
            row.kind,
            steps[row.kind].basis,
            latest.item_id,
            ends[row.id],
            reviewer,
            standing=True,
        )
        for row in lifted
        if row.id in ends and dispositions.is_active(ends[row.id], False, tx.now)
    ]


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


def active_on(
    query: Select[Row],
    account_id: str | SQLColumnExpression[str],
    now: datetime,
    kinds: Collection[str] | None = None,
) -> tuple[Select[Row], Select[Row]]:
    """``query`` (a select of dispositions, with its joins and conditions) kept to those active
    on the account at ``now`` (:func:`active_now`), of ``kinds`` (None: any), as two statements
    whose rows together are the ones it gives: those without an end, and those ending after
    ``now``. An account's lifted and ended dispositions stay in its history, which grows
    without bound, and are read by neither: each is written as the predicate of its index of
    the dispositions not lifted (SQLite uses a partial index only then),
    ``ix_dispositions_account_lasting`` (account, moment and id: a page of them in the order
    they were applied) and ``ix_dispositions_account_ending`` (account and end: whether one is
    active is a matter of the time, which no index predicate holds). :func:`active_now` in one
    statement was read along every disposition of the account, on either database."""
    stored = StoredDisposition
    mine = query.where(stored.account_id == account_id, stored.lifted_at.is_(None))
    if kinds is not None:
        # looked up by the account: SQLite, which keeps no statistics, would take the index on
        # kinds and ends for a kind compared as it is, and read every account's of the kinds
        mine = mine.where(stored.kind.concat("").in_(kinds))
    return mine.where(stored.ends_at.is_(None)), mine.where(stored.ends_at > now)


def under(
    account_id: SQLColumnExpression[str], kinds: Collection[str], now: datetime
) -> ColumnElement[bool]:
    """Whether the account ``account_id`` (a column of the statement's rows, which each part
    refers to) is under a disposition of ``kinds`` active at ``now``: either part of
    :func:`active_on`, each read off its index for that account alone. Joined to the
    dispositions, or compared with a subquery of them, a subject's accounts were read with
    every account's of the kinds (``ix_dispositions_kind_ends``: a figure that grows with the
    platform's closed and blacklisted accounts, not with the subject's) or with every
    disposition of each account not lifted."""
    lasting, ending = active_on(select(StoredDisposition.id), account_id, now, kinds)
    return or_(lasting.exists(), ending.exists())


def active_rows(
    tx: Tx,
    query: Select[StoredDisposition],
    account_id: str,
    kinds: Collection[str] | None = None,
) -> list[StoredDisposition]:
    """The dispositions ``query`` gives of ``kinds`` that are active on the account now
    (:func:`active_on`), in the order they were written (id)."""
    found = [
        row
        for part in active_on(query, account_id, tx.now, kinds)
        for row in tx.session.scalars(part)
    ]
    return sorted(found, key=lambda row: row.id)


def active_now(now: datetime) -> Any:
    return and_(
        StoredDisposition.lifted_at.is_(None),
        or_(StoredDisposition.ends_at.is_(None), StoredDisposition.ends_at > now),
    )
