"""Across datasets: the recipe fine-tuned on COLD alone and tested on ToxiCN, and back.

COLD's dev split is close to its training data, so a gain there proves little; a model that
learned offensive language rather than one corpus's surface should hold up on the other corpus.
This reruns the recipe's n-gram branch and fine-tuning (from the same pretrained encoder in the
training work folder) on one incitement corpus, and scores the other corpus's eval split; the
baseline is fitted on the same corpus. Accuracy is at probability 0.5 (logit 0).

    python -m eval.crossdata [--work runs/full]
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer

from eval import baseline
from eval.quality import Dataset, Row, score, table
from service.classify import CARD_FILE, TOKENIZER_FILE, read_tokenizer, require_model
from service.heads import HEADS
from service.normalise import normalise
from service.settings import settings_or_exit
from training import data, wide
from training.finetune import finetune, head_logits
from training.model import Scorer
from training.pretrain import load_encoder
from training.recipe import FULL
from training.run import fit_wide, split_rows
from training.tokenizer import special_id

log = logging.getLogger(__name__)


def transfer(source: Dataset, target: Dataset, work: Path, tok: Tokenizer) -> list[Row]:
    recipe = replace(FULL, finetune_epochs=1)
    torch.manual_seed(recipe.seed)
    examples = [e for e in source.examples if e.split != "eval"]
    texts = [normalise(e.text).text for e in examples]
    idf, coef, bias, logits, _ = fit_wide(texts, examples, recipe)
    model = Scorer.over(load_encoder(work / "encoder"), idf, coef, bias)
    by_split = split_rows(texts, examples, logits, tok, recipe)
    pad = special_id(tok, "[PAD]")
    model = finetune(model, by_split["train"], by_split["calib"], pad, recipe)

    target_texts, y = target.split("eval")
    h = HEADS.index(target.head)
    target_wide = wide.design(target_texts, idf) @ coef[:, h] + bias[h]
    target_examples = [e for e in target.examples if e.split == "eval"]
    rows = split_rows(target_texts, target_examples, target_wide, tok, recipe)["eval"]
    p_model = 1 / (1 + np.exp(-head_logits(model, rows, pad).astype(np.float64)))
    train_x, train_y = source.split("train")
    calib_x, calib_y = source.split("calib")
    p_base = baseline.predict(baseline.fit(train_x, train_y, calib_x, calib_y), target_texts)
    subset = f"trained on {source.name}"
    return [
        score(target.name, subset, "model recipe (PyTorch)", y, p_model),
        score(target.name, subset, "baseline, dataset alone", y, p_base),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.crossdata", description=__doc__)
    parser.add_argument("--work", type=Path, default=Path("runs/full"))
    parser.add_argument("--card", type=Path, default=None, help="model folder to describe")
    args = parser.parse_args(argv)
    d = data.require(
        settings_or_exit(parser.prog).data_dir, (data.COLD_TRAIN, data.COLD_DEV, data.TOXICN)
    )
    hint = "pretrain one with python -m training.run --work WORK"
    tok = read_tokenizer(args.work / "encoder" / TOKENIZER_FILE, hint)
    if args.card:
        # its card is written to only after hours of fine-tuning
        require_model(args.card)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(FULL.threads)
    cold = Dataset("COLD", "incitement", data.cold(d))
    toxicn = Dataset("ToxiCN", "incitement", data.toxicn(d))
    rows = transfer(cold, toxicn, args.work, tok) + transfer(toxicn, cold, args.work, tok)
    result = table(rows)
    print(result)
    if args.card:
        card = json.loads((args.card / CARD_FILE).read_text())
        card["crossdata"] = result
        (args.card / CARD_FILE).write_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
