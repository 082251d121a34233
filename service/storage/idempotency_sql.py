"""The prune of the stored answers of writes made with an ``Idempotency-Key``
(``idempotency_keys``: the JSON API's keys and the console's one-time form keys, one row a
decision): a retry is made within hours, so that a row past ``idempotency_keep_hours`` only
grows the table."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, delete, select, tuple_

from service.storage.review_sql import ReviewSql
from service.storage.tables import IdempotentWrite
from service.storage.transaction import try_advisory_lock

PRUNE_ROWS = 5_000
"""Rows one transaction deletes: each holds SQLite's write lock, which the publish path's
writes wait for, for tens of milliseconds only (the figures in docs/review.md)."""
PRUNE_LOCK = "idempotency-prune"


class IdempotencySql(ReviewSql):
    """Mixed into :class:`~service.storage.sql.SqlRepository`."""

    def prune_idempotency_keys(self, before: datetime) -> int:
        """Delete the answers stored before ``before``, oldest first, :data:`PRUNE_ROWS` a
        transaction; once whatever the processes calling it: on PostgreSQL one process prunes
        and the others, finding its lock taken, leave it (the next sweep finds what is left),
        while SQLite's one writer at a time has the next find the rows gone. A retry with a
        key pruned is made again, as one without a key is. How many rows were deleted."""
        oldest = (
            select(IdempotentWrite.caller, IdempotentWrite.key)
            .where(IdempotentWrite.created_at < before)
            .order_by(IdempotentWrite.created_at)
            .limit(PRUNE_ROWS)
        )
        # most sweeps find nothing: they look without taking SQLite's write lock
        with self._session() as session:
            if session.scalar(select(oldest.limit(1).subquery().c.key)) is None:
                return 0
        pruned = 0
        while True:
            with self._writing() as session:
                if not try_advisory_lock(session, PRUNE_LOCK):
                    return pruned
                keys = tuple_(IdempotentWrite.caller, IdempotentWrite.key)
                deleted = session.execute(delete(IdempotentWrite).where(keys.in_(oldest)))
                done = cast(CursorResult[Any], deleted).rowcount
            pruned += done
            if done < PRUNE_ROWS:
                return pruned
