"""ONNX export, graph optimisation, int8 dynamic quantisation and the parity check.

The fp32 graph is exported with dynamic batch and sequence axes, optimised with ONNX Runtime's
transformer fusions (attention, layer norm, GELU), then quantised: the encoder's matrix
multiplications get int8 weights with dynamic activation scales. The embedding and n-gram
tables stay fp32: they are gathers, not multiplications, so int8 would save size but no time.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
import torch
from onnxruntime.quantization import QuantType, quantize_dynamic
from onnxruntime.transformers.fusion_options import FusionOptions
from onnxruntime.transformers.optimizer import optimize_model
from sklearn.metrics import roc_auc_score

from service.classify import INPUTS, PROBS, Feeds, open_session
from service.heads import HEADS
from training.model import Scorer

log = logging.getLogger(__name__)


def tensors(feeds: Feeds) -> tuple[torch.Tensor, ...]:
    return tuple(torch.from_numpy(feeds[name]) for name in INPUTS)


def export(model: Scorer, example: Feeds, fp32_path: Path) -> None:
    model.eval()
    seq = {0: "batch", 1: "tokens"}
    grams = {0: "batch", 1: "grams"}
    torch.onnx.export(
        model,
        tensors(example),
        str(fp32_path),
        input_names=list(INPUTS),
        output_names=[PROBS],
        dynamic_axes={
            "input_ids": seq,
            "attention_mask": seq,
            "ngram_ids": grams,
            "ngram_counts": grams,
            PROBS: {0: "batch"},
        },
        opset_version=17,
        dynamo=False,
    )


def optimise_and_quantise(fp32_path: Path, out_path: Path, heads: int, hidden: int) -> None:
    optimised = fp32_path.with_suffix(".opt.onnx")
    fusions = FusionOptions("bert")
    # ONNX Runtime's CPU SkipLayerNormalization kernel ran about 8x slower than the Add and
    # LayerNormalization it replaces (127 µs against 16 + 8 µs on one post's 110 x 256
    # activations, onnxruntime 1.32), a third of a single post's time: the residual adds stay
    # unfused
    fusions.enable_skip_layer_norm = False
    fusions.enable_bias_skip_layer_norm = False
    opt = optimize_model(
        str(fp32_path),
        model_type="bert",
        num_heads=heads,
        hidden_size=hidden,
        optimization_options=fusions,
    )
    log.info("fused operators: %s", opt.get_fused_operator_statistics())
    opt.save_model_to_file(str(optimised))
    quantize_dynamic(
        str(optimised),
        str(out_path),
        weight_type=QuantType.QInt8,
        op_types_to_quantize=["MatMul", "Attention"],
        per_channel=False,
        # the fused operators live in the com.microsoft domain, which shape inference skips
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )
    optimised.unlink()


def parity(model: Scorer, onnx_path: Path, batch: Feeds) -> float:
    """Largest absolute difference between PyTorch and ONNX probabilities on ``batch``."""
    model.eval()
    with torch.no_grad():
        expected = model(*tensors(batch)).numpy()
    got = open_session(onnx_path).run([PROBS], batch)[0]
    return float(np.abs(expected - got).max())


def int8_cost(
    fp32_path: Path,
    int8_path: Path,
    feeds: Sequence[Feeds],
    heads: Sequence[int],
    labels: Sequence[int],
) -> dict[str, dict[str, dict[str, float]]]:
    """Per head, accuracy (at 0.5) and ROC-AUC of the fp32 and the int8 graph on the same rows.

    ``feeds`` are consecutive batches of the rows; row ``i`` is scored for ``HEADS[heads[i]]``.
    """
    y = np.asarray(labels)
    cols = np.asarray(heads)
    out: dict[str, dict[str, dict[str, float]]] = {}
    for name, path in (("fp32", fp32_path), ("int8", int8_path)):
        s = open_session(path, 2)
        probs = np.concatenate([s.run([PROBS], f)[0] for f in feeds])
        p = probs[np.arange(len(cols)), cols]
        out[name] = {}
        for h, head in enumerate(HEADS):
            m = cols == h
            if len(set(y[m].tolist())) == 2:
                out[name][head] = {
                    "accuracy": float(((p[m] >= 0.5) == (y[m] == 1)).mean()),
                    "auc": float(roc_auc_score(y[m], p[m])),
                }
    return out
