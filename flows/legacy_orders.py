"""legacy_orders: a web bot keys an order into the legacy order-entry app, once.

The app (``LEGACY_WEB_URL``, default http://127.0.0.1:8100; run one with
``python -m tests.sandbox.legacy_web``) has frames, generated field ids, a
slow customer autocomplete, a confirm dialog and no unique check on the
reference. So the bot searches "Find order" by reference first and only keys
the order when it is not there: a retry, or a run resumed after a lost
result, never makes a second one. A validation message in red ("Postal code
1234 is not valid") sends the step to review with a screenshot; "System busy"
is retried.

    HUB_SECRET_LEGACY_WEB=secret hub worker --queues browser
    hub run legacy_orders --wait --input '{"reference": "PO-4711",
      "customer": "Albrecht Metallbau GmbH", "postal_code": "10115", "amount": "99.50"}'

Triggers: ``POST /hooks/orders`` with an order as JSON, signed as GitHub signs
(``X-Hub-Signature-256``) with the secret in ``LEGACY_ORDERS_WEBHOOK_SECRET``;
and, when ``LEGACY_ORDERS_SCHEDULE`` holds a cron expression, a sample order
keyed on that schedule (``hub up --demo`` sets both).
"""

from __future__ import annotations

import os
import re
from datetime import datetime
from decimal import Decimal

from pydantic import BaseModel, Field

from bots.web import WebBot
from hub import Flow, Schedule, StepContext, TransientError, Webhook, step


class Order(BaseModel):
    reference: str = Field(min_length=1, max_length=20, description="The buyer's order number.")
    customer: str = Field(min_length=2, description="The customer's name as the app lists it.")
    postal_code: str = Field(description="Delivery postal code (the app wants five digits).")
    amount: Decimal = Field(gt=0, decimal_places=2, description="Amount in EUR.")


class Keyed(BaseModel):
    reference: str
    number: int = Field(description="The order number the legacy app gave it.")
    created: bool = Field(description="False when the order was already there.")


def legacy_url() -> str:
    return os.environ.get("LEGACY_WEB_URL", "http://127.0.0.1:8100")


@step(queue="browser", retries=3, backoff=1.0, timeout=120)
def key_order(ctx: StepContext, order: Order) -> Keyed:
    """Log in, look the reference up, and key the order if it is not there yet."""
    bot = WebBot(ctx, legacy_url())
    bot.goto("/")
    bot.fill("User name", os.environ.get("LEGACY_WEB_USER", "clerk"))
    bot.fill_secret("Password", ctx.secret("legacy_web"))
    bot.click("Log in")
    bot.expect('frame[name="menu"]', business=".error")  # the frames, or the login page again

    existing = find_order(bot, order.reference)
    if existing is not None:
        ctx.log.info("order %s is already there as number %d", order.reference, existing)
        return Keyed(reference=order.reference, number=existing, created=False)

    main = bot.frame("main")
    bot.click("New order", within=bot.frame("menu"))
    bot.fill("Reference", order.reference, within=main)
    bot.choose("Customer", order.customer, within=main)
    bot.fill("Postal code", order.postal_code, within=main)
    bot.fill("Amount", f"{order.amount:.2f}".replace(".", ","), within=main)
    bot.confirm_next_dialog("Save order?")
    bot.click("Save", within=main)
    saved = bot.expect(
        "text=/Order \\d+ saved/",
        within=main,
        business=".error",
        transient="text=System busy, try again later.",
    )
    number = re.search(r"Order (\d+) saved", saved)
    if number is None:  # the pattern above matched, so this is a page we do not understand
        raise TransientError(f"could not read the order number from {saved!r}")
    ctx.log.info("keyed order %s as number %s", order.reference, number.group(1))
    return Keyed(reference=order.reference, number=int(number.group(1)), created=True)


def find_order(bot: WebBot, reference: str) -> int | None:
    """The number of the order with this reference, or None when the app has none."""
    main = bot.frame("main")
    bot.click("Find order", within=bot.frame("menu"))
    bot.fill("Reference", reference, within=main)
    bot.click("Search", within=main)
    seen, _ = bot.which(
        within=main, found="text=/order\\(s\\) found/", none="text=No order found for reference"
    )
    if seen == "none":
        return None
    rows = bot.table_rows(within=main, next_page=None)
    numbers = [int(r["Order no."]) for r in rows if r.get("Reference") == reference]
    return min(numbers) if numbers else None


def sample_order(fire_time: datetime) -> dict[str, str]:
    """The order a scheduled run keys: one reference per fire time."""
    return {
        "reference": f"S-{fire_time:%m%d%H%M}",
        "customer": "Lorenz Metallbau GmbH",
        "postal_code": "80331",
        "amount": "42.00",
    }


def triggers() -> list[Webhook | Schedule]:
    found: list[Webhook | Schedule] = [
        Webhook("orders", verify="github", secret="env:LEGACY_ORDERS_WEBHOOK_SECRET")
    ]
    cron = os.environ.get("LEGACY_ORDERS_SCHEDULE")
    if cron:
        found.append(Schedule(cron, overlap="forbid", misfire="skip", input=sample_order))
    return found


legacy_orders = Flow(
    "legacy_orders",
    [key_order],
    description="Keys an order into the legacy web app, once.",
    triggers=triggers(),
)
