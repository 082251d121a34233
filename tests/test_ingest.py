"""Each line of an input file becomes a post or an error that says what is wrong and where."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from service.ingest import RAW_CHARS, JsonlReader, LineError, PostLine, parse_line


def good(raw: bytes) -> PostLine:
    line = parse_line(7, raw)
    assert isinstance(line, PostLine), line
    return line


def bad(raw: bytes) -> LineError:
    error = parse_line(7, raw)
    assert isinstance(error, LineError), error
    return error


def test_a_good_line_becomes_its_post() -> None:
    raw = '{"id": "a1", "text": "你好", "account_id": "u9", "extra": 1}\n'.encode()
    line = good(raw)
    assert line.line_no == 7
    assert (line.post.id, line.post.text, line.post.account_id) == ("a1", "你好", "u9")


def test_a_numeric_id_is_kept_as_text() -> None:
    assert good(b'{"id": 4712345678901234567, "text": "x"}\n').post.id == "4712345678901234567"


@pytest.mark.parametrize(
    "text",
    ["", "   \u3000 ", "[蜡烛][蜡烛]", "😭😭😭", "字" * 100_000],
    ids=["empty", "white space", "emoticons", "emoji", "100,000 characters"],
)
def test_texts_the_model_cannot_read_are_still_posts(text: str) -> None:
    raw = json.dumps({"id": "a", "text": text}, ensure_ascii=False).encode() + b"\n"
    assert good(raw).post.text == text


def test_created_at_accepts_unix_seconds_and_iso_with_zone() -> None:
    assert good(b'{"id": "a", "text": "x", "created_at": 1700000000}').post.created_at == 1.7e9
    iso = good(b'{"id": "a", "text": "x", "created_at": "2023-11-14T22:13:20Z"}')
    assert iso.post.created_at == 1.7e9


def test_a_byte_order_mark_starts_any_line() -> None:
    """Two files saved with one, joined (``cat a.jsonl b.jsonl``): the second's starts a later
    line, which was refused as json words it ("Unexpected UTF-8 BOM (decode using
    utf-8-sig)")."""
    first, second = (
        b'\xef\xbb\xbf{"id": "a", "text": "x"}\n',
        b'\xef\xbb\xbf{"id": "b", "text": "y"}\n',
    )
    reader = JsonlReader(io.BytesIO(first + b"\xef\xbb\xbf\n" + second))
    lines = list(reader)
    assert [(line.line_no, line.post.id) for line in lines if isinstance(line, PostLine)] == [
        (1, "a"),
        (3, "b"),
    ]
    assert (len(lines), reader.blank_lines) == (2, 1)
    assert good(second).post.text == "y"


@pytest.mark.parametrize(
    ("fields", "path", "post_id"),
    [
        (b'"id": 1%s, "text": "x"', "id", None),
        (b'"id": "a", "text": "x", "account": {"id": -1%s}', "account.id", "a"),
        (b'"id": "a", "text": "x", "extra": [1, [2, 1%s]]', "extra.1.1", "a"),
    ],
)
def test_an_integer_too_long_to_read_is_named_by_its_field(
    fields: bytes, path: str, post_id: str | None
) -> None:
    """json's int() refuses one past 4,300 digits, in words about Python ("use
    sys.set_int_max_str_digits() to increase the limit") that named no field."""
    error = bad(b"{" + fields % (b"0" * 5000) + b"}\n")
    assert (error.kind, error.post_id) == ("invalid_value", post_id)
    assert (
        error.message
        == f"{path}: an integer of 5,001 digits, more than the 4,300 an integer may have"
    )


def test_a_long_integer_that_a_repeated_key_replaced_is_not_in_the_line() -> None:
    assert good(b'{"id": 1' + b"0" * 5000 + b', "id": "a", "text": "x"}\n').post.id == "a"


@pytest.mark.parametrize(
    ("raw", "kind", "post_id", "says"),
    [
        (b'{"id": "a", "text": "ok \xff\xfe"}\n', "invalid_utf8", None, "byte offset 24"),
        (b'{"id": "a", "text": "\xe4\xbd"}\n', "invalid_utf8", None, "byte offset 21"),
        (b'{"id": "a" "text": "x"}\n', "malformed_json", None, "delimiter at column 12"),
        (b'{"id": "a", "text": "x"} junk\n', "malformed_json", None, "Extra data at column 26"),
        (b"[" * 100_000 + b"\n", "malformed_json", None, "nested too deeply"),
        (b"[1, 2]\n", "not_an_object", None, "got array"),
        (b'"text"\n', "not_an_object", None, "got string"),
        (b'{"text": "x"}\n', "missing_id", None, "id: required field is missing"),
        (b'{"id": "a"}\n', "missing_text", "a", "text: required field is missing"),
        (b'{"id": "a", "text": 5}\n', "wrong_type", "a", "text: Input should be a valid string"),
        (b'{"id": "a", "text": null}\n', "wrong_type", "a", "got null"),
        (b'{"id": true, "text": "x"}\n', "wrong_type", None, "id: "),
        # a float would round a long id: a number with a fraction or exponent is refused whole
        (b'{"id": 7.0, "text": "x"}\n', "wrong_type", None, "without a fraction or exponent"),
        (b'{"id": 1, "text": "x", "account_id": []}\n', "wrong_type", "1", "account_id: "),
        (b'{"id": "", "text": "x"}\n', "invalid_value", "", "id: String should have at least"),
        (b'{"id": "  ", "text": "x"}\n', "invalid_value", "  ", "id: id is blank"),
        (
            b'{"id": "\\u0301\\u0301", "text": "x"}\n',
            "invalid_value",
            "\u0301\u0301",
            "id: id is blank: it holds only white space, invisible characters and combining marks",
        ),
        (b'{"id": "a", "text": "x\\u0000y"}\n', "invalid_text", "a", "NUL character at index 1"),
        (b'{"id": "a", "text": "\\ud83d!"}\n', "invalid_text", "a", "lone surrogate (U+D83D)"),
        (b'{"id": "a", "text": "x", "created_at": "soon"}\n', "bad_created_at", "a", "soon"),
        (
            b'{"id": "a", "text": "x", "created_at": "2024-01-01T08:00"}\n',
            "bad_created_at",
            "a",
            "no time zone",
        ),
        (b'{"id": "a", "text": "x", "created_at": NaN}\n', "bad_created_at", "a", "finite"),
        (
            b'{"id": "a", "text": "x", "created_at": 1454284800000}\n',
            "bad_created_at",
            "a",
            "not a time from 1970 to 9999; milliseconds? give seconds",
        ),
        (b'{"id": "a", "text": "x", "created_at": -1}\n', "bad_created_at", "a", "1970"),
        (b'{"id": "a", "text": "x", "created_at": true}\n', "bad_created_at", "a", "is true"),
        (
            b'{"id": "a", "text": "x", "account_id": "' + b"u" * 257 + b'"}\n',
            "invalid_value",
            "a",
            "account_id: String should have at most 256 characters",
        ),
        (
            b'{"id": "a", "text": "x", "source": "' + b"s" * 2049 + b'"}\n',
            "invalid_value",
            "a",
            "source: String should have at most 2048 characters",
        ),
    ],
)
def test_a_bad_line_says_what_and_where(
    raw: bytes, kind: str, post_id: str | None, says: str
) -> None:
    error = bad(raw)
    assert (error.line_no, error.kind, error.post_id) == (7, kind, post_id)
    assert says in error.message


def test_declared_original_is_a_json_boolean_and_null_leaves_it_out() -> None:
    assert not good(b'{"id": "a", "text": "x", "declared_original": null}').post.declared_original
    assert good(b'{"id": "a", "text": "x", "declared_original": true}').post.declared_original
    for value in (b'"yes"', b'"no"', b'"true"', b"1", b"0"):
        error = bad(b'{"id": "a", "text": "x", "declared_original": ' + value + b"}")
        assert error.kind == "wrong_type" and "declared_original: " in error.message


def test_every_field_error_is_named() -> None:
    error = bad(b'{"id": "a", "text": 1, "declared_original": 2}\n')
    assert error.kind == "wrong_type"
    assert "text: " in error.message
    assert "declared_original: " in error.message


def test_a_line_cut_off_at_the_end_of_the_file_says_so() -> None:
    error = bad(b'{"id": "a", "text": "the rest is mis')
    assert error.kind == "malformed_json"
    assert "Unterminated string starting at column 21" in error.message
    assert "without a newline" in error.message


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        # whole, and wrong before its end: nothing after it is missing
        (
            b'{"id": "a",, "text": "x"}',
            "Expecting property name enclosed in double quotes at column 12",
        ),
        # lines ended by a carriage return alone (classic Mac OS): the file is one line
        (
            b'{"id": "a", "text": "x"}\r{"id": "b", "text": "y"}\r',
            "Extra data at column 26 (the line holds a carriage return that no newline follows: "
            "end the file's lines with LF or CR LF)",
        ),
    ],
)
def test_a_last_line_wrong_before_its_end_is_not_said_to_be_cut_off(raw: bytes, says: str) -> None:
    assert bad(raw).message == says


def test_the_raw_line_is_kept_decoded_and_cut() -> None:
    assert bad(b'{"id": "\xff"}\r\n').raw == '{"id": "\ufffd"}'
    long_line = b'{"id": "' + "长".encode() * 5000
    assert bad(long_line).raw == '{"id": "' + "长" * (RAW_CHARS - 8)


def test_the_reader_skips_and_counts_blank_lines_and_keeps_line_numbers() -> None:
    data = b'\n{"id": "a", "text": "x"}\r\n  \t\r\n{"id": "b", "text": "y"}\n{"id":\n\n'
    reader = JsonlReader(io.BytesIO(data))
    items = list(reader)
    assert [(type(item), item.line_no) for item in items] == [
        (PostLine, 2),
        (PostLine, 4),
        (LineError, 5),
    ]
    assert reader.blank_lines == 3
    assert reader.bytes_read == len(data)


def test_the_reader_rejects_an_overlong_line_without_holding_it(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(b'{"id": "a", "text": "' + b"x" * 5000 + b'"}\n{"id": "b", "text": "y"}\n')
    with path.open("rb") as stream:
        reader = JsonlReader(stream, max_line_bytes=1000)
        items = list(reader)
    assert isinstance(items[0], LineError)
    assert items[0].kind == "line_too_long"
    assert "5,024 bytes" in items[0].message
    assert isinstance(items[1], PostLine)
    assert items[1].line_no == 2
    assert reader.bytes_read == path.stat().st_size
