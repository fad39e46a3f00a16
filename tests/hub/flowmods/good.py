"""Two flows, one calling the other as a sub-flow: loads cleanly."""

from __future__ import annotations

from hub import Flow, SubFlow, step


@step
def double(data: int) -> int:
    return data * 2


@step
def add_one(data: int) -> int:
    return data + 1


doubler = Flow("doubler", [double])
pipeline = Flow("pipeline", [add_one, SubFlow("doubler")])
