"""desktop_orders: a desktop bot keys an order into the legacy order-entry program, once.

The program (``ORDER_ENTRY_COMMAND``; by default the bundled one,
``python -m tests.sandbox.legacy_desktop`` keeping its orders in
``ORDER_ENTRY_RECORDS``, default ``./.hub/order-entry.jsonl``) is a window of
fixed size at the top left of the screen, with no ids to find fields by: the
bot clicks by position, as it was recorded. The program makes no unique check
on the reference, so the bot first types the reference and presses "Find",
and keys the order only when the title says there is none. An error box (a
bad postal code, a wrong password) sends the step to review with the
screenshot; the password is typed key by key and its field is painted over.

    HUB_SECRET_ORDER_ENTRY=secret hub worker --queues desktop
    hub run desktop_orders --wait --input '{"reference": "PO-4711",
      "customer": "Albrecht Metallbau GmbH", "postal_code": "10115", "amount": "99.50"}'
"""

from __future__ import annotations

import os
import re
import shlex
import sys

from bots.desktop import Box
from flows.legacy_orders import Keyed, Order
from hub import Flow, StepContext, step

#: Where each field of the program is on the screen: (left, top, width, height).
FIELDS: dict[str, Box] = {
    "user": (240, 150, 240, 28),
    "password": (240, 200, 240, 28),
    "log_in": (240, 260, 120, 32),
    "reference": (240, 90, 260, 28),
    "customer": (240, 140, 260, 28),
    "postal_code": (240, 190, 260, 28),
    "amount": (240, 240, 260, 28),
    "save": (240, 300, 120, 32),
    "find": (380, 300, 120, 32),
}
LOGIN = r"^Order Entry .+ Login$"
ERROR = r"^Error$"


def program() -> list[str]:
    """The command that starts the order-entry program."""
    command = os.environ.get("ORDER_ENTRY_COMMAND")
    if command:
        return shlex.split(command)
    records = os.environ.get("ORDER_ENTRY_RECORDS", os.path.join(".hub", "order-entry.jsonl"))
    os.makedirs(os.path.dirname(records) or ".", exist_ok=True)
    return [sys.executable, "-m", "tests.sandbox.legacy_desktop", "--records", records]


def middle(field: str) -> tuple[int, int]:
    left, top, width, height = FIELDS[field]
    return left + width // 2, top + height // 2


@step(queue="desktop", retries=2, backoff=1.0, timeout=120)
def key_order_desktop(ctx: StepContext, order: Order) -> Keyed:
    """Start the program, log in, look the reference up, and key the order if it is new."""
    desk = ctx.desktop
    desk.start(program(), window=LOGIN)
    desk.click(*middle("user"))
    desk.type(os.environ.get("ORDER_ENTRY_USER", "clerk"))
    desk.click(*middle("password"))
    desk.type_secret(ctx.secret("order_entry"), field=FIELDS["password"])
    desk.press("enter")
    desk.expect(r"New order$", business=ERROR)

    desk.click(*middle("reference"))
    desk.type(order.reference)
    desk.click(*middle("find"))
    answer = desk.expect(r"Order \d+ found$|No order ", business=ERROR)
    found = re.search(r"Order (\d+) found$", answer.title)
    if found is not None:
        ctx.log.info("order %s is already there as number %s", order.reference, found.group(1))
        return Keyed(reference=order.reference, number=int(found.group(1)), created=False)

    for field, text in (
        ("customer", order.customer),
        ("postal_code", order.postal_code),
        ("amount", f"{order.amount:.2f}".replace(".", ",")),
    ):
        desk.click(*middle(field))
        desk.type(text)
    desk.click(*middle("save"))
    saved = desk.expect(r"Order \d+ saved$", business=ERROR, timeout=30)
    number = int(re.search(r"Order (\d+) saved$", saved.title).group(1))  # type: ignore[union-attr]
    ctx.log.info("keyed order %s as number %d", order.reference, number)
    return Keyed(reference=order.reference, number=number, created=True)


desktop_orders = Flow(
    "desktop_orders",
    [key_order_desktop],
    description="Keys an order into the legacy desktop program, once.",
)
