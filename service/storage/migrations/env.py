"""Alembic's entry point: runs the migrations on the connection that :func:`upgrade` passes."""

from __future__ import annotations

from alembic import context

from service.storage.tables import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata)
with context.begin_transaction():
    context.run_migrations()
