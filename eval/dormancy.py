"""Dormancy warning sweep benchmark: ``python -m eval.dormancy [--accounts N] [--warned W]``.

Fills a fresh database (a temporary SQLite file, and a fresh schema on the PostgreSQL server of
``--postgres``) with N accounts (default 100,000), W of them (default 5,000) warned of a
dormancy under the default policy, and none due for anything: every sweep changes nothing, as
nearly every maintenance pass. Then, on each database, alternating round by round, the time of
:meth:`~service.storage.sql.SqlRepository.warn_dormancy`:

- as a running process sweeps (it remembers the rules it last found every running warning
  agreeing with, and reads only the accounts warned since);
- as a process's first sweep, which reads every running warning (the memory forgotten before
  each).

Prints hardware, date and one markdown table: the range of the rounds' medians.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import insert

from eval.queue_scale import analyze
from eval.review import POSTGRES, databases
from eval.speed import hardware
from service.cli.parser import non_negative_int, positive_int
from service.policy import Policy, load_policy
from service.settings import settings_or_exit
from service.storage import SqlRepository, open_migrated
from service.storage.tables import StoredAccount, StoredDisposition

NOW = datetime(2026, 12, 1, tzinfo=UTC)
CHUNK = 5_000


def fill(repo: SqlRepository, policy: Policy, accounts: int, warned: int) -> None:
    """``accounts`` accounts, the first ``warned`` of them warned as the sweep warns, their
    dormancy still ahead of :data:`NOW`; the rest used too recently to be warned."""
    rules = policy.dormancy
    rows, warnings = [], []
    for i in range(accounts):
        if i < warned:
            clock = NOW - timedelta(days=rules.after_days - 10, seconds=i)
            given: datetime | None = clock + timedelta(days=rules.after_days - rules.warn_days)
        else:
            clock, given = NOW - timedelta(days=10, seconds=i), None
        rows.append(
            {
                "account_id": f"acc{i:07d}",
                "credit": 100,
                "level": "A",
                "followers": 0,
                "clean_since": clock,
                "policy_version": policy.version,
                "active_at": clock,
                "active_by": "registration",
                "warned_at": given,
            }
        )
        if given is not None:
            warnings.append(
                {
                    "account_id": f"acc{i:07d}",
                    "kind": "dormancy_warning",
                    "basis": rules.basis,
                    "starts_at": given,
                    "ends_at": clock + timedelta(days=rules.after_days),
                    "decided_by": "service",
                    "policy_version": policy.version,
                }
            )
    with repo.engine.begin() as db:
        for table, values in ((StoredAccount, rows), (StoredDisposition, warnings)):
            for start in range(0, len(values), CHUNK):
                db.execute(insert(table), values[start : start + CHUNK])
        if repo.engine.dialect.name == "postgresql":
            analyze(db)


def measure(
    name: str, url: str, policy: Policy, accounts: int, warned: int, rounds: int
) -> list[str]:
    repo = open_migrated(url, 60.0, policy.review)
    try:
        fill(repo, policy, accounts, warned)

        def running() -> None:
            assert repo.warn_dormancy(policy, now=NOW) == 0

        def first() -> None:
            # what a process that just started has: no memory of the warnings
            repo._warnings_checked = None
            running()

        running()  # the memory, as after a process's first sweep
        sweeps: dict[str, list[float]] = {"running": [], "first": []}
        for _ in range(rounds):
            for what, sweep in (("running", running), ("first", first)):
                sweeps[what].append(_median_ms(sweep))
    finally:
        repo.close()
    said = {
        "running": "a running process's sweep (the accounts warned since)",
        "first": "a process's first sweep (every running warning read)",
    }
    return [
        f"| {name} | {said[what]} | {min(ms):.2f}–{max(ms):.2f} ms |" for what, ms in sweeps.items()
    ]


def _median_ms(run: Callable[[], None], times: int = 20) -> float:
    took = []
    for _ in range(times):
        start = time.perf_counter()
        run()
        took.append(time.perf_counter() - start)
    return statistics.median(took) * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.dormancy", description=__doc__)
    parser.add_argument("--accounts", type=positive_int, default=100_000)
    parser.add_argument("--warned", type=non_negative_int, default=5_000)
    parser.add_argument("--rounds", type=positive_int, default=7, help="medians of 20 sweeps each")
    parser.add_argument("--postgres", default=POSTGRES, help="server URL; '' to skip")
    args = parser.parse_args(argv)
    policy = load_policy(settings_or_exit(parser.prog).policy_file)
    print(f"hardware: {hardware()}\ndate: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print(f"{args.accounts:,} accounts, {args.warned:,} warned, nothing to change\n")
    lines = ["| database | sweep | medians of 20 sweeps |", "|---|---|---|"]
    with databases(args.postgres or None) as found:
        for name, url in found:
            lines += measure(name, url, policy, args.accounts, args.warned, args.rounds)
            print("\n".join(lines), flush=True)
            lines = []
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
