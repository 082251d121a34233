"""Score records in files: JSONL (one record a line, as the API returns it) or Parquet.

In Parquet the record's fixed parts are typed columns (``scores`` and ``flags`` are structs with
a field per risk) and its free-form parts (``reasons`` with their evidence, ``cluster``,
``confirmed_rumor``) are JSON text, so that a query engine can filter on decisions and flags
while every record reads back equal to the one written. An output written before a column was
added reads back with that field's default.
"""

from __future__ import annotations

import gzip
import json
import os
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TextIO, TypeVar

import pyarrow as pa
import pyarrow.parquet as pq

from service.heads import RISKS
from service.record import ScoreRecord

T = TypeVar("T")

SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("account_id", pa.string()),
        ("scores", pa.struct([(risk, pa.float64()) for risk in RISKS])),
        ("flags", pa.struct([(risk, pa.bool_()) for risk in RISKS])),
        ("signals", pa.map_(pa.string(), pa.float64())),
        ("decision", pa.string()),
        ("reasons", pa.string()),
        ("cluster", pa.string()),
        ("confirmed_rumor", pa.string()),
        ("text_digest", pa.string()),
        ("model_version", pa.string()),
        ("policy_version", pa.string()),
        ("degraded", pa.bool_()),
        ("truncated", pa.bool_()),
        ("warnings", pa.list_(pa.string())),
        ("evidence_pending", pa.bool_()),
    ]
)

ADDED = ("confirmed_rumor", "text_digest", "evidence_pending")
"""Columns that Parquet outputs written before them lack: ``--compare`` still reads those."""


JSONL_SUFFIXES = (".jsonl", ".ndjson")
"""What the reject file's name may end in, in any case (or nothing): it is plain JSONL."""
OUTPUT_SUFFIXES = (*JSONL_SUFFIXES, ".jsonl.gz", ".ndjson.gz", ".parquet")
"""What an output's name may end in, in any case; a name without one is JSONL too (gzip JSONL
when ``.gz`` is all it ends in: ``out.gz``)."""


def file_name_error(
    path: Path, what: str = "OUTPUT", suffixes: tuple[str, ...] = OUTPUT_SUFFIXES
) -> str:
    """Why ``path`` cannot name the file ``what`` of a run, which ends in one of ``suffixes``
    (empty if it can): the format follows the suffix, and a suffix of another format
    (``out.csv``, ``out.parquet.gz``) would get JSONL under a name that promises something else;
    ``-`` would be a file of that name, not standard output."""
    if str(path) == "-":
        return (
            f"{what} - (standard output) cannot be written: {what} is made of the checkpoint's "
            "parts when the run completes; give a file"
        )
    name = path.name.lower()
    # a name without a suffix is JSONL, through gzip where the suffixes allow gzip (out.gz)
    zipped = any(allowed.endswith(".gz") for allowed in suffixes)
    suffix = Path(name.removesuffix(".gz") if zipped else name).suffix
    if name.endswith(suffixes) or not suffix:
        return ""
    return (
        f"{what} {path}: {suffix} is not a format rescore writes; end the name in one of "
        f"{', '.join(suffixes)}"
    )


def is_parquet(path: Path) -> bool:
    return path.suffix.lower() == ".parquet"


def is_gzip(path: Path) -> bool:
    """JSONL written (and read) through gzip: an output named ``*.gz``."""
    return path.suffix.lower() == ".gz"


def to_row(record: ScoreRecord) -> dict[str, Any]:
    data = record.model_dump(mode="json")
    data["signals"] = list(data["signals"].items())
    data["reasons"] = json.dumps(data["reasons"], ensure_ascii=False)
    data["cluster"] = None if record.cluster is None else json.dumps(data["cluster"])
    data["confirmed_rumor"] = (
        None if record.confirmed_rumor is None else json.dumps(data["confirmed_rumor"])
    )
    return data


def from_row(row: dict[str, Any]) -> ScoreRecord:
    """The record of a row; a column of :data:`ADDED` that an older output lacks (or that is
    null in the rows of an older run's parts joined into a newer output) gives the default."""
    data = dict(row)
    for name in ADDED:
        if data.get(name) is None:
            data.pop(name, None)
    data["signals"] = dict(data["signals"])
    data["reasons"] = json.loads(data["reasons"])
    for name in ("cluster", "confirmed_rumor"):
        if data.get(name) is not None:
            data[name] = json.loads(data[name])
    return ScoreRecord.model_validate(data)


class RecordWriter:
    """Appends records to a new file (JSONL or Parquet by ``path``'s suffix)."""

    def __init__(self, path: Path, *, parquet: bool) -> None:
        self.path = path
        self._text: TextIO | None = None
        self._parquet: pq.ParquetWriter | None = None
        if parquet:
            self._parquet = pq.ParquetWriter(path, SCHEMA, compression="zstd")
        else:
            self._text = path.open("x", encoding="utf-8", newline="\n")

    def write(self, records: Iterable[ScoreRecord]) -> None:
        if self._text is not None:
            self._text.write("".join(record.model_dump_json() + "\n" for record in records))
        elif self._parquet is not None:
            rows = [to_row(record) for record in records]
            if rows:
                self._parquet.write_table(pa.Table.from_pylist(rows, schema=SCHEMA))

    def write_table(self, table: pa.Table) -> None:
        assert self._parquet is not None
        self._parquet.write_table(table)

    def close(self) -> None:
        """Flush to disk: a part that was committed must survive a crash of the machine."""
        if self._text is not None:
            self._text.flush()
            os.fsync(self._text.fileno())
            self._text.close()
        elif self._parquet is not None:
            self._parquet.close()
            fsync(self.path)

    def abandon(self) -> None:
        try:
            if self._text is not None:
                self._text.close()
            elif self._parquet is not None:
                self._parquet.close()
        except OSError:
            pass  # the disk that failed the write may fail the close too; the file goes anyway
        self.path.unlink(missing_ok=True)


def fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class RecordsError(ValueError):
    """A file read as an output of ``rescore`` holds something else."""


def read_records(path: Path) -> Iterator[ScoreRecord]:
    """The records of an output file, in file order, a batch of rows at a time; raises
    :class:`RecordsError` at the first line (row) that is not a score record."""
    if is_parquet(path):
        number = 0
        try:
            for batch in pq.ParquetFile(path).iter_batches(batch_size=4096):
                for row in batch.to_pylist():
                    number += 1
                    yield _record(from_row, row, f"{path}: row {number}")
        except (pa.ArrowException, OSError) as exc:  # not Parquet, cut off, a damaged page
            said = " ".join(str(exc).split())
            raise RecordsError(f"{path}: cannot be read as Parquet ({said})") from None
        return
    with (
        gzip.open(path, "rt", encoding="utf-8", errors="replace")
        if is_gzip(path)
        else path.open(encoding="utf-8", errors="replace")
    ) as lines:
        try:
            for number, line in enumerate(lines, 1):
                if line.strip():
                    yield _record(ScoreRecord.model_validate_json, line, f"{path}:{number}")
        except (OSError, EOFError, zlib.error) as exc:  # a damaged gzip stream
            raise RecordsError(f"{path}: cannot be read as gzip ({exc})") from None


def read_ids(path: Path) -> list[str]:
    """The ids of the records of a part that this run committed (JSONL or Parquet, never
    gzip: parts stay plain), in file order."""
    if is_parquet(path):
        ids: list[str] = pq.read_table(path, columns=["id"]).column("id").to_pylist()
        return ids
    with path.open(encoding="utf-8") as lines:
        return [json.loads(line)["id"] for line in lines]


def _record(parse: Callable[[T], ScoreRecord], value: T, where: str) -> ScoreRecord:
    try:
        return parse(value)
    except (KeyError, TypeError, ValueError) as exc:
        first = str(exc).splitlines()
        said = "; ".join(first[:2]) if first else type(exc).__name__
        raise RecordsError(f"{where}: not a score record of qinglang rescore ({said})") from None
