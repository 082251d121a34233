"""Console sign-in attempts keep a keyed digest of the typed user name (``name_digest``), not
the name: people type their password into the name field at times.

The rows stored before are deleted, not converted: the digest's key is the console's signing
key, which a migration does not have, and the rows are only the failed sign-ins of the last
``console_sign_in_window_minutes``, whose limits start again from nothing. A downgrade deletes
the digests alike (the release before compares typed names).

Revision ID: 0013_sign_in_name_digests
Revises: 0012_console_session_epoch
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013_sign_in_name_digests"
down_revision: str | None = "0012_console_session_epoch"
branch_labels: str | None = None
depends_on: str | None = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TABLE = "console_sign_in_attempts"


def _replace(name_column: str) -> None:
    """The table made anew, empty, with ``name_column`` for the typed name (its indexes go with
    it, on SQLite and PostgreSQL alike)."""
    op.drop_table(TABLE)
    op.create_table(
        TABLE,
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column(name_column, sa.String(64), nullable=False),
        sa.Column("address", sa.String(64), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
    )
    op.create_index(f"ix_sign_in_attempts_{name_column}", TABLE, [name_column, "at"])
    op.create_index("ix_sign_in_attempts_address", TABLE, ["address", "at"])
    op.create_index("ix_sign_in_attempts_at", TABLE, ["at"])


def upgrade() -> None:
    _replace("name_digest")


def downgrade() -> None:
    _replace("name")
