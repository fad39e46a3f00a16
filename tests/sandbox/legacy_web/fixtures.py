"""Pytest fixtures of the legacy order-entry app; import them into a test module or conftest.

``legacy_web`` is a started :class:`LegacyWebApp` (user ``clerk``, password
``secret``, autocomplete delay 0.8 s), stopped after the test.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.sandbox.legacy_web.app import LegacyWebApp

USER = "clerk"
PASSWORD = "secret"


@pytest.fixture
def legacy_web() -> Iterator[LegacyWebApp]:
    with LegacyWebApp(USER, PASSWORD) as app:
        yield app
