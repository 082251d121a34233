"""A run's progress on stderr: a bar on a terminal, plain lines on a timer elsewhere.

A re-score can run for hours under a scheduler or systemd, or with stderr sent to a log file.
A bar there writes nothing (tqdm turns itself off off a terminal) or, forced on, carriage
returns that fill the log with redraws; so off a terminal the run prints one plain line every
``every_s`` seconds (posts done, of how many, rate, elapsed, ETA) and one when it ends, which
alone says that every post is done. The lines come from a timer thread, not from the writes of
results: a segment can take minutes to score, and the log would be silent meanwhile.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Protocol, TextIO

# tqdm is imported where a run shows its progress: the command line imports EVERY_S, and must
# answer --help at once

EVERY_S = 60
"""Seconds between two plain progress lines, by default (``--progress-every``)."""

PREFIX = "qinglang rescore: "
"""What a plain line starts with, as the command's errors do, to be found in a shared log."""

_LOCK = threading.Lock()
"""Held while a line is written, so that the timer's and the run's lines never interleave."""


class Progress(Protocol):
    """What the run tells of its progress."""

    def update(self, n: int) -> None:
        """``n`` more posts done."""


class _Off:
    """No progress shown (``--no-progress``)."""

    def update(self, n: int) -> None:
        pass


class PlainProgress:
    """A line every ``every_s`` seconds from a timer thread, and one at :meth:`close`.

    ``clock`` gives the seconds the elapsed time and the rate are measured in (a test's fake
    one); the timer itself waits ``every_s`` real seconds.
    """

    def __init__(
        self,
        total: int | None,
        done: int,
        every_s: float,
        stream: TextIO,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._total, self._done, self._first = total, done, done
        self._every_s, self._stream, self._clock = every_s, stream, clock
        self._started = clock()
        self._stop = threading.Event()
        self._timer = threading.Thread(target=self._tick, name="progress", daemon=True)

    def start(self) -> None:
        self._timer.start()

    def update(self, n: int) -> None:
        # an int's += under the GIL; the timer only reads it
        self._done += n

    def close(self, outcome: str) -> None:
        """Stop the timer and say the last line, ``outcome`` ("done", "stopped") after it."""
        self._stop.set()
        if self._timer.is_alive():
            self._timer.join()
        self._say(f"{self.line()} ({outcome})")

    def line(self) -> str:
        """Posts done, of how many, rate, elapsed and ETA, as of now."""
        elapsed = max(self._clock() - self._started, 0.0)
        done = self._done
        rate = (done - self._first) / elapsed if elapsed > 0 else 0.0
        parts = [f"{done:,} posts"]
        if self._total is not None:
            # rounded down: 999 of 1,000 is not 100% yet
            percent = done * 100 // self._total if self._total else 100
            parts = [f"{done:,} of {self._total:,} posts ({percent}%)"]
        parts += [f"{rate:,.0f} posts/s", f"{_duration(elapsed)} elapsed"]
        if self._total is not None and rate > 0 and done < self._total:
            parts.append(f"ETA {_duration((self._total - done) / rate)}")
        return PREFIX + ", ".join(parts)

    def tick(self) -> None:
        """The timer's line, unless every post is done: the last line says so, when the run has
        joined its output (a line of 100% just before it said it twice, and a long join's lines
        said it again each time)."""
        if self._total is None or self._done < self._total:
            self._say(self.line())

    def _tick(self) -> None:
        while not self._stop.wait(self._every_s):
            self.tick()

    def _say(self, line: str) -> None:
        with _LOCK:
            self._stream.write(line + "\n")
            self._stream.flush()


@contextmanager
def shown(
    total: int | None,
    done: int = 0,
    *,
    enabled: bool = True,
    every_s: float = EVERY_S,
    stream: TextIO | None = None,
) -> Iterator[Progress]:
    """The run's progress on ``stream`` (stderr), ``done`` of ``total`` posts done before it:
    a bar if it is a terminal, else plain lines every ``every_s`` seconds and a last one."""
    from tqdm import tqdm

    out = sys.stderr if stream is None else stream
    if not enabled:
        yield _Off()
    elif out.isatty():
        with tqdm(total=total, initial=done, unit=" posts", mininterval=1.0, file=out) as bar:
            yield bar
    else:
        plain = PlainProgress(total, done, every_s, out)
        plain.start()
        outcome = "stopped"
        try:
            yield plain
            outcome = "done"
        finally:
            plain.close(outcome)


def say(message: str) -> None:
    """``message`` as a line on stderr, clear of a bar being drawn or a progress line."""
    from tqdm import tqdm

    with _LOCK:
        tqdm.write(message, file=sys.stderr)


def _duration(seconds: float) -> str:
    """``1:02:03`` or ``2:03``."""
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02}:{secs:02}" if hours else f"{minutes}:{secs:02}"
