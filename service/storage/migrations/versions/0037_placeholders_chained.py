"""What ``0030_placeholder_subjects`` did, appended to the audit chain: it cleared placeholder
subject digests from ``accounts`` and ``protected_name_subjects`` and wrote no record, so the
chain's history of those accounts and protected names went on holding a subject the rows no
longer did, with nothing to say why.

0030 did not keep what it cleared, so it is found again from the chain: a subject the service
stores is never replaced nor removed, so an account whose ``account.profile`` records held one
of 0030's placeholder digests (in their keyed form, or the unkeyed one records written before
``0028_subject_keys`` hold), and whose later record or row holds another or none, was cleared
by 0030; likewise a placeholder a ``protected.added`` record authorised that its entry, still
there, no longer holds. Each gets one record, ``account.subject_cleared`` (``subject``: the
digest as the records before it held it) or ``protected.subject_removed`` (``subjects``), with
``by`` naming 0030, appended under the head's lock as the service appends. A database 0030 found
no placeholder in gets none.

The chain's linking (:func:`service.review.chain.canonical` and ``link``) and 0030's placeholder
forms and keying are copies of the code as it was written, as a migration keeps what it ran with.

The downgrade leaves the records: nothing erases an audit record, and an upgrade after it
appends none of them again.

Revision ID: 0037_placeholders_chained
Revises: 0036_standing_dispositions
"""

from __future__ import annotations

import hashlib
import hmac
import json
import string
import unicodedata
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from alembic import context, op
from alembic.util import CommandError

revision = "0037_placeholders_chained"
down_revision: str | None = "0036_standing_dispositions"
branch_labels: str | None = None
depends_on: str | None = None

BY = "0030_placeholder_subjects"

# service.review.chain's linking as it is
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _canonical(seq: int, at: datetime, kind: str, subject: str, payload: dict[str, Any]) -> bytes:
    micros = (at.replace(tzinfo=at.tzinfo or UTC) - EPOCH) // timedelta(microseconds=1)
    body = {"seq": seq, "at": micros, "kind": kind, "subject": subject, "data": payload}
    return json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()


def _link(
    prev_hash: str, seq: int, at: datetime, kind: str, subject: str, payload: dict[str, Any]
) -> str:
    return hashlib.sha256(
        prev_hash.encode() + _canonical(seq, at, kind, subject, payload)
    ).hexdigest()


# 0030_placeholder_subjects's placeholder forms and keying as they are
DASHES = "-\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe63"
INVISIBLE = " \u3000\u00a0\u200b\u200c\u200d\u2060\ufeff"
MARKS = string.punctuation + "。，、；：？！…·《》（）【】「」／＊＿＃－～"
LONGEST_RUN = 8


def _normalised(subject_id: str) -> str:
    folded = unicodedata.normalize("NFKC", subject_id).upper()
    return "".join(
        ch for ch in folded if ch not in DASHES and unicodedata.category(ch)[0] not in "ZC"
    )


def _placeholders() -> set[str]:
    runs = {ch * n for ch in DASHES + INVISIBLE + MARKS for n in range(1, LONGEST_RUN + 1)}
    return {_normalised(run) for run in runs} | {run.strip() for run in runs}


def _plain(form: str) -> str:
    return hashlib.sha256(f"qinglang-subject:{form}".encode()).hexdigest()


def _keyed(key: bytes, plain: str) -> str:
    return hmac.new(key, plain.encode(), hashlib.sha256).hexdigest()


RECORDS = sa.table(
    "audit_records",
    sa.column("seq", sa.BigInteger()),
    sa.column("at", sa.DateTime(timezone=True)),
    sa.column("kind", sa.String()),
    sa.column("subject", sa.Text()),
    sa.column("payload", sa.JSON()),
    sa.column("prev_hash", sa.String()),
    sa.column("hash", sa.String()),
)


def _chained(bind: sa.Connection, kind: str) -> Iterator[tuple[str, dict[str, Any]]]:
    query = (
        sa.select(RECORDS.c.subject, RECORDS.c.payload)
        .where(RECORDS.c.kind == kind)
        .order_by(RECORDS.c.seq)
        .execution_options(yield_per=5000)
    )
    yield from bind.execute(query).tuples()


def _cleared_accounts(bind: sa.Connection, keyed: dict[str, str]) -> list[tuple[str, str]]:
    """(account id, digest as chained) of each account whose chained placeholder was cleared.
    ``keyed``: each placeholder digest, keyed and unkeyed, to its keyed form."""
    holding: dict[str, str] = {}
    cleared: list[tuple[str, str]] = []
    for subject, payload in _chained(bind, "account.profile"):
        account = subject.partition(":")[2]
        digest = payload.get("subject")
        held = holding.pop(account, None)
        if held is not None and keyed.get(digest or "") != keyed[held]:
            cleared.append((account, held))
        if digest in keyed:
            holding[account] = digest
    accounts = sa.table(
        "accounts", sa.column("account_id", sa.String()), sa.column("subject_digest", sa.String())
    )
    for account, held in sorted(holding.items()):
        row = bind.scalar(
            sa.select(accounts.c.subject_digest).where(accounts.c.account_id == account)
        )
        if row != keyed[held]:
            cleared.append((account, held))
    return sorted(cleared)


def _removed_authorisations(
    bind: sa.Connection, keyed: dict[str, str]
) -> list[tuple[int, list[str]]]:
    """(entry id, digests as chained) of each protected name still there whose chained
    placeholder authorisations it no longer holds."""
    authorised: dict[int, list[str]] = {}
    for subject, payload in _chained(bind, "protected.added"):
        given = payload.get("subjects", []) + payload.get("stripped_subjects", [])
        found = [d for d in given if d in keyed]
        if found:
            authorised[int(subject.partition(":")[2])] = found
    subjects = sa.table(
        "protected_name_subjects",
        sa.column("entry_id", sa.BigInteger()),
        sa.column("subject_digest", sa.String()),
    )
    names = sa.table("protected_names", sa.column("id", sa.BigInteger()))
    removed: list[tuple[int, list[str]]] = []
    for entry, found in sorted(authorised.items()):
        if bind.scalar(sa.select(names.c.id).where(names.c.id == entry)) is None:
            continue
        held = set(
            bind.scalars(sa.select(subjects.c.subject_digest).where(subjects.c.entry_id == entry))
        )
        gone = [d for d in found if keyed[d] not in held]
        if gone:
            removed.append((entry, gone))
    return removed


def upgrade() -> None:
    key = context.config.attributes.get("subject_key")
    if not isinstance(key, bytes):
        raise CommandError(
            "0037_placeholders_chained finds the placeholder subject digests 0030 cleared under "
            "the subject key: migrate with qinglang migrate (or serve), which pass it"
        )
    keyed: dict[str, str] = {}
    for form in _placeholders():
        plain = _plain(form)
        keyed[plain] = keyed[_keyed(key, plain)] = _keyed(key, plain)
    bind = op.get_bind()
    log: list[tuple[str, str, dict[str, Any]]] = [
        ("account.subject_cleared", f"account:{account}", {"subject": held, "by": BY})
        for account, held in _cleared_accounts(bind, keyed)
    ]
    log += [
        ("protected.subject_removed", f"protected:{entry}", {"subjects": gone, "by": BY})
        for entry, gone in _removed_authorisations(bind, keyed)
    ]
    # an upgrade after a downgrade finds the records the first one appended, which stay
    appended = {
        (kind, subject)
        for kind in ("account.subject_cleared", "protected.subject_removed")
        for subject, payload in _chained(bind, kind)
        if payload.get("by") == BY
    }
    log = [
        (kind, subject, payload)
        for kind, subject, payload in log
        if (kind, subject) not in appended
    ]
    if not log:
        return
    head = sa.table(
        "audit_head",
        sa.column("id", sa.Integer()),
        sa.column("seq", sa.BigInteger()),
        sa.column("hash", sa.String()),
    )
    # the head's lock, held until the migration's transaction ends, as the service appends
    seq, prev = bind.execute(
        sa.select(head.c.seq, head.c.hash).where(head.c.id == 1).with_for_update()
    ).one()
    at = datetime.now(UTC)
    rows = []
    for kind, subject, payload in log:
        seq += 1
        digest = _link(prev, seq, at, kind, subject, payload)
        rows.append(
            {
                "seq": seq,
                "at": at,
                "kind": kind,
                "subject": subject,
                "payload": payload,
                "prev_hash": prev,
                "hash": digest,
            }
        )
        prev = digest
    bind.execute(RECORDS.insert(), rows)
    bind.execute(head.update().where(head.c.id == 1).values(seq=seq, hash=prev))


def downgrade() -> None:
    pass
