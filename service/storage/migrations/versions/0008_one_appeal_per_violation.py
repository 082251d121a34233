"""One appeal per violation (item and account): a unique index, so that two appeals filed at the
same moment cannot both pass the check for an earlier one.

A database that already holds such twins keeps one appeal of each (item, account): the one a
reversal in the credit ledger names, else an upheld one, else a rejected one, else the first
filed; the others move, unchanged, to ``appeal_duplicates`` with the id of the one kept, so that
their reasons stay beside the chained records that name them (``appeal.filed`` carries the
reason's hash). Nothing is decided on their behalf: the kept appeal answers for the violation,
and a pending twin, no longer in ``appeals``, is neither listed nor counted overdue. Deleting
them would lose those reasons; leaving them would keep the index from being built. A downgrade
moves them back.

Revision ID: 0008_one_appeal_per_violation
Revises: 0007_evidence_sweep
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_one_appeal_per_violation"
down_revision: str | None = "0007_evidence_sweep"
branch_labels: str | None = None
depends_on: str | None = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
INDEX = "uq_appeal_item_account"
ARCHIVE = "appeal_duplicates"
COLUMNS = (
    "id, account_id, item_id, reason, status, filed_by, filed_at, deadline, resolved_by,"
    " resolved_at, note"
)


def _twins(connection: sa.Connection) -> dict[int, int]:
    """Each surplus appeal's id, with the id of the one its (item, account) keeps."""
    rows = connection.execute(
        sa.text(
            "SELECT a.id, a.item_id, a.account_id, a.status,"
            " EXISTS (SELECT 1 FROM credit_ledger c WHERE c.appeal_id = a.id) AS reversed"
            " FROM appeals a JOIN (SELECT item_id, account_id FROM appeals"
            " GROUP BY item_id, account_id HAVING COUNT(*) > 1) d"
            " ON d.item_id = a.item_id AND d.account_id = a.account_id"
        )
    ).all()
    groups: dict[tuple[int, str], list[sa.Row[tuple[int, int, str, str, bool]]]] = {}
    for row in rows:
        groups.setdefault((row.item_id, row.account_id), []).append(row)
    surplus: dict[int, int] = {}
    for twins in groups.values():
        twins.sort(
            key=lambda r: (not r.reversed, r.status != "upheld", r.status == "pending", r.id)
        )
        surplus.update({r.id: twins[0].id for r in twins[1:]})
    return surplus


def upgrade() -> None:
    op.create_table(
        ARCHIVE,
        sa.Column("id", Id, primary_key=True, autoincrement=False),
        sa.Column("account_id", sa.String(256), nullable=False),
        sa.Column("item_id", Id, nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("filed_by", sa.String(64), nullable=False),
        sa.Column("filed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deadline", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved_by", sa.String(64), nullable=True),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("kept_id", Id, sa.ForeignKey("appeals.id"), nullable=False),
    )
    connection = op.get_bind()
    for twin, kept in _twins(connection).items():
        connection.execute(
            sa.text(
                f"INSERT INTO {ARCHIVE} ({COLUMNS}, kept_id)"
                f" SELECT {COLUMNS}, :kept FROM appeals WHERE id = :twin"
            ),
            {"kept": kept, "twin": twin},
        )
        connection.execute(sa.text("DELETE FROM appeals WHERE id = :twin"), {"twin": twin})
    op.create_index(INDEX, "appeals", ["item_id", "account_id"], unique=True)


def downgrade() -> None:
    op.drop_index(INDEX, table_name="appeals")
    op.execute(f"INSERT INTO appeals ({COLUMNS}) SELECT {COLUMNS} FROM {ARCHIVE}")
    op.drop_table(ARCHIVE)
