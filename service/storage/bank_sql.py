"""The rumour bank in storage (art13): banked rumours with their debunk notices, the copies
of them traced in posts, and the audit records of adding and removing an entry, each change
stored with the answer a retry with its ``Idempotency-Key`` gets."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from sqlalchemy import delete, select, tuple_
from sqlalchemy.orm import Session

from service.review import views
from service.review.chain import text_digest
from service.review.items import NotFoundError
from service.storage.publish_sql import PublishStatements
from service.storage.repository import Idempotency, RumorCopy, StoredRumor, reads_only
from service.storage.review_rows import utc
from service.storage.review_sql import ReviewSql
from service.storage.tables import BankedRumor, RumorCopyRow
from service.storage.transaction import append_records, lock_bank


class BankSql(ReviewSql):
    """Mixed into :class:`~service.storage.sql.SqlRepository`."""

    _publish: PublishStatements

    def add_rumor(
        self,
        entry: Callable[[list[StoredRumor], datetime], StoredRumor],
        *,
        idem: Idempotency | None = None,
    ) -> views.Rumor:
        def write() -> views.Rumor:
            with self._writing() as session:
                now = datetime.now(UTC)
                # the key first: a retry finds its own entry banked, which ``entry`` refuses
                return self._keyed(session, now, idem, views.Rumor, lambda: bank(session, now))

        def bank(session: Session, now: datetime) -> views.Rumor:
            lock_bank(session)
            rumor = entry(_bank(session), now)
            session.add(
                BankedRumor(
                    rumor_id=rumor.rumor_id,
                    text=rumor.text,
                    post_id=rumor.post_id,
                    notice=rumor.notice,
                    fingerprint=rumor.fingerprint,
                    signature=rumor.signature,
                    created_at=rumor.created_at,
                    created_by=rumor.created_by,
                )
            )
            # art13: identifying a rumour and its debunk notice are part of the record the
            # chain keeps; free text goes in by digest, as a report's does
            payload = {
                "post_id": rumor.post_id,
                "text_sha256": None if rumor.text is None else text_digest(rumor.text),
                "notice_sha256": text_digest(rumor.notice),
                "by": rumor.created_by,
            }
            append_records(
                session, rumor.created_at, [("rumor.banked", f"rumor:{rumor.rumor_id}", payload)]
            )
            return rumor.view()

        return self._retried(write)

    @reads_only
    def rumors(self) -> list[StoredRumor]:
        with self._session() as session:
            return _bank(session)

    def delete_rumor(
        self, rumor_id: str, by: str, *, idem: Idempotency | None = None
    ) -> views.Rumor:
        def write() -> views.Rumor:
            with self._writing() as session:
                now = datetime.now(UTC)
                return self._keyed(session, now, idem, views.Rumor, lambda: unbank(session, now))

        def unbank(session: Session, now: datetime) -> views.Rumor:
            row = session.scalar(
                select(BankedRumor).where(BankedRumor.rumor_id == rumor_id).with_for_update()
            )
            if row is None:
                raise NotFoundError("no_rumor", rumor_id=rumor_id)
            removed = _stored(row).view()
            copies = session.execute(
                select(RumorCopyRow.post_id, RumorCopyRow.account_id)
                .where(RumorCopyRow.rumor_id == rumor_id)
                .order_by(RumorCopyRow.created_at, RumorCopyRow.post_id)
            ).all()
            # the copies go with their entry: its id is never used again, so nothing could list them
            session.execute(delete(RumorCopyRow).where(RumorCopyRow.rumor_id == rumor_id))
            session.delete(row)
            # the chain keeps who removed the entry and the copies traced to it (art13, art19)
            payload = {
                "by": by,
                "copies": [{"post_id": post, "account_id": account} for post, account in copies],
            }
            append_records(session, now, [("rumor.unbanked", f"rumor:{rumor_id}", payload)])
            return removed

        return self._retried(write)

    def record_rumor_copies(self, copies: Sequence[RumorCopy]) -> int:
        if not copies:
            return 0
        now = datetime.now(UTC)
        rows = [
            {
                "rumor_id": c.rumor_id,
                "post_id": c.post_id,
                "account_id": c.account_id,
                "created_at": c.created_at,
                "similarity": c.similarity,
                "model_version": c.model_version,
                "recorded_at": now,
            }
            for c in copies
        ]
        with self._session() as session:
            return len(session.execute(self._publish.insert_copies, rows).all())

    def rumor_copies(
        self, rumor_id: str, *, after: tuple[float, str] | None = None, limit: int = 1000
    ) -> list[RumorCopy]:
        query = select(RumorCopyRow).where(RumorCopyRow.rumor_id == rumor_id)
        if after is not None:
            query = query.where(tuple_(RumorCopyRow.created_at, RumorCopyRow.post_id) > after)
        query = query.order_by(RumorCopyRow.created_at, RumorCopyRow.post_id).limit(limit)
        with self._session() as session:
            return [
                RumorCopy(
                    rumor_id=row.rumor_id,
                    post_id=row.post_id,
                    account_id=row.account_id,
                    created_at=row.created_at,
                    similarity=row.similarity,
                    model_version=row.model_version,
                )
                for row in session.scalars(query)
            ]


def _bank(session: Session) -> list[StoredRumor]:
    """The bank as ``session`` reads it, oldest first."""
    rows = session.scalars(
        select(BankedRumor).order_by(BankedRumor.created_at, BankedRumor.rumor_id)
    )
    return [_stored(row) for row in rows]


def _stored(row: BankedRumor) -> StoredRumor:
    return StoredRumor(
        rumor_id=row.rumor_id,
        text=row.text,
        post_id=row.post_id,
        notice=row.notice,
        fingerprint=row.fingerprint,
        signature=bytes(row.signature),
        created_at=utc(row.created_at),
        created_by=row.created_by,
    )
