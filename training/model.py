"""The classifier as one PyTorch module, the graph that is exported to ONNX.

For head ``h`` the calibrated probability is

    p_h = sigmoid((a_h · wide_h + deep_h) / T_h)

- ``wide_h``: the n-gram branch (:mod:`training.wide`), computed in the graph from the bucket
  ids and counts of :func:`service.features.bag`;
- ``deep_h``: a linear head over the masked mean of the BERT encoder's last hidden states;
- ``a_h``: a learned mixing weight; ``T_h``: the temperature fitted on the calibration split.

Inputs (all with dynamic batch and length axes): ``input_ids`` and ``attention_mask`` from the
tokenizer, ``ngram_ids`` and ``ngram_counts`` from :func:`service.features.bag`. Output: ``probs``
of shape ``[batch, len(HEADS)]``.
"""

from __future__ import annotations

from typing import Any

import numpy.typing as npt
import torch
from torch import nn
from transformers import BertModel

from service.features import BUCKETS
from service.heads import HEADS

Array = npt.NDArray[Any]


class Wide(nn.Module):
    """Sublinear TF-IDF + logistic regression over hashed n-gram buckets, one column a head."""

    idf: torch.Tensor
    coef: torch.Tensor
    bias: torch.Tensor

    def __init__(self, heads: int = len(HEADS)) -> None:
        super().__init__()
        self.register_buffer("idf", torch.ones(BUCKETS))
        self.register_buffer("coef", torch.zeros(BUCKETS, heads))
        self.register_buffer("bias", torch.zeros(heads))

    def forward(self, ngram_ids: torch.Tensor, ngram_counts: torch.Tensor) -> torch.Tensor:
        present = ngram_counts > 0
        tf = torch.where(present, 1 + torch.log(ngram_counts.clamp(min=1)), 0.0)
        w = tf * self.idf[ngram_ids]
        w = w / torch.sqrt((w * w).sum(dim=1, keepdim=True)).clamp(min=1e-12)
        return torch.einsum("bn,bnh->bh", w, self.coef[ngram_ids]) + self.bias


class Scorer(nn.Module):
    temperature: torch.Tensor

    @classmethod
    def over(cls, encoder: BertModel, idf: Array, coef: Array, bias: Array) -> Scorer:
        """A scorer with ``encoder`` and a fitted n-gram branch (:func:`training.wide.fit`)."""
        model = cls(encoder)
        model.wide.idf.copy_(torch.from_numpy(idf))
        model.wide.coef.copy_(torch.from_numpy(coef))
        model.wide.bias.copy_(torch.from_numpy(bias))
        return model

    def __init__(self, encoder: BertModel, heads: int = len(HEADS), dropout: float = 0.1):
        super().__init__()
        self.encoder = encoder
        self.wide = Wide(heads)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(encoder.config.hidden_size, heads)
        # the encoder starts as no correction at all: the model begins as the n-gram branch
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        self.mix = nn.Parameter(torch.ones(heads))
        self.register_buffer("temperature", torch.ones(heads))

    def deep(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask)[0]
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
        return self.head(self.dropout(pooled))  # type: ignore[no-any-return]

    def logits(self, deep: torch.Tensor, wide: torch.Tensor) -> torch.Tensor:
        """Uncalibrated logits from the two branches."""
        return self.mix * wide + deep

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        ngram_ids: torch.Tensor,
        ngram_counts: torch.Tensor,
    ) -> torch.Tensor:
        z = self.logits(self.deep(input_ids, attention_mask), self.wide(ngram_ids, ngram_counts))
        return torch.sigmoid(z / self.temperature)
