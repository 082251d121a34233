"""The review queue, accounts, reports, appeals and the re-registration check: thin routers over
the repository's review transactions (:mod:`service.storage.review_sql`, the accounts' in
:mod:`service.storage.accounts_sql`), whose rules are :mod:`service.review`. Writes a client may
retry take an ``Idempotency-Key`` header."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Protocol, Self, TypeVar

from fastapi import APIRouter, Depends, Header, Path, Query
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    Field,
    Strict,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError
from starlette.concurrency import run_in_threadpool

from service.api.auth import require
from service.api.routes import (
    KEY_HEADER,
    KEYED_WRITE_DOWN,
    STORAGE_DOWN,
    Answers,
    JsonRoute,
    answers,
    invalid,
)
from service.api.state import Found
from service.policy.provisions import Article
from service.record import MAX_ID_CHARS, blank, check_text, unix_time
from service.review import dormancy, views
from service.review.appeals import AppealAction, AppealStatus
from service.review.appeals import parse_cursor as appeal_cursor
from service.review.credit import (
    HISTORY_PAGE,
    CursorOrderError,
    HistoryOrder,
    parse_history_cursor,
)
from service.review.dispositions import ACTIVE_PAGE
from service.review.items import (
    MAX_ROW_ID,
    Action,
    Category,
    ConflictError,
    ForbiddenError,
    Kind,
    NotFoundError,
    Shown,
    Status,
    Violation,
    parse_cursor,
)
from service.review.registration import identifies
from service.security import Principal
from service.storage import StorageError
from service.storage.repository import Idempotency, Role

MAX_FREE_TEXT = 10_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

NO_ITEM = "no review item of that id"
NO_APPEAL = "no appeal of that id"
NOT_YOURS = (
    "the item is escalated, and the key is no admin's or its owner escalated it (an "
    "escalation asks for another's eyes)"
)
READS: Answers = answers({StorageError: STORAGE_DOWN})
"""What a route that reads storage answers of its own where it finds nothing missing and its
rules refuse nothing (a listing, the re-registration check)."""
ACCOUNT_READS: Answers = answers(
    {NotFoundError: "the service knows no account of that id", StorageError: STORAGE_DOWN}
)
"""What a read of one account answers of its own: no such account, or storage down."""

router = APIRouter(prefix="/v1", tags=["review"], route_class=JsonRoute)
TRUST_TEAM: tuple[Role, ...] = ("reviewer", "admin")
reviewer = require(*TRUST_TEAM)
publisher = require("publisher", "admin")
anyone = require("publisher", *TRUST_TEAM)
Reviewer = Annotated[Principal, Depends(reviewer)]
Publisher = Annotated[Principal, Depends(publisher)]
Anyone = Annotated[Principal, Depends(anyone)]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias=KEY_HEADER,
        # an empty key would be one key shared by every write of the API key that sends it
        # empty (a client with no key at hand), each refused after the first as another request
        min_length=1,
        max_length=128,
        description="a retry with the same key gets the first answer instead of a second write",
    ),
]


def _clean(value: object) -> object:
    # before pydantic's length check, which refuses a lone surrogate as "unable to parse raw
    # data", naming neither the character nor where it is
    return check_text(value, "text") if isinstance(value, str) else value


def _not_blank(value: str) -> str:
    # a blank id would name one shared account or post; a blank reason or name says nothing
    problem = blank(value)
    if problem is not None:
        raise PydanticCustomError("blank", problem)
    return value


def _identifies(value: str) -> str:
    if not identifies(value):
        raise PydanticCustomError(
            "no_identifier",
            "holds no letter or digit once spaces, hyphens and invisible characters are left "
            "out: not a subject's identifier",
        )
    return value


Text = Annotated[str, Field(max_length=MAX_FREE_TEXT), BeforeValidator(_clean)]
Statement = Annotated[Text, AfterValidator(_not_blank)]
Id = Annotated[
    str,
    Field(min_length=1, max_length=MAX_ID_CHARS),
    BeforeValidator(_clean),
    AfterValidator(_not_blank),
]
# Strict: JSON true or "12" is not a row id or a count
RowId = Annotated[int, Strict(), Field(ge=1, le=MAX_ROW_ID)]
ItemId = Annotated[int, Path(ge=1, le=MAX_ROW_ID)]
AccountId = Annotated[
    str,
    Path(min_length=1, max_length=MAX_ID_CHARS),
    BeforeValidator(_clean),
    AfterValidator(_not_blank),
]
# an ID card or licence number, given as a platform's form may spell it (normalised when hashed)
SubjectId = Annotated[Id, AfterValidator(_identifies)]


class DecisionRequest(BaseModel):
    action: Action
    # validated when left out too, so that a confirmation without them is refused at their path
    category: Category | None = Field(default=None, validate_default=True)
    basis: Article | None = Field(default=None, validate_default=True)
    note: Text | None = None
    record_id: RowId | None = Field(
        default=None,
        description="the item's record_id as the reviewer read it (null: it showed no record): "
        "a decision on an item that holds another score record now (the post scored again "
        "since) is refused with 409, so that nobody decides on a record they never saw; left "
        "out, nothing is checked",
    )

    def shown(self) -> Shown | None:
        """What the reviewer says they read of the item; None where the request says nothing
        (a client written before ``record_id``), whose decision is taken unchecked."""
        return Shown(self.record_id) if "record_id" in self.model_fields_set else None

    @field_validator("category", "basis")
    @classmethod
    def _confirm_says_what_and_why(cls, value: str | None, info: ValidationInfo) -> str | None:
        action = info.data.get("action")
        what = "category" if info.field_name == "category" else "basis (the article)"
        if value is None and action == "confirm":
            raise ValueError(f"a confirmed violation needs its {what}")
        if value is not None and action in ("dismiss", "escalate"):
            # stored with the decision, it read as what the item was dismissed as, and the
            # labels gave the text that category's 0 where the item's head was dismissed
            raise ValueError(
                f"only a confirmation takes a {what}: a dismissal says the item's head is no "
                "violation, an escalation says nothing yet"
            )
        return value


class ReportRequest(BaseModel):
    post_id: Id | None = None
    account_id: Id | None = None
    category: Violation
    text: Text = ""
    reporter_id: Id | None = Field(
        default=None,
        description="the platform's own id of the user who reported (opaque): reports of "
        "one key with distinct ids count as distinct reporters towards the item's priority; "
        "those without one count once per key",
    )

    @model_validator(mode="after")
    def _names_something(self) -> ReportRequest:
        if self.post_id is None and self.account_id is None:
            raise ValueError("a report names the post_id or the account_id it is about")
        return self


class AppealRequest(BaseModel):
    account_id: Id
    item_id: RowId
    reason: Statement


class AppealDecisionRequest(BaseModel):
    action: AppealAction
    note: Text | None = None


class RegistrationRequest(BaseModel):
    name: Statement
    subject_id: SubjectId = Field(description="the subject's identifier; only its hash is compared")


class AccountProfile(BaseModel):
    """The fields given are set; those left out keep their stored values."""

    name: Statement | None = Field(default=None, description="null clears it")
    subject_id: SubjectId | None = Field(default=None, description="stored hashed; never cleared")
    followers: Annotated[int, Strict()] | None = Field(default=None, ge=0, le=2**31 - 1)
    last_login_at: Annotated[AwareDatetime | None, BeforeValidator(unix_time)] = Field(
        default=None,
        description="when the account last logged in on the platform (ISO 8601 with its zone, "
        "or unix seconds, not milliseconds): use, which ends a dormancy (art10); an earlier "
        "one than stored keeps the stored one; from 1970 to at most 5 minutes ahead of the "
        "server's clock",
    )

    @field_validator("last_login_at")
    @classmethod
    def _not_ahead(cls, value: datetime | None) -> datetime | None:
        now = datetime.now(UTC)
        if value is not None and value < EPOCH:
            # as a post's created_at: earlier is no login, and year 1 in another zone is a
            # moment before year 1 in UTC, which no datetime holds once read back
            raise ValueError(f"{value.isoformat()} is before 1970: not a login that happened")
        if value is not None and value > now + dormancy.LOGIN_SKEW:
            skew = int(dormancy.LOGIN_SKEW.total_seconds() // 60)
            raise ValueError(
                f"{value.isoformat()} is later than the server's clock ({now.isoformat()}) by "
                f"more than the {skew} minutes taken for clock skew: a login reported is one "
                "that happened"
            )
        return value


class Signed(Protocol):
    def unsigned(self) -> Self: ...


V = TypeVar("V", bound=Signed)
P = TypeVar("P")


def shown_to(who: Principal, view: V) -> V:
    """``view`` as ``who`` may read it: who decided, lifted and resolved (console users' names,
    people's) only for the trust team."""
    return view if who.role in TRUST_TEAM else view.unsigned()


def query_cursor(
    given: str | None,
    parse: Callable[[str | None], P | None],
    name: str = "cursor",
) -> P | None:
    """The position a listing's cursor query ``name`` names (read by ``parse``), or a 422
    that points at it; the console's listings read theirs the same way."""
    try:
        return parse(given)
    except CursorOrderError as exc:
        raise invalid(("query", name), str(exc)) from None
    except ValueError:
        raise invalid(("query", name), "not a cursor this API gave out") from None


@router.get("/review/items", responses=READS)
async def list_items(
    found: Found,
    _: Reviewer,
    status: Status = "open",
    head: Category | None = None,
    assignee: Annotated[str | None, Query(max_length=64)] = None,
    kind: Kind | None = None,
    cursor: str | None = None,
    limit: Annotated[int | None, Query(ge=1, le=1000)] = None,
) -> views.ItemPage:
    """Items by priority (severity, reach, reports, age), highest first."""
    return await run_in_threadpool(
        found.review.list_items,
        found.scoring.policy,
        status=status,
        head=head,
        assignee=assignee,
        kind=kind,
        cursor=query_cursor(cursor, parse_cursor),
        limit=limit,
    )


@router.get(
    "/review/items/{item_id}",
    responses=answers({NotFoundError: NO_ITEM, StorageError: STORAGE_DOWN}),
)
async def get_item(item_id: ItemId, found: Found, _: Reviewer) -> views.Item:
    return await run_in_threadpool(found.review.get_item, found.scoring.policy, item_id)


@router.post(
    "/review/items/{item_id}/claim",
    responses=answers(
        {
            NotFoundError: NO_ITEM,
            ForbiddenError: NOT_YOURS,
            ConflictError: "the item is decided, or claimed by another reviewer",
            # a claim takes no key: app.py's UNKEYED_WRITE_UNANSWERED
            StorageError: f"{STORAGE_DOWN} (the claim may still be made: read the item back)",
        }
    ),
)
async def claim(item_id: ItemId, found: Found, who: Reviewer) -> views.Lease:
    """Keep the item to the caller for the policy's lease (claim again to renew); an escalated
    item to an admin key only. The caller is the key's owner where it has one, the console
    user the key belongs to (:attr:`Principal.actor`), as in every review write below."""
    return await run_in_threadpool(
        lambda: found.review.claim(found.scoring.policy, item_id, who.actor, role=who.role)
    )


@router.post(
    "/review/items/{item_id}/decision",
    responses=answers(
        {
            NotFoundError: NO_ITEM,
            ForbiddenError: NOT_YOURS,
            ConflictError: "the item is decided, claimed by another reviewer, escalated "
            "already (to escalate), of a kind the category does not confirm, or holds "
            "another score record than record_id",
            StorageError: KEYED_WRITE_DOWN,
        }
    ),
)
async def decide(
    item_id: ItemId, body: DecisionRequest, found: Found, who: Reviewer, key: IdempotencyKey = None
) -> views.Decision:
    """Confirm (with category and basis), dismiss or escalate; a confirmation deducts the
    account's credit and applies the policy's dispositions in the same transaction. An
    escalated item is decided by an admin key only, and not by the escalator's (the same
    person's, by a key of theirs or in the console). With ``record_id``, the item's as read,
    refused (409) where the item holds another score record now. A registration batch's
    members past its listing are charged after the decision, in the background: the answer
    comes once the decision commits, ``charges_pending`` while any are left."""
    # a body without record_id is the request it was before the field, so that a retry of
    # one sent before it finds its answer
    request = body.model_dump(exclude=None if body.shown() else {"record_id"})
    idem = Idempotency.of(who.key_id, key, f"decision:{item_id}", request)
    # made here, on the loop: the call below runs on a worker thread
    charge_later = found.scoring.charges_hand_off()
    return await run_in_threadpool(
        lambda: found.review.decide(
            found.scoring.policy,
            item_id,
            who.actor,
            body.action,
            body.category,
            body.basis,
            body.note,
            role=who.role,
            shown=body.shown(),
            idem=idem,
            # thousands of members take minutes, past storage_deadline_s: answered 503, the
            # decision recorded read as one not made
            charge_later=charge_later,
        )
    )


@router.get(
    "/accounts/{account_id}",
    responses=ACCOUNT_READS,
)
async def get_account(
    account_id: AccountId,
    found: Found,
    who: Anyone,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = HISTORY_PAGE,
    order: Annotated[
        HistoryOrder,
        Query(
            description="`oldest` first (the default, as before there was a choice) or "
            "`newest` first; pass a page's `next` with the order it was read in"
        ),
    ] = "oldest",
) -> views.Account:
    """Credit, level, active dispositions and the history of both, ``limit`` entries a page
    in ``order`` (``next`` the cursor of the page after); the reviewers who decided and lifted
    the dispositions for reviewer and admin keys only. An account the service knows (by its
    posts or review items) that was never charged is at the initial credit."""
    after = query_cursor(cursor, lambda given: parse_history_cursor(given, order))
    account = await run_in_threadpool(
        lambda: found.review.get_account(
            found.scoring.policy, account_id, cursor=after, limit=limit, order=order
        )
    )
    return shown_to(who, account)


@router.get(
    "/accounts/{account_id}/dispositions",
    responses=ACCOUNT_READS,
)
async def active_dispositions(
    account_id: AccountId,
    found: Found,
    who: Anyone,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = ACTIVE_PAGE,
) -> views.DispositionPage:
    """The dispositions active on the account, ``limit`` a page in the order they were
    applied (``next`` the cursor of the page after, as the appeals listing's); the account's
    own answer holds the first page and this listing's cursor after it. Who decided for
    reviewer and admin keys only, as on accounts."""
    after = query_cursor(cursor, appeal_cursor)
    page = await run_in_threadpool(
        lambda: found.review.account_dispositions(account_id, cursor=after, limit=limit)
    )
    return shown_to(who, page)


@router.get("/dispositions", responses=READS)
async def disposition_changes(
    found: Found,
    who: Anyone,
    after: Annotated[
        int,
        Query(ge=0, le=MAX_ROW_ID, description="the `next` of the last poll; 0 from the start"),
    ] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> views.DispositionFeed:
    """The dispositions applied and lifted (art19, an upheld appeal's art20) after ``after``,
    in the order they were committed: the platform polls it, carries each change out and keeps
    ``next``. Who decided and lifted each for reviewer and admin keys only, as on accounts."""
    try:
        feed = await run_in_threadpool(found.review.disposition_changes, after, limit)
    except ValueError as exc:
        raise invalid(("query", "after"), str(exc)) from None
    return shown_to(who, feed)


@router.put(
    "/accounts/{account_id}",
    responses=answers(
        {
            ConflictError: "the change is refused (art8, art10, art19): a subject the account has "
            "already, a name its closing or suspension keeps, a blacklisted subject, a "
            "subject at its cap of accounts, or a protected name",
            StorageError: KEYED_WRITE_DOWN,
        }
    ),
)
async def put_account(
    account_id: AccountId,
    body: AccountProfile,
    found: Found,
    who: Publisher,
    key: IdempotencyKey = None,
) -> views.Account:
    """The account's name, subject (hashed) and followers, for reach and re-registration, and
    its last login, for dormancy (art10); a field left out keeps its stored value (a new account
    starts with no name and 0 followers)."""
    # the fields given: a name left out and a name cleared (null) are different requests
    request = body.model_dump(exclude_unset=True)
    idem = Idempotency.of(who.key_id, key, f"account:{account_id}", request)
    account = await run_in_threadpool(
        lambda: found.review.put_account(
            found.scoring.policy,
            account_id,
            name=body.name if "name" in body.model_fields_set else ...,
            subject_id=body.subject_id,
            followers=body.followers,
            login_at=body.last_login_at,
            by=who.key_id,
            idem=idem,
        )
    )
    return shown_to(who, account)


@router.post(
    "/reports",
    responses=answers(
        {
            ConflictError: "the post belongs to another account than account_id",
            StorageError: KEYED_WRITE_DOWN,
        }
    ),
)
async def file_report(
    body: ReportRequest, found: Found, who: Publisher, key: IdempotencyKey = None
) -> views.Report:
    """A public complaint, forwarded by the platform; it joins the post's open item."""
    # without a reporter id, the body a key was stored with before there were any
    request = body.model_dump(exclude={"reporter_id"} if body.reporter_id is None else None)
    idem = Idempotency.of(who.key_id, key, "report", request)
    return await run_in_threadpool(
        lambda: found.review.file_report(
            found.scoring.policy,
            post_id=body.post_id,
            account_id=body.account_id,
            category=body.category,
            text_=body.text,
            reporter=who.key_id,
            reporter_id=body.reporter_id,
            idem=idem,
        )
    )


@router.get(
    "/reports/{report_id}",
    dependencies=[Depends(anyone)],
    responses=answers({NotFoundError: "no report of that id", StorageError: STORAGE_DOWN}),
)
async def get_report(report_id: ItemId, found: Found) -> views.Report:
    """The report with its status and outcome (its review item's)."""
    return await run_in_threadpool(found.review.get_report, found.scoring.policy, report_id)


@router.post(
    "/appeals",
    responses=answers(
        {
            NotFoundError: "no such account, or no review item item_id",
            ConflictError: "the item is no confirmed violation of the account (or charged it "
            "on another item), was appealed already, or its window to appeal has closed "
            "(deadline says when)",
            StorageError: KEYED_WRITE_DOWN,
        }
    ),
)
async def file_appeal(
    body: AppealRequest, found: Found, who: Publisher, key: IdempotencyKey = None
) -> views.Appeal:
    """An account holder's appeal of a confirmed violation (and the dispositions it brought)."""
    idem = Idempotency.of(who.key_id, key, "appeal", body.model_dump())
    appeal = await run_in_threadpool(
        lambda: found.review.file_appeal(
            found.scoring.policy,
            account_id=body.account_id,
            item_id=body.item_id,
            reason=body.reason,
            # the person, as its resolver is compared (Principal.actor): a console user's key
            # files as that user, who then does not resolve the appeal
            filed_by=who.actor,
            idem=idem,
        )
    )
    return shown_to(who, appeal)


@router.get("/appeals", dependencies=[Depends(reviewer)], responses=READS)
async def list_appeals(
    found: Found,
    status: AppealStatus | None = None,
    overdue: bool = False,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> views.AppealPage:
    """Appeals by deadline (``status=pending`` for those waiting), ``limit`` a page, and how
    many are pending and overdue in all pages."""
    after = query_cursor(cursor, appeal_cursor)
    return await run_in_threadpool(
        lambda: found.review.list_appeals(
            status=status, overdue_only=overdue, cursor=after, limit=limit
        )
    )


@router.get(
    "/appeals/{appeal_id}",
    responses=answers({NotFoundError: NO_APPEAL, StorageError: STORAGE_DOWN}),
)
async def get_appeal(appeal_id: ItemId, found: Found, who: Anyone) -> views.Appeal:
    """The appeal with its status, the reviewer's note and its deadline: the answer the
    platform passes on to the account holder (art20), whichever key filed it."""
    return shown_to(who, await run_in_threadpool(found.review.get_appeal, appeal_id))


@router.post(
    "/appeals/{appeal_id}/decision",
    responses=answers(
        {
            NotFoundError: NO_APPEAL,
            ForbiddenError: "the key's owner made the appealed decision, or it was taken on "
            "an escalated item and the key is no admin's",
            ConflictError: "the appeal is resolved already",
            StorageError: KEYED_WRITE_DOWN,
        }
    ),
)
async def decide_appeal(
    appeal_id: ItemId,
    body: AppealDecisionRequest,
    found: Found,
    who: Reviewer,
    key: IdempotencyKey = None,
) -> views.Appeal:
    """Uphold (reverses the credit change and lifts the dispositions) or reject; by a reviewer
    other than the one who made the appealed decision (a person, by a key of theirs or in the
    console), and an admin key where that decision was taken on an escalated item."""
    idem = Idempotency.of(who.key_id, key, f"appeal:{appeal_id}", body.model_dump())
    return await run_in_threadpool(
        lambda: found.review.decide_appeal(
            found.scoring.policy,
            appeal_id,
            who.actor,
            body.action,
            body.note,
            role=who.role,
            idem=idem,
        )
    )


@router.post("/registrations/check", dependencies=[Depends(anyone)], responses=READS)
async def check_registration(body: RegistrationRequest, found: Found) -> views.Registration:
    """Refused for a blacklisted subject, or a name equal or near-equal to a closed account's."""
    return await run_in_threadpool(
        found.review.check_registration, found.scoring.policy, body.name, body.subject_id
    )
