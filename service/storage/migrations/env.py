"""Alembic's entry point: runs the migrations on the connection that :func:`upgrade` passes."""

from __future__ import annotations

from alembic import context

from service.storage.tables import Base

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    # each migration commits with its version, and one that fails or is killed midway leaves
    # nothing of itself; on SQLite too, where :func:`service.storage.database._transactional_ddl`
    # makes DDL transactional (a connection passed inside a transaction runs in that one)
    transactional_ddl=True,
    transaction_per_migration=True,
)
with context.begin_transaction():
    context.run_migrations()
