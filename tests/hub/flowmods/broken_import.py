"""Fails while importing: a step refers to a setting that does not exist."""

from __future__ import annotations

from hub import Flow, step

LIMIT = int("not a number")  # line 7: the registry must name this line


@step
def never(data: int) -> int:
    return data


never_flow = Flow("never", [never])
