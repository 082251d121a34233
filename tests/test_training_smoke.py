"""The whole training pipeline on a tiny subset: tokenizer → pretraining → n-gram branch →
fine-tuning → calibration → ordinary refit → ONNX export → int8 → parity; then the scorer loads
what it wrote, the refit runs again on the exported model, and the network comes back out of the
int8 graph."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from transformers import BertModel

from service.classify import Classifier, content_hash, load_tokenizer, model_inputs
from service.heads import CLASSIFIER_RISKS, HEADS
from service.normalise import normalise
from service.pipeline import Pipeline
from service.policy import load_policy
from service.record import Post
from service.settings import Settings
from training import refit, wide
from training.calibrate import EVEN_ODDS, NEVER
from training.card import render
from training.export import parity
from training.finetune import TUNED, digest, load_inputs, load_tuned
from training.finetune import main as finetune_main
from training.in_place import (
    claim_probe,
    ordinary_calib,
    refit_in_place,
    thresholds_in_place,
)
from training.model import Scorer
from training.pretrain import PRETRAINING_KEY, bert_config, load_encoder
from training.recipe import CPU, FULL, SMOKE, Recipe
from training.recover import write_checkpoint
from training.run import choose_recipe, train


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory, settings: Settings) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("smoke")
    train(SMOKE, settings.data_dir, root / "models", root / "work")
    return root / "models", root / "work"


def test_writes_a_complete_model_folder(smoke: tuple[Path, Path]) -> None:
    models, _ = smoke
    card = json.loads((models / "card.json").read_text())
    assert card["heads"] == list(HEADS)
    assert card["model_version"] == content_hash(models / "model.onnx")
    for head in HEADS:
        t = card["thresholds"][head]
        # a head whose precision never reaches the block point's is never blocked (NEVER)
        assert EVEN_ODDS <= t["review"] <= 1 and t["review"] <= t["block"] <= NEVER
        # the block is held to the ordinary posts of calibration events as well
        assert t["max_ordinary_block"] == 0.01
        assert t["ordinary_posts"] == SMOKE.ordinary_block
        assert card["temperature"][head] > 0
    assert card["parity_max_abs_diff"]["fp32"] < 1e-4


def test_torch_and_onnx_agree(smoke: tuple[Path, Path]) -> None:
    models, work = smoke
    model = Scorer(BertModel(bert_config(SMOKE.encoder), add_pooling_layer=False))
    model.load_state_dict(torch.load(work / "scorer.pt"))
    texts = [normalise(t).text for t in ("谣言止于智者", "这帮人都该死!!", "原创，转载请注明出处")]
    feeds = model_inputs(load_tokenizer(models / "tokenizer.json"), texts)
    assert parity(model, work / "model.fp32.onnx", feeds) < 1e-4
    assert parity(model, models / "model.onnx", feeds) < 0.05


def test_the_int8_graph_fuses_attention_but_not_the_residual_adds(
    smoke: tuple[Path, Path],
) -> None:
    models, _ = smoke
    ops = Counter(n.op_type for n in onnx.load(str(models / "model.onnx")).graph.node)
    layers = SMOKE.encoder.layers
    assert ops["QAttention"] == layers and ops["EmbedLayerNormalization"] == 1
    # ONNX Runtime's SkipLayerNormalization CPU kernel is the slow one (training/export.py)
    assert ops["SkipLayerNormalization"] == 0 and ops["LayerNormalization"] == 2 * layers


def test_scorer_loads_the_trained_model(smoke: tuple[Path, Path], settings: Settings) -> None:
    models, _ = smoke
    pipeline = Pipeline(Classifier(models), load_policy(settings.policy_file))
    records = pipeline.score_many([Post(id="1", text="测试"), Post(id="2", text="转发微博")])
    assert [r.id for r in records] == ["1", "2"]
    probs = np.array([[r.scores["rumor"], r.scores["incitement"]] for r in records])
    assert ((probs >= 0) & (probs <= 1)).all()


def test_the_rumor_head_refits_on_an_exported_model(
    smoke: tuple[Path, Path], settings: Settings, tmp_path: Path
) -> None:
    models, _ = smoke
    card = json.loads((models / "card.json").read_text())
    assert 0 < card["ordinary_refit"]["negatives"] <= SMOKE.ordinary_negatives
    assert 0 <= card["ordinary_refit"]["claim_negatives"] <= max(SMOKE.claim_negatives)
    copy = tmp_path / "models"
    shutil.copytree(models, copy)
    # the refit checks the rewritten graph against its own logits before it saves it
    again = refit_in_place(copy, settings.data_dir, SMOKE, None)
    assert again["ordinary_refit"]["on_exported_model"]
    assert "calib_claims_mean" in again["ordinary_refit"]
    assert again["model_version"] == content_hash(copy / "model.onnx") != card["model_version"]
    assert abs(again["temperature"]["rumor"] * again["ordinary_refit"]["encoder_weight"] - 1) < 1e-3
    for head in ("incitement", "originality_claim"):
        assert again["thresholds"][head] == card["thresholds"][head]
    probs = Classifier(copy).predict(["加油!!!", "测试"])
    assert ((probs >= 0) & (probs <= 1)).all()


def test_a_correction_that_points_the_wrong_way_is_switched_off_in_the_graph(
    smoke: tuple[Path, Path], settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whichever way this machine's arithmetic turns the smoke model's correction, the refit of
    an exported head whose correction points the wrong way leaves the head its n-gram branch."""
    models, _ = smoke
    copy = tmp_path / "models"
    shutil.copytree(models, copy)

    def wrong_way(*args: object, **kwargs: object) -> tuple[float, float, float]:
        raise refit.CorrectionError("the encoder's correction got weight -1.000")

    monkeypatch.setattr(refit, "recombine", wrong_way)
    again = refit_in_place(copy, settings.data_dir, SMOKE, None)
    before = json.loads((models / "card.json").read_text())
    assert again["deep_heads"] == before["deep_heads"] | {"rumor": False}
    assert again["ordinary_refit"]["encoder_weight"] == 1.0
    # the rumor logit is now the n-gram branch's plus a constant, whatever the encoder reads
    inits = {
        i.name: numpy_helper.to_array(i)
        for i in onnx.load(str(copy / "model.onnx")).graph.initializer
    }
    texts = [
        normalise(t).text
        for t in ("谣言止于智者", "求扩散！杭州一女孩走失", "今天天气不错", "加油!!!")
    ]
    h = HEADS.index("rumor")
    ngram = wide.design(texts, inits["wide.idf"]) @ inits["wide.coef"][:, h] + inits["wide.bias"][h]
    p = Classifier(copy).predict(texts)[:, h].astype(np.float64)
    rest = np.log(p / (1 - p)) - inits["mix"][h] * ngram / inits["temperature"][h]
    assert np.ptp(rest) < 1e-3
    # and the other heads still read the encoder
    assert np.ptp(Classifier(copy).predict(texts)[:, HEADS.index("incitement")]) > 0


def test_the_network_comes_back_out_of_the_int8_graph(
    smoke: tuple[Path, Path], tmp_path: Path
) -> None:
    """The recovered network computes what the int8 graph does, up to the graph's quantised
    activations, and its encoder is a checkpoint ``--init-from`` loads."""
    models, work = smoke
    texts = [normalise(t).text for t in ("谣言止于智者", "这帮人都该死!!", "原创，转载请注明出处")]
    feeds = model_inputs(load_tokenizer(models / "tokenizer.json"), texts)
    recovered = write_checkpoint(models, tmp_path / "recovered")
    assert parity(recovered, models / "model.onnx", feeds) < 0.05
    trained = Scorer(BertModel(bert_config(SMOKE.encoder), add_pooling_layer=False))
    trained.load_state_dict(torch.load(work / "scorer.pt"))
    for name, value in trained.state_dict().items():
        # every tensor is the trained one, the int8 matrices up to their rounding
        assert torch.allclose(recovered.state_dict()[name], value, atol=0.02), name
    encoder = load_encoder(tmp_path / "recovered")
    assert (tmp_path / "recovered" / "tokenizer.json").is_file()
    same = encoder.state_dict()
    assert all(torch.equal(same[k], v) for k, v in recovered.encoder.state_dict().items())


def test_the_originality_head_refits_on_an_exported_model(
    smoke: tuple[Path, Path], settings: Settings, tmp_path: Path
) -> None:
    models, _ = smoke
    card = json.loads((models / "card.json").read_text())
    copy = tmp_path / "models"
    shutil.copytree(models, copy)
    again = refit_in_place(copy, settings.data_dir, SMOKE, None, "originality_claim")
    fit = again["originality_refit"]
    assert fit["on_exported_model"] and fit["c_grid"] == list(SMOKE.wide_c)
    assert fit["c"] in SMOKE.wide_c
    assert again["model_version"] == content_hash(copy / "model.onnx") != card["model_version"]
    for head in ("rumor", "incitement"):
        assert again["thresholds"][head] == card["thresholds"][head]
    assert "originality head's n-gram column was refit" in render(again)


def test_thresholds_are_derived_again_from_an_exported_model(
    smoke: tuple[Path, Path], settings: Settings, tmp_path: Path
) -> None:
    models, _ = smoke
    copy = tmp_path / "models"
    shutil.copytree(models, copy)
    policy_file = tmp_path / "policy.toml"
    shutil.copy(settings.policy_file, policy_file)
    card = thresholds_in_place(copy, settings.data_dir, SMOKE, policy_file)
    assert card["model_version"] == content_hash(copy / "model.onnx")
    assert content_hash(copy / "model.onnx") == content_hash(models / "model.onnx")
    assert json.loads((copy / "card.json").read_text())["thresholds"] == card["thresholds"]
    policy = load_policy(policy_file)
    for risk, head in CLASSIFIER_RISKS.items():
        t = card["thresholds"][head]
        assert EVEN_ODDS <= t["review"] <= t["block"] <= NEVER
        assert (policy.risks[risk].review, policy.risks[risk].block) == (t["review"], t["block"])


def test_the_claims_probe_stays_the_same_posts_however_many_a_block_is_held_to(
    settings: Settings,
) -> None:
    # the rumor refit's claims are held to the first posts of the block's set: a larger set
    # must not change which posts those are (nor, so, the refit)
    few = replace(SMOKE, ordinary_block=SMOKE.ordinary_negatives)
    many = ordinary_calib(settings.data_dir, SMOKE, 7)
    assert len(many) == SMOKE.ordinary_block > SMOKE.ordinary_negatives
    assert claim_probe(many, SMOKE) == ordinary_calib(settings.data_dir, few, 7)


def test_auto_takes_the_full_recipe_only_where_its_pretraining_is_at_hand(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert choose_recipe(tmp_path) == "cpu"
    (tmp_path / "encoder").mkdir()
    key = tmp_path / "encoder" / PRETRAINING_KEY
    key.write_text(json.dumps(CPU.pretraining_key(), sort_keys=True))
    assert choose_recipe(tmp_path) == "cpu"
    key.write_text(json.dumps(FULL.pretraining_key(), sort_keys=True))
    assert choose_recipe(tmp_path) == "full"
    key.unlink()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert choose_recipe(tmp_path) == "full"


def test_a_fine_tuning_run_elsewhere_is_taken_up(
    smoke: tuple[Path, Path],
    settings: Settings,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``--prepare-finetuning`` writes inputs that come back whole, ``python -m
    training.finetune`` tunes them with its overrides, and the next run exports that tuning
    instead of fine-tuning again."""
    _, work = smoke
    shutil.copytree(work / "encoder", tmp_path / "work" / "encoder")  # the pretraining, reused
    models, folder = tmp_path / "models", tmp_path / "work" / "finetune"
    prepared = train(SMOKE, settings.data_dir, models, tmp_path / "work", prepare_finetuning=True)
    assert prepared is None
    assert not models.exists()  # the model folder is left as it was
    inputs = load_inputs(folder)
    assert inputs.key == digest(inputs.model, inputs.splits, inputs.pad)
    assert len(inputs.splits["ordinary"]) == SMOKE.ordinary_negatives
    assert inputs.recipe == SMOKE and inputs.train_rows() == inputs.splits["train"]

    assert finetune_main([str(folder), "--lr", "3e-4", "--ordinary", "5"]) == 0
    report = capsys.readouterr().out
    assert all(f"{TUNED}\t{head}\tcalib loss" in report for head in HEADS)
    card = train(SMOKE, settings.data_dir, models, tmp_path / "work")
    assert card is not None
    assert card["finetuned_elsewhere"]["overrides"] == {
        "finetune_lr": 3e-4,
        "finetune_ordinary": 5,
    }
    assert card["recipe"]["finetune_lr"] == 3e-4 and card["recipe"]["finetune_ordinary"] == 5
    tuned = torch.load(folder / TUNED)["params"]
    exported = torch.load(tmp_path / "work" / "scorer.pt")
    for name, value in exported.items():
        if name.startswith("encoder."):
            assert torch.equal(value, tuned[name].float()), name
    other = Scorer(BertModel(bert_config(SMOKE.encoder), add_pooling_layer=False))
    assert load_tuned(folder / TUNED, other, "another key") is None


def test_a_recipe_comes_back_from_its_dict() -> None:
    for recipe in (FULL, CPU, SMOKE):
        assert Recipe.from_dict(json.loads(json.dumps(recipe.to_dict()))) == recipe
