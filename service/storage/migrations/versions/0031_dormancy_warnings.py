"""Dormancy warnings (art10): the platform is told ``dormancy.warn_days`` before an account's
dormancy takes effect, so that it can warn the holder. ``accounts.warned_at``: when it was told,
so that every server process warns once per clock; null while it was not (every row from
before: none was warned). ``ix_accounts_unwarned_active``: the accounts neither found dormant
nor warned, by their clock, for the warning sweep each process runs every ``storage_retry_s``.

Revision ID: 0031_dormancy_warnings
Revises: 0030_placeholder_subjects
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0031_dormancy_warnings"
down_revision: str | None = "0030_placeholder_subjects"
branch_labels: str | None = None
depends_on: str | None = None

UNWARNED = "dormant_at IS NULL AND warned_at IS NULL"


def upgrade() -> None:
    op.add_column("accounts", sa.Column("warned_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index(
        "ix_accounts_unwarned_active",
        "accounts",
        ["active_at"],
        sqlite_where=sa.text(UNWARNED),
        postgresql_where=sa.text(UNWARNED),
    )


def downgrade() -> None:
    # as 0027's: SQLite keeps the drops when a revision further down refuses the downgrade
    op.drop_index("ix_accounts_unwarned_active", table_name="accounts", if_exists=True)
    if "warned_at" in {c["name"] for c in sa.inspect(op.get_bind()).get_columns("accounts")}:
        op.drop_column("accounts", "warned_at")
