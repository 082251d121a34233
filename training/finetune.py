"""Multi-task fine-tuning of the encoder on the residual of the n-gram branch.

Every example carries one head's label. The loss is the binary cross-entropy of that head's
logit ``a_h · wide_h + deep_h`` (:class:`training.model.Scorer`), where ``wide_h`` is fixed: the
out-of-fold n-gram logit for training rows (:func:`training.wide.out_of_fold`) and the full-fit
logit elsewhere. Batches mix the heads; Weibo16 examples are drawn ``weibo_weight`` times an
epoch since that corpus is small. The state with the lowest calibration-split loss (averaged
over heads, so that no corpus dominates by size) is kept.
"""

from __future__ import annotations

import copy
import logging
import math
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from tokenizers import Tokenizer

from service.heads import HEADS
from training.model import Scorer
from training.recipe import Recipe

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Row:
    """A labelled example ready for the encoder: token ids, head index, label, wide logit."""

    ids: list[int]
    head: int
    label: int
    wide: float
    weight: int = 1


def rows(
    texts: Sequence[str],
    heads: Sequence[int],
    labels: Sequence[int],
    wide: npt.NDArray[np.float32],
    weights: Sequence[int],
    tok: Tokenizer,
    max_tokens: int,
) -> list[Row]:
    tok.enable_truncation(max_tokens)
    encoded = tok.encode_batch(list(texts))
    return [
        Row(e.ids, h, y, float(w), k)
        for e, h, y, w, k in zip(encoded, heads, labels, wide, weights, strict=True)
    ]


def collate(batch: Sequence[Row], pad: int) -> tuple[torch.Tensor, ...]:
    width = max(len(r.ids) for r in batch)
    ids = torch.full((len(batch), width), pad, dtype=torch.long)
    for i, r in enumerate(batch):
        ids[i, : len(r.ids)] = torch.tensor(r.ids)
    return (
        ids,
        (ids != pad).long(),
        torch.tensor([r.head for r in batch]),
        torch.tensor([float(r.label) for r in batch]),
        torch.tensor([r.wide for r in batch]),
    )


def _epoch(train: Sequence[Row], batch: int, rng: random.Random) -> Iterator[list[Row]]:
    """One epoch of batches of similar length, batches in random order."""
    pool = [r for r in train for _ in range(r.weight)]
    rng.shuffle(pool)
    window = batch * 50
    batches = []
    for start in range(0, len(pool), window):
        chunk = sorted(pool[start : start + window], key=lambda r: len(r.ids))
        batches += [chunk[i : i + batch] for i in range(0, len(chunk), batch)]
    rng.shuffle(batches)
    yield from batches


def head_logits(model: Scorer, data: Sequence[Row], pad: int, batch: int = 128) -> np.ndarray:
    """Each row's uncalibrated logit for its own head."""
    model.eval()
    order = sorted(range(len(data)), key=lambda i: len(data[i].ids))
    out = np.zeros(len(data), dtype=np.float32)
    with torch.no_grad():
        for start in range(0, len(order), batch):
            idx = order[start : start + batch]
            ids, mask, head, _, wide = collate([data[i] for i in idx], pad)
            deep = model.deep(ids, mask).gather(1, head[:, None])[:, 0]
            out[idx] = (model.mix[head] * wide + deep).numpy()
    return out


def calib_loss(model: Scorer, calib: Sequence[Row], pad: int) -> float:
    z = torch.from_numpy(head_logits(model, calib, pad))
    y = torch.tensor([float(r.label) for r in calib])
    heads = np.array([r.head for r in calib])
    losses = [
        float(torch.nn.functional.binary_cross_entropy_with_logits(z[m], y[m]))
        for h in range(len(HEADS))
        if (m := torch.from_numpy(heads == h)).any()
    ]
    return sum(losses) / len(losses)


def finetune(
    model: Scorer, train: Sequence[Row], calib: Sequence[Row], pad: int, recipe: Recipe
) -> Scorer:
    torch.manual_seed(recipe.seed)
    rng = random.Random(recipe.seed)
    per_epoch = math.ceil(sum(r.weight for r in train) / recipe.finetune_batch)
    total = per_epoch * recipe.finetune_epochs
    checks = max(1, per_epoch // recipe.finetune_checks)
    opt = torch.optim.AdamW(
        [
            {"params": model.encoder.parameters(), "lr": recipe.finetune_lr},
            {"params": [*model.head.parameters(), model.mix], "lr": recipe.finetune_lr * 5},
        ],
        weight_decay=0.01,
    )
    warmup = max(1, total // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warmup, max(0.0, (total - s) / (total - warmup)))
    )
    best_loss, best_state = calib_loss(model, calib, pad), copy.deepcopy(model.state_dict())
    log.info("fine-tune: %d steps; calib loss of the n-gram branch alone %.4f", total, best_loss)
    started, step = time.monotonic(), 0
    for _ in range(recipe.finetune_epochs):
        for batch in _epoch(train, recipe.finetune_batch, rng):
            model.train()
            ids, mask, head, y, wide = collate(batch, pad)
            deep = model.deep(ids, mask).gather(1, head[:, None])[:, 0]
            loss = torch.nn.functional.binary_cross_entropy_with_logits(
                model.mix[head] * wide + deep, y
            )
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            step += 1
            if step % checks == 0 or step == total:
                current = calib_loss(model, calib, pad)
                log.info(
                    "fine-tune step %d/%d calib loss %.4f (%.0fs)",
                    step,
                    total,
                    current,
                    time.monotonic() - started,
                )
                if current < best_loss:
                    best_loss, best_state = current, copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    return model
