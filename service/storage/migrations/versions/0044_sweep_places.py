"""Where each bounded dormancy look last stopped (``sweep_places``), stored rather than kept in
each process's memory: a restarted server, a second replica or a command that sweeps started
from the first account again, so that an account failing every run at the head of the order
held back the accounts after it across restarts. One row per look, none stopped anywhere yet.

Revision ID: 0044_sweep_places
Revises: 0043_batch_charges
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0044_sweep_places"
down_revision: str | None = "0043_batch_charges"
branch_labels: str | None = None
depends_on: str | None = None

# the service's looks as this migration was written (a later look's migration adds its row)
LOOKS = ("revise", "warn", "lapsed", "dormant")
ID_CHARS = 256


def upgrade() -> None:
    places = op.create_table(
        "sweep_places",
        sa.Column("look", sa.String(16), primary_key=True),
        sa.Column("turn", sa.Integer(), nullable=False),
        sa.Column("active_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("account_id", sa.String(ID_CHARS), nullable=True),
    )
    op.bulk_insert(places, [{"look": look, "turn": 0} for look in LOOKS])


def downgrade() -> None:
    # as 0020's: SQLite keeps the drop when a revision further down refuses the downgrade
    op.drop_table("sweep_places", if_exists=True)
