"""The shipped model through the whole pipeline: bad and awkward input, evidence, order."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from typing import Any

import pytest

from service.classify import Probabilities
from service.explaining import NO_EVIDENCE
from service.heads import HEADS, Head, Risk
from service.normalise import WINDOW, normalise
from service.pipeline import EMPTY, TRUNCATED, Pipeline
from service.record import Post
from service.settings import Settings

OFFENSIVE = "这帮人都是垃圾，滚出我们城市，恶心死了"
PLAIN = "今天和家人去公园散步，天气很好，荷花开了。"


def score(pipeline: Pipeline, *texts: str) -> list[dict[Risk, float]]:
    records = pipeline.score_many([Post(id=str(i), text=t) for i, t in enumerate(texts)])
    return [dict(r.scores) for r in records]


def test_model_version_is_the_content_hash_of_the_shipped_file(
    pipeline: Pipeline, settings: Settings
) -> None:
    digest = hashlib.sha256((settings.model_dir / "model.onnx").read_bytes()).hexdigest()
    assert pipeline.model_version == f"sha256:{digest[:16]}"


def test_offensive_language_scores_above_plain_text(pipeline: Pipeline) -> None:
    offensive, plain = score(pipeline, OFFENSIVE, PLAIN)
    assert offensive["incitement"] > plain["incitement"] + 0.3


def test_traditional_and_full_width_text_score_as_simplified(pipeline: Pipeline) -> None:
    simplified, traditional = score(
        pipeline, "这帮人都是垃圾，滚出我们城市", "這幫人都是垃圾，滾出我們城市"
    )
    assert simplified == traditional


def test_zero_width_characters_inside_words_do_not_change_the_scores(pipeline: Pipeline) -> None:
    plain, hidden = score(
        pipeline, "傻逼滚出去，原创作品", "傻\u200b逼\u200b滚出去，原\u200b创作品"
    )
    assert plain == hidden


def test_chinese_characters_spaced_apart_score_as_written_together(pipeline: Pipeline) -> None:
    for together, apart in (
        ("求扩散！杭州一女孩走失，穿红色外套", "求 扩 散！杭 州 一 女 孩 走 失，穿 红 色 外 套"),
        ("傻逼滚出去", "傻 逼 滚 出 去"),
        ("【原创】今天拍的西湖", "【原 创】今天拍的西湖"),
        ("【原创】今天拍的西湖", "【原·创】今天拍的西湖"),
        ("傻逼滚出去", "傻*逼*滚*出*去"),
        ("求扩散！杭州一女孩走失，穿红色外套", "求/扩/散！杭/州/一/女/孩/走/失，穿/红/色/外/套"),
        ("求扩散！杭州一女孩走失，穿红色外套", "求、扩、散！杭.州.一.女.孩.走.失，穿-红-色-外-套"),
        ("傻逼滚出去", "傻|逼|滚|出|去"),
        ("傻逼滚出去", "傻\u3164逼\u3164滚\u3164出\u3164去"),
    ):
        plain, spaced = pipeline.score_many([Post(id="a", text=together), Post(id="b", text=apart)])
        assert (plain.scores, plain.signals) == (spaced.scores, spaced.signals)


def test_empty_and_blank_text_score_zero_with_a_warning(pipeline: Pipeline) -> None:
    for record in pipeline.score_many([Post(id="e", text=""), Post(id="w", text=" \n\t ")]):
        assert set(record.scores.values()) == {0.0}
        assert record.decision == "pass"
        assert record.warnings == [EMPTY]


def test_emoticon_only_and_mixed_language_text_are_scored(pipeline: Pipeline) -> None:
    records = pipeline.score_many(
        [
            Post(id="emo", text="[蜡烛][蜡烛]"),
            Post(id="mix", text="iPhone 15 Pro 真的太贵了 but 我还是买了 lol"),
            Post(id="emoji", text="😂😂😂🙏"),
        ]
    )
    for r in records:
        assert all(0.0 <= s <= 1.0 for s in r.scores.values())
        assert not r.truncated


def test_long_text_is_truncated_and_says_so(pipeline: Pipeline) -> None:
    (record,) = pipeline.score_many([Post(id="long", text="谣" * 100_000)])
    assert record.truncated
    assert TRUNCATED in record.warnings
    assert str(WINDOW) in TRUNCATED


def test_a_claim_at_the_end_of_a_long_post_is_read(pipeline: Pipeline) -> None:
    article = "".join(
        f"第{i}段：周末和家人去湖边散步，荷花开了，孩子们在草地上放风筝。" for i in range(12)
    )
    notice = "本文为原创，首发于本公众号，转载请联系授权"
    now = time.time()
    posts = [
        Post(id="article-a", text=article, account_id="author", created_at=now - 600),
        Post(id="article-b", text=article + notice, account_id="copier", created_at=now - 300),
    ]
    first, copy = pipeline.score_many(posts)
    assert len(article) > WINDOW and copy.truncated
    assert first.signals["originality_claim"] == 0.0
    assert copy.signals["originality_claim"] > 0.5
    assert copy.flags["fake_originality"] and not first.flags["fake_originality"]


def test_a_rights_notice_post_s_evidence_runs_each_variant_once(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The search weighs risk heads, which score a text without its rights notice: it runs on
    that body, each variant one model row, never also the whole text that only the originality
    head reads. A long post's claim at its end is the originality head's, never
    searched: its spans are its first window's, at the offsets of the text written."""
    notice = "本文为原创，首发于本公众号，转载请联系授权。"
    lead = f"大家好。{OFFENSIVE}！！"
    article = "".join(
        f"第{i}段：周末和家人去湖边散步，荷花开了，孩子们在草地上放风筝。" for i in range(12)
    )
    posts = [Post(id="short", text=lead + notice), Post(id="long", text=lead + article + notice)]
    classifier = pipeline.classifier
    fresh = Pipeline(classifier, pipeline.policy)  # nothing remembered yet
    records = fresh.score_many(posts, evidence=False)
    asked: list[int] = []
    ran: list[int] = []
    real, session = classifier.log_odds, classifier.session

    def log_odds(texts: Sequence[str], heads: Sequence[Head] = HEADS) -> Probabilities:
        asked.append(len(texts))
        return real(texts, heads)

    class Counted:
        def run(self, outputs: list[str], feeds: dict[str, Any]) -> Any:
            ran.append(feeds["input_ids"].shape[0])
            return session.run(outputs, feeds)

    monkeypatch.setattr(classifier, "log_odds", log_odds)
    monkeypatch.setitem(classifier.__dict__, "session", Counted())
    short, long = fresh.explain(posts, records)
    assert sum(ran) == sum(asked) > 0
    assert long.truncated and long.signals["originality_claim"] > 0.5
    for post, record in zip(posts, (short, long), strict=True):
        (reason,) = [r for r in record.reasons if r.code.startswith("art18.5")]
        spans = reason.evidence["spans"]
        assert any(w in "".join(s["text"] for s in spans) for w in ("垃圾", "滚", "恶心"))
        for span in spans:
            assert post.text[span["start"] : span["end"]] == span["text"]
            # within the first window (the whole of the short post)
            norm = normalise(post.text)
            assert span["end"] <= norm.source_span(0, len(norm.text))[1]


def spans_of(pipeline: Pipeline, text: str, code: str) -> list[dict[str, Any]]:
    """The spans of the reason ``code`` of ``text``, searched afresh (nothing remembered)."""
    (record,) = Pipeline(pipeline.classifier, pipeline.policy).score_many([Post(id="x", text=text)])
    (reason,) = [r for r in record.reasons if r.code.startswith(code)]
    spans: list[dict[str, Any]] = reason.evidence["spans"]
    for span in spans:
        assert text[span["start"] : span["end"]] == span["text"]
    return spans


@pytest.mark.parametrize(
    ("lead", "notice", "rest", "code"),
    [
        # deleting part of the notice once left the rest no notice: "号," got 2.49
        (f"大家好。{OFFENSIVE}！！", "本文为原创，首发于本公众号，转载请联系授权。", "", "art18.5"),
        (
            "求扩散！杭州一女孩走失，",
            "本文为原创。",
            "穿红色外套，有看到的请联系，家人急疯了！！",
            "art18.6",
        ),
    ],
    ids=["notice-at-the-end", "notice-in-the-middle"],
)
def test_spans_weigh_what_the_risk_heads_read_never_a_notice(
    pipeline: Pipeline, lead: str, notice: str, rest: str, code: str
) -> None:
    """The risk heads score a post without its rights notices: its spans are those of the post
    written without them, at their offsets in the post as written."""
    text = lead + notice + rest
    spans = spans_of(pipeline, text, code)
    assert spans
    at, past = len(lead), len(lead) + len(notice)
    assert all(s["end"] <= at or s["start"] >= past for s in spans)
    shifted = [
        s | {"start": s["start"] - len(notice), "end": s["end"] - len(notice)}
        if s["start"] >= past
        else s
        for s in spans
    ]
    assert shifted == spans_of(pipeline, lead + rest, code)
    if code == "art18.5":
        assert any(w in "".join(s["text"] for s in spans) for w in ("垃圾", "滚", "恶心"))


def test_flagged_heads_carry_spans_of_the_original_text(pipeline: Pipeline) -> None:
    text = f"大家好。{OFFENSIVE}！！"
    (record,) = pipeline.score_many([Post(id="x", text=text, account_id="a1")])
    assert record.flags["incitement"]
    reason = next(r for r in record.reasons if r.code.startswith("art18.5"))
    spans = reason.evidence["spans"]
    assert spans
    for span in spans:
        assert text[span["start"] : span["end"]] == span["text"]
        assert span["weight"] > 0
    # the offensive words, not the greeting, drove the score
    assert any(w in "".join(s["text"] for s in spans) for w in ("垃圾", "滚", "恶心"))


def test_evidence_later_is_the_evidence_inline(pipeline: Pipeline) -> None:
    posts = [Post(id="o", text=f"大家好。{OFFENSIVE}！！"), Post(id="p", text=PLAIN)]
    inline = pipeline.score_many(posts)
    fast = pipeline.score_many(posts, evidence=False)
    assert fast[0].evidence_pending and not inline[0].evidence_pending
    assert not fast[1].evidence_pending  # nothing flagged: no evidence to wait for
    assert all("spans" not in r.evidence for r in fast[0].reasons)
    assert pipeline.explain(posts, fast) == inline


def test_records_come_back_in_input_order(pipeline: Pipeline) -> None:
    texts = ["短", PLAIN * 3, "", OFFENSIVE, "中等长度的一条微博内容"]
    posts = [Post(id=f"p{i}", text=t) for i, t in enumerate(texts)]
    batched = pipeline.score_many(posts)
    assert [r.id for r in batched] == [p.id for p in posts]
    one_by_one = [pipeline.score_many([p])[0] for p in posts]
    for a, b in zip(batched, one_by_one, strict=True):
        # int8 activations are scaled per batch, so neighbours move the 3rd-4th decimal only
        for risk, value in a.scores.items():
            assert abs(value - b.scores[risk]) < 0.01


def test_a_post_too_short_to_state_a_claim_is_reviewed_and_says_why(pipeline: Pipeline) -> None:
    """With every rumor score at the block, "求证,@微博辟谣" (two letters of its own) goes to
    review with the reason it was not blocked; a post that states something is blocked."""
    policy = pipeline.policy
    rule = policy.risks["rumor"].model_copy(update={"review": 0.0, "block": 0.0})
    strict = policy.model_copy(update={"risks": {**policy.risks, "rumor": rule}})
    short, long = Pipeline(pipeline.classifier, strict).score_many(
        [Post(id="s", text="求证,@微博辟谣"), Post(id="l", text="北京地铁2号线有人卧轨!")]
    )
    assert short.decision == "review" and short.flags["rumor"]
    (reason,) = [r for r in short.reasons if r.code == rule.reason.code]
    minimum = policy.block_min_chars["rumor"]
    assert reason.evidence["not_blocked"] == {"chars": 2, "block_min_chars": minimum}
    assert long.decision == "block"
    assert all("not_blocked" not in r.evidence for r in long.reasons)


def test_a_failed_evidence_search_costs_that_post_its_spans_only(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Inline and after the fact: the poisoned post keeps its scores and decision, is no longer
    waiting for evidence, says why it has none; its neighbour gets its spans."""
    real = pipeline.classifier.log_odds

    def log_odds(texts: Sequence[str], heads: Sequence[Head] = HEADS) -> Probabilities:
        if any("投毒" in t for t in texts):
            raise RuntimeError("the session failed")
        return real(texts, heads)

    fresh = Pipeline(pipeline.classifier, pipeline.policy)  # nothing remembered yet
    monkeypatch.setattr(fresh.classifier, "log_odds", log_odds)
    posts = [Post(id="bad", text=f"{OFFENSIVE}，投毒！"), Post(id="good", text=OFFENSIVE)]
    with caplog.at_level(logging.ERROR, logger="service.pipeline"):
        inline = fresh.score_many(posts)
    later = fresh.explain(posts, fresh.score_many(posts, evidence=False))
    for bad, good in (inline, later):
        assert bad.flags["incitement"] and bad.decision == good.decision
        assert not bad.evidence_pending and NO_EVIDENCE in bad.warnings
        assert all("spans" not in r.evidence for r in bad.reasons)
        assert not good.evidence_pending and NO_EVIDENCE not in good.warnings
        assert all(r.evidence["spans"] for r in good.reasons if r.code.startswith("art18.5"))
    failed = [r for r in caplog.records if r.getMessage() == "evidence search failed"]
    assert failed and all(getattr(r, "post_id", None) == "bad" for r in failed)
