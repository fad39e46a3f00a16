"""The SOAP ERP sandbox, driven by the real zeep client and by raw HTTP.

zeep 4.3.3 behaviours these tests rely on (and pin):

* ``Fault.detail`` is the raw ``<detail>`` lxml element; parse its child with
  ``client.get_element(child.tag).parse(child, client.wsdl.types)`` to read the typed code.
* ``Fault.code`` is the faultcode text as sent (``soap:Client``), prefix included.
* An HTML error page that is not well-formed XML raises ``TransportError`` (with
  ``status_code``), not ``Fault``; ``operation_timeout`` raises requests' ``Timeout`` unwrapped.
* A plain list given for a wrapper element (``skus=[...]``) silently sends only its first item;
  the list must go inside the wrapper (``skus={"sku": [...]}``).
* An empty wrapper in a response (``<customers/>``) comes back as ``None``, not an empty list.
* ``UsernameToken(created=...)`` replaces the tzinfo with UTC instead of converting: pass UTC.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests
from lxml import etree
from zeep import Client, Settings
from zeep.exceptions import (
    EntitiesForbidden,
    ExternalReferenceForbidden,
    Fault,
    TransportError,
)
from zeep.plugins import HistoryPlugin
from zeep.transports import Transport
from zeep.wsse.username import UsernameToken

from tests.sandbox.soap_erp import BUSY_MESSAGE, NS, SOAP_ENV, XXE_SYSTEM_ID, ErpSandbox
from tests.sandbox.soap_erp.erp import SEED_STOCK
from tests.sandbox.soap_erp.soap import safe_parser

REPO = Path(__file__).resolve().parents[2]
WSDL_NS = "http://schemas.xmlsoap.org/wsdl/"
WSDL_SOAP = "http://schemas.xmlsoap.org/wsdl/soap/"
XSD_NS = "http://www.w3.org/2001/XMLSchema"
AUTH_FAILED = "The security token could not be authenticated or authorized"
REQUESTED = date(2025, 3, 14)


@pytest.fixture(scope="module")
def sandbox() -> Iterator[ErpSandbox]:
    with ErpSandbox() as erp:
        yield erp


@pytest.fixture(scope="module")
def probe() -> Iterator[ErpSandbox]:
    """A second sandbox on another port: the target of imports and entities that must not load."""
    with ErpSandbox() as other:
        yield other


@pytest.fixture(autouse=True)
def _fresh(sandbox: ErpSandbox, probe: ErpSandbox) -> None:
    sandbox.reset()
    probe.reset()


MakeClient = Callable[..., Client]


@pytest.fixture
def make_client(sandbox: ErpSandbox) -> Iterator[MakeClient]:
    """Build zeep clients for the sandbox; their HTTP sessions are closed afterwards."""
    made: list[Client] = []

    def make(
        *,
        source: str = "url",
        wsse: Any = "text",
        operation_timeout: float = 5.0,
        plugins: list[Any] | None = None,
        settings: Settings | None = None,
        wsdl: str | None = None,
    ) -> Client:
        if wsse == "text":
            wsse = UsernameToken(sandbox.username, sandbox.password)
        elif wsse == "digest":
            wsse = UsernameToken(sandbox.username, sandbox.password, use_digest=True)
        location = wsdl or (sandbox.wsdl_url if source == "url" else str(sandbox.wsdl_path))
        transport = Transport(timeout=5, operation_timeout=operation_timeout)
        try:
            client = Client(
                location,
                wsse=wsse,
                transport=transport,
                plugins=plugins or [],
                settings=settings,
            )
        except Exception:
            transport.session.close()
            raise
        made.append(client)
        return client

    yield make
    for client in made:
        client.transport.session.close()


def order(
    reference: str,
    *,
    customer: str = "C-1000",
    lines: tuple[tuple[str, int, str], ...] = (("SKU-100", 3, "9.99"), ("SKU-200", 1, "100")),
    currency: str = "EUR",
) -> dict[str, Any]:
    """A CreateSalesOrder ``order`` argument."""
    return {
        "customerNumber": customer,
        "externalReference": reference,
        "requestedDate": REQUESTED,
        "currency": currency,
        "lines": {
            "line": [
                {"sku": sku, "quantity": quantity, "unitPrice": Decimal(price)}
                for sku, quantity, price in lines
            ]
        },
    }


def detail(client: Client, fault: Fault) -> tuple[str, Any]:
    """The detail element's local name and its value parsed with the WSDL's types."""
    assert fault.detail is not None, f"fault without detail: {fault.code} {fault.message}"
    (node,) = list(fault.detail)
    return etree.QName(node).localname, client.get_element(node.tag).parse(node, client.wsdl.types)


def envelope(body: str, *, header: str | None = None, prolog: str = "") -> bytes:
    """A hand-written SOAP 1.1 request (PasswordText header unless ``header`` is given)."""
    if header is None:
        header = (
            '<wsse:Security xmlns:wsse="http://docs.oasis-open.org/wss/2004/01/'
            'oasis-200401-wss-wssecurity-secext-1.0.xsd"><wsse:UsernameToken>'
            f"<wsse:Username>{ErpSandbox.username}</wsse:Username>"
            f"<wsse:Password>{ErpSandbox.password}</wsse:Password>"
            "</wsse:UsernameToken></wsse:Security>"
        )
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n{prolog}'
        f'<soap:Envelope xmlns:soap="{SOAP_ENV}" xmlns:erp="{NS}">'
        f"<soap:Header>{header}</soap:Header><soap:Body>{body}</soap:Body></soap:Envelope>"
    ).encode()


def post(
    sandbox: ErpSandbox,
    data: bytes,
    *,
    action: str | None = f"{NS}/GetSalesOrder",
    content_type: str = "text/xml; charset=utf-8",
) -> requests.Response:
    headers = {"Content-Type": content_type}
    if action is not None:
        headers["SOAPAction"] = f'"{action}"'
    return requests.post(sandbox.url, data=data, headers=headers, timeout=5)


def fault_of(response: requests.Response) -> etree._Element:
    """The ``soap:Fault`` of a raw response, checking the SOAP 1.1 HTTP rules on the way."""
    assert response.status_code == 500, response.text
    assert response.headers["Content-Type"].startswith("text/xml")
    root = etree.fromstring(response.content, safe_parser())
    assert root.tag == f"{{{SOAP_ENV}}}Envelope"
    fault = root.find(f"{{{SOAP_ENV}}}Body/{{{SOAP_ENV}}}Fault")
    assert fault is not None, response.text
    return fault


# ------------------------------------------------------------------ documents
def test_wsdl_and_xsd_are_served_with_the_real_address(sandbox: ErpSandbox) -> None:
    for url in (sandbox.wsdl_url, f"{sandbox.base_url}/erp.wsdl"):
        response = requests.get(url, timeout=5)
        assert response.status_code == 200
        assert response.headers["Content-Type"].startswith("text/xml")
        root = etree.fromstring(response.content, safe_parser())
        (address,) = root.iter(f"{{{WSDL_SOAP}}}address")
        assert address.get("location") == sandbox.url
        (schema_import,) = root.iter(f"{{{XSD_NS}}}import")
        assert schema_import.get("schemaLocation") == "erp.xsd"
        actions = {op.get("soapAction") for op in root.iter(f"{{{WSDL_SOAP}}}operation")}
        assert actions == {
            f"{NS}/{name}"
            for name in ("CreateSalesOrder", "GetSalesOrder", "GetStock", "ListCustomers")
        }
    xsd = requests.get(sandbox.xsd_url, timeout=5)
    assert xsd.status_code == 200
    schema_root = etree.fromstring(xsd.content, safe_parser())
    assert schema_root.get("targetNamespace") == NS
    etree.XMLSchema(schema_root)  # compiles
    local = etree.parse(str(sandbox.wsdl_path), safe_parser())
    (address,) = local.getroot().iter(f"{{{WSDL_SOAP}}}address")
    assert address.get("location") == sandbox.url
    assert (sandbox.wsdl_path.parent / "erp.xsd").read_bytes() == xsd.content
    assert requests.get(f"{sandbox.base_url}/nothing", timeout=5).status_code == 404


# ------------------------------------------------------------------ operations
@pytest.mark.parametrize("source", ["url", "file"])
def test_create_an_order_and_read_it_back(
    sandbox: ErpSandbox, make_client: MakeClient, source: str
) -> None:
    client = make_client(source=source)
    created = client.service.CreateSalesOrder(order=order("ext-read-back"))
    assert created.orderNumber == "SO-000001"
    assert created.status == "OPEN"
    assert created.created is True
    assert created.total == Decimal("129.97")
    assert isinstance(created.total, Decimal)

    found = client.service.GetSalesOrder(orderNumber="SO-000001")
    assert found.externalReference == "ext-read-back"
    assert found.customerNumber == "C-1000"
    assert found.requestedDate == REQUESTED
    assert type(found.requestedDate) is date
    assert found.total == Decimal("129.97")
    assert isinstance(found.createdAt, datetime)
    assert abs(datetime.now(UTC) - found.createdAt) < timedelta(minutes=1)
    first, second = found.lines.line
    assert (first.lineNumber, first.sku, first.quantity) == (1, "SKU-100", 3)
    assert first.unitPrice == Decimal("9.99")
    assert first.lineTotal == Decimal("29.97")
    assert (second.sku, second.lineTotal) == ("SKU-200", Decimal("100.00"))

    by_reference = client.service.GetSalesOrder(externalReference="ext-read-back")
    assert by_reference.orderNumber == "SO-000001"
    (stored,) = sandbox.orders()
    assert (stored.order_number, stored.total) == ("SO-000001", Decimal("129.97"))
    assert sandbox.stock["SKU-100"].reserved == 3
    assert sandbox.stock["SKU-200"].reserved == 6  # 5 seeded + 1


def test_a_repeat_returns_the_first_order_without_a_new_effect(
    sandbox: ErpSandbox, make_client: MakeClient
) -> None:
    client = make_client()
    first = client.service.CreateSalesOrder(order=order("ext-repeat"))
    repeat = client.service.CreateSalesOrder(
        order=order("ext-repeat", lines=(("SKU-100", 50, "1.00"),))
    )
    assert first.created is True
    assert repeat.created is False
    assert repeat.orderNumber == first.orderNumber
    assert repeat.total == first.total == Decimal("129.97")
    assert sandbox.effects("ext-repeat") == 1
    assert len(sandbox.orders()) == 1
    assert sandbox.stock["SKU-100"].reserved == 3
    assert [(c.outcome, c.external_reference) for c in sandbox.calls] == [
        ("created", "ext-repeat"),
        ("replayed", "ext-repeat"),
    ]


def test_concurrent_repeats_create_one_order(sandbox: ErpSandbox, make_client: MakeClient) -> None:
    clients = [make_client(source="file") for _ in range(12)]
    start = threading.Barrier(len(clients))

    def create(client: Client) -> Any:
        start.wait(5)
        return client.service.CreateSalesOrder(order=order("ext-race"))

    with ThreadPoolExecutor(len(clients)) as pool:
        results = list(pool.map(create, clients))
    assert sorted(r.created for r in results) == [False] * 11 + [True]
    assert {r.orderNumber for r in results} == {"SO-000001"}
    assert sandbox.effects("ext-race") == 1
    assert sandbox.stock["SKU-100"].reserved == 3


@pytest.mark.parametrize(
    ("code", "kwargs"),
    [
        ("UNKNOWN_CUSTOMER", {"customer": "C-9999"}),
        ("UNKNOWN_SKU", {"lines": (("SKU-100", 1, "1.00"), ("SKU-999", 1, "1.00"))}),
        ("INSUFFICIENT_STOCK", {"lines": (("SKU-300", 6, "2.50"),)}),
        ("INSUFFICIENT_STOCK", {"lines": (("SKU-300", 3, "2.50"), ("SKU-300", 3, "2.50"))}),
        ("INVALID_QUANTITY", {"lines": (("SKU-100", 0, "1.00"),)}),
        ("INVALID_QUANTITY", {"lines": (("SKU-100", -2, "1.00"),)}),
    ],
)
def test_business_rules_raise_client_faults_with_a_typed_detail(
    sandbox: ErpSandbox, make_client: MakeClient, code: str, kwargs: dict[str, Any]
) -> None:
    client = make_client()
    with pytest.raises(Fault) as caught:
        client.service.CreateSalesOrder(order=order("ext-refused", **kwargs))
    assert caught.value.code == "soap:Client"
    name, info = detail(client, caught.value)
    assert (name, info.code) == ("BusinessFault", code)
    assert info.message == caught.value.message
    assert sandbox.orders() == []
    assert sandbox.effects("ext-refused") == 0
    assert sandbox.stock == {s.sku: s for s in SEED_STOCK}
    last = sandbox.calls[-1]
    assert (last.outcome, last.code, last.external_reference) == ("fault", code, "ext-refused")
    # Nothing was kept, so the same reference is still free for a valid order.
    assert client.service.CreateSalesOrder(order=order("ext-refused")).created is True


def test_unknown_orders_raise_order_not_found(make_client: MakeClient) -> None:
    client = make_client()
    for kwargs in ({"orderNumber": "SO-404404"}, {"externalReference": "never-sent"}):
        with pytest.raises(Fault) as caught:
            client.service.GetSalesOrder(**kwargs)
        assert caught.value.code == "soap:Client"
        assert detail(client, caught.value)[1].code == "ORDER_NOT_FOUND"
        assert next(iter(kwargs.values())) in caught.value.message


def test_schema_invalid_input_is_a_client_fault(
    sandbox: ErpSandbox, make_client: MakeClient
) -> None:
    client = make_client()
    with pytest.raises(Fault) as caught:
        client.service.CreateSalesOrder(order=order("ext-bad-currency", currency="euro"))
    assert caught.value.code == "soap:Client"
    name, info = detail(client, caught.value)
    assert (name, info.code) == ("ValidationFault", "SCHEMA_INVALID")
    assert "currency" in info.message
    assert sandbox.effects("ext-bad-currency") == 0
    for page, size in ((0, 5), (1, 101)):
        with pytest.raises(Fault) as caught:
            client.service.ListCustomers(page=page, pageSize=size)
        assert detail(client, caught.value)[1].code == "SCHEMA_INVALID"


def test_get_stock_takes_and_returns_lists(sandbox: ErpSandbox, make_client: MakeClient) -> None:
    client = make_client()
    client.service.CreateSalesOrder(order=order("ext-stock", lines=(("SKU-500", 10, "1"),)))
    items = client.service.GetStock(skus={"sku": ["SKU-500", "SKU-100", "SKU-400"]})
    assert [(i.sku, i.onHand, i.reserved, i.warehouse) for i in items] == [
        ("SKU-500", 1000, 260, "WH-3"),
        ("SKU-100", 100, 0, "WH-1"),
        ("SKU-400", 0, 0, "WH-2"),
    ]
    with pytest.raises(Fault) as caught:
        client.service.GetStock(skus={"sku": ["SKU-100", "SKU-NOPE"]})
    assert detail(client, caught.value)[1].code == "UNKNOWN_SKU"


def test_zeep_sends_only_the_first_item_of_a_bare_list(make_client: MakeClient) -> None:
    """zeep 4.3.3 quirk: ``skus=[a, b]`` (no ``{"sku": ...}``) silently sends only ``a``."""
    items = make_client().service.GetStock(skus=["SKU-100", "SKU-300"])
    assert [i.sku for i in items] == ["SKU-100"]


def test_list_customers_pages(make_client: MakeClient) -> None:
    client = make_client()
    seen: list[str] = []
    page, pages = 1, None
    while pages is None or page <= pages:
        result = client.service.ListCustomers(page=page, pageSize=4)
        assert (result.page, result.pageSize, result.totalCount) == (page, 4, 11)
        pages = result.totalPages
        seen += [c.customerNumber for c in result.customers.customer]
        page += 1
    assert pages == 3
    assert seen == [f"C-{n}" for n in range(1000, 1011)]
    past_the_end = client.service.ListCustomers(page=4, pageSize=4)
    assert past_the_end.customers is None  # zeep turns the empty <customers/> into None
    assert past_the_end.totalPages == 3
    whole = client.service.ListCustomers(page=1, pageSize=100)
    assert (len(whole.customers.customer), whole.totalPages) == (11, 1)


# --------------------------------------------------------------- transient faults
def test_busy_fault_then_the_retry_succeeds(sandbox: ErpSandbox, make_client: MakeClient) -> None:
    client = make_client()
    sandbox.fail_next(1, "busy")
    with pytest.raises(Fault) as caught:
        client.service.CreateSalesOrder(order=order("ext-busy"))
    assert caught.value.code == "soap:Server"
    assert caught.value.message == BUSY_MESSAGE
    name, info = detail(client, caught.value)
    assert (name, info.code) == ("SystemFault", "SYSTEM_BUSY")
    assert sandbox.effects("ext-busy") == 0
    assert client.service.CreateSalesOrder(order=order("ext-busy")).created is True
    assert sandbox.effects("ext-busy") == 1
    assert [(c.outcome, c.code) for c in sandbox.calls] == [
        ("injected", "busy"),
        ("created", None),
    ]


def test_busy_fault_is_http_500_with_a_soap11_fault(sandbox: ErpSandbox) -> None:
    sandbox.fail_next(1)
    fault = fault_of(
        post(
            sandbox,
            envelope("<erp:GetSalesOrder><erp:orderNumber>x</erp:orderNumber></erp:GetSalesOrder>"),
        )
    )
    assert [child.tag for child in fault] == ["faultcode", "faultstring", "detail"]
    prefix, local = fault.findtext("faultcode").split(":")
    assert (fault.nsmap[prefix], local) == (SOAP_ENV, "Server")
    assert fault.findtext(f"detail/{{{NS}}}SystemFault/{{{NS}}}code") == "SYSTEM_BUSY"


def test_html_error_page_and_garbage_are_transport_errors(
    sandbox: ErpSandbox, make_client: MakeClient
) -> None:
    client = make_client()
    sandbox.fail_next(1, "http500_html")
    with pytest.raises(TransportError) as caught:
        client.service.CreateSalesOrder(order=order("ext-html"))
    assert caught.value.status_code == 500
    assert b"<h1>Internal Server Error</h1>" in caught.value.content
    sandbox.fail_next(1, "garbage")
    with pytest.raises(TransportError) as caught:
        client.service.CreateSalesOrder(order=order("ext-html"))
    assert caught.value.status_code == 200
    assert "invalid XML" in caught.value.message
    assert sandbox.effects("ext-html") == 0
    assert [c.code for c in sandbox.calls] == ["http500_html", "garbage"]


def test_fail_next_queues_failures_in_order(sandbox: ErpSandbox, make_client: MakeClient) -> None:
    client = make_client()
    sandbox.fail_next(2, "busy")
    sandbox.fail_next(1, "garbage")
    outcomes = []
    for _ in range(4):
        try:
            client.service.GetStock(skus={"sku": ["SKU-100"]})
            outcomes.append("ok")
        except Fault:
            outcomes.append("fault")
        except TransportError:
            outcomes.append("transport")
    assert outcomes == ["fault", "fault", "transport", "ok"]
    with pytest.raises(ValueError):
        sandbox.fail_next(1, "teapot")  # type: ignore[arg-type]


def test_operation_timeout_fires_and_the_late_call_still_takes_effect(
    sandbox: ErpSandbox, make_client: MakeClient
) -> None:
    client = make_client(operation_timeout=0.25)
    sandbox.delay = 2.0
    started = time.monotonic()
    with pytest.raises(requests.exceptions.Timeout):
        client.service.CreateSalesOrder(order=order("ext-slow"))
    assert time.monotonic() - started < 1.5  # the call gave up long before the answer
    assert sandbox.effects("ext-slow") == 0  # still waiting inside the sandbox
    deadline = time.monotonic() + 5
    while sandbox.effects("ext-slow") == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert sandbox.effects("ext-slow") == 1
    sandbox.delay = 0
    assert client.service.CreateSalesOrder(order=order("ext-slow")).created is False
    assert sandbox.effects("ext-slow") == 1


# ----------------------------------------------------------------- WS-Security
def test_password_digest_is_accepted(sandbox: ErpSandbox, make_client: MakeClient) -> None:
    history = HistoryPlugin()
    client = make_client(source="file", wsse="digest", plugins=[history])
    assert client.service.GetStock(skus={"sku": ["SKU-300"]})[0].onHand == 5
    sent = history.last_sent["envelope"]
    password = sent.find(".//{*}UsernameToken/{*}Password")
    assert password.get("Type").endswith("#PasswordDigest")
    assert password.text != sandbox.password
    assert sandbox.calls[-1].username == sandbox.username


@pytest.mark.parametrize("digest", [False, True], ids=["text", "digest"])
@pytest.mark.parametrize(
    ("user", "password"), [("erp-integration", "wrong"), ("someone-else", "Erp-Sandbox-Pa55!")]
)
def test_wrong_credentials_fail_authentication(
    sandbox: ErpSandbox, make_client: MakeClient, digest: bool, user: str, password: str
) -> None:
    client = make_client(wsse=UsernameToken(user, password, use_digest=digest))
    with pytest.raises(Fault) as caught:
        client.service.CreateSalesOrder(order=order("ext-intruder"))
    assert (caught.value.code, caught.value.message) == ("wsse:FailedAuthentication", AUTH_FAILED)
    assert caught.value.detail is None
    assert sandbox.effects("ext-intruder") == 0
    last = sandbox.calls[-1]
    assert (last.code, last.reason) == ("FailedAuthentication", "unknown user or wrong password")


def test_a_replayed_nonce_is_refused(sandbox: ErpSandbox, make_client: MakeClient) -> None:
    nonce = f"nonce-{uuid.uuid4()}"
    token = UsernameToken(sandbox.username, sandbox.password, use_digest=True, nonce=nonce)
    client = make_client(wsse=token)
    assert client.service.ListCustomers(page=1, pageSize=1).totalCount == 11
    with pytest.raises(Fault) as caught:
        client.service.ListCustomers(page=1, pageSize=1)
    assert caught.value.code == "wsse:FailedAuthentication"
    assert sandbox.calls[-1].reason == "nonce was used before"


def test_a_stale_created_is_refused(sandbox: ErpSandbox, make_client: MakeClient) -> None:
    now = datetime.now(UTC)
    fresh = UsernameToken(
        sandbox.username, sandbox.password, use_digest=True, created=now - timedelta(minutes=4)
    )
    assert make_client(wsse=fresh).service.ListCustomers(page=1, pageSize=1).totalPages == 11
    stale = UsernameToken(
        sandbox.username, sandbox.password, use_digest=True, created=now - timedelta(minutes=6)
    )
    with pytest.raises(Fault) as caught:
        make_client(wsse=stale).service.ListCustomers(page=1, pageSize=1)
    assert caught.value.code == "wsse:FailedAuthentication"
    assert sandbox.calls[-1].reason == "wsu:Created is older than five minutes"


def test_a_missing_security_header_fails_authentication(
    sandbox: ErpSandbox, make_client: MakeClient
) -> None:
    client = make_client(wsse=None)
    with pytest.raises(Fault) as caught:
        client.service.CreateSalesOrder(order=order("ext-anonymous"))
    assert caught.value.code == "wsse:FailedAuthentication"
    assert sandbox.calls[-1].reason == "no wsse:Security header"
    assert sandbox.effects("ext-anonymous") == 0


# -------------------------------------------------------------------- raw HTTP
def test_raw_requests_are_checked_as_soap_11(sandbox: ErpSandbox) -> None:
    get_order = "<erp:GetSalesOrder><erp:orderNumber>SO-404</erp:orderNumber></erp:GetSalesOrder>"
    fault = fault_of(post(sandbox, envelope(get_order)))
    assert fault.findtext("faultcode") == "soap:Client"
    assert fault.findtext(f"detail/{{{NS}}}BusinessFault/{{{NS}}}code") == "ORDER_NOT_FOUND"

    def validation_code(response: requests.Response) -> str | None:
        return fault_of(response).findtext(f"detail/{{{NS}}}ValidationFault/{{{NS}}}code")

    assert validation_code(post(sandbox, envelope(get_order), action=None)) == ("MALFORMED_REQUEST")
    assert validation_code(post(sandbox, envelope(get_order), action=f"{NS}/GetStock")) == (
        "MALFORMED_REQUEST"
    )
    assert validation_code(post(sandbox, b"<soap:Envelope><unclosed>")) == "MALFORMED_REQUEST"
    assert validation_code(post(sandbox, envelope("<erp:DropTables/>"))) == "UNKNOWN_OPERATION"
    soap12 = envelope(get_order).replace(
        SOAP_ENV.encode(), b"http://www.w3.org/2003/05/soap-envelope"
    )
    assert fault_of(post(sandbox, soap12)).findtext("faultcode") == "soap:VersionMismatch"
    must = '<x:Routing xmlns:x="urn:x" soap:mustUnderstand="1"/>'
    header = envelope(get_order).replace(b"<soap:Header>", b"<soap:Header>" + must.encode())
    assert fault_of(post(sandbox, header)).findtext("faultcode") == "soap:MustUnderstand"
    wrong_type = post(sandbox, envelope(get_order), content_type="application/json")
    assert wrong_type.status_code == 415
    assert requests.post(f"{sandbox.base_url}/other", data=b"<x/>", timeout=5).status_code == 404


def test_the_server_does_not_resolve_entities_sent_to_it(
    sandbox: ErpSandbox, probe: ErpSandbox, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.txt"
    marker = f"SECRET-{uuid.uuid4()}"
    secret.write_text(marker)
    prolog = (
        "<!DOCTYPE soap:Envelope [\n"
        f'  <!ENTITY file SYSTEM "{secret.as_uri()}">\n'
        f'  <!ENTITY host SYSTEM "{XXE_SYSTEM_ID}">\n'
        f'  <!ENTITY ping SYSTEM "{probe.xsd_url}?from=entity">\n'
        "]>\n"
    )
    body = (
        "<erp:GetSalesOrder><erp:orderNumber>&file;&host;&ping;</erp:orderNumber>"
        "</erp:GetSalesOrder>"
    )
    data = envelope(body, prolog=prolog)
    response = post(sandbox, data)
    fault = fault_of(response)
    assert fault.findtext(f"detail/{{{NS}}}ValidationFault/{{{NS}}}code") == "DTD_NOT_ALLOWED"
    assert marker not in response.text
    assert sandbox.calls[-1].code == "DTD_NOT_ALLOWED"
    # The parser itself, behind that check, leaves the entities unexpanded and offline.
    parsed = etree.fromstring(data, safe_parser())
    number = parsed.find(f".//{{{NS}}}orderNumber")
    assert [child.text for child in number] == ["&file;", "&host;", "&ping;"]
    assert marker not in "".join(parsed.itertext())
    assert probe.http_log == []


# ------------------------------------------------------------- hostile documents
def test_hostile_xxe_wsdl_declares_an_external_entity(
    sandbox: ErpSandbox, make_client: MakeClient
) -> None:
    response = requests.get(sandbox.hostile_xxe_url, timeout=5)
    assert response.status_code == 200
    assert f'<!ENTITY xxe SYSTEM "{XXE_SYSTEM_ID}">' in response.text
    root = etree.fromstring(response.content, safe_parser())
    entities = [
        (e.name, e.system_url) for e in root.getroottree().docinfo.internalDTD.iterentities()
    ]
    assert entities == [("xxe", XXE_SYSTEM_ID)]
    assert [e.name for e in root.iter(etree.Entity)] == ["xxe"]
    (address,) = root.iter(f"{{{WSDL_SOAP}}}address")
    assert address.get("location") == sandbox.url
    with pytest.raises(EntitiesForbidden) as caught:  # zeep's default forbid_entities=True
        make_client(wsdl=sandbox.hostile_xxe_url)
    assert caught.value.name == "xxe"


def test_hostile_import_wsdl_loads_its_schema_from_any_url(
    sandbox: ErpSandbox, probe: ErpSandbox, make_client: MakeClient
) -> None:
    target = f"{probe.xsd_url}?via=import"
    url = sandbox.hostile_import_url(target)
    root = etree.fromstring(requests.get(url, timeout=5).content, safe_parser())
    (schema_import,) = root.iter(f"{{{XSD_NS}}}import")
    assert schema_import.get("schemaLocation") == target
    assert requests.get(f"{sandbox.base_url}/hostile/import.wsdl", timeout=5).status_code == 400

    with pytest.raises(ExternalReferenceForbidden):
        make_client(wsdl=url, settings=Settings(forbid_external=True))
    assert probe.http_log == []
    client = make_client(wsdl=url)  # zeep's default follows the import to the other port
    assert probe.http_log == [("GET", "/erp.xsd?via=import")]
    assert client.service.GetStock(skus={"sku": ["SKU-100"]})[0].onHand == 100


def test_xxe_response_mode(sandbox: ErpSandbox, make_client: MakeClient) -> None:
    sandbox.fail_next(1, "xxe")
    get_order = "<erp:GetSalesOrder><erp:orderNumber>x</erp:orderNumber></erp:GetSalesOrder>"
    response = post(sandbox, envelope(get_order))
    assert response.status_code == 500
    assert f'<!ENTITY xxe SYSTEM "{XXE_SYSTEM_ID}">' in response.text
    assert "<faultstring>&xxe;</faultstring>" in response.text
    client = make_client()
    sandbox.fail_next(1, "xxe")
    with pytest.raises(EntitiesForbidden) as caught:
        client.service.CreateSalesOrder(order=order("ext-xxe"))
    assert caught.value.name == "xxe"
    assert sandbox.effects("ext-xxe") == 0
    assert [c.code for c in sandbox.calls] == ["xxe", "xxe"]


# -------------------------------------------------------------------- controls
def test_reset_restores_the_seed(sandbox: ErpSandbox, make_client: MakeClient) -> None:
    client = make_client()
    client.service.CreateSalesOrder(order=order("ext-reset"))
    sandbox.set_stock("SKU-100", 1)
    sandbox.fail_next(3)
    sandbox.delay = 2
    sandbox.reset()
    assert (sandbox.orders(), sandbox.calls, sandbox.delay) == ([], [], 0)
    assert sandbox.effects("ext-reset") == 0
    assert sandbox.stock == {s.sku: s for s in SEED_STOCK}
    assert sorted(sandbox.customers) == [f"C-{n}" for n in range(1000, 1011)]
    assert client.service.CreateSalesOrder(order=order("ext-reset")).orderNumber == "SO-000001"


def test_runs_alone_until_interrupted() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.sandbox.soap_erp", "--port", "0"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline() for _ in range(4)]
        wsdl_url = lines[0].split()[-1]
        assert wsdl_url.startswith("http://127.0.0.1:") and wsdl_url.endswith("/erp?wsdl")
        assert lines[2].split()[-1] == ErpSandbox.username
        assert lines[3].split()[-1] == ErpSandbox.password
        wsdl = requests.get(wsdl_url, timeout=5)
        assert wsdl.status_code == 200
        assert f'location="{wsdl_url.removesuffix("?wsdl")}"' in wsdl.text
        process.send_signal(signal.SIGINT)
        assert process.wait(10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()
