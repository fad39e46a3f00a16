"""SOAP connections over zeep: the WSDL loaded once, WS-Security, faults translated.

::

    erp = ctx.connector("erp")                            # kind = "soap"
    order = erp.call(
        "CreateSalesOrder",
        order={
            "customerNumber": "C-1000",
            "externalReference": erp.idempotency_key(),   # the ERP's own idempotency field
            "requestedDate": date(2025, 3, 14),
            "currency": "EUR",
            "lines": {"line": [{"sku": "SKU-100", "quantity": 3, "unitPrice": Decimal("9.99")}]},
        },
    )
    order["orderNumber"], order["total"]                  # plain dicts, lists, Decimal, date
    erp.GetStock(skus={"sku": ["SKU-100", "SKU-200"]})    # erp.call("GetStock", skus=...)
    erp.service.GetStock(skus={"sku": ["SKU-100"]})       # the same, spelled as in zeep
    erp.operations()                                      # {"GetStock": "skus: ns0:SkuList", ...}

The connection's ``url`` is the WSDL, a URL or a local file::

    [erp]
    kind = "soap"
    url = "https://erp.example.com/ws/orders?wsdl"        # or "/etc/hub/erp/orders.wsdl"
    auth = { kind = "wsse", username = "integration", password = "env:ERP_PASSWORD" }
    options = { check_operation = "GetStock", check_args = { skus = { sku = ["SKU-100"] } } }

Options (``options = {...}``):

- ``check_operation``, ``check_args``: the read-only call ``hub connections test``
  makes after loading the WSDL (without one, the login is not tried);
- ``address``: the endpoint to call instead of the WSDL's ``soap:address`` (it is
  added to the allow-list);
- ``service``, ``port``: which service and port of the WSDL (default: the first);
- ``strict``: zeep's strict parsing (default true);
- ``wsdl_timeout``: seconds to wait for the WSDL and each schema (default ``timeout``);
- ``headers``: extra HTTP headers sent with every request.

Auth: ``wsse`` (a WS-Security UsernameToken in every message: the password as text,
or with ``digest = true`` a PasswordDigest with a fresh nonce and a ``wsu:Created`` in
UTC), ``basic`` (HTTP basic, for the WSDL too) or ``none``.

The WSDL is loaded on the first call (or check) and kept for the connector's life. A
WSDL read from disk may import only the files in its own folder (and below it): keep it
in a folder of its own. Everything else it imports, and every call, goes through the
connection's allow-list (checked after DNS), which holds the WSDL's URL, ``allow`` and
``address``: with a WSDL read from disk, list the endpoint in ``allow`` or give it as
``address``. DTDs and entities are refused in every document and answer.

Idempotency: SOAP has no header for it. A service that can take a change twice
without making it twice does so by a field of its own (an external reference, a
message id): give that field :meth:`SoapClient.idempotency_key`, the same on every
attempt of the step, so that a call retried after a timeout finds the first order
instead of making a second one.

zeep's ways with values: a list must sit inside its wrapper element
(``skus={"sku": [...]}``; ``skus=[...]`` sends only the first item); an answer of one
element is that element's value (``GetStock`` answers the list of items); an empty
wrapper comes back as ``None``, not ``[]``.

Errors, chained to zeep's and requests' with ``raise ... from``:

- a ``soap:Server`` (SOAP 1.2 ``Receiver``) fault, such as the ERP's ``SystemFault``
  ``SYSTEM_BUSY``; HTTP 5xx, 408, 425 or 429 without a SOAP fault (an HTML error
  page); an answer that is not well-formed XML; a timeout (``timeout`` for an answer,
  ``connect_timeout`` to connect); a refused or broken connection:
  :class:`~hub.errors.TransientError`, after the retries within the call
  (``Retry-After`` honoured);
- a ``soap:Client`` fault (``BusinessFault``, ``ValidationFault``):
  :class:`SoapRefusal`, a :class:`~hub.errors.BusinessError` saying
  ``"CODE: message"`` in the service's own words, with ``code`` to branch on;
- ``FailedAuthentication`` or another WS-Security fault, HTTP 401 or 403: a
  BusinessError naming the connection: "check its username and password";
- a request that does not fit the WSDL, an operation it does not have, a WSDL URL
  answering 404: BusinessError; a WSDL file that cannot be read or used:
  :class:`~hub.errors.ConnectionConfigError`;
- a DTD or entity in the WSDL, a schema or an answer (XML external entities); a
  WSDL, import or endpoint outside the allow-list; a file outside the WSDL's folder:
  :class:`~hub.errors.PolicyViolation`, never retried.

When a call fails, its request and answer are left as the step's evidence with the
text of ``wsse:Password`` and ``wsse:Nonce`` masked (a digest and its nonce are
enough to guess the password offline); envelopes are never logged.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit
from urllib.request import url2pathname

import requests
from lxml import etree
from zeep import Client
from zeep import Settings as ZeepSettings
from zeep.exceptions import (
    DTDForbidden,
    EntitiesForbidden,
    ExternalReferenceForbidden,
    Fault,
    TransportError,
    ValidationError,
)
from zeep.exceptions import Error as ZeepError
from zeep.exceptions import XMLSyntaxError as ZeepXMLSyntaxError
from zeep.helpers import serialize_object
from zeep.proxy import ServiceProxy
from zeep.transports import Transport
from zeep.wsse.username import UsernameToken

from connectors.base import (
    RETRY_STATUSES,
    Bound,
    Connector,
    Retry,
    guarded_session,
    retry_after,
    retrying,
)
from hub.errors import (
    BusinessError,
    ConnectionConfigError,
    HubError,
    PolicyViolation,
    TransientError,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from hub.connections import ConnectionConfig
    from hub.context import StepContext
    from hub.settings import Settings

log = logging.getLogger("hub.connectors.soap")

WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
#: the ``wsse`` elements whose text is masked in evidence
SECRET_ELEMENTS = (f"{{{WSSE}}}Password", f"{{{WSSE}}}Nonce")
#: fault codes (local names) that mean the login was refused (WS-Security 1.0, 6.2)
LOGIN_FAULTS = frozenset(
    {"FailedAuthentication", "InvalidSecurityToken", "InvalidSecurity", "FailedCheck"}
)
#: fault codes (local names) of the service's side: SOAP 1.1 Server, SOAP 1.2 Receiver
SERVER_FAULTS = frozenset({"Server", "Receiver"})
MASK = "[redacted]"
AUTH_KINDS = ("none", "basic", "wsse")
XML_SECURITY = (DTDForbidden, EntitiesForbidden, ExternalReferenceForbidden)


class SoapRefusal(BusinessError):
    """The service refused the request with a SOAP fault (``soap:Client``).

    ``code`` is the code in the fault's detail (``UNKNOWN_CUSTOMER``) or, without
    one, the faultcode's local name; ``detail`` names the detail element
    (``BusinessFault``) and ``fields`` holds its parsed content.
    """

    def __init__(
        self,
        message: str,
        *,
        code: str = "",
        detail: str | None = None,
        fields: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.detail = detail
        self.fields = fields or {}


# ---------------------------------------------------------------- transport
def local_wsdl(url: str) -> Path | None:
    """The WSDL's file when ``url`` names one (a path or ``file:`` URL), else None."""
    parts = urlsplit(url)
    if parts.scheme.lower() == "file" and parts.netloc in ("", "localhost"):
        return Path(url2pathname(parts.path)).expanduser().resolve()
    if parts.scheme:
        return None  # fetched through the session: http(s) checked, anything else refused
    return Path(url).expanduser().resolve()


class GuardedTransport(Transport):
    """zeep's transport held to the connection's egress.

    zeep reads ``file:`` URLs and bare paths from disk itself, not through the
    session: here only the configured WSDL file and the files in its folder may be
    read, and everything else goes through the guarded session (``file:`` and
    ``ftp:`` refused, ``http(s)`` checked against the allow-list). It keeps the last
    exchange of each thread for evidence, and logs no envelope (they carry the
    WS-Security header).
    """

    def __init__(
        self,
        name: str,
        session: requests.Session,
        *,
        local: Path | None,
        timeout: tuple[float, float],
        operation_timeout: tuple[float, float],
    ) -> None:
        refuse = session.get_adapter("file://")
        super().__init__(session=session, timeout=timeout, operation_timeout=operation_timeout)
        session.mount("file://", refuse)  # zeep mounts a disk reader: load() decides instead
        self.name = name
        self.local = local
        self.folder = local.parent if local is not None else None
        self._last = threading.local()

    # --------------------------------------------------------- documents
    def load(self, url: str) -> bytes:
        """The WSDL or schema at ``url``: over the guarded session, or from the WSDL's folder."""
        if not url:
            raise ValueError("No url given to load")
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme in ("http", "https"):
            return bytes(self._load_remote_data(url))
        if scheme == "file" and parts.netloc in ("", "localhost"):
            return self._read(Path(url2pathname(parts.path)), url)
        if not scheme:
            return self._read(Path(url), url)
        raise PolicyViolation(
            f"connection {self.name!r} may not load {url}: not in its allow-list "
            "(only http and https are fetched)"
        )

    def _read(self, path: Path, url: str) -> bytes:
        real = path.expanduser().resolve()
        folder = self.folder
        if folder is None or not (real == self.local or real.is_relative_to(folder)):
            where = (
                f"the folder of its WSDL, {folder}" if folder else "no folder (its WSDL is a URL)"
            )
            raise PolicyViolation(
                f"connection {self.name!r} may not read {url} from disk: it reads files only "
                f"from {where}, and fetches everything else through its allow-list"
            )
        try:
            return real.read_bytes()
        except OSError as exc:
            raise ConnectionConfigError(
                f"connection {self.name!r}: cannot read {real} ({exc.strerror}); its url "
                "names the WSDL, a URL or a file the workers can read"
            ) from exc

    # ------------------------------------------------------------- calls
    def post(self, address: str, message: bytes | str, headers: dict[str, str]) -> Any:
        """POST one envelope; the exchange is kept (for :meth:`last`), never logged."""
        sent = {"method": "POST", "url": address, "headers": {**self.session.headers, **headers}}
        self._last.exchange = (sent, message, None)
        response = self.session.post(
            address, data=message, headers=headers, timeout=self.operation_timeout
        )
        sent["headers"] = dict(response.request.headers)
        self._last.exchange = (sent, message, response)
        log.debug("%s: POST %s answered %d", self.name, address, response.status_code)
        return response

    def forget(self) -> None:
        """Drop this thread's last exchange (before a call)."""
        self._last.exchange = None

    def last(self) -> tuple[dict[str, Any], Any, requests.Response | None] | None:
        """This thread's last request (method, url, headers), its body and the response."""
        exchange: tuple[dict[str, Any], Any, requests.Response | None] | None
        exchange = getattr(self._last, "exchange", None)
        return exchange


class _UsernameToken:
    """A WS-Security UsernameToken made anew for every message: the password read
    when sent, and for a digest a fresh nonce and ``wsu:Created`` (UTC)."""

    def __init__(self, connector: SoapConnector) -> None:
        self.connector = connector

    def apply(self, envelope: Any, headers: Any) -> Any:
        auth = self.connector.config.auth
        token = UsernameToken(
            auth.username,
            self.connector.secret("password"),
            use_digest=auth.digest,
            created=datetime.now(UTC),
            zulu_timestamp=True,
        )
        return token.apply(envelope, headers)

    def verify(self, envelope: Any) -> None:
        return None


@dataclass(frozen=True)
class Wsdl:
    """A loaded WSDL: zeep's client, the binding called, and its endpoint."""

    client: Client
    binding: Any
    address: str
    location: str
    took: float
    default: ServiceProxy

    def proxy(self, address: str | None = None) -> ServiceProxy:
        """zeep's service proxy for the endpoint, or for ``address``."""
        if address is None:
            return self.default
        return ServiceProxy(self.client, self.binding, address=address)

    def operations(self) -> dict[str, str]:
        """Each operation's name and input signature."""
        found = {}
        for name, operation in sorted(self.binding.all().items()):
            try:
                found[name] = str(operation.input.signature(as_output=False) or "")
            except Exception:  # a message zeep cannot describe is still callable
                found[name] = ""
        return found


# ---------------------------------------------------------------- connector
class SoapConnector(Connector):
    """One zeep client (WSDL parsed once, one HTTP pool) per connection and process."""

    kind = "soap"

    def __init__(self, config: ConnectionConfig, settings: Settings) -> None:
        super().__init__(config, settings)
        if config.auth.kind not in AUTH_KINDS:
            raise ConnectionConfigError(
                f"connection {config.name!r} ({config.source or 'config'}): a SOAP connection "
                f"cannot log in with {config.auth.kind!r}; use {', '.join(AUTH_KINDS)}"
            )
        options = config.options
        self.address: str | None = options.get("address") or None
        if self.address:
            self.egress.allow.add(self.address)
        self.local = local_wsdl(config.url)
        self.session = guarded_session(self.egress, verify=config.verify)
        self.session.headers.update(options.get("headers") or {})
        load_timeout = float(options.get("wsdl_timeout") or config.timeout)
        self.transport = GuardedTransport(
            config.name,
            self.session,
            local=self.local,
            timeout=(config.connect_timeout, load_timeout),
            operation_timeout=(config.connect_timeout, config.timeout),
        )
        self.zeep_settings = ZeepSettings(
            strict=bool(options.get("strict", True)),
            xml_huge_tree=False,
            forbid_dtd=True,
            forbid_entities=True,
            forbid_external=False,  # imports are held to the allow-list by the session
            # zeep turns a file: import of a WSDL read from disk into https:///path
            force_https=self.local is None,
        )
        self._wsdl: Wsdl | None = None
        self._lock = threading.Lock()

    def bind(self, ctx: StepContext | None) -> SoapClient:
        return SoapClient(self, ctx)

    def wsdl(self) -> Wsdl:
        """The loaded WSDL (loaded on first use; a failure is not kept). Raises
        :class:`Retry` for a transient failure: run it inside :func:`retrying`."""
        with self._lock:
            if self._wsdl is None:
                self._wsdl = self._load()
            return self._wsdl

    def _load(self) -> Wsdl:
        auth = self.config.auth
        if auth.kind == "basic":
            self.session.auth = (auth.username or "", self.secret("password") or "")
        location = str(self.local) if self.local is not None else self.config.url
        started = time.perf_counter()
        try:
            client = Client(
                location,
                wsse=_UsernameToken(self) if auth.kind == "wsse" else None,
                transport=self.transport,
                settings=self.zeep_settings,
            )
            binding, address = self._port(client)
        except HubError:
            raise
        except Exception as exc:
            raise self._load_error(location, exc) from exc
        took = time.perf_counter() - started
        log.info("%s: loaded WSDL %s in %.0f ms", self.name, location, took * 1000)
        proxy = ServiceProxy(client, binding, address=address)
        return Wsdl(client, binding, address, location, took, proxy)

    def _port(self, client: Client) -> tuple[Any, str]:
        options = self.config.options
        services = client.wsdl.services
        if not services:
            raise ConnectionConfigError(f"connection {self.name!r}: its WSDL defines no service")
        service = services.get(options["service"]) if options.get("service") else None
        if service is None:
            if options.get("service"):
                raise ConnectionConfigError(
                    f"connection {self.name!r}: its WSDL has no service {options['service']!r} "
                    f"(it has {', '.join(services)})"
                )
            service = next(iter(services.values()))
        ports = service.ports
        port = ports.get(options["port"]) if options.get("port") else None
        if port is None:
            if options.get("port") or not ports:
                raise ConnectionConfigError(
                    f"connection {self.name!r}: service {service.name!r} of its WSDL has no "
                    f"port {options.get('port')!r} (it has {', '.join(ports) or 'none'})"
                )
            port = next(iter(ports.values()))
        address = self.address or (port.binding_options or {}).get("address")
        if not address:
            raise ConnectionConfigError(
                f"connection {self.name!r}: port {port.name!r} of its WSDL has no address; "
                "set options.address"
            )
        return port.binding, str(address)

    def _load_error(self, location: str, exc: Exception) -> Exception:
        what = f"connection {self.name!r}: loading its WSDL {location}"
        if isinstance(exc, XML_SECURITY):
            return PolicyViolation(f"{what}: refused, {_xml_refusal(exc)}")
        if isinstance(exc, requests.HTTPError) and exc.response is not None:
            status = exc.response.status_code
            said = f"{what}: {exc.response.url} answered {status}"
            if status in RETRY_STATUSES or status >= 500:
                wait = retry_after(exc.response.headers.get("Retry-After"))
                return Retry(TransientError(said, retry_after=wait))
            if status in (401, 403):
                return BusinessError(f"{said}; check its username and password")
            return BusinessError(f"{said}; check its url")
        if isinstance(exc, requests.Timeout):
            return Retry(TransientError(f"{what}: timed out"))
        if isinstance(exc, requests.ConnectionError):
            return Retry(TransientError(f"{what}: cannot connect ({type(exc).__name__})"))
        if isinstance(exc, requests.RequestException):
            return BusinessError(f"{what}: {type(exc).__name__}: {exc}")
        if isinstance(exc, ZeepXMLSyntaxError):
            return Retry(TransientError(f"{what}: not well-formed XML ({exc.message})"))
        if isinstance(exc, ZeepError | ValueError | KeyError):
            return ConnectionConfigError(f"{what}: zeep cannot use it: {exc}")
        return exc

    def check(self) -> str:
        wsdl = retrying(self.config, self.wsdl)
        said = (
            f"loaded WSDL {_shown(wsdl.location)} ({len(wsdl.operations())} operations) "
            f"in {wsdl.took * 1000:.0f} ms"
        )
        operation = self.config.options.get("check_operation")
        if not operation:
            return f"{said}; no call made (set options.check_operation to try the login)"
        args = self.config.options.get("check_args") or {}
        started = time.perf_counter()
        self.bind(None).call(str(operation), **args)
        took = (time.perf_counter() - started) * 1000
        return f"{said}; {operation} answered in {took:.0f} ms"

    def close(self) -> None:
        self.session.close()


# ------------------------------------------------------------------- client
class Operations:
    """Operations as attributes: ``erp.service.GetStock(...)``, ``erp.at(url).GetStock(...)``."""

    def __init__(self, client: SoapClient, address: str | None = None) -> None:
        self._client = client
        self._address = address

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name.startswith("_"):
            raise AttributeError(name)
        return self[name]

    def __getitem__(self, name: str) -> Callable[..., Any]:
        client, address = self._client, self._address

        def operation(*args: Any, **kwargs: Any) -> Any:
            return client._call(name, args, kwargs, address=address)

        operation.__name__ = operation.__qualname__ = name
        return operation


class SoapClient(Bound):
    """A step's SOAP client (``ctx.connector(name)`` of a ``soap`` connection)."""

    connector: SoapConnector

    def call(self, operation: str, *args: Any, **kwargs: Any) -> Any:
        """Call ``operation`` with zeep's arguments; its answer as plain Python (dicts,
        lists, ``Decimal``, ``date``), retried per the connection when it fails transiently."""
        return self._call(operation, args, kwargs)

    @property
    def service(self) -> Operations:
        """The operations as attributes, as zeep spells them: ``erp.service.GetStock(...)``."""
        return Operations(self)

    def at(self, address: str) -> Operations:
        """The operations, sent to ``address`` instead of the WSDL's endpoint (which must
        be in the connection's allow-list)."""
        return Operations(self, address)

    def __getattr__(self, name: str) -> Callable[..., Any]:
        """``erp.GetStock(...)`` for ``erp.call("GetStock", ...)``."""
        if name.startswith("_"):
            raise AttributeError(name)
        return Operations(self)[name]

    def operations(self) -> dict[str, str]:
        """Each operation of the WSDL and its input signature (the WSDL is loaded)."""
        return retrying(self.config, self.connector.wsdl).operations()

    # ------------------------------------------------------------- calling
    def _call(
        self,
        operation: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        address: str | None = None,
    ) -> Any:
        connector = self.connector
        transport = connector.transport

        def once() -> Any:
            wsdl = connector.wsdl()
            if operation not in wsdl.binding.all():
                raise BusinessError(
                    f"{connector.name}: the WSDL has no operation {operation!r} (it has "
                    f"{', '.join(sorted(wsdl.binding.all()))})"
                )
            connector.limiter.acquire()
            transport.forget()
            try:
                result = wsdl.proxy(address)[operation](*args, **kwargs)
            except TransientError as exc:  # from the egress check: a name that does not resolve
                self._evidence()
                raise Retry(exc) from exc.__cause__
            except HubError:
                self._evidence()
                raise
            except Exception as exc:
                self._evidence()
                raise self._error(wsdl, operation, exc) from exc
            return serialize_object(result, dict)

        return retrying(self.config, once)

    def _evidence(self) -> None:
        last = self.connector.transport.last()
        if last is None:
            return
        sent, body, response = last
        request = {**sent, "body": masked_envelope(body)}
        answer = None
        if response is not None:
            answer = {
                "status": response.status_code,
                "headers": dict(response.headers),
                "body": masked_envelope(response.content),
            }
        self.record(request=request, response=answer)

    def _error(self, wsdl: Wsdl, operation: str, exc: Exception) -> Exception:
        what = f"{self.connector.name}: {operation}"
        if isinstance(exc, Fault):
            return self._fault(wsdl, operation, exc)
        if isinstance(exc, XML_SECURITY):
            return PolicyViolation(f"{what}: the answer was refused, {_xml_refusal(exc)}")
        if isinstance(exc, TransportError):
            return self._status(what, exc.status_code)
        if isinstance(exc, ZeepXMLSyntaxError):
            return Retry(TransientError(f"{what}: the answer is not well-formed XML"))
        if isinstance(exc, requests.Timeout):
            return Retry(
                TransientError(f"{what} timed out (no answer within {self.config.timeout:g} s)")
            )
        if isinstance(exc, requests.ConnectionError):
            return Retry(TransientError(f"{what} failed: {type(exc).__name__}"))
        if isinstance(exc, requests.TooManyRedirects):
            return BusinessError(f"{what}: too many redirects")
        if isinstance(exc, requests.RequestException):
            return Retry(TransientError(f"{what} failed: {type(exc).__name__}"))
        if isinstance(exc, ValidationError):
            return BusinessError(f"{what}: the request does not fit the WSDL: {exc}")
        if isinstance(exc, ZeepError):
            return BusinessError(f"{what}: {type(exc).__name__}: {exc}")
        return exc

    def _status(self, what: str, status: int) -> Exception:
        last = self.connector.transport.last()
        response = last[2] if last is not None else None
        if status == 200:
            return Retry(TransientError(f"{what}: the answer is not well-formed XML"))
        said = f"{what} answered HTTP {status} without a SOAP message"
        if status in RETRY_STATUSES or status >= 500:
            header = response.headers.get("Retry-After") if response is not None else None
            return Retry(TransientError(said, retry_after=retry_after(header)))
        if status in (401, 403):
            return BusinessError(
                f"{said}; check the username and password of connection {self.connector.name!r}"
            )
        return BusinessError(said)

    def _fault(self, wsdl: Wsdl, operation: str, fault: Fault) -> Exception:
        name = self.connector.name
        code = str(fault.code or "").rpartition(":")[2]  # "soap:Client" -> "Client"
        message = str(fault.message or "").strip()
        detail, fields = fault_detail(wsdl.client, fault)
        subcodes = {str(getattr(sub, "localname", sub)) for sub in fault.subcodes or ()}
        if code in LOGIN_FAULTS or subcodes & LOGIN_FAULTS:
            return BusinessError(
                f"connection {name!r} could not log in to {operation} ({code}: {message}); "
                "check its username and password"
            )
        own = str(fields.get("code") or "")
        said = str(fields.get("message") or message)
        text = f"{own}: {said}" if own else said
        if code in SERVER_FAULTS:
            last = self.connector.transport.last()
            response = last[2] if last is not None else None
            header = response.headers.get("Retry-After") if response is not None else None
            return Retry(
                TransientError(
                    f"{name}: {operation} failed: {text}", retry_after=retry_after(header)
                )
            )
        kind = f" ({detail})" if detail else ""
        return SoapRefusal(
            f"{name}: {operation} was refused{kind}: {text}",
            code=own or code or "Fault",
            detail=detail,
            fields=fields,
        )


# ------------------------------------------------------------------ helpers
def fault_detail(client: Client, fault: Fault) -> tuple[str | None, dict[str, Any]]:
    """The fault's detail element (local name) and its content, parsed with the WSDL's
    types when it declares the element, else read child by child."""
    node = fault.detail
    if not isinstance(node, etree._Element):
        return None, {}
    children = [child for child in node if isinstance(child.tag, str)]
    if not children:
        return None, {}
    child = children[0]
    name = etree.QName(child).localname
    try:
        value = serialize_object(
            client.get_element(child.tag).parse(child, client.wsdl.types), dict
        )
    except Exception:  # an element the WSDL does not declare
        value = None
    if not isinstance(value, dict):
        value = {etree.QName(c).localname: c.text for c in child if isinstance(c.tag, str)}
    return name, value


def masked_envelope(body: Any) -> Any:
    """``body`` with the text of every ``wsse:Password`` and ``wsse:Nonce`` masked
    (a digest and its nonce let anyone guess the password offline)."""
    if body is None:
        return None
    data = body.encode() if isinstance(body, str) else bytes(body)
    parser = etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False
    )
    try:
        root = etree.fromstring(data, parser=parser)
    except etree.XMLSyntaxError:
        return body
    if root is None:
        return body
    secrets = list(root.iter(*SECRET_ELEMENTS))
    if not secrets:
        return body
    for node in secrets:
        node.text = MASK
    return etree.tostring(root, encoding="unicode")


def _xml_refusal(exc: Exception) -> str:
    if isinstance(exc, DTDForbidden):
        return "it declares a DTD (possible XML external entity attack)"
    if isinstance(exc, EntitiesForbidden):
        return f"it declares the entity {exc.name!r} (possible XML external entity attack)"
    return f"it refers to {getattr(exc, 'url', 'an external document')}"


def _shown(location: str) -> str:
    """``location`` as shown: without a password or secret-looking query values."""
    from hub.evidence import redact_url

    shown = redact_url(location)
    return location if shown.rstrip("=") == location.rstrip("=") else shown
