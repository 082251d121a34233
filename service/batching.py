"""Server-side micro-batching: concurrent requests become one model call, off the event loop.

Scoring has two stages (:mod:`service.pipeline`): ``prepare``, stateless and costly (the model),
and ``finish``, the cheap ordered stage. A request's posts wait in a queue; the first waits at
most ``window_s`` for others to join, then up to ``max_posts`` posts go to ``prepare`` in one
call on one of ``workers`` inference threads. A request that fits in a call is never split; one
of more than ``max_posts`` posts is cut into calls of ``max_posts``, and calls of the requests
that arrive meanwhile take turns with them: a single post waits for the call in progress and its
own, never shares a call with the rest of a large request, and is not held until the whole of
it is scored. Once all of a request's posts are prepared,
``finish`` runs for the whole request in its order, on a thread of its own: it never runs
concurrently with itself, and the requests a call completes are finished together in the order
they came, as one call. While every worker is busy, new requests gather for the next call, so
load turns into larger batches instead of a longer queue.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from service.record import Post, ScoreRecord

P = TypeVar("P")
"""What ``prepare`` makes of one post (:class:`service.pipeline.Prepared`)."""

Prepare = Callable[[Sequence[Post]], Sequence[P]]
Finish = Callable[[Sequence[Post], Sequence[P]], list[ScoreRecord]]


class OverloadedError(Exception):
    """The queue is full: answering later would be no use to a post waiting to be published."""


@dataclass(eq=False)
class _Job(Generic[P]):
    posts: Sequence[Post]
    done: asyncio.Future[list[ScoreRecord]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    taken: int = 0
    """Posts handed to ``prepare`` so far."""
    prepared: dict[int, Sequence[P]] = field(default_factory=dict)
    """What ``prepare`` made of each chunk, by the chunk's first post."""

    @property
    def ready(self) -> bool:
        return sum(len(chunk) for chunk in self.prepared.values()) == len(self.posts)


@dataclass(frozen=True)
class _Chunk(Generic[P]):
    job: _Job[P]
    start: int
    stop: int


class MicroBatcher(Generic[P]):
    def __init__(
        self,
        prepare: Prepare[P],
        finish: Finish[P],
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
        self.prepare = prepare
        self.finish = finish
        self.window_s = window_s
        self.max_posts = max_posts
        self.max_queue = max_queue
        self.workers = workers
        self.on_batch = on_batch
        self.on_depth = on_depth
        self._jobs: list[_Job[P]] = []
        """Requests not yet started, in the order they came."""
        self._rest: list[_Job[P]] = []
        """Requests cut into chunks with posts left, in turn."""
        self._fresh_last = False
        """Whether the last call was of requests not yet started (and taken whole)."""
        self._depth = 0
        self._wake: asyncio.Event | None = None
        self._runner: asyncio.Task[None] | None = None
        self._calls: set[asyncio.Task[None]] = set()
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="inference")
        self._ordered = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ordered")

    @property
    def depth(self) -> int:
        """Posts of the requests waiting for their first model call (a request being scored
        in chunks no longer waits: it holds the model one call at a time)."""
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
        job: _Job[P] = _Job(posts)
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
        self._ordered.shutdown(wait=True)

    async def _run(self, wake: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        free = asyncio.Semaphore(self.workers)
        while True:
            await wake.wait()
            wake.clear()
            if self.depth < self.max_posts and self.window_s > 0:
                await asyncio.sleep(self.window_s)
            while self._jobs or self._rest:
                # while every worker is busy, requests keep joining the next batch
                await free.acquire()
                chunks = self._take()
                if not chunks:  # what was left belonged to a request that failed meanwhile
                    free.release()
                    continue
                call = loop.create_task(self._call(chunks, free))
                self._calls.add(call)
                call.add_done_callback(self._calls.discard)

    async def _call(self, chunks: list[_Chunk[P]], free: asyncio.Semaphore) -> None:
        posts = [post for c in chunks for post in c.job.posts[c.start : c.stop]]
        self.on_batch(len(posts))
        loop = asyncio.get_running_loop()
        try:
            prepared = await loop.run_in_executor(self._executor, self.prepare, posts)
        except Exception as exc:
            for chunk in chunks:
                self._fail(chunk.job, exc)
            return
        finally:
            free.release()
        at = 0
        for chunk in chunks:
            chunk.job.prepared[chunk.start] = prepared[at : at + chunk.stop - chunk.start]
            at += chunk.stop - chunk.start
        # a call holds one chunk of a job at most, and the last chunk prepared completes it
        jobs = [c.job for c in chunks if c.job.ready]
        if not jobs:
            return
        every = [post for job in jobs for post in job.posts]
        ready = [p for job in jobs for start in sorted(job.prepared) for p in job.prepared[start]]
        try:
            records = await loop.run_in_executor(self._ordered, self.finish, every, ready)
        except Exception as exc:
            for job in jobs:
                self._fail(job, exc)
            return
        at = 0
        for job in jobs:
            if not job.done.done():  # the caller may have gone (client disconnect)
                job.done.set_result(records[at : at + len(job.posts)])
            at += len(job.posts)

    def _fail(self, job: _Job[P], exc: Exception) -> None:
        if not job.done.done():
            job.done.set_exception(exc)
        if job in self._rest:  # its other chunks would be scored for no one
            self._rest.remove(job)

    def _take(self) -> list[_Chunk[P]]:
        """The chunks of the next model call: the requests not yet started, in the order they
        came, while they fit (one too large for any call is cut, at the head of a call only),
        or the rest of the requests already cut, in turn, to fill the call. A call of requests
        not yet started leaves the next one to the cut requests, so that they advance under
        any load, and a small request never shares a call with the rest of a large one."""
        chunks: list[_Chunk[P]] = []
        room = self.max_posts
        if self._jobs and not (self._rest and self._fresh_last):
            while self._jobs and room:
                left = len(self._jobs[0].posts)
                if chunks and left > room:
                    break  # waits for a call of its own
                job = self._jobs.pop(0)
                self._waiting(-left)
                room -= self._cut(job, room, chunks)
            # a call that only began a large request leaves the next call to new requests too
            self._fresh_last = chunks[-1].stop == len(chunks[-1].job.posts)
            return chunks
        while self._rest and room:
            room -= self._cut(self._rest.pop(0), room, chunks)
        self._fresh_last = False
        return chunks

    def _cut(self, job: _Job[P], room: int, chunks: list[_Chunk[P]]) -> int:
        """Add ``job``'s next ``room`` posts at most to ``chunks``; their number. What is left
        of it waits behind the requests already cut."""
        size = min(len(job.posts) - job.taken, room)
        chunks.append(_Chunk(job, job.taken, job.taken + size))
        job.taken += size
        if job.taken < len(job.posts):
            self._rest.append(job)
        return size

    def _waiting(self, change: int) -> None:
        self._depth += change
        self.on_depth(self._depth)
