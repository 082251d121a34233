"""The input of a batch run, JSONL (plain or gzip-compressed) or Parquet (a file or a folder of
files), cut into tasks.

A task is a slice of one file that a worker reads on its own: a byte range of whole lines of a
JSONL file, or a row range inside one row group of a Parquet file. Workers then read and parse
in parallel, the task list is known before scoring starts (progress bar with ETA), and a run
killed half way restarts at its first uncommitted task. Cutting reads only the newlines of a
JSONL file and the footer of a Parquet file.

A gzip-compressed JSONL file is cut the same way, its byte ranges counted in the decompressed
lines: cutting decompresses it once, streaming, and a task is read through a decompressor that
seeks by decompressing forward from a point it remembered (:mod:`service.batch.inflate`). So its
tasks, segments and checkpoints are those of the same file uncompressed, and a resumed run goes
on at the same task; the price of no random access is that each process reading the file
decompresses it about once. Where the stream is damaged (cut off, corrupt) the lines before the
damage are read and the damage is one bad line, ``unreadable``, that says how far it got.

A file of which nothing can be read (a gzip stream damaged from its first byte, a Parquet file
whose footer is lost) stops the run before any work, naming it; with ``--skip-bad`` it is one bad
line instead (line 0, the file refused whole), and the other files are scored.
"""

from __future__ import annotations

import io
import os
import stat
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import BinaryIO, Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from service.batch.inflate import GzipError, Inflater
from service.ingest import (
    ACCOUNT,
    ErrorKind,
    JsonlReader,
    LineError,
    PostLine,
    line_error,
    parse_object,
)
from service.record import Post

Format = Literal["jsonl", "gzip", "parquet"]
"""``gzip``: JSONL compressed with gzip."""
SUFFIXES: dict[str, Format] = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".jsonl.gz": "gzip",
    ".ndjson.gz": "gzip",
    ".parquet": "parquet",
}
"""The files of a folder that are read, by the end of their name in any case."""

SCAN_BYTES = 8 << 20
"""Block size for finding line ends."""


REQUIRED = tuple(name for name, spec in Post.model_fields.items() if spec.is_required())
"""The columns a Parquet file must have: without one, none of its rows is a post."""

SKIP_HINT = "; give --skip-bad to reject the file whole and score the rest"
"""How to score the other files when one cannot be read at all."""

READ_AGAIN = (
    "a run reads its input in parts, from several processes, and reads it again to continue; "
    "save the posts to a file"
)
"""Why INPUT must be a file (or a folder of files)."""

COLUMNS_SHOWN = 10
"""Columns of a Parquet file lacking a required one named in the error; the rest are counted."""

LEFT_OUT_SHOWN = 10
"""Entries of an input folder that a run does not read named in its warning; the rest are
counted."""


class InputError(Exception):
    """The input cannot be read at all (no such file, unknown format, a corrupt Parquet footer, a
    gzip file of which nothing decompresses, a Parquet file without a column every post needs, an
    entry of a folder named as posts that is no file)."""


@dataclass(frozen=True, slots=True)
class Task:
    """Lines ``first_line ..`` of ``path``: bytes ``[start, stop)`` of a JSONL file (of its
    decompressed bytes, gzip), or rows ``[start, stop)`` of row group ``group`` of a Parquet
    file."""

    index: int
    path: str
    fmt: Format
    start: int
    stop: int
    first_line: int
    lines: int
    group: int = 0
    damage: str = ""
    """Why a gzip stream breaks off at ``stop``: its last line is a bad line saying so."""
    refused: LineError | None = None
    """Why a file is not read at all (``--skip-bad``): the task is the whole file, this one bad
    line (line 0)."""

    @property
    def where(self) -> str:
        return self.where_to(self)

    def where_to(self, last: Task) -> str:
        """Its lines and those of the tasks after it up to ``last``: ``in.jsonl:1-4096``, or
        ``a.jsonl:2049-3000 .. b.jsonl:1-2048`` across files."""
        if last.path != self.path:
            return f"{self.where} .. {last.where}"
        return f"{self.path}:{self.first_line}-{last.first_line + last.lines - 1}"


@dataclass(frozen=True, slots=True)
class Chunk:
    """What a task's slice holds: posts and bad lines in file order, and its blank lines."""

    items: list[PostLine | LineError]
    blank_lines: int


@dataclass(frozen=True)
class Listing:
    """INPUT as one walk of it found it (:func:`listing`): the files a run reads, in input
    order, and what a folder holds that the run does not read. The checks before the run, the
    warning of what is left out, and the run itself all use this one list: a file that came or
    went between walks of the folder made them disagree (the checks passed on one list, the
    warning named another, and the run read a third)."""

    path: Path
    files: list[Path]
    left: list[str]
    """What the folder holds that a run does not read (:func:`_search`); empty for a file."""

    def left_out(self) -> str:
        """What the folder holds that a run does not read, for a warning: the files named in
        no format of :data:`SUFFIXES`, the special files, and the links to folders (which the
        search does not follow), the first :data:`LEFT_OUT_SHOWN` named; empty when it holds
        none, or INPUT is a file. Hidden ones are not named: a run's own work folder is one."""
        if not self.left:
            return ""
        more = len(self.left) - LEFT_OUT_SHOWN
        shown = ", ".join(self.left[:LEFT_OUT_SHOWN]) + (f" and {more:,} more" if more > 0 else "")
        return f"folder {self.path}: left out, not a .jsonl, .jsonl.gz or .parquet file: {shown}"


def listing(path: Path) -> Listing:
    """``path`` itself, or the JSONL (plain or gzip) and Parquet files under the folder ``path``
    by name, and the rest, found by one walk of it."""
    if str(path) == "-":
        # a file of that name is given by a path with a folder in it: $PWD/-
        raise InputError(f"INPUT - (standard input) cannot be read: {READ_AGAIN}")
    if not path.exists():
        raise InputError(f"input {path} does not exist")
    if not path.is_dir() and not path.is_file():
        # a named pipe, bash's <(...): read whole to be cut into tasks, then opened again for
        # the first task, which waited for ever for a writer
        raise InputError(f"input {path} is {special_kind(path)}, not a file: {READ_AGAIN}")
    if path.is_dir():
        files, left = _search(path)
        if not files:
            raise InputError(f"folder {path} holds no .jsonl, .jsonl.gz or .parquet file")
        return Listing(path, files, left)
    if file_format(path, given=True) is None:
        raise InputError(
            f"input {path}: unknown format, expected a .jsonl, .jsonl.gz or .parquet file"
        )
    return Listing(path, [path], [])


def _search(folder: Path) -> tuple[list[Path], list[str]]:
    """The files under ``folder`` that a run reads, in name order, and what it leaves out, each
    named under ``folder`` (with what it is, where not a file). An entry named as posts that is
    not a file (a named pipe, a broken link) is refused: the posts it stands for would be
    missing from the run without a word."""
    files: list[Path] = []
    left: list[str] = []
    for found in sorted(folder.rglob("*")):
        name = found.relative_to(folder)
        if any(part.startswith(".") for part in name.parts):
            # hidden files and folders are left out: a run's work folder among them
            continue
        if found.is_dir():
            if found.is_symlink():
                left.append(f"{name} (a link to a folder, not followed)")
            continue
        named = file_format(found) is not None
        if found.is_file():
            if named:
                files.append(found)
            else:
                left.append(str(name))
        elif named:
            kind = special_kind(found)
            if found.exists():  # a broken link has nothing to read, once or again
                kind += f", not a file: {READ_AGAIN}"
            raise InputError(f"{found} in folder {folder} is {kind}")
        else:
            left.append(f"{name} ({special_kind(found)})")
    return files, left


def special_kind(path: Path) -> str:
    """What ``path``, which is neither a file nor a folder, is, in words."""
    if not path.exists():
        return f"a link to {os.readlink(path)}, which does not exist"
    mode = path.stat().st_mode
    for test, kind in (
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISFIFO, "a named pipe"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return kind
    return "a special file"


def file_format(path: Path, *, given: bool = False) -> Format | None:
    """``path``'s format by the end of its name, in any case (``POSTS.JSONL.GZ``); a file
    ``given`` as INPUT itself may end in any ``.gz``, a file found in a folder only in one of
    ``SUFFIXES`` (``notes.txt.gz`` beside the posts is not one)."""
    name = path.name.lower()
    for suffix, fmt in SUFFIXES.items():
        if name.endswith(suffix):
            return fmt
    return "gzip" if given and name.endswith(".gz") else None


def plan(files: list[Path], chunk_size: int, *, skip_bad: bool = False) -> list[Task]:
    """The tasks of ``files`` in input order, at most ``chunk_size`` lines (rows) each.
    ``skip_bad``: a file of which nothing can be read, or a Parquet file lacking a column of
    :data:`REQUIRED`, is one task of one bad line (line 0) instead of an
    :class:`InputError`."""
    tasks: list[Task] = []
    for path in files:
        # files come from listing, which lets only known formats through
        fmt = file_format(path, given=True) or "jsonl"
        if fmt == "parquet":
            tasks.extend(_parquet_tasks(path, chunk_size, len(tasks), skip_bad=skip_bad))
        else:
            tasks.extend(_jsonl_tasks(path, fmt, chunk_size, len(tasks), skip_bad=skip_bad))
    return tasks


def _jsonl_tasks(
    path: Path, fmt: Format, chunk_size: int, first_index: int, *, skip_bad: bool
) -> Iterator[Task]:
    start, line, pending, offset, last = 0, 1, 0, 0, b"\n"
    index = first_index
    damage: GzipError | None = None
    try:
        for block in _blocks(path, fmt):
            ends = np.flatnonzero(np.frombuffer(block, np.uint8) == 10) + offset + 1
            for cut in ends[chunk_size - pending - 1 :: chunk_size].tolist():
                yield Task(index, str(path), fmt, start, cut, line, chunk_size)
                index, start, line = index + 1, cut, line + chunk_size
            pending = (pending + len(ends)) % chunk_size
            offset += len(block)
            last = block[-1:]
    except GzipError as exc:
        damage = exc
    if damage is not None and not damage.offset:
        # as a corrupt Parquet footer: a file of which nothing can be read is likely no input
        if not skip_bad:
            raise InputError(f"{path} is not a readable gzip file: {damage.reason}{SKIP_HINT}")
        reason = f"the gzip stream breaks off before its first line: {damage.reason}"
        yield _refused(path, fmt, index, "unreadable", reason)
    elif damage is not None:
        yield _damaged(Task(index, str(path), fmt, start, offset, line, pending + 1), damage)
    elif start < offset:
        # the last line may lack its newline: it still counts (and is likely cut off)
        yield Task(index, str(path), fmt, start, offset, line, pending + (last != b"\n"))


def _damaged(task: Task, damage: GzipError) -> Task:
    """``task``, the last of its file, whose last line (a part of one, or none) is where the
    gzip stream breaks off."""
    whole = task.first_line + task.lines - 2
    message = (
        f"the gzip stream breaks off after {whole:,} whole lines ({damage.offset:,} bytes "
        f"decompressed): {damage.reason}"
    )
    return replace(task, damage=message)


def _blocks(path: Path, fmt: Format) -> Iterator[bytes]:
    """The bytes of a JSONL file (decompressed, gzip) in order, ``SCAN_BYTES`` at a time; a
    damaged gzip stream raises :class:`GzipError` after the bytes before the damage."""
    try:
        with _open(path, fmt) as stream:
            while block := stream.read(SCAN_BYTES):
                yield block
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from exc


def _open(path: Path, fmt: Format) -> AbstractContextManager[BinaryIO | Inflater]:
    return Inflater(str(path)) if fmt == "gzip" else path.open("rb")


def _parquet_tasks(
    path: Path, chunk_size: int, first_index: int, *, skip_bad: bool
) -> Iterator[Task]:
    try:
        parquet = pq.ParquetFile(path)
        meta = parquet.metadata
    except (pa.ArrowException, OSError) as exc:
        if not skip_bad:
            raise InputError(
                f"{path} is not a readable Parquet file: {_one_line(exc)}{SKIP_HINT}"
            ) from exc
        # the footer holds the schema and where each row group is: no row can be found without
        reason = f"the Parquet file's footer cannot be read, nor any row: {_one_line(exc)}"
        yield _refused(path, "parquet", first_index, "unreadable", reason)
        return
    lacking = _missing_columns(parquet.schema_arrow)
    if lacking and not skip_bad:
        raise InputError(
            f"{path}: {lacking}; rename the columns, or give --skip-bad to reject the file whole "
            "and score the rest"
        )
    if lacking:
        reason = f"the Parquet file {lacking}: none of its {meta.num_rows:,} rows was read"
        yield _refused(path, "parquet", first_index, "missing_columns", reason)
        return
    _check_times(path, parquet.schema_arrow)
    index, row = first_index, 1
    for group in range(meta.num_row_groups):
        rows = meta.row_group(group).num_rows
        for start in range(0, rows, chunk_size):
            stop = min(rows, start + chunk_size)
            yield Task(index, str(path), "parquet", start, stop, row + start, stop - start, group)
            index += 1
        row += rows


def _refused(path: Path, fmt: Format, index: int, kind: ErrorKind, reason: str) -> Task:
    """The task of a file none of which is read (``--skip-bad``): one bad line, line 0."""
    return Task(index, str(path), fmt, 0, 0, 0, 1, refused=LineError(0, None, kind, reason, ""))


def _one_line(exc: BaseException) -> str:
    """``exc``'s message on one line: Arrow's span several."""
    return " ".join(str(exc).split())


def _missing_columns(schema: pa.Schema) -> str:
    """What the file lacks of :data:`REQUIRED`, and the columns it has (empty if nothing):
    found from the footer, as one error, instead of a reject for every row of the file."""
    missing = [name for name in REQUIRED if name not in schema.names]
    if not missing:
        return ""
    has = ", ".join(schema.names[:COLUMNS_SHOWN]) or "none"
    if len(schema.names) > COLUMNS_SHOWN:
        has += f" and {len(schema.names) - COLUMNS_SHOWN:,} more"
    return f"has no {' and no '.join(missing)} column, which every post needs (its columns: {has})"


def _check_times(path: Path, schema: pa.Schema) -> None:
    """Refuse a ``created_at`` column of timestamps without a time zone, before any work: like a
    zone-less ISO 8601 time in JSONL it may be UTC or the platform's local time (eight hours
    apart in China), and a guess would move posts in the near-duplicate window and across
    periods. The type is the whole file's, so one line says it instead of a reject a row."""
    if "created_at" not in schema.names:
        return
    kind = schema.field("created_at").type
    if pa.types.is_timestamp(kind) and kind.tz is None:
        raise InputError(
            f"{path}: column created_at is {kind} without a time zone, which could be UTC or "
            f"local time; write it with its zone (as timestamp[{kind.unit}, tz=UTC], say)"
        )


def read(task: Task) -> Chunk:
    """The posts and bad lines of ``task``, numbered as lines (rows, from 1) of its file."""
    if task.refused is not None:
        return Chunk([task.refused], 0)
    if task.fmt != "parquet":
        return _jsonl_chunk(task)
    try:
        table = _row_group(task.path, task.group).slice(task.start, task.stop - task.start)
    except (pa.ArrowException, OSError) as exc:
        return _unreadable(
            task, f"row group {task.group} of the Parquet file cannot be read: {_one_line(exc)}"
        )
    rows = table.to_pylist()
    return Chunk([parse_object(task.first_line + i, _plain(r)) for i, r in enumerate(rows)], 0)


def _jsonl_chunk(task: Task) -> Chunk:
    try:
        data = _slice(task)
    except GzipError as exc:
        # only if the file changed since the run cut it: cutting read these bytes
        return _unreadable(task, f"{exc} (has the file changed since the run started?)")
    damaged = b""
    if task.damage:
        cut = data.rfind(b"\n") + 1
        data, damaged = data[:cut], data[cut:]
    reader = JsonlReader(io.BytesIO(data), first_line=task.first_line)
    items = list(reader)
    if task.damage:
        last = task.first_line + task.lines - 1
        items.append(line_error(last, damaged, None, "unreadable", task.damage))
    return Chunk(items, reader.blank_lines)


def _slice(task: Task) -> bytes:
    """Bytes ``[start, stop)`` of the task's JSONL file (decompressed, gzip)."""
    if task.fmt == "gzip":
        stream = _inflater(task.path, _version(task.path))
        stream.seek(task.start)
        return stream.read(task.stop - task.start)
    with open(task.path, "rb") as plain:
        plain.seek(task.start)
        return plain.read(task.stop - task.start)


@lru_cache(maxsize=4)
def _inflater(path: str, version: tuple[int, int, int]) -> Inflater:
    """One per gzip file and process, kept: it stands where the last task ended, and remembers
    points to go back to (a warm-up reads tasks backwards). A segment and its warm-up span few
    files; ``version`` makes a file replaced since (a test's, rewritten in place) a new one."""
    return Inflater(path)


def _version(path: str) -> tuple[int, int, int]:
    stat = os.stat(path)
    return stat.st_ino, stat.st_size, stat.st_mtime_ns


def _unreadable(task: Task, message: str) -> Chunk:
    """Every line of ``task`` a bad line: the slice cannot be read."""
    lines = range(task.first_line, task.first_line + task.lines)
    return Chunk([LineError(line, None, "unreadable", message, "") for line in lines], 0)


@lru_cache(maxsize=1)
def _row_group(path: str, group: int) -> pa.Table:
    """One row group's post columns (and :data:`~service.ingest.ACCOUNT`, an account id where
    ``account_id`` is absent); consecutive tasks of a worker mostly share one."""
    parquet = pq.ParquetFile(path)
    wanted = {*Post.model_fields, ACCOUNT}
    columns = [name for name in parquet.schema_arrow.names if name in wanted]
    return parquet.read_row_group(group, columns=columns)


def _plain(row: dict[str, object]) -> dict[str, object]:
    """A Parquet row as the JSON object a producer would have written: nulls are absent fields,
    timestamps with a zone are unix seconds, dates the unix seconds of their midnight UTC,
    decimals numbers (a whole one an integer). A timestamp without a zone (a file replaced since
    :func:`_check_times` read it) becomes ISO 8601 without a zone, which the post refuses as it
    refuses that JSONL line."""
    plain: dict[str, object] = {}
    for key, value in row.items():
        if isinstance(value, datetime):
            plain[key] = value.timestamp() if value.tzinfo else value.isoformat()
        elif isinstance(value, date):
            plain[key] = datetime(value.year, value.month, value.day, tzinfo=UTC).timestamp()
        elif isinstance(value, Decimal):
            # ids too wide for int64 come as DECIMAL(20) from databases: as integers they are
            # ids as the same digits unquoted in JSON are, exactly (a float would round them)
            whole = value == value.to_integral_value()
            plain[key] = int(value) if whole else float(value)
        elif value is not None:
            plain[key] = value
    return plain
