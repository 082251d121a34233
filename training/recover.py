"""The network back out of an exported int8 graph: its encoder as a checkpoint for
``--init-from``, so that a machine without a GPU can fine-tune the encoder again.

    python -m training.recover [--model models] [--out runs/recovered]
    python -m training.run --init-from runs/recovered --out runs/second/models

**Why.** The encoder is pretrained on a GPU and only the int8 graph is kept; without the
pretrained weights, changing what the encoder learns (other data, other negatives) waited for a
GPU. The fine-tuned encoder in the graph is a good place to start a second fine-tuning from on
the CPU (a few minutes on two cores).

**How.** Every weight of the graph has its PyTorch name or a place in the fused graph
(:mod:`training.export`): the embeddings, layer norms and biases are float initializers under
their own names; each layer's ``QAttention`` holds the query, key and value weights side by side
as one ``hidden × 3·hidden`` int8 matrix (and their biases in one vector); the other matrix
multiplications of a layer are, in graph order, the attention output, the intermediate and the
output projection. An int8 matrix ``q`` with scale ``s`` and zero point ``z`` is ``(q − z) · s``,
and a graph matrix ``W`` (``x @ W``) is the ``nn.Linear`` weight ``Wᵀ``. The recovered network
differs from the graph only by the graph's dynamic quantisation of activations (as much as the
export's int8 parity figure).
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnx
import torch
from onnx import numpy_helper
from transformers import BertModel

from service.classify import CARD_FILE, MODEL_FILE, TOKENIZER_FILE, require_model
from training.model import Scorer
from training.pretrain import bert_config
from training.recipe import Encoder

Floats = npt.NDArray[np.float32]

PROJECTIONS = ("attention.output.dense", "intermediate.dense", "output.dense")
"""A layer's matrix multiplications outside its attention, in graph order."""


def scorer(model_dir: Path) -> Scorer:
    """The network of the exported model in ``model_dir``, dequantised, in evaluation mode."""
    proto = onnx.load(str(model_dir / MODEL_FILE))
    inits = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    card = json.loads((model_dir / CARD_FILE).read_text())
    enc = Encoder(**card["recipe"]["encoder"])

    def weight(name: str) -> Floats:
        q = inits[f"{name}_quantized"].astype(np.float32)
        return np.asarray((q - inits[f"{name}_zero_point"]) * inits[f"{name}_scale"], np.float32)

    matmuls = [
        n.input[1].removesuffix("_quantized")
        for n in proto.graph.node
        if n.op_type == "MatMulInteger" and not n.input[1].startswith("head.")
    ]
    per_layer = len(PROJECTIONS)
    if len(matmuls) != per_layer * enc.layers:
        raise ValueError(
            f"{model_dir / MODEL_FILE}: {len(matmuls)} int8 projections, expected "
            f"{per_layer * enc.layers} (is it the fused int8 export?)"
        )
    state: dict[str, Floats] = {}
    h = enc.hidden
    for layer in range(enc.layers):
        prefix = f"encoder.encoder.layer.{layer}"
        qkv, bias = weight(f"Attention_{layer}_qkv_weight"), inits[f"Attention_{layer}_qkv_bias"]
        for j, part in enumerate(("query", "key", "value")):
            state[f"{prefix}.attention.self.{part}.weight"] = qkv[:, j * h : (j + 1) * h].T
            state[f"{prefix}.attention.self.{part}.bias"] = bias[j * h : (j + 1) * h]
        own = matmuls[per_layer * layer : per_layer * (layer + 1)]
        for name, matmul in zip(PROJECTIONS, own, strict=True):
            state[f"{prefix}.{name}.weight"] = weight(matmul).T
    state["head.weight"] = weight("head.weight_Transposed").T
    model = Scorer(BertModel(bert_config(enc), add_pooling_layer=False))
    # every other tensor is a float initializer under its PyTorch name
    for key in model.state_dict().keys() - state.keys():
        if key not in inits:
            raise ValueError(f"{model_dir / MODEL_FILE}: no tensor for {key}")
        state[key] = inits[key]
    model.load_state_dict(_tensors(state))
    return model.eval()


def _tensors(state: dict[str, Floats]) -> dict[str, torch.Tensor]:
    # a copy: slices and transposes of the graph's read-only buffers become owned, contiguous
    return {k: torch.from_numpy(np.array(v, dtype=np.float32)) for k, v in state.items()}


def write_checkpoint(model_dir: Path, out: Path) -> Scorer:
    """Write the encoder of ``model_dir``'s graph and its tokenizer to ``out``, the folder
    ``python -m training.run --init-from`` reads; return the whole recovered network."""
    model = scorer(model_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.encoder.save_pretrained(out)
    shutil.copyfile(model_dir / TOKENIZER_FILE, out / TOKENIZER_FILE)
    return model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.recover", description=__doc__)
    parser.add_argument("--model", type=Path, default=Path("models"))
    parser.add_argument("--out", type=Path, default=Path("runs/recovered"))
    args = parser.parse_args(argv)
    write_checkpoint(require_model(args.model), args.out)
    print(f"wrote {args.out} from {args.model / MODEL_FILE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
