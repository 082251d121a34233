"""A maintenance sweep over accounts (the art8 settlement, the credit restoration, the dormancy
warnings, their revision and the dormancy findings, a use seen) goes past an account whose own
write fails other than by an outage (a row the rules cannot take, a value the code cannot
handle, a bug), logs it, and does the accounts after it, as the sweep finishing registration
batches' charges goes past an item; the next run tries it again, and one bounded per run goes
on from where the last stopped, round to the first again. An outage stops the sweep at once.
The server counts what a sweep went past in its metrics, and ``qinglang credit restore`` names
the accounts and exits 1."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple

import pytest
from servicekit import Api, open_api
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from test_dormancy import DAY, HOUR, dormant_after, kinds, warned_after, with_dormancy
from test_protected_names import _suspend
from test_review_appeals import T0, confirmed
from test_signups import MINUTE, StoppedError, stop_at

from service.pipeline import Pipeline
from service.policy import Policy
from service.review import dormancy, signups
from service.scoring import ScoringService
from service.settings import get_settings
from service.storage import (
    SqlRepository,
    StorageError,
    StorageUnavailableError,
    SweepIncompleteError,
    accounts_sql,
    credit_steps,
    dormancy_sql,
    open_repository,
    protected_sql,
    review_sql,
)
from service.storage.tables import CreditEntry
from service.storage.transaction import Tx

ACCOUNTS = ("a1", "a2", "a3", "a4")
Run = Callable[[SqlRepository], int]
"""A run of a sweep, on the repository given (a process of its own, or the same one)."""
Done = Callable[[str], bool]


class Due(NamedTuple):
    run: Run
    done: Done
    """Whether the sweep did a key."""
    keys: tuple[str, ...] = ACCOUNTS
    """What the sweep writes one at a time, in its order: the accounts, or the items."""


@dataclass(frozen=True)
class Case:
    sweep: str
    """The sweep's name in its log lines and the metrics."""
    module: ModuleType
    step: str
    """The function the sweep runs on each key, in ``module``."""
    prepare: Callable[[SqlRepository, Policy], Due]
    """Makes four keys due to the sweep (``ACCOUNTS``, or items)."""
    of: str = "account"
    """What a key is (:attr:`~service.storage.review_sql.Sweep.of`): ``item`` where the step
    takes an item's id rather than an account's."""


def art8(repo: SqlRepository, policy: Policy) -> Due:
    suspended = _suspend(repo, policy, *ACCOUNTS)
    ends = max(s.ends_at for s in suspended.values() if s.ends_at is not None)
    return Due(
        lambda r: r.settle_deadlines(policy, now=ends),
        lambda a: "close_account" in kinds(repo.get_account(policy, a, now=ends)),
    )


def credit(repo: SqlRepository, policy: Policy) -> Due:
    charged = {a: confirmed(repo, policy, f"p-{a}", a, T0).credits[0].credit for a in ACCOUNTS}
    due = T0 + timedelta(days=policy.credit.restore_every_days)
    return Due(
        lambda r: r.restore_credit(policy, now=due),
        lambda a: repo.get_account(policy, a, now=due).credit > charged[a],
    )


def unused(repo: SqlRepository, policy: Policy) -> datetime:
    """``ACCOUNTS`` last used at ``T0``; when they are due a warning."""
    for account in ACCOUNTS:
        repo.put_account(policy, account, now=T0)
    return T0 + warned_after(policy)


def warnings(repo: SqlRepository, policy: Policy) -> Due:
    warn_at = unused(repo, policy)
    return Due(
        lambda r: r.warn_dormancy(policy, now=warn_at),
        lambda a: repo.get_account(policy, a, now=warn_at).warned_at == warn_at,
    )


def revisions(repo: SqlRepository, policy: Policy) -> Due:
    """Warnings the policy, changed to bring nothing, lifts."""
    warn_at = unused(repo, policy)
    assert repo.warn_dormancy(policy, now=warn_at) == len(ACCOUNTS)
    silent = with_dormancy(policy, action="none", notify=False)
    between = warn_at + 10 * DAY
    return Due(
        lambda r: r.warn_dormancy(silent, now=between),
        lambda a: repo.get_account(silent, a, now=between).warned_at is None,
    )


def dormant(repo: SqlRepository, policy: Policy) -> datetime:
    """``ACCOUNTS`` warned; when their dormancy takes effect."""
    assert repo.warn_dormancy(policy, now=unused(repo, policy)) == len(ACCOUNTS)
    return T0 + dormant_after(policy)


def findings(repo: SqlRepository, policy: Policy) -> Due:
    found_at = dormant(repo, policy)
    return Due(
        lambda r: r.settle_dormancy(policy, now=found_at),
        lambda a: repo.get_account(policy, a, now=found_at).dormant_at == found_at,
    )


def lapsed(repo: SqlRepository, policy: Policy) -> Due:
    """Warnings that ran out with no dormancy found, given again once lapsed."""
    again_at = dormant(repo, policy) + dormancy.LAPSE + HOUR
    return Due(
        lambda r: r.warn_dormancy(policy, now=again_at),
        lambda a: repo.get_account(policy, a, now=again_at).warned_at == again_at,
    )


def use(repo: SqlRepository, policy: Policy) -> Due:
    found_at = dormant(repo, policy)
    assert repo.settle_dormancy(policy, now=found_at) == len(ACCOUNTS)
    back = found_at + HOUR
    return Due(
        lambda r: r.record_use(policy, dict.fromkeys(ACCOUNTS, back), now=back),
        lambda a: repo.get_account(policy, a, now=back).dormant_at is None,
    )


SKELETONS = ("清朗日报", "晨光晚报", "星河周刊", "青山时报")


def charges(repo: SqlRepository, policy: Policy) -> Due:
    """Four registration batches confirmed by processes that stopped before their last
    member's chunk (a member a chunk: each item has one member left, so that the sweep
    counts one for each, as the others count an account)."""
    size = policy.registration.batch_accounts
    keys = []
    with pytest.MonkeyPatch.context() as patched:
        patched.setattr(signups, "LISTED", 1)
        patched.setattr(credit_steps, "CHARGE_CHUNK", 1)
        for k, skeleton in enumerate(SKELETONS):
            members = [f"s{k}-{n}" for n in range(size)]
            for n, member in enumerate(members):
                repo.put_account(
                    policy,
                    member,
                    name=f"{skeleton}{n:02}",
                    subject_id=f"S{k}-{n}",
                    now=T0 + n * MINUTE,
                )
            # the batches before it decided, its item is the one open
            (item,) = repo.list_items(policy, kind=signups.KIND).items
            stop_at(patched, members[-1])
            with pytest.raises(StoppedError):
                repo.decide(policy, item.id, "r1", "confirm", "bulk_registration", "art10")
            keys.append(str(item.id))

    def done(key: str) -> bool:
        with Session(repo.engine) as session:
            charged = session.scalar(
                select(func.count()).where(
                    CreditEntry.item_id == int(key), CreditEntry.reason == "violation"
                )
            )
        return charged == size

    return Due(lambda r: r.finish_charges(policy), done, tuple(keys))


CASES = [
    Case("art8_deadlines", protected_sql, "_settle", art8),
    Case("credit_restore", accounts_sql, "_restore", credit),
    Case("dormancy_warnings", dormancy_sql, "_warn", warnings),
    Case("dormancy_warnings", dormancy_sql, "_warn", lapsed),
    Case("dormancy_warnings", dormancy_sql, "_revise", revisions),
    Case("dormancy_findings", dormancy_sql, "_fall_dormant", findings),
    Case("account_use", dormancy_sql, "_used", use),
    Case("batch_charges", review_sql, "charge_members", charges, of="item"),
]
CASE_IDS = [c.prepare.__name__ for c in CASES]

BOUNDED = [c for c in CASES if c.sweep.startswith("dormancy_")]
"""The sweeps that take at most :data:`~service.storage.dormancy_sql.SWEEP_ACCOUNTS` a run."""


class Poison:
    """``module.step`` fails on the accounts (or items, ``of``) it comes to ``at`` (1 the
    first), each time it writes them: the nth account raises ``at[n]``."""

    def __init__(
        self,
        monkeypatch: pytest.MonkeyPatch,
        module: ModuleType,
        step: str,
        at: dict[int, Exception],
        of: str = "account",
    ) -> None:
        self.at = at
        self.seen: list[str] = []
        """The accounts the sweep came to, in order."""
        self.poisoned: dict[str, Exception] = {}
        original = getattr(module, step)
        # an account's step takes its id among other arguments; an item's, the item's id alone
        key_type = str if of == "account" else int

        def poisoned(tx: Tx, *args: Any) -> Any:
            account = next(str(a) for a in args if isinstance(a, key_type))
            if account not in self.seen:
                self.seen.append(account)
                if len(self.seen) in self.at:
                    self.poisoned[account] = self.at[len(self.seen)]
            if account in self.poisoned:
                raise self.poisoned[account]
            return original(tx, *args)

        monkeypatch.setattr(module, step, poisoned)


@pytest.fixture
def sweep_errors(caplog: pytest.LogCaptureFixture) -> Callable[[], list[logging.LogRecord]]:
    """The error lines the sweeps logged."""
    caplog.set_level(logging.ERROR, "service.storage")
    return lambda: [r for r in caplog.records if r.levelno >= logging.ERROR]


FAILURES = {
    "bug": ValueError("a value the code cannot handle"),
    "refused": StorageError("IntegrityError: a row the rules cannot take"),
}


@pytest.mark.parametrize("failure", FAILURES.values(), ids=FAILURES.keys())
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_a_sweep_goes_past_an_account_that_fails_and_tries_it_again_the_next_run(
    repo: SqlRepository,
    policy: Policy,
    monkeypatch: pytest.MonkeyPatch,
    sweep_errors: Callable[[], list[logging.LogRecord]],
    case: Case,
    failure: Exception,
) -> None:
    run, done, keys = case.prepare(repo, policy)
    with monkeypatch.context() as patched:
        poison = Poison(patched, case.module, case.step, {2: failure}, case.of)
        with pytest.raises(SweepIncompleteError) as raised:
            run(repo)
    (bad,) = poison.poisoned
    assert sorted(poison.seen) == sorted(keys) and poison.seen.index(bad) == 1
    incomplete = raised.value
    assert (incomplete.sweep, incomplete.done) == (case.sweep, len(keys) - 1)
    assert incomplete.failed == {bad: f"{type(failure).__name__}: {failure}"}
    assert [k for k in keys if not done(k)] == [bad]
    (logged,) = sweep_errors()
    assert (logged.sweep, getattr(logged, case.of)) == (case.sweep, bad)  # type: ignore[attr-defined]
    assert f"{case.sweep}: {case.of} {bad} not written" in logged.getMessage()
    assert str(failure) in logged.getMessage()
    # where the code failed, where it did; storage's refusal says it in its words
    assert (logged.exc_info is not None) == (not isinstance(failure, StorageError))
    assert run(repo) == 1
    assert all(done(k) for k in keys)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_an_outage_stops_a_sweep_at_once(
    repo: SqlRepository,
    policy: Policy,
    monkeypatch: pytest.MonkeyPatch,
    sweep_errors: Callable[[], list[logging.LogRecord]],
    case: Case,
) -> None:
    """Past an account that failed, an outage on the next ends the sweep rather than fail
    every account after it in turn."""
    run, done, keys = case.prepare(repo, policy)
    down = StorageUnavailableError("OperationalError: database is locked")
    with monkeypatch.context() as patched:
        poison = Poison(
            patched,
            case.module,
            case.step,
            {2: ValueError("a value the code cannot handle"), 3: down},
            case.of,
        )
        with pytest.raises(StorageUnavailableError) as raised:
            run(repo)
    assert raised.value is down
    first, bad, _ = poison.seen
    assert [k for k in keys if done(k)] == [first]
    assert [getattr(r, case.of) for r in sweep_errors()] == [bad]


@pytest.mark.parametrize("case", BOUNDED, ids=[c.prepare.__name__ for c in BOUNDED])
def test_a_bounded_sweep_reaches_every_account_past_one_that_fails_every_run(
    repo: SqlRepository, policy: Policy, monkeypatch: pytest.MonkeyPatch, case: Case
) -> None:
    """A run takes the accounts after those the last run took, and round to the first again
    once past the last: the account first in its order, failing every time (as one that stayed
    due would), keeps none after it from being reached."""
    run, done, _ = case.prepare(repo, policy)
    monkeypatch.setattr(dormancy_sql, "SWEEP_ACCOUNTS", 1)
    poison = Poison(monkeypatch, case.module, case.step, {1: ValueError("bad clock")})

    def outcome() -> int | dict[str, str]:
        try:
            return run(repo)
        except SweepIncompleteError as incomplete:
            return incomplete.failed

    outcomes = [outcome() for _ in range(len(ACCOUNTS) + 1)]
    (bad,) = poison.poisoned
    failed = {bad: "ValueError: bad clock"}
    assert outcomes == [failed, *[1] * (len(ACCOUNTS) - 1), failed]
    assert poison.seen == list(ACCOUNTS)
    assert [a for a in ACCOUNTS if not done(a)] == [bad]


@pytest.mark.parametrize("case", BOUNDED, ids=[c.prepare.__name__ for c in BOUNDED])
def test_a_bounded_sweep_goes_on_where_the_last_run_stopped_in_another_process(
    repo: SqlRepository,
    database_url: str,
    policy: Policy,
    monkeypatch: pytest.MonkeyPatch,
    case: Case,
) -> None:
    """Where a run stopped is stored: a restarted server, another replica or a command that
    sweeps goes on after it, so that an account failing every time at the head of the order
    holds back none after it across restarts."""
    run, done, _ = case.prepare(repo, policy)
    monkeypatch.setattr(dormancy_sql, "SWEEP_ACCOUNTS", 1)
    poison = Poison(monkeypatch, case.module, case.step, {1: ValueError("bad clock")})

    def restarted() -> int | dict[str, str]:
        fresh = open_repository(database_url, 5.0, policy.review)
        try:
            return run(fresh)
        except SweepIncompleteError as incomplete:
            return incomplete.failed
        finally:
            fresh.close()

    outcomes = [restarted() for _ in range(len(ACCOUNTS) + 1)]
    (bad,) = poison.poisoned
    failed = {bad: "ValueError: bad clock"}
    assert outcomes == [failed, *[1] * (len(ACCOUNTS) - 1), failed]
    assert [a for a in ACCOUNTS if not done(a)] == [bad]


@pytest.mark.parametrize("case", BOUNDED, ids=[c.prepare.__name__ for c in BOUNDED])
def test_two_processes_sweeping_at_once_take_different_accounts(
    repo: SqlRepository,
    database_url: str,
    policy: Policy,
    monkeypatch: pytest.MonkeyPatch,
    case: Case,
) -> None:
    """A second process that sweeps while the first writes the accounts it took goes on after
    them, rather than take them again and leave the accounts after them for a later run."""
    run, done, _ = case.prepare(repo, policy)
    monkeypatch.setattr(dormancy_sql, "SWEEP_ACCOUNTS", len(ACCOUNTS) // 2)
    other = open_repository(database_url, 5.0, policy.review)
    taken: dict[str, list[str]] = {"first": [], "second": []}
    first_each, second_each = repo._each, other._each

    def second(*args: Any) -> int:
        taken["second"] += args[3]
        return second_each(*args)

    def first(*args: Any) -> int:
        if args[3] and not taken["first"]:
            taken["first"] += args[3]
            # the other process's whole run, between this one's look and its writes
            run(other)
        return first_each(*args)

    monkeypatch.setattr(repo, "_each", first)
    monkeypatch.setattr(other, "_each", second)
    try:
        run(repo)
    finally:
        other.close()
    assert sorted(taken["first"] + taken["second"]) == list(ACCOUNTS)
    assert all(done(a) for a in ACCOUNTS)


def test_credit_restore_names_the_accounts_it_could_not_restore_and_exits_1(
    repo: SqlRepository,
    policy: Policy,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from service.cli import main

    charged_at = datetime.now(UTC) - timedelta(days=policy.credit.restore_every_days, hours=1)
    charged = {
        a: confirmed(repo, policy, f"p-{a}", a, charged_at).credits[0].credit for a in ACCOUNTS
    }
    monkeypatch.setenv("QINGLANG_DATABASE_URL", database_url)
    get_settings.cache_clear()
    poison = Poison(monkeypatch, accounts_sql, "_restore", {2: ValueError("no such period")})
    try:
        assert main(["credit", "restore"]) == 1
    finally:
        get_settings.cache_clear()
    (bad,) = poison.poisoned
    lines = capsys.readouterr().err.splitlines()
    assert lines[-2:] == [
        f"qinglang credit restore: {len(ACCOUNTS) - 1} accounts restored; 1 could not be "
        "(tried again by the next run):",
        f"qinglang credit restore: {bad}: ValueError: no such period",
    ]
    restored = {a for a in ACCOUNTS if repo.get_account(policy, a).credit > charged[a]}
    assert restored == set(ACCOUNTS) - {bad}


def failures_counted(text: str, sweep: str) -> float:
    (line,) = [
        line
        for line in text.splitlines()
        if line.startswith(f'qinglang_sweep_failures_total{{sweep="{sweep}"}}')
    ]
    return float(line.split()[-1])


async def no_upkeep(self: ScoringService, every_s: float) -> None:
    """No maintenance loop: the test runs the sweeps when it means to."""


@pytest.fixture
def server(tmp_path: Path, pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> Iterator[Api]:
    """The app, on SQLite, with ``ACCOUNTS`` last used an hour over a dormancy ago."""
    monkeypatch.setattr(ScoringService, "maintain", no_upkeep)
    with open_api(tmp_path, f"sqlite:///{tmp_path / 'sweeps.db'}", pipeline.classifier) as api:
        policy, repo = stored(api)
        last_used = datetime.now(UTC) - dormant_after(policy) - HOUR
        for account in ACCOUNTS:
            repo.put_account(policy, account, now=last_used)
        yield api


def stored(api: Api) -> tuple[Policy, SqlRepository]:
    scoring = api.services.scoring
    assert isinstance(scoring.repository, SqlRepository)
    return scoring.policy, scoring.repository


def test_the_server_counts_the_accounts_a_sweep_went_past_and_does_the_others(
    server: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    scoring, portal = server.services.scoring, server.client.portal
    assert portal is not None
    policy, repo = stored(server)
    with monkeypatch.context() as patched:
        poison = Poison(patched, dormancy_sql, "_warn", {2: ValueError("bad clock")})
        # the accounts are warned: none found dormant before its warning ran
        assert portal.call(scoring.settle_dormancy) == 0
    (bad,) = poison.poisoned
    warned = {a for a in ACCOUNTS if repo.get_account(policy, a).warned_at is not None}
    assert warned == set(ACCOUNTS) - {bad}
    assert failures_counted(server.client.get("/metrics").text, "dormancy_warnings") == 1
    portal.call(scoring.settle_dormancy)
    assert repo.get_account(policy, bad).warned_at is not None
    assert failures_counted(server.client.get("/metrics").text, "dormancy_warnings") == 1


def test_the_server_writes_the_use_of_an_account_it_could_not_wake_with_the_next(
    server: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    scoring, portal = server.services.scoring, server.client.portal
    assert portal is not None
    policy, repo = stored(server)
    last_used = repo.get_account(policy, ACCOUNTS[0]).active_at
    assert last_used is not None
    found_at = last_used + dormant_after(policy)
    assert repo.warn_dormancy(policy, now=last_used + warned_after(policy)) == len(ACCOUNTS)
    assert repo.settle_dormancy(policy, now=found_at) == len(ACCOUNTS)
    scoring.usage.seen(ACCOUNTS, datetime.now(UTC))
    with monkeypatch.context() as patched:
        poison = Poison(patched, dormancy_sql, "_used", {2: ValueError("bad clock")})
        assert portal.call(scoring.record_use) == len(ACCOUNTS) - 1
    (bad,) = poison.poisoned
    assert repo.get_account(policy, bad).dormant_at == found_at
    assert failures_counted(server.client.get("/metrics").text, "account_use") == 1
    # its use given back, with nothing seen of it since
    assert portal.call(scoring.record_use) == 1
    assert all(repo.get_account(policy, a).dormant_at is None for a in ACCOUNTS)
