"""The engine: a state machine over SQL rows. It knows nothing of Celery.

A step row moves ``ready -> running -> succeeded`` (or back to ``ready`` for a
retry, or to ``needs_review``). A worker calls :meth:`Engine.execute` with a
step id; the engine takes the step's lease with one conditional UPDATE, runs
the step, then in ONE transaction stores the output, creates the next rows
and finishes containers and runs. Only after that commit does it hand the
new rows to the ``publish`` callback (Celery in production, a list in tests).

A lost publish only delays a step: :meth:`Engine.tick` (the reconciler)
re-publishes ready rows whose message was not taken, and frees leases whose
worker died. Consecutive steps on the same queue run in the same worker
without a broker round trip, each committed before the next starts.
"""

from __future__ import annotations

import asyncio
import logging
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pydantic_core import to_jsonable_python
from sqlalchemy import exists, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hub import control, logs
from hub import models as m
from hub.connections import Connectors
from hub.context import Service, StepContext
from hub.errors import (
    BusinessError,
    InvalidInput,
    NeedsReview,
    TransientError,
    classify,
)
from hub.evidence import Evidence
from hub.flow import Branch, Flow, ForEach, Node, Step, SubFlow
from hub.lease import Heartbeat, owner_is_dead, worker_identity
from hub.models import Attempt, Event, ReviewItem, Run, utcnow
from hub.registry import Registry
from hub.settings import Settings
from hub.store import Store

Publish = Callable[[str, str, float | None], None]
"""``publish(step_id, queue, countdown_seconds)``: hand a ready step to a worker."""


@dataclass
class Claim:
    """A step this process holds the lease of, with what it needs to run it."""

    step_id: str
    run_id: str
    flow: str
    key: str
    node: str
    item: int | None
    kind: str
    queue: str
    input: Any
    attempt: int
    run_input: Any
    owner: str
    parent_id: str | None = None


@dataclass
class Outcome:
    """What finishing a step produced: at most one step to run inline, the rest to publish."""

    inline: Claim | None = None
    dispatch: list[tuple[str, str, float | None]] = field(default_factory=list)


@dataclass
class Started:
    run_id: str
    created: bool


class Engine:
    """Runs flows durably. Build one per process with a store, registry and publish callback."""

    def __init__(
        self,
        store: Store,
        registry: Registry,
        publish: Publish,
        settings: Settings | None = None,
        *,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.registry = registry
        self.publish = publish
        self.settings = settings or Settings()
        self.clock = clock
        self._heartbeat = Heartbeat(self)
        #: what this process lends to steps (``ctx.connector``, ``ctx.browser``,
        #: ``ctx.desktop``); see :class:`hub.context.Service`. Every process has the
        #: connectors; workers of the browser and desktop queues add theirs.
        self.services: dict[str, Service] = {"connectors": Connectors(self.settings, store)}

    # ------------------------------------------------------------------ start
    def start_run(
        self,
        flow_name: str,
        input: Any,
        *,
        trigger: str = "manual",
        idempotency_key: str | None = None,
    ) -> Started:
        """Create a run and its first step; publish it. Validates before writing.

        Raises ``FlowNotFound``, ``InvalidInput``, or ``IdempotencyConflict``
        (same key, other input). With a known key and the same input, returns
        the existing run with ``created=False``.
        """
        from hub.runs import create_run

        flow = self.registry.get(flow_name)
        data = flow.validate_input(input)

        def create(s: Session) -> tuple[Started, list[Any]]:
            return create_run(self, s, flow, data, trigger=trigger, key=idempotency_key)

        try:
            started, dispatch = self.store.run(create)
        except IntegrityError:
            if idempotency_key is None:
                raise
            started, dispatch = self.store.run(create)  # lost a race on the key: read the winner
        self.dispatch(dispatch)
        return started

    # ---------------------------------------------------------------- control
    def cancel(self, run_id: str, *, by: str | None = None, reason: str = "cancelled") -> None:
        """Cancel a run that has not finished; its queued steps will not run."""
        self.store.run(lambda s: control.cancel(self, s, run_id, by=by, reason=reason))

    def abort(self, run_id: str, *, by: str | None = None, reason: str = "aborted") -> None:
        """End a run as failed; open review items close."""
        self.store.run(lambda s: control.abort(self, s, run_id, by=by, reason=reason))

    def resume(
        self, run_id: str, *, step: str | None = None, input: Any = None, by: str | None = None
    ) -> None:
        """Retry the step waiting for review, optionally with edited input (validated)."""
        self.dispatch(
            self.store.run(lambda s: control.resume(self, s, run_id, step=step, input=input, by=by))
        )

    def skip(
        self, run_id: str, *, step: str | None = None, reason: str = "", by: str | None = None
    ) -> None:
        """Skip the step waiting for review; its input passes through as output."""
        self.dispatch(
            self.store.run(lambda s: control.skip(self, s, run_id, step=step, reason=reason, by=by))
        )

    def complete(
        self, run_id: str, output: Any, *, step: str | None = None, by: str | None = None
    ) -> None:
        """Finish the step waiting for review by hand with ``output`` (validated)."""
        self.dispatch(
            self.store.run(
                lambda s: control.complete(self, s, run_id, step=step, output=output, by=by)
            )
        )

    # ---------------------------------------------------------------- execute
    def execute(self, step_id: str) -> None:
        """Run a published step, then any following steps inline; the worker's entry point.

        Does nothing when the step is not ready (a duplicate delivery, a
        cancelled run, a retry not yet due): the live lease or state wins.
        """
        claim = self.claim(step_id) or self.claim_interrupted(step_id)
        budget = self.settings.inline_steps
        ran = claim is not None
        while claim is not None:
            outcome = self.run_claimed(claim, inline=budget > 0)
            budget -= 1
            self.dispatch(outcome.dispatch)
            claim = outcome.inline
        if ran:
            self.idle()

    def idle(self) -> None:
        """Let the services prepare for the next step (see :class:`hub.context.Service`)."""
        for name, service in self.services.items():
            prepare = getattr(service, "idle", None)
            if prepare is None:
                continue
            try:
                prepare()
            except Exception:
                logging.getLogger("hub.engine").exception(
                    "the %s service failed to prepare for the next step", name
                )

    def claim(self, step_id: str) -> Claim | None:
        """Take the lease of a ready step by conditional UPDATE; None if not ours to run."""
        owner = worker_identity()
        return self.store.run(lambda s: self._claim(s, step_id, owner))

    def claim_interrupted(self, step_id: str) -> Claim | None:
        """Take over a step of ``step_id``'s run that a dead process was running inline.

        Steps run inline have no message of their own. When the process
        running such a chain dies (``kill -9``, OOM), the broker redelivers
        the message of the chain's first step, which is done by then. A step
        of that run (or of a sub-flow run it started) on the same queue still
        leased to a process that no longer exists is recovered and claimed
        here, instead of waiting for its lease to expire. None when there is
        nothing to take over.
        """
        with self.store.read() as s:
            first = s.execute(
                select(m.Step.run_id, m.Step.queue).where(m.Step.id == step_id)
            ).first()
            if first is None:
                return None
            children = select(Run.id).where(Run.parent_run_id == first.run_id)
            rows = s.execute(
                select(m.Step.id, m.Step.lease_owner).where(
                    m.Step.status == m.STEP_RUNNING,
                    m.Step.queue == first.queue,
                    or_(m.Step.run_id == first.run_id, m.Step.run_id.in_(children)),
                )
            ).all()
        for row in rows:
            if owner_is_dead(row.lease_owner):
                claim = self.claim(row.id)
                if claim is not None:
                    return claim
        return None

    def _claim(self, s: Session, step_id: str, owner: str) -> Claim | None:
        now = self.clock()
        if not self._take_lease(s, step_id, owner, now):
            row = s.get(m.Step, step_id)
            if row is None or row.status != m.STEP_RUNNING:
                return None
            if not (owner_is_dead(row.lease_owner) or _expired(row, now)):
                return None
            from hub.runs import recover_lost

            if not recover_lost(self, s, row, now):
                return None
            if not self._take_lease(s, step_id, owner, now):
                return None
        row = s.get(m.Step, step_id, populate_existing=True)
        assert row is not None
        run = s.get(Run, row.run_id)
        assert run is not None
        if run.status == m.RUN_QUEUED:
            run.status, run.started_at = m.RUN_RUNNING, now
        return self._open_attempt(s, run, row, owner, now)

    def _take_lease(self, s: Session, step_id: str, owner: str, now: datetime) -> bool:
        active = exists().where(Run.id == m.Step.run_id, Run.status.in_(m.RUN_ACTIVE))
        res = s.execute(
            update(m.Step)
            .where(
                m.Step.id == step_id,
                m.Step.status == m.STEP_READY,
                or_(m.Step.not_before.is_(None), m.Step.not_before <= now),
                active,
            )
            .values(
                status=m.STEP_RUNNING,
                lease_owner=owner,
                lease_expires_at=now + timedelta(seconds=self.settings.lease_seconds),
                attempts=m.Step.attempts + 1,
                dispatched_at=None,
                started_at=func.coalesce(m.Step.started_at, now),
            )
            .execution_options(synchronize_session=False)
        )
        return bool(res.rowcount)  # type: ignore[attr-defined]

    def _open_attempt(self, s: Session, run: Run, row: m.Step, owner: str, now: datetime) -> Claim:
        s.flush()  # the step row first: attempts refer to it
        s.add(
            Attempt(
                step_id=row.id,
                run_id=row.run_id,
                number=row.attempts,
                worker=owner,
                idempotency_key=idempotency_key(row.run_id, row.key),
                started_at=now,
            )
        )
        return Claim(
            step_id=row.id,
            run_id=row.run_id,
            flow=run.flow,
            key=row.key,
            node=row.node,
            item=row.item,
            kind=row.kind,
            queue=row.queue,
            input=row.input,
            attempt=row.attempts,
            run_input=run.input,
            owner=owner,
            parent_id=row.parent_id,
        )

    def run_claimed(self, claim: Claim, *, inline: bool = True) -> Outcome:
        """Run a claimed step or expand a container, then store the result."""
        from hub import runs

        evidence = Evidence()
        try:
            flow = self.registry.get(claim.flow)
            node = executable(flow, claim.node, claim.item)
            with self._heartbeat.hold(claim), evidence.capturing(), logs.step_scope(claim):
                result = self._perform(flow, node, claim, evidence)
        except Exception as exc:
            error = exc
            return self.store.run(lambda s: runs.fail(self, s, claim, error, evidence))
        # KeyboardInterrupt and SystemExit propagate: the lease expires, a retry follows.
        return self.store.run(lambda s: runs.succeed(self, s, claim, node, result, inline))

    def _perform(self, flow: Flow, node: Node, claim: Claim, evidence: Evidence) -> Any:
        if isinstance(node, Step):
            return self._call_step(flow, node, claim, evidence)
        return expand(flow, node, claim.input, self.registry)

    def _call_step(self, flow: Flow, step: Step, claim: Claim, evidence: Evidence) -> Any:
        try:
            data = step.validate_input(claim.input)
        except InvalidInput as exc:
            raise BusinessError(str(exc)) from exc
        args: list[Any] = []
        ctx = self._context(flow, step, claim, evidence) if step.takes_ctx else None
        if ctx is not None:
            args.append(ctx)
        if step.takes_data:
            args.append(data)
        try:
            with _time_limit(step.timeout, step.name):
                result = step.fn(*args)
                if step.is_async:
                    result = _await(result)
        except BaseException as exc:
            if ctx is not None:
                ctx.close_services(exc)
            raise
        if ctx is not None:
            ctx.close_services(None)
        try:
            return step.dump_output(result)
        except InvalidInput as exc:
            raise BusinessError(f"step returned a wrong output: {exc}") from exc

    def _context(self, flow: Flow, step: Step, claim: Claim, evidence: Evidence) -> StepContext:
        def outputs(key: str) -> Any:
            with self.store.read() as s:
                row = s.execute(
                    select(m.Step.output, m.Step.status).where(
                        m.Step.run_id == claim.run_id, m.Step.key == key
                    )
                ).first()
            if row is None or row.status not in m.STEP_DONE:
                raise KeyError(f"step {key!r} of run {claim.run_id} has no output yet")
            return row.output

        return StepContext(
            run_id=claim.run_id,
            flow=flow.name,
            step=step.name,
            key=claim.key,
            attempt=claim.attempt,
            idempotency_key=idempotency_key(claim.run_id, claim.key),
            run_input=claim.run_input,
            item=claim.item,
            _outputs=outputs,
            services=self.services,
            evidence=evidence,
        )

    # ------------------------------------------------------------ reconciler
    def tick(self) -> dict[str, int]:
        """Reconcile: free expired leases, publish due steps whose message is missing.

        Safe to run from several schedulers at once: a duplicate publish is
        ignored by the lease. Returns counts for logs and tests: ``lost``,
        the expired leases found; ``published``, the steps handed to workers.
        """
        from hub.runs import recover_lost

        now = self.clock()
        lost = 0
        with self.store.read() as s:
            expired = s.scalars(
                select(m.Step.id)
                .where(m.Step.status == m.STEP_RUNNING, m.Step.lease_expires_at < now)
                .limit(500)
            ).all()
        dispatch: list[tuple[str, str, float | None]] = []
        for step_id in expired:

            def recover(s: Session, step_id: str = step_id) -> tuple[str, str, None] | None:
                row = s.get(m.Step, step_id)
                if row is None or row.status != m.STEP_RUNNING or not _expired(row, now):
                    return None
                if not recover_lost(self, s, row, now):
                    return None
                row.dispatched_at = now
                return (row.id, row.queue, None)

            found = self.store.run(recover)
            lost += 1
            if found is not None:
                dispatch.append(found)
        stale = now - timedelta(seconds=self.settings.redeliver_after)

        def due(s: Session) -> list[tuple[str, str, float | None]]:
            rows = s.execute(
                select(m.Step.id, m.Step.queue)
                .where(
                    m.Step.status == m.STEP_READY,
                    or_(m.Step.not_before.is_(None), m.Step.not_before <= now),
                    or_(m.Step.dispatched_at.is_(None), m.Step.dispatched_at < stale),
                )
                .order_by(m.Step.created_at)
                .limit(1000)
            ).all()
            ids = [r.id for r in rows]
            if ids:
                s.execute(
                    update(m.Step)
                    .where(m.Step.id.in_(ids))
                    .values(dispatched_at=now)
                    .execution_options(synchronize_session=False)
                )
            return [(r.id, r.queue, None) for r in rows]

        republished = self.store.run(due)
        self.dispatch(dispatch + republished)
        return {"lost": lost, "published": len(republished) + len(dispatch)}

    # --------------------------------------------------------------- helpers
    def dispatch(self, dispatch: list[tuple[str, str, float | None]]) -> None:
        """Hand each ``(step_id, queue, countdown)`` to ``publish``; call after the commit."""
        for step_id, queue, countdown in dispatch:
            self.publish(step_id, queue, countdown)

    def backoff(self, step: Node, attempt: int, exc: BaseException) -> float:
        """Seconds before the next attempt: exponential with jitter, or ``retry_after``."""
        if isinstance(exc, TransientError) and exc.retry_after is not None:
            return max(0.0, float(exc.retry_after))
        base = getattr(step, "backoff", 1.0)
        cap = getattr(step, "backoff_max", 600.0)
        delay: float = min(cap, base * 2 ** max(0, attempt - 1))
        return delay * random.uniform(0.5, 1.0)


def idempotency_key(run_id: str, key: str) -> str:
    """The stable key of one step in one run, the same on every attempt."""
    return f"{run_id}:{key}"


def executable(flow: Flow, node_name: str, item: int | None) -> Node:
    """The node a row runs: a for-each item runs the for-each's ``do``."""
    node = flow.nodes[node_name]
    if item is not None and isinstance(node, ForEach):
        return node.do
    return node


def expand(flow: Flow, node: Node, data: Any, registry: Registry) -> Any:
    """Compute what a container needs to start its children (runs user functions).

    For-each: the list of items; branch: the chosen case; sub-flow: the
    child's validated input; parallel: nothing.
    """
    if isinstance(node, ForEach):
        items = node.items(flow.typed_input(node.name, data)) if node.items else data
        if items is None:
            items = []
        if not isinstance(items, (list, tuple)):
            items = list(items)
        return [_jsonable(i) for i in items]
    if isinstance(node, Branch):
        value = node.on(flow.typed_input(node.name, data))
        case = node.choose(value)
        if case is None:
            raise BusinessError(
                f"branch {node.name!r}: no case for value {value!r}; "
                f"cases are {', '.join(map(repr, node.cases))}"
            )
        return case
    if isinstance(node, SubFlow):
        child = registry.get(node.flow)
        child_input = node.input(flow.typed_input(node.name, data)) if node.input else data
        try:
            return child.validate_input(_jsonable(child_input))
        except InvalidInput as exc:
            raise BusinessError(f"sub-flow {node.flow!r}: {exc}") from exc
    return None


def _jsonable(value: Any) -> Any:
    """``value`` as JSON (models, dates, decimals, dataclasses converted); raises if it cannot be."""
    return to_jsonable_python(value)


def _expired(row: m.Step, now: datetime) -> bool:
    return row.lease_expires_at is not None and row.lease_expires_at < now


@contextmanager
def _time_limit(seconds: float | None, name: str) -> Iterator[None]:
    """Raise ``TransientError`` in the step when it runs past ``seconds`` (main thread only)."""
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_alarm(_sig: int, _frame: Any) -> None:
        raise TransientError(f"step {name!r} ran past its timeout of {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    outer_left, outer_every = signal.setitimer(signal.ITIMER_REAL, seconds)
    started = time.monotonic()
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if outer_left:  # an alarm armed before us (pytest-timeout, a caller's): re-arm it
            left = max(0.001, outer_left - (time.monotonic() - started))
            signal.setitimer(signal.ITIMER_REAL, left, outer_every)


__all__ = [
    "Attempt",
    "Claim",
    "Engine",
    "Event",
    "NeedsReview",
    "Outcome",
    "ReviewItem",
    "Started",
    "classify",
    "executable",
    "expand",
    "idempotency_key",
]


def _await(coroutine: Any) -> Any:
    """Run an async step's coroutine to its end.

    On a loop of its own; in a browser worker, where Playwright's sync API leaves its
    loop marked as running in this thread, on a helper thread that carries this
    thread's context (the step's evidence and log scope)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    import contextvars
    from concurrent.futures import ThreadPoolExecutor

    context = contextvars.copy_context()
    with ThreadPoolExecutor(1, thread_name_prefix="hub-async-step") as pool:
        return pool.submit(context.run, asyncio.run, coroutine).result()
