"""What Ray prints that tells the operator of ``--engine ray`` nothing, kept off stderr.

A run that starts or joins Ray got, among its own lines, Ray's news of itself ("Started a local
Ray instance.", a token saved, "Progress bars disabled" for the bars the run turns off, since it
shows its own) and one line of its C++ core on every run, written straight to file descriptor 2:
``core_worker.cc: Actor with class name: 'MapWorker(...)' ... has constructor arguments in the
object store and max_restarts > 0``. Ray Data puts every pool's constructor arguments there and
restarts killed actors, which the run relies on; the line warns of a restart after those
arguments were lost, which a run that holds its dataset until the end does not meet.

Ray's Python lines are dropped by a filter on the handlers through which Ray's loggers write to
stderr: those below WARNING, and the warnings in :data:`HARMLESS`. The C++ line is dropped by a
pipe put in place of file descriptor 2, through which everything else passes as it comes.
Either is taken away when Ray is done. Warnings and errors of any other kind pass.
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

LOG_LINE_START = b"["
"""How Ray's C++ core lines start (``[2026-12-06 13:33:06,562 E 9941 9941] ...``): a part of a
line that starts otherwise (a progress bar's redraw) is passed on before its line ends."""

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
        with without_lines(CORE_NOISE):
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
def without_lines(pattern: re.Pattern[bytes]) -> Iterator[None]:
    """File descriptor 2 a pipe meanwhile, whose lines matching ``pattern`` are dropped and
    everything else passed to the stderr of before, as it comes; given back at the end."""
    sys.stderr.flush()
    original = os.dup(2)
    read, write = os.pipe()
    os.dup2(write, 2)
    os.close(write)
    forward = threading.Thread(
        target=_forward, args=(read, original, pattern), name="stderr-filter", daemon=True
    )
    forward.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        # the pipe ends when the last of its writers closes it: this process's fd 2 now, a
        # process Ray started with it later (the thread then goes on forwarding)
        os.dup2(original, 2)
        forward.join(DRAIN_S)


def _forward(read: int, out: int, pattern: re.Pattern[bytes]) -> None:
    """Copy ``read`` to ``out`` without the lines matching ``pattern``, until the pipe ends."""
    pending = b""
    try:
        while chunk := os.read(read, 1 << 16):
            *lines, pending = (pending + chunk).split(b"\n")
            kept = b"".join(line + b"\n" for line in lines if not pattern.match(line))
            if pending and not pending.startswith(LOG_LINE_START):
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
        # the stderr of before is gone (a closed log): the pipe is still read, so that no writer
        # blocks on it
        pass
