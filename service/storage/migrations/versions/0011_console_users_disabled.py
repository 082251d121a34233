"""When a console user was disabled (``console_users.disabled_at``, by ``qinglang users
disable``): the row stays, so that the name stays taken by the person whose decisions and audit
records carry it. Users stored before it are enabled.

Revision ID: 0011_console_users_disabled
Revises: 0010_account_names
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011_console_users_disabled"
down_revision: str | None = "0010_account_names"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    # plain ALTER TABLE, also on SQLite: a batch there copies the table and drops the old one
    op.add_column(
        "console_users", sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True)
    )


def downgrade() -> None:
    op.drop_column("console_users", "disabled_at")
