"""Evidence spans: the coarse-to-fine search against weighing every fine window, in one run.

``python -m eval.evidence [--posts N]``

For the first ``--posts`` posts (default 150) of each set that the policy flags on a classifier
risk, each search finds that risk's spans (:mod:`service.evidence`) on one ONNX thread, the two
taking turns post by post so that a slow spell falls on both alike. The sets are what a re-score
and the publish path see: ordinary reposts of Weibo16 events (one in fifty of the first 300,000,
the rumor head), Weibo16's eval posts (rumor head) and COLD's eval comments (incitement head).

Columns: model rows a post (one model row is one text through the network), milliseconds a post,
the share of posts given at least one span, and how far the coarse-to-fine spans agree with
those of the exhaustive search: the share of posts with the very same spans and the mean
overlap of their characters (intersection over union; 1 where both found none).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import islice

import numpy as np

from eval.speed import hardware
from service import evidence
from service.classify import Classifier, Probabilities, require_model
from service.cli.parser import positive_int
from service.decide import decide
from service.heads import CLASSIFIER_RISKS, HEADS, RISKS, Head
from service.normalise import normalise
from service.policy import Policy, load_policy
from service.settings import settings_or_exit
from training import data

Search = Callable[[Classifier, str, Head], tuple[evidence.Chosen, int]]


class Counting:
    """A classifier that counts the model rows it is asked for."""

    def __init__(self, classifier: Classifier) -> None:
        self.classifier = classifier
        self.rows = 0

    def log_odds(self, texts: Sequence[str], heads: Sequence[Head] = HEADS) -> Probabilities:
        self.rows += len(texts)
        return self.classifier.log_odds(texts, heads)


def exhaustive(classifier: Classifier, text: str, head: Head) -> tuple[evidence.Chosen, int]:
    """Every fine window weighed in one call: the spans and the model rows it took."""
    fine = evidence.fine_windows(len(text))
    if len(fine) < 2:
        return [], 0
    counting = Counting(classifier)
    return evidence.weigh_all(counting, text, fine, [head])[head], counting.rows


def coarse_to_fine(classifier: Classifier, text: str, head: Head) -> tuple[evidence.Chosen, int]:
    """The service's search: the spans and the model rows it took."""
    counting = Counting(classifier)
    return evidence.search(counting, text, [head])[head], counting.rows


def flagged(texts: Sequence[str], head: Head, classifier: Classifier, policy: Policy) -> list[str]:
    """The normalised ``texts`` whose scores the policy flags on ``head``'s risk."""
    norms = [t for t in (normalise(x).text for x in texts) if t]
    probs = classifier.predict(norms)
    risk = next(r for r, h in CLASSIFIER_RISKS.items() if h == head)
    out = []
    for text, p in zip(norms, probs[:, HEADS.index(head)], strict=True):
        # flags do not depend on the length; only a block does
        verdict = decide(dict.fromkeys(RISKS, 0.0) | {risk: float(p)}, policy, chars=len(text))
        if verdict.flags[risk]:
            out.append(text)
    return out


def overlap(a: evidence.Chosen, b: evidence.Chosen) -> float:
    chars_a = {i for s, e, _ in a for i in range(s, e)}
    chars_b = {i for s, e, _ in b for i in range(s, e)}
    union = chars_a | chars_b
    return 1.0 if not union else len(chars_a & chars_b) / len(union)


@dataclass(frozen=True)
class Side:
    """One search over one set: means per post."""

    rows: float
    ms: float
    with_spans: float


@dataclass(frozen=True)
class Row:
    name: str
    head: Head
    posts: int
    exhaustive: Side
    coarse_to_fine: Side
    same: float
    overlap: float


def compare(classifier: Classifier, name: str, texts: Sequence[str], head: Head) -> Row:
    """Both searches over ``texts``, taking turns post by post."""
    searches: dict[str, Search] = {"all": exhaustive, "c2f": coarse_to_fine}
    found: dict[str, list[evidence.Chosen]] = {k: [] for k in searches}
    rows = dict.fromkeys(searches, 0)
    seconds = dict.fromkeys(searches, 0.0)
    for text in texts:
        for key, search in searches.items():
            start = time.perf_counter()
            spans, n = search(classifier, text, head)
            seconds[key] += time.perf_counter() - start
            found[key].append(spans)
            rows[key] += n
    n = max(1, len(texts))
    sides = {
        k: Side(rows[k] / n, seconds[k] * 1000 / n, sum(1 for f in found[k] if f) / n)
        for k in searches
    }
    pairs = list(zip(found["all"], found["c2f"], strict=True))
    return Row(
        name=name,
        head=head,
        posts=len(texts),
        exhaustive=sides["all"],
        coarse_to_fine=sides["c2f"],
        same=sum(1 for a, b in pairs if [w[:2] for w in a] == [w[:2] for w in b]) / n,
        overlap=float(np.mean([overlap(a, b) for a, b in pairs])) if pairs else 1.0,
    )


def table(rows: Sequence[Row]) -> str:
    lines = [
        "| posts flagged | head | n | model rows a post (all / coarse to fine) | ms a post "
        "(all / coarse to fine) | speed-up | posts with spans (all / coarse to fine) | same "
        "spans | character overlap |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        a, c = r.exhaustive, r.coarse_to_fine
        lines.append(
            f"| {r.name} | {r.head} | {r.posts} | {a.rows:.1f} / {c.rows:.1f} | "
            f"{a.ms:.1f} / {c.ms:.1f} | {a.ms / max(c.ms, 1e-9):.2f}x | "
            f"{a.with_spans:.0%} / {c.with_spans:.0%} | {r.same:.0%} | {r.overlap:.3f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.evidence", description=__doc__)
    parser.add_argument("--posts", type=positive_int, default=150, help="flagged posts per set")
    args = parser.parse_args(argv)
    settings = settings_or_exit(parser.prog)
    read = (data.WEIBO16_REPOSTS, data.WEIBO16_POSTS, data.COLD_TRAIN, data.COLD_DEV)
    d = data.require(settings.data_dir, read)
    classifier = Classifier(require_model(settings.model_dir), threads=1)
    policy = load_policy(settings.policy_file)
    sets: list[tuple[str, Sequence[str], Head]] = [
        (
            "ordinary reposts of Weibo16 events",
            [r.text for r in islice(data.reposts(d), 0, 300_000, 50)],
            "rumor",
        ),
        ("Weibo16 eval posts", [e.text for e in data.weibo16(d) if e.split == "eval"], "rumor"),
        (
            "COLD eval comments",
            [e.text for e in data.cold(d) if e.split == "eval"][:3000],
            "incitement",
        ),
    ]
    rows = []
    for name, texts, head in sets:
        chosen = flagged(texts, head, classifier, policy)[: args.posts]
        rows.append(compare(classifier, name, chosen, head))
    print(
        f"hardware: {hardware()}; date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; "
        f"model {classifier.version}; 1 ONNX thread\n"
    )
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
