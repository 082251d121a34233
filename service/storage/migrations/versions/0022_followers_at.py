"""When an account's follower count was last given (``accounts.followers_at``): an abnormal
jump (art12) is measured from the count given before, and its review item says when that was.
Rows from before keep null: when their count was given is not known, and a count above 0 was
given by a profile (accounts start at 0), so it is still the jump's baseline.

Revision ID: 0022_followers_at
Revises: 0021_disposition_kinds
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0022_followers_at"
down_revision: str | None = "0021_disposition_kinds"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.add_column("accounts", sa.Column("followers_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    # as 0020's: SQLite keeps the drop when a revision further down refuses the downgrade
    columns = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("accounts")}
    if "followers_at" in columns:
        op.drop_column("accounts", "followers_at")
