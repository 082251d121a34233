"""A review write's transaction (:class:`Tx`): its session, moment and policy, the chained
records it appends when it ends (:func:`append_records`), the advisory locks it holds until then,
and whether it lost a race to another writer. Its own module because every write's steps
(credit, protected names, items) and the rumour bank's run on it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar, cast

from sqlalchemy import Select, String, Table, bindparam, collate, insert, select, text, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from service.policy import Policy
from service.review import chain
from service.storage.repository import StorageError
from service.storage.tables import AuditHead, AuditRecord

S = TypeVar("S", bound=Select[Any])


@dataclass
class Tx:
    """One write: its session, its moment, its policy, and the records it appends at the end."""

    session: Session
    now: datetime
    policy: Policy
    log: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)

    def record(self, kind: str, subject: str, payload: dict[str, Any]) -> None:
        self.log.append((kind, subject, payload))


_AUDIT_RECORDS = cast(Table, AuditRecord.__table__)
_AUDIT_HEAD = cast(Table, AuditHead.__table__)
# built once: every review write appends to the chain, each flagged post's storing among them,
# and building these took SQLAlchemy longer than the database took to run them
# (:mod:`~service.storage.publish_sql`)
_LOCK_HEAD = (
    select(_AUDIT_HEAD.c.seq, _AUDIT_HEAD.c.hash).where(_AUDIT_HEAD.c.id == 1).with_for_update()
)
_APPEND = insert(_AUDIT_RECORDS)
_MOVE_HEAD = (
    update(_AUDIT_HEAD)
    .where(_AUDIT_HEAD.c.id == 1)
    .values(seq=bindparam("last_seq"), hash=bindparam("last_hash"))
)


def append_records(
    session: Session, at: datetime, log: list[tuple[str, str, dict[str, Any]]]
) -> None:
    """Append ``log`` to the chain, holding its head's lock until the transaction ends."""
    if not log:
        return
    # the write's own rows first, before the head's lock, as every writer takes its locks: the
    # statements below are the table's, which flush nothing themselves
    session.flush()
    head = session.execute(_LOCK_HEAD).one_or_none()
    assert head is not None, "the audit head row is created by the migration"
    seq, prev = head.seq, head.hash
    rows: list[dict[str, Any]] = []
    for kind, subject, payload in log:
        seq += 1
        digest = chain.link(prev, seq, at, kind, subject, payload)
        rows.append(
            {
                "seq": seq,
                "at": at,
                "kind": kind,
                "subject": subject,
                "payload": payload,
                "prev_hash": prev,
                "hash": digest,
            }
        )
        prev = digest
    session.execute(_APPEND, rows)
    session.execute(_MOVE_HEAD, {"last_seq": seq, "last_hash": prev})


def locking(query: S) -> S:
    """``query`` locking the rows it reads until the transaction ends, against every other
    writer of them (on PostgreSQL; SQLite has one writer at a time already): the lock a write
    takes on an item, an appeal or an account.

    ``FOR NO KEY UPDATE``, not ``FOR UPDATE``: a row inserted that refers to a locked one (an
    appeal to its account and item, a disposition or a credit entry to its item) has its
    reference checked under ``FOR KEY SHARE``, which ``FOR UPDATE`` holds off. Those checks
    come in whatever order a write inserts its rows, after the locks it took (an upheld
    appeal, or a settled art8 suspension, applies dispositions on items it finds under the
    account's lock), so they would wait against the order writers lock rows in, and two
    writes could each hold what the other's check waits for (a deadlock). Writers still
    wait for each other's locks, in that order: the items (or the appeal), then the
    accounts, then the chain's head. A write's advisory locks come before all of them, in
    their own order (:func:`lock_key` first, then :func:`lock_subject`,
    :func:`lock_protected_names`, :func:`lock_signup_batch`): one taken under a row's lock
    would have a writer wait for it holding the row, while its holder (an entry being added,
    holding the protected names) waits for a row that a third writer holds waiting for that
    one (a decision confirming the account's impersonation item, holding the item, waiting
    for the account)."""
    return query.with_for_update(key_share=True)


class CodePoints(FunctionElement[str]):
    """A text column compared and ordered by code point, as Python sorts strings: the order a
    write that locks several rows it reads in SQL order must lock them in, the one every other
    writer of them sorts in Python. A PostgreSQL database's default collation (en_US.UTF-8,
    an ICU locale) orders ``a_1`` before ``A_2`` before ``a1`` where Python gives ``A_2``,
    ``a1``, ``a_1``, and two writes locking the same accounts in the two orders could each
    hold one the other waits for. SQLite's default collation (BINARY) is code-point order for
    UTF-8 already, and has no ``C`` to name."""

    type = String()
    inherit_cache = True


@compiles(CodePoints)
def _code_points(element: CodePoints, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(element.clauses, **kw)


@compiles(CodePoints, "postgresql")
def _code_points_postgresql(element: CodePoints, compiler: SQLCompiler, **kw: Any) -> str:
    (column,) = element.clauses
    return compiler.process(collate(column, "C"), **kw)


def lost_race(exc: StorageError) -> bool:
    cause = exc.__cause__
    if isinstance(cause, IntegrityError):
        return True
    # PostgreSQL: deadlock detected, serialization failure
    code = getattr(getattr(cause, "orig", None), "sqlstate", None)
    return isinstance(cause, DBAPIError) and code in {"40P01", "40001"}


def lock_key(session: Session, caller: str, key: str) -> None:
    """Hold ``caller``'s idempotency key until the transaction ends, before the write reads
    anything: a retry sent while its first try is under way waits for that try, and then
    finds its answer stored, where it would wait for the rows the first try holds and read
    them as that try left them, refused for what the try did (an item decided already, an
    appeal filed already). The first lock of every keyed write, so that it waits for none
    while holding another."""
    _advisory(session, "pg_advisory_xact_lock", f"idempotency:{caller}:{key}")


def lock_protected_names(tx: Tx, *, shared: bool = False) -> None:
    """Hold the protected names until the transaction ends: an entry being added or removed
    (exclusive) waits for the renames under way (shared), and they for it, so that each sees
    the other: a rename is checked against the entry, or the entry finds the new name among
    those that hold it; and an entry added waits for one being removed, and for an art8
    settlement (shared), whose release or clearing of an account rests on the entries its name
    holds."""
    _advisory_lock(tx, "protected-names", shared=shared)


def lock_bank(session: Session) -> None:
    """Hold the rumour bank until the transaction ends: an entry being added reads the bank to
    refuse a duplicate, and two adds of one rumour at once would each find it absent."""
    _advisory(session, "pg_advisory_xact_lock", "rumor-bank")


def lock_subject(tx: Tx, digest: str) -> None:
    """Hold the subject until the transaction ends, so that two accounts given one subject at
    once are counted one after the other."""
    _advisory_lock(tx, f"subject:{digest}")


def lock_signup_batch(tx: Tx, digest: str) -> None:
    """Hold a name's skeleton (its ``digest``) until the transaction ends, so that accounts
    registered under it at once are counted one after the other: two would each miss the
    other's row and open no item for a batch, or each find the batch and open two."""
    _advisory_lock(tx, f"signup-batch:{digest}")


def _advisory_lock(tx: Tx, key: str, *, shared: bool = False) -> None:
    """Hold ``key`` until the transaction ends, on PostgreSQL (SQLite has one writer at a time
    already). An advisory lock is the database's, not a schema's: the key names the schema the
    tables are found in (``current_schema()``, the search path's first), so that the service of
    one schema never waits for another's sharing the database (a staging copy, a tenant, each
    test), nor takes one schema's subject for another's."""
    _advisory(
        tx.session, "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock", key
    )


def try_advisory_lock(session: Session, key: str) -> bool:
    """Hold ``key`` until the transaction ends where no other transaction holds it (True), as
    :func:`_advisory_lock` keys it; else False at once. True on SQLite, whose write
    transactions run one at a time."""
    return _advisory(session, "pg_try_advisory_xact_lock", key) is not False


def _advisory(session: Session, function: str, key: str) -> object:
    """``function`` of PostgreSQL's advisory locks on ``key`` in the schema's name, and what it
    answered; None on SQLite."""
    if session.get_bind().dialect.name != "postgresql":
        return None
    return session.scalar(
        text(f"SELECT {function}(hashtextextended(current_schema() || '/' || :key, 0))"),
        {"key": key},
    )


def as_of_first_read(session: Session) -> None:
    """Have ``session``'s statements, none run yet, all see the database as it was at its
    first: on SQLite a transaction begun (sqlite3 begins one only before a write, so that each
    read is its own), on PostgreSQL one at ``REPEATABLE READ``."""
    if session.get_bind().dialect.name == "sqlite":
        session.execute(text("BEGIN"))
    else:
        session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
