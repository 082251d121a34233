"""Load benchmark of the scoring service on loopback: ``python -m eval.load``.

Starts ``qinglang serve`` (the committed model, a SQLite file in a temporary state folder) as its
own process, creates a publisher key, and drives it from this process with an open-loop async
HTTP client at fixed offered rates: requests leave on a fixed schedule whether or not earlier
ones have come back, and each latency is measured from its scheduled time, so a server that
falls behind shows it in the percentiles instead of slowing the offered load down. Stages:

- ``GET /healthz`` at 50, 100, 200 requests/s: the framework's own floor;
- ``POST /v1/score`` at 50, 100, 200 requests/s, one post each;
- ``POST /v1/score/batch`` with 32 posts a request, at increasing rates: posts/s achieved;

the scoring stages once for each of two workloads (:func:`workloads`), as the cost of a post
depends on whether it is flagged: a flagged post's evidence spans take two more model calls of
16 to 34 rows on average (``service/evidence.py``), made after the answer in an idle-scheduled
process, so the server still pays for them with whatever CPU scoring leaves. Each post is sent
once under a fresh id, so that nothing is answered from the idempotency cache and flagged posts
are stored and enqueued as in production.
A request that fails, times out (5 s) or comes back degraded is an error. Each stage starts
from an idle server and ends when the server is idle again (no post waits for the model, no
record for its evidence spans), so that the server's CPU time over that span, read from
``/proc``, is the stage's own: its **CPU per post** (per request for ``/healthz``). It is the
server process's alone: the evidence search runs in a process of its own (since 2026-12-07),
whose CPU is not in it (about 20 ms more a corpus post, 4 a negative). Latencies depend on
what else the host runs; the CPU a post costs depends on it less, though a host whose cores are
shared or slowed moves it too (21 to 32 ms a corpus post within an hour on one host), so compare
runs alternated on one host. Prints hardware, date and one markdown table.
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
from functools import partial
from itertools import count, cycle
from pathlib import Path
from typing import Any

import httpx2 as httpx
import numpy as np

from eval.speed import hardware
from service.cli.parser import positive_float
from service.settings import Settings, settings_or_exit
from training.data import (
    COLD_DEV,
    COLD_TRAIN,
    TOXICN,
    WEIBO16_POSTS,
    cold,
    require,
    toxicn,
    weibo16,
)

RATES = (50, 100, 200)
BATCH_POSTS = 32
BATCH_RATES = (4, 8, 16)
"""Batch requests per second: 128, 256 and 512 posts/s offered."""
TIMEOUT_S = 5.0
"""A request not answered in this long counts as an error."""


@dataclass(frozen=True)
class Stage:
    endpoint: str
    workload: str
    offered: float
    achieved: float
    posts_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    errors: int
    flagged: float
    """Share of the records that were not ``pass`` (each costs the evidence occlusion)."""
    unexplained: float
    """Share of the flagged records left ``evidence_pending`` (the evidence backlog was full):
    their spans are not in :attr:`cpu_ms`."""
    cpu_ms: float
    """The server process's CPU time from the stage's start until it was idle again, per post
    (per request where there are no posts); the evidence process's is not in it."""


def workloads(settings: Settings) -> dict[str, list[str]]:
    """``corpus``: the evaluation split as it is (about half its posts are rumours or offensive);
    ``negatives``: its posts labelled neither, closer to everyday publishing, where few posts
    are flagged."""
    examples = [e for load in (weibo16, cold, toxicn) for e in load(settings.data_dir)]
    evaluation = [e for e in examples if e.split == "eval"]
    found = {
        "corpus": [e.text for e in evaluation],
        "negatives": [e.text for e in evaluation if e.label == 0],
    }
    for texts in found.values():
        random.Random(0).shuffle(texts)
    return found


Body = Callable[[], dict[str, Any] | None]
CpuTime = Callable[[], float]
"""The server's CPU time so far, in seconds."""


def process_cpu_s(pid: int) -> float:
    """User and system CPU time of process ``pid`` and its threads (Linux ``/proc``)."""
    with open(f"/proc/{pid}/stat") as stat:
        # the fields after the parenthesised command name; utime and stime are 14th and 15th
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def stage(
    client: httpx.AsyncClient,
    cpu: CpuTime,
    path: str,
    rate: float,
    seconds: float,
    body: Body,
    workload: str = "",
) -> Stage:
    skipped_before = await settle(client)
    cpu_before = cpu()
    loop = asyncio.get_running_loop()
    total = int(rate * seconds)
    start = loop.time() + 0.1
    latencies: list[float] = []
    errors = posts = flagged = 0

    async def one(i: int) -> None:
        nonlocal errors, posts, flagged
        scheduled = start + i / rate
        await asyncio.sleep(max(0.0, scheduled - loop.time()))
        payload = body()
        try:
            if payload is None:
                response = await client.get(path)
            else:
                response = await client.post(path, json=payload)
        except httpx.HTTPError:  # a timeout counts as an error, not as a latency
            errors += 1
            return
        latencies.append(loop.time() - scheduled)
        if response.status_code != 200 or (payload is not None and response.json()["degraded"]):
            errors += 1
            return
        if payload is not None:
            answer = response.json()
            records = answer.get("records", [answer])
            posts += len(records)
            flagged += sum(r.get("decision", "pass") != "pass" for r in records)

    await asyncio.gather(*(one(i) for i in range(total)))
    elapsed = loop.time() - start
    skipped = await settle(client) - skipped_before
    cpu_s = cpu() - cpu_before
    ms = np.array(latencies) * 1000 if latencies else np.array([float("nan")])
    p50, p95, p99 = np.percentile(ms, [50, 95, 99])
    return Stage(
        f"{'POST' if path.startswith('/v1') else 'GET'} {path}",
        workload,
        rate,
        (total - errors) / elapsed,
        posts / elapsed,
        float(p50),
        float(p95),
        float(p99),
        errors,
        flagged / posts if posts else 0.0,
        skipped / flagged if flagged else 0.0,
        cpu_s * 1000 / (posts or total),
    )


IDLE = ("qinglang_queue_depth", "qinglang_evidence_waiting")
"""The gauges that are 0 on an idle server: posts waiting for the model (an overloaded stage
leaves a queue behind), records waiting for their evidence spans."""
SKIPPED = "qinglang_evidence_skipped_records_total"
"""Records the server left ``evidence_pending`` because its evidence backlog was full."""


async def settle(client: httpx.AsyncClient, limit_s: float = 300) -> float:
    """Wait until the server is idle (:data:`IDLE`), so that each stage starts from an idle
    server and is charged the work it left behind; the :data:`SKIPPED` count then."""
    deadline = time.monotonic() + limit_s
    while True:
        values = {
            name: float(value)
            for name, value in (
                line.split()
                for line in (await client.get("/metrics")).text.splitlines()
                if line.startswith((*IDLE, SKIPPED))
            )
        }
        if all(values[name] == 0 for name in IDLE) or time.monotonic() > deadline:
            return values.get(SKIPPED, 0.0)
        await asyncio.sleep(0.5)


def table(stages: list[Stage]) -> str:
    rows = [
        "| endpoint | posts | offered req/s | achieved req/s | posts/s | flagged "
        "| p50 ms | p95 ms | p99 ms | errors | flagged without spans | server CPU ms/post |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in stages:
        rows.append(
            f"| `{s.endpoint}` | {s.workload or '-'} | {s.offered:.0f} | {s.achieved:.1f} | "
            f"{s.posts_s:.0f} | {s.flagged:.0%} | {s.p50_ms:.1f} | {s.p95_ms:.1f} | "
            f"{s.p99_ms:.1f} | {s.errors} | {s.unexplained:.0%} | {s.cpu_ms:.2f} |"
        )
    return "\n".join(rows)


def batch(post: Callable[[], dict[str, Any]]) -> Body:
    return lambda: {"posts": [post() for _ in range(BATCH_POSTS)]}


async def run(
    url: str, key: str, cpu: CpuTime, corpora: dict[str, list[str]], seconds: float
) -> list[Stage]:
    ids = count()

    def poster(texts: list[str]) -> Callable[[], dict[str, Any]]:
        pool = cycle(texts)
        return lambda: {"id": f"load-{os.getpid()}-{next(ids)}", "text": next(pool)}

    limits = httpx.Limits(max_connections=1024, max_keepalive_connections=1024)
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(
        base_url=url, headers=headers, limits=limits, timeout=TIMEOUT_S
    ) as client:
        # warm the connections and the server's code paths; not measured
        await stage(client, cpu, "/v1/score", 50, 2, poster(corpora["negatives"]))
        stages = [await stage(client, cpu, "/healthz", r, seconds, lambda: None) for r in RATES]
        for workload, texts in corpora.items():
            post = poster(texts)
            for rate in RATES:
                stages.append(await stage(client, cpu, "/v1/score", rate, seconds, post, workload))
            for rate in BATCH_RATES:
                stages.append(
                    await stage(
                        client, cpu, "/v1/score/batch", rate, seconds, batch(post), workload
                    )
                )
    return stages


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def cli(
    env: dict[str, str], *args: str, source: Path | None = None, **kwargs: Any
) -> subprocess.Popen[str]:
    """``qinglang ARGS``, run from the source tree ``source`` where given (another version of
    the project, to compare with), else from this one."""
    if source is not None:
        env = {**env, "PYTHONPATH": str(source)}
    return subprocess.Popen(
        [sys.executable, "-m", "service.cli", *args], env=env, cwd=source, text=True, **kwargs
    )


@dataclass
class Server:
    url: str
    key: str
    process: subprocess.Popen[str]


def start_server(state: Path, source: Path | None = None) -> Server:
    """``qinglang serve`` on a free port with a publisher key, from ``source`` (:func:`cli`)."""
    env = {
        **os.environ,
        "QINGLANG_STATE_DIR": str(state),
        # the benchmark's one key must not be the limit being measured
        "QINGLANG_RATE_LIMIT_PER_S": "100000",
        "QINGLANG_RATE_LIMIT_BURST": "100000",
        # records a stage leaves without evidence must not be swept into a later stage's CPU
        "QINGLANG_EVIDENCE_LEASE_S": "86400",
    }
    created = cli(
        env, "keys", "create", "--role", "publisher", source=source, stdout=subprocess.PIPE
    )
    out, _ = created.communicate(timeout=120)
    if created.returncode:
        raise SystemExit("could not create a key")
    port = free_port()
    log = open(state / "server.log", "w")  # noqa: SIM115 (open for the server's life)
    process = cli(env, "serve", "--port", str(port), source=source, stdout=log, stderr=log)
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
    parser.add_argument(
        "--seconds", type=positive_float, default=10.0, help="per stage (default 10)"
    )
    args = parser.parse_args(argv)
    settings = settings_or_exit(parser.prog)
    require(settings.data_dir, (WEIBO16_POSTS, COLD_TRAIN, COLD_DEV, TOXICN))
    corpora = workloads(settings)
    with tempfile.TemporaryDirectory(prefix="qinglang-load-") as state:
        server = start_server(Path(state))
        try:
            model = httpx.get(f"{server.url}/readyz").json()["model_version"]
            cpu = partial(process_cpu_s, server.process.pid)
            stages = asyncio.run(run(server.url, server.key, cpu, corpora, args.seconds))
        finally:
            server.process.terminate()
            server.process.wait(timeout=30)
    print(f"Load benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {hardware()}")
    print(
        f"model {model}; server: 1 uvicorn worker, {settings.inference_workers} inference "
        f"thread(s) x {settings.serve_threads} ONNX threads, batch window "
        f"{settings.batch_window_ms} ms, SQLite; client: this process on the same machine, "
        f"{args.seconds:.0f} s a stage, latency from each request's scheduled time"
    )
    print()
    print(table(stages))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
