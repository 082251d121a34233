"""Speed: the shipped int8 ONNX model against the same network in PyTorch eager fp32.

Both sides get the same inputs (real eval posts, tokenised and hashed by the scoring path's own
:func:`service.classify.model_inputs`) and the same threads, measured in one run. The PyTorch
side is the exported architecture (:class:`training.model.Scorer`, built from the card's
recipe) with freshly initialised weights: the work a dense network does does not depend on its
weights' values, and the fp32 weights are not shipped.

- single post: one post per call, one thread; p50 and p99 over ``SINGLE`` calls;
- batched: all ``BATCHED`` posts sorted by length in batches of 64, two threads; posts/s.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import onnxruntime as ort
import torch
from transformers import BertModel

from service.classify import Classifier, Feeds, model_inputs, open_session
from training.export import tensors
from training.model import Scorer
from training.pretrain import bert_config
from training.recipe import Encoder

SINGLE = 400
BATCHED = 2048
BATCH = 64


@dataclass(frozen=True)
class Timing:
    system: str
    p50_ms: float
    p99_ms: float
    batched_posts_s: float


def hardware() -> str:
    model = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if "model name" in line)
    except (OSError, StopIteration):
        pass
    return f"{model}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"


def _latencies(run: Callable[[Feeds], object], feeds: Sequence[Feeds]) -> tuple[float, float]:
    for f in feeds[:20]:
        run(f)
    times = []
    for f in feeds:
        start = time.perf_counter()
        run(f)
        times.append(time.perf_counter() - start)
    return float(np.percentile(times, 50) * 1e3), float(np.percentile(times, 99) * 1e3)


def _throughput(run: Callable[[Feeds], object], batches: Sequence[Feeds], posts: int) -> float:
    run(batches[0])
    start = time.perf_counter()
    for b in batches:
        run(b)
    return posts / (time.perf_counter() - start)


def measure(classifier: Classifier, texts: Sequence[str]) -> list[Timing]:
    tok = classifier.tokenizer
    cycled = [texts[i % len(texts)] for i in range(SINGLE)]
    single = [model_inputs(tok, [t]) for t in cycled]
    ordered = sorted(texts[:BATCHED], key=len)
    batches = [model_inputs(tok, ordered[i : i + BATCH]) for i in range(0, len(ordered), BATCH)]

    encoder = Encoder(**classifier.card["recipe"]["encoder"])
    torch.manual_seed(0)
    eager = Scorer(BertModel(bert_config(encoder), add_pooling_layer=False)).eval()

    def run_torch(f: Feeds) -> object:
        with torch.inference_mode():
            return eager(*tensors(f))

    def onnx_session(threads: int) -> Callable[[Feeds], object]:
        s = open_session(classifier.path, threads)
        return lambda f: s.run(["probs"], f)

    out = []
    for name, single_run, batch_run, threads in (
        ("int8 ONNX Runtime", onnx_session(1), onnx_session(2), None),
        ("PyTorch eager fp32", run_torch, run_torch, (1, 2)),
    ):
        if threads:
            torch.set_num_threads(threads[0])
        p50, p99 = _latencies(single_run, single)
        if threads:
            torch.set_num_threads(threads[1])
        out.append(Timing(name, p50, p99, _throughput(batch_run, batches, len(ordered))))
    return out


def table(timings: Sequence[Timing]) -> str:
    base = next(t for t in timings if t.system.startswith("PyTorch"))
    lines = [
        f"hardware: {hardware()}; date: {datetime.now(UTC):%Y-%m-%d}; "
        f"onnxruntime {ort.__version__}, torch {torch.__version__}",
        "",
        "| system | single post p50 (ms, 1 thread) | p99 (ms) | p50 speed-up | "
        "batched posts/s (2 threads) | batched speed-up |",
        "|---|---|---|---|---|---|",
    ]
    for t in timings:
        lines.append(
            f"| {t.system} | {t.p50_ms:.2f} | {t.p99_ms:.2f} | {base.p50_ms / t.p50_ms:.2f}x | "
            f"{t.batched_posts_s:.0f} | {t.batched_posts_s / base.batched_posts_s:.2f}x |"
        )
    return "\n".join(lines)
