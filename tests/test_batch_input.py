"""Batch input and output: JSONL (plain or gzip) and Parquet, files and folders, and the bad
inputs of the issue (corrupt Parquet, a cut-off last line, mixed schemas across files, a gzip
file cut off or not gzip at all)."""

from __future__ import annotations

import gzip
import json
import re
import shutil
from collections.abc import Sequence
from datetime import UTC, datetime, time
from decimal import Decimal
from itertools import islice
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from batchkit import (
    REPOSTS,
    LengthScorer,
    expected_record,
    post_line,
    posts_of,
    read_records,
    read_rejects,
    rescore_lines,
    shuffled_posts,
)

from service.batch import RescoreError
from service.batch import records as record_files
from service.batch.checkpoint import State, WorkFolder
from service.batch.sources import Task, plan, read
from service.ingest import LineError, PostLine
from service.record import (
    NOT_AN_ID,
    ClusterPost,
    ClusterSummary,
    Post,
    Reason,
    RumorMatch,
    ScoreRecord,
    text_digest,
)
from service.rescore import InlineEngine, rescore
from service.settings import get_settings


def write_parquet(path: Path, rows: list[dict[str, object]], row_group_size: int = 1000) -> None:
    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=row_group_size)


def test_tasks_cut_jsonl_at_line_ends_and_number_lines_as_the_file(tmp_path: Path) -> None:
    lines = shuffled_posts(7)
    lines.insert(3, b"\n")
    source = tmp_path / "in.jsonl"
    source.write_bytes(b"".join(lines) + b'{"id": "last", "text": "no newline"}')
    tasks = plan([source], chunk_size=3)
    assert [(t.first_line, t.lines) for t in tasks] == [(1, 3), (4, 3), (7, 3)]
    assert tasks[-1].stop == source.stat().st_size
    chunks = [read(task) for task in tasks]
    numbered = [
        (item.line_no, item.post.id)
        for c in chunks
        for item in c.items
        if isinstance(item, PostLine)
    ]
    assert numbered == [
        (1, "p0"),
        (2, "p1"),
        (3, "p2"),
        (5, "p3"),
        (6, "p4"),
        (7, "p5"),
        (8, "p6"),
        (9, "last"),
    ]
    assert [c.blank_lines for c in chunks] == [0, 1, 0]


@pytest.mark.parametrize("output_name", ["out.jsonl", "out.parquet", "OUT.PARQUET", "out.jsonl.gz"])
def test_parquet_in_jsonl_or_parquet_out_in_input_order(tmp_path: Path, output_name: str) -> None:
    posts = posts_of(shuffled_posts(25))
    write_parquet(tmp_path / "in.parquet", [p.model_dump() for p in posts], row_group_size=10)
    output = tmp_path / output_name
    summary = rescore(
        tmp_path / "in.parquet", output, InlineEngine(LengthScorer()), chunk_size=4, progress=False
    )
    assert list(record_files.read_records(output)) == [expected_record(p) for p in posts]
    assert (summary.posts_read, summary.scored) == (25, 25)
    assert not (tmp_path / f".{output_name}.rescore").exists()
    magic = output.read_bytes()[:4]
    assert (magic == b"PAR1") == output_name.lower().endswith(".parquet")
    assert (magic[:2] == b"\x1f\x8b") == output_name.endswith(".gz")


def every_field_set() -> ScoreRecord:
    """A record none of whose fields holds its default."""
    post = Post(id="x", text="紧急扩散" * 200, account_id="u")
    record = expected_record(post).model_copy(
        update={
            "reasons": [Reason(code="art13", score=0.9, evidence={"spans": [{"start": 0}]})],
            "cluster": ClusterSummary(
                id="c_1",
                size=3,
                accounts=2,
                first_at=1.0,
                last_at=2.5,
                earliest=ClusterPost(id="a", account_id=None, created_at=1.0),
                batch=True,
            ),
            "confirmed_rumor": RumorMatch(rumor_id="r_1", similarity=0.93, at=2.5),
            "text_digest": text_digest(post.text),
            "degraded": True,
            "warnings": ["w"],
            "evidence_pending": True,
        }
    )
    # a field added to the record without a place in Parquet fails here
    assert set(record.model_dump(exclude_defaults=True)) == set(ScoreRecord.model_fields)
    return record


def test_every_field_of_a_record_reads_back_from_parquet_as_from_jsonl(tmp_path: Path) -> None:
    record = every_field_set()
    back = {}
    for name in ("r.jsonl", "r.parquet"):
        writer = record_files.RecordWriter(tmp_path / name, parquet=name.endswith(".parquet"))
        writer.write([record])
        writer.close()
        back[name] = [r.model_dump() for r in record_files.read_records(tmp_path / name)]
    assert back["r.parquet"] == back["r.jsonl"] == [record.model_dump()]
    table = pq.read_table(tmp_path / "r.parquet")
    assert table.column("flags").to_pylist()[0]["rumor"] is record.flags["rumor"]


def test_parquet_written_before_the_added_columns_reads_them_as_their_defaults(
    tmp_path: Path,
) -> None:
    """An earlier output (which ``--compare`` reads) lacks the columns; a run killed before they
    were added and continued after joins parts of both schemas: the older rows read with the
    defaults, the newer ones whole."""
    old, new = expected_record(Post(id="old", text="旧")), every_field_set()
    added = {"confirmed_rumor", "text_digest", "evidence_pending"}
    older = pa.schema([column for column in record_files.SCHEMA if column.name not in added])
    earlier = tmp_path / "earlier.parquet"
    pq.write_table(pa.Table.from_pylist([record_files.to_row(old)], schema=older), earlier)
    assert list(record_files.read_records(earlier)) == [old]

    work = WorkFolder(tmp_path / "out.parquet")
    work.path.mkdir()
    shutil.copy(earlier, work.part(0))
    writer = record_files.RecordWriter(work.part(1), parquet=True)
    writer.write([new])
    writer.close()
    work.finish(State({}, parts=2), tmp_path / "out.rejects.jsonl")
    assert list(record_files.read_records(tmp_path / "out.parquet")) == [old, new]


def test_a_folder_of_files_with_different_schemas(tmp_path: Path) -> None:
    folder = tmp_path / "posts"
    (folder / "2016-02").mkdir(parents=True)
    (folder / "2016-01.jsonl").write_bytes(
        post_line("a1", "一月", created_at="2016-01-01T08:00:00+08:00", account_id="u1")
        + b'{"id": "a2", "text": ["not", "text"]}\n'
    )
    write_parquet(
        folder / "2016-02" / "part-0.parquet",
        [
            {"id": "b1", "text": "二月", "created_at": datetime(2016, 2, 1, tzinfo=UTC), "x": 1},
            {"id": "b2", "text": None, "created_at": datetime(2016, 2, 2, tzinfo=UTC), "x": 2},
        ],
    )
    write_parquet(
        folder / "2016-03.parquet", [{"id": 3, "text": "三月", "declared_original": True}]
    )
    (folder / "notes.txt").write_text("not posts")
    # hidden files and folders are not posts: a run's work folder, an editor's or a tool's files
    (folder / ".out.jsonl.rescore").mkdir()
    (folder / ".out.jsonl.rescore" / "part-000000.jsonl").write_bytes(post_line("w", "工作"))
    (folder / ".hidden.jsonl").write_bytes(post_line("h", "隐藏"))

    output = tmp_path / "out.jsonl"
    summary = rescore(folder, output, InlineEngine(LengthScorer()), progress=False)

    assert [r.id for r in read_records(output)] == ["a1", "b1", "3"]
    assert read_records(output)[2].signals["originality_claim"] == 1.0
    rejects = read_rejects(tmp_path / "out.rejects.jsonl")
    assert [(Path(str(r["file"])).name, r["line"], r["error"]) for r in rejects] == [
        ("2016-01.jsonl", 2, "wrong_type"),
        ("part-0.parquet", 2, "missing_text"),
    ]
    assert summary.posts_read == 5


MIDNIGHT = datetime(2016, 2, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("kind", "value", "seconds"),
    [
        # a date is its midnight UTC
        (pa.date32(), MIDNIGHT.date(), MIDNIGHT.timestamp()),
        (pa.date64(), MIDNIGHT.date(), MIDNIGHT.timestamp()),
        (pa.timestamp("s", tz="UTC"), MIDNIGHT, MIDNIGHT.timestamp()),
        (pa.timestamp("ms", tz="Asia/Shanghai"), MIDNIGHT, MIDNIGHT.timestamp()),
        (pa.timestamp("us", tz="+08:00"), MIDNIGHT, MIDNIGHT.timestamp()),
        (pa.timestamp("ns", tz="UTC"), MIDNIGHT, MIDNIGHT.timestamp()),
    ],
)
def test_arrow_date_and_zoned_timestamp_columns_are_times(
    tmp_path: Path, kind: pa.DataType, value: object, seconds: float
) -> None:
    source = tmp_path / "in.parquet"
    table = pa.table({"id": ["a"], "text": ["二月"], "created_at": pa.array([value], kind)})
    pq.write_table(table, source)
    [task] = plan([source], 10)
    [item] = read(task).items
    assert isinstance(item, PostLine)
    assert item.post.created_at == seconds


def read_parquet(path: Path, columns: dict[str, pa.Array]) -> list[PostLine | LineError]:
    """The items of a Parquet file of ``columns``, one task."""
    pq.write_table(pa.table(columns), path)
    [task] = plan([path], 10)
    return read(task).items


WIDE_ID = 12_345_678_901_234_567_890
"""Over int64: such ids come as DECIMAL(20) from a database."""


@pytest.mark.parametrize("kind", [pa.decimal128(20, 0), pa.decimal128(24, 2), pa.decimal256(40, 0)])
def test_decimal_ids_that_are_whole_numbers_are_ids_as_integers_are(
    tmp_path: Path, kind: pa.DataType
) -> None:
    items = read_parquet(
        tmp_path / "in.parquet",
        {
            "id": pa.array([Decimal(WIDE_ID), Decimal(7)], kind),
            "text": ["一", "二"],
            "account_id": pa.array([Decimal(12), None], kind),
            "created_at": pa.array([Decimal("1454284800.5"), None], pa.decimal128(13, 1)),
        },
    )
    assert all(isinstance(item, PostLine) for item in items)
    assert [item.post for item in items if isinstance(item, PostLine)] == [
        Post(id=str(WIDE_ID), text="一", account_id="12", created_at=1454284800.5),
        Post(id="7", text="二"),
    ]


@pytest.mark.parametrize(
    ("column", "got"),
    [
        # a fraction is no id, as 7.5 in a JSON line is not
        (pa.array([Decimal("7.5")], pa.decimal128(5, 1)), "number"),
        (pa.array([7.0], pa.float64()), "number"),
        (pa.array([[7]], pa.list_(pa.int64())), "array"),
        (pa.array([{"n": 7}], pa.struct([("n", pa.int64())])), "object"),
        # no JSON line holds these: their own type, not null
        (pa.array([7], pa.duration("s")), "timedelta"),
        (pa.array([time(7)], pa.time64("us")), "time"),
    ],
)
def test_an_id_column_of_another_type_is_a_bad_line_naming_the_type(
    tmp_path: Path, column: pa.Array, got: str
) -> None:
    [item] = read_parquet(tmp_path / "in.parquet", {"id": column, "text": ["一"]})
    assert isinstance(item, LineError)
    # a number is refused as a JSON line's number with a fraction is (service.record.NOT_AN_ID)
    refused = NOT_AN_ID if got == "number" else "Input should be a valid string"
    assert (item.kind, item.message) == ("wrong_type", f"id: {refused}, got {got}")


def test_a_timestamp_column_without_a_zone_is_refused_before_any_work(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.jsonl").write_bytes(post_line("a", "好"))
    source = tmp_path / "in" / "b.parquet"
    times = pa.array([datetime(2016, 2, 1, 8)], pa.timestamp("us"))
    pq.write_table(pa.table({"id": ["b"], "text": ["二月"], "created_at": times}), source)
    # as a zone-less ISO 8601 time in JSONL: UTC or the platform's local time, nobody can tell
    with pytest.raises(
        RescoreError,
        match=rf"^{source}: column created_at is timestamp\[us\] without a time zone",
    ):
        rescore(
            tmp_path / "in", tmp_path / "out.jsonl", InlineEngine(LengthScorer()), progress=False
        )
    assert not (tmp_path / "out.jsonl").exists()
    # a row that reaches the reader anyway (the file replaced after the run was planned) is
    # refused as the same JSONL line is
    [item] = read(Task(0, str(source), "parquet", 0, 1, 1, 1)).items
    assert isinstance(item, LineError)
    assert (item.kind, item.message) == (
        "bad_created_at",
        "created_at: created_at '2016-02-01T08:00:00' has no time zone; give an offset or Z",
    )


def test_a_corrupt_parquet_file_is_named_before_any_work(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.jsonl").write_bytes(post_line("a", "好"))
    (tmp_path / "in" / "b.parquet").write_bytes(b"PAR1 this is not really parquet")
    with pytest.raises(RescoreError, match=r"b.parquet is not a readable Parquet file"):
        rescore(
            tmp_path / "in", tmp_path / "out.jsonl", InlineEngine(LengthScorer()), progress=False
        )
    assert not (tmp_path / "out.jsonl").exists()


@pytest.mark.parametrize(
    ("columns", "said"),
    [
        (
            ["post_id", "content", *(f"c{i}" for i in range(10))],
            "has no id and no text column, which every post needs (its columns: post_id, "
            "content, c0, c1, c2, c3, c4, c5, c6, c7 and 2 more)",
        ),
        (["id", "body"], "has no text column, which every post needs (its columns: id, body)"),
    ],
)
def test_a_parquet_file_without_a_post_column_is_one_error_before_any_work(
    tmp_path: Path, columns: list[str], said: str
) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.jsonl").write_bytes(post_line("a", "好"))
    source = tmp_path / "in" / "b.parquet"
    pq.write_table(pa.table({name: [f"{name}{i}" for i in range(500)] for name in columns}), source)
    scorer = LengthScorer()
    # not a reject a row: a million rows would be a million errors that all say the same
    with pytest.raises(RescoreError) as refused:
        rescore(tmp_path / "in", tmp_path / "out.jsonl", InlineEngine(scorer), progress=False)
    assert str(refused.value) == (
        f"{source}: {said}; rename the columns, or give --skip-bad to reject the file whole and "
        "score the rest"
    )
    assert scorer.batch_sizes == []
    assert not (tmp_path / "out.jsonl").exists()


def test_skip_bad_rejects_a_parquet_file_without_a_post_column_whole(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    first, last = shuffled_posts(5), shuffled_posts(6, prefix="c")
    (folder / "a.jsonl").write_bytes(b"".join(first))
    pq.write_table(
        pa.table({"post_id": ["x"] * 300, "content": ["文"] * 300}), folder / "b.parquet"
    )
    write_parquet(folder / "c.parquet", [p.model_dump() for p in posts_of(last)])

    summary = rescore(
        folder,
        tmp_path / "out.jsonl",
        InlineEngine(LengthScorer()),
        chunk_size=4,
        progress=False,
        skip_bad=True,
    )

    expected = [expected_record(p) for p in posts_of(first + last)]
    assert read_records(tmp_path / "out.jsonl") == expected
    assert read_rejects(tmp_path / "out.rejects.jsonl") == [
        {
            "file": str(folder / "b.parquet"),
            "line": 0,
            "id": None,
            "error": "missing_columns",
            "message": "the Parquet file has no id and no text column, which every post needs "
            "(its columns: post_id, content): none of its 300 rows was read",
            "raw": "",
        }
    ]
    # the file is one failure, counted and kept, whatever its number of rows
    assert (summary.posts_read, summary.scored, summary.failed) == (12, 11, {"missing_columns": 1})


def test_a_damaged_row_group_is_rejected_row_by_row_and_the_rest_scored(tmp_path: Path) -> None:
    posts = posts_of(shuffled_posts(40))
    source = tmp_path / "in.parquet"
    pq.write_table(
        pa.Table.from_pylist([p.model_dump() for p in posts]),
        source,
        row_group_size=20,
        compression="zstd",
    )
    meta = pq.ParquetFile(source).metadata
    text = meta.row_group(0).column(1)  # the text column's pages of the first row group
    data = bytearray(source.read_bytes())
    start = text.data_page_offset
    data[start + 8 : start + text.total_compressed_size - 8] = b"\xff" * (
        text.total_compressed_size - 16
    )
    source.write_bytes(bytes(data))

    summary = rescore(
        source, tmp_path / "out.jsonl", InlineEngine(LengthScorer()), chunk_size=8, progress=False
    )

    assert read_records(tmp_path / "out.jsonl") == [expected_record(p) for p in posts[20:]]
    rejects = read_rejects(tmp_path / "out.rejects.jsonl")
    assert [r["line"] for r in rejects] == list(range(1, 21))
    assert {r["error"] for r in rejects} == {"unreadable"}
    assert "row group 0" in str(rejects[0]["message"])
    assert summary.posts_read == 40


def test_a_row_group_whose_page_header_is_corrupt_is_said_in_one_line(tmp_path: Path) -> None:
    posts = posts_of(shuffled_posts(20))
    source = tmp_path / "in.parquet"
    pq.write_table(pa.Table.from_pylist([p.model_dump() for p in posts]), source)
    text = pq.ParquetFile(source).metadata.row_group(0).column(1)
    data = bytearray(source.read_bytes())
    data[text.data_page_offset : text.data_page_offset + 8] = b"\xff" * 8
    source.write_bytes(bytes(data))

    rescore(source, tmp_path / "out.jsonl", InlineEngine(LengthScorer()), progress=False)

    rejects = read_rejects(tmp_path / "out.rejects.jsonl")
    assert len(rejects) == 20
    # Arrow's message spans lines; a reject is one line on stderr, greppable by file and line
    message = str(rejects[0]["message"])
    assert message.startswith("row group 0 of the Parquet file cannot be read: ")
    assert "Deserializing page header failed" in message
    assert "\n" not in message


def test_a_cut_off_last_line_is_rejected_and_says_so(tmp_path: Path) -> None:
    lines = shuffled_posts(6)
    source = tmp_path / "in.jsonl"
    source.write_bytes(b"".join(lines) + '{"id": "cut", "text": "写到一半'.encode())
    summary = rescore(
        source, tmp_path / "out.jsonl", InlineEngine(LengthScorer()), chunk_size=3, progress=False
    )
    assert read_records(tmp_path / "out.jsonl") == [expected_record(p) for p in posts_of(lines)]
    [reject] = read_rejects(tmp_path / "out.rejects.jsonl")
    assert (reject["line"], reject["error"]) == (7, "malformed_json")
    assert "without a newline: was it cut off?" in str(reject["message"])
    assert summary.posts_read == 7


class RewritingScorer(LengthScorer):
    """A stand-in during whose first call another program writes ``source`` anew, shorter (a
    producer exporting the posts again, a log cut while the run reads it)."""

    def __init__(self, source: Path, data: bytes) -> None:
        super().__init__()
        self._source, self._data = source, data

    def prepare(self, posts: Sequence[Post]) -> list[ScoreRecord]:
        if not self.calls:
            self._source.write_bytes(self._data)
        return super().prepare(posts)


@pytest.mark.parametrize("name", ["in.jsonl", "in.jsonl.gz", "in.parquet"])
def test_an_input_cut_short_during_the_run_stops_it_before_a_line_is_lost(
    tmp_path: Path, name: str
) -> None:
    lines = shuffled_posts(9)
    source = tmp_path / name

    def written(kept: list[bytes]) -> bytes:
        if name.endswith(".parquet"):
            # a row group a task: each task reads the file anew
            write_parquet(tmp_path / "rows.parquet", [json.loads(line) for line in kept], 3)
            return (tmp_path / "rows.parquet").read_bytes()
        data = b"".join(kept)
        return gzip.compress(data) if name.endswith(".gz") else data

    source.write_bytes(written(lines))
    scorer = RewritingScorer(source, written(lines[:4]))
    # before: the tasks past the cut read short or nothing, 6 posts gone, status 0
    with pytest.raises(RescoreError, match=rf"^{re.escape(str(source))} changed during the run"):
        rescore(
            source,
            tmp_path / "out.jsonl",
            InlineEngine(scorer),
            chunk_size=3,
            segment_posts=3,
            progress=False,
        )
    assert not (tmp_path / "out.jsonl").exists()


def test_an_input_of_unknown_format_is_refused(tmp_path: Path) -> None:
    (tmp_path / "in.csv").write_text("id,text\n")
    with pytest.raises(RescoreError, match=r"in.csv: unknown format"):
        rescore(
            tmp_path / "in.csv",
            tmp_path / "out.jsonl",
            InlineEngine(LengthScorer()),
            progress=False,
        )
    (tmp_path / "empty").mkdir()
    with pytest.raises(RescoreError, match=r"holds no .jsonl, .jsonl.gz or .parquet file"):
        rescore(
            tmp_path / "empty", tmp_path / "out.jsonl", InlineEngine(LengthScorer()), progress=False
        )


def test_a_gzip_file_gives_what_the_same_file_uncompressed_gives(tmp_path: Path) -> None:
    lines = shuffled_posts(40)
    lines[5] = b"this line is not JSON\n"
    lines[9] = b"\n"
    data = b"".join(lines) + '{"id": "cut", "text": "写到一半'.encode()
    (tmp_path / "in.jsonl").write_bytes(data)
    (tmp_path / "in.jsonl.gz").write_bytes(gzip.compress(data))
    outputs = []
    for name in ("in.jsonl", "in.jsonl.gz"):
        out = tmp_path / f"{name}.out.jsonl"
        engine = InlineEngine(LengthScorer())
        summary = rescore(tmp_path / name, out, engine, chunk_size=3, progress=False)
        rejects = read_rejects(tmp_path / f"{name}.out.rejects.jsonl")
        outputs.append((read_records(out), [(r["line"], r["error"]) for r in rejects], summary))
    (plain, plain_rejects, plain_summary), (packed, packed_rejects, packed_summary) = outputs
    good = [line for i, line in enumerate(lines) if i not in (5, 9)]
    assert packed == plain == [expected_record(p) for p in posts_of(good)]
    assert packed_rejects == plain_rejects == [(6, "malformed_json"), (41, "malformed_json")]
    assert packed_summary.tallies() | {"elapsed_s": 0} == plain_summary.tallies() | {"elapsed_s": 0}


def test_a_folder_mixes_plain_and_gzip_files_by_suffix_in_any_case(tmp_path: Path) -> None:
    folder = tmp_path / "posts"
    folder.mkdir()
    (folder / "1.jsonl").write_bytes(post_line("a", "一"))
    (folder / "2.JSONL.GZ").write_bytes(gzip.compress(post_line("b", "二") + post_line("c", "三")))
    (folder / "3.Ndjson").write_bytes(post_line("d", "四"))
    (folder / "4.jsonl.gz").write_bytes(gzip.compress(post_line("e", "五")))
    write_parquet(folder / "5.PARQUET", [{"id": "f", "text": "六"}])
    (folder / "notes.txt.gz").write_bytes(gzip.compress(b"not posts\n"))
    summary = rescore(folder, tmp_path / "out.jsonl", InlineEngine(LengthScorer()), progress=False)
    assert [r.id for r in read_records(tmp_path / "out.jsonl")] == ["a", "b", "c", "d", "e", "f"]
    assert summary.failed_total == 0


def test_a_cut_off_gzip_file_is_scored_up_to_the_break_which_is_one_bad_line(
    tmp_path: Path,
) -> None:
    lines = shuffled_posts(3000)
    packed = gzip.compress(b"".join(lines))
    source = tmp_path / "in.jsonl.gz"
    source.write_bytes(packed[: len(packed) // 2])
    summary = rescore(
        source, tmp_path / "out.jsonl", InlineEngine(LengthScorer()), chunk_size=64, progress=False
    )
    records = read_records(tmp_path / "out.jsonl")
    whole = len(records)
    assert 0 < whole < 3000
    assert records == [expected_record(p) for p in posts_of(lines[:whole])]
    [reject] = read_rejects(tmp_path / "out.rejects.jsonl")
    assert (reject["line"], reject["error"]) == (whole + 1, "unreadable")
    assert str(reject["message"]).startswith(
        f"the gzip stream breaks off after {whole:,} whole lines ("
    )
    assert str(reject["message"]).endswith("the file ends inside it (cut off?)")
    # the part of the line the stream gave, to recognise it by
    assert reject["raw"] and lines[whole].decode().startswith(str(reject["raw"]))
    assert (summary.posts_read, summary.failed) == (whole + 1, {"unreadable": 1})


def test_a_gzip_file_of_which_nothing_decompresses_is_named_before_any_work(
    tmp_path: Path,
) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.jsonl").write_bytes(post_line("a", "好"))
    (tmp_path / "in" / "b.jsonl.gz").write_bytes(post_line("b", "其实没有压缩"))
    with pytest.raises(
        RescoreError, match=r"b.jsonl.gz is not a readable gzip file: not gzip data"
    ):
        rescore(
            tmp_path / "in", tmp_path / "out.jsonl", InlineEngine(LengthScorer()), progress=False
        )
    assert not (tmp_path / "out.jsonl").exists()


BOM = b"\xef\xbb\xbf"


def first_line_with_a_bom(tmp_path: Path, layout: str, first: bytes) -> tuple[Path, list[bytes]]:
    """An input whose file starts with a byte order mark then ``first`` (plain JSONL, gzip, or
    the second file of a folder, whose line 1 is not the run's first line), and its posts."""
    lines = shuffled_posts(3)
    data = BOM + first + b"".join(lines)
    if layout == "gzip":
        source = tmp_path / "in.jsonl.gz"
        source.write_bytes(gzip.compress(data))
        return source, lines
    if layout == "plain":
        source = tmp_path / "in.jsonl"
        source.write_bytes(data)
        return source, lines
    source = tmp_path / "posts"
    source.mkdir()
    (source / "a.jsonl").write_bytes(post_line("a", "先"))
    (source / "b.jsonl").write_bytes(data)
    return source, [post_line("a", "先"), *lines]


LAYOUTS = ["plain", "gzip", "second file of a folder"]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_a_byte_order_mark_before_the_first_post_is_dropped(tmp_path: Path, layout: str) -> None:
    source, lines = first_line_with_a_bom(tmp_path, layout, post_line("bom", "有标记"))
    summary = rescore(source, tmp_path / "out.jsonl", InlineEngine(LengthScorer()), progress=False)
    posts = posts_of(lines)
    posts.insert(len(posts) - 3, Post(id="bom", text="有标记"))
    assert read_records(tmp_path / "out.jsonl") == [expected_record(p) for p in posts]
    assert summary.failed_total == 0


@pytest.mark.parametrize("layout", LAYOUTS)
def test_a_byte_order_mark_then_a_blank_line_is_a_blank_line(tmp_path: Path, layout: str) -> None:
    source, lines = first_line_with_a_bom(tmp_path, layout, b"\r\n")
    summary = rescore(
        source, tmp_path / "out.jsonl", InlineEngine(LengthScorer()), chunk_size=2, progress=False
    )
    assert read_records(tmp_path / "out.jsonl") == [expected_record(p) for p in posts_of(lines)]
    assert not (tmp_path / "out.rejects.jsonl").exists()
    # output records + rejected lines = non-blank input lines
    assert (summary.posts_read, summary.blank_lines) == (len(lines), 1)


@pytest.mark.parametrize("field", ["id", "account_id", "source", "text"])
def test_a_lone_surrogate_in_any_text_field_is_named_with_where_it_is(
    tmp_path: Path, field: str
) -> None:
    # json.loads gives a lone surrogate for the escape; the file itself is valid UTF-8
    bad = {"id": "b", "text": "x", field: "b\ud800"}
    lines = [post_line("a", "好"), json.dumps(bad).encode() + b"\n", post_line("c", "好")]
    (tmp_path / "in.jsonl").write_bytes(b"".join(lines))
    summary = rescore(
        tmp_path / "in.jsonl", tmp_path / "out.jsonl", InlineEngine(LengthScorer()), progress=False
    )
    assert [r.id for r in read_records(tmp_path / "out.jsonl")] == ["a", "c"]
    [reject] = read_rejects(tmp_path / "out.rejects.jsonl")
    assert (reject["line"], reject["error"], reject["message"]) == (
        2,
        "invalid_text",
        f"{field}: {field} contains a lone surrogate (U+D800) at index 1",
    )
    assert summary.failed == {"invalid_text": 1}


def test_an_account_field_is_the_account_where_the_line_gives_no_account_id(
    tmp_path: Path,
) -> None:
    """The Weibo rumour corpus names a repost's account ``account`` and a source post's
    ``account`` {``id``, ...}: read as its account id, not dropped as an unknown field."""
    source = tmp_path / "in.jsonl"
    source.write_bytes(
        post_line("r1", "转发微博", account="1838774143")
        + post_line("r2", "转发", account=1877330775)
        + post_line("s1", "源帖", account={"id": "1760369714", "followers": 1011418})
        + post_line("both", "两个", account_id="given", account="other")
        + post_line("null", "空", account=None)
        + post_line("noid", "无号", account={"followers": 3})
        + post_line("long", "太长", account="9" * 300)
        + post_line("flag", "布尔", account={"id": True})
    )
    [task] = plan([source], 10)
    items = read(task).items
    posts = {item.post.id: item.post for item in items if isinstance(item, PostLine)}
    assert {post_id: post.account_id for post_id, post in posts.items()} == {
        "r1": "1838774143",
        "r2": "1877330775",
        "s1": "1760369714",
        "both": "given",
        "null": None,
        "noid": None,
    }
    # an account field that is no account id is a bad line naming it, as account_id's would be
    errors = {item.post_id: item for item in items if isinstance(item, LineError)}
    assert (errors["long"].kind, errors["long"].message) == (
        "invalid_value",
        "account: String should have at most 256 characters",
    )
    assert (errors["flag"].kind, errors["flag"].message) == (
        "wrong_type",
        "account.id: Input should be a valid string, got boolean",
    )


def test_an_account_column_of_parquet_is_the_account(tmp_path: Path) -> None:
    items = read_parquet(
        tmp_path / "in.parquet",
        {
            "id": ["r1", "s1", "both"],
            "text": ["一", "二", "三"],
            "account": pa.array(
                [{"id": "1838774143"}, {"id": "1760369714"}, {"id": "other"}],
                pa.struct([("id", pa.string())]),
            ),
            "account_id": [None, None, "given"],
        },
    )
    assert [item.post.account_id for item in items if isinstance(item, PostLine)] == [
        "1838774143",
        "1760369714",
        "given",
    ]


def test_reposts_of_the_weibo_rumour_corpus_are_scored_with_their_accounts(
    tmp_path: Path,
) -> None:
    with gzip.open(get_settings().data_dir / REPOSTS, "rb") as corpus:
        lines = [line for line in islice(corpus, 300) if line.strip()]
    summary = rescore_lines(tmp_path, lines, InlineEngine(LengthScorer()), chunk_size=64)
    accounts = [json.loads(line)["account"] for line in lines]
    assert [r.account_id for r in read_records(tmp_path / "out.jsonl")] == accounts
    assert summary.scored == len(lines)
