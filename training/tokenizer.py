"""A WordPiece tokenizer trained on the normalised in-domain text.

Chinese characters are split one by one (BERT's normaliser puts spaces around them), so the
vocabulary is mostly single characters plus word pieces for Latin-script words and numbers.
Input is already normalised by :func:`service.normalise.normalise`, so the tokenizer itself does
no folding.

The vocabulary is built here (:func:`vocabulary`) rather than by the ``tokenizers`` trainer,
whose output depends on hash-map order and so differs from one process to the next on the same
texts (huggingface/tokenizers issue 1794): two ``make train`` runs gave two vocabularies, and
every later step followed. The construction is the trainer's: the alphabet is the commonest
characters, each word (a run the pre-tokenizer keeps whole) starts as its characters with the
continuation prefix ``##`` on all but the first, and the most frequent adjacent pair is merged
into a new piece until the vocabulary is full or no pair occurs ``min_frequency`` times. Ties
are broken by the pieces' text, so the same texts always give the same vocabulary.
"""

from __future__ import annotations

import heapq
import itertools
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path

from tokenizers import (
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
)

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
PREFIX = "##"

Pair = tuple[str, str]


def _words(texts: Sequence[str]) -> Counter[str]:
    """How often each word occurs, split as the tokenizer will split its input."""
    normalizer = _normalizer()
    pre = pre_tokenizers.BertPreTokenizer()
    return Counter(w for t in texts for w, _ in pre.pre_tokenize_str(normalizer.normalize_str(t)))


def alphabet(words: Counter[str], size: int) -> list[str]:
    """The ``size`` commonest characters of ``words``, ties broken by code point, in code-point
    order."""
    counts: Counter[str] = Counter()
    for w, n in words.items():
        for ch in w:
            counts[ch] += n
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:size]
    return sorted(ch for ch, _ in ranked)


def _merged(a: str, b: str) -> str:
    return a + b.removeprefix(PREFIX)


def _pairs(symbols: Sequence[str]) -> Counter[Pair]:
    return Counter(itertools.pairwise(symbols))


def vocabulary(texts: Sequence[str], vocab_size: int, min_frequency: int = 3) -> list[str]:
    """The WordPiece vocabulary of ``texts``, in id order: the special tokens, the alphabet
    (3/4 of ``vocab_size``), the continuation pieces of its characters, then the merges."""
    words = _words(texts)
    chars = alphabet(words, vocab_size * 3 // 4)
    known = set(chars)
    # a character outside the alphabet is dropped from its word, as the trainer drops it
    split = [
        ([c if i == 0 else PREFIX + c for i, c in enumerate(kept)], n)
        for w, n in sorted(words.items())
        if (kept := [c for c in w if c in known])
    ]
    continuations = sorted({s for symbols, _ in split for s in symbols[1:]})
    vocab = [*SPECIAL, *chars, *continuations]
    seen = set(vocab)
    counts: Counter[Pair] = Counter()
    where: defaultdict[Pair, set[int]] = defaultdict(set)
    for i, (symbols, n) in enumerate(split):
        for pair, k in _pairs(symbols).items():
            counts[pair] += n * k
            where[pair].add(i)
    heap = [(-c, pair) for pair, c in counts.items()]
    heapq.heapify(heap)
    while len(vocab) < vocab_size and heap:
        neg, pair = heapq.heappop(heap)
        if counts.get(pair, 0) != -neg:
            continue  # stale: the count changed after this entry was pushed
        if -neg < min_frequency:
            break
        token = _merged(*pair)
        if token not in seen:  # ("ab", "##c") and ("a", "##bc") both make "abc": one id
            vocab.append(token)
            seen.add(token)
        changed: set[Pair] = set()
        for i in sorted(where.pop(pair)):
            changed |= _merge_in(split, i, pair, token, counts, where)
        del counts[pair]
        for p in sorted(changed - {pair}):
            if counts[p] > 0:
                heapq.heappush(heap, (-counts[p], p))
    return vocab


def _merge_in(
    split: list[tuple[list[str], int]],
    i: int,
    pair: Pair,
    token: str,
    counts: Counter[Pair],
    where: defaultdict[Pair, set[int]],
) -> set[Pair]:
    """Merge ``pair`` into ``token`` in word ``i``, keeping the pair counts and the words each
    pair occurs in up to date; return the pairs whose count changed."""
    symbols, n = split[i]
    before = _pairs(symbols)
    merged = _apply(symbols, pair, token)
    after = _pairs(merged)
    split[i] = (merged, n)
    changed = set()
    for p in before.keys() | after.keys():
        delta = after.get(p, 0) - before.get(p, 0)
        if delta:
            counts[p] += n * delta
            changed.add(p)
        if p in after:
            where[p].add(i)
        elif p != pair:
            where[p].discard(i)
    return changed


def _apply(symbols: Sequence[str], pair: Pair, token: str) -> list[str]:
    """``symbols`` with every occurrence of ``pair``, left to right, merged into ``token``."""
    out: list[str] = []
    i = 0
    while i < len(symbols):
        if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == pair:
            out.append(token)
            i += 2
        else:
            out.append(symbols[i])
            i += 1
    return out


def _normalizer() -> normalizers.Normalizer:
    # only the CJK splitting: folding was done by service.normalise
    return normalizers.BertNormalizer(
        clean_text=False, handle_chinese_chars=True, strip_accents=False, lowercase=False
    )


def train_tokenizer(texts: Sequence[str], vocab_size: int, min_frequency: int = 3) -> Tokenizer:
    """The tokenizer over :func:`vocabulary` of ``texts``."""
    vocab = vocabulary(texts, vocab_size, min_frequency)
    tok = Tokenizer(
        models.WordPiece(
            {t: i for i, t in enumerate(vocab)}, unk_token="[UNK]", continuing_subword_prefix=PREFIX
        )
    )
    tok.normalizer = _normalizer()
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.add_special_tokens(SPECIAL)
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    return tok


def special_id(tok: Tokenizer, token: str) -> int:
    found = tok.token_to_id(token)
    if found is None:
        raise ValueError(f"the tokenizer has no {token} token")
    return found


def save(tok: Tokenizer, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tok.save(str(path))
