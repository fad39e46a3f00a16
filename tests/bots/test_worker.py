"""The example web bot through real `hub worker --queues browser` processes.

A ``kill -9`` of the worker in the middle of a bot step leaves no Chromium
behind, and the step, run again by the next worker, makes exactly one order
(RELIABILITY 3). The password the bot types reaches neither the database nor
Redis nor the worker's log (RELIABILITY 39, the bot half).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text

from bots.chromium import Found
from tests.bots.conftest import CANARY, USER
from tests.sandbox import RecordsServer
from tests.sandbox.legacy_web import LegacyWebApp
from tests.support import Harness, wait_until
from tests.support.harness import own_redis_db
from tests.support.procs import command_name, descendants, is_alive

pytestmark = [pytest.mark.slow, pytest.mark.browser]

ORDER = {
    "reference": "PO-9001",
    "customer": "Albrecht Metallbau GmbH",
    "postal_code": "10115",
    "amount": "12.00",
}


@pytest.fixture
def legacy() -> Iterator[LegacyWebApp]:
    # a slow autocomplete keeps the bot busy in the middle of its step for a while
    with LegacyWebApp(USER, CANARY, suggest_delay=3.0) as app:
        yield app


@pytest.fixture(params=["embedded", pytest.param("redis+postgres", marks=pytest.mark.services)])
def harness(
    request: pytest.FixtureRequest, tmp_path: Path, legacy: LegacyWebApp, chromium: Found
) -> Iterator[Harness]:
    env = {
        "HUB_FLOWS": "flows.legacy_orders",
        "LEGACY_WEB_URL": legacy.url,
        "HUB_SECRET_LEGACY_WEB": CANARY,
        "HUB_CHROMIUM": chromium.path,
    }
    with RecordsServer() as sandbox:
        if request.param == "embedded":
            h = Harness(tmp_path, sandbox, settings=env)
        else:
            pg_url = request.getfixturevalue("pg_url")
            redis_url = own_redis_db(request.getfixturevalue("redis_url"))
            h = Harness(tmp_path, sandbox, database_url=pg_url, broker_url=redis_url, settings=env)
        try:
            yield h
        finally:
            h.close()


def chromium_of(pid: int) -> list[int]:
    return [p for p in descendants(pid) if command_name(p).startswith(("chrom", "headless"))]


def alive(pids: list[int]) -> list[int]:
    return [pid for pid in pids if is_alive(pid)]


def test_a_worker_killed_mid_bot_step_leaves_no_chromium_and_one_order(
    harness: Harness, legacy: LegacyWebApp
) -> None:
    worker = harness.procs.worker(concurrency=1, queues="browser")
    harness.procs.scheduler()
    run_id = harness.hub.engine.start_run("legacy_orders", ORDER).run_id
    wait_until(lambda: legacy.counts.suggestions >= 1, 60, "the bot to type the customer")
    browsers = chromium_of(worker.pid)
    assert browsers, "the worker's Chromium processes should be its descendants"

    worker.kill()  # kill -9 of the worker's whole process group, mid step

    wait_until(lambda: not alive(browsers), 15, "the killed worker's Chromium to be gone",
               lambda: f"still alive: {alive(browsers)}")  # fmt: skip
    assert legacy.orders == []
    harness.procs.worker(concurrency=1, queues="browser")
    view = harness.wait_status(run_id, timeout=120)
    assert view["output"]["reference"] == "PO-9001"
    assert len(legacy.find("PO-9001")) == 1


def test_the_typed_password_reaches_no_table_no_redis_key_and_no_log(
    harness: Harness, legacy: LegacyWebApp
) -> None:
    worker = harness.procs.worker(concurrency=1, queues="browser")
    run_id = harness.hub.engine.start_run("legacy_orders", {**ORDER, "postal_code": "1234"}).run_id
    view = harness.wait_status(run_id, ("needs_review",), timeout=120)
    assert view["steps"][0]["error"].endswith("Postal code 1234 is not valid")

    engine = create_engine(harness.settings.database)
    try:
        with engine.connect() as conn:
            tables = inspect(conn).get_table_names()
            for table in tables:
                for row in conn.execute(text(f'SELECT * FROM "{table}"')):
                    for value in row:
                        data = value if isinstance(value, bytes) else str(value).encode()
                        assert CANARY.encode() not in data, f"the canary is in table {table}"
            artifacts = conn.execute(text("SELECT name FROM artifacts")).scalars().all()
    finally:
        engine.dispose()
    assert "screenshot.png" in artifacts
    assert CANARY not in worker.log()
    if not harness.settings.embedded_broker:
        import redis

        client = redis.Redis.from_url(harness.settings.broker)
        try:
            for key in client.scan_iter():
                assert CANARY.encode() not in key
                kind = client.type(key)
                values = {
                    b"string": lambda k: [client.get(k)],
                    b"list": lambda k: client.lrange(k, 0, -1),
                    b"hash": lambda k: [*client.hkeys(k), *client.hvals(k)],
                    b"set": lambda k: list(client.smembers(k)),
                    b"zset": lambda k: client.zrange(k, 0, -1),
                }.get(kind, lambda k: [])(key)
                for value in values:
                    assert CANARY.encode() not in (value or b""), f"the canary is in {key!r}"
        finally:
            client.close()
