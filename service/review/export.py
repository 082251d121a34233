"""What a regulator asks for (art19): the records of a period as JSONL or CSV, and reviewers'
decisions as training labels."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from typing import Any, TextIO

from service.review.chain import Entry

RECORD_COLUMNS = ("seq", "at", "kind", "subject", "payload", "prev_hash", "hash")


def _row(entry: Entry) -> dict[str, Any]:
    return {
        "seq": entry.seq,
        "at": entry.at.isoformat(),
        "kind": entry.kind,
        "subject": entry.subject,
        "payload": entry.payload,
        "prev_hash": entry.prev_hash,
        "hash": entry.hash,
    }


def write_records(entries: Iterable[Entry], out: TextIO, fmt: str) -> int:
    """Write ``entries`` as ``jsonl`` or ``csv`` (the payload as a JSON cell); how many."""
    count = 0
    if fmt == "csv":
        writer = csv.DictWriter(out, RECORD_COLUMNS)
        writer.writeheader()
        for entry in entries:
            row = _row(entry)
            row["payload"] = json.dumps(row["payload"], ensure_ascii=False, sort_keys=True)
            writer.writerow(row)
            count += 1
        return count
    for entry in entries:
        out.write(json.dumps(_row(entry), ensure_ascii=False, sort_keys=True) + "\n")
        count += 1
    return count


def write_labels(labels: Iterable[dict[str, Any]], out: TextIO) -> int:
    count = 0
    for label in labels:
        out.write(json.dumps(label, ensure_ascii=False) + "\n")
        count += 1
    return count
