"""The confirmed-rumour bank of the near-duplicate index.

Revision ID: 0002_near_duplicates
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_near_duplicates"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "rumor_bank",
        sa.Column("rumor_id", sa.String(32), primary_key=True),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("post_id", sa.String(256), nullable=True),
        sa.Column("notice", sa.Text(), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("signature", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(32), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("rumor_bank")
