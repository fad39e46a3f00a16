"""dashboard: an index on the time a run ended

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-27 04:00:00

``runs (status, finished_at, flow)`` lets the dashboard find the runs that
ended in its window by outcome and time alone, from the index (no run row
read), however long before the window those runs were created.
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


def downgrade() -> None:
    op.drop_index("ix_runs_status_finished", table_name="runs")
