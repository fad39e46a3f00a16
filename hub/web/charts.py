"""Charts drawn on the server as inline SVG: column charts for the dashboard, a Gantt for a run.

No script draws anything in the browser. Every chart is one ``<svg>`` with
``role="img"``, an ``aria-label``, a ``<title>`` and a ``<desc>``; each bar
carries a ``<title>`` (the browser's tooltip). The page puts the same numbers
in a table next to the chart for screen readers.

The CSP forbids ``style`` attributes and inline ``<style>``: geometry is
written as SVG attributes (``x``, ``width``, ...), colours come from classes
that ``static/hub.css`` defines. All text that reaches the markup goes
through :func:`tag`, which escapes it: flow and step names are user text.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from markupsafe import Markup, escape

SVG_NS = "http://www.w3.org/2000/svg"
_ATTR_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9:_-]*$")
_TOKEN = re.compile(r"[^a-z0-9_-]+")


# -------------------------------------------------------------------- markup
def num(value: float) -> str:
    """A coordinate as short text: at most two decimals, no trailing zeros, never ``-0``."""
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def token(value: str) -> str:
    """``value`` made safe as part of a class name (statuses are the hub's own words)."""
    return _TOKEN.sub("-", value.lower()) or "other"


def tag(name: str, attrs: Mapping[str, object] | None = None, *children: str | Markup) -> Markup:
    """One element: attribute values and plain-text children escaped, Markup children kept.

    An attribute whose value is None is left out; a float is written with :func:`num`.
    """
    if not _ATTR_NAME.match(name):
        raise ValueError(f"not an element name: {name!r}")
    parts = [name]
    for key, value in (attrs or {}).items():
        if value is None:
            continue
        if not _ATTR_NAME.match(key):
            raise ValueError(f"not an attribute name: {key!r}")
        text = num(value) if isinstance(value, float) else str(value)
        parts.append(f'{key}="{escape(text)}"')
    head = " ".join(parts)
    if not children:
        return Markup(f"<{head}/>")
    body = "".join(str(escape(c)) for c in children)  # escape() keeps Markup as it is
    return Markup(f"<{head}>{body}</{name}>")


def svg(
    width: float, height: float, label: str, desc: str, css: str, *body: Markup, id: str = ""
) -> Markup:
    """The outer element: sized by its viewBox (the stylesheet scales it), labelled, described."""
    return tag(
        "svg",
        {
            "xmlns": SVG_NS,
            "class": css,
            "id": id or None,
            "viewBox": f"0 0 {num(width)} {num(height)}",
            "width": num(width),
            "height": num(height),
            "role": "img",
            "aria-label": label,
            "preserveAspectRatio": "xMinYMin meet",
        },
        tag("title", None, label),
        tag("desc", None, desc),
        *body,
    )


# -------------------------------------------------------------------- scales
def nice_step(raw: float) -> float:
    """The smallest of 1, 2 or 5 times a power of ten that is at least ``raw`` (> 0)."""
    if raw <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(raw))
    for factor in (1.0, 2.0, 5.0, 10.0):
        if factor * power >= raw * (1 - 1e-9):
            return factor * power
    return 10.0 * power  # pragma: no cover - the loop always returns


#: Steps of a time axis above a minute, in seconds: whole minutes, hours and days.
_TIME_STEPS = (60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800)


def time_step(span: float, ticks: int = 6) -> float:
    """A tick step in seconds for an axis of ``span`` seconds: 1-2-5 below a minute, else
    whole minutes, hours or days; about ``ticks`` ticks."""
    raw = span / max(ticks, 1)
    if raw <= 30:
        return nice_step(raw)
    return float(next((s for s in _TIME_STEPS if s >= raw), 604800))


def count_step(top: float, ticks: int = 4) -> float:
    """A tick step for a count axis reaching ``top``: a whole number of 1, 2 or 5 times 10^n."""
    return max(1.0, nice_step(top / max(ticks, 1)))


def offset_text(seconds: float, step: float = 1.0) -> str:
    """A time since the start as an axis label: ``0 s``, ``0.5 s``, ``45 s``, ``2 min``,
    ``1 min 30 s``, ``1 h 15 min``; decimals as fine as ``step`` needs."""
    if seconds == 0:
        return "0 s"
    if seconds < 60 or step < 1:
        decimals = max(0, -math.floor(math.log10(step))) if step < 1 else 0
        return f"{seconds:.{decimals}f} s"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{hours} h" if hours else "", f"{minutes} min" if minutes else ""]
    parts.append(f"{secs} s" if secs else "")
    return " ".join(p for p in parts if p) or "0 s"


def duration_text(seconds: float) -> str:
    """A duration for people: ``12.3 ms``, ``2.345 s``, ``1 min 5.2 s``, ``2 h 3 min``."""
    if seconds < 1:
        return f"{seconds * 1000:.1f} ms"
    if seconds < 60:
        return f"{seconds:.3f} s"
    if seconds < 3600:
        minutes, secs = divmod(seconds, 60)
        return f"{int(minutes)} min {secs:.1f} s"
    hours, rest = divmod(round(seconds), 3600)
    return f"{hours} h {rest // 60} min"


# ------------------------------------------------------------ column charts
@dataclass(frozen=True)
class Series:
    """One stacked part of each column: ``key`` names its colour class (``s-<key>``)."""

    key: str
    label: str


@dataclass(frozen=True)
class Column:
    """One column: its axis label (may be empty), the head of its tooltips and its values."""

    label: str
    tip: str
    values: Mapping[str, float]
    #: what the tooltip adds after each value, e.g. "of 12 finished"
    note: str = ""


@dataclass(frozen=True)
class Frame:
    """Where the plot sits in the viewBox of a column chart."""

    width: float = 960.0
    height: float = 260.0
    left: float = 56.0
    right: float = 16.0
    top: float = 14.0
    bottom: float = 46.0

    @property
    def plot_width(self) -> float:
        return self.width - self.left - self.right

    @property
    def plot_height(self) -> float:
        return self.height - self.top - self.bottom


def column_chart(
    columns: Sequence[Column],
    series: Sequence[Series],
    *,
    label: str,
    desc: str,
    x_title: str,
    y_title: str,
    percent: bool = False,
    empty: str = "Nothing to draw in this window.",
    frame: Frame = Frame(),
    id: str = "",
) -> Markup:
    """Columns of stacked bars (``series`` in order, bottom up) over a labelled x axis.

    With ``percent`` the values are percentages and the y axis tops out at
    100 at most. A column's bars are drawn only for values above zero.
    """
    totals = [sum(c.values.get(s.key, 0.0) for s in series) for c in columns]
    peak = max(totals, default=0.0)
    if percent:
        step = nice_step(max(peak, 1.0) / 4)
        top = min(100.0, math.ceil(max(peak, 1.0) / step) * step)
    else:
        step = count_step(peak)
        top = max(step, math.ceil(peak / step) * step)
    f = frame
    base = f.top + f.plot_height

    def y(value: float) -> float:
        return base - value / top * f.plot_height

    body: list[Markup] = []
    grid: list[Markup] = []
    for k in range(round(top / step) + 1):
        tick = k * step
        ty = y(tick)
        text = f"{tick:g} %" if percent else f"{tick:g}"
        grid.append(
            tag(
                "line",
                {"class": "c-grid", "x1": f.left, "x2": f.left + f.plot_width, "y1": ty, "y2": ty},
            )
        )
        grid.append(
            tag(
                "text",
                {"class": "c-tick", "x": f.left - 6, "y": ty + 4.0, "text-anchor": "end"},
                text,
            )
        )
    body.append(tag("g", {"class": "c-axis c-y"}, *grid))

    slot = f.plot_width / max(len(columns), 1)
    bar_width = max(1.0, slot * 0.72)
    bars: list[Markup] = []
    xticks: list[Markup] = []
    for i, column in enumerate(columns):
        x = f.left + i * slot + (slot - bar_width) / 2
        stacked = 0.0
        for s in series:
            value = column.values.get(s.key, 0.0)
            if value <= 0:
                continue
            shown = f"{value:.1f} %" if percent else f"{value:g}"
            tip = f"{column.tip}: {s.label} {shown}" + (f" {column.note}" if column.note else "")
            y_top, y_bottom = y(stacked + value), y(stacked)
            bars.append(
                tag(
                    "rect",
                    {
                        "class": f"c-bar s-{token(s.key)}",
                        "x": x,
                        "y": y_top,
                        "width": bar_width,
                        "height": max(y_bottom - y_top, 0.5),
                        "data-value": f"{value:g}",
                    },
                    tag("title", None, tip),
                )
            )
            stacked += value
        if column.label:
            cx = f.left + (i + 0.5) * slot
            xticks.append(
                tag(
                    "line",
                    {"class": "c-tickmark", "x1": cx, "x2": cx, "y1": base, "y2": base + 4.0},
                )
            )
            xticks.append(
                tag(
                    "text",
                    {"class": "c-tick", "x": cx, "y": base + 17.0, "text-anchor": "middle"},
                    column.label,
                )
            )
    body.append(tag("g", {"class": "c-bars"}, *bars) if bars else Markup(""))
    body.append(
        tag(
            "g",
            {"class": "c-axis c-x"},
            tag(
                "line",
                {
                    "class": "c-baseline",
                    "x1": f.left,
                    "x2": f.left + f.plot_width,
                    "y1": base,
                    "y2": base,
                },
            ),
            *xticks,
            tag(
                "text",
                {
                    "class": "c-title",
                    "x": f.left + f.plot_width / 2,
                    "y": f.height - 6.0,
                    "text-anchor": "middle",
                },
                x_title,
            ),
        )
    )
    body.append(
        tag(
            "text",
            {
                "class": "c-title",
                "x": 14.0,
                "y": f.top + f.plot_height / 2,
                "text-anchor": "middle",
                "transform": f"rotate(-90 14 {num(f.top + f.plot_height / 2)})",
            },
            y_title,
        )
    )
    if not bars:
        body.append(
            tag(
                "text",
                {
                    "class": "c-empty",
                    "x": f.left + f.plot_width / 2,
                    "y": f.top + f.plot_height / 2,
                    "text-anchor": "middle",
                },
                empty,
            )
        )
    return svg(f.width, f.height, label, desc, "chart", *body, id=id)


# --------------------------------------------------------------------- Gantt
@dataclass(frozen=True)
class GanttBar:
    """A stretch of a row, in seconds since the run's start; ``status`` picks its colour."""

    start: float
    end: float
    status: str
    tip: str
    #: an attempt's number (drawn as ``data-attempt``); None for other stretches
    attempt: int | None = None
    #: a thin bar: a container's span, or a wait that is not work
    thin: bool = False


@dataclass(frozen=True)
class GanttGap:
    """A wait between two bars of a row (a retry's backoff), drawn as a dotted line."""

    start: float
    end: float
    tip: str


@dataclass(frozen=True)
class GanttRow:
    """One row: a step, or one item of a for-each."""

    key: str
    label: str
    tip: str
    status: str
    href: str | None = None
    indent: int = 0
    bars: Sequence[GanttBar] = ()
    gaps: Sequence[GanttGap] = field(default_factory=tuple)


@dataclass(frozen=True)
class GanttFrame:
    """Where the Gantt's plot sits in its viewBox: labels left, the time axis on top."""

    width: float = 960.0
    left: float = 230.0
    right: float = 20.0
    top: float = 34.0
    row: float = 22.0
    bar: float = 14.0
    thin: float = 6.0
    bottom: float = 10.0
    #: the narrowest bar drawn, so that a very short attempt still shows
    min_bar: float = 1.5
    #: the longest label drawn in full; longer ones are cut (the tooltip has all of it)
    label_chars: int = 32

    @property
    def plot_width(self) -> float:
        return self.width - self.left - self.right

    def height(self, rows: int) -> float:
        return self.top + max(rows, 1) * self.row + self.bottom

    def x(self, seconds: float, span: float) -> float:
        """Where a moment ``seconds`` after the start sits (clamped to the plot)."""
        if span <= 0:
            return self.left
        return self.left + min(max(seconds / span, 0.0), 1.0) * self.plot_width


def gantt(
    rows: Sequence[GanttRow],
    span: float,
    *,
    label: str,
    desc: str,
    now: float | None = None,
    frame: GanttFrame = GanttFrame(),
    id: str = "",
) -> Markup:
    """A Gantt of ``rows`` on a time axis of ``span`` seconds from the run's start.

    ``now`` (seconds since the start) draws a "now" line, for a run that has
    not ended. A bar is at least ``frame.min_bar`` wide.
    """
    f = frame
    height = f.height(len(rows))
    bottom = f.top + len(rows) * f.row
    step = time_step(span) if span > 0 else 1.0
    axis: list[Markup] = [
        tag(
            "line",
            {
                "class": "g-baseline",
                "x1": f.left,
                "x2": f.left + f.plot_width,
                "y1": f.top,
                "y2": f.top,
            },
        )
    ]
    ticks = math.floor(span / step * (1 + 1e-9)) + 1 if span > 0 else 0
    for k in range(ticks):
        tick = k * step
        tx = f.x(tick, span)
        axis.append(
            tag("line", {"class": "g-grid", "x1": tx, "x2": tx, "y1": f.top - 4.0, "y2": bottom})
        )
        axis.append(
            tag(
                "text",
                {"class": "g-tick", "x": tx, "y": f.top - 8.0, "text-anchor": "middle"},
                offset_text(tick, step),
            )
        )
    axis.append(
        tag("text", {"class": "g-title", "x": 4.0, "y": f.top - 8.0}, "Since the run's start")
    )
    body: list[Markup] = [tag("g", {"class": "g-axis"}, *axis)]

    for i, row in enumerate(rows):
        y0 = f.top + i * f.row
        parts: list[Markup] = [
            tag(
                "rect",
                {
                    "class": "g-stripe" + (" g-odd" if i % 2 else ""),
                    "x": 0.0,
                    "y": y0,
                    "width": f.width,
                    "height": f.row,
                },
            )
        ]
        room = f.label_chars - 2 * row.indent  # an indented label has less room
        text = row.label if len(row.label) <= room else row.label[: room - 1] + "…"
        name = tag(
            "text",
            {
                "class": f"g-label g-label-{token(row.status)}",
                "x": 6.0 + 12.0 * row.indent,
                "y": y0 + f.row / 2 + 4.0,
            },
            tag("title", None, row.tip),
            text,
        )
        parts.append(tag("a", {"href": row.href}, name) if row.href else name)
        for gap in row.gaps:
            gy = y0 + f.row / 2
            parts.append(
                tag(
                    "line",
                    {
                        "class": "g-gap",
                        "x1": f.x(gap.start, span),
                        "x2": f.x(gap.end, span),
                        "y1": gy,
                        "y2": gy,
                    },
                    tag("title", None, gap.tip),
                )
            )
        for b in row.bars:
            height_ = f.thin if b.thin else f.bar
            x0 = f.x(b.start, span)
            width = max(f.x(b.end, span) - x0, f.min_bar)
            parts.append(
                tag(
                    "rect",
                    {
                        "class": f"g-bar g-{token(b.status)}" + (" g-thin" if b.thin else ""),
                        "x": x0,
                        "y": y0 + (f.row - height_) / 2,
                        "width": width,
                        "height": height_,
                        "data-attempt": b.attempt,
                    },
                    tag("title", None, b.tip),
                )
            )
        body.append(
            tag("g", {"class": f"g-row g-row-{token(row.status)}", "data-key": row.key}, *parts)
        )

    if now is not None and span > 0:
        nx = f.x(now, span)
        body.append(
            tag(
                "line",
                {"class": "g-now", "x1": nx, "x2": nx, "y1": f.top, "y2": bottom},
                tag("title", None, "now"),
            )
        )
    if not rows:
        body.append(
            tag(
                "text",
                {
                    "class": "c-empty",
                    "x": f.left + f.plot_width / 2,
                    "y": f.top + f.row / 2 + 4.0,
                    "text-anchor": "middle",
                },
                "No step has started yet.",
            )
        )
    return svg(f.width, height, label, desc, "gantt", *body, id=id)
