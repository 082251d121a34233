"""Micro-batching: concurrent requests share model calls, each gets its own records in order;
a request too large for one call is cut into calls that other requests get between."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import Any

import pytest
from servicekit import record

from service.batching import MicroBatcher, OverloadedError
from service.record import Post, ScoreRecord


class Model:
    """Stage 1 marks each post's id, stage 2 makes the records from the marks."""

    def __init__(self, fail: bool = False) -> None:
        self.batches: list[list[str]] = []
        self.finished: list[list[str]] = []
        self.threads: set[str] = set()
        self.ordered_threads: set[str] = set()
        self.fail = fail

    def prepare(self, posts: Sequence[Post]) -> list[str]:
        self.threads.add(threading.current_thread().name)
        self.batches.append([p.id for p in posts])
        if self.fail:
            raise RuntimeError("model failed")
        return [f"prepared {p.id}" for p in posts]

    def finish(self, posts: Sequence[Post], prepared: Sequence[str]) -> list[ScoreRecord]:
        self.ordered_threads.add(threading.current_thread().name)
        self.finished.append([p.id for p in posts])
        # each post's own stage-1 result, in the order of the posts
        assert list(prepared) == [f"prepared {p.id}" for p in posts]
        return [record(p.id) for p in posts]

    def batcher(self, **kwargs: Any) -> MicroBatcher[str]:
        return MicroBatcher(self.prepare, self.finish, **kwargs)


def posts(*ids: str) -> list[Post]:
    return [Post(id=i, text="文") for i in ids]


async def run(batcher: MicroBatcher[str], requests: list[list[Post]]) -> list[list[str]]:
    try:
        results = await asyncio.gather(*(batcher.score(r) for r in requests))
        return [[rec.id for rec in records] for records in results]
    finally:
        await batcher.close()


def test_concurrent_requests_become_one_model_call_off_the_event_loop() -> None:
    model = Model()
    batcher = model.batcher(window_s=0.01, max_posts=64)
    requests = [posts(f"r{i}a", f"r{i}b") for i in range(10)]
    assert asyncio.run(run(batcher, requests)) == [[f"r{i}a", f"r{i}b"] for i in range(10)]
    assert len(model.batches) == 1 and len(model.batches[0]) == 20
    assert model.threads == {"inference_0"}


def test_a_batch_never_exceeds_max_posts_nor_splits_a_request() -> None:
    model = Model()
    sizes: list[int] = []
    batcher = model.batcher(window_s=0.01, max_posts=5, on_batch=sizes.append)
    requests = [posts(*(f"r{i}-{j}" for j in range(3))) for i in range(4)]
    asyncio.run(run(batcher, requests))
    assert sizes == [3, 3, 3, 3]
    assert all(len({b.split("-")[0] for b in batch}) == 1 for batch in model.batches)


def test_the_queue_depth_is_reported_each_time_it_changes() -> None:
    depths: list[int] = []
    batcher = Model().batcher(window_s=0.01, max_posts=5, on_depth=depths.append)
    asyncio.run(run(batcher, [posts(*(f"r{i}-{j}" for j in range(3))) for i in range(4)]))
    assert depths == [3, 6, 9, 12, 9, 6, 3, 0]
    assert batcher.depth == 0


def test_a_model_error_reaches_every_request_of_its_batch_and_the_next_batch_runs() -> None:
    async def scenario() -> None:
        model = Model(fail=True)
        batcher = model.batcher(window_s=0.005, max_posts=64)
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
    batcher = model.batcher(window_s=0.0, max_posts=8)
    assert asyncio.run(run(batcher, [[]])) == [[]]
    assert model.batches == []


@pytest.mark.parametrize("window", [0.0, 0.002])
def test_sequential_requests_are_answered_one_by_one(window: float) -> None:
    model = Model()
    batcher = model.batcher(window_s=window, max_posts=8)

    async def sequential() -> list[str]:
        out = [(await batcher.score(posts(f"s{i}")))[0].id for i in range(3)]
        await batcher.close()
        return out

    assert asyncio.run(sequential()) == ["s0", "s1", "s2"]
    assert model.batches == [["s0"], ["s1"], ["s2"]]


def test_with_two_workers_a_second_batch_runs_while_the_first_is_still_scoring() -> None:
    # 60 s: only a batcher that runs one batch at a time waits it out
    started = threading.Barrier(2, timeout=60)

    class Slow(Model):
        def prepare(self, posts: Sequence[Post]) -> list[str]:
            started.wait()  # returns only when both batches are in the model at once
            return super().prepare(posts)

    model = Slow()
    batcher = model.batcher(window_s=0.0, max_posts=1, workers=2)
    assert asyncio.run(run(batcher, [posts("a"), posts("b")])) == [["a"], ["b"]]
    assert len(model.threads) == 2


def test_a_full_queue_turns_requests_away_but_always_takes_one_into_an_empty_queue() -> None:
    release = threading.Event()

    class Stuck(Model):
        def prepare(self, posts: Sequence[Post]) -> list[str]:
            release.wait(5)
            return super().prepare(posts)

    async def scenario() -> None:
        batcher = Stuck().batcher(window_s=0.0, max_posts=1, max_queue=3)
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


class Gated(Model):
    """Each model call tells ``entered`` and waits for one ``go``."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Semaphore(0)
        self.go = threading.Semaphore(0)

    def prepare(self, posts: Sequence[Post]) -> list[str]:
        prepared = super().prepare(posts)
        self.entered.release()
        # 60 s: what it waits for is a step of the test away, however loaded the host
        if not self.go.acquire(timeout=60):
            raise TimeoutError("the test never let the call go")
        return prepared

    async def next_call(self) -> list[str]:
        assert await asyncio.to_thread(self.entered.acquire, timeout=60)
        return self.batches[-1]


def test_a_single_post_is_answered_between_the_chunks_of_a_large_request() -> None:
    async def scenario() -> None:
        model = Gated()
        sizes: list[int] = []
        batcher = model.batcher(window_s=0.0, max_posts=4, on_batch=sizes.append)
        large_posts = posts(*(f"b{i}" for i in range(10)))
        large = asyncio.ensure_future(batcher.score(large_posts))
        assert await model.next_call() == ["b0", "b1", "b2", "b3"]
        single = asyncio.ensure_future(batcher.score(posts("s")))
        await asyncio.sleep(0)  # the single post is queued while the large request is scored
        model.go.release()
        # a call of its own, not one filled up with the large request's posts
        assert await model.next_call() == ["s"]
        model.go.release()
        assert [r.id for r in await single] == ["s"]
        assert not large.done()
        assert await model.next_call() == ["b4", "b5", "b6", "b7"]
        model.go.release()
        assert await model.next_call() == ["b8", "b9"]
        model.go.release()
        assert [r.id for r in await large] == [p.id for p in large_posts]
        # stage 2 ran once for each request, the large one whole and in its order
        assert model.finished == [["s"], [p.id for p in large_posts]]
        assert sizes == [4, 1, 4, 2]
        await batcher.close()

    asyncio.run(scenario())


def test_requests_that_fit_in_a_call_are_never_split_and_cut_requests_take_turns() -> None:
    async def scenario() -> None:
        model = Gated()
        batcher = model.batcher(window_s=0.0, max_posts=4)
        first = asyncio.ensure_future(batcher.score(posts(*(f"a{i}" for i in range(6)))))
        assert await model.next_call() == ["a0", "a1", "a2", "a3"]
        second = asyncio.ensure_future(batcher.score(posts(*(f"c{i}" for i in range(9)))))
        third = asyncio.ensure_future(batcher.score(posts("t0", "t1", "t2")))
        await asyncio.sleep(0)
        for _ in range(5):
            model.go.release()
        results = await asyncio.gather(first, second, third)
        assert [[r.id for r in rs] for rs in results] == [
            [f"a{i}" for i in range(6)],
            [f"c{i}" for i in range(9)],
            ["t0", "t1", "t2"],
        ]
        assert model.batches == [
            ["a0", "a1", "a2", "a3"],
            # too large for any call: cut at the head of a call of its own
            ["c0", "c1", "c2", "c3"],
            ["t0", "t1", "t2"],
            # then the cut requests' turn, in turn, filling the call
            ["a4", "a5", "c4", "c5"],
            ["c6", "c7", "c8"],
        ]
        assert model.finished == [
            ["t0", "t1", "t2"],
            [f"a{i}" for i in range(6)],
            [f"c{i}" for i in range(9)],
        ]
        await batcher.close()

    asyncio.run(scenario())


def test_new_requests_and_cut_ones_take_turns_so_that_a_large_request_advances() -> None:
    async def scenario() -> None:
        model = Gated()
        batcher = model.batcher(window_s=0.0, max_posts=2)
        large = asyncio.ensure_future(batcher.score(posts(*(f"b{i}" for i in range(6)))))
        assert await model.next_call() == ["b0", "b1"]
        singles = [asyncio.ensure_future(batcher.score(posts(f"s{i}"))) for i in range(3)]
        await asyncio.sleep(0)
        model.go.release()
        assert await model.next_call() == ["s0", "s1"]
        model.go.release()
        assert await model.next_call() == ["b2", "b3"]
        model.go.release()
        assert await model.next_call() == ["s2"]
        for _ in range(2):
            model.go.release()
        await asyncio.gather(large, *singles)
        assert model.batches[-1] == ["b4", "b5"]
        await batcher.close()

    asyncio.run(scenario())


def test_requests_completed_by_one_call_are_finished_together_in_their_order() -> None:
    async def scenario() -> None:
        model = Gated()
        batcher = model.batcher(window_s=0.01, max_posts=4)
        first = asyncio.ensure_future(batcher.score(posts(*(f"a{i}" for i in range(6)))))
        second = asyncio.ensure_future(batcher.score(posts(*(f"b{i}" for i in range(6)))))
        for _ in range(3):
            model.go.release()
        await asyncio.gather(first, second)
        assert model.batches[-1] == ["a4", "a5", "b4", "b5"]
        assert model.finished == [[*(f"a{i}" for i in range(6)), *(f"b{i}" for i in range(6))]]
        await batcher.close()

    asyncio.run(scenario())


def test_a_failing_chunk_fails_its_request_only_and_its_other_chunks_are_not_scored() -> None:
    class FailsOn(Gated):
        def prepare(self, posts: Sequence[Post]) -> list[str]:
            prepared = super().prepare(posts)
            if any(p.id == "b5" for p in posts):
                raise RuntimeError("model failed")
            return prepared

    async def scenario() -> None:
        model = FailsOn()
        batcher = model.batcher(window_s=0.0, max_posts=4)
        large = asyncio.ensure_future(batcher.score(posts(*(f"b{i}" for i in range(12)))))
        await model.next_call()
        single = asyncio.ensure_future(batcher.score(posts("s")))
        other = asyncio.ensure_future(batcher.score(posts("o0", "o1", "o2", "o3")))
        await asyncio.sleep(0)
        model.go.release()
        assert await model.next_call() == ["s"]
        model.go.release()
        assert await model.next_call() == ["b4", "b5", "b6", "b7"]
        model.go.release()
        with pytest.raises(RuntimeError, match="model failed"):
            await large
        assert await model.next_call() == ["o0", "o1", "o2", "o3"]
        model.go.release()
        assert [r.id for r in await single] == ["s"]
        assert [r.id for r in await other] == ["o0", "o1", "o2", "o3"]
        assert all("b8" not in b for b in model.batches)
        assert model.finished == [["s"], ["o0", "o1", "o2", "o3"]]
        await batcher.close()

    asyncio.run(scenario())


def test_an_error_in_the_ordered_stage_fails_the_requests_it_finishes_and_the_next_runs() -> None:
    class Breaks(Model):
        def finish(self, posts: Sequence[Post], prepared: Sequence[str]) -> list[ScoreRecord]:
            if any(p.id == "bad" for p in posts):
                raise ValueError("ordered stage failed")
            return super().finish(posts, prepared)

    async def scenario() -> None:
        model = Breaks()
        batcher = model.batcher(window_s=0.0, max_posts=2)
        with pytest.raises(ValueError, match="ordered stage failed"):
            await batcher.score(posts("a", "bad", "c"))
        assert [r.id for r in await batcher.score(posts("d", "e", "f"))] == ["d", "e", "f"]
        await batcher.close()

    asyncio.run(scenario())


def test_the_ordered_stage_runs_on_one_thread_of_its_own_with_several_workers() -> None:
    model = Model()
    batcher = model.batcher(window_s=0.0, max_posts=2, workers=2)
    requests = [posts(*(f"r{i}-{j}" for j in range(5))) for i in range(4)]
    assert asyncio.run(run(batcher, requests)) == [[p.id for p in r] for r in requests]
    assert model.ordered_threads == {"ordered_0"}
    # each request whole and in its order in one call of the ordered stage
    for request in requests:
        ids = [p.id for p in request]
        assert sum(ids == f[k : k + len(ids)] for f in model.finished for k in range(len(f))) == 1


def test_a_request_being_scored_in_chunks_no_longer_counts_as_waiting() -> None:
    async def scenario() -> None:
        model = Gated()
        depths: list[int] = []
        batcher = model.batcher(window_s=0.0, max_posts=2, max_queue=3, on_depth=depths.append)
        large = asyncio.ensure_future(batcher.score(posts(*(f"b{i}" for i in range(8)))))
        await model.next_call()
        assert batcher.depth == 0
        # a post to publish is taken although six of the large request's posts are not scored
        single = asyncio.ensure_future(batcher.score(posts("s")))
        await asyncio.sleep(0)
        with pytest.raises(OverloadedError):
            await batcher.score(posts("x", "y", "z"))
        for _ in range(5):
            model.go.release()
        assert len(await single) == 1 and len(await large) == 8
        assert depths == [8, 0, 1, 0]
        await batcher.close()

    asyncio.run(scenario())
