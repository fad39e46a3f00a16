"""The SOAP connector against the ERP sandbox over real HTTP on loopback: the contract,
then what only SOAP has: the WSDL from a URL or a file (loaded once), typed values,
WS-Security digests, each kind of fault, timeouts, and hostile WSDLs and answers."""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from lxml import etree
from zeep.exceptions import Fault

from connectors.soap import SoapClient, SoapConnector, SoapRefusal, masked_envelope
from hub.connections import ConnectionConfig, Connectors
from hub.errors import BusinessError, ConnectionConfigError, PolicyViolation, TransientError
from hub.settings import Settings
from tests.connectors.conftest import Outside
from tests.connectors.contract import Contract, context
from tests.sandbox.soap_erp import WSSE, ErpSandbox
from tests.sandbox.soap_erp.soap import wsdl_document, xsd_document

CANARY = ErpSandbox.password
VARIABLE = "ERP_PASSWORD"
STOCK = {"check_operation": "GetStock", "check_args": {"skus": {"sku": ["SKU-100"]}}}


@pytest.fixture(scope="module")
def sandbox() -> Iterator[ErpSandbox]:
    with ErpSandbox() as server:
        yield server


@pytest.fixture(scope="module")
def other() -> Iterator[ErpSandbox]:
    """A second ERP on another port."""
    with ErpSandbox() as server:
        yield server


@pytest.fixture(autouse=True)
def clean(sandbox: ErpSandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    sandbox.reset()
    monkeypatch.setenv(VARIABLE, CANARY)


def order(reference: str, *, customer: str = "C-1000", currency: str = "EUR") -> dict[str, Any]:
    return {
        "customerNumber": customer,
        "externalReference": reference,
        "requestedDate": date(2025, 3, 14),
        "currency": currency,
        "lines": {
            "line": [
                {"sku": "SKU-100", "quantity": 3, "unitPrice": Decimal("9.99")},
                {"sku": "SKU-200", "quantity": 1, "unitPrice": Decimal("100")},
            ]
        },
    }


class Driver:
    canary = CANARY
    variable = VARIABLE
    refusal = "UNKNOWN_CUSTOMER: Unknown customer C-9"

    def __init__(self, sandbox: ErpSandbox, outside: Outside) -> None:
        self.sandbox, self.outside_server = sandbox, outside
        #: ref -> the externalReference sent for it (the client's idempotency key)
        self.sent: dict[str, str] = {}

    def config(self, **changes: Any) -> dict[str, Any]:
        return {
            "kind": "soap",
            "url": self.sandbox.wsdl_url,
            "auth": {
                "kind": "wsse",
                "username": ErpSandbox.username,
                "password": f"env:{VARIABLE}",
            },
            "options": STOCK,
            **changes,
        }

    def create(self, client: SoapClient, ref: str) -> Any:
        key = client.idempotency_key() or ref
        self.sent[ref] = key
        return client.call("CreateSalesOrder", order=order(key))["orderNumber"]

    def effects(self, ref: str) -> int:
        return self.sandbox.effects(self.sent.get(ref, ref))

    def fail_transient(self, times: int) -> None:
        self.sandbox.fail_next(times, "busy")

    def refused(self, client: SoapClient) -> None:
        client.call("CreateSalesOrder", order=order("refused", customer="C-9"))

    def outside(self, client: SoapClient) -> None:
        client.at(f"{self.outside_server.url}/erp").GetStock(skus={"sku": ["SKU-100"]})

    def sent_outside(self) -> int:
        return len(self.outside_server.hits)


class TestSoapContract(Contract):
    @pytest.fixture
    def driver(self, sandbox: ErpSandbox, outside: Outside) -> Driver:
        outside.hits.clear()
        return Driver(sandbox, outside)


# ------------------------------------------------------------------ helpers
def erp_config(sandbox: ErpSandbox, **changes: Any) -> dict[str, Any]:
    auth = {"kind": "wsse", "username": sandbox.username, "password": f"env:{VARIABLE}"}
    return {"kind": "soap", "url": sandbox.wsdl_url, "auth": auth, "backoff": 0.01, **changes}


class Made:
    """Connectors built for one test, shut down after it."""

    def __init__(self) -> None:
        self.made: list[Connectors] = []

    def __call__(self, config: dict[str, Any]) -> SoapConnector:
        valid = ConnectionConfig.model_validate({"name": "erp", **config})
        connectors = Connectors(Settings(), configs={"erp": valid})
        self.made.append(connectors)
        built: SoapConnector = connectors.connector("erp")
        return built

    def close(self) -> None:
        for connectors in self.made:
            connectors.shutdown()


@pytest.fixture
def make() -> Iterator[Made]:
    made = Made()
    yield made
    made.close()


@pytest.fixture
def erp(sandbox: ErpSandbox, make: Made) -> SoapClient:
    return make(erp_config(sandbox)).bind(context())


def wsdl_gets(sandbox: ErpSandbox) -> list[str]:
    return [path for method, path in sandbox.http_log if method == "GET"]


def sent_body(client: SoapClient) -> etree._Element:
    assert client.ctx is not None
    record = client.ctx.evidence.record() or {}
    return etree.fromstring(record["request"]["body"].encode())


# ------------------------------------------------------------- the WSDL
def test_the_wsdl_from_a_url_is_loaded_once_for_every_call_and_thread(
    sandbox: ErpSandbox, make: Made
) -> None:
    connector = make(erp_config(sandbox, options=STOCK))
    said = connector.check()
    assert said.startswith(f"loaded WSDL {sandbox.wsdl_url} (4 operations)")
    assert "GetStock answered in" in said

    def stock() -> None:
        connector.bind(None).GetStock(skus={"sku": ["SKU-300"]})

    threads = [threading.Thread(target=stock) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert wsdl_gets(sandbox) == ["/erp?wsdl", "/erp.xsd"]
    assert [c.outcome for c in sandbox.calls] == ["ok"] * 7


def test_a_fresh_connector_loads_the_wsdl_lazily(sandbox: ErpSandbox, make: Made) -> None:
    connector = make(erp_config(sandbox))
    assert wsdl_gets(sandbox) == []
    assert "no call made" in connector.check()
    assert wsdl_gets(sandbox) == ["/erp?wsdl", "/erp.xsd"]
    assert sandbox.calls == []


def test_the_wsdl_from_a_file_is_read_from_disk_with_the_schema_beside_it(
    sandbox: ErpSandbox, make: Made
) -> None:
    config = erp_config(sandbox, url=str(sandbox.wsdl_path), allow=[sandbox.base_url])
    client = make(config).bind(context())
    stock = client.GetStock(skus={"sku": ["SKU-100", "SKU-300"]})
    assert [item["sku"] for item in stock] == ["SKU-100", "SKU-300"]
    assert wsdl_gets(sandbox) == []
    as_uri = make(erp_config(sandbox, url=sandbox.wsdl_path.as_uri(), allow=[sandbox.base_url]))
    assert "(4 operations)" in as_uri.check()


def test_a_wsdl_file_endpoint_must_be_allowed(sandbox: ErpSandbox, make: Made) -> None:
    client = make(erp_config(sandbox, url=str(sandbox.wsdl_path))).bind(context())
    with pytest.raises(PolicyViolation, match="allow-list"):
        client.GetStock(skus={"sku": ["SKU-100"]})
    assert sandbox.calls == []


def test_a_missing_wsdl_file_names_the_connection(make: Made, tmp_path: Path) -> None:
    connector = make({"kind": "soap", "url": str(tmp_path / "missing.wsdl")})
    with pytest.raises(ConnectionConfigError, match="'erp': cannot read"):
        connector.check()


def test_the_address_option_calls_another_endpoint(
    sandbox: ErpSandbox, other: ErpSandbox, make: Made
) -> None:
    other.reset()
    client = make(erp_config(sandbox, options={"address": other.url})).bind(context())
    client.call("GetStock", skus={"sku": ["SKU-100"]})
    assert (len(sandbox.calls), len(other.calls)) == (0, 1)


# ------------------------------------------------------------- the calls
def test_typed_values_go_and_come_back_as_python(sandbox: ErpSandbox, erp: SoapClient) -> None:
    made = erp.call("CreateSalesOrder", order=order(erp.idempotency_key() or ""))
    assert made == {
        "orderNumber": "SO-000001",
        "status": "OPEN",
        "created": True,
        "total": Decimal("129.97"),
    }
    assert erp.CreateSalesOrder(order=order("run-1:step"))["created"] is False
    found = erp.service.GetSalesOrder(externalReference="run-1:step")
    assert type(found) is dict
    assert found["requestedDate"] == date(2025, 3, 14)
    assert [line["lineTotal"] for line in found["lines"]["line"]] == [
        Decimal("29.97"),
        Decimal("100.00"),
    ]
    stock = erp.GetStock(skus={"sku": ["SKU-100", "SKU-200"]})  # the one child, unwrapped
    assert [(s["sku"], s["onHand"], s["reserved"]) for s in stock] == [
        ("SKU-100", 100, 3),
        ("SKU-200", 50, 6),
    ]
    assert sandbox.effects("run-1:step") == 1


def test_operations_lists_each_with_its_input(erp: SoapClient) -> None:
    found = erp.operations()
    assert sorted(found) == ["CreateSalesOrder", "GetSalesOrder", "GetStock", "ListCustomers"]
    assert found["GetStock"] == "skus: ns0:SkuList"
    assert "pageSize" in found["ListCustomers"]


def test_an_unknown_operation_is_a_business_error_naming_the_known_ones(
    sandbox: ErpSandbox, erp: SoapClient
) -> None:
    with pytest.raises(BusinessError, match=r"no operation 'GetStok'.*GetStock"):
        erp.GetStok(skus={"sku": ["SKU-100"]})
    with pytest.raises(AttributeError):
        _ = erp._private
    assert sandbox.calls == []


def test_a_request_that_does_not_fit_the_wsdl_is_a_business_error(
    sandbox: ErpSandbox, erp: SoapClient
) -> None:
    with pytest.raises(BusinessError, match="does not fit the WSDL"):
        erp.call("CreateSalesOrder", order={"customerNumber": "C-1000"})
    assert sandbox.calls == []


def test_every_call_takes_a_token_from_the_rate_limiter(
    sandbox: ErpSandbox, make: Made, monkeypatch: pytest.MonkeyPatch
) -> None:
    connector = make(erp_config(sandbox, retries=1))
    taken: list[float] = []
    monkeypatch.setattr(connector.limiter, "acquire", lambda: taken.append(time.monotonic()))
    sandbox.fail_next(1, "busy")
    connector.bind(context()).GetStock(skus={"sku": ["SKU-100"]})
    assert len(taken) == 2 == len(sandbox.calls)


def test_digest_auth_sends_a_fresh_digest_and_nonce_and_shows_neither(
    sandbox: ErpSandbox, make: Made
) -> None:
    auth = {"kind": "wsse", "username": sandbox.username, "password": f"env:{VARIABLE}"}
    connector = make(erp_config(sandbox, auth={**auth, "digest": True}))
    client = connector.bind(context())
    for _ in range(3):  # a nonce used twice would be refused
        client.GetStock(skus={"sku": ["SKU-100"]})
    assert [c.username for c in sandbox.calls] == [sandbox.username] * 3
    with pytest.raises(SoapRefusal):
        client.GetStock(skus={"sku": ["SKU-999"]})
    token = sent_body(client).find(f".//{{{WSSE}}}UsernameToken")
    assert token is not None
    password = token.find(f"{{{WSSE}}}Password")
    nonce = token.find(f"{{{WSSE}}}Nonce")
    assert password is not None and nonce is not None
    assert password.get("Type", "").endswith("#PasswordDigest")
    assert (password.text, nonce.text) == ("[redacted]", "[redacted]")
    assert token.findtext(f"{{{WSSE}}}Username") == sandbox.username


def test_the_password_is_in_no_evidence_and_no_log_line(
    sandbox: ErpSandbox, make: Made, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    ctx = context()
    with ctx.evidence.capturing():
        client = make(erp_config(sandbox, retries=0)).bind(ctx)
        for kind in ("busy", "http500_html", "garbage"):
            sandbox.fail_next(1, kind)
            with pytest.raises(TransientError) as caught:
                client.CreateSalesOrder(order=order(f"canary-{kind}"))
            assert CANARY not in str(caught.value)
            shown = repr(ctx.evidence.record())
            assert "wsse:Password" in shown and "[redacted]" in shown
            assert CANARY not in shown
    password = sent_body(client).find(f".//{{{WSSE}}}Password")
    assert password is not None and password.text == "[redacted]"
    assert "POST /erp" in caplog.text  # the exchanges were logged, at DEBUG
    assert CANARY not in caplog.text


def test_masked_envelope_masks_only_the_secret_elements() -> None:
    body = (
        f'<e xmlns:wsse="{WSSE}"><wsse:Username>u</wsse:Username>'
        "<wsse:Password>pw-123</wsse:Password><wsse:Nonce>bm9uY2U=</wsse:Nonce><b>x</b></e>"
    )
    masked = masked_envelope(body)
    assert "pw-123" not in masked and "bm9uY2U=" not in masked
    assert "<wsse:Username>u</wsse:Username>" in masked and "<b>x</b>" in masked
    assert masked_envelope(b"not xml") == b"not xml"
    assert masked_envelope("<a>no secrets</a>") == "<a>no secrets</a>"


# ------------------------------------------------------------------ faults
@pytest.mark.parametrize(
    ("kind", "words"),
    [
        ("busy", "failed: SYSTEM_BUSY: System busy, try again"),
        ("http500_html", "answered HTTP 500 without a SOAP message"),
        ("garbage", "not well-formed XML"),
    ],
)
def test_transient_failures_are_retried_then_a_transient_error(
    sandbox: ErpSandbox, make: Made, kind: str, words: str
) -> None:
    client = make(erp_config(sandbox, retries=1)).bind(context())
    sandbox.fail_next(1, kind)  # absorbed by the retry
    assert client.CreateSalesOrder(order=order(f"ok-{kind}"))["created"] is True
    sandbox.fail_next(2, kind)
    with pytest.raises(TransientError) as caught:
        client.CreateSalesOrder(order=order(f"down-{kind}"))
    assert words in str(caught.value)
    assert caught.value.__cause__ is not None
    assert sandbox.effects(f"down-{kind}") == 0
    assert [c.outcome for c in sandbox.calls] == ["injected", "created", "injected", "injected"]


@pytest.mark.parametrize(
    ("operation", "kwargs", "detail", "code", "words"),
    [
        (
            "CreateSalesOrder",
            {"order": order("x", customer="C-9")},
            "BusinessFault",
            "UNKNOWN_CUSTOMER",
            "Unknown customer C-9",
        ),
        (
            "CreateSalesOrder",
            {"order": order("x", currency="eur")},
            "ValidationFault",
            "SCHEMA_INVALID",
            "CreateSalesOrder:",
        ),
        ("GetStock", {"skus": {"sku": ["SKU-999"]}}, "BusinessFault", "UNKNOWN_SKU", "SKU-999"),
        (
            "GetSalesOrder",
            {"orderNumber": "SO-999999"},
            "BusinessFault",
            "ORDER_NOT_FOUND",
            "No order SO-999999",
        ),
    ],
)
def test_client_faults_are_refusals_with_the_code_and_message(
    sandbox: ErpSandbox,
    erp: SoapClient,
    operation: str,
    kwargs: dict[str, Any],
    detail: str,
    code: str,
    words: str,
) -> None:
    with pytest.raises(SoapRefusal) as caught:
        erp.call(operation, **kwargs)
    error = caught.value
    assert isinstance(error, BusinessError)
    assert (error.detail, error.code) == (detail, code)
    assert f"erp: {operation} was refused ({detail}): {code}: " in str(error)
    assert words in str(error)
    assert isinstance(error.__cause__, Fault)
    assert len(sandbox.calls) == 1  # not retried
    assert erp.ctx is not None
    record = erp.ctx.evidence.record() or {}
    assert record["response"]["status"] == 500
    assert code in record["response"]["body"]


def test_a_failed_login_names_the_connection_and_the_fix(
    sandbox: ErpSandbox, erp: SoapClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(VARIABLE, "wrong-password")
    with pytest.raises(BusinessError) as caught:
        erp.GetStock(skus={"sku": ["SKU-100"]})
    assert not isinstance(caught.value, SoapRefusal)
    said = str(caught.value)
    assert "connection 'erp' could not log in to GetStock (FailedAuthentication" in said
    assert "check its username and password" in said
    assert [c.code for c in sandbox.calls] == ["FailedAuthentication"]


def test_a_call_that_outlasts_the_timeout_is_transient(sandbox: ErpSandbox, make: Made) -> None:
    client = make(erp_config(sandbox, timeout=0.4, retries=0)).bind(context())
    client.operations()  # the WSDL is loaded before the sandbox slows down
    sandbox.delay = 2
    started = time.monotonic()
    with pytest.raises(TransientError, match=r"erp: GetStock timed out \(no answer within 0.4 s\)"):
        client.GetStock(skus={"sku": ["SKU-100"]})
    assert time.monotonic() - started < 1.5
    sandbox.delay = 0


# ---------------------------------------------------------------- hostility
def test_a_wsdl_with_an_external_entity_is_refused(sandbox: ErpSandbox, make: Made) -> None:
    connector = make(erp_config(sandbox, url=sandbox.hostile_xxe_url))
    with pytest.raises(PolicyViolation, match="declares a DTD") as caught:
        connector.check()
    assert "loading its WSDL" in str(caught.value)
    assert wsdl_gets(sandbox) == ["/hostile/xxe.wsdl"]


def test_a_wsdl_importing_from_another_port_is_refused_and_nothing_reaches_it(
    sandbox: ErpSandbox, outside: Outside, make: Made
) -> None:
    outside.hits.clear()
    url = sandbox.hostile_import_url(f"{outside.url}/erp.xsd")
    with pytest.raises(PolicyViolation, match="allow-list"):
        make(erp_config(sandbox, url=url)).check()
    assert outside.hits == []
    # allowed, the same import is fetched (and is no schema): the allow-list refused it
    with pytest.raises(TransientError, match="not well-formed XML"):
        make(erp_config(sandbox, url=url, allow=[outside.url], retries=0)).check()
    assert outside.hits == ["GET /erp.xsd"]


@pytest.mark.parametrize("target", ["file:///etc/hostname", "copy"])
def test_a_wsdl_by_url_may_not_import_a_file(
    sandbox: ErpSandbox, make: Made, tmp_path: Path, target: str
) -> None:
    if target == "copy":  # a valid schema: only the policy stands in the way
        (tmp_path / "erp.xsd").write_bytes(xsd_document())
        target = (tmp_path / "erp.xsd").as_uri()
    connector = make(erp_config(sandbox, url=sandbox.hostile_import_url(target)))
    with pytest.raises(PolicyViolation, match=f"may not read {target} from disk"):
        connector.check()


def wsdl_folder(root: Path, sandbox: ErpSandbox, schema_location: str) -> Path:
    """``root/wsdl/erp.wsdl`` importing its schema from ``schema_location``, and
    copies of the schema in ``root/wsdl/xsd/`` and ``root/elsewhere/``."""
    for folder in (root / "wsdl" / "xsd", root / "elsewhere"):
        folder.mkdir(parents=True)
        (folder / "erp.xsd").write_bytes(xsd_document())
    path = root / "wsdl" / "erp.wsdl"
    path.write_bytes(wsdl_document(sandbox.url, schema_location=schema_location))
    return path


def test_the_session_refuses_file_urls_though_zeep_mounts_a_reader_for_them(
    sandbox: ErpSandbox, make: Made, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("not for the ERP")
    connector = make(erp_config(sandbox))
    with pytest.raises(PolicyViolation, match="allow-list"):
        connector.session.get(secret.as_uri())
    with pytest.raises(PolicyViolation, match="allow-list"):
        connector.transport.get(secret.as_uri(), {}, {})  # zeep's HTTP GET binding


@pytest.mark.parametrize(
    "location", ["../elsewhere/erp.xsd", "file:///etc/hostname", "/etc/hostname"]
)
def test_a_wsdl_file_may_not_import_a_file_outside_its_folder(
    sandbox: ErpSandbox, make: Made, tmp_path: Path, location: str
) -> None:
    path = wsdl_folder(tmp_path, sandbox, location)
    connector = make(erp_config(sandbox, url=str(path), allow=[sandbox.base_url]))
    with pytest.raises(PolicyViolation, match="it reads files only from the folder of its WSDL"):
        connector.check()


def test_a_wsdl_file_may_import_from_a_folder_below_its_own(
    sandbox: ErpSandbox, make: Made, tmp_path: Path
) -> None:
    path = wsdl_folder(tmp_path, sandbox, "xsd/erp.xsd")
    shutil.rmtree(tmp_path / "elsewhere")
    connector = make(erp_config(sandbox, url=str(path), allow=[sandbox.base_url], options=STOCK))
    assert "GetStock answered" in connector.check()


def test_an_answer_with_an_external_entity_is_refused(sandbox: ErpSandbox, erp: SoapClient) -> None:
    sandbox.fail_next(1, "xxe")
    with pytest.raises(PolicyViolation, match="answer was refused, it declares a DTD"):
        erp.CreateSalesOrder(order=order("xxe"))
    assert sandbox.effects("xxe") == 0
    assert [c.code for c in sandbox.calls] == ["xxe"]  # not retried
    assert erp.ctx is not None
    record = erp.ctx.evidence.record() or {}
    assert "<!ENTITY xxe" in record["response"]["body"]
