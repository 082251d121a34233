"""The storage gate (``service.gate``): when calls are let through to storage, and a call that
does not return by its deadline."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path

import pytest
from servicekit import wait_for

from service.gate import THREADS, StorageGate, StorageHealth, deadlined
from service.storage import StorageError, StorageUnansweredError, StorageUnavailableError
from service.storage.repository import reads_only


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_after_a_failure_one_call_at_a_time_tries_storage_until_one_succeeds() -> None:
    clock, reported = Clock(), list[bool]()
    health = StorageHealth(retry_s=2.0, probe_s=5.0, clock=clock, report=reported.append)
    assert health.admit() and health.admit()  # up: every call
    health.failed("down")
    assert not health.admit()
    clock.now += 2.0
    # one call tries; while it may still be waiting out its deadline, the others skip storage
    assert health.admit()
    assert not health.admit()
    clock.now += 4.9
    assert not health.admit()
    clock.now += 0.1  # its deadline has passed, and it did not say: the next one tries
    assert health.admit()
    health.ok()
    assert health.admit() and health.admit()
    assert reported == [True, False, True]


def test_work_storage_did_not_take_is_told_once_an_outage_and_always_while_it_is_up() -> None:
    health = StorageHealth(retry_s=2.0, probe_s=5.0, clock=Clock())
    assert health.first("lost") and health.first("lost")
    health.failed("down")
    # each request of an outage loses the same: one line each would flood the log
    assert health.first("lost") and health.first("other")
    assert not health.first("lost") and not health.first("other")
    health.failed("down again")  # the same outage
    assert not health.first("lost")
    health.ok()
    health.failed("down")  # a new outage is told anew
    assert health.first("lost") and not health.first("lost")


@pytest.fixture
def gate() -> Iterator[StorageGate]:
    # the deadline times a call's start on its thread too, which a test of a call given up
    # once under way (StorageUnansweredError), or of a healthy one, needs: 0.05 s left a loaded
    # host no room for it
    running = StorageGate(deadline_s=0.5, retry_s=60.0)
    yield running
    running.close(time.monotonic())


def test_a_call_that_does_not_return_by_the_deadline_is_given_up_and_storage_is_down(
    gate: StorageGate,
) -> None:
    released = threading.Event()
    # it had started: it may still do what it was called for
    with pytest.raises(StorageUnansweredError, match=r"within storage_deadline_s \(0.5 s\)"):
        gate.call_blocking(released.wait, 60)
    assert gate.health.problem is not None and not gate.health.admit()
    with pytest.raises(StorageUnavailableError):  # skipped now, not waited for
        gate.call_blocking(lambda: "never called")
    released.set()


def test_a_read_given_up_at_the_deadline_is_storage_unavailable_with_nothing_to_land(
    gate: StorageGate,
) -> None:
    """Through :func:`deadlined`, a method marked :func:`reads_only` (or of a class marked so),
    even one replaced on the instance, is given up as a read; any other as a write."""

    class Store:
        @reads_only
        def look(self, wait: threading.Event) -> bool:
            return wait.wait(60)

        def change(self, wait: threading.Event) -> bool:
            return wait.wait(60)

    released = threading.Event()
    store = Store()
    gated = deadlined(store, gate)
    with pytest.raises(StorageUnavailableError) as read:
        gated.look(released)
    assert not isinstance(read.value, StorageUnansweredError)
    assert "within storage_deadline_s" in str(read.value)
    gate.health.ok()
    store.look = store.change  # type: ignore[method-assign]
    with pytest.raises(StorageUnavailableError) as replaced:
        gated.look(released)
    assert not isinstance(replaced.value, StorageUnansweredError)
    gate.health.ok()
    with pytest.raises(StorageUnansweredError):
        gated.change(released)
    gate.health.ok()
    with pytest.raises(StorageUnavailableError) as whole:
        deadlined(reads_only(Store)(), gate).change(released)
    assert not isinstance(whole.value, StorageUnansweredError)
    released.set()


def test_a_read_whose_commit_storage_did_not_answer_is_storage_unavailable(
    gate: StorageGate,
) -> None:
    """Storage raises :class:`StorageUnansweredError` where a connection was lost as it
    committed; a read had nothing to commit, and its request is told storage is down."""

    class Store:
        @reads_only
        def look(self) -> None:
            raise StorageUnansweredError("OperationalError: server closed the connection")

        def change(self) -> None:
            self.look()

    gated = deadlined(Store(), gate)
    with pytest.raises(StorageUnavailableError) as read:
        gated.look()
    assert not isinstance(read.value, StorageUnansweredError)
    gate.health.ok()
    with pytest.raises(StorageUnansweredError):
        gated.change()


def test_a_call_given_up_while_it_waited_for_a_thread_never_starts(gate: StorageGate) -> None:
    released = threading.Event()
    for _ in range(THREADS):
        gate.health.ok()
        with pytest.raises(StorageUnavailableError):
            gate.call_blocking(released.wait, 60)
    started: list[str] = []
    gate.health.ok()
    with pytest.raises(StorageUnavailableError) as late:
        gate.call_blocking(started.append, "late")
    assert not isinstance(late.value, StorageUnansweredError)
    released.set()
    gate._threads.shutdown(wait=True)  # every call still to run has run
    assert started == []


def test_a_caller_cancelled_as_its_call_ends_is_cancelled(monkeypatch: pytest.MonkeyPatch) -> None:
    """The cancellation of a task whose storage call ends in the same turn of the event loop
    (a maintenance loop cancelled as the server stops) ends the task."""
    gate = StorageGate(deadline_s=30.0, retry_s=60.0)
    released = threading.Event()
    submitted: list[Future[object]] = []
    submit = gate._threads.submit

    def watched(call: Callable[..., object], *args: object) -> Future[object]:
        submitted.append(submit(call, *args))
        return submitted[-1]

    monkeypatch.setattr(gate._threads, "submit", watched)

    async def cancelled_as_it_ends() -> bool:
        caller = asyncio.create_task(gate.call(released.wait, 60))
        await asyncio.sleep(0)  # the call is on its thread
        released.set()
        # the loop held until the call has ended: its end and the cancellation meet
        wait_for(lambda: bool(submitted) and submitted[0].done())
        caller.cancel()
        await asyncio.wait([caller], timeout=10)
        return caller.cancelled()

    try:
        assert asyncio.run(cancelled_as_it_ends())
    finally:
        gate.close(time.monotonic())


def test_storage_errors_are_recorded_and_other_errors_pass_through(gate: StorageGate) -> None:
    def failing() -> None:
        raise StorageError("refused")

    with pytest.raises(StorageError, match="refused"):
        gate.call_blocking(failing)
    assert gate.health.problem == "refused"
    gate.health.ok()

    def broken() -> None:
        raise RuntimeError("a bug")

    with pytest.raises(RuntimeError, match="a bug"):
        gate.call_blocking(broken)
    assert gate.health.problem is None
    assert gate.call_blocking(lambda: 42) == 42


def test_a_lane_shares_the_deadline_and_health_but_not_the_threads_nor_the_errors_storage_answers(
    gate: StorageGate,
) -> None:
    lane = gate.lane(THREADS, "lane")

    def refused() -> None:
        raise StorageError("LockNotAvailable: canceling statement due to lock timeout")

    with pytest.raises(StorageError, match="lock timeout"):
        lane.call_blocking(refused)
    assert gate.health.problem is None  # the lane caller's alone: no outage
    released = threading.Event()
    with pytest.raises(StorageUnansweredError):
        lane.call_blocking(released.wait, 60)
    # storage did not answer: down for every caller, the lane's and the gate's
    assert gate.health.problem is not None
    with pytest.raises(StorageUnavailableError):
        gate.call_blocking(lambda: "never called")
    with pytest.raises(StorageUnavailableError):
        lane.call_blocking(lambda: "never called")
    for _ in range(THREADS - 1):
        gate.health.ok()
        with pytest.raises(StorageUnansweredError):
            lane.call_blocking(released.wait, 60)
    gate.health.ok()
    assert gate.call_blocking(lambda: 42) == 42  # every thread of the lane held, none of its
    released.set()
    lane.close(time.monotonic())


def test_a_call_under_way_is_waited_for_at_close(gate: StorageGate) -> None:
    """A call given up at its deadline still holds its connection, and maybe a transaction's
    locks: closing storage under it left the transaction to whatever came next (a dropped
    schema deadlocked with a maintenance sweep's)."""
    released, ended = threading.Event(), threading.Event()

    def held() -> None:
        released.wait(60)
        ended.set()

    with pytest.raises(StorageUnansweredError):
        gate.call_blocking(held)
    closing = threading.Thread(target=gate.close, args=(time.monotonic() + 60,))
    closing.start()
    closing.join(0.3)
    assert closing.is_alive(), "close returned while a call was under way"
    released.set()
    closing.join(60)
    assert not closing.is_alive() and ended.is_set()


def test_a_call_left_waiting_does_not_hold_the_process_at_exit() -> None:
    """A call stuck on a database that stopped answering is waited for until close's time and
    no longer, and ends with the process: a thread pool's threads, joined at exit whatever it
    was told, kept a stopped server running for as long as the call waited."""
    code = (
        "import threading, time\n"
        "from service.gate import StorageGate\n"
        "gate = StorageGate(deadline_s=0.5, retry_s=60.0)\n"
        "try:\n"
        "    gate.call_blocking(threading.Event().wait)\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__)\n"
        "gate.close(time.monotonic() + 0.2)\n"
    )
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        cwd=root,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "StorageUnansweredError"
