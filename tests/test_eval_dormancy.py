"""The dormancy benchmark's own parts: the accounts it fills, its table."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from eval.dormancy import NOW, fill, measure
from service.policy import Policy
from service.storage import open_migrated


def test_the_filled_warnings_are_those_the_sweep_gives_and_hold_to_their_date(
    tmp_path: Path, policy: Policy
) -> None:
    repo = open_migrated(f"sqlite:///{tmp_path / 'bench.db'}", 10.0, policy.review)
    try:
        fill(repo, policy, 60, 20)
        # a sweep finds nothing to warn, nothing to revise and nobody dormant yet
        assert repo.warn_dormancy(policy, now=NOW) == 0
        assert repo.settle_dormancy(policy, now=NOW) == 0
        # the warned ones fall dormant at the date their warnings gave, the others not
        assert repo.settle_dormancy(policy, now=NOW + timedelta(days=10)) == 20
    finally:
        repo.close()


def test_the_table_has_both_sweeps_of_a_database(tmp_path: Path, policy: Policy) -> None:
    rows = measure("SQLite", f"sqlite:///{tmp_path / 'bench.db'}", policy, 30, 5, 1)
    assert [row.split(" | ")[:2] for row in rows] == [
        ["| SQLite", "a running process's sweep (the accounts warned since)"],
        ["| SQLite", "a process's first sweep (every running warning read)"],
    ]
    assert all(row.endswith(" ms |") for row in rows)
