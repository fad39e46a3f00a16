"""Read models of runs for the CLI, the API and the web pages (read from SQL only)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from hub import models as m
from hub.errors import RunNotFound
from hub.models import Attempt, ReviewItem, Run


def iso(value: datetime | None) -> str | None:
    """A naive UTC time as ISO 8601 with milliseconds and ``Z``; None stays None."""
    return value.isoformat(timespec="milliseconds") + "Z" if value else None


def _ms(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return round((end - start).total_seconds() * 1000, 1)


def run_summary(run: Run) -> dict[str, Any]:
    return {
        "id": run.id,
        "flow": run.flow,
        "status": run.status,
        "trigger": run.trigger,
        "created_at": iso(run.created_at),
        "started_at": iso(run.started_at),
        "finished_at": iso(run.finished_at),
        "duration_ms": _ms(run.started_at or run.created_at, run.finished_at),
        "error": run.error,
        "parent_run_id": run.parent_run_id,
    }


def describe_run(s: Session, run_id: str, *, attempts: bool = False) -> dict[str, Any]:
    """The run with its input, output, every step and open review items."""
    run = s.get(Run, run_id)
    if run is None:
        raise RunNotFound(f"no run with id {run_id!r}; `hub runs` lists recent runs")
    steps = s.scalars(
        select(m.Step).where(m.Step.run_id == run_id).order_by(m.Step.created_at, m.Step.key)
    ).all()
    by_step: dict[str, list[dict[str, Any]]] = {}
    if attempts:
        for a in s.scalars(
            select(Attempt).where(Attempt.run_id == run_id).order_by(Attempt.number)
        ).all():
            by_step.setdefault(a.step_id, []).append(
                {
                    "number": a.number,
                    "status": a.status,
                    "worker": a.worker,
                    "idempotency_key": a.idempotency_key,
                    "error_kind": a.error_kind,
                    "started_at": iso(a.started_at),
                    "duration_ms": _ms(a.started_at, a.finished_at),
                }
            )
    reviews = s.scalars(
        select(ReviewItem).where(ReviewItem.run_id == run_id).order_by(ReviewItem.created_at)
    ).all()
    out = run_summary(run)
    out.update(
        input=run.input,
        output=run.output,
        children=[c.id for c in s.scalars(select(Run).where(Run.parent_run_id == run_id)).all()],
        steps=[
            {
                "key": st.key,
                "kind": st.kind,
                "queue": st.queue,
                "status": st.status,
                "attempts": st.attempts,
                "started_at": iso(st.started_at),
                "finished_at": iso(st.finished_at),
                "duration_ms": _ms(st.started_at, st.finished_at),
                "input": st.input,
                "output": st.output,
                "error": st.error,
                "error_kind": st.error_kind,
                "completed_by": st.completed_by,
                "detail": st.detail,
                **({"attempt_log": by_step.get(st.id, [])} if attempts else {}),
            }
            for st in steps
        ],
        reviews=[
            {
                "id": r.id,
                "step": r.step_key,
                "status": r.status,
                "reason": r.reason,
                "message": r.message,
                "resolution": r.resolution,
                "resolved_by": r.resolved_by,
            }
            for r in reviews
        ],
    )
    return out


def list_runs(
    s: Session, *, limit: int = 20, flow: str | None = None, status: str | None = None
) -> list[dict[str, Any]]:
    q = select(Run).order_by(Run.created_at.desc()).limit(limit)
    if flow:
        q = q.where(Run.flow == flow)
    if status:
        q = q.where(Run.status == status)
    return [run_summary(r) for r in s.scalars(q).all()]
