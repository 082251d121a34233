"""The rules of each policy version records were scored under (``policies``), kept by the
server and ``rescore --enqueue`` when they first store records under it, so that the console
shows a record against the thresholds it was decided with after the policy changed. Records
stored before this migration name a version whose rules were never kept: the console says so.

Revision ID: 0026_policies
Revises: 0025_engagement
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0026_policies"
down_revision: str | None = "0025_engagement"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "policies",
        sa.Column("version", sa.String(64), primary_key=True),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("rules", sa.JSON(), nullable=False),
        sa.Column("kept_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    # SQLite does not roll DDL back: a downgrade that an earlier revision refuses further down
    # leaves the table dropped, and the next try finds none
    op.drop_table("policies", if_exists=True)
