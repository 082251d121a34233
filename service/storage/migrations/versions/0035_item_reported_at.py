"""When a review item's first report was filed (``review_queue.reported_at``): the item's
deadline (art20) runs from it, as each report's runs from its own filing, not from the item's
queueing, which left an item queued days before its first report overdue on arrival. Items from
before take their earliest stored report's filing; those nobody reported keep null (no
deadline).

Revision ID: 0035_item_reported_at
Revises: 0034_appeals_on_behalf
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0035_item_reported_at"
down_revision: str | None = "0034_appeals_on_behalf"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.add_column(
        "review_queue", sa.Column("reported_at", sa.DateTime(timezone=True), nullable=True)
    )
    queue = sa.table("review_queue", sa.column("id"), sa.column("reported_at"))
    reports = sa.table("reports", sa.column("item_id"), sa.column("created_at"))
    first = (
        sa.select(sa.func.min(reports.c.created_at))
        .where(reports.c.item_id == queue.c.id)
        .scalar_subquery()
    )
    # one statement, the reports read off ix_reports_item_id
    op.execute(
        queue.update()
        .where(sa.exists().where(reports.c.item_id == queue.c.id))
        .values(reported_at=first)
    )


def downgrade() -> None:
    # as 0022's: SQLite keeps the drop when a revision further down refuses the downgrade
    columns = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("review_queue")}
    if "reported_at" in columns:
        op.drop_column("review_queue", "reported_at")
