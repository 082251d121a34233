"""Indexes for the review reads that read a whole table at a platform's scale (measured by
``python -m eval.queue_scale``, docs/console.md "Console speed"):

- ``ix_queue_account_id`` (account, id) in place of ``ix_queue_account`` (account): an item
  page lists the account's latest items and counts them all; on the account alone PostgreSQL
  walked the whole queue backwards by id for the order;
- ``ix_queue_assignee`` (assignee, status, urgency, id), only the items someone claimed: the
  queue filtered by assignee, in its order, without reading every open item;
- ``ix_queue_reported`` (status, id), only the items someone reported: the reports page counts
  the open reports on every load, which joined every report to every open item;
- ``ix_queue_status_enqueued`` (status, enqueued_at) and ``ix_queue_enqueued_head``
  (enqueued_at, head): the dashboard's open items by age and items queued per day, read off
  the index instead of the table.

Revision ID: 0039_review_read_indexes
Revises: 0038_signup_batches
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0039_review_read_indexes"
down_revision: str | None = "0038_signup_batches"
branch_labels: str | None = None
depends_on: str | None = None

CLAIMED = "assignee IS NOT NULL"
REPORTED = "reported_at IS NOT NULL"


def upgrade() -> None:
    op.create_index("ix_queue_account_id", "review_queue", ["account_id", "id"])
    op.drop_index("ix_queue_account", table_name="review_queue")
    op.create_index(
        "ix_queue_assignee",
        "review_queue",
        ["assignee", "status", "urgency", "id"],
        sqlite_where=sa.text(CLAIMED),
        postgresql_where=sa.text(CLAIMED),
    )
    op.create_index(
        "ix_queue_reported",
        "review_queue",
        ["status", "id"],
        sqlite_where=sa.text(REPORTED),
        postgresql_where=sa.text(REPORTED),
    )
    op.create_index("ix_queue_status_enqueued", "review_queue", ["status", "enqueued_at"])
    op.create_index("ix_queue_enqueued_head", "review_queue", ["enqueued_at", "head"])


def downgrade() -> None:
    # SQLite keeps what ran here when a revision further down refuses the downgrade (its DDL
    # outside the transaction): a second downgrade finds it done
    for name in (
        "ix_queue_enqueued_head",
        "ix_queue_status_enqueued",
        "ix_queue_reported",
        "ix_queue_assignee",
    ):
        op.drop_index(name, table_name="review_queue", if_exists=True)
    op.create_index("ix_queue_account", "review_queue", ["account_id"], if_not_exists=True)
    op.drop_index("ix_queue_account_id", table_name="review_queue", if_exists=True)
