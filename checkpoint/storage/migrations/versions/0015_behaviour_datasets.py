"""Behavioural diffs on evaluation datasets: ``behaviour_results`` gains ``evaluation`` (the
rule's ``evaluation:`` entries a diff runs on, as they were when it was asked for: the policy
may change before the background work runs it) and ``dataset_digest`` (set on the rows that
cache one dataset's scores, keyed by the champion's and challenger's content digests, the
dataset's digest and its policy entry, so the same pair is never scored twice on it).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("behaviour_results") as batch:
        batch.add_column(sa.Column("evaluation", sa.JSON, nullable=True))
        batch.add_column(sa.Column("dataset_digest", sa.String(64), nullable=True))
    op.create_index("ix_behaviour_results_dataset", "behaviour_results", ["dataset_digest"])


def downgrade() -> None:
    op.drop_index("ix_behaviour_results_dataset", table_name="behaviour_results")
    with op.batch_alter_table("behaviour_results") as batch:
        batch.drop_column("dataset_digest")
        batch.drop_column("evaluation")
