"""The REST connector in real worker processes, on Redis and PostgreSQL, with the
connection stored in the database (its key encrypted):

- RELIABILITY 1: ``kill -9`` of the worker child in the middle of a connector call;
  the run completes in two attempts with one idempotency key and one effect;
- RELIABILITY 39, the connector half: the connection's key reaches no table (but
  the encrypted one), no Redis key or value, no log line, no evidence.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from cryptography.fernet import Fernet
from sqlalchemy import create_engine, inspect, text

from hub.connections import ConnectionConfig, save
from hub.store import Store
from tests.sandbox import RecordsServer
from tests.sandbox.rest_api import RestSandbox
from tests.support import Harness, kill9, wait_until
from tests.support.harness import own_redis_db

pytestmark = [pytest.mark.slow, pytest.mark.services]

CANARY = "canary-crm-Hk29!w"


@pytest.fixture
def crm() -> Iterator[RestSandbox]:
    with RestSandbox(api_key=CANARY) as sandbox:
        yield sandbox


@pytest.fixture
def harness(tmp_path: Path, crm: RestSandbox, pg_url: str, redis_url: str) -> Iterator[Harness]:
    key = Fernet.generate_key().decode()
    env = {"HUB_FLOWS": "tests.connectors.flows", "HUB_SECRET_KEY": key}
    with RecordsServer() as records:
        h = Harness(
            tmp_path, records, database_url=pg_url, broker_url=own_redis_db(redis_url),
            settings=env,
        )  # fmt: skip
        store = Store(pg_url)
        config = ConnectionConfig.model_validate(
            {"name": "crm", "kind": "rest", "url": crm.url, "backoff": 0.1,
             "auth": {"kind": "api_key", "key": CANARY}}
        )  # fmt: skip
        save(store, h.settings, config, by="test")
        store.engine.dispose()
        try:
            yield h
        finally:
            h.close()


def attempts(view: dict[str, Any], key: str) -> list[dict[str, Any]]:
    return list(next(s for s in view["steps"] if s["key"] == key)["attempt_log"])


def test_1_kill_9_mid_connector_call_completes_once_with_one_key(
    harness: Harness, crm: RestSandbox
) -> None:
    worker = harness.procs.worker(concurrency=2)
    harness.procs.scheduler()
    crm.delay = 2.0
    run_id = harness.hub.engine.start_run("push_order", {"ref": "PO-1", "total": 5}).run_id

    def calling() -> dict[str, Any] | None:
        found = attempts(harness.view(run_id), "push")
        return found[0] if found and found[0]["status"] == "running" else None

    wait_until(calling, 30, "the step to start its call", worker.tail)
    time.sleep(0.5)  # inside the 2 s the CRM takes to answer
    assert worker.children(), "the worker should have pool processes"
    for child in worker.children():
        kill9(child)
    crm.delay = 0

    view = harness.wait_status(run_id, timeout=60)
    tries = attempts(view, "push")
    assert [a["status"] for a in tries] == ["lost", "succeeded"], tries
    assert {a["idempotency_key"] for a in tries} == {f"{run_id}:push"}
    assert crm.effects(f"{run_id}/push") == 1
    assert crm.keys[f"{run_id}/push"] == [f"{run_id}:push"]
    sent = [c.idempotency_key for c in crm.calls if c.path == "/key/orders"]
    assert sent == [f"{run_id}:push"] * len(sent) and 1 <= len(sent) <= 2


def test_39_the_connections_key_is_found_nowhere_but_encrypted(
    harness: Harness, crm: RestSandbox, redis_url: str
) -> None:
    worker = harness.procs.worker(concurrency=1)
    good = harness.hub.engine.start_run("push_order", {"ref": "PO-2"}).run_id
    bad = harness.hub.engine.start_run("refused_order", {}).run_id
    harness.wait_status(good, timeout=60)
    view = harness.wait_status(bad, ("needs_review",), timeout=60)
    (review,) = view["reviews"]
    assert "The body must be a JSON object" in review["message"]

    engine = create_engine(harness.settings.database)
    try:
        with engine.connect() as conn:
            evidence = conn.execute(
                text("SELECT evidence FROM review_items WHERE run_id = :r"), {"r": bad}
            ).scalar_one()
            assert evidence["request"]["headers"]["x-api-key"] == "[redacted]"
            for table in inspect(conn).get_table_names():
                for row in conn.execute(text(f'SELECT * FROM "{table}"')):
                    assert CANARY not in repr(tuple(row)), f"the key is readable in {table}"
    finally:
        engine.dispose()
    client = redis.Redis.from_url(harness.settings.broker_url or "")
    for key in client.scan_iter("*"):
        kind = client.type(key).decode()
        dump = client.dump(key) or b""
        assert CANARY.encode() not in key + dump, f"the key is in redis {key!r} ({kind})"
    client.close()
    assert CANARY not in worker.log() + harness.procs.logs()
