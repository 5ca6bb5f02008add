"""Behavioural diffs: ``behaviour_results``, one row per pair of model contents (the champion's
and the challenger's content digests, and what they were run on), so the same pair is never
scored twice. Each row is a small queue entry too: asked (``wanted_at``), claimed by one
worker (``claimed_at``, a lease), then done or failed with its reason.

Revision ID: 0014
Revises: 0011
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "behaviour_results",
        sa.Column("key", sa.String(64), primary_key=True, nullable=False),
        sa.Column("workspace", sa.String(256), nullable=False),
        sa.Column("champion", sa.JSON, nullable=True),
        sa.Column("challenger", sa.JSON, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("result", sa.JSON, nullable=True),
        sa.Column("wanted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_behaviour_results_wanted", "behaviour_results", ["wanted_at"])


def downgrade() -> None:
    op.drop_table("behaviour_results")
