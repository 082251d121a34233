"""The steps of a review write on its items: locking and holding them, deciding and withdrawing
them, opening them with their records, what review decided of a post before, and whether an
upheld appeal overturned a confirmation. Run in a :class:`~service.storage.transaction.Tx`;
credit and dispositions are :mod:`~service.storage.credit_steps`'s."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from itertools import groupby
from typing import Any, cast

from sqlalchemy import ColumnElement, and_, bindparam, or_, select, tuple_
from sqlalchemy.orm import InstrumentedAttribute, Session

from service.heads import Risk
from service.policy import Policy
from service.review import appeals, chain, dormancy, items, views
from service.review.items import Action, Category, ConflictError, NotFoundError, Violation
from service.storage.credit_steps import (
    active_rows,
    charged_by,
    lift,
    locked_account,
    members_after,
    violation,
)
from service.storage.repository import Role
from service.storage.review_rows import maybe_utc, utc
from service.storage.tables import (
    CreditEntry,
    ReviewDecision,
    ReviewItem,
    SignupBatchMember,
    StoredAccount,
    StoredAppeal,
    StoredDisposition,
    StoredPost,
)
from service.storage.transaction import Tx, locking

OPEN_STATUSES = ("open", "escalated")


def locked_item(tx: Tx, item_id: int) -> ReviewItem:
    item = tx.session.scalar(locking(select(ReviewItem).where(ReviewItem.id == item_id)))
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
    decided = None
    if item.status in items.FINAL:
        # the last decision on a decided item is the one that decided it: nothing follows it
        last = tx.session.execute(
            select(ReviewDecision.reviewer, ReviewDecision.decided_at)
            .where(ReviewDecision.item_id == item.id)
            .order_by(ReviewDecision.id.desc())
            .limit(1)
        ).one()
        decided = items.Decided(last.reviewer, utc(last.decided_at))
    items.check_claim(
        item.status,
        item.assignee,
        maybe_utc(item.lease_until),
        reviewer,
        tx.now,
        escalated_by,
        role,
        decided,
    )
    return item


def escalators(session: Session, item_id: int) -> list[str]:
    """Who escalated the item (it is escalated, or was before its final decision), each once;
    none for an item never escalated."""
    query = select(ReviewDecision.reviewer).where(
        ReviewDecision.item_id == item_id, ReviewDecision.action == "escalate"
    )
    return sorted(set(session.scalars(query)))


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
    *,
    backwards: bool = False,
) -> ColumnElement[bool]:
    """The rows a listing ordered by ``moment`` and ``row_id`` holds after ``cursor``, the
    moment and id of the last row a page gave (:func:`service.review.appeals.cursor`); with
    ``backwards``, a listing ordered by both descending, those before it.

    One comparison of the pair, which an index ending in them reads from the cursor on (a
    keyset seek); ``moment > m OR (moment = m AND id > i)``, its meaning spelled out, is a
    filter that PostgreSQL applies to every entry the index holds before the cursor, and SQLite
    to every one under the index's leading columns, so that each later page walked the pages
    before it."""
    place = tuple_(moment, row_id)
    at = (appeals.cursor_deadline(cursor[0]), cursor[1])
    return place < at if backwards else place > at


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
            "note_sha256": None if note is None else chain.text_digest(note),
        },
    )
    return row


def charge_members(tx: Tx, item_id: int) -> int:
    """Charge the next :data:`~service.storage.credit_steps.CHARGE_CHUNK` members of a
    registration batch whose confirmation has not charged them all
    (:attr:`ReviewDecision.charging_after`), in account order, each as the decision would
    have: its category, by its reviewer. The item is locked first, as every writer locks, so
    that the request that confirmed it and a sweep finishing its charges go one chunk after the
    other; a member charged already (the ones the item lists, by the decision itself, and those
    of a chunk tried again) is passed, without its lock, so that each is charged once whoever
    finishes the charges and however often they are tried. How many members the chunk went
    through: none once none is left, the decision then complete (``charging_after`` null)."""
    item = locked_item(tx, item_id)
    decision = tx.session.scalar(
        select(ReviewDecision).where(
            ReviewDecision.item_id == item.id, ReviewDecision.charging_after.is_not(None)
        )
    )
    if decision is None or decision.charging_after is None:
        return 0
    members = members_after(tx.session, item.id, decision.charging_after)
    # read under the item's lock, which every write charging the item's members holds
    charged = charged_by(tx.session, item.id, members)
    for account_id in members:
        if account_id not in charged:
            locked_account(tx, account_id)
            violation(tx, item, account_id, cast(Violation, decision.category), decision.reviewer)
    decision.charging_after = members[-1] if members else None
    return len(members)


def withdraw(tx: Tx, item: ReviewItem, by: str, note: str) -> None:
    """Dismiss an open ``item`` whose ground is gone (the protected name it was about removed,
    the dormant account back, the posts its findings named another account's), ``by`` the key
    or the service that removed the ground, ``note`` saying so: nothing is left for a reviewer
    to decide."""
    record_decision(tx, item, "dismiss", None, None, note, by)


# built once, as the look-ups below: each queueing (a bank match or a cluster of the publish
# path, a flagged post's storing) reads the open, the confirmed and the last decided item, and
# building a statement took SQLAlchemy longer than the database took to run it
# (:mod:`~service.storage.publish_sql`)
_OPEN_OF_KEY = locking(
    select(ReviewItem).where(
        ReviewItem.merge_key == bindparam("key"), ReviewItem.status.in_(OPEN_STATUSES)
    )
)
"""The open item of a merge key: one at most (``uq_queue_open_merge``)."""
_OPEN_ABOUT_POST = locking(
    select(ReviewItem)
    .where(ReviewItem.post_id == bindparam("post"), ReviewItem.status.in_(OPEN_STATUSES))
    .order_by(ReviewItem.id)
    .limit(1)
)
_CONFIRMED_POST = locking(
    select(ReviewItem)
    .where(ReviewItem.post_id == bindparam("post"), ReviewItem.status == "confirmed")
    .order_by(ReviewItem.id.desc())
    .limit(1)
)
_LAST_DECIDED = (
    select(ReviewItem)
    .where(ReviewItem.merge_key == bindparam("key"), ReviewItem.status.in_(items.FINAL))
    .order_by(ReviewItem.id.desc())
    .limit(1)
)


def open_item(tx: Tx, merge_key: str) -> ReviewItem | None:
    """The open (or escalated) item of ``merge_key``, locked."""
    return tx.session.scalar(_OPEN_OF_KEY, {"key": merge_key})


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
    for row in dormancy_brought(tx, account.account_id):
        lift(tx, row, by, {"cause": "returned", "via": via})
    if item is not None:
        withdraw(tx, item, by, RETURNED_NOTE)
    return dormant is not None


def dormancy_brought(tx: Tx, account_id: str) -> list[StoredDisposition]:
    """The account's active dispositions that its dormancy brought, in the order they were
    written: the sweep's own (no item) or a confirmed dormant item's, never a violation's; a
    return lifts them."""
    query = (
        select(StoredDisposition)
        .outerjoin(ReviewItem, ReviewItem.id == StoredDisposition.item_id)
        .where(or_(StoredDisposition.item_id.is_(None), ReviewItem.kind == dormancy.KIND))
    )
    return active_rows(tx, query, account_id, dormancy.kinds(tx.policy.dispositions))


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
    account_id: str | None,
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
    reviewer weighs these findings knowing how the last ones were judged. ``account_id`` None:
    the item is about the accounts its findings name (a registration batch's), as a
    cluster's is about its members."""
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


def signup_batches(session: Session, evidence: dict[str, Any]) -> list[dict[str, Any]]:
    """The registration batches (art10, :mod:`~service.review.signups`) that two or more of
    a coordinated batch's members (``evidence["members"]``) were registered in, by the batches'
    members (``signup_batch_members``: listed by their items or past the listing), of items
    open or confirmed (a dismissed one was found no bulk registration), each as its
    ``item_id``, ``status``, ``skeleton`` and the members' ``accounts``: accounts registered in
    bulk that post in concert are one operation, which the cluster's reviewer sees."""
    members = {
        m["account_id"]
        for m in evidence.get("members", [])
        if isinstance(m, dict) and isinstance(m.get("account_id"), str)
    }
    if not members:
        return []
    rows = session.execute(
        select(SignupBatchMember.item_id, SignupBatchMember.account_id)
        .where(SignupBatchMember.account_id.in_(members))
        .order_by(SignupBatchMember.item_id, SignupBatchMember.account_id)
    ).all()
    shared = {
        # in code-point order whatever the database's collation, as the cluster lists them
        item_id: sorted(account for _, account in batch)
        for item_id, batch in groupby(rows, key=lambda row: row[0])
    }
    # one member alone shares its registration with no other poster of the cluster
    shared = {item_id: accounts for item_id, accounts in shared.items() if len(accounts) > 1}
    if not shared:
        return []
    batches = session.execute(
        select(ReviewItem.id, ReviewItem.status, ReviewItem.evidence)
        .where(ReviewItem.id.in_(shared), ReviewItem.status != "dismissed")
        .order_by(ReviewItem.id)
    ).all()
    found = [
        {
            "item_id": item_id,
            "status": status,
            "skeleton": (batch or {}).get("skeleton"),
            "accounts": shared[item_id],
        }
        for item_id, status, batch in batches
    ]
    return found


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
        return session.scalar(_OPEN_ABOUT_POST, {"post": post_id})
    return session.scalar(_OPEN_OF_KEY, {"key": f"account:{account_id}"})


def last_decided(session: Session, merge_key: str) -> ReviewItem | None:
    """The item last decided (confirmed or dismissed) on ``merge_key``."""
    return session.scalar(_LAST_DECIDED, {"key": merge_key})


def earlier_decision(session: Session, decided: ReviewItem) -> dict[str, Any]:
    """What an item opened on the key of ``decided`` says of it (evidence ``EARLIER``): its
    status ``overturned`` where an upheld appeal overturned its confirmation
    (:func:`overturned`), so that its reviewer does not take the post for one found a
    violation."""
    decision = final_decision(session, decided.id)
    return {
        "item_id": decided.id,
        # only a confirmation is appealed: a dismissal needs no look-up
        "status": "overturned"
        if decided.status == "confirmed" and overturned(session, decided)
        else decided.status,
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


def confirmed_item(tx: Tx, post_id: str | None) -> ReviewItem | None:
    """The item that confirmed the post, locked: what a later report or match of it joins."""
    if post_id is None:
        return None
    return tx.session.scalar(_CONFIRMED_POST, {"post": post_id})


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


# built once: what review decided of each flagged post is read, and building the statement took
# SQLAlchemy longer than the database took to run it (:mod:`~service.storage.publish_sql`)
_DECIDED_ITEMS = (
    select(ReviewItem, ReviewDecision.category)
    .join(ReviewDecision, ReviewDecision.item_id == ReviewItem.id)
    .where(
        ReviewItem.post_id == bindparam("post"),
        ReviewItem.status.in_(items.FINAL),
        ReviewDecision.action.in_(("confirm", "dismiss")),
    )
    .order_by(ReviewItem.id)
)


def post_decided(session: Session, post_id: str) -> PostDecided:
    """:class:`PostDecided` of ``post_id``, from its confirmed and dismissed items."""
    rows = session.execute(_DECIDED_ITEMS, {"post": post_id}).all()
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
