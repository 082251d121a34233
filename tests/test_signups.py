"""Batch registration (art10, third paragraph): the skeleton and the batch rule, the
``signup_batch`` item that registrations open and join on SQLite and PostgreSQL (concurrent ones
included), its confirmation, its migration, and the API."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic.util import CommandError
from servicekit import Api, Held, migrate, no_upkeep, open_api, wait_for
from sqlalchemy import func, insert, inspect, select
from sqlalchemy.orm import Session

from service.pipeline import Pipeline
from service.policy import Policy
from service.review import chain, signups
from service.review.appeals import AppealClosedError
from service.review.items import EARLIER
from service.review.views import Appeal, CreditChange, Decision
from service.scoring import ScoringService
from service.storage import (
    SqlRepository,
    StorageError,
    StorageUnavailableError,
    credit_steps,
    item_steps,
    open_repository,
    review_sql,
    upgrade,
)
from service.storage.database import make_engine
from service.storage.repository import Idempotency
from service.storage.tables import CreditEntry, ReviewItem, SignupBatchMember, StoredAccount
from service.storage.transaction import Tx, lock_signup_batch

T0 = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


def verify(repo: SqlRepository) -> list[str]:
    return chain.verify(repo.audit_entries(), repo.audit_head())


def register(
    repo: SqlRepository, policy: Policy, count: int, start: int = 0, at: datetime = T0
) -> list[str]:
    """Register ``count`` accounts ``b{n}`` named ``清朗日报{n:02}``, each of its own subject,
    a minute apart from ``at``; their ids (``b0`` to ``b9`` in code-point order too)."""
    ids = []
    for n in range(start, start + count):
        repo.put_account(
            policy, f"b{n}", name=f"清朗日报{n:02}", subject_id=f"S{n}", now=at + n * MINUTE
        )
        ids.append(f"b{n}")
    return ids


# --- the rule -------------------------------------------------------------------------------


def test_a_skeleton_is_the_folded_name_without_its_serial_numbers() -> None:
    for name in (
        "清朗日报01",
        "清朗日報 02",
        "清朗日报-003",
        "清朗日报(12)",
        "清朗日报第十二号",
        "清朗日报第3號",
        "清朗日报二",
        "清朗日报①",
        "清朗日报12",
        "清朗3日报",
        "清朗\u200b日报7",
    ):
        assert signups.skeleton(name) == "清朗日报", name
    assert signups.skeleton("Daily News 07") == "dailynews"
    # numerals inside a name are words, and a 号 or 第 with no number is the name's
    assert signups.skeleton("一线三亚新闻") == "一线三亚新闻"
    assert signups.skeleton("清朗号") == "清朗号"
    assert signups.skeleton("第一财经5") == "第一财经"
    assert signups.skeleton("12345") == ""


def test_a_batch_needs_enough_accounts_and_a_skeleton_of_its_own(policy: Policy) -> None:
    rules = policy.registration
    assert signups.is_batch(rules, rules.batch_accounts)
    assert not signups.is_batch(rules, rules.batch_accounts - 1)
    batch = signups.batch_of(rules, "清朗日报01")
    assert batch is not None and batch == signups.batch_of(rules, "清朗日報第2号")
    assert batch.merge_key == f"signup_batch:{batch.digest}" and len(batch.digest) == 64
    assert batch != signups.batch_of(rules, "清朗晚报01")
    # no name, a skeleton too short to tell from chance, a platform's default names
    assert signups.batch_of(rules, None) is None
    assert signups.batch_of(rules, "a1") is None
    assert signups.batch_of(rules, "12345678") is None
    assert signups.batch_of(rules, "用户8372615") is None
    assert signups.batch_of(rules.model_copy(update={"batch_exempt": []}), "用户83") is not None


# --- storage --------------------------------------------------------------------------------


def test_a_batch_of_registrations_opens_one_item_that_later_ones_join(
    repo: SqlRepository, policy: Policy
) -> None:
    rules = policy.registration
    # an account of the skeleton registered too long ago, another name, a default name
    repo.put_account(policy, "old", name="清朗日报99", now=T0 - timedelta(hours=rules.batch_hours))
    first = register(repo, policy, rules.batch_accounts - 1)
    repo.put_account(policy, "other", name="清朗晚报01", now=T0)
    for n in range(rules.batch_accounts):
        repo.put_account(policy, f"u{n}", name=f"用户{n}", now=T0)
    assert repo.list_items(policy, kind="signup_batch").items == []

    last = register(repo, policy, 1, start=rules.batch_accounts - 1)
    (item,) = repo.list_items(policy, kind="signup_batch").items
    assert (item.account_id, item.post_id, item.head) == (None, None, "bulk_registration")
    assert item.reach == rules.batch_accounts
    assert item.evidence == {
        "skeleton": "清朗日报",
        "accounts": [
            {
                "account_id": account,
                "name": f"清朗日报{n:02}",
                "registered_at": (T0 + n * MINUTE).isoformat(),
            }
            for n, account in enumerate([*first, *last])
        ],
        "unlisted": 0,
    }
    # the registrations are not refused
    assert repo.get_account(policy, last[0]).name == f"清朗日报{rules.batch_accounts - 1:02}"

    # a later one joins it, once, whatever it is renamed to within the skeleton
    more = register(repo, policy, 1, start=rules.batch_accounts)
    repo.put_account(policy, more[0], name="清朗日报第八十号", now=T0 + HOUR)
    repo.put_account(policy, more[0], name="清朗日报第八十号", now=T0 + 2 * HOUR)
    (joined,) = repo.list_items(policy, kind="signup_batch").items
    assert joined.id == item.id and joined.reach == rules.batch_accounts + 1
    assert joined.evidence is not None
    assert [a["account_id"] for a in joined.evidence["accounts"]] == [*first, *last, *more]
    # an old account renamed into the skeleton is no registration
    repo.put_account(policy, "old", name="清朗日报98", now=T0 + HOUR)
    assert repo.list_items(policy, kind="signup_batch").items[0].reach == joined.reach
    kinds = [(e.kind, e.subject) for e in repo.audit_entries()]
    assert kinds.count(("review.enqueued", f"item:{item.id}")) == 1
    assert kinds.count(("review.grown", f"item:{item.id}")) == 1
    assert verify(repo) == []


def test_a_confirmation_charges_each_account_listed_and_a_new_batch_names_it(
    repo: SqlRepository, policy: Policy
) -> None:
    rules = policy.registration
    accounts = register(repo, policy, rules.batch_accounts)
    (item,) = repo.list_items(policy, kind="signup_batch").items
    decided_at = T0 + HOUR
    decision = repo.decide(
        policy, item.id, "r1", "confirm", "bulk_registration", rules.batch_basis, now=decided_at
    )
    assert sorted(c.account_id for c in decision.credits) == accounts
    assert {c.delta for c in decision.credits} == {-policy.credit.deductions["bulk_registration"]}
    assert {(d.account_id, d.kind) for d in decision.dispositions} == {
        (a, "warning") for a in accounts
    }
    # each account appeals its own charge
    appeal = repo.file_appeal(
        policy,
        account_id=accounts[0],
        item_id=item.id,
        reason="我们是连锁门店",
        filed_by="k",
        now=decided_at,
    )
    assert appeal.account_id == accounts[0]

    # the accounts registered before the decision were its reviewer's: one more makes no batch
    later = register(repo, policy, rules.batch_accounts - 1, start=100, at=decided_at)
    assert repo.list_items(policy, kind="signup_batch").items == []
    # a batch of its own since does, naming the decided item
    register(repo, policy, 1, start=200, at=decided_at)
    (again,) = repo.list_items(policy, kind="signup_batch").items
    assert again.id != item.id and again.reach == rules.batch_accounts
    assert again.evidence is not None and again.evidence[EARLIER]["item_id"] == item.id
    assert [a["account_id"] for a in again.evidence["accounts"]] == [*later, "b200"]
    assert verify(repo) == []


def test_registrations_at_once_open_one_item_for_their_batch(
    repo: SqlRepository, policy: Policy
) -> None:
    rules = policy.registration
    register(repo, policy, rules.batch_accounts - 2)
    racing = [f"r{n}" for n in range(50, 56)]
    start = threading.Barrier(len(racing))
    failed: list[BaseException] = []

    def registration(account: str) -> None:
        start.wait()
        try:
            repo.put_account(policy, account, name=f"清朗日报{account[1:]}", now=T0 + HOUR)
        except BaseException as exc:  # reported by the test, not lost in the thread
            failed.append(exc)

    threads = [threading.Thread(target=registration, args=(a,)) for a in racing]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failed == []
    (item,) = repo.list_items(policy, kind="signup_batch").items
    assert item.reach == rules.batch_accounts - 2 + len(racing)
    assert item.evidence is not None and len(item.evidence["accounts"]) == item.reach
    assert verify(repo) == []


def test_a_coordinated_batch_names_the_registration_batch_its_members_came_from(
    repo: SqlRepository, policy: Policy
) -> None:
    accounts = register(repo, policy, policy.registration.batch_accounts)
    (batch,) = repo.list_items(policy, kind="signup_batch").items
    repo.put_account(policy, "real", name="真实用户", now=T0)
    members = [{"post_id": f"p{n}", "account_id": a} for n, a in enumerate([*accounts, "real"])]
    cluster = repo.enqueue(
        policy,
        kind="cluster",
        merge_key="cluster:c1",
        head="coordination",
        severity="review",
        reach=len(members),
        evidence={"members": members},
        now=T0 + HOUR,
    )
    assert cluster.evidence is not None
    assert cluster.evidence[signups.SIGNUP_BATCHES] == [
        {"item_id": batch.id, "status": "open", "skeleton": "清朗日报", "accounts": accounts}
    ]
    # one member of a batch shares it with no other poster; a dismissed batch is none
    lone = repo.enqueue(
        policy,
        kind="cluster",
        merge_key="cluster:c2",
        head="coordination",
        severity="review",
        reach=2,
        evidence={"members": [members[0], members[-1]]},
        now=T0 + HOUR,
    )
    assert lone.evidence == {"members": [members[0], members[-1]]}
    repo.decide(policy, batch.id, "r1", "dismiss", None, None, now=T0 + 2 * HOUR)
    grown = repo.enqueue(
        policy,
        kind="cluster",
        merge_key="cluster:c1",
        head="coordination",
        severity="review",
        reach=len(members) + 1,
        evidence={"members": [*members, {"post_id": "px", "account_id": "x"}]},
        now=T0 + 3 * HOUR,
    )
    assert grown.id == cluster.id and grown.evidence is not None
    assert signups.SIGNUP_BATCHES not in grown.evidence


def test_the_migration_adds_the_columns_and_old_rows_count_in_no_batch(
    database_url: str, policy: Policy
) -> None:
    upgrade(database_url)
    repo = open_repository(database_url, 5.0, policy.review)
    engine = make_engine(database_url, 5.0)
    try:
        repo.put_account(policy, "before", name="清朗日报00", now=T0)
        with engine.begin() as connection:
            migrate(connection, "0037_placeholders_chained", down=True)
            columns = {c["name"] for c in inspect(connection).get_columns("accounts")}
            assert not {"registered_at", "skeleton_digest"} & columns
            migrate(connection, "head")
        # its registration is not known: the batch needs as many accounts without it
        register(repo, policy, policy.registration.batch_accounts - 1, start=1)
        assert repo.list_items(policy, kind="signup_batch").items == []
        register(repo, policy, 1, start=10)
        assert len(repo.list_items(policy, kind="signup_batch").items) == 1
    finally:
        repo.close()
        engine.dispose()


def test_a_registration_waits_for_another_of_its_skeleton_under_way(
    postgres_url: str, policy: Policy
) -> None:
    """On PostgreSQL a registration counts its batch under the skeleton's advisory lock: one
    under way holds it, and another of the skeleton waits (here past a second's lock_timeout,
    and fails) where it would count the batch without the first's row, while another skeleton
    does not wait."""
    upgrade(postgres_url)
    holder, other = (open_repository(postgres_url, 1.0, policy.review) for _ in range(2))
    batch = signups.batch_of(policy.registration, "清朗日报01")
    assert batch is not None
    try:
        with holder._writing() as session:
            lock_signup_batch(Tx(session, T0, policy), batch.digest)
            assert other.put_account(policy, "free", name="清朗晚报01").name == "清朗晚报01"
            with pytest.raises(StorageError):
                other.put_account(policy, "waits", name="清朗日报02")
    finally:
        holder.close()
        other.close()


# --- the API --------------------------------------------------------------------------------


def test_registrations_through_the_api_reach_the_trust_team_with_their_evidence(
    api: Api,
) -> None:
    policy = api.services.scoring.policy
    rules, headers = policy.registration, api.headers()
    for n in range(rules.batch_accounts):
        profile = {"name": f"清朗日报{n:02}", "subject_id": f"S{n}"}
        answer = api.client.put(f"/v1/accounts/b{n}", json=profile, headers=headers)
        assert answer.status_code == 200 and answer.json()["name"] == profile["name"]
    reviewer = api.headers(api.new_key("reviewer"))
    listed = api.client.get("/v1/review/items?kind=signup_batch", headers=reviewer).json()
    (item,) = listed["items"]
    assert (item["head"], item["reach"]) == ("bulk_registration", rules.batch_accounts)
    assert item["evidence"]["skeleton"] == "清朗日报"
    shown = [(a["account_id"], a["name"]) for a in item["evidence"]["accounts"]]
    assert shown == [(f"b{n}", f"清朗日报{n:02}") for n in range(rules.batch_accounts)]
    assert all(a["registered_at"] for a in item["evidence"]["accounts"])
    decided = api.client.post(
        f"/v1/review/items/{item['id']}/decision",
        json={"action": "confirm", "category": "bulk_registration", "basis": "art10"},
        headers=reviewer,
    )
    assert decided.status_code == 200
    charged = sorted(c["account_id"] for c in decided.json()["credits"])
    assert charged == [f"b{n}" for n in range(rules.batch_accounts)]
    assert decided.json()["charged_unlisted"] == 0


def test_an_account_of_a_decided_batch_renamed_joins_no_later_batch(
    repo: SqlRepository, policy: Policy
) -> None:
    """An account the decided item listed was its reviewer's: renamed within the skeleton while
    a batch registered since is open, it is not counted nor charged a second time."""
    rules = policy.registration
    first = register(repo, policy, rules.batch_accounts)
    (item,) = repo.list_items(policy, kind="signup_batch").items
    decided_at = T0 + HOUR
    repo.decide(
        policy, item.id, "r1", "confirm", "bulk_registration", rules.batch_basis, now=decided_at
    )
    later = register(repo, policy, rules.batch_accounts, start=100, at=decided_at)
    (again,) = repo.list_items(policy, kind="signup_batch").items
    repo.put_account(policy, first[0], name="清朗日报第一号", now=decided_at + 3 * HOUR)
    (still,) = repo.list_items(policy, kind="signup_batch").items
    assert still.id == again.id and still.reach == rules.batch_accounts
    assert still.evidence is not None
    assert [a["account_id"] for a in still.evidence["accounts"]] == later
    decision = repo.decide(
        policy, again.id, "r1", "confirm", "bulk_registration", rules.batch_basis, now=T0 + DAY
    )
    assert sorted(c.account_id for c in decision.credits) == later


def test_a_rename_within_the_skeleton_past_the_listing_cap_is_counted_once(
    repo: SqlRepository, policy: Policy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An account the item counts but no longer lists (past ``LISTED``) renamed within the
    skeleton is not a new member of the batch."""
    rules = policy.registration
    monkeypatch.setattr(signups, "LISTED", rules.batch_accounts)
    register(repo, policy, rules.batch_accounts + 1)
    (item,) = repo.list_items(policy, kind="signup_batch").items
    assert item.reach == rules.batch_accounts + 1
    unlisted = f"b{rules.batch_accounts}"
    repo.put_account(policy, unlisted, name="清朗日报第九十号", now=T0 + HOUR)
    repo.put_account(policy, unlisted, name="清朗日报第九十一号", now=T0 + 2 * HOUR)
    (joined,) = repo.list_items(policy, kind="signup_batch").items
    assert joined.reach == rules.batch_accounts + 1
    kinds = [(e.kind, e.subject) for e in repo.audit_entries()]
    assert kinds.count(("review.grown", f"item:{item.id}")) == 1


def test_a_confirmation_charges_every_member_of_the_batch_past_the_listing_cap(
    repo: SqlRepository, policy: Policy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The item lists the first ``LISTED`` accounts and says how many more the batch holds;
    confirming it charges them all, a page of members at a time, answering with the listed
    ones' charges and the number of the others, each of whom appeals its own."""
    rules = policy.registration
    monkeypatch.setattr(signups, "LISTED", rules.batch_accounts)
    monkeypatch.setattr(credit_steps, "CHARGE_CHUNK", 2)
    accounts = register(repo, policy, rules.batch_accounts + 3)
    listed, unlisted = accounts[: rules.batch_accounts], accounts[rules.batch_accounts :]
    (item,) = repo.list_items(policy, kind="signup_batch").items
    assert item.reach == len(accounts) and item.evidence is not None
    assert [a["account_id"] for a in item.evidence["accounts"]] == listed
    assert item.evidence["unlisted"] == len(unlisted)
    decided_at = T0 + HOUR
    decision = repo.decide(
        policy, item.id, "r1", "confirm", "bulk_registration", rules.batch_basis, now=decided_at
    )
    assert sorted(c.account_id for c in decision.credits) == listed
    assert decision.charged_unlisted == len(unlisted)
    deduction = policy.credit.deductions["bulk_registration"]
    for account in accounts:
        assert repo.get_account(policy, account).credit == policy.credit.initial - deduction
    appeal = repo.file_appeal(
        policy, account_id=unlisted[-1], item_id=item.id, reason="门店", filed_by="k", now=T0 + DAY
    )
    assert appeal.account_id == unlisted[-1]
    assert verify(repo) == []


def test_an_account_renamed_out_of_its_batch_and_back_past_the_listing_cap_is_counted_once(
    repo: SqlRepository, policy: Policy, monkeypatch: pytest.MonkeyPatch
) -> None:
    rules = policy.registration
    monkeypatch.setattr(signups, "LISTED", rules.batch_accounts)
    register(repo, policy, rules.batch_accounts + 1)
    (item,) = repo.list_items(policy, kind="signup_batch").items
    unlisted = f"b{rules.batch_accounts}"
    repo.put_account(policy, unlisted, name="清朗晚报01", now=T0 + HOUR)
    repo.put_account(policy, unlisted, name="清朗日报第九十号", now=T0 + 2 * HOUR)
    (joined,) = repo.list_items(policy, kind="signup_batch").items
    assert joined.reach == rules.batch_accounts + 1
    assert joined.evidence is not None and joined.evidence["unlisted"] == 1
    kinds = [(e.kind, e.subject) for e in repo.audit_entries()]
    # its registration joined the item: the rename back is no second join
    assert kinds.count(("review.grown", f"item:{item.id}")) == 1
    decision = repo.decide(
        policy, item.id, "r1", "confirm", "bulk_registration", rules.batch_basis, now=T0 + DAY
    )
    assert decision.charged_unlisted == 1


def test_a_coordinated_batch_names_its_members_registered_past_the_listing_cap(
    repo: SqlRepository, policy: Policy, monkeypatch: pytest.MonkeyPatch
) -> None:
    rules = policy.registration
    monkeypatch.setattr(signups, "LISTED", rules.batch_accounts)
    accounts = register(repo, policy, rules.batch_accounts + 2)
    (batch,) = repo.list_items(policy, kind="signup_batch").items
    unlisted = accounts[rules.batch_accounts :]
    cluster = repo.enqueue(
        policy,
        kind="cluster",
        merge_key="cluster:c1",
        head="coordination",
        severity="review",
        reach=len(unlisted),
        evidence={"members": [{"post_id": f"p{a}", "account_id": a} for a in unlisted]},
        now=T0 + HOUR,
    )
    assert cluster.evidence is not None
    assert cluster.evidence[signups.SIGNUP_BATCHES] == [
        {"item_id": batch.id, "status": "open", "skeleton": "清朗日报", "accounts": unlisted}
    ]


def test_0040_makes_the_accounts_an_item_lists_its_members_and_goes_down_and_up_again(
    database_url: str, policy: Policy
) -> None:
    upgrade(database_url)
    repo = open_repository(database_url, 5.0, policy.review)
    engine = make_engine(database_url, 5.0)
    rules = policy.registration
    try:
        accounts = register(repo, policy, rules.batch_accounts)
        (item,) = repo.list_items(policy, kind="signup_batch").items
        with engine.begin() as connection:
            migrate(connection, "0040_account_history_indexes", down=True)
            assert "signup_batch_members" not in inspect(connection).get_table_names()
            migrate(connection, "head")
        # counted once: a member renamed within the skeleton is no news
        repo.put_account(policy, accounts[0], name="清朗晚报01", now=T0 + HOUR)
        repo.put_account(policy, accounts[0], name="清朗日报第一号", now=T0 + HOUR)
        assert repo.get_item(policy, item.id).reach == rules.batch_accounts
        decision = repo.decide(
            policy, item.id, "r1", "confirm", "bulk_registration", rules.batch_basis, now=T0 + DAY
        )
        assert sorted(c.account_id for c in decision.credits) == accounts
    finally:
        repo.close()
        engine.dispose()


def test_0041_makes_members_of_more_listed_accounts_than_a_statement_names(
    database_url: str, policy: Policy
) -> None:
    """Items from before 0041 may list more accounts in all than one statement takes parameters
    (PostgreSQL's protocol: 65,535): each listed account that exists becomes a member, one
    listed that does not is left out, and the migration does not fail."""
    upgrade(database_url)
    engine = make_engine(database_url, 5.0)
    listed = 65_536
    batches = [
        range(start, min(start + signups.LISTED, listed))
        for start in range(0, listed, signups.LISTED)
    ]
    try:
        with engine.begin() as connection:
            migrate(connection, "0040_account_history_indexes", down=True)
            connection.execute(
                insert(StoredAccount),
                [
                    {
                        "account_id": f"b{n}",
                        "credit": policy.credit.initial,
                        "level": "normal",
                        "clean_since": T0,
                        "policy_version": policy.version,
                    }
                    for n in range(listed)
                ],
            )
            connection.execute(
                insert(ReviewItem),
                [
                    {
                        "kind": signups.KIND,
                        "policy_version": policy.version,
                        "decision": "review",
                        "severity": "review",
                        "urgency": 0.0,
                        "enqueued_at": T0,
                        "evidence": {
                            "accounts": [{"account_id": f"b{n}"} for n in batch]
                            # an account the item lists that the service no longer keeps
                            + [{"account_id": "gone"}]
                        },
                    }
                    for batch in batches
                ],
            )
            migrate(connection, "head")
            members = connection.scalar(select(func.count()).select_from(SignupBatchMember))
            gone = connection.scalar(
                select(func.count()).where(SignupBatchMember.account_id == "gone")
            )
        assert (members, gone) == (listed, 0)
    finally:
        engine.dispose()


def test_a_confirmation_reads_the_members_in_code_point_order_under_any_collation(
    postgres_url: str, policy: Policy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A confirmation locks the batch's accounts in the order it reads its members, which must
    be the one every writer of several accounts sorts them in (code points, Python's): a
    database whose collation is not ``C`` (en_US.UTF-8, ICU's) puts ``a_1`` before ``a1``
    and ``a1`` before ``B1``, and two writers locking one account set in the two orders could
    each hold what the other waits for. The members' column takes ICU's root collation here,
    as a database created under such a default gives it; read two at a time, so the page
    boundaries compare by code point too."""
    ids = ["B1", "a_1", "a1", "A_2", "b-2"]
    upgrade(postgres_url)
    engine = make_engine(postgres_url, 5.0)
    repo = open_repository(postgres_url, 5.0, policy.review)
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql(
                "ALTER TABLE signup_batch_members"
                ' ALTER COLUMN account_id TYPE varchar COLLATE "und-x-icu"'
            )
        for n, account_id in enumerate(ids):
            repo.put_account(
                policy, account_id, name=f"清朗日报{n:02}", subject_id=f"S{n}", now=T0 + n * MINUTE
            )
        with engine.connect() as connection:
            collated = connection.scalars(
                select(SignupBatchMember.account_id).order_by(SignupBatchMember.account_id)
            )
            assert list(collated) != sorted(ids)
        (item,) = repo.list_items(policy, kind="signup_batch").items
        monkeypatch.setattr(credit_steps, "CHARGE_CHUNK", 2)
        read: list[str] = []
        with Session(engine) as session:
            while chunk := credit_steps.members_after(session, item.id, read[-1] if read else ""):
                read += chunk
        assert read == sorted(ids)
    finally:
        repo.close()
        engine.dispose()


def test_a_confirmation_whose_charges_storage_stopped_answers_200_and_its_retry_ends_them(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The decision recorded, it is answered (200) saying its members past the listing are
    still being charged; storage failing their charges in the background leaves them to a
    retry with the key, which has them finished (a retry without it is 409 as decided)."""
    policy, repo = api.services.scoring.policy, api.services.scoring.repository
    assert isinstance(repo, SqlRepository)
    accounts, item_id = big_batch(repo, policy, monkeypatch)
    failed = threading.Event()

    def failing(tx: Tx, item: ReviewItem, member: str, *args: Any) -> Any:
        if member == accounts[-1]:
            failed.set()
            raise StorageUnavailableError("OperationalError: gone")
        return credit_steps.violation(tx, item, member, *args)

    monkeypatch.setattr(item_steps, "violation", failing)
    reviewer = api.headers(api.new_key("reviewer"))
    confirm = {"action": "confirm", "category": "bulk_registration", "basis": "art10"}
    url = f"/v1/review/items/{item_id}/decision"
    keyed = {**reviewer, "Idempotency-Key": "confirm-1"}
    decided = api.client.post(url, json=confirm, headers=keyed)
    assert decided.status_code == 200, decided.text
    assert (decided.json()["status"], decided.json()["charges_pending"]) == ("confirmed", True)
    assert failed.wait(30)
    assert accounts[-1] not in violations(repo, item_id)
    monkeypatch.setattr(item_steps, "violation", credit_steps.violation)
    assert api.client.post(url, json=confirm, headers=reviewer).status_code == 409
    again = api.client.post(url, json=confirm, headers=keyed)
    assert again.status_code == 200 and again.json()["id"] == decided.json()["id"]
    wait_for(lambda: violations(repo, item_id) == dict.fromkeys(accounts, 1))


# --- a large batch's confirmation, a chunk of members a transaction ---------------------------


class StoppedError(Exception):
    """The process confirming a batch stopped between two of its transactions."""


def violations(repo: SqlRepository, item_id: int) -> dict[str, int]:
    """How many violation entries the item's confirmation wrote, by account."""
    with Session(repo.engine) as session:
        rows = session.execute(
            select(CreditEntry.account_id, func.count())
            .where(CreditEntry.item_id == item_id, CreditEntry.reason == "violation")
            .group_by(CreditEntry.account_id)
        ).all()
    return {account: count for account, count in rows}


def big_batch(
    repo: SqlRepository, policy: Policy, monkeypatch: pytest.MonkeyPatch
) -> tuple[list[str], int]:
    """A batch of twice its listing and one more, its item listing ``batch_accounts`` and its
    members charged two a transaction; its accounts and item."""
    rules = policy.registration
    monkeypatch.setattr(signups, "LISTED", rules.batch_accounts)
    monkeypatch.setattr(credit_steps, "CHARGE_CHUNK", 2)
    accounts = register(repo, policy, 2 * rules.batch_accounts - 1)
    (item,) = repo.list_items(policy, kind="signup_batch").items
    return accounts, item.id


def stop_at(
    monkeypatch: pytest.MonkeyPatch, account_id: str, error: Exception | None = None
) -> None:
    """Stop the process as a chunk charges ``account_id`` (or fail the chunk with ``error``):
    its chunk is not committed."""
    charge = credit_steps.violation

    def stopping(tx: Tx, item: ReviewItem, member: str, *args: Any) -> Any:
        if member == account_id:
            raise error or StoppedError(member)
        return charge(tx, item, member, *args)

    monkeypatch.setattr(item_steps, "violation", stopping)


def test_a_confirmation_charges_a_batch_a_chunk_of_members_a_transaction(
    repo: SqlRepository, policy: Policy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No transaction of a confirmation locks more accounts than the item lists (its own, which
    answers with their charges) or than a chunk (each after it), and each member is charged
    once: the listed ones by the decision, the others by the chunks that pass the listed."""
    accounts, item_id = big_batch(repo, policy, monkeypatch)
    listed = policy.registration.batch_accounts
    locked: list[tuple[Tx, str]] = []
    for module in (review_sql, item_steps):
        lock = module.locked_account

        def recording(tx: Tx, account_id: str, lock: Any = lock, **kwargs: Any) -> Any:
            locked.append((tx, account_id))
            return lock(tx, account_id, **kwargs)

        monkeypatch.setattr(module, "locked_account", recording)
    decision = repo.decide(
        policy, item_id, "r1", "confirm", "bulk_registration", "art10", now=T0 + DAY
    )
    assert sorted(c.account_id for c in decision.credits) == accounts[:listed]
    assert decision.charged_unlisted == len(accounts) - listed
    per_tx: dict[int, set[str]] = {}
    for tx, account_id in locked:  # the transactions are kept: no id is used twice
        per_tx.setdefault(id(tx), set()).add(account_id)
    sizes = [len(held) for held in per_tx.values()]
    assert sizes[0] == listed and max(sizes[1:]) == credit_steps.CHARGE_CHUNK
    assert set().union(*per_tx.values()) == set(accounts)
    assert violations(repo, item_id) == dict.fromkeys(accounts, 1)
    assert verify(repo) == []


def test_a_confirmation_stopped_between_chunks_is_finished_by_its_retry_once(
    repo: SqlRepository, policy: Policy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The decision is recorded, and seen, before its members are all charged; the process
    stopping midway leaves the rest to the retry with the decision's key, which answers as the
    decision did and charges each member left once; a retry after that charges nothing."""
    accounts, item_id = big_batch(repo, policy, monkeypatch)
    listed = policy.registration.batch_accounts
    stop_at(monkeypatch, accounts[-2])
    idem = Idempotency("k1", "confirm-1", "fingerprint")
    with pytest.raises(StoppedError):
        repo.decide(
            policy, item_id, "r1", "confirm", "bulk_registration", "art10", idem=idem, now=T0 + DAY
        )
    assert repo.get_item(policy, item_id).status == "confirmed"
    charged = violations(repo, item_id)
    assert accounts[listed] in charged and accounts[-1] not in charged
    monkeypatch.setattr(item_steps, "violation", credit_steps.violation)
    for _ in range(2):
        again = repo.decide(
            policy, item_id, "r1", "confirm", "bulk_registration", "art10", idem=idem, now=T0 + DAY
        )
        assert again.charged_unlisted == len(accounts) - listed
        assert sorted(c.account_id for c in again.credits) == accounts[:listed]
        assert violations(repo, item_id) == dict.fromkeys(accounts, 1)
    deduction = policy.credit.deductions["bulk_registration"]
    assert repo.get_account(policy, accounts[-1]).credit == policy.credit.initial - deduction
    assert verify(repo) == []


def test_a_confirmation_stopped_between_chunks_is_finished_by_the_sweep_once(
    repo: SqlRepository, policy: Policy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a retry the maintenance sweep finishes the charges (another process's as well):
    each member left is charged once, as the decision would have, by its reviewer, and the
    next run finds nothing to do."""
    accounts, item_id = big_batch(repo, policy, monkeypatch)
    stop_at(monkeypatch, accounts[-1])
    with pytest.raises(StoppedError):
        repo.decide(policy, item_id, "r1", "confirm", "bulk_registration", "art10", now=T0 + DAY)
    assert accounts[-1] not in violations(repo, item_id)
    monkeypatch.setattr(item_steps, "violation", credit_steps.violation)
    url = repo.engine.url.render_as_string(hide_password=False)
    restarted = open_repository(url, 5.0, policy.review)
    try:
        # a stopping server begins no chunk: the rest is the next sweep's
        stopping = threading.Event()
        stopping.set()
        assert restarted.finish_charges(policy, now=T0 + DAY, stopping=stopping) == 0
        assert accounts[-1] not in violations(repo, item_id)
        assert restarted.finish_charges(policy, now=T0 + DAY) == 1
        assert restarted.finish_charges(policy, now=T0 + 2 * DAY) == 0
    finally:
        restarted.close()
    assert violations(repo, item_id) == dict.fromkeys(accounts, 1)
    history = repo.get_account(policy, accounts[-1]).history
    deduction = policy.credit.deductions["bulk_registration"]
    assert [(h.reason, h.item_id, h.delta) for h in history if isinstance(h, CreditChange)] == [
        ("violation", item_id, -deduction)
    ]
    assert verify(repo) == []


def test_a_storage_error_after_the_decision_answers_it_with_its_charges_pending(
    repo: SqlRepository, policy: Policy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Storage failing a chunk after the decision committed does not fail the decision: the
    answer is the decision, saying that members are left to charge, and the retry with its
    key finishes them, answering with none pending."""
    accounts, item_id = big_batch(repo, policy, monkeypatch)
    stop_at(monkeypatch, accounts[-1], StorageUnavailableError("OperationalError: gone"))
    idem = Idempotency("k1", "confirm-1", "fingerprint")

    def decide() -> Decision:
        return repo.decide(
            policy, item_id, "r1", "confirm", "bulk_registration", "art10", idem=idem, now=T0 + DAY
        )

    decision = decide()
    assert (decision.status, decision.charges_pending) == ("confirmed", True)
    assert decision.charged_unlisted == len(accounts) - policy.registration.batch_accounts
    assert accounts[-1] not in violations(repo, item_id)
    monkeypatch.setattr(item_steps, "violation", credit_steps.violation)
    again = decide()
    assert (again.id, again.charges_pending) == (decision.id, False)
    assert violations(repo, item_id) == dict.fromkeys(accounts, 1)
    assert verify(repo) == []


def test_a_confirmation_stopped_between_chunks_is_finished_by_a_running_servers_maintenance(
    repo: SqlRepository,
    database_url: str,
    policy: Policy,
    pipeline: Pipeline,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A server started on the database, sent nothing, charges the members a stopped
    confirmation left: its maintenance runs the ``batch_charges`` sweep every
    ``storage_retry_s``, with no retry nor command needed."""
    accounts, item_id = big_batch(repo, policy, monkeypatch)
    stop_at(monkeypatch, accounts[-1])
    with pytest.raises(StoppedError):
        repo.decide(policy, item_id, "r1", "confirm", "bulk_registration", "art10", now=T0 + DAY)
    monkeypatch.setattr(item_steps, "violation", credit_steps.violation)
    assert accounts[-1] not in violations(repo, item_id)
    with open_api(tmp_path, database_url, pipeline.classifier, storage_retry_s=0.05):
        wait_for(lambda: violations(repo, item_id) == dict.fromkeys(accounts, 1))
    assert verify(repo) == []


def test_a_confirmation_past_its_listing_is_answered_at_once_and_charged_in_the_background(
    repo: SqlRepository,
    database_url: str,
    policy: Policy,
    pipeline: Pipeline,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The decision is answered once it commits, saying its members past the listing are
    still being charged, however long they take (a chunk held here past the request's
    deadline was its 503, the decision made); the server charges them right away, each once,
    with no further request nor maintenance period. The retry with the key then answers
    none pending."""
    monkeypatch.setattr(ScoringService, "maintain", no_upkeep)
    accounts, item_id = big_batch(repo, policy, monkeypatch)
    listed = policy.registration.batch_accounts
    held = threading.Event()
    charge = credit_steps.violation

    def holding(tx: Tx, item: ReviewItem, member: str, *args: Any) -> Any:
        held.wait(60)
        return charge(tx, item, member, *args)

    monkeypatch.setattr(item_steps, "violation", holding)
    confirm = {"action": "confirm", "category": "bulk_registration", "basis": "art10"}
    url = f"/v1/review/items/{item_id}/decision"
    try:
        # the default deadline: the listed members' charges, made in the request, may take a
        # loaded host past 1 s, and the held chunk outlasts any deadline
        with open_api(tmp_path, database_url, pipeline.classifier) as api:
            keyed = {**api.headers(api.new_key("reviewer")), "Idempotency-Key": "confirm-1"}
            decided = api.client.post(url, json=confirm, headers=keyed)
            assert decided.status_code == 200, decided.text
            answer = decided.json()
            assert (answer["status"], answer["charges_pending"]) == ("confirmed", True)
            assert answer["charged_unlisted"] == len(accounts) - listed
            assert violations(repo, item_id) == dict.fromkeys(accounts[:listed], 1)
            held.set()
            wait_for(lambda: violations(repo, item_id) == dict.fromkeys(accounts, 1))
            again = api.client.post(url, json=confirm, headers=keyed)
            assert again.status_code == 200
            assert (again.json()["id"], again.json()["charges_pending"]) == (answer["id"], False)
    finally:
        held.set()
    assert violations(repo, item_id) == dict.fromkeys(accounts, 1)
    assert verify(repo) == []


def test_a_confirmation_whose_request_is_cancelled_as_it_commits_is_charged_at_once(
    repo: SqlRepository,
    database_url: str,
    policy: Policy,
    pipeline: Pipeline,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The request's task cancelled once its decision has committed, before it is answered
    (its client gone, or the server's graceful stop timed out), the server
    charges the batch's members past the listing all the same, at once, with no retry nor
    maintenance period: the decision hands them to the charges' thread as it commits, not the
    request once it is answered."""
    monkeypatch.setattr(ScoringService, "maintain", no_upkeep)
    accounts, item_id = big_batch(repo, policy, monkeypatch)
    confirm = {"action": "confirm", "category": "bulk_registration", "basis": "art10"}
    with open_api(tmp_path, database_url, pipeline.classifier) as api:
        stored = api.services.scoring.repository
        assert isinstance(stored, SqlRepository)
        # whether members are left is read after the decision commits
        held = Held(stored._charging)
        monkeypatch.setattr(stored, "_charging", held)
        keyed = {**api.headers(api.new_key("reviewer")), "Idempotency-Key": "confirm-1"}
        url = f"/v1/review/items/{item_id}/decision"
        api.cancelled_at(held, "POST", url, json=confirm, headers=keyed)
        assert repo.get_item(policy, item_id).status == "confirmed"
        wait_for(lambda: violations(repo, item_id) == dict.fromkeys(accounts, 1))
    assert verify(repo) == []


def test_a_confirmation_charging_later_says_whether_any_are_left_and_hands_them_off(
    repo: SqlRepository, policy: Policy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With ``charge_later`` the decision charges only the members its item lists, says the
    others are left and calls ``charge_later`` once it has committed, as does its retry with
    the key while any are left (one whose read of that failed as well: the sweep finds
    whether they are); once the sweep charged them, the retry says none are, and hands
    nothing off."""
    accounts, item_id = big_batch(repo, policy, monkeypatch)
    listed = policy.registration.batch_accounts
    idem = Idempotency("k1", "confirm-1", "fingerprint")
    handed: list[int] = []

    def decide() -> Decision:
        return repo.decide(
            policy,
            item_id,
            "r1",
            "confirm",
            "bulk_registration",
            "art10",
            idem=idem,
            now=T0 + DAY,
            charge_later=lambda: handed.append(item_id),
        )

    decision = decide()
    assert (decision.charges_pending, decision.charged_unlisted) == (True, len(accounts) - listed)
    assert violations(repo, item_id) == dict.fromkeys(accounts[:listed], 1)
    assert handed == [item_id]
    assert decide().charges_pending is True
    assert handed == [item_id] * 2
    with monkeypatch.context() as failing:

        def unread(item_id: int) -> bool:
            raise StorageUnavailableError("OperationalError: gone")

        failing.setattr(repo, "_charging", unread)
        assert decide().charges_pending is True
    assert handed == [item_id] * 3
    assert repo.finish_charges(policy, now=T0 + DAY) == len(accounts)
    assert (decide().id, decide().charges_pending) == (decision.id, False)
    assert handed == [item_id] * 3
    assert violations(repo, item_id) == dict.fromkeys(accounts, 1)
    assert verify(repo) == []


def test_a_member_charged_late_appeals_within_its_window_from_its_charge(
    repo: SqlRepository, policy: Policy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A member that the sweep charged days after the decision (its process stopped between
    chunks) has its ``file_within_days`` from its own charge, the moment it could learn of
    it: past the decision's window it still appeals, until its own closes. A member charged
    with the decision keeps the decision's window."""
    accounts, item_id = big_batch(repo, policy, monkeypatch)
    decided_at, swept_at = T0 + DAY, T0 + 11 * DAY
    stop_at(monkeypatch, accounts[-2])
    with pytest.raises(StoppedError):
        repo.decide(policy, item_id, "r1", "confirm", "bulk_registration", "art10", now=decided_at)
    assert not {accounts[-2], accounts[-1]} & set(violations(repo, item_id))
    monkeypatch.setattr(item_steps, "violation", credit_steps.violation)
    assert repo.finish_charges(policy, now=swept_at) > 0
    window = timedelta(days=policy.appeals.file_within_days)
    between = decided_at + window + DAY

    def appeal(account_id: str, now: datetime) -> Appeal:
        return repo.file_appeal(
            policy, account_id=account_id, item_id=item_id, reason="门店", filed_by="k", now=now
        )

    with pytest.raises(AppealClosedError) as closed:
        appeal(accounts[0], between)
    assert closed.value.deadline == decided_at + window
    filed = appeal(accounts[-1], between)
    assert filed.deadline == between + timedelta(days=policy.appeals.resolve_within_days)
    with pytest.raises(AppealClosedError) as closed:
        appeal(accounts[-2], swept_at + window + MINUTE)
    assert closed.value.deadline == swept_at + window
    assert verify(repo) == []


def test_0043_goes_down_only_once_every_confirmation_has_charged_its_members(
    repo: SqlRepository, policy: Policy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The downgrade stops while a confirmation's charges are not finished: the schema before
    it keeps no place to finish them from, and its release no sweep to finish them, so the
    members left would never be charged. Once they are, it goes down and up again."""
    accounts, item_id = big_batch(repo, policy, monkeypatch)
    stop_at(monkeypatch, accounts[-1])
    with pytest.raises(StoppedError):
        repo.decide(policy, item_id, "r1", "confirm", "bulk_registration", "art10", now=T0 + DAY)
    engine = make_engine(repo.engine.url.render_as_string(hide_password=False), 5.0)
    try:
        with (
            pytest.raises(CommandError, match="1 registration batch confirmations"),
            engine.begin() as connection,
        ):
            migrate(connection, "0042_evidence_failures", down=True)
        with engine.connect() as connection:
            columns = {c["name"] for c in inspect(connection).get_columns("review_decisions")}
        assert "charging_after" in columns
        monkeypatch.setattr(item_steps, "violation", credit_steps.violation)
        assert repo.finish_charges(policy, now=T0 + DAY) == 1
        with engine.begin() as connection:
            migrate(connection, "0042_evidence_failures", down=True)
            columns = {c["name"] for c in inspect(connection).get_columns("review_decisions")}
            assert "charging_after" not in columns
            migrate(connection, "head")
    finally:
        engine.dispose()
    assert violations(repo, item_id) == dict.fromkeys(accounts, 1)


def test_a_writer_of_a_charged_member_does_not_wait_for_the_rest_of_the_batch(
    postgres_url: str, policy: Policy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a confirmation charges the last members, another writer of a member charged
    before (a listed one, by the decision; one of an earlier chunk) goes through at once:
    their locks ended with their chunk's transaction, not the confirmation's. The writer's
    lock timeout is 1 s, the service's default: waiting for the whole confirmation it would be
    refused."""
    upgrade(postgres_url)
    repo = open_repository(postgres_url, 5.0, policy.review)
    other = open_repository(postgres_url, 1.0, policy.review)
    try:
        accounts, item_id = big_batch(repo, policy, monkeypatch)
        charge = credit_steps.violation
        charging, written = threading.Event(), threading.Event()

        def held(tx: Tx, item: ReviewItem, member: str, *args: Any) -> Any:
            if member == accounts[-1]:
                charging.set()
                written.wait(30)
            return charge(tx, item, member, *args)

        monkeypatch.setattr(item_steps, "violation", held)
        confirming = threading.Thread(
            target=repo.decide,
            args=(policy, item_id, "r1", "confirm", "bulk_registration", "art10"),
            kwargs={"now": T0 + DAY},
        )
        confirming.start()
        try:
            assert charging.wait(30)
            for n, member in enumerate((accounts[0], accounts[-3])):
                other.put_account(policy, member, followers=n + 1, now=T0 + DAY)
        finally:
            written.set()
            confirming.join(30)
        assert violations(repo, item_id) == dict.fromkeys(accounts, 1)
        assert repo.get_account(policy, accounts[-3]).followers == 2
    finally:
        other.close()
        repo.close()
