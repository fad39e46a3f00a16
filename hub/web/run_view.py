"""What the run page shows of a run: its steps on a time line, and data as plain text.

The CSP forbids ``style`` attributes, so a bar's start and width cannot be
written into the page. They are rounded to :data:`GRAIN` percent and named
by classes (``tl-at-12 tl-w-30``) that ``static/hub.css`` defines for every
multiple of :data:`GRAIN`.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta
from typing import Any

from hub import models as m

#: Bars start and end on multiples of this many percent of the run's span.
GRAIN = 2


def _when(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.removesuffix("Z")) if value else None


def _span(run: dict[str, Any]) -> tuple[datetime, float]:
    """The run's start and length in seconds: to its end, or while open to the last step moment."""
    start = datetime.fromisoformat((run["started_at"] or run["created_at"]).removesuffix("Z"))
    moments = [
        t for st in run["steps"] for t in (_when(st["started_at"]), _when(st["finished_at"])) if t
    ]
    for st in run["steps"]:  # a step waiting for review has no end, but its attempts have
        for a in st.get("attempt_log", []):
            if (began := _when(a["started_at"])) and a["duration_ms"] is not None:
                moments.append(began + timedelta(milliseconds=a["duration_ms"]))
    end = _when(run["finished_at"]) or max(moments, default=start)
    return start, max((end - start).total_seconds(), 0.0)


def bar(step: dict[str, Any], start: datetime, span: float) -> dict[str, Any] | None:
    """Where ``step`` sits on the run's time line, in percent; None if it never started.

    ``at`` is rounded down and ``width`` up to :data:`GRAIN`, so a very short
    step still shows; a step still open (no end) reaches to the end of the span.
    """
    began = _when(step["started_at"])
    if began is None:
        return None
    ended = _when(step["finished_at"])
    if span <= 0:
        return {"at": 0, "width": 100, "open": ended is None}

    def percent(t: datetime) -> float:
        return min(max((t - start).total_seconds() / span * 100, 0.0), 100.0)

    at = min(math.floor(percent(began) / GRAIN) * GRAIN, 100 - GRAIN)
    end = percent(ended) if ended is not None else 100.0
    width = math.ceil((end - at) / GRAIN) * GRAIN
    return {"at": at, "width": min(max(width, GRAIN), 100 - at), "open": ended is None}


def as_text(value: Any) -> str:
    """A step's or run's data as readable text: strings as they are, the rest as indented JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def page_context(run: dict[str, Any]) -> dict[str, Any]:
    """The run page's template context from a :func:`hub.views.describe_run` view."""
    start, span = _span(run)
    steps = [
        {
            **st,
            "bar": bar(st, start, span),
            "input_text": as_text(st["input"]),
            "output_text": as_text(st["output"]),
            "detail_text": as_text(st["detail"]),
            "open": bool(st["error"]) or st["status"] == m.STEP_NEEDS_REVIEW,
        }
        for st in run["steps"]
    ]
    return {
        "run": run,
        "steps": steps,
        "reviews": [r for r in run["reviews"] if r["status"] == "open"],
        "input_text": as_text(run["input"]),
        "output_text": as_text(run["output"]),
    }
