"""The protected names (art8): ``/v1/protected-names``. Admin keys add and remove entries; the
trust team (reviewer and admin keys) reads them, as it reads the rumour bank. The rules are
:mod:`service.review.protected`, the storage :mod:`service.storage.protected_sql`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from service.api.auth import require
from service.api.review import READS, TRUST_TEAM, IdempotencyKey, Statement, SubjectId
from service.api.routes import KEYED_WRITE_DOWN, JsonRoute, answers, invalid
from service.api.state import Found
from service.review import views
from service.review.items import MAX_ROW_ID, ConflictError, NotFoundError
from service.review.protected import MOST_CHARS, EntryNameError, ProtectedKind
from service.security import Principal
from service.storage import StorageError
from service.storage.repository import Idempotency

router = APIRouter(prefix="/v1", tags=["protected names"], route_class=JsonRoute)
TrustTeam = Annotated[Principal, Depends(require(*TRUST_TEAM))]
NameEditor = Annotated[Principal, Depends(require("admin"))]
MAX_SUBJECTS = 100


class ProtectedNameIn(BaseModel):
    name: Annotated[Statement, Field(max_length=MOST_CHARS)] = Field(
        description="compared folded (as the re-registration check folds names): it folds to "
        "registration.protected_min_chars to 100 letters or digits"
    )
    kind: ProtectedKind = Field(
        description="organ (party or government), organisation (enterprise, institution), person"
    )
    subject_ids: list[SubjectId] = Field(
        default_factory=list,
        max_length=MAX_SUBJECTS,
        description="the subjects authorised to use it (normalised and stored hashed, as an "
        "account's subject)",
    )


@router.post(
    "/protected-names",
    status_code=201,
    responses=answers(
        {ConflictError: "the name is protected already", StorageError: KEYED_WRITE_DOWN}
    ),
)
async def add_protected_name(
    body: ProtectedNameIn, found: Found, caller: NameEditor, key: IdempotencyKey = None
) -> views.ProtectedNameAdded:
    """Protect a name: registrations and renames to a name that holds it are refused to
    subjects other than ``subject_ids``, and each account whose name holds it already gets an
    ``impersonation`` review item."""
    idem = Idempotency.of(caller.key_id, key, "protected-name", body.model_dump())
    try:
        return await run_in_threadpool(
            lambda: found.review.add_protected_name(
                found.scoring.policy,
                name=body.name,
                kind=body.kind,
                subject_ids=body.subject_ids,
                by=caller.actor,
                idem=idem,
            )
        )
    except EntryNameError as exc:
        raise invalid(("body", "name"), str(exc)) from exc


@router.get("/protected-names", responses=READS)
async def protected_names(found: Found, _: TrustTeam) -> list[views.ProtectedName]:
    """Every entry, oldest first."""
    return await run_in_threadpool(found.review.protected_names)


@router.delete(
    "/protected-names/{entry_id}",
    status_code=204,
    responses=answers({NotFoundError: "no entry of that id", StorageError: KEYED_WRITE_DOWN}),
)
async def remove_protected_name(
    entry_id: Annotated[int, Path(ge=1, le=MAX_ROW_ID)],
    found: Found,
    caller: NameEditor,
    key: IdempotencyKey = None,
) -> Response:
    """Remove an entry, releasing the accounts it alone held: their open impersonation items
    dismissed and their art8 suspensions lifted (cause ``entry_removed``). A retry with the
    same key gets 204 again, where one without it finds the entry gone (404)."""
    idem = Idempotency.of(caller.key_id, key, f"protected-name-removal:{entry_id}", None)
    await run_in_threadpool(
        lambda: found.review.remove_protected_name(
            found.scoring.policy, entry_id, by=caller.actor, idem=idem
        )
    )
    return Response(status_code=204)
