"""How many evidence searches failed on a stored record's post (``score_records.
evidence_failures``): a post that ends or hangs the evidence process every time it is searched is
given up at ``evidence_attempts`` (stored without spans, with the pipeline's ``NO_EVIDENCE``), not
claimed by every sweep for ever, oldest first, ahead of the records behind it. Records stored
before it are at 0.

Revision ID: 0042_evidence_failures
Revises: 0041_signup_batch_members
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0042_evidence_failures"
down_revision: str | None = "0041_signup_batch_members"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    # plain ALTER TABLE, also on SQLite: a batch there copies the table and drops the old one
    op.add_column(
        "score_records",
        sa.Column("evidence_failures", sa.Integer(), nullable=False, server_default="0"),
    )


def downgrade() -> None:
    # as 0022's: SQLite keeps the drop when a revision further down refuses the downgrade
    columns = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("score_records")}
    if "evidence_failures" in columns:
        op.drop_column("score_records", "evidence_failures")
