"""Abnormal jumps in an account's follower count (art12): the platform must find and handle
abnormal changes in subscriber numbers. A profile update's count is compared with the one
stored before it; a jump opens a ``follower_jump`` review item for the account, which later
jumps join while it is open."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from service.policy.governance import FollowerRules, Violation

CATEGORY: Violation = "fake_followers"
"""The head of the item a jump opens, and the category its confirmation charges."""


def is_jump(rules: FollowerRules, before: int, after: int) -> bool:
    """Whether ``after`` is an abnormal jump from ``before``: both ``factor`` times as many and
    ``min_gain`` more, so that a small account's tenfold (3 to 30) is not one, nor a large
    account's ordinary growth by ``min_gain``."""
    return after >= rules.factor * before and after - before >= rules.min_gain


def jump(before: int, after: int, at: datetime, since: datetime | None) -> dict[str, Any]:
    """One jump as the item's evidence lists it: the counts, when the new one came, and when
    the old one was given (null when the service never learnt it)."""
    return {
        "before": before,
        "after": after,
        "at": at.isoformat(),
        "since": None if since is None else since.isoformat(),
    }
