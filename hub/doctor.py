"""``hub doctor``: what is reachable, what is missing, and how to fix it."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

from hub.settings import Settings

Check = tuple[bool | None, str, str]


def checks(settings: Settings) -> Iterator[Check]:
    """Yield ``(ok, name, detail)``; ``ok`` is None for something optional that is missing."""
    yield _database(settings)
    yield _broker(settings)
    yield _flows(settings)
    yield _chromium()
    yield _display(settings)


def _database(settings: Settings) -> Check:
    from sqlalchemy import inspect, text
    from sqlalchemy.engine import make_url

    from hub.store import Store, head_revision

    url = make_url(settings.database).render_as_string(hide_password=True)
    try:
        store = Store(settings.database)
        with store.engine.connect() as conn:
            conn.execute(text("select 1"))
            tables = set(inspect(conn).get_table_names())
        revision = store.revision()
        store.engine.dispose()
    except Exception as exc:
        return False, "database", f"{url} unreachable: {short_error(exc)}; check HUB_DATABASE_URL"
    head = head_revision()
    if "runs" not in tables:
        return False, "database", f"{url} reachable but has no hub tables: run `hub db upgrade`"
    if revision is not None and revision != head:
        return (
            False,
            "database",
            f"{url} is at schema revision {revision}, this hub needs {head}: run `hub db upgrade`",
        )
    return True, "database", f"{url} (schema {revision or 'not versioned'})"


def _broker(settings: Settings) -> Check:
    if settings.embedded_broker:
        return True, "broker", f"embedded (filesystem transport in {settings.broker_folder})"
    url = safe_broker_url(settings.broker)
    try:
        from kombu import Connection

        with Connection(settings.broker, connect_timeout=3) as conn:
            conn.ensure_connection(max_retries=1)
    except Exception as exc:
        return False, "broker", f"{url} unreachable: {short_error(exc)}; check HUB_BROKER_URL"
    return True, "broker", url


def safe_broker_url(url: str) -> str:
    """The broker URL with its password masked, for messages."""
    from kombu.utils.url import maybe_sanitize_url

    return str(maybe_sanitize_url(url))


def short_error(exc: BaseException) -> str:
    """The first line of a driver's error, without SQLAlchemy's background links."""
    inner = getattr(exc, "orig", None) or exc
    lines = [line.strip() for line in str(inner).splitlines() if line.strip()]
    return (lines[0] if lines else type(inner).__name__).rstrip(".")


def _flows(settings: Settings) -> Check:
    from hub.registry import Registry

    try:
        names = [f.name for f in Registry.load(settings.flow_modules)]
    except Exception as exc:
        return False, "flows", str(exc)
    return True, "flows", ", ".join(names) or "none found (set HUB_FLOWS)"


def _chromium() -> Check:
    from bots.chromium import ChromiumMissing, find

    try:
        found = find()
    except ChromiumMissing as exc:
        ok = None if not os.environ.get("HUB_CHROMIUM") else False
        return ok, "chromium", f"{exc} (browser steps need it)"
    where = {
        "HUB_CHROMIUM": "from HUB_CHROMIUM",
        "system": "the system's",
        "playwright": "Playwright's download",
    }[found.source]
    try:
        import playwright  # noqa: F401
    except ImportError:
        return (
            None,
            "chromium",
            f"{found.path} ({where}); Playwright missing: pip install 'hub[browser]'",
        )
    return True, "chromium", f"{found.path} ({where})"


def _display(settings: Settings) -> Check:
    import importlib.util

    mode = settings.desktop_display
    if mode == "auto" and os.environ.get("DISPLAY"):
        where = f"DISPLAY={os.environ['DISPLAY']} (HUB_DESKTOP_DISPLAY=auto)"
    elif mode in ("auto", "xvfb"):
        if not shutil.which("Xvfb"):
            return (
                None,
                "display",
                "no DISPLAY and no Xvfb (desktop steps need one): apt-get install xvfb",
            )
        where = f"desktop workers start their own Xvfb ({settings.desktop_size or '1024x768'})"
    else:
        where = f"HUB_DESKTOP_DISPLAY={mode}"
    if importlib.util.find_spec("pyautogui") is None:
        return None, "display", f"{where}; PyAutoGUI missing: pip install 'hub[desktop]'"
    return True, "display", where
