"""The accounts the publish path saw post, for their dormancy clock (art10): at most one write per
account a day per server process, and none on the answer's way (the maintenance thread writes
them, :meth:`~service.scoring.ScoringService.record_use`), except for an account warned of or
found in a dormancy, whose next post is written at once (:meth:`RecentUse.watch`)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping
from datetime import date, datetime

ACCOUNTS = 100_000
"""The most accounts :class:`RecentUse` remembers the day of, and holds waiting to be written."""


class RecentUse:
    """The accounts seen posting since the last :meth:`take`, each at the first moment it was
    seen. An account is taken once a (UTC) day at most: a clock measured against months needs
    no finer grain, and a day's further posts cost a dictionary look-up and store each (the
    latest, for :meth:`watch`). Both memories are bounded by ``size``: an account whose day was
    forgotten is only written again, and one that finds no room while storage is away waits for
    its next post."""

    def __init__(self, size: int = ACCOUNTS) -> None:
        self.size = size
        self._days: OrderedDict[str, tuple[date, datetime]] = OrderedDict()
        """The day each account was taken on, and its latest post seen that day."""
        self._waiting: dict[str, datetime] = {}

    def seen(self, account_ids: Iterable[str], at: datetime) -> None:
        """``account_ids`` posted ``at``."""
        day = at.date()
        for account in account_ids:
            taken = self._days.get(account)
            if taken is not None and taken[0] == day:
                self._days[account] = (day, at)
                continue
            if len(self._waiting) >= self.size:
                return
            self._waiting.setdefault(account, at)
            self._days[account] = (day, at)
            self._days.move_to_end(account)
            if len(self._days) > self.size:
                self._days.popitem(last=False)

    def watch(self, clocks: Mapping[str, datetime]) -> None:
        """Accounts warned of or found in a dormancy on the clock given (account id: clock),
        by any process: the day's use is written for each that posted after its clock, which
        ends that (a dormancy found on a clock that the day's posts left unwritten, as the grain
        allows, or found after such a post), and its next post is taken whatever the day."""
        for account, clock in clocks.items():
            taken = self._days.pop(account, None)
            last = None if taken is None else taken[1]
            if last is None or last <= clock:
                continue
            if account in self._waiting or len(self._waiting) < self.size:
                self._waiting[account] = max(last, self._waiting.get(account, last))

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
