"""Score items opened before score items took their post's merge key (``post:ID``, the key a
report opens the post's item with) get it: an open (or escalated) score item without a key
was outside ``uq_queue_open_merge``, so two writers queueing its post at once could each miss
the other's item and open a second one beside it.

Of each post, the open score item without a key that has the lowest id gets ``post:ID`` (the
item a flagged record or report of the post joins first, as the service finds it), unless an
open item holds that key already (the post's reports opened it). The others are left without a
key, as they were: they stay in the queue to be decided, and merging two items of one post
would have to choose between their records, reports and decisions, which is a reviewer's call.
The key is written as the service writes it; a copy of the format stands here, so that a later
change of it does not change what this migration writes.

A downgrade leaves the keys: the service before this migration writes the same ones.

Revision ID: 0018_score_merge_keys
Revises: 0017_names_refolded
"""

from __future__ import annotations

from alembic import op

revision = "0018_score_merge_keys"
down_revision: str | None = "0017_names_refolded"
branch_labels: str | None = None
depends_on: str | None = None

OPEN = "status IN ('open', 'escalated')"
# the service's f"post:{post_id}"
KEY = "'post:' || post_id"


def upgrade() -> None:
    op.execute(
        f"UPDATE review_queue SET merge_key = {KEY} WHERE id IN"
        " (SELECT MIN(id) FROM review_queue WHERE kind = 'score' AND merge_key IS NULL"
        f" AND post_id IS NOT NULL AND {OPEN} GROUP BY post_id)"
        " AND NOT EXISTS (SELECT 1 FROM review_queue keyed"
        f" WHERE keyed.merge_key = 'post:' || review_queue.post_id AND keyed.{OPEN})"
    )


def downgrade() -> None:
    """The keys stay (see the module's docstring)."""
