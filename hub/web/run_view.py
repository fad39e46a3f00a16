"""What the run page shows of a run: its steps on a time line, and data as plain text.

The CSP forbids ``style`` attributes, so a bar's start and width cannot be
written into the page. In the table of steps they are rounded to
:data:`GRAIN` percent and named by classes (``tl-at-12 tl-w-30``) that
``static/hub.css`` defines for every multiple of :data:`GRAIN`.

Above the table, :func:`gantt` draws the run as a Gantt in SVG (see
:mod:`hub.web.charts`): a row per step and per for-each item, a bar per
attempt from its start to its end coloured by how it ended, the waits
between attempts as gaps, on an axis of time since the run started. A run
that has not ended is drawn up to "now", its running attempts reaching it.
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime, timedelta
from typing import Any

from markupsafe import Markup

from hub import models as m
from hub.models import utcnow
from hub.web import charts

#: Bars start and end on multiples of this many percent of the run's span.
GRAIN = 2
#: The most rows the Gantt draws; the table of steps under it lists every step.
GANTT_ROWS = 60
_ITEM = re.compile(r"\[\d+\]$")


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


def _stamp(t: datetime) -> str:
    return t.isoformat(sep=" ", timespec="milliseconds")


def _attempt_bars(
    st: dict[str, Any], start: datetime, now: datetime
) -> tuple[list[charts.GanttBar], list[charts.GanttGap], datetime | None]:
    """A step's attempts as bars, the waits between them as gaps, and when the last one ended."""
    key, log = st["key"], st.get("attempt_log", [])
    bars: list[charts.GanttBar] = []
    gaps: list[charts.GanttGap] = []
    last: datetime | None = None
    for a in log:
        began = _when(a["started_at"])
        if began is None:
            continue
        running = a["duration_ms"] is None and a["status"] == m.STEP_RUNNING
        if a["duration_ms"] is not None:
            ended = began + timedelta(milliseconds=a["duration_ms"])
        else:
            ended = max(now, began) if running else began
        if last is not None and began > last:
            waited = charts.duration_text((began - last).total_seconds())
            gaps.append(
                charts.GanttGap(
                    (last - start).total_seconds(),
                    (began - start).total_seconds(),
                    f"{key}: waited {waited} before attempt {a['number']}",
                )
            )
        how = a["status"].replace("_", " ") + (f" ({a['error_kind']})" if a["error_kind"] else "")
        until = "now (still running)" if running else f"{_stamp(ended)} UTC"
        took = charts.duration_text((ended - began).total_seconds())
        at = charts.offset_text((began - start).total_seconds(), 0.001)
        tip = (
            f"{key}, attempt {a['number']} of {len(log)}: {how}\n"
            f"{_stamp(began)} UTC to {until}\n{took}{' so far' if running else ''}, "
            f"from {at} after the run's start"
        )
        bars.append(
            charts.GanttBar(
                (began - start).total_seconds(),
                (ended - start).total_seconds(),
                "running" if running else a["status"],
                tip,
                attempt=a["number"],
            )
        )
        last = ended if last is None else max(last, ended)
    return bars, gaps, last


def gantt_row(st: dict[str, Any], index: int, start: datetime, now: datetime) -> charts.GanttRow:
    """The Gantt row of one step of a :func:`hub.views.describe_run` view (with attempts).

    An attempt is a bar from its start to its end (a running one to ``now``),
    the wait between two attempts a gap. A container (for-each, branch,
    parallel, sub-flow) is a thin bar over its own span: its one attempt, the
    instant it made its children, is not drawn. A step waiting for review
    adds a bar from its last attempt to ``now``; a step waiting for its next
    attempt, a gap to ``now``. ``index`` (from 1) links the row to the step's
    details on the page.
    """
    key, status = st["key"], st["status"]
    if st["kind"] == "step":
        bars, gaps, last = _attempt_bars(st, start, now)
    else:  # a container's one attempt is the instant it made its children: not drawn
        bars, gaps, last = [], [], None
    began, ended = _when(st["started_at"]), _when(st["finished_at"])
    is_open = status in m.STEP_OPEN
    if not bars and began is not None and status != m.STEP_NEEDS_REVIEW:
        until = ended or (max(now, began) if is_open else began)
        bars.append(
            charts.GanttBar(
                (began - start).total_seconds(),
                (until - start).total_seconds(),
                status,
                f"{key}: {status.replace('_', ' ')}\n{_stamp(began)} UTC to "
                + (f"{_stamp(until)} UTC" if ended or not is_open else "now")
                + f"\n{charts.duration_text((until - began).total_seconds())}",
                thin=True,
            )
        )
    since = last or began
    if status == m.STEP_NEEDS_REVIEW and since is not None:
        waited = charts.duration_text(max((now - since).total_seconds(), 0.0))
        bars.append(
            charts.GanttBar(
                (since - start).total_seconds(),
                (max(now, since) - start).total_seconds(),
                m.STEP_NEEDS_REVIEW,
                f"{key}: waiting for review since {_stamp(since)} UTC ({waited})",
            )
        )
    elif status == m.STEP_READY and last is not None and now > last:
        gaps.append(
            charts.GanttGap(
                (last - start).total_seconds(),
                (now - start).total_seconds(),
                f"{key}: waiting for attempt {len(st.get('attempt_log', [])) + 1}",
            )
        )
    took = (
        charts.duration_text(st["duration_ms"] / 1000)
        if st["duration_ms"] is not None
        else "not ended"
    )
    attempts = st["attempts"]
    tip = (
        f"{key} ({st['kind']}): {status.replace('_', ' ')}, "
        f"{attempts} attempt{'' if attempts == 1 else 's'}, {took}"
    )
    depth = key.count("/") + (1 if _ITEM.search(key) else 0)
    return charts.GanttRow(
        key=key,
        label=key,
        tip=tip,
        status=status,
        href=f"#step-{index}",
        indent=min(depth, 4),
        bars=bars,
        gaps=gaps,
    )


def gantt(run: dict[str, Any], now: datetime | None = None) -> dict[str, Any]:
    """The run's Gantt: ``svg`` (Markup), ``rows`` drawn and ``more`` steps left out.

    The axis runs from the run's start to its end, or to ``now`` (naive UTC,
    default the current time) while the run has not ended.
    """
    now = now or utcnow()
    start = datetime.fromisoformat((run["started_at"] or run["created_at"]).removesuffix("Z"))
    steps = run["steps"]
    rows = [gantt_row(st, i, start, now) for i, st in enumerate(steps[:GANTT_ROWS], start=1)]
    ended = _when(run["finished_at"]) if run["status"] in m.RUN_TERMINAL else None
    end = ended or max(now, start)
    span = max((end - start).total_seconds(), 0.0)
    span = max([span, *(b.end for r in rows for b in r.bars)])
    retried = sum(1 for st in steps if st["attempts"] > 1)
    failed = sum(1 for st in steps if st["status"] in (m.STEP_FAILED, m.STEP_NEEDS_REVIEW))
    more = max(len(steps) - GANTT_ROWS, 0)
    label = (
        f"Timeline of run {run['id']} ({run['flow']}): {len(steps)} "
        f"step{'' if len(steps) == 1 else 's'} over {charts.duration_text(span)}"
    )
    desc = (
        f"From the run's start at {_stamp(start)} UTC to "
        + (f"its end at {_stamp(ended)} UTC" if ended else f"now, {_stamp(end)} UTC")
        + f". {retried} step{'' if retried == 1 else 's'} retried, {failed} failed or "
        "waiting for review. One row per step and per for-each item; one bar per attempt, "
        "coloured by how it ended; gaps between bars are waits before a retry."
        + (f" The first {GANTT_ROWS} steps are drawn, {more} more are not." if more else "")
        + " The table of steps below has the same numbers."
    )
    svg = charts.gantt(
        rows,
        span,
        label=label,
        desc=desc,
        now=None if ended else (end - start).total_seconds(),
        id="gantt",
    )
    return {"svg": Markup(svg), "rows": len(rows), "more": more}


def page_context(run: dict[str, Any], now: datetime | None = None) -> dict[str, Any]:
    """The run page's template context from a :func:`hub.views.describe_run` view (with
    attempts); ``now`` (naive UTC, default the current time) is where the Gantt of a run
    that has not ended stops."""
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
        "gantt": gantt(run, now),
    }
