"""The ``qinglang`` command: ``serve`` the API, ``keys create``, ``revoke`` and ``list`` API keys,
``migrate`` the database, ``rescore`` JSONL or Parquet files, ``selfcheck`` the shipped model;
``audit verify`` and ``audit export`` the hash-chained records, ``labels export`` reviewers'
decisions, ``credit restore`` the points of clean periods.

Heavy modules (pydantic, tqdm, the pipeline and ONNX Runtime) are imported inside the commands,
so that ``qinglang --help`` and usage errors answer at once.

Exit status: 0 when every line was scored (or ``--skip-bad`` was given); 1 when some lines
were rejected, or the selfcheck failed; 2 when the run could not start or finish (missing
input, unwritable output, a scorer error, a usage error), with OUTPUT left untouched.
"""

from __future__ import annotations

import argparse
import signal
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:
    from fastapi import FastAPI

    from service.batch.work import Scorer
    from service.pipeline import Pipeline
    from service.rescore import Summary
    from service.settings import Settings
    from service.storage import SqlRepository
    from service.storage.repository import StoredRumor

ScorerFactory = Callable[["Settings"], "Scorer"]

EXAMPLES: tuple[dict[str, object], ...] = (
    {"id": "selfcheck-plain", "text": "周末和家人去公园散步，天气很好，拍了几张荷花的照片。"},
    {"id": "selfcheck-offensive", "text": "这帮人都该死，大家明天一起去把他们的店砸了！"},
    {
        "id": "selfcheck-rumor",
        "text": "紧急扩散！明天起全市停水三天，自来水厂已被污染，赶紧囤水，转给家人！",
    },
    {
        "id": "selfcheck-originality",
        "text": "原创声明：本文为作者原创，未经授权禁止转载，侵权必究。",
        "declared_original": True,
    },
)
"""Built-in posts for ``selfcheck``: one plain, one offensive, one rumour-like, one claim."""

REVIEW_COMMANDS = ("audit", "labels", "credit")

_EPILOG = """\
exit status:
  0  every line was scored (or --skip-bad was given)
  1  some lines were rejected (see the reject file), or the selfcheck failed
  2  the run could not start or finish; OUTPUT is then left as it was"""


def main(argv: list[str] | None = None, *, load_scorer: ScorerFactory | None = None) -> int:
    """Run the command line; ``load_scorer`` replaces the pipeline (tests pass a stand-in)."""
    args = _parser().parse_args(argv)
    from service.settings import SettingsError

    try:
        return _run(args, load_scorer or _load_pipeline)
    except SettingsError as exc:
        print(f"qinglang {args.command}: error: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace, load: ScorerFactory) -> int:
    if args.command == "rescore":
        return _rescore(args, load)
    if args.command == "serve":
        return _serve(args)
    if args.command in ("keys", "users"):
        manage = _keys if args.command == "keys" else _users
        creates = getattr(args, f"{args.command}_command") == "create"
        return _create_secret(args) if creates else manage(args)
    if args.command == "migrate":
        return _migrate()
    if args.command in REVIEW_COMMANDS:
        from service.review.commands import run

        return run(args)
    return _selfcheck(load)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qinglang",
        description="Content-risk scoring for Chinese public-account platforms.",
        epilog=_EPILOG,
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
        "--skip-bad", action="store_true", help="exit 0 even when some lines were rejected"
    )
    rescore.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    rescore.add_argument(
        "--no-evidence",
        action="store_true",
        help="no evidence spans: flagged records keep evidence_pending (several times faster, "
        "for a run that needs decisions only)",
    )
    rescore.add_argument(
        "--batch-size",
        type=_positive_int,
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
        type=_positive_int,
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
        type=_positive_int,
        default=None,
        metavar="N",
        help="lines per task, the unit of work handed to a worker (default: 2048)",
    )
    rescore.add_argument(
        "--checkpoint-every",
        type=_positive_int,
        default=None,
        metavar="N",
        help="posts per checkpoint: at most what a killed run scores again (default: 50000)",
    )
    rescore.add_argument(
        "--segment-posts",
        type=_positive_int,
        default=None,
        metavar="N",
        help="posts a worker scores after one near-duplicate warm-up (default: eight segments a "
        "worker, at most --checkpoint-every posts); raise it when the 10.5 days before a segment "
        "hold many more posts than that",
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
        "lies in [0, 1].",
    )
    serve = commands.add_parser(
        "serve",
        help="run the scoring API (settings: QINGLANG_* variables or qinglang.toml)",
        description="Migrate the database, then serve the API with uvicorn. Without a database "
        "URL it keeps a SQLite file in the state folder (./data).",
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
    revoke = key_commands.add_parser(
        "revoke", help="revoke an API key: servers refuse it once their key cache expires"
    )
    revoke.add_argument("key", type=_key, help="the key's id, or the whole key")
    key_commands.add_parser("list", help="every key's id, role, creation time and state")
    users = commands.add_parser("users", help="manage web console users")
    user_commands = users.add_subparsers(dest="users_command", required=True, metavar="COMMAND")
    create_user = user_commands.add_parser(
        "create", help="create a console user and print the password as the last line"
    )
    create_user.add_argument("name", type=_user_name, help="the user's sign-in name")
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
        # argparse would say "invalid _positive_int value", naming the function that refused
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def _positive_int(text: str) -> int:
    value = _whole_number(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _path(text: str) -> Path:
    if not text:
        # Path("") is the current folder: an unset variable in a script would re-score it
        raise argparse.ArgumentTypeError("the path is empty")
    return Path(text)


def _user_name(text: str) -> str:
    # the name signs in and is recorded as the reviewer of every decision (64 characters kept)
    if not text.strip() or text != text.strip() or len(text) > 64:
        raise argparse.ArgumentTypeError(
            f"{text!r}: a name is 1 to 64 characters, without spaces around it"
        )
    return _printable(text, "a name")


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

    value = _positive_int(text)
    if value > MAX_WORKERS:
        raise argparse.ArgumentTypeError(f"at most {MAX_WORKERS} server processes, not {value}")
    return value


def _port(text: str) -> int:
    value = _whole_number(text)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is from 1 to 65535, not {value}")
    return value


def _load_pipeline(settings: Settings) -> Scorer:
    from service.pipeline import Pipeline

    pipeline: Scorer = Pipeline.load(settings)
    return pipeline


def _rescore(args: argparse.Namespace, load: ScorerFactory) -> int:
    from service.batch.ray_engine import ClusterError
    from service.rescore import DEFAULT_CHUNK_SIZE, RescoreError, check_paths, default_reject_path
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
        if args.from_db:
            args.input = _export(args, settings)
        check_paths(args.input, args.output, rejects, args.compare)
        summary = _run_rescore(args, load, settings, rejects, chunk_size)
        print(summary.render(), file=sys.stderr)
        if args.from_db:
            _record_run(args, settings, summary)
        if args.compare is not None:
            _compare(args, settings)
    except (RescoreError, ClusterError) as exc:
        print(f"qinglang rescore: error: {exc}", file=sys.stderr)
        return 2
    return 1 if summary.failed_total and not args.skip_bad else 0


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
    from service.batch.stored import PeriodError, export, moment
    from service.rescore import RescoreError
    from service.storage import StorageError

    try:
        since = moment(args.since) if args.since else None
        until = moment(args.until) if args.until else None
        return export(settings, since, until, args.output)
    except PeriodError as exc:
        raise RescoreError(str(exc)) from exc
    except StorageError as exc:
        raise RescoreError(f"cannot read the stored posts: {exc}") from exc
    except OSError as exc:
        raise RescoreError(
            f"cannot write the stored posts beside {args.output}: {exc.strerror}"
        ) from exc


def _record_run(args: argparse.Namespace, settings: Settings, summary: Summary) -> None:
    from service.batch.stored import finish, moment
    from service.rescore import RescoreError
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
    args: argparse.Namespace, load: ScorerFactory, settings: Settings, rejects: Path, chunk: int
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
        checkpoint_posts=args.checkpoint_every or CHECKPOINT_POSTS,
        segment_posts=args.segment_posts,
        bank=_bank(settings) if args.bank else (),
    )


def _bank(settings: Settings) -> list[StoredRumor]:
    from service.rescore import RescoreError
    from service.storage import StorageError, open_existing

    try:
        repository = open_existing(settings.database, settings.db_timeout_s)
        try:
            return repository.rumors()
        finally:
            repository.close()
    except StorageError as exc:
        raise RescoreError(f"cannot read the confirmed-rumour bank: {exc}") from exc


def _compare(args: argparse.Namespace, settings: Settings) -> None:
    from service.batch.diff import diff, enqueue, report_file
    from service.batch.records import RecordsError
    from service.rescore import RescoreError

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
        print(f"review queue: {added:,} newly flagged records enqueued", file=sys.stderr)


def _load_model(load: ScorerFactory, settings: Settings) -> Scorer:
    from service.rescore import RescoreError

    try:
        return load(settings)
    except Exception as exc:
        # status 1 would read as "some lines rejected" to the script that called us
        raise RescoreError(f"cannot load the model: {exc!r}") from exc


def _selfcheck(load: ScorerFactory) -> int:
    """Score the examples; an exception propagates with its traceback, which is the report."""
    from service.record import Post
    from service.settings import get_settings

    scorer = load(get_settings())
    posts = [Post.model_validate(example) for example in EXAMPLES]
    records = scorer.score_many(posts)
    for record in records:
        print(record.model_dump_json(indent=2))
    problems = [
        f"{record.id}: {name} = {value}"
        for record in records
        for name, value in [*record.scores.items(), *record.signals.items()]
        if not 0.0 <= value <= 1.0
    ]
    if [record.id for record in records] != [post.id for post in posts]:
        problems.append("the records do not match the example posts in order")
    if problems:
        print("qinglang selfcheck: failed: " + "; ".join(problems), file=sys.stderr)
        return 1
    print(f"qinglang selfcheck: ok, model {scorer.model_version}", file=sys.stderr)
    return 0


def _migrate() -> int:
    from service.logs import configure
    from service.settings import get_settings
    from service.storage import StorageError, upgrade

    settings = get_settings()
    configure(settings.log_level, migrating=True)
    try:
        upgrade(settings.database)
    except StorageError as exc:
        print(f"qinglang migrate: error: {exc}", file=sys.stderr)
        return 2
    return 0


def _create_secret(args: argparse.Namespace) -> int:
    """``keys create`` or ``users create``: store the new key or user, print its secret last."""
    from service.security import ROLES, create_key, create_user
    from service.settings import get_settings
    from service.storage import StorageError

    settings = get_settings()
    role = next(r for r in ROLES if r == args.role)
    user = getattr(args, "name", None)
    try:
        repository = _storage(settings, writes=True)
        try:
            holder = None if user is None else repository.get_user(user)
            if holder is not None:
                by = " by a disabled user" if holder.disabled else ""
                print(f"qinglang users: error: the name {user!r} is taken{by}", file=sys.stderr)
                return 2
            secret = (
                create_key(repository, role)
                if user is None
                else create_user(repository, user, role)
            )
        finally:
            repository.close()
    except StorageError as exc:
        print(f"qinglang {args.command}: error: {exc}", file=sys.stderr)
        return 2
    what = "key" if user is None else f"console user {user!r}; the password"
    print(f"a new {args.role} {what} is stored hashed and shown only now:")
    print(secret)
    return 0


def _keys(args: argparse.Namespace) -> int:
    """``keys revoke`` and ``keys list``."""
    from service.settings import get_settings
    from service.storage import StorageError

    settings = get_settings()
    try:
        repository = _storage(settings, writes=args.keys_command != "list")
        try:
            if args.keys_command == "list":
                for key in repository.list_keys():
                    state = "revoked" if key.revoked else "active"
                    print(f"{key.key_id}  {key.role:<9}  {key.created_at:%Y-%m-%d %H:%M}Z  {state}")
                return 0
            key_id = args.key
            before = repository.revoke_key(key_id)
        finally:
            repository.close()
    except StorageError as exc:
        print(f"qinglang keys: error: {exc}", file=sys.stderr)
        return 2
    if before is None:
        print(f"qinglang keys: error: no key {key_id!r} (see: qinglang keys list)", file=sys.stderr)
        return 2
    was = "was already revoked" if before.revoked else "is revoked"
    print(f"{before.role} key {key_id} {was}; servers refuse it within {settings.key_cache_s:g} s")
    return 0


def _storage(settings: Settings, *, writes: bool) -> SqlRepository:
    """The repository for a command that writes (the database migrated first), or for one that
    only reads (an existing database at the newest migration, created and migrated by nothing)."""
    from service.storage import open_existing, open_migrated

    opened = open_migrated if writes else open_existing
    return opened(settings.database, settings.db_timeout_s)


def _users(args: argparse.Namespace) -> int:
    """``users disable`` and ``users list``."""
    from service.settings import get_settings
    from service.storage import StorageError

    settings = get_settings()
    try:
        repository = _storage(settings, writes=args.users_command != "list")
        try:
            if args.users_command == "list":
                for user in repository.list_users():
                    state = "disabled" if user.disabled else "active"
                    print(
                        f"{user.name}  {user.role:<8}  {user.created_at:%Y-%m-%d %H:%M}Z  {state}"
                    )
                return 0
            before = repository.disable_user(args.name)
        finally:
            repository.close()
    except StorageError as exc:
        print(f"qinglang users: error: {exc}", file=sys.stderr)
        return 2
    if before is None:
        print(
            f"qinglang users: error: no user {args.name!r} (see: qinglang users list)",
            file=sys.stderr,
        )
        return 2
    was = "was already disabled" if before.disabled else "is disabled"
    print(f"{before.role} {args.name!r} {was}: it cannot sign in, and its sessions have ended")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from service.settings import get_settings

    # In the image this process is PID 1, to which the kernel delivers no signal left to its
    # default action: until uvicorn installs its own handlers, after the model has loaded,
    # `docker stop`'s SIGTERM was ignored and the container killed 10 s later. 143 is the
    # status of a process that SIGTERM ended.
    signal.signal(signal.SIGTERM, _stop)
    settings = get_settings()
    try:
        held = _hold_state(settings.state_dir)
        if held is None:
            print(
                f"qinglang serve: error: another server uses {settings.state_dir} (its spool "
                "and metrics): stop it, or give this one another QINGLANG_STATE_DIR",
                file=sys.stderr,
            )
            return 2
        # first: uvicorn and the app import prometheus_client, which reads the folder then
        _share_metrics(settings.metrics_dir)
    except OSError as exc:
        print(f"qinglang serve: error: cannot prepare {settings.state_dir}: {exc}", file=sys.stderr)
        return 2

    import uvicorn

    from service.logs import config, configure
    from service.settings import address
    from service.storage import StorageError, upgrade

    host = args.host or settings.host
    port = args.port or settings.port
    workers = args.workers or settings.workers
    listener = _bind(host, port)
    configure(settings.log_level)
    pipeline: Pipeline | None = _serving_pipeline(settings)
    if workers > 1:
        # each worker loads its own: this one only showed that they can
        pipeline = None
        _share_between_workers(settings, workers)
    try:
        upgrade(settings.database)
    except StorageError as exc:
        # publish must not wait for the database: serve degraded, spool, retry
        print(f"qinglang serve: warning: {exc}; serving degraded", file=sys.stderr)
    app: FastAPI | str = "service.api.app:create_app"
    if pipeline is not None:
        from service.api.app import create_app

        # the app needs the schema migrated
        app = create_app(settings, pipeline)
    url = f"http://{address(host, port)}"
    print(
        f"qinglang serve: listening on {url} (API docs at /docs), "
        f"storage {_safe_url(settings.database)}\n"
        f"  get an API key: {_own_command()} keys create --role publisher\n"
        "  then: curl -H 'Authorization: Bearer KEY' -H 'Content-Type: application/json' "
        f'-d \'{{"id": "1", "text": "..."}}\' {url}/v1/score',
        flush=True,
    )
    uvicorn.run(
        app,
        factory=isinstance(app, str),
        fd=listener.fileno(),
        workers=workers,
        log_config=config(settings.log_level),
        access_log=False,
    )
    return 0


def _stop(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def _serving_pipeline(settings: Settings) -> Pipeline:
    """The pipeline a server process scores with, its model run once, or :class:`SettingsError`
    naming what could not be loaded: one line of ours before the server says it listens, where
    uvicorn would print a traceback after it (and restart a worker that fails for ever)."""
    from service.api.app import load_pipeline
    from service.policy import PolicyError
    from service.settings import SettingsError

    try:
        return load_pipeline(settings)
    except PolicyError as exc:  # names its file
        problem = str(exc)
    except Exception as exc:
        # onnx, tokenizers and json do not name the file they could not read: the folder, then
        problem = (
            f"cannot load the model in {settings.model_dir} (the model_dir setting): "
            f"{type(exc).__name__}: {exc}"
        )
    raise SettingsError(" ".join(problem.split()))


def _own_command() -> str:
    """How the shell that started this server runs ``qinglang``: by name where PATH finds this
    installation's script (a container image), else by its path (``.venv/bin/qinglang`` under
    ``make serve``), else through this interpreter."""
    import shlex
    import shutil

    script = Path(sys.executable).parent / "qinglang"
    if not script.is_file():
        return f"{shlex.quote(sys.executable)} -m service.cli"
    found = shutil.which("qinglang")
    if found is not None and Path(found).resolve() == script.resolve():
        return "qinglang"
    if script.is_relative_to(Path.cwd()):
        return shlex.quote(str(script.relative_to(Path.cwd())))
    return shlex.quote(str(script))


def _share_between_workers(settings: Settings, workers: int) -> None:
    """Give ``workers`` server processes one console signing key, and warn that without Redis
    they keep one near-duplicate window each.

    Each worker would otherwise draw its own key, and a console session (its sign-in form
    too) would hold only on the worker that signed it: every other request would go back to
    the sign-in page. The key goes to the workers through the environment they inherit and,
    like a worker's own, ends with the server."""
    import os
    import secrets

    from service.settings import PREFIX

    if settings.console_secret is None:
        os.environ[f"{PREFIX}CONSOLE_SECRET"] = secrets.token_urlsafe(32)
    if settings.redis_url is None:
        print(
            f"qinglang serve: warning: {workers} workers without redis_url keep one "
            "near-duplicate window each, so copies that reach different workers are not "
            "matched: set QINGLANG_REDIS_URL to share one",
            file=sys.stderr,
        )


def _bind(host: str, port: int) -> socket.socket:
    """A socket bound to ``host``:``port`` for uvicorn to serve on, so that a port in use is
    one line of ours, before the server says it listens (uvicorn would log it after loading the
    app, and exit 3)."""
    from service.settings import SettingsError, address

    # as uvicorn binds: an address with a colon is IPv6, and a restarted server reuses its port
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
    except OSError as exc:  # in use, or an address this machine does not have
        listener.close()
        raise SettingsError(
            f"cannot listen on {address(host, port)} (--host and --port, or the host and port "
            f"settings): {exc.strerror}"
        ) from None
    return listener


def _hold_state(directory: Path) -> BinaryIO | None:
    """An exclusive lock on the state folder for as long as this process runs (the file is
    kept open), or None when another server holds it: two servers would share one spool, and
    a second one's start would empty the first one's metrics."""
    import fcntl

    directory.mkdir(parents=True, exist_ok=True)
    lock = (directory / "serve.lock").open("ab")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        return None
    return lock


def _share_metrics(directory: Path) -> None:
    """Have every server process keep its metric values in ``directory``, emptied of an earlier
    server's, so that ``/metrics`` reports the whole server (service/metrics.py).

    prometheus_client reads the variable when it is imported: in this process when it serves
    alone, in each worker process (which inherits the environment) otherwise.
    """
    import os
    import shutil

    from service.settings import SHARED_METRICS_VARIABLE

    if "prometheus_client" in sys.modules:
        raise RuntimeError("prometheus_client was imported before its folder was set")
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    os.environ[SHARED_METRICS_VARIABLE] = str(directory)


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


if __name__ == "__main__":
    raise SystemExit(main())
