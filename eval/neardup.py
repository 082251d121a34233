"""``python -m eval.neardup``: the near-duplicate index on the real Weibo16 repost stream.

Four tables, one run, on ``weibo16/reposts.jsonl.gz`` under ``Settings.data_dir`` (real accounts,
real timestamps, sorted by time):

1. **Throughput**: the service's path (:meth:`NearDuplicates.observe`: canonical text, batched
   MinHash, windowed LSH query, verification, insert, clusters) against the naive datasketch loop
   (one ``MinHash`` per post, ``update`` per shingle with the default SHA-1 hash, then
   ``MinHashLSH.query`` and ``insert``) on the same posts, each the best of three runs taken in
   turn; memory per indexed post (tracemalloc).
2. **LSH against brute force**: every pair of a slice of real posts compared exactly (Jaccard of
   shingle sets, a sparse matrix product); the pairs the index finds, precision and recall.
3. **Campaigns**: synthetic campaigns of ``K`` to 50 real accounts posting edited variants of a
   real rumour within minutes, injected into the stream; campaign recall, time to detection, and
   the batches the real background raises (listed for inspection).
4. **Fake originality**: copies with and without claims, with and without attribution (a
   source that names nothing traceable, such as 网络, is none), and own reposts; flagged share
   per scenario, precision and recall over the violations.
"""

from __future__ import annotations

import argparse
import os
import random
import time
import tracemalloc
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import opencc
import redis
from datasketch import MinHash, MinHashLSH
from scipy import sparse

from eval.speed import hardware
from service.cli.parser import positive_int
from service.neardup import NearDuplicates
from service.neardup.cluster import Member
from service.neardup.fingerprint import Fingerprinter
from service.neardup.index import Entry
from service.neardup.shared import RedisStore
from service.policy import load_policy
from service.record import Post
from service.settings import Settings, settings_or_exit
from training import data

CHUNK = 256
EMOJI = ["😂", "🙏", "👍", "[哈哈]", "[蜡烛]", "[怒]", "❗", "🔥"]
PREFIXES = ["转给大家：", "速看！", "#扩散#", "紧急！", "【重要】", "大家注意，"]
SUFFIXES = ["，转起来！", " 扩散周知", "（求证）", "!!!", " 大家小心"]
FILLER = "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年同"


def _post(row: dict[str, Any]) -> Post:
    return Post(
        id=row["id"],
        text=row["text"] or "",
        account_id=row["account"],
        created_at=row["created_at"],
    )


def stream(path: Path, limit: int) -> list[Post]:
    """The first ``limit`` reposts of the file, sorted by time."""
    posts = list(islice(data.records(path, _post), limit))
    posts.sort(key=lambda p: p.created_at or 0.0)
    return posts


def chunks(posts: Sequence[Post]) -> Iterator[Sequence[Post]]:
    for start in range(0, len(posts), CHUNK):
        yield posts[start : start + CHUNK]


def new_index(settings: Settings) -> NearDuplicates:
    return NearDuplicates.from_settings(settings, load_policy(settings.policy_file))


# --- 1. throughput ---------------------------------------------------------------------------


def fast_pass(settings: Settings, posts: Sequence[Post]) -> tuple[float, NearDuplicates]:
    near = new_index(settings)
    started = time.perf_counter()
    for chunk in chunks(posts):
        near.observe(chunk, [0.0] * len(chunk))
    return len(posts) / (time.perf_counter() - started), near


def naive_pass(settings: Settings, posts: Sequence[Post]) -> float:
    """The same posts through stock datasketch, one post and one shingle at a time."""
    fp = new_index(settings).fingerprinter
    lsh = MinHashLSH(threshold=settings.neardup_threshold, num_perm=settings.neardup_num_perm)
    started = time.perf_counter()
    for post in posts:
        (found,) = fp.fingerprints([post.text])
        if found.boilerplate:
            continue
        minhash = MinHash(num_perm=settings.neardup_num_perm)
        for shingle in fp.shingles(found.canonical):
            minhash.update(shingle.encode("utf-8"))
        lsh.query(minhash)
        lsh.insert(post.id, minhash, check_duplication=False)
    return len(posts) / (time.perf_counter() - started)


ROUNDS = 3


def side_by_side(settings: Settings, posts: Sequence[Post]) -> tuple[float, float]:
    """Posts/s of this index and of the naive loop on ``posts``: each the best of ``ROUNDS``
    runs, the two taken in turn, so that a burst of load on the shared machine during one run
    counts against neither side."""
    fast = naive = 0.0
    for _ in range(ROUNDS):
        fast = max(fast, fast_pass(settings, posts)[0])
        naive = max(naive, naive_pass(settings, posts))
    return fast, naive


def memory_per_post(settings: Settings, posts: Sequence[Post]) -> tuple[float, int]:
    # one window wide enough to keep every post: memory per post held, not per post expired
    near = new_index(settings.model_copy(update={"neardup_window_hours": 1e6}))
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for chunk in chunks(posts):
        # texts made here, as a request's are, and dropped after: what the window keeps of
        # them (the excerpt) is counted, not shared with the caller's copy
        arrived = [p.model_copy(update={"text": f" {p.text}"[1:]}) for p in chunk]
        near.observe(arrived, [0.0] * len(arrived))
        del arrived
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return used / max(1, len(near.local.index)), len(near.local.index)


# --- 1b. Redis -------------------------------------------------------------------------------


def redis_table(settings: Settings, posts: Sequence[Post], url: str) -> list[tuple[str, str]]:
    """Per-post latency of the shared store (query + insert, one Lua round trip each) and the
    Redis memory it takes, beside datasketch's stock Redis storage on the same posts."""
    prefix = f"bench:{time.time_ns()}"
    near = new_index(
        settings.model_copy(
            update={"redis_url": url, "neardup_redis_prefix": prefix, "redis_timeout_s": 1.0}
        )
    )
    assert isinstance(near.shared, RedisStore)
    store, client, fp = near.shared, near.shared.client, near.fingerprinter
    found = fp.fingerprints([p.text for p in posts])
    kept = [(p, f) for p, f in zip(posts, found, strict=True) if not f.boilerplate]
    signatures = fp.signatures([f.canonical for _, f in kept])
    before = int(client.info("memory")["used_memory"])
    latencies = []
    for (post, _), signature in zip(kept, signatures, strict=True):
        keys = near.local.index.keys(signature)
        member = Member(post.id, post.account_id, post.created_at or 0.0)
        started = time.perf_counter()
        matches = store.match(signature, keys, member.created_at, post.id)
        store.add(member, signature, keys, matches[0].entry if matches else None, True)
        latencies.append(time.perf_counter() - started)
    used = int(client.info("memory")["used_memory"]) - before
    stock_ms = _stock_redis(settings, fp, kept[:STOCK_POSTS], signatures, url)
    for key in client.scan_iter(f"{prefix}:*", count=10_000):
        client.delete(key)
    ms = np.array(latencies) * 1000
    return [
        ("posts (non-boilerplate)", f"{len(kept):,}"),
        (
            "this store: query + insert p50 / p99",
            f"{np.median(ms):.2f} / {np.percentile(ms, 99):.2f} ms",
        ),
        ("this store: Redis memory per indexed post", f"{used / len(kept):,.0f} bytes"),
        (
            f"datasketch stock Redis storage, first {min(STOCK_POSTS, len(kept))}: p50 / p99",
            f"{np.median(stock_ms):.2f} / {np.percentile(stock_ms, 99):.2f} ms",
        ),
    ]


STOCK_POSTS = 1000


def _stock_redis(
    settings: Settings,
    fp: Fingerprinter,
    kept: Sequence[tuple[Post, object]],
    signatures: np.typing.NDArray[np.uint32],
    url: str,
) -> np.typing.NDArray[np.float64]:
    parsed = urlparse(url)
    basename = f"bench-stock-{time.time_ns()}".encode()
    lsh = MinHashLSH(
        threshold=settings.neardup_threshold,
        num_perm=settings.neardup_num_perm,
        storage_config={
            "type": "redis",
            "basename": basename,
            "redis": {"host": parsed.hostname, "port": parsed.port or 6379},
        },
    )
    times = []
    for (post, _), signature in zip(kept, signatures, strict=False):
        minhash = fp.minhash(signature)
        started = time.perf_counter()
        lsh.query(minhash)
        lsh.insert(post.id, minhash, check_duplication=False)
        times.append(time.perf_counter() - started)
    client = redis.Redis(host=parsed.hostname or "127.0.0.1", port=parsed.port or 6379)
    for key in client.scan_iter(basename + b"*", count=10_000):
        client.delete(key)
    return np.array(times) * 1000


# --- 2. LSH against brute force ---------------------------------------------------------------


def pairs_table(settings: Settings, posts: Sequence[Post]) -> list[tuple[str, str]]:
    fp = new_index(settings).fingerprinter
    found_ = fp.fingerprints([p.text for p in posts])
    kept = [(p, f) for p, f in zip(posts, found_, strict=True) if not f.boilerplate]
    vocab: dict[str, int] = {}
    rows, cols = [], []
    for i, (_, f) in enumerate(kept):
        for shingle in set(fp.shingles(f.canonical)):
            rows.append(i)
            cols.append(vocab.setdefault(shingle, len(vocab)))
    x = sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(kept), len(vocab)))
    inter = sparse.triu(x @ x.T, k=1).tocoo()
    sizes = np.asarray(x.sum(axis=1)).ravel()
    jaccard = inter.data / (sizes[inter.row] + sizes[inter.col] - inter.data)
    truth = {
        (int(a), int(b))
        for a, b, j in zip(inter.row, inter.col, jaccard, strict=True)
        if j >= settings.neardup_threshold
    }
    # one window wide enough for the whole slice: this measures the LSH, not the window
    near = new_index(settings.model_copy(update={"neardup_window_hours": 1e6}))
    position = {p.id: i for i, (p, _) in enumerate(kept)}
    found: set[tuple[int, int]] = set()
    signatures = near.fingerprinter.signatures([f.canonical for _, f in kept])
    started = time.perf_counter()
    for i, ((post, _), signature) in enumerate(zip(kept, signatures, strict=True)):
        keys = near.local.index.keys(signature)
        for match in near.local.index.query(signature, keys):
            found.add((position[match.entry.post_id], i))
        near.local.index.insert(Entry(post.id, post.account_id, 0.0, post.id, signature), keys)
    lsh_s = time.perf_counter() - started
    hit = len(found & truth)
    return [
        ("posts (non-boilerplate)", f"{len(kept):,}"),
        ("pairs compared by brute force", f"{len(kept) * (len(kept) - 1) // 2:,}"),
        (f"pairs at Jaccard >= {settings.neardup_threshold}", f"{len(truth):,}"),
        ("pairs the LSH index returns (verified)", f"{len(found):,}"),
        ("recall", f"{hit / max(1, len(truth)):.3f}"),
        ("precision", f"{hit / max(1, len(found)):.3f}"),
        ("LSH query + insert", f"{len(kept) / lsh_s:,.0f} posts/s"),
    ]


# --- 3. campaigns ------------------------------------------------------------------------------


@dataclass
class Campaign:
    name: str
    posts: list[Post]


def variant(template: str, rng: random.Random, s2t: opencc.OpenCC) -> str:
    """A campaign's edit of ``template``: each edit a real campaign uses, half the time."""
    text = template
    if rng.random() < 0.5:  # sentence order shuffled
        parts = [s for s in text.replace("！", "。").replace("？", "。").split("。") if s]
        rng.shuffle(parts)
        text = "。".join(parts)
    chars = list(text)
    for i in rng.sample(range(len(chars)), k=len(chars) // 10):  # a tenth of characters replaced
        chars[i] = rng.choice(FILLER)
    text = "".join(chars)
    if rng.random() < 0.5:
        text = s2t.convert(text)
    if rng.random() < 0.5:  # punctuation and spacing
        text = text.replace("，", " , ").replace("。", "．")
    if rng.random() < 0.5:
        text = f"{rng.choice(EMOJI)}{text}{rng.choice(EMOJI)}"
    if rng.random() < 0.5:
        text = rng.choice(PREFIXES) + text
    if rng.random() < 0.5:
        text += rng.choice(SUFFIXES)
    return text


def campaigns(
    background: Sequence[Post], templates: Sequence[str], count: int, k: int, seed: int = 7
) -> list[Campaign]:
    rng = random.Random(seed)
    s2t = opencc.OpenCC("s2t")
    accounts = sorted({p.account_id for p in background if p.account_id})
    times = [p.created_at or 0.0 for p in background]
    out = []
    for n in range(count):
        size = rng.randint(k, 50)
        template = templates[n % len(templates)]
        start = rng.choice(times)
        span = rng.uniform(2, 20) * 60
        posts = [
            Post(
                id=f"campaign-{n}-{j}",
                text=variant(template, rng, s2t),
                account_id=account,
                created_at=start + rng.uniform(0, span),
            )
            for j, account in enumerate(rng.sample(accounts, size))
        ]
        out.append(Campaign(f"campaign-{n}", sorted(posts, key=lambda p: p.created_at or 0.0)))
    return out


def campaign_table(
    settings: Settings, background: Sequence[Post], injected: list[Campaign]
) -> tuple[list[tuple[str, str]], list[str]]:
    posts = sorted(
        [*background, *(p for c in injected for p in c.posts)], key=lambda p: p.created_at or 0.0
    )
    near = new_index(settings)
    fp = near.fingerprinter
    flagged_at: dict[str, float] = {}
    background_batches: dict[str, list[Post]] = defaultdict(list)
    boilerplate_flagged = 0
    for chunk in chunks(posts):
        for post, finding in zip(chunk, near.observe(chunk, [0.0] * len(chunk)), strict=True):
            if finding.scores.get("coordination", 0.0) < 1.0:
                continue
            if post.id.startswith("campaign-"):
                name = post.id.rsplit("-", 1)[0]
                flagged_at.setdefault(name, post.created_at or 0.0)
            else:
                assert finding.cluster is not None
                background_batches[finding.cluster.id].append(post)
                boilerplate_flagged += fp.fingerprints([post.text])[0].boilerplate
    delays = [
        flagged_at[c.name] - (c.posts[0].created_at or 0.0)
        for c in injected
        if c.name in flagged_at
    ]
    sizes = [len(c.posts) for c in injected]
    rows = [
        ("campaigns injected", f"{len(injected)} ({min(sizes)} to {max(sizes)} accounts each)"),
        ("background posts", f"{len(background):,}"),
        ("campaign recall", f"{len(flagged_at) / len(injected):.3f}"),
        (
            "time to detection (median, max)",
            f"{np.median(delays) / 60:.1f} min, {max(delays) / 60:.1f} min" if delays else "-",
        ),
        ("batches raised by the background", f"{len(background_batches)}"),
        ("boilerplate posts among them", f"{boilerplate_flagged}"),
    ]
    listing = []
    for cid, members in background_batches.items():
        accounts = len({m.account_id for m in members})
        listing.append(
            f"{cid}: {len(members)} flagged posts, {accounts} accounts, e.g. "
            f"{members[0].text[:60]!r}"
        )
    return rows, listing


# --- 4. fake originality -------------------------------------------------------------------------

SCENARIOS = (
    ("claim, no attribution (violation)", True),
    ("no claim", False),
    ("claim, source field", False),
    ("claim, 转自 in the text", False),
    ("own earlier post, claim", False),
    ("claim, source that names nothing (violation)", True),
    ("claim, source naming a publication (新华网, 网络安全报)", False),
)
UNTRACEABLE_SOURCES = (
    "网络",
    "来源：网络",
    "转自网络",
    "图片来自网络，侵删",
    "未知",
    "source: internet",
)
"""Sources that name nothing to trace (``service.neardup.match.UNTRACEABLE``)."""
NAMED_SOURCES = ("新华网", "来源：网络安全报", "中国互联网新闻中心", "网易新闻")
"""Publications whose names hold the words of those sources: each a credit."""


def originality_table(
    settings: Settings, background: Sequence[Post], templates: Sequence[str], per: int = 40
) -> list[tuple[str, str]]:
    rng = random.Random(11)
    s2t = opencc.OpenCC("s2t")
    accounts = sorted({p.account_id for p in background if p.account_id})
    times = [p.created_at or 0.0 for p in background]
    injected: list[tuple[Post, str]] = []
    for n in range(per * len(SCENARIOS)):
        kind = SCENARIOS[n % len(SCENARIOS)][0]
        template = templates[n % len(templates)]
        first, second = rng.sample(accounts, 2)
        at = rng.choice(times)
        original = Post(id=f"orig-{n}", text=template, account_id=first, created_at=at)
        copy_text = variant(template, rng, s2t)
        fields: dict[str, object] = {"declared_original": kind != "no claim"}
        if kind == "claim, source field":
            fields["source"] = f"@{first}"
        if kind.startswith("claim, source that names nothing"):
            fields["source"] = UNTRACEABLE_SOURCES[n % len(UNTRACEABLE_SOURCES)]
        if kind.startswith("claim, source naming a publication"):
            fields["source"] = NAMED_SOURCES[n % len(NAMED_SOURCES)]
        if kind == "claim, 转自 in the text":
            copy_text = f"转自@{first}：{copy_text}"
        owner = first if kind.startswith("own") else second
        copy = Post(
            id=f"copy-{n}",
            text=copy_text,
            account_id=owner,
            created_at=at + rng.uniform(60, 3 * 3600),
            **fields,
        )
        injected += [(original, ""), (copy, kind)]
    posts = sorted(
        [*((p, "") for p in background), *injected], key=lambda x: x[0].created_at or 0.0
    )
    near = new_index(settings)
    flagged: dict[str, int] = defaultdict(int)
    total: dict[str, int] = defaultdict(int)
    background_flags = 0
    for start in range(0, len(posts), CHUNK):
        chunk = posts[start : start + CHUNK]
        found = near.observe([p for p, _ in chunk], [0.0] * len(chunk))
        for (post, kind), finding in zip(chunk, found, strict=True):
            hit = finding.scores.get("fake_originality", 0.0) > 0
            if kind:
                total[kind] += 1
                flagged[kind] += hit
            elif post.id.startswith("orig-"):
                background_flags += hit
    tp = sum(flagged[k] for k, positive in SCENARIOS if positive)
    fp_ = sum(flagged[k] for k, positive in SCENARIOS if not positive) + background_flags
    positives = sum(total[k] for k, positive in SCENARIOS if positive)
    rows = [(kind, f"{flagged[kind]}/{total[kind]} flagged") for kind, _ in SCENARIOS]
    rows += [
        ("precision", f"{tp / max(1, tp + fp_):.3f}"),
        ("recall", f"{tp / max(1, positives):.3f}"),
    ]
    return rows


def table(title: str, rows: Sequence[tuple[str, str]]) -> str:
    lines = [f"### {title}", "", "| | |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in rows]
    return "\n".join(lines)


def rumour_templates(data_dir: Path) -> list[str]:
    rumours = (e.text for e in data.weibo16(data_dir) if e.label == 1)
    return [text for text in rumours if 40 <= len(text) <= 140][:200]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.neardup", description=__doc__)
    parser.add_argument("--posts", type=positive_int, default=200_000, help="real reposts streamed")
    parser.add_argument(
        "--naive", type=positive_int, default=20_000, help="posts for the naive loop"
    )
    parser.add_argument(
        "--pairs", type=positive_int, default=20_000, help="posts compared pairwise"
    )
    parser.add_argument("--campaigns", type=positive_int, default=100)
    parser.add_argument(
        "--redis", type=positive_int, default=40_000, help="posts through the Redis store"
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args(argv)
    settings = settings_or_exit(parser.prog)
    data.require(settings.data_dir, (data.WEIBO16_REPOSTS, data.WEIBO16_POSTS))
    posts = stream(settings.data_dir / data.WEIBO16_REPOSTS, args.posts)
    templates = rumour_templates(settings.data_dir)
    k = load_policy(settings.policy_file).near_duplicates.batch_accounts
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"{hardware()}; load average {load}; {datetime.now(UTC):%Y-%m-%d %H:%M} UTC\n")

    head = posts[: args.naive]
    fast_head, naive = side_by_side(settings, head)
    prints = new_index(settings).fingerprinter.fingerprints([p.text for p in head])
    real = [p for p, f in zip(head, prints, strict=True) if not f.boilerplate]
    fast_real, naive_real = side_by_side(settings, real)
    fast_all, near = fast_pass(settings, posts)
    per_post, indexed = memory_per_post(settings, posts[: args.naive])
    boilerplate = sum(
        f.boilerplate for f in near.fingerprinter.fingerprints([p.text for p in posts])
    )
    rows = [
        ("posts", f"{len(posts):,} real reposts ({boilerplate / len(posts):.0%} boilerplate)"),
        (f"naive datasketch loop, first {len(head):,}", f"{naive:,.0f} posts/s"),
        (f"this index, same {len(head):,}", f"{fast_head:,.0f} posts/s ({fast_head / naive:.1f}x)"),
        (f"naive, its {len(real):,} non-boilerplate posts only", f"{naive_real:,.0f} posts/s"),
        (
            f"this index, the same {len(real):,}",
            f"{fast_real:,.0f} posts/s ({fast_real / naive_real:.1f}x)",
        ),
        (f"this index, all {len(posts):,}", f"{fast_all:,.0f} posts/s"),
        ("memory per indexed post", f"{per_post:,.0f} bytes ({indexed:,} indexed)"),
    ]
    print(table("Throughput (normalise, shingle, MinHash, query, insert)", rows), end="\n\n")
    print(
        table(
            "Shared store in Redis (loopback)",
            redis_table(settings, posts[: args.redis], args.redis_url),
        )
    )
    print()
    print(table("LSH against brute-force pairs", pairs_table(settings, posts[: args.pairs])))
    print()
    if args.campaigns:  # none: the table has nothing to say
        injected = campaigns(posts, templates, args.campaigns, k)
        rows, listing = campaign_table(settings, posts, injected)
        print(table("Injected campaigns", rows), end="\n\n")
        for line in listing:
            print(f"- {line}")
        print()
    print(table("Fake originality", originality_table(settings, posts, templates)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
