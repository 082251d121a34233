"""Building the originality corpus: one pass over the real texts, then the composed examples
(:func:`build_corpus`); the package docstring describes the whole construction."""

from __future__ import annotations

import itertools
import random
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, Literal, TypeVar

from service.boilerplate import is_boilerplate
from service.claims import RAW_KEYWORD, rule_label
from service.heads import Head
from training.data import Example, Split, reposts, split_of, weibo16
from training.originality.templates import FILLS, TEMPLATES, fill, usable

HEAD: Head = "originality_claim"
POSITIVE_SHARE = 0.4
"""Share of label-1 examples in the corpus."""
HARD_SHARE = 0.45
"""Share of the label-0 examples that are confusables (the rest are plain texts)."""
MAX_BASE_CHARS = 200
"""Longest base text: with a template around it, it stays inside the classifier's window."""
OVERSAMPLE = 4
"""Base-text reservoir size per example: about half the candidates are boilerplate."""
HANDLE_SAMPLE = 5000
"""Ordinary @handles kept (a uniform sample of their occurrences)."""

Kind = Literal["real-claim", "real-confusable", "composed-claim", "composed-confusable", "plain"]
KINDS: tuple[Kind, ...] = (
    "real-claim",
    "real-confusable",
    "composed-claim",
    "composed-confusable",
    "plain",
)


T = TypeVar("T")


class _Reservoir(Generic[T]):
    """A uniform sample of ``size`` items from a stream of unknown length (Algorithm R)."""

    def __init__(self, size: int, rng: random.Random) -> None:
        self.size = size
        self.items: list[T] = []
        self._seen = 0
        self._rng = rng

    def offer(self, item: T) -> None:
        self._seen += 1
        if len(self.items) < self.size:
            self.items.append(item)
        elif (j := self._rng.randrange(self._seen)) < self.size:
            self.items[j] = item


@dataclass(frozen=True, slots=True)
class _Text:
    text: str
    event: str

    @property
    def split(self) -> Split:
        return split_of(f"originality:{self.event}")


_HANDLE = re.compile(r"@([^\s@:：,，。.!！?？;；、()（）【】\[\]#/\\'\"“”<>《》]{2,20})")
_KEYWORD_HANDLE = re.compile(r"原[创創]|[独獨]家|首[发發]")


@dataclass
class _Scan:
    """What one pass over the real texts keeps."""

    bases: _Reservoir[_Text]
    handles: _Reservoir[str]
    matches: dict[str, tuple[_Text, int]] = field(default_factory=dict)
    """Distinct keyword texts with their rule label, first occurrence kept."""
    keyword_handles: set[str] = field(default_factory=set)

    def add(self, item: _Text) -> None:
        if "@" in item.text:
            self._harvest(item.text)
        label = rule_label(item.text) if RAW_KEYWORD.search(item.text) else None
        if label is None:
            if len(item.text) <= MAX_BASE_CHARS:
                self.bases.offer(item)
        elif item.text not in self.matches and not is_boilerplate(item.text):
            self.matches[item.text] = (item, label)

    def _harvest(self, text: str) -> None:
        for handle in _HANDLE.findall(text):
            if _KEYWORD_HANDLE.search(handle):
                self.keyword_handles.add(handle)
            elif not handle.isdigit() and not RAW_KEYWORD.search(handle):
                self.handles.offer(handle)

    def base_texts(self, n: int, rng: random.Random) -> list[_Text]:
        """``n`` distinct, non-boilerplate base texts in random order."""
        seen: set[str] = set()
        out = []
        for item in self.bases.items:
            if item.text not in seen and not is_boilerplate(item.text):
                seen.add(item.text)
                out.append(item)
        if len(out) < n:
            raise ValueError(f"{len(out)} base texts found, {n} needed: read more reposts")
        rng.shuffle(out)
        return out[:n]

    def pools(self, split: Split) -> dict[str, tuple[str, ...]]:
        """Fill-ins for ``split``: real keyword handles of eval are never used elsewhere."""
        held = split == "eval"
        khandles = tuple(h for h in sorted(self.keyword_handles) if _held_handle(h) == held)
        handles = tuple(sorted(set(self.handles.items)))
        return {**FILLS, "handle": handles, "khandle": khandles}


def _held_handle(handle: str) -> bool:
    return split_of(f"originality-handle:{handle}", calib=0.0, evaluation=1 / 3) == "eval"


def _real_texts(data_dir: Path, max_reposts: int | None) -> Iterator[_Text]:
    for post in weibo16(data_dir):
        yield _Text(post.text, post.group)
    for repost in itertools.islice(reposts(data_dir), max_reposts):
        yield _Text(repost.text, repost.event)


def _scan(data_dir: Path, max_reposts: int | None, seed: int, size: int) -> _Scan:
    scan = _Scan(
        bases=_Reservoir(OVERSAMPLE * size, random.Random(f"{seed}:bases")),
        handles=_Reservoir(HANDLE_SAMPLE, random.Random(f"{seed}:handles")),
    )
    for item in _real_texts(data_dir, max_reposts):
        scan.add(item)
    return scan


# --- composing the corpus ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OriginalityExample(Example):
    """An :class:`Example` that also says how it was made, for :func:`describe` and the tests."""

    kind: Kind
    template: str
    """The :class:`Template` id of a composed example, else empty."""


@dataclass(frozen=True, slots=True)
class _Plan:
    claims: int
    confusables: int
    plain: int


def _plan(size: int, real_claims: int, real_confusables: int) -> _Plan:
    positives = round(POSITIVE_SHARE * size)
    claims = max(0, positives - real_claims)
    confusables = max(0, round(HARD_SHARE * (size - positives)) - real_confusables)
    plain = size - real_claims - real_confusables - claims - confusables
    if plain < 0:
        raise ValueError(f"size {size} is smaller than the real matches and their complement")
    return _Plan(claims, confusables, plain)


def _compose(
    bases: Sequence[_Text],
    label: int,
    pools: Mapping[Split, Mapping[str, Sequence[str]]],
    rng: random.Random,
) -> list[OriginalityExample]:
    """One composed example per base text, families dealt round-robin within each split."""
    kind: Kind = "composed-claim" if label else "composed-confusable"
    families = {split: usable(label, split, p) for split, p in pools.items()}
    dealt: Counter[Split] = Counter()
    out = []
    for base in bases:
        split = base.split
        offered = families[split]
        template = rng.choice(offered[dealt[split] % len(offered)])
        dealt[split] += 1
        text = fill(template, base.text, pools[split], rng)
        out.append(OriginalityExample(text, HEAD, label, split, base.event, kind, template.id))
    return out


def _real(scan: _Scan) -> list[OriginalityExample]:
    kinds: dict[int, Kind] = {1: "real-claim", 0: "real-confusable"}
    return [
        OriginalityExample(item.text, HEAD, label, item.split, item.event, kinds[label], "")
        for item, label in scan.matches.values()
    ]


def build_corpus(
    data_dir: Path, seed: int = 13, size: int = 12000, max_reposts: int | None = None
) -> list[Example]:
    """``size`` labelled examples for ``originality_claim`` (see the module docstring).

    The examples are :class:`OriginalityExample` objects; the same arguments give the same
    list. ``max_reposts`` reads only the first reposts (the tests use it to stay fast).
    """
    scan = _scan(data_dir, max_reposts, seed, size)
    real = _real(scan)
    real_claims = sum(e.label for e in real)
    plan = _plan(size, real_claims, len(real) - real_claims)
    rng = random.Random(f"{seed}:compose")
    bases = scan.base_texts(plan.claims + plan.confusables + plan.plain, rng)
    claim_bases = bases[: plan.claims]
    confusable_bases = bases[plan.claims : plan.claims + plan.confusables]
    plain = [
        OriginalityExample(b.text, HEAD, 0, b.split, b.event, "plain", "")
        for b in bases[plan.claims + plan.confusables :]
    ]
    pools: dict[Split, dict[str, tuple[str, ...]]] = {
        split: scan.pools(split) for split in ("train", "calib", "eval")
    }
    corpus: list[Example] = [
        *real,
        *_compose(claim_bases, 1, pools, rng),
        *_compose(confusable_bases, 0, pools, rng),
        *plain,
    ]
    rng.shuffle(corpus)
    return corpus


def _kind(example: Example) -> Kind:
    if not isinstance(example, OriginalityExample):
        raise TypeError("describe() counts build_corpus() output, whose examples carry a kind")
    return example.kind


def describe(corpus: Iterable[Example]) -> dict[str, dict[str, int]]:
    """Counts for the model card: per split and ``all``, examples, labels and kinds."""
    counts: dict[str, Counter[str]] = {s: Counter() for s in ("all", "train", "calib", "eval")}
    for example in corpus:
        for key in ("all", example.split):
            counts[key].update(("n", f"label_{example.label}", _kind(example)))
    return {
        split: {k: c[k] for k in ("n", "label_1", "label_0", *KINDS)} for split, c in counts.items()
    }


def ordinary_claims(
    corpus: Iterable[Example], rumour_event: Mapping[str, bool], split: Split
) -> list[str]:
    """The composed claims of ``corpus`` whose base text comes from a Weibo16 event of
    ``split`` (Weibo16's own split, not the corpus's) that is no rumour: ordinary posts with an
    originality notice, which give the rumor head no reason to flag them."""
    return [
        e.text
        for e in corpus
        if isinstance(e, OriginalityExample)
        and e.kind == "composed-claim"
        and rumour_event.get(e.group) is False
        and split_of(f"weibo16:{e.group}") == split
    ]


def with_claims(texts: Sequence[str], rng: random.Random) -> list[str]:
    """Each of ``texts`` with an originality notice: one of the train split's claim phrasings
    that need no account handle, families dealt in turn."""
    pools: dict[str, Sequence[str]] = {**FILLS, "handle": (), "khandle": ()}
    families = usable(1, "train", pools)
    return [
        fill(rng.choice(families[i % len(families)]), text, pools, rng)
        for i, text in enumerate(texts)
    ]


def bare_notices() -> list[str]:
    """Every claim phrasing that needs no account handle, around no text at all: the rights
    notices a post may carry, alone, once each."""
    pools: dict[str, Sequence[str]] = {**FILLS, "handle": (), "khandle": ()}
    rng = random.Random("bare-notices")
    phrasings = [t for t in TEMPLATES if t.label == 1 and not t.fills & {"handle", "khandle"}]
    return sorted({out for t in phrasings if (out := fill(t, "", pools, rng).strip())})
