"""The publish path's record cache (first record wins, most recently used kept, exact
copies)."""

from __future__ import annotations

from service.pipeline import Pipeline
from service.record import Post, ScoreRecord
from service.scoring import FirstRecords


def _records(pipeline: Pipeline) -> list[ScoreRecord]:
    posts = [
        Post(id="a", text="紧急扩散！明天起全市停水三天，转发告诉家人", account_id="u1"),
        Post(id="b", text="今天天气不错，出去走走", account_id="u2"),
        Post(id="c", text="你们这些人真是垃圾，滚出去", account_id="u3"),
    ]
    return pipeline.score_many(posts)


def test_the_first_record_of_a_post_stands_and_comes_back_equal(pipeline: Pipeline) -> None:
    first, *_ = _records(pipeline)
    cache = FirstRecords(10, first.policy_version)
    assert cache.keep(first) is first
    later = first.model_copy(update={"decision": "pass", "scores": {**first.scores, "rumor": 0}})
    kept = cache.keep(later)
    assert kept == first and kept is not later
    assert cache.get(first.id, first.model_version) == first
    assert cache.get(first.id, "another-model") is None
    # a record under another policy answers, but is not kept: its own may come later
    other = first.model_copy(update={"id": "other", "policy_version": "another-policy"})
    assert cache.keep(other) is other and cache.get("other", first.model_version) is None


def test_least_recently_used_goes_first_and_replace_overwrites(pipeline: Pipeline) -> None:
    a, b, c = _records(pipeline)
    cache = FirstRecords(2, a.policy_version)
    cache.keep(a)
    cache.keep(b)
    assert cache.get(a.id, a.model_version) == a  # a is now the most recently used
    cache.keep(c)
    assert cache.get(b.id, b.model_version) is None
    assert cache.get(a.id, a.model_version) == a
    explained = a.model_copy(update={"evidence_pending": not a.evidence_pending})
    cache.replace(explained)
    assert cache.get(a.id, a.model_version) == explained
