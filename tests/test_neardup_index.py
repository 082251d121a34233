"""The windowed LSH index: verified matches, buckets that expire whole, idempotent inserts."""

from __future__ import annotations

import numpy as np

from service.neardup.fingerprint import Fingerprinter, Signature
from service.neardup.index import Entry, WindowIndex

HOUR = 3600.0
BASE = "网传某地明天起全市停水三天自来水厂已被污染请大家赶紧囤水并转给家人朋友"
OTHER = "周末和家人去公园散步天气很好拍了几张荷花的照片晚上吃了火锅"


def make() -> tuple[Fingerprinter, WindowIndex]:
    fp = Fingerprinter()
    return fp, WindowIndex(fp, threshold=0.4, window_s=72 * HOUR, bucket_s=12 * HOUR)


def put(index: WindowIndex, sig: Signature, post_id: str, at: float) -> bool:
    return index.insert(Entry(post_id, "a", at, f"c-{post_id}", sig), index.keys(sig))


def test_a_near_copy_is_found_and_an_unrelated_text_is_not() -> None:
    fp, index = make()
    base, copy, other = fp.signatures([BASE, "转给大家" + BASE[:30] + "速看", OTHER])
    index.advance(0.0)
    assert put(index, base, "p1", 0.0)
    (match,) = index.query(copy, index.keys(copy))
    assert match.entry.post_id == "p1" and 0.4 <= match.similarity < 1.0
    assert index.query(other, index.keys(other)) == []


def test_candidates_below_the_threshold_are_dropped_after_verification() -> None:
    fp, index = make()
    base, other = fp.signatures([BASE, OTHER])
    put(index, base, "p1", 0.0)
    # one band in common: a certain LSH candidate, but 4 of 128 values alike
    start, end = index.bands[0]
    collider = other.copy()
    collider[start:end] = base[start:end]
    assert index.keys(collider)[0] == index.keys(base)[0]
    assert index.query(collider, index.keys(collider)) == []


def test_buckets_leave_the_window_whole_and_report_their_clusters() -> None:
    fp, index = make()
    (sig,) = fp.signatures([BASE])
    index.advance(0.0)
    put(index, sig, "old", 0.0)
    put(index, sig, "newer", 20 * HOUR)
    # "old" is in the bucket [0, 12h), which leaves when its end is 72 hours old
    assert index.advance(83 * HOUR) == []
    assert index.advance(84 * HOUR) == ["c-old"]
    assert index.get("old") is None and index.get("newer") is not None
    assert [m.entry.post_id for m in index.query(sig, index.keys(sig))] == ["newer"]


def test_a_post_older_than_the_window_is_not_kept_and_an_id_is_kept_once() -> None:
    fp, index = make()
    (sig,) = fp.signatures([BASE])
    index.advance(100 * HOUR)
    assert not put(index, sig, "late", 10 * HOUR)
    assert put(index, sig, "p1", 99 * HOUR)
    assert not put(index, sig, "p1", 99 * HOUR)
    assert len(index) == 1
    assert index.query(sig, index.keys(sig), exclude="p1") == []


def test_many_copies_share_band_keys_and_are_all_found_most_similar_first() -> None:
    fp, index = make()
    texts = [BASE] + [BASE[: 30 - i] + "转给大家" for i in range(5)] + [OTHER]
    sigs = fp.signatures(texts)
    keys = index.batch_keys(sigs)
    assert keys[0] == index.keys(sigs[0]) and len(keys[0]) == len(index.bands)
    index.advance(0.0)
    for i in range(1, 7):
        assert index.insert(Entry(f"p{i}", "a", 60.0 * i, f"c{i}", sigs[i]), keys[i])
    found = index.query(sigs[0], keys[0])
    assert {m.entry.post_id for m in found} == {"p1", "p2", "p3", "p4", "p5"}
    assert [m.similarity for m in found] == sorted((m.similarity for m in found), reverse=True)
    entry = index.get("p3")
    assert entry is not None and entry.created_at == 180.0 and entry.cluster_id == "c3"
    assert np.array_equal(entry.signature, sigs[3])


def test_a_band_two_buckets_share_stays_findable_when_one_of_them_leaves() -> None:
    fp, index = make()
    (sig,) = fp.signatures([BASE])
    index.advance(0.0)
    put(index, sig, "old", 0.0)
    put(index, sig, "newer", 20 * HOUR)
    put(index, sig, "newest", 30 * HOUR)
    index.advance(84 * HOUR)  # the bucket of "old" leaves; its keys are the others' too
    assert {m.entry.post_id for m in index.query(sig, index.keys(sig))} == {"newer", "newest"}
    index.advance(96 * HOUR)  # and the bucket of "newer": "newest" holds them alone
    assert [m.entry.post_id for m in index.query(sig, index.keys(sig))] == ["newest"]
    index.advance(108 * HOUR)
    assert index.query(sig, index.keys(sig)) == [] and len(index) == 0


def test_a_removed_post_is_matched_no_more_and_its_id_may_come_back_elsewhere() -> None:
    fp, index = make()
    base, other = fp.signatures([BASE, OTHER])
    index.advance(0.0)
    put(index, base, "p1", 0.0)
    put(index, base, "p2", 60.0)
    index.remove("p1")  # an edit: the text the index holds for p1 is no longer its text
    assert index.get("p1") is None and len(index) == 1
    assert [m.entry.post_id for m in index.query(base, index.keys(base))] == ["p2"]
    # the new text, in a later bucket: the bucket of the old one leaving keeps it
    assert put(index, other, "p1", 20 * HOUR)
    assert sorted(e.post_id for e in index.entries()) == ["p1", "p2"]
    index.advance(84 * HOUR)
    assert index.get("p2") is None
    assert [m.entry.post_id for m in index.query(other, index.keys(other))] == ["p1"]
    index.remove("p1")
    assert index.query(other, index.keys(other)) == [] and len(index) == 0
