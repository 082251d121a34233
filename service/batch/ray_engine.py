"""``--engine ray``: the same tasks and the same :func:`~service.batch.work.run_task` as a Ray
Data pipeline, on a cluster (``--ray-address``) or on a local Ray started for the run.

The dataset holds the task descriptions only (a few hundred bytes per 2,048 posts); each actor
of the pool loads the scorer once and reads its task's slice of the input itself, so the input
must sit where every node sees it at the same path (a shared file system). Results come back to
the driver in task order (``preserve_order``), which runs the stateful stage on them in input
order (one near-duplicate window for the run, see :mod:`service.rescore`), writes and checkpoints
them as the local engine's are. An actor that dies mid-task is restarted and its task retried by
Ray; the driver takes each task's result once, in order, so a retried task cannot be written
twice.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from service.batch.sources import Task
from service.batch.work import Result, Scorer, ScorerFactory, run_task

if TYPE_CHECKING:
    from service.settings import Settings

LOCAL_OBJECT_STORE_BYTES = 512 << 20
"""Object store of a Ray started for the run: results stream through it, they do not pile up."""


class _TaskScorer:
    """One actor of the pool: one scorer, loaded when the actor starts."""

    def __init__(self, load: ScorerFactory, settings: Settings) -> None:
        self._scorer = load(settings)

    def __call__(self, batch: dict[str, np.ndarray[Any, Any]]) -> dict[str, list[bytes]]:
        tasks = [pickle.loads(blob) for blob in batch["task"]]
        return {"result": [pickle.dumps(run_task(task, self._scorer)) for task in tasks]}


class RayEngine:
    def __init__(
        self, load: ScorerFactory, settings: Settings, workers: int, address: str | None
    ) -> None:
        self._load = load
        self._settings = settings
        self.workers = workers
        self.address = address
        self.name = f"ray, {workers} actors" + (f" on {address}" if address else "")
        self._scorer: Scorer | None = None

    def scorer(self) -> Scorer:
        if self._scorer is None:
            self._scorer = self._load(self._settings)
        return self._scorer

    def results(self, tasks: Sequence[Task]) -> Iterator[Result]:
        import ray

        started = not ray.is_initialized()
        if started:
            options: dict[str, Any] = (
                {"address": self.address}
                if self.address
                else {
                    "num_cpus": self.workers,
                    "object_store_memory": LOCAL_OBJECT_STORE_BYTES,
                }
            )
            ray.init(include_dashboard=False, log_to_driver=False, **options)
        try:
            yield from self._run(tasks)
        finally:
            if started:
                ray.shutdown()

    def _run(self, tasks: Sequence[Task]) -> Iterator[Result]:
        import ray.data

        if not tasks:
            return
        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True
        context.enable_progress_bars = False
        # the run prints its own progress and summary
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        items = [{"task": pickle.dumps(task)} for task in tasks]
        dataset = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
            _TaskScorer,
            fn_constructor_args=(self._load, self._settings),
            batch_size=1,
            # Ray Data restarts a killed actor of the pool and retries its task, forever
            compute=ray.data.ActorPoolStrategy(size=self.workers),
            num_cpus=1,
        )
        for row in dataset.iter_rows():
            yield pickle.loads(row["result"])
