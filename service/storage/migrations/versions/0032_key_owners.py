"""``api_keys.owner``: the console user a key belongs to (``qinglang keys create --user``), so
that the review's separation-of-duty checks and its records name the person whether they act
in the console or with their key; null for a key of nobody's, which every key from before is
(it acts as its key id, as it did).

Revision ID: 0032_key_owners
Revises: 0031_dormancy_warnings
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0032_key_owners"
down_revision: str | None = "0031_dormancy_warnings"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.add_column("api_keys", sa.Column("owner", sa.String(64), nullable=True))


def downgrade() -> None:
    # as 0027's: SQLite keeps the drops when a revision further down refuses the downgrade
    if "owner" in {c["name"] for c in sa.inspect(op.get_bind()).get_columns("api_keys")}:
        op.drop_column("api_keys", "owner")
