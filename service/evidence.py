"""Evidence spans: which characters drove a head's score, found by occlusion on the ONNX model.

A window of the normalised text is weighed by the drop in the head's log-odds when the window is
deleted: ``z(text) - z(text without window)``, ``z`` being the classifier's calibrated log-odds
(:meth:`service.classify.Classifier.log_odds`), ``z(text)`` computed by the search's first model
call (not taken from the record's score, which a confirmed-rumour match may have raised), and
only there: its second call runs the windows' variants alone. Log-odds rather than
probability, because a confidently flagged post does not move its probability: at 0.9999 hiding
its whole claim may leave 0.999, a drop of 0.0009, where its log-odds fall by 2.3. They come
from the model itself, not from its probabilities, as float32 rounds log-odds past about 16.6 to
a probability of exactly 1.

Windows of the fine grid (:func:`fine_windows`: equal widths of at least two characters, so that
a two-character word can be hidden whole, with half-width steps rounded down, about ``WINDOWS``
of them, or up to 70 on texts of 49-72 characters, whose three-character windows step by one)
are searched coarse to fine (:func:`search`): first the text is cut into non-overlapping coarse
windows of two fine widths; then only the fine windows that overlap a coarse window whose drop,
for any of the heads searched, is at least ``COARSE_SHARE`` of that head's largest (and over
``MIN_DROP``) are weighed, for every head in one call, and each head chooses among all of them
(a window weighed for one head costs the others nothing, and may show a drop that the head's own
coarse windows gave back). A coarse window hides whatever a fine window inside it hides, so a
phrase that drives the score shows in its coarse window first; the searches part where hiding
more of the text gives the score back. Against weighing every fine window (``python -m
eval.evidence``), a quarter of the largest coarse drop gave the same spans on 87-93% of flagged
posts for 1.4-1.6 times less work, half of it 61-78% for 1.7-1.9 times. A text of at most
``ONE_STAGE`` fine windows is weighed on all of them at once. A model call runs its rows in
ONNX runs of at most :data:`service.classify.LOG_ODDS_CHARS` characters. ``python -m
eval.evidence_cost`` weighs the search as it was before (the text run again in the second call,
each head choosing among its own fine windows, a call one ONNX run) against this one, on the
Weibo16 source posts.

The keep rule (:func:`choose`): windows whose drop is at least half the largest drop and at
least ``MIN_DROP`` are kept, overlapping or touching ones merged, and the strongest
``MAX_SPANS`` returned, mapped back to the offsets of the text the producer wrote (at most
``MAX_SPANS`` spans a head there too: :func:`spans`).

The risk heads read a post without its rights notices (:func:`service.claims.body_ranges`), so
the text searched is that body (:func:`spans`), and a window's weight is the drop in what they
scored. Searched with its notice, a variant that deleted part of the notice could leave the rest
no notice, for the heads to read, and the drop went to characters they never score: the post
"大家好。这帮人都是垃圾，滚出我们城市，恶心死了！！本文为原创，首发于本公众号，转载请联系授权。"
got an incitement span on "，转" of 2.50, and 12 of 120 flagged Weibo16 posts given that notice
a span reaching into it. Leaving out the windows that meet a notice instead would still spend
the grid's width on the notice and weigh windows across its edge.

:class:`Remembered` keeps what the search chose for recent texts, so that copies of one text
are searched once.
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Protocol

import numpy as np
import numpy.typing as npt

from service.claims import body_ranges
from service.classify import Probabilities
from service.heads import HEADS, Head
from service.normalise import Normalised
from service.record import Span

WINDOWS = 48
MIN_DROP = 0.1
"""In log-odds: 0.025 of probability where a score sits at the review point of 0.5."""
MAX_SPANS = 3
ONE_STAGE = 12
COARSE_SHARE = 0.25
REMEMBERED = 20_000
"""Texts x heads whose chosen windows :class:`Remembered` keeps: a few MB."""

Window = tuple[int, int]
Drops = npt.NDArray[np.float64]
Chosen = list[tuple[int, int, float]]
"""``(start, end, drop)`` of the windows a search keeps, in text order."""


class Predictor(Protocol):
    """What the search needs of a :class:`service.classify.Classifier`."""

    def log_odds(self, texts: Sequence[str], heads: Sequence[Head] = HEADS) -> Probabilities:
        """The log-odds of ``heads`` (the other columns need not be computed)."""
        ...


def fine_windows(length: int) -> list[Window]:
    """The fine grid over a text of ``length`` characters."""
    width = max(2, math.ceil(2 * length / WINDOWS))
    step = max(1, width // 2)
    return [(s, min(s + width, length)) for s in range(0, max(1, length - width + step), step)]


def coarse_windows(length: int, fine: Sequence[Window]) -> list[Window]:
    """Non-overlapping windows of two fine widths covering the text."""
    width = 2 * (fine[0][1] - fine[0][0])
    return [(s, min(s + width, length)) for s in range(0, length, width)]


def head_log_odds(
    classifier: Predictor, texts: Sequence[str], heads: Sequence[Head]
) -> npt.NDArray[np.float64]:
    """``[len(texts), len(heads)]``: each head's log-odds of each text, in one model call (a
    text with a rights notice, which deleting a window may make of a body, is run as its body
    alone where ``heads`` are risk heads)."""
    z = classifier.log_odds(texts, heads)[:, [HEADS.index(h) for h in heads]]
    return np.asarray(z, dtype=np.float64)


def deleted(text: str, windows: Sequence[Window]) -> list[str]:
    """``text`` without each of ``windows``."""
    return [text[:s] + text[e:] for s, e in windows]


def log_odds_drops(
    classifier: Predictor, text: str, windows: Sequence[Window], heads: Sequence[Head]
) -> Drops:
    """``[len(windows), len(heads)]``: each head's drop in log-odds when each window is deleted
    from ``text``; one model call of ``len(windows) + 1`` rows."""
    z = head_log_odds(classifier, [text, *deleted(text, windows)], heads)
    return np.asarray(z[0] - z[1:])


def kept(drops: Drops, share: float = 0.5) -> npt.NDArray[np.bool_]:
    """Which windows the keep rule keeps, from one head's ``drops``: those within ``share`` of
    the largest drop and over ``MIN_DROP``."""
    return np.asarray(drops >= max(MIN_DROP, float(drops.max()) * share))


def choose(windows: Sequence[Window], drops: Drops) -> Chosen:
    """``(start, end, drop)`` of the strongest ``MAX_SPANS`` runs of kept windows (one head's
    ``drops``), merged where they overlap or touch, in text order."""
    merged: Chosen = []
    for (s, e), keep, d in zip(windows, kept(drops), drops, strict=True):
        if not keep:
            continue
        if merged and merged[-1][1] >= s:
            ps, pe, pd = merged[-1]
            merged[-1] = (ps, max(pe, e), max(pd, float(d)))
        else:
            merged.append((s, e, float(d)))
    strongest = sorted(merged, key=lambda m: -m[2])[:MAX_SPANS]
    return sorted(strongest)


def weigh_all(
    classifier: Predictor, text: str, windows: Sequence[Window], heads: Sequence[Head]
) -> dict[Head, Chosen]:
    """Each head's chosen windows among ``windows``, all weighed in one call."""
    drops = log_odds_drops(classifier, text, windows, heads)
    return {h: choose(windows, drops[:, k]) for k, h in enumerate(heads)}


def search(classifier: Predictor, text: str, heads: Sequence[Head]) -> dict[Head, Chosen]:
    """Each head's chosen windows of ``text``, coarse to fine (module docstring)."""
    fine = fine_windows(len(text))
    if not heads or len(fine) < 2:
        return {h: [] for h in heads}
    if len(fine) <= ONE_STAGE:
        return weigh_all(classifier, text, fine, heads)
    coarse = coarse_windows(len(text), fine)
    z = head_log_odds(classifier, [text, *deleted(text, coarse)], heads)
    base, coarse_drops = z[0], z[0] - z[1:]
    hot = np.any([kept(coarse_drops[:, k], COARSE_SHARE) for k in range(len(heads))], axis=0)
    hits = [w for w, hit in zip(coarse, hot, strict=True) if hit]
    rows = [(s, e) for s, e in fine if any(s < he and hs < e for hs, he in hits)]
    if not rows:
        return {h: [] for h in heads}
    # one call for every head's candidates, without the text: its log-odds are the first call's
    drops = base - head_log_odds(classifier, deleted(text, rows), heads)
    return {h: choose(rows, drops[:, k]) for k, h in enumerate(heads)}


class Remembered:
    """What :func:`search` chose, by the text searched (a normalised text without its rights
    notices) and head, for the last ``size`` texts and heads searched.

    Copies of one text (a coordinated batch posted by many accounts, a chain of reposts) are
    searched once; a coordinated batch is also when the evidence backlog fills. Texts are kept
    as 16-byte BLAKE2 digests, so that memory does not grow with their lengths. One instance
    serves one model's searches, from any thread.
    """

    def __init__(self, size: int = REMEMBERED) -> None:
        self.size = size
        self._chosen: OrderedDict[tuple[bytes, Head], Chosen] = OrderedDict()
        self._lock = threading.Lock()

    def search(self, classifier: Predictor, text: str, heads: Sequence[Head]) -> dict[Head, Chosen]:
        digest = hashlib.blake2b(text.encode(), digest_size=16).digest()
        with self._lock:
            known = {h: self._chosen[digest, h] for h in heads if (digest, h) in self._chosen}
            for h in known:
                self._chosen.move_to_end((digest, h))
        missing = [h for h in heads if h not in known]
        if not missing:
            return known
        found = search(classifier, text, missing)
        with self._lock:
            self._chosen.update(((digest, h), c) for h, c in found.items())
            while len(self._chosen) > self.size:
                self._chosen.popitem(last=False)
        return known | found


def spans(
    classifier: Predictor,
    norm: Normalised,
    original: str,
    heads: list[Head],
    remembered: Remembered,
) -> dict[Head, list[Span]]:
    """For each of ``heads``, the spans of ``original`` that drove its score.

    The risk heads read a text without its rights notices (:func:`service.claims.body_ranges`),
    so the search runs on that body: a window of a notice would weigh characters those heads
    never score. A window that runs across a notice inside the body comes back as its parts on
    either side of it, each with the window's weight; a head still gets at most ``MAX_SPANS``
    spans, the strongest windows' parts (in text order within a window), so that a post with
    notices between its sentences shows no more evidence than one without."""
    ranges = body_ranges(norm.text)
    if ranges is None:
        ranges = [(0, len(norm.text))]
    body = "".join(norm.text[s:e] for s, e in ranges)
    out: dict[Head, list[Span]] = {}
    for head, found in remembered.search(classifier, body, heads).items():
        strongest = sorted(found, key=lambda chosen: -chosen[2])
        parts = [(part, d) for s, e, d in strongest for part in in_text(ranges, s, e)]
        out[head] = []
        for part, d in sorted(parts[:MAX_SPANS]):
            start, end = norm.source_span(*part)
            out[head].append(
                Span(start=start, end=end, text=original[start:end], weight=round(d, 4))
            )
    return out


def in_text(ranges: Sequence[Window], start: int, end: int) -> list[Window]:
    """The span ``[start, end)`` of the text made of ``ranges`` of another, as spans of that
    other text: one a range it meets."""
    parts: list[Window] = []
    at = 0  # where the range starts in the text made of them
    for s, e in ranges:
        lo, hi = max(start, at), min(end, at + e - s)
        if lo < hi:
            parts.append((s + lo - at, s + hi - at))
        at += e - s
    return parts
