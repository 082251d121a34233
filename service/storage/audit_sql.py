"""The review machinery's records as stored: the hash chain's entries and head for
``audit verify`` and exports, and the decisions as labels for retraining."""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from itertools import groupby
from operator import itemgetter
from typing import Any, NamedTuple

from sqlalchemy import ColumnElement, String, case, cast, func, literal, select
from sqlalchemy.engine import RowMapping
from sqlalchemy.orm import Session, aliased

from service.review import chain, replay
from service.storage.item_steps import OVERTURNED
from service.storage.review_rows import utc
from service.storage.review_sql import ReviewSql
from service.storage.tables import (
    AuditHead,
    AuditRecord,
    Base,
    ReviewDecision,
    ReviewItem,
    StoredAccount,
    StoredRecord,
)


class AuditSql(ReviewSql):
    """Mixed into :class:`~service.storage.sql.SqlRepository`."""

    def audit_entries(
        self,
        start: datetime | None = None,
        end: datetime | None = None,
        chunk: int = 5000,
        through: int | None = None,
    ) -> Iterator[chain.Entry]:
        """The records in sequence order (``start <= at < end`` when given; up to sequence
        number ``through`` when given), read in chunks."""
        after = 0
        while True:
            query = select(AuditRecord).where(AuditRecord.seq > after)
            if through is not None:
                query = query.where(AuditRecord.seq <= through)
            if start is not None:
                query = query.where(AuditRecord.at >= start)
            if end is not None:
                query = query.where(AuditRecord.at < end)
            with self._session() as session:
                rows = session.scalars(query.order_by(AuditRecord.seq).limit(chunk)).all()
            if not rows:
                return
            for row in rows:
                yield chain.Entry(
                    seq=row.seq,
                    at=utc(row.at),
                    kind=row.kind,
                    subject=row.subject,
                    payload=row.payload,
                    prev_hash=row.prev_hash,
                    hash=row.hash,
                )
            after = rows[-1].seq

    def audit_head(self) -> tuple[int, str]:
        with self._session() as session:
            head = session.get(AuditHead, 1)
            assert head is not None, "the audit head row is created by the migration"
            return head.seq, head.hash

    def stored_texts(
        self, text: chain.Text, keys: Sequence[str]
    ) -> dict[str, tuple[str, str | None]]:
        """:data:`chain.Stored`: the rows of ``keys`` that hold ``text``, read in one query per
        table."""
        found: dict[str, tuple[str, str | None]] = {}
        for name in text.tables:
            table = Base.metadata.tables[name]
            (id_,) = table.primary_key.columns
            wanted = _ids(id_.type.python_type, [k for k in keys if k not in found])
            if not wanted:
                break
            query = select(id_, table.c[text.column]).where(id_.in_(wanted))
            with self._session() as session:
                found.update(
                    {str(row_id): (name, value) for row_id, value in session.execute(query)}
                )
        return found

    def unrecorded_texts(self, text: chain.Text) -> Iterator[tuple[str, str]]:
        """:data:`chain.Unrecorded`: one anti-join per table, against the keys of the records
        of ``text``'s kind, which the database holds (materialised, so that SQLite indexes them
        rather than reading every record for each row) and the rows stream from."""
        key = (
            AuditRecord.subject
            if text.row is None
            else cast(AuditRecord.payload[text.row].as_string(), String)
        )
        named = (
            select(key.label("key"))
            .where(AuditRecord.kind == text.kind)
            .cte(f"named_{text.kind.replace('.', '_')}")
            .prefix_with("MATERIALIZED")
        )
        for name in text.tables:
            table = Base.metadata.tables[name]
            (id_,) = table.primary_key.columns
            row: ColumnElement[str] = cast(id_, String)
            if text.row is None:
                row = literal(text.named) + row
            query = (
                select(id_)
                .select_from(table.outerjoin(named, named.c.key == row))
                .where(table.c[text.column].is_not(None), named.c.key.is_(None))
                .order_by(id_)
            )
            with self._session() as session:
                yield from ((name, str(row_id)) for row_id in session.scalars(query))

    def replayed_accounts(self, chunk: int = 2000) -> Iterator[replay.Replayed]:
        """Every account with a row or a record of :data:`replay.KINDS`, in account order, with
        its row, its last record of each of :data:`replay.GROUPS` and the latest login its
        profiles chained. Read ``chunk`` accounts at a time, each page's rows and records in a
        snapshot of its own, so that a write committed meanwhile is seen in both or in neither
        (an account is compared with itself alone), and no read transaction outlasts a page's
        two queries: one held for the whole walk kept SQLite's checkpoints from finishing, and
        the WAL file grew for as long as the walk ran. Memory is bounded by a page."""
        after: str | None = None
        while True:
            with self._snapshot() as session:
                page = _replay_page(session, after, chunk)
            merged = heapq.merge(
                ((row["account_id"], row) for row in page.rows),
                ((found["subject"].removeprefix(ACCOUNT), found) for found in page.named),
                key=itemgetter(0),
            )
            for account, same in groupby(merged, key=itemgetter(0)):
                # at most a row and a record's last of each group: told apart by their columns
                by_side = {"subject" in found: found for _, found in same}
                row, last_of = by_side.get(False), by_side.get(True)
                yield replay.Replayed(
                    account,
                    None if row is None else _row(row),
                    {} if last_of is None else _last(last_of),
                    page.logins.get(account),
                )
            if page.end is None:
                return
            after = page.end

    def chained_rows(self) -> int:
        """Rows of the tables each of whose writes chains a record (score records, review items,
        accounts): a chain of no records beside any of them is not this database's whole
        story (a SQLite file copied without its ``-wal`` file, say)."""
        with self._session() as session:
            return sum(
                int(session.scalar(select(func.count()).select_from(table)) or 0)
                for table in (StoredRecord, ReviewItem, StoredAccount)
            )

    def labels(self) -> Iterator[dict[str, Any]]:
        """Reviewers' final decisions on posts as training labels, one per item with its
        post's text: 1 for a confirmed violation, 0 for a dismissal or a confirmation an
        upheld appeal of the post's account overturned (:data:`OVERTURNED`: a batch member's
        appeal clears that member, not the post the row stands for)."""
        query = (
            select(ReviewDecision, ReviewItem, OVERTURNED)
            .join(ReviewItem, ReviewItem.id == ReviewDecision.item_id)
            .where(ReviewDecision.action.in_(("confirm", "dismiss")))
            # a label without the text it labels teaches nothing: a post the service never
            # stored, and a coordinated batch's item, which names no post of its own (nor
            # gives its members one: :meth:`batch_decisions`)
            .where(ReviewItem.text.is_not(None))
            .order_by(ReviewDecision.id)
        )
        with self._session() as session:
            for decision, item, cleared in session.execute(query):
                yield {
                    "item_id": item.id,
                    "post_id": item.post_id,
                    "text": item.text,
                    # a confirmation's category is what the text is; a dismissal says the
                    # head it was queued under is not (a category given with one is no label)
                    "head": decision.category if decision.action == "confirm" else item.head,
                    "label": int(decision.action == "confirm" and not cleared),
                    "action": decision.action,
                    "appeal_upheld": bool(cleared),
                    "decided_at": utc(decision.decided_at).isoformat(),
                    "policy_version": decision.policy_version,
                    "model_version": item.model_version,
                }

    def batch_decisions(self) -> int:
        """Final decisions on coordinated batches' items, which :meth:`labels` gives no label:
        coordination is how accounts posted, not what a text says (the classifier has no such
        head, and one account posting the same text is no violation), and a member post whose
        text is at issue is decided, and labelled, on its own item."""
        query = (
            select(func.count())
            .select_from(ReviewDecision)
            .join(ReviewItem, ReviewItem.id == ReviewDecision.item_id)
            .where(ReviewDecision.action.in_(("confirm", "dismiss")), ReviewItem.kind == "cluster")
        )
        with self._session() as session:
            return int(session.scalar(query) or 0)


ACCOUNT = "account:"
"""What the subject of a record of an account says before its id."""


class ReplayPage(NamedTuple):
    """A page of accounts as :func:`_replay_page` reads them."""

    rows: list[RowMapping]
    named: list[RowMapping]
    """The records' last of each group, per account."""
    logins: dict[str, datetime]
    """The latest login the records report, per account that has one."""
    end: str | None
    """The page's last account, after which the next starts; None: the walk's last page."""


def _replay_page(session: Session, after: str | None, chunk: int) -> ReplayPage:
    """The account rows and the records' last of each account after ``after``, up to the
    account where the first of the two to fill ``chunk`` ends, and the logins the records of
    those accounts report. Each is read in account order (code point order, as SQLite's and
    PostgreSQL's "C" collation order them, and Python compares strings in) and merged (SQLite,
    which builds no index on a grouped subquery, would read all of one for each row of the
    other were the database to join them). The logins are compared here, as moments: a record
    written before logins were stored in UTC chains its login in the zone it was given in, which
    text in SQL does not compare by."""
    in_order = _code_points(session)
    account_id = in_order(StoredAccount.__table__.c.account_id)
    subject = in_order(AuditRecord.__table__.c.subject)
    rows = select(
        StoredAccount.account_id, *(StoredAccount.__table__.c[field] for field in replay.FIELDS)
    )
    last = (
        select(
            subject.label("subject"),
            *(
                func.max(case((AuditRecord.kind.in_(kinds), AuditRecord.seq))).label(
                    f"{group}_last"
                )
                for group, kinds in replay.GROUPS.items()
            ),
        )
        .where(AuditRecord.kind.in_(replay.KINDS))
        # by the ordered column, so that PostgreSQL groups along ix_audit_records_subject
        .group_by(subject)
    )
    logins = select(subject, AuditRecord.payload[replay.LOGIN_FIELD].as_string()).where(
        AuditRecord.kind == replay.LOGIN
    )
    if after is not None:
        rows = rows.where(account_id > after)
        last = last.where(subject > ACCOUNT + after)
        logins = logins.where(subject > ACCOUNT + after)
    lasts = last.order_by(subject).limit(chunk).subquery("last_records")
    records = {group: aliased(AuditRecord, name=f"last_{group}") for group in replay.GROUPS}
    chained = select(
        lasts.c.subject,
        *(
            column.label(f"{group}_{column.key}")
            for group, record in records.items()
            for column in (record.seq, record.at, record.kind, record.payload)
        ),
    ).select_from(lasts)
    for group, record in records.items():
        chained = chained.outerjoin(record, record.seq == lasts.c[f"{group}_last"])
    stored = list(session.execute(rows.order_by(account_id).limit(chunk)).mappings())
    named = list(session.execute(chained.order_by(in_order(lasts.c.subject))).mappings())
    filled = [
        *([stored[-1]["account_id"]] if len(stored) == chunk else []),
        *([named[-1]["subject"].removeprefix(ACCOUNT)] if len(named) == chunk else []),
    ]
    end = min(filled) if filled else None
    if end is not None:
        stored = [row for row in stored if row["account_id"] <= end]
        named = [found for found in named if found["subject"].removeprefix(ACCOUNT) <= end]
        logins = logins.where(subject <= ACCOUNT + end)
    latest: dict[str, datetime] = {}
    for who, written in session.execute(logins):
        moment = replay.login(written)
        account = who.removeprefix(ACCOUNT)
        if moment is not None and (account not in latest or moment > latest[account]):
            latest[account] = moment
    return ReplayPage(stored, named, latest, end)


def _code_points(session: Session) -> Callable[[ColumnElement[Any]], ColumnElement[Any]]:
    """A column as ordered by code point on the session's database."""
    if session.get_bind().dialect.name == "postgresql":
        return lambda column: column.collate("C")
    return lambda column: column


def _row(found: RowMapping) -> dict[str, Any]:
    """An account's :data:`replay.FIELDS`, its moments in UTC."""
    return {
        field: utc(found[field]) if isinstance(found[field], datetime) else found[field]
        for field in replay.FIELDS
    }


def _last(found: RowMapping) -> dict[str, replay.Last]:
    """An account's last record of each group it has one of."""
    return {
        group: replay.Last(
            found[f"{group}_seq"],
            utc(found[f"{group}_at"]),
            found[f"{group}_kind"],
            found[f"{group}_payload"],
        )
        for group in replay.GROUPS
        if found[f"{group}_seq"] is not None
    }


def _ids(kind: type, keys: Sequence[str]) -> list[Any]:
    """``keys`` as the ids of a table whose ids are of type ``kind``: one no id can be (a
    record's subject edited to ``report:x``, which its hash shows) names no row."""
    if kind is not int:
        return list(keys)
    return [int(k) for k in keys if k.isascii() and k.isdigit()]
