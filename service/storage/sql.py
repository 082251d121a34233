"""The :class:`~service.storage.repository.Repository` over SQLAlchemy: SQLite or PostgreSQL,
and the openers that build one on a database (its engine and migrations in
:mod:`service.storage.database`)."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Engine, or_, select, text, tuple_, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from service.heads import Risk
from service.policy import Policy
from service.policy.governance import ReviewRules
from service.record import DECISIONS, Decision, Post, ScoreRecord, text_decision
from service.review import items as review_items
from service.review.items import EARLIER
from service.review.registration import SubjectKey
from service.storage.access_sql import AccessSql
from service.storage.accounts_sql import AccountsSql
from service.storage.audit_sql import AuditSql
from service.storage.bank_sql import BankSql
from service.storage.database import (
    head_revision,
    make_engine,
    short_of_head,
    storage_error,
    stored_revision,
    upgrade,
)
from service.storage.dormancy_sql import DormancySql
from service.storage.engagement_sql import EngagementSql, move_posts
from service.storage.idempotency_sql import IdempotencySql
from service.storage.item_steps import earlier_decision, enqueued, item_to_join, post_decided
from service.storage.publish_sql import REPORTED_FOR, PublishStatements
from service.storage.reports_sql import ReportsSql
from service.storage.repository import (
    Pending,
    QueueItem,
    RescoreRun,
    StorageError,
    StorageUnavailableError,
)
from service.storage.review_rows import utc
from service.storage.tables import (
    KeptPolicy,
    ReviewItem,
    StoredPost,
    StoredRecord,
)
from service.storage.tables import RescoreRun as StoredRescoreRun
from service.storage.transaction import Tx, append_records

log = logging.getLogger(__name__)
SCORE_FIELDS = (
    "kind",
    "record_id",
    "head",
    "model_version",
    "policy_version",
    "decision",
    "severity",
    "reach",
    "urgency",
)
"""What a flagged record's item sets on the item about its post it joins."""


def _stored(record: ScoreRecord) -> dict[str, Any]:
    """A record as stored: ``degraded`` describes one answer, not the record."""
    return record.model_copy(update={"degraded": False}).model_dump(mode="json")


def _versions(record: ScoreRecord) -> tuple[str, str]:
    """What a stored record is one of per post: its model and policy versions."""
    return record.model_version, record.policy_version


def _lock_order(record: ScoreRecord) -> tuple[str, str, str]:
    """The order in which a write of several records takes their rows' locks: by post, then
    versions. Two writers of overlapping posts (two ``rescore --store`` runs, the publish path
    and the evidence sweep) that each went in their caller's order could each hold a post the
    other waits for, and PostgreSQL would abort one of them as deadlocked."""
    return record.id, *_versions(record)


def open_repository(
    url: str,
    timeout_s: float,
    review: ReviewRules | None = None,
    *,
    subject_key: SubjectKey | None = None,
) -> SqlRepository:
    return SqlRepository(make_engine(url, timeout_s), review, subject_key)


def open_migrated(
    url: str,
    timeout_s: float,
    review: ReviewRules | None = None,
    *,
    subject_key: SubjectKey | None = None,
) -> SqlRepository:
    """A repository on the database at ``url``, brought to the newest migration first (created
    when it does not exist): for the commands that write. Those that only read use
    :func:`open_existing`."""
    upgrade(url, subject_key=subject_key)
    return open_repository(url, timeout_s, review, subject_key=subject_key)


def open_existing(url: str, timeout_s: float) -> SqlRepository:
    """A repository on the database at ``url`` as it stands, for a command that only reads: it
    creates and migrates nothing. A SQLite file that does not exist, or a schema short of this
    release's newest migration, is a :class:`StorageError` of one line saying so (a mistyped
    path would otherwise become an empty database, and a check of it would answer "ok")."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database:
        path = Path(parsed.database).resolve()
        if not path.exists():
            raise StorageError(
                f"no SQLite database at {path} (check the database_url setting; "
                "qinglang migrate creates one)"
            )
    engine = make_engine(url, timeout_s, read_only=True)
    try:
        found = stored_revision(engine)
        if found != head_revision():
            raise StorageError(f"the database {engine.url!r} {short_of_head(found)}")
    except BaseException:
        engine.dispose()
        raise
    return SqlRepository(engine)


class SqlRepository(
    AccessSql,
    AccountsSql,
    AuditSql,
    BankSql,
    EngagementSql,
    DormancySql,
    IdempotencySql,
    ReportsSql,
):
    def __init__(
        self,
        engine: Engine,
        review: ReviewRules | None = None,
        subject_key: SubjectKey | None = None,
    ) -> None:
        self.engine = engine
        self.review = review
        """The policy's priority rules for the items :meth:`save_records` enqueues; without
        them items wait in the order they came."""
        self._subject_key = subject_key
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._publish = PublishStatements.of(engine.dialect.name)

    @contextmanager
    def _session(self) -> Iterator[Session]:
        committing = False
        try:
            with self._sessions.begin() as session:
                yield session
                # the transaction's work is done: what fails from here on is its commit
                committing = True
        except SQLAlchemyError as exc:
            raise storage_error(exc, committing=committing) from exc

    def close(self) -> None:
        self.engine.dispose()

    def ping(self) -> None:
        """Return when storage answers with this release's schema; a database that is not at
        its newest migration is migrated first (one created, or emptied, after the server
        started: the server migrates at start only, and would find no tables)."""
        if stored_revision(self.engine) != head_revision():
            upgrade(
                self.engine.url.render_as_string(hide_password=False), subject_key=self.subjects
            )

    def check(self) -> None:
        """:meth:`ping` without the migration, for a caller with a deadline (``/readyz``): a
        migration takes what it takes (0010 reads every account's audit records), and one given
        up at the deadline would have storage marked down while it runs on; the server's
        maintenance runs it (:meth:`service.scoring.ScoringService.recover`), without one."""
        found = stored_revision(self.engine)
        if found != head_revision():
            raise StorageUnavailableError(
                f"the database is at migration {found}, not this release's {head_revision()} "
                "(the server's maintenance migrates one short of it)"
            )

    def find_records(
        self, post_ids: Sequence[str], model_version: str, policy_version: str
    ) -> dict[str, ScoreRecord]:
        if not post_ids:
            return {}
        with self._session() as session:
            rows = session.execute(
                self._publish.find_records,
                {"ids": list(set(post_ids)), "model": model_version, "policy": policy_version},
            )
            found: dict[str, ScoreRecord] = {}
            for post_id, record in rows:
                if post_id not in found:
                    found[post_id] = ScoreRecord.model_validate(record)
            return found

    def save_records(
        self, items: Sequence[Pending], policy: Policy | None = None
    ) -> list[ScoreRecord]:
        if not items:
            return []
        now = datetime.now(UTC)
        taken: list[Pending] = []
        with self._writing() as session:
            followers = self._followers(session, items)
            log: list[tuple[str, str, dict[str, Any]]] = []
            # post id: the account of each post stored here for the first time whose counts
            # were reported for another
            owners: dict[str, str] = {}
            for item in sorted(items, key=lambda i: _lock_order(i.record)):
                record = item.record
                values = {
                    "post_id": record.id,
                    "model_version": record.model_version,
                    "policy_version": record.policy_version,
                    "decision": record.decision,
                    "record": _stored(record),
                    "created_at": now,
                    "evidence_pending": record.evidence_pending,
                }
                # a record stored before under this policy (a concurrent request, a replayed
                # spool, a second re-score) stands
                row_id = session.execute(self._publish.insert_record, values).scalar_one_or_none()
                if row_id is None:
                    taken.append(item)
                    continue
                log.append(("score.flagged", f"record:{row_id}", _flagged(record)))
                if item.post is not None:
                    # the account its counts were reported for, read by the insert itself: the
                    # publish path pays no second round trip for the rare post reported first
                    inserted = session.execute(
                        self._publish.insert_post,
                        _post_row(item.post, now) | {REPORTED_FOR: item.post.id},
                    ).first()
                    owner = item.post.account_id
                    reported = None if inserted is None else inserted[0]
                    if owner is not None and reported not in (None, owner):
                        owners[item.post.id] = owner
                if item.enqueue:
                    reach = followers.get(record.account_id or "", 0)
                    self._enqueue_score(session, row_id, item, reach, now, log)
            if policy is not None and owners:
                move_posts(Tx(session, now, policy, log), owners)
            append_records(session, now, log)
        first: dict[tuple[str, str, str], ScoreRecord] = {}
        for versions in {_versions(item.record) for item in taken}:
            ids = [item.record.id for item in taken if _versions(item.record) == versions]
            first.update({(i, *versions): r for i, r in self._find(ids, *versions).items()})
        return [first.get((i.record.id, *_versions(i.record)), i.record) for i in items]

    def _find(
        self, post_ids: Sequence[str], model_version: str, policy_version: str
    ) -> dict[str, ScoreRecord]:
        """The stored records of ``post_ids`` scored by ``model_version`` under
        ``policy_version``, by post id."""
        with self._session() as session:
            rows = session.scalars(
                select(StoredRecord).where(
                    StoredRecord.post_id.in_(set(post_ids)),
                    StoredRecord.model_version == model_version,
                    StoredRecord.policy_version == policy_version,
                )
            )
            return {row.post_id: ScoreRecord.model_validate(row.record) for row in rows}

    def update_records(self, records: Sequence[ScoreRecord]) -> None:
        with self._session() as session:
            for record in sorted(records, key=_lock_order):
                session.execute(
                    self._publish.update_record,
                    {
                        "post": record.id,
                        "model": record.model_version,
                        "policy": record.policy_version,
                        "new_record": _stored(record),
                        "pending": record.evidence_pending,
                    },
                )

    def count_failed_search(
        self, record: ScoreRecord, given_up: ScoreRecord, attempts: int
    ) -> bool:
        with self._writing() as session:
            row = session.scalars(
                select(StoredRecord)
                .where(
                    StoredRecord.post_id == record.id,
                    StoredRecord.model_version == record.model_version,
                    StoredRecord.policy_version == record.policy_version,
                    StoredRecord.evidence_pending,
                )
                .with_for_update()
            ).one_or_none()
            if row is None:
                return False
            row.evidence_failures += 1
            if row.evidence_failures < attempts:
                return False
            row.record = _stored(given_up)
            row.evidence_pending = False
            row.evidence_claimed_until = None
            return True

    def claim_pending_evidence(
        self, model_version: str, limit: int, lease_s: float, now: datetime | None = None
    ) -> list[tuple[Post, ScoreRecord]]:
        now = now or datetime.now(UTC)
        candidates = (
            select(StoredRecord.id)
            .join(StoredPost, StoredPost.post_id == StoredRecord.post_id)
            .where(
                StoredRecord.evidence_pending,
                StoredRecord.model_version == model_version,
                StoredRecord.created_at < now - timedelta(seconds=lease_s),
                or_(
                    StoredRecord.evidence_claimed_until.is_(None),
                    StoredRecord.evidence_claimed_until < now.timestamp(),
                ),
            )
            .order_by(StoredRecord.created_at)
            .limit(limit)
        )
        # most sweeps find nothing: they look without taking SQLite's write lock
        with self._session() as session:
            if session.scalar(candidates) is None:
                return []
        with self._writing() as session:
            # two processes sweeping at once take different records
            ids = list(
                session.scalars(candidates.with_for_update(of=StoredRecord, skip_locked=True))
            )
            if not ids:
                return []
            session.execute(
                update(StoredRecord)
                .where(StoredRecord.id.in_(ids))
                .values(evidence_claimed_until=now.timestamp() + lease_s)
            )
            rows = session.execute(
                select(StoredPost, StoredRecord.record)
                .join(StoredRecord, StoredPost.post_id == StoredRecord.post_id)
                .where(StoredRecord.id.in_(ids))
                .order_by(StoredRecord.created_at)
            )
            return [(_post(post), ScoreRecord.model_validate(record)) for post, record in rows]

    def renew_evidence_claims(
        self, keys: Sequence[tuple[str, str, str]], lease_s: float, now: datetime | None = None
    ) -> None:
        now = now or datetime.now(UTC)
        renewed = select(StoredRecord.id).where(
            tuple_(
                StoredRecord.post_id, StoredRecord.model_version, StoredRecord.policy_version
            ).in_(keys),
            StoredRecord.evidence_pending,
        )
        with self._writing() as session:
            # a row another writer holds (its evidence being stored) is passed over, not waited
            # for: no lock order to keep with theirs
            ids = list(session.scalars(renewed.with_for_update(skip_locked=True)))
            if ids:
                session.execute(
                    update(StoredRecord)
                    .where(StoredRecord.id.in_(ids))
                    .values(evidence_claimed_until=now.timestamp() + lease_s)
                )

    def stored_posts(
        self, since: float | None, until: float | None, chunk: int = 5000
    ) -> Iterator[Post]:
        # Every page is read in one snapshot, taken at the first: with a transaction per page, a
        # post stored meanwhile was in the export if its time came after the page already read
        # and missing if before, so a run covered no definite set of posts. One snapshot makes
        # the export the period as stored when it began (what docs/rescore.md promises of a run). It
        # holds no lock a writer waits on: PostgreSQL's REPEATABLE READ only holds back the
        # vacuum of rows dead since, and a SQLite reader in WAL mode only the checkpoint (the
        # WAL grows meanwhile); each page is still one statement, under statement_timeout.
        with self._session() as session:
            if self.engine.dialect.name == "sqlite":
                # sqlite3 begins no transaction for a SELECT: each would read the newest state
                session.execute(text("BEGIN"))
            else:
                session.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY"))
            after: tuple[float, str] | None = None
            while True:
                query = select(StoredPost).order_by(StoredPost.at, StoredPost.post_id)
                query = query.limit(chunk)
                if since is not None:
                    query = query.where(StoredPost.at >= since)
                if until is not None:
                    query = query.where(StoredPost.at < until)
                if after is not None:
                    # keyset paging: constant cost per page however far into the period
                    query = query.where(tuple_(StoredPost.at, StoredPost.post_id) > after)
                rows = list(session.scalars(query))
                yield from map(_post, rows)
                if len(rows) < chunk:
                    return
                after = (rows[-1].at, rows[-1].post_id)

    def keep_policy(self, policy: Policy) -> None:
        insert = sqlite_insert if self.engine.dialect.name == "sqlite" else postgresql_insert
        values = {
            "version": policy.version,
            "digest": policy.digest,
            "rules": policy.model_dump(mode="json"),
            "kept_at": datetime.now(UTC),
        }
        with self._session() as session:
            statement = insert(KeptPolicy).values(values)
            session.execute(statement.on_conflict_do_nothing(index_elements=["version"]))
            kept = session.scalar(
                select(KeptPolicy.digest).where(KeptPolicy.version == policy.version)
            )
        if kept != policy.digest:
            log.warning(
                "another policy is kept under this version",
                extra={
                    "problem": f"policy {policy.version} ({policy.digest}) was kept with other "
                    f"rules ({kept}): give an edited policy a new version, or the console shows "
                    "its records against the first rules' thresholds"
                },
            )

    def add_rescore_run(self, run: RescoreRun) -> None:
        with self._session() as session:
            session.add(
                StoredRescoreRun(
                    since=run.since,
                    until=run.until,
                    model_version=run.model_version,
                    policy_version=run.policy_version,
                    posts=run.posts,
                    output=run.output,
                    finished_at=datetime.now(UTC),
                )
            )

    def enqueue_requests(
        self, policy: Policy, requests: Sequence[review_items.QueueRequest]
    ) -> list[int]:
        return [
            self.enqueue(
                policy,
                kind=r.kind,
                merge_key=r.merge_key,
                head=r.head,
                severity=r.severity,
                reach=r.reach,
                evidence=r.evidence,
                post_id=r.post_id,
                account_id=r.account_id,
                model_version=r.model_version,
                text_=r.text,
            ).id
            for r in requests
        ]

    def _followers(self, session: Session, items: Sequence[Pending]) -> dict[str, int]:
        accounts = {i.record.account_id for i in items if i.enqueue and i.record.account_id}
        if not accounts:
            return {}
        rows = session.execute(self._publish.followers, {"accounts": list(accounts)})
        return {account: followers for account, followers in rows}

    def _enqueue_score(
        self,
        session: Session,
        row_id: int,
        item: Pending,
        reach: int,
        now: datetime,
        log: list[tuple[str, str, dict[str, Any]]],
    ) -> None:
        """Queue the flagged record's item, or join the post's open item: one post is one open
        item, decided once and charged once. A report or bank match opened first (an item
        without a record) becomes this item, reports and all. An item of an earlier record of
        the post (another model or policy) moves to this record when its decision is as strict
        or stricter, and stays on the earlier record otherwise: a weaker judgment does not lower
        what queued the post, and the item's record always supports its decision and head.

        A decided item is not reopened. A record that flags only heads a confirmation of the
        post decided (its category, or the head its item was about) queues nothing: that
        violation was reviewed and charged, and a new model or policy agreeing is no new case.
        Any other record opens a new item about the heads no confirmation decided, naming the
        item decided last on the post (:data:`~service.review.items.EARLIER`): a dismissal is
        judged anew against the new model or policy, a confirmation on another head is news
        (and charges the post once all the same)."""
        record = item.record
        # the text's decision: an account's state blocking the post is no finding on it
        judged = text_decision(record)
        earlier = item_to_join(session, record.id, None)
        if earlier is None:
            decided = post_decided(session, record.id)
            heads = decided.new_heads(_flagged_heads(record))
            if decided.confirmed and not heads:
                return
            fields = self._score_fields(row_id, item, judged, reach, 0, now, heads)
            last = decided.last
            # the key reports open the post's item with: of two writers queueing the post at
            # once, the second finds the first's item (uq_queue_open_merge) and joins it
            merge_key = f"post:{record.id}"
            opened = session.execute(
                self._publish.insert_item,
                fields
                | {
                    "merge_key": merge_key,
                    "status": "open",
                    "text": item.text,
                    # JSON's null without one, as the ORM's insert stored it before
                    "evidence": {EARLIER: earlier_decision(session, last)} if last else None,
                },
            ).scalar_one_or_none()
            if opened is not None:
                log.append(
                    enqueued(
                        opened,
                        fields["kind"],
                        merge_key,
                        fields["head"],
                        fields["severity"],
                        None if last is None else last.id,
                    )
                )
                return
            earlier = item_to_join(session, record.id, None)
            assert earlier is not None, "the conflicting item is open and about the post"
        previous = earlier.record_id
        stricter = previous is not None and (
            DECISIONS.index(cast(Decision, earlier.decision)) > DECISIONS.index(judged)
        )
        decision = cast(Decision, earlier.decision) if stricter else judged
        fields = self._score_fields(
            row_id,
            item,
            decision,
            max(reach, earlier.reach),
            earlier.reports,
            utc(earlier.enqueued_at),
            _flagged_heads(record),
        )
        # an item shows one record, the one whose judgment it shows: a stricter earlier record
        # keeps the item (its spans support its head and decision), the newer one only joins
        for name in ("reach", "urgency") if stricter else SCORE_FIELDS:
            setattr(earlier, name, fields[name])
        # the publish path names the post's account; a report opened first named whom its
        # reporter took for the poster
        earlier.account_id = record.account_id or earlier.account_id
        earlier.text = item.text or earlier.text
        if previous is not None:
            log.append(
                (
                    "review.rescored",
                    f"item:{earlier.id}",
                    {
                        "record": row_id,
                        "previous_record": previous,
                        "item_record": earlier.record_id,
                        "head": earlier.head,
                        "severity": earlier.severity,
                    },
                )
            )

    def _score_fields(
        self,
        row_id: int,
        item: Pending,
        decision: Decision,
        reach: int,
        reports: int,
        enqueued_at: datetime,
        heads: Sequence[Risk],
    ) -> dict[str, Any]:
        """The item columns a flagged record sets, at ``decision``'s severity, about the
        highest scored of ``heads``."""
        record = item.record
        if self.review is None:
            urgency = -review_items.hours(enqueued_at)
        else:
            base = review_items.base_priority(self.review, decision, reach, reports)
            urgency = review_items.urgency(self.review, base, enqueued_at)
        return {
            "kind": "score",
            "record_id": row_id,
            "post_id": record.id,
            "account_id": record.account_id,
            "head": max(heads, key=lambda r: record.scores[r]) if heads else None,
            "model_version": record.model_version,
            "policy_version": record.policy_version,
            "decision": decision,
            "severity": decision,
            "reach": reach,
            "reports": reports,
            "urgency": urgency,
            "enqueued_at": enqueued_at,
        }

    def queue(self) -> list[QueueItem]:
        with self._session() as session:
            rows = session.scalars(select(ReviewItem).order_by(ReviewItem.id))
            return [
                QueueItem(
                    post_id=row.post_id or "",
                    model_version=row.model_version or "",
                    policy_version=row.policy_version,
                    decision=cast(Decision, row.decision),
                    status=row.status,
                )
                for row in rows
            ]


def _flagged_heads(record: ScoreRecord) -> list[Risk]:
    return [r for r, flag in record.flags.items() if flag]


def _post_row(post: Post, now: datetime) -> dict[str, Any]:
    return {
        "post_id": post.id,
        "text": post.text,
        "account_id": post.account_id,
        "created_at": post.created_at,
        "at": post.created_at if post.created_at is not None else now.timestamp(),
        "declared_original": post.declared_original,
        "source": post.source,
        "stored_at": now,
    }


def _post(row: StoredPost) -> Post:
    return Post.accepted(
        {
            "id": row.post_id,
            "text": row.text,
            "account_id": row.account_id,
            "created_at": row.created_at,
            "declared_original": row.declared_original,
            "source": row.source,
        }
    )


def _flagged(record: ScoreRecord) -> dict[str, Any]:
    """What the chain keeps of a flagged score: enough to show what was decided and why."""
    return {
        "post_id": record.id,
        "account_id": record.account_id,
        "decision": record.decision,
        "scores": record.scores,
        "reasons": [reason.code for reason in record.reasons],
        "model_version": record.model_version,
        "policy_version": record.policy_version,
    }
