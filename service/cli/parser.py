"""The arguments of ``qinglang``: the argparse parser of every command but the review ones
(:mod:`service.review.commands` adds those), and the types that check an argument's value."""

from __future__ import annotations

import argparse
from pathlib import Path

from service.batch.progress import EVERY_S

_EPILOG = """\
exit status:
  0  every line was scored (or --skip-bad was given)
  1  some lines were rejected (see the reject file), or the selfcheck failed
  2  the run could not start or finish; OUTPUT is then left as it was"""

_COMMANDS_EPILOG = """\
exit status:
  0  done
  1  done, and something found wrong: lines rejected (rescore, unless --skip-bad), a score
     outside [0, 1] (selfcheck), a broken chain or a row that differs from it (audit verify),
     accounts not restored (credit restore: its next run tries them again)
  2  the command could not run or finish (a setting, an argument, storage, the model);
     rescore's OUTPUT is then left as it was"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qinglang",
        description="Content-risk scoring for Chinese public-account platforms.",
        epilog=_COMMANDS_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    rescore = commands.add_parser(
        "rescore",
        help="score every post of JSONL or Parquet files into a file of score records",
        description="Score every post of INPUT (a .jsonl, .jsonl.gz or .parquet file, or a folder\n"
        "of them) into OUTPUT (.jsonl or .parquet), one score record per good line in input\n"
        "order. Bad lines are reported on stderr and kept in the reject file; OUTPUT appears\n"
        "only when the run completes. A stopped run keeps a checkpoint beside OUTPUT: the\n"
        "same command continues it.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    rescore.add_argument(
        "input",
        type=_path,
        nargs="?",
        metavar="INPUT",
        help="JSONL (.jsonl.gz too)/Parquet file or folder (or --from-db)",
    )
    rescore.add_argument(
        "--bank",
        action="store_true",
        help="match the confirmed-rumour bank stored in the service's database",
    )
    rescore.add_argument(
        "--from-db",
        action="store_true",
        help="re-score the posts the service stored (of --since/--until), in time order",
    )
    rescore.add_argument(
        "--since", metavar="TIME", help="with --from-db: from this time (ISO 8601 or unix s)"
    )
    rescore.add_argument(
        "--until", metavar="TIME", help="with --from-db: before this time (ISO 8601 or unix s)"
    )
    rescore.add_argument(
        "-o",
        "--output",
        type=_path,
        required=True,
        metavar="OUTPUT",
        help="file of records: Parquet when it ends in .parquet; JSONL when it ends in .jsonl or "
        ".ndjson (gzip with .gz after either) or has no suffix",
    )
    rescore.add_argument(
        "--rejects",
        type=_path,
        metavar="PATH",
        help="JSONL file of the bad lines, named .jsonl, .ndjson or without a suffix (default: "
        "NAME.rejects.jsonl beside OUTPUT, NAME being OUTPUT's name without its suffixes)",
    )
    rescore.add_argument(
        "--skip-bad",
        action="store_true",
        help="exit 0 even when some lines were rejected; a file of which nothing can be read "
        "(a corrupt Parquet footer, not gzip) or a Parquet file without an id or text column is "
        "then rejected whole instead of stopping the run",
    )
    rescore.add_argument(
        "--no-progress", action="store_true", help="no progress on stderr (bar or lines)"
    )
    rescore.add_argument(
        "--progress-every",
        type=positive_int,
        default=EVERY_S,
        metavar="SECONDS",
        help="when stderr is not a terminal (a log, a scheduler): a progress line every SECONDS "
        f"seconds, at least 1 (default: {EVERY_S}), and one at the end; on a terminal a bar",
    )
    rescore.add_argument(
        "--no-evidence",
        action="store_true",
        help="no evidence spans: flagged records keep evidence_pending (several times faster, "
        "for a run that needs decisions only)",
    )
    rescore.add_argument(
        "--batch-size",
        type=positive_int,
        metavar="N",
        help="posts per model call (default: the batch_size setting)",
    )
    rescore.add_argument(
        "--engine",
        choices=["local", "ray"],
        default="local",
        help="local: worker processes on this machine (default); ray: a Ray Data pipeline",
    )
    rescore.add_argument(
        "--workers",
        type=positive_int,
        metavar="N",
        help="scoring processes or Ray actors, one model each (default: every core here)",
    )
    rescore.add_argument(
        "--ray-address",
        metavar="ADDRESS",
        help="with --engine ray: the Ray cluster to join (default: RAY_ADDRESS, else a local "
        "Ray started for the run)",
    )
    rescore.add_argument(
        "--chunk-size",
        type=positive_int,
        default=None,
        metavar="N",
        help="lines per task, the unit of work handed to a worker (default: 2048)",
    )
    rescore.add_argument(
        "--checkpoint-every",
        type=positive_int,
        default=None,
        metavar="N",
        help="posts per checkpoint, at most (default: 50000); a checkpoint falls at a segment's "
        "end, so a killed run scores again the posts since the last one and the segments the "
        "workers had in flight: up to about (1 + 2 x workers) x N",
    )
    rescore.add_argument(
        "--segment-posts",
        type=positive_int,
        default=None,
        metavar="N",
        help="posts a worker scores after one near-duplicate warm-up (default: each segment a "
        "2 x workers-th of the posts left, at most --checkpoint-every posts); raise it when the "
        "10.5 days before a segment hold many more posts than that",
    )
    rescore.add_argument(
        "--compare",
        type=_path,
        metavar="PREVIOUS_OUTPUT",
        help="report what changed against an earlier run's output (table, and OUTPUT.diff.json)",
    )
    rescore.add_argument(
        "--enqueue",
        action="store_true",
        help="with --compare: store the newly flagged records and put them in the review queue, "
        "and record every confirmed-rumour match as a copy of its rumour",
    )
    commands.add_parser(
        "selfcheck",
        help="load the model, score built-in example posts and print their records",
        description="Load the model and score a few built-in posts; exit 0 when every score "
        "lies in [0, 1], 1 when one does not, 2 when the model or the policy cannot be loaded.",
    )
    serve = commands.add_parser(
        "serve",
        help="run the scoring API (settings: QINGLANG_* variables or qinglang.toml)",
        description="Migrate the database, then serve the API with uvicorn. Without a database "
        "URL it keeps a SQLite file in the state folder (the state_dir setting: ./data in a "
        "checkout, else ~/.local/state/qinglang).",
    )
    serve.add_argument("--host", help="address to listen on (default: the host setting)")
    serve.add_argument("--port", type=_port, help="port (default: the port setting)")
    serve.add_argument(
        "--workers", type=_server_workers, help="server processes (default: the workers setting)"
    )
    keys = commands.add_parser("keys", help="manage API keys")
    key_commands = keys.add_subparsers(dest="keys_command", required=True, metavar="COMMAND")
    create = key_commands.add_parser(
        "create",
        help="create an API key and print it as the last line (it is shown only this once)",
    )
    create.add_argument("--role", required=True, choices=["publisher", "reviewer", "admin"])
    create.add_argument(
        "--user",
        type=_user_name,
        metavar="NAME",
        help="the console user the key belongs to, of the same role: its decisions are theirs "
        "(an escalation they made in the console is not theirs to decide with it)",
    )
    revoke = key_commands.add_parser(
        "revoke", help="revoke an API key: servers refuse it once their key cache expires"
    )
    revoke.add_argument("key", type=_key, help="the key's id, or the whole key")
    key_commands.add_parser(
        "list", help="every key's id, role, creation time and state, and its owner where it has one"
    )
    users = commands.add_parser("users", help="manage web console users")
    user_commands = users.add_subparsers(dest="users_command", required=True, metavar="COMMAND")
    create_user = user_commands.add_parser(
        "create", help="create a console user and print the password as the last line"
    )
    create_user.add_argument("name", type=_new_user_name, help="the user's sign-in name")
    create_user.add_argument("--role", required=True, choices=["reviewer", "admin"])
    disable_user = user_commands.add_parser(
        "disable",
        help="disable a console user: it can no longer sign in, and its sessions end at once "
        "(the name stays taken: decisions and audit records carry it)",
    )
    disable_user.add_argument("name", type=_user_name, help="the user's sign-in name")
    user_commands.add_parser(
        "list", help="every console user's name, role, creation time and state"
    )
    commands.add_parser("migrate", help="bring the database schema to the newest migration")
    from service.review.commands import add_commands

    add_commands(commands)
    return parser


def _whole_number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        # argparse would say "invalid positive_int value", naming the function that refused
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def positive_int(text: str) -> int:
    """An argparse type for a count of at least 1 (this CLI's, and the ``python -m`` eval
    and training programs')."""
    value = _whole_number(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def non_negative_int(text: str) -> int:
    """An argparse type for a count that may be 0."""
    value = _whole_number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, not {value}")
    return value


def positive_float(text: str) -> float:
    """An argparse type for a duration or a rate above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    # NaN compares false with everything, and would pass "value <= 0"
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number above 0, not {text}")
    return value


def _path(text: str) -> Path:
    if not text:
        # Path("") is the current folder: an unset variable in a script would re-score it
        raise argparse.ArgumentTypeError("the path is empty")
    return Path(text)


def _user_name(text: str) -> str:
    from service.security import KEY_ID, KEY_ID_CHARS

    # the name signs in and is recorded as the reviewer of every decision (64 characters kept)
    if not text.strip() or text != text.strip() or len(text) > 64:
        raise argparse.ArgumentTypeError(
            f"{text!r}: a name is 1 to 64 characters, without spaces around it"
        )
    if KEY_ID.fullmatch(text):
        # a key of nobody's is recorded, and compared in the separation-of-duty checks, as
        # its id: a user of that name would be that key's holder in both
        raise argparse.ArgumentTypeError(
            f"{text!r} reads as a key id ({KEY_ID_CHARS} lowercase hex digits), which the "
            "records name a key of nobody's by: choose another name"
        )
    return _printable(text, "a name")


def _new_user_name(text: str) -> str:
    """A name for a new user: in composed form as well, which is checked of new names only, so
    that a user made before can still be disabled."""
    import unicodedata

    name = _user_name(text)
    composed = unicodedata.normalize("NFC", name)
    if composed != name:
        # é as e and a combining accent would be a second user beside the one of é, whose name
        # reads the same (and is the form a keyboard types)
        raise argparse.ArgumentTypeError(
            f"{name!r} is not in composed form (Unicode NFC): write it {composed!r}"
        )
    return name


def _key(text: str) -> str:
    """The key id of ``text``, an id or a whole key, in the formats the API's bearer check
    accepts: anything else could only be a typo, which would read as "no key"."""
    from service.security import KEY, KEY_ID, KEY_ID_CHARS, PREFIX

    _printable(text, "a key")
    whole = KEY.fullmatch(text)
    if whole is not None:
        return whole.group(1)
    if KEY_ID.fullmatch(text) is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a key: give its id ({KEY_ID_CHARS} lowercase hex digits, as "
            f"keys list shows it) or the whole key ({PREFIX}_<id>_<secret>)"
        )
    return text


def _printable(text: str, what: str) -> str:
    # bytes of argv that are not UTF-8 arrive as lone surrogates, which no database stores; a
    # newline or an invisible character (U+200B) makes a name that reads as another one
    bad = next((c for c in text if not c.isprintable()), None)
    if bad is None:
        return text
    which = "a byte that is not UTF-8" if "\udc80" <= bad <= "\udcff" else f"U+{ord(bad):04X}"
    raise argparse.ArgumentTypeError(f"{text!r}: {what} cannot contain {which}")


def _server_workers(text: str) -> int:
    # each loads the model: far more than the cores only exhausts memory (and, forked without
    # end, would not stop on SIGTERM)
    from service.settings import MAX_WORKERS

    value = positive_int(text)
    if value > MAX_WORKERS:
        raise argparse.ArgumentTypeError(f"at most {MAX_WORKERS} server processes, not {value}")
    return value


def _port(text: str) -> int:
    value = _whole_number(text)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is from 1 to 65535, not {value}")
    return value
