"""The ordered stage partitioned by time range: segments of consecutive tasks, each warmed up over
the time before it, give the records of one process scoring the posts in order, on real reposts
with a coordinated batch and a cluster that chains across more than a warm-up; a segment whose
boundary check fails is matched again in the run's process without running the model again."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from batchkit import (
    CountingScorer,
    chunked_records,
    counting_scorer,
    read_records,
    reposts_with_campaigns,
    rescore_lines,
    shuffled_posts,
)

from service.batch.local import LocalEngine
from service.batch.segments import (
    KEEP,
    WARM,
    match_again,
    plan_segments,
    run_segment,
    segment_sizes,
)
from service.batch.sources import Task, plan
from service.pipeline import Pipeline
from service.rescore import InlineEngine, batch_settings
from service.settings import Settings

SETTINGS = batch_settings(Settings())
CHUNK = 16


def test_segments_on_two_workers_write_the_single_process_records(tmp_path: Path) -> None:
    lines = reposts_with_campaigns()
    reference = chunked_records(Pipeline.load(SETTINGS), lines, CHUNK)
    batch = [r for r in reference if r.id.startswith("burst") and r.flags["coordination"]]
    chain = [r.cluster for r in reference if r.id.startswith("chain") and r.cluster]
    assert batch and chain[-1].size == 16
    assert chain[-1].last_at - chain[-1].first_at > Pipeline.load(SETTINGS).memory_s
    engine = LocalEngine(Pipeline.load, SETTINGS, 2)
    summary = rescore_lines(tmp_path, lines, engine, chunk_size=CHUNK)
    assert read_records(tmp_path / "out.jsonl") == reference
    # some boundaries were taken from a warm-up, some scored again: both paths are in play
    assert summary.segments == len(segment_sizes(17, 2, 50_000 // CHUNK)) == 8  # 17 tasks
    assert 1 <= summary.rerun < summary.segments - 1
    parent = engine.scorer()
    assert isinstance(parent, Pipeline)
    # the segments matched again here ran no model: neither of its sessions was opened
    assert "session" not in vars(parent.classifier) and "session" not in vars(parent.explainer)
    # one task a segment: more boundaries, the same records
    summary = rescore_lines(tmp_path, lines, engine, chunk_size=CHUNK, segment_posts=CHUNK)
    assert read_records(tmp_path / "out.jsonl") == reference
    assert summary.segments == 17


def test_a_segment_names_its_lines_once_in_a_file_and_its_ends_across_files(
    tmp_path: Path,
) -> None:
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    first.write_bytes(b"".join(shuffled_posts(10)))
    second.write_bytes(b"".join(shuffled_posts(3)))
    # a:1-4, a:5-8, a:9-10, b:1-3
    segments = plan_segments(plan([first, second], 4), 0, [1, 1, 2])
    assert [segment.where for segment in segments] == [
        f"{first}:1-4",
        f"{first}:5-8",
        f"{first}:9-10 .. {second}:1-3",
    ]
    assert plan_segments(plan([first], 4), 0, [3])[0].where == f"{first}:1-10"


def test_a_failed_boundary_is_matched_again_here_without_running_the_model_again(
    tmp_path: Path,
) -> None:
    """The stand-in's warm-up rebuilds nothing, so every warmed-up segment fails its check: the
    run's process runs the ordered stage again on the stateless results the worker sent back."""
    lines = shuffled_posts(40)
    rescore_lines(tmp_path, lines, InlineEngine(CountingScorer()), chunk_size=4)
    alone = (tmp_path / "out.jsonl").read_bytes()
    assert read_records(tmp_path / "out.jsonl")[-1].signals["ordered_before"] == 39
    engine = LocalEngine(counting_scorer, Settings(), 2)
    summary = rescore_lines(tmp_path, lines, engine, chunk_size=4)
    assert (tmp_path / "out.jsonl").read_bytes() == alone
    assert summary.rerun == summary.segments - 1 >= 3
    parent = engine.scorer()
    assert isinstance(parent, CountingScorer) and parent.calls == 0


def test_only_a_warmed_up_segment_keeps_its_stateless_results(tmp_path: Path) -> None:
    (tmp_path / "in.jsonl").write_bytes(b"".join(shuffled_posts(12)))
    segments = plan_segments(plan([tmp_path / "in.jsonl"], 4), 0, itertools.repeat(1))
    here = CountingScorer()
    first, second = run_segment(segments[0], here, None), run_segment(segments[1], here, KEEP)
    assert not first.results[0].prepared and not second.results[0].prepared
    warmed = run_segment(segments[2], CountingScorer(), WARM)
    assert len(warmed.results[0].prepared) == len(warmed.results[0].posts) == 4
    assert warmed.start != second.end
    calls = here.calls
    again = match_again(warmed, here, second.state)
    assert here.calls == calls and again.start == second.end and not again.results[0].prepared
    seen = [record.signals["ordered_before"] for record in again.results[0].records]
    assert seen == [8, 9, 10, 11]


@pytest.mark.parametrize(("tasks", "workers", "most"), [(17, 2, 99), (98, 2, 24), (840, 16, 5)])
def test_segments_shrink_towards_the_end_and_cover_every_task_once(
    tasks: int, workers: int, most: int
) -> None:
    sizes = segment_sizes(tasks, workers, most)
    assert sum(sizes) == tasks
    assert sizes == sorted(sizes, reverse=True)
    assert max(sizes) <= most and sizes[-workers:] == [1] * workers
    # the first takes a quarter of the input on two workers, unless the cap is lower
    assert sizes[0] == min(most, -(-tasks // (2 * workers)))
    segments = plan_segments([_task(i) for i in range(tasks + 3)], 3, sizes)
    assert [len(s.tasks) for s in segments] == sizes
    assert [t for s in segments for t in s.tasks] == [_task(i) for i in range(3, tasks + 3)]
    assert segments[1].before[-1] == segments[0].tasks[-1]


def test_a_segment_of_no_task_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one task, not 0"):
        plan_segments([_task(0)], 0, [0])


def test_the_boundary_check_tells_an_exact_warm_up_from_one_the_chain_outlived(
    tmp_path: Path,
) -> None:
    (tmp_path / "in.jsonl").write_bytes(b"".join(reposts_with_campaigns()))
    segments = plan_segments(plan([tmp_path / "in.jsonl"], CHUNK), 0, itertools.repeat(3))
    one = Pipeline.load(SETTINGS)
    exact = [run_segment(s, one, None if s.index == 0 else KEEP) for s in segments]
    worker = Pipeline.load(SETTINGS)
    warmed = [run_segment(s, worker, WARM) for s in segments[1:]]
    caught = [w for w in warmed if w.start != exact[w.index - 1].end]
    assert caught and len(caught) < len(warmed)
    for result in warmed:
        records = [r for task in result.results for r in task.records]
        truth = [r for task in exact[result.index].results for r in task.records]
        # a passed check means the same records; a failed one was needed: they differ
        assert (records == truth) == (result not in caught)


def _task(i: int) -> Task:
    return Task(i, "in.jsonl", "jsonl", 100 * i, 100 * (i + 1), i + 1, 1)
