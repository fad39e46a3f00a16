"""Flows of the connector worker tests (``HUB_FLOWS=tests.connectors.flows``)."""

from __future__ import annotations

from typing import Any

from hub import Flow, StepContext, step


@step(retries=2, backoff=0.2)
def push(ctx: StepContext, data: dict[str, Any]) -> dict[str, Any]:
    """Create one order in the CRM, keyed by the step's idempotency key."""
    crm = ctx.connector("crm")
    ctx.log.info("pushing order %s", data["ref"])
    order = crm.post("/key/orders", json={**data, "ref": f"{ctx.run_id}/push"})
    return {"id": order["id"]}


@step(retries=0)
def refused(ctx: StepContext, data: dict[str, Any]) -> dict[str, Any]:
    """A call the CRM refuses: a business error, with the exchange as evidence."""
    crm = ctx.connector("crm")
    crm.post("/key/orders", json=["not", "an", "object"])
    return {}


push_order = Flow("push_order", [push])
refused_order = Flow("refused_order", [refused])
