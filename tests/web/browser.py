"""Real-browser fixtures: the system Chromium under Playwright, and the app in a real server.

``chromium`` is one headless browser for the test session (the Debian
package ``chromium``, or ``HUB_CHROMIUM``); a test using it skips locally
when it is missing and fails under CI. ``live`` serves the web app with
uvicorn on a free port of 127.0.0.1, in a background thread, over a fresh
SQLite database; the test puts its data in ``live.url``'s database with
``live.database_url``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bots.chromium import LAUNCH_ARGS
from hub.runtime import Hub
from hub.settings import Settings
from hub.web import create_app
from tests.conftest import ROOT, need
from tests.support.server import serve
from tests.web.apps import REGISTRY

CHROMIUM_ARGS = list(LAUNCH_ARGS)
#: Screenshots land here (gitignored) for people to look at.
OUTPUT = ROOT / "test-output"


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    """A headless system Chromium driven by Playwright's sync API."""
    path = os.environ.get("HUB_CHROMIUM", "/usr/bin/chromium")
    if not os.access(path, os.X_OK):
        need("Chromium", f"{path} is missing; apt-get install chromium, or set HUB_CHROMIUM")
    # Playwright's sync API allows one driver per thread: share the one the bots use
    from bots.browser import _DRIVER

    pw = _DRIVER.acquire()
    try:
        browser = pw.chromium.launch(executable_path=path, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()
    finally:
        _DRIVER.release()


@pytest.fixture
def page(chromium: Any) -> Iterator[Any]:
    """A page in a fresh context the size of a laptop screen."""
    context = chromium.new_context(viewport={"width": 1366, "height": 800})
    context.set_default_timeout(10_000)
    yield context.new_page()
    context.close()


@dataclass
class Live:
    url: str
    database_url: str
    hub: Hub


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    """The web app served by uvicorn on 127.0.0.1, over a fresh SQLite database."""
    database_url = f"sqlite:///{tmp_path / 'hub.db'}"
    settings = Settings(home=tmp_path / "home", database_url=database_url, broker_url=None)
    hub = Hub(settings, registry=REGISTRY)
    hub.store.create_all()
    with serve(create_app(hub)) as url:
        yield Live(url=url, database_url=database_url, hub=hub)
    hub.store.engine.dispose()
