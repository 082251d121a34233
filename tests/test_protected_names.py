"""Protected names (art8, its second paragraph): the entries' rules, their storage on SQLite and
on PostgreSQL (the registration check, renames, the items opened for the accounts that hold an
entry, subjects stored before normalisation, a suspension lifted by a correction and settled at
its end, once across processes, the chained records, the migrations) and their API (roles,
errors, the check's words, the feed, a server process's sweep)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from alembic import command
from servicekit import Api, before_keyed_digests, migrate, unkeyed_digest, verified, wait_for
from sqlalchemy import event, inspect, text

from service import security
from service.policy import Policy
from service.policy.governance import DispositionStep
from service.review import dispositions, protected, registration, views
from service.review.items import ConflictError, NotFoundError
from service.review.protected import EntryNameError
from service.review.refusals import words
from service.storage import SqlRepository, StorageError, open_repository, upgrade
from service.storage.database import alembic_config, make_engine
from service.storage.transaction import Tx, lock_protected_names, lock_subject
from service.subject_key import installed

T0 = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
AUTHORISED = "91110000MA01X"
REFUSED_WORDS = (
    "the name holds '新华社', a protected organisation name (entry {entry}) that the subject "
    "is not authorised to use (art8)"
)


def verify(repo: SqlRepository) -> list[str]:
    return verified(repo)


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
    assert entry.subjects == [installed().digest(AUTHORISED)]
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
            "subjects": [installed().digest(AUTHORISED)],
            # given normalised already: its stripped form is the same digest
            "stripped_subjects": [],
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


def test_an_impersonation_is_confirmed_on_its_own_item_and_its_item_as_nothing_else(
    repo: SqlRepository, policy: Policy
) -> None:
    """art8's suspension is lifted by a correction of the name and settled at its end against
    the protected names an ``impersonation`` item holds: confirmed as ``impersonation`` on a
    report about an account, it suspended the account for 15 days, publishing stopped, that
    a new name did not lift and no end settled. Another category on an ``impersonation``
    item closed it charging that, and art8's suspension with notice never came."""
    basis = policy.registration.protected_basis
    repo.put_account(policy, "reported", name="新华社官方", now=T0)
    report = repo.file_report(
        policy,
        post_id=None,
        account_id="reported",
        category="impersonation",
        text_="冒充新华社",
        reporter="k",
        now=T0,
    )
    with pytest.raises(ConflictError, match=f"item {report.item_id} is of kind 'report'"):
        repo.decide(policy, report.item_id, "r1", "confirm", "impersonation", basis, now=T0)
    repo.put_account(policy, "holder", name="姚明球迷会官方", now=T0)
    repo.add_protected_name(policy, name="姚明", kind="person", subject_ids=[], by="k", now=T0)
    (held,) = repo.list_items(policy, kind="impersonation").items
    with pytest.raises(ConflictError, match=f"item {held.id} is of kind 'impersonation'"):
        repo.decide(policy, held.id, "r1", "confirm", "rumor", "art18.6", now=T0)
    for item_id in (report.item_id, held.id):
        assert repo.get_item(policy, item_id).status == "open"
    for account in ("reported", "holder"):
        assert repo.get_account(policy, account, now=T0 + HOUR).dispositions == []
    # the report is dismissed, or confirmed as what else it is, and the item as impersonation
    dismissed = repo.decide(policy, report.item_id, "r1", "dismiss", None, None, now=T0 + HOUR)
    assert dismissed.status == "dismissed"
    confirmed = repo.decide(policy, held.id, "r1", "confirm", "impersonation", basis, now=T0)
    assert "suspend_service" in {d.kind for d in confirmed.dispositions}
    assert verify(repo) == []


def test_the_end_of_a_suspension_terminates_an_uncorrected_name_and_the_policy_names_the_step(
    policy: Policy,
) -> None:
    assert protected.suspensions(policy.dispositions) == ["suspend_service"]
    step = protected.termination(policy)
    assert (step.kind, step.days, step.stops_publishing) == ("close_account", None, True)
    assert protected.at_deadline(held=True, terminated_already=False) == "terminated"
    assert protected.at_deadline(held=True, terminated_already=True) == "closed_already"
    assert protected.at_deadline(held=False, terminated_already=False) == "cleared"
    rules = policy.registration.model_copy(update={"protected_uncorrected": "terminate"})
    with pytest.raises(ValueError, match=r"unknown dispositions \['terminate'\]"):
        Policy.model_validate({**policy.model_dump(), "registration": rules.model_dump()})


def _suspend(repo: SqlRepository, policy: Policy, *accounts: str) -> dict[str, views.Disposition]:
    """Each account named after 姚明 (an entry only ``AUTHORISED`` may use), its impersonation
    confirmed by r1 at ``T0 + HOUR``: its art8 suspension, by account."""
    for account in accounts:
        repo.put_account(policy, account, name=f"姚明球迷会{account}", now=T0)
    repo.add_protected_name(
        policy, name="姚明", kind="person", subject_ids=[AUTHORISED], by="k-admin", now=T0
    )
    basis = policy.registration.protected_basis
    suspended = {}
    for item in repo.list_items(policy, kind="impersonation", now=T0).items:
        assert item.account_id is not None
        decision = repo.decide(
            policy, item.id, "r1", "confirm", "impersonation", basis, now=T0 + HOUR
        )
        (suspension,) = [d for d in decision.dispositions if d.kind == "suspend_service"]
        suspended[item.account_id] = suspension
    return suspended


def test_a_profile_change_that_corrects_the_name_lifts_the_suspension_as_corrected(
    repo: SqlRepository, policy: Policy
) -> None:
    suspended = _suspend(repo, policy, "renamed", "authorised", "unchanged")
    during = T0 + 2 * HOUR
    # followers, or a subject the entry does not authorise, leave the name as it was
    repo.put_account(policy, "renamed", followers=5, by="k-pub", now=during)
    repo.put_account(policy, "unchanged", subject_id="S-other", by="k-pub", now=during)
    account = repo.put_account(policy, "renamed", name="球迷会官方", by="k-pub", now=during)
    assert [d.kind for d in account.dispositions] == ["warning"]
    shown = {d.id: d for d in account.history if isinstance(d, views.Disposition)}
    lifted = shown[suspended["renamed"].id]
    assert (lifted.lifted_at, lifted.lifted_by, lifted.active) == (during, "k-pub", False)
    # the subject the entry authorises (in any spelling), given to an account without one
    account = repo.put_account(
        policy, "authorised", subject_id="91110000 ma01x", by="k-pub", now=during
    )
    assert [d.kind for d in account.dispositions] == ["warning"]
    kept = repo.get_account(policy, "unchanged", now=during)
    assert "suspend_service" in {d.kind for d in kept.dispositions}

    # the platform learns it from the feed, as it learns of an appeal's lifts
    lifts = [
        (c.disposition.account_id, c.disposition.kind, c.cause, c.appeal_id)
        for c in repo.disposition_changes().changes
        if c.change == "lifted"
    ]
    assert lifts == [
        ("renamed", "suspend_service", "corrected", None),
        ("authorised", "suspend_service", "corrected", None),
    ]
    records = [e.payload for e in repo.audit_entries() if e.kind == "disposition.lifted"]
    assert records[0] == {
        "disposition": suspended["renamed"].id,
        "kind": "suspend_service",
        "cause": "corrected",
        "name": "球迷会官方",
        "by": "k-pub",
    }
    standing = repo.account_standings([], policy.publishing_stops, now=during)
    assert set(standing) == {"unchanged"}
    # and their end terminates nothing: they were corrected
    after = suspended["unchanged"].ends_at
    assert after is not None
    assert repo.settle_deadlines(policy, now=after) == 1
    closed = repo.account_standings([], ["close_account"], now=after)
    assert set(closed) == {"unchanged"}
    assert verify(repo) == []


def test_a_name_uncorrected_at_the_deadline_terminates_the_service_once(
    database_url: str, repo: SqlRepository, policy: Policy
) -> None:
    suspended = _suspend(repo, policy, "kept", "late", "appealed")
    deadline = suspended["kept"].ends_at
    assert deadline is not None and deadline == suspended["late"].ends_at
    second = timedelta(seconds=1)
    # lifted on appeal before its end: never terminated
    appeal = repo.file_appeal(
        policy,
        account_id="appealed",
        item_id=suspended["appealed"].item_id or 0,
        reason="已获授权",
        filed_by="k",
        now=T0 + 2 * HOUR,
    )
    repo.decide_appeal(policy, appeal.id, "r2", "uphold", None, now=T0 + 3 * HOUR)
    assert repo.settle_deadlines(policy, now=deadline - second) == 0
    # renamed once the suspension had ended (nothing to lift), before a sweep: cleared
    repo.put_account(policy, "late", name="迟到的新名字", now=deadline + second)

    settled_at = deadline + 2 * second
    assert repo.settle_deadlines(policy, now=settled_at) == 1
    kept = repo.get_account(policy, "kept", now=settled_at)
    (closed,) = [d for d in kept.dispositions if d.kind == "close_account"]
    assert (closed.basis, closed.item_id, closed.decided_by, closed.ends_at) == (
        "art8",
        suspended["kept"].item_id,
        "r1",
        None,
    )
    assert closed.starts_at == settled_at
    for other in ("late", "appealed"):
        shown = repo.get_account(policy, other, now=settled_at).dispositions
        assert "close_account" not in {d.kind for d in shown}, other
    entry = repo.protected_names()[0]
    found = {e.subject: e.payload for e in repo.audit_entries() if e.kind == "protected.deadline"}
    assert found == {
        "account:kept": {
            "disposition": suspended["kept"].id,
            "kind": "suspend_service",
            "item": suspended["kept"].item_id,
            "ends_at": deadline.isoformat(),
            "name": "姚明球迷会kept",
            "protected": [{"id": entry.id, "name": "姚明", "kind": "person"}],
            "outcome": "terminated",
        },
        "account:late": {
            "disposition": suspended["late"].id,
            "kind": "suspend_service",
            "item": suspended["late"].item_id,
            "ends_at": deadline.isoformat(),
            "name": "迟到的新名字",
            "protected": [],
            "outcome": "cleared",
        },
    }
    # the platform carries it out from the feed; the publish path blocks the account
    (applied,) = [
        c for c in repo.disposition_changes().changes if c.disposition.kind == "close_account"
    ]
    assert (applied.change, applied.disposition.account_id, applied.cause) == (
        "applied",
        "kept",
        None,
    )
    standing = repo.account_standings([], policy.publishing_stops, now=settled_at)
    assert [s.kind for s in standing["kept"].stops] == ["close_account"]
    with pytest.raises(ConflictError, match="stays refused"):
        repo.put_account(policy, "kept", name="新名字", now=settled_at)

    # a later sweep, and one of a process started since, find nothing left to settle
    records = len(list(repo.audit_entries()))
    assert repo.settle_deadlines(policy, now=settled_at + timedelta(days=1)) == 0
    restarted = open_repository(database_url, 5.0, policy.review)
    try:
        assert restarted.settle_deadlines(policy, now=settled_at + timedelta(days=2)) == 0
    finally:
        restarted.close()
    assert len(list(repo.audit_entries())) == records

    # an upheld appeal of the confirmation lifts the termination with it
    appeal = repo.file_appeal(
        policy,
        account_id="kept",
        item_id=suspended["kept"].item_id or 0,
        reason="已获授权",
        filed_by="k",
        now=settled_at + HOUR,
    )
    upheld = repo.decide_appeal(policy, appeal.id, "r2", "uphold", None, now=settled_at + 2 * HOUR)
    assert "close_account" in {getattr(r, "kind", None) for r in upheld.reversed}
    assert repo.get_account(policy, "kept", now=settled_at + 2 * HOUR).dispositions == []
    assert verify(repo) == []


def test_two_processes_settle_a_deadline_once(database_url: str, policy: Policy) -> None:
    """Every server process sweeps: one that read an ended suspension, and finds it settled
    by another by the time it holds the account, leaves it."""
    upgrade(database_url)
    first, other = (open_repository(database_url, 5.0, policy.review) for _ in range(2))
    try:
        ends_at = _suspend(first, policy, "kept")["kept"].ends_at
        assert ends_at is not None
        after = ends_at + timedelta(seconds=1)
        raced: list[int] = []

        @event.listens_for(first.engine, "after_cursor_execute")
        def read(_conn: object, _cursor: object, statement: str, *_: object) -> None:
            # the other process settles it between this one's read and its write
            sweeping = statement.startswith("SELECT dispositions.id, dispositions.account_id")
            if sweeping and not raced:
                raced.append(other.settle_deadlines(policy, now=after))

        assert first.settle_deadlines(policy, now=after) == 0
        assert raced == [1]
        shown = first.get_account(policy, "kept", now=after).dispositions
        assert [d.kind for d in shown].count("close_account") == 1
        assert [e.kind for e in first.audit_entries()].count("protected.deadline") == 1
        assert verify(first) == []
    finally:
        first.close()
        other.close()


def test_an_account_whose_subject_was_stored_before_normalisation_is_authorised(
    repo: SqlRepository, policy: Policy
) -> None:
    spelling = "91110000-ma01x"

    def stored_before_normalisation(account: str, name: str) -> None:
        repo.put_account(policy, account, name=name, subject_id=f"placeholder-{account}")
        with repo.engine.begin() as db:
            db.execute(
                text("UPDATE accounts SET subject_digest = :d WHERE account_id = :a"),
                {"d": installed().stripped(spelling), "a": account},
            )

    stored_before_normalisation("old-holder", "新华社官方")
    stored_before_normalisation("old", "小号")
    repo.put_account(policy, "other-holder", name="新华社官方号", subject_id="S2")
    added = repo.add_protected_name(
        policy, name="新华社", kind="organisation", subject_ids=[spelling], by="k-admin"
    )
    # matched as the re-registration check matches it: the spelling it was given in
    assert [h.account_id for h in added.holders] == ["other-holder"]
    assert repo.put_account(policy, "old", name="新华社福建").name == "新华社福建"
    # the entry lists the subject once, normalised; its record keeps both forms
    assert added.subjects == [installed().digest(AUTHORISED)]
    assert repo.protected_names()[0].subjects == added.subjects
    (record,) = [e.payload for e in repo.audit_entries() if e.kind == "protected.added"]
    assert record["stripped_subjects"] == [installed().stripped(spelling)]
    # the old subject was written outside the service, which the chain shows until a profile
    # chains it again
    assert [p.split(" is ")[0] for p in verify(repo)] == ["account old-holder: subject_digest"]


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


def test_entries_are_listed_and_removed_with_who_and_the_items_they_alone_held_go(
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
    assert listed[0].subjects == sorted(installed().digest(s) for s in ("S1", "S2"))
    assert listed[1].subjects == [] and listed[0].created_by == "k-admin"

    repo.remove_protected_name(policy, first.id, "k-other")
    assert [e.id for e in repo.protected_names()] == [second.id]
    assert repo.check_registration(policy, "外交部发言人", "x").allowed
    # the item it opened is left nothing to decide: dismissed by the remover, saying why
    assert repo.list_items(policy, kind="impersonation").items == []
    (item,) = repo.list_items(policy, kind="impersonation", status="dismissed").items
    assert item.account_id == "holder"
    (decision,) = [e.payload for e in repo.audit_entries() if e.kind == "review.decision"]
    assert (decision["action"], decision["reviewer"]) == ("dismiss", "k-other")
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


def test_removing_an_entry_releases_the_accounts_it_alone_held(
    repo: SqlRepository, policy: Policy
) -> None:
    """An account suspended, or sent to review, for a name the admins no longer protect is
    released with the entry; one whose name holds another entry is not."""
    names = {"only": "姚明球迷会", "both": "新华社姚明球迷会", "open": "姚明后援会"}
    for account, name in names.items():
        repo.put_account(policy, account, name=name, now=T0)
    yao = repo.add_protected_name(
        policy, name="姚明", kind="person", subject_ids=[], by="k", now=T0
    )
    repo.add_protected_name(
        policy, name="新华社", kind="organisation", subject_ids=[], by="k", now=T0
    )
    basis = policy.registration.protected_basis
    suspended = {}
    for item in repo.list_items(policy, kind="impersonation", now=T0).items:
        if item.account_id != "open":
            decided = repo.decide(
                policy, item.id, "r1", "confirm", "impersonation", basis, now=T0 + HOUR
            )
            (suspension,) = [d for d in decided.dispositions if d.kind == "suspend_service"]
            suspended[item.account_id] = suspension
    removed_at = T0 + 2 * HOUR
    repo.remove_protected_name(policy, yao.id, "k-remover", now=removed_at)

    shown = repo.get_account(policy, "only", now=removed_at)
    assert "suspend_service" not in {d.kind for d in shown.dispositions}
    (lifted,) = [d for d in shown.history if getattr(d, "id", None) == suspended["only"].id]
    assert isinstance(lifted, views.Disposition)
    assert (lifted.lifted_at, lifted.lifted_by) == (removed_at, "k-remover")
    kept = repo.get_account(policy, "both", now=removed_at)
    assert "suspend_service" in {d.kind for d in kept.dispositions}
    # the platform learns it from the feed, with its cause
    lifts = [
        (c.disposition.account_id, c.disposition.kind, c.cause, c.appeal_id)
        for c in repo.disposition_changes().changes
        if c.change == "lifted"
    ]
    assert lifts == [("only", "suspend_service", "entry_removed", None)]
    (record,) = [e.payload for e in repo.audit_entries() if e.kind == "disposition.lifted"]
    assert record == {
        "disposition": suspended["only"].id,
        "kind": "suspend_service",
        "cause": "entry_removed",
        "entry": yao.id,
        "name": "姚明球迷会",
        "by": "k-remover",
    }
    # the open item about the entry alone is dismissed by the remover; the publish path frees
    # the account
    (dismissed,) = repo.list_items(policy, kind="impersonation", status="dismissed").items
    assert dismissed.account_id == "open"
    standing = repo.account_standings([], policy.publishing_stops, now=removed_at)
    assert set(standing) == {"both"}
    # the end settles nothing for the account released, and terminates the other
    ends_at = suspended["both"].ends_at
    assert ends_at is not None
    assert repo.settle_deadlines(policy, now=ends_at) == 1
    assert set(repo.account_standings([], ["close_account"], now=ends_at)) == {"both"}
    assert verify(repo) == []


def test_the_advisory_locks_are_each_schemas_own(
    postgres_url: str, other_postgres_url: str, policy: Policy
) -> None:
    """PostgreSQL's advisory locks are the database's: a schema's protected names and subjects
    must not wait for another schema's writers (each test has a schema of its own; a staging
    copy may share a production database), while its own still wait."""
    upgrade(postgres_url)
    upgrade(other_postgres_url)
    # a second's lock_timeout: a write that waits for the lock fails instead of hanging
    holder, other, same = (
        open_repository(url, 1.0, policy.review)
        for url in (postgres_url, other_postgres_url, postgres_url)
    )
    try:
        with holder._writing() as session:
            tx = Tx(session, T0, policy)
            lock_protected_names(tx)
            lock_subject(tx, installed().digest("S1"))
            added = other.add_protected_name(
                policy, name="新华社", kind="organisation", subject_ids=[], by="k"
            )
            assert added.name == "新华社"
            assert other.put_account(policy, "a1", subject_id="S1").account_id == "a1"
            with pytest.raises(StorageError):
                same.add_protected_name(
                    policy, name="新华社", kind="organisation", subject_ids=[], by="k"
                )
            with pytest.raises(StorageError):
                same.put_account(policy, "a1", subject_id="S1")
    finally:
        for repository in (holder, other, same):
            repository.close()


def _protected_before_keyed_digests(url: str, policy: Policy) -> None:
    """An entry for the subject S1, stored as a release before migration 0028 stored it."""
    upgrade(url)
    before_keyed_digests(url)
    repo = open_repository(url, 5.0, policy.review)
    try:
        added = repo.add_protected_name(
            policy, name="新华社", kind="organisation", subject_ids=[], by="k"
        )
        with repo.engine.begin() as db:
            db.execute(
                text("INSERT INTO protected_name_subjects VALUES (:e, :d, false)"),
                {"e": added.id, "d": unkeyed_digest("S1")},
            )
    finally:
        repo.close()


def test_the_migration_goes_down_and_up_again(database_url: str, policy: Policy) -> None:
    _protected_before_keyed_digests(database_url, policy)
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


def test_the_deadline_migration_goes_down_and_up_again(database_url: str, policy: Policy) -> None:
    _protected_before_keyed_digests(database_url, policy)
    engine = make_engine(database_url, 5.0)
    try:
        with engine.begin() as connection:
            migrate(connection, "0023_protected_names", down=True)
            found = inspect(connection)
            assert "settled_at" not in {c["name"] for c in found.get_columns("dispositions")}
            subjects = {c["name"] for c in found.get_columns("protected_name_subjects")}
            assert subjects == {"entry_id", "subject_digest"}
            indexes = {i["name"] for i in found.get_indexes("dispositions")}
            assert "ix_dispositions_unsettled" not in indexes
            config = alembic_config()
            config.attributes["connection"] = connection
            command.stamp(config, "0024_correction_deadlines")
            migrate(connection, "0023_protected_names", down=True)
    finally:
        engine.dispose()
    upgrade(database_url)
    repo = open_repository(database_url, 5.0, policy.review)
    try:
        # an entry from before keeps its subject, listed
        (entry,) = repo.protected_names()
        assert entry.subjects == [installed().digest("S1")]
        assert repo.settle_deadlines(policy) == 0
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
        [installed().digest(AUTHORISED)],
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


def test_a_retry_of_an_entry_added_or_removed_with_its_key_gets_the_first_answer(
    api: Api,
) -> None:
    """An admin whose add or removal got no answer retries it with the same Idempotency-Key:
    it is made once, and the retry gets the answer the write got (201 with the entry, not 409;
    204, not 404); another body, or another removal, on the key is refused at the header."""
    admin = api.headers(api.new_key("admin"))
    keyed = {**admin, "Idempotency-Key": "entry-1"}
    body = {"name": "新华社", "kind": "organisation", "subject_ids": ["91110000-ma01x"]}
    added = api.client.post("/v1/protected-names", json=body, headers=keyed)
    retried = api.client.post("/v1/protected-names", json=body, headers=keyed)
    assert (added.status_code, retried.status_code) == (201, 201), retried.text
    assert retried.json() == added.json()
    other = api.client.post("/v1/protected-names", json={**body, "kind": "organ"}, headers=keyed)
    assert other.status_code == 422
    assert other.json()["detail"][0]["loc"] == ["header", "Idempotency-Key"]
    listed = api.client.get("/v1/protected-names", headers=admin).json()
    assert [e["id"] for e in listed] == [added.json()["id"]]

    url = f"/v1/protected-names/{added.json()['id']}"
    removal = {**admin, "Idempotency-Key": "removal-1"}
    assert api.client.delete(url, headers=removal).status_code == 204
    again = api.client.delete(url, headers=removal)
    assert again.status_code == 204, again.text
    assert api.client.get("/v1/protected-names", headers=admin).json() == []
    reused = api.client.delete("/v1/protected-names/999", headers=removal)
    assert reused.status_code == 422
    assert reused.json()["detail"][0]["loc"] == ["header", "Idempotency-Key"]
    repository = api.services.scoring.repository
    assert isinstance(repository, SqlRepository)
    (removed,) = [e for e in repository.audit_entries() if e.kind == "protected.removed"]
    assert removed.subject == f"protected:{added.json()['id']}"


def test_a_bad_entry_is_refused_at_its_field(api: Api) -> None:
    admin = api.headers(api.new_key("admin"))
    least = api.services.scoring.policy.registration.protected_min_chars
    cases = [
        ({"name": "《党》", "kind": "organ"}, ["body", "name"]),
        ({"name": "国" * 101, "kind": "organ"}, ["body", "name"]),
        ({"name": " ", "kind": "organ"}, ["body", "name"]),
        ({"name": "新华社", "kind": "company"}, ["body", "kind"]),
        ({"name": "新华社", "kind": "organ", "subject_ids": [""]}, ["body", "subject_ids", 0]),
        # a placeholder normalises to nothing: it would authorise every account given one
        (
            {"name": "新华社", "kind": "organ", "subject_ids": [AUTHORISED, "- -"]},
            ["body", "subject_ids", 1],
        ),
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


def test_a_rename_through_the_api_lifts_the_suspension_and_the_feed_says_why(api: Api) -> None:
    admin = api.headers(api.new_key("admin"))
    reviewer = api.headers(api.new_key("reviewer"))
    publisher = api.headers()
    url = "/v1/accounts/acc1"
    assert api.client.put(url, json={"name": "姚明球迷会"}, headers=publisher).status_code == 200
    body = {"name": "姚明", "kind": "person"}
    (holder,) = api.client.post("/v1/protected-names", json=body, headers=admin).json()["holders"]
    policy = api.services.scoring.policy
    api.services.review.decide(policy, holder["item_id"], "r1", "confirm", "impersonation", "art8")
    renamed = api.client.put(url, json={"name": "球迷会"}, headers=publisher)
    assert renamed.status_code == 200
    assert "suspend_service" not in {d["kind"] for d in renamed.json()["dispositions"]}
    # who lifted it: the key that sent the correction, shown to the trust team alone
    signed = api.client.get("/v1/dispositions", headers=reviewer).json()
    (lift,) = [c for c in signed["changes"] if c["change"] == "lifted"]
    shown = lift["disposition"]
    assert (lift["cause"], lift["appeal_id"], shown["kind"], shown["lifted_by"]) == (
        "corrected",
        None,
        "suspend_service",
        api.key.split("_")[1],
    )
    unsigned = api.client.get("/v1/dispositions", headers=publisher).json()
    (lift,) = [c for c in unsigned["changes"] if c["change"] == "lifted"]
    assert (lift["cause"], lift["disposition"]["lifted_by"]) == ("corrected", None)


def test_a_server_process_terminates_the_service_once_the_deadline_passes(api: Api) -> None:
    review, policy = api.services.review, api.services.scoring.policy
    step = next(s for s in policy.dispositions if s.kind == "suspend_service")
    confirmed = datetime.now(UTC) - timedelta(days=(step.days or 0) + 1)
    review.put_account(policy, "acc1", name="姚明球迷会", now=confirmed)
    review.add_protected_name(
        policy, name="姚明", kind="person", subject_ids=[], by="k", now=confirmed
    )
    (item,) = review.list_items(policy, kind="impersonation").items
    review.decide(policy, item.id, "r1", "confirm", "impersonation", "art8", now=confirmed)

    def terminated() -> bool:
        shown = review.get_account(policy, "acc1").dispositions
        return "close_account" in {d.kind for d in shown}

    # the process's maintenance (every storage_retry_s) settles it
    wait_for(terminated)
    api.services.scoring.recover()
    record = api.score({"id": "after", "text": "今天天气很好", "account_id": "acc1"}).json()
    assert record["decision"] == "block"
    assert record["reasons"][0]["code"] == "art8.close_account"


def test_an_entry_added_and_removed_with_a_console_users_key_names_that_user(api: Api) -> None:
    """The entry's author, its removal's record and the dismissal of the item it alone held
    name the person whose key it was, as they would had the person acted in the console."""
    repository = api.services.scoring.repository
    admin = api.headers(security.create_key(repository, "admin", owner="wang"))
    put = api.client.put("/v1/accounts/acc1", json={"name": "新华社北京"}, headers=api.headers())
    assert put.status_code == 200
    body = {"name": "新华社", "kind": "organisation", "subject_ids": []}
    added = api.client.post("/v1/protected-names", json=body, headers=admin)
    assert added.status_code == 201 and added.json()["created_by"] == "wang"
    removed = api.client.delete(f"/v1/protected-names/{added.json()['id']}", headers=admin)
    assert removed.status_code == 204
    said = {
        entry.kind: entry.payload.get("by", entry.payload.get("reviewer"))
        for entry in api.services.review.audit_entries()
        if entry.kind in ("protected.added", "protected.removed", "review.decision")
    }
    assert said == {
        "protected.added": "wang",
        "protected.removed": "wang",
        "review.decision": "wang",
    }
