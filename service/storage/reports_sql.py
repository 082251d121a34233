"""Reports and appeals (art20's complaints and appeals) in storage: a report joins or opens its
post's or account's item, an appeal of a confirmed violation is filed and decided, each in one
transaction with its hash-chained records, as :mod:`service.storage.review_sql`'s writes are."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import and_, case, func, select

from service.policy import Policy
from service.review import appeals as appeal_rules
from service.review import chain, views
from service.review.appeals import AppealAction, AppealStatus
from service.review.items import EARLIER, ConflictError, NotFoundError, Violation
from service.storage.credit_steps import charged_at, reverse, violator
from service.storage.item_steps import (
    OPEN_STATUSES,
    after_cursor,
    charged_already,
    confirmed_item,
    earlier_decision,
    escalators,
    final_decision,
    item_to_join,
    known_account,
    last_decided,
    new_item,
    overturned,
    post_owner,
    urgency_of,
)
from service.storage.protected_steps import still_uncorrected
from service.storage.repository import Idempotency, Role
from service.storage.review_rows import appeal_view, maybe_utc, report_view, utc
from service.storage.review_sql import ReviewSql
from service.storage.tables import (
    ReviewItem,
    StoredAccount,
    StoredAppeal,
    StoredPost,
    StoredReport,
)
from service.storage.transaction import Tx, lock_protected_names, locking


class ReportsSql(ReviewSql):
    """Mixed into :class:`~service.storage.sql.SqlRepository`."""

    def file_report(
        self,
        policy: Policy,
        *,
        post_id: str | None,
        account_id: str | None,
        category: Violation,
        text_: str,
        reporter: str,
        reporter_id: str | None = None,
        idem: Idempotency | None = None,
        now: datetime | None = None,
    ) -> views.Report:
        """Store a complaint and join it to the post's (or account's) open item, raising its
        priority, or to the item that confirmed the post (the post is decided and charged once:
        the report's answer is that decision, ``overturned`` once an appeal overturned it), or
        open a report item for it, as a report filed after that overturn does. Each reporter
        counts once towards an item's priority: the key it came with (``reporter``) and the
        platform's id of its user (``reporter_id``), or the key alone when it gave none. A
        report naming another account than the one the post's stored record (or the item an
        earlier report opened) names is refused (``post_account``); one naming the account of
        an open item that has none (an earlier report named none) gives the item that account,
        which its record names (``gave_account``)."""

        def run(tx: Tx) -> views.Report:
            known_owner = post_owner(tx, post_id)
            if known_owner is not None and account_id not in (None, known_owner):
                # the post's record (or the report before) says whose it is: a reporter naming
                # another account would have the item charge that one for someone else's post
                raise ConflictError(
                    "post_account", post_id=post_id, account_id=known_owner, given=account_id
                )
            item = item_to_join(tx.session, post_id, account_id) or _answering(tx, post_id)
            if item is not None and account_id not in (None, item.account_id or account_id):
                # read under the item's lock: a report naming another account, which gave the
                # item its account after this one read the post's owner, committed meanwhile
                raise ConflictError(
                    "post_account", post_id=post_id, account_id=item.account_id, given=account_id
                )
            # the account this report gives an item opened without one, which its record names
            gave: dict[str, str] = {}
            if item is None:
                # a report names the post; the item is charged to whoever posted it
                owner = known_owner or account_id
                known = tx.session.get(StoredAccount, owner) if owner else None
                merge_key = f"post:{post_id}" if post_id else f"account:{account_id}"
                # a post (or account) reported after a dismissal, or after an appeal overturned
                # its confirmation: its reviewer weighs the complaint knowing how it was judged,
                # as a re-score's item does
                decided = last_decided(tx.session, merge_key)
                linked = {EARLIER: earlier_decision(tx.session, decided)} if decided else {}
                item = new_item(
                    tx,
                    kind="report",
                    post_id=post_id,
                    account_id=owner,
                    merge_key=merge_key,
                    head=category,
                    severity="report",
                    reach=known.followers if known is not None else 0,
                    evidence={"categories": {}, **linked},
                    after=None if decided is None else decided.id,
                )
                # the reviewer reads the post, and its label is exported with the text
                stored = tx.session.get(StoredPost, post_id) if post_id is not None else None
                item.text = stored.text if stored is not None else None
                tx.session.flush()
            elif item.account_id is None and item.status in OPEN_STATUSES:
                # opened by a report that named no account (or a match of a post unknown
                # then): this one names it, and the item is charged to it as it would have
                # been had this report come first
                owner = known_owner or account_id
                known = tx.session.get(StoredAccount, owner) if owner else None
                item.account_id = owner
                item.reach = max(item.reach, known.followers if known is not None else 0)
                gave = {"gave_account": owner} if owner else {}
            # one reporter filing again is one voice, not a way up the queue
            item.reports += _first_report_by(tx, item.id, reporter, reporter_id)
            # the item owes its first report an answer soonest, however long it was queued
            if item.reported_at is None or utc(item.reported_at) > tx.now:
                item.reported_at = tx.now
            counts = dict((item.evidence or {}).get("categories", {}))
            counts[category] = counts.get(category, 0) + 1
            item.evidence = {**(item.evidence or {}), "categories": counts}
            item.urgency = urgency_of(policy, item)
            tx.session.flush()
            report = StoredReport(
                post_id=post_id,
                account_id=account_id,
                category=category,
                text=text_,
                item_id=item.id,
                reporter=reporter,
                reporter_id=reporter_id,
                created_at=tx.now,
            )
            tx.session.add(report)
            tx.session.flush()
            tx.record(
                "report.filed",
                f"report:{report.id}",
                {
                    "item": item.id,
                    "post_id": post_id,
                    "account_id": account_id,
                    "category": category,
                    "text_sha256": chain.text_digest(text_),
                    "reporter": reporter,
                    # the chain is never erased: a platform user's id goes in as the digest
                    # subject ids have (the report's row keeps it, to count reporters)
                    "reporter_id_digest": None
                    if reporter_id is None
                    else self.subjects.digest(reporter_id),
                    **gave,
                },
            )
            return report_view(policy, report, item, tx.now, overturned(tx.session, item))

        return self._once(policy, now, idem, views.Report, run)

    def get_report(
        self, policy: Policy, report_id: int, now: datetime | None = None
    ) -> views.Report:
        with self._session() as session:
            report = session.get(StoredReport, report_id)
            if report is None:
                raise NotFoundError("no_report", report_id=report_id)
            item = session.get(ReviewItem, report.item_id)
            assert item is not None
            moment = now or datetime.now(UTC)
            return report_view(policy, report, item, moment, overturned(session, item))

    def file_appeal(
        self,
        policy: Policy,
        *,
        account_id: str,
        item_id: int,
        reason: str,
        filed_by: str,
        on_behalf: bool = False,
        idem: Idempotency | None = None,
        now: datetime | None = None,
    ) -> views.Appeal:
        """File an appeal of a confirmed violation, by the holder through the platform's key,
        or ``on_behalf`` of the holder by ``filed_by``, a console user
        (:func:`appeals.check_again`: one of each, the holder's only after a rejection of the
        other)."""

        def run(tx: Tx) -> views.Appeal:
            if not known_account(tx.session, account_id):
                raise NotFoundError("no_account", account_id=account_id)
            # locked, so that the holder's appeal and one filed on their behalf at the same
            # moment (which the unique index tells apart) cannot both pass the check below
            item = tx.session.scalar(locking(select(ReviewItem).where(ReviewItem.id == item_id)))
            if item is None:
                raise NotFoundError("no_item", item_id=item_id)
            if not violator(tx.session, item, account_id) or item.status != "confirmed":
                raise ConflictError("not_a_violation_of", item_id=item_id, account_id=account_id)
            charged = _charged_at(tx, item, account_id)
            earlier = tx.session.scalars(
                select(StoredAppeal).where(
                    StoredAppeal.item_id == item_id, StoredAppeal.account_id == account_id
                )
            ).all()
            reopened = appeal_rules.check_again(
                item_id,
                [
                    appeal_rules.Filed(a.id, a.on_behalf, a.status, maybe_utc(a.resolved_at))
                    for a in earlier
                ],
                on_behalf,
            )
            deadline = appeal_rules.check_filing(policy.appeals, charged, tx.now, reopened)
            appeal = StoredAppeal(
                account_id=account_id,
                item_id=item_id,
                reason=reason,
                status="pending",
                filed_by=filed_by,
                on_behalf=on_behalf,
                filed_at=tx.now,
                deadline=deadline,
            )
            tx.session.add(appeal)
            tx.session.flush()
            tx.record(
                "appeal.filed",
                f"appeal:{appeal.id}",
                {
                    "account_id": account_id,
                    "item": item_id,
                    "deadline": deadline.isoformat(),
                    "reason_sha256": chain.text_digest(reason),
                    "filed_by": filed_by,
                    "on_behalf": on_behalf,
                },
            )
            return appeal_view(appeal, tx.now)

        return self._once(policy, now, idem, views.Appeal, run)

    def decide_appeal(
        self,
        policy: Policy,
        appeal_id: int,
        reviewer: str,
        action: AppealAction,
        note: str | None,
        *,
        role: Role = "reviewer",
        idem: Idempotency | None = None,
        now: datetime | None = None,
    ) -> views.Appeal:
        """Resolve an appeal, as ``reviewer`` of ``role`` (:func:`appeals.check_resolver`);
        upholding it reverses the credit change and lifts the dispositions of the appealed
        decision, by new ledger entries and records."""

        def run(tx: Tx) -> views.Appeal:
            if action == "uphold":
                # before the appeal's lock, as advisory locks are taken (locking): upholding
                # may terminate a name still uncorrected (still_uncorrected), read against
                # the entries, and an entry being added locks the account's items meanwhile
                lock_protected_names(tx, shared=True)
            appeal = tx.session.scalar(
                locking(select(StoredAppeal).where(StoredAppeal.id == appeal_id))
            )
            if appeal is None:
                raise NotFoundError("no_appeal", appeal_id=appeal_id)
            if appeal.status != "pending":
                raise ConflictError("appeal_resolved", appeal_id=appeal_id, status=appeal.status)
            decided_by = final_decision(tx.session, appeal.item_id).reviewer
            appeal_rules.check_resolver(
                decided_by,
                reviewer,
                escalators(tx.session, appeal.item_id),
                role,
                filed_by=appeal.filed_by,
            )
            appeal.status = "upheld" if action == "uphold" else "rejected"
            appeal.resolved_by, appeal.resolved_at, appeal.note = reviewer, tx.now, note
            tx.record(
                "appeal.decision",
                f"appeal:{appeal.id}",
                {
                    "action": action,
                    "reviewer": reviewer,
                    "item": appeal.item_id,
                    "note_sha256": None if note is None else chain.text_digest(note),
                },
            )
            reversed_: list[views.CreditChange | views.Disposition] = []
            if action == "uphold":
                reversed_ = reverse(tx, appeal, reviewer)
                # a close lifted that stood in for art8's termination of a name still
                # uncorrected gives way to the termination
                lifted = [d for d in reversed_ if isinstance(d, views.Disposition)]
                reversed_ += still_uncorrected(tx, appeal.account_id, lifted)
            return appeal_view(appeal, tx.now, reversed_)

        return self._once(policy, now, idem, views.Appeal, run)

    def get_appeal(self, appeal_id: int, now: datetime | None = None) -> views.Appeal:
        with self._session() as session:
            appeal = session.get(StoredAppeal, appeal_id)
            if appeal is None:
                raise NotFoundError("no_appeal", appeal_id=appeal_id)
            return appeal_view(appeal, now or datetime.now(UTC))

    def list_appeals(
        self,
        *,
        status: AppealStatus | None = None,
        overdue_only: bool = False,
        cursor: tuple[float, int] | None = None,
        limit: int = 100,
        now: datetime | None = None,
    ) -> views.AppealPage:
        moment = now or datetime.now(UTC)
        late = and_(StoredAppeal.status == "pending", StoredAppeal.deadline < moment)
        query = select(StoredAppeal).order_by(StoredAppeal.deadline, StoredAppeal.id)
        if status is not None:
            query = query.where(StoredAppeal.status == status)
        if overdue_only:
            query = query.where(late)
        if cursor is not None:
            query = query.where(after_cursor(StoredAppeal.deadline, StoredAppeal.id, cursor))
        # one snapshot: a decision committing between the page's read and the counts' would
        # have them disagree
        with self._snapshot() as session:
            rows = session.scalars(query.limit(limit + 1)).all()
            # the pending ones alone, in one statement: not every appeal ever filed, by status
            pending, overdue = session.execute(
                select(func.count(), func.count(case((StoredAppeal.deadline < moment, 1)))).where(
                    StoredAppeal.status == "pending"
                )
            ).one()
        last = rows[limit - 1] if len(rows) > limit else None
        return views.AppealPage(
            appeals=[appeal_view(a, moment) for a in rows[:limit]],
            pending=int(pending),
            overdue=int(overdue),
            next=None if last is None else appeal_rules.cursor(utc(last.deadline), last.id),
        )


def _answering(tx: Tx, post_id: str | None) -> ReviewItem | None:
    """The decided item a report of the post joins, locked: the one that confirmed it, whose
    decision answers the report without a second charge. None where an upheld appeal
    overturned that confirmation: the post stands cleared, as a dismissed one does, and a
    complaint filed since is a new case for a reviewer (nobody reads the cleared item again)."""
    confirmed = confirmed_item(tx, post_id)
    if confirmed is None or overturned(tx.session, confirmed):
        return None
    return confirmed


def _first_report_by(tx: Tx, item_id: int, reporter: str, reporter_id: str | None) -> bool:
    user = (
        StoredReport.reporter_id.is_(None)
        if reporter_id is None
        else StoredReport.reporter_id == reporter_id
    )
    earlier = tx.session.scalar(
        select(StoredReport.id)
        .where(StoredReport.item_id == item_id, StoredReport.reporter == reporter, user)
        .limit(1)
    )
    return earlier is None


def _charged_at(tx: Tx, item: ReviewItem, account_id: str) -> datetime:
    """When the item's confirmation charged the member, from which its window to appeal runs;
    refuses an appeal by a member whom it charged nothing: the post was charged, and is
    appealed, on the item that charged it."""
    charged = charged_at(tx.session, item.id, account_id)
    if charged is not None:
        return charged
    other = charged_already(tx, item, account_id)
    if other is None:
        raise ConflictError("not_a_violation_of", item_id=item.id, account_id=account_id)
    raise ConflictError(
        "charged_by_other", item_id=item.id, account_id=account_id, charged_by=other.charged_by
    )
