"""The run page, GET /runs/{id}: header, timeline, data as text, review items (SQLite and PostgreSQL).

Hostile text from a bot (RELIABILITY item 34) must come out escaped; the
real-browser half of that item is in ``test_browser.py``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from markupsafe import escape

from hub.registry import Registry
from hub.runtime import Hub
from hub.testing import LocalHub
from hub.web import create_app
from hub.web.run_view import GRAIN, bar
from hub.web.security import CSP
from tests.conftest import ROOT
from tests.web.apps import TestClient, add_user, log_in, paused_run, work
from tests.web.hostile import IMAGE, MESSAGE, PAGE, SCRIPT, scraper

HTML = {"Accept": "text/html"}


@pytest.fixture
def client(hub: Hub) -> Iterator[TestClient]:
    add_user(hub, "vic", "viewer")
    with TestClient(create_app(hub)) as c:
        yield c


@pytest.fixture
def viewer(client: TestClient) -> TestClient:
    assert log_in(client, "vic").status_code == 303
    return client


def hostile_run(db_url: str) -> str:
    """A run of ``scraper`` waiting for review, with script in its error, review and output."""
    local = LocalHub(Registry([scraper]), database_url=db_url)
    try:
        run_id = local.start("scraper", {"number": "4711"})
        local.drain()
        assert local.run(run_id)["status"] == "needs_review"
        return run_id
    finally:
        local.close()


def test_the_run_page_shows_the_header_the_steps_in_order_and_their_data(
    hub: Hub, viewer: TestClient
) -> None:
    run_id = hub.engine.start_run("hello", {"name": " ada  lovelace "}, trigger="api").run_id
    work(hub)
    page = viewer.get(f"/runs/{run_id}")
    assert page.status_code == 200
    assert page.headers["content-security-policy"] == CSP
    text = page.text
    assert "<h1>hello</h1>" in text
    assert "status-succeeded" in text
    assert ">api<" in text  # the trigger
    keys = re.findall(r'<a class="mono" href="#step-\d+">([^<]+)</a>', text)
    assert keys == ["clean", "greet", "sign"]
    assert len(re.findall(r'class="tl-bar tl-at-\d+ tl-w-\d+ bar-succeeded"', text)) == 3
    assert escape('"name": "Ada Lovelace"') in text  # an output as JSON
    assert " style=" not in text and "<script" not in text  # the CSP allows neither


def test_the_runs_list_links_each_run_to_its_page(hub: Hub, viewer: TestClient) -> None:
    run_id = hub.engine.start_run("hello", {"name": "Ada"}, trigger="api").run_id
    assert f'href="/runs/{run_id}"' in viewer.get("/").text


def test_a_paused_run_shows_its_open_review_item_and_the_failed_step_open(
    hub: Hub, viewer: TestClient
) -> None:
    run_id = paused_run(hub)
    text = viewer.get(f"/runs/{run_id}").text
    assert "Waiting for review" in text
    assert "amount 500 is over the limit of 100" in text
    assert re.search(r'<details class="step" id="step-1" open>', text)
    assert 'id="step-2"' not in text  # book has not started: no step row yet


def test_html_in_errors_outputs_and_review_messages_is_escaped(
    db_url: str, viewer: TestClient
) -> None:
    run_id = hostile_run(db_url)
    text = viewer.get(f"/runs/{run_id}").text
    for raw in (SCRIPT, IMAGE, "<iframe", '<form action="https', "<style>", 'href="javascript:'):
        assert raw not in text
    assert escape(MESSAGE) in text  # step error and review message
    assert text.count(escape(SCRIPT)) >= 2
    assert escape(PAGE[:40]) in text  # the scraped page, as JSON text


def test_an_unknown_run_is_a_404_page(viewer: TestClient) -> None:
    page = viewer.get("/runs/nope", headers=HTML)
    assert page.status_code == 404
    assert "text/html" in page.headers["content-type"]
    assert "There is no run with this id." in page.text


def test_the_run_page_needs_a_login(hub: Hub, client: TestClient) -> None:
    run_id = hub.engine.start_run("hello", {"name": "Ada"}, trigger="api").run_id
    page = client.get(f"/runs/{run_id}", follow_redirects=False)
    assert page.status_code == 303
    assert page.headers["location"] == f"/login?next=%2Fruns%2F{run_id}"


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        (0, 10, {"at": 0, "width": 10, "open": False}),
        (50, 50.1, {"at": 50, "width": GRAIN, "open": False}),  # a short step still shows
        (99.9, 100, {"at": 100 - GRAIN, "width": GRAIN, "open": False}),
        (33, None, {"at": 32, "width": 68, "open": True}),  # still running: to the end
    ],
)
def test_a_bar_sits_where_its_step_ran_rounded_to_the_grain(
    start: float, end: float | None, expected: dict[str, object]
) -> None:
    t0 = datetime(2026, 1, 1)

    def iso(seconds: float | None) -> str | None:
        return None if seconds is None else (t0 + timedelta(seconds=seconds)).isoformat() + "Z"

    assert bar({"started_at": iso(start), "finished_at": iso(end)}, t0, 100.0) == expected
    assert bar({"started_at": None, "finished_at": None}, t0, 100.0) is None


def test_the_stylesheet_has_a_class_for_every_bar_position_and_width() -> None:
    css = (ROOT / "hub" / "web" / "static" / "hub.css").read_text()
    for n in range(0, 100, GRAIN):
        assert f".tl-at-{n} {{ left: {n}%; }}" in css
        assert f".tl-w-{n + GRAIN} {{ width: {n + GRAIN}%; }}" in css
