"""Stage: fingerprint. Canonical text, character shingles and their MinHash signature.

**Canonical text.** What two copies of one message share once the edits a campaign makes to
evade exact matching are undone: the repost chain (``//@name: ...`` or ``/@name: ...``, quoted
text that is already attributed) is cut off, but not at a ``/@`` inside a link
(``https://www.youtube.com/@name``, which would cut off the whole post); Unicode NFKC;
emoticon codes such as ``[哈哈]``, @mentions and links are removed; only letters and digits are
kept (punctuation, white space and emoji go); lower case; traditional characters become
simplified (OpenCC ``t2s``).

**Boilerplate** never forms or joins a cluster: the default repost texts (``转发微博``,
``Repost``), and any text with fewer than ``min_shingles`` distinct shingles after
canonicalisation (empty, emoticon-only, ``哈哈哈哈``, a two-word comment). Such texts repeat by
nature, so their copies say nothing about coordination.

**Shingles and MinHash.** A text's set ``S`` is its overlapping ``k``-character shingles. Each
shingle's code points are packed into a 64-bit integer (21 bits per character) and folded to 32
bits by the MurmurHash3 64-bit finaliser: :func:`shingle_hash`. The signature is datasketch's
``affine32`` MinHash of that set: with ``h' = fmix32(h)`` and ``num_perm`` odd multipliers
``a_i`` and offsets ``b_i`` drawn from ``seed``, ``sig_i = min over S of (a_i h' + b_i) mod 2^32``.
For two sets, ``P[sig_i(A) = sig_i(B)] = J(A, B)``, the Jaccard similarity, so the share of equal
positions estimates ``J`` with standard error ``sqrt(J(1-J)/num_perm)`` (0.043 at ``J = 0.4``
with 128 permutations).

:meth:`Fingerprinter.signatures` computes exactly what ``datasketch.MinHash(num_perm, seed,
hashfunc=shingle_hash)`` updated shingle by shingle would (a test holds it to that), but for a
whole batch of texts in a few numpy operations: the shingles of all the texts hashed in one pass
over their concatenation, one matrix of every permutation by every shingle of every text, then
``np.minimum.reduceat`` over each text's columns. No Python loop runs over permutations or
shingles.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import numpy.typing as npt
import opencc
from datasketch import LeanMinHash, MinHash

from service.boilerplate import DEFAULT_REPOSTS, SEPARATOR, contents_joined, join

Signature = npt.NDArray[np.uint32]
"""One text's MinHash values (``num_perm`` of them), or a ``[texts, num_perm]`` matrix."""

SCHEME = "affine32"
"""datasketch's permutation scheme: 32-bit values, a bijection per permutation."""

MAX_CHARS = 2000
"""Canonical characters fingerprinted per text: a 100,000-character post costs no more than this,
and copies of a long text share their beginning."""

_ROWS_PER_PASS = 32_768
"""Shingles hashed in one numpy pass: bounds the ``rows x num_perm`` matrix (16 MB at 128)."""

_CHAIN = re.compile(r"(https?://(?:(?!//@)[^\s\x00])+)|/{1,2}\s*@[^\x00]*")
"""A repost chain and the rest of its text (up to the separator of :func:`join`), or a link
(group 1), which is left for :func:`~service.boilerplate.contents_joined` to remove: matched
here only so that a ``/@`` inside it (``youtube.com/@name``) is no chain. A link ends where a
``//@`` chain starts, as Weibo appends one right after a link."""
_M64 = (1 << 64) - 1


@lru_cache(maxsize=1)
def _t2s() -> opencc.OpenCC:
    return opencc.OpenCC("t2s")


def canonical(texts: Sequence[str]) -> list[str]:
    """The texts as they are fingerprinted (see the module's docstring), all of them in one
    pass of each regex and one OpenCC call."""
    if not texts:
        return []
    # links are kept (an unmatched group 1 gives ""), chains cut
    contents = contents_joined(_CHAIN.sub(r"\1", join(texts))).split(SEPARATOR)
    if max(map(len, contents)) > MAX_CHARS:
        contents = [c[:MAX_CHARS] for c in contents]
    # contents hold letters and digits only, so no newline
    converted: str = _t2s().convert("\n".join(contents))
    return converted.split("\n")


def _fmix64_int(x: int) -> int:
    x ^= x >> 33
    x = (x * 0xFF51AFD7ED558CCD) & _M64
    x ^= x >> 33
    x = (x * 0xC4CEB9FE1A85EC53) & _M64
    return x ^ (x >> 33)


def shingle_hash(shingle: str) -> int:
    """The 32-bit hash of one shingle; the reference for the vectorised :func:`_shingle_hashes`."""
    packed = 0
    for ch in shingle:
        packed = (packed << 21) | ord(ch)
    return _fmix64_int(packed) & 0xFFFFFFFF


def _shingle_hashes(texts: Sequence[str], k: int) -> npt.NDArray[np.uint64]:
    """:func:`shingle_hash` of every ``k``-shingle of each text, in order, the texts one after
    another: one pass over their concatenation, less the shingles that straddle two texts."""
    joined = "".join(texts)
    points = np.frombuffer(joined.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    n = len(points) - k + 1
    packed = np.zeros(n, dtype=np.uint64)
    for j in range(k):
        packed = (packed << np.uint64(21)) | points[j : j + n]
    if k > 1 and len(texts) > 1:
        # a shingle starting in a text's last k - 1 characters runs into the next text
        ends = np.cumsum([len(t) for t in texts[:-1]])
        keep = np.ones(n, dtype=bool)
        keep[(ends[:, None] - np.arange(1, k)[None, :]).ravel()] = False
        packed = packed[keep]
    x = packed ^ (packed >> np.uint64(33))
    x = x * np.uint64(0xFF51AFD7ED558CCD)
    x ^= x >> np.uint64(33)
    x = x * np.uint64(0xC4CEB9FE1A85EC53)
    x ^= x >> np.uint64(33)
    return x & np.uint64(0xFFFFFFFF)


def _fmix32(h: npt.NDArray[np.uint32]) -> npt.NDArray[np.uint32]:
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h ^= h >> np.uint32(13)
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


@dataclass(frozen=True)
class Fingerprint:
    """A text's canonical form and whether it may take part in clusters."""

    canonical: str
    boilerplate: bool


class Fingerprinter:
    """Canonical texts and MinHash signatures with fixed ``k``, ``num_perm`` and ``seed``."""

    def __init__(self, k: int = 2, num_perm: int = 128, seed: int = 1, min_shingles: int = 8):
        if not 1 <= k <= 3:
            raise ValueError(f"shingle size must be 1 to 3 characters, not {k}")
        self.k, self.num_perm, self.seed, self.min_shingles = k, num_perm, seed, min_shingles
        a, b = MinHash(num_perm=num_perm, seed=seed, scheme=SCHEME).permutations
        self._a = np.asarray(a, dtype=np.uint32)
        self._b = np.asarray(b, dtype=np.uint32)

    @property
    def version(self) -> str:
        """Names the signature's parameters: signatures of different versions do not compare."""
        return f"{SCHEME}-k{self.k}-p{self.num_perm}-s{self.seed}"

    def fingerprints(self, texts: Sequence[str]) -> list[Fingerprint]:
        return [Fingerprint(c, self.boilerplate(c)) for c in canonical(texts)]

    def boilerplate(self, canon: str) -> bool:
        """Whether the canonical text ``canon`` stays out of clusters (the module's docstring)."""
        if canon in DEFAULT_REPOSTS or len(canon) - self.k + 1 < self.min_shingles:
            return True
        # n distinct characters make at least n - k + 1 distinct shingles: most texts are
        # settled by this bound on their first characters, without building their shingles
        head = self.min_shingles + self.k - 1
        if len(set(canon[:head])) - self.k + 1 >= self.min_shingles:
            return False
        if len(set(canon)) - self.k + 1 >= self.min_shingles:
            return False
        return len(set(self.shingles(canon))) < self.min_shingles

    def shingles(self, canon: str) -> list[str]:
        return [canon[i : i + self.k] for i in range(len(canon) - self.k + 1)]

    def signatures(self, canons: Sequence[str]) -> Signature:
        """``[len(canons), num_perm]`` signatures of canonical texts of ``k`` characters or more."""
        counts = [len(c) - self.k + 1 for c in canons]
        if counts and min(counts) < 1:
            short = next(i for i, n in enumerate(counts) if n < 1)
            raise ValueError(f"text {short} has fewer than {self.k} characters")
        out = np.empty((len(canons), self.num_perm), dtype=np.uint32)
        start = 0
        while start < len(canons):
            # at least one text per pass; MAX_CHARS bounds what one text adds
            stop, rows = start + 1, counts[start]
            while stop < len(canons) and rows + counts[stop] <= _ROWS_PER_PASS:
                rows += counts[stop]
                stop += 1
            flat = _fmix32(_shingle_hashes(canons[start:stop], self.k).astype(np.uint32))
            # permutations by shingles: each text's shingles are a contiguous run of a row,
            # which reduceat takes four times as fast as runs of rows
            permuted = np.multiply.outer(self._a, flat)
            permuted += self._b[:, None]
            offsets = np.cumsum([0, *counts[start : stop - 1]])
            out[start:stop] = np.minimum.reduceat(permuted, offsets, axis=1).T
            start = stop
        return out

    def minhash(self, signature: Signature) -> LeanMinHash:
        """The signature as datasketch's (immutable) MinHash, for its LSH index."""
        return LeanMinHash(seed=self.seed, hashvalues=signature, scheme=SCHEME)


def digest(signature: Signature) -> str:
    """A short name for a text as the window knows it, its signature: what tells an edited
    post's new text from the one kept for its id (:class:`~service.neardup.store.Store`). Two
    texts with one signature differ only in what canonicalisation drops (punctuation, emoji,
    links, mentions): to the window they are one text, and sending one after the other is no
    edit. 64 bits: two texts of one post id share a digest with probability ``2^-64``."""
    return hashlib.blake2b(signature.tobytes(), digest_size=8).hexdigest()


def similarity(signature: Signature, others: Signature) -> npt.NDArray[np.float64]:
    """Estimated Jaccard similarity of one signature to each row of ``others``."""
    equal = np.count_nonzero(others == signature[None, :], axis=1)
    result: npt.NDArray[np.float64] = equal / signature.shape[0]
    return result
