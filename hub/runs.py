"""State transitions of runs and steps. Each function works inside the caller's
transaction, so a step's output, the next step's row and the run's new state
commit together or not at all. The run row is locked first (``FOR UPDATE`` on
PostgreSQL; SQLite's ``BEGIN IMMEDIATE`` serialises writers already), so
parallel children, cancels and reviewer actions on one run never interleave.
"""

from __future__ import annotations

import hashlib
import json
import traceback
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from hub import models as m
from hub.errors import (
    IdempotencyConflict,
    NeedsReview,
    RequestInFlight,
    RunNotFound,
    classify,
)
from hub.flow import Branch, Flow, ForEach, Node, Parallel, Step, SubFlow
from hub.models import Attempt, Event, ReviewItem, Run, new_id

if TYPE_CHECKING:
    from hub.engine import Claim, Engine, Outcome, Started
    from hub.evidence import Evidence

Dispatch = tuple[str, str, float | None]


def event(
    s: Session,
    run_id: str,
    kind: str,
    now: datetime,
    *,
    step_id: str | None = None,
    actor: str | None = None,
    data: Any = None,
) -> None:
    s.add(Event(run_id=run_id, step_id=step_id, kind=kind, actor=actor, data=data, at=now))


def lock_run(s: Session, run_id: str) -> Run:
    run = s.execute(
        select(Run)
        .where(Run.id == run_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).scalar_one_or_none()
    if run is None:
        raise RunNotFound(f"no run with id {run_id!r}")
    return run


def input_hash(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


# --------------------------------------------------------------------- create
def create_run(
    engine: Engine,
    s: Session,
    flow: Flow,
    data: Any,
    *,
    trigger: str,
    key: str | None,
    parent: m.Step | None = None,
) -> tuple[Started, list[Dispatch]]:
    """Insert a run and its first row; dedupe on ``(flow, idempotency key)``."""
    from hub.engine import Started

    now = engine.clock()
    digest = input_hash(data)
    if key is not None:
        _hold_key(s, flow.name, key)
        existing = s.scalar(select(Run).where(Run.flow == flow.name, Run.idempotency_key == key))
        if existing is not None:
            if existing.input_hash != digest:
                raise IdempotencyConflict(
                    f"idempotency key {key!r} was used for run {existing.id} with another "
                    "input; send a new key for a new run"
                )
            return Started(existing.id, False), []
    run = Run(
        id=new_id(),
        flow=flow.name,
        status=m.RUN_QUEUED,
        input=data,
        trigger=trigger,
        idempotency_key=key,
        input_hash=digest,
        parent_run_id=parent.run_id if parent else None,
        parent_step_id=parent.id if parent else None,
        created_at=now,
    )
    s.add(run)
    first = new_row(s, run.id, flow.first, data, None, now)
    event(s, run.id, "run.created", now, data={"trigger": trigger})
    return Started(run.id, True), [(first.id, first.queue, None)]


def run_rows(
    flow: Flow, data: Any, *, trigger: str, now: datetime
) -> tuple[Started, list[Dispatch], dict[str, dict[str, Any]]]:
    """A new run of ``flow`` as the column values of its rows, by table: not yet sent.

    The same rows :func:`create_run` adds (without an idempotency key or a
    parent), for callers that send them with rows of their own in one round
    trip: the webhook intake joins them with its delivery row as data-modifying
    CTEs of one prebuilt statement on PostgreSQL.
    """
    from hub.engine import Started

    node = flow.first
    run_id, step_id = new_id(), new_id()
    budget = (node.retries + 1) if isinstance(node, Step) else 1
    rows = {
        "runs": {
            "id": run_id,
            "flow": flow.name,
            "status": m.RUN_QUEUED,
            "input": data,
            "trigger": trigger,
            "idempotency_key": None,
            "input_hash": input_hash(data),
            "created_at": now,
        },
        "steps": {
            "id": step_id,
            "run_id": run_id,
            "parent_id": None,
            "key": node.name,
            "node": node.name,
            "item": None,
            "kind": node.kind,
            "queue": node.queue,
            "status": m.STEP_READY,
            "input": data,
            "budget": budget,
            "attempts": 0,
            "losses": 0,
            "dispatched_at": now,
            "created_at": now,
        },
        "events": {
            "run_id": run_id,
            "kind": "run.created",
            "at": now,
            "data": {"trigger": trigger},
        },
    }
    return Started(run_id, True), [(step_id, node.queue, None)], rows


def _hold_key(s: Session, flow: str, key: str) -> None:
    """Take the key's lock for this transaction, or :class:`RequestInFlight` if another has it.

    On PostgreSQL a transaction-scoped advisory lock on a hash of (flow, key):
    a second request with the key while the first is still being handled is
    told so at once instead of waiting. SQLite runs one write at a time, so
    there the second simply waits for the first and gets its run.
    """
    if s.get_bind().dialect.name != "postgresql":
        return
    digest = hashlib.sha256(f"hub.run:{flow}:{key}".encode()).digest()
    lock = int.from_bytes(digest[:8], "big", signed=True)
    if not s.scalar(select(func.pg_try_advisory_xact_lock(lock))):
        raise RequestInFlight(
            f"a request with idempotency key {key!r} for flow {flow!r} is being handled "
            "right now; retry in a moment to get its run"
        )


def new_row(
    s: Session,
    run_id: str,
    node: Node,
    data: Any,
    parent: m.Step | None,
    now: datetime,
    *,
    item: int | None = None,
) -> m.Step:
    """Add a ready row for ``node`` (or item ``item`` of a for-each) under ``parent``."""
    target: Node
    if item is not None:
        assert parent is not None and isinstance(node, ForEach)
        key, target = f"{parent.key}[{item}]", node.do
    else:
        key = f"{parent.key}/{node.name}" if parent else node.name
        target = node
    row = m.Step(
        id=new_id(),
        run_id=run_id,
        parent_id=parent.id if parent else None,
        key=key,
        node=node.name,
        item=item,
        kind=target.kind,
        queue=target.queue,
        status=m.STEP_READY,
        input=data,
        budget=(target.retries + 1) if isinstance(target, Step) else 1,
        attempts=0,
        losses=0,
        dispatched_at=now,
        created_at=now,
    )
    s.add(row)
    return row


# -------------------------------------------------------------------- finish
def close_attempt(
    s: Session,
    step_id: str,
    number: int,
    status: str,
    now: datetime,
    *,
    kind: str | None = None,
    error: str | None = None,
) -> None:
    s.execute(
        update(Attempt)
        .where(Attempt.step_id == step_id, Attempt.number == number)
        .values(status=status, finished_at=now, error_kind=kind, error=error)
        .execution_options(synchronize_session=False)
    )


def _held(s: Session, engine: Engine, claim: Claim) -> tuple[Run, m.Step] | None:
    """Lock the run and return it with the step, if this claim still holds the lease."""
    run = lock_run(s, claim.run_id)
    row = s.get(m.Step, claim.step_id, populate_existing=True)
    if (
        row is None
        or row.status != m.STEP_RUNNING
        or row.lease_owner != claim.owner
        or run.status not in m.RUN_ACTIVE
    ):
        return None
    return run, row


def succeed(
    engine: Engine, s: Session, claim: Claim, node: Node, result: Any, inline: bool
) -> Outcome:
    """Store a step's output (or a container's expansion) and start what comes next."""
    from hub.engine import Outcome

    now = engine.clock()
    if isinstance(node, Step) and claim.item is None:
        from hub.fastpath import succeed_in_sequence

        fast = succeed_in_sequence(engine, s, claim, result, inline, now)
        if fast is not None:
            return fast
    held = _held(s, engine, claim)
    if held is None:
        close_attempt(s, claim.step_id, claim.attempt, "superseded", now)
        return Outcome()
    run, row = held
    flow = engine.registry.get(run.flow)
    close_attempt(s, row.id, claim.attempt, "succeeded", now)
    row.lease_owner = row.lease_expires_at = None
    row.error = row.error_kind = None
    if isinstance(node, Step):
        row.status, row.output, row.finished_at = m.STEP_SUCCEEDED, result, now
        created = advance(engine, s, run, flow, row, result, now)
    else:
        row.status = m.STEP_WAITING
        created = start_children(engine, s, run, flow, row, node, result, now)
    return _outcome(engine, s, claim, created, inline, now)


def _outcome(
    engine: Engine, s: Session, claim: Claim, created: list[m.Step], inline: bool, now: datetime
) -> Outcome:
    """Claim one new row on the same queue for this worker; publish the others."""
    from hub.engine import Outcome

    out = Outcome()
    for row in created:
        if inline and out.inline is None and row.queue == claim.queue:
            row.status, row.attempts, row.dispatched_at = m.STEP_RUNNING, 1, None
            row.lease_owner = claim.owner
            row.lease_expires_at = now + timedelta(seconds=engine.settings.lease_seconds)
            row.started_at = now
            run = s.get(Run, row.run_id)
            assert run is not None
            if run.status == m.RUN_QUEUED:  # a sub-flow's child run starting inline
                run.status, run.started_at = m.RUN_RUNNING, now
            out.inline = engine._open_attempt(s, run, row, claim.owner, now)
        else:
            out.dispatch.append((row.id, row.queue, None))
    return out


def advance(
    engine: Engine, s: Session, run: Run, flow: Flow, row: m.Step, output: Any, now: datetime
) -> list[m.Step]:
    """After ``row`` is done: create the next row, or finish its container or the run."""
    if row.item is not None:
        parent = s.get(m.Step, row.parent_id)
        assert parent is not None
        return _maybe_finish_foreach(engine, s, run, flow, parent, now)
    place = flow.places[row.node]
    parent = s.get(m.Step, row.parent_id) if row.parent_id else None
    if place.next is not None:
        return [new_row(s, run.id, flow.nodes[place.next], output, parent, now)]
    if parent is None:
        return finish_run(engine, s, run, output, now)
    container = flow.nodes[parent.node]
    if isinstance(container, Parallel):
        lasts = {b: seq[-1].name for b, seq in container.branches.items()}
        s.flush()
        done = s.execute(
            select(m.Step.node, m.Step.output).where(
                m.Step.parent_id == parent.id,
                m.Step.node.in_(list(lasts.values())),
                m.Step.status.in_(m.STEP_DONE),
            )
        ).all()
        if len(done) < len(lasts):
            return []
        outs = {r.node: r.output for r in done}
        return finish_container(
            engine, s, run, flow, parent, {b: outs[n] for b, n in lasts.items()}, now
        )
    return finish_container(engine, s, run, flow, parent, output, now)


def finish_container(
    engine: Engine, s: Session, run: Run, flow: Flow, row: m.Step, output: Any, now: datetime
) -> list[m.Step]:
    row.status, row.output, row.finished_at = m.STEP_SUCCEEDED, output, now
    return advance(engine, s, run, flow, row, output, now)


def _maybe_finish_foreach(
    engine: Engine, s: Session, run: Run, flow: Flow, parent: m.Step, now: datetime
) -> list[m.Step]:
    s.flush()
    still_open = s.scalar(
        select(func.count())
        .select_from(m.Step)
        .where(m.Step.parent_id == parent.id, m.Step.status.not_in(m.STEP_DONE))
    )
    if still_open:
        return []
    outs = s.scalars(
        select(m.Step.output)
        .where(m.Step.parent_id == parent.id, m.Step.status == m.STEP_SUCCEEDED)
        .order_by(m.Step.item)
    ).all()
    return finish_container(engine, s, run, flow, parent, list(outs), now)


def start_children(
    engine: Engine,
    s: Session,
    run: Run,
    flow: Flow,
    row: m.Step,
    node: Node,
    result: Any,
    now: datetime,
) -> list[m.Step]:
    """A container was expanded: create its first children (or finish it at once)."""
    if isinstance(node, SubFlow):
        child = engine.registry.get(node.flow)
        started, _ = create_run(
            engine, s, child, result, trigger=f"subflow:{run.id}", key=None, parent=row
        )
        row.detail = {"child_run": started.run_id}
        s.flush()
        first = s.scalars(select(m.Step).where(m.Step.run_id == started.run_id)).one()
        return [first]
    if isinstance(node, ForEach):
        row.detail = {"items": len(result)}
        if not result:
            return finish_container(engine, s, run, flow, row, [], now)
        return [new_row(s, run.id, node, item, row, now, item=i) for i, item in enumerate(result)]
    if isinstance(node, Parallel):
        return [new_row(s, run.id, seq[0], row.input, row, now) for seq in node.branches.values()]
    if isinstance(node, Branch):
        row.detail = {"case": result}
        seq = node.children()[result]
        if not seq:
            return finish_container(engine, s, run, flow, row, row.input, now)
        return [new_row(s, run.id, seq[0], row.input, row, now)]
    raise TypeError(f"cannot expand {node!r}")


def finish_run(engine: Engine, s: Session, run: Run, output: Any, now: datetime) -> list[m.Step]:
    """The last node is done: the run succeeded; a waiting parent run goes on."""
    run.status, run.output, run.finished_at = m.RUN_SUCCEEDED, output, now
    event(s, run.id, "run.succeeded", now)
    if run.parent_step_id and run.parent_run_id:
        parent_run = lock_run(s, run.parent_run_id)
        prow = s.get(m.Step, run.parent_step_id)
        if parent_run.status in m.RUN_ACTIVE and prow is not None and prow.status == m.STEP_WAITING:
            pflow = engine.registry.get(parent_run.flow)
            return finish_container(engine, s, parent_run, pflow, prow, output, now)
    return []


# ---------------------------------------------------------------------- fail
def fail(
    engine: Engine, s: Session, claim: Claim, exc: BaseException, evidence: Evidence | None = None
) -> Outcome:
    """A step raised: retry it later, or pause the run for review.

    ``evidence`` is what the attempt recorded; it is stored with the review
    item when the step goes to review, and dropped when it is retried.
    """
    from hub.engine import Outcome, executable

    now = engine.clock()
    kind = classify(exc)
    scrub = evidence.scrub if evidence is not None else str
    message = scrub(f"{type(exc).__name__}: {exc}")
    detail = scrub("".join(traceback.format_exception(exc))[-8000:])
    held = _held(s, engine, claim)
    if held is None:
        close_attempt(s, claim.step_id, claim.attempt, "superseded", now, kind=kind, error=detail)
        return Outcome()
    run, row = held
    close_attempt(s, row.id, claim.attempt, "failed", now, kind=kind, error=detail)
    row.lease_owner = row.lease_expires_at = None
    row.error_kind, row.error = kind, message
    policy = review_policy(engine, run)
    try:
        node: Node | None = executable(engine.registry.get(run.flow), row.node, row.item)
    except Exception:
        node = None
    if kind in ("transient", "error") and row.attempts < row.budget and node is not None:
        delay = engine.backoff(node, row.attempts, exc)
        row.status, row.not_before = m.STEP_READY, now + timedelta(seconds=delay)
        event(
            s,
            run.id,
            "step.retry",
            now,
            step_id=row.id,
            data={"in_s": round(delay, 3), "error": message},
        )
        if delay <= engine.settings.countdown_max:
            row.dispatched_at = row.not_before
            return Outcome(dispatch=[(row.id, row.queue, delay)])
        row.dispatched_at = None
        return Outcome()
    form = exc.form if isinstance(exc, NeedsReview) else None
    schema = form_schema(form) if form is not None else None
    pause(
        s,
        run,
        row,
        now,
        reason=kind,
        message=scrub(str(exc)) or message,
        error_class=_qualname(exc),
        form=schema,
        flow=policy,
        evidence=evidence,
        attempt=claim.attempt,
    )
    return Outcome()


FORM_REF = "x-hub-form"


def form_schema(form: Any) -> dict[str, Any]:
    """The JSON schema of a ``NeedsReview`` form, with where to import the model from."""
    from pydantic import TypeAdapter

    schema: dict[str, Any] = TypeAdapter(form).json_schema()
    schema[FORM_REF] = f"{form.__module__}:{form.__qualname__}"
    return schema


def form_model(schema: Any) -> Any:
    """The form model a review item's schema names, or None (no form, or not importable)."""
    import importlib

    ref = schema.get(FORM_REF) if isinstance(schema, dict) else None
    if not ref:
        return None
    module, _, qualname = ref.partition(":")
    try:
        target: Any = importlib.import_module(module)
        for part in qualname.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError):
        return None
    return target


def review_policy(engine: Engine, run: Run) -> Flow | None:
    """The run's flow, for its review policy (None when the registry no longer has it)."""
    try:
        return engine.registry.get(run.flow)
    except Exception:
        return None


def _qualname(exc: BaseException) -> str:
    cls = type(exc)
    return cls.__name__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def pause(
    s: Session,
    run: Run,
    row: m.Step,
    now: datetime,
    *,
    reason: str,
    message: str,
    error_class: str | None,
    form: Any = None,
    flow: Flow | None = None,
    evidence: Evidence | None = None,
    attempt: int | None = None,
) -> None:
    """Put a step in ``needs_review`` with a review item; the run pauses.

    ``flow``'s review policy gives the item its team and due time;
    ``evidence`` (of ``attempt``) is stored with the item: its facts as JSON,
    its files as ``artifacts`` rows.
    """
    row.status = m.STEP_NEEDS_REVIEW
    row.error_kind, row.error = reason, message
    row.lease_owner = row.lease_expires_at = None
    run_flow = run.flow
    due = flow.review_due if flow is not None else None
    item_id = new_id()
    s.add(
        ReviewItem(
            id=item_id,
            run_id=run.id,
            step_id=row.id,
            flow=run_flow,
            step_key=row.key,
            reason=reason,
            error_class=error_class,
            message=message,
            input=row.input,
            form_schema=form,
            evidence=evidence.record() if evidence is not None else None,
            created_at=now,
            team=flow.team if flow is not None else None,
            due_at=now + due if isinstance(due, timedelta) else None,
        )
    )
    if evidence is not None and evidence.files:
        s.flush()  # the item before the rows that point at it
        prefix = new_id()[:24]  # ids that sort in the order the step recorded the files
        for number, f in enumerate(evidence.files):
            s.add(
                m.Artifact(
                    id=f"{prefix}{number:08x}",
                    item_id=item_id,
                    run_id=run.id,
                    step_id=row.id,
                    attempt=attempt if attempt is not None else row.attempts,
                    kind=f.kind,
                    name=f.name,
                    content_type=f.content_type,
                    size=len(f.data),
                    data=f.data,
                    created_at=now,
                )
            )
    if run.status in (m.RUN_QUEUED, m.RUN_RUNNING):
        run.status = m.RUN_NEEDS_REVIEW
    event(
        s,
        run.id,
        "step.needs_review",
        now,
        step_id=row.id,
        data={"reason": reason, "message": message},
    )


def recover_lost(engine: Engine, s: Session, row: m.Step, now: datetime) -> bool:
    """The worker holding ``row`` died. Make it ready again, or pause it after too many losses.

    Returns True when the step is ready to run again.
    """
    from hub.engine import executable

    run = lock_run(s, row.run_id)
    res = s.execute(
        update(m.Step)
        .where(
            m.Step.id == row.id,
            m.Step.status == m.STEP_RUNNING,
            m.Step.lease_owner == row.lease_owner,
        )
        .values(lease_owner=None, lease_expires_at=None, losses=m.Step.losses + 1)
        .execution_options(synchronize_session=False)
    )
    if not res.rowcount:  # type: ignore[attr-defined]
        return False
    s.execute(
        update(Attempt)
        .where(Attempt.step_id == row.id, Attempt.status == "running")
        .values(
            status="lost",
            finished_at=now,
            error_kind="lost",
            error="the worker running it was lost",
        )
        .execution_options(synchronize_session=False)
    )
    s.refresh(row)
    try:
        node = executable(engine.registry.get(run.flow), row.node, row.item)
        limit = getattr(node, "max_losses", None) or engine.settings.max_losses
    except Exception:
        limit = engine.settings.max_losses
    if row.losses >= limit or run.status not in m.RUN_ACTIVE:
        if run.status not in m.RUN_ACTIVE:
            row.status = m.STEP_CANCELLED
            return False
        pause(
            s,
            run,
            row,
            now,
            reason="lost",
            message=(
                f"worker lost repeatedly ({row.losses} times) while running step {row.key!r}; "
                "the step may be crashing its own process"
            ),
            error_class="WorkerLost",
            flow=review_policy(engine, run),
        )
        return False
    row.status, row.not_before = m.STEP_READY, None
    row.budget += 1  # a lost attempt does not use up the step's retries
    event(s, run.id, "step.lost", now, step_id=row.id, data={"losses": row.losses})
    return True
