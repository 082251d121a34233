"""Dormant accounts' storage (art10, :mod:`service.review.dormancy`): the use the publish path
saw, written a day at a time in one statement, and the sweep that finds the accounts whose
clock is ``after_days`` old, once per dormancy, and applies the policy's ``[dormancy]``."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import cast

from sqlalchemy import ColumnElement, Table, bindparam, or_, select, update

from service.policy import Policy
from service.review import dormancy
from service.storage.review_rows import maybe_utc
from service.storage.review_sql import ReviewSql
from service.storage.review_steps import (
    Tx,
    active_kinds,
    apply_disposition,
    apply_dormancy,
    last_decided,
    locked_account,
    new_item,
    open_item,
    urgency_of,
    wake,
)
from service.storage.tables import StoredAccount

SWEEP_ACCOUNTS = 50
"""The most accounts one sweep finds dormant: the first sweeps after a quiet half year may find
many at once (every account the migration started the clock of and that was not used since),
and the maintenance thread that sweeps also writes out the spool, so the rest wait for the next
sweep, ``storage_retry_s`` later."""

READ_ACCOUNTS = 500
"""Accounts named in one ``IN`` list (SQLite takes at most 32,766 parameters a statement)."""


class DormancySql(ReviewSql):
    """Mixed into :class:`~service.storage.sql.SqlRepository`."""

    def record_use(self, policy: Policy, used: Mapping[str, datetime]) -> int:
        """Move the dormancy clock of each stored account of ``used`` (account id: when the
        publish path scored a post of it) forward to that moment, in one statement for those
        not dormant; end the dormancy of the others (:func:`wake`, by the service, via ``post``),
        each in a transaction of its own. An account the service has no row for (no profile,
        never charged) is left as it is: nothing registered it here. How many dormancies
        ended."""
        if not used:
            return 0
        accounts = cast(Table, StoredAccount.__table__)
        moved = (
            update(accounts)
            .where(
                accounts.c.account_id == bindparam("b_account"),
                accounts.c.dormant_at.is_(None),
                or_(accounts.c.active_at.is_(None), accounts.c.active_at < bindparam("b_at")),
            )
            .values(active_at=bindparam("b_at"), active_by="post")
        )
        # in account order, as every writer of several accounts locks them
        ordered = sorted(used)
        with self._writing() as session:
            session.execute(moved, [{"b_account": a, "b_at": used[a]} for a in ordered])
        # after the update committed: a sweep that finds an account dormant meanwhile reads the
        # moved clock under the account's lock and leaves it, or committed first and is found
        asleep: list[str] = []
        with self._session() as session:
            for start in range(0, len(ordered), READ_ACCOUNTS):
                chunk = ordered[start : start + READ_ACCOUNTS]
                asleep += session.scalars(
                    select(StoredAccount.account_id).where(
                        StoredAccount.account_id.in_(chunk), StoredAccount.dormant_at.is_not(None)
                    )
                ).all()
        ended = 0
        for account_id in sorted(asleep):
            with self._write(policy, None) as tx:
                item = open_item(tx, dormancy.merge_key(account_id))
                account = locked_account(tx, account_id)
                ended += wake(tx, account, item, used[account_id], "post", dormancy.SERVICE)
        return ended

    def settle_dormancy(self, policy: Policy, now: datetime | None = None) -> int:
        """Find the accounts whose dormancy clock is ``dormancy.after_days`` old by ``now`` and
        not found dormant yet (at most :data:`SWEEP_ACCOUNTS`, longest unused first), and apply
        the policy's ``[dormancy]`` to each (:func:`_fall_dormant`), in a transaction of its
        own, once: every server process sweeps, and the first to lock the account marks it
        (``dormant_at``), so that another, or a restart, finds it marked. Nothing under
        ``action = "none"`` without ``notify``. How many accounts were found dormant."""
        rules = policy.dormancy
        if rules.action == "none" and not rules.notify:
            return 0
        moment = now or datetime.now(UTC)
        before = dormancy.dormant_before(rules, moment)
        due = (
            select(StoredAccount.account_id)
            .where(*_awake(), StoredAccount.active_at <= before)
            .order_by(StoredAccount.active_at, StoredAccount.account_id)
            .limit(SWEEP_ACCOUNTS)
        )
        # most sweeps find nothing: they look without taking SQLite's write lock
        with self._session() as session:
            found = session.scalars(due).all()
        dormant = 0
        for account_id in found:
            with self._write(policy, moment) as tx:
                dormant += _fall_dormant(tx, account_id, before)
        return dormant


def _fall_dormant(tx: Tx, account_id: str, before: datetime) -> bool:
    """Mark ``account_id`` dormant, unless it was marked or used since the sweep read it (its
    clock read again under its lock), and apply ``[dormancy]``: its ``dormant`` item opened
    (``review``), the notice applied (``notify``), the measures applied by the service
    (``suspend``); the record ``account.dormant`` says on what clock and what followed."""
    key = dormancy.merge_key(account_id)
    # the item before the account, as every writer locks
    item = open_item(tx, key)
    account = locked_account(tx, account_id)
    clock = maybe_utc(account.active_at)
    if account.dormant_at is not None or clock is None or clock > before:
        return False
    account.dormant_at = tx.now
    rules = tx.policy.dormancy
    login = maybe_utc(account.login_at)
    facts = {
        "active_at": clock.isoformat(),
        "active_by": account.active_by,
        "last_login_at": None if login is None else login.isoformat(),
        "after_days": rules.after_days,
    }
    if rules.action == "review" and item is None:
        decided = last_decided(tx.session, key)
        item = new_item(
            tx,
            kind=dormancy.KIND,
            post_id=None,
            account_id=account_id,
            merge_key=key,
            head=dormancy.CATEGORY,
            severity="review",
            reach=account.followers,
            evidence={"basis": rules.basis, **facts},
            after=None if decided is None else decided.id,
        )
        item.urgency = urgency_of(tx.policy, item)
    item_id = None if item is None else item.id
    tx.record(
        "account.dormant",
        f"account:{account_id}",
        {**facts, "action": rules.action, "item": item_id},
    )
    if rules.notify and dormancy.NOTICE not in active_kinds(tx, account_id):
        apply_disposition(
            tx, account_id, dormancy.NOTICE, rules.basis, item_id, None, dormancy.SERVICE
        )
    if rules.action == "suspend":
        apply_dormancy(tx, account_id, None, dormancy.SERVICE)
    return True


def _awake() -> tuple[ColumnElement[bool], ...]:
    """An account not found dormant: :data:`~service.storage.tables.AWAKE`, as SQLite finds its
    partial index only for a query that says its predicate."""
    return (StoredAccount.dormant_at.is_(None),)
