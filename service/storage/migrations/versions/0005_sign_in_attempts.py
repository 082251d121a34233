"""Console sign-in attempts, so that every server process counts the same failed sign-ins per
user name and per client address (``service.security.sign_in``).

Revision ID: 0005_sign_in_attempts
Revises: 0004_batch
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_sign_in_attempts"
down_revision: str | None = "0004_batch"
branch_labels: str | None = None
depends_on: str | None = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "console_sign_in_attempts",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("address", sa.String(64), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
    )
    op.create_index("ix_sign_in_attempts_name", "console_sign_in_attempts", ["name", "at"])
    op.create_index("ix_sign_in_attempts_address", "console_sign_in_attempts", ["address", "at"])
    op.create_index("ix_sign_in_attempts_at", "console_sign_in_attempts", ["at"])


def downgrade() -> None:
    for index in ("at", "address", "name"):
        op.drop_index(f"ix_sign_in_attempts_{index}", table_name="console_sign_in_attempts")
    op.drop_table("console_sign_in_attempts")
