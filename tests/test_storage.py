"""The SQLAlchemy repository on SQLite and on PostgreSQL, migrated from empty by Alembic."""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.runtime.migration import MigrationContext
from alembic.util import CommandError
from servicekit import migrate, migrated, record, wait_for
from sqlalchemy import (
    JSON,
    Connection,
    DateTime,
    Select,
    String,
    column,
    delete,
    event,
    func,
    insert,
    inspect,
    select,
    table,
    text,
    update,
)
from sqlalchemy.exc import OperationalError
from sqlalchemy.sql.dml import Insert
from sqlalchemy.sql.elements import TextClause

from service.policy import load_policy
from service.record import Post, ScoreRecord
from service.review import chain
from service.review.items import ConflictError, QueueRequest
from service.security import Guard, VerifiedKeys
from service.settings import Settings
from service.storage import (
    ApiKey,
    Pending,
    SqlRepository,
    StorageError,
    StoredRumor,
    open_repository,
    upgrade,
)
from service.storage.console_sql import ConsoleReads
from service.storage.database import alembic_config, head_revision, make_engine
from service.storage.repository import RumorCopy
from service.storage.review_rows import utc
from service.storage.tables import ReviewItem, StoredPost, StoredRecord, StoredReport


@pytest.fixture
def repository(database_url: str) -> Iterator[SqlRepository]:
    upgrade(database_url)
    repo = open_repository(database_url, timeout_s=2.0)
    yield repo
    repo.close()


def test_migrations_create_the_tables_from_empty_and_run_again_as_a_no_op(
    database_url: str,
) -> None:
    upgrade(database_url)
    upgrade(database_url)
    repo = open_repository(database_url, 2.0)
    tables = set(inspect(repo.engine).get_table_names())
    repo.close()
    assert {"score_records", "review_queue", "api_keys", "alembic_version"} <= tables


def test_two_threads_migrating_two_databases_at_once_both_reach_the_head(tmp_path: Path) -> None:
    """Alembic's commands work through module globals (``alembic.context``, ``alembic.op``),
    which a second migration in the process would swap out from under the first: a server's
    maintenance and a recovery that both migrate must not break each other, nor leave every
    later migration of the process failing."""
    urls = [f"sqlite:///{tmp_path / f'{n}.db'}" for n in range(4)]
    start = threading.Barrier(len(urls))
    failed: list[BaseException] = []

    def migrate_one(url: str) -> None:
        start.wait()
        try:
            upgrade(url)
        except BaseException as exc:  # anything, to report it from the test's thread
            failed.append(exc)

    threads = [threading.Thread(target=migrate_one, args=(url,)) for url in urls]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failed == []
    for url in urls:
        engine = make_engine(url, 2.0)
        with engine.connect() as connection:
            assert MigrationContext.configure(connection).get_current_revision() == head_revision()
        engine.dispose()


def save(repository: SqlRepository, rec: ScoreRecord, enqueue: bool = True) -> ScoreRecord:
    (stored,) = repository.save_records([Pending(rec, enqueue)])
    return stored


def test_a_saved_record_is_found_by_post_and_model_version(repository: SqlRepository) -> None:
    saved = record("p1")
    assert save(repository, saved, enqueue=False) == saved
    assert repository.find_records(["p1", "p2"], "sha256:m1", "p1") == {"p1": saved}
    assert repository.find_records(["p1"], "sha256:other", "p1") == {}
    assert repository.queue() == []


def test_saving_the_same_post_twice_keeps_the_first_record_and_one_queue_item(
    repository: SqlRepository,
) -> None:
    first = record("p1", "review")
    second = first.model_copy(update={"scores": {**first.scores, "rumor": 0.9}})
    assert save(repository, first) == first
    assert save(repository, second) == first
    assert [(item.post_id, item.decision) for item in repository.queue()] == [("p1", "review")]
    assert repository.queue()[0].policy_version == "p1"


def publish_statements(repository: SqlRepository, post_id: str) -> list[object]:
    """The statements a published post's record runs: its look-up, its and its post's inserts
    (not the transaction's own, nor the audit record's), the update that adds its spans."""
    seen: list[object] = []

    def executed(_conn: Connection, statement: object, *_args: object) -> None:
        seen.append(statement)

    rec = record(post_id, "review").model_copy(update={"evidence_pending": True})
    event.listen(repository.engine, "before_execute", executed)
    try:
        repository.find_records([post_id], rec.model_version, rec.policy_version)
        found = len(seen)
        repository.save_records([Pending(rec, False, post=Post(id=post_id, text="正文"))])
        kept = [
            s
            for s in seen[found:]
            if isinstance(s, Insert) and s.table.name in ("score_records", "stored_posts")
        ]
        del seen[found:]
        repository.update_records([rec.model_copy(update={"evidence_pending": False})])
    finally:
        event.remove(repository.engine, "before_execute", executed)
    return [*seen[:found], *kept, *seen[found:]]


def test_the_statements_run_for_each_published_post_are_built_once(
    repository: SqlRepository,
) -> None:
    """Built for each call, these statements took SQLAlchemy longer to build than the database
    to run: a second post runs the very statements the first ran."""
    first = publish_statements(repository, "p1")
    second = publish_statements(repository, "p2")
    assert len(first) == 4
    assert [id(s) for s in second] == [id(s) for s in first]
    assert repository.find_records(["p1", "p2"], "sha256:m1", "p1") == {
        p: record(p, "review") for p in ("p1", "p2")
    }


def flagged_post_statements(repository: SqlRepository, post_id: str) -> list[object]:
    """The statements storing a flagged post of an account for review runs, but its
    transaction's own (SQLite's ``BEGIN IMMEDIATE``)."""
    seen: list[object] = []

    def executed(_conn: Connection, statement: object, *_args: object) -> None:
        seen.append(statement)

    rec = record(post_id, "review").model_copy(update={"account_id": "a1"})
    post = Post(id=post_id, text="正文", account_id="a1")
    event.listen(repository.engine, "before_execute", executed)
    try:
        repository.save_records([Pending(rec, True, text=post.text, post=post)])
    finally:
        event.remove(repository.engine, "before_execute", executed)
    return [s for s in seen if not isinstance(s, TextClause)]


def test_the_statements_storing_a_flagged_post_for_review_are_built_once(
    repository: SqlRepository,
) -> None:
    """Built for each call, the look-ups of the account's followers, of the post's open item
    and of what review decided of the post, its review item's insert and the audit records'
    append took SQLAlchemy longer to build than the database to run: a second flagged post
    runs the very statements the first ran, and the items and the chain are as before."""
    first = flagged_post_statements(repository, "p1")
    second = flagged_post_statements(repository, "p2")
    assert len(second) == len(first) == 9
    assert [a is b for a, b in zip(first, second, strict=True)] == [True] * 9
    assert [(i.post_id, i.status) for i in repository.queue()] == [
        ("p1", "open"),
        ("p2", "open"),
    ]
    entries = list(repository.audit_entries())
    assert [(e.kind, e.subject) for e in entries] == [
        ("score.flagged", "record:1"),
        ("review.enqueued", "item:1"),
        ("score.flagged", "record:2"),
        ("review.enqueued", "item:2"),
    ]
    assert chain.verify(entries, repository.audit_head()) == []


def queueing_statements(repository: SqlRepository, request: QueueRequest) -> list[object]:
    """The look-ups queueing ``request`` runs (its item's insert is the ORM's flush)."""
    seen: list[object] = []

    def executed(_conn: Connection, statement: object, *_args: object) -> None:
        seen.append(statement)

    event.listen(repository.engine, "before_execute", executed)
    try:
        repository.enqueue_requests(load_policy(Settings().policy_file), [request])
    finally:
        event.remove(repository.engine, "before_execute", executed)
    return [s for s in seen if isinstance(s, Select)]


def bank_match(post_id: str, reach: int = 0) -> QueueRequest:
    return QueueRequest(
        kind="bank_match",
        merge_key=f"bank:r1:post:{post_id}",
        head="rumor",
        severity="review",
        reach=reach,
        evidence={"confirmed_rumor": "r1"},
        post_id=post_id,
        account_id="a1",
        text="正文",
    )


def test_the_look_ups_queueing_a_bank_match_are_built_once(repository: SqlRepository) -> None:
    """A bank match of a post is queued on the publish path, and the look-ups of the post's
    open and confirmed items and of its key's open and last decided items took SQLAlchemy
    longer to build than the database to run them: a second match, of another post, runs the
    very statements the first ran; a third, of a post already queued, those of the first that
    it runs (the post's open item, the key's, the chain's head)."""
    first = queueing_statements(repository, bank_match("p1"))
    second = queueing_statements(repository, bank_match("p2"))
    assert len(first) == len(second) == 5
    assert [id(s) for s in second] == [id(s) for s in first]
    grown = queueing_statements(repository, bank_match("p1", 5))
    assert [id(s) for s in grown] == [id(first[i]) for i in (0, 2, 4)]
    assert [(i.post_id, i.status) for i in repository.queue()] == [("p1", "open"), ("p2", "open")]


def test_rumour_copies_are_recorded_once_each_by_a_statement_built_once(
    repository: SqlRepository,
) -> None:
    """Each post scored that copies a banked rumour records the copy: a second call runs the
    statement the first ran, and a copy recorded already, or twice in one call, is counted and
    kept once."""
    seen: list[object] = []

    def executed(_conn: Connection, statement: object, *_args: object) -> None:
        seen.append(statement)

    p1 = RumorCopy("r1", "p1", "a1", 1_700_000_000.5, 0.9, "sha256:m1")
    p2 = RumorCopy("r1", "p2", None, 1_700_000_001.0, 0.8, "sha256:m1")
    p3 = RumorCopy("r1", "p3", "a3", 1_700_000_002.0, 0.95, "sha256:m1")
    event.listen(repository.engine, "before_execute", executed)
    try:
        assert repository.record_rumor_copies([p1, p2, p1]) == 2
        first = [s for s in seen if not isinstance(s, TextClause)]
        seen.clear()
        assert repository.record_rumor_copies([p2, p3]) == 1
        second = [s for s in seen if not isinstance(s, TextClause)]
    finally:
        event.remove(repository.engine, "before_execute", executed)
    assert len(first) == 1
    assert [id(s) for s in second] == [id(s) for s in first]
    assert repository.record_rumor_copies([]) == 0
    assert repository.rumor_copies("r1") == [p1, p2, p3]


def test_a_new_model_version_is_a_new_record_that_the_posts_open_item_moves_to(
    repository: SqlRepository,
) -> None:
    save(repository, record("p1", model="sha256:m1"))
    save(repository, record("p1", model="sha256:m2"))
    assert [item.model_version for item in repository.queue()] == ["sha256:m2"]
    assert list(repository.find_records(["p1"], "sha256:m1", "p1")) == ["p1"]


def test_concurrent_saves_of_one_post_store_it_once(repository: SqlRepository) -> None:
    results: list[ScoreRecord] = []

    def race(i: int) -> None:
        candidate = record("race").model_copy(update={"signals": {"originality_claim": i / 10}})
        results.append(save(repository, candidate))

    threads = [threading.Thread(target=race, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({r.model_dump_json() for r in results}) == 1
    assert len(repository.queue()) == 1


def test_keys_are_stored_and_found_by_id(repository: SqlRepository) -> None:
    key = ApiKey(key_id="k1", digest="d" * 64, role="reviewer", created_at=datetime.now(UTC))
    repository.add_key(key)
    found = repository.get_key("k1")
    assert found is not None
    assert (found.key_id, found.digest, found.role, found.revoked) == (
        "k1",
        "d" * 64,
        "reviewer",
        False,
    )
    assert repository.get_key("nope") is None
    assert found.created_at.tzinfo is not None  # SQLite's naive times come back as UTC
    later = ApiKey(key_id="k2", digest="e" * 64, role="publisher", created_at=datetime.now(UTC))
    repository.add_key(later)
    before = repository.revoke_key("k1")
    assert before is not None and not before.revoked
    revoked = repository.get_key("k1")
    assert revoked is not None and revoked.revoked
    again = repository.revoke_key("k1")
    assert again is not None and again.revoked
    assert repository.revoke_key("nope") is None
    assert [(k.key_id, k.revoked) for k in repository.list_keys()] == [("k1", True), ("k2", False)]


def test_0032_leaves_every_key_from_before_unowned_and_goes_down_and_up_again(
    database_url: str, tmp_path: Path
) -> None:
    """A key from before belongs to nobody: it goes on acting as its key id, revoked or not as
    it was. The downgrade drops the column, and a second try from 0032 (SQLite keeps the drop
    of a downgrade refused further down) drops nothing."""
    engine = make_engine(database_url, 5.0)
    secret = "s" * 43
    try:
        with engine.begin() as connection:
            migrate(connection, "0031_dormancy_warnings")
            for key_id, revoked in (("0123456789ab", None), ("ba9876543210", "2026-06-02")):
                connection.execute(
                    text(
                        "INSERT INTO api_keys (key_id, digest, role, created_at, revoked_at) "
                        "VALUES (:k, :d, 'admin', '2026-06-01 08:00:00', :r)"
                    ),
                    {"k": key_id, "d": hashlib.sha256(secret.encode()).hexdigest(), "r": revoked},
                )
        upgrade(database_url)
        repo = open_repository(database_url, 2.0)
        try:
            assert [(k.key_id, k.revoked, k.owner) for k in repo.list_keys()] == [
                ("0123456789ab", False, None),
                ("ba9876543210", True, None),
            ]
            known = VerifiedKeys(tmp_path / "verified-keys.json")
            guard = Guard(repo, rate=10, burst=10, cache_s=0, known=known)
            who = guard.check(f"Bearer ql_0123456789ab_{secret}", ("admin",))
            assert (who.owner, who.actor) == (None, "0123456789ab")
        finally:
            repo.close()
        with engine.begin() as connection:
            for _ in range(2):
                migrate(connection, "0031_dormancy_warnings", down=True)
                found = inspect(connection).get_columns("api_keys")
                assert "owner" not in {c["name"] for c in found}
                config = alembic_config()
                config.attributes["connection"] = connection
                command.stamp(config, "0032_key_owners")
    finally:
        engine.dispose()


def test_0033_widens_who_added_a_bank_entry_and_narrows_it_back_only_where_it_fits(
    database_url: str,
) -> None:
    """An entry from before keeps its key id; after it, a console user's name at its longest
    (64 characters) is stored whole. The downgrade stops while an entry names someone in more
    than 32 characters, and narrows the column once none does; a second try from 0033 (SQLite
    keeps a downgrade a revision further down refused) narrows it again."""
    bank = table(
        "rumor_bank",
        *(column(name) for name in ("rumor_id", "notice", "fingerprint", "created_by")),
        column("signature"),
        column("created_at", DateTime(timezone=True)),
    )

    def entry(rumor_id: str, by: str) -> dict[str, object]:
        return {
            "rumor_id": rumor_id,
            "notice": "辟谣",
            "fingerprint": "f",
            "signature": b"\x00",
            "created_at": datetime(2026, 6, 1, tzinfo=UTC),
            "created_by": by,
        }

    def width(connection: Connection) -> int:
        (found,) = (
            c for c in inspect(connection).get_columns("rumor_bank") if c["name"] == "created_by"
        )
        kind = found["type"]
        assert isinstance(kind, String) and kind.length is not None
        return kind.length

    name = "管理" * 32
    engine = make_engine(database_url, 5.0)
    try:
        with engine.begin() as connection:
            migrate(connection, "0032_key_owners")
            connection.execute(insert(bank).values(entry("before", "0123456789ab")))
            migrate(connection, "0033_bank_actor")
            assert width(connection) == 64
            connection.execute(insert(bank).values(entry("after", name)))
            stored = connection.execute(
                select(bank.c.rumor_id, bank.c.created_by).order_by(bank.c.rumor_id)
            ).all()
            assert [tuple(row) for row in stored] == [("after", name), ("before", "0123456789ab")]
        with (
            pytest.raises(CommandError, match="1 confirmed-rumour bank entries"),
            engine.begin() as connection,
        ):
            migrate(connection, "0032_key_owners", down=True)
        with engine.begin() as connection:
            assert width(connection) == 64
            connection.execute(delete(bank).where(bank.c.rumor_id == "after"))
            for _ in range(2):
                migrate(connection, "0032_key_owners", down=True)
                assert width(connection) == 32
                config = alembic_config()
                config.attributes["connection"] = connection
                command.stamp(config, "0033_bank_actor")
            kept = connection.execute(select(bank.c.created_by)).scalars().all()
            assert kept == ["0123456789ab"]
    finally:
        engine.dispose()


def test_0034_keeps_the_holders_appeal_beside_one_filed_for_them_and_goes_down_without_it(
    database_url: str,
) -> None:
    """After 0034 a violation holds an appeal filed on the holder's behalf and the holder's
    own; the downgrade stops while one does, and goes down once it holds one appeal, its
    appeals the holder's again to the schema before it."""
    upgrade(database_url)
    policy = load_policy(Settings().policy_file)
    repo = open_repository(database_url, 5.0, policy.review)
    at = datetime(2026, 11, 1, tzinfo=UTC)
    try:
        rec = record("p1", "block").model_copy(update={"account_id": "acc1"})
        repo.save_records([Pending(rec, True, "帖子")])
        (item,) = repo.list_items(policy).items
        repo.decide(policy, item.id, "r1", "confirm", "rumor", "art18.6", now=at)
        staff = repo.file_appeal(
            policy,
            account_id="acc1",
            item_id=item.id,
            reason="代为申诉",
            filed_by="li",
            on_behalf=True,
            now=at,
        )
        repo.decide_appeal(policy, staff.id, "r2", "reject", None, now=at)
        own = repo.file_appeal(
            policy, account_id="acc1", item_id=item.id, reason="误判", filed_by="k", now=at
        )
    finally:
        repo.close()
    engine = make_engine(database_url, 5.0)
    try:
        with (
            pytest.raises(CommandError, match="1 violations hold the holder's appeal"),
            engine.begin() as connection,
        ):
            migrate(connection, "0033_bank_actor", down=True)
        with engine.begin() as connection:
            connection.execute(text("DELETE FROM appeals WHERE id = :id"), {"id": own.id})
            migrate(connection, "0033_bank_actor", down=True)
            columns = {c["name"] for c in inspect(connection).get_columns("appeals")}
            assert "on_behalf" not in columns
            migrate(connection, "0034_appeals_on_behalf")
            kept = connection.execute(text("SELECT id, on_behalf FROM appeals")).all()
            assert [(row[0], bool(row[1])) for row in kept] == [(staff.id, False)]
    finally:
        engine.dispose()


def test_0035_dates_each_reported_item_from_its_first_report_and_goes_down_and_up_again(
    database_url: str,
) -> None:
    """An item queued before its reports takes its earliest report's filing, whatever order the
    reports were stored in; one nobody reported keeps none."""
    queued = datetime(2026, 6, 1, tzinfo=UTC)

    def item(post_id: str) -> Any:
        return (
            insert(ReviewItem)
            .values(
                post_id=post_id,
                policy_version="p1",
                decision="review",
                severity="review",
                urgency=0.0,
                enqueued_at=queued,
            )
            .returning(ReviewItem.id)
        )

    def first_reports(connection: Connection) -> dict[str, datetime | None]:
        rows = connection.execute(select(ReviewItem.post_id, ReviewItem.reported_at)).all()
        return {str(post_id): None if at is None else utc(at) for post_id, at in rows}

    engine = make_engine(database_url, 5.0)
    try:
        with engine.begin() as connection:
            migrate(connection, "0034_appeals_on_behalf")
            reported = connection.execute(item("p1")).scalar_one()
            connection.execute(item("p2"))
            for days in (5, 3):
                connection.execute(
                    insert(StoredReport).values(
                        post_id="p1",
                        category="rumor",
                        text="",
                        item_id=reported,
                        reporter="k1",
                        created_at=queued + timedelta(days=days),
                    )
                )
            migrate(connection, "0035_item_reported_at")
            expected = {"p1": queued + timedelta(days=3), "p2": None}
            assert first_reports(connection) == expected
            migrate(connection, "0034_appeals_on_behalf", down=True)
            columns = {c["name"] for c in inspect(connection).get_columns("review_queue")}
            assert "reported_at" not in columns
            migrate(connection, "0035_item_reported_at")
            assert first_reports(connection) == expected
    finally:
        engine.dispose()


def test_an_unreachable_database_raises_storage_error_quickly() -> None:
    repo = open_repository("postgresql+psycopg://postgres@127.0.0.1:9/test", timeout_s=1.0)
    with pytest.raises(StorageError):
        repo.ping()
    with pytest.raises(StorageError):
        save(repo, record("p"))
    repo.close()


def test_a_database_without_the_schema_raises_storage_error(tmp_path: object) -> None:
    repo = open_repository(f"sqlite:///{tmp_path}/empty.db", timeout_s=1.0)
    with pytest.raises(StorageError):
        repo.find_records(["p"], "m", "p1")
    repo.close()


def test_a_batch_of_records_is_saved_in_order_and_a_repeated_post_keeps_its_first(
    repository: SqlRepository,
) -> None:
    save(repository, record("old"))
    again = record("old", "block")
    items = [
        Pending(record("a"), enqueue=True),
        Pending(again, enqueue=True),
        Pending(record("b", "block"), enqueue=False),
        Pending(record("a", "block"), enqueue=True),
    ]
    stored = repository.save_records(items)
    assert [(r.id, r.decision) for r in stored] == [
        ("a", "review"),
        ("old", "review"),
        ("b", "block"),
        ("a", "review"),
    ]
    assert [q.post_id for q in repository.queue()] == ["old", "a"]


def test_a_record_under_another_policy_is_stored_beside_the_first_and_found_under_its_policy(
    repository: SqlRepository,
) -> None:
    first = save(repository, record("p"))
    later = record("p", "block").model_copy(update={"policy_version": "p2"})
    assert repository.save_records([Pending(later, True), Pending(later, True)]) == [later, later]
    # each policy finds its own record; a policy that has none finds the earliest
    assert repository.find_records(["p"], "sha256:m1", "p2") == {"p": later}
    assert repository.find_records(["p"], "sha256:m1", "p1") == {"p": first}
    assert repository.find_records(["p"], "sha256:m1", "p3") == {"p": first}
    # the post's open item moved to the later record: the post is reviewed once
    assert [(q.policy_version, q.decision) for q in repository.queue()] == [("p2", "block")]


LEASE_S = 60.0


def pending(post_id: str, model: str = "sha256:m1") -> Pending:
    rec = record(post_id, model=model).model_copy(update={"evidence_pending": True})
    return Pending(rec, enqueue=False, post=Post(id=post_id, text=f"正文 {post_id}"))


def claim(repository: SqlRepository, after_s: float, limit: int = 10) -> list[str]:
    """The post ids a sweep claims ``after_s`` seconds from now."""
    now = datetime.now(UTC) + timedelta(seconds=after_s)
    found = repository.claim_pending_evidence("sha256:m1", limit, LEASE_S, now)
    assert all(post.id == rec.id and post.text == f"正文 {rec.id}" for post, rec in found)
    return [rec.id for _, rec in found]


def test_a_record_left_evidence_pending_is_claimed_after_a_lease_until_its_evidence_is_stored(
    repository: SqlRepository,
) -> None:
    settled = Pending(record("settled"), enqueue=False, post=Post(id="settled", text="正文"))
    no_post = Pending(record("no-post").model_copy(update={"evidence_pending": True}), False)
    repository.save_records(
        [pending("p1"), settled, no_post, pending("other", model="sha256:m2"), pending("p2")]
    )
    # the process that stored them is finding their evidence
    assert claim(repository, after_s=1) == []
    assert claim(repository, after_s=LEASE_S + 1, limit=1) == ["p1"]
    assert claim(repository, after_s=LEASE_S + 1) == ["p2"]
    assert claim(repository, after_s=LEASE_S + 2) == []
    # a claimer that stopped: the claim runs out
    assert claim(repository, after_s=2 * LEASE_S + 2) == ["p1", "p2"]
    explained = record("p1").model_copy(update={"evidence_pending": False})
    repository.update_records([explained])
    assert claim(repository, after_s=4 * LEASE_S) == ["p2"]
    assert repository.find_records(["p1"], "sha256:m1", "p1") == {"p1": explained}


def test_a_claim_renewed_by_its_claimer_is_not_taken_until_a_lease_after_the_renewal(
    repository: SqlRepository,
) -> None:
    repository.save_records([pending("p1"), pending("p2")])
    assert claim(repository, after_s=LEASE_S + 1) == ["p1", "p2"]
    repository.save_records([pending("fresh")])
    # p1's search still waits (for an idle core): each sweep of its claimer renews the claim,
    # and a fresh record being searched by the process that stored it is kept as long
    renewed = datetime.now(UTC) + timedelta(seconds=2 * LEASE_S)
    keys = [(post_id, "sha256:m1", "p1") for post_id in ("p1", "fresh")]
    repository.renew_evidence_claims(keys, LEASE_S, renewed)
    assert claim(repository, after_s=2 * LEASE_S + 2) == ["p2"]
    # a claimer that stopped renews no more
    assert sorted(claim(repository, after_s=3 * LEASE_S + 1)) == ["fresh", "p1"]


def test_a_record_is_given_up_at_its_last_failed_search_and_claimed_no_more(
    repository: SqlRepository,
) -> None:
    # the poison oldest: every sweep's first
    repository.save_records([pending("poison")])
    repository.save_records([pending("next")])
    rec = pending("poison").record
    given_up = rec.model_copy(update={"evidence_pending": False, "warnings": ["given up"]})
    assert claim(repository, after_s=LEASE_S + 1) == ["poison", "next"]
    assert not repository.count_failed_search(rec, given_up, attempts=2)
    # counted, not given up: claimed again once its claim runs out
    assert claim(repository, after_s=2 * LEASE_S + 2, limit=1) == ["poison"]
    assert repository.count_failed_search(rec, given_up, attempts=2)
    assert repository.find_records(["poison"], "sha256:m1", "p1") == {"poison": given_up}
    assert claim(repository, after_s=4 * LEASE_S) == ["next"]
    # given up once: a failure counted after it (another process's) changes nothing
    assert not repository.count_failed_search(rec, rec, attempts=1)
    assert repository.find_records(["poison"], "sha256:m1", "p1") == {"poison": given_up}
    # each record its own count
    assert not repository.count_failed_search(pending("next").record, given_up, attempts=2)


def test_two_sweeps_at_once_claim_different_records(repository: SqlRepository) -> None:
    repository.save_records([pending(f"p{i:02d}") for i in range(30)])
    claims: list[list[str]] = []
    start = threading.Barrier(2)

    def sweep() -> None:
        start.wait()
        claims.append(claim(repository, after_s=LEASE_S + 1, limit=20))

    threads = [threading.Thread(target=sweep) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    first, second = claims
    assert not set(first) & set(second)
    assert sorted(first + second) == [f"p{i:02d}" for i in range(30)]


@pytest.mark.parametrize("write", ["save_records", "update_records"])
def test_two_writers_of_overlapping_posts_in_opposite_orders_do_not_deadlock(
    postgres_url: str, write: str
) -> None:
    """A write of several records locks their rows by post, whatever order its caller gave:
    another writer that holds p1 and then asks for p2 waits for no write that holds p2 while
    it waits for p1 (PostgreSQL would abort one of the two as deadlocked)."""
    upgrade(postgres_url)
    repo = open_repository(postgres_url, timeout_s=10.0)
    other = make_engine(postgres_url, 10.0)
    if write == "update_records":
        repo.save_records([Pending(record(p), False) for p in ("p1", "p2")])
    mine = [record(p, "block") for p in ("p2", "p1")]
    failed: list[BaseException] = []

    def writer() -> None:
        try:
            if write == "save_records":
                assert repo.save_records([Pending(r, False) for r in mine]) == [
                    record(p) for p in ("p2", "p1")
                ]
            else:
                repo.update_records(mine)
        except BaseException as exc:
            failed.append(exc)

    def take(connection: Connection, post_id: str) -> None:
        if write == "save_records":
            row = record(post_id)
            connection.execute(
                insert(StoredRecord).values(
                    post_id=post_id,
                    model_version=row.model_version,
                    policy_version=row.policy_version,
                    decision=row.decision,
                    record=row.model_dump(mode="json"),
                    created_at=datetime.now(UTC),
                )
            )
        else:
            connection.execute(
                update(StoredRecord).where(StoredRecord.post_id == post_id).values(decision="pass")
            )

    thread = threading.Thread(target=writer)
    try:
        with other.connect() as connection:
            pid = connection.execute(select(func.pg_backend_pid())).scalar_one()
            take(connection, "p1")
            thread.start()
            # pg_locks, not pg_stat_activity: a transaction reads the latter once
            waiting = text(
                "SELECT count(*) FROM pg_locks WHERE NOT granted"
                " AND :pid = ANY(pg_blocking_pids(pid))"
            )
            wait_for(lambda: bool(connection.execute(waiting, {"pid": pid}).scalar_one()))
            take(connection, "p2")
            connection.commit()
    finally:
        # the other connection's end (its rollback where it failed) lets the write go on
        if thread.ident is not None:
            thread.join()
        other.dispose()
        stored = repo.find_records(["p1", "p2"], "sha256:m1", "p1")
        repo.close()
    assert failed == []
    if write == "update_records":
        assert stored == {r.id: r for r in mine}


# score_records as the revision before the sweep left it
BEFORE_SWEEP = table(
    "score_records",
    column("post_id", String),
    column("model_version", String),
    column("policy_version", String),
    column("decision", String),
    column("record", JSON),
    column("created_at", DateTime(timezone=True)),
)


def test_the_migration_marks_the_records_stored_pending_before_it(database_url: str) -> None:
    engine = make_engine(database_url, 5.0)
    try:
        with engine.begin() as connection:
            migrate(connection, "0006_rumor_copies")
            for post_id, flag in (("before", True), ("settled", False)):
                rec = record(post_id).model_copy(update={"evidence_pending": flag})
                connection.execute(
                    insert(BEFORE_SWEEP).values(
                        post_id=post_id,
                        model_version=rec.model_version,
                        policy_version=rec.policy_version,
                        decision=rec.decision,
                        record=rec.model_dump(mode="json"),
                        created_at=datetime.now(UTC),
                    )
                )
                connection.execute(
                    insert(StoredPost).values(
                        post_id=post_id,
                        text=f"正文 {post_id}",
                        at=0.0,
                        declared_original=False,
                        stored_at=datetime.now(UTC),
                    )
                )
    finally:
        engine.dispose()
    upgrade(database_url)
    repository = open_repository(database_url, 5.0)
    try:
        assert claim(repository, after_s=LEASE_S + 1) == ["before"]
    finally:
        repository.close()


def test_a_database_created_after_the_server_started_is_migrated_when_it_answers(
    tmp_path: Path,
) -> None:
    # the server migrates at start; a database that appears later has no tables until a ping
    repository = open_repository(f"sqlite:///{tmp_path / 'late.db'}", 5.0)
    try:
        with pytest.raises(StorageError):
            repository.find_records(["p1"], "m", "p1")
        repository.ping()
        assert repository.find_records(["p1"], "m", "p1") == {}
        assert inspect(repository.engine).has_table("score_records")
    finally:
        repository.close()


STOP_MIDWAY = """
import os, signal, sys
import alembic.op
from service.storage import upgrade

create_index = alembic.op.create_index

def stopped(name, *args, **kwargs):
    # 0008's last step, after its table and the appeals it moved there
    if name == "uq_appeal_item_account":
        if sys.argv[2] == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        raise RuntimeError("stopped midway")
    return create_index(name, *args, **kwargs)

alembic.op.create_index = stopped
upgrade(sys.argv[1])
"""


def revision(database_url: str) -> str | None:
    engine = make_engine(database_url, 5.0)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


@pytest.mark.parametrize("stop", ["raise", "kill"])
def test_a_migration_stopped_midway_leaves_the_one_before_and_the_next_upgrade_completes(
    database_url: str, stop: str
) -> None:
    stopped = subprocess.run(
        [sys.executable, "-c", STOP_MIDWAY, database_url, stop],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert stopped.returncode == (-signal.SIGKILL if stop == "kill" else 1), stopped.stderr
    assert stop == "kill" or "stopped midway" in stopped.stderr
    # 0008 created its table before it stopped: that is rolled back with it
    assert revision(database_url) == "0007_evidence_sweep"
    engine = make_engine(database_url, 5.0)
    try:
        assert not inspect(engine).has_table("appeal_duplicates")
        upgrade(database_url)
        assert revision(database_url) == head_revision()
        assert inspect(engine).has_table("appeal_duplicates")
        indexes = {index["name"] for index in inspect(engine).get_indexes("appeals")}
        assert "uq_appeal_item_account" in indexes
    finally:
        engine.dispose()


def test_a_migration_longer_than_the_statement_timeout_completes_and_leaves_the_pool_bounded(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A migration's statements are not held to ``timeout_s`` (the publish path's bound): one
    that outlasts it would fail the same way on every retry. The service's own sessions are."""
    import alembic.op

    create_index = alembic.op.create_index

    def slow(*args: Any, **kwargs: Any) -> Any:
        alembic.op.get_bind().exec_driver_sql("SELECT pg_sleep(0.4)")
        return create_index(*args, **kwargs)

    monkeypatch.setattr(alembic.op, "create_index", slow)
    upgrade(postgres_url, timeout_s=0.2)
    engine = make_engine(postgres_url, 5.0)
    try:
        with engine.connect() as connection:
            assert MigrationContext.configure(connection).get_current_revision() == head_revision()
    finally:
        engine.dispose()
    repository = open_repository(postgres_url, 0.2)
    try:
        with (
            pytest.raises(OperationalError, match="statement timeout"),
            repository.engine.connect() as connection,
        ):
            connection.exec_driver_sql("SELECT pg_sleep(0.4)")
    finally:
        repository.close()


def test_a_postgres_connection_tells_the_kernel_to_drop_it_soon_after_its_server_goes_silent(
    postgres_url: str,
) -> None:
    """libpq takes the TCP settings (psycopg passes them as they are) and sets them on the
    socket: a server that stops answering is noticed in seconds, not in the kernel's minutes."""
    engine = make_engine(postgres_url, 2.5)  # whole seconds: 3
    try:
        with engine.connect() as connection:
            driver = connection.connection.driver_connection
            assert driver is not None
            given = driver.info.get_parameters()
            with socket.socket(fileno=os.dup(driver.pgconn.socket)) as sock:
                tcp = [
                    sock.getsockopt(socket.IPPROTO_TCP, option)
                    for option in (
                        socket.TCP_KEEPIDLE,
                        socket.TCP_KEEPINTVL,
                        socket.TCP_KEEPCNT,
                        socket.TCP_USER_TIMEOUT,
                    )
                ]
                keepalive = sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)
    finally:
        engine.dispose()
    names = ("keepalives_idle", "keepalives_interval", "keepalives_count", "tcp_user_timeout")
    assert given["keepalives"] == "1" and [given[n] for n in names] == ["3", "3", "3", "12000"]
    assert keepalive == 1 and tcp == [3, 3, 3, 12000]


def test_the_migration_keeps_each_record_with_its_item_and_then_stores_one_per_policy(
    database_url: str,
) -> None:
    kept = record("p1")
    engine = make_engine(database_url, 5.0)
    try:
        with engine.begin() as connection:
            migrate(connection, "0015_report_order")
            row_id = connection.execute(
                insert(StoredRecord)
                .values(
                    post_id="p1",
                    model_version=kept.model_version,
                    policy_version=kept.policy_version,
                    decision=kept.decision,
                    record=kept.model_dump(mode="json"),
                    created_at=datetime.now(UTC),
                )
                .returning(StoredRecord.id)
            ).scalar_one()
            connection.execute(
                insert(ReviewItem).values(
                    record_id=row_id,
                    post_id="p1",
                    policy_version=kept.policy_version,
                    decision="review",
                    severity="review",
                    urgency=0.0,
                    # decided: the newer record opens an item of its own, not joins this one
                    status="dismissed",
                    enqueued_at=datetime.now(UTC),
                )
            )
    finally:
        engine.dispose()
    upgrade(database_url)
    repository = open_repository(database_url, 5.0)
    try:
        newer = kept.model_copy(update={"policy_version": "p2", "decision": "block"})
        assert save(repository, newer) == newer
        assert save(repository, newer) == newer
        assert repository.find_records(["p1"], kept.model_version, "p2") == {"p1": newer}
        assert repository.find_records(["p1"], kept.model_version, kept.policy_version) == {
            "p1": kept
        }
        with repository.engine.connect() as connection:
            rows = connection.execute(
                select(ReviewItem.record_id, StoredRecord.policy_version, StoredRecord.decision)
                .join(StoredRecord, StoredRecord.id == ReviewItem.record_id)
                .order_by(ReviewItem.id)
            ).all()
    finally:
        repository.close()
    assert [tuple(row) for row in rows] == [(row_id, "p1", "review"), (row_id + 1, "p2", "block")]


def test_the_downgrade_keeps_the_record_an_item_moved_to_and_stops_where_items_hold_two(
    repository: SqlRepository, database_url: str
) -> None:
    first = record("p1")
    save(repository, first)
    save(repository, first.model_copy(update={"policy_version": "p2", "decision": "block"}))
    split = record("p3")
    save(repository, split)
    with repository.engine.begin() as connection:
        connection.execute(
            update(ReviewItem).where(ReviewItem.post_id == "p3").values(status="dismissed")
        )
    # decided, the item stays on its record: the newer record opens an item of its own
    save(repository, split.model_copy(update={"policy_version": "p2", "decision": "block"}))
    engine = make_engine(database_url, 5.0)
    try:
        with pytest.raises(CommandError, match=r"\(posts p3\)"), engine.begin() as connection:
            migrate(connection, "0015_report_order", down=True)
        with engine.begin() as connection:
            connection.execute(delete(ReviewItem).where(ReviewItem.status == "dismissed"))
            migrate(connection, "0015_report_order", down=True)
        with engine.connect() as connection:
            rows = connection.execute(
                select(StoredRecord.post_id, StoredRecord.policy_version, ReviewItem.post_id)
                .outerjoin(ReviewItem, ReviewItem.record_id == StoredRecord.id)
                .order_by(StoredRecord.post_id)
            ).all()
    finally:
        engine.dispose()
    assert [tuple(row) for row in rows] == [("p1", "p2", "p1"), ("p3", "p2", "p3")]


def test_the_policies_migration_goes_down_and_up_again(database_url: str) -> None:
    upgrade(database_url)
    repository = open_repository(database_url, 5.0)
    policy = load_policy(Settings().policy_file)
    try:
        repository.keep_policy(policy)
    finally:
        repository.close()
    engine = make_engine(database_url, 5.0)
    try:
        with engine.begin() as connection:
            migrate(connection, "0025_engagement", down=True)
            assert "policies" not in inspect(connection).get_table_names()
            # a downgrade stopped further down leaves the table dropped: it goes down again
            config = alembic_config()
            config.attributes["connection"] = connection
            command.stamp(config, "0026_policies")
            migrate(connection, "0025_engagement", down=True)
    finally:
        engine.dispose()
    upgrade(database_url)
    repository = open_repository(database_url, 5.0)
    try:
        repository.keep_policy(policy)
        kept = ConsoleReads(repository.engine).policy_thresholds(policy.version)
    finally:
        repository.close()
    assert kept == {risk: (rule.review, rule.block) for risk, rule in policy.risks.items()}


def test_two_adds_of_one_rumour_at_once_bank_it_once(repo: SqlRepository) -> None:
    """Each add reads the bank to refuse a duplicate: two at once must not both find it absent
    (here each waits, up to a second, for the other to have read before it decides)."""
    both_read = threading.Barrier(2, timeout=1.0)
    outcomes: list[str] = []

    def entry(bank: list[StoredRumor], now: datetime) -> StoredRumor:
        with contextlib.suppress(threading.BrokenBarrierError):
            both_read.wait()
        if any(rumor.text == "水被污染了" for rumor in bank):
            raise ConflictError("banked_already", rumor_id=bank[0].rumor_id, similarity=1.0)
        return StoredRumor(
            rumor_id=f"r{threading.get_ident()}",
            text="水被污染了",
            post_id=None,
            notice="辟谣",
            fingerprint="f",
            signature=b"\x00",
            created_at=now,
            created_by="admin",
        )

    def add() -> None:
        try:
            repo.add_rumor(entry)
            outcomes.append("banked")
        except ConflictError:
            outcomes.append("refused")

    adders = [threading.Thread(target=add) for _ in range(2)]
    for adder in adders:
        adder.start()
    for adder in adders:
        adder.join()
    assert sorted(outcomes) == ["banked", "refused"]
    assert len(repo.rumors()) == 1


def test_a_new_sqlite_database_and_its_journal_are_their_owners_alone(tmp_path: Path) -> None:
    """It holds posts, reports, appeals and the console users' password hashes; a file that is
    there already keeps its mode, and a command that only reads creates none."""
    path = tmp_path / "state" / "qinglang.db"
    assert make_engine(f"sqlite:///{tmp_path / 'read.db'}", 2.0, read_only=True)
    assert not (tmp_path / "read.db").exists()
    upgrade(f"sqlite:///{path}")
    repo = open_repository(f"sqlite:///{path}", 2.0)
    try:
        repo.save_records([Pending(record("p1"), False)])
        wal = path.with_name(path.name + "-wal")
        assert [p.stat().st_mode & 0o777 for p in (path, wal)] == [0o600, 0o600]
    finally:
        repo.close()
    kept = tmp_path / "kept.db"
    kept.touch(mode=0o640)
    make_engine(f"sqlite:///{kept}", 2.0).dispose()
    assert kept.stat().st_mode & 0o777 == 0o640 & ~current_umask()


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _made(url: str) -> dict[str, object]:
    """What a database is: each table's columns, keys, indexes and constraints, and its rows
    (the subject key's without the time it was first used)."""
    engine = make_engine(url, 5.0)
    try:
        schema = inspect(engine)
        made: dict[str, object] = {}
        with engine.connect() as connection:
            for name in sorted(schema.get_table_names()):
                rows = connection.execute(text(f"SELECT * FROM {name}")).mappings().all()
                made[name] = (
                    [
                        (c["name"], str(c["type"]), c["nullable"], c["default"])
                        for c in schema.get_columns(name)
                    ],
                    schema.get_pk_constraint(name),
                    schema.get_foreign_keys(name),
                    [
                        (
                            i["name"],
                            i["column_names"],
                            i["unique"],
                            str(i["dialect_options"].get("sqlite_where")),
                        )
                        for i in schema.get_indexes(name)
                    ],
                    schema.get_unique_constraints(name),
                    schema.get_check_constraints(name),
                    sorted(repr({k: v for k, v in r.items() if k != "keyed_at"}) for r in rows),
                )
        return made
    finally:
        engine.dispose()


def test_a_sqlite_file_the_tests_copy_from_a_migrated_one_is_what_the_migrations_make(
    tmp_path: Path,
) -> None:
    """The tests' :func:`servicekit.migrated` starts a new SQLite database from a copy of one
    migrated earlier in the run: the copy is the database the migrations make of an empty one,
    rows and all, and owner-only as the service makes one."""
    copied, fresh = f"sqlite:///{tmp_path / 'copied.db'}", f"sqlite:///{tmp_path / 'fresh.db'}"
    migrated(copied)
    upgrade(fresh)
    made = _made(fresh)
    assert _made(copied) == made and len(made) > 20
    assert (tmp_path / "copied.db").stat().st_mode & 0o777 == 0o600
