"""Web bots in a real headless Chromium, in-process: the example flow keys orders into the
legacy app once, classifies what the app says, and leaves evidence a reviewer can use, with
no secret in it; pages cannot reach past the allow-list; the warm browser is renewed."""

from __future__ import annotations

import io
import logging
import os
import signal
import zipfile
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import inspect, select, text

from bots.browser import BrowserService
from bots.chromium import Found
from bots.web import WebBot
from flows.legacy_orders import Keyed, Order, key_order
from hub import BusinessError, Flow, StepContext, TransientError, step
from hub import models as m
from hub.registry import Registry
from hub.settings import Settings
from hub.testing import LocalHub
from tests.bots.conftest import CANARY, USER, Site, finish, succeeded
from tests.bots.png import pixel
from tests.hub.rows import attempts_of, reviews_of, rows, step_row
from tests.sandbox.legacy_web import LegacyWebApp
from tests.support.procs import children_of, command_name

pytestmark = pytest.mark.browser

ORDER = {
    "reference": "PO-4711",
    "customer": "Albrecht Metallbau GmbH",
    "postal_code": "10115",
    "amount": "99.50",
}
MAGENTA = (255, 0, 255)  # Playwright's mask colour


@step(queue="browser", retries=2, backoff=0.1)
def key_then_lose_the_result(ctx: StepContext, order: Order) -> Keyed:
    """The example bot, whose first attempt dies after the order is saved."""
    keyed = key_order.fn(ctx, order)
    if ctx.attempt == 1:
        raise TransientError("the worker died before the result was stored")
    return keyed


@step(queue="browser", retries=0)
def types_the_password_and_stops(ctx: StepContext, data: dict[str, Any]) -> dict[str, Any]:
    bot = WebBot(ctx, os.environ["LEGACY_WEB_URL"])
    bot.goto("/")
    bot.fill("User name", USER)
    bot.fill_secret("Password", ctx.secret("legacy_web"))
    box = bot.page.get_by_label("Password").bounding_box()
    ctx.evidence.note("box", f"{box['x']},{box['y']},{box['width']},{box['height']}")
    ctx.log.info("about to log in with %s", ctx.secret("legacy_web"))
    raise BusinessError("stopped on purpose on the login page")


@step(queue="browser", retries=0)
def visit(ctx: StepContext, data: dict[str, Any]) -> dict[str, Any]:
    bot = WebBot(ctx, data["url"])
    bot.goto(data["path"])
    if "wait_for" in data:
        return {"text": bot.text(data["wait_for"])}
    return {"title": bot.page.title()}


@step(queue="browser", retries=0)
def customers(ctx: StepContext, data: dict[str, Any]) -> dict[str, Any]:
    bot = WebBot(ctx, os.environ["LEGACY_WEB_URL"])
    bot.goto("/")
    bot.fill("User name", USER)
    bot.fill_secret("Password", ctx.secret("legacy_web"))
    bot.click("Log in")
    main = bot.frame("main")
    bot.click("Customers", within=bot.frame("menu"))
    table = bot.table_rows(within=main)
    export = bot.download("Export orders (CSV)", within=bot.frame("menu"))
    return {"rows": table, "file": export.name, "csv": export.data.decode()}


@step(queue="browser", retries=0)
def title(ctx: StepContext, data: dict[str, Any]) -> dict[str, Any]:
    page = ctx.browser
    page.goto("about:blank")
    return {"title": page.title()}


@step(queue="browser", retries=0)
def cookies(ctx: StepContext, data: dict[str, Any]) -> dict[str, Any]:
    bot = WebBot(ctx, data["url"])
    bot.goto("/")
    before = bot.page.evaluate("document.cookie")
    bot.page.evaluate("document.cookie = 'seen=1; max-age=3600'")
    return {"before": before}


@step(retries=0)
async def later(ctx: StepContext, data: dict[str, Any]) -> dict[str, Any]:
    import asyncio

    await asyncio.sleep(0.01)
    ctx.log.info("awaited in run %s", ctx.run_id)
    return {"awaited": True}


FLOWS = [
    Flow("browse_then_await", [title, later]),
    Flow("cookies", [cookies]),
    Flow("lost_result", [key_then_lose_the_result]),
    Flow("stops_on_login", [types_the_password_and_stops]),
    Flow("visit", [visit]),
    Flow("customers", [customers]),
    Flow("title", [title]),
]


@pytest.fixture
def hub(
    local_hub: Callable[..., LocalHub], browser: BrowserService, legacy: LegacyWebApp
) -> LocalHub:
    registry = Registry([*Registry.load(["flows.legacy_orders"]), *FLOWS])
    made = local_hub(registry)
    made.engine.services["browser"] = browser
    return made


def files(hub: LocalHub, run_id: str) -> dict[str, m.Artifact]:
    return {a.name: a for a in rows(hub, m.Artifact, run_id=run_id)}


# ------------------------------------------------------------- the example bot
def test_the_example_bot_keys_an_order_and_a_second_run_finds_it_instead(
    hub: LocalHub, legacy: LegacyWebApp
) -> None:
    first = succeeded(hub, hub.start("legacy_orders", ORDER))
    again = succeeded(hub, hub.start("legacy_orders", ORDER))

    assert first["output"] == {"reference": "PO-4711", "number": 1, "created": True}
    assert again["output"] == {"reference": "PO-4711", "number": 1, "created": False}
    (order,) = legacy.orders
    assert (order.customer, order.customer_number, order.postal_code, order.amount) == (
        "Albrecht Metallbau GmbH",
        "K-1020",
        "10115",
        "99.50",
    )
    assert legacy.counts.searches == 2


def test_an_attempt_whose_result_was_lost_is_retried_and_makes_no_second_order(
    hub: LocalHub, legacy: LegacyWebApp
) -> None:
    view = succeeded(hub, hub.start("lost_result", ORDER))

    assert view["output"]["created"] is False
    step = step_row(hub, view["id"], "key_then_lose_the_result")
    assert [a.status for a in attempts_of(hub, step.id)] == ["failed", "succeeded"]
    assert len(legacy.find("PO-4711")) == 1


def test_a_bad_postal_code_goes_to_review_with_screenshot_trace_html_and_actions(
    hub: LocalHub, legacy: LegacyWebApp
) -> None:
    view = finish(hub, hub.start("legacy_orders", {**ORDER, "postal_code": "1234"}))

    assert view["status"] == "needs_review"
    (item,) = reviews_of(hub, view["id"])
    assert (item.reason, item.message) == ("business", "Postal code 1234 is not valid")
    assert legacy.orders == [] and legacy.counts.rejected == 1
    step = step_row(hub, view["id"], "key_order")
    assert step.attempts == 1  # a business error is not retried
    found = files(hub, view["id"])
    assert found["screenshot.png"].data.startswith(b"\x89PNG\r\n\x1a\n")
    # one trace up to the password, one from when the field has left the page
    traces = sorted(a.name for a in found.values() if a.kind == "trace")
    assert traces == ["trace-1.zip", "trace-2.zip"]
    for name in traces:
        assert "trace.trace" in zipfile.ZipFile(io.BytesIO(found[name].data)).namelist()
    html = found["page.html"].data.decode()
    assert "Postal code 1234 is not valid" in html
    evidence = item.evidence
    assert evidence["url"].endswith("/frames")
    assert evidence["title"] == "Order Entry 2.3"
    assert evidence["actions"][-3:] == [
        "clicked 'Save'",
        "accepted confirm 'Save order?'",
        "waited for text=/Order \\d+ saved/",
    ]
    assert "filled 'Postal code' with '1234'" in evidence["actions"]


def test_system_busy_is_retried_and_the_order_is_keyed_once(
    hub: LocalHub, legacy: LegacyWebApp
) -> None:
    legacy.busy_next(1)
    view = succeeded(hub, hub.start("legacy_orders", ORDER))

    step = step_row(hub, view["id"], "key_order")
    attempts = attempts_of(hub, step.id)
    assert [(a.status, a.error_kind) for a in attempts] == [
        ("failed", "transient"),
        ("succeeded", None),
    ]
    assert "System busy, try again later." in (attempts[0].error or "")
    assert legacy.counts.busy == 1
    assert len(legacy.find("PO-4711")) == 1


def test_a_table_is_read_across_its_pages_and_a_file_downloaded(
    hub: LocalHub, legacy: LegacyWebApp
) -> None:
    legacy.create(USER, {**ORDER, "customer_number": "K-1020"})
    view = succeeded(hub, hub.start("customers", {}))

    table = view["output"]["rows"]
    assert len(table) == 57
    assert table[0]["Customer no."] == "K-1001"
    assert table[-1]["Customer no."] == "K-1057"
    assert view["output"]["file"] == "orders.csv"
    assert "PO-4711" in view["output"]["csv"]


# --------------------------------------------------------------- the canary
def test_the_typed_password_is_masked_on_the_screenshot_and_found_nowhere(
    hub: LocalHub, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    view = finish(hub, hub.start("stops_on_login", {}))
    bad = finish(hub, hub.start("legacy_orders", {**ORDER, "postal_code": "1234"}))

    (item,) = reviews_of(hub, view["id"])
    x, y, width, height = (float(v) for v in item.evidence["notes"]["box"].split(","))
    shot = files(hub, view["id"])["screenshot.png"].data
    assert pixel(shot, int(x + width / 2), int(y + height / 2)) == MAGENTA
    assert pixel(shot, int(x + width + 40), int(y + height / 2)) != MAGENTA  # only the field
    # the login's POST went out while the trace was paused, yet its network entry is kept
    # by the chunk after it: scrubbed
    for run in (view, bad):
        for artifact in files(hub, run["id"]).values():
            assert_no_canary(artifact.data, artifact.name)
            if artifact.kind == "trace":
                with zipfile.ZipFile(io.BytesIO(artifact.data)) as z:
                    for name in z.namelist():
                        assert_no_canary(z.read(name), f"{artifact.name}:{name}")
    assert CANARY not in caplog.text
    assert "about to log in with [redacted]" in caplog.text
    assert_database_has_no_canary(hub)


def assert_no_canary(data: bytes, where: str) -> None:
    for form in (CANARY, CANARY.replace("!", "%21")):
        assert form.encode() not in data, f"the canary is in {where}"


def assert_database_has_no_canary(hub: LocalHub) -> None:
    with hub.store.engine.connect() as conn:
        for table in inspect(conn).get_table_names():
            for row in conn.execute(text(f'SELECT * FROM "{table}"')):
                for value in row:
                    data = value if isinstance(value, bytes) else str(value).encode()
                    assert CANARY.encode() not in data, f"the canary is in table {table}"


# ------------------------------------------------------------------ egress
def test_a_page_script_reaching_another_port_or_loopback_spelling_is_blocked(
    hub: LocalHub, site: Site
) -> None:
    view = finish(hub, hub.start("visit", {"url": site.url, "path": "/leaky", "wait_for": "#done:has-text('sent')"}))  # fmt: skip

    assert view["status"] == "needs_review"
    (item,) = reviews_of(hub, view["id"])
    assert item.reason == "policy"
    assert "not in the allow-list" in item.message
    assert site.hits_on(site.other_port) == []
    assert all(not path.startswith("/stolen") for _, path in site.hits)
    blocked = item.evidence["notes"]["blocked requests"]
    assert f"127.0.0.1:{site.other_port}/stolen?from=fetch" in blocked
    assert f"localhost:{site.port}/stolen" in blocked
    assert f"[::1]:{site.port}/stolen" in blocked


@pytest.mark.parametrize("path", ["/redirect", "/image"])
def test_a_redirect_or_an_image_from_another_port_is_blocked(
    hub: LocalHub, site: Site, path: str
) -> None:
    view = finish(hub, hub.start("visit", {"url": site.url, "path": path}))

    assert view["status"] == "needs_review"
    (item,) = reviews_of(hub, view["id"])
    assert (item.reason, item.error_class) == ("policy", "hub.errors.PolicyViolation")
    assert site.hits_on(site.other_port) == []


def test_a_file_url_is_blocked(hub: LocalHub, site: Site) -> None:
    view = finish(hub, hub.start("visit", {"url": site.url, "path": "file:///etc/hostname"}))

    (item,) = reviews_of(hub, view["id"])
    assert item.reason == "policy"
    assert "file:///etc/hostname" in item.message


def test_service_workers_are_blocked(hub: LocalHub, site: Site) -> None:
    run = hub.start("visit", {"url": site.url, "path": "/sw", "wait_for": "#sw:not(:has-text('pending'))"})  # fmt: skip
    view = succeeded(hub, run)

    assert view["output"]["text"] == "registrations: 0"
    assert site.hits_on(site.port).count("/sw.js") == 0


def test_the_context_made_between_steps_is_the_next_steps_and_shares_nothing(
    hub: LocalHub, browser: BrowserService, site: Site
) -> None:
    first = succeeded(hub, hub.start("cookies", {"url": site.url}))
    spare = browser._spare
    assert spare is not None and spare.ctx is None
    second = succeeded(hub, hub.start("cookies", {"url": site.url}))

    assert first["output"] == second["output"] == {"before": ""}  # no cookie carried over
    assert spare.context not in browser.browser.contexts  # the second step used it, closed
    assert browser._spare is not None and browser._spare is not spare


def test_an_async_step_runs_in_a_worker_whose_browser_is_warm(hub: LocalHub) -> None:
    view = succeeded(hub, hub.start("browse_then_await", {}))
    assert view["output"] == {"awaited": True}


def test_a_page_used_without_a_webbot_reaches_nothing(hub: LocalHub) -> None:
    view = finish(hub, hub.start("title", {}))
    assert view["output"] == {"title": ""}  # about:blank needs no network


# --------------------------------------------------------- the warm browser
def test_the_browser_is_renewed_after_n_steps(
    local_hub: Callable[..., LocalHub], chromium: Found
) -> None:
    service = BrowserService(Settings(browser_max_steps=2), chromium=chromium)
    hub = local_hub(FLOWS)
    hub.engine.services["browser"] = service
    try:
        for _ in range(5):
            succeeded(hub, hub.start("title", {}))
        assert service.launches == 3
    finally:
        service.shutdown()


def test_a_browser_that_died_is_launched_again(
    local_hub: Callable[..., LocalHub], chromium: Found
) -> None:
    service = BrowserService(Settings(), chromium=chromium)
    hub = local_hub(FLOWS)
    hub.engine.services["browser"] = service
    before = set(browser_processes())  # the module's warm browser
    try:
        succeeded(hub, hub.start("title", {}))
        (main,) = set(browser_processes()) - before
        os.kill(main, signal.SIGKILL)
        succeeded(hub, hub.start("title", {}))
        assert service.launches == 2
    finally:
        service.shutdown()
    assert set(browser_processes()) - before == set()


def browser_processes() -> list[int]:
    """The main Chromium processes this test process started (children of its drivers)."""
    found = []
    for driver in children_of(os.getpid()):
        for child in children_of(driver):
            if command_name(child).startswith(("chrom", "headless")):
                found.append(child)
    return found


def test_steps_of_one_worker_get_fresh_contexts(hub: LocalHub, browser: BrowserService) -> None:
    for _ in range(2):
        succeeded(hub, hub.start("title", {}))
    # between steps only the next step's context is open, made ahead and unused
    spare = browser._spare
    assert spare is not None and browser.browser.contexts == [spare.context]
    assert spare.page.url == "about:blank" and spare.context.cookies() == []
    with hub.store.read() as s:
        assert s.scalars(select(m.ReviewItem)).all() == []
