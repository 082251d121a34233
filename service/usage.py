"""The accounts the publish path saw post, for their dormancy clock (art10): at most one write per
account a day per server process, and none on the answer's way (the maintenance thread writes
them, :meth:`~service.scoring.ScoringService.record_use`)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from datetime import date, datetime

ACCOUNTS = 100_000
"""The most accounts :class:`RecentUse` remembers the day of, and holds waiting to be written."""


class RecentUse:
    """The accounts seen posting since the last :meth:`take`, each at the first moment it was
    seen. An account is taken once a (UTC) day at most: a clock measured against months needs
    no finer grain, and a day's further posts cost one dictionary look-up each. Both memories
    are bounded by ``size``: an account whose day was forgotten is only written again, and one
    that finds no room while storage is away waits for its next post."""

    def __init__(self, size: int = ACCOUNTS) -> None:
        self.size = size
        self._days: OrderedDict[str, date] = OrderedDict()
        self._waiting: dict[str, datetime] = {}

    def seen(self, account_ids: Iterable[str], at: datetime) -> None:
        """``account_ids`` posted ``at``."""
        day = at.date()
        for account in account_ids:
            if self._days.get(account) == day:
                continue
            if len(self._waiting) >= self.size:
                return
            self._waiting.setdefault(account, at)
            self._days[account] = day
            self._days.move_to_end(account)
            if len(self._days) > self.size:
                self._days.popitem(last=False)

    def take(self) -> dict[str, datetime]:
        """The use waiting to be written, by account; forgotten here until :meth:`give_back`."""
        taken, self._waiting = self._waiting, {}
        return taken

    def give_back(self, taken: dict[str, datetime]) -> None:
        """Use :meth:`take` gave that could not be written, to write with the next."""
        for account, at in taken.items():
            if account not in self._waiting and len(self._waiting) >= self.size:
                continue
            self._waiting[account] = max(at, self._waiting.get(account, at))
