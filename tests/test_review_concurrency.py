"""Several processes deciding, reporting and appealing at once on PostgreSQL; a process killed
in the middle of a decision. Afterwards credit equals the replay of the ledger, nothing is
applied twice, and the chain verifies."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import random
import signal
from collections import Counter
from typing import Any

from servicekit import record
from sqlalchemy import func, select

from service.policy import Policy, load_policy
from service.review import chain, credit
from service.review.items import Category, ConflictError, ForbiddenError
from service.settings import Settings
from service.storage import (
    Pending,
    SqlRepository,
    open_repository,
    review_sql,
    transaction,
    upgrade,
)
from service.storage.repository import Idempotency
from service.storage.tables import (
    AuditRecord,
    CreditEntry,
    ReviewDecision,
    ReviewItem,
    StoredAccount,
    StoredAppeal,
    StoredReport,
)

ACCOUNTS = [f"acc{n}" for n in range(4)]
ITEMS = 48
WORKERS = 4


def _policy() -> Policy:
    return load_policy(Settings().policy_file)


def _seed(url: str) -> list[int]:
    upgrade(url)
    policy = _policy()
    repo = open_repository(url, 10.0, policy.review)
    try:
        records = [
            Pending(
                record(f"p{n}", "block" if n % 3 == 0 else "review").model_copy(
                    update={"account_id": ACCOUNTS[n % len(ACCOUNTS)]}
                ),
                True,
                f"正文 {n}",
            )
            for n in range(ITEMS)
        ]
        repo.save_records(records)
        return [i.id for i in repo.list_items(policy, limit=1000).items]
    finally:
        repo.close()


def _work(url: str, worker: int, item_ids: list[int]) -> None:
    """Claim and decide items in a random order, file reports, appeal and resolve appeals."""
    policy = _policy()
    repo = open_repository(url, 10.0, policy.review)
    rng = random.Random(worker)
    me = f"r{worker}"
    order = list(item_ids)
    rng.shuffle(order)
    for n, item_id in enumerate(order):
        try:
            if n % 4 == 0:
                repo.file_report(
                    policy,
                    post_id=f"p{rng.randrange(ITEMS)}",
                    account_id=None,
                    category="rumor",
                    text_=f"report {worker}-{n}",
                    reporter=f"k{worker}",
                    idem=Idempotency.of(f"k{worker}", f"rep-{n}", "report", n),
                )
            repo.claim(policy, item_id, me)
            if rng.random() < 0.7:
                category: Category = rng.choice(["rumor", "incitement"])
                made = repo.decide(policy, item_id, me, "confirm", category, "art18.6")
            else:
                made = repo.decide(policy, item_id, me, "dismiss", None, None)
            if made.credits and rng.random() < 0.5:
                item = repo.get_item(policy, item_id)
                assert item.account_id is not None
                repo.file_appeal(
                    policy,
                    account_id=item.account_id,
                    item_id=item_id,
                    reason="申诉",
                    filed_by=f"k{worker}",
                )
        except (ConflictError, ForbiddenError):
            pass  # another process got there first: that is the point
        for appeal in repo.list_appeals(limit=20).appeals:
            if appeal.status == "pending":
                with contextlib.suppress(ConflictError, ForbiddenError):
                    repo.decide_appeal(
                        policy, appeal.id, me, rng.choice(["uphold", "reject"]), None
                    )
    repo.close()


def test_concurrent_processes_keep_credit_equal_to_the_replay_of_its_events(
    postgres_url: str,
) -> None:
    item_ids = _seed(postgres_url)
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(target=_work, args=(postgres_url, w, item_ids)) for w in range(WORKERS)
    ]
    for process in workers:
        process.start()
    for process in workers:
        process.join(300)
        assert process.exitcode == 0
    policy = _policy()
    repo = open_repository(postgres_url, 10.0, policy.review)
    try:
        check_consistent(repo, policy)
        with repo.engine.connect() as db:
            decided = db.scalar(
                select(func.count())
                .select_from(ReviewItem)
                .where(ReviewItem.status.in_(("confirmed", "dismissed")))
            )
            resolved = db.scalar(
                select(func.count())
                .select_from(StoredAppeal)
                .where(StoredAppeal.status != "pending")
            )
        assert decided == ITEMS  # every item got decided by somebody, exactly once
        assert resolved and resolved > 0
    finally:
        repo.close()


def check_consistent(repo: SqlRepository, policy: Policy) -> None:
    with repo.engine.connect() as db:
        final = Counter(
            db.scalars(
                select(ReviewDecision.item_id).where(
                    ReviewDecision.action.in_(("confirm", "dismiss"))
                )
            )
        )
        assert all(n == 1 for n in final.values()), "an item was decided twice"
        confirmed_with_account = db.scalar(
            select(func.count())
            .select_from(ReviewDecision)
            .join(ReviewItem, ReviewItem.id == ReviewDecision.item_id)
            .where(ReviewDecision.action == "confirm", ReviewItem.account_id.is_not(None))
        )
        violations = db.scalar(
            select(func.count()).select_from(CreditEntry).where(CreditEntry.reason == "violation")
        )
        assert violations == confirmed_with_account
        # every upheld appeal writes its reversal, of nothing too: the entry is what stops the
        # violation counting
        upheld = db.scalar(
            select(func.count())
            .select_from(StoredAppeal)
            .join(
                CreditEntry,
                (CreditEntry.item_id == StoredAppeal.item_id)
                & (CreditEntry.account_id == StoredAppeal.account_id)
                & (CreditEntry.reason == "violation"),
            )
            .where(StoredAppeal.status == "upheld")
        )
        reversals = db.scalar(
            select(func.count()).select_from(CreditEntry).where(CreditEntry.reason == "reversal")
        )
        assert reversals == upheld
        for account, stored in db.execute(select(StoredAccount.account_id, StoredAccount.credit)):
            deltas = db.scalars(
                select(CreditEntry.delta)
                .where(CreditEntry.account_id == account)
                .order_by(CreditEntry.id)
            ).all()
            assert stored == credit.replay(policy.credit, deltas), account
            last = db.scalar(
                select(CreditEntry.credit)
                .where(CreditEntry.account_id == account)
                .order_by(CreditEntry.id.desc())
                .limit(1)
            )
            assert last in (None, stored)
        reports = db.scalar(select(func.count()).select_from(StoredReport))
        # an item counts each reporter once, however often it filed
        voices = select(StoredReport.item_id, StoredReport.reporter).distinct().subquery()
        merged = db.scalar(select(func.sum(ReviewItem.reports)))
        assert db.scalar(select(func.count()).select_from(voices)) == merged
        records = Counter(db.scalars(select(AuditRecord.kind)))
        decisions = db.scalar(select(func.count()).select_from(ReviewDecision))
    assert records["review.decision"] == decisions
    assert records["credit.change"] == (violations or 0) + (reversals or 0)
    assert records["report.filed"] == reports
    assert chain.verify(repo.audit_entries(), repo.audit_head()) == []


def _killed_mid_decision(url: str, item_id: int) -> None:
    """Decide, and die once every row of the decision is written but before the commit."""

    def append_then_die(session: Any, at: Any, log: Any) -> None:
        transaction.append_records(session, at, log)
        session.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    # the name the write transaction calls, as it calls it
    setattr(review_sql, "append_records", append_then_die)  # noqa: B010
    policy = _policy()
    repo = open_repository(url, 10.0, policy.review)
    repo.decide(policy, item_id, "r1", "confirm", "rumor", "art18.6")


def test_a_process_killed_mid_decision_leaves_none_of_it(database_url: str) -> None:
    item_ids = _seed(database_url)
    policy = _policy()
    repo = open_repository(database_url, 10.0, policy.review)
    try:
        head = repo.audit_head()
        block_item = next(
            i.id for i in repo.list_items(policy, limit=1000).items if i.severity == "block"
        )
        process = multiprocessing.get_context("spawn").Process(
            target=_killed_mid_decision, args=(database_url, block_item)
        )
        process.start()
        process.join(120)
        assert process.exitcode == -signal.SIGKILL
        assert repo.get_item(policy, block_item).status == "open"
        assert repo.audit_head() == head
        with repo.engine.connect() as db:
            assert db.scalar(select(func.count()).select_from(ReviewDecision)) == 0
            assert db.scalar(select(func.count()).select_from(CreditEntry)) == 0
            assert db.scalar(select(func.count()).select_from(StoredAccount)) == 0
        made = repo.decide(policy, block_item, "r1", "confirm", "rumor", "art18.6")
        assert made.credits and made.dispositions
        assert len(item_ids) == ITEMS
        check_consistent(repo, policy)
    finally:
        repo.close()
