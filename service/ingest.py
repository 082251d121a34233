"""Reading a JSONL file of posts: each non-blank line becomes a post or a :class:`LineError`.

Batch re-scoring reads months of stored posts written by several producers; some lines are
bound to be bad (cut off, mis-encoded, missing fields). A bad line must neither stop the run nor
vanish: it becomes a :class:`LineError` that says what is wrong and where (byte offset, column,
field), so that the caller can report it and keep it in a reject file while every good line is
scored.

The file is read as bytes, one line at a time, so that memory stays bounded by the longest line
(itself capped by ``max_line_bytes``) whatever the file's size, and so that a mis-encoded line
is one bad line rather than a decoding error that ends the run.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO, Literal

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from service import jsonload
from service.record import Post

ErrorKind = Literal[
    "invalid_utf8",
    "malformed_json",
    "not_an_object",
    "missing_id",
    "missing_text",
    "wrong_type",
    "invalid_text",
    "bad_created_at",
    "invalid_value",
    "line_too_long",
    # batch re-scoring: rows a Parquet file cannot give back, the line where a gzip stream
    # breaks off, a Parquet file without a column every post needs, posts the scorer failed on
    "unreadable",
    "missing_columns",
    "scorer_error",
]

MAX_LINE_BYTES = 16 << 20
"""Longer lines are rejected unread: a 100,000-character post is 300 KB, so a line this long is
not a post but, say, a binary file given by mistake, and holding it would break bounded memory."""

RAW_CHARS = 1000
"""How much of a bad line a :class:`LineError` keeps, enough to recognise it in a reject file."""

_MISSING: dict[str, ErrorKind] = {"id": "missing_id", "text": "missing_text"}

ACCOUNT = "account"
"""The field that names a post's account in Weibo exports, read as ``account_id`` in a line
without one: the account's id (the Weibo rumour corpus's reposts) or its profile, an object
with the ``id`` (the corpus's source posts). Ignored as an unknown field, it left every post of
such a file without an account: in no coordinated batch and no originality check, each saying
so in a warning of its record."""


_JSON_TYPES: tuple[tuple[type, str], ...] = (
    (dict, "object"),
    (list, "array"),
    (str, "string"),
    # before int, which bool is
    (bool, "boolean"),
    (int, "number"),
    (float, "number"),
    (type(None), "null"),
    (jsonload.LongNumber, "number"),
)


@dataclass(frozen=True, slots=True)
class PostLine:
    """A good line: the post and where it was, for warnings that point at the input."""

    line_no: int
    post: Post


@dataclass(frozen=True, slots=True)
class LineError:
    """A line that cannot be scored: what is wrong, where, and the start of the line itself."""

    line_no: int
    post_id: str | None
    kind: ErrorKind
    message: str
    raw: str
    """The line decoded with replacement characters, cut to ``RAW_CHARS``."""


class JsonlReader:
    """The lines of a JSONL byte stream, in order, with the counts a run reports.

    ``bytes_read`` lets a progress bar measure against the file's size (the number of posts is
    unknown until the end); blank lines are skipped but counted in ``blank_lines``.
    """

    def __init__(
        self, stream: BinaryIO, *, max_line_bytes: int = MAX_LINE_BYTES, first_line: int = 1
    ) -> None:
        self._stream = stream
        self._max_line_bytes = max_line_bytes
        # a batch task reads a slice of the file and numbers its lines as the file does
        self._first_line = first_line
        self.bytes_read = 0
        self.blank_lines = 0

    def __iter__(self) -> Iterator[PostLine | LineError]:
        line_no = self._first_line - 1
        while (line := self._read_line()) is not None:
            head, size = line
            line_no += 1
            self.bytes_read += size
            if size > len(head):
                message = f"line is {size:,} bytes, over the limit of {self._max_line_bytes:,}"
                yield line_error(line_no, head, None, "line_too_long", message)
            elif _without_bom(head).strip():
                yield parse_line(line_no, head)
            else:
                self.blank_lines += 1

    def _read_line(self) -> tuple[bytes, int] | None:
        """The line's first ``max_line_bytes`` and its full size; the rest is read and dropped."""
        head = self._stream.readline(self._max_line_bytes)
        if not head:
            return None
        size, tail = len(head), head
        while not tail.endswith(b"\n") and (tail := self._stream.readline(self._max_line_bytes)):
            size += len(tail)
        return head, size


def parse_line(line_no: int, raw: bytes) -> PostLine | LineError:
    """Turn one line (with its line ending, if any) into a post or the reason it is not one."""
    body = _without_bom(raw).rstrip(b"\r\n")
    try:
        text = _decode(body)
        value = _load_object(text, cut_off=not raw.endswith(b"\n"))
        return PostLine(line_no, _validate(value))
    except _BadLineError as exc:
        return line_error(line_no, body, exc.post_id, exc.kind, exc.message)


def parse_object(line_no: int, value: dict[str, object]) -> PostLine | LineError:
    """Turn one already decoded row (a Parquet row) into a post or the reason it is not one."""
    try:
        return PostLine(line_no, _validate(value))
    except _BadLineError as exc:
        raw = json.dumps(value, ensure_ascii=False, default=str).encode()
        return line_error(line_no, raw, exc.post_id, exc.kind, exc.message)


class _BadLineError(Exception):
    """Leaves :func:`parse_line` at the first problem; each step below knows its own kind."""

    def __init__(self, kind: ErrorKind, message: str, post_id: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.post_id = post_id


def _without_bom(raw: bytes) -> bytes:
    # files saved by Windows tools start with a byte order mark, which json refuses and which
    # makes a blank first line look like one with content; two such files joined (``cat a.jsonl
    # b.jsonl``) have the second one's at the start of a later line, as good a post as the first
    return raw.removeprefix(codecs.BOM_UTF8)


def _decode(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = body[exc.start : exc.end].hex(" ")
        message = f"invalid UTF-8 at byte offset {exc.start} of the line: {exc.reason} ({bad})"
        raise _BadLineError("invalid_utf8", message) from exc


def _load_object(text: str, *, cut_off: bool) -> dict[str, object]:
    try:
        value, long = jsonload.loads(text)
    except json.JSONDecodeError as exc:
        raise _BadLineError("malformed_json", _json_message(exc, cut_off=cut_off)) from exc
    except RecursionError as exc:
        raise _BadLineError("malformed_json", "JSON nested too deeply") from exc
    if not isinstance(value, dict):
        raise _BadLineError("not_an_object", f"expected a JSON object, got {_json_type(value)}")
    if long is not None:
        # named as ``account.id`` or ``extra.1.1`` would be
        path = ".".join(str(step) for step in long.path)
        raise _BadLineError("invalid_value", f"{path}: {long.message}", _post_id(value))
    return value


def _validate(value: dict[str, object]) -> Post:
    fields, account = _with_account(value)
    try:
        return Post.model_validate(fields)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        message = "; ".join(_describe(error, account) for error in errors)
        raise _BadLineError(_kind(errors[0]), message, _post_id(value)) from exc


def _with_account(value: dict[str, object]) -> tuple[dict[str, object], str]:
    """``value`` with the account id of its :data:`ACCOUNT` field as ``account_id``, where it
    has none of its own, and the name of the field the account id came from (for an error)."""
    if value.get("account_id") is not None or value.get(ACCOUNT) is None:
        return value, "account_id"
    account = value[ACCOUNT]
    if isinstance(account, dict):
        # the corpus's source posts: the account's profile, its id among it
        return {**value, "account_id": account.get("id")}, f"{ACCOUNT}.id"
    return {**value, "account_id": account}, ACCOUNT


def line_error(
    line_no: int, body: bytes, post_id: str | None, kind: ErrorKind, message: str
) -> LineError:
    """A bad line with the start of its bytes ``body``, decoded as far as they go."""
    # a character is at most 4 bytes, so this many bytes always give RAW_CHARS characters
    raw = body[: 4 * RAW_CHARS].decode("utf-8", errors="replace")[:RAW_CHARS]
    return LineError(line_no, post_id, kind, message, raw)


def _json_message(exc: json.JSONDecodeError, *, cut_off: bool) -> str:
    """``exc`` said with its column, and what likely made the line so: a carriage return
    inside it, or (``cut_off``: the line ends the file without a newline) its end."""
    # json's messages end in "at" where its own str() appends the position
    message = f"{exc.msg.removesuffix(' at')} at column {exc.colno}"
    if "\r" in exc.doc:
        # a file whose lines end in CR alone is one line, whose every fault was said to be a
        # cut-off end
        message += (
            " (the line holds a carriage return that no newline follows: end the file's lines "
            "with LF or CR LF)"
        )
    elif cut_off and (exc.pos >= len(exc.doc.rstrip()) or exc.msg.startswith("Unterminated")):
        # only where the text stops short: a line wrong before its end is whole
        message += " (the file ends here without a newline: was it cut off?)"
    return message


def _post_id(value: dict[str, object]) -> str | None:
    post_id = value.get("id")
    if isinstance(post_id, bool):
        return None
    return str(post_id) if isinstance(post_id, str | int) else None


def _kind(error: ErrorDetails) -> ErrorKind:
    field = str(error["loc"][0]) if error["loc"] else ""
    if field == "created_at":
        return "bad_created_at"
    if error["type"] == "missing":
        return _MISSING.get(field, "invalid_value")
    if error["type"] == "value_error":
        # Post's own validators: NUL characters and lone surrogates
        return "invalid_text"
    if error["type"].endswith(("_type", "_parsing")):
        return "wrong_type"
    return "invalid_value"


def _describe(error: ErrorDetails, account: str) -> str:
    """``error`` in words, its field named as the line has it (``account`` for ``account_id``)."""
    loc = [account if part == "account_id" else str(part) for part in error["loc"]]
    path = ".".join(loc) or "post"
    if error["type"] == "missing":
        return f"{path}: required field is missing"
    if _kind(error) == "wrong_type":
        return f"{path}: {error['msg']}, got {_json_type(error['input'])}"
    return f"{path}: {error['msg'].removeprefix('Value error, ')}"


def _json_type(value: object) -> str:
    """The JSON name of a decoded value's type, as the producer wrote it; a Parquet value that
    no JSON line holds (bytes, a duration, a time of day) by its Python type."""
    for kind, name in _JSON_TYPES:
        if isinstance(value, kind):
            return name
    return type(value).__name__
