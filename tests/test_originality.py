"""The ``originality_claim`` corpus: templates the rule labeller agrees with, held-out templates,
splits and balance.

The corpus tests build from the real data directory, reading only the first ``MAX_REPOSTS``
reposts (the source posts are always read) so that they run in seconds.
"""

from __future__ import annotations

import random
import re
from collections import defaultdict
from pathlib import Path

import pytest

from service.claims import has_claim_words, rule_label
from service.normalise import normalise
from service.settings import get_settings
from training.data import Example, split_of
from training.originality import (
    HARD_SHARE,
    POSITIVE_SHARE,
    TEMPLATES,
    OriginalityExample,
    Template,
    bare_notices,
    build_corpus,
    describe,
    ordinary_claims,
    with_claims,
)

MAX_REPOSTS = 20000
SIZE = 2000
BASE_HALVES = ("今天天气不错，", "出去走走")
FILLS = {
    "t": "".join(BASE_HALVES),
    "a": BASE_HALVES[0],
    "b": BASE_HALVES[1],
    "outlet": "澎湃新闻",
    "platform": "爱奇艺",
    "brand": "伊利",
    "team": "国安",
    "player": "武磊",
    "singer": "李宇春",
    "handle": "小鱼689",
    "khandle": "我的独家记忆",
    "e": "👍",
}


@pytest.fixture(scope="module")
def data_dir() -> Path:
    return get_settings().data_dir


@pytest.fixture(scope="module")
def corpus(data_dir: Path) -> list[OriginalityExample]:
    examples = build_corpus(data_dir, size=SIZE, max_reposts=MAX_REPOSTS)
    assert all(isinstance(e, OriginalityExample) for e in examples)
    return [e for e in examples if isinstance(e, OriginalityExample)]


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda t: t.id)
def test_rules_agree_with_every_template(template: Template) -> None:
    """The composed labels and the rule labels of real texts mean the same thing."""
    text = re.sub(r"\{(\w+)\}", lambda m: FILLS[m.group(1)], template.pattern)
    assert rule_label(text) == template.label


def test_every_claim_holds_a_claim_word(corpus: list[OriginalityExample]) -> None:
    """What lets the classifier score claims only where a claim word is: the corpus has no
    claim without one, composed (every phrasing, held out or not) or real."""
    claims = [e for e in corpus if e.label == 1]
    assert {e.kind for e in claims} == {"composed-claim", "real-claim"}
    assert all(has_claim_words(normalise(e.text).text) for e in claims)
    phrasings = [t for t in TEMPLATES if t.label == 1]
    assert all(has_claim_words(normalise(t.fixed).text) for t in phrasings)


def test_about_a_third_of_each_family_is_held_out() -> None:
    families: dict[str, list[bool]] = defaultdict(list)
    for template in TEMPLATES:
        families[template.family].append(template.held_out)
    for family, held in families.items():
        assert 0.25 <= sum(held) / len(held) <= 0.4, family


def test_held_out_phrasings_never_reach_train_or_calib(corpus: list[OriginalityExample]) -> None:
    held = {t.id: t for t in TEMPLATES if t.held_out}
    fitted = [e for e in corpus if e.split != "eval" and not e.kind.startswith("real")]
    assert fitted
    assert not [e for e in fitted if e.template in held]
    for template in held.values():
        if rule_label(template.fixed) is not None:  # a phrase no base text can contain
            assert not [e.text for e in fitted if template.fixed in e.text], template.id


def test_eval_is_composed_from_held_out_templates_only(corpus: list[OriginalityExample]) -> None:
    held = {t.id for t in TEMPLATES if t.held_out}
    composed = [e for e in corpus if e.kind.startswith("composed")]
    assert {e.split for e in composed} == {"train", "calib", "eval"}
    for example in composed:
        assert (example.template in held) == (example.split == "eval"), example


def test_build_is_deterministic(data_dir: Path, corpus: list[OriginalityExample]) -> None:
    assert build_corpus(data_dir, size=SIZE, max_reposts=MAX_REPOSTS) == corpus


def test_groups_never_straddle_splits(corpus: list[OriginalityExample]) -> None:
    splits: dict[str, set[str]] = defaultdict(set)
    for example in corpus:
        splits[example.group].add(example.split)
        assert example.split == split_of(f"originality:{example.group}")
        assert example.head == "originality_claim"
    assert all(len(s) == 1 for s in splits.values())


def test_label_balance_and_hard_negatives(corpus: list[OriginalityExample]) -> None:
    counts = describe(corpus)["all"]
    assert counts["n"] == len(corpus) == SIZE
    assert abs(counts["label_1"] / counts["n"] - POSITIVE_SHARE) < 0.02
    hard = counts["real-confusable"] + counts["composed-confusable"]
    assert hard / counts["label_0"] >= min(HARD_SHARE - 0.02, 1 / 3)
    assert counts["label_1"] == counts["real-claim"] + counts["composed-claim"]


def test_eval_has_both_labels_and_both_kinds_of_negatives(
    corpus: list[OriginalityExample],
) -> None:
    counts = describe(corpus)["eval"]
    assert counts["composed-claim"] and counts["composed-confusable"] and counts["plain"]
    assert 0.25 <= counts["label_1"] / counts["n"] <= 0.55


def test_real_and_plain_texts_carry_their_rule_labels(corpus: list[OriginalityExample]) -> None:
    for example in corpus:
        if example.kind.startswith("real"):
            assert rule_label(example.text) == example.label
        elif example.kind == "plain":
            assert rule_label(example.text) is None and example.label == 0


def test_texts_are_distinct(corpus: list[OriginalityExample]) -> None:
    assert len({e.text for e in corpus}) == len(corpus)


def test_describe_needs_corpus_examples() -> None:
    with pytest.raises(TypeError):
        describe([Example("原创", "originality_claim", 1, "train", "g")])


def test_ordinary_claims_are_composed_claims_of_non_rumour_events_of_the_split(
    corpus: list[OriginalityExample],
) -> None:
    events = {e.group for e in corpus}
    # every other event a rumour: the claims on its reposts repeat it
    rumour = {g: i % 2 == 0 for i, g in enumerate(sorted(events))}
    for split in ("train", "calib"):
        texts = set(ordinary_claims(corpus, rumour, split))
        expected = {
            e.text
            for e in corpus
            if e.kind == "composed-claim"
            and not rumour[e.group]
            and split_of(f"weibo16:{e.group}") == split
        }
        assert texts == expected and texts
    assert ordinary_claims(corpus, {}, "train") == []


def test_with_claims_gives_each_text_a_train_notice() -> None:
    texts = [f"今天第{i}次去公园散步，天气很好" for i in range(60)]
    noticed = with_claims(texts, random.Random(0))
    assert noticed == with_claims(texts, random.Random(0))
    assert all(rule_label(t) == 1 for t in noticed)
    # the text is kept, whole or around the notice
    assert all(t.split("，")[0][:4] in n for t, n in zip(texts, noticed, strict=True))
    held = {t.fixed for t in TEMPLATES if t.held_out}
    assert not any(f in n for n in noticed for f in held if len(f) > 3)


def test_bare_notices_are_distinct_claims_around_no_text() -> None:
    notices = bare_notices()
    assert len(notices) == len(set(notices)) > 0
    claims = {t.id for t in TEMPLATES if t.label == 1 and not t.fills & {"handle", "khandle"}}
    assert len(notices) <= len(claims)
    for notice in notices:
        assert notice == notice.strip() and "{" not in notice
        assert rule_label(notice) == 1, notice
