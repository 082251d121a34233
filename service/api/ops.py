"""``/healthz``, ``/readyz`` and ``/metrics``: for the platform's probes and Prometheus."""

from __future__ import annotations

from fastapi import APIRouter, Response
from starlette.concurrency import run_in_threadpool

from service.api.schemas import Health, Readiness
from service.api.state import Found
from service.metrics import CONTENT_TYPE
from service.scoring import FULL, UNWRITABLE
from service.spool import REJECTED
from service.storage import StorageError

router = APIRouter(tags=["operations"])

IN_THE_LOG = "(the error is in the server's log)"
SPOOL_MARGIN = 1 << 20
"""Below this many free bytes the spool is reported full: about 1,100 records of ordinary posts
(a spooled line of 926 bytes, the median over 500 Weibo reposts), 8 of the longest (10,000
characters: 121 KB, the text escaped as JSON)."""


# HEAD too (RFC 9110 asks it of every GET): uptime monitors that probe with HEAD by default
# would otherwise find the process down on a 405
@router.head("/healthz", include_in_schema=False)
@router.get("/healthz")
async def healthz() -> Health:
    """The process is alive and serving (no dependency is checked)."""
    return Health(status="ok")


@router.head("/readyz", include_in_schema=False)
@router.get("/readyz")
async def readyz(found: Found) -> Readiness:
    """The model is loaded, and storage and the shared near-duplicate index (when configured)
    answer; otherwise ``degraded`` with the reasons.

    Answers 200 even when degraded: scoring still works then (flagged records are spooled), and
    taking every replica out of the load balancer when the database is down would stop the
    publish path, which is what degraded mode exists to avoid.
    """
    scoring = found.scoring
    problems = []
    # the drivers' own words (hosts, users, tables) are the operator's, not an unauthenticated
    # caller's: each outage's is logged where it begins (StorageHealth, NearDuplicates)
    try:
        # through the gate: a probe left waiting on a database that hangs would fail, and take
        # the replica out of the load balancer (above); a check that migrates nothing, as a
        # migration would outlast the deadline and have storage marked down while it ran on
        await scoring.gate.call(scoring.repository.check)
    except StorageError:
        problems.append(f"storage unreachable {IN_THE_LOG}")
    if await run_in_threadpool(found.neardup.check):
        problems.append(f"shared near-duplicate index unavailable {IN_THE_LOG}")
    if not await run_in_threadpool(scoring.spool.writable):
        problems.append(
            f"{UNWRITABLE} (its path is in the server's log): while storage is down, a post "
            "whose record the policy keeps gets 503"
        )
    elif (room := await run_in_threadpool(scoring.spool.room)) < SPOOL_MARGIN:
        problems.append(
            f"{FULL} ({room} bytes left): while storage is down, a post whose record the "
            "policy keeps gets 503"
        )
    spooled = await run_in_threadpool(scoring.spool.pending)
    if spooled:
        problems.append(
            f"{spooled} flagged records and review items are waiting in the spool for storage"
        )
    rejected = await run_in_threadpool(scoring.spool.rejected)
    if rejected:
        problems.append(
            f"{rejected} spooled records were refused by storage and set aside in the spool's "
            f"{REJECTED} folder (its path is in the server's log): read their errors, mend, "
            "move the files back"
        )
    return Readiness(
        status="degraded" if problems else "ready",
        model_version=scoring.model_version,
        policy_version=scoring.policy.version,
        problems=problems,
        spooled=spooled,
        rejected=rejected,
    )


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE.split(";")[0]: {"schema": {"type": "string"}}}}},
)
async def metrics(found: Found) -> Response:
    """Prometheus text format; under ``qinglang serve``, of every server process, whichever
    answers (service/metrics.py)."""
    text = await run_in_threadpool(found.scoring.metrics.render)
    return Response(text, media_type=CONTENT_TYPE)
