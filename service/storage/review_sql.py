"""The review machinery's storage over SQLAlchemy: each write is one transaction that runs the
rules of :mod:`service.review` and appends its hash-chained records, so a write is stored whole
or not at all. Here the transactions, the queue, accounts and the re-registration check; the
other stores mix this in (reports and appeals in :mod:`~service.storage.reports_sql`, the
records and labels in :mod:`~service.storage.audit_sql`, protected names, engagement, dormancy),
sharing the steps of :mod:`~service.storage.item_steps`,
:mod:`~service.storage.credit_steps` and :mod:`~service.storage.protected_steps`, run in a
:mod:`~service.storage.transaction`.

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
from service.review import dormancy, items, registration, views
from service.review import followers as followers_rules
from service.review.dispositions import Standing, Stop
from service.review.items import (
    EARLIER,
    Action,
    Category,
    NotFoundError,
    Violation,
)
from service.storage.credit_steps import (
    accounts_of,
    active_kinds,
    active_now,
    apply_dormancy,
    lift,
    locked_account,
    restore,
    violation,
)
from service.storage.item_steps import (
    charged_already,
    confirmed_item,
    earlier_decision,
    flag_account,
    held_item,
    item_to_join,
    known_account,
    last_decided,
    new_item,
    open_item,
    record_decision,
    urgency_of,
    wake,
)
from service.storage.protected_steps import (
    art8_suspended,
    hold_name,
    protected_in,
    subject_blacklisted_by,
    subject_holds,
    unauthorised,
)
from service.storage.repository import (
    Idempotency,
    IdempotencyMismatchError,
    Role,
    StorageError,
    reads_only,
)
from service.storage.review_rows import (
    APPLIED,
    LIFTED,
    account_view,
    disposition_change_view,
    item_view,
    maybe_utc,
    new_account_view,
)
from service.storage.tables import (
    AuditHead,
    AuditRecord,
    HeldName,
    IdempotentWrite,
    ReviewDecision,
    ReviewItem,
    StoredAccount,
    StoredDisposition,
    StoredRecord,
)
from service.storage.transaction import (
    Tx,
    append_records,
    lock_protected_names,
    lock_subject,
    lost_race,
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

        def write() -> M:
            with self._write(policy, now) as tx:
                return self._keyed(tx.session, tx.now, idem, model, lambda: run(tx))

        return self._retried(write)

    def _keyed(
        self,
        session: Session,
        now: datetime,
        idem: Idempotency | None,
        model: type[M],
        run: Callable[[], M],
    ) -> M:
        """``run()``'s answer, stored under ``idem`` in ``session``'s transaction; the answer
        stored already where a try with the key was made (:class:`IdempotencyMismatchError`
        where it was made with another request)."""
        if idem is not None:
            stored = session.get(IdempotentWrite, (idem.caller, idem.key))
            if stored is not None:
                if stored.fingerprint != idem.fingerprint:
                    raise IdempotencyMismatchError(
                        "this Idempotency-Key was used with a different request"
                    )
                return model.model_validate(stored.response)
        result = run()
        if idem is not None:
            session.add(
                IdempotentWrite(
                    caller=idem.caller,
                    key=idem.key,
                    fingerprint=idem.fingerprint,
                    response=result.model_dump(mode="json"),
                    created_at=now,
                )
            )
        return result

    @staticmethod
    def _retried(write: Callable[[], M]) -> M:
        """``write()``, tried again on a lost race (unique key, deadlock)."""
        for attempt in range(RETRIES):
            try:
                return write()
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
        role: Role = "reviewer",
        cursor: tuple[float, int] | None = None,
        limit: int | None = None,
        now: datetime | None = None,
    ) -> views.ItemPage:
        """Items by priority (highest first), ``limit`` at a time after ``cursor``; with
        ``free_for``, only those that reviewer, of ``role``, may take now: no other reviewer
        holds a live lease on them, they did not escalate them, and an escalated one only for
        a role it goes to (:data:`~service.review.items.ESCALATED_TO`)."""
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
            if role not in items.ESCALATED_TO:
                query = query.where(ReviewItem.status != "escalated")
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
        self,
        policy: Policy,
        item_id: int,
        reviewer: str,
        now: datetime | None = None,
        *,
        role: Role = "reviewer",
    ) -> views.Lease:
        """Keep the item to ``reviewer``, of ``role``, for the policy's lease (again, to renew
        it)."""
        with self._write(policy, now) as tx:
            item = held_item(tx, item_id, reviewer, role)
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
        role: Role = "reviewer",
        shown: items.Shown | None = None,
        idem: Idempotency | None = None,
        now: datetime | None = None,
    ) -> views.Decision:
        """Decide an item, as ``reviewer`` of ``role``: its status, the decision, and on a
        confirmed violation the account's credit change and dispositions, all in one
        transaction; refused where the item holds another score record than the one the
        reviewer was ``shown`` (:func:`~service.review.items.check_shown`)."""

        def run(tx: Tx) -> views.Decision:
            item = held_item(tx, item_id, reviewer, role)
            items.check_shown(item.id, item.record_id, shown)
            items.check_action(item.status, action)
            if action == "confirm" and category is not None:
                items.check_category(item.kind, category, item.id)
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
                    charged = charged_already(tx, item, account_id)
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
            confirmed = confirmed_item(tx, post_id) if about_post is None else None
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
        idem: Idempotency | None = None,
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
        return self._once(policy, now, idem, views.Account, run)

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
