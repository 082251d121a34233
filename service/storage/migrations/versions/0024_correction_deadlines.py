"""What follows an art8 suspension's end, and authorised subjects in their old form.

``dispositions.settled_at``: when the deadline sweep settled the end of a suspension that gave
an account until then to correct its name (the name corrected, or the service terminated), so
that every server process acts on an end once; with ``ix_dispositions_unsettled``, the
suspensions not yet settled, for the sweep each process runs every ``storage_retry_s``. Rows from
before keep null: a suspension that ended before this migration is settled by the first sweep.

``protected_name_subjects.stripped``: an entry keeps beside each authorised subject's digest the
digest of the id as given, only stripped, flagged ``stripped``: the form accounts stored before
subject ids were normalised. Entries added before this migration have none (the ids they were
given are not kept): their old-form accounts are recognised once their subject is given again.

Revision ID: 0024_correction_deadlines
Revises: 0023_protected_names
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0024_correction_deadlines"
down_revision: str | None = "0023_protected_names"
branch_labels: str | None = None
depends_on: str | None = None

UNSETTLED = "settled_at IS NULL AND lifted_at IS NULL"


def upgrade() -> None:
    op.add_column("dispositions", sa.Column("settled_at", sa.DateTime(timezone=True)))
    op.create_index(
        "ix_dispositions_unsettled",
        "dispositions",
        ["kind", "ends_at"],
        sqlite_where=sa.text(UNSETTLED),
        postgresql_where=sa.text(UNSETTLED),
    )
    op.add_column(
        "protected_name_subjects",
        sa.Column("stripped", sa.Boolean(), nullable=False, server_default=sa.false()),
    )


def downgrade() -> None:
    # as 0020's: SQLite keeps the drop when a revision further down refuses the downgrade
    bind = op.get_bind()
    op.drop_index("ix_dispositions_unsettled", table_name="dispositions", if_exists=True)
    for table, column in (("dispositions", "settled_at"), ("protected_name_subjects", "stripped")):
        if column in {c["name"] for c in sa.inspect(bind).get_columns(table)}:
            op.drop_column(table, column)
