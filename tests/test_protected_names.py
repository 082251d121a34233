"""Protected names (art8, its second paragraph): the entries' rules, their storage on SQLite and
on PostgreSQL (the registration check, renames, the items opened for the accounts that hold an
entry, the chained records, the migration) and their API (roles, errors, the check's words)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from alembic import command
from servicekit import Api, migrate
from sqlalchemy import event, inspect

from service.policy import Policy
from service.policy.governance import DispositionStep
from service.review import chain, dispositions, protected, registration, views
from service.review.items import ConflictError, NotFoundError
from service.review.protected import EntryNameError
from service.review.refusals import words
from service.storage import SqlRepository, open_repository, upgrade
from service.storage.sql import alembic_config, make_engine

T0 = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
AUTHORISED = "91110000MA01X"
REFUSED_WORDS = (
    "the name holds '新华社', a protected organisation name (entry {entry}) that the subject "
    "is not authorised to use (art8)"
)


def verify(repo: SqlRepository) -> list[str]:
    return chain.verify(repo.audit_entries(), repo.audit_head())


def codes(repo: SqlRepository, policy: Policy, name: str, subject: str) -> list[str]:
    return [r["code"] for r in repo.check_registration(policy, name, subject).reasons]


# --- the rules ------------------------------------------------------------------------------


def test_an_entry_is_folded_as_names_are_and_one_too_short_or_long_is_refused(
    policy: Policy,
) -> None:
    rules = policy.registration
    assert protected.entry_name(rules, "新華社") == registration.fold_name("新华社") == "新华社"
    assert protected.entry_name(rules, " 姚\u200b明 ") == "姚明"
    assert protected.entry_name(rules, "CCTV-1") == "cctv1"
    for name in ("党", "《华》", "A"):
        with pytest.raises(EntryNameError) as refused:
            protected.entry_name(rules, name)
        assert refused.value.reason == "protected_length"
        assert f"folds to {rules.protected_min_chars} to {protected.MOST_CHARS}" in str(
            refused.value
        )
    with pytest.raises(EntryNameError, match=r"101 letters or digits"):
        protected.entry_name(rules, "国" * (protected.MOST_CHARS + 1))


def test_the_check_gives_one_reason_per_protected_name_in_the_words_of_the_profiles_409(
    policy: Policy,
) -> None:
    held = [(3, "新华社", "organisation"), (5, "姚明", "person")]
    reasons = registration.check(policy.registration, "新华社姚明", [], [], 0, held)
    assert [(r.code, r.detail) for r in reasons] == [
        ("name_protected", REFUSED_WORDS.format(entry=3)),
        (
            "name_protected",
            "the name holds '姚明', a protected person name (entry 5) that the subject is not "
            "authorised to use (art8)",
        ),
    ]
    with pytest.raises(ConflictError) as refused:
        registration.check_protected_name(held)
    assert str(refused.value) == reasons[0].detail
    registration.check_protected_name([])


def test_a_step_a_category_calls_for_is_due_on_that_category_alone(policy: Policy) -> None:
    ladder = policy.dispositions
    step = next(s for s in ladder if s.kind == "suspend_service")
    assert (step.categories, step.basis, step.stops_publishing) == (["impersonation"], "art8", True)
    # whatever the account's standing: its first violation, at the top level
    due = [s.kind for s in dispositions.due(ladder, "A", 1, set(), "impersonation")]
    assert due == ["warning", "suspend_service"]
    assert "suspend_service" not in {s.kind for s in dispositions.due(ladder, "X", 9, set())}
    assert "suspend_service" not in {
        s.kind for s in dispositions.due(ladder, "X", 9, set(), "rumor")
    }
    assert "suspend_service" not in dispositions.called_for(ladder, "X", 9)
    DispositionStep(kind="k", basis="art8", categories=["impersonation"])
    with pytest.raises(ValueError, match="neither levels, min_violations nor categories"):
        DispositionStep(kind="k", basis="art8")


# --- storage --------------------------------------------------------------------------------


def test_a_protected_name_refuses_registration_and_renames_unless_the_subject_is_authorised(
    repo: SqlRepository, policy: Policy
) -> None:
    assert repo.check_registration(policy, "新华社北京分社", "another-subject").allowed
    # the authorised subject given in another spelling: stored as accounts store theirs
    entry = repo.add_protected_name(
        policy, name="新华社", kind="organisation", subject_ids=["91110000-ma01x"], by="k-admin"
    )
    assert entry.subjects == [registration.subject_digest(AUTHORISED)]
    detail = REFUSED_WORDS.format(entry=entry.id)
    # the name held in any spelling the folding makes one
    for name in ("新华社北京分社", "新華社 官方", "官方\u200b新华社!", "新华社"):
        refused = repo.check_registration(policy, name, "another-subject")
        assert refused.reasons == [{"code": "name_protected", "detail": detail}], name
    for subject in (AUTHORISED, "91110000 ma01x"):
        assert repo.check_registration(policy, "新华社北京分社", subject).allowed
    assert repo.check_registration(policy, "新华日报社", "another-subject").allowed

    # a rename: 409 in the check's words, the write refused whole
    repo.put_account(policy, "a1", name="小号", subject_id="another-subject")
    with pytest.raises(ConflictError) as refused_rename:
        repo.put_account(policy, "a1", name="新华社北京", followers=10)
    assert str(refused_rename.value) == detail
    account = repo.get_account(policy, "a1")
    assert (account.name, account.followers) == ("小号", 0)
    # an account with no subject has none authorised, and a new one is not even created
    with pytest.raises(ConflictError, match="not authorised"):
        repo.put_account(policy, "new", name="新华社")
    with pytest.raises(NotFoundError):
        repo.get_account(policy, "new")
    # the authorised subject, stored or given with the name
    repo.put_account(policy, "b1", subject_id=AUTHORISED)
    assert repo.put_account(policy, "b1", name="新华社北京").name == "新华社北京"
    assert repo.put_account(policy, "b2", name="新华社", subject_id=AUTHORISED).name == "新华社"
    # other fields and a name given again unchanged are not checked
    repo.put_account(policy, "b1", name="新华社北京", followers=20)
    assert verify(repo) == []


def test_adding_a_protected_name_sends_each_account_that_holds_it_to_review(
    repo: SqlRepository, policy: Policy
) -> None:
    repo.put_account(policy, "holder", name="新華社 北京", followers=1_000, now=T0)
    repo.put_account(policy, "owner", name="新华社", subject_id=AUTHORISED, now=T0)
    repo.put_account(policy, "other", name="人民日报", subject_id="S2", now=T0)
    repo.put_account(policy, "both", name="新华社人民日报", subject_id="S3", now=T0)
    added = repo.add_protected_name(
        policy,
        name="新华社",
        kind="organisation",
        subject_ids=[AUTHORISED],
        by="k-admin",
        now=T0 + HOUR,
    )
    assert [(h.account_id) for h in added.holders] == ["both", "holder"]
    items = {i.account_id: i for i in repo.list_items(policy, kind="impersonation").items}
    assert set(items) == {"both", "holder"}
    item = items["holder"]
    assert (item.head, item.severity, item.reach, item.post_id) == (
        "impersonation",
        "review",
        1_000,
        None,
    )
    used = {"id": added.id, "name": "新华社", "kind": "organisation"}
    assert item.evidence == {"basis": "art8", "name": "新華社 北京", "protected": [used]}
    assert {h.item_id for h in added.holders} == {i.id for i in items.values()}

    # a second entry the name holds joins the account's open item
    second = repo.add_protected_name(
        policy, name="人民日报", kind="organisation", subject_ids=["S2"], by="k-admin"
    )
    assert [(h.account_id, h.item_id) for h in second.holders] == [("both", items["both"].id)]
    joined = repo.get_item(policy, items["both"].id)
    assert joined.evidence is not None
    assert [p["name"] for p in joined.evidence["protected"]] == ["新华社", "人民日报"]

    # one entry per folded name
    with pytest.raises(ConflictError, match=rf"protected already \(entry {added.id}\)"):
        repo.add_protected_name(policy, name="新 華 社", kind="organ", subject_ids=[], by="k2")

    records = [(e.kind, e.subject, e.payload) for e in repo.audit_entries()]
    assert (
        "protected.added",
        f"protected:{added.id}",
        {
            "name": "新华社",
            "kind": "organisation",
            "subjects": [registration.subject_digest(AUTHORISED)],
            "by": "k-admin",
        },
    ) in records
    enqueued = {s for k, s, _ in records if k == "review.enqueued"}
    assert {f"item:{i.id}" for i in items.values()} <= enqueued
    assert ("review.grown", f"item:{items['both'].id}") in {(k, s) for k, s, _ in records}
    assert verify(repo) == []


def test_a_confirmed_impersonation_suspends_the_account_until_the_deadline_to_correct_it(
    repo: SqlRepository, policy: Policy
) -> None:
    repo.put_account(policy, "holder", name="姚明球迷会官方", now=T0)
    repo.add_protected_name(
        policy, name="姚明", kind="person", subject_ids=[], by="k-admin", now=T0
    )
    (item,) = repo.list_items(policy, kind="impersonation").items
    basis = policy.registration.protected_basis
    decision = repo.decide(policy, item.id, "r1", "confirm", "impersonation", basis, now=T0 + HOUR)
    assert decision.credits[0].delta == -policy.credit.deductions["impersonation"]
    suspended = {d.kind: d for d in decision.dispositions}["suspend_service"]
    step = next(s for s in policy.dispositions if s.kind == "suspend_service")
    assert suspended.basis == "art8"
    assert suspended.ends_at == T0 + HOUR + timedelta(days=step.days or 0)
    # it stops publishing until its end, as the ladder's other stops do
    standing = repo.account_standings([], policy.publishing_stops, now=T0 + 2 * HOUR)
    assert [s.kind for s in standing["holder"].stops] == ["suspend_service"]
    # the platform reads the deadline from the feed
    feed = repo.disposition_changes()
    assert ("suspend_service", suspended.ends_at) in {
        (c.disposition.kind, c.disposition.ends_at) for c in feed.changes
    }
    # an upheld appeal lifts it with the decision, and nothing calls for it again
    appeal = repo.file_appeal(
        policy,
        account_id="holder",
        item_id=item.id,
        reason="已获授权",
        filed_by="k",
        now=T0 + 2 * HOUR,
    )
    upheld = repo.decide_appeal(policy, appeal.id, "r2", "uphold", None, now=T0 + 3 * HOUR)
    assert "suspend_service" in {getattr(r, "kind", None) for r in upheld.reversed}
    assert repo.get_account(policy, "holder", now=T0 + 3 * HOUR).dispositions == []
    assert verify(repo) == []


def test_a_rename_under_way_while_an_entry_is_added_is_sent_to_review(
    postgres_url: str, policy: Policy
) -> None:
    """A rename checked before an entry was added, and committed after the entry's transaction
    read the names that hold it, would slip past both: the entry waits for the renames under
    way, and finds the new name."""
    upgrade(postgres_url)
    renamer, adder = (open_repository(postgres_url, 10.0, policy.review) for _ in range(2))
    renamer.put_account(policy, "a1", name="小号", subject_id="S1")
    checked, entry_under_way = threading.Event(), threading.Event()

    @event.listens_for(adder.engine, "before_cursor_execute")
    def locking(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        if "pg_advisory_xact_lock(" in statement:
            entry_under_way.set()

    @event.listens_for(adder.engine, "after_cursor_execute")
    def read(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        if statement.startswith("SELECT accounts.account_id"):
            entry_under_way.set()

    @event.listens_for(renamer.engine, "commit")
    def committing(_conn: object) -> None:
        # the rename, checked, commits only once the entry's transaction is under way
        checked.set()
        entry_under_way.wait(timeout=30)

    added: list[views.ProtectedNameAdded] = []
    rename = threading.Thread(
        target=renamer.put_account, args=(policy, "a1"), kwargs={"name": "新华社北京"}
    )

    def add() -> None:
        added.append(
            adder.add_protected_name(
                policy, name="新华社", kind="organisation", subject_ids=[], by="k"
            )
        )

    try:
        rename.start()
        assert checked.wait(timeout=30)
        adding = threading.Thread(target=add)
        adding.start()
        rename.join()
        adding.join()
        assert adder.get_account(policy, "a1").name == "新华社北京"
        assert [h.account_id for h in added[0].holders] == ["a1"]
    finally:
        renamer.close()
        adder.close()


def test_entries_are_listed_and_removed_with_who_and_the_items_stay(
    repo: SqlRepository, policy: Policy
) -> None:
    repo.put_account(policy, "holder", name="外交部发言人")
    first = repo.add_protected_name(
        policy, name="外交部", kind="organ", subject_ids=["S2", "S1"], by="k-admin"
    )
    second = repo.add_protected_name(
        policy, name="姚明", kind="person", subject_ids=[], by="k-admin"
    )
    listed = repo.protected_names()
    assert [(e.id, e.name, e.kind) for e in listed] == [
        (first.id, "外交部", "organ"),
        (second.id, "姚明", "person"),
    ]
    assert listed[0].subjects == sorted(registration.subject_digest(s) for s in ("S1", "S2"))
    assert listed[1].subjects == [] and listed[0].created_by == "k-admin"

    repo.remove_protected_name(policy, first.id, "k-other")
    assert [e.id for e in repo.protected_names()] == [second.id]
    assert repo.check_registration(policy, "外交部发言人", "x").allowed
    # the item it opened stays, to be decided on what the name held
    (item,) = repo.list_items(policy, kind="impersonation").items
    assert item.account_id == "holder"
    with pytest.raises(NotFoundError, match=f"no protected name {first.id}"):
        repo.remove_protected_name(policy, first.id, "k-other")
    (removed,) = [e for e in repo.audit_entries() if e.kind == "protected.removed"]
    assert (removed.subject, removed.payload) == (
        f"protected:{first.id}",
        {"name": "外交部", "kind": "organ", "by": "k-other"},
    )
    # the name is free to be protected again, now for other subjects
    again = repo.add_protected_name(
        policy, name="外交部", kind="organ", subject_ids=["S9"], by="k-admin"
    )
    assert again.id != first.id and codes(repo, policy, "外交部", "S1") == ["name_protected"]
    assert verify(repo) == []


def test_the_migration_goes_down_and_up_again(database_url: str, policy: Policy) -> None:
    upgrade(database_url)
    repo = open_repository(database_url, 5.0, policy.review)
    try:
        repo.add_protected_name(
            policy, name="新华社", kind="organisation", subject_ids=["S1"], by="k"
        )
    finally:
        repo.close()
    engine = make_engine(database_url, 5.0)
    try:
        with engine.begin() as connection:
            migrate(connection, "0022_followers_at", down=True)
            tables = set(inspect(connection).get_table_names())
            assert not {"protected_names", "protected_name_subjects"} & tables
            # SQLite keeps the drops of a downgrade a revision further down refused: the next
            # try, from this revision again, finds nothing to drop
            config = alembic_config()
            config.attributes["connection"] = connection
            command.stamp(config, "0023_protected_names")
            migrate(connection, "0022_followers_at", down=True)
    finally:
        engine.dispose()
    upgrade(database_url)
    repo = open_repository(database_url, 5.0, policy.review)
    try:
        assert repo.protected_names() == []
        assert repo.check_registration(policy, "新华社", "S2").allowed
    finally:
        repo.close()


# --- the API --------------------------------------------------------------------------------


def test_admin_keys_edit_the_entries_and_the_trust_team_reads_them(api: Api) -> None:
    admin = api.headers(api.new_key("admin"))
    reviewer = api.headers(api.new_key("reviewer"))
    publisher = api.headers()
    body = {"name": "新华社", "kind": "organisation", "subject_ids": ["91110000-ma01x"]}
    for headers in (publisher, reviewer):
        refused = api.client.post("/v1/protected-names", json=body, headers=headers)
        assert refused.status_code == 403, refused.text
    assert api.client.get("/v1/protected-names", headers=publisher).status_code == 403
    assert api.client.get("/v1/protected-names", headers=reviewer).json() == []
    assert api.client.post("/v1/protected-names", json=body).status_code == 401

    put = api.client.put("/v1/accounts/acc1", json={"name": "新華社 北京"}, headers=publisher)
    assert put.status_code == 200
    added = api.client.post("/v1/protected-names", json=body, headers=admin)
    assert added.status_code == 201, added.text
    entry = added.json()
    assert (entry["name"], entry["kind"], entry["subjects"]) == (
        "新华社",
        "organisation",
        [registration.subject_digest(AUTHORISED)],
    )
    (holder,) = entry["holders"]
    assert holder["account_id"] == "acc1"
    item = api.client.get(f"/v1/review/items/{holder['item_id']}", headers=reviewer).json()
    assert (item["kind"], item["account_id"], item["evidence"]["basis"]) == (
        "impersonation",
        "acc1",
        "art8",
    )
    listed = api.client.get("/v1/protected-names", headers=reviewer).json()
    assert [e["id"] for e in listed] == [entry["id"]] and "holders" not in listed[0]

    again = api.client.post("/v1/protected-names", json=body, headers=admin)
    assert again.status_code == 409
    assert again.json()["detail"] == (
        f"'新华社' is protected already (entry {entry['id']}), as the same name once folded"
    )
    url = f"/v1/protected-names/{entry['id']}"
    assert api.client.delete(url, headers=reviewer).status_code == 403
    assert api.client.delete(url, headers=admin).status_code == 204
    gone = api.client.delete(url, headers=admin)
    assert gone.status_code == 404
    assert gone.json()["detail"] == f"no protected name {entry['id']}"
    assert api.client.get("/v1/protected-names", headers=reviewer).json() == []


def test_a_bad_entry_is_refused_at_its_field(api: Api) -> None:
    admin = api.headers(api.new_key("admin"))
    least = api.services.scoring.policy.registration.protected_min_chars
    cases = [
        ({"name": "《党》", "kind": "organ"}, ["body", "name"]),
        ({"name": "国" * 101, "kind": "organ"}, ["body", "name"]),
        ({"name": " ", "kind": "organ"}, ["body", "name"]),
        ({"name": "新华社", "kind": "company"}, ["body", "kind"]),
        ({"name": "新华社", "kind": "organ", "subject_ids": [""]}, ["body", "subject_ids", 0]),
        ({"name": "新华社", "kind": "organ", "subject_ids": ["s"] * 101}, ["body", "subject_ids"]),
    ]
    for body, loc in cases:
        answer = api.client.post("/v1/protected-names", json=body, headers=admin)
        assert answer.status_code == 422, (body, answer.text)
        assert answer.json()["detail"][0]["loc"] == loc, body
    short = api.client.post(
        "/v1/protected-names", json={"name": "《党》", "kind": "organ"}, headers=admin
    )
    assert short.json()["detail"][0]["msg"].startswith(
        f"the name folds to '党', 1 letters or digits: a protected name folds to {least} to 100"
    )
    assert api.client.get("/v1/protected-names", headers=admin).json() == []


def test_the_check_and_a_rename_are_refused_in_the_same_words(api: Api) -> None:
    admin = api.headers(api.new_key("admin"))
    headers = api.headers()
    body = {"name": "新华社", "kind": "organisation", "subject_ids": [AUTHORISED]}
    entry = api.client.post("/v1/protected-names", json=body, headers=admin).json()
    check = {"name": "新华社福建", "subject_id": "other"}
    refused = api.client.post("/v1/registrations/check", json=check, headers=headers).json()
    detail = words("name_protected", name="新华社", kind="organisation", entry_id=entry["id"])
    assert refused == {"allowed": False, "reasons": [{"code": "name_protected", "detail": detail}]}
    allowed = {"name": "新华社福建", "subject_id": AUTHORISED}
    assert api.client.post("/v1/registrations/check", json=allowed, headers=headers).json() == {
        "allowed": True,
        "reasons": [],
    }
    url = "/v1/accounts/acc1"
    assert api.client.put(url, json={"subject_id": "other"}, headers=headers).status_code == 200
    rename = api.client.put(url, json={"name": "新华社福建"}, headers=headers)
    assert rename.status_code == 409
    assert rename.json() == {"detail": detail}
    ok = api.client.put("/v1/accounts/acc2", json=allowed, headers=headers)
    assert ok.status_code == 200 and ok.json()["name"] == "新华社福建"
