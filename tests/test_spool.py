"""The spool: durable, drained once, shared safely by several processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from servicekit import record

from service.record import ScoreRecord
from service.spool import Spool
from service.storage import Pending


class Store:
    """Keeps the first record per post, like the repository; fails from write ``fail_after``
    on (a transaction per write)."""

    def __init__(self, fail_after: int | None = None) -> None:
        self.records: dict[str, ScoreRecord] = {}
        self.enqueued: list[str] = []
        self.calls = 0
        self.fail_after = fail_after

    def write(self, items: list[Pending]) -> list[ScoreRecord]:
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise ConnectionError("storage went away")
        self.calls += 1
        for item in items:
            if item.record.id not in self.records:
                self.records[item.record.id] = item.record
                if item.enqueue:
                    self.enqueued.append(item.record.id)
        return [self.records[item.record.id] for item in items]


def test_drain_writes_every_spooled_record_once_and_empties_the_spool(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    for i in range(5):
        spool.append([Pending(record(f"p{i}"), enqueue=i % 2 == 0)])
    assert spool.pending() == 5
    store = Store()
    assert spool.drain(store.write) == 5
    assert sorted(store.records) == [f"p{i}" for i in range(5)]
    assert store.enqueued == ["p0", "p2", "p4"]
    assert spool.pending() == 0
    assert list(tmp_path.iterdir()) == []
    assert spool.drain(store.write) == 0


def test_a_drain_that_fails_midway_keeps_the_file_and_the_retry_stores_nothing_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("service.spool.CHUNK", 1)  # a transaction per record: fail between
    spool = Spool(tmp_path)
    for i in range(4):
        spool.append([Pending(record(f"p{i}"), enqueue=True)])
    store = Store(fail_after=2)
    with pytest.raises(ConnectionError):
        spool.drain(store.write)
    assert spool.pending() == 4  # the half-written file stays whole
    store.fail_after = None
    assert spool.drain(store.write) == 4
    assert sorted(store.records) == ["p0", "p1", "p2", "p3"]
    assert sorted(store.enqueued) == ["p0", "p1", "p2", "p3"]
    assert spool.pending() == 0


def test_appends_after_a_drain_go_to_a_new_file_and_are_drained_next_time(
    tmp_path: Path,
) -> None:
    spool = Spool(tmp_path)
    store = Store()
    spool.append([Pending(record("a"), enqueue=True)])
    spool.drain(store.write)
    spool.append([Pending(record("b"), enqueue=True)])
    assert spool.drain(store.write) == 1
    assert sorted(store.records) == ["a", "b"]


def test_a_torn_last_line_is_skipped_and_the_rest_is_written(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append([Pending(record("whole"), enqueue=True)])
    spool.close()
    (path,) = tmp_path.glob("*.jsonl")
    with open(path, "ab") as f:
        f.write(b'{"enqueue": true, "rec')  # a crash in the middle of an append
    store = Store()
    assert spool.drain(store.write) == 1
    assert list(store.records) == ["whole"]


CHILD = """
import sys
from pathlib import Path
sys.path.insert(0, {tests!r})
from servicekit import record
from service.spool import Spool
from service.storage import Pending
spool = Spool(Path({folder!r}))
spool.append([Pending(record("from-child"), enqueue=True)])
print("spooled", flush=True)
sys.stdin.read()  # hold the live file until killed
"""


def test_a_live_process_spool_is_left_alone_and_a_dead_one_is_drained(tmp_path: Path) -> None:
    code = CHILD.format(tests=str(Path(__file__).parent), folder=str(tmp_path))
    child = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "spooled"
        store = Store()
        ours = Spool(tmp_path)
        assert ours.drain(store.write) == 0  # its file is locked: it is still being written
        child.kill()
        child.wait()
        assert ours.drain(store.write) == 1
        assert list(store.records) == ["from-child"]
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert os.listdir(tmp_path) == []
