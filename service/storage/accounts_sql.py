"""Accounts in storage over SQLAlchemy: the write of a profile (its subject, name, followers
and login, under the rules of :mod:`service.review.registration`, the follower jumps and
dormancy, in one transaction with its records), an account's credit and dispositions as read,
the feed of dispositions applied and lifted, the standings the publish path reads, the
restoring of credit, and the re-registration check. The writes run in the transactions of
:mod:`~service.storage.review_sql` and lock rows in its order.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from types import EllipsisType
from typing import Any, TypeVar, cast

from sqlalchemy import ColumnElement, CompoundSelect, Select, func, null, select, union_all
from sqlalchemy.orm import InstrumentedAttribute, Session

from service.policy import Policy
from service.review import appeals, dormancy, registration, signups, views
from service.review import followers as followers_rules
from service.review.credit import (
    HISTORY_ORDER,
    HISTORY_PAGE,
    HistoryKind,
    HistoryOrder,
    HistoryPlace,
    history_cursor,
)
from service.review.dispositions import ACTIVE_PAGE, Standing, Stop
from service.review.items import MAX_ROW_ID, NotFoundError
from service.storage.credit_steps import (
    active_kinds,
    active_now,
    active_on,
    lift,
    locked_account,
    restore,
)
from service.storage.item_steps import (
    after_cursor,
    final_decision,
    flag_account,
    known_account,
    last_decided,
    open_item,
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
from service.storage.repository import Idempotency, reads_only
from service.storage.review_rows import (
    APPLIED,
    LIFTED,
    account_view,
    change_view,
    disposition_change_view,
    disposition_view,
    maybe_utc,
    new_account_view,
    utc,
)
from service.storage.review_sql import ReviewSql, Sweep
from service.storage.tables import (
    AuditHead,
    AuditRecord,
    CreditEntry,
    HeldName,
    ReviewItem,
    SignupBatchMember,
    StoredAccount,
    StoredDisposition,
)
from service.storage.transaction import Tx, lock_protected_names, lock_signup_batch, lock_subject

Entry = TypeVar("Entry", CreditEntry, StoredDisposition)
"""A table of an account's history."""


class AccountsSql(ReviewSql):
    """Mixed into :class:`~service.storage.sql.SqlRepository`."""

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
        holds a protected name is refused to a subject the entry does not authorise (art8, second
        paragraph; a name given again unchanged is not checked). A subject that a blacklisted
        account holds is not given to another (art19). A change that gives a name or a subject
        and leaves the name holding no protected name the subject is not authorised for lifts
        the account's art8 suspensions as corrected (:func:`protected.suspensions`). A follower
        count that jumps from the one given before (:func:`followers.is_jump`, art12) opens
        the account's ``follower_jump`` item, or joins its open one. The profile that makes the
        row registers the account (``registered_at``), and a new name given within
        ``batch_hours`` of that opens or joins its skeleton's ``signup_batch`` item when it
        makes a batch (:mod:`~service.review.signups`, art10), refusing nothing. A login reported
        (``login_at``, kept when later than the one stored) is use (art10): it moves the
        dormancy clock and ends a dormancy (:func:`wake`), ``by`` the key that reported it.
        """

        # SQLite keeps a moment's wall time without its zone: a login given in another zone
        # would be stored hours off, and compared with the clock so
        login = None if login_at is None else login_at.astimezone(UTC)

        def run(tx: Tx) -> views.Account:
            subject = None if subject_id is None else self.subjects.digest(subject_id)
            _advisory_first(tx, subject, naming=not isinstance(name, EllipsisType))
            # the items before the account: every writer locks in that order
            batch, batched = _batch_held(tx, name)
            case = f"followers:{account_id}"
            jumps = open_item(tx, case) if followers is not None else None
            asleep = open_item(tx, dormancy.merge_key(account_id)) if login else None
            account = locked_account(tx, account_id, registering=True)
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
                digests = self.subjects.digests(subject_id)
                # an account without a subject that is given one registers it: a blacklisted
                # subject may not register again (art19: 列入黑名单, 禁止重新注册)
                registration.check_subject_blacklist(
                    subject_blacklisted_by(tx.session, policy, digests, tx.now)
                )
                held = subject_holds(tx.session, policy, digests, tx.now, account_id)
                registration.check_subject_cap(rules, held)
            if not isinstance(name, EllipsisType):
                folded = None if name is None else registration.fold_name(name)
                if folded is not None and name != account.name:
                    # a name that holds a protected name is its authorised subjects' alone
                    # (art8, second paragraph): the subject given with it, or the one the
                    # account has
                    if subject_id is not None:
                        digests = self.subjects.digests(subject_id)
                    else:
                        digests = {account.subject_digest} if account.subject_digest else set()
                    registration.check_protected_name(protected_in(tx.session, folded, digests))
                # a name given again unchanged, or a rename within the skeleton the account
                # was weighed under already, is no news of the batch (the item lists its first
                # accounts only, and counts every one)
                digest = None if batch is None else batch.digest
                news = name != account.name and account.skeleton_digest != digest
                account.name, account.folded_name = name, folded
                account.skeleton_digest = digest
                if folded is not None:
                    hold_name(tx, account_id, folded)
                _registered(tx, account, batch if news else None, batched)
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
                        head=followers_rules.CATEGORY,
                        reach=followers,
                        listed="jumps",
                        found=[jump],
                        grown={"jump": jump},
                    )
                account.followers, account.followers_at = followers, tx.now
            tx.record("account.profile", f"account:{account_id}", _profile(account, login))
            if login is not None:
                _logged_in(tx, account, asleep, login, by)
            if subject_id is not None or not isinstance(name, EllipsisType):
                _lift_corrected(tx, account, by)
            tx.session.flush()
            return _account(tx.session, account, tx.now)

        # retried on a lost race: two first jumps of one account both opening its item
        return self._once(policy, now, idem, views.Account, run)

    def get_account(
        self,
        policy: Policy,
        account_id: str,
        cursor: HistoryPlace | None = None,
        limit: int = HISTORY_PAGE,
        order: HistoryOrder = "oldest",
        active_limit: int = ACTIVE_PAGE,
        now: datetime | None = None,
    ) -> views.Account:
        """The account's credit, level, first ``active_limit`` active dispositions and
        ``limit`` entries of its history after ``cursor`` in ``order`` (:func:`_account`). One
        the service knows without a credit record yet (it was never charged nor given a
        profile) is at the initial credit; one it never saw is 404. Read in one snapshot: a
        decision committed meanwhile is in the credit, the history and the active dispositions,
        or in none of them."""
        with self._snapshot() as session:
            account = _stored(session, account_id)
            if account is None:
                return new_account_view(policy, account_id)
            moment = now or datetime.now(UTC)
            return _account(session, account, moment, cursor, limit, order, active_limit)

    def account_dispositions(
        self,
        account_id: str,
        cursor: tuple[float, int] | None = None,
        limit: int = ACTIVE_PAGE,
        now: datetime | None = None,
    ) -> views.DispositionPage:
        """The ``limit`` dispositions active on the account after ``cursor`` (:func:`_active`);
        none for one the service knows without a credit record, 404 for one it never saw.
        Read in one snapshot, as the account is (:meth:`get_account`)."""
        with self._snapshot() as session:
            if _stored(session, account_id) is None:
                return views.DispositionPage(dispositions=[])
            return _active(session, account_id, now or datetime.now(UTC), cursor, limit)

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
        """Give back the points of completed clean periods to every account due them, each in
        a transaction of its own; the number of accounts restored (:class:`SweepIncompleteError`
        where some could not be, after the others)."""
        moment = now or datetime.now(UTC)
        due_before = moment - timedelta(days=policy.credit.restore_every_days)
        with self._session() as session:
            due = session.scalars(
                select(StoredAccount.account_id).where(
                    StoredAccount.credit < policy.credit.initial,
                    StoredAccount.clean_since <= due_before,
                )
            ).all()
        sweep = Sweep("credit_restore")
        return sweep.done(sum(self._swept(sweep, a, policy, moment, _restore, a) for a in due))

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


def _account(
    session: Session,
    account: StoredAccount,
    now: datetime,
    place: HistoryPlace | None = None,
    limit: int = HISTORY_PAGE,
    order: HistoryOrder = "oldest",
    active_limit: int = ACTIVE_PAGE,
) -> views.Account:
    """The account at ``now`` with its first ``active_limit`` active dispositions
    (:func:`_active`) and the ``limit`` entries of its
    history after ``place`` in ``order``: oldest first, a moment's credit changes before its
    dispositions (:data:`HISTORY_ORDER`), or newest first, that order reversed. Each kind's next
    ``limit`` and one, read in its order off its index on the account from ``place`` on,
    merged. An account's history grows with every decision on it, past what one answer
    holds."""
    newest = order == "newest"
    history: list[views.CreditChange | views.Disposition] = [
        change_view(e)
        for e in session.scalars(
            _page(CreditEntry, "credit", CreditEntry.at, account, place, limit, newest)
        )
    ]
    given = _page(
        StoredDisposition, "disposition", StoredDisposition.starts_at, account, place, limit, newest
    )
    history += [disposition_view(row, now) for row in session.scalars(given)]
    history.sort(key=_placed, reverse=newest)
    next_ = None
    if len(history) > limit:
        moment, rank, row_id = _placed(history[limit - 1])
        next_ = history_cursor(HISTORY_ORDER[rank], moment, row_id, order)
    active = _active(session, account.account_id, now, None, active_limit)
    return account_view(account, active, history[:limit], next_)


def _stored(session: Session, account_id: str) -> StoredAccount | None:
    """The account's row; None for one the service knows without one (by a post it stored
    or a review item: never charged nor given a profile), NotFoundError for one it never
    saw."""
    account = session.get(StoredAccount, account_id)
    if account is None and not known_account(session, account_id):
        raise NotFoundError("no_account", account_id=account_id)
    return account


def _active(
    session: Session,
    account_id: str,
    now: datetime,
    place: tuple[float, int] | None,
    limit: int,
) -> views.DispositionPage:
    """The ``limit`` dispositions active on the account at ``now`` after ``place`` (a
    listing's cursor, :func:`appeals.cursor`), in the order they were applied (moment, then
    id), and the cursor of the page after them. Lifted and ended ones stay in the account's
    history, which grows without bound: they are read in the two parts of :func:`active_on`.
    Those without an end, the next ``limit`` and one in their order from the cursor on
    (``ix_dispositions_account_lasting``); those ending after ``now``, all of them, by their end
    (``ix_dispositions_account_ending``), kept after the cursor here, since SQLite, asked to
    order them, walked every disposition of the account in its order instead. An account
    gathers as many active ones as its decisions apply, past what one answer holds."""
    stored = StoredDisposition
    lasting, ending = active_on(select(stored), account_id, now)
    if place is not None:
        lasting = lasting.where(after_cursor(stored.starts_at, stored.id, place))
    lasting = lasting.order_by(stored.starts_at, stored.id).limit(limit + 1)
    rows = [*session.scalars(lasting), *session.scalars(ending)]
    found = sorted((disposition_view(row, now) for row in rows), key=_applied)
    if place is not None:
        after = (appeals.cursor_deadline(place[0]), place[1])
        found = [d for d in found if _applied(d) > after]
    shown = found[:limit]
    last = shown[-1] if len(found) > limit else None
    return views.DispositionPage(
        dispositions=shown,
        next=None if last is None else appeals.cursor(last.starts_at, last.id),
    )


def _applied(disposition: views.Disposition) -> tuple[datetime, int]:
    """Where a disposition stands in the order they were applied: its moment, then its id."""
    return disposition.starts_at, disposition.id


def _page(
    table: type[Entry],
    kind: HistoryKind,
    moment: InstrumentedAttribute[datetime],
    account: StoredAccount,
    place: HistoryPlace | None,
    limit: int,
    newest: bool,
) -> Select[Entry]:
    """The account's next ``limit`` and one entries of ``kind`` (its ``table``, whose
    ``moment`` places it) after ``place``, read along its index on the account, moment and
    id, backwards for ``newest``."""
    row_id: InstrumentedAttribute[int] = table.id
    query = select(table).where(table.account_id == account.account_id)
    if place is not None:
        query = query.where(_after(place, kind, moment, row_id, newest))
    keys = (moment.desc(), row_id.desc()) if newest else (moment, row_id)
    return query.order_by(*keys).limit(limit + 1)


def _placed(entry: views.CreditChange | views.Disposition) -> tuple[datetime, int, int]:
    """Where ``entry`` stands in its account's history: its moment, its kind's rank in
    :data:`HISTORY_ORDER` and its id."""
    if isinstance(entry, views.CreditChange):
        return entry.at, HISTORY_ORDER.index("credit"), entry.id
    return entry.starts_at, HISTORY_ORDER.index("disposition"), entry.id


def _after(
    place: HistoryPlace,
    kind: HistoryKind,
    moment: InstrumentedAttribute[datetime],
    row_id: InstrumentedAttribute[int],
    newest: bool,
) -> ColumnElement[bool]:
    """The entries of ``kind`` the history holds after ``place`` (before it in the oldest
    first order, for ``newest``): of the kind of its last entry, those after it (the
    listings' :func:`after_cursor`); of a kind that comes later in a moment, those of its
    moment too (oldest first: newest first, none of them); of one that comes earlier, none of
    its moment (newest first: all of them). Either way the id that stands in for the other
    kind's is the same, 0 or the largest, and only the comparison turns round."""
    at, last_id = place.after
    if kind != place.kind:
        later = HISTORY_ORDER.index(kind) > HISTORY_ORDER.index(place.kind)
        last_id = 0 if later else MAX_ROW_ID
    return after_cursor(moment, row_id, (at, last_id), backwards=newest)


def _advisory_first(tx: Tx, subject_digest: str | None, *, naming: bool) -> None:
    """The advisory locks a profile write (giving ``subject_digest``, a name if ``naming``) may
    need, before any row's, in their order (:func:`~service.storage.transaction.locking`), so
    that a write waiting for one holds no row its holder goes on to wait for. Taken on what is
    given, before the account is read: only the locked account says whether the subject is
    new to it, the name too, or an art8 suspension is to be lifted."""
    if subject_digest is not None:
        lock_subject(tx, subject_digest)
    if subject_digest is not None or naming:
        lock_protected_names(tx, shared=True)


def _batch_held(
    tx: Tx, name: str | EllipsisType | None
) -> tuple[signups.Batch | None, ReviewItem | None]:
    """The batch of the name given (:func:`signups.batch_of`; None for none given, or one of no
    batch), held until the transaction ends (:func:`lock_signup_batch`), so that the accounts
    registered under it at once are counted one after the other, and its open item, locked."""
    if isinstance(name, EllipsisType):
        return None, None
    batch = signups.batch_of(tx.policy.registration, name)
    if batch is None:
        return None, None
    lock_signup_batch(tx, batch.digest)
    return batch, open_item(tx, batch.merge_key)


def _registered(
    tx: Tx, account: StoredAccount, batch: signups.Batch | None, item: ReviewItem | None
) -> None:
    """The locked ``account``, given a new name of ``batch`` (None: none; held by
    :func:`_batch_held`, with ``item``, its open item), joins that item, or opens one when it
    and the others of the skeleton registered within ``batch_hours`` are a batch (art10). Only
    an account registered within ``batch_hours`` is weighed: an old account's rename is no
    registration. Once the batch's item is decided, the accounts registered before the
    decision were its reviewer's: a new item needs a batch of accounts registered since."""
    rules = tx.policy.registration
    registered = maybe_utc(account.registered_at)
    since = tx.now - timedelta(hours=rules.batch_hours)
    if batch is None or registered is None or registered < since:
        return
    decided = last_decided(tx.session, batch.merge_key)
    after = None if decided is None else utc(final_decision(tx.session, decided.id).decided_at)
    if after is not None and registered <= after:
        # weighed by the decided item's reviewer: no later item counts it again
        return
    listing = signups.entry(account.account_id, account.name, registered)
    if item is not None:
        # a member once, listed or not, however often renamed out of the skeleton and back
        if tx.session.get(SignupBatchMember, (item.id, account.account_id)) is not None:
            return
        tx.session.add(SignupBatchMember(item_id=item.id, account_id=account.account_id))
        evidence = item.evidence or {}
        room = len(evidence.get("accounts", [])) < signups.LISTED
        flag_account(
            tx,
            item,
            kind=signups.KIND,
            merge_key=batch.merge_key,
            account_id=None,
            head=signups.CATEGORY,
            reach=item.reach + 1,
            listed="accounts",
            found=[listing] if room else [],
            grown={"account_id": account.account_id},
        )
        if not room:
            unlisted = int(evidence.get(signups.UNLISTED, 0)) + 1
            item.evidence = {**(item.evidence or {}), signups.UNLISTED: unlisted}
        return
    tx.session.flush()
    query = select(StoredAccount.account_id, StoredAccount.name, StoredAccount.registered_at)
    query = query.where(
        StoredAccount.skeleton_digest == batch.digest, StoredAccount.registered_at >= since
    )
    if after is not None:
        query = query.where(StoredAccount.registered_at > after)
    rows = tx.session.execute(
        query.order_by(StoredAccount.registered_at, StoredAccount.account_id)
    ).all()
    if not signups.is_batch(rules, len(rows)):
        return
    opened = flag_account(
        tx,
        None,
        kind=signups.KIND,
        merge_key=batch.merge_key,
        account_id=None,
        head=signups.CATEGORY,
        reach=len(rows),
        listed="accounts",
        # registered_at is never null here: the query asked for it after a moment
        found=[signups.entry(a, n, utc(cast(datetime, at))) for a, n, at in rows[: signups.LISTED]],
        grown={},
    )
    unlisted = max(len(rows) - signups.LISTED, 0)
    opened.evidence = {
        "skeleton": batch.skeleton,
        **(opened.evidence or {}),
        signups.UNLISTED: unlisted,
    }
    tx.session.add_all(SignupBatchMember(item_id=opened.id, account_id=a) for a, _, _ in rows)


def _restore(tx: Tx, account_id: str) -> bool:
    """Give back the points of the account's completed clean periods; whether any were due."""
    return restore(tx, locked_account(tx, account_id)) is not None


def _profile(account: StoredAccount, login: datetime | None) -> dict[str, Any]:
    """What an ``account.profile`` record chains: the profile as it stands after the change,
    and the login reported with it."""
    profile: dict[str, Any] = {
        "name": account.name,
        "followers": account.followers,
        "subject": account.subject_digest,
    }
    if login is not None:
        profile["last_login_at"] = login.isoformat()
    return profile


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
    is not authorised for: the correction art8 gives it until their end to make. The caller
    holds the protected names (shared), so that an entry being added is seen or sees the
    name."""
    suspended = art8_suspended(tx, account.account_id)
    if not suspended:
        return
    if unauthorised(tx.session, account):
        return
    for row in suspended:
        lift(tx, row, by, {"cause": "corrected", "name": account.name})
