"""The JSON API over a real store (SQLite and PostgreSQL), through FastAPI's TestClient.

No worker runs here: starting and reading runs needs none. Tests that need a
run paused for review execute its steps in-process with the same engine.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flows.hello import hello
from hub.registry import Registry
from hub.runtime import Hub
from hub.settings import Settings
from hub.web import create_app
from tests.web.apps import BIG, TestClient, add_user, bearer, log_in, token_for, work


@pytest.fixture
def client(hub: Hub) -> Iterator[TestClient]:
    """A client sending an operator's API token (tests/web/test_auth.py covers the guards)."""
    add_user(hub, "ops", "operator")
    with TestClient(create_app(hub)) as c:
        yield bearer(c, token_for(hub, "ops"))


def start(client: TestClient, flow: str, body: Any, **headers: str) -> Any:
    response = client.post(f"/api/flows/{flow}/runs", json=body, headers=headers)
    assert response.status_code in (200, 201), response.text
    return response.json()


def paused_run(client: TestClient, hub: Hub) -> str:
    run_id = str(start(client, "approval", BIG)["id"])
    work(hub)
    assert client.get(f"/api/runs/{run_id}").json()["status"] == "needs_review"
    return run_id


# ------------------------------------------------------------------ health
def test_healthz_answers_ok(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_healthz_is_503_when_the_database_has_no_tables(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, database_url=f"sqlite:///{tmp_path / 'empty.db'}")
    empty = Hub(settings, registry=Registry([hello]))
    with TestClient(create_app(empty)) as c:
        response = c.get("/healthz")
    empty.store.engine.dispose()
    assert response.status_code == 503
    assert "hub doctor" in response.json()["detail"]


def test_flows_lists_each_flow_with_its_steps(client: TestClient) -> None:
    flows = {f["name"]: f for f in client.get("/api/flows").json()}
    assert set(flows) == {"hello", "approval"}
    assert [s["name"] for s in flows["hello"]["steps"]] == ["clean", "greet", "sign"]


# ------------------------------------------------------------------- start
def test_starting_a_run_answers_201_with_its_id_and_status_url(client: TestClient) -> None:
    response = client.post("/api/flows/hello/runs", json={"name": "Ada"})
    assert response.status_code == 201
    body = response.json()
    assert body["created"] is True
    assert body["status_url"] == f"/api/runs/{body['id']}"
    assert response.headers["location"] == body["status_url"]
    run = client.get(body["status_url"]).json()
    assert run["status"] == "queued"
    assert run["trigger"] == "api"
    assert run["input"] == {"name": "Ada"}
    assert [s["key"] for s in run["steps"]] == ["clean"]


def test_the_same_idempotency_key_and_body_answers_200_with_the_same_run(
    client: TestClient,
) -> None:
    headers = {"Idempotency-Key": "order-7"}
    first = client.post("/api/flows/hello/runs", json={"name": "Ada"}, headers=headers)
    again = client.post("/api/flows/hello/runs", json={"name": "Ada"}, headers=headers)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["created"] is False
    assert len(client.get("/api/runs").json()) == 1


def test_the_same_idempotency_key_with_another_body_is_422(client: TestClient) -> None:
    headers = {"Idempotency-Key": "order-7"}
    first = start(client, "hello", {"name": "Ada"}, **headers)
    response = client.post("/api/flows/hello/runs", json={"name": "Bob"}, headers=headers)
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "IdempotencyConflict"
    assert first["id"] in body["detail"]
    assert len(client.get("/api/runs").json()) == 1


def test_a_key_whose_first_request_is_still_in_flight_is_409_then_its_run(
    client: TestClient, hub: Hub, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RELIABILITY 33: while the first request with a key is being handled, a second is 409."""
    if not db_url.startswith("postgresql"):
        pytest.skip("SQLite runs one write at a time: the second request waits and gets the run")
    import hub.runs as runs_module

    inside, release = threading.Event(), threading.Event()
    real_new_row = runs_module.new_row

    def slow_new_row(*args: Any, **kwargs: Any) -> Any:
        if threading.current_thread() is worker:  # only the first request is held
            inside.set()
            assert release.wait(10), "the test never released the first request"
        return real_new_row(*args, **kwargs)

    monkeypatch.setattr(runs_module, "new_row", slow_new_row)
    first: list[Any] = []
    worker = threading.Thread(
        target=lambda: first.append(
            hub.engine.start_run("hello", {"name": "Ada"}, trigger="api", idempotency_key="k-1")
        )
    )
    worker.start()
    try:
        assert inside.wait(10)
        busy = client.post(
            "/api/flows/hello/runs", json={"name": "Ada"}, headers={"Idempotency-Key": "k-1"}
        )
        assert busy.status_code == 409
        assert busy.headers["retry-after"] == "1"
        assert busy.json()["error"] == "RequestInFlight"
        assert "'k-1'" in busy.json()["detail"]
        other = client.post(  # another key is not held up
            "/api/flows/hello/runs", json={"name": "Ada"}, headers={"Idempotency-Key": "k-2"}
        )
    finally:
        release.set()
        worker.join(10)
    assert other.status_code == 201
    monkeypatch.setattr(runs_module, "new_row", real_new_row)
    again = client.post(
        "/api/flows/hello/runs", json={"name": "Ada"}, headers={"Idempotency-Key": "k-1"}
    )
    assert again.status_code == 200
    assert again.json()["id"] == first[0].run_id
    assert len(client.get("/api/runs").json()) == 2


def test_an_invalid_body_is_422_with_field_errors_and_stores_nothing(client: TestClient) -> None:
    response = client.post("/api/flows/hello/runs", json={"name": ""})
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "InvalidInput"
    assert "name" in body["detail"]
    assert [(e["loc"], e["type"]) for e in body["errors"]] == [(["name"], "string_too_short")]
    missing = client.post("/api/flows/hello/runs")
    assert missing.status_code == 422
    assert [(e["loc"], e["type"]) for e in missing.json()["errors"]] == [(["name"], "missing")]
    assert client.get("/api/runs").json() == []


def test_a_body_that_is_not_json_is_422(client: TestClient) -> None:
    response = client.post(
        "/api/flows/hello/runs",
        content=b"{name: Ada}",
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "InvalidRequest"
    assert body["errors"][0]["type"] == "json_invalid"
    assert client.get("/api/runs").json() == []


def test_an_unknown_flow_is_404_naming_the_known_flows(client: TestClient) -> None:
    response = client.post("/api/flows/helo/runs", json={"name": "Ada"})
    assert response.status_code == 404
    assert response.json() == {
        "error": "FlowNotFound",
        "detail": "unknown flow 'helo'; known flows: approval, hello",
    }


# -------------------------------------------------------------------- read
def test_runs_lists_newest_first_and_filters(client: TestClient, hub: Hub) -> None:
    a = start(client, "hello", {"name": "Ada"})["id"]
    b = paused_run(client, hub)
    c = start(client, "hello", {"name": "Cy"})["id"]
    assert [r["id"] for r in client.get("/api/runs").json()] == [c, b, a]
    assert [r["id"] for r in client.get("/api/runs?flow=hello").json()] == [c, a]
    assert [r["id"] for r in client.get("/api/runs?status=needs_review").json()] == [b]
    assert [r["id"] for r in client.get("/api/runs?limit=1").json()] == [c]
    too_few = client.get("/api/runs?limit=0")
    assert too_few.status_code == 422
    assert too_few.json()["detail"] == "query.limit: Input should be greater than or equal to 1"


def test_a_run_shows_steps_outputs_and_attempts(client: TestClient, hub: Hub) -> None:
    run_id = start(client, "hello", {"name": "ada lovelace"})["id"]
    work(hub)
    run = client.get(f"/api/runs/{run_id}").json()
    assert run["status"] == "succeeded"
    assert [(s["key"], s["status"]) for s in run["steps"]] == [
        ("clean", "succeeded"),
        ("greet", "succeeded"),
        ("sign", "succeeded"),
    ]
    assert run["steps"][0]["output"] == {"name": "Ada Lovelace", "letters": 11}
    assert run["output"]["message"] == f"Hello, Ada Lovelace! (run {run_id[-6:]})"
    assert [len(s["attempt_log"]) for s in run["steps"]] == [1, 1, 1]


def test_an_unknown_run_is_404(client: TestClient) -> None:
    response = client.get("/api/runs/nope")
    assert response.status_code == 404
    assert response.json()["error"] == "RunNotFound"


# ----------------------------------------------------------------- actions
def test_resume_with_edited_input_goes_on_from_the_paused_step(
    client: TestClient, hub: Hub
) -> None:
    run_id = paused_run(client, hub)
    response = client.post(
        f"/api/runs/{run_id}/resume",
        json={"input": {"order_id": "A-1", "amount": 50}, "by": "mallory"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "running"
    work(hub)
    run = client.get(f"/api/runs/{run_id}").json()
    assert run["status"] == "succeeded"
    assert run["output"] == {"order_id": "A-1", "amount": 50, "approved": True}
    assert run["reviews"][0]["resolution"] == "edited"
    assert run["reviews"][0]["resolved_by"] == "ops"  # who is logged in, not what the body says


def test_resume_with_input_failing_the_model_is_422(client: TestClient, hub: Hub) -> None:
    run_id = paused_run(client, hub)
    response = client.post(f"/api/runs/{run_id}/resume", json={"input": {"amount": -1}})
    assert response.status_code == 422
    assert {tuple(e["loc"]) for e in response.json()["errors"]} == {("order_id",), ("amount",)}
    assert client.get(f"/api/runs/{run_id}").json()["status"] == "needs_review"


def test_skip_complete_and_abort_act_on_the_paused_step(client: TestClient, hub: Hub) -> None:
    skipped, completed, aborted = (paused_run(client, hub) for _ in range(3))
    assert client.post(f"/api/runs/{skipped}/skip", json={"reason": "ok"}).status_code == 200
    done = {"order_id": "A-1", "amount": 500, "approved": True}
    bad = client.post(f"/api/runs/{completed}/complete", json={"output": {"amount": 1}})
    assert bad.status_code == 422
    assert client.post(f"/api/runs/{completed}/complete", json={"output": done}).status_code == 200
    response = client.post(f"/api/runs/{aborted}/abort", json={"reason": "withdrawn"})
    assert response.status_code == 200
    assert (response.json()["status"], response.json()["error"]) == ("failed", "withdrawn")
    work(hub)
    assert client.get(f"/api/runs/{skipped}").json()["output"]["approved"] is False
    assert client.get(f"/api/runs/{completed}").json()["output"]["approved"] is True


def test_actions_on_a_run_in_the_wrong_state_are_409(client: TestClient, hub: Hub) -> None:
    queued = start(client, "hello", {"name": "Ada"})["id"]
    for action in ("resume", "skip", "complete"):
        response = client.post(f"/api/runs/{queued}/{action}", json={"output": {}})
        assert response.status_code == 409, (action, response.text)
        assert response.json()["error"] == "RunStateError"
        assert "has no step waiting for review" in response.json()["detail"]
    assert client.post(f"/api/runs/{queued}/cancel", json={}).json()["status"] == "cancelled"
    for action in ("cancel", "abort"):
        response = client.post(f"/api/runs/{queued}/{action}", json={})
        assert response.status_code == 409
        assert "already cancelled" in response.json()["detail"]


def test_actions_on_an_unknown_run_or_an_unknown_action_are_404(
    client: TestClient, hub: Hub
) -> None:
    assert client.post("/api/runs/nope/cancel", json={}).status_code == 404
    run_id = start(client, "hello", {"name": "Ada"})["id"]
    response = client.post(f"/api/runs/{run_id}/restart", json={})
    assert response.status_code == 404
    assert "actions are cancel, abort, resume, skip, complete" in response.json()["detail"]


def test_the_runs_page_escapes_what_it_shows(client: TestClient) -> None:
    start(client, "hello", {"name": "<script>"})
    assert log_in(client, "ops").status_code == 303
    page = client.get("/")
    assert page.status_code == 200
    assert "<h1>Runs</h1>" in page.text
    assert "<script>" not in page.text
