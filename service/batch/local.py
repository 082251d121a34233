"""``--engine local``: worker processes on this machine, each holding one scorer (one ONNX
session with one thread) and scoring whole segments (:mod:`service.batch.segments`), fed through a
bounded window so that memory stays flat.

Results come back in segment order. A worker process that dies (a segfault in a native library,
the out-of-memory killer) breaks the pool; the segments it had in flight are then scored again
post by post, each post's task and line written to a journal file before it is scored, so that
the post that kills a worker again is found, rejected with the error, and the run goes on.

The workers stop when the parent does: each watches a pipe whose only writing end the parent
holds, and ends at once when it closes, whether the parent closes it (the run stops) or dies.
SIGINT is the parent's alone: a terminal's Ctrl-C reaches every process of the run, and the
parent stops the workers (they start with it blocked).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import tempfile
import threading
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING

from service.batch.segments import WARM, Segment, SegmentResult, Start, run_segment
from service.batch.work import (
    Reject,
    Scorer,
    ScorerError,
    ScorerFactory,
    Span,
    worker_scorer,
)

if TYPE_CHECKING:
    from service.settings import Settings
    from service.storage.repository import StoredRumor

IN_FLIGHT_PER_WORKER = 2
"""Segments queued per worker: one running, one waiting, so that no worker idles between them."""

_scorer: Scorer | None = None
"""The worker process's scorer, loaded once by :func:`_load`."""


def _load(
    load: ScorerFactory, settings: Settings, bank: Sequence[StoredRumor], stop: Connection
) -> None:
    global _scorer  # noqa: PLW0603 - one scorer per worker process, by design
    watch = threading.Thread(target=_exit_on_close, args=(stop,), name="parent-watch", daemon=True)
    watch.start()
    _scorer = worker_scorer(load, settings, bank)


def _exit_on_close(stop: Connection) -> None:
    """End this worker as soon as the parent's end of ``stop`` closes: the parent closes it to
    stop the run, and the system closes it when the parent dies (the parent writes nothing).

    A parent killed outright (SIGKILL, the out-of-memory killer) cannot shut its pool down, and
    its workers would go on scoring a segment nobody reads, each holding a model, for minutes.
    A run stopped by Ctrl-C or SIGTERM would wait for the segments in flight, which the run that
    continues scores again anyway. A pipe, not a lock shared with the parent: a worker killed
    while it held or waited on one (a SIGTERM to the whole run) left the parent's stop waiting
    for it for ever.
    """
    stop.poll(None)
    os._exit(1)


def _run(
    segment: Segment,
    start: Start,
    one_by_one: bool = False,
    skip: frozenset[tuple[int, int]] = frozenset(),
    journal: str = "",
) -> SegmentResult:
    assert _scorer is not None, "the worker's initializer did not run"
    return run_segment(
        segment, _scorer, start, one_by_one=one_by_one, skip=skip, journal=journal or None
    )


class LocalEngine:
    def __init__(self, load: ScorerFactory, settings: Settings, workers: int) -> None:
        self._load = load
        self._settings = settings
        self.workers = workers
        self._executor: ProcessPoolExecutor | None = None
        self._stop: tuple[Connection, Connection] | None = None
        """The current pool's stop pipe (the workers' end, the parent's): closed, it ends the
        pool's workers at once."""
        self._scorer: Scorer | None = None
        self._bank: Sequence[StoredRumor] = ()
        self.name = f"local, {workers} workers"

    def scorer(self) -> Scorer:
        if self._scorer is None:
            self._scorer = self._load(self._settings)
        return self._scorer

    def _started(self) -> ProcessPoolExecutor:
        if self._executor is None:
            self._executor = self._pool()
        return self._executor

    def _pool(self) -> ProcessPoolExecutor:
        # spawn: a forked child would inherit the parent's threads (Arrow's, tqdm's) mid-state
        context = multiprocessing.get_context("spawn")
        self._stop = context.Pipe(duplex=False)
        return ProcessPoolExecutor(
            self.workers,
            mp_context=context,
            initializer=_load,
            initargs=(self._load, self._settings, self._bank, self._stop[0]),
        )

    def _stop_workers(self) -> None:
        """End the current pool's workers at once (those that are still running)."""
        if self._stop is not None:
            for end in self._stop:
                end.close()
            self._stop = None

    def _send(
        self,
        segment: Segment,
        start: Start,
        one_by_one: bool = False,
        skip: frozenset[tuple[int, int]] = frozenset(),
        journal: str = "",
    ) -> Future[SegmentResult]:
        """:func:`_run` of these to the pool, which starts a worker for it when it has none
        idle: with SIGINT blocked, which the worker inherits, so that a Ctrl-C (delivered to
        every process of the run) reaches only this process, which stops the workers; one that
        reached a worker would print its traceback, or end it in its model load, which the pool
        does not survive. A SIGINT meanwhile waits until the worker has started."""
        # the pool first: starting multiprocessing's resource tracker unblocks SIGINT
        pool = self._started()
        held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            return pool.submit(_run, segment, start, one_by_one, skip, journal)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)

    def segments(
        self, segments: Sequence[Segment], first: bytes | None, bank: Sequence[StoredRumor]
    ) -> Iterator[SegmentResult]:
        """Each segment in a worker: the first from ``first``, the others warmed up."""
        self._bank = bank
        pending = iter(enumerate(segments))
        window: deque[tuple[Segment, Start, Future[SegmentResult]]] = deque()
        try:
            while True:
                while len(window) < self.workers * IN_FLIGHT_PER_WORKER:
                    item = next(pending, None)
                    if item is None:
                        break
                    n, segment = item
                    start: Start = first if n == 0 else WARM
                    window.append((segment, start, self._submit(segment, start)))
                if not window:
                    return
                segment, start, future = window.popleft()
                try:
                    yield future.result()
                except BrokenProcessPool:
                    stranded = [(segment, start), *((s, b) for s, b, _ in window)]
                    window.clear()
                    self._restart()
                    for segment, start in stranded:
                        yield self._isolate(segment, start)
        except BaseException:
            # the run stops (Ctrl-C, SIGTERM, a write error, a scorer error): the segments in
            # flight are not waited for
            self._stop_workers()
            raise
        finally:
            self._started().shutdown(wait=True, cancel_futures=True)
            self._executor = None
            self._stop_workers()

    def _submit(self, segment: Segment, start: Start) -> Future[SegmentResult]:
        try:
            return self._send(segment, start)
        except BrokenProcessPool as exc:
            # a worker died since the last result: the segment waits its turn with the others
            # in flight, which are then scored again one post at a time
            failed: Future[SegmentResult] = Future()
            failed.set_exception(exc)
            return failed

    def _restart(self) -> None:
        self._started().shutdown(wait=True, cancel_futures=True)
        self._stop_workers()
        self._executor = self._pool()

    def _isolate(self, segment: Segment, start: Start) -> SegmentResult:
        """Score ``segment`` post by post until it completes, rejecting each post that kills
        its worker."""
        killers: dict[tuple[int, int], str] = {}
        with tempfile.TemporaryDirectory(prefix="qinglang-journal-") as folder:
            journal = Path(folder) / "started"
            while True:
                journal.write_text("")
                skip = frozenset(killers)
                future = self._send(segment, start, True, skip, str(journal))
                try:
                    result = future.result()
                    break
                except BrokenProcessPool:
                    self._restart()
                    started = journal.read_text().splitlines()
                    if not started:
                        span = Span.between(segment.where, segment.tasks[0], segment.tasks[-1])
                        raise ScorerError(
                            "a worker process died before scoring any post of", span
                        ) from None
                    task, line, post_id = started[-1].split("\t", 2)
                    killers[int(task), int(line)] = json.loads(post_id)
        message = "the worker process died while scoring this post"
        for task_result in result.results:
            task_result.rejects.extend(
                Reject(task_result.path, line, post_id, "scorer_error", message, "")
                for (task, line), post_id in killers.items()
                if task == task_result.index
            )
            task_result.rejects.sort(key=lambda reject: reject.line)
        return result
