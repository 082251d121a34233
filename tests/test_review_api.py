"""The review API end to end: queue, claims, decisions, accounts, reports, appeals,
re-registration; roles, idempotency keys and bad input."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from servicekit import Api, open_api, record, wait_for
from sqlalchemy import text, update

from service.heads import RISKS
from service.neardup import queue
from service.pipeline import Pipeline
from service.record import Post, Reason
from service.review.dispositions import Standing, Stop
from service.storage import Pending, SqlRepository
from service.storage.repository import Idempotency
from service.storage.tables import IdempotentWrite, ReviewItem

RUMOR = "紧急扩散！明天起全市停水三天，自来水厂已被污染，赶紧囤水，转给家人！"
HOSTILE = "<script>alert('x')</script>\"; DROP TABLE reports; --\u200b\u200c\ufeff" + "谣" * 9_940


def flagged_item(api: Api, post_id: str, account: str = "acc1") -> dict[str, Any]:
    assert api.score({"id": post_id, "text": RUMOR, "account_id": account}).status_code == 200
    reviewer = api.new_key("reviewer")
    items = api.client.get("/v1/review/items", headers=api.headers(reviewer)).json()["items"]
    (item,) = [i for i in items if i["post_id"] == post_id]
    assert isinstance(item, dict)
    return item


def test_a_flagged_post_is_reviewed_confirmed_appealed_and_reversed(api: Api) -> None:
    first, second = api.new_key("reviewer"), api.new_key("reviewer")
    item = flagged_item(api, "p1")
    assert item["kind"] == "score" and item["account_id"] == "acc1" and item["status"] == "open"
    url = f"/v1/review/items/{item['id']}"
    lease = api.client.post(f"{url}/claim", headers=api.headers(first))
    assert lease.status_code == 200 and lease.json()["lease_until"]
    taken = api.client.post(f"{url}/claim", headers=api.headers(second))
    assert taken.status_code == 409
    # the lease's end in ISO 8601 with its zone, as the appeal window's (a space was written)
    said, until = taken.json()["detail"].rsplit(" ", 1)
    assert said == "the item is claimed by another reviewer until"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?\+00:00", until), until
    assert datetime.fromisoformat(until) == datetime.fromisoformat(lease.json()["lease_until"])
    missing = api.client.post(
        f"{url}/decision", json={"action": "confirm"}, headers=api.headers(first)
    )
    assert missing.status_code == 422
    assert [e["loc"] for e in missing.json()["detail"]] == [
        ["body", "category"],
        ["body", "basis"],
    ]
    # an article the Provisions do not have is refused, said so, and nothing is decided
    for basis, said in [
        ("art99", "'art99' names no article of the Provisions: they have articles 1 to 23"),
        ("art18.11", "'art18.11' names no item of article 18: it lists items 1 to 10"),
    ]:
        wrong = {"action": "confirm", "category": "rumor", "basis": basis}
        refused = api.client.post(f"{url}/decision", json=wrong, headers=api.headers(first))
        assert refused.status_code == 422
        assert [(e["loc"], e["type"], e["msg"]) for e in refused.json()["detail"]] == [
            (["body", "basis"], "unknown_article", said)
        ]
    assert api.client.get(url, headers=api.headers(first)).json()["status"] == "open"
    decided = api.client.post(
        f"{url}/decision",
        json={"action": "confirm", "category": "rumor", "basis": "art18.6"},
        headers=api.headers(first),
    )
    assert decided.status_code == 200, decided.text
    body = decided.json()
    assert body["status"] == "confirmed" and body["credits"][0]["delta"] < 0
    assert [d["kind"] for d in body["dispositions"]] == ["warning"]
    again = api.client.post(
        f"{url}/decision", json={"action": "dismiss"}, headers=api.headers(second)
    )
    assert again.status_code == 409
    account = api.client.get("/v1/accounts/acc1", headers=api.headers()).json()
    assert account["credit"] == 100 + body["credits"][0]["delta"]
    assert [d["kind"] for d in account["dispositions"]] == ["warning"]
    appeal = api.client.post(
        "/v1/appeals",
        json={"account_id": "acc1", "item_id": item["id"], "reason": "这是辟谣"},
        headers=api.headers(),
    )
    assert appeal.status_code == 200, appeal.text
    appeal_url = f"/v1/appeals/{appeal.json()['id']}/decision"
    waiting = api.client.get("/v1/appeals?status=pending", headers=api.headers(first)).json()
    assert [a["id"] for a in waiting["appeals"]] == [appeal.json()["id"]]
    assert (waiting["pending"], waiting["next"]) == (1, None)
    for query in ("status=gone", "cursor=nope"):
        bad = api.client.get(f"/v1/appeals?{query}", headers=api.headers(first))
        assert bad.status_code == 422, query
    own = api.client.post(appeal_url, json={"action": "uphold"}, headers=api.headers(first))
    assert own.status_code == 403
    upheld = api.client.post(appeal_url, json={"action": "uphold"}, headers=api.headers(second))
    assert upheld.status_code == 200 and upheld.json()["status"] == "upheld"
    account = api.client.get("/v1/accounts/acc1", headers=api.headers()).json()
    assert account["credit"] == 100 and account["dispositions"] == []
    assert len(account["history"]) == 3


def test_the_platform_reads_the_answer_to_the_appeal_it_filed(api: Api) -> None:
    """Art20's feedback: the publisher key that filed an appeal reads its status, the answer's
    note and deadline (who answered is the trust team's to read)."""
    deciding, answering = api.new_key("reviewer"), api.new_key("reviewer")
    item = flagged_item(api, "p1")
    confirm = {"action": "confirm", "category": "rumor", "basis": "art18.6"}
    decided = api.client.post(
        f"/v1/review/items/{item['id']}/decision", json=confirm, headers=api.headers(deciding)
    )
    assert decided.status_code == 200, decided.text
    filed = api.client.post(
        "/v1/appeals",
        json={"account_id": "acc1", "item_id": item["id"], "reason": "这是辟谣"},
        headers=api.headers(),
    ).json()
    url = f"/v1/appeals/{filed['id']}"
    waiting = api.client.get(url, headers=api.headers())
    assert waiting.status_code == 200, waiting.text
    assert waiting.json() == filed
    rejected = {"action": "reject", "note": "原帖与官方通报不符"}
    answer = api.client.post(f"{url}/decision", json=rejected, headers=api.headers(answering))
    assert answer.status_code == 200, answer.text
    told = api.client.get(url, headers=api.headers()).json()
    assert (told["status"], told["note"], told["deadline"]) == (
        "rejected",
        rejected["note"],
        filed["deadline"],
    )
    assert told["resolved_at"] == answer.json()["resolved_at"] and told["resolved_by"] is None
    seen = api.client.get(url, headers=api.headers(answering)).json()
    assert seen["resolved_by"] == answering.split("_")[1]
    assert api.client.get("/v1/appeals/999", headers=api.headers()).status_code == 404


def test_an_escalated_item_is_claimed_and_decided_by_an_admin(api: Api) -> None:
    """An escalation (上报, "report upward") goes to someone senior: a reviewer key, the one
    that escalated or another, gets 403 saying so on a claim or decision; an admin key takes
    it, another admin's than the one that escalated it."""
    escalating, other = api.new_key("reviewer"), api.new_key("reviewer")
    admin, second_admin = api.new_key("admin"), api.new_key("admin")
    first, second = flagged_item(api, "p1"), flagged_item(api, "p2", "acc2")
    escalate = {"action": "escalate", "note": "需要法务看一下"}
    for item, by in ((first, escalating), (second, admin)):
        url = f"/v1/review/items/{item['id']}/decision"
        escalated = api.client.post(url, json=escalate, headers=api.headers(by))
        assert escalated.status_code == 200 and escalated.json()["status"] == "escalated"
    dismiss = {"action": "dismiss"}
    url = f"/v1/review/items/{first['id']}"
    said = {
        escalating: "an escalated item goes to an admin other than the one who escalated it",
        other: "an escalated item is claimed and decided by an admin (role 'admin'), not by a "
        "reviewer",
    }
    for key, words in said.items():
        for path, body in (("claim", None), ("decision", dismiss)):
            refused = api.client.post(f"{url}/{path}", json=body, headers=api.headers(key))
            assert (refused.status_code, refused.json()["detail"]) == (403, words), path
    # an admin that escalated passes it to another admin
    own = api.client.post(f"/v1/review/items/{second['id']}/claim", headers=api.headers(admin))
    assert own.status_code == 403 and "other than the one who escalated" in own.json()["detail"]
    # nothing was held nor decided by the refusals: the items wait, unclaimed
    waiting = api.client.get("/v1/review/items?status=escalated", headers=api.headers(other))
    assert {(i["id"], i["assignee"]) for i in waiting.json()["items"]} == {
        (first["id"], None),
        (second["id"], None),
    }
    lease = api.client.post(f"{url}/claim", headers=api.headers(admin))
    assert lease.status_code == 200 and lease.json()["assignee"] == admin.split("_")[1]
    confirm = {"action": "confirm", "category": "rumor", "basis": "art18.6"}
    decided = api.client.post(f"{url}/decision", json=confirm, headers=api.headers(admin))
    assert decided.status_code == 200 and decided.json()["status"] == "confirmed"
    decided = api.client.post(
        f"/v1/review/items/{second['id']}/decision",
        json=dismiss,
        headers=api.headers(second_admin),
    )
    assert decided.status_code == 200 and decided.json()["status"] == "dismissed"
    # the appeal of an escalation's decision is an admin's too: a reviewer's upholding, the
    # escalator's above all, undid it
    appeal = api.client.post(
        "/v1/appeals",
        json={"account_id": "acc1", "item_id": first["id"], "reason": "这是辟谣"},
        headers=api.headers(),
    )
    assert appeal.status_code == 200, appeal.text
    url = f"/v1/appeals/{appeal.json()['id']}/decision"
    uphold = {"action": "uphold"}
    for key in (escalating, other):
        refused = api.client.post(url, json=uphold, headers=api.headers(key))
        assert (refused.status_code, refused.json()["detail"]) == (
            403,
            "the appealed decision was taken on an escalated item: an admin (role 'admin') "
            "resolves its appeal, not a reviewer",
        )
    own = api.client.post(url, json=uphold, headers=api.headers(admin))
    assert own.status_code == 403 and "other than the one who decided" in own.json()["detail"]
    upheld = api.client.post(url, json=uphold, headers=api.headers(second_admin))
    assert upheld.status_code == 200 and upheld.json()["status"] == "upheld"


def test_the_admin_who_escalated_an_item_does_not_resolve_the_appeal_of_its_decision(
    api: Api,
) -> None:
    """The escalator was kept from deciding the item: upholding its appeal would undo the
    decision another admin took in their place."""
    escalating, deciding, third = (api.new_key("admin") for _ in range(3))
    item = flagged_item(api, "pf", "accF")
    url = f"/v1/review/items/{item['id']}/decision"
    escalated = api.client.post(url, json={"action": "escalate"}, headers=api.headers(escalating))
    assert escalated.status_code == 200
    confirm = {"action": "confirm", "category": "rumor", "basis": "art18.6"}
    assert api.client.post(url, json=confirm, headers=api.headers(deciding)).status_code == 200
    appeal = api.client.post(
        "/v1/appeals",
        json={"account_id": "accF", "item_id": item["id"], "reason": "x"},
        headers=api.headers(),
    )
    url = f"/v1/appeals/{appeal.json()['id']}/decision"
    own = api.client.post(url, json={"action": "uphold"}, headers=api.headers(escalating))
    assert (own.status_code, own.json()["detail"]) == (
        403,
        "the appealed decision was taken on an item you escalated: an admin other than the one "
        "who escalated it resolves its appeal, as another decided the item",
    )
    upheld = api.client.post(url, json={"action": "uphold"}, headers=api.headers(third))
    assert upheld.status_code == 200 and upheld.json()["status"] == "upheld"


def test_an_appeal_filed_with_a_users_key_is_not_resolved_by_that_user(api: Api) -> None:
    """An admin key of a console user files an appeal as a publisher key does: that user, by
    the same key or another of theirs, does not resolve it, as they would not one they filed
    in the console (one person would ask for a decision to be reversed and reverse it)."""
    deciding = api.new_key("reviewer")
    filing, other_of_theirs = api.new_key("admin", "li"), api.new_key("reviewer", "li")
    item = flagged_item(api, "pg", "accG")
    confirm = {"action": "confirm", "category": "rumor", "basis": "art18.6"}
    url = f"/v1/review/items/{item['id']}/decision"
    assert api.client.post(url, json=confirm, headers=api.headers(deciding)).status_code == 200
    appeal = api.client.post(
        "/v1/appeals",
        json={"account_id": "accG", "item_id": item["id"], "reason": "x"},
        headers=api.headers(filing),
    )
    assert appeal.status_code == 200, appeal.text
    url = f"/v1/appeals/{appeal.json()['id']}/decision"
    for key in (filing, other_of_theirs):
        own = api.client.post(url, json={"action": "uphold"}, headers=api.headers(key))
        assert own.status_code == 403, own.text
        assert own.json()["detail"] == (
            "an appeal is resolved by a reviewer other than the one who filed it"
        )
    upheld = api.client.post(url, json={"action": "uphold"}, headers=api.headers())
    assert upheld.status_code == 403  # a publisher key resolves nothing
    second = api.new_key("reviewer")
    upheld = api.client.post(url, json={"action": "uphold"}, headers=api.headers(second))
    assert upheld.status_code == 200 and upheld.json()["status"] == "upheld"


def test_roles_and_unknown_things(api: Api) -> None:
    reviewer = api.new_key("reviewer")
    assert api.client.get("/v1/review/items", headers=api.headers()).status_code == 403
    report = {"post_id": "p1", "category": "rumor", "text": "假"}
    assert (
        api.client.post("/v1/reports", json=report, headers=api.headers(reviewer)).status_code
        == 403
    )
    assert api.client.get("/v1/review/items").status_code == 401
    for method, url, body in [
        ("post", "/v1/review/items/999/claim", None),
        ("post", "/v1/review/items/999/decision", {"action": "dismiss"}),
        ("get", "/v1/review/items/999", None),
        ("post", "/v1/appeals/999/decision", {"action": "reject"}),
    ]:
        answer = api.client.request(method, url, json=body, headers=api.headers(reviewer))
        assert answer.status_code == 404, (url, answer.text)
    assert api.client.get("/v1/accounts/ghost", headers=api.headers()).status_code == 404
    assert api.client.get("/v1/reports/999", headers=api.headers()).status_code == 404
    bad = api.client.get("/v1/review/items?status=gone", headers=api.headers(reviewer))
    assert bad.status_code == 422
    cursor = api.client.get("/v1/review/items?cursor=nope", headers=api.headers(reviewer))
    assert cursor.status_code == 422
    assert cursor.json()["detail"][0]["loc"] == ["query", "cursor"]
    nothing = api.client.post("/v1/reports", json={"category": "rumor"}, headers=api.headers())
    assert nothing.status_code == 422
    basis = api.client.post(
        "/v1/review/items/1/decision",
        json={"action": "confirm", "category": "rumor", "basis": "because"},
        headers=api.headers(reviewer),
    )
    assert basis.status_code == 422
    # only a confirmation says what an item is: a dismissal's category was stored as what it
    # dismissed, and its label that category's 0, whatever the item's head
    for action in ("dismiss", "escalate"):
        given = {"action": action, "category": "incitement", "basis": "art18.3"}
        said = api.client.post(
            "/v1/review/items/1/decision", json=given, headers=api.headers(reviewer)
        )
        assert said.status_code == 422, action
        assert [(e["loc"], e["msg"]) for e in said.json()["detail"]] == [
            (
                ["body", "category"],
                "Value error, only a confirmation takes a category: a dismissal says the "
                "item's head is no violation, an escalation says nothing yet",
            ),
            (
                ["body", "basis"],
                "Value error, only a confirmation takes a basis (the article): a dismissal "
                "says the item's head is no violation, an escalation says nothing yet",
            ),
        ]


def test_reports_merge_and_retries_with_an_idempotency_key_count_once(api: Api) -> None:
    item = flagged_item(api, "p1")
    report = {"post_id": "p1", "category": "rumor", "text": "转发很多"}
    headers = {**api.headers(), "Idempotency-Key": "complaint-1"}
    first = api.client.post("/v1/reports", json=report, headers=headers)
    retry = api.client.post("/v1/reports", json=report, headers=headers)
    assert first.status_code == retry.status_code == 200
    assert first.json() == retry.json()
    assert first.json()["item_id"] == item["id"] and first.json()["item_reports"] == 1
    other = api.client.post("/v1/reports", json={**report, "text": "不同"}, headers=headers)
    assert other.status_code == 422
    assert other.json()["detail"][0]["loc"] == ["header", "Idempotency-Key"]
    # the same reporter again is stored, and counts once towards the priority
    again = api.client.post("/v1/reports", json=report, headers=api.headers())
    assert again.json()["item_reports"] == 1
    other_key = api.headers(api.new_key("publisher"))
    second = api.client.post("/v1/reports", json=report, headers=other_key)
    assert second.json()["item_reports"] == 2
    reviewer = api.new_key("reviewer")
    shown = api.client.get(f"/v1/review/items/{item['id']}", headers=api.headers(reviewer)).json()
    assert shown["reports"] == 2 and shown["priority"] > item["priority"]
    status = api.client.get(f"/v1/reports/{first.json()['id']}", headers=api.headers()).json()
    assert status["status"] == "open"


def test_an_item_queued_days_before_its_first_report_is_due_when_the_report_is(api: Api) -> None:
    """Art20's time limit runs from the complaint: the item a report joins, queued days
    before, is listed due at the report's deadline, not overdue on the report's arrival."""
    item = flagged_item(api, "p1")
    assert item["deadline"] is None  # nobody reported it yet
    repository = api.services.scoring.repository
    assert isinstance(repository, SqlRepository)
    queued = datetime.now(UTC) - timedelta(days=5)
    with repository.engine.begin() as db:
        db.execute(update(ReviewItem).where(ReviewItem.id == item["id"]).values(enqueued_at=queued))
    body = {"post_id": "p1", "category": "rumor", "text": "转发很多"}
    report = api.client.post("/v1/reports", json=body, headers=api.headers()).json()
    assert report["item_id"] == item["id"] and not report["overdue"]
    reviewer = api.headers(api.new_key("reviewer"))
    (listed,) = api.client.get("/v1/review/items", headers=reviewer).json()["items"]
    shown = api.client.get(f"/v1/review/items/{item['id']}", headers=reviewer).json()
    assert listed["deadline"] == shown["deadline"] == report["deadline"]
    assert datetime.fromisoformat(report["deadline"]) > datetime.now(UTC)


def test_an_empty_idempotency_key_is_refused_not_shared_by_every_write(api: Api) -> None:
    # a client that sends the header empty when it has no key would otherwise have its first
    # such write taken as the key's request, and every later one refused as reusing it
    empty = {**api.headers(), "Idempotency-Key": ""}
    for name in ("甲", "乙"):
        put = api.client.put("/v1/accounts/acc1", json={"name": name}, headers=empty)
        assert put.status_code == 422
        (problem,) = put.json()["detail"]
        assert problem["loc"] == ["header", "Idempotency-Key"]
        assert problem["type"] == "string_too_short"


def test_reports_a_key_forwards_from_distinct_users_count_per_user(api: Api) -> None:
    item = flagged_item(api, "p1")
    report = {"post_id": "p1", "category": "rumor"}

    def filed(body: dict[str, Any], **headers: str) -> httpx.Response:
        return api.client.post("/v1/reports", json=body, headers={**api.headers(), **headers})

    assert filed(report).json()["item_reports"] == 1
    users = [filed({**report, "reporter_id": f"user-{n}"}).json() for n in range(3)]
    assert [u["item_reports"] for u in users] == [2, 3, 4]
    assert users[0]["reporter_id"] == "user-0"
    assert filed({**report, "reporter_id": "user-0"}).json()["item_reports"] == 4
    for odd in (" ", "", "x" * 257, 7, "a\x00b"):
        refused = filed({**report, "reporter_id": odd})
        assert refused.status_code == 422, odd
        assert refused.json()["detail"][0]["loc"] == ["body", "reporter_id"], odd
    # a key stored for a report without an id is matched by the body's old form, without it
    keyed = filed(report, **{"Idempotency-Key": "before"})
    repository = api.services.scoring.repository
    assert isinstance(repository, SqlRepository)
    with repository.engine.connect() as db:
        caller, fingerprint = db.execute(
            text("SELECT caller, fingerprint FROM idempotency_keys WHERE key = 'before'")
        ).one()
    old_form = {"post_id": "p1", "account_id": None, "category": "rumor", "text": ""}
    assert Idempotency(caller, "before", fingerprint) == Idempotency.of(
        caller, "before", "report", old_form
    )
    retry = filed(report, **{"Idempotency-Key": "before"})
    assert retry.json() == keyed.json()
    with_id = filed({**report, "reporter_id": "user-9"}, **{"Idempotency-Key": "before"})
    assert with_id.status_code == 422
    reviewer = api.headers(api.new_key("reviewer"))
    shown = api.client.get(f"/v1/review/items/{item['id']}", headers=reviewer).json()
    assert shown["reports"] == 4


def test_an_appeal_after_its_window_gets_409_with_the_deadline(api: Api) -> None:
    item = flagged_item(api, "p1")
    policy = api.services.scoring.policy
    long_ago = datetime.now(UTC) - timedelta(days=policy.appeals.file_within_days + 1)
    api.services.review.decide(
        policy, item["id"], "r1", "confirm", "rumor", "art18.6", now=long_ago
    )
    late = api.client.post(
        "/v1/appeals",
        json={"account_id": "acc1", "item_id": item["id"], "reason": "晚了"},
        headers=api.headers(),
    )
    assert late.status_code == 409
    deadline = datetime.fromisoformat(late.json()["deadline"])
    assert deadline == long_ago + timedelta(days=policy.appeals.file_within_days)
    overdue = api.client.get("/v1/appeals?overdue=true", headers=api.headers(api.new_key("admin")))
    assert overdue.status_code == 200 and overdue.json()["overdue"] == 0


def test_who_decided_and_lifted_is_shown_to_the_trust_team_only(api: Api) -> None:
    # console users decide under their own names: people's names, not the platform's to read
    item = flagged_item(api, "p1")
    policy, review = api.services.scoring.policy, api.services.review
    review.decide(policy, item["id"], "张伟", "confirm", "rumor", "art18.6")
    appeal = review.file_appeal(
        policy, account_id="acc1", item_id=item["id"], reason="辟谣", filed_by=api.key
    )
    review.decide_appeal(policy, appeal.id, "李娜", "uphold", None)

    def dispositions(body: dict[str, Any]) -> list[dict[str, Any]]:
        return [e for e in body["history"] if "decided_by" in e]

    for role in ("reviewer", "admin"):
        seen = api.client.get("/v1/accounts/acc1", headers=api.headers(api.new_key(role)))
        assert seen.status_code == 200
        (shown,) = dispositions(seen.json())
        assert (shown["decided_by"], shown["lifted_by"]) == ("张伟", "李娜"), role
    profile = {"followers": 5}
    for answer in (
        api.client.get("/v1/accounts/acc1", headers=api.headers()),
        api.client.put("/v1/accounts/acc1", json=profile, headers=api.headers()),
    ):
        assert answer.status_code == 200, answer.text
        (hidden,) = dispositions(answer.json())
        assert (hidden["decided_by"], hidden["lifted_by"]) == (None, None)
        assert hidden["lifted_at"] and "张伟" not in answer.text and "李娜" not in answer.text


def test_an_account_s_history_is_paged_by_cursor_and_a_bad_cursor_or_limit_is_named(
    api: Api,
) -> None:
    """The history comes ``limit`` entries at a time (``next`` the cursor of the page after),
    as the other listings do: the first page as the whole was while it fits, every entry once
    across pages, oldest first unless ``order=newest`` asks for the reverse; a cursor no page
    gave out, a limit out of range or an order of neither kind, 422 at its parameter."""
    policy, review = api.services.scoring.policy, api.services.review
    for post in ("p1", "p2"):
        item = flagged_item(api, post)
        review.decide(policy, item["id"], "张伟", "confirm", "rumor", "art18.6")
    url, headers = "/v1/accounts/acc1", api.headers(api.new_key("reviewer"))
    whole = api.client.get(url, headers=headers).json()
    assert whole["next"] is None and len(whole["history"]) >= 4
    paged, query = [], "?limit=1"
    while True:
        page = api.client.get(url + query, headers=headers)
        assert page.status_code == 200, page.text
        body = page.json()
        assert len(body["history"]) == 1
        assert {k: v for k, v in body.items() if k not in ("history", "next")} == {
            k: v for k, v in whole.items() if k not in ("history", "next")
        }
        paged += body["history"]
        if body["next"] is None:
            break
        query = f"?limit=1&cursor={body['next']}"
    assert paged == whole["history"]
    newest, query = [], "?order=newest&limit=1"
    while query:
        body = api.client.get(url + query, headers=headers).json()
        newest += body["history"]
        query = body["next"] and f"?order=newest&limit=1&cursor={body['next']}"
    assert newest == whole["history"][::-1]
    explicit = api.client.get(f"{url}?order=oldest", headers=headers).json()
    assert explicit == whole
    for bad, where in [
        ("order=latest", "order"),
        ("cursor=nope", "cursor"),
        ("cursor=", "cursor"),
        ("cursor=x1_1", "cursor"),
        ("cursor=c1_0", "cursor"),
        ("cursor=d99999999999999999999999_1", "cursor"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=some", "limit"),
    ]:
        refused = api.client.get(f"{url}?{bad}", headers=headers)
        assert refused.status_code == 422, bad
        assert [e["loc"] for e in refused.json()["detail"]] == [["query", where]], bad
    nope = api.client.get(f"{url}?cursor=nope", headers=headers).json()
    assert nope["detail"][0]["msg"] == "not a cursor this API gave out"


def test_a_history_cursor_passed_with_the_other_order_is_named_and_says_why(api: Api) -> None:
    """A history page's ``next`` is a place read in one order: passed with the other, it would
    seek the entries on the place's other side, so it is a 422 at the cursor that says the
    order it was read in. A cursor of the default order (oldest first) is written as it was
    before cursors knew their order, and reads the page it read."""
    policy, review = api.services.scoring.policy, api.services.review
    for post in ("p1", "p2"):
        item = flagged_item(api, post)
        review.decide(policy, item["id"], "张伟", "confirm", "rumor", "art18.6")
    url, headers = "/v1/accounts/acc1", api.headers(api.new_key("reviewer"))
    oldest = api.client.get(f"{url}?limit=1", headers=headers).json()["next"]
    newest = api.client.get(f"{url}?limit=1&order=newest", headers=headers).json()["next"]
    assert oldest and newest
    # the form every cursor had before: the kind's initial, the moment and the id
    assert re.fullmatch(r"[cd]\d+_\d+", oldest), oldest
    read = api.client.get(f"{url}?limit=1&cursor={oldest}&order=oldest", headers=headers)
    assert read.status_code == 200, read.text
    assert read.json() == api.client.get(f"{url}?limit=1&cursor={oldest}", headers=headers).json()
    for cursor, order, given in [
        (oldest, "newest", "oldest"),
        (newest, "oldest", "newest"),
        (newest, None, "newest"),
    ]:
        query = f"?limit=1&cursor={cursor}" + (f"&order={order}" if order else "")
        refused = api.client.get(url + query, headers=headers)
        assert refused.status_code == 422, (query, refused.text)
        (error,) = refused.json()["detail"]
        assert error["loc"] == ["query", "cursor"], query
        assert error["msg"] == (
            f"a page's next read in order={given}, not order={order or 'oldest'}: "
            "pass it with the order its page was read in"
        ), query


def test_an_account_s_active_dispositions_are_paged_and_a_bad_cursor_or_limit_is_named(
    api: Api,
) -> None:
    """``/v1/accounts/{id}/dispositions`` lists the active dispositions ``limit`` at a time
    (``next`` the cursor of the page after, as the appeals listing's), every one once; the
    account's answer holds the first page and ``dispositions_next``; who decided for the trust
    team only; a cursor no page gave out, or a limit out of range, 422 at its parameter."""
    policy, review = api.services.scoring.policy, api.services.review
    for post in ("p1", "p2", "p3"):
        item = flagged_item(api, post)
        review.decide(policy, item["id"], "张伟", "confirm", "rumor", "art18.6")
    url, headers = "/v1/accounts/acc1/dispositions", api.headers(api.new_key("reviewer"))
    account = api.client.get("/v1/accounts/acc1", headers=headers).json()
    assert account["dispositions_next"] is None and len(account["dispositions"]) >= 2
    whole = api.client.get(url, headers=headers)
    assert whole.status_code == 200, whole.text
    assert whole.json() == {"dispositions": account["dispositions"], "next": None}
    paged, query = [], "?limit=1"
    while query:
        page = api.client.get(url + query, headers=headers)
        assert page.status_code == 200, page.text
        body = page.json()
        assert len(body["dispositions"]) == 1
        paged += body["dispositions"]
        query = body["next"] and f"?limit=1&cursor={body['next']}"
    assert paged == account["dispositions"]
    assert {d["decided_by"] for d in paged} == {"张伟"}
    hidden = api.client.get(url, headers=api.headers())
    assert hidden.status_code == 200 and "张伟" not in hidden.text
    for bad, where in [
        ("cursor=nope", "cursor"),
        ("cursor=", "cursor"),
        ("cursor=c1_1", "cursor"),
        ("cursor=99999999999999999999999_1", "cursor"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=some", "limit"),
    ]:
        refused = api.client.get(f"{url}?{bad}", headers=headers)
        assert refused.status_code == 422, bad
        assert [e["loc"] for e in refused.json()["detail"]] == [["query", where]], bad
    missing = api.client.get("/v1/accounts/nobody/dispositions", headers=headers)
    assert missing.status_code == 404


def test_the_platform_polls_the_dispositions_it_must_carry_out(api: Api) -> None:
    """Art19's dispositions and their lifting on an upheld appeal (art20), for the platform to
    carry out: each once, in commit order, who decided for the trust team only."""
    feed, headers = "/v1/dispositions", api.headers()
    empty = api.client.get(feed, headers=headers)
    assert empty.status_code == 200, empty.text
    assert empty.json() == {"changes": [], "next": 0}
    item = flagged_item(api, "p1")
    policy, review = api.services.scoring.policy, api.services.review
    review.decide(policy, item["id"], "张伟", "confirm", "rumor", "art18.6")
    appeal = review.file_appeal(
        policy, account_id="acc1", item_id=item["id"], reason="辟谣", filed_by=api.key
    )
    review.decide_appeal(policy, appeal.id, "李娜", "uphold", None)
    whole = api.client.get(feed, headers=headers)
    assert "张伟" not in whole.text and "李娜" not in whole.text
    first = api.client.get(f"{feed}?limit=1", headers=headers).json()
    (applied,) = first["changes"]
    assert first["next"] == applied["seq"] and applied["change"] == "applied"
    rest = api.client.get(f"{feed}?after={first['next']}", headers=headers).json()
    (lifted,) = rest["changes"]
    assert (lifted["change"], lifted["appeal_id"]) == ("lifted", appeal.id)
    done = api.client.get(f"{feed}?after={rest['next']}", headers=headers).json()
    assert done == {"changes": [], "next": rest["next"]}
    account = api.client.get("/v1/accounts/acc1", headers=headers).json()
    (shown,) = [e for e in account["history"] if "decided_by" in e]
    assert lifted["disposition"] == shown
    assert applied["disposition"] == {**shown, "lifted_at": None, "active": True}
    assert shown["account_id"] == "acc1" and shown["item_id"] == item["id"]
    assert whole.json()["changes"] == [applied, lifted]
    for role in ("reviewer", "admin"):
        seen = api.client.get(feed, headers=api.headers(api.new_key(role))).json()
        signed = [c["disposition"] for c in seen["changes"]]
        assert [(d["decided_by"], d["lifted_by"]) for d in signed] == [
            ("张伟", None),
            ("张伟", "李娜"),
        ], role
    assert api.client.get(feed).status_code == 401
    for query in ("after=nope", "after=-1", "after=1.5", f"after={rest['next'] + 1}"):
        bad = api.client.get(f"{feed}?{query}", headers=headers)
        assert bad.status_code == 422, query
        assert [e["loc"] for e in bad.json()["detail"]] == [["query", "after"]], query
    past = api.client.get(f"{feed}?after={rest['next'] + 1}", headers=headers).json()
    assert "not a cursor this API gave out" in past["detail"][0]["msg"]
    for limit in ("0", "1001"):
        bad = api.client.get(f"{feed}?limit={limit}", headers=headers)
        assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["query", "limit"]


@pytest.mark.parametrize("field", ["text", "post_id"])
def test_hostile_text_is_stored_and_returned_exactly(api: Api, field: str) -> None:
    value = HOSTILE if field == "text" else "'; DROP TABLE x; --<b>\u200b"
    body = {"post_id": "p1", "category": "incitement", "text": "t", field: value}
    filed = api.client.post("/v1/reports", json=body, headers=api.headers())
    assert filed.status_code == 200, filed.text
    shown = api.client.get(f"/v1/reports/{filed.json()['id']}", headers=api.headers()).json()
    assert shown[field] == value
    assert "application/json" in filed.headers["content-type"]
    too_long = api.client.post(
        "/v1/reports", json={**body, "text": "长" * 10_001}, headers=api.headers()
    )
    assert too_long.status_code == 422
    nul = api.client.post("/v1/reports", json={**body, "text": "a\x00b"}, headers=api.headers())
    assert nul.status_code == 422 and "NUL" in nul.text
    # a lone surrogate is named where it is, in the ids too (their length check came first)
    for name in ("text", "post_id", "account_id"):
        surrogate = json.dumps({**body, name: "a\ud800"}).encode()
        typed = {**api.headers(), "Content-Type": "application/json"}
        refused = api.client.post("/v1/reports", content=surrogate, headers=typed)
        assert refused.status_code == 422, name
        (problem,) = refused.json()["detail"]
        assert problem["loc"] == ["body", name]
        assert "lone surrogate (U+D800) at index 1" in problem["msg"]


def test_blank_names_and_loosely_typed_numbers_are_refused_at_their_field(api: Api) -> None:
    item = flagged_item(api, "p1")
    cases = [
        ("post", "/v1/reports", {"post_id": " ", "category": "rumor"}, ["body", "post_id"]),
        ("post", "/v1/reports", {"account_id": "", "category": "rumor"}, ["body", "account_id"]),
        (
            "post",
            "/v1/appeals",
            {"account_id": "u", "item_id": item["id"], "reason": " \n"},
            ["body", "reason"],
        ),
        (
            "post",
            "/v1/appeals",
            {"account_id": "u", "item_id": True, "reason": "误判"},
            ["body", "item_id"],
        ),
        (
            "post",
            "/v1/appeals",
            {"account_id": "u", "item_id": str(item["id"]), "reason": "误判"},
            ["body", "item_id"],
        ),
        ("put", "/v1/accounts/%20", {"followers": 1}, ["path", "account_id"]),
        ("put", "/v1/accounts/acc1", {"followers": "12"}, ["body", "followers"]),
        ("put", "/v1/accounts/acc1", {"name": "  "}, ["body", "name"]),
        ("post", "/v1/registrations/check", {"name": "\t", "subject_id": "s"}, ["body", "name"]),
        # invisible characters name nothing either, as in a post's ids
        ("post", "/v1/reports", {"post_id": "\u200b", "category": "rumor"}, ["body", "post_id"]),
        ("put", "/v1/accounts/%E2%80%8B", {"followers": 1}, ["path", "account_id"]),
        ("put", "/v1/accounts/acc1", {"name": " \u2060\ufeff"}, ["body", "name"]),
        ("post", "/v1/reports", {"post_id": "\u0301", "category": "rumor"}, ["body", "post_id"]),
    ]
    for method, url, body, loc in cases:
        answer = api.client.request(method, url, json=body, headers=api.headers())
        assert answer.status_code == 422, (url, body, answer.text)
        assert answer.json()["detail"][0]["loc"] == loc, (url, body)
    invisible = api.client.put("/v1/accounts/%E2%80%8B", json={}, headers=api.headers())
    assert invisible.json()["detail"][0]["msg"] == (
        "is blank: it holds only white space, invisible characters and combining marks "
        "(U+200B at index 0)"
    )
    # the refused writes stored nothing: the account is as its post made it known
    account = api.client.get("/v1/accounts/acc1", headers=api.headers()).json()
    assert (account["name"], account["followers"], account["history"]) == (None, 0, [])


def test_registration_check_and_account_profiles(api: Api) -> None:
    name = "<i>清朗'日报</i>\u200b"
    put = api.client.put(
        "/v1/accounts/acc1",
        json={"name": name, "subject_id": "91110000MA01", "followers": 12},
        headers=api.headers(),
    )
    assert put.status_code == 200 and put.json()["name"] == name
    # a field left out keeps its value: a followers update does not wipe the name
    url, headers = "/v1/accounts/acc1", api.headers()
    assert api.client.put(url, json={"followers": 7}, headers=headers).json()["name"] == name
    renamed = api.client.put(url, json={"name": name}, headers=headers).json()
    assert renamed["followers"] == 7
    assert api.client.put(url, json={"name": None}, headers=headers).json()["name"] is None
    api.client.put(url, json={"name": name}, headers=headers)
    check = {"name": "i清朗日报", "subject_id": "other"}
    allowed = api.client.post("/v1/registrations/check", json=check, headers=api.headers())
    assert allowed.json() == {"allowed": True, "reasons": []}
    policy = api.services.scoring.policy
    for n in range(4):
        item = flagged_item(api, f"p{n}")
        api.services.review.decide(policy, item["id"], "r1", "confirm", "rumor", "art18.6")
    refused = api.client.post("/v1/registrations/check", json=check, headers=api.headers()).json()
    assert not refused["allowed"] and refused["reasons"][0]["code"] == "name_near"
    subject = api.client.post(
        "/v1/registrations/check",
        json={"name": "别的名字", "subject_id": "91110000MA01"},
        headers=api.headers(),
    ).json()
    assert [r["code"] for r in subject["reasons"]] == ["subject_blacklisted"]
    # giving the subject to another account registers it again: 409 in the check's words
    again = api.client.put(
        "/v1/accounts/acc9", json={"subject_id": "91110000MA01"}, headers=headers
    )
    assert again.status_code == 409
    assert again.json()["detail"] == subject["reasons"][0]["detail"]
    # what the check reads of a blacklisted account is not changed afterwards
    for change in ({"subject_id": "OTHER"}, {"name": None}):
        answer = api.client.put(url, json=change, headers=headers)
        assert answer.status_code == 409, change


def test_a_profile_retried_with_its_key_is_set_once_and_another_body_refused(api: Api) -> None:
    """``PUT /v1/accounts/{id}`` takes an Idempotency-Key as the other writes do: a retry gets
    the first answer without setting the profile again over a change made since, and another
    body on the key (a name cleared is not a name left out) is refused at the header."""
    url = "/v1/accounts/acc1"
    keyed = {**api.headers(), "Idempotency-Key": "profile-1"}
    first = api.client.put(url, json={"name": "甲", "followers": 5}, headers=keyed)
    assert first.status_code == 200 and first.json()["name"] == "甲"
    assert api.client.put(url, json={"name": "乙"}, headers=api.headers()).status_code == 200
    retried = api.client.put(url, json={"name": "甲", "followers": 5}, headers=keyed)
    assert retried.status_code == 200 and retried.json() == first.json()
    assert api.client.get(url, headers=api.headers()).json()["name"] == "乙"
    for other in (
        {"name": "丙", "followers": 5},
        {"name": "甲", "followers": 5, "subject_id": "x"},
    ):
        refused = api.client.put(url, json=other, headers=keyed)
        assert refused.status_code == 422, other
        assert refused.json()["detail"][0]["loc"] == ["header", "Idempotency-Key"]
    left_out = {**api.headers(), "Idempotency-Key": "profile-2"}
    assert api.client.put(url, json={"followers": 6}, headers=left_out).status_code == 200
    cleared = api.client.put(url, json={"followers": 6, "name": None}, headers=left_out)
    assert cleared.status_code == 422
    assert api.client.get(url, headers=api.headers()).json()["name"] == "乙"


def test_a_login_in_milliseconds_is_refused_as_a_posts_created_at_is(api: Api) -> None:
    """``last_login_at`` given as a number is unix seconds, checked by the rule a post's
    ``created_at`` is: milliseconds (a number past year 9999 as seconds) are refused at the
    field in the same words, and a number pydantic alone would take for milliseconds (1e11,
    year 5138 as seconds) is a moment ahead of the clock, not one in 1973."""
    url, headers = "/v1/accounts/acc1", api.headers()
    now = int(time.time())
    put = api.client.put(url, json={"last_login_at": now}, headers=headers)
    assert put.status_code == 200, put.text
    assert datetime.fromisoformat(put.json()["last_login_at"]).timestamp() == now
    millis = now * 1000
    scored = api.score({"id": "p-ms", "text": "帖子", "created_at": millis})
    assert scored.status_code == 422
    (rule,) = scored.json()["detail"]
    words = " is not a time" + rule["msg"].split(" is not a time", 1)[1]
    assert "milliseconds? give seconds" in words
    for value in (millis, str(millis), 1e11):
        refused = api.client.put(url, json={"last_login_at": value}, headers=headers)
        assert refused.status_code == 422, value
        (problem,) = refused.json()["detail"]
        assert problem["loc"] == ["body", "last_login_at"], value
        if value != 1e11:
            assert str(millis) in problem["msg"] and problem["msg"].endswith(words), value
    shown = api.client.get(url, headers=headers).json()
    assert datetime.fromisoformat(shown["last_login_at"]).timestamp() == now


def test_an_account_says_when_its_first_profile_registered_it_and_null_when_not_known(
    api: Api,
) -> None:
    """``registered_at`` is the moment the profile that made the account's row was written,
    kept through later profiles; an account whose row a post made has none the service knows."""
    url, headers = "/v1/accounts/acc1", api.headers()
    before = datetime.now(UTC)
    made = api.client.put(url, json={"name": "甲", "followers": 3}, headers=headers)
    after = datetime.now(UTC)
    assert made.status_code == 200, made.text
    registered = made.json()["registered_at"]
    assert before <= datetime.fromisoformat(registered) <= after
    assert datetime.fromisoformat(registered).utcoffset() == timedelta(0)
    assert api.client.put(url, json={"followers": 9}, headers=headers).status_code == 200
    assert api.client.get(url, headers=headers).json()["registered_at"] == registered
    # a post makes the row of an account known by it alone, registering nothing
    assert api.score({"id": "p1", "text": "普通的帖子", "account_id": "poster"}).status_code == 200
    api.settle()
    portal = api.client.portal
    assert portal is not None
    assert portal.call(api.services.scoring.record_use) == 0
    posted = api.client.get("/v1/accounts/poster", headers=headers)
    assert posted.status_code == 200, posted.text
    assert (posted.json()["active_by"], posted.json()["registered_at"]) == ("post", None)


def test_a_low_credit_accounts_level_reaches_the_publish_path(api: Api) -> None:
    policy = api.services.scoring.policy
    for n in range(3):
        item = flagged_item(api, f"p{n}")
        api.services.review.decide(policy, item["id"], "r1", "confirm", "rumor", "art18.6")
    level = api.client.get("/v1/accounts/acc1", headers=api.headers()).json()["level"]
    assert policy.review_factor(level) < 1
    api.services.scoring.recover()
    record = api.score({"id": "new", "text": RUMOR, "account_id": "acc1"}).json()
    # the text's reason (the account's suspension, if any, comes first)
    (flagged,) = [r for r in record["reasons"] if r["code"] == "art18.6.false_information"]
    shown = flagged["evidence"]["account_level"]
    assert shown == {"level": level, "review_factor": policy.review_factor(level)}
    other = api.score({"id": "new2", "text": RUMOR, "account_id": "acc2"}).json()
    assert "account_level" not in other["reasons"][0]["evidence"]


def confirm_until(api: Api, account: str, kind: str, at: datetime | None = None) -> dict[str, Any]:
    """Confirm violations of ``account`` (decided ``at``, default now) until a disposition of
    ``kind`` is applied to it; that disposition as ``GET /v1/accounts`` shows it. Incitement's
    deductions take the account down one level at a time (85 A, 62 C, 32 D, 0 X)."""
    policy = api.services.scoring.policy
    for n in range(len(policy.credit.levels) + 1):
        item = flagged_item(api, f"{account}-{kind}-{n}", account)
        api.services.review.decide(
            policy, item["id"], "r1", "confirm", "incitement", "art18.5", now=at
        )
        shown = api.client.get(f"/v1/accounts/{account}", headers=api.headers()).json()
        history = [d for d in shown["history"] if d.get("kind") == kind]
        if history:
            disposition = history[-1]
            assert isinstance(disposition, dict)
            return disposition
    raise AssertionError(f"no {kind} on {account} after {n + 1} confirmed violations")


def stops(record: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The dispositions a record's reasons say stop its account publishing, by reason code."""
    return {
        r["code"]: r["evidence"]["disposition"]
        for r in record["reasons"]
        if "disposition" in r["evidence"]
    }


def test_an_account_that_may_not_publish_gets_block_naming_its_disposition(api: Api) -> None:
    """Art19: a suspended or closed account's next post is blocked on the publish path, its
    reasons naming the disposition, its article and its end; one whose suspension ended is
    scored on its text (and level) again."""
    suspension = confirm_until(api, "acc1", "suspend_updates")
    assert suspension["active"] and suspension["ends_at"] is not None
    long_ago = datetime.now(UTC) - timedelta(days=30)
    ended = confirm_until(api, "acc2", "suspend_updates", at=long_ago)
    assert not ended["active"]
    api.services.scoring.recover()
    post = {"id": "next", "text": "周末和家人去公园散步，天气很好。", "account_id": "acc1"}
    record = api.score(post).json()
    assert record["decision"] == "block"
    assert record["reasons"][0]["code"] == "art19.suspend_updates"
    shown = stops(record)["art19.suspend_updates"]
    assert (shown["kind"], shown["basis"]) == ("suspend_updates", "art19")
    assert datetime.fromisoformat(shown["ends_at"]) == datetime.fromisoformat(suspension["ends_at"])
    # the review-all test policy flags every text: the text's own reason is still there
    assert record["flags"]["rumor"] and "art18.6.false_information" in {
        r["code"] for r in record["reasons"]
    }
    # a reviewer judges the text: its item is at the text's severity, not the account's state
    assert record["reasons"][0]["evidence"]["text_decision"] == "review"
    listed = api.client.get("/v1/review/items", headers=api.headers(api.new_key("reviewer")))
    (item,) = [i for i in listed.json()["items"] if i["post_id"] == "next"]
    assert item["severity"] == "review"
    again = api.score({**post, "id": "next2"}).json()
    assert again["decision"] == "block" and set(stops(again)) == {"art19.suspend_updates"}
    after = api.score({**post, "id": "after", "account_id": "acc2"}).json()
    assert after["decision"] == "review" and stops(after) == {}
    assert "account_level" in after["reasons"][0]["evidence"]
    other = api.score({**post, "id": "other", "account_id": "acc3"}).json()
    assert other["decision"] == "review" and stops(other) == {}
    closing = confirm_until(api, "acc1", "close_account")
    assert closing["ends_at"] is None
    api.services.scoring.recover()
    closed = api.score({**post, "id": "closed"}).json()
    assert closed["decision"] == "block"
    assert stops(closed)["art19.close_account"] == {
        "kind": "close_account",
        "basis": "art19",
        "ends_at": None,
    }


def test_a_post_blocked_for_its_account_is_queued_at_its_text_s_severity(api: Api) -> None:
    """A suspended account's flagged post is blocked for the suspension, but its item is the
    text's: ranked, and charged on confirmation (the credit's severity multiplier), as the same
    text of a free account is; the suspension is no finding on the post."""
    confirm_until(api, "acc1", "suspend_updates")
    api.services.scoring.recover()
    record = api.score({"id": "next", "text": RUMOR, "account_id": "acc1"}).json()
    assert record["decision"] == "block" and "art19.suspend_updates" in stops(record)
    blocked = flagged_item(api, "next", "acc1")
    free = flagged_item(api, "next-free", "acc3")
    assert record["reasons"][0]["evidence"]["text_decision"] == free["severity"] == "review"
    assert blocked["severity"] == free["severity"]


def test_a_closed_account_s_bank_match_is_queued_at_its_text_s_severity(
    pipeline: Pipeline,
) -> None:
    """The near-duplicate step's items of a post blocked for its account take the text's
    decision as severity, as the post's own item does."""
    post = Post(id="p", text=RUMOR, account_id="closed")
    free = pipeline.score_many([post])[0]
    closed = Standing(None, (Stop("close_account", "art19", None),))
    record = pipeline.score_many([post], {"closed": closed})[0]
    assert record.decision == "block" != free.decision
    match = Reason(code="art13.rumor", score=1.0, evidence={"confirmed_rumor": "r1"})
    record = record.model_copy(update={"reasons": [*record.reasons, match]})
    (request,) = queue.requests(record, post.text, {})
    assert request.kind == "bank_match" and request.severity == free.decision


def test_a_lower_level_lowers_the_review_threshold(pipeline: Pipeline) -> None:
    post = Post(id="p", text=RUMOR, account_id="low")
    score = pipeline.score_many([post])[0].scores["rumor"]
    policy = pipeline.policy
    strict = policy.stricter_levels[-1]
    factor = policy.review_factor(strict)
    # a review threshold the score misses, but not once the factor lowers it
    threshold = min(1.0, score / ((1 + factor) / 2))
    assert score < threshold and score >= threshold * factor
    risks = {r: policy.risks[r].model_copy(update={"review": 1.0, "block": 1.01}) for r in RISKS}
    risks["rumor"] = risks["rumor"].model_copy(update={"review": threshold})
    tuned = Pipeline(pipeline.classifier, policy.model_copy(update={"risks": risks}))
    assert tuned.score_many([post])[0].decision == "pass"
    assert tuned.score_many([post], {"low": Standing(strict)})[0].decision == "review"
    assert tuned.score_many([post], {"someone-else": Standing(strict)})[0].decision == "pass"


def test_an_account_the_service_knows_is_answered_and_an_appeal_refusal_names_its_reason(
    api: Api,
) -> None:
    flagged_item(api, "p2", account="u2")
    account = api.client.get("/v1/accounts/u2", headers=api.headers())
    assert account.status_code == 200, account.text
    body = account.json()
    assert (body["credit"], body["level"], body["history"]) == (100, "A", [])
    assert api.client.get("/v1/accounts/ghost", headers=api.headers()).status_code == 404
    other = flagged_item(api, "p1")
    api.services.review.decide(
        api.services.scoring.policy, other["id"], "r1", "confirm", "rumor", "art18.6"
    )
    appeal = api.client.post(
        "/v1/appeals",
        json={"account_id": "u2", "item_id": other["id"], "reason": "不是我的"},
        headers=api.headers(),
    )
    assert appeal.status_code == 409
    assert appeal.json()["detail"] == (
        f"item {other['id']} is not a confirmed violation of account 'u2'"
    )


def test_a_subject_at_its_cap_is_refused_by_the_check_and_the_profile(api: Api) -> None:
    cap = api.services.scoring.policy.registration.accounts_per_subject
    headers = api.headers()
    for n in range(cap):
        put = api.client.put(
            f"/v1/accounts/a{n}", json={"subject_id": "91110000MA01"}, headers=headers
        )
        assert put.status_code == 200
    check = {"name": "全新名字", "subject_id": "91110000MA01"}
    refused = api.client.post("/v1/registrations/check", json=check, headers=headers).json()
    assert not refused["allowed"]
    assert [r["code"] for r in refused["reasons"]] == ["subject_at_cap"]
    answer = api.client.put(
        "/v1/accounts/extra", json={"subject_id": "91110000MA01"}, headers=headers
    )
    assert answer.status_code == 409
    # the check's words: one rule, one text
    assert answer.json() == {"detail": refused["reasons"][0]["detail"]}
    assert (
        answer.json()["detail"]
        == f"the subject holds {cap} accounts, the cap per subject (art10) is {cap}"
    )


def test_a_subject_id_without_a_letter_or_digit_is_refused_at_its_field(api: Api) -> None:
    headers = api.headers()
    # each normalises to nothing: stored, every such account would hold one subject (one of
    # invisible characters only is refused before, as blank)
    for placeholder in ("-", "- -", "\u200b-", "\u2014", "\u3000-\u3000"):
        for url, body, loc in (
            ("/v1/accounts/a1", {"subject_id": placeholder}, ["body", "subject_id"]),
            (
                "/v1/registrations/check",
                {"name": "名字", "subject_id": placeholder},
                ["body", "subject_id"],
            ),
        ):
            refused = api.client.request(
                "PUT" if url.startswith("/v1/accounts") else "POST", url, json=body, headers=headers
            )
            assert refused.status_code == 422, (url, placeholder, refused.text)
            (problem,) = refused.json()["detail"]
            assert problem["loc"] == loc and "no letter or digit" in problem["msg"]
    cap = api.services.scoring.policy.registration.accounts_per_subject
    for n in range(cap + 1):
        put = api.client.put(f"/v1/accounts/b{n}", json={"subject_id": "-"}, headers=headers)
        assert put.status_code == 422
    # one letter or digit among the separators is an identifier, in its normal form
    kept = api.client.put("/v1/accounts/b0", json={"subject_id": "- x -"}, headers=headers)
    assert kept.status_code == 200
    again = api.client.put("/v1/accounts/b0", json={"subject_id": "X"}, headers=headers)
    assert again.status_code == 200


def test_a_report_naming_another_account_than_the_posts_is_refused(api: Api) -> None:
    item = flagged_item(api, "p1", account="acc1")
    headers = api.headers()
    named = {"post_id": "p1", "account_id": "acc2", "category": "rumor"}
    refused = api.client.post("/v1/reports", json=named, headers=headers)
    assert refused.status_code == 409
    assert refused.json() == {"detail": "post 'p1' belongs to account 'acc1', not to 'acc2'"}
    joined = api.client.post(
        "/v1/reports", json={**named, "account_id": "acc1"}, headers=headers
    ).json()
    assert joined["item_id"] == item["id"] and joined["item_reports"] == 1
    reviewer = api.headers(api.new_key("reviewer"))
    decided = api.client.post(
        f"/v1/review/items/{item['id']}/decision",
        json={"action": "dismiss"},
        headers=reviewer,
    )
    assert decided.status_code == 200
    # decided, the post is still acc1's: no new item charged to the account a reporter names
    later = api.client.post("/v1/reports", json=named, headers=headers)
    assert later.status_code == 409
    # a post the service never stored is the account its first report names
    first = api.client.post("/v1/reports", json={**named, "post_id": "p2"}, headers=headers)
    assert first.status_code == 200
    other = {**named, "post_id": "p2", "account_id": "acc3"}
    assert api.client.post("/v1/reports", json=other, headers=headers).status_code == 409


def test_a_record_joining_a_report_item_charges_the_account_it_was_posted_by(api: Api) -> None:
    headers = api.headers()
    report = {"post_id": "p1", "account_id": "someone", "category": "rumor"}
    filed = api.client.post("/v1/reports", json=report, headers=headers).json()
    item = flagged_item(api, "p1", account="acc1")
    assert item["id"] == filed["item_id"] and item["kind"] == "score"
    assert item["account_id"] == "acc1"
    reviewer = api.headers(api.new_key("reviewer"))
    decided = api.client.post(
        f"/v1/review/items/{item['id']}/decision",
        json={"action": "confirm", "category": "rumor", "basis": "art18.6"},
        headers=reviewer,
    ).json()
    assert [c["account_id"] for c in decided["credits"]] == ["acc1"]
    untouched = api.client.get("/v1/accounts/someone", headers=headers)
    assert untouched.status_code == 404


def test_a_decision_sent_with_a_record_the_item_no_longer_shows_is_409(api: Api) -> None:
    """A reviewer reads a report's item (no record), a flagged record of its post joins it,
    and a re-score moves it to a newer record: each decision sent with what the reviewer read
    is refused, saying what the item shows now, and the item's view gives that record. A
    decision without record_id, as clients sent before it, is taken unchecked."""
    reviewer = api.headers(api.new_key("reviewer"))
    report = {"post_id": "p1", "account_id": "acc1", "category": "rumor"}
    filed = api.client.post("/v1/reports", json=report, headers=api.headers()).json()
    url = f"/v1/review/items/{filed['item_id']}"
    assert api.client.get(url, headers=reviewer).json()["record_id"] is None
    first = flagged_item(api, "p1")["record_id"]
    assert isinstance(first, int)
    dismiss = {"action": "dismiss", "record_id": None}
    refused = api.client.post(f"{url}/decision", json=dismiss, headers=reviewer)
    assert refused.status_code == 409
    assert refused.json()["detail"].startswith(
        f"item {filed['item_id']} shows score record {first} now, not the record_id"
    )
    repository = api.services.scoring.repository
    assert isinstance(repository, SqlRepository)
    newer = record("p1", "block").model_copy(update={"account_id": "acc1", "policy_version": "p9"})
    repository.save_records([Pending(newer, True, RUMOR)])
    shown = api.client.get(url, headers=reviewer).json()
    assert shown["record_id"] not in (None, first)
    assert shown["evidence"]["record"]["policy_version"] == "p9"
    stale = {"action": "confirm", "category": "rumor", "basis": "art18.6", "record_id": first}
    refused = api.client.post(f"{url}/decision", json=stale, headers=reviewer)
    assert refused.status_code == 409
    assert f"shows score record {shown['record_id']} now, not the" in refused.json()["detail"]
    strings = {**stale, "record_id": str(shown["record_id"])}
    malformed = api.client.post(f"{url}/decision", json=strings, headers=reviewer)
    assert malformed.status_code == 422
    assert [e["loc"] for e in malformed.json()["detail"]] == [["body", "record_id"]]
    assert api.client.get(url, headers=reviewer).json()["status"] == "open"
    unchecked = {k: v for k, v in stale.items() if k != "record_id"}
    decided = api.client.post(f"{url}/decision", json=unchecked, headers=reviewer)
    assert decided.status_code == 200 and decided.json()["status"] == "confirmed"


def test_a_follower_jump_is_queued_for_the_trust_team(api: Api) -> None:
    url, headers = "/v1/accounts/acc1", api.headers()
    assert api.client.put(url, json={"followers": 10}, headers=headers).status_code == 200
    assert api.client.put(url, json={"followers": 2_000_000}, headers=headers).status_code == 200
    reviewer = api.headers(api.new_key("reviewer"))
    listed = api.client.get("/v1/review/items?kind=follower_jump", headers=reviewer).json()
    (item,) = listed["items"]
    assert (item["account_id"], item["head"]) == ("acc1", "fake_followers")
    assert [(j["before"], j["after"]) for j in item["evidence"]["jumps"]] == [(10, 2_000_000)]
    decided = api.client.post(
        f"/v1/review/items/{item['id']}/decision",
        json={"action": "confirm", "category": "fake_followers", "basis": "art12"},
        headers=reviewer,
    )
    assert decided.status_code == 200 and decided.json()["credits"][0]["account_id"] == "acc1"


def test_the_maintenance_prunes_answers_older_than_idempotency_keep_hours(
    tmp_path: Path, pipeline: Pipeline
) -> None:
    """A server process's maintenance (every ``storage_retry_s``) deletes the answer of a write
    made with a key once it is ``idempotency_keep_hours`` old, and keeps a newer one: its retry
    gets the first answer still."""
    with open_api(
        tmp_path,
        f"sqlite:///{tmp_path / 'keys.db'}",
        pipeline.classifier,
        idempotency_keep_hours=2,
        storage_retry_s=0.2,
    ) as api:
        repository = api.services.scoring.repository
        assert isinstance(repository, SqlRepository)
        report = {"account_id": "acc1", "category": "rumor"}
        answers = {
            key: api.client.post(
                "/v1/reports", json=report, headers={**api.headers(), "Idempotency-Key": key}
            ).json()
            for key in ("old", "new")
        }
        with repository.engine.begin() as db:
            for key, hours in (("old", 2.1), ("new", 1.9)):
                aged = datetime.now(UTC) - timedelta(hours=hours)
                db.execute(
                    update(IdempotentWrite)
                    .where(IdempotentWrite.key == key)
                    .values(created_at=aged)
                )

        def kept() -> set[str]:
            with repository.engine.connect() as db:
                return set(db.execute(text("SELECT key FROM idempotency_keys")).scalars())

        wait_for(lambda: kept() == {"new"})
        retry = {**api.headers(), "Idempotency-Key": "new"}
        assert api.client.post("/v1/reports", json=report, headers=retry).json() == answers["new"]
