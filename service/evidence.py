"""Evidence spans: which characters drove a head's score, found by occlusion on the ONNX model.

Windows of equal width (at least two characters, so that a two-character word can be hidden
whole) slide over the normalised text with half-width steps, at most ``WINDOWS`` of them. Each
variant deletes one window; the drop in the head's probability, ``p(text) - p(text without
window)``, is that window's weight; ``p(text)`` is the classifier's own, computed in the same
batch (not the record's score, which a confirmed-rumour match may have raised). Windows whose
drop is at least half the largest drop (and above ``MIN_DROP``) are kept, overlapping or touching
ones merged, and the strongest ``MAX_SPANS`` are returned, mapped back to the offsets of the text
the producer wrote. The text and its variants go through the model as one batch, so a flagged
post costs one more model call of at most ``WINDOWS + 1`` rows.
"""

from __future__ import annotations

import math

from service.classify import Classifier
from service.heads import HEADS, Head
from service.normalise import Normalised
from service.record import Span

WINDOWS = 48
MIN_DROP = 0.02
MAX_SPANS = 3


def _windows(length: int) -> list[tuple[int, int]]:
    width = max(2, math.ceil(2 * length / WINDOWS))
    step = max(1, width // 2)
    return [(s, min(s + width, length)) for s in range(0, max(1, length - width + step), step)]


def spans(
    classifier: Classifier, norm: Normalised, original: str, heads: list[Head]
) -> dict[Head, list[Span]]:
    """For each of ``heads``, the spans of ``original`` that drove its score."""
    windows = _windows(len(norm.text))
    if not heads or len(windows) < 2:
        return {h: [] for h in heads}
    variants = [norm.text[:s] + norm.text[e:] for s, e in windows]
    probs = classifier.predict([norm.text, *variants])
    out: dict[Head, list[Span]] = {}
    for head in heads:
        col = HEADS.index(head)
        p = float(probs[0, col])
        drops = [p - float(q) for q in probs[1:, col]]
        top = max(drops)
        keep = [d >= max(MIN_DROP, top / 2) for d in drops]
        merged: list[tuple[int, int, float]] = []
        for (s, e), k, d in zip(windows, keep, drops, strict=True):
            if not k:
                continue
            if merged and merged[-1][1] >= s:
                ps, _, pd = merged[-1]
                merged[-1] = (ps, max(merged[-1][1], e), max(pd, d))
            else:
                merged.append((s, e, d))
        merged.sort(key=lambda m: -m[2])
        result = []
        for s, e, d in merged[:MAX_SPANS]:
            start, end = norm.source_span(s, e)
            result.append(Span(start=start, end=end, text=original[start:end], weight=round(d, 4)))
        out[head] = sorted(result, key=lambda sp: sp.start)
    return out
