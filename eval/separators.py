"""Separators between Chinese characters: how many flagged posts stay flagged once spread out.

``python -m eval.separators [--posts N]``

For each dataset of :func:`eval.quality.datasets`, the eval posts that the shipped model flags on
the dataset's head at the policy's review threshold (:func:`eval.quality.review_threshold`; the
card's for the originality claim) are written again with one separator between every two
Chinese characters next to each other ("求扩散" → "求/扩/散"), as a producer who wants to slip
past the model would write them, normalised as the service does and scored again. The table
gives, for each separator, the share of those posts still flagged: 100% where normalisation
reads the spread-out post as the post itself. ``--posts`` keeps the first N flagged posts of
each dataset (all by default). Prints hardware, date and model version, and one markdown table.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from eval.quality import Dataset, datasets, review_threshold
from eval.speed import hardware
from service.classify import Classifier, require_model
from service.cli.parser import positive_int
from service.heads import HEADS, Head
from service.normalise import HAN, normalise
from service.policy import Policy, load_policy
from service.settings import settings_or_exit
from training.data import require

SEPARATORS = ("/", "-", ".", " ", "*", "|", "、")
_BETWEEN = re.compile(rf"(?<=[{HAN}])(?=[{HAN}])")


def spread(text: str, separator: str) -> str:
    """``text`` with ``separator`` between every two Chinese characters next to each other."""
    return _BETWEEN.sub(separator, text)


@dataclass(frozen=True)
class Row:
    dataset: str
    head: Head
    threshold: float
    posts: int
    still_flagged: dict[str, float]
    """By separator, the share of the flagged posts still flagged once spread out."""


def flagged(
    classifier: Classifier, texts: Sequence[str], head: Head, threshold: float
) -> list[str]:
    """The ``texts``, as written, whose normalised form reaches ``threshold`` on ``head``."""
    kept = [t for t in texts if normalise(t).text]
    p = classifier.predict([normalise(t).text for t in kept])[:, HEADS.index(head)]
    return [t for t, s in zip(kept, p, strict=True) if s >= threshold]


def measure(classifier: Classifier, policy: Policy, ds: Dataset, posts: int | None = None) -> Row:
    threshold = review_threshold(classifier, policy, ds.head)
    texts = [e.text for e in ds.examples if e.split == "eval"]
    chosen = flagged(classifier, texts, ds.head, threshold)[:posts]
    col = HEADS.index(ds.head)
    still = {}
    for sep in SEPARATORS:
        spread_out = [normalise(spread(t, sep)).text for t in chosen]
        p = classifier.predict(spread_out)[:, col] if chosen else np.zeros(0)
        still[sep] = float((p >= threshold).mean()) if chosen else 1.0
    return Row(ds.name, ds.head, threshold, len(chosen), still)


def table(rows: Sequence[Row]) -> str:
    names = [repr(s).replace("|", "\\|") for s in SEPARATORS]
    lines = [
        "| dataset (eval) | head | review threshold | posts flagged | "
        + " | ".join(f"still flagged, {n}" for n in names)
        + " |",
        "|---|---|---:|---:|" + "---:|" * len(SEPARATORS),
    ]
    for r in rows:
        shares = " | ".join(f"{r.still_flagged[s]:.1%}" for s in SEPARATORS)
        lines.append(f"| {r.dataset} | {r.head} | {r.threshold:.4f} | {r.posts} | {shares} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.separators", description=__doc__)
    parser.add_argument(
        "--posts", type=positive_int, default=None, help="flagged posts per dataset"
    )
    args = parser.parse_args(argv)
    settings = settings_or_exit(parser.prog)
    require(settings.data_dir)
    classifier = Classifier(require_model(settings.model_dir), threads=2)
    policy = load_policy(settings.policy_file)
    rows = [measure(classifier, policy, ds, args.posts) for ds in datasets()]
    print(
        f"hardware: {hardware()}; date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; "
        f"model {classifier.version}; policy {policy.version}\n"
    )
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
