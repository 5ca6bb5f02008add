"""Alembic's entry point: runs migrations on the engine :mod:`checkpoint.db` hands it."""

from alembic import context

from checkpoint.storage.db import VERSION_TABLE
from checkpoint.storage.models import Base

config = context.config
engine = config.attributes["engine"]

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        version_table=VERSION_TABLE,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()
