from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from servicekit import wait_for

from eval.evidence_latency import Feed, Way, score_for, table
from service.pipeline import Pipeline
from service.record import Post, ScoreRecord

POSTS = [
    Post(id="a", text="紧急扩散！明天全市停水三天，转给家人！不转不是中国人！"),
    Post(id="b", text="今天和家人去公园散步，天气很好。"),
]


def test_scoring_calls_come_at_the_rate_and_each_gets_its_latency(pipeline: Pipeline) -> None:
    own = Pipeline(pipeline.classifier, pipeline.policy)
    latencies = score_for(own, POSTS, seconds=0.5, rate=20)
    # a call every 50 ms for half a second, none the last instant's
    assert 1 <= len(latencies) <= 9
    assert all(ms > 0 for ms in latencies)


def test_the_feed_keeps_the_search_busy_with_new_texts_and_stops() -> None:
    seen: list[str] = []
    lock = threading.Lock()

    def search(posts: Sequence[Post], records: Sequence[ScoreRecord]) -> list[ScoreRecord]:
        with lock:
            seen.extend(p.text for p in posts)
        return list(records)

    record = ScoreRecord.model_validate(
        {
            "id": "a",
            "account_id": None,
            "scores": {},
            "flags": {},
            "signals": {},
            "decision": "review",
            "reasons": [],
            "model_version": "m",
            "policy_version": "p",
        }
    )
    with ThreadPoolExecutor(1) as executor:
        feed = Feed(executor, search, [(POSTS[0], record)])
        feed.start()
        wait_for(lambda: len(seen) > 2)
        feed.stop()
        done = len(seen)
        threading.Event().wait(0.1)
    assert done == len(seen), "no search after the stop"
    assert len(set(seen)) == len(seen), "each text is new: none is answered from memory"
    assert feed.searched <= done


def test_the_table_gives_each_ways_percentiles_and_calls_over_the_target() -> None:
    ways = {
        "none": Way(latencies=[1.0] * 99 + [40.0], searched=0, seconds=10.0),
        "thread": Way(latencies=[2.0] * 98 + [50.0, 900.0], searched=5, seconds=10.0),
    }
    none, thread = table(ways).splitlines()[2:]
    assert none == "| none | 100 | 1.0 | 40.0 | 40.0 | 40.0 | 1.0% | 0.0 |"
    assert thread == "| thread | 100 | 2.0 | 900.0 | 900.0 | 900.0 | 2.0% | 0.5 |"
