"""The tables: SQL is the source of truth for every run, step and attempt.

Times are naive UTC datetimes everywhere (``utcnow()``), so SQLite and
PostgreSQL store and compare them the same way.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    """The current time as a naive UTC datetime (how every row stores time)."""
    return datetime.now(UTC).replace(tzinfo=None)


def new_id() -> str:
    """A 32-hex-digit id that sorts by creation time (48-bit ms clock + 80 random bits)."""
    return f"{int(time.time() * 1000):012x}{os.urandom(10).hex()}"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dict[str, Any]: JSON, Any: JSON}


# Run statuses. ``needs_review`` is a pause; the last three are terminal.
RUN_QUEUED = "queued"
RUN_RUNNING = "running"
RUN_NEEDS_REVIEW = "needs_review"
RUN_SUCCEEDED = "succeeded"
RUN_FAILED = "failed"
RUN_CANCELLED = "cancelled"
RUN_ACTIVE = (RUN_QUEUED, RUN_RUNNING, RUN_NEEDS_REVIEW)
RUN_TERMINAL = (RUN_SUCCEEDED, RUN_FAILED, RUN_CANCELLED)

# Step statuses. ``ready`` waits for a worker (after ``not_before``), ``waiting``
# is a container (for-each, parallel, branch, sub-flow) waiting on its children.
STEP_READY = "ready"
STEP_RUNNING = "running"
STEP_WAITING = "waiting"
STEP_NEEDS_REVIEW = "needs_review"
STEP_SUCCEEDED = "succeeded"
STEP_SKIPPED = "skipped"
STEP_FAILED = "failed"
STEP_CANCELLED = "cancelled"
STEP_OPEN = (STEP_READY, STEP_RUNNING, STEP_WAITING, STEP_NEEDS_REVIEW)
STEP_DONE = (STEP_SUCCEEDED, STEP_SKIPPED)


class Run(Base):
    __tablename__ = "runs"
    __table_args__ = (
        UniqueConstraint("flow", "idempotency_key", name="uq_runs_flow_idempotency_key"),
        Index("ix_runs_status_created", "status", "created_at"),
        Index("ix_runs_flow_created", "flow", "created_at"),
        Index("ix_runs_flow_status", "flow", "status"),  # run counts of /metrics
        Index("ix_runs_status_finished", "status", "finished_at", "flow"),  # the dashboard
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    flow: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20), default=RUN_QUEUED)
    input: Mapped[Any] = mapped_column(JSON, nullable=True)
    output: Mapped[Any] = mapped_column(JSON, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    trigger: Mapped[str] = mapped_column(String(200), default="manual")
    idempotency_key: Mapped[str | None] = mapped_column(String(300), nullable=True)
    input_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    parent_run_id: Mapped[str | None] = mapped_column(
        String(32), ForeignKey("runs.id"), nullable=True, index=True
    )
    parent_step_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class Step(Base):
    """One node instance of a run: a step call, a for-each item, or a container."""

    __tablename__ = "steps"
    __table_args__ = (
        UniqueConstraint("run_id", "key", name="uq_steps_run_id_key"),
        Index("ix_steps_status_not_before", "status", "not_before"),
        Index("ix_steps_status_lease", "status", "lease_expires_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    run_id: Mapped[str] = mapped_column(String(32), ForeignKey("runs.id"), index=True)
    parent_id: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    key: Mapped[str] = mapped_column(String(500))
    node: Mapped[str] = mapped_column(String(200))
    item: Mapped[int | None] = mapped_column(Integer, nullable=True)
    kind: Mapped[str] = mapped_column(String(20), default="step")
    queue: Mapped[str] = mapped_column(String(50), default="default")
    status: Mapped[str] = mapped_column(String(20), default=STEP_READY)
    input: Mapped[Any] = mapped_column(JSON, nullable=True)
    output: Mapped[Any] = mapped_column(JSON, nullable=True)
    detail: Mapped[Any] = mapped_column(JSON, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    budget: Mapped[int] = mapped_column(Integer, default=0)
    losses: Mapped[int] = mapped_column(Integer, default=0)
    not_before: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    dispatched_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    lease_owner: Mapped[str | None] = mapped_column(String(200), nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    error_kind: Mapped[str | None] = mapped_column(String(50), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    completed_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class Attempt(Base):
    """One try of a step. A new row per attempt; never overwritten once finished."""

    __tablename__ = "attempts"
    __table_args__ = (UniqueConstraint("step_id", "number", name="uq_attempts_step_id_number"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    step_id: Mapped[str] = mapped_column(String(32), ForeignKey("steps.id"), index=True)
    run_id: Mapped[str] = mapped_column(String(32), index=True)
    number: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20), default="running")
    worker: Mapped[str | None] = mapped_column(String(200), nullable=True)
    idempotency_key: Mapped[str] = mapped_column(String(300))
    error_kind: Mapped[str | None] = mapped_column(String(50), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    started_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    #: indexed for the step durations of /metrics (attempts of the last hour)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True, index=True)


class Event(Base):
    """Append-only history of a run: who did what, when."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    run_id: Mapped[str] = mapped_column(String(32), index=True)
    step_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    kind: Mapped[str] = mapped_column(String(50))
    actor: Mapped[str | None] = mapped_column(String(200), nullable=True)
    data: Mapped[Any] = mapped_column(JSON, nullable=True)
    at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class ReviewItem(Base):
    """A paused step waiting for a person: why, and what they decided.

    ``version`` grows by one with every reviewer action; each action is one
    conditional UPDATE on (id, status open, version), so of two people acting
    at once one applies and the other is refused (see ``hub.reviews``).
    """

    __tablename__ = "review_items"
    __table_args__ = (
        Index("ix_review_items_status_created", "status", "created_at"),
        Index("ix_review_items_status_team_created", "status", "team", "created_at"),
        Index("ix_review_items_status_due", "status", "due_at"),
        Index("ix_review_items_assignee", "assignee_id", "status"),
        Index("ix_review_items_status_flow", "status", "flow", "due_at", "team"),  # the dashboard
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    run_id: Mapped[str] = mapped_column(String(32), ForeignKey("runs.id"), index=True)
    step_id: Mapped[str] = mapped_column(String(32), ForeignKey("steps.id"), index=True)
    flow: Mapped[str] = mapped_column(String(200))
    step_key: Mapped[str] = mapped_column(String(500))
    status: Mapped[str] = mapped_column(String(20), default="open")
    reason: Mapped[str] = mapped_column(String(50))
    error_class: Mapped[str | None] = mapped_column(String(200), nullable=True)
    message: Mapped[str] = mapped_column(Text, default="")
    input: Mapped[Any] = mapped_column(JSON, nullable=True)
    form_schema: Mapped[Any] = mapped_column(JSON, nullable=True)
    evidence: Mapped[Any] = mapped_column(JSON, nullable=True)
    resolution: Mapped[str | None] = mapped_column(String(50), nullable=True)
    resolved_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    note: Mapped[str | None] = mapped_column(Text, nullable=True)
    team: Mapped[str | None] = mapped_column(String(100), nullable=True)
    assignee_id: Mapped[str | None] = mapped_column(
        String(32), ForeignKey("users.id"), nullable=True
    )
    claimed_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    due_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    #: when the flow's escalation policy last acted on this overdue item, and how often
    escalated_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    escalations: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


# Roles, weakest first: each may do what the ones before it may.
ROLES = ("viewer", "reviewer", "operator", "admin")


class User(Base):
    """A person (or a service) who logs in to the web app or calls the API."""

    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint(f"role IN ({', '.join(map(repr, ROLES))})", name="ck_users_role"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Team(Base):
    __tablename__ = "teams"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(100), unique=True)


class UserTeam(Base):
    __tablename__ = "user_teams"

    user_id: Mapped[str] = mapped_column(String(32), ForeignKey("users.id"), primary_key=True)
    team_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("teams.id"), primary_key=True, index=True
    )


class WebSession(Base):
    """A login. ``id`` is the SHA-256 of the cookie's value, never the value itself."""

    __tablename__ = "web_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(32), ForeignKey("users.id"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime, index=True)


class ApiToken(Base):
    """A bearer token for the API; only its SHA-256 is stored."""

    __tablename__ = "api_tokens"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(String(32), ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class Artifact(Base):
    """A file of evidence kept with a review item: a screenshot, a Playwright trace,
    a page's HTML, a download. Stored in the database, so every web process of a
    scaled-out hub can serve it; capped in size by ``HUB_ARTIFACT_MAX_BYTES``."""

    __tablename__ = "artifacts"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    item_id: Mapped[str | None] = mapped_column(
        String(32), ForeignKey("review_items.id"), nullable=True, index=True
    )
    run_id: Mapped[str] = mapped_column(String(32), ForeignKey("runs.id"), index=True)
    step_id: Mapped[str] = mapped_column(String(32), ForeignKey("steps.id"))
    attempt: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(20))
    name: Mapped[str] = mapped_column(String(200))
    content_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int] = mapped_column(Integer)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class ReviewComment(Base):
    """A note a person left on a review item. Append-only."""

    __tablename__ = "review_comments"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    item_id: Mapped[str] = mapped_column(String(32), ForeignKey("review_items.id"), index=True)
    user_id: Mapped[str | None] = mapped_column(String(32), ForeignKey("users.id"), nullable=True)
    author: Mapped[str] = mapped_column(String(100))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class AuditEntry(Base):
    """Who did what to which object, when, with the state before and after. Append-only:
    the hub only ever inserts rows here (``hub.reviews.audit``)."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_object", "object_kind", "object_id", "id"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)
    actor: Mapped[str | None] = mapped_column(String(100), nullable=True)
    action: Mapped[str] = mapped_column(String(50))
    object_kind: Mapped[str] = mapped_column(String(50))
    object_id: Mapped[str] = mapped_column(String(64))
    before: Mapped[Any] = mapped_column(JSON, nullable=True)
    after: Mapped[Any] = mapped_column(JSON, nullable=True)


# ------------------------------------------------------------------ triggers
class WebhookDelivery(Base):
    """A verified request to ``POST /hooks/{hook}``, stored with the run it started.

    ``delivery_key`` is the provider's delivery id (``X-GitHub-Delivery``,
    ``webhook-id``, Stripe's event id) or, when the provider sends none, a
    hash of the signed time and the body: the unique ``(hook, delivery_key)``
    makes a redelivered or replayed request start no second run. The body is
    kept (up to the hook's ``max_body``) so an operator can replay it; the
    headers are kept without their signature and secret-looking values.
    """

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("hook", "delivery_key", name="uq_webhook_deliveries_hook_delivery_key"),
        Index("ix_webhook_deliveries_hook_received", "hook", "received_at"),
        # delivery counts of /metrics, from the index alone
        Index("ix_webhook_deliveries_hook_status", "hook", "status", "duplicates"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    hook: Mapped[str] = mapped_column(String(100))
    flow: Mapped[str] = mapped_column(String(200))
    delivery_key: Mapped[str] = mapped_column(String(200))
    run_id: Mapped[str | None] = mapped_column(
        String(32), ForeignKey("runs.id"), nullable=True, index=True
    )
    #: "accepted" (a run was started), "replayed" (started again by an operator)
    status: Mapped[str] = mapped_column(String(20), default="accepted")
    verified_by: Mapped[str | None] = mapped_column(String(50), nullable=True)
    content_type: Mapped[str | None] = mapped_column(String(200), nullable=True)
    size: Mapped[int] = mapped_column(Integer, default=0)
    headers: Mapped[Any] = mapped_column(JSON, nullable=True)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    source: Mapped[str | None] = mapped_column(String(64), nullable=True)
    duplicates: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    received_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    last_duplicate_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class WebhookRejection(Base):
    """Requests to a hook that were refused, counted per hook, reason and minute.

    Nothing of a refused request is kept but why, when and from where: a
    flood of forged requests adds at most one row a minute per reason.
    """

    __tablename__ = "webhook_rejections"
    __table_args__ = (
        UniqueConstraint(
            "hook", "reason", "minute", name="uq_webhook_rejections_hook_reason_minute"
        ),
        Index("ix_webhook_rejections_hook_minute", "hook", "minute"),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    hook: Mapped[str] = mapped_column(String(100))
    #: a short reason code: signature, timestamp, too_large, content_type, malformed, ...
    reason: Mapped[str] = mapped_column(String(50))
    minute: Mapped[datetime] = mapped_column(DateTime)
    count: Mapped[int] = mapped_column(Integer, default=1)
    status: Mapped[int] = mapped_column(Integer)
    last_detail: Mapped[str | None] = mapped_column(String(300), nullable=True)
    last_source: Mapped[str | None] = mapped_column(String(64), nullable=True)
    last_at: Mapped[datetime] = mapped_column(DateTime)


class ScheduleRow(Base):
    """A flow's ``Schedule`` declaration as the scheduler keeps it: its state lives here.

    The declaration in code says when (cron, zone, policies); this row says
    where the schedule is: paused or not, the last fire started and the next
    fire time (so a tick reads one indexed column instead of computing every
    schedule). ``key`` is ``flow:name``.
    """

    __tablename__ = "schedules"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    key: Mapped[str] = mapped_column(String(300), unique=True)
    flow: Mapped[str] = mapped_column(String(200))
    name: Mapped[str] = mapped_column(String(100))
    cron: Mapped[str] = mapped_column(String(200))
    tz: Mapped[str] = mapped_column(String(64))
    misfire: Mapped[str] = mapped_column(String(20))
    overlap: Mapped[str] = mapped_column(String(20))
    catch_up: Mapped[float] = mapped_column(Float)
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    paused_by: Mapped[str | None] = mapped_column(String(100), nullable=True)
    paused_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    #: false when the deployed flows no longer declare it (kept for its history)
    declared: Mapped[bool] = mapped_column(Boolean, default=True)
    last_fire_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    next_fire_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True, index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class ScheduleFire(Base):
    """One fire time of a schedule and what came of it.

    The unique ``(schedule_id, fire_time)`` is what makes a second scheduler
    harmless: both may compute the same fire, one insert wins.
    """

    __tablename__ = "schedule_fires"
    __table_args__ = (
        UniqueConstraint(
            "schedule_id", "fire_time", name="uq_schedule_fires_schedule_id_fire_time"
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    schedule_id: Mapped[str] = mapped_column(String(32), ForeignKey("schedules.id"))
    fire_time: Mapped[datetime] = mapped_column(DateTime)
    #: started, skipped (overlap forbid), replaced (earlier runs cancelled), missed
    #: (misfire), failed (the input was refused or the flow is not loaded; see reason)
    outcome: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str | None] = mapped_column(String(300), nullable=True)
    run_id: Mapped[str | None] = mapped_column(String(32), ForeignKey("runs.id"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Connection(Base):
    """A connection stored from the CLI or the web app (see :mod:`hub.connections`).

    ``config`` holds everything but the literal secret values, which are in
    ``secrets``: a Fernet token of their JSON, under ``HUB_SECRET_KEY``.
    """

    __tablename__ = "connections"

    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    config: Mapped[Any] = mapped_column(JSON)
    secrets: Mapped[str | None] = mapped_column(Text, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_by: Mapped[str] = mapped_column(String(100))
