"""Domain pretraining: masked-language modelling on real Weibo text.

The corpus is the non-boilerplate reposts of the Weibo16 events in the ``train`` split plus the
texts (never the labels) of every corpus's ``train`` split, all normalised as at scoring time.
Masking follows BERT: 15% of the tokens are chosen, of which 80% become ``[MASK]``, 10% a random
token and 10% stay; the loss is computed on the chosen positions only, which saves most of the
vocabulary projection on a CPU.
"""

from __future__ import annotations

import itertools
import logging
import math
import random
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer
from transformers import BertConfig, BertForMaskedLM, BertModel

from service.boilerplate import is_boilerplate
from service.normalise import normalise
from training import data
from training.recipe import Encoder, Recipe
from training.tokenizer import special_id

log = logging.getLogger(__name__)


def bert_config(enc: Encoder) -> BertConfig:
    settings: dict[str, Any] = {
        "vocab_size": enc.vocab_size,
        "hidden_size": enc.hidden,
        "num_hidden_layers": enc.layers,
        "num_attention_heads": enc.heads,
        "intermediate_size": enc.intermediate,
        "max_position_embeddings": enc.max_tokens,
        # the plain attention graph is the one ONNX Runtime's BERT fusion recognises
        "attn_implementation": "eager",
    }
    return BertConfig(**settings)


def load_encoder(path: Path) -> BertModel:
    """A saved encoder, with the plain attention that ONNX Runtime's fusions recognise.

    ``from_pretrained`` would otherwise pick SDPA attention, whose exported graph is not fused.
    """
    model: BertModel = BertModel.from_pretrained(
        path, add_pooling_layer=False, attn_implementation="eager"
    )
    return model


def corpus(
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
    return texts


def _batches(ids: list[list[int]], batch: int, rng: random.Random) -> Iterator[list[list[int]]]:
    """Endless batches of similar length (less padding), in a random order of batches."""
    while True:
        order = sorted(range(len(ids)), key=lambda i: (len(ids[i]), rng.random()))
        chunks = [order[i : i + batch] for i in range(0, len(order), batch)]
        rng.shuffle(chunks)
        for chunk in chunks:
            yield [ids[i] for i in chunk]


def _mask(
    rows: list[list[int]], tok: Tokenizer, rate: float, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    pad, mask_id = special_id(tok, "[PAD]"), special_id(tok, "[MASK]")
    x = torch.full((len(rows), width), pad, dtype=torch.long)
    for i, r in enumerate(rows):
        x[i, : len(r)] = torch.tensor(r)
    attention = torch.ne(x, pad).long()
    special = (x == special_id(tok, "[CLS]")) | (x == special_id(tok, "[SEP]")) | (x == pad)
    chosen = (torch.rand(x.shape, generator=gen) < rate) & ~special
    labels = torch.where(chosen, x, torch.full_like(x, -100))
    roll = torch.rand(x.shape, generator=gen)
    inputs = x.clone()
    inputs[chosen & (roll < 0.8)] = mask_id
    randomised = chosen & (roll >= 0.8) & (roll < 0.9)
    inputs[randomised] = torch.randint(
        len(tok.get_vocab()), (int(randomised.sum()),), generator=gen
    )
    return inputs, attention, labels


def pretrain(texts: Sequence[str], tok: Tokenizer, recipe: Recipe, out_dir: Path) -> float:
    """Train the encoder by masked-language modelling; save it to ``out_dir``; final loss."""
    torch.manual_seed(recipe.seed)
    gen = torch.Generator().manual_seed(recipe.seed)
    rng = random.Random(recipe.seed)
    tok.enable_truncation(recipe.pretrain_max_tokens)
    ids = [e.ids for e in tok.encode_batch(list(texts)) if len(e.ids) > 3]
    model = BertForMaskedLM(bert_config(recipe.encoder))
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.pretrain_lr, weight_decay=0.01)
    warmup = max(1, recipe.pretrain_steps // 20)

    def lr_at(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / (recipe.pretrain_steps - warmup)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    model.train()
    started, smoothed = time.monotonic(), float("nan")
    batches = _batches(ids, recipe.pretrain_batch, rng)
    for step in range(recipe.pretrain_steps):
        inputs, attention, labels = _mask(next(batches), tok, recipe.mask_rate, gen)
        hidden = model.bert(input_ids=inputs, attention_mask=attention).last_hidden_state
        picked = labels != -100
        if not picked.any():
            continue
        logits = model.cls(hidden[picked])
        loss = torch.nn.functional.cross_entropy(logits, labels[picked])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        value = loss.item()
        smoothed = value if math.isnan(smoothed) else 0.98 * smoothed + 0.02 * value
        if step % 50 == 0 or step == recipe.pretrain_steps - 1:
            log.info(
                "pretrain step %d/%d loss %.3f (%.0fs)",
                step,
                recipe.pretrain_steps,
                smoothed,
                time.monotonic() - started,
            )
    model.bert.save_pretrained(out_dir)
    return smoothed
