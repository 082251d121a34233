"""The reports page's reads at a platform's scale on PostgreSQL: ``python -m eval.reports_scale``.

Fills a fresh schema of the PostgreSQL server of ``--postgres`` (its tables made by the
migrations) in bulk (``COPY``) with, at ``--scale 1``, 500,000 reports of which 1,000 are open,
filed over half a year on posts and accounts: most targets reported once or twice, a few
thousands of times (a Pareto draw), about a seventh of them accounts and a tenth of the posts
ones the scorer had flagged (their reports join its item). A platform answers its reports well
inside art20's deadline, so the open ones are the newest, while half the queue's 200,000
flagged posts, which nobody reported, wait: the planner's statistics count the open items and
the reported ones, not that the two hardly meet.

Then it makes the reports page's reads (the open reports' first page and one three quarters
in, every report's first page and one three quarters in, the most reported item's first
reports on its page) twice on the same rows: ``before``, the statements the page ran before
:data:`INDEXES`, on the schema without that migration's indexes (its own downgrade run alone;
the item page's statements are unchanged); ``after``, the reads as the service makes them now,
with them. Each read is timed, and each of its statements run again under
``EXPLAIN (ANALYZE, BUFFERS)``; a read whose page differs before and after (its reports, in
order, and the counts) ends the run. Prints hardware, date and one markdown table."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import Engine, event, text

from eval import queue_scale
from eval.queue_scale import Plan, Statements
from eval.speed import hardware
from service.console.pages import ITEM_REPORTS, PAGE_SIZE
from service.review import appeals
from service.storage import upgrade
from service.storage.console_sql import ConsoleReads
from service.storage.database import make_engine, stored_revision

INDEXES = "0046_open_report_indexes"
"""The migration whose indexes ``after`` has and ``before`` has not."""

SIZES = {"reports": 500_000, "open": 1_000, "flagged": 200_000, "accounts": 50_000}
"""At ``--scale 1``: the reports, the open ones among them (the newest), the flagged posts
nobody reported (half of them waiting) and the accounts the items are charged to."""
SPAN = timedelta(days=180)
ON_ACCOUNTS = 0.15
"""The share of reported targets that are accounts, not posts."""
ON_FLAGGED = 0.10
"""The share of reported posts the scorer had flagged: their reports join its item."""
MOST_REPORTS = 5_000
WAITING = {"open": 0.80, "claimed": 0.10, "escalated": 0.10}


def sizes(scale: float) -> dict[str, int]:
    return {name: max(10, int(n * scale)) for name, n in SIZES.items()}


@dataclass(frozen=True)
class Target:
    """A reported post or account: its item and the moments of its reports."""

    item: int
    kind: str
    post: str | None
    account: str
    reported: list[datetime]


def fill(engine: Engine, policy_version: str, scale: float, now: datetime) -> dict[str, int]:
    """Insert the rows of :data:`SIZES` times ``scale``: the figures inserted."""
    n = sizes(scale)
    rng = random.Random(0)
    accounts = [f"acc-{i}" for i in range(n["accounts"])]

    def account() -> str:
        # skewed: a few accounts draw most of the reports and flags
        return accounts[int(len(accounts) * rng.random() ** 3)]

    # how many reports each target draws: most once or twice, a few thousands of times
    counts: list[int] = []
    left = n["reports"]
    while left > 0:
        counts.append(min(left, MOST_REPORTS, int(rng.paretovariate(1.2))))
        left -= counts[-1]
    first = n["flagged"] + 1
    targets: list[Target] = []
    for k, count in enumerate(counts):
        at = now - SPAN + SPAN * (k + 1) / (len(counts) + 1)
        # the reports of a target come within hours of its first, never after now
        spread = [min(now, at + timedelta(minutes=rng.expovariate(1 / 120))) for _ in range(count)]
        on_account = rng.random() < ON_ACCOUNTS
        kind = "score" if not on_account and rng.random() < ON_FLAGGED else "report"
        targets.append(
            Target(
                first + k,
                kind,
                None if on_account else f"post-{first + k}",
                account(),
                sorted(spread),
            )
        )
    # the newest targets wait, as many as the open reports take; the rest were answered
    open_items, left = set(), n["open"]
    for target in reversed(targets):
        if left == 0:
            break
        if len(target.reported) <= left:
            open_items.add(target.item)
            left -= len(target.reported)
    rows: list[tuple[Any, ...]] = []
    for i in range(1, n["flagged"] + 1):
        at = now - SPAN + SPAN * i / (n["flagged"] + 1)
        # half of them, more of the recent
        waits = rng.random() < 1.5 * (i / n["flagged"]) ** 2
        rows.append(_item(rng, policy_version, i, "score", f"post-{i}", account(), at, None, waits))
    for t in targets:
        merge = f"post:{t.post}" if t.post else f"account:{t.account}"
        rows.append(
            _item(rng, policy_version, t.item, t.kind, t.post, t.account, t.reported[0],
                  t.reported[0], t.item in open_items, merge)
        )  # fmt: skip
    queue_scale.copy_rows(
        engine,
        "review_queue",
        ["id", "kind", "post_id", "account_id", "merge_key", "head", "policy_version",
         "decision", "severity", "reach", "reports", "urgency", "status", "assignee",
         "evidence", "enqueued_at", "reported_at"],
        iter(rows),
    )  # fmt: skip
    queue_scale.copy_rows(
        engine,
        "reports",
        ["post_id", "account_id", "category", "text", "item_id", "reporter", "reporter_id",
         "created_at"],
        (
            (t.post, t.account, "rumor", "这是谣言，请核实。", t.item, "platform",
             f"user-{rng.randrange(10**6)}", at)
            for t in targets
            for at in t.reported
        ),
    )  # fmt: skip
    with engine.begin() as db:
        for table in ("review_queue", "reports"):
            db.execute(
                text(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                    f"(SELECT coalesce(max(id), 0) + 1 FROM {table}))"
                )
            )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as db:
        # the visibility map and statistics autovacuum keeps on a server in use
        queue_scale.analyze(db, vacuum=True)
    waiting = sum(len(t.reported) for t in targets if t.item in open_items)
    return {
        "reports": n["reports"],
        "open reports": waiting,
        "reported items": len(targets),
        "open reported items": len(open_items),
        "flagged items": n["flagged"],
    }


def _item(
    rng: random.Random,
    policy_version: str,
    i: int,
    kind: str,
    post: str | None,
    account: str,
    at: datetime,
    reported: datetime | None,
    waits: bool,
    merge: str | None = None,
) -> tuple[Any, ...]:
    if waits:
        status = rng.choices(list(WAITING), list(WAITING.values()))[0]
    else:
        status = "confirmed" if rng.random() < 0.6 else "dismissed"
    claimed = status == "claimed"
    return (
        i, kind, post, account, merge or f"{kind}:{i}", "rumor", policy_version, "review",
        "report" if kind == "report" else "review", rng.randrange(10_000),
        0 if reported is None else 1, 1.0, "open" if claimed else status,
        "reviewer-1" if claimed else None, "{}", at, reported,
    )  # fmt: skip


SHOWN = """
SELECT reports.id, reports.post_id, reports.account_id, reports.category, reports.text,
    reports.item_id, reports.reporter, reports.reporter_id, reports.created_at,
    CASE WHEN review_queue.status = 'confirmed' AND EXISTS (
        SELECT appeals.id FROM appeals WHERE appeals.item_id = review_queue.id
        AND appeals.account_id = review_queue.account_id AND appeals.status = 'upheld'
    ) THEN 'overturned' ELSE review_queue.status END
FROM reports JOIN review_queue ON review_queue.id = reports.item_id
"""
"""A page's reports with their status, as the page reads them (before :data:`INDEXES` and
since)."""
BEFORE_OPEN = """
WITH open_reports AS MATERIALIZED (
    SELECT reports.id, reports.created_at FROM reports
    JOIN review_queue ON review_queue.id = reports.item_id
    WHERE review_queue.status IN ('open', 'escalated') AND review_queue.reported_at IS NOT NULL
    {after}
)"""
OPEN_PAGE = """
JOIN (SELECT id FROM open_reports ORDER BY created_at, id LIMIT :count) AS first
ON first.id = reports.id
ORDER BY reports.created_at, reports.id
"""
EVERY_PAGE = "WHERE true {after} ORDER BY reports.created_at, reports.id LIMIT :count"
AFTER = "AND (reports.created_at, reports.id) > (:at, :id)"
"""The cursor's condition, of a page after the first."""
BEFORE_COUNTS = """
SELECT count(*), count(CASE WHEN reports.created_at < :late THEN 1 END)
FROM reports JOIN review_queue ON review_queue.id = reports.item_id
WHERE review_queue.status IN ('open', 'escalated') AND review_queue.reported_at IS NOT NULL
"""
"""The open reports and the overdue ones among them, as the page counted them before
:data:`INDEXES`."""
Shown = tuple[list[int], int, int]
"""A reports page as compared: its reports' ids, the open ones and the overdue ones."""


@dataclass(frozen=True)
class Read:
    """One of the page's reads, as made before :data:`INDEXES` and as made now."""

    name: str
    before: Callable[[], object]
    after: Callable[[], object]


def reads_of(engine: Engine, now: datetime) -> list[Read]:
    """The reports page's reads: the open reports' first page and one three quarters in,
    every report's first page and one three quarters in, the most reported item's first
    reports on its page."""
    reads = ConsoleReads(engine)
    late_before = now - timedelta(days=1)
    with engine.connect() as db:
        opened = db.execute(
            text(
                "SELECT r.created_at, r.id FROM reports r JOIN review_queue q "
                "ON q.id = r.item_id WHERE q.status IN ('open', 'escalated') "
                "ORDER BY r.created_at, r.id"
            )
        ).all()
        total = db.scalar(text("SELECT count(*) FROM reports")) or 0
        every = db.execute(
            text("SELECT created_at, id FROM reports ORDER BY created_at, id OFFSET :n LIMIT 1"),
            {"n": total * 3 // 4},
        ).one()
        busiest = db.scalar(
            text("SELECT item_id FROM reports GROUP BY item_id ORDER BY count(*) DESC LIMIT 1")
        )
    deep = opened[len(opened) * 3 // 4] if opened else every

    def page(open_only: bool, cursor: tuple[datetime, int] | None) -> Callable[[], Shown]:
        def run() -> Shown:
            at = None if cursor is None else appeals.parse_cursor(appeals.cursor(*cursor))
            shown = reads.reports(
                open_only=open_only, late_before=late_before, cursor=at, limit=PAGE_SIZE
            )
            return [r.id for r in shown.rows], shown.open, shown.overdue

        return run

    def before(open_only: bool, cursor: tuple[datetime, int] | None) -> Callable[[], Shown]:
        """The page as it was read before :data:`INDEXES`."""
        after = "" if cursor is None else AFTER
        rows = BEFORE_OPEN + SHOWN + OPEN_PAGE if open_only else SHOWN + EVERY_PAGE
        statement = text(rows.format(after=after))
        at = {} if cursor is None else {"at": cursor[0], "id": cursor[1]}

        def run() -> Shown:
            with engine.connect() as db:
                shown = db.execute(statement, {**at, "count": PAGE_SIZE + 1}).all()
                counted, late = db.execute(text(BEFORE_COUNTS), {"late": late_before}).one()
            return [row.id for row in shown[:PAGE_SIZE]], counted, late

        return run

    def item() -> list[datetime]:
        return [r.created_at for r in reads.item_reports(busiest, ITEM_REPORTS).rows]

    deep_at = (deep.created_at.astimezone(UTC), deep.id)
    every_at = (every.created_at.astimezone(UTC), every.id)
    return [
        Read("open reports, first page", before(True, None), page(True, None)),
        Read("open reports, three quarters in", before(True, deep_at), page(True, deep_at)),
        Read("every report, first page", before(False, None), page(False, None)),
        Read("every report, three quarters in", before(False, every_at), page(False, every_at)),
        Read("most reported item's reports (item page)", item, item),
    ]


@dataclass(frozen=True)
class Measured:
    statements: int
    p50_ms: float
    plan: Plan
    shown: object


def measure(run: Callable[[], object], engine: Engine, heard: Statements, times: int) -> Measured:
    """``run`` once to warm, once heard, ``times`` timed; its statements explained."""
    run()
    with heard.listening() as statements:
        shown = run()
    taken = []
    for _ in range(times):
        started = time.perf_counter()
        run()
        taken.append(time.perf_counter() - started)
    return Measured(
        len(statements),
        float(np.percentile(taken, 50) * 1e3),
        queue_scale.explain(engine, statements),
        shown,
    )


def table(reads: list[Read], before: list[Measured], after: list[Measured]) -> str:
    lines = [
        "| read | statements | p50 before | p50 after | slowest statement before / after "
        "| buffers before / after | seq scans over big tables before → after |",
        "|---|---|---|---|---|---|---|",
    ]
    for read, b, a in zip(reads, before, after, strict=True):
        scans = f"{', '.join(b.plan.seq_scans) or '-'} → {', '.join(a.plan.seq_scans) or '-'}"
        statements = (
            f"{b.statements}"
            if b.statements == a.statements
            else f"{b.statements} → {a.statements}"
        )
        lines.append(
            f"| {read.name} | {statements} | {b.p50_ms:.1f} ms | {a.p50_ms:.1f} ms | "
            f"{b.plan.slowest_ms:.1f} / {a.plan.slowest_ms:.1f} ms | "
            f"{b.plan.buffers:,} / {a.plan.buffers:,} | {scans} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser, args = queue_scale.arguments(
        "eval.reports_scale", __doc__, argv, times=10, timed="timed"
    )
    now = datetime.now(UTC)
    with queue_scale.schema(args.postgres) as url:
        upgrade(url)
        started = time.perf_counter()
        # a bulk load's statements run past any request's timeout
        engine = make_engine(url, 3600.0)
        try:
            filled = fill(engine, "scale", args.scale, now)
            fill_s = time.perf_counter() - started
            revision = stored_revision(engine)
            heard = Statements()
            event.listen(engine, "before_cursor_execute", heard.hear)
            results: list[list[Measured]] = []
            for present in (False, True):
                queue_scale.indexed(engine, present=present, revision=INDEXES)
                reads = reads_of(engine, now)
                made = [measure(r.after if present else r.before, engine, heard, args.times)
                        for r in reads]  # fmt: skip
                results.append(made)
        finally:
            engine.dispose()
    for read, b, a in zip(reads, *results, strict=True):
        if b.shown != a.shown:
            raise SystemExit(f"{parser.prog}: {read.name} showed other rows after than before")
    print(f"{hardware()}, {now:%Y-%m-%d %H:%M} UTC")
    print(
        "PostgreSQL, "
        + ", ".join(f"{v:,} {k}" for k, v in filled.items())
        + f" (filled in {fill_s:.0f} s); at {revision}, before: the statements before "
        f"{INDEXES}, without its indexes; after: today's, with them\n"
    )
    print(table(reads, *results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
