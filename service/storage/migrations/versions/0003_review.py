"""The review workflow: queue items of every kind, decisions, accounts and their credit ledger,
dispositions, reports, appeals, the hash-chained audit records, idempotency keys and console
users.

Revision ID: 0003_review
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_review"
down_revision: str | None = "0002_near_duplicates"
branch_labels: str | None = None
depends_on: str | None = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
ID_CHARS = 256
OPEN = "status IN ('open', 'escalated')"


def _when(column: str) -> sa.Column[object]:
    return sa.Column(column, sa.DateTime(timezone=True), nullable=True)


def upgrade() -> None:
    # batch mode: SQLite cannot alter a column in place, so alembic copies the table
    with op.batch_alter_table("review_queue") as queue:
        queue.alter_column("record_id", existing_type=Id, nullable=True)
        queue.alter_column("post_id", existing_type=sa.String(ID_CHARS), nullable=True)
        queue.alter_column("model_version", existing_type=sa.String(64), nullable=True)
        queue.add_column(sa.Column("kind", sa.String(16), nullable=False, server_default="score"))
        queue.add_column(sa.Column("account_id", sa.String(ID_CHARS), nullable=True))
        queue.add_column(sa.Column("merge_key", sa.String(ID_CHARS + 8), nullable=True))
        queue.add_column(sa.Column("head", sa.String(32), nullable=True))
        # items queued before this revision keep their decision as severity and wait at
        # urgency 0, behind nothing that is newly scored at the same severity
        queue.add_column(sa.Column("severity", sa.String(16), nullable=False, server_default=""))
        queue.add_column(sa.Column("reach", sa.Integer(), nullable=False, server_default="0"))
        queue.add_column(sa.Column("reports", sa.Integer(), nullable=False, server_default="0"))
        queue.add_column(sa.Column("urgency", sa.Float(), nullable=False, server_default="0"))
        queue.add_column(sa.Column("assignee", sa.String(64), nullable=True))
        queue.add_column(_when("lease_until"))
        queue.add_column(sa.Column("text", sa.Text(), nullable=True))
        queue.add_column(sa.Column("evidence", sa.JSON(), nullable=True))
    op.execute("UPDATE review_queue SET severity = decision WHERE severity = ''")
    op.create_index("ix_queue_status_urgency", "review_queue", ["status", "urgency", "id"])
    op.create_index("ix_queue_post", "review_queue", ["post_id"])
    op.create_index(
        "uq_queue_open_merge",
        "review_queue",
        ["merge_key"],
        unique=True,
        sqlite_where=sa.text(OPEN),
        postgresql_where=sa.text(OPEN),
    )
    op.create_table(
        "review_decisions",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("item_id", Id, sa.ForeignKey("review_queue.id"), nullable=False, index=True),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("category", sa.String(32), nullable=True),
        sa.Column("basis", sa.String(32), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("reviewer", sa.String(64), nullable=False),
        sa.Column("policy_version", sa.String(64), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False, index=True),
    )
    op.create_table(
        "accounts",
        sa.Column("account_id", sa.String(ID_CHARS), primary_key=True),
        sa.Column("credit", sa.Integer(), nullable=False),
        sa.Column("level", sa.String(16), nullable=False, index=True),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("folded_name", sa.Text(), nullable=True),
        sa.Column("subject_digest", sa.String(64), nullable=True, index=True),
        sa.Column("followers", sa.Integer(), nullable=False),
        sa.Column("clean_since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("policy_version", sa.String(64), nullable=False),
    )
    op.create_table(
        "appeals",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column(
            "account_id",
            sa.String(ID_CHARS),
            sa.ForeignKey("accounts.account_id"),
            nullable=False,
            index=True,
        ),
        sa.Column("item_id", Id, sa.ForeignKey("review_queue.id"), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False, index=True),
        sa.Column("filed_by", sa.String(64), nullable=False),
        sa.Column("filed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deadline", sa.DateTime(timezone=True), nullable=False, index=True),
        sa.Column("resolved_by", sa.String(64), nullable=True),
        _when("resolved_at"),
        sa.Column("note", sa.Text(), nullable=True),
    )
    op.create_table(
        "credit_ledger",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column(
            "account_id",
            sa.String(ID_CHARS),
            sa.ForeignKey("accounts.account_id"),
            nullable=False,
            index=True,
        ),
        sa.Column("delta", sa.Integer(), nullable=False),
        sa.Column("credit", sa.Integer(), nullable=False),
        sa.Column("level", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(16), nullable=False),
        sa.Column("category", sa.String(32), nullable=True),
        sa.Column("item_id", Id, sa.ForeignKey("review_queue.id"), nullable=True),
        sa.Column("appeal_id", Id, sa.ForeignKey("appeals.id"), nullable=True),
        sa.Column("policy_version", sa.String(64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("item_id", "account_id", "reason", name="uq_credit_item_reason"),
        sa.UniqueConstraint("appeal_id", name="uq_credit_appeal"),
    )
    op.create_table(
        "dispositions",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column(
            "account_id",
            sa.String(ID_CHARS),
            sa.ForeignKey("accounts.account_id"),
            nullable=False,
            index=True,
        ),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("basis", sa.String(32), nullable=False),
        sa.Column("item_id", Id, sa.ForeignKey("review_queue.id"), nullable=True),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        _when("ends_at"),
        sa.Column("decided_by", sa.String(64), nullable=False),
        sa.Column("policy_version", sa.String(64), nullable=False),
        _when("lifted_at"),
        sa.Column("lifted_by", sa.String(64), nullable=True),
    )
    op.create_table(
        "reports",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("post_id", sa.String(ID_CHARS), nullable=True),
        sa.Column("account_id", sa.String(ID_CHARS), nullable=True),
        sa.Column("category", sa.String(32), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("item_id", Id, sa.ForeignKey("review_queue.id"), nullable=False, index=True),
        sa.Column("reporter", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "audit_records",
        sa.Column("seq", Id, primary_key=True, autoincrement=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False, index=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    head = op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.bulk_insert(head, [{"id": 1, "seq": 0, "hash": "0" * 64}])
    op.create_table(
        "idempotency_keys",
        sa.Column("caller", sa.String(64), primary_key=True),
        sa.Column("key", sa.String(128), primary_key=True),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("response", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "console_users",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("digest", sa.String(256), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    for table in (
        "console_users",
        "idempotency_keys",
        "audit_head",
        "audit_records",
        "reports",
        "dispositions",
        "credit_ledger",
        "appeals",
        "accounts",
        "review_decisions",
    ):
        op.drop_table(table)
    op.drop_index("uq_queue_open_merge", "review_queue")
    op.drop_index("ix_queue_post", "review_queue")
    op.drop_index("ix_queue_status_urgency", "review_queue")
    with op.batch_alter_table("review_queue") as queue:
        for column in (
            "evidence",
            "text",
            "lease_until",
            "assignee",
            "urgency",
            "reports",
            "reach",
            "severity",
            "head",
            "merge_key",
            "account_id",
            "kind",
        ):
            queue.drop_column(column)
