"""The n-gram branch: NB-weighted sublinear TF-IDF over hashed character 1-3-grams, logistic
regression.

For a text with bucket counts ``c_b``, the features are ``x_b = (1 + ln c_b) · idf_b``, scaled
to unit L2 norm, with ``idf_b = ln((1 + n) / (1 + df_b)) + 1`` over the ``n`` training texts.
Each head then weighs bucket ``b`` by its naive-Bayes log-count ratio
``r_b = ln((p_b / |p|) / (q_b / |q|))``, where ``p_b`` (``q_b``) is one plus the number of
positive (negative) training texts that contain the bucket, and fits a logistic regression on
``x_b · r_b`` (Wang and Manning, *Baselines and Bigrams*, ACL 2012). The head's logit is
``Σ_b x_b · (r_b w_b) + b``: the ratio folds into the coefficients, so the graph
(:class:`training.model.Wide`) computes plain TF-IDF and one dot product. ``C`` is chosen per
head by log loss on the calibration split. On the calibration splits this weighting beats the
plain TF-IDF model, which is the classical baseline (:mod:`eval.baseline`).

The encoder is trained on the residual of this branch. For that, the training rows get
out-of-fold logits (each fold's model never saw the row), so that the encoder sees the
branch's honest errors rather than its memorised training labels.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

from service.features import BUCKETS, bag

Floats = npt.NDArray[np.float32]


def idf_table(texts: Sequence[str]) -> Floats:
    ids, counts = bag(texts)
    df = np.bincount(ids[counts > 0], minlength=BUCKETS).astype(np.float64)
    return (np.log((1 + len(texts)) / (1 + df)) + 1).astype(np.float32)


def design(texts: Sequence[str], idf: Floats) -> sp.csr_matrix:
    """The L2-normalised sublinear TF-IDF rows of ``texts``, as a sparse matrix."""
    ids, counts = bag(texts)
    weights = np.where(counts > 0, (1 + np.log(np.maximum(counts, 1))) * idf[ids], 0.0)
    norms = np.sqrt((weights**2).sum(axis=1, keepdims=True))
    weights = weights / np.maximum(norms, 1e-12)
    rows = np.repeat(np.arange(len(texts)), ids.shape[1])
    m = sp.csr_matrix(
        (weights.ravel(), (rows, ids.ravel())), shape=(len(texts), BUCKETS), dtype=np.float32
    )
    m.eliminate_zeros()
    return m


def log_count_ratio(x: sp.csr_matrix, y: npt.NDArray[np.int64]) -> Floats:
    present = (x > 0).astype(np.float64)
    p = 1 + np.asarray(present[y == 1].sum(axis=0)).ravel()
    q = 1 + np.asarray(present[y == 0].sum(axis=0)).ravel()
    return np.asarray(np.log((p / p.sum()) / (q / q.sum())), dtype=np.float32)


def fit(x: sp.csr_matrix, y: npt.NDArray[np.int64], c: float) -> tuple[Floats, float]:
    """Coefficients over all buckets (the NB ratio folded in) and the intercept."""
    r = log_count_ratio(x, y)
    lr = LogisticRegression(C=c, max_iter=3000).fit(x @ sp.diags(r), y)
    return (r * lr.coef_[0]).astype(np.float32), float(lr.intercept_[0])


def choose_c(
    x: sp.csr_matrix,
    y: npt.NDArray[np.int64],
    calib_x: sp.csr_matrix,
    calib_y: npt.NDArray[np.int64],
    grid: Sequence[float],
) -> float:
    """The ``C`` of ``grid`` with the lowest log loss on the calibration rows."""

    def loss(c: float) -> float:
        w, b = fit(x, y, c)
        z = calib_x @ w + b
        return float(np.mean(np.logaddexp(0.0, z) - calib_y * z))

    return min(grid, key=loss)


def out_of_fold(
    x: sp.csr_matrix, y: npt.NDArray[np.int64], c: float, folds: int, seed: int
) -> Floats:
    """Each row's logit from the model fitted on the other folds."""
    out = np.zeros(x.shape[0], dtype=np.float32)
    for fit_rows, held in StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, y):
        w, b = fit(x[fit_rows], y[fit_rows], c)
        out[held] = x[held] @ w + b
    return out
