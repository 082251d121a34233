"""Indexes for the reports page's open reports (measured by ``python -m eval.reports_scale``,
docs/console.md "The reports page at a platform's scale"):

- ``ix_queue_report_status`` (a reported item's status, null for an item nobody reported; id)
  in place of ``ix_queue_reported`` (status, id, of the reported items): the page asks for the
  open reported items by that one expression, whose statistics the planner has from this index.
  Asked by status and ``reported_at IS NOT NULL`` apart, it multiplied the share of open items
  (half the queue, the flagged posts nobody reported) by the share of reported ones, and took
  the 146 open reported items of a 500,000-report fill for 37,372: it read every report to
  find theirs (a hash join);
- ``ix_reports_item_created`` (item, filed, id) in place of ``ix_reports_item_id`` (item): an
  item's reports in filing order from a cursor, each open item's at most a page of them, and an
  item page's first reports, without reading and sorting all of an item's.

Revision ID: 0046_open_report_indexes
Revises: 0045_active_read_indexes
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0046_open_report_indexes"
down_revision: str | None = "0045_active_read_indexes"
branch_labels: str | None = None
depends_on: str | None = None

REPORT_STATUS = "(CASE WHEN reported_at IS NOT NULL THEN status END)"
""":data:`service.storage.tables.REPORT_STATUS` as this revision has it."""
REPORTED = "reported_at IS NOT NULL"


def upgrade() -> None:
    op.create_index("ix_queue_report_status", "review_queue", [sa.text(REPORT_STATUS), "id"])
    op.drop_index("ix_queue_reported", table_name="review_queue")
    op.create_index("ix_reports_item_created", "reports", ["item_id", "created_at", "id"])
    op.drop_index("ix_reports_item_id", table_name="reports")


def downgrade() -> None:
    # SQLite keeps what ran here when a revision further down refuses the downgrade (its DDL
    # outside the transaction): a second downgrade finds it done
    op.create_index("ix_reports_item_id", "reports", ["item_id"], if_not_exists=True)
    op.drop_index("ix_reports_item_created", table_name="reports", if_exists=True)
    op.create_index(
        "ix_queue_reported",
        "review_queue",
        ["status", "id"],
        sqlite_where=sa.text(REPORTED),
        postgresql_where=sa.text(REPORTED),
        if_not_exists=True,
    )
    op.drop_index("ix_queue_report_status", table_name="review_queue", if_exists=True)
