"""Freezes and scheduled apply: when a request is to apply, and what an approved one waits for.

- ``promote_requests.apply_at``: the time its author (when opening) or a reviewer (when
  approving) asked it to apply; NULL: as soon as it is approved.
- ``waiting_kind`` / ``waiting_until`` / ``waiting_name``: an approved request that did not
  apply because a freeze holds its target (``freeze``, the freeze's name) or its ``apply_at``
  is ahead (``schedule``), and the first time it may apply. NULL when it waits for nothing.
  The background work releases it (``approved`` → ``applying``, a conditional UPDATE that
  clears these columns) once the time has passed: one worker of one replica wins.
- ``ix_requests_state_waiting``: the background work's look-up of due requests.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("promote_requests") as batch:
        batch.add_column(sa.Column("apply_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("waiting_kind", sa.String(16), nullable=True))
        batch.add_column(sa.Column("waiting_until", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("waiting_name", sa.String(200), nullable=True))
        batch.create_index("ix_requests_state_waiting", ["state", "waiting_until"])


def downgrade() -> None:
    with op.batch_alter_table("promote_requests") as batch:
        batch.drop_index("ix_requests_state_waiting")
        batch.drop_column("waiting_name")
        batch.drop_column("waiting_until")
        batch.drop_column("waiting_kind")
        batch.drop_column("apply_at")
