"""Approvals that expire: when the background work recorded that an approval had grown older
than its rule's ``approvals_expire_after`` (``approval_expired``).

- ``reviews.expired_at``: NULL while the approval counts (or was never an approval); set once,
  by a conditional UPDATE ``... WHERE expired_at IS NULL`` whose winner writes the event in the
  same transaction, so of several workers and replicas one records each expiry.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("reviews") as batch:
        batch.add_column(sa.Column("expired_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("reviews") as batch:
        batch.drop_column("expired_at")
