"""The database schema. Changing it means a new migration in ``migrations/versions``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    case,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from service.record import MAX_ID_CHARS
from service.review.protected import MOST_CHARS as PROTECTED_CHARS

# SQLite only auto-increments a column declared exactly INTEGER PRIMARY KEY
Id = BigInteger().with_variant(Integer, "sqlite")


class Base(DeclarativeBase):
    pass


PENDING = "evidence_pending"
"""The sweep's index predicate; SQLite uses a partial index only for a query that repeats its
predicate as written, and SQLAlchemy writes a boolean test there as ``= 1``."""


class StoredRecord(Base):
    """A score record the policy said to persist; one per post, model version and policy
    version (a re-score under a new policy adds the post's record beside the earlier one)."""

    __tablename__ = "score_records"
    __table_args__ = (
        UniqueConstraint(
            "post_id", "model_version", "policy_version", name="uq_record_post_policy"
        ),
        # the sweep's candidates: few among many settled records
        Index(
            "ix_records_evidence_pending",
            "model_version",
            "created_at",
            sqlite_where=text(f"{PENDING} = 1"),
            postgresql_where=text(PENDING),
        ),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    post_id: Mapped[str] = mapped_column(String(MAX_ID_CHARS))
    model_version: Mapped[str] = mapped_column(String(64))
    policy_version: Mapped[str] = mapped_column(String(64))
    decision: Mapped[str] = mapped_column(String(16))
    record: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    evidence_pending: Mapped[bool] = mapped_column(Boolean, default=False)
    """The record's own ``evidence_pending``, as a column so that the sweep can find it."""
    evidence_claimed_until: Mapped[float | None] = mapped_column(Float, nullable=True)
    """Unix seconds until which a sweep's claim on this record holds; past it, a sweep may claim
    it again. The process that stored the record needs no claim: sweeps leave a record alone
    for ``evidence_lease_s`` after ``created_at``."""
    evidence_failures: Mapped[int] = mapped_column(Integer, server_default="0")
    """The evidence searches that failed on this record's post (the process ended on it, or
    hung while it had a core): at ``evidence_attempts`` its evidence is given up."""


OPEN = "status IN ('open', 'escalated')"
CLAIMED = "assignee IS NOT NULL"


class KeptPolicy(Base):
    """A policy's rules under its version, kept when a process first scores or queues under
    it, so that a record scored under a policy since replaced is shown against the thresholds
    it was decided with. The first rules kept under a version stay (a policy edited without a
    new version is another policy under the same name)."""

    __tablename__ = "policies"

    version: Mapped[str] = mapped_column(String(64), primary_key=True)
    digest: Mapped[str] = mapped_column(String(64))
    """:attr:`~service.policy.Policy.digest` of the rules kept."""
    rules: Mapped[dict[str, Any]] = mapped_column(JSON)
    """The policy as loaded (``Policy.model_dump``)."""
    kept_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ReviewItem(Base):
    """An item of the review queue: a flagged score record, a cluster, a bank match or reports."""

    __tablename__ = "review_queue"
    __table_args__ = (
        Index("ix_queue_status_urgency", "status", "urgency", "id"),
        Index("ix_queue_post", "post_id"),
        # an account's items, the latest first (an item page lists them)
        Index("ix_queue_account_id", "account_id", "id"),
        # the queue filtered by assignee, in its order: only the items someone claimed
        Index(
            "ix_queue_assignee",
            "assignee",
            "status",
            "urgency",
            "id",
            sqlite_where=text(CLAIMED),
            postgresql_where=text(CLAIMED),
        ),
        # the dashboard's open items by age and items queued per day
        Index("ix_queue_status_enqueued", "status", "enqueued_at"),
        Index("ix_queue_enqueued_head", "enqueued_at", "head"),
        # the item last decided on a cluster's key, which a cluster queued again is weighed by
        Index("ix_queue_merge", "merge_key", "id"),
        # reports on one post (or account) join one open item: the index makes two racing
        # first reports create it once
        Index(
            "uq_queue_open_merge",
            "merge_key",
            unique=True,
            sqlite_where=text(OPEN),
            postgresql_where=text(OPEN),
        ),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16), default="score")
    record_id: Mapped[int | None] = mapped_column(
        ForeignKey("score_records.id"), unique=True, nullable=True
    )
    post_id: Mapped[str | None] = mapped_column(String(MAX_ID_CHARS), nullable=True)
    account_id: Mapped[str | None] = mapped_column(String(MAX_ID_CHARS), nullable=True)
    merge_key: Mapped[str | None] = mapped_column(String(MAX_ID_CHARS + 8), nullable=True)
    head: Mapped[str | None] = mapped_column(String(32), nullable=True)
    model_version: Mapped[str | None] = mapped_column(String(64), nullable=True)
    policy_version: Mapped[str] = mapped_column(String(64))
    decision: Mapped[str] = mapped_column(String(16))
    severity: Mapped[str] = mapped_column(String(16))
    reach: Mapped[int] = mapped_column(Integer, default=0)
    reports: Mapped[int] = mapped_column(Integer, default=0)
    urgency: Mapped[float] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(16), default="open")
    assignee: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    text: Mapped[str | None] = mapped_column(Text, nullable=True)
    evidence: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    enqueued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    reported_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    """When its first report was filed, which the item's deadline (art20) runs from; null for an
    item nobody reported (migration ``0035_item_reported_at``)."""


REPORT_STATUS = case((ReviewItem.reported_at.is_not(None), ReviewItem.status))
"""A reported item's status, null for an item nobody reported (every report sets
``reported_at``; migration ``0035_item_reported_at`` set it on the items reported before). The
reports page asks for the open reported items by this one expression: the planner has its
statistics from the index on it, where by status and ``reported_at`` apart it took the few open
reported items for the open items' share of the reported ones (migration
``0046_open_report_indexes``)."""
Index("ix_queue_report_status", REPORT_STATUS, ReviewItem.id)


class StoredKey(Base):
    __tablename__ = "api_keys"

    key_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    digest: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    owner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    """The name of the console user the key belongs to
    (:attr:`~service.storage.repository.ApiKey.owner`); null for a key of nobody's."""


class BankedRumor(Base):
    """An entry of the confirmed-rumour bank."""

    __tablename__ = "rumor_bank"

    rumor_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    text: Mapped[str | None] = mapped_column(Text, nullable=True)
    post_id: Mapped[str | None] = mapped_column(String(MAX_ID_CHARS), nullable=True)
    notice: Mapped[str] = mapped_column(Text)
    fingerprint: Mapped[str] = mapped_column(String(64))
    signature: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_by: Mapped[str] = mapped_column(String(64))
    """Who added it: a console user's name (signed in, or the owner of the admin key used),
    else the key's id (migration ``0033_bank_actor`` widened it to a name's 64 characters)."""


class RumorCopyRow(Base):
    """A copy of a banked rumour, recorded when it was scored (``Repository.rumor_copies``)."""

    __tablename__ = "rumor_copies"
    __table_args__ = (
        UniqueConstraint("rumor_id", "post_id", name="uq_rumor_copy"),
        Index("ix_rumor_copies_listing", "rumor_id", "created_at", "post_id"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    rumor_id: Mapped[str] = mapped_column(String(32))
    post_id: Mapped[str] = mapped_column(String(MAX_ID_CHARS))
    account_id: Mapped[str | None] = mapped_column(String(MAX_ID_CHARS), nullable=True)
    created_at: Mapped[float] = mapped_column(Float)
    similarity: Mapped[float] = mapped_column(Float)
    model_version: Mapped[str] = mapped_column(String(64))
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


CHARGING = "charging_after IS NOT NULL"
"""The index predicate of the confirmations whose charges are not complete (:data:`PENDING`'s
note holds for it too)."""


class ReviewDecision(Base):
    """A reviewer's decision on an item; dismissals stay as labels for retraining."""

    __tablename__ = "review_decisions"
    # the confirmations of registration batches whose members are not all charged yet
    __table_args__ = (
        Index(
            "ix_decisions_charging",
            "id",
            sqlite_where=text(CHARGING),
            postgresql_where=text(CHARGING),
        ),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("review_queue.id"), index=True)
    action: Mapped[str] = mapped_column(String(16))
    category: Mapped[str | None] = mapped_column(String(32), nullable=True)
    basis: Mapped[str | None] = mapped_column(String(32), nullable=True)
    note: Mapped[str | None] = mapped_column(Text, nullable=True)
    reviewer: Mapped[str] = mapped_column(String(64))
    policy_version: Mapped[str] = mapped_column(String(64))
    decided_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    charging_after: Mapped[str | None] = mapped_column(String(MAX_ID_CHARS), nullable=True)
    """A registration batch's confirmation whose members are charged in transactions of their
    own after it (:func:`~service.storage.credit_steps.charge_members`): the last member
    charged, in code-point order (empty: none yet); null once all are, and for every other
    decision (migration ``0043_batch_charges``)."""


AWAKE = "dormant_at IS NULL"
"""The dormancy sweep's index predicate (:data:`PENDING`'s note holds for it too)."""

UNWARNED = "dormant_at IS NULL AND warned_at IS NULL"
"""The dormancy warning sweep's index predicate (:data:`PENDING`'s note holds for it too)."""


class StoredAccount(Base):
    __tablename__ = "accounts"
    __table_args__ = (
        # the dormancy sweep's candidates: the accounts not found dormant yet, by their clock
        Index(
            "ix_accounts_awake_active",
            "active_at",
            sqlite_where=text(AWAKE),
            postgresql_where=text(AWAKE),
        ),
        # the warning sweep's: those of them not warned yet
        Index(
            "ix_accounts_unwarned_active",
            "active_at",
            sqlite_where=text(UNWARNED),
            postgresql_where=text(UNWARNED),
        ),
        # a registration's batch (art10): the accounts of its skeleton registered lately
        Index("ix_accounts_skeleton_registered", "skeleton_digest", "registered_at"),
    )

    account_id: Mapped[str] = mapped_column(String(MAX_ID_CHARS), primary_key=True)
    credit: Mapped[int] = mapped_column(Integer)
    level: Mapped[str] = mapped_column(String(16), index=True)
    name: Mapped[str | None] = mapped_column(Text, nullable=True)
    folded_name: Mapped[str | None] = mapped_column(Text, nullable=True)
    subject_digest: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    followers: Mapped[int] = mapped_column(Integer, default=0)
    followers_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    """When ``followers`` was last given; null before the first profile that gave it."""
    clean_since: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    """The last confirmed violation or restoration: clean periods count from here."""
    policy_version: Mapped[str] = mapped_column(String(64))
    active_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    """The dormancy clock (art10): the latest of when the row was made by a profile or a charge
    (registration, as far as the service knows), the last login reported and the last post
    scored (written at most once a day per server process; the first made the row of an account
    known by its posts alone). The rows from before migration
    ``0027_dormant_accounts`` start at the moment it ran; every row since is given one."""
    active_by: Mapped[str | None] = mapped_column(String(16), nullable=True)
    """Which use set ``active_at`` (:data:`service.review.dormancy.Use`); null where migration
    ``0029_kept_keys_and_use`` found a clock that was not a login, whose use is not known."""
    login_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    """The last login the platform reported (``last_login_at``)."""
    dormant_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    """When the sweep found the account dormant, null while it is not: set once per dormancy,
    so that every server process acts on it once; cleared by the account's return."""
    warned_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    """When the platform was told the account will be found dormant (``dormancy.warn_days``
    ahead), null while it was not: set once per clock, as ``dormant_at``; cleared by the use
    that moves the clock."""
    registered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    """When a profile made the row: the account's registration here (art10). Null for a row a
    charge or a post made, and for the rows from before migration ``0038_signup_batches``,
    which no batch counts: when they were registered is not known."""
    skeleton_digest: Mapped[str | None] = mapped_column(String(64), nullable=True)
    """The SHA-256 of the skeleton of the name (:func:`service.review.signups.batch_of`), kept
    with the name; null for no name, a skeleton no batch is made of, or a name given before
    migration ``0038_signup_batches``."""


class SweepPlace(Base):
    """Where the last run of a bounded dormancy look stopped
    (:data:`~service.storage.dormancy_sql.Look`), whichever process ran it: the next run, in
    this process or another, goes on after it (migration ``0044_sweep_places``, which makes a
    row for each look)."""

    __tablename__ = "sweep_places"

    look: Mapped[str] = mapped_column(String(16), primary_key=True)
    turn: Mapped[int] = mapped_column(Integer)
    """Raised by each move: a process moves the place only from the turn it read it at, so
    that of two that read it at once one takes the accounts after it and the other those after
    the first's."""
    active_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    """The clock of the last account the run took; null (with ``account_id``) where the last
    run read to the last account: the next starts from the first."""
    account_id: Mapped[str | None] = mapped_column(String(MAX_ID_CHARS), nullable=True)


class SignupBatchMember(Base):
    """An account of a registration batch (art10, :mod:`service.review.signups`), once per
    ``signup_batch`` item: every account its item counts in ``reach``, the ones it lists and
    those past its listing cap alike, which its confirmation charges and which appeal their
    own charges (migration ``0041_signup_batch_members``)."""

    __tablename__ = "signup_batch_members"
    # the batches a coordinated batch's members were registered in, found by account
    __table_args__ = (Index("ix_signup_batch_members_account", "account_id"),)

    item_id: Mapped[int] = mapped_column(ForeignKey("review_queue.id"), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.account_id"), primary_key=True)


class HeldName(Base):
    """A name an account held, folded (:func:`~service.review.registration.fold_name`), once
    per account and name, its current one included. Re-registration is checked against every
    name a closed account held, so that a rename just before the close does not free the name
    it was known by (art8)."""

    __tablename__ = "account_names"

    # not a unique key: a name may be as long as a free text, past what an index entry holds
    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.account_id"), index=True)
    folded_name: Mapped[str] = mapped_column(Text)


class StoredProtectedName(Base):
    """A protected name (art8, :mod:`service.review.protected`); removing it deletes the row
    and its subjects, and writes a record."""

    __tablename__ = "protected_names"
    # one entry per folded name
    __table_args__ = (UniqueConstraint("folded_name", name="uq_protected_names_folded"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(Text)
    folded_name: Mapped[str] = mapped_column(String(PROTECTED_CHARS))
    kind: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_by: Mapped[str] = mapped_column(String(64))


class ProtectedNameSubject(Base):
    """A subject authorised to use a protected name, by its digest (as accounts store theirs)."""

    __tablename__ = "protected_name_subjects"

    entry_id: Mapped[int] = mapped_column(ForeignKey("protected_names.id"), primary_key=True)
    subject_digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    stripped: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    """The digest of the id as the admin gave it, only stripped: the form an account's subject
    was stored in before subject ids were normalised, which it matches as the re-registration
    check matches it (:meth:`~service.review.registration.SubjectKey.digests`); not listed."""


class SubjectKeyFingerprint(Base):
    """One row: the fingerprint of the key the stored subject digests were made with
    (:attr:`~service.review.registration.SubjectKey.fingerprint`), written by the migration that
    keyed them (``0028_subject_keys``); a server with another key refuses to start."""

    __tablename__ = "subject_keys"

    fingerprint: Mapped[str] = mapped_column(String(64), primary_key=True)
    keyed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class CreditEntry(Base):
    """One change of an account's credit; the account's credit is the sum of its entries."""

    __tablename__ = "credit_ledger"
    __table_args__ = (
        # an account's history, a page at a time in its order
        Index("ix_credit_account_at", "account_id", "at", "id"),
        UniqueConstraint("item_id", "account_id", "reason", name="uq_credit_item_reason"),
        UniqueConstraint("appeal_id", name="uq_credit_appeal"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.account_id"))
    delta: Mapped[int] = mapped_column(Integer)
    credit: Mapped[int] = mapped_column(Integer)
    level: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(16))
    category: Mapped[str | None] = mapped_column(String(32), nullable=True)
    item_id: Mapped[int | None] = mapped_column(ForeignKey("review_queue.id"), nullable=True)
    appeal_id: Mapped[int | None] = mapped_column(ForeignKey("appeals.id"), nullable=True)
    policy_version: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


UNSETTLED = "settled_at IS NULL AND lifted_at IS NULL"
"""The deadline sweep's index predicate (:data:`PENDING`'s note holds for it too)."""
NOT_LIFTED = "lifted_at IS NULL"
"""The predicate of the index of an account's dispositions by their end, active while it is
ahead (:data:`PENDING`'s note holds for it too)."""
LASTING = "lifted_at IS NULL AND ends_at IS NULL"
"""The predicate of the index of an account's dispositions without an end, active until lifted
(:data:`PENDING`'s note holds for it too)."""


class StoredDisposition(Base):
    """A disposition; lifting it sets ``lifted_at`` (and writes a record), nothing is deleted."""

    __tablename__ = "dispositions"
    __table_args__ = (
        # an account's history, a page at a time in its order
        Index("ix_dispositions_account_starts", "account_id", "starts_at", "id"),
        Index("ix_dispositions_kind_ends", "kind", "ends_at"),
        # an account's active ones, a page at a time: those without an end in the order they
        # were applied, those with one from the moment read on (active is a matter of the
        # time, which no index predicate can hold), of every one the account was ever given
        Index(
            "ix_dispositions_account_lasting",
            "account_id",
            "starts_at",
            "id",
            sqlite_where=text(LASTING),
            postgresql_where=text(LASTING),
        ),
        Index(
            "ix_dispositions_account_ending",
            "account_id",
            "ends_at",
            sqlite_where=text(NOT_LIFTED),
            postgresql_where=text(NOT_LIFTED),
        ),
        # what an upheld appeal lifts: the dispositions applied on its item, of every one the
        # account was ever given
        Index("ix_dispositions_item_account", "item_id", "account_id"),
        # the deadline sweep's candidates: the few suspensions not yet settled among every
        # disposition ever given
        Index(
            "ix_dispositions_unsettled",
            "kind",
            "ends_at",
            sqlite_where=text(UNSETTLED),
            postgresql_where=text(UNSETTLED),
        ),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.account_id"))
    kind: Mapped[str] = mapped_column(String(32))
    basis: Mapped[str] = mapped_column(String(32))
    item_id: Mapped[int | None] = mapped_column(ForeignKey("review_queue.id"), nullable=True)
    starts_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    ends_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    decided_by: Mapped[str] = mapped_column(String(64))
    policy_version: Mapped[str] = mapped_column(String(64))
    lifted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    lifted_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    settled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    """When the deadline sweep settled what follows the end of an art8 suspension (the name
    corrected, or the service terminated): set once, so that an end is acted on once."""
    standing: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    """Applied because the account's standing (its credit level or its violations in the window)
    reached a step of the ladder (:func:`service.review.dispositions.reached`): what an upheld
    appeal that lowers the standing lifts, whatever basis the ladder gives the step since. A
    step a violation's category called for, art8's termination and the dormancy's measures
    rest on their own grounds: an upheld appeal lifts them only when it is of their own item."""


class StoredReport(Base):
    __tablename__ = "reports"
    __table_args__ = (
        Index("ix_reports_created", "created_at", "id"),
        # an item's reports in filing order, from a cursor (the open reports, an item page)
        Index("ix_reports_item_created", "item_id", "created_at", "id"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    post_id: Mapped[str | None] = mapped_column(String(MAX_ID_CHARS), nullable=True)
    account_id: Mapped[str | None] = mapped_column(String(MAX_ID_CHARS), nullable=True)
    category: Mapped[str] = mapped_column(String(32))
    text: Mapped[str] = mapped_column(Text)
    item_id: Mapped[int] = mapped_column(ForeignKey("review_queue.id"))
    reporter: Mapped[str] = mapped_column(String(64))
    """The key it came with (the platform's)."""
    reporter_id: Mapped[str | None] = mapped_column(String(MAX_ID_CHARS), nullable=True)
    """The platform's own id of the user who reported, when it gave one."""
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class StoredAppeal(Base):
    __tablename__ = "appeals"
    __table_args__ = (
        # one appeal per violation, the holder's and one filed on their behalf: two filed at
        # once would otherwise both pass the check for an earlier one (an index, not a
        # constraint, so that SQLite adds it without a copy)
        Index("uq_appeal_item_account", "item_id", "account_id", "on_behalf", unique=True),
        # the listing of one status (the pending ones, few among every appeal ever filed) in
        # deadline order, a page at a time, and the count of the pending and overdue ones
        Index("ix_appeals_status_deadline", "status", "deadline", "id"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.account_id"), index=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("review_queue.id"))
    reason: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    filed_by: Mapped[str] = mapped_column(String(64))
    on_behalf: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    """Filed in the console by a trust-team member for the holder (migration
    ``0034_appeals_on_behalf``); false: the holder's own, through the platform."""
    filed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    deadline: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    resolved_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    note: Mapped[str | None] = mapped_column(Text, nullable=True)


class DuplicateAppeal(Base):
    """An appeal of a violation that had one already, filed before the unique index existed
    (migration 0008), kept as it was beside ``kept_id``, the appeal its violation keeps."""

    __tablename__ = "appeal_duplicates"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=False)
    account_id: Mapped[str] = mapped_column(String(MAX_ID_CHARS))
    item_id: Mapped[int] = mapped_column(Id)
    reason: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    filed_by: Mapped[str] = mapped_column(String(64))
    filed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    deadline: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    resolved_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    note: Mapped[str | None] = mapped_column(Text, nullable=True)
    kept_id: Mapped[int] = mapped_column(ForeignKey("appeals.id"))


class AuditRecord(Base):
    """The append-only, hash-chained records (:mod:`service.review.chain`). Migration
    ``0048_audit_subject_index`` indexes them by subject, in code point order
    (``ix_audit_records_subject``: ``COLLATE "C"`` on PostgreSQL), for ``audit verify``'s pages
    of accounts."""

    __tablename__ = "audit_records"

    seq: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    subject: Mapped[str] = mapped_column(Text)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditHead(Base):
    """One row: the chain's last record. Appending locks it, so records get consecutive numbers
    in commit order, and cutting the chain's end shows."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))


class IdempotentWrite(Base):
    """The answer to a write made with an ``Idempotency-Key``, stored in the write's own
    transaction: a retry gets it back instead of writing twice."""

    __tablename__ = "idempotency_keys"
    # the prune reads the oldest first (migration 0029_kept_keys_and_use)
    __table_args__ = (Index("ix_idempotency_keys_created_at", "created_at"),)

    caller: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    response: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ConsoleUser(Base):
    """A person who signs in to the web console; the password is kept as an argon2id digest."""

    __tablename__ = "console_users"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    digest: Mapped[str] = mapped_column(String(256))
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    disabled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    """Set by ``qinglang users disable``: the user can no longer sign in, and its sessions end."""
    session_epoch: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    """Raised by signing out: a session carries the epoch its user signed in under, and ends
    once the user's is another, so that a copy of the cookie ends with the one signed out."""


class SignInAttempt(Base):
    """A console sign-in under way or failed (a successful one deletes its name's rows): what
    the sign-in limits count, in every server process alike. Rows older than the window are
    deleted as new ones come."""

    __tablename__ = "console_sign_in_attempts"
    __table_args__ = (
        Index("ix_sign_in_attempts_name_digest", "name_digest", "at"),
        Index("ix_sign_in_attempts_address", "address", "at"),
        Index("ix_sign_in_attempts_at", "at"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    name_digest: Mapped[str] = mapped_column(String(64))
    """The typed user name's keyed digest (:meth:`~service.security.SignInLimits.name_digest`),
    never the name: it may be a password typed into the wrong field."""
    address: Mapped[str] = mapped_column(String(64))
    """The client's address (IPv6: its /64 network)."""
    at: Mapped[float] = mapped_column(Float)
    """Unix seconds."""


class StoredPost(Base):
    """The post of every persisted score record, so that ``qinglang rescore --from-db`` can
    score it again under a new model or policy. One row per post id (the first kept)."""

    __tablename__ = "stored_posts"
    __table_args__ = (
        Index("ix_stored_posts_at", "at", "post_id"),
        Index("ix_stored_posts_account", "account_id"),
    )

    post_id: Mapped[str] = mapped_column(String(MAX_ID_CHARS), primary_key=True)
    text: Mapped[str] = mapped_column(Text)
    account_id: Mapped[str | None] = mapped_column(String(MAX_ID_CHARS), nullable=True)
    created_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    at: Mapped[float] = mapped_column(Float)
    """The post's ``created_at``, or when it was stored if it had none: the order of a re-score."""
    declared_original: Mapped[bool] = mapped_column(Boolean)
    source: Mapped[str | None] = mapped_column(Text, nullable=True)
    stored_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class PostEngagement(Base):
    """A post's engagement counts as the platform last reported them (art12,
    :mod:`service.review.engagement`); a count never given is null. Every post the platform
    reports has a row, whether or not the service scored it."""

    __tablename__ = "post_engagement"
    __table_args__ = (
        # the account's other posts a jump is weighed against: its latest reported
        Index("ix_post_engagement_account", "account_id", "reported_at"),
    )

    post_id: Mapped[str] = mapped_column(String(MAX_ID_CHARS), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(MAX_ID_CHARS))
    reads: Mapped[int | None] = mapped_column(Integer, nullable=True)
    reposts: Mapped[int | None] = mapped_column(Integer, nullable=True)
    comments: Mapped[int | None] = mapped_column(Integer, nullable=True)
    likes: Mapped[int | None] = mapped_column(Integer, nullable=True)
    reposters: Mapped[int | None] = mapped_column(Integer, nullable=True)
    reported_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    """When the latest report came."""


class RescoreRun(Base):
    """A finished ``qinglang rescore --from-db``: the period, the model and policy it used."""

    __tablename__ = "rescore_runs"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    since: Mapped[float | None] = mapped_column(Float, nullable=True)
    until: Mapped[float | None] = mapped_column(Float, nullable=True)
    model_version: Mapped[str] = mapped_column(String(64))
    policy_version: Mapped[str] = mapped_column(String(64))
    posts: Mapped[int] = mapped_column(Integer)
    output: Mapped[str] = mapped_column(Text)
    finished_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
