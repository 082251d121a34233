"""The stored names folded anew (``accounts.folded_name``, ``account_names.folded_name``):
the service's :func:`~service.review.registration.fold_name` reads Hangul fillers (U+115F,
U+1160, U+3164, U+FFA0) as spaces since the normalisation reads them so, where the folding
0010 stored kept them as letters. A closed account's name written with one ("张\u3164三",
stored as "张\u1160三") matched no name asked for after the change ("张三", however written),
and a filler is a way to pass off a name as another's.

An account's name is folded from the name it has (``accounts.name``) and held as the service
holds it. An earlier name is kept folded only: its row is folded again from what it holds,
which is what the name folds to now but where a filler ended a link (the link swallowed what
followed it, and the row keeps what it swallowed out). Two names of one account that now fold
alike are kept once, as the service keeps them. :func:`_fold_name` is a copy of ``fold_name``
as this migration was written, so that a later change of the service's folding does not change
what it writes (such a change comes with a migration of its own).

A downgrade leaves the names as they are: the folding before it cannot be had back from a
name stored folded, and it reads a name without fillers as this one does.

Revision ID: 0017_names_refolded
Revises: 0016_record_per_policy
"""

from __future__ import annotations

import re
import unicodedata
from functools import cache

import opencc
import sqlalchemy as sa
from alembic import op

revision = "0017_names_refolded"
down_revision: str | None = "0016_record_per_policy"
branch_labels: str | None = None
depends_on: str | None = None

CHUNK = 10_000

# fold_name as it is: service.normalise.normalise's text (its window, read-ahead, folded and
# dropped characters and patterns) with all but letters and digits removed
_WINDOW = 256
_READ_AHEAD = 4
_MARGIN = 16
_URL = re.compile(r"https?://[^\s\u3000-\u303f\uff00-\uffef\u4e00-\u9fff]*", re.IGNORECASE)
_SPACE = re.compile(r"\s+")
_HAN = "\u3400-\u4dbf\u4e00-\u9fff"
_HAN_CHAR = re.compile(f"[{_HAN}]")
_SPACED_OUT = re.compile(rf"(?<=[{_HAN}])(?<![{_HAN}]{{2}})[\s*·•・]+(?=[{_HAN}](?![{_HAN}]))")
_SEPARATORS = "/\\|-_.~^+、〜‐‒–—―−"
_SEPARATOR = re.compile(rf"[{re.escape(_SEPARATORS)}]")
_SEPARATED_RUN = re.compile(
    rf"(?<![{_HAN}])[{_HAN}](?=\s*({_SEPARATOR.pattern}))(?:\s*\1\s*[{_HAN}](?![{_HAN}])){{2,}}"
)
_INVISIBLE = frozenset("\u034f\u17b4\u17b5")
_BLANK = frozenset("\u115f\u1160\u3164\uffa0\u2800")


@cache
def _t2s() -> opencc.OpenCC:
    return opencc.OpenCC("t2s")


def _is_selector(ch: str) -> bool:
    return "\ufe00" <= ch <= "\ufe0f" or "\U000e0100" <= ch <= "\U000e01ef"


def _folded_chars(text: str) -> list[str]:
    chars: list[str] = []
    for ch in text:
        if ch.isascii():
            chars.append(ch.lower())
        elif ch in _BLANK:
            chars.append(" ")
        elif not (
            unicodedata.category(ch) == "Cf"
            or ch in _INVISIBLE
            or (_is_selector(ch) and chars and _HAN_CHAR.match(chars[-1]))
        ):
            chars.extend(unicodedata.normalize("NFKC", ch).lower())
    return chars


def _joined(run: re.Match[str]) -> str:
    return "".join(ch for ch in run.group() if _HAN_CHAR.match(ch))


def _normalised(text: str, window: int) -> tuple[str, bool]:
    """The normalised text's first ``window`` characters, and whether there were more."""
    chars = _folded_chars(text)
    joined = "".join(chars)
    folded: str = _t2s().convert(joined)
    if len(folded) != len(joined):
        folded = "".join(c2 if len(c2 := _t2s().convert(c)) == 1 else c for c in chars)
    folded = _SEPARATED_RUN.sub(_joined, _URL.sub(" url ", folded))
    folded = _SPACE.sub(" ", _SPACED_OUT.sub("", folded)).strip(" ")
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


def _refold(table: sa.TableClause, key: sa.ColumnClause[str], source: str) -> None:
    """Set ``table``'s ``folded_name`` to the folding of its ``source`` column where they differ,
    reading a chunk at a time."""
    connection = op.get_bind()
    rows = sa.select(key, table.c[source], table.c.folded_name).where(table.c[source].is_not(None))
    changed = [
        {"row": row, "folded": folded}
        for row, name, stored in connection.execute(rows.execution_options(yield_per=CHUNK))
        if (folded := _fold_name(name)) != stored
    ]
    update = (
        sa.update(table)
        .where(key == sa.bindparam("row"))
        .values(folded_name=sa.bindparam("folded"))
    )
    for start in range(0, len(changed), CHUNK):
        connection.execute(update, changed[start : start + CHUNK])


def upgrade() -> None:
    accounts = sa.table(
        "accounts", sa.column("account_id"), sa.column("name"), sa.column("folded_name")
    )
    names = sa.table("account_names", sa.column("id"), sa.column("folded_name"))
    _refold(accounts, accounts.c.account_id, "name")
    _refold(names, names.c.id, "folded_name")
    op.execute(
        "DELETE FROM account_names WHERE id NOT IN"
        " (SELECT MIN(id) FROM account_names GROUP BY account_id, folded_name)"
    )
    op.execute(
        "INSERT INTO account_names (account_id, folded_name)"
        " SELECT account_id, folded_name FROM accounts a WHERE folded_name IS NOT NULL"
        " AND NOT EXISTS (SELECT 1 FROM account_names n"
        " WHERE n.account_id = a.account_id AND n.folded_name = a.folded_name)"
    )


def downgrade() -> None:
    """The names stay folded as 0017 folds them (see the module's docstring)."""
