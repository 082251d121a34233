"""``qinglang serve``: the state folder's lock, the metrics folder the processes share, the
bound socket, the model loaded once, the console key shared between workers, the subject key
checked against the database's, and the SIGTERM handler that stops the process while the model
loads."""

from __future__ import annotations

import argparse
import json
import socket
import sys
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, BinaryIO

from service.cli.signals import on_sigterm

if TYPE_CHECKING:
    from fastapi import FastAPI

    from service.pipeline import Pipeline
    from service.settings import Settings, SettingsError


def run(args: argparse.Namespace) -> int:
    # In the image this process is PID 1, to which the kernel delivers no signal left to its
    # default action: until uvicorn installs its own handlers, after the model has loaded,
    # `docker stop`'s SIGTERM was ignored and the container killed 10 s later. 143 is the
    # status of a process that SIGTERM ended.
    with on_sigterm(_stop):
        return _serve(args)


def _serve(args: argparse.Namespace) -> int:
    from service.settings import get_settings

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
    from service.storage import StorageError, SubjectKeyError, shown_url, upgrade
    from service.subject_key import load

    host = args.host or settings.host
    port = args.port or settings.port
    workers = args.workers or settings.workers
    listener = _bind(host, port)
    try:
        _tell_address(settings.listening_file, host, listener.getsockname()[1])
    except OSError as exc:
        print(
            f"qinglang serve: error: cannot write {settings.listening_file}: {exc}", file=sys.stderr
        )
        return 2
    configure(settings.log_level)
    # before the workers start: where no key is set, the first draws the key file they read
    subject_key = load(settings)
    pipeline: Pipeline | None = _serving_pipeline(settings)
    if workers > 1:
        # each worker loads its own: this one only showed that they can
        pipeline = None
        _share_between_workers(settings, workers)
    try:
        upgrade(settings.database, subject_key=subject_key)
    except SubjectKeyError as exc:
        # served, every subject check would miss: a taken subject registering again
        print(f"qinglang serve: error: {exc}", file=sys.stderr)
        return 2
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
        f"storage {shown_url(settings.database)}\n"
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

    try:
        return load_pipeline(settings)
    except Exception as exc:
        raise unloadable(settings, exc) from None


def unloadable(settings: Settings, exc: Exception) -> SettingsError:
    """The one line that says why the pipeline of ``settings`` could not be loaded, for a
    command that scores (``serve``, ``selfcheck``) to end with it, status 2."""
    from service.policy import PolicyError
    from service.settings import SettingsError

    if isinstance(exc, PolicyError):  # names its file
        problem = str(exc)
    else:
        # onnx, tokenizers and json do not name the file they could not read: the folder, then
        problem = (
            f"cannot load the model in {settings.model_dir} (the model_dir setting): "
            f"{type(exc).__name__}: {exc}"
        )
    return SettingsError(" ".join(problem.split()))


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
    # uvicorn takes the socket by its descriptor and makes it a Unix socket, on whose
    # connections asyncio then leaves Nagle's algorithm on: a response written in two parts
    # waited for the client's delayed acknowledgement, 40 ms on every request of a kept-alive
    # connection. The connections Linux accepts inherit this from the listening socket.
    listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        listener.bind((host, port))
    except OSError as exc:  # in use, or an address this machine does not have
        listener.close()
        raise SettingsError(
            f"cannot listen on {address(host, port)} (--host and --port, or the host and port "
            f"settings): {exc.strerror}"
        ) from None
    return listener


def _tell_address(path: Path, host: str, port: int) -> None:
    """Write where this server listens for the healthcheck, which runs apart from it and sees
    the settings but not this command line. Replaced whole, so that a probe never reads half a
    file; only the server holding the state folder writes it."""
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps({"host": host, "port": port}))
    partial.replace(path)


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
