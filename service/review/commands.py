"""``qinglang audit verify|export``, ``qinglang labels export``, ``qinglang credit restore``.

Exit status: 0 done (the chain intact); 1 the chain is broken, or a text it chains the digest
of was edited, or an account's row says other than the chain does (each problem on stderr), or
``credit restore`` could not restore some accounts (named on stderr; it restored the others, and
its next run tries them again); 2 the command could not run (storage unreachable, unwritable
output).
"""

from __future__ import annotations

import argparse
import os
import stat
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, TextIO

if TYPE_CHECKING:
    from service.policy import Policy
    from service.settings import Settings
    from service.storage import SqlRepository

OUTPUT_HELP = "file, or - for standard output (the default)"


def _moment(text: str) -> datetime:
    """Unix seconds or ISO 8601 with a zone, as ``rescore --since`` takes them: a time without
    one would be read in some zone nobody named, and the export would miss or add hours."""
    from service.record import unix_seconds

    try:
        return datetime.fromtimestamp(unix_seconds(text), UTC)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_commands(commands: Any) -> None:
    audit = commands.add_parser("audit", help="verify or export the hash-chained records")
    audit_commands = audit.add_subparsers(dest="audit_command", required=True, metavar="COMMAND")
    audit_commands.add_parser(
        "verify",
        help="walk the chain; exit 1 naming every edited, missing or moved record, every "
        "stored text (report, appeal reason, note, rumour) that differs from its chained digest, "
        "and every account whose row (credit, level, profile, dormancy) differs from what the "
        "records say of it",
    )
    export = audit_commands.add_parser(
        "export", help="write the records of a period (what a regulator asks for)"
    )
    export.add_argument(
        "--from", dest="start", type=_moment, help="inclusive: unix seconds or ISO 8601 with a zone"
    )
    export.add_argument(
        "--to", dest="end", type=_moment, help="exclusive: unix seconds or ISO 8601 with a zone"
    )
    export.add_argument("--format", choices=["jsonl", "csv"], default="jsonl")
    # kept as typed: Path("") is ".", and the empty path must be refused as such
    export.add_argument("-o", "--output", metavar="PATH", help=OUTPUT_HELP)
    labels = commands.add_parser("labels", help="reviewers' decisions as training data")
    label_commands = labels.add_subparsers(dest="labels_command", required=True, metavar="CMD")
    labels_export = label_commands.add_parser(
        "export", help="JSONL: text, head, label, decided at, policy and model version"
    )
    labels_export.add_argument("-o", "--output", metavar="PATH", help=OUTPUT_HELP)
    credit = commands.add_parser("credit", help="account credit")
    credit_commands = credit.add_subparsers(dest="credit_command", required=True, metavar="CMD")
    credit_commands.add_parser(
        "restore", help="give back the points of completed clean periods (run daily)"
    )


def run(args: argparse.Namespace) -> int:
    from service.policy import PolicyError
    from service.settings import get_settings
    from service.storage import StorageError, open_existing, open_migrated

    try:
        output = _target(args.output) if "output" in args else Output(None, in_place=True)
        if "start" in args:
            _check_period(args.start, args.end)
    except UnusableError as exc:
        print(f"qinglang {args.command}: error: {exc}", file=sys.stderr)
        return 2
    settings = get_settings()
    timeout_s = max(settings.db_timeout_s, 30.0)
    try:
        if args.command == "credit":
            repository = open_migrated(settings.database, timeout_s)
        else:
            # audit and labels only read: a mistyped path must not become an empty database
            repository = open_existing(settings.database, timeout_s)
        try:
            return _command(args, repository, settings, output)
        finally:
            repository.close()
    except BrokenPipeError:
        if output.path is None:
            _discard_stdout()
        print(f"qinglang {args.command}: error: the output's reader closed it", file=sys.stderr)
        return 2
    except (StorageError, OSError, PolicyError) as exc:
        print(f"qinglang {args.command}: error: {exc}", file=sys.stderr)
        return 2


def _check_period(start: datetime | None, end: datetime | None) -> None:
    """Refuse an export period that holds no time: ``--from`` at or after ``--to`` (the two
    swapped, or a zone mistyped) would export no record and look like a period in which
    nothing was done."""
    if start is not None and end is not None and start >= end:
        raise UnusableError(
            f"the period is empty: --from {start.isoformat()} is not before --to {end.isoformat()}"
        )


COPY_SQLITE = 'copy a SQLite file with sqlite3 DB ".backup COPY", or with its -wal file'


def _empty_chain(rows: int) -> int:
    """``audit verify``'s answer for a chain of no records, beside ``rows`` rows whose writes
    chain one each. A SQLite file in WAL mode copied without its ``-wal`` file holds only what
    was checkpointed: often nothing, which reads as a database nothing was written to."""
    if rows:
        print(
            f"qinglang audit verify: no records in the chain, but {rows} rows of score records, "
            "review items and accounts, each written with one: the database is not whole "
            f"({COPY_SQLITE})",
            file=sys.stderr,
        )
        return 1
    print(
        "qinglang audit verify: ok, 0 records: nothing was written to this database, or it is "
        f"a copy without what its writers had not checkpointed ({COPY_SQLITE})",
        file=sys.stderr,
    )
    return 0


def _command(
    args: argparse.Namespace, repository: SqlRepository, settings: Settings, output: Output
) -> int:
    from service.policy import load_policy
    from service.review import chain, export, replay
    from service.review.registration import keyed

    if args.command == "credit":
        return _restore_credit(repository, load_policy(settings.policy_file))
    if args.command == "labels":
        with _open(output) as out:
            count = export.write_labels(repository.labels(), out)
        batches = repository.batch_decisions()
        print(
            f"qinglang labels export: {count} labels; {batches} decisions on coordinated "
            "batches give none (coordination is how accounts posted, not what a text says)",
            file=sys.stderr,
        )
        return 0
    if args.audit_command == "verify":
        head = repository.audit_head()
        texts = chain.TextCheck(repository.stored_texts, repository.unrecorded_texts)
        # up to the head read: what a live server appends meanwhile is the next verify's, where
        # walking on into it would find the chain longer than its head
        problems = chain.verify(repository.audit_entries(through=head[0]), head, texts)
        # read only where a row differs: a subject chained before 0028_subject_keys, unkeyed
        accounts = replay.check(
            repository.replayed_accounts(), lambda plain: keyed(repository.subjects.key, plain)
        )
        problems += accounts.problems
        for problem in problems:
            print(f"qinglang audit verify: {problem}", file=sys.stderr)
        if problems:
            print(
                f"qinglang audit verify: walked the chain to record {head[0]}, the head when "
                "the walk began",
                file=sys.stderr,
            )
            return 1
        if head[0] == 0:
            return _empty_chain(repository.chained_rows())
        print(
            f"qinglang audit verify: ok, {head[0]} records (1 to {head[0]}, the head when the "
            "walk began; those appended since are the next verify's); "
            f"{texts.checked} stored texts match "
            f"the digests chained of them, {texts.unverifiable} unverifiable (their records "
            f"were written before their kind chained one), {texts.removed} removed with "
            f"their rumour bank entries; {accounts.checked} account rows agree with what the "
            "records say of them",
            file=sys.stderr,
        )
        return 0
    with _open(output) as out:
        entries = repository.audit_entries(args.start, args.end)
        count = export.write_records(entries, out, args.format)
    print(f"qinglang audit export: {count} records", file=sys.stderr)
    return 0


def _restore_credit(repository: SqlRepository, policy: Policy) -> int:
    from service.storage import SweepIncompleteError

    try:
        restored = repository.restore_credit(policy)
    except SweepIncompleteError as exc:
        print(
            f"qinglang credit restore: {exc.done} accounts restored; {len(exc.failed)} could "
            "not be (tried again by the next run):",
            file=sys.stderr,
        )
        for account, problem in exc.failed.items():
            print(f"qinglang credit restore: {account}: {problem}", file=sys.stderr)
        return 1
    print(f"qinglang credit restore: {restored} accounts restored", file=sys.stderr)
    return 0


class UnusableError(ValueError):
    """An argument the command cannot act on (an ``-o`` path that cannot be written, an export
    period that holds no time), found before anything is read."""


class Output(NamedTuple):
    path: Path | None
    """None: standard output."""
    in_place: bool
    """Opened and written as it is: no file beside it, no rename."""


def _target(text: str | None) -> Output:
    """Where ``-o`` writes. A regular file (a new one, or one a symlink names) is written whole
    beside it and then moved into place, so that a failed export leaves the old file; anything
    else that exists (a FIFO, a device, ``/dev/stdout``) is written in place, as renaming over it
    would replace the link or device rather than write to what it stands for."""
    if text is None or text == "-":
        return Output(None, in_place=True)
    if not text:
        raise UnusableError("the path is empty (give a file, or - for standard output)")
    path = Path(text)
    try:
        mode: int | None = path.stat().st_mode
    except FileNotFoundError:
        mode = None
    except OSError as exc:
        raise UnusableError(f"cannot write {text!r}: {exc.strerror}") from None
    if mode is not None and stat.S_ISDIR(mode):
        raise UnusableError(f"{text!r} is a folder")
    if mode is not None and _is_stdout(path):
        # `-o /dev/stdout >> log`: the shell's descriptor appends; reopening would truncate
        return Output(None, in_place=True)
    if mode is not None and not stat.S_ISREG(mode):
        return Output(path, in_place=True)
    if text.endswith(os.sep):
        raise UnusableError(f"{text!r} names a folder, which does not exist")
    target = path.resolve() if path.is_symlink() else path
    folder = target.parent
    if not folder.is_dir():
        raise UnusableError(f"cannot write {text!r}: folder {str(folder)!r} does not exist")
    if not os.access(folder, os.W_OK):
        raise UnusableError(f"cannot write {text!r}: folder {str(folder)!r} is not writable")
    return Output(target, in_place=False)


def _is_stdout(path: Path) -> bool:
    try:
        return os.path.samestat(path.stat(), os.fstat(sys.stdout.fileno()))
    except (OSError, ValueError):
        return False  # no descriptor behind standard output (a test's capture)


@contextmanager
def _open(output: Output) -> Iterator[TextIO]:
    if output.path is None:
        yield sys.stdout
        sys.stdout.flush()
        return
    if output.in_place:
        with open(output.path, "w", newline="", encoding="utf-8") as out:
            yield out
        return
    partial = output.path.with_name(output.path.name + ".part")
    try:
        with open(partial, "w", newline="", encoding="utf-8") as out:
            yield out
        partial.replace(output.path)
    finally:
        partial.unlink(missing_ok=True)


def _discard_stdout() -> None:
    """Python flushes standard output again at exit; what is still buffered would fail there
    too, and print a second, uglier message."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass  # not a real file descriptor (a test's capture): nothing will be flushed at exit
