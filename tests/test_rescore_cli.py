"""``qinglang rescore``: every good line scored in order, every bad line reported, all or nothing.

The scorer is a deterministic stand-in for the pipeline whose scores follow from each post's
text, so a record written next to the wrong line shows up as a wrong score.
"""

from __future__ import annotations

import fcntl
import gzip
import os
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from functools import partial
from importlib.metadata import version
from pathlib import Path
from typing import NoReturn

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from batchkit import (
    LengthScorer,
    StandInModel,
    expected_record,
    length_scorer,
    missing_model,
    post_line,
    posts_of,
    read_records,
    read_rejects,
    rescore_lines,
    shuffled_posts,
)

from service.batch import RescoreError, sources
from service.batch.checkpoint import CheckpointError, WorkFolder
from service.batch.paths import default_reject_path
from service.batch.ray_engine import CONNECT_TIMEOUT_S, RayEngine
from service.batch.records import RecordWriter
from service.batch.work import Scorer
from service.cli import EXAMPLES, main
from service.record import Post, ScoreRecord
from service.rescore import InlineEngine, rescore
from service.settings import Settings


class LengthOrderScorer(LengthScorer):
    """The classic bug: the records come back in the order the model saw them."""

    def ordered(self, posts: Sequence[Post], prepared: Sequence[ScoreRecord]) -> list[ScoreRecord]:
        return sorted(prepared, key=lambda record: record.scores["rumor"])


def run_cli(*args: str | Path, scorer: Scorer | None = None) -> int:
    def load(settings: Settings) -> Scorer:
        return scorer or LengthScorer()

    argv = [str(arg) for arg in args]
    if argv[0] == "rescore":
        # one process: the stand-in is this test's object, not a worker's
        argv += ["--workers", "1"]
    return main(argv, load_scorer=load)


def test_records_follow_the_input_order_across_chunks(tmp_path: Path) -> None:
    lines = shuffled_posts(11)
    scorer = LengthScorer()
    summary = rescore_lines(tmp_path, lines, InlineEngine(scorer), chunk_size=4)
    assert read_records(tmp_path / "out.jsonl") == [expected_record(p) for p in posts_of(lines)]
    assert scorer.batch_sizes == [4, 4, 3]
    assert (summary.posts_read, summary.scored, summary.failed_total) == (11, 11, 0)
    assert summary.decisions.total() == 11
    assert not (tmp_path / "out.rejects.jsonl").exists()


def test_a_scorer_that_reorders_its_records_stops_the_run(tmp_path: Path) -> None:
    (tmp_path / "in.jsonl").write_bytes(b"".join(shuffled_posts(5)))
    with pytest.raises(RescoreError, match=r"do not match, in order, the posts of .*in\.jsonl:"):
        rescore(
            tmp_path / "in.jsonl",
            tmp_path / "out.jsonl",
            InlineEngine(LengthOrderScorer()),
            progress=False,
        )
    assert sorted(path.name for path in tmp_path.iterdir()) == [".out.jsonl.rescore", "in.jsonl"]


class BrokenScorer(LengthScorer):
    def prepare(self, posts: Sequence[Post]) -> list[ScoreRecord]:
        raise RuntimeError("the model ran out of memory")


@pytest.mark.parametrize("earlier_output", [None, "the previous run's records\n"])
def test_a_scorer_that_fails_on_every_post_leaves_no_output(
    tmp_path: Path, earlier_output: str | None
) -> None:
    (tmp_path / "in.jsonl").write_bytes(b"".join(shuffled_posts(10)) + b"not json\n")
    if earlier_output is not None:
        (tmp_path / "out.jsonl").write_text(earlier_output)
    with pytest.raises(RescoreError, match=r"failed on every post of .*in.jsonl:1-4: Runtime"):
        rescore(
            tmp_path / "in.jsonl",
            tmp_path / "out.jsonl",
            InlineEngine(BrokenScorer()),
            chunk_size=4,
            progress=False,
        )
    left = sorted(path.name for path in tmp_path.iterdir() if path.is_file())
    if earlier_output is None:
        assert left == ["in.jsonl"]
    else:
        assert left == ["in.jsonl", "out.jsonl"]
        assert (tmp_path / "out.jsonl").read_text() == earlier_output


def test_a_chunk_the_scorer_fails_on_is_scored_post_by_post(tmp_path: Path) -> None:
    lines = shuffled_posts(10)
    lines[5] = post_line("boom", "这条 RAISE 会让模型出错")
    scorer = LengthScorer()
    summary = rescore_lines(tmp_path, lines, InlineEngine(scorer), chunk_size=4)
    good = posts_of(lines[:5] + lines[6:])
    assert read_records(tmp_path / "out.jsonl") == [expected_record(post) for post in good]
    # chunk 2 failed whole, then went post by post: 4 calls
    assert scorer.batch_sizes == [4, 4, 1, 1, 1, 1, 2]
    rejects = read_rejects(tmp_path / "out.rejects.jsonl")
    assert [(r["line"], r["id"], r["error"]) for r in rejects] == [(6, "boom", "scorer_error")]
    assert "this post breaks the scorer" in str(rejects[0]["message"])
    assert summary.failed == {"scorer_error": 1}


def mixed_input() -> list[bytes]:
    """One line of each case, numbered as the file numbers them."""
    return [
        post_line("a", "今天天气很好"),  # 1
        b'{"id": "b", "text": "\xe4\xbd\xa0\xff"}\n',  # 2 invalid UTF-8
        b"\n",  # 3 blank
        post_line(12345678901234567, "数字 id"),  # 4
        b'{"id": "c", "text": "x",}\n',  # 5 malformed JSON
        post_line("d", "长" * 100_000),  # 6 truncated: a warning
        b'{"text": "no id"}\n',  # 7 missing id
        post_line("e", ""),  # 8 empty text: a warning
        b"   \r\n",  # 9 blank
        post_line("a", "今天天气很好"),  # 10 duplicate id
        post_line("f", "[蜡烛][蜡烛]"),  # 11
        b'{"id": "g", "text": "cut off he',  # 12 no newline: malformed JSON
    ]


def test_a_reject_cuts_a_long_id_as_it_cuts_the_line_and_says_how_long_it_was(
    tmp_path: Path,
) -> None:
    long_id = "长" * 100_000
    lines = [post_line(long_id, "一条帖子"), post_line("x" * 300, "另一条"), post_line("ok", "好")]
    rejects_path = tmp_path / "out.rejects.jsonl"
    summary = rescore_lines(tmp_path, lines, InlineEngine(LengthScorer()))
    assert (summary.scored, summary.failed_total) == (1, 2)
    first, second = read_rejects(rejects_path)
    assert (first["id"], first["id_chars"]) == ("长" * 1000, 100_000)
    assert first["raw"] == lines[0].decode()[:1000]
    # an id too long for a post but shorter than the cut is kept whole, with nothing added
    assert second["id"] == "x" * 300 and "id_chars" not in second
    assert max(len(line) for line in rejects_path.read_text().splitlines()) < 3_000


@pytest.mark.parametrize(("flags", "status"), [([], 1), (["--skip-bad"], 0)])
def test_bad_lines_are_reported_and_rejected_and_the_rest_scored(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], status: int
) -> None:
    lines = mixed_input()
    source = tmp_path / "in.jsonl"
    source.write_bytes(b"".join(lines))

    assert run_cli("rescore", source, "-o", tmp_path / "out.jsonl", *flags) == status

    good = [lines[i - 1] for i in (1, 4, 6, 8, 10, 11)]
    records = read_records(tmp_path / "out.jsonl")
    assert records == [expected_record(post) for post in posts_of(good)]
    assert records[0] == records[4]
    rejects = read_rejects(tmp_path / "out.rejects.jsonl")
    assert [(r["line"], r["id"], r["error"]) for r in rejects] == [
        (2, None, "invalid_utf8"),
        (5, None, "malformed_json"),
        (7, None, "missing_id"),
        (12, None, "malformed_json"),
    ]
    assert rejects[0]["raw"] == '{"id": "b", "text": "你\ufffd"}'
    assert rejects[3]["raw"] == '{"id": "g", "text": "cut off he'
    assert all(isinstance(r["message"], str) and r["message"] for r in rejects)
    non_blank = sum(1 for line in lines if line.strip())
    assert len(records) + len(rejects) == non_blank

    err = capsys.readouterr().err
    assert f"{source}:2: error: invalid_utf8: invalid UTF-8 at byte offset 24" in err
    assert f"{source}:5: error: malformed_json: " in err
    assert f"{source}:7: error: missing_id: id: required field is missing" in err
    assert f"{source}:12: error: malformed_json: " in err
    assert f"{source}:6: warning: the text was longer" in err
    assert f"{source}:8: warning: empty text" in err
    said = [int(line.split(":")[1]) for line in err.splitlines() if line.startswith(f"{source}:")]
    # in line order, errors and warnings mixed, as the log is read
    assert said == [2, 5, 6, 7, 8, 10, 12]
    summary = summary_rows(err)
    assert summary["posts read"] == "10 (and 2 blank lines)"
    assert summary["scored"] == f"6 -> {tmp_path / 'out.jsonl'}"
    failed = "4 (malformed_json 2, invalid_utf8 1, missing_id 1)"
    assert summary["failed"] == f"{failed} -> {tmp_path / 'out.rejects.jsonl'}"
    assert summary["warnings"] == "2 posts"
    assert summary["decisions"] == "pass 6, review 0, block 0"
    assert summary["elapsed"].endswith(" posts/s")


def test_errors_printed_stop_after_the_first_hundred_and_the_reject_file_keeps_all(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "in.jsonl"
    bad = [post_line(f"p{i}", "好")[:-2] + b"\n" for i in range(250)]
    source.write_bytes(b"".join(bad) + post_line("ok", "好"))
    args: list[str | Path] = ["rescore", source, "-o", tmp_path / "out.jsonl"]

    assert run_cli(*args, "--chunk-size", "64") == 1

    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if ": error: malformed_json: " in line]
    # a file of a million bad lines would print a million
    assert [int(line.split(":")[1]) for line in errors] == list(range(1, 101))
    reject_path = tmp_path / "out.rejects.jsonl"
    assert (
        f"(errors after the first 100 are not printed: {reject_path} keeps every one and the "
        "summary counts them)"
    ) in err.splitlines()
    assert [r["line"] for r in read_rejects(reject_path)] == list(range(1, 251))
    assert summary_rows(err)["failed"] == f"250 (malformed_json 250) -> {reject_path}"


@pytest.mark.parametrize(("flags", "status"), [([], 2), (["--skip-bad"], 0)])
def test_a_parquet_file_without_a_post_column_is_one_line_on_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], status: int
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.jsonl").write_bytes(b"".join(shuffled_posts(3)))
    source = folder / "b.parquet"
    pq.write_table(pa.table({"post_id": ["x"] * 1500, "content": ["文"] * 1500}), source)

    assert run_cli("rescore", folder, "-o", tmp_path / "out.jsonl", *flags) == status

    said = "has no id and no text column, which every post needs (its columns: post_id, content)"
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    if flags:
        assert errors == [
            f"{source}: error: missing_columns: the Parquet file {said}: none of its 1,500 rows "
            "was read"
        ]
        assert len(read_records(tmp_path / "out.jsonl")) == 3
    else:
        assert errors == [
            f"qinglang rescore: error: {source}: {said}; rename the columns, or give --skip-bad "
            "to reject the file whole and score the rest"
        ]
        assert not (tmp_path / "out.jsonl").exists()


def unreadable_gzip(folder: Path) -> Path:
    source = folder / "b.jsonl.gz"
    source.write_bytes(b"".join(shuffled_posts(4, prefix="b")))  # never compressed
    return source


def unreadable_parquet(folder: Path) -> Path:
    source = folder / "b.parquet"
    pq.write_table(pa.table({"id": ["x"] * 50, "text": ["文"] * 50}), source)
    source.write_bytes(source.read_bytes()[:-200])  # cut off: the footer is lost
    return source


@pytest.mark.parametrize(
    ("make", "said", "refused"),
    [
        (
            unreadable_gzip,
            "is not a readable gzip file: not gzip data",
            "the gzip stream breaks off before its first line: not gzip data",
        ),
        (
            unreadable_parquet,
            "is not a readable Parquet file: Parquet magic bytes not found in footer",
            "the Parquet file's footer cannot be read, nor any row: Parquet magic bytes not "
            "found in footer",
        ),
    ],
)
@pytest.mark.parametrize(("flags", "status"), [([], 2), (["--skip-bad"], 0)])
def test_a_file_of_which_nothing_reads_stops_the_run_or_is_one_reject_with_skip_bad(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    make: Callable[[Path], Path],
    said: str,
    refused: str,
    flags: list[str],
    status: int,
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.jsonl").write_bytes(b"".join(shuffled_posts(3)))
    source = make(folder)
    (folder / "c.jsonl").write_bytes(b"".join(shuffled_posts(2, prefix="c")))

    assert run_cli("rescore", folder, "-o", tmp_path / "out.jsonl", *flags) == status

    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    if flags:
        assert len(errors) == 1
        assert errors[0].startswith(f"{source}: error: unreadable: {refused}")
        # the files before and after it are scored
        assert len(read_records(tmp_path / "out.jsonl")) == 5
        [reject] = read_rejects(tmp_path / "out.rejects.jsonl")
        assert (reject["file"], reject["line"], reject["error"]) == (str(source), 0, "unreadable")
        assert str(reject["message"]).startswith(refused)
    else:
        assert len(errors) == 1
        assert errors[0].startswith(f"qinglang rescore: error: {source} {said}")
        assert errors[0].endswith("; give --skip-bad to reject the file whole and score the rest")
        assert not (tmp_path / "out.jsonl").exists()


def summary_rows(err: str) -> dict[str, str]:
    rows = (line.strip().split("  ", 1) for line in err.splitlines() if line.startswith("  "))
    return {name: value.strip() for name, value in rows}


def test_a_clean_file_exits_0_and_removes_stale_rejects(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "in.jsonl").write_bytes(b"".join(shuffled_posts(3)))
    (tmp_path / "out.rejects.jsonl").write_text('{"line": 1}\n')
    assert run_cli("rescore", tmp_path / "in.jsonl", "-o", tmp_path / "out.jsonl") == 0
    assert len(read_records(tmp_path / "out.jsonl")) == 3
    assert not (tmp_path / "out.rejects.jsonl").exists()
    assert summary_rows(capsys.readouterr().err)["failed"] == "0"


def test_an_output_named_gz_is_gzip_and_reads_back_for_compare(tmp_path: Path) -> None:
    lines = shuffled_posts(7)
    (tmp_path / "in.jsonl").write_bytes(b"".join(lines) + b"[]\n")
    plain, zipped = tmp_path / "out.jsonl", tmp_path / "out.JSONL.GZ"
    assert run_cli("rescore", tmp_path / "in.jsonl", "-o", plain) == 1
    assert run_cli("rescore", tmp_path / "in.jsonl", "-o", zipped) == 1
    assert gzip.decompress(zipped.read_bytes()) == plain.read_bytes()
    # the rejects are plain JSONL beside it, named without its suffixes
    assert [r["error"] for r in read_rejects(tmp_path / "out.rejects.jsonl")] == ["not_an_object"]
    args: list[str | Path] = [
        "rescore",
        tmp_path / "in.jsonl",
        "-o",
        tmp_path / "again.jsonl",
        "--skip-bad",
    ]
    assert run_cli(*args, "--compare", zipped) == 0
    assert (tmp_path / "again.jsonl.changes.jsonl").read_text() == ""


def test_the_reject_file_can_be_named(tmp_path: Path) -> None:
    (tmp_path / "in.jsonl").write_bytes(b"[]\n")
    args = ["rescore", str(tmp_path / "in.jsonl"), "-o", str(tmp_path / "out.jsonl")]
    assert run_cli(*args, "--rejects", tmp_path / "bad.jsonl") == 1
    assert (tmp_path / "out.jsonl").read_text() == ""
    assert [r["error"] for r in read_rejects(tmp_path / "bad.jsonl")] == ["not_an_object"]


@pytest.mark.parametrize(
    "name",
    ["out", "out.jsonl", "out.ndjson", "out.NDJSON.gz", "out.jsonl.gz", "out.gz", "out.parquet"],
)
def test_the_default_reject_file_is_named_without_the_outputs_suffixes(
    tmp_path: Path, name: str
) -> None:
    (tmp_path / "in.jsonl").write_bytes(b"[]\n")
    assert run_cli("rescore", tmp_path / "in.jsonl", "-o", tmp_path / name) == 1
    assert [r["error"] for r in read_rejects(tmp_path / "out.rejects.jsonl")] == ["not_an_object"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["in.jsonl", name, "out.rejects.jsonl"]
    )


def test_batch_size_reaches_the_settings(tmp_path: Path) -> None:
    (tmp_path / "in.jsonl").write_bytes(b"".join(shuffled_posts(2)))
    seen: list[int] = []

    def load(settings: Settings) -> Scorer:
        seen.append(settings.batch_size)
        return LengthScorer()

    args = ["rescore", str(tmp_path / "in.jsonl"), "-o", str(tmp_path / "out.jsonl")]
    assert (
        main([*args, "--batch-size", "7", "--no-progress", "--workers", "1"], load_scorer=load) == 0
    )
    assert seen == [7]


@pytest.mark.parametrize(
    ("input_name", "output_name", "says"),
    [
        ("missing.jsonl", "out.jsonl", "missing.jsonl does not exist"),
        ("in.jsonl", "no/such/folder/out.jsonl", "folder {tmp}/no/such/folder does not exist"),
        ("in.jsonl", ".", "it is a folder"),
    ],
)
def test_unusable_files_exit_2_before_the_model_loads(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    input_name: str,
    output_name: str,
    says: str,
) -> None:
    (tmp_path / "in.jsonl").write_bytes(post_line("a", "x"))

    def load(settings: Settings) -> Scorer:
        raise AssertionError("the model should not load for a run that cannot start")

    args = ["rescore", str(tmp_path / input_name), "-o", str(tmp_path / output_name)]
    assert main(args, load_scorer=load) == 2
    err = capsys.readouterr().err
    assert err.startswith("qinglang rescore: error: ")
    assert says.format(tmp=tmp_path) in err


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["-o", "pipe"], "cannot write {tmp}/pipe: it is a named pipe, not a file"),
        # with no bad line the run would remove it (/dev/null, given so, would go)
        (
            ["-o", "out.jsonl", "--rejects", "pipe"],
            "cannot write {tmp}/pipe: it is a named pipe, not a file",
        ),
        (["-o", "out.jsonl", "--compare", "pipe"], "--compare {tmp}/pipe is a named pipe"),
    ],
)
def test_a_special_file_is_neither_written_nor_compared(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], says: str
) -> None:
    (tmp_path / "in.jsonl").write_bytes(post_line("a", "x"))
    os.mkfifo(tmp_path / "pipe")
    files = [arg if arg.startswith("-") else str(tmp_path / arg) for arg in args]
    argv = ["rescore", str(tmp_path / "in.jsonl"), *files]
    assert main([*argv, "--no-progress", "--workers", "1"], load_scorer=length_scorer) == 2
    assert says.format(tmp=tmp_path) in capsys.readouterr().err
    assert stat.S_ISFIFO((tmp_path / "pipe").stat().st_mode)
    assert not (tmp_path / "out.jsonl").exists()


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (os.mkfifo, "{tmp}/posts/b.jsonl in folder {tmp}/posts is a named pipe, not a file"),
        (
            partial(os.symlink, "gone.jsonl"),
            "{tmp}/posts/b.jsonl in folder {tmp}/posts is a link to gone.jsonl, which does not "
            "exist",
        ),
    ],
)
def test_a_folder_entry_named_as_posts_that_is_no_file_exits_2_before_the_model_loads(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    make: Callable[[Path], None],
    says: str,
) -> None:
    (tmp_path / "posts").mkdir()
    (tmp_path / "posts" / "a.jsonl").write_bytes(post_line("a", "x"))
    make(tmp_path / "posts" / "b.jsonl")

    def load(settings: Settings) -> Scorer:
        raise AssertionError("the model should not load for a run that cannot start")

    args = ["rescore", str(tmp_path / "posts"), "-o", str(tmp_path / "out.jsonl")]
    assert main(args, load_scorer=load) == 2
    err = capsys.readouterr().err
    assert err.startswith("qinglang rescore: error: ")
    assert says.format(tmp=tmp_path) in err
    assert not (tmp_path / "out.jsonl").exists()


def added(folder: Path) -> None:
    (folder / "b.jsonl").write_bytes(b"".join(shuffled_posts(2, prefix="b")))
    (folder / "notes.txt").write_text("where the posts came from")


def removed(folder: Path) -> None:
    (folder / "b.jsonl").unlink()


@pytest.mark.parametrize(
    ("change", "status", "ids", "says"),
    [
        # the posts of the files listed, and no word of a file that came after
        (added, 0, ["p0", "p1", "p2"], ""),
        (removed, 2, [], "qinglang rescore: error: cannot read {folder}/b.jsonl: No such file"),
    ],
)
def test_an_input_folder_is_walked_once_and_its_one_list_read(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    change: Callable[[Path], None],
    status: int,
    ids: list[str],
    says: str,
) -> None:
    """A file that came or went between the walks of the folder made them disagree: the
    checks and the warning of what is left out were of one list, the run of another (before,
    a file added after the first walk was scored, and one removed after it left out, without
    a word)."""
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.jsonl").write_bytes(b"".join(shuffled_posts(3)))
    if change is removed:
        (folder / "b.jsonl").write_bytes(b"".join(shuffled_posts(2, prefix="b")))
    walks: list[Path] = []
    search = sources._search

    def walked(path: Path) -> tuple[list[Path], list[str]]:
        found = search(path)
        walks.append(path)
        if len(walks) == 1:
            change(folder)
        return found

    monkeypatch.setattr(sources, "_search", walked)
    out = tmp_path / "out.jsonl"
    assert run_cli("rescore", folder, "-o", out, "--no-progress") == status
    err = capsys.readouterr().err
    assert says.format(folder=folder) in err
    assert "left out" not in err
    assert [r.id for r in read_records(out)] == ids if ids else not out.exists()
    assert walks == [folder]


def test_what_a_folder_holds_besides_posts_is_named_on_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    posts, elsewhere = tmp_path / "posts", tmp_path / "elsewhere"
    for folder in (posts / "sub", elsewhere):
        folder.mkdir(parents=True)
    (posts / "sub" / "a.jsonl").write_bytes(post_line("a", "x"))
    (elsewhere / "b.jsonl").write_bytes(post_line("b", "y"))
    (posts / "c.jsonl.zst").write_bytes(b"compressed posts")
    (posts / "notes.txt").write_text("where the posts came from")
    os.symlink(elsewhere, posts / "more")
    os.mkfifo(posts / "control")
    (posts / ".hidden").write_text("left out by name, as the run's work folder is")
    assert run_cli("rescore", posts, "-o", tmp_path / "out.jsonl", "--no-progress") == 0
    assert [r.id for r in read_records(tmp_path / "out.jsonl")] == ["a"]
    warnings = [
        line for line in capsys.readouterr().err.splitlines() if line.startswith("qinglang")
    ]
    assert warnings == [
        f"qinglang rescore: warning: folder {posts}: left out, not a .jsonl, .jsonl.gz or "
        ".parquet file: c.jsonl.zst, control (a named pipe), more (a link to a folder, not "
        "followed), notes.txt"
    ]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["in.jsonl", "-o", "in.jsonl"], "OUTPUT {tmp}/in.jsonl is an input file"),
        (
            ["in.jsonl", "-o", "out.jsonl", "--rejects", "in.jsonl"],
            "--rejects {tmp}/in.jsonl is an input file",
        ),
        (["posts", "-o", "posts/a.jsonl"], "OUTPUT {tmp}/posts/a.jsonl is an input file"),
        (
            ["in.jsonl", "-o", "out.jsonl", "--rejects", "out.jsonl"],
            "--rejects {tmp}/out.jsonl is OUTPUT itself",
        ),
        (
            ["posts", "-o", "posts/new.jsonl"],
            "OUTPUT {tmp}/posts/new.jsonl is inside the input folder {tmp}/posts",
        ),
        (
            ["in.jsonl", "-o", "out.jsonl", "--compare", "out.jsonl"],
            "--compare {tmp}/out.jsonl is OUTPUT itself, which this run replaces",
        ),
        (
            ["in.jsonl", "-o", "new.jsonl", "--compare", "in.jsonl"],
            "--compare {tmp}/in.jsonl: {tmp}/in.jsonl:1: not a score record",
        ),
    ],
)
def test_outputs_that_would_replace_or_feed_an_input_exit_2_and_touch_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], says: str
) -> None:
    (tmp_path / "posts").mkdir()
    files = {
        tmp_path / "in.jsonl": post_line("a", "x"),
        tmp_path / "posts" / "a.jsonl": post_line("b", "y"),
        tmp_path / "out.jsonl": b"an earlier output\n",
    }
    for path, content in files.items():
        path.write_bytes(content)

    def load(settings: Settings) -> Scorer:
        raise AssertionError("the model should not load for a run that cannot start")

    given = [str(tmp_path / a) if not a.startswith("-") else a for a in args]
    assert main(["rescore", *given], load_scorer=load) == 2
    assert says.format(tmp=tmp_path) in capsys.readouterr().err
    assert {p: p.read_bytes() for p in files} == files
    assert sorted(p.name for p in tmp_path.rglob("*")) == [
        "a.jsonl",
        "in.jsonl",
        "out.jsonl",
        "posts",
    ]


def test_a_previous_output_that_turns_out_bad_midway_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "in.jsonl").write_bytes(post_line("a", "x") + post_line("b", "y"))
    assert run_cli("rescore", tmp_path / "in.jsonl", "-o", tmp_path / "before.jsonl") == 0
    before = (tmp_path / "before.jsonl").read_bytes()
    (tmp_path / "before.jsonl").write_bytes(before + b'{"id": "c"}\n')
    args: list[str | Path] = ["-o", tmp_path / "after.jsonl"]
    assert (
        run_cli("rescore", tmp_path / "in.jsonl", *args, "--compare", tmp_path / "before.jsonl")
        == 2
    )
    err = capsys.readouterr().err
    assert f"cannot compare: {tmp_path}/before.jsonl:3: not a score record" in err


def test_a_model_that_fails_to_load_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "in.jsonl").write_bytes(post_line("a", "x"))

    def load(settings: Settings) -> Scorer:
        raise FileNotFoundError("model.onnx")

    args = ["rescore", str(tmp_path / "in.jsonl"), "-o", str(tmp_path / "out.jsonl")]
    assert main([*args, "--workers", "1"], load_scorer=load) == 2
    assert "cannot load the model: FileNotFoundError('model.onnx')" in capsys.readouterr().err
    assert not (tmp_path / "out.jsonl").exists()


def test_workers_that_cannot_load_the_model_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "in.jsonl").write_bytes(post_line("a", "x"))
    args = ["rescore", str(tmp_path / "in.jsonl"), "-o", str(tmp_path / "out.jsonl")]
    assert main([*args, "--workers", "2"], load_scorer=missing_model) == 2
    err = capsys.readouterr().err
    # the run's own process loads the pipeline for the ordered stage before any worker starts
    assert "cannot load the model: FileNotFoundError('model.onnx')" in err
    assert not (tmp_path / "out.jsonl").exists()


def test_selfcheck_prints_a_record_per_example(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli("selfcheck") == 0
    out, err = capsys.readouterr()
    printed = out.count('"model_version": "test-length"')
    assert printed == len(EXAMPLES) == 4
    assert "ok, model test-length" in err


def test_a_selfcheck_that_cannot_load_the_model_is_one_line_and_status_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # a traceback and status 1 before, which reads as a model that scored out of range
    assert main(["selfcheck"], load_scorer=missing_model) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("qinglang selfcheck: error: cannot load the model in ")
    assert line.endswith("(the model_dir setting): FileNotFoundError: model.onnx")


class OutOfRangeScorer(LengthScorer):
    def score_many(self, posts: Sequence[Post]) -> list[ScoreRecord]:
        records = super().score_many(posts)
        records[1].scores["incitement"] = 1.5
        return records


def test_selfcheck_fails_on_a_score_outside_0_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli("selfcheck", scorer=OutOfRangeScorer()) == 1
    assert "selfcheck-offensive: incitement = 1.5" in capsys.readouterr().err


def test_the_command_line_starts_without_the_heavy_modules() -> None:
    """``qinglang --help`` must answer at once, before pydantic, tqdm or the model load."""
    probe = "import sys, service.cli; print(sorted({'pydantic', 'tqdm'} & set(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", probe], check=False, capture_output=True, text=True
    )
    assert result.stdout.strip() == "[]", result.stderr


def test_a_second_run_on_the_same_output_is_refused_while_the_first_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "in.jsonl").write_bytes(post_line("a", "x"))
    output = tmp_path / "out.jsonl"
    with WorkFolder(output).held(default_reject_path(output)):
        assert run_cli("rescore", tmp_path / "in.jsonl", "-o", output) == 2
        assert f"another run (pid {os.getpid()}) is writing {output}" in capsys.readouterr().err
        assert not output.exists()
    assert run_cli("rescore", tmp_path / "in.jsonl", "-o", output) == 0
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # lock gone


def test_an_output_whose_lock_file_cannot_be_made_is_named_not_its_lock_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Where the run's lock file beside OUTPUT cannot be opened (as root on /sys, where the
    check that OUTPUT's folder is writable passes), the refusal says OUTPUT cannot be written;
    a bare OSError named only the hidden lock file."""
    (tmp_path / "in.jsonl").write_bytes(post_line("a", "x"))
    output = tmp_path / "out.jsonl"
    # a folder where the lock file goes: no user, root included, can open it as a file
    (tmp_path / ".out.jsonl.rescore.lock").mkdir()
    assert run_cli("rescore", tmp_path / "in.jsonl", "-o", output) == 2
    err = capsys.readouterr().err
    assert f"cannot write {output}: Is a directory (its lock file " in err, err
    assert not output.exists()


@pytest.mark.parametrize(
    ("output", "given_rejects"),
    [("out.parquet", None), ("other.jsonl", "out.rejects.jsonl")],
    ids=["default-rejects-of-another-output", "rejects-given"],
)
def test_a_second_run_that_writes_the_same_reject_file_is_refused_while_the_first_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], output: str, given_rejects: str | None
) -> None:
    """``out.jsonl`` and ``out.parquet`` keep their rejects in one ``out.rejects.jsonl``, which
    each run replaces or removes at its end: the hold covers it as it covers OUTPUT."""
    (tmp_path / "in.jsonl").write_bytes(post_line("a", "x") + b"not json\n")
    first, rejects = tmp_path / "out.jsonl", tmp_path / "out.rejects.jsonl"
    args: list[str | Path] = [tmp_path / "in.jsonl", "-o", tmp_path / output]
    if given_rejects is not None:
        args += ["--rejects", tmp_path / given_rejects]
    with WorkFolder(first).held(default_reject_path(first)):
        assert run_cli("rescore", *args) == 2
        assert f"another run (pid {os.getpid()}) is writing {rejects}" in capsys.readouterr().err
        assert not rejects.exists()
    assert run_cli("rescore", *args) == 1
    assert [r["error"] for r in read_rejects(rejects)] == ["malformed_json"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # locks gone


HOLD = """
import sys
from pathlib import Path
from service.batch.checkpoint import CheckpointError, WorkFolder
from service.batch.paths import default_reject_path

output = Path(sys.argv[1])
with WorkFolder(output).held(default_reject_path(output)):
    print("held", flush=True)
    sys.stdin.read()
"""


def test_a_refused_run_names_the_pid_of_the_run_that_holds_the_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "in.jsonl").write_bytes(post_line("a", "x"))
    output = tmp_path / "out.jsonl"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(output)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdin is not None and holder.stdout is not None
    try:
        assert holder.stdout.readline() == "held\n"
        assert run_cli("rescore", tmp_path / "in.jsonl", "-o", output) == 2
        err = capsys.readouterr().err
        assert f"another run (pid {holder.pid}) is writing {output}" in err
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    assert not output.exists()


def test_a_run_that_locked_the_lock_file_its_holder_removed_takes_the_hold_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between a run's open of the lock file and its flock, the holder ends (removing the file)
    and a third run locks a new file at the path: the run, whose flock of the removed file
    succeeds, must not write OUTPUT beside the third; it is refused by the third's lock."""
    output = tmp_path / "out.jsonl"
    holder, third = ExitStack(), ExitStack()
    holder.enter_context(WorkFolder(output).held(default_reject_path(output)))
    flock = fcntl.flock
    raced: list[int] = []

    def between_open_and_lock(fd: int, operation: int) -> None:
        if not raced:
            raced.append(fd)
            holder.close()
            third.enter_context(WorkFolder(output).held(default_reject_path(output)))
        flock(fd, operation)

    monkeypatch.setattr(fcntl, "flock", between_open_and_lock)
    refused = pytest.raises(CheckpointError, match=rf"another run \(pid {os.getpid()}\)")
    with third, refused, WorkFolder(output).held(default_reject_path(output)):
        pass
    assert raced


class InterruptingScorer(LengthScorer):
    """Ctrl-C while batch number ``at`` (the second by default) is scored."""

    def __init__(self, at: int = 2, *, batch_size: int = 64) -> None:
        super().__init__(batch_size=batch_size)
        self.at = at

    def ordered(self, posts: Sequence[Post], prepared: Sequence[ScoreRecord]) -> list[ScoreRecord]:
        if len(self.batch_sizes) == self.at:
            raise KeyboardInterrupt
        return super().ordered(posts, prepared)


def test_an_interrupted_run_says_how_to_continue_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "in.jsonl").write_bytes(b"".join(shuffled_posts(12)))
    args: list[str | Path] = ["rescore", tmp_path / "in.jsonl", "-o", tmp_path / "out.jsonl"]
    args += ["--chunk-size", "4", "--checkpoint-every", "4"]
    assert run_cli(*args, scorer=InterruptingScorer()) == 2
    err = capsys.readouterr().err
    assert "qinglang rescore: error: interrupted; the checkpoint in" in err
    assert "run the same command again to continue after 4 of 12 posts" in err
    assert run_cli(*args) == 0
    assert "resumed" in capsys.readouterr().err


@contextmanager
def stderr_unread() -> Iterator[None]:
    """stderr a pipe whose reader is gone, as after ``2>&1 | head -1`` or a ``| tee`` that the
    same Ctrl-C stopped: every write to it fails (EPIPE). Set in the test itself: pytest sets
    its own capture again between a fixture and the test."""
    read, write = os.pipe()
    os.close(read)
    with (
        open(write, "w", encoding="utf-8", buffering=1) as stream,
        pytest.MonkeyPatch.context() as patch,
    ):
        patch.setattr(sys, "stderr", stream)
        yield


def test_a_run_whose_stderr_reader_is_gone_goes_on_and_exits_as_it_ended(tmp_path: Path) -> None:
    lines = shuffled_posts(12)
    lines[5] = b'{"id": "cut", "text": \n'
    (tmp_path / "in.jsonl").write_bytes(b"".join(lines))
    args: list[str | Path] = ["rescore", tmp_path / "in.jsonl", "-o", tmp_path / "out.jsonl"]
    with stderr_unread():
        assert run_cli(*args, "--chunk-size", "4", "--progress-every", "1") == 1
    good = posts_of(lines[:5] + lines[6:])
    assert read_records(tmp_path / "out.jsonl") == [expected_record(p) for p in good]
    assert [r["line"] for r in read_rejects(tmp_path / "out.rejects.jsonl")] == [6]


def test_a_run_stopped_while_its_stderr_reader_is_gone_exits_2_and_continues_later(
    tmp_path: Path,
) -> None:
    (tmp_path / "in.jsonl").write_bytes(b"".join(shuffled_posts(12)))
    args: list[str | Path] = ["rescore", tmp_path / "in.jsonl", "-o", tmp_path / "out.jsonl"]
    args += ["--chunk-size", "4", "--checkpoint-every", "4"]
    with stderr_unread():
        assert run_cli(*args, scorer=InterruptingScorer()) == 2
    assert not (tmp_path / "out.jsonl").exists()
    assert run_cli(*args) == 0
    assert read_records(tmp_path / "out.jsonl") == [
        expected_record(p) for p in posts_of(shuffled_posts(12))
    ]


@pytest.mark.parametrize(
    ("step", "options", "scored"),
    [
        ("service.batch.stored.export", ["--from-db"], False),
        ("service.batch.diff.diff", ["{input}", "--compare", "{before}"], True),
        ("service.batch.diff.enqueue", ["{input}", "--compare", "{before}", "--enqueue"], True),
    ],
)
def test_an_interruption_outside_the_scoring_is_one_line_and_status_2(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    step: str,
    options: list[str],
    scored: bool,
) -> None:
    (tmp_path / "in.jsonl").write_bytes(b"".join(shuffled_posts(3)))
    assert run_cli("rescore", tmp_path / "in.jsonl", "-o", tmp_path / "before.jsonl") == 0
    capsys.readouterr()

    def interrupted(*args: object) -> NoReturn:
        raise KeyboardInterrupt  # Ctrl-C, or SIGTERM, while the step runs

    monkeypatch.setattr(step, interrupted)
    paths = {"input": tmp_path / "in.jsonl", "before": tmp_path / "before.jsonl"}
    given = [option.format(**paths) for option in options]
    assert run_cli("rescore", *given, "-o", tmp_path / "out.jsonl") == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    # after the scoring, the same command compares and enqueues without scoring again
    again = (
        f"; every post is scored into {tmp_path}/out.jsonl and the checkpoint in "
        f"{tmp_path}/.out.jsonl.rescore kept: run the same command again to finish without "
        "scoring again"
    )
    assert err.splitlines()[-1] == "qinglang rescore: error: interrupted" + again * scored


def test_a_command_run_off_the_main_thread_keeps_the_process_s_sigterm_handler(
    tmp_path: Path,
) -> None:
    # Python sets signal handlers only on the main thread
    (tmp_path / "in.jsonl").write_bytes(b"".join(shuffled_posts(3)))
    args: list[str | Path] = ["rescore", tmp_path / "in.jsonl", "-o", tmp_path / "out.jsonl"]
    with ThreadPoolExecutor(1) as pool:
        assert pool.submit(run_cli, *args).result() == 0


def test_an_interrupted_gzip_run_continues_at_the_task_it_stopped_at(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = shuffled_posts(12)
    lines[9] = b"this line is not JSON\n"
    source, output = tmp_path / "in.jsonl.gz", tmp_path / "out.jsonl"
    source.write_bytes(gzip.compress(b"".join(lines)))
    args: list[str | Path] = ["rescore", source, "-o", output, "--skip-bad"]
    args += ["--chunk-size", "4", "--checkpoint-every", "4"]
    assert run_cli(*args, scorer=InterruptingScorer()) == 2
    assert "run the same command again to continue after 4 of 12 posts" in capsys.readouterr().err
    again = LengthScorer()
    assert run_cli(*args, scorer=again) == 0
    # the first task was committed: the continued run reads on from the second
    assert again.batch_sizes == [4, 3]
    good = [line for i, line in enumerate(lines) if i != 9]
    assert read_records(output) == [expected_record(p) for p in posts_of(good)]
    assert [r["line"] for r in read_rejects(tmp_path / "out.rejects.jsonl")] == [10]
    err = capsys.readouterr().err
    assert f"{source}:10: error: malformed_json" in err
    assert "resumed        after 4 posts" in err


def test_a_cut_off_gzip_file_is_reported_with_how_far_it_got_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    packed = gzip.compress(b"".join(shuffled_posts(2000)))
    source = tmp_path / "in.jsonl.gz"
    source.write_bytes(packed[: len(packed) // 2])
    assert run_cli("rescore", source, "-o", tmp_path / "out.jsonl") == 1
    err = capsys.readouterr().err
    whole = len(read_records(tmp_path / "out.jsonl"))
    assert (
        f"{source}:{whole + 1}: error: unreadable: the gzip stream breaks off after "
        f"{whole:,} whole lines ("
    ) in err
    assert "failed         1 (unreadable 1)" in err
    assert "Traceback" not in err


def test_an_interrupted_run_names_the_posts_committed_not_those_read_since(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "in.jsonl").write_bytes(b"".join(shuffled_posts(12)))
    args: list[str | Path] = ["rescore", tmp_path / "in.jsonl", "-o", tmp_path / "out.jsonl"]
    # a segment a task: 4 posts are committed after the second, 6 read when the fourth stops
    args += ["--chunk-size", "2", "--segment-posts", "2", "--checkpoint-every", "4"]
    assert run_cli(*args, scorer=InterruptingScorer(at=4)) == 2
    assert "run the same command again to continue after 4 of 12 posts" in capsys.readouterr().err
    assert run_cli(*args) == 0
    assert "resumed        after 4 posts" in capsys.readouterr().err


def test_a_stopped_run_counts_the_posts_to_continue_after_as_its_progress_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The progress counts the input's lines, blank ones too; the error counted the non-blank
    ones: "9 of 15 posts (stopped)", then "continue after 4 posts", where the next run's
    progress began at 6."""
    posts = shuffled_posts(12)
    (tmp_path / "in.jsonl").write_bytes(b"".join([b"\n", *posts[:4], b"\n", b"\n", *posts[4:]]))
    args: list[str | Path] = ["rescore", tmp_path / "in.jsonl", "-o", tmp_path / "out.jsonl"]
    args += ["--chunk-size", "3", "--segment-posts", "3", "--checkpoint-every", "4"]
    args += ["--progress-every", "3600"]
    assert run_cli(*args, scorer=InterruptingScorer(at=4)) == 2
    err = capsys.readouterr().err.splitlines()
    # two tasks committed (6 lines, 2 of them blank), a third scored since
    assert err[-2].startswith("qinglang rescore: 9 of 15 posts (60%), ")
    assert err[-2].endswith(" (stopped)")
    assert err[-1].endswith("run the same command again to continue after 6 of 15 posts")
    assert run_cli(*args) == 0
    # where its progress starts
    assert "  resumed        after 6 posts of an earlier run" in capsys.readouterr().err


def damaged_parquet_output(path: Path, good: int) -> None:
    """An output whose first ``good`` records read, and the record after them not (a row group
    of its own, whose id column is overwritten)."""
    posts = posts_of(shuffled_posts(good + 1))
    writer = RecordWriter(path, parquet=True)
    writer.write([expected_record(post) for post in posts[:good]])
    writer.write([expected_record(posts[good])])
    writer.close()
    ids = pq.ParquetFile(path).metadata.row_group(1).column(0)
    data = bytearray(path.read_bytes())
    start, size = ids.data_page_offset, ids.total_compressed_size
    data[start + 4 : start + size] = b"\xff" * (size - 4)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("damage", "says"),
    [
        # the run checks the first records before it starts, and compares the rest after it
        ("not parquet", "--compare {previous}: {previous}: cannot be read as Parquet ("),
        ("first records", "--compare {previous}: {previous}: cannot be read as Parquet ("),
        ("later records", "cannot compare: {previous}: cannot be read as Parquet ("),
    ],
)
def test_a_previous_parquet_output_that_cannot_be_read_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], damage: str, says: str
) -> None:
    (tmp_path / "in.jsonl").write_bytes(post_line("a", "x"))
    previous = tmp_path / "before.parquet"
    if damage == "not parquet":
        previous.write_bytes(b"PAR1 this is not really parquet")
    else:
        # records are read 4,096 at a time: the check reads the first batch
        damaged_parquet_output(previous, 2 if damage == "first records" else 5000)
    args: list[str | Path] = ["rescore", tmp_path / "in.jsonl", "-o", tmp_path / "after.jsonl"]
    assert run_cli(*args, "--compare", previous) == 2
    # one line after the summary of the run, if it ran
    last = capsys.readouterr().err.splitlines()[-1]
    assert last.startswith(f"qinglang rescore: error: {says.format(previous=previous)}")
    # once it ran, the same command compares without scoring again
    assert last.endswith("run the same command again to finish without scoring again") == (
        damage == "later records"
    )


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("prev.jsonl", "the reject file, which this run replaces or removes"),
        ("new.jsonl.changes.jsonl", "the changes file, which the comparison writes"),
        ("new.jsonl.diff.json", "the report, which the comparison writes"),
    ],
)
def test_a_previous_output_that_the_run_writes_or_removes_exits_2_and_is_kept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, says: str
) -> None:
    (tmp_path / "in.jsonl").write_bytes(b"".join(shuffled_posts(3)))
    # made under another name: a run refuses OUTPUT ending in .json, the report's suffix
    previous = tmp_path / name
    assert run_cli("rescore", tmp_path / "in.jsonl", "-o", tmp_path / "made.jsonl") == 0
    (tmp_path / "made.jsonl").rename(previous)
    before = previous.read_bytes()
    args: list[str | Path] = ["rescore", tmp_path / "in.jsonl", "-o", tmp_path / "new.jsonl"]
    args += ["--rejects", tmp_path / "prev.jsonl", "--compare", previous]
    assert run_cli(*args) == 2
    assert f"error: --compare {previous} is {says}: compare with a copy" in (
        capsys.readouterr().err
    )
    assert previous.read_bytes() == before
    assert not (tmp_path / "new.jsonl").exists()


def test_a_previous_output_that_is_a_folder_exits_2_before_the_model_loads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "in.jsonl").write_bytes(post_line("a", "x"))
    (tmp_path / "before").mkdir()

    def load(settings: Settings) -> Scorer:
        raise AssertionError("the model should not load for a run that cannot start")

    args = ["rescore", str(tmp_path / "in.jsonl"), "-o", str(tmp_path / "after.jsonl")]
    assert main([*args, "--compare", str(tmp_path / "before")], load_scorer=load) == 2
    err = capsys.readouterr().err
    assert err == (
        f"qinglang rescore: error: --compare {tmp_path}/before is a folder, not a file: give "
        "the OUTPUT file of the earlier run\n"
    )


def test_a_checkpoint_is_not_continued_with_another_batch_size(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "in.jsonl").write_bytes(b"".join(shuffled_posts(12)))
    args = ["rescore", str(tmp_path / "in.jsonl"), "-o", str(tmp_path / "out.jsonl")]
    args += ["--chunk-size", "4", "--checkpoint-every", "4", "--workers", "1", "--no-progress"]

    def interrupted(settings: Settings) -> Scorer:
        return InterruptingScorer(batch_size=settings.batch_size)

    assert main([*args, "--batch-size", "4"], load_scorer=interrupted) == 2
    capsys.readouterr()
    # int8 activations are quantised per batch: another batch size would mix scores
    assert main([*args, "--batch-size", "3"], load_scorer=length_scorer) == 2
    err = capsys.readouterr().err
    assert "holds the checkpoint of a run with other arguments" in err
    assert "(--batch-size or the batch_size setting: 4 there, 3 here)" in err
    assert not (tmp_path / "out.jsonl").exists()
    assert main([*args, "--batch-size", "4"], load_scorer=length_scorer) == 0
    assert "resumed        after 4 posts" in capsys.readouterr().err


class EditedPolicyScorer(LengthScorer):
    """The stand-in under a policy file edited without a new version."""

    policy_digest = "sha256:edited-policy"


class CopiedModelScorer(LengthScorer):
    """The stand-in with another model file under the same ``card.json``."""

    def __init__(self) -> None:
        super().__init__()
        self.classifier = StandInModel(self.classifier.batch_size, "sha256:copied-model")


@pytest.mark.parametrize(
    ("changed", "named"),
    [
        (
            EditedPolicyScorer,
            "the policy file's values: 'sha256:test-policy' there, 'sha256:edited-policy' here",
        ),
        (
            CopiedModelScorer,
            "the model file (model.onnx): 'sha256:test-model' there, 'sha256:copied-model' here",
        ),
    ],
    ids=["policy", "model"],
)
def test_a_checkpoint_is_not_continued_with_other_values_under_the_same_version(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], changed: type[LengthScorer], named: str
) -> None:
    (tmp_path / "in.jsonl").write_bytes(b"".join(shuffled_posts(12)))
    args: list[str | Path] = ["rescore", tmp_path / "in.jsonl", "-o", tmp_path / "out.jsonl"]
    args += ["--chunk-size", "4", "--checkpoint-every", "4"]
    assert run_cli(*args, scorer=InterruptingScorer()) == 2
    capsys.readouterr()
    # the versions are the same: the records would mix two policies (or models) under one
    assert run_cli(*args, scorer=changed()) == 2
    err = capsys.readouterr().err
    assert "holds the checkpoint of a run with other arguments" in err
    assert f"({named})" in err
    assert not (tmp_path / "out.jsonl").exists()
    assert run_cli(*args) == 0
    assert "resumed        after 4 posts" in capsys.readouterr().err


def duplicated_posts() -> list[bytes]:
    """14 posts, four of which repeat an id: the 3rd (of its own task of 4 lines), the 7th and
    8th (ids of the first task, committed before a continued run reads them) and the 13th (of
    the task before)."""
    lines = shuffled_posts(14)
    for line, first in ((3, 1), (7, 2), (8, 1), (13, 11)):
        lines[line - 1] = post_line(f"p{first - 1}", f"第{line}行，与第{first}行同一 id")
    return lines


def test_duplicate_ids_are_all_scored_counted_and_the_first_repeats_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = duplicated_posts()
    summary = rescore_lines(tmp_path, lines, InlineEngine(LengthScorer()), chunk_size=4)
    # nothing dropped or reordered
    assert read_records(tmp_path / "out.jsonl") == [expected_record(p) for p in posts_of(lines)]
    assert summary.duplicates == 4
    assert "duplicate ids  4 posts repeat the id of a post before them" in summary.render()
    warned = [line for line in capsys.readouterr().err.splitlines() if "duplicate id" in line]
    source = tmp_path / "in.jsonl"
    assert warned == [
        f"{source}:3: warning: duplicate id 'p0': a post before it has the same id (both "
        "are scored)",
        f"{source}:7: warning: duplicate id 'p1': a post before it has the same id (both "
        "are scored)",
        f"{source}:8: warning: duplicate id 'p0': a post before it has the same id (both "
        "are scored)",
        f"{source}:13: warning: duplicate id 'p10': a post before it has the same id (both "
        "are scored)",
    ]


def test_duplicate_ids_are_named_for_the_first_few_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = [post_line("same", "字" * (i + 1)) for i in range(15)]
    summary = rescore_lines(tmp_path, lines, InlineEngine(LengthScorer()), chunk_size=4)
    assert summary.duplicates == 14
    err = capsys.readouterr().err
    warned = [line for line in err.splitlines() if ": warning: duplicate id" in line]
    named = [int(line.split(":")[1]) for line in warned]
    assert named == list(range(2, 12))
    assert "(further 'duplicate id' warnings are counted in the summary)" in err


@pytest.mark.parametrize("output_name", ["out.jsonl", "out.parquet"])
def test_a_continued_run_counts_the_duplicates_of_ids_committed_before(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], output_name: str
) -> None:
    (tmp_path / "in.jsonl").write_bytes(b"".join(duplicated_posts()))
    args: list[str | Path] = ["rescore", tmp_path / "in.jsonl", "-o", tmp_path / output_name]
    args += ["--chunk-size", "4", "--checkpoint-every", "4"]
    assert run_cli(*args, scorer=InterruptingScorer()) == 2
    assert "continue after 4 of 14 posts" in capsys.readouterr().err
    assert run_cli(*args) == 0
    err = capsys.readouterr().err
    assert "duplicate ids  4 posts repeat the id of a post before them" in err
    # the first task's repeat was named by the first run; the rest by this one
    assert [line.split(": warning")[0] for line in err.splitlines() if "duplicate id " in line] == [
        f"{tmp_path}/in.jsonl:{n}" for n in (7, 8, 13)
    ]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        # Path("") is the current folder, which a script with an unset variable would re-score
        (["", "-o", "out.jsonl"], "argument INPUT: the path is empty"),
        (["in.jsonl", "-o", ""], "argument -o/--output: the path is empty"),
        (["in.jsonl", "-o", "out.jsonl", "--rejects", ""], "argument --rejects: the path is empty"),
        (["in.jsonl", "-o", "out.jsonl", "--compare", ""], "argument --compare: the path is empty"),
        # "." and "/" have no name to derive the reject file's from
        (["in.jsonl", "-o", "."], "cannot write .: it is a folder"),
        (["in.jsonl", "-o", "/"], "cannot write /: it is a folder"),
        (
            ["in.jsonl", "-o", "out.jsonl", "--chunk-size", "1.5"],
            "argument --chunk-size: '1.5' is not a whole number",
        ),
        (
            ["in.jsonl", "-o", "out.jsonl", "--batch-size", "-1"],
            "argument --batch-size: must be at least 1, not -1",
        ),
        # the format follows OUTPUT's suffix: these would be JSONL under another format's name
        *(
            (
                ["in.jsonl", "-o", name],
                f"OUTPUT {name}: {suffix} is not a format rescore writes; "
                "end the name in one of .jsonl, .ndjson, .jsonl.gz, .ndjson.gz, .parquet",
            )
            for name, suffix in [
                ("out.csv", ".csv"),
                ("out.tsv", ".tsv"),
                ("out.json", ".json"),
                ("out.xlsx", ".xlsx"),
                ("out.txt", ".txt"),
                ("OUT.CSV.GZ", ".csv"),
                ("out.parquet.gz", ".parquet"),
            ]
        ),
        # before the stored posts are read
        (["--from-db", "-o", "nov.csv"], "OUTPUT nov.csv: .csv is not a format rescore writes"),
        # the input is read in parts, by several processes, and again to continue a run
        (["-", "-o", "out.jsonl"], "INPUT - (standard input) cannot be read"),
        (["in.jsonl", "-o", "-"], "OUTPUT - (standard output) cannot be written"),
        # the reject file is plain JSONL, whatever its name says
        *(
            (
                ["in.jsonl", "-o", "out.jsonl", "--rejects", name],
                f"--rejects {name}: {suffix} is not a format rescore writes; "
                "end the name in one of .jsonl, .ndjson",
            )
            for name, suffix in [
                ("bad.csv", ".csv"),
                ("bad.parquet", ".parquet"),
                ("bad.jsonl.gz", ".gz"),
                ("bad.gz", ".gz"),
            ]
        ),
        (
            ["in.jsonl", "-o", "out.jsonl", "--rejects", "-"],
            "--rejects - (standard output) cannot be written",
        ),
        # the local engine would run without the cluster
        (
            ["in.jsonl", "-o", "out.jsonl", "--ray-address", "auto"],
            "--ray-address needs --engine ray",
        ),
        (
            ["in.jsonl", "-o", "out.jsonl", "--engine", "local", "--ray-address", "auto"],
            "--ray-address needs --engine ray",
        ),
        (
            ["in.jsonl", "-o", "out.jsonl", "--engine", "ray", "--ray-address", "nowhere"],
            "--ray-address nowhere is not HOST:PORT, auto or local",
        ),
    ],
)
def test_odd_paths_and_numbers_exit_2_saying_which_before_the_model_loads(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    says: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in.jsonl").write_bytes(post_line("a", "x"))

    def load(settings: Settings) -> Scorer:
        raise AssertionError("the model should not load for a run that cannot start")

    try:
        status: int | str | None = main(["rescore", *args], load_scorer=load)
    except SystemExit as exc:  # argparse's usage errors
        status = exc.code
    assert status == 2
    assert f"qinglang rescore: error: {says}" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]


@pytest.mark.parametrize("name", ["posts.jsonl", "63"])
def test_an_input_that_is_a_pipe_exits_2_before_the_model_loads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    # a named pipe, or bash's <(...) (/dev/fd/63): read whole to cut it, then opened again for
    # the first task, which waited for ever for a writer
    pipe = tmp_path / name
    os.mkfifo(pipe)

    def load(settings: Settings) -> Scorer:
        raise AssertionError("the model should not load for a run that cannot start")

    assert main(["rescore", str(pipe), "-o", str(tmp_path / "out.jsonl")], load_scorer=load) == 2
    assert (
        f"qinglang rescore: error: input {pipe} is a named pipe, not a file: a run reads its "
        "input in parts"
    ) in capsys.readouterr().err


@pytest.mark.parametrize(("name", "zipped"), [("records", False), ("records.gz", True)])
def test_an_output_name_without_a_suffix_is_jsonl(tmp_path: Path, name: str, zipped: bool) -> None:
    lines = shuffled_posts(3)
    (tmp_path / "in.jsonl").write_bytes(b"".join(lines))
    assert run_cli("rescore", tmp_path / "in.jsonl", "-o", tmp_path / name) == 0
    data = (tmp_path / name).read_bytes()
    assert data.startswith(b"\x1f\x8b") == zipped
    text = gzip.decompress(data) if zipped else data
    records = [ScoreRecord.model_validate_json(line) for line in text.splitlines()]
    assert records == [expected_record(p) for p in posts_of(lines)]


@pytest.mark.parametrize("given", ["--ray-address", "RAY_ADDRESS"])
def test_a_ray_cluster_that_cannot_be_reached_exits_2_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], given: str
) -> None:
    (tmp_path / "in.jsonl").write_bytes(post_line("a", "x"))

    def load(settings: Settings) -> Scorer:
        raise AssertionError("the model should not load for a run that cannot start")

    with socket.socket() as bound:
        # bound but not listening: a connection to it is refused
        bound.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{bound.getsockname()[1]}"
        args = ["rescore", str(tmp_path / "in.jsonl"), "-o", str(tmp_path / "out.jsonl")]
        args += ["--engine", "ray"]
        if given == "RAY_ADDRESS":
            # Ray's own variable: joined as the option's address is, not with the local
            # start's num_cpus (which ray.init refuses for a cluster, a traceback)
            monkeypatch.setenv("RAY_ADDRESS", address)
        else:
            args += ["--ray-address", address]
        started = time.monotonic()
        assert main(args, load_scorer=load) == 2
    assert time.monotonic() - started < CONNECT_TIMEOUT_S
    assert capsys.readouterr().err == (
        f"qinglang rescore: error: cannot reach the Ray cluster at {address} ({given}): "
        "Connection refused\n"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]


@pytest.mark.parametrize("given", ["--ray-address", "RAY_ADDRESS"])
@pytest.mark.parametrize("recorded", [False, True])
def test_ray_address_auto_without_a_cluster_exits_2_before_the_model_loads(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    given: str,
    recorded: bool,
) -> None:
    (tmp_path / "in.jsonl").write_bytes(post_line("a", "x"))
    # where `auto` looks: the cluster `ray start` recorded in Ray's temp folder (under TMPDIR),
    # else any raylet running on this host, which may be another run's and is not this test's
    ray_tmp = tmp_path / "tmp"
    (ray_tmp / "ray").mkdir(parents=True)
    monkeypatch.setenv("TMPDIR", str(ray_tmp))
    monkeypatch.delenv("RAY_TMPDIR", raising=False)
    monkeypatch.setattr("ray._private.services.find_gcs_addresses", frozenset)

    def load(settings: Settings) -> Scorer:
        raise AssertionError("the model should not load for a run that cannot start")

    args = ["rescore", str(tmp_path / "in.jsonl"), "-o", str(tmp_path / "out.jsonl")]
    args += ["--engine", "ray"]
    if given == "RAY_ADDRESS":
        monkeypatch.setenv("RAY_ADDRESS", "auto")
    else:
        monkeypatch.delenv("RAY_ADDRESS", raising=False)
        args += ["--ray-address", "auto"]
    with socket.socket() as bound:
        # a cluster that stopped without `ray stop`: its address stays recorded, refused
        bound.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{bound.getsockname()[1]}"
        if recorded:
            (ray_tmp / "ray" / "ray_current_cluster").write_text(address)
        assert main(args, load_scorer=load) == 2
    assert capsys.readouterr().err == (
        f"qinglang rescore: error: cannot reach the Ray cluster at {address} ({given} auto): "
        "Connection refused\n"
        if recorded
        else f"qinglang rescore: error: no running Ray cluster found for {given} auto: start "
        "one with `ray start --head` or give its address\n"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "tmp"]


def test_a_ray_client_address_without_ray_client_is_one_line_before_the_model_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "in.jsonl").write_bytes(post_line("a", "x"))
    # ray[client] is not installed: without its grpc, ray.init raised a ValueError, a traceback
    monkeypatch.setitem(sys.modules, "grpc", None)

    def load(settings: Settings) -> Scorer:
        raise AssertionError("the model should not load for a run that cannot start")

    args = ["rescore", str(tmp_path / "in.jsonl"), "-o", str(tmp_path / "out.jsonl")]
    address = "ray://127.0.0.1:10001"
    assert main([*args, "--engine", "ray", "--ray-address", address], load_scorer=load) == 2
    assert capsys.readouterr().err == (
        f"qinglang rescore: error: --ray-address {address} needs Ray Client, which is not "
        f"installed: pip install 'ray[client]=={version('ray')}'\n"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]


def test_a_ray_address_that_accepts_connections_is_left_to_ray() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        address = f"127.0.0.1:{server.getsockname()[1]}"
        engine = RayEngine(length_scorer, Settings(), 1, address)
    assert engine.name == f"ray, 1 actors on {address}"
