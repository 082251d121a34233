"""An index on every review item's merge key (``ix_queue_merge``), decided items included: a
cluster or bank match queued again looks up the item last decided on its key (whose decision
stands for what it saw, and which a new item links to); the unique index holds open items only.

Revision ID: 0020_decided_merge_keys
Revises: 0019_names_from_records
"""

from __future__ import annotations

from alembic import op

revision = "0020_decided_merge_keys"
down_revision: str | None = "0019_names_from_records"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_index("ix_queue_merge", "review_queue", ["merge_key", "id"])


def downgrade() -> None:
    # SQLite does not roll DDL back: a downgrade that an earlier revision refuses further down
    # leaves the index dropped, and the next try finds none
    op.drop_index("ix_queue_merge", table_name="review_queue", if_exists=True)
