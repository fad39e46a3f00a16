"""A generic REST API on 127.0.0.1 that misbehaves on command, for connector tests and benchmarks.

Endpoints (JSON unless noted)::

    POST   /oauth/token          OAuth 2.0 client credentials grant (RFC 6749 §4.4): form body
                                 grant_type=client_credentials[&scope=...]; the client
                                 authenticates with HTTP Basic or client_id/client_secret in the
                                 body (not both) -> {"access_token", "token_type": "Bearer",
                                 "expires_in"[, "scope"]}; errors as in §5.2
    POST   /orders               JSON object -> 201 {"id", "created_at", ...the body}, honouring
                                 Idempotency-Key: the same key again replays the first response
                                 (header Idempotent-Replayed: true, no new effect); the same key
                                 with another body -> 422
    GET    /orders/{id}          200 the order | 404
    PATCH  /orders/{id}          JSON object merged into the order -> 200
    DELETE /orders/{id}          204
    GET    /items/link           ?page=&per_page=   a JSON array; Link: <...>; rel="next" (RFC 8288)
                                 with rel first/prev/next/last
    GET    /items/cursor         ?cursor=&limit=    {"data": [...], "next_cursor": str | null}
    GET    /items/offset         ?offset=&limit=    {"data": [...], "offset", "limit", "total"}
    GET    /items/next           ?page=&page_size=  {"count", "next": URL | null, "previous",
                                 "results": [...]}
    *      /echo                 {"method", "url", "path", "query", "headers", "body", "json"}
    GET    /redirect?to=URL      302 (or ?status=301|303|307|308) with Location: URL

Authentication: the paths above are open. The same paths under a prefix need one scheme,
checked from the request's headers; a missing or wrong credential answers 401 with a
``WWW-Authenticate`` challenge:

    /key/...      X-API-Key: <api_key>
    /basic/...    Authorization: Basic <username:password>
    /bearer/...   Authorization: Bearer <a token from /oauth/token, or bearer_token>

A token from ``/oauth/token`` lives :attr:`RestSandbox.token_seconds`; after that it answers
401 with ``WWW-Authenticate: Bearer realm="sandbox", error="invalid_token"``.

Misbehaviour, steered from the test: :meth:`RestSandbox.fail_next` (``n`` answers of
``status``, nothing changes), :meth:`RestSandbox.throttle_next` (429 with ``Retry-After``),
:attr:`RestSandbox.delay` (seconds before every answer), :meth:`RestSandbox.redirect` (a path
answers a redirect to any URL). :attr:`RestSandbox.calls` logs what arrived, with secrets
reduced to the authorization scheme. Run it alone for benchmarks with
``python -m tests.sandbox.rest_api [--port N]``.

:class:`ThreadedServer` (uvicorn in a daemon thread) serves this app and the WordPress one.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import json
import math
import re
import secrets
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any
from urllib.parse import parse_qsl, unquote_plus, urlencode

import uvicorn
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

#: Request headers whose values never reach :attr:`RestSandbox.calls`.
SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "x-api-key", "cookie"})
#: Query parameters whose values never reach :attr:`RestSandbox.calls`.
_SECRET_PARAM = re.compile(r"secret|token|password|passwd|api[_-]?key|auth", re.IGNORECASE)
REDACTED = "[redacted]"
REALM = "sandbox"
DEFAULT_PAGE_SIZE = 10
MAX_PAGE_SIZE = 100
_PREFIX = re.compile(r"^/(key|basic|bearer)(/.*)$")
_ORDER = re.compile(r"^/orders/(\d+)$")


class ThreadedServer:
    """An ASGI app served by uvicorn on 127.0.0.1 from a daemon thread.

    ``port`` 0 picks a free port. :meth:`stop` ends requests that are waiting in
    :meth:`pause` at once, so a sandbox told to be slow still stops quickly.
    """

    def __init__(self, app: ASGIApp, port: int = 0) -> None:
        self.app = app
        self.requested_port = port
        self.stopping = threading.Event()
        self._sock: socket.socket | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        assert self._sock is not None, "start() the server first"
        return int(self._sock.getsockname()[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, within: float = 10.0) -> None:
        """Listen and serve; returns once uvicorn accepts connections."""
        self.stopping.clear()
        # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say they are TCP,
        # and without it every answer waits for a delayed ACK (some 40 ms).
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.requested_port))
        config = uvicorn.Config(
            self.app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=5,
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="sandbox-http"
        )
        self._sock, self._server, self._thread = sock, server, thread
        thread.start()
        deadline = time.monotonic() + within
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"the sandbox server on port {self.requested_port} did not start"
                )
            time.sleep(0.01)

    def stop(self) -> None:
        """Stop accepting, finish the requests under way, join the thread."""
        self.stopping.set()
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
        if self._sock is not None:
            self._sock.close()

    async def pause(self, seconds: float) -> None:
        """Sleep ``seconds`` without holding up other connections (cut short by :meth:`stop`)."""
        end = time.monotonic() + seconds
        while not self.stopping.is_set():
            left = end - time.monotonic()
            if left <= 0:
                return
            await asyncio.sleep(min(left, 0.05))


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    """A JSON answer (``None`` body: no content)."""
    if body is None:
        return Response(status_code=status, headers=headers)
    data = json.dumps(body, ensure_ascii=False).encode()
    return Response(data, status, headers, media_type="application/json")


def redacted_headers(headers: Headers) -> dict[str, str]:
    """The request's headers (lower-case names), Authorization cut to its scheme, secrets hidden."""
    seen: dict[str, list[str]] = {}
    for name, value in headers.items():
        if name == "authorization":
            value = value.split(" ", 1)[0]
        elif name in SECRET_HEADERS:
            value = REDACTED
        seen.setdefault(name, []).append(value)
    return {name: ", ".join(values) for name, values in seen.items()}


def redacted_query(query: str) -> str:
    """``query`` with the values of secret-looking parameters hidden."""
    pairs = parse_qsl(query, keep_blank_values=True)
    return urlencode([(k, REDACTED if _SECRET_PARAM.search(k) else v) for k, v in pairs])


def basic_credentials(headers: Headers) -> tuple[str, str] | None:
    """The user and password of an ``Authorization: Basic`` header, if well formed."""
    scheme, _, value = headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


def bearer_token(headers: Headers) -> str | None:
    """The token of an ``Authorization: Bearer`` header."""
    scheme, _, value = headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return value.strip() or None


def _retry_after_value(retry_after: str | int | datetime | None) -> str | None:
    if retry_after is None or isinstance(retry_after, str):
        return retry_after
    if isinstance(retry_after, datetime):
        return format_datetime(retry_after.astimezone(UTC), usegmt=True)
    return str(retry_after)


@dataclass(frozen=True)
class Call:
    """One request as the sandbox saw it (no secret values)."""

    at: float
    method: str
    path: str
    query: str  # secret-looking parameters' values replaced by "[redacted]"
    status: int
    headers: dict[str, str]  # lower-case names; Authorization holds only its scheme
    idempotency_key: str | None
    auth_scheme: str | None  # "Basic", "Bearer", ... from Authorization; "X-API-Key" for a key


@dataclass(frozen=True)
class _Stored:
    """The first answer to an Idempotency-Key, with the body it answered."""

    request: Any
    status: int
    body: dict[str, Any]
    headers: dict[str, str]


@dataclass
class _Misbehaviour:
    """The next ``count`` requests (to ``path`` or below it) answer ``status``."""

    count: int = 0
    status: int = 503
    path: str | None = None
    retry_after: str | None = None

    def take(self, path: str) -> bool:
        """Whether this request is one of the next ``count`` (under ``path``); counts it."""
        if self.count <= 0:
            return False
        if self.path is not None:
            base = self.path.rstrip("/")
            if path != self.path and not path.startswith(base + "/"):
                return False
        self.count -= 1
        return True


class RestSandbox:
    """The sandbox: start with :meth:`start` (or ``with``); :meth:`stop` joins the thread.

    Credentials are attributes (random per instance unless given): :attr:`api_key`,
    :attr:`username` and :attr:`password`, :attr:`bearer_token`, :attr:`client_id` and
    :attr:`client_secret`. ``items`` seeds ``/items``; ``token_seconds`` is the lifetime of
    a token from ``/oauth/token`` (changeable later through the attribute). All control
    methods are safe to call while requests are being served.
    """

    def __init__(
        self,
        *,
        port: int = 0,
        items: int = 25,
        token_seconds: float = 3600.0,
        api_key: str | None = None,
        username: str = "api-user",
        password: str | None = None,
        bearer_token: str | None = None,
        client_id: str = "sandbox-client",
        client_secret: str | None = None,
    ) -> None:
        self.api_key = api_key or secrets.token_urlsafe(24)
        self.username = username
        self.password = password or secrets.token_urlsafe(16)
        self.bearer_token = bearer_token or secrets.token_urlsafe(32)
        self.client_id = client_id
        self.client_secret = client_secret or secrets.token_urlsafe(24)
        self.token_seconds = token_seconds
        #: Seconds every request waits before it is answered (for client timeouts).
        self.delay = 0.0
        self._initial = (items, token_seconds)
        self._lock = threading.Lock()
        self._server = ThreadedServer(self, port)
        self._items: list[dict[str, Any]] = []
        self._orders: dict[int, dict[str, Any]] = {}
        self._responses: dict[str, _Stored] = {}
        self._effects: Counter[str] = Counter()
        self._keys: dict[str, list[str]] = {}
        self._tokens: dict[str, float] = {}  # token -> monotonic expiry
        self._token_requests = 0
        self._calls: list[Call] = []
        self._fail = _Misbehaviour()
        self._throttle = _Misbehaviour(status=429)
        self._redirects: dict[str, tuple[str, int]] = {}
        self._next_id = 0
        self.seed_items(items)

    # ------------------------------------------------------------ lifecycle
    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:41234``."""
        return self._server.url

    def start(self) -> RestSandbox:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> RestSandbox:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    # ------------------------------------------------------------- controls
    def fail_next(self, count: int, status: int = 503, path: str | None = None) -> None:
        """The next ``count`` requests (to ``path`` or below it, if given) answer ``status``.

        A failed request changes nothing: no order, no stored Idempotency-Key, no token.
        """
        with self._lock:
            self._fail = _Misbehaviour(count, status, path)

    def throttle_next(
        self,
        count: int,
        retry_after: str | int | datetime | None = "1",
        path: str | None = None,
    ) -> None:
        """The next ``count`` requests answer 429 with ``Retry-After: retry_after``.

        ``retry_after`` is sent as given when a string (seconds, or an HTTP-date), as seconds
        when a number, as an HTTP-date when a datetime; ``None`` sends no ``Retry-After``.
        """
        with self._lock:
            self._throttle = _Misbehaviour(count, 429, path, _retry_after_value(retry_after))

    def redirect(self, path: str, to: str | None, status: int = 302) -> None:
        """Requests to exactly ``path`` answer ``status`` with ``Location: to`` (None: undo)."""
        with self._lock:
            if to is None:
                self._redirects.pop(path, None)
            else:
                self._redirects[path] = (to, status)

    def seed_items(self, count: int) -> None:
        """Replace ``/items`` with ``count`` items, ids 1..count."""
        with self._lock:
            self._items = [
                {"id": i, "name": f"Item {i}", "sku": f"SKU-{i:05d}"} for i in range(1, count + 1)
            ]

    def expire_tokens(self) -> None:
        """Every token issued so far expires now."""
        with self._lock:
            self._tokens = dict.fromkeys(self._tokens, 0.0)

    def reset(self) -> None:
        """Forget orders, keys, tokens, calls and misbehaviour; re-seed the first items."""
        items, token_seconds = self._initial
        with self._lock:
            self._orders.clear()
            self._responses.clear()
            self._effects.clear()
            self._keys.clear()
            self._tokens.clear()
            self._token_requests = 0
            self._calls.clear()
            self._fail = _Misbehaviour()
            self._throttle = _Misbehaviour(status=429)
            self._redirects.clear()
            self._next_id = 0
            self.delay = 0.0
            self.token_seconds = token_seconds
        self.seed_items(items)

    # -------------------------------------------------------------- queries
    @property
    def calls(self) -> list[Call]:
        """Every request so far, oldest first."""
        with self._lock:
            return list(self._calls)

    @property
    def keys(self) -> dict[str, list[str]]:
        """For each order ``ref``, the Idempotency-Keys that created an order."""
        with self._lock:
            return {ref: list(keys) for ref, keys in self._keys.items()}

    @property
    def token_requests(self) -> int:
        """How many requests reached ``POST /oauth/token`` (granted or not)."""
        with self._lock:
            return self._token_requests

    def effects(self, ref: str) -> int:
        """How many orders were created with this body ``ref`` (a retried step must give 1)."""
        with self._lock:
            return self._effects[ref]

    def orders(self) -> list[dict[str, Any]]:
        """The current orders (copies), by id."""
        with self._lock:
            return [dict(order) for _, order in sorted(self._orders.items())]

    def items(self) -> list[dict[str, Any]]:
        """The seeded items (copies)."""
        with self._lock:
            return [dict(item) for item in self._items]

    # ------------------------------------------------------------- serving
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        body = await request.body()
        if self.delay > 0:
            await self._server.pause(self.delay)
        with self._lock:
            response = self._respond(request, body)
            self._log(request, response.status_code)
        await response(scope, receive, send)

    def _log(self, request: Request, status: int) -> None:
        headers = request.headers
        scheme = headers.get("authorization", "").split(" ", 1)[0] or None
        if scheme is None and "x-api-key" in headers:
            scheme = "X-API-Key"
        self._calls.append(
            Call(
                at=time.time(),
                method=request.method,
                path=request.url.path,
                query=redacted_query(request.url.query),
                status=status,
                headers=redacted_headers(headers),
                idempotency_key=headers.get("idempotency-key"),
                auth_scheme=scheme,
            )
        )

    def _respond(self, request: Request, body: bytes) -> Response:
        path = request.url.path
        if self._throttle.take(path):
            retry = self._throttle.retry_after
            return json_response(
                429,
                {"error": "rate_limited", "message": "Too many requests"},
                {"Retry-After": retry} if retry is not None else None,
            )
        if self._fail.take(path):
            status = self._fail.status
            return json_response(
                status, {"error": "unavailable", "message": "The sandbox was told to fail"}
            )
        if path in self._redirects:
            to, status = self._redirects[path]
            return Response(status_code=status, headers={"Location": to})
        route = path
        prefix = _PREFIX.match(path)
        if prefix is not None:
            refused = self._authenticate(prefix[1], request.headers)
            if refused is not None:
                return refused
            route = prefix[2]
        return self._route(request, route, body)

    def _route(self, request: Request, route: str, body: bytes) -> Response:
        method = request.method
        if route == "/echo":
            return self._echo(request, body)
        allowed: tuple[str, ...]
        if route == "/oauth/token":
            allowed = ("POST",)
            if method == "POST":
                return self._token(request, body)
        elif route == "/redirect":
            allowed = ("GET",)
            if method == "GET":
                return self._redirect_to(request)
        elif route == "/orders":
            allowed = ("POST",)
            if method == "POST":
                return self._create_order(request, body)
        elif (match := _ORDER.match(route)) is not None:
            allowed = ("GET", "PATCH", "DELETE")
            if method in allowed:
                return self._order(method, int(match[1]), body)
        elif route.startswith("/items/") and route[7:] in ("link", "cursor", "offset", "next"):
            allowed = ("GET",)
            if method == "GET":
                return self._page(request, route[7:])
        else:
            return json_response(404, {"error": "not_found", "message": f"No route {route}"})
        return json_response(
            405,
            {"error": "method_not_allowed", "message": f"{method} is not allowed here"},
            {"Allow": ", ".join(allowed)},
        )

    # ------------------------------------------------------- authentication
    def _authenticate(self, scheme: str, headers: Headers) -> Response | None:
        """None when the request carries the prefix's credential, else the 401."""
        if scheme == "key":
            given = headers.get("x-api-key")
            if given is not None and secrets.compare_digest(given, self.api_key):
                return None
            message = "Missing X-API-Key" if given is None else "Invalid API key"
            return _unauthorized(f'ApiKey realm="{REALM}", header="X-API-Key"', message)
        if scheme == "basic":
            creds = basic_credentials(headers)
            if creds is not None and _same(creds, (self.username, self.password)):
                return None
            message = "Missing Basic credentials" if creds is None else "Invalid user or password"
            return _unauthorized(f'Basic realm="{REALM}", charset="UTF-8"', message)
        token = bearer_token(headers)
        if token is None:
            return _unauthorized(f'Bearer realm="{REALM}"', "Missing bearer token")
        if secrets.compare_digest(token, self.bearer_token):
            return None
        expiry = self._tokens.get(token)
        if expiry is not None and time.monotonic() < expiry:
            return None
        description = (
            "The access token is invalid" if expiry is None else "The access token expired"
        )
        return _unauthorized(
            f'Bearer realm="{REALM}", error="invalid_token", error_description="{description}"',
            description,
        )

    def _token(self, request: Request, body: bytes) -> Response:
        """RFC 6749 §4.4 client credentials grant with §2.3.1 client authentication."""
        self._token_requests += 1
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/x-www-form-urlencoded":
            return _oauth_error(400, "invalid_request", "The body must be form-urlencoded")
        form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        from_header = basic_credentials(request.headers)
        in_body = "client_id" in form or "client_secret" in form
        if from_header is not None and in_body:
            return _oauth_error(400, "invalid_request", "Use one client authentication method")
        if from_header is not None:
            client = (unquote_plus(from_header[0]), unquote_plus(from_header[1]))
        elif in_body:
            client = (form.get("client_id", ""), form.get("client_secret", ""))
        else:
            return _oauth_error(401, "invalid_client", "Client authentication is missing", True)
        if not _same(client, (self.client_id, self.client_secret)):
            return _oauth_error(
                401, "invalid_client", "Client authentication failed", from_header is not None
            )
        grant = form.get("grant_type")
        if not grant:
            return _oauth_error(400, "invalid_request", "grant_type is missing")
        if grant != "client_credentials":
            return _oauth_error(400, "unsupported_grant_type", f"{grant} is not supported")
        token = secrets.token_urlsafe(32)
        self._tokens[token] = time.monotonic() + self.token_seconds
        answer: dict[str, Any] = {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": math.ceil(self.token_seconds),
        }
        if form.get("scope"):
            answer["scope"] = form["scope"]
        return json_response(200, answer, {"Cache-Control": "no-store", "Pragma": "no-cache"})

    # --------------------------------------------------------------- orders
    def _create_order(self, request: Request, body: bytes) -> Response:
        key = request.headers.get("idempotency-key")
        if key is not None and not key.strip():
            return _error(400, "invalid_idempotency_key", "Idempotency-Key is empty")
        data = _json_object(body)
        if data is None:
            return _error(400, "invalid_json", "The body must be a JSON object")
        if key is not None and key in self._responses:
            stored = self._responses[key]
            if stored.request != data:
                return _error(
                    422,
                    "idempotency_key_mismatch",
                    "This Idempotency-Key was used with a different request body",
                )
            headers = {**stored.headers, "Idempotent-Replayed": "true"}
            return json_response(stored.status, stored.body, headers)
        self._next_id += 1
        order = {
            **data,
            "id": self._next_id,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        self._orders[order["id"]] = order
        ref = str(data.get("ref", ""))
        self._effects[ref] += 1
        prefix = request.url.path.removesuffix("/orders")
        headers = {"Location": f"{prefix}/orders/{order['id']}"}
        if key is not None:
            self._responses[key] = _Stored(data, 201, dict(order), headers)
            self._keys.setdefault(ref, []).append(key)
        return json_response(201, order, headers)

    def _order(self, method: str, order_id: int, body: bytes) -> Response:
        order = self._orders.get(order_id)
        if order is None:
            return _error(404, "not_found", f"No order {order_id}")
        if method == "GET":
            return json_response(200, order)
        if method == "DELETE":
            del self._orders[order_id]
            return json_response(204, None)
        data = _json_object(body)
        if data is None:
            return _error(400, "invalid_json", "The body must be a JSON object")
        data.pop("id", None)
        order.update(data)
        return json_response(200, order)

    # ----------------------------------------------------------- pagination
    def _page(self, request: Request, style: str) -> Response:
        query = request.query_params
        items = self._items
        total = len(items)
        try:
            if style == "cursor":
                limit = _int_param(query.get("limit"), DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE)
                start = _decode_cursor(query["cursor"]) if query.get("cursor") else 0
                data = items[start : start + limit]
                end = start + len(data)
                cursor = _encode_cursor(end) if end < total else None
                return json_response(200, {"data": data, "next_cursor": cursor})
            if style == "offset":
                offset = _int_param(query.get("offset"), 0, 0, None)
                limit = _int_param(query.get("limit"), DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE)
                answer = {
                    "data": items[offset : offset + limit],
                    "offset": offset,
                    "limit": limit,
                    "total": total,
                }
                return json_response(200, answer)
            size_name = "per_page" if style == "link" else "page_size"
            page = _int_param(query.get("page"), 1, 1, None)
            size = _int_param(query.get(size_name), DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE)
        except ValueError as exc:
            return _error(400, "invalid_request", str(exc))
        pages = max(1, math.ceil(total / size))
        data = items[(page - 1) * size : page * size]

        def page_url(number: int) -> str:
            params = [(k, v) for k, v in query.multi_items() if k != "page"]
            return str(request.url.replace(query=urlencode([*params, ("page", str(number))])))

        if style == "next":
            if page > pages:
                return json_response(404, {"detail": "Invalid page."})
            answer = {
                "count": total,
                "next": page_url(page + 1) if page < pages else None,
                "previous": page_url(page - 1) if page > 1 else None,
                "results": data,
            }
            return json_response(200, answer)
        links: list[tuple[str, int]] = []
        if page > 1:
            links += [("first", 1), ("prev", min(page - 1, pages))]
        if page < pages:
            links += [("next", page + 1), ("last", pages)]
        header = ", ".join(f'<{page_url(number)}>; rel="{rel}"' for rel, number in links)
        headers = {"X-Total-Count": str(total)}
        if header:
            headers["Link"] = header
        return json_response(200, data, headers)

    # ---------------------------------------------------------------- tools
    def _echo(self, request: Request, body: bytes) -> Response:
        text = body.decode("utf-8", "replace")
        seen: dict[str, list[str]] = {}
        for name, value in request.headers.items():
            seen.setdefault(name, []).append(value)
        answer = {
            "method": request.method,
            "url": str(request.url),
            "path": request.url.path,
            "query": request.url.query,
            "headers": {name: ", ".join(values) for name, values in seen.items()},
            "body": text,
            "json": _json_value(body),
        }
        return json_response(200, answer)

    def _redirect_to(self, request: Request) -> Response:
        to = request.query_params.get("to")
        status = request.query_params.get("status", "302")
        if not to:
            return _error(400, "invalid_request", "to is missing")
        if status not in ("301", "302", "303", "307", "308"):
            return _error(400, "invalid_request", "status must be 301, 302, 303, 307 or 308")
        return Response(status_code=int(status), headers={"Location": to})


def _same(given: tuple[str, str], expected: tuple[str, str]) -> bool:
    """Whether two (name, secret) pairs are equal, comparing in constant time."""
    name = secrets.compare_digest(given[0].encode(), expected[0].encode())
    secret = secrets.compare_digest(given[1].encode(), expected[1].encode())
    return name and secret


def _error(status: int, code: str, message: str) -> Response:
    return json_response(status, {"error": code, "message": message})


def _unauthorized(challenge: str, message: str) -> Response:
    return json_response(
        401, {"error": "unauthorized", "message": message}, {"WWW-Authenticate": challenge}
    )


def _oauth_error(status: int, code: str, description: str, challenge: bool = False) -> Response:
    headers = {"Cache-Control": "no-store", "Pragma": "no-cache"}
    if challenge:
        headers["WWW-Authenticate"] = f'Basic realm="{REALM}"'
    return json_response(status, {"error": code, "error_description": description}, headers)


def _json_value(body: bytes) -> Any:
    try:
        return json.loads(body) if body else None
    except (ValueError, UnicodeDecodeError):
        return None


def _json_object(body: bytes) -> dict[str, Any] | None:
    value = _json_value(body)
    return value if isinstance(value, dict) else None


def _int_param(value: str | None, default: int, low: int, high: int | None) -> int:
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an integer") from None
    if number < low or (high is not None and number > high):
        bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ValueError(f"{number} must be {bounds}")
    return number


def _encode_cursor(position: int) -> str:
    return base64.urlsafe_b64encode(f"after:{position}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        label, _, number = text.partition(":")
        if label != "after":
            raise ValueError
        return int(number)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ValueError(f"cursor {cursor!r} is not valid") from None


def main(argv: list[str] | None = None) -> None:
    """Serve the sandbox until Ctrl-C, printing its URL and credentials."""
    parser = argparse.ArgumentParser(prog="python -m tests.sandbox.rest_api")
    parser.add_argument("--port", type=int, default=8200, help="port on 127.0.0.1 (0: any free)")
    parser.add_argument("--items", type=int, default=250, help="how many items /items holds")
    parser.add_argument("--token-seconds", type=float, default=3600.0)
    args = parser.parse_args(argv)
    sandbox = RestSandbox(port=args.port, items=args.items, token_seconds=args.token_seconds)
    with sandbox:
        print(
            f"REST sandbox on {sandbox.url} ({args.items} items); Ctrl-C stops it\n"
            f"  /key/...     X-API-Key: {sandbox.api_key}\n"
            f"  /basic/...   user {sandbox.username!r} password {sandbox.password!r}\n"
            f"  /bearer/...  Bearer {sandbox.bearer_token}\n"
            f"  POST /oauth/token  client_id {sandbox.client_id!r}"
            f" client_secret {sandbox.client_secret!r}",
            flush=True,
        )
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()
