"""Posts' engagement counts (art12): ``PUT /v1/posts/{post_id}/engagement``, and ``GET`` for
the counts as stored. The platform reports a post's counts as they change; what they show
abnormal goes to the trust team's queue (:mod:`service.review.engagement`, storage
:mod:`service.storage.engagement_sql`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter
from pydantic import BaseModel, Field, Strict, ValidationInfo, field_validator, model_validator
from starlette.concurrency import run_in_threadpool

from service.api.review import (
    AccountId,
    Anyone,
    Id,
    IdempotencyKey,
    Publisher,
)
from service.api.routes import KEYED_WRITE_DOWN, STORAGE_DOWN, JsonRoute, answers
from service.api.state import Found
from service.review import views
from service.review.engagement import Counts
from service.review.items import ConflictError, NotFoundError
from service.storage import StorageError
from service.storage.repository import Idempotency

router = APIRouter(prefix="/v1", tags=["engagement"], route_class=JsonRoute)
PostId = AccountId
"""A post's id in a path: checked as an account's is."""
# Strict: JSON true or "12" is not a count; the columns are 32-bit, as followers' are
Count = Annotated[int, Strict(), Field(ge=0, le=2**31 - 1)]


class EngagementReport(BaseModel):
    """The counts given replace the stored ones; those left out keep them."""

    account_id: Id = Field(description="the post's account: a post is one account's")
    reads: Count | None = Field(default=None, description="reads (views, clicks) of the post")
    reposts: Count | None = None
    comments: Count | None = None
    likes: Count | None = None
    reposters: Count | None = Field(
        default=None,
        description="the distinct accounts that made the reposts: given with reposts, from 1 "
        "(0 for no reposts) to reposts",
    )

    @field_validator("reposters")
    @classmethod
    def _of_the_reposts(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is None:
            return value
        if "reposts" not in info.data:
            return value  # reposts refused already, at its own path
        reposts = info.data["reposts"]
        if reposts is None:
            raise ValueError("reposters counts the accounts of the reposts: give reposts too")
        if not min(reposts, 1) <= value <= reposts:
            raise ValueError(
                f"{value} accounts cannot have made {reposts} reposts: give from "
                f"{min(reposts, 1)} to {reposts}"
            )
        return value

    @model_validator(mode="after")
    def _counts_something(self) -> EngagementReport:
        if self.counts() == Counts():
            raise ValueError("a report gives at least one of reads, reposts, comments, likes")
        return self

    def counts(self) -> Counts:
        return Counts(
            reads=self.reads,
            reposts=self.reposts,
            comments=self.comments,
            likes=self.likes,
            reposters=self.reposters,
        )


@router.put(
    "/posts/{post_id}/engagement",
    responses=answers(
        {ConflictError: "the post is another account's", StorageError: KEYED_WRITE_DOWN}
    ),
)
async def put_engagement(
    post_id: PostId,
    body: EngagementReport,
    found: Found,
    who: Publisher,
    key: IdempotencyKey = None,
) -> views.Engagement:
    """The post's engagement counts as they change, for art12's monitoring of faked clicks,
    reads, reposts, comments and likes. A post the service never scored is taken as given
    (its first report is its gain since it was published); one another account's is 409.
    A count may fall. What the report finds abnormal opens or joins the account's
    ``engagement`` review item, in the same transaction."""
    idem = Idempotency.of(who.key_id, key, "engagement", [post_id, body.model_dump()])
    return await run_in_threadpool(
        lambda: found.review.put_engagement(
            found.scoring.policy, post_id, body.account_id, body.counts(), idem=idem
        )
    )


@router.get(
    "/posts/{post_id}/engagement",
    responses=answers(
        {
            NotFoundError: "no counts for the post: the service does not know it, or none "
            "were reported for it",
            StorageError: STORAGE_DOWN,
        }
    ),
)
async def get_engagement(post_id: PostId, found: Found, _: Anyone) -> views.EngagementCounts:
    """The post's engagement counts as the platform last reported them (null: never given) and
    when; for the publisher that reports them and the trust team that weighs them."""
    return await run_in_threadpool(found.review.get_engagement, post_id)
