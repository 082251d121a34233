"""A WordPiece tokenizer trained on the normalised in-domain text.

Chinese characters are split one by one (BERT's normaliser puts spaces around them), so the
vocabulary is mostly single characters plus word pieces for Latin-script words and numbers.
Input is already normalised by :func:`service.normalise.normalise`, so the tokenizer itself does
no folding.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tokenizers import (
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def train_tokenizer(texts: Iterable[str], vocab_size: int, min_frequency: int = 3) -> Tokenizer:
    """Train on ``texts``; the alphabet keeps the commonest characters, 3/4 of the vocabulary."""
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    # only the CJK splitting: folding was done by service.normalise
    tok.normalizer = normalizers.BertNormalizer(
        clean_text=False, handle_chinese_chars=True, strip_accents=False, lowercase=False
    )
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=SPECIAL,
        limit_alphabet=vocab_size * 3 // 4,
    )
    tok.train_from_iterator(texts, trainer=trainer)
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
