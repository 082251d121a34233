"""Appeals (art20): the window to file one, the deadline to answer it, who may answer."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal, get_args

from service.policy.governance import AppealRules
from service.review import items
from service.review.items import ConflictError, ForbiddenError

AppealAction = Literal["uphold", "reject"]
AppealStatus = Literal["pending", "upheld", "rejected"]
APPEAL_STATUSES: tuple[AppealStatus, ...] = get_args(AppealStatus)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)
# the ends of the calendar a deadline can have, in a cursor's microseconds since the epoch
FIRST_MICROS = (datetime.min.replace(tzinfo=UTC) - EPOCH) // MICROSECOND
LAST_MICROS = (datetime.max.replace(tzinfo=UTC) - EPOCH) // MICROSECOND


class AppealClosedError(ConflictError):
    """Filed after the window: carries the deadline that passed."""

    def __init__(self, deadline: datetime) -> None:
        super().__init__("appeal_closed", deadline=deadline)
        self.deadline = deadline


@dataclass(frozen=True)
class Filed:
    """An appeal filed already of the violation (item and account) appealed again."""

    id: int
    on_behalf: bool
    status: str
    resolved_at: datetime | None


def check_again(item_id: int, earlier: Collection[Filed], on_behalf: bool) -> datetime | None:
    """Raise ``appealed_already`` unless an appeal, filed ``on_behalf`` of the holder by a
    trust-team member or by the holder, may follow the ``earlier`` ones of its violation: one
    appeal per violation, save that a rejected one filed on the holder's behalf leaves the
    holder their own (else a reviewer could file an appeal for another to reject, and use up
    the holder's). The moment that rejection reopened the holder's window, where it did."""
    for appeal in earlier:
        if on_behalf or not appeal.on_behalf or appeal.status != "rejected":
            raise ConflictError("appealed_already", item_id=item_id, appeal_id=appeal.id)
    return max((a.resolved_at for a in earlier if a.resolved_at is not None), default=None)


def filing_deadline(rules: AppealRules, since: datetime) -> datetime:
    return since + timedelta(days=rules.file_within_days)


def check_filing(
    rules: AppealRules, charged_at: datetime, now: datetime, reopened: datetime | None = None
) -> datetime:
    """The deadline to answer an appeal filed ``now`` of a violation charged to the account at
    ``charged_at``: the decision's moment, or for a registration batch's member charged after
    the decision (a later chunk, a retry, the maintenance sweep), its own charge's, when the
    holder can first learn of it. Raises :class:`AppealClosedError` past the window, which
    runs from ``reopened`` where that is later (:func:`check_again`: the holder learns of the
    rejection then)."""
    closes = filing_deadline(rules, max(charged_at, reopened or charged_at))
    if now > closes:
        raise AppealClosedError(closes)
    return now + timedelta(days=rules.resolve_within_days)


def check_resolver(
    decided_by: str,
    resolver: str,
    escalated_by: Collection[str] = (),
    role: str = "reviewer",
    filed_by: str | None = None,
) -> None:
    """Raise :class:`ForbiddenError` unless ``resolver``, of ``role``, may resolve an appeal
    of a decision by ``decided_by``: not their own, and one an escalation led to (by
    ``escalated_by``, those who escalated the item) only as a role it went to
    (:data:`items.ESCALATED_TO`), whose decision a reviewer's upholding would undo, and not as
    one who escalated it, whom the item's decision was kept from as it is from its escalator;
    nor one they filed themselves (``filed_by``: a console user who filed it on the holder's
    behalf, or the owner of the key that filed it), so that no one person both asks for a
    decision to be reversed and reverses it."""
    if decided_by == resolver:
        # the one who decided an escalated item is an admin, whom another admin, not any
        # reviewer, relieves of the appeal
        raise ForbiddenError("own_escalated_decision" if escalated_by else "own_decision")
    if escalated_by and role not in items.ESCALATED_TO:
        raise ForbiddenError("escalated_appeal")
    if resolver in escalated_by:
        # an admin who escalated: upholding would undo the decision they could not take
        raise ForbiddenError("own_escalation")
    if resolver == filed_by:
        raise ForbiddenError("own_filing")


def overdue(status: str, deadline: datetime, now: datetime) -> bool:
    return status == "pending" and deadline < now


def cursor(deadline: datetime, appeal_id: int) -> str:
    """A listing's ``next``: the last appeal's deadline in whole microseconds, which a float
    holds exactly (a timestamp's float of seconds may not round-trip), and its id."""
    return f"{(deadline - EPOCH) // MICROSECOND}_{appeal_id}"


def parse_cursor(given: str | None) -> tuple[float, int] | None:
    """The position a listing's ``next`` names; ValueError for anything else, a time past the
    calendar's ends included (no deadline has it, so no listing gave it out)."""
    parsed = items.parse_cursor(given)
    if parsed is not None and not FIRST_MICROS <= parsed[0] <= LAST_MICROS:
        raise ValueError(f"{given!r} is not a cursor a listing gave out")
    return parsed


def cursor_deadline(micros: float) -> datetime:
    """The deadline a cursor's time names. One past the calendar's ends (edited by hand: the
    console passes such a cursor on as its first page would) is held to the end it passed,
    where datetime would overflow; the listing after it is then everything, or nothing."""
    return EPOCH + timedelta(microseconds=max(FIRST_MICROS, min(LAST_MICROS, micros)))
