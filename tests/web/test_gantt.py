"""The run page's Gantt: one row per step and for-each item, one bar per attempt (SQLite and
PostgreSQL), placed in proportion to the attempts' times; and the SVG in a real Chromium.

The runs are made through a :class:`LocalHub` with a frozen clock that the steps move
themselves, so every attempt lasts a known time and a retry waits a known while.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from pydantic import BaseModel
from sqlalchemy import select

from hub import Flow, ForEach, TransientError, step
from hub import models as m
from hub.registry import Registry
from hub.runtime import Hub
from hub.testing import LocalHub
from hub.views import describe_run
from hub.web import create_app
from hub.web.charts import GanttFrame
from hub.web.run_view import GANTT_ROWS, gantt
from hub.web.security import CSP
from tests.web.apps import PASSWORD, TestClient, add_user, log_in
from tests.web.browser import OUTPUT, Live

NS = {"svg": "http://www.w3.org/2000/svg"}
FRAME = GanttFrame()
HOSTILE_FLOW = "<script>alert(1)</script>"
HOSTILE_STEP = '<img src=x onerror="alert(2)">&amp;'

#: The LocalHub whose clock the steps below move (set by :func:`timed_run`).
_CLOCK: list[LocalHub] = []
_CALLS: Counter[str] = Counter()


def _spend(seconds: float) -> None:
    """Let ``seconds`` pass on the frozen clock, as if the step worked that long."""
    _CLOCK[-1].advance(seconds)


class Order(BaseModel):
    lines: list[str]


@step(retries=0)
def split(data: Order) -> list[str]:
    _spend(2.0)
    return data.lines


@step(retries=2)
def push(data: str) -> str:
    _CALLS[data] += 1
    _spend(3.0 if data == "a" else 1.5)
    if data == "a" and _CALLS[data] == 1:
        raise TransientError("the ERP is busy", retry_after=4)
    return data.upper()


@step(retries=0)
def total(data: list[str]) -> int:
    _spend(0.5)
    return len(data)


orders = Flow("orders", [split, ForEach(push), total])


@step(retries=0)
def prepare(data: Order) -> Order:
    _spend(3.0)
    return data


@step(retries=0, queue="browser")  # another queue: published, not run at once by the same worker
def slow(data: Order) -> int:
    return len(data.lines)


waits = Flow("waits", [prepare, slow])


@pytest.fixture
def local(db_url: str) -> Iterator[LocalHub]:
    made = LocalHub(Registry([orders, waits]), database_url=db_url)
    made.freeze()
    _CLOCK.append(made)
    _CALLS.clear()
    yield made
    _CLOCK.remove(made)
    made.close()


@pytest.fixture
def viewer(hub: Hub) -> Iterator[TestClient]:
    add_user(hub, "vic", "viewer")
    with TestClient(create_app(hub)) as c:
        assert log_in(c, "vic").status_code == 303
        yield c


def timed_run(local: LocalHub, lines: list[str]) -> str:
    """A run of ``orders``: item ``a`` fails once and is retried after 4 s; all succeed."""
    run_id = local.start("orders", {"lines": lines})
    local.drain()
    local.advance(5)  # past the retry's time
    local.drain()
    assert local.run(run_id)["status"] == "succeeded"
    return run_id


def svg_of(html: str) -> ET.Element:
    """The Gantt's SVG of a page, parsed as XML (so it must be well-formed)."""
    found = re.search(r'<svg [^>]*id="gantt".*?</svg>', html, re.S)
    assert found, "no Gantt on the page"
    return ET.fromstring(found.group(0))


def rows_of(svg: ET.Element) -> dict[str, ET.Element]:
    return {g.attrib["data-key"]: g for g in svg.iterfind(".//svg:g[@data-key]", NS)}


def bars(row: ET.Element) -> list[ET.Element]:
    return row.findall("svg:rect[@class]", NS)[1:]  # the first is the row's stripe


def attempts_in_db(local: LocalHub, run_id: str) -> dict[tuple[str, int], tuple[float, float]]:
    """Each attempt's (key, number) -> (start, end) in seconds since the run's start."""
    with local.store.read() as s:
        run = s.get(m.Run, run_id)
        assert run is not None and run.started_at is not None
        rows = s.execute(
            select(m.Step.key, m.Attempt.number, m.Attempt.started_at, m.Attempt.finished_at)
            .join(m.Step, m.Step.id == m.Attempt.step_id)
            .where(m.Attempt.run_id == run_id, m.Step.kind == "step")
        ).all()
        start = run.started_at
        return {
            (key, n): ((a - start).total_seconds(), (b - start).total_seconds())
            for key, n, a, b in rows
        }


def run_span(local: LocalHub, run_id: str) -> float:
    with local.store.read() as s:
        run = s.get(m.Run, run_id)
        assert run is not None and run.started_at and run.finished_at
        return (run.finished_at - run.started_at).total_seconds()


def seconds_at(x: float, span: float) -> float:
    """The time since the run's start that x stands for on the axis."""
    return (x - FRAME.left) / FRAME.plot_width * span


# ---------------------------------------------------------------------------- geometry
def test_each_attempt_is_a_bar_placed_and_sized_in_proportion_to_its_times(
    local: LocalHub, viewer: TestClient
) -> None:
    run_id = timed_run(local, ["a", "b"])
    svg = svg_of(viewer.get(f"/runs/{run_id}").text)
    span = run_span(local, run_id)
    # split 2 s; a 3 s (fails, may retry at +9); b 1.5 s; the clock moves to +11.5: a 3 s;
    # total 0.5 s
    assert span == pytest.approx(15.0, abs=0.002)

    rows = rows_of(svg)
    assert list(rows) == ["split", "push", "push[0]", "push[1]", "total"]
    expected = attempts_in_db(local, run_id)
    assert sorted(expected) == [
        ("push[0]", 1),
        ("push[0]", 2),
        ("push[1]", 1),
        ("split", 1),
        ("total", 1),
    ]
    drawn = {}
    for key, row in rows.items():
        for rect in row.iterfind("svg:rect[@data-attempt]", NS):
            x, width = float(rect.attrib["x"]), float(rect.attrib["width"])
            drawn[(key, int(rect.attrib["data-attempt"]))] = (
                seconds_at(x, span),
                seconds_at(x + width, span),
            )
    assert sorted(drawn) == sorted(expected)
    for attempt, (began, ended) in expected.items():
        # 0.01 viewBox units of rounding are under 0.0003 s here; times are kept to the ms
        assert drawn[attempt] == pytest.approx((began, ended), abs=0.003), attempt
    # the bars' widths are the attempts' durations at one scale
    assert drawn[("push[0]", 1)][1] - drawn[("push[0]", 1)][0] == pytest.approx(3.0, abs=0.003)
    assert drawn[("total", 1)][1] - drawn[("total", 1)][0] == pytest.approx(0.5, abs=0.003)

    # the retry's wait is a gap between the two bars of push[0], with a dotted line over it
    first, second = drawn[("push[0]", 1)], drawn[("push[0]", 2)]
    assert second[0] - first[1] == pytest.approx(6.5, abs=0.003)
    (gap,) = rows["push[0]"].findall("svg:line[@class='g-gap']", NS)
    assert seconds_at(float(gap.attrib["x1"]), span) == pytest.approx(first[1], abs=0.003)
    assert seconds_at(float(gap.attrib["x2"]), span) == pytest.approx(second[0], abs=0.003)
    assert "waited 6.500 s before attempt 2" in "".join(gap.itertext())

    classes = {k: [b.attrib["class"] for b in bars(r)] for k, r in rows.items()}
    assert classes["push[0]"] == ["g-bar g-failed", "g-bar g-succeeded"]
    assert classes["push"] == ["g-bar g-succeeded g-thin"]  # the for-each: its own span
    tips = ["".join(b.itertext()) for b in bars(rows["push[0]"])]
    assert tips[0].startswith("push[0], attempt 1 of 2: failed (transient)")
    assert "3.000 s" in tips[0] and "UTC to" in tips[0]


def test_the_axis_counts_seconds_from_the_run_start(local: LocalHub, viewer: TestClient) -> None:
    run_id = timed_run(local, ["a", "b"])
    svg = svg_of(viewer.get(f"/runs/{run_id}").text)
    span = run_span(local, run_id)
    ticks = {
        "".join(t.itertext()): float(t.attrib["x"])
        for t in svg.iterfind(".//svg:text[@class='g-tick']", NS)
    }
    assert list(ticks) == ["0 s", "5 s", "10 s", "15 s"]
    for label, x in ticks.items():
        assert seconds_at(x, span) == pytest.approx(float(label.removesuffix(" s")), abs=0.01)
    assert svg.attrib["role"] == "img"
    assert svg.attrib["aria-label"].startswith(f"Timeline of run {run_id} (orders): 5 steps")
    assert svg.find("svg:title", NS) is not None
    desc = svg.find("svg:desc", NS)
    assert desc is not None and "1 step retried" in (desc.text or "")


def test_a_running_attempt_reaches_now(local: LocalHub) -> None:
    run_id = local.start("waits", {"lines": ["x"]})
    ((first, _queue, _due),) = local.queue
    local.engine.execute(first)  # prepare: 3 s
    with local.store.read() as s:
        second = s.scalars(
            select(m.Step.id).where(m.Step.run_id == run_id, m.Step.status == m.STEP_READY)
        ).one()
    local.advance(1.0)
    assert local.engine.claim(second) is not None  # a worker took it, and is still at it
    with local.store.read() as s:
        run = describe_run(s, run_id, attempts=True)
    start = datetime.fromisoformat(run["started_at"].removesuffix("Z"))

    def running_bar(now: datetime) -> tuple[float, float]:
        svg = ET.fromstring(str(gantt(run, now)["svg"]))
        (row,) = (r for k, r in rows_of(svg).items() if k == "slow")
        (rect,) = row.iterfind("svg:rect[@data-attempt='1']", NS)
        assert rect.attrib["class"] == "g-bar g-running"
        assert "still running" in "".join(rect.itertext())
        (line,) = svg.iterfind(".//svg:line[@class='g-now']", NS)
        assert float(line.attrib["x1"]) == pytest.approx(FRAME.left + FRAME.plot_width)
        x, width = float(rect.attrib["x"]), float(rect.attrib["width"])
        return (x - FRAME.left) / FRAME.plot_width, width / FRAME.plot_width

    # slow began 4 s after the start; now is 10 s, then 20 s after it: the bar reaches now
    assert running_bar(start + timedelta(seconds=10)) == pytest.approx((0.4, 0.6), abs=1e-4)
    assert running_bar(start + timedelta(seconds=20)) == pytest.approx((0.2, 0.8), abs=1e-4)


def test_a_long_run_draws_its_first_rows_and_links_to_the_full_list(
    local: LocalHub, viewer: TestClient
) -> None:
    lines = [f"l{i}" for i in range(GANTT_ROWS + 10)]
    run_id = local.start("orders", {"lines": lines})
    local.drain()
    assert local.run(run_id)["status"] == "succeeded"
    text = viewer.get(f"/runs/{run_id}").text
    svg = svg_of(text)
    assert len(rows_of(svg)) == GANTT_ROWS
    steps = len(lines) + 3  # split, the for-each, each item, total
    more = steps - GANTT_ROWS
    assert f'{more} more steps not drawn: <a href="#step-list">see the full list</a>' in text
    assert 'id="step-list"' in text
    assert len(re.findall(r'<a class="mono" href="#step-\d+">', text)) == steps
    assert f"{more} more are not" in "".join(svg.find("svg:desc", NS).itertext())  # type: ignore[union-attr]


# ---------------------------------------------------------------------------- escaping
def hostile_run(hub: Hub) -> str:
    """A run whose flow and step names are markup (rows as a foreign writer could leave them)."""
    now = m.utcnow()

    def add(s: Any) -> str:
        run = m.Run(
            flow=HOSTILE_FLOW,
            status=m.RUN_RUNNING,
            trigger="api",
            created_at=now,
            started_at=now,
        )
        s.add(run)
        s.flush()
        row = m.Step(
            run_id=run.id,
            key=HOSTILE_STEP,
            node=HOSTILE_STEP,
            kind="step",
            status=m.STEP_RUNNING,
            attempts=1,
            created_at=now,
            started_at=now,
        )
        s.add(row)
        s.flush()
        s.add(
            m.Attempt(
                step_id=row.id,
                run_id=run.id,
                number=1,
                status="running",
                idempotency_key="k",
                started_at=now,
            )
        )
        return str(run.id)

    return str(hub.store.run(add))


def test_flow_and_step_names_are_text_in_the_svg(hub: Hub, viewer: TestClient) -> None:
    run_id = hostile_run(hub)
    text = viewer.get(f"/runs/{run_id}").text
    for raw in (HOSTILE_FLOW, "<img src=x", 'onerror="alert(2)"'):
        assert raw not in text
    svg = svg_of(text)  # well-formed XML: nothing got out of its element
    assert HOSTILE_FLOW in svg.attrib["aria-label"]
    (row,) = rows_of(svg).values()
    assert row.attrib["data-key"] == HOSTILE_STEP
    label = row.find("svg:a/svg:text", NS)
    assert label is not None
    tip = label.find("svg:title", NS)
    assert tip is not None and (tip.text or "").startswith(f"{HOSTILE_STEP} (step): running")
    assert label.text is None and (tip.tail or "") == HOSTILE_STEP[:31] + "…"  # cut, in full above
    (bar,) = row.iterfind("svg:rect[@data-attempt]", NS)
    assert "".join(bar.itertext()).startswith(f"{HOSTILE_STEP}, attempt 1 of 1: running")
    assert svg.find(".//svg:script", NS) is None and svg.find(".//svg:img", NS) is None
    assert "&lt;img src=x onerror=&#34;alert(2)&#34;&gt;&amp;amp;" in text


# ---------------------------------------------------------------------------- a browser
@pytest.mark.browser
def test_the_gantt_renders_in_chromium_within_the_csp(page: Any, live: Live) -> None:
    add_user(live.hub, "vic", "viewer")
    made = LocalHub(Registry([orders]), database_url=live.database_url)
    made.freeze()
    _CLOCK.append(made)
    _CALLS.clear()
    try:
        run_id = timed_run(made, ["a", "b", "c"])
    finally:
        _CLOCK.remove(made)
        made.close()
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.add_init_script(
        "window.__violations = [];"
        "document.addEventListener('securitypolicyviolation',"
        " e => window.__violations.push(e.violatedDirective + ' ' + e.blockedURI));"
    )
    page.goto(f"{live.url}/login?next=/runs/{run_id}")
    page.fill("#name", "vic")
    page.fill("#password", PASSWORD)
    with page.expect_navigation() as navigation:
        page.click("button[type=submit]")
    response = navigation.value
    assert response.url.endswith(f"/runs/{run_id}")
    assert response.headers["content-security-policy"] == CSP

    chart = page.locator("svg#gantt")
    box = chart.bounding_box()
    assert box is not None and box["width"] > 600 and box["height"] > 100
    assert page.locator("svg#gantt g[data-key]").count() == 6
    widths = [r.bounding_box()["width"] for r in page.locator("svg#gantt rect[data-attempt]").all()]
    assert len(widths) == 6 and all(w > 2 for w in widths)
    failed = page.locator("svg#gantt rect.g-failed")
    fill = failed.evaluate("el => getComputedStyle(el).fill")
    assert fill == "rgb(179, 38, 30)"  # the stylesheet's colour for a failed attempt applies
    OUTPUT.mkdir(exist_ok=True)
    page.screenshot(path=str(OUTPUT / "run-gantt.png"), full_page=True)
    assert page.evaluate("window.__violations") == []
    assert errors == []
