"""Every change of a request as a row: ``request_changes`` (one row for a single-change request,
one per change of a batch, in apply order), so lists, filters, the visibility filter and "which
open requests promote this version" see a batch's every change, not only its first
(``promote_requests`` keeps the first change's model and target in its own columns). Existing
requests are indexed here.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "request_changes",
        sa.Column("request_id", sa.Integer, sa.ForeignKey("promote_requests.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("position", sa.Integer, primary_key=True),
        sa.Column("workspace", sa.String(256), nullable=False, server_default=""),
        sa.Column("model_name", sa.String(512), nullable=False),
        sa.Column("target", sa.String(600), nullable=False),
        sa.Column("challenger_model", sa.String(512), nullable=True),
        sa.Column("challenger_version", sa.String(64), nullable=True),
    )
    op.create_index("ix_request_changes_model", "request_changes", ["workspace", "model_name", "request_id"])
    op.create_index("ix_request_changes_target", "request_changes", ["target", "request_id"])
    op.create_index("ix_request_changes_challenger", "request_changes", ["workspace", "challenger_model", "challenger_version"])
    _backfill()


def _backfill() -> None:
    """One row per change of every request stored so far (the rows ``Store`` writes from now on)."""
    from checkpoint.storage.change_index import index_rows  # the one definition of a row

    conn = op.get_bind()
    requests = sa.table(
        "promote_requests",
        sa.column("id", sa.Integer),
        sa.column("workspace", sa.String),
        sa.column("model_name", sa.String),
        sa.column("target", sa.String),
        sa.column("challenger", sa.JSON),
        sa.column("changes", sa.JSON),
    )
    index = sa.table(
        "request_changes",
        sa.column("request_id", sa.Integer),
        sa.column("position", sa.Integer),
        sa.column("workspace", sa.String),
        sa.column("model_name", sa.String),
        sa.column("target", sa.String),
        sa.column("challenger_model", sa.String),
        sa.column("challenger_version", sa.String),
    )
    last = 0
    while True:  # a page at a time: a large history is not read into memory at once
        page = conn.execute(sa.select(requests).where(requests.c.id > last).order_by(requests.c.id).limit(500)).all()
        if not page:
            return
        rows = [
            {"request_id": r.id, **row}
            for r in page
            for row in index_rows(r.workspace, r.model_name, r.target, r.challenger, r.changes)
        ]
        conn.execute(index.insert(), rows)
        last = page[-1].id


def downgrade() -> None:
    op.drop_table("request_changes")
