"""``appeals.on_behalf``: an appeal a trust-team member filed in the console on the holder's
behalf, apart from the holder's own (filed through the platform's key). One appeal per
violation is now one of each: a rejected appeal filed on the holder's behalf leaves the
holder's own, so that no reviewer can use it up by filing an appeal for another to reject.
The unique index ``uq_appeal_item_account`` takes the column; every appeal from before is the
holder's (the console's filings were not told apart), which keeps what was refused refused.

The downgrade stops, with how many, while a violation holds two appeals, which the index before
it cannot hold: keep the database at 0034, with a release that has it.

Revision ID: 0034_appeals_on_behalf
Revises: 0033_bank_actor
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from alembic.util import CommandError

revision = "0034_appeals_on_behalf"
down_revision: str | None = "0033_bank_actor"
branch_labels: str | None = None
depends_on: str | None = None

INDEX = "uq_appeal_item_account"


def upgrade() -> None:
    op.add_column(
        "appeals",
        sa.Column("on_behalf", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.drop_index(INDEX, table_name="appeals")
    op.create_index(INDEX, "appeals", ["item_id", "account_id", "on_behalf"], unique=True)


def downgrade() -> None:
    # as 0032's: SQLite keeps what went down here when a revision further down refuses the
    # downgrade, so the next try finds the column gone and the index as before it
    if "on_behalf" not in {c["name"] for c in sa.inspect(op.get_bind()).get_columns("appeals")}:
        return
    twice = op.get_bind().scalar(
        sa.text(
            "SELECT COUNT(*) FROM (SELECT item_id, account_id FROM appeals"
            " GROUP BY item_id, account_id HAVING COUNT(*) > 1) AS twice"
        )
    )
    if twice:
        raise CommandError(
            f"cannot downgrade 0034_appeals_on_behalf: {twice} violations hold the holder's "
            "appeal beside one filed on their behalf, which the schema before it cannot hold: "
            "keep the database at 0034, with a release that has it"
        )
    op.drop_index(INDEX, table_name="appeals")
    op.create_index(INDEX, "appeals", ["item_id", "account_id"], unique=True)
    op.drop_column("appeals", "on_behalf")
