"""Indexes on the account of stored posts and review items (``ix_stored_posts_account``,
``ix_queue_account``): whether the service knows an account (``GET /v1/accounts/{id}``, which
any key may ask, and every appeal) looks for one post or item of it, a scan of either table
without them.

Revision ID: 0014_account_indexes
Revises: 0013_sign_in_name_digests
"""

from __future__ import annotations

from alembic import op

revision = "0014_account_indexes"
down_revision: str | None = "0013_sign_in_name_digests"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_index("ix_stored_posts_account", "stored_posts", ["account_id"])
    op.create_index("ix_queue_account", "review_queue", ["account_id"])


def downgrade() -> None:
    op.drop_index("ix_queue_account", table_name="review_queue")
    op.drop_index("ix_stored_posts_account", table_name="stored_posts")
