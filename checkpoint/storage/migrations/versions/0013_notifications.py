"""Email to people (issue 17 §2): email rows share the webhook outbox (``deliveries``) under the
name ``email:<person>``, with the address they go to and why; ``people`` keeps each person's
address as their sign-in showed it and their choice (every event, a digest, or no email).
``ux_deliveries_event_webhook``: one row per event and webhook or person, whoever writes it.

Revision ID: 0013
Revises: 0011
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("address", sa.String(320), nullable=True))
        batch.add_column(sa.Column("reason", sa.String(32), nullable=True))
    op.create_index("ux_deliveries_event_webhook", "deliveries", ["event_id", "webhook"], unique=True)
    op.create_table(
        "people",
        sa.Column("name", sa.String(256), primary_key=True),
        sa.Column("email", sa.String(320), nullable=True),
        sa.Column("email_mode", sa.String(16), nullable=False, server_default="each"),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("people")
    op.drop_index("ux_deliveries_event_webhook", table_name="deliveries")
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("reason")
        batch.drop_column("address")
