"""``make train``: from ``../shared/data`` to ``models/``, every step, reproducibly.

    python -m training.run [--recipe auto|full|cpu|smoke] [--out models] [--work runs/full]
                           [--init-from DIR] [--prepare-pretraining]
                           [--refit HEAD | --thresholds]

Steps: corpora and splits → originality corpus → pretraining corpus → tokenizer → masked-LM
pretraining → n-gram branch (full fit and out-of-fold logits) → multi-task fine-tuning →
temperature calibration → the rumor head refit with ordinary posts as negatives and its two
branches weighed on ordinary posts (:mod:`training.refit`) → ONNX export, fusion, int8
quantisation → parity check → operating points from the exported model's scores
(:mod:`training.calibrate`) → ``card.json``. The figures against the baseline are added to the
card by ``python -m eval.crossdata --card`` and ``python -m eval --card`` (``make train`` runs
all three). ``--refit`` and ``--thresholds`` change an exported model in place instead
(:mod:`training.in_place`).
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tokenizers import Tokenizer
from transformers import BertModel

from service.classify import (
    CARD_FILE,
    MODEL_FILE,
    TOKENIZER_FILE,
    content_hash,
    load_tokenizer,
    model_inputs,
    require_model,
)
from service.heads import HEADS, Head
from service.normalise import WINDOW, normalise
from service.settings import settings_or_exit
from training import calibrate, corpus, data, originality, pretrain, refit, tokenizer, wide
from training.export import export, int8_cost, optimise_and_quantise, parity
from training.finetune import (
    TUNED,
    Inputs,
    Row,
    by_head,
    digest,
    head_logits,
    load_tuned,
    rows,
    save_inputs,
)
from training.in_place import (
    REFIT_KEYS,
    claim_probe,
    exported_points,
    ordinary_calib,
    refit_in_place,
    thresholds_in_place,
    write_policy_thresholds,
)
from training.model import Scorer
from training.recipe import CPU, FULL, RECIPES, Recipe
from training.tokenizer import special_id

log = logging.getLogger("training")


def labelled(data_dir: Path, recipe: Recipe) -> list[data.Example]:
    """Every labelled example, optionally capped per head and split (the smoke run)."""
    examples = [
        *data.weibo16(data_dir),
        *data.cold(data_dir),
        *data.toxicn(data_dir),
        *originality.build_corpus(
            data_dir, recipe.seed, recipe.originality_size, recipe.reposts_limit
        ),
    ]
    if recipe.limit_per_head is None:
        return examples
    kept: dict[tuple[str, str], list[data.Example]] = defaultdict(list)
    rng = random.Random(recipe.seed)
    rng.shuffle(examples)
    for e in examples:
        bucket = kept[(e.head, e.split)]
        if len(bucket) < recipe.limit_per_head:
            bucket.append(e)
    return [e for bucket in kept.values() for e in bucket]


def fit_wide(
    texts: Sequence[str], examples: Sequence[data.Example], recipe: Recipe
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, float]]:
    """IDF, per-head coefficients, each example's wide logit (out-of-fold on train), and the
    ``C`` chosen for each head."""
    train_texts = [t for t, e in zip(texts, examples, strict=True) if e.split == "train"]
    idf = wide.idf_table(train_texts)
    x = wide.design(texts, idf)
    coef = np.zeros((len(idf), len(HEADS)), dtype=np.float32)
    bias = np.zeros(len(HEADS), dtype=np.float32)
    logits = np.zeros(len(examples), dtype=np.float32)
    chosen: dict[str, float] = {}
    for h, head in enumerate(HEADS):
        idx = np.array([i for i, e in enumerate(examples) if e.head == head], dtype=np.int64)
        if not len(idx):
            continue  # a run on some corpora only (eval.crossdata): this head stays at zero
        y = np.array([examples[i].label for i in idx], dtype=np.int64)
        fit_rows = idx[[examples[i].split == "train" for i in idx]]
        calib_rows = idx[[examples[i].split == "calib" for i in idx]]
        y_fit = y[[examples[i].split == "train" for i in idx]]
        y_calib = y[[examples[i].split == "calib" for i in idx]]
        c = wide.choose_c(x[fit_rows], y_fit, x[calib_rows], y_calib, recipe.wide_c)
        chosen[head] = c
        coef[:, h], bias[h] = wide.fit(x[fit_rows], y_fit, c)
        logits[idx] = x[idx] @ coef[:, h] + bias[h]
        logits[fit_rows] = wide.out_of_fold(x[fit_rows], y_fit, c, recipe.wide_folds, recipe.seed)
    return idf, coef, bias, logits, chosen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.run", description=__doc__)
    parser.add_argument(
        "--recipe",
        choices=[AUTO, *sorted(RECIPES)],
        default=AUTO,
        help="full (pretraining sized for a GPU), cpu (short pretraining), smoke (tests); "
        "auto: full with a GPU or an encoder pretrained for it in WORK, else cpu",
    )
    parser.add_argument(
        "--prepare-pretraining",
        action="store_true",
        help="only write the pretraining corpus and tokenizer to WORK/encoder "
        "(to pretrain elsewhere with python -m training.pretrain)",
    )
    parser.add_argument(
        "--prepare-finetuning",
        action="store_true",
        help="only write the fine-tuning's inputs to WORK/finetune "
        "(to fine-tune elsewhere with python -m training.finetune)",
    )
    parser.add_argument("--data", type=Path, default=None, help="corpora (default: settings)")
    parser.add_argument("--out", type=Path, default=Path("models"))
    parser.add_argument("--work", type=Path, default=Path("runs/full"))
    parser.add_argument(
        "--init-from",
        type=Path,
        default=None,
        help="a BERT checkpoint on disk (config.json, weights, tokenizer.json) to start from",
    )
    exported = parser.add_mutually_exclusive_group()
    exported.add_argument(
        "--refit",
        choices=REFIT_KEYS,
        default=None,
        help="only refit this head's n-gram branch of the model in OUT, in place "
        "(training.refit), for a model trained before its data changed: rumor with ordinary "
        "negatives and its two branches weighed on ordinary posts, incitement without "
        "ToxiCN's reporting rows",
    )
    exported.add_argument(
        "--thresholds",
        action="store_true",
        help="only derive every head's operating point again from the model in OUT "
        "(training.calibrate), in place",
    )
    args = parser.parse_args(argv)
    settings = settings_or_exit(parser.prog)
    data_dir = data.require(args.data or settings.data_dir)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    name = args.recipe
    if name == AUTO:
        # only a training run from scratch pretrains; the others keep the full recipe's fields
        pretrains = not (
            args.prepare_pretraining or args.refit or args.thresholds or args.init_from
        )
        name = choose_recipe(args.work) if pretrains else "full"
    recipe = RECIPES[name]
    if args.prepare_pretraining:
        corpus.write(data_dir, labelled(data_dir, recipe), recipe, args.work / "encoder")
        return 0
    # only the shipped model moves the policy's thresholds
    ships = recipe is not RECIPES["smoke"] and args.out.resolve() == settings.model_dir.resolve()
    if args.thresholds or args.refit:
        # both read the corpora for minutes before they load it
        require_model(args.out)
    if args.thresholds:
        thresholds_in_place(args.out, data_dir, recipe, settings.policy_file if ships else None)
        return 0
    if args.refit:
        refit_in_place(
            args.out, data_dir, recipe, settings.policy_file if ships else None, args.refit
        )
        return 0
    train(
        recipe,
        data_dir,
        args.out,
        args.work,
        args.init_from,
        settings.policy_file if ships else None,
        prepare_finetuning=args.prepare_finetuning,
    )
    return 0


def export_int8(
    model: Scorer,
    out: Path,
    work: Path,
    texts: Sequence[str],
    examples: Sequence[data.Example],
    recipe: Recipe,
) -> tuple[dict[str, float], dict[str, Any]]:
    """Export ``model`` to ONNX in ``work``, fuse and quantise it into ``out``; return the
    largest probability difference from PyTorch of each graph, and int8's cost on eval."""
    probe_texts = [t for t, e in zip(texts, examples, strict=True) if e.split == "eval"][:64]
    batch = model_inputs(load_tokenizer(out / TOKENIZER_FILE), probe_texts)
    fp32 = work / "model.fp32.onnx"
    export(model, batch, fp32)
    optimise_and_quantise(fp32, out / MODEL_FILE, recipe.encoder.heads, recipe.encoder.hidden)
    parity_max = {
        "fp32": parity(model, fp32, batch),
        "int8": parity(model, out / MODEL_FILE, batch),
    }
    cost = int8_cost_on_eval(fp32, out / MODEL_FILE, texts, examples)
    torch.save(model.state_dict(), work / "scorer.pt")
    return parity_max, cost


def int8_cost_on_eval(
    fp32: Path, int8: Path, texts: Sequence[str], examples: Sequence[data.Example]
) -> dict[str, dict[str, dict[str, float]]]:
    rows = [i for i, e in enumerate(examples) if e.split == "eval"]
    tok = load_tokenizer(int8.parent / TOKENIZER_FILE)
    feeds = [
        model_inputs(tok, [texts[i] for i in rows[s : s + 64]]) for s in range(0, len(rows), 64)
    ]
    return int8_cost(
        fp32,
        int8,
        feeds,
        [HEADS.index(examples[i].head) for i in rows],
        [examples[i].label for i in rows],
    )


def encoder_and_tokenizer(
    recipe: Recipe,
    data_dir: Path,
    examples: Sequence[data.Example],
    work: Path,
    init_from: Path | None,
) -> tuple[BertModel, Tokenizer, dict[str, Any]]:
    """A checkpoint from disk, or a tokenizer and encoder pretrained from scratch, and what the
    pretraining run did (``{}`` for a checkpoint).

    The pretrained encoder is kept in ``work/encoder`` with the recipe fields it depends on; a
    later run whose fields match reuses it (one pretrained on a GPU machine, for instance)
    instead of pretraining again.
    """
    if init_from is not None:
        tok = Tokenizer.from_file(str(init_from / TOKENIZER_FILE))
        return pretrain.load_encoder(init_from), tok, {}
    cache = work / "encoder"
    if pretrained_for(recipe, work):
        log.info("reusing the pretrained encoder in %s", cache)
    else:
        if not torch.cuda.is_available() and recipe.pretrain_steps > CPU.pretrain_steps:
            log.warning(
                "no GPU: %d pretraining steps of %d texts will take many hours on this CPU "
                "(--recipe cpu pretrains %d steps; or pretrain on a GPU machine, see "
                "docs/classifier.md)",
                recipe.pretrain_steps,
                recipe.pretrain_batch,
                CPU.pretrain_steps,
            )
        tok = corpus.write(data_dir, examples, recipe, cache)
        pretrain.pretrain(pretrain.read_texts(cache), tok, recipe, cache)
    tok = Tokenizer.from_file(str(cache / TOKENIZER_FILE))
    run = json.loads((cache / pretrain.PRETRAINING_RUN).read_text())
    return pretrain.load_encoder(cache), tok, run


def pretrained_for(recipe: Recipe, work: Path) -> bool:
    """Whether ``work/encoder`` holds an encoder pretrained under ``recipe``'s fields."""
    key = work / "encoder" / pretrain.PRETRAINING_KEY
    return key.is_file() and key.read_text() == json.dumps(recipe.pretraining_key(), sort_keys=True)


AUTO = "auto"


def choose_recipe(work: Path) -> str:
    """``--recipe auto``: the full recipe where its pretraining is at hand (a GPU, or an encoder
    pretrained for it in ``work``), else the CPU recipe, whose whole run took 14 minutes on
    two cores where the full pretraining would take many hours."""
    if torch.cuda.is_available() or pretrained_for(FULL, work):
        return "full"
    log.warning(
        "no GPU and no encoder pretrained for the full recipe in %s: the cpu recipe "
        "(%d pretraining steps) it is; see docs/classifier.md to pretrain on a GPU machine",
        work / "encoder",
        CPU.pretrain_steps,
    )
    return "cpu"


def split_rows(
    texts: Sequence[str],
    examples: Sequence[data.Example],
    wide_logits: np.ndarray,
    tok: Tokenizer,
    recipe: Recipe,
) -> dict[str, list[Row]]:
    all_rows = rows(
        texts,
        [HEADS.index(e.head) for e in examples],
        [e.label for e in examples],
        wide_logits,
        [round(recipe.weibo_weight) if e.head == "rumor" else 1 for e in examples],
        tok,
        recipe.finetune_max_tokens,
    )
    out: dict[str, list[Row]] = defaultdict(list)
    for r, e in zip(all_rows, examples, strict=True):
        out[e.split].append(r)
    return out


def fine_tuned(
    model: Scorer, splits: dict[str, list[Row]], pad: int, recipe: Recipe, folder: Path
) -> tuple[Scorer, Recipe, dict[str, Any] | None]:
    """The model fine-tuned here, or by ``python -m training.finetune`` elsewhere on the same
    inputs (``folder/tuned.pt``); the recipe as it ran; what the run elsewhere says of itself."""
    key = digest(model, splits, pad)
    elsewhere = load_tuned(folder / TUNED, model, key)
    if elsewhere is None:
        return Inputs(model, splits, pad, recipe, key).run(), recipe, None
    log.info("took up the fine-tuning in %s: %s", folder / TUNED, elsewhere)
    return model, replace(recipe, **elsewhere["overrides"]), elsewhere


def finetuning_rows(
    texts: Sequence[str],
    examples: Sequence[data.Example],
    wide_logits: np.ndarray,
    negatives: Sequence[str],
    model: Scorer,
    tok: Tokenizer,
    recipe: Recipe,
) -> dict[str, list[Row]]:
    """The fine-tuning's train and calib rows, and ``ordinary``: ordinary posts as rumor
    negatives, with the rumor column's logit (they are none of its training rows) and
    Weibo16's weight."""
    by_split = split_rows(texts, examples, wide_logits, tok, recipe)
    h = HEADS.index("rumor")
    column = model.wide.coef[:, h].numpy()
    logits = (wide.design(negatives, model.wide.idf.numpy()) @ column).astype(np.float32)
    n, weight = len(negatives), round(recipe.weibo_weight)
    ordinary = rows(
        negatives,
        [h] * n,
        [0] * n,
        logits + float(model.wide.bias[h]),
        [weight] * n,
        tok,
        recipe.finetune_max_tokens,
    )
    return {"train": by_split["train"], "calib": by_split["calib"], "ordinary": ordinary}


def gate_heads(model: Scorer, calib: Sequence[Row], pad: int) -> dict[str, bool]:
    """Keep the encoder's correction for a head only where it lowers that head's calibration
    loss (each side with its own temperature); elsewhere the head is the n-gram branch alone."""
    z = head_logits(model, calib, pad)
    heads = np.array([r.head for r in calib])
    y = np.array([r.label for r in calib], dtype=np.int64)
    wide_only = np.array([r.wide for r in calib]) * model.mix.detach().numpy()[heads]
    kept: dict[str, bool] = {}
    for h, head in enumerate(HEADS):
        m = heads == h
        losses = [
            calibrate.log_loss(v[m], y[m], calibrate.fit_temperature(v[m], y[m]))
            for v in (z, wide_only)
        ]
        kept[head] = losses[0] < losses[1]
        log.info("%s: calib loss with encoder %.4f, n-gram branch alone %.4f", head, *losses)
        if not kept[head]:
            with torch.no_grad():
                model.head.weight[h].zero_()
                model.head.bias[h].zero_()
    return kept


def calibrate_heads(model: Scorer, calib: Sequence[Row], pad: int) -> dict[str, float]:
    """Fit, set and return each head's temperature."""
    out = {head: calibrate.fit_temperature(z, y) for head, z, y in by_head(model, calib, pad)}
    model.temperature.copy_(torch.tensor([out[h] for h in HEADS]))
    return out


def refit_rumor(
    model: Scorer,
    texts: Sequence[str],
    examples: Sequence[data.Example],
    calib: Sequence[Row],
    tok: Tokenizer,
    data_dir: Path,
    recipe: Recipe,
    idf: np.ndarray,
    negatives: list[str],
    ordinary: Sequence[str],
) -> tuple[refit.Refit, float, bool]:
    """Refit the module's rumor head with ordinary negatives and originality claims, held to
    the ``ordinary`` posts of calibration events (:mod:`training.refit`); return the refit, the
    head's new temperature, and whether the encoder's correction is still part of the head."""
    h = refit.RUMOR
    pad = special_id(tok, "[PAD]")
    own = [r for r in calib if r.head == h]
    z = head_logits(model, own, pad)
    deep = z - model.mix[h].item() * np.array([r.wide for r in own], dtype=np.float32)
    posts = {
        s: (
            [t for t, e in zip(texts, examples, strict=True) if e.head == "rumor" and e.split == s],
            np.array([e.label for e in examples if e.head == "rumor" and e.split == s]),
        )
        for s in ("train", "calib")
    }
    probe = claim_probe(ordinary, recipe)
    offered = refit.claims(data_dir, examples, recipe.claim_negatives, probe, recipe.seed)

    def correction(texts: Sequence[str]) -> np.ndarray:
        # with a zero n-gram logit, a row's head logit is the correction alone
        zeros = np.zeros(len(texts), dtype=np.float32)
        ones = [1] * len(texts)
        probe = rows(texts, [h] * len(texts), ones, zeros, ones, tok, recipe.finetune_max_tokens)
        return head_logits(model, probe, pad)

    def fit(deep: np.ndarray) -> refit.Refit:
        return refit.fit_rumor(
            posts, negatives, offered, correction, idf, deep, z, recipe.wide_c,
            ordinary_weight=recipe.ordinary_weight,
        )  # fmt: skip

    try:
        fitted = fit(deep)
    except refit.CorrectionError:
        # as gate_heads does for a correction that does not help: the n-gram branch alone
        with torch.no_grad():
            model.head.weight[h].zero_()
            model.head.bias[h].zero_()
        deep = np.zeros_like(deep)
        fitted = fit(deep)
    state = model.state_dict()
    with torch.no_grad():
        for name, value in fitted.values({n: state[n].numpy() for n in refit.TENSORS}).items():
            state[name].copy_(torch.from_numpy(value))
    return fitted, 1 / fitted.b, bool(np.ptp(deep) > 0)


def operating_points(
    out: Path, examples: Sequence[data.Example], ordinary: Sequence[str]
) -> dict[Head, dict[str, Any]]:
    """Each head's operating point from the exported model in ``out`` on its calibration
    examples and on the ``ordinary`` posts of calibration events
    (:func:`training.calibrate.operating_point`)."""
    calib = {h: refit.splits_of([e for e in examples if e.head == h])["calib"] for h in HEADS}
    return exported_points(out, calib, ordinary)


def train(
    recipe: Recipe,
    data_dir: Path,
    out: Path,
    work: Path,
    init_from: Path | None = None,
    policy_file: Path | None = None,
    prepare_finetuning: bool = False,
) -> dict[str, Any] | None:
    """Train, export and describe a model in ``out``; update ``policy_file``'s thresholds.

    A fine-tuning done elsewhere on this run's inputs (``work/finetune/tuned.pt``) is taken up
    instead of fine-tuning here; ``prepare_finetuning`` only writes those inputs."""
    torch.manual_seed(recipe.seed)
    torch.set_num_threads(recipe.threads)
    work.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    clock = time.monotonic()

    def lap(name: str) -> None:
        nonlocal clock
        timings[name] = round(time.monotonic() - clock, 1)
        log.info("%s done in %.1fs", name, timings[name])
        clock = time.monotonic()

    examples = labelled(data_dir, recipe)
    texts = [normalise(e.text).text for e in examples]
    lap("corpora")
    encoder, tok, pretraining = encoder_and_tokenizer(recipe, data_dir, examples, work, init_from)
    lap("pretraining")
    # a reused encoder took its time in an earlier run (perhaps on a GPU): report that
    timings["pretraining"] = max(timings["pretraining"], pretraining.get("seconds", 0.0))

    idf, coef, bias, wide_logits, wide_c = fit_wide(texts, examples, recipe)
    model = Scorer.over(encoder, idf, coef, bias)
    lap("ngram_branch")

    negatives = refit.negatives(
        data_dir, recipe.ordinary_negatives, recipe.seed, recipe.reposts_limit
    )
    splits = finetuning_rows(texts, examples, wide_logits, negatives, model, tok, recipe)
    pad = special_id(tok, "[PAD]")
    if prepare_finetuning:  # which leaves OUT as it is
        save_inputs(work / "finetune", model, splits, pad, recipe)
        return None
    ordinary = ordinary_calib(data_dir, recipe, recipe.seed)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer.save(tok, out / TOKENIZER_FILE)
    model, recipe, elsewhere = fine_tuned(model, splits, pad, recipe, work / "finetune")
    lap("finetune")
    # a fine-tuning taken up took its time elsewhere (perhaps on a GPU): report that
    timings["finetune"] = elsewhere["seconds"] if elsewhere else timings["finetune"]
    deep_heads = gate_heads(model, splits["calib"], pad)
    calibration = calibrate_heads(model, splits["calib"], pad)
    lap("calibration")
    rumor_refit, calibration["rumor"], deep_heads["rumor"] = refit_rumor(
        model, texts, examples, splits["calib"], tok, data_dir, recipe, idf, negatives, ordinary
    )
    lap("ordinary_refit")

    parity_max, cost = export_int8(model, out, work, texts, examples, recipe)
    lap("export")

    card: dict[str, Any] = {
        "model_version": content_hash(out / MODEL_FILE),
        "heads": list(HEADS),
        "window_chars": WINDOW,
        "max_tokens": WINDOW + 2,
        "recipe": recipe.to_dict(),
        "init_from": str(init_from) if init_from else None,
        "finetuned_elsewhere": elsewhere,
        "pretraining": pretraining,
        "data": {
            "examples": {
                f"{h}/{s}": sum(1 for e in examples if e.head == h and e.split == s)
                for h in HEADS
                for s in ("train", "calib", "eval")
            },
            "originality": originality.describe(
                [e for e in examples if e.head == "originality_claim"]
            ),
        },
        "temperature": calibration,
        "mix": dict(zip(HEADS, model.mix.detach().tolist(), strict=True)),
        "wide_c": wide_c,
        "deep_heads": deep_heads,
        "ordinary_refit": rumor_refit.card(),
        "parity_max_abs_diff": parity_max,
        "int8_cost": cost,
        "size_bytes": (out / MODEL_FILE).stat().st_size,
        "timings_s": timings,
    }
    # operating points from what the service runs: the exported model, which needs its card
    (out / CARD_FILE).write_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n")
    card["thresholds"] = operating_points(out, examples, ordinary)
    (out / CARD_FILE).write_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n")
    if policy_file is not None:
        write_policy_thresholds(policy_file, card["thresholds"])
    log.info("wrote %s (%s)", out, card["model_version"])
    return card


if __name__ == "__main__":
    raise SystemExit(main())
