"""One task's work, the same in every engine: read its slice, run the pipeline's stateless stage
on its posts (:meth:`service.pipeline.Pipeline.prepare`), report. The stateful stage (near-duplicate
matching, decision, record) then runs on the task's results in the same process, task after task
of a segment in input order (:mod:`service.batch.segments`).

A post that makes the scorer raise must not take its chunk down with it: the chunk is scored
again post by post and the post that still fails becomes a reject with the error. A chunk whose
every post fails points at the scorer, not at the posts, and stops the run.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from service.batch.sources import Task, read
from service.classify import tokenize_on_calling_thread
from service.ingest import LineError, PostLine
from service.record import Post, ScoreRecord, cut

if TYPE_CHECKING:
    from service.settings import Settings
    from service.storage.repository import StoredRumor


class Model(Protocol):
    """What a run reads of the scorer's model (:class:`service.classify.Classifier`)."""

    @property
    def batch_size(self) -> int:
        """Posts per model call. The int8 model quantises its activations per batch, so a
        post's scores move (slightly) with the posts it is batched with: a run is continued
        only with the batch size it started with."""

    @property
    def digest(self) -> str:
        """The hash of the model file as loaded: a run is continued only with the file it
        started with, even one copied over without a new ``card.json``."""


class Scorer(Protocol):
    """What a run needs of :class:`service.pipeline.Pipeline`; tests pass a small stand-in."""

    @property
    def model_version(self) -> str: ...

    @property
    def classifier(self) -> Model: ...

    @property
    def policy_version(self) -> str: ...

    @property
    def policy_digest(self) -> str:
        """A hash of the policy's values (:attr:`service.policy.Policy.digest`)."""

    @property
    def evidence(self) -> bool:
        """Whether records get evidence spans (:attr:`Settings.evidence`)."""

    def score_many(self, posts: Sequence[Post]) -> list[ScoreRecord]:
        """Every stage at once (``selfcheck``)."""

    def prepare(self, posts: Sequence[Post]) -> Sequence[Any]:
        """The stateless stage, in the workers: one picklable result per post, in order."""

    def ordered(self, posts: Sequence[Post], prepared: Sequence[Any]) -> list[ScoreRecord]:
        """The stateful stage, in one place and in input order: the records."""

    def explain(self, posts: Sequence[Post], records: Sequence[ScoreRecord]) -> list[ScoreRecord]:
        """Evidence the stateless stage could not know was needed."""

    def use_bank(self, rumors: Sequence[StoredRumor]) -> None:
        """Match the stateful stage against these confirmed rumours."""

    def state(self) -> bytes:
        """The stateful stage's state (the near-duplicate window), for a checkpoint or the
        segment after."""

    def use_state(self, state: bytes | None) -> bool:
        """Continue from ``state`` (an empty one for None); False when it cannot be used."""

    @property
    def memory_s(self) -> float:
        """How far back (in ``created_at`` seconds) the stateful stage's state reaches."""

    def warm(self, posts: Sequence[Post]) -> None:
        """Pass ``posts`` through the stateful stage without making their records."""

    def frontier(self) -> str:
        """A digest of the stateful stage's state as later posts read it: equal digests, equal
        records for the same posts after."""


ScorerFactory = Callable[["Settings"], Scorer]
"""Loads the scorer in each worker; must be picklable (a module-level function)."""


def worker_scorer(load: ScorerFactory, settings: Settings, bank: Sequence[StoredRumor]) -> Scorer:
    """The scorer of a worker process or Ray actor, one of a pool of about one per core.

    Its tokenizer runs on the calling thread (:func:`service.classify.tokenize_on_calling_thread`):
    two workers on two cores each with a tokenizer pool contend (on 30,000 reposts: a third
    less system time, 1 to 4 % less wall-clock)."""
    tokenize_on_calling_thread()
    scorer = load(settings)
    scorer.use_bank(bank)
    return scorer


@dataclass(frozen=True)
class Span:
    """The posts a :class:`ScorerError` concerns: where they are in the input (``in.jsonl:1-2048``)
    and the ids of the first and last of them (None: none of its lines has one), which name them
    where the input's lines mean nothing to the caller (``--from-db``)."""

    lines: str
    first: str | None
    last: str | None

    @classmethod
    def of(cls, lines: str, posts: Sequence[Post]) -> Span:
        """The posts ``posts``, which are at ``lines``."""
        return cls(lines, posts[0].id if posts else None, posts[-1].id if posts else None)

    @classmethod
    def between(cls, lines: str, first: Task, last: Task) -> Span:
        """The posts from task ``first`` to task ``last``, their ids read from the input (the
        process that scored them died without a word of them)."""
        ids = (_id(item) for item in read(first).items)
        ids_back = (_id(item) for item in reversed(read(last).items))
        head = next((post_id for post_id in ids if post_id is not None), None)
        tail = next((post_id for post_id in ids_back if post_id is not None), None)
        return cls(lines, head, tail)


def _id(item: PostLine | LineError) -> str | None:
    return item.post.id if isinstance(item, PostLine) else item.post_id


class ScorerError(Exception):
    """The scorer is broken (every post failed, records out of order): the run stops. ``what``
    ends where the posts it concerns are named: by ``span``'s lines unless :meth:`said` is given
    other words for them; ``why`` follows (what the scorer raised)."""

    def __init__(self, what: str, span: Span | None = None, why: str = "") -> None:
        # every argument in args: the error is pickled back from a worker process
        super().__init__(what, span, why)
        self.what, self.span, self.why = what, span, why

    def said(self, posts: str | None = None) -> str:
        """The message, naming the posts by ``posts`` (default: the span's lines)."""
        text = self.what
        if self.span is not None:
            text += f" {self.span.lines if posts is None else posts}"
        return f"{text}: {self.why}" if self.why else text

    def __str__(self) -> str:
        return self.said()


class ModelMismatchError(ScorerError):
    """A worker loaded another model file than the run's: its records would carry the run's
    model version over another model's scores."""


def check_model(scorer: Scorer, expected: str, where: str) -> None:
    """Raise :class:`ModelMismatchError` unless the model file ``scorer`` loaded (in ``where``: a
    host and process) hashes to ``expected``, the digest of the file the run's records name."""
    loaded = scorer.classifier.digest
    if loaded != expected:
        raise ModelMismatchError(
            f"{where} loaded a model file of digest {loaded}, where the driver's is {expected}: "
            "its records would carry the driver's model version; give every host the same "
            "model.onnx"
        )


@dataclass
class Reject:
    """A line that was not scored: where, what, and the start of the line itself."""

    file: str
    line: int
    id: str | None
    error: str
    message: str
    raw: str

    def as_json(self) -> dict[str, Any]:
        found: dict[str, Any] = {"file": self.file, "line": self.line, "id": self.id}
        if self.id is not None:
            # an invalid id can be as long as its line: cut, its length said
            found["id"], chars = cut(self.id)
            if chars is not None:
                found["id_chars"] = chars
        return found | {"error": self.error, "message": self.message, "raw": self.raw}


@dataclass
class Result:
    """A task's prepared posts (in file order, with their line numbers) and its rejects; the
    stateful stage turns the prepared posts into ``records``."""

    index: int
    path: str
    posts: list[Post] = field(default_factory=list)
    prepared: list[Any] = field(default_factory=list)
    """The stateless stage's result for each post; kept beside the records by a warmed-up
    segment only, whose ordered stage the run may have to run again
    (:func:`~service.batch.segments.match_again`)."""
    records: list[ScoreRecord] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    blank_lines: int = 0


def run_task(
    task: Task,
    scorer: Scorer,
    *,
    one_by_one: bool = False,
    skip: frozenset[int] = frozenset(),
    journal: str | None = None,
) -> Result:
    """Score ``task``. ``one_by_one`` (after a worker died) scores a post at a time and writes
    the task's index and each line number to ``journal`` first, so that the parent learns which
    post killed the process; lines in ``skip`` are such posts and are left to the parent"""
    chunk = read(task)
    result = Result(task.index, task.path, blank_lines=chunk.blank_lines)
    good: list[PostLine] = []
    for item in chunk.items:
        if isinstance(item, LineError):
            result.rejects.append(
                Reject(task.path, item.line_no, item.post_id, item.kind, item.message, item.raw)
            )
        elif item.line_no not in skip:
            good.append(item)
    if one_by_one:
        scored = [_score_alone(task, line, scorer, journal) for line in good]
    else:
        scored = _score(good, scorer, task)
    for line, outcome in zip(good, scored, strict=True):
        if isinstance(outcome, Prepared):
            result.posts.append(line.post)
            result.prepared.append(outcome.value)
            result.lines.append(line.line_no)
        else:
            message = f"the scorer failed on this post: {outcome!r}"
            result.rejects.append(
                Reject(task.path, line.line_no, line.post.id, "scorer_error", message, "")
            )
    result.rejects.sort(key=lambda reject: reject.line)
    return result


@dataclass(frozen=True)
class Prepared:
    """One post's result of the stateless stage (what the scorer returned for it)."""

    value: Any


def _score(lines: list[PostLine], scorer: Scorer, task: Task) -> list[Prepared | Exception]:
    posts = [line.post for line in lines]
    if not posts:
        return []
    try:
        return list(_in_order(scorer.prepare(posts), posts, task))
    except ScorerError:
        raise
    except Exception as exc:
        if len(posts) == 1:
            return [exc]
    outcomes = [_score_one(post, scorer, task) for post in posts]
    if all(isinstance(outcome, Exception) for outcome in outcomes):
        span = Span.of(task.where, posts)
        raise ScorerError("the scorer failed on every post of", span, repr(outcomes[0]))
    return outcomes


def _score_one(post: Post, scorer: Scorer, task: Task) -> Prepared | Exception:
    try:
        return _in_order(scorer.prepare([post]), [post], task)[0]
    except ScorerError:
        raise
    except Exception as exc:
        return exc


def _score_alone(
    task: Task, line: PostLine, scorer: Scorer, journal: str | None
) -> Prepared | Exception:
    if journal is not None:
        # the parent reads the last line after this process died
        with open(journal, "a", encoding="utf-8") as file:
            file.write(f"{task.index}\t{line.line_no}\t{json.dumps(line.post.id)}\n")
            file.flush()
            os.fsync(file.fileno())
    try:
        return Prepared(scorer.prepare([line.post])[0])
    except Exception as exc:
        return exc


def _in_order(prepared: Sequence[Any], posts: list[Post], task: Task) -> list[Prepared]:
    if len(prepared) != len(posts):
        # a result written next to the wrong line would silently corrupt the output
        span = Span.of(task.where, posts)
        raise ScorerError("the scorer's results do not match the posts of", span)
    return [Prepared(value) for value in prepared]
