from __future__ import annotations

import numpy as np

from training.calibrate import fit_temperature, operating_point


def test_temperature_recovers_an_overconfident_scale() -> None:
    rng = np.random.default_rng(0)
    true_logits = rng.normal(0, 2, 20000)
    y = (rng.random(20000) < 1 / (1 + np.exp(-true_logits))).astype(np.int64)
    t = fit_temperature(true_logits * 3, y)
    assert abs(t - 3) < 0.2


def test_operating_point_respects_the_false_positive_cap() -> None:
    rng = np.random.default_rng(1)
    y = (rng.random(4000) < 0.5).astype(np.int64)
    p = np.clip(0.5 + (y - 0.5) * 0.3 + rng.normal(0, 0.25, 4000), 0, 1)
    point = operating_point(p, y, max_fpr=0.05, block_precision=0.97)
    flagged = p >= point.review
    assert (flagged & (y == 0)).sum() / (y == 0).sum() <= 0.05
    blocked = p >= point.block
    assert blocked.sum() == 0 or (y[blocked] == 1).mean() >= 0.97
    assert point.block >= point.review
