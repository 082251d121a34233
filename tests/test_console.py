"""The console's pages without a browser, on SQLite and PostgreSQL: CSRF tokens, signed and
expiring sessions, the limits on failed sign-ins, roles, escaping, the security headers; and its
parts (articles, spans, plots)."""

from __future__ import annotations

import base64
import itertools
import json
import logging
import re
import socket
import string
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, get_args
from urllib.parse import quote
from uuid import uuid4
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from markupsafe import escape
from pydantic import ValidationError
from servicekit import (
    Api,
    Held,
    Troubled,
    listening,
    migrate,
    no_upkeep,
    open_api,
    open_impatient_api,
    routes,
    wait_for,
    write_policy,
)
from sqlalchemy import inspect, select, update

from service import security
from service.console import articles, pages, plots, present, times
from service.console.i18n import TEXT, translator, worded
from service.console.session import COOKIE, Sessions
from service.console.web import REFUSALS
from service.explaining import NO_EVIDENCE
from service.heads import Risk
from service.neardup.queue import requests
from service.neardup.store import StoreUnavailableError
from service.pipeline import STOPPED, Pipeline
from service.policy import Policy, provisions
from service.policy.governance import CATEGORIES, Violation
from service.record import Decision, Post, ScoreRecord
from service.review import dormancy, signups, views
from service.review.appeals import APPEAL_STATUSES
from service.review.engagement import Counts
from service.review.items import ACTIONS, KINDS, STATUSES, Kind
from service.review.protected import PROTECTED_KINDS
from service.review.refusals import REASONS, RefusedError
from service.review.views import CreditChange, Item, ReportStatus
from service.scoring import ScoringService
from service.security import AuthError, SignInLimits, client_address, create_user
from service.storage import (
    ConsoleAccount,
    Pending,
    SqlRepository,
    StorageError,
    credit_steps,
    open_repository,
    upgrade,
)
from service.storage.console_sql import ConsoleReads
from service.storage.database import make_engine
from service.storage.repository import IdempotencyMismatchError, Role
from service.storage.tables import ConsoleUser, ReviewItem, SignInAttempt, StoredRecord

# what a sign-in does and refuses, not what a guess costs: its cost is the service's setting
pytestmark = pytest.mark.usefixtures("quick_passwords")

RUMOR = "紧急扩散！明天起全市停水三天，自来水厂已被污染，赶紧囤水，转给家人！"
SCRIPT_POST = "<script>alert(1)</script>"
IMG_POST = '"><img src=x onerror=alert(1)>'
PLAIN = "周末和家人去公园散步，天气很好，拍了几张荷花的照片。"
MILK = "震惊！某品牌奶粉被检出三聚氰胺超标，全国已下架，家长速看转发！"
VIOLATIONS = (
    "内部消息：下周起本市所有银行暂停取现，赶紧把钱取出来！",
    "专家证实：喝板蓝根可以预防所有病毒感染，赶快告诉家人！",
    "紧急通知：本市明天将发生七级地震，请大家连夜撤离！",
)


@pytest.fixture
def api(tmp_path: Path, database_url: str, pipeline: Pipeline) -> Iterator[Api]:
    with open_api(tmp_path, database_url, pipeline.classifier) as running:
        yield running


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert found is not None, "the form carries a CSRF token"
    return found.group(1)


def sign_in(api: Api, name: str, role: Role = "reviewer") -> str:
    password = create_user(api.services.scoring.repository, name, role)
    token = csrf_of(api.client.get("/console/login").text)
    signed = api.client.post(
        "/console/login",
        data={"csrf": token, "name": name, "password": password},
        follow_redirects=False,
    )
    assert signed.status_code == 303 and signed.headers["location"] == "/console/queue"
    return csrf_of(api.client.get("/console/queue").text)


def test_forms_need_the_session_token_and_sessions_are_signed(api: Api) -> None:
    assert api.score({"id": "p1", "text": "明天全市停水", "account_id": "a1"}).status_code == 200
    gone = api.client.get("/console/queue", follow_redirects=False)
    assert gone.status_code == 303
    assert gone.headers["location"] == "/console/login?next=%2Fconsole%2Fqueue"
    no_token = api.client.post("/console/login", data={"name": "x", "password": "y"})
    assert no_token.status_code == 403
    token = sign_in(api, "li")
    page = api.client.get("/console/queue")
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    item_id = int(re.findall(r'data-item="(\d+)"', page.text)[0])
    forged = api.client.post(f"/console/items/{item_id}/claim", data={"csrf": "0" * 64})
    assert forged.status_code == 403
    assert api.services.review.get_item(api.services.scoring.policy, item_id).assignee is None
    claimed = api.client.post(f"/console/items/{item_id}/claim", data={"csrf": token})
    assert claimed.status_code == 200
    assert api.services.review.get_item(api.services.scoring.policy, item_id).assignee == "li"
    # a cookie edited by hand is no session
    cookie = api.client.cookies.get(COOKIE)
    assert cookie is not None
    payload, signature = cookie.rsplit(".", 1)
    fields = json.loads(base64.urlsafe_b64decode(payload))
    assert fields["user"] == "li"
    fields["role"] = "admin"
    edited = base64.urlsafe_b64encode(json.dumps(fields).encode()).decode()
    api.client.cookies.clear()
    api.client.cookies.set(COOKIE, f"{edited}.{signature}", path="/console")
    assert api.client.get("/console/queue", follow_redirects=False).status_code == 303


def test_reviewers_cannot_open_admin_pages_and_confirmations_need_a_basis(api: Api) -> None:
    assert api.score({"id": "p1", "text": "明天全市停水", "account_id": "a1"}).status_code == 200
    token = sign_in(api, "li")
    assert api.client.get("/console/dashboard").status_code == 403
    assert api.client.get("/console/bank").status_code == 403
    banked = api.client.post("/console/bank", data={"csrf": token, "text": RUMOR, "notice": "n"})
    unbanked = api.client.post("/console/bank/0123abcd/delete", data={"csrf": token})
    assert banked.status_code == unbanked.status_code == 403
    assert api.services.scoring.repository.rumors() == []
    item_id = int(re.findall(r'data-item="(\d+)"', api.client.get("/console/queue").text)[0])
    refused = api.client.post(
        f"/console/items/{item_id}/decision",
        data={"csrf": token, "action": "confirm", "category": "rumor", "basis": ""},
    )
    assert refusal_of(refused.text) == "依据条款: 确认违规时必填"
    assert api.services.review.get_item(api.services.scoring.policy, item_id).status == "open"
    api.client.cookies.clear()
    sign_in(api, "wang", "admin")
    dashboard = api.client.get("/console/dashboard")
    assert dashboard.status_code == 200 and dashboard.text.count("<svg") >= 5


def test_a_bank_entry_and_its_removal_name_the_admin_whole(api: Api) -> None:
    """A console user's name is kept whole (64 characters at most) as the entry's author and
    in the audit records of adding and removing it, as the API records a key owner's."""
    name = "管理" * 32
    token = sign_in(api, name, "admin")
    banked = api.client.post("/console/bank", data={"csrf": token, "text": RUMOR, "notice": "n"})
    assert banked.status_code == 200, banked.text
    (stored,) = api.services.scoring.repository.rumors()
    assert stored.created_by == name
    assert f"<td>{name}</td>" in api.client.get("/console/bank").text
    gone = api.client.post(f"/console/bank/{stored.rumor_id}/delete", data={"csrf": token})
    assert gone.status_code == 200 and api.services.scoring.repository.rumors() == []
    said = [
        (entry.kind, entry.payload["by"])
        for entry in api.services.review.audit_entries()
        if entry.subject == f"rumor:{stored.rumor_id}"
    ]
    assert said == [("rumor.banked", name), ("rumor.unbanked", name)]


def test_an_item_number_no_row_can_have_is_refused_not_a_server_error(api: Api) -> None:
    token = sign_in(api, "li")
    huge = 2**63
    for method, url in [
        ("get", f"/console/items/{huge}"),
        ("post", f"/console/items/{huge}/claim"),
        ("post", f"/console/items/{huge}/decision"),
        ("get", f"/console/items/{huge}/next"),
        ("post", f"/console/appeals/{huge}/decision"),
    ]:
        answer = api.client.request(method, url, data={"csrf": token, "action": "dismiss"})
        assert answer.status_code == 422, (url, answer.status_code)
    assert api.client.get("/console/items/999").status_code == 404


def found_in(html: str, pattern: str, what: str) -> str:
    """The text ``pattern``'s group matches in ``html``, which must show ``what``."""
    found = re.search(pattern, html)
    assert found is not None, what
    return found.group(1)


def refusal_of(html: str) -> str:
    return found_in(
        html, r'<p class="error" role="alert"[^>]*>([^<]*)</p>', "the page shows why it was refused"
    )


def test_odd_values_in_console_addresses_get_its_own_error_page_in_its_language(
    api: Api,
) -> None:
    token = sign_in(api, "li")
    refused: list[tuple[str, str]] = [("get", "/console/lang/fr")]
    for odd in ("abc", "-1", "0", "1.5", "99999999999999999999999_1"):
        refused += [
            ("get", f"/console/items/{odd}"),
            ("post", f"/console/items/{odd}/claim"),
            ("post", f"/console/items/{odd}/decision"),
            ("get", f"/console/items/{odd}/next"),
            ("post", f"/console/appeals/{odd}/decision"),
            ("get", f"/console/queue?status={odd}"),
            ("get", f"/console/queue?head={odd}"),
            ("get", f"/console/appeals?status={odd}"),
        ]
        if odd != "0":  # which is false
            refused.append(("get", f"/console/reports?all={odd}"))
    for odd in ("abc", "-1", "1_99999999999999999999999", "nan_1"):
        refused += [
            ("get", f"/console/{to}?cursor={odd}") for to in ("queue", "appeals", "reports")
        ]
    # no appeal's deadline (or report's filing) is that far off, so no listing gave it out
    refused += [
        ("get", f"/console/{to}?cursor=99999999999999999999999_1") for to in ("appeals", "reports")
    ]
    refused += [("get", f"/console/queue?assignee={odd}") for odd in ("x" * 65, "%00")]
    for method, url in refused:
        answer = api.client.request(method, url, data={"csrf": token, "action": "dismiss"})
        assert answer.status_code == 422, (url, answer.status_code)
        assert answer.headers["content-type"].startswith("text/html"), url
        assert '<h1 class="refused">请求中有无效的值</h1>' in answer.text, url
        assert "Input should" not in refusal_of(answer.text), url
    # an urgency that far down the queue is one it may give out: an empty page, not an error
    assert api.client.get("/console/queue?cursor=99999999999999999999999_1").status_code == 200
    for nowhere in ("/console/items/1/abc", "/console/nowhere"):
        missing = api.client.get(nowhere)
        assert missing.status_code == 404, nowhere
        assert '<h1 class="refused">没有这个页面</h1>' in missing.text, nowhere
    assert api.client.get("/v1/nowhere").json() == {"detail": "no such path: '/v1/nowhere'"}
    assert refusal_of(api.client.get("/console/items/abc").text) == "条目编号: 应为整数"
    assert refusal_of(api.client.get(f"/console/queue?assignee={'x' * 65}").text) == (
        "认领人: 不能超过 64 个字符"
    )
    assert refusal_of(api.client.get("/console/queue?cursor=abc").text) == (
        "翻页位置: 不是列表给出的位置"
    )
    api.client.get("/console/lang/en")
    english = api.client.get("/console/items/-1")
    assert '<h1 class="refused">The request holds a value that is not valid</h1>' in english.text
    assert refusal_of(english.text) == "Item id: is out of range"


def test_refused_forms_say_why_in_the_pages_language(api: Api) -> None:
    token = sign_in(api, "wang", "admin")

    def refused(url: str, **fields: str) -> str:
        answer = api.client.post(url, data={"csrf": token, **fields})
        assert answer.status_code == 422, (url, answer.status_code)
        return refusal_of(answer.text)

    appeal = {"account_id": "a1", "item_id": "1", "reason": "误判"}
    assert refused("/console/appeals", **{**appeal, "item_id": ""}) == "条目编号: 必填"
    assert refused("/console/appeals", **{**appeal, "account_id": " "}) == "账号: 必填"
    assert refused("/console/appeals", **{**appeal, "item_id": "abc"}) == "条目编号: 应为整数"
    assert refused("/console/appeals", **{**appeal, "reason": "长" * 10_001}) == (
        "理由: 不能超过 10000 个字符"
    )
    assert refused("/console/appeals/1/decision", note="x") == "操作: 必填"
    assert refused("/console/appeals/1/decision", action="maybe") == "操作: 不是可选的值"
    assert refused("/console/bank", text=RUMOR) == "辟谣说明: 必填"
    for odd, why in [("%00", "无效"), ("x" * 33, "不能超过 32 个字符")]:
        gone = api.client.post(f"/console/bank/{odd}/delete", data={"csrf": token})
        assert gone.status_code == 422 and refusal_of(gone.text) == f"谣言编号: {why}"
    assert refused("/console/bank", text=RUMOR, notice="n" * 10_001) == (
        "辟谣说明: 不能超过 10000 个字符"
    )
    api.client.get("/console/lang/en")
    assert refused("/console/appeals", **{**appeal, "item_id": ""}) == "Item id: is required"
    assert refused("/console/bank", notice="n") == "Text: is required"


def test_every_rule_refusal_has_its_words_in_each_language_with_the_same_details() -> None:
    def fields(words: str) -> set[str]:
        return {name for _, name, _, _ in string.Formatter().parse(words) if name}

    assert set(REFUSALS) == {
        ValidationError,
        RefusedError,
        StorageError,
        IdempotencyMismatchError,
    }
    for reason, words in REASONS.items():
        zh, en = TEXT[f"refusal.{reason}"]
        assert fields(zh) == fields(en) == fields(words), reason
        assert re.search(r"[\u4e00-\u9fff]", zh) and not re.search(r"[\u4e00-\u9fff]", en)
        # the console cites the articles (and paragraphs) the API's words do
        cited = sorted(int(n) for n in re.findall(r"\bart(\d+)", words))
        assert sorted(int(n) for n in re.findall(r"\bart(\d+)", en)) == cited, reason
        in_zh = re.findall(r"第([一二三四五六七八九十]+)条", zh)
        assert sorted(articles.chinese_number(n) for n in in_zh) == cited, reason


def test_every_status_has_its_words_in_each_language() -> None:
    for status in (*get_args(ReportStatus), *APPEAL_STATUSES):
        zh, en = TEXT[f"status.{status}"]
        assert re.search(r"[\u4e00-\u9fff]", zh) and not re.search(r"[\u4e00-\u9fff]", en)
    assert set(STATUSES) < set(get_args(ReportStatus))


def test_every_action_and_the_default_policys_dispositions_have_words_in_each_language(
    pipeline: Pipeline,
) -> None:
    kinds = [step.kind for step in pipeline.policy.dispositions]
    for key in [*(f"action.{a}" for a in ACTIONS), *(f"disposition.{k}" for k in kinds)]:
        zh, en = TEXT[key]
        assert re.search(r"[\u4e00-\u9fff]", zh) and not re.search(r"[\u4e00-\u9fff]", en)
    # a kind a deployment's policy adds has no words here: it is shown as it is
    assert worded(translator("zh"), "disposition", "quarantine") == "quarantine"


def test_decisions_and_dispositions_are_listed_in_the_pages_language_with_their_code_words(
    api: Api,
) -> None:
    policy, review = api.services.scoring.policy, api.services.review
    assert api.score({"id": "p1", "text": RUMOR, "account_id": "a1"}).status_code == 200
    (item,) = review.list_items(policy).items
    review.decide(policy, item.id, "wang", "escalate", None, None, None)
    review.decide(policy, item.id, "zhao", "confirm", "rumor", "art18.6", role="admin")
    sign_in(api, "li", "admin")

    def listed(page: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        decisions = page.split('id="decisions"')[1].split("</ol>", maxsplit=1)[0]
        dispositions = page.split('id="dispositions"')[1].split("</ul>", maxsplit=1)[0]
        return (
            re.findall(r'<strong data-action="(\w+)">([^<]+)</strong>', decisions),
            re.findall(r'<li data-kind="(\w+)">([^·<]+?) ·', dispositions),
        )

    page = api.client.get(f"/console/items/{item.id}").text
    assert listed(page) == (
        [("escalate", "上报"), ("confirm", "确认违规")],
        [("warning", "警示提醒")],
    )
    assert '<span data-kind="warning">警示提醒</span>' in page
    legend = re.findall(r'font-size="11">([^<]+)</text>', api.client.get("/console/dashboard").text)
    assert {"确认违规", "驳回", "上报"} <= set(legend) and not set(ACTIONS) & set(legend)
    api.client.get("/console/lang/en")
    page = api.client.get(f"/console/items/{item.id}").text
    assert listed(page) == (
        [("escalate", "escalated"), ("confirm", "confirmed a violation")],
        [("warning", "warning")],
    )
    legend = re.findall(r'font-size="11">([^<]+)</text>', api.client.get("/console/dashboard").text)
    assert {"confirmed a violation", "dismissed", "escalated"} <= set(legend)


def test_statuses_are_shown_in_the_pages_language_with_their_code_words_kept(api: Api) -> None:
    policy, review = api.services.scoring.policy, api.services.review
    assert api.score({"id": "p1", "text": RUMOR, "account_id": "a1"}).status_code == 200
    (item,) = review.list_items(policy).items
    sign_in(api, "li")

    def options(html: str, name: str) -> list[tuple[str, str]]:
        listed = html.split(f'<select name="{name}"')[1].split("</select>", maxsplit=1)[0]
        return re.findall(r'<option value="(\w+)" ?(?:selected)?>([^<]+)</option>', listed)

    page = api.client.get(f"/console/items/{item.id}").text
    assert 'class="status status-open" data-status="open">待处理</span>' in page
    queue = api.client.get("/console/queue").text
    assert options(queue, "status") == [
        ("open", "待处理"),
        ("escalated", "已上报"),
        ("confirmed", "已确认违规"),
        ("dismissed", "已驳回"),
    ]
    review.decide(policy, item.id, "wang", "confirm", "rumor", "art18.6")
    review.file_appeal(policy, account_id="a1", item_id=item.id, reason="误判", filed_by=api.key)
    appeals = api.client.get("/console/appeals").text
    assert options(appeals, "status") == [
        ("pending", "待处理"),
        ("upheld", "申诉成立"),
        ("rejected", "申诉驳回"),
        ("all", "全部"),
    ]
    assert '<td data-status="pending">待处理</td>' in appeals
    api.client.get("/console/lang/en")
    page = api.client.get(f"/console/items/{item.id}").text
    assert 'data-status="confirmed">confirmed</span>' in page
    appeals = api.client.get("/console/appeals").text
    assert ("all", "any") in options(appeals, "status")
    assert '<td data-status="pending">pending</td>' in appeals


class VisibleText(HTMLParser):
    """A page's words as a reader meets them: its text and the attributes read out or shown
    (``aria-label``, ``title``, ``placeholder``), without scripts, and without the policy's own
    words (a reason's code and summary, set apart as such)."""

    KEPT_APART = frozenset({"policy"})
    SHOWN = frozenset({"aria-label", "title", "placeholder"})

    def __init__(self) -> None:
        super().__init__()
        self.words: list[str] = []
        self.open: list[bool] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        classes = set((dict(attrs).get("class") or "").split())
        skipped = (
            (self.open and self.open[-1]) or tag == "script" or bool(classes & self.KEPT_APART)
        )
        if tag not in VOID_TAGS:
            self.open.append(skipped)
        if not skipped:
            self.words += [v for k, v in attrs if k in self.SHOWN and v]

    def handle_endtag(self, tag: str) -> None:
        if tag not in VOID_TAGS and self.open:
            self.open.pop()

    def handle_data(self, data: str) -> None:
        if not (self.open and self.open[-1]):
            self.words.append(data)


VOID_TAGS = frozenset({"br", "hr", "img", "input", "link", "meta", "rect", "line", "polyline"})


def visible_text(html: str) -> str:
    parser = VisibleText()
    parser.feed(html)
    return " ".join(parser.words)


def visible_words(html: str) -> set[str]:
    return set(re.findall(r"[A-Za-z_]+", visible_text(html)))


UNIT_GLUED = re.compile(r"\b\d+(?:-\d+)?[a-z]+\b")
"""A number with a Latin unit glued to it: ``5m``, ``1-3d``."""
ARTICLE_CODE = re.compile(r"\bart\d")
KEY_ID_SHOWN = re.compile(rf"\b{security.KEY_ID.pattern}\b")
"""An article by its code (``art18.6``), where Chinese names it 第十八条第六项."""


def keys_of(evidence: dict[str, Any]) -> set[str]:
    """The names in ``evidence``, of the dicts in it too."""
    return {
        name
        for key, value in evidence.items()
        for name in (key, *(keys_of(value) if isinstance(value, dict) else ()))
    }


def every_kind(api: Api) -> dict[str, Item]:
    """Items of every kind and head, by the post they are about (``cluster``, ``followers`` and
    ``engagement`` for those about none, ``match`` for a bank match's, ``impersonation`` for an
    account whose name holds a protected one, ``dormant`` for an account unused too long): a
    coordinated batch, a copy declared original, a report, a follower jump, a post's bought
    reposts, a post repeating a banked rumour (its item dismissed, the match an item of its
    own), a post of an account its confirmed violations stopped publishing (blocked for that, at
    thresholds its level lowered), an account named after a protected organisation and one found
    dormant; b0's confirmation upheld on appeal; items waiting minutes, hours and days."""
    policy, review = api.services.scoring.policy, api.services.review
    repository = api.services.scoring.repository
    assert isinstance(repository, SqlRepository)
    for i in range(5):  # a coordinated batch: a cluster item and score items
        post = {"id": f"b{i}", "text": RUMOR + "!" * i, "account_id": f"bot{i}"}
        assert api.score({**post, "created_at": 1_700_000_000 + 60 * i}).status_code == 200
    text = "独家原创：本市地铁三号线下月起全线停运改造，市民请提前安排出行路线。"
    assert api.score({"id": "early", "text": text, "account_id": "a1"}).status_code == 200
    copy = {"id": "late", "text": text.replace("三", "五"), "account_id": "a2"}
    assert api.score({**copy, "declared_original": True}).status_code == 200
    review.file_report(
        policy,
        post_id="r1",
        account_id="a4",
        category="incitement",
        text_="煽动",
        reporter="test",
        reporter_id="u1",
    )
    review.put_account(policy, "f1", followers=10)
    review.put_account(policy, "f1", followers=2_000_000)
    for n in range(policy.registration.batch_accounts):  # a batch registration
        review.put_account(policy, f"s{n}", name=f"清朗日报{n:02}")
    bought = Counts(reads=10, reposts=policy.engagement.min_gain["reposts"])
    review.put_engagement(policy, "e1", "f2", bought)
    banked = api.client.post(
        "/v1/bank/rumors",
        json={"text": MILK, "notice": "经核实,该品牌奶粉抽检合格"},
        headers=api.headers(api.new_key("admin")),
    )
    assert banked.status_code == 201, banked.text
    echo = api.score({"id": "echo", "text": MILK + "！", "account_id": "a5"})
    for n, said in enumerate(VIOLATIONS):
        assert api.score({"id": f"v{n}", "text": said, "account_id": "bad"}).status_code == 200
    api.settle()
    for item in review.list_items(policy).items:
        if item.account_id == "bad":
            review.decide(policy, item.id, "wang", "confirm", "rumor", "art18.6")
    api.services.scoring.recover()  # the account's standing, as the service reads it anew
    assert api.score({"id": "after", "text": PLAIN, "account_id": "bad"}).status_code == 200
    api.settle()
    items = review.list_items(policy).items
    (confirmed,) = [i for i in items if i.post_id == "b0"]
    review.decide(policy, confirmed.id, "wang", "confirm", "rumor", "art18.6")
    appeal = review.file_appeal(
        policy, account_id="bot0", item_id=confirmed.id, reason="误判", filed_by=api.key
    )
    review.decide_appeal(policy, appeal.id, "zhao", "uphold", None)
    (repeat,) = [i for i in items if i.post_id == "echo"]
    review.decide(policy, repeat.id, "wang", "dismiss", None, None)
    record = ScoreRecord.model_validate(echo.json())
    repository.enqueue_requests(policy, requests(record, MILK + "！", {}))
    waited = {"late": timedelta(minutes=10), "r1": timedelta(hours=5), "early": timedelta(days=3)}
    with repository.engine.begin() as connection:
        for post_id, wait in waited.items():
            connection.execute(
                update(ReviewItem)
                .where(ReviewItem.post_id == post_id)
                .values(enqueued_at=datetime.now(UTC) - wait)
            )
    review.put_account(policy, "a5", name="新华社北京分社")
    review.add_protected_name(policy, name="新华社", kind="organisation", subject_ids=[], by="k")
    # a dormant account under a policy that sends it to review after a day, with a notice and
    # no warning ahead (the server's own sweep, on its 183 days, leaves it alone)
    rules = policy.dormancy.model_copy(update={"after_days": 1, "action": "review", "warn_days": 0})
    reviewing = Policy.model_validate({**policy.model_dump(), "dormancy": rules.model_dump()})
    review.put_account(policy, "sleeper", name="沉睡号", now=datetime.now(UTC) - timedelta(days=2))
    assert repository.settle_dormancy(reviewing) == 1
    found = [*review.list_items(policy).items, confirmed, repeat]
    assert {i.kind for i in found} == set(KINDS)
    assert {i.head for i in found} == set(CATEGORIES)
    by_kind = {
        "cluster": "cluster",
        "follower_jump": "followers",
        "engagement": "engagement",
        "bank_match": "match",
        "impersonation": "impersonation",
        "dormant": "dormant",
        "signup_batch": "signups",
    }
    return {by_kind.get(i.kind) or str(i.post_id): i for i in found}


def test_every_page_in_chinese_shows_no_code_word_with_the_code_words_kept(api: Api) -> None:
    policy = api.services.scoring.policy
    found = every_kind(api)
    items, confirmed = list(found.values()), found["b0"]
    sign_in(api, "li", "admin")
    evidence = set()
    for item in items:
        for reason in (present.record_of(item) or {}).get("reasons", []):
            evidence |= keys_of(reason["evidence"])
        if item.kind == "bank_match":
            evidence |= keys_of(item.evidence or {})
    assert {"similarity", "gap_s", "accounts_within_window", "text_decision"} <= evidence
    codes = {
        *KINDS,
        *CATEGORIES,
        *PROTECTED_KINDS,
        *get_args(Risk),
        *ACTIONS,
        *get_args(ReportStatus),
        *APPEAL_STATUSES,
        *(step.kind for step in policy.dispositions),
        *get_args(Decision),
        *get_args(Role),
        *evidence,
        "violation",
        "reversal",
        "restore",
        "declared_original",
        "originality_claim",
        "None",
    }
    paths = [
        "/console/queue",
        "/console/queue?status=confirmed",
        "/console/queue?kind=cluster",
        "/console/appeals?status=all",
        "/console/reports?all=true",
        "/console/bank",
        "/console/dashboard",
        *(f"/console/items/{i.id}" for i in items),
    ]
    pages = {path: api.client.get(path).text for path in paths}
    for path, page in pages.items():
        assert not visible_words(page) & codes, path
        # a key id the page names (a bank entry's creator) is random hex, which reads as a
        # number with a unit glued to it about one time in two hundred ("946263264feb")
        said = KEY_ID_SHOWN.sub("", visible_text(page))
        assert not UNIT_GLUED.findall(said) and not ARTICLE_CODE.findall(said), path
    queue = pages["/console/queue"]
    assert '<td data-kind="cluster">近似重复聚类</td>' in queue
    assert '<td data-head="coordination">批量协同发布</td>' in queue
    assert '<option value="fake_originality" >虚假原创</option>' in queue
    assert '<option value="follower_jump" >粉丝数异常</option>' in queue
    assert (
        '<option value="cluster" selected>近似重复聚类</option>'
        in (pages["/console/queue?kind=cluster"])
    )
    assert {"<td>10 分钟</td>", "<td>5 小时</td>", "<td>3 天</td>"} <= set(
        re.findall(r"<td>[^<]*</td>", queue)
    )
    reports = pages["/console/reports?all=true"]
    assert '<td data-category="incitement">煽动极端情绪</td>' in reports
    (impersonation,) = [i for i in items if i.kind == "impersonation"]
    page = pages[f"/console/items/{impersonation.id}"]
    assert '<td data-protected="organisation">企事业单位等组织机构</td>' in page
    page = pages[f"/console/items/{confirmed.id}"]
    assert '<span data-kind="score">评分</span> · <span data-head="rumor">谣言</span>' in page
    assert '<span data-category="rumor">谣言</span>' in page
    assert '<span data-reason="violation">确认违规扣分</span>' in page
    assert '<span data-reason="reversal">申诉成立退回</span>' in page
    dashboard = pages["/console/dashboard"]
    assert 'aria-label="各类别每日入队条目数(各来源合计,14 天,按 UTC+8 日期)"' in dashboard
    assert "不足 1 小时" in dashboard and "1-3 天" in dashboard and "超过 3 天" in dashboard
    api.client.get("/console/lang/en")
    pages = {path: api.client.get(path).text for path in paths}
    for path, page in pages.items():
        # English words may be code words ("similarity"): the evidence's own names are not
        assert not visible_words(page) & {k for k in evidence if "_" in k}, path
        # a key id, random hex, as in Chinese above
        assert not UNIT_GLUED.findall(KEY_ID_SHOWN.sub("", visible_text(page))), path
    page = pages[f"/console/items/{confirmed.id}"]
    assert '<span data-reason="reversal">reversed on appeal</span>' in page
    assert '<span data-kind="score">score</span>' in page
    queue = pages["/console/queue"]
    assert {"<td>10 min</td>", "<td>5 h</td>", "<td>3 days</td>"} <= set(
        re.findall(r"<td>[^<]*</td>", queue)
    )
    dashboard = pages["/console/dashboard"]
    queued = "Review items queued per head per day, of every kind (14 days, UTC+8 dates)"
    assert f'aria-label="{queued}"' in dashboard
    stored = "Scores of the last day&#39;s stored records (review, block) against the review"
    assert f"<title>{stored} threshold: incitement</title>" in dashboard
    assert "under 1 h" in dashboard and "1-3 days" in dashboard and "over 3 days" in dashboard


def test_an_items_page_labels_what_it_shows_in_the_pages_language(api: Api) -> None:
    found = every_kind(api)
    token = sign_in(api, "li", "admin")

    def page_of(name: str) -> str:
        return api.client.get(f"/console/items/{found[name].id}").text

    after = page_of("after")
    meta = after.split('<p class="meta">')[1].split("</p>")[0]
    assert "帖子 after" in meta and re.search(r"入队 \d{4}-\d\d-\d\d \d\d:\d\d UTC\+8", meta)
    assert '<span data-decision="block">拦截</span>' in meta
    # blocked for the account's state: the reason says so, the disposition in words
    assert f'<span class="policy">{STOPPED}</span>' in after
    closed = "处置: 关闭注销账号 · 处置依据: 第十九条 · 处置结束: 直至解除 · 仅按正文的决定: 送审"
    assert closed in re.sub(r"</?span>", "", after)
    assert "<span>审核阈值按等级乘以: 0.5</span>" in after
    # the test policy blocks on no score: no threshold above 1 is shown as if one
    assert "<td>不按分数拦截</td>" in after and "1.010" not in after
    assert re.search(r'title="[^"]+ · 权重 \d\.\d{3}"', after)
    late = page_of("late")
    assert re.search(r"<span>晚于更早的帖子: \d+ 秒</span>", late)
    assert "<span>原创声明: 平台标注为原创</span>" in late
    match = page_of("match")
    assert match.count("<h2>谣言库</h2>") == 1
    shown = r'id="bank-match"><span>谣言库条目: \w+</span> · <span>相似度: [\d.]+</span></p>'
    assert re.search(shown, match)
    lifted = r'<span class="lifted">\(\d{4}-\d\d-\d\d \d\d:\d\d UTC\+8 解除\)</span>'
    assert re.search(lifted, page_of("b0"))
    api.client.post(f"/console/items/{found['late'].id}/claim", data={"csrf": token})
    assert re.search(r"认领人 li \(至 \d{4}-\d\d-\d\d \d\d:\d\d UTC\+8\)", page_of("late"))
    assert 'id="all-reports">显示全部</a>' in api.client.get("/console/reports").text
    # a page about no one post shows no empty post
    for about_none in ("cluster", "followers", "engagement"):
        assert 'id="post-text"' not in page_of(about_none)
        assert "<h2>正文</h2>" not in page_of(about_none)
    assert 'id="post-text"' in page_of("r1") and 'id="post-text"' in after
    dormant = page_of("dormant")
    assert '<span data-kind="dormant">长期未使用账号</span>' in dormant
    assert '<span data-head="dormant">注册后超过六个月不登录、不使用</span>' in dormant
    api.client.get("/console/lang/en")
    after = page_of("after")
    assert '<span data-decision="block">block</span>' in after
    closed = "disposition: account closed · its basis: art19 · it ends: until lifted"
    assert closed in re.sub(r"</?span>", "", after)
    assert "<td>never on the score alone</td>" in after
    assert re.search(r"<span>posted after it by: \d+ s</span>", page_of("late"))
    lifted = r'<span class="lifted">\(lifted \d{4}-\d\d-\d\d \d\d:\d\d UTC\+8\)</span>'
    assert re.search(lifted, page_of("b0"))
    assert 'id="all-reports">Show all</a>' in api.client.get("/console/reports").text


def test_a_dormant_items_page_shows_the_use_that_last_set_the_clock_and_since_when(
    api: Api,
) -> None:
    """The page of a dormant account's item says which use last set its clock (its
    registration, a login, a post) and when, its last login, since when it is dormant, when the
    platform was warned and when the dormancy took effect; after a return, the use that ended
    it, and that it is dormant no more."""
    policy, review = api.services.scoring.policy, api.services.review
    repository = api.services.scoring.repository
    rules = policy.dormancy.model_copy(update={"after_days": 1, "action": "review", "warn_days": 0})
    reviewing = Policy.model_validate({**policy.model_dump(), "dormancy": rules.model_dump()})
    zone = api.services.settings.console_zone
    login = (datetime.now(UTC) - timedelta(days=3)).replace(microsecond=0)
    review.put_account(policy, "quiet", name="沉睡号", now=login - timedelta(days=1))
    review.put_account(policy, "idle", name="闲置号", now=login - timedelta(days=1))
    review.put_account(policy, "idle", login_at=login)
    # warned half a day ahead, under the policy then (whose longer idle time warns it alone):
    # it takes effect at the date it was told, three quarters of a day before the sweep, within
    # the day a warning lapses after
    review.put_account(policy, "warned", name="预警号", now=login - timedelta(days=2))
    warning = Policy.model_validate(
        {
            **reviewing.model_dump(),
            "dormancy": {**rules.model_dump(), "after_days": 3.5, "warn_days": 0.5},
        }
    )
    warned_at = login + timedelta(days=1.75)
    assert repository.warn_dormancy(warning, now=warned_at) == 1
    assert repository.settle_dormancy(reviewing) == 3
    items = {i.account_id: i for i in review.list_items(policy, kind="dormant").items}
    found = {a: review.get_account(policy, a) for a in ("quiet", "idle", "warned")}
    sign_in(api, "li")

    def clock(account_id: str) -> str:
        page = api.client.get(f"/console/items/{items[account_id].id}").text
        said = page.split('id="dormancy-clock">')[1].split("</p>")[0]
        return re.sub(r"</?span[^>]*>", "", said)

    dormant_since = "自 {} 起判定为长期未使用"
    registered = times.when(found["quiet"].active_at, zone)
    registered_effect = times.when(login, zone)
    assert clock("quiet") == " · ".join(
        [
            f"最近一次使用: 注册(服务首次记录该账号) {registered}",
            "最近登录: 平台未报告过",
            dormant_since.format(times.when(found["quiet"].dormant_at, zone)),
            f"未预警(当时的策略不预警),休眠于 {registered_effect} 生效",
        ]
    )
    assert clock("idle") == " · ".join(
        [
            f"最近一次使用: 登录 {times.when(login, zone)}",
            f"最近登录: {times.when(login, zone)}",
            dormant_since.format(times.when(found["idle"].dormant_at, zone)),
            f"未预警(当时的策略不预警),休眠于 {times.when(login + timedelta(days=1), zone)} 生效",
        ]
    )
    assert clock("warned").split(" · ")[3] == (
        f"已于 {times.when(warned_at, zone)} 预警,"
        f"休眠于 {times.when(warned_at + timedelta(days=0.5), zone)} 生效"
    )
    assert api.score({"id": "back", "text": PLAIN, "account_id": "quiet"}).status_code == 200
    wait_for(lambda: review.get_account(policy, "quiet").dormant_at is None)
    api.client.get("/console/lang/en")
    returned = review.get_account(policy, "quiet")
    assert clock("quiet") == (
        f"Last use: post {times.when(returned.active_at, zone)} · "
        "Last login: never reported · In use again: no longer dormant · "
        f"Not warned (the policy then gave no warning), dormancy effective {registered_effect}"
    )
    assert clock("warned").split(" · ")[3] == (
        f"Warned on {times.when(warned_at, zone)}, "
        f"dormancy effective {times.when(warned_at + timedelta(days=0.5), zone)}"
    )


def test_article_codes_read_as_the_provisions_number_them() -> None:
    zh, en = translator("zh"), translator("en")
    assert [articles.name(code, zh) for code in ("art8", "art12", "art18.6", "art20")] == [
        "第八条",
        "第十二条",
        "第十八条第六项",
        "第二十条",
    ]
    assert articles.name("art18.6", en) == "art18.6" and articles.name("x1", zh) == "x1"
    assert all(articles.chinese_number(articles.chinese_numeral(n)) == n for n in range(1, 100))


def test_every_article_and_item_named_in_either_language_reads_back_as_its_code() -> None:
    codes = [f"art{a}" for a in range(1, provisions.ARTICLES + 1)] + [
        f"art{a}.{i}" for a, items in provisions.ITEMS.items() for i in range(1, items + 1)
    ]
    for code in codes:
        assert provisions.unknown(code) is None
        for language in ("zh", "en"):
            assert articles.code(articles.name(code, translator(language))) == code
        assert articles.code(code.removeprefix("art")) == code
    assert articles.code("第十八条 第六项") == articles.code("第18条第6项") == "art18.6"
    # a number past the Provisions is their model's to refuse, with its reason
    assert articles.code("第九十九条") == "art99" and provisions.unknown("art99")
    # what names no article is left as typed: the model refuses it as it is
    for other in ("第一十八条", "第十八条第", "十八", "art18.6x", "18.6.1", "第零条", ""):
        assert articles.code(other) == other


def test_every_kind_head_credit_reason_role_and_decision_has_words_in_each_language(
    policy: Policy,
) -> None:
    for key in [
        # the dispositions a dormancy brings, which no ladder of a violation's names
        *(f"disposition.{k}" for k in dormancy.kinds(policy.dispositions)),
        *(f"kind.{k}" for k in KINDS),
        *(f"head.{h}" for h in CATEGORIES),
        *(f"credit.{r}" for r in ("violation", "reversal", "restore")),
        *(f"role.{r}" for r in ("reviewer", "admin")),  # a console user's (users create)
        *(f"decision.{d}" for d in get_args(Decision)),
        *(f"use.{u}" for u in get_args(dormancy.Use)),
    ]:
        zh, en = TEXT[key]
        assert re.search(r"[\u4e00-\u9fff]", zh) and not re.search(r"[\u4e00-\u9fff]", en)


def test_a_rules_refusal_reaches_the_page_in_its_language_and_the_api_in_english(
    api: Api,
) -> None:
    policy = api.services.scoring.policy
    review = api.services.review
    for n in (1, 2):
        assert api.score({"id": f"p{n}", "text": RUMOR, "account_id": "a1"}).status_code == 200
    first, second = sorted(i.id for i in review.list_items(policy).items)
    token = sign_in(api, "li")

    def refused(url: str, **fields: str) -> str:
        answer = api.client.post(url, data={"csrf": token, **fields})
        assert answer.status_code == 409, (url, answer.status_code)
        return refusal_of(answer.text)

    zone = api.services.settings.console_zone
    long_ago = datetime.now(UTC) - timedelta(days=policy.appeals.file_within_days + 1)
    review.decide(policy, first, "wang", "confirm", "rumor", "art18.6", now=long_ago)
    appeal = {"account_id": "a1", "item_id": str(first), "reason": "误判"}
    closed = times.when(long_ago + timedelta(days=policy.appeals.file_within_days), zone)
    assert refused("/console/appeals", **appeal) == f"申诉期限已于 {closed} 截止"
    lease = review.claim(policy, second, "wang").lease_until
    claimed = refused(f"/console/items/{second}/claim")
    assert claimed == f"该条目已被其他审核员认领,至 {times.when(lease, zone)} 为止"
    # who decided and when, as the item's decisions list them, on a claim too
    at = times.when(long_ago, zone)
    decided = refused(f"/console/items/{first}/decision", action="dismiss")
    assert decided == f"该条目已处理(已确认违规),由 wang 于 {at} 决定"
    assert refused(f"/console/items/{first}/claim") == decided
    api.client.get("/console/lang/en")
    decided = refused(f"/console/items/{first}/decision", action="dismiss")
    assert decided == f"The item is decided already (confirmed), by wang at {at}"
    assert refused("/console/appeals", **appeal) == f"The window to appeal closed at {closed}"
    # the JSON API's words are its own, in English
    answer = api.client.post(
        f"/v1/review/items/{first}/decision",
        json={"action": "dismiss"},
        headers=api.headers(api.new_key("reviewer")),
    )
    assert answer.status_code == 409
    said = f"the item is decided already (confirmed, by wang at {long_ago.isoformat()})"
    assert answer.json() == {"detail": said}


def form_of(html: str, form_id: str) -> str:
    found = re.search(rf'<form [^>]*id="{form_id}".*?</form>', html, re.S)
    assert found is not None, f"the page shows the form {form_id}"
    return found.group(0)


def test_a_refused_form_comes_back_as_typed_with_why_beside_it(api: Api) -> None:
    review, policy = api.services.review, api.services.scoring.policy
    assert api.score({"id": "p1", "text": RUMOR, "account_id": "a1"}).status_code == 200
    (item,) = review.list_items(policy).items
    token = sign_in(api, "wang", "admin")
    # longer than a cookie could carry across a redirect: the answer is the page itself
    reason = "该帖引用的是官方通报原文," * 400
    typed = {"account_id": "a1", "item_id": "abc", "reason": reason}
    sent = api.client.post("/console/appeals", data={"csrf": token, **typed})
    assert sent.status_code == 422 and sent.text.count('class="error"') == 1
    form = form_of(sent.text, "file-appeal")
    assert refusal_of(form) == "条目编号: 应为整数"
    assert all(f'value="{value}"' in form for value in typed.values())
    # shown once: the page read again offers the form empty
    again = api.client.get("/console/appeals").text
    assert 'class="error"' not in again and reason not in again

    here = f"/console/items/{item.id}"
    note = "来源待核实 <b>"
    decision = {"csrf": token, "category": "incitement", "basis": "", "note": note}
    refused = api.client.post(f"{here}/decision", data={**decision, "action": "confirm"})
    assert refused.status_code == 422
    form = form_of(refused.text, "decision-form")
    assert refusal_of(form) == "依据条款: 确认违规时必填"
    assert '<option value="incitement" selected>' in form and 'id="basis" value=""' in form
    assert 'id="note" value="来源待核实 &lt;b&gt;"' in form
    unknown = {**decision, "action": "confirm", "basis": "art99"}
    refused = api.client.post(f"{here}/decision", data=unknown)
    assert refused.status_code == 422
    form = form_of(refused.text, "decision-form")
    assert (
        refusal_of(form)
        == "依据条款: 不是《规定》中的条或项(如第十八条或 art18,第十八条第六项或 art18.6)"
    )
    assert 'id="basis" value="art99"' in form and review.get_item(policy, item.id).status == "open"
    # the language switch goes back to the item's page, not to the address the form posted to
    assert f'<a href="/console/lang/en?next={here}"' in refused.text
    # a rule's refusal (another reviewer holds the item) keeps the note as well
    review.claim(policy, item.id, "li")
    taken = api.client.post(f"{here}/decision", data={**decision, "action": "dismiss"})
    assert taken.status_code == 409
    form = form_of(taken.text, "decision-form")
    assert refusal_of(form).startswith("该条目已被其他审核员认领")
    assert 'id="note" value="来源待核实 &lt;b&gt;"' in form
    assert review.get_item(policy, item.id).status == "open"

    text = "<b>停水</b>" + RUMOR
    banked = api.client.post(
        "/console/bank", data={"csrf": token, "text": text, "notice": "n" * 10_001}
    )
    assert banked.status_code == 422
    form = form_of(banked.text, "add-rumor")
    assert refusal_of(form) == "辟谣说明: 不能超过 10000 个字符"
    assert f">{escape(text)}</textarea>" in form and f">{'n' * 10_001}</textarea>" in form

    # a form the page no longer shows (no such appeal): why is said above the page
    gone = api.client.post(
        "/console/appeals/999/decision", data={"csrf": token, "action": "uphold", "note": "x"}
    )
    assert gone.status_code == 409 and refusal_of(gone.text) == "没有申诉 999"
    assert gone.text.index('class="error"') < gone.text.index("<h1>")


def test_a_confirmation_asks_first_and_without_the_script_its_step_is_a_page(api: Api) -> None:
    """The item page's confirmation button asks before the decision is sent: it posts the form
    to the step (the console's script opens the same dialog in the page instead), whose answer
    is the item's page with the form as typed and its dialog open, its own button focused,
    nothing decided; that button sends the decision, on the record the reviewer read; its
    cancel is a link back to the item. A confirmation the request model refuses is refused at
    the step, as sent; a dismissal is taken at once."""
    review, policy = api.services.review, api.services.scoring.policy
    for n in (1, 2):
        assert api.score({"id": f"p{n}", "text": RUMOR, "account_id": "a1"}).status_code == 200
    first, second = (i.id for i in review.list_items(policy).items)
    sign_in(api, "li")
    here = f"/console/items/{first}"
    page = api.client.get(here).text
    form = form_of(page, "decision-form")
    (asks,) = re.findall(r'<button [^>]*id="confirm"[^>]*>', form)
    assert f'formaction="{here}/confirming"' in asks and 'value="confirm"' in asks
    (closed,) = re.findall(r"<dialog [^>]*>", form)
    assert 'id="confirm-dialog"' in closed and " open" not in closed
    typed = {
        **fields_of(form),
        "category": "rumor",
        "basis": "第十八条第六项",
        "note": "已核实 <b>",
        "action": "confirm",
    }
    step = api.client.post(f"{here}/confirming", data=typed)
    assert step.status_code == 200
    assert review.get_item(policy, first).status == "open"
    assert ConsoleReads(make_engine(api.url, 5.0)).decisions(first) == []
    # a reload reads the item's page, not the step
    assert f'data-page="{here}"' in step.text
    asked = form_of(step.text, "decision-form")
    dialog = re.search(r"<dialog [^>]*\bopen\b[^>]*>.*?</dialog>", asked, re.S)
    assert dialog is not None, asked
    (sends,) = re.findall(r'<button [^>]*id="confirm-send"[^>]*>', dialog.group(0))
    assert "autofocus" in sends and 'name="action" value="confirm"' in sends
    assert "formaction" not in sends and "账号 a1 的信用分" in dialog.group(0)
    assert f'<a href="{here}" id="confirm-cancel"' in dialog.group(0)
    kept = fields_of(asked)
    assert (kept["basis"], kept["note"]) == ("第十八条第六项", "已核实 &lt;b&gt;")
    assert kept["record_id"] == typed["record_id"]
    assert '<option value="rumor" selected>' in asked
    sent = {**kept, "category": "rumor", "note": "已核实 <b>", "action": "confirm"}
    taken = api.client.post(f"{here}/decision", data=sent, follow_redirects=False)
    assert taken.status_code == 303
    assert review.get_item(policy, first).status == "confirmed"
    (made,) = ConsoleReads(make_engine(api.url, 5.0)).decisions(first)
    assert (made.basis, made.note) == ("art18.6", "已核实 <b>")
    # refused at the step as it would be sent: no article
    there = f"/console/items/{second}"
    bare = {**fields_of(form_of(api.client.get(there).text, "decision-form")), "basis": ""}
    refused = api.client.post(f"{there}/confirming", data={**bare, "category": "rumor"})
    assert refused.status_code == 422
    assert refusal_of(form_of(refused.text, "decision-form")) == "依据条款: 确认违规时必填"
    assert re.search(r"<dialog [^>]*\bopen\b", refused.text) is None
    dismissed = api.client.post(
        f"{there}/decision", data={**bare, "action": "dismiss"}, follow_redirects=False
    )
    assert dismissed.status_code == 303
    assert review.get_item(policy, second).status == "dismissed"


def test_a_decision_on_a_record_a_re_score_replaced_is_refused_with_the_new_one_shown(
    api: Api,
) -> None:
    """The item's page carries the record it shows in its decision form. A re-score moves the
    item to another record before the reviewer decides: the form is refused, saying so, and
    the page it answers with shows the new record, whose form is then taken."""
    review, policy = api.services.review, api.services.scoring.policy
    assert api.score({"id": "p1", "text": RUMOR, "account_id": "a1"}).status_code == 200
    (item,) = review.list_items(policy).items
    token = sign_in(api, "li")
    here = f"/console/items/{item.id}"
    page = api.client.get(here).text
    read = fields_of(form_of(page, "decision-form"))
    assert read["record_id"] == str(item.record_id) and read["csrf"] == token
    repository = api.services.scoring.repository
    assert isinstance(repository, SqlRepository)
    stored = review.get_item(policy, item.id).evidence
    assert stored is not None
    newer = ScoreRecord.model_validate(stored["record"]).model_copy(
        update={"policy_version": "p9", "decision": "block"}
    )
    repository.save_records([Pending(newer, True, RUMOR)])
    moved = review.get_item(policy, item.id).record_id
    assert moved not in (None, item.record_id)
    decision = {"action": "confirm", "category": "rumor", "basis": "art18.6"}
    refused = api.client.post(f"{here}/decision", data={**read, **decision})
    assert refused.status_code == 409
    form = form_of(refused.text, "decision-form")
    assert refusal_of(form) == (
        f"本页显示后,条目 {item.id} 的评分记录已变更(帖子被重新评分):未作决定。"
        f"页面现显示新的记录 {moved},请阅后重新决定"
    )
    assert fields_of(form)["record_id"] == str(moved)
    assert 'data-decision="block"' in refused.text
    assert review.get_item(policy, item.id).status == "open"
    taken = api.client.post(f"{here}/decision", data={**fields_of(form), **decision})
    assert taken.status_code == 200
    assert review.get_item(policy, item.id).status == "confirmed"


@pytest.mark.parametrize(("language", "shown"), [("zh", "第十八条第六项"), ("en", "art18.6")])
def test_the_offered_basis_is_named_as_the_page_names_articles_and_confirms_as_it_stands(
    api: Api, language: str, shown: str
) -> None:
    """The basis a confirmation offers is the article in the page's words, as the pages name it
    elsewhere: sent unchanged, the item is confirmed on its code."""
    review, policy = api.services.review, api.services.scoring.policy
    assert api.score({"id": "p1", "text": RUMOR, "account_id": "a1"}).status_code == 200
    (item,) = review.list_items(policy).items
    assert present.basis_of(item, policy) == "art18.6"
    token = sign_in(api, "li")
    api.client.get(f"/console/lang/{language}")
    form = form_of(api.client.get(f"/console/items/{item.id}").text, "decision-form")
    fields = fields_of(form)
    assert fields["basis"] == shown
    (category,) = re.findall(r'<option value="(\w+)" selected>', form)
    confirm = {**fields, "csrf": token, "category": category, "action": "confirm"}
    taken = api.client.post(
        f"/console/items/{item.id}/decision", data=confirm, follow_redirects=False
    )
    assert taken.status_code == 303
    assert review.get_item(policy, item.id).status == "confirmed"
    engine = make_engine(api.url, 5.0)
    assert [d.basis for d in ConsoleReads(engine).decisions(item.id)] == ["art18.6"]
    engine.dispose()


def test_a_basis_is_typed_as_the_pages_name_articles_and_the_api_takes_codes_only(
    api: Api,
) -> None:
    """A reviewer types the article the page names, 第十八条第六项: it is decided on as
    art18.6. The JSON API's contract is the code: a Chinese name there is its 422."""
    review, policy = api.services.review, api.services.scoring.policy
    for n in (1, 2, 3):
        post = {"id": f"p{n}", "text": VIOLATIONS[n - 1], "account_id": f"a{n}"}
        assert api.score(post).status_code == 200
    first, second, third = sorted(i.id for i in review.list_items(policy).items)
    token = sign_in(api, "li")
    confirm = {"csrf": token, "action": "confirm", "category": "rumor"}
    taken = api.client.post(
        f"/console/items/{first}/decision",
        data={**confirm, "basis": " 第十八条第六项 "},
        follow_redirects=False,
    )
    assert taken.status_code == 303
    api.client.get("/console/lang/en")
    taken = api.client.post(
        f"/console/items/{second}/decision",
        data={**confirm, "basis": "18.6"},
        follow_redirects=False,
    )
    assert taken.status_code == 303
    decided = [review.get_item(policy, i) for i in (first, second)]
    assert [i.status for i in decided] == ["confirmed", "confirmed"]
    reads = ConsoleReads(make_engine(api.url, 5.0))
    assert [d.basis for i in (first, second) for d in reads.decisions(i)] == ["art18.6"] * 2
    # a name of no item of the Provisions is refused as its code would be, kept as typed
    api.client.get("/console/lang/zh")
    refused = api.client.post(
        f"/console/items/{third}/decision", data={**confirm, "basis": "第十八条第十一项"}
    )
    assert refused.status_code == 422
    form = form_of(refused.text, "decision-form")
    assert refusal_of(form).startswith("依据条款: 不是《规定》中的条或项")
    assert 'id="basis" value="第十八条第十一项"' in form
    sent = api.client.post(
        f"/v1/review/items/{third}/decision",
        json={"action": "confirm", "category": "rumor", "basis": "第十八条第六项"},
        headers=api.headers(api.new_key("reviewer")),
    )
    assert sent.status_code == 422 and sent.json()["detail"][0]["loc"] == ["body", "basis"]
    assert review.get_item(policy, third).status == "open"


def test_no_link_can_put_words_in_the_error_box(api: Api) -> None:
    sign_in(api, "wang", "admin")
    crafted = api.client.get("/console/queue", params={"error": "会话已过期，请拨打 400-xxx"})
    # the query is only in the language and shortcut switches' way back (percent-encoded),
    # never on the page
    assert crafted.status_code == 200 and 'class="error"' not in crafted.text
    switches = r'<a href="/console/(lang|keys)/[^"]*"[^>]*>'
    assert "400-xxx" not in re.sub(switches, "", crafted.text)


def test_storage_down_is_the_consoles_page_without_the_databases_words(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert api.score({"id": "p1", "text": RUMOR, "account_id": "a1"}).status_code == 200
    token = sign_in(api, "li")
    item = re.findall(r'data-item="(\d+)"', api.client.get("/console/queue").text)[0]

    def down(*args: object, **kwargs: object) -> None:
        raise StorageError("OperationalError: connection to db.internal:5432 refused")

    monkeypatch.setattr(api.services.review, "list_items", down)
    monkeypatch.setattr(api.services.review, "claim", down)
    page = api.client.get("/console/queue")
    assert page.status_code == 503 and page.headers["retry-after"] == "1"
    assert "数据库暂时无法访问" in page.text and "db.internal" not in page.text
    claimed = api.client.post(f"/console/items/{item}/claim", data={"csrf": token})
    assert claimed.status_code == 503 and claimed.headers["retry-after"] == "1"
    assert refusal_of(form_of(claimed.text, "claim-form")) == "数据库暂时无法访问,请稍后再试"


def test_a_decision_storage_does_not_answer_in_time_may_still_be_made_and_the_page_says_so(
    tmp_path: Path, pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write the console gave up at ``storage_deadline_s`` goes on, and may land after the
    answer: the page says so (not that storage is down, which would have the reviewer decide
    again), and the decision sent again once it has landed is refused as made already."""
    with open_impatient_api(tmp_path, "late.db", pipeline.classifier) as api:
        scoring, review = api.services.scoring, api.services.review
        repository = scoring.repository
        assert isinstance(repository, SqlRepository)
        assert api.score({"id": "p1", "text": RUMOR, "account_id": "a1"}).status_code == 200
        (item,) = review.list_items(scoring.policy).items
        token = sign_in(api, "li")
        decision = {"csrf": token, "action": "dismiss"}
        held = Held(repository.decide)
        with monkeypatch.context() as patched:
            patched.setattr(repository, "decide", held)
            late = api.client.post(f"/console/items/{item.id}/decision", data=decision)
            assert late.status_code == 503 and late.headers["retry-after"] == "1"
            assert TEXT["storage_late"][0] in late.text
            assert TEXT["storage_down"][0] not in late.text
            assert held.waiting == 1
            held.release()
            wait_for(lambda: held.finished == 1)
        scoring.recover()  # storage answers again
        assert review.get_item(scoring.policy, item.id).status == "dismissed"
        again = api.client.post(f"/console/items/{item.id}/decision", data=decision)
        assert again.status_code == 409
        assert refusal_of(form_of(again.text, "decision-form")).startswith("该条目已处理")


def test_a_form_whose_session_check_storage_does_not_answer_says_storage_did_not_answer(
    tmp_path: Path, pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A form's session check is a read, made before its write: given up at
    ``storage_deadline_s``, nothing of the form was started, and the page says the database did
    not answer, not that the change may still be made (which would have the reviewer look for a
    decision that never was)."""
    with open_impatient_api(tmp_path, "late.db", pipeline.classifier) as api:
        scoring, review = api.services.scoring, api.services.review
        repository = scoring.repository
        assert isinstance(repository, SqlRepository)
        assert api.score({"id": "p1", "text": RUMOR, "account_id": "a1"}).status_code == 200
        (item,) = review.list_items(scoring.policy).items
        token = sign_in(api, "li")
        held = Held(repository.get_user)
        with monkeypatch.context() as patched:
            patched.setattr(repository, "get_user", held)
            late = api.client.post(
                f"/console/items/{item.id}/decision", data={"csrf": token, "action": "dismiss"}
            )
            assert late.status_code == 503 and late.headers["retry-after"] == "1"
            assert TEXT["storage_down"][0] in late.text
            assert TEXT["storage_late"][0] not in late.text
            held.release()
            wait_for(lambda: held.finished == 1)
        scoring.recover()  # storage answers again
        assert review.get_item(scoring.policy, item.id).status == "open"


def test_a_disabled_user_or_one_of_another_role_is_signed_out_at_the_next_page(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    repository = api.services.scoring.repository
    assert isinstance(repository, SqlRepository)
    sign_in(api, "wang", "admin")
    cookie = api.client.cookies.get(COOKIE)
    assert cookie is not None
    with repository.engine.begin() as connection:
        connection.execute(
            update(ConsoleUser).where(ConsoleUser.name == "wang").values(role="reviewer")
        )
    gone = api.client.get("/console/dashboard", follow_redirects=False)
    assert gone.status_code == 303
    assert gone.headers["location"] == "/console/login?next=%2Fconsole%2Fdashboard&why=ended"
    assert api.client.cookies.get(COOKIE) is None, "the session is ended, not kept"

    password = create_user(repository, "li", "reviewer")
    token = sign_in(api, "zhang")
    assert api.client.get("/console/queue").status_code == 200

    def down(name: str) -> None:
        raise StorageError("OperationalError: connection to db.internal:5432 refused")

    with monkeypatch.context() as patched:
        patched.setattr(repository, "get_user", down)
        page = api.client.get("/console/queue")
        assert page.status_code == 503 and "数据库暂时无法访问" in page.text
    zhang = api.client.cookies.get(COOKIE)
    assert zhang is not None
    before = repository.disable_user("zhang")
    assert before is not None and not before.disabled
    for copied in (zhang, cookie):
        api.client.cookies.clear()
        api.client.cookies.set(COOKIE, copied, path="/console")
        for method, url in (("get", "/console/queue"), ("post", "/console/items/1/claim")):
            gone = api.client.request(method, url, data={"csrf": token}, follow_redirects=False)
            assert gone.status_code == 303 and gone.headers["location"].startswith(
                "/console/login?"
            )
    api.client.cookies.clear()
    assert try_sign_in(api, "li", password)[0] == 303
    repository.disable_user("li")
    assert api.client.get("/console/queue", follow_redirects=False).status_code == 303
    # answered as a name nobody has, even with the password
    assert try_sign_in(api, "li", password) == try_sign_in(api, "ghost", password)
    assert try_sign_in(api, "li", password)[:2] == (401, "用户名或密码错误")


def test_signing_out_ends_every_session_of_the_user_copies_included(api: Api) -> None:
    sign_in(api, "wang", "admin")
    wang = api.client.cookies.get(COOKIE)
    password = create_user(api.services.scoring.repository, "li", "reviewer")
    li: list[str] = []
    for _ in range(2):  # li in two browsers
        api.client.cookies.clear()
        assert try_sign_in(api, "li", password)[0] == 303
        li.append(str(api.client.cookies.get(COOKIE)))
    copied, elsewhere = li
    api.client.cookies.set(COOKIE, copied, path="/console")
    token = csrf_of(api.client.get("/console/queue").text)
    out = api.client.post("/console/logout", data={"csrf": token}, follow_redirects=False)
    assert out.status_code == 303 and out.headers["location"] == "/console/login"
    for cookie in (copied, elsewhere):
        api.client.cookies.clear()
        api.client.cookies.set(COOKIE, cookie, path="/console")
        for method, url in (("get", "/console/queue"), ("post", "/console/items/1/claim")):
            gone = api.client.request(method, url, data={"csrf": token}, follow_redirects=False)
            assert gone.status_code == 303 and gone.headers["location"].startswith(
                "/console/login?"
            )
    # another user's session goes on, and li signs in again to a session that holds
    api.client.cookies.clear()
    assert wang is not None
    api.client.cookies.set(COOKIE, wang, path="/console")
    assert api.client.get("/console/dashboard").status_code == 200
    api.client.cookies.clear()
    assert try_sign_in(api, "li", password)[0] == 303
    assert api.client.get("/console/queue").status_code == 200
    again = api.client.cookies.get(COOKIE)
    # signing out with a session that ended (its token read off the sign-in page) ends no other
    api.client.cookies.clear()
    api.client.cookies.set(COOKIE, copied, path="/console")
    stale = csrf_of(api.client.get("/console/login").text)
    assert api.client.post("/console/logout", data={"csrf": stale}).status_code == 200
    api.client.cookies.clear()
    api.client.cookies.set(COOKIE, str(again), path="/console")
    assert api.client.get("/console/queue").status_code == 200


def heading_of(html: str) -> str:
    return found_in(html, r"<h1[^>]*>([^<]*)</h1>", "the page has a heading")


def test_a_form_from_before_the_latest_sign_in_does_nothing_and_leads_back_to_its_page(
    api: Api,
) -> None:
    """A page left open while its user signed in again (in another tab, after their session
    ended) holds the earlier session's token: its form is refused, and the answer says that it
    was out of date and nothing was done, with a link to the page it was sent from, not that
    the user may not open the page; a second sign-in page's form likewise."""
    assert api.score({"id": "p1", "text": RUMOR, "account_id": "a1"}).status_code == 200
    password = create_user(api.services.scoring.repository, "li", "reviewer")
    assert try_sign_in(api, "li", password)[0] == 303
    item_id = int(re.findall(r'data-item="(\d+)"', api.client.get("/console/queue").text)[0])
    item_url = f"/console/items/{item_id}"
    earlier = csrf_of(api.client.get(item_url).text)
    assert try_sign_in(api, "li", password)[0] == 303
    sent_from = {"Referer": f"http://testserver{item_url}"}
    for path, fields in ((f"{item_url}/decision", {"action": "dismiss"}), ("/console/logout", {})):
        answer = api.client.post(path, data={"csrf": earlier, **fields}, headers=sent_from)
        assert answer.status_code == 403, path
        assert heading_of(answer.text) == TEXT["form_stale"][0], path
        assert f'href="{item_url}" id="open-again"' in answer.text, path
        # its language switch comes back to that page, not to the form's address
        assert f'href="/console/lang/en?next={item_url}"' in answer.text, path
    assert api.services.review.get_item(api.services.scoring.policy, item_id).status == "open"
    assert api.client.get("/console/queue").status_code == 200  # not signed out either
    api.client.cookies.clear()
    login = "/console/login?next=%2Fconsole%2Fappeals"
    first, second = (csrf_of(api.client.get(login).text) for _ in range(2))
    fields = {"name": "li", "password": password, "next": "/console/appeals"}
    signed = api.client.post("/console/login", data={"csrf": first, **fields})
    assert signed.status_code == 200 and signed.url.path == "/console/appeals"
    sent_from = {"Referer": f"http://testserver{login}"}
    again = api.client.post("/console/login", data={"csrf": second, **fields}, headers=sent_from)
    assert (again.status_code, heading_of(again.text)) == (403, TEXT["form_stale"][0])
    assert f'href="{login}" id="open-again"' in again.text


def test_the_words_typed_in_a_form_from_before_the_latest_sign_in_are_shown_to_copy(
    api: Api,
) -> None:
    """A refused out-of-date form's note, an appeal's reason, a rumour's text and notice are
    shown back on the page that says nothing was done, as text to copy into the page opened
    again (escaped); never a password, nor a field the page fills in itself, nor the words of
    a form another site sent."""
    assert api.score({"id": "p1", "text": RUMOR, "account_id": "a1"}).status_code == 200
    password = create_user(api.services.scoring.repository, "li", "admin")
    assert try_sign_in(api, "li", password)[0] == 303
    item_id = int(re.findall(r'data-item="(\d+)"', api.client.get("/console/queue").text)[0])
    earlier = csrf_of(api.client.get(f"/console/items/{item_id}").text)
    assert try_sign_in(api, "li", password)[0] == 303
    hostile = "</textarea><script>alert(1)</script>"
    for path, fields in (
        (f"/console/items/{item_id}/decision", {"action": "dismiss", "note": f"转载 {hostile}"}),
        ("/console/appeals", {"account_id": "a1", "item_id": str(item_id), "reason": hostile}),
        ("/console/bank", {"text": RUMOR, "notice": f"辟谣 {hostile}"}),
        ("/console/login", {"name": "li", "password": password}),
    ):
        answer = api.client.post(path, data={"csrf": earlier, **fields})
        assert (answer.status_code, heading_of(answer.text)) == (403, TEXT["form_stale"][0])
        assert "<script>" not in answer.text and password not in answer.text, path
        shown = re.findall(r"<textarea[^>]* readonly[^>]*>([^<]*)</textarea>", answer.text)
        kept = [v for k, v in fields.items() if k in ("note", "reason", "text", "notice")]
        assert shown == [str(escape(value)) for value in kept], path
    assert api.services.review.get_item(api.services.scoring.policy, item_id).status == "open"
    # a form another site sends, without the session's cookie, puts no words of its own on a
    # page of the console's
    api.client.cookies.clear()
    forged = api.client.post("/console/login", data={"csrf": earlier, "note": "请致电 110"})
    assert (forged.status_code, heading_of(forged.text)) == (403, TEXT["form_stale"][0])
    assert "<textarea" not in forged.text and "110" not in forged.text


def test_the_session_epoch_migration_goes_down_and_up_again(database_url: str) -> None:
    upgrade(database_url)
    repository = open_repository(database_url, 5.0)
    try:
        create_user(repository, "li", "reviewer")
        repository.end_sessions("li", 0)
        repository.end_sessions("li", 0)  # a session that ended ends no others
        user = repository.get_user("li")
        assert user is not None and user.session_epoch == 1
    finally:
        repository.close()
    engine = make_engine(database_url, 5.0)
    with engine.begin() as connection:
        migrate(connection, "0011_console_users_disabled", down=True)
        columns = {c["name"] for c in inspect(connection).get_columns("console_users")}
        assert "session_epoch" not in columns and "disabled_at" in columns
    engine.dispose()
    upgrade(database_url)
    repository = open_repository(database_url, 5.0)
    try:
        # a user stored before it is at epoch 0, as the sessions it holds, and rises from there
        user = repository.get_user("li")
        assert user is not None and user.session_epoch == 0
        repository.end_sessions("li", 0)
        user = repository.get_user("li")
        assert user is not None and user.session_epoch == 1
    finally:
        repository.close()


def test_key_j_opens_the_next_item_nobody_else_holds(api: Api) -> None:
    for i in range(3):
        assert api.score({"id": f"p{i}", "text": RUMOR, "account_id": f"a{i}"}).status_code == 200
    sign_in(api, "li")
    first, second, third = re.findall(r'data-item="(\d+)"', api.client.get("/console/queue").text)
    page = api.client.get(f"/console/items/{first}").text
    assert f'href="/console/items/{first}/next" data-key="j"' in page
    assert "尚无信用记录" in page  # the account was never penalised
    moved = api.client.get(f"/console/items/{first}/next", follow_redirects=False)
    assert moved.headers["location"] == f"/console/items/{second}"
    api.services.review.claim(api.services.scoring.policy, int(second), "wang")
    moved = api.client.get(f"/console/items/{first}/next", follow_redirects=False)
    assert moved.headers["location"] == f"/console/items/{third}"


def test_reports_list_those_of_open_items_unless_all_are_asked_for(api: Api) -> None:
    policy = api.services.scoring.policy
    review = api.services.review
    for n in (1, 2):
        assert api.score({"id": f"p{n}", "text": RUMOR, "account_id": f"a{n}"}).status_code == 200
        review.file_report(
            policy,
            post_id=f"p{n}",
            account_id=f"a{n}",
            category="rumor",
            text_=f"举报{n}",
            reporter="test",
        )
    decided = next(i.id for i in review.list_items(policy).items if i.post_id == "p1")
    review.decide(policy, decided, "wang", "dismiss", None, None)
    sign_in(api, "li")
    listed = api.client.get("/console/reports").text
    assert "举报2" in listed and "举报1" not in listed
    every = api.client.get("/console/reports?all=true").text
    assert "举报2" in every and "举报1" in every


def test_a_report_whose_confirmation_an_appeal_overturned_is_listed_as_overturned(
    api: Api,
) -> None:
    policy, review = api.services.scoring.policy, api.services.review
    for n in (1, 2):
        assert api.score({"id": f"p{n}", "text": RUMOR, "account_id": f"a{n}"}).status_code == 200
        review.file_report(
            policy,
            post_id=f"p{n}",
            account_id=f"a{n}",
            category="rumor",
            text_=f"举报{n}",
            reporter="test",
        )
    items = {i.post_id: i.id for i in review.list_items(policy).items}
    for item in items.values():
        review.decide(policy, item, "wang", "confirm", "rumor", "art18.6")
    appeal = review.file_appeal(
        policy, account_id="a1", item_id=items["p1"], reason="辟谣", filed_by=api.key
    )
    review.decide_appeal(policy, appeal.id, "li", "uphold", None)
    sign_in(api, "li")
    rows = {
        row.split("</td>")[5].split(">")[-1]: row.split("</td>")[8]
        for row in api.client.get("/console/reports?all=true").text.split("<tr")[2:]
    }
    assert rows["举报1"] == '<td data-status="overturned">申诉成立,违规确认已撤销'
    assert rows["举报2"] == '<td data-status="confirmed">已确认违规'


def test_the_next_item_is_found_past_any_number_held_by_another_reviewer(api: Api) -> None:
    review, policy = api.services.review, api.services.scoring.policy
    start = datetime.now(UTC) - timedelta(hours=1)
    for i in range(25):  # the earlier queued, the higher
        review.file_report(
            policy,
            post_id=f"p{i}",
            account_id=f"a{i}",
            category="rumor",
            text_="谣言",
            reporter="test",
            now=start + timedelta(minutes=i),
        )
    ids = [item.id for item in review.list_items(policy, limit=25).items]
    for held in ids[:22]:
        review.claim(policy, held, "wang")
    token = sign_in(api, "li")
    moved = api.client.get(f"/console/items/{ids[0]}/next", follow_redirects=False)
    assert moved.headers["location"] == f"/console/items/{ids[22]}"
    decided = api.client.post(
        f"/console/items/{ids[22]}/decision",
        data={"csrf": token, "action": "dismiss"},
        follow_redirects=False,
    )
    assert decided.headers["location"] == f"/console/items/{ids[23]}"


def test_overdue_reports_lead_the_reports_pages_however_many_are_open(api: Api) -> None:
    review, policy = api.services.review, api.services.scoring.policy
    now = datetime.now(UTC)
    for i in range(206):  # the first is past its deadline; 205 came after it
        review.file_report(
            policy,
            post_id=f"p{i % 5}",
            account_id="a1",
            category="rumor",
            text_=f"举报{i}",
            reporter="test",
            reporter_id=f"u{i}",
            now=now - (timedelta(days=4) if i == 0 else timedelta(minutes=300 - i)),
        )
    sign_in(api, "li")
    html = api.client.get("/console/reports").text
    assert (
        'id="open-reports">待处理: 206<' in html and 'id="overdue-reports">超期未处理: 1<' in html
    )
    (overdue,) = re.findall(r'<tr class="overdue" data-report="(\d+)"', html)
    shown = re.findall(r'data-report="(\d+)"', html)
    assert shown[0] == overdue
    while (more := re.search(r'href="([^"]+)" id="next-page"', html)) is not None:
        html = api.client.get(more.group(1).replace("&amp;", "&")).text
        shown += re.findall(r'data-report="(\d+)"', html)
    assert len(shown) == len(set(shown)) == 206


def test_the_open_reports_pages_list_the_open_rows_of_every_reports_pages_in_their_order(
    api: Api,
) -> None:
    """Most reports answered (dismissed, confirmed, overturned on appeal, joined to a decided
    post) and the open ones (open, claimed, escalated) among them, some filed at one moment:
    page after page, the open reports' pages show exactly the rows of every report's pages
    whose item is undecided, in the same order."""
    review, policy = api.services.review, api.services.scoring.policy
    now = datetime.now(UTC)

    def report(i: int, at: datetime) -> int:
        return review.file_report(
            policy,
            post_id=f"p{i % 40}",
            account_id=f"a{i % 40}",
            category="rumor",
            text_=f"举报{i}",
            reporter="test",
            reporter_id=f"u{i}",
            now=at,
        ).item_id

    # two reports filed at each moment, the first few past their deadline
    items = {
        i % 40: report(i, now - timedelta(days=4 if i < 6 else 0, minutes=400 - i // 2))
        for i in range(240)
    }
    for post, item in items.items():
        if post < 10:
            review.decide(policy, item, "wang", "dismiss", None, None)
        elif post < 20:
            review.decide(policy, item, "wang", "confirm", "rumor", "art18.6")
        elif post < 24:
            review.decide(policy, item, "wang", "escalate", None, None)
        elif post < 27:
            review.claim(policy, item, "wang")
    appeal = review.file_appeal(
        policy, account_id="a10", item_id=items[10], reason="辟谣", filed_by=api.key
    )
    review.decide_appeal(policy, appeal.id, "li", "uphold", None)
    for i in range(240, 260):  # on the decided posts, after their decisions
        report(i, now - timedelta(minutes=10))
    sign_in(api, "li")

    def rows(url: str) -> tuple[list[str], str]:
        html = api.client.get(url).text
        shown = re.findall(r'<tr class="\w*" data-report="\d+">.*?</tr>', html, re.S)
        while (more := re.search(r'href="([^"]+)" id="next-page"', html)) is not None:
            html = api.client.get(more.group(1).replace("&amp;", "&")).text
            shown += re.findall(r'<tr class="\w*" data-report="\d+">.*?</tr>', html, re.S)
        return shown, html

    every, _ = rows("/console/reports?all=true")
    opened, last = rows("/console/reports")
    undecided = [r for r in every if re.search(r'data-status="(open|escalated)"', r)]
    assert len(every) == 260 and len(opened) > 100 and len(opened) < len(every)
    assert opened == undecided
    assert f'id="open-reports">待处理: {len(opened)}<' in last


def test_an_item_reported_days_after_its_queueing_is_not_overdue_until_its_report_is(
    api: Api,
) -> None:
    """The queue and the item's page show a reported item due when its first report is: one
    queued days before that report is not overdue on the report's arrival, and is once the
    report is past its deadline."""
    review, policy = api.services.review, api.services.scoring.policy
    repository = api.services.scoring.repository
    assert isinstance(repository, SqlRepository)
    days = timedelta(days=policy.review.report_within_days)
    now = datetime.now(UTC)
    for post_id, filed in (("fresh", now), ("late", now - days - timedelta(hours=1))):
        assert api.score({"id": post_id, "text": RUMOR, "account_id": "a1"}).status_code == 200
        with repository.engine.begin() as connection:
            connection.execute(
                update(ReviewItem)
                .where(ReviewItem.post_id == post_id)
                .values(enqueued_at=now - days - timedelta(days=2))
            )
        review.file_report(
            policy,
            post_id=post_id,
            account_id="a1",
            category="rumor",
            text_="举报",
            reporter="test",
            now=filed,
        )
    by_post = {i.post_id: i.id for i in review.list_items(policy).items}
    sign_in(api, "li")
    queue = api.client.get("/console/queue").text
    rows = {item: css for css, item in re.findall(r'<tr class="(\w*)" data-item="(\d+)"', queue)}
    assert (rows[str(by_post["fresh"])], rows[str(by_post["late"])]) == ("", "overdue")
    for post_id, late in (("fresh", False), ("late", True)):
        page = api.client.get(f"/console/items/{by_post[post_id]}").text
        assert ("overdue-badge" in page) is late, post_id


def test_an_items_page_shows_what_its_reporters_wrote_and_the_decisions_on_it(
    api: Api,
) -> None:
    review, policy = api.services.review, api.services.scoring.policy
    filed: list[tuple[Risk, str]] = [("rumor", "自来水没被污染，这是谣言"), ("incitement", "煽动")]
    for i, (category, text) in enumerate(filed):
        review.file_report(
            policy,
            post_id="p1",
            account_id="a1",
            category=category,
            text_=text,
            reporter="test",
            reporter_id=f"u{i}",
        )
    (item,) = review.list_items(policy).items
    sign_in(api, "li")
    html = api.client.get(f"/console/items/{item.id}").text
    assert 'id="decisions"' not in html
    listed = html.split('id="item-reports"')[1].split("</table>")[0]
    assert re.findall(
        r'<tr><td data-category="(\w+)">[^<]+</td><td class="free-text">([^<]+)</td><td>\d{4}-',
        listed,
    ) == (filed)
    assert f"{translator('zh')('item_reports')} (2)" in html
    review.decide(policy, item.id, "wang", "escalate", None, None, "需要法务看一下")
    escalated = api.client.get(f"/console/items/{item.id}").text
    (decision,) = re.findall(r'<ol id="decisions"><li>(.*?)</li></ol>', escalated)
    assert ' · wang · <strong data-action="escalate">上报</strong>' in decision
    assert "需要法务看一下" in decision


def test_a_reviewer_says_why_an_item_is_escalated_or_dismissed_on_its_page(api: Api) -> None:
    review, policy = api.services.review, api.services.scoring.policy
    for post_id in ("p1", "p2"):
        assert api.score({"id": post_id, "text": RUMOR, "account_id": "a1"}).status_code == 200
    escalated, dismissed = review.list_items(policy).items
    token = sign_in(api, "li")
    for item, action, why in [
        (escalated, "escalate", "需要法务看一下"),
        (dismissed, "dismiss", "官方已证实属实"),
    ]:
        page = api.client.get(f"/console/items/{item.id}").text
        (form,) = [
            f for f in re.findall(r"<form .*?</form>", page, re.S) if f'value="{action}"' in f
        ]
        # the form as a browser posts it: every field, the pressed button's action
        fields = dict(
            re.findall(r'<input (?:type="hidden" )?name="(\w+)"[^>]*?value="([^"]*)"', form)
        )
        assert {"csrf", "basis"} <= set(fields) and 'name="note"' in form
        posted = {**fields, "csrf": token, "category": "rumor", "note": why, "action": action}
        assert api.client.post(f"/console/items/{item.id}/decision", data=posted).status_code == 200
    engine = make_engine(api.url, 5.0)
    reads = ConsoleReads(engine)
    assert [
        (d.action, d.category, d.basis, d.note)
        for item in (escalated, dismissed)
        for d in reads.decisions(item.id)
    ] == [("escalate", None, None, "需要法务看一下"), ("dismiss", None, None, "官方已证实属实")]
    engine.dispose()


def test_user_content_is_escaped(api: Api) -> None:
    for i, text in enumerate((SCRIPT_POST, IMG_POST)):
        assert api.score({"id": f"x{i}", "text": text, "account_id": IMG_POST}).status_code == 200
    review, policy = api.services.review, api.services.scoring.policy
    reported = review.file_report(
        policy, post_id="x0", account_id=None, category="rumor", text_=IMG_POST, reporter="test"
    )
    escalated = review.decide(policy, reported.item_id, "wang", "escalate", None, None, IMG_POST)
    sign_in(api, "li")
    queue = api.client.get("/console/queue").text
    assert "<img src=x" not in queue and "&#34;&gt;&lt;img src=x" in queue
    item_ids = re.findall(r'data-item="(\d+)"', queue)
    item_ids += re.findall(
        r'data-item="(\d+)"', api.client.get("/console/queue?status=escalated").text
    )
    assert str(escalated.item_id) in item_ids
    for item_id in item_ids:
        html = api.client.get(f"/console/items/{item_id}").text
        assert "<script>alert" not in html and "<img src=x" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html or "&lt;img src=x" in html
    # what the reporter wrote and the escalation's note, as text
    html = api.client.get(f"/console/items/{escalated.item_id}").text
    hostile = "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;"
    assert hostile in html.split('id="item-reports"')[1].split("</table>")[0]
    assert hostile in html.split('id="decisions"')[1].split("</ol>")[0]
    reports = api.client.get("/console/reports").text
    assert "<img src=x" not in reports and "&#34;&gt;&lt;img src=x" in reports


def test_an_item_whose_evidence_search_failed_says_so(tmp_path: Path, pipeline: Pipeline) -> None:
    search = Troubled(pipeline.classifier, tmp_path)
    with open_api(tmp_path, f"sqlite:///{tmp_path / 'failing.db'}", search) as api:
        assert api.score({"id": "ok", "text": RUMOR, "account_id": "a1"}).status_code == 200
        api.settle()
        search.fail.touch()
        assert api.score({"id": "nx", "text": PLAIN, "account_id": "a2"}).status_code == 200
        api.settle()
        sign_in(api, "li")
        listed = api.services.review.list_items(api.services.scoring.policy).items
        by_post = {i.post_id: i.id for i in listed if i.kind == "score"}
        failed = api.client.get(f"/console/items/{by_post['nx']}").text
        explained = api.client.get(f"/console/items/{by_post['ok']}").text
        assert translator("zh")("no_evidence") in failed
        assert translator("zh")("no_evidence") not in explained and "<mark" in explained


def test_heads_are_shown_against_the_thresholds_the_record_was_decided_with(
    pipeline: Pipeline,
) -> None:
    policy = pipeline.policy
    review = policy.risks["rumor"].review
    low = round(review * 0.7 + 0.01, 4)
    record = {
        "scores": {"rumor": low},
        "flags": {"rumor": True},
        "reasons": [{"evidence": {"account_level": {"level": "D", "review_factor": 0.7}}}],
    }
    own = present.thresholds(policy)
    (row,) = present.head_rows(record, own, policy)
    assert row.review == round(review * 0.7, 4) < low < review and row.flagged
    assert row.now_review is None and row.now_block is None
    (plain,) = present.head_rows({"scores": {"rumor": low}, "flags": {}}, own, policy)
    assert plain.review == review
    # scored under a policy since replaced: its thresholds, the current ones beside them
    (before,) = present.head_rows(record, {**own, "rumor": (0.3, 0.9)}, policy)
    assert (before.review, before.block) == (round(0.3 * 0.7, 4), 0.9)
    assert (before.now_review, before.now_block) == (row.review, row.block)
    # its rules never kept: the current policy's stand in
    (unknown,) = present.head_rows(record, None, policy)
    assert unknown == row


def test_a_reason_shows_the_articles_its_record_rests_on_not_the_current_policys(
    pipeline: Pipeline,
) -> None:
    policy = pipeline.policy
    rule = policy.risks["rumor"].reason
    assert rule.articles == ["art13", "art18.6"]
    # scored under a policy whose rumour reason rested on art18.6 alone, in other words
    kept = {"articles": ["art18.6"], "summary": "编造虚假信息"}
    record = {"reasons": [{"code": rule.code, "score": 0.9, "evidence": kept}]}
    show = partial(present.reason_rows, t=translator("zh"), zone=ZoneInfo("UTC"))
    (row,) = show(record, policy, {"art18.6": "(六)"}, worded=partial(worded, translator("zh")))
    assert row.articles == [("art18.6", "(六)")] and row.summary == "编造虚假信息"
    assert row.head == "rumor"
    # a record that kept none: the current policy's rule stands in
    bare = {"reasons": [{"code": rule.code, "score": 0.9, "evidence": {}}]}
    (row,) = show(bare, policy, {}, worded=partial(worded, translator("zh")))
    assert [name for name, _ in row.articles] == rule.articles and row.summary == rule.summary


def test_a_record_without_spans_says_why() -> None:
    def note(pending: bool, version: str = "sha256:now", warnings: tuple[str, ...] = ()) -> str:
        record = {"evidence_pending": pending, "model_version": version, "warnings": warnings}
        return str(present.evidence_note(record, "sha256:now"))

    assert note(True) == "pending"
    assert note(True, version="sha256:before") == "pending_elsewhere"
    assert note(False, warnings=("truncated", NO_EVIDENCE)) == "no_evidence"
    assert note(False, warnings=("truncated",)) == "None"


def test_language_switch_stays_inside_the_console(api: Api) -> None:
    for outside in ("//evil.example/x", "https://evil.example/console/x", "/console//evil.example"):
        moved = api.client.get(f"/console/lang/en?next={quote(outside)}", follow_redirects=False)
        assert moved.headers["location"] == "/console/queue", outside
    # a console page whose query holds an address is still that page
    here = "/console/queue?head=rumor&assignee=https://evil.example/x"
    moved = api.client.get(f"/console/lang/en?next={quote(here)}", follow_redirects=False)
    assert moved.headers["location"] == here
    assert api.client.cookies.get("ql_lang") == "en"
    assert "Sign in" in api.client.get("/console/login").text


def test_language_switch_goes_nowhere_a_browser_resolves_outside_the_console(api: Api) -> None:
    # a browser resolves dot segments, percent-encoded ones too, before it follows a redirect
    for outside in (
        "/console/../x",
        "/console/./../x",
        "/console/queue/../../x",
        "/console/%2e%2e/x",
        "/console/.%2E/console//evil.example",
        "/console/..",
    ):
        moved = api.client.get(f"/console/lang/en?next={quote(outside)}", follow_redirects=False)
        assert moved.headers["location"] == "/console/queue", outside
    # dot segments that stay inside the console lead to the page they name, resolved
    moved = api.client.get(
        f"/console/lang/en?next={quote('/console/items/../queue?head=rumor')}",
        follow_redirects=False,
    )
    assert moved.headers["location"] == "/console/queue?head=rumor"


def test_a_page_address_with_its_trailing_slash_wrong_redirects_by_path_alone(api: Api) -> None:
    # Starlette's redirect named http://host: behind a proxy that ends TLS, a downgrade
    for given, page in (
        ("/console", "/console/"),
        ("/console/queue/?head=rumor", "/console/queue?head=rumor"),
        ("/console/items/7/", "/console/items/7"),
    ):
        moved = api.client.get(given, follow_redirects=False)
        assert (moved.status_code, moved.headers["location"]) == (307, page), given
    # a form posted to such an address is not sent again elsewhere: the console's page
    token = sign_in(api, "li")
    missing = api.client.post("/console/appeals/", data={"csrf": token}, follow_redirects=False)
    assert missing.status_code == 404 and "location" not in missing.headers
    assert '<h1 class="refused">没有这个页面</h1>' in missing.text


def test_language_switch_comes_back_to_the_page_with_its_query(api: Api) -> None:
    sign_in(api, "li")
    queue = api.client.get("/console/queue?head=rumor&status=escalated").text
    (switch,) = re.findall(r'<a href="(/console/lang/en\?next=[^"]+)"[^>]*>English</a>', queue)
    moved = api.client.get(switch.replace("&amp;", "&"), follow_redirects=False)
    assert moved.headers["location"] == "/console/queue?head=rumor&status=escalated"


def test_an_ended_session_says_so_and_signs_in_back_to_the_page(api: Api) -> None:
    """A session that ends mid-day (expired, signed out elsewhere): the decision sent with it
    is not taken, the sign-in page says so, and signing in opens the item's page again."""
    assert api.score({"id": "p1", "text": RUMOR, "account_id": "a1"}).status_code == 200
    password = create_user(api.services.scoring.repository, "li", "reviewer")
    assert try_sign_in(api, "li", password)[0] == 303
    page = api.client.get("/console/queue").text
    token = csrf_of(page)
    item_id = int(re.findall(r'data-item="(\d+)"', page)[0])
    item_url = f"/console/items/{item_id}"
    ended = str(api.client.cookies.get(COOKIE))
    # signed out in another browser: this one's session has ended
    assert api.client.post("/console/logout", data={"csrf": token}).status_code == 200
    api.client.cookies.set(COOKIE, ended, path="/console")
    sent = api.client.post(
        f"{item_url}/decision",
        data={"csrf": token, "action": "dismiss", "note": "不实"},
        headers={"Referer": f"http://testserver{item_url}"},
        follow_redirects=False,
    )
    assert sent.status_code == 303
    assert (
        sent.headers["location"] == f"/console/login?next=%2Fconsole%2Fitems%2F{item_id}&why=unsent"
    )
    login = api.client.get(sent.headers["location"]).text
    assert "刚才提交的操作没有生效" in login and f'name="next" value="{item_url}"' in login
    assert api.services.review.get_item(api.services.scoring.policy, item_id).status == "open"
    signed = api.client.post(
        "/console/login",
        data={"csrf": csrf_of(login), "name": "li", "password": password, "next": item_url},
        follow_redirects=False,
    )
    assert signed.status_code == 303 and signed.headers["location"] == item_url
    # a page asked for comes back after signing in; never one outside the console
    api.client.cookies.clear()
    api.client.cookies.set(COOKIE, ended, path="/console")
    gone = api.client.get("/console/reports?all=true", follow_redirects=False)
    assert (
        gone.headers["location"]
        == "/console/login?next=%2Fconsole%2Freports%3Fall%3Dtrue&why=ended"
    )
    assert "登录已失效,请重新登录" in api.client.get(gone.headers["location"]).text
    for away in ("https://evil.example/console/queue", "/console/../v1/review/items", "//x"):
        assert 'name="next"' not in api.client.get("/console/login", params={"next": away}).text
    # signing out at the end of a day longer than the session: the sign-in page, not a 403
    api.client.cookies.clear()
    api.client.cookies.set(COOKIE, ended, path="/console")
    out = api.client.post("/console/logout", data={"csrf": token}, follow_redirects=False)
    assert out.status_code == 303 and out.headers["location"] == "/console/login"


def test_sessions_expire() -> None:
    sessions = Sessions(b"k" * 32, max_age_s=60)
    li = ConsoleAccount("li", "digest", "reviewer", datetime.now(UTC))
    signed = sessions.dump(sessions.sign_in(li, now=1000.0))
    assert sessions.load(signed, now=1059.0) is not None
    assert sessions.load(signed, now=1061.0) is None
    assert sessions.load(signed + "0", now=1000.0) is None


def test_articles_by_reason_code() -> None:
    text = (
        "第一章 总则\n\n第十八条 不得有下列行为:\n\n(一)甲;\n\n(六)编造虚假信息;\n\n"
        "第二十三条 乙。\n"
    )
    found = articles.parse(text)
    assert found["art18.6"] == "(六)编造虚假信息;"
    assert found["art18"].startswith("第十八条") and "(一)甲;" in found["art18"]
    assert found["art23"] == "第二十三条 乙。"
    assert articles.chinese_number("二十三") == 23 and articles.chinese_number("十") == 10


def test_a_regulation_file_that_cannot_be_read_leaves_the_console_with_codes_only(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "latin1.txt").write_bytes("第十八条 不得".encode("gb18030"))
    for unreadable in (tmp_path, tmp_path / "latin1.txt", tmp_path / "missing.txt"):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger=articles.log.name):
            assert articles.load(unreadable) == {}
        # one line that names the setting and the file, a missing one too
        (said,) = caplog.records
        assert "regulation_file" in said.getMessage()
        assert getattr(said, "path", None) == str(unreadable)


def test_overlapping_spans_cut_the_text_into_pieces(pipeline: Pipeline) -> None:
    reasons = [
        {"code": "art18.6.false_information", "evidence": {"spans": [{"start": 1, "end": 4}]}},
        {"code": "art18.5.extreme_emotion", "evidence": {"spans": [{"start": 3, "end": 6}]}},
    ]
    pieces = present.pieces("abcdefg", reasons, pipeline.policy)
    assert [(p.text, p.heads) for p in pieces] == [
        ("a", ()),
        ("bc", ("rumor",)),
        ("d", ("incitement", "rumor")),
        ("ef", ("incitement",)),
        ("g", ()),
    ]


def test_plot_labels_are_escaped() -> None:
    svg = plots.bars(["<script>x</script>", "b"], [[3.0], [1.0, 4.0]], "t", no_data="-")
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    assert re.findall(r'class="total"[^>]*>([^<]*)<', svg) == ["3", "5"]
    assert "stroke-dasharray" in plots.histogram([0.1, 0.9], 0.5, "s", no_data="-", marked="at")


def test_a_plot_with_nothing_to_show_says_so_in_the_pages_words() -> None:
    nothing = "暂无数据"
    empty = [
        plots.bars([], [], "a", no_data=nothing),
        plots.bars(["granted", "refused"], [[0.0], [0.0]], "b", no_data=nothing),
        plots.lines([], {}, "c", no_data=nothing),
        plots.lines(["mon", "tue"], {"rumor": [0.0, 0.0]}, "d", no_data=nothing),
        plots.histogram([], 0.5, "e", no_data=nothing, marked="review at"),
    ]
    assert all(nothing in svg for svg in empty)
    # a plot of nothing has no scale: its axis reads 0 alone, not a top of 1e-09
    assert not any("1e-09" in svg for svg in empty)
    shown = [
        plots.bars(["granted"], [[1.0]], "a", no_data=nothing),
        plots.lines(["mon", "tue"], {"rumor": [0.0, 2.0]}, "d", no_data=nothing),
        plots.histogram([0.3], 0.5, "e", no_data=nothing, marked="review at"),
    ]
    assert not any(nothing in svg for svg in shown)
    # a threshold's value is written inside the plot, beside its line at the right edge too
    for threshold in (0.5, 1.0):
        svg = plots.histogram([0.3], threshold, "e", no_data=nothing, marked="review at")
        label = r'<text class="threshold" x="([\d.]+)"( text-anchor="end")?'
        ((x, anchored),) = re.findall(label, svg)
        assert float(x) <= plots.WIDTH - plots.RIGHT and bool(anchored) == (threshold == 1.0)


def test_the_dashboard_says_it_has_no_data_in_the_pages_language_only(api: Api) -> None:
    sign_in(api, "wang", "admin")
    empty = 'class="empty"'
    dashboard = api.client.get("/console/dashboard").text
    assert dashboard.count(f"{empty} ") == dashboard.count(">暂无数据</text>") > 0
    api.client.get("/console/lang/en")
    dashboard = api.client.get("/console/dashboard").text
    assert dashboard.count(">no data</text>") > 0 and "暂无数据" not in dashboard


def test_legend_keys_that_would_pass_the_plots_edge_go_on_a_row_below() -> None:
    def keys(names: list[str]) -> tuple[list[tuple[int, int, str]], int]:
        svg = plots.lines(["a", "b"], {n: [1.0, 2.0] for n in names}, "t", no_data="-")
        found = re.findall(r'<text x="(\d+)" y="(\d+)" font-size="11">([^<]+)</text>', svg)
        box = re.search(r'viewBox="0 0 \d+ (\d+)"', svg)
        assert box is not None
        return [(int(x), int(y), name) for x, y, name in found], int(box.group(1))

    english, height = keys(["coordination", "fake followers", "fake originality", "incitement"])
    wrapped, taller = keys([*(name for *_, name in english), "rumour"])
    # a Latin letter is drawn a little over half as wide as the font is high
    assert all(x + 0.6 * 11 * len(name) <= plots.WIDTH for x, _, name in wrapped)
    assert len({y for _, y, _ in english}) == 1 and wrapped[:4] == english
    assert wrapped[4][1] > wrapped[0][1] and taller > height
    chinese, height = keys(["批量协同发布", "虚假粉丝", "虚假原创", "煽动极端情绪", "谣言"])
    assert len({y for _, y, _ in chinese}) == 1 and height == plots.HEIGHT


def test_item_page_shows_the_cluster_timeline_with_its_earliest_source(api: Api) -> None:
    text = RUMOR
    first = {"id": "src", "text": text, "account_id": "a1", "created_at": 1_700_000_000}
    copy = {"id": "copy", "text": text + "！", "account_id": "a2", "created_at": 1_700_000_600}
    assert api.score(first).status_code == 200 and api.score(copy).status_code == 200
    sign_in(api, "li")
    items = api.services.review.list_items(api.services.scoring.policy).items
    (copied,) = [i for i in items if i.post_id == "copy"]
    html = api.client.get(f"/console/items/{copied.id}").text
    timeline = html[html.index('class="timeline"') :]
    assert timeline.index("src") < timeline.index("copy")
    assert re.search(r'class="earliest">[^<]*src[^<]*<span class="badge">最早来源', timeline)


def test_a_coordinated_batch_item_shows_its_members_in_time_order(api: Api) -> None:
    for i in range(5):
        post = {"id": f"b{i}", "text": RUMOR + "!" * i, "account_id": f"bot{i}"}
        assert api.score({**post, "created_at": 1_700_000_000 + 60 * i}).status_code == 200
    sign_in(api, "li")
    items = api.services.review.list_items(api.services.scoring.policy).items
    (batch,) = [i for i in items if i.kind == "cluster"]
    page = api.client.get(f"/console/items/{batch.id}")
    assert page.status_code == 200
    start = page.text.index('class="timeline"')
    timeline = page.text[start : page.text.index("</ol>", start)]
    posts = re.findall(r"<li[^>]*>([^<]*)", timeline)
    assert [p.split(" · ")[1] for p in posts] == ["b0", "b1", "b2", "b3", "b4"]
    assert posts[0].startswith("2023-11-15 06:13 UTC+8") and "最早来源" in timeline
    # the queue shows the cluster's size, not how many members it lists (the first 100)
    assert batch.evidence is not None
    listed = {**batch.evidence, "members": batch.evidence["members"][:2]}
    row = present.queue_row(batch.model_copy(update={"evidence": listed}), batch.enqueued_at)
    assert row.cluster_size == 5


def test_a_batch_that_grows_after_a_dismissal_opens_an_item_linking_to_it(api: Api) -> None:
    review, policy = api.services.review, api.services.scoring.policy

    def post(i: int) -> None:
        body = {"id": f"b{i}", "text": RUMOR + "!" * i, "account_id": f"bot{i}"}
        assert api.score({**body, "created_at": 1_700_000_000 + 60 * i}).status_code == 200

    for i in range(5):
        post(i)
    api.settle()
    (batch,) = [i for i in review.list_items(policy).items if i.kind == "cluster"]
    review.decide(policy, batch.id, "wang", "dismiss", None, None)
    post(5)
    api.settle()
    (grown,) = [i for i in review.list_items(policy).items if i.kind == "cluster"]
    assert grown.id != batch.id and grown.reach == 6
    sign_in(api, "li")
    page = api.client.get(f"/console/items/{grown.id}").text
    (said,) = re.findall(r'<p class="earlier-item" id="earlier-item">(.*?)</p>', page)
    assert said.startswith(TEXT["earlier_cluster"][0])
    assert f'<a href="/console/items/{batch.id}">条目 {batch.id}</a>' in said
    assert '<span data-status="dismissed">已驳回</span> · wang · ' in said
    assert said.endswith(f"{TEXT['cluster_size'][0]} 5")
    assert review.get_item(policy, batch.id).status == "dismissed"
    assert 'id="earlier-item"' not in api.client.get(f"/console/items/{batch.id}").text


def test_a_cluster_item_is_shown_from_storage_while_the_shared_index_is_away(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(5):
        post = {"id": f"b{i}", "text": RUMOR + "!" * i, "account_id": f"bot{i}"}
        assert api.score({**post, "created_at": 1_700_000_000 + 60 * i}).status_code == 200
    sign_in(api, "li")
    items = api.services.review.list_items(api.services.scoring.policy).items
    (batch,) = [i for i in items if i.kind == "cluster"]

    def away(cluster_id: str) -> None:
        raise StoreUnavailableError("Error 111 connecting to 127.0.0.1:6379")

    monkeypatch.setattr(api.services.neardup, "cluster", away)
    page = api.client.get(f"/console/items/{batch.id}")
    assert page.status_code == 200
    assert TEXT["index_away"][0] in page.text and "6379" not in page.text
    # the members the item holds, without the live window's times
    start = page.text.index('class="timeline"')
    timeline = page.text[start : page.text.index("</ol>", start)]
    assert {p.split(" · ")[1] for p in re.findall(r"<li[^>]*>([^<]*)", timeline)} == {
        f"b{i}" for i in range(5)
    }


def test_a_copy_is_shown_beside_the_earlier_post_and_a_bank_match_with_its_notice(
    api: Api,
) -> None:
    text = "独家原创：本市地铁三号线下月起全线停运改造，市民请提前安排出行路线。"
    first = {"id": "early", "text": text, "account_id": "a1", "created_at": 1_700_000_000}
    copy = {
        "id": "late",
        "text": text.replace("三号线", "五号线"),
        "account_id": "a2",
        "created_at": 1_700_000_900,
        "declared_original": True,
    }
    assert api.score(first).status_code == 200 and api.score(copy).status_code == 200
    banked = api.client.post(
        "/v1/bank/rumors",
        json={"text": RUMOR, "notice": "<i>自来水厂</i>:水质正常"},
        headers=api.headers(api.new_key("admin")),
    )
    assert banked.status_code == 201, banked.text
    assert api.score({"id": "echo", "text": RUMOR + "！", "account_id": "a3"}).status_code == 200
    sign_in(api, "li")
    by_post = {
        i.post_id: i.id for i in api.services.review.list_items(api.services.scoring.policy).items
    }
    html = api.client.get(f"/console/items/{by_post['late']}").text
    earlier = html[html.index('id="earlier-text"') :]
    assert '<mark class="diff">三</mark>' in earlier and '<mark class="diff">五</mark>' in earlier
    html = api.client.get(f"/console/items/{by_post['echo']}").text
    assert "&lt;i&gt;自来水厂&lt;/i&gt;:水质正常" in html[html.index('id="banked-rumor"') :]


def test_an_earlier_post_never_stored_is_shown_from_the_windows_excerpt(api: Api) -> None:
    text = "周末和家人去公园散步，天气很好，湖边的荷花开了，拍了几张照片，晚上一起吃了火锅。"
    # the earlier post reached the window but nothing of it was stored (no review item)
    first = Post(id="plain", text=text, account_id="a1", created_at=1_700_000_000)
    api.services.neardup.observe([first], [0.0])
    copy = {
        "id": "claimed",
        "text": text.replace("火锅", "烧烤"),
        "account_id": "a2",
        "created_at": 1_700_000_900,
        "declared_original": True,
    }
    assert api.score(copy).status_code == 200
    sign_in(api, "li")
    by_post = {
        i.post_id: i.id for i in api.services.review.list_items(api.services.scoring.policy).items
    }
    html = api.client.get(f"/console/items/{by_post['claimed']}").text
    earlier = html[html.index('id="earlier-text"') : html.index('id="copy-text"')]
    assert "湖边的荷花开了" in earlier and '<mark class="diff">火锅</mark>' in earlier
    reasons = html[: html.index('id="earlier-text"')]
    assert "earlier_text" not in reasons  # shown beside the copy, not again as evidence


def try_sign_in(api: Api, name: str, password: str) -> tuple[int, str, str | None]:
    """Status, the page's message, and Retry-After of one sign-in through the form."""
    token = csrf_of(api.client.get("/console/login").text)
    answer = api.client.post(
        "/console/login",
        data={"csrf": token, "name": name, "password": password},
        follow_redirects=False,
    )
    message = re.search(r'<p class="error"[^>]*>([^<]*)</p>', answer.text)
    return (
        answer.status_code,
        message.group(1) if message else "",
        answer.headers.get("retry-after"),
    )


def test_failed_sign_ins_are_limited_alike_for_users_and_unknown_names(api: Api) -> None:
    password = create_user(api.services.scoring.repository, "li", "reviewer")
    for _ in range(4):
        assert try_sign_in(api, "li", "wrong")[0] == 401
    assert try_sign_in(api, "li", password)[0] == 303  # signing in forgets the failures
    api.client.cookies.clear()
    answers = {
        name: [try_sign_in(api, name, "wrong") for _ in range(5)] for name in ("li", "ghost")
    }
    assert answers["li"] == answers["ghost"] == [(401, "用户名或密码错误", None)] * 5
    for name, secret in (("li", password), ("ghost", password)):
        status, message, retry_after = try_sign_in(api, name, secret)
        assert status == 429 and "登录失败次数过多" in message, "refused even with the password"
        assert retry_after is not None and 800 < int(retry_after) <= 900
    assert api.client.get("/console/queue", follow_redirects=False).status_code == 303


def test_a_user_name_with_a_nul_is_a_wrong_name_not_storage_down(api: Api) -> None:
    """PostgreSQL's text holds no NUL, so a name typed with one was answered as the database
    being down (503); no user's name holds one, so it is answered as a name nobody has."""
    create_user(api.services.scoring.repository, "li", "reviewer")
    assert try_sign_in(api, "li\x00", "wrong") == try_sign_in(api, "ghost", "wrong")
    assert try_sign_in(api, "li\x00", "wrong") == (401, "用户名或密码错误", None)


@pytest.fixture
def two_processes(database_url: str) -> Iterator[tuple[SqlRepository, SqlRepository]]:
    """Two repositories on one database, each with its own engine: two server processes."""
    upgrade(database_url)
    first, second = open_repository(database_url, 5.0), open_repository(database_url, 5.0)
    yield first, second
    first.close()
    second.close()


LIMITS = SignInLimits(per_name=3, per_address=5, window_s=900, key=b"k" * 32)


def attempt(repo: SqlRepository, name: str, password: str, address: str, now: float) -> int:
    try:
        security.sign_in(repo, LIMITS, name, password, address, now)
    except AuthError as refused:
        return refused.status
    return 200


def test_a_refused_sign_ins_language_switch_keeps_the_page_it_goes_on_to(api: Api) -> None:
    """The page answering a refused sign-in is the answer to its POST: its language switch
    comes back to the sign-in page with the console page it goes on to, which a reviewer sent
    there from a page would otherwise lose."""
    create_user(api.services.scoring.repository, "li", "reviewer")
    login = api.client.get("/console/login", params={"next": "/console/appeals"}).text
    sent = {"csrf": csrf_of(login), "name": "li", "password": "wrong", "next": "/console/appeals"}
    refused = api.client.post("/console/login", data=sent)
    assert refused.status_code == 401
    switch = re.search(r'href="(/console/lang/en\?next=[^"]*)"', refused.text)
    assert switch is not None
    switched = api.client.get(switch.group(1))
    assert switched.url.path == "/console/login" and "Sign in" in switched.text
    assert 'name="next" value="/console/appeals"' in switched.text


def test_sign_in_limits_hold_across_processes_and_end_with_the_window(
    two_processes: tuple[SqlRepository, SqlRepository],
) -> None:
    a, b = two_processes
    password = create_user(a, "li", "reviewer")
    t = 1_000_000.0
    assert [attempt(a, "li", "x", "10.0.0.1", t), attempt(b, "li", "x", "10.0.0.2", t + 1)] == [
        401,
        401,
    ]
    assert attempt(a, "li", "x", "10.0.0.3", t + 2) == 401
    # the other process refuses, even the right password, from any address
    assert attempt(b, "li", password, "10.0.0.4", t + 3) == 429
    # refused attempts do not prolong the wait: it ends when the first failure leaves the window
    assert attempt(a, "li", password, "10.0.0.4", t + 899) == 429
    assert attempt(b, "li", password, "10.0.0.4", t + 901) == 200
    # signing in forgot the failures: three more are allowed
    assert [attempt(a, "li", "x", "10.0.0.1", t + 902 + i) for i in range(4)] == [401] * 3 + [429]


def test_one_address_is_limited_whatever_the_names(
    two_processes: tuple[SqlRepository, SqlRepository],
) -> None:
    a, b = two_processes
    password = create_user(a, "li", "reviewer")
    t = 1_000_000.0
    # li mistypes twice, then signs in: those two no longer count against the address
    assert [attempt(a, "li", "x", "10.0.0.9", t + i) for i in range(2)] == [401, 401]
    assert attempt(b, "li", password, "10.0.0.9", t + 2) == 200
    guesses = [attempt((a, b)[i % 2], f"user{i}", "x", "10.0.0.9", t + 3 + i) for i in range(6)]
    assert guesses == [401] * 5 + [429]
    assert attempt(a, "li", password, "10.0.0.9", t + 10) == 429
    assert attempt(a, "li", password, "10.0.0.10", t + 10) == 200
    # one IPv6 /64 is one address
    assert client_address("2001:db8::1") == client_address("2001:db8::ffff:1") == "2001:db8::/64"
    assert client_address("2001:db8:0:1::1") != client_address("2001:db8::1")
    assert client_address("192.0.2.7") == "192.0.2.7"


def test_ipv4_clients_in_ipv6_form_are_limited_each_by_its_ipv4_address(
    two_processes: tuple[SqlRepository, SqlRepository],
) -> None:
    a, _ = two_processes
    password = create_user(a, "li", "reviewer")
    t = 1_000_000.0
    # what a listener on :: sees of IPv4 clients: each one its own, not all one ::/64
    attacker, victim = client_address("::ffff:198.51.100.7"), client_address("::ffff:203.0.113.9")
    assert attacker == "198.51.100.7" and victim == "203.0.113.9"
    guesses = [attempt(a, f"user{i}", "x", attacker, t + i) for i in range(LIMITS.per_address + 1)]
    assert guesses == [401] * LIMITS.per_address + [429]
    assert attempt(a, "li", password, victim, t + 10) == 200
    assert client_address("::ffff:198.51.100.7") == client_address("198.51.100.7")
    # 6to4 (2002:V4ADDR::/48, one site) and Teredo (the client's address, obfuscated)
    assert client_address("2002:c000:204:1::1") == client_address("2002:c000:204:2::9")
    assert client_address("2002:c000:204::1") == "192.0.2.4"
    assert client_address("2001:0:4136:e378:8000:63bf:3fff:fdd2") == "192.0.2.45"
    assert client_address("2001:0:4136:e378:8000:63bf:3fff:fdd1") == "192.0.2.46"


def test_an_attempt_keeps_no_typed_name_only_its_keyed_digest(
    two_processes: tuple[SqlRepository, SqlRepository],
) -> None:
    a, _ = two_processes
    create_user(a, "li", "reviewer")
    # a password typed into the name field
    typed = "Passw0rd-li"
    assert attempt(a, typed, "li", "10.0.0.1", 1e6) == 401
    with a.engine.connect() as connection:
        stored = [tuple(row) for row in connection.execute(select(SignInAttempt.__table__))]
    assert stored and not [row for row in stored if typed in map(str, row)]
    (row,) = stored
    assert LIMITS.name_digest(typed) in row
    # keyed: another key (another deployment) stores another digest
    other = SignInLimits(per_name=3, per_address=5, window_s=900, key=b"j" * 32)
    assert other.name_digest(typed) != LIMITS.name_digest(typed)


def test_the_migration_to_name_digests_clears_the_typed_names_and_goes_back(
    database_url: str,
) -> None:
    upgrade(database_url)
    engine = make_engine(database_url, 5.0)
    try:
        with engine.begin() as connection:
            migrate(connection, "0012_console_session_epoch", down=True)
            connection.execute(
                sa.text(
                    "INSERT INTO console_sign_in_attempts (name, address, at) "
                    "VALUES ('Passw0rd-li', '10.0.0.1', 1000000.0)"
                )
            )
            migrate(connection, "0013_sign_in_name_digests")
            columns = {
                c["name"] for c in inspect(connection).get_columns(SignInAttempt.__tablename__)
            }
            assert "name_digest" in columns and "name" not in columns
            rows = connection.execute(sa.text("SELECT * FROM console_sign_in_attempts")).all()
            assert rows == []
            migrate(connection, "0012_console_session_epoch", down=True)
            columns = {
                c["name"] for c in inspect(connection).get_columns(SignInAttempt.__tablename__)
            }
            assert "name" in columns and "name_digest" not in columns
        upgrade(database_url)
    finally:
        engine.dispose()
    repository = open_repository(database_url, 5.0)
    try:
        password = create_user(repository, "li", "reviewer")
        assert attempt(repository, "li", "x", "10.0.0.1", 1e6) == 401
        assert attempt(repository, "li", password, "10.0.0.1", 1e6 + 1) == 200
    finally:
        repository.close()


def test_concurrent_attempts_check_no_more_passwords_than_the_limit(
    two_processes: tuple[SqlRepository, SqlRepository],
) -> None:
    create_user(two_processes[0], "li", "reviewer")
    statuses: list[int] = []
    start = threading.Barrier(8)

    def guess(i: int) -> None:
        start.wait()
        statuses.append(attempt(two_processes[i % 2], "li", f"guess{i}", f"10.1.0.{i}", 1e6))

    threads = [threading.Thread(target=guess, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(statuses) == 8 and set(statuses) <= {401, 429}
    assert statuses.count(401) <= LIMITS.per_name


def test_an_item_about_a_post_never_stored_says_so_and_that_confirming_charges_nobody(
    api: Api,
) -> None:
    def reported(body: dict[str, str]) -> int:
        filed = api.client.post("/v1/reports", json=body, headers=api.headers())
        assert filed.status_code == 200, filed.text
        return int(filed.json()["item_id"])

    nobody = reported({"post_id": "never-seen", "category": "rumor", "text": "假"})
    named = reported({"post_id": "gone", "account_id": "acc9", "category": "rumor", "text": "假"})
    assert api.score({"id": "p1", "text": RUMOR, "account_id": "a1"}).status_code == 200
    sign_in(api, "li")
    (known,) = [
        i.id
        for i in api.services.review.list_items(api.services.scoring.policy).items
        if i.post_id == "p1"
    ]
    for language, index in (("zh", 0), ("en", 1)):
        api.client.get(f"/console/lang/{language}")
        page = api.client.get(f"/console/items/{nobody}").text
        assert TEXT["post_unknown"][index] in page and TEXT["charges_nobody"][index] in page
        page = api.client.get(f"/console/items/{named}").text
        assert TEXT["post_unknown"][index] in page and TEXT["charges_nobody"][index] not in page
        # an account never charged: at the initial credit, with the note that says why
        assert 'id="no-credit-record"' in page and 'id="credit">100<' in page
        page = api.client.get(f"/console/items/{known}").text
        assert 'id="post-unknown"' not in page and 'id="no-credit-record"' in page


def test_a_post_items_queue_row_shows_the_start_of_its_text_escaped_and_its_page_the_whole(
    api: Api,
) -> None:
    policy, review = api.services.scoring.policy, api.services.review
    long = "<b>速看</b>\n" + MILK * 3
    for post_id, text, account in (("p1", long, "a1"), ("p2", PLAIN, "a2")):
        scored = api.score({"id": post_id, "text": text, "account_id": account})
        assert scored.status_code == 200
    review.file_report(
        policy, post_id=None, account_id="a3", category="rumor", text_="", reporter="k"
    )
    by_post = {i.post_id or i.account_id: i.id for i in review.list_items(policy).items}
    sign_in(api, "li")
    queue = api.client.get("/console/queue").text
    cells = dict(
        re.findall(r'<tr[^>]*data-item="(\d+)">.*?<td class="excerpt">(.*?)</td>', queue, re.S)
    )
    start = long[: present.EXCERPT_CHARS].replace("\n", " ")
    assert cells[str(by_post["p1"])] == (
        f'<a href="/console/items/{by_post["p1"]}">{escape(start)}…</a>'
    )
    assert "<b>" not in cells[str(by_post["p1"])]
    assert cells[str(by_post["p2"])] == f'<a href="/console/items/{by_post["p2"]}">{PLAIN}</a>'
    assert cells[str(by_post["a3"])] == "-"  # a report on an account: no post to quote
    api.settle()  # its evidence spans found: the page marks them in the text
    page = api.client.get(f"/console/items/{by_post['p1']}").text
    assert "<mark" in page
    # whole, its spans' marks aside
    shown = re.sub(r"<[^>]*>", "", page.split('id="post-text">')[1].split("</div>")[0])
    assert shown == escape(long)


def test_a_follower_jump_is_shown_in_the_queue_and_on_its_page_in_each_language(
    api: Api,
) -> None:
    policy, review = api.services.scoring.policy, api.services.review
    review.put_account(policy, "a1", followers=10)
    review.put_account(policy, "a1", followers=2_000_000)
    (item,) = review.list_items(policy, kind="follower_jump").items
    sign_in(api, "li")
    queue = api.client.get("/console/queue").text
    assert "粉丝数 10 → 2,000,000" in queue
    page = api.client.get(f"/console/items/{item.id}").text
    assert "粉丝数异常变动(第十二条)" in page and "<td>2,000,000</td>" in page
    # the confirmation offers the item's category and the article it rests on
    assert '<option value="fake_followers" selected>' in page
    assert f'value="{articles.name(policy.followers.basis, translator("zh"))}"' in page
    api.client.get("/console/lang/en")
    assert "Followers 10 → 2,000,000" in api.client.get("/console/queue").text
    page = api.client.get(f"/console/items/{item.id}").text
    assert "Abnormal follower jump (art12)" in page and "<td>10</td>" in page


def test_an_items_account_section_says_when_it_registered_or_that_it_is_not_known(
    api: Api,
) -> None:
    """A reviewer weighing a follower jump or a batch sees how old the account is: when its
    first profile registered it, in the console's zone; an account whose row a post made has
    no registration the service knows, and the page says so."""
    policy, review = api.services.scoring.policy, api.services.review
    zone = api.services.settings.console_zone
    registered = datetime(2026, 11, 1, 8, 30, tzinfo=UTC)
    review.put_account(policy, "a1", followers=10, now=registered)
    review.put_account(policy, "a1", followers=2_000_000, now=registered + timedelta(hours=1))
    (jump,) = review.list_items(policy, kind="follower_jump").items
    assert api.score({"id": "p1", "text": RUMOR, "account_id": "a2"}).status_code == 200
    (posted,) = [i for i in review.list_items(policy).items if i.post_id == "p1"]
    sign_in(api, "li")

    def said(item_id: int) -> str:
        page = api.client.get(f"/console/items/{item_id}").text
        return page.split('id="level">')[1].split("</p>")[0].split("</strong>", 1)[1]

    for language, index in (("zh", 0), ("en", 1)):
        api.client.get(f"/console/lang/{language}")
        label = TEXT["registered"][index]
        shown = times.when(registered, zone)
        assert said(jump.id) == f' · {label} <span id="registered-at">{shown}</span>'
        unknown = TEXT["registration_unknown"][index]
        assert said(posted.id) == f' · {label} <span id="registered-at">{unknown}</span>'


def test_a_batch_registration_is_shown_in_the_queue_and_on_its_page_in_each_language(
    api: Api,
) -> None:
    policy, review = api.services.scoring.policy, api.services.review
    rules = policy.registration
    start = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)
    for n in range(rules.batch_accounts):
        at = start + timedelta(minutes=n)
        review.put_account(policy, f"s{n}", name=f"<b>清朗日报{n:02}", now=at)
    (item,) = review.list_items(policy, kind="signup_batch").items
    sign_in(api, "li")
    queue = api.client.get("/console/queue").text
    assert '<td data-kind="signup_batch">批量注册 <span class="signup"' in queue
    assert f"b清朗日报 · 账号数 {rules.batch_accounts}</span>" in queue
    page = api.client.get(f"/console/items/{item.id}").text
    assert "批量注册(第十条)" in page and "去除序号后的共同名称: b清朗日报" in page
    # each account, its name as given (escaped) and when it registered, first registered first
    rows = re.findall(r'<tr data-account="([^"]+)"><td>[^<]*</td><td>([^<]*)</td>', page)
    assert rows == [(f"s{n}", f"&lt;b&gt;清朗日报{n:02}") for n in range(rules.batch_accounts)]
    assert "<b>清朗日报" not in page
    # the confirmation offers the item's category and the article it rests on
    assert '<option value="bulk_registration" selected>' in page
    assert f'value="{articles.name(rules.batch_basis, translator("zh"))}"' in page
    api.client.get("/console/lang/en")
    assert f"b清朗日报 · Accounts {rules.batch_accounts}</span>" in (
        api.client.get("/console/queue").text
    )
    page = api.client.get(f"/console/items/{item.id}").text
    assert "Batch registration (art10)" in page and "Name shared without serial numbers" in page
    # a coordinated batch of its accounts says they were registered together, with a link
    members = [{"post_id": f"p{n}", "account_id": f"s{n}"} for n in range(2)]
    cluster = review.enqueue(
        policy,
        kind="cluster",
        merge_key="cluster:c1",
        head="coordination",
        severity="review",
        reach=2,
        evidence={"members": members},
    )
    page = api.client.get(f"/console/items/{cluster.id}").text
    assert "Members s0、s1 were registered in one batch (shared name b清朗日报):" in page
    assert f'<a href="/console/items/{item.id}">#{item.id}</a>' in page


def test_a_batch_registration_past_its_listing_says_how_many_it_does_not_list(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The accounts past the listing are of the batch all the same: the page says how many,
    and that a confirmation charges each."""
    policy, review = api.services.scoring.policy, api.services.review
    rules = policy.registration
    monkeypatch.setattr(signups, "LISTED", rules.batch_accounts)
    start = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)
    for n in range(rules.batch_accounts + 2):
        at = start + timedelta(minutes=n)
        review.put_account(policy, f"s{n}", name=f"清朗日报{n:02}", now=at)
    (item,) = review.list_items(policy, kind="signup_batch").items
    sign_in(api, "li")
    page = api.client.get(f"/console/items/{item.id}").text
    rows = re.findall(r'<tr data-account="([^"]+)">', page)
    assert rows == [f"s{n}" for n in range(rules.batch_accounts)]
    size, shown = rules.batch_accounts + 2, rules.batch_accounts
    assert f"该批共 {size} 个账号,此处列出最早注册的 {shown} 个;未列出的 2 个同属该批" in page
    api.client.get("/console/lang/en")
    page = api.client.get(f"/console/items/{item.id}").text
    assert "the 2 others are of the batch all the same: a confirmation charges each" in page


def test_a_confirmation_whose_batch_is_still_being_charged_says_so_on_the_next_page(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The console answers a confirmation once it is recorded, its batch's members past the
    listing charged in the background; the page it leads to says they are still being
    charged, where the reviewer would take them as done. They are then charged with no
    further request."""
    policy, review = api.services.scoring.policy, api.services.review
    item, accounts, sent = _batch_to_confirm(api, monkeypatch)
    here = f"/console/items/{item.id}"
    taken = api.client.post(f"{here}/decision", data=sent, follow_redirects=False)
    assert taken.status_code == 303 and taken.headers["location"].endswith(f"?charging={item.id}")
    landed = api.client.get(taken.headers["location"]).text
    assert f"条目 {item.id} 已确认;批次中未列出的成员仍在后台逐一扣分" in landed
    charged = policy.credit.initial - policy.credit.deductions["bulk_registration"]
    wait_for(lambda: all(review.get_account(policy, a).credit == charged for a in accounts))
    assert 'id="charges-pending"' not in api.client.get("/console/queue").text


def _batch_to_confirm(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> tuple[views.Item, list[str], dict[str, str]]:
    """A registration batch of three members past its listing (charged two at a time), a
    reviewer signed in, and the console's confirmation of it as the form sends it: the item,
    its members and the form's fields."""
    policy, review = api.services.scoring.policy, api.services.review
    rules = policy.registration
    monkeypatch.setattr(signups, "LISTED", rules.batch_accounts)
    monkeypatch.setattr(credit_steps, "CHARGE_CHUNK", 2)
    start = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)
    accounts = [f"s{n}" for n in range(rules.batch_accounts + 3)]
    for n, account in enumerate(accounts):
        review.put_account(
            policy, account, name=f"清朗日报{n:02}", now=start + timedelta(minutes=n)
        )
    (item,) = review.list_items(policy, kind="signup_batch").items
    sign_in(api, "li")
    form = fields_of(form_of(api.client.get(f"/console/items/{item.id}").text, "decision-form"))
    basis = articles.name(rules.batch_basis, translator("zh"))
    return (
        item,
        accounts,
        {**form, "action": "confirm", "category": "bulk_registration", "basis": basis},
    )


def test_a_confirmation_whose_request_is_cancelled_as_it_commits_is_charged_at_once(
    tmp_path: Path, database_url: str, pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As the API's (test_signups): the console's request cancelled once the confirmation
    committed, before the page is answered, the batch's members past the listing are charged
    all the same, at once, with no maintenance period."""
    monkeypatch.setattr(ScoringService, "maintain", no_upkeep)
    with open_api(tmp_path, database_url, pipeline.classifier) as api:
        policy, review = api.services.scoring.policy, api.services.review
        item, accounts, sent = _batch_to_confirm(api, monkeypatch)
        here = f"/console/items/{item.id}"
        stored = api.services.scoring.repository
        assert isinstance(stored, SqlRepository)
        # whether members are left is read after the decision commits
        held = Held(stored._charging)
        monkeypatch.setattr(stored, "_charging", held)
        api.cancelled_at(held, "POST", f"{here}/decision", data=sent)
        assert review.get_item(policy, item.id).status == "confirmed"
        charged = policy.credit.initial - policy.credit.deductions["bulk_registration"]
        wait_for(lambda: all(review.get_account(policy, a).credit == charged for a in accounts))


def test_an_engagement_item_is_shown_in_the_queue_and_on_its_page_in_each_language(
    api: Api,
) -> None:
    policy, review = api.services.scoring.policy, api.services.review
    rules = policy.engagement
    review.put_account(policy, "a1", followers=800)
    review.put_engagement(policy, "p1", "a1", Counts(reads=2_000, reposts=12))
    review.put_engagement(policy, "p1", "a1", Counts(reads=2_000, reposts=25_000, reposters=100))
    for n in range(rules.others_min):
        review.put_engagement(policy, f"old{n}", "a2", Counts(likes=10))
    review.put_engagement(policy, "p2", "a2", Counts(likes=rules.min_gain["likes"]))
    listed = review.list_items(policy, kind="engagement").items
    (first,) = [i for i in listed if i.account_id == "a1"]
    sign_in(api, "li")
    queue = api.client.get("/console/queue").text
    assert '<td data-kind="engagement">互动数据异常 <span class="engagement"' in queue
    assert "转发 25,000,来自 100 个账号</span>" in queue  # the latest finding
    assert "点赞 0 → 3,000(该账号其他帖子中位数 10)" in queue
    page = api.client.get(f"/console/items/{first.id}").text
    assert "互动数据异常(第十二条)" in page
    assert (
        '<td>p1</td><td data-check="jump">数据突增</td><td>转发 12 → 25,000(粉丝 800)</td>' in page
    )
    assert '<td data-check="per_reposter">少数账号反复转发</td>' in page
    assert (
        '<td data-check="per_read">互动多于阅读</td><td>转发、评论与点赞共 25,000,阅读 2,000</td>'
        in page
    )
    # the confirmation offers the item's category and the article it rests on
    assert '<option value="fake_engagement" selected>' in page
    assert f'id="basis" value="{articles.name(rules.basis, translator("zh"))}"' in page
    api.client.get("/console/lang/en")
    assert "25,000 reposts by 100 accounts</span>" in api.client.get("/console/queue").text
    page = api.client.get(f"/console/items/{first.id}").text
    assert "Abnormal engagement (art12)" in page
    assert "<td>reposts 12 → 25,000 (800 followers)</td>" in page
    assert "<td>25,000 reposts, comments and likes, 2,000 reads</td>" in page


def test_a_report_of_fake_followers_or_engagement_offers_the_article_its_category_rests_on(
    api: Api,
) -> None:
    """A report's item is about the category its first report gave: one of bought followers or
    engagement is confirmed on art12 as a follower jump or an engagement item is, and the
    console offers that article as it does for them."""
    policy, review = api.services.scoring.policy, api.services.review
    offered: dict[Violation, str] = {
        "fake_followers": policy.followers.basis,
        "fake_engagement": policy.engagement.basis,
    }
    sign_in(api, "li")
    for n, (category, basis) in enumerate(offered.items()):
        report = review.file_report(
            policy,
            post_id=None,
            account_id=f"a{n}",
            category=category,
            text_="买的",
            reporter="test",
        )
        page = api.client.get(f"/console/items/{report.item_id}").text
        assert f'<option value="{category}" selected>' in page
        assert f'id="basis" value="{articles.name(basis, translator("zh"))}"' in page


def test_an_engagement_item_lists_the_posts_that_left_it_and_names_the_case_before_it(
    api: Api,
) -> None:
    """A post reported under acc2 and stored by the publish path for acc1 is acc1's. acc2's
    confirmed item keeps the findings it was decided on, their rows marked, and lists the post,
    saying the charge stands until an appeal; acc2's next item, open, drops the findings of
    its post that leaves too, and names the confirmed item in the words of an account's case,
    with the followers it had, never a cluster's."""
    policy, review = api.services.scoring.policy, api.services.review
    floor = policy.engagement.min_gain["reposts"]
    review.put_account(policy, "acc2", followers=1_200)

    def reported(post_id: str) -> None:
        found = review.put_engagement(policy, post_id, "acc2", Counts(reads=100, reposts=floor))
        assert found.findings

    def stored_for_its_own_account(post_id: str) -> None:
        scored = api.score({"id": post_id, "text": "今天天气很好", "account_id": "acc1"})
        assert scored.status_code == 200

    reported("p")
    (wrong,) = review.list_items(policy, kind="engagement").items
    review.decide(policy, wrong.id, "wang", "confirm", "fake_engagement", policy.engagement.basis)
    stored_for_its_own_account("p")
    reported("q")
    reported("r")
    stored_for_its_own_account("q")
    (again,) = [
        i for i in review.list_items(policy, kind="engagement").items if i.account_id == "acc2"
    ]
    assert again.id != wrong.id and again.status == "open"
    sign_in(api, "li")

    def moved_rows(page: str) -> list[tuple[str, str]]:
        listed = page.split('id="moved-posts"')[1].split("</table>", maxsplit=1)[0]
        return re.findall(r'<tr data-post="(\w+)"><td>\w+</td><td>(\w+)</td>', listed)

    def finding_posts(page: str) -> set[str]:
        listed = page.split('id="engagement-findings"')[1].split("</table>", maxsplit=1)[0]
        return set(re.findall(r"<tr><td>(\w+)", listed))

    badge = '<span class="badge moved-badge">{}</span>'
    for language, index in (("zh", 0), ("en", 1)):
        api.client.get(f"/console/lang/{language}")
        confirmed = api.client.get(f"/console/items/{wrong.id}").text
        assert moved_rows(confirmed) == [("p", "acc1")]
        assert escape(TEXT["moved_intro"][index]) in confirmed
        assert TEXT["moved_kept"][index] in confirmed
        assert TEXT["moved_dropped"][index] not in confirmed
        assert f"<td>p {badge.format(TEXT['moved_badge'][index])}</td>" in confirmed
        assert finding_posts(confirmed) == {"p"}
        assert 'id="earlier-item"' not in confirmed
        page = api.client.get(f"/console/items/{again.id}").text
        assert moved_rows(page) == [("q", "acc1")]
        assert TEXT["moved_dropped"][index] in page and TEXT["moved_kept"][index] not in page
        assert finding_posts(page) == {"r"} and "moved-badge" not in page
        (said,) = re.findall(r'<p class="earlier-item" id="earlier-item">(.*?)</p>', page)
        assert said.startswith(TEXT["earlier_engagement"][index])
        assert f"{TEXT['followers'][index]} 1,200" in said
        assert TEXT["cluster_size"][index] not in page
        assert TEXT["earlier_cluster"][index] not in page


def test_a_bank_match_names_the_match_decided_before_it_with_no_reach_and_no_cluster(
    api: Api,
) -> None:
    """A bank match's item that names the one decided on the same match says so in the words
    of a match, with no reach (a match's is none) and none of a cluster's words, and does not
    list the link again as its evidence; a kind with no words of its own for the link is
    given the plain ones, with no reach."""
    review, policy = api.services.review, api.services.scoring.policy

    def matched(reach: int) -> Item:
        return review.enqueue(
            policy,
            kind="bank_match",
            merge_key="bank:r1:post:p1",
            head="rumor",
            severity="review",
            reach=reach,
            evidence={"confirmed_rumor": "r1", "similarity": 0.93},
            post_id="p1",
            account_id="a1",
        )

    first = matched(0)
    review.decide(policy, first.id, "wang", "dismiss", None, None)
    # a greater reach after a decision opens an item linking the decided one
    second = matched(1)
    assert second.id != first.id
    sign_in(api, "li")
    for language, index in (("zh", 0), ("en", 1)):
        api.client.get(f"/console/lang/{language}")
        page = api.client.get(f"/console/items/{second.id}").text
        (said,) = re.findall(r'<p class="earlier-item" id="earlier-item">(.*?)</p>', page)
        assert said.startswith(escape(TEXT["earlier_match"][index]))
        # the decided item's moment ends the line: no reach follows it
        assert re.search(r" · wang · \d{4}-\d\d-\d\d \d\d:\d\d UTC\+8$", said)
        assert f'<a href="/console/items/{first.id}">{TEXT["item"][index]} {first.id}</a>' in said
        for key in ("cluster_size", "followers", "earlier_cluster"):
            assert TEXT[key][index] not in said
        listed = page.split('id="bank-match"')[1].split("</p>")[0]
        assert "earlier" not in listed and "reviewer" not in listed
    reported = present.earlier_item(second.model_copy(update={"kind": "report"}))
    assert reported is not None
    assert (reported.item_id, reported.said, reported.reach_label) == (
        first.id,
        "earlier_item",
        None,
    )


def test_an_impersonation_item_is_shown_in_the_queue_and_on_its_page_in_each_language(
    api: Api,
) -> None:
    policy, review = api.services.scoring.policy, api.services.review
    review.put_account(policy, "a1", name="新華社 北京", followers=10)
    entry = review.add_protected_name(
        policy, name="新华社", kind="organisation", subject_ids=[], by="k"
    )
    (item,) = review.list_items(policy, kind="impersonation").items
    sign_in(api, "li")
    queue = api.client.get("/console/queue").text
    assert '<td data-kind="impersonation">冒用名义 <span class="protected"' in queue
    assert "受保护名称 新华社</span>" in queue
    page = api.client.get(f"/console/items/{item.id}").text
    assert "擅自使用受保护名称(第八条)" in page and "账号名称: 新華社 北京" in page
    kind = '<td data-protected="organisation">企事业单位等组织机构</td>'
    assert f"<td>新华社</td>{kind}<td>{entry.id}</td>" in page
    # art8's text, from the regulation the reasons' articles come from
    article = page.split('id="impersonation-article">')[1].split("</blockquote>")[0]
    assert article.startswith("第八条") and "社会知名人士名义" in article
    # the confirmation offers the item's category and the article it rests on
    assert '<option value="impersonation" selected>' in page
    offered = articles.name(policy.registration.protected_basis, translator("zh"))
    assert f'id="basis" value="{offered}"' in page
    api.client.get("/console/lang/en")
    assert "Protected name 新华社</span>" in api.client.get("/console/queue").text
    page = api.client.get(f"/console/items/{item.id}").text
    assert "Unauthorised use of a protected name (art8)" in page
    assert '<td data-protected="organisation">enterprise, institution or organisation</td>' in page


def test_moments_are_shown_in_the_consoles_time_zone_naming_its_offset() -> None:
    moment = datetime(2026, 12, 5, 20, 0, tzinfo=UTC)
    shanghai = ZoneInfo("Asia/Shanghai")
    assert times.when(moment, shanghai) == "2026-12-06 04:00 UTC+8"
    assert times.when(moment.timestamp(), shanghai) == "2026-12-06 04:00 UTC+8"
    assert times.when(moment, ZoneInfo("UTC")) == "2026-12-05 20:00 UTC"
    assert times.when(moment, ZoneInfo("Asia/Kolkata")) == "2026-12-06 01:30 UTC+5:30"
    assert times.when(moment, ZoneInfo("America/New_York")) == "2026-12-05 15:00 UTC-5"
    assert times.when(None, shanghai) == "-"


def test_an_items_page_shows_its_moments_in_the_consoles_time_zone(
    api: Api, tmp_path: Path, database_url: str, pipeline: Pipeline
) -> None:
    review, policy = api.services.review, api.services.scoring.policy
    assert api.score({"id": "p1", "text": RUMOR, "account_id": "a1"}).status_code == 200
    (item,) = review.list_items(policy).items
    decided_at = datetime(2026, 12, 5, 20, 0, tzinfo=UTC)
    review.decide(policy, item.id, "wang", "dismiss", None, None, now=decided_at)
    sign_in(api, "li")
    page = api.client.get(f"/console/items/{item.id}").text
    (decision,) = re.findall(r'<ol id="decisions"><li>([^<]*)', page)
    assert decision == "2026-12-06 04:00 UTC+8 · wang · "
    # a team elsewhere sets its own zone (the same database)
    (tmp_path / "utc").mkdir()
    with open_api(
        tmp_path / "utc", database_url, pipeline.classifier, console_timezone="UTC"
    ) as other:
        sign_in(other, "zhao")
        page = other.client.get(f"/console/items/{item.id}").text
        (decision,) = re.findall(r'<ol id="decisions"><li>([^<]*)', page)
        assert decision == "2026-12-05 20:00 UTC · wang · "


def test_the_dashboard_counts_each_day_by_the_consoles_dates(api: Api) -> None:
    review, policy = api.services.review, api.services.scoring.policy
    enqueued = [
        datetime(2026, 12, 5, 20, 0, tzinfo=UTC),  # 12-06 04:00 in Beijing
        datetime(2026, 12, 5, 16, 0, tzinfo=UTC),  # 12-06 00:00
        datetime(2026, 12, 5, 15, 59, tzinfo=UTC),  # 12-05 23:59
        datetime(2026, 11, 23, 16, 0, tzinfo=UTC),  # 11-24 00:00, the first of the 14 dates
        datetime(2026, 11, 23, 15, 59, tzinfo=UTC),  # 11-23 23:59, before them
    ]
    for n, moment in enumerate(enqueued):
        review.file_report(
            policy,
            post_id=f"r{n}",
            account_id=None,
            category="rumor",
            text_="谣言",
            reporter="test",
            now=moment,
        )
    now = datetime(2026, 12, 6, 17, 0, tzinfo=UTC)  # 12-07 01:00 in Beijing
    reads = ConsoleReads(make_engine(api.url, 5.0))
    shanghai, utc = ZoneInfo("Asia/Shanghai"), ZoneInfo("UTC")
    assert reads.flagged_per_day(now, 14, shanghai) == {
        "rumor": {"2026-11-24": 1, "2026-12-05": 1, "2026-12-06": 2}
    }
    assert reads.flagged_per_day(now, 14, utc) == {"rumor": {"2026-11-23": 2, "2026-12-05": 3}}
    t, en = translator("zh"), translator("en")
    for zone, first, last, said in [
        (shanghai, "11-24", "12-07", "UTC+8"),
        (utc, "11-23", "12-06", "UTC"),
    ]:
        tallied = present.tallies(reads, now, zone, policy)
        plot = present.dashboard(tallied, policy, t, partial(worded, t))["flagged"]
        # the items counted are reports, not flagged records: the title says items of every kind
        assert f'aria-label="各类别每日入队条目数(各来源合计,14 天,按 {said} 日期)"' in plot
        assert re.findall(r">(\d\d-\d\d)</text>", plot) == [first, last]
        assert present.flagged_title(tallied, en) == (
            f"Review items queued per head per day, of every kind (14 days, {said} dates)"
        )
    reads.engine.dispose()


def test_the_queue_filters_by_kind_in_the_readers_words_with_the_other_filters(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    review, policy = api.services.review, api.services.scoring.policy
    for post_id in ("p1", "p2"):
        assert api.score({"id": post_id, "text": RUMOR, "account_id": "a1"}).status_code == 200
    reported: list[tuple[str, Violation]] = [("r1", "rumor"), ("r2", "incitement")]
    for post_id, category in reported:
        review.file_report(
            policy,
            post_id=post_id,
            account_id=None,
            category=category,
            text_="举报",
            reporter="test",
        )
    sign_in(api, "li")

    def rows(url: str) -> list[tuple[str, str]]:
        page = api.client.get(url)
        assert page.status_code == 200, url
        kind_then_head = r'<td data-kind="(\w+)">[^<]*</td>\s*<td class="excerpt">.*?</td>\s*'
        return re.findall(kind_then_head + r'<td data-head="(\w+)">', page.text)

    assert sorted(rows("/console/queue?kind=report")) == [
        ("report", "incitement"),
        ("report", "rumor"),
    ]
    assert rows("/console/queue?kind=report&head=rumor") == [("report", "rumor")]
    assert rows("/console/queue?kind=score") == [("score", "rumor")] * 2
    assert rows("/console/queue?kind=cluster") == []
    assert rows("/console/queue?kind=score&status=dismissed") == []
    queue = api.client.get("/console/queue?kind=report&head=rumor").text
    assert '<option value="report" selected>举报</option>' in queue
    assert '<option value="score" >评分</option>' in queue
    # the filters go on in the next page's link and in the language switch's way back
    monkeypatch.setattr(pages, "PAGE_SIZE", 1)
    first = api.client.get("/console/queue?kind=score&head=rumor").text
    (next_url,) = re.findall(r'<a href="([^"]+)" id="next-page">', first)
    query = next_url.replace("&amp;", "&")
    assert "kind=score" in query and "head=rumor" in query and "status=open" in query
    assert rows(query) == [("score", "rumor")]
    refused = api.client.get("/console/queue?kind=spam")
    assert refused.status_code == 422 and refusal_of(refused.text) == "来源: 不是可选的值"
    (switch,) = re.findall(r'<a href="(/console/lang/en\?next=[^"]+)"[^>]*>English</a>', first)
    moved = api.client.get(switch.replace("&amp;", "&"), follow_redirects=False)
    assert moved.headers["location"] == "/console/queue?kind=score&head=rumor"


def next_of(api: Api, item_id: int) -> int | None:
    """The item key ``j`` opens after ``item_id``; None for the queue."""
    moved = api.client.get(f"/console/items/{item_id}/next", follow_redirects=False)
    found = re.fullmatch(r"/console/items/(\d+)", moved.headers["location"])
    return None if found is None else int(found.group(1))


def test_escalations_waiting_are_counted_and_key_j_moves_through_those_one_may_decide(
    api: Api,
) -> None:
    review, policy = api.services.review, api.services.scoring.policy
    # six posts that make no batch, each its own item
    for i, text in enumerate((RUMOR, MILK, PLAIN, *VIOLATIONS)):
        assert api.score({"id": f"p{i}", "text": text, "account_id": f"a{i}"}).status_code == 200
    api.settle()
    ids = [item.id for item in review.list_items(policy).items]  # the queue's order
    assert len(ids) == 6
    for item_id, by in ((ids[0], "wang"), (ids[2], "wang"), (ids[3], "li")):
        review.decide(policy, item_id, by, "escalate", None, None, "需要复核")
    escalated, open_ = [ids[0], ids[2], ids[3]], [ids[1], ids[4], ids[5]]
    token = sign_in(api, "zhao", "admin")
    queue = api.client.get("/console/queue").text
    assert '<a href="/console/queue?status=escalated">已上报待管理员处理 3 条</a>' in queue
    listed = api.client.get("/console/queue?status=escalated").text
    assert [int(i) for i in re.findall(r'data-item="(\d+)"', listed)] == escalated
    # the admin who works the escalations moves through them with j, then on to the open items
    assert [next_of(api, i) for i in escalated] == [escalated[1], escalated[2], open_[0]]
    # the open items go on as before, and past their end come the escalations
    assert [next_of(api, i) for i in open_] == [open_[1], open_[2], escalated[0]]
    # a decision on an escalation opens the most urgent one left
    decided = api.client.post(
        f"/console/items/{escalated[1]}/decision",
        data={"csrf": token, "action": "dismiss"},
        follow_redirects=False,
    )
    assert decided.headers["location"] == f"/console/items/{escalated[0]}"
    api.client.get("/console/lang/en")
    assert "2 escalated, waiting for an admin</a>" in api.client.get("/console/queue").text
    # an escalation goes to an admin other than its escalator: li's j passes the one li
    # escalated
    api.client.cookies.clear()
    sign_in(api, "li", "admin")
    assert next_of(api, escalated[0]) == open_[0]
    assert next_of(api, open_[2]) == escalated[0]
    # and to no reviewer: a reviewer's j goes round the open items, and from an escalated
    # item's page to the first of them, while the count says who the escalations wait for
    api.client.cookies.clear()
    sign_in(api, "chen")
    assert [next_of(api, i) for i in open_] == [open_[1], open_[2], open_[0]]
    assert next_of(api, escalated[0]) == open_[0]
    assert "已上报待管理员处理 2 条</a>" in api.client.get("/console/queue").text
    # with no open item left to take, a reviewer's j leads back to the queue
    for item_id in open_:
        review.decide(policy, item_id, "wang", "dismiss", None, None)
    assert next_of(api, escalated[0]) is None


def test_an_escalated_item_is_offered_to_an_admin_other_than_its_escalator(api: Api) -> None:
    review, policy = api.services.review, api.services.scoring.policy
    assert api.score({"id": "p1", "text": RUMOR, "account_id": "a1"}).status_code == 200
    (item,) = review.list_items(policy).items
    review.decide(policy, item.id, "li", "escalate", None, None, "需要法务看一下")
    buttons = ("claim", "confirm", "dismiss")

    def offered(page: str) -> dict[str, bool]:
        return {
            button: re.search(rf'id="{button}"[^>]*\bdisabled\b', page) is None
            for button in buttons
        }

    sign_in(api, "li")
    page = api.client.get(f"/console/items/{item.id}").text
    assert offered(page) == dict.fromkeys(buttons, False)
    assert f'<p class="pending" id="escalated-by-you">{TEXT["escalated_by_you"][0]}</p>' in page
    api.client.get("/console/lang/en")
    page = api.client.get(f"/console/items/{item.id}").text
    assert TEXT["escalated_by_you"][1] in page
    # another reviewer is offered neither, the page saying an admin takes it
    api.client.cookies.clear()
    token = sign_in(api, "zhao")
    page = api.client.get(f"/console/items/{item.id}").text
    assert offered(page) == dict.fromkeys(buttons, False)
    assert 'id="escalated-by-you"' not in page
    said = TEXT["escalated_to_admin"][0]
    assert f'<p class="pending" id="escalated-to-admin">{said}</p>' in page
    # a form sent all the same is refused on the page, as the API's 403, and changes nothing
    for path, data in (("claim", {}), ("decision", {"action": "dismiss", "once": "x" * 43})):
        refused = api.client.post(f"/console/items/{item.id}/{path}", data={"csrf": token, **data})
        assert refusal_of(refused.text) == TEXT["refusal.escalated_to_admin"][0], path
    assert review.get_item(policy, item.id).status == "escalated"
    assert review.get_item(policy, item.id).assignee is None
    # an admin is offered both
    api.client.cookies.clear()
    token = sign_in(api, "zhou", "admin")
    page = api.client.get(f"/console/items/{item.id}").text
    assert offered(page) == dict.fromkeys(buttons, True)
    assert 'class="pending" id="escalated' not in page
    claimed = api.client.post(
        f"/console/items/{item.id}/claim", data={"csrf": token}, follow_redirects=False
    )
    assert claimed.status_code == 303
    assert review.get_item(policy, item.id).assignee == "zhou"


def test_an_items_thresholds_are_those_of_the_policy_its_record_was_scored_under(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    review, policy = api.services.review, api.services.scoring.policy
    repository = api.services.scoring.repository
    assert isinstance(repository, SqlRepository)
    # the service keeps its own policy's rules
    api.services.scoring.recover()
    reads = ConsoleReads(make_engine(api.url, 5.0))
    assert reads.policy_thresholds(policy.version) == present.thresholds(policy)
    # the same version with other rules (edited without a new version) keeps the first
    rumor = policy.risks["rumor"]
    edited = policy.model_copy(
        update={"risks": {**policy.risks, "rumor": rumor.model_copy(update={"review": 0.9})}}
    )
    with caplog.at_level(logging.WARNING):
        repository.keep_policy(edited)
    assert reads.policy_thresholds(policy.version) == present.thresholds(policy)
    assert any("give an edited policy a new version" in str(r.__dict__) for r in caplog.records)
    # a policy since replaced, kept, and one whose rules were never kept
    then = rumor.model_copy(update={"review": 0.4, "block": 0.9})
    older = policy.model_copy(
        update={"version": "2026-01-01.1", "risks": {**policy.risks, "rumor": then}}
    )
    repository.keep_policy(older)
    scored = ScoreRecord.model_validate(
        api.score({"id": "now", "text": RUMOR, "account_id": "a1"}).json()
    )
    for post_id, version in (("before", older.version), ("lost", "2025-06-01.1")):
        record = scored.model_copy(update={"id": post_id, "policy_version": version})
        repository.save_records([Pending(record, enqueue=True, text=RUMOR)])
    found = {i.post_id: i.id for i in review.list_items(policy).items}
    sign_in(api, "li")

    def rumor_row(post_id: str) -> tuple[str, str]:
        page = api.client.get(f"/console/items/{found[post_id]}").text
        cells = r'<td data-head="rumor">[^<]*</td><td>[^<]*</td><td>(.*?)</td><td>(.*?)</td>'
        (row,) = re.findall(cells, page)
        return (row[0], row[1])

    def note(post_id: str) -> str:
        page = api.client.get(f"/console/items/{found[post_id]}").text
        said = re.search(r'<p class="policy-note" id="policy-note">(.*?)</p>', page)
        return "" if said is None else re.sub(r"<[^>]+>", "", said.group(1))

    current = f"{rumor.review:.3f}"
    assert rumor_row("now") == (current, "不按分数拦截") and note("now") == ""
    assert rumor_row("before") == (
        f'0.400 <span class="now">(现行 {current})</span>',
        '0.900 <span class="now">(现行 不按分数拦截)</span>',
    )
    assert note("before") == TEXT["policy_changed"][0].format(
        version=older.version, current=policy.version
    )
    assert rumor_row("lost") == (current, "不按分数拦截")
    assert note("lost") == TEXT["thresholds_not_kept"][0].format(
        version="2025-06-01.1", current=policy.version
    )
    api.client.get("/console/lang/en")
    assert note("before") == TEXT["policy_changed"][1].format(
        version=older.version, current=policy.version
    )
    assert rumor_row("before")[0] == f'0.400 <span class="now">(now {current})</span>'
    reads.engine.dispose()


def fields_of(form: str) -> dict[str, str]:
    """A form's fields as a browser posts them (those its page filled in)."""
    return dict(re.findall(r'<input (?:type="hidden" )?name="(\w+)"[^>]*?value="([^"]*)"', form))


def test_a_form_sent_twice_is_written_once_and_answered_alike(api: Api) -> None:
    review, policy = api.services.review, api.services.scoring.policy
    for i, text in enumerate((RUMOR, MILK, PLAIN)):
        assert api.score({"id": f"p{i}", "text": text, "account_id": "a1"}).status_code == 200
    api.settle()
    first, second, _ = (i.id for i in review.list_items(policy).items)
    sign_in(api, "li")
    page = api.client.get(f"/console/items/{first}").text
    form = {**fields_of(form_of(page, "decision-form")), "category": "rumor", "note": "属实"}
    # pressed twice, or sent again by the browser: one decision, the same answer twice
    answers = [
        api.client.post(
            f"/console/items/{first}/decision",
            data={**form, "action": "confirm"},
            follow_redirects=False,
        )
        for _ in range(2)
    ]
    assert [(a.status_code, a.headers["location"]) for a in answers] == [
        (303, f"/console/items/{second}")
    ] * 2
    reads = ConsoleReads(make_engine(api.url, 5.0))
    assert [(d.action, d.note) for d in reads.decisions(first)] == [("confirm", "属实")]
    account = review.get_account(policy, "a1")
    assert [h.reason for h in account.history if isinstance(h, CreditChange)] == ["violation"]
    # the same form with another action is refused, and does nothing
    other = api.client.post(f"/console/items/{first}/decision", data={**form, "action": "dismiss"})
    assert other.status_code == 409
    assert refusal_of(other.text) == TEXT["sent_otherwise"][0]
    assert len(reads.decisions(first)) == 1
    # another page's form is another decision: refused as the item is decided
    again = fields_of(form_of(api.client.get(f"/console/items/{first}").text, "decision-form"))
    assert len(again["once"]) == len(form["once"]) == 43 and again["once"] != form["once"]
    refused = api.client.post(
        f"/console/items/{first}/decision", data={**again, "action": "dismiss"}
    )
    assert refused.status_code == 409 and refusal_of(refused.text).startswith("该条目已处理")
    # an appeal filed twice from one page is filed once
    api.client.cookies.clear()
    sign_in(api, "wang", "admin")
    page = api.client.get("/console/appeals").text
    filing = {**fields_of(form_of(page, "file-appeal")), "account_id": "a1"}
    filing |= {"item_id": str(first), "reason": "误判"}
    filed = [api.client.post("/console/appeals", data=filing, follow_redirects=False) for _ in "12"]
    assert [a.status_code for a in filed] == [303, 303]
    assert review.list_appeals().pending == 1
    # a rumour added twice from one page (the button pressed twice) is added once, and not
    # refused as one the bank holds already; removed twice, removed once and not "no such"
    page = api.client.get("/console/bank").text
    adding = {**fields_of(form_of(page, "add-rumor")), "text": MILK, "notice": "已辟谣"}
    added = [api.client.post("/console/bank", data=adding, follow_redirects=False) for _ in "12"]
    assert [a.status_code for a in added] == [303, 303]
    (rumor,) = api.services.repository.rumors()
    page = api.client.get("/console/bank").text
    removing = fields_of(form_of(page, f"remove-{rumor.rumor_id}"))
    removed = [
        api.client.post(
            f"/console/bank/{rumor.rumor_id}/delete", data=removing, follow_redirects=False
        )
        for _ in "12"
    ]
    assert [r.status_code for r in removed] == [303, 303]
    assert api.services.repository.rumors() == []
    reads.engine.dispose()


def test_a_follower_jump_links_the_accounts_last_decided_one_and_lists_its_other_items(
    api: Api,
) -> None:
    review, policy = api.services.review, api.services.scoring.policy
    assert api.score({"id": "p1", "text": RUMOR, "account_id": "f1"}).status_code == 200
    api.settle()
    (post,) = review.list_items(policy).items
    review.put_account(policy, "f1", followers=10)
    review.put_account(policy, "f1", followers=2_000_000)
    (first,) = review.list_items(policy, kind="follower_jump").items
    review.decide(policy, first.id, "wang", "confirm", "fake_followers", "art12", "买粉,已核实")
    review.put_account(policy, "f1", followers=100)
    review.put_account(policy, "f1", followers=3_000_000)
    (second,) = review.list_items(policy, kind="follower_jump").items
    sign_in(api, "li")
    page = api.client.get(f"/console/items/{second.id}").text
    (said,) = re.findall(r'<p class="earlier-item" id="earlier-item">(.*?)</p>', page)
    assert said.startswith(TEXT["earlier_jump"][0])
    assert f'<a href="/console/items/{first.id}">条目 {first.id}</a>' in said
    assert '<span data-status="confirmed">已确认违规</span> · wang · ' in said
    assert said.endswith("粉丝数 2,000,000")
    # the account's other items: the jump decided, with its note, and the post still open
    listed = page.split('id="account-items"')[1].split("</table>")[0]
    rows = re.findall(r'<tr class="([^"]*)" data-item="(\d+)">(.*?)</tr>', listed, re.S)
    assert [(kind, int(i)) for kind, i, _ in rows] == [("same-kind", first.id), ("", post.id)]
    assert 'data-status="confirmed"' in rows[0][2] and "买粉,已核实" in rows[0][2]
    assert "wang" in rows[0][2] and 'data-status="open"' in rows[1][2]
    assert "该账号的其他条目 (2)" in page
    # the account's history says which item each change came from
    history = page.split('class="history"')[1].split("</ul>")[0]
    assert history.count(f'<a href="/console/items/{first.id}">条目 {first.id}</a>') == 2
    api.client.get("/console/lang/en")
    page = api.client.get(f"/console/items/{second.id}").text
    assert TEXT["earlier_jump"][1] in page and "Followers 2,000,000</p>" in page
    assert "The account&#39;s other items (2)" in page


def test_an_item_page_shows_the_account_s_history_a_page_at_a_time(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The account's history on an item's page comes ``ACCOUNT_HISTORY`` entries at a time,
    newest first (what a reviewer deciding an item weighs first), as the API pages it with
    ``order=newest``, a link to the next (older) page carrying its cursor: every entry once,
    in order; a cursor no page gave out is refused as the listings' are."""
    monkeypatch.setattr(pages, "ACCOUNT_HISTORY", 2)
    review, policy = api.services.review, api.services.scoring.policy
    for post in ("p1", "p2"):
        assert api.score({"id": post, "text": RUMOR, "account_id": "a1"}).status_code == 200
    api.settle()
    for queued in review.list_items(policy).items:
        review.decide(policy, queued.id, "wang", "confirm", "rumor", "art18.6")
    whole = review.get_account(policy, "a1", limit=1000, order="newest").history
    assert len(whole) > 2
    assert whole[0].id != review.get_account(policy, "a1", limit=1000).history[0].id
    said = [
        ("reason", h.reason) if isinstance(h, views.CreditChange) else ("kind", h.kind)
        for h in whole
    ]
    sign_in(api, "li")
    item = f"/console/items/{review.list_items(policy, status='confirmed').items[0].id}"
    shown: list[tuple[str, str]] = []
    url: str | None = item
    while url is not None:
        page = api.client.get(url)
        assert page.status_code == 200, url
        history = page.text.split('class="history"')[1].split("</ul>")[0]
        entries = re.findall(r'<li>[^<]*<span data-(reason|kind)="([^"]+)"', history)
        assert 1 <= len(entries) <= 2
        shown += entries
        assert 'id="no-credit-record"' not in page.text
        later = re.findall(r'<a href="([^"]+)" id="history-next">', page.text)
        url = later[0].replace("&amp;", "&") if later else None
        assert url is None or url.startswith(f"{item}?cursor=")
    assert shown == said
    refused = api.client.get(f"{item}?cursor=abc")
    assert refused.status_code == 422
    assert refusal_of(refused.text) == "翻页位置: 不是列表给出的位置"


def test_an_item_page_shows_the_account_s_active_dispositions_a_page_at_a_time(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The account's active dispositions on an item's page come ``ACCOUNT_HISTORY`` at a time,
    as ``/v1/accounts/{id}/dispositions`` pages them, a link to the next page carrying its
    cursor (``active``): every one once, in the order they were applied; a cursor no page
    gave out is refused as the listings' are."""
    monkeypatch.setattr(pages, "ACCOUNT_HISTORY", 1)
    review, policy = api.services.review, api.services.scoring.policy
    for post in ("p1", "p2", "p3"):
        assert api.score({"id": post, "text": RUMOR, "account_id": "a1"}).status_code == 200
    api.settle()
    for queued in review.list_items(policy).items:
        review.decide(policy, queued.id, "wang", "confirm", "rumor", "art18.6")
    active = review.account_dispositions("a1", limit=1000).dispositions
    assert len(active) > 1
    sign_in(api, "li")
    item = f"/console/items/{review.list_items(policy, status='confirmed').items[0].id}"
    shown: list[str] = []
    url: str | None = item
    while url is not None:
        page = api.client.get(url)
        assert page.status_code == 200, url
        listed = page.text.split('id="dispositions"')[1].split("</ul>")[0]
        kinds = re.findall(r'<li data-kind="([^"]+)"', listed)
        assert len(kinds) == 1
        shown += kinds
        later = re.findall(r'<a href="([^"]+)" id="dispositions-next">', page.text)
        url = later[0].replace("&amp;", "&") if later else None
        assert url is None or url.startswith(f"{item}?active=")
    assert shown == [d.kind for d in active]
    refused = api.client.get(f"{item}?active=abc")
    assert refused.status_code == 422
    assert refusal_of(refused.text) == "已生效处置的翻页位置: 不是列表给出的位置"


def test_the_dashboards_score_plots_say_they_count_the_stored_records_alone(
    tmp_path: Path, database_url: str, pipeline: Pipeline
) -> None:
    # a policy under which most posts pass: those are never stored, so never in the plots
    policy_file = write_policy(tmp_path / "policy.toml", review=0.5)
    with open_api(tmp_path, database_url, pipeline.classifier, policy=policy_file) as api:
        policy = api.services.scoring.policy
        posts = [RUMOR, MILK, PLAIN, "今天天气不错", "周末去爬山了", *VIOLATIONS]
        for i, text in enumerate(posts):
            assert api.score({"id": f"p{i}", "text": text, "account_id": "a1"}).status_code == 200
        api.settle()
        repository = api.services.scoring.repository
        assert isinstance(repository, SqlRepository)
        with repository.engine.connect() as connection:
            stored = [r for (r,) in connection.execute(select(StoredRecord.record))]
        assert 0 < len(stored) < len(posts)
        # a re-score's records under another policy are not drawn against this one's thresholds
        again = ScoreRecord.model_validate(stored[0]).model_copy(
            update={"policy_version": "2027-01-01.1"}
        )
        repository.save_records([Pending(again, enqueue=False)])
        reads = ConsoleReads(make_engine(api.url, 5.0))
        scores = reads.recent_scores(datetime.now(UTC), policy.version)
        assert sorted(s["rumor"] for s in scores) == sorted(r["scores"]["rumor"] for r in stored)
        # a policy that stores what passes too says nothing of passed posts left out
        every = policy.model_copy(update={"persist": ["pass", "review", "block"]})
        zh = translator("zh")
        tallied = present.tallies(reads, datetime.now(UTC), ZoneInfo("UTC"), every)
        title, counted = present.scores_said(tallied, every, zh, partial(worded, zh))
        assert "放行、送审、拦截" in title and counted == f"现行策略下的 {len(stored)} 条记录"
        reads.engine.dispose()
        sign_in(api, "wang", "admin")
        page = api.client.get("/console/dashboard").text
        title = "近一天存储的记录(送审、拦截)的分数与审核阈值"
        assert f'aria-label="{title}: 谣言"' in page
        counted = f"现行策略下的 {len(stored)} 条记录;放行的帖子不存储,不在其中"
        assert f'<small class="scores-counted">{counted}</small>' in page
        api.client.get("/console/lang/en")
        page = api.client.get("/console/dashboard").text
        assert "Scores of the last day&#39;s stored records (review, block) against" in page
        assert f"{len(stored)} records under the current policy; posts that passed" in page


def test_an_items_page_shows_its_appeals_and_that_an_upheld_one_overturned_it(api: Api) -> None:
    review, policy = api.services.review, api.services.scoring.policy
    assert api.score({"id": "p1", "text": RUMOR, "account_id": "a1"}).status_code == 200
    api.settle()
    (item,) = review.list_items(policy).items
    review.decide(policy, item.id, "wang", "confirm", "rumor", "art18.6")
    sign_in(api, "li")
    assert 'id="item-appeals"' not in api.client.get(f"/console/items/{item.id}").text
    appeal = review.file_appeal(
        policy, account_id="a1", item_id=item.id, reason="已辟谣,属误判", filed_by="li"
    )
    page = api.client.get(f"/console/items/{item.id}").text
    listed = page.split('id="item-appeals"')[1].split("</table>")[0]
    assert "已辟谣,属误判" in listed and '<td data-status="pending">待处理</td>' in listed
    review.decide_appeal(policy, appeal.id, "zhao", "uphold", "来源已核实")
    page = api.client.get(f"/console/items/{item.id}").text
    listed = page.split('id="item-appeals"')[1].split("</table>")[0]
    assert '<td data-status="upheld">申诉成立 · 违规确认已撤销 · zhao · ' in listed
    assert '<td class="free-text">来源已核实</td>' in listed
    api.client.get("/console/lang/en")
    page = api.client.get(f"/console/items/{item.id}").text
    assert '<td data-status="upheld">upheld · the confirmation is overturned · zhao' in page


def test_the_reviewer_whose_decision_is_appealed_is_offered_no_resolution_of_it(
    api: Api,
) -> None:
    review, policy = api.services.review, api.services.scoring.policy
    assert api.score({"id": "p1", "text": RUMOR, "account_id": "a1"}).status_code == 200
    api.settle()
    (item,) = review.list_items(policy).items
    review.decide(policy, item.id, "wang", "confirm", "rumor", "art18.6")
    appeal = review.file_appeal(
        policy, account_id="a1", item_id=item.id, reason="误判", filed_by="k"
    )

    def row(page: str) -> str:
        return page.split(f'data-appeal="{appeal.id}"')[1].split("</tr>", maxsplit=1)[0]

    def offered(page: str) -> bool:
        return re.search(r'class="(uphold|reject)" disabled', page) is None

    sign_in(api, "wang", "admin")
    mine = row(api.client.get("/console/appeals").text)
    assert not offered(mine) and TEXT["own_decision"][0] in mine
    api.client.get("/console/lang/en")
    assert TEXT["own_decision"][1] in row(api.client.get("/console/appeals").text)
    api.client.cookies.clear()
    sign_in(api, "li")
    theirs = row(api.client.get("/console/appeals").text)
    assert offered(theirs) and TEXT["own_decision"][0] not in theirs


def test_the_reviewer_who_filed_an_appeal_resolves_it_neither_in_the_console_nor_by_key(
    api: Api,
) -> None:
    """An appeal li filed on the holder's behalf is not li's to uphold or reject, on the page,
    by a form sent all the same, or with li's key: one person would ask for wang's
    confirmation to be reversed and reverse it. Another reviewer resolves it."""
    review, policy = api.services.review, api.services.scoring.policy
    assert api.score({"id": "p1", "text": RUMOR, "account_id": "a1"}).status_code == 200
    api.settle()
    (item,) = review.list_items(policy).items
    review.decide(policy, item.id, "wang", "confirm", "rumor", "art18.6", role="admin")
    token = sign_in(api, "li")
    filed = api.client.post(
        "/console/appeals",
        data={"csrf": token, "account_id": "a1", "item_id": str(item.id), "reason": "误判"},
        follow_redirects=False,
    )
    assert filed.status_code == 303, filed.text
    (appeal,) = review.list_appeals(status="pending").appeals
    # the page the filing goes back to confirms it, in a line of its own
    assert filed.headers["location"] == f"/console/appeals?filed={appeal.id}"
    page = api.client.get(filed.headers["location"]).text
    deadline = times.when(appeal.deadline, api.services.settings.console_zone)
    assert re.findall(r'<p class="filed" role="status" id="appeal-filed">(.*?)</p>', page) == [
        f"已代持有人登记申诉 {appeal.id}(账号 a1,条目 {item.id}),处理期限 {deadline}"
    ]
    assert 'id="appeal-filed"' not in api.client.get("/console/appeals").text
    row = page.split(f'data-appeal="{appeal.id}"')[1].split("</tr>", maxsplit=1)[0]
    assert 'class="uphold" disabled' in row and TEXT["own_filing"][0] in row
    refused = api.client.post(
        f"/console/appeals/{appeal.id}/decision",
        data={"csrf": token, "action": "uphold", "once": "x" * 43},
    )
    assert refusal_of(refused.text) == TEXT["refusal.own_filing"][0]
    li_key = security.create_key(api.services.scoring.repository, "reviewer", owner="li")
    sent = api.client.post(
        f"/v1/appeals/{appeal.id}/decision",
        json={"action": "uphold"},
        headers=api.headers(li_key),
    )
    assert sent.status_code == 403 and "filed it" in sent.json()["detail"]
    assert review.get_appeal(appeal.id).status == "pending"
    api.client.cookies.clear()
    token = sign_in(api, "zhao")
    assert TEXT["own_filing"][0] not in api.client.get("/console/appeals").text
    # a link to li's filing confirms nothing to another user
    assert 'id="appeal-filed"' not in api.client.get(filed.headers["location"]).text
    upheld = api.client.post(
        f"/console/appeals/{appeal.id}/decision",
        data={"csrf": token, "action": "uphold"},
        follow_redirects=False,
    )
    assert upheld.status_code == 303
    assert review.get_appeal(appeal.id).status == "upheld"


def escalated_appeal(api: Api) -> views.Appeal:
    """The appeal of a1's rumour, escalated by li and confirmed by the admin wang."""
    review, policy = api.services.review, api.services.scoring.policy
    assert api.score({"id": "p1", "text": RUMOR, "account_id": "a1"}).status_code == 200
    api.settle()
    (item,) = review.list_items(policy).items
    review.decide(policy, item.id, "li", "escalate", None, None, "需要复核")
    review.decide(policy, item.id, "wang", "confirm", "rumor", "art18.6", role="admin")
    return review.file_appeal(policy, account_id="a1", item_id=item.id, reason="误判", filed_by="k")


def test_the_appeal_of_an_escalated_items_decision_is_offered_to_an_admin(api: Api) -> None:
    review = api.services.review
    appeal = escalated_appeal(api)

    def row(page: str) -> str:
        return page.split(f'data-appeal="{appeal.id}"')[1].split("</tr>", maxsplit=1)[0]

    def offered(page: str) -> bool:
        return re.search(r'class="(uphold|reject)" disabled', page) is None

    said = TEXT["escalated_appeal"]
    for name in ("li", "zhao"):  # the escalator, another reviewer
        api.client.cookies.clear()
        token = sign_in(api, name)
        page = api.client.get("/console/appeals").text
        assert not offered(row(page)) and said[0] in row(page), name
        # sent all the same, it is refused on the page, as the API's 403
        refused = api.client.post(
            f"/console/appeals/{appeal.id}/decision",
            data={"csrf": token, "action": "uphold", "once": "x" * 43},
        )
        assert refusal_of(refused.text) == TEXT["refusal.escalated_appeal"][0]
    api.client.get("/console/lang/en")
    assert said[1] in row(api.client.get("/console/appeals").text)
    assert review.get_appeal(appeal.id).status == "pending"
    api.client.cookies.clear()
    sign_in(api, "zhou", "admin")
    theirs = row(api.client.get("/console/appeals").text)
    assert offered(theirs) and said[0] not in theirs


def test_the_admin_who_decided_an_escalated_item_is_told_another_admin_resolves_its_appeal(
    api: Api,
) -> None:
    """Not "another reviewer": no reviewer may resolve it, so the admin who decided it is sent
    to another admin, on the row and in the refusal of a resolution sent all the same."""
    review = api.services.review
    appeal = escalated_appeal(api)
    token = sign_in(api, "wang", "admin")
    page = api.client.get("/console/appeals").text
    row = page.split(f'data-appeal="{appeal.id}"')[1].split("</tr>", maxsplit=1)[0]
    said = TEXT["own_escalated_decision"]
    assert 'class="uphold" disabled' in row and said[0] in row
    assert TEXT["own_decision"][0] not in row
    refused = api.client.post(
        f"/console/appeals/{appeal.id}/decision",
        data={"csrf": token, "action": "uphold", "once": "x" * 43},
    )
    assert refusal_of(refused.text) == TEXT["refusal.own_escalated_decision"][0]
    api.client.get("/console/lang/en")
    assert said[1] in api.client.get("/console/appeals").text
    assert review.get_appeal(appeal.id).status == "pending"


def test_a_cluster_timeline_that_lists_fewer_posts_than_the_cluster_holds_says_so(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = {"id": "src", "text": RUMOR, "account_id": "a1", "created_at": 1_700_000_000}
    copy = {"id": "copy", "text": RUMOR + "！", "account_id": "a2", "created_at": 1_700_000_600}
    assert api.score(first).status_code == 200 and api.score(copy).status_code == 200
    api.settle()
    sign_in(api, "li")
    items = api.services.review.list_items(api.services.scoring.policy).items
    (copied,) = [i for i in items if i.post_id == "copy"]
    # the live window holds both posts: all listed
    assert 'id="timeline-partial"' not in api.client.get(f"/console/items/{copied.id}").text

    def away(cluster_id: str) -> None:
        raise StoreUnavailableError("Error 111 connecting to 127.0.0.1:6379")

    # without it, the earliest post the record names is all there is to list
    monkeypatch.setattr(api.services.neardup, "cluster", away)
    page = api.client.get(f"/console/items/{copied.id}").text
    assert 'id="timeline-partial"' in page
    said = TEXT["timeline_partial"][0].format(size=2, shown=1)
    assert f'<p class="hint" id="timeline-partial">{said}</p>' in page
    api.client.get("/console/lang/en")
    page = api.client.get(f"/console/items/{copied.id}").text
    assert TEXT["timeline_partial"][1].format(size=2, shown=1).replace("'", "&#39;") in page


def test_a_key_of_a_console_user_is_that_person_in_the_separation_of_duty_checks(
    api: Api,
) -> None:
    """One person, two ways in: what wang escalates in the console or with wang's key, neither
    wang's key nor wang's session decides, and zhou's decision is not zhou's appeal to
    resolve, whichever way zhou comes, nor wang's; the records name the person. A key of
    nobody's acts as its key id, as before."""
    review, policy = api.services.review, api.services.scoring.policy
    repository = api.services.scoring.repository
    for i, text in enumerate((RUMOR, MILK, VIOLATIONS[0])):
        assert api.score({"id": f"p{i}", "text": text, "account_id": f"a{i}"}).status_code == 200
    api.settle()
    in_console, by_key, unowned = (item.id for item in review.list_items(policy).items)
    wang_key = security.create_key(repository, "admin", owner="wang")
    zhou_key = security.create_key(repository, "admin", owner="zhou")
    nobodys = api.new_key("admin")
    escalate = {"action": "escalate", "note": "需要法务看一下"}
    token = sign_in(api, "wang", "admin")
    escalated = api.client.post(
        f"/console/items/{in_console}/decision", data={"csrf": token, **escalate}
    )
    assert escalated.status_code == 200, escalated.text
    sent = api.client.post(
        f"/v1/review/items/{by_key}/decision", json=escalate, headers=api.headers(wang_key)
    )
    assert (sent.status_code, sent.json()["reviewer"]) == (200, "wang")
    said = "an escalated item goes to an admin other than the one who escalated it"
    for item_id in (in_console, by_key):
        url = f"/v1/review/items/{item_id}"
        for path, body in (("claim", None), ("decision", {"action": "dismiss"})):
            refused = api.client.post(f"{url}/{path}", json=body, headers=api.headers(wang_key))
            assert (refused.status_code, refused.json()["detail"]) == (403, said), (item_id, path)
    # the escalation made with wang's key is wang's in the console too: offered neither a
    # claim nor a decision, and refused one sent all the same
    assert 'id="escalated-by-you"' in api.client.get(f"/console/items/{by_key}").text
    refused_page = api.client.post(
        f"/console/items/{by_key}/decision", data={"csrf": token, "action": "dismiss"}
    )
    assert refusal_of(refused_page.text) == TEXT["refusal.escalated_by_you"][0]
    # zhou confirms one in the console, the other with zhou's key
    confirm = {"action": "confirm", "category": "rumor", "basis": "art18.6"}
    api.client.cookies.clear()
    token = sign_in(api, "zhou", "admin")
    api.client.post(f"/console/items/{in_console}/decision", data={"csrf": token, **confirm})
    decided = api.client.post(
        f"/v1/review/items/{by_key}/decision", json=confirm, headers=api.headers(zhou_key)
    )
    assert (decided.status_code, decided.json()["reviewer"]) == (200, "zhou")
    appeals = {
        item_id: review.file_appeal(
            policy, account_id=account, item_id=item_id, reason="误判", filed_by="k"
        ).id
        for item_id, account in ((in_console, "a0"), (by_key, "a1"))
    }
    # neither appeal is zhou's to resolve, with zhou's key or in the console: both items were
    # escalated, so another admin resolves them
    for appeal_id in appeals.values():
        url = f"/v1/appeals/{appeal_id}/decision"
        own = api.client.post(url, json={"action": "uphold"}, headers=api.headers(zhou_key))
        assert (own.status_code, own.json()["detail"]) == (
            403,
            "the appealed decision was taken on an escalated item: an admin (role 'admin') "
            "other than the one who decided resolves its appeal",
        )
        page = api.client.post(
            f"/console/appeals/{appeal_id}/decision", data={"csrf": token, "action": "uphold"}
        )
        assert refusal_of(page.text) == TEXT["refusal.own_escalated_decision"][0]
    # nor wang's, who escalated both: a third admin resolves the one zhou decided with a key
    url = f"/v1/appeals/{appeals[by_key]}/decision"
    escalators = api.client.post(url, json={"action": "reject"}, headers=api.headers(wang_key))
    assert escalators.status_code == 403 and "item you escalated" in escalators.json()["detail"]
    zhao_key = security.create_key(repository, "admin", owner="zhao")
    resolved = api.client.post(url, json={"action": "reject"}, headers=api.headers(zhao_key))
    assert (resolved.status_code, resolved.json()["resolved_by"]) == (200, "zhao")
    records = [
        (entry.kind, entry.payload["reviewer"])
        for entry in review.audit_entries()
        if entry.kind in ("review.decision", "appeal.decision")
    ]
    assert records == [
        ("review.decision", "wang"),
        ("review.decision", "wang"),
        ("review.decision", "zhou"),
        ("review.decision", "zhou"),
        ("appeal.decision", "zhao"),
    ]
    # a key of nobody's is its key id: its escalation is another's than wang's to decide
    nobody = nobodys.split("_")[1]
    url = f"/v1/review/items/{unowned}/decision"
    sent = api.client.post(url, json=escalate, headers=api.headers(nobodys))
    assert (sent.status_code, sent.json()["reviewer"]) == (200, nobody)
    again = api.client.post(url, json={"action": "dismiss"}, headers=api.headers(nobodys))
    assert (again.status_code, again.json()["detail"]) == (403, said)
    taken = api.client.post(url, json={"action": "dismiss"}, headers=api.headers(wang_key))
    assert (taken.status_code, taken.json()["reviewer"]) == (200, "wang")


OPEN_PAGES = {
    ("GET", "/console/"),
    ("GET", "/console/login"),
    ("POST", "/console/login"),
    ("POST", "/console/logout"),
    ("GET", "/console/lang/{language}"),
    ("GET", "/console/keys/{keys}"),
}
"""The console's addresses a browser without a session may use (docs/console.md): the sign-in
page, signing out, the language switch, the shortcut keys' switch, and the redirect to the
queue."""
ADMIN_PAGES = {
    ("GET", "/console/bank"),
    ("POST", "/console/bank"),
    ("POST", "/console/bank/{rumor_id}/delete"),
    ("GET", "/console/dashboard"),
}
"""The admin's alone (docs/console.md); every other page is the trust team's."""


def console_routes(api: Api) -> dict[tuple[str, str], str]:
    """Each console route, by method and path, with an address of it (path values filled)."""
    app = api.client.app
    assert isinstance(app, FastAPI)
    filled = {"language": "en", "keys": "off"}
    return {
        (method, path): re.sub(r"\{([a-z_]+)\}", lambda m: filled.get(m.group(1), "1"), path)
        for method, path, _ in routes(app)
        if path.startswith("/console")
    }


def test_every_console_page_needs_a_session_of_its_role_and_every_form_its_token(
    api: Api,
) -> None:
    found = console_routes(api)
    assert set(found) >= OPEN_PAGES | ADMIN_PAGES
    for (method, path), url in found.items():
        if (method, path) in OPEN_PAGES:
            continue
        answer = api.client.request(method, url, follow_redirects=False)
        assert answer.status_code == 303, (method, path)
        assert answer.headers["location"].startswith("/console/login"), (method, path)
    reviewer = sign_in(api, "li")
    for (method, path), url in found.items():
        if (method, path) in OPEN_PAGES:
            continue
        sent = {"csrf": reviewer} if method == "POST" else None
        answer = api.client.request(method, url, data=sent, follow_redirects=False)
        assert (answer.status_code == 403) == ((method, path) in ADMIN_PAGES), (method, path)
    api.client.cookies.clear()
    admin = sign_in(api, "wang", "admin")
    posts = [(path, url) for (method, path), url in found.items() if method == "POST"]
    for path, url in posts:
        for token in (None, "0" * 64, reviewer):
            sent = {} if token is None else {"csrf": token}
            answer = api.client.post(url, data=sent, follow_redirects=False)
            assert answer.status_code == 403, (path, token)
    for path in ("/console/bank", "/console/dashboard"):
        assert api.client.get(path).status_code == 200
    # still signed in: no form above was taken without its token, signing out among them
    assert api.client.get("/console/queue").status_code == 200
    assert csrf_of(api.client.get("/console/queue").text) == admin


def test_a_form_over_the_body_limit_gets_the_consoles_page_in_its_language(api: Api) -> None:
    """A form the edge refuses unread (service/api/edge.py) is answered as the console answers,
    not with the JSON API's body: whoever pasted too much reads why, in the page's language, on
    a page with the console's headers, still signed in."""
    token = sign_in(api, "li")
    limit = api.services.settings.max_body_bytes
    form = {"csrf": token, "account_id": "a1", "item_id": "1", "reason": "申" * (limit // 3)}
    for language in ("zh", "en"):
        api.client.get(f"/console/lang/{language}")
        t = translator(language)
        refused = api.client.post("/console/appeals", data=form)
        assert refused.status_code == 413, language
        assert refused.headers["content-type"].startswith("text/html"), language
        assert refused.headers["connection"] == "close", language
        assert "frame-ancestors 'none'" in refused.headers["content-security-policy"], language
        assert refused.headers.get_list("cache-control") == ["no-store"], language
        assert refused.headers.get_list("x-content-type-options") == ["nosniff"], language
        assert t("body_too_large") in refused.text, language
        assert t("body_too_large_limit").format(limit=f"{limit:,}") in refused.text, language
    assert api.client.get("/console/appeals").status_code == 200
    # the JSON API's answer to the same body is its own
    api_refused = api.client.post("/v1/appeals", data=form, headers=api.headers())
    assert api_refused.status_code == 413
    assert api_refused.json() == {"detail": f"request body is over the limit of {limit} bytes"}


def test_a_form_that_stops_arriving_gets_the_consoles_page_in_its_language(
    tmp_path: Path, pipeline: Pipeline
) -> None:
    url = f"sqlite:///{tmp_path / 'q.db'}"
    body = b"csrf=0&name=li&password=" + b"x" * 64
    with (
        listening(tmp_path, url, pipeline.classifier, body_read_timeout_s=0.5) as (port, _),
        socket.create_connection(("127.0.0.1", port)) as connection,
    ):
        connection.settimeout(60)  # not a measure: a server that waits fails the test
        connection.sendall(
            b"POST /console/login HTTP/1.1\r\nHost: qinglang\r\nCookie: ql_lang=en\r\n"
            + b"Content-Type: application/x-www-form-urlencoded\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body[: len(body) // 2]
        )
        answer = b""
        while chunk := connection.recv(65536):  # until the server closes the connection
            answer += chunk
    head, _, page = answer.partition(b"\r\n\r\n")
    status, *headers = head.decode().split("\r\n")
    assert status == "HTTP/1.1 408 Request Timeout"
    fields = {name.lower(): value for name, value in (h.split(": ", 1) for h in headers)}
    assert fields["connection"] == "close"
    assert fields["content-type"].startswith("text/html")
    assert "frame-ancestors 'none'" in fields["content-security-policy"]
    t = translator("en")
    assert t("body_too_slow") in page.decode()
    assert t("body_too_slow_limit").format(seconds="0.5") in page.decode()


def test_the_session_cookie_is_http_only_strict_and_secure_where_the_console_is_on_https(
    api: Api,
) -> None:
    """``Secure`` wherever the request came over HTTPS (as uvicorn reads it, behind a proxy in
    ``FORWARDED_ALLOW_IPS`` from its ``X-Forwarded-Proto``), ``console_secure_cookie`` or not:
    a cookie without it would be sent in the clear to any ``http://`` address of the host."""
    for scheme in ("http", "https"):
        api.client.cookies.clear()
        page = api.client.get(f"{scheme}://testserver/console/login")
        cookie = page.headers["set-cookie"]
        flags = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
        assert cookie.startswith(f"{COOKIE}=")
        assert {"httponly", "samesite", "path"} <= flags
        assert "samesite=strict" in cookie.lower()
        assert ("secure" in flags) == (scheme == "https"), scheme
    password = create_user(api.services.scoring.repository, "li", "reviewer")
    before = api.client.cookies.get(COOKIE)
    token = csrf_of(page.text)
    signed = api.client.post(
        "https://testserver/console/login",
        data={"csrf": token, "name": "li", "password": password},
        follow_redirects=False,
    )
    assert signed.status_code == 303
    assert "secure" in signed.headers["set-cookie"].lower()
    # a new session at sign-in: the sign-in page's token, which another could have planted
    # with its cookie, is worth nothing after it
    after = api.client.cookies.get(COOKIE)
    assert after is not None and after != before
    planted = api.client.post(
        "https://testserver/console/items/1/claim", data={"csrf": token}, follow_redirects=False
    )
    assert planted.status_code == 403


def test_a_page_opened_from_another_site_is_asked_again_and_sets_no_cookie(api: Api) -> None:
    """The browser sends the ``SameSite=Strict`` session cookie with no request another site
    starts: such a page, the sign-in page's included, is asked for again by the console's own
    page, and sets no cookie, which would take the place of the browser's session."""
    for path in ("/console/items/1?cursor=x", "/console/login?next=%2Fconsole%2Fappeals"):
        api.client.cookies.clear()
        page = api.client.get(path, headers={"Sec-Fetch-Site": "cross-site"})
        assert page.status_code == 200 and "set-cookie" not in page.headers, path
        assert '<meta http-equiv="refresh" content="0">' in page.text, path
        assert f'<a href="{escape(path)}">' in page.text, path
        assert page.headers["cache-control"] == "no-store", path
        # the console's own request is answered as ever
        own = api.client.get(path, headers={"Sec-Fetch-Site": "same-origin"})
        assert own.url.path == "/console/login" and "set-cookie" in own.headers, path
    # an address of no page (a link mistyped, or to a page since gone) draws no session either
    api.client.cookies.clear()
    missing = api.client.get("/console/nope", headers={"Sec-Fetch-Site": "cross-site"})
    assert missing.status_code == 404 and "set-cookie" not in missing.headers


def test_pages_with_personal_data_are_not_kept_framed_or_sniffed(api: Api) -> None:
    assert api.score({"id": "p1", "text": RUMOR, "account_id": "a1"}).status_code == 200
    sign_in(api, "li")
    item = re.findall(r'data-item="(\d+)"', api.client.get("/console/queue").text)[0]
    for url in ("/console/login", "/console/queue", f"/console/items/{item}", "/console/nowhere"):
        page = api.client.get(url)
        assert page.headers["cache-control"] == "no-store", url
        assert page.headers["x-content-type-options"] == "nosniff", url
        assert page.headers["referrer-policy"] == "same-origin", url
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"], url
        # the same for a browser that reads no CSP's frame-ancestors
        assert page.headers["x-frame-options"] == "DENY", url


@dataclass
class Node:
    """An element of a page as :class:`Tree` reads it."""

    tag: str
    attrs: dict[str, str]
    parent: Node | None = None
    children: list[Node | str] = field(default_factory=list)

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def walk(self) -> Iterator[Node]:
        yield self
        for child in self.children:
            if isinstance(child, Node):
                yield from child.walk()

    def up(self) -> Iterator[Node]:
        node = self.parent
        while node is not None:
            yield node
            node = node.parent

    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())


class Tree(HTMLParser):
    """A page's elements as a tree (the console's templates close what they open; an end tag
    closes whatever it left open inside)."""

    def __init__(self) -> None:
        super().__init__()
        self.root = Node("#document", {})
        self.at = self.root

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs}, self.at)
        self.at.children.append(node)
        if tag not in HTML_VOID:
            self.at = node

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.at.children.append(Node(tag, {k: v or "" for k, v in attrs}, self.at))

    def handle_endtag(self, tag: str) -> None:
        for node in [self.at, *self.at.up()]:
            if node.tag == tag and node.parent is not None:
                self.at = node.parent
                return

    def handle_data(self, data: str) -> None:
        self.at.children.append(data)


def tree_of(html: str) -> Node:
    tree = Tree()
    tree.feed(html)
    return tree.root


HTML_VOID = frozenset({"br", "hr", "img", "input", "link", "meta", "wbr"})
"""The elements that have no end tag (an SVG element without one closes itself: ``/>``)."""
FIELDS = frozenset({"input", "select", "textarea"})


def focusable(node: Node) -> bool:
    """Whether Tab reaches ``node``, as far as its markup says (none of the console's pages
    hides one with its stylesheet but the ``j`` key's link, which has a class that does)."""
    a = node.attrs
    if "hidden" in a or "disabled" in a or "hidden-link" in node.classes():
        return False
    if a.get("tabindex", "0").lstrip("-").isdigit() and int(a.get("tabindex", "0")) < 0:
        return False
    if node.tag == "a":
        return "href" in a
    if node.tag in FIELDS:
        return a.get("type") != "hidden"
    return node.tag == "button" or "tabindex" in a


def page_problems(nodes: list[Node], lang: str) -> list[str]:
    """What the page as a whole fails: its language, the language switch's, its headings (one
    h1, first; none a level deeper than the one before it), the skip link as the keyboard's
    first stop, to a main that takes the focus it moves."""
    problems: list[str] = []
    (page,) = [n for n in nodes if n.tag == "html"]
    if page.attrs.get("lang") != lang:
        problems.append(f"html lang={page.attrs.get('lang')!r}, not {lang!r}")
    switch = [n for n in nodes if n.tag == "a" and "/console/lang/" in n.attrs.get("href", "")]
    other = "en" if lang == "zh-CN" else "zh-CN"
    if [n.attrs.get("lang") for n in switch] != [other]:
        problems.append(f"the language switch is not marked as {other}")
    levels = [int(n.tag[1]) for n in nodes if re.fullmatch(r"h[1-6]", n.tag)]
    if levels.count(1) != 1 or levels[0] != 1:
        problems.append(f"headings {levels}: one h1, first")
    problems += [f"h{b} after h{a}" for a, b in itertools.pairwise(levels) if b > a + 1]
    stops = [n for n in nodes if focusable(n)]
    if not stops or stops[0].attrs.get("href") != "#main":
        problems.append("the first focusable element is no skip link to #main")
    mains = [n for n in nodes if n.tag == "main"]
    if [(m.attrs.get("id"), m.attrs.get("tabindex")) for m in mains] != [("main", "-1")]:
        problems.append("no one main with id main that takes the focus")
    return problems


def control_problems(node: Node, ids: set[str], labelled: set[str]) -> list[str]:
    """What a control or a reference fails: a field without a label, a button without a name,
    a link that is none, a place in the tab order out of the reading order, a reference to no
    element, a field marked invalid without saying why."""
    a, said = node.attrs, " ".join(node.text().split())
    where = f"<{node.tag} {a}>"
    problems = [
        f"{where} names no {i!r}"
        for ref in ("aria-describedby", "aria-labelledby")
        for i in a.get(ref, "").split()
        if i not in ids
    ]
    if a.get("tabindex", "0").isdigit() and int(a.get("tabindex", "0")) > 0:
        problems.append(f"{where} jumps the tab order")
    if "aria-invalid" in a and "aria-describedby" not in a:
        problems.append(f"{where} is invalid without saying why")
    named = a.get("aria-label") or a.get("aria-labelledby") or a.get("id") in labelled
    in_label = any(up.tag == "label" for up in node.up())
    if node.tag in FIELDS and a.get("type") != "hidden" and not (named or in_label):
        problems.append(f"{where} has no label")
    if node.tag == "button" and "hidden" not in a and not (said or a.get("aria-label")):
        problems.append(f"{where} has no name")
    if node.tag == "a" and ("href" not in a or not said or a.get("role") == "button"):
        problems.append(f"{where} is no link")
    return problems


def shown_problems(node: Node) -> list[str]:
    """What a table, a plot or a mark fails: a header cell without scope or words, a table
    outside a named box of its own that scrolls it, a plot without its name and values in
    text, a badge or a row's colour that says what no words say."""
    a, said = node.attrs, " ".join(node.text().split())
    where = f"<{node.tag} {a}>"
    problems = []
    if node.tag == "th" and (a.get("scope") not in ("col", "row") or not said):
        problems.append(f"{where} is a header cell without scope or words")
    box = node.parent.attrs if node.parent else {}
    boxed = "table-scroll" in box.get("class", "").split() and box.get("tabindex") == "0"
    if node.tag == "table" and not (
        boxed and box.get("role") == "region" and box.get("aria-label")
    ):
        problems.append(f"{where} is in no named box that scrolls it")
    parts = {c.tag: c.text().strip() for c in node.children if isinstance(c, Node)}
    plot = node.tag == "svg" and a.get("role") == "img"
    if plot and not (a.get("aria-label") and parts.get("title") and parts.get("desc")):
        problems.append(f"{where} has no name and description in text")
    if "badge" in node.classes() and not said:
        problems.append(f"{where} is a badge without words")
    badged = any("overdue-badge" in n.classes() and n.text() for n in node.walk())
    if node.tag == "tr" and "overdue" in node.classes() and not badged:
        problems.append(f"{where} is overdue in colour alone")
    if node.tag == "tr" and "flag" in node.classes() and not said.endswith(TEXT["flagged"]):
        problems.append(f"{where} is flagged in colour alone")
    return problems


def access_problems(html: str, lang: str) -> list[str]:
    """What a page fails of the console's accessibility checks (docs/console.md,
    "Accessibility"), each said with the element it is about."""
    nodes = list(tree_of(html).walk())
    listed = [n.attrs["id"] for n in nodes if "id" in n.attrs]
    ids = set(listed)
    labelled = {n.attrs["for"] for n in nodes if n.tag == "label" and "for" in n.attrs}
    problems = page_problems(nodes, lang)
    problems += [f"id {i!r} twice" for i in ids if listed.count(i) > 1]
    for node in nodes:
        problems += control_problems(node, ids, labelled) + shown_problems(node)
    return problems


def test_every_console_page_passes_the_accessibility_checks_in_either_language(
    api: Api,
) -> None:
    """Every page, with items of every kind and an appeal waiting, read as a screen reader and
    a keyboard meet it: labels, language, headings, header cells, the skip link, the plots'
    text, the tables' own scrolling boxes, marks said in words (docs/console.md)."""
    policy, review = api.services.scoring.policy, api.services.review
    found = every_kind(api)
    confirmed = review.list_items(policy, status="confirmed").items
    (charged, *_) = [i for i in confirmed if i.account_id == "bad"]
    review.file_appeal(policy, account_id="bad", item_id=charged.id, reason="误判", filed_by="k")
    review.file_report(
        policy,
        post_id="old",
        account_id="a9",
        category="rumor",
        text_="举报",
        reporter="test",
        now=datetime.now(UTC) - timedelta(days=4),
    )
    login = api.client.get("/console/login").text
    paths = [
        "/console/queue",
        "/console/queue?status=confirmed",
        "/console/appeals",
        "/console/appeals?status=all",
        "/console/reports",
        "/console/bank",
        "/console/dashboard",
        "/console/items/999",
        *(f"/console/items/{i.id}" for i in found.values()),
    ]
    sign_in(api, "li", "admin")
    for lang in ("zh-CN", "en"):
        pages = {path: api.client.get(path).text for path in paths}
        assert 'class="overdue' in pages["/console/reports"]
        assert 'name="note" size="10"' in pages["/console/appeals"]
        assert "<svg" in pages["/console/dashboard"] and "<th" in pages["/console/bank"]
        for path, page in pages.items():
            assert access_problems(page, lang) == [], (lang, path)
        api.client.get("/console/lang/en")
    assert access_problems(login, "zh-CN") == []


def test_a_refused_forms_fields_are_described_by_why_and_those_it_names_marked_invalid(
    api: Api,
) -> None:
    """A screen reader meets the refusal in the field: each field of the refused form is
    described by it (a rule's refusal is the form's as a whole), those the request model
    refused marked invalid; the other forms' fields are not."""
    assert api.score({"id": "p1", "text": RUMOR, "account_id": "a1"}).status_code == 200
    token = sign_in(api, "li")
    item_id = int(re.findall(r'data-item="(\d+)"', api.client.get("/console/queue").text)[0])
    refused = api.client.post(
        f"/console/items/{item_id}/decision",
        data={"csrf": token, "action": "confirm", "category": "rumor", "basis": "", "note": "n"},
    ).text
    assert access_problems(refused, "zh-CN") == []
    nodes = {n.attrs["id"]: n for n in tree_of(refused).walk() if "id" in n.attrs}
    why = nodes["decision-form-error"]
    assert why.attrs["role"] == "alert" and why.attrs["tabindex"] == "-1"
    assert why.text() == "依据条款: 确认违规时必填"
    assert {
        name: (nodes[name].attrs.get("aria-describedby"), nodes[name].attrs.get("aria-invalid"))
        for name in ("category", "basis", "note")
    } == {
        "category": ("decision-form-error", None),
        "basis": ("decision-form-error", "true"),
        "note": ("decision-form-error", None),
    }
    unrefused = tree_of(api.client.get(f"/console/items/{item_id}").text).walk()
    fields = [n.attrs for n in unrefused if n.tag in FIELDS]
    assert fields and not any("aria-describedby" in a or "aria-invalid" in a for a in fields)
    # a rule's refusal: an appeal of an item never confirmed names no field
    appeal = {"csrf": token, "account_id": "a1", "item_id": str(item_id), "reason": "误判"}
    ruled = api.client.post("/console/appeals", data=appeal)
    assert ruled.status_code == 409 and access_problems(ruled.text, "zh-CN") == []
    described = [n.attrs for n in tree_of(ruled.text).walk() if "aria-describedby" in n.attrs]
    assert [(a["name"], a["aria-describedby"]) for a in described] == [
        ("account_id", "file-appeal-error"),
        ("item_id", "file-appeal-error"),
        ("reason", "file-appeal-error"),
    ]
    assert not any("aria-invalid" in a for a in described)


def test_the_pages_run_as_many_statements_for_many_rows_as_for_one(
    tmp_path: Path, database_url: str, pipeline: Pipeline
) -> None:
    """The queue, an item's page (the account's other items and their decisions) and the
    appeals page (who decided and who filed each) read a page of rows in a fixed number of
    statements, whatever the rows: none runs one per row (docs/console.md, "Console
    speed")."""
    # the process's maintenance and rumour-bank refresh read storage in the background: once
    # at start-up, then not again within the test, so that a page's count is its own
    with open_api(
        tmp_path,
        database_url,
        pipeline.classifier,
        storage_retry_s=3600,
        neardup_bank_refresh_s=3600,
    ) as api:
        counted_pages(api)


def counted_pages(api: Api) -> None:
    review, policy = api.services.review, api.services.scoring.policy
    sign_in(api, "zhao", "admin")
    kinds: tuple[Kind, ...] = ("score", "report", "bank_match", "cluster", "engagement")

    def add(n: int) -> list[int]:
        made: list[int] = []
        for k in range(n):
            item = review.enqueue(
                policy,
                kind=kinds[k % len(kinds)],
                merge_key=f"count:{len(made)}:{uuid4()}",
                head="rumor",
                severity="review",
                reach=k,
                evidence={},
                post_id=f"p-{uuid4()}",
                account_id="a1",
                text_=PLAIN,
            )
            review.decide(policy, item.id, "wang", "escalate", None, None, note="再看")
            review.decide(policy, item.id, "zhao", "confirm", "rumor", "art18.6", role="admin")
            review.file_appeal(
                policy, account_id="a1", item_id=item.id, reason="误判", filed_by=api.key
            )
            made.append(item.id)
        return made

    def statements(path: str) -> int:
        api.client.get(path)  # what a process reads once (a kept policy) read here
        heard: list[str] = []

        def hear(*args: Any) -> None:
            # the reads: a connection's set-up (a pragma, a timeout) comes as the pool opens one
            if args[2].lstrip().upper().startswith("SELECT"):
                heard.append(args[2])

        # every engine's: the console's reads and the repository's
        sa.event.listen(sa.Engine, "before_cursor_execute", hear)
        try:
            assert api.client.get(path).status_code == 200
        finally:
            sa.event.remove(sa.Engine, "before_cursor_execute", hear)
        return len(heard)

    paths = ("/console/queue?status=confirmed", "/console/appeals")
    # the second item's page lists the first among the account's others
    few = add(2)[-1]
    one = [statements(p) for p in (*paths, f"/console/items/{few}")]
    last = add(12)[-1]
    many = [statements(p) for p in (*paths, f"/console/items/{last}")]
    assert many == one
