from __future__ import annotations

from eval.separators import spread
from service.normalise import normalise


def test_spread_puts_the_separator_between_chinese_characters_only() -> None:
    assert spread("求扩散！2012年OK看看", "/") == "求/扩/散！2012年OK看/看"
    # what the service reads of a spread-out post is the post itself
    assert normalise(spread("求扩散！杭州一女孩走失", "、")).text == "求扩散!杭州一女孩走失"
