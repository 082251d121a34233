"""``--engine local``: worker processes, results in input order, a post that crashes a worker;
every engine killed with SIGKILL and started again; a disk that fills up."""

from __future__ import annotations

import contextlib
import errno
import gzip
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from batchkit import (
    BREAK_ORDERED,
    DIE,
    RAISE,
    SLOW_LOAD_S_ENV,
    SLOW_S_ENV,
    LengthScorer,
    expected_record,
    length_scorer,
    post_line,
    posts_of,
    read_records,
    read_rejects,
    real_posts,
    rescore_lines,
    shuffled_posts,
)

from service.batch import RescoreError, checkpoint
from service.batch.checkpoint import CheckpointError, State, WorkFolder
from service.batch.local import LocalEngine
from service.batch.segments import Segment, SegmentResult
from service.pipeline import Pipeline
from service.rescore import InlineEngine, batch_settings, rescore
from service.settings import Settings
from service.storage.repository import StoredRumor

BATCHKIT = Path(__file__).resolve().parent / "batchkit.py"


def test_workers_give_the_single_process_output_in_input_order(tmp_path: Path) -> None:
    lines = shuffled_posts(103)
    engine = LocalEngine(length_scorer, Settings(), workers=2)
    summary = rescore_lines(tmp_path, lines, engine, chunk_size=5, checkpoint_posts=20)
    assert read_records(tmp_path / "out.jsonl") == [expected_record(p) for p in posts_of(lines)]
    assert summary.scored == 103
    assert summary.engine == "local, 2 workers"


def test_workers_read_a_gzip_file_as_the_file_uncompressed(tmp_path: Path) -> None:
    lines = shuffled_posts(103)
    source = tmp_path / "in.jsonl.gz"
    source.write_bytes(gzip.compress(b"".join(lines)))
    engine = LocalEngine(length_scorer, Settings(), workers=2)
    # one task a segment: every segment after the first warms up, reading the tasks before it
    # backwards, in a worker that read others before
    summary = rescore(
        source, tmp_path / "out.jsonl", engine, chunk_size=5, segment_posts=5, progress=False
    )
    assert read_records(tmp_path / "out.jsonl") == [expected_record(p) for p in posts_of(lines)]
    assert summary.segments == 21


def test_a_post_that_raises_or_kills_its_worker_is_rejected_and_the_run_goes_on(
    tmp_path: Path,
) -> None:
    lines = shuffled_posts(30)
    lines[4] = post_line("raises", f"这条 {RAISE}")
    lines[17] = post_line("kills", f"这条 {DIE}")
    engine = LocalEngine(length_scorer, Settings(), workers=2)
    summary = rescore_lines(tmp_path, lines, engine, chunk_size=4)
    good = [line for i, line in enumerate(lines) if i not in (4, 17)]
    assert read_records(tmp_path / "out.jsonl") == [expected_record(p) for p in posts_of(good)]
    rejects = read_rejects(tmp_path / "out.rejects.jsonl")
    assert [(r["line"], r["id"], r["error"]) for r in rejects] == [
        (5, "raises", "scorer_error"),
        (18, "kills", "scorer_error"),
    ]
    assert "worker process died" in str(rejects[1]["message"])
    assert summary.failed == {"scorer_error": 2}


def cli(*args: str | Path, slow_s: float = 0.0, slow_load_s: float = 0.0) -> subprocess.Popen[str]:
    """``qinglang rescore`` with the stand-in scorer, as a process group of its own."""
    # PYTHONPATH: Ray's actors unpickle the stand-in scorer from this folder; the one given
    # stays after it, so that the code under test is the one this test run imports
    path = os.pathsep.join(filter(None, [str(BATCHKIT.parent), os.environ.get("PYTHONPATH")]))
    env = {
        **os.environ,
        SLOW_S_ENV: str(slow_s),
        SLOW_LOAD_S_ENV: str(slow_load_s),
        "PYTHONPATH": path,
    }
    command = [sys.executable, str(BATCHKIT), "rescore", "--no-progress", *map(str, args)]
    return subprocess.Popen(
        command, env=env, stderr=subprocess.PIPE, text=True, start_new_session=True
    )


def manifest(output: Path) -> dict[str, object] | None:
    try:
        data: dict[str, object] = json.loads(
            (output.parent / f".{output.name}.rescore" / "manifest.json").read_text()
        )
    except (OSError, ValueError):
        return None
    return data


@pytest.mark.parametrize(
    ("engine", "name"),
    [
        (["--workers", "1"], "in.jsonl"),
        (["--workers", "2"], "in.jsonl"),
        # gzip cannot seek: the continued run's workers decompress up to their tasks
        (["--workers", "2"], "in.jsonl.gz"),
        (["--engine", "ray", "--workers", "2"], "in.jsonl"),
    ],
    ids=["one-process", "local", "local-gzip", "ray"],
)
def test_killed_with_sigkill_and_started_again_every_post_is_written_once(
    tmp_path: Path, engine: list[str], name: str
) -> None:
    lines = shuffled_posts(400)
    lines[123] = b"this line is not JSON\n"
    source, output = tmp_path / name, tmp_path / "out.parquet"
    data = b"".join(lines)
    source.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    args: list[str | Path] = [source, "-o", output, *engine, "--chunk-size", "7"]
    args += ["--checkpoint-every", "20"]

    run = cli(*args, slow_s=0.05)
    deadline = time.monotonic() + 120
    while (state := manifest(output)) is None or int(str(state["tasks_done"])) < 12:
        assert run.poll() is None, run.communicate()[1]
        assert time.monotonic() < deadline, "the run never checkpointed"
        time.sleep(0.05)
    os.killpg(run.pid, signal.SIGKILL)
    run.communicate()
    assert not output.exists()

    again = cli(*args)
    _, err = again.communicate(timeout=300)
    assert again.returncode == 1, err  # one line was rejected
    good = [line for i, line in enumerate(lines) if i != 123]
    written = list(read_records_any(output))
    assert written == [expected_record(p) for p in posts_of(good)]
    assert [r["line"] for r in read_rejects(tmp_path / "out.rejects.jsonl")] == [124]
    assert "resumed        after " in err
    assert "posts read     400 " in err
    assert not (tmp_path / ".out.parquet.rescore").exists()


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid``."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # the command name, in parentheses, may hold spaces: the fields after it are fixed
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def test_workers_end_when_their_parent_is_killed(tmp_path: Path) -> None:
    source, output = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    source.write_bytes(b"".join(shuffled_posts(400)))
    args: list[str | Path] = [source, "-o", output, "--workers", "2", "--chunk-size", "7"]
    args += ["--checkpoint-every", "20"]
    run = cli(*args, slow_s=0.05)
    try:
        deadline = time.monotonic() + 120
        while (state := manifest(output)) is None or int(str(state["tasks_done"])) < 4:
            assert run.poll() is None, run.communicate()[1]
            assert time.monotonic() < deadline, "the run never checkpointed"
            time.sleep(0.05)
        workers = children(run.pid)
        assert len(workers) >= 2  # the two workers (and the resource tracker)
        os.kill(run.pid, signal.SIGKILL)  # the parent alone, as the out-of-memory killer does
        run.wait()  # not its stderr: orphaned workers would hold that open
        deadline = time.monotonic() + 20
        while any(alive(w) for w in workers):
            assert time.monotonic() < deadline, "workers outlived their parent"
            time.sleep(0.1)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(run.pid, signal.SIGKILL)
        assert run.stderr is not None
        run.stderr.close()


def test_sigterm_stops_the_run_as_ctrl_c_does_without_waiting_for_the_segments(
    tmp_path: Path,
) -> None:
    lines = shuffled_posts(400)
    source, output = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    source.write_bytes(b"".join(lines))
    args: list[str | Path] = [source, "-o", output, "--workers", "2", "--chunk-size", "7"]
    # each model call takes ten minutes: the run ends only if its workers stop mid-segment
    run = cli(*args, slow_s=600)
    try:
        deadline = time.monotonic() + 120
        # the work folder is made after the handler is installed; then the pool starts
        while not (tmp_path / ".out.jsonl.rescore").is_dir() or len(children(run.pid)) < 3:
            assert run.poll() is None, run.communicate()[1]
            assert time.monotonic() < deadline, "the workers never started"
            time.sleep(0.05)
        workers = children(run.pid)
        os.kill(run.pid, signal.SIGTERM)  # the parent alone, as `kill` or a scheduler does
        _, err = run.communicate(timeout=120)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(run.pid, signal.SIGKILL)
    assert run.returncode == 2, err
    assert (
        f"qinglang rescore: error: interrupted; the checkpoint in {tmp_path}/.out.jsonl.rescore "
        "is intact: run the same command again to continue after 0 of 400 posts\n"
    ) in err
    # the resource tracker ends when it reads the end of its pipe, a moment after the run
    deadline = time.monotonic() + 20
    while any(alive(w) for w in workers):
        assert time.monotonic() < deadline, "workers outlived the run"
        time.sleep(0.1)

    again = cli(*args)
    _, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    assert read_records(output) == [expected_record(p) for p in posts_of(lines)]


def test_sigterm_stops_a_ray_run_as_it_stops_a_local_one(tmp_path: Path) -> None:
    """``ray.init`` puts a SIGTERM handler of its own in place, which ended the run with status
    15 and not a word of the checkpoint."""
    source, output = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    source.write_bytes(b"".join(shuffled_posts(400)))
    args: list[str | Path] = [source, "-o", output, "--engine", "ray", "--workers", "2"]
    args += ["--chunk-size", "7", "--checkpoint-every", "20"]
    run = cli(*args, slow_s=0.05)
    try:
        deadline = time.monotonic() + 120
        while manifest(output) is None:  # Ray is up: a segment is written
            assert run.poll() is None, run.communicate()[1]
            assert time.monotonic() < deadline, "the run never checkpointed"
            time.sleep(0.05)
        os.kill(run.pid, signal.SIGTERM)
        _, err = run.communicate(timeout=120)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(run.pid, signal.SIGKILL)
    assert run.returncode == 2, err
    assert err.splitlines()[-1].startswith(
        f"qinglang rescore: error: interrupted; the checkpoint in {tmp_path}/.out.jsonl.rescore "
        "is intact: run the same command again to continue after "
    )


@pytest.mark.parametrize(
    ("sig", "loading"),
    [(signal.SIGTERM, False), (signal.SIGINT, False), (signal.SIGINT, True)],
    ids=["sigterm", "ctrl-c", "ctrl-c-while-the-workers-load"],
)
def test_a_signal_to_the_whole_run_stops_it_once_with_one_line(
    tmp_path: Path, sig: signal.Signals, loading: bool
) -> None:
    """A terminal's Ctrl-C, `timeout`, systemd and batch schedulers signal every process of the
    run, the workers too. A worker killed while it waited on a lock it shared with the parent
    left the parent waiting for it for ever; a Ctrl-C while the workers loaded the model
    printed each worker's traceback."""
    lines = shuffled_posts(400)
    source, output = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    source.write_bytes(b"".join(lines))
    args: list[str | Path] = [source, "-o", output, "--workers", "2", "--chunk-size", "7"]
    run = cli(*args, slow_s=0 if loading else 600, slow_load_s=600 if loading else 0)
    try:
        deadline = time.monotonic() + 120
        # both workers asleep in the stand-in, loading or scoring: past the start of Python
        while sum(asleep(pid) for pid in children(run.pid)) < 2:
            assert run.poll() is None, run.communicate()[1]
            assert time.monotonic() < deadline, "the workers never started"
            time.sleep(0.05)
        os.killpg(run.pid, sig)
        _, err = run.communicate(timeout=120)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(run.pid, signal.SIGKILL)
    assert run.returncode == 2, err
    assert err == (
        f"qinglang rescore: error: interrupted; the checkpoint in {tmp_path}/.out.jsonl.rescore "
        "is intact: run the same command again to continue after 0 of 400 posts\n"
    )


def asleep(pid: int) -> bool:
    """Whether process ``pid`` sleeps in a slowed stand-in (``time.sleep``)."""
    try:
        return (Path("/proc") / str(pid) / "wchan").read_text() == "hrtimer_nanosleep"
    except OSError:
        return False


def read_records_any(path: Path) -> list[object]:
    from service.batch.records import read_records as read

    return list(read(path))


def ignore_xfsz_and_cap_files(size: int) -> None:
    """In the child: writing past ``size`` bytes fails with EFBIG instead of killing it."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))


def rescore_in_parts(
    source: Path, output: Path, file_cap: int | None = None
) -> subprocess.CompletedProcess[str]:
    """``qinglang rescore`` with the stand-in scorer, one worker, checkpointed every 100 posts;
    with ``file_cap``, a file it writes cannot grow past that many bytes."""
    args: list[str | Path] = [source, "-o", output, "--workers", "1", "--chunk-size", "50"]
    args += ["--checkpoint-every", "100"]
    command = [sys.executable, str(BATCHKIT), "rescore", "--no-progress", *map(str, args)]
    capped = None if file_cap is None else lambda: ignore_xfsz_and_cap_files(file_cap)
    return subprocess.run(
        command, capture_output=True, text=True, check=False, timeout=300, preexec_fn=capped
    )


def test_a_full_disk_while_scoring_stops_the_run_with_the_checkpoint_intact(
    tmp_path: Path,
) -> None:
    source, output = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    source.write_bytes(b"".join(shuffled_posts(600)))
    # each part holds 100 records (~40 KB): the first cannot be written
    full = rescore_in_parts(source, output, file_cap=20_000)
    assert full.returncode == 2
    assert (
        "qinglang rescore: error: rescore stopped: cannot write "
        f"{tmp_path}/.out.jsonl.rescore/.part-000000.jsonl: File too large; the checkpoint in "
        f"{tmp_path}/.out.jsonl.rescore is intact: run the same command again to continue "
        "after 0 of 600 posts\n"
    ) in full.stderr
    assert not output.exists()


def test_a_full_disk_names_the_file_it_could_not_write_and_the_posts_committed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The OS error of a full disk names no file (``[Errno 28] No space left on device``)."""
    commit = WorkFolder.commit
    commits: list[int] = []

    def second_fails(folder: WorkFolder, state: State) -> None:
        commits.append(state.parts)
        if len(commits) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        commit(folder, state)

    monkeypatch.setattr(WorkFolder, "commit", second_fails)
    lines = shuffled_posts(300)
    engine = InlineEngine(LengthScorer())
    with pytest.raises(RescoreError) as stopped:
        rescore_lines(tmp_path, lines, engine, chunk_size=50, checkpoint_posts=100)
    work = tmp_path / ".out.jsonl.rescore"
    # the manifest of the second part was not written: the run continues after the first
    assert str(stopped.value) == (
        f"rescore stopped: cannot write {work}/manifest.json: No space left on device; the "
        f"checkpoint in {work} is intact: run the same command again to continue after 100 of "
        "300 posts"
    )
    monkeypatch.setattr(WorkFolder, "commit", commit)
    source, output = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    summary = rescore(source, output, engine, chunk_size=50, checkpoint_posts=100, progress=False)
    assert summary.resumed == 100
    assert read_records(tmp_path / "out.jsonl") == [expected_record(p) for p in posts_of(lines)]


def test_a_full_disk_while_joining_says_what_room_the_join_needs(tmp_path: Path) -> None:
    lines = shuffled_posts(600)
    source, output = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    source.write_bytes(b"".join(lines))
    # each part holds 100 records (~40 KB); the joined output (~240 KB) cannot be written
    full = rescore_in_parts(source, output, file_cap=120_000)
    assert full.returncode == 2
    work = tmp_path / ".out.jsonl.rescore"
    parts = sum(part.stat().st_size for part in work.glob("part-*"))
    # every post is in a part: the run stopped joining them, and running it again only joins
    assert (
        f"qinglang rescore: error: cannot join the parts in {work} into {output}: [Errno 27] "
        f"File too large; the folder {tmp_path} needs about {parts / 1e6:,.1f} MB free "
        "for the joined copy (the size of the parts); every post is scored: make room and run "
        "the same command again to join them\n"
    ) in full.stderr
    state = manifest(output)
    assert state is not None and state["tasks_done"] == 12
    assert not output.exists()

    again = rescore_in_parts(source, output)
    assert again.returncode == 0, again.stderr
    assert read_records(output) == [expected_record(p) for p in posts_of(lines)]
    assert "resumed        after 600 posts" in again.stderr


def test_a_full_disk_while_joining_the_rejects_names_their_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reject file may be on another disk than OUTPUT: the room to make is there."""
    lines = shuffled_posts(300)
    for at in (7, 150, 290):
        lines.insert(at, b'{"id": "bad", "text": 5}\n')
    elsewhere = tmp_path / "rejects"
    elsewhere.mkdir()
    join = checkpoint._join

    def rejects_full(parts: list[Path], target: Path, *, zipped: bool = False) -> None:
        if target.parent == elsewhere:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        join(parts, target, zipped=zipped)

    monkeypatch.setattr(checkpoint, "_join", rejects_full)
    engine = InlineEngine(LengthScorer())
    rejected = elsewhere / "bad.jsonl"
    with pytest.raises(RescoreError) as stopped:
        rescore_lines(
            tmp_path, lines, engine, chunk_size=50, checkpoint_posts=100, reject_path=rejected
        )
    work = tmp_path / ".out.jsonl.rescore"
    rejects = sum(part.stat().st_size for part in work.glob("rejects-*"))
    assert str(stopped.value) == (
        f"cannot join the parts in {work} into {rejected}: [Errno 28] No space left "
        f"on device; the folder {elsewhere} needs about {rejects / 1e6:,.1f} MB free for the "
        "joined copy (the size of the parts); every post is scored: make room and run the same "
        "command again to join them"
    )
    # nothing half joined is left beside either target
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == [".out.jsonl.rescore", "in.jsonl", "rejects"]
    assert list(elsewhere.iterdir()) == []

    monkeypatch.setattr(checkpoint, "_join", join)
    source, output = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    summary = rescore(
        source,
        output,
        engine,
        chunk_size=50,
        checkpoint_posts=100,
        reject_path=rejected,
        progress=False,
    )
    assert summary.resumed == 303
    assert read_records(output) == [
        expected_record(p) for p in posts_of([line for line in lines if b'"bad"' not in line])
    ]
    assert [r["line"] for r in read_rejects(rejected)] == [8, 151, 291]


def test_a_checkpoint_of_other_arguments_is_not_continued(tmp_path: Path) -> None:
    lines = shuffled_posts(30)
    source, output = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    source.write_bytes(b"".join(lines))
    run = cli(
        source,
        "-o",
        output,
        "--workers",
        "1",
        "--chunk-size",
        "3",
        "--checkpoint-every",
        "3",
        slow_s=0.1,
    )
    while manifest(output) is None:
        time.sleep(0.05)
    os.killpg(run.pid, signal.SIGKILL)
    run.communicate()
    other = cli(source, "-o", output, "--workers", "1", "--chunk-size", "4")
    _, err = other.communicate(timeout=120)
    assert other.returncode == 2
    assert "holds the checkpoint of a run with other arguments" in err


def test_workers_with_the_shipped_model_write_what_one_process_writes(tmp_path: Path) -> None:
    lines = real_posts()
    settings = batch_settings(Settings())
    rescore_lines(tmp_path, lines, InlineEngine(Pipeline.load(settings)), chunk_size=8)
    alone = (tmp_path / "out.jsonl").read_bytes()
    rescore_lines(tmp_path, lines, LocalEngine(Pipeline.load, settings, 2), chunk_size=8)
    assert (tmp_path / "out.jsonl").read_bytes() == alone
    # the real posts repeat: the near-duplicate stage saw them all in one window
    assert any(r.cluster is not None for r in read_records(tmp_path / "out.jsonl"))


def test_a_checkpoint_of_an_earlier_release_is_named_so_and_not_to_be_rerun(
    tmp_path: Path,
) -> None:
    checkpoint = WorkFolder(tmp_path / "out.jsonl")
    checkpoint.resume({"model": "m"}, {})
    checkpoint.commit(State({"model": "m"}))
    given = {"model": "m", "model_file": "sha256:ab"}
    with pytest.raises(CheckpointError) as refused:
        checkpoint.resume(given, {"model_file": "the model file (model.onnx)"})
    message = str(refused.value)
    assert f"{checkpoint.path} holds the checkpoint of a run by an earlier release" in message
    assert "did not record the model file (model.onnx)" in message
    assert "rerun that command" not in message


def test_a_part_left_uncommitted_by_a_stopped_run_adds_no_reject_to_the_continued_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run stopped after renaming a part and its rejects into place, before its manifest,
    leaves them there; the continued run, committing smaller parts (a smaller
    ``--checkpoint-every``), writes that part's number with no rejects."""
    commit = WorkFolder.commit

    def second_fails(folder: WorkFolder, state: State) -> None:
        if state.parts == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        commit(folder, state)

    monkeypatch.setattr(WorkFolder, "commit", second_fails)
    lines = shuffled_posts(40)
    lines[27] = b"this line is not JSON\n"
    engine = InlineEngine(LengthScorer())
    with pytest.raises(RescoreError):
        rescore_lines(tmp_path, lines, engine, chunk_size=5, checkpoint_posts=20, segment_posts=5)
    monkeypatch.setattr(WorkFolder, "commit", commit)
    source, output = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    summary = rescore(
        source, output, engine, chunk_size=5, checkpoint_posts=5, segment_posts=5, progress=False
    )
    assert summary.resumed == 20
    good = [line for i, line in enumerate(lines) if i != 27]
    assert read_records(output) == [expected_record(p) for p in posts_of(good)]
    assert [r["line"] for r in read_rejects(tmp_path / "out.rejects.jsonl")] == [28]


@pytest.mark.parametrize("workers", [1, 2])
def test_a_worker_error_past_the_model_stops_the_run_with_the_checkpoint_intact(
    tmp_path: Path, workers: int
) -> None:
    lines = shuffled_posts(30)
    lines[22] = post_line("breaks", f"这条 {BREAK_ORDERED}")
    engine = (
        InlineEngine(LengthScorer())
        if workers == 1
        else LocalEngine(length_scorer, Settings(), workers=workers)
    )
    with pytest.raises(RescoreError) as stopped:
        rescore_lines(tmp_path, lines, engine, chunk_size=5, checkpoint_posts=5)
    work = tmp_path / ".out.jsonl.rescore"
    assert str(stopped.value) == (
        f"the scorer failed on the posts of {tmp_path}/in.jsonl:21-25: "
        "RuntimeError('the ordered stage broke'); the checkpoint in "
        f"{work} is intact: run the same command again to continue after 20 of 30 posts"
    )
    assert not (tmp_path / "out.jsonl").exists()


def appended(source: Path) -> None:
    """A file still being written (an export that has not finished)."""
    with source.open("ab") as more:
        more.write(post_line("late", "晚到的帖子"))


def replaced_alike(source: Path) -> None:
    """Written anew beside and renamed over the file, as an exporter or rsync replaces one:
    other posts of the same size, its modification time set back to the old one's (rsync -t,
    cp -p, or one clock tick on a file system with coarse times)."""
    before = source.stat()
    fresh = source.with_name("fresh.jsonl")
    fresh.write_bytes(b"".join(reversed(source.read_bytes().splitlines(keepends=True))))
    os.utime(fresh, ns=(before.st_atime_ns, before.st_mtime_ns))
    fresh.replace(source)


def rewritten_alike(source: Path) -> None:
    """Other posts of the same size written over the file in place, its modification time set
    back to the old one's."""
    before = source.stat()
    data = b"".join(reversed(source.read_bytes().splitlines(keepends=True)))
    with source.open("r+b") as same:
        same.write(data)
    os.utime(source, ns=(before.st_atime_ns, before.st_mtime_ns))


@pytest.mark.parametrize("change", [appended, replaced_alike, rewritten_alike])
def test_an_input_file_written_to_during_the_run_stops_it_before_the_next_commit(
    tmp_path: Path, change: Callable[[Path], None]
) -> None:
    """A file still being written was scored as far as the run first read it, and the posts
    written after were left out without a word; a file replaced by one of the same size and
    time had the rest of its tasks read from the other posts, also without a word."""
    source = tmp_path / "in.jsonl"

    class Changed(InlineEngine):
        def segments(
            self, segments: Sequence[Segment], first: bytes | None, bank: Sequence[StoredRumor]
        ) -> Iterator[SegmentResult]:
            for n, result in enumerate(super().segments(segments, first, bank)):
                if n == 1:
                    change(source)
                yield result

    engine = Changed(LengthScorer())
    with pytest.raises(RescoreError) as stopped:
        rescore_lines(
            tmp_path, shuffled_posts(30), engine, chunk_size=5, checkpoint_posts=5, segment_posts=5
        )
    work = tmp_path / ".out.jsonl.rescore"
    assert str(stopped.value) == (
        f"{source} changed during the run (written to or replaced): its posts as they "
        "are now are not those the run cut into tasks; the checkpoint in "
        f"{work} holds the posts up to 5 of 30 of the file as it was: put that file back and "
        "run the same command again to continue, or delete the folder to start over"
    )
    assert not (tmp_path / "out.jsonl").exists()


def test_a_run_stopped_while_removing_its_folder_is_run_again_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stop (SIGTERM, SIGKILL) while the folder of a finished run is removed leaves some of
    its files, in no set order: the manifest without a part it names refused every later run."""
    rmtree = shutil.rmtree

    def stopped_part_way(path: Path) -> None:
        (path / "part-000000.jsonl").unlink()
        raise KeyboardInterrupt

    monkeypatch.setattr(shutil, "rmtree", stopped_part_way)
    lines = shuffled_posts(30)
    engine = InlineEngine(LengthScorer())
    with pytest.raises(RescoreError, match="interrupted"):
        rescore_lines(tmp_path, lines, engine, chunk_size=5, checkpoint_posts=5)
    monkeypatch.setattr(shutil, "rmtree", rmtree)
    source, output = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    summary = rescore(source, output, engine, chunk_size=5, checkpoint_posts=5, progress=False)
    assert summary.scored == 30
    assert read_records(output) == [expected_record(p) for p in posts_of(lines)]
    assert not (tmp_path / ".out.jsonl.rescore").exists()
