"""Services a worker lends to steps (``ctx.browser``, ``ctx.desktop``): opened on first use,
closed after the step, and on failure closed with the error so they can leave evidence."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select

from hub import BusinessError, Flow, StepContext, step
from hub import models as m
from hub.testing import LocalHub


class FakeBrowser:
    """Stands in for the browser service: records what the engine asks of it."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str | None]] = []

    def open(self, ctx: StepContext) -> dict[str, str]:
        self.calls.append(("open", ctx.key, None))
        return {"page": f"page-of-{ctx.key}"}

    def close(self, ctx: StepContext, resource: Any, error: BaseException | None) -> None:
        self.calls.append(("close", ctx.key, type(error).__name__ if error else None))
        if error is not None:
            ctx.evidence.screenshot(b"\x89PNG fake", name="at-failure.png")
            ctx.evidence.page(url="http://legacy.local/form", title="Order form")


@step(retries=0)
def uses_browser_twice(ctx: StepContext, data: dict[str, Any]) -> dict[str, Any]:
    first, second = ctx.browser, ctx.browser
    assert first is second
    return {"page": first["page"]}


@step(retries=0)
def fails_in_browser(ctx: StepContext, data: dict[str, Any]) -> dict[str, Any]:
    _ = ctx.browser
    raise BusinessError("postal code refused")


@step(retries=0)
def no_browser_needed(ctx: StepContext, data: dict[str, Any]) -> dict[str, Any]:
    return data


@step(retries=0)
def wants_a_desktop(ctx: StepContext, data: dict[str, Any]) -> dict[str, Any]:
    return {"screen": str(ctx.desktop)}


FLOWS = [
    Flow("browse", [uses_browser_twice]),
    Flow("broken", [fails_in_browser]),
    Flow("plain", [no_browser_needed]),
    Flow("desk", [wants_a_desktop]),
]


def with_browser(local_hub: Callable[..., LocalHub]) -> tuple[LocalHub, FakeBrowser]:
    hub = local_hub(FLOWS)
    browser = FakeBrowser()
    hub.engine.services["browser"] = browser
    return hub, browser


def test_a_service_opens_once_on_first_use_and_closes_after_the_step(
    local_hub: Callable[..., LocalHub],
) -> None:
    hub, browser = with_browser(local_hub)
    run_id = hub.start("browse", {})
    hub.drain()
    assert hub.run(run_id)["status"] == "succeeded"
    assert hub.run(run_id)["output"] == {"page": "page-of-uses_browser_twice"}
    assert browser.calls == [
        ("open", "uses_browser_twice", None),
        ("close", "uses_browser_twice", None),
    ]


def test_a_step_that_never_asks_opens_nothing(local_hub: Callable[..., LocalHub]) -> None:
    hub, browser = with_browser(local_hub)
    hub.start("plain", {"a": 1})
    hub.drain()
    assert browser.calls == []


def test_on_failure_the_service_is_closed_with_the_error_and_its_evidence_is_kept(
    local_hub: Callable[..., LocalHub],
) -> None:
    hub, browser = with_browser(local_hub)
    run_id = hub.start("broken", {})
    hub.drain()
    assert browser.calls[-1] == ("close", "fails_in_browser", "BusinessError")
    with hub.store.read() as s:
        item = s.scalars(select(m.ReviewItem).where(m.ReviewItem.run_id == run_id)).one()
        names = s.scalars(select(m.Artifact.name).where(m.Artifact.item_id == item.id)).all()
        assert item.evidence["title"] == "Order form"
    assert names == ["at-failure.png"]


def test_asking_for_a_service_this_worker_lacks_says_how_to_get_one(
    local_hub: Callable[..., LocalHub],
) -> None:
    hub, _browser = with_browser(local_hub)
    run_id = hub.start("desk", {})
    hub.drain()
    with hub.store.read() as s:
        item = s.scalars(select(m.ReviewItem).where(m.ReviewItem.run_id == run_id)).one()
    assert "asked for ctx.desktop, but this worker has none" in item.message
    assert "hub worker --queues desktop" in item.message


def test_a_secret_comes_from_the_environment_and_is_masked_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ctx = StepContext(
        run_id="r", flow="f", step="s", key="s", attempt=1, idempotency_key="k", run_input={}
    )
    monkeypatch.setenv("HUB_SECRET_LEGACY_ERP", "pa55-word-x")
    assert ctx.secret("legacy-erp") == "pa55-word-x"
    ctx.evidence.action("typed pa55-word-x")
    assert ctx.evidence.record() == {"actions": ["typed [redacted]"]}
    monkeypatch.delenv("HUB_SECRET_LEGACY_ERP")
    with pytest.raises(KeyError, match="set the environment variable HUB_SECRET_CRM"):
        ctx.secret("crm")
