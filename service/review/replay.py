"""What the hash-chained records say of each account, compared with its stored row, so that a row
altered in the database (not through the service) shows in ``audit verify`` as a chained text
edited there does (:mod:`service.review.chain`).

The chain does not carry every column of an account, so only what it settles is compared:

- ``credit`` and ``level``: each change chains ``credit.change`` with the credit and level after
  it, so the row holds its last one's (an account never charged, no record: not compared, as
  the initial credit is the policy's of the day its row was made, which no record names);
- ``name``, ``followers`` and ``subject_digest``: each profile chains ``account.profile`` with the
  three as they stand after it, and migration ``0037_placeholders_chained`` chained
  ``account.subject_cleared`` for the subjects 0030 cleared; an account with neither has no name
  or subject and 0 followers (a subject chained before ``0028_subject_keys`` is the unkeyed
  digest the row holds keyed);
- ``dormant_at``: set by ``account.dormant`` (the record's moment) and cleared by
  ``account.returned``, each chained;
- ``warned_at``, one way: set by ``account.warned`` (its moment), but cleared without a record
  by a use of an account warned and not dormant, so a row's moment must be the last
  ``account.warned``'s, while a row without one says nothing;
- ``active_at``, the dormancy clock, while the account is dormant or warned: neither moves it
  then (a use wakes the account, and a post's daily use is written only to accounts neither
  dormant nor warned), so it is the clock the record that made it so names. Otherwise a post's
  use moves it once a day without a record, and it is not compared.

- ``login_at``: each login reported chains ``account.profile`` with it (``last_login_at``), and
  the row keeps the latest as a moment, whatever zone each was given in (a login reported late
  keeps the one stored), so it is the latest the records give, or none without one.

Not compared: ``active_by``, ``clean_since``, ``followers_at``, ``registered_at``,
``folded_name``, ``skeleton_digest`` and ``policy_version``, which no record states; nor an
account's dispositions and credit history, whose rows the records name one by one."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

GROUPS: Mapping[str, tuple[str, ...]] = {
    "credit": ("credit.change",),
    "profile": ("account.profile",),
    "subject": ("account.profile", "account.subject_cleared"),
    "dormancy": ("account.dormant", "account.returned"),
    "warning": ("account.warned",),
}
"""The kinds of record each comparison reads the last of, per account."""

KINDS = tuple(sorted({kind for kinds in GROUPS.values() for kind in kinds}))

LOGIN = "account.profile"
"""The kind of record that chains a login reported, in :data:`LOGIN_FIELD`."""

LOGIN_FIELD = "last_login_at"

FIELDS = (
    "credit",
    "level",
    "name",
    "followers",
    "subject_digest",
    "dormant_at",
    "warned_at",
    "active_at",
    "login_at",
)
"""The columns of ``accounts`` compared."""


@dataclass(frozen=True)
class Last:
    """An account's last record of one of :data:`GROUPS`."""

    seq: int
    at: datetime
    kind: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class Replayed:
    """An account the chain or ``accounts`` holds: its row's :data:`FIELDS`, their moments in
    UTC (None: no row), its last record of each of :data:`GROUPS` that it has, and the latest
    login its :data:`LOGIN` records report (None: none reports one)."""

    account_id: str
    row: Mapping[str, Any] | None
    last: Mapping[str, Last]
    login: datetime | None


Expected = dict[str, tuple[Any, int | str | None]]
"""Each field the chain settles for a row: its value, and the record that says it (None: no
record, which says the value an account starts with; text: the records that say it)."""

LATEST_LOGIN = f"the latest login its {LOGIN} records report"

Keyed = Callable[[str], str]
"""A subject's unkeyed digest as the row holds it, keyed (``0028_subject_keys``)."""


@dataclass
class AccountCheck:
    """Compares each account's row with what the chain says of it, one account at a time, so
    that any number are checked in bounded memory."""

    keyed: Keyed
    problems: list[str] = field(default_factory=list)
    checked: int = 0
    """Accounts with a row, compared."""

    def see(self, account: Replayed) -> None:
        if account.row is None:
            kinds = ", ".join(sorted({last.kind for last in account.last.values()}))
            self.problems.append(
                f"account {account.account_id}: the row is missing, but the chain records "
                f"{kinds} of it (deleted outside the service)"
            )
            return
        self.checked += 1
        row = account.row
        for column, (chained, seq) in self._expected(account, row).items():
            stored = row[column]
            if stored == chained or (
                column == "subject_digest" and chained is not None and stored == self.keyed(chained)
            ):
                continue
            said = "no record" if seq is None else seq if isinstance(seq, str) else f"record {seq}"
            self.problems.append(
                f"account {account.account_id}: {column} is {_shown(stored)} in the row, "
                f"{_shown(chained)} in the chain ({said}): altered outside the service"
            )

    def _expected(self, account: Replayed, row: Mapping[str, Any]) -> Expected:
        """Each field the chain settles for this row: its value and the record that says it
        (None: no record, which says the value an account starts with)."""
        last = account.last
        expected: Expected = {}
        if "credit" in last:
            for column in ("credit", "level"):
                expected[column] = (last["credit"].payload[column], last["credit"].seq)
        expected["login_at"] = (account.login, LATEST_LOGIN)
        return expected | _profile(last) | _dormancy(last, row)


def _profile(last: Mapping[str, Last]) -> Expected:
    """The name, followers and subject the last profile (or subject cleared) records gave."""
    expected: Expected = {}
    profile = last.get("profile")
    for column, start in (("name", None), ("followers", 0)):
        if profile is None:
            expected[column] = (start, None)
        elif column in profile.payload:
            expected[column] = (profile.payload[column], profile.seq)
    subject = last.get("subject")
    if subject is None:
        expected["subject_digest"] = (None, None)
    elif subject.kind == "account.subject_cleared":
        expected["subject_digest"] = (None, subject.seq)
    elif "subject" in subject.payload:
        expected["subject_digest"] = (subject.payload["subject"], subject.seq)
    return expected


def _dormancy(last: Mapping[str, Last], row: Mapping[str, Any]) -> Expected:
    """When the account was found dormant, and warned, and its clock while it is either."""
    dormancy, warning = last.get("dormancy"), last.get("warning")
    found = dormancy if dormancy is not None and dormancy.kind == "account.dormant" else None
    expected: Expected = {
        "dormant_at": (
            None if found is None else found.at,
            None if dormancy is None else dormancy.seq,
        )
    }
    if row["warned_at"] is not None:
        expected["warned_at"] = (
            None if warning is None else warning.at,
            None if warning is None else warning.seq,
        )
    # neither a dormancy nor a warning moves the clock it was given on: a use ends them
    clocked = found if row["dormant_at"] is not None else None
    if row["dormant_at"] is None and row["warned_at"] is not None:
        clocked = warning
    if clocked is not None and "active_at" in clocked.payload:
        expected["active_at"] = (
            datetime.fromisoformat(clocked.payload["active_at"]),
            clocked.seq,
        )
    return expected


def login(written: Any) -> datetime | None:
    """A login as a :data:`LOGIN` record chains it (ISO 8601 with the zone it was given in, UTC
    since logins are stored so), as a moment; None for none, or for what is not one (a record
    edited, which its hash shows)."""
    try:
        moment = datetime.fromisoformat(written) if isinstance(written, str) else None
    except ValueError:
        return None
    return None if moment is None or moment.tzinfo is None else moment


def check(accounts: Iterable[Replayed], keyed: Keyed) -> AccountCheck:
    """Each of ``accounts`` compared, as they stream."""
    checked = AccountCheck(keyed)
    for account in accounts:
        checked.see(account)
    return checked


def _shown(value: Any) -> str:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    return "null" if value is None else repr(value)
