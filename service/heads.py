"""The classifier's heads and the risk scores of the score record."""

from __future__ import annotations

from typing import Literal, get_args

Head = Literal["rumor", "incitement", "originality_claim"]
HEADS: tuple[Head, ...] = get_args(Head)
"""Classifier outputs, in the order of the model's ``probs`` columns."""

Risk = Literal["rumor", "incitement", "fake_originality", "coordination"]
RISKS: tuple[Risk, ...] = get_args(Risk)
"""The risk scores every score record carries."""

CLASSIFIER_RISKS: dict[Risk, Head] = {"rumor": "rumor", "incitement": "incitement"}
"""Risks whose score is a classifier head's probability."""
