"""Stored rows as the views the API answers with (:mod:`service.review.views`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

from service.policy import Policy
from service.review import appeals as appeal_rules
from service.review import credit, dispositions, dormancy, items, views
from service.review.items import FINAL, Violation
from service.storage.tables import (
    CreditEntry,
    ReviewItem,
    StoredAccount,
    StoredAppeal,
    StoredDisposition,
    StoredReport,
)

APPLIED, LIFTED = "disposition.applied", "disposition.lifted"
"""The kinds of the records that chain a disposition applied and one lifted."""


def utc(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes (stored as UTC wall time); PostgreSQL aware ones."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def maybe_utc(moment: datetime | None) -> datetime | None:
    return None if moment is None else utc(moment)


def item_view(
    policy: Policy,
    row: ReviewItem,
    record: dict[str, Any] | None,
    now: datetime,
    with_text: bool = False,
) -> views.Item:
    lease = maybe_utc(row.lease_until)
    live = lease is not None and lease > now and row.status not in FINAL
    evidence = row.evidence
    if record is not None:
        evidence = {**(evidence or {}), "record": record}
    return views.Item(
        id=row.id,
        kind=cast(items.Kind, row.kind),
        head=row.head,
        post_id=row.post_id,
        account_id=row.account_id,
        priority=items.priority(policy.review, row.urgency, now),
        severity=row.severity,
        reach=row.reach,
        reports=row.reports,
        status=cast(items.Status, row.status),
        assignee=row.assignee if live else None,
        lease_until=lease if live else None,
        deadline=None
        if row.reported_at is None
        else items.report_due(policy.review, utc(row.reported_at)),
        enqueued_at=utc(row.enqueued_at),
        model_version=row.model_version,
        policy_version=row.policy_version,
        record_id=row.record_id,
        evidence=evidence,
        text=row.text if with_text else None,
        # a flagged record adopts a report item with its text, so this follows the post
        post_unknown=row.kind == "report" and row.post_id is not None and row.text is None,
    )


def change_view(entry: CreditEntry) -> views.CreditChange:
    return views.CreditChange(
        id=entry.id,
        account_id=entry.account_id,
        delta=entry.delta,
        credit=entry.credit,
        level=entry.level,
        reason=entry.reason,
        item_id=entry.item_id,
        appeal_id=entry.appeal_id,
        policy_version=entry.policy_version,
        at=utc(entry.at),
    )


def disposition_view(
    row: StoredDisposition, now: datetime, as_applied: bool = False
) -> views.Disposition:
    """The disposition at ``now``; ``as_applied``, as it was applied, before any lift."""
    ends = maybe_utc(row.ends_at)
    lifted_at = None if as_applied else maybe_utc(row.lifted_at)
    return views.Disposition(
        id=row.id,
        account_id=row.account_id,
        kind=row.kind,
        basis=row.basis,
        item_id=row.item_id,
        starts_at=utc(row.starts_at),
        ends_at=ends,
        decided_by=row.decided_by,
        policy_version=row.policy_version,
        lifted_at=lifted_at,
        lifted_by=None if as_applied else row.lifted_by,
        active=dispositions.is_active(ends, lifted_at is not None, now),
    )


def disposition_change_view(
    seq: int, kind: str, at: datetime, payload: dict[str, Any], row: StoredDisposition
) -> views.DispositionChange:
    """The change a ``disposition.applied`` or ``disposition.lifted`` record chains, with the
    disposition as the change left it."""
    moment = utc(at)
    applied = kind == APPLIED
    return views.DispositionChange(
        seq=seq,
        change="applied" if applied else "lifted",
        at=moment,
        appeal_id=None if applied else payload.get("appeal"),
        # a record from before corrections lifted anything names its appeal alone
        cause=None if applied else payload.get("cause", "appeal"),
        disposition=disposition_view(row, moment, as_applied=applied),
    )


def account_view(
    account: StoredAccount,
    active: views.DispositionPage,
    history: list[views.CreditChange | views.Disposition],
    next_: str | None,
) -> views.Account:
    """The account with the first page of its ``active`` dispositions and a page of its
    ``history`` (``next_`` the cursor of the page after it)."""
    return views.Account(
        account_id=account.account_id,
        credit=account.credit,
        level=account.level,
        name=account.name,
        followers=account.followers,
        registered_at=maybe_utc(account.registered_at),
        last_login_at=maybe_utc(account.login_at),
        active_at=maybe_utc(account.active_at),
        active_by=cast(dormancy.Use | None, account.active_by),
        warned_at=maybe_utc(account.warned_at),
        dormant_at=maybe_utc(account.dormant_at),
        dispositions=active.dispositions,
        dispositions_next=active.next,
        history=history,
        next=next_,
    )


def new_account_view(policy: Policy, account_id: str) -> views.Account:
    """An account the service knows that has no credit record yet: never charged, so at the
    initial credit, without a profile."""
    rules = policy.credit
    return views.Account(
        account_id=account_id,
        credit=rules.initial,
        level=credit.level(rules, rules.initial).name,
        name=None,
        followers=0,
        dispositions=[],
        history=[],
    )


def report_view(
    policy: Policy, report: StoredReport, item: ReviewItem, now: datetime, overturned: bool
) -> views.Report:
    """The report; ``overturned`` where an upheld appeal overturned its item's confirmation
    (:func:`~service.storage.item_steps.overturned`), so that nobody is told a post cleared
    on appeal is a confirmed violation."""
    filed = utc(report.created_at)
    due = items.report_due(policy.review, filed)
    return views.Report(
        id=report.id,
        post_id=report.post_id,
        account_id=report.account_id,
        category=cast(Violation, report.category),
        text=report.text,
        reporter_id=report.reporter_id,
        item_id=item.id,
        item_reports=item.reports,
        status="overturned" if overturned else cast(items.Status, item.status),
        created_at=filed,
        deadline=due,
        overdue=items.report_overdue(item.status, due, now),
    )


def appeal_view(
    appeal: StoredAppeal,
    now: datetime,
    reversed_: list[views.CreditChange | views.Disposition] | None = None,
) -> views.Appeal:
    deadline = utc(appeal.deadline)
    return views.Appeal(
        id=appeal.id,
        account_id=appeal.account_id,
        item_id=appeal.item_id,
        reason=appeal.reason,
        status=cast(appeal_rules.AppealStatus, appeal.status),
        on_behalf=appeal.on_behalf,
        filed_at=utc(appeal.filed_at),
        deadline=deadline,
        overdue=appeal_rules.overdue(appeal.status, deadline, now),
        resolved_by=appeal.resolved_by,
        resolved_at=maybe_utc(appeal.resolved_at),
        note=appeal.note,
        reversed=reversed_ or [],
    )
