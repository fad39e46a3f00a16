"""The demo of `make up`, run as a person would: `hub up --demo` in a subprocess, two orders
sent through the signed webhook, a scheduled bot run, an order keyed by the desktop bot as
the guide says, the refused order fixed through the review page in headless Chromium, and
the legacy apps left holding exactly the orders they should: each once, the fixed one with
its fixed postal code."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from tests.conftest import ROOT
from tests.support import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.desktop]

SECRET = "demo-test-secret"
GOOD = {"reference": "PO-1001", "customer": "Albrecht Metallbau GmbH", "postal_code": "10115",
        "amount": "99.50"}  # fmt: skip
BAD = {**GOOD, "reference": "PO-1002", "postal_code": "1234"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Demo:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.port, self.legacy_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HUB_", "LEGACY_"))}
        env |= {
            "HUB_HOME": str(home),
            "LEGACY_WEB_URL": f"http://127.0.0.1:{self.legacy_port}",
            "LEGACY_ORDERS_WEBHOOK_SECRET": SECRET,
            "LEGACY_ORDERS_SCHEDULE": "* * * * *",  # every minute: one fire within the test
            "HUB_CHROMIUM": os.environ.get("HUB_CHROMIUM", "/usr/bin/chromium"),
        }
        self.env = env
        self.log = (home.parent / "hub-up.log").open("w+")
        self.process = subprocess.Popen(
            [str(ROOT / ".venv/bin/hub"), "up", "--demo", "--port", str(self.port)],
            cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        self.password = wait_until(self._password, 60, "hub up to print the admin password",
                                   self.output)  # fmt: skip
        wait_until(self._healthy, 60, "the web app to answer /healthz", self.output)

    def output(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text(errors="replace")[-4000:]

    def _password(self) -> str | None:
        assert self.process.poll() is None, self.output()
        found = re.search(r"admin password: (\S+)", Path(self.log.name).read_text())
        return found.group(1) if found else None

    def _healthy(self) -> bool:
        try:
            return httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def deliver(self, order: dict[str, str]) -> str:
        body = json.dumps(order).encode()
        signature = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        answer = httpx.post(
            f"{self.url}/hooks/orders", content=body, timeout=10,
            headers={"Content-Type": "application/json",
                     "X-Hub-Signature-256": f"sha256={signature}"},
        )  # fmt: skip
        assert answer.status_code == 202, answer.text
        return str(answer.json()["run_id"])

    def query(self, sql: str, **params: Any) -> list[Any]:
        engine = create_engine(f"sqlite:///{self.home / 'hub.db'}")
        try:
            with engine.connect() as conn:
                return list(conn.execute(text(sql), params))
        finally:
            engine.dispose()

    def status(self, run_id: str) -> str:
        rows = self.query("SELECT status FROM runs WHERE id = :id", id=run_id)
        return str(rows[0].status) if rows else "missing"

    def describe(self, run_id: str) -> str:
        steps = self.query(
            "SELECT key, status, attempts, error FROM steps WHERE run_id = :r", r=run_id
        )
        return f"run {self.status(run_id)}; steps {[tuple(s) for s in steps]}\n{self.output()}"

    def orders(self) -> list[dict[str, Any]]:
        return self.records("legacy-orders.jsonl")

    def records(self, name: str) -> list[dict[str, Any]]:
        file = self.home / name
        if not file.exists():
            return []
        return [json.loads(line) for line in file.read_text().splitlines() if line.strip()]

    def run_desktop_order(self) -> subprocess.Popen[str]:
        """The guide's `hub run desktop_orders --wait` with the order it prints."""
        command = next(
            line.strip() for line in self.output().splitlines() if "hub run desktop_orders" in line
        )
        order = json.loads(command.split("--input ", 1)[1].strip("'"))
        return subprocess.Popen(
            [str(ROOT / ".venv/bin/hub"), "run", "desktop_orders", "--wait", "--input",
             json.dumps(order)],
            cwd=ROOT, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(40)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        self.log.close()
        return int(self.process.returncode)


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Demo]:
    made = Demo(tmp_path / "home")
    try:
        yield made
    finally:
        if made.process.poll() is None:
            os.killpg(made.process.pid, signal.SIGKILL)
            made.process.wait(10)


def test_the_demo_from_webhook_and_schedule_to_a_fixed_review(demo: Demo, page: Any) -> None:
    good, bad = demo.deliver(GOOD), demo.deliver(BAD)
    desktop = demo.run_desktop_order()  # as the guide says, while the web bots work

    wait_until(lambda: demo.status(good) == "succeeded", 120, "the good order's run",
               demo.output)  # fmt: skip
    wait_until(lambda: demo.status(bad) == "needs_review", 120, "the refused order's review",
               demo.output)  # fmt: skip
    (item,) = demo.query("SELECT id, message FROM review_items WHERE run_id = :r", r=bad)
    assert "Postal code 1234 is not valid" in item.message

    # a person fixes it in the web app
    page.goto(f"{demo.url}/reviews")
    page.fill("#name", "admin")
    page.fill("#password", demo.password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{demo.url}/reviews")
    page.click(f"#queue-rows tr[data-id='{item.id}'] a")
    page.wait_for_url(f"{demo.url}/reviews/{item.id}")
    page.wait_for_function("document.querySelector('figure.shot img').complete")
    assert page.evaluate("document.querySelector('figure.shot img').naturalWidth") > 0
    page.click("#edit summary")
    assert page.input_value("#f-input-postal_code") == "1234"
    page.fill("#f-input-postal_code", "10115")
    with page.expect_navigation():
        page.click("#edit button[type=submit]")
    assert "Input saved" in page.locator(".flash").inner_text()

    wait_until(lambda: demo.status(bad) == "succeeded", 120, "the fixed order's run",
               lambda: demo.describe(bad))  # fmt: skip

    def scheduled() -> list[Any]:  # the schedule fires each minute: wait for one to finish
        fires = demo.query("SELECT run_id FROM schedule_fires WHERE outcome = 'started'")
        return [f for f in fires if demo.status(f.run_id) == "succeeded"] or []

    wait_until(scheduled, 150, "a scheduled bot run to key its order", demo.output)
    keyed = desktop.communicate(timeout=180)[0]
    assert desktop.returncode == 0, f"{keyed}\n{demo.output()}"
    assert "succeeded" in keyed
    assert demo.stop() == 0, demo.output()

    fired = demo.query("SELECT run_id FROM schedule_fires WHERE outcome = 'started'")
    expected = {"PO-1001", "PO-1002"}
    for fire in fired:
        if demo.status(fire.run_id) == "succeeded":
            (output,) = demo.query("SELECT output FROM runs WHERE id = :r", r=fire.run_id)
            expected.add(json.loads(output.output)["reference"])
    orders = demo.orders()
    references = [o["reference"] for o in orders]
    assert sorted(references) == sorted(expected), references  # each exactly once
    assert len([r for r in references if r.startswith("S-")]) >= 1
    fixed = next(o for o in orders if o["reference"] == "PO-1002")
    assert fixed["postal_code"] == "10115"
    (typed,) = demo.records("order-entry.jsonl")  # the desktop program's, keyed once
    assert typed["reference"] == "PO-2001" and typed["postal_code"] == "10115"
