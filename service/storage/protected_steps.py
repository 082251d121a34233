"""The steps of a review write on subjects and protected names: the accounts a subject holds
towards its cap and those that blacklist it (art10, art19), the protected names a name holds
without authorisation, the suspensions an impersonation brought, and the names an account held.
Its own module because registration, renames and the protected names' entries share them."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime

from sqlalchemy import ColumnElement, SQLColumnExpression, exists, func, literal, select
from sqlalchemy.orm import Session

from service.policy import Policy
from service.review import dispositions, protected, views
from service.storage.credit_steps import (
    active_kinds,
    active_rows,
    apply_disposition,
    locked_account,
    under,
)
from service.storage.tables import (
    HeldName,
    ProtectedNameSubject,
    ReviewItem,
    StoredAccount,
    StoredDisposition,
    StoredProtectedName,
)
from service.storage.transaction import Tx


def subject_holds(
    session: Session,
    policy: Policy,
    digests: set[str],
    now: datetime,
    other_than: str | None = None,
) -> int:
    """How many accounts (other than ``other_than``) a subject of ``digests`` holds towards its
    cap (art10): those under an active ``uncounted_by`` disposition (closed) hold none."""
    where: list[ColumnElement[bool]] = [
        StoredAccount.subject_digest.in_(digests),
        ~under(StoredAccount.account_id, policy.registration.uncounted_by, now),
    ]
    if other_than is not None:
        where.append(StoredAccount.account_id != other_than)
    return int(session.scalar(select(func.count()).select_from(StoredAccount).where(*where)) or 0)


def subject_blacklisted_by(
    session: Session, policy: Policy, digests: set[str], now: datetime
) -> list[str]:
    """The accounts of a subject of ``digests`` under an active ``subjects_refused_by``
    disposition (blacklisted, re-registration banned), in id order: each refuses the subject
    to registration (art19's 列入黑名单 and 禁止重新注册; art8's third paragraph refuses a closed
    account's name, not its subject)."""
    return list(
        session.scalars(
            select(StoredAccount.account_id)
            .where(
                StoredAccount.subject_digest.in_(digests),
                under(StoredAccount.account_id, policy.registration.subjects_refused_by, now),
            )
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
    of ``digests`` is not authorised to use, oldest entry first (art8, second paragraph)."""
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
    query = (
        select(StoredDisposition)
        .join(ReviewItem, ReviewItem.id == StoredDisposition.item_id)
        .where(ReviewItem.kind == protected.KIND)
    )
    return active_rows(tx, query, account_id, protected.suspensions(tx.policy.dispositions))


def terminate(tx: Tx, suspension: StoredDisposition) -> views.Disposition:
    """art8's termination of the account whose ``suspension`` ended with its name uncorrected
    (``registration.protected_uncorrected``, basis ``protected_basis``), on the suspension's
    item, decided by the reviewer who confirmed it (whose decision gave the deadline)."""
    step = protected.termination(tx.policy)
    return apply_disposition(
        tx,
        suspension.account_id,
        step.kind,
        tx.policy.registration.protected_basis,
        suspension.item_id,
        dispositions.ends_at(step, tx.now),
        suspension.decided_by,
    )


def still_uncorrected(
    tx: Tx, account_id: str, lifted: Sequence[views.Disposition]
) -> list[views.Disposition]:
    """The termination an account closed already when its art8 suspension ended
    (``closed_already``) is due once that close is ``lifted`` (by an upheld appeal of another
    violation), while its name still holds what the suspension asked it to correct: the close
    stood in for the termination, and the name calls for one still. A close that began after
    the suspension settled stood in for nothing (the name was cleared then, or terminated)."""
    step = protected.termination(tx.policy)
    # most upheld appeals lift no close: nothing to read then
    closes = [d.starts_at for d in lifted if d.kind == step.kind]
    if not closes or step.kind in active_kinds(tx, account_id):
        return []
    # settled and never lifted: an appeal of the impersonation lifts its suspension too. Read
    # off the account's impersonation items (their merge key, ix_queue_merge) and the
    # dispositions applied on them (ix_dispositions_item_account), the last of them taken here:
    # joined to the items, the statement read every account's art8 suspensions, ended ones
    # included, off ix_dispositions_kind_ends (or on SQLite, given statistics, every
    # disposition of the account not lifted); ordered by id in SQL, SQLite read the table in
    # that order. The kinds are compared so that no index on them is taken, as in active_on
    impersonations = select(ReviewItem.id).where(
        ReviewItem.merge_key == protected.merge_key(account_id), ReviewItem.kind == protected.KIND
    )
    found = tx.session.scalars(
        select(StoredDisposition).where(
            StoredDisposition.item_id.in_(impersonations),
            StoredDisposition.account_id == account_id,
            StoredDisposition.kind.concat("").in_(protected.suspensions(tx.policy.dispositions)),
            StoredDisposition.settled_at.is_not(None),
            StoredDisposition.settled_at >= min(closes),
            StoredDisposition.lifted_at.is_(None),
        )
    ).all()
    settled = max(found, key=lambda row: row.id, default=None)
    if settled is None:
        return []
    # the protected names held (shared) since before the appeal's lock, the account locked by
    # the appeal's reversal already
    account = locked_account(tx, account_id)
    return [terminate(tx, settled)] if unauthorised(tx.session, account) else []


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
