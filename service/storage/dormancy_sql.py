"""Dormant accounts' storage (art10, :mod:`service.review.dormancy`): the use the publish path
saw, written a day at a time in one statement (the row of an account known by its posts alone
made by its first), the sweeps that warn of a dormancy ``warn_days`` ahead and find the accounts
whose dormancy has taken effect, each once per clock, and apply the policy's ``[dormancy]``, and
the dormancies and warnings given since a server process last looked, for its memory of the
day's use."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, cast

from sqlalchemy import ColumnElement, Table, bindparam, exists, func, or_, select, tuple_, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import InstrumentedAttribute, Session, aliased

from service.policy import Policy
from service.policy.governance import DormancyRules
from service.review import dormancy
from service.storage.credit_steps import (
    account_insert,
    active_kinds,
    apply_disposition,
    apply_dormancy,
    lift,
    locked_account,
    new_account,
)
from service.storage.item_steps import last_decided, new_item, open_item, urgency_of, wake
from service.storage.review_rows import maybe_utc, utc
from service.storage.review_sql import ReviewSql, Sweep
from service.storage.tables import (
    AuditHead,
    AuditRecord,
    StoredAccount,
    StoredDisposition,
    SweepPlace,
)
from service.storage.transaction import Tx

SWEEP_ACCOUNTS = 50
"""The most accounts one sweep warns, and the most it finds dormant: the first sweeps after a
quiet half year may find many at once (every account the migration started the clock of and
that was not used since), and the maintenance thread that sweeps also writes out the spool, so
the rest wait for the next sweep, ``storage_retry_s`` later (:meth:`DormancySql._due`)."""

MOVE_TRIES = 5
"""How many times a look reads again from where another process moved its place meanwhile
(:meth:`DormancySql._due`) before it leaves its accounts to its next run: each time it lost,
another process took the accounts it had read."""

Look = Literal["revise", "warn", "lapsed", "dormant"]
"""Each bounded look of the dormancy sweeps: the warnings at odds with the policy, the accounts
due a warning, those whose warning lapsed, and those found dormant."""

Place = tuple[datetime, str]
"""Where an account stands in a look's order: its clock, then its id."""

READ_ACCOUNTS = 500
"""Accounts named in one ``IN`` list or one insert (SQLite takes at most 32,766 parameters a
statement)."""

READ_CHANGES = 10_000
"""The most chained records one call of :meth:`DormancySql.dormancies_after` returns the
dormancies and warnings of: a process that could not read them for long catches up a page a
call."""

SEEN = "account.seen"
"""The record of the row made for an account known by its posts alone, by its first post
written: its clock starts there."""

FOUND = ("account.dormant", "account.warned")
"""The records of a dormancy found and of a warning given, each with the clock it was on."""

GIVEN = ("account.warned", "account.warning_revised")
"""The records of a warning given, by the sweep or again with a later date (:func:`_revise`):
the transaction that applies a ``dormancy_warning`` writes one of them."""


class DormancySql(ReviewSql):
    """Mixed into :class:`~service.storage.sql.SqlRepository`."""

    _warnings_checked: tuple[DormancyRules, int] | None = None
    """The rules this process last found no running warning at odds with, every one read, and
    the chain's last record before it read them: under the same rules, a warning given since is
    named by a record after it (:data:`GIVEN`), and one given before still agrees (its clock and
    ``warned_at`` change only by a use, which lifts it, or by a warning given), so the next look
    reads only the accounts named since."""

    def record_use(
        self, policy: Policy, used: Mapping[str, datetime], now: datetime | None = None
    ) -> int:
        """Move the dormancy clock of each account of ``used`` (account id: when the publish
        path scored a post of it) forward to that moment, in one statement for those neither
        dormant nor warned; end the warning or dormancy of the others (:func:`wake`, by the
        service, via ``post``), each in a transaction of its own. An account the service has no
        row for yet (no profile, never charged: known by its posts alone) gets one, at the
        initial credit and without a profile, its clock at that post (the record
        :data:`SEEN`). Written at ``now`` (the dispositions active then are lifted). How many
        dormancies ended (:class:`SweepIncompleteError` where the warning or dormancy of some
        could not be ended, after the others)."""
        if not used:
            return 0
        accounts = cast(Table, StoredAccount.__table__)
        moved = (
            update(accounts)
            .where(
                accounts.c.account_id == bindparam("b_account"),
                accounts.c.dormant_at.is_(None),
                accounts.c.warned_at.is_(None),
                or_(accounts.c.active_at.is_(None), accounts.c.active_at < bindparam("b_at")),
            )
            .values(active_at=bindparam("b_at"), active_by="post")
        )
        # in account order, as every writer of several accounts locks them
        ordered = sorted(used)

        def write(tx: Tx) -> None:
            stored: set[str] = set()
            for start in range(0, len(ordered), READ_ACCOUNTS):
                chunk = ordered[start : start + READ_ACCOUNTS]
                stored.update(
                    tx.session.scalars(
                        select(StoredAccount.account_id).where(StoredAccount.account_id.in_(chunk))
                    )
                )
            # most days, every account that posts has its row: the insert is for the others
            new = [new_account(tx, a, used[a]) for a in ordered if a not in stored]
            made: list[str] = []
            if new:
                # one made by another process since it was read is left as it made it
                made = list(
                    tx.session.scalars(
                        account_insert(tx)
                        .on_conflict_do_nothing(index_elements=["account_id"])
                        .returning(accounts.c.account_id),
                        new,
                    )
                )
            for account_id in sorted(made):
                tx.record(
                    SEEN,
                    f"account:{account_id}",
                    {"active_at": used[account_id].isoformat(), "active_by": "post"},
                )
            tx.session.execute(moved, [{"b_account": a, "b_at": used[a]} for a in ordered])

        self._write_retried(policy, now, write)
        # after the update committed: a sweep that finds an account dormant meanwhile reads the
        # moved clock under the account's lock and leaves it, or committed first and is found
        given: list[str] = []
        with self._session() as session:
            for start in range(0, len(ordered), READ_ACCOUNTS):
                chunk = ordered[start : start + READ_ACCOUNTS]
                given += session.scalars(
                    select(StoredAccount.account_id).where(
                        StoredAccount.account_id.in_(chunk),
                        or_(
                            StoredAccount.dormant_at.is_not(None),
                            StoredAccount.warned_at.is_not(None),
                        ),
                    )
                ).all()
        sweep = Sweep("account_use")
        return sweep.done(
            sum(self._swept(sweep, a, policy, now, _used, a, used[a]) for a in sorted(given))
        )

    def warn_dormancy(self, policy: Policy, now: datetime | None = None) -> int:
        """Bring the warnings of dormancy in line with the policy at ``now``, each account in a
        transaction of its own, at most :data:`SWEEP_ACCOUNTS` of each kind, longest unused
        first: a warning still running that no longer says what the policy does is lifted
        (cause ``policy_changed``), and given again with the later date, or not at all where
        the dormancy brings nothing now (:func:`_revise`); then the accounts whose clock is
        ``after_days - warn_days`` old by ``now`` and not warned yet are warned (:func:`_warn`),
        once per clock whatever the processes calling it, and those ``after_days`` old whose
        warning lapsed (:data:`dormancy.LAPSE`) with no dormancy found are warned again, from
        ``now``. Nobody is warned where the policy gives no warning (``warn_days`` 0) or its
        dormancy brings nothing. How many accounts were warned, or had their warning lifted or
        given again (:class:`SweepIncompleteError` where some could not be, after the
        others)."""
        rules = policy.dormancy
        moment = now or datetime.now(UTC)
        sweep = Sweep("dormancy_warnings")
        done = self._revise_outdated(policy, moment, sweep)
        before = dormancy.warned_before(rules, moment)
        if before is None or not dormancy.follows(rules):
            return sweep.done(done)
        # one whose warning lapsed when its dormancy is due: the few not found dormant on time
        lapsed = (
            *_awake(),
            StoredAccount.active_at <= dormancy.dormant_before(rules, moment),
            _lapsed(moment),
        )
        looks: tuple[tuple[Look, tuple[ColumnElement[bool], ...]], ...] = (
            ("warn", (*_unwarned(), StoredAccount.active_at <= before)),
            ("lapsed", lapsed),
        )
        for look, accounts in looks:
            done += self._sweep(
                policy,
                moment,
                sweep,
                look,
                accounts,
                lambda tx, account_id: _warn(tx, account_id, before),
            )
        return sweep.done(done)

    def settle_dormancy(self, policy: Policy, now: datetime | None = None) -> int:
        """Find the accounts whose dormancy has taken effect by ``now`` (their clock
        ``dormancy.after_days`` old, their warning, where the policy gives one, ``warn_days``
        old, and the date their warning gave past, whatever the policy now says:
        :func:`dormancy.takes_effect`) and not found dormant yet (at most
        :data:`SWEEP_ACCOUNTS`, longest unused first), and apply the policy's ``[dormancy]`` to
        each (:func:`_fall_dormant`), in a transaction of its own, once: every server process
        sweeps, and the first to lock the account marks it (``dormant_at``), so that another,
        or a restart, finds it marked. Nothing under ``action = "none"`` without ``notify``.
        How many accounts were found dormant (:class:`SweepIncompleteError` where some could
        not be, after the others)."""
        rules = policy.dormancy
        if not dormancy.follows(rules):
            return 0
        moment = now or datetime.now(UTC)
        warned: tuple[ColumnElement[bool], ...] = ()
        if rules.warn_days:
            # one whose warning lapsed waits for the next, which the warning sweep gives
            warned = (
                StoredAccount.warned_at <= moment - timedelta(days=rules.warn_days),
                ~_lapsed(moment),
            )
        # an account whose warning told a later date waits for it: left out here, it keeps no
        # sweep from the accounts due after it
        told_later = _warned_with(StoredDisposition.ends_at > moment)
        sweep = Sweep("dormancy_findings")
        done = self._sweep(
            policy,
            moment,
            sweep,
            "dormant",
            (
                *_awake(),
                StoredAccount.active_at <= dormancy.dormant_before(rules, moment),
                *warned,
                ~told_later,
            ),
            _fall_dormant,
        )
        return sweep.done(done)

    def _revise_outdated(self, policy: Policy, moment: datetime, sweep: Sweep) -> int:
        """:func:`_revise` each account whose running warning no longer says what the policy
        does (:func:`_outdated`): among every account warned where this process has not yet
        read them all under these rules, else among those a warning was given since it did
        (:attr:`_warnings_checked`), or every account again where more were. How many were
        lifted or given again."""
        rules = policy.dormancy
        dialect = self.engine.dialect.name
        checked = self._warnings_checked
        # most sweeps find nothing: they look without taking SQLite's write lock, and build
        # no look where no warning was given since (building it costs more than the reads)
        found: Sequence[str] = ()
        with self._session() as session:
            head = _head(session)
            # the accounts given a warning since this process read them all; None: every one
            named: list[str] | None = None
            if checked is not None and checked[0] == rules and checked[1] <= head:
                given = _chained(session, checked[1], head, GIVEN, READ_ACCOUNTS + 1)
                if len(given) <= READ_ACCOUNTS:
                    named = sorted({subject.removeprefix("account:") for _, subject, _ in given})
        if named is None or named:
            among = () if named is None else (StoredAccount.account_id.in_(named),)
            found = self._due("revise", (*_outdated(rules, moment, dialect), *among))
        done = self._each(policy, moment, sweep, found, _revise)
        # a look cut at the bound leaves the rest for the next, which reads them all again, as
        # it does an account that failed
        if len(found) < SWEEP_ACCOUNTS and sweep.failed.keys().isdisjoint(found):
            self._warnings_checked = (rules, head)
        return done

    def _sweep(
        self,
        policy: Policy,
        moment: datetime,
        sweep: Sweep,
        look: Look,
        due: tuple[ColumnElement[bool], ...],
        step: Callable[[Tx, str], int],
    ) -> int:
        """``step`` on each account ``look`` finds matching ``due`` (:meth:`_due`), each in a
        transaction of its own; the sum of what it gave."""
        return self._each(policy, moment, sweep, self._due(look, due), step)

    def _due(self, look: Look, due: tuple[ColumnElement[bool], ...]) -> Sequence[str]:
        """The accounts matching ``due``, at most :data:`SWEEP_ACCOUNTS`, longest unused first
        from where the last run of ``look`` stopped, whichever process ran it (its
        :class:`~service.storage.tables.SweepPlace`), and round to the first again past the
        last: one the sweep takes and leaves due (it fails every time, or is left alone) keeps
        its place, and would keep the accounts after it from every run were each to start from
        the first, as each did after a restart while the place was kept in memory. A run that
        reads to the last starts the next from the first: most take every account due, and
        write nothing. The place is moved before the accounts are written, from the turn it was
        read at, so that a process that reads it meanwhile goes on after them; one that lost
        the move reads again from where the other left it (:data:`MOVE_TRIES`)."""
        place = (StoredAccount.active_at, StoredAccount.account_id)
        # an account without a clock is left alone by every step: it is no account's place
        query = (
            select(StoredAccount.account_id, StoredAccount.active_at)
            .where(*due, StoredAccount.active_at.is_not(None))
            .order_by(*place)
            .limit(SWEEP_ACCOUNTS)
        )
        stored = select(SweepPlace.turn, SweepPlace.active_at, SweepPlace.account_id).where(
            SweepPlace.look == look
        )
        for _ in range(MOVE_TRIES):
            # most sweeps find nothing: they look without taking SQLite's write lock, each try
            # in a read of its own, which sees the place another process moved
            with self._session() as session:
                turn, active_at, account_id = session.execute(stored).one()
                # the two are stored, and cleared, together
                stopped: Place | None = (
                    None if active_at is None or account_id is None else (active_at, account_id)
                )
                rows: list[Any] = []
                wrapped = query
                if stopped is not None:
                    rows += session.execute(query.where(tuple_(*place) > stopped)).all()
                    wrapped = query.where(tuple_(*place) <= stopped)
                if len(rows) < SWEEP_ACCOUNTS:
                    rows += session.execute(wrapped.limit(SWEEP_ACCOUNTS - len(rows))).all()
            moved = (
                (rows[-1].active_at, rows[-1].account_id) if len(rows) == SWEEP_ACCOUNTS else None
            )
            if moved == stopped or self._move(look, turn, moved):
                return [row.account_id for row in rows]
        return ()

    def _move(self, look: Look, turn: int, place: Place | None) -> bool:
        """Store ``place`` as where ``look`` stopped (None: at the last account), unless another
        process moved it since it was read at ``turn``; whether it was stored."""
        active_at, account_id = (None, None) if place is None else place
        with self._writing() as session:
            moved = session.execute(
                update(SweepPlace)
                .where(SweepPlace.look == look, SweepPlace.turn == turn)
                .values(turn=turn + 1, active_at=active_at, account_id=account_id)
            )
            return cast(CursorResult[Any], moved).rowcount == 1

    def _each(
        self,
        policy: Policy,
        moment: datetime,
        sweep: Sweep,
        found: Sequence[str],
        step: Callable[[Tx, str], int],
    ) -> int:
        """``step`` on each account of ``found``, each in a transaction of its own (those that
        fail kept in ``sweep``, :meth:`_swept`); the sum of what it gave."""
        return sum(self._swept(sweep, a, policy, moment, step, a) for a in found)

    def dormancies_after(self, after: int | None) -> tuple[dict[str, datetime], int]:
        """The accounts found dormant or warned (:data:`FOUND`) in the chain's records after
        the record ``after``, each with the clock it was on (the latest of an account's), and
        the record to read after next time: at most :data:`READ_CHANGES` records a call. None
        (a process that has not looked yet), or a record past the chain's last (a database
        restored from an older backup): none, and the chain's last record."""
        with self._session() as session:
            head = _head(session)
            if after is None or after >= head:
                return {}, head
            rows = _chained(session, after, head, FOUND, READ_CHANGES)
        found = {
            subject.removeprefix("account:"): datetime.fromisoformat(payload["active_at"])
            for _, subject, payload in rows
        }
        return found, rows[-1][0] if len(rows) == READ_CHANGES else head


def _used(tx: Tx, account_id: str, at: datetime) -> bool:
    """End the warning or dormancy of ``account_id``, used at ``at`` (:func:`wake`, by the
    service, via ``post``); whether a dormancy ended."""
    item = open_item(tx, dormancy.merge_key(account_id))
    account = locked_account(tx, account_id)
    return wake(tx, account, item, at, "post", dormancy.SERVICE)


def _head(session: Session) -> int:
    """The chain's last record: every record up to it is committed (the chain numbers them
    under its head's lock, :func:`~service.storage.transaction.append_records`), so that a read
    after it misses none of them."""
    head = session.scalar(select(AuditHead.seq).where(AuditHead.id == 1))
    assert head is not None, "the audit head row is created by the migration"
    return head


def _chained(
    session: Session, after: int, head: int, kinds: tuple[str, ...], limit: int
) -> Sequence[tuple[int, str, dict[str, Any]]]:
    """The chain's records of ``kinds`` after the record ``after`` up to ``head`` (seq, subject
    and payload), in its order, at most ``limit``."""
    return (
        session.execute(
            select(AuditRecord.seq, AuditRecord.subject, AuditRecord.payload)
            .where(AuditRecord.seq > after, AuditRecord.seq <= head)
            .where(AuditRecord.kind.in_(kinds))
            .order_by(AuditRecord.seq)
            .limit(limit)
        )
        .tuples()
        .all()
    )


def _warn(tx: Tx, account_id: str, before: datetime) -> bool:
    """Mark ``account_id`` warned, unless it was found dormant, used since the sweep read it
    (its clock read again under its lock) or warned on a warning that has not lapsed
    (:func:`dormancy.lapsed_before`: one lapsed is given again, from now), and apply the
    warning for the platform to pass on: a ``dormancy_warning`` disposition that ends when the
    dormancy takes effect (:func:`dormancy.takes_effect`), with the record ``account.warned``."""
    account = locked_account(tx, account_id)
    clock = maybe_utc(account.active_at)
    if account.dormant_at is not None or clock is None or clock > before:
        return False
    warned = maybe_utc(account.warned_at)
    if warned is not None:
        told = _told(tx, account_id, warned)
        if told is None or told >= dormancy.lapsed_before(tx.now):
            return False
    account.warned_at = tx.now
    rules = tx.policy.dormancy
    effect = dormancy.takes_effect(rules, clock, tx.now)
    assert effect is not None, "a warning is given under a policy that gives one"
    login = maybe_utc(account.login_at)
    tx.record(
        "account.warned",
        f"account:{account_id}",
        {
            "active_at": clock.isoformat(),
            "active_by": account.active_by,
            "last_login_at": None if login is None else login.isoformat(),
            "after_days": rules.after_days,
            "warn_days": rules.warn_days,
            "takes_effect": effect.isoformat(),
        },
    )
    if dormancy.WARNING not in active_kinds(tx, account_id):
        apply_disposition(
            tx, account_id, dormancy.WARNING, rules.basis, None, effect, dormancy.SERVICE
        )
    return True


def _revise(tx: Tx, account_id: str) -> bool:
    """Lift the running warning of ``account_id`` (cause ``policy_changed``, by the service)
    where it no longer says what the policy does (:func:`dormancy.outdated`, read again under
    the account's lock), and give it again with the date the dormancy takes effect now; where
    the policy gives no dormancy now, none, and the account is no longer warned, so that a
    policy that gives one again warns it afresh. The record ``account.warning_revised`` says
    what the warning had said and what holds now (``takes_effect`` null: no dormancy)."""
    account = locked_account(tx, account_id)
    clock, warned = maybe_utc(account.active_at), maybe_utc(account.warned_at)
    if account.dormant_at is not None or clock is None or warned is None:
        return False
    rules = tx.policy.dormancy
    running = tx.session.scalars(
        select(StoredDisposition)
        .where(*_warning(account_id, warned), StoredDisposition.ends_at > tx.now)
        .order_by(StoredDisposition.id)
    ).all()
    told = max((utc(row.ends_at) for row in running if row.ends_at is not None), default=None)
    if told is None or not dormancy.outdated(rules, clock, warned, told):
        return False
    effect = dormancy.takes_effect(rules, clock, warned) if dormancy.follows(rules) else None
    tx.record(
        "account.warning_revised",
        f"account:{account_id}",
        {
            "active_at": clock.isoformat(),
            "warned_at": warned.isoformat(),
            "told": told.isoformat(),
            "after_days": rules.after_days,
            "warn_days": rules.warn_days,
            "action": rules.action,
            "notify": rules.notify,
            "takes_effect": None if effect is None else effect.isoformat(),
        },
    )
    for row in running:
        lift(tx, row, dormancy.SERVICE, {"cause": "policy_changed", "told": told.isoformat()})
    if effect is None:
        account.warned_at = None
    else:
        apply_disposition(
            tx, account_id, dormancy.WARNING, rules.basis, None, effect, dormancy.SERVICE
        )
    return True


def _fall_dormant(tx: Tx, account_id: str) -> bool:
    """Mark ``account_id`` dormant, unless it was marked or used since the sweep read it (its
    clock and warning read again under its lock) or its warning gave a later date, and apply
    ``[dormancy]``: its ``dormant`` item opened (``review``), the notice applied (``notify``),
    the measures applied by the service (``suspend``); the item's evidence and the record
    ``account.dormant`` say on what clock, when the warning was given and when the dormancy
    took effect, and the record what followed."""
    key = dormancy.merge_key(account_id)
    # the item before the account, as every writer locks
    item = open_item(tx, key)
    account = locked_account(tx, account_id)
    clock = maybe_utc(account.active_at)
    if account.dormant_at is not None or clock is None:
        return False
    rules = tx.policy.dormancy
    warned = maybe_utc(account.warned_at)
    told = None if warned is None else _told(tx, account_id, warned)
    if told is not None and told < dormancy.lapsed_before(tx.now):
        # a lapsed warning counts for none: the warning sweep gives the next
        warned = told = None
    effect = dormancy.takes_effect(rules, clock, warned, told)
    if effect is None or effect > tx.now:
        return False
    account.dormant_at = tx.now
    login = maybe_utc(account.login_at)
    facts = {
        "active_at": clock.isoformat(),
        "active_by": account.active_by,
        "last_login_at": None if login is None else login.isoformat(),
        "after_days": rules.after_days,
        "warned_at": None if warned is None else warned.isoformat(),
        "takes_effect": effect.isoformat(),
    }
    if rules.action == "review" and item is None:
        decided = last_decided(tx.session, key)
        item = new_item(
            tx,
            kind=dormancy.KIND,
            post_id=None,
            account_id=account_id,
            merge_key=key,
            head=dormancy.CATEGORY,
            severity="review",
            reach=account.followers,
            evidence={"basis": rules.basis, **facts},
            after=None if decided is None else decided.id,
        )
        item.urgency = urgency_of(tx.policy, item)
    item_id = None if item is None else item.id
    tx.record(
        "account.dormant",
        f"account:{account_id}",
        {
            **facts,
            "action": rules.action,
            "item": item_id,
        },
    )
    if rules.notify and dormancy.NOTICE not in active_kinds(tx, account_id):
        apply_disposition(
            tx, account_id, dormancy.NOTICE, rules.basis, item_id, None, dormancy.SERVICE
        )
    if rules.action == "suspend":
        apply_dormancy(tx, account_id, None, dormancy.SERVICE)
    return True


def _told(tx: Tx, account_id: str, warned: datetime) -> datetime | None:
    """The date the account's warning given at ``warned`` gave (:func:`_warning`)."""
    return maybe_utc(
        tx.session.scalar(
            select(func.max(StoredDisposition.ends_at)).where(*_warning(account_id, warned))
        )
    )


def _lapsed(moment: datetime) -> ColumnElement[bool]:
    """An account whose warning lapsed by ``moment`` (:func:`dormancy.lapsed_before`)."""
    return _warned_with(StoredDisposition.ends_at < dormancy.lapsed_before(moment))


def _warned_with(*terms: ColumnElement[bool]) -> ColumnElement[bool]:
    """An account the sweep reads whose warning (:func:`_warning`, on its ``warned_at``)
    matches ``terms``."""
    return exists().where(*_warning(StoredAccount.account_id, StoredAccount.warned_at), *terms)


def _outdated(
    rules: DormancyRules, moment: datetime, dialect: str
) -> tuple[ColumnElement[bool], ...]:
    """An account whose warning still runs at ``moment`` and no longer says what ``rules`` do
    (:func:`dormancy.outdated`, by more than :data:`dormancy.MOVED`): any running warning where
    they give no dormancy, else one whose date is before the one they give. Read from the
    running warnings (the index on kinds and ends), the few among the accounts."""
    warned = aliased(StoredAccount, name="warned")
    later: list[ColumnElement[bool]] = []
    if dormancy.follows(rules):
        days = [(warned.active_at, rules.after_days)]
        if rules.warn_days:
            days.append((warned.warned_at, rules.warn_days))
        later = [
            or_(
                *(
                    _earlier(dialect, StoredDisposition.ends_at, start, timedelta(days=n))
                    for start, n in days
                )
            )
        ]
    running = select(StoredDisposition.account_id).where(
        # the running warnings, off the index on kinds and ends
        StoredDisposition.kind == dormancy.WARNING,
        *_warning(warned.account_id, warned.warned_at),
        warned.dormant_at.is_(None),
        StoredDisposition.ends_at > moment,
        *later,
    )
    return (*_awake(), StoredAccount.account_id.in_(running))


def _earlier(
    dialect: str,
    moment: InstrumentedAttribute[datetime | None],
    start: InstrumentedAttribute[datetime | None],
    after: timedelta,
) -> ColumnElement[bool]:
    """``moment`` is more than :data:`dormancy.MOVED` earlier than ``after`` past ``start``:
    on SQLite, which holds times as text, in Julian days."""
    by = after - dormancy.MOVED
    if dialect == "sqlite":
        return func.julianday(moment) < func.julianday(start) + by / timedelta(days=1)
    return moment < start + by


def _awake() -> tuple[ColumnElement[bool], ...]:
    """An account not found dormant: :data:`~service.storage.tables.AWAKE`, as SQLite finds its
    partial index only for a query that says its predicate."""
    return (StoredAccount.dormant_at.is_(None),)


def _unwarned() -> tuple[ColumnElement[bool], ...]:
    """An account neither found dormant nor warned: :data:`~service.storage.tables.UNWARNED`,
    as :func:`_awake` says its own."""
    return (StoredAccount.dormant_at.is_(None), StoredAccount.warned_at.is_(None))


def _warning(
    account_id: ColumnElement[str] | InstrumentedAttribute[str] | str,
    warned: ColumnElement[datetime | None] | InstrumentedAttribute[datetime | None] | datetime,
) -> tuple[ColumnElement[bool], ...]:
    """The warning given the account on the clock it was warned on at ``warned`` (its
    ``warned_at``: :func:`_warn` applies it then), not lifted: its ``ends_at`` is the date the
    platform told the holder the dormancy takes effect."""
    return (
        StoredDisposition.account_id == account_id,
        # looked up by the account: SQLite, which keeps no statistics, would take the index on
        # kinds and ends for a kind compared as it is, and read every warning of the range
        StoredDisposition.kind.concat("") == dormancy.WARNING,
        StoredDisposition.starts_at >= warned,
        StoredDisposition.lifted_at.is_(None),
    )
