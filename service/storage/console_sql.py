"""The read-only aggregates the web console's dashboard and reports page show. Every count is
made by the database (one grouped query each), so the dashboard costs the same with a million
items; only the last day's scores come back row by row, at most ``max_scores`` of them."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import CTE, ColumnElement, Engine, Subquery, case, func, select, true
from sqlalchemy.orm import Session

from service.review import appeals
from service.storage.item_steps import OPEN_STATUSES, OVERTURNED, after_cursor
from service.storage.repository import reads_only
from service.storage.review_rows import maybe_utc, utc
from service.storage.tables import (
    REPORT_STATUS,
    KeptPolicy,
    ReviewDecision,
    ReviewItem,
    StoredAppeal,
    StoredRecord,
    StoredReport,
)
from service.storage.transaction import as_of_first_read

MAX_SCORES = 5_000
"""The most records the dashboard's score plots read: the newest of the last day."""
AGE_BUCKETS_H = (1, 4, 24, 72)
"""Upper edges of the queue's age buckets, in hours (the last bucket is open-ended)."""


@dataclass(frozen=True)
class ReportRow:
    id: int
    post_id: str | None
    account_id: str | None
    category: str
    text: str
    item_id: int
    status: str
    created_at: datetime


@dataclass(frozen=True)
class ReportPage:
    rows: list[ReportRow]
    open: int
    """Reports whose item is undecided, in all pages."""
    overdue: int
    """Of those, the ones past their deadline."""
    next: str | None


@dataclass(frozen=True)
class ItemReport:
    category: str
    text: str
    created_at: datetime


@dataclass(frozen=True)
class ItemReports:
    rows: list[ItemReport]
    total: int
    """All the item's reports, of which ``rows`` are the first."""


@dataclass(frozen=True)
class DecisionRow:
    reviewer: str
    decided_at: datetime
    action: str
    category: str | None
    basis: str | None
    note: str | None


@dataclass(frozen=True)
class AccountItem:
    """Another item of an item's account, with its final decision where it has one."""

    id: int
    kind: str
    head: str | None
    status: str
    enqueued_at: datetime
    decided: DecisionRow | None


@dataclass(frozen=True)
class AccountItems:
    rows: list[AccountItem]
    total: int
    """All the account's other items, of which ``rows`` are the latest."""


@dataclass(frozen=True)
class ItemAppeal:
    id: int
    account_id: str
    status: str
    reason: str
    filed_at: datetime
    resolved_by: str | None
    resolved_at: datetime | None
    note: str | None


Thresholds = dict[str, tuple[float, float]]
"""Each risk's review and block thresholds, by risk."""


def days_back(now: datetime, zone: ZoneInfo, days: int) -> list[date]:
    """The last ``days`` dates in ``zone``, the oldest first, ``now``'s the last."""
    today = now.astimezone(zone).date()
    return [today - timedelta(days=back) for back in range(days - 1, -1, -1)]


@reads_only
class ConsoleReads:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._thresholds: dict[str, Thresholds] = {}
        """The thresholds of each policy version read so far."""

    def flagged_per_day(
        self, now: datetime, days: int, zone: ZoneInfo
    ) -> dict[str, dict[str, int]]:
        """Items enqueued per head and date in ``zone`` (``YYYY-MM-DD``) on the last ``days``
        dates (:func:`days_back`). The dates start at the zone's midnights, worked out here as
        moments in UTC, so that both databases count alike: SQLite knows no zones, and
        PostgreSQL's own date of a moment is in its session's zone."""
        dates = days_back(now, zone, days)
        starts = [datetime.combine(d, time(), zone).astimezone(UTC) for d in dates]
        day = case(
            *[
                (ReviewItem.enqueued_at >= start, d.isoformat())
                for d, start in reversed(list(zip(dates, starts, strict=True)))
            ]
        )
        query = (
            select(ReviewItem.head, day, func.count())
            .where(ReviewItem.enqueued_at >= starts[0])
            .group_by(ReviewItem.head, day)
        )
        out: dict[str, dict[str, int]] = {}
        with Session(self.engine) as session:
            for head, when, count in session.execute(query):
                out.setdefault(head or "-", {})[str(when)] = int(count)
        return out

    def open_by_age(self, now: datetime) -> list[int]:
        """Open (and escalated) items per age bucket of :data:`AGE_BUCKETS_H`, then older."""
        bucket = case(
            *[
                (ReviewItem.enqueued_at > now - timedelta(hours=h), i)
                for i, h in enumerate(AGE_BUCKETS_H)
            ],
            else_=len(AGE_BUCKETS_H),
        )
        query = (
            select(bucket, func.count())
            .where(ReviewItem.status.in_(("open", "escalated")))
            .group_by(bucket)
        )
        counts = [0] * (len(AGE_BUCKETS_H) + 1)
        with Session(self.engine) as session:
            for index, count in session.execute(query):
                counts[int(index)] = int(count)
        return counts

    def decisions_per_reviewer(self, now: datetime, days: int) -> dict[str, dict[str, int]]:
        """Decisions per reviewer and action over the last ``days``."""
        query = (
            select(ReviewDecision.reviewer, ReviewDecision.action, func.count())
            .where(ReviewDecision.decided_at >= now - timedelta(days=days))
            .group_by(ReviewDecision.reviewer, ReviewDecision.action)
        )
        out: dict[str, dict[str, int]] = {}
        with Session(self.engine) as session:
            for reviewer, action, count in session.execute(query):
                out.setdefault(reviewer, {})[action] = int(count)
        return out

    def appeal_outcomes(self) -> dict[str, int]:
        query = select(StoredAppeal.status, func.count()).group_by(StoredAppeal.status)
        with Session(self.engine) as session:
            return {status: int(count) for status, count in session.execute(query)}

    def recent_scores(
        self, now: datetime, policy_version: str, max_scores: int = MAX_SCORES
    ) -> list[dict[str, float]]:
        """The per-head scores of the records stored in the last day under ``policy_version``
        (the newest ``max_scores``): only those whose decision the policy persists (review and
        block), never a post that passed; and none a re-score stored under another policy,
        whose thresholds are not the ones the plot draws."""
        query = (
            select(StoredRecord.record)
            .where(
                StoredRecord.created_at >= now - timedelta(days=1),
                StoredRecord.policy_version == policy_version,
            )
            .order_by(StoredRecord.id.desc())
            .limit(max_scores)
        )
        with Session(self.engine) as session:
            return [dict(record.get("scores", {})) for (record,) in session.execute(query)]

    def reports(
        self,
        *,
        open_only: bool,
        late_before: datetime,
        cursor: tuple[float, int] | None,
        limit: int,
    ) -> ReportPage:
        """Reports, the earliest filed (the soonest due, art20) first, ``limit`` after
        ``cursor``, with their item's status; and how many are open, and of those filed before
        ``late_before`` (overdue), in all pages. The cursor is the appeals listing's: a moment
        (here the filing) and an id."""
        after = (
            []
            if cursor is None
            else [after_cursor(StoredReport.created_at, StoredReport.id, cursor)]
        )
        query = (
            select(
                StoredReport,
                # the API's answer to the reporter: a confirmation an appeal overturned is not
                # shown as confirmed
                case((OVERTURNED, "overturned"), else_=ReviewItem.status),
            )
            .join(ReviewItem, ReviewItem.id == StoredReport.item_id)
            .order_by(StoredReport.created_at, StoredReport.id)
        )
        if open_only:
            first = _first_open(self.engine.dialect.name, after, limit + 1)
            query = query.join(first, first.c.id == StoredReport.id)
        else:
            query = query.where(*after).limit(limit + 1)
        # each open reported item's reports counted apart, a subquery an item, which both
        # databases run item by item: joined, PostgreSQL read every report (_first_open)
        theirs = StoredReport.item_id == ReviewItem.id
        filed = select(func.count()).where(theirs)
        late = filed.where(StoredReport.created_at < late_before)
        counts = select(
            *(func.coalesce(func.sum(q.scalar_subquery()), 0) for q in (filed, late))
        ).where(_OPEN_REPORTED)
        # one snapshot: a decision committing between the page's read and the counts' would
        # have them disagree
        with Session(self.engine) as session:
            as_of_first_read(session)
            rows = [
                ReportRow(
                    id=report.id,
                    post_id=report.post_id,
                    account_id=report.account_id,
                    category=report.category,
                    text=report.text,
                    item_id=report.item_id,
                    status=status,
                    created_at=utc(report.created_at),
                )
                for report, status in session.execute(query)
            ]
            open_, overdue = session.execute(counts).one()
        last = rows[limit - 1] if len(rows) > limit else None
        return ReportPage(
            rows=rows[:limit],
            open=int(open_),
            overdue=int(overdue),
            next=None if last is None else appeals.cursor(last.created_at, last.id),
        )

    def item_reports(self, item_id: int, limit: int) -> ItemReports:
        """What the reporters of ``item_id`` wrote, the first ``limit`` filed, and how many
        reports it has."""
        query = (
            select(StoredReport.category, StoredReport.text, StoredReport.created_at)
            .where(StoredReport.item_id == item_id)
            .order_by(StoredReport.created_at, StoredReport.id)
            .limit(limit)
        )
        total = (
            select(func.count()).select_from(StoredReport).where(StoredReport.item_id == item_id)
        )
        with Session(self.engine) as session:
            rows = [
                ItemReport(category=category, text=text, created_at=utc(created_at))
                for category, text, created_at in session.execute(query)
            ]
            return ItemReports(rows=rows, total=int(session.scalar(total) or 0))

    def decisions(self, item_id: int) -> list[DecisionRow]:
        """The decisions on ``item_id`` in the order they were made (an escalation, then the
        decision that closed it)."""
        query = (
            select(ReviewDecision)
            .where(ReviewDecision.item_id == item_id)
            .order_by(ReviewDecision.decided_at, ReviewDecision.id)
        )
        with Session(self.engine) as session:
            return [_decision_row(d) for d in session.scalars(query)]

    def excerpts(self, item_ids: Collection[int], chars: int) -> dict[int, tuple[str, bool]]:
        """The first ``chars`` characters of the post text kept with each of ``item_ids`` that
        has one, and whether the text goes on past them: the queue's rows (a page of them, one
        read of the primary key), without reading whole texts of up to 10,000 characters."""
        query = select(
            ReviewItem.id,
            func.substr(ReviewItem.text, 1, chars),
            func.length(ReviewItem.text) > chars,
        ).where(ReviewItem.id.in_(item_ids), ReviewItem.text.is_not(None))
        with Session(self.engine) as session:
            return {row[0]: (row[1], bool(row[2])) for row in session.execute(query)}

    def post_text(self, post_id: str) -> str | None:
        """The text kept with a review item of ``post_id`` (the earlier post a copy is shown
        beside), if the post was ever queued."""
        query = (
            select(ReviewItem.text)
            .where(ReviewItem.post_id == post_id, ReviewItem.text.is_not(None))
            .limit(1)
        )
        with Session(self.engine) as session:
            return session.execute(query).scalar()

    def policy_thresholds(self, version: str) -> Thresholds | None:
        """The review and block thresholds of the policy kept under ``version``; None where
        its rules were never kept (records scored before the service kept them). Kept rules
        never change (the first kept under a version stay): each version is read once."""
        if version in self._thresholds:
            return self._thresholds[version]
        query = select(KeptPolicy.rules).where(KeptPolicy.version == version)
        with Session(self.engine) as session:
            rules = session.scalar(query)
        if rules is None:
            return None
        found = {
            risk: (float(rule["review"]), float(rule["block"]))
            for risk, rule in rules.get("risks", {}).items()
        }
        self._thresholds[version] = found
        return found

    def escalated_waiting(self) -> int:
        """Escalated items waiting for an admin (other than the one who escalated each)."""
        query = select(func.count()).select_from(ReviewItem).where(ReviewItem.status == "escalated")
        with Session(self.engine) as session:
            return int(session.scalar(query) or 0)

    def place(self, item_id: int) -> tuple[tuple[float, int], bool] | None:
        """Where ``item_id`` stands in the queue's order (its listing cursor: urgency and id),
        and whether it was escalated (it is, or was before its final decision); None for no
        such item."""
        escalated = (
            select(ReviewDecision.id)
            .where(ReviewDecision.item_id == item_id, ReviewDecision.action == "escalate")
            .exists()
        )
        query = select(ReviewItem.urgency, escalated).where(ReviewItem.id == item_id)
        with Session(self.engine) as session:
            found = session.execute(query).first()
        return None if found is None else ((float(found[0]), item_id), bool(found[1]))

    def account_items(self, account_id: str, other_than: int, limit: int) -> AccountItems:
        """The account's items other than ``other_than``, the latest ``limit`` queued first,
        each with its final decision (confirmed or dismissed), and how many it has: the
        account's history of review as a reviewer weighs a new item of it."""
        query = (
            select(
                ReviewItem.id,
                ReviewItem.kind,
                ReviewItem.head,
                ReviewItem.status,
                ReviewItem.enqueued_at,
                func.count().over(),
            )
            .where(ReviewItem.account_id == account_id, ReviewItem.id != other_than)
            .order_by(ReviewItem.id.desc())
            .limit(limit)
        )
        with Session(self.engine) as session:
            found = session.execute(query).all()
            if not found:
                return AccountItems(rows=[], total=0)
            final = session.scalars(
                select(ReviewDecision)
                .where(
                    ReviewDecision.item_id.in_([row.id for row in found]),
                    ReviewDecision.action.in_(("confirm", "dismiss")),
                )
                .order_by(ReviewDecision.id)
            )
            decided = {d.item_id: _decision_row(d) for d in final}
        return AccountItems(
            rows=[
                AccountItem(
                    id=item_id,
                    kind=kind,
                    head=head,
                    status=status,
                    enqueued_at=utc(enqueued_at),
                    decided=decided.get(item_id),
                )
                for item_id, kind, head, status, enqueued_at, _ in found
            ],
            # the window's count is of every row the query matched, before its limit
            total=int(found[0][5]),
        )

    def item_appeals(self, item_id: int) -> list[ItemAppeal]:
        """The appeals of ``item_id``'s confirmation, in the order they were filed."""
        query = (
            select(StoredAppeal).where(StoredAppeal.item_id == item_id).order_by(StoredAppeal.id)
        )
        with Session(self.engine) as session:
            return [
                ItemAppeal(
                    id=a.id,
                    account_id=a.account_id,
                    status=a.status,
                    reason=a.reason,
                    filed_at=utc(a.filed_at),
                    resolved_by=a.resolved_by,
                    resolved_at=maybe_utc(a.resolved_at),
                    note=a.note,
                )
                for a in session.scalars(query)
            ]

    def deciders(self, item_ids: Collection[int]) -> dict[int, tuple[str, list[str]]]:
        """Who took the final decision on each of ``item_ids`` (an appeal of it goes to
        another reviewer), and who escalated the item first (to an admin, then; none for an
        item never escalated), by item."""
        ids = list(item_ids)
        query = (
            select(ReviewDecision.item_id, ReviewDecision.reviewer, ReviewDecision.action)
            .where(
                ReviewDecision.item_id.in_(ids),
                ReviewDecision.action.in_(("confirm", "dismiss", "escalate")),
            )
            .order_by(ReviewDecision.id)
        )
        final: dict[int, str] = {}
        up: dict[int, set[str]] = {}
        with Session(self.engine) as session:
            for item_id, by, action in session.execute(query):
                if action == "escalate":
                    up.setdefault(item_id, set()).add(by)
                else:
                    final[item_id] = by
        return {item_id: (by, sorted(up.get(item_id, ()))) for item_id, by in final.items()}

    def filers(self, appeal_ids: Collection[int]) -> dict[int, str]:
        """Who filed each of ``appeal_ids`` (a key's id, its owner's name where it has one, or
        the console user who filed it on the holder's behalf: the person its resolution is
        then kept from)."""
        query = select(StoredAppeal.id, StoredAppeal.filed_by).where(
            StoredAppeal.id.in_(list(appeal_ids))
        )
        with Session(self.engine) as session:
            return {appeal_id: by for appeal_id, by in session.execute(query)}


def _decision_row(decision: ReviewDecision) -> DecisionRow:
    return DecisionRow(
        reviewer=decision.reviewer,
        decided_at=utc(decision.decided_at),
        action=decision.action,
        category=decision.category,
        basis=decision.basis,
        note=decision.note,
    )


_OPEN_REPORTED = REPORT_STATUS.in_(OPEN_STATUSES)
"""The open reported items, asked by the one expression ``ix_queue_report_status`` indexes
(:data:`~service.storage.tables.REPORT_STATUS`)."""


def _first_open(dialect: str, after: list[ColumnElement[bool]], count: int) -> Subquery:
    """The ids of the first ``count`` open reports (their item's in :data:`_OPEN_REPORTED`)
    ``after`` the cursor, in filing order.

    Read from the open reported items, each item's own reports from the cursor on
    (``ix_reports_item_created``), never from every report: a platform answers its reports,
    so that its open ones are few and the newest while half the queue (flagged posts nobody
    reported) waits. Told only how many items are open and how many reported, the planner
    took the open reported items for thousands (37,372 where 146 were) and read every report
    for theirs, a hash join; given the order and the limit alone, it walked every report in
    filing order (``ix_reports_created``) past the answered ones. On PostgreSQL each item's
    reports are a ``LATERAL`` subquery of at most ``count`` rows, which it can only read item
    by item, as the index has them; SQLite, which has no ``LATERAL``, reads a join item by item
    as it is, the open reports materialised before they are ordered and cut."""
    order = (StoredReport.created_at, StoredReport.id)
    opened: Subquery | CTE
    if dialect == "postgresql":
        theirs = (
            select(*order)
            .where(StoredReport.item_id == ReviewItem.id, *after)
            .order_by(*order)
            .limit(count)
            .lateral("theirs")
        )
        opened = (
            select(theirs.c.id, theirs.c.created_at)
            .join_from(ReviewItem, theirs, true())
            .where(_OPEN_REPORTED)
            .subquery()
        )
    else:
        opened = (
            select(*order)
            .join(ReviewItem, ReviewItem.id == StoredReport.item_id)
            .where(_OPEN_REPORTED, *after)
            .cte("open_reports")
            .prefix_with("MATERIALIZED")
        )
    return select(opened.c.id).order_by(opened.c.created_at, opened.c.id).limit(count).subquery()
