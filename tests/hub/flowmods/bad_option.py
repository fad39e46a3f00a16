"""Declares a step with a misspelt option: import stops with a FlowDefinitionError."""

from __future__ import annotations

from hub import Flow, step


@step(retires=3)
def fetch(data: int) -> int:
    return data


fetch_flow = Flow("fetch_flow", [fetch])
