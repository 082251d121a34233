"""Account credit (art13): deductions for confirmed violations, slow restoration over clean
periods, levels. Credit only ever changes by a ledger entry of ``delta`` points, so an account's
credit is always ``initial`` plus the sum of its entries (:func:`replay`). And the position in
an account's history, its credit changes and dispositions, that a page of it ends at."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from service.policy.governance import CreditRules, Level
from service.review import appeals
from service.review.items import Violation

HistoryKind = Literal["credit", "disposition"]
HISTORY_ORDER: tuple[HistoryKind, ...] = ("credit", "disposition")
"""The order of an account's history entries of one moment: a decision's credit change before
the dispositions it applied (the order the whole history was given in before it was paged)."""
HistoryOrder = Literal["oldest", "newest"]
"""The order an account's history is read in: ``newest`` is ``oldest`` reversed, entry for
entry (a moment's dispositions before its credit changes), so that either reads every entry
once a page at a time."""
HISTORY_PAGE = 100
"""The entries of an account's history an answer holds where its caller names no ``limit``
(the API's default, and a profile write's answer)."""


def level(rules: CreditRules, credit: int) -> Level:
    """The highest level whose ``min_credit`` the credit reaches."""
    return next((lv for lv in rules.levels if credit >= lv.min_credit), rules.levels[-1])


def clamp(rules: CreditRules, credit: int) -> int:
    return max(rules.floor, min(rules.initial, credit))


def deduction(
    rules: CreditRules, credit: int, category: Violation, severity: str, earlier: int
) -> int:
    """The (negative) delta for a confirmed violation of ``category`` at ``severity``, after
    ``earlier`` confirmed violations in the window; it never takes credit below the floor."""
    points = rules.deductions[category] * rules.severity.get(severity, 1.0)
    points *= 1 + rules.repeat_factor * earlier
    # half a point up, as a reader of the policy rounds (round() would take 22.5 to 22)
    return clamp(rules, credit - math.floor(points + 0.5)) - credit


def completed(rules: CreditRules, clean_since: datetime, now: datetime) -> tuple[int, datetime]:
    """The clean periods completed between ``clean_since`` and ``now``, and the moment the last
    of them ended (``clean_since`` itself when none did)."""
    period = timedelta(days=rules.restore_every_days)
    periods = int((now - clean_since) / period)
    return periods, clean_since + periods * period


def restoration(
    rules: CreditRules, credit: int, clean_since: datetime, now: datetime
) -> tuple[int, datetime] | None:
    """Points given back for the clean periods completed between ``clean_since`` (the last
    violation or restoration) and ``now``, and the moment the last completed period ended; None
    when nothing is due."""
    periods, until = completed(rules, clean_since, now)
    if periods < 1 or credit >= rules.initial or rules.restore_points == 0:
        return None
    delta = clamp(rules, credit + periods * rules.restore_points) - credit
    return delta, until


def replay(rules: CreditRules, deltas: Iterable[int]) -> int:
    """An account's credit from its ledger entries, in order."""
    return rules.initial + sum(deltas)


@dataclass(frozen=True)
class Standing:
    """A ledger entry as :func:`reversal` replays it: a standing (never reversed) violation of
    ``category`` on an item of ``severity``, or, with no category, a restoration of ``delta``."""

    at: datetime
    category: Violation | None = None
    severity: str = "review"
    delta: int = 0


def _replay(rules: CreditRules, entries: Iterable[Standing]) -> int:
    points = rules.initial
    violations: list[datetime] = []
    for entry in entries:
        if entry.category is None:
            points = clamp(rules, points + entry.delta)
            continue
        since = entry.at - timedelta(days=rules.window_days)
        earlier = sum(1 for at in violations if at >= since)
        points += deduction(rules, points, entry.category, entry.severity, earlier)
        violations.append(entry.at)
    return points


def reversal(rules: CreditRules, credit: int, entries: Sequence[Standing], undone: int) -> int:
    """The delta that takes ``credit`` to what it would be had ``entries[undone]`` (a standing
    violation) never been confirmed (art20: an upheld appeal undoes what its decision caused,
    no more).

    Its own deduction is not enough: at the floor, or with later violations weighed as repeats
    of it, the later deductions depend on it. So the account's standing violations and
    restorations (in order) are replayed with it and without it under ``rules``, and the
    difference is given back rather than the credit set to the second replay, so that what the
    replay does not redo (deductions under an earlier policy, earlier reversals) stays as it
    was. Restorations keep their points (clamped), though a longer clean period might have
    brought them sooner."""
    kept = [entry for n, entry in enumerate(entries) if n != undone]
    return clamp(rules, credit + _replay(rules, kept) - _replay(rules, entries)) - credit


def clean_since_reversed(
    rules: CreditRules, clean_since: datetime, entries: Sequence[Standing], undone: int
) -> datetime:
    """The clock of clean periods once ``entries[undone]`` (a standing violation) is reversed,
    the clock being ``clean_since`` with it.

    Only the reversal of the latest standing violation moves it: back to the violation that
    stood before, moved on by each restoration since by the periods it completed, as
    :func:`restoration` moved it; but never later than it was, so that a restoration given since
    the reversed violation keeps the periods it counted from it as it keeps its points
    (:func:`reversal`), and none is given twice. With no violation standing before it the clock
    stays: the replay puts the account back at the initial credit, where no period counts."""
    violations = [n for n, entry in enumerate(entries) if entry.category is not None]
    if violations[-1] != undone or len(violations) < 2:
        return clean_since
    moved = entries[violations[-2]].at
    for entry in entries[violations[-2] :]:
        if entry.category is None:
            moved = completed(rules, moved, entry.at)[1]
    return min(clean_since, moved)


@dataclass(frozen=True)
class HistoryPlace:
    """Where a page of an account's history ended: the last entry's kind, and its moment and
    id as the appeals listing's cursor holds a deadline and an id (:func:`appeals.cursor`)."""

    kind: HistoryKind
    after: tuple[float, int]


NEWEST_MARK = "n"
"""What a history cursor of the ``newest`` order starts with: one of ``oldest``, the default,
is written as every cursor was before a cursor knew its order, so that those keep reading."""


class CursorOrderError(ValueError):
    """A history cursor passed with the order its page was not read in: it names a place, and
    the other order reads the entries on its other side. The message says which order."""


def history_cursor(kind: HistoryKind, moment: datetime, row_id: int, order: HistoryOrder) -> str:
    """A history page's ``next`` in ``order``: the appeals listing's cursor of the last entry,
    after its kind's initial, since a credit change and a disposition may share a moment and an
    id, and after :data:`NEWEST_MARK` for the ``newest`` order."""
    mark = NEWEST_MARK if order == "newest" else ""
    return f"{mark}{kind[0]}{appeals.cursor(moment, row_id)}"


def parse_history_cursor(given: str | None, order: HistoryOrder) -> HistoryPlace | None:
    """The place a history page's ``next`` names, to be read in ``order``; ValueError for
    anything else, :class:`CursorOrderError` for a page's ``next`` of the other order."""
    if given is None:
        return None
    made_in: HistoryOrder = "newest" if given.startswith(NEWEST_MARK) else "oldest"
    place = given.removeprefix(NEWEST_MARK)
    kind = next((k for k in HISTORY_ORDER if place[:1] == k[0]), None)
    parsed = appeals.parse_cursor(place[1:]) if kind is not None else None
    if kind is None or parsed is None:
        raise ValueError(f"{given!r} is not a cursor a listing gave out")
    if made_in != order:
        raise CursorOrderError(
            f"a page's next read in order={made_in}, not order={order}: "
            "pass it with the order its page was read in"
        )
    return HistoryPlace(kind, parsed)
