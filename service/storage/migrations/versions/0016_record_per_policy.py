"""One score record per post, model version and policy version (``uq_record_post_policy``, in
place of ``uq_record_post_model``): a re-score under a new policy (``qinglang rescore
--compare … --enqueue``) stores the post's record under that policy beside the one stored
before, which stays as it was scored, with its review item.

SQLite cannot drop a table's unique constraint: the table is built again. Its rows keep their
ids, which the review queue references; the references are checked at the commit
(``defer_foreign_keys``), when every row is back. A downgrade keeps, of each post and model
version, the first record stored, and fails while a review item references one of the others.

Revision ID: 0016_record_per_policy
Revises: 0015_report_order
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016_record_per_policy"
down_revision: str | None = "0015_report_order"
branch_labels: str | None = None
depends_on: str | None = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
PENDING = "evidence_pending"
BY_MODEL = ("uq_record_post_model", ("post_id", "model_version"))
BY_POLICY = ("uq_record_post_policy", ("post_id", "model_version", "policy_version"))
COLUMNS = (
    "id, post_id, model_version, policy_version, decision, record, created_at, evidence_pending,"
    " evidence_claimed_until"
)


def upgrade() -> None:
    _unique(BY_MODEL[0], *BY_POLICY)


def downgrade() -> None:
    op.execute(
        "DELETE FROM score_records WHERE id NOT IN"
        " (SELECT MIN(id) FROM score_records GROUP BY post_id, model_version)"
    )
    _unique(BY_POLICY[0], *BY_MODEL)


def _unique(old: str, new: str, columns: tuple[str, ...]) -> None:
    """Replace the unique constraint ``old`` of ``score_records`` with ``new`` on ``columns``."""
    if op.get_bind().dialect.name != "sqlite":
        op.drop_constraint(old, "score_records", type_="unique")
        op.create_unique_constraint(new, "score_records", list(columns))
        return
    op.execute("PRAGMA defer_foreign_keys = ON")
    op.execute("CREATE TABLE score_records_copy AS SELECT * FROM score_records")
    op.drop_table("score_records")
    op.create_table(
        "score_records",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("post_id", sa.String(256), nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("policy_version", sa.String(64), nullable=False),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("record", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(PENDING, sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("evidence_claimed_until", sa.Float(), nullable=True),
        sa.UniqueConstraint(*columns, name=new),
    )
    op.execute(f"INSERT INTO score_records ({COLUMNS}) SELECT {COLUMNS} FROM score_records_copy")
    op.drop_table("score_records_copy")
    op.create_index(
        "ix_records_evidence_pending",
        "score_records",
        ["model_version", "created_at"],
        sqlite_where=sa.text(f"{PENDING} = 1"),
    )
