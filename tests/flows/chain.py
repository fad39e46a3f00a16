"""chain: three steps, each one change in the sandbox REST system.

Every step POSTs ``/records`` to the sandbox at ``$HUB_TEST_SANDBOX_URL`` with
``ctx.idempotency_key`` as the ``Idempotency-Key`` header and ``run_id/step``
as the body's ``ref``. The run input says how a step misbehaves, so one flow
serves every fault test::

    {"name": "ada", "behave": {"b": {"hold": "/tmp/x/marker", "on_attempts": [1]}}}

Order inside a step: ``kill_self``, ``business``, ``sleep``, the call, then
``transient_after``, ``exit_after_effect``, ``hold``.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
from pydantic import BaseModel, ConfigDict, Field

from hub import BusinessError, Flow, StepContext, TransientError, step


class Behaviour(BaseModel):
    """What a step does besides its call, on ``on_attempts`` (None: every attempt)."""

    model_config = ConfigDict(extra="forbid")

    kill_self: bool = Field(False, description="SIGKILL its own process before the call.")
    business: str | None = Field(None, description="Raise BusinessError before the call.")
    sleep: float = Field(0.0, description="Seconds to sleep before the call.")
    transient_after: float | None = Field(
        None, description="After the call, raise TransientError(retry_after=this)."
    )
    exit_after_effect: bool = Field(False, description="os._exit(1) after the call.")
    hold: str | None = Field(None, description="After the call, write this marker, then sleep.")
    hold_seconds: float = 120.0
    on_attempts: list[int] | None = None


class Job(BaseModel):
    name: str = Field(min_length=1)
    behave: dict[str, Behaviour] = {}


class Trail(BaseModel):
    name: str
    ids: list[int]


def _behaviour(ctx: StepContext) -> Behaviour:
    plan = Job.model_validate(ctx.run_input).behave.get(ctx.step) or Behaviour()
    if plan.on_attempts is not None and ctx.attempt not in plan.on_attempts:
        return Behaviour()
    return plan


def _record(ctx: StepContext, name: str) -> int:
    """One change in the sandbox; the connector boundary translates transport errors."""
    url = os.environ["HUB_TEST_SANDBOX_URL"]
    body = {
        "ref": f"{ctx.run_id}/{ctx.key}",
        "attempt": ctx.attempt,
        "pid": os.getpid(),
        "name": name,
    }
    try:
        res = httpx.post(
            f"{url}/records",
            json=body,
            headers={"Idempotency-Key": ctx.idempotency_key},
            timeout=30,
        )
    except httpx.TransportError as exc:
        raise TransientError(f"sandbox unreachable: {type(exc).__name__}") from exc
    if res.status_code >= 500:
        raise TransientError(f"sandbox answered {res.status_code}")
    if res.status_code >= 400:
        raise BusinessError(f"sandbox refused the record: {res.status_code} {res.text[:200]}")
    return int(res.json()["id"])


def _act(ctx: StepContext, name: str, ids: list[int]) -> Trail:
    plan = _behaviour(ctx)
    if plan.kill_self:
        os.kill(os.getpid(), signal.SIGKILL)
    if plan.business:
        raise BusinessError(plan.business)
    if plan.sleep:
        time.sleep(plan.sleep)
    record = _record(ctx, name)
    if plan.transient_after is not None:
        raise TransientError("sandbox says: later", retry_after=plan.transient_after)
    if plan.exit_after_effect:
        os._exit(1)
    if plan.hold:
        marker = Path(plan.hold)
        marker.with_suffix(".tmp").write_text(str(os.getpid()))
        marker.with_suffix(".tmp").rename(marker)
        time.sleep(plan.hold_seconds)
    return Trail(name=name, ids=[*ids, record])


@step(retries=2, backoff=0.2)
def a(ctx: StepContext, data: Job) -> Trail:
    return _act(ctx, data.name, [])


@step(retries=2, backoff=0.2)
def b(ctx: StepContext, data: Trail) -> Trail:
    return _act(ctx, data.name, data.ids)


@step(retries=2, backoff=0.2)
def c(ctx: StepContext, data: Trail) -> Trail:
    return _act(ctx, data.name, data.ids)


chain = Flow("chain", [a, b, c], description="Three changes in the sandbox REST system.")
