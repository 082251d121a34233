"""The reports page's scale benchmark, run small: it fills, measures both ways and drops its
schema, as it says."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from conftest import POSTGRES
from sqlalchemy import create_engine, text

from eval import queue_scale, reports_scale
from service.storage.database import head_revision


def test_a_small_run_measures_each_read_before_and_after_on_the_same_rows(
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
    assert reports_scale.main(["--scale", "0.004", "--times", "1", "--postgres", POSTGRES]) == 0
    out = capsys.readouterr().out
    head, table = out.split("\n\n", 1)
    # the figures filled at the scale, never under 10 of a kind: every report answered but the
    # newest 10
    assert "PostgreSQL, 2,000 reports, 10 open reports, " in head
    assert ", 800 flagged items (filled in " in head
    assert f"at {head_revision()}, before: the statements before {reports_scale.INDEXES}" in head
    rows = [line.split(" | ") for line in table.splitlines()[2:]]
    names = [row[0].removeprefix("| ") for row in rows]
    assert names == [
        "open reports, first page",
        "open reports, three quarters in",
        "every report, first page",
        "every report, three quarters in",
        "most reported item's reports (item page)",
    ]
    for row in rows:
        # every read ran statements, and each was timed both ways
        assert int(row[1].split(" → ")[0]) > 0
        assert row[2].endswith(" ms") and row[3].endswith(" ms")
    engine = create_engine(POSTGRES)
    try:
        with engine.connect() as db:
            found = db.scalar(
                text("SELECT count(*) FROM pg_namespace WHERE nspname = :name"), {"name": made[0]}
            )
    finally:
        engine.dispose()
    assert len(made) == 1 and found == 0


def test_a_read_that_shows_other_rows_after_than_before_ends_the_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The figures compare two ways of reading one page: where the pages differ, there are
    none."""
    monkeypatch.setattr(reports_scale, "BEFORE_COUNTS", "SELECT 0, 0")
    with pytest.raises(SystemExit) as ended:
        reports_scale.main(["--scale", "0.004", "--times", "1", "--postgres", POSTGRES])
    assert "open reports, first page showed other rows after than before" in str(ended.value)


def test_a_scale_not_above_zero_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as ended:
        reports_scale.main(["--scale", "0"])
    assert ended.value.code == 2
    assert "--scale must be above 0, not 0.0" in capsys.readouterr().err
