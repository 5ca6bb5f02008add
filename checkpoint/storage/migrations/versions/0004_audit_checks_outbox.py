"""Tamper-evident events (hash chain), check results, and the webhook outbox.

Existing events are chained in id order, so ``checkpoint audit verify`` covers the history
recorded before this migration too.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    from checkpoint.storage.hashing import GENESIS, event_hash

    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("prev_hash", sa.String(64), nullable=True))
        batch.add_column(sa.Column("hash", sa.String(64), nullable=True))
    bind = op.get_bind()
    events = sa.table(
        "events",
        sa.column("id", sa.Integer),
        sa.column("request_id", sa.Integer),
        sa.column("model_name", sa.String),
        sa.column("kind", sa.String),
        sa.column("actor", sa.String),
        sa.column("data", sa.JSON),
        sa.column("created_at", sa.DateTime(timezone=True)),
        sa.column("prev_hash", sa.String),
        sa.column("hash", sa.String),
    )
    previous = GENESIS
    for row in bind.execute(sa.select(events).order_by(events.c.id)).mappings().all():
        digest = event_hash(dict(row), previous)
        bind.execute(events.update().where(events.c.id == row["id"]).values(prev_hash=previous, hash=digest))
        previous = digest
    with op.batch_alter_table("events") as batch:
        batch.alter_column("prev_hash", existing_type=sa.String(64), nullable=False)
        batch.alter_column("hash", existing_type=sa.String(64), nullable=False)

    op.create_table(
        "check_results",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.Integer, sa.ForeignKey("promote_requests.id", ondelete="CASCADE"), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("required", sa.Boolean, nullable=False),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("evaluated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("request_id", "name", name="ux_check_results_request_name"),
    )
    op.create_index("ix_check_results_request_id", "check_results", ["request_id"])

    op.create_table(
        "deliveries",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("event_id", sa.Integer, sa.ForeignKey("events.id"), nullable=False),
        sa.Column("webhook", sa.String(200), nullable=False),
        sa.Column("request_id", sa.Integer, nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_status", sa.Integer, nullable=True),
        sa.Column("last_error", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_deliveries_event_id", "deliveries", ["event_id"])
    op.create_index("ix_deliveries_status_due", "deliveries", ["status", "next_attempt_at"])
    op.create_index("ix_deliveries_order", "deliveries", ["webhook", "request_id", "event_id"])


def downgrade() -> None:
    op.drop_table("deliveries")
    op.drop_table("check_results")
    with op.batch_alter_table("events") as batch:
        batch.drop_column("hash")
        batch.drop_column("prev_hash")
