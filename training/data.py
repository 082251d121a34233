"""The labelled corpora, read from ``Settings.data_dir``, and their fixed splits.

Every labelled example lands in one of three splits: ``train`` (fitting), ``calib`` (early
stopping, calibration, thresholds, mixing weights) and ``eval`` (the figures in the model card).
Weibo16 is split by event, so that a rumour's cascade never straddles two splits; COLD's own dev
file is its ``eval`` split; ToxiCN is split 80/10/10 at random. Splits come from a keyed hash of
the event or example id, so they do not depend on file order or on which other rows exist.

Every corpus file is opened here (:func:`records`, ToxiCN's one JSON array): one that is not
there, or damaged, ends the program that reads it with a :class:`CorpusError`. Each program
first calls :func:`require` with the files it will read, so that a missing one ends it at once,
before it loads a model or makes a folder.
"""

from __future__ import annotations

import gzip
import hashlib
import itertools
import json
import random
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from service.boilerplate import is_boilerplate
from service.heads import Head

Split = Literal["train", "calib", "eval"]

WEIBO16_POSTS = Path("weibo16", "posts.jsonl")
WEIBO16_REPOSTS = Path("weibo16", "reposts.jsonl.gz")
COLD_TRAIN = Path("cold", "train.jsonl")
COLD_DEV = Path("cold", "dev.jsonl")
TOXICN = Path("toxicn", "train.json")
CORPORA = (WEIBO16_POSTS, WEIBO16_REPOSTS, COLD_TRAIN, COLD_DEV, TOXICN)
"""The files under ``data_dir``, each of which training and evaluation read."""

SET_DATA_DIR = (
    "set QINGLANG_DATA_DIR to the folder of the corpora (weibo16/, cold/, toxicn/; "
    "../shared/data by default)"
)

T = TypeVar("T")


class CorpusError(SystemExit):
    """A corpus file that is not there or cannot be read, in one line naming the file (and the
    line) and, for a missing one, the setting. A SystemExit, so that every ``python -m`` command
    reading the corpora ends on that line, status 1, rather than a traceback, without each one
    catching it, and no ``except Exception`` on the way takes it for a row's own failure."""


@dataclass(frozen=True, slots=True)
class Example:
    text: str
    head: Head
    label: int
    split: Split
    group: str
    """Event or source id: examples sharing one are never split apart."""


@dataclass(frozen=True, slots=True)
class Repost:
    id: str
    event: str
    account: str
    text: str
    created_at: int


def require(data_dir: Path, files: tuple[Path, ...] = CORPORA) -> Path:
    """``data_dir``, once each of ``files`` is there in it; else :class:`CorpusError` naming
    what is not (``data_dir`` itself, else its first missing file) and how to point at them:
    the line, and status, a read of that file would end on. Every program reading the corpora
    calls it first, before loading a model or making a folder, where a missing file would
    otherwise end it minutes in."""
    absent: Path | None = data_dir
    if data_dir.is_dir():
        absent = next((data_dir / f for f in files if not (data_dir / f).is_file()), None)
    if absent is not None:
        raise CorpusError(f"{absent} is missing: {SET_DATA_DIR}")
    return data_dir


def split_of(key: str, calib: float = 0.1, evaluation: float = 0.1) -> Split:
    """Deterministic split for ``key``: a uniform draw from its SHA-1, cut at the fractions."""
    u = int.from_bytes(hashlib.sha1(key.encode()).digest()[:8], "big") / 2**64
    if u < evaluation:
        return "eval"
    if u < evaluation + calib:
        return "calib"
    return "train"


def _unreadable(path: Path, where: str | None, exc: Exception) -> CorpusError:
    """What ``exc`` says is wrong with ``path`` at ``where`` (a line, a row), in one line."""
    if isinstance(exc, json.JSONDecodeError):
        problem = f"not JSON, column {exc.colno}: {exc.msg}"
    elif isinstance(exc, UnicodeDecodeError):
        problem = f"not UTF-8 (byte {exc.object[exc.start : exc.end]!r})"
    elif isinstance(exc, KeyError):
        problem = f"no field {exc}"
    elif isinstance(exc, gzip.BadGzipFile | EOFError | zlib.error):
        problem = f"cut off or damaged ({exc})"
    else:
        # one line, as a validation error of several lines would not be
        problem = " ".join(str(exc).split())
    return CorpusError(f"{path}{'' if where is None else f', {where}'}: {problem}")


def records(
    path: Path, read: Callable[[dict[str, Any]], T], hint: str = SET_DATA_DIR
) -> Iterator[T]:
    """``read`` of each JSON object of the JSONL file ``path`` (gzipped if it ends in ``.gz``),
    in file order; blank lines are skipped. A file that is missing (said with ``hint``) or
    damaged, or a line that is not JSON or that ``read`` cannot take (a field missing or of the
    wrong kind), raises :class:`CorpusError`, naming the file and the line."""
    opener = gzip.open if path.suffix == ".gz" else open
    number = 1
    try:
        # bytes, decoded a line at a time: a text stream decodes ahead, past the line it is on
        with opener(path, "rb") as f:
            for line in f:
                if line.strip():
                    row = json.loads(line.decode("utf-8"))
                    if not isinstance(row, dict):
                        raise ValueError("not a JSON object")
                    yield read(row)
                number += 1
    except FileNotFoundError:
        raise CorpusError(f"{path} is missing: {hint}") from None
    except (OSError, EOFError, zlib.error, ValueError, KeyError, TypeError) as exc:
        raise _unreadable(path, f"line {number}", exc) from None


def _weibo16(d: dict[str, Any]) -> Example:
    return Example(
        str(d["text"]),
        "rumor",
        int(str(d["label"])),
        split_of(f"weibo16:{d['id']}"),
        str(d["id"]),
    )


def weibo16(data_dir: Path) -> list[Example]:
    """Weibo16 source posts: ``rumor`` = 1 for rumours, split by event (the post id)."""
    return list(records(data_dir / WEIBO16_POSTS, _weibo16))


def reviewed(path: Path) -> list[Example]:
    """Reviewers' decisions from ``qinglang labels export``, for the heads the classifier has
    (``rumor``, ``incitement``); rows without text are left out. Split by post, like Weibo16
    by event, so that a post reviewed twice stays in one split."""
    heads: dict[object, Head] = {"rumor": "rumor", "incitement": "incitement"}

    def example(d: dict[str, Any]) -> Example | None:
        if not (d.get("text") and d.get("head") in heads):
            return None
        return Example(
            str(d["text"]),
            heads[d["head"]],
            int(str(d["label"])),
            split_of(f"reviewed:{d['post_id']}"),
            str(d["post_id"]),
        )

    hint = "write it with `qinglang labels export`"
    return [e for e in records(path, example, hint) if e is not None]


def cold(data_dir: Path) -> list[Example]:
    """COLD: ``train.jsonl`` gives train and calib (90/10), ``dev.jsonl`` is the eval split."""

    def example(d: dict[str, Any], split: Split | None = None) -> Example:
        if split is None:
            split = "calib" if split_of(f"cold:{d['id']}", 0.1, 0.0) == "calib" else "train"
        return Example(str(d["text"]), "incitement", int(str(d["label"])), split, str(d["id"]))

    out = list(records(data_dir / COLD_TRAIN, example))
    out += records(data_dir / COLD_DEV, lambda d: example(d, "eval"))
    return out


REPORTING = 3
"""ToxiCN's ``expression`` value for texts that report or criticise discrimination."""


def _toxicn_rows(data_dir: Path) -> list[tuple[str, int, object]]:
    """Each row's content, toxic label and expression; a file missing or damaged, or a row
    without them, raises :class:`CorpusError` naming the line or the row (from 0)."""
    path = data_dir / TOXICN
    try:
        with open(path, encoding="utf-8") as f:
            rows = json.load(f)
    except FileNotFoundError:
        raise CorpusError(f"{path} is missing: {SET_DATA_DIR}") from None
    except (OSError, ValueError) as exc:
        where = f"line {exc.lineno}" if isinstance(exc, json.JSONDecodeError) else None
        raise _unreadable(path, where, exc) from None
    if not isinstance(rows, list):
        raise CorpusError(f"{path}: not a JSON array")
    out = []
    for i, d in enumerate(rows):
        try:
            out.append((str(d["content"]), int(d["toxic"]), d["expression"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise _unreadable(path, f"row {i}", exc) from None
    return out


def toxicn(data_dir: Path, reporting: bool = False) -> list[Example]:
    """ToxiCN's training file, split 80/10/10 by a hash of the row's content.

    Rows whose expression is "reporting" (texts that report or criticise discrimination, which
    ToxiCN labels toxic) are kept in the eval split only: the head is not taught that speaking
    against bias is offensive, which is what COLD's labels and the platform's trust teams say
    (refitting the shipped model's n-gram branch without them flagged 68 % of the eval split's
    reporting rows instead of 75 %), and the eval figures still count them with ToxiCN's label.
    ``reporting=True`` keeps them in every split: the files as given, which the baseline the
    model is compared with is trained on.
    """
    out = []
    for i, (content, toxic, expression) in enumerate(_toxicn_rows(data_dir)):
        split = split_of(f"toxicn:{i}:{content}")
        if expression == REPORTING and split != "eval" and not reporting:
            continue
        out.append(Example(content, "incitement", toxic, split, f"toxicn-{i}"))
    return out


def toxicn_reporting(data_dir: Path) -> set[str]:
    """Groups of the ToxiCN rows whose expression is "reporting": texts that report or
    criticise discrimination. ToxiCN labels them toxic; a trust team would rather not."""
    rows = enumerate(_toxicn_rows(data_dir))
    return {f"toxicn-{i}" for i, (_, _, expression) in rows if expression == REPORTING}


def _repost(d: dict[str, Any]) -> Repost:
    return Repost(
        str(d["id"]),
        str(d["event"]),
        str(d["account"]),
        str(d["text"] or ""),
        int(str(d["created_at"])),
    )


def reposts(data_dir: Path) -> Iterator[Repost]:
    """The 1.7M real reposts and comments of the Weibo16 events, in file order."""
    return records(data_dir / WEIBO16_REPOSTS, _repost)


def ordinary_reposts(
    data_dir: Path, split: Split, n: int, seed: int, limit: int | None = None
) -> list[str]:
    """``n`` distinct texts (fewer if there are not as many) drawn at random from the
    non-boilerplate reposts and comments of Weibo16's non-rumour events of ``split``: ordinary
    posts that spread no rumour. Reposts of rumour events are left out: many repeat the rumour.
    ``limit``: read only that many reposts."""
    rumour = {e.group: e.label == 1 for e in weibo16(data_dir)}
    pool = sorted(
        {
            r.text
            for r in itertools.islice(reposts(data_dir), limit)
            if not rumour[r.event]
            and split_of(f"weibo16:{r.event}") == split
            and r.text.strip()
            and not is_boilerplate(r.text)
        }
    )
    random.Random(f"{seed}:ordinary:{split}").shuffle(pool)
    return pool[:n]
