"""Stage 1 of a post's way through: text normalisation.

The classifier and the n-gram features see the same normalised text, built by
:func:`normalise`: format characters dropped (Unicode category Cf: zero-width spaces and
joiners, soft hyphens, byte-order marks), Unicode NFKC (full-width forms, compatibility
characters), lower case, traditional characters to simplified (OpenCC ``t2s``), links folded to
one placeholder, white space, asterisks and middle dots between Chinese characters that each
stand alone dropped ("傻 逼 滚 出 去" and "傻*逼*滚*出*去" are read as "傻逼滚出去"), the separators
of three or more such characters in a row that one separator mark keeps apart dropped ("求/扩/散",
"造.谣.者", "求、扩、散" are read as "求扩散") and other runs of white space folded to one space.
Characters a reader sees as nothing but are not format characters go too: combining grapheme
joiners, Khmer inherent vowels, variation selectors after a Chinese character; Hangul fillers
and the braille blank, shown as blanks, are read as spaces. A reader never
sees a format character, but one between the characters of a word splits every n-gram and
token across it: "傻\u200b逼\u200b滚\u200b出\u200b去" scored 0.875 for incitement where the text a
reader sees scored 0.989, and a claim word written so escaped the originality head. Spaces do
the same in plain sight: "求 扩 散！杭 州 一 女 孩 走 失" scored 0.42 as a rumour where the text
without them scored 0.84, "傻 逼 滚 出 去" 0.71 for incitement, and "【原 创】" and "【原·创】"
claimed nothing. Other marks do the same between lone characters: with "/" between every two
Chinese characters, 55% of the COLD eval comments the model flagged stayed flagged, with "-"
47%, "|" 45%, with "、" 49% of Weibo16's flagged posts, and none of the originality claims
(``python -m eval.separators``; 97.7% or more on the risk heads once runs are joined). A mark
between two lone characters stays ("男/女" is an either-or, "中-美" a pair), and so does one
beside a longer word ("北京、上海、广州"); a list of single characters ("东、南、西、北") reads the
same run together. Marks that end a sentence or clause (。！？，) stay: "杀!杀!杀!" and "是，是，是"
are written so, and the model was trained on them.
Spaces beside words of more than one character stay: Chinese writers put them between
phrases (444 of COLD's 6,431 eval comments have one, 3 a space between lone characters), and
the model was trained on them as they are. Every normalised character keeps the offset of the
original character it came from, so that evidence spans found on the normalised text can be
shown on the text the producer wrote.

The classifier reads a window of ``WINDOW`` normalised characters; a longer text is scored on its
first ``WINDOW`` characters and the record says ``truncated``. Weibo posts are capped at 140
characters and 99% of the comments in the training corpora are under 300, so the window loses
nothing for the content the model was trained on.
"""

from __future__ import annotations

import re
import sys
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

import opencc

WINDOW = 256
URL_PLACEHOLDER = "url"
_READ_AHEAD = 4
"""Source characters read per window character at first: posts up to four windows long (1,024
characters; Weibo's are up to 140) are read whole, in one pass."""
_MARGIN = 16
"""Normalised characters past the window that a prefix must reach for its window to be the whole
text's: a cut affects only the characters next to it (a link folds to the placeholder however
long, space runs to one, an asterisk or space between lone characters reads two either side,
a separated run reads three lone characters,
a traditional phrase is a few characters)."""

SEARCH_CHARS = 1_000
"""Characters read from each end of a long text searched whole (:func:`search_text`): a post of
up to twice this (Weibo's long posts are capped at 2,000) is read whole."""

_URL = re.compile(r"https?://[^\s\u3000-\u303f\uff00-\uffef\u4e00-\u9fff]*", re.IGNORECASE)
_SPACE = re.compile(r"\s+")
HAN = "\u3400-\u4dbf\u4e00-\u9fff"
# white space, asterisks or dots between two Chinese characters that each stand alone: "傻 逼 滚
# 出 去", "傻*逼", "原·创" (NFKC has made the full-width asterisk the ASCII one). Line breaks
# too, unlike a separated run's: one character a line is vertical writing, a word spelt down
# the page past a filter, where a list's items start with a mark
_SPACED_OUT = re.compile(rf"(?<=[{HAN}])(?<![{HAN}]{{2}})[\s*·•・]+(?=[{HAN}](?![{HAN}]))")
SEPARATORS = "/\\|-_.~^+、〜‐‒–—―−"
"""Marks that keep lone Chinese characters apart in a separated run, after NFKC (which makes
"／－．｜" these). Sentence and clause marks are not among them."""
# three or more Chinese characters that each stand alone, kept apart by one of SEPARATORS (the
# same one throughout, white space either side of it or not): "求/扩/散", "求 - 扩 - 散". Not
# across a line break (those str.splitlines breaks at): "我\n- 你\n- 他" is a list, not a word
_SEPARATOR = re.compile(rf"[{re.escape(SEPARATORS)}]")
_IN_LINE_SPACE = r"[^\S\n\r\v\f\x1c-\x1e\x85\u2028\u2029]"
_SEPARATED_RUN = re.compile(
    rf"(?<![{HAN}])[{HAN}](?={_IN_LINE_SPACE}*({_SEPARATOR.pattern}))"
    rf"(?:{_IN_LINE_SPACE}*\1{_IN_LINE_SPACE}*[{HAN}](?![{HAN}])){{2,}}"
)
_INVISIBLE = frozenset("\u034f\u17b4\u17b5")
"""Shown as nothing and not format characters: combining grapheme joiner, Khmer inherent vowels."""
_BLANK = frozenset("\u115f\u1160\u3164\uffa0\u2800")
"""Shown as blanks and not white space: Hangul fillers, the braille blank."""
_HAN_CHAR = re.compile(f"[{HAN}]")


def shows_nothing(ch: str) -> bool:
    """Whether ``ch`` is shown as nothing or as a blank: white space, a control or format
    character (the zero-width space, the word joiner, the byte order mark), a variation
    selector, or one of :data:`_INVISIBLE` and :data:`_BLANK`."""
    return (
        unicodedata.category(ch) in ("Zs", "Zl", "Zp", "Cc", "Cf")
        or ch in _INVISIBLE
        or ch in _BLANK
        or _is_selector(ch)
    )


@dataclass(frozen=True, slots=True)
class Normalised:
    """Normalised text and, for each of its characters, the index of its source character."""

    text: str
    offsets: tuple[int, ...]
    truncated: bool

    def source_span(self, start: int, end: int) -> tuple[int, int]:
        """Map the half-open span ``[start, end)`` of ``text`` to the original text's span."""
        if not 0 <= start < end <= len(self.offsets):
            raise ValueError(f"span [{start}, {end}) is outside the normalised text")
        return self.offsets[start], self.offsets[end - 1] + 1


@lru_cache(maxsize=1)
def _t2s() -> opencc.OpenCC:
    return opencc.OpenCC("t2s")


def _fold_chars(text: str) -> tuple[list[str], list[int]]:
    chars: list[str] = []
    offsets: list[int] = []
    for i, ch in enumerate(text):
        if ch.isascii():
            folded = ch.lower()
        elif ch in _BLANK:
            folded = " "
        elif (
            unicodedata.category(ch) == "Cf"
            or ch in _INVISIBLE
            or (_is_selector(ch) and chars and _HAN_CHAR.match(chars[-1]))
        ):
            continue
        else:
            folded = unicodedata.normalize("NFKC", ch).lower()
        for out in folded:
            chars.append(out)
            offsets.append(i)
    return chars, offsets


def _is_selector(ch: str) -> bool:
    """A variation selector: invisible, it picks a glyph of the character before it."""
    return "\ufe00" <= ch <= "\ufe0f" or "\U000e0100" <= ch <= "\U000e01ef"


def _to_simplified(chars: list[str]) -> list[str]:
    joined = "".join(chars)
    converted: str = _t2s().convert(joined)
    if len(converted) == len(joined):
        return list(converted)
    # phrase conversions that change length would break the offset map: go character by character
    return [c2 if len(c2 := _t2s().convert(c)) == 1 else c for c in chars]


def _replace(
    chars: list[str], offsets: list[int], pattern: re.Pattern[str], repl: str
) -> tuple[list[str], list[int]]:
    text = "".join(chars)
    out_chars: list[str] = []
    out_offsets: list[int] = []
    pos = 0
    for m in pattern.finditer(text):
        out_chars.extend(chars[pos : m.start()])
        out_offsets.extend(offsets[pos : m.start()])
        if m.start() < m.end():
            out_chars.extend(repl)
            out_offsets.extend([offsets[m.start()]] * len(repl))
        pos = m.end()
    out_chars.extend(chars[pos:])
    out_offsets.extend(offsets[pos:])
    return out_chars, out_offsets


def _join_separated(chars: list[str], offsets: list[int]) -> tuple[list[str], list[int]]:
    """Drop the separators (and the white space beside them) of each :data:`_SEPARATED_RUN`;
    its characters keep their offsets."""
    text = "".join(chars)
    if not _SEPARATOR.search(text):  # most texts: the run pattern tries every Chinese character
        return chars, offsets
    dropped = {
        i
        for m in _SEPARATED_RUN.finditer(text)
        for i in range(m.start(), m.end())
        if not _HAN_CHAR.match(text[i])
    }
    if not dropped:
        return chars, offsets
    kept = [i for i in range(len(chars)) if i not in dropped]
    return [chars[i] for i in kept], [offsets[i] for i in kept]


def normalise(text: str, window: int = WINDOW) -> Normalised:
    """Normalise ``text`` for classification, keeping an offset map to the original.

    Only as much of ``text`` is read as its first ``window`` normalised characters need: NFKC
    makes some characters long (U+FDFA is 18 characters), and a post of 10,000 of them
    normalised whole was 180,000 characters, 20 times the work of another post of its length,
    for a window of 256. A prefix :data:`_READ_AHEAD` times the window is read first, then one
    that many times longer, until the normalised prefix outruns the window by :data:`_MARGIN`
    (the context each step reads beyond a character) or the whole text is read: a text whose
    characters fold away (white space, format characters) still shows what follows them. The
    choice between phrase and character conversion to simplified (:func:`_to_simplified`) is
    then made on the prefix read."""
    read = _READ_AHEAD * window
    while read < len(text):
        found = _normalise(text[:read], window + _MARGIN)
        if found.truncated:
            return Normalised(found.text[:window], found.offsets[:window], True)
        read *= _READ_AHEAD
    return _normalise(text, window)


def search_text(text: str) -> str:
    """``text`` normalised for a search that no window bounds (a claim, a credit): whole, or,
    when it is longer than twice :data:`SEARCH_CHARS`, its first and last :data:`SEARCH_CHARS`
    characters each normalised and joined by "。", which no claim or credit pattern runs across.

    A producer writes a claim or a credit at the beginning of a post or at its end, and NFKC
    makes some characters long (U+FDFA is 18 characters): a copy claimed original of 100,000
    of them was 1.8 million characters normalised whole, and took 3.6 s to score where its two
    ends (36,000) take 0.45 s."""
    if len(text) <= 2 * SEARCH_CHARS:
        return normalise(text, window=sys.maxsize).text
    head = normalise(text[:SEARCH_CHARS], window=sys.maxsize).text
    tail = normalise(text[-SEARCH_CHARS:], window=sys.maxsize).text
    return f"{head}。{tail}"


def _normalise(text: str, window: int) -> Normalised:
    chars, offsets = _fold_chars(text)
    chars = _to_simplified(chars)
    chars, offsets = _replace(chars, offsets, _URL, f" {URL_PLACEHOLDER} ")
    # before the spaces: "求/扩/散 转 发" would lose the space after 散 and with it the run's end
    chars, offsets = _join_separated(chars, offsets)
    chars, offsets = _replace(chars, offsets, _SPACED_OUT, "")
    chars, offsets = _replace(chars, offsets, _SPACE, " ")
    start = 1 if chars[:1] == [" "] else 0
    stop = len(chars) - 1 if len(chars) > start and chars[-1] == " " else len(chars)
    chars, offsets = chars[start:stop], offsets[start:stop]
    truncated = len(chars) > window
    return Normalised("".join(chars[:window]), tuple(offsets[:window]), truncated)
