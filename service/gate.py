"""The running service's way to storage: every call a request (or its background work) makes
passes :class:`StorageGate`, which skips storage while it is known to be down and gives up a call
that has not returned by its deadline.

The database's own timeouts (``db_timeout_s``: a SQLite lock, a PostgreSQL statement or lock,
connecting) end the waits it knows of. A server that stops answering with its connection open (a
failover, dropped packets, a hung host) is noticed by none of them: a query waits for the kernel,
which libpq's TCP settings (:func:`service.storage.database.make_engine`) shorten to seconds but
cannot shorten for a host whose kernel still acknowledges. The deadline ends the request's wait
whatever the cause; the call itself goes on in its thread, and whatever it does later is harmless:
a write that lands after its records were spooled is found by the drain (storage keeps one record
per post, model and policy version, and the drain's insert of it does nothing), a read is dropped.

The review API, the console and the rumour bank's refresh call storage through a lane of the gate
(:meth:`StorageGate.lane`): threads of their own, the same deadline and health. A review write
given up at the deadline may still land (:class:`StorageUnansweredError`): its client is told so,
and a retry with its ``Idempotency-Key`` gets the stored answer once it has. A read given up so
(a method marked :func:`~service.storage.repository.reads_only`: a session check, the
re-registration check) leaves nothing to land, and is answered as storage down, whatever the
request's method.

The gate's threads do not hold the process up as it exits (:class:`DaemonThreads`): a call stuck on
a database that stopped answering is dropped with the process, its connection closed, its
transaction rolled back by the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future
from functools import partial
from typing import Any, ParamSpec, TypeVar, cast

from service.storage import StorageError, StorageUnansweredError, StorageUnavailableError
from service.storage.repository import writes_nothing

log = logging.getLogger(__name__)

T = TypeVar("T")
P = ParamSpec("P")

THREADS = 4
"""Storage calls at once of the publish path. Each stuck call holds one until the kernel gives its
connection up, so at most this many: calls beyond them wait for a thread and, given up at their
deadline, never start."""
REVIEW_THREADS = 8
"""Storage calls at once of the review API, the console and the bank's refresh (their lane), held
alike. With the publish path's 4 and the maintenance's 2 (its upkeep, a batch's charges) they stay
within SQLAlchemy's pool of 15 connections a process, one held by each call as it runs."""


class DaemonThreads(Executor):
    """Up to ``threads`` threads (started as calls come) that run calls in order, and that do not
    hold the process up as it exits. A :class:`~concurrent.futures.ThreadPoolExecutor`'s threads
    are joined at exit whatever ``shutdown`` was told, so a call stuck on a database that stopped
    answering kept a stopped server from exiting until the kernel gave its connection up (for
    ever where the database's kernel still acknowledges)."""

    def __init__(self, threads: int, name: str) -> None:
        self._most, self._name = threads, name
        self._calls: queue.SimpleQueue[tuple[Future[Any], Callable[[], Any]] | None] = (
            queue.SimpleQueue()
        )
        self._threads: list[threading.Thread] = []
        self._idle = threading.Semaphore(0)
        self._lock = threading.Lock()
        self._closed = False

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        future: Future[T] = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError(f"{self._name}: cannot take calls after shutdown")
            self._calls.put((future, partial(fn, *args, **kwargs)))
            # a new thread only when none is idle, as ThreadPoolExecutor does
            if not self._idle.acquire(blocking=False) and len(self._threads) < self._most:
                thread = threading.Thread(
                    target=self._work, name=f"{self._name}_{len(self._threads)}", daemon=True
                )
                thread.start()
                self._threads.append(thread)
        return future

    def _work(self) -> None:
        while (taken := self._calls.get()) is not None:
            future, call = taken
            del taken  # a result or error is the future's, not this thread's, to keep alive
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(call())
                except BaseException as exc:  # as ThreadPoolExecutor: the caller's to see
                    future.set_exception(exc)
            del future, call
            self._idle.release()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._closed = True
            if cancel_futures:
                with contextlib.suppress(queue.Empty):
                    while True:
                        if (waiting := self._calls.get_nowait()) is not None:
                            waiting[0].cancel()
            for _ in self._threads:
                self._calls.put(None)
        if wait:
            for thread in self._threads:
                thread.join()

    def join(self, until: float) -> None:
        """After :meth:`shutdown`: wait for the calls under way to end, until ``until`` (a
        :func:`time.monotonic` time) at most."""
        for thread in self._threads:
            thread.join(max(0.0, until - time.monotonic()))


class StorageHealth:
    """Whether to try storage now: after a failure, calls leave it alone for ``retry_s`` (they
    spool instead of each waiting out a timeout); then one call at a time tries it (:meth:`admit`)
    until one succeeds.

    ``report`` is told whether storage is up: at the start (up until a call fails), then at each
    change."""

    def __init__(
        self,
        retry_s: float,
        probe_s: float,
        clock: Callable[[], float] = time.monotonic,
        report: Callable[[bool], None] = lambda up: None,
    ) -> None:
        self.retry_s, self.probe_s, self.clock, self.report = retry_s, probe_s, clock, report
        self.problem: str | None = None
        self._retry_at = 0.0
        self._lock = threading.Lock()  # the loop and the key checks' threads admit calls
        self._told: set[str] = set()
        report(True)

    def admit(self) -> bool:
        """Whether a call may go to storage now: any while it is up; once it failed, none for
        ``retry_s``, then one, and the next only ``probe_s`` (the first one's deadline) later.
        Were every call let through at the retry time, each would wait out its deadline on a
        database that stopped answering, and storage would be skipped between those waits only."""
        with self._lock:
            if self.problem is None:
                return True
            now = self.clock()
            if now < self._retry_at:
                return False
            self._retry_at = now + self.probe_s
            return True

    def failed(self, problem: str) -> None:
        with self._lock:
            if self.problem is None:
                log.warning("storage unavailable, answering degraded", extra={"problem": problem})
                self.report(False)
                self._told.clear()
            self.problem = problem
            self._retry_at = self.clock() + self.retry_s

    def ok(self) -> None:
        with self._lock:
            if self.problem is not None:
                log.info("storage available again")
                self.report(True)
            self.problem = None

    def first(self, loss: str) -> bool:
        """Whether ``loss`` (the words for background work storage did not take) is to be
        logged: always while storage is up, the first of its kind in an outage only, as each
        request of the outage loses the same (one line per request flooded the log)."""
        with self._lock:
            if self.problem is None:
                return True
            if loss in self._told:
                return False
            self._told.add(loss)
            return True


class StorageGate:
    """Runs storage calls on threads of their own (so that they never wait behind the model, nor
    the spool behind them), each given up at ``deadline_s``, and keeps :attr:`health`."""

    def __init__(
        self,
        deadline_s: float,
        retry_s: float,
        report: Callable[[bool], None] = lambda up: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.deadline_s = deadline_s
        self.health = StorageHealth(retry_s, deadline_s, clock, report)
        self._threads = DaemonThreads(THREADS, "storage")
        self._records_errors = True

    def lane(self, threads: int, name: str) -> StorageGate:
        """A gate with ``threads`` threads of its own and this one's deadline and health, for
        callers that must not hold the publish path's threads (the review API, the console). It
        skips storage while storage is known to be down, and a call it gives up at the deadline
        marks storage down for every caller, as this gate's do; an error storage answers with is
        its caller's alone (a row lock a reviewer waited for past ``db_timeout_s`` is no outage
        of the publish path) and marks nothing."""
        lane = copy.copy(self)  # shallow: the health is this gate's
        lane._threads = DaemonThreads(threads, name)
        lane._records_errors = False
        return lane

    async def call(self, call: Callable[..., T], *args: object) -> T:
        """``call(*args)``'s result, waited for on the event loop; :class:`StorageError` when it
        failed, when storage is known to be down, or when it did not return within the
        deadline (storage is then known to be down): :class:`StorageUnansweredError` where it
        had started, and may still take effect."""
        future = self._start(call, args)
        # told apart by the future, below; a call still waiting for a thread when this gives up
        # is cancelled with it. Not asyncio.wait_for: Python 3.11's swallows a cancellation of
        # the caller that meets the call's end, and the maintenance loop, cancelled so as the
        # server stopped, ran on and held the stop for ever
        with contextlib.suppress(TimeoutError, StorageError):
            async with asyncio.timeout(self.deadline_s):
                await asyncio.wrap_future(future)
        return self._outcome(future)

    def call_blocking(self, call: Callable[..., T], *args: object, reads: bool = False) -> T:
        """:meth:`call` for a caller on a thread of its own (it waits there); a call that
        ``reads`` only, given up at the deadline, is :class:`StorageUnavailableError`: it had
        nothing to write."""
        future = self._start(call, args)
        try:
            future.result(timeout=self.deadline_s)
        except (TimeoutError, StorageError):
            future.cancel()  # a call still waiting for a thread never starts
        return self._outcome(future, reads)

    def close(self, until: float) -> None:
        """Stop taking calls, and wait for those under way until ``until`` (a
        :func:`time.monotonic` time) at most. A call that outlived its caller's deadline still
        holds a connection, and may hold row locks in a transaction: storage closed under it
        leaves that transaction to end on its own, after whatever comes next (a new server's
        migration, a schema dropped) has waited for it or deadlocked with it. A call stuck on a
        database that stopped answering is not waited for past ``until``, here or at exit (it
        ends with the process, if not before)."""
        self._threads.shutdown(wait=False, cancel_futures=True)
        self._threads.join(until)

    def _start(self, call: Callable[..., T], args: tuple[object, ...]) -> Future[T]:
        if not self.health.admit():
            raise StorageUnavailableError(self.health.problem or "storage unavailable")
        return self._threads.submit(call, *args)

    def _outcome(self, future: Future[T], reads: bool = False) -> T:
        """The call's result or error, recorded in :attr:`health`; given up when it has not
        returned (a call of its own that raised TimeoutError has: it is raised as it is)."""
        if future.cancelled() or not future.done():
            problem = f"no answer from storage within storage_deadline_s ({self.deadline_s:g} s)"
            self.health.failed(problem)
            # one cancelled never started, one that reads has nothing to write; one still
            # running may yet write
            lands_nothing = future.cancelled() or reads
            raise (StorageUnavailableError if lands_nothing else StorageUnansweredError)(problem)
        try:
            result = future.result()
        except StorageError as exc:
            if self._records_errors:
                self.health.failed(str(exc))
            if reads and isinstance(exc, StorageUnansweredError):
                # a read's commit unanswered: it wrote nothing to land
                raise StorageUnavailableError(str(exc)) from exc
            raise
        self.health.ok()
        return result


class Deadlined:
    """``target`` with each of its methods called through ``gate``
    (:meth:`StorageGate.call_blocking`: waited for on the calling thread, given up at the
    deadline), its other attributes as they are: the storage of the review API's routers and of
    the console (which call it on the request's worker thread), in one place, so that no route
    of theirs reaches storage without the deadline; a method its class marks
    :func:`~service.storage.repository.reads_only` is given up as a read. Made by
    :func:`deadlined`."""

    def __init__(self, target: object, gate: StorageGate) -> None:
        self._target, self._gate = target, gate

    def __getattr__(self, name: str) -> Any:
        found = getattr(self._target, name)  # at each call: a method replaced meanwhile counts
        if not callable(found):
            return found

        reads = writes_nothing(type(self._target), name)

        def gated(*args: Any, **kwargs: Any) -> Any:
            return self._gate.call_blocking(partial(found, *args, **kwargs), reads=reads)

        return gated


def deadlined(target: T, gate: StorageGate) -> T:
    """``target`` with each method call given up at ``gate``'s deadline (:class:`Deadlined`),
    typed as ``target``: it has every method of it."""
    return cast(T, Deadlined(target, gate))
