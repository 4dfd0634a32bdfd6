"""Alembic environment: runs migrations on the engine the agent passes in (no alembic.ini)."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

import evidence_agent.catalog.models  # noqa: F401  (registers the tables on the metadata)

engine = context.config.attributes["engine"]
with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=SQLModel.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
