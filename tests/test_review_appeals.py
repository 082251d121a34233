"""Appeals on SQLite and PostgreSQL: one per violation however many are filed at once (and what
migration 0008 does with the twins filed before it), an upheld appeal undoing what its decision
caused and no more (art13), whatever basis the ladder gives its steps since (and what
migration 0034 marks of the dispositions from before it), its clean period then counted from
the violation left standing, and listing cursors no listing gave out."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic import command
from servicekit import Api, migrate, open_api, record
from sqlalchemy import Boolean, Connection, column, inspect, select, table, text
from test_console import sign_in

from service.pipeline import Pipeline
from service.policy import Policy, load_policy
from service.review import chain, credit, views
from service.review.items import ConflictError
from service.settings import Settings
from service.storage import Pending, SqlRepository, open_repository, upgrade
from service.storage.database import alembic_config, make_engine

T0 = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
X_STEPS = {"close_account", "blacklist", "ban_reregistration"}
BAD_CURSORS = ("99999999999999999999999_1", "1e300_1", "-1e20_1")


def confirmed(
    repo: SqlRepository, policy: Policy, post_id: str, account: str, at: datetime
) -> views.Decision:
    """A blocked rumour of ``account``, confirmed at ``at``."""
    rec = record(post_id, "block").model_copy(update={"account_id": account})
    repo.save_records([Pending(rec, True, "帖子")])
    (item,) = [i for i in repo.list_items(policy, limit=1000).items if i.post_id == post_id]
    return repo.decide(policy, item.id, "r1", "confirm", "rumor", "art18.6", now=at)


def appeal_of(repo: SqlRepository, policy: Policy, made: views.Decision, at: datetime) -> int:
    account = made.credits[0].account_id
    filed = repo.file_appeal(
        policy, account_id=account, item_id=made.item_id, reason="误判", filed_by="k", now=at
    )
    return filed.id


def filed_for_holder(
    repo: SqlRepository, policy: Policy, made: views.Decision, at: datetime, by: str = "li"
) -> views.Appeal:
    """An appeal of ``made`` filed on its account's behalf by the trust-team member ``by``."""
    return repo.file_appeal(
        policy,
        account_id=made.credits[0].account_id,
        item_id=made.item_id,
        reason="代为申诉",
        filed_by=by,
        on_behalf=True,
        now=at,
    )


def active(repo: SqlRepository, policy: Policy, account: str, at: datetime) -> set[str]:
    return {d.kind for d in repo.get_account(policy, account, now=at).dispositions}


def test_appeals_of_one_violation_filed_at_once_store_one(
    repo: SqlRepository, policy: Policy
) -> None:
    made = confirmed(repo, policy, "p1", "acc1", T0)
    start = threading.Barrier(8)
    outcomes: list[str] = []

    def file() -> None:
        start.wait()
        try:
            repo.file_appeal(
                policy,
                account_id="acc1",
                item_id=made.item_id,
                reason="误判",
                filed_by="k",
                now=T0 + MINUTE,
            )
            outcomes.append("filed")
        except ConflictError as exc:
            outcomes.append(str(exc))

    threads = [threading.Thread(target=file) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.count("filed") == 1
    assert all("appealed already" in o for o in outcomes if o != "filed")
    assert len(repo.list_appeals().appeals) == 1


def test_an_appeal_filed_on_the_holders_behalf_and_rejected_leaves_the_holder_their_own(
    repo: SqlRepository, policy: Policy
) -> None:
    """A reviewer who files an appeal for another to reject uses up nothing of the holder's:
    the holder files their own after it, within the window counted from that rejection. One
    of each: a second of either, an appeal filed on the holder's behalf after the holder's,
    or the holder's beside one filed for them that is pending or upheld, is refused."""
    made = confirmed(repo, policy, "p1", "acc1", T0)
    window = timedelta(days=policy.appeals.file_within_days)
    staff = filed_for_holder(repo, policy, made, T0 + MINUTE)
    assert staff.on_behalf

    def holders(at: datetime) -> views.Appeal:
        return repo.file_appeal(
            policy, account_id="acc1", item_id=made.item_id, reason="误判", filed_by="k", now=at
        )

    with pytest.raises(ConflictError, match="appealed already"):
        holders(T0 + 2 * MINUTE)  # the pending one answers for the holder
    rejected_at = T0 + window - MINUTE
    repo.decide_appeal(policy, staff.id, "r2", "reject", "无据", now=rejected_at)
    own = holders(T0 + window + MINUTE)  # past the decision's window, not past the rejection's
    assert not own.on_behalf and own.status == "pending"
    for on_behalf in (False, True):
        with pytest.raises(ConflictError, match="appealed already"):
            repo.file_appeal(
                policy,
                account_id="acc1",
                item_id=made.item_id,
                reason="再次",
                filed_by="li",
                on_behalf=on_behalf,
                now=T0 + window + 2 * MINUTE,
            )
    upheld = repo.decide_appeal(policy, own.id, "r2", "uphold", None, now=T0 + window + 3 * MINUTE)
    assert upheld.reversed
    filed = [e.payload for e in repo.audit_entries() if e.kind == "appeal.filed"]
    assert [(p["filed_by"], p["on_behalf"]) for p in filed] == [("li", True), ("k", False)]
    assert chain.verify(repo.audit_entries(), repo.audit_head()) == []


def test_the_holders_appeal_waits_for_one_filed_on_their_behalf_and_ends_with_it_upheld(
    repo: SqlRepository, policy: Policy
) -> None:
    first = confirmed(repo, policy, "p1", "acc1", T0)
    second = confirmed(repo, policy, "p2", "acc1", T0 + MINUTE)
    for made in (first, second):
        filed_for_holder(repo, policy, made, T0 + 2 * MINUTE)
    (one, _) = repo.list_appeals().appeals
    repo.decide_appeal(policy, one.id, "r2", "uphold", None, now=T0 + 3 * MINUTE)
    for made in (first, second):
        with pytest.raises(ConflictError, match="appealed already"):
            appeal_of(repo, policy, made, T0 + 4 * MINUTE)
    # the holder's first: the trust team files none after it
    third = confirmed(repo, policy, "p3", "acc1", T0 + 5 * MINUTE)
    appeal = appeal_of(repo, policy, third, T0 + 6 * MINUTE)
    repo.decide_appeal(policy, appeal, "r2", "reject", None, now=T0 + 7 * MINUTE)
    with pytest.raises(ConflictError, match="appealed already"):
        filed_for_holder(repo, policy, third, T0 + 8 * MINUTE)


def test_a_disposition_the_other_violation_still_calls_for_runs_from_it_not_the_lifted_row(
    repo: SqlRepository, policy: Policy
) -> None:
    """The warning lifted with an upheld appeal is given again, on the violation left standing,
    for the days that violation would have brought: not to the lifted warning's end, which ran
    from the reversed violation. After it, nothing of the lifted row's end is left, and a new
    confirmation's warning runs from its own moment."""
    (warning,) = [s for s in policy.dispositions if s.kind == "warning"]
    assert warning.days is not None and warning.min_violations == 1
    days = timedelta(days=warning.days)

    def ends(account: str, at: datetime) -> datetime | None:
        shown = repo.get_account(policy, account, now=at).dispositions
        (found,) = [d for d in shown if d.kind == "warning"]
        return found.ends_at

    # the reversed violation first: the one left standing gives its warning its own days
    first = confirmed(repo, policy, "p1", "acc1", T0)
    later = confirmed(repo, policy, "p2", "acc1", T0 + days / 3)
    assert ends("acc1", T0 + days / 3) == T0 + days
    upheld = T0 + days / 2
    repo.decide_appeal(
        policy, appeal_of(repo, policy, first, upheld), "r2", "uphold", None, now=upheld
    )
    assert ends("acc1", upheld) == later.decided_at + days
    # the reversed violation last, after the other's warning ran out: none is given again
    done = confirmed(repo, policy, "q1", "acc2", T0)
    after = T0 + days + MINUTE
    reversed_ = confirmed(repo, policy, "q2", "acc2", after)
    assert ends("acc2", after) == after + days
    repo.decide_appeal(
        policy,
        appeal_of(repo, policy, reversed_, after + MINUTE),
        "r2",
        "uphold",
        None,
        now=after + MINUTE,
    )
    assert "warning" not in active(repo, policy, "acc2", after + MINUTE)
    assert done.dispositions[0].ends_at == T0 + days
    # a new confirmation, the warning lifted before: a new warning from its own moment
    again = after + 2 * MINUTE
    confirmed(repo, policy, "q3", "acc2", again)
    assert ends("acc2", again) == again + days


def test_the_notes_of_a_decision_and_of_an_appeal_are_chained_by_their_hash(
    repo: SqlRepository, policy: Policy
) -> None:
    """A note is free text kept in its table, as a reason is: the record holds its SHA-256, so
    a note edited in the table no longer matches what the chain says was written."""
    rec = record("p1", "block").model_copy(update={"account_id": "acc1"})
    repo.save_records([Pending(rec, True, "帖子")])
    (item,) = repo.list_items(policy).items
    repo.decide(policy, item.id, "r1", "confirm", "rumor", "art18.6", "与辟谣一致", now=T0)
    appeal = repo.file_appeal(
        policy, account_id="acc1", item_id=item.id, reason="误判", filed_by="k", now=T0
    )
    repo.decide_appeal(policy, appeal.id, "r2", "reject", "证据充分", now=T0 + MINUTE)
    with repo.engine.begin() as connection:
        connection.execute(text("UPDATE review_decisions SET note = '已改'"))
        connection.execute(text("UPDATE appeals SET note = NULL"))
    chained = {
        e.kind: e.payload["note_sha256"]
        for e in repo.audit_entries()
        if e.kind in ("review.decision", "appeal.decision")
    }
    assert chained == {
        "review.decision": chain.text_digest("与辟谣一致"),
        "appeal.decision": chain.text_digest("证据充分"),
    }


def test_upholding_one_of_eight_rumours_leaves_what_the_other_seven_call_for(
    repo: SqlRepository, policy: Policy
) -> None:
    made = [confirmed(repo, policy, f"p{n}", "acc1", T0 + n * MINUTE) for n in range(8)]
    assert [m.credits[0].credit for m in made[:3]] == [70, 25, 0]
    assert [m.credits[0].delta for m in made[3:]] == [0] * 5
    later = T0 + 10 * MINUTE
    upheld = repo.decide_appeal(
        policy, appeal_of(repo, policy, made[2], later), "r2", "uphold", None, now=later
    )
    (change,) = [c for c in upheld.reversed if isinstance(c, views.CreditChange)]
    # without the third, the fourth deducts 60 from 25: the floor all the same
    assert change.delta == 0
    account = repo.get_account(policy, "acc1", now=later)
    assert (account.credit, account.level) == (0, "X")
    assert active(repo, policy, "acc1", later) >= X_STEPS
    # the reversed violation no longer counts: a ninth is the eighth standing one
    ninth = confirmed(repo, policy, "p8", "acc1", later + MINUTE)
    assert ninth.credits[0].delta == 0
    assert chain.verify(repo.audit_entries(), repo.audit_head()) == []


def test_an_upheld_appeal_gives_back_what_the_account_would_have_without_the_violation(
    repo: SqlRepository, policy: Policy
) -> None:
    rules = policy.credit
    made = [confirmed(repo, policy, f"p{n}", "acc1", T0 + n * MINUTE) for n in range(3)]
    assert repo.get_account(policy, "acc1", now=T0 + 3 * MINUTE).level == "X"
    later = T0 + 10 * MINUTE
    repo.decide_appeal(
        policy, appeal_of(repo, policy, made[0], later), "r2", "uphold", None, now=later
    )
    # the second and third again, as if the first had never been confirmed
    alone = credit.deduction(rules, rules.initial, "rumor", "block", 0)
    expected = rules.initial + alone
    expected += credit.deduction(rules, expected, "rumor", "block", 1)
    account = repo.get_account(policy, "acc1", now=later)
    assert (account.credit, account.level) == (expected, credit.level(rules, expected).name)
    # its level calls for no X step any more, although those rest on the third violation
    left = active(repo, policy, "acc1", later)
    assert not X_STEPS & left and {"warning", "suspend_updates"} <= left


DAY = timedelta(days=1)


def with_bases(policy: Policy, version: str, **bases: str) -> Policy:
    """``policy`` as ``version``, its ladder's step of each kind named resting on the basis
    named."""
    ladder = [
        {**step.model_dump(), "basis": bases.get(step.kind, step.basis)}
        for step in policy.dispositions
    ]
    return Policy.model_validate(
        {**policy.model_dump(), "version": version, "dispositions": ladder}
    )


def shipped_until_2026_12_06_5(policy: Policy) -> Policy:
    """``policy`` with the bases the shipped ladder gave blacklisting and the ban on
    re-registration until 2026-12-06.5 (art13, art8), art19 since."""
    return with_bases(policy, "2026-12-06.5", blacklist="art13", ban_reregistration="art8")


def test_an_upheld_appeal_lifts_the_steps_the_level_reached_whatever_basis_they_were_given(
    repo: SqlRepository, policy: Policy
) -> None:
    older = shipped_until_2026_12_06_5(policy)
    newer = with_bases(older, "2026-12-07.1", blacklist="art19", ban_reregistration="art19")
    made = [confirmed(repo, older, f"p{n}", "acc1", T0 + n * MINUTE) for n in range(3)]
    given = {(d.kind, d.basis) for d in repo.get_account(newer, "acc1", now=T0).dispositions}
    assert {("blacklist", "art13"), ("ban_reregistration", "art8")} <= given
    later = T0 + 10 * MINUTE
    # the first's appeal, upheld after the ladder's bases changed, takes the level from X: the
    # X steps, applied on the third, go with it though the ladder gives them art19 now
    repo.decide_appeal(
        newer, appeal_of(repo, newer, made[0], later), "r2", "uphold", None, now=later
    )
    left = active(repo, newer, "acc1", later)
    assert not X_STEPS & left and {"warning", "suspend_updates"} <= left
    assert chain.verify(repo.audit_entries(), repo.audit_head()) == []


def test_a_step_the_other_violations_still_call_for_is_applied_again_on_its_basis_now(
    repo: SqlRepository, policy: Policy
) -> None:
    older = shipped_until_2026_12_06_5(policy)
    newer = with_bases(older, "2026-12-07.1", blacklist="art19", ban_reregistration="art19")
    made = [confirmed(repo, older, f"p{n}", "acc1", T0 + n * MINUTE) for n in range(8)]
    later = T0 + 10 * MINUTE
    upheld = repo.decide_appeal(
        newer, appeal_of(repo, newer, made[2], later), "r2", "uphold", None, now=later
    )
    # the third's X steps are lifted with it, and applied again on the eighth, as the ladder
    # calls for them now
    again = {
        (d.kind, d.basis, d.item_id, d.policy_version)
        for d in upheld.reversed
        if isinstance(d, views.Disposition) and d.active
    }
    assert again == {
        (kind, "art19", made[7].item_id, "2026-12-07.1")
        for kind in ("close_account", "blacklist", "ban_reregistration")
    }


@pytest.mark.parametrize(("undone", "clean_since"), [(1, T0), (0, T0 + 25 * DAY)])
def test_an_upheld_appeal_of_the_latest_violation_takes_the_clean_period_back_to_the_one_before(
    repo: SqlRepository, policy: Policy, undone: int, clean_since: datetime
) -> None:
    made = [confirmed(repo, policy, f"p{n}", "acc1", T0 + n * 25 * DAY) for n in range(2)]
    assert [m.credits[0].credit for m in made] == [70, 25]
    later = T0 + 28 * DAY
    repo.decide_appeal(
        policy, appeal_of(repo, policy, made[undone], later), "r2", "uphold", None, now=later
    )
    assert repo.get_account(policy, "acc1", now=later).credit == 70
    # the account is clean since the violation left standing: the second's reversal counts its
    # period from the first, the first's leaves it counted from the second
    period = timedelta(days=policy.credit.restore_every_days)
    assert repo.restore_credit(policy, now=clean_since + period - MINUTE) == 0
    assert repo.restore_credit(policy, now=clean_since + period) == 1
    assert repo.get_account(policy, "acc1", now=clean_since + period).credit == 75


def impersonating(repo: SqlRepository, policy: Policy) -> int:
    """acc1 named after 姚明, an entry nobody is authorised for, its impersonation confirmed at
    ``T0`` (its art8 suspension ends 15 days later): the item."""
    repo.put_account(policy, "acc1", name="姚明球迷会", now=T0)
    repo.add_protected_name(policy, name="姚明", kind="person", subject_ids=[], by="k", now=T0)
    (item,) = repo.list_items(policy, kind="impersonation", now=T0).items
    basis = policy.registration.protected_basis
    repo.decide(policy, item.id, "r1", "confirm", "impersonation", basis, now=T0)
    return item.id


def closed(repo: SqlRepository, policy: Policy, at: datetime) -> list[tuple[str, int | None]]:
    """The basis and item of each active close of acc1."""
    shown = repo.get_account(policy, "acc1", now=at).dispositions
    return [(d.basis, d.item_id) for d in shown if d.kind == "close_account"]


def closes(repo: SqlRepository, policy: Policy, at: datetime) -> list[int]:
    """The id of each active close of acc1."""
    shown = repo.get_account(policy, "acc1", now=at).dispositions
    return [d.id for d in shown if d.kind == "close_account"]


@pytest.mark.parametrize("close_basis", ["art19", "art8"])
def test_an_upheld_appeal_of_a_rumour_leaves_the_termination_of_an_uncorrected_name(
    repo: SqlRepository, policy: Policy, close_basis: str
) -> None:
    # the termination is no step the standing reached, even where the ladder's close rests on
    # art8 as the termination does
    ladder = with_bases(policy, "2026-01-01.1", close_account=close_basis)
    item = impersonating(repo, ladder)
    # the name still uncorrected at the end of its suspension: art8 terminates the service
    assert repo.settle_deadlines(ladder, now=T0 + 16 * DAY) == 1
    (termination,) = closes(repo, ladder, T0 + 16 * DAY)
    # two rumours take the account to X, whose close is active already
    made = [confirmed(repo, ladder, f"p{n}", "acc1", T0 + (17 + n) * DAY) for n in range(2)]
    assert made[1].credits[0].level == "X"
    later = T0 + 20 * DAY
    repo.decide_appeal(
        ladder, appeal_of(repo, ladder, made[1], later), "r2", "uphold", None, now=later
    )
    account = repo.get_account(ladder, "acc1", now=later)
    assert account.level != "X" and not {"blacklist", "ban_reregistration"} & {
        d.kind for d in account.dispositions
    }
    # the appeal was of a rumour: the name, and the termination resting on it, are as they were
    # (not lifted, and applied again for the name)
    assert closes(repo, ladder, later) == [termination]
    assert closed(repo, ladder, later) == [(ladder.registration.protected_basis, item)]
    assert chain.verify(repo.audit_entries(), repo.audit_head()) == []


def test_an_upheld_appeal_of_the_close_an_uncorrected_name_found_terminates_it(
    repo: SqlRepository, policy: Policy
) -> None:
    item = impersonating(repo, policy)
    # two rumours close the account before its suspension ends, uncorrected: closed already
    made = [confirmed(repo, policy, f"p{n}", "acc1", T0 + (1 + n) * DAY) for n in range(2)]
    assert closed(repo, policy, T0 + 2 * DAY) == [("art19", made[1].item_id)]
    assert repo.settle_deadlines(policy, now=T0 + 16 * DAY) == 0
    later = T0 + 20 * DAY
    upheld = repo.decide_appeal(
        policy, appeal_of(repo, policy, made[1], later), "r2", "uphold", None, now=later
    )
    # the ladder's close goes with the rumour, and the name it stood in for terminates now
    basis = policy.registration.protected_basis
    assert closed(repo, policy, later) == [(basis, item)]
    (terminated,) = [
        c.disposition
        for c in repo.disposition_changes().changes
        if c.change == "applied"
        and (c.disposition.kind, c.disposition.basis) == ("close_account", basis)
    ]
    assert terminated.id in {r.id for r in upheld.reversed if isinstance(r, views.Disposition)}
    assert (terminated.starts_at, terminated.decided_by) == (later, "r1")
    assert chain.verify(repo.audit_entries(), repo.audit_head()) == []


def test_an_upheld_appeal_of_a_close_that_began_after_a_cleared_name_terminates_nothing(
    repo: SqlRepository, policy: Policy
) -> None:
    impersonating(repo, policy)
    # the name corrected after the suspension's end, before the sweep: it settles as cleared
    # (a correction during the suspension lifts it, which no termination follows either)
    repo.put_account(policy, "acc1", name="篮球球迷会", now=T0 + 15.5 * DAY)
    repo.settle_deadlines(policy, now=T0 + 16 * DAY)
    made = [confirmed(repo, policy, f"p{n}", "acc1", T0 + (17 + n) * DAY) for n in range(2)]
    assert closed(repo, policy, T0 + 18 * DAY) == [("art19", made[1].item_id)]
    # a name protected since, which the account's name holds: an item of its own to decide
    repo.add_protected_name(
        policy, name="篮球球迷", kind="organisation", subject_ids=[], by="k", now=T0 + 19 * DAY
    )
    later = T0 + 20 * DAY
    repo.decide_appeal(
        policy, appeal_of(repo, policy, made[1], later), "r2", "uphold", None, now=later
    )
    # the close began after the suspension was settled: it stood in for no termination
    assert closed(repo, policy, later) == []
    assert chain.verify(repo.audit_entries(), repo.audit_head()) == []


def test_a_reversal_is_the_difference_the_violation_makes_to_a_replay(policy: Policy) -> None:
    rules = policy.credit
    rumour = [credit.Standing(T0 + n * MINUTE, "rumor", "block") for n in range(4)]
    assert credit.reversal(rules, 0, rumour, 2) == 0  # the fourth takes its place at the floor
    assert credit.reversal(rules, 0, rumour[:3], 2) == 25
    assert credit.reversal(rules, 0, rumour[:3], 0) == 25  # 70, then 45 as a second
    restored = [rumour[0], credit.Standing(T0 + timedelta(days=60), delta=10)]
    # never past the initial credit, as restorations since gave some back
    assert credit.reversal(rules, 80, restored, 0) == 20


def test_a_reversal_moves_the_clean_period_back_never_later_nor_to_count_it_twice(
    policy: Policy,
) -> None:
    rules = policy.credit
    assert rules.restore_every_days == 30

    def clock(second: int, restored: int) -> datetime:
        """The clock once the second of rumours at T0 and ``second`` days on is reversed, a
        restoration of one period given ``restored`` days on (from the second)."""
        entries = [
            credit.Standing(T0, "rumor", "block"),
            credit.Standing(T0 + second * DAY, "rumor", "block"),
            credit.Standing(T0 + restored * DAY, delta=rules.restore_points),
        ]
        return credit.clean_since_reversed(rules, T0 + (second + 30) * DAY, entries, 1)

    # from the first, the restoration's period ended at 30 days: the next one is due at 60
    assert clock(29, 59) == T0 + 30 * DAY
    # from the first, the restoration at 60 days would have counted two periods, though it gave
    # one: the clock stays where that one period put it
    assert clock(1, 60) == T0 + 31 * DAY
    rumour = [credit.Standing(T0 + n * DAY, "rumor", "block") for n in range(2)]
    # an earlier violation's reversal, or the only one's, leaves the clock
    assert credit.clean_since_reversed(rules, T0 + DAY, rumour, 0) == T0 + DAY
    assert credit.clean_since_reversed(rules, T0, rumour[:1], 0) == T0


def _twins(url: str) -> tuple[int, list[int]]:
    """A database at 0007 holding three appeals of one violation (the second rejected) and
    one of another; the violation's item, and the appeals' ids: the first, its rejected and
    pending twins, and the other."""
    upgrade(url)
    policy = load_policy(Settings().policy_file)
    # the service's own writes, on the schema it writes to
    repo = open_repository(url, 5.0, policy.review)
    try:
        first = confirmed(repo, policy, "p1", "acc1", T0)
        second = confirmed(repo, policy, "p2", "acc2", T0)
        ids = [appeal_of(repo, policy, first, T0 + MINUTE)]
        other = appeal_of(repo, policy, second, T0 + MINUTE)
    finally:
        repo.close()
    engine = make_engine(url, 5.0)
    with engine.begin() as connection:
        # then twins of the first, on a schema without the unique index
        migrate(connection, "0007_evidence_sweep", down=True)
        for status in ("rejected", "pending"):
            twin = connection.execute(
                text(
                    "INSERT INTO appeals (account_id, item_id, reason, status, filed_by,"
                    " filed_at, deadline) SELECT account_id, item_id, :reason, :status,"
                    " filed_by, filed_at, deadline FROM appeals WHERE id = :id RETURNING id"
                ),
                {"reason": f"又 {status}", "status": status, "id": ids[0]},
            ).scalar_one()
            ids.append(twin)
    engine.dispose()
    return first.item_id, [*ids, other]


def test_the_migration_keeps_one_appeal_per_violation_and_sets_the_twins_aside(
    database_url: str,
) -> None:
    item, (pending, rejected, twin, other) = _twins(database_url)
    upgrade(database_url)
    policy = load_policy(Settings().policy_file)
    repo = open_repository(database_url, 5.0, policy.review)
    try:
        # the rejected one is kept: a reviewer answered it
        assert sorted(a.id for a in repo.list_appeals().appeals) == sorted([rejected, other])
        with repo.engine.connect() as connection:
            aside = connection.execute(
                text("SELECT id, kept_id, reason FROM appeal_duplicates ORDER BY id")
            ).all()
        assert [tuple(row) for row in aside] == [
            (pending, rejected, "误判"),
            (twin, rejected, "又 pending"),
        ]
        with pytest.raises(ConflictError, match="appealed already"):
            repo.file_appeal(
                policy, account_id="acc1", item_id=item, reason="r", filed_by="k", now=T0
            )
    finally:
        repo.close()
    engine = make_engine(database_url, 5.0)
    with engine.begin() as connection:
        migrate(connection, "0007_evidence_sweep", down=True)
        back = connection.execute(text("SELECT id FROM appeals ORDER BY id")).scalars().all()
    engine.dispose()
    assert back == sorted([pending, rejected, twin, other])
    upgrade(database_url)


def test_a_listing_cursor_past_the_calendar_lists_from_its_end(repo: SqlRepository) -> None:
    assert repo.list_appeals(cursor=(1e300, 1)).appeals == []
    assert repo.list_appeals(cursor=(-1e20, 1)).appeals == []  # none filed: nothing to list


@pytest.fixture
def api(tmp_path: Path, pipeline: Pipeline) -> Iterator[Api]:
    with open_api(tmp_path, f"sqlite:///{tmp_path / 'api.db'}", pipeline.classifier) as running:
        yield running


def test_a_cursor_no_listing_gave_out_is_refused_at_its_name(api: Api) -> None:
    reviewer = api.headers(api.new_key("reviewer"))
    for cursor in BAD_CURSORS:
        answer = api.client.get("/v1/appeals", params={"cursor": cursor}, headers=reviewer)
        assert answer.status_code == 422, cursor
        assert answer.json()["detail"][0]["loc"] == ["query", "cursor"]
        # an urgency may be any finite number: the queue lists what comes after it
        items = api.client.get("/v1/review/items", params={"cursor": cursor}, headers=reviewer)
        assert items.status_code == 200, cursor
    sign_in(api, "li")
    for path in ("/console/appeals", "/console/queue"):
        for cursor in BAD_CURSORS:
            assert api.client.get(path, params={"cursor": cursor}).status_code < 500


def test_an_appeal_filed_in_the_console_is_the_holders_to_follow_once_rejected(api: Api) -> None:
    """li files in the console on a1's behalf, zhao rejects it; the platform's key then files
    the holder's own appeal of the same confirmation."""
    review, policy = api.services.review, api.services.scoring.policy
    rec = record("p1", "block").model_copy(update={"account_id": "a1"})
    api.services.scoring.repository.save_records([Pending(rec, True, "帖子")])
    (item,) = review.list_items(policy).items
    review.decide(policy, item.id, "wang", "confirm", "rumor", "art18.6")
    token = sign_in(api, "li")
    filed = api.client.post(
        "/console/appeals",
        data={"csrf": token, "account_id": "a1", "item_id": str(item.id), "reason": "代为申诉"},
        follow_redirects=False,
    )
    assert filed.status_code == 303, filed.text
    (staff,) = review.list_appeals().appeals
    assert staff.on_behalf
    review.decide_appeal(policy, staff.id, "zhao", "reject", "无据")
    body = {"account_id": "a1", "item_id": item.id, "reason": "误判"}
    own = api.client.post("/v1/appeals", json=body, headers=api.headers())
    assert own.status_code == 200, own.text
    assert own.json()["on_behalf"] is False
    again = api.client.post("/v1/appeals", json=body, headers=api.headers())
    assert again.status_code == 409


def test_0036_marks_the_steps_the_standing_reached_before_it_as_the_service_marks_them(
    database_url: str, policy: Policy
) -> None:
    """Rows from before 0036, under the ladder shipped until then, are marked as the service
    marks them: the level's and the count's steps standing, art8's suspension (its category's)
    and termination not. The downgrade drops the column, and a second try from 0036 (SQLite
    keeps the drop of a downgrade refused further down) drops nothing."""
    older = shipped_until_2026_12_06_5(policy)
    upgrade(database_url)
    repo = open_repository(database_url, 5.0, older.review)
    try:
        impersonating(repo, older)
        assert repo.settle_deadlines(older, now=T0 + 16 * DAY) == 1
        for n in range(2):
            confirmed(repo, older, f"p{n}", "acc1", T0 + (17 + n) * DAY)
    finally:
        repo.close()
    rows = table("dispositions", column("id"), column("kind"), column("standing", Boolean()))

    def marked(connection: Connection) -> dict[int, tuple[str, bool]]:
        found = connection.execute(select(rows.c.id, rows.c.kind, rows.c.standing)).all()
        return {row.id: (row.kind, row.standing) for row in found}

    engine = make_engine(database_url, 5.0)
    try:
        with engine.begin() as connection:
            written = marked(connection)
            assert {kind for kind, standing in written.values() if not standing} == {
                "suspend_service",
                "close_account",
            }
            assert {kind for kind, standing in written.values() if standing} >= X_STEPS - {
                "close_account"
            }
            for _ in range(2):
                migrate(connection, "0035_item_reported_at", down=True)
                found = inspect(connection).get_columns("dispositions")
                assert "standing" not in {c["name"] for c in found}
                config = alembic_config()
                config.attributes["connection"] = connection
                command.stamp(config, "0036_standing_dispositions")
            migrate(connection, "0035_item_reported_at", down=True)
            migrate(connection, "0036_standing_dispositions")
            assert marked(connection) == written
    finally:
        engine.dispose()
