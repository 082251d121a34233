"""Review items: where they come from, their priority, their lease and the decisions on them."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal, get_args

from service.policy import governance
from service.policy.governance import ReviewRules
from service.review.refusals import RefusedError

Kind = Literal[
    "score",
    "cluster",
    "bank_match",
    "report",
    "follower_jump",
    "engagement",
    "impersonation",
    "dormant",
    "signup_batch",
]
"""An item's source: a flagged score record, a flagged near-duplicate cluster (one item for the
batch, its members in ``evidence``), a confirmed-rumour bank match, public reports, an abnormal
jump in an account's follower count (art12, its jumps in ``evidence``), abnormal engagement with
an account's posts (art12, :mod:`service.review.engagement`), an account name that holds a
protected name its subject is not authorised for (art8, :mod:`service.review.protected`), a
dormant account (art10, :mod:`service.review.dormancy`), or accounts registered in a batch
under one name (art10, its accounts in ``evidence``, :mod:`service.review.signups`)."""
KINDS: tuple[Kind, ...] = get_args(Kind)


@dataclass(frozen=True)
class QueueRequest:
    """An item of another source than a score record, for ``ReviewRepository.enqueue``."""

    kind: Kind
    merge_key: str
    head: str
    severity: str
    reach: int
    evidence: dict[str, Any] = field(default_factory=dict)
    post_id: str | None = None
    account_id: str | None = None
    model_version: str | None = None
    text: str | None = None


Status = Literal["open", "escalated", "confirmed", "dismissed"]
STATUSES: tuple[Status, ...] = get_args(Status)
FINAL: frozenset[Status] = frozenset({"confirmed", "dismissed"})
"""A decided item: a second decision on it is refused."""

Action = Literal["confirm", "dismiss", "escalate"]
ACTIONS: tuple[Action, ...] = get_args(Action)
Category = governance.Category
"""What a confirmation says an item is: a violation, or a dormant account."""
Violation = governance.Violation

EARLIER = "earlier"
"""The evidence key under which an item names the item last decided on its merge key (a
coordinated batch that grew after a decision): its ``item_id``, ``status``, ``reviewer``,
``decided_at`` and ``reach``. That item and its decision stay as they were."""

MAX_ROW_ID = 2**63 - 1

OUTCOME: dict[Action, Status] = {
    "confirm": "confirmed",
    "dismiss": "dismissed",
    "escalate": "escalated",
}


class ConflictError(RefusedError):
    """The item is not in a state that allows this (HTTP 409)."""


class ForbiddenError(RefusedError):
    """This caller may not do this to this item (HTTP 403)."""


class NotFoundError(RefusedError):
    """No such item, account, report or appeal (HTTP 404)."""


def base_priority(rules: ReviewRules, severity: str, reach: int, reports: int) -> float:
    """Priority without age: severity, reach (followers or cluster size) and report count."""
    return (
        rules.severity.get(severity, 0.0)
        + rules.reach_weight * math.log10(1 + max(0, reach))
        + rules.report_weight * reports
    )


def hours(moment: datetime) -> float:
    return moment.timestamp() / 3600


def urgency(rules: ReviewRules, base: float, enqueued_at: datetime) -> float:
    """The key the queue is ordered by, highest first. Age adds ``age_weight_per_hour`` an hour
    to every waiting item alike, so ``base - w x enqueued hours`` orders items exactly as
    ``base + w x hours waiting`` would at any moment, and an index can serve it."""
    return base - rules.age_weight_per_hour * hours(enqueued_at)


def priority(rules: ReviewRules, stored_urgency: float, now: datetime) -> float:
    """The priority shown for an item at ``now``."""
    return round(stored_urgency + rules.age_weight_per_hour * hours(now), 4)


ESCALATED_TO: frozenset[str] = frozenset({"admin"})
"""The roles that take an escalated item. An escalation (the console's 上报, "report upward")
asks for someone senior, so a reviewer neither holds nor decides one."""


@dataclass(frozen=True)
class Decided:
    """The decision that decided an item: who took it, and when, which a refusal of another
    decision names, so that its reviewer knows whose it is without opening the item."""

    reviewer: str
    at: datetime


def check_claim(
    status: str,
    assignee: str | None,
    lease_until: datetime | None,
    reviewer: str,
    now: datetime,
    escalated_by: str | None = None,
    role: str = "reviewer",
    decided: Decided | None = None,
) -> None:
    """Raise :class:`ConflictError` unless ``reviewer`` (of ``role``) may claim the item now,
    naming the decision that ``decided`` it (an item of a :data:`FINAL` status has one), and
    :class:`ForbiddenError` when the item is escalated and ``reviewer`` escalated it (an
    escalation asks for another's eyes) or is not of a role in :data:`ESCALATED_TO`."""
    if status in FINAL:
        assert decided is not None, "a decided item's refusal names its decision"
        raise ConflictError("decided", status=status, decided_by=decided.reviewer, at=decided.at)
    if status == "escalated" and escalated_by == reviewer:
        raise ForbiddenError("escalated_by_you")
    if status == "escalated" and role not in ESCALATED_TO:
        raise ForbiddenError("escalated_to_admin")
    if assignee not in (None, reviewer) and lease_until is not None and lease_until > now:
        raise ConflictError("claimed", until=lease_until)


OWN_CATEGORY: dict[str, Category] = {"dormant": "dormant", "impersonation": "impersonation"}
"""The kinds of item whose confirmation starts a process of its own, each with the one
category that confirms it, and that category confirms no other item. A dormancy (art10) charges
nothing, and the holder's return lifts its measure; an impersonation (art8) suspends the
account until its name no longer holds the protected names its item names, which a correction
and the suspension's end are read against off that item: on another item the same category
would suspend the account with nothing to correct, unlifted by a new name and never settled."""


def check_category(kind: str, category: Category, item_id: int) -> None:
    """Raise :class:`ConflictError` (reason ``KIND_category``) for a confirmation of an item
    of a kind in :data:`OWN_CATEGORY` as another category, or of another item as one of them."""
    for own_kind, own in OWN_CATEGORY.items():
        if (kind == own_kind) != (category == own):
            raise ConflictError(f"{own_kind}_category", item_id=item_id, item_kind=kind)


@dataclass(frozen=True)
class Shown:
    """What a decision says its reviewer was shown of the item: the id of the score record the
    item showed (``record_id`` of the item's view; None: it showed none, as a report's item
    before a flagged record of its post joins it)."""

    record_id: int | None


def check_shown(item_id: int, record_id: int | None, shown: Shown | None) -> None:
    """Raise :class:`ConflictError` when the item holds another score record than the one its
    reviewer was ``shown``: a re-score moved it to a newer record after they read it (or a
    flagged record joined a report's item), and the decision would be taken on a judgment
    they never saw. ``shown`` None: the caller did not say what it was shown (a client written
    before the check), and nothing is checked."""
    if shown is not None and shown.record_id != record_id:
        # null as the JSON API writes it: a client sent an id for an item that holds none
        shown_now = "null" if record_id is None else str(record_id)
        raise ConflictError("record_changed", item_id=item_id, record_id=shown_now)


def check_action(status: str, action: Action) -> None:
    """Raise :class:`ConflictError` for an escalation of an item escalated already."""
    if status == "escalated" and action == "escalate":
        raise ConflictError("escalated_already")


def report_due(rules: ReviewRules, filed_at: datetime) -> datetime:
    """When a complaint must have its feedback (art20): counted from its own filing, so a
    report that joins an item queued long ago is not overdue on arrival. An item's deadline is
    its first report's: the soonest its decision, which answers them all, is owed."""
    return filed_at + timedelta(days=rules.report_within_days)


def reports_late_before(rules: ReviewRules, now: datetime) -> datetime:
    """Reports filed before this moment are past their :func:`report_due` at ``now``."""
    return now - timedelta(days=rules.report_within_days)


def report_overdue(status: str, due: datetime, now: datetime) -> bool:
    """A report is answered by its item's final decision; until then it is late past ``due``."""
    return status not in FINAL and due < now


def posts_charged(
    post_id: str | None, account_id: str | None, evidence: dict[str, Any] | None, account: str
) -> set[str]:
    """The posts a confirmation of an item charges ``account`` for: the item's post when it
    is the account's, and the account's posts among a coordinated batch's members. A post is
    charged once, whichever item comes to it first."""
    posts = {post_id} if post_id is not None and account_id == account else set()
    for member in (evidence or {}).get("members", []):
        mine = isinstance(member, dict) and member.get("account_id") == account
        if mine and isinstance(member.get("post_id"), str):
            posts.add(member["post_id"])
    return posts


def lease_end(rules: ReviewRules, now: datetime) -> datetime:
    return now + timedelta(seconds=rules.lease_s)


def parse_cursor(given: str | None) -> tuple[float, int] | None:
    """The listing position a page's ``next`` cursor names; ValueError for anything else."""
    if given is None:
        return None
    urgency, _, last = given.rpartition("_")
    try:
        parsed = float(urgency), int(last)
    except ValueError:
        parsed = (0.0, 0)
    if not 1 <= parsed[1] <= MAX_ROW_ID or not math.isfinite(parsed[0]):
        raise ValueError(f"{given!r} is not a cursor a listing gave out")
    return parsed
