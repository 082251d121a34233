"""``--engine local``: worker processes on this machine, each holding one scorer (one ONNX
session with one thread), fed tasks through a bounded window so that memory stays flat.

Results come back in task order. A worker process that dies (a segfault in a native library, the
out-of-memory killer) breaks the pool; the tasks it had in flight are then scored again one at a
time, post by post, each post's line number written to a journal file before it is scored, so
that the post that kills a worker again is found, rejected with the error, and the run goes on.
"""

from __future__ import annotations

import json
import multiprocessing
import tempfile
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import TYPE_CHECKING

from service.batch.sources import Task
from service.batch.work import Reject, Result, Scorer, ScorerError, ScorerFactory, run_task

if TYPE_CHECKING:
    from service.settings import Settings

IN_FLIGHT_PER_WORKER = 2
"""Tasks queued per worker: one running, one waiting, so that no worker idles between tasks."""

_scorer: Scorer | None = None
"""The worker process's scorer, loaded once by :func:`_load`."""


def _load(load: ScorerFactory, settings: Settings) -> None:
    global _scorer  # noqa: PLW0603 - one scorer per worker process, by design
    _scorer = load(settings)


def _run(
    task: Task, one_by_one: bool = False, skip: frozenset[int] = frozenset(), journal: str = ""
) -> Result:
    assert _scorer is not None, "the worker's initializer did not run"
    return run_task(task, _scorer, one_by_one=one_by_one, skip=skip, journal=journal or None)


class LocalEngine:
    def __init__(self, load: ScorerFactory, settings: Settings, workers: int) -> None:
        self._load = load
        self._settings = settings
        self.workers = workers
        self._executor: ProcessPoolExecutor | None = None
        self._scorer: Scorer | None = None
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
        return ProcessPoolExecutor(
            self.workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_load,
            initargs=(self._load, self._settings),
        )

    def results(self, tasks: Sequence[Task]) -> Iterator[Result]:
        pending = iter(tasks)
        window: deque[tuple[Task, Future[Result]]] = deque()
        try:
            while True:
                while len(window) < self.workers * IN_FLIGHT_PER_WORKER:
                    task = next(pending, None)
                    if task is None:
                        break
                    window.append((task, self._submit(task)))
                if not window:
                    return
                task, future = window.popleft()
                try:
                    yield future.result()
                except BrokenProcessPool:
                    stranded = [task, *(t for t, _ in window)]
                    window.clear()
                    self._restart()
                    for task in stranded:
                        yield self._isolate(task)
        finally:
            self._started().shutdown(wait=True, cancel_futures=True)
            self._executor = None

    def _submit(self, task: Task) -> Future[Result]:
        try:
            return self._started().submit(_run, task)
        except BrokenProcessPool as exc:
            # a worker died since the last result: the task waits its turn with the others
            # in flight, which are then scored again one post at a time
            failed: Future[Result] = Future()
            failed.set_exception(exc)
            return failed

    def _restart(self) -> None:
        self._started().shutdown(wait=True, cancel_futures=True)
        self._executor = self._pool()

    def _isolate(self, task: Task) -> Result:
        """Score ``task`` post by post until it completes, rejecting each post that kills its
        worker."""
        killers: dict[int, str] = {}
        with tempfile.TemporaryDirectory(prefix="qinglang-journal-") as folder:
            journal = Path(folder) / "started"
            while True:
                journal.write_text("")
                skip = frozenset(killers)
                future = self._started().submit(_run, task, True, skip, str(journal))
                try:
                    result = future.result()
                    break
                except BrokenProcessPool:
                    self._restart()
                    started = journal.read_text().splitlines()
                    if not started:
                        raise ScorerError(
                            f"a worker process died before scoring any post of {task.where}"
                        ) from None
                    line, post_id = started[-1].split("\t", 1)
                    killers[int(line)] = json.loads(post_id)
        message = "the worker process died while scoring this post"
        result.rejects.extend(
            Reject(task.path, line, post_id, "scorer_error", message, "")
            for line, post_id in killers.items()
        )
        result.rejects.sort(key=lambda reject: reject.line)
        return result
