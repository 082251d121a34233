"""``ix_idempotency_keys_created_at``: the stored answers of writes made with an
``Idempotency-Key`` by when they were made, for the prune each server process runs every
``storage_retry_s`` (rows older than ``idempotency_keep_hours``), which finds the oldest without
reading the table through. ``accounts.active_by``: which use set the dormancy clock
(``registration``, ``login``, ``post``), for the console's dormant items; a row from before is
``login`` where its clock is its last login, else not known (null).

Revision ID: 0029_kept_keys_and_use
Revises: 0028_subject_keys
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0029_kept_keys_and_use"
down_revision: str | None = "0028_subject_keys"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_index("ix_idempotency_keys_created_at", "idempotency_keys", ["created_at"])
    op.add_column("accounts", sa.Column("active_by", sa.String(16), nullable=True))
    accounts = sa.table(
        "accounts",
        sa.column("active_at", sa.DateTime(timezone=True)),
        sa.column("login_at", sa.DateTime(timezone=True)),
        sa.column("active_by", sa.String(16)),
    )
    op.execute(
        accounts.update()
        .where(accounts.c.login_at.is_not(None), accounts.c.login_at == accounts.c.active_at)
        .values(active_by="login")
    )


def downgrade() -> None:
    # as 0027's: SQLite keeps the drops when a revision further down refuses the downgrade
    op.drop_index("ix_idempotency_keys_created_at", table_name="idempotency_keys", if_exists=True)
    if "active_by" in {c["name"] for c in sa.inspect(op.get_bind()).get_columns("accounts")}:
        op.drop_column("accounts", "active_by")
