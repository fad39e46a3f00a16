"""The Salesforce sandbox answers as Salesforce does, to simple-salesforce and to raw HTTP.

One sandbox serves the whole module (its RSA key and CA take a moment);
every test starts from :meth:`SalesforceSandbox.reset`, which keeps the
access tokens valid.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import hmac
import io
import json
import re
import signal
import ssl
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import (
    SalesforceAuthenticationFailed,
    SalesforceExpiredSession,
    SalesforceGeneralError,
    SalesforceMalformedRequest,
    SalesforceMoreThanOneRecord,
    SalesforceRefusedRequest,
    SalesforceResourceNotFound,
)
from simple_salesforce.login import token_login

from tests.sandbox.salesforce import SalesforceSandbox
from tests.sandbox.salesforce.ids import normalize

ROOT = Path(__file__).resolve().parents[2]
V = "59.0"


# ------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def sandbox() -> Iterator[SalesforceSandbox]:
    with SalesforceSandbox() as sb:
        yield sb


@pytest.fixture(autouse=True)
def fresh(sandbox: SalesforceSandbox) -> None:
    sandbox.reset()


@pytest.fixture
def sf(sandbox: SalesforceSandbox) -> Iterator[Salesforce]:
    """simple-salesforce on a token from the password flow, over a session trusting the CA."""
    session = sandbox.requests_session()
    token, instance = token_login(
        sandbox.token_url,
        {
            "grant_type": "password",
            "client_id": sandbox.client_id,
            "client_secret": sandbox.client_secret,
            "username": sandbox.username,
            "password": sandbox.password + sandbox.security_token,
        },
        "login",
        sandbox.client_id,
        None,
        None,
        session,
    )
    client = Salesforce(instance_url=f"https://{instance}", session_id=token, session=session)
    yield client
    session.close()


@pytest.fixture
def http(sandbox: SalesforceSandbox) -> Iterator[httpx.Client]:
    """Raw HTTP with a valid token and the API's base URL."""
    with httpx.Client(
        base_url=f"{sandbox.url}/services/data/v{V}",
        verify=sandbox.ssl_context(),
        headers={"Authorization": f"Bearer {sandbox.token()}"},
        timeout=10,
    ) as client:
        yield client


def token_request(sandbox: SalesforceSandbox, data: dict[str, str], **kw: Any) -> httpx.Response:
    return httpx.post(sandbox.token_url, data=data, verify=sandbox.ssl_context(), **kw)


def error_code(exc: pytest.ExceptionInfo[Any]) -> str:
    return str(exc.value.content[0]["errorCode"])


def count_calls(sandbox: SalesforceSandbox, pattern: str, method: str = "GET") -> int:
    return sum(1 for c in sandbox.calls if c.method == method and re.search(pattern, c.path))


# ------------------------------------------------------------------------ ids
def test_ids_have_the_object_prefix_and_the_case_checksum(sandbox: SalesforceSandbox) -> None:
    assert normalize("001A0000006Vm9r") == "001A0000006Vm9rIAC"  # Salesforce's documented pair
    assert normalize("001A0000006Vm9rIAC") == "001A0000006Vm9rIAC"
    assert normalize("001A0000006Vm9rAAA") is None
    assert normalize("not-an-id") is None
    [account] = sandbox.seed("Account", [{"Name": "Prefix"}])
    [contact] = sandbox.seed("Contact", [{"LastName": "Prefix"}])
    [order] = sandbox.seed("Order", [{"EffectiveDate": "2024-05-01"}])
    [custom] = sandbox.seed("Order__c", [{"Name": "Prefix"}])
    assert [account[:3], contact[:3], order[:3], custom[:3]] == ["001", "003", "801", "a01"]
    for record_id in (account, contact, order, custom):
        assert len(record_id) == 18 and normalize(record_id[:15]) == record_id


# ----------------------------------------------------------------------- auth
def test_password_flow_answers_a_signed_token_and_refuses_bad_credentials(
    sandbox: SalesforceSandbox,
) -> None:
    good = {
        "grant_type": "password",
        "client_id": sandbox.client_id,
        "client_secret": sandbox.client_secret,
        "username": sandbox.username,
        "password": sandbox.password + sandbox.security_token,
    }
    ok = token_request(sandbox, good)
    assert ok.status_code == 200
    body = ok.json()
    assert set(body) == {
        "access_token",
        "instance_url",
        "id",
        "token_type",
        "issued_at",
        "signature",
    }
    assert body["token_type"] == "Bearer"
    assert body["instance_url"] == sandbox.url
    assert body["id"] == f"{sandbox.url}/id/{sandbox.org_id}/{sandbox.user_id}"
    assert body["access_token"].startswith(sandbox.org_id[:15] + "!")
    expected = hmac.new(
        sandbox.client_secret.encode(),
        (body["id"] + body["issued_at"]).encode(),
        hashlib.sha256,
    ).digest()
    assert base64.b64decode(body["signature"]) == expected
    identity = httpx.get(
        body["id"],
        headers={"Authorization": f"Bearer {body['access_token']}"},
        verify=sandbox.ssl_context(),
    )
    assert identity.json()["username"] == sandbox.username

    refusals = [
        ({"password": sandbox.password}, "invalid_grant", "authentication failure"),
        ({"username": "someone@else.example.com"}, "invalid_grant", "authentication failure"),
        ({"client_id": "3MVG9unknown"}, "invalid_client_id", "client identifier invalid"),
        ({"client_secret": "0" * 64}, "invalid_client", "invalid client credentials"),
        (
            {"grant_type": "authorization_code"},
            "unsupported_grant_type",
            "grant type not supported",
        ),
    ]
    for change, error, description in refusals:
        bad = token_request(sandbox, {**good, **change})
        assert bad.status_code == 400, change
        assert bad.json() == {"error": error, "error_description": description}

    session = sandbox.requests_session()
    try:
        with pytest.raises(SalesforceAuthenticationFailed) as failed:
            token_login(
                sandbox.token_url,
                {**good, "password": "wrong"},
                "login",
                sandbox.client_id,
                None,
                None,
                session,
            )
    finally:
        session.close()
    assert failed.value.code == "invalid_grant"


def test_client_credentials_flow_takes_basic_auth_or_the_body(sandbox: SalesforceSandbox) -> None:
    basic = base64.b64encode(f"{sandbox.client_id}:{sandbox.client_secret}".encode()).decode()
    ok = token_request(
        sandbox,
        {"grant_type": "client_credentials"},
        headers={"Authorization": f"Basic {basic}"},
    )
    assert ok.status_code == 200
    assert ok.json()["scope"] == "api" and ok.json()["token_type"] == "Bearer"
    in_body = token_request(
        sandbox,
        {
            "grant_type": "client_credentials",
            "client_id": sandbox.client_id,
            "client_secret": sandbox.client_secret,
        },
    )
    assert in_body.status_code == 200
    assert in_body.json()["access_token"] != ok.json()["access_token"]
    wrong = base64.b64encode(f"{sandbox.client_id}:nope".encode()).decode()
    bad = token_request(
        sandbox, {"grant_type": "client_credentials"}, headers={"Authorization": f"Basic {wrong}"}
    )
    assert bad.status_code == 400
    assert bad.json() == {
        "error": "invalid_client",
        "error_description": "invalid client credentials",
    }
    # the token works on the data API
    limits = httpx.get(
        f"{sandbox.url}/services/data/v{V}/limits",
        headers={"Authorization": f"Bearer {ok.json()['access_token']}"},
        verify=sandbox.ssl_context(),
    )
    assert limits.status_code == 200 and "DailyApiRequests" in limits.json()


def test_jwt_bearer_flow_checks_signature_audience_expiry_and_subject(
    sandbox: SalesforceSandbox,
) -> None:
    now = datetime.now(UTC)

    def assertion(key: str | None = None, **claims: Any) -> str:
        payload = {
            "iss": sandbox.client_id,
            "sub": sandbox.username,
            "aud": sandbox.url,
            "exp": int((now + timedelta(minutes=3)).timestamp()),
            **claims,
        }
        return jwt.encode(payload, key or sandbox.jwt_private_key_pem, algorithm="RS256")

    def exchange(token: str) -> httpx.Response:
        return token_request(
            sandbox,
            {"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": token},
        )

    ok = exchange(assertion())
    assert ok.status_code == 200
    assert ok.json()["instance_url"] == sandbox.url and ok.json()["scope"] == "api"
    # as simple-salesforce signs it: aud login.salesforce.com and exp as a string
    as_library = exchange(
        assertion(aud="https://login.salesforce.com", exp=f"{(now.timestamp() + 180):.0f}")
    )
    assert as_library.status_code == 200

    other_key = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )
    refusals = [
        (assertion(other_key), "invalid_grant", "invalid assertion"),
        (
            assertion(exp=int((now - timedelta(minutes=1)).timestamp())),
            "invalid_grant",
            "invalid assertion",
        ),
        (assertion(aud="https://example.com"), "invalid_grant", "audience is invalid"),
        (
            assertion(sub="nobody@example.com"),
            "invalid_grant",
            "user hasn't approved this consumer",
        ),
        (assertion(iss="3MVG9other"), "invalid_client_id", "client identifier invalid"),
        ("not.a.jwt", "invalid_grant", "invalid assertion"),
    ]
    for token, error, description in refusals:
        bad = exchange(token)
        assert bad.status_code == 400
        assert bad.json() == {"error": error, "error_description": description}


def test_expired_sessions_answer_401_and_simple_salesforce_raises_expired_session(
    sandbox: SalesforceSandbox, sf: Salesforce, http: httpx.Client
) -> None:
    assert sf.Account.create({"Name": "Before"})["success"] is True
    sandbox.expire_sessions()
    with pytest.raises(SalesforceExpiredSession) as expired:
        sf.Account.create({"Name": "After"})
    assert expired.value.status == 401
    assert expired.value.content == [
        {"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}
    ]
    raw = http.get("/limits")
    assert raw.status_code == 401 and raw.json()[0]["errorCode"] == "INVALID_SESSION_ID"
    no_token = httpx.get(f"{sandbox.url}/services/data/v{V}/limits", verify=sandbox.ssl_context())
    assert no_token.status_code == 401
    assert [r["Name"] for r in sandbox.records("Account")] == ["Before"]
    fresh = Salesforce(instance_url=sandbox.url, session_id=sandbox.token(), session=sf.session)
    assert fresh.Account.create({"Name": "Again"})["success"] is True


# ------------------------------------------------------------------- records
def test_create_get_update_delete_with_simple_salesforce(
    sandbox: SalesforceSandbox, sf: Salesforce
) -> None:
    created = sf.Account.create(
        {"Name": "Acme GmbH", "BillingPostalCode": "10115", "AnnualRevenue": 1200.5}
    )
    assert created["success"] is True and created["errors"] == []
    account_id = created["id"]
    assert account_id.startswith("001") and len(account_id) == 18

    got = sf.Account.get(account_id)
    assert got["attributes"] == {
        "type": "Account",
        "url": f"/services/data/v{V}/sobjects/Account/{account_id}",
    }
    assert (got["Id"], got["Name"], got["AnnualRevenue"]) == (account_id, "Acme GmbH", 1200.5)
    assert got["OwnerId"] == sandbox.user_id and got["IsDeleted"] is False

    assert sf.Account.update(account_id, {"Phone": "+49 30 123", "Name": "Acme AG"}) == 204
    stored = sandbox.record(account_id)
    assert stored is not None and (stored["Name"], stored["Phone"]) == ("Acme AG", "+49 30 123")

    contact = sf.Contact.create(
        {"FirstName": "Ada", "LastName": "Lovelace", "AccountId": account_id}
    )
    assert sf.Contact.get(contact["id"])["Name"] == "Ada Lovelace"

    assert sf.Account.delete(account_id) == 204
    assert sandbox.records("Account") == []
    with pytest.raises(SalesforceResourceNotFound) as gone:
        sf.Account.get(account_id)
    assert error_code(gone) == "ENTITY_IS_DELETED"
    everything = sf.query_all("SELECT Id, IsDeleted FROM Account", include_deleted=True)
    assert [(r["Id"], r["IsDeleted"]) for r in everything["records"]] == [(account_id, True)]


def test_upsert_creates_with_201_then_updates_with_200(
    sandbox: SalesforceSandbox, sf: Salesforce, http: httpx.Client
) -> None:
    first = sf.Account.upsert("External_Id__c/EXT-1", {"Name": "First"}, raw_response=True)
    assert first.status_code == 201
    body = first.json()
    assert body["success"] is True and body["created"] is True and body["errors"] == []
    second = sf.Account.upsert("External_Id__c/ext-1", {"Name": "Second"}, raw_response=True)
    assert second.status_code == 200
    assert second.json() == {"id": body["id"], "success": True, "errors": [], "created": False}
    assert [(r["Name"], r["External_Id__c"]) for r in sandbox.records("Account")] == [
        ("Second", "EXT-1")
    ]
    assert sf.Account.get_by_custom_id("External_Id__c", "EXT-1")["Id"] == body["id"]
    # before API v46.0 an update through upsert answered 204 without a body
    old = http.patch(
        f"{sandbox.url}/services/data/v45.0/sobjects/Account/External_Id__c/EXT-1",
        json={"Name": "Third"},
    )
    assert old.status_code == 204 and old.content == b""
    # a field that is not an external id
    with pytest.raises(SalesforceResourceNotFound) as not_external:
        sf.Account.upsert("Name/Second", {"Phone": "1"})
    assert "Provided external ID field does not exist" in not_external.value.content[0]["message"]


def test_upsert_matching_several_records_answers_300(
    sandbox: SalesforceSandbox, sf: Salesforce
) -> None:
    ids = sandbox.seed(
        "Contact",
        [{"LastName": "One", "Legacy_Id__c": "L-7"}, {"LastName": "Two", "Legacy_Id__c": "L-7"}],
    )
    with pytest.raises(SalesforceMoreThanOneRecord) as several:
        sf.Contact.upsert("Legacy_Id__c/L-7", {"Title": "Boss"})
    assert several.value.status == 300
    assert several.value.content == [f"/services/data/v{V}/sobjects/Contact/{i}" for i in ids]
    assert [r["Title"] for r in sandbox.records("Contact")] == [None, None]


def test_record_errors_are_lists_with_codes_and_fields(
    sandbox: SalesforceSandbox, sf: Salesforce
) -> None:
    sf.Account.create({"Name": "Taken", "External_Id__c": "DUP-1"})
    cases = [
        (
            {"BillingCity": "Berlin"},
            "REQUIRED_FIELD_MISSING",
            "Required fields are missing: [Name]",
            ["Name"],
        ),
        (
            {"Name": "Copy", "External_Id__c": "dup-1"},
            "DUPLICATE_VALUE",
            None,
            [],
        ),
        (
            {"Name": "Bad zip", "BillingPostalCode": "!!!"},
            "FIELD_CUSTOM_VALIDATION_EXCEPTION",
            "Billing postal code is not valid.",
            ["BillingPostalCode"],
        ),
        (
            {"Name": "Typo", "Nmae__c": "x"},
            "INVALID_FIELD",
            "No such column 'Nmae__c' on sobject of type Account",
            None,
        ),
        (
            {"Name": "Read only", "CreatedDate": "2024-01-01T00:00:00Z"},
            "INVALID_FIELD_FOR_INSERT_UPDATE",
            None,
            ["CreatedDate"],
        ),
    ]
    for body, code, message, fields in cases:
        with pytest.raises(SalesforceMalformedRequest) as bad:
            sf.Account.create(body)
        [error] = bad.value.content
        assert bad.value.status == 400
        assert error["errorCode"] == code, body
        if message is not None:
            assert error["message"] == message
        assert error.get("fields") == fields
    duplicate = sandbox.records("Account")[0]["Id"]
    with pytest.raises(SalesforceMalformedRequest) as dup:
        sf.Account.create({"Name": "Copy", "External_Id__c": "DUP-1"})
    assert dup.value.content[0]["message"] == (
        "duplicate value found: External_Id__c duplicates value on record with id: " + duplicate
    )
    assert [r["Name"] for r in sandbox.records("Account")] == ["Taken"]
    # the same rule on update; the record keeps its values
    with pytest.raises(SalesforceMalformedRequest) as on_update:
        sf.Account.update(duplicate, {"BillingPostalCode": "00000"})
    assert error_code(on_update) == "FIELD_CUSTOM_VALIDATION_EXCEPTION"
    assert sandbox.records("Account")[0]["BillingPostalCode"] is None


def test_unknown_records_and_objects_are_404_not_found(
    sandbox: SalesforceSandbox, sf: Salesforce, http: httpx.Client
) -> None:
    missing = "0015g00000ZZZZZ"
    with pytest.raises(SalesforceResourceNotFound) as no_record:
        sf.Account.get(missing)
    assert no_record.value.content == [
        {"message": "The requested resource does not exist", "errorCode": "NOT_FOUND"}
    ]
    with pytest.raises(SalesforceResourceNotFound):
        sf.Account.update(missing, {"Name": "x"})
    with pytest.raises(SalesforceResourceNotFound):
        sf.Account.delete(missing)
    with pytest.raises(SalesforceResourceNotFound):
        sf.Nothing__c.create({"Name": "x"})
    assert http.get("/sobjects/Account/0035g00000ZZZZZ").json()[0]["message"] == (
        "Provided external ID field does not exist or is not accessible: 0035g00000ZZZZZ"
    )
    put = http.put("/sobjects/Account/0015g00000ZZZZZ", json={})
    assert put.status_code == 405 and put.json()[0]["errorCode"] == "METHOD_NOT_ALLOWED"


# ---------------------------------------------------------------------- query
def test_query_all_follows_next_records_url_over_three_pages(
    sandbox: SalesforceSandbox, sf: Salesforce, http: httpx.Client
) -> None:
    sandbox.seed_many("Account", 4500)
    result = sf.query_all("SELECT Id, Name FROM Account ORDER BY Name")
    assert result["totalSize"] == 4500
    names = [r["Name"] for r in result["records"]]
    assert names == [f"Account {i:05d}" for i in range(1, 4501)]
    assert len({r["Id"] for r in result["records"]}) == 4500
    assert count_calls(sandbox, r"/query/?$") == 1
    assert count_calls(sandbox, r"/query/01g[0-9A-Za-z]{15}-\d+$") == 2

    first = http.get("/query/", params={"q": "SELECT Id FROM Account"}).json()
    assert (first["totalSize"], first["done"], len(first["records"])) == (4500, False, 2000)
    assert re.fullmatch(
        rf"/services/data/v{V}/query/01g[0-9A-Za-z]{{15}}-2000", first["nextRecordsUrl"]
    )
    assert set(first["records"][0]) == {"attributes", "Id"}
    second = http.get(first["nextRecordsUrl"].removeprefix(f"/services/data/v{V}")).json()
    assert second["done"] is False and second["nextRecordsUrl"].endswith("-4000")
    third = http.get(second["nextRecordsUrl"].removeprefix(f"/services/data/v{V}")).json()
    assert third["done"] is True and len(third["records"]) == 500 and "nextRecordsUrl" not in third
    stale = http.get(first["nextRecordsUrl"].removeprefix(f"/services/data/v{V}"))
    assert stale.status_code == 400 and stale.json()[0]["errorCode"] == "INVALID_QUERY_LOCATOR"
    small = http.get(
        "/query",
        params={"q": "SELECT Id FROM Account"},
        headers={"Sforce-Query-Options": "batchSize=500"},
    ).json()
    assert len(small["records"]) == 500 and small["nextRecordsUrl"].endswith("-500")


def test_soql_where_order_limit_count_and_parents(
    sandbox: SalesforceSandbox, sf: Salesforce
) -> None:
    acme, globex, initech = sandbox.seed(
        "Account",
        [
            {"Name": "Acme", "Industry": "Retail", "AnnualRevenue": 500.0, "BillingCity": "Berlin"},
            {"Name": "Globex", "Industry": "Technology", "AnnualRevenue": 2000.0},
            {
                "Name": "Initech",
                "Industry": "Technology",
                "AnnualRevenue": 1000.0,
                "BillingCity": "Bonn",
            },
        ],
    )
    sandbox.seed("Contact", [{"LastName": "Smith", "AccountId": globex}, {"LastName": "Jones"}])

    def names(soql: str) -> list[str]:
        return [r["Name"] for r in sf.query(soql)["records"]]

    assert names("SELECT Name FROM Account WHERE Industry = 'technology' ORDER BY Name") == [
        "Globex",
        "Initech",
    ]
    assert names(
        "SELECT Name FROM Account WHERE AnnualRevenue > 600 ORDER BY AnnualRevenue DESC"
    ) == [
        "Globex",
        "Initech",
    ]
    assert names(
        "SELECT Name FROM Account WHERE Name IN ('acme', 'Initech') ORDER BY Name DESC"
    ) == [
        "Initech",
        "Acme",
    ]
    assert names("SELECT Name FROM Account WHERE Name LIKE 'g%' OR AnnualRevenue < 600") == [
        "Acme",
        "Globex",
    ]
    assert names(
        "SELECT Name FROM Account WHERE (Industry = 'Technology' AND AnnualRevenue >= 1000) "
        "AND BillingCity != null"
    ) == ["Initech"]
    assert names("SELECT Name FROM Account WHERE BillingCity != 'Berlin' ORDER BY Name") == [
        "Globex",  # != keeps records whose value is null
        "Initech",
    ]
    assert names("SELECT Name FROM Account ORDER BY BillingCity NULLS LAST LIMIT 2") == [
        "Acme",
        "Initech",
    ]
    assert names(f"SELECT Name FROM Account WHERE Id = '{acme[:15]}'") == ["Acme"]
    assert sf.query("SELECT COUNT() FROM Account WHERE Industry = 'Technology'") == {
        "totalSize": 2,
        "done": True,
        "records": [],
    }
    contacts = sf.query("SELECT LastName, Account.Name FROM Contact ORDER BY LastName")["records"]
    assert contacts[0]["Account"] is None
    assert contacts[1]["Account"]["Name"] == "Globex"
    assert contacts[1]["Account"]["attributes"]["type"] == "Account"
    assert initech.startswith("001")
    assert sf.is_sandbox() is True


def test_bad_queries_answer_400_with_salesforce_codes(sf: Salesforce) -> None:
    cases = {
        "SELECT Id, Nmae FROM Account": "INVALID_FIELD",
        "SELECT Id FORM Account": "MALFORMED_QUERY",
        "SELECT Id FROM Acount": "INVALID_TYPE",
        "SELECT Id FROM Account WHERE Name = 5": "INVALID_FIELD",
        "SELECT Id FROM Account WHERE AnnualRevenue > '5'": "INVALID_FIELD",
        "SELECT Id FROM Account WHERE Name = 'a' AND Name = 'b' OR Name = 'c'": "MALFORMED_QUERY",
        "SELECT Id FROM Account WHERE Id = 'abc'": "INVALID_QUERY_FILTER_OPERATOR",
        "SELECT Id FROM Account LIMIT": "MALFORMED_QUERY",
    }
    for soql, code in cases.items():
        with pytest.raises(SalesforceMalformedRequest) as bad:
            sf.query(soql)
        assert error_code(bad) == code, soql
    with pytest.raises(SalesforceMalformedRequest) as located:
        sf.query("SELECT Id, Nmae FROM Account")
    assert located.value.content[0]["message"].startswith(
        "\nSELECT Id, Nmae FROM Account\n           ^\nERROR at Row:1:Column:12\n"
        "No such column 'Nmae' on entity 'Account'."
    )


# -------------------------------------------------------------- injected errors
def test_injected_failures_raise_the_mapped_exceptions_and_change_nothing(
    sandbox: SalesforceSandbox, sf: Salesforce
) -> None:
    [account_id] = sandbox.seed("Account", [{"Name": "Stays"}])
    cases = [
        (403, "REQUEST_LIMIT_EXCEEDED", SalesforceRefusedRequest),
        (503, "SERVER_UNAVAILABLE", SalesforceGeneralError),
        (500, "UNKNOWN_EXCEPTION", SalesforceGeneralError),
    ]
    for status, code, exception in cases:
        sandbox.fail_next(1, status=status, error_code=code)
        with pytest.raises(exception) as failed:
            sf.Account.create({"Name": "Never"})
        assert failed.value.status == status
        assert failed.value.content[0]["errorCode"] == code
        sandbox.fail_next(1, status=status, error_code=code)
        with pytest.raises(exception):
            sf.Account.update(account_id, {"Name": "Changed"})
    assert [r["Name"] for r in sandbox.records("Account")] == ["Stays"]
    sandbox.fail_next(2)
    statuses = []
    for _ in range(3):
        try:
            sf.query("SELECT Id FROM Account")
            statuses.append(200)
        except SalesforceGeneralError as exc:
            statuses.append(exc.status)
    assert statuses == [503, 503, 200]
    assert sandbox.calls[-3:] == [
        ("GET", f"/services/data/v{V}/query/", 503),
        ("GET", f"/services/data/v{V}/query/", 503),
        ("GET", f"/services/data/v{V}/query/", 200),
    ]


def test_api_limit_and_limits_resource(sandbox: SalesforceSandbox, http: httpx.Client) -> None:
    before = http.get("/limits").json()["DailyApiRequests"]
    http.get("/sobjects/Account/describe")
    after = http.get("/limits").json()["DailyApiRequests"]
    assert after["Remaining"] == before["Remaining"] - 1
    assert http.get("/sobjects").headers["Sforce-Limit-Info"].startswith("api-usage=2/")
    sandbox.api_limit = 3
    assert http.get("/sobjects").status_code == 200
    refused = http.get("/sobjects")
    assert refused.status_code == 403
    assert refused.json() == [
        {"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}
    ]


def test_versions_describe_and_delay(sandbox: SalesforceSandbox, http: httpx.Client) -> None:
    versions = httpx.get(f"{sandbox.url}/services/data/", verify=sandbox.ssl_context()).json()
    assert {"label": "Winter '24", "url": "/services/data/v59.0", "version": "59.0"} in versions
    describe = http.get("/sobjects/Account/describe/").json()
    assert describe["name"] == "Account" and describe["keyPrefix"] == "001"
    fields = {f["name"]: f for f in describe["fields"]}
    assert fields["External_Id__c"]["externalId"] is True and fields["External_Id__c"]["unique"]
    assert fields["Name"]["nillable"] is False and fields["Name"]["type"] == "string"
    assert fields["BillingPostalCode"]["nillable"] is True
    sandbox.delay = 0.3
    started = time.monotonic()
    with ThreadPoolExecutor(10) as pool:
        codes = list(pool.map(lambda _: http.get("/limits").status_code, range(10)))
    elapsed = time.monotonic() - started
    assert codes == [200] * 10
    assert 0.3 <= elapsed < 1.5  # waits overlap: the delay holds no thread


# ---------------------------------------------------------------- concurrency
def test_many_concurrent_connections(sandbox: SalesforceSandbox) -> None:
    token = sandbox.token()

    def create(i: int) -> int:
        with httpx.Client(verify=sandbox.ssl_context(), timeout=20) as client:
            reply = client.post(
                f"{sandbox.url}/services/data/v{V}/sobjects/Account/",
                json={"Name": f"Parallel {i}", "External_Id__c": f"P-{i}"},
                headers={"Authorization": f"Bearer {token}"},
            )
            return reply.status_code

    with ThreadPoolExecutor(40) as pool:
        codes = list(pool.map(create, range(80)))
    assert codes == [201] * 80
    assert sorted(r["External_Id__c"] for r in sandbox.records("Account")) == sorted(
        f"P-{i}" for i in range(80)
    )


def test_answers_in_about_a_millisecond_on_a_kept_alive_connection(
    sandbox: SalesforceSandbox, sf: Salesforce
) -> None:
    sf.Account.create({"Name": "Warm"})
    took = []
    for i in range(100):
        started = time.perf_counter()
        sf.Account.update(sandbox.records("Account")[0]["Id"], {"Phone": str(i)})
        took.append(time.perf_counter() - started)
    # without TCP_NODELAY every answer waits ~40 ms for a delayed ACK; the median is
    # that wait or more however loaded the machine is, and a few ms without it
    assert statistics.median(took) < 0.025, f"median update {statistics.median(took):.3f} s"
    assert sandbox.records("Account")[0]["Phone"] == "99"


def test_seed_many_makes_50000_accounts(sandbox: SalesforceSandbox, sf: Salesforce) -> None:
    made = sandbox.seed_many("Account", 50_000)
    assert len(set(made)) == 50_000 and all(i.startswith("001") for i in made[:100])
    assert sf.query("SELECT COUNT() FROM Account")["totalSize"] == 50_000
    found = sf.query("SELECT Id, Name FROM Account WHERE External_Id__c = 'ACC-49999'")
    assert [r["Name"] for r in found["records"]] == ["Account 49999"]
    upsert = sf.Account.upsert("External_Id__c/ACC-00007", {"Phone": "7"}, raw_response=True)
    assert upsert.status_code == 200 and upsert.json()["id"] == made[6]


# ----------------------------------------------------------------------- bulk
def test_bulk2_insert_and_upsert_with_result_csvs(
    sandbox: SalesforceSandbox, sf: Salesforce
) -> None:
    inserted = sf.bulk2.Account.insert(
        records=[
            {"Name": "Bulk One", "External_Id__c": "B-1", "BillingPostalCode": "10115"},
            {"Name": "", "External_Id__c": "B-2", "BillingPostalCode": "20095"},
            {"Name": "Bulk Three", "External_Id__c": "B-3", "BillingPostalCode": "@@@"},
        ],
        wait=0,
    )
    assert len(inserted) == 1
    assert inserted[0]["numberRecordsProcessed"] == 3 and inserted[0]["numberRecordsFailed"] == 2
    job_id = inserted[0]["job_id"]
    ok = list(csv.DictReader(io.StringIO(sf.bulk2.Account.get_successful_records(job_id))))
    assert [(r["sf__Created"], r["Name"], r["External_Id__c"]) for r in ok] == [
        ("true", "Bulk One", "B-1")
    ]
    stored = sandbox.record(ok[0]["sf__Id"])
    assert stored is not None and stored["Name"] == "Bulk One"
    failed_text = sf.bulk2.Account.get_failed_records(job_id)
    assert failed_text.splitlines()[0].startswith('"sf__Id","sf__Error",')
    failed = list(csv.DictReader(io.StringIO(failed_text)))
    assert [(r["sf__Id"], r["sf__Error"], r["External_Id__c"]) for r in failed] == [
        ("", "REQUIRED_FIELD_MISSING:Required fields are missing: [Name]:Name --", "B-2"),
        (
            "",
            "FIELD_CUSTOM_VALIDATION_EXCEPTION:Billing postal code is not valid.:BillingPostalCode --",
            "B-3",
        ),
    ]
    upserted = sf.bulk2.Account.upsert(
        records=[
            {"Name": "Bulk One v2", "External_Id__c": "B-1"},
            {"Name": "Bulk Four", "External_Id__c": "B-4"},
        ],
        external_id_field="External_Id__c",
        wait=0,
    )
    assert upserted[0]["numberRecordsProcessed"] == 2 and upserted[0]["numberRecordsFailed"] == 0
    results = sf.bulk2.Account.get_all_ingest_records(upserted[0]["job_id"])
    created = {r["External_Id__c"]: r["sf__Created"] for r in results["successfulRecords"]}
    assert created == {"B-1": "false", "B-4": "true"}
    assert results["failedRecords"] == [] and results["unprocessedRecords"] == []
    assert sorted((r["External_Id__c"], r["Name"]) for r in sandbox.records("Account")) == [
        ("B-1", "Bulk One v2"),
        ("B-4", "Bulk Four"),
    ]
    ids = [{"Id": r["Id"]} for r in sandbox.records("Account")]
    deleted = sf.bulk2.Account.delete(records=ids, wait=0)
    assert deleted[0]["numberRecordsProcessed"] == 2 and sandbox.records("Account") == []


def test_bulk2_query_pages_with_locators(sandbox: SalesforceSandbox, sf: Salesforce) -> None:
    sandbox.seed_many("Account", 2500)
    pages = list(
        sf.bulk2.Account.query(
            "SELECT Id, Name, External_Id__c FROM Account WHERE Name LIKE 'Account%'",
            max_records=1000,
            wait=0,
        )
    )
    assert len(pages) == 3
    rows = [row for page in pages for row in csv.DictReader(io.StringIO(page))]
    assert len(rows) == 2500 and rows[0]["External_Id__c"] == "ACC-00001"
    assert pages[0].splitlines()[0] == '"Id","Name","External_Id__c"'
    results = [c for c in sandbox.calls if c.path.endswith("/results")]
    assert len(results) == 3 and all(c.status == 200 for c in results)


def test_bulk2_job_lifecycle_over_raw_http(sandbox: SalesforceSandbox, http: httpx.Client) -> None:
    sandbox.bulk_delay = 0.3
    job = http.post(
        "/jobs/ingest/",
        json={"object": "Contact", "operation": "insert", "contentType": "CSV", "lineEnding": "LF"},
    )
    assert job.status_code == 200
    info = job.json()
    assert info["state"] == "Open" and info["id"].startswith("750")
    assert info["contentUrl"] == f"services/data/v{V}/jobs/ingest/{info['id']}/batches"
    data = "LastName,Email\nCurie,marie@example.com\nBohr,not-an-email\n"
    put = http.put(
        f"/jobs/ingest/{info['id']}/batches/", content=data, headers={"Content-Type": "text/csv"}
    )
    assert put.status_code == 201
    again = http.put(f"/jobs/ingest/{info['id']}/batches/", content=data)
    assert again.status_code == 400 and again.json()[0]["errorCode"] == "BULK_API_ERROR"
    closed = http.patch(f"/jobs/ingest/{info['id']}/", json={"state": "UploadComplete"})
    assert closed.json()["state"] == "UploadComplete"
    assert http.get(f"/jobs/ingest/{info['id']}/").json()["state"] == "InProgress"
    time.sleep(0.35)
    done = http.get(f"/jobs/ingest/{info['id']}/").json()
    assert (done["state"], done["numberRecordsProcessed"], done["numberRecordsFailed"]) == (
        "JobComplete",
        2,
        1,
    )
    failed = http.get(f"/jobs/ingest/{info['id']}/failedResults/").text
    assert "INVALID_EMAIL_ADDRESS:Email: invalid email address: not-an-email:Email --" in failed
    assert http.delete(f"/jobs/ingest/{info['id']}/").status_code == 204
    assert http.get(f"/jobs/ingest/{info['id']}/").status_code == 404

    aborted = http.post("/jobs/ingest", json={"object": "Account", "operation": "insert"}).json()
    http.put(f"/jobs/ingest/{aborted['id']}/batches", content="Name\nNever\n")
    assert (
        http.patch(f"/jobs/ingest/{aborted['id']}", json={"state": "Aborted"}).json()["state"]
        == "Aborted"
    )
    assert http.get(f"/jobs/ingest/{aborted['id']}/unprocessedrecords/").text == "Name\nNever\n"
    assert [r["LastName"] for r in sandbox.records("Contact")] == ["Curie"]
    assert sandbox.records("Account") == []

    sandbox.bulk_delay = 0
    bad_column = http.post("/jobs/ingest", json={"object": "Account", "operation": "insert"}).json()
    http.put(f"/jobs/ingest/{bad_column['id']}/batches", content="Name,Nope__c\nX,1\n")
    http.patch(f"/jobs/ingest/{bad_column['id']}", json={"state": "UploadComplete"})
    failed_job = http.get(f"/jobs/ingest/{bad_column['id']}").json()
    assert failed_job["state"] == "Failed"
    assert failed_job["errorMessage"] == "InvalidBatch : Field name not found : Nope__c"
    no_ext = http.post("/jobs/ingest", json={"object": "Account", "operation": "upsert"})
    assert no_ext.status_code == 400 and no_ext.json()[0]["errorCode"] == "INVALIDJOB"


# ---------------------------------------------------------------- controls
def test_reset_forgets_records_calls_and_failures(
    sandbox: SalesforceSandbox, sf: Salesforce
) -> None:
    sandbox.seed_many("Contact", 5)
    sandbox.fail_next(3)
    sandbox.delay = 1.0
    sandbox.reset()
    assert sandbox.records("Contact") == [] and sandbox.calls == [] and sandbox.delay == 0
    assert sf.query("SELECT COUNT() FROM Contact")["totalSize"] == 0
    assert sandbox.calls == [("GET", f"/services/data/v{V}/query/", 200)]


def test_runs_alone_from_the_command_line() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.sandbox.salesforce", "--json", "--seed-accounts", "25"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        stdout = proc.stdout
        assert stdout is not None
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(stdout.readline()))
        reader.start()
        reader.join(20)
        assert line, "the sandbox printed nothing within 20 s"
        info = json.loads(line[0])
        assert info["url"].startswith("https://127.0.0.1:")
        reply = httpx.get(
            f"{info['url']}/services/data/v59.0/query/",
            params={"q": "SELECT COUNT() FROM Account"},
            headers={"Authorization": f"Bearer {info['access_token']}"},
            verify=ssl.create_default_context(cafile=info["ca_path"]),
        )
        assert reply.json()["totalSize"] == 25
        assert Path(info["ca_path"]).is_file()
        for key in ("username", "password", "security_token", "client_id", "client_secret"):
            assert info[key]
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()
    assert proc.returncode == 0
    assert not Path(info["ca_path"]).exists()  # its files go when it stops
