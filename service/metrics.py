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

prometheus_client maps each process's file into memory and grows it by truncation, which leaves
its pages unallocated: on a full disk the first store to such a page killed the process with
SIGBUS. Here every file's blocks are reserved (``posix_fallocate``) when it is created or grown,
which fails with ENOSPC instead, and a value that finds no room is kept in the process's memory
(logged once), out of the scrape, until a later write finds room and moves it to the folder.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, Protocol

from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, values
from prometheus_client.mmap_dict import _INITIAL_MMAP_SIZE, MmapedDict
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from service.heads import RISKS
from service.record import ScoreRecord
from service.settings import SHARED_METRICS_VARIABLE

__all__ = ["CONTENT_TYPE", "Metrics"]

log = logging.getLogger(__name__)

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
        self.evidence_hung = Counter(
            "qinglang_evidence_hung_processes",
            "Evidence processes killed for answering no search within their deadline",
            registry=r,
        )
        self.evidence_given_up = Counter(
            "qinglang_evidence_given_up_records",
            "Stored records whose evidence was given up after evidence_attempts failed searches",
            registry=r,
        )
        self.sweep_failures = Counter(
            "qinglang_sweep_failures",
            "Accounts a maintenance sweep could not write and went past, once each a sweep",
            ["sweep"],
            registry=r,
        )
        self.queue_depth = Gauge(
            "qinglang_queue_depth",
            # a request scored in several calls stops waiting at its first
            "Posts of the requests waiting for their first model call",
            multiprocess_mode="livesum",
            registry=r,
        )
        self.evidence_waiting = Gauge(
            "qinglang_evidence_waiting",
            "Flagged records whose evidence spans wait for the evidence process",
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
            KeptValue.move_waiting()
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


class _Value(Protocol):
    def inc(self, amount: float) -> None: ...
    def set(self, value: float, timestamp: float | None = None) -> None: ...
    def get(self) -> float: ...


ENTRY_OVERHEAD = 28
"""Bytes of a value's entry in a metrics file besides its key, at most: the key's length (4),
padding to 8 bytes (up to 8), the value and its timestamp (16) (MmapedDict's file layout)."""


class ReservedMmapedDict(MmapedDict):
    """prometheus_client's per-process file, whose blocks are reserved before it is mapped and
    each time it grows: a full disk is an ``OSError`` (ENOSPC) here, never a SIGBUS later."""

    def __init__(self, filename: str, read_mode: bool = False) -> None:
        if not read_mode and not os.path.exists(filename):
            _create_reserved(Path(filename), _INITIAL_MMAP_SIZE)
        super().__init__(filename, read_mode)  # type: ignore[no-untyped-call]

    def _init_value(self, key: str) -> None:
        capacity = self._capacity
        while self._used + len(key.encode()) + ENTRY_OVERHEAD > capacity:
            capacity *= 2  # as MmapedDict grows it, by truncation, which allocates nothing
        if capacity > self._capacity:
            os.posix_fallocate(self._f.fileno(), 0, capacity)
        super()._init_value(key)  # type: ignore[no-untyped-call]


def _create_reserved(path: Path, size: int) -> None:
    """Create ``path`` with ``size`` bytes reserved. Written under another name and renamed, so
    that a scrape never reads an empty file (it cannot parse one), even when no room is left."""
    partial = path.with_name(f".{path.name}.partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.posix_fallocate(fd, 0, size)
        os.replace(partial, path)
    except OSError:
        partial.unlink(missing_ok=True)
        raise
    finally:
        os.close(fd)


class KeptValue:
    """prometheus_client's ``values.ValueClass`` in the server's processes: each value in the
    shared folder (through :attr:`shared`, the library's own multiprocess class), or in this
    process's memory while the folder has no room for it, moved there by the first write or
    scrape that finds room: a full disk costs the scrape values, never the process."""

    _multiprocess = True
    shared: ClassVar[Any] = None
    full: ClassVar = threading.Event()
    """Set while values wait in memory: the first failure and the recovery are logged."""
    waiting: ClassVar[set[KeptValue]] = set()
    """The values in memory, for :meth:`move_waiting`: a value set once at start-up (the gauge
    that names the model) is never written again."""
    waiting_lock: ClassVar = threading.Lock()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._args, self._kwargs = args, kwargs
        self._lock = threading.Lock()
        self._memory: _Value = values.MutexValue(*args, **kwargs)  # type: ignore[no-untyped-call]
        self._shared: _Value | None = None
        with self._lock:
            self._move()

    @classmethod
    def move_waiting(cls) -> None:
        """Move the values kept in memory to the folder, where it has room now."""
        with cls.waiting_lock:
            waiting = list(cls.waiting)
        for value in waiting:
            with value._lock:
                if not value._move():
                    return  # no room yet: the rest need not try

    def _move(self) -> bool:
        """Under the lock: whether the value is in the folder, moved there now if it has room."""
        if self._shared is not None:
            return True
        try:
            moved: _Value = self.shared(*self._args, **self._kwargs)
        except OSError as exc:
            with self.waiting_lock:
                self.waiting.add(self)
            if not self.full.is_set():
                self.full.set()
                log.error(
                    "metrics kept in memory only, out of /metrics: no room in their folder",
                    extra={"problem": str(exc)},
                )
            return False
        with self.waiting_lock:
            waited = self in self.waiting
            self.waiting.discard(self)
            if self.full.is_set() and not self.waiting:
                self.full.clear()
                log.info("metrics written to their folder again")
        if waited:
            # what this process counted meanwhile: the entry is new, at 0, since making it is
            # what failed. One made at once may be in the file already (a dead process of the
            # same pid), and goes on from there as the library's own values do
            moved.set(self._memory.get())
        self._shared = moved
        return True

    def _write(self, write: Callable[[_Value], None]) -> None:
        if self._shared is None:
            with self._lock:
                # under the lock: a write to memory is never left behind by a move
                if not self._move():
                    write(self._memory)
                    return
        assert self._shared is not None
        write(self._shared)

    def inc(self, amount: float) -> None:
        self._write(lambda value: value.inc(amount))

    def set(self, value: float, timestamp: float | None = None) -> None:
        self._write(lambda kept: kept.set(value, timestamp))

    def get(self) -> float:
        return (self._shared or self._memory).get()

    def set_exemplar(self, exemplar: object) -> None:
        """Multiprocess mode keeps no exemplars."""

    def get_exemplar(self) -> None:
        return None


if values.ValueClass is not values.MutexValue:  # multiprocess mode, chosen at import
    # the library looks both names up when it makes a value, and a file
    values.MmapedDict = ReservedMmapedDict  # type: ignore[attr-defined]
    KeptValue.shared = values.ValueClass
    values.ValueClass = KeptValue
