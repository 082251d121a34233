"""Batch re-scoring speed: one process, ``--engine local`` on every core, ``--engine ray`` on a
local Ray, over the same posts of the Weibo repost corpus, in one run.

``python -m eval.batch [--posts N | --full] [--workers N] [--skip-ray]``

The first ``--posts`` posts (default 20,000; ``--full`` for all 1.7 million) of
``weibo16/reposts.jsonl.gz`` under the data folder are written once, uncompressed, to
``runs/batch-bench/``; each engine then runs ``qinglang rescore`` on them as a process of its
own, end to end (model loads, worker and Ray start-up included). Peak memory is the largest sum
of resident memory over the run's whole process tree (workers, Ray's daemons and actors),
sampled every 0.2 s. The outputs are compared: the engines must write identical records.
"""

from __future__ import annotations

import argparse
import gzip
import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from eval.speed import hardware
from service.settings import ROOT, get_settings

WORK = ROOT / "runs" / "batch-bench"
CORPUS = Path("weibo16") / "reposts.jsonl.gz"
PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class Run:
    engine: str
    posts_s: float
    wall_s: float
    peak_mib: float
    output: Path


def sample(posts: int | None) -> Path:
    """The first ``posts`` posts of the corpus (all of them for None) as plain JSONL."""
    name = "reposts-all.jsonl" if posts is None else f"reposts-{posts}.jsonl"
    path = WORK / name
    if path.exists():
        return path
    WORK.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with gzip.open(get_settings().data_dir / CORPUS, "rb") as source, tmp.open("wb") as out:
        if posts is None:
            shutil.copyfileobj(source, out, 1 << 20)
        else:
            for _, line in zip(range(posts), source, strict=False):
                out.write(line)
    tmp.replace(path)
    return path


def _tree_rss(root: int) -> int:
    """Resident bytes of ``root`` and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid = int(entry)
        children.setdefault(int(fields[1]), []).append(pid)
        rss[pid] = int(fields[21]) * PAGE
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        stack.extend(children.get(pid, []))
    return total


def measure(engine: str, kind: str, workers: int, source: Path, posts: int) -> Run:
    output = WORK / f"out-{kind}-{workers}.jsonl"
    output.unlink(missing_ok=True)
    command = [sys.executable, "-m", "service.cli", "rescore", str(source), "-o", str(output)]
    command += ["--engine", kind, "--workers", str(workers), "--no-progress", "--skip-bad"]
    started = time.perf_counter()
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    peak = 0
    done = threading.Event()

    def watch() -> None:
        nonlocal peak
        while not done.wait(0.2):
            peak = max(peak, _tree_rss(process.pid))

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    _, err = process.communicate()
    done.set()
    watcher.join()
    wall = time.perf_counter() - started
    if process.returncode != 0:
        raise SystemExit(f"{engine} failed:\n{err[-3000:]}")
    return Run(engine, posts / wall, wall, peak / 2**20, output)


def table(runs: list[Run], posts: int, identical: bool) -> str:
    base = runs[0]
    lines = [
        f"hardware: {hardware()}; date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; "
        f"{posts:,} posts of {CORPUS}; end to end (model loads and start-up included)",
        "",
        "| engine | posts/s | wall (s) | x one process | peak memory (MiB, process tree) |",
        "|---|---|---|---|---|",
    ]
    for run in runs:
        lines.append(
            f"| {run.engine} | {run.posts_s:,.0f} | {run.wall_s:,.1f} | "
            f"{run.posts_s / base.posts_s:.2f}x | {run.peak_mib:,.0f} |"
        )
    local = next((r for r in runs if r.engine.startswith("local")), None)
    ray = next((r for r in runs if r.engine.startswith("ray")), None)
    if local and ray:
        lines.append("")
        lines.append(f"Ray overhead over the local engine: {local.posts_s / ray.posts_s - 1:.0%}")
    lines.append(f"identical records from every engine: {'yes' if identical else 'NO'}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.batch", description=__doc__)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--posts", type=int, default=20_000, help="posts from the corpus's start")
    size.add_argument("--full", action="store_true", help="all 1.7 million posts")
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--skip-ray", action="store_true")
    args = parser.parse_args(argv)
    source = sample(None if args.full else args.posts)
    with source.open("rb") as lines:
        posts = sum(1 for line in lines if line.strip())
    engines = [("one process", "local", 1)]
    engines.append((f"local, {args.workers} workers", "local", args.workers))
    if not args.skip_ray:
        engines.append((f"ray local, {args.workers} actors", "ray", args.workers))
    runs = []
    for engine, kind, workers in engines:
        runs.append(measure(engine, kind, workers, source, posts))
        print(f"{engine}: {runs[-1].posts_s:,.0f} posts/s", file=sys.stderr, flush=True)
    outputs = {run.output.read_bytes() for run in runs}
    print(table(runs, posts, identical=len(outputs) == 1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
