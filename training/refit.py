"""The refit of one head after fine-tuning: its n-gram column fitted again on changed data and
recombined with the encoder's correction. First and foremost the rumor head, taught what
ordinary posts look like with ordinary posts as negatives.

**Why.** The rumor head learns from Weibo16's source posts: rumours reported to Weibo's
false-information platform against posts that are largely news outlets'. Ordinary posts are
neither, and on them the head extrapolates from surface features: exclamation marks and candle
emoji belong to the rumour side of its training data, so "加油!!!" or "太可惜了[蜡烛]" scored
close to 1, and a fifth of the comments on non-rumour events crossed the review threshold.

**What.** The rumor column of the n-gram branch (:mod:`training.wide`: same IDF, same
naive-Bayes weighting, ``C`` chosen on the calibration split) is fitted on the train split's
source posts plus ``n`` ordinary texts labelled 0 (:func:`training.data.ordinary_reposts`:
comments on non-rumour events of the *train* split, so the proxies measured on eval events
stay unseen). The head's logit becomes

    z = a · ngram(x) + b · deep(x) + g

where ``deep(x)`` is the fine-tuned encoder's correction, unchanged, and ``(a, b, g)`` is the
recombination (:func:`recombine`), which is also the head's calibration: the direction ``(a, b)``
from the calibration split's source posts together with ordinary posts of calibration events,
the scale and ``g`` from the source posts alone. In the graph of :class:`training.model.Scorer`
that is ``mix = a/b``, ``head.bias + g/b`` and ``temperature = 1/b``: only float initializers
change, so the same step applies to the PyTorch module during ``make train`` and to an exported
ONNX model whose PyTorch weights are gone (``python -m training.run --refit rumor``).

**Originality notices.** An ordinary post that says "原创，转载请注明出处" is no likelier a
rumour, but the notice's exclamation marks and 转载 sit where 请转发 does, and a bare notice
scored 0.85. Composed claims of the originality corpus whose base text is an ordinary post of a
non-rumour train event (:func:`training.originality.ordinary_claims`) are offered as further
negatives, ``n`` of them for each ``n`` of ``Recipe.claim_negatives`` in turn, each time with as
many rumours of train events given a notice (:func:`training.originality.with_claims`) as
further positives, so that the notice itself is evidence neither way and a rumour does not
escape by carrying one. The refit keeps the first ``n`` under which the claims of
*calibration* events score no higher on average than the ordinary posts of calibration events
(:func:`fit_rumor`).

The encoder itself was fine-tuned without these negatives (on the residual of the n-gram branch
that had none), which is why its correction keeps part of the old habit; fine-tuning with them
needs the pretrained encoder again. What the refit can do without it is weigh the correction
against the n-gram logit on ordinary posts too: on the source posts alone the correction's
weight is set by news and rumours, where it helps, and it carries its habit onto ordinary
posts at full strength.

The same refit serves any head whose training data changed after its model was exported
(:func:`refit_head_exported`): the incitement head's n-gram column was fitted again without
ToxiCN's "reporting" rows (:func:`training.data.toxicn`), with no extra negatives
(``python -m training.run --refit incitement``).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort
import scipy.sparse as sp
from onnx import numpy_helper
from scipy.special import expit
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from service.classify import (
    MODEL_FILE,
    PROBS,
    TOKENIZER_FILE,
    add_output,
    load_tokenizer,
    model_inputs,
)
from service.heads import HEADS, Head
from service.normalise import normalise
from training import data, originality, wide

RUMOR = HEADS.index("rumor")
HEAD_DATA: dict[Head, Callable[[Path], list[data.Example]]] = {
    "rumor": data.weibo16,
    "incitement": lambda d: data.cold(d) + data.toxicn(d),
}
"""The labelled examples a refittable head is trained on (the originality head's corpus is
built with the model's own recipe fields: :func:`splits_of`)."""
TENSORS = ("wide.coef", "wide.bias", "mix", "head.bias", "temperature")
"""The Scorer's tensors the refit changes (names in the PyTorch state and the ONNX graph)."""

Floats = npt.NDArray[np.float32]
Labels = npt.NDArray[np.int64]
Correction = Callable[[Sequence[str]], Floats]
"""The encoder's correction of the refit head for some texts (from the module or the graph)."""


class CorrectionError(ValueError):
    """Next to the refit n-gram column, the encoder's correction points the wrong way."""


@dataclass(frozen=True)
class Refit:
    """A head after the refit: its n-gram column and the recombination."""

    coef: Floats
    bias: float
    c: float
    a: float
    """Weight of the n-gram logit."""
    b: float
    """Weight of the encoder's correction (the head's temperature becomes ``1 / b``)."""
    g: float
    """Intercept."""
    negatives: int
    calib_auc: tuple[float, float]
    """The head's AUC on the calibration split, before and after."""
    head: Head = "rumor"
    claims: int = 0
    """How many of the negatives are originality claims (:func:`fit_rumor`)."""
    claim_probe: tuple[float, float] | None = None
    """Mean probability of the calibration events' claims and ordinary posts."""
    ordinary_calib: tuple[int, float] = (0, 0.0)
    """How many ordinary posts of calibration events the recombination's direction was fitted
    with, and their weight relative to the calibration posts (:func:`recombine`)."""

    def values(self, now: Mapping[str, Floats]) -> dict[str, Floats]:
        """``TENSORS`` with the head refit, from their values ``now`` (the encoder head's
        bias must be the one the correction was measured with)."""
        h = HEADS.index(self.head)
        out = {name: np.array(now[name], dtype=np.float32, copy=True) for name in TENSORS}
        out["wide.coef"][:, h] = self.coef
        out["wide.bias"][h] = self.bias
        out["mix"][h] = self.a / self.b
        out["head.bias"][h] += self.g / self.b
        out["temperature"][h] = 1 / self.b
        return out

    def logits(self, x: sp.csr_matrix, deep: Floats) -> Floats:
        """The refit head's calibrated logits for n-gram rows ``x`` and corrections ``deep``."""
        return np.asarray(self.a * (x @ self.coef + self.bias) + self.b * deep + self.g)

    def card(self) -> dict[str, Any]:
        probe = {}
        if self.claim_probe is not None:
            probe = {
                "claim_negatives": self.claims,
                "calib_claims_mean": round(self.claim_probe[0], 4),
                "calib_ordinary_mean": round(self.claim_probe[1], 4),
            }
        n, weight = self.ordinary_calib
        return {
            "negatives": self.negatives,
            **probe,
            "recombination_ordinary": n,
            "recombination_weight": weight,
            "c": self.c,
            "ngram_weight": round(self.a, 4),
            "encoder_weight": round(self.b, 4),
            "intercept": round(self.g, 4),
            "calib_auc_before": round(self.calib_auc[0], 4),
            "calib_auc_after": round(self.calib_auc[1], 4),
        }


def fit(
    posts: Mapping[str, tuple[Sequence[str], Labels]],
    negatives: Sequence[str],
    idf: Floats,
    deep_calib: Floats,
    before_calib: Floats,
    grid: Sequence[float],
    head: Head = "rumor",
    corrected: bool = True,
    positives: Sequence[str] = (),
    ordinary: tuple[sp.csr_matrix, Floats] | None = None,
    ordinary_weight: float = 0.0,
) -> Refit:
    """Fit ``head``'s n-gram column on the train posts plus the ``negatives`` and ``positives``
    (``C`` from ``grid`` by calibration loss), then ``(a, b, g)`` (:func:`recombine`) on the
    calibration posts and the ``ordinary`` posts of calibration events (their n-gram rows of
    :func:`training.wide.design` and corrections), which weigh ``ordinary_weight`` times as
    much. ``posts``: normalised texts and labels of the ``train`` and ``calib`` splits;
    ``deep_calib`` and ``before_calib``: the encoder's correction and the head's logit before
    the refit, on the calibration posts; ``corrected``: False when the correction was switched
    off for the head (``training.run.gate_heads``; an int8 graph's then only carries
    quantisation noise)."""
    (train, y_train), (calib, y_calib) = posts["train"], posts["calib"]
    extra = [*negatives, *positives]
    x = sp.vstack([wide.design(train, idf), wide.design(extra, idf)]).tocsr()
    y = np.concatenate(
        [y_train, np.zeros(len(negatives), dtype=np.int64), np.ones(len(positives), np.int64)]
    )
    x_calib = wide.design(calib, idf)
    c = wide.choose_c(x, y, x_calib, y_calib, grid)
    coef, bias = wide.fit(x, y, c)
    ngram = x_calib @ coef + bias
    held = (0, 0.0)
    if corrected and np.ptp(deep_calib) > 1e-6:
        rows = None if ordinary is None else (ordinary[0] @ coef + bias, ordinary[1])
        a, b, g = recombine(ngram, deep_calib, y_calib, rows, ordinary_weight)
        if ordinary is not None and ordinary_weight > 0:
            held = (ordinary[0].shape[0], ordinary_weight)
    else:  # switched off: a constant, for the graph's head bias to absorb
        lr = LogisticRegression(C=100.0).fit(ngram[:, None], y_calib)
        a, b, g = float(lr.coef_[0][0]), 1.0, float(lr.intercept_[0] - deep_calib[0])
    z = a * ngram + b * deep_calib + g
    auc = (float(roc_auc_score(y_calib, before_calib)), float(roc_auc_score(y_calib, z)))
    return Refit(coef, bias, c, a, b, g, len(negatives), auc, head, ordinary_calib=held)


def recombine(
    ngram: Floats,
    deep: Floats,
    y: Labels,
    ordinary: tuple[Floats, Floats] | None,
    weight: float,
) -> tuple[float, float, float]:
    """The recombination ``(a, b, g)`` of a head's n-gram logit and the encoder's correction
    into ``a · ngram + b · deep + g``, from the calibration posts' ``ngram``, ``deep`` and labels
    ``y``, and the n-gram logits and corrections of ``ordinary`` posts (negatives; None for
    none).

    Two logistic regressions, both nearly unregularised (a few numbers on a few hundred rows):

    1. the direction ``(a₁, b₁)`` on the calibration posts (weight 1 each) and the ordinary
       posts, which together weigh ``weight`` times as much as the calibration posts: the
       ordinary posts say how far each branch may be trusted on text unlike the labelled posts;
    2. the scale ``k`` and intercept ``g`` of ``s = a₁ · ngram + b₁ · deep`` on the calibration
       posts alone, so that the probabilities stay calibrated on the labelled posts; then
       ``(a, b) = k · (a₁, b₁)``.

    With no ordinary posts or ``weight`` 0 the first step alone decides, and the second only
    undoes its regularisation. Raises :class:`CorrectionError` when the correction comes out
    with a weight of zero or less."""
    x, target, w = np.c_[ngram, deep], y, np.ones(len(y))
    if ordinary is not None and weight > 0:
        o_ngram, o_deep = ordinary
        x = np.r_[x, np.c_[o_ngram, o_deep]]
        target = np.r_[y, np.zeros(len(o_ngram), dtype=y.dtype)]
        w = np.r_[w, np.full(len(o_ngram), weight * len(y) / len(o_ngram))]
    direction = LogisticRegression(C=100.0).fit(x, target, sample_weight=w).coef_[0]
    s = np.c_[ngram, deep] @ direction
    lr = LogisticRegression(C=100.0).fit(s[:, None], y)
    k, g = float(lr.coef_[0][0]), float(lr.intercept_[0])
    a, b = k * float(direction[0]), k * float(direction[1])
    if b <= 0:
        raise CorrectionError(f"the encoder's correction got weight {b:.3f}: it no longer helps")
    return a, b, g


@dataclass(frozen=True)
class Claims:
    """Originality claims on ordinary posts, for the rumor refit (:func:`fit_rumor`)."""

    train: Sequence[str]
    """Claims of train events, in the order they are taken as negatives."""
    rumours: Sequence[str]
    """Rumours of train events with a notice, in the order they are taken as positives."""
    calib: Sequence[str]
    """Claims of calibration events."""
    ordinary: Sequence[str]
    """Ordinary posts of calibration events, the level the claims are held to."""
    counts: Sequence[int]
    """The numbers of claims tried, in order."""


def claims(
    data_dir: Path,
    corpus: Sequence[data.Example],
    counts: Sequence[int],
    ordinary: Sequence[str],
    seed: int,
) -> Claims:
    """The claims of the originality ``corpus`` on ordinary posts, normalised, held to the
    ``ordinary`` posts of calibration events (normalised: :func:`negatives` of ``calib``)."""
    weibo16 = data.weibo16(data_dir)
    rumour = {e.group: e.label == 1 for e in weibo16}

    def of(split: data.Split) -> list[str]:
        return [normalise(t).text for t in originality.ordinary_claims(corpus, rumour, split)]

    rng = random.Random(f"{seed}:claims")
    train = of("train")
    rng.shuffle(train)
    rumours = [e.text for e in weibo16 if e.split == "train" and e.label == 1]
    rng.shuffle(rumours)
    noticed = originality.with_claims(rumours[: max(counts, default=0)], rng)
    return Claims(
        train,
        [normalise(t).text for t in noticed],
        of("calib"),
        ordinary,
        counts,
    )


def fit_rumor(
    posts: Mapping[str, tuple[Sequence[str], Labels]],
    ordinary: Sequence[str],
    offered: Claims,
    correction: Correction,
    idf: Floats,
    deep_calib: Floats,
    before_calib: Floats,
    grid: Sequence[float],
    corrected: bool = True,
    ordinary_weight: float = 0.0,
) -> Refit:
    """The rumor head's :func:`fit` with the ``ordinary`` negatives and the first number of
    ``offered`` claims (as negatives, with as many noticed rumours as positives) under which
    the calibration events' claims score no higher on average than their ordinary posts (the
    last number tried if none does). Those ordinary posts of calibration events also take part
    in the recombination with ``ordinary_weight`` (:func:`recombine`)."""
    # each probe's n-gram rows and corrections, once: only the column changes between fits
    probes = [
        (wide.design(t, idf), correction(t)) if t else None
        for t in (offered.calib, offered.ordinary)
    ]
    for n in offered.counts:
        negatives = [*ordinary, *offered.train[:n]]
        fitted = fit(
            posts,
            negatives,
            idf,
            deep_calib,
            before_calib,
            grid,
            "rumor",
            corrected,
            offered.rumours[:n],
            probes[1],
            ordinary_weight,
        )
        claim_mean, ordinary_mean = (
            0.0 if probe is None else float(np.mean(expit(fitted.logits(*probe))))
            for probe in probes
        )
        if claim_mean <= ordinary_mean:
            break
    taken = min(n, len(offered.train))
    return replace(
        fitted, negatives=len(ordinary), claims=taken, claim_probe=(claim_mean, ordinary_mean)
    )


def splits(data_dir: Path, head: Head = "rumor") -> dict[str, tuple[list[str], Labels]]:
    """The normalised train and calibration texts of ``head``'s data, with their labels."""
    return splits_of(HEAD_DATA[head](data_dir))


def splits_of(posts: Sequence[data.Example]) -> dict[str, tuple[list[str], Labels]]:
    """The normalised train and calibration texts of ``posts``, with their labels."""
    return {
        s: (
            [normalise(e.text).text for e in posts if e.split == s],
            np.array([e.label for e in posts if e.split == s], dtype=np.int64),
        )
        for s in ("train", "calib")
    }


def negatives(
    data_dir: Path, n: int, seed: int, limit: int | None = None, split: data.Split = "train"
) -> list[str]:
    """The ``n`` normalised ordinary texts of ``split``."""
    return [normalise(t).text for t in data.ordinary_reposts(data_dir, split, n, seed, limit)]


def refit_head_exported(
    model_dir: Path,
    head: Head,
    posts: Mapping[str, tuple[Sequence[str], Labels]],
    negatives: Sequence[str],
    grid: Sequence[float],
    corrected: bool = True,
    offered: Claims | None = None,
    ordinary_weight: float = 0.0,
) -> tuple[Refit, bool]:
    """Refit ``head`` of the exported model in ``model_dir`` in place (:func:`fit`, or
    :func:`fit_rumor` with ``ordinary_weight`` when claims are ``offered``); its IDF and the
    encoder's correction are read from the graph. The rewritten graph is checked against the
    refit on the calibration posts before it replaces the file.

    Returns the refit and whether the head keeps the encoder's correction: one that comes out
    pointing the wrong way (:class:`CorrectionError`) is switched off in the graph and the head
    is fitted again as its n-gram branch alone, as ``training.run.refit_rumor`` does in
    training."""
    path = model_dir / MODEL_FILE
    h = HEADS.index(head)
    proto = onnx.load(str(path))
    inits = {i.name: i for i in proto.graph.initializer}
    now = {name: numpy_helper.to_array(inits[name]) for name in (*TENSORS, "wide.idf")}
    calib = posts["calib"][0]
    idf = now["wide.idf"]
    x_calib = wide.design(calib, idf)
    ngram = x_calib @ now["wide.coef"][:, h] + now["wide.bias"][h]
    deep, _ = _run(proto, model_dir, calib, h)
    before = (now["mix"][h] * ngram + deep) / now["temperature"][h]

    def fit_head(deep: Floats, corrected: bool) -> Refit:
        if offered is None:
            return fit(posts, negatives, idf, deep, before, grid, head, corrected)

        def correction(texts: Sequence[str]) -> Floats:
            return _run(proto, model_dir, texts, h)[0]

        return fit_rumor(
            posts, negatives, offered, correction, idf, deep, before, grid, corrected,
            ordinary_weight,
        )  # fmt: skip

    try:
        fitted = fit_head(deep, corrected)
    except CorrectionError:
        _switch_off_correction(inits, h)
        deep, _ = _run(proto, model_dir, calib, h)
        fitted, corrected = fit_head(deep, False), False
    for name, value in fitted.values(now).items():
        inits[name].CopyFrom(numpy_helper.from_array(value, name))
    _, after = _run(proto, model_dir, calib, h)
    # same batches as the correction was measured in: int8 activations are quantised per batch
    worst = float(np.abs(after - expit(fitted.logits(x_calib, deep))).max())
    if worst > 1e-4:
        raise RuntimeError(f"{path}: the rewritten graph disagrees with the refit by {worst:.1e}")
    onnx.save(proto, str(path))
    return fitted, corrected


def _switch_off_correction(inits: Mapping[str, onnx.TensorProto], h: int) -> None:
    """Set column ``h`` of the graph's int8 encoder head to its zero point: the correction of
    head ``h`` is then its bias alone, a constant the refit absorbs."""
    weight, zero = "head.weight_Transposed_quantized", "head.weight_Transposed_zero_point"
    values = numpy_helper.to_array(inits[weight]).copy()
    values[:, h] = numpy_helper.to_array(inits[zero])
    inits[weight].CopyFrom(numpy_helper.from_array(values, weight))


def _run(
    proto: onnx.ModelProto, model_dir: Path, texts: Sequence[str], h: int
) -> tuple[Floats, Floats]:
    """Column ``h`` of the encoder's correction (the output of the node that adds
    ``head.bias``) and of the probabilities, for ``texts`` in batches of 64."""
    probe = onnx.ModelProto()
    probe.CopyFrom(proto)
    (correction,) = [n.output[0] for n in probe.graph.node if "head.bias" in n.input]
    name = add_output(probe, correction)
    session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    tok = load_tokenizer(model_dir / TOKENIZER_FILE)
    out = [
        session.run([name, PROBS], dict(model_inputs(tok, texts[s : s + 64])))
        for s in range(0, len(texts), 64)
    ]
    deep, probs = (np.concatenate([o[k][:, h] for o in out]) for k in (0, 1))
    return deep.astype(np.float32), probs.astype(np.float32)
