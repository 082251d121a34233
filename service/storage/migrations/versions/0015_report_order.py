"""An index on when each report was filed (``ix_reports_created``): the console lists reports
the earliest filed first, the soonest due under Article 20, a page at a time, which without it
sorts every report on each page.

Revision ID: 0015_report_order
Revises: 0014_account_indexes
"""

from __future__ import annotations

from alembic import op

revision = "0015_report_order"
down_revision: str | None = "0014_account_indexes"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_index("ix_reports_created", "reports", ["created_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_reports_created", table_name="reports")
