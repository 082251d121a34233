"""Appeals (art20): the window to file one, the deadline to answer it, who may answer."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal, get_args

from service.policy.governance import AppealRules
from service.review.items import ConflictError, ForbiddenError

AppealAction = Literal["uphold", "reject"]
APPEAL_ACTIONS: tuple[AppealAction, ...] = get_args(AppealAction)
AppealStatus = Literal["pending", "upheld", "rejected"]
APPEAL_STATUSES: tuple[AppealStatus, ...] = get_args(AppealStatus)


class AppealClosedError(ConflictError):
    """Filed after the window: carries the deadline that passed."""

    def __init__(self, deadline: datetime) -> None:
        super().__init__(f"the window to appeal closed at {deadline.isoformat()}")
        self.deadline = deadline


def filing_deadline(rules: AppealRules, decided_at: datetime) -> datetime:
    return decided_at + timedelta(days=rules.file_within_days)


def check_filing(rules: AppealRules, decided_at: datetime, now: datetime) -> datetime:
    """The deadline to answer an appeal filed ``now`` on a decision made at ``decided_at``;
    raises :class:`AppealClosedError` past the window."""
    closes = filing_deadline(rules, decided_at)
    if now > closes:
        raise AppealClosedError(closes)
    return now + timedelta(days=rules.resolve_within_days)


def check_resolver(decided_by: str, resolver: str) -> None:
    if decided_by == resolver:
        raise ForbiddenError("an appeal is resolved by a reviewer other than the one who decided")


def overdue(status: str, deadline: datetime, now: datetime) -> bool:
    return status == "pending" and deadline < now
