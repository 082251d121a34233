"""Micro-batching: concurrent requests share model calls, each gets its own records in order."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import pytest
from servicekit import record

from service.batching import MicroBatcher, OverloadedError
from service.record import Post, ScoreRecord


class Model:
    def __init__(self, fail: bool = False) -> None:
        self.batches: list[list[str]] = []
        self.threads: set[str] = set()
        self.fail = fail

    def score_many(self, posts: Sequence[Post]) -> list[ScoreRecord]:
        self.threads.add(threading.current_thread().name)
        self.batches.append([p.id for p in posts])
        if self.fail:
            raise RuntimeError("model failed")
        return [record(p.id) for p in posts]


def posts(*ids: str) -> list[Post]:
    return [Post(id=i, text="文") for i in ids]


async def run(batcher: MicroBatcher, requests: list[list[Post]]) -> list[list[str]]:
    try:
        results = await asyncio.gather(*(batcher.score(r) for r in requests))
        return [[rec.id for rec in records] for records in results]
    finally:
        await batcher.close()


def test_concurrent_requests_become_one_model_call_off_the_event_loop() -> None:
    model = Model()
    batcher = MicroBatcher(model.score_many, window_s=0.01, max_posts=64)
    requests = [posts(f"r{i}a", f"r{i}b") for i in range(10)]
    assert asyncio.run(run(batcher, requests)) == [[f"r{i}a", f"r{i}b"] for i in range(10)]
    assert len(model.batches) == 1 and len(model.batches[0]) == 20
    assert model.threads == {"inference_0"}


def test_a_batch_never_exceeds_max_posts_nor_splits_a_request() -> None:
    model = Model()
    sizes: list[int] = []
    batcher = MicroBatcher(model.score_many, window_s=0.01, max_posts=5, on_batch=sizes.append)
    requests = [posts(*(f"r{i}-{j}" for j in range(3))) for i in range(4)]
    asyncio.run(run(batcher, requests))
    assert sizes == [3, 3, 3, 3]
    assert all(len({b.split("-")[0] for b in batch}) == 1 for batch in model.batches)


def test_the_queue_depth_is_reported_each_time_it_changes() -> None:
    depths: list[int] = []
    batcher = MicroBatcher(Model().score_many, window_s=0.01, max_posts=5, on_depth=depths.append)
    asyncio.run(run(batcher, [posts(*(f"r{i}-{j}" for j in range(3))) for i in range(4)]))
    assert depths == [3, 6, 9, 12, 9, 6, 3, 0]
    assert batcher.depth == 0


def test_a_model_error_reaches_every_request_of_its_batch_and_the_next_batch_runs() -> None:
    async def scenario() -> None:
        model = Model(fail=True)
        batcher = MicroBatcher(model.score_many, window_s=0.005, max_posts=64)
        results = await asyncio.gather(
            batcher.score(posts("a")), batcher.score(posts("b")), return_exceptions=True
        )
        assert all(isinstance(r, RuntimeError) for r in results)
        model.fail = False
        assert [r.id for r in await batcher.score(posts("c"))] == ["c"]
        await batcher.close()

    asyncio.run(scenario())


def test_an_empty_request_does_not_call_the_model() -> None:
    model = Model()
    batcher = MicroBatcher(model.score_many, window_s=0.0, max_posts=8)
    assert asyncio.run(run(batcher, [[]])) == [[]]
    assert model.batches == []


@pytest.mark.parametrize("window", [0.0, 0.002])
def test_sequential_requests_are_answered_one_by_one(window: float) -> None:
    model = Model()
    batcher = MicroBatcher(model.score_many, window_s=window, max_posts=8)

    async def sequential() -> list[str]:
        out = [(await batcher.score(posts(f"s{i}")))[0].id for i in range(3)]
        await batcher.close()
        return out

    assert asyncio.run(sequential()) == ["s0", "s1", "s2"]
    assert model.batches == [["s0"], ["s1"], ["s2"]]


def test_with_two_workers_a_second_batch_runs_while_the_first_is_still_scoring() -> None:
    started = threading.Barrier(2, timeout=5)

    class Slow(Model):
        def score_many(self, posts: Sequence[Post]) -> list[ScoreRecord]:
            started.wait()  # returns only when both batches are in the model at once
            return super().score_many(posts)

    model = Slow()
    batcher = MicroBatcher(model.score_many, window_s=0.0, max_posts=1, workers=2)
    assert asyncio.run(run(batcher, [posts("a"), posts("b")])) == [["a"], ["b"]]
    assert len(model.threads) == 2


def test_a_full_queue_turns_requests_away_but_always_takes_one_into_an_empty_queue() -> None:
    release = threading.Event()

    class Stuck(Model):
        def score_many(self, posts: Sequence[Post]) -> list[ScoreRecord]:
            release.wait(5)
            return super().score_many(posts)

    async def scenario() -> None:
        batcher = MicroBatcher(Stuck().score_many, window_s=0.0, max_posts=1, max_queue=3)
        first = asyncio.ensure_future(batcher.score(posts("a", "b", "c", "d", "e")))
        await asyncio.sleep(0.05)  # in the model, which holds it: the queue is empty again
        queued = asyncio.ensure_future(batcher.score(posts("f", "g")))
        await asyncio.sleep(0)
        with pytest.raises(OverloadedError):
            await batcher.score(posts("h", "i"))
        release.set()
        assert [len(await first), len(await queued)] == [5, 2]
        await batcher.close()

    asyncio.run(scenario())
