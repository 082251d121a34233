"""Abnormal engagement with posts (art12): the jump and ratio checks, the reports' storage on
SQLite and PostgreSQL with the ``engagement`` item they open, its migration, and the API."""

from __future__ import annotations

import statistics
import threading
from datetime import UTC, datetime, timedelta

import pytest
from alembic import command
from servicekit import Api, migrate, record
from sqlalchemy import inspect

from service.policy import Policy
from service.record import Post
from service.review import chain, engagement
from service.review.engagement import Counts
from service.review.items import ConflictError
from service.storage import Pending, SqlRepository, open_repository, upgrade
from service.storage.console_sql import ConsoleReads
from service.storage.database import alembic_config, make_engine

T0 = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def verify(repo: SqlRepository) -> list[str]:
    return chain.verify(repo.audit_entries(), repo.audit_head())


# --- the checks -----------------------------------------------------------------------------


def test_a_jump_is_a_large_multiple_and_more_than_the_accounts_reach(policy: Policy) -> None:
    rules = policy.engagement
    floor = rules.min_gain["reposts"]

    def jumps(before: int, after: int, followers: int = 0, usual: float | None = None) -> bool:
        return engagement.is_jump(rules, "reposts", before, after, followers, usual)

    assert jumps(0, floor) and jumps(10, 10 + floor, followers=floor)
    assert not jumps(0, floor - 1)  # under the floor: a few bought reposts are not seen
    # a post that spreads: many more, but not factor times the count before
    assert not jumps(floor, int(floor * rules.factor) - 1)
    # an account whose followers could have made it
    assert not jumps(0, floor * 2, followers=floor * 2 + 1)
    # where the account's other posts show what it ordinarily gets, they weigh instead of its
    # followers: far past them is a jump whatever its followers, near them is none
    big = 10_000_000
    assert jumps(0, floor * 2, followers=big, usual=floor * 2 / rules.others_factor)
    assert not jumps(0, floor * 2, followers=0, usual=floor * 2 / rules.others_factor + 1)
    # a count the policy does not watch never jumps
    unwatched = rules.model_copy(update={"min_gain": {}})
    assert not engagement.is_jump(unwatched, "reposts", 0, 10**9, 0, None)
    assert engagement.typical([1, 2], rules) is None  # too few others to weigh by
    assert engagement.typical([1, 2, 30], rules) == 2.0


def test_the_ratios_weigh_reads_and_reposters_given_afresh_once_crossed(policy: Policy) -> None:
    rules = policy.engagement
    many = rules.per_read_min
    assert engagement.ratios(rules, Counts(reads=many - 1, reposts=many)) == {"per_read"}
    assert engagement.ratios(rules, Counts(reads=many, reposts=many)) == set()
    assert engagement.ratios(rules, Counts(reads=0, likes=many - 1)) == set()  # too few
    assert engagement.ratios(rules, Counts(likes=10 * many)) == set()  # no reads given
    reposts = rules.per_reposter_min
    few = int(reposts / rules.per_reposter)
    assert engagement.ratios(rules, Counts(reposts=reposts, reposters=few)) == {"per_reposter"}
    assert engagement.ratios(rules, Counts(reposts=reposts, reposters=few + 1)) == set()
    assert engagement.ratios(rules, Counts(reposts=reposts - 1, reposters=1)) == set()

    def found(before: Counts, report: Counts) -> list[str]:
        found = engagement.findings(
            rules, "p", before, report, at=T0, since=None, published=None, followers=0, usual={}
        )
        return [f["check"] for f in found]

    stale = Counts(reads=many - 1)
    # interactions given now beside reads given long ago are no ratio of one moment
    assert found(stale, Counts(reposts=many)) == []
    assert found(stale, Counts(reads=many - 1, reposts=many)) == ["per_read"]
    # a post that stays past a ratio is found once
    crossed = stale.updated(Counts(reposts=many))
    assert found(crossed, Counts(reads=many - 1)) == []
    # reposters counts the reposts it came with: newer reposts without it leave it unknown
    counted = Counts(reposts=reposts, reposters=reposts)
    assert counted.updated(Counts(reposts=reposts * 10)).reposters is None
    assert found(counted, Counts(reposts=reposts * 10)) == []


# --- storage --------------------------------------------------------------------------------


def test_a_jump_opens_one_item_per_account_that_later_findings_join(
    repo: SqlRepository, policy: Policy
) -> None:
    rules = policy.engagement
    floor = rules.min_gain["reposts"]
    repo.put_account(policy, "acc", followers=800, now=T0)
    # a post that spreads by the hour is not a case
    for hour, reposts in enumerate((0, 400, 1_500, 2_900, 3_200)):
        answer = repo.put_engagement(
            policy, "organic", "acc", Counts(reposts=reposts), now=T0 + hour * HOUR
        )
        assert answer.findings == [] and answer.item_id is None
    assert repo.list_items(policy, kind="engagement").items == []

    repo.put_engagement(policy, "p1", "acc", Counts(reads=500, reposts=12), now=T0)
    bought = repo.put_engagement(policy, "p1", "acc", Counts(reposts=floor * 4), now=T0 + HOUR)
    (item,) = repo.list_items(policy, kind="engagement").items
    assert bought.item_id == item.id and (bought.reads, bought.reposts) == (500, floor * 4)
    assert (item.account_id, item.head, item.post_id, item.reach) == (
        "acc",
        "fake_engagement",
        None,
        800,
    )
    jump = {
        "post_id": "p1",
        "check": "jump",
        "count": "reposts",
        "before": 12,
        "after": floor * 4,
        "at": (T0 + HOUR).isoformat(),
        "since": T0.isoformat(),
        "followers": 800,
        "typical": None,
    }
    assert item.evidence == {"findings": [jump]} and bought.findings == [jump]
    # another post's first report (a gain from 0 since it was published) joins the open item
    joined = repo.put_engagement(
        policy, "p2", "acc", Counts(reads=10, likes=floor), now=T0 + 2 * HOUR
    )
    assert joined.item_id == item.id
    assert [(f["post_id"], f["check"]) for f in joined.findings] == [
        ("p2", "jump"),
        ("p2", "per_read"),
    ]
    assert joined.findings[0]["since"] is None  # the service never stored the post
    (grown,) = repo.list_items(policy, kind="engagement").items
    assert grown.evidence is not None and len(grown.evidence["findings"]) == 3
    records = [(e.kind, e.subject) for e in repo.audit_entries()]
    assert ("review.enqueued", f"item:{item.id}") in records
    assert ("review.grown", f"item:{item.id}") in records
    flagged = [e.payload for e in repo.audit_entries() if e.kind == "engagement.flagged"]
    assert [p["findings"] for p in flagged] == [[jump], joined.findings]
    assert verify(repo) == []


def test_a_count_that_falls_is_kept_and_the_next_jump_weighed_from_it(
    repo: SqlRepository, policy: Policy
) -> None:
    floor = policy.engagement.min_gain["comments"]
    repo.put_engagement(policy, "p1", "acc", Counts(comments=floor * 2), now=T0)
    fell = repo.put_engagement(policy, "p1", "acc", Counts(comments=10), now=T0 + HOUR)
    assert fell.comments == 10 and fell.findings == []
    again = repo.put_engagement(policy, "p1", "acc", Counts(comments=floor * 2), now=T0 + 2 * HOUR)
    assert [(f["before"], f["after"]) for f in again.findings] == [(10, floor * 2)]


def test_the_accounts_other_posts_weigh_a_jump_once_it_has_enough(
    repo: SqlRepository, policy: Policy
) -> None:
    rules = policy.engagement
    floor = rules.min_gain["reposts"]
    # a large account: its followers would hide any jump
    repo.put_account(policy, "big", followers=50_000_000, now=T0)
    older = [1_000 + n for n in range(rules.others_min)]
    for n, reposts in enumerate(older):
        repo.put_engagement(policy, f"old{n}", "big", Counts(reposts=reposts), now=T0)
    ordinary = int(statistics.median(older) * rules.others_factor) - 1
    assert ordinary >= floor * rules.factor  # past the floor: the others alone spare it
    assert repo.put_engagement(policy, "fine", "big", Counts(reposts=ordinary)).findings == []
    found = repo.put_engagement(policy, "hit", "big", Counts(reposts=floor * 10)).findings
    usual = statistics.median([*older, ordinary])
    assert [(f["check"], f["typical"]) for f in found] == [("jump", usual)]


def test_a_post_is_one_accounts_and_a_report_is_stored_once_per_key(
    repo: SqlRepository, policy: Policy
) -> None:
    stored = record("stored").model_copy(update={"account_id": "owner"})
    post = Post(id="stored", text="帖子", account_id="owner", created_at=T0.timestamp())
    repo.save_records([Pending(stored, True, post.text, post)])
    with pytest.raises(ConflictError, match=r"^post 'stored' belongs to account 'owner'"):
        repo.put_engagement(policy, "stored", "other", Counts(reads=1))
    floor = policy.engagement.min_gain["reads"]
    first = repo.put_engagement(policy, "stored", "owner", Counts(reads=floor), now=T0 + HOUR)
    # the post's first report is its gain since it was published, as the service stored it
    assert first.findings[0]["since"] == T0.isoformat()
    repo.put_engagement(policy, "unknown", "a1", Counts(reads=5))
    with pytest.raises(ConflictError, match=r"^post 'unknown' belongs to account 'a1'"):
        repo.put_engagement(policy, "unknown", "a2", Counts(reads=6))
    assert repo.put_engagement(policy, "unknown", "a1", Counts(reads=6)).reads == 6


def test_the_account_the_publish_path_stored_a_post_with_owns_it_over_an_earlier_report(
    repo: SqlRepository, policy: Policy
) -> None:
    """A first report naming another account than the one the post is then scored for does
    not keep it: the stored post's account owns it, as for reports, its counts move to it, and
    the report's account is refused from then on."""
    repo.put_engagement(policy, "p", "a3", Counts(reads=5), now=T0)
    stored = record("p").model_copy(update={"account_id": "b1"})
    post = Post(id="p", text="帖子", account_id="b1", created_at=T0.timestamp())
    repo.save_records([Pending(stored, True, post.text, post)])
    taken = repo.put_engagement(policy, "p", "b1", Counts(likes=2), now=T0 + HOUR)
    assert (taken.account_id, taken.reads, taken.likes) == ("b1", 5, 2)
    assert repo.get_engagement("p").account_id == "b1"
    with pytest.raises(ConflictError, match=r"^post 'p' belongs to account 'b1', not to 'a3'"):
        repo.put_engagement(policy, "p", "a3", Counts(reads=6))
    with pytest.raises(ConflictError, match=r"^post 'p' belongs to account 'b1', not to 'a3'"):
        repo.file_report(
            policy, post_id="p", account_id="a3", category="rumor", text_="", reporter="k"
        )


def _wrongly_reported(repo: SqlRepository, policy: Policy, post_id: str, account_id: str) -> None:
    """A first report of ``post_id`` under ``account_id`` (no followers) that finds a jump of
    its reposts and more interactions than reads."""
    floor = policy.engagement.min_gain["reposts"]
    found = repo.put_engagement(policy, post_id, account_id, Counts(reads=100, reposts=floor))
    assert [f["check"] for f in found.findings] == ["jump", "per_read"]


def _scored(repo: SqlRepository, post_id: str, account_id: str, policy: Policy | None) -> None:
    stored = record(post_id, "pass").model_copy(update={"account_id": account_id})
    post = Post(id=post_id, text="帖子", account_id=account_id, created_at=T0.timestamp())
    repo.save_records([Pending(stored, False, post.text, post)], policy)


def _records(repo: SqlRepository, kind: str) -> list[dict[str, object]]:
    return [e.payload for e in repo.audit_entries() if e.kind == kind]


def test_a_post_scored_for_its_own_account_takes_its_findings_from_the_one_reported(
    repo: SqlRepository, policy: Policy
) -> None:
    """A post first reported under the wrong account, then stored by the publish path for its
    own: its findings leave the wrong account's open item, which is withdrawn once it lists
    none, and are weighed again for the owner, whose reach a jump no longer passes."""
    repo.put_account(policy, "acc1", followers=10 * policy.engagement.min_gain["reposts"])
    _wrongly_reported(repo, policy, "p", "acc2")
    (wrong,) = repo.list_items(policy, kind="engagement").items
    _scored(repo, "p", "acc1", policy)
    withdrawn = repo.get_item(policy, wrong.id)
    assert withdrawn.status == "dismissed" and withdrawn.evidence is not None
    assert withdrawn.evidence["findings"] == []
    assert [m["account_id"] for m in withdrawn.evidence["moved"]] == ["acc1"]
    (decision,) = ConsoleReads(repo.engine).decisions(wrong.id)
    assert (decision.action, decision.reviewer) == ("dismiss", "service")
    assert "post 'p' is account 'acc1''s" in (decision.note or "")
    assert repo.get_engagement("p").account_id == "acc1"
    (own,) = repo.list_items(policy, kind="engagement").items
    assert own.account_id == "acc1" and own.evidence is not None
    # the ratio is the post's counts alone; the jump is none for acc1's followers
    assert [f["check"] for f in own.evidence["findings"]] == ["per_read"]
    (moved,) = _records(repo, "engagement.moved")
    assert moved == {
        "from": "acc2",
        "to": "acc1",
        "findings": 2,
        "withdrawn": [wrong.id],
        "confirmed": [],
        "item": own.id,
    }
    assert verify(repo) == []


def test_an_item_keeps_the_findings_on_the_accounts_own_posts_when_another_post_leaves(
    repo: SqlRepository, policy: Policy
) -> None:
    _wrongly_reported(repo, policy, "p", "acc2")
    _wrongly_reported(repo, policy, "mine", "acc2")
    _scored(repo, "p", "acc1", policy)
    items = {i.account_id: i for i in repo.list_items(policy, kind="engagement").items}
    kept = items["acc2"]
    assert kept.status == "open" and kept.evidence is not None
    assert {f["post_id"] for f in kept.evidence["findings"]} == {"mine"}
    # acc1 has no followers either: both findings hold for it
    assert items["acc1"].evidence is not None
    assert [f["check"] for f in items["acc1"].evidence["findings"]] == ["jump", "per_read"]


def test_the_owners_next_report_moves_a_post_stored_without_the_move(
    repo: SqlRepository, policy: Policy
) -> None:
    """A post stored before the publish path moved its findings (or by a writer that gives no
    policy) is moved by its owner's next report."""
    _wrongly_reported(repo, policy, "p", "acc2")
    (wrong,) = repo.list_items(policy, kind="engagement").items
    _scored(repo, "p", "acc1", None)
    assert repo.get_item(policy, wrong.id).status == "open"
    taken = repo.put_engagement(policy, "p", "acc1", Counts(likes=2))
    assert taken.findings == [] and taken.item_id is None
    assert repo.get_item(policy, wrong.id).status == "dismissed"
    (own,) = repo.list_items(policy, kind="engagement").items
    assert own.account_id == "acc1"
    assert verify(repo) == []


def test_a_confirmation_of_the_wrong_account_stands_marked_for_its_appeal(
    repo: SqlRepository, policy: Policy
) -> None:
    _wrongly_reported(repo, policy, "p", "acc2")
    (wrong,) = repo.list_items(policy, kind="engagement").items
    repo.decide(policy, wrong.id, "r1", "confirm", "fake_engagement", policy.engagement.basis)
    charged = repo.get_account(policy, "acc2").credit
    _scored(repo, "p", "acc1", policy)
    confirmed = repo.get_item(policy, wrong.id)
    assert confirmed.status == "confirmed" and confirmed.evidence is not None
    assert len(confirmed.evidence["findings"]) == 2
    assert [m["post_id"] for m in confirmed.evidence["moved"]] == ["p"]
    assert repo.get_account(policy, "acc2").credit == charged
    (moved,) = _records(repo, "engagement.moved")
    assert moved["confirmed"] == [wrong.id] and moved["withdrawn"] == []
    (own,) = repo.list_items(policy, kind="engagement").items
    assert own.account_id == "acc1"
    assert verify(repo) == []


def test_a_confirmation_charges_the_account_and_a_later_finding_opens_a_new_case(
    repo: SqlRepository, policy: Policy
) -> None:
    floor = policy.engagement.min_gain["reposts"]
    repo.put_engagement(policy, "p1", "acc", Counts(reposts=floor), now=T0)
    (item,) = repo.list_items(policy, kind="engagement").items
    decision = repo.decide(
        policy,
        item.id,
        "r1",
        "confirm",
        "fake_engagement",
        policy.engagement.basis,
        now=T0 + HOUR,
    )
    (change,) = decision.credits
    assert change.delta == -policy.credit.deductions["fake_engagement"]
    assert [d.kind for d in decision.dispositions] == ["warning"]
    assert repo.get_account(policy, "acc").credit == policy.credit.initial + change.delta
    repo.put_engagement(policy, "p2", "acc", Counts(reposts=floor), now=T0 + 2 * HOUR)
    (again,) = repo.list_items(policy, kind="engagement").items
    assert again.id != item.id
    assert verify(repo) == []


def test_racing_first_reports_store_one_post_and_open_one_item(
    repo: SqlRepository, policy: Policy
) -> None:
    floor = policy.engagement.min_gain["reposts"]
    errors: list[Exception] = []

    def report(n: int) -> None:
        try:
            repo.put_engagement(policy, f"p{n % 2}", "acc", Counts(reposts=floor + n))
        except Exception as exc:  # any: the test reports it
            errors.append(exc)

    threads = [threading.Thread(target=report, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    (item,) = repo.list_items(policy, kind="engagement").items
    assert item.evidence is not None
    # each post's first report jumped from 0; the later ones gained too little
    assert sorted(f["post_id"] for f in item.evidence["findings"]) == ["p0", "p1"]


def test_the_migration_goes_down_and_up_again(database_url: str, policy: Policy) -> None:
    upgrade(database_url)
    repo = open_repository(database_url, 5.0, policy.review)
    try:
        repo.put_engagement(policy, "p1", "acc", Counts(reads=3))
    finally:
        repo.close()
    engine = make_engine(database_url, 5.0)
    try:
        with engine.begin() as connection:
            migrate(connection, "0024_correction_deadlines", down=True)
            assert "post_engagement" not in inspect(connection).get_table_names()
            # SQLite keeps the drop of a downgrade a revision further down refused: the next
            # try, from this revision again, finds nothing to drop
            config = alembic_config()
            config.attributes["connection"] = connection
            command.stamp(config, "0025_engagement")
            migrate(connection, "0024_correction_deadlines", down=True)
    finally:
        engine.dispose()
    upgrade(database_url)
    repo = open_repository(database_url, 5.0, policy.review)
    try:
        assert repo.put_engagement(policy, "p1", "other", Counts(reads=3)).reads == 3
    finally:
        repo.close()


# --- the API --------------------------------------------------------------------------------


def test_the_platform_reports_counts_and_a_jump_reaches_the_trust_team(api: Api) -> None:
    policy = api.services.scoring.policy
    floor = policy.engagement.min_gain["reposts"]
    url = "/v1/posts/p1/engagement"
    body = {"account_id": "acc1", "reads": 100, "reposts": 2, "reposters": 2}
    first = api.client.put(url, json=body, headers=api.headers())
    assert first.status_code == 200, first.text
    answer = first.json()
    assert (answer["reads"], answer["comments"], answer["findings"]) == (100, None, [])
    reviewer = api.headers(api.new_key("reviewer"))
    assert api.client.put(url, json=body, headers=reviewer).status_code == 403
    assert api.client.put(url, json=body).status_code == 401
    other = api.client.put(url, json={**body, "account_id": "acc2"}, headers=api.headers())
    assert other.status_code == 409
    assert other.json() == {"detail": "post 'p1' belongs to account 'acc1', not to 'acc2'"}

    jump = {"account_id": "acc1", "reposts": floor * 2}
    retried = {**api.headers(), "Idempotency-Key": "r-1"}
    flagged = api.client.put(url, json=jump, headers=retried)
    assert flagged.status_code == 200 and flagged.json()["item_id"] is not None
    # a retry gets the first answer: the jump is not weighed again from itself
    assert api.client.put(url, json=jump, headers=retried).json() == flagged.json()
    listed = api.client.get("/v1/review/items?kind=engagement", headers=reviewer).json()
    (item,) = listed["items"]
    assert (item["id"], item["head"]) == (flagged.json()["item_id"], "fake_engagement")
    assert [f["after"] for f in item["evidence"]["findings"]] == [floor * 2]
    decided = api.client.post(
        f"/v1/review/items/{item['id']}/decision",
        json={"action": "confirm", "category": "fake_engagement", "basis": "art12"},
        headers=reviewer,
    )
    assert decided.status_code == 200 and decided.json()["credits"][0]["account_id"] == "acc1"


def test_a_post_the_publish_path_scores_takes_its_findings_to_its_account(api: Api) -> None:
    policy = api.services.scoring.policy
    floor = policy.engagement.min_gain["reposts"]
    url = "/v1/posts/p9/engagement"
    body = {"account_id": "acc2", "reads": 100, "reposts": floor}
    assert api.client.put(url, json=body, headers=api.headers()).json()["item_id"] is not None
    scored = api.score({"id": "p9", "text": "今天天气很好", "account_id": "acc1"})
    assert scored.status_code == 200, scored.text
    reviewer = api.headers(api.new_key("reviewer"))
    listed = api.client.get("/v1/review/items?kind=engagement", headers=reviewer).json()
    assert [i["account_id"] for i in listed["items"]] == ["acc1"]


def test_bad_counts_are_refused_at_their_field(api: Api) -> None:
    cases = [
        ("/v1/posts/p1/engagement", {"reads": 1}, ["body", "account_id"]),
        ("/v1/posts/p1/engagement", {"account_id": "a", "reads": -1}, ["body", "reads"]),
        ("/v1/posts/p1/engagement", {"account_id": "a", "likes": "12"}, ["body", "likes"]),
        ("/v1/posts/p1/engagement", {"account_id": "a", "comments": 1.5}, ["body", "comments"]),
        ("/v1/posts/p1/engagement", {"account_id": "a", "reads": 2**31}, ["body", "reads"]),
        ("/v1/posts/p1/engagement", {"account_id": "a", "reposters": 1}, ["body", "reposters"]),
        (
            "/v1/posts/p1/engagement",
            {"account_id": "a", "reposts": 5, "reposters": 6},
            ["body", "reposters"],
        ),
        (
            "/v1/posts/p1/engagement",
            {"account_id": "a", "reposts": 5, "reposters": 0},
            ["body", "reposters"],
        ),
        ("/v1/posts/p1/engagement", {"account_id": "a"}, ["body"]),
        ("/v1/posts/%20/engagement", {"account_id": "a", "reads": 1}, ["path", "post_id"]),
    ]
    for url, body, loc in cases:
        answer = api.client.put(url, json=body, headers=api.headers())
        assert answer.status_code == 422, (body, answer.text)
        assert answer.json()["detail"][0]["loc"] == loc, body
    # none of them stored anything: the post is free for any account
    fine = {"account_id": "b", "reposts": 0, "reposters": 0}
    assert api.client.put("/v1/posts/p1/engagement", json=fine, headers=api.headers()).is_success


def test_the_stored_counts_are_read_back_by_the_publisher_and_the_trust_team(api: Api) -> None:
    """``GET /v1/posts/{id}/engagement``: the counts as the reports left them (one left out
    kept, one never given null), for publisher, reviewer and admin keys; 404 in words that tell
    a post the service does not know from one it kept whose counts were never reported."""
    url = "/v1/posts/p1/engagement"
    put = api.client.put(
        url, json={"account_id": "acc1", "reads": 100, "likes": 3}, headers=api.headers()
    )
    later = api.client.put(url, json={"account_id": "acc1", "reads": 150}, headers=api.headers())
    assert put.status_code == later.status_code == 200
    reporter = {k: v for k, v in later.json().items() if k not in ("findings", "item_id")}
    assert reporter["reads"] == 150 and reporter["likes"] == 3 and reporter["comments"] is None
    for role in ("publisher", "reviewer", "admin"):
        read = api.client.get(url, headers=api.headers(api.new_key(role)))
        assert read.status_code == 200, role
        assert read.json() == reporter, role
    assert api.client.get(url).status_code == 401

    unknown = api.client.get("/v1/posts/nope/engagement", headers=api.headers())
    assert unknown.status_code == 404
    assert unknown.json() == {
        "detail": "no post 'nope': the service neither scored it nor was given its engagement "
        "counts"
    }
    scored = api.score(
        {"id": "kept", "text": "紧急扩散！自来水被污染了，千万别喝！", "account_id": "a"}
    )
    assert scored.status_code == 200 and scored.json()["decision"] != "pass"
    api.settle()
    uncounted = api.client.get("/v1/posts/kept/engagement", headers=api.headers())
    assert uncounted.status_code == 404
    assert uncounted.json() == {
        "detail": "post 'kept' has no engagement counts: none were reported for it"
    }
    described = api.client.get("/openapi.json").json()["paths"][url.replace("p1", "{post_id}")]
    assert set(described) == {"get", "put"} and "404" in described["get"]["responses"]
