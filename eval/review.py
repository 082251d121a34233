"""Review-queue benchmark: ``python -m eval.review [--records N]``.

Fills a fresh database (a temporary SQLite file, and a fresh schema on the PostgreSQL server of
``--postgres``) with N flagged score records and their review items (default one million),
spread over 10,000 accounts, enqueued over 30 days. Then, on each database:

- queue listing latency (first page of 50 open items by priority; the same filtered by head;
  the tenth page through the cursor), by the stored urgency key and its index, side by side
  with the naive query that orders by the priority computed at read time (severity, reach and
  age: the same order, without an index that can serve it);
- decisions per second: claim + decide (70% confirm with its credit change and dispositions,
  30% dismiss) by one client, and by four client threads at once, each decision one
  transaction with its hash-chained records.

Prints hardware, date and one markdown table.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from sqlalchemy import create_engine, insert, select, text

from eval.queue_scale import analyze
from eval.speed import hardware
from service.cli.parser import positive_int
from service.heads import RISKS
from service.policy import Policy, load_policy
from service.record import Decision, ScoreRecord
from service.review import items
from service.review.items import ConflictError
from service.settings import settings_or_exit
from service.storage import SqlRepository, open_migrated
from service.storage.tables import ReviewItem, StoredRecord

ACCOUNTS = 10_000
CHUNK = 10_000
PAGE = 50
POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _record(n: int, decision: Decision) -> dict[str, object]:
    return ScoreRecord(
        id=f"post-{n}",
        account_id=f"acc-{n % ACCOUNTS}",
        scores=dict.fromkeys(RISKS, 0.7),
        flags=dict.fromkeys(RISKS, True),
        signals={"originality_claim": 0.1},
        decision=decision,
        reasons=[],
        model_version="sha256:bench",
        policy_version="bench",
    ).model_dump(mode="json")


def fill(repo: SqlRepository, policy: Policy, n: int) -> float:
    """Insert ``n`` records and their items in bulk; the seconds it took."""
    rng = random.Random(0)
    start_at = datetime.now(UTC) - timedelta(days=30)
    started = time.perf_counter()
    for first in range(0, n, CHUNK):
        records, queue = [], []
        for i in range(first, min(n, first + CHUNK)):
            decision: Decision = "block" if rng.random() < 0.2 else "review"
            at = start_at + timedelta(seconds=i * 30 * 86400 / n)
            reach = int(10 ** rng.uniform(0, 6))
            base = items.base_priority(policy.review, decision, reach, 0)
            records.append(
                {
                    "id": i + 1,
                    "post_id": f"post-{i}",
                    "model_version": "sha256:bench",
                    "policy_version": "bench",
                    "decision": decision,
                    "record": _record(i, decision),
                    "created_at": at,
                }
            )
            queue.append(
                {
                    "id": i + 1,
                    "kind": "score",
                    "record_id": i + 1,
                    "post_id": f"post-{i}",
                    "account_id": f"acc-{i % ACCOUNTS}",
                    "head": rng.choice(["rumor", "incitement"]),
                    "model_version": "sha256:bench",
                    "policy_version": "bench",
                    "decision": decision,
                    "severity": decision,
                    "reach": reach,
                    "reports": 0,
                    "urgency": items.urgency(policy.review, base, at),
                    "status": "open",
                    "text": "一条被标记的帖子",
                    "enqueued_at": at,
                }
            )
        with repo.engine.begin() as db:
            db.execute(insert(StoredRecord), records)
            db.execute(insert(ReviewItem), queue)
    with repo.engine.begin() as db:
        if repo.engine.dialect.name == "postgresql":
            # bulk inserts gave ids explicitly: move the sequences past them
            for table in ("score_records", "review_queue"):
                db.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), {n + 1})"))
            analyze(db)
        else:
            db.execute(text("ANALYZE"))
    return time.perf_counter() - started


def _ms(run: Callable[[], object], times: int = 30) -> tuple[float, float]:
    run()
    taken = []
    for _ in range(times):
        started = time.perf_counter()
        run()
        taken.append(time.perf_counter() - started)
    return float(np.percentile(taken, 50) * 1e3), float(np.percentile(taken, 95) * 1e3)


def naive_page(repo: SqlRepository, policy: Policy) -> list[int]:
    """The first page ordered by the priority computed at read time, without the urgency key."""
    rules = policy.review
    hours = items.hours(datetime.now(UTC))
    epoch_hours = (
        "(julianday(enqueued_at) - 2440587.5) * 24"
        if repo.engine.dialect.name == "sqlite"
        else "extract(epoch from enqueued_at) / 3600"
    )
    severity = " ".join(f"WHEN '{s}' THEN {p}" for s, p in rules.severity.items())
    query = text(
        f"SELECT id FROM review_queue WHERE status = 'open' ORDER BY "
        f"(CASE severity {severity} ELSE 0 END) + {rules.reach_weight} * log(10, 1 + reach) "
        f"+ {rules.report_weight} * reports + {rules.age_weight_per_hour} * ({hours} - "
        f"{epoch_hours}) DESC LIMIT {PAGE}"
    )
    if repo.engine.dialect.name == "postgresql":
        query = text(str(query).replace("log(10, 1 + reach)", "log(10, 1 + reach::numeric)"))
    with repo.engine.connect() as db:
        return list(db.scalars(query))


def decisions_per_s(repo: SqlRepository, policy: Policy, ids: list[int], threads: int) -> float:
    rng = random.Random(threads)

    def one(item_id: int) -> None:
        reviewer = f"bench-{item_id % threads}"
        try:
            repo.claim(policy, item_id, reviewer)
            if rng.random() < 0.7:
                repo.decide(policy, item_id, reviewer, "confirm", "rumor", "art18.6")
            else:
                repo.decide(policy, item_id, reviewer, "dismiss", None, None)
        except ConflictError:
            pass

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, ids))
    return len(ids) / (time.perf_counter() - started)


@contextmanager
def databases(postgres: str | None) -> Iterator[list[tuple[str, str]]]:
    with tempfile.TemporaryDirectory() as folder:
        found = [("SQLite", f"sqlite:///{Path(folder) / 'bench.db'}")]
        if postgres is None:
            yield found
            return
        schema = f"bench_{uuid.uuid4().hex[:12]}"
        admin = create_engine(postgres, isolation_level="AUTOCOMMIT")
        with admin.connect() as db:
            db.execute(text(f"CREATE SCHEMA {schema}"))
        try:
            yield [*found, ("PostgreSQL", f"{postgres}?options=-csearch_path%3D{schema}")]
        finally:
            with admin.connect() as db:
                db.execute(text(f"DROP SCHEMA {schema} CASCADE"))
            admin.dispose()


def measure(name: str, url: str, policy: Policy, n: int, decisions: int) -> list[str]:
    repo = open_migrated(url, 60.0, policy.review)
    try:
        filled = fill(repo, policy, n)
        first = {i.id for i in repo.list_items(policy, limit=PAGE).items}
        agree = len(first & set(naive_page(repo, policy)))

        def tenth() -> None:
            page = repo.list_items(policy, limit=PAGE)
            for _ in range(9):
                assert page.next is not None
                urgency, _, last = page.next.rpartition("_")
                page = repo.list_items(policy, limit=PAGE, cursor=(float(urgency), int(last)))

        rows = [
            ("first page", _ms(lambda: repo.list_items(policy, limit=PAGE))),
            ("first page, head=rumor", _ms(lambda: repo.list_items(policy, head="rumor"))),
            ("tenth page (cursor, 10 queries)", _ms(tenth, 10)),
            ("first page, naive (priority at read time)", _ms(lambda: naive_page(repo, policy), 5)),
        ]
        with repo.engine.connect() as db:
            top = list(
                db.scalars(
                    select(ReviewItem.id)
                    .where(ReviewItem.status == "open")
                    .order_by(ReviewItem.id)
                    .limit(decisions * 2)
                )
            )
        one = decisions_per_s(repo, policy, top[:decisions], 1)
        four = decisions_per_s(repo, policy, top[decisions:], 4)
    finally:
        repo.close()
    lines = [f"| {name} | fill {n:,} records (bulk insert) | {filled:.0f} s | |"]
    lines.append(f"| {name} | first pages of both listings agree | {agree}/{PAGE} items | |")
    lines += [
        f"| {name} | listing: {what} | {p50:.1f} ms | {p95:.1f} ms |" for what, (p50, p95) in rows
    ]
    lines.append(f"| {name} | decisions, 1 client | {one:.0f} /s | |")
    lines.append(f"| {name} | decisions, 4 client threads | {four:.0f} /s | |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.review", description=__doc__)
    parser.add_argument("--records", type=positive_int, default=1_000_000)
    parser.add_argument("--decisions", type=positive_int, default=500, help="per client setting")
    parser.add_argument("--postgres", default=POSTGRES, help="server URL; '' to skip")
    args = parser.parse_args(argv)
    policy = load_policy(settings_or_exit(parser.prog).policy_file)
    print(f"hardware: {hardware()}\ndate: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC\n")
    lines = ["| database | measure | p50 / rate | p95 |", "|---|---|---|---|"]
    with databases(args.postgres or None) as found:
        for name, url in found:
            lines += measure(name, url, policy, args.records, args.decisions)
            print("\n".join(lines), flush=True)
            lines = []
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
