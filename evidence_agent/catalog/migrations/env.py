"""Alembic environment: runs migrations on the engine the agent passes in (no alembic.ini)."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

import evidence_agent.catalog.models  # noqa: F401  (registers the tables on the metadata)


def run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=SQLModel.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()


# database.migrate passes the connection that holds the migration lock (PostgreSQL); the
# connection stays the caller's to close. Otherwise a connection of the engine is used.
given = context.config.attributes.get("connection")
if given is not None:
    run_migrations(given)
else:
    with context.config.attributes["engine"].connect() as connection:
        run_migrations(connection)
