"""End to end through real `hub worker` processes, on the embedded default and on services.

Embedded: SQLite plus Celery's filesystem transport under HUB_HOME, no server.
Services: PostgreSQL and Redis on 127.0.0.1. Steps change a sandbox REST
system with their idempotency key; statuses are read from SQL.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.sandbox import RecordsServer
from tests.support import Harness
from tests.support.harness import own_redis_db

pytestmark = pytest.mark.slow


@pytest.fixture
def sandbox() -> Iterator[RecordsServer]:
    with RecordsServer() as server:
        yield server


@pytest.fixture(params=["embedded", pytest.param("redis+postgres", marks=pytest.mark.services)])
def harness(
    request: pytest.FixtureRequest, tmp_path: Path, sandbox: RecordsServer
) -> Iterator[Harness]:
    if request.param == "embedded":
        h = Harness(tmp_path, sandbox)
    else:
        pg_url = request.getfixturevalue("pg_url")
        redis_url = own_redis_db(request.getfixturevalue("redis_url"))
        h = Harness(tmp_path, sandbox, database_url=pg_url, broker_url=redis_url)
    try:
        yield h
    finally:
        h.close()


def test_runs_pass_through_real_workers_with_one_effect_per_step(harness: Harness) -> None:
    harness.procs.worker(concurrency=2)
    names = ["ada", "grace", "alan", "edsger"]
    runs = {harness.start(name): name for name in names}

    views = harness.wait_all(runs, timeout=30)

    for view in views:
        run_id = view["id"]
        assert [s["key"] for s in view["steps"]] == ["a", "b", "c"]
        assert all(s["status"] == "succeeded" and s["attempts"] == 1 for s in view["steps"])
        assert view["output"]["name"] == runs[run_id]
        assert len(view["output"]["ids"]) == 3
        harness.assert_effects_once(run_id)
        for s in view["steps"]:
            (attempt,) = s["attempt_log"]
            key = attempt["idempotency_key"]
            assert key == f"{run_id}:{s['key']}"
            assert [c.key for c in harness.sandbox.calls_for_ref(f"{run_id}/{s['key']}")] == [key]


def test_cli_reads_the_finished_run_from_sql(harness: Harness) -> None:
    harness.procs.worker(concurrency=1)
    done = harness.procs.cli("run", "chain", "--input", '{"name": "ada"}', "--wait", "--json")
    assert done.returncode == 0, done.stderr + harness.diagnostics()
    view = json.loads(done.stdout)
    assert view["status"] == "succeeded"

    shown = harness.procs.cli("runs", "show", view["id"], "--json")
    assert shown.returncode == 0, shown.stderr
    stored = json.loads(shown.stdout)
    assert stored["status"] == "succeeded"
    assert stored["output"] == view["output"]
    harness.assert_effects_once(view["id"])


def test_a_transient_failure_of_the_system_is_retried_with_the_same_key(harness: Harness) -> None:
    harness.procs.worker(concurrency=1)
    harness.procs.scheduler()
    harness.sandbox.fail(1)  # the first call anyone makes gets a 503 and changes nothing

    run_id = harness.start()
    view = harness.wait_status(run_id, timeout=20)

    (a, b, c) = (step["attempt_log"] for step in view["steps"])
    assert [x["status"] for x in a] == ["failed", "succeeded"]
    assert a[0]["error_kind"] == "transient"
    assert {x["idempotency_key"] for x in a} == {f"{run_id}:a"}
    assert [len(b), len(c)] == [1, 1]
    harness.assert_effects_once(run_id)
