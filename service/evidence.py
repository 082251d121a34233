"""Evidence spans: which characters drove a head's score, found by occlusion on the ONNX model.

The normalised text is cut into at most ``SEGMENTS`` consecutive segments of equal width (at
least two characters). Each variant deletes one segment; the drop in the head's probability,
``p(text) - p(text without segment)``, is that segment's weight. Segments whose drop is at least
half the largest drop (and above ``MIN_DROP``) are kept, adjacent ones merged, and the strongest
``MAX_SPANS`` are returned, mapped back to the offsets of the text the producer wrote. All
variants of one text go through the model as one batch, so a flagged post costs one more model
call of at most ``SEGMENTS`` rows.
"""

from __future__ import annotations

import math

from service.classify import Classifier
from service.heads import HEADS, Head
from service.normalise import Normalised
from service.record import Span

SEGMENTS = 24
MIN_DROP = 0.02
MAX_SPANS = 3


def _segments(length: int) -> list[tuple[int, int]]:
    width = max(2, math.ceil(length / SEGMENTS))
    return [(s, min(s + width, length)) for s in range(0, length, width)]


def spans(
    classifier: Classifier, norm: Normalised, original: str, heads: list[Head], base: list[float]
) -> dict[Head, list[Span]]:
    """For each of ``heads`` (scored ``base``), the spans of ``original`` that drove it."""
    segments = _segments(len(norm.text))
    if not heads or len(segments) < 2:
        return {h: [] for h in heads}
    variants = [norm.text[:s] + norm.text[e:] for s, e in segments]
    probs = classifier.predict(variants)
    out: dict[Head, list[Span]] = {}
    for head, p in zip(heads, base, strict=True):
        col = HEADS.index(head)
        drops = [p - float(q) for q in probs[:, col]]
        top = max(drops)
        keep = [d >= max(MIN_DROP, top / 2) for d in drops]
        merged: list[tuple[int, int, float]] = []
        for (s, e), k, d in zip(segments, keep, drops, strict=True):
            if not k:
                continue
            if merged and merged[-1][1] == s:
                ps, _, pd = merged[-1]
                merged[-1] = (ps, e, max(pd, d))
            else:
                merged.append((s, e, d))
        merged.sort(key=lambda m: -m[2])
        result = []
        for s, e, d in merged[:MAX_SPANS]:
            start, end = norm.source_span(s, e)
            result.append(Span(start=start, end=end, text=original[start:end], weight=round(d, 4)))
        out[head] = sorted(result, key=lambda sp: sp.start)
    return out
