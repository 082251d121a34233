"""Multi-task fine-tuning of the encoder on the residual of the n-gram branch.

Every example carries one head's label. The loss is the binary cross-entropy of that head's
logit ``a_h · wide_h + deep_h`` (:class:`training.model.Scorer`), where ``wide_h`` is fixed: the
out-of-fold n-gram logit for training rows (:func:`training.wide.out_of_fold`) and the full-fit
logit elsewhere. Batches mix the heads; Weibo16 examples are drawn ``weibo_weight`` times an
epoch since that corpus is small. The state with the lowest calibration-split loss (averaged
over heads, so that no corpus dominates by size) is kept. It runs on a GPU where there is one.

A fine-tuning can also run on another machine, as the pretraining can: ``python -m
training.run --prepare-finetuning`` writes its inputs (:func:`save_inputs`), and

    python -m training.finetune WORK/finetune [--lr LR] [--epochs N] [--ordinary N]

fine-tunes them there and writes ``tuned.pt`` (:func:`save_tuned`); copied back into
``WORK/finetune``, a ``python -m training.run`` with the same inputs takes it up instead of
fine-tuning, with the recipe the run was given.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import logging
import math
import random
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from sklearn.metrics import roc_auc_score
from tokenizers import Tokenizer
from transformers import BertConfig, BertModel

from service.cli.parser import non_negative_int, positive_float, positive_int
from service.heads import HEADS
from training.calibrate import fit_temperature, log_loss
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
    """Each row's uncalibrated logit for its own head, on the device the model is on."""
    model.eval()
    device = model.mix.device
    order = sorted(range(len(data)), key=lambda i: len(data[i].ids))
    out = np.zeros(len(data), dtype=np.float32)
    with torch.no_grad():
        for start in range(0, len(order), batch):
            idx = order[start : start + batch]
            ids, mask, head, _, wide = (t.to(device) for t in collate([data[i] for i in idx], pad))
            deep = model.deep(ids, mask).gather(1, head[:, None])[:, 0]
            out[idx] = (model.mix[head] * wide + deep).cpu().numpy()
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
    """Fine-tune ``model`` (on a GPU where there is one) and return it on the CPU."""
    torch.manual_seed(recipe.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device)
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
    log.info(
        "fine-tune on %s: %d steps; calib loss of the n-gram branch alone %.4f",
        device,
        total,
        best_loss,
    )
    started, step = time.monotonic(), 0
    for _ in range(recipe.finetune_epochs):
        for batch in _epoch(train, recipe.finetune_batch, rng):
            model.train()
            ids, mask, head, y, wide = (t.to(device) for t in collate(batch, pad))
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
    return model.cpu()


INPUTS = "inputs.pt"
TUNED = "tuned.pt"
OVERRIDES = {"lr": "finetune_lr", "epochs": "finetune_epochs", "ordinary": "finetune_ordinary"}
"""The recipe fields a fine-tuning elsewhere may set (``--lr`` and so on); the run that takes
it up writes them into the card's recipe."""


@dataclass(frozen=True)
class Inputs:
    """What a fine-tuning starts from: the network, its rows and the recipe."""

    model: Scorer
    splits: dict[str, list[Row]]
    """``train``, ``calib``, and ``ordinary``: ordinary posts, rumor negatives of which the
    first ``recipe.finetune_ordinary`` join the training rows."""
    pad: int
    recipe: Recipe
    key: str
    """A digest of all of the above but the recipe's fine-tuning fields."""

    def train_rows(self) -> list[Row]:
        return self.splits["train"] + self.splits["ordinary"][: self.recipe.finetune_ordinary]

    def run(self) -> Scorer:
        return finetune(self.model, self.train_rows(), self.splits["calib"], self.pad, self.recipe)


def _arrays(data: Sequence[Row]) -> dict[str, npt.NDArray[Any]]:
    return {
        "ids": np.array([i for r in data for i in r.ids], dtype=np.int32),
        "lengths": np.array([len(r.ids) for r in data], dtype=np.int32),
        "head": np.array([r.head for r in data], dtype=np.int32),
        "label": np.array([r.label for r in data], dtype=np.int32),
        "wide": np.array([r.wide for r in data], dtype=np.float32),
        "weight": np.array([r.weight for r in data], dtype=np.int32),
    }


def _rows(a: dict[str, npt.NDArray[Any]]) -> list[Row]:
    ends = np.cumsum(a["lengths"])
    return [
        Row(a["ids"][e - n : e].tolist(), int(h), int(y), float(w), int(k))
        for e, n, h, y, w, k in zip(
            ends, a["lengths"], a["head"], a["label"], a["wide"], a["weight"], strict=True
        )
    ]


def digest(model: Scorer, splits: Mapping[str, Sequence[Row]], pad: int) -> str:
    h = hashlib.sha256(str(pad).encode())
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode() + tensor.detach().cpu().numpy().tobytes())
    for split in sorted(splits):
        for name, array in _arrays(splits[split]).items():
            h.update(f"{split}.{name}".encode() + array.tobytes())
    return h.hexdigest()[:16]


def save_inputs(
    folder: Path, model: Scorer, splits: Mapping[str, Sequence[Row]], pad: int, recipe: Recipe
) -> str:
    """Write a fine-tuning's inputs to ``folder/inputs.pt``; return their key."""
    folder.mkdir(parents=True, exist_ok=True)
    key = digest(model, splits, pad)
    torch.save(
        {
            "key": key,
            "config": model.encoder.config.to_dict(),
            "state": model.state_dict(),
            "splits": {name: _arrays(data) for name, data in splits.items()},
            "pad": pad,
            "recipe": recipe.to_dict(),
        },
        folder / INPUTS,
    )
    log.info("wrote the fine-tuning's inputs (%s) to %s", key, folder)
    return key


def load_inputs(folder: Path) -> Inputs:
    saved = torch.load(folder / INPUTS, weights_only=False)
    config = BertConfig.from_dict(saved["config"])
    config._attn_implementation = "eager"
    model = Scorer(BertModel(config, add_pooling_layer=False))
    model.load_state_dict(saved["state"])
    return Inputs(
        model,
        {name: _rows(a) for name, a in saved["splits"].items()},
        saved["pad"],
        Recipe.from_dict(saved["recipe"]),
        saved["key"],
    )


def save_tuned(
    path: Path, model: Scorer, key: str, overrides: dict[str, Any], seconds: float
) -> None:
    """The tuned parameters, in half precision: a file half the size, with a rounding far
    under the int8 export's. The n-gram branch's buffers are the inputs' own."""
    torch.save(
        {
            "key": key,
            "overrides": overrides,
            "seconds": round(seconds, 1),
            "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
            "params": {n: p.detach().half() for n, p in model.named_parameters()},
        },
        path,
    )


def load_tuned(path: Path, model: Scorer, key: str) -> dict[str, Any] | None:
    """Load a fine-tuning done elsewhere into ``model`` if it was run on the inputs ``key``;
    return what it says of itself (``overrides``, ``seconds``, ``device``), else None."""
    if not path.is_file():
        return None
    tuned = torch.load(path, weights_only=False)
    if tuned["key"] != key:
        log.warning("%s: fine-tuned on other inputs (%s, not %s), unused", path, tuned["key"], key)
        return None
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(tuned["params"][name].float())
    return {k: v for k, v in tuned.items() if k != "params"}


def by_head(
    model: Scorer, data: Sequence[Row], pad: int
) -> Iterator[tuple[str, npt.NDArray[np.float32], npt.NDArray[np.int64]]]:
    """Each head with its rows' logits and labels."""
    z = head_logits(model, data, pad)
    heads = np.array([r.head for r in data])
    y = np.array([r.label for r in data], dtype=np.int64)
    for h, head in enumerate(HEADS):
        yield head, z[heads == h], y[heads == h]


def calib_report(model: Scorer, calib: Sequence[Row], pad: int) -> dict[str, dict[str, float]]:
    """Each head's calibration log loss (after its own temperature) and ROC-AUC."""
    return {
        head: {"loss": log_loss(z, y, fit_temperature(z, y)), "auc": float(roc_auc_score(y, z))}
        for head, z, y in by_head(model, calib, pad)
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.finetune", description=__doc__)
    parser.add_argument("folder", type=Path, help="the folder --prepare-finetuning wrote")
    parser.add_argument("--lr", type=positive_float, default=None)
    parser.add_argument("--epochs", type=positive_int, default=None)
    parser.add_argument(
        "--ordinary", type=non_negative_int, default=None, help="ordinary negatives to add"
    )
    parser.add_argument("--out", default=TUNED, help="file name in FOLDER")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    inputs = load_inputs(args.folder)
    overrides = {
        field: value
        for arg, field in OVERRIDES.items()
        if (value := getattr(args, arg)) is not None
    }
    inputs = replace(inputs, recipe=replace(inputs.recipe, **overrides))
    torch.set_num_threads(inputs.recipe.threads)
    started = time.monotonic()
    model = inputs.run()
    seconds = time.monotonic() - started
    save_tuned(args.folder / args.out, model, inputs.key, overrides, seconds)
    for head, m in calib_report(model, inputs.splits["calib"], inputs.pad).items():
        print(f"{args.out}\t{head}\tcalib loss {m['loss']:.4f}\tAUC {m['auc']:.4f}")
    print(f"{args.out}\t{seconds:.0f}s\t{overrides}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
