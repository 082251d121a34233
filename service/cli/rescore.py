"""``qinglang rescore``: its usage checks, the export of the stored posts (``--from-db``), the
engine that scores, the confirmed-rumour bank (``--bank``), the run's record and the
comparison with an earlier output (``--compare``, ``--enqueue``), all under one hold on OUTPUT."""

from __future__ import annotations

import argparse
import io
import os
import signal
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from service.cli.signals import on_sigterm

if TYPE_CHECKING:
    from service.batch.sources import Listing
    from service.batch.work import Scorer, ScorerFactory
    from service.rescore import Stored, Summary
    from service.settings import Settings
    from service.storage.repository import StoredRumor


def run(args: argparse.Namespace, load: ScorerFactory) -> int:
    # a stop by kill or a scheduler is Ctrl-C's: one line and status 2 (how to continue, where
    # a checkpoint holds the run), where SIGTERM's default ended it with 143 and no word
    with on_sigterm(signal.default_int_handler), _outliving_stderr():
        try:
            return _rescore(args, load)
        except KeyboardInterrupt:
            # outside the scoring, which names its checkpoint: the export, the comparison, the
            # run's record
            print("qinglang rescore: error: interrupted", file=sys.stderr)
            return 2


class _Outliving(io.TextIOBase):
    """stderr whose reader may go before the run ends: ``2>&1 | head``, a ``| tee`` that the
    same Ctrl-C stopped, a closed terminal. The first write that fails points the stream's file
    descriptor at /dev/null (for every writer after it: the timer's progress lines, Ray's,
    Python's own at exit), and the run goes on without a log, its exit status still saying how
    it ended. Before, the failed write of a progress line or a warning stopped the run, and of
    the error of a stopped run replaced it: status 1 either way, which says that every post was
    written and some lines rejected."""

    encoding = "utf-8"
    """The stream's, for a bar drawn on a terminal (tqdm draws it in ASCII for another)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self.encoding = stream.encoding

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except OSError:
            self._lost()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except OSError:
            self._lost()

    def isatty(self) -> bool:
        return self._stream.isatty()

    def fileno(self) -> int:
        return self._stream.fileno()

    def _lost(self) -> None:
        # a stream without a descriptor of its own (a test's capture) keeps failing: each
        # write is dropped above
        with suppress(OSError, ValueError):
            nowhere = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(nowhere, self._stream.fileno())
            finally:
                os.close(nowhere)
        # what the failed write left in the stream's buffer goes there too
        with suppress(OSError, ValueError):
            self._stream.flush()


@contextmanager
def _outliving_stderr() -> Iterator[None]:
    """``sys.stderr`` an :class:`_Outliving` of itself while the command runs."""
    stderr = sys.stderr
    sys.stderr = _Outliving(stderr)
    try:
        yield
    finally:
        sys.stderr = stderr


def _rescore(args: argparse.Namespace, load: ScorerFactory) -> int:
    from service.batch import RescoreError
    from service.batch.paths import check_outputs, check_paths, default_reject_path
    from service.batch.ray_engine import ClusterError
    from service.rescore import DEFAULT_CHUNK_SIZE
    from service.settings import get_settings

    settings = get_settings()
    if args.batch_size is not None:
        settings = settings.model_copy(update={"batch_size": args.batch_size})
    if args.no_evidence:
        settings = settings.model_copy(update={"evidence": False})
    rejects: Path = args.rejects or default_reject_path(args.output)
    if args.enqueue and args.compare is None:
        print("qinglang rescore: error: --enqueue needs --compare", file=sys.stderr)
        return 2
    if args.enqueue and args.no_evidence and not args.from_db:
        # the server's sweep finds spans only for posts it stored: these would wait for ever
        print(
            "qinglang rescore: error: --enqueue with --no-evidence needs --from-db: a server "
            "adds the spans of queued records only for the posts it stored",
            file=sys.stderr,
        )
        return 2
    usage = _usage_error(args)
    if usage:
        print(f"qinglang rescore: error: {usage}", file=sys.stderr)
        return 2
    # a chunk smaller than a model batch would cap the batch
    chunk_size = args.chunk_size or max(DEFAULT_CHUNK_SIZE, settings.batch_size)
    try:
        check_outputs(args.output, rejects)
        with _held(args.output, rejects):
            if args.from_db:
                args.input = _export(args, settings)
            # the one walk of INPUT: the checks, the warning and the run read the same files
            listed = check_paths(args.input, args.output, rejects, args.compare)
            if left := listed.left_out():
                print(f"qinglang rescore: warning: {left}", file=sys.stderr)
            if args.enqueue:
                _check_queue(settings)
            summary = _run_rescore(args, load, settings, rejects, chunk_size, listed)
            print(summary.render(), file=sys.stderr)
            with _after_the_run(args.output):
                if args.compare is not None:
                    _compare(args, settings)
                # last: it removes the export that the same command would score again
                if args.from_db:
                    _record_run(args, settings, summary)
    except (RescoreError, ClusterError) as exc:
        print(f"qinglang rescore: error: {exc}", file=sys.stderr)
        return 2
    return 1 if summary.failed_total and not args.skip_bad else 0


@contextmanager
def _held(output: Path, rejects: Path) -> Iterator[None]:
    """OUTPUT and the reject file held for the whole command (:meth:`WorkFolder.held`), not for
    the run alone: a run of another period would remove the export this one reads, and one
    started during the comparison would replace the OUTPUT it reads and the report it writes."""
    from service.batch import RescoreError
    from service.batch.checkpoint import CheckpointError, WorkFolder

    with ExitStack() as hold:
        try:
            hold.enter_context(WorkFolder(output).held(rejects))
        except (CheckpointError, OSError) as exc:
            raise RescoreError(str(exc)) from exc
        yield


@contextmanager
def _after_the_run(output: Path) -> Iterator[None]:
    """The comparison, the enqueue and the run's record, once OUTPUT is written: the run keeps
    its work folder until they are done, so that the same command, should one fail, joins its
    parts into OUTPUT again and does them without scoring again. Before, the folder was gone
    with OUTPUT written, and a database that failed during the enqueue left no way to enqueue
    but to score every post again (hours, on millions)."""
    from service.batch import RescoreError
    from service.batch.checkpoint import WorkFolder

    work = WorkFolder(output)
    again = (
        f"every post is scored into {output} and the checkpoint in {work.path} kept: run the "
        "same command again to finish without scoring again"
    )
    try:
        yield
    except RescoreError as exc:
        raise RescoreError(f"{exc}; {again}") from exc
    except KeyboardInterrupt:
        raise RescoreError(f"interrupted; {again}") from None
    work.remove()


def _usage_error(args: argparse.Namespace) -> str:
    every, segment = args.checkpoint_every, args.segment_posts
    if every is not None and segment is not None and every < segment:
        # a checkpoint can only fall where a segment ends: a smaller N would be ignored
        return (
            f"--checkpoint-every {every} is less than --segment-posts {segment}: a checkpoint "
            f"falls at a segment's end, so one could come only every {segment} posts; give "
            f"--segment-posts {every} or less"
        )
    if args.from_db and args.input is not None:
        return "give INPUT or --from-db, not both"
    if not args.from_db and args.input is None:
        return "give INPUT, or --from-db to re-score the stored posts"
    if not args.from_db and (args.since or args.until):
        return "--since and --until need --from-db"
    return _engine_error(args) or _file_name_error(args)


def _engine_error(args: argparse.Namespace) -> str:
    from service.settings import MAX_WORKERS

    if args.engine == "ray":
        return ""
    if args.ray_address is not None:
        # the local engine would run without the cluster the command names
        return "--ray-address needs --engine ray"
    if (args.workers or 0) > MAX_WORKERS:
        # each process here loads the model; a Ray cluster spreads its actors over machines
        return f"--workers {args.workers} is over {MAX_WORKERS} processes on this machine"
    return ""


def _file_name_error(args: argparse.Namespace) -> str:
    from service.batch.records import JSONL_SUFFIXES, file_name_error

    problem = file_name_error(args.output)
    if not problem and args.rejects is not None:
        problem = file_name_error(args.rejects, "--rejects", JSONL_SUFFIXES)
    return problem


def _export(args: argparse.Namespace, settings: Settings) -> Path:
    from service.batch import RescoreError
    from service.batch.stored import PeriodError, export, moment
    from service.storage import StorageError

    try:
        since = moment(args.since) if args.since else None
        until = moment(args.until) if args.until else None
        path, warning = export(settings, since, until, args.output)
    except PeriodError as exc:
        raise RescoreError(str(exc)) from exc
    except StorageError as exc:
        raise RescoreError(f"cannot read the stored posts: {exc}") from exc
    except OSError as exc:
        raise RescoreError(
            f"cannot write the stored posts beside {args.output}: {exc.strerror}"
        ) from exc
    if warning:
        print(f"qinglang rescore: warning: {warning}", file=sys.stderr)
    return path


def _record_run(args: argparse.Namespace, settings: Settings, summary: Summary) -> None:
    from service.batch import RescoreError
    from service.batch.stored import finish, moment
    from service.storage import StorageError
    from service.storage.repository import RescoreRun

    run = RescoreRun(
        since=moment(args.since) if args.since else None,
        until=moment(args.until) if args.until else None,
        model_version=summary.model_version,
        policy_version=summary.policy_version,
        posts=summary.posts_read,
        output=str(args.output),
    )
    try:
        finish(settings, run, args.output)
    except StorageError as exc:
        raise RescoreError(f"the run is written but could not be recorded: {exc}") from exc


def _run_rescore(
    args: argparse.Namespace,
    load: ScorerFactory,
    settings: Settings,
    rejects: Path,
    chunk: int,
    listed: Listing,
) -> Summary:
    import os

    from service.rescore import CHECKPOINT_POSTS, Engine, InlineEngine, batch_settings, rescore

    settings = batch_settings(settings)
    workers = args.workers or len(os.sched_getaffinity(0))
    engine: Engine
    if args.engine == "ray":
        from service.batch.ray_engine import RayEngine

        engine = RayEngine(load, settings, workers, args.ray_address)
    elif workers > 1:
        from service.batch.local import LocalEngine

        engine = LocalEngine(load, settings, workers)
    else:
        engine = InlineEngine(_load_model(load, settings))
    return rescore(
        args.input,
        args.output,
        engine,
        chunk_size=chunk,
        reject_path=rejects,
        progress=not args.no_progress,
        progress_every_s=args.progress_every,
        checkpoint_posts=args.checkpoint_every or CHECKPOINT_POSTS,
        segment_posts=args.segment_posts,
        bank=_bank(settings) if args.bank else (),
        skip_bad=args.skip_bad,
        stored=_stored_posts(args, settings) if args.from_db else None,
        held=True,
        keep=True,
        listed=listed,
    )


def _stored_posts(args: argparse.Namespace, settings: Settings) -> Stored:
    from service.batch.stored import described, where
    from service.rescore import Stored

    return Stored(described(settings, args.since, args.until), where(settings))


def _bank(settings: Settings) -> list[StoredRumor]:
    from service.batch import RescoreError
    from service.storage import StorageError, open_existing

    try:
        repository = open_existing(settings.database, settings.db_timeout_s)
        try:
            return repository.rumors()
        finally:
            repository.close()
    except StorageError as exc:
        raise RescoreError(f"cannot read the confirmed-rumour bank: {exc}") from exc


def _check_queue(settings: Settings) -> None:
    from service.batch import RescoreError
    from service.batch.diff import check_queue
    from service.storage import StorageError

    try:
        check_queue(settings)
    except StorageError as exc:
        raise RescoreError(f"cannot enqueue the newly flagged posts: {exc}") from exc


def _compare(args: argparse.Namespace, settings: Settings) -> None:
    from service.batch import RescoreError
    from service.batch.diff import diff, enqueue, report_file
    from service.batch.records import RecordsError

    try:
        report = diff(args.compare, args.output)
    except RecordsError as exc:
        raise RescoreError(f"cannot compare: {exc}") from exc
    report_path = report_file(args.output)
    report.save(report_path)
    print(f"{report.render()}\n  report -> {report_path}", file=sys.stderr)
    if args.enqueue:
        from service.storage import StorageError

        try:
            added = enqueue(report, settings)
        except StorageError as exc:
            raise RescoreError(f"cannot enqueue the newly flagged posts: {exc}") from exc
        # the records stored, not the items opened: one that flags only what a confirmation
        # of its post decided opens none (SqlRepository._enqueue_score)
        print(
            f"review queue: {added:,} newly flagged records stored (queued unless a "
            "confirmation of the post decided what they flag)",
            file=sys.stderr,
        )


def _load_model(load: ScorerFactory, settings: Settings) -> Scorer:
    from service.batch import RescoreError

    try:
        return load(settings)
    except Exception as exc:
        # status 1 would read as "some lines rejected" to the script that called us
        raise RescoreError(f"cannot load the model: {exc!r}") from exc
