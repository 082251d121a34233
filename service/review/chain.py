"""The hash-chained records (art19). Each record stores the SHA-256 of its canonical form, which
includes the previous record's hash and its own sequence number, so editing, deleting or
reordering any record (or cutting the chain's end, checked against the stored head) breaks
:func:`verify`."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
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


def verify(entries: Iterable[Entry], head: tuple[int, str] | None) -> list[str]:
    """Problems found walking ``entries`` in stored order against the stored ``head`` (last
    sequence number and hash); empty when the chain is intact."""
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
    last = (expected - 1, prev)
    if head is not None and last != head:
        problems.append(
            f"the chain ends at record {last[0]} but the head says {head[0]}: records are missing"
        )
    return problems
