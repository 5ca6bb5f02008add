"""Named reviewers and the policy rule a request was opened under.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("promote_requests") as batch:
        batch.add_column(sa.Column("named_reviewers", sa.JSON, nullable=False, server_default="[]"))
        batch.add_column(sa.Column("rule_name", sa.String(200), nullable=False, server_default="default"))


def downgrade() -> None:
    with op.batch_alter_table("promote_requests") as batch:
        batch.drop_column("rule_name")
        batch.drop_column("named_reviewers")
