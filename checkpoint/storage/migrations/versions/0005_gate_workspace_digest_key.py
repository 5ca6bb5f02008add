"""Closing the gate: the MLflow workspace a request acts in, the content digest each review
was given on, and which audit key an event's hash was made with.

- ``promote_requests.workspace``: MLflow's ``X-MLFLOW-WORKSPACE`` (``""`` is the server's
  default workspace, and every request recorded before this revision).
- ``reviews.digest``: the challenger's content digest when the review was given (NULL for
  reviews recorded before this revision, and for changes without a challenger).
- ``events.key_id``: a fingerprint of the audit key the event's HMAC was made with; NULL
  for the plain SHA-256 events recorded before a key was in use (they may only precede
  keyed ones: ``checkpoint.events.audit.verify`` refuses an unkeyed event after a keyed one).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("promote_requests") as batch:
        batch.add_column(sa.Column("workspace", sa.String(256), nullable=False, server_default=""))
        batch.create_index("ix_requests_workspace_model_id", ["workspace", "model_name", "id"])
    with op.batch_alter_table("reviews") as batch:
        batch.add_column(sa.Column("digest", sa.String(64), nullable=True))
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("key_id", sa.String(32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.drop_column("key_id")
    with op.batch_alter_table("reviews") as batch:
        batch.drop_column("digest")
    with op.batch_alter_table("promote_requests") as batch:
        batch.drop_index("ix_requests_workspace_model_id")
        batch.drop_column("workspace")
