"""A reviewer's journey through the review pages in a real headless Chromium.

The web app runs in a real server over SQLite with the embedded broker, and
a real ``hub worker`` process (``HUB_FLOWS=tests.web.apps``) runs the steps:
the bot's step fails with evidence (a screenshot, the page's HTML, actions,
log lines), the reviewer finds it in the queue, looks at the evidence, fixes
the input in the form generated from the step's model, and the worker
finishes the run. Another reviewer's open pages notice the change through
``hub.js``. Screenshots go to ``test-output/`` for people to look at.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from hub import models as m
from hub.runtime import Hub
from hub.settings import Settings
from hub.web import create_app
from hub.web.security import CSP
from tests.support.procs import HubProcesses, clean_env, wait_until
from tests.support.server import serve
from tests.web.apps import LATE_INVOICE, PASSWORD, REVIEW_REGISTRY, add_user
from tests.web.browser import OUTPUT, Live

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(240)]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Live]:
    """The web app in uvicorn on 127.0.0.1, over SQLite and the embedded broker in tmp_path."""
    database_url = f"sqlite:///{tmp_path / 'hub.db'}"
    settings = Settings(home=tmp_path / "home", database_url=database_url, broker_url=None)
    hub = Hub(settings, registry=REVIEW_REGISTRY)
    hub.store.create_all()
    with serve(create_app(hub)) as url:
        yield Live(url=url, database_url=database_url, hub=hub)
    hub.close()


@pytest.fixture
def worker(served: Live, tmp_path: Path) -> Iterator[HubProcesses]:
    """One ``hub worker`` on the served hub's database and broker folder."""
    env = clean_env(
        {
            "HUB_HOME": str(served.hub.settings.home),
            "HUB_DATABASE_URL": served.database_url,
            "HUB_FLOWS": "tests.web.apps",
        }
    )
    procs = HubProcesses(tmp_path / "procs", env)
    try:
        procs.worker(concurrency=1)
        yield procs
    finally:
        procs.close()


def watch(page: Any) -> tuple[list[str], list[str]]:
    """Every dialog (dismissed), and every console error but a refused form's status line."""
    dialogs: list[str] = []
    errors: list[str] = []

    def on_dialog(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    def on_console(msg: Any) -> None:
        if msg.type == "error" and "status of 422" not in msg.text:
            errors.append(msg.text)

    page.on("dialog", on_dialog)
    page.on("console", on_console)
    return dialogs, errors


def log_in(page: Any, url: str, name: str) -> None:
    page.goto(f"{url}/reviews")
    assert "/login?next=%2Freviews" in page.url
    page.fill("#name", name)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{url}/reviews")


def status_of(live: Live, run_id: str) -> str:
    with live.hub.store.read() as s:
        run = s.get(m.Run, run_id)
        return run.status if run is not None else "missing"


def wait_for_run(live: Live, procs: HubProcesses, run_id: str, status: str) -> None:
    wait_until(
        lambda: status_of(live, run_id) == status,
        60,
        f"run {run_id} to be {status} (it is {status_of(live, run_id)})",
        procs.logs,
    )


def shown(page: Any) -> None:
    """Tell hub.js the tab is shown again: it polls at once instead of in 10 s."""
    page.evaluate("document.dispatchEvent(new Event('visibilitychange'))")


def test_a_reviewer_fixes_a_failed_bot_step_and_the_worker_finishes_the_run(
    served: Live, worker: HubProcesses, chromium: Any, page: Any
) -> None:
    live = served
    add_user(live.hub, "anna", "reviewer", "billing")
    add_user(live.hub, "bert", "reviewer", "billing")
    run_id = live.hub.engine.start_run("invoice_entry", LATE_INVOICE, trigger="api").run_id
    wait_for_run(live, worker, run_id, "needs_review")
    with live.hub.store.read() as s:
        item_id = s.scalars(select(m.ReviewItem.id).where(m.ReviewItem.run_id == run_id)).one()
    OUTPUT.mkdir(exist_ok=True)
    dialogs, errors = watch(page)

    # another reviewer has the queue and the item open in their own browser
    other = chromium.new_context(viewport={"width": 1366, "height": 800})
    bert = other.new_page()
    log_in(bert, live.url, "bert")
    assert bert.locator("#queue-rows tr.queue-row").count() == 1
    bert_item = other.new_page()
    bert_item.goto(f"{live.url}/reviews/{item_id}")

    # the queue, and the item opened with the keyboard
    log_in(page, live.url, "anna")
    assert page.locator("nav[aria-label=Main] a").first.inner_text() == "Review queue"
    row = page.locator(f"#queue-rows tr[data-id='{item_id}']")
    assert "invoice_entry" in row.inner_text() and "ERP refused invoice INV-7" in row.inner_text()
    assert "due in 1 h" in row.inner_text()
    page.screenshot(path=str(OUTPUT / "review-queue.png"), full_page=True)
    page.keyboard.press("j")
    assert page.evaluate("document.activeElement.getAttribute('href')") == f"/reviews/{item_id}"
    with page.expect_navigation() as navigation:
        page.keyboard.press("Enter")
    response = navigation.value
    assert response.status == 200 and response.headers["content-security-policy"] == CSP

    # the evidence: the screenshot loaded, the page's HTML and the error as text
    image = page.locator("figure.shot img")
    image.wait_for()
    page.wait_for_function("document.querySelector('figure.shot img').complete")
    assert image.evaluate("img => img.naturalWidth") == 480
    assert image.get_attribute("alt") == "Screenshot screen.png taken when the step failed"
    assert "<script>alert('erp')</script>" in page.locator("pre.page-html").inner_text()
    assert "<b>amount over the limit</b>" in page.locator("pre.bad").inner_text()
    assert page.get_by_text("https://erp.example/invoices/new", exact=True).is_visible()
    assert page.locator("a[href^='https://erp.example']").count() == 0
    assert page.get_by_text("clicked Save").is_visible()
    page.screenshot(path=str(OUTPUT / "review-item.png"), full_page=True)

    # a malformed input is refused beside its field, and nothing changes
    page.click("#edit summary")
    assert page.input_value("#f-input-customer-name") == "ACME"
    assert page.input_value("#f-input-customer-country") == "FR"
    assert page.is_checked("#f-input-express")
    page.fill("#f-input-amount", "-5")
    with page.expect_navigation() as navigation:
        page.click("#edit button[type=submit]")
    assert navigation.value.status == 422
    assert "greater than or equal to 0" in page.locator("#f-input-amount-error").inner_text()
    assert page.input_value("#f-input-amount") == "-5"
    assert page.evaluate("document.activeElement.id") == "f-input-amount"  # the field to fix
    assert status_of(live, run_id) == "needs_review"
    page.screenshot(path=str(OUTPUT / "review-item-refused.png"), full_page=True)

    # the fixed input: the item closes and the worker finishes the run
    page.fill("#f-input-amount", "900")
    page.uncheck("#f-input-express")
    with page.expect_navigation() as navigation:
        page.click("#edit button[type=submit]")
    assert re.search(rf"/reviews/{item_id}\?done=edit$", page.url)
    assert "Input saved: the step runs again with it." in page.locator(".flash").inner_text()
    assert "This item is closed: edited by anna" in page.locator("aside.actions").inner_text()
    diff = page.locator("table.diff", has_text="Edited input")
    assert "amount" in diff.inner_text() and "5000" in diff.inner_text()
    assert "900" in diff.inner_text() and "express" in diff.inner_text()
    wait_for_run(live, worker, run_id, "succeeded")
    page.reload()
    assert "succeeded" in page.locator("dl.facts").first.inner_text()
    page.screenshot(path=str(OUTPUT / "review-item-done.png"), full_page=True)
    page.click(f"a[href='/runs/{run_id}']")
    page.wait_for_url(f"{live.url}/runs/{run_id}")
    assert page.locator(".title .status").inner_text() == "succeeded"
    assert page.locator(".tl-bar.bar-succeeded").count() == 2

    # the other reviewer's pages notice: the item's banner, the queue's rows
    banner = bert_item.locator("#live")
    assert banner.is_hidden()
    shown(bert_item)
    banner.wait_for(state="visible")
    assert "changed by someone else" in banner.inner_text()
    shown(bert)
    bert.locator("#queue-rows td.empty").wait_for()
    assert bert.locator("[data-count=open]").inner_text() == "0"
    bert.screenshot(path=str(OUTPUT / "review-queue-empty.png"), full_page=True)
    other.close()

    assert dialogs == []
    assert errors == []
