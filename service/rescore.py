"""Re-scoring a JSONL file of stored posts after a model or policy change (``qinglang rescore``).

The run streams the input in chunks through the scorer and writes one score record per good
line, in input order, so that the output can be joined line by line with the input or diffed
with the previous run's output. Bad lines do not stop the run: each is reported on stderr and
kept in a reject file, and nothing is lost: output lines + rejected lines = non-blank input lines.

Both files are written beside their final paths and renamed into place at the end, so a run
that stops (a scorer error, a full disk, Ctrl-C) leaves the previous files as they were rather
than a half-written output that looks complete.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Protocol, get_args

from tqdm import tqdm

from service.heads import RISKS, Risk
from service.ingest import ErrorKind, JsonlReader, LineError, PostLine
from service.record import Decision, Post, ScoreRecord

DEFAULT_CHUNK_SIZE = 2048
"""Posts per ``score_many`` call: large enough for the scorer's length sorting to fill its model
batches with posts of similar length, small enough to keep memory and progress steady."""

DECISIONS: tuple[Decision, ...] = get_args(Decision)


class Scorer(Protocol):
    """What a run needs of :class:`service.pipeline.Pipeline`; tests pass a small stand-in."""

    @property
    def model_version(self) -> str: ...

    def score_many(self, posts: Sequence[Post]) -> list[ScoreRecord]: ...


class RescoreError(Exception):
    """The run could not start or finish; the output and reject files were left as they were."""


@dataclass
class Summary:
    """What a run did, for the report on stderr and for the caller's exit status."""

    input_path: Path
    output_path: Path
    reject_path: Path
    model_version: str
    posts_read: int = 0
    """Non-blank lines, good or bad: always ``scored + failed_total``."""
    blank_lines: int = 0
    scored: int = 0
    failed: Counter[ErrorKind] = field(default_factory=Counter)
    warnings: int = 0
    """Scored posts whose record carries a warning (empty text, text cut to the window)."""
    duplicates: int = 0
    """Good lines whose id an earlier good line already had; each is scored again."""
    decisions: Counter[Decision] = field(default_factory=Counter)
    flags: Counter[Risk] = field(default_factory=Counter)
    elapsed_s: float = 0.0

    @property
    def failed_total(self) -> int:
        return self.failed.total()

    @property
    def posts_per_s(self) -> float:
        return self.posts_read / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def render(self) -> str:
        failed = f"{self.failed_total:,}"
        if self.failed:
            kinds = ", ".join(f"{kind} {n:,}" for kind, n in self.failed.most_common())
            failed += f" ({kinds}) -> {self.reject_path}"
        rows = [
            ("posts read", f"{self.posts_read:,} (and {self.blank_lines:,} blank lines)"),
            ("scored", f"{self.scored:,} -> {self.output_path}"),
            ("failed", failed),
            ("warnings", f"{self.warnings:,}"),
            ("duplicate ids", f"{self.duplicates:,}"),
            ("decisions", ", ".join(f"{d} {self.decisions[d]:,}" for d in DECISIONS)),
            ("flags", ", ".join(f"{risk} {self.flags[risk]:,}" for risk in RISKS)),
            ("elapsed", f"{self.elapsed_s:.1f} s, {self.posts_per_s:,.0f} posts/s"),
        ]
        lines = [f"rescored {self.input_path} with model {self.model_version}"]
        lines += [f"  {name:<14} {value}" for name, value in rows]
        return "\n".join(lines)


def default_reject_path(output_path: Path) -> Path:
    """``scores.jsonl`` keeps its rejects in ``scores.rejects.jsonl``, beside it."""
    return output_path.with_name(output_path.name.removesuffix(".jsonl") + ".rejects.jsonl")


def check_paths(input_path: Path, output_path: Path, reject_path: Path) -> None:
    """Fail before any work (and before the model is loaded) when the files cannot be used."""
    if not input_path.exists():
        raise RescoreError(f"input {input_path} does not exist")
    if input_path.is_dir():
        raise RescoreError(f"input {input_path} is a folder, not a file")
    for path in (output_path, reject_path):
        if path.is_dir():
            raise RescoreError(f"cannot write {path}: it is a folder")
        if not path.parent.is_dir():
            raise RescoreError(f"cannot write {path}: folder {path.parent} does not exist")
        if not os.access(path.parent, os.W_OK):
            raise RescoreError(f"cannot write {path}: folder {path.parent} is not writable")


def rescore(
    input_path: Path,
    output_path: Path,
    scorer: Scorer,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    reject_path: Path | None = None,
    progress: bool = True,
) -> Summary:
    """Score every post of ``input_path`` into ``output_path``; raise :class:`RescoreError` if
    the run cannot complete, in which case neither output file is touched.

    Bad lines go to ``reject_path`` (default :func:`default_reject_path`), which is replaced
    when there are any and removed when there are none, so that it always belongs to the output
    beside it. Whether bad lines make the run a failure is the caller's choice.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, not {chunk_size}")
    reject_path = reject_path or default_reject_path(output_path)
    check_paths(input_path, output_path, reject_path)
    summary = Summary(input_path, output_path, reject_path, scorer.model_version)
    started = time.perf_counter()
    try:
        with (
            _open_input(input_path) as stream,
            _AtomicFile(output_path, keep_empty=True) as output,
            _AtomicFile(reject_path, keep_empty=False) as rejects,
            tqdm(
                total=os.fstat(stream.fileno()).st_size or None,
                desc=input_path.name,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                mininterval=1.0,
                # None: off when stderr is not a terminal, so logs get no bar redraws
                disable=None if progress else True,
                file=sys.stderr,
            ) as bar,
        ):
            run = _Run(str(input_path), scorer, summary, output, rejects)
            run.read(JsonlReader(stream), chunk_size, bar)
    except OSError as exc:
        raise RescoreError(f"rescore stopped: {exc}") from exc
    summary.elapsed_s = time.perf_counter() - started
    return summary


def _open_input(path: Path) -> BinaryIO:
    try:
        return path.open("rb")
    except OSError as exc:
        raise RescoreError(f"cannot read {path}: {exc.strerror}") from exc


class _Run:
    """One run's state: the scorer, the open files, the summary and the ids seen so far."""

    def __init__(
        self,
        label: str,
        scorer: Scorer,
        summary: Summary,
        output: _AtomicFile,
        rejects: _AtomicFile,
    ) -> None:
        self._label = label
        self._scorer = scorer
        self._summary = summary
        self._output = output
        self._rejects = rejects
        # exact, so it grows with the number of distinct ids: about 100 bytes per post
        self._seen: set[str] = set()
        self._started = time.perf_counter()
        self._bytes_shown = 0

    def read(self, reader: JsonlReader, chunk_size: int, bar: tqdm) -> None:
        chunk: list[PostLine] = []
        for item in reader:
            self._summary.posts_read += 1
            if isinstance(item, LineError):
                self._reject(item)
                continue
            chunk.append(item)
            if len(chunk) == chunk_size:
                self._score(chunk)
                chunk = []
                self._advance(bar, reader.bytes_read)
        if chunk:
            self._score(chunk)
        self._advance(bar, reader.bytes_read)
        self._summary.blank_lines = reader.blank_lines

    def _reject(self, error: LineError) -> None:
        self._summary.failed[error.kind] += 1
        self._say(f"{self._label}:{error.line_no}: error: {error.kind}: {error.message}")
        reject = {
            "line": error.line_no,
            "id": error.post_id,
            "error": error.kind,
            "message": error.message,
            "raw": error.raw,
        }
        self._rejects.write_line(json.dumps(reject, ensure_ascii=False))

    def _score(self, chunk: list[PostLine]) -> None:
        posts = [line.post for line in chunk]
        span = f"lines {chunk[0].line_no}-{chunk[-1].line_no}"
        try:
            records = self._scorer.score_many(posts)
        except Exception as exc:
            raise RescoreError(f"scoring {span} failed: {exc!r}") from exc
        if [record.id for record in records] != [post.id for post in posts]:
            # a record written next to the wrong line would silently corrupt the output
            raise RescoreError(f"the scorer's records for {span} do not match the posts in order")
        for line, record in zip(chunk, records, strict=True):
            self._output.write_line(record.model_dump_json())
            self._tally(line, record)

    def _tally(self, line: PostLine, record: ScoreRecord) -> None:
        summary = self._summary
        summary.scored += 1
        summary.decisions[record.decision] += 1
        summary.flags.update(risk for risk, flagged in record.flags.items() if flagged)
        if line.post.id in self._seen:
            summary.duplicates += 1
        self._seen.add(line.post.id)
        if warning := _warning(record):
            summary.warnings += 1
            self._say(f"{self._label}:{line.line_no}: warning: {warning}")

    def _advance(self, bar: tqdm, bytes_read: int) -> None:
        posts = self._summary.posts_read
        rate = posts / max(time.perf_counter() - self._started, 1e-9)
        bar.set_postfix_str(f"{posts:,} posts, {rate:,.0f} posts/s", refresh=False)
        bar.update(bytes_read - self._bytes_shown)
        self._bytes_shown = bytes_read

    @staticmethod
    def _say(message: str) -> None:
        # through tqdm, so that the message does not land in the middle of the progress bar
        tqdm.write(message, file=sys.stderr)


def _warning(record: ScoreRecord) -> str:
    if record.warnings:
        return "; ".join(record.warnings)
    if record.truncated:
        return "the text was longer than the model's window and was cut"
    return ""


class _AtomicFile:
    """A text file written beside ``path`` and renamed over it only when its block succeeds.

    ``keep_empty=False`` is for the reject file: with no lines it is not created, and a stale
    one from an earlier run is removed.
    """

    def __init__(self, path: Path, *, keep_empty: bool) -> None:
        self._path = path
        self._lines = 0
        self._keep_empty = keep_empty
        self._tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            # a lone surrogate can reach here only in a reject's id; escaped it stays valid JSON
            self._file = self._tmp.open(
                "x", encoding="utf-8", errors="backslashreplace", newline="\n"
            )
        except OSError as exc:
            raise RescoreError(f"cannot write {path}: {exc.strerror}") from exc

    def __enter__(self) -> _AtomicFile:
        return self

    def write_line(self, line: str) -> None:
        self._file.write(line + "\n")
        self._lines += 1

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            if exc_type is None and (self._lines or self._keep_empty):
                self._file.flush()
                os.fsync(self._file.fileno())
                self._file.close()
                self._tmp.replace(self._path)
            elif exc_type is None:
                self._path.unlink(missing_ok=True)
        finally:
            self._file.close()
            self._tmp.unlink(missing_ok=True)
