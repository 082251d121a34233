"""Boilerplate: texts that carry nothing of their own.

The default repost texts (``转发微博``, ``Repost``), empty texts, and texts that are nothing but
emoticon codes (``[蜡烛]``), emoji, @mentions, links, repost-chain markers and punctuation. About
half of the real reposts in Weibo16 are such; they are natural duplicates, never coordination,
and carry no signal for language-model pretraining.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

DEFAULT_REPOSTS = frozenset({"转发微博", "轉發微博", "repost", "转发", "轉發"})
MIN_CONTENT_CHARS = 2

SEPARATOR = "\x00"
"""Joins texts that are cleaned in one pass (:func:`join`); no pattern here crosses it."""

_DECORATION = re.compile(
    r"\[[^\[\]\s\x00]{1,8}\]"  # emoticon codes such as [蜡烛]
    r"|//@[^:：\s\x00]{1,30}[:：]?"  # repost chain markers
    r"|@[^\s\x00@:：,，。!！?？]{1,30}"  # mentions
    r"|https?://[^\s\x00]+"
)

_NOT_ALNUM = re.compile(r"[^\w\x00]+|_+")
"""Everything but letters, digits and the separator: ``\\W`` is exactly "not
``str.isalnum()``", bar the underscore."""


def join(texts: Sequence[str]) -> str:
    """``texts`` joined by :data:`SEPARATOR`; a NUL inside a text counts as white space."""
    joined = SEPARATOR.join(texts)
    if joined.count(SEPARATOR) == max(0, len(texts) - 1):
        return joined
    return SEPARATOR.join(t.replace(SEPARATOR, " ") for t in texts)


def contents_joined(joined: str) -> str:
    """The contents of texts joined by :func:`join`, still joined: decorations removed and only
    letters and digits kept, each regex one C-level pass over all the texts."""
    stripped = _DECORATION.sub(" ", unicodedata.normalize("NFKC", joined))
    return _NOT_ALNUM.sub("", stripped).lower()


def content_of(text: str) -> str:
    """The text with decorations removed and only letters and digits kept."""
    return contents_joined(join([text]))


def is_boilerplate(text: str) -> bool:
    content = content_of(text)
    return content in DEFAULT_REPOSTS or len(content) < MIN_CONTENT_CHARS
