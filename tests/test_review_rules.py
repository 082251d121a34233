"""The review rules alone: priority, leases, credit, dispositions, appeals, names, the chain."""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from service.policy import Policy, load_policy
from service.review import appeals, chain, credit, dispositions, items, registration
from service.settings import Settings
from service.storage.database import MIGRATIONS

T0 = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy(Settings().policy_file)


def test_priority_grows_with_severity_reach_reports_and_age(policy: Policy) -> None:
    rules = policy.review
    base = items.base_priority(rules, "review", 0, 0)
    assert items.base_priority(rules, "block", 0, 0) > base
    assert items.base_priority(rules, "review", 10_000, 0) > items.base_priority(
        rules, "review", 10, 0
    )
    assert items.base_priority(rules, "review", 0, 3) > base
    old = items.urgency(rules, base, T0)
    new = items.urgency(rules, base, T0 + timedelta(hours=4))
    assert old > new  # the older item of equal base comes first
    later = T0 + timedelta(hours=10)
    assert items.priority(rules, old, later) == pytest.approx(
        base + rules.age_weight_per_hour * 10, abs=1e-3
    )
    # an old review item eventually passes a fresh block item
    fresh_block = items.urgency(rules, items.base_priority(rules, "block", 0, 0), later)
    hours_needed = (fresh_block - old) / rules.age_weight_per_hour
    assert items.urgency(rules, base, T0 - timedelta(hours=hours_needed + 1)) > fresh_block


def test_a_live_lease_keeps_others_out_and_an_expired_one_does_not(policy: Policy) -> None:
    until = items.lease_end(policy.review, T0)
    items.check_claim("open", "r1", until, "r1", T0)
    # ISO 8601, as the API's fields give it (str() writes a space for the T)
    said = f"the item is claimed by another reviewer until {until.isoformat()}"
    with pytest.raises(items.ConflictError, match=f"^{re.escape(said)}$"):
        items.check_claim("open", "r1", until, "r2", T0)
    items.check_claim("open", "r1", until, "r2", until + timedelta(seconds=1))
    # a decided item's refusal names the decision that decided it, whose and when
    said = f"the item is decided already (confirmed, by r1 at {T0.isoformat()})"
    with pytest.raises(items.ConflictError, match=f"^{re.escape(said)}$"):
        items.check_claim("confirmed", None, None, "r2", T0, decided=items.Decided("r1", T0))


def test_an_escalated_item_goes_to_an_admin_other_than_its_escalator() -> None:
    with pytest.raises(items.ForbiddenError, match="by an admin"):
        items.check_claim("escalated", None, None, "r2", T0, "r1", "reviewer")
    with pytest.raises(items.ForbiddenError, match="other than the one who escalated"):
        items.check_claim("escalated", None, None, "a1", T0, "a1", "admin")
    items.check_claim("escalated", None, None, "a2", T0, "a1", "admin")
    items.check_claim("open", None, None, "r2", T0, None, "reviewer")


def test_a_kind_with_a_process_of_its_own_has_one_category_and_it_no_other_kind() -> None:
    with pytest.raises(items.ConflictError, match="item 7 is of kind 'impersonation'"):
        items.check_category("impersonation", "rumor", 7)
    with pytest.raises(items.ConflictError, match="an impersonation"):
        items.check_category("report", "impersonation", 7)
    with pytest.raises(items.ConflictError, match="dormant"):
        items.check_category("score", "dormant", 7)
    items.check_category("impersonation", "impersonation", 7)
    items.check_category("report", "rumor", 7)


def test_deductions_by_category_severity_and_repetition(policy: Policy) -> None:
    rules = policy.credit
    first = credit.deduction(rules, 100, "rumor", "review", 0)
    assert first == -rules.deductions["rumor"]
    assert credit.deduction(rules, 100, "rumor", "block", 0) < first
    assert credit.deduction(rules, 100, "rumor", "review", 2) < first
    assert credit.deduction(rules, 100, "incitement", "review", 0) != first
    # never below the floor
    assert credit.deduction(rules, rules.floor + 3, "rumor", "block", 5) == -3
    # half a point rounds up, whatever the parity (22.5 -> 23, 37.5 -> 38)
    half = rules.model_copy(
        update={
            "deductions": {**rules.deductions, "incitement": 15, "rumor": 25},
            "severity": {**rules.severity, "block": 1.5},
        }
    )
    assert credit.deduction(half, 100, "incitement", "block", 0) == -23
    assert credit.deduction(half, 100, "rumor", "block", 0) == -38


def test_levels_and_restoration(policy: Policy) -> None:
    rules = policy.credit
    assert credit.level(rules, rules.initial).name == rules.levels[0].name
    assert credit.level(rules, rules.floor).name == rules.blacklist
    assert credit.restoration(rules, 60, T0, T0 + timedelta(days=1)) is None
    period = timedelta(days=rules.restore_every_days)
    delta, until = credit.restoration(rules, 60, T0, T0 + 2 * period + timedelta(days=1)) or (0, T0)
    assert delta == 2 * rules.restore_points and until == T0 + 2 * period
    assert credit.restoration(rules, rules.initial, T0, T0 + 10 * period) is None
    capped = credit.restoration(rules, rules.initial - 1, T0, T0 + 10 * period)
    assert capped is not None and capped[0] == 1
    assert credit.replay(rules, [-20, -30, 5]) == rules.initial - 45


def test_the_ladder_applies_steps_by_level_and_count_once(policy: Policy) -> None:
    ladder = policy.dispositions
    first = [s.kind for s in dispositions.due(ladder, "B", 1, set())]
    assert first == ["warning"]
    assert [s.kind for s in dispositions.due(ladder, "B", 2, {"warning"})] == []
    assert "limit_features" in [s.kind for s in dispositions.due(ladder, "B", 3, set())]
    worst = {s.kind for s in dispositions.due(ladder, "X", 1, set())}
    assert {"close_account", "blacklist", "ban_reregistration"} <= worst
    assert all(s.basis.startswith("art") for s in ladder)
    step = next(s for s in ladder if s.kind == "warning")
    assert dispositions.ends_at(step, T0) == T0 + timedelta(days=step.days or 0)
    assert dispositions.is_active(T0 + timedelta(days=1), False, T0)
    assert not dispositions.is_active(T0 + timedelta(days=1), True, T0)
    assert not dispositions.is_active(T0, False, T0 + timedelta(days=1))


def test_appeal_window_deadline_and_resolver(policy: Policy) -> None:
    rules = policy.appeals
    deadline = appeals.check_filing(rules, T0, T0 + timedelta(days=1))
    assert deadline == T0 + timedelta(days=1 + rules.resolve_within_days)
    late = T0 + timedelta(days=rules.file_within_days + 1)
    with pytest.raises(appeals.AppealClosedError) as closed:
        appeals.check_filing(rules, T0, late)
    assert closed.value.deadline == T0 + timedelta(days=rules.file_within_days)
    with pytest.raises(items.ForbiddenError):
        appeals.check_resolver("r1", "r1")
    appeals.check_resolver("r1", "r2")
    # the appeal of a decision an escalation led to is an admin's, as the escalation was
    with pytest.raises(items.ForbiddenError, match="an admin"):
        appeals.check_resolver("a1", "r2", escalated_by=["r3"], role="reviewer")
    appeals.check_resolver("a1", "a2", escalated_by=["r3"], role="admin")
    # nor is it the escalator's, an admin too, whom the item's decision was kept from
    with pytest.raises(items.ForbiddenError) as own:
        appeals.check_resolver("a1", "a2", escalated_by=["a2"], role="admin")
    assert own.value.reason == "own_escalation"
    # nor one they filed on the holder's behalf: one person would ask and answer
    with pytest.raises(items.ForbiddenError) as filed:
        appeals.check_resolver("r1", "r2", filed_by="r2")
    assert filed.value.reason == "own_filing"
    appeals.check_resolver("r1", "r2", filed_by="r3")
    assert appeals.overdue("pending", T0, T0 + timedelta(seconds=1))
    assert not appeals.overdue("upheld", T0, T0 + timedelta(seconds=1))


def test_names_fold_and_near_names_are_refused(policy: Policy) -> None:
    rules = policy.registration
    assert registration.fold_name("清朗 日报") == registration.fold_name("清朗日報")
    assert registration.fold_name("清朗\u200b日报!") == registration.fold_name("清朗日报")
    closed = [("acc1", registration.fold_name("清朗每日新闻"))]
    assert [r.code for r in registration.check(rules, "清朗每日新闻", [], closed)] == ["name_taken"]
    assert [r.code for r in registration.check(rules, "清朗每日新闯", [], closed)] == ["name_near"]
    assert registration.check(rules, "完全不同的名字", [], closed) == []
    short = [("acc2", registration.fold_name("清朗"))]
    assert registration.check(rules, "清明", [], short) == []  # too short to be near
    assert [r.code for r in registration.check(rules, "新名字", ["acc9"], [])] == [
        "subject_blacklisted"
    ]
    assert registration.distance("abcd", "abxd", 1) == 1


# names whose folding takes each step of it: format characters, NFKC (full-width, ligatures,
# circled and superscript digits, one character to several), case (to several characters),
# traditional to simplified (characters and phrases), links, spaced-out characters, punctuation,
# marks, and the window (past it, and past the first prefix read)
TRICKY_NAMES = [
    "",
    "   ",
    "清朗 日报",
    "清朗日報",
    "清朗\u200b日报\ufeff!",
    "ＱＩＮＧＬＡＮＧ１２３",
    "ﬁnance ①②③ x²",
    "\ufdfa",
    "İstanbul Straße ǅ",
    "e\u0301 café",
    "傻 逼 滚 出 去",
    "傻*逼·滚•出・去",
    "【原 创】清朗",
    "看 https://example.com/a?b=1 这里",
    "HTTP://EXAMPLE.COM网址",
    "後來的頭髮乾了",
    "🙂清朗🙂_-—~",
    "Ⅻ ㈱ ㍿",
    "臺灣 發展 麵包 電腦",
    "清" * 300,
    "清 " * 200,
    " \u200b" * 700 + "名字",
    "發" * 1100 + "頭髮",
    "https://x.example/" + "a" * 2000 + " 名",
    "\ufdfa" * 100,
    "张\u3164三 清朗\uffa0日报\u115f\u1160",
    "https://x.example/\u3164名 字\u2800",
    "求/扩/散 傻\ufe00逼",
]


def _migration(revision: str) -> tuple[Path, Any]:
    (path,) = (MIGRATIONS / "versions").glob(f"{revision}_*.py")
    spec = importlib.util.spec_from_file_location(f"migration_{revision}", path)
    assert spec is not None and spec.loader is not None
    migration = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(migration)
    return path, migration


def test_the_newest_migration_that_folds_names_folds_them_as_fold_name_does() -> None:
    # a migration that folds names keeps a copy of the folding it was written with: a change
    # to fold_name that this notices needs a migration of its own, to fold the stored names
    # anew, and the copy in it is the one compared from then on
    folding = sorted(
        path
        for path in (MIGRATIONS / "versions").glob("*.py")
        if "def _fold_name(" in path.read_text()
    )
    assert folding[0].name == "0010_account_names.py"
    for path in folding:
        assert "service" not in {
            line.split()[1].split(".")[0]
            for line in path.read_text().splitlines()
            if line.startswith(("import ", "from "))
        }
    _, newest = _migration(folding[-1].name.split("_")[0])
    for name in TRICKY_NAMES:
        assert newest._fold_name(name) == registration.fold_name(name), name
    # 0010 wrote the names with the folding of its time, which kept Hangul fillers
    _, first = _migration("0010")
    assert first._fold_name("张\u3164三") == "张\u1160三"


SUBJECTS = registration.SubjectKey(b"k" * 32)


def test_distance_and_subject_digests() -> None:
    assert registration.distance("abcd", "wxyz", 1) == 2
    assert SUBJECTS.digest("110101") != SUBJECTS.digest("110102")


def _chain(n: int) -> list[chain.Entry]:
    entries, prev = [], chain.GENESIS
    for seq in range(1, n + 1):
        at = T0 + timedelta(seconds=seq)
        payload = {"n": seq, "text": "<script>'"}
        digest = chain.link(prev, seq, at, "k", f"s{seq}", payload)
        entries.append(chain.Entry(seq, at, "k", f"s{seq}", payload, prev, digest))
        prev = digest
    return entries


def test_the_chain_detects_edits_deletions_reordering_and_a_cut_end() -> None:
    entries = _chain(5)
    head = (5, entries[-1].hash)
    assert chain.verify(entries, head) == []
    edited = list(entries)
    edited[2] = chain.Entry(**{**edited[2].__dict__, "payload": {"n": 99}})
    assert any("record 3" in p and "content" in p for p in chain.verify(edited, head))
    deleted = entries[:2] + entries[3:]
    assert chain.verify(deleted, head)
    swapped = [entries[0], entries[2], entries[1], *entries[3:]]
    assert chain.verify(swapped, head)
    assert any("missing" in p for p in chain.verify(entries[:4], head))
    # the same moment in another time zone hashes the same
    moved = entries[0].at.astimezone(__import__("zoneinfo").ZoneInfo("Asia/Shanghai"))
    assert chain.link(chain.GENESIS, 1, moved, "k", "s1", entries[0].payload) == entries[0].hash


def test_stored_texts_are_read_a_batch_at_a_time_and_a_removal_may_come_batches_later() -> None:
    reports = {str(n): ("reports", f"举报{n}") for n in range(1, 8)}
    reads: list[tuple[str, int]] = []

    def stored(text: chain.Text, keys: Sequence[str]) -> dict[str, tuple[str, str | None]]:
        reads.append((text.column, len(keys)))
        rows = reports if text.tables == ("reports",) else {}
        return {k: rows[k] for k in keys if k in rows}

    def entry(seq: int, kind: str, subject: str, payload: dict[str, Any]) -> chain.Entry:
        return chain.Entry(seq, T0, kind, subject, payload, "", "")

    digest = {"text_sha256": chain.text_digest("谣言"), "notice_sha256": chain.text_digest("说明")}
    entries = [entry(1, "rumor.banked", "rumor:r1", digest)]
    entries += [
        entry(n + 1, "report.filed", f"report:{n}", {"text_sha256": chain.text_digest(f"举报{n}")})
        for n in range(1, 9)
    ]
    entries += [
        entry(10, "report.filed", "report:3", {}),
        entry(11, "rumor.unbanked", "rumor:r1", {}),
        entry(12, "rumor.banked", "rumor:r2", digest),
    ]

    def unrecorded(text: chain.Text) -> list[tuple[str, str]]:
        return [("reports", "20")] if text.kind == "report.filed" else []

    texts = chain.TextCheck(stored, unrecorded, batch=3)
    for each in entries:
        texts.see(each)
    assert texts.finish() == [
        "record 9: reports.text of row 8: the row is missing",
        "record 12: rumor_bank.text of row r2: the row is missing, "
        "and no rumor.unbanked record removed it",
        "record 12: rumor_bank.notice of row r2: the row is missing, "
        "and no rumor.unbanked record removed it",
        "reports.text of row 20: no report.filed record names the row "
        "(written outside the service)",
    ]
    assert (texts.checked, texts.unverifiable, texts.removed) == (7, 1, 2)
    assert max(keys for _, keys in reads) == 3


def test_subject_ids_are_normalised_once_for_storing_and_checking() -> None:
    canonical = SUBJECTS.digest("110101199001011234X")
    for spelling in (
        "110101199001011234x",
        "１１０１０１１９９００１０１１２３４Ｘ",
        " 110101 19900101 1234 x ",
        "110101-19900101-1234X",
        "110101\u300019900101\u200b1234X",
    ):
        assert SUBJECTS.digest(spelling) == canonical, spelling
    # a digest stored before normalisation (of the stripped id) still matches that spelling
    legacy = SUBJECTS.digests(" 110101199001011234x ")
    assert canonical in legacy and len(legacy) == 2
    assert SUBJECTS.digests("110101199001011234X") == {canonical}


def test_a_refused_accounts_profile_keeps_what_re_registration_checks() -> None:
    stored = SUBJECTS.digest("110101199001011234X")
    given = SUBJECTS.digests("110101199001011234x")
    registration.check_profile_change("a", {"blacklist"}, False, stored, given)
    other = SUBJECTS.digests("OTHER")
    with pytest.raises(items.ConflictError, match="never replaced"):
        registration.check_profile_change("a", set(), False, stored, other)
    with pytest.raises(items.ConflictError, match="close_account"):
        registration.check_profile_change("a", {"close_account"}, True, stored, None)
    registration.check_profile_change("a", set(), True, None, other)  # an ordinary rename


def test_a_report_is_due_from_its_own_filing(policy: Policy) -> None:
    rules = policy.review
    due = items.report_due(rules, T0 + timedelta(days=30))
    assert due == T0 + timedelta(days=30 + rules.report_within_days)
    assert items.report_overdue("open", due, due + timedelta(seconds=1))
    assert not items.report_overdue("confirmed", due, due + timedelta(seconds=1))
    assert not items.report_overdue("open", due, due)


def test_a_post_is_charged_to_its_account_once_whichever_item_names_it() -> None:
    members = [{"post_id": "p1", "account_id": "a"}, {"post_id": "p2", "account_id": "b"}]
    assert items.posts_charged(None, "a", {"members": members}, "a") == {"p1"}
    assert items.posts_charged("p1", "a", None, "a") == {"p1"}
    assert items.posts_charged("p1", "a", None, "b") == set()
