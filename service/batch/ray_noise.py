"""What Ray prints that tells the operator of ``--engine ray`` nothing, kept off stderr and
stdout.

A run that starts or joins Ray got, among its own lines, Ray's news of itself ("Started a local
Ray instance.", a token saved, "Progress bars disabled" for the bars the run turns off, since it
shows its own) and one line of its C++ core on every run, written straight to file descriptor 2:
``core_worker.cc: Actor with class name: 'MapWorker(...)' ... has constructor arguments in the
object store and max_restarts > 0``. Ray Data puts every pool's constructor arguments there and
restarts killed actors, which the run relies on; the line warns of a restart after those
arguments were lost, which a run that holds its dataset until the end does not meet.

A run stopped by Ctrl-C or SIGTERM also got, on stdout, a line for each segment an actor was
scoring: ``(raylet) Task MapWorker(MapBatches(_SegmentScorer)).submit failed. There are infinite
retries remaining, so the task will be retried. Error: The actor is dead because it was killed by
`ray.kill`.`` The run's own stop kills the pool (Ray Data ends it with ``ray.kill``), and the core
worker reports each task in flight as a failure to retry; Ray's thread for errors pushed to the
driver prints it on stdout whatever ``log_to_driver`` says, and again with ``[repeated Nx across
cluster]`` where it came several times. No task is retried: the run has stopped, and says so.

Ray's Python lines are dropped by a filter on the handlers through which Ray's loggers write to
stderr: those below WARNING, and the warnings in :data:`HARMLESS`. The C++ line and the retries of
a stop are dropped by pipes put in place of file descriptors 2 and 1, through which everything
else passes as it comes. Each is taken away when Ray is done. Warnings and errors of any other
kind pass, a task retried after an actor died of anything but ``ray.kill`` among them.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

HARMLESS = (
    "Progress bars disabled.",
    "Token authentication is enabled for this Ray cluster.",
)
"""The starts of Ray's warnings that say nothing for the run to act on: the bars it turned off,
and Ray's default of token authentication for the instance it starts."""

CORE_NOISE = re.compile(
    rb"^\[[^\]]*\] core_worker\.cc:\d+: Actor with class name: .* has constructor arguments in "
    rb"the object store and max_restarts > 0\."
)
"""The C++ core's line on an actor pool's constructor arguments (Ray 2.60)."""

LOG_LINE_START = (b"[",)
"""How Ray's C++ core lines start (``[2026-12-06 13:33:06,562 E 9941 9941] ...``): a part of a
line that starts otherwise (a progress bar's redraw) is passed on before its line ends."""

KILLED_RETRY = re.compile(
    rb"^(?:\x1b\[\d+m)?\(raylet\)(?:\x1b\[0m)? Task .* failed\. There are .* retries "
    rb"remaining, so the task will be retried\. Error: The actor is dead because it was killed "
    rb"by `ray\.kill`\."
)
"""The retry of a task whose actor the run's stop killed, as Ray prints it on stdout (Ray 2.60):
yellow ``(raylet)`` unless ``RAY_COLOR_PREFIX=0``, and a count of repeats after it."""

RAYLET_LINE_START = (b"(raylet)", b"\x1b[")
"""How the lines Ray prints for the raylet start, coloured or not."""

DRAIN_S = 2.0
"""How long the end of the run waits for the pipe's last lines to pass, when a process Ray
started still holds the pipe open."""


class _Noise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING and not record.getMessage().startswith(HARMLESS)


@contextmanager
def quiet() -> Iterator[None]:
    """Ray's lines of no use to the operator kept off stderr meanwhile (import Ray's modules
    first: each configures its loggers when imported)."""
    noise = _Noise()
    handlers = _stderr_handlers()
    for handler in handlers:
        handler.addFilter(noise)
    try:
        with (
            without_lines(2, CORE_NOISE, LOG_LINE_START),
            without_lines(1, KILLED_RETRY, RAYLET_LINE_START),
        ):
            yield
    finally:
        for handler in handlers:
            handler.removeFilter(noise)


def _stderr_handlers() -> list[logging.Handler]:
    """The handlers through which Ray's loggers write to a stream (stderr): they propagate no
    record to the root's, and their file handlers keep every line."""
    names = ["ray", *(n for n in logging.root.manager.loggerDict if n.startswith("ray."))]
    loggers = (logging.getLogger(name) for name in names)
    return [
        handler
        for logger in loggers
        for handler in logger.handlers
        if isinstance(handler, logging.StreamHandler)
        and not isinstance(handler, logging.FileHandler)
    ]


@contextmanager
def without_lines(fd: int, pattern: re.Pattern[bytes], starts: tuple[bytes, ...]) -> Iterator[None]:
    """File descriptor ``fd`` (2, stderr, or 1, stdout) a pipe meanwhile, whose lines matching
    ``pattern`` are dropped and everything else passed to the ``fd`` of before, as it comes; given
    back at the end. A part of a line is held until its end only when it starts with one of
    ``starts``, as ``pattern``'s lines do."""
    stream = sys.stdout if fd == 1 else sys.stderr
    stream.flush()
    original = os.dup(fd)
    read, write = os.pipe()
    os.dup2(write, fd)
    os.close(write)
    forward = threading.Thread(
        target=_forward,
        args=(read, original, pattern, starts),
        name=f"fd{fd}-filter",
        daemon=True,
    )
    forward.start()
    try:
        yield
    finally:
        # Ray prints its driver's lines without flushing: they pass the filter before it goes
        stream.flush()
        # the pipe ends when the last of its writers closes it: this process's fd now, a
        # process Ray started with it later (the thread then goes on forwarding)
        os.dup2(original, fd)
        forward.join(DRAIN_S)


def _forward(read: int, out: int, pattern: re.Pattern[bytes], starts: tuple[bytes, ...]) -> None:
    """Copy ``read`` to ``out`` without the lines matching ``pattern``, until the pipe ends."""
    pending = b""
    try:
        while chunk := os.read(read, 1 << 16):
            *lines, pending = (pending + chunk).split(b"\n")
            kept = b"".join(line + b"\n" for line in lines if not pattern.match(line))
            if pending and not pending.startswith(starts):
                kept, pending = kept + pending, b""
            _write_all(out, kept)
        if pending and not pattern.match(pending):
            _write_all(out, pending)
    finally:
        os.close(read)
        os.close(out)


def _write_all(fd: int, data: bytes) -> None:
    try:
        while data:
            data = data[os.write(fd, data) :]
    except OSError:
        # the stream of before is gone (a closed log): the pipe is still read, so that no writer
        # blocks on it
        pass
