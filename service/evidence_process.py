"""The server's evidence search, in an idle-scheduled process of its own.

The search (:meth:`service.pipeline.Pipeline.explain`) runs Python between its ONNX runs, and in
the serving process that Python holds the GIL. An idle-scheduled (``SCHED_IDLE``) thread of
the serving process preempted while it held the GIL kept it until a core fell idle, and a
request's thread that needed it waited for that, at most the time the cores stayed busy: under
CPU load the publish path stalled behind the very work meant never to delay it (``python -m
eval.evidence_latency``). In a process of its own the search holds no lock of the server's.

:class:`EvidenceProcess` hands the posts and records of each call to the process over a pipe,
one call at a time, and waits for their records with spans. The process is started on the
first call (from then on, a server that finds no flagged post starts none), idle-scheduled at
once (every thread of it), and runs the model in a session of its own with one ONNX thread,
the caller; it remembers recent searches as the pipeline does
(:class:`~service.evidence.Remembered`). A process that stops (killed, out of memory) fails the
call in progress with :class:`EvidenceLostError` and is started again by the next; a server
whose process ends (closed or killed) leaves none behind: :meth:`EvidenceProcess.close` ends
it, and a process whose server is gone finds its pipe closed and ends.
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
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess

from service.classify import tokenize_on_calling_thread
from service.evidence import Remembered
from service.pipeline import Explaining
from service.record import Post, ScoreRecord

log = logging.getLogger(__name__)

NICE = 19
"""The evidence process's nice value where idle scheduling is not available."""
STOP_S = 5.0
"""How long :meth:`EvidenceProcess.close` waits for the process to end before killing it."""


class EvidenceLostError(Exception):
    """The evidence process stopped before it answered: the call's records are as they were
    (stored ``evidence_pending``, for a sweep to take up)."""


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


def serve(connection: Connection, level: int) -> None:
    """The evidence process: receive the :class:`~service.pipeline.Explaining` to run, then
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


@dataclass
class Worker:
    process: BaseProcess
    connection: Connection


class EvidenceProcess:
    """The evidence search of :class:`~service.scoring.ScoringService`, in a process of its own
    (see the module's docstring). Its calls are blocking and made one at a time (the service
    makes them on one thread of its own)."""

    def __init__(self, explaining: Explaining) -> None:
        self.explaining = explaining
        self._worker: Worker | None = None
        self._lock = threading.Lock()
        self._closed = False

    @property
    def pid(self) -> int | None:
        """The process's id while it runs; None before the first call and after it stopped."""
        worker = self._worker
        return worker.process.pid if worker is not None else None

    def explain(self, posts: Sequence[Post], records: Sequence[ScoreRecord]) -> list[ScoreRecord]:
        """``records`` with their spans (:meth:`~service.pipeline.Pipeline.explain`); raises
        :class:`EvidenceLostError` when the process stops first, or when closed."""
        worker = self._started()
        try:
            worker.connection.send((list(posts), list(records)))
            # the sentinel too: ready once the process has ended, whatever else may hold its end
            # of the pipe open (a child forked meanwhile by another thread of the server)
            wait([worker.connection, worker.process.sentinel])
            if worker.connection.poll():
                explained: list[ScoreRecord]
                explained, said = worker.connection.recv()
                for record in said:
                    logging.getLogger(record.name).handle(record)
                return explained
        except (EOFError, OSError):
            pass
        code = self._stop(worker)
        raise EvidenceLostError(f"the evidence process stopped (exit code {code})")

    def _started(self) -> Worker:
        with self._lock:
            if self._closed:
                raise EvidenceLostError("the evidence process is closed")
            if self._worker is not None:
                return self._worker
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
            theirs.close()  # its end is the process's alone: it reads EOF once ours ends
            started = self._worker = Worker(process, mine)
        # over the pipe, not as an argument: the model's tokenizer outgrows a pipe's buffer, and
        # a server killed while the process read its arguments had Python print a traceback in
        # the server's log; from the pipe it is read by serve(), which ends quietly on a message
        # cut short. Not under the lock: the idle-scheduled process reads it once a core falls
        # idle, on a busy host maybe never, and close() waited for that. An end already, or one
        # by close() meanwhile, is the call's to find out
        with contextlib.suppress(OSError):
            started.connection.send(self.explaining)
        return started

    def _stop(self, worker: Worker) -> int | None:
        """End ``worker`` unless it was ended already; its exit code."""
        with self._lock:
            if self._worker is not worker:
                return None
            self._worker = None
        _hang_up(worker.connection)
        worker.process.join(STOP_S)
        if worker.process.exitcode is None:
            worker.process.kill()
            worker.process.join()
        code = worker.process.exitcode
        worker.process.close()
        return code

    def close(self) -> None:
        """End the process (a search under way is not waited for past :data:`STOP_S`); a call
        after this raises :class:`EvidenceLostError`."""
        with self._lock:
            self._closed = True
            worker = self._worker
        if worker is not None:
            self._stop(worker)


def _hang_up(connection: Connection) -> None:
    """End both ways of ``connection`` (a socket's): the process reads EOF, and a send or a
    receive under way on another thread (a call :meth:`EvidenceProcess.close` ends) fails at
    once. Not closed here: closed under that thread's send, the send's next write went to no
    descriptor at all (a TypeError, not the call's OSError); it closes once dropped."""
    with contextlib.suppress(OSError), socket.socket(fileno=os.dup(connection.fileno())) as end:
        end.shutdown(socket.SHUT_RDWR)
