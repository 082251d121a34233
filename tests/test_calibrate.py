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


def test_review_is_even_odds_when_the_cap_allows_whatever_the_most_accurate_threshold() -> None:
    # positives crowd 0.3-0.5, so the calibration split alone would put the review point at 0.3
    p = np.array([0.1] * 50 + [0.35] * 30 + [0.4] * 5 + [0.7] * 40 + [0.2] * 5)
    y = np.array([0] * 50 + [1] * 30 + [0] * 5 + [1] * 40 + [0] * 5, dtype=np.int64)
    accuracy = {t: np.mean((p >= t) == (y == 1)) for t in (0.35, 0.5)}
    assert accuracy[0.35] > accuracy[0.5]
    assert operating_point(p, y).review == 0.5


def test_review_rises_to_the_first_threshold_under_the_cap() -> None:
    rng = np.random.default_rng(2)
    y = (rng.random(2000) < 0.5).astype(np.int64)
    p = np.clip(0.5 + (y - 0.5) * 0.2 + rng.normal(0, 0.3, 2000), 0, 1)
    neg = (y == 0).sum()
    assert ((p >= 0.5) & (y == 0)).sum() / neg > 0.05
    review = operating_point(p, y, max_fpr=0.05).review
    below = np.round(p, 4)[np.round(p, 4) < review].max()
    assert ((p >= review) & (y == 0)).sum() / neg <= 0.05
    assert ((p >= below) & (y == 0)).sum() / neg > 0.05


def test_block_rises_until_few_ordinary_posts_reach_it() -> None:
    rng = np.random.default_rng(3)
    y = (rng.random(2000) < 0.5).astype(np.int64)
    p = np.clip(0.5 + (y - 0.5) * 0.6 + rng.normal(0, 0.1, 2000), 0, 1)
    # ordinary posts that the head often mistakes for risks: a tail reaching past 0.9
    ordinary = rng.beta(1, 6, 5000) ** 0.5
    free = operating_point(p, y)
    capped = operating_point(p, y, ordinary=ordinary, max_ordinary_block=0.01)
    assert (ordinary >= free.block).mean() > 0.01
    assert (ordinary >= capped.block).mean() <= 0.01
    assert capped.block > free.block
    assert capped.review == free.review
    assert (y[p >= capped.block] == 1).mean() >= 0.97
    assert capped.max_ordinary_block == 0.01 and free.max_ordinary_block is None
    assert capped.ordinary_posts == 5000 and free.ordinary_posts is None


def test_an_ordinary_cap_that_nothing_meets_never_blocks() -> None:
    p = np.array([0.2, 0.3, 0.8, 0.9])
    y = np.array([0, 0, 1, 1], dtype=np.int64)
    assert operating_point(p, y, ordinary=np.array([1.0, 1.0]), max_ordinary_block=0.01).block > 1
    assert operating_point(p, y, ordinary=np.array([])).block == operating_point(p, y).block
