from __future__ import annotations

from hub import Flow, step


@step
def shout(data: str) -> str:
    return data.upper()


alpha = Flow("alpha", [shout])
