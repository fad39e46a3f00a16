"""``hub up --demo``: the hub with the bundled legacy order-entry apps, in five minutes.

Besides the web app, a worker and the scheduler, it starts the legacy web app
(``tests.sandbox.legacy_web``, from a checkout of the repository) on
``127.0.0.1:8100`` and sets, for every process it starts, what the example flows
read:

- ``legacy_orders`` (a web bot): the app's address and password, the webhook
  secret, and a schedule that keys a sample order every two minutes;
- ``desktop_orders`` (a desktop bot): the password of the bundled Tk program and
  where it keeps its orders; the worker drives it on a display of its own
  (``HUB_DESKTOP_DISPLAY=xvfb``), never on the screen of the person trying it.

Each is only a default: a value already in the environment wins. It then prints
what to try.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

LEGACY_PORT = 8100
DEFAULTS = {
    "HUB_SECRET_LEGACY_WEB": "secret",
    "LEGACY_ORDERS_WEBHOOK_SECRET": "demo-webhook-secret",
    "LEGACY_ORDERS_SCHEDULE": "*/2 * * * *",
    "HUB_SECRET_ORDER_ENTRY": "secret",
    "HUB_DESKTOP_DISPLAY": "xvfb",
}


def environment(home: Path) -> dict[str, str]:
    """The demo's settings, each unless the environment already has it."""
    values = {
        **DEFAULTS,
        "LEGACY_WEB_URL": f"http://127.0.0.1:{LEGACY_PORT}",
        "LEGACY_ORDERS_FILE": str(home / "legacy-orders.jsonl"),
        "ORDER_ENTRY_RECORDS": str(home / "order-entry.jsonl"),
    }
    return {k: os.environ.get(k, v) for k, v in values.items()}


def legacy_app(env: dict[str, str]) -> list[str]:
    """The command that runs the bundled legacy web app."""
    port = env["LEGACY_WEB_URL"].rsplit(":", 1)[1]
    return [
        sys.executable, "-m", "tests.sandbox.legacy_web", "--port", port,
        "--password", env["HUB_SECRET_LEGACY_WEB"], "--orders-file", env["LEGACY_ORDERS_FILE"],
    ]  # fmt: skip


def guide(web: str, env: dict[str, str]) -> str:
    """What to try, with the exact signed requests."""
    secret = env["LEGACY_ORDERS_WEBHOOK_SECRET"]
    good = (
        '{"reference": "PO-1001", "customer": "Albrecht Metallbau GmbH", '
        '"postal_code": "10115", "amount": "99.50"}'
    )
    bad = good.replace("PO-1001", "PO-1002").replace('"10115"', '"1234"')
    lines = [
        "",
        "The demo:",
        f"  legacy order-entry app  {env['LEGACY_WEB_URL']}/   (clerk / the HUB_SECRET_LEGACY_WEB)",
        f"  scheduled sample order  {env['LEGACY_ORDERS_SCHEDULE']} (cron), flow legacy_orders",
        f"  orders the app saved    {env['LEGACY_ORDERS_FILE']}",
        "",
        "Send an order through the signed webhook (GitHub's signature):",
    ]
    for body in (good, bad):
        lines += [
            f"  body='{body}'",
            f"  sig=$(printf '%s' \"$body\" | openssl dgst -sha256 -hmac '{secret}' | sed 's/^.* //')",
            f"  curl -s -X POST {web}/hooks/orders -H 'Content-Type: application/json' \\",
            '       -H "X-Hub-Signature-256: sha256=$sig" -d "$body"',
            "",
        ]
    desktop_order = good.replace("PO-1001", "PO-2001")
    lines += [
        "The second order's postal code is refused by the app: the run pauses for review.",
        f"Open {web}/reviews, look at the screenshot, edit the postal code to 10115 and retry.",
        "",
        "Key an order into the legacy desktop program (on the worker's own Xvfb display;",
        "it needs Xvfb and Tk installed), from this folder in another terminal:",
        f"  hub run desktop_orders --wait --input '{desktop_order}'",
        f"  orders the program saved  {env['ORDER_ENTRY_RECORDS']}",
        "",
    ]
    return "\n".join(lines)
