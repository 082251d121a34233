"""The server's evidence search, in an idle-scheduled process of its own.

The search (:meth:`service.pipeline.Pipeline.explain`) runs Python between its ONNX runs, and in
the serving process that Python holds the GIL. An idle-scheduled (``SCHED_IDLE``) thread of
the serving process preempted while it held the GIL kept it until a core fell idle, and a
request's thread that needed it waited for that, at most the time the cores stayed busy: under
CPU load the publish path stalled behind the very work meant never to delay it (``python -m
eval.evidence_latency``). In a process of its own the search holds no lock of the server's.

:class:`EvidenceProcess` hands each post of a call that waits for its spans, with its record,
to the process over a pipe, one at a time, and waits for the record with spans. The process is
started by the first post to search (a server that finds no flagged post starts none),
idle-scheduled at once (every thread of it), and runs the model in a session of its own with one
ONNX thread, the caller; it remembers recent searches as the pipeline does
(:class:`~service.evidence.Remembered`). A process that stops (killed, out of memory) fails the
call in progress with :class:`EvidenceLostError` and is started again by the next; the error
carries the records the call had explained before it (:attr:`EvidenceLostError.explained`), and
the record of the post the process was searching when the post is to blame
(:attr:`EvidenceLostError.blamed`), so that a post which ends or hangs the process every time is
given up after a few tries rather than tried for ever (:mod:`service.scoring`, which hands the
call's records after that one to the next process at once: they had no part in it). A server
whose process ends (closed or killed) leaves none behind: :meth:`EvidenceProcess.close` ends
it, and a process whose server is gone finds its pipe closed and ends. A process is killed
scheduled as any other (:func:`normal_priority`), so that it ends at once on a busy host too.

A process that lives but does not answer (a model call that never returns, a deadlock, or no
idle core for ever on a host that is never idle) would hold the caller, and every search after
it, for good. Each post's search is therefore given a deadline
(``evidence_deadline_s``, its start included for the first): a process that misses it is killed,
the call fails with :class:`EvidenceHungError`, and the next call starts another. Being
idle-scheduled, a healthy process may be slow on a busy host: the deadline bounds one search,
not a call, so a process that keeps answering is never taken for hung however long the call
takes, and each deadline missed in a row doubles the next (up to :data:`MAX_BACKOFF` times), so
that a process merely starved is not killed before it finishes, again and again. Nor is its post
blamed for it: a missed deadline is the post's only when the process had, or could have had, a
core for :data:`BLAMED_SHARE` of the time it waited (:func:`core_seconds`). An idle-scheduled
process runs whenever one of its cores is idle, so a host with idle time on them, or a process
that used the CPU, was not starved; a busy host gives it neither.
"""

from __future__ import annotations

import contextlib
import logging
import logging.handlers
import multiprocessing
import os
import queue
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import NoReturn

from service.classify import tokenize_on_calling_thread
from service.evidence import Remembered
from service.explaining import Explaining
from service.record import Post, ScoreRecord

log = logging.getLogger(__name__)

NICE = 19
"""The evidence process's nice value where idle scheduling is not available."""
STOP_S = 5.0
"""How long a process that broke off its call is given to end, for its own exit code, before it
is killed (:meth:`EvidenceProcess.close` kills it at once)."""
MAX_BACKOFF = 8
"""The most times its setting that the deadline grows to after deadlines missed in a row."""
BLAMED_SHARE = 0.5
"""The share of a missed deadline's wait that the process must have had a core for, used or
idle, for its post to be blamed: a search takes about a second of one, so a process that had
half of a deadline of minutes and did not answer was not slow for want of CPU."""


class EvidenceLostError(Exception):
    """The evidence process stopped before it answered: the call's records from the one it was
    searching on are as they were (stored ``evidence_pending``, for a sweep to take up)."""

    def __init__(self, problem: str, blamed: ScoreRecord | None = None) -> None:
        super().__init__(problem)
        self.explained: list[ScoreRecord] = []
        """The call's records before the one it was searching, explained."""
        self.blamed = blamed
        """The record whose post the process was searching, when the failure is the post's
        doing: None when the process ended before the post reached it, was closed, or missed
        its deadline starved of CPU."""


class EvidenceHungError(EvidenceLostError):
    """The evidence process answered no search by its deadline, and was killed."""


def idle_priority(pid: int = 0) -> None:
    """Give the thread ``pid`` (0: the calling one) a core only when nothing else wants it.

    Linux's ``SCHED_IDLE`` applies to that thread alone, and to the threads it starts later; the
    evidence session has one ONNX thread, the caller itself, so its model calls wait for idle
    cores too (an idle-scheduled thread's share of a busy core is a few thousandths). A nice
    value is weaker (nice 19 still gets about 1.5 % of a busy core) and is the fallback.
    """
    try:
        os.sched_setscheduler(pid, os.SCHED_IDLE, os.sched_param(0))
        return
    except (AttributeError, OSError):
        pass
    try:
        # PRIO_PROCESS with a thread id sets that thread's nice value alone
        os.setpriority(os.PRIO_PROCESS, pid or threading.get_native_id(), NICE)
    except OSError:  # not permitted here: the search runs at the normal priority
        log.info("could not lower the evidence process's priority")


def normal_priority(pid: int) -> None:
    """Schedule every thread of the process ``pid`` as any other (``SCHED_OTHER``), before it
    is killed: a killed thread has to be given a core to end, and one idle-scheduled waits for
    a core to fall idle, seconds on a busy host, while whatever waits for its end (the
    evidence thread after a missed deadline, a stopping server) waits as long. Leaving
    ``SCHED_IDLE`` takes ``CAP_SYS_NICE`` (or an ``RLIMIT_NICE`` of 20); without it the threads
    stay as they are, and die as slowly as before."""
    try:
        threads = [int(tid) for tid in os.listdir(f"/proc/{pid}/task")]
    except OSError:  # no /proc, or ended
        threads = [pid]
    for thread in threads:
        with contextlib.suppress(AttributeError, OSError):  # not Linux, ended, or not permitted
            os.sched_setscheduler(thread, os.SCHED_OTHER, os.sched_param(0))


def serve(connection: Connection, level: int) -> None:
    """The evidence process: receive the :class:`~service.explaining.Explaining` to run, then
    answer each ``(posts, records)`` received with the records and their spans and the log
    records of the call (at ``level`` and above, the server's), until the server closes its
    end."""
    # the parent lowered this thread already, before most of the imports; the threads they
    # started (numpy's pool, say) may have come first, and do not follow it: each is lowered
    # here, and those started from now on inherit it
    try:
        threads = [int(tid) for tid in os.listdir("/proc/self/task")]
    except OSError:  # no /proc: this thread, and those it starts
        threads = [0]
    for thread in threads:
        idle_priority(thread)
    tokenize_on_calling_thread()
    # the server's handlers write them, in its format, as its own lines
    logs: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    root = logging.getLogger()
    root.handlers = [logging.handlers.QueueHandler(logs)]
    root.setLevel(level)
    remembered = Remembered()
    try:
        explaining: Explaining = connection.recv()
        while True:
            posts, records = connection.recv()
            explained = explaining.explain(posts, records, remembered)
            said = []
            while not logs.empty():
                said.append(logs.get())
            connection.send((explained, said))
    except (EOFError, OSError):  # the server has gone, midway through a message or not
        return


@dataclass(frozen=True)
class Searching:
    """A search under way: its record, and when it began on the monotonic clock and in
    :func:`core_seconds`."""

    record: ScoreRecord
    since: float
    cores_since: float | None

    def blamed(self, pid: int | None) -> ScoreRecord | None:
        """The record, when the process ``pid`` missing its deadline is its post's doing: it
        had, or could have had, a core for :data:`BLAMED_SHARE` of the wait. Where that cannot
        be read, the post is blamed (its tries are bounded; a search is never for ever)."""
        now = core_seconds(pid)
        if now is None or self.cores_since is None:
            return self.record
        waited = time.monotonic() - self.since
        return self.record if now - self.cores_since >= BLAMED_SHARE * waited else None


def core_seconds(pid: int | None) -> float | None:
    """Seconds of a core the process ``pid`` has had since the host started, or could have had:
    its CPU time and the idle time of the cores it may run on (an idle-scheduled process runs
    whenever one of them is idle). None where ``/proc`` does not say (not Linux, or ended)."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/stat") as stat:
            # past the command, which may hold spaces: fields 14 and 15, utime and stime
            used = stat.read().rsplit(")", 1)[1].split()[11:13]
        cores = {f"cpu{n}" for n in os.sched_getaffinity(pid)}
        with open("/proc/stat") as host:
            # cpuN user nice system idle iowait ...: a core waiting on I/O would have run it too
            idle = [int(f[4]) + int(f[5]) for f in (line.split() for line in host) if f[0] in cores]
    except (OSError, AttributeError):
        return None
    return (int(used[0]) + int(used[1]) + sum(idle)) / os.sysconf("SC_CLK_TCK")


@dataclass
class Worker:
    process: BaseProcess
    connection: Connection
    handing: threading.Thread
    """Sends the process its :class:`~service.explaining.Explaining`, which outgrows the pipe's
    buffer: the send lasts until the process reads it, and is waited for within a deadline."""


class EvidenceProcess:
    """The evidence search of :class:`~service.scoring.ScoringService`, in a process of its own
    (see the module's docstring). Its calls are blocking and made one at a time (the service
    makes them on one thread of its own)."""

    def __init__(self, explaining: Explaining, deadline_s: float) -> None:
        self.explaining = explaining
        self.base_deadline_s = deadline_s
        """How long one search may take (``evidence_deadline_s``)."""
        self.deadline_s = deadline_s
        """How long the next search may take: :attr:`base_deadline_s`, doubled by each
        deadline missed since a search last answered."""
        self._worker: Worker | None = None
        self._lock = threading.Lock()
        self._closed = False

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called: every call from then on fails."""
        return self._closed

    @property
    def pid(self) -> int | None:
        """The process's id while it runs; None before the first call and after it stopped."""
        worker = self._worker
        return worker.process.pid if worker is not None else None

    def explain(self, posts: Sequence[Post], records: Sequence[ScoreRecord]) -> list[ScoreRecord]:
        """``records`` with their spans (:meth:`~service.pipeline.Pipeline.explain`); raises
        :class:`EvidenceLostError` when the process stops first, or when closed, and
        :class:`EvidenceHungError` when it answers a search late (it is killed then)."""
        explained: list[ScoreRecord] = []
        for post, record in zip(posts, records, strict=True):
            # a post at a time: the deadline bounds one search whatever the call's size, a
            # process that goes on answering is never taken for hung, and a failure costs the
            # spans of the post it came on and those after it, not those found before it
            if not record.evidence_pending:
                explained.append(record)
                continue
            try:
                explained.extend(self._search(post, record))
            except EvidenceLostError as exc:
                exc.explained = explained
                raise
        return explained

    def _search(self, post: Post, record: ScoreRecord) -> list[ScoreRecord]:
        """The process's answer for one post within :attr:`deadline_s`."""
        worker = self._started()
        until = time.monotonic() + self.deadline_s
        # a process yet to read its Explaining is as late as one yet to answer
        worker.handing.join(self.deadline_s)
        if worker.handing.is_alive():
            self._hung(worker, None)
        on: Searching | None = None
        try:
            # a process ended already (killed while it waited) did not end on this post
            if not wait([worker.process.sentinel], 0):
                on = Searching(record, time.monotonic(), core_seconds(worker.process.pid))
            worker.connection.send(([post], [record]))
            # the sentinel too: ready once the process has ended, whatever else may hold its end
            # of the pipe open (a child forked meanwhile by another thread of the server)
            if not wait([worker.connection, worker.process.sentinel], until - time.monotonic()):
                self._hung(worker, on)
            if worker.connection.poll():
                explained: list[ScoreRecord]
                explained, said = worker.connection.recv()
                for logged in said:
                    logging.getLogger(logged.name).handle(logged)
                self.deadline_s = self.base_deadline_s
                return explained
        except (EOFError, OSError):
            pass
        except ValueError:  # its process object closed meanwhile by close(), on another thread
            pass
        code = self._stop(worker)
        # ended by close(), not by the post
        blamed = None if on is None or self._closed else on.record
        raise EvidenceLostError(f"the evidence process stopped (exit code {code})", blamed)

    def _hung(self, worker: Worker, on: Searching | None) -> NoReturn:
        """Kill ``worker``, which missed its deadline, searching ``on`` (None: before a post
        reached it)."""
        missed = self.deadline_s
        self.deadline_s = min(2 * missed, MAX_BACKOFF * self.base_deadline_s)
        # read before the kill, while /proc still has it
        blamed = None if on is None else on.blamed(worker.process.pid)
        # at once: a process stuck in a model call would not read the pipe's end in time
        self._stop(worker, wait_s=0)
        raise EvidenceHungError(
            f"the evidence process answered no search in {missed:g} s (hung, or never given "
            f"an idle core): killed; the next search may take {self.deadline_s:g} s",
            blamed,
        )

    def _started(self) -> Worker:
        with self._lock:
            if self._closed:
                raise EvidenceLostError("the evidence process is closed")
            if self._worker is None:
                context = multiprocessing.get_context("spawn")
                mine, theirs = context.Pipe()
                level = logging.getLogger().getEffectiveLevel()
                process = context.Process(
                    target=serve, args=(theirs, level), name="evidence", daemon=True
                )
                process.start()
                assert process.pid is not None  # started
                # at once, so that even its imports (a second or so of CPU) wait for idle cores
                idle_priority(process.pid)
                theirs.close()  # its end is the process's alone: it reads EOF once ours closes
                # over the pipe, not as an argument: the model's tokenizer outgrows a pipe's
                # buffer, and a server killed while the process read its arguments had Python
                # print a traceback in the server's log; from the pipe it is read by serve(),
                # which ends quietly on a message cut short. On a thread of its own, since it
                # waits for the process to read it, as long as the process takes to start (an
                # end already is the call's to find out)
                handing = threading.Thread(
                    target=_hand,
                    # an end of its own, which it closes, so that ours closes whenever it may
                    args=(Connection(os.dup(mine.fileno())), self.explaining),
                    name="evidence-hand",
                    daemon=True,
                )
                handing.start()
                self._worker = Worker(process, mine, handing)
            return self._worker

    def _stop(self, worker: Worker, wait_s: float | None = None) -> int | None:
        """End ``worker`` unless it was ended already, killed once ``wait_s`` (:data:`STOP_S`)
        have passed; its exit code."""
        with self._lock:
            if self._worker is not worker:
                return None
            self._worker = None
        _hang_up(worker.connection)
        worker.process.join(STOP_S if wait_s is None else wait_s)
        if worker.process.exitcode is None:
            if worker.process.pid is not None:
                normal_priority(worker.process.pid)
            worker.process.kill()
            worker.process.join()
        code = worker.process.exitcode
        worker.process.close()
        return code

    def close(self) -> None:
        """End the process at once, killing it: what it was doing is dropped either way (the
        records of a search under way stay ``evidence_pending``), and idle-scheduled on a busy
        host it took seconds to come to the end of its pipe, every one of which its server's
        stop waited; a call after this raises :class:`EvidenceLostError`."""
        with self._lock:
            self._closed = True
            worker = self._worker
        if worker is not None:
            self._stop(worker, wait_s=0)


def _hang_up(connection: Connection) -> None:
    """End both ways of ``connection`` (a socket's): the process reads EOF, and a send or a
    receive under way on another thread (a call :meth:`EvidenceProcess.close` ends) fails at
    once. Not closed here: closed under that thread's send, the send's next write went to no
    descriptor at all (a TypeError, not the call's OSError); it closes once dropped."""
    with contextlib.suppress(OSError), socket.socket(fileno=os.dup(connection.fileno())) as end:
        end.shutdown(socket.SHUT_RDWR)


def _hand(connection: Connection, explaining: Explaining) -> None:
    """Send ``explaining`` (the process may have ended: the call finds that out), then close
    ``connection``."""
    with connection, contextlib.suppress(OSError):
        connection.send(explaining)
