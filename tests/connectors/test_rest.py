"""The REST connector against the REST sandbox over real HTTP on loopback: the contract,
then what only REST has: OAuth2 tokens and their refresh, the four pagination styles,
Retry-After, the second change's key, redirects and spellings outside the allow-list."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from connectors.rest import RestClient, RestConnector
from hub.connections import ConnectionConfig, Connectors
from hub.errors import BusinessError, PolicyViolation, TransientError
from hub.settings import Settings
from tests.connectors.conftest import Outside
from tests.connectors.contract import Contract, context
from tests.sandbox.rest_api import RestSandbox

CANARY = "canary-rest-Zq81!"


@pytest.fixture(scope="module")
def sandbox() -> Iterator[RestSandbox]:
    with RestSandbox(api_key=CANARY, items=45) as server:
        yield server


@pytest.fixture(autouse=True)
def clean(sandbox: RestSandbox) -> None:
    sandbox.reset()
    sandbox.seed_items(45)


class Driver:
    canary = CANARY
    variable = "CRM_API_KEY"

    def __init__(self, sandbox: RestSandbox, outside: Outside) -> None:
        self.sandbox, self.outside_server = sandbox, outside

    def config(self, **changes: Any) -> dict[str, Any]:
        return {
            "kind": "rest",
            "url": self.sandbox.url,
            "auth": {"kind": "api_key", "key": f"env:{self.variable}"},
            "options": {"check_path": "/key/items/link"},
            **changes,
        }

    def create(self, client: RestClient, ref: str) -> Any:
        return client.post("/key/orders", json={"ref": ref, "total": 12})["id"]

    def effects(self, ref: str) -> int:
        return self.sandbox.effects(ref)

    def fail_transient(self, times: int) -> None:
        self.sandbox.fail_next(times, 503)

    refusal = "The body must be a JSON object"

    def refused(self, client: RestClient) -> None:
        client.post("/key/orders", json=["not", "an", "object"])

    def outside(self, client: RestClient) -> None:
        client.get(f"{self.outside_server.url}/steal")

    def sent_outside(self) -> int:
        return len(self.outside_server.hits)


class TestRestContract(Contract):
    @pytest.fixture
    def driver(
        self, sandbox: RestSandbox, outside: Outside, monkeypatch: pytest.MonkeyPatch
    ) -> Driver:
        monkeypatch.setenv(Driver.variable, CANARY)
        outside.hits.clear()
        return Driver(sandbox, outside)


def rest(sandbox: RestSandbox, **changes: Any) -> Connectors:
    config = {"name": "crm", "kind": "rest", "url": sandbox.url, **changes}
    return Connectors(Settings(), configs={"crm": ConnectionConfig.model_validate(config)})


@pytest.fixture
def crm(sandbox: RestSandbox) -> Iterator[RestClient]:
    connectors = rest(sandbox, backoff=0.01)
    yield connectors.connector("crm").bind(context())
    connectors.shutdown()


# ------------------------------------------------------------------ keys
def test_each_change_of_a_step_gets_its_own_key_the_same_on_every_attempt(
    sandbox: RestSandbox, crm: RestClient
) -> None:
    crm.post("/orders", json={"ref": "a"})
    crm.post("/orders", json={"ref": "b"})
    crm.get("/orders/1")
    connectors = rest(sandbox)
    again = connectors.connector("crm").bind(context())  # the next attempt of the step
    again.post("/orders", json={"ref": "a"})
    again.post("/orders", json={"ref": "b"})
    connectors.shutdown()

    assert sandbox.keys == {"a": ["run-1:step"], "b": ["run-1:step-2"]}
    assert (sandbox.effects("a"), sandbox.effects("b")) == (1, 1)
    sent = [c.idempotency_key for c in sandbox.calls]
    assert sent == ["run-1:step", "run-1:step-2", None, "run-1:step", "run-1:step-2"]


def test_a_key_given_by_the_flow_wins_and_a_reused_key_with_another_body_is_refused(
    sandbox: RestSandbox, crm: RestClient
) -> None:
    crm.post("/orders", json={"ref": "x"}, idempotency_key="order-x")
    with pytest.raises(BusinessError, match="422: This Idempotency-Key was used with a differ"):
        crm.post("/orders", json={"ref": "y"}, idempotency_key="order-x")


# ------------------------------------------------------------- retries
def test_retry_after_is_honoured_within_the_call(sandbox: RestSandbox, crm: RestClient) -> None:
    sandbox.throttle_next(1, retry_after="1")
    started = time.monotonic()
    assert crm.get("/orders/0", ok=(404,)) is not None
    assert 0.9 <= time.monotonic() - started < 5
    assert [c.status for c in sandbox.calls] == [429, 404]


def test_a_long_retry_after_hands_the_step_back_to_the_engine(sandbox: RestSandbox) -> None:
    connectors = rest(sandbox, max_wait=2)
    client = connectors.connector("crm").bind(context())
    sandbox.throttle_next(1, retry_after="120")
    started = time.monotonic()
    with pytest.raises(TransientError, match="answered 429") as caught:
        client.get("/items/link")
    assert caught.value.retry_after == 120
    assert time.monotonic() - started < 1  # no worker held for two minutes
    connectors.shutdown()


def test_a_timeout_is_transient_after_the_retries(sandbox: RestSandbox) -> None:
    connectors = rest(sandbox, timeout=0.3, retries=1, backoff=0.01)
    client = connectors.connector("crm").bind(context())
    sandbox.delay = 1.0
    try:
        with pytest.raises(TransientError, match="timed out"):
            client.get("/items/link")
    finally:
        sandbox.delay = 0
        connectors.shutdown()
    # the server finishes both calls the client gave up on (and logs them) a little later
    deadline = time.monotonic() + 5
    while len([c for c in sandbox.calls if c.path == "/items/link"]) < 2:
        assert time.monotonic() < deadline, sandbox.calls
        time.sleep(0.05)


# ----------------------------------------------------------------- auth
def test_oauth2_fetches_a_token_keeps_it_and_fetches_a_new_one_after_a_401(
    sandbox: RestSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CRM_SECRET", sandbox.client_secret)
    auth = {"kind": "oauth2", "token_url": f"{sandbox.url}/oauth/token",
            "client_id": sandbox.client_id, "client_secret": "env:CRM_SECRET"}  # fmt: skip
    connectors = rest(sandbox, auth=auth)
    made = connectors.connector("crm")
    client = made.bind(context())
    assert len(client.get("/bearer/items/link")) == 10
    assert len(client.get("/bearer/items/link", params={"page": 2})) == 10
    assert sandbox.token_requests == 1

    sandbox.expire_tokens()
    assert len(client.get("/bearer/items/link")) == 10
    assert sandbox.token_requests == 2
    statuses = [c.status for c in sandbox.calls if c.path == "/bearer/items/link"]
    assert statuses == [200, 200, 401, 200]
    connectors.shutdown()


def test_a_wrong_client_secret_is_a_business_error_naming_the_fix(
    sandbox: RestSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CRM_SECRET", "wrong")
    auth = {"kind": "oauth2", "token_url": f"{sandbox.url}/oauth/token",
            "client_id": sandbox.client_id, "client_secret": "env:CRM_SECRET"}  # fmt: skip
    connectors = rest(sandbox, auth=auth)
    with pytest.raises(BusinessError, match=r"token endpoint answered 401.*check client_id"):
        connectors.connector("crm").check()
    connectors.shutdown()


# ----------------------------------------------------------- pagination
@pytest.mark.parametrize(
    ("path", "style", "requests"),
    [("/items/link", "link", 5), ("/items/cursor", "cursor", 5),
     ("/items/offset", "offset", 5), ("/items/next", "next", 5)],
)  # fmt: skip
def test_every_pagination_style_walks_to_the_end(
    sandbox: RestSandbox, crm: RestClient, path: str, style: str, requests: int
) -> None:
    params = {"per_page": 10} if style == "link" else {"limit": 10} if style == "cursor" else {}
    if style == "next":
        params = {"page_size": 10}
    items = list(crm.paginate(path, style=style, params=params, limit=10))
    assert [i["id"] for i in items] == [i["id"] for i in sandbox.items()]
    assert len([c for c in sandbox.calls if c.path == path]) == requests


# --------------------------------------------------------------- egress
def test_a_redirect_outside_the_allow_list_is_refused_and_nothing_reaches_it(
    sandbox: RestSandbox, crm: RestClient, outside: Outside
) -> None:
    outside.hits.clear()
    with pytest.raises(PolicyViolation, match="may not reach"):
        crm.get("/redirect", params={"to": f"{outside.url}/steal"})
    assert outside.hits == []


@pytest.mark.parametrize(
    "spelling",
    ["localhost", "127.1", "2130706433", "0x7f000001", "[::1]", "0.0.0.0", "127.0.0.2"],
)
def test_other_spellings_of_this_machine_are_refused(
    sandbox: RestSandbox, crm: RestClient, spelling: str
) -> None:
    port = sandbox.url.rsplit(":", 1)[1]
    with pytest.raises(PolicyViolation):
        crm.get(f"http://{spelling}:{port}/items/link")
    assert [c for c in sandbox.calls] == []


def test_a_name_in_the_allow_list_that_resolves_to_loopback_is_refused(
    sandbox: RestSandbox,
) -> None:
    port = sandbox.url.rsplit(":", 1)[1]
    connectors = rest(sandbox, url=f"http://localhost:{port}")
    with pytest.raises(PolicyViolation, match=r"resolves to 127\.0\.0\.1"):
        connectors.connector("crm").bind(context()).get("/items/link")
    assert sandbox.calls == []
    connectors.shutdown()


def test_file_and_other_schemes_are_refused(crm: RestClient) -> None:
    for url in ("file:///etc/passwd", "ftp://127.0.0.1/x", "gopher://127.0.0.1/"):
        with pytest.raises((PolicyViolation, BusinessError)):
            crm.get(url)


# ------------------------------------------------------------ rate limit
def test_the_rate_limit_spaces_calls_in_one_process(sandbox: RestSandbox) -> None:
    connectors = rest(sandbox, rate_limit="20/s")
    client = connectors.connector("crm").bind(context())
    started = time.monotonic()
    for _ in range(30):  # a burst of 20, then 10 more at 20 a second
        client.get("/items/link")
    took = time.monotonic() - started
    assert 0.4 <= took < 3, took
    connectors.shutdown()


def test_the_connector_is_kept_per_process_and_built_anew_when_its_config_changes(
    sandbox: RestSandbox,
) -> None:
    connectors = rest(sandbox)
    first = connectors.connector("crm")
    assert connectors.connector("crm") is first
    assert isinstance(first, RestConnector)
    changed = ConnectionConfig(name="crm", kind="rest", url=sandbox.url, timeout=5)
    connectors._configs = {"crm": changed}
    assert connectors.connector("crm") is not first
    assert first.client.is_closed
    connectors.shutdown()
