"""Keyed subject digests: what is stored of a subject identifier is the HMAC of its old SHA-256
under the deployment's key; migration 0028 keys the rows stored before it, once; a server given
another key is refused; the key file drawn where none is set; the chain across the change."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from alembic.util import CommandError
from servicekit import before_keyed_digests, migrate, unkeyed_digest, verified
from sqlalchemy import create_engine, inspect, make_url, select, text
from sqlalchemy.orm import Session

from service.policy import Policy
from service.review.items import ConflictError
from service.review.registration import SubjectKey, keyed
from service.settings import Settings
from service.storage import SqlRepository, SubjectKeyError, open_repository, upgrade
from service.storage.database import alembic_config, make_engine
from service.storage.tables import StoredAccount, SubjectKeyFingerprint
from service.storage.transaction import append_records
from service.subject_key import KEY_FILE, installed, load

ID_CARD = "110101199001011234X"
OTHER = SubjectKey(b"another deployment's subject key!")


def stored_subjects(repo: SqlRepository) -> dict[str, str | None]:
    with repo.engine.connect() as db:
        rows = db.execute(select(StoredAccount.account_id, StoredAccount.subject_digest))
        return dict(rows.tuples().all())


def test_a_stored_subject_is_keyed_and_differs_between_keys(
    repo: SqlRepository, policy: Policy, tmp_path: Path
) -> None:
    repo.put_account(policy, "a", subject_id=ID_CARD.lower())
    stored = stored_subjects(repo)["a"]
    # not the digest anyone can compute from a guessed number
    assert stored != unkeyed_digest(ID_CARD)
    assert stored == keyed(installed().key, unkeyed_digest(ID_CARD))
    other_url = f"sqlite:///{tmp_path / 'other.db'}"
    upgrade(other_url, subject_key=OTHER)
    other = open_repository(other_url, 5.0, policy.review, subject_key=OTHER)
    try:
        other.put_account(policy, "a", subject_id=ID_CARD)
        assert stored_subjects(other)["a"] not in (stored, unkeyed_digest(ID_CARD))
    finally:
        other.close()


def codes(repo: SqlRepository, policy: Policy, name: str, subject_id: str) -> list[str]:
    return [r["code"] for r in repo.check_registration(policy, name, subject_id).reasons]


def _account_before_keyed_digests(repo: SqlRepository, policy: Policy, account: str) -> None:
    """``account`` with the subject ``ID_CARD``, stored as a release before 0028 stored it: by
    SQL of that schema, as this release's tables have columns added since."""
    with repo.engine.begin() as db:
        db.execute(
            text(
                "INSERT INTO accounts (account_id, name, subject_digest, credit, level, followers, "
                "clean_since, policy_version) VALUES (:a, :n, :d, 100, 'A', 0, '2026-01-01', :p)"
            ),
            {
                "a": account,
                "n": f"名字{account}",
                "d": unkeyed_digest(ID_CARD),
                "p": policy.version,
            },
        )


def test_subjects_stored_before_the_migration_match_after_it(
    database_url: str, policy: Policy
) -> None:
    upgrade(database_url)
    before_keyed_digests(database_url)
    repo = open_repository(database_url, 5.0, policy.review)
    try:
        # the subject holds the policy's cap of accounts, and is authorised for a name
        for account in ("a1", "a2")[: policy.registration.accounts_per_subject]:
            _account_before_keyed_digests(repo, policy, account)
        entry = repo.add_protected_name(
            policy, name="新华社", kind="organisation", subject_ids=[], by="k"
        )
        with repo.engine.begin() as db:
            db.execute(
                text("INSERT INTO protected_name_subjects VALUES (:e, :d, false)"),
                {"e": entry.id, "d": unkeyed_digest(ID_CARD)},
            )
        upgrade(database_url)
        key = installed()
        assert set(stored_subjects(repo).values()) == {keyed(key.key, unkeyed_digest(ID_CARD))}
        assert repo.protected_names()[0].subjects == [key.digest(ID_CARD)]
        # the taken subject is refused, in another spelling too
        assert codes(repo, policy, "全新名字", ID_CARD.lower()) == ["subject_at_cap"]
        with pytest.raises(ConflictError):
            repo.put_account(policy, "a3", subject_id=ID_CARD)
        # the authorised subject may use the protected name, another may not
        assert codes(repo, policy, "新华社北京", ID_CARD) == ["subject_at_cap"]
        assert codes(repo, policy, "新华社北京", "another-subject") == ["name_protected"]
        assert repo.put_account(policy, "a1", name="新华社北京").name == "新华社北京"
    finally:
        repo.close()


def test_another_key_is_refused_at_start_with_one_line(tmp_path: Path, policy: Policy) -> None:
    url = f"sqlite:///{tmp_path / 'keyed.db'}"
    upgrade(url)
    with pytest.raises(SubjectKeyError, match="subject key"):
        upgrade(url, subject_key=OTHER)
    upgrade(url)  # the key it was keyed with goes on
    env = {
        **os.environ,
        "QINGLANG_DATABASE_URL": url,
        "QINGLANG_STATE_DIR": str(tmp_path / "state"),
        "QINGLANG_SUBJECT_KEY": OTHER.key.decode(),
    }
    served = subprocess.run(
        [sys.executable, "-m", "service.cli", "serve", "--port", "8731"],
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert served.returncode == 2
    (line,) = served.stderr.strip().splitlines()
    assert line.startswith("qinglang serve: error: the subject key")
    assert "QINGLANG_SUBJECT_KEY" in line


def test_the_key_file_is_drawn_once_with_mode_0600_and_reused(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path / "state", subject_key=None)
    keys: list[SubjectKey] = []
    # processes drawing the first key at once all keep the same one
    threads = [threading.Thread(target=lambda: keys.append(load(settings))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    path = settings.state_dir / KEY_FILE
    assert path.stat().st_mode & 0o777 == 0o600
    assert len(path.read_bytes()) == 32
    assert {k.key for k in keys} == {path.read_bytes()}
    assert load(settings) == keys[0]
    assert sorted(p.name for p in settings.state_dir.iterdir()) == [KEY_FILE]
    # a key set wins over the file
    set_key = "s" * 32
    assert load(Settings(state_dir=settings.state_dir, subject_key=set_key)).key == set_key.encode()
    with pytest.raises(ValueError, match="at least 32 bytes"):
        Settings(subject_key="short")


def test_two_processes_starting_at_once_key_the_digests_once(
    postgres_url: str, policy: Policy
) -> None:
    upgrade(postgres_url)
    before_keyed_digests(postgres_url)
    repo = open_repository(postgres_url, 5.0, policy.review)
    try:
        for account in ("a1", "a2"):
            _account_before_keyed_digests(repo, policy, account)
    finally:
        repo.close()
    name = f"ql_{uuid.uuid4().hex[:12]}"
    named = make_url(postgres_url).update_query_dict({"application_name": name})
    url = named.render_as_string(hide_password=False)
    migrating = [sys.executable, "-c", f"from service.storage import upgrade; upgrade({url!r})"]
    holder = create_engine(postgres_url)
    try:
        with holder.begin() as db:
            # both wait: the first in 0028 for the accounts, the second for the first
            db.execute(text("LOCK TABLE accounts IN ACCESS EXCLUSIVE MODE"))
            starts = [
                subprocess.Popen(migrating, stderr=subprocess.PIPE, text=True) for _ in range(2)
            ]
            waiting = text(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE application_name = :n AND wait_event_type = 'Lock'"
            )
            # the two interpreters' start on a loaded host: past it, the race is left unforced
            deadline = time.monotonic() + 60
            with holder.connect() as watch:
                while watch.scalar(waiting, {"n": name}) < 2 and time.monotonic() < deadline:
                    time.sleep(0.05)
                    watch.rollback()
        results = [(p.wait(timeout=60), p.stderr.read() if p.stderr else "") for p in starts]
    finally:
        holder.dispose()
    assert [code for code, _ in results] == [0, 0], results
    repo = open_repository(postgres_url, 5.0, policy.review)
    try:
        once = keyed(installed().key, unkeyed_digest(ID_CARD))
        assert stored_subjects(repo) == {"a1": once, "a2": once}
        with repo.engine.connect() as db:
            kept = db.scalars(select(SubjectKeyFingerprint.fingerprint)).all()
        assert kept == [installed().fingerprint]
    finally:
        repo.close()


def test_the_downgrade_is_refused_while_keyed_digests_are_stored(
    repo: SqlRepository, database_url: str, policy: Policy
) -> None:
    repo.put_account(policy, "a", subject_id=ID_CARD)
    engine = make_engine(database_url, 5.0)
    try:
        refused = pytest.raises(
            CommandError, match="cannot downgrade 0028_subject_keys: 1 accounts"
        )
        with refused, engine.begin() as connection:
            migrate(connection, "0027_dormant_accounts", down=True)
        assert stored_subjects(repo)["a"] == installed().digest(ID_CARD)
        with engine.begin() as connection:
            connection.execute(text("UPDATE accounts SET subject_digest = NULL"))
        with engine.begin() as connection:
            migrate(connection, "0027_dormant_accounts", down=True)
            assert "subject_keys" not in inspect(connection).get_table_names()
            # SQLite keeps the drop when a revision further down refuses the downgrade
            config = alembic_config()
            config.attributes["connection"] = connection
            command.stamp(config, "0028_subject_keys")
            migrate(connection, "0027_dormant_accounts", down=True)
    finally:
        engine.dispose()
    upgrade(database_url)
    repo.put_account(policy, "a", subject_id=ID_CARD)
    assert stored_subjects(repo)["a"] == installed().digest(ID_CARD)


def test_the_chain_verifies_across_the_change(database_url: str, policy: Policy) -> None:
    upgrade(database_url)
    before_keyed_digests(database_url)
    repo = open_repository(database_url, 5.0, policy.review)
    try:
        # a report's record, and an account's profile and row, as a release before 0028 wrote
        # them: 0028 keys the row's subject, and the record keeps it unkeyed
        with repo._session() as session:
            payload = {"reporter": "k1", "reporter_id_digest": unkeyed_digest("u9")}
            profile = {"name": None, "followers": 0, "subject": unkeyed_digest(ID_CARD)}
            append_records(
                session,
                datetime.now(UTC),
                [("report.filed", "report:0", payload), ("account.profile", "account:a", profile)],
            )
            session.execute(
                text(
                    "INSERT INTO accounts (account_id, subject_digest, credit, level, followers, "
                    "clean_since, policy_version) VALUES ('a', :d, 100, 'A', 0, '2026-01-01', 'p')"
                ),
                {"d": unkeyed_digest(ID_CARD)},
            )
        upgrade(database_url)
        repo.file_report(
            policy,
            post_id="p1",
            account_id="acc1",
            category="rumor",
            text_="谣言",
            reporter="k1",
            reporter_id="u9",
        )
        filed = [e.payload for e in repo.audit_entries() if e.kind == "report.filed"]
        # the old record keeps the digest it was written with; the new one is keyed
        assert [p["reporter_id_digest"] for p in filed] == [
            unkeyed_digest("u9"),
            keyed(installed().key, unkeyed_digest("u9")),
        ]
        assert verified(repo) == []
    finally:
        repo.close()


def _plain(form: str) -> str:
    return hashlib.sha256(f"qinglang-subject:{form}".encode()).hexdigest()


def test_placeholder_subjects_stored_before_the_refusal_are_cleared(
    repo: SqlRepository, database_url: str, policy: Policy
) -> None:
    key = installed()
    repo.put_account(policy, "real", subject_id=ID_CARD)
    entry = repo.add_protected_name(
        policy, name="新华社", kind="organisation", subject_ids=[ID_CARD], by="k"
    )
    # as releases before the refusal stored them: "-" normalised (to nothing) and only
    # stripped, a full-width slash normalised, and a run of zero-width spaces
    placeholders = {"dash": "", "old_dash": "-", "slash": "/", "invisible": "\u200b\u200b"}
    engine = make_engine(database_url, 5.0)
    try:
        with engine.begin() as connection:
            migrate(connection, "0029_kept_keys_and_use", down=True)
            for account, form in placeholders.items():
                connection.execute(
                    text(
                        "INSERT INTO accounts (account_id, name, subject_digest, credit, level, "
                        "followers, clean_since, policy_version) "
                        "VALUES (:a, :n, :d, 100, 'A', 0, '2026-01-01', :p)"
                    ),
                    {
                        "a": account,
                        "n": account,
                        "d": keyed(key.key, _plain(form)),
                        "p": policy.version,
                    },
                )
            connection.execute(
                text("INSERT INTO protected_name_subjects VALUES (:e, :d, false)"),
                {"e": entry.id, "d": keyed(key.key, _plain(""))},
            )
    finally:
        engine.dispose()
    upgrade(database_url)
    stored = stored_subjects(repo)
    assert stored == {**dict.fromkeys(placeholders), "real": key.digest(ID_CARD)}
    assert repo.protected_names()[0].subjects == [key.digest(ID_CARD)]
    # a subject stored is never replaced: a cleared placeholder takes the real one
    assert repo.put_account(policy, "dash", subject_id="91110000600037341L").account_id == "dash"
    with pytest.raises(ConflictError):
        repo.put_account(policy, "real", subject_id="91110000600037341L")


def test_what_0030_cleared_is_appended_to_the_chain(
    repo: SqlRepository, database_url: str, policy: Policy
) -> None:
    """Each account and protected name whose chained placeholder 0030 cleared gets a record
    that says so, found from the records (keyed, or unkeyed as written before 0028), linked as
    the service links; a placeholder the chain never held, and a real subject, get none."""
    key = installed()
    repo.put_account(policy, "real", subject_id=ID_CARD)
    entry = repo.add_protected_name(
        policy, name="新华社", kind="organisation", subject_ids=[ID_CARD], by="k"
    )
    dash, slash = keyed(key.key, _plain("")), keyed(key.key, _plain("/"))
    # as releases before the refusal chained them: "-" before 0028 (unkeyed), later ones keyed
    chained = {"old_dash": _plain("-"), "dash": dash, "slash": slash}
    with Session(repo.engine) as session, session.begin():
        append_records(
            session,
            datetime.now(UTC),
            [
                *(
                    ("account.profile", f"account:{a}", {"name": a, "followers": 0, "subject": d})
                    for a, d in chained.items()
                ),
                (
                    "protected.added",
                    f"protected:{entry.id}",
                    {"subjects": [key.digest(ID_CARD), dash], "stripped_subjects": []},
                ),
            ],
        )
    old_dash = keyed(key.key, _plain("-"))
    rows = {"old_dash": old_dash, "dash": dash, "slash": slash, "unchained": dash}
    engine = make_engine(database_url, 5.0)
    try:
        with engine.begin() as connection:
            migrate(connection, "0029_kept_keys_and_use", down=True)
            for account, digest in rows.items():
                connection.execute(
                    text(
                        "INSERT INTO accounts (account_id, name, subject_digest, credit, level, "
                        "followers, clean_since, policy_version) "
                        "VALUES (:a, :n, :d, 100, 'A', 0, '2026-01-01', :p)"
                    ),
                    {"a": account, "n": account, "d": digest, "p": policy.version},
                )
            connection.execute(
                text("INSERT INTO protected_name_subjects VALUES (:e, :d, false)"),
                {"e": entry.id, "d": dash},
            )
    finally:
        engine.dispose()
    upgrade(database_url)
    assert stored_subjects(repo) == {**dict.fromkeys(rows), "real": key.digest(ID_CARD)}
    by = "0030_placeholder_subjects"
    appended = [
        (e.kind, e.subject, e.payload)
        for e in repo.audit_entries()
        if e.kind in {"account.subject_cleared", "protected.subject_removed"}
    ]
    assert appended == [
        ("account.subject_cleared", "account:dash", {"subject": dash, "by": by}),
        ("account.subject_cleared", "account:old_dash", {"subject": _plain("-"), "by": by}),
        ("account.subject_cleared", "account:slash", {"subject": slash, "by": by}),
        ("protected.subject_removed", f"protected:{entry.id}", {"subjects": [dash], "by": by}),
    ]
    # the chain vouches for the subjects cleared; the row written without a record, as no
    # release wrote one, shows
    assert [p.split(" is ")[0] for p in verified(repo)] == ["account unchained: name"]
    # down past 0037 and up again: the downgrade leaves its records, which are not appended twice
    engine = make_engine(database_url, 5.0)
    try:
        with engine.begin() as connection:
            migrate(connection, "0036_standing_dispositions", down=True)
    finally:
        engine.dispose()
    upgrade(database_url)
    again = [
        (e.kind, e.subject, e.payload)
        for e in repo.audit_entries()
        if e.kind in {"account.subject_cleared", "protected.subject_removed"}
    ]
    assert again == appended
