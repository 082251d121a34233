"""The classical baseline: character 1-3-gram TF-IDF + logistic regression.

scikit-learn's exact n-gram vocabulary (no hashing), sublinear term frequency, L2 norm;
``C`` is chosen from ``C_GRID`` by log loss on the calibration split, as the model's own
choices are. Texts are normalised as the model's are, so both see the same characters.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from sklearn.pipeline import Pipeline, make_pipeline

C_GRID = (1.0, 4.0, 16.0)


def fit(
    train_x: Sequence[str],
    train_y: Sequence[int],
    calib_x: Sequence[str],
    calib_y: Sequence[int],
) -> Pipeline:
    best: tuple[float, Pipeline] | None = None
    for c in C_GRID:
        model = make_pipeline(
            TfidfVectorizer(analyzer="char", ngram_range=(1, 3), sublinear_tf=True),
            LogisticRegression(C=c, max_iter=3000),
        ).fit(list(train_x), list(train_y))
        loss = log_loss(list(calib_y), model.predict_proba(list(calib_x))[:, 1], labels=[0, 1])
        if best is None or loss < best[0]:
            best = (loss, model)
    assert best is not None
    return best[1]


def predict(model: Pipeline, texts: Sequence[str]) -> npt.NDArray[np.float64]:
    return np.asarray(model.predict_proba(list(texts))[:, 1], dtype=np.float64)
