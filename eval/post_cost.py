"""Where a post's CPU goes on the publish path, in process: ``python -m eval.post_cost``.

``python -m eval.post_cost [--posts N] [--rounds R]``

The posts are those :mod:`eval.load` sends (:func:`eval.load.workloads`): the first ``--posts``
(default 300) of the corpus and of its negatives. Each goes through the pipeline as the server
takes a post at 100 requests/s, one post a call: :meth:`~service.pipeline.Pipeline.prepare`
without evidence and :meth:`~service.pipeline.Pipeline.ordered` (the answer's model work), then
:meth:`~service.pipeline.Pipeline.explain` (its evidence spans, found after the answer). The
pipeline is :meth:`~service.pipeline.Pipeline.load`'s, one ONNX thread a session, so that the
calling thread's CPU time is all of it; the server's HTTP, storage and review queue are not in
it (``python -m eval.load`` measures the whole).

Each post's CPU is split into ONNX Runtime's runs, the model inputs (tokenising and the n-gram
bag, :func:`service.classify.model_inputs`) and the rest (normalising, MinHash, the
near-duplicate window, the decision, the search's own work). Two versions of the model inputs
take turns round by round, each first in turn, from an empty near-duplicate window and evidence
memory, so that a slow spell on a shared host falls on both: *previous*, the tokenizer's
``encode_batch`` (which also computes every token's character offsets), as before 2026-12-07,
and *current*. Their records must be the same, spans included: the table says how many were
not. Prints hardware, date and one markdown table: CPU milliseconds a post, the mean of the
rounds with their lowest and highest.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from unittest.mock import patch

import numpy as np
from tokenizers import Tokenizer

from eval.load import workloads
from eval.speed import hardware
from service import classify
from service.classify import Classifier, Feeds, tokenize_on_calling_thread
from service.evidence import Remembered
from service.features import bag
from service.pipeline import Pipeline
from service.record import Post
from service.settings import settings_or_exit

Inputs = Callable[[Tokenizer, Sequence[str]], Feeds]


def previous_inputs(tok: Tokenizer, texts: Sequence[str]) -> Feeds:
    """:func:`service.classify.model_inputs` before 2026-12-07: ``encode_batch``, offsets and
    all."""
    enc = tok.encode_batch(list(texts))
    ids, counts = bag(texts)
    return {
        "input_ids": np.array([e.ids for e in enc], dtype=np.int64),
        "attention_mask": np.array([e.attention_mask for e in enc], dtype=np.int64),
        "ngram_ids": ids,
        "ngram_counts": counts,
    }


VARIANTS: dict[str, Inputs] = {"previous": previous_inputs, "current": classify.model_inputs}


@dataclass
class Clock:
    """CPU seconds of the calling thread, by part."""

    onnx: float = 0.0
    inputs: float = 0.0
    scoring: float = 0.0
    evidence: float = 0.0


class TimedSession:
    """An ONNX Runtime session whose runs add their CPU time to a :class:`Clock`."""

    def __init__(self, session: Any, clock: Clock) -> None:
        self.session = session
        self.clock = clock

    def run(self, *args: Any, **kwargs: Any) -> Any:
        start = time.thread_time()
        try:
            return self.session.run(*args, **kwargs)
        finally:
            self.clock.onnx += time.thread_time() - start


@contextmanager
def timed(pipeline: Pipeline, inputs: Inputs, clock: Clock) -> Iterator[None]:
    """``pipeline`` with ``inputs`` as its model inputs and its sessions' runs on ``clock``."""

    def counted(tok: Tokenizer, texts: Sequence[str]) -> Feeds:
        start = time.thread_time()
        try:
            return inputs(tok, texts)
        finally:
            clock.inputs += time.thread_time() - start

    models: list[Classifier] = [pipeline.classifier, pipeline.explainer]
    sessions = [m.session for m in models]
    for model, session in zip(models, sessions, strict=True):
        model.__dict__["session"] = TimedSession(session, clock)
    try:
        with patch.object(classify, "model_inputs", counted):
            yield
    finally:
        for model, session in zip(models, sessions, strict=True):
            model.__dict__["session"] = session


@dataclass
class Tally:
    """One variant's rounds on one workload: each round's :class:`Clock` a post."""

    rounds: list[Clock] = field(default_factory=list)
    flagged: float = 0.0
    records: list[list[str]] = field(default_factory=list)


def one_round(pipeline: Pipeline, posts: Sequence[Post], inputs: Inputs) -> tuple[Clock, list[str]]:
    """Score and explain ``posts`` one a call from an empty window and evidence memory; the
    clock a post and the records as JSON."""
    pipeline.use_state(None)
    pipeline.remembered = Remembered()
    clock = Clock()
    records: list[str] = []
    with timed(pipeline, inputs, clock):
        for post in posts:
            start = time.thread_time()
            scored = pipeline.ordered([post], pipeline.prepare([post], evidence=False))
            middle = time.thread_time()
            explained = pipeline.explain([post], scored)
            clock.scoring += middle - start
            clock.evidence += time.thread_time() - middle
            records.append(explained[0].model_dump_json())
    n = len(posts)
    return Clock(*(v / n for v in (clock.onnx, clock.inputs, clock.scoring, clock.evidence))), (
        records
    )


def spread(values: Sequence[float]) -> str:
    ms = [v * 1000 for v in values]
    return f"{statistics.mean(ms):.2f} ({min(ms):.2f}-{max(ms):.2f})"


def table(tallies: dict[tuple[str, str], Tally]) -> str:
    rows = [
        "| posts | model inputs | flagged | CPU ms a post | ONNX Runtime | model inputs "
        "| the rest | answer | evidence | records unlike current's |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for (workload, variant), t in tallies.items():
        current = tallies[workload, "current"].records
        unlike = sum(
            a != b
            for mine, theirs in zip(t.records, current, strict=True)
            for a, b in zip(mine, theirs, strict=True)
        )
        total = [c.scoring + c.evidence for c in t.rounds]
        rest = [c.scoring + c.evidence - c.onnx - c.inputs for c in t.rounds]
        rows.append(
            f"| {workload} | {variant} | {t.flagged:.0%} | {spread(total)} "
            f"| {spread([c.onnx for c in t.rounds])} | {spread([c.inputs for c in t.rounds])} "
            f"| {spread(rest)} | {spread([c.scoring for c in t.rounds])} "
            f"| {spread([c.evidence for c in t.rounds])} | {unlike} |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m eval.post_cost", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--posts", type=int, default=300, help="of each workload (default 300)")
    parser.add_argument("--rounds", type=int, default=4, help="of each variant (default 4)")
    args = parser.parse_args(argv)
    settings = settings_or_exit(parser.prog)
    tokenize_on_calling_thread()
    pipeline = Pipeline.load(settings)
    tallies: dict[tuple[str, str], Tally] = {}
    for workload, texts in workloads(settings).items():
        posts = [Post(id=f"{workload}-{i}", text=t) for i, t in enumerate(texts[: args.posts])]
        # not measured: the sessions open, the code paths warm
        one_round(pipeline, posts[:20], VARIANTS["current"])
        for r in range(args.rounds):
            names = list(VARIANTS) if r % 2 == 0 else list(reversed(VARIANTS))
            for name in names:
                clock, records = one_round(pipeline, posts, VARIANTS[name])
                tally = tallies.setdefault((workload, name), Tally())
                tally.rounds.append(clock)
                tally.records.append(records)
                flagged = [json.loads(r)["decision"] != "pass" for r in records]
                tally.flagged = sum(flagged) / len(flagged)
    print(f"Post cost, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {hardware()}")
    print(
        f"model {pipeline.model_version}, policy {pipeline.policy_version}; {args.posts} posts "
        f"a workload, {args.rounds} rounds a variant, one post a call, one ONNX thread"
    )
    print()
    print(table(tallies))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
