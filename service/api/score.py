"""``POST /v1/score`` and ``POST /v1/score/batch``."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Response
from pydantic import ValidationError

from service.api.auth import require
from service.api.routes import JsonRoute, answers, invalid
from service.api.schemas import BatchRequest, BatchResponse, ItemError, ItemProblem
from service.api.state import Found
from service.jsonload import Unreadable
from service.record import Post, ScoreRecord, cut
from service.scoring import IdConflict, NotKept

OVERLOADED = "overloaded: too many posts waiting for the model"

RETRY_AFTER = {"Retry-After": "1"}
"""When to send again a post whose record was not kept, as the server's other 503s say: on the
single post's 503, and on a batch with a 503 entry (whose other entries stand)."""

router = APIRouter(prefix="/v1", tags=["scoring"], route_class=JsonRoute)
publisher = require("publisher", "admin")


def _too_long(post: Post, limit: int) -> str | None:
    if len(post.text) > limit:
        return f"text has {len(post.text)} characters; the limit is {limit}"
    return None


@router.post(
    "/score",
    dependencies=[Depends(publisher)],
    responses=answers(
        {
            409: "the post id belongs to another account, or was scored before with another "
            "text (an edited post needs an id of its own)",
            413: "the text is over max_text_chars",
            503: f"{OVERLOADED}; or a record the policy keeps could be neither stored nor "
            "spooled (storage down, and the spool's disk full or its folder unwritable)",
        }
    ),
)
async def score(post: Post, found: Found) -> ScoreRecord:
    """Score one post. ``degraded`` is true when storage was out of reach: the record is then
    kept in a local spool and stored when storage answers again."""
    problem = _too_long(post, found.settings.max_text_chars)
    if problem:
        raise HTTPException(413, problem)
    records, _ = await found.scoring.score([post])
    answer = records[0]
    if isinstance(answer, IdConflict):
        raise HTTPException(409, answer.problem)
    if isinstance(answer, NotKept):
        raise HTTPException(503, answer.problem, headers=RETRY_AFTER)
    return answer


@router.post(
    "/score/batch", dependencies=[Depends(publisher)], responses=answers({503: OVERLOADED})
)
async def score_batch(body: BatchRequest, found: Found, response: Response) -> BatchResponse:
    """Score up to ``max_batch_posts`` posts (256 unless configured); records come back in input
    order, and a post that cannot be scored gets an error entry in its place (422 invalid, 413
    too long, 409 its id held for another account or scored before with another text, 503 its
    record could be neither stored nor spooled: then the answer has a Retry-After for it)."""
    limit = found.settings.max_batch_posts
    if len(body.posts) > limit:
        raise invalid(
            ("body", "posts"), f"{len(body.posts)} posts; the limit is {limit}", "too_long"
        )
    checked = [_check(i, item, found.settings.max_text_chars) for i, item in enumerate(body.posts)]
    records, degraded = await found.scoring.score([c for c in checked if isinstance(c, Post)])
    scored = iter(records)
    answers: list[ScoreRecord | ItemError] = []
    for index, item in enumerate(checked):
        answer = next(scored) if isinstance(item, Post) else item
        if isinstance(answer, IdConflict | NotKept):
            answer = _unanswered(index, answer)
        answers.append(answer)
    if any(isinstance(a, ItemError) and a.status == 503 for a in answers):
        response.headers.update(RETRY_AFTER)
    return BatchResponse(records=answers, degraded=degraded)


def _unanswered(index: int, post: IdConflict | NotKept) -> ItemError:
    """The entry of a post scored but answered without its record: the single-post endpoint's
    status and words."""
    if isinstance(post, IdConflict):
        status, problem = 409, ItemProblem(loc=["id"], msg=post.problem, type="conflict")
    else:
        # the whole post: a retry of it, not a change to one of its fields, is what helps
        status, problem = 503, ItemProblem(loc=[], msg=post.problem, type="not_kept")
    return ItemError(index=index, id=post.id, status=status, errors=[problem])


def _check(index: int, item: object, limit: int) -> Post | ItemError:
    if isinstance(item, Unreadable):
        long = ItemProblem(loc=list(item.long.path), msg=item.long.message, type="json_invalid")
        return _invalid(index, item.value, [long])
    try:
        post = Post.model_validate(item)
    except ValidationError as exc:
        return _invalid(index, item, problems(exc))
    problem = _too_long(post, limit)
    if problem:
        return ItemError(
            index=index,
            id=post.id,
            status=413,
            errors=[ItemProblem(loc=["text"], msg=problem, type="too_long")],
        )
    return post


def _invalid(index: int, item: object, errors: list[ItemProblem]) -> ItemError:
    given = _shown_id(item)
    shown, chars = (None, None) if given is None else cut(given)
    return ItemError(index=index, id=shown, id_chars=chars, status=422, errors=errors)


def _shown_id(item: object) -> str | None:
    """The id of a rejected item, when it can be echoed safely (no NUL, no lone surrogate)."""
    given = item.get("id") if isinstance(item, dict) else None
    if isinstance(given, int) and not isinstance(given, bool):
        return str(given)
    if isinstance(given, str) and "\x00" not in given:
        try:
            given.encode("utf-8")
        except UnicodeEncodeError:
            return None
        return given
    return None


def problems(exc: ValidationError) -> list[ItemProblem]:
    """Where and why, without echoing the input (it may be the text, or not encodable)."""
    return [
        ItemProblem(loc=list(e["loc"]), msg=e["msg"], type=e["type"])
        for e in exc.errors(include_url=False, include_input=False, include_context=False)
    ]
