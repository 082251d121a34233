from __future__ import annotations

import json

from eval.post_cost import VARIANTS, Clock, Tally, one_round, previous_inputs, table
from service.classify import model_inputs
from service.pipeline import Pipeline
from service.record import Post

POSTS = [
    Post(id="a", text="紧急扩散！明天全市停水三天，转给家人！不转不是中国人！"),
    Post(id="b", text="这帮人都是垃圾，滚出我们城市，恶心死了！！"),
    Post(id="c", text="今天和家人去公园散步，天气很好。"),
]


def test_the_previous_inputs_are_the_current_ones(pipeline: Pipeline) -> None:
    # what the comparison rests on: only the work differs, never what the model is given
    tok = pipeline.classifier.tokenizer
    texts = [p.text for p in POSTS] + ["hello, world 1234", ""]
    old, new = previous_inputs(tok, texts), model_inputs(tok, texts)
    assert old.keys() == new.keys()
    for name in old:
        assert old[name].dtype == new[name].dtype
        assert old[name].tolist() == new[name].tolist()


def test_a_round_gives_each_variant_the_same_records_and_splits_its_cpu(
    pipeline: Pipeline,
) -> None:
    # a pipeline of its own: a round empties the near-duplicate window it runs in
    own = Pipeline(pipeline.classifier, pipeline.policy)
    rounds = {name: one_round(own, POSTS, inputs) for name, inputs in VARIANTS.items()}
    (old_clock, old), (new_clock, new) = rounds["previous"], rounds["current"]
    assert old == new
    assert any(json.loads(r)["decision"] != "pass" for r in new), "no post searched for spans"
    assert not any(json.loads(r)["evidence_pending"] for r in new)
    for clock in (old_clock, new_clock):
        assert clock.onnx > 0 and clock.inputs > 0
        assert clock.onnx + clock.inputs <= clock.scoring + clock.evidence
    # the sessions are given back as they were
    assert type(pipeline.classifier.session).__name__ == "InferenceSession"


def test_the_table_gives_each_rounds_mean_and_range_and_counts_unlike_records() -> None:
    def tally(records: list[list[str]]) -> Tally:
        clocks = [Clock(0.010, 0.002, 0.004, 0.010), Clock(0.012, 0.002, 0.004, 0.012)]
        return Tally(clocks, 0.5, records)

    shown = table(
        {
            ("corpus", "previous"): tally([["x", "y"], ["x", "z"]]),
            ("corpus", "current"): tally([["x", "y"], ["x", "y"]]),
        }
    )
    previous, current = shown.splitlines()[2:]
    # a post: 14 and 16 ms in all, ONNX Runtime 10 and 12 of them, 2 the inputs, 2 the rest
    assert previous.startswith(
        "| corpus | previous | 50% | 15.00 (14.00-16.00) | 11.00 (10.00-12.00) "
        "| 2.00 (2.00-2.00) | 2.00 (2.00-2.00) |"
    )
    assert previous.endswith("| 1 |") and current.endswith("| 0 |")
