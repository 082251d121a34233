"""The SIGTERM handler a command holds while it runs."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType


@contextmanager
def on_sigterm(handler: Callable[[int, FrameType | None], object]) -> Iterator[None]:
    """``handler`` for SIGTERM while the block runs, the handler before it back afterwards:
    :func:`service.cli.main` also runs inside other programs (a test run, a script), whose
    SIGTERM is theirs again when the command returns. Off the main thread, where Python cannot
    set a handler, the block runs with the process's."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        # None: a handler set outside Python, which Python cannot set again
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
