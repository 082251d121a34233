"""The refit of one head (training/refit.py): the rumor head's with ordinary negatives, on small
made-up data."""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np
import pytest
from scipy.special import expit

from service.heads import HEADS, Head
from training import refit, wide

RUMOURS = [
    "震惊!!!{}都转疯了,赶紧告诉家人!!!",
    "紧急扩散!!!{}出事了,速看!!",
    "求证!!!{}要封城了!!!",
]
NEWS = ["【{}】记者从有关部门获悉,相关工作正在推进。", "据新华社消息,{}今日召开发布会。"]
CHATTER = ["{}加油!!!", "太可惜了!!!{}", "{}好开心!!!!"]
PLACES = ["北京", "上海", "广州", "深圳", "成都", "武汉", "南京", "杭州", "西安", "重庆"]


def posts(rng: random.Random, n: int) -> tuple[list[str], np.ndarray]:
    texts, labels = [], []
    for _ in range(n):
        label = rng.random() < 0.5
        template = rng.choice(RUMOURS if label else NEWS)
        texts.append(template.format(rng.choice(PLACES) + str(rng.randrange(100))))
        labels.append(int(label))
    return texts, np.array(labels, dtype=np.int64)


def chatter(rng: random.Random, n: int) -> list[str]:
    return [rng.choice(CHATTER).format(rng.choice(PLACES)) for _ in range(n)]


def test_ordinary_negatives_lower_chatter_and_keep_the_posts_apart() -> None:
    rng = random.Random(0)
    data = {"train": posts(rng, 200), "calib": posts(rng, 80)}
    idf = wide.idf_table(data["train"][0])
    # every seventh calibration label flipped, which only the encoder's correction knows of
    y = data["calib"][1]
    y = np.where(np.arange(80) % 7 == 0, 1 - y, y)
    data["calib"] = (data["calib"][0], y)
    deep = (2 * y - 1 + np.random.default_rng(0).normal(size=80)).astype(np.float32)
    before = deep.copy()
    held = chatter(rng, 50)

    def chatter_logits(fitted: refit.Refit) -> np.ndarray:
        return fitted.logits(wide.design(held, idf), np.zeros(len(held), dtype=np.float32))

    without = refit.fit(data, [], idf, deep, before, [1.0, 4.0])
    with_them = refit.fit(data, chatter(rng, 100), idf, deep, before, [1.0, 4.0])
    assert with_them.negatives == 100 and without.negatives == 0
    assert without.ordinary_calib == (0, 0.0)
    weighed = refit.fit(
        data, chatter(rng, 100), idf, deep, before, [1.0, 4.0],
        ordinary=(wide.design(held, idf), np.ones(len(held), dtype=np.float32)),
        ordinary_weight=1.0,
    )  # fmt: skip
    assert weighed.ordinary_calib == (len(held), 1.0)
    assert weighed.card()["recombination_ordinary"] == len(held)
    # the correction fires on the ordinary posts: weighed on them, it counts for less
    assert weighed.b / weighed.a < with_them.b / with_them.a
    # exclamation marks alone no longer make a rumour
    assert np.mean(chatter_logits(without) > 0) > 0.9
    assert np.mean(chatter_logits(with_them) < 0) > 0.9
    assert with_them.calib_auc[1] > 0.9


def test_ordinary_posts_of_calibration_events_temper_the_correction_that_fires_on_them() -> None:
    """A correction that helps on the labelled posts but fires on ordinary posts gets less weight
    once ordinary posts take part in the recombination; the scale and intercept still come from
    the labelled posts, so the head stays calibrated on them."""
    rng = np.random.default_rng(4)
    y = (rng.random(300) < 0.5).astype(np.int64)
    ngram = (3 * y - 1.5 + rng.normal(size=300)).astype(np.float32)
    deep = (3 * y - 1.5 + rng.normal(size=300)).astype(np.float32)
    # ordinary posts: the n-gram branch knows them, the correction reads them as rumours
    ordinary = (
        rng.normal(-2, 1, 1000).astype(np.float32),
        rng.normal(2, 1, 1000).astype(np.float32),
    )

    def on(fit: tuple[float, float, float], x: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        a, b, g = fit
        return np.asarray(expit(a * x[0] + b * x[1] + g))

    plain = refit.recombine(ngram, deep, y, None, 0.0)
    assert refit.recombine(ngram, deep, y, ordinary, 0.0) == pytest.approx(plain)
    weighed = refit.recombine(ngram, deep, y, ordinary, 1.0)
    assert weighed[1] / weighed[0] < plain[1] / plain[0] / 2
    assert on(weighed, ordinary).mean() < on(plain, ordinary).mean() / 2
    # calibrated on the labelled posts: mean probability = share of positives
    assert on(weighed, (ngram, deep)).mean() == pytest.approx(y.mean(), abs=2e-3)
    with pytest.raises(refit.CorrectionError):
        refit.recombine(ngram, -deep, y, None, 0.0)


def claims(rng: random.Random, n: int) -> list[str]:
    """Ordinary chatter with an originality notice, whose 转载 and "!!!" read like a rumour."""
    return [f"{text}原创!!!转载请注明出处!!!" for text in chatter(rng, n)]


def test_the_rumor_refit_takes_claims_until_they_score_like_ordinary_posts() -> None:
    rng = random.Random(2)
    data = {"train": posts(rng, 200), "calib": posts(rng, 80)}
    # a notice's words in some rumours: left alone, the head takes them for a rumour's
    train, y = data["train"]
    train = [t + "转载请注明出处!!!" if label else t for t, label in zip(train, y, strict=True)]
    data["train"] = (train, y)
    idf = wide.idf_table(train)
    deep = np.zeros(80, dtype=np.float32)
    ordinary = chatter(rng, 100)

    def none(texts: Sequence[str]) -> np.ndarray:
        return np.zeros(len(texts), dtype=np.float32)

    # the rumours with a notice are left out here (see the next test)
    offered = refit.Claims(claims(rng, 60), [], claims(rng, 30), chatter(rng, 30), (0, 5, 20, 60))
    fitted = refit.fit_rumor(
        data, ordinary, offered, none, idf, deep, deep, [1.0, 4.0], False, ordinary_weight=1.0
    )
    assert fitted.claims > 0 and fitted.negatives == len(ordinary)
    # with the correction switched off there is nothing to weigh
    assert fitted.ordinary_calib == (0, 0.0)
    assert fitted.claim_probe is not None
    claim_mean, ordinary_mean = fitted.claim_probe
    assert claim_mean <= ordinary_mean
    without = refit.fit(data, ordinary, idf, deep, deep, [1.0, 4.0], corrected=False)
    probe = wide.design(offered.calib, idf)
    assert np.mean(without.logits(probe, none(offered.calib))) > 0
    assert fitted.card()["claim_negatives"] == fitted.claims
    # claims that already score as the ordinary posts do take none
    calm = refit.Claims(offered.train, [], offered.ordinary, offered.ordinary, (0, 5, 20))
    fitted = refit.fit_rumor(data, ordinary, calm, none, idf, deep, deep, [1.0, 4.0], False)
    assert fitted.claims == 0


def test_rumours_with_a_notice_keep_the_notice_from_lowering_a_rumour() -> None:
    """Claims on ordinary posts alone teach the head that a notice means no rumour; as many
    rumours with the notice as positives take that away."""
    rng = random.Random(3)
    data = {"train": posts(rng, 200), "calib": posts(rng, 80)}
    idf = wide.idf_table(data["train"][0])
    zeros = np.zeros(80, dtype=np.float32)
    rumours = [t for t, label in zip(*posts(rng, 200), strict=True) if label]
    noticed = [f"{t}原创!!!转载请注明出处!!!" for t in rumours]
    held = [f"{t}原创!!!转载请注明出处!!!" for t in rumours[:20]]
    only = refit.fit(data, claims(rng, 60), idf, zeros, zeros, [1.0, 4.0], corrected=False)
    both = refit.fit(
        data, claims(rng, 60), idf, zeros, zeros, [1.0, 4.0], corrected=False,
        positives=noticed[20:80],
    )  # fmt: skip

    def shift(fitted: refit.Refit) -> float:
        """How much the notice moves the held rumours' logits."""
        plain = fitted.logits(wide.design(rumours[:20], idf), np.zeros(20, dtype=np.float32))
        with_it = fitted.logits(wide.design(held, idf), np.zeros(20, dtype=np.float32))
        return float(np.mean(with_it - plain))

    assert shift(only) < -1
    assert abs(shift(both)) < abs(shift(only)) / 2


@pytest.mark.parametrize("head", ["rumor", "incitement"])
def test_the_graph_values_compute_the_refit_logits(head: Head) -> None:
    """The Scorer computes (mix · ngram + deep + head bias) / temperature: with the values the
    refit writes, that is the refit's own a · ngram + b · deep + g."""
    rng = np.random.default_rng(1)
    h = HEADS.index(head)
    now = {
        "wide.coef": rng.normal(size=(16, len(HEADS))).astype(np.float32),
        "wide.bias": rng.normal(size=len(HEADS)).astype(np.float32),
        "mix": rng.uniform(0.5, 2, size=len(HEADS)).astype(np.float32),
        "head.bias": rng.normal(size=len(HEADS)).astype(np.float32),
        "temperature": rng.uniform(0.5, 2, size=len(HEADS)).astype(np.float32),
    }
    fitted = refit.Refit(
        rng.normal(size=16).astype(np.float32), 0.3, 4.0, 1.4, 1.7, -0.6, 10, (0.9, 0.9), head
    )
    new = fitted.values(now)
    x = rng.uniform(size=(5, 16)).astype(np.float32)
    correction = rng.normal(size=5).astype(np.float32)  # the encoder's, measured with now's bias
    ngram = x @ new["wide.coef"][:, h] + new["wide.bias"][h]
    deep = correction - now["head.bias"][h] + new["head.bias"][h]
    graph = (new["mix"][h] * ngram + deep) / new["temperature"][h]
    assert np.allclose(graph, fitted.logits(x, correction), atol=1e-5)
    # the other heads are untouched
    others = [i for i in range(len(HEADS)) if i != h]
    for name, value in new.items():
        assert np.array_equal(value[..., others], now[name][..., others])
