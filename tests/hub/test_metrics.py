"""``GET /metrics``: the hub's numbers read from SQL (and Redis) at scrape time, and who may read them.

Runs, attempts, review items and webhook deliveries are made through the
engine (``LocalHub``, with a frozen clock that the steps move, so each
attempt takes a known time) and through ``POST /hooks/...``; every scrape is
parsed with ``prometheus_client``'s own parser and compared with exact values.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families
from pydantic import BaseModel, SecretStr
from sqlalchemy import text

from hub import BusinessError, Flow, StepContext, TransientError, Webhook, step
from hub.metrics import BUCKETS, WINDOW_ATTEMPTS
from hub.registry import Registry
from hub.runtime import Hub
from hub.settings import Settings
from hub.testing import LocalHub
from hub.web import create_app
from hub.web import metrics as metrics_route
from tests.web.apps import TestClient

HOOK_TOKEN = "metrics-hook-token-51c9"
LOOPBACK = ("127.0.0.1", 40000)
REMOTE = ("10.1.2.3", 40000)


# ------------------------------------------------------------------ flows
class Order(BaseModel):
    order_id: str
    amount: int = 1
    took: float = 0.0
    flaky: bool = False
    retry_after: float = 1.0


#: the hub whose clock the steps move (set by the ``hub`` fixture)
CURRENT: list[LocalHub] = []


def spend(seconds: float) -> None:
    """Make the running attempt take ``seconds`` on the hub's (frozen) clock."""
    if CURRENT:
        CURRENT[-1].advance(seconds)


@step(retries=2, backoff=1.0)
def check(ctx: StepContext, order: Order) -> Order:
    spend(order.took)
    if order.flaky and ctx.attempt == 1:
        raise TransientError("order system busy", retry_after=order.retry_after)
    if order.amount > 100:
        raise BusinessError(f"amount {order.amount} is over the limit of 100")
    return order


@step(retries=0)
def book(order: Order) -> Order:
    spend(2.0)
    return order


@step(retries=0, queue="reports")
def report(order: Order) -> Order:
    return order


orders = Flow(
    "orders",
    [check, book],
    review_due=timedelta(minutes=5),
    triggers=[Webhook("orders-in", verify="token", secret="env:METRICS_TEST_HOOK_TOKEN")],
)
reports = Flow("reports", [report])
REGISTRY = Registry([orders, reports])


# ---------------------------------------------------------------- helpers
def app_for(hub: Any, **kw: Any) -> FastAPI:
    """The web app around ``hub``, with the metrics router (added here if the app lacks it)."""
    app = create_app(hub, **kw)
    if not any(getattr(r, "path", None) == "/metrics" for r in app.routes):
        app.include_router(metrics_route.router)
    return app


def samples(body: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Every sample of a scrape: name -> sorted label pairs -> value."""
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def by(found: dict[str, Any], name: str, *labels: str) -> dict[Any, float]:
    """The samples called ``name``, keyed by the values of ``labels`` (one label: the value)."""
    out: dict[Any, float] = {}
    for pairs, value in found.get(name, {}).items():
        got = dict(pairs)
        key = tuple(got[label] for label in labels)
        out[key[0] if len(key) == 1 else key] = value
    return out


def scrape(client: TestClient) -> dict[str, Any]:
    response = client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return samples(response.text)


def histogram(found: dict[str, Any], flow: str, step_name: str, status: str) -> dict[str, float]:
    """One series of ``hub_step_duration_seconds``: bucket bound -> count, with sum and count."""
    want = {"flow": flow, "step": step_name, "status": status}
    out: dict[str, float] = {}
    for pairs, value in found.get("hub_step_duration_seconds_bucket", {}).items():
        got = dict(pairs)
        if {k: got[k] for k in want} == want:
            out[got["le"]] = value
    for suffix in ("gsum", "gcount"):
        for pairs, value in found.get(f"hub_step_duration_seconds_{suffix}", {}).items():
            if dict(pairs) == want:
                out[suffix] = value
    return out


def cumulative(durations: list[float]) -> dict[str, float]:
    """What a gauge histogram of ``durations`` shows, computed here from the bucket bounds."""
    out = {repr(float(b)): float(sum(d <= b for d in durations)) for b in BUCKETS}
    out["+Inf"] = float(len(durations))
    out["gcount"] = float(len(durations))
    out["gsum"] = round(sum(durations), 3)
    return out


# --------------------------------------------------------------- fixtures
@pytest.fixture(autouse=True)
def hook_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METRICS_TEST_HOOK_TOKEN", HOOK_TOKEN)


@pytest.fixture
def hub(local_hub: Callable[..., LocalHub]) -> Iterator[LocalHub]:
    made = local_hub(REGISTRY, settings=Settings(broker_url=None, metrics_token=None))
    made.freeze()
    CURRENT.append(made)
    yield made
    CURRENT.remove(made)


@pytest.fixture
def client(hub: LocalHub) -> Iterator[TestClient]:
    with TestClient(app_for(hub, clock=hub.engine.clock), client=LOOPBACK) as c:
        yield c


# ------------------------------------------------------------------ tests
def test_an_empty_hub_reports_zero_for_every_declared_flow_queue_and_hook(
    client: TestClient,
) -> None:
    found = scrape(client)

    assert by(found, "hub_runs_started_total", "flow") == {"orders": 0, "reports": 0}
    assert by(found, "hub_runs_finished_total", "flow", "status") == {
        (f, s): 0 for f in ("orders", "reports") for s in ("cancelled", "failed", "succeeded")
    }
    assert by(found, "hub_queue_ready_steps", "queue") == {
        "browser": 0,
        "default": 0,
        "desktop": 0,
        "reports": 0,
    }
    assert by(found, "hub_review_items_open", "flow") == {"orders": 0, "reports": 0}
    assert by(found, "hub_webhook_deliveries_total", "hook", "result") == {
        ("orders-in", "accepted"): 0,
        ("orders-in", "duplicate"): 0,
    }
    assert by(found, "hub_webhook_rejections_total", "hook", "reason") == {}
    assert "hub_step_duration_seconds_bucket" not in found
    assert "hub_broker_up" not in found  # the embedded broker has no Redis to ask
    assert found["hub_metrics_scrape_duration_seconds"][()] > 0


def test_runs_steps_reviews_and_webhooks_are_counted_exactly(
    hub: LocalHub, client: TestClient
) -> None:
    def run(order_id: str, **fields: Any) -> str:
        return hub.start("orders", {"order_id": order_id, **fields})

    # three that succeed; C's first attempt fails after 7 s and is retried a second later
    for order_id in ("A", "B"):
        run(order_id, took=0.3)
    run("C", took=7.0, flaky=True)
    hub.drain()
    hub.advance(2)
    hub.drain()
    # one to review, one aborted from review, one cancelled before it ran
    review_run = run("D", amount=500, took=0.02)
    aborted = run("F", amount=500, took=0.02)
    hub.drain()
    hub.engine.abort(aborted, by="tests")
    hub.engine.cancel(run("E"), by="tests")
    # webhooks: one accepted, the same body again (a duplicate), one with a wrong token
    body = {"order_id": "I", "took": 0.0}
    bearer = {"Authorization": f"Bearer {HOOK_TOKEN}"}
    assert client.post("/hooks/orders-in", json=body, headers=bearer).status_code == 202
    assert client.post("/hooks/orders-in", json=body, headers=bearer).status_code == 200
    wrong = {"Authorization": "Bearer not-the-token"}
    assert client.post("/hooks/orders-in", json=body, headers=wrong).status_code == 401
    hub.drain()
    # one waiting an hour for its retry, one not taken by a worker yet
    run("H", took=0.1, flaky=True, retry_after=3600)
    hub.drain()
    run("G")

    found = scrape(client)

    assert by(found, "hub_runs_started_total", "flow") == {"orders": 9, "reports": 0}
    finished = by(found, "hub_runs_finished_total", "flow", "status")
    assert {k: v for k, v in finished.items() if k[0] == "orders"} == {
        ("orders", "succeeded"): 4,
        ("orders", "failed"): 1,
        ("orders", "cancelled"): 1,
    }
    active = by(found, "hub_runs_active", "flow", "status")
    assert {k: v for k, v in active.items() if k[0] == "orders"} == {
        ("orders", "queued"): 1,
        ("orders", "running"): 1,
        ("orders", "needs_review"): 1,
    }
    assert by(found, "hub_queue_ready_steps", "queue")["default"] == 1
    assert by(found, "hub_queue_delayed_steps", "queue")["default"] == 1
    assert by(found, "hub_queue_running_steps", "queue")["default"] == 0
    assert by(found, "hub_review_items_open", "flow") == {"orders": 1, "reports": 0}
    assert by(found, "hub_review_items_overdue", "flow") == {"orders": 0, "reports": 0}
    assert by(found, "hub_webhook_deliveries_total", "hook", "result") == {
        ("orders-in", "accepted"): 1,
        ("orders-in", "duplicate"): 1,
    }
    assert by(found, "hub_webhook_rejections_total", "hook", "reason") == {
        ("orders-in", "signature"): 1
    }
    # every attempt's time as the steps spent it: A, B, C's retry, I succeeded; C, D, F, H failed
    assert histogram(found, "orders", "check", "succeeded") == cumulative([0.3, 0.3, 7.0, 0.0])
    assert histogram(found, "orders", "check", "failed") == cumulative([7.0, 0.02, 0.02, 0.1])
    assert histogram(found, "orders", "book", "succeeded") == cumulative([2.0] * 4)
    assert {dict(k)["step"] for k in found["hub_step_duration_seconds_gcount"]} == {
        "check",
        "book",
    }

    # past the review's due time (5 minutes) it is overdue; the retry an hour out still waits
    hub.advance(6 * 60)
    later = scrape(client)
    assert by(later, "hub_review_items_overdue", "flow")["orders"] == 1
    assert by(later, "hub_queue_delayed_steps", "queue")["default"] == 1
    # a person completes the review and a worker takes G: both succeed, H still waits
    hub.engine.complete(review_run, {"order_id": "D", "amount": 500}, by="tests")
    hub.drain()
    done = scrape(client)
    assert by(done, "hub_review_items_open", "flow")["orders"] == 0
    assert by(done, "hub_review_items_overdue", "flow")["orders"] == 0
    assert by(done, "hub_runs_started_total", "flow")["orders"] == 9
    assert by(done, "hub_runs_finished_total", "flow", "status")[("orders", "succeeded")] == 6
    active = by(done, "hub_runs_active", "flow", "status")
    assert {k: v for k, v in active.items() if k[0] == "orders"} == {
        ("orders", "queued"): 0,
        ("orders", "running"): 1,
        ("orders", "needs_review"): 0,
    }
    assert by(done, "hub_queue_ready_steps", "queue")["default"] == 0


def test_step_durations_cover_the_last_hour_only(hub: LocalHub, client: TestClient) -> None:
    hub.start("orders", {"order_id": "old", "took": 0.3})
    hub.drain()
    hub.advance(30 * 60)
    hub.start("orders", {"order_id": "new", "took": 0.7})
    hub.drain()

    assert histogram(scrape(client), "orders", "check", "succeeded") == cumulative([0.3, 0.7])
    hub.advance(31 * 60)  # the first run's attempts are now over an hour old
    assert histogram(scrape(client), "orders", "check", "succeeded") == cumulative([0.7])
    hub.advance(60 * 60)
    assert "hub_step_duration_seconds_bucket" not in scrape(client)


def test_step_durations_read_at_most_the_newest_attempts(
    hub: LocalHub, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("hub.metrics.WINDOW_ATTEMPTS", 3)
    for n, took in enumerate([9.0, 0.3, 0.4, 0.5]):
        hub.start("orders", {"order_id": f"N{n}", "took": took})
        hub.drain()

    # the newest three attempts: the last run's book and check, and the book before it
    found = scrape(client)
    assert histogram(found, "orders", "check", "succeeded") == cumulative([0.5])
    assert histogram(found, "orders", "book", "succeeded") == cumulative([2.0, 2.0])
    assert WINDOW_ATTEMPTS >= 1000  # the real cap is not this small


def test_steps_of_other_queues_are_counted_under_their_queue(
    hub: LocalHub, client: TestClient
) -> None:
    hub.start("reports", {"order_id": "R-1"})
    hub.start("reports", {"order_id": "R-2"})

    found = scrape(client)

    assert by(found, "hub_queue_ready_steps", "queue") == {
        "browser": 0,
        "default": 0,
        "desktop": 0,
        "reports": 2,
    }
    assert by(found, "hub_runs_active", "flow", "status")[("reports", "queued")] == 2


def test_openmetrics_is_served_when_asked_for(client: TestClient, hub: LocalHub) -> None:
    hub.start("orders", {"order_id": "A", "took": 0.3})
    hub.drain()

    response = client.get(
        "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
    )

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert "# TYPE hub_step_duration_seconds gaugehistogram" in response.text
    assert "# TYPE hub_runs_started counter" in response.text
    assert response.text.endswith("# EOF\n")


# ----------------------------------------------------------------- access
@pytest.fixture
def app_with_token(tmp_path: Path) -> Iterator[Callable[[str | None], FastAPI]]:
    made: list[LocalHub] = []

    def build(token: str | None) -> FastAPI:
        settings = Settings(metrics_token=SecretStr(token) if token is not None else None)
        hub = LocalHub(REGISTRY, settings=settings)
        made.append(hub)
        return app_for(hub)

    yield build
    for hub in made:
        hub.close()


@pytest.mark.parametrize(
    ("client_host", "headers", "status"),
    [
        (LOOPBACK, {}, 200),
        (("::1", 40000), {}, 200),
        (("::ffff:127.0.0.1", 40000), {}, 200),
        (REMOTE, {}, 404),
        (("192.168.0.10", 40000), {"Authorization": "Bearer anything"}, 404),
        (LOOPBACK, {"X-Forwarded-For": "203.0.113.9"}, 404),  # a proxy on this machine
        (LOOPBACK, {"Forwarded": "for=203.0.113.9"}, 404),
        (LOOPBACK, {"X-Real-IP": "203.0.113.9"}, 404),
    ],
)
def test_without_a_token_only_this_machine_may_scrape(
    app_with_token: Callable[[str | None], FastAPI],
    client_host: tuple[str, int],
    headers: dict[str, str],
    status: int,
) -> None:
    with TestClient(app_with_token(None), client=client_host) as c:
        response = c.get("/metrics", headers=headers)
    assert response.status_code == status, response.text
    if status == 200:
        assert "hub_runs_started_total" in response.text
    else:
        assert "hub_" not in response.text


@pytest.mark.parametrize(
    ("client_host", "headers", "status"),
    [
        (REMOTE, {"Authorization": "Bearer s3cret-metrics"}, 200),
        (REMOTE, {"Authorization": "bearer  s3cret-metrics "}, 200),
        (REMOTE, {}, 401),
        (REMOTE, {"Authorization": "Bearer s3cret-metric"}, 401),
        (REMOTE, {"Authorization": "Basic s3cret-metrics"}, 401),
        (REMOTE, {"Authorization": "Bearer "}, 401),
        (LOOPBACK, {"X-Forwarded-For": "203.0.113.9"}, 401),
        (LOOPBACK, {}, 200),
    ],
)
def test_with_a_token_others_must_send_it(
    app_with_token: Callable[[str | None], FastAPI],
    client_host: tuple[str, int],
    headers: dict[str, str],
    status: int,
) -> None:
    with TestClient(app_with_token("s3cret-metrics"), client=client_host) as c:
        response = c.get("/metrics", headers=headers)
    assert response.status_code == status, response.text
    if status == 401:
        assert response.headers["www-authenticate"] == "Bearer"
        assert "hub_" not in response.text
    else:
        assert "hub_runs_started_total" in response.text


def test_an_empty_token_setting_opens_nothing(
    app_with_token: Callable[[str | None], FastAPI],
) -> None:
    with TestClient(app_with_token(""), client=REMOTE) as c:
        assert c.get("/metrics", headers={"Authorization": "Bearer "}).status_code == 404
        assert c.get("/metrics").status_code == 404


def test_a_database_that_does_not_answer_is_a_503(hub: LocalHub, client: TestClient) -> None:
    assert client.get("/metrics").status_code == 200
    with hub.store.engine.begin() as conn:
        conn.execute(text("DROP TABLE review_comments"))
        conn.execute(text("DROP TABLE artifacts"))
        conn.execute(text("DROP TABLE review_items"))

    response = client.get("/metrics")

    assert response.status_code == 503
    assert "database not ready" in response.json()["detail"]


# ------------------------------------------------------------------ Redis
@pytest.mark.services
def test_redis_queue_lengths_are_read_from_the_broker(
    pg_url: str, redis_url: str, tmp_path: Path
) -> None:
    settings = Settings(home=tmp_path / "home", database_url=pg_url, broker_url=redis_url)
    hub = Hub(settings, registry=REGISTRY)
    try:
        hub.store.create_all()
        for n in range(3):
            hub.engine.start_run("orders", {"order_id": f"Q{n}"})
        hub.engine.start_run("reports", {"order_id": "R"})
        with TestClient(app_for(hub), client=LOOPBACK) as c:
            found = scrape(c)
        assert by(found, "hub_broker_up", *()) == {(): 1}
        assert by(found, "hub_broker_queue_messages", "queue") == {
            "browser": 0,
            "default": 3,
            "desktop": 0,
            "reports": 1,
        }
        assert by(found, "hub_queue_ready_steps", "queue")["default"] == 3
    finally:
        hub.close()


def test_a_redis_that_does_not_answer_is_broker_down_not_a_failed_scrape(
    hub: LocalHub, tmp_path: Path
) -> None:
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    hub.engine.settings = hub.engine.settings.model_copy(
        update={"broker_url": f"redis://127.0.0.1:{port}/0"}
    )
    hub.start("orders", {"order_id": "A"})
    with TestClient(app_for(hub, clock=hub.engine.clock), client=LOOPBACK) as c:
        found = scrape(c)

    assert by(found, "hub_broker_up", *()) == {(): 0}
    assert "hub_broker_queue_messages" not in found
    assert by(found, "hub_queue_ready_steps", "queue")["default"] == 1
