"""Diff snapshots: ``diff_snapshots``, one row per request holding what its page's diff needs
(both versions' params, metrics, tags, MLmodel and requirements), read from MLflow when the
request opens and whenever a side moves, so the page renders without waiting for MLflow's slow
``runs/get`` of wide runs. A cache: dropping it loses nothing (the page reads MLflow again).

Revision ID: 0009
Revises: 0011 (numbered before it, merged after it: 0011 reached main first)
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "diff_snapshots",
        sa.Column(
            "request_id", sa.Integer, sa.ForeignKey("promote_requests.id", ondelete="CASCADE"), primary_key=True, nullable=False
        ),
        sa.Column("key", sa.String(64), nullable=True),
        sa.Column("data", sa.LargeBinary, nullable=True),
        sa.Column("raw_bytes", sa.Integer, nullable=False),
        sa.Column("taken_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("wanted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error", sa.Text, nullable=False),
    )
    op.create_index("ix_diff_snapshots_wanted", "diff_snapshots", ["wanted_at"])


def downgrade() -> None:
    op.drop_table("diff_snapshots")
