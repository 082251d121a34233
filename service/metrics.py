"""Prometheus metrics: requests per route, scores and decisions per head, batches, queue depth.

Two modes, chosen by prometheus_client when it is imported:

- One process (tests, which build several apps in one process): each app's values live in its
  own registry, and ``/metrics`` renders that registry.
- The server's processes (``qinglang serve``, whatever ``--workers``): the command sets
  ``PROMETHEUS_MULTIPROC_DIR`` to ``state_dir/metrics`` (emptied at start) before any server
  process imports prometheus_client. Each process then writes its values to files of its own
  there, and a scrape, whichever process answers it, merges every process's files: counts and
  histograms are summed over all processes, including ones that have exited (a total never goes
  down when uvicorn replaces a worker); queue depth is summed over live processes, storage is up
  when it is up for every live process, and the model is named by live processes.

A gauge that is computed at scrape time (``set_function``) would read only the answering process,
so the live gauges are written by their own process whenever they change: the batcher reports its
depth, the storage health its state. A process removes its live gauges when it stops; those of a
process that died without stopping are removed by the next scrape.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from service.heads import RISKS
from service.record import ScoreRecord
from service.settings import SHARED_METRICS_VARIABLE

__all__ = ["CONTENT_TYPE", "Metrics"]

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
SCORE_BUCKETS = tuple(i / 10 for i in range(1, 11))
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Metrics:
    def __init__(self, model_version: str, policy_version: str) -> None:
        self.registry = CollectorRegistry()
        """This app's metrics; in the server's processes they write to the shared folder."""
        shared = os.environ.get(SHARED_METRICS_VARIABLE)
        self.shared_dir = Path(shared) if shared else None
        r = self.registry
        self.requests = Counter(
            "qinglang_requests", "HTTP requests", ["route", "method", "status"], registry=r
        )
        self.latency = Histogram(
            "qinglang_request_seconds",
            "HTTP request latency",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.scores = Histogram(
            "qinglang_score",
            "Risk scores of newly scored posts",
            ["risk"],
            buckets=SCORE_BUCKETS,
            registry=r,
        )
        self.flags = Counter("qinglang_flags", "Newly scored posts flagged", ["risk"], registry=r)
        self.decisions = Counter(
            "qinglang_decisions", "Decisions on newly scored posts", ["decision"], registry=r
        )
        self.batches = Histogram(
            "qinglang_batch_posts", "Posts per model call", buckets=BATCH_BUCKETS, registry=r
        )
        self.spooled = Counter(
            "qinglang_spooled_records", "Records spooled while storage was down", registry=r
        )
        self.conflicts = Counter(
            "qinglang_score_conflicts",
            "Posts refused because their id was scored before with another text",
            registry=r,
        )
        self.evidence_skipped = Counter(
            "qinglang_evidence_skipped_records",
            "Stored records left evidence_pending because the evidence backlog was full",
            registry=r,
        )
        self.evidence_swept = Counter(
            "qinglang_evidence_swept_records",
            "Stored records left evidence_pending whose evidence the sweep took up",
            registry=r,
        )
        self.queue_depth = Gauge(
            "qinglang_queue_depth",
            "Posts waiting for the model",
            multiprocess_mode="livesum",
            registry=r,
        )
        self.evidence_waiting = Gauge(
            "qinglang_evidence_waiting",
            "Flagged records whose evidence spans wait for the evidence thread",
            multiprocess_mode="livesum",
            registry=r,
        )
        self.storage_up = Gauge(
            "qinglang_storage_up",
            "1 when storage answers",
            multiprocess_mode="livemin",
            registry=r,
        )
        Gauge(
            "qinglang_model_info",
            "The model and policy in use",
            ["model_version", "policy_version"],
            multiprocess_mode="livemax",
            registry=r,
        ).labels(model_version, policy_version).set(1)
        self._scraped = r
        if self.shared_dir is not None:
            self._scraped = CollectorRegistry()
            # prometheus_client.multiprocess carries no annotations
            MultiProcessCollector(self._scraped, str(self.shared_dir))  # type: ignore[no-untyped-call]

    def request(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route, method).observe(seconds)

    def scored(self, record: ScoreRecord) -> None:
        """Count a post scored for the first time (a repeated id is not counted again)."""
        for risk in RISKS:
            self.scores.labels(risk).observe(record.scores[risk])
            if record.flags[risk]:
                self.flags.labels(risk).inc()
        self.decisions.labels(record.decision).inc()

    def queue(self, depth: int) -> None:
        """The batcher's queue now holds ``depth`` posts."""
        self.queue_depth.set(depth)

    def evidence(self, waiting: int) -> None:
        """``waiting`` records now wait for their evidence spans."""
        self.evidence_waiting.set(waiting)

    def storage(self, up: bool) -> None:
        self.storage_up.set(float(up))

    def render(self) -> bytes:
        """The Prometheus text of this app, or of every server process. Reads files in the
        server's processes: call it off the event loop."""
        if self.shared_dir is not None:
            _forget_dead_processes(self.shared_dir)
        return generate_latest(self._scraped)

    def close(self) -> None:
        """This process stops serving: its queue depth, storage state and model leave the
        server's live gauges (its counts stay in the totals)."""
        if self.shared_dir is not None:
            mark_process_dead(os.getpid(), str(self.shared_dir))  # type: ignore[no-untyped-call]


def _forget_dead_processes(directory: Path) -> None:
    """Remove the live gauges of processes that died without :meth:`Metrics.close` (killed, or
    hung and killed by uvicorn, which starts another in their place)."""
    pids = {int(path.stem.rsplit("_", 1)[1]) for path in directory.glob("gauge_live*_*.db")}
    for pid in pids:
        try:
            os.kill(pid, 0)
        except OSError:  # no such process, or another user's: not a server process then
            # another process's scrape may be removing the same files
            with contextlib.suppress(FileNotFoundError):
                mark_process_dead(pid, str(directory))  # type: ignore[no-untyped-call]
