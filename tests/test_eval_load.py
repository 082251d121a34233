"""The load benchmark's own parts: the server's CPU time read from ``/proc``, the table."""

from __future__ import annotations

import os
import threading
import time

from eval.load import Stage, process_cpu_s, table


def burn(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_cpu_time_is_the_processes_own_across_its_threads() -> None:
    before, process_before = process_cpu_s(os.getpid()), time.process_time()
    burn(0.3)
    worker = threading.Thread(target=burn, args=(0.3,))
    worker.start()
    worker.join()
    used, expected = process_cpu_s(os.getpid()) - before, time.process_time() - process_before
    # /proc counts in clock ticks (10 ms where USER_HZ is 100)
    assert abs(used - expected) < 0.05
    assert used >= 0.55


def test_the_table_shows_cpu_per_post() -> None:
    stage = Stage("POST /v1/score", "corpus", 100, 99.5, 99.5, 4.2, 9.0, 12.3, 0, 0.25, 0.1, 17.346)
    header, _, row = table([stage]).splitlines()
    assert header.split("|")[-2].strip() == "server CPU ms/post"
    assert row.split("|")[-2].strip() == "17.35"
