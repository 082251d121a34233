"""The app factory: ``create_app()`` for uvicorn (``--factory``), or with settings in tests."""

from __future__ import annotations

import asyncio
import gc
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, get_args

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from service import subject_key
from service.api import engagement, neardup, ops, protected, review, score
from service.api.edge import Edge
from service.api.routes import KEY_HEADER, REFUSALS, JsonRoute
from service.api.state import Services
from service.batching import OverloadedError
from service.classify import tokenize_on_calling_thread
from service.console import mount as mount_console
from service.gate import REVIEW_THREADS, StorageGate, deadlined
from service.metrics import Metrics
from service.neardup import NearDuplicates
from service.neardup.store import StoreUnavailableError
from service.pipeline import Pipeline
from service.record import Post
from service.review.appeals import AppealClosedError
from service.scoring import ScoringService
from service.security import AuthError, Guard, VerifiedKeys
from service.settings import Settings, get_settings
from service.spool import Spool
from service.storage import Repository, StorageError, StorageUnansweredError, open_repository
from service.storage.console_sql import ConsoleReads
from service.storage.database import head_revision
from service.storage.repository import IdempotencyMismatchError, Role

log = logging.getLogger(__name__)

NEARDUP_SNAPSHOT = "neardup.pickle"
"""This process's near-duplicate window, kept across restarts (the embedded default)."""


def load_pipeline(settings: Settings) -> Pipeline:
    """The pipeline as a server process runs it (``serve_threads``), its model called once: the
    first call allocates the model's buffers (let it be ours, not the first caller's), and a
    model that cannot be loaded or run fails here, before anything answers."""
    tokenize_on_calling_thread()  # before the warm-up below first encodes
    pipeline = Pipeline.load(
        settings.model_copy(update={"intra_op_threads": settings.serve_threads})
    )
    # the stateless stage only, so that no post of that id reaches the near-duplicate window
    pipeline.prepare([Post(id="warm-up", text="预热模型")])
    return pipeline


def create_app(settings: Settings | None = None, pipeline: Pipeline | None = None) -> FastAPI:
    """Load the model (:func:`load_pipeline`, unless ``pipeline`` is given: tests share one,
    ``qinglang serve`` passes the one it loaded) and open storage (without waiting for it: it
    may be down) and build the app. The schema must be migrated already (``qinglang serve``
    does it before starting)."""
    settings = settings or get_settings()
    pipeline = pipeline or load_pipeline(settings)
    repository = open_repository(
        settings.database,
        settings.db_timeout_s,
        pipeline.policy.review,
        subject_key=subject_key.load(settings),
    )
    # the schema checks (/readyz's, under the storage deadline, and the maintenance's) compare
    # the database's migration with this release's newest, read from its migration scripts:
    # read now, before anything answers, not by the first check, which on a loaded host spent
    # seconds loading them, beside the maintenance's loading them too, and went past the deadline
    # ("storage unreachable" at start-up, storage skipped by the publish path meanwhile)
    head_revision()
    snapshot = settings.state_dir / NEARDUP_SNAPSHOT
    pipeline.neardup.restore(snapshot)

    metrics = Metrics(pipeline.model_version, pipeline.policy_version)
    gate = StorageGate(settings.storage_deadline_s, settings.storage_retry_s, metrics.storage)
    scoring = ScoringService(
        pipeline,
        repository,
        Spool(settings.spool_dir),
        gate,
        window_s=settings.batch_window_ms / 1000,
        max_posts=settings.batch_max_posts,
        max_queue=settings.max_queue_posts,
        workers=settings.inference_workers,
        cache_size=settings.cache_size,
        evidence_lease_s=settings.evidence_lease_s,
        evidence_deadline_s=settings.evidence_deadline_s,
        evidence_attempts=settings.evidence_attempts,
        idempotency_keep_s=settings.idempotency_keep_hours * 3600,
        metrics=metrics,
    )
    # the review API's, the console's and the bank refresh's storage: the gate's deadline and
    # health, threads of their own, so that they never hold the publish path's
    reviews = gate.lane(REVIEW_THREADS, "storage-review")
    stored = deadlined(repository, reviews)
    guard = Guard(
        # a key never seen before gets the guard's 503 within the deadline while storage hangs
        deadlined(repository, gate),
        rate=settings.rate_limit_per_s,
        burst=settings.rate_limit_burst,
        cache_s=settings.key_cache_s,
        known=VerifiedKeys(settings.verified_keys_file),
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # writes out what an earlier process left in the spool, then keeps watching storage
        maintainer = asyncio.create_task(scoring.maintain(settings.storage_retry_s))
        bank = asyncio.create_task(sync_bank(pipeline.neardup, repository, reviews, settings))
        keeper = asyncio.create_task(keep_snapshot(pipeline.neardup, snapshot, settings))
        # what start-up built (model, app, restored window) lives as long as the process: out
        # of the collector's way, a full collection walks only what serving adds
        gc.collect()
        gc.freeze()
        log.info(
            "serving",
            extra={"model_version": pipeline.model_version, "policy": pipeline.policy_version},
        )
        try:
            yield
        finally:
            maintainer.cancel()
            bank.cancel()
            keeper.cancel()
            await asyncio.gather(maintainer, bank, keeper, return_exceptions=True)
            pipeline.neardup.snapshot(snapshot)
            # one allowance for every lane's calls under way, as they end side by side
            until = time.monotonic() + settings.storage_deadline_s
            await scoring.close(until)
            reviews.close(until)
            repository.close()

    app = FastAPI(
        title="qinglang",
        summary="Content-risk scoring for Chinese public-account platforms",
        version=pipeline.model_version,
        lifespan=lifespan,
        # a path a trailing slash keeps from a route is a 404 that names the route's
        # (routes.slash_twin), not a redirect
        redirect_slashes=False,
    )
    app.state.services = Services(
        settings=settings,
        scoring=scoring,
        guard=guard,
        neardup=pipeline.neardup,
        review=stored,
        repository=stored,
    )
    app.include_router(score.router)
    app.include_router(neardup.router)
    app.include_router(review.router)
    app.include_router(protected.router)
    app.include_router(engagement.router)
    app.include_router(ops.router)
    mount_console(app, settings, deadlined(ConsoleReads(repository.engine), reviews))
    for error, status in REFUSALS.items():
        app.add_exception_handler(error, _status(status))
    app.add_exception_handler(AuthError, _auth_error)  # type: ignore[arg-type]
    app.add_exception_handler(OverloadedError, _overloaded)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _invalid)  # type: ignore[arg-type]
    app.add_exception_handler(IdempotencyMismatchError, _key_reused)
    app.add_exception_handler(StoreUnavailableError, _index_unavailable)
    app.add_middleware(
        Edge,
        metrics=scoring.metrics,
        max_body_bytes=settings.max_body_bytes,
        body_read_timeout_s=settings.body_read_timeout_s,
    )
    app.openapi = lambda: _with_limits(app, settings)  # type: ignore[method-assign]
    return app


KEYED_ANSWERS = {
    "401": "missing, malformed or unknown API key",
    "429": "the API key's rate limit; see Retry-After",
    "503": "the API key cannot be verified (storage down, or no answer within "
    "storage_deadline_s); see Retry-After",
}
"""What the guard may answer on any route that takes a key, before the route's own code runs;
and 403 where the route's roles leave one out (:func:`_shared`)."""
BODY_ANSWERS = {
    "408": "the body did not arrive within body_read_timeout_s; the connection is closed",
    "413": "the body is over max_body_bytes",
}
"""What the edge (service/api/edge.py) may answer on any route that reads a body."""


def _with_limits(app: FastAPI, settings: Settings) -> dict[str, Any]:
    """The OpenAPI document with the limits this server was configured with, and on each
    operation what every route of its kind may answer (:func:`_shared`) with what the route's
    own code may (:func:`~service.api.routes.answers`), both reasons where they share a
    status."""
    if app.openapi_schema is None:
        schema = FastAPI.openapi(app)
        posts = schema["components"]["schemas"]["BatchRequest"]["properties"]["posts"]
        posts["maxItems"] = settings.max_batch_posts
        problem = {"application/json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
        for operation in (op for path in schema["paths"].values() for op in path.values()):
            for status, description in _shared(operation).items():
                told = operation["responses"].setdefault(
                    status, {"description": "", "content": problem}
                )
                told["description"] = "; or ".join(filter(None, [told["description"], description]))
    return app.openapi_schema or {}


def _shared(operation: dict[str, Any]) -> dict[str, str]:
    """What the operation may answer before its route's code runs: the guard's where it takes
    a key, with 403 where its roles (its security requirement's, service/api/auth.py) are not
    every role, and the edge's where it reads a body."""
    shared: dict[str, str] = {}
    if "security" in operation:
        shared.update(KEYED_ANSWERS)
        allowed = [
            role
            for role in get_args(Role)
            if all(
                role in roles for required in operation["security"] for roles in required.values()
            )
        ]
        if len(allowed) < len(get_args(Role)):
            shared["403"] = f"the API key's role is not {' or '.join(allowed)}"
    if "requestBody" in operation:
        shared.update(BODY_ANSWERS)
    return shared


async def keep_snapshot(near: NearDuplicates, path: Path, settings: Settings) -> None:
    """Write the near-duplicate window every ``neardup_snapshot_s`` (and at shutdown), so that
    a crash loses at most that much of it; until cancelled."""
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(settings.neardup_snapshot_s)
        try:
            await loop.run_in_executor(None, near.snapshot, path)
        except OSError as exc:
            log.warning("cannot write the near-duplicate snapshot", extra={"problem": str(exc)})


async def sync_bank(
    near: NearDuplicates, repository: Repository, gate: StorageGate, settings: Settings
) -> None:
    """Keep this process's copy of the confirmed-rumour bank equal to the stored one (another
    process may add or delete entries), until cancelled; each read through ``gate``, so that
    one left waiting on a database that stopped answering holds neither the refresh nor the
    server's exit (the event loop's own threads are joined as it closes)."""
    while True:
        try:
            stale = near.sync_bank(await gate.call(repository.rumors))
            if stale:
                log.warning("banked rumours need adding again", extra={"rumors": stale})
        except StorageError as exc:
            log.warning("cannot load the rumour bank", extra={"problem": str(exc)})
        await asyncio.sleep(settings.neardup_bank_refresh_s)


def _status(status: int) -> Callable[[Request, Exception], Awaitable[JSONResponse]]:
    async def answer(request: Request, exc: Exception) -> JSONResponse:
        body: dict[str, Any] = {"detail": str(exc)}
        if isinstance(exc, AppealClosedError):
            body["deadline"] = exc.deadline.isoformat()
        headers = None
        if isinstance(exc, StorageError):
            # the database's own words (tables, constraints, hosts) are the operator's, not
            # the caller's: they go to the log, under the request id the answer carries
            log.warning("storage failed a request", extra={"problem": str(exc)})
            body["detail"] = STORAGE_DOWN
            if isinstance(exc, StorageUnansweredError) and request.method not in READS:
                route = request.scope.get("route")
                keyed = isinstance(route, JsonRoute) and route.takes_key
                body["detail"] = WRITE_UNANSWERED if keyed else UNKEYED_WRITE_UNANSWERED
            headers = {"Retry-After": "1"}
        return JSONResponse(body, status, headers=headers)

    return answer


STORAGE_DOWN = "storage is unavailable; try again"
WRITE_UNANSWERED = (
    "storage did not answer in time, and the change may still be made: retry with the same "
    "Idempotency-Key to have it made once"
)
"""A write given up at ``storage_deadline_s`` goes on in its thread, and may land after the
answer; one whose connection was lost as the database committed it may have landed before
(:class:`~service.storage.StorageUnansweredError`, either). With the key it is made once whichever
try lands: a write and its key's record are one transaction, and the key is unique (a retry that
meets the first still in flight waits for it, or is answered 503 again)."""
UNKEYED_WRITE_UNANSWERED = (
    "storage did not answer in time, and the change may still be made: this request takes no "
    "Idempotency-Key, so read back whether it was made before sending it again"
)
"""The same for a write whose route takes no key (``JsonRoute.takes_key``: a claim), which a
retry would make again or be refused as made already."""
READS = frozenset({"GET", "HEAD", "OPTIONS"})


async def _index_unavailable(_: Request, exc: Exception) -> JSONResponse:
    """503 for a read of the shared near-duplicate index (``/v1/clusters``) while Redis does
    not answer: the publish path falls back to the local window, a read of the shared one
    cannot. Redis's words (hosts, keys) go to the log, as storage's do."""
    log.warning("the near-duplicate index failed a request", extra={"problem": str(exc)})
    return JSONResponse(
        {"detail": "the near-duplicate index is unavailable; try again"},
        503,
        headers={"Retry-After": "1"},
    )


async def _key_reused(_: Request, exc: Exception) -> JSONResponse:
    """422 in the shape of any other invalid request, pointing at the header."""
    where = ["header", KEY_HEADER]
    return JSONResponse({"detail": [{"loc": where, "msg": str(exc), "type": "key_reused"}]}, 422)


async def _auth_error(_: Request, exc: AuthError) -> JSONResponse:
    headers = {}
    if exc.status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    if exc.retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
    return JSONResponse({"detail": exc.message}, exc.status, headers=headers)


async def _overloaded(_: Request, exc: OverloadedError) -> JSONResponse:
    return JSONResponse(
        {"detail": f"overloaded: {exc}; try again shortly"}, 503, headers={"Retry-After": "1"}
    )


async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
    """422 with each error's field path, without echoing the input: it may be the post's text,
    or a lone surrogate that cannot be encoded in the response."""
    detail: list[dict[str, Any]] = []
    for error in exc.errors():
        msg = error["msg"]
        if error["type"] == "json_invalid" and (cause := error.get("ctx", {}).get("error")):
            msg = f"{msg}: {cause}"
        detail.append({"loc": list(error["loc"]), "msg": msg, "type": error["type"]})
    return JSONResponse({"detail": detail}, 422)
