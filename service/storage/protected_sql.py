"""The protected names' storage (art8, :mod:`service.review.protected`): adding an entry,
listing and removing them, each change chained with who made it; an entry added sends the
accounts whose names hold it to review in its own transaction, and one removed releases those
it alone held; and the sweep that settles the end of each art8 suspension, terminating the
service of an account that did not correct its name."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import cast

from sqlalchemy import ColumnElement, Select, delete, literal, or_, select

from service.policy import Policy
from service.review import protected, views
from service.review.items import ConflictError, NotFoundError
from service.review.protected import ProtectedKind
from service.storage.credit_steps import (
    active_kinds,
    active_now,
    lift,
    locked_account,
)
from service.storage.item_steps import (
    OPEN_STATUSES,
    last_decided,
    new_item,
    open_item,
    urgency_of,
    withdraw,
)
from service.storage.protected_steps import art8_suspended, holds, terminate, unauthorised
from service.storage.repository import Idempotency
from service.storage.review_rows import utc
from service.storage.review_sql import ReviewSql, Sweep
from service.storage.tables import (
    ProtectedNameSubject,
    ReviewItem,
    StoredAccount,
    StoredDisposition,
    StoredProtectedName,
)
from service.storage.transaction import CodePoints, Tx, lock_protected_names, locking


class ProtectedSql(ReviewSql):
    """Mixed into :class:`~service.storage.sql.SqlRepository`."""

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
        """Keep ``name`` protected, for the subjects ``subject_ids`` (normalised and hashed
        as accounts' subjects are), and open or join the ``impersonation`` item of every
        account whose name holds it and whose subject is not one of them. Raises
        :class:`~service.review.protected.EntryNameError` for a name that folds too short or
        too long, :class:`ConflictError` for one that is protected already."""
        folded = protected.entry_name(policy.registration, name)
        digests = sorted({self.subjects.digest(s) for s in subject_ids})
        # an account's subject stored before ids were normalised matches the spelling it was
        # given in, as the re-registration check matches it
        stripped = sorted({self.subjects.stripped(s) for s in subject_ids} - set(digests))

        def run(tx: Tx) -> views.ProtectedNameAdded:
            lock_protected_names(tx)
            earlier = tx.session.scalar(
                select(StoredProtectedName).where(StoredProtectedName.folded_name == folded)
            )
            if earlier is not None:
                raise ConflictError("protected_already", name=earlier.name, entry_id=earlier.id)
            entry = StoredProtectedName(
                name=name, folded_name=folded, kind=kind, created_at=tx.now, created_by=by
            )
            tx.session.add(entry)
            tx.session.flush()
            tx.session.add_all(
                ProtectedNameSubject(entry_id=entry.id, subject_digest=d, stripped=d in stripped)
                for d in digests + stripped
            )
            tx.record(
                "protected.added",
                f"protected:{entry.id}",
                {
                    "name": name,
                    "kind": kind,
                    "subjects": digests,
                    "stripped_subjects": stripped,
                    "by": by,
                },
            )
            holders = _send_holders_to_review(tx, entry, digests + stripped)
            return views.ProtectedNameAdded(**_view(entry, digests).model_dump(), holders=holders)

        # retried on a lost race (a deadlock, the unique folded name), as review writes are
        return self._once(policy, now, idem, views.ProtectedNameAdded, run)

    def settle_deadlines(self, policy: Policy, now: datetime | None = None) -> int:
        """Settle the end of every art8 suspension (:func:`protected.suspensions`, applied on
        an ``impersonation`` item) that ended by ``now``, neither lifted nor settled: a name
        still uncorrected terminates the service (:func:`protected.at_deadline`). Each in its
        own transaction, once: every server process sweeps, and the first to lock the account
        settles it (``settled_at``), so that another, or a restart, finds it settled. How many
        accounts were terminated (:class:`SweepIncompleteError` where some suspensions could
        not be settled, after the others)."""
        moment = now or datetime.now(UTC)
        ended = (
            select(StoredDisposition.id, StoredDisposition.account_id)
            .join(ReviewItem, ReviewItem.id == StoredDisposition.item_id)
            .where(
                StoredDisposition.kind.in_(protected.suspensions(policy.dispositions)),
                StoredDisposition.ends_at <= moment,
                *_unsettled(),
                ReviewItem.kind == protected.KIND,
            )
            .order_by(StoredDisposition.ends_at, StoredDisposition.id)
        )
        # most sweeps find nothing: they look without taking SQLite's write lock
        with self._session() as session:
            due = session.execute(ended).all()
        sweep = Sweep("art8_deadlines")
        return sweep.done(
            sum(self._swept(sweep, a, policy, moment, _terminated, d, a) for d, a in due)
        )

    def protected_names(self) -> list[views.ProtectedName]:
        """Every entry, oldest first."""
        with self._session() as session:
            entries = session.scalars(
                select(StoredProtectedName).order_by(StoredProtectedName.id)
            ).all()
            subjects: dict[int, list[str]] = {}
            for entry_id, digest in session.execute(_authorised()):
                subjects.setdefault(entry_id, []).append(digest)
            return [_view(entry, subjects.get(entry.id, [])) for entry in entries]

    def remove_protected_name(
        self,
        policy: Policy,
        entry_id: int,
        by: str,
        *,
        idem: Idempotency | None = None,
        now: datetime | None = None,
    ) -> views.ProtectedName:
        """Remove an entry (``by`` whom, for its record), answering it as it was (the answer a
        retry with ``idem`` gets); :class:`NotFoundError` if absent. What rested on it alone
        goes with it (:func:`_release`): an account whose name it sent to review or whose art8
        suspension it called for, and whose name holds no other entry its subject is not
        authorised for, has its open ``impersonation`` item dismissed and its suspension lifted
        (cause ``entry_removed``), both ``by`` the remover. A termination at the deadline
        stays: an upheld appeal is its remedy."""

        def run(tx: Tx) -> views.ProtectedName:
            # as adding one does: an entry added meanwhile, that a name released here holds
            # too, comes after the removal (the chain's order), never before a release that
            # found the name holding no other; and two removals of one entry, one at a time
            lock_protected_names(tx)
            entry = tx.session.get(StoredProtectedName, entry_id)
            if entry is None:
                raise NotFoundError("no_protected_name", entry_id=entry_id)
            # the items before the accounts, each in account order, as adding an entry locks
            # them: its open items, and the confirmed ones whose suspension is running
            running = select(StoredDisposition.item_id).where(
                StoredDisposition.kind.in_(protected.suspensions(policy.dispositions)),
                active_now(tx.now),
            )
            about = tx.session.scalars(
                locking(
                    select(ReviewItem)
                    .where(
                        ReviewItem.kind == protected.KIND,
                        or_(ReviewItem.status.in_(OPEN_STATUSES), ReviewItem.id.in_(running)),
                    )
                    .order_by(CodePoints(ReviewItem.account_id), ReviewItem.id)
                )
            ).all()
            held = [item for item in about if entry_id in _entries_of(item)]
            authorised = _authorised().where(ProtectedNameSubject.entry_id == entry_id)
            removed = _view(entry, [digest for _, digest in tx.session.execute(authorised)])
            tx.session.execute(
                delete(ProtectedNameSubject).where(ProtectedNameSubject.entry_id == entry_id)
            )
            tx.session.delete(entry)
            tx.session.flush()
            tx.record(
                "protected.removed",
                f"protected:{entry_id}",
                {"name": entry.name, "kind": entry.kind, "by": by},
            )
            for account_id in sorted({i.account_id for i in held if i.account_id is not None}):
                opened = [i for i in held if i.account_id == account_id]
                _release(tx, account_id, opened, entry, by)
            return removed

        return self._once(policy, now, idem, views.ProtectedName, run)


def _authorised() -> Select[int, str]:
    """The subjects' digests entries authorise, by entry: those of the ids as normalised, not
    those of the ids only stripped (kept for accounts stored before ids were normalised)."""
    return (
        select(ProtectedNameSubject.entry_id, ProtectedNameSubject.subject_digest)
        .where(~ProtectedNameSubject.stripped)
        .order_by(ProtectedNameSubject.entry_id, ProtectedNameSubject.subject_digest)
    )


def _entries_of(item: ReviewItem) -> set[int]:
    """The ids of the protected names an ``impersonation`` item holds in its evidence."""
    return {int(p["id"]) for p in (item.evidence or {}).get("protected", [])}


def _release(
    tx: Tx, account_id: str, items: list[ReviewItem], entry: StoredProtectedName, by: str
) -> None:
    """``entry`` removed, release ``account_id`` from what its ``items`` (locked) rested on,
    unless its name still holds an entry its subject is not authorised for: dismiss those still
    open, and lift its art8 suspensions, ``by`` the remover."""
    account = locked_account(tx, account_id)
    if unauthorised(tx.session, account):
        return
    for row in art8_suspended(tx, account_id):
        lift(tx, row, by, {"cause": "entry_removed", "entry": entry.id, "name": account.name})
    note = (
        f"受保护名称“{entry.name}”(条目 {entry.id})已移除,账号名称不再含有未获授权的受保护名称 / "
        f"protected name {entry.name!r} (entry {entry.id}) was removed: the account's name "
        "holds no other protected name its subject is not authorised for"
    )
    for item in items:
        if item.status in OPEN_STATUSES:
            withdraw(tx, item, by, note)


def _terminated(tx: Tx, disposition_id: int, account_id: str) -> bool:
    """:func:`_settle`: whether it terminated the service."""
    return _settle(tx, disposition_id, account_id) == "terminated"


def _settle(tx: Tx, disposition_id: int, account_id: str) -> protected.Outcome | None:
    """Settle the end of the art8 suspension ``disposition_id`` of ``account_id``
    (:func:`protected.at_deadline`), unless it was settled or lifted already (None): the name
    it holds now, with the subject stored, decides; the record ``protected.deadline`` says what
    was settled and on what, and a termination is applied on the suspension's item, decided by
    the reviewer who confirmed it (whose decision gave the deadline), with art8's basis."""
    # the entries its name holds decide, so, as a rename does, the protected names (shared)
    # before any row: an entry added or removed meanwhile waits for this, or this for it, and
    # the chain gives them in that order (never an entry the name holds added before a record
    # that found it holding none). Then the account, as its other writers lock it (a rename, a
    # decision, an appeal): each waits for this, or this for it, and sees what it did
    lock_protected_names(tx, shared=True)
    account = locked_account(tx, account_id)
    row = tx.session.scalar(
        select(StoredDisposition)
        .where(StoredDisposition.id == disposition_id, *_unsettled())
        .with_for_update()
    )
    if row is None:
        # another process settled it first, or it was lifted on appeal since the sweep read it
        return None
    ends_at, item_id = row.ends_at, row.item_id
    assert ends_at is not None and item_id is not None, "the sweep reads items' ended suspensions"
    held = unauthorised(tx.session, account)
    step = protected.termination(tx.policy)
    outcome = protected.at_deadline(bool(held), step.kind in active_kinds(tx, account_id))
    row.settled_at = tx.now
    tx.record(
        "protected.deadline",
        f"account:{account_id}",
        {
            "disposition": row.id,
            "kind": row.kind,
            "item": item_id,
            "ends_at": utc(ends_at).isoformat(),
            "name": account.name,
            "protected": [{"id": i, "name": n, "kind": k} for i, n, k in held],
            "outcome": outcome,
        },
    )
    if outcome == "terminated":
        terminate(tx, row)
    return outcome


def _unsettled() -> tuple[ColumnElement[bool], ...]:
    """A suspension whose end is still to settle: :data:`UNSETTLED`, as SQLite finds its
    partial index only for a query that says its predicate."""
    return (StoredDisposition.settled_at.is_(None), StoredDisposition.lifted_at.is_(None))


def _view(entry: StoredProtectedName, digests: list[str]) -> views.ProtectedName:
    return views.ProtectedName(
        id=entry.id,
        name=entry.name,
        kind=cast(ProtectedKind, entry.kind),
        subjects=digests,
        created_at=utc(entry.created_at),
        created_by=entry.created_by,
    )


def _send_holders_to_review(
    tx: Tx, entry: StoredProtectedName, digests: list[str]
) -> list[views.Holder]:
    """Open the ``impersonation`` item of each account whose name holds ``entry`` and whose
    subject (none given counts as none authorised) is not one of ``digests``, or add the entry
    to its open one; in account order, each item locked before the next."""
    accounts = tx.session.execute(
        select(StoredAccount.account_id, StoredAccount.name, StoredAccount.followers)
        .where(
            holds(StoredAccount.folded_name, literal(entry.folded_name)),
            or_(
                StoredAccount.subject_digest.is_(None),
                StoredAccount.subject_digest.not_in(digests),
            ),
        )
        .order_by(CodePoints(StoredAccount.account_id))
    ).all()
    used = {"id": entry.id, "name": entry.name, "kind": entry.kind}
    holders = []
    for account_id, name, followers in accounts:
        key = protected.merge_key(account_id)
        item = open_item(tx, key)
        if item is not None:
            evidence = item.evidence or {}
            item.evidence = {**evidence, "protected": [*evidence.get("protected", []), used]}
            tx.record("review.grown", f"item:{item.id}", {"merge_key": key, "protected": used})
        else:
            decided = last_decided(tx.session, key)
            item = new_item(
                tx,
                kind=protected.KIND,
                post_id=None,
                account_id=account_id,
                merge_key=key,
                head=protected.KIND,
                severity="review",
                reach=followers,
                evidence={
                    "basis": tx.policy.registration.protected_basis,
                    "name": name,
                    "protected": [used],
                },
                after=None if decided is None else decided.id,
            )
            item.urgency = urgency_of(tx.policy, item)
        holders.append(views.Holder(account_id=account_id, item_id=item.id))
    return holders
