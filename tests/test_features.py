from __future__ import annotations

import subprocess
import sys

import numpy as np

from service.features import BUCKETS, bag, gram_buckets


def test_counts_every_gram_of_each_order() -> None:
    # "abab": 4 unigrams, 3 bigrams, 2 trigrams
    assert len(gram_buckets("abab")) == 9
    ids, counts = bag(["abab"])
    assert counts.sum() == 9
    # a, b twice each; ab twice; ba once; aba, bab once each
    assert sorted(counts[0][counts[0] > 0].tolist()) == [1, 1, 1, 2, 2, 2]
    assert ((ids >= 0) & (ids < BUCKETS)).all()


def test_orders_do_not_share_buckets_for_the_same_characters() -> None:
    # the unigram "a" and the bigram "aa" must not be confused by the hash seed
    unigram, bigram = gram_buckets("a")[0], gram_buckets("aa")[-1]
    assert unigram != bigram


def test_padding_and_empty_texts() -> None:
    ids, counts = bag(["", "你好"])
    assert ids.shape == counts.shape == (2, 3)
    assert counts[0].sum() == 0
    assert counts[1].sum() == 3


def test_hash_is_the_same_in_another_process() -> None:
    code = "from service.features import gram_buckets; print(gram_buckets('谣言止于智者').tolist())"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "123"},
    ).stdout
    assert out.strip() == str(gram_buckets("谣言止于智者").tolist())


def test_bucket_spread_is_close_to_uniform() -> None:
    text = "".join(chr(0x4E00 + i) for i in range(3000))
    buckets = gram_buckets(text)
    # 9000 grams in 2**18 buckets: collisions should be rare
    assert len(np.unique(buckets)) > 0.98 * len(buckets)


def test_a_batch_is_its_texts_one_by_one_and_no_gram_crosses_two_texts() -> None:
    texts = ["谣言止于智者", "", "a", "ab", "你好你好", "紧急扩散！明天停水", "x" * 40]
    ids, counts = bag(texts)
    for i, text in enumerate(texts):
        alone_ids, alone_counts = bag([text], width=ids.shape[1])
        np.testing.assert_array_equal(ids[i], alone_ids[0])
        np.testing.assert_array_equal(counts[i], alone_counts[0])
        assert (
            counts[i].sum()
            == len(gram_buckets(text))
            == sum(max(0, len(text) - n + 1) for n in (1, 2, 3))
        )
