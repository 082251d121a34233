"""Request and response bodies of the API, beyond the :class:`~service.record.Post` and the
:class:`~service.record.ScoreRecord` themselves."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field

from service.record import SHOWN_CHARS, ScoreRecord


class Problem(BaseModel):
    detail: str


class BatchRequest(BaseModel):
    # items are checked one by one in the router, so that one bad post gets an error entry in
    # its place instead of failing the whole batch, and so is their number, against the setting
    # max_batch_posts; the schema still documents them as posts
    posts: list[Any] = Field(
        description="at most max_batch_posts (256 unless configured)",
        json_schema_extra={"items": {"$ref": "#/components/schemas/Post"}},
    )
    ITEMS: ClassVar[str] = "posts"
    """The field whose items the route checks one by one: a value its JSON parser cannot read
    in one of them (an integer too long to read) refuses that item in its place, not the whole
    body (service/api/routes.py)."""


class ItemProblem(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ItemError(BaseModel):
    """In place of the record of a post that could not be scored."""

    index: int
    id: str | None = Field(
        description=f"the post's id when it had a usable one, its first {SHOWN_CHARS:,} "
        "characters where it is longer"
    )
    id_chars: int | None = Field(
        default=None,
        description=f"the id's length, where id is only its first {SHOWN_CHARS:,} characters",
    )
    status: Literal[409, 413, 422, 503] = Field(
        description="what the single-post endpoint would answer"
    )
    errors: list[ItemProblem]


class BatchResponse(BaseModel):
    records: list[ScoreRecord | ItemError]
    degraded: bool


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    status: Literal["ready", "degraded"]
    model_version: str
    policy_version: str
    problems: list[str] = Field(description="why the service is degraded; empty when ready")
    spooled: int = Field(
        description="flagged records and review items waiting in the spool for storage"
    )
    rejected: int = Field(
        description="spooled records storage refused, set aside for an operator (service/spool.py)"
    )
