"""Indexes for an account's active dispositions (``GET /v1/accounts/{id}`` and its
``/dispositions``, the item page's account) and the appeals listing of one status, measured by
``python -m eval.account_scale``:

- ``ix_dispositions_account_lasting`` (account, starts_at, id) of the dispositions neither
  lifted nor with an end, and ``ix_dispositions_account_ending`` (account, ends_at) of those not
  lifted: a page of the active ones reads the lasting ones in their order from the cursor on and
  the others from the moment read on, where along ``ix_dispositions_account_starts`` every
  disposition the account was ever given was read, the ended and lifted ones filtered out row by
  row. Whether one with an end is active is a matter of the time read at, which no index
  predicate can hold: the end is the index's column instead.
- ``ix_appeals_status_deadline`` (status, deadline, id) in place of ``ix_appeals_status``
  (status): the appeals listing of one status (the pending ones by default in the console, few
  among every appeal ever filed, most answered) reads its page in deadline order from the
  cursor on, where it walked ``ix_appeals_deadline`` past every answered appeal to find the
  pending ones; the counts of the pending and overdue ones read it as they read the status.

Revision ID: 0045_active_read_indexes
Revises: 0044_sweep_places
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0045_active_read_indexes"
down_revision: str | None = "0044_sweep_places"
branch_labels: str | None = None
depends_on: str | None = None

# the predicates as this migration wrote them (service.storage.tables' NOT_LIFTED, LASTING)
NOT_LIFTED = "lifted_at IS NULL"
LASTING = "lifted_at IS NULL AND ends_at IS NULL"


def upgrade() -> None:
    op.create_index(
        "ix_dispositions_account_lasting",
        "dispositions",
        ["account_id", "starts_at", "id"],
        sqlite_where=sa.text(LASTING),
        postgresql_where=sa.text(LASTING),
    )
    op.create_index(
        "ix_dispositions_account_ending",
        "dispositions",
        ["account_id", "ends_at"],
        sqlite_where=sa.text(NOT_LIFTED),
        postgresql_where=sa.text(NOT_LIFTED),
    )
    op.create_index("ix_appeals_status_deadline", "appeals", ["status", "deadline", "id"])
    op.drop_index("ix_appeals_status", table_name="appeals")


def downgrade() -> None:
    # SQLite keeps what ran here when a revision further down refuses the downgrade (its DDL
    # outside the transaction): a second downgrade finds it done
    op.create_index("ix_appeals_status", "appeals", ["status"], if_not_exists=True)
    op.drop_index("ix_appeals_status_deadline", table_name="appeals", if_exists=True)
    op.drop_index("ix_dispositions_account_ending", table_name="dispositions", if_exists=True)
    op.drop_index("ix_dispositions_account_lasting", table_name="dispositions", if_exists=True)
