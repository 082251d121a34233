"""``--engine ray``: the same segments and the same :func:`~service.batch.segments.run_segment`
as a Ray Data pipeline, on a cluster (``--ray-address``, else Ray's own ``RAY_ADDRESS``) or on a
local Ray started for the run.

The dataset holds the segment descriptions only (a few hundred bytes per task); each actor of the
pool loads the scorer once and reads its segment's tasks (and the tasks of its warm-up) from the
input itself, so the input must sit where every node sees it at the same path (a shared file
system). Each actor runs both stages of its segment, the ordered stage after a warm-up over the
time before it (partitioned by time range: :mod:`service.batch.segments`); results come back to
the driver in segment order (``preserve_order``), a warmed-up segment's with its stateless
results, and the driver checks each boundary (matching a segment again without the model where
it fails), writes and checkpoints them as the local engine's are. An actor that dies mid-segment
is restarted and its segment retried by Ray, up to ``SEGMENT_RETRIES`` times, after which the
run stops (a post that kills every actor that scores it); the driver takes each segment's
result once, in order, so a retried segment cannot be written twice. Ray's lines of no use to
the operator are kept off stderr and stdout meanwhile (:mod:`service.batch.ray_noise`).
"""

from __future__ import annotations

import importlib
import os
import pickle
import signal
import socket
import threading
from collections.abc import Iterator, Sequence
from importlib.metadata import version
from typing import TYPE_CHECKING, Any

import numpy as np

from service.batch.segments import WARM, Segment, SegmentResult, Start, run_segment
from service.batch.work import (
    ModelMismatchError,
    Scorer,
    ScorerError,
    ScorerFactory,
    Span,
    check_model,
    worker_scorer,
)

if TYPE_CHECKING:
    from service.settings import Settings
    from service.storage.repository import StoredRumor

LOCAL_OBJECT_STORE_BYTES = 512 << 20
"""Object store of a Ray started for the run: results stream through it, they do not pile up."""

CONNECT_TIMEOUT_S = 10.0
"""How long a cluster's address may take to accept a connection before the run gives up."""


PACKAGE_FILES = ("model_dir", "policy_file")
"""The settings whose defaults are files of the installed ``service`` package."""

SEGMENT_RETRIES = 2
"""How many times a segment whose actor died is tried again (on an actor Ray restarts) before
the run stops: a lost node or an actor killed once is retried, a post that kills every process
that scores it stops the run."""


class ClusterError(Exception):
    """The Ray cluster of ``--ray-address`` (or ``RAY_ADDRESS``) cannot be reached or joined from
    here: the run does not start."""


class _SegmentScorer:
    """One actor of the pool: one scorer, loaded when the actor starts, of the driver's model
    file (``digest``): an actor on another host loads its own copy, which may differ."""

    def __init__(
        self, load: ScorerFactory, settings: Settings, bank: Sequence[StoredRumor], digest: str
    ) -> None:
        self._scorer = worker_scorer(load, _installed_here(settings), bank)
        self._mismatch: ModelMismatchError | None = None
        try:
            where = f"the Ray actor on host {socket.gethostname()} (pid {os.getpid()})"
            check_model(self._scorer, digest, where)
        except ModelMismatchError as exc:
            # returned by each call, for the driver to raise: Ray hands it an error raised here
            # (or in a call) as the text of the actor's traceback only
            self._mismatch = exc

    def __call__(self, batch: dict[str, np.ndarray[Any, Any]]) -> dict[str, list[bytes]]:
        if self._mismatch is not None:
            return {"result": [pickle.dumps(self._mismatch)] * len(batch["segment"])}
        jobs: list[tuple[Segment, Start]] = [pickle.loads(blob) for blob in batch["segment"]]
        results = []
        for segment, start in jobs:
            try:
                results.append(pickle.dumps(run_segment(segment, self._scorer, start)))
            except ScorerError as exc:
                # returned, as the mismatch is: raised, it reached the driver as a traceback's
                # text (a RayTaskError, which the run did not know to stop on)
                return {"result": [pickle.dumps(exc)] * len(jobs)}
            except Exception as exc:
                # an input this node cannot read (not on a file system every node shares): a
                # stop with the checkpoint kept, as the local engine's, not a traceback
                where = f"the Ray actor on host {socket.gethostname()} (pid {os.getpid()})"
                span = Span(segment.where, None, None)
                error = ScorerError(f"{where} could not score the posts of", span, repr(exc))
                return {"result": [pickle.dumps(error)] * len(jobs)}
        return {"result": results}


class RayEngine:
    def __init__(
        self, load: ScorerFactory, settings: Settings, workers: int, address: str | None
    ) -> None:
        self._load = load
        self._settings = settings
        self.workers = workers
        given = "--ray-address"
        if address is None and os.environ.get("RAY_ADDRESS"):
            # ray.init joins it when given no address, and refuses the local start's num_cpus
            address, given = os.environ["RAY_ADDRESS"], "RAY_ADDRESS"
        self.address = address
        self.name = f"ray, {workers} actors" + (f" on {address}" if address else "")
        if address:
            _reach(address, given)
        self._scorer: Scorer | None = None

    def scorer(self) -> Scorer:
        if self._scorer is None:
            self._scorer = self._load(self._settings)
        return self._scorer

    def segments(
        self, segments: Sequence[Segment], first: bytes | None, bank: Sequence[StoredRumor]
    ) -> Iterator[SegmentResult]:
        """Each segment on an actor: the first from ``first``, the others warmed up."""
        import ray
        import ray.data

        from service.batch.ray_noise import quiet

        with quiet():
            started = not ray.is_initialized()
            if started:
                options: dict[str, Any] = (
                    {"address": self.address}
                    if self.address
                    else {
                        "num_cpus": self.workers,
                        "object_store_memory": LOCAL_OBJECT_STORE_BYTES,
                    }
                )
                _init(options)
            try:
                yield from self._run(segments, first, bank)
            finally:
                if started:
                    ray.shutdown()

    def _run(
        self, segments: Sequence[Segment], first: bytes | None, bank: Sequence[StoredRumor]
    ) -> Iterator[SegmentResult]:
        import ray.data

        if not segments:
            return
        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True
        # the run prints its own progress and summary
        context.enable_progress_bars = False
        # each actor checks that its model file is the one the records will name
        digest = self.scorer().classifier.digest
        jobs = [(seg, first if n == 0 else WARM) for n, seg in enumerate(segments)]
        items = [{"segment": pickle.dumps(job)} for job in jobs]
        dataset = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
            _SegmentScorer,
            fn_constructor_args=(self._load, self._settings, bank, digest),
            batch_size=1,
            # Ray Data restarts a killed actor of the pool and retries its segment, by default
            # for ever: a post that kills every process that scores it hung the run
            compute=ray.data.ActorPoolStrategy(size=self.workers),
            num_cpus=1,
            max_task_retries=SEGMENT_RETRIES,
        )
        try:
            for row in dataset.iter_rows():
                result: SegmentResult | ScorerError = pickle.loads(row["result"])
                if isinstance(result, ScorerError):
                    raise result
                yield result
        except ray.exceptions.RayActorError as exc:
            raise ScorerError(
                f"a Ray actor died {SEGMENT_RETRIES + 1} times on one segment of the posts after "
                "the checkpoint: a post in it kills the process that scores it (a crash in a "
                "native library, the out-of-memory killer), which --engine local finds and "
                f"rejects ({type(exc).__name__})"
            ) from exc


def _installed_here(settings: Settings) -> Settings:
    """The driver's ``settings`` with the files the ``service`` package carries (the model, the
    policy) at this host's install of it, where the driver left them at their defaults: a
    default is a path into the driver's own install (a checkout, a virtual environment), which
    a node with ``qinglang`` installed elsewhere (another environment, another Python) lacks,
    and its actors failed to load the model. A path the driver was given is kept: it names a
    shared file system, as the input does."""
    from service.settings import Settings

    return settings.model_copy(
        update={
            name: Settings.model_fields[name].default
            for name in PACKAGE_FILES
            if name not in settings.model_fields_set
        }
    )


def _init(options: dict[str, Any]) -> None:
    """``ray.init`` with ``options``, keeping this process's SIGTERM handler: Ray's own exits
    with status 15, which would end the run without a word of how to continue it."""
    import ray

    ours = signal.getsignal(signal.SIGTERM)
    ray.init(include_dashboard=False, log_to_driver=False, **options)
    if ours is not None and threading.current_thread() is threading.main_thread():
        # also takes SIGTERM back from the handler Ray's core worker adds beneath
        signal.signal(signal.SIGTERM, ours)


def _reach(address: str, given: str) -> None:
    """Raise :class:`ClusterError` unless something at ``address`` (from ``given``: the option or
    the variable) accepts a connection within ``CONNECT_TIMEOUT_S``: ``ray.init`` (Ray 2.60) has
    no option to bound its wait, and retries an address where nothing answers for some 14 minutes
    (20 tries of about 40 s). ``auto`` is resolved as ``ray.init`` resolves it (``RAY_ADDRESS``,
    the cluster ``ray start`` last recorded in Ray's temp folder, else a raylet running here) and
    the cluster found is reached as a given address is: ``ray.init`` said it found none only after
    the model had loaded, as a stopped run to continue. ``local`` is Ray's to start."""
    if address == "local":
        return
    if address == "auto":
        from ray._private.services import get_ray_address_from_environment

        try:
            found: str = get_ray_address_from_environment(address, None)
        except ConnectionError:
            raise ClusterError(
                f"no running Ray cluster found for {given} auto: start one with "
                "`ray start --head` or give its address"
            ) from None
        if found == "local":  # RAY_ADDRESS=local: Ray starts one
            return
        address, given = found, f"{given} auto"
    host, _, port = address.removeprefix("ray://").rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not host or not port.isdecimal() or not 0 < int(port) < 65536:
        raise ClusterError(f"{given} {address} is not HOST:PORT, auto or local")
    if address.startswith("ray://"):
        try:
            # Ray Client's own check, which ray.init makes only after the model has loaded
            importlib.import_module("grpc")
        except ImportError:
            raise ClusterError(
                f"{given} {address} needs Ray Client, which is not installed: "
                f"pip install 'ray[client]=={version('ray')}'"
            ) from None
    try:
        with socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        # a timeout has no strerror
        reason = exc.strerror or f"no answer within {CONNECT_TIMEOUT_S:.0f} s"
        raise ClusterError(
            f"cannot reach the Ray cluster at {address} ({given}): {reason}"
        ) from exc
