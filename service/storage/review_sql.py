"""The review machinery's storage over SQLAlchemy: each write is one transaction that runs the
rules of :mod:`service.review` and appends its hash-chained records, so a write is stored whole
or not at all.

Writers that race lock rows in one order: the item (or appeal), then the account, then the
chain's head last. On SQLite every write transaction begins ``IMMEDIATE`` (one writer at a time,
taken before the first read, so that no transaction has to upgrade its lock and fail).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from functools import cached_property
from types import EllipsisType
from typing import Any, TypeVar, cast

from pydantic import BaseModel
from sqlalchemy import (
    CompoundSelect,
    Engine,
    and_,
    exists,
    func,
    null,
    or_,
    select,
    text,
    union_all,
)
from sqlalchemy.orm import Session

from service.policy import Policy
from service.review import appeals as appeal_rules
from service.review import chain, dormancy, items, registration, views
from service.review import followers as followers_rules
from service.review.appeals import AppealAction, AppealStatus
from service.review.dispositions import Standing, Stop
from service.review.items import (
    EARLIER,
    Action,
    Category,
    ConflictError,
    NotFoundError,
    Violation,
)
from service.storage.repository import (
    Idempotency,
    IdempotencyMismatchError,
    StorageError,
    reads_only,
)
from service.storage.review_rows import (
    APPLIED,
    LIFTED,
    account_view,
    appeal_view,
    disposition_change_view,
    item_view,
    maybe_utc,
    new_account_view,
    report_view,
    utc,
)
from service.storage.review_steps import (
    OVERTURNED,
    Tx,
    accounts_of,
    active_kinds,
    active_now,
    after_cursor,
    append_records,
    apply_dormancy,
    art8_suspended,
    earlier_decision,
    final_decision,
    flag_account,
    held_item,
    hold_name,
    item_to_join,
    known_account,
    last_decided,
    lift,
    lock_protected_names,
    lock_subject,
    locked_account,
    lost_race,
    new_item,
    open_item,
    overturned,
    post_owner,
    protected_in,
    record_decision,
    restore,
    reverse,
    subject_blacklisted_by,
    subject_holds,
    unauthorised,
    urgency_of,
    violation,
    wake,
)
from service.storage.tables import (
    AuditHead,
    AuditRecord,
    CreditEntry,
    HeldName,
    IdempotentWrite,
    ReviewDecision,
    ReviewItem,
    StoredAccount,
    StoredAppeal,
    StoredDisposition,
    StoredPost,
    StoredRecord,
    StoredReport,
)
from service.subject_key import installed as installed_subject_key

M = TypeVar("M", bound=BaseModel)
RETRIES = 5


class ReviewSql:
    """Mixed into :class:`~service.storage.sql.SqlRepository`."""

    engine: Engine
    _subject_key: registration.SubjectKey | None
    _session: Callable[[], AbstractContextManager[Session]]

    @cached_property
    def subjects(self) -> registration.SubjectKey:
        """The key subjects are stored and compared under: the one the repository was given,
        else the settings' (read when first needed: a command that compares no subject reads
        no key, nor draws a key file)."""
        return self._subject_key or installed_subject_key()

    # --- transactions ---------------------------------------------------------------------

    @contextmanager
    def _writing(self) -> Iterator[Session]:
        """A write transaction; on SQLite it takes the write lock before its first read."""
        with self._session() as session:
            if self.engine.dialect.name == "sqlite":
                session.execute(text("BEGIN IMMEDIATE"))
            yield session

    @contextmanager
    def _write(self, policy: Policy, now: datetime | None) -> Iterator[Tx]:
        with self._writing() as session:
            tx = Tx(session, now or datetime.now(UTC), policy)
            yield tx
            append_records(session, tx.now, tx.log)

    def _once(
        self,
        policy: Policy,
        now: datetime | None,
        idem: Idempotency | None,
        model: type[M],
        run: Callable[[Tx], M],
    ) -> M:
        """Run ``run`` in a write transaction, once per idempotency key: a retry with the key
        gets the stored answer. Retried on a lost race (unique key, deadlock)."""
        for attempt in range(RETRIES):
            try:
                with self._write(policy, now) as tx:
                    if idem is not None:
                        stored = tx.session.get(IdempotentWrite, (idem.caller, idem.key))
                        if stored is not None:
                            if stored.fingerprint != idem.fingerprint:
                                raise IdempotencyMismatchError(
                                    "this Idempotency-Key was used with a different request"
                                )
                            return model.model_validate(stored.response)
                    result = run(tx)
                    if idem is not None:
                        tx.session.add(
                            IdempotentWrite(
                                caller=idem.caller,
                                key=idem.key,
                                fingerprint=idem.fingerprint,
                                response=result.model_dump(mode="json"),
                                created_at=tx.now,
                            )
                        )
                    return result
            except StorageError as exc:
                if attempt == RETRIES - 1 or not lost_race(exc):
                    raise
        raise AssertionError("unreachable")

    # --- the queue ------------------------------------------------------------------------

    def list_items(
        self,
        policy: Policy,
        *,
        status: str = "open",
        head: str | None = None,
        assignee: str | None = None,
        kind: str | None = None,
        free_for: str | None = None,
        cursor: tuple[float, int] | None = None,
        limit: int | None = None,
        now: datetime | None = None,
    ) -> views.ItemPage:
        """Items by priority (highest first), ``limit`` at a time after ``cursor``; with
        ``free_for``, only those that reviewer may take now: no other reviewer holds a live
        lease on them, and they did not escalate them."""
        limit = limit or policy.review.page_size
        moment = now or datetime.now(UTC)
        query = select(ReviewItem, StoredRecord.record).outerjoin(
            StoredRecord, StoredRecord.id == ReviewItem.record_id
        )
        query = query.where(ReviewItem.status == status)
        if head is not None:
            query = query.where(ReviewItem.head == head)
        if assignee is not None:
            # a lease that ended holds the item to nobody, as the item itself then shows
            query = query.where(ReviewItem.assignee == assignee, ReviewItem.lease_until > moment)
        if kind is not None:
            query = query.where(ReviewItem.kind == kind)
        if free_for is not None:
            # the complement of what items.check_claim refuses: another's lease, and an
            # escalation by this reviewer (which asks for another's eyes)
            escalated_by = exists().where(
                ReviewDecision.item_id == ReviewItem.id,
                ReviewDecision.action == "escalate",
                ReviewDecision.reviewer == free_for,
            )
            query = query.where(
                or_(
                    ReviewItem.assignee.is_(None),
                    ReviewItem.assignee == free_for,
                    ReviewItem.lease_until.is_(None),
                    ReviewItem.lease_until <= moment,
                ),
                ~escalated_by,
            )
        if cursor is not None:
            after, last_id = cursor
            query = query.where(
                or_(
                    ReviewItem.urgency < after,
                    and_(ReviewItem.urgency == after, ReviewItem.id < last_id),
                )
            )
        query = query.order_by(ReviewItem.urgency.desc(), ReviewItem.id.desc()).limit(limit + 1)
        with self._session() as session:
            rows = session.execute(query).all()
        page = [item_view(policy, row[0], row[1], moment) for row in rows[:limit]]
        more = len(rows) > limit
        last = rows[limit - 1][0] if more else None
        return views.ItemPage(
            items=page, next=f"{last.urgency!r}_{last.id}" if last is not None else None
        )

    def get_item(self, policy: Policy, item_id: int, now: datetime | None = None) -> views.Item:
        with self._session() as session:
            row = session.execute(
                select(ReviewItem, StoredRecord.record)
                .outerjoin(StoredRecord, StoredRecord.id == ReviewItem.record_id)
                .where(ReviewItem.id == item_id)
            ).first()
        if row is None:
            raise NotFoundError("no_item", item_id=item_id)
        return item_view(policy, row[0], row[1], now or datetime.now(UTC), with_text=True)

    def claim(
        self, policy: Policy, item_id: int, reviewer: str, now: datetime | None = None
    ) -> views.Lease:
        """Keep the item to ``reviewer`` for the policy's lease (again, to renew it)."""
        with self._write(policy, now) as tx:
            item = held_item(tx, item_id, reviewer)
            item.assignee = reviewer
            item.lease_until = items.lease_end(policy.review, tx.now)
            return views.Lease(item_id=item.id, assignee=reviewer, lease_until=item.lease_until)

    def decide(
        self,
        policy: Policy,
        item_id: int,
        reviewer: str,
        action: Action,
        category: Category | None,
        basis: str | None,
        note: str | None = None,
        *,
        idem: Idempotency | None = None,
        now: datetime | None = None,
    ) -> views.Decision:
        """Decide an item: its status, the decision, and on a confirmed violation the account's
        credit change and dispositions, all in one transaction."""

        def run(tx: Tx) -> views.Decision:
            item = held_item(tx, item_id, reviewer)
            items.check_action(item.status, action)
            if action == "confirm" and category is not None:
                dormancy.check_category(item.kind, category, item.id)
            row = record_decision(tx, item, action, category, basis, note, reviewer)
            changes: list[views.CreditChange] = []
            applied: list[views.Disposition] = []
            uncharged: list[views.Uncharged] = []
            if action == "confirm" and category == dormancy.CATEGORY:
                # the measure the service agreement provides, charged to nobody
                if item.account_id is not None:
                    locked_account(tx, item.account_id)
                    applied = apply_dormancy(tx, item.account_id, item.id, reviewer)
            elif action == "confirm" and category is not None:
                if not accounts_of(item):
                    uncharged.append(_nobody_to_charge(item))
                # in one order everywhere, so that two decisions on overlapping clusters
                # cannot wait for each other's account
                for account_id in accounts_of(item):
                    # under the account's lock, so that two items of one post confirmed at
                    # once charge it once
                    locked_account(tx, account_id)
                    charged = _charged_already(tx, item, account_id)
                    if charged is not None:
                        uncharged.append(charged)
                        continue
                    change, steps = violation(
                        tx, item, account_id, cast(Violation, category), reviewer
                    )
                    changes.append(change)
                    applied += steps
            return views.Decision(
                id=row.id,
                item_id=item.id,
                action=action,
                category=category,
                basis=basis,
                note=note,
                reviewer=reviewer,
                decided_at=tx.now,
                status=items.OUTCOME[action],
                credits=changes,
                dispositions=applied,
                uncharged=uncharged,
            )

        return self._once(policy, now, idem, views.Decision, run)

    # --- accounts -------------------------------------------------------------------------

    def put_account(
        self,
        policy: Policy,
        account_id: str,
        *,
        name: str | EllipsisType | None = ...,
        subject_id: str | None = None,
        followers: int | None = None,
        login_at: datetime | None = None,
        by: str | None = None,
        now: datetime | None = None,
    ) -> views.Account:
        """Create or update an account's profile (credit is only changed by the ledger), ``by``
        whom (the key: who lifted a suspension the change corrects).

        What is not given keeps its stored value: a name left as ``...`` (``None`` clears it),
        a subject or followers left as ``None``. A subject once given is never cleared nor
        replaced, and a closed or blacklisted account's name is not changed
        (:func:`registration.check_profile_change`), since re-registration checks them. A
        subject is not given to one more account than its cap (art10), and a new name that
        holds a protected name is refused to a subject the entry does not authorise (art8;
        a name given again unchanged is not checked). A change that gives a name or a subject
        and leaves the name holding no protected name the subject is not authorised for lifts
        the account's art8 suspensions as corrected (:func:`protected.suspensions`). A follower
        count that jumps from the one given before (:func:`followers.is_jump`, art12) opens
        the account's ``follower_jump`` item, or joins its open one. A login reported
        (``login_at``, kept when later than the one stored) is use (art10): it moves the
        dormancy clock and ends a dormancy (:func:`wake`), ``by`` the key that reported it.
        """

        def run(tx: Tx) -> views.Account:
            # the items before the account: every writer locks in that order
            case = f"followers:{account_id}"
            jumps = open_item(tx, case) if followers is not None else None
            asleep = open_item(tx, dormancy.merge_key(account_id)) if login_at else None
            account = locked_account(tx, account_id)
            rules = policy.registration
            refusing = {*rules.names_refused_by, *rules.subjects_refused_by}
            registration.check_profile_change(
                account_id,
                active_kinds(tx, account_id) & refusing,
                not isinstance(name, EllipsisType) and name != account.name,
                account.subject_digest,
                None if subject_id is None else self.subjects.digests(subject_id),
            )
            if subject_id is not None and account.subject_digest is None:
                lock_subject(tx, self.subjects.digest(subject_id))
                digests = self.subjects.digests(subject_id)
                # an account without a subject that is given one registers it: a blacklisted
                # subject may not register again (art8)
                registration.check_subject_blacklist(
                    subject_blacklisted_by(tx.session, policy, digests, tx.now)
                )
                held = subject_holds(tx.session, policy, digests, tx.now, account_id)
                registration.check_subject_cap(rules, held)
            if not isinstance(name, EllipsisType):
                folded = None if name is None else registration.fold_name(name)
                if folded is not None and name != account.name:
                    # a name that holds a protected name is its authorised subjects' alone
                    # (art8): the subject given with it, or the one the account has
                    if subject_id is not None:
                        digests = self.subjects.digests(subject_id)
                    else:
                        digests = {account.subject_digest} if account.subject_digest else set()
                    lock_protected_names(tx, shared=True)
                    registration.check_protected_name(protected_in(tx.session, folded, digests))
                account.name, account.folded_name = name, folded
                if folded is not None:
                    hold_name(tx, account_id, folded)
            if subject_id is not None:
                account.subject_digest = self.subjects.digest(subject_id)
            if followers is not None:
                before, since = account.followers, maybe_utc(account.followers_at)
                # a count above 0 was given by a profile (accounts start at 0), though one
                # stored before followers_at was kept has no time
                given = since is not None or before > 0
                if given and followers_rules.is_jump(policy.followers, before, followers):
                    jump = followers_rules.jump(before, followers, tx.now, since)
                    # each count is chained by the profile update that gave it: the one
                    # before, and this one
                    flag_account(
                        tx,
                        jumps,
                        kind="follower_jump",
                        merge_key=case,
                        account_id=account_id,
                        head="fake_followers",
                        reach=followers,
                        listed="jumps",
                        found=[jump],
                        grown={"jump": jump},
                    )
                account.followers, account.followers_at = followers, tx.now
            profile = {
                "name": account.name,
                "followers": account.followers,
                "subject": account.subject_digest,
            }
            if login_at is not None:
                profile["last_login_at"] = login_at.isoformat()
            tx.record("account.profile", f"account:{account_id}", profile)
            if login_at is not None:
                _logged_in(tx, account, asleep, login_at, by)
            if subject_id is not None or not isinstance(name, EllipsisType):
                _lift_corrected(tx, account, by)
            tx.session.flush()
            return account_view(tx.session, account, tx.now)

        # retried on a lost race: two first jumps of one account both opening its item
        return self._once(policy, now, None, views.Account, run)

    def get_account(
        self, policy: Policy, account_id: str, now: datetime | None = None
    ) -> views.Account:
        """The account's credit, level, dispositions and history. One the service knows
        without a credit record yet (it was never charged nor given a profile) is at the
        initial credit; one it never saw is 404."""
        with self._session() as session:
            account = session.get(StoredAccount, account_id)
            if account is None:
                if not known_account(session, account_id):
                    raise NotFoundError("no_account", account_id=account_id)
                return new_account_view(policy, account_id)
            return account_view(session, account, now or datetime.now(UTC))

    def disposition_changes(self, after: int = 0, limit: int = 100) -> views.DispositionFeed:
        """The dispositions applied and lifted after the chain's record ``after``, ``limit`` at
        a time, in the order they were committed: the chain's, whose records are numbered under
        its head's lock (:func:`append_records`), so that one is committed before the next is
        numbered, where a table's ids can commit out of order and a feed over them skip one.
        ValueError for an ``after`` past the chain's last record: no page gave it out."""
        with self._session() as session:
            head = session.scalar(select(AuditHead.seq).where(AuditHead.id == 1))
            assert head is not None, "the audit head row is created by the migration"
            if after > head:
                raise ValueError(
                    f"{after} is past the audit chain's last record ({head}): "
                    "not a cursor this API gave out"
                )
            # every record up to the head read first is committed: a page that ends short has
            # read them all, and its next poll starts at the head instead of reading them again
            disposition_id = func.coalesce(
                AuditRecord.payload["id"].as_integer(),
                AuditRecord.payload["disposition"].as_integer(),
            )
            rows = session.execute(
                select(
                    AuditRecord.seq,
                    AuditRecord.kind,
                    AuditRecord.at,
                    AuditRecord.payload,
                    StoredDisposition,
                )
                .join(StoredDisposition, StoredDisposition.id == disposition_id)
                .where(
                    AuditRecord.seq > after,
                    AuditRecord.seq <= head,
                    AuditRecord.kind.in_((APPLIED, LIFTED)),
                )
                .order_by(AuditRecord.seq)
                .limit(limit)
            ).all()
            changes = [disposition_change_view(*row) for row in rows]
        return views.DispositionFeed(
            changes=changes, next=changes[-1].seq if len(changes) == limit else head
        )

    def account_standings(
        self, levels: list[str], stops: list[str], now: datetime | None = None
    ) -> dict[str, Standing]:
        """Accounts at any of ``levels`` or with an active disposition of a kind in ``stops``:
        the ones whose posts the policy treats apart. One query (the publish path reads it every
        ``storage_retry_s``): the accounts at those levels, then the stopping dispositions with
        their account's level, each table read once rather than every account joined."""
        moment = now or datetime.now(UTC)
        account = (StoredAccount.account_id, StoredAccount.level)
        empty = (null(), null(), null(), null())
        stopping = (
            StoredDisposition.id,
            StoredDisposition.kind,
            StoredDisposition.basis,
            StoredDisposition.ends_at,
        )
        # the dispositions first: a union's columns take their types from its first select
        query: CompoundSelect[Any] = union_all(
            select(*account, *stopping)
            .join(StoredDisposition, StoredDisposition.account_id == StoredAccount.account_id)
            .where(StoredDisposition.kind.in_(stops), active_now(moment)),
            select(*account, *empty).where(StoredAccount.level.in_(levels)),
        )
        with self._session() as session:
            rows = sorted(session.execute(query).all(), key=lambda row: row[2] or 0)
        found: dict[str, Standing] = {}
        for account_id, level, _, kind, basis, ends_at in rows:
            held = found.get(account_id, Standing(level))
            if kind is not None:
                held = replace(held, stops=(*held.stops, Stop(kind, basis, maybe_utc(ends_at))))
            found[account_id] = held
        return found

    def restore_credit(self, policy: Policy, now: datetime | None = None) -> int:
        """Give back the points of completed clean periods to every account due them; the
        number of accounts restored."""
        moment = now or datetime.now(UTC)
        due_before = moment - timedelta(days=policy.credit.restore_every_days)
        with self._session() as session:
            due = session.scalars(
                select(StoredAccount.account_id).where(
                    StoredAccount.credit < policy.credit.initial,
                    StoredAccount.clean_since <= due_before,
                )
            ).all()
        restored = 0
        for account_id in due:
            with self._write(policy, moment) as tx:
                restored += restore(tx, locked_account(tx, account_id)) is not None
        return restored

    # --- reports and appeals --------------------------------------------------------------

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
        open a report item for it. Each reporter
        counts once towards an item's priority: the key it came with (``reporter``) and the
        platform's id of its user (``reporter_id``), or the key alone when it gave none. A
        report naming another account than the one the post's stored record (or the item an
        earlier report opened) names is refused (``post_account``)."""

        def run(tx: Tx) -> views.Report:
            known_owner = post_owner(tx, post_id)
            if known_owner is not None and account_id not in (None, known_owner):
                # the post's record (or the report before) says whose it is: a reporter naming
                # another account would have the item charge that one for someone else's post
                raise ConflictError(
                    "post_account", post_id=post_id, account_id=known_owner, given=account_id
                )
            item = item_to_join(tx.session, post_id, account_id) or _confirmed_item(tx, post_id)
            if item is None:
                # a report names the post; the item is charged to whoever posted it
                owner = known_owner or account_id
                known = tx.session.get(StoredAccount, owner) if owner else None
                item = new_item(
                    tx,
                    kind="report",
                    post_id=post_id,
                    account_id=owner,
                    merge_key=f"post:{post_id}" if post_id else f"account:{account_id}",
                    head=category,
                    severity="report",
                    reach=known.followers if known is not None else 0,
                    evidence={"categories": {}},
                )
                # the reviewer reads the post, and its label is exported with the text
                stored = tx.session.get(StoredPost, post_id) if post_id is not None else None
                item.text = stored.text if stored is not None else None
                tx.session.flush()
            # one reporter filing again is one voice, not a way up the queue
            item.reports += _first_report_by(tx, item.id, reporter, reporter_id)
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
                },
            )
            return report_view(policy, report, item, tx.now, overturned(tx.session, item))

        return self._once(policy, now, idem, views.Report, run)

    def enqueue(
        self,
        policy: Policy,
        *,
        kind: items.Kind,
        merge_key: str,
        head: str,
        severity: str,
        reach: int,
        evidence: dict[str, Any],
        post_id: str | None = None,
        account_id: str | None = None,
        model_version: str | None = None,
        text_: str | None = None,
        now: datetime | None = None,
    ) -> views.Item:
        """Queue an item from another source (a flagged cluster, a confirmed-rumour bank
        match), once while it is open: ``merge_key`` names what it is about (the cluster, the
        post and the bank entry), and the same key again returns the open item. A request with
        a greater ``reach`` than the open item's (a coordinated batch that gained members since
        it was queued: reach is its size, which only grows) replaces the item's reach and
        evidence (its members) and re-ranks it; the same request again, or an older one that
        arrives late, changes nothing.

        Once the key's item is decided, a request no greater than its reach returns it (the
        decision stands for what it saw); a greater one (the batch grew after a dismissal or a
        confirmation) opens a new item whose evidence names the decided one under
        :data:`~service.review.items.EARLIER`: its status, reviewer, moment and reach."""

        def run(tx: Tx) -> views.Item:
            about_post = item_to_join(tx.session, post_id, None) if post_id is not None else None
            if about_post is not None and about_post.merge_key != merge_key:
                # the post's open item (its score or reports) is where its bank match goes:
                # one post is one open item, decided once and charged once
                about_post.evidence = {**(about_post.evidence or {}), **evidence}
                about_post.text = about_post.text or text_
                about_post.model_version = about_post.model_version or model_version
                return item_view(policy, about_post, None, tx.now)
            confirmed = _confirmed_item(tx, post_id) if about_post is None else None
            if confirmed is not None:
                # the post was decided and charged: another source of it is not a second case
                return item_view(policy, confirmed, None, tx.now)
            waiting = open_item(tx, merge_key)
            if waiting is not None:
                if reach > waiting.reach:
                    # the request knows nothing of the item decided before this one: its link
                    # stays
                    kept = {k: v for k, v in (waiting.evidence or {}).items() if k == EARLIER}
                    waiting.reach, waiting.evidence = reach, {**evidence, **kept}
                    waiting.urgency = urgency_of(policy, waiting)
                    tx.record(
                        "review.grown",
                        f"item:{waiting.id}",
                        {"merge_key": merge_key, "reach": reach},
                    )
                return item_view(policy, waiting, None, tx.now)
            decided = last_decided(tx.session, merge_key)
            if decided is not None and reach <= decided.reach:
                # the decision stands for what it saw: a re-run, or a state older than it
                return item_view(policy, decided, None, tx.now)
            # a new item names the decided one, which stays as it was
            linked = {EARLIER: earlier_decision(tx.session, decided)} if decided else {}
            item = new_item(
                tx,
                kind=kind,
                post_id=post_id,
                account_id=account_id,
                merge_key=merge_key,
                head=head,
                severity=severity,
                reach=reach,
                evidence={**evidence, **linked},
                after=None if decided is None else decided.id,
            )
            item.model_version, item.text = model_version, text_
            item.urgency = urgency_of(policy, item)
            tx.session.flush()
            return item_view(policy, item, None, tx.now)

        return self._once(policy, now, None, views.Item, run)

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
        idem: Idempotency | None = None,
        now: datetime | None = None,
    ) -> views.Appeal:
        def run(tx: Tx) -> views.Appeal:
            if not known_account(tx.session, account_id):
                raise NotFoundError("no_account", account_id=account_id)
            item = tx.session.get(ReviewItem, item_id)
            if item is None:
                raise NotFoundError("no_item", item_id=item_id)
            if account_id not in accounts_of(item) or item.status != "confirmed":
                raise ConflictError("not_a_violation_of", item_id=item_id, account_id=account_id)
            _check_charged(tx, item, account_id)
            decision = final_decision(tx.session, item_id)
            deadline = appeal_rules.check_filing(policy.appeals, utc(decision.decided_at), tx.now)
            earlier = tx.session.scalar(
                select(StoredAppeal.id).where(
                    StoredAppeal.item_id == item_id, StoredAppeal.account_id == account_id
                )
            )
            if earlier is not None:
                raise ConflictError("appealed_already", item_id=item_id, appeal_id=earlier)
            appeal = StoredAppeal(
                account_id=account_id,
                item_id=item_id,
                reason=reason,
                status="pending",
                filed_by=filed_by,
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
        idem: Idempotency | None = None,
        now: datetime | None = None,
    ) -> views.Appeal:
        """Resolve an appeal; upholding it reverses the credit change and lifts the
        dispositions of the appealed decision, by new ledger entries and records."""

        def run(tx: Tx) -> views.Appeal:
            appeal = tx.session.scalar(
                select(StoredAppeal).where(StoredAppeal.id == appeal_id).with_for_update()
            )
            if appeal is None:
                raise NotFoundError("no_appeal", appeal_id=appeal_id)
            if appeal.status != "pending":
                raise ConflictError("appeal_resolved", appeal_id=appeal_id, status=appeal.status)
            decided_by = final_decision(tx.session, appeal.item_id).reviewer
            appeal_rules.check_resolver(decided_by, reviewer)
            appeal.status = "upheld" if action == "uphold" else "rejected"
            appeal.resolved_by, appeal.resolved_at, appeal.note = reviewer, tx.now, note
            tx.record(
                "appeal.decision",
                f"appeal:{appeal.id}",
                {"action": action, "reviewer": reviewer, "item": appeal.item_id},
            )
            reversed_: list[views.CreditChange | views.Disposition] = []
            if action == "uphold":
                reversed_ = reverse(tx, appeal, reviewer)
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
        with self._session() as session:
            rows = session.scalars(query.limit(limit + 1)).all()
            counts = dict(
                session.execute(
                    select(StoredAppeal.status, func.count()).group_by(StoredAppeal.status)
                ).all()
            )
            overdue = session.scalar(select(func.count()).select_from(StoredAppeal).where(late))
        last = rows[limit - 1] if len(rows) > limit else None
        return views.AppealPage(
            appeals=[appeal_view(a, moment) for a in rows[:limit]],
            pending=int(counts.get("pending", 0)),
            overdue=int(overdue or 0),
            next=None if last is None else appeal_rules.cursor(utc(last.deadline), last.id),
        )

    # --- re-registration ------------------------------------------------------------------

    @reads_only  # a POST that writes nothing
    def check_registration(
        self, policy: Policy, name: str, subject_id: str, now: datetime | None = None
    ) -> views.Registration:
        moment = now or datetime.now(UTC)
        rules = policy.registration
        with self._session() as session:
            digests = self.subjects.digests(subject_id)
            blacklisted = subject_blacklisted_by(session, policy, digests, moment)
            # every name a closed account held: a rename before the close frees none of them
            closed = session.execute(
                select(HeldName.account_id, HeldName.folded_name)
                .where(
                    HeldName.account_id.in_(
                        select(StoredDisposition.account_id).where(
                            StoredDisposition.kind.in_(rules.names_refused_by),
                            active_now(moment),
                        )
                    )
                )
                .order_by(HeldName.account_id, HeldName.id)
            ).all()
            holds = subject_holds(session, policy, digests, moment)
            protected = protected_in(session, registration.fold_name(name), digests)
        refusals = registration.check(rules, name, blacklisted, closed, holds, protected)
        return views.Registration(
            allowed=not refusals,
            reasons=[{"code": r.code, "detail": r.detail} for r in refusals],
        )

    # --- records and labels ---------------------------------------------------------------

    def audit_entries(
        self, start: datetime | None = None, end: datetime | None = None, chunk: int = 5000
    ) -> Iterator[chain.Entry]:
        """The records in sequence order (``start <= at < end`` when given), read in chunks."""
        after = 0
        while True:
            query = select(AuditRecord).where(AuditRecord.seq > after)
            if start is not None:
                query = query.where(AuditRecord.at >= start)
            if end is not None:
                query = query.where(AuditRecord.at < end)
            with self._session() as session:
                rows = session.scalars(query.order_by(AuditRecord.seq).limit(chunk)).all()
            if not rows:
                return
            for row in rows:
                yield chain.Entry(
                    seq=row.seq,
                    at=utc(row.at),
                    kind=row.kind,
                    subject=row.subject,
                    payload=row.payload,
                    prev_hash=row.prev_hash,
                    hash=row.hash,
                )
            after = rows[-1].seq

    def audit_head(self) -> tuple[int, str]:
        with self._session() as session:
            head = session.get(AuditHead, 1)
            assert head is not None, "the audit head row is created by the migration"
            return head.seq, head.hash

    def chained_rows(self) -> int:
        """Rows of the tables each of whose writes chains a record (score records, review items,
        accounts): a chain of no records beside any of them is not this database's whole
        story (a SQLite file copied without its ``-wal`` file, say)."""
        with self._session() as session:
            return sum(
                int(session.scalar(select(func.count()).select_from(table)) or 0)
                for table in (StoredRecord, ReviewItem, StoredAccount)
            )

    def labels(self) -> Iterator[dict[str, Any]]:
        """Reviewers' final decisions on posts as training labels, one per item with its
        post's text: 1 for a confirmed violation, 0 for a dismissal or a confirmation an
        upheld appeal of the post's account overturned (:data:`OVERTURNED`: a batch member's
        appeal clears that member, not the post the row stands for)."""
        query = (
            select(ReviewDecision, ReviewItem, OVERTURNED)
            .join(ReviewItem, ReviewItem.id == ReviewDecision.item_id)
            .where(ReviewDecision.action.in_(("confirm", "dismiss")))
            # a label without the text it labels teaches nothing: a post the service never
            # stored, and a coordinated batch's item, which names no post of its own (nor
            # gives its members one: :meth:`batch_decisions`)
            .where(ReviewItem.text.is_not(None))
            .order_by(ReviewDecision.id)
        )
        with self._session() as session:
            for decision, item, cleared in session.execute(query):
                yield {
                    "item_id": item.id,
                    "post_id": item.post_id,
                    "text": item.text,
                    "head": decision.category or item.head,
                    "label": int(decision.action == "confirm" and not cleared),
                    "action": decision.action,
                    "appeal_upheld": bool(cleared),
                    "decided_at": utc(decision.decided_at).isoformat(),
                    "policy_version": decision.policy_version,
                    "model_version": item.model_version,
                }

    def batch_decisions(self) -> int:
        """Final decisions on coordinated batches' items, which :meth:`labels` gives no label:
        coordination is how accounts posted, not what a text says (the classifier has no such
        head, and one account posting the same text is no violation), and a member post whose
        text is at issue is decided, and labelled, on its own item."""
        query = (
            select(func.count())
            .select_from(ReviewDecision)
            .join(ReviewItem, ReviewItem.id == ReviewDecision.item_id)
            .where(ReviewDecision.action.in_(("confirm", "dismiss")), ReviewItem.kind == "cluster")
        )
        with self._session() as session:
            return int(session.scalar(query) or 0)


def _confirmed_item(tx: Tx, post_id: str | None) -> ReviewItem | None:
    """The item that confirmed the post, locked: what a later report or match of it joins."""
    if post_id is None:
        return None
    return tx.session.scalar(
        select(ReviewItem)
        .where(ReviewItem.post_id == post_id, ReviewItem.status == "confirmed")
        .order_by(ReviewItem.id.desc())
        .limit(1)
        .with_for_update()
    )


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


def _charged_already(tx: Tx, item: ReviewItem, account_id: str) -> views.Uncharged | None:
    """Why confirming ``item`` charges ``account_id`` nothing: another item's confirmation
    charged the account for one of the same posts (an appeal's reversal included: the post
    was decided)."""
    posts = items.posts_charged(item.post_id, item.account_id, item.evidence, account_id)
    if not posts:
        return None
    charged = tx.session.execute(
        select(ReviewItem.id, ReviewItem.post_id, ReviewItem.account_id, ReviewItem.evidence)
        .join(CreditEntry, CreditEntry.item_id == ReviewItem.id)
        .where(
            CreditEntry.account_id == account_id,
            CreditEntry.reason == "violation",
            ReviewItem.id != item.id,
        )
        .order_by(ReviewItem.id)
    ).all()
    for other, post_id, owner, evidence in charged:
        same = posts & items.posts_charged(post_id, owner, evidence, account_id)
        if same:
            return views.Uncharged(
                account_id=account_id,
                reason=f"post {min(same)} was charged to the account by item {other}",
                charged_by=other,
            )
    return None


def _check_charged(tx: Tx, item: ReviewItem, account_id: str) -> None:
    """Refuse an appeal by a member whom the item's confirmation charged nothing: the post
    was charged, and is appealed, on the item that charged it."""
    charged = tx.session.scalar(
        select(CreditEntry.id).where(
            CreditEntry.item_id == item.id,
            CreditEntry.account_id == account_id,
            CreditEntry.reason == "violation",
        )
    )
    if charged is not None:
        return
    other = _charged_already(tx, item, account_id)
    if other is None:
        raise ConflictError("not_a_violation_of", item_id=item.id, account_id=account_id)
    raise ConflictError(
        "charged_by_other", item_id=item.id, account_id=account_id, charged_by=other.charged_by
    )


def _logged_in(
    tx: Tx, account: StoredAccount, asleep: ReviewItem | None, at: datetime, by: str | None
) -> None:
    """A login at ``at`` reported ``by`` a key: kept when later than the one stored, and use
    of the account (:func:`wake`; ``asleep``, its open ``dormant`` item, locked)."""
    if dormancy.returned(maybe_utc(account.login_at), at):
        account.login_at = at
    wake(tx, account, asleep, at, "login", by or dormancy.SERVICE)


def _lift_corrected(tx: Tx, account: StoredAccount, by: str | None) -> None:
    """Lift the account's art8 suspensions once its name holds no protected name its subject
    is not authorised for: the correction art8 gives it until their end to make."""
    suspended = art8_suspended(tx, account.account_id)
    if not suspended:
        return
    lock_protected_names(tx, shared=True)
    if unauthorised(tx.session, account):
        return
    for row in suspended:
        lift(tx, row, by, {"cause": "corrected", "name": account.name})


def _nobody_to_charge(item: ReviewItem) -> views.Uncharged:
    if item.post_id is not None:
        why = f"the item names no account: post {item.post_id} is unknown to the service"
    else:
        why = "the item names no account"
    return views.Uncharged(account_id=None, reason=why)
