"""A local, durable spool for flagged records, and review-queue requests, that storage could not
take.

While storage is down, each record the policy says to persist is appended to this process's spool
file as one JSON line and fsynced before the request is answered, so a crash after the answer
loses nothing. :meth:`Spool.drain` writes the spooled records to storage and deletes a file only
once every line of it is stored; as storage keeps one record per post, model version and policy
version, replaying a file that was partly written before a crash stores nothing twice.

Several server processes share the folder: each holds an exclusive ``flock`` on its own live
file while it runs, and a drain takes the same lock on a file before reading it, so two
processes never drain one file at once, and the file of a process that died (its lock gone
with it) is drained by whichever process comes next.

A post scored again while storage is down (by another process, or by this one after a restart)
is spooled twice, and storage keeps the record written first, so the first record scored must
be written first: each line holds when its record was scored, and a drain (one at a time across
the processes, under a lock on the folder) writes the lines of every file in that order, those
of other live processes' files too. That order is not the wall clock's, which an NTP correction
or an operator may set back between two records: it is the host's boot (its number in the
folder's ``boots`` file, where each boot that spools adds its id, fsynced before its first line)
and the monotonic clock, which every process of a boot shares and nothing sets back. The line's
wall-clock time (``scored_at``) is kept for whoever reads the file, and orders only the lines of
the release before, which kept nothing else.

A drain that finds another under way leaves the spool to it at once: waiting for it (a drain
has no deadline) would hold up the maintenance of its process, and its finding that storage
answers again. It deletes only the files it took; the lines it read from a live file are
written again, as no-ops, by the drain that takes that file. Lines spooled before their time
was kept go first, in file order, then those that kept only the wall clock's, in its order: they
were spooled before this release started.

A spool grows for as long as storage is down, to gigabytes after a long outage, and a line
parsed takes about twice its size in memory, in a process that also holds the model. So a drain
reads the files twice: first to note each line's time, kind and place (file, offset, length:
about 200 bytes however long the line), which it sorts, then, in that order, to parse the lines
again from their places (``os.pread``, as the files stay open and locked) a write's worth at a
time. A live process's file only grows meanwhile, by appends after the whole lines noted.

The review-queue requests made after an answer (a coordinated batch's item, a bank match's) that
storage did not take are lines of their own kind (``"kind": "queue"``) in the same files, with
the time they were spooled: after the records they name were scored, so a drain replays each
after its post's record (at one time, records go first). Replaying one is idempotent, as the
queue keeps one open item per merge key (and a bank match joins its post's open item). Another
live process's requests are left to the drain that takes its file: none is owed a turn, as the
record each names is before it in its own file or stored already.

A record that storage refuses while it answers (a value a column cannot hold) would fail every
drain and keep every record behind it out of storage, so a failed write is retried record by
record while storage still answers, and a record refused alone is set aside in ``rejected/``
with the error, for an operator: kept, logged, and no longer in the way. A write storage did not
do now (:class:`~service.storage.StorageUnavailableError`: locked, timed out, read-only, full)
refuses nothing, even where a ping still answers (a SQLite file locked by a writer still reads):
the drain stops there and the file waits for the next one.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import stat
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any, NamedTuple, cast

from service.record import Post, ScoreRecord
from service.review.items import KINDS, QueueRequest
from service.storage import Pending, StorageUnavailableError

log = logging.getLogger(__name__)

Write = Callable[[list[Pending]], object]
"""Stores records (each enqueued for review when it says so), idempotently; raises on failure."""
Enqueue = Callable[[list[QueueRequest]], object]
"""Puts requests in the review queue, idempotently (the repository's ``enqueue_requests``);
raises on failure."""
Reachable = Callable[[], object]
"""Returns when storage answers, raises when it does not (the repository's ``ping``)."""

CHUNK = 500
"""Records per write while draining: one transaction each."""
REJECTED = "rejected"
"""The spool folder's subfolder for the records storage refused."""
BOOTS = "boots"
"""The spool folder's list of the boots that spooled in it, one id a line, in boot order: a
line's place in the order starts with its boot's number there. Part of the spool: it goes only
with the spool files."""
BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
"""Linux's id of the current boot, the same for every process until the host restarts."""
QUEUE = "queue"
"""The ``kind`` of a spooled review-queue request's line (a record's line has none)."""
NO_ROOM = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
"""The errors of a spool with no room (a full disk, a quota, a file size limit), as against one
it cannot write at all."""


class Stamp(NamedTuple):
    """When a record was scored, read before it is tried in storage (:func:`stamp`)."""

    wall: float
    """Unix seconds, for the reader of a spool file: no part of a drain's order."""
    monotonic_ns: int
    """The boot's monotonic clock, shared by its processes: the drain's order in a boot."""


def stamp() -> Stamp:
    """Now."""
    return Stamp(time.time(), time.monotonic_ns())


class _Place(NamedTuple):
    """A spooled line's turn in a drain, and where it lies: sorted, the places are in the
    drain's order (lines of one time in their files' order and their order in a file, records
    before requests, which name them)."""

    era: int
    """0: a line of a release that kept no time; 1: one that kept only the wall clock's; from
    2 on, 2 plus its boot's number in :data:`BOOTS`."""
    at: float
    """Its time in its era: none (0), the wall clock's, the boot's monotonic clock's."""
    request: bool
    file: int
    """The file's number among those the drain reads (in name order)."""
    offset: int
    length: int


_Unusable = tuple[_Place, Exception]
"""A line of a file a drain took that this version no longer takes (its checks grew stricter, or
it is no JSON), or whose record storage refused, set aside once the rest is written, and why."""


@dataclass(frozen=True)
class _File:
    """A spool file a drain reads: ``path`` where the drain took it (to set its lines aside,
    and delete it), None where it is another live process's."""

    f: IO[bytes]
    path: Path | None

    def read(self, place: _Place) -> bytes:
        return os.pread(self.f.fileno(), place.length, place.offset)


@dataclass(frozen=True)
class _Line:
    """A spooled record or review-queue request read by a drain, at ``place``; ``path`` is its
    file's, as in :class:`_File`."""

    item: Pending | QueueRequest
    path: Path | None
    place: _Place


class Spool:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        # the owner's alone: spooled records hold the posts' texts and their accounts
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._live: IO[bytes] | None = None
        self._live_path: Path | None = None
        self._live_lines = 0
        self._rejected = 0
        self._writable = True
        self._boot: int | None = None
        """This boot's number in :data:`BOOTS`, once this process spooled."""

    def append(
        self, items: Sequence[Pending | QueueRequest], scored_at: Stamp | None = None
    ) -> None:
        """Add ``items``, scored at ``scored_at`` (now when not given: a review request's time,
        after its records'), to the spool; durable when this returns. Raises ``OSError`` (a
        full disk, a folder it cannot write: :func:`no_room` tells them apart) with none of
        them in the spool, and no part of one."""
        at = stamp() if scored_at is None else scored_at
        with self._lock:
            if self._boot is None:
                self._boot = _boot_number(self.folder)
            lines = b"".join(_line(i, at, self._boot) for i in items)
            live = self._open_live()
            try:
                _append_whole(live, lines)
            except OSError:
                # should the cut back fail too, the torn tail ends the file: nothing follows it
                self._close_live()
                raise
            self._live_lines += len(items)

    def room(self) -> int:
        """Bytes left for the spool on its disk."""
        stats = os.statvfs(self.folder)
        return stats.f_bavail * stats.f_frsize

    def writable(self) -> bool:
        """Whether the folder takes new files: a folder, that this process may write, on a disk
        mounted for writing (two system calls, for ``/readyz``, which asks often). A folder that
        stopped being writable is logged with its path (the operator's) once, not at each
        probe."""
        try:
            writable = stat.S_ISDIR(os.stat(self.folder).st_mode) and os.access(
                self.folder, os.W_OK | os.X_OK
            )
        except OSError:
            writable = False
        if not writable and self._writable:
            log.error("the spool's folder cannot be written", extra={"folder": str(self.folder)})
        self._writable = writable
        return writable

    def pending(self) -> int:
        """Records and review-queue requests waiting in this folder's spool files (all
        processes)."""
        return _count_lines(self.folder)

    def rejected(self) -> int:
        """Records set aside because storage refused them (all processes). A count that
        changed is logged with the folder's path (the operator's, not a probe's caller's): once,
        not at each ``/readyz`` that asks until an operator mends the records."""
        count = _count_lines(self.folder / REJECTED)
        if count and count != self._rejected:
            log.warning(
                "spooled records set aside",
                extra={"rejected": count, "folder": str(self.folder / REJECTED)},
            )
        self._rejected = count
        return count

    def drain(self, write: Write, reachable: Reachable, enqueue: Enqueue) -> int:
        """Write every spooled record with ``write`` and queue every spooled request with
        ``enqueue``, the first scored first; return how many lines were written out of the
        spool (the records of other live processes' files, written ahead, stay theirs).

        Stops when storage went away again (``reachable`` raises) and leaves the rest for next
        time; sets aside the records storage refuses while it answers. Returns 0 at once while
        another process drains the folder.
        """
        with self._lock:
            self._close_live()
        folder = os.open(self.folder, os.O_RDONLY)
        try:
            # drains one at a time: two at once would each write their own files' records in
            # order, and the two orders in any mix
            try:
                fcntl.flock(folder, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return 0  # another process drains: what it does not take waits for the next
            with ExitStack() as files:
                written = self._drain_files(files, _Writer(write, enqueue), reachable)
        finally:
            os.close(folder)
        if written:
            log.info("spool drained", extra={"records": written})
        return written

    def close(self) -> None:
        with self._lock:
            self._close_live()

    def _open_live(self) -> IO[bytes]:
        while self._live is None:
            path = self.folder / f"spool-{os.getpid()}-{uuid.uuid4().hex[:8]}.jsonl"
            # unbuffered: a failed append leaves no bytes behind to be written with a later one
            live = open(path, "ab", buffering=0)  # noqa: SIM115 (held open, under a lock)
            try:
                fcntl.flock(live.fileno(), fcntl.LOCK_EX)
                if os.fstat(live.fileno()).st_nlink == 0:
                    # a drain (of this process or another) locked the new file first, found it
                    # empty and deleted it: the lines appended to it would be lost with it
                    live.close()
                    continue
                _fsync_folder(self.folder)
            except BaseException:
                # every failed append would otherwise leave a descriptor open (and, past the
                # lock, a file no drain can take while this process lives)
                live.close()
                path.unlink(missing_ok=True)
                raise
            self._live, self._live_path, self._live_lines = live, path, 0
        return self._live

    def _close_live(self) -> None:
        """Close the live file so that drains can take it; the next append opens a new one."""
        if self._live is not None and self._live_path is not None:
            self._live.close()
            if self._live_lines == 0:
                self._live_path.unlink(missing_ok=True)
        self._live, self._live_path = None, None

    def _drain_files(self, files: ExitStack, write: _Writer, reachable: Reachable) -> int:
        sources: list[_File] = []
        places: list[_Place] = []
        unusable: list[_Unusable] = []
        for path in sorted(self.folder.glob("*.jsonl")):
            try:
                f = files.enter_context(open(path, "rb"))  # noqa: SIM115 (closed with the drain)
            except FileNotFoundError:
                continue
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                # a live process's file: its records go in their turn, the file stays its own
                places.extend(_live_places(f, len(sources)))
                sources.append(_File(f, None))
                continue
            if not _holds_lines(f, path):
                continue
            places.extend(_places(f, path, len(sources), unusable))
            sources.append(_File(f, path))
        places.sort()
        written = refused = 0
        for chunk in _chunks(_read(places, sources, unusable)):
            try:
                write(chunk)
            except Exception as exc:
                # raises when storage went away: the files stay for next time
                _check_refused(exc, reachable)
                refused += _one_by_one(chunk, write, reachable, unusable)
            written += sum(line.path is not None for line in chunk)
        # set aside once the rest is stored, a file's lines in one append, the file deleted as
        # soon as they are: the drain after one stopped by an outage or a full disk would set
        # them aside again, and count each twice
        aside: dict[int, list[_Unusable]] = {}
        for place, problem in sorted(unusable, key=lambda u: (u[0].file, u[0].offset)):
            aside.setdefault(place.file, []).append((place, problem))
        for number, source in enumerate(sources):
            if source.path is not None:
                lines = [(source.read(place), problem) for place, problem in aside.get(number, [])]
                if lines:
                    self._set_aside(source.path, lines)
                source.path.unlink()
                if lines:
                    # gone for good before the next file's: a crash would bring it back, and
                    # its lines would be set aside again
                    _fsync_folder(self.folder)
        _fsync_folder(self.folder)
        return written - refused

    def _set_aside(self, path: Path, lines: list[tuple[bytes, Exception]]) -> None:
        """Keep the spooled ``lines`` of ``path`` in ``rejected/``, each with why: all of them,
        or none."""
        folder = self.folder / REJECTED
        folder.mkdir(exist_ok=True)
        entries = [_aside(raw, problem) for raw, problem in lines]
        with open(folder / path.name, "ab", buffering=0) as f:
            _append_whole(f, b"".join(json.dumps(entry).encode() + b"\n" for entry in entries))
        _fsync_folder(folder)
        for entry, (_, problem) in zip(entries, lines, strict=True):
            record = entry.get("record", entry.get("request"))
            log.error(
                "spooled record refused, set aside",
                extra={
                    "post_id": record.get("id", record.get("post_id"))
                    if isinstance(record, dict)
                    else None,
                    "file": str(folder / path.name),
                    "error": str(problem),
                },
            )


def _aside(raw: bytes, error: Exception) -> dict[str, Any]:
    """The entry in ``rejected/`` of the spooled line ``raw``, with ``error``."""
    try:
        line = json.loads(raw)
    except ValueError:
        # no JSON: kept as its text, every byte of it, for the operator to mend
        line = raw.decode("utf-8", "backslashreplace").removesuffix("\n")
    return (line if isinstance(line, dict) else {"line": line}) | {
        "error": f"{type(error).__name__}: {error}"
    }


@dataclass(frozen=True)
class _Writer:
    """Writes a run of spooled lines of one kind: records with ``records``, review-queue
    requests with ``requests``."""

    records: Write
    requests: Enqueue

    def __call__(self, lines: list[_Line]) -> None:
        if isinstance(lines[0].item, QueueRequest):
            self.requests([line.item for line in lines if isinstance(line.item, QueueRequest)])
        else:
            self.records([line.item for line in lines if isinstance(line.item, Pending)])


def _chunks(lines: Iterable[_Line]) -> Iterator[list[_Line]]:
    """``lines`` in order, in runs of one kind of at most :data:`CHUNK` lines: a write each,
    given as soon as it is whole, so that no more lines are parsed and held than it takes."""
    run: list[_Line] = []
    for line in lines:
        if run and type(line.item) is not type(run[0].item):
            yield run
            run = []
        run.append(line)
        if len(run) == CHUNK:
            yield run
            run = []
    if run:
        yield run


def _one_by_one(
    lines: list[_Line], write: _Writer, reachable: Reachable, unusable: list[_Unusable]
) -> int:
    """Write ``lines`` one per transaction; each of the files taken that storage refuses while
    it answers goes to ``unusable``, to be set aside (another live process's is set aside by
    the drain that takes its file); how many went there."""
    refused = 0
    for line in lines:
        try:
            write([line])
        except Exception as exc:
            _check_refused(exc, reachable)
            if line.path is not None:
                unusable.append((line.place, exc))
                refused += 1
    return refused


def _check_refused(error: Exception, reachable: Reachable) -> None:
    """Return when storage answers and ``error`` is its refusal of the data written; raise
    ``error`` when storage did not do the write now, or ``reachable``'s error when it is gone."""
    if isinstance(error, StorageUnavailableError):
        raise error
    reachable()


def no_room(error: OSError) -> bool:
    """Whether ``error``, of an append, says the spool has no room (else it cannot write)."""
    return error.errno in NO_ROOM


def _holds_lines(f: IO[bytes], path: Path) -> bool:
    """Whether the spool file ``f`` at ``path``, which a drain locked, has lines for it."""
    status = os.fstat(f.fileno())
    if status.st_nlink == 0:
        return False  # a live file closed empty, and deleted, since it was listed
    if status.st_size == 0:
        # a new live file this drain locked before its process could: deleted and let go now,
        # as that process waits on its lock (holding its appends) until it is, then opens another
        path.unlink()
        f.close()
        return False
    return True


def _places(f: IO[bytes], path: Path, file: int, unusable: list[_Unusable]) -> Iterator[_Place]:
    """The places of the lines of the file ``f`` at ``path``, the drain's ``file``-th, which it
    took; a line with no time this version reads goes to ``unusable`` instead (one with a time,
    but no record or request this version takes, goes there once :func:`_read` parses it)."""
    end = 0
    for number, raw in enumerate(f, 1):
        start, end = end, end + len(raw)
        if not raw.strip():
            continue
        try:
            entry = json.loads(raw)
        except ValueError as exc:
            if raw.endswith(b"\n"):
                # a whole line, so no torn append (below): one corrupted, or mended by hand and
                # moved back, whose record may have been acknowledged
                unusable.append((_Place(0, 0.0, False, file, start, len(raw)), exc))
            else:
                # the file's last line, torn by a crash mid-append; that append was never
                # acknowledged, so nothing a caller was told about is dropped here
                log.warning("spool line unreadable", extra={"file": path.name, "line": number})
            continue
        try:
            when = _when(entry)
        except (ValueError, TypeError) as exc:
            unusable.append((_Place(0, 0.0, False, file, start, len(raw)), exc))
            continue
        yield _Place(*when, file, start, len(raw))


def _live_places(f: IO[bytes], file: int) -> Iterator[_Place]:
    """The places of the records of another live process's file ``f``, the drain's
    ``file``-th: of its whole lines (the last may be an append in progress), less unreadable
    ones and its review-queue requests, left to the drain that takes the file."""
    end = 0
    for raw in f:
        if not raw.endswith(b"\n"):
            break
        start, end = end, end + len(raw)
        try:
            era, at, request = _when(json.loads(raw))
        except (ValueError, TypeError):
            continue
        if not request:
            yield _Place(era, at, request, file, start, len(raw))


def _read(
    places: Iterable[_Place], sources: list[_File], unusable: list[_Unusable]
) -> Iterator[_Line]:
    """The lines at ``places``, parsed one at a time from ``sources``; those of a file taken
    that this version no longer takes go to ``unusable`` (another live process's, to the drain
    that takes its file)."""
    for place in places:
        source = sources[place.file]
        raw = source.read(place)
        try:
            item = _item(json.loads(raw), place.request)
        except (ValueError, KeyError, TypeError) as exc:
            if source.path is not None:
                unusable.append((place, exc))
            continue
        yield _Line(item, source.path, place)


def _when(entry: object) -> tuple[int, float, bool]:
    """A spooled line's era and time in it (:class:`_Place`) and whether it is a review-queue
    request."""
    if not isinstance(entry, dict):
        # set aside with the rest of what this version cannot read: left to fail every drain,
        # it would keep every record behind it out of storage
        raise TypeError(f"a spooled line is a JSON object, not {type(entry).__name__}")
    request = entry.get("kind") == QUEUE
    if "boot" not in entry:
        # spooled by an earlier release, before this one started
        if "scored_at" not in entry:
            return 0, 0.0, request
        return 1, float(cast(float, entry["scored_at"])), request
    # a clock left out is no count either: a KeyError would fail every drain
    boot, at = entry["boot"], entry.get("monotonic_ns")
    if not isinstance(boot, int) or not isinstance(at, int) or boot < 0:
        raise TypeError(f"a spooled line's boot and monotonic_ns are counts, not {boot!r}, {at!r}")
    return 2 + boot, at, request


def _item(entry: dict[str, Any], request: bool) -> Pending | QueueRequest:
    """A spooled line's record or review-queue request (``request``, as :func:`_when` said)."""
    if request:
        fields = cast(dict[str, Any], entry["request"])
        if fields.get("kind") not in KINDS:
            raise ValueError(f"no such item kind: {fields.get('kind')!r}")
        return QueueRequest(**fields)
    post = entry.get("post")
    return Pending(
        ScoreRecord.model_validate(entry["record"]),
        bool(entry["enqueue"]),
        cast(str | None, entry.get("text")),
        None if post is None else Post.accepted(cast(dict[str, object], post)),
    )


def _line(item: Pending | QueueRequest, scored_at: Stamp, boot: int) -> bytes:
    when = {"scored_at": scored_at.wall, "boot": boot, "monotonic_ns": scored_at.monotonic_ns}
    entry: dict[str, object]
    if isinstance(item, QueueRequest):
        entry = {"kind": QUEUE, **when, "request": asdict(item)}
    else:
        entry = {
            **when,
            "enqueue": item.enqueue,
            "record": item.record.model_dump(mode="json"),
            "text": item.text,
            "post": None if item.post is None else item.post.model_dump(mode="json"),
        }
    return json.dumps(entry).encode() + b"\n"


def _boot_number(folder: Path) -> int:
    """This boot's number among those that spooled in ``folder`` (:data:`BOOTS`), the boot
    added when it is new: durable before a line of it is, so that a crash cannot give a later
    boot the number of one whose lines are still spooled."""
    boot = BOOT_ID.read_bytes().strip()
    with open(folder / BOOTS, "a+b", buffering=0) as f:
        # two processes of a new boot add it once
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        f.seek(0)
        held = f.read()
        whole = held[: held.rfind(b"\n") + 1]
        boots = whole.split()
        if boots and boots[-1] == boot:
            return len(boots) - 1
        if len(whole) < len(held):
            # torn by a crash mid-append: the boot it was to add never spooled a line
            os.ftruncate(f.fileno(), len(whole))
        _append_whole(f, boot + b"\n")
    _fsync_folder(folder)
    return len(boots)


def _append_whole(f: IO[bytes], data: bytes) -> None:
    """Append ``data`` to the unbuffered ``f`` and fsync it, or cut ``f`` back to what it held
    and raise: a line left torn by a full disk would run into the next line appended, and a
    drain, unable to read the two, would skip a record that was acknowledged."""
    fd = f.fileno()
    end = os.lseek(fd, 0, os.SEEK_END)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except OSError:
        os.ftruncate(fd, end)
        raise


def _count_lines(folder: Path) -> int:
    total = 0
    for path in folder.glob("*.jsonl"):
        try:
            with open(path, "rb") as f:
                total += sum(1 for line in f if line.strip())
        except FileNotFoundError:
            continue
    return total


def _fsync_folder(folder: Path) -> None:
    """Make a created or deleted file's name durable, not only its contents."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
