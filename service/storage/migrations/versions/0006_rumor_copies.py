"""The recorded copies of the confirmed-rumour bank's entries, so that a copy stays listed after
the near-duplicate window forgets it (art13: trace a rumour to its source).

Revision ID: 0006_rumor_copies
Revises: 0005_sign_in_attempts
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_rumor_copies"
down_revision: str | None = "0005_sign_in_attempts"
branch_labels: str | None = None
depends_on: str | None = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "rumor_copies",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("rumor_id", sa.String(32), nullable=False),
        sa.Column("post_id", sa.String(256), nullable=False),
        sa.Column("account_id", sa.String(256), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("similarity", sa.Float(), nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("rumor_id", "post_id", name="uq_rumor_copy"),
    )
    op.create_index(
        "ix_rumor_copies_listing", "rumor_copies", ["rumor_id", "created_at", "post_id"]
    )


def downgrade() -> None:
    op.drop_index("ix_rumor_copies_listing", table_name="rumor_copies")
    op.drop_table("rumor_copies")
