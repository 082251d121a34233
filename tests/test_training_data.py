"""The labelled splits of training/data.py: ToxiCN's reporting rows are evaluated only; training
and evaluation name a missing corpus or a setting they cannot use before any work; every program
reading the corpora ends on one line naming a file that is missing or damaged (and the line)."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from eval import (
    batch,
    console,
    crossdata,
    dormancy,
    engagement,
    evidence,
    evidence_cost,
    load,
    neardup,
    publish,
    review,
    separators,
)
from eval.__main__ import main as evaluate
from service.settings import ROOT, get_settings
from training import data, finetune, pretrain, recover, refit
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
def test_training_and_eval_name_any_missing_file_before_any_work(
    corpora: Path, tmp_path: Path, absent: Path
) -> None:
    missing = corpora / absent
    if missing == corpora:
        shutil.rmtree(corpora)
    else:
        missing.unlink()
    work, out = tmp_path / "work", tmp_path / "out"
    for main, argv in (
        (train, ["--recipe", "smoke", "--work", str(work), "--out", str(out)]),
        (evaluate, ["--skip-speed"]),
    ):
        with pytest.raises(data.CorpusError) as stopped:
            main(argv)
        # the line a read of the file would end on
        assert stopped.value.code == f"{missing} is missing: {data.SET_DATA_DIR}"
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


READERS: list[tuple[str, Callable[[list[str]], int], list[str]]] = [
    ("training.run", train, ["--recipe", "smoke", "--work", "work", "--out", "out"]),
    ("eval", evaluate, ["--skip-speed"]),
    ("eval.crossdata", crossdata.main, ["--work", "work", "--card", "out"]),
    ("eval.evidence", evidence.main, ["--posts", "1"]),
    ("eval.evidence_cost", evidence_cost.main, ["--posts", "1", "--longest", "1"]),
    ("eval.batch", batch.main, ["--posts", "1", "--skip-ray"]),
    ("eval.engagement", engagement.main, []),
    ("eval.load", load.main, ["--seconds", "1"]),
    ("eval.neardup", neardup.main, ["--posts", "1", "--naive", "1", "--pairs", "1"]),
    ("eval.publish", publish.main, ["--rounds", "1"]),
    ("eval.separators", separators.main, ["--posts", "1"]),
]
"""Every ``python -m`` program under training/ and eval/ that reads the corpora."""


@pytest.mark.parametrize("folder", [False, True], ids=["no-folder", "empty-folder"])
@pytest.mark.parametrize(("program", "main", "argv"), READERS, ids=[p[0] for p in READERS])
def test_a_program_reading_a_missing_corpus_ends_on_its_line_before_any_work(
    program: str,
    main: Callable[[list[str]], int],
    argv: list[str],
    folder: bool,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(batch, "WORK", tmp_path / "bench")
    corpora = tmp_path / "data"
    if folder:
        corpora.mkdir()
    monkeypatch.setenv("QINGLANG_DATA_DIR", str(corpora))
    # a model loaded before the check would end the program on the model's error instead
    monkeypatch.setenv("QINGLANG_MODEL_DIR", str(tmp_path / "nomodel"))
    get_settings.cache_clear()
    try:
        with pytest.raises(data.CorpusError) as stopped:
            main(argv)
    finally:
        get_settings.cache_clear()
    # a str, which the interpreter prints alone (no traceback) and ends with status 1
    line = stopped.value.code
    assert isinstance(line, str) and "\n" not in line
    named = Path(line.removesuffix(f" is missing: {data.SET_DATA_DIR}"))
    assert named != Path(line)
    if folder:
        assert named.relative_to(corpora) in data.CORPORA
    else:
        assert named == corpora
    # nothing made: no work or output folder, no sample drawn, no server's state
    assert list(tmp_path.iterdir()) == ([corpora] if folder else [])


def gzipped_lines(n: int) -> bytes:
    rows = [
        {"id": str(i), "event": "e", "account": "a", "text": "转发", "created_at": i}
        for i in range(n)
    ]
    return gzip.compress("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode())


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (gzipped_lines(5000)[:-2000], "cut off or damaged (Compressed file ended"),
        (b'{"id": "0"}\n', "cut off or damaged (Not a gzipped file"),
        (
            gzipped_lines(3) + gzip.compress(b'{"id": "3", "event": }\n'),
            "not JSON, column 22: Expecting value",
        ),
        (gzipped_lines(3) + gzip.compress(b"[3]\n"), "not a JSON object"),
        (gzipped_lines(3) + gzip.compress(b'{"id": "3"}\n'), "no field 'event'"),
        (gzipped_lines(2) + gzip.compress(b'{"id": "\xe9"}\n'), "not UTF-8 (byte b'\\xe9')"),
    ],
    ids=["truncated", "not-gzip", "bad-json", "not-an-object", "no-field", "not-utf8"],
)
def test_a_damaged_corpus_file_is_one_line_naming_file_and_line(
    tmp_path: Path, content: bytes, says: str
) -> None:
    (tmp_path / data.WEIBO16_REPOSTS).parent.mkdir()
    (tmp_path / data.WEIBO16_REPOSTS).write_bytes(content)
    read = 0
    with pytest.raises(data.CorpusError) as stopped:
        for _ in data.reposts(tmp_path):
            read += 1
    # the line named is the first one not read: the one that is damaged, or that is cut off
    line = stopped.value.code
    assert isinstance(line, str) and "\n" not in line
    assert line.startswith(f"{tmp_path / data.WEIBO16_REPOSTS}, line {read + 1}: {says}")
    assert read < 5000


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ('[{"content": "a", "toxic": 1, "expression": 0},\n{"conte', ", line 2: not JSON"),
        ('[{"content": "a", "toxic": 1, "expression": 0}, {"content": "b"}]', ", row 1: no field"),
        ('[{"content": "a", "toxic": "yes", "expression": 0}]', ", row 0: invalid literal"),
        ('{"content": "a"}', ": not a JSON array"),
    ],
    ids=["truncated", "no-field", "wrong-kind", "not-an-array"],
)
def test_a_damaged_toxicn_file_is_one_line_naming_the_line_or_row(
    tmp_path: Path, content: str, says: str
) -> None:
    (tmp_path / data.TOXICN).parent.mkdir()
    (tmp_path / data.TOXICN).write_text(content)
    with pytest.raises(data.CorpusError) as stopped:
        data.toxicn(tmp_path)
    assert str(stopped.value.code).startswith(f"{tmp_path / data.TOXICN}{says}")


def test_the_reviewed_labels_missing_say_how_to_write_them(tmp_path: Path) -> None:
    with pytest.raises(data.CorpusError) as stopped:
        data.reviewed(tmp_path / "labels.jsonl")
    assert stopped.value.code == (
        f"{tmp_path / 'labels.jsonl'} is missing: write it with `qinglang labels export`"
    )


def test_eval_engagement_names_the_damaged_line_of_weibo16(corpora: Path) -> None:
    post = {"id": "1", "created_at": 0, "account": {"id": "a", "followers": 1}}
    lines = [json.dumps(post | {"reposts": 1, "comments": 0}), json.dumps(post)]
    (corpora / data.WEIBO16_POSTS).write_text("\n".join(lines) + "\n")
    (corpora / data.WEIBO16_REPOSTS).write_bytes(gzip.compress(b""))
    with pytest.raises(data.CorpusError) as stopped:
        engagement.main([])
    assert stopped.value.code == f"{corpora / data.WEIBO16_POSTS}, line 2: no field 'reposts'"


def test_the_command_line_prints_the_one_line_alone_and_ends_with_status_1(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    # the other file it reads there, read after this one
    (folder / data.WEIBO16_POSTS).parent.mkdir(parents=True)
    (folder / data.WEIBO16_POSTS).touch()
    (folder / data.WEIBO16_REPOSTS).write_bytes(gzipped_lines(100)[:-20])
    ended = subprocess.run(
        [sys.executable, "-m", "eval.neardup", "--posts", "1000"],
        env={**os.environ, "QINGLANG_DATA_DIR": str(folder)},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert ended.returncode == 1
    [line] = ended.stderr.splitlines()
    assert line.startswith(f"{folder / data.WEIBO16_REPOSTS}, line ")
    assert "cut off or damaged" in line


def _model_copy(tmp_path: Path, damage: str) -> Path:
    """The shipped model's folder, copied, with one file removed or overwritten."""
    folder = tmp_path / "model"
    shutil.copytree(ROOT / "models", folder)
    name, _, text = damage.partition("=")
    if text:
        (folder / name).write_text(text)
    else:
        (folder / name).unlink()
    return folder


BAD_INPUTS: list[tuple[str, Callable[[list[str]], int], list[str], str]] = [
    ("eval", evaluate, ["--skip-speed"], "model.onnx"),
    ("eval", evaluate, ["--skip-speed"], "tokenizer.json=not json"),
    ("eval.evidence", evidence.main, ["--posts", "1"], "card.json={"),
    ("eval.evidence_cost", evidence_cost.main, ["--posts", "1"], "tokenizer.json"),
    ("eval.separators", separators.main, ["--posts", "1"], "tokenizer.json=[]"),
    ("training.run", train, ["--thresholds", "--out", "{model}"], "model.onnx"),
    ("training.run", train, ["--refit", "rumor", "--out", "{model}"], "card.json=[]"),
    ("training.recover", recover.main, ["--model", "{model}"], "tokenizer.json=x"),
    ("eval.crossdata", crossdata.main, ["--work", "{model}/..", "--card", "{model}"], ""),
    ("training.pretrain", pretrain.main, ["{model}"], "tokenizer.json=x"),
]
"""A model, tokenizer or card the program needs that is missing or damaged: ``damage`` is the
file of the model's copy removed, or ``file=text`` written over it (crossdata's own tokenizer,
in WORK/encoder, is missing)."""


@pytest.mark.parametrize(
    ("program", "main", "argv", "damage"), BAD_INPUTS, ids=[f"{p[0]}-{p[3]}" for p in BAD_INPUTS]
)
def test_a_model_file_missing_or_damaged_ends_on_one_line_naming_it_before_any_work(
    program: str,
    main: Callable[[list[str]], int],
    argv: list[str],
    damage: str,
    corpora: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model = _model_copy(tmp_path, damage or "card.json={")
    monkeypatch.setenv("QINGLANG_MODEL_DIR", str(model))
    get_settings.cache_clear()
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(SystemExit) as stopped:
        main([a.replace("{model}", str(model)) for a in argv])
    line = stopped.value.code
    # a str, which the interpreter prints alone (no traceback) and ends with status 1
    assert isinstance(line, str) and "\n" not in line
    named = damage.partition("=")[0] if damage else "encoder/tokenizer.json"
    if program == "eval.crossdata":
        assert line.startswith(f"{model}/../{named} is missing")
    else:
        assert line.startswith(f"{model / named}")
    # the corpora, all empty, were not read: an empty file would have ended it otherwise
    assert sorted(tmp_path.rglob("*")) == before


COUNTS: list[tuple[Callable[[list[str]], int], list[str]]] = [
    (batch.main, ["--posts", "0"]),
    (batch.main, ["--workers", "-1"]),
    (console.main, ["--records", "-5"]),
    (dormancy.main, ["--warned", "-1"]),
    (evidence.main, ["--posts", "-1"]),
    (evidence_cost.main, ["--longest", "-1"]),
    (load.main, ["--seconds", "-1"]),
    (load.main, ["--seconds", "nan"]),
    (neardup.main, ["--pairs", "0"]),
    (publish.main, ["--rounds", "0"]),
    (review.main, ["--decisions", "-1"]),
    (separators.main, ["--posts", "-1"]),
    (finetune.main, ["folder", "--epochs", "0"]),
    (pretrain.main, ["folder", "--max-seconds", "-1"]),
]


@pytest.mark.parametrize(("main", "argv"), COUNTS, ids=[" ".join(c[1]) for c in COUNTS])
def test_a_count_below_its_least_is_a_usage_error(
    main: Callable[[list[str]], int], argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    assert stopped.value.code == 2
    last = capsys.readouterr().err.splitlines()[-1]
    option = next(a for a in argv if a.startswith("--"))
    assert f"argument {option}: must be" in last and argv[-1] in last
