"""``--engine ray`` keeps Ray's news of itself and its core's line on actor arguments off the
operator's stderr, and the retries its own stop causes off stdout, and lets every other line
through: a run's own errors, Ray's real warnings and real retries."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from batchkit import post_line, shuffled_posts

pytest.importorskip("ray", reason="the ray extra is not installed")

TESTS = Path(__file__).resolve().parent

CORE_LINE = (
    b"[2026-12-06 13:33:06,562 E 9941 9941] core_worker.cc:2465: Actor with class name: "
    b"'MapWorker(MapBatches(_SegmentScorer))' and ID: 'b289edd3ed55ef6f6b35a1e601000000' has "
    b"constructor arguments in the object store and max_restarts > 0. If the arguments in the "
    b"object store go out of scope or are lost, the actor restart will fail. See "
    b"https://github.com/ray-project/ray/issues/53727 for more details.\n"
)

NOISE = (
    "Started a local Ray instance",
    "constructor arguments in the object store",
    "Progress bars disabled",
    "Token authentication is enabled",
    "Generated new authentication token",
)


RAY_AND_REAL_LINES = f"""
import logging, os
import ray, ray.data
from service.batch.ray_noise import quiet

with quiet():
    logging.getLogger("ray._private.worker").info("Started a local Ray instance.")
    logging.getLogger("ray.data._internal.progress").warning(
        "Progress bars disabled. To enable, set "
        "`ray.data.DataContext.get_current().enable_progress_bars = True`."
    )
    logging.getLogger("ray._private.worker").warning("a real warning of Ray's")
    logging.getLogger("ray.data").error("a real error of Ray Data's")
    os.write(2, {CORE_LINE!r})
    os.write(2, b"[2026-12-06 13:33:07,001 E 9941 9941] core_worker.cc:99: a real core error\\n")
    # a line in two writes, and a bar's redraw, which has no line end
    os.write(2, b"qinglang rescore: 40 of ")
    os.write(2, b"80 posts\\n")
    os.write(2, b"\\r 50%|#####     | 40/80")
os.write(2, b"\\nafter the run\\n")
logging.getLogger("ray._private.worker").info("news of Ray's after the run")
"""


def test_ray_noise_is_dropped_and_real_lines_pass_then_stderr_is_given_back() -> None:
    ran = subprocess.run(
        [sys.executable, "-c", RAY_AND_REAL_LINES], capture_output=True, timeout=120, check=False
    )
    assert ran.returncode == 0, ran.stderr
    err = ran.stderr.decode()
    for noise in NOISE:
        assert noise not in err
    lines = err.splitlines()
    assert any(line.endswith(" -- a real warning of Ray's") for line in lines), err
    assert any(line.endswith(" -- a real error of Ray Data's") for line in lines), err
    assert "[2026-12-06 13:33:07,001 E 9941 9941] core_worker.cc:99: a real core error" in lines
    assert "qinglang rescore: 40 of 80 posts" in lines
    assert "\r 50%|#####     | 40/80\nafter the run\n" in err
    # stderr given back: the filter is gone with the pipe
    assert lines[-1].endswith(" -- news of Ray's after the run")


KILLED = (
    "Task MapWorker(MapBatches(_SegmentScorer)).submit failed. There are infinite retries "
    "remaining, so the task will be retried. Error: The actor is dead because it was killed by "
    "`ray.kill`."
)
"""What Ray's driver printed on stdout, once for each segment in flight, when a run stopped."""

OOM = (
    "Task MapWorker(MapBatches(_SegmentScorer)).submit failed due to oom. There are infinite "
    "retries remaining, so the task will be retried. Error: Task was killed due to the node "
    "running low on memory."
)
CRASH = (
    "Task MapWorker(MapBatches(_SegmentScorer)).submit failed. There are infinite retries "
    "remaining, so the task will be retried. Error: The actor died unexpectedly before "
    "finishing this task."
)

RETRIES_OF_A_STOP = f"""
import sys
from ray._private import worker
from service.batch.ray_noise import quiet

def pushed(message):
    # as Ray's thread for the errors pushed to the driver prints each
    worker.print_to_stdstream({{"lines": [message], "pid": "raylet", "is_err": False}}, False)

with quiet():
    pushed({OOM!r})
    pushed({CRASH!r})
    print("the run's own line on stdout")
    # three at once: the first as it comes, the others counted when Ray disconnects
    for _ in range(3):
        pushed({KILLED!r})
    for leftover in worker.stdout_deduplicator.flush():
        worker.print_worker_logs(leftover, sys.stdout)
pushed({KILLED!r} + " after the run")
"""


@pytest.mark.parametrize("colour", ["1", "0"])
def test_the_retries_of_tasks_a_stop_killed_are_dropped_from_stdout_and_real_retries_pass(
    colour: str,
) -> None:
    env = {**os.environ, "RAY_COLOR_PREFIX": colour}
    ran = subprocess.run(
        [sys.executable, "-c", RETRIES_OF_A_STOP],
        capture_output=True,
        timeout=120,
        check=False,
        env=env,
    )
    assert ran.returncode == 0, ran.stderr
    lines = ran.stdout.decode().splitlines()
    plain = [line.replace("\x1b[33m", "").replace("\x1b[0m", "") for line in lines]
    assert plain == [
        f"(raylet) {OOM}",
        f"(raylet) {CRASH}",
        "the run's own line on stdout",
        # stdout given back: the filter is gone with the pipe
        f"(raylet) {KILLED} after the run",
    ]


def test_a_ray_run_shows_its_own_lines_and_none_of_ray_s_news(tmp_path: Path) -> None:
    lines = shuffled_posts(30)
    lines[7] = b'{"id": "cut", "text": \n'
    lines[12] = post_line("dup", "重复")
    lines[20] = post_line("dup", "重复")
    (tmp_path / "in.jsonl").write_bytes(b"".join(lines))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(TESTS.parent)])}
    command = [sys.executable, str(TESTS / "batchkit.py"), "rescore", str(tmp_path / "in.jsonl")]
    command += ["-o", str(tmp_path / "out.jsonl"), "--engine", "ray", "--workers", "2"]
    command += ["--chunk-size", "5", "--progress-every", "1"]
    ran = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300, check=False)
    assert ran.returncode == 1, ran.stderr
    for noise in NOISE:
        assert noise not in ran.stderr
    said = ran.stderr.splitlines()
    assert f"{tmp_path / 'in.jsonl'}:8: error: malformed_json: " in ran.stderr
    assert any(": warning: duplicate id 'dup'" in line for line in said)
    assert any(line.startswith("qinglang rescore: 30 of 30 posts (100%)") for line in said)
    assert f"rescored {tmp_path / 'in.jsonl'} with model test-length (ray, 2 actors)" in said
