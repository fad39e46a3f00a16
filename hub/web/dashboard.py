"""``GET /dashboard``: how the flows did over the last hour, day or week, at a glance.

For the chosen window (``?window=1h``, ``24h`` (the default) or ``7d``; all
times UTC), per flow and in total:

- runs **started** (created in the window), **succeeded**, **failed** and
  **cancelled** (ended in the window), the **failure rate** (failed of those
  that ended) and the runs **waiting for review** now;
- a throughput chart (runs ended per 5 minutes, hour or 6 hours, stacked by
  outcome) and a failure-rate chart over the same buckets, drawn on the
  server as SVG (:mod:`hub.web.charts`), their numbers in a table too;
- step durations (first start to end, retries included), p50 and p95 per flow
  and step, of the steps that succeeded in each flow's newest :data:`STEP_RUNS`
  runs started in the window;
- open review items and those overdue, of the reader's teams (as the review
  queue shows them); runs are counted for everyone, as the runs list shows them.

Every query reads an index range: runs by ``(flow, created_at)``,
``(status, created_at)`` or ``(status, finished_at, flow)``, review items by
``(status, ...)``, steps by ``run_id``. Runs that ended are bucketed in SQL
(``GROUP BY`` flow, status and bucket) from the ``(status, finished_at, flow)``
index alone, so the page reads a few dozen rows whatever the number of runs,
and a run counts in the window it ended in however long ago it was created.
Any logged-in role may read the page.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import Response
from markupsafe import Markup
from sqlalchemy import (
    Float,
    Integer,
    Select,
    String,
    case,
    cast,
    column,
    func,
    select,
    true,
    values,
)
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from hub import models as m
from hub.auth import Login, Principal
from hub.models import ReviewItem, Run
from hub.reviews import visible
from hub.web import charts
from hub.web.pages import render
from hub.web.security import clock, page_login, require

router = APIRouter()

#: Step durations of a flow are read from its newest runs of the window, at most this many,
STEP_RUNS = 200
#: and from at most this many of their steps.
STEP_ROWS = 5_000
#: The overdue review items listed by name (the most overdue first).
OVERDUE_LISTED = 10
#: Outcomes of a run that ended, in the order the charts stack them.
OUTCOMES = (m.RUN_SUCCEEDED, m.RUN_FAILED, m.RUN_CANCELLED)
_ALL = (*m.RUN_ACTIVE, *m.RUN_TERMINAL)
_ITEM = re.compile(r"\[\d+\]")


@dataclass(frozen=True)
class Window:
    """A choice of the window selector: how far back, and the width of a chart's bucket."""

    key: str
    label: str
    length: timedelta
    bucket: timedelta
    per: str

    @property
    def buckets(self) -> int:
        return int(self.length / self.bucket)


WINDOWS = {
    w.key: w
    for w in (
        Window("1h", "Last hour", timedelta(hours=1), timedelta(minutes=5), "per 5 minutes"),
        Window("24h", "Last 24 hours", timedelta(hours=24), timedelta(hours=1), "per hour"),
        Window("7d", "Last 7 days", timedelta(days=7), timedelta(hours=6), "per 6 hours"),
    )
}
DEFAULT_WINDOW = "24h"


@dataclass
class FlowStats:
    """The numbers of one flow (or of all flows) in the window."""

    flow: str
    started: int = 0
    ended: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    waiting_review: int = 0
    open_items: int = 0
    overdue_items: int = 0

    @property
    def finished(self) -> int:
        return sum(self.ended.values())

    @property
    def failure_rate(self) -> float | None:
        """Failed runs as a percentage of the runs that ended; None when none ended."""
        return 100.0 * self.ended[m.RUN_FAILED] / self.finished if self.finished else None

    def add(self, other: FlowStats) -> None:
        self.started += other.started
        for k, v in other.ended.items():
            self.ended[k] += v
        self.waiting_review += other.waiting_review
        self.open_items += other.open_items
        self.overdue_items += other.overdue_items


@dataclass(frozen=True)
class Durations:
    """Step durations of one flow's step (``[*]``: every item of a for-each), in seconds."""

    flow: str
    step: str
    count: int
    p50: float
    p95: float
    longest: float


@dataclass
class Dashboard:
    """Everything the page shows, read in one transaction."""

    window: Window
    start: datetime
    end: datetime
    now: datetime
    buckets: list[datetime]
    flows: dict[str, FlowStats]
    #: runs that ended per flow, outcome and bucket index
    series: dict[str, dict[str, list[int]]]
    durations: list[Durations]
    durations_capped: bool
    overdue: list[dict[str, Any]]

    def total(self) -> FlowStats:
        out = FlowStats("All flows")
        for stats in self.flows.values():
            out.add(stats)
        return out

    def ended_per_bucket(self, flow: str | None) -> dict[str, list[int]]:
        """Runs that ended per outcome and bucket: of ``flow``, or of all flows."""
        out = {o: [0] * len(self.buckets) for o in OUTCOMES}
        for name, by_outcome in self.series.items():
            if flow is not None and name != flow:
                continue
            for outcome, counts in by_outcome.items():
                out[outcome] = [a + b for a, b in zip(out[outcome], counts, strict=True)]
        return out


# ------------------------------------------------------------------ reading
def _bucket_of(column: Any, start: datetime, size: timedelta, dialect: str) -> ColumnElement[int]:
    """The index of the bucket of ``size`` that ``column`` (a naive UTC ``DateTime`` at or
    after ``start``) falls in, counting from ``start``, in the database's own arithmetic."""
    width = int(size.total_seconds())
    if dialect == "postgresql":
        since = func.extract("epoch", column) - _epoch(start)
        return cast(func.floor(since / width), Integer)
    # SQLite keeps times as text: strftime('%s') reads whole seconds; integer division
    # floors (the value is never negative), with no need of SQLite's optional floor()
    return (cast(func.strftime("%s", column), Integer) - _epoch(start)) // width


def _epoch(t: datetime) -> int:
    return int((t - datetime(1970, 1, 1)).total_seconds())


def window_bounds(window: Window, now: datetime) -> tuple[datetime, datetime]:
    """The window's first moment and the end of its last bucket: buckets start on whole
    multiples of their width (UTC), the last one holds ``now``."""
    size = int(window.bucket.total_seconds())
    end = datetime(1970, 1, 1) + timedelta(seconds=(_epoch(now) // size + 1) * size)
    return end - window.length, end


def percentile(sorted_values: list[float], p: float) -> float:
    """The ``p``-th percentile (0 < p <= 100) of sorted values by the nearest-rank method."""
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def flows_with_runs(s: Session) -> list[str]:
    """Every flow name that has a run, read as a skip over the ``(flow, created_at)`` index:
    one index probe per flow (a recursive query both SQLite and PostgreSQL answer so)."""
    first = select(func.min(Run.flow).label("flow")).cte("names", recursive=True)
    following = select(func.min(Run.flow)).where(Run.flow > first.c.flow).scalar_subquery()
    names = first.union_all(select(following).where(first.c.flow.is_not(None)))
    return [n for n in s.scalars(select(names.c.flow)) if n is not None]


def read(s: Session, who: Principal, window: Window, now: datetime, flows: list[str]) -> Dashboard:
    """The dashboard's numbers for ``who`` at ``now``; ``flows`` are shown even without runs."""
    dialect = s.get_bind().dialect.name
    start, end = window_bounds(window, now)
    stats = {f: FlowStats(f) for f in flows}

    def of(flow: str) -> FlowStats:
        return stats.setdefault(flow, FlowStats(flow))

    names = flows_with_runs(s)
    # the (flow, created_at) index holds all this query reads: no table row is visited
    for flow, count in s.execute(
        select(Run.flow, func.count())
        .where(Run.flow.in_(names), Run.created_at >= start, Run.created_at < end)
        .group_by(Run.flow)
    ).all():
        of(flow).started = count

    bucket = _bucket_of(Run.finished_at, start, window.bucket, dialect).label("bucket")
    ended = s.execute(
        select(Run.flow, Run.status, bucket, func.count())
        .where(
            Run.status.in_(OUTCOMES),
            Run.finished_at >= start,
            Run.finished_at < end,
        )
        .group_by(Run.flow, Run.status, bucket)
    ).all()
    series: dict[str, dict[str, list[int]]] = {}
    for flow, status, index, count in ended:
        of(flow).ended[status] += count
        counts = series.setdefault(flow, {o: [0] * window.buckets for o in OUTCOMES})
        counts[status][min(max(int(index), 0), window.buckets - 1)] += count

    # now, whenever they started: from the (status, finished_at, flow) index alone
    for flow, count in s.execute(
        select(Run.flow, func.count()).where(Run.status == m.RUN_NEEDS_REVIEW).group_by(Run.flow)
    ).all():
        of(flow).waiting_review = count

    late = case((ReviewItem.due_at < now, 1), else_=0)
    for flow, count, overdue in s.execute(
        select(ReviewItem.flow, func.count(), func.sum(late))
        .where(ReviewItem.status == "open", visible(who))
        .group_by(ReviewItem.flow)
    ).all():
        of(flow).open_items, of(flow).overdue_items = count, int(overdue or 0)

    overdue_rows = s.execute(
        select(
            ReviewItem.id,
            ReviewItem.flow,
            ReviewItem.step_key,
            ReviewItem.reason,
            ReviewItem.due_at,
        )
        .where(ReviewItem.status == "open", ReviewItem.due_at < now, visible(who))
        .order_by(ReviewItem.due_at, ReviewItem.id)
        .limit(OVERDUE_LISTED)
    ).all()
    overdue = [
        {
            "id": r.id,
            "flow": r.flow,
            "step": r.step_key,
            "reason": r.reason,
            "due_at": r.due_at,
            "late": charts.duration_text((now - r.due_at).total_seconds()),
        }
        for r in overdue_rows
    ]
    busy = [f.flow for f in stats.values() if f.started]
    durations, capped = _durations(s, busy, start, end, dialect)
    size = window.bucket
    return Dashboard(
        window=window,
        start=start,
        end=end,
        now=now,
        buckets=[start + i * size for i in range(window.buckets)],
        flows=dict(sorted(stats.items())),
        series=series,
        durations=durations,
        durations_capped=capped or any(f.started > STEP_RUNS for f in stats.values()),
        overdue=overdue,
    )


def _seconds(begin: Any, end: Any, dialect: str) -> ColumnElement[float]:
    """``end - begin`` in seconds (to the millisecond), in the database's own arithmetic."""
    if dialect == "postgresql":
        return cast(func.extract("epoch", end - begin), Float)
    return cast((func.julianday(end) - func.julianday(begin)) * 86400.0, Float)


def _durations(
    s: Session, flows: list[str], start: datetime, end: datetime, dialect: str
) -> tuple[list[Durations], bool]:
    """p50 and p95 of each flow's steps (not containers) that succeeded, in the newest
    :data:`STEP_RUNS` runs of the flow started in the window (at most :data:`STEP_ROWS`
    steps of them); True when some flow had more.

    PostgreSQL aggregates in one statement (``percentile_disc`` is the nearest rank);
    elsewhere the durations are read a flow at a time and ranked here. Both give the
    same figures."""
    if not flows:
        return [], False
    if dialect == "postgresql":
        return _durations_in_sql(s, flows, start, end)
    seconds: dict[tuple[str, str], list[float]] = defaultdict(list)
    capped = False
    for flow in flows:
        rows = s.execute(_steps_of(Run.flow == flow, start, end, dialect)).all()
        capped = capped or len(rows) > STEP_ROWS
        for key, took in rows[:STEP_ROWS]:
            # to the millisecond: SQLite's julianday() arithmetic leaves float noise
            seconds[(flow, _ITEM.sub("[*]", key))].append(max(round(float(took), 3), 0.0))
    out = []
    for (flow, step), took_all in sorted(seconds.items()):
        took_all.sort()
        p50, p95 = percentile(took_all, 50), percentile(took_all, 95)
        out.append(Durations(flow, step, len(took_all), p50, p95, took_all[-1]))
    return out, capped


def _steps_of(
    of_flow: ColumnElement[bool], start: datetime, end: datetime, dialect: str, outer: Any = None
) -> Select[str, float]:
    """Key and seconds of the steps that succeeded in a flow's newest runs of the window,
    at most :data:`STEP_ROWS` + 1 (one more tells that there were more)."""
    newest = (
        select(Run.id)
        .where(of_flow, Run.created_at >= start, Run.created_at < end)
        .order_by(Run.created_at.desc())
        .limit(STEP_RUNS)
    )
    if outer is not None:  # the flow's name comes from a table of the enclosing query
        newest = newest.correlate(outer)
    return (
        select(m.Step.key, _seconds(m.Step.started_at, m.Step.finished_at, dialect).label("took"))
        .where(
            m.Step.run_id.in_(newest),
            m.Step.kind == "step",
            m.Step.status == m.STEP_SUCCEEDED,
            m.Step.started_at.is_not(None),
            m.Step.finished_at.is_not(None),
        )
        .limit(STEP_ROWS + 1)
    )


def _durations_in_sql(
    s: Session, flows: list[str], start: datetime, end: datetime
) -> tuple[list[Durations], bool]:
    """:func:`_durations` on PostgreSQL: each flow's steps read through a lateral join, and
    grouped, ranked and capped in the database, so a few dozen rows come back."""
    names = values(column("flow", String), name="names").data([(f,) for f in flows])
    steps = (
        _steps_of(Run.flow == names.c.flow, start, end, "postgresql", names)
        .add_columns(
            names.c.flow.label("flow"),
            # numbered within the flow (a lateral query runs once per flow), no sort needed
            func.row_number().over().label("n"),
        )
        .correlate(names)
        .lateral()
    )
    key = steps.c.key
    picked = (
        select(
            steps.c.flow,
            # only the keys of for-each items pay for the regular expression
            case(
                (func.strpos(key, "[") == 0, key),
                else_=func.regexp_replace(key, r"\[\d+\]", "[*]", "g"),
            ).label("step"),
            func.greatest(func.round(steps.c.took * 1000.0) / 1000.0, 0.0).label("took"),
            steps.c.n,
        )
        .select_from(names)
        .join(steps, true())
        .subquery()
    )
    kept = picked.c.n <= STEP_ROWS
    rows = s.execute(
        select(
            picked.c.flow,
            picked.c.step,
            func.count().filter(kept),
            func.percentile_disc(0.5).within_group(picked.c.took).filter(kept),
            func.percentile_disc(0.95).within_group(picked.c.took).filter(kept),
            func.max(picked.c.took).filter(kept),
            func.max(picked.c.n),
        ).group_by(picked.c.flow, picked.c.step)
    ).all()
    out = [
        Durations(flow, step, count, float(p50), float(p95), float(longest))
        for flow, step, count, p50, p95, longest, _n in rows
        if count
    ]
    out.sort(key=lambda d: (d.flow, d.step))  # as Python orders them, whatever the collation
    return out, any(n > STEP_ROWS for *_, n in rows)


# ------------------------------------------------------------------- charts
def _bucket_label(window: Window, t: datetime) -> str:
    return t.strftime("%a %H:%M") if window.bucket >= timedelta(hours=6) else t.strftime("%H:%M")


def _bucket_tip(window: Window, t: datetime) -> str:
    until = t + window.bucket
    if until.date() == t.date():
        return f"{t:%Y-%m-%d %H:%M} to {until:%H:%M} UTC"
    return f"{t:%Y-%m-%d %H:%M} to {until:%Y-%m-%d %H:%M} UTC"


def _label_every(window: Window) -> int:
    """Label every n-th bucket so that the labels do not run into each other."""
    return {"1h": 1, "24h": 2, "7d": 4}.get(window.key, 1)


def charts_for(board: Dashboard, flow: str | None) -> dict[str, Any]:
    """The two charts (Markup) and the rows of their table, for ``flow`` or all flows."""
    w = board.window
    per = board.ended_per_bucket(flow)
    who = f"flow {flow}" if flow else "all flows"
    rows: list[dict[str, Any]] = []
    throughput: list[charts.Column] = []
    failure: list[charts.Column] = []
    every = _label_every(w)
    for i, t in enumerate(board.buckets):
        counts = {o: per[o][i] for o in OUTCOMES}
        total = sum(counts.values())
        rate = 100.0 * counts[m.RUN_FAILED] / total if total else None
        tip = _bucket_tip(w, t)
        label = _bucket_label(w, t) if i % every == 0 else ""
        throughput.append(charts.Column(label, tip, counts, note=f"of {total} ended"))
        failure.append(
            charts.Column(
                label,
                tip,
                {"failed": rate or 0.0},
                note=f"({counts[m.RUN_FAILED]} of {total} ended)",
            )
        )
        rows.append({"from": t, "to": t + w.bucket, "counts": counts, "total": total, "rate": rate})
    ended = sum(r["total"] for r in rows)
    failed = sum(r["counts"][m.RUN_FAILED] for r in rows)
    span = f"{board.start:%Y-%m-%d %H:%M} to {board.now:%Y-%m-%d %H:%M} UTC"
    series = [
        charts.Series(m.RUN_SUCCEEDED, "succeeded"),
        charts.Series(m.RUN_FAILED, "failed"),
        charts.Series(m.RUN_CANCELLED, "cancelled"),
    ]
    x_title = f"Time (UTC), {w.per}"
    return {
        "throughput": Markup(
            charts.column_chart(
                throughput,
                series,
                label=f"Runs ended {w.per}, {who}: {ended} in all, {failed} failed",
                desc=f"Stacked bars of the runs of {who} that ended {w.per} from {span}: "
                "succeeded, failed and cancelled. The table below the charts has the numbers.",
                x_title=x_title,
                y_title="Runs ended",
                empty="No run ended in this window.",
                id="throughput",
            )
        ),
        "failure": Markup(
            charts.column_chart(
                failure,
                [charts.Series("failed", "failed")],
                label=f"Failure rate {w.per}, {who}: "
                + (f"{100.0 * failed / ended:.1f} % overall" if ended else "no run ended"),
                desc=f"Bars of the share of runs of {who} that ended failed {w.per} from {span}; "
                "no bar where no run ended. The table below the charts has the numbers.",
                x_title=x_title,
                y_title="Failed, % of ended",
                percent=True,
                empty="No run ended in this window.",
                id="failure-rate",
            )
        ),
        "rows": rows,
    }


# --------------------------------------------------------------------- page
def _link(window: str, flow: str | None = None) -> str:
    params = {"window": window, **({"flow": flow} if flow else {})}
    return "/dashboard?" + urlencode(params)


@router.get("/dashboard")
def dashboard_page(
    request: Request,
    window: str = DEFAULT_WINDOW,
    flow: str = "",
    login: Login = Depends(page_login),
) -> Response:
    """The dashboard for the window ``window`` (1h, 24h, 7d), its charts of ``flow`` or all."""
    require(login.principal, "viewer")
    chosen = WINDOWS.get(window)
    if chosen is None:
        raise HTTPException(400, f"window: choose one of {', '.join(WINDOWS)}")
    hub = request.app.state.hub
    now = clock(request)
    declared = [f.name for f in hub.registry]
    with hub.store.read() as s:
        board = read(s, login.principal, chosen, now, declared)
    focus = flow or None
    return render(
        request,
        "dashboard.html",
        login=login,
        board=board,
        total=board.total(),
        focus=focus,
        charts=charts_for(board, focus),
        windows=[
            {"key": w.key, "label": w.label, "href": _link(w.key, focus), "current": w is chosen}
            for w in WINDOWS.values()
        ],
        flow_link=lambda name: _link(chosen.key, name),
        all_link=_link(chosen.key),
        step_runs=STEP_RUNS,
        step_rows=STEP_ROWS,
        queue_link=lambda name, overdue=False: (
            "/reviews?"
            + urlencode({"flow": name, **({"overdue": "yes", "sort": "urgent"} if overdue else {})})
        ),
    )
