"""A run's work folder beside its output: committed parts and the manifest that counts them.

Records and rejects go to a part file; every few thousand posts the part is closed, fsynced and
renamed into place, and only then is the manifest (tasks done, parts, tallies) replaced, itself
written beside and renamed. Whenever the process dies, the manifest names only whole parts,
and a part written after it is written again by the next run. At the end the parts are joined
into OUTPUT and the folder is removed (by the command, once it has done what else it does with
OUTPUT: its comparison, enqueue and run record, which the same command does again, should they
fail). The manifest then names the OUTPUT and reject file the parts were joined into, so that
the same command leaves them as they are, where it would copy every part again, and joins again
only where they changed since. The manifest carries the run's fingerprint (input files,
sizes, times, chunk size, batch size, model and policy), so that a different run never continues
it.
"""

from __future__ import annotations

import fcntl
import gzip
import json
import os
import shutil
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import pyarrow.parquet as pq

from service.batch.records import SCHEMA, RecordWriter, is_gzip, is_parquet

MANIFEST = "manifest.json"


class CheckpointError(Exception):
    """The work folder belongs to another run, or cannot be read."""


class JoinError(Exception):
    """The parts, all committed, could not be joined into OUTPUT (a full disk)."""


@dataclass
class State:
    """How far the run got: whole tasks, whole parts, and the tallies of what they held."""

    fingerprint: dict[str, Any]
    tasks_done: int = 0
    parts: int = 0
    tallies: dict[str, Any] = field(default_factory=dict)
    joined: list[Any] | None = None
    """What the parts were joined into (:func:`_joined`), once they were; None before."""


class WorkFolder:
    def __init__(self, output: Path) -> None:
        self.output = output
        self.path = output.with_name(f".{output.name}.rescore")
        self.parquet = is_parquet(output)

    def part(self, k: int) -> Path:
        return self.path / f"part-{k:06d}{'.parquet' if self.parquet else '.jsonl'}"

    def rejects(self, k: int) -> Path:
        return self.path / f"rejects-{k:06d}.jsonl"

    def ordered_state(self, parts: int) -> Path:
        """The stateful stage's state as of ``parts`` committed parts."""
        return self.path / f"ordered-{parts:06d}.pickle"

    def save_ordered_state(self, parts: int, data: bytes) -> None:
        """Write the stateful stage's state as of ``parts`` committed parts (beside, then
        renamed: a killed run leaves the last whole one)."""
        final = self.ordered_state(parts)
        tmp = final.with_name("." + final.name)
        tmp.write_bytes(data)
        tmp.replace(final)

    def drop_ordered_states(self, parts: int) -> None:
        """Remove the states older than the committed one."""
        for old in self.path.glob("ordered-*.pickle"):
            if old != self.ordered_state(parts):
                old.unlink()

    @contextmanager
    def held(self, reject_path: Path) -> Iterator[None]:
        """This run's hold on OUTPUT and on its reject file: another run that writes either is
        refused meanwhile (its message names this one's pid), as both would write the one
        checkpoint folder, or replace or remove the reject file under each other (``out.jsonl``
        and ``out.parquet`` keep their rejects in one ``out.rejects.jsonl``). Not reentrant: a
        command that holds OUTPUT around more than the run (its export and comparison) tells the
        run so."""
        with ExitStack() as hold:
            for path in (self.output, reject_path):
                hold.enter_context(_held(path))
            yield

    def resume(self, fingerprint: dict[str, Any], names: Mapping[str, str]) -> State:
        """The committed state of an earlier run with this fingerprint, or a fresh one; ``names``
        says what each part of the fingerprint is to the user (an option, a setting), so that a
        refusal names what differs."""
        manifest = self.path / MANIFEST
        if not manifest.exists():
            self.path.mkdir(exist_ok=True)
            return State(fingerprint)
        try:
            saved = json.loads(manifest.read_text())
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"cannot read the checkpoint {manifest}: {exc}") from exc
        missing = [names.get(key, key) for key in fingerprint if key not in saved["fingerprint"]]
        if missing:
            # its fingerprint cannot be matched by this release, whatever the command given
            raise CheckpointError(
                f"{self.path} holds the checkpoint of a run by an earlier release of qinglang,"
                f" which did not record {', '.join(missing)}: finish it with that release, or"
                " delete the folder to start over"
            )
        if saved["fingerprint"] != fingerprint:
            differ = _differences(saved["fingerprint"], fingerprint, names)
            raise CheckpointError(
                f"{self.path} holds the checkpoint of a run with other arguments, input files, "
                f"model or policy ({differ}); rerun that command to finish it, or delete the "
                "folder to start over"
            )
        return State(
            fingerprint,
            saved["tasks_done"],
            saved["parts"],
            saved["tallies"],
            # absent from a manifest of a release that did not keep it: joined again
            saved.get("joined"),
        )

    def commit(self, state: State) -> None:
        """Record ``state`` (whose parts are closed and in place) as the point to resume from."""
        manifest = self.path / MANIFEST
        tmp = self.path / f".{MANIFEST}.tmp"
        data = {
            "fingerprint": state.fingerprint,
            "tasks_done": state.tasks_done,
            "parts": state.parts,
            "tallies": state.tallies,
            "joined": state.joined,
        }
        with tmp.open("w", encoding="utf-8") as file:
            json.dump(data, file)
            file.flush()
            os.fsync(file.fileno())
        tmp.replace(manifest)

    def open_part(self, k: int) -> tuple[RecordWriter, Path]:
        """Writers for part ``k``'s records (renamed into place by :meth:`close_part`)."""
        for stale in [*self.path.glob(".part-*"), *self.path.glob(".rejects-*")]:
            stale.unlink()
        # renamed into place by a run stopped before its manifest named part k: this part may
        # end at another task and hold no rejects, and the join would take those again
        self.rejects(k).unlink(missing_ok=True)
        final = self.part(k)
        return RecordWriter(final.with_name("." + final.name), parquet=self.parquet), final

    def finish(self, state: State, reject_path: Path, *, keep: bool = False) -> None:
        """Join the parts into OUTPUT and the reject parts into ``reject_path`` (removed when
        there are none), then remove the folder unless ``keep`` (:meth:`remove`), else record
        the join in the manifest: the same command run again finds OUTPUT and ``reject_path``
        joined already, unless they changed since, and copies no part again.
        :class:`JoinError` when the join fails, which leaves the folder as it was."""
        if state.joined is None or state.joined != _joined(self.output, reject_path):
            self._join_parts(state, reject_path)
            if keep:
                state.joined = _joined(self.output, reject_path)
                self.commit(state)
        if not keep:
            self.remove()

    def _join_parts(self, state: State, reject_path: Path) -> None:
        parts = [self.part(k) for k in range(state.parts)]
        rejects = [self.rejects(k) for k in range(state.parts) if self.rejects(k).exists()]
        tmp = self.output.with_name(f".{self.output.name}.joining")
        with self._joining(parts, self.output, tmp):
            tmp.unlink(missing_ok=True)
            if self.parquet:
                writer = RecordWriter(tmp, parquet=True)
                for part in parts:
                    writer.write_table(pq.read_table(part, schema=SCHEMA))
                writer.close()
            else:
                _join(parts, tmp, zipped=is_gzip(self.output))
        if rejects:
            joined = reject_path.with_name(f".{reject_path.name}.joining")
            try:
                with self._joining(rejects, reject_path, joined):
                    _join(rejects, joined)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            joined.replace(reject_path)
        else:
            reject_path.unlink(missing_ok=True)
        tmp.replace(self.output)

    def remove(self) -> None:
        """Remove the folder: its run is joined into OUTPUT and done with."""
        # the manifest first: a stop part way through leaves files in no set order, and a
        # manifest naming a part already gone refused every later run
        (self.path / MANIFEST).unlink(missing_ok=True)
        shutil.rmtree(self.path)

    @contextmanager
    def _joining(self, parts: list[Path], target: Path, tmp: Path) -> Iterator[None]:
        """``parts`` being joined into ``tmp``, renamed over ``target`` once whole: ``tmp``
        removed if the join fails, and a write error a :class:`JoinError` naming ``target``'s
        folder and the room it needs there (the reject file may be in another folder than
        OUTPUT, with parts of another size: before, a full disk there named OUTPUT's folder)."""
        try:
            yield
        except BaseException as exc:
            tmp.unlink(missing_ok=True)
            if not isinstance(exc, OSError):
                raise
            # the joined copy is written beside its target while the parts stay
            size = sum(part.stat().st_size for part in parts)
            raise JoinError(
                f"cannot join the parts in {self.path} into {target}: {exc}; the folder "
                f"{target.parent} needs about {size / 1e6:,.1f} MB free for the joined copy "
                "(the size of the parts); every post is scored: make room and run the same "
                "command again to join them"
            ) from exc


@contextmanager
def _held(path: Path) -> Iterator[None]:
    """``path`` held by this run: the lock file ``.NAME.rescore.lock`` beside it locked."""
    lock = path.with_name(f".{path.name}.rescore.lock")
    with _locked(lock, path):
        try:
            yield
        finally:
            # before the file closes: a run waiting on it then finds it gone and starts over
            lock.unlink(missing_ok=True)


def _locked(lock: Path, output: Path) -> TextIO:
    """``lock`` opened, flocked and holding this process's pid; :class:`CheckpointError` naming
    the holder's pid when another run holds it.

    A run that opened the file just before its holder removed it would lock the removed file,
    while a run after it locks a new one at the path, and both would write OUTPUT: the lock is
    kept only when the file locked is still the one at the path, and taken again otherwise."""
    while True:
        try:
            file = lock.open("a+", encoding="utf-8")
        except OSError as exc:
            # named for OUTPUT, the file the user gave: the lock file beside it is the run's own
            raise CheckpointError(
                f"cannot write {output}: {exc.strerror} (its lock file {lock})"
            ) from None
        try:
            try:
                fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                file.seek(0)
                # empty for the moment between the holder's lock and its write
                holder = file.read().strip()
                who = f"another run (pid {holder})" if holder else "another run"
                raise CheckpointError(
                    f"{who} is writing {output} (it holds {lock}): wait for it to end or stop it"
                ) from None
            if _is_at(file, lock):
                file.truncate(0)
                file.write(f"{os.getpid()}\n")
                file.flush()
                return file
        except BaseException:
            file.close()
            raise
        # its holder removed it between this open and this lock: a run may hold the new one
        file.close()


def _is_at(file: TextIO, path: Path) -> bool:
    """Whether ``file`` (open) is the file at ``path`` now."""
    try:
        there = path.stat()
    except FileNotFoundError:
        return False
    here = os.fstat(file.fileno())
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


def _joined(output: Path, reject_path: Path) -> list[Any]:
    """Which files OUTPUT and ``reject_path`` are now (device, inode, size, modification time;
    None for a file that is not there): another file, or the file written since, differs."""
    return [_identity(output), _identity(reject_path)]


def _identity(path: Path) -> list[int] | None:
    try:
        found = path.stat()
    except FileNotFoundError:
        return None
    return [found.st_dev, found.st_ino, found.st_size, found.st_mtime_ns]


def _differences(saved: dict[str, Any], given: dict[str, Any], names: Mapping[str, str]) -> str:
    """What differs between two fingerprints, by ``names``: the values where they are short."""
    said = []
    for key in [*given, *(key for key in saved if key not in given)]:
        there, here = saved.get(key), given.get(key)
        if there == here:
            continue
        name = names.get(key, key)
        # a list (the input files, the bank) would fill the screen
        short = not isinstance(there, list) and not isinstance(here, list)
        said.append(f"{name}: {there!r} there, {here!r} here" if short else f"{name} differ")
    return "; ".join(said)


def _join(parts: list[Path], target: Path, *, zipped: bool = False) -> None:
    """Concatenate ``parts`` into ``target``, through gzip when ``zipped``: the parts stay
    plain, so that a run resumes and joins them alike whatever OUTPUT's name."""
    with target.open("wb") as out:
        with gzip.GzipFile(fileobj=out, mode="wb") if zipped else nullcontext(out) as sink:
            for part in parts:
                with part.open("rb") as source:
                    shutil.copyfileobj(source, sink, 1 << 20)
        out.flush()
        os.fsync(out.fileno())
