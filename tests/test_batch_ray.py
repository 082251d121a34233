"""``--engine ray`` on a local Ray instance: the single-process output, in input order (the
ordered stage partitioned by time range across the actors), and an actor killed mid-batch whose
batch is retried without duplicates."""

from __future__ import annotations

import os
import re
import signal
import socket
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest
from batchkit import (
    BREAK_ORDERED,
    DIE,
    DIE_ONCE,
    RAISE,
    CountingScorer,
    campaign_lines,
    chunked_records,
    counting_scorer,
    expected_record,
    length_scorer,
    own_model_scorer,
    post_line,
    posts_of,
    read_records,
    real_posts,
    reposts_with_campaigns,
    rescore_lines,
    shuffled_posts,
)

from service.batch import RescoreError
from service.batch.ray_engine import PACKAGE_FILES, SEGMENT_RETRIES, RayEngine, _SegmentScorer
from service.batch.segments import Segment, SegmentResult, segment_sizes
from service.batch.work import ModelMismatchError
from service.pipeline import Pipeline
from service.rescore import InlineEngine, batch_settings
from service.settings import Settings
from service.storage.repository import StoredRumor

ray = pytest.importorskip("ray", reason="the ray extra is not installed")

TESTS = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    path = os.pathsep.join([str(TESTS), str(TESTS.parent)])
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        object_store_memory=256 << 20,
        # the actors unpickle the stand-in scorer from tests/batchkit.py
        runtime_env={"env_vars": {"PYTHONPATH": path}},
    )
    yield
    ray.shutdown()


@contextmanager
def hang_fails_after(seconds: int) -> Iterator[None]:
    """A run that would retry for ever fails the test instead of holding it."""

    def hung(signum: int, frame: object) -> None:
        raise AssertionError(f"the run still went on after {seconds} s")

    before = signal.signal(signal.SIGALRM, hung)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, before)


def run_ray(tmp_path: Path, lines: list[bytes]) -> list[object]:
    engine = RayEngine(length_scorer, Settings(), workers=2, address=None)
    summary = rescore_lines(tmp_path, lines, engine, chunk_size=6, checkpoint_posts=30)
    assert summary.engine == "ray, 2 actors"
    return list(read_records(tmp_path / "out.jsonl"))


def test_ray_gives_the_single_process_output_in_input_order(
    local_ray: None, tmp_path: Path
) -> None:
    lines = shuffled_posts(97)
    assert run_ray(tmp_path, lines) == [expected_record(p) for p in posts_of(lines)]


def test_an_actor_killed_mid_batch_has_its_batch_retried_once(
    local_ray: None, tmp_path: Path
) -> None:
    lines = shuffled_posts(60)
    marker = tmp_path / "killed-once"
    lines[32] = post_line("kills", f"{DIE_ONCE}{marker}")
    written = run_ray(tmp_path, lines)
    assert marker.exists(), "no actor died: the test proved nothing"
    assert written == [expected_record(p) for p in posts_of(lines)]
    assert not (tmp_path / "out.rejects.jsonl").exists()


def test_a_post_that_kills_every_actor_scoring_it_stops_the_run_instead_of_hanging(
    local_ray: None, tmp_path: Path
) -> None:
    lines = shuffled_posts(30)
    lines[17] = post_line("kills", f"这条 {DIE}")
    engine = RayEngine(length_scorer, Settings(), workers=2, address=None)
    with pytest.raises(RescoreError) as stopped, hang_fails_after(180):
        rescore_lines(tmp_path, lines, engine, chunk_size=4)
    assert str(stopped.value).startswith(
        f"a Ray actor died {SEGMENT_RETRIES + 1} times on one segment of the posts after the "
        "checkpoint: a post in it kills the process that scores it"
    )
    assert "--engine local finds and rejects" in str(stopped.value)
    assert not (tmp_path / "out.jsonl").exists()


def test_an_actor_whose_model_file_is_not_the_drivers_stops_the_run_naming_both(
    local_ray: None, tmp_path: Path
) -> None:
    engine = RayEngine(own_model_scorer, Settings(), workers=2, address=None)
    driver = engine.scorer().classifier.digest
    with pytest.raises(RescoreError) as stopped:
        rescore_lines(tmp_path, shuffled_posts(40), engine, chunk_size=6)
    said = str(stopped.value)
    assert isinstance(stopped.value.__cause__, ModelMismatchError)
    assert said.startswith(f"the Ray actor on host {socket.gethostname()} (pid ")
    assert "loaded a model file of digest sha256:model-of-pid-" in said
    assert f"where the driver's is {driver}: " in said
    assert "Traceback" not in said
    assert not (tmp_path / "out.jsonl").exists()


def test_an_actor_loads_the_model_and_policy_of_its_own_install_unless_a_path_was_given(
    tmp_path: Path,
) -> None:
    """The driver's defaults are paths into its own install, which a node with qinglang
    installed elsewhere does not have: the actor is built as on such a node."""
    here = Settings()
    digest = Pipeline.load(here).classifier.digest
    elsewhere = {name: tmp_path / "driver-venv" / name for name in PACKAGE_FILES}
    driver = Settings.model_construct(_fields_set=set(), **{**dict(here), **elsewhere})
    actor = _SegmentScorer(Pipeline.load, driver, (), digest)
    assert actor._mismatch is None
    given = Settings.model_construct(_fields_set={"model_dir"}, **{**dict(here), **elsewhere})
    with pytest.raises(FileNotFoundError):
        _SegmentScorer(Pipeline.load, given, (), digest)


def _breaking_past_the_model() -> list[bytes]:
    lines = shuffled_posts(12)
    lines[9] = post_line("breaks", f"这条 {BREAK_ORDERED}")
    return lines


@pytest.mark.parametrize(
    ("lines", "said"),
    [
        (
            shuffled_posts(8) + [post_line(f"r{n}", f"{RAISE} {n}") for n in range(4)],
            "the scorer failed on every post of {input}:9-12: "
            "ValueError('this post breaks the scorer'); the checkpoint in ",
        ),
        (
            _breaking_past_the_model(),
            "the scorer failed on the posts of {input}:9-12: "
            "RuntimeError('the ordered stage broke'); the checkpoint in ",
        ),
    ],
    ids=["model", "past_the_model"],
)
def test_a_task_whose_scoring_fails_stops_a_ray_run_as_a_local_one(
    local_ray: None, tmp_path: Path, lines: list[bytes], said: str
) -> None:
    engine = RayEngine(length_scorer, Settings(), workers=2, address=None)
    with pytest.raises(RescoreError) as stopped:
        rescore_lines(tmp_path, lines, engine, chunk_size=4)
    assert str(stopped.value).startswith(said.format(input=tmp_path / "in.jsonl"))
    assert not (tmp_path / "out.jsonl").exists()


def test_an_input_an_actor_cannot_read_stops_the_run_with_the_checkpoint_intact(
    local_ray: None, tmp_path: Path
) -> None:
    """The input must be where every node sees it; a node without it stops the run as a full
    disk does, with status 2 and the checkpoint kept."""

    class Unshared(RayEngine):
        def segments(
            self, segments: Sequence[Segment], first: bytes | None, bank: Sequence[StoredRumor]
        ) -> Iterator[SegmentResult]:
            (tmp_path / "in.jsonl").rename(tmp_path / "elsewhere.jsonl")
            yield from super().segments(segments, first, bank)

    engine = Unshared(length_scorer, Settings(), workers=2, address=None)
    with pytest.raises(RescoreError) as stopped:
        rescore_lines(tmp_path, shuffled_posts(12), engine, chunk_size=4)
    assert re.fullmatch(
        rf"the Ray actor on host \S+ \(pid \d+\) could not score the posts of "
        rf"{tmp_path}/in.jsonl:1-\d+: FileNotFoundError\(2, 'No such file or directory'\); "
        rf"the checkpoint in {tmp_path}/.out.jsonl.rescore is intact: run the same command "
        "again to continue after 0 of 12 posts",
        str(stopped.value),
    ), stopped.value


@pytest.mark.parametrize("make_lines", [real_posts, campaign_lines])
def test_ray_with_the_shipped_model_writes_what_one_process_writes(
    local_ray: None, tmp_path: Path, make_lines: Callable[[], list[bytes]]
) -> None:
    lines = make_lines()
    settings = batch_settings(Settings())
    reference = chunked_records(Pipeline.load(settings), lines, 8)
    rescore_lines(tmp_path, lines, InlineEngine(Pipeline.load(settings)), chunk_size=8)
    alone = (tmp_path / "out.jsonl").read_bytes()
    engine = RayEngine(Pipeline.load, settings, workers=2, address=None)
    rescore_lines(tmp_path, lines, engine, chunk_size=8)
    assert (tmp_path / "out.jsonl").read_bytes() == alone
    written = read_records(tmp_path / "out.jsonl")
    assert written == reference
    assert any(r.cluster is not None for r in written)


def test_ray_partitions_by_time_range_and_writes_the_single_process_records(
    local_ray: None, tmp_path: Path
) -> None:
    lines = reposts_with_campaigns()
    settings = batch_settings(Settings())
    reference = chunked_records(Pipeline.load(settings), lines, 16)
    engine = RayEngine(Pipeline.load, settings, workers=2, address=None)
    summary = rescore_lines(tmp_path, lines, engine, chunk_size=16)
    assert read_records(tmp_path / "out.jsonl") == reference
    assert summary.segments == len(segment_sizes(17, 2, 50_000 // 16)) == 8  # 17 tasks
    assert 1 <= summary.rerun < summary.segments - 1


def test_ray_matches_a_failed_boundary_again_in_the_driver_without_the_model(
    local_ray: None, tmp_path: Path
) -> None:
    """The same path as the local engine's: the actors send each warmed-up segment's stateless
    results back, and the driver runs only the ordered stage again where a boundary fails."""
    lines = shuffled_posts(40)
    rescore_lines(tmp_path, lines, InlineEngine(CountingScorer()), chunk_size=4)
    alone = (tmp_path / "out.jsonl").read_bytes()
    engine = RayEngine(counting_scorer, Settings(), workers=2, address=None)
    summary = rescore_lines(tmp_path, lines, engine, chunk_size=4)
    assert (tmp_path / "out.jsonl").read_bytes() == alone
    assert summary.rerun == summary.segments - 1 >= 3
    driver = engine.scorer()
    assert isinstance(driver, CountingScorer) and driver.calls == 0
