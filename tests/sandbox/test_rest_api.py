"""The generic REST sandbox, driven with raw httpx: every documented behaviour, end to end."""

from __future__ import annotations

import base64
import re
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.sandbox.rest_api import RestSandbox

ITEMS = 47
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def server() -> Iterator[RestSandbox]:
    with RestSandbox(items=ITEMS) as sandbox:
        yield sandbox


@pytest.fixture(scope="module")
def http(server: RestSandbox) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=5) as client:
        yield client


@pytest.fixture
def sandbox(server: RestSandbox) -> RestSandbox:
    """The module's sandbox, reset for each test."""
    server.reset()
    return server


@pytest.fixture
def client(sandbox: RestSandbox, http: httpx.Client) -> httpx.Client:
    return http


def get_token(client: httpx.Client, sandbox: RestSandbox) -> str:
    response = client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(sandbox.client_id, sandbox.client_secret),
    )
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def page_number(url: str) -> int:
    match = re.search(r"[?&]page=(\d+)", url)
    assert match is not None, url
    return int(match[1])


# ------------------------------------------------------------------ authentication
def test_open_paths_need_nothing_and_each_prefix_needs_its_own_scheme(
    client: httpx.Client, sandbox: RestSandbox
) -> None:
    assert client.get("/items/offset").json()["total"] == ITEMS

    missing = client.get("/key/items/offset")
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"].startswith("ApiKey ")
    assert client.get("/key/items/offset", headers={"X-API-Key": "wrong"}).status_code == 401
    good = client.get("/key/items/offset", headers={"X-API-Key": sandbox.api_key})
    assert good.status_code == 200 and good.json()["total"] == ITEMS

    wrong = client.get("/basic/items/offset", auth=(sandbox.username, "wrong"))
    assert wrong.status_code == 401
    assert wrong.headers["www-authenticate"] == 'Basic realm="sandbox", charset="UTF-8"'
    other_scheme = client.get("/basic/items/offset", headers={"X-API-Key": sandbox.api_key})
    assert other_scheme.status_code == 401
    assert client.get("/basic/items/offset", auth=(sandbox.username, sandbox.password)).is_success

    no_token = client.get("/bearer/items/offset")
    assert no_token.status_code == 401
    assert no_token.headers["www-authenticate"] == 'Bearer realm="sandbox"'
    bad_token = client.get("/bearer/items/offset", headers={"Authorization": "Bearer nope"})
    assert bad_token.status_code == 401
    assert 'error="invalid_token"' in bad_token.headers["www-authenticate"]
    static = {"Authorization": f"Bearer {sandbox.bearer_token}"}
    assert client.get("/bearer/items/offset", headers=static).json()["total"] == ITEMS
    assert [c.status for c in sandbox.calls] == [200, 401, 401, 200, 401, 401, 200, 401, 401, 200]


def test_token_endpoint_takes_basic_or_body_client_auth_and_refuses_the_rest(
    client: httpx.Client, sandbox: RestSandbox
) -> None:
    grant = {"grant_type": "client_credentials", "scope": "orders:write"}
    by_header = client.post(
        "/oauth/token", data=grant, auth=(sandbox.client_id, sandbox.client_secret)
    )
    assert by_header.status_code == 200
    answer = by_header.json()
    assert answer["token_type"] == "Bearer"
    assert answer["expires_in"] == 3600
    assert answer["scope"] == "orders:write"
    assert by_header.headers["cache-control"] == "no-store"
    in_body = {**grant, "client_id": sandbox.client_id, "client_secret": sandbox.client_secret}
    by_body = client.post("/oauth/token", data=in_body)
    assert by_body.status_code == 200
    assert by_body.json()["access_token"] != answer["access_token"]
    for token in (answer["access_token"], by_body.json()["access_token"]):
        created = client.post(
            "/bearer/orders", json={"ref": token[:8]}, headers={"Authorization": f"Bearer {token}"}
        )
        assert created.status_code == 201

    def refused(status: int, error: str, **kwargs: Any) -> httpx.Response:
        response = client.post("/oauth/token", **kwargs)
        assert (response.status_code, response.json()["error"]) == (status, error), response.text
        return response

    bad_secret = refused(401, "invalid_client", data=grant, auth=(sandbox.client_id, "nope"))
    assert bad_secret.headers["www-authenticate"].startswith("Basic ")
    refused(401, "invalid_client", data={**in_body, "client_secret": "nope"})
    refused(401, "invalid_client", data=grant)
    both = {"data": in_body, "auth": (sandbox.client_id, sandbox.client_secret)}
    refused(400, "invalid_request", **both)
    refused(400, "unsupported_grant_type", data={**in_body, "grant_type": "password"})
    refused(400, "invalid_request", data={k: v for k, v in in_body.items() if k != "grant_type"})
    refused(400, "invalid_request", json=in_body)
    assert sandbox.token_requests == 9


def test_an_expired_token_answers_invalid_token_and_a_new_one_works(
    client: httpx.Client, sandbox: RestSandbox
) -> None:
    sandbox.token_seconds = 0.3
    token = get_token(client, sandbox)
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/bearer/items/cursor", headers=headers).status_code == 200
    time.sleep(0.4)
    expired = client.get("/bearer/items/cursor", headers=headers)
    assert expired.status_code == 401
    challenge = expired.headers["www-authenticate"]
    assert challenge.startswith("Bearer ") and 'error="invalid_token"' in challenge
    assert "expired" in challenge

    fresh = {"Authorization": f"Bearer {get_token(client, sandbox)}"}
    assert client.get("/bearer/items/cursor", headers=fresh).status_code == 200
    assert sandbox.token_requests == 2

    sandbox.token_seconds = 3600
    lasting = {"Authorization": f"Bearer {get_token(client, sandbox)}"}
    assert client.get("/bearer/items/cursor", headers=lasting).status_code == 200
    sandbox.expire_tokens()
    assert client.get("/bearer/items/cursor", headers=lasting).status_code == 401


# -------------------------------------------------------------------------- orders
def test_an_idempotency_key_replays_the_first_response_without_a_second_effect(
    client: httpx.Client, sandbox: RestSandbox
) -> None:
    body = {"ref": "run-1/step-1", "sku": "A-1", "qty": 2}
    first = client.post("/orders", json=body, headers={"Idempotency-Key": "k-1"})
    assert first.status_code == 201
    assert first.json()["qty"] == 2 and first.headers["location"] == f"/orders/{first.json()['id']}"
    assert "idempotent-replayed" not in first.headers
    again = client.post("/orders", json=body, headers={"Idempotency-Key": "k-1"})
    assert again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert sandbox.effects("run-1/step-1") == 1
    assert len(sandbox.orders()) == 1
    assert sandbox.keys == {"run-1/step-1": ["k-1"]}

    changed = client.post("/orders", json={**body, "qty": 3}, headers={"Idempotency-Key": "k-1"})
    assert changed.status_code == 422
    assert changed.json()["error"] == "idempotency_key_mismatch"
    assert sandbox.effects("run-1/step-1") == 1

    for _ in range(2):
        assert client.post("/orders", json={"ref": "no-key"}).status_code == 201
    assert sandbox.effects("no-key") == 2
    assert [c.idempotency_key for c in sandbox.calls] == ["k-1", "k-1", "k-1", None, None]
    bad = client.post("/orders", content=b"[1, 2]", headers={"Content-Type": "application/json"})
    assert bad.status_code == 400


def test_orders_can_be_read_patched_and_deleted(client: httpx.Client, sandbox: RestSandbox) -> None:
    order = client.post("/orders", json={"ref": "r", "qty": 1}).json()
    path = f"/orders/{order['id']}"
    assert client.get(path).json() == order
    patched = client.patch(path, json={"qty": 5, "id": 999})
    assert patched.status_code == 200
    assert patched.json() == {**order, "qty": 5}
    assert sandbox.orders() == [patched.json()]
    assert client.delete(path).status_code == 204
    assert client.get(path).status_code == 404
    assert client.patch(path, json={}).status_code == 404
    assert sandbox.orders() == []
    assert sandbox.effects("r") == 1


def test_fail_next_changes_nothing_and_a_retry_with_the_same_key_creates_once(
    client: httpx.Client, sandbox: RestSandbox
) -> None:
    sandbox.fail_next(2)
    body, key = {"ref": "run-2/step-1"}, {"Idempotency-Key": "k-2"}
    assert [client.post("/orders", json=body, headers=key).status_code for _ in range(2)] == [
        503,
        503,
    ]
    assert sandbox.effects("run-2/step-1") == 0
    assert sandbox.orders() == [] and sandbox.keys == {}
    created = client.post("/orders", json=body, headers=key)
    assert created.status_code == 201
    assert client.post("/orders", json=body, headers=key).json() == created.json()
    assert sandbox.effects("run-2/step-1") == 1

    sandbox.fail_next(2, status=500, path="/orders")
    assert client.get("/items/offset").status_code == 200  # another path: not counted
    assert client.get(f"/orders/{created.json()['id']}").status_code == 500  # below the path
    assert client.post("/orders", json={"ref": "x"}).status_code == 500
    assert client.post("/orders", json={"ref": "x"}).status_code == 201
    assert sandbox.effects("x") == 1


# ---------------------------------------------------------------------- pagination
def test_link_header_pagination_walks_exactly_the_seeded_items(
    client: httpx.Client, sandbox: RestSandbox
) -> None:
    seen: list[dict[str, Any]] = []
    url: str | None = "/items/link?per_page=10"
    requests = 0
    while url is not None:
        response = client.get(url)
        assert response.status_code == 200
        requests += 1
        seen += response.json()
        url = response.links.get("next", {}).get("url")
    assert seen == sandbox.items() and len(seen) == ITEMS
    assert requests == 5

    middle = client.get("/items/link", params={"per_page": 10, "page": 3})
    assert middle.headers["x-total-count"] == str(ITEMS)
    pages = {rel: page_number(link["url"]) for rel, link in middle.links.items()}
    assert pages == {"first": 1, "prev": 2, "next": 4, "last": 5}
    assert all("per_page=10" in link["url"] for link in middle.links.values())
    first = client.get("/items/link", params={"per_page": 10})
    assert set(first.links) == {"next", "last"}
    last = client.get("/items/link", params={"per_page": 10, "page": 5})
    assert [item["id"] for item in last.json()] == list(range(41, 48))
    assert set(last.links) == {"first", "prev"}
    assert client.get("/items/link", params={"per_page": 101}).status_code == 400
    assert client.get("/items/link", params={"page": 0}).status_code == 400


def test_cursor_pagination_walks_exactly_the_seeded_items(
    client: httpx.Client, sandbox: RestSandbox
) -> None:
    sandbox.seed_items(40)  # a multiple of the page size: no empty last page
    seen: list[dict[str, Any]] = []
    cursors: list[str | None] = []
    params: dict[str, Any] = {"limit": 10}
    while True:
        body = client.get("/items/cursor", params=params).json()
        seen += body["data"]
        cursors.append(body["next_cursor"])
        if body["next_cursor"] is None:
            break
        params["cursor"] = body["next_cursor"]
    assert seen == sandbox.items() and len(seen) == 40
    assert len(cursors) == 4 and cursors[-1] is None and len(set(cursors)) == 4
    assert client.get("/items/cursor", params={"cursor": "not-a-cursor"}).status_code == 400


def test_offset_pagination_walks_exactly_the_seeded_items(
    client: httpx.Client, sandbox: RestSandbox
) -> None:
    seen: list[dict[str, Any]] = []
    offset = 0
    while True:
        body = client.get("/items/offset", params={"offset": offset, "limit": 20}).json()
        assert (body["total"], body["offset"], body["limit"]) == (ITEMS, offset, 20)
        seen += body["data"]
        offset += body["limit"]
        if offset >= body["total"]:
            break
    assert seen == sandbox.items() and len(seen) == ITEMS
    assert client.get("/items/offset", params={"offset": ITEMS}).json()["data"] == []
    assert client.get("/items/offset", params={"limit": "ten"}).status_code == 400


def test_next_url_pagination_walks_exactly_the_seeded_items(
    client: httpx.Client, sandbox: RestSandbox
) -> None:
    seen: list[dict[str, Any]] = []
    nexts: list[str] = []
    url: str | None = "/items/next?page_size=15"
    while url is not None:
        body = client.get(url).json()
        assert body["count"] == ITEMS
        seen += body["results"]
        url = body["next"]
        if url is not None:
            nexts.append(url)
    assert seen == sandbox.items() and len(seen) == ITEMS
    assert [page_number(u) for u in nexts] == [2, 3, 4]
    assert all(u.startswith(f"{sandbox.url}/items/next?") and "page_size=15" in u for u in nexts)
    second = client.get(nexts[0]).json()
    assert page_number(second["previous"]) == 1
    assert client.get("/items/next", params={"page": 99}).status_code == 404


# -------------------------------------------------------------------- misbehaviour
def test_throttle_next_answers_429_with_each_form_of_retry_after(
    client: httpx.Client, sandbox: RestSandbox
) -> None:
    sandbox.throttle_next(2, retry_after="2")
    for _ in range(2):
        throttled = client.post("/orders", json={"ref": "t"})
        assert throttled.status_code == 429
        assert throttled.headers["retry-after"] == "2"
    assert sandbox.effects("t") == 0
    assert client.post("/orders", json={"ref": "t"}).status_code == 201

    when = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
    sandbox.throttle_next(1, retry_after=when)
    dated = client.get("/items/offset")
    assert dated.headers["retry-after"] == "Tue, 01 Jan 2030 12:00:00 GMT"
    assert parsedate_to_datetime(dated.headers["retry-after"]) == when
    sandbox.throttle_next(1, retry_after=30)
    assert client.get("/items/offset").headers["retry-after"] == "30"
    sandbox.throttle_next(1, retry_after=None)
    bare = client.get("/items/offset")
    assert bare.status_code == 429 and "retry-after" not in bare.headers
    sandbox.throttle_next(1, path="/items/cursor")
    assert client.get("/items/offset").status_code == 200
    assert client.get("/items/cursor").status_code == 429
    assert client.get("/items/cursor").status_code == 200


def test_delay_makes_a_client_time_out(client: httpx.Client, sandbox: RestSandbox) -> None:
    sandbox.delay = 0.5
    with pytest.raises(httpx.ReadTimeout):
        client.get("/echo", timeout=0.1)
    sandbox.delay = 0
    started = time.monotonic()
    assert client.get("/echo", timeout=1).status_code == 200
    assert time.monotonic() - started < 0.4


def test_many_concurrent_connections_are_served_at_once(
    client: httpx.Client, sandbox: RestSandbox
) -> None:
    sandbox.delay = 0.3

    def create(n: int) -> int:
        headers = {"Idempotency-Key": f"key-{n % 10}"}
        body = {"ref": f"ref-{n % 5}"}
        return client.post("/orders", json=body, headers=headers, timeout=10).status_code

    started = time.monotonic()
    with ThreadPoolExecutor(40) as pool:
        statuses = list(pool.map(create, range(40)))
    elapsed = time.monotonic() - started
    assert statuses == [201] * 40
    assert elapsed < 3, f"40 requests of 0.3 s took {elapsed:.1f} s: not served concurrently"
    assert len(sandbox.orders()) == 10
    assert [sandbox.effects(f"ref-{n}") for n in range(5)] == [2] * 5


def test_answers_on_a_kept_alive_connection_come_without_delayed_acks(
    client: httpx.Client,
) -> None:
    client.get("/echo")
    took = []
    for n in range(50):
        started = time.monotonic()
        assert client.post("/orders", json={"ref": f"fast-{n}"}).status_code == 201
        took.append(time.monotonic() - started)
    # a delayed ACK holds each answer ~40 ms: the median shows it whatever the load
    median = statistics.median(took)
    assert median < 0.025, f"median request {median:.3f} s (TCP_NODELAY missing?)"


def test_stop_does_not_wait_for_a_slow_answer() -> None:
    slow = RestSandbox(items=1).start()
    slow.delay = 30
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(httpx.get, f"{slow.url}/echo", timeout=10)
        time.sleep(0.2)
        started = time.monotonic()
        slow.stop()
        assert time.monotonic() - started < 3
        assert pending.result().status_code == 200  # answered, not dropped


def test_redirects_point_anywhere_even_another_port(
    client: httpx.Client, sandbox: RestSandbox
) -> None:
    with RestSandbox(items=3) as other:
        target = f"{other.url}/items/offset"
        moved = client.get("/redirect", params={"to": target})
        assert moved.status_code == 302 and moved.headers["location"] == target
        followed = client.get("/redirect", params={"to": target}, follow_redirects=True)
        assert followed.json()["total"] == 3
        assert [c.path for c in other.calls] == ["/items/offset"]
        temporary = client.get("/redirect", params={"to": target, "status": "307"})
        assert temporary.status_code == 307

        sandbox.redirect("/orders/7", f"{other.url}/echo", status=308)
        assert client.get("/orders/7").headers["location"] == f"{other.url}/echo"
        assert client.get("/orders/7").status_code == 308
        sandbox.redirect("/orders/7", None)
        assert client.get("/orders/7").status_code == 404
    assert client.get("/redirect").status_code == 400
    assert client.get("/redirect", params={"to": target, "status": "200"}).status_code == 400


# ------------------------------------------------------------------------- tools
def test_calls_keep_the_auth_scheme_and_keys_but_no_secret(
    client: httpx.Client, sandbox: RestSandbox
) -> None:
    client.get("/basic/items/offset", auth=(sandbox.username, sandbox.password))
    client.get("/key/items/offset", headers={"X-API-Key": sandbox.api_key})
    bearer = {"Authorization": f"Bearer {sandbox.bearer_token}", "Idempotency-Key": "idem-1"}
    client.post("/bearer/orders", json={"ref": "c"}, headers=bearer)
    client.post(
        "/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": sandbox.client_id,
            "client_secret": sandbox.client_secret,
        },
    )
    client.get("/items/offset", params={"api_key": "leaked-key", "limit": 5})
    calls = sandbox.calls
    assert [(c.method, c.path, c.status) for c in calls] == [
        ("GET", "/basic/items/offset", 200),
        ("GET", "/key/items/offset", 200),
        ("POST", "/bearer/orders", 201),
        ("POST", "/oauth/token", 200),
        ("GET", "/items/offset", 200),
    ]
    assert [c.auth_scheme for c in calls] == ["Basic", "X-API-Key", "Bearer", None, None]
    assert calls[2].idempotency_key == "idem-1"
    assert calls[2].headers["idempotency-key"] == "idem-1"
    assert calls[2].headers["authorization"] == "Bearer"
    assert calls[1].headers["x-api-key"] == "[redacted]"
    assert calls[4].query == "api_key=%5Bredacted%5D&limit=5"
    basic = base64.b64encode(f"{sandbox.username}:{sandbox.password}".encode()).decode()
    logged = repr(calls)
    secrets = [sandbox.password, sandbox.api_key, sandbox.bearer_token, sandbox.client_secret]
    for secret in [*secrets, basic, "leaked-key"]:
        assert secret not in logged


def test_echo_returns_what_the_client_sent(client: httpx.Client) -> None:
    sent = client.put(
        "/echo?a=1&b=two",
        json={"x": [1, 2]},
        headers={"X-Trace": "t-1", "Authorization": "Bearer t"},
    )
    body = sent.json()
    assert body["method"] == "PUT"
    assert body["path"] == "/echo" and body["query"] == "a=1&b=two"
    assert body["headers"]["x-trace"] == "t-1"
    assert body["headers"]["authorization"] == "Bearer t"
    assert body["headers"]["content-type"] == "application/json"
    assert body["json"] == {"x": [1, 2]}
    assert body["body"] == '{"x":[1,2]}'
    plain = client.get("/echo").json()
    assert (plain["method"], plain["body"], plain["json"]) == ("GET", "", None)


def test_unknown_routes_and_methods(client: httpx.Client) -> None:
    assert client.get("/nothing").status_code == 404
    wrong = client.get("/orders")
    assert wrong.status_code == 405 and wrong.headers["allow"] == "POST"
    assert client.put("/orders/1", json={}).headers["allow"] == "GET, PATCH, DELETE"
    assert client.get("/oauth/token").status_code == 405


def test_reset_forgets_state_and_reseeds(client: httpx.Client, sandbox: RestSandbox) -> None:
    client.post("/orders", json={"ref": "z"}, headers={"Idempotency-Key": "kz"})
    get_token(client, sandbox)
    sandbox.seed_items(3)
    sandbox.fail_next(5)
    sandbox.delay = 0.2
    sandbox.reset()
    assert (sandbox.orders(), sandbox.keys, sandbox.calls) == ([], {}, [])
    assert (sandbox.effects("z"), sandbox.token_requests, sandbox.delay) == (0, 0, 0)
    assert len(sandbox.items()) == ITEMS
    assert (
        client.post("/orders", json={"ref": "z"}, headers={"Idempotency-Key": "kz"}).json()["id"]
        == 1
    )


def test_it_runs_alone_from_the_command_line() -> None:
    command = [sys.executable, "-m", "tests.sandbox.rest_api", "--port", "0", "--items", "5"]
    with subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True) as process:
        try:
            assert process.stdout is not None
            banner = "".join(process.stdout.readline() for _ in range(5))
            url = re.search(r"on (http://127\.0\.0\.1:\d+)", banner)
            key = re.search(r"X-API-Key: (\S+)", banner)
            assert url is not None and key is not None, banner
            response = httpx.get(f"{url[1]}/key/items/offset", headers={"X-API-Key": key[1]})
            assert response.json()["total"] == 5
            process.send_signal(signal.SIGINT)
            assert process.wait(timeout=10) == 0
        finally:
            if process.poll() is None:
                process.kill()
