"""Canonical text, boilerplate, and the batched MinHash against datasketch's own."""

from __future__ import annotations

import random

import numpy as np
from datasketch import MinHash

from service.neardup.fingerprint import (
    MAX_CHARS,
    SCHEME,
    Fingerprinter,
    canonical,
    shingle_hash,
    similarity,
)

RUMOUR = "紧急扩散！明天起全市停水三天，自来水厂已被污染，赶紧囤水，转给家人！"


def test_canonical_text_drops_what_campaign_edits_add() -> None:
    edited = "緊急擴散 ！明天起全市停水三天@某人 [哈哈]😂 http://t.cn/abc\n自來水廠已被污染"
    plain, copy = canonical(["紧急扩散明天起全市停水三天自来水厂已被污染", edited])
    assert copy == plain


def test_the_quoted_repost_chain_is_not_the_posts_own_text() -> None:
    (own,) = canonical(["说得好，支持一下//@某人:紧急扩散明天起全市停水三天"])
    assert own == "说得好支持一下"


def test_a_chain_marker_inside_a_link_is_part_of_the_link_not_a_chain() -> None:
    # a channel's address (youtube.com/@name) must not cut off the text that follows it
    linked = ["https://www.youtube.com/@news1 " + RUMOUR, RUMOUR + " https://medium.com/@x/y"]
    assert canonical(linked) == canonical([RUMOUR]) * 2
    # a chain right after a link is still cut off
    assert canonical(["说得好 http://t.cn/abc//@某人:" + RUMOUR]) == ["说得好"]


def test_default_reposts_emoticons_and_short_texts_are_boilerplate() -> None:
    fp = Fingerprinter()
    texts = ["转发微博", "Repost", "", "[蜡烛][蜡烛]", "😂😂", "哈哈哈哈哈哈哈哈", "支持！", RUMOUR]
    assert [f.boilerplate for f in fp.fingerprints(texts)] == [True] * 7 + [False]


def test_batched_signatures_equal_datasketch_updated_shingle_by_shingle() -> None:
    fp = Fingerprinter(k=2, num_perm=64, seed=3)
    rng = random.Random(0)
    texts = [
        RUMOUR,
        "短文本测试一下",
        "".join(chr(rng.randint(0x4E00, 0x9FA5)) for _ in range(500)),
    ]
    canons = [f.canonical for f in fp.fingerprints(texts)]
    batch = fp.signatures(canons)
    for canon, row in zip(canons, batch, strict=True):
        reference = MinHash(num_perm=64, seed=3, hashfunc=shingle_hash, scheme=SCHEME)
        for shingle in fp.shingles(canon):
            reference.update(shingle)
        assert np.array_equal(reference.hashvalues, row)
        assert np.array_equal(fp.signatures([canon])[0], row)


def test_many_texts_are_hashed_in_several_passes_with_the_same_result() -> None:
    fp = Fingerprinter()
    canons = [f"{i}号{RUMOUR}" * 40 for i in range(60)]  # 60 x ~1900 shingles: several passes
    batch = fp.signatures(canons)
    assert np.array_equal(batch[37], fp.signatures([canons[37]])[0])


def test_a_100000_character_post_is_fingerprinted_on_its_first_characters() -> None:
    (found,) = Fingerprinter().fingerprints(["谣" + "言传" * 50_000])
    assert len(found.canonical) == MAX_CHARS


def test_signature_agreement_estimates_the_jaccard_similarity() -> None:
    fp = Fingerprinter(num_perm=256)
    a = "".join(chr(0x4E00 + i) for i in range(200))
    b = a[:150] + "".join(chr(0x5E00 + i) for i in range(50))
    sets = [set(fp.shingles(t)) for t in (a, b)]
    exact = len(sets[0] & sets[1]) / len(sets[0] | sets[1])
    sig = fp.signatures([a, b])
    assert abs(similarity(sig[0], sig[1:])[0] - exact) < 0.1


def test_texts_cleaned_together_come_out_as_each_alone() -> None:
    # the batch is one string with NUL between texts: no pattern may run across it
    texts = [
        "说得好[哈",  # an unclosed emoticon code, closed by the next text's start
        "哈]转给大家看看这个消息吧",
        "看这里 http://t.cn/abc",
        "def 全文很长很长很长很长",
        "提到@某人",
        "某人 明天停水三天//@甲:",
        "乙丙丁戊己庚辛壬癸",
        "含有\x00空字符的文本内容",
        "",
    ]
    assert canonical(texts) == [canonical([t])[0] for t in texts]
    assert canonical(texts)[7] == "含有空字符的文本内容"
