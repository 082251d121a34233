"""An index on each disposition's kind and end (``ix_dispositions_kind_ends``): the publish path
reads the active dispositions that stop an account publishing every ``storage_retry_s``, and
without it reads every disposition ever given, a table that only grows (nothing is deleted).

Revision ID: 0021_disposition_kinds
Revises: 0020_decided_merge_keys
"""

from __future__ import annotations

from alembic import op

revision = "0021_disposition_kinds"
down_revision: str | None = "0020_decided_merge_keys"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_index("ix_dispositions_kind_ends", "dispositions", ["kind", "ends_at"])


def downgrade() -> None:
    # as 0020's: SQLite keeps the drop when a revision further down refuses the downgrade
    op.drop_index("ix_dispositions_kind_ends", table_name="dispositions", if_exists=True)
