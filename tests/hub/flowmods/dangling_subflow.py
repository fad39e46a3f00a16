"""A flow whose SubFlow names a flow that no loaded module defines."""

from __future__ import annotations

from hub import Flow, SubFlow, step


@step
def prepare(data: int) -> int:
    return data


orphan = Flow("orphan", [prepare, SubFlow("nowhere")])
