"""The input of a batch run, JSONL or Parquet (a file or a folder of files), cut into tasks.

A task is a slice of one file that a worker reads on its own: a byte range of whole lines of a
JSONL file, or a row range inside one row group of a Parquet file. Workers then read and parse
in parallel, the task list is known before scoring starts (progress bar with ETA), and a run
killed half way restarts at its first uncommitted task. Cutting reads only the newlines of a
JSONL file and the footer of a Parquet file.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from service.ingest import JsonlReader, LineError, PostLine, parse_object
from service.record import Post

Format = Literal["jsonl", "parquet"]
SUFFIXES: dict[str, Format] = {".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}

SCAN_BYTES = 8 << 20
"""Block size for finding line ends."""


class InputError(Exception):
    """The input cannot be read at all (no such file, unknown format, a corrupt Parquet footer)."""


@dataclass(frozen=True, slots=True)
class Task:
    """Lines ``first_line ..`` of ``path``: bytes ``[start, stop)`` of a JSONL file, or rows
    ``[start, stop)`` of row group ``group`` of a Parquet file."""

    index: int
    path: str
    fmt: Format
    start: int
    stop: int
    first_line: int
    lines: int
    group: int = 0

    @property
    def where(self) -> str:
        last = self.first_line + self.lines - 1
        return f"{self.path}:{self.first_line}-{last}"


@dataclass(frozen=True, slots=True)
class Chunk:
    """What a task's slice holds: posts and bad lines in file order, and its blank lines."""

    items: list[PostLine | LineError]
    blank_lines: int


def input_files(path: Path) -> list[Path]:
    """``path`` itself, or the JSONL and Parquet files under the folder ``path`` by name."""
    if not path.exists():
        raise InputError(f"input {path} does not exist")
    if path.is_dir():
        # hidden files and folders are left out: a run's own work folder among them
        files = sorted(
            p
            for p in path.rglob("*")
            if p.is_file()
            and p.suffix in SUFFIXES
            and not any(part.startswith(".") for part in p.relative_to(path).parts)
        )
        if not files:
            raise InputError(f"folder {path} holds no .jsonl or .parquet file")
        return files
    if path.suffix not in SUFFIXES:
        raise InputError(f"input {path}: unknown format, expected a .jsonl or .parquet file")
    return [path]


def plan(files: list[Path], chunk_size: int) -> list[Task]:
    """The tasks of ``files`` in input order, at most ``chunk_size`` lines (rows) each."""
    tasks: list[Task] = []
    for path in files:
        cut = _jsonl_tasks if SUFFIXES[path.suffix] == "jsonl" else _parquet_tasks
        tasks.extend(cut(path, chunk_size, len(tasks)))
    return tasks


def _jsonl_tasks(path: Path, chunk_size: int, first_index: int) -> Iterator[Task]:
    start, line, pending, offset = 0, 1, 0, 0
    index = first_index
    try:
        with path.open("rb") as stream:
            while block := stream.read(SCAN_BYTES):
                ends = np.flatnonzero(np.frombuffer(block, np.uint8) == 10) + offset + 1
                for cut in ends[chunk_size - pending - 1 :: chunk_size].tolist():
                    yield Task(index, str(path), "jsonl", start, cut, line, chunk_size)
                    index, start, line = index + 1, cut, line + chunk_size
                pending = (pending + len(ends)) % chunk_size
                offset += len(block)
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from exc
    if start < offset:
        # the last line may lack its newline: it still counts (and is likely cut off)
        last = pending + (not _ends_line(path, offset))
        yield Task(index, str(path), "jsonl", start, offset, line, last)


def _ends_line(path: Path, size: int) -> bool:
    with path.open("rb") as stream:
        stream.seek(size - 1)
        return stream.read(1) == b"\n"


def _parquet_tasks(path: Path, chunk_size: int, first_index: int) -> Iterator[Task]:
    try:
        meta = pq.ParquetFile(path).metadata
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"{path} is not a readable Parquet file: {exc}") from exc
    index, row = first_index, 1
    for group in range(meta.num_row_groups):
        rows = meta.row_group(group).num_rows
        for start in range(0, rows, chunk_size):
            stop = min(rows, start + chunk_size)
            yield Task(index, str(path), "parquet", start, stop, row + start, stop - start, group)
            index += 1
        row += rows


def read(task: Task) -> Chunk:
    """The posts and bad lines of ``task``, numbered as lines (rows, from 1) of its file."""
    if task.fmt == "jsonl":
        with open(task.path, "rb") as stream:
            stream.seek(task.start)
            data = stream.read(task.stop - task.start)
        reader = JsonlReader(io.BytesIO(data), first_line=task.first_line)
        return Chunk(list(reader), reader.blank_lines)
    try:
        table = _row_group(task.path, task.group).slice(task.start, task.stop - task.start)
    except (pa.ArrowException, OSError) as exc:
        message = f"row group {task.group} of the Parquet file cannot be read: {exc}"
        return Chunk(
            [
                LineError(task.first_line + i, None, "unreadable", message, "")
                for i in range(task.lines)
            ],
            0,
        )
    rows = table.to_pylist()
    return Chunk([parse_object(task.first_line + i, _plain(r)) for i, r in enumerate(rows)], 0)


@lru_cache(maxsize=1)
def _row_group(path: str, group: int) -> pa.Table:
    """One row group's post columns; consecutive tasks of a worker mostly share one."""
    parquet = pq.ParquetFile(path)
    columns = [name for name in parquet.schema_arrow.names if name in Post.model_fields]
    return parquet.read_row_group(group, columns=columns)


def _plain(row: dict[str, object]) -> dict[str, object]:
    """A Parquet row as the JSON object a producer would have written: nulls are absent fields,
    timestamps are unix seconds (a timestamp without a zone is taken as UTC)."""
    plain: dict[str, object] = {}
    for key, value in row.items():
        if isinstance(value, datetime):
            moment = value if value.tzinfo else value.replace(tzinfo=UTC)
            plain[key] = moment.timestamp()
        elif value is not None:
            plain[key] = value
    return plain
