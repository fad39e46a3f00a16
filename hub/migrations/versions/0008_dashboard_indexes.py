"""dashboard: indexes that answer its counts from the index alone

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-27 04:00:00

``runs (status, finished_at, flow)`` finds the runs that ended in the
dashboard's window by outcome and time (however long before the window they
were created), and counts the runs waiting for review per flow.
``review_items (status, flow, due_at, team)`` counts the open and overdue
items per flow, for everyone or for a reviewer's teams, without reading a row.
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_runs_status_finished", "runs", ["status", "finished_at", "flow"], unique=False
    )
    op.create_index(
        "ix_review_items_status_flow",
        "review_items",
        ["status", "flow", "due_at", "team"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_review_items_status_flow", table_name="review_items")
    op.drop_index("ix_runs_status_finished", table_name="runs")
