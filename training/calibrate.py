"""Calibration and operating points, fitted on the calibration split.

Temperature scaling: one ``T_h`` per head minimising the log loss of ``sigmoid(z / T_h)``; it
keeps the ranking (AUC) and the 0.5 decision and makes the scores usable as probabilities.

Operating points, per head, on the calibrated scores:

- ``review``: 0.5, the decision of least expected error on calibrated probabilities when a
  missed risk and a needless review cost the same, raised if needed until the false-positive
  rate on the calibration split is at most ``max_fpr`` (default 10%): a trust team reviews what
  crosses it, and ordinary posts must not drown the queue. The calibration split's own most
  accurate threshold is not taken: on the rumor head's 373 posts accuracy stays within six
  posts of its best from 0.30 to 0.75, and that maximum moved from 0.44 to 0.63 and back to
  0.49 across refits that changed the head very little.
- ``block``: the lowest threshold whose precision on the calibration split is at least
  ``block_precision`` (default 0.97), never below ``review``, and reached by at most
  ``max_ordinary_block`` (default 1%) of ``ordinary`` posts when they are given: comments on
  non-rumour events of the calibration split (:func:`training.data.ordinary_reposts`). A block
  stops a post from going out, and on the publish path nearly every post is ordinary; the
  calibration split is half risks, so its precision says little of how many ordinary posts a
  threshold stops. The rumor head's precision-only block (0.638) stopped 3.3% of them and 5.0%
  of the eval split's non-rumours.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Floats = npt.NDArray[np.float32] | npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]

NEVER = 1.01
"""A threshold no probability reaches."""
EVEN_ODDS = 0.5
"""Where a calibrated probability says a risk is as likely as not."""


def log_loss(z: Floats, y: Ints, t: float) -> float:
    s = z / t
    # log(1 + e^s) - y s, written stably
    return float(np.mean(np.logaddexp(0.0, s) - y * s))


def fit_temperature(z: Floats, y: Ints) -> float:
    """The temperature in [0.05, 20] that minimises the log loss (golden-section on log T)."""
    lo, hi = np.log(0.05), np.log(20.0)
    g = (np.sqrt(5) - 1) / 2
    a, b = hi - g * (hi - lo), lo + g * (hi - lo)
    for _ in range(60):
        if log_loss(z, y, float(np.exp(a))) < log_loss(z, y, float(np.exp(b))):
            hi, b = b, a
            a = hi - g * (hi - lo)
        else:
            lo, a = a, b
            b = lo + g * (hi - lo)
    return float(np.exp((lo + hi) / 2))


@dataclass(frozen=True)
class OperatingPoint:
    review: float
    block: float
    max_fpr: float
    block_precision: float
    max_ordinary_block: float | None = None
    """The cap on ordinary posts blocked, when the block was held to one."""
    ordinary_posts: int | None = None
    """How many ordinary posts the cap was measured on."""


def operating_point(
    p: Floats,
    y: Ints,
    max_fpr: float = 0.10,
    block_precision: float = 0.97,
    ordinary: Floats | None = None,
    max_ordinary_block: float = 0.01,
) -> OperatingPoint:
    """The head's operating point from its calibrated scores ``p`` of the calibration split
    (labels ``y``) and, when given, of ``ordinary`` posts (module docstring)."""
    others = np.zeros(0) if ordinary is None else np.asarray(ordinary)
    capped = len(others) > 0  # an empty set holds nothing back
    candidates = np.unique(np.round(np.concatenate([p, [EVEN_ODDS, NEVER]]), 4))
    neg = max(1, int((y == 0).sum()))
    # the false-positive rate only falls as the threshold rises: the first that meets the cap
    review = next(
        float(t)
        for t in candidates[candidates >= EVEN_ODDS]
        if float(((p >= t) & (y == 0)).sum()) / neg <= max_fpr
    )
    block = NEVER
    # the ordinary posts' scores are candidates too: the cap may fall between two calib scores
    above = np.unique(np.round(np.concatenate([candidates, others]), 4))
    for t in above[above >= review]:
        flagged = p >= t
        if (
            flagged.sum()
            and float((y[flagged] == 1).mean()) >= block_precision
            and (not capped or float((others >= t).mean()) <= max_ordinary_block)
        ):
            block = float(t)
            break
    return OperatingPoint(
        review=review,
        block=max(block, review),
        max_fpr=max_fpr,
        block_precision=block_precision,
        max_ordinary_block=max_ordinary_block if capped else None,
        ordinary_posts=len(others) if capped else None,
    )
