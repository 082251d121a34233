"""Changes to a model that is already exported, whose PyTorch weights are gone: one head refit
in place (:mod:`training.refit`), or every head's operating point derived again
(:mod:`training.calibrate`). The model card and the policy's thresholds follow.

    python -m training.run --refit rumor|incitement|originality_claim [--out models]
    python -m training.run --thresholds [--out models]
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from service.classify import CARD_FILE, MODEL_FILE, Classifier, content_hash
from service.heads import HEADS, Head
from training import calibrate, data, originality, refit
from training.recipe import Recipe

log = logging.getLogger("training")


REFIT_KEYS: dict[Head, str] = {
    "rumor": "ordinary_refit",
    "incitement": "incitement_refit",
    "originality_claim": "originality_refit",
}
"""The heads ``--refit`` refits, and the card key that describes each refit."""


def refit_in_place(
    model_dir: Path,
    data_dir: Path,
    recipe: Recipe,
    policy_file: Path | None,
    head: Head = "rumor",
) -> dict[str, Any]:
    """``--refit HEAD``: the refit of :mod:`training.refit` on an exported model whose
    PyTorch weights are gone; its card (version, the head's temperature, mix and thresholds)
    and the policy's thresholds follow."""
    card: dict[str, Any] = json.loads((model_dir / CARD_FILE).read_text())
    seed, grid = card["recipe"]["seed"], recipe.wide_c
    limit = recipe.reposts_limit
    corpus: list[data.Example] = []
    if head in ("rumor", "originality_claim"):
        corpus = originality_corpus(data_dir, card, limit)
    posts = head_splits(data_dir, head, corpus)
    corrected = bool(card["deep_heads"][head])
    negatives: list[str] = []
    offered = None
    ordinary = ordinary_calib(data_dir, recipe, seed)
    card["recipe"]["ordinary_block"] = recipe.ordinary_block
    if head == "rumor":
        n = card["recipe"]["ordinary_negatives"] = recipe.ordinary_negatives
        negatives = refit.negatives(data_dir, n, seed, limit)
        card["recipe"]["claim_negatives"] = list(recipe.claim_negatives)
        card["recipe"]["ordinary_weight"] = recipe.ordinary_weight
        probe = claim_probe(ordinary, recipe)
        offered = refit.claims(data_dir, corpus, recipe.claim_negatives, probe, seed)
    fitted, card["deep_heads"][head] = refit.refit_head_exported(
        model_dir, head, posts, negatives, grid, corrected, offered, recipe.ordinary_weight
    )
    card["model_version"] = content_hash(model_dir / MODEL_FILE)
    card["size_bytes"] = (model_dir / MODEL_FILE).stat().st_size
    card["temperature"][head] = 1 / fitted.b
    card["mix"][head] = fitted.a / fitted.b
    card["thresholds"][head] = exported_points(model_dir, {head: posts["calib"]}, ordinary)[head]
    card[REFIT_KEYS[head]] = fitted.card() | {"on_exported_model": True, "c_grid": list(grid)}
    (model_dir / CARD_FILE).write_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n")
    if policy_file is not None:
        write_policy_thresholds(policy_file, card["thresholds"])
    log.info("refit %s: %s", model_dir, card[REFIT_KEYS[head]])
    return card


def originality_corpus(
    data_dir: Path, card: dict[str, Any], limit: int | None
) -> list[data.Example]:
    """The originality corpus of the model that ``card`` describes."""
    return originality.build_corpus(
        data_dir, card["recipe"]["seed"], card["recipe"]["originality_size"], limit
    )


def head_splits(
    data_dir: Path, head: Head, corpus: Sequence[data.Example]
) -> dict[str, tuple[list[str], refit.Labels]]:
    """``head``'s train and calibration texts: the originality head's from its built ``corpus``,
    the others' from their labelled corpora."""
    return refit.splits_of(corpus) if head == "originality_claim" else refit.splits(data_dir, head)


def ordinary_calib(data_dir: Path, recipe: Recipe, seed: int) -> list[str]:
    """The ordinary posts of calibration events that a block is held to
    (:func:`training.calibrate.operating_point`)."""
    n, limit = recipe.ordinary_block, recipe.reposts_limit
    return refit.negatives(data_dir, n, seed, limit, "calib")


def claim_probe(ordinary: Sequence[str], recipe: Recipe) -> Sequence[str]:
    """The first of the block's ordinary posts, which the rumor refit's claims are held to
    (:func:`training.refit.fit_rumor`; the same posts whatever ``ordinary_block`` is, since
    :func:`training.data.ordinary_reposts` draws a prefix of one shuffled order)."""
    return ordinary[: recipe.ordinary_negatives]


def exported_points(
    model_dir: Path,
    calib: Mapping[Head, tuple[Sequence[str], np.ndarray]],
    ordinary: Sequence[str],
) -> dict[Head, dict[str, Any]]:
    """Each head's operating point from the exported model's scores (the service's own) of its
    calibration posts and texts with labels in ``calib``, and of the ``ordinary`` posts."""
    classifier = Classifier(model_dir)
    on_ordinary = classifier.predict(ordinary) if ordinary else None
    points: dict[Head, dict[str, Any]] = {}
    for head, (texts, y) in calib.items():
        h = HEADS.index(head)
        p = classifier.predict(texts)[:, h]
        o = None if on_ordinary is None else on_ordinary[:, h]
        points[head] = asdict(calibrate.operating_point(p, y, ordinary=o))
    return points


def thresholds_in_place(
    model_dir: Path, data_dir: Path, recipe: Recipe, policy_file: Path | None
) -> dict[str, Any]:
    """``--thresholds``: every head's operating point derived again from the exported model in
    ``model_dir`` (after the rule in :mod:`training.calibrate` changed); the model itself is
    untouched, its card and the policy's thresholds follow."""
    card: dict[str, Any] = json.loads((model_dir / CARD_FILE).read_text())
    corpus = originality_corpus(data_dir, card, recipe.reposts_limit)
    calib = {head: head_splits(data_dir, head, corpus)["calib"] for head in HEADS}
    ordinary = ordinary_calib(data_dir, recipe, card["recipe"]["seed"])
    card["recipe"]["ordinary_block"] = recipe.ordinary_block
    card["thresholds"] = exported_points(model_dir, calib, ordinary)
    (model_dir / CARD_FILE).write_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n")
    if policy_file is not None:
        write_policy_thresholds(policy_file, card["thresholds"])
    log.info("thresholds of %s: %s", model_dir, card["thresholds"])
    return card


def write_policy_thresholds(policy_file: Path, thresholds: dict[str, dict[str, float]]) -> None:
    """Rewrite the policy's classifier thresholds (between its BEGIN and END markers) and the
    near-duplicate step's originality-claim threshold (the claim head's review point)."""
    text = policy_file.read_text()
    begin = text.index("# BEGIN thresholds")
    end = text.index("# END thresholds")
    lines = [text[begin:].splitlines()[0]]
    for risk in ("rumor", "incitement"):
        t = thresholds[risk]
        lines += [f"[risks.{risk}]", f"review = {t['review']}", f"block = {t['block']}", ""]
    text = text[:begin] + "\n".join(lines) + text[end:]
    claim = thresholds["originality_claim"]["review"]
    text, found = re.subn(r"(?m)^originality_claim = .*$", f"originality_claim = {claim}", text)
    if found != 1:
        raise ValueError(f"{policy_file}: expected one originality_claim line, found {found}")
    policy_file.write_text(text)
