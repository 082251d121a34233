"""Every name an account held (``account_names``, folded as the re-registration check folds
them), so that a closed account's earlier names stay refused to re-registration as its last one
does (art8): a rename just before the close no longer frees the name the account was known by.

The table starts with each account's current name and every name its chained ``account.profile``
records show it held, folded as the service's :func:`~service.review.registration.fold_name`
folded them when this migration was written (the folding the stored ``accounts.folded_name``
had too): :func:`_fold_name` is a copy of it, so that a later change to the service's folding
does not change what this migration writes (such a change comes with a migration of its own).

Revision ID: 0010_account_names
Revises: 0009_reporter_ids
"""

from __future__ import annotations

import re
import unicodedata
from functools import cache

import opencc
import sqlalchemy as sa
from alembic import op

revision = "0010_account_names"
down_revision: str | None = "0009_reporter_ids"
branch_labels: str | None = None
depends_on: str | None = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
ID_CHARS = 256
TABLE = "account_names"
INDEX = "ix_account_names_account_id"
PREFIX = "account:"

# fold_name as it was: service.normalise.normalise's text (its window, read-ahead and patterns)
# with all but letters and digits removed
_WINDOW = 256
_READ_AHEAD = 4
_MARGIN = 16
_URL = re.compile(r"https?://[^\s\u3000-\u303f\uff00-\uffef\u4e00-\u9fff]*", re.IGNORECASE)
_HAN = "\u3400-\u4dbf\u4e00-\u9fff"
_SPACED_OUT = re.compile(rf"(?<=[{_HAN}])(?<![{_HAN}]{{2}})[\s*·•・]+(?=[{_HAN}](?![{_HAN}]))")
_SPACE = re.compile(r"\s+")


@cache
def _t2s() -> opencc.OpenCC:
    return opencc.OpenCC("t2s")


def _normalised(text: str, window: int) -> tuple[str, bool]:
    """The normalised text's first ``window`` characters, and whether there were more."""
    chars = [
        out
        for ch in text
        if unicodedata.category(ch) != "Cf"
        for out in unicodedata.normalize("NFKC", ch).lower()
    ]
    joined = "".join(chars)
    folded: str = _t2s().convert(joined)
    if len(folded) != len(joined):
        folded = "".join(c2 if len(c2 := _t2s().convert(c)) == 1 else c for c in chars)
    folded = _SPACE.sub(" ", _SPACED_OUT.sub("", _URL.sub(" url ", folded))).strip(" ")
    return folded[:window], len(folded) > window


def _fold_name(name: str) -> str:
    read = _READ_AHEAD * _WINDOW
    while read < len(name):
        text, truncated = _normalised(name[:read], _WINDOW + _MARGIN)
        if truncated:
            break
        read *= _READ_AHEAD
    else:
        text, _ = _normalised(name, _WINDOW)
    return "".join(ch for ch in text[:_WINDOW] if unicodedata.category(ch)[0] in "LN")


def _held(connection: sa.Connection) -> set[tuple[str, str]]:
    """(account id, folded name) for each name an account holds or its records show it held."""
    held: set[tuple[str, str]] = {
        (account, folded)
        for account, folded in connection.execute(
            sa.text("SELECT account_id, folded_name FROM accounts WHERE folded_name IS NOT NULL")
        )
    }
    accounts = sa.table("accounts", sa.column("account_id", sa.String))
    records = sa.table(
        "audit_records",
        sa.column("kind", sa.String),
        sa.column("subject", sa.Text),
        sa.column("payload", sa.JSON),
    )
    profiles = sa.select(records.c.subject, records.c.payload).where(
        records.c.kind == "account.profile",
        records.c.subject.in_(sa.select(PREFIX + accounts.c.account_id)),
    )
    named: set[tuple[str, str]] = set()
    # read a chunk at a time: every profile write (followers too) has its record
    for subject, payload in connection.execute(profiles.execution_options(yield_per=10_000)):
        name = (payload or {}).get("name")
        if isinstance(name, str):
            named.add((subject.removeprefix(PREFIX), name))
    held |= {(account, _fold_name(name)) for account, name in named}
    return held


def upgrade() -> None:
    table = op.create_table(
        TABLE,
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column(
            "account_id",
            sa.String(ID_CHARS),
            sa.ForeignKey("accounts.account_id"),
            nullable=False,
        ),
        sa.Column("folded_name", sa.Text(), nullable=False),
    )
    op.create_index(INDEX, TABLE, ["account_id"])
    held = sorted(_held(op.get_bind()))
    if held:
        op.bulk_insert(table, [{"account_id": a, "folded_name": n} for a, n in held])


def downgrade() -> None:
    op.drop_index(INDEX, table_name=TABLE)
    op.drop_table(TABLE)
