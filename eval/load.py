"""Load benchmark of the scoring service on loopback: ``python -m eval.load``.

Starts ``qinglang serve`` (the committed model, a SQLite file in a temporary state folder) as its
own process, creates a publisher key, and drives it from this process with an open-loop async
HTTP client at fixed offered rates: requests leave on a fixed schedule whether or not earlier
ones have come back, and each latency is measured from its scheduled time, so a server that
falls behind shows it in the percentiles instead of slowing the offered load down. Stages:

- ``GET /healthz`` at 50, 100, 200 requests/s: the framework's own floor;
- ``POST /v1/score`` at 50, 100, 200 requests/s, one post each;
- ``POST /v1/score/batch`` with 32 posts a request, at increasing rates: posts/s achieved.

Posts are the evaluation split of the labelled corpora (``QINGLANG_DATA_DIR``), each sent once
under a fresh id, so that nothing is answered from the idempotency cache and flagged posts are
stored and enqueued as in production. Prints hardware, date and one markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import count, cycle
from pathlib import Path
from typing import Any

import httpx2 as httpx
import numpy as np

from eval.speed import hardware
from service.settings import Settings
from training.data import cold, toxicn, weibo16

RATES = (50, 100, 200)
BATCH_POSTS = 32
BATCH_RATES = (8, 16, 24)
"""Batch requests per second: 256, 512 and 768 posts/s offered."""


@dataclass(frozen=True)
class Stage:
    endpoint: str
    offered: float
    achieved: float
    posts_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    errors: int
    degraded: int


def texts(settings: Settings) -> list[str]:
    sets = (weibo16, cold, toxicn)
    found = [e.text for load in sets for e in load(settings.data_dir) if e.split == "eval"]
    random.Random(0).shuffle(found)
    return found


Body = Callable[[int], dict[str, Any] | None]


async def stage(
    client: httpx.AsyncClient, method: str, path: str, rate: float, seconds: float, body: Body
) -> Stage:
    loop = asyncio.get_running_loop()
    total = int(rate * seconds)
    start = loop.time() + 0.1
    latencies: list[float] = []
    errors = degraded = posts = 0

    async def one(i: int) -> None:
        nonlocal errors, degraded, posts
        scheduled = start + i / rate
        await asyncio.sleep(max(0.0, scheduled - loop.time()))
        payload = body(i)
        try:
            response = await client.request(method, path, json=payload)
        except httpx.HTTPError:
            errors += 1
            return
        latencies.append(loop.time() - scheduled)
        if response.status_code != 200:
            errors += 1
            return
        if payload is not None:
            answer = response.json()
            degraded += bool(answer["degraded"])
            posts += len(answer["records"]) if "records" in answer else 1

    await asyncio.gather(*(one(i) for i in range(total)))
    elapsed = loop.time() - start
    ms = np.array(latencies) * 1000 if latencies else np.array([float("nan")])
    p50, p95, p99 = np.percentile(ms, [50, 95, 99])
    return Stage(
        f"{method} {path}",
        rate,
        (total - errors) / elapsed,
        posts / elapsed,
        float(p50),
        float(p95),
        float(p99),
        errors,
        degraded,
    )


def table(stages: list[Stage]) -> str:
    rows = [
        "| endpoint | offered req/s | achieved req/s | posts/s "
        "| p50 ms | p95 ms | p99 ms | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in stages:
        rows.append(
            f"| `{s.endpoint}` | {s.offered:.0f} | {s.achieved:.1f} | "
            f"{s.posts_s:.0f} | {s.p50_ms:.1f} | {s.p95_ms:.1f} | {s.p99_ms:.1f} | "
            f"{s.errors}{f' ({s.degraded} degraded)' if s.degraded else ''} |"
        )
    return "\n".join(rows)


async def run(url: str, key: str, corpus: list[str], seconds: float) -> list[Stage]:
    ids = count()
    pool = cycle(corpus)

    def post() -> dict[str, Any]:
        return {"id": f"load-{os.getpid()}-{next(ids)}", "text": next(pool)}

    limits = httpx.Limits(max_connections=512, max_keepalive_connections=512)
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(
        base_url=url, headers=headers, limits=limits, timeout=30.0
    ) as client:
        # warm the connections and the server's code paths; not measured
        await stage(client, "POST", "/v1/score", 50, 2, lambda i: post())
        stages = [await stage(client, "GET", "/healthz", r, seconds, lambda i: None) for r in RATES]
        stages += [
            await stage(client, "POST", "/v1/score", r, seconds, lambda i: post()) for r in RATES
        ]
        stages += [
            await stage(
                client,
                "POST",
                "/v1/score/batch",
                r,
                seconds,
                lambda i: {"posts": [post() for _ in range(BATCH_POSTS)]},
            )
            for r in BATCH_RATES
        ]
    return stages


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def cli(env: dict[str, str], *args: str, **kwargs: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "service.cli", *args], env=env, text=True, **kwargs
    )


@dataclass
class Server:
    url: str
    key: str
    process: subprocess.Popen[str]


def start_server(state: Path) -> Server:
    env = {
        **os.environ,
        "QINGLANG_STATE_DIR": str(state),
        # the benchmark's one key must not be the limit being measured
        "QINGLANG_RATE_LIMIT_PER_S": "100000",
        "QINGLANG_RATE_LIMIT_BURST": "100000",
    }
    created = cli(env, "keys", "create", "--role", "publisher", stdout=subprocess.PIPE)
    out, _ = created.communicate(timeout=120)
    if created.returncode:
        raise SystemExit("could not create a key")
    port = free_port()
    log = open(state / "server.log", "w")  # noqa: SIM115 (open for the server's life)
    process = cli(env, "serve", "--port", str(port), stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server exited; see {state / 'server.log'}")
        try:
            if httpx.get(f"{url}/readyz").status_code == 200:
                return Server(url, out.strip().splitlines()[-1], process)
        except httpx.TransportError:
            time.sleep(0.2)
    raise SystemExit("the server did not start in 120 s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.load", description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="per stage (default 10)")
    args = parser.parse_args(argv)
    settings = Settings()
    corpus = texts(settings)
    with tempfile.TemporaryDirectory(prefix="qinglang-load-") as state:
        server = start_server(Path(state))
        try:
            model = httpx.get(f"{server.url}/readyz").json()["model_version"]
            stages = asyncio.run(run(server.url, server.key, corpus, args.seconds))
        finally:
            server.process.terminate()
            server.process.wait(timeout=30)
    print(f"Load benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {hardware()}")
    print(
        f"model {model}; server: 1 uvicorn worker, {settings.serve_threads} ONNX threads, "
        f"batch window {settings.batch_window_ms} ms, SQLite; client: this process, same machine, "
        f"{args.seconds:.0f} s a stage, latency from each request's scheduled time"
    )
    print()
    print(table(stages))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
