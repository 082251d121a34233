"""One score record per post, model version and policy version (``uq_record_post_policy``, in
place of ``uq_record_post_model``): a re-score under a new policy (``qinglang rescore
--compare … --enqueue``) stores the post's record under that policy beside the one stored
before, which stays as it was scored, with its review item.

SQLite cannot drop a table's unique constraint: the table is built again. Its rows keep their
ids, which the review queue references; the references are checked at the commit
(``defer_foreign_keys``), when every row is back. A downgrade keeps, of each post and model
version, the record its review item references (an item moves to the post's newest record),
else the first stored; it stops, naming the posts, where items reference two of them.

Revision ID: 0016_record_per_policy
Revises: 0015_report_order
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from alembic.util import CommandError

revision = "0016_record_per_policy"
down_revision: str | None = "0015_report_order"
branch_labels: str | None = None
depends_on: str | None = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
PENDING = "evidence_pending"
BY_MODEL = ("uq_record_post_model", ("post_id", "model_version"))
BY_POLICY = ("uq_record_post_policy", ("post_id", "model_version", "policy_version"))
COLUMNS = (
    "id, post_id, model_version, policy_version, decision, record, created_at, evidence_pending,"
    " evidence_claimed_until"
)

# of each post and model version, the record an item references (at most one, checked
# first), else the first stored
KEPT = (
    "SELECT COALESCE(MIN(q.record_id), MIN(r.id)) FROM score_records r"
    " LEFT JOIN review_queue q ON q.record_id = r.id GROUP BY r.post_id, r.model_version"
)
SPLIT = (
    "SELECT DISTINCT r.post_id FROM score_records r JOIN review_queue q ON q.record_id = r.id"
    " GROUP BY r.post_id, r.model_version HAVING COUNT(*) > 1 ORDER BY r.post_id"
)
NAMED = 10


def upgrade() -> None:
    _unique(BY_MODEL[0], *BY_POLICY)


def downgrade() -> None:
    split = list(op.get_bind().execute(sa.text(SPLIT)).scalars())
    if split:
        posts = ", ".join(split[:NAMED]) + (
            f" and {len(split) - NAMED} more" if split[NAMED:] else ""
        )
        raise CommandError(
            "cannot downgrade 0016_record_per_policy: review items reference records of two"
            f" policies of one post and model version (posts {posts}), and the schema before it"
            " holds one record per post and model version: keep the database at 0016, with a"
            " release that has it"
        )
    op.execute(f"DELETE FROM score_records WHERE id NOT IN ({KEPT})")
    _unique(BY_POLICY[0], *BY_MODEL)


def _unique(old: str, new: str, columns: tuple[str, ...]) -> None:
    """Replace the unique constraint ``old`` of ``score_records`` with ``new`` on ``columns``."""
    if op.get_bind().dialect.name != "sqlite":
        op.drop_constraint(old, "score_records", type_="unique")
        op.create_unique_constraint(new, "score_records", list(columns))
        return
    op.execute("PRAGMA defer_foreign_keys = ON")
    op.execute("CREATE TABLE score_records_copy AS SELECT * FROM score_records")
    op.drop_table("score_records")
    op.create_table(
        "score_records",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("post_id", sa.String(256), nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("policy_version", sa.String(64), nullable=False),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("record", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(PENDING, sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("evidence_claimed_until", sa.Float(), nullable=True),
        sa.UniqueConstraint(*columns, name=new),
    )
    op.execute(f"INSERT INTO score_records ({COLUMNS}) SELECT {COLUMNS} FROM score_records_copy")
    op.drop_table("score_records_copy")
    op.create_index(
        "ix_records_evidence_pending",
        "score_records",
        ["model_version", "created_at"],
        sqlite_where=sa.text(f"{PENDING} = 1"),
    )
