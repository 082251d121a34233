"""The hash-chained records (art19). Each record stores the SHA-256 of its canonical form, which
includes the previous record's hash and its own sequence number, so editing, deleting or
reordering any record (or cutting the chain's end, checked against the stored head) breaks
:func:`verify`; a free text kept in its table and chained by its SHA-256 (:data:`TEXTS`) edited
there breaks it too, and so does one written there that no record names (:class:`TextCheck`)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

GENESIS = "0" * 64
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Entry:
    seq: int
    at: datetime
    kind: str
    subject: str
    payload: dict[str, Any]
    prev_hash: str
    hash: str


def text_digest(text: str) -> str:
    """A free text (a report, an appeal's reason, a debunk notice) as a record carries it: the
    chain is never erased, so the text stays in its table and the record holds its SHA-256."""
    return hashlib.sha256(text.encode()).hexdigest()


def canonical(seq: int, at: datetime, kind: str, subject: str, payload: dict[str, Any]) -> bytes:
    # whole microseconds since the epoch: the same whatever time zone the database hands back
    micros = (at.replace(tzinfo=at.tzinfo or UTC) - EPOCH) // timedelta(microseconds=1)
    body = {"seq": seq, "at": micros, "kind": kind, "subject": subject, "data": payload}
    return json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()


def link(
    prev_hash: str, seq: int, at: datetime, kind: str, subject: str, payload: dict[str, Any]
) -> str:
    return hashlib.sha256(
        prev_hash.encode() + canonical(seq, at, kind, subject, payload)
    ).hexdigest()


@dataclass(frozen=True)
class Text:
    """A free text a record of ``kind`` chains the SHA-256 of in ``digest``, kept in ``column``
    of the row the record names (by ``row``, a field of its own, or else by its subject,
    ``report:7``) in the first of ``tables`` that holds it. A row that a later record of kind
    ``removed_by`` deletes may be gone."""

    kind: str
    digest: str
    tables: tuple[str, ...]
    column: str
    row: str | None = None
    removed_by: str | None = None

    def key(self, entry: Entry) -> str | None:
        """The row's id as the record names it; None where it names none."""
        if self.row is None:
            return entry.subject.partition(":")[2] or None
        value = entry.payload.get(self.row)
        return None if value is None else str(value)

    @property
    def named(self) -> str:
        """What the subject of a record that names the row by it says before the row's id:
        the noun of its kind (``report:`` of ``report.filed``'s ``report:7``)."""
        return self.kind.partition(".")[0] + ":"

    def where(self, seq: int, key: str | None, table: str | None = None) -> str:
        return f"record {seq}: {table or self.tables[0]}.{self.column} of row {key}"


# an appeal filed twice before 0008 kept one appeal; the other moved, reason and note with it
APPEALS = ("appeals", "appeal_duplicates")
BANK = ("rumor_bank",)
TEXTS = (
    Text("review.decision", "note_sha256", ("review_decisions",), "note", row="decision"),
    Text("report.filed", "text_sha256", ("reports",), "text"),
    Text("appeal.filed", "reason_sha256", APPEALS, "reason"),
    Text("appeal.decision", "note_sha256", APPEALS, "note"),
    Text("rumor.banked", "text_sha256", BANK, "text", removed_by="rumor.unbanked"),
    Text("rumor.banked", "notice_sha256", BANK, "notice", removed_by="rumor.unbanked"),
)
REMOVALS = {text.removed_by for text in TEXTS} - {None}
KINDS = {text.kind for text in TEXTS}

Stored = Callable[[Text, Sequence[str]], dict[str, tuple[str, str | None]]]
"""The rows of the ids given that hold a :class:`Text`, by id: the table found in and the
text in its column. A row that does not exist is left out."""

Unrecorded = Callable[[Text], Iterable[tuple[str, str]]]
"""The rows of a :class:`Text`'s tables that hold a text (not null) and that no record of its
kind names, as (table, id), in table and then id order."""


@dataclass
class TextCheck:
    """Compares the stored free texts with the digests the records chain of them (:data:`TEXTS`),
    reading them for ``batch`` records at a time as :func:`verify` passes the records, so that
    a chain of any length is checked in bounded memory; then names the texts of rows that no
    record names (``unrecorded``: written outside the service), which the records alone never
    lead to."""

    stored: Stored
    unrecorded: Unrecorded
    batch: int = 500
    problems: list[str] = field(default_factory=list)
    checked: int = 0
    unverifiable: int = 0
    """Texts whose record was written before its kind chained their digest."""
    removed: int = 0
    """Texts whose row a later record removed (a rumour bank entry's)."""
    pending: list[Entry] = field(default_factory=list)
    gone: dict[tuple[str, Text], int] = field(default_factory=dict)
    """Rows found missing that a later record may yet have removed, by that record's subject
    and the text, with the record that chained the text."""

    def see(self, entry: Entry) -> None:
        if entry.kind in REMOVALS:
            # the records before it are compared first, so that a row it removed is found
            # missing, and waiting for it, before it is seen
            self.flush()
            ended = [
                g for g in self.gone if g[0] == entry.subject and g[1].removed_by == entry.kind
            ]
            for waiting in ended:
                del self.gone[waiting]
            self.removed += len(ended)
        if entry.kind in KINDS:
            self.pending.append(entry)
            if len(self.pending) >= self.batch:
                self.flush()

    def flush(self) -> None:
        found: list[tuple[int, str]] = []
        for text in TEXTS:
            entries = [e for e in self.pending if e.kind == text.kind]
            chained = [e for e in entries if text.digest in e.payload]
            self.unverifiable += len(entries) - len(chained)
            if not chained:
                continue
            keys = {e.seq: text.key(e) for e in chained}
            rows = self.stored(text, sorted({k for k in keys.values() if k is not None}))
            for entry in chained:
                problem = self._compare(text, entry, keys[entry.seq], rows)
                if problem is not None:
                    found.append((entry.seq, problem))
        # in record order, where each text was read a field at a time
        self.problems += [problem for _, problem in sorted(found, key=lambda f: f[0])]
        self.pending = []

    def _compare(
        self,
        text: Text,
        entry: Entry,
        key: str | None,
        rows: dict[str, tuple[str, str | None]],
    ) -> str | None:
        if key is None or key not in rows:
            if text.removed_by is None or key is None:
                return f"{text.where(entry.seq, key)}: the row is missing"
            self.gone[(entry.subject, text)] = entry.seq
            return None
        self.checked += 1
        table, stored = rows[key]
        if entry.payload[text.digest] == (None if stored is None else text_digest(stored)):
            return None
        return (
            f"{text.where(entry.seq, key, table)}: does not match the {entry.kind} record's "
            f"{text.digest} (edited since it was written)"
        )

    def finish(self) -> list[str]:
        """The problems found, once the walk has passed every record."""
        self.flush()
        for (subject, text), seq in sorted(self.gone.items(), key=lambda waiting: waiting[1]):
            where = text.where(seq, subject.partition(":")[2])
            self.problems.append(
                f"{where}: the row is missing, and no {text.removed_by} record removed it"
            )
        self.gone = {}
        for text in TEXTS:
            self.problems += [
                f"{table}.{text.column} of row {key}: no {text.kind} record names the row "
                "(written outside the service)"
                for table, key in self.unrecorded(text)
            ]
        return self.problems


def verify(
    entries: Iterable[Entry], head: tuple[int, str] | None, texts: TextCheck | None = None
) -> list[str]:
    """Problems found walking ``entries`` in stored order against the stored ``head`` (last
    sequence number and hash), and comparing ``texts`` with their digests where given; empty
    when the chain is intact."""
    problems: list[str] = []
    prev, expected = GENESIS, 1
    for entry in entries:
        if entry.seq != expected:
            problems.append(f"record {entry.seq}: expected sequence number {expected}")
        if entry.prev_hash != prev:
            problems.append(f"record {entry.seq}: does not follow the record before it")
        recomputed = link(
            entry.prev_hash, entry.seq, entry.at, entry.kind, entry.subject, entry.payload
        )
        if recomputed != entry.hash:
            problems.append(f"record {entry.seq}: its content does not match its hash")
        prev, expected = entry.hash, entry.seq + 1
        if texts is not None:
            texts.see(entry)
    last = (expected - 1, prev)
    if head is not None and last != head:
        problems.append(
            f"the chain ends at record {last[0]} but the head says {head[0]}: records are missing"
        )
    return problems + ([] if texts is None else texts.finish())
