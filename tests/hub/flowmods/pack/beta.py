from __future__ import annotations

from hub import Flow, step


@step
def whisper(data: str) -> str:
    return data.lower()


beta = Flow("beta", [whisper])
