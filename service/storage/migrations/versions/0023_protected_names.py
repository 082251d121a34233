"""The protected names (art8, its second paragraph): ``protected_names``, one row per folded
name with what it names, and ``protected_name_subjects``, the digests of the subjects authorised
to use each. Both start empty: admins add the entries.

Revision ID: 0023_protected_names
Revises: 0022_followers_at
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0023_protected_names"
down_revision: str | None = "0022_followers_at"
branch_labels: str | None = None
depends_on: str | None = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
PROTECTED_CHARS = 100


def upgrade() -> None:
    op.create_table(
        "protected_names",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("folded_name", sa.String(PROTECTED_CHARS), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.UniqueConstraint("folded_name", name="uq_protected_names_folded"),
    )
    op.create_table(
        "protected_name_subjects",
        sa.Column(
            "entry_id", Id, sa.ForeignKey("protected_names.id"), primary_key=True, nullable=False
        ),
        sa.Column("subject_digest", sa.String(64), primary_key=True, nullable=False),
    )


def downgrade() -> None:
    # as 0020's: SQLite keeps the drop when a revision further down refuses the downgrade
    op.drop_table("protected_name_subjects", if_exists=True)
    op.drop_table("protected_names", if_exists=True)
