"""API tokens (``checkpoint/tokens.py``): named, scoped, expiring secrets a user creates for a
pipeline. The secret itself is never stored, only its SHA-256 (``secret_hash``, unique: the
lookup of every token call) and a short ``hint`` to recognise it in a list.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("owner", sa.String(256), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("hint", sa.String(16), nullable=False),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("secret_hash", name="ux_api_tokens_secret_hash"),
    )
    op.create_index("ix_api_tokens_owner", "api_tokens", ["owner"])


def downgrade() -> None:
    op.drop_index("ix_api_tokens_owner", table_name="api_tokens")
    op.drop_table("api_tokens")
