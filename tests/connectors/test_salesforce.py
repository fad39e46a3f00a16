"""The Salesforce connector against the Salesforce sandbox over HTTPS on loopback: the
contract, then what only Salesforce has: its three logins, SOQL pages, a session that
expires mid-step, error codes, upsert by external ID and Bulk API 2.0.

One sandbox serves the module (its RSA key and CA take a moment); every test starts
from :meth:`SalesforceSandbox.reset`, which keeps access tokens valid.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from connectors.salesforce import JWT_GRANT, SalesforceClient, SalesforceConnector
from hub.connections import ConnectionConfig, Connectors
from hub.errors import BusinessError, PolicyViolation, TransientError
from hub.settings import Settings
from tests.connectors.conftest import Outside
from tests.connectors.contract import Contract, context
from tests.sandbox.salesforce import SalesforceSandbox

CANARY = "Canary-Sf-Passw0rd-81Zq"


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SalesforceSandbox]:
    with SalesforceSandbox(password=CANARY) as server:
        yield server


@pytest.fixture(autouse=True)
def fresh(sandbox: SalesforceSandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    sandbox.reset()
    monkeypatch.setenv("SF_PASSWORD", CANARY)
    monkeypatch.setenv("SF_TOKEN", sandbox.security_token)
    monkeypatch.setenv("SF_SECRET", sandbox.client_secret)
    monkeypatch.setenv("SF_JWT_KEY", sandbox.jwt_private_key_pem)


def auth(sandbox: SalesforceSandbox, kind: str = "salesforce_password") -> dict[str, Any]:
    if kind == "salesforce_password":
        return {"kind": kind, "client_id": sandbox.client_id, "client_secret": "env:SF_SECRET",
                "username": sandbox.username, "password": "env:SF_PASSWORD",
                "security_token": "env:SF_TOKEN"}  # fmt: skip
    if kind == "salesforce_client_credentials":
        return {"kind": kind, "client_id": sandbox.client_id, "client_secret": "env:SF_SECRET"}
    return {"kind": kind, "client_id": sandbox.client_id, "username": sandbox.username,
            "private_key": "env:SF_JWT_KEY"}  # fmt: skip


def connection(sandbox: SalesforceSandbox, **changes: Any) -> dict[str, Any]:
    return {
        "kind": "salesforce",
        "url": sandbox.url,
        "verify": sandbox.ca_path,
        "auth": auth(sandbox),
        "backoff": 0.01,
        "options": {"bulk_wait": 0.02},
        **changes,
    }


@contextmanager
def salesforce(sandbox: SalesforceSandbox, **changes: Any) -> Iterator[SalesforceConnector]:
    config = ConnectionConfig.model_validate({"name": "crm", **connection(sandbox, **changes)})
    connectors = Connectors(Settings(), configs={"crm": config})
    try:
        yield connectors.connector("crm")
    finally:
        connectors.shutdown()


@pytest.fixture
def made(sandbox: SalesforceSandbox) -> Iterator[SalesforceConnector]:
    with salesforce(sandbox) as connector:
        yield connector


@pytest.fixture
def crm(made: SalesforceConnector) -> SalesforceClient:
    return made.bind(context())


def calls(sandbox: SalesforceSandbox, pattern: str, method: str = "GET") -> list[int]:
    """The statuses of the calls whose path matches ``pattern``."""
    return [c.status for c in sandbox.calls if c.method == method and re.search(pattern, c.path)]


def accounts(sandbox: SalesforceSandbox, ref: str) -> list[dict[str, Any]]:
    return [r for r in sandbox.records("Account") if r["External_Id__c"] == ref]


# ------------------------------------------------------------------ contract
class Driver:
    canary = CANARY
    variable = "SF_PASSWORD"
    refusal = "REQUIRED_FIELD_MISSING: Required fields are missing: [Name]"

    def __init__(self, sandbox: SalesforceSandbox, outside: Outside) -> None:
        self.sandbox, self.outside_server = sandbox, outside

    def config(self, **changes: Any) -> dict[str, Any]:
        return connection(self.sandbox, **changes)

    def create(self, client: SalesforceClient, ref: str) -> Any:
        return client.upsert("Account", "External_Id__c", ref, {"Name": f"Account {ref}"})["id"]

    def effects(self, ref: str) -> int:
        return len(accounts(self.sandbox, ref))

    def fail_transient(self, times: int) -> None:
        if times:
            self.sandbox.fail_next(times, status=503)
        else:  # the sandbox has no control to drop the failures still waiting
            with self.sandbox._lock:
                self.sandbox._failures.clear()

    def refused(self, client: SalesforceClient) -> None:
        client.create("Account", {"BillingCity": "Oslo"})

    def outside(self, client: SalesforceClient) -> None:
        client.request("GET", f"{self.outside_server.url}/steal")

    def sent_outside(self) -> int:
        return len(self.outside_server.hits)


class TestSalesforceContract(Contract):
    @pytest.fixture
    def driver(self, sandbox: SalesforceSandbox, outside: Outside) -> Driver:
        outside.hits.clear()
        return Driver(sandbox, outside)


# ------------------------------------------------------------------- logins
def test_a_password_login_is_made_once_and_check_reports_the_limits(
    sandbox: SalesforceSandbox, made: SalesforceConnector
) -> None:
    sandbox.api_limit = 15000
    client = made.bind(context())
    client.create("Account", {"Name": "Acme"})
    assert client.query("SELECT Name FROM Account") == [{"Name": "Acme"}]
    assert made.logins == 1
    said = made.check()  # a new login, to test the credentials as they are now
    assert said == (
        f"logged in to {sandbox.url} as {sandbox.username}; API v59.0; "
        "DailyApiRequests 14998/15000 left"
    )
    assert made.logins == 2
    assert calls(sandbox, "oauth2/token", "POST") == [200, 200]


def test_a_client_credentials_login_names_the_run_as_user(sandbox: SalesforceSandbox) -> None:
    with salesforce(sandbox, auth=auth(sandbox, "salesforce_client_credentials")) as made:
        said = made.check()
    assert f"as {sandbox.username};" in said
    assert calls(sandbox, f"^/id/{sandbox.org_id}/{sandbox.user_id}$") == [200]


def test_a_jwt_login_signs_an_assertion_with_the_key(sandbox: SalesforceSandbox) -> None:
    with salesforce(sandbox, auth=auth(sandbox, "salesforce_jwt")) as made:
        client = made.bind(context())
        new_id = client.create("Account", {"Name": "Signed"})
        assert client.get("Account", new_id, fields=["Name"]) == {"Name": "Signed"}
        assert made.logins == 1


def test_a_jwt_signed_with_another_key_is_refused_by_name(
    sandbox: SalesforceSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = other.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    monkeypatch.setenv("SF_JWT_KEY", pem)
    ctx = context()
    with (
        salesforce(sandbox, auth=auth(sandbox, "salesforce_jwt")) as made,
        pytest.raises(BusinessError, match=r"'crm'.*invalid_grant: invalid assertion.*private_key"),
    ):
        made.bind(ctx).query("SELECT Id FROM Account")
    body = (ctx.evidence.record() or {})["request"]["body"]
    assert body == f"grant_type={quote(JWT_GRANT, safe='')}&assertion=%5Bredacted%5D"


def test_a_wrong_client_secret_is_a_business_error_naming_what_to_check(
    sandbox: SalesforceSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SF_SECRET", "0" * 64)
    ctx = context()
    with salesforce(sandbox) as made, pytest.raises(BusinessError) as caught:
        made.bind(ctx).query("SELECT Id FROM Account")
    assert "connection 'crm'" in str(caught.value)
    assert "invalid_client: invalid client credentials" in str(caught.value)
    assert "check client_id/secret/username/password" in str(caught.value)
    assert calls(sandbox, "oauth2/token", "POST") == [400]  # a refused login is not retried
    shown = (ctx.evidence.record() or {})["request"]
    assert (
        "grant_type=password" in shown["body"] and "client_secret=%5Bredacted%5D" in shown["body"]
    )


def test_the_canary_password_appears_in_no_evidence_error_or_log_line(
    sandbox: SalesforceSandbox, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    ctx = context()
    with ctx.evidence.capturing(), salesforce(sandbox) as made:
        client = made.bind(ctx)
        client.create("Account", {"Name": CANARY[:3] + "x"})
        with pytest.raises(BusinessError) as refused:
            client.create("Account", {"Name": "x", "Nope__c": 1})
        refusal = ctx.evidence.record()
        made.logout()
        monkeypatch.setenv("SF_TOKEN", "wrong-token")  # the password is sent, and refused
        with pytest.raises(BusinessError) as login:
            client.query("SELECT Id FROM Account")
        failed_login = ctx.evidence.record()
    assert refusal is not None and "Nope__c" in refusal["response"]["body"]
    assert failed_login is not None and "oauth2/token" in failed_login["request"]["url"]
    assert "password=%5Bredacted%5D" in failed_login["request"]["body"]
    shown = repr([refusal, failed_login]) + str(refused.value) + str(login.value) + caplog.text
    assert "POST /services/oauth2/token" in caplog.text  # the log is there, without the secret
    assert CANARY not in shown
    assert sandbox.security_token not in shown


# -------------------------------------------------------------------- SOQL
def test_a_given_session_is_used_as_it_is_and_its_expiry_says_what_to_do(
    sandbox: SalesforceSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SF_SESSION", sandbox.token())
    session = {"kind": "bearer", "token": "env:SF_SESSION"}
    with salesforce(sandbox, auth=session) as made:
        client = made.bind(context())
        made_id = client.create("Account", {"Name": "Session GmbH", "External_Id__c": "s-1"})
        assert client.get("Account", made_id)["Name"] == "Session GmbH"
        assert calls(sandbox, r"/oauth2/token", "POST") == []  # no login of its own
        sandbox.expire_sessions()
        with pytest.raises(BusinessError, match="cannot renew a session it did not log in"):
            client.get("Account", made_id)


def test_a_query_of_4500_records_reads_three_pages_without_attributes(
    sandbox: SalesforceSandbox, crm: SalesforceClient
) -> None:
    sandbox.seed_many("Account", 4500)
    records = crm.query("SELECT Id, Name, External_Id__c FROM Account ORDER BY Name")
    assert len(records) == 4500
    assert records[0] == {"Id": records[0]["Id"], "Name": "Account 00001",
                          "External_Id__c": "ACC-00001"}  # fmt: skip
    assert records[-1]["Name"] == "Account 04500"
    assert all("attributes" not in r for r in records)
    assert calls(sandbox, "/query") == [200, 200, 200]


def test_query_iter_reads_the_next_page_only_when_it_is_reached(
    sandbox: SalesforceSandbox, crm: SalesforceClient
) -> None:
    sandbox.seed_many("Account", 4500)
    records = crm.query_iter("SELECT Id FROM Account")
    first = [next(records) for _ in range(2000)]
    assert len(first) == 2000 and len(calls(sandbox, "/query")) == 1
    next(records)
    assert len(calls(sandbox, "/query")) == 2
    assert [len(p) for p in crm.query_pages("SELECT Id FROM Account")] == [2000, 2000, 500]


def test_parent_fields_come_back_without_attributes(
    sandbox: SalesforceSandbox, crm: SalesforceClient
) -> None:
    account = crm.create("Account", {"Name": "Parent"})
    crm.create("Contact", {"LastName": "Child", "AccountId": account})
    rows = crm.query("SELECT LastName, Account.Name FROM Contact")
    assert rows == [{"LastName": "Child", "Account": {"Name": "Parent"}}]


# ------------------------------------------------------------ session expiry
def test_an_expired_session_is_replaced_once_and_the_call_succeeds(
    sandbox: SalesforceSandbox, made: SalesforceConnector, crm: SalesforceClient
) -> None:
    new_id = crm.create("Account", {"Name": "Before"})
    sandbox.expire_sessions()
    crm.update("Account", new_id, {"Name": "After"})
    assert crm.get("Account", new_id)["Name"] == "After"
    assert made.logins == 2
    assert calls(sandbox, "oauth2/token", "POST") == [200, 200]
    assert calls(sandbox, f"sobjects/Account/{new_id}$", "PATCH") == [401, 204]


def test_a_session_refused_again_after_the_new_login_is_a_business_error(
    sandbox: SalesforceSandbox, made: SalesforceConnector, crm: SalesforceClient
) -> None:
    crm.query("SELECT Id FROM Account")
    sandbox.fail_next(2, status=401)
    with pytest.raises(BusinessError, match=r"INVALID_SESSION_ID.*expired again.*'crm'"):
        crm.query("SELECT Id FROM Account")
    assert made.logins == 2  # one new login, not one per 401
    assert calls(sandbox, "/query") == [200, 401, 401]


# ------------------------------------------------------------- error codes
@pytest.mark.parametrize(
    ("call", "words"),
    [
        (lambda c: c.query("SELECT Nope__c FROM Account"), "INVALID_FIELD: "),
        (lambda c: c.query("SELECT FROM Account"), "MALFORMED_QUERY: "),
        (lambda c: c.query("SELECT Id FROM Nope__c"), "INVALID_TYPE: "),
        (lambda c: c.create("Account", {"Phone": "1"}),
         "REQUIRED_FIELD_MISSING: Required fields are missing: [Name] (fields: Name)"),
        (lambda c: c.create("Account", {"Name": "A", "BillingPostalCode": "000"}),
         "FIELD_CUSTOM_VALIDATION_EXCEPTION: Billing postal code is not valid."),
        (lambda c: c.get("Account", "001000000000000AAA"), "NOT_FOUND: "),
    ],
)  # fmt: skip
def test_a_refusal_is_a_business_error_with_the_code_and_message(
    sandbox: SalesforceSandbox, crm: SalesforceClient, call: Any, words: str
) -> None:
    with pytest.raises(BusinessError) as caught:
        call(crm)
    assert words in str(caught.value)
    assert str(caught.value).startswith("crm: ")
    assert len(sandbox.calls) == 2  # the login and one call: a refusal is not retried


def test_a_duplicate_value_is_a_business_error(crm: SalesforceClient) -> None:
    crm.create("Account", {"Name": "A", "External_Id__c": "DUP-1"})
    with pytest.raises(BusinessError, match="DUPLICATE_VALUE: duplicate value found"):
        crm.create("Account", {"Name": "B", "External_Id__c": "DUP-1"})


def test_request_limit_exceeded_is_retried_then_transient(sandbox: SalesforceSandbox) -> None:
    ctx = context()
    with salesforce(sandbox, retries=2) as made:
        client = made.bind(ctx)
        client.query("SELECT Id FROM Account")
        sandbox.fail_next(3, status=403)
        with pytest.raises(TransientError, match="403: REQUEST_LIMIT_EXCEEDED: TotalRequests"):
            client.query("SELECT Id FROM Account")
        assert calls(sandbox, "/query") == [200, 403, 403, 403]
        assert (ctx.evidence.record() or {})["response"]["status"] == 403

        sandbox.fail_next(2, status=403)
        assert client.query("SELECT Id FROM Account") == []
    assert calls(sandbox, "/query")[4:] == [403, 403, 200]


def test_a_lock_on_a_row_is_retried_although_it_is_a_400(
    sandbox: SalesforceSandbox, crm: SalesforceClient
) -> None:
    sandbox.fail_next(1, status=400, error_code="UNABLE_TO_LOCK_ROW", message="unable to lock")
    assert crm.create("Account", {"Name": "Locked once"})
    assert calls(sandbox, "sobjects/Account/?$", "POST") == [400, 201]


def test_a_timeout_is_transient_after_the_retries(sandbox: SalesforceSandbox) -> None:
    with salesforce(sandbox, timeout=0.3, retries=1) as made:
        client = made.bind(context())
        client.query("SELECT Id FROM Account")
        sandbox.delay = 1.0
        try:
            with pytest.raises(TransientError, match="crm: query timed out"):
                client.query("SELECT Id FROM Account")
        finally:
            sandbox.delay = 0
    deadline = time.monotonic() + 5  # the sandbox logs the two calls it answers too late
    while len(calls(sandbox, "/query")) < 3:
        assert time.monotonic() < deadline, sandbox.calls
        time.sleep(0.05)


def test_calls_wait_for_the_rate_limit(sandbox: SalesforceSandbox) -> None:
    with salesforce(sandbox, rate_limit="20/s") as made:
        client = made.bind(context())
        started = time.monotonic()
        for _ in range(30):  # the login and 29 calls: a burst of 20, then 20 a second
            client.limits()
        took = time.monotonic() - started
    assert took >= 0.4, took


def test_a_url_outside_the_allow_list_is_refused_before_it_is_sent(
    crm: SalesforceClient, outside: Outside
) -> None:
    crm.query("SELECT Id FROM Account")
    outside.hits.clear()
    with pytest.raises(PolicyViolation, match="allow-list"):
        crm.request("POST", f"{outside.url}/services/data/v59.0/sobjects/Account", json_body={})
    assert outside.hits == []


# ------------------------------------------------------------------ upsert
def test_upsert_creates_then_updates_the_same_record(
    sandbox: SalesforceSandbox, crm: SalesforceClient
) -> None:
    first = crm.upsert("Account", "External_Id__c", "ORD 7-1", {"Name": "First"})
    again = crm.upsert("Account", "External_Id__c", "ORD 7-1", {"Name": "Second"})
    assert first == {"id": first["id"], "created": True}
    assert again == {"id": first["id"], "created": False}
    assert [r["Name"] for r in accounts(sandbox, "ORD 7-1")] == ["Second"]
    assert calls(sandbox, "External_Id__c", "PATCH") == [201, 200]


def test_upsert_on_an_api_version_before_46_looks_the_id_up(sandbox: SalesforceSandbox) -> None:
    with salesforce(sandbox, options={"api_version": "45.0"}) as made:
        client = made.bind(context())
        first = client.upsert("Account", "External_Id__c", "OLD-1", {"Name": "First"})
        again = client.upsert("Account", "External_Id__c", "OLD-1", {"Name": "Second"})
    assert first["created"] is True
    assert again == {"id": first["id"], "created": False}
    assert calls(sandbox, "v45.0/sobjects/Account/External_Id__c", "PATCH") == [201, 204]


def test_upsert_matching_several_records_is_a_business_error(
    sandbox: SalesforceSandbox, crm: SalesforceClient
) -> None:
    ids = sandbox.seed("Contact", [{"LastName": "A", "Legacy_Id__c": "L-1"},
                                   {"LastName": "B", "Legacy_Id__c": "L-1"}])  # fmt: skip
    with pytest.raises(BusinessError, match="2 records match") as caught:
        crm.upsert("Contact", "Legacy_Id__c", "L-1", {"Title": "CEO"})
    assert all(i in str(caught.value) for i in ids)
    assert [r["Title"] for r in sandbox.records("Contact")] == [None, None]


# -------------------------------------------------------------------- bulk
def test_a_bulk_insert_reports_successes_and_failures(
    sandbox: SalesforceSandbox, made: SalesforceConnector
) -> None:
    rows: list[dict[str, Any]] = [
        {"Name": None if i % 500 == 0 else f"Bulk {i}", "External_Id__c": f"B-{i}",
         "NumberOfEmployees": i}
        for i in range(1, 3001)
    ]  # fmt: skip
    result = made.bind(context()).bulk("Account", "insert", rows)
    assert (result["processed"], result["succeeded"], result["failed"]) == (3000, 2994, 6)
    assert len(result["jobs"]) == 1
    failure = result["failures"][0]
    assert failure["code"] == "REQUIRED_FIELD_MISSING"
    assert failure["message"] == "Required fields are missing: [Name]"
    assert failure["fields"] == ["Name"]
    assert failure["record"]["External_Id__c"] == "B-500"
    assert {f["record"]["External_Id__c"] for f in result["failures"]} == {
        f"B-{i}" for i in range(500, 3001, 500)
    }
    success = result["successes"][0]
    assert success["created"] is True and success["record"]["Name"] == "Bulk 1"
    assert sandbox.record(success["id"])["NumberOfEmployees"] == 1
    assert len(sandbox.records("Account")) == 2994


def test_a_bulk_upsert_in_several_jobs_creates_and_updates(
    sandbox: SalesforceSandbox,
) -> None:
    sandbox.seed_many("Account", 1000)  # ACC-00001 ... ACC-01000
    rows = [{"External_Id__c": f"ACC-{i:05d}", "Name": f"Upserted {i}"} for i in range(501, 2501)]
    rows.append({"External_Id__c": "ACC-09999", "Name": "x" * 300})
    with salesforce(sandbox, options={"bulk_wait": 0.02, "bulk_batch_size": 1000}) as made:
        result = made.bind(context()).bulk("Account", "upsert", rows, "External_Id__c")
    assert len(result["jobs"]) == 3
    assert result["succeeded"] == 2000
    created = [s["created"] for s in result["successes"]]
    assert (created.count(False), created.count(True)) == (500, 1500)
    assert [f["code"] for f in result["failures"]] == ["STRING_TOO_LONG"]
    assert len(sandbox.records("Account")) == 2500
    assert calls(sandbox, "jobs/ingest$", "POST") == [200, 200, 200]


def test_a_bulk_job_refused_as_a_whole_is_a_business_error(crm: SalesforceClient) -> None:
    with pytest.raises(BusinessError, match="Field name provided, Name is not an External ID"):
        crm.bulk("Account", "upsert", [{"Name": "A"}], external_id_field="Name")
