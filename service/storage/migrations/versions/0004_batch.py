"""Re-scoring what the service stored: the post of every persisted record, and the runs of
``qinglang rescore --from-db`` with the model and policy versions they used.

Revision ID: 0004_batch
Revises: 0003_review
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_batch"
down_revision: str | None = "0003_review"
branch_labels: str | None = None
depends_on: str | None = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
ID_CHARS = 256


def upgrade() -> None:
    op.create_table(
        "stored_posts",
        sa.Column("post_id", sa.String(ID_CHARS), primary_key=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("account_id", sa.String(ID_CHARS), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=True),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("declared_original", sa.Boolean(), nullable=False),
        sa.Column("source", sa.Text(), nullable=True),
        sa.Column("stored_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_stored_posts_at", "stored_posts", ["at", "post_id"])
    op.create_table(
        "rescore_runs",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("since", sa.Float(), nullable=True),
        sa.Column("until", sa.Float(), nullable=True),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("policy_version", sa.String(64), nullable=False),
        sa.Column("posts", sa.Integer(), nullable=False),
        sa.Column("output", sa.Text(), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("rescore_runs")
    op.drop_index("ix_stored_posts_at", table_name="stored_posts")
    op.drop_table("stored_posts")
