"""The publish path's latency beside the evidence search, under CPU load, in process:
``python -m eval.evidence_latency``.

``python -m eval.evidence_latency [--posts N] [--rounds R] [--seconds S] [--rate N] [--hogs N]``

The scoring path is the server's pipeline (:func:`service.api.app.load_pipeline`,
``serve_threads`` ONNX threads) on this process's main thread: one post a call
(:meth:`~service.pipeline.Pipeline.prepare` without evidence, then
:meth:`~service.pipeline.Pipeline.ordered`), a call every ``1/--rate`` s (default 100 a second,
the rate of ``python -m eval.load``). A call's latency runs from when it was due to when its
record is made; a call that ends late makes the next due at once, not every call it overran,
so that each latency is one call's own wait. Meanwhile the evidence search is kept busy with
the flagged posts among the first ``--posts`` (default 300) of the corpus
(:func:`eval.load.workloads`), one a call, each text made new (a number appended) so that no
search is answered from memory. It runs in one of three ways, round by round, each first in
turn:

- *none*: no search (the scoring path alone);
- *thread*: on an idle-scheduled (``SCHED_IDLE``) thread of this process, as the server ran it
  before 2026-12-07;
- *process*: in the server's idle-scheduled evidence process
  (:class:`service.evidence_process.EvidenceProcess`), fed by a thread of the normal priority.

``--hogs`` (default: one a core) processes spinning in Python at the normal priority keep every
core busy during each round, as other work of the host or of the server's other processes
would: an idle-scheduled thread gets a core only in the gaps they leave (they stop between
rounds, so that the search under way ends before the next). Before the rounds the first
flagged posts are searched both ways, without load; their records must be the same, spans
included: the output says how many were not. Prints hardware, date and one markdown table:
each way's calls, latency percentiles (over all its rounds), calls over the publish path's
30 ms, and flagged posts searched a second.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import count

from eval.load import workloads
from eval.speed import hardware
from service.api.app import load_pipeline
from service.evidence import Remembered
from service.evidence_process import EvidenceProcess, idle_priority
from service.pipeline import Pipeline
from service.record import Post, ScoreRecord
from service.settings import settings_or_exit

TARGET_MS = 30.0
"""The publish path's latency target (docs/service.md)."""
IN_FLIGHT = 2
"""Searches handed to the evidence thread at a time: one running, the next waiting for it."""

Search = Callable[[Sequence[Post], Sequence[ScoreRecord]], list[ScoreRecord]]


@dataclass
class Way:
    """One way of running the search: its latencies (ms) and searches over all its rounds."""

    latencies: list[float] = field(default_factory=list)
    searched: int = 0
    seconds: float = 0.0


class Feed:
    """Keeps ``search`` busy on ``executor`` with the flagged posts, each text made new."""

    def __init__(
        self, executor: ThreadPoolExecutor, search: Search, flagged: list[tuple[Post, ScoreRecord]]
    ) -> None:
        self.executor = executor
        self.search = search
        self.flagged = flagged
        self.numbers = count()
        self.searched = 0
        self.stopped = threading.Event()
        self.handed: set[Future[list[ScoreRecord]]] = set()
        self._lock = threading.Lock()

    def start(self) -> None:
        for _ in range(IN_FLIGHT):
            self._next()

    def _next(self) -> None:
        # under the lock: a search handed after the stop would outlive it
        with self._lock:
            if self.stopped.is_set():
                return
            n = next(self.numbers)
            post, record = self.flagged[n % len(self.flagged)]
            new = post.model_copy(update={"id": f"{post.id}#{n}", "text": f"{post.text} {n}"})
            future = self.executor.submit(self.search, [new], [record])
            self.handed.add(future)
        future.add_done_callback(self._done)

    def _done(self, future: Future[list[ScoreRecord]]) -> None:
        with self._lock:
            self.handed.discard(future)
        if not self.stopped.is_set() and future.exception() is None:
            self.searched += 1
            self._next()

    def stop(self) -> None:
        """Stop handing searches; the one running ends before this returns, the next is
        dropped."""
        with self._lock:
            self.stopped.set()
            handed = list(self.handed)
        for future in handed:
            future.cancel()
        for future in handed:
            if not future.cancelled():
                future.exception()  # waits for it


def score_for(
    pipeline: Pipeline, posts: Sequence[Post], seconds: float, rate: float
) -> list[float]:
    """Score ``posts`` (over and over, under new ids) one a call, a call every ``1/rate`` s for
    ``seconds``; each call's latency in ms (module docstring)."""
    period = 1 / rate
    latencies: list[float] = []
    due = time.monotonic()
    end = due + seconds
    for n in count():
        due += period
        # a due time summed up in steps of a period falls short of the end by a rounding error
        if due >= end - 1e-9:
            return latencies
        wait = due - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        post = posts[n % len(posts)]
        post = post.model_copy(update={"id": f"{post.id}@{time.monotonic_ns()}"})
        pipeline.ordered([post], pipeline.prepare([post], evidence=False))
        done = time.monotonic()
        latencies.append((done - due) * 1000)
        due = max(due, done - period)
    return latencies


@contextmanager
def hogs(n: int) -> Iterator[None]:
    """``n`` processes spinning in Python at the normal priority, for as long as the block runs."""
    spinning = [subprocess.Popen([sys.executable, "-c", "while 1: pass"]) for _ in range(n)]
    try:
        yield
    finally:
        for hog in spinning:
            hog.kill()
        for hog in spinning:
            hog.wait()


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def table(ways: dict[str, Way]) -> str:
    rows = [
        "| evidence search | scoring calls | p50 ms | p99 ms | p99.9 ms | max ms "
        f"| over {TARGET_MS:.0f} ms | searches a second |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, way in ways.items():
        lat = way.latencies
        over = sum(v > TARGET_MS for v in lat) / len(lat)
        rows.append(
            f"| {name} | {len(lat)} | {statistics.median(lat):.1f} | {percentile(lat, 0.99):.1f} "
            f"| {percentile(lat, 0.999):.1f} | {max(lat):.1f} | {over:.1%} "
            f"| {way.searched / way.seconds:.1f} |"
        )
    return "\n".join(rows)


def unlike(
    pipeline: Pipeline, process: EvidenceProcess, pairs: list[tuple[Post, ScoreRecord]]
) -> int:
    """How many of ``pairs``' records the evidence process gives otherwise than the pipeline."""
    posts, records = [p for p, _ in pairs], [r for _, r in pairs]
    pipeline.remembered = Remembered()
    return sum(
        a != b
        for a, b in zip(
            pipeline.explain(posts, records), process.explain(posts, records), strict=True
        )
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m eval.evidence_latency", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--posts", type=int, default=300, help="of the corpus (default 300)")
    parser.add_argument("--rounds", type=int, default=4, help="of each way (default 4)")
    parser.add_argument("--seconds", type=float, default=10.0, help="a round (default 10)")
    parser.add_argument("--rate", type=float, default=100.0, help="scoring calls a second")
    parser.add_argument("--hogs", type=int, default=None, help="spinning processes (one a core)")
    parser.add_argument("--compare", type=int, default=10, help="flagged posts searched both ways")
    args = parser.parse_args(argv)
    settings = settings_or_exit(parser.prog)
    pipeline = load_pipeline(settings)
    texts = workloads(settings)["corpus"][: args.posts]
    posts = [Post(id=f"corpus-{i}", text=t) for i, t in enumerate(texts)]
    records = pipeline.ordered(posts, pipeline.prepare(posts, evidence=False))
    flagged = [(p, r) for p, r in zip(posts, records, strict=True) if r.evidence_pending]
    if not flagged:
        parser.exit(1, f"{parser.prog}: none of the {len(posts)} posts is flagged\n")
    process = EvidenceProcess(pipeline.explaining(), settings.evidence_deadline_s)
    # before the load: the process started, its session open, and the same records both ways
    differ = unlike(pipeline, process, flagged[: args.compare])
    pipeline.remembered = Remembered()
    spinning = len(os.sched_getaffinity(0)) if args.hogs is None else args.hogs
    ways = {name: Way() for name in ("none", "thread", "process")}
    idle = ThreadPoolExecutor(1, thread_name_prefix="evidence-idle", initializer=idle_priority)
    feeder = ThreadPoolExecutor(1, thread_name_prefix="evidence-feed")
    searches: dict[str, tuple[ThreadPoolExecutor, Search] | None] = {
        "none": None,
        "thread": (idle, pipeline.explain),
        "process": (feeder, process.explain),
    }
    try:
        for r in range(args.rounds):
            names = list(ways) if r % 2 == 0 else list(reversed(ways))
            for name in names:
                way, search = ways[name], searches[name]
                feed = Feed(*search, flagged) if search is not None else None
                with hogs(spinning):
                    if feed is not None:
                        feed.start()
                    start = time.monotonic()
                    way.latencies += score_for(pipeline, posts, args.seconds, args.rate)
                    way.seconds += time.monotonic() - start
                if feed is not None:
                    way.searched += feed.searched
                    # without the spinning processes, which would starve it: the search under
                    # way ends before the next round
                    feed.stop()
    finally:
        idle.shutdown(cancel_futures=True)
        feeder.shutdown(cancel_futures=True)
        process.close()
    print(f"Evidence beside scoring, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {hardware()}")
    print(
        f"model {pipeline.model_version}, policy {pipeline.policy_version}; {len(posts)} posts "
        f"({len(flagged)} flagged), {args.rate:g} scoring calls a second, {settings.serve_threads} "
        f"ONNX threads; {spinning} spinning processes; {args.rounds} rounds of "
        f"{args.seconds:g} s a way; records unlike between thread and process: {differ} of "
        f"{min(args.compare, len(flagged))}"
    )
    print()
    print(table(ways))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
