"""Alembic environment: runs on the connection :func:`service.db.migrate` passes in."""

from __future__ import annotations

from alembic import context

from service.db import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only through service.db.migrate
    raise RuntimeError("run migrations through service.db.migrate(engine)")
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
