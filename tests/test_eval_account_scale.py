"""The account reads' scale benchmark, run small: it fills, migrates and measures what it says."""

from __future__ import annotations

import pytest
from conftest import POSTGRES

from eval import account_scale
from service.storage.database import head_revision


def test_a_small_run_measures_every_read_without_and_with_the_indexes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert account_scale.main(["--scale", "0.001", "--times", "1", "--postgres", POSTGRES]) == 0
    head, table = capsys.readouterr().out.split("\n\n", 1)
    # the figures filled: SIZES at the scale, never under 10 of a kind, the active ones 20
    assert "100 ended, 20 active, 100 others, 200 appeals" in head
    without = " and ".join(account_scale.INDEXES)
    assert f"at {head_revision()}, before: without the indexes of {without}" in head
    rows = [line.split(" | ") for line in table.splitlines()[2:]]
    names = [row[0].removeprefix("| ") for row in rows]
    assert len(names) == len(set(names)) == 18
    for row in rows:
        # each read's statements explained without and with the indexes: time, buffers, rows
        for cell in row[1:]:
            ms, buffers, read = cell.removesuffix(" |").split(", ")
            assert ms.endswith(" ms") and int(buffers.replace(",", "")) > 0
            assert int(read.replace(",", "")) >= 0


def test_a_scale_not_above_zero_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as ended:
        account_scale.main(["--scale", "0"])
    assert ended.value.code == 2
    assert "--scale must be above 0, not 0.0" in capsys.readouterr().err
