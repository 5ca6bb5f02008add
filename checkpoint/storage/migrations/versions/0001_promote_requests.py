"""Promote requests, reviews, comments and the event log.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "promote_requests",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("model_name", sa.String(512), nullable=False),
        sa.Column("version", sa.String(64)),
        sa.Column("target", sa.String(600), nullable=False),
        sa.Column("change", sa.JSON, nullable=False),
        sa.Column("title", sa.String(300), nullable=False),
        sa.Column("description", sa.Text, nullable=False, server_default=""),
        sa.Column("author", sa.String(256), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("state_reason", sa.Text, nullable=False, server_default=""),
        sa.Column("challenger", sa.JSON, nullable=False),
        sa.Column("champion", sa.JSON),
        sa.Column("dedupe_key", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("applied_at", sa.DateTime(timezone=True)),
        sa.Column("apply_result", sa.Text, nullable=False, server_default=""),
    )
    op.create_index("ix_requests_state_id", "promote_requests", ["state", "id"])
    op.create_index("ix_requests_model_id", "promote_requests", ["model_name", "id"])
    op.create_index("ix_requests_author_id", "promote_requests", ["author", "id"])
    op.create_index("ix_requests_target_id", "promote_requests", ["target", "id"])
    op.create_index(
        "ux_requests_open_dedupe",
        "promote_requests",
        ["dedupe_key"],
        unique=True,
        sqlite_where=sa.text("state = 'open'"),
        postgresql_where=sa.text("state = 'open'"),
    )
    op.create_table(
        "reviews",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.Integer, sa.ForeignKey("promote_requests.id", ondelete="CASCADE"), nullable=False),
        sa.Column("reviewer", sa.String(256), nullable=False),
        sa.Column("verdict", sa.String(16), nullable=False),
        sa.Column("comment", sa.Text, nullable=False, server_default=""),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("dismissed_at", sa.DateTime(timezone=True)),
        sa.Column("dismissed_reason", sa.Text, nullable=False, server_default=""),
    )
    op.create_index("ix_reviews_request_id", "reviews", ["request_id"])
    op.create_table(
        "comments",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.Integer, sa.ForeignKey("promote_requests.id", ondelete="CASCADE"), nullable=False),
        sa.Column("author", sa.String(256), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_comments_request_id", "comments", ["request_id"])
    op.create_table(
        "events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.Integer, sa.ForeignKey("promote_requests.id")),
        sa.Column("model_name", sa.String(512), nullable=False),
        sa.Column("kind", sa.String(48), nullable=False),
        sa.Column("actor", sa.String(256), nullable=False),
        sa.Column("data", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_events_request_id", "events", ["request_id"])
    op.create_index("ix_events_model_name", "events", ["model_name"])


def downgrade() -> None:
    op.drop_table("events")
    op.drop_table("comments")
    op.drop_table("reviews")
    op.drop_table("promote_requests")
