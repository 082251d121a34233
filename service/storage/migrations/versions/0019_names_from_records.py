"""The names accounts held (``account_names``) folded anew from the names their chained
``account.profile`` records hold, as 0010 first read them. 0017 folded each earlier name again
from the folded form stored, which had lost what followed a Hangul filler right after a link:
the folding before it read the filler as a letter, so the link swallowed it and what came after
("http://x.cn\u3164abc" was held as "url", where ``fold_name`` reads "urlabc"). Such a name
matched neither the name it was nor names like it, and held a link's "url" instead.

Of each account with profile records, the names held become the foldings of every name its
records show and of its current name: the ones missing are added, and a row none of them folds
to is dropped, as is a second row of one name. Every name an account held went through such a
record (the service writes the name it holds with the account's profile record, in one
transaction; 0010 read them from the records), so a row no name folds to is a folding that
lost part of its name, one that 0017 could not mend. An account without profile records keeps
its rows as 0017 left them. :func:`_fold_name` is a copy of ``fold_name`` as this migration
was written, so that a later change of the service's folding does not change what it writes.

A downgrade leaves the names as they are: the folding before it reads them as this one does.

Revision ID: 0019_names_from_records
Revises: 0018_score_merge_keys
"""

from __future__ import annotations

import re
import unicodedata
from functools import cache

import opencc
import sqlalchemy as sa
from alembic import op

revision = "0019_names_from_records"
down_revision: str | None = "0018_score_merge_keys"
branch_labels: str | None = None
depends_on: str | None = None

CHUNK = 10_000
PREFIX = "account:"

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


def _names(connection: sa.Connection) -> dict[str, set[str]]:
    """Of each account with profile records, the foldings of its names: those its records show,
    and its current one."""
    accounts = sa.table("accounts", sa.column("account_id"), sa.column("folded_name"))
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
    named: dict[str, set[str]] = {}
    # a chunk at a time: every profile write (followers too) has its record
    for subject, payload in connection.execute(profiles.execution_options(yield_per=CHUNK)):
        folded = named.setdefault(subject.removeprefix(PREFIX), set())
        name = (payload or {}).get("name")
        if isinstance(name, str):
            folded.add(_fold_name(name))
    current = sa.select(accounts.c.account_id, accounts.c.folded_name).where(
        accounts.c.folded_name.is_not(None)
    )
    for account, folded_name in connection.execute(current.execution_options(yield_per=CHUNK)):
        if account in named:
            named[account].add(folded_name)
    return named


def upgrade() -> None:
    connection = op.get_bind()
    named = _names(connection)
    held = sa.table(
        "account_names", sa.column("id"), sa.column("account_id"), sa.column("folded_name")
    )
    stale: list[int] = []
    rows = sa.select(held.c.id, held.c.account_id, held.c.folded_name)
    for row, account, folded in connection.execute(rows.execution_options(yield_per=CHUNK)):
        if account not in named:
            continue
        if folded in named[account]:
            # held: a second row of the name is dropped, and what is left is missing
            named[account].discard(folded)
        else:
            stale.append(row)
    for start in range(0, len(stale), CHUNK):
        connection.execute(sa.delete(held).where(held.c.id.in_(stale[start : start + CHUNK])))
    missing = sorted((account, folded) for account, names in named.items() for folded in names)
    for start in range(0, len(missing), CHUNK):
        op.bulk_insert(
            held,
            [{"account_id": a, "folded_name": n} for a, n in missing[start : start + CHUNK]],
        )


def downgrade() -> None:
    """The names stay as this migration folds them (see the module's docstring)."""
