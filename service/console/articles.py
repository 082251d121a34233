"""The Provisions' articles by reason-code name (``art18`` the article, ``art18.6`` its item 6),
read from ``Settings.regulation_file`` so that a reviewer sees the text a reason rests on, and
those names in a reader's words (:func:`name`) and back (:func:`code`)."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

NUMERALS = "零一二三四五六七八九"
DIGITS = {c: i for i, c in enumerate(NUMERALS)}
ARTICLE = re.compile(r"^第([一二三四五六七八九十百零]+)条\s*(.*)$")
ITEM = re.compile(r"^[(（]([一二三四五六七八九十]+)[)）]")
CODE = re.compile(r"art([1-9]\d?)(?:\.([1-9]\d?))?")
"""An article's or an item's name: ``art18``, ``art18.6``."""


def chinese_number(text: str) -> int:
    """一 … 九十九 (the numbers articles and items use)."""
    if "十" not in text:
        return DIGITS[text]
    tens, _, ones = text.partition("十")
    return (DIGITS[tens] if tens else 1) * 10 + (DIGITS[ones] if ones else 0)


def chinese_numeral(number: int) -> str:
    """1 … 99 as the Provisions number articles and items (:func:`chinese_number` read back)."""
    tens, ones = divmod(number, 10)
    if not tens:
        return NUMERALS[ones]
    return f"{NUMERALS[tens] if tens > 1 else ''}十{NUMERALS[ones] if ones else ''}"


def name(code: str, t: Callable[[str], str]) -> str:
    """An article's (``art18``) or item's (``art18.6``) name in ``t``'s words: Chinese says
    第十八条第六项; any other code as it is."""
    found = CODE.fullmatch(code)
    if found is None:
        return code
    article, item = found.groups()
    words = {"article": article, "article_zh": chinese_numeral(int(article))}
    if item is None:
        return t("article").format(**words)
    return t("article_item").format(**words, item=item, item_zh=chinese_numeral(int(item)))


NUMBERS = {chinese_numeral(n): n for n in range(1, 100)}
"""1 … 99 by their names in :func:`chinese_numeral`'s numbering, the only one :func:`code` reads:
一十八 or 十八十 is no number an article is named by."""
NUMBER = r"([一二三四五六七八九十]+|\d+)"
NAMED = re.compile(rf"第{NUMBER}条(?:\s*第{NUMBER}项)?")
"""An article or item as Chinese names it, 第十八条第六项, in Chinese numerals or digits."""
NUMBERED = re.compile(r"(\d+)(?:\.(\d+))?")
"""An article or item by its numbers alone: 18, 18.6."""


def code(text: str) -> str:
    """The code of the article or item ``text`` names, as :func:`name` names it in either
    language (第十八条第六项, art18.6) or by its numbers (18.6): what a reviewer types a basis as
    is what the pages show. Any other text as it is, for the request model to refuse with its
    reason; a number past the Provisions' articles becomes a code all the same, which the model
    refuses naming what they have (:mod:`service.policy.provisions`)."""
    found = NAMED.fullmatch(text) or NUMBERED.fullmatch(text)
    if found is None:
        return text
    numbers = [NUMBERS.get(n, int(n) if n.isdecimal() else None) for n in found.groups() if n]
    if None in numbers:
        return text
    return "art" + ".".join(str(n) for n in numbers)


def parse(text: str) -> dict[str, str]:
    """``art<n>`` for every article (all its paragraphs), ``art<n>.<i>`` for each item."""
    found: dict[str, list[str]] = {}
    article: str | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        head = ARTICLE.match(line)
        if head:
            article = f"art{chinese_number(head.group(1))}"
            found[article] = [line]
            continue
        if line.startswith("第") and line.endswith("章"):
            article = None
        if article is None:
            continue
        found[article].append(line)
        item = ITEM.match(line)
        if item:
            found[f"{article}.{chinese_number(item.group(1))}"] = [line]
    return {code: "\n".join(lines) for code, lines in found.items()}


def load(path: Path) -> dict[str, str]:
    """The articles, or none when the file cannot be read (the console then shows codes
    only, and says why in the log): the text is a help to reviewers, not a reason to refuse
    to serve."""
    try:
        return parse(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        # a missing file too: the default lies outside the repository, where a deploy may not
        # have put it
        problem = {"path": str(path), "problem": str(exc)}
        log.warning(
            "cannot read the regulation text (regulation_file): the console shows reason codes "
            "without their articles",
            extra=problem,
        )
        return {}
