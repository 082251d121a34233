"""Originality claims by rule: the labels of the corpus's real texts, and the rights notices the
risk heads do not score."""

from __future__ import annotations

import numpy as np
import pytest

from service.claims import (
    _KEYWORD,
    RAW_KEYWORD,
    body_ranges,
    has_claim_words,
    rule_label,
    without_notices,
)
from service.heads import HEADS
from service.normalise import SEARCH_CHARS, normalise, search_text
from service.pipeline import Pipeline


@pytest.mark.parametrize(
    "text",
    [
        "#新浪独家#【法院副院长为梦想辞职】仕途平顺的法院副院长辞职当律师了",
        "【tvreport独家】李洪基确定以主持的身份出演",
        "#V观习主席出访#【央视独家视频：巴基斯坦枭龙战机编队 为习近平专机护航】",
        "独家专访｜这位导演谈新片",
        "原创作品，转载请注明出处",
        "文章未经授权禁止转载",
        "这组照片都是我自己拍的",
        "本号首发：春天的第一场雨",
        "版权所有，侵权必究",
        "#青春光明##原创首发1#初冬时节，秋天未尽",
        "【原創】繁體字寫的也算",
    ],
)
def test_rule_label_finds_claims(text: str) -> None:
    assert rule_label(text) == 1


@pytest.mark.parametrize(
    "text",
    [
        "今晚首发阵容公布",
        "卧槽，高拉特首发，这场比赛稳了",
        "@我的独家记忆 快看",
        "本剧由爱奇艺独家播出",
        "中天大业独家代理[偷笑]",
        "原文作者写得真好",
        "推荐一首原创歌曲",
        "这是谁原创的？",
        "不是他自己写的吧",
        "转自@人民日报",
        "来源：新华社",
        "用心就有爱！ via @央视新闻",
        "必须转载！",
        "前不久才接受凤凰娱乐的独家专访呢",
        "失独家庭的心理失衡",
        "高晓松可以收版权费了",
        "版权归原作者所有，如有侵权请联系删除",  # a credit to someone else
    ],
)
def test_rule_label_rejects_confusables(text: str) -> None:
    assert rule_label(text) == 0


@pytest.mark.parametrize("text", ["今天天气不错", "转发微博", "", "Olivia 和 Vivian 都来了"])
def test_rule_label_is_none_without_keywords(text: str) -> None:
    assert rule_label(text) is None


@pytest.mark.parametrize(("at", "label"), [(0, 1), (1, None), (2, 1)])
def test_rule_label_reads_a_long_text_at_its_ends(at: int, label: int | None) -> None:
    """Past twice SEARCH_CHARS characters a text is read at its ends, where a claim goes: a
    claim beyond them is not seen."""
    parts = ["今天天气不错，" * SEARCH_CHARS] * 2
    parts.insert(at, "【原创】")
    assert rule_label("".join(parts)) == label


_LONG = "x" * SEARCH_CHARS


@pytest.mark.parametrize(
    ("text", "keyword"),
    [
        ("via 人民日报", True),
        ("VIA:人民日报", True),
        ("ｖｉａ＠人民日报", True),  # full-width forms
        ("Ｖｉａ人民日报", True),
        ("转发viahttp://t.cn/abc", True),  # the link folds to a placeholder: "via url"
        ("viaＨＴＴＰ://t.cn/abc", True),
        ("轉載自人民日報", True),
        # a long text is read at its ends, which part a word's letters: trivia and aviation
        # whose via starts the tail or ends the head
        (_LONG + "，" + _LONG + "trivia " + "y" * (SEARCH_CHARS - 4), True),
        ("x" * (SEARCH_CHARS - 4) + " viation" + _LONG + _LONG, True),
        # via inside a word, in either case and width
        ("aviation", False),
        ("trivia", False),
        ("Olivia 和 Vivian 都来了", False),
        ("ＡＶＩＡＴＩＯＮ", False),
        ("trivia " + _LONG + _LONG, False),  # a long text whose cut parts no via
    ],
)
def test_the_raw_keyword_test_passes_every_keyword_text(text: str, keyword: bool) -> None:
    """RAW_KEYWORD, searched on the raw text, lets through every text whose normalised ends
    hold a keyword, and via inside a word is none."""
    assert bool(_KEYWORD.search(search_text(text))) is keyword
    assert bool(RAW_KEYWORD.search(text)) is keyword


def body(text: str) -> str | None:
    return without_notices(normalise(text).text)


@pytest.mark.parametrize(
    "text",
    [
        "本文为原创，首发于本公众号，转载请联系授权",
        "原创！转载请注明出处",
        "版权所有，侵权必究",
        "未经许可，禁止转载",
        "(转载请私信授权)",
        "——本台独家消息✨",
        "微博首发 |",
        "#新浪独家#",
        "#原创#",
        "版权归本公众号所有",
        "版权归新华社所有",  # a name of three characters, as 公众号 is left beside a claim
        "未经作者本人书面授权，严禁转载",
        "未经本号授权,不得转载或使用",
    ],
)
def test_a_bare_notice_leaves_nothing(text: str) -> None:
    assert body(text) == ""


def test_the_post_around_a_notice_stays_as_written() -> None:
    assert body("今天天气不错，出去走走。原创，转载请注明出处") == "今天天气不错,出去走走。"
    assert body("紧急扩散！明天起全市停水三天，转载请注明出处") == "紧急扩散!明天起全市停水三天,"
    assert body("独家爆料：明天全市封城！") == "明天全市封城!"


def test_the_body_s_ranges_are_the_text_around_its_notices() -> None:
    text = normalise("今天天气不错，原创，转载请注明出处。出去走走").text
    ranges = body_ranges(text)
    assert ranges == [(0, 7), (18, 22)]
    assert without_notices(text) == "".join(text[s:e] for s, e in ranges) == "今天天气不错,出去走走"
    assert body_ranges("今天天气不错") is None and body_ranges("原创!转载请注明出处") == []


@pytest.mark.parametrize(
    "text",
    [
        "独家消息明天全市封城",  # a claim and more in one clause
        "本号独家明天封城",
        "【原创】周末去爬山了，风景很美",
        # a tag holds any phrase beside its claim word
        "#打死这帮狗东西原创#",
        "【印度妇女一次产下11胞胎独家】",
        # a notice's gaps hold the post's own words, other than its owner's or manner's
        "版权归明天上海全面封城所有",
        "未经核实明天全城封锁授权禁止转载",
    ],
)
def test_a_clause_that_says_more_than_a_notice_is_kept(text: str) -> None:
    assert body(text) in (None, normalise(text).text)


@pytest.mark.parametrize(
    "text", ["今天天气不错", "@我的独家记忆 好听", "恒大首发阵容公布", "转自@人民日报：明天停水"]
)
def test_texts_without_a_claim_have_no_notice(text: str) -> None:
    assert body(text) is None


def test_the_risk_heads_score_the_body_and_the_originality_head_the_notice(
    pipeline: Pipeline,
) -> None:
    rumour = "紧急扩散！明天起全市停水三天，大家赶紧储水。"
    notice = "本文为原创，首发于本公众号，转载请联系授权"
    noticed, plain = pipeline.classifier.predict(
        [normalise(t).text for t in (rumour + notice, rumour)]
    )
    for head in ("rumor", "incitement"):
        h = HEADS.index(head)
        # the same text, up to int8 activations quantised per batch
        assert abs(noticed[h] - plain[h]) < 0.02, head
    h = HEADS.index("originality_claim")
    assert noticed[h] > 0.5 > plain[h]
    bare = pipeline.classifier.predict([normalise("本文为原创，首发于本公众号").text, ""])
    np.testing.assert_allclose(bare[0, [0, 1]], bare[1, [0, 1]], atol=0.02)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("原创作品，转载请注明出处", True),
        ("这组照片都是我自己拍的", True),
        ("未经许可不得使用", True),
        ("@草内就是爱笨蛋|本文系原创!", True),  # a handle ends at the bar
        ("白痴,女的才是消费主力军~(全网首发)", True),  # 主力军 is no sports word
        ("联合国安理会通过决议(此文首发于我的博客)", True),  # nor is 联合国安理会
        # claim words only in handles and confusable phrases, blanked as for rule_label
        ("@我的独家记忆 好听", False),
        ("首发!国足今晚对阵日本队首发名单出炉", False),
        ("本片由优酷独家播出", False),
        ("这首原创歌曲真好听", False),
        ("那就自己相信自己", False),
        ("今天就自己做饭", False),
        ("转自@人民日报：明天停水", False),  # attribution is no claim
        ("图片来源：网络", False),
        ("", False),
    ],
)
def test_claim_words(text: str, expected: bool) -> None:
    assert has_claim_words(normalise(text).text) is expected


def test_the_originality_head_scores_only_texts_with_a_claim_word(pipeline: Pipeline) -> None:
    # "就自己" shares its n-gram bucket with the "首发!" of a claim phrasing: 1.0 when it counted
    texts = ["今天就自己做饭", "投哪啊", "今天就自己做饭，图是我自己拍的"]
    probs = pipeline.classifier.predict([normalise(t).text for t in texts])
    logits = pipeline.classifier.log_odds([normalise(t).text for t in texts])
    h = HEADS.index("originality_claim")
    assert probs[0, h] == probs[1, h] == 0.0
    assert logits[0, h] == logits[1, h] == -np.inf
    assert probs[2, h] > 0.5
    # the risk heads still score every text
    assert np.all(np.isfinite(logits[:, [0, 1]]))


def test_a_tag_around_an_insult_hides_it_from_no_head(pipeline: Pipeline) -> None:
    texts = [normalise(t).text for t in ("打死这帮狗东西", "#打死这帮狗东西原创#")]
    plain, tagged = pipeline.classifier.predict(texts)[:, HEADS.index("incitement")]
    assert plain > 0.5 and tagged > 0.5
