"""Keyed subject digests: every stored digest of a subject identifier (``accounts.subject_digest``
and ``protected_name_subjects.subject_digest``, its ``stripped`` ones too) becomes the
HMAC-SHA256 of itself under the deployment's subject key, and ``subject_keys`` keeps the key's
fingerprint, in one transaction with the version: a server that finds this revision finds every
digest keyed, once. An unkeyed SHA-256 of an identity-card number (about 1e11 values) is reversed
by trying them all.

The key is the one :func:`service.storage.database.upgrade` is given (``config.attributes``); the
keying and the fingerprint are copies of the service's
(:func:`service.review.registration.keyed`, :attr:`~service.review.registration.SubjectKey
.fingerprint`) as they were written, as a migration keeps what it ran with. The audit chain's
records are not rewritten: each hash covers its payload, so the digests in records written before
stay unkeyed.

The downgrade cannot turn a keyed digest back (HMAC is one-way): it is refused while any is
stored.

Revision ID: 0028_subject_keys
Revises: 0027_dormant_accounts
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import context, op
from alembic.util import CommandError

revision = "0028_subject_keys"
down_revision: str | None = "0027_dormant_accounts"
branch_labels: str | None = None
depends_on: str | None = None

FINGERPRINT_LABEL = b"qinglang-subject-key-fingerprint"
BATCH = 5000


def _keyed(key: bytes, plain: str) -> str:
    return hmac.new(key, plain.encode(), hashlib.sha256).hexdigest()


def _fingerprint(key: bytes) -> str:
    return hmac.new(key, FINGERPRINT_LABEL, hashlib.sha256).hexdigest()


def upgrade() -> None:
    key = context.config.attributes.get("subject_key")
    if not isinstance(key, bytes):
        raise CommandError(
            "0028_subject_keys keys the stored subject digests and needs the subject key: "
            "migrate with qinglang migrate (or serve), which pass it"
        )
    op.create_table(
        "subject_keys",
        sa.Column("fingerprint", sa.String(64), primary_key=True),
        sa.Column("keyed_at", sa.DateTime(timezone=True), nullable=False),
    )
    bind = op.get_bind()
    accounts = sa.table(
        "accounts", sa.column("account_id", sa.String()), sa.column("subject_digest", sa.String())
    )
    after = ""
    while True:
        # keyset pages by the primary key, which the update leaves as it is
        rows = bind.execute(
            sa.select(accounts.c.account_id, accounts.c.subject_digest)
            .where(accounts.c.subject_digest.is_not(None), accounts.c.account_id > after)
            .order_by(accounts.c.account_id)
            .limit(BATCH)
        ).all()
        if not rows:
            break
        bind.execute(
            accounts.update()
            .where(accounts.c.account_id == sa.bindparam("id"))
            .values(subject_digest=sa.bindparam("digest")),
            [{"id": account, "digest": _keyed(key, plain)} for account, plain in rows],
        )
        after = rows[-1][0]
    subjects = sa.table(
        "protected_name_subjects",
        sa.column("entry_id", sa.BigInteger()),
        sa.column("subject_digest", sa.String()),
    )
    # few (an admin adds each); the digest is part of the key, and a keyed one is no plain one
    rows = bind.execute(sa.select(subjects.c.entry_id, subjects.c.subject_digest)).all()
    if rows:
        bind.execute(
            subjects.update()
            .where(
                subjects.c.entry_id == sa.bindparam("entry"),
                subjects.c.subject_digest == sa.bindparam("plain"),
            )
            .values(subject_digest=sa.bindparam("digest")),
            [
                {"entry": entry, "plain": plain, "digest": _keyed(key, plain)}
                for entry, plain in rows
            ],
        )
    kept = sa.table(
        "subject_keys",
        sa.column("fingerprint", sa.String()),
        sa.column("keyed_at", sa.DateTime(timezone=True)),
    )
    op.execute(kept.insert().values(fingerprint=_fingerprint(key), keyed_at=datetime.now(UTC)))


def downgrade() -> None:
    bind = op.get_bind()
    tables = set(sa.inspect(bind).get_table_names())
    accounts = bind.scalar(
        sa.text("SELECT count(*) FROM accounts WHERE subject_digest IS NOT NULL")
    )
    subjects = (
        bind.scalar(sa.text("SELECT count(*) FROM protected_name_subjects"))
        if "protected_name_subjects" in tables
        else 0
    )
    if accounts or subjects:
        raise CommandError(
            f"cannot downgrade 0028_subject_keys: {accounts} accounts and {subjects} protected "
            "name subjects hold keyed subject digests, which cannot be turned back into the "
            "unkeyed ones the schema before it compares (HMAC is one-way): keep the database "
            "at 0028, with a release that has it"
        )
    # as 0020's: SQLite keeps the drop when a revision further down refuses the downgrade
    op.drop_table("subject_keys", if_exists=True)
