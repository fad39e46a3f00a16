"""Structured logs: JSON lines with the run and step of lines written in a step, secrets masked.

In process, steps run through ``LocalHub`` with ``hub.logs.configure`` writing
to a buffer. Then the commands themselves: ``hub scheduler`` and ``hub web``
with ``HUB_LOG_FORMAT`` text and json, and a real ``hub worker`` whose pool
process writes JSON lines that name the run and step it was running.

This module is also the flow module of those processes (``HUB_FLOWS``).
"""

from __future__ import annotations

import io
import json
import logging
import re
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel
from sqlalchemy import select

from hub import Flow, ForEach, StepContext, TransientError, logs, step
from hub import models as m
from hub.registry import Registry
from hub.runtime import Hub
from hub.settings import Settings
from hub.store import Store
from hub.testing import LocalHub
from tests.support.procs import ROOT, HubProcess, clean_env, wait_until

CANARY = "canary-Zq7-4f1e2d"
STEP_FIELDS = ("run_id", "step", "step_id", "attempt", "flow")


# ------------------------------------------------------------------ flows
class Order(BaseModel):
    order_id: str
    lines: list[str] = []


@step(retries=1, backoff=1.0)
def fetch(ctx: StepContext, order: Order) -> Order:
    ctx.log.info("fetching %s", order.order_id)
    if ctx.attempt == 1 and order.order_id.startswith("flaky"):
        raise TransientError("order system busy", retry_after=1)
    return order


@step(retries=0)
def shout(ctx: StepContext, line: str) -> str:
    logging.getLogger("tests.logs.lines").warning("line %s", line)
    return line.upper()


@step(retries=0)
def fail_loudly(ctx: StepContext, order: Order) -> Order:
    try:
        raise ValueError(f"order {order.order_id} has no customer")
    except ValueError:
        ctx.log.exception("checking %s failed", order.order_id)
    return order


@step(retries=0)
def use_secret(ctx: StepContext, order: Order) -> Order:
    secret = ctx.secret("log_canary")
    ctx.log.info("logging in with %s", secret)
    logging.getLogger("tests.logs.connector").info("sent Authorization: Bearer %s", secret)
    try:
        raise PermissionError(f"login with {secret} refused")
    except PermissionError:
        ctx.log.exception("login failed")
    ctx.log.info("logged in", extra={"credentials": {"password": secret}, "tries": 1})
    return order


logged = Flow("logged", [fetch, ForEach(shout, items=lambda order: order.lines)])
loud = Flow("loud", [fail_loudly])
secretive = Flow("secretive", [use_secret])


# ---------------------------------------------------------------- helpers
@pytest.fixture
def capture() -> Iterator[Callable[..., io.StringIO]]:
    """``capture(json=...)``: route the root logger to a buffer; restored afterwards."""
    root = logging.getLogger()
    level, before = root.level, list(root.handlers)
    installed: list[logging.Handler] = []

    def start(*, json: bool = True) -> io.StringIO:
        buffer = io.StringIO()
        installed.append(logs.configure("INFO", json=json, stream=buffer))
        return buffer

    yield start
    for handler in installed:
        root.removeHandler(handler)
    root.setLevel(level)
    assert not [h for h in root.handlers if getattr(h, "_hub_logs", False) and h not in before]


def parse(buffer: io.StringIO) -> list[dict[str, Any]]:
    """Every line of ``buffer`` as JSON (fails on a line that is not one object)."""
    lines = buffer.getvalue().splitlines()
    assert lines, "nothing was logged"
    return [json.loads(line) for line in lines]


def only(lines: list[dict[str, Any]], message: str) -> list[dict[str, Any]]:
    return [line for line in lines if line["message"] == message]


@pytest.fixture
def hub() -> Iterator[LocalHub]:
    made = LocalHub(Registry([logged, loud, secretive]))
    yield made
    made.close()


# ------------------------------------------------------------- in process
def test_lines_written_in_a_step_carry_its_run_step_attempt_and_flow(
    capture: Callable[..., io.StringIO], hub: LocalHub
) -> None:
    buffer = capture(json=True)
    logging.getLogger("tests.logs").info("before the run")
    run_id = hub.start("logged", {"order_id": "flaky-1", "lines": ["a", "b"]})
    hub.drain()
    hub.advance(2)
    hub.drain()
    logging.getLogger("tests.logs").info("after the run")
    assert hub.run(run_id)["status"] == "succeeded"

    lines = parse(buffer)
    with hub.store.read() as s:
        steps = dict(s.execute(select(m.Step.key, m.Step.id).where(m.Step.run_id == run_id)).all())

    first, second = only(lines, "fetching flaky-1")
    for attempt, line in enumerate((first, second), start=1):
        assert {k: line[k] for k in STEP_FIELDS} == {
            "run_id": run_id,
            "step": "fetch",
            "step_id": steps["fetch"],
            "attempt": attempt,
            "flow": "logged",
        }
        assert line["level"] == "INFO"
        assert line["logger"] == "hub.step"
    by_line = {line["message"]: line for line in lines if line["logger"] == "tests.logs.lines"}
    assert {m: (ln["step"], ln["step_id"], ln["attempt"]) for m, ln in by_line.items()} == {
        "line a": ("shout[0]", steps["shout[0]"], 1),
        "line b": ("shout[1]", steps["shout[1]"], 1),
    }
    assert by_line["line a"]["level"] == "WARNING"
    for outside in ("before the run", "after the run"):
        (line,) = only(lines, outside)
        assert not set(STEP_FIELDS) & set(line), line
    for line in lines:
        at = datetime.fromisoformat(line["time"].replace("Z", "+00:00"))
        assert line["time"].endswith("Z") and at.utcoffset() == timedelta(0)
        assert abs(datetime.now(UTC) - at) < timedelta(minutes=1)


def test_an_exception_is_kept_as_exc(capture: Callable[..., io.StringIO], hub: LocalHub) -> None:
    buffer = capture(json=True)
    run_id = hub.start("loud", {"order_id": "L-1"})
    hub.drain()

    (line,) = only(parse(buffer), "checking L-1 failed")
    assert line["level"] == "ERROR"
    assert line["run_id"] == run_id and line["step"] == "fail_loudly"
    assert line["exc"].startswith("Traceback (most recent call last):")
    assert line["exc"].endswith("ValueError: order L-1 has no customer")


def test_a_masked_secret_stays_masked_in_every_field(
    capture: Callable[..., io.StringIO], hub: LocalHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HUB_SECRET_LOG_CANARY", CANARY)
    buffer = capture(json=True)
    run_id = hub.start("secretive", {"order_id": "S-1"})
    hub.drain()
    assert hub.run(run_id)["status"] == "succeeded"

    assert CANARY not in buffer.getvalue()
    lines = parse(buffer)
    assert only(lines, "logging in with [redacted]")[0]["logger"] == "hub.step"
    assert only(lines, "sent Authorization: Bearer [redacted]")[0]["run_id"] == run_id
    (failed,) = only(lines, "login failed")
    assert failed["exc"].endswith("PermissionError: login with [redacted] refused")
    (extra,) = only(lines, "logged in")
    assert extra["credentials"] == {"password": "[redacted]"}
    assert extra["tries"] == 1


def test_text_lines_are_unchanged(capture: Callable[..., io.StringIO], hub: LocalHub) -> None:
    buffer = capture(json=False)
    hub.start("logged", {"order_id": "T-1"})
    hub.drain()

    lines = buffer.getvalue().splitlines()
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO hub\.step: fetching T-1", lines[0]
    ), lines
    assert not any(line.startswith("{") for line in lines)


def test_configure_replaces_its_own_handler_only(capture: Callable[..., io.StringIO]) -> None:
    root = logging.getLogger()
    first = capture(json=False)
    second = capture(json=True)
    logging.getLogger("tests.logs").warning("once")

    assert first.getvalue() == ""
    assert only(parse(second), "once")[0]["level"] == "WARNING"
    assert sum(getattr(h, "_hub_logs", False) for h in root.handlers) == 1


# ----------------------------------------------------------- the commands
def _env(tmp_path: Path, log_format: str | None) -> dict[str, str]:
    values = {
        "HUB_HOME": str(tmp_path / "home"),
        "HUB_FLOWS": "tests.hub.test_logs",
        "HUB_TICK_SECONDS": "0.2",
    }
    if log_format is not None:
        values["HUB_LOG_FORMAT"] = log_format
    return clean_env(values)


def _migrated(tmp_path: Path) -> Settings:
    settings = Settings(home=tmp_path / "home")
    store = Store(settings.database)
    try:
        store.migrate()
    finally:
        store.engine.dispose()
    return settings


def _json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


@pytest.mark.parametrize("log_format", [None, "text", "json"])
def test_hub_scheduler_logs_as_hub_log_format_says(tmp_path: Path, log_format: str | None) -> None:
    _migrated(tmp_path)

    done = subprocess.run(
        [sys.executable, "-m", "hub", "scheduler", "--once"],
        cwd=ROOT,
        env=_env(tmp_path, log_format),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    if log_format == "json":
        (line,) = [ln for ln in _json_lines(done.stderr) if ln["logger"] == "hub.scheduler"]
        assert line["message"] == "scheduler ticking every 0.20 s"
        assert line["level"] == "INFO"
        assert all(ln.startswith("{") for ln in done.stderr.splitlines()), done.stderr
    else:  # as it always was: logging.basicConfig's "time name message"
        assert re.search(
            r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} hub\.scheduler scheduler ticking every 0\.20 s$",
            done.stderr,
            re.MULTILINE,
        ), done.stderr
        assert "{" not in done.stderr


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
@pytest.mark.parametrize("log_format", ["text", "json"])
def test_hub_web_logs_as_hub_log_format_says(tmp_path: Path, log_format: str) -> None:
    _migrated(tmp_path)
    port = _free_port()
    proc = HubProcess(
        "web",
        ["web", "--port", str(port)],
        _env(tmp_path, log_format),
        tmp_path / "web.log",
    )
    try:
        proc.wait_for_log("Application startup complete", timeout=40)
    finally:
        proc.terminate()
        proc.close()

    text = proc.log()
    if log_format == "json":
        startup = [ln for ln in _json_lines(text) if ln["logger"].startswith("uvicorn")]
        messages = [ln["message"] for ln in startup]
        assert "Application startup complete." in messages, text
        assert f"Uvicorn running on http://127.0.0.1:{port} (Press CTRL+C to quit)" in messages
    else:  # uvicorn's own format, as before
        assert "INFO:     Application startup complete." in text
        assert _json_lines(text) == []


@pytest.mark.slow
def test_a_worker_process_writes_json_lines_with_the_run_and_step(tmp_path: Path) -> None:
    settings = _migrated(tmp_path)
    proc = HubProcess(
        "worker",
        ["worker", "--concurrency", "1", "--queues", "default", "--loglevel", "INFO"],
        _env(tmp_path, "json"),
        tmp_path / "worker.log",
    )
    hub = Hub(settings, registry=Registry([logged, loud, secretive]))
    try:
        proc.wait_for_log(" ready.", timeout=40)
        run_id = hub.engine.start_run("logged", {"order_id": "W-1", "lines": ["x"]}).run_id

        def finished() -> bool:
            with hub.store.read() as s:
                from hub.views import describe_run

                return describe_run(s, run_id)["status"] == "succeeded"

        wait_until(finished, 30, f"run {run_id} to succeed", proc.tail)
        wait_until(lambda: "line x" in proc.log(), 10, "the step's log line", proc.tail)
    finally:
        proc.terminate()
        proc.close()
        hub.close()

    lines = _json_lines(proc.log())
    (fetching,) = only(lines, "fetching W-1")
    assert {k: fetching[k] for k in ("run_id", "step", "attempt", "flow")} == {
        "run_id": run_id,
        "step": "fetch",
        "attempt": 1,
        "flow": "logged",
    }
    (line,) = only(lines, "line x")
    assert line["run_id"] == run_id and line["step"] == "shout[0]"
    # Celery's own lines are JSON too, and carry no step
    ready = [ln for ln in lines if ln["message"].endswith(" ready.")]
    assert ready and not set(STEP_FIELDS) & set(ready[0])
