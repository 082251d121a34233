"""The spool: durable, drained once, shared safely by several processes."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import IO

import pytest
from servicekit import record

from service import spool as spool_module
from service.policy import Policy
from service.record import Post, ScoreRecord
from service.review.items import QueueRequest
from service.spool import BOOTS, Spool, Stamp, no_room
from service.storage import Pending, StorageUnavailableError, open_repository, upgrade


class Store:
    """Keeps the first record per post, like the repository; goes away from write
    ``fail_after`` on (a transaction per write), and refuses a write holding a post of
    ``refuses`` while it answers."""

    def __init__(self, fail_after: int | None = None, refuses: set[str] | None = None) -> None:
        self.records: dict[str, ScoreRecord] = {}
        self.enqueued: list[str] = []
        self.requests: list[QueueRequest] = []
        """Every review-queue request replayed, in order."""
        self.early: list[str] = []
        """The posts named by a request that came before their record."""
        self.calls = 0
        self.fail_after = fail_after
        self.refuses = refuses or set()

    def ping(self) -> None:
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise ConnectionError("storage went away")

    def write(self, items: list[Pending]) -> list[ScoreRecord]:
        self.ping()
        self.calls += 1
        if refused := self.refuses & {item.record.id for item in items}:
            raise ValueError(f"value too long for {sorted(refused)}")
        for item in items:
            if item.record.id not in self.records:
                self.records[item.record.id] = item.record
                if item.enqueue:
                    self.enqueued.append(item.record.id)
        return [self.records[item.record.id] for item in items]

    def enqueue(self, requests: list[QueueRequest]) -> list[str]:
        self.ping()
        self.calls += 1
        for request in requests:
            if request.post_id is not None and request.post_id not in self.records:
                self.early.append(request.post_id)
        self.requests.extend(requests)
        return [r.merge_key for r in requests]


def test_drain_writes_every_spooled_record_once_and_empties_the_spool(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    for i in range(5):
        spool.append([Pending(record(f"p{i}"), enqueue=i % 2 == 0)])
    assert spool.pending() == 5
    store = Store()
    assert spool.drain(store.write, store.ping, store.enqueue) == 5
    assert sorted(store.records) == [f"p{i}" for i in range(5)]
    assert store.enqueued == ["p0", "p2", "p4"]
    assert spool.pending() == 0
    assert list(tmp_path.iterdir()) == [tmp_path / BOOTS]
    assert spool.drain(store.write, store.ping, store.enqueue) == 0


def test_a_drain_that_fails_midway_keeps_the_file_and_the_retry_stores_nothing_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("service.spool.CHUNK", 1)  # a transaction per record: fail between
    spool = Spool(tmp_path)
    for i in range(4):
        spool.append([Pending(record(f"p{i}"), enqueue=True)])
    store = Store(fail_after=2)
    with pytest.raises(ConnectionError):
        spool.drain(store.write, store.ping, store.enqueue)
    assert spool.pending() == 4  # the half-written file stays whole
    store.fail_after = None
    assert spool.drain(store.write, store.ping, store.enqueue) == 4
    assert sorted(store.records) == ["p0", "p1", "p2", "p3"]
    assert sorted(store.enqueued) == ["p0", "p1", "p2", "p3"]
    assert spool.pending() == 0


def test_a_record_storage_refuses_is_set_aside_and_the_rest_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr("service.spool.CHUNK", 3)
    spool = Spool(tmp_path)
    for i in range(5):
        spool.append([Pending(record(f"p{i}"), enqueue=True, text=f"正文{i}")])
    store = Store(refuses={"p1"})
    assert spool.drain(store.write, store.ping, store.enqueue) == 4
    assert sorted(store.records) == ["p0", "p2", "p3", "p4"]
    assert spool.pending() == 0
    assert spool.rejected() == 1
    (aside,) = (tmp_path / "rejected").glob("*.jsonl")
    entry = json.loads(aside.read_text())
    assert entry["record"]["id"] == "p1" and entry["text"] == "正文1"
    assert entry["error"] == "ValueError: value too long for ['p1']"
    assert "spooled record refused, set aside" in caplog.text
    # set aside, it no longer holds the spool up: the next drain has nothing to do
    assert spool.drain(store.write, store.ping, store.enqueue) == 0
    # moved back once the cause is mended, it is drained like any spool file
    aside.rename(tmp_path / aside.name)
    store.refuses = set()
    assert spool.drain(store.write, store.ping, store.enqueue) == 1
    assert spool.rejected() == 0 and "p1" in store.records


def test_records_set_aside_are_logged_once_a_count_not_at_each_probe(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool = Spool(tmp_path)
    spool.append([Pending(record("p1"), enqueue=True)])
    store = Store(refuses={"p1"})
    spool.drain(store.write, store.ping, store.enqueue)

    def told() -> list[int]:
        return [r.rejected for r in caplog.records if r.msg == "spooled records set aside"]  # type: ignore[attr-defined]

    # /readyz asks at every probe until an operator mends the records: one line, not one a probe
    assert [spool.rejected() for _ in range(3)] == [1, 1, 1]
    assert told() == [1]
    spool.append([Pending(record("p2"), enqueue=True)])
    store.refuses = {"p2"}
    spool.drain(store.write, store.ping, store.enqueue)
    assert [spool.rejected() for _ in range(3)] == [2, 2, 2]
    assert told() == [1, 2]


def test_a_line_this_version_no_longer_takes_is_set_aside_not_dropped(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append([Pending(record("ok"), enqueue=True, post=Post(id="ok", text="好"))])
    spool.close()
    (path,) = tmp_path.glob("*.jsonl")
    old = {"enqueue": True, "record": record("old").model_dump(mode="json"), "text": "旧"}
    old["post"] = {"id": "old", "text": "旧", "created_at": float("nan")}  # taken before
    with open(path, "ab") as f:
        f.write(json.dumps(old).encode() + b"\n")
    store = Store()
    assert spool.drain(store.write, store.ping, store.enqueue) == 1
    assert list(store.records) == ["ok"]
    (aside,) = (tmp_path / "rejected").glob("*.jsonl")
    kept = json.loads(aside.read_text())
    assert kept["text"] == "旧" and "finite" in kept["error"]


def test_a_post_spooled_before_invisible_ids_were_refused_is_drained_as_it_was(
    tmp_path: Path,
) -> None:
    spool = Spool(tmp_path)
    spool.close()
    held = {"enqueue": True, "record": record("\u200b").model_dump(mode="json"), "text": "旧"}
    held["post"] = {"id": "\u200b", "text": "旧", "account_id": "\u2060\ufeff"}
    (tmp_path / "earlier.jsonl").write_bytes(json.dumps(held).encode() + b"\n")
    written: list[Pending] = []
    store = Store()

    def write(items: list[Pending]) -> list[ScoreRecord]:
        written.extend(items)
        return store.write(items)

    assert Spool(tmp_path).drain(write, store.ping, store.enqueue) == 1
    (item,) = written
    assert item.post is not None and (item.post.id, item.post.account_id) == (
        "\u200b",
        "\u2060\ufeff",
    )
    assert not (tmp_path / "rejected").exists()


def test_a_drain_that_loses_storage_while_trying_record_by_record_sets_nothing_aside(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("service.spool.CHUNK", 4)
    spool = Spool(tmp_path)
    for i in range(4):
        spool.append([Pending(record(f"p{i}"), enqueue=True)])
    store = Store(fail_after=2, refuses={"p0"})
    with pytest.raises(ConnectionError):
        spool.drain(store.write, store.ping, store.enqueue)
    assert spool.pending() == 4 and spool.rejected() == 0


def test_a_record_refused_before_an_outage_stops_the_drain_is_set_aside_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("service.spool.CHUNK", 1)
    spool = Spool(tmp_path)
    for i in range(3):
        spool.append([Pending(record(f"p{i}"), enqueue=True)])
    # p0 refused while storage answers, p1 written, then storage goes away before p2
    store = Store(fail_after=3, refuses={"p0"})
    with pytest.raises(ConnectionError):
        spool.drain(store.write, store.ping, store.enqueue)
    assert spool.pending() == 3
    store.fail_after = None
    assert spool.drain(store.write, store.ping, store.enqueue) == 2
    # the drain stopped by the outage and the one after it refused p0 alike: one entry, not two
    assert spool.rejected() == 1
    assert sorted(store.records) == ["p1", "p2"] and spool.pending() == 0


def test_a_database_locked_by_another_writer_sets_nothing_aside_and_is_drained_later(
    tmp_path: Path, policy: Policy
) -> None:
    # SQLite: a writer's lock lets the ping (a read) through and times the write out, which is
    # storage not answering now, not storage refusing the records
    url = f"sqlite:///{tmp_path / 'locked.db'}"
    upgrade(url)
    repository = open_repository(url, 0.1)
    enqueue = partial(repository.enqueue_requests, policy)
    spool = Spool(tmp_path / "spool")
    for i in range(3):
        spool.append([Pending(record(f"p{i}"), enqueue=True, text=f"正文{i}")])
    spool.close()
    writer = sqlite3.connect(tmp_path / "locked.db", isolation_level=None)
    try:
        writer.execute("BEGIN EXCLUSIVE")
        with pytest.raises(StorageUnavailableError, match="database is locked"):
            spool.drain(repository.save_records, repository.ping, enqueue)
        assert spool.pending() == 3 and spool.rejected() == 0
        writer.execute("ROLLBACK")
        assert spool.drain(repository.save_records, repository.ping, enqueue) == 3
        versions = record("p0").model_version, record("p0").policy_version
        assert sorted(repository.find_records(["p0", "p1", "p2"], *versions)) == ["p0", "p1", "p2"]
        assert spool.pending() == 0 and spool.rejected() == 0
    finally:
        writer.close()
        repository.close()


def test_appends_after_a_drain_go_to_a_new_file_and_are_drained_next_time(
    tmp_path: Path,
) -> None:
    spool = Spool(tmp_path)
    store = Store()
    spool.append([Pending(record("a"), enqueue=True)])
    spool.drain(store.write, store.ping, store.enqueue)
    spool.append([Pending(record("b"), enqueue=True)])
    assert spool.drain(store.write, store.ping, store.enqueue) == 1
    assert sorted(store.records) == ["a", "b"]


def test_a_torn_last_line_is_skipped_and_the_rest_is_written(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append([Pending(record("whole"), enqueue=True)])
    spool.close()
    (path,) = tmp_path.glob("*.jsonl")
    with open(path, "ab") as f:
        f.write(b'{"enqueue": true, "rec')  # a crash in the middle of an append
    store = Store()
    assert spool.drain(store.write, store.ping, store.enqueue) == 1
    assert list(store.records) == ["whole"]


CHILD = """
import sys
from pathlib import Path
sys.path.insert(0, {tests!r})
from servicekit import record
from service.spool import Spool
from service.storage import Pending, StorageUnavailableError, open_repository, upgrade
spool = Spool(Path({folder!r}))
spool.append([Pending(record("from-child"), enqueue=True)])
print("spooled", flush=True)
sys.stdin.read()  # hold the live file until killed
"""


def test_a_live_process_spool_is_written_in_turn_left_to_it_and_a_dead_one_drained(
    tmp_path: Path,
) -> None:
    code = CHILD.format(tests=str(Path(__file__).parent), folder=str(tmp_path))
    child = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "spooled"
        store = Store()
        ours = Spool(tmp_path)
        # its file is locked, still being written: its record is written in its turn, and the
        # file left to it
        assert ours.drain(store.write, store.ping, store.enqueue) == 0
        assert list(store.records) == ["from-child"] and ours.pending() == 1
        child.kill()
        child.wait()
        assert ours.drain(store.write, store.ping, store.enqueue) == 1
        assert list(store.records) == ["from-child"]
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert os.listdir(tmp_path) == [BOOTS]


def test_an_append_a_full_disk_cuts_short_leaves_no_part_of_its_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = Spool(tmp_path)
    spool.append([Pending(record("before"), enqueue=True)])
    write = os.write
    calls = []

    def full_midway(fd: int, data: bytes) -> int:
        calls.append(len(data))
        if len(calls) == 1:
            return write(fd, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with monkeypatch.context() as patched:
        patched.setattr(os, "write", full_midway)
        with pytest.raises(OSError, match="No space left"):
            spool.append([Pending(record("unanswered"), enqueue=True)])
    assert len(calls) == 2  # half a line reached the file before the disk was full
    # a torn line would have swallowed this acknowledged one in the drain
    spool.append([Pending(record("after"), enqueue=True)])
    store = Store()
    assert spool.drain(store.write, store.ping, store.enqueue) == 2
    assert sorted(store.records) == ["after", "before"]
    assert list(tmp_path.glob("*.jsonl")) == []


def test_a_live_file_that_cannot_be_locked_is_closed_and_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = Spool(tmp_path)
    locked: list[int] = []

    def no_locks(fd: int, operation: int) -> None:
        locked.append(fd)
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    with monkeypatch.context() as patched:
        patched.setattr(fcntl, "flock", no_locks)
        # held here, the exception holds the frame that opened the file: only a close closes it
        with pytest.raises(OSError, match="No locks available") as failed:
            spool.append([Pending(record("unanswered"), enqueue=True)])
        (fd,) = locked
        with pytest.raises(OSError) as closed:
            os.fstat(fd)
        assert closed.value.errno == errno.EBADF
        del failed
    assert list(tmp_path.iterdir()) == [tmp_path / BOOTS]
    spool.append([Pending(record("after"), enqueue=True)])
    store = Store()
    assert spool.drain(store.write, store.ping, store.enqueue) == 1
    assert list(store.records) == ["after"]


def test_a_live_file_a_drain_takes_before_it_is_locked_is_not_appended_to(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool, other = Spool(tmp_path), Spool(tmp_path)  # another process's, on the same folder
    store = Store()
    flock = fcntl.flock
    drains: list[int] = []

    def drain_first(fd: int, operation: int) -> None:
        # the new live file is created, not locked yet: another process's drain comes first
        # (its own lock goes straight through), finds it empty, and deletes it
        if not drains:
            drains.append(0)
            drains[0] = other.drain(store.write, store.ping, store.enqueue)
        flock(fd, operation)

    with monkeypatch.context() as patched:
        patched.setattr(fcntl, "flock", drain_first)
        spool.append([Pending(record("acknowledged"), enqueue=True)])
    assert drains == [0]
    assert spool.pending() == 1
    # still this process's live file
    assert other.drain(store.write, store.ping, store.enqueue) == 0
    spool.close()
    assert other.drain(store.write, store.ping, store.enqueue) == 1
    assert list(store.records) == ["acknowledged"]


def test_the_spool_folder_is_its_owners_alone(tmp_path: Path) -> None:
    """Spooled records hold posts' texts and accounts: no other user of the host reads them."""
    spool = Spool(tmp_path / "state" / "spool")
    spool.append([Pending(record("p1"), enqueue=False)])
    assert (tmp_path / "state" / "spool").stat().st_mode & 0o777 == 0o700


def at(seconds: float) -> Stamp:
    """A record's time, ``seconds`` into the boot by both clocks."""
    return Stamp(seconds, int(seconds * 1e9))


def spooled_by(spool: Spool, folder: Path, item: Pending, scored_at: Stamp) -> Path:
    """The file ``spool`` appends ``item`` to."""
    before = set(folder.glob("*.jsonl"))
    spool.append([item], scored_at)
    (path,) = set(folder.glob("*.jsonl")) - before
    return path


def test_a_post_spooled_by_two_processes_keeps_the_record_scored_first_whatever_the_names(
    tmp_path: Path,
) -> None:
    first, second = Spool(tmp_path), Spool(tmp_path)  # two processes' spools
    late = spooled_by(first, tmp_path, Pending(record("p", "block"), enqueue=True), at(20.0))
    early = spooled_by(second, tmp_path, Pending(record("p"), enqueue=True), at(10.0))
    first.append([Pending(record("q"), enqueue=True)], at(30.0))
    first.close()
    second.close()
    # names that sort the later record first
    late.rename(tmp_path / "spool-1-00000000.jsonl")
    early.rename(tmp_path / "spool-2-00000000.jsonl")
    store = Store()
    assert Spool(tmp_path).drain(store.write, store.ping, store.enqueue) == 3
    assert store.records["p"].decision == "review"
    assert store.enqueued == ["p", "q"]


def test_a_record_scored_first_in_a_live_process_file_stands_before_a_later_one_drained(
    tmp_path: Path,
) -> None:
    live, ours = Spool(tmp_path), Spool(tmp_path)  # another process's, still running
    live.append([Pending(record("p"), enqueue=True)], at(10.0))
    ours.append([Pending(record("p", "block"), enqueue=True)], at(20.0))
    store = Store()
    # its own; the live file stays the other's
    assert ours.drain(store.write, store.ping, store.enqueue) == 1
    assert store.records["p"].decision == "review"
    assert ours.pending() == 1
    live.close()
    assert ours.drain(store.write, store.ping, store.enqueue) == 1
    assert store.records["p"].decision == "review" and store.enqueued == ["p"]
    assert ours.pending() == 0


def test_a_drain_parses_a_write_s_worth_of_lines_at_a_time_in_the_order_scored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A drain that parsed every line before its first write held the whole spool in memory,
    at twice its size on disk: gigabytes after a long outage, in each server process."""
    monkeypatch.setattr("service.spool.CHUNK", 3)
    first, second, live = Spool(tmp_path), Spool(tmp_path), Spool(tmp_path)
    for i in range(5):  # two files' lines, the times interleaved, and a live process's
        first.append([Pending(record(f"a{i}"), enqueue=True)], scored_at=at(10.0 * i))
        second.append([Pending(record(f"b{i}"), enqueue=True)], scored_at=at(10.0 * i + 5))
    live.append([Pending(record("c"), enqueue=True)], scored_at=at(12.0))
    first.close()
    second.close()
    validate = ScoreRecord.model_validate
    parsed: list[str] = []

    def counted(obj: dict[str, object]) -> ScoreRecord:
        parsed.append(str(obj["id"]))
        return validate(obj)

    monkeypatch.setattr(ScoreRecord, "model_validate", counted)
    written: list[str] = []
    parsed_by_write: list[int] = []

    def write(items: list[Pending]) -> None:
        parsed_by_write.append(len(parsed))
        written.extend(item.record.id for item in items)

    assert Spool(tmp_path).drain(write, lambda: None, lambda requests: None) == 10
    assert parsed_by_write == [3, 6, 9, 11]
    assert written == ["a0", "b0", "a1", "c", "b1", "a2", "b2", "a3", "b3", "a4", "b4"]


def test_a_drain_that_finds_another_under_way_leaves_the_spool_to_it_at_once(
    tmp_path: Path,
) -> None:
    """Waiting behind a drain, which has no deadline, held up the maintenance of every other
    server process, and their finding that storage answers again, for as long as it ran."""
    ours, other = Spool(tmp_path), Spool(tmp_path)  # another process's, on the same folder
    ours.append([Pending(record("p"), enqueue=True)])
    store = Store()
    answers: list[int] = []
    waited: list[bool] = []
    # the other process's maintenance, which comes round while this drain waits on storage
    elsewhere = threading.Thread(
        target=lambda: answers.append(other.drain(store.write, store.ping, store.enqueue))
    )

    def write_slowly(items: list[Pending]) -> list[ScoreRecord]:
        elsewhere.start()
        elsewhere.join(5)
        waited.append(elsewhere.is_alive())
        return store.write(items)

    assert ours.drain(write_slowly, store.ping, store.enqueue) == 1
    elsewhere.join()
    assert waited == [False] and answers == [0]
    assert list(store.records) == ["p"] and ours.pending() == 0


def test_a_new_live_file_a_drain_takes_empty_is_let_go_before_the_drain_writes(
    tmp_path: Path,
) -> None:
    """A process creates its live file, then locks it: a drain that locked it in between held
    it (and that process's appends, the publish path's) until the whole drain was done."""
    ours = Spool(tmp_path)
    ours.append([Pending(record("p"), enqueue=True)])
    ours.close()
    # created by another process, not locked yet
    theirs = open(tmp_path / "spool-99999-00000000.jsonl", "ab")  # noqa: SIM115
    store = Store()
    appender_waits: list[bool] = []

    def write(items: list[Pending]) -> list[ScoreRecord]:
        try:
            fcntl.flock(theirs.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            appender_waits.append(True)
        else:
            # deleted before it was let go: that process opens another, and loses nothing
            appender_waits.append(os.fstat(theirs.fileno()).st_nlink != 0)
        return store.write(items)

    with theirs:
        assert ours.drain(write, store.ping, store.enqueue) == 1
    assert appender_waits == [False]
    assert list(store.records) == ["p"] and list(tmp_path.glob("*.jsonl")) == []


def test_lines_spooled_before_their_time_was_kept_go_first(tmp_path: Path) -> None:
    held = {"enqueue": True, "record": record("p").model_dump(mode="json"), "text": None}
    # the name of an earlier release's file, sorting after this one's
    (tmp_path / "spool-99999-ffffffff.jsonl").write_bytes(json.dumps(held).encode() + b"\n")
    spool = Spool(tmp_path)
    spool.append([Pending(record("p", "block"), enqueue=True)])
    store = Store()
    assert spool.drain(store.write, store.ping, store.enqueue) == 2
    assert store.records["p"].decision == "review"


def test_a_clock_set_back_between_two_processes_records_keeps_the_first_scored_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An NTP correction between the two: by the wall clock, the later record came first."""
    first, second = Spool(tmp_path), Spool(tmp_path)
    wall, set_back = time.time, [0.0]
    monkeypatch.setattr(time, "time", lambda: wall() - set_back[0])
    first.append([Pending(record("p", "block"), enqueue=True)])
    set_back[0] = 10.0
    second.append([Pending(record("p"), enqueue=True), Pending(record("q"), enqueue=True)])
    first.append([Pending(record("q", "block"), enqueue=True)])
    first.close()
    second.close()
    store = Store()
    assert Spool(tmp_path).drain(store.write, store.ping, store.enqueue) == 4
    assert store.records["p"].decision == "block"
    assert store.records["q"].decision == "review"
    assert store.enqueued == ["p", "q"]


def test_a_record_spooled_before_a_restart_of_the_host_goes_before_those_after_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The monotonic clock starts again at a boot: the boot's number orders the lines first."""
    boot_id = tmp_path / "boot_id"
    monkeypatch.setattr("service.spool.BOOT_ID", boot_id)
    folder = tmp_path / "spool"
    boot_id.write_text("a\n")
    before = Spool(folder)
    before.append([Pending(record("p", "block"), enqueue=True)], Stamp(100.0, 500 * 10**9))
    before.close()
    boot_id.write_text("b\n")
    after, beside = Spool(folder), Spool(folder)  # two processes of the new boot
    beside.append([Pending(record("q"), enqueue=True)], Stamp(100.0, 2 * 10**9))
    after.append([Pending(record("p"), enqueue=True)], Stamp(90.0, 3 * 10**9))
    after.append([Pending(record("q", "block"), enqueue=True)], Stamp(90.0, 4 * 10**9))
    beside.close()
    after.close()
    assert (folder / BOOTS).read_text() == "a\nb\n"
    store = Store()
    assert Spool(folder).drain(store.write, store.ping, store.enqueue) == 4
    assert store.records["p"].decision == "block"
    assert store.records["q"].decision == "review"


def test_a_boot_torn_in_the_boots_file_by_a_crash_is_dropped_not_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    boot_id = tmp_path / "boot_id"
    monkeypatch.setattr("service.spool.BOOT_ID", boot_id)
    folder = tmp_path / "spool"
    folder.mkdir()
    (folder / BOOTS).write_text("a\nb")  # b's append cut short: b spooled nothing
    boot_id.write_text("c\n")
    for _ in range(2):  # two processes of boot c: one number
        Spool(folder).append([Pending(record("p"), enqueue=True)])
    assert (folder / BOOTS).read_text() == "a\nc\n"
    assert {json.loads(f.read_bytes())["boot"] for f in folder.glob("*.jsonl")} == {1}


def test_lines_spooled_by_the_release_that_kept_only_the_wall_clock_go_first_in_its_order(
    tmp_path: Path,
) -> None:
    """Files spooled before an upgrade, drained after it beside the new release's lines."""

    def legacy(name: str, post: ScoreRecord, scored_at: float) -> None:
        held = {"scored_at": scored_at, "enqueue": True, "record": post.model_dump(mode="json")}
        (tmp_path / name).write_bytes(
            json.dumps(held | {"text": None, "post": None}).encode() + b"\n"
        )

    # wall times in the future: the new release's lines still come after them
    legacy("spool-1-00000000.jsonl", record("p", "block"), 3e10)
    legacy("spool-2-00000000.jsonl", record("p"), 2e10)
    legacy("spool-3-00000000.jsonl", record("q"), 4e10)
    spool = Spool(tmp_path)
    spool.append([Pending(record("q", "block"), enqueue=True)])
    store = Store()
    assert spool.drain(store.write, store.ping, store.enqueue) == 4
    assert store.records["p"].decision == "review"
    assert store.records["q"].decision == "review"
    assert store.enqueued == ["p", "q"]


@pytest.mark.parametrize(
    "when",
    [
        {"boot": "0", "monotonic_ns": 1},
        {"boot": 0, "monotonic_ns": 1.5},
        {"boot": 0, "monotonic_ns": ...},  # ...: left out
    ],
)
def test_a_line_whose_boot_or_clock_is_no_count_is_set_aside(
    tmp_path: Path, when: dict[str, object]
) -> None:
    spool = Spool(tmp_path)
    spool.append([Pending(record("ok"), enqueue=True)])
    spool.close()
    (path,) = tmp_path.glob("*.jsonl")
    given = json.loads(path.read_bytes()) | when | {"record": record("odd").model_dump(mode="json")}
    line = {name: value for name, value in given.items() if value is not ...}
    with open(path, "ab") as f:
        f.write(json.dumps(line).encode() + b"\n")
    store = Store()
    assert spool.drain(store.write, store.ping, store.enqueue) == 1
    assert list(store.records) == ["ok"] and spool.rejected() == 1


def test_a_folder_it_cannot_write_is_told_apart_from_a_full_disk(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "spool"
    spool = Spool(folder)
    assert spool.writable()
    # a file in the folder's place: permission bits would not stop the root the tests run as
    folder.rmdir()
    folder.write_bytes(b"")
    assert [spool.writable() for _ in range(3)] == [False, False, False]
    told = [r for r in caplog.records if r.msg == "the spool's folder cannot be written"]
    assert len(told) == 1 and told[0].folder == str(folder)  # type: ignore[attr-defined]
    with pytest.raises(OSError) as failed:
        spool.append([Pending(record("p"), enqueue=True)])
    assert not no_room(failed.value)
    assert no_room(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))
    folder.unlink()
    folder.mkdir()
    assert spool.writable()


def cluster(size: int) -> QueueRequest:
    """A coordinated batch's review item, at ``size`` posts."""
    members = [{"post_id": f"m{i}", "account_id": f"a{i}"} for i in range(size)]
    return QueueRequest(
        kind="cluster",
        merge_key="cluster:c1",
        head="coordination",
        severity="review",
        reach=size,
        evidence={"members": members},
        account_id="a0",
        model_version="sha256:m1",
    )


def bank_match(post_id: str) -> QueueRequest:
    return QueueRequest(
        kind="bank_match",
        merge_key=f"bank:r1:post:{post_id}",
        head="rumor",
        severity="review",
        reach=0,
        evidence={"confirmed_rumor": "r1", "notice": "已辟谣"},
        post_id=post_id,
        model_version="sha256:m1",
        text="正文",
    )


def test_a_review_request_is_replayed_after_the_record_it_names_whatever_the_files(
    tmp_path: Path,
) -> None:
    first, second = Spool(tmp_path), Spool(tmp_path)
    # p1's request in another file than its record (files sort by random names); p2's at the
    # time of its record, ahead of it in the file
    second.append([bank_match("p1")], scored_at=at(200.0))
    second.append([bank_match("p2")], scored_at=at(100.0))
    second.append([Pending(record("p2"), enqueue=True)], scored_at=at(100.0))
    first.append([Pending(record("p1"), enqueue=True)], scored_at=at(150.0))
    first.close()
    second.close()
    store = Store()
    assert Spool(tmp_path).drain(store.write, store.ping, store.enqueue) == 4
    assert store.early == []
    assert [r.post_id for r in store.requests] == ["p2", "p1"]
    assert list(tmp_path.iterdir()) == [tmp_path / BOOTS]


def test_a_live_process_review_requests_are_replayed_once_by_its_drain_a_dead_ones_by_the_next(
    tmp_path: Path,
) -> None:
    ours, theirs = Spool(tmp_path), Spool(tmp_path)
    theirs.append([Pending(record("p1"), enqueue=True)])
    theirs.append([cluster(3), bank_match("p1")])
    store = Store()
    # their record is written ahead, in its turn; their requests wait for their own drain
    assert ours.drain(store.write, store.ping, store.enqueue) == 0
    assert sorted(store.records) == ["p1"] and store.requests == []
    assert theirs.drain(store.write, store.ping, store.enqueue) == 3
    assert [r.merge_key for r in store.requests] == ["cluster:c1", "bank:r1:post:p1"]
    theirs.append([cluster(4)])
    theirs.close()  # its process ended: the next drain takes the file
    assert ours.drain(store.write, store.ping, store.enqueue) == 1
    assert [r.reach for r in store.requests] == [3, 0, 4]
    assert ours.pending() == 0 and store.early == []


def test_review_requests_drained_again_queue_each_item_once(tmp_path: Path, policy: Policy) -> None:
    url = f"sqlite:///{tmp_path / 'queue.db'}"
    upgrade(url)
    repository = open_repository(url, 1.0)
    enqueue = partial(repository.enqueue_requests, policy)
    try:
        # a drain that stopped after writing every line (before deleting the file) is done again
        for _ in range(2):
            spool = Spool(tmp_path / "spool")
            spool.append([Pending(record("p1"), enqueue=True, text="正文")])
            spool.append([cluster(3), bank_match("p1")])
            spool.close()
            assert spool.drain(repository.save_records, repository.ping, enqueue) == 3
        items = repository.list_items(policy).items
        assert sorted((i.kind, i.post_id, i.reach) for i in items) == [
            ("cluster", None, 3),
            ("score", "p1", 0),
        ]
        (post,) = [i for i in items if i.post_id == "p1"]
        assert post.evidence is not None and post.evidence["confirmed_rumor"] == "r1"
    finally:
        repository.close()


def test_a_review_request_line_this_version_cannot_read_is_set_aside(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.close()
    unknown = {"kind": "queue", "scored_at": 1.0, "request": {**asdict(cluster(2)), "kind": "x"}}
    (tmp_path / "later.jsonl").write_bytes(json.dumps(unknown).encode() + b"\n")
    store = Store()
    assert spool.drain(store.write, store.ping, store.enqueue) == 0
    assert store.requests == [] and spool.rejected() == 1


def test_a_line_that_is_json_but_no_object_is_set_aside_and_the_rest_drained(
    tmp_path: Path,
) -> None:
    """Only an edited file holds one; left in place, it failed every drain and kept every
    record behind it out of storage."""
    spool = Spool(tmp_path)
    spool.append([Pending(record("p1"), enqueue=True)])
    spool.close()
    (tmp_path / "edited.jsonl").write_bytes(b"[1]\n")
    store = Store()
    assert spool.drain(store.write, store.ping, store.enqueue) == 1
    assert list(store.records) == ["p1"] and spool.rejected() == 1


def test_an_unreadable_whole_line_is_set_aside_not_dropped(tmp_path: Path) -> None:
    """A crash tears only the last line, which ends without its newline; a whole line that is
    no JSON (a file mended by hand and moved back, a corrupt block) was dropped with its
    record and its file deleted."""
    spool = Spool(tmp_path)
    spool.append([Pending(record("p1"), enqueue=True)])
    spool.close()
    mended = b'{"enqueue": true, "record": {"id": "p2",\n'
    (tmp_path / "mended.jsonl").write_bytes(mended + b'{"enqueue": true, "rec')
    store = Store()
    assert spool.drain(store.write, store.ping, store.enqueue) == 1
    assert list(store.records) == ["p1"] and spool.rejected() == 1
    entry = json.loads((tmp_path / "rejected" / "mended.jsonl").read_text())
    assert entry["line"] == mended.decode().removesuffix("\n")
    assert entry["error"].startswith("JSONDecodeError: ")


def test_records_set_aside_by_a_drain_a_full_disk_stops_are_set_aside_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for refused in ("p0", "p1"):  # a file each, as two processes spool
        spool = Spool(tmp_path)
        spool.append(
            [Pending(record(refused), enqueue=True), Pending(record(f"ok-{refused}"), enqueue=True)]
        )
        spool.close()
    store = Store(refuses={"p0", "p1"})
    append_whole = spool_module._append_whole
    appends = []

    def full_at_the_second(f: IO[bytes], data: bytes) -> None:
        appends.append(data)
        if len(appends) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        append_whole(f, data)

    with monkeypatch.context() as patched:
        patched.setattr(spool_module, "_append_whole", full_at_the_second)
        with pytest.raises(OSError, match="No space left"):
            spool.drain(store.write, store.ping, store.enqueue)
    spool.drain(store.write, store.ping, store.enqueue)
    # each refused record set aside once, whichever file the disk filled up at
    assert spool.rejected() == 2 and spool.pending() == 0
    assert sorted(store.records) == ["ok-p0", "ok-p1"]
