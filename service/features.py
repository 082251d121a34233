"""Hashed character n-grams: the input of the classifier's n-gram branch.

Each character 1-, 2- and 3-gram of the normalised text is hashed to one of ``2**BITS``
buckets. A gram ``c_1 … c_n`` hashes as a 64-bit polynomial ``h = ((n·P + c_1)·P + c_2)…``
(wrapping arithmetic; ``n`` in the seed keeps the three orders apart), finished with the
SplitMix64 mixer, whose top ``BITS`` bits give the bucket. The same function runs at training
and at scoring time, and is deterministic across processes (Python's ``hash`` is salted).

With ``2**18`` buckets the collisions cost nothing measurable: a sublinear TF-IDF + logistic
regression on these buckets matches the same model on the exact n-gram vocabulary on COLD,
ToxiCN and Weibo16 (see ``models/card.md``).

The model itself computes the TF-IDF weights from the bucket ids and counts returned here, so
the IDF table travels inside the ONNX file.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

BITS = 18
BUCKETS = 1 << BITS
ORDERS = (1, 2, 3)
_P = np.uint64(0x100000001B3)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def _mix(h: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    h = h ^ (h >> np.uint64(30))
    h = h * _M1
    h = h ^ (h >> np.uint64(27))
    h = h * _M2
    return h ^ (h >> np.uint64(31))


def gram_buckets(text: str) -> npt.NDArray[np.int64]:
    """Bucket ids of every character n-gram of ``text``, with repeats, orders 1 to 3."""
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    parts = []
    with np.errstate(over="ignore"):
        for n in ORDERS:
            if len(codes) < n:
                break
            h = np.full(len(codes) - n + 1, np.uint64(n), dtype=np.uint64)
            for k in range(n):
                h = h * _P + codes[k : len(codes) - n + 1 + k]
            parts.append(_mix(h) >> np.uint64(64 - BITS))
    if not parts:
        return np.zeros(0, dtype=np.int64)
    return np.concatenate(parts).astype(np.int64)


def bag(
    texts: Sequence[str], width: int | None = None
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """Padded ``(ids, counts)`` arrays of shape ``[len(texts), width]``.

    Row ``i`` lists the distinct buckets of ``texts[i]`` and how often each occurs; padding has
    id 0 and count 0. ``width`` defaults to the widest row (at least 1).
    """
    uniq = [np.unique(gram_buckets(t), return_counts=True) for t in texts]
    widest = max((len(u[0]) for u in uniq), default=0)
    width = max(1, widest if width is None else width)
    ids = np.zeros((len(texts), width), dtype=np.int64)
    counts = np.zeros((len(texts), width), dtype=np.float32)
    for i, (u, c) in enumerate(uniq):
        k = min(len(u), width)
        ids[i, :k] = u[:k]
        counts[i, :k] = c[:k]
    return ids, counts
