"""The example desktop bot through a real `hub worker --queues desktop` process.

The worker's pool process starts its own Xvfb on its first desktop step. A
``kill -9`` of that process in the middle of a bot step takes its Xvfb and the
legacy program with it (nothing is left running), and the step, run again by
the next pool process on a new display, leaves exactly one order in the
program's records (RELIABILITY 3, on the desktop).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import need
from tests.sandbox import RecordsServer
from tests.support import Harness, wait_until
from tests.support.procs import command_name, descendants, is_alive

pytestmark = [pytest.mark.slow, pytest.mark.desktop]

CANARY = "canary-Wk5!q2"
ORDER = {
    "reference": "PO-9002",
    "customer": "Albrecht Metallbau GmbH",
    "postal_code": "10115",
    "amount": "12.00",
}


def the_program(records: Path) -> list[int]:
    """Processes running the legacy program with this records file (they are in their own
    session, so not descendants of the worker)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if str(records).encode() in argv and b"tests.sandbox.legacy_desktop" in argv:
                found.append(int(entry.name))
    return [pid for pid in found if is_alive(pid)]


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    if shutil.which("Xvfb") is None:
        need("Xvfb", "Xvfb is missing; apt-get install xvfb")
    records, log = tmp_path / "orders.jsonl", tmp_path / "program.log"
    command = [sys.executable, "-m", "tests.sandbox.legacy_desktop", "--records", str(records)]
    command += ["--password", CANARY, "--log", str(log), "--save-delay", "4"]
    env = {
        "HUB_FLOWS": "flows.desktop_orders",
        "HUB_DESKTOP_DISPLAY": "xvfb",
        "HUB_SECRET_ORDER_ENTRY": CANARY,
        "ORDER_ENTRY_COMMAND": " ".join(command),
    }
    with RecordsServer() as sandbox:
        h = Harness(tmp_path, sandbox, settings=env)
        try:
            yield h
        finally:
            h.close()


def test_a_pool_process_killed_mid_bot_step_leaves_no_xvfb_no_program_and_one_order(
    harness: Harness, tmp_path: Path
) -> None:
    records, log = tmp_path / "orders.jsonl", tmp_path / "program.log"
    worker = harness.procs.worker(concurrency=1, queues="desktop")
    harness.procs.scheduler()
    run_id = harness.hub.engine.start_run("desktop_orders", ORDER).run_id

    def saving() -> bool:  # the program froze in its save: the bot is mid step
        return log.exists() and "not found PO-9002" in log.read_text()

    wait_until(saving, 60, "the bot to look the order up", worker.tail)
    (child,) = worker.children()
    displays = [p for p in descendants(child) if command_name(p) == "Xvfb"]
    programs = the_program(records)
    assert len(displays) == 1, "the pool process should have started its own Xvfb"
    assert len(programs) == 1, "the bot should have started the legacy program"

    os.kill(child, signal.SIGKILL)

    wait_until(
        lambda: not any(is_alive(p) for p in displays + programs),
        15,
        "the killed pool process's Xvfb and program to be gone",
        lambda: f"alive: {[p for p in displays + programs if is_alive(p)]}",
    )
    view = harness.wait_status(run_id, timeout=120)
    assert view["output"]["reference"] == "PO-9002"
    saved = [json.loads(line) for line in records.read_text().splitlines() if line.strip()]
    assert [o["reference"] for o in saved] == ["PO-9002"]
    assert CANARY not in worker.log()
