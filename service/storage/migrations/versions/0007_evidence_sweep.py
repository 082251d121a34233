"""Records whose evidence spans were never stored (the evidence backlog was full, storage was
down, the process stopped first) as columns, so that the service's sweep can find and claim them.

Revision ID: 0007_evidence_sweep
Revises: 0006_rumor_copies
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_evidence_sweep"
down_revision: str | None = "0006_rumor_copies"
branch_labels: str | None = None
depends_on: str | None = None

PENDING = "evidence_pending"


def upgrade() -> None:
    # plain ALTER TABLE, also on SQLite: a batch there copies the table and drops the old one,
    # which the review queue's references to its rows forbid
    op.add_column(
        "score_records",
        sa.Column(PENDING, sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.add_column("score_records", sa.Column("evidence_claimed_until", sa.Float(), nullable=True))
    flag = (
        "json_extract(record, '$.evidence_pending') = 1"
        if op.get_bind().dialect.name == "sqlite"
        else "(record ->> 'evidence_pending')::boolean"
    )
    op.execute(f"UPDATE score_records SET {PENDING} = true WHERE {flag}")
    op.create_index(
        "ix_records_evidence_pending",
        "score_records",
        ["model_version", "created_at"],
        sqlite_where=sa.text(f"{PENDING} = 1"),
        postgresql_where=sa.text(PENDING),
    )


def downgrade() -> None:
    op.drop_index("ix_records_evidence_pending", table_name="score_records")
    op.drop_column("score_records", "evidence_claimed_until")
    op.drop_column("score_records", PENDING)
