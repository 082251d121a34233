"""Indexes for an account's history read a page at a time (``GET /v1/accounts/{id}``, the
item page's account), measured by ``python -m eval.queue_scale``:

- ``ix_credit_account_at`` (account, at, id) in place of ``ix_credit_ledger_account_id``
  (account), and ``ix_dispositions_account_starts`` (account, starts_at, id) in place of
  ``ix_dispositions_account_id`` (account): a page reads each kind's next entries in the
  history's order and stops, where on the account alone every entry of the account was read
  and sorted for each page.

Revision ID: 0040_account_history_indexes
Revises: 0039_review_read_indexes
"""

from __future__ import annotations

from alembic import op

revision = "0040_account_history_indexes"
down_revision: str | None = "0039_review_read_indexes"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_index("ix_credit_account_at", "credit_ledger", ["account_id", "at", "id"])
    op.drop_index("ix_credit_ledger_account_id", table_name="credit_ledger")
    op.create_index(
        "ix_dispositions_account_starts", "dispositions", ["account_id", "starts_at", "id"]
    )
    op.drop_index("ix_dispositions_account_id", table_name="dispositions")


def downgrade() -> None:
    # SQLite keeps what ran here when a revision further down refuses the downgrade (its DDL
    # outside the transaction): a second downgrade finds it done
    op.create_index(
        "ix_dispositions_account_id", "dispositions", ["account_id"], if_not_exists=True
    )
    op.drop_index("ix_dispositions_account_starts", table_name="dispositions", if_exists=True)
    op.create_index(
        "ix_credit_ledger_account_id", "credit_ledger", ["account_id"], if_not_exists=True
    )
    op.drop_index("ix_credit_account_at", table_name="credit_ledger", if_exists=True)
