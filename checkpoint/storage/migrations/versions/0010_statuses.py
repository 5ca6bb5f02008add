"""Statuses from CI (issue 16 §2): ``statuses``, append-only, one row per status posted on a
request or on a model version (``request_id`` NULL), with the content digest it speaks for.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "statuses",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.Integer(), sa.ForeignKey("promote_requests.id", ondelete="CASCADE"), nullable=True),
        sa.Column("workspace", sa.String(256), nullable=False, server_default=""),
        sa.Column("model_name", sa.String(512), nullable=False),
        sa.Column("version", sa.String(64), nullable=True),
        sa.Column("digest", sa.String(100), nullable=True),
        sa.Column("context", sa.String(100), nullable=False),
        sa.Column("state", sa.String(8), nullable=False),
        sa.Column("target_url", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("actor", sa.String(256), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_statuses_request_id", "statuses", ["request_id", "id"])
    op.create_index("ix_statuses_version", "statuses", ["workspace", "model_name", "version", "id"])


def downgrade() -> None:
    op.drop_index("ix_statuses_version", table_name="statuses")
    op.drop_index("ix_statuses_request_id", table_name="statuses")
    op.drop_table("statuses")
