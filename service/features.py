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


def _grams(texts: Sequence[str]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Row and bucket id of every character n-gram of ``texts``, with repeats, orders 1 to 3.

    All texts are hashed in one pass over their joined characters (a few numpy operations per
    batch rather than per text); a gram that would run into the next text is dropped.
    """
    lengths = np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))
    codes = np.frombuffer("".join(texts).encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    rows = np.repeat(np.arange(len(texts), dtype=np.int64), lengths)
    # characters left in its text from each position, this one included
    left = np.repeat(np.cumsum(lengths), lengths) - np.arange(len(codes), dtype=np.int64)
    found_rows, found = [], []
    with np.errstate(over="ignore"):
        for n in ORDERS:
            m = len(codes) - n + 1
            if m <= 0:
                break
            h = np.full(m, np.uint64(n), dtype=np.uint64)
            for k in range(n):
                h = h * _P + codes[k : k + m]
            whole = left[:m] >= n
            found_rows.append(rows[:m][whole])
            found.append((_mix(h[whole]) >> np.uint64(64 - BITS)).astype(np.int64))
    if not found:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate(found_rows), np.concatenate(found)


def gram_buckets(text: str) -> npt.NDArray[np.int64]:
    """Bucket ids of every character n-gram of ``text``, with repeats, orders 1 to 3."""
    return _grams([text])[1]


def bag(
    texts: Sequence[str], width: int | None = None
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """Padded ``(ids, counts)`` arrays of shape ``[len(texts), width]``.

    Row ``i`` lists the distinct buckets of ``texts[i]`` in ascending order and how often each
    occurs; padding has id 0 and count 0. ``width`` defaults to the widest row (at least 1).
    """
    rows, buckets = _grams(texts)
    # one sort for the whole batch: a key orders by row, then by bucket
    keys, counted = np.unique((rows << BITS) | buckets, return_counts=True)
    key_rows = keys >> BITS
    per_row = np.bincount(key_rows, minlength=len(texts))
    widest = int(per_row.max()) if len(texts) else 0
    width = max(1, widest if width is None else width)
    column = np.arange(len(keys)) - np.repeat(np.cumsum(per_row) - per_row, per_row)
    kept = column < width
    ids = np.zeros((len(texts), width), dtype=np.int64)
    counts = np.zeros((len(texts), width), dtype=np.float32)
    ids[key_rows[kept], column[kept]] = keys[kept] & (BUCKETS - 1)
    counts[key_rows[kept], column[kept]] = counted[kept]
    return ids, counts
