"""Dormant accounts (art10, its second paragraph): the policy's rules, the clock the publish
path and reported logins move (the first post of an account known by its posts alone making its
row), the warning given ahead of a dormancy, the sweep that finds a dormancy once across
processes and what it applies under each action, the return that lifts both, the day's posts of
an account found dormant, the migrations, and the API and a server process end to end."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic import command
from servicekit import Api, migrate, open_api, verified, wait_for, write_policy
from sqlalchemy import Engine, event, insert, inspect, select, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from service.pipeline import Pipeline
from service.policy import Policy
from service.policy.governance import DispositionStep, DormancyRules
from service.review import dormancy, views
from service.review.items import ConflictError
from service.storage import SqlRepository, dormancy_sql, open_repository, upgrade
from service.storage.database import alembic_config, make_engine
from service.storage.review_rows import maybe_utc
from service.storage.tables import StoredAccount, StoredDisposition
from service.storage.transaction import append_records
from service.usage import RecentUse

T0 = datetime(2026, 1, 1, 8, 0, tzinfo=UTC)
DAY = timedelta(days=1)
HOUR = timedelta(hours=1)
MINUTE = timedelta(minutes=1)
SECOND = timedelta(seconds=1)
PLAIN = "今天天气很好,我们去公园散步了"


def verify(repo: SqlRepository) -> list[str]:
    return verified(repo)


def with_dormancy(policy: Policy, **rules: object) -> Policy:
    """``policy`` with its ``[dormancy]`` changed as ``rules`` say."""
    changed = policy.dormancy.model_copy(update=rules)
    return Policy.model_validate({**policy.model_dump(), "dormancy": changed.model_dump()})


def unwarned(policy: Policy) -> Policy:
    """``policy`` without the warning before a dormancy, which takes effect ``after_days``
    after the clock."""
    return with_dormancy(policy, warn_days=0)


def dormant_after(policy: Policy) -> timedelta:
    return timedelta(days=policy.dormancy.after_days)


def warned_after(policy: Policy) -> timedelta:
    return timedelta(days=policy.dormancy.after_days - policy.dormancy.warn_days)


def kinds(account: views.Account) -> set[str]:
    return {d.kind for d in account.dispositions}


def policy_file(tmp_path: Path, **rules: float) -> Path:
    """The test policy (every post reviewed) with its ``[dormancy]`` changed as ``rules`` say."""
    path = write_policy(tmp_path / "policy.toml")
    written = path.read_text()
    for key, value in rules.items():
        written, found = re.subn(rf"(?m)^{key} = .*$", f"{key} = {value!r}", written)
        assert found == 1, key
    path.write_text(written)
    return path


@pytest.fixture
def unwarned_api(tmp_path: Path, pipeline: Pipeline) -> Iterator[Api]:
    """The app of the ``api`` fixture under a policy that gives no warning before a dormancy."""
    url = f"sqlite:///{tmp_path / 'api.db'}"
    rules = policy_file(tmp_path, warn_days=0)
    with open_api(tmp_path, url, pipeline.classifier, policy=rules) as running:
        yield running


def feed_changes(api: Api) -> list[tuple[str, str, str, str | None]]:
    """The dispositions feed as (account, kind, change, cause)."""
    feed = api.client.get("/v1/dispositions?limit=1000", headers=api.headers()).json()
    return [
        (c["disposition"]["account_id"], c["disposition"]["kind"], c["change"], c["cause"])
        for c in feed["changes"]
    ]


# --- the rules ------------------------------------------------------------------------------


def test_the_shipped_policy_suspends_after_over_six_months_until_the_next_use(
    policy: Policy,
) -> None:
    rules = policy.dormancy
    # over six months whichever six months they are (the longest six are 184 days), a month's
    # warning before
    assert (rules.after_days, rules.action, rules.notify, rules.warn_days, rules.basis) == (
        183,
        "suspend",
        True,
        30,
        "art10",
    )
    (step,) = dormancy.measures(policy.dispositions)
    # until lifted by the account's return; posting is that return, so it stops nothing
    assert (step.kind, step.basis, step.days, step.stops_publishing) == (
        "suspend_dormant",
        "art10",
        None,
        False,
    )
    assert dormancy.kinds(policy.dispositions) == [
        "suspend_dormant",
        dormancy.NOTICE,
        dormancy.WARNING,
    ]
    assert dormancy.dormant_before(rules, T0) == T0 - timedelta(days=183)
    assert dormancy.warned_before(rules, T0) == T0 - timedelta(days=153)
    assert dormancy.warned_before(unwarned(policy).dormancy, T0) is None
    # a dormancy takes effect after_days after the clock, and a month after its warning at the
    # earliest; not before a warning the policy gives
    assert dormancy.takes_effect(rules, T0, None) is None
    assert dormancy.takes_effect(rules, T0, T0 + 153 * DAY) == T0 + 183 * DAY
    assert dormancy.takes_effect(rules, T0, T0 + 200 * DAY) == T0 + 230 * DAY
    assert dormancy.takes_effect(unwarned(policy).dormancy, T0, None) == T0 + 183 * DAY
    # a violation never calls for it, whatever the account's standing
    assert "suspend_dormant" not in {s.kind for s in policy.dispositions if s.levels}
    assert dormancy.returned(None, T0) and dormancy.returned(T0, T0 + SECOND)
    assert not dormancy.returned(T0, T0)


def test_a_policy_whose_dormancy_has_no_measure_or_shares_one_is_refused(policy: Policy) -> None:
    ladder = [s for s in policy.dispositions if s.kind != "suspend_dormant"]
    for action in ("suspend", "review"):
        with pytest.raises(ValueError, match=f"dormancy.action '{action}' needs a disposition"):
            Policy.model_validate(
                {
                    **policy.model_dump(),
                    "dispositions": [s.model_dump() for s in ladder],
                    "dormancy": {**policy.dormancy.model_dump(), "action": action},
                }
            )
    quiet = {**policy.dormancy.model_dump(), "action": "none"}
    Policy.model_validate(
        {**policy.model_dump(), "dispositions": [s.model_dump() for s in ladder], "dormancy": quiet}
    )
    # a measure a violation could call for too would be lifted by a login
    shared = DispositionStep(kind="suspend_dormant", basis="art10", categories=["dormant"])
    for step in (
        shared.model_copy(update={"levels": ["X"]}),
        shared.model_copy(update={"categories": ["dormant", "rumor"]}),
    ):
        with pytest.raises(ValueError, match="a dormancy's measure names 'dormant' alone"):
            Policy.model_validate(
                {
                    **policy.model_dump(),
                    "dispositions": [*(s.model_dump() for s in ladder), step.model_dump()],
                }
            )
    with pytest.raises(ValueError):
        DormancyRules(after_days=0, action="suspend", notify=True, warn_days=0, basis="art10")
    # a warning due at the last use or before it
    with pytest.raises(ValueError, match="warn_days 1 is not less than after_days 1"):
        DormancyRules(after_days=1, action="suspend", notify=True, warn_days=1, basis="art10")
    with pytest.raises(ValueError):
        DormancyRules(after_days=1, action="suspend", notify=True, warn_days=-1, basis="art10")


def test_the_publish_path_remembers_an_account_once_a_day_within_its_bound() -> None:
    used = RecentUse(size=2)
    used.seen(["a", "b", "a"], T0)
    used.seen(["a"], T0 + timedelta(hours=3))
    assert used.take() == {"a": T0, "b": T0}
    # taken already today: nothing more to write until tomorrow
    used.seen(["a", "b"], T0 + timedelta(hours=4))
    assert used.take() == {}
    used.seen(["a"], T0 + DAY)
    # what could not be written waits for the next write, its latest use kept
    used.give_back({"a": T0 + DAY - SECOND})
    assert used.take() == {"a": T0 + DAY}
    # full while storage is away: a third account waits for a post of a later call
    used.seen(["a", "b", "c"], T0 + 2 * DAY)
    assert used.take() == {"a": T0 + 2 * DAY, "b": T0 + 2 * DAY}
    used.seen(["c"], T0 + 2 * DAY)
    assert used.take() == {"c": T0 + 2 * DAY}


# --- storage --------------------------------------------------------------------------------


def test_an_account_unused_past_the_policys_days_is_suspended_once_and_its_return_lifts_it(
    database_url: str, repo: SqlRepository, policy: Policy
) -> None:
    policy = unwarned(policy)
    for name in ("quiet", "posting", "late"):
        repo.put_account(policy, name, name=f"{name}号", now=T0)
    limit = dormant_after(policy)
    # a post scored on day 100 moves its account's clock
    assert repo.record_use(policy, {"posting": T0 + 100 * DAY}) == 0
    assert repo.get_account(policy, "posting").active_at == T0 + 100 * DAY
    # a login reported from before the clock moves nothing
    repo.put_account(policy, "late", login_at=T0 - DAY, by="k-pub", now=T0 + DAY)
    assert repo.get_account(policy, "late").active_at == T0
    assert repo.settle_dormancy(policy, now=T0 + limit - SECOND) == 0

    found_at = T0 + limit
    assert repo.settle_dormancy(policy, now=found_at) == 2
    quiet = repo.get_account(policy, "quiet", now=found_at)
    assert (quiet.active_at, quiet.dormant_at) == (T0, found_at)
    shown = {d.kind: d for d in quiet.dispositions}
    assert set(shown) == {"suspend_dormant", dormancy.NOTICE}
    for applied in shown.values():
        assert (applied.basis, applied.item_id, applied.decided_by, applied.ends_at) == (
            "art10",
            None,
            dormancy.SERVICE,
            None,
        )
    assert repo.get_account(policy, "posting", now=found_at).dormant_at is None
    # it does not stop publishing: a post is the use that ends it
    assert repo.account_standings([], policy.publishing_stops, now=found_at) == {}
    # once: a later sweep, and one of a process started since, find nothing new
    assert repo.settle_dormancy(policy, now=found_at + DAY) == 0
    restarted = open_repository(database_url, 5.0, policy.review)
    try:
        assert restarted.settle_dormancy(policy, now=found_at + 2 * DAY) == 0
    finally:
        restarted.close()
    records = [e for e in repo.audit_entries() if e.kind == "account.dormant"]
    assert {e.subject: e.payload for e in records}["account:quiet"] == {
        "active_at": T0.isoformat(),
        "active_by": "registration",
        "last_login_at": None,
        "after_days": policy.dormancy.after_days,
        "warned_at": None,
        "takes_effect": found_at.isoformat(),
        "action": "suspend",
        "item": None,
    }
    assert len(records) == 2

    # a login ends it: both lifted, by the key that reported it, and the clock starts again
    back = found_at + 3 * DAY
    account = repo.put_account(policy, "quiet", login_at=back, by="k-pub", now=back + SECOND)
    assert kinds(account) == set()
    assert (account.last_login_at, account.active_at, account.dormant_at) == (back, back, None)
    # a post ends it too, by the service, at the next write of the publish path's use
    assert repo.record_use(policy, {"late": back}) == 1
    assert kinds(repo.get_account(policy, "late", now=back)) == set()
    lifts = [
        (c.disposition.account_id, c.disposition.kind, c.cause, c.disposition.lifted_by)
        for c in repo.disposition_changes().changes
        if c.change == "lifted"
    ]
    assert sorted(lifts) == [
        ("late", dormancy.NOTICE, "returned", dormancy.SERVICE),
        ("late", "suspend_dormant", "returned", dormancy.SERVICE),
        ("quiet", dormancy.NOTICE, "returned", "k-pub"),
        ("quiet", "suspend_dormant", "returned", "k-pub"),
    ]
    returned = {e.subject: e.payload for e in repo.audit_entries() if e.kind == "account.returned"}
    assert returned["account:quiet"] == {
        "dormant_at": found_at.isoformat(),
        "at": back.isoformat(),
        "via": "login",
    }
    assert returned["account:late"]["via"] == "post"
    # once per dormancy: unused for as long again, it is found again
    assert repo.settle_dormancy(policy, now=back + limit - SECOND) == 1  # "posting"
    assert repo.settle_dormancy(policy, now=back + limit) == 2
    assert kinds(repo.get_account(policy, "quiet", now=back + limit)) == {
        "suspend_dormant",
        dormancy.NOTICE,
    }
    assert verify(repo) == []


def test_two_processes_find_a_dormancy_once(database_url: str, policy: Policy) -> None:
    """Every server process sweeps: one that read a dormant account, and finds it marked by
    another by the time it holds the account, leaves it."""
    policy = unwarned(policy)
    upgrade(database_url)
    first, other = (open_repository(database_url, 5.0, policy.review) for _ in range(2))
    try:
        first.put_account(policy, "quiet", now=T0)
        found_at = T0 + dormant_after(policy)
        raced: list[int] = []

        @event.listens_for(first.engine, "after_cursor_execute")
        def read(_conn: object, _cursor: object, statement: str, *_: object) -> None:
            # the other process finds it between this one's read and its write
            if statement.startswith("SELECT accounts.account_id") and not raced:
                raced.append(other.settle_dormancy(policy, now=found_at))

        assert first.settle_dormancy(policy, now=found_at) == 0
        assert raced == [1]
        shown = first.get_account(policy, "quiet", now=found_at).dispositions
        assert sorted(d.kind for d in shown) == sorted(["suspend_dormant", dormancy.NOTICE])
        assert [e.kind for e in first.audit_entries()].count("account.dormant") == 1
        assert verify(first) == []
    finally:
        first.close()
        other.close()


def test_under_review_a_reviewer_applies_the_measure_and_the_return_dismisses_the_item(
    repo: SqlRepository, policy: Policy
) -> None:
    reviewing = with_dormancy(policy, action="review", notify=False, warn_days=0)
    for name in ("kept", "confirmed", "back"):
        repo.put_account(reviewing, name, followers=50, now=T0)
    found_at = T0 + dormant_after(reviewing)
    assert repo.settle_dormancy(reviewing, now=found_at) == 3
    items = {i.account_id: i for i in repo.list_items(reviewing, kind="dormant").items}
    assert set(items) == {"kept", "confirmed", "back"}
    item = items["confirmed"]
    assert (item.head, item.severity, item.reach, item.status) == ("dormant", "review", 50, "open")
    assert item.evidence == {
        "basis": "art10",
        "active_at": T0.isoformat(),
        "active_by": "registration",
        "last_login_at": None,
        "after_days": reviewing.dormancy.after_days,
        "warned_at": None,
        "takes_effect": found_at.isoformat(),
    }
    # nothing applied yet: the trust team decides
    assert kinds(repo.get_account(reviewing, "confirmed", now=found_at)) == set()

    # a dormancy is confirmed as such, and is no violation
    with pytest.raises(ConflictError, match="confirmed as category 'dormant'"):
        repo.decide(reviewing, item.id, "r1", "confirm", "rumor", "art18.6", now=found_at)
    decided = repo.decide(reviewing, item.id, "r1", "confirm", "dormant", "art10", now=found_at)
    assert decided.credits == [] and decided.uncharged == []
    assert [(d.kind, d.basis, d.item_id, d.decided_by) for d in decided.dispositions] == [
        ("suspend_dormant", "art10", item.id, "r1")
    ]
    account = repo.get_account(reviewing, "confirmed", now=found_at)
    assert (account.credit, kinds(account)) == (reviewing.credit.initial, {"suspend_dormant"})
    with pytest.raises(ConflictError, match="is not a confirmed violation"):
        repo.file_appeal(
            reviewing, account_id="confirmed", item_id=item.id, reason="还在用", filed_by="k"
        )
    repo.decide(reviewing, items["kept"].id, "r1", "dismiss", None, None, now=found_at)
    # the return dismisses the item left open, by the key that reported the login
    back = found_at + DAY
    repo.put_account(reviewing, "back", login_at=back, by="k-pub", now=back)
    (dismissed,) = [
        i
        for i in repo.list_items(reviewing, kind="dormant", status="dismissed").items
        if i.account_id == "back"
    ]
    (record,) = [
        e.payload
        for e in repo.audit_entries()
        if e.kind == "review.decision" and e.subject == f"item:{dismissed.id}"
    ]
    assert (record["action"], record["reviewer"]) == ("dismiss", "k-pub")
    # and lifts what the confirmation applied
    repo.put_account(reviewing, "confirmed", login_at=back, by="k-pub", now=back)
    assert kinds(repo.get_account(reviewing, "confirmed", now=back)) == set()

    # the category confirms no other item
    repo.put_account(reviewing, "other", name="其他", now=T0)
    reported = repo.file_report(
        reviewing, post_id=None, account_id="other", category="rumor", text_="举报", reporter="k"
    )
    with pytest.raises(ConflictError, match="is of kind 'report'"):
        repo.decide(reviewing, reported.item_id, "r1", "confirm", "dormant", "art10")
    assert verify(repo) == []


def test_a_sweep_finds_a_bounded_number_longest_unused_first(
    repo: SqlRepository, policy: Policy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dormancy_sql, "SWEEP_ACCOUNTS", 1)
    policy = unwarned(policy)
    repo.put_account(policy, "newer", now=T0 + DAY)
    repo.put_account(policy, "older", now=T0)
    found_at = T0 + DAY + dormant_after(policy)
    assert repo.settle_dormancy(policy, now=found_at) == 1
    assert repo.get_account(policy, "older", now=found_at).dormant_at == found_at
    assert repo.get_account(policy, "newer", now=found_at).dormant_at is None
    # the rest at the next sweep
    assert repo.settle_dormancy(policy, now=found_at + SECOND) == 1
    assert repo.settle_dormancy(policy, now=found_at + 2 * SECOND) == 0


def test_none_keeps_the_clock_alone_and_a_notice_goes_without_a_measure(
    repo: SqlRepository, policy: Policy
) -> None:
    repo.put_account(policy, "quiet", now=T0)
    found_at = T0 + dormant_after(policy)
    silent = with_dormancy(policy, action="none", notify=False)
    # nothing follows: nothing to warn of either
    assert repo.warn_dormancy(silent, now=found_at) == 0
    assert repo.settle_dormancy(silent, now=found_at) == 0
    assert repo.get_account(silent, "quiet", now=found_at).dormant_at is None
    noticed = with_dormancy(policy, action="none", notify=True, warn_days=0)
    assert repo.settle_dormancy(noticed, now=found_at) == 1
    assert kinds(repo.get_account(noticed, "quiet", now=found_at)) == {dormancy.NOTICE}
    assert repo.list_items(noticed, kind="dormant").items == []


def test_0029_tells_a_clock_set_by_a_login_and_goes_down_and_up_again(database_url: str) -> None:
    """Rows from before ``active_by``: a clock that is the last login was set by it; another
    one's use is not known. The downgrade drops the column and the prune's index, and a second
    try from 0029 (SQLite keeps the drops of a downgrade refused further down) drops nothing."""
    engine = make_engine(database_url, 5.0)
    at = "2026-06-01 08:00:00"
    try:
        with engine.begin() as connection:
            migrate(connection, "0028_subject_keys")
            for account, login in (("logged", at), ("posted", None)):
                connection.execute(
                    text(
                        "INSERT INTO accounts (account_id, credit, level, followers, clean_since, "
                        "policy_version, active_at, login_at) VALUES (:a, 100, 'A', 0, "
                        "'2026-01-01', 'p', :at, :login)"
                    ),
                    {"a": account, "at": at, "login": login},
                )
        upgrade(database_url)
        with engine.begin() as connection:
            rows = connection.execute(text("SELECT account_id, active_by FROM accounts")).all()
            by: dict[str, str | None] = {a: b for a, b in rows}
            assert by == {"logged": "login", "posted": None}
            indexes = {i["name"] for i in inspect(connection).get_indexes("idempotency_keys")}
            assert "ix_idempotency_keys_created_at" in indexes
            for _ in range(2):
                migrate(connection, "0028_subject_keys", down=True)
                found = inspect(connection)
                assert "active_by" not in {c["name"] for c in found.get_columns("accounts")}
                indexes = {i["name"] for i in found.get_indexes("idempotency_keys")}
                assert "ix_idempotency_keys_created_at" not in indexes
                config = alembic_config()
                config.attributes["connection"] = connection
                command.stamp(config, "0029_kept_keys_and_use")
    finally:
        engine.dispose()


def test_0031_gives_no_row_a_warning_and_goes_down_and_up_again(
    database_url: str, policy: Policy
) -> None:
    """Rows from before were warned of nothing: the warning sweep finds them by their clock.
    The downgrade drops the column and its sweep's index, and a second try from 0031 (SQLite
    keeps the drops of a downgrade refused further down) drops nothing."""
    engine = make_engine(database_url, 5.0)
    try:
        with engine.begin() as connection:
            migrate(connection, "0030_placeholder_subjects")
            connection.execute(
                text(
                    "INSERT INTO accounts (account_id, credit, level, followers, clean_since, "
                    "policy_version, active_at, active_by) VALUES ('before', 100, 'A', 0, "
                    "'2026-01-01', 'p', '2026-01-01 08:00:00', 'registration')"
                )
            )
        upgrade(database_url)
        with engine.begin() as connection:
            found = inspect(connection)
            assert "ix_accounts_unwarned_active" in {
                i["name"] for i in found.get_indexes("accounts")
            }
            for _ in range(2):
                migrate(connection, "0030_placeholder_subjects", down=True)
                found = inspect(connection)
                assert "warned_at" not in {c["name"] for c in found.get_columns("accounts")}
                indexes = {i["name"] for i in found.get_indexes("accounts")}
                assert "ix_accounts_unwarned_active" not in indexes
                config = alembic_config()
                config.attributes["connection"] = connection
                command.stamp(config, "0031_dormancy_warnings")
            migrate(connection, "0030_placeholder_subjects", down=True)
    finally:
        engine.dispose()
    upgrade(database_url)
    repo = open_repository(database_url, 5.0, policy.review)
    try:
        assert repo.get_account(policy, "before").warned_at is None
        assert repo.warn_dormancy(policy, now=T0 + warned_after(policy)) == 1
    finally:
        repo.close()


def test_the_migration_starts_every_clock_at_its_moment_and_goes_down_and_up_again(
    database_url: str, policy: Policy
) -> None:
    engine = make_engine(database_url, 5.0)
    try:
        with engine.begin() as connection:
            migrate(connection, "0026_policies")
            connection.execute(
                text(
                    "INSERT INTO accounts (account_id, credit, level, followers, clean_since, "
                    "policy_version) VALUES ('before', 100, 'A', 0, '2026-01-01', 'p')"
                )
            )
        started = datetime.now(UTC)
        upgrade(database_url)
        with engine.begin() as connection:
            migrate(connection, "0026_policies", down=True)
            found = inspect(connection)
            columns = {c["name"] for c in found.get_columns("accounts")}
            assert not {"active_at", "login_at", "dormant_at"} & columns
            indexes = {i["name"] for i in found.get_indexes("accounts")}
            assert "ix_accounts_awake_active" not in indexes
            # SQLite keeps the drops of a downgrade a revision further down refused: the next
            # try, from this revision again, finds nothing to drop
            config = alembic_config()
            config.attributes["connection"] = connection
            command.stamp(config, "0027_dormant_accounts")
            migrate(connection, "0026_policies", down=True)
    finally:
        engine.dispose()
    upgrade(database_url)
    repo = open_repository(database_url, 5.0, policy.review)
    try:
        # a row from before: when it was last used is not known, so its clock starts with the
        # migration, and it is not found dormant on a guess
        before = repo.get_account(policy, "before")
        assert before.active_at is not None and before.active_at >= started
        quiet = unwarned(policy)
        assert repo.settle_dormancy(quiet, now=started + dormant_after(quiet) - DAY) == 0
    finally:
        repo.close()


def test_an_account_known_by_its_posts_alone_gets_its_clock_from_its_first_post_written(
    database_url: str, repo: SqlRepository, policy: Policy
) -> None:
    """The publish path scored its posts, the platform never gave its profile and it was never
    charged: its first post written makes its row, once whatever the processes, at the initial
    credit and with no profile, and it is found dormant as any account is."""
    policy = unwarned(policy)
    repo.put_account(policy, "known", name="有名号", followers=10, now=T0 - DAY)
    assert repo.record_use(policy, {"stranger": T0, "known": T0}, now=T0 + MINUTE) == 0
    stranger = repo.get_account(policy, "stranger", now=T0)
    assert (stranger.active_at, stranger.active_by, stranger.dormant_at) == (T0, "post", None)
    assert (stranger.name, stranger.followers, stranger.credit, stranger.history) == (
        None,
        0,
        policy.credit.initial,
        [],
    )
    assert repo.get_account(policy, "known", now=T0).active_by == "post"

    def seen() -> list[tuple[str, dict[str, object]]]:
        return [(e.subject, e.payload) for e in repo.audit_entries() if e.kind == "account.seen"]

    assert seen() == [("account:stranger", {"active_at": T0.isoformat(), "active_by": "post"})]
    # another process's write of a later post moves the clock of the row made, and makes none
    other = open_repository(database_url, 5.0, policy.review)
    try:
        assert other.record_use(policy, {"stranger": T0 + DAY}, now=T0 + DAY) == 0
    finally:
        other.close()
    assert repo.get_account(policy, "stranger").active_at == T0 + DAY
    assert len(seen()) == 1
    # no profile was made up: the first one given is the first, with no follower jump from 0
    repo.put_account(policy, "stranger", followers=100_000, now=T0 + DAY)
    assert repo.list_items(policy, kind="follower_jump").items == []

    found_at = T0 + DAY + dormant_after(policy)
    assert repo.settle_dormancy(policy, now=found_at - SECOND) == 1  # "known"
    assert repo.settle_dormancy(policy, now=found_at) == 1
    found = repo.get_account(policy, "stranger", now=found_at)
    assert found.dormant_at == found_at
    assert kinds(found) == {"suspend_dormant", dormancy.NOTICE}
    assert verify(repo) == []


def test_the_platform_is_warned_ahead_once_and_a_return_ends_the_warning(
    database_url: str, repo: SqlRepository, policy: Policy
) -> None:
    for name in ("quiet", "posting", "login"):
        repo.put_account(policy, name, name=f"{name}号", now=T0)
    warn_at, limit = T0 + warned_after(policy), dormant_after(policy)
    assert repo.warn_dormancy(policy, now=warn_at - SECOND) == 0
    assert repo.warn_dormancy(policy, now=warn_at) == 3
    quiet = repo.get_account(policy, "quiet", now=warn_at)
    assert (quiet.warned_at, quiet.dormant_at) == (warn_at, None)
    (warning,) = quiet.dispositions
    # until the dormancy takes effect: the platform tells the holder when
    assert (
        warning.kind,
        warning.basis,
        warning.item_id,
        warning.decided_by,
        warning.ends_at,
    ) == (dormancy.WARNING, "art10", None, dormancy.SERVICE, T0 + limit)
    (record,) = [
        e.payload
        for e in repo.audit_entries()
        if e.kind == "account.warned" and e.subject == "account:quiet"
    ]
    assert record == {
        "active_at": T0.isoformat(),
        "active_by": "registration",
        "last_login_at": None,
        "after_days": 183,
        "warn_days": 30,
        "takes_effect": (T0 + limit).isoformat(),
    }
    # once: a later sweep, and one of a process started since, warn nobody again
    assert repo.warn_dormancy(policy, now=warn_at + DAY) == 0
    restarted = open_repository(database_url, 5.0, policy.review)
    try:
        assert restarted.warn_dormancy(policy, now=warn_at + 2 * DAY) == 0
    finally:
        restarted.close()

    # a post, or a login, before the dormancy ends the warning: lifted, no dormancy to end
    back = warn_at + 3 * DAY
    assert repo.record_use(policy, {"posting": back}, now=back + MINUTE) == 0
    repo.put_account(policy, "login", login_at=back, by="k-pub", now=back + MINUTE)
    for name in ("posting", "login"):
        account = repo.get_account(policy, name, now=back)
        assert (kinds(account), account.warned_at, account.active_at) == (set(), None, back)
    lifts = [
        (c.disposition.account_id, c.disposition.kind, c.cause, c.disposition.lifted_by)
        for c in repo.disposition_changes().changes
        if c.change == "lifted"
    ]
    assert sorted(lifts) == [
        ("login", dormancy.WARNING, "returned", "k-pub"),
        ("posting", dormancy.WARNING, "returned", dormancy.SERVICE),
    ]
    assert [e for e in repo.audit_entries() if e.kind == "account.returned"] == []

    # the warned account is found dormant when its dormancy takes effect, its warning ended
    assert repo.settle_dormancy(policy, now=T0 + limit - SECOND) == 0
    assert repo.settle_dormancy(policy, now=T0 + limit) == 1
    quiet = repo.get_account(policy, "quiet", now=T0 + limit)
    assert quiet.dormant_at == T0 + limit
    assert kinds(quiet) == {"suspend_dormant", dormancy.NOTICE}
    (found,) = [e.payload for e in repo.audit_entries() if e.kind == "account.dormant"]
    assert found["warned_at"] == warn_at.isoformat()
    # the others' clocks started again: each is warned again once as old again
    assert repo.warn_dormancy(policy, now=back + warned_after(policy) - SECOND) == 0
    assert repo.warn_dormancy(policy, now=back + warned_after(policy)) == 2
    # the dormant one's return lifts what its dormancy brought
    assert repo.record_use(policy, {"quiet": T0 + limit + DAY}) == 1
    assert kinds(repo.get_account(policy, "quiet", now=T0 + limit + DAY)) == set()
    assert verify(repo) == []


def test_a_dormancy_waits_for_its_warning_however_late_it_came(
    repo: SqlRepository, policy: Policy
) -> None:
    """A policy that starts giving warnings, or a sweep behind, leaves an account unused for
    ``after_days`` unwarned: it is found dormant ``warn_days`` after its warning, not before."""
    repo.put_account(policy, "quiet", now=T0)
    overdue = T0 + dormant_after(policy) + DAY
    assert repo.settle_dormancy(policy, now=overdue) == 0
    assert repo.warn_dormancy(policy, now=overdue) == 1
    (warning,) = repo.get_account(policy, "quiet", now=overdue).dispositions
    effect = overdue + timedelta(days=policy.dormancy.warn_days)
    assert (warning.kind, warning.ends_at) == (dormancy.WARNING, effect)
    assert repo.settle_dormancy(policy, now=effect - SECOND) == 0
    assert repo.settle_dormancy(policy, now=effect) == 1
    # a policy that gives no warning counts the clock alone, and warns of nothing
    repo.put_account(policy, "other", now=T0)
    quiet = unwarned(policy)
    assert repo.warn_dormancy(quiet, now=overdue) == 0
    assert repo.settle_dormancy(quiet, now=overdue) == 1
    assert repo.get_account(quiet, "other", now=overdue).warned_at is None


def test_a_dormant_item_says_when_the_warning_was_given_and_when_the_dormancy_took_effect(
    repo: SqlRepository, policy: Policy
) -> None:
    """The reviewer of a dormant account's item sees that the holder could have been warned,
    and when: the warning's moment and the dormancy's, in its evidence."""
    reviewing = with_dormancy(policy, action="review", notify=False)
    repo.put_account(reviewing, "quiet", now=T0)
    warn_at = T0 + warned_after(reviewing) + HOUR
    assert repo.warn_dormancy(reviewing, now=warn_at) == 1
    effect = warn_at + timedelta(days=reviewing.dormancy.warn_days)
    found_at = effect + MINUTE
    assert repo.settle_dormancy(reviewing, now=found_at) == 1
    (item,) = repo.list_items(reviewing, kind="dormant").items
    assert item.evidence is not None
    assert (item.evidence["warned_at"], item.evidence["takes_effect"]) == (
        warn_at.isoformat(),
        effect.isoformat(),
    )
    (found,) = [e.payload for e in repo.audit_entries() if e.kind == "account.dormant"]
    assert (found["warned_at"], found["takes_effect"]) == (warn_at.isoformat(), effect.isoformat())


def test_a_policy_shortened_after_the_warning_keeps_the_date_the_warning_gave(
    repo: SqlRepository, policy: Policy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The holder was told a date: a policy that lowers ``after_days`` and ``warn_days`` (here
    to no warning at all) between two sweeps makes no warned account dormant before it, and the
    account waiting for it keeps no sweep from the accounts due meanwhile. At the date, the
    warning has ended as it said: none is left active beside the dormancy."""
    monkeypatch.setattr(dormancy_sql, "SWEEP_ACCOUNTS", 1)
    repo.put_account(policy, "warned", now=T0)
    warn_at = T0 + warned_after(policy)
    assert repo.warn_dormancy(policy, now=warn_at) == 1
    (warning,) = repo.get_account(policy, "warned", now=warn_at).dispositions
    told = T0 + dormant_after(policy)
    assert warning.ends_at == told
    # unused since a day later, and due under the shorter policy before the warning's date
    repo.put_account(policy, "fresh", now=T0 + DAY)
    shorter = with_dormancy(policy, after_days=100, warn_days=0)
    between = T0 + 170 * DAY
    assert repo.settle_dormancy(shorter, now=between) == 1
    assert repo.get_account(shorter, "warned", now=between).dormant_at is None
    assert repo.get_account(shorter, "fresh", now=between).dormant_at == between
    assert repo.settle_dormancy(shorter, now=told - SECOND) == 0
    assert repo.settle_dormancy(shorter, now=told) == 1
    warned = repo.get_account(shorter, "warned", now=told)
    assert (warned.dormant_at, kinds(warned)) == (told, {"suspend_dormant", dormancy.NOTICE})
    found = {e.subject: e.payload for e in repo.audit_entries() if e.kind == "account.dormant"}
    assert found["account:warned"]["takes_effect"] == told.isoformat()
    # a shorter warning under the clock's days alike
    repo.put_account(policy, "other", now=told)
    other_warned = told + warned_after(policy)
    assert repo.warn_dormancy(policy, now=other_warned) == 1
    brief = with_dormancy(policy, after_days=160, warn_days=1)
    other_told = told + dormant_after(policy)
    assert repo.settle_dormancy(brief, now=other_told - SECOND) == 0
    assert repo.settle_dormancy(brief, now=other_told) == 1
    assert verify(repo) == []


def given(account: views.Account) -> list[views.Disposition]:
    """Every disposition the account was given, lifted and ended ones too."""
    return [d for d in account.history if isinstance(d, views.Disposition)]


def warning_changes(repo: SqlRepository, after: int = 0) -> list[tuple[str, str | None, object]]:
    """The feed's changes of dormancy warnings after ``after`` as (change, cause, ends_at)."""
    return [
        (c.change, c.cause, c.disposition.ends_at)
        for c in repo.disposition_changes(after=after, limit=1000).changes
        if c.disposition.kind == dormancy.WARNING
    ]


def test_a_policy_that_stops_dormancy_lifts_the_warning_and_one_that_resumes_warns_afresh(
    repo: SqlRepository, policy: Policy
) -> None:
    """A warning promises a dormancy on its ``ends_at``: a policy that gives none any more
    lifts it (cause ``policy_changed``) rather than let it run out on a dormancy that never
    comes, and one that gives a dormancy again warns the account ``warn_days`` ahead, as one
    never warned, rather than find it dormant at once on a warning long past."""
    repo.put_account(policy, "quiet", now=T0)
    warn_at = T0 + warned_after(policy)
    assert repo.warn_dormancy(policy, now=warn_at) == 1
    told = T0 + dormant_after(policy)
    seen = repo.audit_head()[0]
    silent = with_dormancy(policy, action="none", notify=False)
    between = warn_at + 10 * DAY
    assert repo.warn_dormancy(silent, now=between) == 1
    assert repo.warn_dormancy(silent, now=between + SECOND) == 0
    quiet = repo.get_account(silent, "quiet", now=between)
    assert (quiet.warned_at, kinds(quiet)) == (None, set())
    assert warning_changes(repo, seen) == [("lifted", "policy_changed", told)]
    (revised,) = [e.payload for e in repo.audit_entries() if e.kind == "account.warning_revised"]
    assert revised == {
        "active_at": T0.isoformat(),
        "warned_at": warn_at.isoformat(),
        "told": told.isoformat(),
        "after_days": 183,
        "warn_days": 30,
        "action": "none",
        "notify": False,
        "takes_effect": None,
    }
    # the policy suspends again long after the date the warning gave
    resumed = told + 10 * DAY
    assert repo.settle_dormancy(policy, now=resumed) == 0
    assert repo.warn_dormancy(policy, now=resumed) == 1
    effect = resumed + timedelta(days=policy.dormancy.warn_days)
    (warning,) = repo.get_account(policy, "quiet", now=resumed).dispositions
    assert (warning.kind, warning.ends_at) == (dormancy.WARNING, effect)
    assert repo.settle_dormancy(policy, now=effect - SECOND) == 0
    assert repo.settle_dormancy(policy, now=effect) == 1
    (found,) = [e.payload for e in repo.audit_entries() if e.kind == "account.dormant"]
    assert (found["warned_at"], found["takes_effect"]) == (resumed.isoformat(), effect.isoformat())
    assert verify(repo) == []


def test_a_dormancy_takes_effect_on_a_lapsed_warning_only_after_a_new_one(
    repo: SqlRepository, policy: Policy
) -> None:
    """A warning that ran out with no dormancy found (no sweep lifted it: a policy that gave
    none then, a service down) counts for none once more than a day past its date: the account
    is warned again, ``warn_days`` ahead, and found dormant then. A day late is a sweep
    behind: the dormancy takes effect on the warning given."""
    repo.put_account(policy, "late", now=T0)
    assert repo.warn_dormancy(policy, now=T0 + warned_after(policy)) == 1
    behind = T0 + dormant_after(policy) + dormancy.LAPSE
    assert repo.warn_dormancy(policy, now=behind) == 0
    assert repo.settle_dormancy(policy, now=behind) == 1
    assert repo.get_account(policy, "late", now=behind).dormant_at == behind

    repo.put_account(policy, "other", now=behind)
    other_told = behind + dormant_after(policy)
    assert repo.warn_dormancy(policy, now=behind + warned_after(policy)) == 1
    after = other_told + dormancy.LAPSE + SECOND
    assert repo.settle_dormancy(policy, now=after) == 0
    # a policy that gives no warning needs none: a lapsed one is as none
    assert repo.settle_dormancy(unwarned(policy), now=after) == 1
    assert repo.get_account(policy, "other", now=after).dormant_at == after

    repo.put_account(policy, "again", now=after)
    again_told = after + dormant_after(policy)
    assert repo.warn_dormancy(policy, now=after + warned_after(policy)) == 1
    later = again_told + dormancy.LAPSE + SECOND
    assert repo.settle_dormancy(policy, now=later) == 0
    assert repo.warn_dormancy(policy, now=later) == 1
    assert repo.warn_dormancy(policy, now=later + SECOND) == 0
    again = repo.get_account(policy, "again", now=later)
    effect = later + timedelta(days=policy.dormancy.warn_days)
    assert again.warned_at == later
    assert [(d.ends_at, d.active) for d in given(again)] == [
        (again_told, False),
        (effect, True),
    ]
    assert repo.settle_dormancy(policy, now=effect - SECOND) == 0
    assert repo.settle_dormancy(policy, now=effect) == 1
    assert verify(repo) == []


def test_a_policy_lengthened_after_the_warning_gives_it_again_with_the_later_date(
    repo: SqlRepository, policy: Policy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The feed is read with a cursor: a warning's ``ends_at`` changed in place would reach no
    platform that read it applied. A policy whose dormancy now comes later (``after_days`` or
    ``warn_days`` raised) lifts the warning (cause ``policy_changed``) and applies one with the
    later date in the same transaction; the dormancy takes effect then, on the first warning's
    ``warned_at``. An account whose warning still holds (warned late, its date past the
    lengthened one) keeps it, and keeps no sweep from the others."""
    monkeypatch.setattr(dormancy_sql, "SWEEP_ACCOUNTS", 1)
    repo.put_account(policy, "held", now=T0 - DAY)
    repo.put_account(policy, "quiet", now=T0)
    # "held" warned late, on a policy giving 60 days' warning: its date is 60 days on
    long_warning = with_dormancy(policy, warn_days=60)
    held_at = T0 - DAY + warned_after(policy) + 2 * DAY
    assert repo.warn_dormancy(long_warning, now=held_at) == 1
    warn_at = T0 + warned_after(policy)
    assert repo.warn_dormancy(policy, now=warn_at) == 1
    told = T0 + dormant_after(policy)
    seen = repo.audit_head()[0]
    longer = with_dormancy(policy, after_days=200)
    between = warn_at + DAY
    assert repo.warn_dormancy(longer, now=between) == 1
    assert repo.warn_dormancy(longer, now=between + SECOND) == 0
    effect = T0 + timedelta(days=200)
    assert warning_changes(repo, seen) == [
        ("lifted", "policy_changed", told),
        ("applied", None, effect),
    ]
    quiet = repo.get_account(longer, "quiet", now=between)
    assert quiet.warned_at == warn_at
    assert [(d.ends_at, d.active, d.decided_by) for d in given(quiet)] == [
        (told, False, dormancy.SERVICE),
        (effect, True, dormancy.SERVICE),
    ]
    (revised,) = [e.payload for e in repo.audit_entries() if e.kind == "account.warning_revised"]
    assert (revised["told"], revised["takes_effect"]) == (told.isoformat(), effect.isoformat())
    held = repo.get_account(longer, "held", now=between)
    assert [d.ends_at for d in held.dispositions] == [held_at + 60 * DAY]
    # a warning lengthened by a second or less is left as it is
    assert repo.warn_dormancy(with_dormancy(longer, after_days=200 + 0.5 / 86400), now=between) == 0
    assert repo.settle_dormancy(longer, now=effect - SECOND) == 0
    assert repo.settle_dormancy(longer, now=effect) == 1
    found = {e.subject: e.payload for e in repo.audit_entries() if e.kind == "account.dormant"}
    assert (found["account:quiet"]["warned_at"], found["account:quiet"]["takes_effect"]) == (
        warn_at.isoformat(),
        effect.isoformat(),
    )
    assert repo.settle_dormancy(longer, now=held_at + 60 * DAY) == 1
    # a longer warning moves the date alike
    repo.put_account(policy, "other", now=effect)
    other_warned = effect + warned_after(policy)
    assert repo.warn_dormancy(policy, now=other_warned) == 1
    wary = with_dormancy(policy, warn_days=45)
    assert repo.warn_dormancy(wary, now=other_warned + DAY) == 1
    other = repo.get_account(wary, "other", now=other_warned + DAY)
    assert [d.ends_at for d in other.dispositions] == [other_warned + 45 * DAY]
    assert verify(repo) == []


def test_a_warning_another_process_gave_under_other_rules_is_revised_by_the_next_look(
    database_url: str, policy: Policy
) -> None:
    """A process reads every running warning once under its rules, then only those given
    since: a warning another process gave, during a rolling deploy, under an older policy
    version or under its own version with edited rules (another digest), is given again with
    the date this process's rules say on its next sweep, and stays so."""
    upgrade(database_url)
    older = Policy.model_validate(
        {**with_dormancy(policy, after_days=150).model_dump(), "version": "2026-01-01.1"}
    )
    edited = with_dormancy(policy, after_days=160)
    assert older.version != policy.version
    assert edited.version == policy.version and edited.digest != policy.digest
    current, other = (open_repository(database_url, 5.0, policy.review) for _ in range(2))
    try:
        for account_id, clock in (("first", T0), ("by_older", T0 + 10 * DAY)):
            current.put_account(policy, account_id, now=clock)
        # not due under the older rules when their process sweeps
        current.put_account(policy, "by_edited", now=T0 + 40 * DAY)
        warn_at = T0 + warned_after(policy)
        assert current.warn_dormancy(policy, now=warn_at) == 1
        assert current.warn_dormancy(policy, now=warn_at + SECOND) == 0
        for account_id, rules, clock, at in (
            ("by_older", older, T0 + 10 * DAY, T0 + 154 * DAY),
            ("by_edited", edited, T0 + 40 * DAY, T0 + 171 * DAY),
        ):
            assert other.warn_dormancy(rules, now=at) == 1
            (given_by_other,) = current.get_account(policy, account_id, now=at).dispositions
            assert given_by_other.ends_at is not None
            assert given_by_other.ends_at < clock + dormant_after(policy)
            assert current.warn_dormancy(policy, now=at + SECOND) == 1
            assert current.warn_dormancy(policy, now=at + 2 * SECOND) == 0
            (revised,) = current.get_account(policy, account_id, now=at).dispositions
            assert (revised.ends_at, revised.policy_version) == (
                clock + dormant_after(policy),
                policy.version,
            )
            # the other process's rules keep the later date: nothing goes back and forth
            assert other.warn_dormancy(rules, now=at + 3 * SECOND) == 0
        assert verify(current) == []
    finally:
        current.close()
        other.close()


def test_a_look_cut_at_the_bound_reads_every_warning_again_next_time(
    repo: SqlRepository, policy: Policy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A look that found as many warnings at odds with the policy as a sweep takes leaves the
    rest for the next sweep, which reads every running warning again, not only those given
    since."""
    monkeypatch.setattr(dormancy_sql, "SWEEP_ACCOUNTS", 1)
    repo.put_account(policy, "a", now=T0)
    repo.put_account(policy, "b", now=T0 + HOUR)
    warn_at = T0 + warned_after(policy) + HOUR
    assert repo.warn_dormancy(policy, now=warn_at) == 1
    assert repo.warn_dormancy(policy, now=warn_at + SECOND) == 1
    assert repo.warn_dormancy(policy, now=warn_at + 2 * SECOND) == 0
    longer = with_dormancy(policy, after_days=200)
    between = warn_at + DAY
    assert [repo.warn_dormancy(longer, now=between + n * SECOND) for n in range(3)] == [1, 1, 0]
    for account_id, clock in (("a", T0), ("b", T0 + HOUR)):
        (warning,) = repo.get_account(longer, account_id, now=between).dispositions
        assert warning.ends_at == clock + timedelta(days=200)
    assert verify(repo) == []


def test_a_process_looks_again_at_the_warnings_given_since_or_at_all_past_what_it_reads(
    database_url: str, policy: Policy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once a process has read every running warning under its rules, its next look reads the
    accounts the chain names a warning given to since, and every one again where more than
    :data:`~service.storage.dormancy_sql.READ_ACCOUNTS` were. A warning changed by hand in the
    database, which no record names, shows which: the narrow look leaves it, the full one
    gives it again with the date the policy says."""
    monkeypatch.setattr(dormancy_sql, "READ_ACCOUNTS", 1)
    upgrade(database_url)
    older = Policy.model_validate(
        {
            **with_dormancy(policy, after_days=150, warn_days=20).model_dump(),
            "version": "2026-01-01.1",
        }
    )
    current, other = (open_repository(database_url, 5.0, policy.review) for _ in range(2))
    try:
        clocks = {"first": T0, "stale": T0, "one": T0 + 10 * DAY}
        clocks |= {"two": T0 + 40 * DAY, "three": T0 + 40 * DAY}
        for account_id, clock in clocks.items():
            current.put_account(policy, account_id, now=clock)
        warn_at = T0 + warned_after(policy)
        assert current.warn_dormancy(policy, now=warn_at) == 2
        # the two warnings given are more than it reads: it reads every one again
        assert current.warn_dormancy(policy, now=warn_at + SECOND) == 0
        # earlier than the policy's date, not than the older rules'
        edited = T0 + dormant_after(policy) - 5 * DAY
        with current.engine.begin() as db:
            db.execute(
                update(StoredDisposition)
                .where(StoredDisposition.account_id == "stale")
                .values(ends_at=edited)
            )

        def ends(account_id: str, at: datetime) -> datetime | None:
            (warning,) = current.get_account(policy, account_id, now=at).dispositions
            return warning.ends_at

        # "one" is due under the older rules alone: the other process warns it, and one record
        # names it
        at = T0 + 154 * DAY
        assert other.warn_dormancy(older, now=at) == 1
        assert current.warn_dormancy(policy, now=at + SECOND) == 1
        assert ends("one", at) == clocks["one"] + dormant_after(policy)
        assert ends("stale", at) == edited
        # three records since ("one" given again, "two" and "three" warned): more than it reads
        later = T0 + 171 * DAY
        assert other.warn_dormancy(older, now=later) == 2
        assert current.warn_dormancy(policy, now=later + SECOND) == 3
        assert current.warn_dormancy(policy, now=later + 2 * SECOND) == 0
        for account_id in ("stale", "two", "three"):
            assert ends(account_id, later) == clocks[account_id] + dormant_after(policy)
        assert verify(current) == []
    finally:
        current.close()
        other.close()


def test_an_account_warned_or_found_dormant_has_the_days_later_post_written() -> None:
    used = RecentUse(size=3)
    used.seen(["a", "b"], T0)
    assert used.take() == {"a": T0, "b": T0}
    used.seen(["a", "b"], T0 + HOUR)
    used.seen(["a"], T0 + 2 * HOUR)
    assert used.take() == {}
    # found dormant on the clocks those first posts set (b's since moved by a login): a's later
    # post that day is written, which ends it; "c" was never seen here
    used.watch({"a": T0, "b": T0 + 3 * HOUR, "c": T0})
    assert used.take() == {"a": T0 + 2 * HOUR}
    # and their next post is written at once, whatever the day
    used.seen(["b"], T0 + 4 * HOUR)
    assert used.take() == {"b": T0 + 4 * HOUR}


def test_a_post_after_the_clock_ends_a_dormancy_another_process_found_the_same_day(
    database_url: str, policy: Policy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under a dormancy of an hour, the process that wrote an account's first post of the day
    holds its later posts: another process finds it dormant on that first post's clock, and
    the first learns it from the chain and writes the day's latest post, which ends it."""
    brief = with_dormancy(policy, after_days=1 / 24, warn_days=0)
    upgrade(database_url)
    first, other = (open_repository(database_url, 5.0, brief.review) for _ in range(2))
    try:
        clocks, read = first.dormancies_after(None)
        assert clocks == {}
        used = RecentUse()
        used.seen(["a", "b"], T0)
        assert first.record_use(brief, used.take()) == 0
        used.seen(["a"], T0 + 20 * MINUTE)
        assert other.settle_dormancy(brief, now=T0 + HOUR) == 2
        used.seen(["a"], T0 + HOUR + MINUTE)
        assert used.take() == {}
        clocks, read = first.dormancies_after(read)
        assert clocks == {"a": T0, "b": T0}
        used.watch(clocks)
        assert used.take() == {"a": T0 + HOUR + MINUTE}
        assert first.record_use(brief, {"a": T0 + HOUR + MINUTE}) == 1
        account = first.get_account(brief, "a", now=T0 + HOUR + MINUTE)
        assert (account.dormant_at, kinds(account)) == (None, set())
        returned = [e.payload for e in first.audit_entries() if e.kind == "account.returned"]
        assert returned == [
            {
                "dormant_at": (T0 + HOUR).isoformat(),
                "at": (T0 + HOUR + MINUTE).isoformat(),
                "via": "post",
            }
        ]
        # read once; a page at a time; none past the chain's end (a database restored from an
        # older backup), whose last record is read after next time
        head = first.audit_head()[0]
        assert first.dormancies_after(read) == ({}, head)
        monkeypatch.setattr(dormancy_sql, "READ_CHANGES", 1)
        page, after = first.dormancies_after(0)
        assert (page, first.dormancies_after(after)[0]) == ({"a": T0}, {"b": T0})
        assert first.dormancies_after(head + 100) == ({}, head)
    finally:
        first.close()
        other.close()


# --- the API --------------------------------------------------------------------------------


def test_a_login_is_reported_with_the_profile_and_one_ahead_of_the_clock_is_refused(
    api: Api,
) -> None:
    url, headers = "/v1/accounts/acc1", api.headers()
    login = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    put = api.client.put(url, json={"last_login_at": login.isoformat()}, headers=headers)
    assert put.status_code == 200, put.text
    body = put.json()
    assert datetime.fromisoformat(body["last_login_at"]) == login
    assert body["dormant_at"] is None and body["active_at"] is not None
    # an earlier login reported late keeps the later one; unix seconds are read as such
    earlier = int((login - timedelta(days=2)).timestamp())
    put = api.client.put(url, json={"last_login_at": earlier}, headers=headers)
    assert datetime.fromisoformat(put.json()["last_login_at"]) == login
    # the clock's skew is allowed, a login that has not happened is not, nor a time of no zone
    skewed = {"last_login_at": (datetime.now(UTC) + timedelta(minutes=1)).isoformat()}
    assert api.client.put(url, json=skewed, headers=headers).status_code == 200
    for value in (
        (datetime.now(UTC) + timedelta(minutes=30)).isoformat(),
        "2026-01-01T08:00:00",
        "0001-01-01T00:00:00+01:00",
        "yesterday",
    ):
        refused = api.client.put(url, json={"last_login_at": value}, headers=headers)
        assert refused.status_code == 422, value
        (problem,) = refused.json()["detail"]
        assert problem["loc"] == ["body", "last_login_at"], value
    ahead = api.client.put(
        url,
        json={"last_login_at": (datetime.now(UTC) + timedelta(days=1)).isoformat()},
        headers=headers,
    )
    assert "by more than the 5 minutes taken for clock skew" in ahead.json()["detail"][0]["msg"]
    reviewer = api.headers(api.new_key("reviewer"))
    refused = api.client.put(url, json={"last_login_at": login.isoformat()}, headers=reviewer)
    assert refused.status_code == 403


def test_a_server_process_finds_an_account_dormant_and_its_post_lifts_it(
    unwarned_api: Api,
) -> None:
    api = unwarned_api
    review, policy = api.services.review, api.services.scoring.policy
    long_ago = datetime.now(UTC) - dormant_after(policy) - DAY
    review.put_account(policy, "quiet", name="沉睡号", now=long_ago)
    review.put_account(policy, "posting", name="活跃号", now=long_ago)
    assert api.score({"id": "p1", "text": PLAIN, "account_id": "posting"}).status_code == 200

    def found() -> bool:
        return review.get_account(policy, "quiet").dormant_at is not None

    def used() -> bool:
        # a sweep that ran before the post was written finds it dormant, and the next write of
        # the publish path's use ends that at once
        posting = review.get_account(policy, "posting")
        clock = posting.active_at
        return posting.dormant_at is None and clock is not None and clock > long_ago + DAY

    # the process's maintenance (every storage_retry_s) writes the use, then sweeps
    wait_for(found)
    wait_for(used)
    assert "suspend_dormant" in kinds(review.get_account(policy, "quiet"))
    # the platform reads it from the feed; the account posts, which is its return
    feed = api.client.get("/v1/dispositions", headers=api.headers()).json()
    assert ("quiet", "suspend_dormant", "applied") in {
        (c["disposition"]["account_id"], c["disposition"]["kind"], c["change"])
        for c in feed["changes"]
    }
    record = api.score({"id": "p2", "text": PLAIN, "account_id": "quiet"}).json()
    assert record["decision"] != "block"
    wait_for(lambda: review.get_account(policy, "quiet").dormant_at is None)
    assert kinds(review.get_account(policy, "quiet")) == set()
    feed = api.client.get("/v1/dispositions", headers=api.headers()).json()
    lifted = [c for c in feed["changes"] if c["change"] == "lifted"]
    assert {(c["disposition"]["kind"], c["cause"]) for c in lifted} == {
        ("suspend_dormant", "returned"),
        (dormancy.NOTICE, "returned"),
    }

    # an account the platform never gave a profile of, and never charged: its post is use too
    assert api.score({"id": "p3", "text": PLAIN, "account_id": "stranger"}).status_code == 200

    def stranger() -> dict[str, object]:
        shown: dict[str, object] = api.client.get(
            "/v1/accounts/stranger", headers=api.headers()
        ).json()
        return shown

    wait_for(lambda: stranger()["active_by"] == "post")
    shown = stranger()
    assert (shown["name"], shown["followers"], shown["dormant_at"]) == (None, 0, None)
    assert isinstance(shown["active_at"], str)
    assert datetime.fromisoformat(shown["active_at"]) > long_ago + DAY


def test_a_server_process_warns_ahead_of_a_dormancy_and_a_post_ends_the_warning(
    api: Api,
) -> None:
    review, policy = api.services.review, api.services.scoring.policy
    now = datetime.now(UTC)
    registered = now - warned_after(policy) - HOUR
    review.put_account(policy, "soon", name="将休眠号", now=registered)
    review.put_account(policy, "later", name="刚注册号", now=now - HOUR)
    # the process's maintenance warns, every storage_retry_s
    wait_for(lambda: review.get_account(policy, "soon").warned_at is not None)
    feed = api.client.get("/v1/dispositions", headers=api.headers()).json()
    (warning,) = [c for c in feed["changes"] if c["disposition"]["kind"] == dormancy.WARNING]
    assert warning["disposition"]["account_id"] == "soon"
    # when the dormancy takes effect unless the account is used, for the platform to say: a
    # month after the warning, which came an hour after the clock was as old as that
    effect = datetime.fromisoformat(warning["disposition"]["ends_at"])
    shown = review.get_account(policy, "soon")
    assert shown.warned_at is not None
    assert effect == shown.warned_at + timedelta(days=policy.dormancy.warn_days)
    assert effect > registered + dormant_after(policy)
    assert kinds(shown) == {dormancy.WARNING} and shown.dormant_at is None
    assert review.get_account(policy, "later").warned_at is None
    assert api.score({"id": "p1", "text": PLAIN, "account_id": "soon"}).status_code == 200
    wait_for(lambda: review.get_account(policy, "soon").warned_at is None)
    assert kinds(review.get_account(policy, "soon")) == set()
    assert ("soon", dormancy.WARNING, "lifted", "returned") in feed_changes(api)


def test_a_post_by_an_account_found_dormant_the_day_it_posted_before_ends_it_at_once(
    tmp_path: Path, pipeline: Pipeline, postgres_url: str
) -> None:
    """Under a dormancy of seconds, an account posts, is found dormant on the clock that post
    set, and posts again the same day: the day's grain would leave the second post unwritten,
    and the account dormant until the next day."""
    rules = policy_file(tmp_path, after_days=2 / 86400, warn_days=0)
    with open_api(
        tmp_path, postgres_url, pipeline.classifier, policy=rules, storage_retry_s=0.2
    ) as api:
        review, policy = api.services.review, api.services.scoring.policy
        review.put_account(policy, "brief", name="短暂号")
        assert api.score({"id": "p1", "text": PLAIN, "account_id": "brief"}).status_code == 200
        wait_for(lambda: review.get_account(policy, "brief").dormant_at is not None)
        posted = datetime.now(UTC)
        assert api.score({"id": "p2", "text": PLAIN, "account_id": "brief"}).status_code == 200

        def returned() -> bool:
            return any(
                e.kind == "account.returned"
                and e.subject == "account:brief"
                and e.payload["via"] == "post"
                and datetime.fromisoformat(e.payload["at"]) >= posted
                for e in review.audit_entries()
            )

        wait_for(returned)
        assert ("brief", "suspend_dormant", "lifted", "returned") in feed_changes(api)


def _logged_in_before_0049(engine: Engine, account_id: str, at: datetime, now: datetime) -> None:
    """A login as the service stored it before logins were converted to UTC: ``at`` as given
    (which SQLite keeps as its wall time, read back as UTC), compared with the row as read
    back, and chained in its zone."""
    with Session(engine) as session, session.begin():
        account = session.get(StoredAccount, account_id)
        assert account is not None
        if dormancy.returned(maybe_utc(account.login_at), at):
            account.login_at = at
        if dormancy.returned(maybe_utc(account.active_at), at):
            account.active_at, account.active_by = at, "login"
        profile = {
            "name": account.name,
            "followers": account.followers,
            "subject": account.subject_digest,
            "last_login_at": at.isoformat(),
        }
        append_records(session, now, [("account.profile", f"account:{account_id}", profile)])


def _posted(engine: Engine, account_id: str, at: datetime) -> None:
    """A post's daily use, as the publish path writes it: the clock moves where it is earlier."""
    with engine.begin() as connection:
        connection.execute(
            update(StoredAccount)
            .where(StoredAccount.account_id == account_id, StoredAccount.active_at < at)
            .values(active_at=at, active_by="post")
        )


def test_0049_brings_a_login_stored_in_its_zones_wall_time_and_the_clock_it_set_to_the_moment(
    database_url: str, policy: Policy
) -> None:
    """On SQLite a login given in another zone was stored as its wall time read as UTC: eight
    hours late for +08:00, five early for -05:00, and the clock with it where it moved it.
    0049 takes each account's login from the latest its profiles chain, and the clock where the
    wrong login set it (or a post moved it past the wrong value and not past the login); a clock
    a post set later than the login stays. ``audit verify`` then finds nothing, and the sweep
    finds the accounts dormant on their logins' moments. On PostgreSQL the logins were kept
    as moments, and it changes nothing. The downgrade leaves the rows."""
    sqlite = make_url(database_url).get_backend_name() == "sqlite"
    beijing, new_york = timezone(timedelta(hours=8)), timezone(timedelta(hours=-5))
    login = T0 + DAY
    logins = {
        "east": [login.astimezone(beijing)],
        "east_again": [login.astimezone(beijing), login + 2 * HOUR],
        "west": [login.astimezone(new_york)],
        "posted": [login.astimezone(beijing)],
        "utc": [login],
    }
    upgrade(database_url)
    repo = open_repository(database_url, 5.0, policy.review)
    engine = make_engine(database_url, 5.0)
    try:
        for account in logins:
            repo.put_account(policy, account, name=f"清朗{account}", now=T0)
        with engine.begin() as connection:
            migrate(connection, "0048_audit_subject_index", down=True)
        for account, given in logins.items():
            for at in given:
                _logged_in_before_0049(engine, account, at, login + 3 * HOUR)
        # past the -05:00 login's wrong value, not past the login
        _posted(engine, "west", login - HOUR)
        # past the +08:00 login's wrong value
        _posted(engine, "posted", login + 9 * HOUR)
        if sqlite:
            assert {p.split(":")[0] for p in verified(repo)} == {
                f"account {a}" for a in ("east", "east_again", "west", "posted")
            }
        upgrade(database_url)
        for _ in range(2):
            assert verified(repo) == []
            clocks = {
                a: (found.last_login_at, found.active_at, found.active_by)
                for a in logins
                for found in [repo.get_account(policy, a, now=login + 10 * HOUR)]
            }
            assert clocks == {
                "east": (login, login, "login"),
                "east_again": (login + 2 * HOUR, login + 2 * HOUR, "login"),
                "west": (login, login, "login"),
                "posted": (login, login + 9 * HOUR, "post"),
                "utc": (login, login, "login"),
            }
            with engine.begin() as connection:
                migrate(connection, "0048_audit_subject_index", down=True)
            upgrade(database_url)
        swept = with_dormancy(policy, action="none", notify=True, warn_days=0)
        found_at = login + dormant_after(swept) + HOUR
        assert repo.settle_dormancy(swept, now=found_at) == 3
        dormant = {a for a in logins if repo.get_account(swept, a, now=found_at).dormant_at}
        assert dormant == {"east", "west", "utc"}
        assert verified(repo) == []
    finally:
        repo.close()
        engine.dispose()


def test_0049_corrects_every_page_of_accounts(tmp_path: Path, policy: Policy) -> None:
    """0049 reads the accounts a page at a time (500), each page's profiles by the range of its
    accounts' subjects: every account of more than two pages is corrected, none twice nor
    another's records, ids that sort across a page's end included."""
    url = f"sqlite:///{tmp_path / 'qinglang.db'}"
    beijing = timezone(timedelta(hours=8))
    accounts = [f"a{n}" for n in range(1_100)] + [f"a{n}x" for n in range(0, 1_100, 97)]
    upgrade(url)
    repo = open_repository(url, 5.0, policy.review)
    engine = make_engine(url, 5.0)
    try:
        with engine.begin() as connection:
            migrate(connection, "0048_audit_subject_index", down=True)
        moments = {a: T0 + n * MINUTE for n, a in enumerate(accounts)}
        with Session(engine) as session, session.begin():
            session.execute(
                insert(StoredAccount),
                [
                    {
                        "account_id": a,
                        "credit": policy.credit.initial,
                        "level": "normal",
                        "clean_since": T0,
                        "policy_version": policy.version,
                        # as the service stored a login given at +08:00
                        "login_at": at.astimezone(beijing),
                        "active_at": at.astimezone(beijing),
                        "active_by": "login",
                    }
                    for a, at in moments.items()
                ],
            )
            append_records(
                session,
                T0,
                [
                    (
                        "account.profile",
                        f"account:{a}",
                        {
                            "name": None,
                            "followers": 0,
                            "subject": None,
                            "last_login_at": at.astimezone(beijing).isoformat(),
                        },
                    )
                    for a, at in moments.items()
                ],
            )
        upgrade(url)
        with engine.connect() as connection:
            rows = connection.execute(
                select(StoredAccount.account_id, StoredAccount.login_at, StoredAccount.active_at)
            ).all()
        assert {a: (maybe_utc(login), maybe_utc(active)) for a, login, active in rows} == {
            a: (at, at) for a, at in moments.items()
        }
        assert verified(repo) == []
    finally:
        repo.close()
        engine.dispose()


def test_0049_leaves_the_clock_an_account_was_warned_on(tmp_path: Path, policy: Policy) -> None:
    """An account warned on a clock a login given at +08:00 set eight hours late keeps it: the
    warning's record names it, and the platform was told the date; its login is corrected."""
    url = f"sqlite:///{tmp_path / 'qinglang.db'}"
    login = T0 + DAY
    wrong = login + 8 * HOUR
    upgrade(url)
    repo = open_repository(url, 5.0, policy.review)
    engine = make_engine(url, 5.0)
    try:
        repo.put_account(policy, "warned", name="清朗warned", now=T0)
        with engine.begin() as connection:
            migrate(connection, "0048_audit_subject_index", down=True)
        at = login.astimezone(timezone(timedelta(hours=8)))
        _logged_in_before_0049(engine, "warned", at, login)
        assert repo.warn_dormancy(policy, now=wrong + warned_after(policy)) == 1
        upgrade(url)
        found = repo.get_account(policy, "warned", now=wrong + warned_after(policy))
        assert (found.last_login_at, found.active_at, found.warned_at) == (
            login,
            wrong,
            wrong + warned_after(policy),
        )
        assert verified(repo) == []
    finally:
        repo.close()
        engine.dispose()
