"""The dashboard, GET /dashboard: counts, charts and durations of runs made through the engine
(SQLite and PostgreSQL), the window selector, roles and team scoping, and hostile names.

The runs are made by a :class:`LocalHub` whose frozen clock is set to each moment of a
made-up morning, and the app's clock stands at 10:20 UTC of that day, so every run lands
in a known bucket of each window.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from markupsafe import escape
from pydantic import BaseModel

from hub import BusinessError, Flow, ForEach, step
from hub import models as m
from hub.registry import Registry
from hub.runtime import Hub
from hub.testing import LocalHub
from hub.web import create_app, dashboard
from hub.web.dashboard import WINDOWS, percentile, window_bounds
from hub.web.security import CSP
from tests.web.apps import PASSWORD, Clock, TestClient, add_user, log_in
from tests.web.browser import OUTPUT, Live

NS = {"svg": "http://www.w3.org/2000/svg"}
HTML = {"Accept": "text/html"}
#: The app's "now": a Monday, 10:20 UTC.
NOW = datetime(2026, 3, 2, 10, 20)
HOSTILE = "<script>alert(1)</script>"
#: What the page shows for a rate of nothing (an en dash).
NONE = "\u2013"

_CLOCK: list[LocalHub] = []


class Job(BaseModel):
    n: int = 1


@step(retries=0)
def tidy(data: Job) -> Job:
    _CLOCK[-1].advance(2.0 * data.n)  # works 2 s (4 s for n=2)
    return data


@step(retries=0)
def piece(data: int) -> int:
    _CLOCK[-1].advance(1.0)
    return data


@step(retries=0)
def check(data: Job) -> Job:
    raise BusinessError("amount over the limit")


@step(retries=0)
def ask(data: Job) -> Job:
    raise BusinessError("please approve")


tidying = Flow("tidy", [tidy])
batching = Flow("batch", [ForEach(piece)])
checking = Flow("flaky", [check])
asking = Flow("ask", [ask], team="billing", review_due=600)


def at(local: LocalHub, when: datetime) -> None:
    local.now = when


def morning(local: LocalHub) -> dict[str, str]:
    """The runs of the made-up morning (times UTC on NOW's day, the day before for one)."""
    day = NOW.replace(hour=0, minute=0)
    runs: dict[str, str] = {}

    def start(name: str, flow: str, when: datetime, items: Any = None, **data: Any) -> str:
        at(local, when)
        runs[name] = local.start(flow, data if items is None else items)
        local.drain()
        return runs[name]

    start("old", "tidy", day - timedelta(hours=19, minutes=40))  # 04:20 the day before
    start("early1", "tidy", day + timedelta(hours=5, minutes=20))
    start("early2", "tidy", day + timedelta(hours=5, minutes=50), n=2)
    start("batch", "batch", day + timedelta(hours=6, minutes=40), items=[1, 2])
    start("aborted", "flaky", day + timedelta(hours=7, minutes=20))
    at(local, day + timedelta(hours=8, minutes=20))
    local.engine.abort(runs["aborted"], by="olga", reason="not worth it")
    start("cancelled", "flaky", day + timedelta(hours=9, minutes=20))
    at(local, day + timedelta(hours=9, minutes=25))  # exactly on a 5-minute boundary
    local.engine.cancel(runs["cancelled"], by="olga", reason="duplicate")
    start("waiting", "ask", day + timedelta(hours=9, minutes=40))  # due at 09:50: overdue
    start("late", "tidy", day + timedelta(hours=10, minutes=10))
    return runs


@pytest.fixture
def local(db_url: str) -> Iterator[LocalHub]:
    made = LocalHub(Registry([tidying, batching, checking, asking]), database_url=db_url)
    made.freeze()
    _CLOCK.append(made)
    yield made
    _CLOCK.remove(made)
    made.close()


@pytest.fixture
def app_clock() -> Clock:
    clock = Clock()
    clock.now = NOW
    return clock


@pytest.fixture
def client(hub: Hub, app_clock: Clock) -> Iterator[TestClient]:
    for name, role, teams in [
        ("vic", "viewer", ()),
        ("anna", "reviewer", ("billing",)),
        ("sam", "reviewer", ("shipping",)),
        ("olga", "operator", ()),
        ("ada", "admin", ()),
    ]:
        add_user(hub, name, role, *teams)
    with TestClient(create_app(hub, clock=app_clock)) as c:
        yield c


def as_user(client: TestClient, name: str) -> TestClient:
    client.cookies.clear()
    assert log_in(client, name).status_code == 303
    return client


def text_of(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", html)).strip()


def cells(html: str) -> list[list[str]]:
    """The rows of a table's HTML, each as the text of its cells."""
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", html, re.S)
    return [[text_of(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", r, re.S)] for r in rows]


def flow_row(html: str, flow: str) -> list[str]:
    """The cells of the per-flow table's row of ``flow``, as text."""
    found = re.search(
        rf'<tr data-flow="{re.escape(str(escape(flow)))}"[^>]*>(.*?)</tr>', html, re.S
    )
    assert found, f"no row for {flow}"
    return [text_of(c) for c in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", found.group(1), re.S)]


def tile(html: str, name: str) -> str:
    found = re.search(rf'<dd id="total-{name}">(.*?)</dd>', html, re.S)
    assert found, name
    return text_of(found.group(1))


def chart(html: str, chart_id: str) -> ET.Element:
    found = re.search(rf'<svg [^>]*id="{chart_id}".*?</svg>', html, re.S)
    assert found, f"no chart {chart_id}"
    return ET.fromstring(found.group(0))  # well-formed, or it fails here


def bars_of(svg: ET.Element) -> list[tuple[str, float, str, float, float]]:
    """Each bar as (series class, value, tooltip, y, height)."""
    out = []
    for rect in svg.iterfind(".//svg:rect", NS):
        if "c-bar" not in rect.attrib.get("class", ""):
            continue
        series = rect.attrib["class"].split()[1]
        tip = "".join(rect.itertext())
        value = float(rect.attrib["data-value"])
        out.append((series, value, tip, float(rect.attrib["y"]), float(rect.attrib["height"])))
    return out


# ---------------------------------------------------------------------------- numbers
def test_the_last_24_hours_count_what_the_engine_did(local: LocalHub, client: TestClient) -> None:
    morning(local)
    page = as_user(client, "olga").get("/dashboard")
    assert page.status_code == 200
    assert page.headers["content-security-policy"] == CSP
    html = page.text
    assert "2026-03-01 11:00</time> to <time" in html and "2026-03-02 10:20</time> UTC" in html

    # started in the window: tidy 3 (not the one of the day before), batch 1, flaky 2, ask 1
    assert tile(html, "started") == "7"
    assert (tile(html, "succeeded"), tile(html, "failed"), tile(html, "cancelled")) == (
        "4",
        "1",
        "1",
    )
    assert tile(html, "rate") == "16.7 %"  # 1 failed of 6 ended
    assert (tile(html, "review"), tile(html, "open"), tile(html, "overdue")) == ("1", "1", "1")
    #            flow   started ok failed cancelled rate  waiting open overdue
    assert flow_row(html, "tidy") == ["tidy", "3", "3", "0", "0", "0.0 %", "0", "0", "0"]
    assert flow_row(html, "batch") == ["batch", "1", "1", "0", "0", "0.0 %", "0", "0", "0"]
    assert flow_row(html, "flaky") == ["flaky", "2", "0", "1", "1", "50.0 %", "0", "0", "0"]
    assert flow_row(html, "ask") == ["ask", "1", "0", "0", "0", NONE, "1", "1", "1"]
    assert flow_row(html, "hello") == ["hello", "0", "0", "0", "0", NONE, "0", "0", "0"]  # declared

    svg = chart(html, "throughput")
    bars = bars_of(svg)
    assert sorted((s, v) for s, v, *_ in bars) == [
        ("s-cancelled", 1.0),
        ("s-failed", 1.0),
        ("s-succeeded", 1.0),
        ("s-succeeded", 1.0),
        ("s-succeeded", 2.0),
    ]
    assert [t for *_, t, _y, _h in bars] == [
        "2026-03-02 05:00 to 06:00 UTC: succeeded 2 of 2 ended",
        "2026-03-02 06:00 to 07:00 UTC: succeeded 1 of 1 ended",
        "2026-03-02 08:00 to 09:00 UTC: failed 1 of 1 ended",
        "2026-03-02 09:00 to 10:00 UTC: cancelled 1 of 1 ended",
        "2026-03-02 10:00 to 11:00 UTC: succeeded 1 of 1 ended",
    ]
    heights = {v: h for _s, v, _t, _y, h in bars}
    assert heights[2.0] == pytest.approx(2 * heights[1.0], abs=0.02)  # one scale for all
    # each bar stands in its hour's slot: 24 slots of equal width from the plot's left edge
    xs = [float(r.attrib["x"]) for r in svg.iterfind(".//svg:rect", NS)]
    slot = (xs[-1] - xs[0]) / (10 - 5)  # from the 05:00 bar to the 10:00 bar
    assert xs[1] - xs[0] == pytest.approx(slot, abs=0.02)  # 06:00
    assert xs[2] - xs[0] == pytest.approx(3 * slot, abs=0.02)  # 08:00

    failure = bars_of(chart(html, "failure-rate"))
    assert [(v, t) for _s, v, t, *_ in failure] == [
        (100.0, "2026-03-02 08:00 to 09:00 UTC: failed 100.0 % (1 of 1 ended)")
    ]
    assert svg.attrib["role"] == "img"
    assert svg.attrib["aria-label"] == "Runs ended per hour, all flows: 6 in all, 1 failed"
    assert svg.find("svg:desc", NS) is not None
    ticks = ["".join(t.itertext()) for t in svg.iterfind(".//svg:text[@class='c-tick']", NS)]
    assert "11:00" in ticks and "05:00" in ticks and "0" in ticks and "2" in ticks
    # the table for screen readers: the same numbers
    table = re.search(
        r'<div class="visually-hidden">\s*<table id="chart-numbers">(.*?)</table>', html, re.S
    )
    assert table is not None
    assert (
        "<td>2026-03-02 05:00</td><td>2026-03-02 06:00</td> "
        '<td class="num">2</td><td class="num">0</td> <td class="num">0</td>'
        '<td class="num">0.0 %</td>' in re.sub(r"\s+", " ", table.group(1))
    )
    assert table.group(1).count("<tr>") == 24 + 1


def test_step_durations_and_the_overdue_items(local: LocalHub, client: TestClient) -> None:
    runs = morning(local)
    html = as_user(client, "olga").get("/dashboard").text
    durations = re.search(r'<table id="durations">(.*?)</table>', html, re.S)
    assert durations is not None
    # tidy took 2 s, 4 s and 2 s in the window (the run of the day before is out); each item
    # of batch's for-each 1 s (the for-each itself is left out); flaky's and ask's steps failed
    assert [r for r in cells(durations.group(1)) if r] == [
        ["batch", "piece[*]", "2", "1.00 s", "1.00 s", "1.00 s"],
        ["tidy", "tidy", "3", "2.00 s", "4.00 s", "4.00 s"],
    ]

    overdue = re.search(r'<table id="overdue">(.*?)</table>', html, re.S)
    assert overdue is not None
    with local.store.read() as s:
        item = s.query(m.ReviewItem).filter_by(run_id=runs["waiting"]).one()
    assert f'<a class="mono" href="/reviews/{item.id}">ask</a>' in overdue.group(1)
    assert [r for r in cells(overdue.group(1)) if r] == [
        ["ask", "ask", "business", "2026-03-02 09:50", "30 min 0.0 s"]
    ]


def test_step_durations_are_capped_per_flow_and_say_so(
    local: LocalHub, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    morning(local)
    monkeypatch.setattr(dashboard, "STEP_ROWS", 2)
    html = as_user(client, "olga").get("/dashboard").text
    durations = re.search(r'<table id="durations">(.*?)</table>', html, re.S)
    assert durations is not None
    rows = {(r[0], r[1]): r[2:] for r in cells(durations.group(1)) if r}
    assert rows[("batch", "piece[*]")] == ["2", "1.00 s", "1.00 s", "1.00 s"]  # 2: all of them
    count, p50, p95, longest = rows[("tidy", "tidy")]  # 2 of its 3 steps, whichever
    assert count == "2" and p50 in {"2.00 s", "4.00 s"} and p95 == longest
    assert "(at most 2 steps a flow)" in text_of(html)


@pytest.mark.parametrize(
    ("window", "started", "ended", "bars"),
    [
        # 09:25 to 10:20: ask and the last tidy started; the cancel at 09:25 sharp counts
        ("1h", "2", ("1", "0", "1"), 12),
        ("7d", "8", ("5", "1", "1"), 28),
    ],
)
def test_the_window_is_chosen_by_the_selector(
    local: LocalHub,
    client: TestClient,
    window: str,
    started: str,
    ended: tuple[str, str, str],
    bars: int,
) -> None:
    morning(local)
    html = as_user(client, "vic").get(f"/dashboard?window={window}").text
    assert tile(html, "started") == started
    assert (tile(html, "succeeded"), tile(html, "failed"), tile(html, "cancelled")) == ended
    label = {"1h": "Last hour", "7d": "Last 7 days"}[window]
    assert f'aria-current="true">{label}</a>' in html
    table = re.search(r'id="chart-numbers">(.*?)</table>', html, re.S)
    assert table is not None and table.group(1).count("<tr>") == bars + 1
    if window == "1h":
        tips = [t for *_, t, _y, _h in bars_of(chart(html, "throughput"))]
        assert tips == [
            "2026-03-02 09:25 to 09:30 UTC: cancelled 1 of 1 ended",
            "2026-03-02 10:10 to 10:15 UTC: succeeded 1 of 1 ended",
        ]


def test_a_run_counts_in_the_window_it_ended_in_however_old(
    local: LocalHub, client: TestClient
) -> None:
    # waits for review five days, then is aborted at 09:40: it ended in the last 24 hours
    at(local, NOW - timedelta(days=5))
    old = local.start("ask", {})
    local.drain()
    at(local, NOW - timedelta(minutes=40))
    local.engine.abort(old, by="olga", reason="the customer left")
    html = as_user(client, "olga").get("/dashboard").text
    assert flow_row(html, "ask") == ["ask", "0", "0", "1", "0", "100.0 %", "0", "0", "0"]
    tips = [t for *_, t, _y, _h in bars_of(chart(html, "throughput"))]
    assert tips == ["2026-03-02 09:00 to 10:00 UTC: failed 1 of 1 ended"]
    # the last hour (09:25 to 10:20) holds it too
    assert tile(as_user(client, "vic").get("/dashboard?window=1h").text, "failed") == "1"


def test_a_flow_can_be_charted_alone(local: LocalHub, client: TestClient) -> None:
    morning(local)
    html = as_user(client, "vic").get("/dashboard?window=24h&flow=flaky").text
    svg = chart(html, "throughput")
    assert svg.attrib["aria-label"] == "Runs ended per hour, flow flaky: 2 in all, 1 failed"
    assert sorted(s for s, *_ in bars_of(svg)) == ["s-cancelled", "s-failed"]
    assert 'href="/dashboard?window=24h">show all flows</a>' in html
    assert tile(html, "started") == "7"  # the tiles stay all flows'


def test_an_unknown_window_is_refused(client: TestClient) -> None:
    page = as_user(client, "vic").get("/dashboard?window=3w", headers=HTML)
    assert page.status_code == 400
    assert "window: choose one of 1h, 24h, 7d" in page.text


def test_bucket_bounds_and_percentiles() -> None:
    assert window_bounds(WINDOWS["24h"], NOW) == (
        datetime(2026, 3, 1, 11),
        datetime(2026, 3, 2, 11),
    )
    assert window_bounds(WINDOWS["1h"], datetime(2026, 3, 2, 10, 25)) == (
        datetime(2026, 3, 2, 9, 30),
        datetime(2026, 3, 2, 10, 30),
    )
    assert window_bounds(WINDOWS["7d"], NOW) == (
        datetime(2026, 2, 23, 12),
        datetime(2026, 3, 2, 12),
    )
    values = [float(v) for v in range(1, 21)]
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 50) == 3.0  # the rank rounds up
    assert (percentile(values, 50), percentile(values, 95), percentile([3.0], 95)) == (
        10.0,
        19.0,
        3.0,
    )


# ------------------------------------------------------------------------------ roles
@pytest.mark.parametrize("name", ["vic", "anna", "sam", "olga", "ada"])
def test_every_role_reads_the_dashboard_and_review_counts_follow_teams(
    local: LocalHub, client: TestClient, name: str
) -> None:
    morning(local)
    page = as_user(client, name).get("/dashboard")
    assert page.status_code == 200
    html = page.text
    assert '<a href="/dashboard" aria-current="page">Dashboard</a>' in html
    assert tile(html, "started") == "7"  # runs are counted for everyone, as the runs list shows
    sees = name in ("anna", "olga", "ada")  # ask's items are billing's; vic and sam have none
    assert (tile(html, "open"), tile(html, "overdue")) == (("1", "1") if sees else ("0", "0"))
    assert ("please approve" in html) is False  # no review message on the dashboard
    assert ('href="/reviews/' in html) is sees


def test_the_dashboard_needs_a_login(client: TestClient) -> None:
    page = client.get("/dashboard?window=1h", follow_redirects=False)
    assert page.status_code == 303
    assert page.headers["location"] == "/login?next=%2Fdashboard%3Fwindow%3D1h"


# ---------------------------------------------------------------------------- escaping
def test_hostile_flow_and_step_names_are_text(hub: Hub, client: TestClient) -> None:
    def add(s: Any) -> None:
        began = NOW - timedelta(hours=2)
        run = m.Run(
            flow=HOSTILE,
            status=m.RUN_FAILED,
            trigger="api",
            created_at=began,
            started_at=began,
            finished_at=began + timedelta(seconds=5),
        )
        s.add(run)
        s.flush()
        s.add(
            m.Step(
                run_id=run.id,
                key='<img src=x onerror="alert(2)">',
                node="x",
                kind="step",
                status=m.STEP_SUCCEEDED,
                created_at=began,
                started_at=began,
                finished_at=began + timedelta(seconds=5),
            )
        )

    hub.store.run(add)
    as_user(client, "vic")
    for url in ("/dashboard", "/dashboard?window=24h&flow=" + HOSTILE.replace("<", "%3C")):
        html = client.get(url).text
        assert HOSTILE not in html and "<img" not in html
        assert str(escape(HOSTILE)) in html
        assert flow_row(html, HOSTILE)[0] == str(escape(HOSTILE))  # text: no tag to strip
        for chart_id in ("throughput", "failure-rate"):
            svg = chart(html, chart_id)  # parses: nothing got out of its element
            assert svg.find(".//svg:script", NS) is None
    throughput = chart(html, "throughput")
    assert (
        throughput.attrib["aria-label"]
        == f"Runs ended per hour, flow {HOSTILE}: 1 in all, 1 failed"
    )
    assert HOSTILE in "".join(throughput.find("svg:desc", NS).itertext())  # type: ignore[union-attr]
    assert 'href="/dashboard?window=24h&amp;flow=%3Cscript%3Ealert%281%29%3C%2Fscript%3E"' in html
    assert str(escape('<img src=x onerror="alert(2)">')) in html  # the step, in the durations


# ---------------------------------------------------------------------------- a browser
@pytest.mark.browser
def test_the_charts_render_in_chromium_within_the_csp(page: Any, live: Live) -> None:
    add_user(live.hub, "vic", "viewer")
    made = LocalHub(Registry([tidying, checking]), database_url=live.database_url)
    made.freeze()
    made.now = m.utcnow() - timedelta(minutes=1)  # all of it over before the page is asked for
    _CLOCK.append(made)
    try:
        for _ in range(3):
            made.start("tidy", {})
        failed = made.start("flaky", {})
        made.drain()
        made.engine.abort(failed, by="vic", reason="no")
    finally:
        _CLOCK.remove(made)
        made.close()
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.add_init_script(
        "window.__violations = [];"
        "document.addEventListener('securitypolicyviolation',"
        " e => window.__violations.push(e.violatedDirective));"
    )
    page.goto(f"{live.url}/login?next=/dashboard")
    page.fill("#name", "vic")
    page.fill("#password", PASSWORD)
    with page.expect_navigation() as navigation:
        page.click("button[type=submit]")
    assert navigation.value.url.endswith("/dashboard")
    for chart_id in ("throughput", "failure-rate"):
        box = page.locator(f"svg#{chart_id}").bounding_box()
        assert box is not None and box["width"] > 600 and box["height"] > 100
    bars = page.locator("svg#throughput rect.c-bar")
    assert bars.count() >= 2
    assert all(b.bounding_box()["height"] > 5 for b in bars.all())
    assert page.locator("#total-started").inner_text() == "4"
    # the numbers' table is out of sight, yet a table to assistive technology
    assert page.get_by_role("table", name=re.compile(r"^Runs ended per hour")).count() == 1
    hidden = page.locator("div.visually-hidden:has(#chart-numbers)").bounding_box()
    assert hidden is not None and hidden["width"] <= 1 and hidden["height"] <= 1
    page.click("text=Last hour")
    page.wait_for_url("**/dashboard?window=1h")
    OUTPUT.mkdir(exist_ok=True)
    page.screenshot(path=str(OUTPUT / "dashboard.png"), full_page=True)
    assert page.evaluate("window.__violations") == []
    assert errors == []
