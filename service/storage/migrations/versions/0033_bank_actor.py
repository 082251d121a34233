"""``rumor_bank.created_by`` widened from 32 to 64 characters: a bank entry and its removal name
who acted, the console user an admin key belongs to (``api_keys.owner``, 64 characters, as
``console_users.name``) where it has one, else the key's id, as the review's records do; a
console user's name was cut to 32 characters before. Entries from before keep what they
recorded (a key id, or a name's first 32 characters).

The downgrade narrows the column back where every entry's ``created_by`` fits 32 characters;
it stops, with how many do not, where one names a longer name, which the schema before it
cannot hold (PostgreSQL would refuse the narrowing, and cutting the name would record
another person): keep the database at 0033, with a release that has it, or remove those
entries first.

Revision ID: 0033_bank_actor
Revises: 0032_key_owners
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from alembic.util import CommandError

revision = "0033_bank_actor"
down_revision: str | None = "0032_key_owners"
branch_labels: str | None = None
depends_on: str | None = None

BEFORE, AFTER = 32, 64
COPY = "_alembic_tmp_rumor_bank"
"""The table alembic's batch mode copies ``rumor_bank`` into on SQLite."""


def upgrade() -> None:
    _created_by(BEFORE, AFTER)


def downgrade() -> None:
    bank = sa.table("rumor_bank", sa.column("created_by", sa.String()))
    longer = op.get_bind().scalar(
        sa.select(sa.func.count()).where(sa.func.length(bank.c.created_by) > BEFORE)
    )
    if longer:
        raise CommandError(
            f"cannot downgrade 0033_bank_actor: {longer} confirmed-rumour bank entries name "
            f"who added them in more than {BEFORE} characters, which the schema before it "
            "cannot hold: keep the database at 0033, with a release that has it, or remove "
            "those entries first"
        )
    _created_by(AFTER, BEFORE)


def _created_by(width: int, to: int) -> None:
    """Retype ``rumor_bank.created_by`` from ``width`` characters to ``to``."""
    # as 0027's drops: SQLite keeps the table a copy began when a revision further down
    # refuses the downgrade, which the next try would find in its way
    op.drop_table(COPY, if_exists=True)
    # batch mode: SQLite cannot alter a column in place, so alembic copies the table
    with op.batch_alter_table("rumor_bank") as bank:
        bank.alter_column(
            "created_by",
            existing_type=sa.String(width),
            type_=sa.String(to),
            existing_nullable=False,
        )
