"""One task's work, the same in every engine: read its slice, score its posts, report.

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
from service.ingest import LineError, PostLine
from service.record import Post, ScoreRecord

if TYPE_CHECKING:
    from service.settings import Settings


class Scorer(Protocol):
    """What a run needs of :class:`service.pipeline.Pipeline`; tests pass a small stand-in."""

    @property
    def model_version(self) -> str: ...

    @property
    def policy_version(self) -> str: ...

    def score_many(self, posts: Sequence[Post]) -> list[ScoreRecord]: ...


ScorerFactory = Callable[["Settings"], Scorer]
"""Loads the scorer in each worker; must be picklable (a module-level function)."""


class ScorerError(Exception):
    """The scorer is broken (every post failed, records out of order): the run stops."""


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
        return {
            "file": self.file,
            "line": self.line,
            "id": self.id,
            "error": self.error,
            "message": self.message,
            "raw": self.raw,
        }


@dataclass
class Result:
    """A task's records (in file order, with their line numbers) and its rejects."""

    index: int
    path: str
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
    each line number to ``journal`` first, so that the parent learns which post killed the
    process; lines in ``skip`` are such posts and are left to the parent to reject."""
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
        scored = [_score_alone(line, scorer, journal) for line in good]
    else:
        scored = _score(good, scorer, task)
    for line, outcome in zip(good, scored, strict=True):
        if isinstance(outcome, ScoreRecord):
            result.records.append(outcome)
            result.lines.append(line.line_no)
        else:
            message = f"the scorer failed on this post: {outcome!r}"
            result.rejects.append(
                Reject(task.path, line.line_no, line.post.id, "scorer_error", message, "")
            )
    result.rejects.sort(key=lambda reject: reject.line)
    return result


def _score(lines: list[PostLine], scorer: Scorer, task: Task) -> list[ScoreRecord | Exception]:
    posts = [line.post for line in lines]
    if not posts:
        return []
    try:
        return list(_in_order(scorer.score_many(posts), posts, task))
    except ScorerError:
        raise
    except Exception as exc:
        if len(posts) == 1:
            return [exc]
    outcomes = [_score_one(post, scorer, task) for post in posts]
    if all(isinstance(outcome, Exception) for outcome in outcomes):
        raise ScorerError(f"the scorer failed on every post of {task.where}: {outcomes[0]!r}")
    return outcomes


def _score_one(post: Post, scorer: Scorer, task: Task) -> ScoreRecord | Exception:
    try:
        return _in_order(scorer.score_many([post]), [post], task)[0]
    except ScorerError:
        raise
    except Exception as exc:
        return exc


def _score_alone(line: PostLine, scorer: Scorer, journal: str | None) -> ScoreRecord | Exception:
    if journal is not None:
        # the parent reads the last number after this process died
        with open(journal, "a", encoding="utf-8") as file:
            file.write(f"{line.line_no}\t{json.dumps(line.post.id)}\n")
            file.flush()
            os.fsync(file.fileno())
    try:
        return scorer.score_many([line.post])[0]
    except Exception as exc:
        return exc


def _in_order(records: list[ScoreRecord], posts: list[Post], task: Task) -> list[ScoreRecord]:
    if [record.id for record in records] != [post.id for post in posts]:
        # a record written next to the wrong line would silently corrupt the output
        raise ScorerError(f"the scorer's records for {task.where} do not match the posts in order")
    return records
