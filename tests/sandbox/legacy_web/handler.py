"""The order-entry app's routes.

::

    GET  /                       -> /frames when logged in, else /login
    GET  /login[?expired=1]      login form (breaks out of frames)
    POST /j_security_check       j_username, j_password -> cookie LEGACYSID, 302 /frames
    GET  /logout                 ends the session, 302 /login
    GET  /frames                 frameset: "menu" (top) and "main"
    GET  /menu, /welcome         the two frames' first pages
    GET  /order/new              order form (generated ids and field names)
    POST /order/save             saves, or: form again with red errors; "System busy"
    GET  /customers/suggest?q=   "number|name" lines, after ``suggest_delay`` seconds
    GET  /customers[?page=N]     customer table, 10 a page
    GET  /order/find[?reference=R]  orders with that external reference
    GET  /orders/export.csv      all orders, ``;``-separated, decimal comma (a download)
    GET  /static/autocomplete.js

A page behind the login, asked for without a session, redirects to /login;
with an expired one, to /login?expired=1 ("Your session has expired"). The
autocomplete answers 401 instead.
"""

from __future__ import annotations

import csv
import io
import secrets
import time
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from threading import RLock
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from tests.sandbox.legacy_web import customers, pages
from tests.sandbox.legacy_web.app import FORMS_PER_SESSION, Session
from tests.sandbox.legacy_web.validation import validate

if TYPE_CHECKING:
    from tests.sandbox.legacy_web.app import LegacyWebApp

COOKIE = "LEGACYSID"
STATIC = Path(__file__).parent / "static"
PAGE_SIZE = 10
EXPIRED = "Your session has expired. Please log in again."


class Handler(BaseHTTPRequestHandler):
    app: LegacyWebApp
    server_version = "Apache/1.3.27 (Unix)"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        pass

    # ------------------------------------------------------------- replies
    def _send(self, status: int, body: bytes, content_type: str, **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Pragma", "no-cache")
        self.send_header("Cache-Control", "no-cache")
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        self.wfile.write(body)

    def _html(self, html: str, status: int = 200, **headers: str) -> None:
        self._send(status, html.encode(), "text/html; charset=utf-8", **headers)

    def _redirect(self, location: str, **headers: str) -> None:
        self._send(302, b"", "text/html; charset=utf-8", Location=location, **headers)

    # ------------------------------------------------------------ requests
    def _url(self) -> tuple[str, dict[str, str]]:
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        return parts.path, query

    def _form(self) -> dict[str, str]:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length).decode("utf-8", "replace") if length else ""
        return {k: v[0] for k, v in parse_qs(raw, keep_blank_values=True).items()}

    def _token(self) -> str | None:
        cookie = SimpleCookie(self.headers.get("Cookie") or "")
        return cookie[COOKIE].value if COOKIE in cookie else None

    def _session(self, *, api: bool = False) -> Session | None:
        """The live session, or ``None`` after answering the redirect (or 401)."""
        session, expired = self.app.session(self._token())
        if session is None:
            if api:
                self._send(401, b"session expired", "text/plain; charset=utf-8")
            else:
                self._redirect("/login?expired=1" if expired else "/login")
        return session

    # -------------------------------------------------------------- routes
    def do_GET(self) -> None:
        path, query = self._url()
        if path == "/login":
            self._html(pages.login(EXPIRED if query.get("expired") else ""))
        elif path.startswith("/static/"):
            self._static(path.removeprefix("/static/"))
        elif path == "/logout":
            self.app.logout(self._token())
            self._redirect("/login", Set_Cookie=f"{COOKIE}=; Path=/; Max-Age=0")
        elif path == "/customers/suggest":
            self._suggest(query.get("q", ""))
        elif path in _PAGES:
            session = self._session()
            if session is not None:
                _PAGES[path](self, session, query)
        else:
            self._html(pages.not_found(path), 404)

    def do_POST(self) -> None:
        path, _ = self._url()
        if path == "/j_security_check":
            form = self._form()
            token = self.app.login(form.get("j_username", ""), form.get("j_password", ""))
            if token is None:
                self._html(pages.login(error="Invalid user name or password."))
            else:
                cookie = f"{COOKIE}={token}; Path=/; HttpOnly"
                self._redirect("/frames", Set_Cookie=cookie)
        elif path == "/order/save":
            session = self._session()
            if session is not None:
                self._save(session)
        else:
            self._html(pages.not_found(path), 404)

    def _static(self, name: str) -> None:
        files = {p.name: p for p in STATIC.iterdir()}
        if name not in files:
            self._html(pages.not_found("/static/" + name), 404)
        else:
            self._send(200, files[name].read_bytes(), "text/javascript; charset=utf-8")

    def _suggest(self, query: str) -> None:
        if self._session(api=True) is None:
            return
        self.app.count("suggestions")
        time.sleep(self.app.suggest_delay)  # the host looks the customers up, slowly
        lines = "".join(f"{c.number}|{c.name}\n" for c in customers.suggest(query))
        self._send(200, lines.encode(), "text/plain; charset=utf-8")

    def _save(self, session: Session) -> None:
        if self.app.take_busy():
            self._html(pages.busy(), self.app.busy_status)
            return
        form = self._form()
        with self.app.lock:
            names = session.forms.get(form.get("__FORM", ""))
        if names is None:
            self._html(pages.form_expired())
            return
        values = {key: form.get(name, "").strip() for key, name in names.items()}
        clean, errors = validate(values)
        if errors:
            self.app.count("rejected")
            self._html(_order_form(self.app.lock, session, values, errors))
            return
        order = self.app.create(session.user, clean)
        self._html(pages.saved(order.number, order.reference))


def _order_form(lock: RLock, session: Session, values: dict[str, str], errors: list[str]) -> str:
    """A fresh form: new ids, new field names, remembered under a new form token."""
    keys = [key for key, _ in pages.FIELDS] + ["customer_number"]
    names = {key: "n_" + secrets.token_hex(4) for key in keys}
    token = secrets.token_hex(8)
    with lock:
        session.forms[token] = names
        while len(session.forms) > FORMS_PER_SESSION:
            del session.forms[next(iter(session.forms))]
    return pages.order_form(token, names, values, errors)


def _root(h: Handler, session: Session, query: dict[str, str]) -> None:
    h._redirect("/frames")


def _customers(h: Handler, session: Session, query: dict[str, str]) -> None:
    total = len(customers.CUSTOMERS)
    count = (total + PAGE_SIZE - 1) // PAGE_SIZE
    try:
        number = min(max(int(query.get("page", "1")), 1), count)
    except ValueError:
        number = 1
    rows = customers.CUSTOMERS[(number - 1) * PAGE_SIZE : number * PAGE_SIZE]
    h._html(pages.customers(rows, number, count, total))


def _find(h: Handler, session: Session, query: dict[str, str]) -> None:
    if "reference" not in query:
        h._html(pages.find("", None))
        return
    reference = query["reference"].strip()
    h.app.count("searches")
    h._html(pages.find(reference, h.app.find(reference)))


def _export(h: Handler, session: Session, query: dict[str, str]) -> None:
    h.app.count("exports")
    out = io.StringIO()
    writer = csv.writer(out, delimiter=";", lineterminator="\r\n")
    writer.writerow(["Order no.", "Reference", "Customer no.", "Customer", "Postal code", "Amount", "Created", "User"])  # fmt: skip
    for o in h.app.orders:
        amount = o.amount.replace(".", ",")
        writer.writerow([o.number, o.reference, o.customer_number, o.customer, o.postal_code, amount, o.created_at, o.user])  # fmt: skip
    disposition = 'attachment; filename="orders.csv"'
    h._send(
        200, out.getvalue().encode(), "text/csv; charset=utf-8", Content_Disposition=disposition
    )


_PAGES = {
    "/": _root,
    "/frames": lambda h, s, q: h._html(pages.frameset()),
    "/menu": lambda h, s, q: h._html(pages.menu(s.user)),
    "/welcome": lambda h, s, q: h._html(pages.welcome(s.user)),
    "/order/new": lambda h, s, q: h._html(_order_form(h.app.lock, s, {}, [])),
    "/customers": _customers,
    "/order/find": _find,
    "/orders/export.csv": _export,
}
