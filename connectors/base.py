"""The small base every connector stands on.

A connector kind is a :class:`Connector` subclass (``connectors.rest``,
``connectors.salesforce``, ``connectors.soap``, ``connectors.wordpress``,
``connectors.fake``). The hub builds one per connection and worker process,
on the first step that asks for it (``ctx.connector("crm")``), and keeps it:
its HTTP connection pool, its login token. For each step it calls
:meth:`Connector.bind`, which returns the client the step uses; the bound
client knows the step's context, so it can

- mask the connection's secret values in the step's evidence and log lines;
- send the step's idempotency key (:meth:`Bound.idempotency_key`);
- leave the last request and response, redacted, as evidence when a call fails.

What every connector does the same way, and the contract tests check:

- **Errors** are the hub's, chained to the vendor's: timeouts, refused
  connections, 429 and 5xx are :class:`~hub.errors.TransientError` (after the
  in-call retries; a ``Retry-After`` longer than ``max_wait`` hands the step
  back to the engine with ``retry_after``, freeing the worker); refusals of
  the request itself (4xx, validation faults) are
  :class:`~hub.errors.BusinessError` with the system's own message.
- **Retries** inside a call (:func:`retrying`): ``retries`` more tries,
  exponential backoff from ``backoff`` with full jitter, ``Retry-After``
  honoured.
- **Rate limits** (:mod:`connectors.ratelimit`): one token bucket per
  connection shared by every worker (Redis), or per process on the embedded
  default.
- **Egress** (:class:`Egress`): every request, redirect and document import is
  checked against the allow-list (the connection's own URL plus ``allow``)
  after DNS resolution; anything else is a :class:`~hub.errors.PolicyViolation`.
"""

from __future__ import annotations

import ipaddress
import logging
import random
import socket
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar
from urllib.parse import urlsplit

from hub.connections import ConnectionConfig, resolve
from hub.egress import DEFAULT_PORTS, Allow
from hub.errors import PolicyViolation, TransientError

if TYPE_CHECKING:
    from connectors.ratelimit import Limiter
    from hub.context import StepContext
    from hub.settings import Settings

log = logging.getLogger("hub.connectors")
T = TypeVar("T")
#: statuses worth another try: too many requests, and the server side's temporary ones
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


class Connector:
    """Base of every connector kind: one per connection and worker process."""

    kind: ClassVar[str] = ""

    def __init__(self, config: ConnectionConfig, settings: Settings) -> None:
        from connectors.ratelimit import limiter

        self.config = config
        self.settings = settings
        self.egress = Egress(config)
        self.limiter: Limiter = limiter(config, settings)

    @property
    def name(self) -> str:
        return self.config.name

    def secret(self, field: str) -> str | None:
        """An auth field's value (``env:VAR`` read now)."""
        return resolve(self.config, field)

    def secret_values(self) -> list[str]:
        """The connection's secret values, to mask in a step's evidence."""
        values = []
        for field in self.config.auth.secrets():
            try:
                value = self.secret(field)
            except Exception:  # reported when the client is used
                continue
            if value:
                values.append(value)
        return values

    def bind(self, ctx: StepContext | None) -> Any:
        """The client a step uses (``ctx`` None: a client for checks and scripts)."""
        raise NotImplementedError

    def check(self) -> str:
        """Reach the system and log in, with no change made; returns what was checked.
        Raises a hub error saying what failed (``hub connections test``)."""
        raise NotImplementedError

    def close(self) -> None:
        """Close pools and sessions."""


class Bound:
    """What a bound client shares: its connector, the step's context, evidence and keys."""

    def __init__(self, connector: Connector, ctx: StepContext | None) -> None:
        self.connector = connector
        self.ctx = ctx
        self._keys = 0
        if ctx is not None:
            ctx.evidence.mask(*connector.secret_values())

    @property
    def config(self) -> ConnectionConfig:
        return self.connector.config

    def idempotency_key(self, given: str | None = None) -> str | None:
        """The key for the next change: ``given``, else the step's key for the first
        change of the attempt and ``KEY-2``, ``KEY-3`` ... for the next ones, the same
        on every attempt as long as the step makes its changes in the same order."""
        if given is not None:
            return given
        if self.ctx is None:
            return None
        self._keys += 1
        key = self.ctx.idempotency_key
        return key if self._keys == 1 else f"{key}-{self._keys}"

    def record(self, *, request: Any = None, response: Any = None) -> None:
        """Leave the exchange (redacted) as the step's evidence."""
        if self.ctx is not None:
            self.ctx.evidence.http(request=request, response=response)

    def note(self, key: str, value: Any) -> None:
        if self.ctx is not None:
            self.ctx.evidence.note(key, value)


class Verbs:
    """``get``/``post``/``put``/``patch``/``delete``: each is :meth:`answer` of that method,
    the body of the system's answer (REST clients and the fake share them)."""

    def answer(self, method: str, path: str, **kw: Any) -> Any:
        raise NotImplementedError

    def get(self, path: str, **kw: Any) -> Any:
        return self.answer("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> Any:
        return self.answer("POST", path, **kw)

    def put(self, path: str, **kw: Any) -> Any:
        return self.answer("PUT", path, **kw)

    def patch(self, path: str, **kw: Any) -> Any:
        return self.answer("PATCH", path, **kw)

    def delete(self, path: str, **kw: Any) -> Any:
        return self.answer("DELETE", path, **kw)


# ------------------------------------------------------------------ retries
class Retry(Exception):
    """Raised inside :func:`retrying`'s ``call`` to ask for another try."""

    def __init__(self, error: TransientError) -> None:
        super().__init__(str(error))
        self.error = error


def retrying(
    config: ConnectionConfig,
    call: Callable[[], T],
    *,
    sleep: Callable[[float], None] = time.sleep,
    jitter: Callable[[], float] = random.random,
) -> T:
    """Run ``call``; when it raises :class:`Retry`, wait and run it again.

    Waits are ``Retry-After`` when the error carries one, else exponential
    backoff (``backoff * 2**n``) with full jitter. After ``retries`` more tries,
    or when the next wait would pass ``max_wait``, the error is raised as a
    :class:`TransientError` (with ``retry_after``) for the engine to retry the step.
    """
    attempt = 0
    while True:
        try:
            return call()
        except Retry as retry:
            error = retry.error
            wait = error.retry_after
            if wait is None:
                wait = config.backoff * (2**attempt) * jitter()
            if attempt >= config.retries or wait > config.max_wait:
                if wait > config.max_wait:
                    error.retry_after = wait
                raise error from retry.__cause__
            attempt += 1
            log.info(
                "%s: %s; try %d of %d in %.2f s",
                config.name,
                error,
                attempt + 1,
                config.retries + 1,
                wait,
            )
            sleep(wait)


def retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (seconds or an HTTP-date); None if absent."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


# ------------------------------------------------------------------- egress
#: addresses no name may resolve to: cloud metadata and link-local, "this host", multicast
_NEVER = [
    ipaddress.ip_network(n)
    for n in ("169.254.0.0/16", "fe80::/10", "0.0.0.0/8", "224.0.0.0/4", "ff00::/8", "::/128")
]


class Egress:
    """The targets a connection may reach: its URL's scheme, host and port, and its
    ``allow`` entries (``host:port`` or URLs). :meth:`check` also resolves the host
    and refuses a name that resolves to a loopback, link-local (cloud metadata) or
    unspecified address: a name in the list cannot be pointed at this machine or at
    the metadata service. Loopback is reachable only when allowed by an IP literal."""

    def __init__(self, config: ConnectionConfig, extra: Iterable[str] = ()) -> None:
        self.name = config.name
        entries = list(config.allow) + list(extra)
        if urlsplit(config.url).scheme in DEFAULT_PORTS:
            entries.append(config.url)
        self.allow = Allow(entries)

    def check(self, url: str) -> list[str]:
        """The addresses ``url`` may be reached at; :class:`PolicyViolation` if none."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not self.allow.permits(url):
            raise PolicyViolation(
                f"connection {self.name!r} may not reach {_shown(url)}: not in its allow-list "
                f"({self.allow}); add the target to the connection's allow entries if it "
                "is meant"
            )
        host = parts.hostname or ""
        port = parts.port or DEFAULT_PORTS[parts.scheme]
        literal = _ip(host)
        if literal is not None:
            return [str(literal)]
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise TransientError(f"connection {self.name!r}: cannot resolve {host}: {exc}") from exc
        addresses = sorted({str(info[4][0]) for info in infos})
        for address in addresses:
            ip = ipaddress.ip_address(address)
            if ip.is_loopback or any(ip in net for net in _NEVER):
                raise PolicyViolation(
                    f"connection {self.name!r}: {host} resolves to {address}, which a "
                    "connection may not reach by name (loopback, link-local or unspecified); "
                    "allow the address itself if it is meant"
                )
        return addresses


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def _shown(url: str) -> str:
    from hub.evidence import redact_url

    return redact_url(url)


def guarded_transport(egress: Egress, **options: Any) -> Any:
    """An httpx transport that checks every request (redirects included) with ``egress``
    and connects to the address it checked, so DNS cannot change in between."""
    import httpx

    class GuardedTransport(httpx.HTTPTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            addresses = egress.check(str(request.url))
            host = request.url.host
            if _ip(host) is None:
                # connect to the checked address; TLS still checks the certificate's name
                pinned = addresses[0]
                request.url = request.url.copy_with(
                    host=pinned if ":" not in pinned else f"[{pinned}]"
                )
                request.extensions = {**request.extensions, "sni_hostname": host}
            return super().handle_request(request)

    return GuardedTransport(**options)


def guarded_session(egress: Egress, *, verify: bool | str = True) -> Any:
    """A ``requests.Session`` whose every request (redirects and document imports
    included) is checked with ``egress`` first, and whose every new connection goes
    to an address ``egress`` checked as it was opened, so DNS cannot change in
    between (TLS still checks the certificate for the name). It ignores proxy and CA
    variables of the environment (``trust_env`` off) so ``verify`` is what counts.

    ``file:`` and ``ftp:`` are refused by adapters mounted here. A library that mounts
    its own adapter for them on the session it is given (zeep's ``Transport`` mounts a
    disk reader for ``file:``) undoes that: mount the refusing adapter again after."""
    import requests
    from requests.adapters import HTTPAdapter

    pools = _pinned_pools(egress)

    class GuardedAdapter(HTTPAdapter):
        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            super().init_poolmanager(*args, **kwargs)
            self.poolmanager.pool_classes_by_scheme = pools

        def send(self, request: Any, *args: Any, **kwargs: Any) -> Any:
            egress.check(request.url)
            return super().send(request, *args, **kwargs)

    session = requests.Session()
    session.trust_env = False
    session.verify = verify
    adapter = GuardedAdapter()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    for scheme in ("file://", "ftp://"):
        session.mount(scheme, _refusing_adapter(egress))
    return session


def _pinned_pools(egress: Egress) -> dict[str, Any]:
    """urllib3 connection pools (by scheme) whose connections resolve the host through
    ``egress.check`` and connect to the addresses it allowed, in one step."""
    from urllib3.connection import HTTPConnection, HTTPSConnection
    from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
    from urllib3.exceptions import ConnectTimeoutError, NewConnectionError
    from urllib3.util.connection import create_connection

    def connect(conn: Any, scheme: str) -> socket.socket:
        host = conn.host
        shown = f"[{host}]" if ":" in host else host
        failure: OSError | None = None
        for address in egress.check(f"{scheme}://{shown}:{conn.port}/"):
            try:
                return create_connection(
                    (address, conn.port),
                    conn.timeout,
                    source_address=conn.source_address,
                    socket_options=conn.socket_options,
                )
            except TimeoutError as exc:
                raise ConnectTimeoutError(
                    conn, f"Connection to {host} timed out. (connect timeout={conn.timeout})"
                ) from exc
            except OSError as exc:
                failure = exc
        raise NewConnectionError(conn, f"Failed to establish a new connection: {failure}")

    class PinnedHTTP(HTTPConnection):
        def _new_conn(self) -> socket.socket:
            return connect(self, "http")

    class PinnedHTTPS(HTTPSConnection):
        def _new_conn(self) -> socket.socket:
            return connect(self, "https")

    class HTTPPool(HTTPConnectionPool):
        ConnectionCls = PinnedHTTP

    class HTTPSPool(HTTPSConnectionPool):
        ConnectionCls = PinnedHTTPS

    return {"http": HTTPPool, "https": HTTPSPool}


def _refusing_adapter(egress: Egress) -> Any:
    """A requests adapter for schemes no connector may fetch (``file:``, ``ftp:``)."""
    from requests.adapters import BaseAdapter

    class Refuse(BaseAdapter):
        def send(self, request: Any, *args: Any, **kwargs: Any) -> Any:
            egress.check(request.url)  # raises PolicyViolation: not http(s)
            raise PolicyViolation(f"connection {egress.name!r} may not fetch {request.url}")

        def close(self) -> None:
            return None

    return Refuse()
