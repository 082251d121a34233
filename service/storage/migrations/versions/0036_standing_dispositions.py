"""``dispositions.standing``: whether a disposition was applied because the account's standing
(its credit level or its violations in the window) reached a step of the ladder, so that an
upheld appeal that lowers the standing lifts it by its kind, whatever basis the ladder gives
the step since; the others (a step a violation's category called for, art8's termination of an
uncorrected name, the dormancy's measures) an upheld appeal lifts only when it is of their own
item. Until now the appeal told them apart by kind and basis against the ladder it read.

Rows from before: standing where their kind and basis are those of a level or count step of
the ladder every policy shipped until this revision gave (2026-12-06.5 and before), the ones
the service lifted as such until now; the policy in force at the upgrade is not read, as it
may give the steps other bases already. A deployment whose own policy gave its ladder other
bases has its steps from before lifted by an appeal of their own item only.

Revision ID: 0036_standing_dispositions
Revises: 0035_item_reported_at
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0036_standing_dispositions"
down_revision: str | None = "0035_item_reported_at"
branch_labels: str | None = None
depends_on: str | None = None

SHIPPED = (
    ("warning", "art19"),
    ("limit_features", "art19"),
    ("suspend_updates", "art19"),
    ("stop_advertising", "art19"),
    ("close_account", "art19"),
    ("blacklist", "art13"),
    ("ban_reregistration", "art8"),
)
"""The (kind, basis) of each level or count step of the shipped ladder until this revision."""


def upgrade() -> None:
    op.add_column(
        "dispositions",
        sa.Column("standing", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    rows = sa.table(
        "dispositions", sa.column("kind"), sa.column("basis"), sa.column("standing", sa.Boolean())
    )
    op.execute(
        rows.update()
        .where(sa.tuple_(rows.c.kind, rows.c.basis).in_(SHIPPED))
        .values(standing=sa.true())
    )


def downgrade() -> None:
    # as 0020's: SQLite keeps the drop when a revision further down refuses the downgrade
    if "standing" in {c["name"] for c in sa.inspect(op.get_bind()).get_columns("dispositions")}:
        op.drop_column("dispositions", "standing")
