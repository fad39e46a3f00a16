"""The order-entry app's state and lifecycle: users' sessions, orders, counters, controls.

:class:`LegacyWebApp` runs the HTTP server in a thread of the test process on
a free port of 127.0.0.1; :mod:`.handler` answers the requests and
:mod:`.pages` draws the HTML. A test reads what the app holds directly
(:attr:`LegacyWebApp.orders`, :meth:`LegacyWebApp.find`,
:attr:`LegacyWebApp.counts`) and steers its quirks (:meth:`busy_next`,
:meth:`expire_sessions`, a fake ``clock``).
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

#: How many order forms one session remembers; an older form answers "form has expired".
FORMS_PER_SESSION = 20


@dataclass(frozen=True)
class Order:
    """One saved order, as the app's database row."""

    number: int
    reference: str
    customer_number: str
    customer: str
    postal_code: str
    amount: str  # canonical, two decimals and a point: "1234.50"
    user: str
    created_at: str  # ISO 8601, UTC

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Counts:
    """What the app has seen since it started (or since :meth:`LegacyWebApp.reset`)."""

    logins: int = 0
    failed_logins: int = 0
    save_attempts: int = 0  # every POST of the order form by a live session
    created: int = 0
    rejected: int = 0  # forms sent back with a validation error
    busy: int = 0  # "System busy" pages answered
    suggestions: int = 0  # autocomplete look-ups
    searches: int = 0  # searches by reference
    exports: int = 0  # CSV downloads


@dataclass
class Session:
    user: str
    last_seen: float
    #: form token -> {generated field name: field}; the app's "view state"
    forms: dict[str, dict[str, str]] = field(default_factory=dict)


class LegacyWebApp:
    """A server-rendered order-entry app of the early 2000s, on 127.0.0.1.

    ``session_seconds`` is the idle time after which a session expires (the
    next request goes to the login page with "Your session has expired");
    ``suggest_delay`` is how long the customer autocomplete takes to answer;
    ``busy_status`` is the HTTP status of the "System busy" page (200 by
    default, as the old app did: a client must read the page to know).
    Start with :meth:`start` or ``with``; :meth:`stop` joins the thread.
    """

    def __init__(
        self,
        user: str = "clerk",
        password: str = "secret",
        *,
        session_seconds: float = 600.0,
        suggest_delay: float = 0.8,
        busy_status: int = 200,
        clock: Callable[[], float] = time.monotonic,
        host: str = "127.0.0.1",
        port: int = 0,
        orders_file: Path | None = None,
    ) -> None:
        self.user = user
        #: when set, each saved order is appended to it as one JSON line (the app's "database")
        self.orders_file = orders_file
        self.password = password
        self.session_seconds = session_seconds
        self.suggest_delay = suggest_delay
        self.busy_status = busy_status
        self.clock = clock
        self.lock = threading.RLock()
        self._address = (host, port)
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.reset()

    # ------------------------------------------------------------ lifecycle
    @property
    def url(self) -> str:
        assert self._httpd is not None, "start() the sandbox first"
        return f"http://{self._address[0]}:{self._httpd.server_address[1]}"

    def start(self) -> LegacyWebApp:
        from tests.sandbox.legacy_web.handler import Handler

        handler = type("BoundHandler", (Handler,), {"app": self})
        self._httpd = ThreadingHTTPServer(self._address, handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(5)
        self._httpd = self._thread = None

    def __enter__(self) -> LegacyWebApp:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    # ------------------------------------------------------------- controls
    def reset(self) -> None:
        """Forget every order, session, counter and pending busy answer."""
        with self.lock:
            self._orders: list[Order] = []
            self.sessions: dict[str, Session] = {}
            self.counts = Counts()
            self._busy_next = 0

    def busy_next(self, count: int, status: int | None = None) -> None:
        """The next ``count`` order saves answer "System busy" and save nothing."""
        with self.lock:
            self._busy_next = count
            if status is not None:
                self.busy_status = status

    def expire_sessions(self) -> None:
        """Every open session expires now, as if its user had gone to lunch."""
        with self.lock:
            for session in self.sessions.values():
                session.last_seen = float("-inf")

    # -------------------------------------------------------------- queries
    @property
    def orders(self) -> list[Order]:
        """The saved orders, oldest first (a copy)."""
        with self.lock:
            return list(self._orders)

    def find(self, reference: str) -> list[Order]:
        """Orders with this external reference; the app does not forbid duplicates."""
        with self.lock:
            return [o for o in self._orders if o.reference == reference]

    def by_reference(self) -> dict[str, list[Order]]:
        with self.lock:
            found: dict[str, list[Order]] = {}
            for order in self._orders:
                found.setdefault(order.reference, []).append(order)
            return found

    # ---------------------------------------------------- used by the handler
    def login(self, user: str, password: str) -> str | None:
        """A new session token for right credentials, else ``None``."""
        with self.lock:
            if not (
                secrets.compare_digest(user, self.user)
                and secrets.compare_digest(password, self.password)
            ):
                self.counts.failed_logins += 1
                return None
            self.counts.logins += 1
            token = secrets.token_hex(16)
            self.sessions[token] = Session(user, self.clock())
            return token

    def logout(self, token: str | None) -> None:
        with self.lock:
            self.sessions.pop(token or "", None)

    def session(self, token: str | None) -> tuple[Session | None, bool]:
        """``(session, expired)``: a live session is touched; an expired one is dropped."""
        with self.lock:
            session = self.sessions.get(token or "")
            if session is None:
                return None, False
            now = self.clock()
            if now - session.last_seen > self.session_seconds:
                del self.sessions[token or ""]
                return None, True
            session.last_seen = now
            return session, False

    def take_busy(self) -> bool:
        """Count a save attempt; ``True`` when it must answer "System busy"."""
        with self.lock:
            self.counts.save_attempts += 1
            if self._busy_next > 0:
                self._busy_next -= 1
                self.counts.busy += 1
                return True
            return False

    def create(self, user: str, values: dict[str, str]) -> Order:
        with self.lock:
            order = Order(
                number=len(self._orders) + 1,
                reference=values["reference"],
                customer_number=values["customer_number"],
                customer=values["customer"],
                postal_code=values["postal_code"],
                amount=values["amount"],
                user=user,
                created_at=datetime.now(UTC).isoformat(timespec="seconds"),
            )
            self._orders.append(order)
            self.counts.created += 1
            if self.orders_file is not None:
                with self.orders_file.open("a", encoding="utf-8") as file:
                    file.write(json.dumps(order.as_dict(), ensure_ascii=False) + "\n")
            return order

    def count(self, counter: str) -> None:
        with self.lock:
            setattr(self.counts, counter, getattr(self.counts, counter) + 1)
