"""What a step sees while it runs."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hub.evidence import Evidence


@dataclass
class StepContext:
    """Passed as ``ctx`` to a step that asks for it. New fields may be added.

    ``idempotency_key`` is the same on every attempt of this step in this run:
    send it to the systems you change (``Idempotency-Key`` header, external-ID
    upsert), or check for it before creating a record.

    ``evidence`` collects what a reviewer sees if this attempt sends the step
    to review (screenshots, page HTML, the last HTTP exchange, actions, notes;
    see :mod:`hub.evidence`); the lines logged with ``log`` are kept too.
    """

    run_id: str
    flow: str
    step: str
    key: str
    attempt: int
    idempotency_key: str
    run_input: Any
    item: int | None = None
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("hub.step"))
    _outputs: Callable[[str], Any] | None = field(default=None, repr=False)
    services: dict[str, Any] = field(default_factory=dict, repr=False)
    evidence: Evidence = field(default_factory=Evidence, repr=False)

    def output_of(self, step: str) -> Any:
        """The stored output of an earlier step of this run (JSON, as stored).

        Raises ``KeyError`` when that step has not finished.
        """
        if self._outputs is None:
            raise KeyError(step)
        return self._outputs(step)
