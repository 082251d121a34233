from __future__ import annotations

import json
import os
import subprocess
import sys

from training.tokenizer import SPECIAL, train_tokenizer, vocabulary

# many words with equal counts: the ties a hash-ordered trainer breaks differently every run
TIED = [
    " ".join(f"{a}{b}{c}" for a in "pqrs" for b in "tuvw" for c in "xyz") + " 今天 天气 很好",
    "hello world 12345 2020年 iphone ipad 你好 世界",
] * 3


def test_merges_follow_pair_counts_with_ties_broken_by_text() -> None:
    vocab = vocabulary(["ab ab ab cd cd cd xy"], vocab_size=16, min_frequency=2)
    # (a, ##b) and (c, ##d) occur 3 times each, (x, ##y) once: under min_frequency
    assert vocab == [*SPECIAL, "a", "b", "c", "d", "x", "y", "##b", "##d", "##y", "ab", "cd"]
    # (##b, ##c) and (a, ##b) tie: "##b" sorts first, and the next merge builds on it
    assert vocabulary(["abc abc"], vocab_size=20, min_frequency=2)[-2:] == ["##bc", "abc"]


def test_the_alphabet_keeps_the_commonest_characters_and_drops_the_rest() -> None:
    vocab = vocabulary(["aaa bbb ddd abc c"], vocab_size=4, min_frequency=1)
    # 3/4 of 4: the three commonest characters (a 4, b 4, d 3; c 2), in code-point order
    assert vocab[len(SPECIAL) : len(SPECIAL) + 3] == ["a", "b", "d"]
    assert "c" not in vocab and "##c" not in vocab


def test_the_tokenizer_splits_chinese_by_character_and_words_into_pieces() -> None:
    tok = train_tokenizer(TIED, vocab_size=400, min_frequency=2)
    assert tok.encode("今天天气").tokens == ["[CLS]", "今", "天", "天", "气", "[SEP]"]
    assert tok.encode("hello").tokens == ["[CLS]", "hello", "[SEP]"]
    pieces = tok.encode("hellp").tokens[1:-1]
    assert len(pieces) > 1 and all(p.startswith("##") for p in pieces[1:])
    assert "".join(p.removeprefix("##") for p in pieces) == "hellp"
    assert tok.encode("☃").tokens == ["[CLS]", "[UNK]", "[SEP]"]
    assert [tok.token_to_id(t) for t in SPECIAL] == list(range(len(SPECIAL)))


def test_the_same_texts_give_the_same_tokenizer_in_any_process() -> None:
    script = (
        "import json, sys; from training.tokenizer import train_tokenizer; "
        "texts = json.loads(sys.stdin.read()); "
        "print(train_tokenizer(texts, vocab_size=400, min_frequency=2).to_str())"
    )
    runs = {
        subprocess.run(
            [sys.executable, "-c", script],
            input=json.dumps(TIED),
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        ).stdout
        for seed in ("1", "2", "3")
    }
    assert len(runs) == 1
    here = train_tokenizer(TIED, vocab_size=400, min_frequency=2)
    assert json.loads(runs.pop())["model"]["vocab"] == json.loads(here.to_str())["model"]["vocab"]
