"""The running service's way to storage: every call a request (or its background work) makes
passes :class:`StorageGate`, which skips storage while it is known to be down and gives up a call
that has not returned by its deadline.

The database's own timeouts (``db_timeout_s``: a SQLite lock, a PostgreSQL statement or lock,
connecting) end the waits it knows of. A server that stops answering with its connection open (a
failover, dropped packets, a hung host) is noticed by none of them: a query waits for the kernel,
which libpq's TCP settings (:func:`service.storage.sql.make_engine`) shorten to seconds but
cannot shorten for a host whose kernel still acknowledges. The deadline ends the request's wait
whatever the cause; the call itself goes on in its thread, and whatever it does later is harmless:
a write that lands after its records were spooled is found by the drain (storage keeps one record
per post, model and policy version, and the drain's insert of it does nothing), a read is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from service.security import KeyReader
from service.storage import ApiKey, StorageError, StorageUnavailableError

log = logging.getLogger(__name__)

T = TypeVar("T")

THREADS = 4
"""Storage calls at once. Each stuck call holds one until the kernel gives its connection up, so
at most this many: calls beyond them wait for a thread and, given up at their deadline, never
start."""


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
            self.problem = problem
            self._retry_at = self.clock() + self.retry_s

    def ok(self) -> None:
        with self._lock:
            if self.problem is not None:
                log.info("storage available again")
                self.report(True)
            self.problem = None


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
        self._threads = ThreadPoolExecutor(max_workers=THREADS, thread_name_prefix="storage")

    async def call(self, call: Callable[..., T], *args: object) -> T:
        """``call(*args)``'s result, waited for on the event loop; :class:`StorageError` when it
        failed, when storage is known to be down, or when it did not return within the
        deadline (storage is then known to be down)."""
        future = self._start(call, args)
        # told apart by the future, below; a call still waiting for a thread when this gives up
        # is cancelled with it
        with contextlib.suppress(TimeoutError, StorageError):
            await asyncio.wait_for(asyncio.wrap_future(future), self.deadline_s)
        return self._outcome(future)

    def call_blocking(self, call: Callable[..., T], *args: object) -> T:
        """:meth:`call` for a caller on a thread of its own (it waits there)."""
        future = self._start(call, args)
        try:
            future.result(timeout=self.deadline_s)
        except (TimeoutError, StorageError):
            future.cancel()  # a call still waiting for a thread never starts
        return self._outcome(future)

    def close(self) -> None:
        """Stop taking calls; a call stuck on a database that stopped answering is not waited
        for (it ends when the kernel gives its connection up)."""
        self._threads.shutdown(wait=False, cancel_futures=True)

    def _start(self, call: Callable[..., T], args: tuple[object, ...]) -> Future[T]:
        if not self.health.admit():
            raise StorageUnavailableError(self.health.problem or "storage unavailable")
        return self._threads.submit(call, *args)

    def _outcome(self, future: Future[T]) -> T:
        """The call's result or error, recorded in :attr:`health`; given up when it has not
        returned (a call of its own that raised TimeoutError has: it is raised as it is)."""
        if future.cancelled() or not future.done():
            problem = f"no answer from storage within storage_deadline_s ({self.deadline_s:g} s)"
            self.health.failed(problem)
            raise StorageUnavailableError(problem)
        try:
            result = future.result()
        except StorageError as exc:
            self.health.failed(str(exc))
            raise
        self.health.ok()
        return result


class GatedKeys:
    """The API keys of ``keys`` as :class:`service.security.Guard` reads them on a request:
    through the gate, so that a key never seen before, while storage hangs or is known to be
    down, gets the guard's 503 within the deadline instead of a request that waits."""

    def __init__(self, keys: KeyReader, gate: StorageGate) -> None:
        self.keys, self.gate = keys, gate

    def get_key(self, key_id: str) -> ApiKey | None:
        return self.gate.call_blocking(self.keys.get_key, key_id)
