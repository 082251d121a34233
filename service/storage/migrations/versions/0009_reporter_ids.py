"""The platform's own id of the user who reported (``reports.reporter_id``), so that reports
one key forwards from many users count as many reporters towards an item's priority. Reports
stored before it have none, and count per key as they did.

Revision ID: 0009_reporter_ids
Revises: 0008_one_appeal_per_violation
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_reporter_ids"
down_revision: str | None = "0008_one_appeal_per_violation"
branch_labels: str | None = None
depends_on: str | None = None

ID_CHARS = 256


def upgrade() -> None:
    # plain ALTER TABLE, also on SQLite: a batch there copies the table and drops the old one
    op.add_column("reports", sa.Column("reporter_id", sa.String(ID_CHARS), nullable=True))


def downgrade() -> None:
    op.drop_column("reports", "reporter_id")
