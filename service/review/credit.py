"""Account credit (art13): deductions for confirmed violations, slow restoration over clean
periods, levels. Credit only ever changes by a ledger entry of ``delta`` points, so an account's
credit is always ``initial`` plus the sum of its entries (:func:`replay`)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import datetime, timedelta

from service.policy.governance import CreditRules, Level
from service.review.items import Category


def level(rules: CreditRules, credit: int) -> Level:
    """The highest level whose ``min_credit`` the credit reaches."""
    return next((lv for lv in rules.levels if credit >= lv.min_credit), rules.levels[-1])


def clamp(rules: CreditRules, credit: int) -> int:
    return max(rules.floor, min(rules.initial, credit))


def deduction(
    rules: CreditRules, credit: int, category: Category, severity: str, earlier: int
) -> int:
    """The (negative) delta for a confirmed violation of ``category`` at ``severity``, after
    ``earlier`` confirmed violations in the window; it never takes credit below the floor."""
    points = rules.deductions[category] * rules.severity.get(severity, 1.0)
    points *= 1 + rules.repeat_factor * earlier
    # half a point up, as a reader of the policy rounds (round() would take 22.5 to 22)
    return clamp(rules, credit - math.floor(points + 0.5)) - credit


def restoration(
    rules: CreditRules, credit: int, clean_since: datetime, now: datetime
) -> tuple[int, datetime] | None:
    """Points given back for the clean periods completed between ``clean_since`` (the last
    violation or restoration) and ``now``, and the moment the last completed period ended; None
    when nothing is due."""
    period = timedelta(days=rules.restore_every_days)
    periods = int((now - clean_since) / period)
    if periods < 1 or credit >= rules.initial or rules.restore_points == 0:
        return None
    delta = clamp(rules, credit + periods * rules.restore_points) - credit
    return delta, clean_since + periods * period


def replay(rules: CreditRules, deltas: Iterable[int]) -> int:
    """An account's credit from its ledger entries, in order."""
    return rules.initial + sum(deltas)
