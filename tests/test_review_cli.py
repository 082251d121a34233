"""``qinglang audit verify|export``, ``qinglang labels export`` and ``qinglang credit restore``
as an operator runs them."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from servicekit import migrate, record, verified
from sqlalchemy import delete, insert, inspect, select, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session
from test_dormancy import DAY, T0, dormant_after, warned_after

from service.cli import main
from service.policy import Policy, load_policy
from service.review import chain, replay
from service.security import check_password
from service.settings import Settings, get_settings
from service.storage import Pending, SqlRepository, StoredRumor, open_repository, upgrade
from service.storage.database import head_revision, make_engine
from service.storage.tables import (
    AuditRecord,
    BankedRumor,
    DuplicateAppeal,
    ReviewDecision,
    StoredAccount,
    StoredAppeal,
    StoredReport,
)
from service.storage.transaction import append_records
from training.data import reviewed


def qinglang(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service.cli", *args],
        env={**os.environ, "QINGLANG_DATABASE_URL": url},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_audit_verify_says_when_a_copy_of_a_wal_file_misses_the_chain(tmp_path: Path) -> None:
    """A SQLite file in WAL mode copied alone, while its writer holds the records in its -wal
    file, reads as a database nothing was written to; rows without the chain are not whole."""
    url = f"sqlite:///{tmp_path / 'live.db'}"
    upgrade(url)
    policy = load_policy(Settings().policy_file)
    repo = open_repository(url, 5.0, policy.review)
    repo.put_account(policy, "acc1", name="甲")
    assert (tmp_path / "live.db-wal").stat().st_size > 0
    shutil.copy(tmp_path / "live.db", tmp_path / "copy.db")
    copied = qinglang(f"sqlite:///{tmp_path / 'copy.db'}", "audit", "verify")
    assert copied.returncode == 0, copied.stderr
    assert "ok, 0 records: nothing was written" in copied.stderr
    assert 'sqlite3 DB ".backup COPY"' in copied.stderr
    with sqlite3.connect(tmp_path / "copy.db") as db:
        db.execute(
            "INSERT INTO accounts (account_id, credit, level, followers, clean_since, "
            "policy_version) VALUES ('x', 100, 'A', 0, '2026-01-01 00:00:00', 'p1')"
        )
    torn = qinglang(f"sqlite:///{tmp_path / 'copy.db'}", "audit", "verify")
    assert torn.returncode == 1
    assert "no records in the chain, but 1 rows of score records" in torn.stderr
    repo.close()
    live = qinglang(url, "audit", "verify")
    assert live.returncode == 0 and "ok, 1 records" in live.stderr


def test_audit_verify_export_and_labels(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    upgrade(url)
    policy = load_policy(Settings().policy_file)
    repo = open_repository(url, 5.0, policy.review)
    rec = record("p1").model_copy(update={"account_id": "acc1"})
    repo.save_records([Pending(rec, True, "<b>谣言</b>'\u200b")])
    (item,) = repo.list_items(policy).items
    repo.decide(policy, item.id, "r1", "confirm", "rumor", "art18.6")
    verified = qinglang(url, "audit", "verify")
    assert verified.returncode == 0 and "ok, 5 records" in verified.stderr
    out = tmp_path / "audit.jsonl"
    zoneless = qinglang(url, "audit", "export", "--from", "2000-01-01", "-o", str(out))
    assert zoneless.returncode == 2 and "'2000-01-01' has no time zone" in zoneless.stderr
    beyond = qinglang(url, "audit", "export", "--to", "1e20", "-o", str(out))
    assert beyond.returncode == 2 and "1e+20 is not a time from 1970 to 9999" in beyond.stderr
    assert not out.exists()
    exported = qinglang(url, "audit", "export", "--from", "2000-01-01T08:00+08:00", "-o", str(out))
    assert exported.returncode == 0, exported.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["kind"] for line in lines][:3] == [
        "score.flagged",
        "review.enqueued",
        "review.decision",
    ]
    assert lines[1]["payload"] == {
        "kind": "score",
        "merge_key": "post:p1",
        "head": "rumor",
        "severity": "review",
    }
    assert lines[2]["payload"]["basis"] == "art18.6" and lines[2]["prev_hash"] == lines[1]["hash"]
    none = qinglang(url, "audit", "export", "--to", "946684800", "--format", "csv")
    rows = list(csv.DictReader(none.stdout.splitlines()))
    assert none.returncode == 0 and rows == []
    table = tmp_path / "audit.csv"
    assert qinglang(url, "audit", "export", "--format", "csv", "-o", str(table)).returncode == 0
    with open(table, newline="", encoding="utf-8") as f:
        assert [r["seq"] for r in csv.DictReader(f)] == ["1", "2", "3", "4", "5"]
    members = [{"post_id": f"b{n}", "account_id": f"bot{n}"} for n in range(5)]
    batch = repo.enqueue(
        policy,
        kind="cluster",
        merge_key="cluster:c_0123456789abcdef",
        head="coordination",
        severity="review",
        reach=5,
        evidence={"members": members},
    )
    repo.decide(policy, batch.id, "r1", "dismiss", None, None)
    labels = tmp_path / "labels.jsonl"
    summary = qinglang(url, "labels", "export", "-o", str(labels))
    assert summary.returncode == 0
    assert "1 labels; 1 decisions on coordinated batches give none" in summary.stderr
    (label,) = [json.loads(line) for line in labels.read_text().splitlines()]
    assert label["text"] == "<b>谣言</b>'\u200b" and label["label"] == 1
    assert label["head"] == "rumor" and label["model_version"] == "sha256:m1"
    (example,) = reviewed(labels)
    assert (example.text, example.head, example.label, example.group) == (
        label["text"],
        "rumor",
        1,
        "p1",
    )
    restored = qinglang(url, "credit", "restore")
    assert restored.returncode == 0 and "0 accounts restored" in restored.stderr
    with repo.engine.begin() as db:
        db.execute(text("UPDATE audit_records SET payload = '{}' WHERE seq = 2"))
    repo.close()
    broken = qinglang(url, "audit", "verify")
    assert broken.returncode == 1 and "record 2" in broken.stderr
    unreachable = qinglang("postgresql+psycopg://postgres@127.0.0.1:9/x", "audit", "verify")
    assert unreachable.returncode == 2 and "error" in unreachable.stderr


def test_users_create_prints_a_password_that_checks_against_the_stored_digest(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    created = qinglang(url, "users", "create", "王审核", "--role", "reviewer")
    assert created.returncode == 0, created.stderr
    password = created.stdout.strip().splitlines()[-1]
    repo = open_repository(url, 5.0)
    found = repo.get_user("王审核")
    repo.close()
    assert found is not None and found.role == "reviewer" and password not in found.digest
    assert check_password(password, found.digest)
    assert not check_password(password + "x", found.digest)
    taken = qinglang(url, "users", "create", "王审核", "--role", "admin")
    assert taken.returncode == 2 and "taken" in taken.stderr
    assert qinglang(url, "users", "create", "x", "--role", "publisher").returncode == 2


def flagged_and_decided(tmp_path: Path) -> str:
    """A database of one confirmed post: five audit records and one label."""
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    upgrade(url)
    policy = load_policy(Settings().policy_file)
    repo = open_repository(url, 5.0, policy.review)
    rec = record("p1").model_copy(update={"account_id": "acc1"})
    repo.save_records([Pending(rec, True, "谣言")])
    (item,) = repo.list_items(policy).items
    repo.decide(policy, item.id, "r1", "confirm", "rumor", "art18.6")
    repo.close()
    return url


def refused(done: subprocess.CompletedProcess[str]) -> str:
    """The one line of a command that could not run."""
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    (line,) = done.stderr.splitlines()
    return line


def test_export_refuses_an_unusable_output_path_before_reading(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'never.db'}"
    assert "the path is empty" in refused(qinglang(url, "audit", "export", "-o", ""))
    assert "'/' is a folder" in refused(qinglang(url, "labels", "export", "-o", "/"))
    assert "is a folder" in refused(qinglang(url, "audit", "export", "-o", str(tmp_path)))
    missing = tmp_path / "missing" / "out.jsonl"
    assert "does not exist" in refused(qinglang(url, "labels", "export", "-o", str(missing)))
    assert not (tmp_path / "never.db").exists()


def test_export_refuses_a_period_that_holds_no_time_before_reading(tmp_path: Path) -> None:
    """``--from`` at or after ``--to`` (swapped, or a zone mistyped) exports no record: status
    2 saying so, not an empty export that reads as a period in which nothing was done."""
    url = flagged_and_decided(tmp_path)
    out = tmp_path / "audit.jsonl"
    swapped = ["--from", "2026-11-02T00:00Z", "--to", "2026-11-01T00:00Z", "-o", str(out)]
    assert refused(qinglang(url, "audit", "export", *swapped)) == (
        "qinglang audit: error: the period is empty: --from 2026-11-02T00:00:00+00:00 "
        "is not before --to 2026-11-01T00:00:00+00:00"
    )
    # the same moment in two zones
    same = ["--from", "2026-11-01T08:00+08:00", "--to", "2026-11-01T00:00Z", "-o", str(out)]
    assert "the period is empty" in refused(qinglang(url, "audit", "export", *same))
    assert not out.exists()
    # a period in which nothing was recorded is no mistake: it exports no record
    quiet = qinglang(url, "audit", "export", "--from", "0", "--to", "1", "-o", str(out))
    assert quiet.returncode == 0 and "0 records" in quiet.stderr and out.read_text() == ""


def test_export_writes_through_links_and_fifos(tmp_path: Path) -> None:
    url = flagged_and_decided(tmp_path)
    target = tmp_path / "labels.jsonl"
    target.write_text("old\n")
    link = tmp_path / "link.jsonl"
    link.symlink_to(target.name)
    assert qinglang(url, "labels", "export", "-o", str(link)).returncode == 0
    assert link.is_symlink() and json.loads(target.read_text())["head"] == "rumor"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cli.db", "labels.jsonl", "link.jsonl"]
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    read: list[str] = []
    reader = threading.Thread(target=lambda: read.append(fifo.read_text()))
    reader.start()
    exported = qinglang(url, "audit", "export", "-o", str(fifo))
    reader.join(timeout=60)
    assert exported.returncode == 0, exported.stderr
    assert len(read[0].splitlines()) == 5 and fifo.is_fifo()
    stdout = qinglang(url, "audit", "export", "--format", "csv", "-o", "-")
    assert stdout.returncode == 0 and len(stdout.stdout.splitlines()) == 6


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="no /proc/self/fd")
def test_export_to_its_own_standard_output_keeps_the_shells_append(tmp_path: Path) -> None:
    url = flagged_and_decided(tmp_path)
    log = tmp_path / "log"
    log.write_text("before\n")
    own_stdout = tmp_path / "stdout"  # what /dev/stdout is, made here
    own_stdout.symlink_to("/proc/self/fd/1")
    with open(log, "a") as appended:
        done = subprocess.run(
            [sys.executable, "-m", "service.cli", "audit", "export", "-o", str(own_stdout)],
            env={**os.environ, "QINGLANG_DATABASE_URL": url},
            stdout=appended,
            timeout=120,
            check=False,
        )
    assert done.returncode == 0 and own_stdout.is_symlink()
    assert log.read_text().splitlines()[0] == "before" and len(log.read_text().splitlines()) == 6


def test_export_to_a_closed_pipe_says_so_in_one_line(tmp_path: Path) -> None:
    url = flagged_and_decided(tmp_path)
    read_end, write_end = os.pipe()
    os.close(read_end)  # before the export writes, so that its first write fails
    try:
        done = subprocess.run(
            [sys.executable, "-m", "service.cli", "audit", "export"],
            env={**os.environ, "QINGLANG_DATABASE_URL": url},
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        os.close(write_end)
    assert "closed it" in refused(done)


READS = (("audit", "verify"), ("audit", "export"), ("labels", "export"))


def test_the_commands_that_only_read_create_and_migrate_nothing(database_url: str) -> None:
    def refusals() -> list[str]:
        return [refused(qinglang(database_url, *command)) for command in READS]

    # empty: a SQLite file that does not exist, a PostgreSQL schema without tables
    missing = make_url(database_url).database
    says = f"no SQLite database at {missing}" if database_url.startswith("sqlite") else "no schema"
    assert all(says in line and "qinglang migrate" in line for line in refusals())
    if database_url.startswith("sqlite"):
        # before an engine of this test's own, which makes the file for its migration below
        assert missing is not None and not Path(missing).exists()
    engine = make_engine(database_url, 5.0)
    try:
        if not database_url.startswith("sqlite"):
            assert inspect(engine).get_table_names() == []
        with engine.begin() as connection:
            migrate(connection, "0007_evidence_sweep")
        behind = f"is at migration 0007_evidence_sweep, not {head_revision()}"
        assert all(behind in line and "run qinglang migrate" in line for line in refusals())
        assert not inspect(engine).has_table("appeal_duplicates")  # 0008's
    finally:
        engine.dispose()
    # a command that writes migrates, as before; then the others read
    assert qinglang(database_url, "credit", "restore").returncode == 0
    verified = qinglang(database_url, "audit", "verify")
    assert verified.returncode == 0 and "ok, 0 records" in verified.stderr


def banked(repo: SqlRepository, text_: str | None, notice: str) -> str:
    """Bank a confirmed rumour as the service does, without the index's signature."""
    rumor_id = f"r{len(repo.rumors())}"
    repo.add_rumor(
        lambda _, now: StoredRumor(rumor_id, text_, None, notice, "f1", b"", now, "admin")
    )
    return rumor_id


def confirmed(repo: SqlRepository, post_id: str, note: str | None) -> tuple[int, int]:
    """A post of acc1 flagged and confirmed with ``note``: its item's and decision's ids."""
    policy = load_policy(Settings().policy_file)
    rec = record(post_id).model_copy(update={"account_id": "acc1"})
    repo.save_records([Pending(rec, True, "帖子")])
    (item,) = [i for i in repo.list_items(policy).items if i.post_id == post_id]
    decided = repo.decide(policy, item.id, "r1", "confirm", "rumor", "art18.6", note)
    return item.id, decided.id


def test_audit_verify_names_every_stored_text_edited_since_its_digest_was_chained(
    database_url: str,
) -> None:
    """Each free text a record chains by digest, edited in its table, is named by its table,
    row, column and record; a row removed by a chained removal, a text chained as none and a
    record written before its kind chained a digest are not."""
    upgrade(database_url)
    policy = load_policy(Settings().policy_file)
    repo = open_repository(database_url, 5.0, policy.review)
    item, noted = confirmed(repo, "p1", "核实为谣言")
    other, plain = confirmed(repo, "p2", None)
    report = repo.file_report(
        policy, post_id="p1", account_id=None, category="rumor", text_="这是谣言", reporter="k1"
    )
    moved = repo.file_appeal(policy, account_id="acc1", item_id=item, reason="误判", filed_by="k1")
    repo.decide_appeal(policy, moved.id, "r2", "reject", "证据充分")
    appeal = repo.file_appeal(
        policy, account_id="acc1", item_id=other, reason="不是谣言", filed_by="k1"
    )
    kept = banked(repo, "谣言全文", "辟谣说明")
    notice_only = banked(repo, None, "只有说明")
    repo.delete_rumor(banked(repo, "已删除的谣言", "说明"), "admin")
    with Session(repo.engine) as session, session.begin():
        # written before review.decision chained the note's digest
        old = {"decision": noted, "action": "confirm", "reviewer": "r1"}
        append_records(session, datetime.now(UTC), [("review.decision", f"item:{item}", old)])
    with repo.engine.begin() as db:
        # an appeal 0008 moved out of appeals keeps its reason and note beside the records
        row = db.execute(select(StoredAppeal).where(StoredAppeal.id == moved.id)).one()
        twin = {c.name: getattr(row, c.name) for c in StoredAppeal.__table__.columns}
        db.execute(delete(StoredAppeal).where(StoredAppeal.id == moved.id))
        twin.pop("on_behalf")
        db.execute(insert(DuplicateAppeal).values(**twin, kept_id=appeal.id))
    repo.close()
    clean = qinglang(database_url, "audit", "verify")
    assert clean.returncode == 0, clean.stderr
    assert "10 stored texts match" in clean.stderr, clean.stderr
    assert "1 unverifiable" in clean.stderr and "2 removed" in clean.stderr
    edits = [
        (ReviewDecision, ReviewDecision.id, noted, "note"),
        (ReviewDecision, ReviewDecision.id, plain, "note"),
        (StoredReport, StoredReport.id, report.id, "text"),
        (StoredAppeal, StoredAppeal.id, appeal.id, "reason"),
        (DuplicateAppeal, DuplicateAppeal.id, moved.id, "reason"),
        (DuplicateAppeal, DuplicateAppeal.id, moved.id, "note"),
        (BankedRumor, BankedRumor.rumor_id, kept, "text"),
        (BankedRumor, BankedRumor.rumor_id, kept, "notice"),
    ]
    engine = make_engine(database_url, 5.0)
    try:
        with engine.begin() as db:
            for table, id_, key, column in edits:
                db.execute(update(table).where(id_ == key).values({column: "改过的文字"}))
            db.execute(delete(BankedRumor).where(BankedRumor.rumor_id == notice_only))
    finally:
        engine.dispose()
    broken = qinglang(database_url, "audit", "verify")
    assert broken.returncode == 1
    *problems, walked = [
        line.partition("qinglang audit verify: ")[2] for line in broken.stderr.splitlines()
    ]
    assert re.fullmatch(r"walked the chain to record \d+, the head when the walk began", walked)
    named = [p.split(": ")[1] for p in problems]
    assert named == [
        f"review_decisions.note of row {noted}",
        f"review_decisions.note of row {plain}",
        f"reports.text of row {report.id}",
        f"appeal_duplicates.reason of row {moved.id}",
        f"appeal_duplicates.note of row {moved.id}",
        f"appeals.reason of row {appeal.id}",
        f"rumor_bank.text of row {kept}",
        f"rumor_bank.notice of row {kept}",
        f"rumor_bank.text of row {notice_only}",
        f"rumor_bank.notice of row {notice_only}",
    ], broken.stderr
    assert problems[0].startswith("record ") and "note_sha256 (edited since" in problems[0]
    assert problems[-1].endswith("the row is missing, and no rumor.unbanked record removed it")


def test_audit_verify_names_every_stored_text_no_record_vouches_for(database_url: str) -> None:
    """A free text written into its table outside the service (a row inserted, or a text put in
    a row whose record chained none) is named by its table, column and row, whichever table
    of its kind holds it; a row without a text, and the rows the service wrote, are not."""
    upgrade(database_url)
    policy = load_policy(Settings().policy_file)
    repo = open_repository(database_url, 5.0, policy.review)
    item, _ = confirmed(repo, "p1", "核实为谣言")
    repo.file_report(
        policy, post_id="p1", account_id=None, category="rumor", text_="这是谣言", reporter="k1"
    )
    open_appeal = repo.file_appeal(
        policy, account_id="acc1", item_id=item, reason="误判", filed_by="k1"
    )
    banked(repo, "谣言全文", "辟谣说明")
    repo.close()
    assert qinglang(database_url, "audit", "verify").returncode == 0
    engine = make_engine(database_url, 5.0)
    try:
        with engine.begin() as db:
            forged = dict(db.execute(select(ReviewDecision.__table__)).mappings().one())
            db.execute(insert(ReviewDecision).values({**forged, "id": 900, "note": "补记"}))
            db.execute(insert(ReviewDecision).values({**forged, "id": 901, "note": None}))
            copied = dict(db.execute(select(StoredReport.__table__)).mappings().one())
            db.execute(insert(StoredReport).values({**copied, "id": 902, "text": "伪造的举报"}))
            # an appeal never decided, given a note: no appeal.decision record chained one
            db.execute(
                update(StoredAppeal).where(StoredAppeal.id == open_appeal.id).values(note="驳回")
            )
            twin = dict(db.execute(select(StoredAppeal.__table__)).mappings().one())
            twin.pop("on_behalf")
            db.execute(insert(DuplicateAppeal).values({**twin, "id": 903, "kept_id": twin["id"]}))
            bank = dict(db.execute(select(BankedRumor.__table__)).mappings().one())
            db.execute(insert(BankedRumor).values({**bank, "rumor_id": "forged", "text": None}))
    finally:
        engine.dispose()
    broken = qinglang(database_url, "audit", "verify")
    assert broken.returncode == 1, broken.stderr
    *problems, walked = [
        line.partition("qinglang audit verify: ")[2] for line in broken.stderr.splitlines()
    ]
    assert re.fullmatch(r"walked the chain to record \d+, the head when the walk began", walked)
    assert problems == [
        "review_decisions.note of row 900: no review.decision record names the row "
        "(written outside the service)",
        "reports.text of row 902: no report.filed record names the row "
        "(written outside the service)",
        "appeal_duplicates.reason of row 903: no appeal.filed record names the row "
        "(written outside the service)",
        f"appeals.note of row {open_appeal.id}: no appeal.decision record names the row "
        "(written outside the service)",
        "appeal_duplicates.note of row 903: no appeal.decision record names the row "
        "(written outside the service)",
        "rumor_bank.notice of row forged: no rumor.banked record names the row "
        "(written outside the service)",
    ], broken.stderr


def test_audit_verify_names_every_account_whose_row_the_chain_does_not_bear_out(
    database_url: str,
) -> None:
    """An account's row altered in the database (its credit, level, profile, dormancy or the
    clock a warning was given on) or deleted is named by the account and the column, against
    the record that says otherwise; the rows the service wrote pass."""
    upgrade(database_url)
    policy = load_policy(Settings().policy_file)
    repo = open_repository(database_url, 5.0, policy.review)
    confirmed(repo, "p1", None)
    repo.put_account(policy, "acc2", name="清朗日报", subject_id="110101199001011234", followers=7)
    repo.put_account(policy, "gone", followers=3)
    repo.record_use(policy, {"quiet": datetime.now(UTC)})
    # asleep since T0: warned, then found dormant; awake since a warning after
    repo.put_account(policy, "sleeper", now=T0)
    repo.warn_dormancy(policy, now=T0 + warned_after(policy))
    repo.settle_dormancy(policy, now=T0 + dormant_after(policy))
    repo.put_account(policy, "warned1", now=T0 + DAY)
    repo.warn_dormancy(policy, now=T0 + DAY + warned_after(policy))
    charged = repo.get_account(policy, "acc1")
    asleep = repo.get_account(policy, "sleeper")
    assert asleep.dormant_at is not None and repo.get_account(policy, "warned1").warned_at
    repo.close()
    clean = qinglang(database_url, "audit", "verify")
    assert clean.returncode == 0, clean.stderr
    assert "6 account rows agree with what the records say of them" in clean.stderr
    engine = make_engine(database_url, 5.0)
    try:
        with engine.begin() as db:
            for account_id, values in (
                ("acc1", {"credit": charged.credit + 30, "level": "tampered"}),
                ("acc2", {"name": "改过的名字", "followers": 100_000, "subject_digest": "0" * 64}),
                ("quiet", {"name": "补上的名字"}),
                ("sleeper", {"dormant_at": None}),
                ("warned1", {"active_at": datetime.now(UTC)}),
            ):
                db.execute(
                    update(StoredAccount)
                    .where(StoredAccount.account_id == account_id)
                    .values(values)
                )
            db.execute(delete(StoredAccount).where(StoredAccount.account_id == "gone"))
    finally:
        engine.dispose()
    broken = qinglang(database_url, "audit", "verify")
    assert broken.returncode == 1, broken.stderr
    *problems, walked = [
        line.partition("qinglang audit verify: ")[2] for line in broken.stderr.splitlines()
    ]
    assert re.fullmatch(r"walked the chain to record \d+, the head when the walk began", walked)
    named = [p.split(" is ")[0] for p in problems]
    assert named == [
        "account acc1: credit",
        "account acc1: level",
        "account acc2: name",
        "account acc2: followers",
        "account acc2: subject_digest",
        "account gone: the row",
        "account quiet: name",
        "account sleeper: dormant_at",
        "account warned1: active_at",
    ], broken.stderr
    assert problems[5] == (
        "account gone: the row is missing, but the chain records account.profile of it "
        "(deleted outside the service)"
    )
    assert problems[0].startswith(
        f"account acc1: credit is {charged.credit + 30} in the row, {charged.credit} in the "
        "chain (record "
    )
    assert problems[0].endswith("): altered outside the service")
    assert problems[6] == (
        "account quiet: name is '补上的名字' in the row, null in the chain (no record): "
        "altered outside the service"
    )
    assert problems[7].startswith(
        f"account sleeper: dormant_at is null in the row, {asleep.dormant_at.isoformat()} in "
    )


def test_audit_verify_names_an_account_whose_login_the_chain_does_not_bear_out(
    repo: SqlRepository, policy: Policy
) -> None:
    """The row keeps the latest login its profiles chained, whatever zone each was given in (a
    login reported late keeps the one stored): a row whose login was altered, or given one no
    profile reported, is named against the chain's latest."""
    beijing = timezone(timedelta(hours=8))
    first = datetime(2026, 12, 1, 20, 0, 0, 250_000, tzinfo=beijing)
    # earlier as a moment, though later on the wall clock it was written in
    late = datetime(2026, 12, 1, 15, 0, tzinfo=timezone(timedelta(hours=-5)))
    repo.put_account(policy, "kept", login_at=first)
    repo.put_account(policy, "kept", login_at=late - timedelta(hours=10))
    repo.put_account(policy, "moved", login_at=first)
    repo.put_account(policy, "moved", login_at=late)
    repo.put_account(policy, "never", followers=2)
    assert repo.get_account(policy, "moved").last_login_at == late
    assert verified(repo) == []
    altered = (first + timedelta(microseconds=1)).astimezone(UTC)
    with Session(repo.engine) as session, session.begin():
        session.execute(
            update(StoredAccount)
            .where(StoredAccount.account_id.in_(("kept", "never")))
            .values(login_at=altered)
        )
    assert verified(repo) == [
        f"account {account}: login_at is {altered.isoformat()} in the row, "
        f"{chained} in the chain (the latest login its account.profile records report): "
        "altered outside the service"
        for account, chained in (("kept", first.astimezone(UTC).isoformat()), ("never", "null"))
    ]


def test_audit_verify_lets_a_write_and_a_checkpoint_finish_between_its_pages(
    tmp_path: Path, policy: Policy
) -> None:
    """The accounts are replayed a page at a time, each page read in a transaction of its own:
    between two pages a write commits and a checkpoint empties the WAL file (one that waited
    for the walk would leave it growing for as long as the walk ran), and the walk still sees
    each account whole."""
    path = tmp_path / "qinglang.db"
    url = f"sqlite:///{path}"
    upgrade(url)
    repo = open_repository(url, 5.0, policy.review)
    try:
        for i in range(5):
            repo.put_account(policy, f"acc{i}", followers=i)
        walk = repo.replayed_accounts(chunk=2)
        first = next(walk)
        repo.put_account(policy, "acc4", followers=40)
        # no wait for a lock: a checkpoint the walk held back answers busy at once
        with closing(sqlite3.connect(path, timeout=0)) as db:
            busy, _, _ = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        assert busy == 0
        accounts = replay.check([first, *walk], lambda plain: plain)
        assert (accounts.problems, accounts.checked) == ([], 5)
        assert path.with_name("qinglang.db-wal").stat().st_size == 0
    finally:
        repo.close()


def test_audit_verify_walks_the_chain_to_the_head_it_read(
    tmp_path: Path,
    policy: Policy,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A live server appends records while the chain is walked: the walk verifies the records
    up to the head it read first, and says so, where it would find the records after it and
    call the chain longer than its head, records missing. Those appended meanwhile are the
    next verify's; a record deleted before the head is still found."""
    url = f"sqlite:///{tmp_path / 'qinglang.db'}"
    upgrade(url)
    writer = open_repository(url, 5.0, policy.review)
    walked = SqlRepository.audit_entries

    def paged(self: SqlRepository, *args: Any, **kwargs: Any) -> Iterator[chain.Entry]:
        for n, entry in enumerate(walked(self, *args, **{**kwargs, "chunk": 2})):
            yield entry
            if n == 1:
                # between the walk's first page and its second
                writer.put_account(policy, "late", followers=1)

    try:
        for i in range(3):
            writer.put_account(policy, f"acc{i}", followers=i)
        monkeypatch.setenv("QINGLANG_DATABASE_URL", url)
        monkeypatch.setattr(SqlRepository, "audit_entries", paged)
        get_settings.cache_clear()
        assert main(["audit", "verify"]) == 0, capsys.readouterr().err
        assert "ok, 3 records (1 to 3, the head when the walk began;" in capsys.readouterr().err
        assert writer.audit_head()[0] == 4
        with Session(writer.engine) as session, session.begin():
            session.execute(delete(AuditRecord).where(AuditRecord.seq == 2))
        assert main(["audit", "verify"]) == 1
        problems = capsys.readouterr().err
        assert "record 3: expected sequence number 2" in problems
        assert "walked the chain to record 4, the head when the walk began" in problems
    finally:
        get_settings.cache_clear()
        writer.close()
