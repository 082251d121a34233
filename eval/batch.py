"""Batch re-scoring speed: one process, ``--engine local`` on every core (with evidence spans
and without, ``--no-evidence``), ``--engine ray`` on a local Ray, over the same posts of the
Weibo repost corpus, in one run.

``python -m eval.batch [--posts N | --full] [--workers N] [--skip-ray]``

The first ``--posts`` posts (default 20,000; ``--full`` for all 1.7 million) of
``weibo16/reposts.jsonl.gz`` under the data folder are written once, uncompressed and sorted by
``created_at`` (the order a re-score should see them in), to ``runs/batch-bench/``; each engine
then runs ``qinglang rescore`` on them as a process of its own, end to end (model loads, worker
and Ray start-up included). Peak memory is the largest sum of resident memory over the run's
whole process tree (workers, Ray's daemons and actors), sampled every 0.2 s; CPU time is that
tree's user + system time, from the same samples. The outputs are
compared: the engines must write identical records, and the run without evidence the same
records but for their spans (:func:`without_spans`).

On a machine shared with other work, wall-clock rates move with the neighbours' load; the
engines therefore run in ``--rounds`` interleaved rounds (the table gives each one's median),
and posts per CPU-second, which the neighbours hardly move, gives the per-core rate.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import Any

from eval.speed import hardware
from service.cli.parser import positive_int
from service.settings import ROOT, get_settings, settings_or_exit
from training import data

WORK = ROOT / "runs" / "batch-bench"
CORPUS = data.WEIBO16_REPOSTS
PAGE = os.sysconf("SC_PAGE_SIZE")
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Engine:
    name: str
    kind: str
    workers: int
    evidence: bool = True


@dataclass(frozen=True)
class Run:
    engine: str
    evidence: bool
    posts_s: float
    cpu_s: float
    peak_mib: float
    output: Path


def sample(posts: int | None) -> Path:
    """The first ``posts`` posts of the corpus (all of them for None) as plain JSONL, sorted by
    ``created_at`` (then id)."""
    name = "reposts-all-sorted.jsonl" if posts is None else f"reposts-{posts}-sorted.jsonl"
    path = WORK / name
    if path.exists():
        return path
    WORK.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    rows = list(islice(data.records(get_settings().data_dir / CORPUS, _when), posts))
    rows.sort(key=lambda row: row[0])
    # the corpus's own lines: it is written as json.dumps writes, so each reads back byte for byte
    with tmp.open("w", encoding="utf-8") as out:
        out.writelines(json.dumps(post, ensure_ascii=False) + "\n" for _, post in rows)
    tmp.replace(path)
    return path


def _when(post: dict[str, Any]) -> tuple[tuple[float, str], dict[str, Any]]:
    return (float(post.get("created_at") or 0), str(post["id"])), post


def _tree(root: int) -> dict[int, tuple[int, float]]:
    """Resident bytes and CPU seconds of ``root`` and each of its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    usage: dict[int, tuple[int, float]] = {}
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
        # fields from the state on: utime and stime are the 12th and 13th, rss the 22nd
        usage[pid] = (int(fields[21]) * PAGE, (int(fields[11]) + int(fields[12])) / TICKS)
    tree, stack = {}, [root]
    while stack:
        pid = stack.pop()
        if pid in usage:
            tree[pid] = usage[pid]
        stack.extend(children.get(pid, []))
    return tree


def without_spans(record: dict[str, Any]) -> dict[str, Any]:
    """A score record (as JSON) without its evidence spans and ``evidence_pending``: what a run
    with evidence and one without must agree on."""
    reasons = [
        {**r, "evidence": {k: v for k, v in r["evidence"].items() if k != "spans"}}
        for r in record["reasons"]
    ]
    return {**record, "reasons": reasons, "evidence_pending": None}


def _records(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as lines:
        return [without_spans(json.loads(line)) for line in lines]


def measure(engine: Engine, source: Path, posts: int) -> Run:
    output = WORK / f"out-{engine.kind}-{engine.workers}-{engine.evidence}.jsonl"
    output.unlink(missing_ok=True)
    command = [sys.executable, "-m", "service.cli", "rescore", str(source), "-o", str(output)]
    command += ["--engine", engine.kind, "--workers", str(engine.workers)]
    command += ["--no-progress", "--skip-bad", *(() if engine.evidence else ("--no-evidence",))]
    started = time.perf_counter()
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    peak = 0
    cpu: dict[int, float] = {}
    done = threading.Event()

    def watch() -> None:
        nonlocal peak
        while not done.wait(0.2):
            tree = _tree(process.pid)
            peak = max(peak, sum(rss for rss, _ in tree.values()))
            cpu.update((pid, seconds) for pid, (_, seconds) in tree.items())

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    _, err = process.communicate()
    done.set()
    watcher.join()
    wall = time.perf_counter() - started
    if process.returncode != 0:
        raise SystemExit(f"{engine.name} failed:\n{err[-3000:]}")
    return Run(engine.name, engine.evidence, posts / wall, sum(cpu.values()), peak / 2**20, output)


def table(runs: list[Run], posts: int, rounds: int, identical: bool, alike: bool) -> str:
    by_engine: dict[str, list[Run]] = {}
    for run in runs:
        by_engine.setdefault(run.engine, []).append(run)
    median = {name: statistics.median(r.posts_s for r in rs) for name, rs in by_engine.items()}
    base = median[runs[0].engine]
    lines = [
        f"hardware: {hardware()}; date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; "
        f"{posts:,} posts of {CORPUS}; end to end (model loads and start-up included); "
        f"median of {rounds} interleaved round(s); load average at the end "
        f"{os.getloadavg()[0]:.1f}",
        "",
        "| engine | posts/s | x one process | posts per CPU-second | "
        "peak memory (MiB, process tree) | rounds (posts/s) |",
        "|---|---|---|---|---|---|",
    ]
    for name, rs in by_engine.items():
        per_cpu = statistics.median(posts / r.cpu_s for r in rs)
        peak = max(r.peak_mib for r in rs)
        each = ", ".join(f"{r.posts_s:,.0f}" for r in rs)
        lines.append(
            f"| {name} | {median[name]:,.0f} | {median[name] / base:.2f}x | {per_cpu:,.0f} | "
            f"{peak:,.0f} | {each} |"
        )
    local = next((m for name, m in median.items() if name.startswith("local")), None)
    ray = next((m for name, m in median.items() if name.startswith("ray")), None)
    if local and ray:
        lines.append("")
        lines.append(f"Ray's overhead over the local engine: {local / ray - 1:.0%}")
    lines.append(f"identical records from every engine with evidence: {_yes(identical)}")
    if any(not r.evidence for r in runs):
        lines.append(f"the same records but for their spans without evidence: {_yes(alike)}")
    return "\n".join(lines)


def _yes(holds: bool) -> str:
    return "yes" if holds else "NO"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.batch", description=__doc__)
    size = parser.add_mutually_exclusive_group()
    size.add_argument(
        "--posts", type=positive_int, default=20_000, help="posts from the corpus's start"
    )
    size.add_argument("--full", action="store_true", help="all 1.7 million posts")
    parser.add_argument("--workers", type=positive_int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--skip-ray", action="store_true")
    parser.add_argument(
        "--rounds", type=positive_int, default=1, help="interleaved runs of each engine"
    )
    args = parser.parse_args(argv)
    # sample() reads the corpus only after making its folder
    data.require(settings_or_exit(parser.prog).data_dir, (CORPUS,))
    source = sample(None if args.full else args.posts)
    with source.open("rb") as lines:
        posts = sum(1 for line in lines if line.strip())
    engines = [Engine("one process", "local", 1)]
    engines.append(Engine(f"local, {args.workers} workers", "local", args.workers))
    engines.append(
        Engine(f"local, {args.workers} workers, no evidence", "local", args.workers, False)
    )
    if not args.skip_ray:
        engines.append(Engine(f"ray local, {args.workers} actors", "ray", args.workers))
    runs = []
    for _ in range(args.rounds):
        for engine in engines:
            runs.append(measure(engine, source, posts))
            print(f"{engine.name}: {runs[-1].posts_s:,.0f} posts/s", file=sys.stderr, flush=True)
    full = [run for run in runs if run.evidence]
    identical = len({run.output.read_bytes() for run in full}) == 1
    fast = [run.output for run in runs if not run.evidence]
    expected = _records(full[0].output) if fast else []
    alike = all(_records(path) == expected for path in fast)
    print(table(runs, posts, args.rounds, identical, alike))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
