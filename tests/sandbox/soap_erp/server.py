"""The ERP sandbox's HTTP server and its test controls (see the package docstring)."""

from __future__ import annotations

import shutil
import socket
import sys
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar, Literal, get_args
from urllib.parse import parse_qs, quote, urlsplit

from lxml import etree

from .erp import BusinessError, Customer, ErpStore, Order, StockLevel
from .service import OPERATIONS, external_reference_of
from .soap import (
    NS,
    SOAP_ENV,
    SoapFault,
    client_fault,
    fault_envelope,
    parse_request,
    q,
    response_envelope,
    schema_error,
    server_fault,
    soap_actions,
    wsdl_document,
    xsd_document,
    xxe_fault_envelope,
)
from .wsse import UsernameTokenVerifier, must_understand_violation

FailKind = Literal["busy", "http500_html", "garbage", "xxe"]
FAIL_KINDS: tuple[str, ...] = get_args(FailKind)

TEXT_XML = "text/xml; charset=utf-8"
TEXT_PLAIN = "text/plain; charset=utf-8"
BUSY_MESSAGE = "System busy, try again"

#: What an application server in front of the ERP answers when it falls over: HTML, and
#: not even well-formed XML (unclosed ``<p>``, void ``<hr>``).
ERROR_PAGE = b"""<!DOCTYPE html>
<html><head><title>500 Internal Server Error</title></head>
<body><h1>Internal Server Error</h1>
<p>The server encountered an internal error and was unable to complete your request.
<hr><address>ERP Application Server</address>
</body></html>
"""

#: A response cut off mid-element and followed by junk bytes.
GARBAGE = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<soap:Envelope xmlns:soap="'
    + SOAP_ENV.encode()
    + b'"><soap:Body><erp:CreateSalesOrderRes\x00\xff\xfe%%garbage%%'
)


@dataclass(frozen=True)
class Call:
    """One ``POST /erp`` as the sandbox handled it.

    ``outcome`` is ``created`` or ``replayed`` (CreateSalesOrder), ``ok`` (other operations),
    ``fault`` (``code`` is the detail code, e.g. ``UNKNOWN_SKU``, or the faultcode's local
    name, e.g. ``FailedAuthentication``) or ``injected`` (``code`` is the ``fail_next`` kind).
    ``reason`` explains a fault (e.g. ``nonce was used before``); it is never sent.
    """

    at: float
    operation: str | None
    external_reference: str | None
    outcome: str
    code: str | None = None
    reason: str | None = None
    username: str | None = None


class ErpSandbox:
    """A SOAP 1.1 ERP on loopback; ``start()`` (or ``with``) serves it, ``stop()`` ends it.

    All controls and queries are thread-safe and may be used while calls are in flight.
    """

    #: The one account the service knows (WS-Security UsernameToken).
    username: ClassVar[str] = "erp-integration"
    password: ClassVar[str] = "Erp-Sandbox-Pa55!"
    #: Larger request bodies are answered 413.
    max_body: ClassVar[int] = 1 << 20

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self._lock = threading.RLock()
        self._store = ErpStore()
        self._verifier = UsernameTokenVerifier({self.username: self.password})
        self._actions = soap_actions()
        self._calls: list[Call] = []
        self._http_log: list[tuple[str, str]] = []
        self._failures: deque[str] = deque()
        self._delay = 0.0
        self._stopping = threading.Event()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None
        self._tmpdir: Path | None = None

    # ---------------------------------------------------------------- lifecycle
    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        assert self._httpd is not None, "start() the sandbox first"
        return f"http://{self.host}:{self._httpd.server_port}"

    @property
    def url(self) -> str:
        """The SOAP endpoint, as the served WSDL's ``soap:address`` names it."""
        return f"{self.base_url}/erp"

    @property
    def wsdl_url(self) -> str:
        """``<url>?wsdl``; the XSD it imports is fetched from ``<base_url>/erp.xsd``."""
        return f"{self.url}?wsdl"

    @property
    def xsd_url(self) -> str:
        """``<base_url>/erp.xsd``."""
        return f"{self.base_url}/erp.xsd"

    @property
    def wsdl_path(self) -> Path:
        """A local erp.wsdl (with erp.xsd beside it) whose address is :attr:`url`."""
        assert self._tmpdir is not None, "start() the sandbox first"
        return self._tmpdir / "erp.wsdl"

    @property
    def hostile_xxe_url(self) -> str:
        """A WSDL whose DOCTYPE declares an external entity reading ``file:///etc/hostname``."""
        return f"{self.base_url}/hostile/xxe.wsdl"

    def hostile_import_url(self, target: str) -> str:
        """A WSDL (otherwise this service's) importing its XSD from ``target``."""
        return f"{self.base_url}/hostile/import.wsdl?target={quote(target, safe='')}"

    def start(self) -> ErpSandbox:
        """Serve in a daemon thread; returns ``self``."""
        self._stopping.clear()
        handler = type("Handler", (_Handler,), {"sandbox": self})
        self._httpd = _Server((self.host, self.port), handler)
        self._tmpdir = Path(tempfile.mkdtemp(prefix="soap-erp-"))
        (self._tmpdir / "erp.wsdl").write_bytes(wsdl_document(self.url))
        (self._tmpdir / "erp.xsd").write_bytes(xsd_document())
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="soap-erp-sandbox",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, wake delayed calls and remove the local WSDL copy."""
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(5)
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)

    def __enter__(self) -> ErpSandbox:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    # ----------------------------------------------------------------- controls
    @property
    def delay(self) -> float:
        """Seconds every ``POST /erp`` waits before it is handled (0 by default).

        The call still takes effect after the wait, even when the client gave up on it.
        """
        with self._lock:
            return self._delay

    @delay.setter
    def delay(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("delay must be >= 0")
        with self._lock:
            self._delay = float(seconds)

    def fail_next(self, count: int = 1, kind: FailKind = "busy") -> None:
        """Answer the next ``count`` calls with a failure of ``kind``; nothing is stored.

        ``busy``: HTTP 500, ``soap:Server`` fault "System busy, try again" with
        ``erp:SystemFault`` code ``SYSTEM_BUSY``. ``http500_html``: HTTP 500 with an HTML
        error page. ``garbage``: HTTP 200 ``text/xml`` that is not XML. ``xxe``: HTTP 500
        fault whose text is an external entity reading ``file:///etc/hostname``.
        """
        if kind not in FAIL_KINDS:
            raise ValueError(f"kind must be one of {FAIL_KINDS}")
        if count < 0:
            raise ValueError("count must be >= 0")
        with self._lock:
            self._failures.extend([kind] * count)

    def set_stock(self, sku: str, on_hand: int, reserved: int = 0, warehouse: str = "WH-1") -> None:
        """Set (or add) the stock of ``sku``."""
        with self._lock:
            self._store.stock[sku] = StockLevel(sku, on_hand, reserved, warehouse)

    def reset(self) -> None:
        """Back to the seed: no orders, calls, nonces, queued failures or delay."""
        with self._lock:
            self._store.reset()
            self._verifier.reset()
            self._calls.clear()
            self._http_log.clear()
            self._failures.clear()
            self._delay = 0.0

    # ------------------------------------------------------------------ queries
    @property
    def calls(self) -> list[Call]:
        """Every ``POST /erp`` so far, oldest first."""
        with self._lock:
            return list(self._calls)

    @property
    def http_log(self) -> list[tuple[str, str]]:
        """``(method, path with query)`` of every HTTP request, oldest first."""
        with self._lock:
            return list(self._http_log)

    def orders(self) -> list[Order]:
        """The stored orders, oldest first."""
        with self._lock:
            return list(self._store.orders.values())

    def effects(self, external_reference: str) -> int:
        """How many orders were created for ``external_reference`` (idempotent: 0 or 1)."""
        with self._lock:
            return self._store.effects.get(external_reference, 0)

    @property
    def stock(self) -> dict[str, StockLevel]:
        """SKU -> stock level (seed: SKU-100, SKU-200, SKU-300, SKU-400, SKU-500)."""
        with self._lock:
            return dict(self._store.stock)

    @property
    def customers(self) -> dict[str, Customer]:
        """Customer number -> customer (seed: C-1000 .. C-1010)."""
        with self._lock:
            return dict(self._store.customers)

    # ----------------------------------------------------------------- handling
    def _record_http(self, method: str, path: str) -> None:
        with self._lock:
            self._http_log.append((method, path))

    def _log(self, call: Call) -> None:
        with self._lock:
            self._calls.append(call)

    def handle_get(self, path: str, query: str) -> tuple[int, str, bytes]:
        """Serve the WSDL, the XSD and the hostile documents."""
        if (path == "/erp" and query.lower().startswith("wsdl")) or path == "/erp.wsdl":
            return 200, TEXT_XML, wsdl_document(self.url)
        if path == "/erp.xsd":
            return 200, TEXT_XML, xsd_document()
        if path == "/hostile/xxe.wsdl":
            return 200, TEXT_XML, wsdl_document(self.url, xxe=True)
        if path == "/hostile/import.wsdl":
            targets = parse_qs(query).get("target")
            if not targets:
                return 400, TEXT_PLAIN, b"give the XSD location as ?target=URL\n"
            return 200, TEXT_XML, wsdl_document(self.url, schema_location=targets[0])
        return 404, TEXT_PLAIN, f"no document at {path}\n".encode()

    def handle_post(
        self, data: bytes, content_type: str | None, soap_action: str | None
    ) -> tuple[int, str, bytes]:
        """Answer one SOAP request: ``(HTTP status, Content-Type, body)``."""
        media_type = (content_type or "").split(";")[0].strip().lower()
        if media_type != "text/xml":
            return 415, TEXT_PLAIN, b"SOAP 1.1 requests are text/xml\n"
        delay = self.delay
        if delay > 0:
            self._stopping.wait(delay)
        root: etree._Element | None = None
        parse_fault: SoapFault | None = None
        try:
            root = parse_request(data)
        except SoapFault as fault:
            parse_fault = fault
        operation, request = _body_element(root)
        reference = external_reference_of(request) if request is not None else None
        with self._lock:
            kind = self._failures.popleft() if self._failures else None
        if kind is not None:
            self._log(Call(time.time(), operation, reference, "injected", kind))
            return _injected(kind)
        username: str | None = None
        try:
            if parse_fault is not None:
                raise parse_fault
            assert root is not None
            username = self._check(root, request, operation, soap_action)
            assert request is not None and operation is not None
            error = schema_error(request)
            if error is not None:
                raise client_fault("ValidationFault", "SCHEMA_INVALID", f"{operation}: {error}")
            with self._lock:
                try:
                    result = OPERATIONS[operation](self._store, request)
                except BusinessError as exc:
                    raise client_fault("BusinessFault", exc.code, exc.message) from None
                except ValueError as exc:
                    raise client_fault("ValidationFault", "SCHEMA_INVALID", str(exc)) from None
                error = schema_error(result.payload)
                if error is not None:  # a bug in the sandbox, not in the caller
                    raise server_fault("INTERNAL_ERROR", f"invalid response: {error}")
                self._log(
                    Call(time.time(), operation, reference, result.outcome, None, None, username)
                )
            return 200, TEXT_XML, response_envelope(result.payload)
        except SoapFault as fault:
            self._log(
                Call(
                    time.time(),
                    operation,
                    reference,
                    "fault",
                    fault.log_code,
                    fault.reason,
                    username,
                )
            )
            return 500, TEXT_XML, fault_envelope(fault)

    def _check(
        self,
        root: etree._Element,
        request: etree._Element | None,
        operation: str | None,
        soap_action: str | None,
    ) -> str:
        """Envelope, headers, SOAPAction and WS-Security; returns the username."""
        if root.tag != q("Envelope", SOAP_ENV):
            if etree.QName(root).localname == "Envelope":
                raise SoapFault(
                    (SOAP_ENV, "VersionMismatch"),
                    f"expected a SOAP 1.1 envelope ({SOAP_ENV})",
                )
            raise client_fault("ValidationFault", "MALFORMED_REQUEST", "not a SOAP envelope")
        header = root.find(q("Header", SOAP_ENV))
        not_understood = must_understand_violation(header)
        if not_understood is not None:
            raise SoapFault(
                (SOAP_ENV, "MustUnderstand"), f"header {not_understood} was not understood"
            )
        if request is None:
            raise client_fault(
                "ValidationFault", "MALFORMED_REQUEST", "soap:Body must hold one element"
            )
        if operation is None:
            raise client_fault(
                "ValidationFault", "UNKNOWN_OPERATION", f"no operation {request.tag}"
            )
        if soap_action is None:
            raise client_fault(
                "ValidationFault", "MALFORMED_REQUEST", "the SOAPAction HTTP header is required"
            )
        action = soap_action.strip().strip('"')
        if action and action != self._actions[operation]:
            raise client_fault(
                "ValidationFault",
                "MALFORMED_REQUEST",
                f"SOAPAction {action!r} does not match {operation}",
            )
        return self._verifier.verify(header)


def _body_element(root: etree._Element | None) -> tuple[str | None, etree._Element | None]:
    """The operation name (when known) and the single element in ``soap:Body``."""
    if root is None:
        return None, None
    body = root.find(q("Body", SOAP_ENV))
    if body is None:
        return None, None
    children = [child for child in body if isinstance(child.tag, str)]
    if len(children) != 1:
        return None, None
    request = children[0]
    name = etree.QName(request)
    operation = name.localname if name.namespace == NS and name.localname in OPERATIONS else None
    return operation, request


def _injected(kind: str) -> tuple[int, str, bytes]:
    if kind == "busy":
        return 500, TEXT_XML, fault_envelope(server_fault("SYSTEM_BUSY", BUSY_MESSAGE))
    if kind == "http500_html":
        return 500, "text/html; charset=utf-8", ERROR_PAGE
    if kind == "garbage":
        return 200, TEXT_XML, GARBAGE
    return 500, TEXT_XML, xxe_fault_envelope()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            return  # the client went away (e.g. its operation_timeout fired)
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    sandbox: ErpSandbox
    protocol_version = "HTTP/1.1"  # keep-alive, as SOAP clients pool connections
    server_version = "ErpSandbox/1.0"
    timeout = 60  # idle keep-alive connections are closed after a minute

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes; without this, Nagle's algorithm and the
        # client's delayed ACK add about 40 ms to every keep-alive response.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # tests look at sandbox.calls instead

    def _send(self, status: int, content_type: str, body: bytes, *, close: bool = False) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            if close:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            self.wfile.write(body)
        except ConnectionError:
            self.close_connection = True

    def do_GET(self) -> None:
        self.sandbox._record_http("GET", self.path)
        parts = urlsplit(self.path)
        self._send(*self.sandbox.handle_get(parts.path, parts.query))

    def do_POST(self) -> None:
        self.sandbox._record_http("POST", self.path)
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self._send(411, TEXT_PLAIN, b"Content-Length is required\n", close=True)
            return
        if int(length) > self.sandbox.max_body:
            self._send(413, TEXT_PLAIN, b"request body too large\n", close=True)
            return
        data = self.rfile.read(int(length))
        if urlsplit(self.path).path != "/erp":
            self._send(404, TEXT_PLAIN, b"the SOAP endpoint is POST /erp\n")
            return
        self._send(
            *self.sandbox.handle_post(
                data, self.headers.get("Content-Type"), self.headers.get("SOAPAction")
            )
        )
