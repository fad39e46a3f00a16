"""Which network targets a bot or a connector may reach: an allow-list of ``host:port`` entries.

An entry is ``"127.0.0.1:8100"``, ``"erp.example.com"`` (ports 80 and 443) or a
URL, whose scheme, host and port count (``"http://127.0.0.1:8100/app"``).
A URL is permitted when its scheme is http(s) or ws(s) and its host and port
match an entry exactly, after the browser has normalised it: ``localhost`` is
not ``127.0.0.1``, ``[::1]`` is neither, and ``http://2130706433:8100/`` reaches
the bot as ``127.0.0.1:8100``. Everything else (``file:``, ``ftp:``, other
ports, other spellings) is refused.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

DEFAULT_PORTS = {"http": 80, "ws": 80, "https": 443, "wss": 443}


class Allow:
    """An allow-list; ``Allow([])`` permits nothing."""

    def __init__(self, entries: Iterable[str] = ()) -> None:
        self.targets: set[tuple[str, int]] = set()
        self.add(*entries)

    def add(self, *entries: str) -> None:
        """Permit these entries too; a malformed one raises ``ValueError`` naming it."""
        for entry in entries:
            self.targets.update(_targets(entry))

    def permits(self, url: str) -> bool:
        target = _target(url)
        return target is not None and target in self.targets

    def __str__(self) -> str:
        shown = sorted(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in self.targets)
        return ", ".join(shown) or "nothing"


def _target(url: str) -> tuple[str, int] | None:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    return parts.hostname.lower(), port or DEFAULT_PORTS[scheme]


def _targets(entry: str) -> set[tuple[str, int]]:
    text = entry.strip()
    if "://" in text:
        target = _target(text)
        if target is None:
            raise ValueError(f"allow-list entry {entry!r}: give http(s) or ws(s) URLs")
        return {target}
    try:
        parts = urlsplit("//" + text)
        host, port = parts.hostname, parts.port
    except ValueError as exc:
        raise ValueError(f"allow-list entry {entry!r} is not host:port") from exc
    if not host or parts.path or parts.query:
        raise ValueError(f"allow-list entry {entry!r} is not host:port")
    return {(host.lower(), port)} if port else {(host.lower(), 80), (host.lower(), 443)}
