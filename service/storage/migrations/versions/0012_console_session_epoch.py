"""A console user's session epoch (``console_users.session_epoch``), raised by signing out: a
session carries the epoch it was signed in under and ends once it is another. Users stored
before it are at 0, as are the sessions they hold.

Revision ID: 0012_console_session_epoch
Revises: 0011_console_users_disabled
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012_console_session_epoch"
down_revision: str | None = "0011_console_users_disabled"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    # plain ALTER TABLE, also on SQLite: a batch there copies the table and drops the old one
    op.add_column(
        "console_users",
        sa.Column("session_epoch", sa.Integer(), nullable=False, server_default="0"),
    )


def downgrade() -> None:
    op.drop_column("console_users", "session_epoch")
