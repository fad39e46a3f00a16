"""Web bot benchmark: what a browser step costs on a warm and on a cold browser, and how many
orders one browser worker keys into the legacy app a minute.

    .venv/bin/python bench/bots.py [--steps 40] [--cold 5] [--orders 10] [--only desktop]

- ``warm_step_ms``: one browser step's overhead with the worker's warm Chromium: a new
  context with the egress guard, tracing and dialog handlers armed, a page that loads a
  trivial page from loopback, then the context closed and the trace dropped
  (``BrowserService.open`` to ``close``, as the engine calls them). The context and page
  were made by ``BrowserService.idle()`` after the previous step, as the engine does once
  a step's result is stored: ``next_context_prepared_ms`` is what that costs, between
  steps (it is in ``warm_engine_step_ms``);
- ``unprepared_step_ms``: the same step when no context was made ahead (the first step
  after a relaunch, or a worker whose engine never calls ``idle()``): the context is made
  inside the step. It is also about what a busy browser worker spends per step, since
  it makes the next context between steps;
- ``bare_context_ms``: Playwright's floor on this machine: a new context and page that
  load the same page, then close, with nothing armed;
- ``warm_engine_step_ms``: the same step run through the engine (LocalHub on SQLite):
  lease, attempt rows, output commit included;
- ``cold_step_ms``: the same, launching Chromium (and Playwright's driver) first and
  closing it after, as a worker without a warm browser would;
- ``orders_per_minute``: the example flow ``legacy_orders`` (log in, search by reference,
  new order with the slow autocomplete and the confirm dialog) run one after the other
  in-process against the legacy app (autocomplete delay 0.8 s, as shipped);
- ``worker_rss_mb``: resident memory of this process, and of it plus Playwright's
  driver and Chromium (every descendant), with the browser warm.

Desktop (``--only desktop`` runs just these):

- ``desktop_step_ms``: one desktop step's overhead on the worker's own Xvfb: the display
  lease, the health check (size, a screenshot that must not be black), a pointer move and
  the active window's title read, then the lease released (``DesktopService.open`` to
  ``close``);
- ``desktop_engine_step_ms``: the same step run through the engine (LocalHub on SQLite);
- ``desktop_orders_per_minute``: the example flow ``desktop_orders`` (start the Tk
  program, log in, find the reference, key the order, close the program), one after the
  other;
- ``desktop_worker_rss_mb``: this process plus its Xvfb, with the display warm.

It prints figures and never asserts on time; its last line is one JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import http.server
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bots.browser import BrowserService
from bots.chromium import find
from bots.web import WebBot
from hub import Flow, StepContext, step
from hub.registry import Registry
from hub.settings import Settings
from hub.testing import LocalHub
from tests.sandbox.legacy_web import LegacyWebApp

PAGE = b"<!doctype html><title>trivial</title><p>ok</p>"


class _Trivial(http.server.BaseHTTPRequestHandler):
    def log_message(self, *_: Any) -> None:
        pass

    def handle(self) -> None:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # closed mid-answer
            super().handle()

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)


def serve() -> str:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Trivial)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}"


@step(queue="browser", retries=0)
def trivial(ctx: StepContext, data: dict[str, Any]) -> dict[str, Any]:
    bot = WebBot(ctx, data["url"])
    bot.goto("/")
    return {"title": bot.page.title()}


@step(queue="desktop", retries=0)
def desktop_trivial(ctx: StepContext, data: dict[str, Any]) -> dict[str, Any]:
    desk = ctx.desktop
    desk.gui.moveTo(5 + data["n"] % 50, 5)
    return {"title": desk.active_title}


def ctx_for(n: int) -> StepContext:
    return StepContext(
        run_id=f"bench-{n}", flow="bench", step="trivial", key="trivial", attempt=1,
        idempotency_key=f"bench-{n}:trivial", run_input={},
    )  # fmt: skip


#: how long each service.idle() took: the next context made between steps
PREPARED: list[float] = []


def one_step(service: BrowserService, url: str, n: int, *, prepare: bool = True) -> float:
    ctx = ctx_for(n)
    ctx.services = {"browser": service}
    started = time.perf_counter()
    trivial.fn(ctx, {"url": url})
    ctx.close_services(None)
    took = (time.perf_counter() - started) * 1000
    if not prepare:
        return took
    started = time.perf_counter()
    service.idle()  # as the engine does once the step's result is stored
    PREPARED.append((time.perf_counter() - started) * 1000)
    return took


def timed(count: int, action: Callable[[int], float]) -> list[float]:
    return [action(i) for i in range(count)]


def rss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return round(total / 1024, 1)


def descendants(pid: int) -> list[int]:
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError):
                continue
            parents.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)


def desktop(steps: int, orders: int) -> dict[str, Any]:
    """The desktop figures (see the module docstring)."""
    from bots.desktop import DesktopService

    settings = Settings(desktop_display="xvfb")
    service = DesktopService(settings)

    def one(i: int) -> float:
        ctx = ctx_for(i)
        ctx.services = {"desktop": service}
        started = time.perf_counter()
        desktop_trivial.fn(ctx, {"n": i})
        ctx.close_services(None)
        return (time.perf_counter() - started) * 1000

    one(-1)  # start Xvfb, import PyAutoGUI
    direct = timed(steps, one)
    rss = rss_mb([os.getpid(), *descendants(os.getpid())])

    hub = LocalHub([Flow("bench_desktop", [desktop_trivial])])
    hub.engine.services["desktop"] = service

    def engine_step(i: int) -> float:
        started = time.perf_counter()
        hub.start("bench_desktop", {"n": i})
        hub.drain()
        return (time.perf_counter() - started) * 1000

    engine_step(-1)
    through_engine = timed(steps, engine_step)
    hub.close()

    with tempfile.TemporaryDirectory() as folder:
        records = Path(folder) / "orders.jsonl"
        os.environ["ORDER_ENTRY_COMMAND"] = (
            f"{sys.executable} -m tests.sandbox.legacy_desktop --records {records} "
            "--password bench-password"
        )
        os.environ["HUB_SECRET_ORDER_ENTRY"] = "bench-password"
        orders_hub = LocalHub(Registry.load(["flows.desktop_orders"]))
        orders_hub.engine.services["desktop"] = service
        started = time.perf_counter()
        for i in range(orders):
            order = {"reference": f"D-{i}", "customer": "Albrecht Metallbau GmbH",
                     "postal_code": "10115", "amount": "10.00"}  # fmt: skip
            orders_hub.start("desktop_orders", order)
            orders_hub.drain()
        elapsed = time.perf_counter() - started
        keyed = len(records.read_text().splitlines()) if records.exists() else 0
        orders_hub.close()
    service.shutdown()
    return {
        "desktop_step_ms_p50": pct(direct, 0.5),
        "desktop_step_ms_p95": pct(direct, 0.95),
        "desktop_engine_step_ms_p50": pct(through_engine, 0.5),
        "desktop_engine_step_ms_p95": pct(through_engine, 0.95),
        "desktop_orders_per_minute": round(keyed / elapsed * 60, 1),
        "desktop_orders_keyed": keyed,
        "desktop_worker_rss_mb": rss,
    }


def print_desktop(figures: dict[str, Any]) -> None:
    rows = [
        ("desktop step (open..close)", f"p50 {figures['desktop_step_ms_p50']} ms",
         f"p95 {figures['desktop_step_ms_p95']} ms", "target < 300 ms"),
        ("desktop step through the engine", f"p50 {figures['desktop_engine_step_ms_p50']} ms",
         f"p95 {figures['desktop_engine_step_ms_p95']} ms", ""),
        ("desktop orders keyed a minute", f"{figures['desktop_orders_per_minute']}",
         f"({figures['desktop_orders_keyed']} orders)", ""),
        ("desktop worker RSS", f"{figures['desktop_worker_rss_mb']} MB", "with its Xvfb", ""),
    ]  # fmt: skip
    for row in rows:
        print(f"{row[0]:<34} {row[1]:<16} {row[2]:<36} {row[3]}")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="bench/bots.py")
    parser.add_argument("--steps", type=int, default=40, help="warm steps measured")
    parser.add_argument("--cold", type=int, default=5, help="cold steps measured")
    parser.add_argument("--orders", type=int, default=10, help="orders keyed")
    parser.add_argument("--only", choices=("all", "browser", "desktop"), default="all")
    args = parser.parse_args(argv)
    load = {"load_average": round(os.getloadavg()[0], 1), "cpus": os.cpu_count()}
    if args.only == "desktop":
        figures = {**desktop(args.steps, args.orders), **load}
        print_desktop(figures)
        print(json.dumps(figures), flush=True)
        return figures
    chromium = find()
    url = serve()
    settings = Settings()
    print(f"Chromium: {chromium}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")

    service = BrowserService(settings, chromium=chromium)
    one_step(service, url, -1)  # launch and warm up
    PREPARED.clear()
    warm = timed(args.steps, lambda i: one_step(service, url, i))
    prepared = list(PREPARED)

    # the first uses the context the last warm step left ready
    unprepared = timed(args.steps + 1, lambda i: one_step(service, url, i, prepare=False))[1:]

    def bare_step(i: int) -> float:  # Playwright's floor: nothing armed, no guard, no trace
        started = time.perf_counter()
        context = service.browser.new_context()
        context.new_page().goto(url)
        context.close()
        return (time.perf_counter() - started) * 1000

    bare = timed(args.steps, bare_step)
    rss_python = rss_mb([os.getpid()])
    rss_all = rss_mb([os.getpid(), *descendants(os.getpid())])

    hub = LocalHub([Flow("bench_trivial", [trivial])])
    hub.engine.services["browser"] = service

    def engine_step(i: int) -> float:
        started = time.perf_counter()
        hub.start("bench_trivial", {"url": url})
        hub.drain()
        return (time.perf_counter() - started) * 1000

    engine_step(-1)
    through_engine = timed(args.steps, engine_step)
    hub.close()
    service.shutdown()

    def cold_step(i: int) -> float:
        fresh = BrowserService(settings, chromium=chromium)
        started = time.perf_counter()
        one_step(fresh, url, i)
        fresh.shutdown()
        return (time.perf_counter() - started) * 1000

    cold = timed(args.cold, cold_step)

    with LegacyWebApp("clerk", "bench-password") as legacy:
        os.environ["LEGACY_WEB_URL"] = legacy.url
        os.environ["HUB_SECRET_LEGACY_WEB"] = "bench-password"
        orders_hub = LocalHub(Registry.load(["flows.legacy_orders"]))
        service = BrowserService(settings, chromium=chromium)
        orders_hub.engine.services["browser"] = service
        started = time.perf_counter()
        for i in range(args.orders):
            order = {"reference": f"B-{i}", "customer": "Albrecht Metallbau GmbH",
                     "postal_code": "10115", "amount": "10.00"}  # fmt: skip
            run_id = orders_hub.start("legacy_orders", order)
            orders_hub.drain()
            for _ in range(5):  # a retry after "System busy" or a slow page waits for its time
                if orders_hub.run(run_id)["status"] != "running":
                    break
                orders_hub.advance(30)
                orders_hub.drain()
        elapsed = time.perf_counter() - started
        keyed = len(legacy.orders)
        orders_hub.close()
        service.shutdown()

    figures = {
        "warm_step_ms_p50": pct(warm, 0.5),
        "warm_step_ms_p95": pct(warm, 0.95),
        "next_context_prepared_ms_p50": pct(prepared, 0.5),
        "unprepared_step_ms_p50": pct(unprepared, 0.5),
        "bare_context_ms_p50": pct(bare, 0.5),
        "warm_engine_step_ms_p50": pct(through_engine, 0.5),
        "warm_engine_step_ms_p95": pct(through_engine, 0.95),
        "cold_step_ms_p50": pct(cold, 0.5),
        "cold_step_ms_max": round(max(cold), 1),
        "orders_per_minute": round(keyed / elapsed * 60, 1),
        "orders_keyed": keyed,
        "worker_rss_mb": rss_python,
        "worker_with_browser_rss_mb": rss_all,
        "load_average": round(os.getloadavg()[0], 1),
        "cpus": os.cpu_count(),
    }
    rows = [
        ("warm browser step (open..close)", f"p50 {figures['warm_step_ms_p50']} ms",
         f"p95 {figures['warm_step_ms_p95']} ms", "target p50 < 150 ms"),
        ("next context, made between steps", f"p50 {figures['next_context_prepared_ms_p50']} ms",
         "(after the result is stored)", ""),
        ("step with no context made ahead", f"p50 {figures['unprepared_step_ms_p50']} ms",
         "(context made inside the step)", ""),
        ("bare Playwright context (floor)", f"p50 {figures['bare_context_ms_p50']} ms", "", ""),
        ("warm step through the engine", f"p50 {figures['warm_engine_step_ms_p50']} ms",
         f"p95 {figures['warm_engine_step_ms_p95']} ms", ""),
        ("cold step (launch..shutdown)", f"p50 {figures['cold_step_ms_p50']} ms",
         f"max {figures['cold_step_ms_max']} ms", ""),
        ("orders keyed a minute", f"{figures['orders_per_minute']}", f"({keyed} orders)", ""),
        ("worker RSS", f"{rss_python} MB", f"{rss_all} MB with driver + Chromium", ""),
    ]  # fmt: skip
    for row in rows:
        print(f"{row[0]:<34} {row[1]:<16} {row[2]:<36} {row[3]}")
    if args.only == "all":
        more = desktop(args.steps, args.orders)
        print_desktop(more)
        figures.update(more)
    print(json.dumps(figures), flush=True)
    return figures


if __name__ == "__main__":
    main()
