"""What the evidence search costs on the Weibo16 source posts, by text length: the search as it
was before 2026-12-06 and the current one, side by side in one run.

``python -m eval.evidence_cost [--posts N] [--longest K] [--seed S]``

Every source post (``weibo16/posts.jsonl``) is scored; of those the policy flags on a classifier
risk, ``--posts`` (default 500) drawn at random and the ``--longest`` (default 50) longest
others are searched for the spans of every flagged risk, on one ONNX thread, four ways taking
turns post by post (each first in turn), so that a slow spell falls on all alike:

- *previous*: :func:`previous`, the search of commit 71f7fa8: the text itself run again in each
  of its two model calls, each head choosing among the fine windows beside its own coarse hits,
  each call one ONNX run whatever its rows (:attr:`Classifier.log_odds_chars` off);
- *previous, cut calls*: the same search with the calls cut at ``log_odds_chars``, as the
  current search's are: what the cut alone changes, its speed and, as int8 activations are
  quantised per ONNX run, its spans (the noise any change of batching brings);
- *current*: :func:`service.evidence.search`;
- *every window*: every fine window weighed in one call (:func:`service.evidence.weigh_all`),
  the reference the searches are held to.

The first table, means a post: model rows (one text through the network), ONNX runs, rows a
run, tokens a row as padded, CPU milliseconds (the process's, so that other work on the host
counts less than in wall time) and the share of them spent in ONNX Runtime (the rest:
tokenising, the n-gram bag, the search itself). The second, per flagged (post, risk): how far
the spans agree with the previous search's (the very same spans; the overlap of their
characters, intersection over union, 1 where both found none; whether the strongest spans
overlap, or both found none) and the share with the very same spans as weighing every window.
"""

from __future__ import annotations

import argparse
import copy
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy.typing as npt

from eval.evidence import overlap
from eval.speed import hardware
from service import evidence
from service.classify import Classifier, require_model, tokenize_on_calling_thread
from service.cli.parser import non_negative_int, positive_int
from service.decide import decide
from service.heads import CLASSIFIER_RISKS, HEADS, RISKS, Head
from service.normalise import normalise
from service.policy import Policy, load_policy
from service.settings import settings_or_exit
from training import data

LENGTHS = ((1, 47), (48, 95), (96, 143), (144, 256))
"""Buckets of normalised characters: below 48 the fine windows are two characters wide."""

Search = Callable[[str, Sequence[Head]], dict[Head, evidence.Chosen]]


def previous(
    classifier: evidence.Predictor, text: str, heads: Sequence[Head]
) -> dict[Head, evidence.Chosen]:
    """The search of commit 71f7fa8, for comparison: the same grids and keep rule."""
    fine = evidence.fine_windows(len(text))
    if not heads or len(fine) < 2:
        return {h: [] for h in heads}
    if len(fine) <= evidence.ONE_STAGE:
        return evidence.weigh_all(classifier, text, fine, heads)
    coarse = evidence.coarse_windows(len(text), fine)
    coarse_drops = evidence.log_odds_drops(classifier, text, coarse, heads)
    near: dict[Head, list[evidence.Window]] = {}
    for k, h in enumerate(heads):
        keep = evidence.kept(coarse_drops[:, k], evidence.COARSE_SHARE)
        hits = [w for w, hit in zip(coarse, keep, strict=True) if hit]
        near[h] = [(s, e) for s, e in fine if any(s < he and hs < e for hs, he in hits)]
    rows = sorted({w for ws in near.values() for w in ws})
    if not rows:
        return {h: [] for h in heads}
    drops = evidence.log_odds_drops(classifier, text, rows, heads)
    at = {w: i for i, w in enumerate(rows)}
    return {
        h: evidence.choose(near[h], drops[[at[w] for w in near[h]], k]) if near[h] else []
        for k, h in enumerate(heads)
    }


def every_window(
    classifier: evidence.Predictor, text: str, heads: Sequence[Head]
) -> dict[Head, evidence.Chosen]:
    """Every fine window weighed in one call: the reference."""
    fine = evidence.fine_windows(len(text))
    if len(fine) < 2:
        return {h: [] for h in heads}
    return evidence.weigh_all(classifier, text, fine, heads)


class Runs:
    """A model session that counts its runs, their rows and padded tokens, and their CPU time."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self.runs = self.rows = self.tokens = 0
        self.seconds = 0.0

    def run(self, outputs: list[str], feeds: Mapping[str, npt.NDArray[Any]]) -> Any:
        start = time.process_time()
        out = self.session.run(outputs, feeds)
        self.seconds += time.process_time() - start
        rows, tokens = feeds["input_ids"].shape
        self.runs += 1
        self.rows += rows
        self.tokens += rows * tokens
        return out

    def snapshot(self) -> tuple[int, int, int, float]:
        return self.runs, self.rows, self.tokens, self.seconds


@dataclass
class Cost:
    """One search's totals over a set of posts."""

    posts: int = 0
    runs: int = 0
    rows: int = 0
    tokens: int = 0
    onnx_s: float = 0.0
    cpu_s: float = 0.0

    def add(
        self, before: tuple[int, int, int, float], after: tuple[int, int, int, float], cpu: float
    ) -> None:
        self.posts += 1
        self.runs += after[0] - before[0]
        self.rows += after[1] - before[1]
        self.tokens += after[2] - before[2]
        self.onnx_s += after[3] - before[3]
        self.cpu_s += cpu

    def ms(self) -> float:
        return self.cpu_s * 1000 / max(1, self.posts)


@dataclass
class Found:
    """What each search chose for one post, by head."""

    length: int
    heads: list[Head]
    spans: dict[str, dict[Head, evidence.Chosen]]


def flagged(texts: Sequence[str], classifier: Classifier, policy: Policy) -> list[list[Head]]:
    """The heads whose risks the policy flags on each of ``texts`` (normalised) by the
    classifier's scores alone, as the pipeline's first stage searches them."""
    probs = classifier.predict(texts)
    out = []
    for text, row in zip(texts, probs, strict=True):
        scores = {r: float(row[HEADS.index(h)]) for r, h in CLASSIFIER_RISKS.items()}
        # flags do not depend on the length; only a block does
        verdict = decide(dict.fromkeys(RISKS, 0.0) | scores, policy, chars=len(text))
        out.append([h for r, h in CLASSIFIER_RISKS.items() if verdict.flags[r]])
    return out


def run(
    searches: Mapping[str, Search], runs: Runs, posts: Sequence[tuple[str, list[Head]]]
) -> tuple[list[Found], dict[str, list[Cost]]]:
    """Each search on each post, taking turns (each first in turn); the costs by length bucket
    (and a last one over all)."""
    names = list(searches)
    costs = {name: [Cost() for _ in range(len(LENGTHS) + 1)] for name in names}
    found = []
    for n, (text, heads) in enumerate(posts):
        bucket = next(i for i, (lo, hi) in enumerate(LENGTHS) if lo <= len(text) <= hi)
        spans = {}
        for name in names[n % len(names) :] + names[: n % len(names)]:
            before, start = runs.snapshot(), time.process_time()
            spans[name] = searches[name](text, heads)
            cpu = time.process_time() - start
            for cost in (costs[name][bucket], costs[name][-1]):
                cost.add(before, runs.snapshot(), cpu)
        found.append(Found(len(text), heads, spans))
    return found, costs


def same(a: evidence.Chosen, b: evidence.Chosen) -> bool:
    return [w[:2] for w in a] == [w[:2] for w in b]


def strongest_agree(a: evidence.Chosen, b: evidence.Chosen) -> bool:
    if not a or not b:
        return not a and not b
    (sa, ea, _), (sb, eb, _) = (max(x, key=lambda w: w[2]) for x in (a, b))
    return sa < eb and sb < ea


Group = tuple[str, list[Found], dict[str, Cost]]


def cost_table(groups: Sequence[Group]) -> str:
    lines = [
        "| flagged source posts | n | model rows a post (previous / current / every window) "
        "| ONNX runs a post (previous / current) | rows a run | tokens a row | CPU ms a post "
        "(previous / previous, cut calls / current) | speed-up | ONNX share of CPU |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, found, cost in groups:
        p, q, c, a = (
            cost[k] for k in ("previous", "previous, cut calls", "current", "every window")
        )
        n = max(1, p.posts)
        lines.append(
            f"| {name} | {len(found)} | {p.rows / n:.1f} / {c.rows / n:.1f} / {a.rows / n:.1f} | "
            f"{p.runs / n:.1f} / {c.runs / n:.1f} | "
            f"{p.rows / max(1, p.runs):.1f} / {c.rows / max(1, c.runs):.1f} | "
            f"{p.tokens / max(1, p.rows):.0f} / {c.tokens / max(1, c.rows):.0f} | "
            f"{p.ms():.1f} / {q.ms():.1f} / {c.ms():.1f} | {p.ms() / max(c.ms(), 1e-9):.2f}x | "
            f"{p.onnx_s / max(p.cpu_s, 1e-9):.0%} / {c.onnx_s / max(c.cpu_s, 1e-9):.0%} |"
        )
    return "\n".join(lines)


Pairs = list[tuple[dict[str, dict[Head, evidence.Chosen]], Head]]


def mean(
    pairs: Pairs, test: Callable[[evidence.Chosen, evidence.Chosen], float], a: str, b: str
) -> float:
    """The mean of ``test`` on searches ``a`` and ``b``'s spans over ``pairs``."""
    return sum(test(s[a][h], s[b][h]) for s, h in pairs) / max(1, len(pairs))


def agreement_table(groups: Sequence[Group]) -> str:
    lines = [
        "| flagged source posts | (post, risk) | same spans as previous (previous, cut calls / "
        "current) | character overlap | strongest spans overlap | same spans as every window "
        "(previous / previous, cut calls / current) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    cut, now, was, every = "previous, cut calls", "current", "previous", "every window"
    for name, found, _ in groups:
        pairs: Pairs = [(f.spans, h) for f in found for h in f.heads]
        cells = [
            f"{mean(pairs, same, cut, was):.1%} / {mean(pairs, same, now, was):.1%}",
            f"{mean(pairs, overlap, cut, was):.3f} / {mean(pairs, overlap, now, was):.3f}",
            f"{mean(pairs, strongest_agree, cut, was):.1%} / "
            f"{mean(pairs, strongest_agree, now, was):.1%}",
            " / ".join(f"{mean(pairs, same, k, every):.1%}" for k in (was, cut, now)),
        ]
        lines.append(f"| {name} | {len(pairs)} | {' | '.join(cells)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.evidence_cost", description=__doc__)
    parser.add_argument(
        "--posts", type=positive_int, default=500, help="flagged posts drawn at random"
    )
    parser.add_argument(
        "--longest", type=non_negative_int, default=50, help="longest flagged posts added"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    settings = settings_or_exit(parser.prog)
    data.require(settings.data_dir, (data.WEIBO16_POSTS,))
    tokenize_on_calling_thread()
    current = Classifier(require_model(settings.model_dir), threads=1)
    runs = Runs(current.session)
    current.__dict__["session"] = runs
    before = copy.copy(current)
    before.log_odds_chars = None
    policy = load_policy(settings.policy_file)

    texts = [t for t in (normalise(e.text).text for e in data.weibo16(settings.data_dir)) if t]
    start = time.process_time()
    heads = flagged(texts, current, policy)
    score_s = time.process_time() - start
    chosen = [i for i, h in enumerate(heads) if h]
    drawn = random.Random(args.seed).sample(chosen, min(args.posts, len(chosen)))
    others = sorted(set(chosen) - set(drawn), key=lambda i: -len(texts[i]))[: args.longest]

    searches: dict[str, Search] = {
        "previous": lambda text, hs: previous(before, text, hs),
        "previous, cut calls": lambda text, hs: previous(current, text, hs),
        "current": lambda text, hs: evidence.search(current, text, hs),
        "every window": lambda text, hs: every_window(current, text, hs),
    }
    found, costs = run(searches, runs, [(texts[i], heads[i]) for i in drawn])
    longest, long_costs = run(searches, runs, [(texts[i], heads[i]) for i in others])

    groups: list[Group] = []
    for k, (lo, hi) in enumerate(LENGTHS):
        groups.append(
            (
                f"drawn, {lo}-{hi} characters",
                [f for f in found if lo <= f.length <= hi],
                {name: c[k] for name, c in costs.items()},
            )
        )
    groups.append(("drawn, all", found, {name: c[-1] for name, c in costs.items()}))
    lengths = [f.length for f in longest]
    if lengths:
        groups.append(
            (
                f"the {len(longest)} longest others ({min(lengths)}-{max(lengths)} characters)",
                longest,
                {name: c[-1] for name, c in long_costs.items()},
            )
        )
    print(
        f"hardware: {hardware()}; date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; "
        f"model {current.version}; 1 ONNX thread; {len(texts):,} source posts, "
        f"{len(chosen):,} flagged\n"
    )
    groups = [g for g in groups if g[1]]
    print(cost_table(groups), end="\n\n")
    print(agreement_table(groups))
    # one process re-scoring every source post: scoring, and the drawn posts' mean search a
    # flagged post (the longest others are not drawn at random)
    per_post = {name: costs[name][-1].ms() / 1000 for name in ("previous", "current")}
    rates = {name: len(texts) / (score_s + len(chosen) * ms) for name, ms in per_post.items()}
    print(
        f"\nscoring the {len(texts):,} source posts: {score_s:.1f} CPU-s; with the spans of the "
        f"{len(chosen):,} flagged at the drawn posts' mean: {rates['previous']:.1f} posts a "
        f"CPU-second before, {rates['current']:.1f} now"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
