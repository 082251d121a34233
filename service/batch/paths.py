"""A run's files checked before any work (and before the model loads): the input files, OUTPUT and
the reject file beside it (:func:`default_reject_path`), and the earlier output that
``--compare`` reads; a file the run cannot use stops it with :class:`~service.batch.RescoreError`.
"""

from __future__ import annotations

import os
from pathlib import Path

from service.batch import RescoreError
from service.batch.diff import changes_file, report_file
from service.batch.records import OUTPUT_SUFFIXES, RecordsError, read_records
from service.batch.sources import InputError, Listing, listing, special_kind


def default_reject_path(output_path: Path) -> Path:
    """``scores.jsonl`` (``.ndjson``, ``.parquet``, ``.jsonl.gz``, ``.gz``) keeps its rejects in
    ``scores.rejects.jsonl``, beside it."""
    if not output_path.name:
        # "." or "/" has no name to derive one from; it is a folder, which check_paths
        # refuses as OUTPUT before it looks at the rejects
        return output_path
    name = output_path.name
    suffix = next((s for s in (*OUTPUT_SUFFIXES, ".gz") if name.lower().endswith(s)), "")
    return output_path.with_name(name[: len(name) - len(suffix)] + ".rejects.jsonl")


def check_paths(
    input_path: Path,
    output_path: Path,
    reject_path: Path,
    previous: Path | None = None,
    *,
    listed: Listing | None = None,
) -> Listing:
    """The input files (``listed``: as the caller's one walk of INPUT found them, which is not
    walked again; by default, walked here); fail before any work (and before the model loads)
    when the files cannot be used: a folder to write to that is missing, an output that would
    replace an input or the other output, or land where the next run reads posts, and a
    ``previous`` output to compare with (``--compare``) that is not one."""
    try:
        found = listed or listing(input_path)
    except InputError as exc:
        raise RescoreError(str(exc)) from exc
    check_outputs(output_path, reject_path)
    inputs = {f.resolve() for f in found.files}
    for what, path in (("OUTPUT", output_path), ("--rejects", reject_path)):
        if path.resolve() in inputs:
            raise RescoreError(f"{what} {path} is an input file, which the run would replace")
        if input_path.is_dir() and path.resolve().is_relative_to(input_path.resolve()):
            raise RescoreError(
                f"{what} {path} is inside the input folder {input_path}: the next run would "
                "read it as posts"
            )
    if previous is not None:
        _check_previous(previous, output_path, reject_path)
    return found


def check_outputs(output_path: Path, reject_path: Path) -> None:
    """Fail when OUTPUT or the reject file cannot be written (a command checks it before it
    takes the hold on OUTPUT, whose lock file goes beside it): a folder, a special file, a
    folder to write to that is missing or read-only, or both one file."""
    for path in (output_path, reject_path):
        if path.is_dir():
            raise RescoreError(f"cannot write {path}: it is a folder")
        if path.exists() and not path.is_file():
            # the run renames its finished file over it and removes a reject file it has no use
            # for: run as root, that took /dev/null itself away
            raise RescoreError(
                f"cannot write {path}: it is {special_kind(path)}, not a file, and the run "
                "would replace it with one; give a file"
            )
        if not path.parent.is_dir():
            raise RescoreError(f"cannot write {path}: folder {path.parent} does not exist")
        if not os.access(path.parent, os.W_OK):
            raise RescoreError(f"cannot write {path}: folder {path.parent} is not writable")
    if output_path.resolve() == reject_path.resolve():
        raise RescoreError(f"--rejects {reject_path} is OUTPUT itself: give another file")


def _check_previous(previous: Path, output_path: Path, reject_path: Path) -> None:
    """Refuse a previous output that this run replaces, removes or writes before reading it
    (OUTPUT, the reject file, and the changes file and report that ``--compare`` writes beside
    OUTPUT), or that is not an output."""
    written = {
        output_path.resolve(): "OUTPUT itself, which this run replaces",
        reject_path.resolve(): "the reject file, which this run replaces or removes",
        changes_file(output_path).resolve(): "the changes file, which the comparison writes",
        report_file(output_path).resolve(): "the report, which the comparison writes",
    }
    what = written.get(previous.resolve())
    if what is not None:
        raise RescoreError(f"--compare {previous} is {what}: compare with a copy")
    if previous.is_dir():
        raise RescoreError(
            f"--compare {previous} is a folder, not a file: give the OUTPUT file of the earlier run"
        )
    if not previous.exists():
        raise RescoreError(f"--compare {previous} does not exist")
    if not previous.is_file():
        # read twice (checked here, compared at the end), which a pipe cannot be
        raise RescoreError(
            f"--compare {previous} is {special_kind(previous)}, not a file: give the OUTPUT "
            "file of the earlier run"
        )
    try:
        next(read_records(previous), None)
    except (RecordsError, OSError) as exc:
        raise RescoreError(f"--compare {previous}: {exc}") from exc
