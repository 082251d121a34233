"""Dormant accounts (art10: not logged in nor used for over six months since registration).

``accounts.active_at``: the dormancy clock, the latest of the account's registration, its last
login and its last post scored. The rows from before start it at this migration's moment: when
they were last used is not known (a post that passed was never stored), and an account must not
be found dormant on a guess. ``accounts.login_at``: the last login the platform reported.
``accounts.dormant_at``: when the sweep found the account dormant, so that every server process
acts on a dormancy once; null while it is not. ``ix_accounts_awake_active``: the accounts not
found dormant, by their clock, for the sweep each process runs every ``storage_retry_s``.

Revision ID: 0027_dormant_accounts
Revises: 0026_policies
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0027_dormant_accounts"
down_revision: str | None = "0026_policies"
branch_labels: str | None = None
depends_on: str | None = None

AWAKE = "dormant_at IS NULL"
COLUMNS = ("active_at", "login_at", "dormant_at")


def upgrade() -> None:
    for column in COLUMNS:
        op.add_column("accounts", sa.Column(column, sa.DateTime(timezone=True), nullable=True))
    accounts = sa.table("accounts", sa.column("active_at", sa.DateTime(timezone=True)))
    op.execute(accounts.update().values(active_at=datetime.now(UTC)))
    op.create_index(
        "ix_accounts_awake_active",
        "accounts",
        ["active_at"],
        sqlite_where=sa.text(AWAKE),
        postgresql_where=sa.text(AWAKE),
    )


def downgrade() -> None:
    # as 0020's: SQLite keeps the drop when a revision further down refuses the downgrade
    op.drop_index("ix_accounts_awake_active", table_name="accounts", if_exists=True)
    found = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("accounts")}
    for column in COLUMNS:
        if column in found:
            op.drop_column("accounts", column)
