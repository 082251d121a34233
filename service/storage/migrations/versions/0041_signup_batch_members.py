"""The accounts of each registration batch (art10), once per ``signup_batch`` item:
``signup_batch_members``. An item lists its first 100 accounts and counts every one in its
reach; the ones past the listing were kept nowhere, so its confirmation charged the listed
ones only, and an unlisted account renamed out of the skeleton and back was counted again.
Items from before take the accounts they list (``evidence["accounts"]``); the accounts one
counted past them were never recorded and stay uncharged by it.

Revision ID: 0041_signup_batch_members
Revises: 0040_account_history_indexes
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0041_signup_batch_members"
down_revision: str | None = "0040_account_history_indexes"
branch_labels: str | None = None
depends_on: str | None = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
ID_CHARS = 256
READ_ACCOUNTS = 500


def upgrade() -> None:
    members = op.create_table(
        "signup_batch_members",
        sa.Column("item_id", Id, sa.ForeignKey("review_queue.id"), primary_key=True),
        sa.Column(
            "account_id",
            sa.String(ID_CHARS),
            sa.ForeignKey("accounts.account_id"),
            primary_key=True,
        ),
    )
    op.create_index("ix_signup_batch_members_account", "signup_batch_members", ["account_id"])
    queue = sa.table(
        "review_queue", sa.column("id"), sa.column("kind"), sa.column("evidence", sa.JSON)
    )
    accounts = sa.table("accounts", sa.column("account_id"))
    bind = op.get_bind()
    # few items (a batch item opens per skeleton and decision), each listing at most 100
    listed = {
        (item_id, str(a["account_id"]))
        for item_id, evidence in bind.execute(
            sa.select(queue.c.id, queue.c.evidence).where(queue.c.kind == "signup_batch")
        )
        for a in (evidence or {}).get("accounts", [])
        if isinstance(a, dict) and a.get("account_id")
    }
    # a part at a time: the items may list more accounts in all than a statement takes
    # parameters (PostgreSQL's protocol 65,535, SQLite 32,766 where built with its default)
    named = sorted({account for _, account in listed})
    known = {
        account
        for start in range(0, len(named), READ_ACCOUNTS)
        for account in bind.scalars(
            sa.select(accounts.c.account_id).where(
                accounts.c.account_id.in_(named[start : start + READ_ACCOUNTS])
            )
        )
    }
    rows = [{"item_id": i, "account_id": a} for i, a in sorted(listed) if a in known]
    if rows:
        op.bulk_insert(members, rows)


def downgrade() -> None:
    # as 0020's: SQLite keeps the drop when a revision further down refuses the downgrade
    op.drop_index(
        "ix_signup_batch_members_account", table_name="signup_batch_members", if_exists=True
    )
    op.drop_table("signup_batch_members", if_exists=True)
