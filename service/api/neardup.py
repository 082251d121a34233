"""Clusters and the confirmed-rumour bank: ``/v1/clusters`` and ``/v1/bank/rumors``.

For trust teams (``reviewer`` and ``admin`` keys; adding and removing bank entries,
:data:`~service.security.BANK_EDITORS` only). Clusters are those of the server process that
answers (the window is per process); the bank is stored and every process holds all of it, and
so are the copies of its entries each process found (deleting an entry deletes them).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Response
from pydantic import BaseModel, Field, ValidationInfo, field_validator, model_validator
from starlette.concurrency import run_in_threadpool

from service.api.auth import require
from service.api.review import IdempotencyKey
from service.api.routes import KEYED_WRITE_DOWN, STORAGE_DOWN, JsonRoute, answers, invalid
from service.api.state import Found
from service.neardup.bank import BankChange, UnmatchableError, bank_rumor, unbank_rumor
from service.neardup.cluster import Cluster
from service.neardup.match import summary
from service.record import MAX_ID_CHARS, ClusterPost, ClusterSummary, check_text
from service.review import views
from service.review.items import ConflictError, NotFoundError
from service.security import BANK_EDITORS, Principal
from service.storage import StorageError, StoredRumor
from service.storage.repository import Idempotency

INDEX_AWAY = "the shared near-duplicate index (Redis) does not answer"
NO_RUMOR = "no confirmed rumour of that id"
READ_RUMOR = answers({NotFoundError: NO_RUMOR, StorageError: STORAGE_DOWN})
"""What a read of one banked rumour may answer of its own."""

router = APIRouter(prefix="/v1", tags=["near-duplicates"], route_class=JsonRoute)
TrustTeam = Annotated[Principal, Depends(require("reviewer", "admin"))]
BankEditor = Annotated[Principal, Depends(require(*BANK_EDITORS))]


class ClusterDetail(ClusterSummary):
    batch_at: float | None = Field(description="when the cluster became a coordinated batch")
    batch_accounts: list[str] = Field(description="the accounts that made the batch")
    members: list[ClusterPost] = Field(description="its first posts, in arrival order")
    members_not_listed: int


class RumorIn(BaseModel):
    """A confirmed rumour, by its text or by the id of a post in the live window."""

    text: str | None = Field(default=None, min_length=1, max_length=10_000)
    post_id: str | None = Field(default=None, min_length=1, max_length=MAX_ID_CHARS)
    notice: str = Field(min_length=1, max_length=10_000, description="the debunk notice")

    @field_validator("text", "post_id", "notice", mode="before")
    @classmethod
    def _clean(cls, value: object, info: ValidationInfo) -> object:
        # before the length checks, which refuse a lone surrogate naming neither it nor where
        return check_text(value, str(info.field_name)) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _one_source(self) -> RumorIn:
        if (self.text is None) == (self.post_id is None):
            raise ValueError("give exactly one of text and post_id")
        return self


class Copy(BaseModel):
    id: str
    account_id: str | None
    created_at: float
    similarity: float
    cluster_id: str | None = Field(description="its cluster, while the window holds the post")
    recorded: bool = Field(description="recorded in storage when it was scored")
    live: bool = Field(description="in the near-duplicate window of the answering process")


def _detail(cluster: Cluster) -> ClusterDetail:
    members = [
        ClusterPost(id=m.post_id, account_id=m.account_id, created_at=m.created_at)
        for m in cluster.members
    ]
    return ClusterDetail(
        **summary(cluster).model_dump(),
        batch_at=cluster.batch_at,
        batch_accounts=cluster.batch_accounts,
        members=members,
        members_not_listed=cluster.size - len(members),
    )


async def _stored(found: Found) -> list[StoredRumor]:
    return await run_in_threadpool(found.repository.rumors)


async def _find(found: Found, rumor_id: str) -> StoredRumor:
    for stored in await _stored(found):
        if stored.rumor_id == rumor_id:
            return stored
    raise NotFoundError("no_rumor", rumor_id=rumor_id)


@router.get("/clusters", responses=answers({503: INDEX_AWAY}))
async def flagged_clusters(
    found: Found, _: TrustTeam, limit: Annotated[int, Query(ge=1, le=1000)] = 50
) -> list[ClusterSummary]:
    """Clusters flagged as coordinated batches, most recently flagged first."""
    return [summary(c) for c in found.neardup.flagged(limit)]


@router.get(
    "/clusters/{cluster_id}",
    responses=answers({404: "no live cluster of that id", 503: INDEX_AWAY}),
)
async def cluster(
    cluster_id: Annotated[
        str, Path(description="c_ and 16 hex digits; any other text names no cluster (404)")
    ],
    found: Found,
    _: TrustTeam,
) -> ClusterDetail:
    """A live (or flagged) cluster with its earliest post and members."""
    got = found.neardup.cluster(cluster_id)
    if got is None:
        raise HTTPException(404, f"no live cluster {cluster_id!r}")
    return _detail(got)


REFRESH_HEADER = "Bank-Refresh"


def refreshed(status: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI answer ``status`` of a bank change, with its :data:`REFRESH_HEADER`."""
    return {
        status: {
            "headers": {
                REFRESH_HEADER: {
                    "description": "`done`: this server process matches posts against the "
                    "bank as changed; `pending`: the change is stored, but storage did not "
                    "answer the process's reload of the bank after it, so the process's next "
                    "periodic refresh (`neardup_bank_refresh_s`) loads it, as every other "
                    "process's does. Either way the change is made: do not send it again",
                    "schema": {"type": "string", "enum": ["done", "pending"]},
                }
            }
        }
    }


def say_refresh(response: Response, change: BankChange) -> None:
    """Say in the answer's :data:`REFRESH_HEADER` whether this process holds the change yet."""
    response.headers[REFRESH_HEADER] = "done" if change.refreshed else "pending"


@router.post(
    "/bank/rumors",
    status_code=201,
    responses={
        **refreshed(201),
        **answers(
            {
                NotFoundError: "post_id names no post of the live window",
                ConflictError: "the bank has this rumour already",
                StorageError: KEYED_WRITE_DOWN,
            }
        ),
    },
)
async def add_rumor(
    body: RumorIn,
    found: Found,
    caller: BankEditor,
    response: Response,
    key: IdempotencyKey = None,
) -> views.Rumor:
    """Bank a confirmed rumour; posts that match it from now on get their rumour score raised
    (in this process from the answer's ``Bank-Refresh: done``, else from its next refresh). A
    retry with the same key gets the first answer, where one without it is refused as banked
    already (409)."""
    idem = Idempotency.of(caller.key_id, key, "rumor", body.model_dump())
    try:
        change = await run_in_threadpool(
            lambda: bank_rumor(
                found.neardup,
                found.repository,
                text=body.text,
                post_id=body.post_id,
                notice=body.notice,
                by=caller.actor,
                idem=idem,
            )
        )
    except UnmatchableError as exc:
        raise invalid(("body", "text"), str(exc)) from exc
    say_refresh(response, change)
    return change.rumor


@router.get("/bank/rumors", responses=answers({StorageError: STORAGE_DOWN}))
async def rumors(found: Found, _: TrustTeam) -> list[views.Rumor]:
    """The bank, oldest first."""
    return [r.view() for r in await _stored(found)]


@router.get(
    "/bank/rumors/{rumor_id}",
    responses=answers({NotFoundError: NO_RUMOR, StorageError: STORAGE_DOWN}),
)
async def rumor(rumor_id: str, found: Found, _: TrustTeam) -> views.Rumor:
    """One banked rumour with its debunk notice."""
    return (await _find(found, rumor_id)).view()


@router.get("/bank/rumors/{rumor_id}/copies", responses=READ_RUMOR)
async def copies(
    rumor_id: str,
    found: Found,
    _: TrustTeam,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    after_time: Annotated[
        float | None,
        Query(description="with after_id: the copies after this one (paging)", allow_inf_nan=False),
    ] = None,
    after_id: Annotated[
        str | None, Query(description="the last copy's id of the page before")
    ] = None,
) -> list[Copy]:
    """Every copy of a banked rumour, earliest first (its source, then its spread), the first
    ``limit``: those recorded when they were scored, with those the window holds now (posts
    scored before the entry was banked, or whose recording failed). The next page starts after
    the last copy of this one: ``?after_time=<its created_at>&after_id=<its id>``."""
    if (after_time is None) != (after_id is None):
        missing = "after_id" if after_id is None else "after_time"
        raise invalid(("query", missing), "after_time and after_id go together: the last copy seen")
    after = None if after_time is None or after_id is None else (after_time, after_id)
    stored = await _find(found, rumor_id)
    recorded = await run_in_threadpool(
        lambda: found.repository.rumor_copies(rumor_id, after=after, limit=limit)
    )
    listed = {
        c.post_id: Copy(
            id=c.post_id,
            account_id=c.account_id,
            created_at=c.created_at,
            similarity=c.similarity,
            cluster_id=None,
            recorded=True,
            live=False,
        )
        for c in recorded
    }
    for m in found.neardup.copies(stored):
        if after is not None and (m.entry.created_at, m.entry.post_id) <= after:
            continue
        known = listed.get(m.entry.post_id)
        listed[m.entry.post_id] = Copy(
            id=m.entry.post_id,
            account_id=m.entry.account_id,
            created_at=m.entry.created_at,
            similarity=round(m.similarity, 4),
            cluster_id=m.entry.cluster_id,
            recorded=known is not None,
            live=True,
        )
    return sorted(listed.values(), key=lambda c: (c.created_at, c.id))[:limit]


@router.delete(
    "/bank/rumors/{rumor_id}",
    status_code=204,
    responses={
        **refreshed(204),
        **answers({NotFoundError: NO_RUMOR, StorageError: KEYED_WRITE_DOWN}),
    },
)
async def delete_rumor(
    rumor_id: str, found: Found, caller: BankEditor, key: IdempotencyKey = None
) -> Response:
    """Remove an entry and the copies recorded of it (``Bank-Refresh`` says whether this
    process matches posts without it yet). A retry with the same key gets 204 again, where one
    without it finds the entry gone (404)."""
    idem = Idempotency.of(caller.key_id, key, f"rumor-removal:{rumor_id}", None)
    change = await run_in_threadpool(
        lambda: unbank_rumor(found.neardup, found.repository, rumor_id, by=caller.actor, idem=idem)
    )
    removed = Response(status_code=204)
    say_refresh(removed, change)
    return removed
