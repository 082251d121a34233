"""The web console as a person uses it: headless Chromium (Debian's ``chromium``, driven by
Playwright) against a real uvicorn server on a free port, on a SQLite file and on the real
PostgreSQL server (one browser for both).

Screenshots of the queue, an item and the dashboard are written to
``artifacts/screenshots/{sqlite,postgresql}/`` (git ignores it; CI keeps it); ``make screenshots``
copies the SQLite run's over ``docs/screenshots/``, which docs/console.md shows."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import httpx2 as httpx
import pytest
import uvicorn
from playwright.sync_api import (
    Browser,
    Dialog,
    Locator,
    Page,
    Request,
    Route,
    expect,
    sync_playwright,
)
from servicekit import write_policy
from sqlalchemy import update
from sqlalchemy.engine import make_url

from service.api.app import create_app
from service.api.state import Services
from service.neardup import NearDuplicates
from service.pipeline import Pipeline
from service.policy import load_policy
from service.review import views
from service.security import create_key, create_user
from service.settings import Settings
from service.storage import SqlRepository, upgrade
from service.storage.tables import ReviewItem

CHROMIUM = Path("/usr/bin/chromium")
ELSEWHERE = "http://elsewhere.test"
"""Another site, whose pages a test makes up (``Page.route``)."""
SHOTS = Path(__file__).resolve().parent.parent / "artifacts" / "screenshots"
RUMOR = "紧急扩散！明天起全市停水三天，自来水厂已被污染，赶紧囤水，转给家人！"
SCRIPT_POST = "<script>alert(1)</script>"
IMG_POST = '转发"><img src=x onerror=window.__xss=1>看看'


@dataclass
class Console:
    url: str
    services: Services
    publisher: str
    passwords: dict[str, str]
    shots: Path
    """Where this run's screenshots go: a folder per database."""

    def api(self, method: str, path: str, **kwargs: object) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.publisher}"}
        return httpx.request(method, f"{self.url}{path}", headers=headers, timeout=30, **kwargs)  # type: ignore[arg-type]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def console(tmp_path: Path, pipeline: Pipeline, database_url: str) -> Iterator[Console]:
    upgrade(database_url)
    policy = write_policy(tmp_path / "policy.toml")
    settings = Settings(state_dir=tmp_path / "state", database_url=database_url, policy_file=policy)
    rules = load_policy(policy)
    app = create_app(
        settings,
        Pipeline(pipeline.classifier, rules, NearDuplicates.from_settings(settings, rules)),
    )
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    services: Services = app.state.services
    repository = services.scoring.repository
    passwords = {
        "li": create_user(repository, "li", "reviewer"),
        "wang": create_user(repository, "wang", "admin"),
    }
    try:
        yield Console(
            f"http://127.0.0.1:{port}",
            services,
            create_key(repository, "publisher"),
            passwords,
            SHOTS / make_url(database_url).get_backend_name(),
        )
    finally:
        server.should_exit = True
        thread.join(30)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert CHROMIUM.exists(), "Debian's chromium is needed: apt-get install chromium (.ci/run)"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        yield launched
        launched.close()


def sign_in(page: Page, console: Console, name: str) -> None:
    page.goto(f"{console.url}/console/login")
    page.fill("#name", name)
    page.fill("#password", console.passwords[name])
    page.click("#sign-in")
    expect(page).to_have_url(re.compile(r"/console/queue$"))


def sign_out(page: Page) -> None:
    page.click("#logout")
    expect(page).to_have_url(re.compile(r"/console/login$"))


def shoot(page: Page, console: Console, name: str) -> None:
    console.shots.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(console.shots / f"{name}.png"), full_page=True)


def seed(console: Console) -> None:
    # the account reaches many people, so its post tops the queue
    reach = console.api("PUT", "/v1/accounts/acc1", json={"followers": 1_000_000})
    assert reach.status_code == 200
    for post_id, text, account in [
        ("p1", RUMOR, "acc1"),
        ("x1", SCRIPT_POST, "accx"),
        ("x2", IMG_POST, "accx"),
    ]:
        post = {"id": post_id, "text": text, "account_id": account}
        scored = console.api("POST", "/v1/score", json=post)
        assert scored.status_code == 200, scored.text


def press_enter_in(page: Page, field: Locator, typed: str) -> None:
    """Type ``typed`` in ``field`` and press Enter, as someone who has finished typing would:
    the page stays as it is."""
    here = page.url
    field.fill(typed)
    field.press("Enter")
    page.wait_for_timeout(1000)  # a submitted form would be answered well within this
    page.wait_for_load_state()
    assert page.url == here
    expect(field).to_have_value(typed)
    field.blur()  # so that the keys that follow are shortcuts, not typing


def decide_by_keyboard(page: Page, key: str) -> None:
    """A decision's key moves the focus to its button, which Enter presses."""
    page.keyboard.press(key)
    page.keyboard.press("Enter")


def confirm_by_keyboard(page: Page) -> None:
    """Key ``y`` moves the focus to the confirmation's button and sends nothing; Enter presses
    it, as a click would, which opens its dialog, sending nothing either, the keyboard on the
    dialog's own button; Enter there sends it."""
    here, sent = page.url, []

    def posted(request: Request) -> None:
        if request.method == "POST":
            sent.append(request.url)

    page.on("request", posted)
    page.keyboard.press("y")
    expect(page.locator("#confirm")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("#confirm-dialog")).to_be_visible()
    expect(page.locator("#confirm-send")).to_be_focused()
    page.wait_for_timeout(300)  # a form sent by the keys would be on its way by now
    page.remove_listener("request", posted)
    assert sent == [] and page.url == here
    page.keyboard.press("Enter")


def confirm_top_item(page: Page, console: Console) -> str:
    """Open the queue's top item, see its evidence, claim and confirm it; its address."""
    top = page.locator("table.queue tbody tr").first
    expect(top).to_contain_text("acc1")
    top.locator("a.open-item").click()
    item_url = page.url
    # the evidence spans are added after the publish path answered: wait for them
    for _ in range(60):
        if page.locator("#post-text mark.span").count():
            break
        time.sleep(0.5)
        page.reload()
    span = page.locator("#post-text mark.span").first
    expect(span).to_be_visible()
    assert span.inner_text() in RUMOR
    expect(page.locator("blockquote.article").first).to_contain_text("第")
    expect(page.locator("#credit")).to_have_text("100")
    shoot(page, console, "item")
    page.keyboard.press("c")  # claim
    expect(page.locator("p.meta")).to_contain_text("li")
    page.select_option("#category", "rumor")
    # Enter in the confirmation's fields confirms nothing: only its button does
    item_id = int(item_url.rsplit("/", 1)[1])
    # the article is offered as the page names articles, and confirmed on as it stands
    expect(page.locator("#basis")).to_have_value("第十八条第六项")
    press_enter_in(page, page.locator("#note"), "已核实")
    press_enter_in(page, page.locator("#basis"), page.locator("#basis").input_value())
    held = console.services.review.get_item(console.services.scoring.policy, item_id)
    assert held.status == "open"
    # a confirmation without its article is refused: the form comes back with the note typed
    basis = page.locator("#basis").input_value()
    page.fill("#basis", "")
    page.locator("#basis").blur()
    confirm_by_keyboard(page)
    expect(page.locator("#decision-form .error")).to_have_text("依据条款: 确认违规时必填")
    # the keyboard is on why, so that a screen reader reads it; the field it names says so
    expect(page.locator("#decision-form .error")).to_be_focused()
    expect(page.locator("#basis")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#note")).to_have_value("已核实")
    expect(page.locator("#category")).to_have_value("rumor")
    page.fill("#basis", basis)
    page.locator("#basis").blur()
    confirm_by_keyboard(page)  # the next item opens
    expect(page).not_to_have_url(item_url)
    return item_url


def dismiss_hostile_posts(page: Page, alerts: list[str]) -> None:
    """The next items are the hostile posts: they show as text, and nothing runs."""
    seen = set()
    for _ in range(2):
        here = page.url
        seen.add(page.locator("#post-text").inner_text())
        assert page.locator("#post-text img, #post-text script").count() == 0
        assert page.evaluate("window.__xss === undefined") and alerts == []
        decide_by_keyboard(page, "d")
        expect(page).not_to_have_url(here)
    assert seen == {SCRIPT_POST, IMG_POST}


def overdue_report_stands_out(page: Page, console: Console) -> None:
    for i, text in enumerate(
        ["据说某地疫苗有毒，千万别打，快转发！", "这家店老板就是骗子，大家去砸了它"]
    ):
        post = {"id": f"n{i}", "text": text, "account_id": f"acc{i + 3}"}
        assert console.api("POST", "/v1/score", json=post).status_code == 200
    console.services.review.file_report(
        console.services.scoring.policy,
        post_id="old",
        account_id="acc2",
        category="rumor",
        # a link pasted whole: one run of 600 characters without a space
        text_="<b>举报</b> https://t.cn/" + "A" * 600,
        reporter="test",
        now=datetime.now(UTC) - timedelta(days=4),
    )
    page.goto(f"{console.url}/console/queue")
    expect(page.locator("tr.overdue .overdue-badge")).to_be_visible()
    expect(page.locator("table.queue tbody tr")).to_have_count(3)
    shoot(page, console, "queue")
    page.goto(f"{console.url}/console/reports")
    expect(page.locator("tr.overdue")).to_contain_text("<b>举报</b>")
    # the text wraps: the page no wider than the window, its deadline's mark in sight
    wide = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert wide <= 0, f"the reports page is {wide} px wider than the window"
    expect(page.locator("tr.overdue .overdue-badge")).to_be_in_viewport()


def appeal_is_filed(page: Page, console: Console, item_url: str) -> None:
    """Filed on the holder's behalf by the reviewer who confirmed, who resolves it not."""
    page.goto(f"{console.url}/console/appeals")
    page.fill("#appeal-account", "acc1")
    page.fill("#appeal-item", item_url.rsplit("/", 1)[1])
    page.fill("#appeal-reason", "已辟谣,属误判")
    page.click("#file-appeal button")
    row = page.locator("tr[data-appeal]").first
    expect(row.locator("[data-status]")).to_have_text("待处理")
    expect(row.locator("button.uphold")).to_be_disabled()


def appeal_is_upheld(page: Page, console: Console, item_url: str) -> None:
    """Upheld by another person than the one who confirmed and filed it: credit comes back."""
    page.goto(f"{console.url}/console/appeals")
    row = page.locator("tr[data-appeal]").first
    expect(row.locator("[data-status]")).to_have_text("待处理")
    # Enter in the note upholds nothing: only the Uphold and Reject buttons decide
    press_enter_in(page, row.locator("input[name=note]"), "已辟谣")
    assert console.services.review.list_appeals(status="pending").pending == 1
    expect(row.locator("[data-status]")).to_have_text("待处理")
    row.locator("button.uphold").click()
    # the page lists the pending appeals; the upheld one is under its status
    expect(page.locator("#pending-count")).to_contain_text("0")
    page.select_option("#appeal-status", "upheld")
    page.click("#appeal-filter")
    upheld = page.locator("tr[data-appeal]").first.locator("[data-status]")
    expect(upheld).to_have_attribute("data-status", "upheld")
    expect(upheld).to_contain_text("申诉成立")
    page.goto(item_url)
    expect(page.locator("#credit")).to_have_text("100")
    expect(page.locator('#dispositions [data-kind="warning"]')).to_have_count(0)


def bank_and_dashboard(page: Page, console: Console) -> None:
    page.goto(f"{console.url}/console/bank")
    page.fill("#rumor-text", RUMOR)
    page.fill("#rumor-notice", "自来水厂已辟谣:水质正常。")
    page.click("#add-rumor button")
    expect(page.locator("tr[data-rumor]")).to_have_count(1)
    page.locator("tr[data-rumor] button.remove").click()
    expect(page.locator("tr[data-rumor]")).to_have_count(0)
    page.goto(f"{console.url}/console/dashboard")
    assert page.locator("svg.plot").count() >= 5
    expect(page.locator("svg.plot line.threshold").first).to_be_attached()
    shoot(page, console, "dashboard")


def test_review_confirm_appeal_and_roles_in_a_browser(console: Console, browser: Browser) -> None:
    seed(console)
    page = browser.new_page(viewport={"width": 1366, "height": 900})
    alerts: list[str] = []

    def dialog(opened: Dialog) -> None:
        alerts.append(opened.message)
        opened.dismiss()

    page.on("dialog", dialog)

    # signed out: every console page sends the browser to sign in, and back there after
    page.goto(f"{console.url}/console/queue")
    expect(page).to_have_url(re.compile(r"/console/login\?next=%2Fconsole%2Fqueue$"))
    page.fill("#name", "li")
    page.fill("#password", "wrong")
    page.click("#sign-in")
    expect(page.locator(".error")).to_be_visible()

    sign_in(page, console, "li")
    item_url = confirm_top_item(page, console)
    dismiss_hostile_posts(page, alerts)
    page.goto(item_url)
    expect(page.locator("#decisions [data-article]")).to_have_attribute("data-article", "art18.6")
    assert int(page.locator("#credit").inner_text()) < 100
    expect(page.locator('#dispositions [data-kind="warning"]')).to_contain_text("警示提醒")
    overdue_report_stands_out(page, console)
    for admin_page in ("dashboard", "bank"):  # a reviewer cannot open admin pages
        response = page.goto(f"{console.url}/console/{admin_page}")
        assert response is not None and response.status == 403
    appeal_is_filed(page, console, item_url)
    sign_out(page)

    sign_in(page, console, "wang")
    appeal_is_upheld(page, console, item_url)
    bank_and_dashboard(page, console)
    page.click("header >> text=English")
    expect(page.locator("nav")).to_contain_text("Queue")
    sign_out(page)
    page.goto(f"{console.url}/console/appeals")
    expect(page).to_have_url(re.compile(r"/console/login\?next=%2Fconsole%2Fappeals$"))


def test_reloading_a_refused_decision_reads_the_page_and_decides_nothing(
    console: Console, browser: Browser
) -> None:
    """A refused decision comes back as the answer to its POST: reloaded once what refused it
    has passed (here another reviewer's claim), it would be sent again and taken."""
    for post_id, text, account in [("p1", RUMOR, "acc1"), ("p2", SCRIPT_POST, "acc2")]:
        post = {"id": post_id, "text": text, "account_id": account}
        assert console.api("POST", "/v1/score", json=post).status_code == 200
    review, policy = console.services.review, console.services.scoring.policy
    items = review.list_items(policy).items
    (item,) = [i for i in items if i.post_id == "p1"]
    item_url = f"{console.url}/console/items/{item.id}"
    page = browser.new_page()
    posts: list[str] = []
    page.on("request", lambda sent: posts.append(sent.url) if sent.method == "POST" else None)
    sign_in(page, console, "li")
    page.goto(item_url)
    review.claim(policy, item.id, "wang")
    page.fill("#note", "先核实来源")
    page.locator("#note").blur()
    decide_by_keyboard(page, "d")  # refused: wang holds it
    expect(page.locator("#decision-form .error")).to_contain_text("该条目已被其他审核员认领")
    expect(page.locator("#note")).to_have_value("先核实来源")
    refused_at = page.url
    # wang's claim ends; the reviewer reads the page again
    repository = console.services.scoring.repository
    assert isinstance(repository, SqlRepository)
    with repository.engine.begin() as connection:
        ended = datetime.now(UTC) - timedelta(minutes=1)
        connection.execute(
            update(ReviewItem).where(ReviewItem.id == item.id).values(lease_until=ended)
        )
    sent = len(posts)
    answer = page.reload()
    assert answer is not None and answer.request.method == "GET" and answer.status == 200
    assert review.get_item(policy, item.id).status == "open"
    assert len(posts) == sent
    expect(page.locator("#note")).to_have_value("")
    # the refused page's address was the item's page, not the form's, which no page answers
    assert refused_at == item_url
    # escalated by li, it is offered to li no more, its buttons plainly not to be pressed
    decide_by_keyboard(page, "e")
    expect(page).not_to_have_url(item_url)
    page.goto(item_url)
    expect(page.locator("#escalated-by-you")).to_be_visible()
    for button in ("#claim", "#confirm", "#dismiss"):
        expect(page.locator(button)).to_be_disabled()
    red = "rgb(192, 57, 43)"  # button.danger's, a confirmation that can be taken
    shown = page.eval_on_selector("#confirm", "b => getComputedStyle(b).backgroundColor")
    assert shown != red
    # an escalation goes to an admin: wang's page offers the claim, and its key takes it
    sign_out(page)
    sign_in(page, console, "wang")
    page.goto(item_url)
    expect(page.locator("#escalated-by-you")).to_have_count(0)
    for button in ("#claim", "#confirm", "#dismiss"):
        expect(page.locator(button)).to_be_enabled()
    assert page.eval_on_selector("#confirm", "b => getComputedStyle(b).backgroundColor") == red
    with page.expect_navigation():
        page.keyboard.press("c")
    assert review.get_item(policy, item.id).assignee == "wang"
    page.close()


def scored_rumour(console: Console) -> views.Item:
    """The item a rumour scored on the publish path opens, the only one."""
    post = {"id": "p1", "text": RUMOR, "account_id": "acc1"}
    assert console.api("POST", "/v1/score", json=post).status_code == 200
    (item,) = console.services.review.list_items(console.services.scoring.policy).items
    return item


def test_a_link_from_another_site_opens_its_page_signed_in_and_signs_no_tab_out(
    console: Console, browser: Browser
) -> None:
    """The session's cookie is ``SameSite=Strict``: a browser sends it with no request that
    another site starts. A link to an item in a ticket or a chat opens the item all the same,
    signed in, and every other tab stays signed in (the sign-in page it opened before drew a
    new session, whose cookie took the place of the reviewer's)."""
    item_url = f"{console.url}/console/items/{scored_rumour(console).id}"
    context = browser.new_context()
    page = context.new_page()
    sign_in(page, console, "li")
    linked = context.new_page()
    # the same server by another name: localhost is another site than 127.0.0.1
    linked.goto(console.url.replace("127.0.0.1", "localhost") + "/console/login")
    linked.evaluate("to => { window.location.href = to; }", item_url)
    expect(linked.locator("#post-text")).to_have_text(RUMOR)
    expect(linked).to_have_url(item_url)
    page.reload()
    expect(page).to_have_url(re.compile(r"/console/queue$"))
    context.close()


def test_a_link_from_another_site_without_a_session_asks_again_once_then_signs_in(
    console: Console, browser: Browser
) -> None:
    """A browser with no session's cookie to send (none yet, or cookies blocked) asks for a
    page linked from another site twice: the page that asks again refreshes as the console's
    own request (``Sec-Fetch-Site: same-origin``), which, still without the cookie, gets the
    sign-in page, never the asking page again; signing in opens the page linked."""
    item_url = f"{console.url}/console/items/{scored_rumour(console).id}"
    context = browser.new_context()
    linked = context.new_page()
    asked: list[str] = []
    linked.on("request", lambda sent: asked.append(sent.url) if sent.url == item_url else None)
    linked.goto(console.url.replace("127.0.0.1", "localhost") + "/console/login")
    linked.evaluate("to => { window.location.href = to; }", item_url)
    expect(linked).to_have_url(re.compile(r"/console/login\?next=%2Fconsole%2Fitems%2F\d+$"))
    assert asked == [item_url, item_url]
    linked.fill("#name", "li")
    linked.fill("#password", console.passwords["li"])
    linked.click("#sign-in")
    expect(linked.locator("#post-text")).to_have_text(RUMOR)
    context.close()


def test_a_form_another_site_sends_to_the_console_signs_no_tab_out(
    console: Console, browser: Browser
) -> None:
    """A page of another site that sends a form to the console (a forged sign-out, a forged
    claim) sends it without the ``SameSite=Strict`` session's cookie: nothing is done, and the
    answer takes no cookie of the browser's away, so that the reviewer stays signed in."""
    item_id = scored_rumour(console).id
    context = browser.new_context()
    page = context.new_page()
    sign_in(page, console, "li")
    other = context.new_page()

    def forged(route: Route) -> None:
        """A page of another site whose form posts to the console's address of the same path."""
        action = console.url + urlsplit(route.request.url).path
        route.fulfill(content_type="text/html", body=f'<form method="post" action="{action}">')

    other.route(f"{ELSEWHERE}/**", forged)
    for action in ("/console/logout", f"/console/items/{item_id}/claim"):
        other.goto(ELSEWHERE + action)
        other.evaluate("document.forms[0].submit()")
        expect(other).to_have_url(re.compile(r"/console/login"))
        page.goto(f"{console.url}/console/queue")
        expect(page).to_have_url(re.compile(r"/console/queue$"))
    assert status_of(console, item_id) == "open"
    context.close()


def test_a_confirmation_asks_first_by_mouse_by_keyboard_and_without_the_script(
    console: Console, browser: Browser
) -> None:
    """A confirmation charges the account and applies dispositions: its button opens a dialog
    and sends nothing; Cancel or Escape closes it, sending nothing, the keyboard back on the
    button; its own button sends the decision. Without the script, the button's step is a page
    with the dialog open in it, its button focused, what was typed kept, and Cancel a link back
    to the item."""
    seed(console)
    items = {
        i.post_id: i.id
        for i in console.services.review.list_items(console.services.scoring.policy).items
    }
    page = browser.new_page()
    sign_in(page, console, "li")
    asks_in_the_page(page, console, items["p1"])
    page.close()
    bare = browser.new_context(java_script_enabled=False)
    page = bare.new_page()
    sign_in(page, console, "li")
    asks_on_a_page_of_its_own(page, console, items["x1"])
    bare.close()


def status_of(console: Console, item_id: int) -> str:
    return console.services.review.get_item(console.services.scoring.policy, item_id).status


def asks_in_the_page(page: Page, console: Console, item_id: int) -> None:
    """With the script: the dialog by mouse and by keyboard, nothing sent until its button."""
    item_url = f"{console.url}/console/items/{item_id}"
    page.goto(item_url)
    posts: list[str] = []
    page.on("request", lambda sent: posts.append(sent.url) if sent.method == "POST" else None)
    dialog, asks, sends = (page.locator(f"#confirm{s}") for s in ("-dialog", "", "-send"))
    expect(dialog).to_be_hidden()
    page.click("#confirm")
    expect(dialog).to_be_visible()
    expect(sends).to_be_focused()
    page.click("#confirm-cancel")
    expect(dialog).to_be_hidden()
    expect(asks).to_be_focused()
    # by keyboard: Enter opens it, Tab moves within it, Escape closes it
    page.keyboard.press("Enter")
    expect(dialog).to_be_visible()
    page.keyboard.press("Tab")
    expect(page.locator("#confirm-cancel")).to_be_focused()
    page.keyboard.press("Shift+Tab")
    expect(sends).to_be_focused()
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(asks).to_be_focused()
    page.wait_for_timeout(300)  # a form sent would be on its way by now
    assert posts == [] and page.url == item_url and status_of(console, item_id) == "open"
    page.keyboard.press("Enter")
    expect(sends).to_be_focused()
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert status_of(console, item_id) == "confirmed"


def asks_on_a_page_of_its_own(page: Page, console: Console, item_id: int) -> None:
    """Without the script: the step is the answer to the button's form, Cancel a link."""
    item_url = f"{console.url}/console/items/{item_id}"
    page.goto(item_url)
    page.select_option("#category", "rumor")
    page.fill("#basis", "第十八条第六项")
    page.fill("#note", "无脚本")
    dialog, sends = page.locator("#confirm-dialog"), page.locator("#confirm-send")
    expect(dialog).to_be_hidden()
    page.click("#confirm")
    expect(page).to_have_url(f"{item_url}/confirming")
    expect(dialog).to_be_visible()
    expect(sends).to_be_focused()
    expect(page.locator("#note")).to_have_value("无脚本")
    assert status_of(console, item_id) == "open"
    page.click("#confirm-cancel")
    expect(page).to_have_url(item_url)
    expect(dialog).to_be_hidden()
    assert status_of(console, item_id) == "open"
    page.select_option("#category", "rumor")
    page.fill("#basis", "第十八条第六项")
    page.click("#confirm")
    page.click("#confirm-send")
    expect(page).not_to_have_url(re.compile(rf"/console/items/{item_id}\b"))
    assert status_of(console, item_id) == "confirmed"


def typed_keys_take_nothing(page: Page, item_url: str, nothing_taken: Callable[[], None]) -> None:
    """The shortcut keys typed in a field, on a button, in editable text, while an input
    method composes, or with Ctrl, Alt or Meta: ``nothing_taken`` after each."""
    note = page.locator("#note")
    note.press_sequentially("cydejq")
    expect(note).to_have_value("cydejq")
    nothing_taken()
    for control in ("#category", "#dismiss", "#logout"):
        page.focus(control)
        for key in ("c", "y", "q"):
            page.keyboard.press(key)
        expect(page.locator(control)).to_be_focused()
        nothing_taken()
    page.goto(item_url)
    page.evaluate(
        """() => {
        const editable = document.createElement("div");
        editable.contentEditable = "true";
        editable.id = "editable";
        document.querySelector("main").append(editable);
    }"""
    )
    page.focus("#editable")
    page.keyboard.type("cyq")
    expect(page.locator("#editable")).to_have_text("cyq")
    nothing_taken()
    # an input method composing: Chromium's keydown that starts it (keyCode 229) and those
    # during it (isComposing), with no field focused
    page.evaluate("document.activeElement.blur()")
    cdp = page.context.new_cdp_session(page)
    for key, code in (("c", "KeyC"), ("y", "KeyY")):
        cdp.send(
            "Input.dispatchKeyEvent",
            {"type": "keyDown", "key": key, "code": code, "windowsVirtualKeyCode": 229},
        )
        cdp.send("Input.dispatchKeyEvent", {"type": "keyUp", "key": key, "code": code})
    page.evaluate(
        """() => document.body.dispatchEvent(new KeyboardEvent("keydown",
        {key: "c", code: "KeyC", isComposing: true, bubbles: true, cancelable: true}))"""
    )
    for held in ("Control", "Alt", "Meta"):
        page.keyboard.press(f"{held}+c")
    nothing_taken()
    expect(page.locator("#confirm")).not_to_be_focused()


def test_shortcut_keys_never_take_typing_and_can_be_turned_off(
    console: Console, browser: Browser
) -> None:
    """WCAG 2.1.4: a single key is the reader's typing wherever they type (a field, a button,
    editable text, an input method composing Chinese, with Ctrl, Alt or Meta), and the keys
    can be turned off in the page's header, their hints gone with them."""
    review, policy = console.services.review, console.services.scoring.policy
    item = scored_rumour(console)
    item_url = f"{console.url}/console/items/{item.id}"
    page = browser.new_page()
    sent: list[str] = []
    page.on("request", lambda r: sent.append(r.url) if r.method == "POST" else None)
    sign_in(page, console, "li")
    page.goto(item_url)
    sent.clear()

    def nothing_taken() -> None:
        page.wait_for_timeout(300)  # a form sent, or a link followed, would be under way
        assert page.url == item_url and sent == []
        assert review.get_item(policy, item.id).assignee is None

    def on_body() -> None:
        page.evaluate("document.activeElement.blur()")

    typed_keys_take_nothing(page, item_url, nothing_taken)
    # turned off: the hints go, and no key does anything, remembered from page to page
    page.click("#keys-switch")
    expect(page).to_have_url(item_url)
    expect(page.locator("#keys-switch")).to_have_text("开启快捷键")
    expect(page.locator("#shortcuts")).to_have_count(0)
    expect(page.locator("[data-key], [data-focus-key], [aria-keyshortcuts]")).to_have_count(0)
    for button in ("#claim", "#confirm", "#dismiss", "#escalate"):
        assert "(" not in page.locator(button).inner_text(), button
    page.goto(f"{console.url}/console/queue")
    page.goto(item_url)
    for key in ("c", "y", "d", "e", "j", "q"):
        on_body()
        page.keyboard.press(key)
        nothing_taken()
        expect(page.locator("#confirm")).not_to_be_focused()

    # on again: as before
    page.click("#keys-switch")
    expect(page).to_have_url(item_url)
    expect(page.locator("#keys-switch")).to_have_text("关闭快捷键")
    expect(page.locator("#shortcuts")).to_be_visible()
    expect(page.locator("#claim")).to_have_text("认领 (c)")
    page.keyboard.press("y")
    expect(page.locator("#confirm")).to_be_focused()
    nothing_taken()
    on_body()
    with page.expect_navigation():
        page.keyboard.press("c")
    assert review.get_item(policy, item.id).assignee == "li"
    page.keyboard.press("q")
    expect(page).to_have_url(re.compile(r"/console/queue$"))
    page.close()


CONTRAST = """() => {
  // WCAG 2.1's contrast ratio of each piece of text shown against the colour it is drawn on
  // (the nearest background that is not transparent; an SVG's, its figure's)
  const lum = (rgb) => {
    const [r, g, b] = rgb.map((v) => {
      v /= 255;
      return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const parse = (c) => (c.match(/[\\d.]+/g) || []).map(Number);
  const behind = (el) => {
    for (let at = el; at; at = at.parentElement) {
      const c = parse(getComputedStyle(at).backgroundColor);
      if (c.length === 3 || (c.length === 4 && c[3] > 0)) return c.slice(0, 3);
    }
    return [255, 255, 255];
  };
  const found = [];
  for (const el of document.querySelectorAll("body *")) {
    const own = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
    const box = el.getBoundingClientRect();
    const unseen = el.closest("[disabled], .visually-hidden, title, desc");
    if (!own || box.width === 0 || unseen) continue;
    const style = getComputedStyle(el);
    if (style.visibility === "hidden" || (el.matches(".skip-link") && box.right < 0)) continue;
    const fg = parse(el instanceof SVGElement ? style.fill : style.color).slice(0, 3);
    const [a, b] = [lum(fg), lum(behind(el))].sort((x, y) => y - x);
    const size = parseFloat(style.fontSize), bold = Number(style.fontWeight) >= 700;
    const large = size >= 24 || (bold && size >= 18.66);
    found.push({
      text: el.textContent.trim().slice(0, 30),
      tag: el.tagName,
      cls: String(el.className.baseVal ?? el.className),
      ratio: (a + 0.05) / (b + 0.05),
      needs: large ? 3 : 4.5,
    });
  }
  return found;
}"""


def test_the_console_by_keyboard_in_a_narrow_window_and_its_text_contrast(
    console: Console, browser: Browser
) -> None:
    """A keyboard's first Tab reaches the skip link, which moves the focus to the main
    content, and Tab goes on in the page's reading order; in a window 320 px wide (a 1280 px
    one zoomed to 400%) no page scrolls sideways, in Chinese or English, wide tables scrolling
    in their own box and a long id breaking in its line; every
    text shown reads at 4.5:1 against its background (3:1 large), a plot's too: the dashboard
    is read first, its plots saying "no data" (a process draws it once a minute), and an item
    about a post never stored says so in the colour of what is pending."""
    page = browser.new_page(viewport={"width": 1366, "height": 900})
    sign_in(page, console, "wang")
    page.goto(f"{console.url}/console/dashboard")
    expect(page.locator("svg.plot text.empty").first).to_be_visible()
    seed(console)
    review, policy = console.services.review, console.services.scoring.policy
    # ids are the platform's, up to 256 characters without a space: its item's page names them
    # in its headings and lines, not only in tables
    old_post, old_account = "old-" + "0123456789abcdef" * 4, "acc-" + "f" * 60
    review.file_report(
        policy,
        post_id=old_post,
        account_id=old_account,
        category="rumor",
        text_="举报 https://t.cn/" + "A" * 300,
        reporter="test",
        now=datetime.now(UTC) - timedelta(days=4),
    )
    (top,) = [i for i in review.list_items(policy).items if i.post_id == "p1"]
    review.decide(policy, top.id, "li", "confirm", "rumor", "art18.6")
    review.file_appeal(policy, account_id="acc1", item_id=top.id, reason="误判", filed_by="k")
    (unknown,) = [i for i in review.list_items(policy).items if i.post_id == old_post]
    item_url = f"{console.url}/console/items/{top.id}"
    page.goto(item_url)
    page.keyboard.press("Tab")
    skip = page.locator("a.skip-link")
    expect(skip).to_be_focused()
    expect(skip).to_be_in_viewport()
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    # Tab from there on reaches each control after the one before it in the page, once round
    after = []
    for _ in range(200):
        page.keyboard.press("Tab")
        # past the page's last control: out of it, or round again to the skip link and header
        at = "document.activeElement"
        if page.evaluate(f"{at} === document.body || !!{at}.closest('header, .skip-link')"):
            break
        after.append(page.evaluate_handle("document.activeElement"))
    # the post's column (its tables' boxes), then the decision's (its note)
    reached = [handle.evaluate("el => el.id || el.className") for handle in after]
    assert reached[0] == "table-scroll" and "note" in reached, reached
    in_order = page.evaluate(
        "els => els.every((el, i) => i === 0 || (els[i - 1].compareDocumentPosition(el) & 4))",
        after,
    )
    assert in_order, "the tab order is not the reading order"
    pages = [f"/console/{p}" for p in ("queue", "appeals", "reports", "bank", "dashboard")]
    pages += [item_url.removeprefix(console.url), f"/console/items/{unknown.id}"]
    faint: list[str] = []
    for path in pages:
        page.goto(console.url + path)
        for shown in page.evaluate(CONTRAST):
            if shown["ratio"] < shown["needs"]:
                faint.append(
                    f"{path} {shown['tag']}.{shown['cls']} {shown['text']!r} {shown['ratio']:.2f}"
                )
    assert faint == [], faint
    page.set_viewport_size({"width": 320, "height": 640})
    # in either language: English words make the wider columns
    for language in ("en", "zh"):
        page.context.add_cookies([{"name": "ql_lang", "value": language, "url": console.url}])
        for path in [*pages, "/console/login"]:
            if path == "/console/login":
                sign_out(page)
            page.goto(console.url + path)
            wide = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert wide <= 0, f"{path} ({language}) is {wide} px wider than a 320 px window"
        if language == "en":
            sign_in(page, console, "wang")
    page.close()
