"""The ordered stage in parallel: the input cut into segments of consecutive tasks, each run
whole (stateless and ordered stage, records made) by one worker, with a check at every boundary
that makes the result equal to one process scoring the posts in input order.

**Why it can be cut.** The ordered stage's state (:mod:`service.neardup`) forgets: a post is
matched only while its time bucket is in the window (``neardup_window_hours`` plus one bucket),
and an account's flagged clusters count for a week. A worker that starts a segment therefore
first replays, without making records, the tasks before it as far back as they hold posts less
than ``memory_s`` (window, bucket and week: 10.5 days by default) older than the newest post it
finds there (the *warm-up*; posts are only fingerprinted and matched, no model runs), and then
scores its segment from that state. For
input in ``created_at`` order this nearly always rebuilds the state the single process has at
that point; it does not when a cluster chains further back than the warm-up (a campaign whose
copies keep coming for weeks) or when the input is out of order.

**Why the result is equal.** The ordered stage is a deterministic function of its state and the
posts it is given (ties between copies are broken by time and id, never by the order the index
found them in). Every segment reports the digest of its state at its start and at its end
(:meth:`~service.neardup.NearDuplicates.frontier`: the clock, the indexed posts with their
clusters and signatures, those clusters, and the accounts' flagged clusters that a post can still
count); the run accepts a warmed-up segment only when its start digest equals the end digest of
the segment before (which is exact by induction: the first segment starts from the run's own
state), and when none of its records read state the digest leaves out (a post older than the
window, which counts its account's batches further back, or a post whose id names a cluster
already made, an id seen before). Any other segment has its ordered stage (and the evidence
step after it) run again, in the run's process, from the exact state the segment before ended
with (``SegmentResult.state``), on the stateless stage's results that its worker sent back with
it (:attr:`Result.prepared <service.batch.work.Result.prepared>`: 281 bytes a repost pickled,
kept by warmed-up segments only, the only ones whose check can fail), so that every record
written is the single-process record and the model does not run again: the run's process
matches at 34 to 42 CPU-µs a repost while the workers go on. The summary counts how often that
happens (``segments: N (M matched again from the exact state)``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

from service.batch.sources import Task, read
from service.batch.work import Result, Scorer, ScorerError, Span, run_task
from service.ingest import PostLine
from service.neardup.cluster import cluster_id
from service.neardup.match import TOO_OLD
from service.record import Post, ScoreRecord

SHARE_PER_WORKER = 2
"""A segment takes ``1 / (SHARE_PER_WORKER x workers)`` of the tasks still unplanned (guided
self-scheduling): large segments first, few warm-ups, and one-task segments at the end, so that
the workers finish together. Equal segments (eight a worker) left a worker idle for half a
segment on average at the end of a run: 1.79x the single process on 200,000 posts."""

MAX_BEFORE = 4096
"""Tasks before a segment that its warm-up may read (eight million posts of 2,048): past that the
boundary check fails and the segment is matched again from the exact state."""

KEEP: Final = "keep"
"""Start a segment from the scorer's state as it is (the segment before ran in this process)."""
WARM: Final = "warm"
"""Start a segment from a warm-up over the tasks before it."""

Start = bytes | None | Literal["keep", "warm"]
"""How a segment starts: a state (:meth:`Scorer.state`), an empty one (None), KEEP or WARM."""


@dataclass(frozen=True)
class Segment:
    """Tasks ``tasks`` (consecutive, in input order), and the tasks before them that a warm-up
    may read (nearest last)."""

    index: int
    tasks: tuple[Task, ...]
    before: tuple[Task, ...] = ()

    @property
    def where(self) -> str:
        return self.tasks[0].where_to(self.tasks[-1])


@dataclass
class SegmentResult:
    """A segment's task results (records made) and the ordered stage's state around it."""

    index: int
    results: list[Result]
    start: str
    """Digest of the state the segment started from."""
    end: str
    """Digest of the state it ended with."""
    state: bytes
    """The state it ended with."""
    warmed: int = -1
    """Posts replayed before it; -1 when it started from a given state (no warm-up)."""
    reads_further: list[str] = field(default_factory=list)
    """Ids of its posts whose records read state the digest leaves out."""
    rerun: bool = False
    """Its ordered stage run again from the exact state (its warm-up did not rebuild it)."""


def plan_segments(tasks: Sequence[Task], first: int, sizes: Iterable[int]) -> list[Segment]:
    """``tasks[first:]`` cut into consecutive segments of ``sizes`` tasks each (the last may be
    shorter), numbered from 0."""
    segments: list[Segment] = []
    start = first
    for size in sizes:
        if start >= len(tasks):
            break
        if size < 1:
            raise ValueError(f"a segment holds at least one task, not {size}")
        before = tuple(tasks[max(0, start - MAX_BEFORE) : start])
        segments.append(Segment(len(segments), tuple(tasks[start : start + size]), before))
        start += size
    return segments


def segment_sizes(tasks: int, workers: int, most: int) -> list[int]:
    """Tasks per segment, in order, for ``tasks`` tasks on ``workers`` workers: each
    ``SHARE_PER_WORKER x workers``-th of what is left, at least one task and at most ``most``
    (a checkpoint commits whole segments only)."""
    sizes: list[int] = []
    left = tasks
    while left > 0:
        sizes.append(max(1, min(most, -(-left // (workers * SHARE_PER_WORKER)))))
        left -= sizes[-1]
    return sizes


def warm_up_posts(before: Sequence[Task], memory_s: float) -> list[Post]:
    """The posts of the tasks at the end of ``before``, in input order, going back as long as a
    task holds a post less than ``memory_s`` older than the newest post found: the posts that can
    still be in the state at the end of ``before`` when the input is in ``created_at`` order (a
    stray old post does not end the warm-up; the boundary check catches every other case)."""
    taken: list[list[Post]] = []
    newest: float | None = None
    for task in reversed(before):
        posts = [item.post for item in read(task).items if isinstance(item, PostLine)]
        times = [p.created_at for p in posts if p.created_at is not None]
        if times:
            newest = max(times) if newest is None else max(newest, *times)
            if max(times) < newest - memory_s:
                break
        taken.append(posts)
    return [post for posts in reversed(taken) for post in posts]


def run_segment(
    segment: Segment,
    scorer: Scorer,
    start: Start,
    *,
    one_by_one: bool = False,
    skip: frozenset[tuple[int, int]] = frozenset(),
    journal: str | None = None,
) -> SegmentResult:
    """Score ``segment``, stateless and ordered stage, from ``start``. A warmed-up segment keeps
    its tasks' stateless results (:attr:`Result.prepared <service.batch.work.Result.prepared>`)
    for :func:`exact` to match again; the others drop them. ``one_by_one``, ``skip`` (task index,
    line) and ``journal``: see :func:`~service.batch.work.run_task`."""
    warmed = -1
    if start == WARM:
        posts = warm_up_posts(segment.before, scorer.memory_s)
        scorer.use_state(None)
        scorer.warm(posts)
        warmed = len(posts)
    elif start != KEEP:
        _use_state(scorer, start)
    first = scorer.frontier()
    results = []
    for task in segment.tasks:
        lines = frozenset(line for index, line in skip if index == task.index)
        result = run_task(task, scorer, one_by_one=one_by_one, skip=lines, journal=journal)
        result.records = _ordered(scorer, result)
        if start != WARM:
            # its boundary is exact: nothing will match these again
            result.prepared = []
        results.append(result)
    return _finished(segment.index, results, first, scorer, warmed)


def match_again(given: SegmentResult, scorer: Scorer, state: bytes) -> SegmentResult:
    """``given``, a warmed-up segment, with its ordered stage (and the evidence step after it)
    run again from the exact state ``state`` on the stateless results its worker kept: the
    records of a segment scored from ``state``, without running the model again."""
    _use_state(scorer, state)
    first = scorer.frontier()
    for result in given.results:
        result.records = _ordered(scorer, result)
        result.prepared = []
    return _finished(given.index, given.results, first, scorer, -1)


def _use_state(scorer: Scorer, state: bytes | None) -> None:
    if not scorer.use_state(state):
        raise ScorerError("the ordered stage's state was made with other fingerprint parameters")


def _finished(
    index: int, results: list[Result], first: str, scorer: Scorer, warmed: int
) -> SegmentResult:
    """Segment ``index``'s ``results``, ordered by ``scorer`` from the state of digest ``first``."""
    further = [r.id for result in results for r in result.records if _reads_further(r)]
    return SegmentResult(index, results, first, scorer.frontier(), scorer.state(), warmed, further)


def _ordered(scorer: Scorer, result: Result) -> list[ScoreRecord]:
    lines = f"{result.path}:{result.lines[0]}-{result.lines[-1]}" if result.lines else result.path
    try:
        records = scorer.explain(result.posts, scorer.ordered(result.posts, result.prepared))
    except ScorerError:
        raise
    except Exception as exc:
        # the state is the task's posts' together: no post can be left out as a reject, and
        # an error of any other type ended the run in a traceback with status 1 ("some lines
        # rejected"), where a stop keeps the checkpoint, says so and exits 2
        span = Span.of(lines, result.posts)
        raise ScorerError("the scorer failed on the posts of", span, repr(exc)) from exc
    if [record.id for record in records] != [post.id for post in result.posts]:
        # a record written next to the wrong line would silently corrupt the output
        raise ScorerError(
            "the scorer's records do not match, in order, the posts of",
            Span.of(lines, result.posts),
        )
    return records


def _reads_further(record: ScoreRecord) -> bool:
    """The post read state older than the frontier holds: it was older than the window (its
    account's batches count from its own time), or its id named a cluster already (a post
    starts a cluster only when a later one matches it)."""
    return TOO_OLD in record.warnings or (
        record.cluster is not None and record.cluster.id == cluster_id(record.id)
    )


def exact(results: Iterator[SegmentResult], first: str, scorer: Scorer) -> Iterator[SegmentResult]:
    """``results`` in order, each warmed-up segment checked against the exact state the one
    before ended with (``first``: the digest the run starts from) and matched again by
    ``scorer`` from that state when the check fails (:func:`match_again`)."""
    end, state = first, None
    for given in results:
        result = given
        if given.warmed >= 0 and (given.start != end or given.reads_further):
            if state is None:
                raise ScorerError(f"segment {given.index} has no exact state to start from")
            result = match_again(given, scorer, state)
            result.rerun = True
        elif given.start != end:
            raise ScorerError(
                f"segment {given.index} did not start from the state the one before ended with"
            )
        end, state = result.end, result.state
        yield result
