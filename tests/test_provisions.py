from __future__ import annotations

from pathlib import Path

import pytest

from service.console import articles
from service.policy import PolicyError, load_policy
from service.policy.provisions import ARTICLES, ITEMS, unknown
from service.settings import Settings


def test_the_table_of_articles_and_items_is_the_provisions_text(settings: Settings) -> None:
    """The table a basis is checked against names what the text numbers, no more, no less."""
    named = set(articles.load(settings.regulation_file))
    assert named, "the regulation text was not read"
    tabled = {f"art{a}" for a in range(1, ARTICLES + 1)}
    tabled |= {f"art{a}.{i}" for a, n in ITEMS.items() for i in range(1, n + 1)}
    assert named == tabled
    assert all(unknown(code) is None for code in named)


@pytest.mark.parametrize(
    ("code", "said"),
    [
        ("art99", "'art99' names no article of the Provisions: they have articles 1 to 23"),
        ("art24", "'art24' names no article of the Provisions: they have articles 1 to 23"),
        ("art18.11", "'art18.11' names no item of article 18: it lists items 1 to 10"),
        ("art8.3", "'art8.3' names an item of article 8, which lists none: only art18 (1 to 10)"),
        ("art18.6.1", "'art18.6.1' is not an article (art18) or an article's item (art18.6)"),
        ("art018", "'art018' is not an article (art18) or an article's item (art18.6)"),
        ("art18.0", "'art18.0' is not an article (art18) or an article's item (art18.6)"),
        ("Art18", "'Art18' is not an article (art18) or an article's item (art18.6)"),
    ],
)
def test_a_code_the_provisions_do_not_have_is_named_with_what_they_have(
    code: str, said: str
) -> None:
    assert unknown(code) == said


def test_a_policy_resting_on_an_article_the_provisions_do_not_have_is_refused(
    tmp_path: Path, settings: Settings
) -> None:
    text = settings.policy_file.read_text()
    for given, wrong in [
        ('articles = ["art18.5"]', 'articles = ["art18.55"]'),  # a reason's articles
        ('protected_basis = "art8"', 'protected_basis = "art88"'),  # a rule's basis
    ]:
        assert given in text
        broken = tmp_path / "p.toml"
        broken.write_text(text.replace(given, wrong, 1))
        with pytest.raises(PolicyError, match=wrong.split('"')[1]):
            load_policy(broken)
    broken.write_text(text.replace('articles = ["art18.5"]', "articles = []", 1))
    with pytest.raises(PolicyError, match="at least 1 item"):
        load_policy(broken)
