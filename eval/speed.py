"""Speed: the shipped int8 ONNX model against the same network in PyTorch eager fp32.

Both sides get the same inputs (real eval posts, tokenised and hashed by the scoring path's own
:func:`service.classify.model_inputs`) and the same threads, measured in one run. The PyTorch
side is the exported architecture (:class:`training.model.Scorer`, built from the card's
recipe) with freshly initialised weights: the work a dense network does does not depend on its
weights' values, and the fp32 weights are not shipped.

- single post: one post per call, one thread; p50 and p99 over ``SINGLE`` calls;
- batched: all ``BATCHED`` posts sorted by length in batches of 64, two threads; posts/s, each
  side's best of ``ROUNDS`` passes taken in turn, so that a slow spell on a shared machine falls
  on both sides alike;
- mixed batches: the int8 model on shuffled posts in calls of ``MIXED`` (what the service's
  micro-batches and batch endpoint hand it), each call padded as one against cut by length
  (:func:`service.classify.length_batches`); posts/s, two threads.
"""

from __future__ import annotations

import os
import platform
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from transformers import BertModel

from service.classify import (
    PROBS,
    Classifier,
    Feeds,
    length_batches,
    model_inputs,
    open_session,
)
from training.export import tensors
from training.model import Scorer
from training.pretrain import bert_config
from training.recipe import Encoder

SINGLE = 400
BATCHED = 2048
BATCH = 64
ROUNDS = 3
MIXED = 32


@dataclass(frozen=True)
class Timing:
    system: str
    p50_ms: float
    p99_ms: float
    batched_posts_s: float


INT8_UNITS = (
    ("amx_int8", "AMX int8"),
    ("avx512_vnni", "AVX-512 VNNI"),
    ("avx_vnni", "AVX-VNNI"),
)
"""CPU flags for int8 dot-product units, best first. The int8 model's matrix products run several
times faster on them; without one (AVX2 alone) its speed-up over PyTorch fp32 is smaller."""


def int8_unit(flags: set[str]) -> str:
    """The best int8 dot-product unit among a CPU's ``flags``, named for the speed tables."""
    found = next((name for flag, name in INT8_UNITS if flag in flags), None)
    if found:
        return found
    return "AVX2, no VNNI" if "avx2" in flags else "no AVX2"


def cpuinfo(text: str) -> dict[str, str]:
    """The fields of the first processor in ``/proc/cpuinfo``'s ``text`` (all are alike here)."""
    first = text.split("\n\n", maxsplit=1)[0]
    pairs = (line.split(":", 1) for line in first.splitlines() if ":" in line)
    return {key.strip(): value.strip() for key, value in pairs}


def hardware() -> str:
    """The CPU's model name (with its family and model numbers, as a hypervisor may shorten the
    name to the vendor's), its int8 unit (:func:`int8_unit`), cores and kernel."""
    model, unit = platform.processor() or "unknown CPU", "int8 unit unknown"
    try:
        fields = cpuinfo(Path("/proc/cpuinfo").read_text())
        model = f"{fields['model name']} (family {fields['cpu family']}, model {fields['model']})"
        unit = int8_unit(set(fields["flags"].split()))
    except (OSError, KeyError):
        pass
    return f"{model}, {unit}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"


def _latencies(run: Callable[[Feeds], object], feeds: Sequence[Feeds]) -> tuple[float, float]:
    for f in feeds[:20]:
        run(f)
    times = []
    for f in feeds:
        start = time.perf_counter()
        run(f)
        times.append(time.perf_counter() - start)
    return float(np.percentile(times, 50) * 1e3), float(np.percentile(times, 99) * 1e3)


def _throughputs(
    runs: Sequence[Callable[[Feeds], object]], batches: Sequence[Feeds], posts: int
) -> list[float]:
    """Each run's best posts/s over ``ROUNDS`` passes, the runs taking turns."""
    best = [0.0] * len(runs)
    for run in runs:
        run(batches[0])
    for _ in range(ROUNDS):
        for i, run in enumerate(runs):
            start = time.perf_counter()
            for b in batches:
                run(b)
            best[i] = max(best[i], posts / (time.perf_counter() - start))
    return best


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
        return lambda f: s.run([PROBS], f)

    torch.set_num_threads(1)
    latencies = [_latencies(run, single) for run in (onnx_session(1), run_torch)]
    torch.set_num_threads(2)
    posts_s = _throughputs((onnx_session(2), run_torch), batches, len(ordered))
    names = ("int8 ONNX Runtime", "PyTorch eager fp32")
    return [
        Timing(name, p50, p99, rate)
        for name, (p50, p99), rate in zip(names, latencies, posts_s, strict=True)
    ]


def mixed(classifier: Classifier, texts: Sequence[str]) -> tuple[float, float]:
    """Posts/s of the int8 model on shuffled calls of ``MIXED`` posts: each call padded as one,
    and cut by length."""
    session = open_session(classifier.path, 2)
    shuffled = list(texts[:BATCHED])
    random.Random(0).shuffle(shuffled)
    calls = [shuffled[i : i + MIXED] for i in range(0, len(shuffled), MIXED)]

    def padded(call: Sequence[str]) -> None:
        session.run([PROBS], model_inputs(classifier.tokenizer, call))

    def by_length(call: Sequence[str]) -> None:
        for idx in length_batches([len(t) for t in call], BATCH):
            session.run([PROBS], model_inputs(classifier.tokenizer, [call[i] for i in idx]))

    out = []
    for run in (padded, by_length):
        run(calls[0])
        start = time.perf_counter()
        for call in calls:
            run(call)
        out.append(len(shuffled) / (time.perf_counter() - start))
    return out[0], out[1]


def table(timings: Sequence[Timing], mixed_posts_s: tuple[float, float]) -> str:
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
    padded, cut = mixed_posts_s
    lines += [
        "",
        f"Mixed calls of {MIXED} shuffled posts (the service's micro-batches), int8, 2 threads: "
        f"padded as one {padded:.0f} posts/s, cut by length {cut:.0f} posts/s "
        f"({cut / padded:.2f}x).",
    ]
    return "\n".join(lines)
