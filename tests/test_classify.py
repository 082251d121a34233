"""The classifier's batching (length buckets, input order, the same probabilities) and its
log-odds."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from service.api import app
from service.classify import (
    LOG_ODDS_CHARS,
    MODEL_FILE,
    SHORT,
    Classifier,
    length_batches,
    model_inputs,
)
from service.heads import HEADS
from service.pipeline import Pipeline
from service.settings import Settings


def test_length_batches_cover_every_index_once_sorted_by_length() -> None:
    lengths = [40, 3, 200, 17, 90, 3, 35, 120]
    batches = length_batches(lengths, size=64)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(len(lengths)))
    assert [lengths[i] for i in flat] == sorted(lengths)


def test_a_batch_ends_where_the_next_text_is_over_twice_its_shortest() -> None:
    lengths = [20, 30, 40, 41, 100, 200]
    batches = length_batches(lengths, size=64)
    assert [[lengths[i] for i in b] for b in batches] == [[20, 30, 40], [41], [100, 200]]


def test_short_texts_share_a_batch_and_size_caps_it() -> None:
    lengths = [1, SHORT, 2, 5, 9, 3, 4]
    assert [len(b) for b in length_batches(lengths, size=64)] == [7]
    assert [len(b) for b in length_batches(lengths, size=3)] == [3, 3, 1]


def test_chars_cap_a_batch_at_its_rows_padded_to_the_longest() -> None:
    lengths = [100] * 10 + [30] * 4 + [300]
    batches = length_batches(lengths, size=64, chars=400)
    assert [[lengths[i] for i in b] for b in batches] == [
        [30] * 4,
        [100] * 4,
        [100] * 4,
        [100] * 2,
        [300],
    ]
    assert [len(b) for b in length_batches(lengths, size=64)] == [4, 10, 1]


def test_the_log_odds_run_in_calls_of_at_most_log_odds_chars(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    classifier = pipeline.classifier
    texts = [("今天天气很好，我们去公园散步。" * 8)[: 120 - i] for i in range(30)]
    shapes: list[tuple[int, int]] = []
    session = classifier.session

    class Counted:
        def run(self, outputs: list[str], feeds: dict[str, Any]) -> Any:
            shapes.append(feeds["input_ids"].shape)
            return session.run(outputs, feeds)

    monkeypatch.setitem(classifier.__dict__, "session", Counted())
    z = classifier.log_odds(texts)
    assert len(shapes) > 1 and sum(rows for rows, _ in shapes) == len(texts)
    # a row's tokens are its characters and [CLS], [SEP]
    assert all(rows * (tokens - 2) <= LOG_ODDS_CHARS for rows, tokens in shapes)
    monkeypatch.setitem(classifier.__dict__, "session", session)
    # int8 activations are quantised per call, hence the tolerance
    np.testing.assert_allclose(1 / (1 + np.exp(-z)), classifier.predict(texts), atol=2e-2)


def test_the_digest_is_the_model_file_s_whatever_the_card_says(
    settings: Settings, tmp_path: Path
) -> None:
    shipped = Classifier(settings.model_dir)
    assert shipped.digest == shipped.version
    copied = tmp_path / "models"
    shutil.copytree(settings.model_dir, copied)
    with (copied / MODEL_FILE).open("ab") as model:
        model.write(b"another model under the same card")
    other = Classifier(copied)
    assert other.version == shipped.version
    assert other.digest != shipped.digest


def test_predict_keeps_input_order_across_batches(pipeline: Pipeline) -> None:
    texts = ["短", "这是一条比较长的微博内容，" * 12, "你好世界", "测试" * 30, "滚"]
    together = pipeline.classifier.predict(texts)
    one_by_one = np.vstack([pipeline.classifier.predict([t]) for t in texts])
    # int8 activations are quantised per call, hence the tolerance
    np.testing.assert_allclose(together, one_by_one, atol=2e-2)
    assert not np.allclose(together[0], together[1], atol=2e-2)


def test_with_threads_shares_the_model_but_not_the_session(pipeline: Pipeline) -> None:
    classifier = pipeline.classifier
    own = classifier.with_threads(1)
    assert own.tokenizer is classifier.tokenizer and own.threads == 1
    assert own.session is not classifier.session
    np.testing.assert_allclose(own.predict(["你好世界"]), classifier.predict(["你好世界"]))


def test_the_log_odds_are_the_probabilities_unrounded(pipeline: Pipeline) -> None:
    # the second text has a rights notice: its risk heads come from the body alone
    texts = ["紧急扩散！明天全市停水三天，转给家人！", "本文为原创，首发于本公众号。天气不错", "滚"]
    classifier = pipeline.classifier
    z = classifier.log_odds(texts).astype(np.float64)
    np.testing.assert_allclose(1 / (1 + np.exp(-z)), classifier.predict(texts), atol=1e-6)
    # the risk heads alone: the noticed text runs as its body only, the claim column is not
    # made; the batches differ, and int8 activations are quantised per call, hence the tolerance
    risks = classifier.log_odds(texts, ["rumor", "incitement"])
    np.testing.assert_allclose(risks[:, :2], z[:, :2], atol=2e-2)
    assert np.isnan(risks[:, HEADS.index("originality_claim")]).all()


TOKENIZED = [
    "紧急扩散！明天全市停水三天，转给家人！",
    "hello world, 这是iPhone15的review:价格9999元 http://t.cn/abc",
    "a" * 150 + " 超长的词",  # over the tokenizer's 100 characters a word: [UNK]
    "☃🙂 ¿qué? naïve café ＡＢＣ",
    "滚",
    "",
]


def test_model_inputs_are_the_tokenizers_full_encoding(pipeline: Pipeline) -> None:
    # the inputs skip the tokenizer's character offsets: the ids and mask must be what the
    # full encoding gives, padding included, or every score would move
    tok = pipeline.classifier.tokenizer
    full = tok.encode_batch(TOKENIZED)
    feeds = model_inputs(tok, TOKENIZED)
    assert feeds["input_ids"].tolist() == [e.ids for e in full]
    assert feeds["attention_mask"].tolist() == [e.attention_mask for e in full]
    assert feeds["input_ids"].shape == (len(TOKENIZED), max(len(e.ids) for e in full))


THREADS_AFTER_ENCODING = """
import os, sys
from service.classify import load_tokenizer, model_inputs, tokenize_on_calling_thread
from service.settings import Settings
if sys.argv[1] == "calling":
    tokenize_on_calling_thread()
tok = load_tokenizer(Settings().model_dir / "tokenizer.json")
before = len(os.listdir("/proc/self/task"))
model_inputs(tok, ["今天和家人去公园散步，天气很好。" * 8] * 256)
print(len(os.listdir("/proc/self/task")) - before)
"""


def test_the_tokenizer_encodes_on_the_calling_thread_when_told() -> None:
    def threads_started(mode: str) -> int:
        run = [sys.executable, "-c", THREADS_AFTER_ENCODING, mode]
        # as a fresh process has it: a server app made in this one has set the variable
        env = {k: v for k, v in os.environ.items() if k != "TOKENIZERS_PARALLELISM"}
        return int(subprocess.run(run, check=True, capture_output=True, text=True, env=env).stdout)

    assert threads_started("calling") == 0
    assert threads_started("pool") > 0, "the tokenizer's own pool, which the call turns off"


def test_a_server_sets_its_tokenizer_to_the_calling_thread_once_before_loading(
    pipeline: Pipeline, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    steps: list[str] = []
    monkeypatch.setattr(app, "tokenize_on_calling_thread", lambda: steps.append("tokenizer"))

    def load(settings: Settings) -> Pipeline:
        steps.append("load")
        return pipeline

    monkeypatch.setattr(Pipeline, "load", load)
    app.create_app(Settings(state_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'q.db'}"))
    assert steps == ["tokenizer", "load"]
