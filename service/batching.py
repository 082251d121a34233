"""Server-side micro-batching: concurrent requests become one model call, off the event loop.

A request's posts wait in a queue; the first waits at most ``window_s`` for others to join, then
up to ``max_posts`` posts (never splitting one request's) go to the scorer in one call on one of
``workers`` inference threads. While every worker is busy, new requests gather for the next
call, so load turns into larger batches instead of a longer queue.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from service.record import Post, ScoreRecord

ScoreMany = Callable[[Sequence[Post]], list[ScoreRecord]]


class OverloadedError(Exception):
    """The queue is full: answering later would be no use to a post waiting to be published."""


@dataclass
class _Job:
    posts: Sequence[Post]
    done: asyncio.Future[list[ScoreRecord]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class MicroBatcher:
    def __init__(
        self,
        score_many: ScoreMany,
        *,
        window_s: float,
        max_posts: int,
        max_queue: int = 1_000_000,
        workers: int = 1,
        on_batch: Callable[[int], None] = lambda size: None,
        on_depth: Callable[[int], None] = lambda depth: None,
    ) -> None:
        """``on_batch`` is told the size of each model call, ``on_depth`` the number of posts
        waiting each time it changes (a metric written as it changes can be read by another
        process)."""
        self.score_many = score_many
        self.window_s = window_s
        self.max_posts = max_posts
        self.max_queue = max_queue
        self.workers = workers
        self.on_batch = on_batch
        self.on_depth = on_depth
        self._jobs: list[_Job] = []
        self._depth = 0
        self._wake: asyncio.Event | None = None
        self._runner: asyncio.Task[None] | None = None
        self._calls: set[asyncio.Task[None]] = set()
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="inference")

    @property
    def depth(self) -> int:
        """Posts waiting for the model."""
        return self._depth

    async def score(self, posts: Sequence[Post]) -> list[ScoreRecord]:
        """The records of ``posts``; :class:`OverloadedError` when ``max_queue`` posts are waiting
        already (a request is always taken into an empty queue, however large)."""
        if not posts:
            return []
        waiting = self.depth
        if waiting and waiting + len(posts) > self.max_queue:
            raise OverloadedError(f"{waiting} posts are waiting for the model")
        loop = asyncio.get_running_loop()
        if (
            self._wake is None
            or self._runner is None
            or self._runner.done()
            or self._runner.get_loop() is not loop
        ):
            # started on first use in the loop that serves the requests (and again if that loop
            # changed: test clients run each app in a loop of their own)
            self._wake = asyncio.Event()
            self._runner = loop.create_task(self._run(self._wake))
        job = _Job(posts)
        self._jobs.append(job)
        self._waiting(len(posts))
        self._wake.set()
        return await job.done

    async def close(self) -> None:
        tasks = [t for t in (self._runner, *self._calls) if t is not None]
        if tasks and tasks[0].get_loop() is asyncio.get_running_loop():
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        self._executor.shutdown(wait=True)

    async def _run(self, wake: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        free = asyncio.Semaphore(self.workers)
        while True:
            await wake.wait()
            wake.clear()
            if self.depth < self.max_posts and self.window_s > 0:
                await asyncio.sleep(self.window_s)
            while self._jobs:
                # while every worker is busy, requests keep joining the next batch
                await free.acquire()
                call = loop.create_task(self._call(self._take(), free))
                self._calls.add(call)
                call.add_done_callback(self._calls.discard)

    async def _call(self, batch: list[_Job], free: asyncio.Semaphore) -> None:
        posts = [post for job in batch for post in job.posts]
        self.on_batch(len(posts))
        try:
            records = await asyncio.get_running_loop().run_in_executor(
                self._executor, self.score_many, posts
            )
        except Exception as exc:
            for job in batch:
                if not job.done.done():
                    job.done.set_exception(exc)
            return
        finally:
            free.release()
        start = 0
        for job in batch:
            if not job.done.done():  # the caller may have gone (client disconnect)
                job.done.set_result(records[start : start + len(job.posts)])
            start += len(job.posts)

    def _take(self) -> list[_Job]:
        batch = [self._jobs.pop(0)]
        total = len(batch[0].posts)
        while self._jobs and total + len(self._jobs[0].posts) <= self.max_posts:
            total += len(self._jobs[0].posts)
            batch.append(self._jobs.pop(0))
        self._waiting(-total)
        return batch

    def _waiting(self, change: int) -> None:
        self._depth += change
        self.on_depth(self._depth)
