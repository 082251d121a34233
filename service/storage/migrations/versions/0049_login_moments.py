"""Each account's last login, and the dormancy clock where a login set it, as moments, on SQLite.

SQLite keeps a datetime's wall time without its zone: a login the platform gave in another zone
than UTC (``+08:00``) was stored, before logins were converted to UTC, as its wall time read as
UTC, hours off (eight late for ``+08:00``, five early for ``-05:00``), in ``login_at`` and, where
that login moved it, in ``active_at`` (``active_by = 'login'``), the dormancy clock; and each
later login and post was compared with the wrong value. The chain kept each login right: its
``account.profile`` record chains ``last_login_at`` in ISO 8601 with the zone it was given in.
PostgreSQL's ``timestamptz`` kept the moment, so there this migration does nothing.

For every account whose profiles chain a login, read a page of accounts at a time in account
order and their profiles off ``ix_audit_records_subject`` (streamed, so that memory is bounded by
a page whatever the number of accounts or records):

- ``login_at`` becomes the latest login they chain, as a UTC moment: the row keeps the latest, a
  login reported late keeping the one stored (what ``audit verify`` compares it with).
- ``active_at``, the clock, is the latest of the registration, the last login and the last post.
  A login always moves it to itself when later, so a clock earlier than the latest login is what
  a login stored early (west of UTC) left, or a post that moved it past that wrong value and
  not past the login: it becomes the latest login (``active_by = 'login'``). A clock later than
  it that a login set (``active_by = 'login'``) and that is the wall time of a chained login
  given in another zone (and no chained login's moment) is that login stored late (east of UTC):
  it becomes the latest login too. A post after that wrong value would have moved the clock (and
  made it ``post``), so none came later; one between the login and the wrong value was kept from
  moving it and is known nowhere (posts move the clock without a record), so the clock may now
  be up to that zone's offset earlier than such a post. Every other clock is left as it is: one
  a post set later than every login, or one no wrong login set.
- An account warned or found dormant keeps its clock: the record that warned it, or found it
  dormant, names the clock it was given on (which ``audit verify`` compares the row with), and
  the platform was told the date; its next use ends either as it would have.

Nothing is written to the chain: the rows are brought to what its records say.

Revision ID: 0049_login_moments
Revises: 0048_audit_subject_index
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0049_login_moments"
down_revision: str | None = "0048_audit_subject_index"
branch_labels: str | None = None
depends_on: str | None = None

PAGE = 500
ACCOUNT = "account:"
LOGIN = "account.profile"

Moment = sa.DateTime(timezone=True)
ACCOUNTS = sa.table(
    "accounts",
    sa.column("account_id", sa.String()),
    sa.column("login_at", Moment),
    sa.column("active_at", Moment),
    sa.column("active_by", sa.String()),
    sa.column("dormant_at", Moment),
    sa.column("warned_at", Moment),
)
RECORDS = sa.table(
    "audit_records",
    sa.column("kind", sa.String()),
    sa.column("subject", sa.Text()),
    sa.column("payload", sa.JSON()),
)


class Logins:
    """What an account's chained logins say of its row: the latest, as naive UTC (as SQLite
    reads a moment back), and whether its clock is the wall time a login given in another zone
    was stored as, or the moment of one. A plain class: alembic loads a migration outside
    ``sys.modules``, where a dataclass cannot resolve its annotations."""

    def __init__(self, clock: datetime | None) -> None:
        self.clock = clock
        self.latest: datetime | None = None
        self.wrong = False
        self.right = False

    def see(self, written: Any) -> None:
        try:
            given = datetime.fromisoformat(written) if isinstance(written, str) else None
        except ValueError:
            given = None
        if given is None or given.tzinfo is None:
            return
        moment = given.astimezone(UTC).replace(tzinfo=None)
        wall = given.replace(tzinfo=None)
        if self.latest is None or moment > self.latest:
            self.latest = moment
        self.wrong |= wall == self.clock and wall != moment
        self.right |= moment == self.clock


def _fixed(row: sa.Row[Any, Any, Any, Any, Any, Any], logins: Logins) -> dict[str, Any] | None:
    """The columns of ``row`` that its chained ``logins`` correct (see the module's docstring),
    None where none."""
    latest = logins.latest
    if latest is None:
        return None
    fixed: dict[str, Any] = {}
    if row.login_at != latest:
        fixed["login_at"] = latest
    clock = row.active_at
    if row.dormant_at is None and row.warned_at is None:
        early = clock is None or clock < latest
        late = row.active_by == "login" and clock != latest and logins.wrong and not logins.right
        if early or late:
            fixed["active_at"], fixed["active_by"] = latest, "login"
    # naive UTC, as SQLite reads the service's moments back
    return fixed or None


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return
    rows_query = sa.select(
        ACCOUNTS.c.account_id,
        ACCOUNTS.c.login_at,
        ACCOUNTS.c.active_at,
        ACCOUNTS.c.active_by,
        ACCOUNTS.c.dormant_at,
        ACCOUNTS.c.warned_at,
    ).order_by(ACCOUNTS.c.account_id)
    after: str | None = None
    while True:
        query = rows_query if after is None else rows_query.where(ACCOUNTS.c.account_id > after)
        rows = bind.execute(query.limit(PAGE)).all()
        if not rows:
            return
        first, after = rows[0].account_id, rows[-1].account_id
        logins = {row.account_id: Logins(row.active_at) for row in rows}
        # SQLite compares text by code point, as the accounts are ordered: the page's accounts
        # are the subjects between its first and its last
        chained = sa.select(
            RECORDS.c.subject, RECORDS.c.payload["last_login_at"].as_string()
        ).where(
            RECORDS.c.subject.between(ACCOUNT + first, ACCOUNT + after), RECORDS.c.kind == LOGIN
        )
        for subject, written in bind.execute(chained.execution_options(yield_per=5000)):
            found = logins.get(subject.removeprefix(ACCOUNT))
            if found is not None:
                found.see(written)
        for row in rows:
            fixed = _fixed(row, logins[row.account_id])
            if fixed is not None:
                bind.execute(
                    ACCOUNTS.update().where(ACCOUNTS.c.account_id == row.account_id).values(fixed)
                )


def downgrade() -> None:
    """The rows stay as this migration corrected them: they say what the chain does, and the
    wrong values it replaced were what a bug wrote."""
