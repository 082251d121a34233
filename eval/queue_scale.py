"""Review reads at a platform's scale on PostgreSQL: ``python -m eval.queue_scale [--scale S]``.

Fills a fresh schema of the PostgreSQL server of ``--postgres`` (its tables made by the
migrations) in bulk (``COPY``) with, at ``--scale 1``, a million score records, 200,000 review
items of every kind and status (open, claimed, escalated, confirmed, dismissed), 50,000
accounts, 20,000 appeals, 100,000 dispositions with their audit records, their decisions,
credit changes and 50,000 reports. Then it makes every read the console's pages and the review
API make, through HTTP as a signed-in admin and a reviewer's key (the dashboard's aggregates
called one by one, as its page reads them once a minute): first pages, a deep page through the
cursor, the filters the pages offer, an item and an account, and a deep page of the account's
history. For each it counts the statements
the request ran, times it, and runs each statement again under ``EXPLAIN (ANALYZE, BUFFERS)``
for the slowest one's time, the buffers all of them touched and any sequential scan that read
more than :data:`BIG_SCAN` rows.

It measures twice on the same rows, both at the newest revision, so that the reads are the
code's of today: without the indexes :data:`INDEXES` makes (its own downgrade run alone,
``before``) and with them (its upgrade run again, ``after``). Going down to the revision before
it instead measured today's code on a schema short of every column added since, which it
reads. Prints hardware, date and one markdown table.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
from alembic.migration import MigrationContext
from alembic.operations import Operations
from alembic.script import ScriptDirectory
from fastapi.testclient import TestClient
from sqlalchemy import Connection, Engine, create_engine, event, text

from eval.speed import hardware
from service import subject_key
from service.api.app import create_app
from service.heads import RISKS
from service.policy import load_policy
from service.review import appeals, credit
from service.security import create_key, create_user
from service.settings import settings_or_exit
from service.storage import open_repository, upgrade
from service.storage.console_sql import ConsoleReads
from service.storage.database import alembic_config, make_engine, stored_revision

POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
INDEXES = "0040_account_history_indexes"
"""The migration whose indexes ``after`` has and ``before`` has not."""
BIG_SCAN = 10_000
"""A sequential scan past this many rows is shown."""
SIZES = {
    "records": 1_000_000,
    "items": 200_000,
    "accounts": 50_000,
    "appeals": 20_000,
    "dispositions": 100_000,
    "reports": 50_000,
}
KIND_SHARE = {
    "score": 0.70,
    "report": 0.10,
    "cluster": 0.05,
    "bank_match": 0.03,
    "follower_jump": 0.03,
    "engagement": 0.03,
    "impersonation": 0.03,
    "dormant": 0.03,
}
UNDECIDED_SHARE = {"open": 0.80, "claimed": 0.10, "escalated": 0.10}
"""Of the items waiting, about half of all and more of the recent; a claimed item is open with a
reviewer's live lease. The older ones were decided, 60% confirmed, the rest dismissed."""
REPORTS_WAIT = timedelta(days=1)
"""A platform answers its reports well within their deadline (art20): only the report items
queued in the last day wait, so most reports are answered and the open ones are the newest."""
REVIEWERS = 20
POST_KINDS = frozenset({"score", "report", "bank_match"})


def sizes(scale: float) -> dict[str, int]:
    return {name: max(10, int(n * scale)) for name, n in SIZES.items()}


def copy_rows(
    engine: Engine, table: str, columns: list[str], rows: Iterator[tuple[Any, ...]]
) -> None:
    """``COPY`` ``rows`` into ``table``'s ``columns``, in one transaction."""
    connection = engine.raw_connection()
    try:
        cursor = connection.cursor()
        with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        connection.commit()
    finally:
        connection.close()


@dataclass
class Items:
    """The review items :func:`fill` inserted, by id: what the rows that refer to them need."""

    kind: dict[int, str] = field(default_factory=dict)
    post: dict[int, str | None] = field(default_factory=dict)
    status: dict[int, str] = field(default_factory=dict)
    account: dict[int, str] = field(default_factory=dict)
    at: dict[int, datetime] = field(default_factory=dict)


def fill(engine: Engine, policy_version: str, scale: float, now: datetime) -> dict[str, int]:
    """Insert the rows of :data:`SIZES` times ``scale``; the figures inserted."""
    n = sizes(scale)
    rng = random.Random(0)
    span = timedelta(days=30)
    accounts = [f"acc-{i}" for i in range(n["accounts"])]
    _fill_records(engine, policy_version, n["records"], now, span)
    copy_rows(
        engine,
        "accounts",
        ["account_id", "credit", "level", "followers", "clean_since", "policy_version"],
        ((a, 100, "A", rng.randrange(10_000), now - span, policy_version) for a in accounts),
    )
    items = _fill_items(engine, policy_version, n, accounts, rng, now, span)
    decided, decisions = _fill_decisions(engine, policy_version, items)
    confirmed = [i for i in decided if items.status[i] == "confirmed"]
    seq = _fill_dispositions(engine, policy_version, items, confirmed, n["dispositions"], now)
    _fill_appeals_and_reports(engine, items, confirmed, n, now)
    with engine.begin() as db:
        for table in (
            "score_records", "review_queue", "review_decisions", "credit_ledger",
            "dispositions", "appeals", "reports",
        ):  # fmt: skip
            db.execute(
                text(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                    f"(SELECT coalesce(max(id), 0) + 1 FROM {table}))"
                )
            )
        db.execute(text("UPDATE audit_head SET seq = :seq WHERE id = 1"), {"seq": seq})
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as db:
        # the visibility map and statistics autovacuum keeps on a server in use
        analyze(db, vacuum=True)
    return {**n, "audit records": seq, "decisions": decisions}


def analyze(db: Connection, *, vacuum: bool = False) -> None:
    """``ANALYZE`` (after ``VACUUM`` where ``vacuum``, outside a transaction) the tables of the
    schema ``db`` works in, not every schema's of the database: another schema's migration on
    the same server deadlocked with a database-wide one. A SQLite database is its own file:
    ``ANALYZE`` all of it."""
    if db.dialect.name == "sqlite":
        for statement in ("VACUUM", "ANALYZE") if vacuum else ("ANALYZE",):
            db.execute(text(statement))
        return
    tables = db.scalars(
        text("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
    ).all()
    db.execute(text(f"{'VACUUM ' if vacuum else ''}ANALYZE {', '.join(tables)}"))


def _at(now: datetime, span: timedelta, i: int, of: int) -> datetime:
    """The ``i``-th of ``of`` moments spread evenly over the ``span`` before ``now``."""
    return now - span + span * (i + 1) / (of + 1)


def _fill_records(
    engine: Engine, policy_version: str, count: int, now: datetime, span: timedelta
) -> None:
    score = json.dumps({"scores": dict.fromkeys(RISKS, 0.7), "decision": "review"})
    copy_rows(
        engine,
        "score_records",
        ["id", "post_id", "model_version", "policy_version", "decision", "record", "created_at"],
        (
            (i, f"post-{i}", "sha256:scale", policy_version, "review", score,
             _at(now, span, i, count))
            for i in range(1, count + 1)
        ),
    )  # fmt: skip


def _fill_items(
    engine: Engine,
    policy_version: str,
    n: dict[str, int],
    accounts: list[str],
    rng: random.Random,
    now: datetime,
    span: timedelta,
) -> Items:
    kinds, kind_w = list(KIND_SHARE), list(KIND_SHARE.values())
    items, rows = Items(), []
    first_record = n["records"] - n["items"]
    for i in range(1, n["items"] + 1):
        kind = rng.choices(kinds, kind_w)[0]
        when = _at(now, span, i, n["items"])
        waits = rng.random() < 1.5 * (i / n["items"]) ** 2
        if waits and (kind != "report" or when >= now - REPORTS_WAIT):
            status = rng.choices(list(UNDECIDED_SHARE), list(UNDECIDED_SHARE.values()))[0]
        else:
            status = "confirmed" if rng.random() < 0.6 else "dismissed"
        # skewed: a few repeat offenders hold hundreds of items, most accounts one or none
        acc = accounts[int(len(accounts) * rng.random() ** 2)]
        post = f"post-{first_record + i}" if kind in POST_KINDS else None
        reach = int(10 ** rng.uniform(0, 5))
        severity = rng.choice(("review", "block"))
        base = {"review": 1.0, "block": 2.0}[severity] + 0.5 * np.log10(1 + reach)
        claimed = status == "claimed"
        rows.append(
            (
                i,
                kind,
                first_record + i if kind == "score" else None,
                post,
                acc,
                f"{kind}:{i}",
                rng.choice(RISKS),
                "sha256:scale",
                policy_version,
                "review",
                severity,
                reach,
                3 if kind == "report" else 0,
                float(base + (when - now).total_seconds() / 3600 * 0.01),
                "open" if claimed else status,
                f"reviewer-{i % REVIEWERS}" if claimed else None,
                now + timedelta(minutes=30) if claimed else None,
                "一条被标记的帖子，内容较长，用来截取摘要。" * 4 if post else None,
                "{}",
                when,
                when if kind == "report" else None,
            )
        )
        items.kind[i], items.post[i], items.status[i] = kind, post, status
        items.account[i], items.at[i] = acc, when
    copy_rows(
        engine,
        "review_queue",
        [
            "id", "kind", "record_id", "post_id", "account_id", "merge_key", "head",
            "model_version", "policy_version", "decision", "severity", "reach", "reports",
            "urgency", "status", "assignee", "lease_until", "text", "evidence", "enqueued_at",
            "reported_at",
        ],
        iter(rows),
    )  # fmt: skip
    return items


def _fill_decisions(engine: Engine, policy_version: str, items: Items) -> tuple[list[int], int]:
    """The decisions and credit changes of the items decided (or escalated): their ids and
    how many decisions."""
    decided = [i for i, s in items.status.items() if s in ("confirmed", "dismissed", "escalated")]
    decisions: list[tuple[int, str, str | None, str | None, str | None, str, datetime]] = []
    for i in decided:
        by = f"reviewer-{i % REVIEWERS}"
        when = items.at[i] + timedelta(hours=1)
        if items.status[i] == "escalated" or i % 10 == 0:
            decisions.append((i, "escalate", None, None, "需要管理员", by, when))
        if items.status[i] != "escalated":
            action = "confirm" if items.status[i] == "confirmed" else "dismiss"
            category = "rumor" if action == "confirm" else None
            basis = "art18.6" if action == "confirm" else None
            decisions.append((i, action, category, basis, None, "admin", when))
    copy_rows(
        engine,
        "review_decisions",
        ["item_id", "action", "category", "basis", "note", "reviewer", "policy_version",
         "decided_at"],
        ((i, a, c, b, note, by, policy_version, w) for i, a, c, b, note, by, w in decisions),
    )  # fmt: skip
    copy_rows(
        engine,
        "credit_ledger",
        ["account_id", "delta", "credit", "level", "reason", "category", "item_id",
         "policy_version", "at"],
        (
            (items.account[i], -5, 95, "A", "violation", "rumor", i, policy_version, items.at[i])
            for i in decided
            if items.status[i] == "confirmed"
        ),
    )  # fmt: skip
    return decided, len(decisions)


def _fill_dispositions(
    engine: Engine,
    policy_version: str,
    items: Items,
    confirmed: list[int],
    count: int,
    now: datetime,
) -> int:
    """The dispositions on the confirmed items and the audit chain around them: its last seq."""
    ladder = ("warning", "limit_features", "suspend_updates", "stop_advertising")
    dispositions, records, seq = [], [], 0
    for d in range(1, count + 1):
        item_id = confirmed[d % len(confirmed)]
        when = items.at[item_id] + timedelta(hours=1, seconds=d % 600)
        lifted = now if d % 10 == 0 else None
        dispositions.append(
            (d, items.account[item_id], ladder[d % len(ladder)], "art19", item_id, when,
             when + timedelta(days=7), "admin", policy_version, lifted,
             "admin" if lifted else None)
        )  # fmt: skip
        seq += 1
        records.append((seq, when, "disposition.applied", f"account:{items.account[item_id]}",
                        json.dumps({"id": d}), "0" * 64, "0" * 64))  # fmt: skip
        # the chain holds every write's records, most of them not a disposition's
        for _ in range(2):
            seq += 1
            records.append((seq, when, "review.decision", f"item:{item_id}", "{}", "0" * 64,
                            "0" * 64))  # fmt: skip
    for row in dispositions:
        if row[9] is not None:
            seq += 1
            payload = json.dumps({"disposition": row[0], "cause": "appeal"})
            records.append((seq, now, "disposition.lifted", f"account:{row[1]}", payload,
                            "0" * 64, "0" * 64))  # fmt: skip
    copy_rows(
        engine,
        "dispositions",
        ["id", "account_id", "kind", "basis", "item_id", "starts_at", "ends_at", "decided_by",
         "policy_version", "lifted_at", "lifted_by"],
        iter(dispositions),
    )  # fmt: skip
    copy_rows(
        engine,
        "audit_records",
        ["seq", "at", "kind", "subject", "payload", "prev_hash", "hash"],
        iter(records),
    )
    return seq


def _fill_appeals_and_reports(
    engine: Engine, items: Items, confirmed: list[int], n: dict[str, int], now: datetime
) -> None:
    copy_rows(
        engine,
        "appeals",
        ["account_id", "item_id", "reason", "status", "filed_by", "filed_at", "deadline",
         "resolved_by", "resolved_at"],
        (
            (
                items.account[i],
                i,
                "我没有违规",
                status,
                "platform",
                items.at[i] + timedelta(days=1),
                items.at[i] + timedelta(days=16),
                None if status == "pending" else "admin",
                None if status == "pending" else now,
            )
            for k, i in enumerate(confirmed[: n["appeals"]])
            for status in [("pending", "upheld", "rejected", "rejected", "rejected")[k % 5]]
        ),
    )  # fmt: skip
    reported = [i for i, kind in items.kind.items() if kind == "report"]
    copy_rows(
        engine,
        "reports",
        ["post_id", "account_id", "category", "text", "item_id", "reporter", "created_at"],
        (
            (items.post[i], items.account[i], "rumor", "这是谣言", i, "platform",
             items.at[i] + timedelta(minutes=r % 60))
            for r in range(n["reports"])
            for i in [reported[r % len(reported)]]
        ),
    )  # fmt: skip


@dataclass
class Statements:
    """The statements an engine ran while :meth:`listening`."""

    seen: list[tuple[str, Any]] = field(default_factory=list)
    on: bool = False

    def hear(self, conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if self.on:
            self.seen.append((statement, parameters))

    @contextmanager
    def listening(self) -> Iterator[list[tuple[str, Any]]]:
        self.seen, self.on = [], True
        try:
            yield self.seen
        finally:
            self.on = False


@dataclass(frozen=True)
class Plan:
    slowest_ms: float
    buffers: int
    seq_scans: list[str]


def explain(engine: Engine, statements: list[tuple[str, Any]]) -> Plan:
    """Each SELECT of ``statements`` again under ``EXPLAIN (ANALYZE, BUFFERS)``: the slowest's
    execution time, the shared buffers they touched and their sequential scans past
    :data:`BIG_SCAN` rows (table and rows read)."""
    slowest, buffers, scans = 0.0, 0, []
    for top in explained(engine, statements):
        slowest = max(slowest, float(top["Execution Time"]))
        buffers += shared_buffers(top["Plan"])
        for node in nodes(top["Plan"]):
            if node["Node Type"] == "Seq Scan" and (read := rows_read(node)) > BIG_SCAN:
                scans.append(f"{node['Relation Name']} {read:,.0f}")
    return Plan(slowest, buffers, sorted(set(scans)))


def explained(engine: Engine, statements: list[tuple[str, Any]]) -> list[dict[str, Any]]:
    """Each SELECT of ``statements`` run again under ``EXPLAIN (ANALYZE, BUFFERS)``, in a
    transaction rolled back: the JSON of each (its ``Plan`` and ``Execution Time``)."""
    found: list[dict[str, Any]] = []
    connection = engine.raw_connection()
    try:
        cursor = connection.cursor()
        for statement, parameters in statements:
            if not statement.lstrip().upper().startswith(("SELECT", "WITH")):
                continue
            cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {statement}", parameters)
            row = cursor.fetchone()
            assert row is not None
            found.append(row[0][0])
        connection.rollback()
    finally:
        connection.close()
    return found


def shared_buffers(plan: dict[str, Any]) -> int:
    """The shared buffers a plan touched, found in memory or read."""
    return int(plan.get("Shared Hit Blocks", 0)) + int(plan.get("Shared Read Blocks", 0))


def rows_read(node: dict[str, Any]) -> float:
    """The rows a plan node read over all its loops: those it gave and those it filtered out."""
    read = node["Actual Rows"] + node.get("Rows Removed by Filter", 0)
    return float(read * node["Actual Loops"])


def nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """``plan`` and every node under it."""
    yield plan
    for child in plan.get("Plans", []):
        yield from nodes(child)


@dataclass(frozen=True)
class Read:
    name: str
    run: Callable[[], object]


@dataclass(frozen=True)
class Measured:
    name: str
    statements: int
    p50_ms: float
    plan: Plan


def measure(reads: list[Read], engine: Engine, heard: Statements, times: int) -> list[Measured]:
    out = []
    for read in reads:
        # the first run reads once what a process keeps (the policy kept, a session's user)
        read.run()
        with heard.listening() as statements:
            read.run()
        taken = []
        for _ in range(times):
            started = time.perf_counter()
            read.run()
            taken.append(time.perf_counter() - started)
        out.append(
            Measured(
                read.name,
                len(statements),
                float(np.percentile(taken, 50) * 1e3),
                explain(engine, statements),
            )
        )
    return out


def reads_of(
    client: TestClient, engine: Engine, key: str, policy_version: str, zone: ZoneInfo
) -> list[Read]:
    """Every read to measure: the console's pages (the client signed in as an admin), the
    API's listings (``key``, a reviewer's) and the dashboard's aggregates."""
    api = {"Authorization": f"Bearer {key}"}
    with engine.connect() as db:
        count = db.scalar(text("SELECT count(*) FROM review_queue WHERE status = 'open'")) or 0
        deep = db.execute(
            text(
                "SELECT urgency, id FROM review_queue WHERE status = 'open' "
                "ORDER BY urgency DESC, id DESC OFFSET :n LIMIT 1"
            ),
            {"n": count * 3 // 4},
        ).one()
        appeal = db.execute(
            text("SELECT deadline, id FROM appeals ORDER BY deadline, id OFFSET :n LIMIT 1"),
            {"n": (db.scalar(text("SELECT count(*) FROM appeals")) or 0) * 3 // 4},
        ).one()
        report = db.execute(
            text("SELECT created_at, id FROM reports ORDER BY created_at, id OFFSET :n LIMIT 1"),
            {"n": (db.scalar(text("SELECT count(*) FROM reports")) or 0) * 3 // 4},
        ).one()
        # three quarters into the open reports, as the reports page pages them (a run too
        # small to leave any open reads past the deep report of every one)
        open_report = (
            db.execute(
                text(
                    "SELECT r.created_at, r.id FROM reports r JOIN review_queue q "
                    "ON q.id = r.item_id WHERE q.status IN ('open', 'escalated') "
                    "ORDER BY r.created_at, r.id OFFSET (SELECT count(*) FROM reports r JOIN "
                    "review_queue q ON q.id = r.item_id WHERE q.status IN ('open', 'escalated')) "
                    "* 3 / 4 LIMIT 1"
                )
            ).first()
            or report
        )
        busiest = db.scalar(
            text(
                "SELECT account_id FROM dispositions GROUP BY account_id "
                "ORDER BY count(*) DESC LIMIT 1"
            )
        )
        item = db.scalar(
            text(
                "SELECT id FROM review_queue WHERE kind = 'report' AND status = 'confirmed' "
                "AND account_id = :a ORDER BY id DESC LIMIT 1"
            ),
            {"a": busiest},
        ) or db.scalar(text("SELECT max(id) FROM review_queue WHERE kind = 'report'"))
        mid_seq = (db.scalar(text("SELECT seq FROM audit_head")) or 0) // 2
        # three quarters into the busiest account's credit changes: a deep page of its history
        change = db.execute(
            text(
                "SELECT at, id FROM credit_ledger WHERE account_id = :a ORDER BY at, id "
                "OFFSET (SELECT count(*) FROM credit_ledger WHERE account_id = :a) * 3 / 4 "
                "LIMIT 1"
            ),
            {"a": busiest},
        ).one()
    queue_cursor = f"{deep.urgency!r}_{deep.id}"
    appeal_cursor = appeals.cursor(appeal.deadline.astimezone(UTC), appeal.id)
    report_cursor = appeals.cursor(report.created_at.astimezone(UTC), report.id)
    open_cursor = appeals.cursor(open_report.created_at.astimezone(UTC), open_report.id)
    # a cursor is of the order its page was read in: the item page's newest first, the API's
    # oldest first by default
    at = change.at.astimezone(UTC)
    page_cursor = credit.history_cursor("credit", at, change.id, "newest")
    history_cursor = credit.history_cursor("credit", at, change.id, "oldest")

    def get(path: str, headers: dict[str, str] | None = None) -> Read:
        def run() -> None:
            answer = client.get(path, headers=headers, follow_redirects=False)
            assert answer.status_code == 200, (path, answer.status_code, answer.text[:200])

        return Read(path, run)

    reads = ConsoleReads(engine)
    now = datetime.now(UTC)
    pages = [
        get("/console/queue"),
        get(f"/console/queue?cursor={queue_cursor}"),
        get("/console/queue?head=rumor"),
        get("/console/queue?kind=impersonation"),
        get("/console/queue?status=escalated"),
        get("/console/queue?status=confirmed"),
        get("/console/queue?assignee=reviewer-3"),
        get(f"/console/items/{item}"),
        get(f"/console/items/{item}?cursor={page_cursor}"),
        get("/console/appeals"),
        get("/console/appeals?status=all"),
        get(f"/console/appeals?status=all&cursor={appeal_cursor}"),
        get("/console/reports"),
        get(f"/console/reports?cursor={open_cursor}"),
        get("/console/reports?all=true"),
        get(f"/console/reports?all=true&cursor={report_cursor}"),
        get("/v1/review/items?limit=50", api),
        get(f"/v1/review/items?limit=50&cursor={queue_cursor}", api),
        get("/v1/review/items?limit=50&kind=dormant", api),
        get("/v1/review/items?limit=50&status=escalated&head=rumor", api),
        get("/v1/review/items?limit=50&assignee=reviewer-3", api),
        get(f"/v1/review/items/{item}", api),
        get("/v1/appeals", api),
        get("/v1/appeals?status=pending", api),
        get("/v1/appeals?overdue=true", api),
        get(f"/v1/appeals?cursor={appeal_cursor}", api),
        get("/v1/dispositions?after=0&limit=100", api),
        get(f"/v1/dispositions?after={mid_seq}&limit=100", api),
        get(f"/v1/accounts/{busiest}", api),
        get(f"/v1/accounts/{busiest}?cursor={history_cursor}", api),
    ]
    parts = [
        Read("dashboard: queued per head per day", lambda: reads.flagged_per_day(now, 14, zone)),
        Read("dashboard: open items by age", lambda: reads.open_by_age(now)),
        Read("dashboard: decisions per reviewer", lambda: reads.decisions_per_reviewer(now, 7)),
        Read("dashboard: appeal outcomes", reads.appeal_outcomes),
        Read("dashboard: last day's scores", lambda: reads.recent_scores(now, policy_version)),
    ]
    return pages + parts


@contextmanager
def schema(server: str) -> Iterator[str]:
    name = f"scale_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as db:
        db.execute(text(f"CREATE SCHEMA {name}"))
    try:
        yield f"{server}?options=-csearch_path%3D{name}"
    finally:
        with admin.connect() as db:
            db.execute(text(f"DROP SCHEMA {name} CASCADE"))
        admin.dispose()


def indexed(engine: Engine, *, present: bool, revision: str = INDEXES) -> None:
    """Run ``revision``'s own upgrade (``present``) or downgrade on ``engine``'s schema, which
    stays at its revision; then its statistics afresh."""
    migration = ScriptDirectory.from_config(alembic_config()).get_revision(revision)
    assert migration is not None and migration.module is not None
    with engine.connect() as connection:
        with Operations.context(MigrationContext.configure(connection)):
            (migration.module.upgrade if present else migration.module.downgrade)()
        connection.commit()
        analyze(connection)
        connection.commit()


def table(before: list[Measured], after: list[Measured]) -> str:
    lines = [
        "| read | statements | p50 before | p50 after | slowest statement before / after "
        "| buffers before / after | seq scans over big tables before → after |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [row(b.name, b, a) for b, a in zip(before, after, strict=True)]
    return "\n".join(lines)


def row(name: str, b: Measured, a: Measured) -> str:
    """A read's line of :func:`table`: ``b`` before, ``a`` after."""
    scans = f"{', '.join(b.plan.seq_scans) or '-'} → {', '.join(a.plan.seq_scans) or '-'}"
    statements = (
        f"{b.statements}" if b.statements == a.statements else f"{b.statements} → {a.statements}"
    )
    return (
        f"| {name} | {statements} | {b.p50_ms:.1f} ms | {a.p50_ms:.1f} ms | "
        f"{b.plan.slowest_ms:.1f} / {a.plan.slowest_ms:.1f} ms | "
        f"{b.plan.buffers:,} / {a.plan.buffers:,} | {scans} |"
    )


def arguments(
    module: str, doc: str | None, argv: list[str] | None, *, times: int, timed: str
) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    """The parser and arguments every ``eval.*_scale`` takes: ``--scale``, ``--times`` (runs of
    each read, ``timed`` or explained) and ``--postgres``."""
    parser = argparse.ArgumentParser(prog=f"python -m {module}", description=doc)
    parser.add_argument("--scale", type=float, default=1.0, help="times the figures of SIZES")
    parser.add_argument("--times", type=int, default=times, help=f"{timed} runs of each read")
    parser.add_argument("--postgres", default=POSTGRES, help="the server's URL")
    args = parser.parse_args(argv)
    if args.scale <= 0:
        parser.error(f"--scale must be above 0, not {args.scale}")
    return parser, args


def main(argv: list[str] | None = None) -> int:
    parser, args = arguments("eval.queue_scale", __doc__, argv, times=10, timed="timed")
    configured = settings_or_exit(parser.prog)
    now = datetime.now(UTC)
    with schema(args.postgres) as url, tempfile.TemporaryDirectory() as work:
        # the server's maintenance and rumour-bank refresh run once, at its start, and not
        # again while it is measured: either's statements would be counted as a read's
        settings = configured.model_copy(
            update={"state_dir": Path(work), "database_url": url, "db_timeout_s": 60.0,
                    "storage_deadline_s": 60.0, "storage_retry_s": 3600.0,
                    "neardup_bank_refresh_s": 3600.0}
        )  # fmt: skip
        # the key the server reads from its state_dir, the digests made with it
        subjects = subject_key.load(settings)
        upgrade(url, subject_key=subjects)
        repo = open_repository(url, 60.0, subject_key=subjects)
        started = time.perf_counter()
        version = load_policy(settings.policy_file).version
        # a bulk load's statements run past any request's timeout
        loading = make_engine(url, 3600.0)
        filled = fill(loading, version, args.scale, now)
        loading.dispose()
        fill_s = time.perf_counter() - started
        password = create_user(repo, "scale", "admin")
        key = create_key(repo, "reviewer")
        heard = Statements()
        event.listen(Engine, "before_cursor_execute", heard.hear)
        try:
            results = []
            with TestClient(create_app(settings)) as client:
                token = re.findall(r'name="csrf" value="(\w+)"', client.get("/console/login").text)
                client.post(
                    "/console/login", data={"csrf": token[0], "name": "scale", "password": password}
                )
                revision = stored_revision(repo.engine)
                for present in (False, True):
                    indexed(repo.engine, present=present)
                    reads = reads_of(client, repo.engine, key, version, configured.console_zone)
                    results.append(measure(reads, repo.engine, heard, args.times))
                    found = stored_revision(repo.engine)
                    if found != revision:
                        raise SystemExit(
                            f"{parser.prog}: the database went from {revision} to {found} "
                            "while measured: its figures are not that revision's"
                        )
        finally:
            event.remove(Engine, "before_cursor_execute", heard.hear)
            repo.close()
    print(f"{hardware()}, {now:%Y-%m-%d %H:%M} UTC")
    print(
        "PostgreSQL, "
        + ", ".join(f"{v:,} {k}" for k, v in filled.items())
        + f" (filled in {fill_s:.0f} s); at {revision}, before: without {INDEXES}'s indexes, "
        "after: with them\n"
    )
    print(table(results[0], results[1]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
