"""Batch requests: ``promote_requests.changes``, the changes of a request that holds several
(in the order they apply, each with its snapshots and rule), NULL for a single-change request,
which keeps its one change in ``change`` exactly as before (review/batching.py).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("promote_requests") as batch:
        batch.add_column(sa.Column("changes", sa.JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("promote_requests") as batch:
        batch.drop_column("changes")
