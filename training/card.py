"""The model card: ``models/card.md``, rendered from ``models/card.json``.

``card.json`` is written by training (recipe, data, calibration, thresholds, parity, int8 cost)
and completed by ``python -m eval --card`` (the quality and speed tables). The markdown is
always regenerated from it, so the two never disagree.
"""

from __future__ import annotations

from typing import Any

from training import originality


def _pretraining(card: dict[str, Any]) -> str:
    run = card.get("pretraining") or {}
    if not run:
        return "none (a checkpoint from disk)"
    return (
        f"{run['steps']} steps on {run['device']} in {run['seconds']:.0f} s, final masked-LM "
        f"loss {run['final_loss']}"
    )


def _finetuning(card: dict[str, Any]) -> str:
    r = card["recipe"]
    rows = r.get("finetune_ordinary", 0)
    ordinary = f" and {rows:,} ordinary posts as rumor negatives" if rows else ""
    run = card.get("finetuned_elsewhere")
    elsewhere = f", fine-tuned on {run['device']} in {run['seconds']:.0f} s" if run else ""
    return f"This run: the corpora's train rows{ordinary}{elsewhere}"


def _ordinary(card: dict[str, Any]) -> str:
    fit = card.get("ordinary_refit")
    if fit is None:
        return "not run for this model"
    text = _refit_figures(fit)
    if fit.get("on_exported_model"):
        text += (
            ". This model was refit after export (`python -m training.run --refit rumor`: "
            "the encoder's correction read from the int8 graph); the parity and int8 figures "
            "below are those of its export, before the refit"
        )
    return text


LATER_REFITS = {
    "incitement_refit": "This model's encoder was fine-tuned while ToxiCN's reporting rows were "
    "still trained on;\n   its incitement head was refit after export without them "
    "(`python -m training.run --refit\n   incitement`, the same refit with no extra negatives)",
    "originality_refit": "Its originality head's n-gram column was refit after export with more "
    "values of `C`\n   (`python -m training.run --refit originality_claim`, the same refit with "
    "no extra negatives)",
}
"""The refits of heads other than rumor that a shipped model had after export, as the card
says them."""


def _later_refits(card: dict[str, Any]) -> str:
    return "".join(
        f"\n   {text}: {_refit_figures(card[key])}."
        for key, text in LATER_REFITS.items()
        if key in card
    )


def _refit_figures(fit: dict[str, Any]) -> str:
    """A refit's ``C``, recombination ``(a, b, g)`` and calibration AUC, as the card prints
    them."""
    claims = ""
    if "claim_negatives" in fit:
        claims = (
            f"{fit['claim_negatives']} originality claims on ordinary posts as further "
            f"negatives and as many rumours with a notice as positives (mean probability on "
            f"calibration events' claims "
            f"{fit['calib_claims_mean']}, their ordinary posts {fit['calib_ordinary_mean']}); "
        )
    grid = f" (of {fit['c_grid']})" if "c_grid" in fit else ""
    if fit.get("recombination_ordinary"):
        claims += (
            f"the direction of `(a, b)` fitted with {fit['recombination_ordinary']:,} ordinary "
            f"posts of calibration events weighing {fit['recombination_weight']}× the "
            f"calibration posts, its scale and `g` on the calibration posts alone; "
        )
    return claims + (
        f"C {fit['c']}{grid}, a {fit['ngram_weight']}, b {fit['encoder_weight']}, "
        f"g {fit['intercept']}; calibration AUC {fit['calib_auc_before']} before, "
        f"{fit['calib_auc_after']} after"
    )


def _split(card: dict[str, Any]) -> str:
    split = card.get("skip_layer_norm_split")
    if split is None:
        return ""
    return (
        "\n   This model was exported with fused residual adds; its SkipLayerNormalization nodes "
        "were split\n   into Add and LayerNormalization afterwards, which moved its probabilities "
        f"by at most\n   {split['max_abs_diff']:.1e} on {split['eval_posts']:,} eval posts."
    )


def _kv_table(rows: dict[str, Any], key: str, value: str) -> str:
    lines = [f"| {key} | {value} |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in rows.items()]
    return "\n".join(lines)


def render(card: dict[str, Any]) -> str:
    r = card["recipe"]
    enc = r["encoder"]
    heads = card["heads"]
    thresholds = "\n".join(
        ["| head | temperature | mix | review | block |", "|---|---|---|---|---|"]
        + [
            f"| {h} | {card['temperature'][h]:.3f} | {card['mix'][h]:.3f} | "
            f"{card['thresholds'][h]['review']:.4f} | {card['thresholds'][h]['block']:.4f} |"
            for h in heads
        ]
    )
    cost = card.get("int8_cost", {})
    cost_rows = "\n".join(
        ["| head | fp32 accuracy | int8 accuracy | fp32 AUC | int8 AUC |", "|---|---|---|---|---|"]
        + [
            f"| {h} | {cost['fp32'][h]['accuracy']:.4f} | {cost['int8'][h]['accuracy']:.4f} | "
            f"{cost['fp32'][h]['auc']:.4f} | {cost['int8'][h]['auc']:.4f} |"
            for h in heads
            if h in cost.get("fp32", {})
        ]
    )
    return f"""# Model card: the qinglang risk classifier

`model_version`: **{card["model_version"]}** (SHA-256 of `models/model.onnx`, first 16 hex
digits). Size: {card["size_bytes"] / 1e6:.1f} MB. Regenerate with `make train`; this file is
written from `models/card.json` by `python -m eval --card models`.

## What it does

One network, three calibrated heads, each a probability in [0, 1]:

- `rumor`: false-information / rumour risk (Article 13; Article 18 item 6). Trained on the
  Weibo16 source posts (rumours reported to Weibo's false-information platform vs ordinary posts).
- `incitement`: offensive and hateful language, the kind the cyber-violence and
  extreme-emotion side of Article 18 item 5 may cover. Trained on COLD and ToxiCN. **What the labels
  cover:** COLD marks comments offensive towards a group (race, gender, region) or an individual;
  ToxiCN marks toxic posts (general offence and hate speech, explicit or implicit) on LGBTQ,
  region, sexism and racism topics. **What they do not cover:** neither corpus labels incitement
  as such (calls to act, mobilisation, exploiting emergencies), threats of violence outside
  these topics, or rumour-driven outrage; a high score means "offensive or toxic language", and
  the policy's reason code names Article 18 item 5 because that is the article such language
  falls under, not because the model detects incitement. ToxiCN's "reporting" rows (texts that
  report or criticise discrimination, labelled toxic there) are not trained on: speaking against
  bias is not offensive language; they stay in the eval split with ToxiCN's label.
- `originality_claim`: the text claims the content as the poster's own or first (原创, 首发,
  独家, 转载请注明出处, 未经授权禁止转载, 自己拍的…). Not a risk alone: it feeds the
  fake-originality check (claim + earlier copy by another account + no attribution). The
  service scores it only on texts with a claim word outside @mentions and confusable phrases
  such as 独家播出 or 首发阵容 (`service.claims.has_claim_words`), as every claim of its corpus
  has one; other texts get 0.

Input: the post text, normalised (format characters such as zero-width spaces dropped, NFKC,
lower case, traditional → simplified, links folded) and
cut to its first {card["window_chars"]} characters; longer texts are scored on that window and
the score record says `truncated`.

## Data

Only the corpora in `../shared/data` (see its README). Splits are fixed by a keyed hash
(`training/data.py`): Weibo16 by event, COLD's `dev.jsonl` as its eval split, ToxiCN 80/10/10;
`calib` is for early stopping, calibration and thresholds, `eval` for the figures below.

{_kv_table(card["data"]["examples"], "head/split", "examples")}

### The originality corpus

{(originality.__doc__ or "").strip()}

Composition (`training.originality.describe`):

```
{card["data"]["originality"]}
```

## Recipe

Seed {r["seed"]} everywhere (Python, NumPy, PyTorch, scikit-learn folds).

1. **Tokenizer**: WordPiece, {enc["vocab_size"]} entries, Chinese characters one by one, trained on
   {r["tokenizer_texts"]:,} normalised texts of the pretraining corpus.
2. **Encoder**: BERT (`transformers.BertConfig`): {enc["layers"]} layers, hidden {enc["hidden"]},
   {enc["heads"]} attention heads, feed-forward {enc["intermediate"]}. `--init-from DIR` starts
   from a checkpoint on disk instead (this run: {card["init_from"] or "none, from scratch"}).
3. **Domain pretraining**: masked-language modelling (15% masking, 80/10/10) on
   {r["pretrain_texts"]:,} texts: non-boilerplate reposts of Weibo16's train-split events and the
   train-split texts of every corpus (never their labels); {r["pretrain_steps"]} steps of
   {r["pretrain_batch"]} sequences of at most {r["pretrain_max_tokens"]} tokens, AdamW, lr
   {r["pretrain_lr"]}, cosine schedule. This run: {_pretraining(card)}.
4. **N-gram branch**: sublinear TF-IDF over character 1-3-grams hashed to 2^18 buckets,
   weighted per head by naive-Bayes log-count ratios, logistic regression per head with C
   chosen from {r["wide_c"]} on the calibration split ({card["wide_c"]}), evaluated inside the
   ONNX graph. Training rows get {r["wide_folds"]}-fold out-of-fold logits.
5. **Multi-task fine-tuning** of the encoder on the residual of the n-gram branch: each head's
   logit is `mix_h · ngram_h + deep_h` (masked mean pooling, one linear layer), the encoder's
   head starts at zero so that training starts from the n-gram branch alone;
   {r["finetune_epochs"]} epochs, batch {r["finetune_batch"]}, lr {r["finetune_lr"]}, Weibo16
   drawn {r["weibo_weight"]}× an epoch; the calibration loss (averaged over heads) is checked
   {r["finetune_checks"]} times an epoch and the state with the lowest is kept. {_finetuning(card)}.
   Per head, the encoder's correction is kept only if it lowers that head's calibration loss;
   kept: {card["deep_heads"]}.
6. **Calibration**: a temperature per head on the calibration split. **Operating points**:
   `review` is 0.5, where a calibrated probability says a risk is as likely as not, raised
   until the calibration split's false-positive rate is at most 10%; `block` the lowest
   threshold whose precision is at least 0.97 and that at most 1% of
   {r.get("ordinary_block", 1000):,} ordinary posts (comments on non-rumour events of the
   calibration split) reach. Both come from the exported model's scores and are written into
   `service/policy/default.toml` (`python -m training.run --thresholds` derives them again).
7. **Ordinary posts for the rumor head** (`training/refit.py`): its n-gram column is fitted
   again on the train posts plus {r.get("ordinary_negatives", 0):,} ordinary texts as negatives
   (comments on non-rumour events of the train split) and originality claims on such posts
   with as many train rumours given a notice as positives, as many of them (of
   {list(r.get("claim_negatives", []))}) as it takes for the calibration events' claims to
   score no higher than their ordinary posts, and its logit recombined as
   `a · ngram + b · deep + g` on the calibration split (temperature `1/b`): {_ordinary(card)}.
8. **Export**: ONNX (opset 17, dynamic batch and sequence axes), ONNX Runtime's BERT fusions
   but for the residual adds (its SkipLayerNormalization CPU kernel is slower than the Add and
   LayerNormalization it replaces), int8 dynamic quantisation of the matrix multiplications.
   Parity on 64 eval posts, largest absolute difference in probability: fp32
   {card["parity_max_abs_diff"]["fp32"]:.2e}, int8
   {card["parity_max_abs_diff"]["int8"]:.2e}.{_split(card)}{_later_refits(card)}

Training time (seconds per step; pretraining where it ran, the rest on the machine of the speed
table): `{card["timings_s"]}`.

{thresholds}

### The cost of int8 (eval splits, same rows)

{cost_rows}

## Quality against the baseline

{card.get("quality", "(run `python -m eval --card models`)")}

### Content that should not be flagged

The held-back checks include ordinary Weibo posts from another collection and comments that
speak against bias. Proxies in the data we have (`eval/quality.py`, `Proxy`): ordinary reposts
for the rumor head (and for the originality head, whose claims among them are nearly all false)
and the safe comments of COLD and ToxiCN, which the rumor head never saw, and two views of
speaking against bias for the incitement head:

{card.get("proxies", "(run `python -m eval --card models`)")}

### Across datasets

Fine-tuned on one incitement corpus, tested on the other's eval split (`python -m eval.crossdata`):

{card.get("crossdata", "(run `python -m eval.crossdata --card models`)")}

## Speed

{card.get("speed", "(run `python -m eval --card models`)")}

## Limitations

- Weibo16's non-rumours are largely news-outlet posts: part of what any model learns there is
  style. The "no near-copy" row measures the eval posts without a near-copy in training.
- COLD's dev split is close to its training data; the cross-dataset rows (trained on one
  corpus, tested on the other) are the better guide to unseen data.
- Speaking against bias: COLD's training labels call most comments that name discrimination
  (歧视) offensive, 3,040 against 230, and the incitement head follows them. It flags fewer
  such texts than the baseline (the proxies above) but still most of them; a trust team will
  find comments that argue against bias among its incitement flags.
- The originality head sits at the precise end: on held-out phrasings it finds fewer claims
  than the baseline and flags far fewer confusables (docs/classifier.md, "Where it stands").
- The originality corpus is built by rule and template from real posts (above): the head is
  as good as that construction, and its eval split measures phrasings held out from training,
  not real annotated claims.
"""
