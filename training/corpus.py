"""The pretraining corpus: what the encoder reads before it sees a label.

The non-boilerplate reposts of the Weibo16 events in the ``train`` split plus the texts (never
the labels) of every corpus's ``train`` split, all normalised as at scoring time. The corpus and
the tokenizer trained on it are written to the encoder's work folder, which is all that
:mod:`training.pretrain` needs: ``python -m training.run --prepare-pretraining`` writes that
folder, which can then be carried to a GPU machine and pretrained there.
"""

from __future__ import annotations

import itertools
import lzma
import random
from collections.abc import Sequence
from pathlib import Path

from tokenizers import Tokenizer

from service.boilerplate import is_boilerplate
from service.normalise import normalise
from training import data, tokenizer
from training.pretrain import TEXTS_FILE, TOKENIZER_FILE
from training.recipe import Recipe


def pretraining_texts(
    data_dir: Path,
    labelled: Sequence[data.Example],
    size: int,
    seed: int,
    reposts_limit: int | None = None,
) -> list[str]:
    """Normalised pretraining texts: train-event reposts and train-split texts, shuffled."""
    texts = [normalise(e.text).text for e in labelled if e.split == "train"]
    reposts = [
        r.text
        for r in itertools.islice(data.reposts(data_dir), reposts_limit)
        if data.split_of(f"weibo16:{r.event}") == "train" and not is_boilerplate(r.text)
    ]
    rng = random.Random(seed)
    rng.shuffle(reposts)
    texts += [normalise(t).text for t in reposts[: max(0, size - len(texts))]]
    rng.shuffle(texts)
    # normalisation folds whitespace, so a text never holds a line break: one text per line
    return [t for t in texts if t]


def write(
    data_dir: Path, labelled: Sequence[data.Example], recipe: Recipe, folder: Path
) -> Tokenizer:
    """Build the corpus and its tokenizer into ``folder``; return the tokenizer."""
    texts = pretraining_texts(
        data_dir, labelled, recipe.pretrain_texts, recipe.seed, recipe.reposts_limit
    )
    tok = tokenizer.train_tokenizer(texts[: recipe.tokenizer_texts], recipe.encoder.vocab_size)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save(tok, folder / TOKENIZER_FILE)
    with lzma.open(folder / TEXTS_FILE, "wt", encoding="utf-8", preset=6) as f:
        f.writelines(t + "\n" for t in texts)
    return tok
