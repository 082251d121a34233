"""Domain pretraining: masked-language modelling on real Weibo text.

Reads the folder that :mod:`training.corpus` writes (the normalised texts and the tokenizer) and
writes the encoder into a folder, with the recipe fields it was trained under
(``pretraining.json``, which a later ``make train`` compares before reusing it) and what the run
did (``pretraining-run.json``: seconds, steps, final loss, device). Runs on CUDA with bfloat16
autocast when a GPU is there, else on the CPU; the CPU recipe is much shorter (``training.recipe``).

Masking follows BERT: 15% of the tokens are chosen, of which 80% become ``[MASK]``, 10% a random
token and 10% stay; the loss is computed on the chosen positions only, which saves most of the
vocabulary projection.

    python -m training.pretrain FOLDER [--recipe full] [--out DIR] [--half] [--max-seconds S]

This module imports neither the service nor the corpora, so that it runs on a machine that holds
only PyTorch, ``transformers``, ``tokenizers`` and the carried folder.
"""

from __future__ import annotations

import argparse
import json
import logging
import lzma
import math
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer
from transformers import BertConfig, BertForMaskedLM, BertModel

from service.classify import ModelFileError, read_tokenizer
from service.cli.parser import positive_float
from training.recipe import RECIPES, Encoder, Recipe
from training.tokenizer import special_id

log = logging.getLogger(__name__)

PRETRAINING_KEY = "pretraining.json"
PRETRAINING_RUN = "pretraining-run.json"
TOKENIZER_FILE = "tokenizer.json"
TEXTS_FILE = "texts.txt.xz"


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
    """A saved encoder in float32, with the plain attention that ONNX Runtime's fusions
    recognise.

    ``from_pretrained`` would otherwise pick SDPA attention, whose exported graph is not fused,
    and keep the half precision an encoder is carried back from a GPU machine in.
    """
    model: BertModel = BertModel.from_pretrained(
        path, add_pooling_layer=False, attn_implementation="eager", dtype=torch.float32
    )
    return model


def read_texts(folder: Path) -> list[str]:
    """The corpus :mod:`training.corpus` wrote: one normalised text a line."""
    with lzma.open(folder / TEXTS_FILE, "rt", encoding="utf-8") as f:
        return f.read().splitlines()


def _padded(ids: Sequence[list[int]], pad: int, device: torch.device) -> torch.Tensor:
    """All sequences in one padded tensor on ``device``, rows sorted by length."""
    ordered = sorted(ids, key=len)
    x = torch.full((len(ordered), len(ordered[-1])), pad, dtype=torch.long)
    for i, r in enumerate(ordered):
        x[i, : len(r)] = torch.tensor(r)
    return x.to(device)


def _batches(x: torch.Tensor, pad: int, batch: int, gen: torch.Generator) -> Iterator[torch.Tensor]:
    """Endless batches of neighbouring (so similar-length) rows, cut to their longest row, in a
    random order of batches; ``x``'s rows are sorted by length."""
    lengths = (x != pad).sum(dim=1).cpu()
    starts = list(range(0, len(x), batch))
    while True:
        for s in torch.randperm(len(starts), generator=gen).tolist():
            lo = starts[s]
            rows = x[lo : lo + batch]
            yield rows[:, : int(lengths[lo : lo + batch].max())]


def _mask(
    x: torch.Tensor, tok: Tokenizer, rate: float, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """BERT's masking of ``x`` (on any device): inputs, attention mask, labels (-100 = not
    chosen)."""
    pad, mask_id = special_id(tok, "[PAD]"), special_id(tok, "[MASK]")
    attention = torch.ne(x, pad).long()
    special = (x == special_id(tok, "[CLS]")) | (x == special_id(tok, "[SEP]")) | (x == pad)
    chosen = (torch.rand(x.shape, generator=gen, device=x.device) < rate) & ~special
    labels = torch.where(chosen, x, torch.full_like(x, -100))
    roll = torch.rand(x.shape, generator=gen, device=x.device)
    inputs = x.clone()
    inputs[chosen & (roll < 0.8)] = mask_id
    randomised = chosen & (roll >= 0.8) & (roll < 0.9)
    noise = torch.randint(tok.get_vocab_size(), x.shape, generator=gen, device=x.device)
    inputs = torch.where(randomised, noise, inputs)
    return inputs, attention, labels


def _loss(
    model: BertForMaskedLM, inputs: torch.Tensor, attention: torch.Tensor, labels: torch.Tensor
) -> torch.Tensor:
    """Cross-entropy on the chosen positions only (the vocabulary projection is the costly
    part), in float32 whatever the autocast."""
    picked = labels != -100
    hidden = model.bert(input_ids=inputs, attention_mask=attention).last_hidden_state
    logits = model.cls(hidden[picked])
    return torch.nn.functional.cross_entropy(logits.float(), labels[picked])


def pretrain(
    texts: Sequence[str],
    tok: Tokenizer,
    recipe: Recipe,
    out_dir: Path,
    device: torch.device | None = None,
    max_seconds: float | None = None,
    half: bool = False,
) -> dict[str, Any]:
    """Train the encoder by masked-language modelling and save it to ``out_dir``.

    ``max_seconds`` shortens the schedule once the step rate shows that the recipe's steps would
    take longer (the cosine decay is fitted to the steps that fit; the run file says how many
    were done). ``half`` saves the weights in float16 (half the bytes to carry
    back from a GPU machine; :func:`load_encoder` reads them as float32). Returns the run file's
    fields.
    """
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(recipe.seed)
    gen = torch.Generator(device=device).manual_seed(recipe.seed)
    order = torch.Generator().manual_seed(recipe.seed)
    tok.enable_truncation(recipe.pretrain_max_tokens)
    ids = [e.ids for e in tok.encode_batch(list(texts)) if len(e.ids) > 3]
    pad = special_id(tok, "[PAD]")
    x = _padded(ids, pad, device)
    model = BertForMaskedLM(bert_config(recipe.encoder))
    # nn.Module.to: transformers' typed wrapper of ``to`` confuses mypy
    torch.nn.Module.to(model, device)
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.pretrain_lr, weight_decay=0.01)
    steps = recipe.pretrain_steps
    warmup = max(1, steps // 20)

    def lr_at(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / (steps - warmup)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    # bfloat16 autocast on a GPU; on a CPU it would be slower, not faster
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    model.train()
    started, smoothed, done = time.monotonic(), float("nan"), 0
    batches = _batches(x, pad, recipe.pretrain_batch, order)
    while done < steps:
        inputs, attention, labels = _mask(next(batches), tok, recipe.mask_rate, gen)
        with autocast:
            loss = _loss(model, inputs, attention, labels)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        done += 1
        if done % 100 == 1 or done == steps:
            value = loss.item()  # a sync: only every 100 steps
            smoothed = value if math.isnan(smoothed) else 0.8 * smoothed + 0.2 * value
            elapsed = time.monotonic() - started
            if done % 500 == 1 or done == steps:
                log.info("pretrain step %d/%d loss %.3f (%.0fs)", done, steps, smoothed, elapsed)
            if max_seconds is not None and done > warmup:
                if elapsed >= max_seconds:
                    log.warning("stopping at step %d: past %.0fs", done, max_seconds)
                    break
                # fit the schedule to the time left, so that the learning rate still decays
                fits = int(max_seconds * done / elapsed)
                if fits < steps:
                    steps = max(done + 1, fits)
                    log.info("%.0fs allowed: the schedule now ends at step %d", max_seconds, steps)
    encoder = model.bert.half() if half else model.bert
    encoder.save_pretrained(out_dir)
    run = {
        "seconds": round(time.monotonic() - started, 1),
        "steps": done,
        "final_loss": round(smoothed, 4),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "sequences": len(ids),
    }
    (out_dir / PRETRAINING_KEY).write_text(json.dumps(recipe.pretraining_key(), sort_keys=True))
    (out_dir / PRETRAINING_RUN).write_text(json.dumps(run, indent=2) + "\n")
    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.pretrain", description=__doc__)
    parser.add_argument("folder", type=Path, help="texts.txt.xz and tokenizer.json")
    parser.add_argument("--recipe", choices=sorted(RECIPES), default="full")
    parser.add_argument("--out", type=Path, default=None, help="default: the folder itself")
    parser.add_argument("--half", action="store_true", help="save the weights in float16")
    parser.add_argument("--max-seconds", type=positive_float, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    recipe = RECIPES[args.recipe]
    hint = "write it with python -m training.run --prepare-pretraining"
    tok = read_tokenizer(args.folder / TOKENIZER_FILE, hint)
    if not (args.folder / TEXTS_FILE).is_file():
        raise ModelFileError(f"{args.folder / TEXTS_FILE} is missing: {hint}")
    out = args.out or args.folder
    out.mkdir(parents=True, exist_ok=True)
    run = pretrain(read_texts(args.folder), tok, recipe, out, None, args.max_seconds, args.half)
    log.info("wrote %s: %s", out, run)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
