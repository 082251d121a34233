"""How far a registration batch's confirmation has charged its members
(``review_decisions.charging_after``): the members past the ones its item lists are charged in
transactions of their own, a bounded number each, after the decision's, and the decision keeps
the last member charged, in code-point order, until all are (null then). With
``ix_decisions_charging``, the decisions whose charges are not complete, for the sweep each
process runs every ``storage_retry_s`` to finish the charges of a confirmation whose process
stopped midway. Decisions from before keep null: their confirmations charged every member in
their own transaction.

The downgrade stops, with how many, while a confirmation's charges are not finished: the schema
before it keeps no place to finish them from, and its release no sweep to finish them, so its
members left would never be charged. Let a server of this release (its maintenance) finish
them first.

Revision ID: 0043_batch_charges
Revises: 0042_evidence_failures
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from alembic.util import CommandError

revision = "0043_batch_charges"
down_revision: str | None = "0042_evidence_failures"
branch_labels: str | None = None
depends_on: str | None = None

ID_CHARS = 256
CHARGING = "charging_after IS NOT NULL"


def upgrade() -> None:
    # plain ALTER TABLE, also on SQLite: a batch there copies the table and drops the old one
    op.add_column("review_decisions", sa.Column("charging_after", sa.String(ID_CHARS)))
    op.create_index(
        "ix_decisions_charging",
        "review_decisions",
        ["id"],
        sqlite_where=sa.text(CHARGING),
        postgresql_where=sa.text(CHARGING),
    )


def downgrade() -> None:
    # as 0024's: SQLite keeps the drop when a revision further down refuses the downgrade
    columns = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("review_decisions")}
    if "charging_after" not in columns:
        return
    unfinished = op.get_bind().scalar(
        sa.text(f"SELECT COUNT(*) FROM review_decisions WHERE {CHARGING}")
    )
    if unfinished:
        raise CommandError(
            f"cannot downgrade 0043_batch_charges: {unfinished} registration batch confirmations "
            "have not charged all their members, which the schema before it cannot finish: let "
            "a server of a release that has 0043 finish them (its batch_charges maintenance)"
        )
    op.drop_index("ix_decisions_charging", table_name="review_decisions", if_exists=True)
    op.drop_column("review_decisions", "charging_after")
