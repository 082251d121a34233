"""The index of the chained records by subject (``ix_audit_records_subject``), in code point
order (``COLLATE "C"`` on PostgreSQL, SQLite's own): ``audit verify`` replays the accounts a
page at a time, each page in a read transaction of its own, and reads each page's records off
it from where the page before ended, where every page read every record. Their kind is not in
it: PostgreSQL would look the kinds up in it, and sort what that gives out of order.

On PostgreSQL, the accounts too, by id in code point order (``ix_accounts_code_points``): their
primary key is in the database's collation, which a page read in ``COLLATE "C"`` cannot seek
or take in order, so that every page would read and sort the whole table. SQLite's key is in
code point order already.

Revision ID: 0048_audit_subject_index
Revises: 0047_disposition_item_index
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0048_audit_subject_index"
down_revision: str | None = "0047_disposition_item_index"
branch_labels: str | None = None
depends_on: str | None = None

INDEX = "ix_audit_records_subject"
ACCOUNTS = "ix_accounts_code_points"


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        op.create_index(INDEX, "audit_records", ["subject"])
        return
    op.create_index(INDEX, "audit_records", [sa.text('subject COLLATE "C"')])
    op.create_index(ACCOUNTS, "accounts", [sa.text('account_id COLLATE "C"')])


def downgrade() -> None:
    # SQLite keeps what ran here when a revision further down refuses the downgrade (its DDL
    # outside the transaction): a second downgrade finds it done
    op.drop_index(INDEX, table_name="audit_records", if_exists=True)
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index(ACCOUNTS, table_name="accounts", if_exists=True)
