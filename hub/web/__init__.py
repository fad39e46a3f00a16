"""The web app and JSON API: ``create_app(hub)`` builds it (see ``app.py``)."""

from __future__ import annotations

from hub.web.app import create_app

__all__ = ["create_app"]
