"""Quality: the shipped ONNX model against the TF-IDF baseline, on every eval split.

For each dataset the baseline is fitted twice: on the same training data as the model's head
(COLD and ToxiCN together for ``incitement``) and on the dataset alone; the model must beat both.
Accuracy and macro-F1 are at 0.5 on calibrated probabilities for both sides; ``flag FPR`` is the
model's false-positive rate at the policy's ``review`` threshold, the rate at which ordinary
content reaches the review queue. Weibo16 is also reported on the eval posts that have no
near-copy (character-trigram Jaccard ≥ ``NEAR_COPY``) among the training posts. Across datasets
(COLD → ToxiCN and back): :mod:`eval.crossdata`.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score
from sklearn.pipeline import Pipeline

from eval import baseline
from service.boilerplate import is_boilerplate
from service.claims import body_chars
from service.classify import Classifier
from service.heads import CLASSIFIER_RISKS, HEADS, Head, Risk
from service.normalise import normalise
from service.policy import Policy
from training import data, originality
from training.recipe import FULL

NEAR_COPY = 0.5
DISCRIMINATION = "歧视"
"""The word the COLD anti-bias proxy selects its safe comments by."""

Floats = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Dataset:
    name: str
    head: Head
    examples: list[data.Example]

    def split(self, name: str) -> tuple[list[str], list[int]]:
        rows = [e for e in self.examples if e.split == name]
        return [normalise(e.text).text for e in rows], [e.label for e in rows]


@dataclass(frozen=True)
class Row:
    dataset: str
    subset: str
    system: str
    n: int
    accuracy: float
    macro_f1: float
    auc: float
    flag_fpr: float | None = None

    def cells(self) -> list[str]:
        fpr = "" if self.flag_fpr is None else f"{self.flag_fpr:.3f}"
        return [
            self.dataset,
            self.subset,
            self.system,
            str(self.n),
            f"{self.accuracy:.4f}",
            f"{self.macro_f1:.4f}",
            f"{self.auc:.4f}",
            fpr,
        ]


HEADER = ["dataset", "subset", "system", "n", "accuracy", "macro-F1", "ROC-AUC", "flag FPR"]


def score(
    dataset: str,
    subset: str,
    system: str,
    y: Sequence[int],
    p: Floats,
    threshold: float | None = None,
) -> Row:
    y_arr = np.asarray(y)
    fpr = None
    if threshold is not None:
        fpr = float(((p >= threshold) & (y_arr == 0)).sum() / max(1, (y_arr == 0).sum()))
    return Row(
        dataset,
        subset,
        system,
        len(y_arr),
        float(accuracy_score(y_arr, p >= 0.5)),
        float(f1_score(y_arr, p >= 0.5, average="macro")),
        float(roc_auc_score(y_arr, p)),
        fpr,
    )


def trigrams(text: str) -> set[str]:
    return {text[i : i + 3] for i in range(max(1, len(text) - 2))}


def without_near_copy(eval_texts: Sequence[str], train_texts: Sequence[str]) -> list[int]:
    """Indices of eval texts whose trigram Jaccard to every training text is below NEAR_COPY."""
    train_sets = [trigrams(t) for t in train_texts]
    keep = []
    for i, t in enumerate(eval_texts):
        s = trigrams(t)
        if all(len(s & u) / max(1, len(s | u)) < NEAR_COPY for u in train_sets):
            keep.append(i)
    return keep


def datasets() -> list[Dataset]:
    from service.settings import get_settings

    d = get_settings().data_dir
    return [
        Dataset("Weibo16", "rumor", data.weibo16(d)),
        Dataset("COLD", "incitement", data.cold(d)),
        # the baseline's anchor is trained on the files as given; the eval split is the same
        Dataset("ToxiCN", "incitement", data.toxicn(d, reporting=True)),
        Dataset(
            "originality",
            "originality_claim",
            originality.build_corpus(d, FULL.seed, FULL.originality_size),
        ),
    ]


def review_threshold(classifier: Classifier, policy: Policy, head: Head) -> float:
    """The policy's review threshold for a head's risk, else the card's operating point."""
    risk = _risk(head)
    if risk is not None:
        return policy.risks[risk].review
    return float(classifier.card["thresholds"][head]["review"])


def blocked(
    policy: Policy, head: Head, p: npt.NDArray[np.floating], texts: Sequence[str]
) -> npt.NDArray[np.bool_] | None:
    """Which of ``texts``, scored ``p`` by ``head``, the policy blocks on the head's risk
    (:meth:`Policy.blocks`); None for a head that blocks nothing by itself (the originality
    claim only feeds the fake-originality check)."""
    risk = _risk(head)
    if risk is None:
        return None
    chars = [body_chars(t) for t in texts]
    return np.array([policy.blocks(risk, float(s), n) for s, n in zip(p, chars, strict=True)])


def _risk(head: Head) -> Risk | None:
    return next((risk for risk, h in CLASSIFIER_RISKS.items() if h == head), None)


class Baselines:
    """The baseline fitted once for each combination of datasets it is asked about."""

    def __init__(self) -> None:
        self._fitted: dict[tuple[str, ...], Pipeline] = {}

    def predict(self, members: Sequence[Dataset], texts: Sequence[str]) -> Floats:
        key = tuple(m.name for m in members)
        if key not in self._fitted:
            tx, ty, cx, cy = [], [], [], []
            for m in members:
                a, b = m.split("train")
                c, e = m.split("calib")
                tx += a
                ty += b
                cx += c
                cy += e
            self._fitted[key] = baseline.fit(tx, ty, cx, cy)
        return baseline.predict(self._fitted[key], texts)


def evaluate(
    classifier: Classifier, policy: Policy, sets: Sequence[Dataset], baselines: Baselines
) -> list[Row]:
    rows: list[Row] = []
    by_head: dict[Head, list[Dataset]] = {h: [s for s in sets if s.head == h] for h in HEADS}

    for ds in sets:
        texts, y = ds.split("eval")
        col = HEADS.index(ds.head)
        p_model = classifier.predict(texts)[:, col].astype(np.float64)
        threshold = review_threshold(classifier, policy, ds.head)
        subsets: list[tuple[str, list[int]]] = [("all", list(range(len(y))))]
        if ds.name == "Weibo16":
            subsets.append(("no near-copy", without_near_copy(texts, ds.split("train")[0])))
        p_same = baselines.predict(by_head[ds.head], texts)
        p_alone = baselines.predict([ds], texts) if len(by_head[ds.head]) > 1 else None
        for subset, idx in subsets:
            ys = [y[i] for i in idx]
            rows.append(score(ds.name, subset, "model (int8 ONNX)", ys, p_model[idx], threshold))
            rows.append(score(ds.name, subset, "baseline, same data", ys, p_same[idx]))
            if p_alone is not None:
                rows.append(score(ds.name, subset, "baseline, dataset alone", ys, p_alone[idx]))
    return rows


@dataclass(frozen=True)
class Proxy:
    """How often content that should not be flagged is flagged, on two in-house proxies.

    - ordinary reposts: non-boilerplate reposts and comments of Weibo16's eval events, a proxy
      for ordinary posts from another collection (rumor head); about half of them answer a
      rumour and may repeat it, so they are also shown for the non-rumour events alone, whose
      reposts repeat no rumour. The same reposts for the originality head: real claims are
      rare among them (a few dozen in the 1.7M), so the share taken for claims is nearly all
      false claims, which the fake-originality check then looks for an earlier copy of;
    - originality claims on ordinary posts: the originality corpus's composed claims whose base
      text is a repost of a non-rumour eval event (rumor head): a notice such as
      "原创，转载请注明出处" makes no post a rumour;
    - rights notices alone, one per claim phrasing of the corpus (rumor head): a post that is
      nothing but its notice;
    - safe comments of another collection (rumor head): COLD's and ToxiCN's eval comments
      labelled neither offensive nor toxic, Weibo and Zhihu comments on race, gender and region
      that the rumor head never saw in any role, the nearest the data here comes to ordinary
      posts from a different collection;
    - ToxiCN "reporting" rows of the eval split: texts that report or criticise discrimination,
      a proxy for comments that speak against bias (incitement head; ToxiCN labels them toxic);
    - COLD's eval comments labelled safe that name discrimination (歧视): the other corpus's
      view of the same thing, since speaking of discrimination is what the held-back
      anti-bias comments do and a surface detector keys on (most COLD comments with the word
      are labelled offensive).
    """

    name: str
    head: Head
    texts: list[str]


def proxies(sets: Sequence[Dataset], sample: int = 5000) -> list[Proxy]:
    from service.settings import get_settings

    d = get_settings().data_dir
    weibo16 = next(s for s in sets if s.head == "rumor")
    rumour_event = {e.group: e.label == 1 for e in weibo16.examples}
    reposts = []
    for r in data.reposts(d):
        if data.split_of(f"weibo16:{r.event}") == "eval" and not is_boilerplate(r.text):
            reposts.append((normalise(r.text).text, rumour_event[r.event]))
    rng = random.Random(0)
    reposts = rng.sample(reposts, min(sample, len(reposts)))
    reporting = data.toxicn_reporting(d)
    toxicn = next(s for s in sets if s.name == "ToxiCN")
    against = [
        normalise(e.text).text
        for e in toxicn.examples
        if e.split == "eval" and e.group in reporting
    ]
    cold = next(s for s in sets if s.name == "COLD")
    safe = [
        normalise(e.text).text
        for ds in (cold, toxicn)
        for e in ds.examples
        if e.split == "eval" and e.label == 0
    ]
    safe_naming = [
        normalise(e.text).text
        for e in cold.examples
        if e.split == "eval" and e.label == 0 and DISCRIMINATION in e.text
    ]
    claims = originality.ordinary_claims(
        next(s for s in sets if s.head == "originality_claim").examples, rumour_event, "eval"
    )
    return [
        Proxy("ordinary reposts (Weibo16 eval events)", "rumor", [t for t, _ in reposts]),
        Proxy(
            "ordinary reposts of non-rumour events only",
            "rumor",
            [t for t, rumour in reposts if not rumour],
        ),
        Proxy(
            "originality claims on ordinary posts (non-rumour eval events)",
            "rumor",
            [normalise(t).text for t in claims],
        ),
        Proxy(
            "rights notices alone (one per claim phrasing)",
            "rumor",
            [normalise(t).text for t in originality.bare_notices()],
        ),
        Proxy("safe comments of another collection (COLD, ToxiCN eval)", "rumor", safe),
        Proxy(
            "ordinary reposts (Weibo16 eval events)", "originality_claim", [t for t, _ in reposts]
        ),
        Proxy("ToxiCN reporting rows (eval)", "incitement", against),
        Proxy("COLD safe comments naming discrimination (eval)", "incitement", safe_naming),
    ]


def proxy_table(
    classifier: Classifier,
    policy: Policy,
    sets: Sequence[Dataset],
    items: Sequence[Proxy],
    baselines: Baselines,
) -> str:
    lines = [
        "| proxy | head | n | model flagged (policy review threshold) | model blocked (policy "
        "block rule) | model ≥ 0.5 | baseline ≥ 0.5 |",
        "|---|---|---|---|---|---|---|",
    ]
    for item in items:
        p_base = baselines.predict([s for s in sets if s.head == item.head], item.texts)
        p = classifier.predict(item.texts)[:, HEADS.index(item.head)]
        review = review_threshold(classifier, policy, item.head)
        stopped = blocked(policy, item.head, p, item.texts)
        share = "" if stopped is None else f"{stopped.mean():.3f}"
        lines.append(
            f"| {item.name} | {item.head} | {len(item.texts)} | "
            f"{(p >= review).mean():.3f} | {share} | {(p >= 0.5).mean():.3f} | "
            f"{(p_base >= 0.5).mean():.3f} |"
        )
    return "\n".join(lines)


def table(rows: Sequence[Row]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(r.cells()) + " |" for r in rows]
    return "\n".join(lines)
