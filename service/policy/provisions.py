"""The articles and items of the Provisions that a basis may name, and the check that it does.

A basis names an article, ``art18``, or an item of one, ``art18.6`` (Article 18, item 6). The
Provisions on the Administration of Internet User Public Account Information Services have
:data:`ARTICLES` articles, and only the articles in :data:`ITEMS` list numbered items. The table
is here, not read from the text (``Settings.regulation_file``, which the console shows and may
be missing), so that a confirmation's article and the policy's are checked the same way on
every server; ``tests/test_provisions.py`` compares it with the text.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, Field
from pydantic_core import PydanticCustomError

ARTICLES = 23
"""Articles 1 to 23."""
ITEMS: dict[int, int] = {18: 10}
"""Article: how many numbered items it lists (Article 18's ten things an account may not do)."""

_CODE = re.compile(r"art([1-9]\d*)(?:\.([1-9]\d*))?")


def unknown(code: str) -> str | None:
    """Why ``code`` names no article or item of the Provisions, as a sentence naming it; None
    when it names one."""
    found = _CODE.fullmatch(code)
    if found is None:
        return f"{code!r} is not an article (art18) or an article's item (art18.6)"
    article, item = int(found[1]), found[2]
    if not 1 <= article <= ARTICLES:
        return f"{code!r} names no article of the Provisions: they have articles 1 to {ARTICLES}"
    if item is None:
        return None
    items = ITEMS.get(article, 0)
    if not items:
        listed = ", ".join(f"art{a} (1 to {n})" for a, n in ITEMS.items())
        return f"{code!r} names an item of article {article}, which lists none: only {listed}"
    if not 1 <= int(item) <= items:
        return f"{code!r} names no item of article {article}: it lists items 1 to {items}"
    return None


UNKNOWN = "unknown_article"
"""The error type of a code that names no article or item: its own, so that a form can say so in
its reader's words."""


def _named(code: str) -> str:
    why = unknown(code)
    if why is not None:
        # the reason as context, not as the template, which would read a brace typed in the code
        raise PydanticCustomError(UNKNOWN, "{why}", {"why": why})
    return code


Article = Annotated[
    str,
    # the form in the published schema; the check below says what a code fails on
    Field(examples=["art18.6"], json_schema_extra={"pattern": f"^{_CODE.pattern}$"}),
    AfterValidator(_named),
]
"""An article or item of the Provisions, as a basis names it."""
