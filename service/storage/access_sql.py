"""API keys, console users and sign-in attempts in storage: what :mod:`service.security` and
the console's sign-in check against (keys and passwords by digest only)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import cast

from sqlalchemy import delete, select, update

from service.storage.repository import ApiKey, ConsoleAccount, Role, SignInAttempts, reads_only
from service.storage.review_rows import utc
from service.storage.review_sql import ReviewSql
from service.storage.tables import ConsoleUser, SignInAttempt, StoredKey


class AccessSql(ReviewSql):
    """Mixed into :class:`~service.storage.sql.SqlRepository`."""

    def add_key(self, key: ApiKey) -> None:
        with self._session() as session:
            session.add(
                StoredKey(
                    key_id=key.key_id,
                    digest=key.digest,
                    role=key.role,
                    created_at=key.created_at,
                    revoked_at=None,
                    owner=key.owner,
                )
            )

    def add_user(self, name: str, digest: str, role: Role) -> None:
        with self._session() as session:
            session.add(
                ConsoleUser(name=name, digest=digest, role=role, created_at=datetime.now(UTC))
            )

    @reads_only  # each console page's session check, a form's too: before any write of it
    def get_user(self, name: str) -> ConsoleAccount | None:
        if "\x00" in name:
            # no user's name holds a NUL (PostgreSQL's text cannot), and PostgreSQL refuses one
            # in a query: a name typed with it at sign-in is nobody's, not storage down
            return None
        with self._session() as session:
            row = session.get(ConsoleUser, name)
            return None if row is None else _user(row)

    def disable_user(self, name: str) -> ConsoleAccount | None:
        with self._session() as session:
            row = session.get(ConsoleUser, name, with_for_update=True)
            if row is None:
                return None
            before = _user(row)
            now = datetime.now(UTC)
            if row.disabled_at is None:
                row.disabled_at = now
            # their keys act as them: a user who may no longer act keeps no key that does (and
            # a key created while this ran, past keys create's check, goes at the next disable)
            session.execute(
                update(StoredKey)
                .where(StoredKey.owner == name, StoredKey.revoked_at.is_(None))
                .values(revoked_at=now)
            )
            return before

    def list_users(self) -> list[ConsoleAccount]:
        with self._session() as session:
            rows = session.scalars(select(ConsoleUser).order_by(ConsoleUser.created_at))
            return [_user(row) for row in rows]

    def end_sessions(self, name: str, epoch: int) -> None:
        with self._session() as session:
            # one statement: of two sign-outs at once from the same epoch, one raises it
            session.execute(
                update(ConsoleUser)
                .where(ConsoleUser.name == name, ConsoleUser.session_epoch == epoch)
                .values(session_epoch=epoch + 1)
            )

    def add_sign_in_attempt(
        self, name_digest: str, address: str, at: float, window_s: float
    ) -> SignInAttempts:
        since = at - window_s
        with self._session() as session:
            session.execute(delete(SignInAttempt).where(SignInAttempt.at < since))
            row = SignInAttempt(name_digest=name_digest, address=address, at=at)
            session.add(row)
            session.flush()
            attempt_id = row.id
        # counted in a transaction of its own, after the attempt was committed
        with self._session() as session:
            others = (SignInAttempt.at >= since) & (SignInAttempt.id != attempt_id)
            by_name = sorted(
                session.scalars(
                    select(SignInAttempt.at).where(others, SignInAttempt.name_digest == name_digest)
                )
            )
            by_address = sorted(
                session.scalars(
                    select(SignInAttempt.at).where(others, SignInAttempt.address == address)
                )
            )
        return SignInAttempts(attempt_id, by_name, by_address)

    def drop_sign_in_attempt(self, attempt_id: int) -> None:
        with self._session() as session:
            session.execute(delete(SignInAttempt).where(SignInAttempt.id == attempt_id))

    def clear_sign_in_attempts(self, name_digest: str) -> None:
        with self._session() as session:
            session.execute(delete(SignInAttempt).where(SignInAttempt.name_digest == name_digest))

    def get_key(self, key_id: str) -> ApiKey | None:
        with self._session() as session:
            row = session.get(StoredKey, key_id)
            return None if row is None else _key(row)

    def revoke_key(self, key_id: str) -> ApiKey | None:
        with self._session() as session:
            row = session.get(StoredKey, key_id, with_for_update=True)
            if row is None:
                return None
            before = _key(row)
            if row.revoked_at is None:
                row.revoked_at = datetime.now(UTC)
            return before

    def list_keys(self) -> list[ApiKey]:
        with self._session() as session:
            rows = session.scalars(select(StoredKey).order_by(StoredKey.created_at))
            return [_key(row) for row in rows]


def _user(row: ConsoleUser) -> ConsoleAccount:
    return ConsoleAccount(
        name=row.name,
        digest=row.digest,
        role=cast(Role, row.role),
        created_at=utc(row.created_at),
        disabled=row.disabled_at is not None,
        session_epoch=row.session_epoch,
    )


def _key(row: StoredKey) -> ApiKey:
    return ApiKey(
        key_id=row.key_id,
        digest=row.digest,
        role=cast(Role, row.role),
        created_at=utc(row.created_at),
        revoked=row.revoked_at is not None,
        owner=row.owner,
    )
