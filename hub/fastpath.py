"""The hot path: a plain step done and the next plain step of its sequence created.

Most steps of most flows take this path, so it runs a handful of prebuilt
Core statements instead of the ORM (building a statement costs more than
running it). It keeps the general path's guarantees, in ``hub/runs.py``: the
run row is locked, the step is updated only while the claim holds its lease,
and the output, the next row and its attempt commit together. When anything
is unusual it changes nothing and returns None, and the general path decides.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Table, bindparam, insert, select, update

from hub import models as m
from hub.flow import Step
from hub.models import Attempt, Run, new_id

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from hub.engine import Claim, Engine, Outcome

_steps = cast(Table, m.Step.__table__)
_attempts = cast(Table, Attempt.__table__)
_runs = cast(Table, Run.__table__)
# Built once: the hot path only binds values (building statements costs more than running them).
# the run row is locked (so a cancel or a reviewer's action waits for this commit) in
# the same statement that checks the lease and stores the output
# (a sub-select, not a CTE: sqlite3 reports no rowcount for a statement starting WITH)
_ACTIVE_RUN = (
    select(_runs.c.id)
    .where(_runs.c.id == bindparam("b_run"), _runs.c.status.in_(m.RUN_ACTIVE))
    .with_for_update()
)
STEP_DONE = (
    update(_steps)
    .where(
        _steps.c.id == bindparam("b_step"),
        _steps.c.status == m.STEP_RUNNING,
        _steps.c.lease_owner == bindparam("b_owner"),
        _steps.c.run_id.in_(_ACTIVE_RUN),
    )
    .values(
        status=m.STEP_SUCCEEDED,
        output=bindparam("b_output", type_=_steps.c.output.type),
        finished_at=bindparam("b_now", type_=_steps.c.finished_at.type),
        lease_owner=None,
        lease_expires_at=None,
        error=None,
        error_kind=None,
    )
)
_ATTEMPT_DONE = (
    update(_attempts)
    .where(_attempts.c.step_id == bindparam("b_step"), _attempts.c.number == bindparam("b_n"))
    .values(status="succeeded", finished_at=bindparam("b_now", type_=_attempts.c.finished_at.type))
)
_NEW_STEP = insert(_steps)
_NEW_ATTEMPT = insert(_attempts)


def succeed_in_sequence(
    engine: Engine, s: Session, claim: Claim, output: Any, inline: bool, now: datetime
) -> Outcome | None:
    """The common case in a few Core statements: a step done, the next plain step created.

    Same rows and the same locking as the general path (run row locked, the
    step updated only while this claim holds its lease); returns None, having
    changed nothing, whenever the general path must decide.
    """
    from hub.engine import Claim, Outcome, idempotency_key

    flow = engine.registry.get(claim.flow)
    nxt = flow.nodes.get(flow.places[claim.node].next or "")
    if not isinstance(nxt, Step):
        return None
    conn = s.connection()
    done = conn.execute(
        STEP_DONE,
        {
            "b_run": claim.run_id,
            "b_step": claim.step_id,
            "b_owner": claim.owner,
            "b_output": output,
            "b_now": now,
        },
    )
    if not done.rowcount:
        return None
    conn.execute(_ATTEMPT_DONE, {"b_step": claim.step_id, "b_n": claim.attempt, "b_now": now})
    parent_key, _, _ = claim.key.rpartition("/")
    key = f"{parent_key}/{nxt.name}" if parent_key else nxt.name
    here = inline and nxt.queue == claim.queue
    next_id = new_id()
    conn.execute(
        _NEW_STEP,
        {
            "id": next_id,
            "run_id": claim.run_id,
            "parent_id": claim.parent_id,
            "key": key,
            "node": nxt.name,
            "item": None,
            "kind": nxt.kind,
            "queue": nxt.queue,
            "status": m.STEP_RUNNING if here else m.STEP_READY,
            "input": output,
            "output": None,
            "detail": None,
            "budget": nxt.retries + 1,
            "attempts": 1 if here else 0,
            "losses": 0,
            "not_before": None,
            "dispatched_at": None if here else now,
            "lease_owner": claim.owner if here else None,
            "lease_expires_at": (
                now + timedelta(seconds=engine.settings.lease_seconds) if here else None
            ),
            "error_kind": None,
            "error": None,
            "completed_by": None,
            "created_at": now,
            "started_at": now if here else None,
            "finished_at": None,
        },
    )
    if not here:
        return Outcome(dispatch=[(next_id, nxt.queue, None)])
    conn.execute(
        _NEW_ATTEMPT,
        {
            "id": new_id(),
            "step_id": next_id,
            "run_id": claim.run_id,
            "number": 1,
            "status": "running",
            "worker": claim.owner,
            "idempotency_key": idempotency_key(claim.run_id, key),
            "error_kind": None,
            "error": None,
            "started_at": now,
            "finished_at": None,
        },
    )
    return Outcome(
        inline=Claim(
            step_id=next_id,
            run_id=claim.run_id,
            flow=claim.flow,
            key=key,
            node=nxt.name,
            item=None,
            kind=nxt.kind,
            queue=nxt.queue,
            input=output,
            attempt=1,
            run_input=claim.run_input,
            owner=claim.owner,
            parent_id=claim.parent_id,
        )
    )
