"""``qinglang rescore --from-db``: the posts the service stored (the post of every persisted
record, table ``stored_posts``) of a period, re-scored like a file.

The period's posts, as stored when the export began (one snapshot), are exported in time order
(``created_at``, or when they were stored: the order the near-duplicate window needs) to a
JSONL file beside OUTPUT, which the run then scores;
a killed run keeps the file, so the same command continues on the same posts (a run of another
period on that OUTPUT is refused meanwhile). When the run completes, the run (period, model and
policy versions, posts) is recorded in ``rescore_runs`` and the file removed.
"""

from __future__ import annotations

import glob
import json
import os
from dataclasses import replace
from pathlib import Path

from service.batch.checkpoint import MANIFEST, WorkFolder
from service.record import unix_seconds
from service.settings import Settings
from service.storage import open_migrated, open_repository, shown_url
from service.storage.repository import RescoreRun
from service.storage.tables import StoredPost


class PeriodError(ValueError):
    """A period that cannot be exported: a --since or --until that is not a time, a period
    without time in it, or an OUTPUT that a run of another period still needs."""


def moment(text: str) -> float:
    """Unix seconds, or ISO 8601 with a zone (:func:`service.record.unix_seconds`): nan or an
    infinity would give a period that holds no posts (or every one) and is still recorded."""
    try:
        return unix_seconds(text)
    except ValueError as exc:
        raise PeriodError(str(exc)) from None


def described(settings: Settings, since: str | None, until: str | None) -> str:
    """What a run of the period ``since``..``until`` (as given) reads, in words, for its summary:
    the export it scores is a hidden file that is gone once the run is recorded."""
    given = [f"{name} {when}" for name, when in (("since", since), ("until", until)) if when]
    table = ", ".join([f"table {StoredPost.__tablename__}", *given])
    return f"the stored posts of {shown_url(settings.database)} ({table})"


def where(settings: Settings) -> str:
    """Where the stored posts are, for the lines that name one of them by its id (the export's
    lines are of a hidden file): the database, its password masked, and the table."""
    return f"{shown_url(settings.database)}, table {StoredPost.__tablename__}"


def export_path(output: Path, since: float | None, until: float | None) -> Path:
    """The export of the period for ``output``: named for the period, so that a killed run is
    continued on its own posts and a run of another period never reads them."""
    first = "start" if since is None else repr(since)
    period = f"{first}-{'now' if until is None else repr(until)}"
    return output.with_name(f".{output.name}.from-db.{period}.jsonl")


def export(
    settings: Settings, since: float | None, until: float | None, output: Path
) -> tuple[Path, str]:
    """The period's stored posts as JSONL beside ``output`` (kept from a killed run of the same
    period; one of another period, or one left half written, is removed, unless its run left a
    checkpoint, which its command can only continue on the posts it exported: then the run is
    refused), and a warning to say (empty: none). The caller holds OUTPUT
    (:meth:`WorkFolder.held`): a running run of another period reads the export this would
    remove, and one started meanwhile must not remove this one."""
    if since is not None and until is not None and since >= until:
        raise PeriodError(
            f"--since {since!r} is not before --until {until!r} (unix seconds): the period is empty"
        )
    path = export_path(output, since, until)
    if path.exists():
        return path, ""
    work, warning = WorkFolder(output), ""
    if (work.path / MANIFEST).exists():
        if not _reads(work, path):
            raise PeriodError(
                f"{work.path} holds the checkpoint of a run of another period or input; "
                "rerun that command to finish it, or delete the folder to start over"
            )
        # the export goes once its run is recorded (:func:`finish`), the folder after it: a
        # stop between the two (or the export deleted) left a checkpoint of posts that are
        # gone, which no run can continue on, and which refused every later run of the period
        work.remove()
        warning = (
            f"{work.path} holds the checkpoint of a run of this period whose export is gone "
            "(the run was recorded, and stopped before it removed the folder; or the export "
            "was deleted): it cannot be continued, so it is removed and the stored posts are "
            "exported and scored anew"
        )
    # with the half-written export (its ``.tmp``) of a run killed while exporting, which no
    # run of another period would otherwise ever remove
    for stale in output.parent.glob(f".{glob.escape(output.name)}.from-db.*"):
        stale.unlink()
    _write(settings, since, until, path)
    return path, warning


def _reads(work: WorkFolder, path: Path) -> bool:
    """Whether the checkpoint in ``work`` is of a run that read the export ``path`` (the input
    files its fingerprint names)."""
    try:
        inputs = json.loads((work.path / MANIFEST).read_text())["fingerprint"]["inputs"]
        return [Path(name).resolve() for name, *_ in inputs] == [path.resolve()]
    except (OSError, ValueError, KeyError, TypeError):
        # a manifest that cannot be read is kept, and the run refused as before
        return False


def _write(settings: Settings, since: float | None, until: float | None, path: Path) -> None:
    """Write the period's stored posts to ``path`` (beside, then renamed: whole or absent)."""
    repository = open_migrated(settings.database, settings.db_timeout_s)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with tmp.open("w", encoding="utf-8") as file:
            for post in repository.stored_posts(since, until):
                data = post.model_dump(exclude_defaults=True)
                file.write(json.dumps(data, ensure_ascii=False) + "\n")
            file.flush()
            os.fsync(file.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        repository.close()
    tmp.replace(path)


def finish(settings: Settings, run: RescoreRun, output: Path) -> None:
    """Record the finished run, with ``output`` resolved (given relative, it would name another
    file, or none, to whoever reads the record from another folder), and remove its export."""
    repository = open_repository(settings.database, settings.db_timeout_s)
    try:
        repository.add_rescore_run(replace(run, output=str(output.resolve())))
    finally:
        repository.close()
    export_path(output, run.since, run.until).unlink(missing_ok=True)
