"""Dispositions (art19): which steps of the policy's ladder a confirmed violation triggers."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta

from service.policy.governance import DispositionStep


def due(
    ladder: list[DispositionStep], level: str, violations: int, active: Collection[str]
) -> list[DispositionStep]:
    """Steps reached by the account's ``level`` or its ``violations`` in the credit window,
    that are not ``active`` already; in ladder order."""
    return [
        step
        for step in ladder
        if step.kind not in active
        and (
            level in step.levels
            or (step.min_violations is not None and violations >= step.min_violations)
        )
    ]


def ends_at(step: DispositionStep, starts_at: datetime) -> datetime | None:
    return None if step.days is None else starts_at + timedelta(days=step.days)


def is_active(ends: datetime | None, lifted: bool, now: datetime) -> bool:
    return not lifted and (ends is None or ends > now)


def called_for(ladder: list[DispositionStep], level: str, violations: int) -> set[str]:
    """The kinds of step an account at ``level`` with ``violations`` in the window calls for."""
    return {step.kind for step in due(ladder, level, violations, ())}
