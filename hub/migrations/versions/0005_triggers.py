"""triggers: webhook deliveries and rejections, schedules and their fires

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26 12:08:48.362773
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "schedules",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("key", sa.String(length=300), nullable=False),
        sa.Column("flow", sa.String(length=200), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("cron", sa.String(length=200), nullable=False),
        sa.Column("tz", sa.String(length=64), nullable=False),
        sa.Column("misfire", sa.String(length=20), nullable=False),
        sa.Column("overlap", sa.String(length=20), nullable=False),
        sa.Column("catch_up", sa.Float(), nullable=False),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("paused_by", sa.String(length=100), nullable=True),
        sa.Column("paused_at", sa.DateTime(), nullable=True),
        sa.Column("declared", sa.Boolean(), nullable=False),
        sa.Column("last_fire_at", sa.DateTime(), nullable=True),
        sa.Column("next_fire_at", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_schedules")),
        sa.UniqueConstraint("key", name=op.f("uq_schedules_key")),
    )
    with op.batch_alter_table("schedules", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_schedules_next_fire_at"), ["next_fire_at"], unique=False
        )

    op.create_table(
        "webhook_rejections",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("hook", sa.String(length=100), nullable=False),
        sa.Column("reason", sa.String(length=50), nullable=False),
        sa.Column("minute", sa.DateTime(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("last_detail", sa.String(length=300), nullable=True),
        sa.Column("last_source", sa.String(length=64), nullable=True),
        sa.Column("last_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_rejections")),
        sa.UniqueConstraint(
            "hook", "reason", "minute", name="uq_webhook_rejections_hook_reason_minute"
        ),
    )
    with op.batch_alter_table("webhook_rejections", schema=None) as batch_op:
        batch_op.create_index("ix_webhook_rejections_hook_minute", ["hook", "minute"], unique=False)

    op.create_table(
        "schedule_fires",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("schedule_id", sa.String(length=32), nullable=False),
        sa.Column("fire_time", sa.DateTime(), nullable=False),
        sa.Column("outcome", sa.String(length=20), nullable=False),
        sa.Column("reason", sa.String(length=300), nullable=True),
        sa.Column("run_id", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_schedule_fires_run_id_runs")
        ),
        sa.ForeignKeyConstraint(
            ["schedule_id"], ["schedules.id"], name=op.f("fk_schedule_fires_schedule_id_schedules")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_schedule_fires")),
        sa.UniqueConstraint(
            "schedule_id", "fire_time", name="uq_schedule_fires_schedule_id_fire_time"
        ),
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("hook", sa.String(length=100), nullable=False),
        sa.Column("flow", sa.String(length=200), nullable=False),
        sa.Column("delivery_key", sa.String(length=200), nullable=False),
        sa.Column("run_id", sa.String(length=32), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("verified_by", sa.String(length=50), nullable=True),
        sa.Column("content_type", sa.String(length=200), nullable=True),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("headers", sa.JSON(), nullable=True),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=True),
        sa.Column("duplicates", sa.Integer(), server_default="0", nullable=False),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.Column("last_duplicate_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_webhook_deliveries_run_id_runs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_deliveries")),
        sa.UniqueConstraint("hook", "delivery_key", name="uq_webhook_deliveries_hook_delivery_key"),
    )
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.create_index(
            "ix_webhook_deliveries_hook_received", ["hook", "received_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_webhook_deliveries_run_id"), ["run_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_webhook_deliveries_run_id"))
        batch_op.drop_index("ix_webhook_deliveries_hook_received")

    op.drop_table("webhook_deliveries")
    op.drop_table("schedule_fires")
    with op.batch_alter_table("webhook_rejections", schema=None) as batch_op:
        batch_op.drop_index("ix_webhook_rejections_hook_minute")

    op.drop_table("webhook_rejections")
    with op.batch_alter_table("schedules", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_schedules_next_fire_at"))

    op.drop_table("schedules")
