"""A post's engagement counts as the platform last reported them (art12): ``post_engagement``,
one row per post, each count null until given, with ``ix_post_engagement_account`` for the
account's other posts a jump is weighed against. It starts empty: the platform reports.

Revision ID: 0025_engagement
Revises: 0024_correction_deadlines
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0025_engagement"
down_revision: str | None = "0024_correction_deadlines"
branch_labels: str | None = None
depends_on: str | None = None

ID_CHARS = 256


def upgrade() -> None:
    op.create_table(
        "post_engagement",
        sa.Column("post_id", sa.String(ID_CHARS), primary_key=True),
        sa.Column("account_id", sa.String(ID_CHARS), nullable=False),
        *(
            sa.Column(count, sa.Integer(), nullable=True)
            for count in ("reads", "reposts", "comments", "likes", "reposters")
        ),
        sa.Column("reported_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_post_engagement_account", "post_engagement", ["account_id", "reported_at"])


def downgrade() -> None:
    # as 0020's: SQLite keeps the drop when a revision further down refuses the downgrade
    op.drop_index("ix_post_engagement_account", table_name="post_engagement", if_exists=True)
    op.drop_table("post_engagement", if_exists=True)
