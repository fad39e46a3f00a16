"""``POST /hooks/{name}``, the deliveries API, pages and ``hub hooks``, on SQLite and PostgreSQL.

Signatures are computed here with ``hmac``/``hashlib``, never by hub code.
Most tests go through FastAPI's TestClient; the concurrency, body-size and
CLI tests talk to a real uvicorn server on 127.0.0.1, and the database-down
test breaks the connection with a TCP proxy on loopback.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import hmac
import json
import logging
import os
import re
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import BaseModel, Field
from sqlalchemy import event, func
from sqlalchemy import select as sql_select
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from hub import Flow, Webhook, step
from hub import models as m
from hub.cli import app as cli_app
from hub.registry import Registry
from hub.runtime import Hub
from hub.settings import Settings
from hub.web import create_app
from tests.support.server import serve
from tests.web.apps import TestClient, add_user, bearer, form_token, log_in, token_for

ROOT = Path(__file__).resolve().parents[2]
SECRETS = {
    "HOOKS_TEST_NEW": "new-secret-4f1d9a",
    "HOOKS_TEST_OLD": "old-secret-77c2e0",
    "HOOKS_TEST_GH": "gh-secret-0b8e51",
    "HOOKS_TEST_STRIPE": "whsec-stripe-93aa1c",
    "HOOKS_TEST_SLACK": "slack-secret-5e6f70",
}
MARKER = "BODY-MARKER-7f3c"


# ------------------------------------------------------------------ flows
class Order(BaseModel):
    order_id: str = Field(min_length=1)
    amount: int = Field(ge=0)


@step(retries=0)
def take(data: Order) -> Order:
    return data


@step(retries=0)
def keep(data: dict[str, Any]) -> dict[str, Any]:
    return data


hook_orders = Flow(
    "hook_orders",
    [take],
    triggers=[
        Webhook(
            "orders",
            verify="hmac",
            secret=["env:HOOKS_TEST_NEW", "env:HOOKS_TEST_OLD"],
            prefix="sha256=",
            timestamp_header="X-Signature-Timestamp",
            input=lambda payload: payload["order"],
        ),
        Webhook(
            "gh",
            verify="github",
            secret="env:HOOKS_TEST_GH",
            input=lambda p: {"order_id": p["ref"], "amount": len(p.get("commits", []))},
        ),
    ],
)
hook_any = Flow(
    "hook_any",
    [keep],
    triggers=[
        Webhook("pay", verify="stripe", secret="env:HOOKS_TEST_STRIPE"),
        Webhook("chat", verify="slack", secret="env:HOOKS_TEST_SLACK"),
        Webhook("unset", verify="hmac", secret="env:HOOKS_TEST_NOT_SET"),
    ],
)
REGISTRY = Registry([hook_orders, hook_any])


# ---------------------------------------------------------------- signing
def order_body(order_id: str = "A-1", amount: int = 5, **extra: Any) -> bytes:
    doc = {"event": "order.created", "order": {"order_id": order_id, "amount": amount}}
    doc.update(note=MARKER, **extra)
    return json.dumps(doc, separators=(",", ":")).encode()


def signed(
    body: bytes,
    *,
    secret: str = SECRETS["HOOKS_TEST_NEW"],
    at: float | None = None,
    prefix: str = "sha256=",
) -> dict[str, str]:
    """Headers of the ``orders`` hook: HMAC-SHA256 of ``{timestamp}.{body}``, hex."""
    stamp = str(int(time.time() if at is None else at))
    mac = hmac.new(secret.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return {
        "Content-Type": "application/json",
        "X-Signature": prefix + mac,
        "X-Signature-Timestamp": stamp,
    }


def github(body: bytes, delivery: str, secret: str = SECRETS["HOOKS_TEST_GH"]) -> dict[str, str]:
    mac = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {
        "Content-Type": "application/json",
        "X-Hub-Signature-256": f"sha256={mac}",
        "X-GitHub-Delivery": delivery,
        "X-GitHub-Event": "push",
    }


def stripe(body: bytes, secret: str = SECRETS["HOOKS_TEST_STRIPE"]) -> dict[str, str]:
    stamp = str(int(time.time()))
    mac = hmac.new(secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    return {"Content-Type": "application/json", "Stripe-Signature": f"t={stamp},v1={mac}"}


# ---------------------------------------------------------------- fixtures
@pytest.fixture(autouse=True)
def secrets_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("HOOKS_TEST_NOT_SET", raising=False)


def make_hub(db_url: str, home: Path) -> tuple[Hub, list[str]]:
    made = Hub(Settings(home=home, database_url=db_url, broker_url=None), registry=REGISTRY)
    made.store.create_all()
    published: list[str] = []
    made.engine.publish = lambda step_id, *_: published.append(step_id)
    return made, published


@pytest.fixture
def hub_and_published(db_url: str, tmp_path: Path) -> Iterator[tuple[Hub, list[str]]]:
    made, published = make_hub(db_url, tmp_path / "home")
    add_user(made, "vic", "viewer")
    add_user(made, "opal", "operator")
    yield made, published
    made.store.engine.dispose()


@pytest.fixture
def hub(hub_and_published: tuple[Hub, list[str]]) -> Hub:
    return hub_and_published[0]


@pytest.fixture
def published(hub_and_published: tuple[Hub, list[str]]) -> list[str]:
    return hub_and_published[1]


@pytest.fixture
def client(hub: Hub) -> Iterator[TestClient]:
    with TestClient(create_app(hub)) as c:
        yield c


def count(hub: Hub, model: Any) -> int:
    with hub.store.read() as s:
        return int(s.scalar(sql_select(func.count()).select_from(model)) or 0)


def deliveries(hub: Hub) -> list[m.WebhookDelivery]:
    with hub.store.read() as s:
        return list(s.scalars(sql_select(m.WebhookDelivery).order_by(m.WebhookDelivery.id)))


def rejections(hub: Hub) -> dict[str, int]:
    with hub.store.read() as s:
        rows = s.execute(
            sql_select(m.WebhookRejection.reason, func.sum(m.WebhookRejection.count)).group_by(
                m.WebhookRejection.reason
            )
        ).all()
    return {reason: int(n) for reason, n in rows}


def post(client: TestClient, body: bytes, headers: dict[str, str], hook: str = "orders") -> Any:
    return client.post(f"/hooks/{hook}", content=body, headers=headers)


# ----------------------------------------------------- 23, 24: accept, dedupe
def test_a_valid_signed_delivery_is_stored_with_its_run_and_answered_202(
    client: TestClient, hub: Hub, published: list[str]
) -> None:
    body = order_body()
    response = post(client, body, signed(body))
    assert response.status_code == 202, response.text
    answer = response.json()
    assert set(answer) == {"run_id", "delivery_id", "status_url"}
    assert answer["status_url"] == f"/api/runs/{answer['run_id']}"
    [row] = deliveries(hub)
    assert (row.id, row.run_id, row.hook, row.flow) == (
        answer["delivery_id"],
        answer["run_id"],
        "orders",
        "hook_orders",
    )
    assert row.body == body and row.status == "accepted" and row.verified_by == "hmac#1"
    assert "x-signature" not in row.headers and row.headers["x-signature-timestamp"]
    with hub.store.read() as s:
        [run] = s.scalars(sql_select(m.Run)).all()
    assert run.id == answer["run_id"] and run.trigger == "webhook:orders"
    assert run.input == {"order_id": "A-1", "amount": 5}  # the hook's input mapper
    assert len(published) == 1  # the first step, after the commit


def test_the_same_delivery_twice_answers_200_with_the_same_run(
    client: TestClient, hub: Hub, published: list[str]
) -> None:
    body = order_body()
    headers = signed(body)
    first = post(client, body, headers)
    again = post(client, body, headers)
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json()["run_id"] == first.json()["run_id"]
    assert again.json()["delivery_id"] == first.json()["delivery_id"]
    assert again.json()["duplicate"] is True
    assert count(hub, m.Run) == 1 and len(published) == 1
    [row] = deliveries(hub)
    assert row.duplicates == 1 and row.last_duplicate_at is not None


def test_a_provider_delivery_id_dedupes_a_redelivery_with_a_new_signature(
    client: TestClient, hub: Hub
) -> None:
    body = json.dumps({"id": "evt_1", "type": "charge.succeeded", "data": {}}).encode()
    first = post(client, body, stripe(body), hook="pay")
    time.sleep(1.1)  # a redelivery is signed at another time
    again = post(client, body, stripe(body), hook="pay")
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json()["run_id"] == first.json()["run_id"]
    assert deliveries(hub)[0].delivery_key == "id:evt_1"


def test_a_captured_github_delivery_under_a_new_delivery_id_is_deduplicated(
    client: TestClient, hub: Hub
) -> None:
    body = json.dumps({"ref": "refs/heads/main", "commits": [{}, {}]}).encode()
    first = post(client, body, github(body, "d-1"), hook="gh")
    replayed = post(client, body, github(body, "d-forged-2"), hook="gh")
    assert (first.status_code, replayed.status_code) == (202, 200)
    assert replayed.json()["run_id"] == first.json()["run_id"]
    assert count(hub, m.Run) == 1


def test_a_captured_request_replayed_later_is_deduplicated_or_refused(
    client: TestClient, hub: Hub
) -> None:
    """Within the tolerance the same signed time and body is a duplicate; past it, a 401."""
    from hub import hooks

    body = order_body()
    captured = signed(body)
    assert post(client, body, captured).status_code == 202
    assert post(client, body, captured).status_code == 200
    with pytest.raises(hooks.Refused) as refused:
        hooks.intake(hub, "orders", captured, body, "203.0.113.5", now=time.time() + 600)
    assert (refused.value.status, refused.value.reason) == (401, "timestamp")
    assert count(hub, m.Run) == 1 and count(hub, m.WebhookDelivery) == 1


# ------------------------------------------------------ 26, 27: not authentic
def _reserialised(body: bytes) -> bytes:
    return json.dumps(json.loads(body), indent=1).encode()


BAD = {
    "wrong secret": lambda b: (b, signed(b, secret="not-the-secret")),
    "missing header": lambda b: (
        b,
        {k: v for k, v in signed(b).items() if k != "X-Signature"},
    ),
    "re-serialised body": lambda b: (_reserialised(b), signed(b)),
    "wrong algorithm prefix": lambda b: (b, signed(b, prefix="sha1=")),
    "timestamp too old": lambda b: (b, signed(b, at=time.time() - 301 - 5)),
    "timestamp in the future": lambda b: (b, signed(b, at=time.time() + 301 + 5)),
}


@pytest.mark.parametrize("case", list(BAD))
def test_a_delivery_that_is_not_authentic_gets_401_and_nothing_is_stored(
    client: TestClient, hub: Hub, published: list[str], case: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    body, headers = BAD[case](order_body())
    response = post(client, body, headers)
    assert response.status_code == 401, response.text
    assert MARKER not in response.text
    assert count(hub, m.WebhookDelivery) == 0 and count(hub, m.Run) == 0 and not published
    reason = "timestamp" if case.startswith("timestamp") else "signature"
    assert rejections(hub) == {reason: 1}
    assert response.json()["reason"] == reason
    assert MARKER not in caplog.text
    assert not any(secret in caplog.text for secret in SECRETS.values())


def test_refusals_are_counted_per_hook_reason_and_minute_without_the_body(
    client: TestClient, hub: Hub
) -> None:
    body = order_body()
    for _ in range(3):
        post(client, body, signed(body, secret="forged"))
    with hub.store.read() as s:
        [row] = s.scalars(sql_select(m.WebhookRejection)).all()
    assert (row.hook, row.reason, row.count, row.status) == ("orders", "signature", 3, 401)
    assert row.last_detail == "signature does not match" and row.last_source == "testclient"


# -------------------------------------------------------- 30: bad requests
def test_malformed_json_with_a_valid_signature_gets_400(client: TestClient, hub: Hub) -> None:
    body = b'{"order": {"order_id": "A-1", "amount": 5}'
    response = post(client, body, signed(body))
    assert response.status_code == 400, response.text
    assert response.json()["reason"] == "malformed"
    assert count(hub, m.WebhookDelivery) == 0 and count(hub, m.Run) == 0


@pytest.mark.parametrize("content_type", ["text/plain", "application/xml", None])
def test_a_body_that_is_not_json_by_its_content_type_gets_415(
    client: TestClient, hub: Hub, content_type: str | None
) -> None:
    body = order_body()
    headers = signed(body)
    if content_type is None:
        del headers["Content-Type"]
    else:
        headers["Content-Type"] = content_type
    response = post(client, body, headers)
    assert response.status_code == 415, response.text
    assert count(hub, m.WebhookDelivery) == 0 and rejections(hub) == {"content_type": 1}


def test_json_media_types_with_parameters_and_suffixes_are_accepted(client: TestClient) -> None:
    for i, media in enumerate(["application/json; charset=utf-8", "application/vnd.acme+json"]):
        body = order_body(order_id=f"M-{i}")
        headers = {**signed(body), "Content-Type": media}
        assert post(client, body, headers).status_code == 202


def test_input_the_flow_refuses_gets_422_with_field_errors_and_nothing_is_stored(
    client: TestClient, hub: Hub
) -> None:
    body = order_body(order_id="", amount=-1)
    response = post(client, body, signed(body))
    assert response.status_code == 422, response.text
    locs = {tuple(e["loc"]) for e in response.json()["errors"]}
    assert locs == {("order_id",), ("amount",)}
    assert count(hub, m.WebhookDelivery) == 0 and count(hub, m.Run) == 0
    assert rejections(hub) == {"invalid_input": 1}


def test_a_payload_the_input_mapper_does_not_expect_gets_422(client: TestClient) -> None:
    body = json.dumps({"event": "ping"}).encode()
    response = post(client, body, signed(body))
    assert response.status_code == 422
    assert "KeyError" in response.json()["detail"]


def test_an_unknown_hook_is_404_and_not_counted(client: TestClient, hub: Hub) -> None:
    body = order_body()
    response = post(client, body, signed(body), hook="nope")
    assert response.status_code == 404
    assert count(hub, m.WebhookRejection) == 0


def test_an_unset_secret_is_503_for_the_operator_without_naming_it(
    client: TestClient, hub: Hub, caplog: pytest.LogCaptureFixture
) -> None:
    body = order_body()
    response = post(
        client, body, {"Content-Type": "application/json", "X-Signature": "ab"}, "unset"
    )
    assert response.status_code == 503
    assert "HOOKS_TEST_NOT_SET" not in response.text
    assert response.headers["retry-after"]
    assert "HOOKS_TEST_NOT_SET" in caplog.text  # the operator reads which variable in the log
    assert count(hub, m.WebhookDelivery) == 0


def test_slack_form_posts_are_read_from_their_payload_field(client: TestClient, hub: Hub) -> None:
    body = b"payload=" + json.dumps({"type": "block_actions", "user": {"id": "U1"}}).encode()
    body = body.replace(b"{", b"%7B").replace(b"}", b"%7D").replace(b'"', b"%22")
    stamp = str(int(time.time()))
    secret = SECRETS["HOOKS_TEST_SLACK"].encode()
    mac = hmac.new(secret, f"v0:{stamp}:".encode() + body, hashlib.sha256).hexdigest()
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Signature": f"v0={mac}",
        "X-Slack-Request-Timestamp": stamp,
    }
    response = post(client, body, headers, hook="chat")
    assert response.status_code == 202, response.text
    with hub.store.read() as s:
        run = s.get(m.Run, response.json()["run_id"])
    assert run is not None and run.input == {"type": "block_actions", "user": {"id": "U1"}}


# ------------------------------------------------------- 29 (in process), 31
def test_a_body_over_the_limit_is_413_with_and_without_content_length(
    client: TestClient, hub: Hub
) -> None:
    big = b"x" * (1024 * 1024 + 1)
    headers = signed(big)
    declared = post(client, big, headers)

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(big), 65536):
            yield big[i : i + 65536]

    streamed = client.post("/hooks/orders", content=chunks(), headers=headers)
    assert (declared.status_code, streamed.status_code) == (413, 413)
    assert count(hub, m.WebhookDelivery) == 0 and rejections(hub) == {"too_large": 2}
    body = order_body()
    assert post(client, body, signed(body)).status_code == 202


def test_during_a_rotation_deliveries_signed_with_either_secret_are_accepted(
    client: TestClient, hub: Hub
) -> None:
    for i, name in enumerate(["HOOKS_TEST_NEW", "HOOKS_TEST_OLD"]):
        body = order_body(order_id=f"R-{i}")
        assert post(client, body, signed(body, secret=SECRETS[name])).status_code == 202
    assert [d.verified_by for d in deliveries(hub)] == ["hmac#1", "hmac#2"]


# --------------------------------------------------------------- wait mode
def test_waiting_answers_200_with_the_output_when_the_run_finishes_in_time(
    client: TestClient, hub: Hub
) -> None:
    hub.engine.publish = lambda step_id, *_: hub.engine.execute(step_id)  # a worker at hand
    body = order_body(order_id="W-1", amount=3)
    response = client.post("/hooks/orders?wait=5", content=body, headers=signed(body))
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["status"] == "succeeded"
    assert answer["output"] == {"order_id": "W-1", "amount": 3}
    body = order_body(order_id="W-2", amount=3)
    response = post(client, body, {**signed(body), "Prefer": "wait=5"})
    assert response.status_code == 200 and response.headers["preference-applied"] == "wait=5"


def test_waiting_falls_back_to_202_at_the_deadline(client: TestClient) -> None:
    body = order_body()
    started = time.monotonic()
    response = client.post("/hooks/orders?wait=0.4", content=body, headers=signed(body))
    assert response.status_code == 202
    assert response.json()["status"] == "queued"
    assert time.monotonic() - started >= 0.4


def test_a_wait_that_is_not_a_number_is_400_before_anything_is_stored(
    client: TestClient, hub: Hub
) -> None:
    body = order_body()
    response = client.post("/hooks/orders?wait=soon", content=body, headers=signed(body))
    assert response.status_code == 400
    assert count(hub, m.WebhookDelivery) == 0


# ------------------------------------------------------ API, pages, replay
def _accepted(client: TestClient, n: int = 1) -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        body = order_body(order_id=f"P-{i}", html="<script>alert(1)</script>")
        response = post(client, body, signed(body))
        assert response.status_code == 202, response.text
        out.append(response.json())
    return out


def test_the_api_lists_hooks_and_pages_through_deliveries(client: TestClient, hub: Hub) -> None:
    made = _accepted(client, 3)
    post(client, b"{}", signed(b"{}", secret="forged"))
    bearer(client, token_for(hub, "vic"))
    listed = {h["name"]: h for h in client.get("/api/hooks").json()}
    assert set(listed) == {"orders", "gh", "pay", "chat", "unset"}
    assert listed["orders"]["flow"] == "hook_orders" and listed["orders"]["verify"] == "hmac"
    assert listed["orders"]["deliveries"] == 3 and listed["orders"]["rejected_24h"] == 1
    first = client.get("/api/hooks/orders/deliveries", params={"limit": 2}).json()
    assert [d["id"] for d in first["deliveries"]] == [
        made[2]["delivery_id"],
        made[1]["delivery_id"],
    ]
    assert first["rejections"]["counts"] == {"signature": 1}
    rest = client.get(
        "/api/hooks/orders/deliveries", params={"limit": 2, "cursor": first["next_cursor"]}
    ).json()
    assert [d["id"] for d in rest["deliveries"]] == [made[0]["delivery_id"]]
    assert rest["next_cursor"] is None
    assert client.get("/api/hooks/nope/deliveries").status_code == 404
    one = client.get(f"/api/hooks/deliveries/{made[0]['delivery_id']}").json()
    assert one["run"]["id"] == made[0]["run_id"] and MARKER in one["body"]
    assert "x-signature" not in one["headers"]
    assert client.get("/api/hooks/deliveries/0123").status_code == 404


def test_an_operator_replays_a_delivery_from_the_api_and_a_viewer_may_not(
    client: TestClient, hub: Hub, published: list[str]
) -> None:
    [made] = _accepted(client)
    viewer = bearer(client, token_for(hub, "vic"))
    url = f"/api/hooks/deliveries/{made['delivery_id']}/replay"
    assert viewer.post(url).status_code == 403
    operator = bearer(client, token_for(hub, "opal"))
    response = operator.post(url)
    assert response.status_code == 201, response.text
    again = operator.post(url).json()
    replay = response.json()
    assert replay["run_id"] != made["run_id"] and replay["replay_of"] == made["delivery_id"]
    assert count(hub, m.Run) == 3 and len(published) == 3
    rows = {d.id: d for d in deliveries(hub)}
    assert rows[replay["delivery_id"]].status == "replayed"
    assert rows[replay["delivery_id"]].delivery_key == f"replay:{made['delivery_id']}:1"
    assert rows[again["delivery_id"]].delivery_key == f"replay:{made['delivery_id']}:2"
    with hub.store.read() as s:
        audit = s.scalars(sql_select(m.AuditEntry).where(m.AuditEntry.action == "webhook.replay"))
        entries = list(audit)
    assert [(a.actor, a.object_id) for a in entries] == [("opal", made["delivery_id"])] * 2
    shown = operator.get(f"/api/hooks/deliveries/{made['delivery_id']}").json()
    assert [r["id"] for r in shown["replays"]] == [replay["delivery_id"], again["delivery_id"]]


def test_the_pages_show_deliveries_as_text_and_replay_needs_an_operator_and_csrf(
    client: TestClient, hub: Hub
) -> None:
    [made] = _accepted(client)
    post(client, b"{}", signed(b"{}", secret="forged"))
    assert log_in(client, "vic").status_code == 303
    listing = client.get("/hooks")
    assert listing.status_code == 200
    assert made["delivery_id"] in listing.text and "signature does not match" in listing.text
    page = client.get(f"/hooks/deliveries/{made['delivery_id']}")
    assert page.status_code == 200
    assert "<script>alert(1)</script>" not in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    assert re.search(r"<pre class=\"text\">[^<]*" + MARKER, page.text)
    assert "Replay this delivery" not in page.text
    client.cookies.clear()
    assert log_in(client, "opal").status_code == 303
    page = client.get(f"/hooks/deliveries/{made['delivery_id']}")
    action = f"/hooks/deliveries/{made['delivery_id']}/replay"
    refused = client.post(action, data={"csrf_token": "wrong"}, follow_redirects=False)
    assert refused.status_code == 403 and count(hub, m.Run) == 1
    done = client.post(action, data={"csrf_token": form_token(page.text)}, follow_redirects=False)
    assert done.status_code == 303, done.text
    new_page = client.get(done.headers["location"])
    assert "Replay of" in new_page.text and made["delivery_id"] in new_page.text
    assert count(hub, m.Run) == 2


def test_the_intake_needs_no_login_but_the_deliveries_do(client: TestClient) -> None:
    assert client.get("/api/hooks").status_code == 401
    assert client.get("/hooks", follow_redirects=False).status_code == 303


# ------------------------------------------------ real servers on loopback
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def server(hub: Hub) -> Iterator[str]:
    with serve(create_app(hub)) as url:
        yield url


def test_the_same_delivery_50_times_at_once_starts_one_run_without_a_5xx(
    server: str, hub: Hub
) -> None:
    body = order_body(order_id="C-1")
    headers = signed(body)
    barrier = threading.Barrier(50)
    answers: list[tuple[int, str]] = []
    lock = threading.Lock()

    def send() -> None:
        with httpx.Client(timeout=30) as http:
            barrier.wait()
            response = http.post(f"{server}/hooks/orders", content=body, headers=headers)
        with lock:
            answers.append((response.status_code, response.json().get("run_id")))

    threads = [threading.Thread(target=send) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    codes = sorted(code for code, _ in answers)
    assert codes == [200] * 49 + [202], codes
    assert len({run for _, run in answers}) == 1
    assert count(hub, m.Run) == 1
    [row] = deliveries(hub)
    assert row.duplicates == 49


def test_hub_hooks_lists_shows_and_replays_over_the_api(server: str, hub: Hub) -> None:
    with httpx.Client(base_url=server) as http:
        body = order_body(order_id="CLI-1")
        made = http.post("/hooks/orders", content=body, headers=signed(body)).json()
        http.post("/hooks/orders", content=body, headers=signed(body, secret="forged"))
    tokens = {name: token_for(hub, name) for name in ("vic", "opal")}

    def hub_cli(*args: str, user: str = "vic") -> Any:
        env = {"HUB_URL": server, "HUB_TOKEN": tokens[user]}
        return CliRunner().invoke(cli_app, ["hooks", *args], env=env)

    listed = hub_cli()
    assert listed.exit_code == 0, listed.output
    assert "orders" in listed.output and "1 deliveries" in listed.output
    recent = hub_cli("deliveries", "orders")
    assert made["delivery_id"] in recent.output and made["run_id"] in recent.output
    assert "signature 1" in recent.output
    as_json = json.loads(hub_cli("deliveries", "--json", "--limit", "5").output)
    assert as_json["deliveries"][0]["id"] == made["delivery_id"]
    shown = hub_cli("show", made["delivery_id"])
    assert MARKER in shown.output
    refused = hub_cli("replay", made["delivery_id"])
    assert refused.exit_code == 1 and "operator" in refused.output
    replayed = hub_cli("replay", made["delivery_id"], user="opal")
    assert replayed.exit_code == 0, replayed.output
    assert "replayed as delivery" in replayed.output
    assert count(hub, m.Run) == 2


# ---------------------------------------- 29: a 10 MB body, memory stays flat
def server_app() -> Any:
    """The app of the body-size test's uvicorn process (``--factory``)."""
    home = Path(os.environ["HOOKS_TEST_HOME"])
    made = Hub(
        Settings(home=home, database_url=os.environ["HOOKS_TEST_DB"], broker_url=None),
        registry=REGISTRY,
    )
    made.engine.publish = lambda *_: None
    return create_app(made)


def rss_kb(pid: int, field: str = "VmRSS") -> int:
    """The process's resident memory now (``VmRSS``) or at its peak (``VmHWM``), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


def reset_peak(pid: int) -> int:
    """Start the process's peak memory afresh (``clear_refs`` 5); its memory now, in KiB."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    return rss_kb(pid)


def raw_post(port: int, size: int, *, chunked: bool) -> int:
    """POST ``size`` bytes to /hooks/orders from a plain socket; the answer's status.

    Sends while the server reads and stops when its answer arrives, as a
    sender does whose request is refused early.
    """
    sock = socket.create_connection(("127.0.0.1", port), timeout=20)
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {size}"
    head = (
        f"POST /hooks/orders HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"X-Signature: sha256=00\r\nX-Signature-Timestamp: 1\r\n{framing}\r\n\r\n"
    )
    sock.sendall(head.encode())
    piece = b"a" * 65536
    pending, sent, answer = b"", 0, b""
    try:
        while sent < size or pending:
            readable, writable, _ = select.select([sock], [sock], [], 20)
            if readable:
                break
            if not pending:
                chunk = piece[: size - sent]
                sent += len(chunk)
                pending = b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk
                if chunked and sent >= size:
                    pending += b"0\r\n\r\n"
            if writable:
                pending = pending[sock.send(pending) :]
    except (BrokenPipeError, ConnectionResetError):
        pass
    try:
        while b"\r\n" not in answer:
            data = sock.recv(4096)
            if not data:
                break
            answer += data
    except ConnectionResetError:
        pass
    sock.close()
    found = re.match(rb"HTTP/1\.1 (\d{3})", answer)
    assert found, f"no HTTP answer: {answer[:200]!r}"
    return int(found.group(1))


@pytest.fixture
def process_server(db_url: str, tmp_path: Path, hub: Hub) -> Iterator[tuple[int, int]]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    env.update(SECRETS, HOOKS_TEST_DB=db_url, HOOKS_TEST_HOME=str(tmp_path / "srv"))
    env["PYTHONPATH"] = str(ROOT)
    log = open(tmp_path / "server.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "tests.web.test_hooks:server_app",
         "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, (tmp_path / "server.log").read_text()
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.1)
        yield port, proc.pid
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


def test_a_10_mb_body_is_413_with_and_without_content_length_and_memory_stays_flat(
    process_server: tuple[int, int], hub: Hub
) -> None:
    port, pid = process_server
    ten_mb = 10 * 1024 * 1024
    with httpx.Client(base_url=f"http://127.0.0.1:{port}") as http:
        for i in range(3):  # warm up every path once
            body = order_body(order_id=f"warm-{i}")
            assert http.post("/hooks/orders", content=body, headers=signed(body)).status_code == 202
        assert raw_post(port, 2 * 1024 * 1024, chunked=True) == 413
        assert raw_post(port, 2 * 1024 * 1024, chunked=False) == 413
        before = reset_peak(pid)
        for _ in range(3):
            assert raw_post(port, ten_mb, chunked=False) == 413
            assert raw_post(port, ten_mb, chunked=True) == 413
        grown_mb = (rss_kb(pid, "VmHWM") - before) / 1024
        assert grown_mb < 4, f"the server's peak memory grew by {grown_mb:.1f} MB"
        body = order_body(order_id="after")
        assert http.post("/hooks/orders", content=body, headers=signed(body)).status_code == 202
    assert count(hub, m.WebhookDelivery) == 4


# -------------------------------------------- 32: the database is down at intake
class Proxy:
    """A TCP proxy on loopback to PostgreSQL that can be stopped (connections cut) and restarted."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self.sockets: list[socket.socket] = []
        self.listener: socket.socket | None = None

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self.sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        for s in (a, b):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def stop(self) -> None:
        """Refuse new connections and cut the open ones: the database is gone."""
        if self.listener is not None:
            with contextlib.suppress(OSError):
                self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread
            self.listener.close()
            self.listener = None
        for s in self.sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()
        self.sockets.clear()


def test_settle_hides_what_the_serving_process_built_from_the_cycle_collector() -> None:
    from hub.web.app import settle

    gc.unfreeze()
    try:
        settle()
        assert gc.get_freeze_count() > 10_000  # modules, the app, the flows
    finally:
        gc.unfreeze()


@pytest.mark.services
def test_bursts_of_deliveries_reuse_the_pooled_connections(pg_url: str, tmp_path: Path) -> None:
    """Concurrent deliveries up to the pool size keep the connections they open: none
    is closed on return to be opened again by the next burst (opening one costs
    PostgreSQL a new process)."""
    made, published = make_hub(pg_url, tmp_path / "home")
    opened: list[int] = []
    closed: list[int] = []
    event.listen(made.store.engine, "connect", lambda *_: opened.append(1))
    event.listen(made.store.engine, "close", lambda *_: closed.append(1))
    senders = 12  # under the default pool (HUB_DATABASE_POOL_SIZE=15)

    def burst(tag: str) -> list[int]:
        def send(n: int) -> list[int]:
            codes = []
            with httpx.Client(base_url=url, timeout=30) as http:
                for i in range(4):
                    body = order_body(order_id=f"{tag}-{n}-{i}")
                    headers = {**signed(body), "Content-Type": "application/json"}
                    codes.append(
                        http.post("/hooks/orders", content=body, headers=headers).status_code
                    )
            return codes

        with ThreadPoolExecutor(senders) as pool:
            return [code for codes in pool.map(send, range(senders)) for code in codes]

    try:
        with serve(create_app(made)) as url:
            for tag in ("first", "second", "third"):
                assert set(burst(tag)) == {202}
        assert closed == [], f"{len(closed)} connections closed after use, {len(opened)} opened"
        assert 1 <= len(opened) <= senders
        assert len(published) == 3 * senders * 4
    finally:
        made.store.engine.dispose()


@pytest.mark.services
def test_with_the_database_down_the_intake_answers_503_and_the_retry_makes_one_run(
    pg_url: str, tmp_path: Path
) -> None:
    target = make_url(pg_url)
    proxy = Proxy((target.host or "127.0.0.1", target.port or 5432))
    proxy.start()
    via_proxy = target.set(port=proxy.port).render_as_string(hide_password=False)
    made, published = make_hub(via_proxy, tmp_path / "home")
    try:
        with TestClient(create_app(made)) as client:
            body = order_body(order_id="DOWN-1")
            assert post(client, order_body(), signed(order_body())).status_code == 202  # pool warm
            proxy.stop()
            down = post(client, body, signed(body))
            assert down.status_code == 503, down.text
            assert down.headers["retry-after"]
            forged = post(client, body, signed(body, secret="forged"))
            assert forged.status_code == 401  # a refusal still answers though it is not counted
            proxy.start()
            retry = post(client, body, signed(body))
            assert retry.status_code == 202, retry.text
            again = post(client, body, signed(body))
            assert again.status_code == 200 and again.json()["run_id"] == retry.json()["run_id"]
        with made.store.read() as s:
            runs = s.scalars(
                sql_select(m.Run).where(m.Run.input["order_id"].as_string() == "DOWN-1")
            )
            assert len(list(runs)) == 1
        assert len(published) == 2
    finally:
        made.store.engine.dispose()
        proxy.stop()
