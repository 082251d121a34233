"""Stage 2: the classifier, an ONNX Runtime session over the shipped model in ``models/``.

The model takes the tokenizer's ids and the hashed n-gram bag of the normalised text and returns
one calibrated probability per head (:data:`service.heads.HEADS`); ``models/card.md`` says how it
was trained. A session also returns each head's calibrated log-odds (:data:`LOGITS`), the input
of the graph's final sigmoid, which :func:`with_logits` makes an output when the session opens:
the evidence search weighs windows in log-odds, and float32 rounds a probability past about 16.6
log-odds to exactly 1, where no window could move it. Neither torch nor transformers is imported
here.

The originality head scores only texts with a claim word (:func:`service.claims.
has_claim_words`); every other text gets 0. Its corpus holds no claim without one, and on such
texts, which it never learnt to tell apart, its n-gram branch gave hash collisions with claim
phrasings the weight of a claim: 40 of 30,000 ordinary reposts at 0.5 or more, every one without
a claim word ("投哪啊", "今天就自己做饭" at 1.0), the short texts that many accounts copy and the
fake-originality check then charged.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort
from tokenizers import Tokenizer

from service.claims import has_claim_words, without_notices
from service.features import bag
from service.heads import HEADS, Head
from service.normalise import WINDOW

MODEL_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
CARD_FILE = "card.json"
INPUTS = ("input_ids", "attention_mask", "ngram_ids", "ngram_counts")
PROBS = "probs"
LOGITS = "logits"

Feeds = dict[str, npt.NDArray[Any]]
Probabilities = npt.NDArray[np.float32]
"""``[texts, len(HEADS)]``: probabilities, or log-odds."""

BODY_HEADS = [h for h, head in enumerate(HEADS) if head != "originality_claim"]
"""The heads scored on a post's body, its rights notices left out (:func:`service.claims.
without_notices`): a notice is what the originality head looks for and nothing the risk heads
should weigh."""
ORIGINALITY = HEADS.index("originality_claim")


class ModelNotFoundError(FileNotFoundError):
    pass


SET_MODEL_DIR = "run `make train`, or set QINGLANG_MODEL_DIR"


class ModelFileError(SystemExit):
    """A model file that a ``python -m`` program needs and that is not there or cannot be read,
    in one line naming the file: like :class:`training.data.CorpusError`, a SystemExit, so the
    program ends on that line, status 1, before any work. The service never raises it (a server
    reports the model it cannot load in its own words)."""


def first_missing(model_dir: Path) -> Path | None:
    """The first of the model's files (model, tokenizer, card) not in ``model_dir``; None when
    every one is there."""
    return next(
        (
            p
            for name in (MODEL_FILE, TOKENIZER_FILE, CARD_FILE)
            if not (p := model_dir / name).is_file()
        ),
        None,
    )


def read_tokenizer(path: Path, hint: str = SET_MODEL_DIR) -> Tokenizer:
    """The tokenizer saved in ``path``; else :class:`ModelFileError` naming it (and, for a
    missing one, ``hint``): tokenizers' own error names no file."""
    if not path.is_file():
        raise ModelFileError(f"{path} is missing: {hint}")
    try:
        return Tokenizer.from_file(str(path))
    except Exception as exc:  # tokenizers raises a bare Exception
        raise ModelFileError(f"{path}: not a tokenizer ({' '.join(str(exc).split())})") from None


def require_model(model_dir: Path, hint: str = SET_MODEL_DIR) -> Path:
    """``model_dir``, once its model is there and its tokenizer and card read; else
    :class:`ModelFileError` naming the first file that does not (and ``hint`` for a missing
    one). A program using a model calls it first, before reading the corpora for minutes."""
    if (absent := first_missing(model_dir)) is not None:
        raise ModelFileError(f"{absent} is missing: {hint}")
    read_tokenizer(model_dir / TOKENIZER_FILE, hint)
    card = model_dir / CARD_FILE
    try:
        fields = json.loads(card.read_bytes())
    except (OSError, ValueError) as exc:
        raise ModelFileError(f"{card}: not JSON ({' '.join(str(exc).split())})") from None
    if not isinstance(fields, dict) or "model_version" not in fields:
        raise ModelFileError(f"{card}: not a model card (no model_version)")
    return model_dir


def tokenize_on_calling_thread() -> None:
    """Have ``tokenizers`` encode on the thread that calls it, for the rest of this process.

    Left to itself it encodes a batch on a pool of its own, a thread a core at normal priority.
    In a server or a batch worker every core already runs a model session, so the pool only
    contends with them (32 posts took 2.9 ms of CPU on the pool against 2.4 ms on the calling
    thread, 0.3 ms sooner; an evidence call of 37 rows 2.3-2.7 against 2.0-2.1 ms), and in the
    server the evidence process's encoding would escape its idle priority."""
    os.environ["TOKENIZERS_PARALLELISM"] = "false"


def load_tokenizer(path: Path) -> Tokenizer:
    tok = Tokenizer.from_file(str(path))
    tok.enable_truncation(WINDOW + 2)
    tok.enable_padding(pad_id=tok.token_to_id("[PAD]"))
    return tok


def model_inputs(tok: Tokenizer, texts: Sequence[str]) -> Feeds:
    """The model's inputs for normalised ``texts`` (padded to the longest).

    Encoded without the character offsets nothing here reads (``encode_batch_fast``): the same
    ids and mask, for 8% less time in the inputs of a corpus post (``python -m eval.post_cost``).
    """
    enc = tok.encode_batch_fast(list(texts))
    ids, counts = bag(texts)
    return {
        "input_ids": np.array([e.ids for e in enc], dtype=np.int64),
        "attention_mask": np.array([e.attention_mask for e in enc], dtype=np.int64),
        "ngram_ids": ids,
        "ngram_counts": counts,
    }


def open_session(path: Path, threads: int = 1) -> ort.InferenceSession:
    """An ONNX Runtime CPU session with ``threads`` intra-op threads and full optimisation.

    Its pool threads sleep between calls instead of spinning: a spinning thread keeps a core
    busy for nothing after each call, and in the server those cores are what the HTTP, storage
    and evidence threads are waiting for.
    """
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(with_logits(path), opts, providers=["CPUExecutionProvider"])


def with_logits(path: Path) -> bytes:
    """The model at ``path`` with the input of its final sigmoid as a second output,
    :data:`LOGITS`; the file, whose hash is the model version, is left as it is."""
    model = onnx.load(str(path))
    final = next((n for n in model.graph.node if PROBS in n.output), None)
    if final is None or final.op_type != "Sigmoid":
        raise ValueError(f"{path}: '{PROBS}' is not the output of a sigmoid")
    add_output(model, final.input[0], LOGITS)
    return bytes(model.SerializeToString())


def add_output(model: onnx.ModelProto, tensor: str, name: str | None = None) -> str:
    """Make the float tensor ``tensor`` of ``model`` an output (in place), under ``name`` when
    given; the output's name."""
    if name is not None:
        model.graph.node.append(onnx.helper.make_node("Identity", [tensor], [name]))
    out = name or tensor
    model.graph.output.append(onnx.helper.make_tensor_value_info(out, onnx.TensorProto.FLOAT, None))
    return out


def content_hash(path: Path) -> str:
    """``model_version``: the first 16 hex digits of the file's SHA-256."""
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()[:16]


class Classifier:
    """Calibrated head probabilities for normalised texts."""

    def __init__(self, model_dir: Path, threads: int = 1, batch_size: int = 64) -> None:
        if (absent := first_missing(model_dir)) is not None:
            raise ModelNotFoundError(f"{absent} is missing: {SET_MODEL_DIR}")
        self.card: dict[str, Any] = json.loads((model_dir / CARD_FILE).read_text())
        self.version: str = self.card["model_version"]
        if self.card["heads"] != list(HEADS):
            raise ValueError(f"{model_dir} has heads {self.card['heads']}, expected {HEADS}")
        self.path = model_dir / MODEL_FILE
        self.threads = threads
        self.tokenizer = load_tokenizer(model_dir / TOKENIZER_FILE)
        self.batch_size = batch_size
        self.log_odds_chars: int | None = LOG_ODDS_CHARS
        """:meth:`log_odds`' cap on a model call's rows x longest row, in characters (None:
        :attr:`batch_size` rows whatever their lengths)."""

    def with_threads(self, threads: int) -> Classifier:
        """The same model and tokenizer on a session of its own with ``threads`` ONNX threads
        (opened on first use, like this one's)."""
        other = copy.copy(self)
        other.threads = threads
        other.__dict__.pop("session", None)
        return other

    @cached_property
    def digest(self) -> str:
        """The hash of the model file as it is now (:attr:`version` is the one ``card.json``
        gives, which a model file copied over without its card would not change)."""
        return content_hash(self.path)

    @cached_property
    def session(self) -> ort.InferenceSession:
        # opened on first use: a batch run's parent holds the pipeline for its ordered stage
        # and never loads the model unless a record needs evidence only the model can give
        return open_session(self.path, self.threads)

    def predict(self, texts: Sequence[str]) -> Probabilities:
        """``[len(texts), len(HEADS)]`` probabilities, in input order.

        A text with a rights notice is also run without it, and its :data:`BODY_HEADS` come
        from that row. A text without a claim word (:func:`service.claims.has_claim_words`)
        claims nothing: its originality probability is 0 (log-odds -inf). Texts are sorted by
        length and run in batches (:func:`length_batches`), so that a batch pads to similar
        lengths; the rows are put back in input order.
        """
        return self._run(texts, PROBS)

    def log_odds(self, texts: Sequence[str], heads: Sequence[Head] = HEADS) -> Probabilities:
        """The calibrated log-odds of :meth:`predict`'s probabilities, unrounded, in batches of
        at most :attr:`log_odds_chars` characters as padded: the evidence search's calls are
        dozens of rows of one long text each (:data:`LOG_ODDS_CHARS`). Only the columns of
        ``heads`` are computed, the others NaN: a text with a rights notice is run once, as
        its body, unless its originality is asked for."""
        return self._run(texts, LOGITS, self.log_odds_chars, heads)

    def _run(
        self,
        texts: Sequence[str],
        output: str,
        chars: int | None = None,
        heads: Sequence[Head] = HEADS,
    ) -> Probabilities:
        bodies = {i: b for i, t in enumerate(texts) if (b := without_notices(t)) is not None}
        claims = "originality_claim" in heads
        # a text's own row serves its originality only where it has a body: without that
        # head, the body takes the row's place
        rows = [t if claims else bodies.get(i, t) for i, t in enumerate(texts)]
        rows += list(bodies.values()) if claims else []
        out = np.zeros((len(rows), len(HEADS)), dtype=np.float32)
        for idx in length_batches([len(t) for t in rows], self.batch_size, chars=chars):
            feeds = model_inputs(self.tokenizer, [rows[i] for i in idx])
            out[idx] = self.session.run([output], feeds)[0]
        if claims:
            out[np.ix_(list(bodies), BODY_HEADS)] = out[len(texts) :][:, BODY_HEADS]
            unclaimed = [i for i, t in enumerate(texts) if not has_claim_words(t)]
            out[unclaimed, ORIGINALITY] = 0.0 if output == PROBS else -np.inf
        out[:, [k for k, h in enumerate(HEADS) if h not in heads]] = np.nan
        return out[: len(texts)]


SHORT = 16
"""Texts up to this many characters share a batch whatever their lengths."""

LOG_ODDS_CHARS = 1024
"""Of a :meth:`Classifier.log_odds` call: rows x its longest row, in characters (about tokens).
The evidence search asks for dozens of rows of one text at a time (a flagged Weibo source post:
37 rows of about 110 characters), and a row costs more in a run of many long rows, whose
activations outgrow the core's caches: on the AMD EPYC of 2026-12-06, two processes weighing 24
windows of 40 flagged Weibo16 posts each took 2.94 CPU-ms a row in one run a post and 2.69 in
runs of at most 1,024 characters (2.78 at 512; three alternated rounds), and the evidence
search took 9% less CPU a flagged source post (``python -m eval.evidence_cost``). It is not
:meth:`Classifier.predict`'s: records' scores stay those of batches of ``batch_size`` posts."""


def length_batches(
    lengths: Sequence[int], size: int, spread: float = 2.0, *, chars: int | None = None
) -> list[list[int]]:
    """Indices of ``lengths`` sorted by length, cut into batches of at most ``size``, a batch
    also ending where the next text is more than ``spread`` times its shortest (or over
    :data:`SHORT`), and, given ``chars``, where its rows padded to the next text would hold
    more than ``chars`` characters (a text longer than that has a batch of its own).

    A model call pads every row to its longest and costs about rows x that length, so one long
    post in a batch of short ones makes them all pay for it: on the service's mixed traffic,
    batches of 32 posts ran about 3x faster cut this way than padded as one.
    """
    batches: list[list[int]] = []
    for i in sorted(range(len(lengths)), key=lengths.__getitem__):
        batch = batches[-1] if batches else None
        if (
            batch is not None
            and len(batch) < size
            and lengths[i] <= max(SHORT, spread * lengths[batch[0]])
            and (chars is None or (len(batch) + 1) * lengths[i] <= chars)
        ):
            batch.append(i)
        else:
            batches.append([i])
    return batches
