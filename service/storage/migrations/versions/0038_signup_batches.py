"""When a profile made an account's row (``accounts.registered_at``) and the digest of its
name's skeleton (``accounts.skeleton_digest``), which a batch of registrations under one name
is found by (art10, :mod:`service.review.signups`). Rows from before keep null in both: when
they were registered is not known, so no batch counts them.

Revision ID: 0038_signup_batches
Revises: 0037_placeholders_chained
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0038_signup_batches"
down_revision: str | None = "0037_placeholders_chained"
branch_labels: str | None = None
depends_on: str | None = None

COLUMNS = ("registered_at", "skeleton_digest")


def upgrade() -> None:
    op.add_column("accounts", sa.Column("registered_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("accounts", sa.Column("skeleton_digest", sa.String(64), nullable=True))
    op.create_index(
        "ix_accounts_skeleton_registered", "accounts", ["skeleton_digest", "registered_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_accounts_skeleton_registered", table_name="accounts", if_exists=True)
    # as 0022's: SQLite keeps the drop when a revision further down refuses the downgrade
    found = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("accounts")}
    for column in COLUMNS:
        if column in found:
            op.drop_column("accounts", column)
