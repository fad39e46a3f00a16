"""metrics: indexes that keep a /metrics scrape to index reads

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27 10:00:00

``runs (flow, status)`` and ``webhook_deliveries (hook, status, duplicates)``
answer the counts by flow and by hook from the index alone (no JSON inputs,
outputs or bodies read); ``attempts (finished_at)`` finds the attempts of
the last hour for the step duration histogram.
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_runs_flow_status", "runs", ["flow", "status"], unique=False)
    op.create_index(op.f("ix_attempts_finished_at"), "attempts", ["finished_at"], unique=False)
    op.create_index(
        "ix_webhook_deliveries_hook_status",
        "webhook_deliveries",
        ["hook", "status", "duplicates"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_webhook_deliveries_hook_status", table_name="webhook_deliveries")
    op.drop_index(op.f("ix_attempts_finished_at"), table_name="attempts")
    op.drop_index("ix_runs_flow_status", table_name="runs")
