"""A gzip file read at any offset of its decompressed bytes, for the tasks of a ``.jsonl.gz`` input.

gzip cannot seek: byte N of the decompressed stream is reached only by decompressing every byte
before it. A task of a compressed file is still a byte range of its decompressed lines
(:mod:`service.batch.sources`), read through one :class:`Inflater` per file and process that
moves forward and remembers the decompressor's state every ``SPACING`` decompressed bytes
(zlib can copy that state, not save it, so it lives as long as the process). A segment's tasks
come one after the other, and the warm-up that reads the tasks before a segment from the nearest
backwards (:mod:`service.batch.segments`) starts each from the remembered point before it rather
than from the start of the file: a process decompresses a file about once, however many tasks it
reads, and a run resumed after its checkpoint decompresses up to the first task it has left.

A damaged stream (cut off, corrupt, failing its checksum) raises :class:`GzipError` once every
byte zlib gives before the damage has been read. That is always the same bytes, however the file
was read (zlib drops the output of a call that fails, so a failed call is retried with less
output until it succeeds): the lines before the damage are the same whichever process reads them.
"""

from __future__ import annotations

import weakref
import zlib
from bisect import bisect_right
from dataclasses import dataclass
from typing import Final

GZIP: Final = 31
"""zlib's window bits for a gzip header and trailer (15, plus 16)."""

BLOCK = 1 << 18
"""Compressed bytes read from the file at a time."""

STEP = 1 << 20
"""Most decompressed bytes one zlib call gives (what a failed call is retried within)."""

SPACING = 4 << 20
"""Decompressed bytes between remembered points, at first: a backward seek decompresses at most
this much again. A point holds zlib's state and window, about 40 KB."""

MAX_POINTS = 256
"""Past this many points every other one is dropped and the spacing doubles: about 10 MB per
file and process whatever the file's size."""

_REASONS = {
    "incorrect header check": "not gzip data",
    "incorrect data check": "its checksum does not match (lines before may be corrupt too)",
}
"""What zlib's messages mean for the lines of the file."""


class GzipError(Exception):
    """The gzip stream breaks off after ``offset`` decompressed bytes; ``reason`` says how."""

    def __init__(self, offset: int, reason: str) -> None:
        super().__init__(offset, reason)
        self.offset = offset
        self.reason = reason

    def __str__(self) -> str:
        return f"the gzip stream breaks off after {self.offset:,} decompressed bytes: {self.reason}"


@dataclass(frozen=True)
class _Point:
    """Where decompression can start again: decompressed offset ``out`` is reached by feeding
    ``inflater`` (a state to copy, never to use) the file's bytes from ``raw`` on."""

    out: int
    raw: int
    inflater: zlib._Decompress
    between: bool
    """At the end of a member: the bytes from ``raw`` start a new one, or padding, or nothing."""


class Inflater:
    """The decompressed bytes of the gzip file ``path``: :meth:`seek` and :meth:`read`, as a
    file opened for reading (every member of the file, one after the other, as :mod:`gzip`
    reads them)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._file = open(path, "rb")  # noqa: SIM115 - kept open across reads, closed by close()
        self._closer = weakref.finalize(self, self._file.close)
        self._spacing = SPACING
        self._points = [_Point(0, 0, zlib.decompressobj(GZIP), between=True)]
        self._restore(self._points[0])

    def close(self) -> None:
        self._closer()

    def __enter__(self) -> Inflater:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def seek(self, offset: int) -> None:
        """Move to decompressed byte ``offset`` (the end, if the stream is shorter)."""
        point = self._points[bisect_right(self._points, offset, key=lambda p: p.out) - 1]
        if offset < self._out or point.out > self._out:
            self._restore(point)
        while self._out < offset and self._next(min(offset - self._out, STEP)):
            pass

    def read(self, size: int) -> bytes:
        """Up to ``size`` decompressed bytes, fewer only at the end of the stream or where it
        is damaged (the next read raises :class:`GzipError` then)."""
        parts: list[bytes] = []
        left = size
        try:
            while left > 0 and (part := self._next(min(left, STEP))):
                parts.append(part)
                left -= len(part)
        except GzipError:
            if not parts:
                raise
        return b"".join(parts)

    def _restore(self, point: _Point) -> None:
        self._inflater = point.inflater.copy()
        self._between = point.between
        self._out, self._raw, self._input = point.out, point.raw, b""
        self._file.seek(point.raw)

    def _next(self, limit: int) -> bytes:
        """Up to ``limit`` more decompressed bytes; b"" only at the end of the last member."""
        while True:
            more = bool(self._input) or self._fill()
            if self._between:
                # gzip allows zero bytes after a member, as tape padding; gzip skips them too
                kept = self._input.lstrip(b"\0")
                self._raw += len(self._input) - len(kept)
                self._input = kept
                if not kept:
                    if not more:
                        return b""
                    continue
            data = self._inflate(limit)
            if data:
                return data
            if not more and not self._between:
                raise GzipError(self._out, "the file ends inside it (cut off?)")

    def _fill(self) -> bool:
        """Read the next compressed block; False at the end of the file."""
        self._input = self._file.read(BLOCK)
        return bool(self._input)

    def _inflate(self, limit: int) -> bytes:
        """One zlib call on the input at hand, or on as little of it as gives no error."""
        before = self._inflater.copy()
        try:
            return self._take(limit)
        except zlib.error as exc:
            self._inflater = before
            good = self._most_before_damage(limit)
            if not good:
                said = str(exc).rpartition(": ")[2]
                raise GzipError(self._out, _REASONS.get(said, f"corrupt data ({said})")) from None
            return self._take(good)

    def _most_before_damage(self, limit: int) -> int:
        """The largest output limit under ``limit`` with which zlib gives its bytes without
        reaching the damage (it goes on decoding past a full output until it needs room)."""
        good, bad = 0, limit
        while bad - good > 1:
            middle = (good + bad) // 2
            try:
                self._inflater.copy().decompress(self._input, middle)
                good = middle
            except zlib.error:
                bad = middle
        return good

    def _take(self, limit: int) -> bytes:
        data = self._inflater.decompress(self._input, limit)
        done = self._inflater.eof
        rest = self._inflater.unused_data if done else self._inflater.unconsumed_tail
        self._raw += len(self._input) - len(rest)
        self._input, self._between = rest, done
        if done:
            self._inflater = zlib.decompressobj(GZIP)
        self._out += len(data)
        self._remember()
        return data

    def _remember(self) -> None:
        if self._out < self._points[-1].out + self._spacing:
            return
        point = _Point(self._out, self._raw, self._inflater.copy(), self._between)
        # the remembered input is read again from the file: a point holds no compressed bytes
        self._points.append(point)
        if len(self._points) > MAX_POINTS:
            self._points = self._points[::2]
            self._spacing *= 2
