"""The console's pages: sign-in, the queue and its items, appeals, reports, the rumour bank and
the dashboard. Each is a thin handler over a repository transaction or a request model of the
JSON API; a refused write comes back to the page it was made on with the reason.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import partial
from typing import Annotated, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import Field
from starlette.concurrency import run_in_threadpool

from service.api.neardup import RumorIn
from service.api.review import (
    AppealDecisionRequest,
    AppealRequest,
    DecisionRequest,
    Id,
    ItemId,
    Text,
    query_cursor,
)
from service.api.state import Services
from service.console import articles, present
from service.console.i18n import Language, translator, worded
from service.console.web import (
    KEYS_COOKIE,
    LANG_COOKIE,
    REFUSALS,
    Admin,
    BankEditor,
    ConsoleRoute,
    Form,
    Refusal,
    Signed,
    Viewer,
    asked_again,
    back,
    console_of,
    console_page,
    forget_session,
    form,
    from_another_site,
    given,
    language_of,
    render,
    sent_once,
    session_of,
    set_session,
)
from service.neardup.bank import bank_rumor, unbank_rumor
from service.neardup.store import StoreUnavailableError
from service.policy.governance import CATEGORIES, Category
from service.review import dormancy, views
from service.review.appeals import APPEAL_STATUSES, AppealStatus, check_resolver
from service.review.appeals import parse_cursor as appeal_cursor
from service.review.credit import HistoryOrder, HistoryPlace, parse_history_cursor
from service.review.items import (
    FINAL,
    KINDS,
    MAX_ROW_ID,
    STATUSES,
    ConflictError,
    ForbiddenError,
    Kind,
    NotFoundError,
    Shown,
    Status,
    check_claim,
    parse_cursor,
    report_due,
    reports_late_before,
)
from service.security import AuthError, client_address, sign_in
from service.storage import StorageError
from service.storage.console_sql import DecisionRow

log = logging.getLogger(__name__)
PAGE_SIZE = 50
ITEM_REPORTS = 100
"""How many of an item's reports its page lists (the first filed); it counts them all."""
ACCOUNT_ITEMS = 20
"""How many of the account's other items an item's page lists (the latest); it counts them
all."""
ACCOUNT_HISTORY = 50
"""How many entries of the account's history an item's page lists, newest first (the latest
of what a reviewer weighs before deciding); a link goes on to the older ones."""
HISTORY_READ: HistoryOrder = "newest"
"""The order an item's page reads its account's history in, and its link's cursor is of."""
DASHBOARD_S = 60.0
"""How long a process shows the same dashboard: its aggregates scan the queue (about 2 s with a
million items, ``eval.console``), too slow to run on every load."""
Charging = Annotated[int | None, Query(ge=1, le=MAX_ROW_ID)]
"""The item whose confirmation the reviewer just made while its batch's members past the
listing are still being charged (:func:`decide`): the page they land on says so."""
router = APIRouter(prefix="/console", include_in_schema=False, route_class=ConsoleRoute)


class BankForm(RumorIn):
    """The bank's form names a rumour by its text only: one left empty is missing, not a post
    to look for."""

    text: str = Field(min_length=1, max_length=10_000)


@router.get("/")
async def home() -> RedirectResponse:
    return RedirectResponse("/console/queue", 303)


@router.get("/login")
async def login_page(
    request: Request, next: str = "", why: Literal["ended", "unsent", ""] = ""
) -> HTMLResponse:
    """The sign-in form; ``next`` the console page it goes on to, ``why`` what brought the
    browser here, set by :func:`~service.console.web.to_sign_in` (one of two fixed sentences,
    so that no link puts words of its own on the page)."""
    if from_another_site(request):
        # its new session's cookie would take the place of the browser's
        return asked_again(request)
    console = console_of(request)
    session = session_of(request) or console.sessions.new(time.time())
    return render(request, console, session, "login.html", next=console_page(next), why=why)


@router.post("/login")
async def login(request: Request, fields: Form) -> Response:
    console = console_of(request)
    found: Services = request.app.state.services
    name = fields.get("name", "")[:64]
    next_page = console_page(fields.get("next", ""))
    address = client_address(request.client.host if request.client else None)
    try:
        user = await run_in_threadpool(
            sign_in,
            found.repository,
            console.limits,
            name,
            fields.get("password", ""),
            address,
            time.time(),
        )
    except AuthError as exc:
        session = console.sessions.new(time.time())
        wait = None if exc.retry_after is None else math.ceil(exc.retry_after)
        page = render(
            request,
            console,
            session,
            "login.html",
            exc.status,
            failed=exc.status,
            typed=name,
            wait_minutes=None if wait is None else math.ceil(wait / 60),
            next=next_page,
            # the sign-in page this answers, with the page it goes on to: the language switch
            # comes back to it
            here="/console/login" + (f"?{urlencode({'next': next_page})}" if next_page else ""),
        )
        if wait is not None:
            page.headers["Retry-After"] = str(wait)
        return page
    except StorageError:
        session = console.sessions.new(time.time())
        return render(request, console, session, "error.html", 503, message_key="storage_down")
    session = console.sessions.sign_in(user, time.time())
    response = RedirectResponse(next_page or "/console/queue", 303)
    set_session(response, request, session)
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    """Ends every session its user signed in to so far, copies of this cookie included; storage
    down, the console's 503 page, and the session goes on. A session that already ended (signing
    out at the end of a day longer than ``console_session_hours``) has nothing to end: the
    sign-in page, not the 403 its token, gone with it, would get."""
    session = session_of(request)
    if session is not None and session.user is not None:
        await form(request)
        found: Services = request.app.state.services
        await run_in_threadpool(found.repository.end_sessions, session.user, session.epoch)
    response = RedirectResponse("/console/login", 303)
    forget_session(response, request)
    return response


def remembered(cookie: str, value: str, next: str) -> Response:
    """Back to the console page ``next``, the browser keeping ``value`` in ``cookie`` for a
    year: a preference of the browser's, not of a session, so kept past signing out."""
    response = RedirectResponse(console_page(next) or "/console/queue", 303)
    response.set_cookie(cookie, value, max_age=365 * 86400, samesite="lax")
    return response


@router.get("/lang/{language}")
async def language(language: Language, next: str = "/console/queue") -> Response:
    return remembered(LANG_COOKIE, language, next)


@router.get("/keys/{keys}")
async def shortcut_keys(keys: Literal["on", "off"], next: str = "/console/queue") -> Response:
    """Single-key shortcuts on or off in this browser (WCAG 2.1.4: a speech-input user's
    words, or keys typed where no field has the focus, would take actions by accident)."""
    return remembered(KEYS_COOKIE, keys, next)


@router.get("/queue")
async def queue(
    who: Signed,
    head: Literal[Category, ""] = "",
    kind: Literal[Kind, ""] = "",
    status: Status = "open",
    assignee: Annotated[Text, Query(max_length=64)] = "",
    cursor: str | None = None,
    charging: Charging = None,
) -> HTMLResponse:
    policy = who.found.scoring.policy
    position = query_cursor(cursor, parse_cursor)
    page = await who.call(
        who.found.review.list_items,
        policy,
        status=status,
        head=head or None,
        assignee=assignee or None,
        kind=kind or None,
        cursor=position,
        limit=PAGE_SIZE,
    )
    escalated = await who.call(who.console.reads.escalated_waiting)
    posts = [item.id for item in page.items if item.post_id is not None]
    starts = (
        await who.call(who.console.reads.excerpts, posts, present.EXCERPT_CHARS) if posts else {}
    )
    now = datetime.now(UTC)
    rows = [present.queue_row(item, now, starts.get(item.id)) for item in page.items]
    filters = {"head": head, "kind": kind, "status": status, "assignee": assignee}
    next_url = None
    if page.next:
        next_url = "/console/queue?" + urlencode({**filters, "cursor": page.next})
    return who.page(
        "queue.html",
        rows=rows,
        filters=filters,
        heads=CATEGORIES,
        kinds=KINDS,
        statuses=STATUSES,
        next_url=next_url,
        escalated=escalated,
        charging=charging,
    )


@router.get("/items/{item_id}")
async def item_page(
    item_id: ItemId,
    who: Signed,
    cursor: str | None = None,
    active: str | None = None,
    charging: Charging = None,
) -> HTMLResponse:
    """The item's page; ``cursor`` the page of its account's history it shows (its ``next``
    link's) and ``active`` the page of its active dispositions, each the first where none is
    given."""
    return await show_item(
        who,
        item_id,
        history=query_cursor(cursor, lambda given: parse_history_cursor(given, HISTORY_READ)),
        active=query_cursor(active, appeal_cursor, "active"),
        charging=charging,
    )


async def show_item(
    who: Viewer,
    item_id: int,
    refused: Refusal | None = None,
    history: HistoryPlace | None = None,
    active: tuple[float, int] | None = None,
    *,
    confirming: bool = False,
    charging: int | None = None,
) -> HTMLResponse:
    """The item's page; with ``refused``, as the answer to that refused form of it (with
    ``confirming``, the decision form as typed, its confirmation's step open); with
    ``history``, its account's history after that place; with ``active``, its active
    dispositions after that place; with ``charging``, saying that item's confirmation is still
    charging its batch's members."""
    policy = who.found.scoring.policy
    try:
        item = await who.call(who.found.review.get_item, policy, item_id)
    except NotFoundError:
        return who.page("error.html", 404, message_key="not_found")
    account, history_url, dispositions, dispositions_url = None, None, None, None
    if item.account_id is not None:
        account, history_url, dispositions, dispositions_url = await account_panel(
            who, item_id, item.account_id, history, active
        )
    record = present.record_of(item) or {}
    reasons = record.get("reasons", [])
    t = translator(language_of(who.request))
    zone = who.console.settings.console_zone
    cid = present.cluster_id(item)
    live, index_away = None, False
    if cid:
        try:
            live = await who.call(who.found.neardup.cluster, cid)
        except StoreUnavailableError:
            # the item is in storage: show it, without what only the shared index knows
            log.warning("the shared near-duplicate index failed a console page")
            index_away = True
    earlier_id = present.earlier_post(record)
    stored = await who.call(who.console.reads.post_text, earlier_id) if earlier_id else None
    earlier = present.earlier_text(record, stored)
    compared = present.differences(earlier, item.text or "") if earlier is not None else None
    reads = who.console.reads
    reported = await who.call(reads.item_reports, item_id, ITEM_REPORTS)
    decisions = await who.call(reads.decisions, item_id)
    # only a confirmation is appealed
    appealed = await who.call(reads.item_appeals, item_id) if item.status == "confirmed" else []
    others = None
    if item.account_id is not None:
        others = await who.call(reads.account_items, item.account_id, item_id, ACCOUNT_ITEMS)
    scored_under = record.get("policy_version")
    kept = await who.call(reads.policy_thresholds, scored_under) if scored_under else None
    if kept is None and scored_under == policy.version:
        # this process's own policy, before its maintenance kept it
        kept = present.thresholds(policy)
    rumor_id = present.banked_rumor(record, item.evidence)
    rumor = None
    if rumor_id is not None:
        rumors = await who.call(who.found.repository.rumors)
        rumor = next((r for r in rumors if r.rumor_id == rumor_id), None)
    matched: list[tuple[str, str]] = []
    if item.kind == "bank_match":
        # the rumour's notice is shown with it while the bank holds it
        shown = {k: v for k, v in (item.evidence or {}).items() if not (rumor and k == "notice")}
        matched = present.facts(shown, t, partial(worded, t), zone)
    return who.page(
        "item.html",
        charging=charging,
        item=item,
        record=record,
        evidence_note=present.evidence_note(record, who.found.scoring.model_version),
        pieces=present.pieces(item.text or "", reasons, policy),
        heads=present.head_rows(record, kept, policy),
        scored_under=scored_under,
        policy_note=present.policy_note(t, scored_under, policy.version, kept is not None),
        reasons=present.reason_rows(
            record, policy, who.console.articles, t, partial(worded, t), zone
        ),
        timeline=present.timeline(item, live),
        cluster_size=present.cluster_size(item),
        earlier_item=present.earlier_item(item),
        jumps=present.jumps(item),
        findings=present.findings(item),
        moved=present.moved(item),
        impersonation=present.impersonation(item, who.console.articles),
        signup_batch=present.signup_batch(item),
        registered_together=present.registered_together(item),
        index_away=index_away,
        earlier_id=earlier_id,
        compared=compared,
        rumor=rumor,
        matched=matched,
        reports=reported,
        decisions=decisions,
        held_back=held_back(who, item.status, decisions),
        appeals=appealed,
        others=others,
        account=account,
        history_url=history_url,
        dispositions=dispositions,
        dispositions_url=dispositions_url,
        history_later=history is not None,
        # a dormant account's clock, current: a return since the sweep shows as one
        clock=account if item.kind == dormancy.KIND else None,
        # its warning and its dormancy, as the sweep found them
        dormancy_dates=present.dormancy_dates(item) if item.kind == dormancy.KIND else {},
        initial_credit=policy.credit.initial,
        categories=CATEGORIES,
        basis=present.basis_of(item, policy),
        decided=item.status in FINAL,
        now=datetime.now(UTC),
        refused=refused,
        confirming=confirming,
    )


async def account_panel(
    who: Viewer,
    item_id: int,
    account_id: str,
    history: HistoryPlace | None,
    active: tuple[float, int] | None,
) -> tuple[views.Account, str | None, views.DispositionPage, str | None]:
    """The account an item's page shows: its history after ``history``, newest first, and
    its active dispositions after ``active``, each ``ACCOUNT_HISTORY`` a page as the API pages
    them, with the links to the pages after them (None at the end). An account known by the
    item alone, never charged, is at the initial credit."""
    account = await who.call(
        who.found.review.get_account,
        who.found.scoring.policy,
        account_id,
        cursor=history,
        limit=ACCOUNT_HISTORY,
        order=HISTORY_READ,
        active_limit=ACCOUNT_HISTORY,
    )
    here = f"/console/items/{item_id}?"
    history_url = here + urlencode({"cursor": account.next}) if account.next else None
    dispositions = views.DispositionPage(
        dispositions=account.dispositions, next=account.dispositions_next
    )
    if active is not None:
        dispositions = await who.call(
            who.found.review.account_dispositions, account_id, cursor=active, limit=ACCOUNT_HISTORY
        )
    dispositions_url = (
        here + urlencode({"active": dispositions.next}) if dispositions.next else None
    )
    return account, history_url, dispositions, dispositions_url


def held_back(who: Viewer, status: str, decisions: list[DecisionRow]) -> str | None:
    """Why the rule refuses ``who`` a claim and a decision on an item of ``status``, with
    ``decisions`` on it, whoever holds it (an escalated item: its escalator, or a reviewer,
    since it goes to an admin), the reason of the API's 403; None where it does not. The page
    says it and offers neither."""
    if status in FINAL:
        return None  # decided: a conflict, which the page shows as the item's status
    escalated_by = next((d.reviewer for d in decisions if d.action == "escalate"), None)
    try:
        check_claim(status, None, None, who.name, datetime.now(UTC), escalated_by, who.role)
    except ForbiddenError as exc:
        return exc.reason
    except ConflictError:
        pass
    return None


@router.post("/items/{item_id}/claim")
async def claim(item_id: ItemId, who: Signed, fields: Form) -> Response:
    here = f"/console/items/{item_id}"
    try:
        await who.call(
            who.found.review.claim, who.found.scoring.policy, item_id, who.name, role=who.role
        )
    except REFUSALS as exc:
        return await show_item(who, item_id, who.refusal(here, "claim-form", fields, exc))
    return back(here)


def decision_of(fields: Mapping[str, str]) -> DecisionRequest:
    """The decision the item page's form asks for, as the JSON API's request model reads it
    (ValidationError where it refuses it)."""
    asked = given(fields, "action", "category", "basis", "note", "record_id")
    if asked.get("action") != "confirm":
        # the item page's one form offers a confirmation's category and article with every
        # decision: a dismissal or an escalation is its note's alone
        asked = {k: v for k, v in asked.items() if k not in ("category", "basis")}
    if "basis" in asked:
        # typed as the pages name it (第十八条第六项), given to the model as its code: the
        # JSON API's contract is the code alone
        asked["basis"] = articles.code(asked["basis"])
    # form fields are strings: the record's number is read from its text
    return DecisionRequest.model_validate_strings(asked)


@router.post("/items/{item_id}/confirming")
async def confirming(item_id: ItemId, who: Signed, fields: Form) -> Response:
    """The confirmation's step before it is sent, for a browser without the console's script
    (which opens the same step in the page, sending nothing): a confirmation charges the
    account's credit and applies dispositions, so the page's button asks before its dialog's
    button sends the form to :func:`decide`. Writes nothing: the item's page with the form as
    typed and the step open, the record the reviewer read kept in it; a confirmation the
    request model refuses is refused here, as it would be sent."""
    here = f"/console/items/{item_id}"
    try:
        decision_of({**fields, "action": "confirm"})
    except REFUSALS as exc:
        return await show_item(who, item_id, who.refusal(here, "decision-form", fields, exc))
    # the form as typed, answered with its page as a refused one is, with no reason to give
    typed = {name: value for name, value in fields.items() if name != "csrf"}
    return await show_item(who, item_id, Refusal(here, "decision-form", typed), confirming=True)


@router.post("/items/{item_id}/decision")
async def decide(item_id: ItemId, who: Signed, fields: Form) -> Response:
    here = f"/console/items/{item_id}"
    policy = who.found.scoring.policy
    try:
        body = decision_of(fields)
        # the page's form holds the record it showed, empty for none; a form without the
        # field (a page loaded before it) is decided unchecked, as the API's requests are
        shown = body.shown() or (Shown(None) if "record_id" in fields else None)
        decision = await who.call(
            who.found.review.decide,
            policy,
            item_id,
            who.name,
            body.action,
            body.category,
            body.basis,
            body.note,
            role=who.role,
            shown=shown,
            idem=sent_once(who, fields, f"decision:{item_id}"),
            # a batch's members past its listing are charged in the background, as the API's
            # (service.api.review.decide): thousands take minutes, past the deadline
            charge_later=who.found.scoring.charges_hand_off(),
        )
    except REFUSALS as exc:
        return await show_item(who, item_id, who.refusal(here, "decision-form", fields, exc))
    # the list's most urgent next, whichever the reviewer opened this one from; the page says
    # the charges are still being made, which the reviewer would otherwise take as done
    charging = item_id if decision.charges_pending else None
    return await next_for(who, item_id, from_top=True, charging=charging)


@router.get("/items/{item_id}/next")
async def next_item(item_id: ItemId, who: Signed) -> RedirectResponse:
    """Key ``j``: the item after ``item_id`` in the list it is in (the escalated ones, or the
    open ones), of those this reviewer may take (nobody else holds it, they did not escalate
    it, and an escalated one only for an admin), so that pressing it moves through the list,
    the escalations included; past the list's end, the other list's first, else the list's
    first again; the queue when there is none."""
    return await next_for(who, item_id, from_top=False)


async def next_for(
    who: Viewer, item_id: int, *, from_top: bool, charging: int | None = None
) -> RedirectResponse:
    """The item to open after ``item_id``: the one after it in its list (``from_top``: the
    list's highest, as after a decision, where the most urgent comes first), else as
    :func:`next_item` says; with ``charging``, the page says that item's confirmation is still
    charging its batch's members."""
    told = f"?charging={charging}" if charging is not None else ""
    place = await who.call(who.console.reads.place, item_id)
    if place is None:
        return back(f"/console/queue{told}")
    position, escalated = place
    lists: tuple[Status, Status] = ("escalated", "open") if escalated else ("open", "escalated")
    tries: list[tuple[Status, tuple[float, int] | None]] = [(lists[0], None), (lists[1], None)]
    if not from_top:
        # after this one, then the other list's first, then round to this list's first
        tries = [(lists[0], position), (lists[1], None), (lists[0], None)]
    for status, after in tries:
        # two: one of them may be ``item_id``
        page = await who.call(
            who.found.review.list_items,
            who.found.scoring.policy,
            status=status,
            free_for=who.name,
            role=who.role,
            cursor=after,
            limit=2,
        )
        for item in page.items:
            if item.id != item_id:
                return back(f"/console/items/{item.id}{told}")
    return back(f"/console/queue{told}")


@router.get("/appeals")
async def appeals(
    who: Signed,
    status: Literal[AppealStatus, "all"] = "pending",
    cursor: str | None = None,
    filed: Annotated[int | None, Query(ge=1, le=MAX_ROW_ID)] = None,
) -> HTMLResponse:
    """Pending appeals first of all (a resolved one needs no one); ``status=all`` for every one.
    ``filed``: the appeal the user just filed on a holder's behalf, which the page confirms."""
    return await show_appeals(who, status, cursor, filed=filed)


async def show_appeals(
    who: Viewer,
    status: AppealStatus | Literal["all"] = "pending",
    cursor: str | None = None,
    refused: Refusal | None = None,
    filed: int | None = None,
) -> HTMLResponse:
    """The appeals page; with ``refused``, as the answer to that refused form on it; with
    ``filed``, confirming that appeal where the user filed it on a holder's behalf (a link to
    another's, or to none, confirms nothing)."""
    position = query_cursor(cursor, appeal_cursor)
    confirmed = None
    if filed is not None:
        by = await who.call(who.console.reads.filers, [filed])
        if by.get(filed) == who.name:
            confirmed = await who.call(who.found.review.get_appeal, filed)
    shown = None if status == "all" else status
    page = await who.call(
        who.found.review.list_appeals, status=shown, cursor=position, limit=PAGE_SIZE
    )
    pending = [a for a in page.appeals if a.status == "pending"]
    deciders: dict[int, tuple[str, list[str]]] = {}
    filers: dict[int, str] = {}
    if pending:
        deciders = await who.call(who.console.reads.deciders, [a.item_id for a in pending])
        filers = await who.call(who.console.reads.filers, [a.id for a in pending])
    held = {
        a.id: why
        for a in pending
        if a.item_id in deciders
        and (why := resolution_held_back(who, *deciders[a.item_id], filers.get(a.id)))
    }
    next_url = None
    if page.next:
        next_url = "/console/appeals?" + urlencode({"status": shown or "all", "cursor": page.next})
    return who.page(
        "appeals.html",
        page=page,
        held=held,
        shown=shown or "all",
        statuses=[*APPEAL_STATUSES, "all"],
        next_url=next_url,
        refused=refused,
        filed=confirmed,
    )


def resolution_held_back(
    who: Viewer, decided_by: str, escalated_by: list[str], filed_by: str | None
) -> str | None:
    """Why the rule refuses ``who`` the resolution of an appeal, filed by ``filed_by``, of a
    decision by ``decided_by`` (their own; an escalated item's, for a reviewer and for whoever
    escalated it; one they filed), the reason of the API's 403; None where it does not. The
    appeal's row says it and offers neither action."""
    try:
        check_resolver(decided_by, who.name, escalated_by, who.role, filed_by)
    except ForbiddenError as exc:
        return exc.reason
    return None


@router.post("/appeals")
async def file_appeal(who: Signed, fields: Form) -> Response:
    """An appeal that reached the trust team by another channel, filed on the holder's behalf."""
    try:
        # form fields are strings: the item's number is read from its text, as in a query
        body = AppealRequest.model_validate_strings(
            given(fields, "account_id", "item_id", "reason")
        )
        filed = await who.call(
            who.found.review.file_appeal,
            who.found.scoring.policy,
            account_id=body.account_id,
            item_id=body.item_id,
            reason=body.reason,
            filed_by=who.name,
            on_behalf=True,
            idem=sent_once(who, fields, "appeal"),
        )
    except REFUSALS as exc:
        refused = who.refusal("/console/appeals", "file-appeal", fields, exc)
        return await show_appeals(who, refused=refused)
    return back(f"/console/appeals?filed={filed.id}")


@router.post("/appeals/{appeal_id}/decision")
async def decide_appeal(appeal_id: ItemId, who: Signed, fields: Form) -> Response:
    try:
        body = AppealDecisionRequest.model_validate(given(fields, "action", "note"))
        await who.call(
            who.found.review.decide_appeal,
            who.found.scoring.policy,
            appeal_id,
            who.name,
            body.action,
            body.note,
            role=who.role,
            idem=sent_once(who, fields, f"appeal:{appeal_id}"),
        )
    except REFUSALS as exc:
        refused = who.refusal("/console/appeals", f"appeal-{appeal_id}", fields, exc)
        return await show_appeals(who, refused=refused)
    return back("/console/appeals")


@router.get("/reports")
async def reports(who: Signed, all: bool = False, cursor: str | None = None) -> HTMLResponse:
    """Open reports, the soonest due first, so that the overdue ones lead however many wait;
    ``all=true`` for every one."""
    position = query_cursor(cursor, appeal_cursor)
    rules = who.found.scoring.policy.review
    now = datetime.now(UTC)
    page = await who.call(
        who.console.reads.reports,
        open_only=not all,
        late_before=reports_late_before(rules, now),
        cursor=position,
        limit=PAGE_SIZE,
    )
    deadlines = {r.id: report_due(rules, r.created_at) for r in page.rows}
    next_url = None
    if page.next:
        next_url = "/console/reports?" + urlencode({"all": str(all).lower(), "cursor": page.next})
    return who.page("reports.html", page=page, deadlines=deadlines, now=now, next_url=next_url)


@router.get("/bank")
async def bank(who: Admin) -> HTMLResponse:
    return await show_bank(who)


async def show_bank(who: Viewer, refused: Refusal | None = None) -> HTMLResponse:
    """The bank's page; with ``refused``, as the answer to that refused form on it."""
    rumors = await who.call(who.found.repository.rumors)
    return who.page("bank.html", rumors=rumors, refused=refused)


@router.post("/bank")
async def add_rumor(who: BankEditor, fields: Form) -> Response:
    try:
        body = BankForm.model_validate(given(fields, "text", "notice"))
        await who.call(
            bank_rumor,
            who.found.neardup,
            who.found.repository,
            text=body.text,
            post_id=None,
            notice=body.notice,
            by=who.name,
            idem=sent_once(who, fields, "rumor"),
        )
    except REFUSALS as exc:
        return await show_bank(who, who.refusal("/console/bank", "add-rumor", fields, exc))
    return back("/console/bank")


@router.post("/bank/{rumor_id}/delete")
async def delete_rumor(
    rumor_id: Annotated[Id, Path(max_length=32)], who: BankEditor, fields: Form
) -> Response:
    try:
        await who.call(
            unbank_rumor,
            who.found.neardup,
            who.found.repository,
            rumor_id,
            by=who.name,
            idem=sent_once(who, fields, f"rumor-removal:{rumor_id}"),
        )
    except REFUSALS as exc:
        refused = who.refusal("/console/bank", f"remove-{rumor_id}", fields, exc)
        return await show_bank(who, refused)
    return back("/console/bank")


@router.get("/dashboard")
async def dashboard(who: Admin) -> HTMLResponse:
    board, policy = who.console.dashboard, who.found.scoring.policy
    if board.tallies is None or time.monotonic() - board.read_at > DASHBOARD_S:
        zone = who.console.settings.console_zone
        read = await who.call(present.tallies, who.console.reads, datetime.now(UTC), zone, policy)
        board.read_at, board.tallies, board.drawn = time.monotonic(), read, {}
    tallied, language = board.tallies, language_of(who.request)
    t = translator(language)
    plots = board.drawn.get(language)
    if plots is None:
        plots = await who.call(present.dashboard, tallied, policy, t, partial(worded, t))
        board.drawn[language] = plots
    scores_title, scores_counted = present.scores_said(tallied, policy, t, partial(worded, t))
    return who.page(
        "dashboard.html",
        drawn_at=tallied.now,
        plots=plots,
        flagged_title=present.flagged_title(tallied, t),
        scores_title=scores_title,
        scores_counted=scores_counted,
    )
