"""Moments and lengths of time as the pages say them: a moment in the console's time zone naming
its offset from UTC (the ``when`` filter), a length of time in the reader's words (the
``duration`` filter)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

if TYPE_CHECKING:
    from service.console.present import Words


def when(moment: datetime | float | None, zone: ZoneInfo) -> str:
    """A moment as every page shows one: in the console's time zone (``console_timezone``),
    and saying which by its offset, ``2026-12-06 15:43 UTC+8``, which reads the same in Chinese
    and English (an abbreviation such as CST names zones of three countries)."""
    if moment is None:
        return "-"
    if isinstance(moment, int | float):
        moment = datetime.fromtimestamp(moment, UTC)
    local = moment.astimezone(zone)
    return f"{local:%Y-%m-%d %H:%M} {offset(local)}"


def offset(local: datetime) -> str:
    """``local``'s offset from UTC as the pages name it: ``UTC``, ``UTC+8``, ``UTC+5:30``,
    ``UTC-3``."""
    minutes = round((local.utcoffset() or timedelta()).total_seconds() / 60)
    if not minutes:
        return "UTC"
    hours, rest = divmod(abs(minutes), 60)
    return f"UTC{'+' if minutes > 0 else '-'}{hours}" + (f":{rest:02d}" if rest else "")


def unit_of(seconds: float) -> tuple[str, int]:
    """The unit a length of time is said in, and its seconds: seconds under a minute, minutes
    under an hour, hours under two days, then days."""
    if seconds < 60:
        return "seconds", 1
    if seconds < 3600:
        return "minutes", 60
    if seconds < 48 * 3600:
        return "hours", 3600
    return "days", 86400


def duration(seconds: float, t: Words) -> str:
    """A length of time in ``t``'s words, whole units of :func:`unit_of`."""
    seconds = max(seconds, 0.0)
    unit, size = unit_of(seconds)
    return t(f"unit.{unit}").format(n=int(seconds // size))
