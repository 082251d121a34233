"""The review workflow's storage on SQLite and on PostgreSQL: queue, leases, decisions, credit,
dispositions, reports, appeals, re-registration, the chain, labels, and the migration."""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from servicekit import migrate, record, wait_for
from sqlalchemy import (
    Connection,
    Engine,
    Inspector,
    create_engine,
    event,
    func,
    insert,
    inspect,
    make_url,
    select,
    text,
)
from sqlalchemy.orm import Session

from eval.queue_scale import analyze
from service.heads import RISKS, Risk
from service.policy import Policy, load_policy
from service.record import Decision, Post, ScoreRecord
from service.review import chain, credit, protected, views
from service.review.appeals import AppealClosedError
from service.review.appeals import parse_cursor as appeal_cursor
from service.review.credit import parse_history_cursor
from service.review.items import (
    EARLIER,
    ConflictError,
    ForbiddenError,
    NotFoundError,
    QueueRequest,
    Shown,
    parse_cursor,
)
from service.review.registration import keyed
from service.settings import Settings
from service.spool import Spool
from service.storage import Pending, SqlRepository, idempotency_sql, open_repository, upgrade
from service.storage.console_sql import ConsoleReads
from service.storage.credit_steps import (
    active_kinds,
    appealed,
    apply_disposition,
    locked_account,
)
from service.storage.database import alembic_config, make_engine
from service.storage.item_steps import dormancy_brought
from service.storage.protected_steps import (
    art8_suspended,
    still_uncorrected,
    subject_blacklisted_by,
    subject_holds,
)
from service.storage.repository import Idempotency, IdempotencyMismatchError, Role
from service.storage.tables import (
    CreditEntry,
    IdempotentWrite,
    ReviewItem,
    StoredAccount,
    StoredDisposition,
    StoredReport,
)
from service.storage.transaction import Tx, append_records

T0 = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
ACTIVE_INDEXES = ("ix_dispositions_account_lasting", "ix_dispositions_account_ending")
"""The indexes an account's active dispositions are read off."""


def flag(
    repo: SqlRepository,
    post_id: str,
    account: str | None = "acc1",
    decision: str = "review",
    text_: str = "帖子",
) -> int:
    """Store a flagged record of ``account`` and return its review item's id."""
    rec = record(post_id, decision).model_copy(update={"account_id": account})  # type: ignore[arg-type]
    repo.save_records([Pending(rec, True, text_)])
    (item,) = [
        i
        for i in repo.list_items(load_policy(Settings().policy_file), limit=1000).items
        if i.post_id == post_id
    ]
    return item.id


def coordinated_batch(
    repo: SqlRepository,
    policy: Policy,
    merge_key: str,
    members: list[dict[str, str]],
    **fields: Any,
) -> views.Item:
    """Queue a coordinated batch of ``members`` (their posts' and accounts' ids) for review."""
    return repo.enqueue(
        policy,
        kind="cluster",
        merge_key=merge_key,
        head="coordination",
        severity="review",
        reach=len(members),
        evidence={"members": members},
        **fields,
    )


def verify(repo: SqlRepository) -> list[str]:
    return chain.verify(repo.audit_entries(), repo.audit_head())


def test_flagged_records_become_items_ordered_by_priority_with_filters_and_cursor(
    repo: SqlRepository, policy: Policy
) -> None:
    repo.put_account(policy, "big", name="大号", subject_id=None, followers=1_000)
    low = flag(repo, "p-low", "small")
    big = flag(repo, "p-big", "big")
    block = flag(repo, "p-block", "small", "block")
    page = repo.list_items(policy)
    assert [i.id for i in page.items] == [block, big, low]
    assert page.next is None
    first = repo.list_items(policy, limit=2)
    assert [i.id for i in first.items] == [block, big] and first.next
    urgency, _, last = first.next.rpartition("_")
    rest = repo.list_items(policy, limit=2, cursor=(float(urgency), int(last)))
    assert [i.id for i in rest.items] == [low]
    item = repo.get_item(policy, big)
    assert item.kind == "score" and item.reach == 1_000 and item.head is not None
    assert item.evidence is not None and item.evidence["record"]["id"] == "p-big"
    assert [i.id for i in repo.list_items(policy, head=item.head).items]
    assert repo.list_items(policy, head="coordination", kind="report").items == []
    repo.claim(policy, low, "r1")
    assert [i.id for i in repo.list_items(policy, assignee="r1").items] == [low]
    # once the lease ends the item is held to nobody, in the listing as on the item
    ended = datetime.now(UTC) + timedelta(seconds=policy.review.lease_s + 1)
    assert repo.list_items(policy, assignee="r1", now=ended).items == []
    assert repo.get_item(policy, low, now=ended).assignee is None
    assert repo.list_items(policy, status="confirmed").items == []
    with pytest.raises(NotFoundError):
        repo.get_item(policy, 999_999)


def test_a_lease_keeps_an_item_to_its_reviewer_until_it_expires(
    repo: SqlRepository, policy: Policy
) -> None:
    item = flag(repo, "p1")
    lease = repo.claim(policy, item, "r1", now=T0)
    assert lease.lease_until == T0 + timedelta(seconds=policy.review.lease_s)
    repo.claim(policy, item, "r1", now=T0 + HOUR / 60)  # renewing is fine
    with pytest.raises(ConflictError, match="claimed"):
        repo.claim(policy, item, "r2", now=T0 + HOUR / 30)
    with pytest.raises(ConflictError, match="claimed"):
        repo.decide(policy, item, "r2", "dismiss", None, None, now=T0 + HOUR / 30)
    later = T0 + timedelta(seconds=policy.review.lease_s + 120)
    assert repo.claim(policy, item, "r2", now=later).assignee == "r2"
    with pytest.raises(NotFoundError):
        repo.claim(policy, 424242, "r1")


def test_a_confirmation_deducts_credit_applies_dispositions_and_a_second_decision_conflicts(
    repo: SqlRepository, policy: Policy
) -> None:
    item = flag(repo, "p1", "acc1", "block")
    repo.claim(policy, item, "r1")
    decision = repo.decide(policy, item, "r1", "confirm", "rumor", "art18.6", "谣言")
    expected = round(policy.credit.deductions["rumor"] * policy.credit.severity["block"])
    assert decision.status == "confirmed"
    (change,) = decision.credits
    assert change.delta == -expected and change.policy_version == policy.version
    assert [d.kind for d in decision.dispositions] == ["warning"]
    assert decision.dispositions[0].decided_by == "r1" and decision.dispositions[0].basis
    with pytest.raises(ConflictError, match="decided already"):
        repo.decide(policy, item, "r1", "dismiss", None, None)
    account = repo.get_account(policy, "acc1")
    assert account.credit == policy.credit.initial - expected
    assert [d.kind for d in account.dispositions] == ["warning"]
    assert len(account.history) == 2
    assert verify(repo) == []
    kinds = [e.kind for e in repo.audit_entries()]
    assert kinds == [
        "score.flagged",
        "review.enqueued",
        "review.decision",
        "credit.change",
        "disposition.applied",
    ]
    with pytest.raises(NotFoundError):
        repo.get_account(policy, "nobody")


def test_repeated_violations_weigh_more_and_walk_down_the_ladder(
    repo: SqlRepository, policy: Policy
) -> None:
    deltas = []
    for n in range(4):
        item = flag(repo, f"p{n}", "acc1", "review")
        made = repo.decide(policy, item, "r1", "confirm", "rumor", "art18.6")
        deltas.append(made.credits[0].delta)
    assert deltas[0] > deltas[1] > deltas[2]
    account = repo.get_account(policy, "acc1")
    assert account.credit == max(policy.credit.floor, policy.credit.initial + sum(deltas))
    assert account.level == policy.credit.blacklist
    active = {d.kind for d in account.dispositions}
    assert {"warning", "limit_features", "close_account", "blacklist"} <= active


def test_one_post_is_one_open_item_whichever_source_comes_first(
    repo: SqlRepository, policy: Policy
) -> None:
    # a report before the post is flagged: the flagged record's item is the report's item
    early = repo.file_report(
        policy, post_id="p1", account_id="acc1", category="rumor", text_="假", reporter="k1"
    )
    item = flag(repo, "p1", "acc1", "block", text_="谣言正文")
    assert item == early.item_id
    shown = repo.get_item(policy, item)
    assert (shown.kind, shown.reports, shown.text) == ("score", 1, "谣言正文")
    assert shown.evidence is not None and shown.evidence["record"]["id"] == "p1"
    decided = repo.decide(policy, item, "r1", "confirm", "rumor", "art18.6")
    assert len(decided.credits) == 1
    assert repo.get_report(policy, early.id).status == "confirmed"
    # a bank match of a flagged post joins the post's item
    scored = flag(repo, "p2", "acc2")
    match = QueueRequest(
        kind="bank_match",
        merge_key="bank:r1:post:p2",
        head="rumor",
        severity="review",
        reach=0,
        evidence={"confirmed_rumor": "r1", "notice": "已辟谣"},
        post_id="p2",
        account_id="acc2",
        text="帖子",
    )
    assert repo.enqueue_requests(policy, [match, match]) == [scored, scored]
    assert [i.post_id for i in repo.list_items(policy).items].count("p2") == 1
    # a report on a stored post whose item was decided opens an item with the post's text
    repo.save_records(
        [
            Pending(
                record("p3").model_copy(update={"account_id": "acc3"}),
                True,
                "原文",
                Post(id="p3", text="原文", account_id="acc3"),
            )
        ]
    )
    (first,) = [i.id for i in repo.list_items(policy).items if i.post_id == "p3"]
    repo.decide(policy, first, "r1", "dismiss", None, None)
    later = repo.file_report(
        policy, post_id="p3", account_id=None, category="rumor", text_="还是假的", reporter="k1"
    )
    reopened = repo.get_item(policy, later.item_id)
    assert (reopened.kind, reopened.text, reopened.account_id) == ("report", "原文", "acc3")


def scored(post_id: str, policy_version: str, decision: Decision, *heads: Risk) -> ScoreRecord:
    """A record of ``post_id`` by acc1 under ``policy_version``, flagged on ``heads`` (the
    first scored highest)."""
    scores = {risk: 0.9 if heads and risk == heads[0] else 0.5 for risk in RISKS}
    flags = {risk: risk in heads for risk in RISKS}
    return record(post_id, decision).model_copy(
        update={
            "account_id": "acc1",
            "policy_version": policy_version,
            "scores": scores,
            "flags": flags,
        }
    )


def test_a_posts_new_record_joins_its_open_item_and_a_decided_item_stays_decided(
    repo: SqlRepository, policy: Policy
) -> None:
    """A re-score under a new policy (or by a new model) queues what it newly flags: the post's
    open item, escalated included, moves to the new record when it is as strict or stricter,
    reports and all, and stays on its record (spans, versions and all) when that one is
    stricter; a decided item is not reopened: the new record opens its own, naming it, unless
    it flags only what a confirmation of the post decided."""
    repo.save_records([Pending(scored("p1", "p1", "review", "incitement"), True, "帖子")])
    (item,) = [i.id for i in repo.list_items(policy).items]
    repo.file_report(
        policy, post_id="p1", account_id=None, category="rumor", text_="假", reporter="k1"
    )
    repo.decide(policy, item, "r1", "escalate", None, None)

    def rescore(version: str, decision: Decision, *heads: Risk) -> views.Item:
        new = scored("p1", version, decision, *heads)
        for _ in range(2):  # the same re-score again changes nothing
            repo.save_records([Pending(new, True, "帖子")])
        assert repo.list_items(policy, now=T0).items == []
        (joined,) = repo.list_items(policy, status="escalated", now=T0).items
        assert (joined.id, joined.reports) == (item, 1)
        return joined

    def shows(joined: views.Item, new: ScoreRecord) -> bool:
        """Whether the item shows ``new``: its record, spans and versions."""
        assert joined.evidence is not None
        shown = joined.policy_version, joined.evidence["record"]
        return shown == (new.policy_version, new.model_dump(mode="json"))

    same = rescore("p2", "review", "rumor", "incitement")
    assert (same.head, same.severity) == ("rumor", "review")
    assert shows(same, scored("p1", "p2", "review", "rumor", "incitement"))
    stricter = rescore("p3", "block", "incitement")
    assert shows(stricter, scored("p1", "p3", "block", "incitement"))
    assert (stricter.head, stricter.severity) == ("incitement", "block")
    assert stricter.priority > same.priority
    weaker = rescore("p4", "review", "rumor")
    # the item stays on the record that blocks it: its head, spans and versions are that one's
    assert (weaker.head, weaker.severity, weaker.priority) == (
        "incitement",
        "block",
        stricter.priority,
    )
    assert shows(weaker, scored("p1", "p3", "block", "incitement"))
    moves = [e.payload for e in repo.audit_entries() if e.kind == "review.rescored"]
    assert [(m["head"], m["severity"]) for m in moves] == [
        ("rumor", "review"),
        ("incitement", "block"),
        ("incitement", "block"),
    ]
    assert moves[2]["item_record"] == moves[2]["previous_record"] == moves[1]["record"]
    assert moves[2]["record"] != moves[2]["item_record"]
    dismissed = repo.decide(policy, item, "a1", "dismiss", None, None, role="admin")
    assert dismissed.status == "dismissed"
    repo.save_records([Pending(scored("p1", "p5", "review", "rumor"), True, "帖子")])
    (anew,) = repo.list_items(policy).items
    assert anew.id != item and (anew.head, anew.severity, anew.reports) == ("rumor", "review", 0)
    assert repo.get_item(policy, item).status == "dismissed"
    # a dismissal is judged anew, knowing it was made
    assert anew.evidence is not None
    assert (anew.evidence[EARLIER]["item_id"], anew.evidence[EARLIER]["status"]) == (
        item,
        "dismissed",
    )
    repo.decide(policy, anew.id, "r1", "confirm", "rumor", "art18.6")
    # the confirmed head again is no new case; another head beside it is, and its item is
    # about that head, though the confirmed one scores higher
    repo.save_records([Pending(scored("p1", "p6", "block", "rumor"), True, "帖子")])
    assert repo.list_items(policy).items == []
    repo.save_records([Pending(scored("p1", "p7", "review", "rumor", "incitement"), True, "帖子")])
    (other,) = repo.list_items(policy).items
    assert other.head == "incitement" and other.evidence is not None
    assert other.evidence[EARLIER]["item_id"] == anew.id
    enqueued = [e.payload for e in repo.audit_entries() if e.kind == "review.enqueued"]
    assert enqueued[-1]["after"] == anew.id
    assert verify(repo) == []


def test_a_decision_on_a_record_a_re_score_replaced_is_refused(
    repo: SqlRepository, policy: Policy
) -> None:
    """The reviewer read the item on one record; a re-score moved it to another while they
    held it. Their decision, sent with the record they read, is refused and changes nothing;
    sent with the record the item shows now, it is taken. A weaker re-score, which leaves the
    item on its record, refuses nothing; a decision that names no record is not checked."""
    repo.save_records([Pending(scored("p1", "p1", "review", "rumor"), True, "帖子")])
    (item,) = [i.id for i in repo.list_items(policy).items]
    repo.claim(policy, item, "r1")
    read = repo.get_item(policy, item).record_id
    assert read is not None
    repo.save_records([Pending(scored("p1", "p2", "block", "incitement"), True, "帖子")])
    now = repo.get_item(policy, item)
    assert now.record_id not in (None, read) and now.head == "incitement"
    with pytest.raises(
        ConflictError, match=f"shows score record {now.record_id} now, not the record_id"
    ):
        repo.decide(policy, item, "r1", "confirm", "rumor", "art18.6", shown=Shown(read))
    with pytest.raises(ConflictError, match=f"item {item} shows score record {now.record_id} now"):
        repo.decide(policy, item, "r1", "dismiss", None, None, shown=Shown(None))
    assert repo.get_item(policy, item).status == "open"
    assert repo.get_account(policy, "acc1").history == []
    repo.save_records([Pending(scored("p1", "p3", "review", "rumor"), True, "帖子")])
    assert repo.get_item(policy, item).record_id == now.record_id
    decided = repo.decide(
        policy, item, "r1", "confirm", "incitement", "art18.6", shown=Shown(now.record_id)
    )
    assert decided.status == "confirmed"
    unchecked = flag(repo, "p2")
    repo.save_records([Pending(scored("p2", "p2", "block", "rumor"), True, "帖子")])
    assert repo.decide(policy, unchecked, "r1", "dismiss", None, None).status == "dismissed"


def test_two_writers_queueing_one_post_at_once_open_one_item(
    postgres_url: str, policy: Policy
) -> None:
    """Two processes store records of one post under two policies at once: the one that looks
    for the post's open item while the other's is not yet committed waits for it on the key
    of the post's open item, and joins it."""
    upgrade(postgres_url)
    first, second = (open_repository(postgres_url, 10.0, policy.review) for _ in range(2))
    looked = threading.Event()

    @event.listens_for(second.engine, "before_cursor_execute")
    def opening(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        if statement.startswith("INSERT INTO review_queue"):
            looked.set()

    @event.listens_for(first.engine, "commit")
    def committing(_conn: object) -> None:
        # the first commits its item only once the second found none and opens its own
        looked.wait(timeout=30)

    threads = [
        threading.Thread(
            target=repo.save_records,
            args=([Pending(scored("p1", version, "review", "rumor"), True, "帖子")],),
        )
        for repo, version in ((first, "p1"), (second, "p2"))
    ]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        queued = first.list_items(policy).items
    finally:
        first.close()
        second.close()
    assert [(i.post_id, i.head) for i in queued] == [("p1", "rumor")]
    assert queued[0].evidence is not None
    assert queued[0].evidence["record"]["policy_version"] in {"p1", "p2"}


def test_dismissals_and_escalations(repo: SqlRepository, policy: Policy) -> None:
    item = flag(repo, "p1", text_="误报的正文")
    escalated = repo.decide(policy, item, "r1", "escalate", None, None)
    assert escalated.status == "escalated" and escalated.credits == []
    assert [i.id for i in repo.list_items(policy, status="escalated").items] == [item]
    # an escalation asks for someone senior: not escalated again, not held or decided by r1,
    # nor by another reviewer, but by an admin
    with pytest.raises(ConflictError, match="escalated already"):
        repo.decide(policy, item, "a1", "escalate", None, None, role="admin")
    with pytest.raises(ForbiddenError, match="other than the one who escalated"):
        repo.claim(policy, item, "r1")
    with pytest.raises(ForbiddenError, match="other than the one who escalated"):
        repo.decide(policy, item, "r1", "confirm", "rumor", "art18.6")
    with pytest.raises(ForbiddenError, match="by an admin"):
        repo.claim(policy, item, "r2")
    with pytest.raises(ForbiddenError, match="by an admin"):
        repo.decide(policy, item, "r2", "dismiss", None, None, role="reviewer")
    # an admin who escalated hands it to another admin alike
    with pytest.raises(ForbiddenError, match="other than the one who escalated"):
        repo.claim(policy, item, "r1", role="admin")
    # so the items a reviewer, or the escalator, may take leave it out, not another admin's
    takers: tuple[tuple[str, Role], ...] = (("r1", "reviewer"), ("r2", "reviewer"), ("r1", "admin"))
    for who, role in takers:
        free = repo.list_items(policy, status="escalated", free_for=who, role=role)
        assert free.items == [], (who, role)
    free = repo.list_items(policy, status="escalated", free_for="a1", role="admin")
    assert [i.id for i in free.items] == [item]
    assert repo.claim(policy, item, "a1", role="admin").assignee == "a1"
    # (a category given with a dismissal, which the API refuses, is not what was dismissed)
    dismissed = repo.decide(policy, item, "a1", "dismiss", "incitement", None, role="admin")
    assert dismissed.status == "dismissed"
    # a dismissal touches no credit
    assert repo.get_account(policy, "acc1").credit == policy.credit.initial
    # its label is the item's head's 0
    (label,) = repo.labels()
    assert label["label"] == 0 and label["text"] == "误报的正文" and label["head"] == "rumor"
    assert label["model_version"] == "sha256:m1" and label["policy_version"] == policy.version


def test_reports_merge_into_the_posts_open_item_and_raise_its_priority(
    repo: SqlRepository, policy: Policy
) -> None:
    item = flag(repo, "p1")
    before = repo.get_item(policy, item).priority
    report = repo.file_report(
        policy, post_id="p1", account_id=None, category="rumor", text_="假的", reporter="k1"
    )
    assert report.item_id == item and report.item_reports == 1 and report.status == "open"
    joined = repo.get_item(policy, item)
    assert joined.priority > before
    assert joined.deadline == report.deadline
    assert repo.get_item(policy, flag(repo, "p-unreported")).deadline is None
    alone = [
        repo.file_report(
            policy, post_id="p9", account_id="acc2", category="incitement", text_=t, reporter=k
        )
        for t, k in (("一", "k1"), ("二", "k2"))
    ]
    assert alone[0].item_id == alone[1].item_id != item
    shown = repo.get_item(policy, alone[0].item_id)
    assert shown.kind == "report" and shown.reports == 2 and shown.head == "incitement"
    by_account = repo.file_report(
        policy, post_id=None, account_id="acc3", category="rumor", text_="", reporter="k1"
    )
    repo.decide(policy, by_account.item_id, "r1", "confirm", "rumor", "art18.6")
    assert repo.get_report(policy, by_account.id).status == "confirmed"
    assert repo.get_account(policy, "acc3").credit < policy.credit.initial
    # the next report on that account opens a new item: the decided one is closed
    again = repo.file_report(
        policy, post_id=None, account_id="acc3", category="rumor", text_="", reporter="k1"
    )
    assert again.item_id != by_account.item_id
    assert verify(repo) == []


def test_a_report_on_a_decided_or_stored_post_is_charged_to_its_account(
    repo: SqlRepository, policy: Policy
) -> None:
    decided = flag(repo, "p1", account="acc7")
    repo.decide(policy, decided, "r1", "dismiss", None, None)
    late = repo.file_report(
        policy, post_id="p1", account_id=None, category="rumor", text_="", reporter="k1"
    )
    assert late.item_id != decided
    item = repo.get_item(policy, late.item_id)
    assert item.account_id == "acc7"
    repo.decide(policy, late.item_id, "r2", "confirm", "rumor", "art18.6")
    assert repo.get_account(policy, "acc7").credit < policy.credit.initial
    # stored without an item (not enqueued): its post names the account
    rec = record("p2").model_copy(update={"account_id": "acc8"})
    repo.save_records([Pending(rec, False, "正文", Post(id="p2", text="正文", account_id="acc8"))])
    stored = repo.file_report(
        policy, post_id="p2", account_id=None, category="rumor", text_="", reporter="k1"
    )
    assert repo.get_item(policy, stored.item_id).account_id == "acc8"
    unknown = repo.file_report(
        policy, post_id="never-seen", account_id=None, category="rumor", text_="", reporter="k1"
    )
    assert repo.get_item(policy, unknown.item_id).account_id is None


def test_a_report_after_a_dismissal_names_the_dismissed_item(
    repo: SqlRepository, policy: Policy
) -> None:
    """A post (or an account) reported after its item was dismissed gets a new item that names
    the dismissal under ``evidence["earlier"]``, its ``review.enqueued`` record saying
    ``after``, as a re-score's item does: its reviewer weighs the complaint knowing how the
    post was judged, and by whom."""
    dismissed = flag(repo, "p1", account="acc7")
    repo.decide(policy, dismissed, "r1", "dismiss", None, None, "不实举报", now=T0)
    late = repo.file_report(
        policy, post_id="p1", account_id=None, category="rumor", text_="", reporter="k1"
    )
    item = repo.get_item(policy, late.item_id)
    assert item.evidence is not None
    assert item.evidence[EARLIER] == {
        "item_id": dismissed,
        "status": "dismissed",
        "reviewer": "r1",
        "decided_at": T0.isoformat(),
        "reach": 0,
    }
    assert item.evidence["categories"] == {"rumor": 1}
    (enqueued,) = [
        e
        for e in repo.audit_entries()
        if e.kind == "review.enqueued" and e.subject == f"item:{item.id}"
    ]
    assert enqueued.payload["after"] == dismissed
    # an account's reports alike; a first report names nothing
    first = repo.file_report(
        policy, post_id=None, account_id="acc7", category="rumor", text_="", reporter="k1"
    )
    assert EARLIER not in (repo.get_item(policy, first.item_id).evidence or {})
    repo.decide(policy, first.item_id, "r2", "dismiss", None, None)
    again = repo.file_report(
        policy, post_id=None, account_id="acc7", category="rumor", text_="", reporter="k2"
    )
    evidence = repo.get_item(policy, again.item_id).evidence or {}
    assert evidence[EARLIER]["item_id"] == first.item_id
    assert verify(repo) == []


def test_idempotent_writes_happen_once(repo: SqlRepository, policy: Policy) -> None:
    key = Idempotency.of("k1", "retry-1", "report", {"post_id": "p1"})
    first = repo.file_report(
        policy, post_id="p1", account_id=None, category="rumor", text_="x", reporter="k1", idem=key
    )
    again = repo.file_report(
        policy, post_id="p1", account_id=None, category="rumor", text_="x", reporter="k1", idem=key
    )
    assert again == first and repo.get_item(policy, first.item_id).reports == 1
    other = Idempotency.of("k1", "retry-1", "report", {"post_id": "p2"})
    with pytest.raises(IdempotencyMismatchError):
        repo.file_report(
            policy,
            post_id="p2",
            account_id=None,
            category="rumor",
            text_="x",
            reporter="k1",
            idem=other,
        )
    item = flag(repo, "p5")
    decided_key = Idempotency.of("r1", "d-1", "decision", {})
    made = repo.decide(policy, item, "r1", "confirm", "rumor", "art18.6", idem=decided_key)
    assert repo.decide(policy, item, "r1", "confirm", "rumor", "art18.6", idem=decided_key) == made
    assert repo.get_account(policy, "acc1").credit == policy.credit.initial + made.credits[0].delta


def test_a_retry_sent_while_its_first_try_is_under_way_gets_the_first_answer(
    postgres_url: str, policy: Policy
) -> None:
    """A client that gives up on a keyed decision and sends it again while the first try is
    still under way (not yet committed) gets the first try's answer once it commits, not a 409
    saying that the item is decided already: the retry waits for the key before it reads the
    item. (SQLite has one writer at a time: the retry begins after the first try's commit.)"""
    upgrade(postgres_url)
    first, second = (open_repository(postgres_url, 10.0, policy.review) for _ in range(2))
    watcher = create_engine(postgres_url)
    item = flag(first, "p1")
    key = Idempotency.of("k1", "d-1", f"decision:{item}", {"action": "confirm"})
    committing, proceed = threading.Event(), threading.Event()

    @event.listens_for(first.engine, "commit")
    def held(_conn: object) -> None:
        if not committing.is_set():
            committing.set()
            proceed.wait(timeout=30)

    answers: dict[str, views.Decision | Exception] = {}

    def decide(name: str, repo: SqlRepository) -> None:
        try:
            answers[name] = repo.decide(policy, item, "r1", "confirm", "rumor", "art18.6", idem=key)
        except ConflictError as exc:
            answers[name] = exc

    threads = [
        threading.Thread(target=decide, args=("first", first)),
        threading.Thread(target=decide, args=("second", second)),
    ]
    waiting = text(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = :name "
        "AND wait_event_type = 'Lock'"
    )
    name = make_url(postgres_url).query["application_name"]
    try:
        threads[0].start()
        assert committing.wait(timeout=30), "the first try did not reach its commit"
        # the retry is sent while the first try holds the item, and waits for it
        threads[1].start()
        with watcher.connect() as connection:
            wait_for(lambda: connection.execute(waiting, {"name": name}).scalar_one() > 0)
        proceed.set()
        for thread in threads:
            thread.join()
        credit_now = first.get_account(policy, "acc1").credit
    finally:
        proceed.set()
        watcher.dispose()
        first.close()
        second.close()
    made = answers["first"]
    assert isinstance(made, views.Decision)
    assert answers["second"] == made
    assert credit_now == policy.credit.initial + made.credits[0].delta


def test_an_upheld_appeal_reverses_credit_and_lifts_dispositions_by_new_events(
    repo: SqlRepository, policy: Policy
) -> None:
    item = flag(repo, "p1", "acc1", "block")
    decided = repo.decide(policy, item, "r1", "confirm", "rumor", "art18.6", now=T0)
    appeal = repo.file_appeal(
        policy, account_id="acc1", item_id=item, reason="不是谣言", filed_by="k1", now=T0 + HOUR
    )
    assert appeal.deadline == T0 + HOUR + timedelta(days=policy.appeals.resolve_within_days)
    with pytest.raises(ConflictError, match="appealed already"):
        repo.file_appeal(
            policy, account_id="acc1", item_id=item, reason="再", filed_by="k1", now=T0 + HOUR
        )
    with pytest.raises(ForbiddenError):
        repo.decide_appeal(policy, appeal.id, "r1", "uphold", None, now=T0 + 2 * HOUR)
    upheld = repo.decide_appeal(policy, appeal.id, "r2", "uphold", "证据不足", now=T0 + 2 * HOUR)
    assert upheld.status == "upheld" and upheld.resolved_by == "r2"
    changes = [c for c in upheld.reversed if isinstance(c, views.CreditChange)]
    assert [c.delta for c in changes] == [-decided.credits[0].delta]
    account = repo.get_account(policy, "acc1", now=T0 + 3 * HOUR)
    assert account.credit == policy.credit.initial and account.dispositions == []
    # nothing was deleted: the deduction and the lifted warning are still in the history
    assert len(account.history) == 3
    with pytest.raises(ConflictError, match="resolved already"):
        repo.decide_appeal(policy, appeal.id, "r3", "reject", None)
    (label,) = repo.labels()
    assert label["label"] == 0 and label["appeal_upheld"]
    assert verify(repo) == []


def test_an_item_raised_past_a_pages_cursor_is_on_the_first_page_of_the_queue(
    repo: SqlRepository, policy: Policy
) -> None:
    """The queue is read in its order as it stands at each page: an item that reports raise
    past the cursor of the page read before ranks above it now, among the pages read, and is
    not on the pages after it; it is where a reviewer working the queue takes the next item
    from, the queue's first page (and the next free one, as the console finds it), at the top
    it rose to."""
    quiet = [flag(repo, f"p{n}", f"acc{n}") for n in range(4)]
    first = repo.list_items(policy, limit=2)
    assert first.next is not None
    below = [i.id for i in repo.list_items(policy, cursor=parse_cursor(first.next)).items]
    raised = below[-1]
    post = repo.get_item(policy, raised).post_id
    for by in ("k1", "k2", "k3"):
        repo.file_report(
            policy, post_id=post, account_id=None, category="rumor", text_="", reporter=by
        )
    rest = repo.list_items(policy, cursor=parse_cursor(first.next)).items
    assert [i.id for i in rest] == [i for i in below if i != raised]
    assert sorted([*(i.id for i in first.items), *(i.id for i in rest), raised]) == quiet
    assert repo.list_items(policy, limit=2).items[0].id == raised
    assert repo.list_items(policy, free_for="r1", limit=1).items[0].id == raised


def test_an_account_is_read_as_it_stood_at_one_moment_while_a_decision_commits(
    postgres_url: str, policy: Policy
) -> None:
    """An account's answer is read in several statements (its row, its history's credit
    changes and dispositions, its active ones): a confirmation committed between them is in
    all of them or in none, so that the credit shown is the one its history adds up to."""
    upgrade(postgres_url)
    reader, writer = (open_repository(postgres_url, 10.0, policy.review) for _ in range(2))
    first, second = flag(reader, "p1"), flag(reader, "p2")
    reader.decide(policy, first, "r1", "confirm", "rumor", "art18.6")
    decided: list[views.Decision] = []

    @event.listens_for(reader.engine, "before_cursor_execute")
    def between(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        # once the account's row is read, before its history is
        if "FROM credit_ledger" in statement and not decided:
            decided.append(writer.decide(policy, second, "r1", "confirm", "rumor", "art18.6"))

    try:
        account = reader.get_account(policy, "acc1")
    finally:
        event.remove(reader.engine, "before_cursor_execute", between)
        reader.close()
        writer.close()
    assert decided, "the second confirmation was not made during the read"
    changes = [e for e in account.history if isinstance(e, views.CreditChange)]
    assert account.credit == policy.credit.initial + sum(c.delta for c in changes)
    assert account.credit == changes[-1].credit


@pytest.mark.parametrize("order", ["oldest", "newest"])
def test_an_account_s_history_is_read_a_page_at_a_time_without_loss_or_duplication(
    repo: SqlRepository, policy: Policy, order: credit.HistoryOrder
) -> None:
    """An account's history (credit changes and dispositions, oldest first, or newest first
    as the exact reverse) comes ``limit`` at a time after the cursor of the page before: every
    entry once, in the order of the whole, a moment's credit changes before its dispositions
    (after them, newest first), and the active dispositions and credit on every page."""
    items = [flag(repo, f"p{n}", "acc1", "block") for n in range(4)]
    # two decisions a moment: each moment holds credit changes and dispositions of both
    for n, item in enumerate(items):
        repo.decide(policy, item, "r1", "confirm", "rumor", "art18.6", now=T0 + n // 2 * HOUR)
    appeal = repo.file_appeal(
        policy, account_id="acc1", item_id=items[0], reason="误判", filed_by="k1", now=T0 + HOUR
    )
    repo.decide_appeal(policy, appeal.id, "r2", "uphold", None, now=T0 + HOUR)
    now = T0 + 2 * HOUR
    with Session(repo.engine) as session:
        stored = sum(
            session.scalar(select(func.count()).where(table.account_id == "acc1")) or 0
            for table in (CreditEntry, StoredDisposition)
        )
    whole = repo.get_account(policy, "acc1", limit=1000, now=now)
    assert whole.next is None and len(whole.history) == stored
    newest = repo.get_account(policy, "acc1", limit=1000, order="newest", now=now)
    assert newest.history == whole.history[::-1]

    def place(entry: views.CreditChange | views.Disposition) -> tuple[datetime, int, int]:
        if isinstance(entry, views.CreditChange):
            return entry.at, 0, entry.id
        return entry.starts_at, 1, entry.id

    places = [place(h) for h in whole.history]
    assert places == sorted(places)
    # both kinds at one moment, so that a page's end falls between them
    assert any(
        {0, 1} <= {kind for at, kind, _ in places if at == moment} for moment in (T0, T0 + HOUR)
    )
    expected = whole.history if order == "oldest" else newest.history
    for limit in (1, 2, 3):
        paged: list[views.CreditChange | views.Disposition] = []
        cursor = None
        while True:
            page = repo.get_account(
                policy, "acc1", cursor=cursor, limit=limit, order=order, now=now
            )
            # no empty last page: a page that ends the history says so
            assert 1 <= len(page.history) <= limit
            assert (page.credit, page.dispositions) == (whole.credit, whole.dispositions)
            paged += page.history
            if page.next is None:
                break
            cursor = parse_history_cursor(page.next, order)
        assert paged == expected, limit


@pytest.mark.parametrize("order", ["oldest", "newest"])
def test_a_later_page_of_an_account_s_history_seeks_its_cursor_in_the_index(
    repo: SqlRepository, policy: Policy, order: credit.HistoryOrder
) -> None:
    """A page after a cursor starts reading each kind's index on the account at the cursor,
    whichever the order: the moment is in the index's condition, not a filter over the
    account's entries before it (after it, newest first), which a long history made every
    later page walk."""
    repo.put_account(policy, "acc1", followers=1, now=T0)
    common = {"account_id": "acc1", "policy_version": policy.version}
    with repo.engine.begin() as connection:
        connection.execute(
            insert(CreditEntry),
            [
                {**common, "delta": 0, "credit": 100, "level": "A", "reason": "restore",
                 "at": T0 + n * HOUR}
                for n in range(300)
            ],
        )  # fmt: skip
        connection.execute(
            insert(StoredDisposition),
            [
                {**common, "kind": "warning", "basis": "art19", "starts_at": T0 + n * HOUR,
                 "ends_at": T0, "decided_by": "r1"}
                for n in range(300)
            ],
        )  # fmt: skip
        analyze(connection)
    first = repo.get_account(policy, "acc1", limit=250, order=order, now=T0)
    with statements_run(repo.engine) as heard:
        later = repo.get_account(
            policy,
            "acc1",
            cursor=parse_history_cursor(first.next, order),
            limit=5,
            order=order,
            now=T0,
        )
    assert len(later.history) == 5
    reads = [
        (s, p) for s, p in heard if "ORDER BY" in s and ("credit_ledger" in s or "starts_at" in s)
    ]
    paged = [(s, p) for s, p in reads if "LIMIT" in s and "lifted_at IS NULL" not in s]
    assert len(paged) == 2, heard
    with repo.engine.begin() as connection:
        for statement, parameters in paged:
            if connection.dialect.name == "sqlite":
                plan = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)
                (said,) = [row[3] for row in plan if "SEARCH" in row[3]]
                # the index's range starts at the cursor's moment
                assert re.search(r"account_id=\? AND (at|starts_at)[<>]\?", said), said
                continue
            for scan in _index_scans(connection, statement, parameters):
                assert "ROW(" in scan["Index Cond"], scan
                # read from the cursor on: the page and the one after, no entry before it
                assert scan.get("Rows Removed by Filter", 0) == 0, scan
                assert scan["Actual Rows"] <= 6, scan


def test_an_account_s_active_dispositions_are_read_a_page_at_a_time(
    repo: SqlRepository, policy: Policy
) -> None:
    """The dispositions active on an account come ``limit`` at a time in the order they were
    applied (moment, then id), after the cursor of the page before, as the account's history
    does: every active one once, none ended or lifted; the account's own answer holds the
    first page and its cursor. An account known without a row has none; one never seen 404."""
    repo.put_account(policy, "acc1", followers=1, now=T0)
    common = {
        "account_id": "acc1",
        "policy_version": policy.version,
        "decided_by": "r1",
        "lifted_at": None,
    }
    later = T0 + 5 * HOUR
    rows: list[dict[str, Any]] = [
        # two at one moment, so that a page may end between them
        {**common, "kind": "warning", "basis": "art19", "starts_at": T0, "ends_at": None},
        {**common, "kind": "limit_features", "basis": "art19", "starts_at": T0, "ends_at": None},
        {**common, "kind": "warning", "basis": "art19", "starts_at": T0 + HOUR, "ends_at": T0},
        {**common, "kind": "suspend_updates", "basis": "art19", "starts_at": T0 + HOUR,
         "ends_at": later + HOUR},
        {**common, "kind": "warning", "basis": "art8", "starts_at": T0 + 2 * HOUR,
         "ends_at": None, "lifted_at": T0 + 3 * HOUR},
        {**common, "kind": "close_account", "basis": "art19", "starts_at": T0 + 2 * HOUR,
         "ends_at": None},
    ]  # fmt: skip
    with repo.engine.begin() as connection:
        connection.execute(insert(StoredDisposition), rows)
    whole = repo.account_dispositions("acc1", limit=1000, now=later)
    assert whole.next is None
    assert [(d.kind, d.starts_at) for d in whole.dispositions] == [
        ("warning", T0),
        ("limit_features", T0),
        ("suspend_updates", T0 + HOUR),
        ("close_account", T0 + 2 * HOUR),
    ]
    for limit in (1, 2, 3):
        paged: list[views.Disposition] = []
        cursor = None
        while True:
            page = repo.account_dispositions("acc1", cursor=cursor, limit=limit, now=later)
            assert 1 <= len(page.dispositions) <= limit
            paged += page.dispositions
            if page.next is None:
                break
            cursor = appeal_cursor(page.next)
        assert paged == whole.dispositions, limit
    account = repo.get_account(policy, "acc1", active_limit=3, now=later)
    assert account.dispositions == whole.dispositions[:3]
    rest = repo.account_dispositions("acc1", cursor=appeal_cursor(account.dispositions_next))
    assert rest.dispositions == whole.dispositions[3:]
    assert repo.get_account(policy, "acc1", now=later).dispositions_next is None
    flag(repo, "p1", "known")
    assert repo.account_dispositions("known") == views.DispositionPage(dispositions=[])
    with pytest.raises(NotFoundError):
        repo.account_dispositions("nobody")


def test_an_account_s_active_dispositions_are_read_off_the_active_ones_alone(
    repo: SqlRepository, policy: Policy
) -> None:
    """The dispositions active on an account are read off indexes that hold the ones not
    lifted, the lasting ones (no end) in the order they were applied and the others by their
    end, from ``now`` on: not along every disposition the account was ever given, ended and
    lifted ones filtered out row by row, which an account's history grows without bound."""
    repo.put_account(policy, "acc1", followers=1, now=T0)
    common = {"account_id": "acc1", "policy_version": policy.version, "decided_by": "r1"}
    now = T0 + 1000 * HOUR
    ended = [
        {**common, "kind": "warning", "basis": "art19", "starts_at": T0 + n * HOUR,
         "ends_at": T0 + (n + 1) * HOUR, "lifted_at": None}
        for n in range(300)
    ]  # fmt: skip
    lifted = [
        {**common, "kind": "limit_features", "basis": "art19", "starts_at": T0 + n * HOUR,
         "ends_at": None, "lifted_at": T0 + (n + 1) * HOUR}
        for n in range(300, 400)
    ]  # fmt: skip
    active = [
        {**common, "kind": "suspend_updates", "basis": "art19", "starts_at": T0 + n * HOUR,
         "ends_at": None if n % 2 else now + n * HOUR, "lifted_at": None}
        for n in range(400, 406)
    ]  # fmt: skip
    with repo.engine.begin() as connection:
        connection.execute(insert(StoredDisposition), ended + lifted + active)
        analyze(connection)
    paged: list[views.Disposition] = []
    cursor = None
    with statements_run(repo.engine) as heard:
        while True:
            page = repo.account_dispositions("acc1", cursor=cursor, limit=2, now=now)
            paged += page.dispositions
            if page.next is None:
                break
            cursor = appeal_cursor(page.next)
    assert [d.starts_at for d in paged] == [row["starts_at"] for row in active]
    reads = [(s, p) for s, p in heard if "lifted_at IS NULL" in s]
    _read_off(repo, reads, ACTIVE_INDEXES, len(active))


def test_a_write_reads_the_account_s_active_dispositions_off_the_active_ones_alone(
    repo: SqlRepository, policy: Policy
) -> None:
    """A decision's, a name correction's, a return's and an upheld appeal's reads of the
    dispositions active on the account (their kinds, the art8 suspensions, what a dormancy
    brought, what the standing reached), run holding the account's lock, are read off the
    indexes of the ones not lifted as the account's page reads them, not along every
    disposition the account was ever given: they find the active ones of each and read none of
    the ended or lifted ones. The appeal's item's own, ended ones too, are read off the index
    by item."""
    repo.put_account(policy, "acc1", followers=1, now=T0)
    common = {"account_id": "acc1", "policy_version": policy.version, "decided_by": "r1"}
    row = {"policy_version": policy.version, "decision": "review", "severity": "review"}
    items = [
        {**row, "id": n, "kind": kind, "urgency": 1.0, "enqueued_at": T0, "status": "confirmed",
         "account_id": "acc1"}
        for n, kind in [(1, "impersonation"), (2, "dormant"), (3, "score"), (4, "score")]
    ]  # fmt: skip
    now = T0 + 1000 * HOUR
    # each of the kinds the reads look for, applied on the items they look for, ended or lifted
    kinds = [("suspend_service", 1), ("dormancy_notice", None), ("suspend_dormant", 2),
             ("limit_features", 4)]  # fmt: skip
    gone = [
        {**common, "kind": kind, "basis": "art19", "item_id": item, "starts_at": T0 + n * HOUR,
         "ends_at": T0 + (n + 1) * HOUR if n < 300 else None, "standing": True,
         "lifted_at": None if n < 300 else T0 + (n + 1) * HOUR}
        for n in range(400)
        for kind, item in [kinds[n % len(kinds)]]
    ]  # fmt: skip
    active = [
        {**common, "kind": kind, "basis": "art19", "item_id": item, "starts_at": T0 + n * HOUR,
         "ends_at": ends, "standing": item == 4, "lifted_at": None}
        for n, kind, item, ends in [
            (400, "suspend_service", 1, now + HOUR),
            (401, "dormancy_notice", None, None),
            (402, "suspend_dormant", 2, now + HOUR),
            (403, "warning", 3, None),
            (404, "limit_features", 4, now + HOUR),
        ]
    ]  # fmt: skip
    # the appealed item's own: ended, and not lifted, an appeal lifts them too
    own = [
        {**common, "kind": "stop_advertising", "basis": "art19", "item_id": 3,
         "starts_at": T0 + n * HOUR, "ends_at": T0 + (n + 1) * HOUR, "standing": False,
         "lifted_at": None}
        for n in range(2)
    ]  # fmt: skip
    with repo.engine.begin() as connection:
        connection.execute(insert(ReviewItem), items)
        connection.execute(insert(StoredDisposition), gone + own + active)
        analyze(connection)
    with statements_run(repo.engine) as heard, Session(repo.engine) as session:
        tx = Tx(session, now, policy)
        kinds_found = active_kinds(tx, "acc1")
        suspended = [(r.kind, r.item_id) for r in art8_suspended(tx, "acc1")]
        brought = [(r.kind, r.item_id) for r in dormancy_brought(tx, "acc1")]
        lifted = [(r.kind, r.item_id) for r in appealed(tx, "acc1", 3, ["limit_features"])]
    assert kinds_found == {
        "suspend_service", "dormancy_notice", "suspend_dormant", "warning", "limit_features"
    }  # fmt: skip
    assert suspended == [("suspend_service", 1)]
    assert brought == [("dormancy_notice", None), ("suspend_dormant", 2)]
    assert lifted == [("stop_advertising", 3)] * 2 + [("warning", 3), ("limit_features", 4)]
    reads = [(s, p) for s, p in heard if "lifted_at IS NULL" in s]
    # the active ones' reads say their end, the item's does not
    by_end = [(s, p) for s, p in reads if "ends_at" in s.split("WHERE", 1)[1]]
    _read_off(repo, by_end, ACTIVE_INDEXES, len(active))
    _read_off(repo, [r for r in reads if r not in by_end], ("ix_dispositions_item_account",), 3)


OTHERS = 2000
"""The platform's blacklisted and closed accounts in the test below: enough that PostgreSQL
reads a subject's accounts' dispositions one account at a time, as it does at scale, rather
than the few of them all at once."""


def test_a_lifted_close_s_art8_suspension_and_a_subject_s_accounts_are_read_off_indexes(
    repo: SqlRepository, policy: Policy
) -> None:
    """The settled art8 suspension that a close lifted by an upheld appeal stood in for is read
    off the account's impersonation items and the index by item, and a subject's blacklisted
    and counted accounts off each of its accounts' active dispositions: none of them reads the
    account's history of ended and lifted ones, nor the platform's blacklisted and closed
    accounts. What each finds: a blacklist or close active (without an end, or ending later)
    refuses the subject or leaves the account uncounted; an ended or lifted one does not."""
    common = {"policy_version": policy.version, "decided_by": "r1", "basis": "art19",
              "item_id": None, "settled_at": None, "lifted_at": None}  # fmt: skip
    digests = {"acc1": "d1", "acc2": "d1", "acc3": "d1"} | {f"o{n}": f"x{n}" for n in range(OTHERS)}
    accounts = [
        {"account_id": account_id, "subject_digest": digest, "credit": policy.credit.initial,
         "level": "A", "followers": 0, "clean_since": T0, "policy_version": policy.version}
        for account_id, digest in digests.items()
    ]  # fmt: skip
    now = T0 + 1000 * HOUR
    row = {"account_id": "acc1", "status": "confirmed", "policy_version": policy.version,
           "decision": "review", "severity": "review", "urgency": 1.0,
           "enqueued_at": T0}  # fmt: skip
    # the impersonation item, and the items acc1's history was applied on
    items = [{**row, "id": 1, "kind": "impersonation", "merge_key": protected.merge_key("acc1")}]
    items += [{**row, "id": n, "kind": "score", "merge_key": f"post:p{n}"} for n in range(2, 102)]
    settled = {**common, "account_id": "acc1", "kind": "suspend_service", "basis": "art8",
               "item_id": 1, "starts_at": T0, "ends_at": T0 + 360 * HOUR,
               "settled_at": T0 + 360 * HOUR}  # fmt: skip
    # acc1's history: each kind the reads look for, ended or lifted
    kinds = ["suspend_service", "blacklist", "close_account", "ban_reregistration"]
    gone = [
        {**common, "account_id": "acc1", "kind": kinds[n % len(kinds)], "starts_at": T0,
         "item_id": 2 + n % 100, "ends_at": T0 + n * HOUR if n % 2 else None,
         "lifted_at": None if n % 2 else T0 + HOUR}
        for n in range(1, 400)
    ]  # fmt: skip
    active = [
        {**common, "account_id": account_id, "kind": kind, "starts_at": T0, "ends_at": ends}
        for account_id, kind, ends in [
            ("acc2", "blacklist", None),
            ("acc2", "close_account", now + HOUR),
            ("acc3", "ban_reregistration", now + HOUR),
        ]
    ]
    # the platform's blacklisted and closed accounts
    others = [
        {**common, "account_id": f"o{n}", "kind": kind, "starts_at": T0, "ends_at": None}
        for n in range(OTHERS)
        for kind in ("blacklist", "close_account")
    ]
    with repo.engine.begin() as connection:
        connection.execute(insert(StoredAccount), accounts)
        connection.execute(insert(ReviewItem), items)
        connection.execute(insert(StoredDisposition), [settled, *gone, *active, *others])
        analyze(connection)
    close = views.Disposition(
        id=0, account_id="acc1", kind=protected.termination(policy).kind, basis="art19",
        item_id=None, starts_at=T0 + HOUR, ends_at=None, decided_by="r1",
        policy_version=policy.version, lifted_at=now, lifted_by="r2", active=False,
    )  # fmt: skip
    with statements_run(repo.engine) as heard, Session(repo.engine) as session:
        # acc1 holds no name: the suspension is found, and nothing is terminated
        assert still_uncorrected(Tx(session, now, policy), "acc1", [close]) == []
        refusing = subject_blacklisted_by(session, policy, {"d1"}, now)
        counted = subject_holds(session, policy, {"d1"}, now)
        others_counted = subject_holds(session, policy, {"d1"}, now, other_than="acc1")
        # past the ends of acc2's close and acc3's ban
        later = subject_blacklisted_by(session, policy, {"d1"}, now + 2 * HOUR)
        counted_later = subject_holds(session, policy, {"d1"}, now + 2 * HOUR)
        session.rollback()
    assert (refusing, counted, others_counted) == (["acc2", "acc3"], 2, 1)
    assert (later, counted_later) == (["acc2"], 3)
    found = [(s, p) for s, p in heard if "settled_at IS NOT NULL" in s]
    _read_off(repo, found, ("ix_dispositions_item_account",), 1)
    subjects = [(s, p) for s, p in heard if "subject_digest IN" in s]
    assert len(subjects) == 5
    _read_off(repo, subjects, ACTIVE_INDEXES, 3)


def test_the_account_replay_reads_each_page_of_records_off_their_subject_index(
    repo: SqlRepository, policy: Policy
) -> None:
    """Each page of ``audit verify``'s accounts reads the records of its accounts and the next
    one's, off ``ix_audit_records_subject`` from where the page before ended, and its accounts
    off their key in code point order (on PostgreSQL ``ix_accounts_code_points``, as the
    primary key is in the database's collation): every record or account, read again on each
    page, made the walk's cost grow with the square of the accounts."""
    for i in range(8):
        repo.put_account(policy, f"acc{i}", followers=i)
        repo.put_account(policy, f"acc{i}", followers=i + 10)
    per_account = Counter(e.subject for e in repo.audit_entries())
    with statements_run(repo.engine) as heard:
        assert len(list(repo.replayed_accounts(chunk=2))) == 8
    pages = [(s, p) for s, p in heard if "last_records" in s]
    logins = [(s, p) for s, p in heard if "last_records" not in s and "last_login_at" in str(p)]
    rows = [(s, p) for s, p in heard if "FROM accounts" in s and "audit_records" not in s]
    assert (len(pages), len(logins), len(rows)) == (5, 5, 5), heard
    with repo.engine.begin() as connection:
        # the first page's reads start at the first record, as the one query did
        for statement, parameters in pages[1:] + logins[1:]:
            if connection.dialect.name == "sqlite":
                plan = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)
                said = [row[3] for row in plan if " audit_records " in f"{row[3]} "]
                assert len(said) == 1 and said[0].startswith(
                    "SEARCH audit_records USING INDEX ix_audit_records_subject (subject>?"
                ), (said, statement)
                continue
            # as _index_scans' own: on a table this small the planner would group it whole
            connection.exec_driver_sql("SET LOCAL enable_hashagg = off")
            (scan,) = [
                scan
                for scan in _index_scans(connection, statement, parameters)
                if scan["Index Name"] == "ix_audit_records_subject"
            ]
            read = scan["Actual Rows"] + scan.get("Rows Removed by Filter", 0)
            assert read <= 3 * max(per_account.values()), scan
        for statement, parameters in rows[1:]:
            if connection.dialect.name == "sqlite":
                plan = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)
                (said,) = [row[3] for row in plan if " accounts " in f"{row[3]} "]
                assert said.startswith("SEARCH accounts USING") and "(account_id>?)" in said, said
                continue
            (scan,) = _index_scans(connection, statement, parameters)
            assert scan["Index Name"] == "ix_accounts_code_points", scan
            # the page's two, and none but them
            assert scan["Actual Rows"] + scan.get("Rows Removed by Filter", 0) <= 2, scan


@contextmanager
def statements_run(engine: Engine) -> Iterator[list[tuple[str, Any]]]:
    """The statements ``engine`` runs while open, each with its parameters; not the ``BEGIN``
    that starts a read snapshot on SQLite, which reads nothing."""
    heard: list[tuple[str, Any]] = []

    def hear(_conn: object, _cursor: object, statement: str, parameters: Any, *_: Any) -> None:
        if statement != "BEGIN":
            heard.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", hear)
    try:
        yield heard
    finally:
        event.remove(engine, "before_cursor_execute", hear)


def _read_off(
    repo: SqlRepository, reads: list[tuple[str, Any]], indexes: tuple[str, ...], most: int
) -> None:
    """Each of ``reads`` (statements and their parameters) reads dispositions off one of
    ``indexes``, its scans reading ``most`` rows at most."""
    assert reads
    with repo.engine.begin() as connection:
        for statement, parameters in reads:
            if connection.dialect.name == "sqlite":
                plan = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)
                said = [row[3] for row in plan if "dispositions" in row[3]]
                assert said and all(
                    re.search(rf"USING INDEX ({'|'.join(indexes)}) ", s) for s in said
                ), (said, statement)
                continue
            for scan in _index_scans(connection, statement, parameters):
                if scan["Relation Name"] == "dispositions":
                    assert scan["Index Name"] in indexes, (scan, statement)
                # none of the account's history of ended or lifted ones
                read = scan["Actual Rows"] + scan.get("Rows Removed by Filter", 0)
                assert read <= most, scan


def _index_scans(connection: Connection, statement: str, parameters: Any) -> list[dict[str, Any]]:
    """The index scans of ``statement``'s plan on PostgreSQL, run under ``EXPLAIN ANALYZE``
    (at least one). On tables this small the planner would read them whole: it is asked what
    the indexes can do."""
    connection.exec_driver_sql("SET LOCAL enable_seqscan = off")
    connection.exec_driver_sql("SET LOCAL enable_bitmapscan = off")
    (plan,) = connection.exec_driver_sql(
        f"EXPLAIN (ANALYZE, FORMAT JSON) {statement}", parameters
    ).one()
    scans = list(_nodes(plan[0]["Plan"], "Index Scan"))
    assert scans, plan
    return scans


def _nodes(plan: dict[str, Any], kind: str) -> Iterator[dict[str, Any]]:
    """The nodes of an ``EXPLAIN (FORMAT JSON)`` plan of ``kind``."""
    if plan["Node Type"] == kind:
        yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child, kind)


def test_the_disposition_feed_gives_each_change_once_in_commit_order_a_page_at_a_time(
    repo: SqlRepository, policy: Policy
) -> None:
    empty = repo.disposition_changes()
    assert (empty.changes, empty.next) == ([], 0)
    item = flag(repo, "p1", "acc1", "block")
    decided = repo.decide(policy, item, "r1", "confirm", "rumor", "art18.6", now=T0)
    appeal = repo.file_appeal(
        policy, account_id="acc1", item_id=item, reason="误判", filed_by="k1", now=T0 + HOUR
    )
    repo.decide_appeal(policy, appeal.id, "r2", "uphold", None, now=T0 + 2 * HOUR)
    repo.put_account(policy, "acc1", followers=10, now=T0 + 3 * HOUR)
    paged: list[views.DispositionChange] = []
    after = 0
    while True:
        page = repo.disposition_changes(after, limit=1)
        paged += page.changes
        if not page.changes:
            break
        assert page.next == page.changes[-1].seq
        after = page.next
    head, _ = repo.audit_head()
    # the last page read up to the chain's end, past the records of other kinds
    assert page.next == head > paged[-1].seq
    whole = repo.disposition_changes()
    assert whole.changes == paged and whole.next == head
    applied, lifted = paged
    assert applied.seq < lifted.seq
    assert (applied.change, applied.at, applied.appeal_id) == ("applied", T0, None)
    # as it was applied, though lifted since; then as the appeal left it
    assert applied.disposition == decided.dispositions[0]
    assert applied.disposition.active and applied.disposition.lifted_at is None
    assert (lifted.change, lifted.at, lifted.appeal_id) == ("lifted", T0 + 2 * HOUR, appeal.id)
    (shown,) = [
        h
        for h in repo.get_account(policy, "acc1", now=T0 + 3 * HOUR).history
        if isinstance(h, views.Disposition)
    ]
    assert lifted.disposition == shown
    assert (shown.account_id, shown.item_id, shown.lifted_by) == ("acc1", item, "r2")
    assert repo.disposition_changes(head).changes == []
    with pytest.raises(ValueError, match=f"past the audit chain's last record \\({head}\\)"):
        repo.disposition_changes(head + 1)


def test_a_disposition_committed_after_a_higher_numbered_one_is_not_skipped(
    postgres_url: str, policy: Policy
) -> None:
    """Two decisions at once on PostgreSQL: one numbers its disposition, another numbers the
    next and commits first. A feed over the table's ids that gave the second would never give
    the first; the chain numbers changes as they commit."""
    upgrade(postgres_url)
    repo = open_repository(postgres_url, 5.0, policy.review)
    engine = make_engine(postgres_url, 5.0)
    try:
        first, second = flag(repo, "p1", "acc1"), flag(repo, "p2", "acc2")
        with Session(engine) as slow, Session(engine) as quick:
            late = Tx(slow, T0, policy)
            locked_account(late, "acc1")
            numbered = apply_disposition(late, "acc1", "warning", "art19", first, None, "r1")
            early = Tx(quick, T0, policy)
            locked_account(early, "acc2")
            committed = apply_disposition(early, "acc2", "warning", "art19", second, None, "r1")
            append_records(quick, early.now, early.log)
            quick.commit()
            assert numbered.id < committed.id
            page = repo.disposition_changes()
            assert [c.disposition.id for c in page.changes] == [committed.id]
            append_records(slow, late.now, late.log)
            slow.commit()
        with engine.connect() as connection:
            after_ids = select(StoredDisposition.id).where(StoredDisposition.id > committed.id)
            assert connection.scalars(after_ids).all() == []
        rest = repo.disposition_changes(page.next)
        assert [c.disposition.id for c in rest.changes] == [numbered.id]
        assert rest.changes[0].seq > page.next
        assert verify(repo) == []
    finally:
        engine.dispose()
        repo.close()


def test_a_reversal_stops_at_the_initial_credit_and_keeps_what_other_violations_call_for(
    repo: SqlRepository, policy: Policy
) -> None:
    rules = policy.credit
    first = flag(repo, "p1", "acc1", "block")
    deducted = repo.decide(policy, first, "r1", "confirm", "rumor", "art18.6", now=T0)
    appeal = repo.file_appeal(
        policy, account_id="acc1", item_id=first, reason="误判", filed_by="k1", now=T0 + HOUR
    )
    # clean periods give points back while the appeal waits
    waited = T0 + timedelta(days=2 * rules.restore_every_days + 1)
    repo.restore_credit(policy, now=waited)
    restored = repo.get_account(policy, "acc1", now=waited).credit
    assert restored > rules.initial + deducted.credits[0].delta
    upheld = repo.decide_appeal(policy, appeal.id, "r2", "uphold", None, now=waited)
    (change,) = [c for c in upheld.reversed if isinstance(c, views.CreditChange)]
    assert change.delta == rules.initial - restored
    assert repo.get_account(policy, "acc1", now=waited).credit == rules.initial

    # two standing violations: upholding the appeal on the one that applied the warning keeps
    # the warning, now resting on the other and running from it, as without the first
    warned = flag(repo, "q1", "acc2", "block")
    repo.decide(policy, warned, "r1", "confirm", "rumor", "art18.6", now=T0)
    other = flag(repo, "q2", "acc2", "block")
    repo.decide(policy, other, "r1", "confirm", "rumor", "art18.6", now=T0 + HOUR)
    (warning,) = [
        d
        for d in repo.get_account(policy, "acc2", now=T0 + HOUR).dispositions
        if d.kind == "warning"
    ]
    assert warning.item_id == warned
    appeal = repo.file_appeal(
        policy, account_id="acc2", item_id=warned, reason="误判", filed_by="k1", now=T0 + HOUR
    )
    repo.decide_appeal(policy, appeal.id, "r2", "uphold", None, now=T0 + 2 * HOUR)
    (kept,) = [
        d
        for d in repo.get_account(policy, "acc2", now=T0 + 2 * HOUR).dispositions
        if d.kind == "warning"
    ]
    assert warning.ends_at is not None
    assert (kept.item_id, kept.ends_at) == (other, warning.ends_at + HOUR)
    # upholding the other appeal too leaves nothing standing
    appeal = repo.file_appeal(
        policy, account_id="acc2", item_id=other, reason="误判", filed_by="k1", now=T0 + 3 * HOUR
    )
    repo.decide_appeal(policy, appeal.id, "r2", "uphold", None, now=T0 + 4 * HOUR)
    account = repo.get_account(policy, "acc2", now=T0 + 4 * HOUR)
    assert account.dispositions == [] and account.credit == rules.initial
    assert verify(repo) == []


def test_appeals_out_of_window_overdue_and_bad_targets(repo: SqlRepository, policy: Policy) -> None:
    item = flag(repo, "p1", "acc1")
    other = flag(repo, "p2", "acc1")
    repo.decide(policy, item, "r1", "confirm", "incitement", "art18.5", now=T0)
    repo.decide(policy, other, "r1", "confirm", "incitement", "art18.5", now=T0)
    late = T0 + timedelta(days=policy.appeals.file_within_days, hours=1)
    with pytest.raises(AppealClosedError) as closed:
        repo.file_appeal(
            policy, account_id="acc1", item_id=item, reason="r", filed_by="k", now=late
        )
    assert closed.value.deadline == T0 + timedelta(days=policy.appeals.file_within_days)
    with pytest.raises(NotFoundError):
        repo.file_appeal(policy, account_id="acc1", item_id=99999, reason="r", filed_by="k")
    with pytest.raises(NotFoundError):
        repo.file_appeal(policy, account_id="ghost", item_id=item, reason="r", filed_by="k")
    open_item = flag(repo, "p3", "acc1")
    with pytest.raises(ConflictError, match="not a confirmed violation"):
        repo.file_appeal(policy, account_id="acc1", item_id=open_item, reason="r", filed_by="k")
    repo.file_appeal(policy, account_id="acc1", item_id=item, reason="r", filed_by="k", now=T0)
    repo.file_appeal(policy, account_id="acc1", item_id=other, reason="r", filed_by="k", now=T0)
    after = T0 + timedelta(days=policy.appeals.resolve_within_days, hours=1)
    page = repo.list_appeals(now=after)
    assert page.overdue == 2 and all(a.overdue for a in page.appeals)
    first = page.appeals[0].id
    repo.decide_appeal(policy, first, "r2", "reject", None, now=after)
    assert repo.list_appeals(now=after).overdue == 1
    assert [a.id for a in repo.list_appeals(overdue_only=True, now=after).appeals] != [first]
    # a rejection reverses nothing
    assert repo.get_account(policy, "acc1").credit < policy.credit.initial


def test_pending_appeals_are_found_past_any_number_of_resolved_ones(
    repo: SqlRepository, policy: Policy
) -> None:
    filed = []
    for n in range(5):
        item = flag(repo, f"p{n}", f"acc{n}")
        repo.decide(policy, item, "r1", "confirm", "incitement", "art18.5", now=T0)
        at = T0 + timedelta(minutes=n)  # deadlines in filing order
        filed.append(
            repo.file_appeal(
                policy, account_id=f"acc{n}", item_id=item, reason="r", filed_by="k", now=at
            ).id
        )
    for appeal_id in filed[:3]:
        repo.decide_appeal(policy, appeal_id, "r2", "reject", None, now=T0 + HOUR)
    page = repo.list_appeals(status="pending", now=T0 + HOUR)
    assert [a.id for a in page.appeals] == filed[3:] and page.pending == 2
    assert page.next is None
    # two at a time, every appeal once, in deadline order
    seen, cursor = [], None
    while True:
        page = repo.list_appeals(limit=2, cursor=cursor, now=T0 + HOUR)
        seen += [a.id for a in page.appeals]
        if page.next is None:
            break
        urgency, _, last = page.next.rpartition("_")
        cursor = (float(urgency), int(last))
    assert seen == filed and page.pending == 2
    assert [a.id for a in repo.list_appeals(status="rejected", now=T0).appeals] == filed[:3]


def test_an_appeals_page_and_its_counts_are_read_at_one_moment_while_a_decision_commits(
    repo: SqlRepository, policy: Policy
) -> None:
    """An appeal decided from another connection between the page's read and the counts' is
    in neither: the page shows it pending and the counts count it pending, or neither does."""
    filed = []
    for n in range(2):
        item = flag(repo, f"p{n}", f"acc{n}")
        repo.decide(policy, item, "r1", "confirm", "incitement", "art18.5", now=T0)
        filed.append(
            repo.file_appeal(
                policy, account_id=f"acc{n}", item_id=item, reason="r", filed_by="k", now=T0
            ).id
        )
    decided = threading.Event()

    def deciding(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        # the counts are the listing's second statement
        if "count(" in statement and not decided.is_set():
            decided.set()
            repo.decide_appeal(policy, filed[0], "r2", "reject", None, now=T0 + HOUR)

    event.listen(repo.engine, "before_cursor_execute", deciding)
    try:
        page = repo.list_appeals(now=T0 + HOUR)
    finally:
        event.remove(repo.engine, "before_cursor_execute", deciding)
    assert decided.is_set()
    shown = [a.status for a in page.appeals]
    assert (page.pending, shown.count("pending")) == (2, 2)
    # the decision did commit: the next listing sees it
    assert repo.list_appeals(now=T0 + HOUR).pending == 1


def test_the_console_s_reports_page_and_its_counts_are_read_at_one_moment_while_one_closes(
    repo: SqlRepository, policy: Policy
) -> None:
    """A reported item dismissed from another connection between the page's read and the
    counts' is open in both or in neither."""
    items = [
        repo.file_report(
            policy, post_id=f"p{n}", account_id=None, category="rumor", text_="假的", reporter="k"
        ).item_id
        for n in range(2)
    ]
    dismissed = threading.Event()

    def dismissing(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        # the counts are the page's second statement
        if "coalesce(sum(" in statement and not dismissed.is_set():
            dismissed.set()
            repo.decide(policy, items[0], "r1", "dismiss", None, None)

    reads = ConsoleReads(repo.engine)
    event.listen(repo.engine, "before_cursor_execute", dismissing)
    try:
        page = reads.reports(open_only=False, late_before=T0, cursor=None, limit=10)
    finally:
        event.remove(repo.engine, "before_cursor_execute", dismissing)
    assert dismissed.is_set()
    assert (page.open, [r.status for r in page.rows]) == (2, ["open", "open"])
    # the dismissal did commit: the next page sees it
    assert reads.reports(open_only=False, late_before=T0, cursor=None, limit=10).open == 1


def test_clean_periods_restore_credit_slowly(repo: SqlRepository, policy: Policy) -> None:
    item = flag(repo, "p1", "acc1")
    made = repo.decide(policy, item, "r1", "confirm", "rumor", "art18.6", now=T0)
    period = timedelta(days=policy.credit.restore_every_days)
    assert repo.restore_credit(policy, now=T0 + period / 2) == 0
    assert repo.restore_credit(policy, now=T0 + period + HOUR) == 1
    assert repo.restore_credit(policy, now=T0 + period + 2 * HOUR) == 0
    account = repo.get_account(policy, "acc1")
    assert (
        account.credit
        == policy.credit.initial + made.credits[0].delta + policy.credit.restore_points
    )
    assert verify(repo) == []


def test_registration_is_refused_for_a_blacklisted_subject_and_a_closed_name(
    repo: SqlRepository, policy: Policy
) -> None:
    repo.put_account(
        policy, "bad", name="清朗每日新闻", subject_id="110101199001011234", followers=5
    )
    assert repo.check_registration(policy, "清朗每日新闻", "x").allowed
    for n in range(4):
        repo.decide(
            policy, flag(repo, f"p{n}", "bad", "block"), "r1", "confirm", "rumor", "art18.6"
        )
    assert repo.get_account(policy, "bad").level == policy.credit.blacklist
    same = repo.check_registration(policy, "清朗 每日新聞", "another-subject")
    assert not same.allowed and [r["code"] for r in same.reasons] == ["name_taken"]
    near = repo.check_registration(policy, "清朗每日新闯", "another-subject")
    assert [r["code"] for r in near.reasons] == ["name_near"]
    subject = repo.check_registration(policy, "全新名字", "110101199001011234")
    assert [r["code"] for r in subject.reasons] == ["subject_blacklisted"]
    assert repo.check_registration(policy, "全新名字", "another-subject").allowed


def test_the_chain_shows_edits_deletions_and_reordering_made_in_the_database(
    repo: SqlRepository, policy: Policy
) -> None:
    for n in range(3):
        repo.decide(policy, flag(repo, f"p{n}"), "r1", "dismiss", None, None)
    assert verify(repo) == []
    with repo.engine.begin() as db:
        db.execute(text("UPDATE audit_records SET subject = 'item:forged' WHERE seq = 2"))
    assert any("record 2" in p for p in verify(repo))
    with repo.engine.begin() as db:
        db.execute(text("DELETE FROM audit_records WHERE seq = 2"))
    assert verify(repo)
    with repo.engine.begin() as db:
        db.execute(text("DELETE FROM audit_records WHERE seq >= 5"))
    assert any("missing" in p for p in verify(repo))


def test_hostile_text_is_stored_and_returned_exactly(repo: SqlRepository, policy: Policy) -> None:
    hostile = "<script>alert(1)</script>'; DROP TABLE reports; --\u200b\u200d" + "长" * 10_000
    report = repo.file_report(
        policy, post_id="'; --", account_id=None, category="rumor", text_=hostile, reporter="k"
    )
    assert repo.get_report(policy, report.id).text == hostile
    assert repo.get_report(policy, report.id).post_id == "'; --"
    repo.put_account(policy, "acc<x>", name=hostile, subject_id=None, followers=0)
    assert repo.get_account(policy, "acc<x>").name == hostile


def test_migrating_from_the_previous_revision_keeps_queued_items(database_url: str) -> None:
    engine = make_engine(database_url, 5.0)
    with engine.begin() as connection:
        migrate(connection, "0001")
        connection.execute(
            text(
                "INSERT INTO score_records (post_id, model_version, policy_version, decision,"
                " record, created_at) VALUES ('old', 'm', 'p', 'block', '{}', :at)"
            ),
            {"at": T0},
        )
        connection.execute(
            text(
                "INSERT INTO review_queue (record_id, post_id, model_version, policy_version,"
                " decision, status, enqueued_at) VALUES (1, 'old', 'm', 'p', 'block', 'open', :at)"
            ),
            {"at": T0},
        )
    engine.dispose()
    upgrade(database_url)
    policy = load_policy(Settings().policy_file)
    repo = open_repository(database_url, 5.0, policy.review)
    try:
        (item,) = repo.list_items(policy).items
        assert item.post_id == "old" and item.kind == "score" and item.severity == "block"
        assert repo.decide(policy, item.id, "r1", "dismiss", None, None).status == "dismissed"
    finally:
        repo.close()


def test_other_sources_queue_one_item_per_open_cluster_or_match(
    repo: SqlRepository, policy: Policy
) -> None:
    members = [{"post_id": f"c{n}", "account_id": f"acc{n}"} for n in range(30)]
    cluster = coordinated_batch(repo, policy, "cluster:abc", members, account_id="acc0")
    again = repo.enqueue(
        policy,
        kind="cluster",
        merge_key="cluster:abc",
        head="coordination",
        severity="review",
        reach=len(members),
        evidence={"members": members[:1]},
    )
    assert again.id == cluster.id and again.evidence == {"members": members}
    match = repo.enqueue(
        policy,
        kind="bank_match",
        merge_key="bank:7:post:p1",
        head="rumor",
        severity="block",
        reach=0,
        evidence={"bank_entry": 7},
        post_id="p1",
    )
    single = flag(repo, "p2")
    listed = repo.list_items(policy).items
    assert [i.kind for i in listed] == ["bank_match", "cluster", "score"]
    assert [i.id for i in listed] == [match.id, cluster.id, single]
    assert [i.id for i in repo.list_items(policy, kind="cluster").items] == [cluster.id]
    made = repo.decide(policy, cluster.id, "r1", "confirm", "coordination", "art18.4")
    # a confirmed cluster is a violation of every member account
    assert sorted(c.account_id for c in made.credits) == sorted(f"acc{n}" for n in range(30))
    assert {d.account_id for d in made.dispositions} == {f"acc{n}" for n in range(30)}
    appeal = repo.file_appeal(
        policy, account_id="acc7", item_id=cluster.id, reason="我没参与", filed_by="k"
    )
    repo.decide_appeal(policy, appeal.id, "r2", "uphold", None)
    assert repo.get_account(policy, "acc7").credit == policy.credit.initial
    assert repo.get_account(policy, "acc8").credit < policy.credit.initial
    # the batch's item names no post with its text: no label, whatever its members' appeals
    assert [x for x in repo.labels() if x["item_id"] == cluster.id] == []
    assert [e.kind for e in repo.audit_entries()][:2] == ["review.enqueued", "review.enqueued"]
    assert verify(repo) == []


def test_a_cluster_item_grows_with_its_batch_and_never_shrinks(
    repo: SqlRepository, policy: Policy
) -> None:
    members = [{"post_id": f"g{n}", "account_id": f"acc{n}"} for n in range(8)]

    def queue(size: int) -> int:
        return repo.enqueue(
            policy,
            kind="cluster",
            merge_key="cluster:grows",
            head="coordination",
            severity="review",
            reach=size,
            evidence={"cluster": {"size": size}, "members": members[:size]},
            account_id="acc0",
        ).id

    first = queue(5)
    at = datetime.now(UTC) + timedelta(hours=1)  # one moment: age adds nothing between the two
    before = repo.get_item(policy, first, now=at)
    assert queue(8) == first  # later members of the batch: the same item, now listing them
    grown = repo.get_item(policy, first, now=at)
    assert grown.reach == 8 and grown.evidence == {"cluster": {"size": 8}, "members": members}
    assert grown.priority > before.priority
    assert queue(8) == queue(6) == first  # again, or an older state arriving late: no change
    assert repo.get_item(policy, first).evidence == grown.evidence
    kinds = [e.kind for e in repo.audit_entries()]
    assert kinds.count("review.enqueued") == 1 and kinds.count("review.grown") == 1
    made = repo.decide(policy, first, "r1", "confirm", "coordination", "art18.4")
    assert sorted(c.account_id for c in made.credits) == sorted(m["account_id"] for m in members)
    assert verify(repo) == []


def test_a_dismissed_cluster_that_grows_is_a_new_item_linked_to_the_dismissal(
    repo: SqlRepository, policy: Policy
) -> None:
    members = [{"post_id": f"d{n}", "account_id": f"acc{n}"} for n in range(9)]

    def queue(size: int) -> views.Item:
        return repo.enqueue(
            policy,
            kind="cluster",
            merge_key="cluster:dismissed",
            head="coordination",
            severity="review",
            reach=size,
            evidence={"cluster": {"size": size}, "members": members[:size]},
            account_id="acc0",
        )

    first = queue(5).id
    dismissed = repo.decide(policy, first, "r1", "dismiss", None, "转发同一通知", now=T0)
    # the same batch again (a re-run) or an older state: the dismissal stands for what it saw
    assert queue(5).id == queue(4).id == first
    assert [i.id for i in repo.list_items(policy).items] == []
    grown = queue(7)
    assert grown.id != first and grown.status == "open" and grown.reach == 7
    link = {
        "item_id": first,
        "status": "dismissed",
        "reviewer": "r1",
        "decided_at": dismissed.decided_at.isoformat(),
        "reach": 5,
    }
    assert grown.evidence == {"cluster": {"size": 7}, "members": members[:7], EARLIER: link}
    # growing further, the open item keeps its link; the dismissal is as it was
    assert queue(9).id == grown.id
    assert repo.get_item(policy, grown.id).evidence == {
        "cluster": {"size": 9},
        "members": members,
        EARLIER: link,
    }
    assert repo.get_item(policy, first).status == "dismissed"
    enqueued = [e.payload for e in repo.audit_entries() if e.kind == "review.enqueued"]
    assert [p.get("after") for p in enqueued] == [None, first]
    # a confirmation of the growth is the next item's earlier one in turn
    repo.decide(policy, grown.id, "r2", "confirm", "coordination", "art18.4")
    assert queue(9).id == grown.id
    later = queue(10)
    assert later.evidence is not None and later.evidence[EARLIER]["item_id"] == grown.id
    assert later.evidence[EARLIER]["status"] == "confirmed"
    assert verify(repo) == []


def test_a_spooled_record_storage_refuses_is_set_aside_and_the_rest_stored(
    repo: SqlRepository, policy: Policy, tmp_path: Path
) -> None:
    # a post past the checks at the door (as an older version took it): SQLite cannot store
    # its time (NaN is NULL there), PostgreSQL its account (varchar 256)
    bad = Post.model_construct(
        id="bad", text="坏", account_id="A" * 300, created_at=float("nan"), source=None
    )
    spool = Spool(tmp_path / "spool")
    spool.append([Pending(record("bad"), True, "坏", bad)])
    spool.append([Pending(record("good"), True, "好", Post(id="good", text="好"))])
    assert spool.drain(repo.save_records, repo.ping, partial(repo.enqueue_requests, policy)) == 1
    assert spool.rejected() == 1 and spool.pending() == 0
    assert [i.post_id for i in repo.list_items(policy).items] == ["good"]


def test_a_spooled_record_keeps_its_text_for_the_review_item(
    repo: SqlRepository, policy: Policy, tmp_path: Path
) -> None:
    spool = Spool(tmp_path / "spool")
    rec = record("p1").model_copy(update={"account_id": "acc1"})
    spool.append([Pending(rec, True, "断电时写下的正文")])
    assert spool.drain(repo.save_records, repo.ping, partial(repo.enqueue_requests, policy)) == 1
    spool.close()
    repo.decide(policy, repo.list_items(policy).items[0].id, "r1", "dismiss", None, None)
    assert [label["text"] for label in repo.labels()] == ["断电时写下的正文"]


def _blacklist(repo: SqlRepository, policy: Policy, account: str) -> None:
    for n in range(4):
        item = flag(repo, f"{account}-p{n}", account, "block")
        repo.decide(policy, item, "r1", "confirm", "rumor", "art18.6")
    assert repo.get_account(policy, account).level == policy.credit.blacklist


def test_a_blacklisted_accounts_subject_and_name_stay_refused_whatever_is_put_later(
    repo: SqlRepository, policy: Policy
) -> None:
    subject = "110101199001011234X"
    repo.put_account(policy, "bad", name="清朗每日新闻", subject_id=subject)
    _blacklist(repo, policy, "bad")
    # each refusal names its article: the subject is checked against the cap (art10) and the
    # blacklist (art19), a closed account's name by art8's third paragraph
    kept = r"never replaced, since re-registration is checked against it \(art10, art19\)$"
    name_kept = r"stays refused to re-registration \(art8, third paragraph\), so it is not changed$"
    for change, refusal in (
        ({"subject_id": "OTHER"}, kept),
        ({"name": None}, name_kept),
        ({"name": "别的名字"}, name_kept),
    ):
        with pytest.raises(ConflictError, match=refusal):
            repo.put_account(policy, "bad", **change)
    # the same subject in another spelling, and the same name, change nothing
    repo.put_account(policy, "bad", name="清朗每日新闻", subject_id="110101 19900101 1234x")
    refused = repo.check_registration(policy, "清朗每日新闻", subject)
    assert [r["code"] for r in refused.reasons] == ["subject_blacklisted", "name_taken"]
    # an ordinary account renames freely, and keeps its subject
    repo.put_account(policy, "good", name="甲", subject_id="91110000MA01")
    assert repo.put_account(policy, "good", name="乙").name == "乙"
    with pytest.raises(ConflictError, match="never replaced"):
        repo.put_account(policy, "good", subject_id="91110000MA02")


def test_a_rename_or_a_cleared_name_before_the_close_frees_no_name_the_account_held(
    repo: SqlRepository, policy: Policy
) -> None:
    repo.put_account(policy, "bad", name="清朗每日新闻")
    repo.put_account(policy, "bad", name="无名小号")
    repo.put_account(policy, "gone", name="清朗晚报速递")
    repo.put_account(policy, "gone", name=None)
    assert repo.check_registration(policy, "清朗每日新闻", "x").allowed  # not closed yet
    _blacklist(repo, policy, "bad")
    _blacklist(repo, policy, "gone")
    for wanted, code in [
        ("清朗 每日新聞", "name_taken"),
        ("清朗每日新闯", "name_near"),
        ("无名小号", "name_taken"),
        ("清朗晚报速递", "name_taken"),
    ]:
        check = repo.check_registration(policy, wanted, "another-subject")
        assert [r["code"] for r in check.reasons] == [code], wanted
    # one reason per closed account, the stronger, however many of its names match
    repo.put_account(policy, "twice", name="清朗每日新闯")
    repo.put_account(policy, "twice", name="清朗每日新闻")
    _blacklist(repo, policy, "twice")
    both = repo.check_registration(policy, "清朗每日新闻", "another-subject")
    assert [(r["code"], r["detail"]) for r in both.reasons] == [
        ("name_taken", "equal to the closed account bad's name"),
        ("name_taken", "equal to the closed account twice's name"),
    ]


def test_a_rename_racing_the_close_leaves_every_name_refused(
    repo: SqlRepository, policy: Policy
) -> None:
    repo.put_account(policy, "bad", name="清朗每日新闻")
    for n in range(3):
        repo.decide(
            policy, flag(repo, f"p{n}", "bad", "block"), "r1", "confirm", "rumor", "art18.6"
        )
    last = flag(repo, "p3", "bad", "block")
    start = threading.Barrier(2)
    renamed: list[bool] = []

    def rename() -> None:
        start.wait()
        try:
            repo.put_account(policy, "bad", name="无名小号")
            renamed.append(True)
        except ConflictError:  # the close came first: its name stays as it was closed
            renamed.append(False)

    def close() -> None:
        start.wait()
        repo.decide(policy, last, "r1", "confirm", "rumor", "art18.6")

    threads = [threading.Thread(target=rename), threading.Thread(target=close)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert repo.get_account(policy, "bad").level == policy.credit.blacklist
    assert not repo.check_registration(policy, "清朗每日新闻", "another-subject").allowed
    new_name = repo.check_registration(policy, "无名小号", "another-subject")
    assert renamed == [not new_name.allowed]


def test_the_migration_keeps_the_names_the_records_show_an_account_held(
    database_url: str, policy: Policy
) -> None:
    upgrade(database_url)
    repo = open_repository(database_url, 5.0, policy.review)
    try:
        repo.put_account(policy, "bad", name="清朗每日新闻")
        repo.put_account(policy, "bad", name="无名小号", followers=3)
        repo.put_account(policy, "bad", followers=5)
        _blacklist(repo, policy, "bad")
    finally:
        repo.close()
    engine = make_engine(database_url, 5.0)
    with engine.begin() as connection:
        migrate(connection, "0009_reporter_ids", down=True)
        assert "account_names" not in inspect(connection).get_table_names()
    engine.dispose()
    upgrade(database_url)
    repo = open_repository(database_url, 5.0, policy.review)
    try:
        for name in ("清朗每日新闻", "无名小号"):
            check = repo.check_registration(policy, name, "another-subject")
            assert [r["code"] for r in check.reasons] == ["name_taken"], name
        assert verify(repo) == []
    finally:
        repo.close()


def test_a_blacklisted_subject_is_refused_in_any_spelling_and_old_digests_still_match(
    repo: SqlRepository, policy: Policy
) -> None:
    repo.put_account(policy, "bad", subject_id="110101199001011234X")
    repo.put_account(policy, "old", subject_id="placeholder")
    _blacklist(repo, policy, "bad")
    _blacklist(repo, policy, "old")
    for spelling in (
        "110101199001011234x",
        "１１０１０１１９９００１０１１２３４Ｘ",
        "110101 1990-0101 1234X",
    ):
        check = repo.check_registration(policy, "全新名字", spelling)
        assert [r["code"] for r in check.reasons] == ["subject_blacklisted"], spelling
    # a row digested before normalisation (stripped only), as migration 0028 keyed it, matches
    # the spelling it was given in
    plain = hashlib.sha256(b"qinglang-subject:110101199001019999x").hexdigest()
    legacy = keyed(repo.subjects.key, plain)
    with repo.engine.begin() as db:
        db.execute(
            text("UPDATE accounts SET subject_digest = :d WHERE account_id = 'old'"), {"d": legacy}
        )
    assert not repo.check_registration(policy, "全新名字", " 110101199001019999x").allowed
    # giving it again (the same subject: no conflict) stores it normalised, for every spelling
    repo.put_account(policy, "old", subject_id="110101199001019999x")
    assert not repo.check_registration(policy, "全新名字", "110101199001019999X").allowed


def test_a_post_is_charged_once_whichever_item_or_report_comes_to_it(
    repo: SqlRepository, policy: Policy
) -> None:
    item = flag(repo, "p1", "acc1")
    repo.decide(policy, item, "r1", "confirm", "rumor", "art18.6")
    credit = repo.get_account(policy, "acc1").credit
    late = repo.file_report(
        policy, post_id="p1", account_id=None, category="rumor", text_="", reporter="k1"
    )
    # the report is answered by the post's decision, and opens no second case
    assert (late.item_id, late.status, late.overdue) == (item, "confirmed", False)
    assert [i.post_id for i in repo.list_items(policy).items] == []
    # a coordinated batch listing a member whose own post was confirmed: charged once
    own = flag(repo, "c2", "acc2")
    repo.decide(policy, own, "r1", "confirm", "coordination", "art18.4")
    members = [{"post_id": f"c{n}", "account_id": f"acc{n}"} for n in (2, 3)]
    cluster = coordinated_batch(repo, policy, "cluster:b1", members, account_id="acc2")
    made = repo.decide(policy, cluster.id, "r1", "confirm", "coordination", "art18.4")
    assert [c.account_id for c in made.credits] == ["acc3"]
    assert [(u.account_id, u.charged_by) for u in made.uncharged] == [("acc2", own)]
    assert repo.get_account(policy, "acc1").credit == credit
    assert verify(repo) == []


def test_each_report_is_due_from_its_own_filing_and_its_item_by_its_first(
    repo: SqlRepository, policy: Policy
) -> None:
    """An item queued long before its first report is due when that report is, not overdue on
    arrival; a later report changes nothing, the first being owed its answer soonest."""
    item = flag(repo, "p1")
    days = timedelta(days=policy.review.report_within_days)
    filed = repo.get_item(policy, item).enqueued_at + 2 * days
    report = repo.file_report(
        policy,
        post_id="p1",
        account_id=None,
        category="rumor",
        text_="",
        reporter="k1",
        now=filed,
    )
    assert report.item_id == item and report.deadline == filed + days and not report.overdue
    assert repo.get_report(policy, report.id, now=filed + days + HOUR).overdue
    assert repo.get_item(policy, item, now=filed).deadline == report.deadline
    (listed,) = repo.list_items(policy, now=filed).items
    assert listed.deadline == report.deadline
    later = repo.file_report(
        policy,
        post_id="p1",
        account_id=None,
        category="rumor",
        text_="",
        reporter="k2",
        now=filed + HOUR,
    )
    assert later.deadline == report.deadline + HOUR
    assert repo.get_item(policy, item).deadline == report.deadline
    repo.decide(policy, item, "r1", "dismiss", None, None)
    assert not repo.get_report(policy, report.id, now=filed + days + HOUR).overdue


def test_the_open_reports_are_read_from_the_open_reported_items_not_every_report_in_order(
    repo: SqlRepository, policy: Policy
) -> None:
    """Where a platform answers its reports, its open reports are the newest while half the
    queue (flagged posts nobody reported) waits: told only that much by its statistics, the
    planner walked every report in filing order (``ix_reports_created``) to the page's
    first open one, looking up each one's item. The page reads the open reported items and
    their reports, and orders and cuts those."""
    row = {"policy_version": policy.version, "decision": "review", "severity": "review"}
    items = [
        {**row, "id": n, "kind": "score", "urgency": 1.0, "enqueued_at": T0,
         "reported_at": None, "status": "open"}
        for n in range(1, 1001)
    ] + [
        {**row, "id": n, "kind": "report", "urgency": 1.0, "enqueued_at": T0 + n * HOUR,
         "reported_at": T0 + n * HOUR, "status": "dismissed" if n < 1990 else "open"}
        for n in range(1001, 2001)
    ]  # fmt: skip
    reports = [
        {"item_id": n, "category": "rumor", "text": "", "reporter": "k1",
         "created_at": T0 + n * HOUR}
        for n in range(1001, 2001)
    ]  # fmt: skip
    with repo.engine.begin() as connection:
        connection.execute(insert(ReviewItem), items)
        connection.execute(insert(StoredReport), reports)
        analyze(connection)
    with statements_run(repo.engine) as heard:
        page = ConsoleReads(repo.engine).reports(
            open_only=True, late_before=T0, cursor=None, limit=5
        )
    assert [r.item_id for r in page.rows] == [1990, 1991, 1992, 1993, 1994] and page.open == 11
    rows, _counts = heard
    with repo.engine.begin() as connection:
        explain = "EXPLAIN QUERY PLAN"
        if connection.dialect.name == "postgresql":
            # on tables this small it would read the queue whole: ask what it can use
            connection.exec_driver_sql("SET LOCAL enable_seqscan = off")
            explain = "EXPLAIN"
        plan = " ".join(map(str, connection.exec_driver_sql(f"{explain} {rows[0]}", rows[1])))
    assert "ix_reports_created" not in plan, plan


def _reported_queue(repo: SqlRepository, policy: Policy, answered_reports: int) -> set[int]:
    """A queue whose statistics mislead: 1,000 flagged posts nobody reported wait, while of
    1,000 reported items, each with ``answered_reports`` reports, only the newest 11 do (open,
    claimed, escalated). Their reports are the newest but one filed long ago, the last item has
    more than several pages of them, and many share a moment with another item's. The ids of
    the open reports."""
    row = {"policy_version": policy.version, "decision": "review", "severity": "review"}
    waiting = ("open", "escalated", "open")
    items = [
        {**row, "id": n, "kind": "score", "urgency": 1.0, "enqueued_at": T0,
         "reported_at": None, "status": "open"}
        for n in range(1, 1001)
    ] + [
        {**row, "id": n, "kind": "report", "urgency": 1.0, "enqueued_at": T0 + n * HOUR,
         "reported_at": T0 + n * HOUR,
         "status": waiting[n % 3] if n >= 1990 else ("dismissed", "confirmed")[n % 2],
         "assignee": "wang" if n >= 1990 and n % 3 == 2 else None}
        for n in range(1001, 2001)
    ]  # fmt: skip
    late = T0 + 2000 * HOUR
    moments = {n: [T0 + n * HOUR + k * timedelta(minutes=1)
                   for k in range(answered_reports)] for n in range(1001, 1990)}  # fmt: skip
    moments |= {n: [late, late + timedelta(minutes=5), late + timedelta(minutes=5)]
                for n in range(1990, 2000)}  # fmt: skip
    moments[1990].append(T0 + 10 * HOUR)
    moments[2000] = [late + timedelta(minutes=k // 2) for k in range(23)]
    reports = [
        {"item_id": n, "category": "rumor", "text": "", "reporter": "k1", "created_at": at}
        for n, filed in moments.items()
        for at in filed
    ]
    with repo.engine.begin() as connection:
        connection.execute(insert(ReviewItem), items)
        connection.execute(insert(StoredReport), reports)
        analyze(connection)
        return set(connection.scalars(select(StoredReport.id).where(StoredReport.item_id >= 1990)))


def _pages(reads: ConsoleReads, *, open_only: bool, limit: int) -> list[list[int]]:
    """The report ids of every page of the reports page, the first to the last."""
    pages: list[list[int]] = []
    cursor: tuple[float, int] | None = None
    while True:
        page = reads.reports(
            open_only=open_only, late_before=T0 + 1000 * HOUR, cursor=cursor, limit=limit
        )
        pages.append([r.id for r in page.rows])
        if page.next is None:
            return pages
        cursor = appeal_cursor(page.next)


def test_the_open_reports_pages_are_the_open_rows_of_every_report_in_filing_order(
    repo: SqlRepository, policy: Policy
) -> None:
    """Page after page, the open reports are the reports of the open and escalated items (a
    claimed one is open), the earliest filed first, those filed at one moment by id, as the
    every-report pages order them: an item with more open reports than a page fills pages with
    another item's between its own."""
    opened = _reported_queue(repo, policy, answered_reports=2)
    reads = ConsoleReads(repo.engine)
    with repo.engine.connect() as connection:
        filed = connection.execute(
            select(StoredReport.id, StoredReport.item_id).order_by(
                StoredReport.created_at, StoredReport.id
            )
        ).all()
    in_order = [report for report, _item in filed]
    open_in_order = [report for report in in_order if report in opened]
    pages = _pages(reads, open_only=True, limit=4)
    assert [len(p) for p in pages] == [4] * 13 + [2]
    assert [report for p in pages for report in p] == open_in_order
    # the last item's reports are on pages with others' between them
    last = {report for report, item in filed if item == 2000}
    assert sum(1 for p in pages if last & set(p) and set(p) - last) == 3
    every = _pages(reads, open_only=False, limit=500)
    assert [report for p in every for report in p] == in_order and len(every) == 5
    page = reads.reports(open_only=True, late_before=T0 + 1000 * HOUR, cursor=None, limit=4)
    # the one report filed long ago on an open item is overdue
    assert (page.open, page.overdue) == (len(opened), 1) == (54, 1)


def test_the_open_reports_page_reads_the_open_items_reports_alone(
    repo: SqlRepository, policy: Policy
) -> None:
    """The statistics count half the queue open and half of it reported, so that the planner
    took the open reported items (11) for thousands and read every report (a hash join) to find
    theirs. The page's statements, its counts among them, read the open items' reports, each
    item's from the cursor on and no further than a page, and the page's rows by id: on
    PostgreSQL, under ``EXPLAIN ANALYZE``, no more rows of ``reports`` than those; on SQLite, no
    scan of ``reports``."""
    opened = _reported_queue(repo, policy, answered_reports=20)
    reads = ConsoleReads(repo.engine)
    with statements_run(repo.engine) as heard:
        first = reads.reports(open_only=True, late_before=T0, cursor=None, limit=5)
        assert first.next is not None
        reads.reports(open_only=True, late_before=T0, cursor=appeal_cursor(first.next), limit=5)
    assert len(heard) == 4
    with repo.engine.begin() as connection:
        for statement, parameters in heard:
            if connection.dialect.name == "sqlite":
                plan = connection.exec_driver_sql(
                    f"EXPLAIN QUERY PLAN {statement}", parameters
                ).all()
                assert not [step for step in plan if "SCAN reports" in step[-1]], plan
                continue
            (found,) = connection.exec_driver_sql(
                f"EXPLAIN (ANALYZE, FORMAT JSON) {statement}", parameters
            ).one()
            read = sum(
                (node["Actual Rows"] + node.get("Rows Removed by Filter", 0)) * node["Actual Loops"]
                for node in _plan_nodes(found[0]["Plan"])
                if node.get("Relation Name") == "reports"
            )
            assert read <= len(opened) + 6, (read, json.dumps(found, indent=1), statement)


def _plan_nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _plan_nodes(child)


def test_a_report_about_an_unknown_post_is_kept_charges_nobody_and_labels_nothing(
    repo: SqlRepository, policy: Policy
) -> None:
    report = repo.file_report(
        policy, post_id="never-seen", account_id=None, category="rumor", text_="", reporter="k1"
    )
    item = repo.get_item(policy, report.item_id)
    assert item.post_unknown and (item.account_id, item.text) == (None, None)
    made = repo.decide(policy, item.id, "r1", "confirm", "rumor", "art18.6")
    assert made.credits == []
    assert [u.account_id for u in made.uncharged] == [None]
    assert "never-seen is unknown" in made.uncharged[0].reason
    assert [x for x in repo.labels() if x["item_id"] == item.id] == []
    # known posts are not marked
    assert not repo.get_item(policy, flag(repo, "p1")).post_unknown


def test_a_report_naming_the_account_of_an_unknown_post_s_item_names_it_for_the_item(
    repo: SqlRepository, policy: Policy
) -> None:
    """The account a report names for a post the service does not know is the item's, whether
    that report opens the item or joins one an earlier report without it opened: the order in
    which reports arrive does not decide whether the post's violation is charged."""
    for post, reports in {"p1": ["acc1", None], "p2": [None, "acc2"]}.items():
        filed = [
            repo.file_report(
                policy, post_id=post, account_id=named, category="rumor", text_="", reporter=by
            )
            for by, named in zip(("k1", "k2"), reports, strict=True)
        ]
        assert len({r.item_id for r in filed}) == 1
        account = next(a for a in reports if a is not None)
        assert repo.get_item(policy, filed[0].item_id).account_id == account
        made = repo.decide(policy, filed[0].item_id, "r1", "confirm", "rumor", "art18.6")
        assert [c.account_id for c in made.credits] == [account], post


def test_the_report_that_gives_an_item_its_account_says_so_in_its_record(
    repo: SqlRepository, policy: Policy
) -> None:
    """The chain says which report charged an item opened without an account to one: the
    report that gave it, and none other, whose record ``audit verify`` keeps as written."""
    for named, by in ((None, "k1"), ("acc2", "k2"), ("acc2", "k3")):
        repo.file_report(
            policy, post_id="p2", account_id=named, category="rumor", text_="", reporter=by
        )
    filed = [e.payload for e in repo.audit_entries() if e.kind == "report.filed"]
    assert [p.get("gave_account") for p in filed] == [None, "acc2", None]
    assert verify(repo) == []


def test_a_report_naming_another_account_than_its_item_s_is_refused_under_the_item_s_lock(
    repo: SqlRepository, policy: Policy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two reports of an unknown post naming two accounts, both read before either committed
    (the post's owner unknown to each: here, the read made to miss the first): the second,
    waiting for the item the first gave an account, is refused as a report naming another
    account than its post's is, not joined to the first account's item."""
    repo.file_report(
        policy, post_id="p1", account_id="acc1", category="rumor", text_="", reporter="k1"
    )
    monkeypatch.setattr("service.storage.reports_sql.post_owner", lambda tx, post_id: None)
    with pytest.raises(ConflictError, match="belongs to account 'acc1', not to 'acc2'"):
        repo.file_report(
            policy, post_id="p1", account_id="acc2", category="rumor", text_="", reporter="k2"
        )


def test_one_reporter_counts_once_towards_an_items_priority(
    repo: SqlRepository, policy: Policy
) -> None:
    item = flag(repo, "p1")
    for _ in range(30):
        repo.file_report(
            policy, post_id="p1", account_id=None, category="rumor", text_="", reporter="k1"
        )
    once = repo.get_item(policy, item)
    assert once.reports == 1 and once.evidence is not None
    assert once.evidence["categories"] == {"rumor": 30}  # every report is kept
    repo.file_report(
        policy, post_id="p1", account_id=None, category="rumor", text_="", reporter="k2"
    )
    twice = repo.get_item(policy, item)
    assert twice.reports == 2
    assert twice.priority == pytest.approx(once.priority + policy.review.report_weight, abs=0.01)


def test_distinct_users_behind_one_key_count_as_distinct_reporters(
    repo: SqlRepository, policy: Policy
) -> None:
    item = flag(repo, "p1")

    def report(key: str, user: str | None) -> views.Report:
        return repo.file_report(
            policy,
            post_id="p1",
            account_id=None,
            category="rumor",
            text_="",
            reporter=key,
            reporter_id=user,
        )

    before = repo.get_item(policy, item).priority
    counts = [
        report(key, user).item_reports
        for key, user in [
            ("k1", None),  # the key alone, as before reporter ids
            ("k1", None),
            ("k1", "u1"),
            ("k1", "u2"),
            ("k1", "u1"),  # one user again: one voice
            ("k2", "u1"),  # another key's user of the same id is another user
            ("k2", None),
        ]
    ]
    assert counts == [1, 1, 2, 3, 3, 4, 5]
    shown = repo.get_item(policy, item)
    assert shown.priority == pytest.approx(before + 5 * policy.review.report_weight, abs=0.01)
    stored = repo.get_report(policy, report("k1", "u9").id)
    assert (stored.reporter_id, stored.item_reports) == ("u9", 6)
    assert verify(repo) == []
    # the chain, which is never erased, holds each user's id as its digest only
    filed = [e.payload for e in repo.audit_entries() if e.kind == "report.filed"]
    assert [p["reporter_id_digest"] for p in filed[-2:]] == [None, repo.subjects.digest("u9")]
    assert not [p for p in filed if "u9" in json.dumps(p) or "u1" in json.dumps(p)]


def test_the_reporter_id_migration_goes_down_and_up_keeping_the_reports(
    database_url: str, policy: Policy
) -> None:
    upgrade(database_url)
    repo = open_repository(database_url, 5.0, policy.review)
    try:
        item = flag(repo, "p1")
        for user in ("u1", "u2", None):
            repo.file_report(
                policy,
                post_id="p1",
                account_id=None,
                category="rumor",
                text_="",
                reporter="k1",
                reporter_id=user,
            )
    finally:
        repo.close()
    engine = make_engine(database_url, 5.0)
    with engine.begin() as connection:
        migrate(connection, "0008_one_appeal_per_violation", down=True)
        columns = {c["name"] for c in inspect(connection).get_columns("reports")}
        assert "reporter_id" not in columns and "reporter" in columns
        assert connection.execute(text("SELECT COUNT(*) FROM reports")).scalar() == 3
    engine.dispose()
    upgrade(database_url)
    repo = open_repository(database_url, 5.0, policy.review)
    try:
        # the ids went with the column: the reports count per key, as they were stored
        again = repo.file_report(
            policy,
            post_id="p1",
            account_id=None,
            category="rumor",
            text_="",
            reporter="k1",
            reporter_id="u1",
        )
        assert again.item_reports == repo.get_item(policy, item).reports == 4
        assert repo.get_report(policy, again.id - 1).reporter_id is None
    finally:
        repo.close()


def test_an_account_the_service_knows_is_at_the_initial_credit_until_it_is_charged(
    repo: SqlRepository, policy: Policy
) -> None:
    rules = policy.credit
    flag(repo, "p1", "u2")  # its post stored and queued
    rec = record("p2").model_copy(update={"account_id": "u3"})
    repo.save_records([Pending(rec, False, "正文", Post(id="p2", text="正文", account_id="u3"))])
    for known in ("u2", "u3"):
        account = repo.get_account(policy, known)
        assert (account.credit, account.level) == (
            rules.initial,
            credit.level(rules, rules.initial).name,
        )
        assert (account.name, account.dispositions, account.history) == (None, [], [])
    with pytest.raises(NotFoundError, match="no account 'ghost'"):
        repo.get_account(policy, "ghost")
    # an appeal on an item it is no member of says so, not that the account is unknown
    other = flag(repo, "p3", "acc1")
    repo.decide(policy, other, "r1", "confirm", "rumor", "art18.6")
    with pytest.raises(
        ConflictError, match=f"item {other} is not a confirmed violation of account 'u2'"
    ):
        repo.file_appeal(policy, account_id="u2", item_id=other, reason="r", filed_by="k")


def test_a_member_the_confirmation_did_not_charge_appeals_where_it_was_charged(
    repo: SqlRepository, policy: Policy
) -> None:
    own = flag(repo, "c4", "acc4")
    repo.decide(policy, own, "r1", "confirm", "coordination", "art18.4")
    members = [{"post_id": f"c{n}", "account_id": f"acc{n}"} for n in (3, 4)]
    batch = coordinated_batch(repo, policy, "cluster:b1", members)
    made = repo.decide(policy, batch.id, "r1", "confirm", "coordination", "art18.4")
    assert [(u.account_id, u.charged_by) for u in made.uncharged] == [("acc4", own)]
    why = f"item {batch.id} did not charge account 'acc4' \\(item {own} did\\)"
    with pytest.raises(ConflictError, match=why):
        repo.file_appeal(policy, account_id="acc4", item_id=batch.id, reason="r", filed_by="k")
    assert repo.list_appeals().appeals == []
    repo.file_appeal(policy, account_id="acc3", item_id=batch.id, reason="r", filed_by="k")
    repo.file_appeal(policy, account_id="acc4", item_id=own, reason="r", filed_by="k")


def test_labels_are_of_posts_with_text_and_follow_the_appeal_of_the_posts_account(
    repo: SqlRepository, policy: Policy
) -> None:
    members = [{"post_id": f"b{n}", "account_id": f"acc{n}"} for n in (1, 2)]
    batch = coordinated_batch(repo, policy, "cluster:b1", members, account_id="acc1")
    repo.decide(policy, batch.id, "r1", "confirm", "coordination", "art18.4")
    # an item of a post with its text that names more accounts than the post's
    members = [{"post_id": "d1", "account_id": "acc3"}, {"post_id": "d2", "account_id": "acc4"}]
    shared = coordinated_batch(
        repo, policy, "cluster:b2", members, post_id="d1", account_id="acc3", text_="正文"
    )
    repo.decide(policy, shared.id, "r1", "confirm", "coordination", "art18.4")

    def upheld(account: str) -> None:
        appeal = repo.file_appeal(
            policy, account_id=account, item_id=shared.id, reason="r", filed_by="k"
        )
        repo.decide_appeal(policy, appeal.id, "r2", "uphold", None)

    def rows() -> list[tuple[int, str, int, bool]]:
        return [(x["item_id"], x["text"], x["label"], x["appeal_upheld"]) for x in repo.labels()]

    # the batch's item has no text: no label; another member's appeal leaves the post's
    upheld("acc4")
    assert rows() == [(shared.id, "正文", 1, False)]
    upheld("acc3")
    assert rows() == [(shared.id, "正文", 0, True)]


def test_a_report_after_an_appeal_overturned_its_posts_confirmation_reaches_a_reviewer(
    repo: SqlRepository, policy: Policy
) -> None:
    item = flag(repo, "p1", "acc1")
    repo.decide(policy, item, "r1", "confirm", "rumor", "art18.6")
    early = repo.file_report(
        policy, post_id="p1", account_id=None, category="rumor", text_="", reporter="k1"
    )
    assert early.status == "confirmed"
    appeal = repo.file_appeal(policy, account_id="acc1", item_id=item, reason="r", filed_by="k")
    repo.decide_appeal(policy, appeal.id, "r2", "uphold", None)
    cleared = repo.get_account(policy, "acc1").credit
    assert repo.get_report(policy, early.id).status == "overturned"
    assert repo.get_item(policy, item).reports == 1
    # a complaint filed after the overturn is a new case for a reviewer, as one filed after a
    # dismissal is: the cleared item is read by nobody again
    late = repo.file_report(
        policy, post_id="p1", account_id=None, category="rumor", text_="", reporter="k2"
    )
    assert late.item_id != item and (late.status, late.overdue) == ("open", False)
    assert [i.id for i in repo.list_items(policy).items] == [late.item_id]
    reopened = repo.get_item(policy, late.item_id)
    assert reopened.account_id == "acc1" and reopened.evidence is not None
    assert reopened.evidence[EARLIER]["item_id"] == item
    assert reopened.evidence[EARLIER]["status"] == "overturned"
    # confirmed again, the post is not charged twice
    made = repo.decide(policy, late.item_id, "r3", "confirm", "rumor", "art18.6")
    assert made.credits == [] and [u.charged_by for u in made.uncharged] == [item]
    assert repo.get_report(policy, late.id).status == "confirmed"
    assert repo.get_report(policy, early.id).status == "overturned"
    assert repo.get_account(policy, "acc1").credit == cleared == policy.credit.initial
    assert verify(repo) == []


@pytest.mark.parametrize(
    ("query", "index", "before"),
    [
        (
            "SELECT account_id FROM stored_posts WHERE account_id = 'u1' LIMIT 1",
            "ix_stored_posts_account",
            "0013_sign_in_name_digests",
        ),
        (
            "SELECT account_id FROM review_queue WHERE account_id = 'u1' LIMIT 1",
            "ix_queue_account_id",
            "0038_signup_batches",
        ),
        (
            "SELECT id FROM review_queue WHERE account_id = 'u1' AND id != 3"
            " ORDER BY id DESC LIMIT 20",
            "ix_queue_account_id",
            "0038_signup_batches",
        ),
        (
            "SELECT id FROM review_queue WHERE status = 'open' AND assignee = 'r1'"
            " ORDER BY urgency DESC, id DESC LIMIT 51",
            "ix_queue_assignee",
            "0038_signup_batches",
        ),
        (
            "SELECT head, count(*) FROM review_queue WHERE enqueued_at >= '2026-01-01'"
            " GROUP BY head",
            "ix_queue_enqueued_head",
            "0038_signup_batches",
        ),
        (
            "SELECT count(*) FROM review_queue WHERE status = 'open'"
            " AND enqueued_at < '2026-01-01'",
            "ix_queue_status_enqueued",
            "0038_signup_batches",
        ),
        (
            "SELECT id FROM review_queue WHERE"
            " (CASE WHEN reported_at IS NOT NULL THEN status END) IN ('open', 'escalated')",
            "ix_queue_report_status",
            "0045_active_read_indexes",
        ),
        (
            "SELECT count(*) FROM reports WHERE item_id = 3 AND created_at < '2026-01-01'",
            "ix_reports_item_created",
            "0045_active_read_indexes",
        ),
        (
            "SELECT id FROM reports ORDER BY created_at, id LIMIT 51",
            "ix_reports_created",
            "0014_account_indexes",
        ),
        (
            "SELECT account_id FROM dispositions WHERE kind IN ('suspend_updates',"
            " 'close_account') AND (ends_at IS NULL OR ends_at > '2026-01-01')",
            "ix_dispositions_kind_ends",
            "0020_decided_merge_keys",
        ),
        (
            "SELECT id FROM dispositions WHERE account_id = 'u1' AND lifted_at IS NULL"
            " AND ends_at IS NULL ORDER BY starts_at, id LIMIT 101",
            "ix_dispositions_account_lasting",
            "0044_sweep_places",
        ),
        (
            "SELECT id FROM dispositions WHERE account_id = 'u1' AND lifted_at IS NULL"
            " AND ends_at > '2026-01-01'",
            "ix_dispositions_account_ending",
            "0044_sweep_places",
        ),
        (
            "SELECT id FROM appeals WHERE status = 'pending' ORDER BY deadline, id LIMIT 101",
            "ix_appeals_status_deadline",
            "0044_sweep_places",
        ),
        (
            "SELECT id FROM dispositions WHERE item_id = 7 AND account_id = 'u1'",
            "ix_dispositions_item_account",
            "0046_open_report_indexes",
        ),
    ],
)
def test_the_lookups_of_accounts_and_reports_are_read_off_an_index(
    database_url: str, query: str, index: str, before: str
) -> None:
    """Any key may ask for an account, and every appeal asks whether its account is known (a
    post or an item of it); the console lists reports the earliest filed first, a page at a
    time; the publish path reads the dispositions that stop accounts publishing every few
    seconds; the console reads the queue by account, assignee, report and age (an item page, a
    filter, the reports page's counts, the dashboard). Each is read off an index, not by reading
    or sorting a whole table."""
    upgrade(database_url)
    engine = make_engine(database_url, 5.0)
    try:
        with engine.begin() as connection:
            if connection.dialect.name == "sqlite":
                plan = connection.execute(text(f"EXPLAIN QUERY PLAN {query}")).all()
            else:
                # on a table this small the planner would scan it anyway, or every entry of a
                # wider index than the one asked (a bitmap scan, then a sort): ask what it can
                # use to read the rows in their order
                connection.execute(text("SET LOCAL enable_seqscan = off"))
                connection.execute(text("SET LOCAL enable_bitmapscan = off"))
                plan = connection.execute(text(f"EXPLAIN {query}")).all()
            assert index in " ".join(str(row) for row in plan)
            migrate(connection, before, down=True)
            table = query.split(" FROM ")[1].split(maxsplit=1)[0]
            assert index not in {i["name"] for i in inspect(connection).get_indexes(table)}
        upgrade(database_url)
    finally:
        engine.dispose()


def test_0045_goes_down_to_the_indexes_before_it_and_up_again(database_url: str) -> None:
    """The downgrade drops the indexes of the active dispositions and the pending appeals and
    makes the appeals' index on the status alone again; a second try finds it done. Up again,
    they are back."""
    made = {
        "dispositions": {"ix_dispositions_account_lasting", "ix_dispositions_account_ending"},
        "appeals": {"ix_appeals_status_deadline"},
    }
    downs, up = _down_twice_and_up(
        database_url, "0045_active_read_indexes", "0044_sweep_places", list(made)
    )
    for down in downs:
        for table, names in made.items():
            assert not names & down[table], table
        assert "ix_appeals_status" in down["appeals"]
    for table, names in made.items():
        assert names <= up[table], table
    assert "ix_appeals_status" not in up["appeals"]


def _down_twice_and_up(
    database_url: str, revision: str, below: str, tables: Sequence[str]
) -> tuple[list[dict[str, set[str]]], dict[str, set[str]]]:
    """The names of ``tables``' indexes after ``revision`` goes down to ``below``, tried twice,
    stamped back at ``revision`` between (SQLite keeps the drops of a downgrade refused further
    down: the second try must find them done), and after the upgrade to head that follows."""

    def indexes(found: Inspector) -> dict[str, set[str]]:
        return {
            table: {name for i in found.get_indexes(table) if (name := i["name"])}
            for table in tables
        }

    upgrade(database_url)
    engine = make_engine(database_url, 5.0)
    downs: list[dict[str, set[str]]] = []
    try:
        with engine.begin() as connection:
            config = alembic_config()
            config.attributes["connection"] = connection
            for again in (False, True):
                if again:
                    command.stamp(config, revision)
                migrate(connection, below, down=True)
                downs.append(indexes(inspect(connection)))
        upgrade(database_url)
        return downs, indexes(inspect(engine))
    finally:
        engine.dispose()


def test_the_open_report_indexes_migration_goes_down_and_up_again(database_url: str) -> None:
    """``0046_open_report_indexes`` puts the reported items' status and each item's reports in
    filing order in place of the indexes before it, and its downgrade puts those back."""
    upgrade(database_url)
    engine = make_engine(database_url, 5.0)

    def indexes(connection: Any) -> set[str]:
        # SQLAlchemy's SQLite inspector leaves out an index of an expression
        listed = (
            "SELECT name FROM sqlite_master WHERE type = 'index'"
            if connection.dialect.name == "sqlite"
            else "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()"
        )
        return set(connection.scalars(text(listed)))

    new = {"ix_queue_report_status", "ix_reports_item_created"}
    old = {"ix_queue_reported", "ix_reports_item_id"}
    try:
        with engine.begin() as connection:
            assert new <= indexes(connection) and not old & indexes(connection)
            migrate(connection, "0045_active_read_indexes", down=True)
            assert old <= indexes(connection) and not new & indexes(connection)
            migrate(connection, "head")
            assert new <= indexes(connection) and not old & indexes(connection)
    finally:
        engine.dispose()


def test_0048_goes_down_without_the_index_of_records_by_subject_and_up_again(
    database_url: str,
) -> None:
    """The downgrade drops the index of the chained records by subject (and on PostgreSQL the
    accounts' in code point order); a second try finds it done. Up again, they are back."""
    downs, up = _down_twice_and_up(
        database_url,
        "0048_audit_subject_index",
        "0047_disposition_item_index",
        ["audit_records", "accounts"],
    )
    for down in downs:
        assert "ix_audit_records_subject" not in down["audit_records"]
        assert "ix_accounts_code_points" not in down["accounts"]
    assert "ix_audit_records_subject" in up["audit_records"]
    assert ("ix_accounts_code_points" in up["accounts"]) == database_url.startswith("postgresql")


def test_0047_goes_down_to_the_indexes_before_it_and_up_again(database_url: str) -> None:
    """The downgrade drops the index of the dispositions by item and account; a second try
    finds it done. Up again, it is back."""
    downs, up = _down_twice_and_up(
        database_url, "0047_disposition_item_index", "0046_open_report_indexes", ["dispositions"]
    )
    for down in downs:
        assert "ix_dispositions_item_account" not in down["dispositions"]
        assert "ix_dispositions_account_ending" in down["dispositions"]
    assert "ix_dispositions_item_account" in up["dispositions"]


def test_a_closed_name_written_with_a_hangul_filler_is_refused_after_the_names_are_refolded(
    repo: SqlRepository, policy: Policy, database_url: str
) -> None:
    repo.put_account(policy, "bad", name="清朗\u3164日报", subject_id=None, followers=5)
    for n in range(4):
        repo.decide(
            policy, flag(repo, f"p{n}", "bad", "block"), "r1", "confirm", "rumor", "art18.6"
        )
    engine = make_engine(database_url, 5.0)
    try:
        with engine.begin() as connection:
            migrate(connection, "0016_record_per_policy", down=True)
            # as the folding before 0017 stored it (the filler kept, as NFKC makes it), and
            # an earlier name that now folds as the current one does
            old = {"old": "清朗\u1160日报"}
            connection.execute(text("UPDATE accounts SET folded_name = :old"), old)
            connection.execute(text("UPDATE account_names SET folded_name = :old"), old)
            connection.execute(
                text("INSERT INTO account_names (account_id, folded_name) VALUES ('bad', :old)"),
                {"old": "清朗\u3164日报"},
            )
        upgrade(database_url)
        with engine.begin() as connection:
            migrate(connection, "0016_record_per_policy", down=True)
        upgrade(database_url)
        with engine.connect() as connection:
            held = connection.execute(text("SELECT folded_name FROM account_names")).all()
    finally:
        engine.dispose()
    assert [tuple(row) for row in held] == [("清朗日报",)]
    for name in ("清朗\u3164日报", "清朗日报", "清朗\uffa0日报"):
        refused = repo.check_registration(policy, name, "another-subject")
        assert [r["code"] for r in refused.reasons] == ["name_taken"], name


def test_an_earlier_name_whose_link_swallowed_a_hangul_filler_is_folded_from_its_record(
    repo: SqlRepository, policy: Policy, database_url: str
) -> None:
    earlier = "清朗http://x.cn\u3164news"
    repo.put_account(policy, "bad", name=earlier, subject_id=None, followers=5)
    repo.put_account(policy, "bad", name="新名字")
    for n in range(4):
        repo.decide(
            policy, flag(repo, f"p{n}", "bad", "block"), "r1", "confirm", "rumor", "art18.6"
        )
    engine = make_engine(database_url, 5.0)
    try:
        with engine.begin() as connection:
            migrate(connection, "0016_record_per_policy", down=True)
            # as the folding before 0017 stored the earlier name: the filler was a letter, so
            # the link swallowed it and what followed it
            connection.execute(
                text(
                    "UPDATE account_names SET folded_name = '清朗url' WHERE folded_name != '新名字'"
                )
            )
        upgrade(database_url)
        with engine.connect() as connection:
            held = connection.execute(text("SELECT folded_name FROM account_names")).all()
    finally:
        engine.dispose()
    assert sorted(row[0] for row in held) == ["新名字", "清朗urlnews"]
    for name in (earlier, "清朗 http://x.cn news", "清朗http://x.cn/\uffa0news"):
        refused = repo.check_registration(policy, name, "another-subject")
        assert [r["code"] for r in refused.reasons] == ["name_taken"], name
    assert repo.check_registration(policy, "清朗http://x.cn", "another-subject").allowed


def test_open_score_items_without_a_merge_key_take_their_posts_unless_an_open_item_has_it(
    repo: SqlRepository, policy: Policy, database_url: str
) -> None:
    items = {
        name: flag(repo, post, "acc1")
        for name, post in [("alone", "p1"), ("first", "p2"), ("reported", "p3"), ("done", "p4")]
    }
    repo.claim(policy, items["alone"], "r1")
    repo.decide(policy, items["alone"], "r1", "escalate", None, None)
    repo.claim(policy, items["done"], "r1")
    repo.decide(policy, items["done"], "r1", "dismiss", None, None)
    engine = make_engine(database_url, 5.0)
    try:
        with engine.begin() as connection:
            migrate(connection, "0017_names_refolded", down=True)
            # as score items were opened before they took their post's key: a post's second
            # record opened a second item, and its reports one of their own
            connection.execute(text("UPDATE review_queue SET merge_key = NULL"))
            second = connection.execute(
                text(
                    "INSERT INTO review_queue (kind, post_id, account_id, policy_version,"
                    " decision, severity, reach, reports, urgency, status, enqueued_at)"
                    " SELECT kind, post_id, account_id, policy_version, decision, severity,"
                    " reach, reports, urgency, status, enqueued_at FROM review_queue"
                    " WHERE id = :first RETURNING id"
                ),
                {"first": items["first"]},
            ).scalar_one()
            reports = connection.execute(
                text(
                    "INSERT INTO review_queue (kind, post_id, merge_key, policy_version,"
                    " decision, severity, reach, reports, urgency, status, enqueued_at)"
                    " SELECT 'report', post_id, 'post:' || post_id, policy_version, 'review',"
                    " 'report', 0, 1, 0, 'open', enqueued_at FROM review_queue"
                    " WHERE id = :reported RETURNING id"
                ),
                {"reported": items["reported"]},
            ).scalar_one()
        upgrade(database_url)
        with engine.connect() as connection:
            rows = connection.execute(text("SELECT id, merge_key FROM review_queue")).all()
            keys: dict[int, str | None] = {row[0]: row[1] for row in rows}
    finally:
        engine.dispose()
    assert keys == {
        items["alone"]: "post:p1",
        items["first"]: "post:p2",
        second: None,
        items["reported"]: None,
        reports: "post:p3",
        items["done"]: None,
    }


def test_an_abnormal_follower_jump_opens_one_item_per_account_and_a_confirmation_charges_it(
    repo: SqlRepository, policy: Policy
) -> None:
    rules = policy.followers
    for account, before, after in (
        ("small", 3, 30),  # tenfold, but a handful of followers
        ("grown", 100_000, 100_000 + rules.min_gain * 5),  # many more, but not tenfold
    ):
        repo.put_account(policy, account, followers=before, now=T0)
        repo.put_account(policy, account, followers=after, now=T0 + HOUR)
    # an account's first count is where it starts, not a jump from the 0 it was stored with
    repo.put_account(policy, "fresh", followers=5_000_000, now=T0)
    assert repo.list_items(policy, kind="follower_jump").items == []

    repo.put_account(policy, "acc", name="甲", followers=10, now=T0)
    repo.put_account(policy, "acc", followers=2_000_000, now=T0 + HOUR)
    (item,) = repo.list_items(policy, kind="follower_jump").items
    assert (item.account_id, item.head, item.reach) == ("acc", "fake_followers", 2_000_000)
    first = {"before": 10, "after": 2_000_000, "at": (T0 + HOUR).isoformat()}
    assert item.evidence == {"jumps": [{**first, "since": T0.isoformat()}]}
    # a later jump while it is open joins it, with when its own before was given
    repo.put_account(policy, "acc", followers=5, now=T0 + 2 * HOUR)
    repo.put_account(policy, "acc", followers=100_000, now=T0 + 3 * HOUR)
    (joined,) = repo.list_items(policy, kind="follower_jump").items
    assert joined.id == item.id and joined.reach == 100_000
    assert joined.evidence is not None and joined.evidence["jumps"][1] == {
        "before": 5,
        "after": 100_000,
        "at": (T0 + 3 * HOUR).isoformat(),
        "since": (T0 + 2 * HOUR).isoformat(),
    }
    kinds = [(e.kind, e.subject) for e in repo.audit_entries()]
    assert ("review.enqueued", f"item:{item.id}") in kinds
    assert ("review.grown", f"item:{item.id}") in kinds

    decision = repo.decide(
        policy, item.id, "r1", "confirm", "fake_followers", rules.basis, now=T0 + 4 * HOUR
    )
    (change,) = decision.credits
    assert change.delta == -policy.credit.deductions["fake_followers"]
    assert [d.kind for d in decision.dispositions] == ["warning"]
    assert repo.get_account(policy, "acc").credit == policy.credit.initial + change.delta
    # a decided item is closed: the next jump is a new case, which names the one decided
    repo.put_account(policy, "acc", followers=5_000_000, now=T0 + 5 * HOUR)
    (again,) = repo.list_items(policy, kind="follower_jump").items
    assert again.id != item.id
    earlier = {
        "item_id": item.id,
        "status": "confirmed",
        "reviewer": "r1",
        "decided_at": (T0 + 4 * HOUR).isoformat(),
        "reach": 100_000,
    }
    assert again.evidence is not None and again.evidence[EARLIER] == earlier
    opening = ("review.enqueued", f"item:{again.id}")
    (opened,) = [e.payload for e in repo.audit_entries() if (e.kind, e.subject) == opening]
    assert opened["after"] == item.id
    # a jump that joins it keeps the link
    repo.put_account(policy, "acc", followers=5, now=T0 + 6 * HOUR)
    repo.put_account(policy, "acc", followers=900_000, now=T0 + 7 * HOUR)
    (joined,) = repo.list_items(policy, kind="follower_jump").items
    assert joined.id == again.id and joined.evidence is not None
    assert joined.evidence[EARLIER] == earlier and len(joined.evidence["jumps"]) == 2
    assert verify(repo) == []


def test_a_blacklisted_subject_is_not_given_to_another_account_but_stays_with_its_holders(
    repo: SqlRepository, policy: Policy
) -> None:
    subject = "110101199001011234X"
    repo.put_account(policy, "bad", subject_id=subject)
    repo.put_account(policy, "before", name="早先", subject_id="110101-19900101-1234x")
    repo.put_account(policy, "bare", name="无主体")
    _blacklist(repo, policy, "bad")
    detail = "the subject's account bad is blacklisted (art19)"
    # a new account, and a stored one without a subject, in any spelling of it
    for account, spelling in (("new", subject), ("bare", "110101 19900101 1234x")):
        with pytest.raises(ConflictError, match=f"^{re.escape(detail)}$"):
            repo.put_account(policy, account, subject_id=spelling)
    with pytest.raises(NotFoundError):  # refused whole: not even created
        repo.get_account(policy, "new")
    assert repo.get_account(policy, "bare").name == "无主体"
    assert repo.check_registration(policy, "别名", subject).reasons[0]["detail"] == detail
    # the accounts that hold it already (the blacklisted one, one given it before) keep it
    repo.put_account(policy, "bad", subject_id=subject)
    assert repo.put_account(policy, "before", subject_id=subject, followers=4).followers == 4
    # another subject is given freely
    repo.put_account(policy, "bare", subject_id="91110000MA01")


def test_a_subject_holds_at_most_the_policys_accounts_and_closed_ones_do_not_count(
    repo: SqlRepository, policy: Policy
) -> None:
    cap = policy.registration.accounts_per_subject
    subject = "110101199001011234X"
    # one subject in the spellings a form may give it
    spellings = ["110101199001011234x", "110101 19900101 1234X", "110101-19900101-1234x"]
    for n in range(cap):
        repo.put_account(policy, f"a{n}", subject_id=spellings[n % len(spellings)])
    refused = repo.check_registration(policy, "全新名字", subject)
    assert refused.reasons == [
        {
            "code": "subject_at_cap",
            "detail": f"the subject holds {cap} accounts, the cap per subject (art10) is {cap}",
        }
    ]
    with pytest.raises(ConflictError, match=rf"holds {cap} accounts, the cap .* is {cap}"):
        repo.put_account(policy, "extra", name="多一个", subject_id=subject)
    with pytest.raises(NotFoundError):  # refused whole: not even created
        repo.get_account(policy, "extra")
    # an account that holds the subject already is given it again freely
    repo.put_account(policy, "a0", subject_id=subject, followers=3)
    # another subject is counted on its own
    assert repo.check_registration(policy, "全新名字", "91110000MA01").allowed
    # a closed account no longer holds a slot: its subject is refused by art19's blacklist and
    # re-registration ban, by the check and by a profile that gives it to a new account alike
    _blacklist(repo, policy, "a0")
    after = repo.check_registration(policy, "全新名字", subject)
    assert [r["code"] for r in after.reasons] == ["subject_blacklisted"]
    with pytest.raises(ConflictError) as refused_again:
        repo.put_account(policy, "extra", subject_id=subject)
    assert str(refused_again.value) == after.reasons[0]["detail"]


def test_every_item_opened_chains_one_enqueued_record_in_its_transaction(
    repo: SqlRepository, policy: Policy
) -> None:
    """A flagged record, a report, a cluster and a bank match each open an item; a second
    report, or the record of a reported post, joins it and opens nothing."""
    scored = flag(repo, "p1")
    reported = repo.file_report(
        policy,
        post_id="p2",
        account_id="acc2",
        category="incitement",
        text_="煽动",
        reporter="k1",
    ).item_id
    again = repo.file_report(
        policy, post_id="p2", account_id="acc2", category="rumor", text_="谣言", reporter="k2"
    )
    assert again.item_id == reported
    assert flag(repo, "p2", "acc2") == reported
    members = [{"post_id": f"b{n}", "account_id": f"bot{n}"} for n in range(3)]
    batch = coordinated_batch(repo, policy, "cluster:c1", members).id
    match = repo.enqueue(
        policy,
        kind="bank_match",
        merge_key="bank:7:post:p3",
        head="rumor",
        severity="block",
        reach=0,
        evidence={"bank_entry": 7},
        post_id="p3",
    ).id
    entries = list(repo.audit_entries())
    opened = {e.subject: e for e in entries if e.kind == "review.enqueued"}
    assert {
        subject: (e.payload["kind"], e.payload["merge_key"], e.payload["head"])
        for subject, e in opened.items()
    } == {
        f"item:{scored}": ("score", "post:p1", repo.get_item(policy, scored).head),
        f"item:{reported}": ("report", "post:p2", "incitement"),
        f"item:{batch}": ("cluster", "cluster:c1", "coordination"),
        f"item:{match}": ("bank_match", "bank:7:post:p3", "rumor"),
    }
    assert len(opened) == len([e for e in entries if e.kind == "review.enqueued"])
    assert {tuple(sorted(e.payload)) for e in opened.values()} == {
        ("head", "kind", "merge_key", "severity")
    }
    assert opened[f"item:{reported}"].payload["severity"] == "report"
    # each in the transaction that opened its item: the record (or report) that opened it
    # is chained at the same moment, right before or after it
    by_seq = {e.seq: e for e in entries}
    first_report = next(e for e in entries if e.kind == "report.filed")
    assert first_report.payload["item"] == reported
    assert by_seq[first_report.seq - 1].subject == f"item:{reported}"
    assert by_seq[first_report.seq - 1].at == first_report.at
    flagged = next(e for e in entries if e.kind == "score.flagged")
    assert by_seq[flagged.seq + 1].subject == f"item:{scored}"
    assert by_seq[flagged.seq + 1].at == flagged.at
    assert verify(repo) == []


def test_answers_kept_for_retries_are_pruned_past_the_cutoff_once_whatever_the_processes(
    repo: SqlRepository, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rows older than the cutoff go, in transactions of ``PRUNE_ROWS``, and no newer one;
    three processes pruning at once delete each row once between them (their counts add up to
    the rows there were), whichever of them takes which."""
    monkeypatch.setattr(idempotency_sql, "PRUNE_ROWS", 7)
    now = datetime.now(UTC)
    rows = [
        {
            "caller": f"caller-{n % 3}",
            "key": f"key-{n}",
            "fingerprint": "f" * 64,
            "response": {"n": n},
            "created_at": now - timedelta(hours=100 - n),
        }
        for n in range(100)
    ]
    with repo.engine.begin() as connection:
        connection.execute(insert(IdempotentWrite), rows)
    cutoff = now - timedelta(hours=40, minutes=30)  # rows 0 to 59 are older
    processes = [open_repository(database_url, 5.0) for _ in range(3)]
    counts: list[int] = []
    start = threading.Barrier(len(processes))

    def prune(process: SqlRepository) -> None:
        start.wait()
        counts.append(process.prune_idempotency_keys(cutoff))

    threads = [threading.Thread(target=prune, args=(p,)) for p in processes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for process in processes:
        process.close()
    with repo.engine.connect() as connection:
        kept = connection.execute(select(IdempotentWrite.key)).scalars().all()
    assert sorted(kept) == sorted(f"key-{n}" for n in range(60, 100))
    assert sum(counts) == 60
    assert repo.prune_idempotency_keys(cutoff) == 0
    # a key pruned is free again: its retry is made as a new write
    policy = load_policy(Settings().policy_file)
    idem = Idempotency("caller-0", "key-0", "0" * 64)
    filed = repo.file_report(
        policy,
        post_id="p1",
        account_id=None,
        category="rumor",
        text_="",
        reporter="k",
        idem=idem,
    )
    assert filed.post_id == "p1"
