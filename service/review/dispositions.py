"""Dispositions (art19): which steps of the policy's ladder a confirmed violation triggers, and
what of an account's standing the publish path's decision reads."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

from service.policy.governance import Category, DispositionStep

ACTIVE_PAGE = 100
"""The active dispositions an answer holds where its caller names no ``limit`` (the listing's
default, and the first page an account's answer holds)."""


def due(
    ladder: list[DispositionStep],
    level: str,
    violations: int,
    active: Collection[str],
    category: Category | None = None,
) -> list[DispositionStep]:
    """Steps reached by the account's ``level`` or its ``violations`` in the credit window, or
    called for by the ``category`` of the violation confirmed now, that are not ``active``
    already; in ladder order."""
    return [
        step
        for step in ladder
        if step.kind not in active
        and (
            reached(step, level, violations)
            or (category is not None and category in step.categories)
        )
    ]


def reached(step: DispositionStep, level: str, violations: int) -> bool:
    """Whether the account's standing, its ``level`` or its ``violations`` in the credit window,
    calls for ``step``: what an upheld appeal that lowers the standing takes back."""
    return level in step.levels or (
        step.min_violations is not None and violations >= step.min_violations
    )


def ends_at(step: DispositionStep, starts_at: datetime) -> datetime | None:
    return None if step.days is None else starts_at + timedelta(days=step.days)


def is_active(ends: datetime | None, lifted: bool, now: datetime) -> bool:
    return not lifted and (ends is None or ends > now)


def called_for(ladder: list[DispositionStep], level: str, violations: int) -> set[str]:
    """The kinds of step an account at ``level`` with ``violations`` in the window calls for
    (those a violation's category called for belong to its decision alone)."""
    return {step.kind for step in due(ladder, level, violations, ())}


@dataclass(frozen=True)
class Stop:
    """A disposition of the account that stops it publishing (``stops_publishing``), as stored
    when the publish path last read it."""

    kind: str
    basis: str
    ends_at: datetime | None
    """None: until lifted."""

    def active(self, now: datetime) -> bool:
        # read again at each decision: one that ends between two reads, or while storage is
        # away and the last read stands, ends on time
        return is_active(self.ends_at, False, now)


@dataclass(frozen=True)
class Standing:
    """What the decide stage reads of an account: its credit level and its dispositions that
    stop it publishing."""

    level: str | None = None
    stops: tuple[Stop, ...] = ()
