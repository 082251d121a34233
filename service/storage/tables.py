"""The database schema. Changing it means a new migration in ``migrations/versions``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from service.record import MAX_ID_CHARS

# SQLite only auto-increments a column declared exactly INTEGER PRIMARY KEY
Id = BigInteger().with_variant(Integer, "sqlite")


class Base(DeclarativeBase):
    pass


class StoredRecord(Base):
    """A score record the policy said to persist; one per post and model version."""

    __tablename__ = "score_records"
    __table_args__ = (UniqueConstraint("post_id", "model_version", name="uq_record_post_model"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    post_id: Mapped[str] = mapped_column(String(MAX_ID_CHARS))
    model_version: Mapped[str] = mapped_column(String(64))
    policy_version: Mapped[str] = mapped_column(String(64))
    decision: Mapped[str] = mapped_column(String(16))
    record: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ReviewItem(Base):
    """A stored record waiting for review."""

    __tablename__ = "review_queue"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    record_id: Mapped[int] = mapped_column(ForeignKey("score_records.id"), unique=True)
    post_id: Mapped[str] = mapped_column(String(MAX_ID_CHARS))
    model_version: Mapped[str] = mapped_column(String(64))
    policy_version: Mapped[str] = mapped_column(String(64))
    decision: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default="open")
    enqueued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class StoredKey(Base):
    __tablename__ = "api_keys"

    key_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    digest: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class BankedRumor(Base):
    """An entry of the confirmed-rumour bank."""

    __tablename__ = "rumor_bank"

    rumor_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    text: Mapped[str | None] = mapped_column(Text, nullable=True)
    post_id: Mapped[str | None] = mapped_column(String(MAX_ID_CHARS), nullable=True)
    notice: Mapped[str] = mapped_column(Text)
    fingerprint: Mapped[str] = mapped_column(String(64))
    signature: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_by: Mapped[str] = mapped_column(String(32))
