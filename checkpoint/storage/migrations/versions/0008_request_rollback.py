"""Rollback requests: ``promote_requests.rollback``, the record of a request that puts back an
earlier holder of its target (``checkpoint/review/rollback.py``): the version, the period it
held the target, the request it undoes, and whether the event log and the content digest prove
it (only then may a rule's ``rollback:`` fast path apply). NULL for every other request and for
every request recorded before this revision.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("promote_requests") as batch:
        batch.add_column(sa.Column("rollback", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("promote_requests") as batch:
        batch.drop_column("rollback")
