"""Re-scoring stored posts after a model or policy change (``qinglang rescore``).

The input (JSONL or Parquet, a file or a folder) is cut into tasks (:mod:`service.batch.sources`)
and the tasks into segments of consecutive tasks (:mod:`service.batch.segments`); an engine scores
whole segments, both stages, in this process, in worker processes or on Ray, and hands them back
in order; this module checks each segment's boundary (a segment whose warm-up did not rebuild the
exact near-duplicate state is matched again here from that state, on the stateless results its
worker sent back: the model does not run again), and writes one score record
per good line in input order, with a checkpoint every few thousand posts
(:mod:`service.batch.checkpoint`). Bad lines do not stop the run: each is kept in a reject file
(the first :data:`ERRORS_SHOWN` are reported on stderr too), so that output records + rejected
lines = non-blank input lines, a file refused whole being one rejected line. OUTPUT
appears only when the run completes; a run that stops (a scorer error, a full disk, SIGKILL)
leaves its checkpoint, and the same command continues it.

The near-duplicate window sees the posts in input order, as the live service sees posts in arrival
order: a file in ``created_at`` order gets the clusters, earliest sources and coordinated batches
the service would have found. Input that is not in that order is scored as given (the service too
matches late posts against what it has seen), and the summary counts the posts whose
``created_at`` is earlier than one before them, so that the caller knows to sort the input first
(out of order, more segments are matched twice). Whatever the engine and the number of segments,
the records are those of one process scoring the posts in input order. The window is saved with
each checkpoint, which falls at a segment's end, so a continued run matches as an uninterrupted
one.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from collections import Counter
from collections.abc import Generator, Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, TextIO

from service.batch import RescoreError
from service.batch.checkpoint import MANIFEST, CheckpointError, JoinError, State, WorkFolder
from service.batch.duplicates import SeenIds
from service.batch.paths import check_paths, default_reject_path
from service.batch.progress import EVERY_S, Progress, say, shown
from service.batch.records import RecordWriter, read_ids
from service.batch.segments import (
    KEEP,
    Segment,
    SegmentResult,
    exact,
    plan_segments,
    run_segment,
    segment_sizes,
)
from service.batch.sources import InputError, Listing, Task, plan
from service.batch.work import Reject, Result, Scorer, ScorerError, Span
from service.heads import RISKS, Risk
from service.record import DECISIONS, Decision, ScoreRecord

if TYPE_CHECKING:
    from service.settings import Settings
    from service.storage.repository import StoredRumor

DEFAULT_CHUNK_SIZE = 2048
"""Lines per task: large enough for the scorer's length sorting to fill its model batches with
posts of similar length, small enough to keep memory and progress steady."""

CHECKPOINT_POSTS = 50_000
"""Posts per committed part, at most, and per segment: a killed run scores again the posts
written since the last commit and the segments in flight (two a worker), up to about
``(1 + 2 x workers) x CHECKPOINT_POSTS``."""

CHECKPOINT_S = 60.0
"""A part is committed at the end of the first segment after this long, so that a slow run
loses little when killed."""

WARNINGS_SHOWN = 10
"""Lines printed per kind of warning; the summary counts every one."""

ERRORS_SHOWN = 100
"""Rejects printed; the reject file keeps every one and the summary counts them (a file of a
million bad lines would otherwise print a million)."""

DUPLICATE = "duplicate id"
"""The warning for a post whose id a post before it has."""

FINGERPRINT_NAMES = {
    "inputs": "the input files",
    "chunk_size": "--chunk-size",
    "batch_size": "--batch-size or the batch_size setting",
    "model_version": "the model",
    "model_file": "the model file (model.onnx)",
    "policy_version": "the policy",
    "policy_digest": "the policy file's values",
    "bank": "the --bank rumours",
    "evidence": "the evidence setting (off with --no-evidence)",
}
"""What each part of a checkpoint's fingerprint is to the user, for the refusal to continue it."""


def batch_settings(settings: Settings) -> Settings:
    """``settings`` for a re-score: a window of the run's own (a shared one in Redis is the live
    service's, which a re-score of old posts must not fill), and replay time for undated posts."""
    return settings.model_copy(update={"redis_url": None, "neardup_replay": True})


class Engine(Protocol):
    """Scores segments somewhere and yields their results in segment order."""

    name: str
    workers: int

    def scorer(self) -> Scorer:
        """This process's scorer, for the boundary checks and the segments matched again
        (loaded once; the model itself is opened only if a segment is scored here, or a record
        matched again needs evidence spans the stateless stage did not find)."""

    def segments(
        self, segments: Sequence[Segment], first: bytes | None, bank: Sequence[StoredRumor]
    ) -> Iterator[SegmentResult]:
        """The first segment from the state ``first`` (None: empty), the others as the engine
        chooses (a warm-up, or the state the one before left); the run checks each."""


class InlineEngine:
    """Every segment in this process, one after the other with one window (``--workers 1``)."""

    name = "one process"
    workers = 1

    def __init__(self, scorer: Scorer) -> None:
        self._scorer = scorer

    def scorer(self) -> Scorer:
        return self._scorer

    def segments(
        self, segments: Sequence[Segment], first: bytes | None, bank: Sequence[StoredRumor]
    ) -> Iterator[SegmentResult]:
        for n, segment in enumerate(segments):
            yield run_segment(segment, self._scorer, first if n == 0 else KEEP)


@dataclass(frozen=True)
class Stored:
    """Posts the service stored (``--from-db``), read through an export whose name and line
    numbers mean nothing to the caller (a hidden file, gone once the run is recorded): the
    summary, the warnings, the rejects and the errors that stop the run name these instead."""

    posts: str
    """What was read, in words, for the summary and as each reject's ``file``: ``the stored
    posts of URL (table stored_posts, since …)``, the URL's password masked."""
    where: str
    """Where a post is, for a line on stderr before its id: ``URL, table stored_posts``."""

    def post(self, post_id: str | None) -> str:
        """A stored post, by the id that keys it (its line in the export says nothing)."""
        return f"stored post {post_id!r} ({self.where})"

    def posts_of(self, span: Span) -> str:
        """The stored posts of ``span``, by the ids of the first and the last (their lines in the
        export say nothing)."""
        if span.first is None or span.last is None:
            return f"the stored posts ({self.where})"
        if span.first == span.last:
            return self.post(span.first)
        return f"stored posts {span.first!r} to {span.last!r} ({self.where})"

    def said(self, error: ScorerError) -> str:
        """``error``'s message, naming its posts as stored ones."""
        return error.said(self.posts_of(error.span) if error.span is not None else None)


@dataclass
class Summary:
    """What a run did (with the runs it continued), for stderr and the exit status."""

    input_path: Path
    output_path: Path
    reject_path: Path
    model_version: str
    engine: str = ""
    policy_version: str = ""
    posts_read: int = 0
    """Non-blank lines (rows), good or bad: always ``scored + failed_total``."""
    blank_lines: int = 0
    scored: int = 0
    failed: Counter[str] = field(default_factory=Counter)
    warnings: int = 0
    """Scored posts whose record carries a warning (empty text, text cut to the window)."""
    warning_kinds: Counter[str] = field(default_factory=Counter)
    """How many records carry each warning."""
    without_spans: int = 0
    """Flagged records left ``evidence_pending`` (a run without evidence)."""
    out_of_order: int = 0
    """Posts whose ``created_at`` is earlier than that of a post before them."""
    duplicates: int = 0
    """Scored posts whose id a scored post before them has (each is scored and written)."""
    newest: float | None = None
    """The newest ``created_at`` so far."""
    decisions: Counter[Decision] = field(default_factory=Counter)
    flags: Counter[Risk] = field(default_factory=Counter)
    elapsed_s: float = 0.0
    resumed: int = 0
    """Posts that an earlier, killed run of the same command had committed, counted as the
    progress counts them (the input's lines, blank ones too: where its count starts)."""
    segments: int = 0
    """Segments scored (with the runs it continued)."""
    rerun: int = 0
    """Segments whose ordered stage ran again from the exact state because their warm-up did
    not rebuild it."""
    input_name: str = ""
    """What was read, in words, where ``input_path`` is not what the caller gave (the export of
    ``--from-db``: :attr:`Stored.posts`); empty: ``input_path``."""

    @property
    def failed_total(self) -> int:
        return self.failed.total()

    @property
    def posts_per_s(self) -> float:
        return self.posts_read / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def tallies(self) -> dict[str, Any]:
        return {
            "posts_read": self.posts_read,
            "blank_lines": self.blank_lines,
            "scored": self.scored,
            "failed": dict(self.failed),
            "warnings": self.warnings,
            "warning_kinds": dict(self.warning_kinds),
            "without_spans": self.without_spans,
            "out_of_order": self.out_of_order,
            "duplicates": self.duplicates,
            "newest": self.newest,
            "decisions": dict(self.decisions),
            "flags": dict(self.flags),
            "elapsed_s": self.elapsed_s,
            "segments": self.segments,
            "rerun": self.rerun,
        }

    def restore(self, tallies: dict[str, Any]) -> None:
        if not tallies:
            return
        self.posts_read = tallies["posts_read"]
        self.blank_lines = tallies["blank_lines"]
        self.scored = tallies["scored"]
        self.failed = Counter(tallies["failed"])
        self.warnings = tallies["warnings"]
        self.warning_kinds = Counter(tallies["warning_kinds"])
        self.without_spans = tallies["without_spans"]
        self.out_of_order = tallies["out_of_order"]
        # a checkpoint made before duplicates were counted is refused: its fingerprint has no
        # batch size
        self.duplicates = tallies["duplicates"]
        self.newest = tallies["newest"]
        self.decisions = Counter(tallies["decisions"])
        self.flags = Counter(tallies["flags"])
        self.elapsed_s = tallies["elapsed_s"]
        # absent from the checkpoint of a run made before segments
        self.segments = tallies.get("segments", 0)
        self.rerun = tallies.get("rerun", 0)

    def add(self, result: Result) -> None:
        self.posts_read += len(result.records) + len(result.rejects)
        self.blank_lines += result.blank_lines
        self.scored += len(result.records)
        self.failed.update(reject.error for reject in result.rejects)
        for record in result.records:
            self.decisions[record.decision] += 1
            self.flags.update(risk for risk, flagged in record.flags.items() if flagged)
            self.warnings += bool(record.warnings or record.truncated)
            self.warning_kinds.update(record.warnings)
            self.without_spans += record.evidence_pending
        for post in result.posts:
            if post.created_at is None:
                continue
            if self.newest is not None and post.created_at < self.newest:
                self.out_of_order += 1
            self.newest = max(post.created_at, self.newest or post.created_at)

    def render(self) -> str:
        failed = f"{self.failed_total:,}"
        if self.failed:
            kinds = ", ".join(f"{kind} {n:,}" for kind, n in self.failed.most_common())
            failed += f" ({kinds}) -> {self.reject_path}"
        rows = [
            ("posts read", f"{self.posts_read:,} (and {self.blank_lines:,} blank lines)"),
            ("scored", f"{self.scored:,} -> {self.output_path}"),
            ("failed", failed),
            # one post can carry two warnings: the kinds below may sum to more
            ("warnings", f"{self.warnings:,} posts"),
            *((f"  {n:,} x", kind) for kind, n in self.warning_kinds.most_common()),
            ("decisions", ", ".join(f"{d} {self.decisions[d]:,}" for d in DECISIONS)),
            ("flags", ", ".join(f"{risk} {self.flags[risk]:,}" for risk in RISKS)),
            ("elapsed", f"{self.elapsed_s:.1f} s, {self.posts_per_s:,.0f} posts/s"),
            ("segments", f"{self.segments:,} ({self.rerun:,} matched again from the exact state)"),
        ]
        if self.out_of_order:
            rows.append(
                (
                    "out of order",
                    f"{self.out_of_order:,} posts are older than a post before them: "
                    "near-duplicates were matched in input order; sort the input by created_at "
                    "for what the live service would have found",
                )
            )
        if self.duplicates:
            rows.append(
                (
                    "duplicate ids",
                    f"{self.duplicates:,} posts repeat the id of a post before them (each is "
                    "scored and written: a post id should name one post)",
                )
            )
        if self.without_spans:
            rows.append(
                (
                    "no spans",
                    f"{self.without_spans:,} flagged records keep evidence_pending "
                    "(run without evidence)",
                )
            )
        if self.resumed:
            rows.append(("resumed", f"after {self.resumed:,} posts of an earlier run"))
        read = self.input_name or str(self.input_path)
        lines = [f"rescored {read} with model {self.model_version} ({self.engine})"]
        lines += [f"  {name:<14} {value}" for name, value in rows]
        return "\n".join(lines)


def rescore(
    input_path: Path,
    output_path: Path,
    engine: Engine,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    reject_path: Path | None = None,
    progress: bool = True,
    progress_every_s: float = EVERY_S,
    checkpoint_posts: int = CHECKPOINT_POSTS,
    segment_posts: int | None = None,
    bank: Sequence[StoredRumor] = (),
    skip_bad: bool = False,
    stored: Stored | None = None,
    held: bool = False,
    keep: bool = False,
    listed: Listing | None = None,
) -> Summary:
    """Score every post under ``input_path`` into ``output_path``; raise :class:`RescoreError`
    if the run cannot complete, in which case neither output file is touched.

    ``bank``: confirmed rumours to match (the service's, from storage), none by default.
    ``segment_posts``: posts per segment (:mod:`service.batch.segments`; a checkpoint falls at a
    segment's end); by default each a ``2 x workers``-th of the tasks left, at most
    ``checkpoint_posts``.
    Bad lines go to ``reject_path`` (default :func:`default_reject_path`), which is
    replaced when there are any and removed when there are none. ``skip_bad``: a file of which
    nothing can be read, or a Parquet file without a column every post needs, is one bad line
    there, instead of stopping the run before any work. ``held``: the caller holds OUTPUT and
    the reject file already (:meth:`WorkFolder.held`), around more than the run. ``keep``: the
    caller does more with OUTPUT (a comparison, an enqueue), so the work folder stays once OUTPUT
    is joined, for the same command to join it again rather than score every post again should
    that fail; the caller removes it (:meth:`WorkFolder.remove`).
    ``progress``: show it on stderr (:mod:`service.batch.progress`: off a terminal, a line every
    ``progress_every_s`` seconds). ``stored``: ``input_path`` is the export of the stored posts
    (``--from-db``), which the summary, the warnings, the rejects and the errors that stop the
    run name instead. ``listed``: ``input_path`` as the caller's one walk of it found it
    (:func:`~service.batch.paths.check_paths`), which the run reads without walking it again.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, not {chunk_size}")
    reject_path = reject_path or default_reject_path(output_path)
    files = check_paths(input_path, output_path, reject_path, listed=listed).files
    stamps, tasks = _planned(files, chunk_size, skip_bad)
    scorer = _loaded(engine, bank)
    fingerprint = _fingerprint(_inputs(files, stamps), chunk_size, scorer, bank)
    work = WorkFolder(output_path)
    with ExitStack() as hold:
        try:
            if not held:
                hold.enter_context(work.held(reject_path))
            state = work.resume(fingerprint, FINGERPRINT_NAMES)
            seen = SeenIds()
            # the ids of the committed parts: a post of this run may repeat one
            for k in range(state.parts):
                seen.add(read_ids(work.part(k)))
        except (CheckpointError, OSError) as exc:
            raise RescoreError(str(exc)) from exc
        summary = Summary(
            input_path,
            output_path,
            reject_path,
            scorer.model_version,
            engine.name,
            scorer.policy_version,
            input_name=stored.posts if stored else "",
        )
        summary.restore(state.tallies)
        saved = work.ordered_state(state.parts)
        first = saved.read_bytes() if state.parts and saved.is_file() else None
        if (state.parts and first is None) or not scorer.use_state(first):
            raise RescoreError(
                f"the checkpoint in {work.path} has no usable near-duplicate window; delete the "
                "folder to start over"
            )
        most = -(-checkpoint_posts // chunk_size)
        sizes: Iterable[int] = (
            segment_sizes(len(tasks) - state.tasks_done, engine.workers, most)
            if segment_posts is None
            else itertools.repeat(-(-segment_posts // chunk_size))
        )
        segments = plan_segments(tasks, state.tasks_done, sizes)

        run = _Run(
            work,
            state,
            summary,
            checkpoint_posts,
            first or scorer.state(),
            seen,
            stored,
            tasks,
            list(zip(files, stamps, strict=True)),
        )
        with shown(
            run.total,
            summary.resumed,
            enabled=progress,
            every_s=progress_every_s,
        ) as progress_shown:
            # a generator: nothing runs before the first result is asked for
            results = engine.segments(segments, first, bank)
            try:
                run.write(exact(results, scorer.frontier(), scorer), progress_shown)
                work.finish(state, reject_path, keep=keep)
            except ScorerError as exc:
                said = stored.said(exc) if stored is not None else str(exc)
                raise RescoreError(f"{said}; {run.resume_hint}") from exc
            except JoinError as exc:
                raise RescoreError(str(exc)) from exc
            except OSError as exc:
                raise RescoreError(f"rescore stopped: {exc}; {run.resume_hint}") from exc
            except KeyboardInterrupt:
                raise RescoreError(f"interrupted; {run.resume_hint}") from None
            finally:
                run.abandon()
                _close(results)
        return summary


def _planned(files: list[Path], chunk_size: int, skip_bad: bool) -> tuple[list[_Stamp], list[Task]]:
    """The input files' stamps (:func:`_stamp`) and their tasks (:func:`plan`); the files are
    stamped before they are cut, so that one written meanwhile differs at the run's first
    commit."""
    try:
        stamps = [_stamp(path) for path in files]
    except OSError as exc:
        # listed by the walk of INPUT, gone (or unreadable) since
        raise RescoreError(f"cannot read {exc.filename}: {exc.strerror}") from exc
    try:
        return stamps, plan(files, chunk_size, skip_bad=skip_bad)
    except InputError as exc:
        raise RescoreError(str(exc)) from exc


def _close(results: Iterator[SegmentResult]) -> None:
    """The engine's clean-up (Ray's shutdown, which gives stderr back) now, before the error is
    said, not whenever the generator is collected."""
    if isinstance(results, Generator):
        results.close()


class _Stamp(NamedTuple):
    """Which file an input path is, and as it was written: a file renamed over it (an export
    written beside and renamed, rsync) has another inode, or device; one written to has another
    size or modification time, and another status-change time, which the writer cannot set
    back as it can the modification time (``cp -p``, ``rsync -t``, ``touch -r``). What no stamp
    tells is a file written in place to the same size within one tick of a file system's
    coarse clock (a second, on some): the run would have to read it again."""

    device: int
    inode: int
    size: int
    modified: int
    changed: int


def _stamp(path: Path) -> _Stamp:
    found = path.stat()
    return _Stamp(found.st_dev, found.st_ino, found.st_size, found.st_mtime_ns, found.st_ctime_ns)


def _inputs(files: Sequence[Path], stamps: Sequence[_Stamp]) -> list[list[Any]]:
    """Each input file's path, size and modification time, for the fingerprint: which files the
    run reads. The inode and the status-change time are left out of it: a file put back from a
    copy (as a run stopped by a change asks) has new ones, and still continues its
    checkpoint."""
    return [
        [str(path), stamp.size, stamp.modified] for path, stamp in zip(files, stamps, strict=True)
    ]


def _fingerprint(
    inputs: list[list[Any]], chunk_size: int, scorer: Scorer, bank: Sequence[StoredRumor]
) -> dict[str, Any]:
    """What a run's records follow from (:data:`FINGERPRINT_NAMES`), ``inputs`` by
    :func:`_inputs`: a checkpoint is continued only by a run with the same. The model file and
    the policy's values are hashed, as their versions would not change with a file copied or
    edited in place."""
    return {
        "inputs": inputs,
        "chunk_size": chunk_size,
        "batch_size": scorer.classifier.batch_size,
        "model_version": scorer.model_version,
        "model_file": scorer.classifier.digest,
        "policy_version": scorer.policy_version,
        "policy_digest": scorer.policy_digest,
        "bank": sorted(r.rumor_id for r in bank),
        "evidence": scorer.evidence,
    }


def _loaded(engine: Engine, bank: Sequence[StoredRumor]) -> Scorer:
    """The engine's scorer, matching ``bank``."""
    try:
        scorer = engine.scorer()
        scorer.use_bank(bank)
    except Exception as exc:
        # status 1 would read as "some lines rejected" to the script that called us
        raise RescoreError(f"cannot load the model: {exc!r}") from exc
    return scorer


class _Run:
    """Writes results into the current part and commits parts as they fill."""

    def __init__(
        self,
        work: WorkFolder,
        state: State,
        summary: Summary,
        every: int,
        ordered: bytes,
        seen: SeenIds,
        stored: Stored | None,
        tasks: Sequence[Task],
        inputs: Sequence[tuple[Path, _Stamp]],
    ) -> None:
        self._work, self._state, self._summary, self._every = work, state, summary, every
        self._stored = stored
        self._inputs = inputs
        """Each input file and its stamp when the run cut it into tasks."""
        self._lines = [task.lines for task in tasks]
        """Each task's lines, blank ones too: what the progress counts as posts."""
        self.total = sum(self._lines)
        self._committed = state.tasks_done
        """The tasks of the parts committed, where the same command continues."""
        summary.resumed = sum(self._lines[: state.tasks_done])
        self._ordered = ordered
        """The ordered stage's state after the last segment written."""
        self._seen = seen
        """The ids of the records written so far, this run's and the committed ones."""
        self._shown: Counter[str] = Counter()
        self._errors = 0
        self._started = time.perf_counter()
        self._elapsed_before = summary.elapsed_s
        self._records: RecordWriter | None = None
        self._final: Path | None = None
        self._rejects: TextIO | None = None
        self._posts = 0
        self._last_commit = self._started

    @property
    def resume_hint(self) -> str:
        # the posts of the last commit (those read since are scored again by the next run), of
        # all, as the progress counts them: the input's lines, blank ones too (before, the
        # non-blank ones, another count than the "(stopped)" line above it and the next run's)
        return (
            f"the checkpoint in {self._work.path} is intact: run the same command again to "
            f"continue after {sum(self._lines[: self._committed]):,} of {self.total:,} posts"
        )

    def write(self, segments: Iterator[SegmentResult], progress: Progress) -> None:
        """Write each segment's records; commit at a segment's end (the only points where the
        ordered stage's state is known here)."""
        for segment in segments:
            for result in segment.results:
                if result.index != self._state.tasks_done:
                    # an engine that delivered out of order (or twice) would corrupt the output
                    raise ScorerError(
                        f"the engine returned task {result.index} where "
                        f"{self._state.tasks_done} was due"
                    )
                self._write(result)
                self._summary.add(result)
                self._state.tasks_done += 1
                self._posts += len(result.records) + len(result.rejects)
                progress.update(len(result.records) + len(result.rejects) + result.blank_lines)
            self._ordered = segment.state
            self._summary.segments += 1
            self._summary.rerun += segment.rerun
            elapsed = time.perf_counter() - self._last_commit
            if self._posts >= self._every or elapsed >= CHECKPOINT_S:
                self._commit()
        if self._records is not None or not self._state.parts:
            self._commit()

    @contextmanager
    def _writing(self, path: Path) -> Iterator[None]:
        """Stop the run naming ``path`` when writing it fails: the OS error of a full disk,
        ``[Errno 28] No space left on device``, names no file."""
        try:
            yield
        except OSError as exc:
            raise RescoreError(
                f"rescore stopped: cannot write {path}: {exc.strerror or exc}; {self.resume_hint}"
            ) from exc

    def _write(self, result: Result) -> None:
        if self._records is None:
            self._records, self._final = self._work.open_part(self._state.parts)
        with self._writing(self._records.path):
            self._records.write(result.records)
        if result.rejects:
            path = self._work.rejects(self._state.parts)
            tmp = path.with_name("." + path.name)
            with self._writing(tmp):
                if self._rejects is None:
                    # a lone surrogate can reach here only in a reject's id; escaped it stays
                    # valid JSON
                    self._rejects = tmp.open("x", encoding="utf-8", errors="backslashreplace")
                for reject in result.rejects:
                    self._rejects.write(self._reject_line(reject))
        # said in line order, errors and warnings mixed: (line, kind of warning or None for an
        # error, the line to say)
        notes: list[tuple[int, str | None, str]] = []
        for reject in result.rejects:
            where = self._where(reject.file, reject.line, reject.id)
            notes.append((reject.line, None, f"{where}: error: {reject.error}: {reject.message}"))
        for line, record in zip(result.lines, result.records, strict=True):
            for warning in _warnings(record):
                where = self._where(result.path, line, record.id)
                notes.append((line, warning, f"{where}: warning: {warning}"))
        repeats = self._seen.add([record.id for record in result.records])
        self._summary.duplicates += len(repeats)
        for i in repeats:
            post_id, line = result.records[i].id, result.lines[i]
            where = self._where(result.path, line, post_id)
            notes.append(
                (
                    line,
                    DUPLICATE,
                    f"{where}: warning: {DUPLICATE} {post_id!r}: a post before it has the same "
                    "id (both are scored)",
                )
            )
        for _, kind, message in sorted(notes, key=lambda note: note[0]):
            if kind is None:
                self._error(message)
            else:
                # the first few of each warning by line; the summary counts them all (a file
                # without created_at would otherwise print one for every post)
                self._warn(kind, message)

    def _where(self, path: str, line: int, post_id: str | None) -> str:
        """Where a post was read, for a line on stderr: ``FILE:LINE`` (line 0: a file refused
        whole), or the stored post of that id."""
        if self._stored is not None:
            return self._stored.post(post_id)
        return f"{path}:{line}" if line else path

    def _reject_line(self, reject: Reject) -> str:
        found = reject.as_json()
        if self._stored is not None:
            # the export's name and lines are of a hidden file, gone once the run is recorded
            found |= {"file": self._stored.posts, "line": None}
        return json.dumps(found, ensure_ascii=False) + "\n"

    def _error(self, message: str) -> None:
        """Say a reject's ``message`` if it is among the first :data:`ERRORS_SHOWN`."""
        self._errors += 1
        if self._errors <= ERRORS_SHOWN:
            say(message)
        elif self._errors == ERRORS_SHOWN + 1:
            say(
                f"(errors after the first {ERRORS_SHOWN} are not printed: "
                f"{self._summary.reject_path} keeps every one and the summary counts them)"
            )

    def _warn(self, kind: str, message: str) -> None:
        """Say ``message`` if it is among the first few of its ``kind``."""
        self._shown[kind] += 1
        if self._shown[kind] <= WARNINGS_SHOWN:
            say(message)
        if self._shown[kind] == WARNINGS_SHOWN:
            say(f"(further '{kind}' warnings are counted in the summary)")

    def _commit(self) -> None:
        self._check_inputs()
        if self._records is None:
            self._records, self._final = self._work.open_part(self._state.parts)
        assert self._final is not None
        with self._writing(self._records.path):
            self._records.close()
            self._records.path.replace(self._final)
        self._records = None
        if self._rejects is not None:
            final = self._work.rejects(self._state.parts)
            with self._writing(final.with_name("." + final.name)):
                self._rejects.flush()
                os.fsync(self._rejects.fileno())
                self._rejects.close()
                self._rejects = None
                final.with_name("." + final.name).replace(final)
        self._state.parts += 1
        # the window as of the parts committed: a continued run matches as this one would
        with self._writing(self._work.ordered_state(self._state.parts)):
            self._work.save_ordered_state(self._state.parts, self._ordered)
        now = time.perf_counter()
        self._summary.elapsed_s = self._elapsed_before + now - self._started
        tallies = self._summary.tallies()
        with self._writing(self._work.path / MANIFEST):
            # the state's tallies only once committed: a failed commit's hint counts the posts
            # of the last one
            self._work.commit(replace(self._state, tallies=tallies))
        self._state.tallies = tallies
        self._committed = self._state.tasks_done
        self._work.drop_ordered_states(self._state.parts)
        self._posts, self._last_commit = 0, now

    def _check_inputs(self) -> None:
        """Stop the run, before the part is committed, when an input file is no longer the one
        it cut into tasks: a file still being written (an export that has not finished) was
        scored as far as the run first read it, the posts written after it left out without
        a word, and a file replaced had its tasks' byte ranges read from another file."""
        for path, before in self._inputs:
            try:
                now = _stamp(path)
            except OSError as exc:
                raise RescoreError(f"rescore stopped: {exc}; {self.resume_hint}") from exc
            if now != before:
                raise RescoreError(
                    f"{path} changed during the run (written to or replaced): its posts as they "
                    "are now are not those the run cut into tasks; the checkpoint in "
                    f"{self._work.path} holds the posts up to "
                    f"{sum(self._lines[: self._committed]):,} of {self.total:,} of the file as "
                    "it was: put that file back and run the same command again to continue, "
                    "or delete the folder to start over"
                )

    def abandon(self) -> None:
        """Drop the part in progress (the next run writes it again)."""
        self._summary.elapsed_s = self._elapsed_before + time.perf_counter() - self._started
        if self._records is not None:
            self._records.abandon()
        if self._rejects is not None:
            with suppress(OSError):
                self._rejects.close()


def _warnings(record: ScoreRecord) -> list[str]:
    if record.truncated and not record.warnings:
        return ["the text was longer than the model's window and was cut"]
    return record.warnings
