"""``qinglang rescore --from-db``: the posts the service stored (the post of every persisted
record, table ``stored_posts``) of a period, re-scored like a file.

The period's posts are exported in time order (``created_at``, or when they were stored: the
order the near-duplicate window needs) to a JSONL file beside OUTPUT, which the run then scores;
a killed run keeps the file, so the same command continues on the same posts. When the run
completes, the run (period, model and policy versions, posts) is recorded in ``rescore_runs``
and the file removed.
"""

from __future__ import annotations

import glob
import json
import os
from datetime import datetime
from pathlib import Path

from service.settings import Settings
from service.storage import open_repository, upgrade
from service.storage.repository import RescoreRun


class PeriodError(ValueError):
    """A --since or --until that is not a time."""


def moment(text: str) -> float:
    """Unix seconds, or ISO 8601 with a zone."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise PeriodError(f"{text!r} is neither unix seconds nor ISO 8601") from None
    if when.tzinfo is None:
        raise PeriodError(f"{text!r} has no time zone; give an offset or Z")
    return when.timestamp()


def export_path(output: Path, since: float | None, until: float | None) -> Path:
    """The export of the period for ``output``: named for the period, so that a killed run is
    continued on its own posts and a run of another period never reads them."""
    first = "start" if since is None else repr(since)
    period = f"{first}-{'now' if until is None else repr(until)}"
    return output.with_name(f".{output.name}.from-db.{period}.jsonl")


def export(settings: Settings, since: float | None, until: float | None, output: Path) -> Path:
    """The period's stored posts as JSONL beside ``output`` (kept from a killed run of the same
    period; one of another period is removed)."""
    path = export_path(output, since, until)
    if path.exists():
        return path
    for stale in output.parent.glob(f".{glob.escape(output.name)}.from-db.*.jsonl"):
        stale.unlink()
    upgrade(settings.database, settings.db_timeout_s)
    repository = open_repository(settings.database, settings.db_timeout_s)
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
    return path


def finish(settings: Settings, run: RescoreRun, output: Path) -> None:
    """Record the finished run and remove its export."""
    repository = open_repository(settings.database, settings.db_timeout_s)
    try:
        repository.add_rescore_run(run)
    finally:
        repository.close()
    export_path(output, run.since, run.until).unlink(missing_ok=True)
