"""The fake desktop runs the example desktop flow with no display, in milliseconds: the
flow's logic (look up first, classify the error box) is testable without X."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bots.fake import FakeDesktopService, Script
from hub.registry import Registry
from hub.testing import LocalHub

ORDER = {"reference": "PO-1", "customer": "ACME", "postal_code": "10115", "amount": "9.50"}


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalHub]:
    monkeypatch.setenv("HUB_SECRET_ORDER_ENTRY", "fake-secret-1")
    monkeypatch.setenv("ORDER_ENTRY_COMMAND", "order-entry --fake")
    local = LocalHub(Registry.load(["flows.desktop_orders"]))
    yield local
    local.close()


def program(script: Script, *, existing: int | None = None, refuse: bool = False) -> None:
    """The order-entry program as the flow sees it: window titles that follow its actions."""
    script.on("start", lambda s: s.show("Order Entry — Login"))
    script.on("press enter", lambda s: s.retitle("Login$", "Order Entry — New order"))
    found = f"Order Entry — Order {existing} found" if existing else "Order Entry — No order PO-1"
    script.on("click 440,316", lambda s: s.show_only(found))  # Find
    saved = "Error" if refuse else "Order Entry — Order 8 saved"
    script.on("click 300,316", lambda s: s.show(saved))  # Save


def run(hub: LocalHub, service: FakeDesktopService) -> dict:
    hub.engine.services["desktop"] = service
    run_id = hub.start("desktop_orders", ORDER)
    hub.drain()
    return hub.run(run_id)


def test_a_new_order_is_keyed_and_the_secret_typed_not_recorded(hub: LocalHub) -> None:
    service = FakeDesktopService()
    program(service.script)
    view = run(hub, service)

    assert view["status"] == "succeeded"
    assert view["output"] == {"reference": "PO-1", "number": 8, "created": True}
    assert service.script.secrets == ["fake-secret-1"]
    assert "type PO-1" in service.script.actions and "type 9,50" in service.script.actions
    assert not any("fake-secret-1" in a for a in service.script.actions)


def test_an_order_already_there_is_not_keyed_again(hub: LocalHub) -> None:
    service = FakeDesktopService()
    program(service.script, existing=5)
    view = run(hub, service)

    assert view["output"] == {"reference": "PO-1", "number": 5, "created": False}
    assert "click 300,316" not in service.script.actions  # never pressed Save


def test_the_error_box_sends_the_step_to_review_with_the_fakes_evidence(hub: LocalHub) -> None:
    service = FakeDesktopService()
    program(service.script, refuse=True)
    view = run(hub, service)

    assert view["status"] == "needs_review"
    step = view["steps"][0]
    assert "showed the window 'Error'" in step["error"]


def test_a_browser_is_never_opened_inside_an_event_loop() -> None:
    import asyncio

    from bots.browser import BrowserService
    from hub.context import StepContext

    ctx = StepContext(run_id="r", flow="f", step="s", key="s", attempt=1,
                      idempotency_key="k", run_input={})  # fmt: skip
    service = BrowserService()

    async def in_the_web_app() -> None:
        service.open(ctx)

    with pytest.raises(RuntimeError, match="web bots run only in worker processes"):
        asyncio.run(in_the_web_app())
    assert service.browser is None  # nothing was launched
