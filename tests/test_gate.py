"""The storage gate (``service.gate``): when calls are let through to storage, and a call that
does not return by its deadline."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from service.gate import THREADS, StorageGate, StorageHealth
from service.storage import StorageError, StorageUnavailableError


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


@pytest.fixture
def gate() -> Iterator[StorageGate]:
    running = StorageGate(deadline_s=0.05, retry_s=60.0)
    yield running
    running.close()


def test_a_call_that_does_not_return_by_the_deadline_is_given_up_and_storage_is_down(
    gate: StorageGate,
) -> None:
    released = threading.Event()
    with pytest.raises(StorageUnavailableError, match=r"within storage_deadline_s \(0.05 s\)"):
        gate.call_blocking(released.wait, 60)
    assert gate.health.problem is not None and not gate.health.admit()
    with pytest.raises(StorageUnavailableError):  # skipped now, not waited for
        gate.call_blocking(lambda: "never called")
    released.set()


def test_a_call_given_up_while_it_waited_for_a_thread_never_starts(gate: StorageGate) -> None:
    released = threading.Event()
    for _ in range(THREADS):
        gate.health.ok()
        with pytest.raises(StorageUnavailableError):
            gate.call_blocking(released.wait, 60)
    started: list[str] = []
    gate.health.ok()
    with pytest.raises(StorageUnavailableError):
        gate.call_blocking(started.append, "late")
    released.set()
    gate._threads.shutdown(wait=True)  # every call still to run has run
    assert started == []


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
