"""The review reads' scale benchmark, run small: it fills, migrates and measures what it says."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from conftest import POSTGRES
from sqlalchemy import create_engine, text

from eval import queue_scale
from service.storage.database import head_revision


def test_a_small_run_measures_every_read_at_both_revisions(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[str] = []
    scratch = queue_scale.schema

    @contextmanager
    def kept(server: str) -> Iterator[str]:
        with scratch(server) as url:
            made.append(url.rsplit("%3D", 1)[1])
            yield url

    monkeypatch.setattr(queue_scale, "schema", kept)
    assert queue_scale.main(["--scale", "0.001", "--times", "1", "--postgres", POSTGRES]) == 0
    out = capsys.readouterr().out
    head, table = out.split("\n\n", 1)
    # the figures filled: SIZES at the scale, never under 10 of a kind
    assert "1,000 records, 200 items, 50 accounts, 20 appeals, 100 dispositions, 50 reports" in head
    # both at the newest revision, whose columns today's reads select, without and with the
    # indexes measured
    assert f"at {head_revision()}, before: without {queue_scale.INDEXES}'s indexes" in head
    rows = [line.split(" | ") for line in table.splitlines()[2:]]
    names = [row[0].removeprefix("| ") for row in rows]
    assert names[0] == "/console/queue" and names[1].startswith("/console/queue?cursor=")
    assert sum(name.startswith("dashboard: ") for name in names) == 5
    assert len(names) == len(set(names)) == 35
    for row in rows:
        # every read ran statements, and each was timed at both revisions
        assert int(row[1].split(" → ")[0]) > 0
        assert row[2].endswith(" ms") and row[3].endswith(" ms")
    # the scratch schema is dropped
    engine = create_engine(POSTGRES)
    try:
        with engine.connect() as db:
            found = db.scalar(
                text("SELECT count(*) FROM pg_namespace WHERE nspname = :name"), {"name": made[0]}
            )
    finally:
        engine.dispose()
    assert len(made) == 1 and found == 0


def test_a_scale_not_above_zero_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as ended:
        queue_scale.main(["--scale", "0"])
    assert ended.value.code == 2
    assert "--scale must be above 0, not 0.0" in capsys.readouterr().err
