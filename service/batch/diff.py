"""``rescore --compare``: what a new model or policy changed, against an earlier run's output.

Per risk head: posts newly flagged, newly cleared, and posts flagged on that head (before or
after) whose decision changed; with a few example ids each, and every changed post in a JSONL
file beside OUTPUT that ``--enqueue`` reads to put the newly flagged into the review queue.

Two runs over the same input list their records in the same order, so the outputs are walked
side by side in constant memory; only when the order differs are the earlier records' decisions
and flags held in memory by id (a few dozen bytes a post).
"""

from __future__ import annotations

import itertools
import json
from collections import Counter, defaultdict, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from service.batch.records import read_records
from service.heads import RISKS, Risk
from service.record import ScoreRecord
from service.storage.repository import Pending, RumorCopy

if TYPE_CHECKING:
    from service.policy import Policy
    from service.settings import Settings
    from service.storage import Repository
    from service.storage.sql import SqlRepository

EXAMPLES = 3
"""Example post ids kept per cell of the table."""

ENQUEUE_BATCH = 500

Seen = tuple[str, frozenset[Risk]]
"""What the diff keeps of a record: its decision and its flagged heads."""

COLUMNS = ("newly flagged", "newly cleared", "decision changed")


@dataclass
class DiffReport:
    previous: Path
    current: Path
    changes_path: Path
    compared: int = 0
    only_current: int = 0
    only_previous: int = 0
    changed_posts: int = 0
    counts: dict[str, Counter[Risk]] = field(
        default_factory=lambda: {column: Counter() for column in COLUMNS}
    )
    examples: dict[str, dict[Risk, list[str]]] = field(
        default_factory=lambda: {column: defaultdict(list) for column in COLUMNS}
    )
    decisions: Counter[tuple[str, str]] = field(default_factory=Counter)

    def note(self, column: str, risk: Risk, post_id: str) -> None:
        self.counts[column][risk] += 1
        if len(self.examples[column][risk]) < EXAMPLES:
            self.examples[column][risk].append(post_id)

    def summary(self) -> dict[str, object]:
        return {
            "previous": str(self.previous),
            "current": str(self.current),
            "changes": str(self.changes_path),
            "compared": self.compared,
            "only_current": self.only_current,
            "only_previous": self.only_previous,
            "changed_posts": self.changed_posts,
            "heads": {
                risk: {
                    column: {
                        "posts": self.counts[column][risk],
                        "examples": self.examples[column][risk],
                    }
                    for column in COLUMNS
                }
                for risk in RISKS
            },
            "decisions": [
                {"before": before, "after": after, "posts": n}
                for (before, after), n in sorted(self.decisions.items())
            ],
        }

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.summary(), ensure_ascii=False, indent=2) + "\n")

    def render(self) -> str:
        lines = [
            f"compared with {self.previous}: {self.compared:,} posts in both, "
            f"{self.only_current:,} only now, {self.only_previous:,} only before; "
            f"{self.changed_posts:,} changed -> {self.changes_path}",
            f"  {'head':<18}" + "".join(f"{column:>18}" for column in COLUMNS) + "  examples",
        ]
        for risk in RISKS:
            cells = "".join(f"{self.counts[column][risk]:>18,}" for column in COLUMNS)
            lines.append(f"  {risk:<18}{cells}  {', '.join(self._shown(risk))}")
        moves = ", ".join(f"{b}->{a} {n:,}" for (b, a), n in sorted(self.decisions.items()))
        lines.append(f"  decisions changed: {moves or 'none'}")
        return "\n".join(lines)

    def _shown(self, risk: Risk) -> list[str]:
        """An example of each column for the table, each post once: a newly flagged post whose
        decision changed is the first example of both columns."""
        shown: list[str] = []
        for column in COLUMNS:
            fresh = next((ex for ex in self.examples[column][risk] if ex not in shown), None)
            if fresh is not None:
                shown.append(fresh)
        return shown


def changes_file(current: Path) -> Path:
    """Where :func:`diff` writes each changed post: ``CURRENT.changes.jsonl``."""
    return current.with_name(current.name + ".changes.jsonl")


def report_file(current: Path) -> Path:
    """Where the comparison's report is saved: ``CURRENT.diff.json``."""
    return current.with_name(current.name + ".diff.json")


def diff(previous: Path, current: Path) -> DiffReport:
    """Compare two outputs; write each changed post to :func:`changes_file`."""
    changes_path = changes_file(current)
    report = DiffReport(previous, current, changes_path)
    with changes_path.open("w", encoding="utf-8") as changes:
        earlier = read_records(previous)
        by_id: _ById | None = None
        for number, record in enumerate(read_records(current), start=1):
            if by_id is None:
                first = next(earlier, None)
                if first is not None and first.id == record.id:
                    _compare(report, changes, _seen(first), record, number)
                    continue
                by_id = _ById(itertools.chain([] if first is None else [first], earlier))
            before = by_id.pop(record.id)
            if before is None:
                report.only_current += 1
            _compare(report, changes, before, record, number)
        report.only_previous = sum(1 for _ in earlier) if by_id is None else len(by_id)
    return report


class _ById:
    """The rest of an earlier output, held by id for an output in another order: each
    occurrence of an id that several records have (a run scores every line, repeated ids too)
    is taken in turn, as walking both side by side would pair them."""

    def __init__(self, records: Iterator[ScoreRecord]) -> None:
        self._first: dict[str, Seen] = {}
        self._later: dict[str, deque[Seen]] = {}
        """The later occurrences of the ids that repeat: few, so a queue each costs little."""
        for record in records:
            if record.id in self._first:
                self._later.setdefault(record.id, deque()).append(_seen(record))
            else:
                self._first[record.id] = _seen(record)

    def pop(self, post_id: str) -> Seen | None:
        """The first occurrence of ``post_id`` not taken yet (None when none is left)."""
        seen = self._first.pop(post_id, None)
        later = self._later.get(post_id)
        if seen is not None and later:
            self._first[post_id] = later.popleft()
            if not later:
                del self._later[post_id]
        return seen

    def __len__(self) -> int:
        return len(self._first) + sum(len(later) for later in self._later.values())


def _seen(record: ScoreRecord) -> Seen:
    return record.decision, frozenset(risk for risk, on in record.flags.items() if on)


def _compare(
    report: DiffReport, changes: TextIO, before: Seen | None, record: ScoreRecord, number: int
) -> None:
    """A post absent before counts as passed and unflagged before; ``number`` is the record's
    place in the current output, counted from 1."""
    if before is not None:
        report.compared += 1
    decision_before, flags_before = before or ("pass", frozenset())
    decision, flags = _seen(record)
    flagged, cleared = flags - flags_before, flags_before - flags
    for risk in sorted(flagged):
        report.note("newly flagged", risk, record.id)
    for risk in sorted(cleared):
        report.note("newly cleared", risk, record.id)
    if decision != decision_before:
        report.decisions[decision_before, decision] += 1
        for risk in sorted(flags | flags_before):
            report.note("decision changed", risk, record.id)
    if flagged or cleared or decision != decision_before:
        report.changed_posts += 1
        change = {
            "id": record.id,
            # which record: an id that several lines repeat names more than one
            "record": number,
            "decision": [decision_before, decision],
            "newly_flagged": sorted(flagged),
            "newly_cleared": sorted(cleared),
        }
        changes.write(json.dumps(change, ensure_ascii=False) + "\n")


def enqueue(report: DiffReport, settings: Settings) -> int:
    """Store the newly flagged records and queue them for review, with the near-duplicate
    step's items (each coordinated batch once, listing its members in this output, and each
    bank match); record every bank match of the output, flagged or not, as a copy of its
    rumour; the number of records newly stored: each is queued, unless it flags only what a
    confirmation of its post decided, which opens no item
    (:meth:`~service.storage.sql.SqlRepository._enqueue_score`).

    Storage keeps one record per post, model version and policy version, and one open item per
    batch or match, so a second run (or a post the live service already stored under this model
    and policy) queues nothing again; a post stored under another policy (a policy change) gets
    this record beside the record stored then, and its item, or the post's open item moved to
    this record when it is in the queue already.
    """
    from service.neardup.bank import rumor_copy
    from service.neardup.queue import batch_cluster, members_in, requests

    wanted: set[int] = set()
    with report.changes_path.open(encoding="utf-8") as changes:
        for line in changes:
            change = json.loads(line)
            if change["newly_flagged"]:
                wanted.add(change["record"])
    policy, repository = _queue(settings)
    added = 0
    flagged: list[ScoreRecord] = []
    try:
        # the console shows the records against their own policy's thresholds
        repository.keep_policy(policy)
        batch: list[Pending] = []
        copies: list[RumorCopy] = []
        for number, record in enumerate(read_records(report.current), start=1):
            if (found := rumor_copy(record)) is not None:
                copies.append(found)
                if len(copies) == ENQUEUE_BATCH:
                    repository.record_rumor_copies(copies)
                    copies = []
            if number in wanted:
                batch.append(Pending(record, enqueue=True))
                if batch_cluster(record) is not None or record.flags["rumor"]:
                    flagged.append(record)
            if len(batch) == ENQUEUE_BATCH:
                added += _save(repository, batch)
                batch = []
        added += _save(repository, batch)
        repository.record_rumor_copies(copies)
        cids = {cid for r in flagged if (cid := batch_cluster(r)) is not None}
        members = members_in(read_records(report.current), cids) if cids else {}
        repository.enqueue_requests(
            policy, [item for r in flagged for item in requests(r, None, members)]
        )
    finally:
        repository.close()
    return added


def check_queue(settings: Settings) -> None:
    """Open the database :func:`enqueue` stores into (migrated, created if new), and close it:
    a command that enqueues checks it before scoring, as a database that cannot be reached
    would otherwise be found only after hours of it, with OUTPUT already replaced."""
    _, repository = _queue(settings)
    repository.close()


def _queue(settings: Settings) -> tuple[Policy, SqlRepository]:
    """The policy the records are queued under, and the database they are stored in."""
    from service.policy import load_policy
    from service.storage import open_migrated

    policy = load_policy(settings.policy_file)
    return policy, open_migrated(settings.database, settings.db_timeout_s, policy.review)


def _save(repository: Repository, batch: list[Pending]) -> int:
    stored = repository.save_records(batch)
    # the repository hands back the record it already held for a post stored before
    return sum(1 for item, kept in zip(batch, stored, strict=True) if kept is item.record)
