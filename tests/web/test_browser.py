"""The pages in a real headless Chromium, against the app in a real server.

RELIABILITY item 34: HTML and script in a bot's error text and in scraped
page HTML render as text in a real browser; no dialog fires; CSP present.
Screenshots of the pages go to ``test-output/`` for people to look at.
"""

from __future__ import annotations

from typing import Any

import pytest

from hub.registry import Registry
from hub.testing import LocalHub
from hub.web.security import CSP
from tests.web.apps import PASSWORD, REGISTRY, add_user
from tests.web.browser import OUTPUT, Live
from tests.web.hostile import IMAGE, MESSAGE, SCRIPT, scraper

pytestmark = pytest.mark.browser


def hostile_run(live: Live) -> str:
    """A run of ``scraper`` in the server's database, waiting for review, run in this process."""
    local = LocalHub(Registry([scraper]), database_url=live.database_url)
    try:
        run_id = local.start("scraper", {"number": "4711"}, trigger="webhook:portal")
        local.drain()
        return run_id
    finally:
        local.close()


def watch(page: Any) -> tuple[list[str], list[str]]:
    """Collect every dialog (dismissed) and every console error (CSP violations land there)."""
    dialogs: list[str] = []
    errors: list[str] = []

    def on_dialog(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    return dialogs, errors


def log_in(page: Any, live: Live, name: str) -> None:
    page.goto(f"{live.url}/")
    assert "/login?next=%2F" in page.url
    page.fill("#name", name)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live.url}/")


def test_hostile_text_from_a_bot_renders_as_text_and_runs_nothing(page: Any, live: Live) -> None:
    add_user(live.hub, "vic", "viewer")
    run_id = hostile_run(live)
    dialogs, errors = watch(page)
    log_in(page, live, "vic")
    OUTPUT.mkdir(exist_ok=True)
    page.screenshot(path=str(OUTPUT / "runs.png"), full_page=True)

    with page.expect_navigation() as navigation:
        page.click(f"a[href='/runs/{run_id}']")
    response = navigation.value
    assert response.status == 200
    assert response.headers["content-security-policy"] == CSP
    page.screenshot(path=str(OUTPUT / "run.png"), full_page=True)

    step_error = page.locator("details#step-2 pre.bad")
    assert step_error.inner_text() == MESSAGE
    assert step_error.is_visible()
    review = page.locator(".waiting pre")
    assert review.inner_text() == MESSAGE
    output = page.locator("details#step-1 pre", has_text="Invoice 4711").last
    assert not output.is_visible()  # a succeeded step starts closed
    page.locator("details#step-1 summary").click()
    assert output.is_visible()
    assert "<script>alert(3)</script>" in output.inner_text()  # the scraped page, as text
    assert '<iframe src=\\"javascript:alert(4)\\">' in output.inner_text()  # (JSON-quoted)

    assert page.locator("script").count() == 0
    assert page.locator("img, iframe, form[action^='https'], [onerror], style").count() == 0
    assert page.locator("a[href^='javascript']").count() == 0
    assert page.get_by_text(f"{SCRIPT} {IMAGE}").count() == 2  # step error, review message
    assert page.title() == f"Run {run_id} · hub"
    assert dialogs == []
    assert errors == []


def test_the_pages_of_a_finished_run_keep_to_the_csp(page: Any, live: Live) -> None:
    add_user(live.hub, "vic", "viewer")
    dialogs, errors = watch(page)
    login_page = page.goto(f"{live.url}/login")
    assert login_page is not None and login_page.headers["content-security-policy"] == CSP
    log_in(page, live, "vic")
    assert page.get_by_text("No runs yet.").is_visible()

    local = LocalHub(REGISTRY, database_url=live.database_url)
    try:
        run_id = local.start("hello", {"name": "ada lovelace"})
        local.drain()
    finally:
        local.close()
    page.reload()
    page.click(f"a[href='/runs/{run_id}']")
    page.wait_for_url(f"{live.url}/runs/{run_id}")
    OUTPUT.mkdir(exist_ok=True)
    page.screenshot(path=str(OUTPUT / "run-succeeded.png"), full_page=True)
    assert page.locator("h1").inner_text() == "hello"
    bars = page.locator(".tl-bar.bar-succeeded")
    assert bars.count() == 3
    assert all(box["width"] >= 3 for box in (b.bounding_box() for b in bars.all()) if box)
    assert page.locator(".waiting").count() == 0
    assert dialogs == [] and errors == []
