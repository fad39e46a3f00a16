"""Actions a person (or the API) takes on a run: cancel, resume, skip, complete, abort.

Each action is one transaction that locks the run row first, so two people
acting on one run at once apply one after the other, and the second one is
checked against the state the first left (``RunStateError`` if it no longer
fits). The run goes on from the paused step; finished steps never run again.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import TypeAdapter
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from hub import models as m
from hub.errors import RunStateError
from hub.flow import Node, Step, validate
from hub.models import Attempt, ReviewItem, Run
from hub.runs import Dispatch, advance, event, form_model, lock_run, pause, review_policy

if TYPE_CHECKING:
    from hub.engine import Engine


def cancel(engine: Engine, s: Session, run_id: str, *, by: str | None, reason: str) -> None:
    """Stop a run that has not finished; nothing of it runs afterwards."""
    run = lock_run(s, run_id)
    if run.status in m.RUN_TERMINAL:
        raise RunStateError(f"run {run_id} is already {run.status}; there is nothing to cancel")
    close_run(engine, s, run, m.RUN_CANCELLED, reason, by, engine.clock())


def abort(engine: Engine, s: Session, run_id: str, *, by: str | None, reason: str) -> None:
    """End a run as failed (a reviewer gave up on it)."""
    run = lock_run(s, run_id)
    if run.status in m.RUN_TERMINAL:
        raise RunStateError(f"run {run_id} is already {run.status}; there is nothing to abort")
    close_run(engine, s, run, m.RUN_FAILED, reason, by, engine.clock())


def close_run(
    engine: Engine, s: Session, run: Run, status: str, reason: str, by: str | None, now: datetime
) -> None:
    run.status, run.error, run.finished_at = status, reason, now
    step_status = m.STEP_CANCELLED if status == m.RUN_CANCELLED else m.STEP_FAILED
    s.execute(
        update(m.Step)
        .where(m.Step.run_id == run.id, m.Step.status.in_(m.STEP_OPEN))
        .values(status=step_status, lease_owner=None, lease_expires_at=None, finished_at=now)
        .execution_options(synchronize_session=False)
    )
    s.execute(
        update(Attempt)
        .where(Attempt.run_id == run.id, Attempt.status == "running")
        .values(status=status, finished_at=now)
        .execution_options(synchronize_session=False)
    )
    s.execute(
        update(ReviewItem)
        .where(ReviewItem.run_id == run.id, ReviewItem.status == "open")
        .values(status="closed", resolution=status, resolved_by=by, resolved_at=now, note=reason)
        .execution_options(synchronize_session=False)
    )
    event(s, run.id, f"run.{status}", now, actor=by, data={"reason": reason})
    children = s.scalars(
        select(Run).where(Run.parent_run_id == run.id, Run.status.in_(m.RUN_ACTIVE))
    ).all()
    for child in children:
        close_run(
            engine,
            s,
            lock_run(s, child.id),
            m.RUN_CANCELLED,
            f"parent run {run.id} {status}",
            by,
            now,
        )
    if run.parent_step_id and run.parent_run_id:
        parent = lock_run(s, run.parent_run_id)
        prow = s.get(m.Step, run.parent_step_id)
        if parent.status in m.RUN_ACTIVE and prow is not None and prow.status == m.STEP_WAITING:
            pause(
                s,
                parent,
                prow,
                now,
                reason="subflow",
                message=f"sub-flow run {run.id} ({run.flow}) was {status}: {reason}",
                error_class=None,
                flow=review_policy(engine, parent),
            )


def waiting_step(s: Session, run: Run, key: str | None) -> m.Step:
    """The step of ``run`` waiting for review (the one named ``key`` if several)."""
    rows = s.scalars(
        select(m.Step).where(m.Step.run_id == run.id, m.Step.status == m.STEP_NEEDS_REVIEW)
    ).all()
    if key is not None:
        rows = [r for r in rows if r.key == key]
    if not rows:
        named = f" named {key!r}" if key else ""
        raise RunStateError(f"run {run.id} ({run.status}) has no step{named} waiting for review")
    if len(rows) > 1:
        keys = ", ".join(r.key for r in rows)
        raise RunStateError(
            f"run {run.id} has {len(rows)} steps waiting for review ({keys}); name one with --step"
        )
    return rows[0]


def _node_of(engine: Engine, run: Run, row: m.Step) -> Node:
    """The flow node a paused row runs; ``RunStateError`` if the deployed flow lost it."""
    from hub.engine import executable

    flow = engine.registry.get(run.flow)
    if row.node not in flow.nodes:
        raise RunStateError(
            f"flow {run.flow!r} has no node {row.node!r} any more (it changed since step "
            f"{row.key!r} paused); abort the run, or deploy the flow with that step again"
        )
    return executable(flow, row.node, row.item)


def _resolve(
    s: Session,
    run: Run,
    row: m.Step,
    resolution: str,
    by: str | None,
    note: str | None,
    now: datetime,
) -> None:
    s.execute(
        update(ReviewItem)
        .where(ReviewItem.step_id == row.id, ReviewItem.status == "open")
        .values(status="closed", resolution=resolution, resolved_by=by, resolved_at=now, note=note)
        .execution_options(synchronize_session=False)
    )
    s.flush()
    others = s.scalar(
        select(m.Step.id)
        .where(m.Step.run_id == run.id, m.Step.status == m.STEP_NEEDS_REVIEW, m.Step.id != row.id)
        .limit(1)
    )
    if others is None and run.status == m.RUN_NEEDS_REVIEW:
        run.status = m.RUN_RUNNING


def resume(
    engine: Engine, s: Session, run_id: str, *, step: str | None, input: Any, by: str | None
) -> list[Dispatch]:
    """Retry the paused step, with a fresh set of retries and optionally an edited input."""
    now = engine.clock()
    run = lock_run(s, run_id)
    row = waiting_step(s, run, step)
    node = _node_of(engine, run, row)
    resolution = "retried"
    if input is not None:
        if isinstance(node, Step):
            value = node.validate_input(input)
            input = node.input_adapter.dump_python(value, mode="json")
        event(
            s,
            run.id,
            "step.input_edited",
            now,
            step_id=row.id,
            actor=by,
            data={"before": row.input, "after": input},
        )
        row.input, resolution = input, "edited"
    retries = node.retries if isinstance(node, Step) else 0
    row.status, row.not_before, row.dispatched_at = m.STEP_READY, None, now
    row.budget, row.losses = row.attempts + retries + 1, 0
    _resolve(s, run, row, resolution, by, None, now)
    event(s, run.id, "step.resumed", now, step_id=row.id, actor=by)
    return [(row.id, row.queue, None)]


def skip(
    engine: Engine, s: Session, run_id: str, *, step: str | None, reason: str, by: str | None
) -> list[Dispatch]:
    """Skip the paused step: its input passes through as its output.

    A skipped for-each item is left out of the for-each's output list.
    """
    now = engine.clock()
    run = lock_run(s, run_id)
    row = waiting_step(s, run, step)
    _node_of(engine, run, row)
    row.status, row.output, row.finished_at, row.completed_by = m.STEP_SKIPPED, row.input, now, by
    _resolve(s, run, row, "skipped", by, reason, now)
    event(s, run.id, "step.skipped", now, step_id=row.id, actor=by, data={"reason": reason})
    created = advance(engine, s, run, engine.registry.get(run.flow), row, row.input, now)
    return [(r.id, r.queue, None) for r in created]


def complete(
    engine: Engine, s: Session, run_id: str, *, step: str | None, output: Any, by: str | None
) -> list[Dispatch]:
    """Finish the paused step by hand with ``output``.

    ``output`` is validated against the step's output model, or, when the
    step asked a question with ``NeedsReview(form=Model)``, against that form:
    the reviewer's answer is what the step returns.
    """
    now = engine.clock()
    run = lock_run(s, run_id)
    row = waiting_step(s, run, step)
    node = _node_of(engine, run, row)
    if not isinstance(node, Step):
        raise RunStateError(
            f"step {row.key!r} is a {node.kind}; only a plain step can be completed by hand"
        )
    item = s.scalar(
        select(ReviewItem).where(ReviewItem.step_id == row.id, ReviewItem.status == "open")
    )
    form = form_model(item.form_schema) if item is not None else None
    if form is not None:
        adapter: TypeAdapter[Any] = TypeAdapter(form)
        output = adapter.dump_python(
            validate(adapter, output, f"answer to step {row.key!r}"), mode="json"
        )
    else:
        output = node.dump_output(output)
    row.status, row.output, row.finished_at, row.completed_by = m.STEP_SUCCEEDED, output, now, by
    _resolve(s, run, row, "completed", by, None, now)
    event(
        s, run.id, "step.completed_by_hand", now, step_id=row.id, actor=by, data={"output": output}
    )
    created = advance(engine, s, run, engine.registry.get(run.flow), row, output, now)
    return [(r.id, r.queue, None) for r in created]
