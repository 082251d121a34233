"""A gzip file read at any offset of its decompressed bytes: every seek gives the bytes of the
file decompressed, across members and padding, and a damaged stream breaks off at the same byte
however it is read."""

from __future__ import annotations

import gzip
import random
from pathlib import Path

import pytest

from service.batch import inflate
from service.batch.inflate import GzipError, Inflater


@pytest.fixture
def small(monkeypatch: pytest.MonkeyPatch) -> None:
    """Small blocks, steps and spacing, so that a small file has many points to go back to, and
    more than MAX_POINTS of them."""
    monkeypatch.setattr(inflate, "BLOCK", 1 << 10)
    monkeypatch.setattr(inflate, "STEP", 1 << 11)
    monkeypatch.setattr(inflate, "SPACING", 1 << 12)
    monkeypatch.setattr(inflate, "MAX_POINTS", 8)


def lines(n: int, seed: int = 0) -> bytes:
    rng = random.Random(seed)
    return b"".join(
        b'{"id": "%d", "text": "%s"}\n' % (i, rng.randbytes(rng.randrange(40)).hex().encode())
        for i in range(n)
    )


def test_every_seek_gives_the_decompressed_bytes(tmp_path: Path, small: None) -> None:
    data = lines(3000)
    # two members with zero padding between and after them, as gzip allows and reads
    path = tmp_path / "in.jsonl.gz"
    path.write_bytes(
        gzip.compress(data[:40_000]) + b"\0" * 3 + gzip.compress(data[40_000:]) + b"\0"
    )
    stream = Inflater(str(path))
    assert stream.read(len(data) + 1) == data
    rng = random.Random(1)
    for _ in range(300):
        start, size = rng.randrange(len(data) + 5), rng.randrange(20_000)
        stream.seek(start)
        assert stream.read(size) == data[start : start + size], (start, size)
    # past MAX_POINTS, every other point went and the rest are further apart
    assert len(stream._points) <= inflate.MAX_POINTS < len(data) // inflate.SPACING
    stream.close()


def test_an_empty_file_is_an_empty_stream(tmp_path: Path) -> None:
    (tmp_path / "empty.gz").write_bytes(b"")
    with Inflater(str(tmp_path / "empty.gz")) as stream:
        assert stream.read(10) == b""


@pytest.mark.parametrize("damage", ["cut", "flipped"])
def test_a_damaged_stream_breaks_off_at_the_same_byte_however_it_is_read(
    tmp_path: Path, small: None, damage: str
) -> None:
    packed = bytearray(gzip.compress(lines(2000)))
    if damage == "cut":
        packed = packed[: len(packed) * 2 // 3]
    else:
        packed[len(packed) // 2] ^= 0x5A
    path = tmp_path / "in.jsonl.gz"
    path.write_bytes(bytes(packed))
    with Inflater(str(path)) as stream:
        whole = stream.read(1 << 30)
        with pytest.raises(GzipError) as caught:
            stream.read(1)
    assert caught.value.offset == len(whole) > 0
    assert str(caught.value).startswith(f"the gzip stream breaks off after {len(whole):,} ")
    rng = random.Random(2)
    for _ in range(30):
        with Inflater(str(path)) as stream:
            stream.seek(rng.randrange(len(whole)))
            start = rng.randrange(len(whole))
            stream.seek(start)
            assert stream.read(1 << 30) == whole[start:]
            with pytest.raises(GzipError):
                stream.read(1)


def test_what_is_not_gzip_breaks_off_at_once(tmp_path: Path) -> None:
    (tmp_path / "plain.gz").write_bytes(b'{"id": 1, "text": "x"}\n')
    with Inflater(str(tmp_path / "plain.gz")) as stream, pytest.raises(GzipError) as caught:
        stream.read(10)
    assert (caught.value.offset, caught.value.reason) == (0, "not gzip data")
