"""The n-gram branch computed in the graph equals the sparse TF-IDF + LR it was fitted as."""

from __future__ import annotations

import numpy as np
import torch

from service.features import bag
from training import wide
from training.model import Wide

TEXTS = ["谣言止于智者", "这帮人都该死", "原创，转载请注明出处", "今天天气不错 哈哈哈哈", "a"]


def test_graph_matches_sparse_fit() -> None:
    idf = wide.idf_table(TEXTS)
    x = wide.design(TEXTS, idf)
    w, b = wide.fit(x, np.array([1, 1, 0, 0, 1]), c=4.0)
    module = Wide(heads=1)
    module.idf.copy_(torch.from_numpy(idf))
    module.coef.copy_(torch.from_numpy(w[:, None]))
    module.bias.fill_(b)
    ids, counts = bag(TEXTS)
    graph = module(torch.from_numpy(ids), torch.from_numpy(counts))[:, 0].numpy()
    np.testing.assert_allclose(graph, x @ w + b, rtol=1e-5, atol=1e-5)


def test_design_rows_have_unit_norm_and_sublinear_counts() -> None:
    idf = np.ones_like(wide.idf_table(TEXTS))
    x = wide.design(["aaaa", "ab"], idf)
    np.testing.assert_allclose(np.sqrt(x.multiply(x).sum(axis=1)).A1, [1.0, 1.0], rtol=1e-6)
    # "aaaa": a×4, aa×3, aaa×2 → weights 1+ln4 : 1+ln3 : 1+ln2 before the norm
    row = np.sort(x[0].data)[::-1]
    np.testing.assert_allclose(
        row / row[0],
        [1, (1 + np.log(3)) / (1 + np.log(4)), (1 + np.log(2)) / (1 + np.log(4))],
        rtol=1e-6,
    )


def test_out_of_fold_logits_differ_from_the_full_fit() -> None:
    texts = [f"好评{i}" for i in range(20)] + [f"差评垃圾{i}" for i in range(20)]
    y = np.array([0] * 20 + [1] * 20)
    idf = wide.idf_table(texts)
    x = wide.design(texts, idf)
    w, b = wide.fit(x, y, c=4.0)
    oof = wide.out_of_fold(x, y, c=4.0, folds=4, seed=0)
    assert not np.allclose(oof, x @ w + b)
    # still separates the classes: the rows share their class's n-grams
    assert oof[y == 1].min() > oof[y == 0].max()
