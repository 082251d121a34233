"""The near-duplicate pass in batch mode: every engine writes what one process calling the
pipeline batch after batch (as the live service does) gives, near-duplicates included, whether
the stateful stage runs in one process or by segments in workers; input out of ``created_at``
order is scored as given and counted (and its segments scored again where a warm-up cannot
rebuild the state); a continued run keeps its window."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from batchkit import (
    CAMPAIGN,
    campaign_lines,
    chunked_records,
    post_line,
    read_records,
    rescore_lines,
)

from service.batch import RescoreError
from service.batch.local import LocalEngine
from service.batch.segments import Segment, SegmentResult
from service.neardup.match import TOO_OLD
from service.pipeline import Pipeline
from service.rescore import InlineEngine, batch_settings, rescore
from service.settings import Settings
from service.storage.repository import StoredRumor

SETTINGS = batch_settings(Settings())


def fresh() -> Pipeline:
    """A pipeline with an empty window of its own (the session's pipeline has seen other tests)."""
    return Pipeline.load(SETTINGS)


def test_one_process_and_workers_write_what_the_pipeline_gives_batch_after_batch(
    tmp_path: Path,
) -> None:
    lines = campaign_lines()
    reference = chunked_records(fresh(), lines, 5)
    flagged = {r.id for r in reference if r.flags["coordination"]}
    claims = {r.id for r in reference if r.flags["fake_originality"]}
    # the data makes the stateful stage matter: a batch forms part way, copies claim originality
    assert flagged and claims and len(flagged) < sum(r.cluster is not None for r in reference)
    rescore_lines(tmp_path, lines, InlineEngine(fresh()), chunk_size=5)
    assert read_records(tmp_path / "out.jsonl") == reference
    alone = (tmp_path / "out.jsonl").read_bytes()
    summary = rescore_lines(tmp_path, lines, LocalEngine(Pipeline.load, SETTINGS, 2), chunk_size=5)
    assert (tmp_path / "out.jsonl").read_bytes() == alone
    assert summary.out_of_order == 0
    # every undated post is one warning of one kind, counted once in the summary
    undated = [k for k in summary.warning_kinds if k.startswith("no created_at")]
    assert [summary.warning_kinds[k] for k in undated] == [4]


def test_input_out_of_created_at_order_is_scored_as_given_and_counted(tmp_path: Path) -> None:
    lines = campaign_lines()[::-1]
    summary = rescore_lines(tmp_path, lines, InlineEngine(fresh()), chunk_size=5)
    assert read_records(tmp_path / "out.jsonl") == chunked_records(fresh(), lines, 5)
    dated = sum(b'"created_at"' in line for line in lines)
    assert summary.out_of_order == dated - 1
    assert "sort the input by created_at" in summary.render()
    alone = (tmp_path / "out.jsonl").read_bytes()
    rescore_lines(tmp_path, lines, LocalEngine(Pipeline.load, SETTINGS, 2), chunk_size=5)
    assert (tmp_path / "out.jsonl").read_bytes() == alone


def test_a_post_older_than_the_window_has_its_segment_scored_again(tmp_path: Path) -> None:
    """Its record counts its account's batches from its own time, further back than the
    boundary check looks: the segment is scored from the exact state whatever the check says."""
    lines = campaign_lines()
    late = post_line("late", CAMPAIGN, account_id="a3", created_at=1_600_000_000)
    lines.insert(27, late)
    rescore_lines(tmp_path, lines, InlineEngine(fresh()), chunk_size=5)
    alone = (tmp_path / "out.jsonl").read_bytes()
    assert TOO_OLD in read_records(tmp_path / "out.jsonl")[27].warnings
    summary = rescore_lines(tmp_path, lines, LocalEngine(Pipeline.load, SETTINGS, 2), chunk_size=5)
    assert (tmp_path / "out.jsonl").read_bytes() == alone
    assert summary.rerun == 1


class StopsAfter(InlineEngine):
    """Dies like a killed run after ``segments`` segments (the run's checkpoint stays)."""

    def __init__(self, scorer: Pipeline, segments: int) -> None:
        super().__init__(scorer)
        self.stop = segments

    def segments(
        self, segments: Sequence[Segment], first: bytes | None, bank: Sequence[StoredRumor]
    ) -> Iterator[SegmentResult]:
        for n, result in enumerate(super().segments(segments, first, bank)):
            if n == self.stop:
                raise OSError("the process was killed")
            yield result


def test_a_continued_run_matches_with_the_window_of_the_run_it_continues(tmp_path: Path) -> None:
    lines = campaign_lines()
    source, output = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    source.write_bytes(b"".join(lines))
    with pytest.raises(RescoreError, match="is intact"):
        rescore(source, output, StopsAfter(fresh(), 2), chunk_size=3, checkpoint_posts=5)
    summary = rescore(source, output, InlineEngine(fresh()), chunk_size=3, checkpoint_posts=5)
    assert summary.resumed == 12
    assert read_records(tmp_path / "out.jsonl") == chunked_records(fresh(), lines, 3)
