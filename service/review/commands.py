"""``qinglang audit verify|export``, ``qinglang labels export``, ``qinglang credit restore``.

Exit status: 0 done (the chain intact); 1 the chain is broken (each problem on stderr); 2 the
command could not run (storage unreachable, unwritable output).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO


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
        "verify", help="walk the chain; exit 1 naming every edited, missing or moved record"
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
    export.add_argument("-o", "--output", type=Path, help="file (default: standard output)")
    labels = commands.add_parser("labels", help="reviewers' decisions as training data")
    label_commands = labels.add_subparsers(dest="labels_command", required=True, metavar="CMD")
    labels_export = label_commands.add_parser(
        "export", help="JSONL: text, head, label, decided at, policy and model version"
    )
    labels_export.add_argument("-o", "--output", type=Path, help="file (default: stdout)")
    credit = commands.add_parser("credit", help="account credit")
    credit_commands = credit.add_subparsers(dest="credit_command", required=True, metavar="CMD")
    credit_commands.add_parser(
        "restore", help="give back the points of completed clean periods (run daily)"
    )


def run(args: argparse.Namespace) -> int:
    from service.policy import PolicyError, load_policy
    from service.review import chain, export
    from service.settings import get_settings
    from service.storage import StorageError, open_repository, upgrade

    settings = get_settings()
    try:
        upgrade(settings.database)
        repository = open_repository(settings.database, max(settings.db_timeout_s, 30.0))
        try:
            if args.command == "credit":
                restored = repository.restore_credit(load_policy(settings.policy_file))
                print(f"qinglang credit restore: {restored} accounts restored", file=sys.stderr)
                return 0
            if args.command == "labels":
                with _output(args.output) as out:
                    count = export.write_labels(repository.labels(), out)
                print(f"qinglang labels export: {count} labels", file=sys.stderr)
                return 0
            if args.audit_command == "verify":
                head = repository.audit_head()
                problems = chain.verify(repository.audit_entries(), head)
                for problem in problems:
                    print(f"qinglang audit verify: {problem}", file=sys.stderr)
                if problems:
                    return 1
                print(f"qinglang audit verify: ok, {head[0]} records", file=sys.stderr)
                return 0
            with _output(args.output) as out:
                entries = repository.audit_entries(args.start, args.end)
                count = export.write_records(entries, out, args.format)
            print(f"qinglang audit export: {count} records", file=sys.stderr)
            return 0
        finally:
            repository.close()
    except (StorageError, OSError, PolicyError) as exc:
        print(f"qinglang {args.command}: error: {exc}", file=sys.stderr)
        return 2


@contextmanager
def _output(path: Path | None) -> Iterator[TextIO]:
    """The output file (written whole, then moved into place) or standard output."""
    if path is None:
        yield sys.stdout
        sys.stdout.flush()
        return
    partial = path.with_name(path.name + ".part")
    try:
        with open(partial, "w", newline="", encoding="utf-8") as out:
            yield out
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)
