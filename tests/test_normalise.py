from __future__ import annotations

import sys

import pytest

import service.normalise
from service.normalise import SEARCH_CHARS, URL_PLACEHOLDER, WINDOW, normalise, search_text
from service.settings import get_settings
from training.data import weibo16


def test_folds_width_case_script_links_and_space() -> None:
    n = normalise("  轉發：ＡＢＣ看這裡 http://t.cn/h1R0Rj\t\n好 ")
    assert n.text == f"转发:abc看这里 {URL_PLACEHOLDER} 好"
    assert not n.truncated


def test_offsets_point_at_the_source_characters() -> None:
    original = "我　說ＯＫ http://x.cn/a 這樣"
    n = normalise(original)
    for i, ch in enumerate(n.text):
        if ch not in (" ", *URL_PLACEHOLDER):
            source = original[n.offsets[i]]
            assert normalise(source).text == ch


def test_source_span_maps_back_to_the_original() -> None:
    original = "前面的話  ＡＢＣ後面"
    n = normalise(original)
    start = n.text.index("abc")
    assert n.source_span(start, start + 3) == (original.index("Ａ"), original.index("Ｃ") + 1)
    with pytest.raises(ValueError, match="outside"):
        n.source_span(0, len(n.text) + 1)


def test_long_text_is_cut_to_the_window_and_says_so() -> None:
    n = normalise("字" * (WINDOW + 10))
    assert len(n.text) == WINDOW == len(n.offsets)
    assert n.truncated


def test_format_characters_are_dropped_and_offsets_skip_them() -> None:
    # zero-width space, zero-width joiner, soft hyphen, byte-order mark, word joiner
    original = "\ufeff傻\u200b逼\u200d滚\u00ad出\u2060去"
    n = normalise(original)
    assert n.text == "傻逼滚出去"
    assert [original[i] for i in n.offsets] == list("傻逼滚出去")
    assert n.source_span(0, 5) == (1, len(original))


def test_spaces_between_lone_chinese_characters_are_dropped_and_others_kept() -> None:
    original = "求 扩 散！杭　州 一  女 孩"
    n = normalise(original)
    assert n.text == "求扩散!杭州一女孩"
    assert [original[i] for i in n.offsets] == list("求扩散！杭州一女孩")
    # a space beside a word of two characters or more, or beside anything not Chinese, stays:
    # writers put one between phrases, and the model was trained on them
    for kept in ("今天 天气很好", "本文 原创", "iphone 14 发布会", "我 love 你", "看 url 这里"):
        assert normalise(kept).text == kept
    assert normalise("发布会 很 好 [蜡烛] 傻 逼").text == "发布会 很好 [蜡烛] 傻逼"
    # asterisks and middle dots serve the same end; other marks between lone characters
    # ("男/女", "3.15") and a dot in a name ("迈克尔·乔丹") stay
    assert normalise("傻＊逼 * 滚·出•去 【原・创】").text == "傻逼滚出去 【原创】"
    for kept in ("男/女", "中-美", "迈克尔·乔丹", "今天.天气"):
        assert normalise(kept).text == kept


@pytest.mark.parametrize(
    ("original", "joined"),
    [
        ("求/扩/散", "求扩散"),
        ("造.谣.者 说", "造谣者 说"),
        ("求、扩、散！", "求扩散!"),
        ("转|发|救|人", "转发救人"),
        ("傻-逼-滚-出-去", "傻逼滚出去"),
        ("求 / 扩 / 散 转 发", "求扩散 转发"),  # white space beside the mark goes with it
        ("求／扩／散", "求扩散"),  # full-width, made ASCII by NFKC
        ("城~管~打~人", "城管打人"),
        ("东、南、西、北，都有", "东南西北,都有"),  # single characters read the same run together
    ],
)
def test_separated_runs_of_lone_chinese_characters_are_joined(original: str, joined: str) -> None:
    n = normalise(original)
    assert n.text == joined
    # each character still points at the one it came from, the separators at nothing
    assert [normalise(original[i]).text or " " for i in n.offsets] == list(n.text)


@pytest.mark.parametrize(
    "kept",
    [
        "2012/3/4",
        "1-2-3",
        "北京、上海、广州",  # words of two characters or more
        "男/女",  # two lone characters: an either-or as often as not
        "傻-逼",
        "求/扩-散",  # not one mark throughout
        "今天/天/气",
        "a/b/c 和 www.qq.com",
        "杀!杀!杀!",  # sentence and clause marks stay
        "是,是,是",
        "好。好。好",
    ],
)
def test_other_marks_between_characters_stay(kept: str) -> None:
    assert normalise(kept).text == kept


@pytest.mark.parametrize("line_break", ["\n", "\r\n", "\u2028"])
def test_a_separated_run_does_not_cross_a_line_break(line_break: str) -> None:
    # a list of one-character items, one a line: the breaks become spaces, the items stay apart
    listed = line_break.join(["我", "- 你", "- 他"])
    assert normalise(listed).text == "我 - 你 - 他"
    assert normalise(f"求 / 扩 / 散{line_break}- 好").text == "求扩散 - 好"


@pytest.mark.parametrize("line_break", ["\n", "\r\n", "\u2028"])
def test_vertical_writing_is_read_as_one_word(line_break: str) -> None:
    # one character a line; lines of two or more characters keep their break
    assert normalise(line_break.join("傻逼滚")).text == "傻逼滚"
    assert normalise(line_break.join(["床前明月光", "疑是地上霜"])).text == "床前明月光 疑是地上霜"


def test_invisible_characters_that_are_not_format_characters_are_dropped() -> None:
    # Hangul filler and braille blank are shown as blanks; the combining grapheme joiner and a
    # variation selector after a Chinese character as nothing
    original = "傻\u3164逼\u2800滚，出\u034f去\ufe0f吧"
    n = normalise(original)
    assert n.text == "傻逼滚,出去吧"
    assert [original[i] for i in n.offsets] == list("傻逼滚，出去吧")
    # a selector after an emoji picks its glyph and stays; a filler beside a word is a space
    assert normalise("\u2764\ufe0f好").text == "\u2764\ufe0f好"
    assert normalise("今天\u3164天气很好").text == "今天 天气很好"


def test_empty_and_blank_texts_normalise_to_empty() -> None:
    for text in ("", "   ", "\n\t\u3000", "\u200b\ufeff"):
        n = normalise(text)
        assert n.text == "" and n.offsets == () and not n.truncated


def test_a_long_text_is_read_only_as_far_as_its_window_needs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # U+FDFA is 18 characters in NFKC: 10,000 of them were 180,000 characters to fold, scan
    # and convert for a window of 256
    folded: list[int] = []
    fold = service.normalise._fold_chars

    def counted(text: str) -> tuple[list[str], list[int]]:
        folded.append(len(text))
        return fold(text)

    monkeypatch.setattr(service.normalise, "_fold_chars", counted)
    text = "\ufdfa" * 10_000
    n = normalise(text)
    assert n.truncated and len(n.text) == WINDOW == len(n.offsets)
    assert sum(folded) <= 4 * WINDOW
    assert (n.text, n.offsets) == (
        (whole := normalise(text, window=sys.maxsize)).text[:WINDOW],
        whole.offsets[:WINDOW],
    )


@pytest.mark.parametrize(
    "head",
    [
        "",
        " " * 5_000,  # folds to nothing: what follows is still read
        "\u200b" * 3_000,
        "傻 " * 600,  # spaced-out characters across every cut
        "求/" * 600,  # a separated run across every cut
        "http://t.cn/" + "a" * 2_000 + " ",  # a link across the first cut
        "ﾟ" * 1_020 + "http://x.cn/" + "b" * 300,
        "\ufdfa" * 14 + "轉發" * 500,
    ],
)
def test_the_window_of_a_long_text_is_that_of_the_whole_text(head: str) -> None:
    text = head + "求 扩 散！杭　州 一 女 孩 走 失 ＡＢＣ 這樣 " * 200
    n = normalise(text)
    whole = normalise(text, window=sys.maxsize)
    assert n.truncated and (n.text, n.offsets) == (whole.text[:WINDOW], whole.offsets[:WINDOW])


def test_search_text_is_the_whole_text_normalised_up_to_twice_search_chars() -> None:
    """As the claim and credit searches read every text before they read only its ends: the
    real posts, and an article as long as a text read whole can be."""
    posts = [example.text for example in weibo16(get_settings().data_dir)]
    article = "".join(posts)[: 2 * SEARCH_CHARS - 9] + "（來源：人民日報）"
    mixed = "轉載自ＣＣＴＶ\u200b新聞\tvia＠人民日报"
    texts = [*posts, article, mixed, "\ufdfa" * (2 * SEARCH_CHARS)]
    assert len(article) == 2 * SEARCH_CHARS
    for text in texts:
        assert search_text(text) == normalise(text, window=sys.maxsize).text


def test_a_longer_text_is_searched_in_its_first_and_last_search_chars() -> None:
    head, middle, tail = "轉載自人民日報", "\ufdfa" * 100_000, "ｖｉａ＠新华社"
    text = head + middle + tail
    found = search_text(text)
    first = normalise(text[:SEARCH_CHARS], window=sys.maxsize).text
    last = normalise(text[-SEARCH_CHARS:], window=sys.maxsize).text
    assert found == f"{first}。{last}"
    assert found.startswith("转载自人民日报") and found.endswith("via@新华社")
    assert len(found) < 2 * 18 * SEARCH_CHARS
