"""Structured logs: one JSON object a line, with the run and step of lines written in a step.

``HUB_LOG_FORMAT=json`` makes ``hub web``, ``hub worker`` and ``hub scheduler``
write every log line to stderr as one JSON object::

    {"time": "2026-11-27T10:00:00.123Z", "level": "INFO", "logger": "hub.step",
     "message": "order PO-4711 keyed", "run_id": "0192…", "step": "key_order",
     "step_id": "0192…", "attempt": 1, "flow": "legacy_orders"}

``time`` is ISO-8601 in UTC; ``run_id``, ``step`` (the step's key in its run,
``lines[3]`` for an item of a for-each), ``step_id``, ``attempt`` and ``flow``
are there when the line was written while a step ran (the engine wraps each
step in :func:`step_scope`), in the step's own thread; ``exc`` holds the
traceback of a line logged with one, ``stack`` a stack, and fields passed
with ``extra=`` are kept. Values a step masked (``ctx.secret``,
``ctx.evidence.mask``) are ``[redacted]`` in every field, as
:mod:`hub.evidence` does for text lines.

``HUB_LOG_FORMAT=text`` (the default) leaves each command's logs as they were.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import IO, Any, Protocol

from hub.evidence import _CURRENT as _EVIDENCE  # the evidence of the step running here

#: The format of text lines :func:`configure` writes.
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# What every LogRecord has; anything else on a record came with ``extra=``.
_BLANK = logging.LogRecord("", 0, "", 0, "", None, None)
_RECORD_FIELDS = frozenset([*_BLANK.__dict__, "message", "asctime", "taskName"])


@dataclass(frozen=True)
class StepFields:
    """Which step a log line belongs to."""

    run_id: str
    step: str
    step_id: str
    attempt: int
    flow: str


class Claimed(Protocol):
    """What :func:`step_scope` reads of a claimed step (``hub.engine.Claim``)."""

    @property
    def run_id(self) -> str: ...
    @property
    def key(self) -> str: ...
    @property
    def step_id(self) -> str: ...
    @property
    def attempt(self) -> int: ...
    @property
    def flow(self) -> str: ...


_STEP: ContextVar[StepFields | None] = ContextVar("hub_log_step", default=None)


@contextmanager
def step_scope(claim: Claimed) -> Iterator[StepFields]:
    """Tag the log lines written in this thread while the block runs with ``claim``'s step."""
    fields = StepFields(
        run_id=claim.run_id,
        step=claim.key,
        step_id=claim.step_id,
        attempt=claim.attempt,
        flow=claim.flow,
    )
    token = _STEP.set(fields)
    try:
        yield fields
    finally:
        _STEP.reset(token)


def current_step() -> StepFields | None:
    """The step running in this thread (inside :func:`step_scope`), or None."""
    return _STEP.get()


class JsonFormatter(logging.Formatter):
    """Formats a record as one line of JSON (see the module's docstring for the fields)."""

    def format(self, record: logging.LogRecord) -> str:
        evidence = _EVIDENCE.get()
        scrub = evidence.scrub if evidence is not None and evidence.masked else None

        def text(value: str) -> str:
            return scrub(value) if scrub is not None else value

        out: dict[str, Any] = {
            "time": _utc(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": text(record.getMessage()),
        }
        step = _STEP.get()
        if step is not None:
            out.update(asdict(step))
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            out["exc"] = text(record.exc_text)
        if record.stack_info:
            out["stack"] = text(self.formatStack(record.stack_info))
        for name, value in record.__dict__.items():
            if name not in _RECORD_FIELDS and name not in out and not name.startswith("_"):
                out[name] = _jsonable(value, text)
        return json.dumps(out, ensure_ascii=False, default=lambda v: text(str(v)))


def configure(
    level: int | str = "INFO", json: bool = False, *, stream: IO[str] | None = None
) -> logging.Handler:
    """Send every log line to ``stream`` (stderr) as JSON (``json=True``) or as text.

    Replaces the handler an earlier call installed, keeps other handlers
    (the evidence capture), and sets the root logger's level. Returns the
    handler.
    """
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_hub_logs", False)]:
        root.removeHandler(old)
        old.close()
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if json else logging.Formatter(TEXT_FORMAT))
    handler._hub_logs = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    return handler


def _utc(created: float) -> str:
    moment = datetime.fromtimestamp(created, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _jsonable(value: Any, text: Any) -> Any:
    """An ``extra=`` value as JSON: strings scrubbed, containers walked, the rest as text."""
    if isinstance(value, str):
        return text(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, dict):
        return {str(k): _jsonable(v, text) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v, text) for v in value]
    return text(str(value))
