"""``qinglang keys create`` and ``qinglang migrate``, as an operator runs them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from service.security import Guard
from service.storage import open_repository


def qinglang(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "QINGLANG_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}"}
    return subprocess.run(
        [sys.executable, "-m", "service.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_keys_create_prints_a_working_key_as_its_last_line(tmp_path: Path) -> None:
    created = qinglang(tmp_path, "keys", "create", "--role", "reviewer")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip().splitlines()[-1]
    repository = open_repository(f"sqlite:///{tmp_path / 'cli.db'}", 2.0)
    guard = Guard(repository, rate=10, burst=10, cache_s=0)
    assert guard.check(f"Bearer {key}", ("reviewer",)).role == "reviewer"
    stored = repository.get_key(key.split("_")[1])
    assert stored is not None and key not in stored.digest
    repository.close()


def test_keys_create_refuses_an_unknown_role(tmp_path: Path) -> None:
    created = qinglang(tmp_path, "keys", "create", "--role", "root")
    assert created.returncode == 2
    assert "invalid choice" in created.stderr


def test_migrate_creates_the_schema_and_reports_an_unreachable_database(tmp_path: Path) -> None:
    assert qinglang(tmp_path, "migrate").returncode == 0
    assert (tmp_path / "cli.db").is_file()
    env = {**os.environ, "QINGLANG_DATABASE_URL": "postgresql+psycopg://postgres@127.0.0.1:9/x"}
    failed = subprocess.run(
        [sys.executable, "-m", "service.cli", "migrate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert failed.returncode == 2 and "qinglang migrate: error" in failed.stderr
