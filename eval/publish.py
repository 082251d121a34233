"""A post to publish while a large batch is being scored: ``python -m eval.publish``.

Starts ``qinglang serve`` as :mod:`eval.load` does (the committed model, SQLite, the default
settings: one inference worker) and, with ``--baseline DIR``, a second server from the source
tree ``DIR`` (another version of the project, such as ``git archive`` of an earlier commit), both
at once. Each round sends one server a ``POST /v1/score/batch`` of 256 long posts and,
:data:`DELAY_S` later, while the batch is being scored, one ``POST /v1/score`` of a single post:
the single post's latency is what the publish path waits. The servers take turns round by round
(which goes first alternates), each round from an idle server (:func:`eval.load.settle`), so that
both see the same host. The long posts are weibo16 source posts (real text, at most a few hundred
characters each) drawn at random and joined up to :data:`LONG_CHARS` characters, new ones each
round so that no post is a near-duplicate of an earlier round's; the single post is one weibo16
post. With evidence spans on (:attr:`Settings.evidence`), each round waits for the spans of the
last one's flagged posts, found after the answer: minutes on a small host;
``QINGLANG_EVIDENCE=false`` leaves them out. Prints hardware, date and one markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx2 as httpx

from eval.load import Server, settle, start_server
from eval.speed import hardware
from service.cli.parser import positive_int
from service.settings import settings_or_exit
from training.data import WEIBO16_POSTS, require, weibo16

LARGE_POSTS = 256
LONG_CHARS = 2_600
DELAY_S = 0.8
"""How long after the batch request the single post leaves: the batch is in the model by then."""
TIMEOUT_S = 120.0


def long_texts(texts: list[str], count: int, chars: int, rng: random.Random) -> list[str]:
    """``count`` texts of ``chars`` characters, each of posts drawn from ``texts`` at random."""
    out = []
    for _ in range(count):
        parts: list[str] = []
        while len("\n".join(parts)) < chars:
            parts.append(rng.choice(texts))
        out.append("\n".join(parts)[:chars])
    return out


@dataclass(frozen=True)
class Round:
    single_ms: float
    batch_ms: float


async def one_round(
    client: httpx.AsyncClient, texts: list[str], tag: str, rng: random.Random
) -> Round:
    await settle(client)
    loop = asyncio.get_running_loop()
    posts = [
        {"id": f"publish-{tag}-{i}", "text": text}
        for i, text in enumerate(long_texts(texts, LARGE_POSTS, LONG_CHARS, rng))
    ]
    start = loop.time()
    large = asyncio.ensure_future(client.post("/v1/score/batch", json={"posts": posts}))
    await asyncio.sleep(DELAY_S)
    sent = loop.time()
    single = await client.post(
        "/v1/score", json={"id": f"publish-{tag}", "text": rng.choice(texts)}
    )
    single_s = loop.time() - sent
    batch = await large
    batch_s = loop.time() - start
    for name, response in (("single post", single), ("batch", batch)):
        if response.status_code != 200 or response.json()["degraded"]:
            raise SystemExit(f"the {name} was answered {response.status_code}: {response.text}")
    return Round(single_s * 1000, batch_s * 1000)


def table(rounds: dict[str, list[Round]]) -> str:
    rows = [
        "| server | rounds | single post ms: median | min | max "
        "| batch of 256 ms: median | min | max |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, measured in rounds.items():
        single = [r.single_ms for r in measured]
        batch = [r.batch_ms for r in measured]
        rows.append(
            f"| {name} | {len(measured)} | {statistics.median(single):.0f} | {min(single):.0f} "
            f"| {max(single):.0f} | {statistics.median(batch):.0f} | {min(batch):.0f} "
            f"| {max(batch):.0f} |"
        )
    return "\n".join(rows)


async def run(servers: dict[str, Server], texts: list[str], count: int) -> dict[str, list[Round]]:
    rng = random.Random(0)
    clients = {
        name: httpx.AsyncClient(
            base_url=s.url, headers={"Authorization": f"Bearer {s.key}"}, timeout=TIMEOUT_S
        )
        for name, s in servers.items()
    }
    rounds: dict[str, list[Round]] = {name: [] for name in servers}
    try:
        for name, client in clients.items():  # warm each server's code paths; not measured
            await client.post("/v1/score", json={"id": f"publish-warm-{name}", "text": texts[0]})
        for i in range(count):
            order = list(clients) if i % 2 == 0 else list(reversed(clients))
            for name in order:
                tag = f"{os.getpid()}-{i}-{name}"
                rounds[name].append(await one_round(clients[name], texts, tag, rng))
    finally:
        for client in clients.values():
            await client.aclose()
    return rounds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m eval.publish", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--rounds", type=positive_int, default=5, help="rounds per server (default 5)"
    )
    parser.add_argument(
        "--baseline", type=Path, default=None, help="source tree of another version to compare"
    )
    args = parser.parse_args(argv)
    if args.baseline is not None and not (args.baseline / "service" / "batching.py").is_file():
        parser.error(f"--baseline {args.baseline}: not a source tree of the project")
    settings = settings_or_exit(parser.prog)
    texts = [e.text for e in weibo16(require(settings.data_dir, (WEIBO16_POSTS,)))]
    sources = {"this tree": None} | ({} if args.baseline is None else {"baseline": args.baseline})
    servers: dict[str, Server] = {}
    with tempfile.TemporaryDirectory(prefix="qinglang-publish-") as state:
        try:
            for name, source in sources.items():
                folder = Path(state) / name.replace(" ", "-")
                folder.mkdir()
                servers[name] = start_server(folder, source)
            rounds = asyncio.run(run(servers, texts, args.rounds))
        finally:
            for server in servers.values():
                server.process.terminate()
                server.process.wait(timeout=30)
    print(f"Publish-path benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {hardware()}")
    print(
        f"server: 1 uvicorn worker, {settings.inference_workers} inference thread(s) x "
        f"{settings.serve_threads} ONNX threads, batch_max_posts {settings.batch_max_posts}, "
        f"evidence {'on' if settings.evidence else 'off'}, SQLite; each round: {LARGE_POSTS} "
        f"posts of {LONG_CHARS:,} characters in one batch request, one post {DELAY_S} s later; "
        "client: this process on the same machine"
    )
    if args.baseline is not None:
        print(f"baseline: {args.baseline}")
    print()
    print(table(rounds))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
