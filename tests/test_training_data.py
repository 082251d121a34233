"""The labelled splits of training/data.py: ToxiCN's reporting rows are evaluated only; training
and evaluation name a missing corpus or a setting they cannot use before any work."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from eval import batch, console, crossdata, engagement, evidence, load, neardup, review
from eval.__main__ import main as evaluate
from service.settings import get_settings
from training import data, refit
from training.run import main as train


def test_toxicn_reporting_rows_stay_in_the_eval_split_only(tmp_path: Path) -> None:
    rows = [
        {"content": f"帖子{i}", "toxic": 1 if i % 2 else 0, "expression": i % 4} for i in range(400)
    ]
    (tmp_path / "toxicn").mkdir()
    (tmp_path / "toxicn" / "train.json").write_text(json.dumps(rows, ensure_ascii=False))
    examples = data.toxicn(tmp_path)
    reporting = data.toxicn_reporting(tmp_path)
    assert len(reporting) == 100
    kept = Counter((e.split, e.group in reporting) for e in examples)
    assert kept[("train", True)] == kept[("calib", True)] == 0
    assert kept[("eval", True)] > 0 and kept[("train", False)] > kept[("eval", False)] > 0
    # every other row is kept, with its label; a reporting row only where it is evaluated
    assert kept[("train", False)] + kept[("calib", False)] + kept[("eval", False)] == 300
    by_group = {e.group: e for e in examples}
    assert all(by_group[g].split == "eval" for g in reporting if g in by_group)
    assert all(by_group[f"toxicn-{i}"].label == rows[i]["toxic"] for i in (0, 1, 2))
    # as given (the baseline's data): every row, and the same eval split
    given = data.toxicn(tmp_path, reporting=True)
    assert len(given) == 400 and {e.group for e in given} >= reporting
    assert [e for e in given if e.split == "eval"] == [e for e in examples if e.split == "eval"]


def test_the_incitement_refit_reads_cold_and_toxicn_without_the_reporting_rows(
    tmp_path: Path,
) -> None:
    rows = [{"content": f"帖子{i}", "toxic": 1, "expression": 3 * (i % 2)} for i in range(60)]
    (tmp_path / "toxicn").mkdir()
    (tmp_path / "toxicn" / "train.json").write_text(json.dumps(rows, ensure_ascii=False))
    (tmp_path / "cold").mkdir()
    for name, n in (("train", 50), ("dev", 10)):
        lines = [
            json.dumps({"id": f"{name}{i}", "text": f"评论{name}{i}", "label": i % 2})
            for i in range(n)
        ]
        (tmp_path / "cold" / f"{name}.jsonl").write_text("\n".join(lines) + "\n")
    posts = refit.splits(tmp_path, "incitement")
    texts = posts["train"][0] + posts["calib"][0]
    assert sum(t.startswith("评论train") for t in texts) == 50
    reported = {f"帖子{i}" for i in range(1, 60, 2)}
    assert not reported & set(texts) and sum(t.startswith("帖子") for t in texts) > 20


@pytest.fixture
def corpora(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty file for each corpus, in the folder QINGLANG_DATA_DIR names."""
    folder = tmp_path / "data"
    for name in data.CORPORA:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).touch()
    monkeypatch.setenv("QINGLANG_DATA_DIR", str(folder))
    get_settings.cache_clear()
    yield folder
    get_settings.cache_clear()


@pytest.mark.parametrize("absent", [Path(), *data.CORPORA], ids=str)
def test_missing_data_is_one_line_and_status_2_before_any_work(
    corpora: Path, tmp_path: Path, absent: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = corpora / absent
    if missing == corpora:
        shutil.rmtree(corpora)
    else:
        missing.unlink()
    work, out = tmp_path / "work", tmp_path / "out"
    assert train(["--recipe", "smoke", "--work", str(work), "--out", str(out)]) == 2
    assert evaluate(["--skip-speed"]) == 2
    trained, evaluated = capsys.readouterr().err.splitlines()
    for line, program in ((trained, "python -m training.run"), (evaluated, "python -m eval")):
        assert line.startswith(f"{program}: error: {missing} is missing")
        assert "QINGLANG_DATA_DIR" in line
    assert not work.exists() and not out.exists()


PROGRAMS: list[tuple[str, Callable[[list[str]], int], list[str]]] = [
    ("training.run", train, ["--recipe", "smoke", "--work", "work", "--out", "out"]),
    ("eval", evaluate, ["--skip-speed"]),
    ("eval.crossdata", crossdata.main, ["--work", "work", "--card", "out"]),
    ("eval.evidence", evidence.main, ["--posts", "1"]),
    ("eval.batch", batch.main, ["--posts", "1", "--skip-ray"]),
    ("eval.console", console.main, ["--records", "1", "--times", "1"]),
    ("eval.engagement", engagement.main, []),
    ("eval.load", load.main, ["--seconds", "1"]),
    ("eval.neardup", neardup.main, ["--posts", "1", "--naive", "1", "--pairs", "1"]),
    ("eval.review", review.main, ["--records", "1", "--postgres", ""]),
]


@pytest.mark.parametrize(("program", "main", "argv"), PROGRAMS, ids=[p[0] for p in PROGRAMS])
@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("QINGLANG_PORT", "abc", "setting port (QINGLANG_PORT): Input should be a valid integer"),
        ("QINGLANG_DATA_DIR", "", "setting data_dir (QINGLANG_DATA_DIR): Value error, is empty"),
        ("QINGLANG_DATABASE_URL", "mysql://u:secret@h/d", "mysql is not supported"),
    ],
)
def test_a_setting_that_cannot_be_used_is_one_line_and_status_2(
    program: str,
    main: Callable[[list[str]], int],
    argv: list[str],
    variable: str,
    value: str,
    says: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # the folders argv names are relative: here, and still empty at the end
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(variable, value)
    get_settings.cache_clear()
    try:
        with pytest.raises(SystemExit) as stopped:
            main(argv)
    finally:
        get_settings.cache_clear()
    assert stopped.value.code == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"python -m {program}: error: ") and says in line
    assert "secret" not in line
    assert list(tmp_path.iterdir()) == []
