"""The order review writes lock rows in on PostgreSQL: two writes that meet on an account and an
item each run while the other holds its first lock, so that neither waits for the other there,
which is where a wait would close a cycle (a deadlock, found after ``deadlock_timeout`` and
answered by retrying the write, or by a 503 where the lock timeout comes first). The rows a
write inserts refer to accounts, items and appeals, and the check of such a reference must not
wait for a writer that holds the row: an appeal filed (its item, then its account referred to)
beside the end of an art8 suspension settled or an appeal upheld (the account, then the items
their dispositions are applied on). An advisory lock is asked for before any row is locked: a
rename, an appeal upheld or an art8 settlement that waits for a protected name being added
(which holds the protected names) holds no account that a decision waits for while holding the
item the add goes on to lock; a protected name removed holds them too, so that an upheld appeal
waits for it before locking anything, and an entry added meanwhile follows it, as an entry
added or removed follows a settlement that decided on the name's entries. A claim that loses a
race waits and is refused. A sweep's write on one account that loses a race is tried again, as a
request's is, and the sweep goes on to the accounts after it."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest
from servicekit import record
from sqlalchemy import event, text
from test_dormancy import dormant_after, warned_after
from test_protected_names import HOUR, _suspend
from test_review_appeals import DAY, T0, appeal_of, confirmed, impersonating

from service.policy import Policy
from service.review import dormancy, views
from service.review.items import ConflictError
from service.storage import Pending, SqlRepository, open_repository, upgrade

HELD_S = 3.0
"""How long the first write holds its lock while the other runs: well under the lock timeout
(5 s here), so that a write that waits is seen waiting, not failing."""


@pytest.fixture
def repo(postgres_url: str, policy: Policy) -> Iterator[SqlRepository]:
    """A migrated repository on PostgreSQL alone: SQLite runs one write at a time."""
    upgrade(postgres_url)
    repository = open_repository(postgres_url, 5.0, policy.review)
    yield repository
    repository.close()


def locks(table: str) -> re.Pattern[str]:
    """A statement that locks rows of ``table``."""
    return re.compile(rf"\bFROM {table}\b.*\bFOR (NO KEY )?UPDATE\b", re.DOTALL)


LOCKS_ACCOUNTS = locks("accounts")


def while_holding(
    repo: SqlRepository,
    statement: re.Pattern[str],
    first: Callable[[], Any],
    second: Callable[[], Any],
) -> tuple[bool, list[str], list[BaseException]]:
    """Run ``first`` until it has run its first ``statement`` (one that locks rows, or reads
    what it decides on), then ``second`` beside it for up to :data:`HELD_S`, then let ``first``
    go on; whether ``second`` waited for ``first``, the SQLSTATEs of the deadlocks either met,
    and what either raised."""
    holds, go = threading.Event(), threading.Event()
    deadlocks: list[str] = []
    raised: list[BaseException] = []

    def pause(_conn: object, _cursor: object, this: str, *_: object) -> None:
        mine = threading.current_thread() is holder and not holds.is_set()
        if mine and statement.search(this):
            holds.set()
            go.wait(4 * HELD_S)

    def failed(context: Any) -> None:
        code = getattr(context.original_exception, "sqlstate", None)
        if code in {"40P01", "40001"}:
            deadlocks.append(code)

    def run(write: Callable[[], Any]) -> Callable[[], None]:
        def target() -> None:
            try:
                write()
            except BaseException as exc:
                raised.append(exc)

        return target

    event.listen(repo.engine, "after_cursor_execute", pause)
    event.listen(repo.engine, "handle_error", failed)
    holder = threading.Thread(target=run(first))
    beside = threading.Thread(target=run(second))
    try:
        holder.start()
        assert holds.wait(10), f"the first write never ran {statement.pattern}"
        beside.start()
        beside.join(HELD_S)
        waited = beside.is_alive()
    finally:
        go.set()
        holder.join(30)
        beside.join(30)
        event.remove(repo.engine, "after_cursor_execute", pause)
        event.remove(repo.engine, "handle_error", failed)
    return waited, deadlocks, raised


@pytest.mark.parametrize("table", ["accounts", "dispositions"])
def test_an_appeal_filed_as_the_suspension_it_appeals_is_settled_waits_for_neither(
    repo: SqlRepository, policy: Policy, table: str
) -> None:
    """The settlement locks the account, then the suspension (``FOR UPDATE``, which no row's
    reference is checked against: none refers to a disposition), then applies the termination
    on the impersonation item; the holder's appeal of that item locks the item, then files
    against the account."""
    suspension = _suspend(repo, policy, "kept")["kept"]
    assert suspension.ends_at is not None and suspension.item_id is not None
    after = suspension.ends_at + timedelta(seconds=1)
    settled: list[int] = []

    def settle() -> None:
        settled.append(repo.settle_deadlines(policy, now=after))

    def appeal() -> None:
        repo.file_appeal(
            policy,
            account_id="kept",
            item_id=suspension.item_id or 0,
            reason="已获授权",
            filed_by="k",
            now=after + HOUR,
        )

    assert while_holding(repo, locks(table), settle, appeal) == (False, [], [])
    assert settled == [1]
    (filed,) = repo.list_appeals(now=after + HOUR).appeals
    assert (filed.account_id, filed.item_id) == ("kept", suspension.item_id)
    shown = repo.get_account(policy, "kept", now=after + HOUR).dispositions
    assert "close_account" in {d.kind for d in shown}


def test_an_appeal_filed_as_another_of_the_account_is_upheld_waits_for_neither(
    repo: SqlRepository, policy: Policy
) -> None:
    """Upholding the appeal of the first violation locks the account, then gives the warning
    again on the later one; the holder's appeal of the later one locks it, then files against
    the account."""
    first = confirmed(repo, policy, "p1", "acc1", T0)
    later = confirmed(repo, policy, "p2", "acc1", T0 + HOUR)
    at = T0 + 2 * HOUR
    appealed = appeal_of(repo, policy, first, at)
    upheld: list[set[tuple[str, int | None]]] = []

    def uphold() -> None:
        done = repo.decide_appeal(policy, appealed, "r2", "uphold", None, now=at)
        upheld.append({(d.kind, d.item_id) for d in done.reversed if hasattr(d, "kind")})

    def appeal() -> None:
        appeal_of(repo, policy, later, at)

    assert while_holding(repo, LOCKS_ACCOUNTS, uphold, appeal) == (False, [], [])
    # the warning lifted with the first violation, given again on the later one
    (reversed_,) = upheld
    assert {("warning", first.item_id), ("warning", later.item_id)} <= reversed_
    filed = {(a.item_id, a.status) for a in repo.list_appeals(now=at).appeals}
    assert filed == {(first.item_id, "upheld"), (later.item_id, "pending")}


def test_an_appeal_upheld_as_the_protected_name_of_its_account_is_removed_waits_for_it_first(
    repo: SqlRepository, policy: Policy
) -> None:
    """Removing the entry holds the protected names, then locks the impersonation item whose
    suspension runs, then its account; upholding the appeal of the account's earlier violation,
    which would lock the account, then give the warning again on the impersonation item, its
    latest violation, waits for the removal at the protected names, holding no row."""
    first = confirmed(repo, policy, "p1", "kept", T0 - HOUR)
    suspension = _suspend(repo, policy, "kept")["kept"]
    at = T0 + 2 * HOUR
    appealed = appeal_of(repo, policy, first, at)
    (entry,) = repo.protected_names()
    upheld: list[set[tuple[str, int | None]]] = []

    def remove() -> None:
        repo.remove_protected_name(policy, entry.id, "k-admin", now=at)

    def uphold() -> None:
        done = repo.decide_appeal(policy, appealed, "r2", "uphold", None, now=at)
        upheld.append({(d.kind, d.item_id) for d in done.reversed if hasattr(d, "kind")})

    assert while_holding(repo, locks("review_queue"), remove, uphold) == (True, [], [])
    (reversed_,) = upheld
    assert {("warning", first.item_id), ("warning", suspension.item_id)} <= reversed_
    assert repo.protected_names() == []
    shown = repo.get_account(policy, "kept", now=at).dispositions
    assert "warning" in {d.kind for d in shown}
    assert "suspend_service" not in {d.kind for d in shown}


READS_ENTRIES = re.compile(r"\bFROM protected_names\b.*\bLIKE\b", re.DOTALL)
"""The read of the entries an account's name holds (:func:`protected_in`)."""


def test_a_protected_name_added_as_another_is_removed_waits_for_the_removal(
    repo: SqlRepository, policy: Policy
) -> None:
    """Removing 姚明 reads, under the account's lock, whether the account's name holds another
    entry, finds none and lifts its suspension; 球迷会, which the name holds too, added in the
    meantime asks for the protected names before it reads the names, so it comes after the
    removal in the chain: never an entry added before a lift whose record says the name holds
    no other. The account's confirmed item is no open one for the add to wait at."""
    suspension = _suspend(repo, policy, "kept")["kept"]
    (removed,) = repo.protected_names()
    at = T0 + 2 * HOUR

    def remove() -> None:
        repo.remove_protected_name(policy, removed.id, "k-admin", now=at)

    def add() -> None:
        repo.add_protected_name(
            policy, name="球迷会", kind="organisation", subject_ids=[], by="k", now=at
        )

    assert while_holding(repo, READS_ENTRIES, remove, add) == (True, [], [])
    told = {"protected.added", "protected.removed", "disposition.lifted"}
    chained = [e for e in repo.audit_entries(start=at) if e.kind in told]
    assert [(e.kind, e.payload.get("name")) for e in chained] == [
        ("protected.removed", "姚明"),
        ("disposition.lifted", "姚明球迷会kept"),
        ("protected.added", "球迷会"),
    ]
    assert chained[1].payload["disposition"] == suspension.id
    # the suspension for 姚明 lifted, the name sent to review again for 球迷会
    (item,) = repo.list_items(policy, kind="impersonation", now=at).items
    assert item.account_id == "kept"
    assert [p["name"] for p in (item.evidence or {})["protected"]] == ["球迷会"]
    shown = repo.get_account(policy, "kept", now=at).dispositions
    assert "suspend_service" not in {d.kind for d in shown}


def test_a_protected_name_added_as_a_suspension_is_settled_waits_for_the_settlement(
    repo: SqlRepository, policy: Policy
) -> None:
    """The settlement reads, under the account's lock, whether the account's name holds an
    entry, finds none (renamed once the suspension had ended) and settles it as cleared;
    球迷会, which the new name holds, added in the meantime waits for the settlement at the
    protected names, so it comes after the settlement in the chain: never an entry added that
    the name holds before a record that says it held none. The account's confirmed item is no
    open one for the add to wait at."""
    suspension = _suspend(repo, policy, "kept")["kept"]
    assert suspension.ends_at is not None
    renamed = suspension.ends_at + timedelta(seconds=1)
    # nothing to lift once it has ended: the settlement clears it
    repo.put_account(policy, "kept", name="球迷会官方", by="k-pub", now=renamed)
    at = renamed + HOUR
    settled: list[int] = []

    def settle() -> None:
        settled.append(repo.settle_deadlines(policy, now=at))

    def add() -> None:
        repo.add_protected_name(
            policy, name="球迷会", kind="organisation", subject_ids=[], by="k", now=at
        )

    assert while_holding(repo, READS_ENTRIES, settle, add) == (True, [], [])
    assert settled == [0]
    told = {"protected.added", "protected.deadline"}
    chained = [e for e in repo.audit_entries(start=at) if e.kind in told]
    assert [(e.kind, e.payload.get("name")) for e in chained] == [
        ("protected.deadline", "球迷会官方"),
        ("protected.added", "球迷会"),
    ]
    assert (chained[0].payload["outcome"], chained[0].payload["protected"]) == ("cleared", [])
    # the suspension ended without a termination, the name sent to review again for 球迷会
    (item,) = repo.list_items(policy, kind="impersonation", now=at).items
    assert item.account_id == "kept"
    assert [p["name"] for p in (item.evidence or {})["protected"]] == ["球迷会"]
    shown = repo.get_account(policy, "kept", now=at).dispositions
    assert not {"suspend_service", "close_account"} & {d.kind for d in shown}


def test_a_protected_name_removed_as_the_suspension_it_called_for_is_settled_waits_for_it(
    repo: SqlRepository, policy: Policy
) -> None:
    """The settlement finds the name still holding 姚明 and terminates the service; removing
    姚明 meanwhile, whose suspension has ended (no running one for the removal to lock the
    item of), waits for the settlement at the protected names, so the chain never gives the
    entry removed before a termination for holding it."""
    suspension = _suspend(repo, policy, "kept")["kept"]
    assert suspension.ends_at is not None
    (entry,) = repo.protected_names()
    at = suspension.ends_at + HOUR
    settled: list[int] = []

    def settle() -> None:
        settled.append(repo.settle_deadlines(policy, now=at))

    def remove() -> None:
        repo.remove_protected_name(policy, entry.id, "k-admin", now=at)

    assert while_holding(repo, READS_ENTRIES, settle, remove) == (True, [], [])
    assert settled == [1]
    told = {"protected.removed", "protected.deadline"}
    chained = [e for e in repo.audit_entries(start=at) if e.kind in told]
    assert [(e.kind, e.payload.get("name")) for e in chained] == [
        ("protected.deadline", "姚明球迷会kept"),
        ("protected.removed", "姚明"),
    ]
    assert chained[0].payload["outcome"] == "terminated"
    assert [p["name"] for p in chained[0].payload["protected"]] == ["姚明"]
    # a termination at the deadline stays: an upheld appeal is its remedy
    shown = repo.get_account(policy, "kept", now=at).dispositions
    assert "close_account" in {d.kind for d in shown}


def test_a_claim_that_loses_a_race_waits_for_the_winner_and_is_refused(
    repo: SqlRepository, policy: Policy
) -> None:
    """A claim locks its item and nothing else, so the one that comes second waits for the
    first at the item, meets no deadlock nor unique key to be tried again for, and is refused
    as a conflict (409), as a claim arriving after the first's commit is."""
    repo.save_records(
        [Pending(record("p1", "review").model_copy(update={"account_id": "a"}), True, "帖子")]
    )
    (item,) = repo.list_items(policy, now=T0).items

    def claim(reviewer: str) -> Callable[[], views.Lease]:
        return lambda: repo.claim(policy, item.id, reviewer, now=T0)

    waited, deadlocks, raised = while_holding(repo, locks("review_queue"), claim("r1"), claim("r2"))
    assert (waited, deadlocks) == (True, [])
    (refused,) = raised
    assert isinstance(refused, ConflictError)
    assert str(refused).startswith("the item is claimed by another reviewer until")
    assert repo.get_item(policy, item.id, now=T0).assignee == "r1"


def waits(repo: SqlRepository, pid: int) -> bool:
    """Whether the backend ``pid`` waits for a lock."""
    with repo.engine.connect() as conn:
        asked = "SELECT count(*) FROM pg_locks WHERE pid = :pid AND NOT granted"
        return bool(conn.scalar(text(asked), {"pid": pid}))


def beside_an_entry_added(
    repo: SqlRepository,
    add: Callable[[], Any],
    holder: Callable[[], Any],
    confirm: Callable[[], Any],
) -> tuple[list[str], list[BaseException]]:
    """Run ``add`` (an entry added) until it holds the protected names, then ``holder`` (a write
    on an account whose name holds the entry) until it waits, then ``confirm`` (a decision
    confirming the account's open impersonation item, which locks the item, then the account)
    until it waits or ends, then let ``add`` go on: the SQLSTATEs of the deadlocks any met, and
    what any raised. A write that locked the account before asking for the protected names
    would hold what ``confirm`` waits for, ``confirm`` the item ``add`` goes on to lock, and
    ``add`` what the write waits for."""
    holds, go = threading.Event(), threading.Event()
    pids: dict[threading.Thread, int] = {}
    deadlocks: list[str] = []
    raised: list[BaseException] = []

    def known(_conn: object, cursor: Any, *_: object) -> None:
        # the latest statement's: a sweep reads what is due on one connection, then writes on
        # whichever the pool gives it next
        pids[threading.current_thread()] = cursor.connection.info.backend_pid

    def pause(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        mine = threading.current_thread() is adding and not holds.is_set()
        if mine and "pg_advisory_xact_lock(" in statement:
            holds.set()
            go.wait(4 * HELD_S)

    def failed(context: Any) -> None:
        code = getattr(context.original_exception, "sqlstate", None)
        if code in {"40P01", "40001"}:
            deadlocks.append(code)

    def run(write: Callable[[], Any]) -> threading.Thread:
        def target() -> None:
            try:
                write()
            except BaseException as exc:
                raised.append(exc)

        return threading.Thread(target=target)

    def waited(thread: threading.Thread) -> bool:
        """Whether ``thread`` came to wait for a lock within :data:`HELD_S` (False: it ended,
        or never waited)."""
        for _ in range(int(HELD_S / 0.02)):
            if not thread.is_alive():
                return False
            pid = pids.get(thread)
            if pid is not None and waits(repo, pid):
                return True
            threading.Event().wait(0.02)
        return False

    adding, holding, confirming = run(add), run(holder), run(confirm)
    event.listen(repo.engine, "before_cursor_execute", known)
    event.listen(repo.engine, "after_cursor_execute", pause)
    event.listen(repo.engine, "handle_error", failed)
    try:
        adding.start()
        assert holds.wait(10), "the entry's add never took the protected names"
        holding.start()
        assert waited(holding), "the write on the account never waited for the entry's add"
        confirming.start()
        waited(confirming)
    finally:
        go.set()
        # an assertion above may have failed before the later ones started
        for thread in (adding, holding, confirming):
            if thread.ident is not None:
                thread.join(30)
        event.remove(repo.engine, "before_cursor_execute", known)
        event.remove(repo.engine, "after_cursor_execute", pause)
        event.remove(repo.engine, "handle_error", failed)
    return deadlocks, raised


def test_a_rename_beside_a_protected_name_added_and_a_decision_deadlocks_with_neither(
    repo: SqlRepository, policy: Policy
) -> None:
    """The rename asks for the protected names (shared) before it locks the account: the add
    holds them (exclusive) and goes on to the account's open impersonation item, which the
    decision confirming it locks before the account."""
    repo.put_account(policy, "kept", name="姚明球迷会官方", now=T0)
    repo.add_protected_name(policy, name="姚明", kind="person", subject_ids=[], by="k", now=T0)
    (held,) = repo.list_items(policy, kind="impersonation", now=T0).items
    at = T0 + HOUR

    def add() -> None:
        repo.add_protected_name(
            policy, name="球迷会官方", kind="organisation", subject_ids=[], by="k", now=at
        )

    def rename() -> None:
        repo.put_account(policy, "kept", name="篮球之家", by="k-pub", now=at)

    assert beside_an_entry_added(repo, add, rename, confirming(repo, policy, held, at)) == ([], [])
    assert [e.name for e in repo.protected_names()] == ["姚明", "球迷会官方"]
    shown = repo.get_account(policy, "kept", now=at)
    assert shown.name == "篮球之家"
    # confirmed before the add came to it, then corrected by the rename
    assert "suspend_service" not in {d.kind for d in shown.dispositions}
    (item,) = repo.list_items(policy, kind="impersonation", now=at).items
    assert [p["name"] for p in (item.evidence or {})["protected"]] == ["球迷会官方"]


def test_an_upheld_appeal_beside_a_protected_name_added_and_a_decision_deadlocks_with_neither(
    repo: SqlRepository, policy: Policy
) -> None:
    """Upholding the appeal of the close that stood in for art8's termination asks for the
    protected names (shared) before it locks the appeal and the account, as the rename does."""
    impersonating(repo, policy)
    made = [confirmed(repo, policy, f"p{n}", "acc1", T0 + (1 + n) * DAY) for n in range(2)]
    assert repo.settle_deadlines(policy, now=T0 + 16 * DAY) == 0
    repo.add_protected_name(
        policy, name="球迷会", kind="organisation", subject_ids=[], by="k", now=T0 + 17 * DAY
    )
    (held,) = repo.list_items(policy, kind="impersonation", now=T0 + 17 * DAY).items
    at = T0 + 20 * DAY
    appealed = appeal_of(repo, policy, made[1], at)

    def add() -> None:
        repo.add_protected_name(
            policy, name="明球迷", kind="organisation", subject_ids=[], by="k", now=at
        )

    def uphold() -> None:
        repo.decide_appeal(policy, appealed, "r2", "uphold", None, now=at)

    assert beside_an_entry_added(repo, add, uphold, confirming(repo, policy, held, at)) == ([], [])
    assert sorted(e.name for e in repo.protected_names()) == ["姚明", "明球迷", "球迷会"]
    assert {(a.id, a.status) for a in repo.list_appeals(now=at).appeals} == {(appealed, "upheld")}
    # the impersonation confirmed beside it calls for a close of its own: none is left to stand
    # in for art8's termination
    shown = repo.get_account(policy, "acc1", now=at).dispositions
    assert {
        (d.kind, d.item_id) for d in shown if d.kind in {"suspend_service", "close_account"}
    } == {
        ("suspend_service", held.id),
        ("close_account", held.id),
    }


def test_an_art8_settlement_beside_a_protected_name_added_and_a_decision_deadlocks_with_neither(
    repo: SqlRepository, policy: Policy
) -> None:
    """The settlement asks for the protected names (shared) before it locks the account, as
    the rename does, and settles on the entries the add gave: the name holds 明球迷 too."""
    suspension = _suspend(repo, policy, "kept")["kept"]
    assert suspension.ends_at is not None
    repo.add_protected_name(
        policy, name="球迷会", kind="organisation", subject_ids=[], by="k", now=T0 + 2 * HOUR
    )
    (held,) = repo.list_items(policy, kind="impersonation", now=T0 + 2 * HOUR).items
    at = suspension.ends_at + HOUR
    settled: list[int] = []

    def add() -> None:
        repo.add_protected_name(
            policy, name="明球迷", kind="organisation", subject_ids=[], by="k", now=at
        )

    def settle() -> None:
        settled.append(repo.settle_deadlines(policy, now=at))

    assert beside_an_entry_added(repo, add, settle, confirming(repo, policy, held, at)) == ([], [])
    assert settled == [1]
    (record_,) = [e for e in repo.audit_entries(start=at) if e.kind == "protected.deadline"]
    assert record_.payload["outcome"] == "terminated"
    assert [p["name"] for p in record_.payload["protected"]] == ["姚明", "球迷会", "明球迷"]
    shown = repo.get_account(policy, "kept", now=at).dispositions
    assert ("close_account", suspension.item_id) in {(d.kind, d.item_id) for d in shown}


def confirming(
    repo: SqlRepository, policy: Policy, item: views.Item, at: datetime
) -> Callable[[], views.Decision]:
    """A decision confirming the impersonation ``item``."""
    basis = policy.registration.protected_basis
    return lambda: repo.decide(policy, item.id, "r1", "confirm", "impersonation", basis, now=at)


MOVES_CLOCKS = re.compile(r"^UPDATE accounts SET active_at=")


@contextmanager
def deadlocked_once(
    repo: SqlRepository, statement_of: re.Pattern[str] = LOCKS_ACCOUNTS
) -> Iterator[list[str]]:
    """The first statement matching ``statement_of`` (by default one that locks accounts)
    fails as PostgreSQL fails the write it ends to break a deadlock (SQLSTATE 40P01), before it
    runs; yields the statements failed."""
    failed: list[str] = []

    def fail(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        if not failed and statement_of.search(statement):
            failed.append(statement)
            raise psycopg.errors.DeadlockDetected("deadlock detected")

    event.listen(repo.engine, "before_cursor_execute", fail)
    try:
        yield failed
    finally:
        event.remove(repo.engine, "before_cursor_execute", fail)


ACCOUNTS = ("first", "second")


def test_an_art8_settlement_that_loses_a_race_is_tried_again_and_settles_the_rest(
    repo: SqlRepository, policy: Policy
) -> None:
    suspended = _suspend(repo, policy, *ACCOUNTS)
    ends = max(s.ends_at for s in suspended.values() if s.ends_at is not None)
    with deadlocked_once(repo) as failed:
        assert repo.settle_deadlines(policy, now=ends) == len(ACCOUNTS)
    assert len(failed) == 1
    for account in ACCOUNTS:
        shown = repo.get_account(policy, account, now=ends).dispositions
        assert "close_account" in {d.kind for d in shown}


def test_a_credit_restoration_that_loses_a_race_is_tried_again_and_restores_the_rest(
    repo: SqlRepository, policy: Policy
) -> None:
    charged = {a: confirmed(repo, policy, f"p-{a}", a, T0).credits[0].credit for a in ACCOUNTS}
    due = T0 + timedelta(days=policy.credit.restore_every_days)
    with deadlocked_once(repo) as failed:
        assert repo.restore_credit(policy, now=due) == len(ACCOUNTS)
    assert len(failed) == 1
    for account, credit in charged.items():
        restored = repo.get_account(policy, account, now=due).credit
        assert restored == credit + policy.credit.restore_points


def test_dormancy_sweeps_and_a_return_that_lose_a_race_are_tried_again_and_do_the_rest(
    repo: SqlRepository, policy: Policy
) -> None:
    for account in ACCOUNTS:
        repo.put_account(policy, account, now=T0)
    warn_at, found_at = T0 + warned_after(policy), T0 + dormant_after(policy)
    with deadlocked_once(repo) as failed:
        assert repo.warn_dormancy(policy, now=warn_at) == len(ACCOUNTS)
    with deadlocked_once(repo) as failed_too:
        assert repo.settle_dormancy(policy, now=found_at) == len(ACCOUNTS)
    assert (len(failed), len(failed_too)) == (1, 1)
    for account in ACCOUNTS:
        shown = repo.get_account(policy, account, now=found_at)
        assert shown.dormant_at == found_at
        assert dormancy.NOTICE in {d.kind for d in shown.dispositions}
    back = found_at + HOUR
    with deadlocked_once(repo, MOVES_CLOCKS) as moving, deadlocked_once(repo) as failed:
        assert repo.record_use(policy, dict.fromkeys(ACCOUNTS, back), now=back) == len(ACCOUNTS)
    assert (len(moving), len(failed)) == (1, 1)
    for account in ACCOUNTS:
        assert repo.get_account(policy, account, now=back).dormant_at is None
