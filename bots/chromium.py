"""Which Chromium web bots drive, and how it is launched.

:func:`find` looks, in this order, at ``HUB_CHROMIUM`` (a path), the
system's Chromium on ``PATH`` or its usual paths, then the Chromium that
``playwright install chromium`` downloads; it returns a :class:`Found`
naming the path and where it came from, or raises :class:`ChromiumMissing`
saying how to get one. ``hub doctor`` reports the same.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

#: Flags for a headless Chromium in a worker: no sandbox (containers), no GPU, and
#: none of the background traffic a bot must not make (updates, sync, QUIC probes).
LAUNCH_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
)
SYSTEM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
SYSTEM_PATHS = (
    "/usr/bin/chromium",
    "/usr/bin/chromium-browser",
    "/usr/lib/chromium/chromium",
    "/snap/bin/chromium",
    "/usr/bin/google-chrome",
    "/opt/google/chrome/chrome",
    "/Applications/Chromium.app/Contents/MacOS/Chromium",
    "/Applications/Google Chrome.app/Contents/MacOS/Google Chrome",
)
HOW_TO_GET = (
    "install one (apt-get install chromium), set HUB_CHROMIUM to its path, "
    "or run `playwright install chromium`"
)


class ChromiumMissing(RuntimeError):
    """No Chromium was found; the message says where the hub looked and how to get one."""


@dataclass(frozen=True)
class Found:
    """A Chromium executable and where it was found: ``HUB_CHROMIUM``, ``system`` or ``playwright``."""

    path: str
    source: str

    def __str__(self) -> str:
        return f"{self.path} ({self.source})"


def find(env: Mapping[str, str] | None = None) -> Found:
    """The Chromium to launch. Raises :class:`ChromiumMissing` when there is none."""
    env = os.environ if env is None else env
    chosen = env.get("HUB_CHROMIUM")
    if chosen:
        if _runnable(chosen):
            return Found(chosen, "HUB_CHROMIUM")
        raise ChromiumMissing(f"HUB_CHROMIUM={chosen} is not an executable file; " + HOW_TO_GET)
    for candidate in _system_candidates():
        if _runnable(candidate):
            return Found(candidate, "system")
    for download in _playwright_candidates(env):
        if _runnable(str(download)):
            return Found(str(download), "playwright")
    raise ChromiumMissing("no Chromium found (HUB_CHROMIUM unset, none on PATH): " + HOW_TO_GET)


def _runnable(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def _system_candidates() -> Iterator[str]:
    for name in SYSTEM_NAMES:
        found = shutil.which(name)
        if found:
            yield found
    yield from SYSTEM_PATHS


def _playwright_candidates(env: Mapping[str, str]) -> Iterator[Path]:
    """Executables under Playwright's browser folder, its pinned revision first."""
    root = _browsers_folder(env)
    if root is None or not root.is_dir():
        return
    revision = _pinned_revision()
    folders = sorted(root.glob("chromium-*"), reverse=True)
    folders.sort(key=lambda f: f.name != f"chromium-{revision}")  # the pinned one first
    for folder in folders:
        for pattern in ("chrome-linux*/chrome", "chrome-mac*/Chromium.app/Contents/MacOS/Chromium",
                        "chrome-mac*/Google Chrome for Testing.app/Contents/MacOS/*"):  # fmt: skip
            yield from sorted(folder.glob(pattern))


def _browsers_folder(env: Mapping[str, str]) -> Path | None:
    configured = env.get("PLAYWRIGHT_BROWSERS_PATH")
    if configured == "0":  # browsers kept inside the installed package
        package = _driver_package()
        return package / ".local-browsers" if package else None
    if configured:
        return Path(configured)
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "ms-playwright"
    cache = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "ms-playwright"


def _driver_package() -> Path | None:
    try:
        from playwright._impl._driver import compute_driver_executable
    except ImportError:  # the browser extra is not installed
        return None
    try:
        return Path(compute_driver_executable()[1]).parent
    except Exception:  # a driver without Node.js: no download to find either
        return None


def _pinned_revision() -> str | None:
    package = _driver_package()
    try:
        data = json.loads((package / "browsers.json").read_text()) if package else {}
    except (OSError, ValueError):
        return None
    for browser in data.get("browsers", []):
        if browser.get("name") == "chromium":
            return str(browser.get("revision"))
    return None
