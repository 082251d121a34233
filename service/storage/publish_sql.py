"""The statements the publish path runs for each post it scores, built once per dialect: the
look-up of its stored record, the inserts of a kept record and of its post, the look-up of its
account's followers and the insert of its review item when it is flagged, the update that adds
the record's evidence spans, and the insert of the copies of banked rumours its bank matches
found (the flagged post's other steps, shared with review's writes, are built once in
:mod:`~service.storage.item_steps` and :mod:`~service.storage.transaction`).

Built for each call, such a statement took SQLAlchemy longer to construct and to key for its
compiled cache than the database took to run it (an insert of a record about 0.4 ms of Python
against 0.06 ms built once, on SQLite); built once, a call binds its values only. They name the
tables, not the ORM classes, whose statements send each call's values through the ORM's bulk
path. A JSON value bound as a parameter is stored as JSON, ``None`` included (JSON's ``null``,
not SQL's NULL, unlike ``None`` written into ``values()``): these statements bind no JSON value
that may be ``None``, but a review item's evidence, whose ``None`` the ORM's insert that
:attr:`PublishStatements.insert_item` replaced stored as JSON's ``null`` too."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Insert, Select, Table, Update, bindparam, case, select, text, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from service.storage.tables import (
    OPEN,
    PostEngagement,
    ReviewItem,
    RumorCopyRow,
    StoredAccount,
    StoredPost,
    StoredRecord,
)

RECORDS = cast(Table, StoredRecord.__table__)
POSTS = cast(Table, StoredPost.__table__)
ITEMS = cast(Table, ReviewItem.__table__)
ACCOUNTS = cast(Table, StoredAccount.__table__)
COPIES = cast(Table, RumorCopyRow.__table__)
REPORTED_FOR = "reported_for"
"""The parameter of :attr:`PublishStatements.insert_post` naming the post whose engagement
owner the insert returns: an insert's own columns' names are its values'."""


@dataclass(frozen=True)
class PublishStatements:
    find_records: Select[Any]
    """The stored records (post id, record) of the posts ``ids`` scored by ``model``, the
    record under ``policy`` first, then each post's earliest."""
    insert_record: Insert
    """A record's row unless one of its post and versions is stored already; its id if
    inserted."""
    insert_post: Insert
    """A post's row unless its id is stored already; if inserted, the account its engagement
    counts were reported for (null: none were), for the post :data:`REPORTED_FOR`."""
    update_record: Update
    """A stored record's JSON and its ``evidence_pending`` (``new_record``, ``pending``), its
    evidence claim cleared, by ``post``, ``model`` and ``policy``."""
    followers: Select[Any]
    """The stored accounts (account id, followers) among ``accounts``."""
    insert_item: Insert
    """A review item's row unless an open item has its merge key already; its id if
    inserted."""
    insert_copies: Insert
    """The rows of banked rumours' copies (each given as a parameter set, an executemany)
    unless their rumour and post are recorded already; the ids of those inserted."""

    @classmethod
    def of(cls, dialect: str) -> PublishStatements:
        insert = sqlite_insert if dialect == "sqlite" else postgresql_insert
        reported = (
            select(PostEngagement.account_id)
            .where(PostEngagement.post_id == bindparam(REPORTED_FOR))
            .scalar_subquery()
        )
        return cls(
            find_records=select(RECORDS.c.post_id, RECORDS.c.record)
            .where(
                RECORDS.c.post_id.in_(bindparam("ids", expanding=True)),
                RECORDS.c.model_version == bindparam("model"),
            )
            .order_by(
                case((RECORDS.c.policy_version == bindparam("policy"), 0), else_=1), RECORDS.c.id
            ),
            insert_record=insert(RECORDS)
            .on_conflict_do_nothing(index_elements=["post_id", "model_version", "policy_version"])
            .returning(RECORDS.c.id),
            insert_post=insert(POSTS)
            .on_conflict_do_nothing(index_elements=["post_id"])
            .returning(reported),
            update_record=update(RECORDS)
            .where(
                RECORDS.c.post_id == bindparam("post"),
                RECORDS.c.model_version == bindparam("model"),
                RECORDS.c.policy_version == bindparam("policy"),
            )
            .values(
                record=bindparam("new_record"),
                evidence_pending=bindparam("pending"),
                evidence_claimed_until=None,
            ),
            followers=select(ACCOUNTS.c.account_id, ACCOUNTS.c.followers).where(
                ACCOUNTS.c.account_id.in_(bindparam("accounts", expanding=True))
            ),
            insert_item=insert(ITEMS)
            .on_conflict_do_nothing(index_elements=["merge_key"], index_where=text(OPEN))
            .returning(ITEMS.c.id),
            insert_copies=insert(COPIES)
            .on_conflict_do_nothing(index_elements=["rumor_id", "post_id"])
            .returning(COPIES.c.id),
        )
