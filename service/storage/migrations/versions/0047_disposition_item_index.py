"""The index of the dispositions by the item they were applied on, and the account
(``ix_dispositions_item_account``): an upheld appeal lifts the dispositions applied on its item,
ended ones too, read off it where they were read along every disposition the account was not
lifted of, its whole history of ended ones. Measured by ``python -m eval.account_scale``.

Revision ID: 0047_disposition_item_index
Revises: 0046_open_report_indexes
"""

from __future__ import annotations

from alembic import op

revision = "0047_disposition_item_index"
down_revision: str | None = "0046_open_report_indexes"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_index("ix_dispositions_item_account", "dispositions", ["item_id", "account_id"])


def downgrade() -> None:
    # SQLite keeps what ran here when a revision further down refuses the downgrade (its DDL
    # outside the transaction): a second downgrade finds it done
    op.drop_index("ix_dispositions_item_account", table_name="dispositions", if_exists=True)
