"""An account's active dispositions and the appeals listing at scale on PostgreSQL:
``python -m eval.account_scale [--scale S]``.

Fills a fresh schema of the PostgreSQL server of ``--postgres`` (its tables made by the
migrations) in bulk (``COPY``) with, at ``--scale 1``, one busy account given 100,000
dispositions that ended and 20 active ones (half without an end, half ending after now, all
given after the ended ones, so that a read in the order they were applied passes every ended
one first; of the :data:`KINDS` in turn) and an art8 suspension settled at its end on an
``impersonation`` item, 100,000 dispositions of 1,000 other accounts, and 200,000 appeals, most
of them answered (:data:`PENDING_SHARE` pending, the latest filed). Then it makes the reads of
:func:`reads_of` through the repository: the account with its first page of active
dispositions, a later page of them, the statement that read them before it was split, the
appeals listing's pages, and the reads of a write holding the account's lock (a decision's, a
name correction's, a return's, each also as it was before it was split, and an upheld
appeal's: what it lifts, and the settled art8 suspension a close it lifts stood in for, each
also as it was read in one statement before). For each it runs every statement the read ran
under ``EXPLAIN (ANALYZE, BUFFERS)``: their execution time, the buffers they touched and the
rows their scans read (those they gave and those their filters removed).

It measures twice on the same rows at the newest revision, as ``eval.queue_scale`` does:
without the indexes the migrations of :data:`INDEXES` make (their own downgrades run alone,
``before``) and with them (their upgrades again, ``after``). Prints hardware, date and one
markdown table.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Collection, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest.mock import patch

from sqlalchemy import Engine, Select, and_, event, or_, select, text
from sqlalchemy.orm import Session

from eval.queue_scale import (
    Read,
    analyze,
    arguments,
    copy_rows,
    explained,
    indexed,
    nodes,
    rows_read,
    schema,
    shared_buffers,
)
from eval.speed import hardware
from service import subject_key
from service.policy import Policy, load_policy
from service.review import appeals, protected, views
from service.settings import settings_or_exit
from service.storage import SqlRepository, credit_steps, open_repository, upgrade
from service.storage.credit_steps import active_kinds, active_now, appealed
from service.storage.database import make_engine, stored_revision
from service.storage.item_steps import dormancy_brought
from service.storage.protected_steps import art8_suspended, still_uncorrected
from service.storage.tables import ReviewItem, StoredDisposition
from service.storage.transaction import Tx

INDEXES = ("0045_active_read_indexes", "0047_disposition_item_index")
"""The migrations whose indexes ``after`` has and ``before`` has not."""
KINDS = ("warning", "suspend_service", "dormancy_warning", "limit_features")
"""The busy account's dispositions' kinds, in turn: among them those that a write's reads look
for (art8's suspension, a dormancy's warning)."""
SIZES = {"ended": 100_000, "active": 20, "others": 100_000, "appeals": 200_000}
OTHER_ACCOUNTS = 1_000
PENDING_SHARE = 0.01
"""Of the appeals, those pending: a platform answers its appeals within their deadline, so that
the listing's pending ones are few among every one ever filed."""
BUSY = "busy"


def sizes(scale: float) -> dict[str, int]:
    # the active ones stay 20: what a page reads of them is not what grows
    return {name: n if name == "active" else max(10, int(n * scale)) for name, n in SIZES.items()}


def fill(engine: Engine, policy_version: str, scale: float, now: datetime) -> dict[str, int]:
    """Insert the rows of :data:`SIZES` times ``scale``; the figures inserted."""
    n = sizes(scale)
    others = [f"acc-{i}" for i in range(OTHER_ACCOUNTS)]
    copy_rows(
        engine,
        "accounts",
        ["account_id", "credit", "level", "followers", "clean_since", "policy_version"],
        ((a, 100, "A", 0, now, policy_version) for a in [BUSY, *others]),
    )
    _fill_dispositions(engine, policy_version, n, others, now)
    _fill_appeals(engine, policy_version, n["appeals"], others, now)
    _fill_settled(engine, policy_version, n["appeals"] + 1, now)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as db:
        for table in ("dispositions", "appeals", "review_queue"):
            db.execute(
                text(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                    f"(SELECT coalesce(max(id), 0) + 1 FROM {table}))"
                )
            )
        # the visibility map and statistics autovacuum keeps on a server in use
        analyze(db, vacuum=True)
    return n


def _fill_dispositions(
    engine: Engine, policy_version: str, n: dict[str, int], others: list[str], now: datetime
) -> None:
    """The busy account's ended dispositions, a day each over the years before ``now``, then
    its active ones; the other accounts' alike, a tenth of them lifted."""
    ended, active, spread = n["ended"], n["active"], n["others"]
    start = now - timedelta(hours=ended + active + 1)

    def busy() -> Iterator[tuple[Any, ...]]:
        for i in range(ended + active):
            at = start + timedelta(hours=i)
            if i < ended:
                ends: datetime | None = at + timedelta(hours=1)
            else:
                ends = None if i % 2 else now + timedelta(days=30)
            yield (BUSY, KINDS[i % len(KINDS)], "art19", at, ends, "admin", policy_version, None)

    def rest() -> Iterator[tuple[Any, ...]]:
        for i in range(spread):
            at = now - timedelta(days=365) + timedelta(minutes=i)
            lifted = now if i % 10 == 0 else None
            ends = None if i % 3 == 0 else at + timedelta(days=7)
            yield (others[i % len(others)], "limit_features", "art19", at, ends, "admin",
                   policy_version, lifted)  # fmt: skip

    columns = ["account_id", "kind", "basis", "starts_at", "ends_at", "decided_by",
               "policy_version", "lifted_at"]  # fmt: skip
    copy_rows(engine, "dispositions", columns, busy())
    copy_rows(engine, "dispositions", columns, rest())


def _fill_settled(engine: Engine, policy_version: str, item_id: int, now: datetime) -> None:
    """The busy account's confirmed ``impersonation`` item ``item_id`` and the art8
    suspension it called for, settled at its end, a year before ``now``, and never lifted."""
    at = now - timedelta(days=365)
    copy_rows(
        engine,
        "review_queue",
        ["id", "kind", "account_id", "merge_key", "head", "policy_version", "decision",
         "severity", "reach", "reports", "urgency", "status", "evidence", "enqueued_at"],
        iter([(item_id, protected.KIND, BUSY, protected.merge_key(BUSY), protected.KIND,
               policy_version, "review", "review", 1, 0, 1.0, "confirmed", "{}", at)]),
    )  # fmt: skip
    ends = at + timedelta(days=15)
    copy_rows(
        engine,
        "dispositions",
        ["account_id", "kind", "basis", "item_id", "starts_at", "ends_at", "decided_by",
         "policy_version", "settled_at"],
        iter([(BUSY, "suspend_service", "art8", item_id, at, ends, "admin", policy_version,
               ends)]),
    )  # fmt: skip


def _fill_appeals(
    engine: Engine, policy_version: str, count: int, others: list[str], now: datetime
) -> None:
    """One confirmed item per appeal, and the appeals filed over the year before ``now``,
    fifteen days to answer each; the latest filed :data:`PENDING_SHARE` pending, those
    before answered (upheld or rejected)."""
    filed = [now - timedelta(days=365) + timedelta(days=365) * i / count for i in range(count)]
    copy_rows(
        engine,
        "review_queue",
        ["id", "kind", "account_id", "merge_key", "head", "model_version", "policy_version",
         "decision", "severity", "reach", "reports", "urgency", "status", "evidence",
         "enqueued_at"],
        (
            (i + 1, "score", others[i % len(others)], f"score:{i + 1}", "rumor", "sha256:scale",
             policy_version, "review", "review", 1, 0, 1.0, "confirmed", "{}", at)
            for i, at in enumerate(filed)
        ),
    )  # fmt: skip
    answered = count - max(1, int(count * PENDING_SHARE))
    copy_rows(
        engine,
        "appeals",
        ["account_id", "item_id", "reason", "status", "filed_by", "filed_at", "deadline",
         "resolved_by", "resolved_at"],
        (
            (others[i % len(others)], i + 1, "我没有违规", status, "platform", at,
             at + timedelta(days=15), None if status == "pending" else "admin",
             None if status == "pending" else at + timedelta(days=3))
            for i, at in enumerate(filed)
            for status in ["pending" if i >= answered else ("upheld", "rejected")[i % 2]]
        ),
    )  # fmt: skip


@dataclass(frozen=True)
class Plan:
    """What a read's statements cost under ``EXPLAIN (ANALYZE, BUFFERS)``, all of them."""

    ms: float
    buffers: int
    rows_read: int


def explain(engine: Engine, statements: list[tuple[str, Any]]) -> Plan:
    """Each SELECT of ``statements`` again under ``EXPLAIN (ANALYZE, BUFFERS)``: their execution
    times, the shared buffers they touched and the rows their scans read, summed."""
    ms, buffers, rows = 0.0, 0, 0
    for top in explained(engine, statements):
        ms += float(top["Execution Time"])
        buffers += shared_buffers(top["Plan"])
        rows += sum(
            int(rows_read(node))
            for node in nodes(top["Plan"])
            if "Scan" in node["Node Type"] and "Relation Name" in node
        )
    return Plan(ms, buffers, rows)


def measure(reads: list[Read], engine: Engine, times: int) -> list[Plan]:
    """Each read's statements, heard on a run of it, explained ``times`` times: the run of
    least time (the one least disturbed by other work on the machine)."""
    heard: list[tuple[str, Any]] = []

    def hear(_conn: object, _cursor: object, statement: str, parameters: Any, *_: Any) -> None:
        heard.append((statement, parameters))

    out = []
    for read in reads:
        read.run()  # what a process keeps, read once
        heard.clear()
        event.listen(engine, "before_cursor_execute", hear)
        try:
            read.run()
        finally:
            event.remove(engine, "before_cursor_execute", hear)
        statements = list(heard)
        out.append(min((explain(engine, statements) for _ in range(times)), key=lambda p: p.ms))
    return out


def reads_of(repo: SqlRepository, policy: Policy, now: datetime) -> list[Read]:
    """The reads measured: the busy account (its first page of history and of active
    dispositions), the first page of its active ones alone and a page after the cursor of the
    tenth, the single statement that read the first page before it was split in two, the
    appeals listing's first pages (every status, pending, overdue) and a page three quarters
    into the pending ones, and the reads of the busy account's active dispositions that writes
    make holding its lock, rolled back: a decision's (the kinds active), a name correction's
    (the art8 suspensions), a return's (what the dormancy brought), each also as it was read in
    one statement, and what an upheld appeal of an item lifts."""
    tenth = repo.account_dispositions(BUSY, limit=10, now=now).next
    with repo.engine.connect() as db:
        pending = db.scalar(text("SELECT count(*) FROM appeals WHERE status = 'pending'")) or 0
        deep = db.execute(
            text(
                "SELECT deadline, id FROM appeals WHERE status = 'pending' "
                "ORDER BY deadline, id OFFSET :n LIMIT 1"
            ),
            {"n": pending * 3 // 4},
        ).one()
    deep_cursor = appeals.cursor(deep.deadline.astimezone(UTC), deep.id)
    whole = (
        select(StoredDisposition)
        .where(StoredDisposition.account_id == BUSY, active_now(now))
        .order_by(StoredDisposition.starts_at, StoredDisposition.id)
        .limit(101)
    )

    def one_statement() -> None:
        with repo.engine.connect() as db:
            db.execute(whole).all()

    def written(step: Callable[[Tx], object], split: bool = True) -> Callable[[], None]:
        """``step`` in a write's transaction at ``now``, rolled back; ``split`` False: with the
        active dispositions read by :func:`active_now` in one statement, as before they were
        read in :func:`active_on`'s two parts."""

        def run() -> None:
            with Session(repo.engine) as session, ExitStack() as stack:
                if not split:
                    stack.enter_context(patch.object(credit_steps, "active_on", _one_statement))
                step(Tx(session, now, policy))
                session.rollback()

        return run

    ladder = {step.kind for step in policy.dispositions}
    # a close that began before the busy account's art8 suspension settled, lifted by an appeal
    close = views.Disposition(
        id=0, account_id=BUSY, kind=protected.termination(policy).kind, basis="art19",
        item_id=1, starts_at=now - timedelta(days=400), ends_at=None, decided_by="admin",
        policy_version=policy.version, lifted_at=now, lifted_by="admin", active=False,
    )  # fmt: skip
    writes = {
        "decision: the active kinds": lambda tx: active_kinds(tx, BUSY),
        "name corrected: the art8 suspensions": lambda tx: art8_suspended(tx, BUSY),
        "return: what the dormancy brought": lambda tx: dormancy_brought(tx, BUSY),
    }
    return [
        Read("account: first page", lambda: repo.get_account(policy, BUSY, now=now)),
        Read(
            "active dispositions: first page",
            lambda: repo.account_dispositions(BUSY, limit=100, now=now),
        ),
        Read(
            "active dispositions: after the tenth",
            lambda: repo.account_dispositions(
                BUSY, cursor=appeals.parse_cursor(tenth), limit=5, now=now
            ),
        ),
        Read("active dispositions: the one statement before the split", one_statement),
        Read("appeals: every status", lambda: repo.list_appeals(now=now)),
        Read("appeals: pending", lambda: repo.list_appeals(status="pending", now=now)),
        Read(
            "appeals: pending, three quarters in",
            lambda: repo.list_appeals(
                status="pending", cursor=appeals.parse_cursor(deep_cursor), now=now
            ),
        ),
        Read("appeals: overdue", lambda: repo.list_appeals(overdue_only=True, now=now)),
        *(Read(name, written(step)) for name, step in writes.items()),
        *(
            Read(f"{name}, in one statement before the split", written(step, split=False))
            for name, step in writes.items()
        ),
        Read(
            "appeal upheld: what it lifts",
            written(lambda tx: appealed(tx, BUSY, 1, ladder)),
        ),
        Read(
            "appeal upheld: what it lifts, in one statement before the split",
            written(lambda tx: _appealed_whole(tx, BUSY, 1, ladder)),
        ),
        Read(
            "appeal upheld: the settled art8 suspension a lifted close stood in for",
            written(lambda tx: still_uncorrected(tx, BUSY, [close])),
        ),
        Read(
            "appeal upheld: the settled art8 suspension, joined to its items as before",
            written(lambda tx: _settled_joined(tx, BUSY, close.starts_at)),
        ),
    ]


def _one_statement(
    query: Select[Any], account_id: str, now: datetime, kinds: Collection[str] | None = None
) -> tuple[Select[Any], ...]:
    """:func:`active_on` as the writes read it before it was split: :func:`active_now` in one
    statement, the kinds compared as they are."""
    stored = StoredDisposition
    one = query.where(stored.account_id == account_id, active_now(now))
    return (one if kinds is None else one.where(stored.kind.in_(kinds)),)


def _appealed_whole(
    tx: Tx, account_id: str, item_id: int, gone: Collection[str]
) -> list[StoredDisposition]:
    """:func:`appealed` as it was read before it was split: one statement, its item's
    dispositions and the active ones the standing reached of the kinds ``gone`` either side of
    an OR among every one of the account not lifted."""
    stored = StoredDisposition
    return list(
        tx.session.scalars(
            select(stored).where(
                stored.account_id == account_id,
                stored.lifted_at.is_(None),
                or_(
                    stored.item_id == item_id,
                    and_(stored.kind.in_(gone), stored.standing.is_(True), active_now(tx.now)),
                ),
            )
        )
    )


def _settled_joined(tx: Tx, account_id: str, since: datetime) -> StoredDisposition | None:
    """The settled art8 suspension that :func:`still_uncorrected` reads, as it was read before:
    the account's dispositions joined to their items."""
    stored = StoredDisposition
    return tx.session.scalar(
        select(stored)
        .join(ReviewItem, ReviewItem.id == stored.item_id)
        .where(
            stored.account_id == account_id,
            stored.kind.in_(protected.suspensions(tx.policy.dispositions)),
            ReviewItem.kind == protected.KIND,
            stored.settled_at.is_not(None),
            stored.settled_at >= since,
            stored.lifted_at.is_(None),
        )
        .order_by(stored.id.desc())
        .limit(1)
    )


def table(names: list[str], before: list[Plan], after: list[Plan]) -> str:
    lines = [
        "| read | before: time, buffers, rows read | after: time, buffers, rows read |",
        "|---|---|---|",
    ]
    for name, b, a in zip(names, before, after, strict=True):
        lines.append(
            f"| {name} | {b.ms:.2f} ms, {b.buffers:,}, {b.rows_read:,} "
            f"| {a.ms:.2f} ms, {a.buffers:,}, {a.rows_read:,} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser, args = arguments("eval.account_scale", __doc__, argv, times=5, timed="explained")
    configured = settings_or_exit(parser.prog)
    now = datetime.now(UTC)
    with schema(args.postgres) as url, tempfile.TemporaryDirectory() as work:
        settings = configured.model_copy(update={"state_dir": Path(work), "database_url": url})
        subjects = subject_key.load(settings)
        upgrade(url, subject_key=subjects)
        policy = load_policy(settings.policy_file)
        repo = open_repository(url, 60.0, policy.review, subject_key=subjects)
        started = time.perf_counter()
        # a bulk load's statements run past any request's timeout
        loading = make_engine(url, 3600.0)
        filled = fill(loading, policy.version, args.scale, now)
        loading.dispose()
        fill_s = time.perf_counter() - started
        revision = stored_revision(repo.engine)
        results = []
        try:
            for present in (False, True):
                for migration in INDEXES if present else reversed(INDEXES):
                    indexed(repo.engine, present=present, revision=migration)
                reads = reads_of(repo, policy, now)
                results.append(measure(reads, repo.engine, args.times))
        finally:
            repo.close()
    print(f"{hardware()}, {now:%Y-%m-%d %H:%M} UTC")
    print(
        "PostgreSQL, "
        + ", ".join(f"{v:,} {k}" for k, v in filled.items())
        + f" (filled in {fill_s:.0f} s); at {revision}, before: without the indexes of "
        f"{' and '.join(INDEXES)}, after: with them\n"
    )
    print(table([r.name for r in reads], results[0], results[1]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
