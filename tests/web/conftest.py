"""Fixtures of the web tests: a hub on each database (SQLite and PostgreSQL), and a browser."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.runtime import Hub
from hub.settings import Settings
from tests.web.apps import REGISTRY


@pytest.fixture
def hub(db_url: str, tmp_path: Path) -> Iterator[Hub]:
    settings = Settings(home=tmp_path / "home", database_url=db_url, broker_url=None)
    made = Hub(settings, registry=REGISTRY)
    made.store.create_all()
    yield made
    made.store.engine.dispose()
