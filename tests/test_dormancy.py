"""Dormant accounts (art10, its second paragraph): the policy's rules, the clock the publish
path and reported logins move, the sweep that finds a dormancy once across processes and what it
applies under each action, the return that lifts it, the migration, and the API and a server
process end to end."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from alembic import command
from servicekit import Api, migrate, wait_for
from sqlalchemy import event, inspect, text

from service.policy import Policy
from service.policy.governance import DispositionStep, DormancyRules
from service.review import chain, dormancy, views
from service.review.items import ConflictError
from service.storage import SqlRepository, dormancy_sql, open_repository, upgrade
from service.storage.sql import alembic_config, make_engine
from service.usage import RecentUse

T0 = datetime(2026, 1, 1, 8, 0, tzinfo=UTC)
DAY = timedelta(days=1)
SECOND = timedelta(seconds=1)
PLAIN = "今天天气很好,我们去公园散步了"


def verify(repo: SqlRepository) -> list[str]:
    return chain.verify(repo.audit_entries(), repo.audit_head())


def with_dormancy(policy: Policy, **rules: object) -> Policy:
    """``policy`` with its ``[dormancy]`` changed as ``rules`` say."""
    changed = policy.dormancy.model_copy(update=rules)
    return Policy.model_validate({**policy.model_dump(), "dormancy": changed.model_dump()})


def dormant_after(policy: Policy) -> timedelta:
    return timedelta(days=policy.dormancy.after_days)


def kinds(account: views.Account) -> set[str]:
    return {d.kind for d in account.dispositions}


# --- the rules ------------------------------------------------------------------------------


def test_the_shipped_policy_suspends_after_over_six_months_until_the_next_use(
    policy: Policy,
) -> None:
    rules = policy.dormancy
    # over six months whichever six months they are (the longest six are 184 days)
    assert (rules.after_days, rules.action, rules.notify, rules.basis) == (
        183,
        "suspend",
        True,
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
    assert dormancy.kinds(policy.dispositions) == ["suspend_dormant", dormancy.NOTICE]
    assert dormancy.dormant_before(rules, T0) == T0 - timedelta(days=183)
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
        DormancyRules(after_days=0, action="suspend", notify=True, basis="art10")


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
    for name in ("quiet", "posting", "late"):
        repo.put_account(policy, name, name=f"{name}号", now=T0)
    limit = dormant_after(policy)
    # a post scored on day 100 moves its account's clock; one of an account without a profile
    # (nothing registered it here) is left alone
    assert repo.record_use(policy, {"posting": T0 + 100 * DAY, "stranger": T0}) == 0
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
    reviewing = with_dormancy(policy, action="review", notify=False)
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
    assert repo.settle_dormancy(silent, now=found_at) == 0
    assert repo.get_account(silent, "quiet", now=found_at).dormant_at is None
    noticed = with_dormancy(policy, action="none", notify=True)
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
        assert repo.settle_dormancy(policy, now=started + dormant_after(policy) - DAY) == 0
    finally:
        repo.close()


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


def test_a_server_process_finds_an_account_dormant_and_its_post_lifts_it(api: Api) -> None:
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
