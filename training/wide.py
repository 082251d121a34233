"""The n-gram branch: sublinear TF-IDF over hashed character 1-3-grams, logistic regression.

For a text with bucket counts ``c_b``, the features are ``x_b = (1 + ln c_b) · idf_b``, scaled
to unit L2 norm, with ``idf_b = ln((1 + n) / (1 + df_b)) + 1`` over the ``n`` training texts.
A head's logit is ``x · w + b``. This is the classical baseline's model on hashed buckets; it is
fitted here with scikit-learn and evaluated inside the ONNX graph (:class:`training.model.Wide`).

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


def fit(x: sp.csr_matrix, y: npt.NDArray[np.int64], c: float) -> tuple[Floats, float]:
    """Coefficients over all buckets and the intercept."""
    lr = LogisticRegression(C=c, max_iter=3000).fit(x, y)
    return lr.coef_[0].astype(np.float32), float(lr.intercept_[0])


def out_of_fold(
    x: sp.csr_matrix, y: npt.NDArray[np.int64], c: float, folds: int, seed: int
) -> Floats:
    """Each row's logit from the model fitted on the other folds."""
    out = np.zeros(x.shape[0], dtype=np.float32)
    for fit_rows, held in StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, y):
        w, b = fit(x[fit_rows], y[fit_rows], c)
        out[held] = x[held] @ w + b
    return out
