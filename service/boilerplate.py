"""Boilerplate: texts that carry nothing of their own.

The default repost texts (``转发微博``, ``Repost``), empty texts, and texts that are nothing but
emoticon codes (``[蜡烛]``), emoji, @mentions, links, repost-chain markers and punctuation. About
half of the real reposts in Weibo16 are such; they are natural duplicates, never coordination,
and carry no signal for language-model pretraining.
"""

from __future__ import annotations

import re
import unicodedata

DEFAULT_REPOSTS = frozenset({"转发微博", "轉發微博", "repost", "转发", "轉發"})
MIN_CONTENT_CHARS = 2

_DECORATION = re.compile(
    r"\[[^\[\]\s]{1,8}\]"  # emoticon codes such as [蜡烛]
    r"|//@[^:：\s]{1,30}[:：]?"  # repost chain markers
    r"|@[^\s@:：,，。!！?？]{1,30}"  # mentions
    r"|https?://\S+"
)

_NOT_ALNUM = re.compile(r"[\W_]+")


def content_of(text: str) -> str:
    """The text with decorations removed and only letters and digits kept."""
    stripped = _DECORATION.sub(" ", unicodedata.normalize("NFKC", text))
    # \W is exactly "not str.isalnum()", bar the underscore; one regex pass is C-speed
    return _NOT_ALNUM.sub("", stripped).lower()


def is_boilerplate(text: str) -> bool:
    content = content_of(text)
    return content in DEFAULT_REPOSTS or len(content) < MIN_CONTENT_CHARS
