"""``qinglang keys create``, ``qinglang migrate`` and ``qinglang serve --workers``, as an operator
runs them."""

from __future__ import annotations

import asyncio
import http.server
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import FrameType

import httpx2 as httpx
import pytest
from batchkit import length_scorer, post_line
from prometheus_client.multiprocess import MultiProcessCollector
from servicekit import free_port, serve, wait_for, write_policy

from service import security
from service.cli import main
from service.cli.serve import _bind
from service.security import AuthError, Guard, SignInLimits, VerifiedKeys
from service.settings import Settings, get_settings
from service.storage import open_repository


def qinglang(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The command line in a process of its own, on a SQLite file in ``tmp_path`` unless
    ``env`` (laid over this process's environment) says otherwise."""
    base = {**os.environ, "QINGLANG_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}"}
    return subprocess.run(
        [sys.executable, "-m", "service.cli", *args],
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_keys_create_prints_a_working_key_as_its_last_line(tmp_path: Path) -> None:
    created = qinglang(tmp_path, "keys", "create", "--role", "reviewer")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip().splitlines()[-1]
    repository = open_repository(f"sqlite:///{tmp_path / 'cli.db'}", 2.0)
    known = VerifiedKeys(tmp_path / "verified-keys.json")
    guard = Guard(repository, rate=10, burst=10, cache_s=0, known=known)
    assert guard.check(f"Bearer {key}", ("reviewer",)).role == "reviewer"
    stored = repository.get_key(key.split("_")[1])
    assert stored is not None and key not in stored.digest
    repository.close()


def test_keys_revoke_stops_a_key_and_keys_list_shows_it(tmp_path: Path) -> None:
    keys = [
        qinglang(tmp_path, "keys", "create", "--role", role).stdout.splitlines()[-1]
        for role in ("publisher", "reviewer")
    ]
    key_ids = [k.split("_")[1] for k in keys]
    revoked = qinglang(tmp_path, "keys", "revoke", keys[0])  # the whole key, or its id
    assert revoked.returncode == 0, revoked.stderr
    assert f"publisher key {key_ids[0]} is revoked; servers refuse it within 60 s" in revoked.stdout
    again = qinglang(tmp_path, "keys", "revoke", key_ids[0])
    assert again.returncode == 0 and "was already revoked" in again.stdout
    repository = open_repository(f"sqlite:///{tmp_path / 'cli.db'}", 2.0)
    known = VerifiedKeys(tmp_path / "verified-keys.json")
    guard = Guard(repository, rate=10, burst=10, cache_s=0, known=known)
    with pytest.raises(AuthError, match="revoked"):
        guard.check(f"Bearer {keys[0]}", ("publisher",))
    assert guard.check(f"Bearer {keys[1]}", ("reviewer",)).role == "reviewer"
    repository.close()
    listed = qinglang(tmp_path, "keys", "list").stdout.splitlines()
    assert [(line.split()[0], line.split()[1], line.split()[-1]) for line in listed] == [
        (key_ids[0], "publisher", "revoked"),
        (key_ids[1], "reviewer", "active"),
    ]
    missing = qinglang(tmp_path, "keys", "revoke", "0123456789ab")
    assert missing.returncode == 2 and "no key '0123456789ab'" in missing.stderr


@pytest.mark.parametrize(
    "given",
    [
        "nosuchkey",
        "0123456789AB",  # ids are lowercase, as keys list shows them
        "0123456789a",
        "ql_0123456789ab_" + "x" * 42,  # a whole key's secret is 43 characters
        "Bearer ql_0123456789ab_" + "x" * 43,
    ],
)
def test_keys_revoke_refuses_what_is_neither_a_key_id_nor_a_key_before_storage(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    given: str,
) -> None:
    monkeypatch.setenv("QINGLANG_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    get_settings.cache_clear()
    try:
        with pytest.raises(SystemExit) as exited:
            main(["keys", "revoke", given])
    finally:
        get_settings.cache_clear()
    assert exited.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"qinglang keys revoke: error: argument key: {given!r} is not a key: give its id "
        "(12 lowercase hex digits, as keys list shows it) or the whole key (ql_<id>_<secret>)"
    )
    assert not (tmp_path / "cli.db").exists()


def test_users_disable_ends_access_keeps_the_name_and_users_list_shows_it(
    tmp_path: Path,
) -> None:
    nothing = qinglang(tmp_path, "users", "list")
    assert nothing.returncode == 2 and "no SQLite database at" in nothing.stderr
    password = qinglang(tmp_path, "users", "create", "li", "--role", "reviewer").stdout
    qinglang(tmp_path, "users", "create", "wang", "--role", "admin")
    disabled = qinglang(tmp_path, "users", "disable", "li")
    assert disabled.returncode == 0, disabled.stderr
    assert "reviewer 'li' is disabled" in disabled.stdout
    again = qinglang(tmp_path, "users", "disable", "li")
    assert again.returncode == 0 and "'li' was already disabled" in again.stdout
    missing = qinglang(tmp_path, "users", "disable", "zhao")
    assert missing.returncode == 2 and "no user 'zhao'" in missing.stderr
    listed = qinglang(tmp_path, "users", "list").stdout.splitlines()
    assert [(line.split()[0], line.split()[1], line.split()[-1]) for line in listed] == [
        ("li", "reviewer", "disabled"),
        ("wang", "admin", "active"),
    ]
    # the name stays li's: its decisions and audit records carry it
    taken = qinglang(tmp_path, "users", "create", "li", "--role", "admin")
    assert taken.returncode == 2 and "'li' is taken by a disabled user" in taken.stderr
    repository = open_repository(f"sqlite:///{tmp_path / 'cli.db'}", 2.0)
    limits = SignInLimits(per_name=5, per_address=20, window_s=900, key=b"k" * 32)
    with pytest.raises(AuthError) as refused:
        security.sign_in(repository, limits, "li", password.splitlines()[-1], "192.0.2.1", 1e6)
    repository.close()
    assert refused.value.status == 401


def test_keys_create_user_gives_the_key_to_a_console_user_of_its_role_and_keys_list_shows_it(
    tmp_path: Path, database_url: str
) -> None:
    env = {"QINGLANG_DATABASE_URL": database_url}
    for name, role in (("王审核", "reviewer"), ("li", "admin"), ("zhao", "admin")):
        created = qinglang(tmp_path, "users", "create", name, "--role", role, env=env)
        assert created.returncode == 0, created.stderr
    assert qinglang(tmp_path, "users", "disable", "zhao", env=env).returncode == 0
    refusals = {
        ("nobody", "reviewer"): "no console user 'nobody' (see: qinglang users list)",
        ("zhao", "admin"): "console user 'zhao' is disabled: nobody acts as them any more",
        ("王审核", "admin"): "console user '王审核' has the role reviewer: a key of theirs has "
        "it too, not admin",
        ("li", "reviewer"): "console user 'li' has the role admin: a key of theirs has it too, "
        "not reviewer",
        ("li", "publisher"): "console user 'li' has the role admin: a key of theirs has it too, "
        "not publisher",
    }
    for (name, role), said in refusals.items():
        failed = qinglang(tmp_path, "keys", "create", "--role", role, "--user", name, env=env)
        assert (failed.returncode, failed.stdout) == (2, ""), (name, role)
        assert failed.stderr.splitlines() == [f"qinglang keys: error: --user: {said}"]
    created = qinglang(
        tmp_path, "keys", "create", "--role", "reviewer", "--user", "王审核", env=env
    )
    assert created.returncode == 0, created.stderr
    assert "a new reviewer key of console user '王审核' is stored hashed" in created.stdout
    owned = created.stdout.splitlines()[-1]
    plain = qinglang(tmp_path, "keys", "create", "--role", "admin", env=env).stdout.splitlines()
    repository = open_repository(database_url, 2.0)
    known = VerifiedKeys(tmp_path / "verified-keys.json")
    guard = Guard(repository, rate=10, burst=10, cache_s=0, known=known)
    who = guard.check(f"Bearer {owned}", ("reviewer",))
    assert (who.owner, who.actor) == ("王审核", "王审核")
    nobodys = guard.check(f"Bearer {plain[-1]}", ("admin",))
    assert (nobodys.owner, nobodys.actor) == (None, plain[-1].split("_")[1])
    repository.close()
    listed = qinglang(tmp_path, "keys", "list", env=env).stdout.splitlines()
    assert [line.split()[4:] for line in listed] == [["active", "王审核"], ["active"]]
    assert listed[0].startswith(f"{owned.split('_')[1]}  reviewer ")
    # a user who may no longer act keeps no key that acts as them; a key of nobody's stays
    disabled = qinglang(tmp_path, "users", "disable", "王审核", env=env)
    assert disabled.stdout.strip() == (
        "reviewer '王审核' is disabled: it cannot sign in, its sessions have ended, and its "
        f"keys are revoked ({owned.split('_')[1]})"
    )
    listed = qinglang(tmp_path, "keys", "list", env=env).stdout.splitlines()
    assert [line.split()[4:] for line in listed] == [["revoked", "王审核"], ["active"]]
    repository = open_repository(database_url, 2.0)
    guard = Guard(repository, rate=10, burst=10, cache_s=0, known=known)
    with pytest.raises(AuthError) as refused:
        guard.check(f"Bearer {owned}", ("reviewer",))
    assert refused.value.status == 401
    assert guard.check(f"Bearer {plain[-1]}", ("admin",)).owner is None
    repository.close()


@pytest.mark.parametrize("setting", ["console_secret", "subject_key"])
def test_a_secret_under_32_bytes_is_one_line_and_status_2_without_its_value(
    tmp_path: Path, setting: str
) -> None:
    short = "秘" * 10 + "k"  # 31 bytes in UTF-8, in 11 characters
    variable = f"QINGLANG_{setting.upper()}"
    for command in (["migrate"], ["serve", "--port", str(free_port())]):
        failed = qinglang(tmp_path, *command, env={variable: short})
        assert failed.returncode == 2, failed.stderr
        (line,) = failed.stderr.splitlines()
        assert f"setting {setting} ({variable})" in line
        # a key one byte short is the deployment's key but for a byte: never shown
        assert "at least 32 bytes" in line and short not in line
    long_enough = {variable: short + "k"}
    assert qinglang(tmp_path, "migrate", env=long_enough).returncode == 0


def test_the_help_gives_the_exit_status_of_every_command_that_has_a_1(tmp_path: Path) -> None:
    # it gave rescore's and selfcheck's only: a broken audit chain read as "lines rejected"
    shown = qinglang(tmp_path, "--help")
    assert shown.returncode == 0
    statuses = shown.stdout.split("exit status:")[1]
    for command in ("rescore", "selfcheck", "audit verify", "credit restore"):
        assert command in statuses


def test_keys_create_refuses_an_unknown_role(tmp_path: Path) -> None:
    created = qinglang(tmp_path, "keys", "create", "--role", "root")
    assert created.returncode == 2
    assert "invalid choice" in created.stderr


def test_migrate_creates_the_schema_and_reports_an_unreachable_database(tmp_path: Path) -> None:
    assert qinglang(tmp_path, "migrate").returncode == 0
    assert (tmp_path / "cli.db").is_file()
    unreachable = {"QINGLANG_DATABASE_URL": "postgresql+psycopg://postgres@127.0.0.1:9/x"}
    failed = qinglang(tmp_path, "migrate", env=unreachable)
    assert failed.returncode == 2 and "qinglang migrate: error" in failed.stderr


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("QINGLANG_PORT", "abc", "setting port (QINGLANG_PORT): Input should be a valid integer"),
        ("QINGLANG_CACHE_SIZE", "-5", "setting cache_size (QINGLANG_CACHE_SIZE)"),
        ("QINGLANG_LOG_LEVEL", "loud", "setting log_level"),
        ("QINGLANG_DATABASE_URL", "notaurl", "not a database URL"),
        ("QINGLANG_DATABASE_URL", "mysql://u:secret@h/d", "mysql is not supported"),
        ("QINGLANG_DATABASE_URL", "sqlite://", "a SQLite URL names its file"),
        (
            "QINGLANG_DATABASE_URL",
            "sqlite:///file:/tmp/x.db?mode=ro&uri=true",
            "setting database_url (QINGLANG_DATABASE_URL): Value error, a SQLite URI filename",
        ),
        ("QINGLANG_DATABASE_URL", "postgresql+asyncpg://u:secret@h/d", "asyncpg is not installed"),
        ("QINGLANG_DB_TIMEOUT_S", "inf", "setting db_timeout_s"),
        # the deadline of a whole storage call (5 s unless set) below the bound of one wait in it
        (
            "QINGLANG_DB_TIMEOUT_S",
            "10",
            "setting storage_deadline_s (QINGLANG_STORAGE_DEADLINE_S): Value error, below "
            "db_timeout_s (10)",
        ),
        ("QINGLANG_BATCH_SIZE", "0", "setting batch_size"),
        ("QINGLANG_INTRA_OP_THREADS", "-3", "setting intra_op_threads"),
        ("QINGLANG_WORKERS", "99999", "setting workers (QINGLANG_WORKERS): Input should be less"),
        # an unset shell variable: the working folder, and every interface
        ("QINGLANG_STATE_DIR", "", "setting state_dir (QINGLANG_STATE_DIR): Value error, is empty"),
        ("QINGLANG_HOST", " ", "setting host (QINGLANG_HOST): Value error, is empty"),
        ("QINGLANG_REDIS_URL", "notaurl", "not a Redis URL"),
        # each parsed only when the server loads its pipeline, whose error blamed the model
        (
            "QINGLANG_REDIS_URL",
            "redis://:secret@h:6379x/0",
            "setting redis_url (QINGLANG_REDIS_URL): Value error, not a Redis URL: Port could",
        ),
        ("QINGLANG_REDIS_URL", "redis://h:6379/0?timeout=1", "unexpected keyword argument"),
        # taken for database 0, another application's perhaps
        ("QINGLANG_REDIS_URL", "redis://:secret@h/db1", "the database is a number: /DB"),
        (
            "QINGLANG_NEARDUP_BUCKET_HOURS",
            "100",
            "setting neardup_bucket_hours (QINGLANG_NEARDUP_BUCKET_HOURS): Value error, above "
            "neardup_window_hours (72)",
        ),
        ("QINGLANG_NEARDUP_WINDOW_HOURS", "6", "above neardup_window_hours (6)"),
        # a timedelta or a socket timeout past what the clocks hold: a traceback at start, or
        # a maintenance that failed every storage_retry_s
        (
            "QINGLANG_IDEMPOTENCY_KEEP_HOURS",
            "1e9",
            "setting idempotency_keep_hours (QINGLANG_IDEMPOTENCY_KEEP_HOURS): Input should be "
            "less than or equal to 8784",
        ),
        ("QINGLANG_IDEMPOTENCY_KEEP_HOURS", "inf", "setting idempotency_keep_hours"),
        ("QINGLANG_REDIS_TIMEOUT_S", "1e10", "setting redis_timeout_s"),
        ("QINGLANG_STORAGE_RETRY_S", "inf", "setting storage_retry_s"),
        ("QINGLANG_CONSOLE_SESSION_HOURS", "inf", "setting console_session_hours"),
        # Beijing time is Asia/Shanghai: no zone of the IANA database is named after Beijing
        (
            "QINGLANG_CONSOLE_TIMEZONE",
            "Asia/Beijing",
            "setting console_timezone (QINGLANG_CONSOLE_TIMEZONE): Value error, not a time zone",
        ),
        ("QINGLANG_CONFIG", "/nonexistent.toml", "QINGLANG_CONFIG names /nonexistent.toml"),
        # misspelt: the server would run on its embedded database
        ("QINGLANG_DATABSE_URL", "postgresql://u:secret@h/d", "QINGLANG_DATABSE_URL: no such"),
    ],
)
def test_a_setting_that_cannot_be_used_is_one_line_and_status_2(
    tmp_path: Path, variable: str, value: str, says: str
) -> None:
    for command in (["keys", "list"], ["serve", "--port", str(free_port())]):
        failed = qinglang(tmp_path, *command, env={variable: value})
        assert failed.returncode == 2, failed.stderr
        (line,) = failed.stderr.splitlines()
        assert says in line and "secret" not in line


def test_the_test_suites_own_variables_are_no_settings_to_check(tmp_path: Path) -> None:
    assert qinglang(tmp_path, "migrate", env={"QINGLANG_TEST_ANYTHING": "1"}).returncode == 0


def test_a_config_file_that_is_not_toml_or_names_no_setting_is_named(tmp_path: Path) -> None:
    for text, says in [
        (b"port = [\n", "is not TOML"),
        (b"prot = 1\n", "prot is not a setting"),
        (b'host = "caf\xe9"\n', "is not TOML"),  # not UTF-8
    ]:
        config = tmp_path / "qinglang.toml"
        config.write_bytes(text)
        failed = qinglang(tmp_path, "keys", "list", env={"QINGLANG_CONFIG": str(config)})
        assert failed.returncode == 2 and says in failed.stderr


def test_a_config_file_that_cannot_be_read_is_named_not_a_traceback(tmp_path: Path) -> None:
    # a file reading fails on whoever reads it, root included (a mode of 000 stops others only)
    failed = qinglang(tmp_path, "keys", "list", env={"QINGLANG_CONFIG": "/proc/self/mem"})
    assert failed.returncode == 2
    (line,) = failed.stderr.splitlines()
    assert line == "qinglang keys: error: cannot read /proc/self/mem: Input/output error"


def broken_model(folder: Path, leave_out: str) -> Path:
    """The shipped model's files in ``folder``, the ONNX file cut short (its session is opened
    only when the model is first run), ``leave_out`` missing."""
    folder.mkdir()
    shipped = Settings().model_dir
    for name in ("card.json", "tokenizer.json"):
        (folder / name).write_bytes((shipped / name).read_bytes())
    (folder / "model.onnx").write_bytes((shipped / "model.onnx").read_bytes()[:5000])
    (folder / leave_out).unlink(missing_ok=True)
    return folder


@pytest.mark.parametrize(
    ("workers", "leave_out"),
    [("1", "nothing"), ("2", "nothing"), ("1", "tokenizer.json"), ("2", "card.json")],
)
def test_serve_with_a_model_it_cannot_load_says_so_in_one_line_and_never_listening(
    tmp_path: Path, workers: str, leave_out: str
) -> None:
    model_dir = broken_model(tmp_path / "model", leave_out)
    env = {"QINGLANG_STATE_DIR": str(tmp_path / "state"), "QINGLANG_MODEL_DIR": str(model_dir)}
    port = str(free_port())
    failed = qinglang(tmp_path, "serve", "--port", port, "--workers", workers, env=env)
    assert failed.returncode == 2
    assert "listening" not in failed.stdout + failed.stderr
    (line,) = failed.stderr.splitlines()
    assert line.startswith(f"qinglang serve: error: cannot load the model in {model_dir}")
    if leave_out != "nothing":
        assert f"{model_dir / leave_out} is missing" in line


def test_serve_stops_on_sigterm_while_it_loads(tmp_path: Path) -> None:
    """In the image the server is PID 1, which the kernel sends no signal left to its default
    action: SIGTERM must meet a handler of its own from the start. The policy, the first file
    loading reads, is a pipe here, so the server is held reading it when the signal comes."""
    policy = tmp_path / "policy.toml"
    os.mkfifo(policy)
    env = {
        **os.environ,
        "QINGLANG_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}",
        "QINGLANG_STATE_DIR": str(tmp_path / "state"),
        "QINGLANG_POLICY_FILE": str(policy),
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "serve", "--port", str(free_port())],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    writer: list[int] = []

    def reading_the_policy() -> bool:
        assert server.poll() is None, "the server exited"
        try:  # a pipe opens for writing once its reader has it open
            writer.append(os.open(policy, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            return False
        return True

    try:
        wait_for(reading_the_policy, 120)
        server.send_signal(signal.SIGTERM)
        stdout, stderr = server.communicate(timeout=60)
    finally:
        server.kill()
        for fd in writer:
            os.close(fd)
    # 143: the handler's exit; the default action would end it by the signal (-15)
    assert server.returncode == 128 + signal.SIGTERM, stderr
    assert b"listening" not in stdout + stderr


@pytest.mark.parametrize("command", ["rescore", "serve"])
def test_a_command_gives_back_the_sigterm_handler_it_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    """A command's SIGTERM handler is its own for as long as it runs: a program that calls
    main() (a test run, a script) has its own again afterwards."""
    source = tmp_path / "in.jsonl"
    source.write_bytes(post_line("p1", "周末去公园散步"))
    args = {
        "rescore": ["rescore", str(source), "-o", str(tmp_path / "out.jsonl"), "--workers", "1"],
        # a file where the state folder goes: the server stops before it loads anything
        "serve": ["serve", "--port", str(free_port())],
    }[command]
    monkeypatch.setenv("QINGLANG_STATE_DIR", str(source))

    def callers(signum: int, frame: FrameType | None) -> None:
        """The handler of the program that called main()."""

    previous = signal.signal(signal.SIGTERM, callers)
    get_settings.cache_clear()
    try:
        assert main(args, load_scorer=length_scorer) == (0 if command == "rescore" else 2)
        assert signal.getsignal(signal.SIGTERM) is callers
    finally:
        signal.signal(signal.SIGTERM, previous)
        get_settings.cache_clear()


def test_a_console_user_needs_a_name_that_can_sign_in(tmp_path: Path) -> None:
    for name in ("", "  ", " li", "x" * 65):
        failed = qinglang(tmp_path, "users", "create", name, "--role", "reviewer")
        assert failed.returncode == 2 and "a name is 1 to 64 characters" in failed.stderr
    # one that reads as a key id, the name a key of nobody's acts under
    failed = qinglang(tmp_path, "users", "create", "946263264feb", "--role", "reviewer")
    assert failed.returncode == 2 and "'946263264feb' reads as a key id" in failed.stderr
    # a name that reads as another one, or bytes of argv that are not UTF-8 (no database
    # stores them: a traceback before)
    for name, says in (
        ("li\u200b", "U+200B"),
        ("li\nwang", "U+000A"),
        ("caf\udce9", "a byte that is not UTF-8"),
    ):
        failed = qinglang(tmp_path, "users", "create", name, "--role", "reviewer")
        assert failed.returncode == 2 and f"a name cannot contain {says}" in failed.stderr
    # é as e and a combining accent: a second user beside the one of é, whose name reads the same
    failed = qinglang(tmp_path, "users", "create", "le\u0301i", "--role", "reviewer")
    assert failed.returncode == 2
    assert "'le\u0301i' is not in composed form (Unicode NFC): write it 'l\u00e9i'" in failed.stderr
    made = qinglang(tmp_path, "users", "create", "li", "--role", "reviewer")
    assert made.returncode == 0 and "console user 'li'" in made.stdout
    again = qinglang(tmp_path, "users", "create", "li", "--role", "admin")
    assert again.returncode == 2 and "the name 'li' is taken" in again.stderr
    bad_key = qinglang(tmp_path, "keys", "revoke", "ql_\udce9")
    assert (
        bad_key.returncode == 2
        and "a key cannot contain a byte that is not UTF-8" in bad_key.stderr
    )


def test_workers_past_the_limit_are_refused_before_any_starts(tmp_path: Path) -> None:
    failed = qinglang(tmp_path, "serve", "--workers", "99999999999999999999")
    assert failed.returncode == 2 and "at most 64 server processes" in failed.stderr
    (tmp_path / "in.jsonl").write_text('{"id": "1", "text": "x"}\n')
    args = ("rescore", str(tmp_path / "in.jsonl"), "-o", str(tmp_path / "out.jsonl"))
    failed = qinglang(tmp_path, *args, "--workers", "65")
    assert failed.returncode == 2 and "--workers 65 is over 64 processes" in failed.stderr


def test_a_port_out_of_range_or_not_a_number_is_refused(tmp_path: Path) -> None:
    failed = qinglang(tmp_path, "serve", "--port", "70000")
    assert failed.returncode == 2 and "a port is from 1 to 65535, not 70000" in failed.stderr
    failed = qinglang(tmp_path, "serve", "--port", "http")
    assert failed.returncode == 2 and "--port: 'http' is not a whole number" in failed.stderr


def test_serve_on_a_port_in_use_says_so_in_one_line_and_never_listening(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        env = {"QINGLANG_STATE_DIR": str(tmp_path / "state")}
        failed = qinglang(tmp_path, "serve", "--host", "127.0.0.1", "--port", port, env=env)
    assert failed.returncode == 2
    assert "listening" not in failed.stdout + failed.stderr
    (line,) = failed.stderr.splitlines()
    assert line.startswith("qinglang serve: error: ") and f"127.0.0.1:{port}" in line
    assert "in use" in line


def test_a_mistyped_database_path_stops_the_commands_that_read_and_creates_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    typo = tmp_path / "stat" / "qinglang.db"
    env = {"QINGLANG_DATABASE_URL": f"sqlite:///{typo}"}
    listed = qinglang(tmp_path, "keys", "list", env=env)
    assert listed.returncode == 2
    (line,) = listed.stderr.splitlines()
    assert line.startswith(f"qinglang keys: error: no SQLite database at {typo} ")
    source = tmp_path / "in.jsonl"
    source.write_bytes(post_line("p1", "周末去公园散步"))
    monkeypatch.setenv("QINGLANG_DATABASE_URL", env["QINGLANG_DATABASE_URL"])
    get_settings.cache_clear()
    try:
        args = ["rescore", str(source), "-o", str(tmp_path / "out.jsonl"), "--bank"]
        assert main([*args, "--workers", "1", "--no-progress"], load_scorer=length_scorer) == 2
    finally:
        get_settings.cache_clear()
    bank = "qinglang rescore: error: cannot read the confirmed-rumour bank: no SQLite database at"
    assert f"{bank} {typo} " in capsys.readouterr().err
    assert not typo.parent.exists()
    # a command that writes creates the database, as before
    revoked = qinglang(tmp_path, "keys", "revoke", "0123456789ab", env=env)
    assert revoked.returncode == 2 and "no key '0123456789ab'" in revoked.stderr
    listed = qinglang(tmp_path, "keys", "list", env=env)
    assert listed.returncode == 0 and listed.stdout == ""


@pytest.mark.parametrize("on_path", [True, False])
def test_serve_on_ipv6_prints_urls_and_a_key_command_that_work(
    tmp_path: Path, on_path: bool
) -> None:
    """The URLs carry the IPv6 host in brackets; the command for a key runs in the shell the
    server was started from: by name where PATH finds this installation's script (the container
    image), by its path where it does not (``make serve``)."""
    scripts = str(Path(sys.executable).parent)
    others = [d for d in os.environ["PATH"].split(os.pathsep) if d != scripts]
    env = {
        **os.environ,
        "QINGLANG_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}",
        "QINGLANG_STATE_DIR": str(tmp_path / "state"),
        "PATH": os.pathsep.join([scripts, *others] if on_path else others),
    }
    port = free_port()
    out = tmp_path / "server.stdout"
    with open(out, "wb") as stdout:
        server = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "serve", "--host", "::1", "--port", str(port)],
            env=env,
            stdout=stdout,
            stderr=subprocess.DEVNULL,
        )

    def said_it_listens() -> bool:
        assert server.poll() is None, "the server exited"
        return out.read_text().count("\n") >= 3

    def answers() -> bool:
        try:
            return httpx.get(f"{url}/healthz").status_code == 200
        except httpx.TransportError:
            return False

    url = f"http://[::1]:{port}"
    try:
        wait_for(said_it_listens, 120)
        said, key_hint, curl_hint = out.read_text().splitlines()[:3]
        assert said.startswith(f"qinglang serve: listening on {url} ")
        assert curl_hint.endswith(f" {url}/v1/score")
        command = key_hint.removeprefix("  get an API key: ")
        assert command.startswith("qinglang ") == on_path
        created = subprocess.run(
            command, shell=True, env=env, capture_output=True, text=True, check=False
        )
        assert created.returncode == 0, created.stderr
        assert created.stdout.splitlines()[-1].startswith("ql_")
        wait_for(answers, 60)
    finally:
        server.terminate()
        server.wait(60)


class Healthy(http.server.BaseHTTPRequestHandler):
    """Answers ``/healthz`` as the server does, and nothing else."""

    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def image_healthcheck() -> list[str]:
    """The command of the Dockerfile's HEALTHCHECK, as Docker runs its exec or shell form."""
    text = (Path(__file__).parent.parent / "Dockerfile").read_text().replace("\\\n", " ")
    (line,) = [line for line in text.splitlines() if line.startswith("HEALTHCHECK ")]
    command = line.split(" CMD ", 1)[1].strip()
    if command.startswith("["):
        exec_form: list[str] = json.loads(command)
        return exec_form
    return ["/bin/sh", "-c", command]


def test_the_images_healthcheck_probes_the_port_of_the_settings_whichever_sets_it(
    tmp_path: Path,
) -> None:
    config = tmp_path / "qinglang.toml"
    env = {
        **{k: v for k, v in os.environ.items() if k != "QINGLANG_PORT"},
        # the image's python, and its host; a proxy the probe must not go through
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "QINGLANG_HOST": "0.0.0.0",
        "QINGLANG_CONFIG": str(config),
        # its own: the default's may hold the address a server run here wrote (make serve)
        "QINGLANG_STATE_DIR": str(tmp_path / "state"),
        "HTTP_PROXY": "http://127.0.0.1:9",
    }
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), Healthy) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        config.write_text(f"port = {server.server_address[1]}\n")
        probe = subprocess.run(
            image_healthcheck(), env=env, capture_output=True, text=True, check=False
        )
        assert probe.returncode == 0, probe.stderr
        server.shutdown()
    failed = subprocess.run(
        image_healthcheck(), env=env, capture_output=True, text=True, check=False
    )
    assert failed.returncode == 1
    (line,) = failed.stderr.splitlines()
    assert f"127.0.0.1:{server.server_address[1]}/healthz" in line


def test_the_images_healthcheck_probes_the_port_given_to_serve(tmp_path: Path) -> None:
    """``CMD ["qinglang", "serve", "--port", ...]``: the probe, a process apart from the server
    that sees the settings (another port here) but not serve's command line, asks the server."""
    settings_port, port = free_port(), free_port()
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "QINGLANG_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}",
        "QINGLANG_STATE_DIR": str(tmp_path / "state"),
        "QINGLANG_HOST": "0.0.0.0",
        "QINGLANG_PORT": str(settings_port),
    }
    server = serve(env, port, tmp_path / "server")
    try:
        probe = subprocess.run(
            image_healthcheck(), env=env, capture_output=True, text=True, check=False
        )
        assert probe.returncode == 0, probe.stderr
    finally:
        server.terminate()
        server.wait(60)
    failed = subprocess.run(
        image_healthcheck(), env=env, capture_output=True, text=True, check=False
    )
    assert failed.returncode == 1
    assert f"127.0.0.1:{port}/healthz" in failed.stderr


def test_a_database_of_a_newer_release_is_named_not_a_traceback(tmp_path: Path) -> None:
    assert qinglang(tmp_path, "migrate").returncode == 0
    with sqlite3.connect(tmp_path / "cli.db") as connection:
        connection.execute("UPDATE alembic_version SET version_num = '9999_future'")
    failed = qinglang(tmp_path, "keys", "list")
    assert failed.returncode == 2 and "a database of a newer release?" in failed.stderr
    assert "Traceback" not in failed.stderr


def test_a_command_that_only_reads_leaves_the_journal_mode_as_it_is(tmp_path: Path) -> None:
    assert qinglang(tmp_path, "migrate").returncode == 0
    connection = sqlite3.connect(tmp_path / "cli.db")
    connection.execute("PRAGMA journal_mode=DELETE")
    connection.close()
    for command in (["keys", "list"], ["audit", "verify"]):
        done = qinglang(tmp_path, *command)
        assert done.returncode == 0, done.stderr
        connection = sqlite3.connect(tmp_path / "cli.db")
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("delete",), command
        connection.close()
    # a command that writes takes the file to WAL, as the server does
    assert qinglang(tmp_path, "keys", "create", "--role", "reviewer").returncode == 0
    connection = sqlite3.connect(tmp_path / "cli.db")
    assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    connection.close()


def per_process(metrics_dir: Path) -> dict[int, dict[str, float]]:
    """Each server process's own counts, from the file it writes (pid: sample: value)."""
    counts: dict[int, dict[str, float]] = {}
    for path in metrics_dir.glob("counter_*.db"):
        samples = counts[int(path.stem.split("_")[1])] = {}
        for metric in MultiProcessCollector.merge([str(path)]):  # type: ignore[no-untyped-call]
            for sample in metric.samples:
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
                samples[f"{sample.name}{{{labels}}}"] = sample.value
    return counts


def sessions_hold_on_every_worker(url: str, metrics_dir: Path, password: str) -> None:
    """A console session signed by one worker holds on the others (their keys are one)."""
    cookies = sign_in(url, "li", password)
    for _ in range(30):
        console_concurrently(url, cookies, 12)
        shown = [
            c.get('qinglang_requests_total{method="GET",route="/console/queue",status="200"}')
            for c in per_process(metrics_dir).values()
        ]
        if all(shown):
            break
    assert all(shown), shown


def sign_in(url: str, name: str, password: str) -> dict[str, str]:
    """The cookies of a console session, signed in through the form."""
    with httpx.Client(base_url=url) as client:
        form = client.get("/console/login").text
        csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', form)
        assert csrf is not None
        signed = client.post(
            "/console/login",
            data={"csrf": csrf.group(1), "name": name, "password": password},
            headers={"Connection": "close"},
        )
        assert signed.status_code == 303 and signed.headers["location"] == "/console/queue"
        return dict(client.cookies)


def console_concurrently(url: str, cookies: dict[str, str], n: int) -> None:
    """The queue page ``n`` times at once, one connection each, so that both workers answer:
    each must show the page, not send the session back to the sign-in form."""

    def one(_: int) -> int:
        page = httpx.get(f"{url}/console/queue", cookies=cookies, timeout=60)
        return page.status_code

    with ThreadPoolExecutor(n) as pool:
        assert list(pool.map(one, range(n))) == [200] * n


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def score_concurrently(url: str, key: str, ids: Sequence[str]) -> None:
    """One connection per post, all at once, so that the kernel hands them to either worker."""

    def one(post_id: str) -> int:
        response = httpx.post(
            f"{url}/v1/score",
            json={"id": post_id, "text": f"第{post_id}篇：周末去公园散步。"},
            headers={"Authorization": f"Bearer {key}"},
            timeout=60,
        )
        return response.status_code

    with ThreadPoolExecutor(len(ids)) as pool:
        assert list(pool.map(one, ids)) == [200] * len(ids)


def test_metrics_of_two_workers_report_the_whole_server_whichever_answers(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    earlier = state / "metrics" / "counter_1.db"  # an earlier server's: not counted again
    earlier.parent.mkdir(parents=True)
    earlier.write_bytes(b"not a metrics file")
    key = qinglang(tmp_path, "keys", "create", "--role", "publisher").stdout.splitlines()[-1]
    password = qinglang(tmp_path, "users", "create", "li", "--role", "reviewer").stdout
    env = {
        **os.environ,
        "QINGLANG_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}",
        "QINGLANG_STATE_DIR": str(state),
        # every post gets review; nothing stored, so no evidence work competes for the cores
        "QINGLANG_POLICY_FILE": str(write_policy(tmp_path / "policy.toml", persist=())),
    }
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = serve(env, port, tmp_path / "server", "--workers", "2")
    try:
        warned = (tmp_path / "server.stderr").read_text()
        assert "2 workers without redis_url keep one near-duplicate window each" in warned
        assert not earlier.exists()
        # each worker creates its file when it builds the app
        wait_for(lambda: len(per_process(state / "metrics")) == 2, 120)
        # a second server on the same state folder is refused, and empties nothing
        second = qinglang(tmp_path, "serve", "--port", str(free_port()), env=env)
        assert second.returncode == 2 and "another server uses" in second.stderr
        assert len(per_process(state / "metrics")) == 2
        sent: list[str] = []
        for round_ in range(30):
            ids = [f"r{round_}-{i}" for i in range(12)]
            score_concurrently(url, key, ids)
            sent += ids
            answered = [
                c.get('qinglang_requests_total{method="POST",route="/v1/score",status="200"}', 0)
                for c in per_process(state / "metrics").values()
            ]
            if all(answered):
                break
        assert all(answered) and sum(answered) == len(sent), answered
        for _ in range(8):  # whichever worker answers a scrape reports both
            text = httpx.get(f"{url}/metrics", headers={"Connection": "close"}).text
            n = float(len(sent))
            assert (
                f'qinglang_requests_total{{method="POST",route="/v1/score",status="200"}} {n}'
                in text
            )
            assert f'qinglang_request_seconds_count{{method="POST",route="/v1/score"}} {n}' in text
            assert f'qinglang_decisions_total{{decision="review"}} {n}' in text
            assert f'qinglang_score_count{{risk="rumor"}} {n}' in text
            assert f'qinglang_flags_total{{risk="incitement"}} {n}' in text
            assert f"qinglang_batch_posts_sum {n}" in text
            assert "qinglang_queue_depth 0.0" in text
            assert "qinglang_storage_up 1.0" in text
            assert text.count("qinglang_model_info{") == 1
        sessions_hold_on_every_worker(url, state / "metrics", password.splitlines()[-1])
        # a worker killed outright: uvicorn replaces it; its counts stay, its live gauges go
        killed = min(per_process(state / "metrics"))
        os.kill(killed, signal.SIGKILL)
        wait_for(lambda: not alive(killed))
        text = httpx.get(f"{url}/metrics", headers={"Connection": "close"}).text
        assert f'qinglang_decisions_total{{decision="review"}} {float(len(sent))}' in text
        assert not list((state / "metrics").glob(f"gauge_live*_{killed}.db"))
    finally:
        server.terminate()  # uvicorn stops its workers, each running its app's shutdown
        server.wait(120)
    # the workers that stopped took their live gauges with them
    assert not list((state / "metrics").glob("gauge_live*.db"))


def test_serve_answers_on_connections_without_nagles_delay() -> None:
    """uvicorn takes serve's socket by its descriptor as a Unix socket, and asyncio leaves
    Nagle's algorithm on for the connections it accepts on one: a response written in two parts
    waited for the client's delayed acknowledgement (40 ms a request on a kept-alive
    connection). Accepted as uvicorn accepts them, they must have TCP_NODELAY."""
    listener = _bind("127.0.0.1", free_port())
    as_uvicorn_takes_it = socket.fromfd(listener.fileno(), socket.AF_UNIX, socket.SOCK_STREAM)
    accepted: list[int] = []

    class Note(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            sock = transport.get_extra_info("socket")
            accepted.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            transport.close()

    async def connect_once() -> None:
        server = await asyncio.get_running_loop().create_server(Note, sock=as_uvicorn_takes_it)
        host, port = listener.getsockname()[:2]
        _, writer = await asyncio.open_connection(host, port)
        while not accepted:
            await asyncio.sleep(0.01)
        writer.close()
        server.close()

    try:
        asyncio.run(connect_once())
    finally:
        listener.close()
    assert accepted == [1]
