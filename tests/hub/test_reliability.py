"""Faults the hub must survive (/work/shared/RELIABILITY.md), each through real processes.

Every test names its item number. "Once" means the sandbox REST system saw
one effective change for the step's ``run_id/step`` ref, whatever the number
of attempts: repeated attempts carry the same ``Idempotency-Key``. Statuses
are read from SQL.
"""

from __future__ import annotations

import json
import re
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from hub.engine import Engine
from hub.models import Attempt
from hub.registry import Registry
from tests.conftest import need
from tests.sandbox import RecordsServer
from tests.support import Harness, RedisServer, kill9, wait_until
from tests.support.harness import FLOWS, own_redis_db
from tests.support.redis_server import redis_server_binary

pytestmark = pytest.mark.slow

BACKENDS = ["embedded", pytest.param("redis+postgres", marks=pytest.mark.services)]


@pytest.fixture
def sandbox() -> Iterator[RecordsServer]:
    with RecordsServer() as server:
        yield server


@pytest.fixture
def make(
    request: pytest.FixtureRequest, tmp_path: Path, sandbox: RecordsServer
) -> Iterator[Callable[..., Harness]]:
    """``make(backend, broker_url=..., HUB_X=...)``: a harness on that backend."""
    made: list[Harness] = []

    def build(backend: str, *, broker_url: str | None = None, **settings: str) -> Harness:
        folder = tmp_path / f"h{len(made)}"
        if backend == "embedded":
            h = Harness(folder, sandbox, settings=settings)
        else:
            pg_url = request.getfixturevalue("pg_url")
            broker = broker_url or own_redis_db(request.getfixturevalue("redis_url"))
            h = Harness(folder, sandbox, database_url=pg_url, broker_url=broker, settings=settings)
        made.append(h)
        return h

    try:
        yield build
    finally:
        for h in made:
            h.close()


@pytest.fixture(params=BACKENDS)
def harness(request: pytest.FixtureRequest, make: Callable[..., Harness]) -> Harness:
    return make(request.param)


def _marker(h: Harness, name: str) -> Path:
    return h.folder / f"{name}.marker"


def _wait_marker(h: Harness, marker: Path, run_id: str, timeout: float = 20) -> int:
    """Wait until a holding step wrote its marker; return the pid of the process running it."""
    text = wait_until(
        lambda: marker.exists() and marker.read_text(),
        timeout,
        f"the step to write {marker.name} from inside its call",
        lambda: h.diagnostics(run_id),
    )
    return int(text)


def _attempts(view: dict[str, Any], key: str) -> list[dict[str, Any]]:
    step = next(s for s in view["steps"] if s["key"] == key)
    return list(step["attempt_log"])


# ------------------------------------------------------------------ item 1
def test_1_kill_9_of_the_worker_child_mid_step_reruns_it_once_with_the_same_key(
    harness: Harness,
) -> None:
    worker = harness.procs.worker(concurrency=2)
    marker = _marker(harness, "b")
    run_id = harness.start(behave={"b": {"hold": str(marker), "on_attempts": [1]}})
    child = _wait_marker(harness, marker, run_id)
    assert child in worker.children(), f"step ran in {child}, not a child of {worker.pid}"

    kill9(child)

    view = harness.wait_status(run_id, timeout=30)
    attempts = _attempts(view, "b")
    assert len(attempts) == 2, attempts
    assert [a["status"] for a in attempts] == ["lost", "succeeded"]
    assert {a["idempotency_key"] for a in attempts} == {f"{run_id}:b"}
    calls = harness.sandbox.calls_for_ref(f"{run_id}/b")
    assert [c.key for c in calls] == [f"{run_id}:b"] * 2
    assert [c.replay for c in calls] == [False, True]
    harness.assert_effects_once(run_id)
    assert worker.running(), "the worker's main process must survive its child's death"


# ------------------------------------------------------------------ item 2
def test_2_kill_9_of_the_whole_worker_reruns_the_step_in_a_new_worker_within_the_lease(
    harness: Harness,
) -> None:
    harness.procs.scheduler()
    worker = harness.procs.worker(concurrency=2)
    marker = _marker(harness, "b")
    run_id = harness.start(behave={"b": {"hold": str(marker), "on_attempts": [1]}})
    _wait_marker(harness, marker, run_id)

    worker.kill()  # main process and pool children; the group is checked to be gone
    harness.procs.worker(concurrency=2)
    ready = time.monotonic()

    view = harness.wait_status(run_id, timeout=30)
    took = time.monotonic() - ready
    window = harness.settings.lease_seconds + harness.settings.tick_seconds
    assert took < window + 3, f"re-run {took:.1f} s after the new worker, lease window {window}"
    attempts = _attempts(view, "b")
    assert [a["status"] for a in attempts] == ["lost", "succeeded"]
    assert {a["idempotency_key"] for a in attempts} == {f"{run_id}:b"}
    assert len(harness.sandbox.calls_for_ref(f"{run_id}/b")) == 2
    harness.assert_effects_once(run_id)


# ------------------------------------------------------------------ item 4
def test_4_crash_after_the_side_effect_before_the_commit_reruns_with_the_same_key(
    harness: Harness,
) -> None:
    harness.procs.worker(concurrency=2)
    run_id = harness.start(behave={"b": {"exit_after_effect": True, "on_attempts": [1]}})

    view = harness.wait_status(run_id, timeout=30)

    attempts = _attempts(view, "b")
    assert [a["status"] for a in attempts] == ["lost", "succeeded"]
    assert {a["idempotency_key"] for a in attempts} == {f"{run_id}:b"}
    calls = harness.sandbox.calls_for_ref(f"{run_id}/b")
    assert [(c.attempt, c.key, c.replay) for c in calls] == [
        (1, f"{run_id}:b", False),
        (2, f"{run_id}:b", True),
    ]
    harness.assert_effects_once(run_id)


# ------------------------------------------------------------------ item 5
def test_5_a_step_committed_but_never_published_is_published_by_the_reconciler(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The crash window, reproduced exactly: step a runs in this process, commits
    # its output and b's row in one transaction, and b's message is never sent.
    monkeypatch.setenv("HUB_TEST_SANDBOX_URL", harness.sandbox.url)
    lost: list[tuple[str, str, float | None]] = []
    engine = Engine(
        harness.hub.store,
        Registry.load([FLOWS]),
        lambda step_id, queue, countdown: lost.append((step_id, queue, countdown)),
        harness.settings.model_copy(update={"inline_steps": 0}),
    )
    run_id = engine.start_run("chain", {"name": "ada"}).run_id
    engine.execute(lost[0][0])
    assert len(lost) == 2, lost
    before = harness.view(run_id)
    assert [(s["key"], s["status"]) for s in before["steps"]] == [
        ("a", "succeeded"),
        ("b", "ready"),
    ]

    harness.procs.worker(concurrency=2)
    harness.procs.scheduler()
    view = harness.wait_status(run_id, timeout=20)

    assert [(s["key"], s["attempts"]) for s in view["steps"]] == [("a", 1), ("b", 1), ("c", 1)]
    assert len(harness.sandbox.calls_for_ref(f"{run_id}/a")) == 1, "step a ran again"
    harness.assert_effects_once(run_id)


# ----------------------------------------------------------------- item 12
def test_12_a_step_that_kills_its_own_process_goes_to_review_after_max_losses(
    harness: Harness,
) -> None:
    worker = harness.procs.worker(concurrency=2)
    harness.procs.scheduler()
    run_id = harness.start(behave={"b": {"kill_self": True}})

    view = harness.wait_status(run_id, ["needs_review"], timeout=40)

    limit = harness.settings.max_losses
    time.sleep(2 * harness.settings.lease_seconds)  # long enough for a loop to show
    view = harness.view(run_id)
    assert view["status"] == "needs_review"
    attempts = _attempts(view, "b")
    assert [a["status"] for a in attempts] == ["lost"] * limit, attempts
    (review,) = view["reviews"]
    assert review["step"] == "b" and review["reason"] == "lost"
    assert "worker lost repeatedly" in review["message"]
    assert [s["key"] for s in view["steps"]] == ["a", "b"]
    assert worker.running()


# ----------------------------------------------------------------- item 14
def test_14_a_business_error_in_a_middle_step_opens_one_review_and_stops_the_run(
    harness: Harness,
) -> None:
    harness.procs.worker(concurrency=2)
    harness.procs.scheduler()
    run_id = harness.start(behave={"b": {"business": "customer 42 is blocked"}})

    harness.wait_status(run_id, ["needs_review"], timeout=20)
    time.sleep(5 * harness.settings.tick_seconds + 0.5)  # ticks pass; nothing may move
    view = harness.view(run_id)

    assert view["status"] == "needs_review"
    assert [(s["key"], s["status"]) for s in view["steps"]] == [
        ("a", "succeeded"),
        ("b", "needs_review"),
    ]
    assert [a["status"] for a in _attempts(view, "b")] == ["failed"]
    (review,) = view["reviews"]
    assert (review["step"], review["status"], review["reason"]) == ("b", "open", "business")
    assert "customer 42 is blocked" in review["message"]
    assert harness.sandbox.refs(run_id) == {f"{run_id}/a": 1}
    with harness.hub.store.read() as s:
        running = s.scalar(
            select(func.count()).select_from(Attempt).where(Attempt.status == "running")
        )
    assert running == 0


# ----------------------------------------------------------------- item 16
def test_16_runs_aborted_or_cancelled_while_workers_are_down_have_no_effect_later(
    harness: Harness,
) -> None:
    aborted = harness.start("aborted")
    cancelled = harness.start("cancelled")
    harness.hub.engine.abort(aborted, by="test", reason="given up while workers were down")
    harness.hub.engine.cancel(cancelled, by="test")

    worker = harness.procs.worker(concurrency=2)
    harness.procs.scheduler()
    control = harness.start("control")
    harness.wait_status(control, timeout=20)
    worker.wait_for_log("] received", count=3, timeout=10)  # the two stale messages too
    time.sleep(1.0)

    for run_id, status in ((aborted, "failed"), (cancelled, "cancelled")):
        view = harness.view(run_id)
        assert view["status"] == status
        assert all(s["attempts"] == 0 for s in view["steps"]), view["steps"]
        assert harness.sandbox.refs(run_id) == {}, harness.sandbox.refs(run_id)
    harness.assert_effects_once(control)


# ------------------------------------------------------------- items 10, 11
@pytest.fixture
def short_visibility(make: Callable[..., Harness]) -> Harness:
    """Redis with a 3 s visibility timeout: unacked messages come back after 3 s."""
    return make("redis+postgres", HUB_VISIBILITY_TIMEOUT="3")


@pytest.mark.services
def test_10_a_step_longer_than_the_visibility_timeout_runs_once(short_visibility: Harness) -> None:
    h = short_visibility
    worker = h.procs.worker(concurrency=2)
    h.procs.scheduler()
    slow = h.settings.visibility_timeout * 2.5
    run_id = h.start(behave={"b": {"sleep": slow}})

    view = h.wait_status(run_id, timeout=slow + 20)

    assert [s["attempts"] for s in view["steps"]] == [1, 1, 1]
    assert len(h.sandbox.calls_for_ref(f"{run_id}/b")) == 1
    h.assert_effects_once(run_id)
    # the broker did hand the message out again while the step ran: the lease said no
    assert worker.log().count("] received") >= 2, worker.tail()


@pytest.mark.services
def test_11_a_retry_wait_longer_than_the_visibility_timeout_runs_once_when_due(
    short_visibility: Harness,
) -> None:
    h = short_visibility
    worker = h.procs.worker(concurrency=2)
    h.procs.scheduler()
    wait = h.settings.visibility_timeout * 2
    run_id = h.start(behave={"b": {"transient_after": wait, "on_attempts": [1]}})

    view = h.wait_status(run_id, timeout=wait + 20)

    attempts = _attempts(view, "b")
    assert [a["status"] for a in attempts] == ["failed", "succeeded"]
    calls = h.sandbox.calls_for_ref(f"{run_id}/b")
    assert [c.attempt for c in calls] == [1, 2], calls
    late = calls[1].at - calls[0].at
    assert wait <= late < wait + 3, f"second attempt {late:.2f} s after the first, due {wait}"
    h.assert_effects_once(run_id)
    # the wait lived in SQL, not in an ETA message the broker handed out again and again
    received = re.findall(r"Task hub\.step\[([0-9a-f-]+)\] received", worker.log())
    assert len(received) == len(set(received)), worker.tail()


# ------------------------------------------------------------------ item 8
@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own, without persistence, to kill and restart."""
    if redis_server_binary() is None:
        need("redis-server", "not installed; apt-get install redis-server")
    server = RedisServer(tmp_path / "redis").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.services
def test_8_redis_killed_and_restarted_empty_mid_run_every_run_finishes_with_effects_once(
    make: Callable[..., Harness], private_redis: RedisServer
) -> None:
    h = make("redis+postgres", broker_url=private_redis.url)
    worker = h.procs.worker(concurrency=2)
    scheduler = h.procs.scheduler()
    runs = [h.start(f"r{i}", behave={"b": {"sleep": 1.0}}) for i in range(6)]

    def busy_with_some_queued() -> bool:
        states = [h.view(r)["status"] for r in runs]
        return states.count("running") >= 1 and states.count("queued") >= 2

    wait_until(busy_with_some_queued, 15, "a run inside b and two still queued", h.diagnostics)
    private_redis.kill()  # every queued message is gone with it
    time.sleep(2.5)  # the running steps finish meanwhile; their acks and publishes fail
    private_redis.start()

    views = h.wait_all(runs, timeout=60)

    for view in views:
        h.assert_effects_once(view["id"])
    # the same worker reconnected by itself; the reconciler re-published from SQL
    assert worker.running() and scheduler.running()
    assert "'published': " in scheduler.log(), scheduler.tail()


# ----------------------------------------------------------------- item 15
@pytest.mark.services
def test_15_status_is_read_from_sql_and_redis_keeps_no_celery_results(
    make: Callable[..., Harness],
) -> None:
    import redis

    h = make("redis+postgres")
    h.procs.worker(concurrency=2)
    runs = [h.start(name) for name in ("ada", "grace", "alan")]
    h.wait_all(runs, timeout=30)

    client = redis.Redis.from_url(h.settings.broker)
    try:
        assert list(client.scan_iter("celery-task-meta-*")) == []
        client.flushdb()  # whatever Celery kept is gone, as after results expire
    finally:
        client.close()

    for run_id in runs:
        shown = h.procs.cli("runs", "show", run_id, "--json")
        assert shown.returncode == 0, shown.stderr
        view = json.loads(shown.stdout)
        assert view["status"] == "succeeded"
        assert [s["status"] for s in view["steps"]] == ["succeeded"] * 3
        assert view["output"] == h.view(run_id)["output"]


# ----------------------------------------------------------------- item 17
def test_17_sqlite_with_two_workers_and_concurrent_api_and_cli_writes_never_locks(
    make: Callable[..., Harness],
) -> None:
    from starlette.exceptions import StarletteDeprecationWarning

    from hub import auth
    from hub.web import create_app

    with warnings.catch_warnings():  # Starlette wants httpx2 for its test client; httpx works
        warnings.simplefilter("ignore", StarletteDeprecationWarning)
        from fastapi.testclient import TestClient

    h = make("embedded", HUB_LEASE_SECONDS="10")
    workers = [h.procs.worker(concurrency=2) for _ in range(2)]
    h.procs.scheduler()
    app = create_app(h.hub)
    token = h.hub.store.run(
        lambda s: auth.create_token(
            s, auth.create_user(s, "ops", role="operator", password="p" * 12), "tests"
        )
    )
    started: list[str] = []
    errors: list[str] = []
    lock = threading.Lock()

    def api_writer(n: int) -> None:
        with TestClient(app, headers={"Authorization": f"Bearer {token}"}) as client:
            for i in range(6):
                try:
                    res = client.post("/api/flows/chain/runs", json={"name": f"api{n}-{i}"})
                    if res.status_code != 201:
                        errors.append(f"api {res.status_code}: {res.text}")
                        continue
                    with lock:
                        started.append(res.json()["id"])
                    client.get("/api/runs", params={"limit": 20}).raise_for_status()
                except Exception as exc:
                    errors.append(f"api: {type(exc).__name__}: {exc}")

    def engine_writer(n: int) -> None:
        for i in range(6):
            try:
                run_id = h.hub.engine.start_run("chain", {"name": f"eng{n}-{i}"}).run_id
                with lock:
                    started.append(run_id)
            except Exception as exc:
                errors.append(f"engine: {type(exc).__name__}: {exc}")

    def cli_writer(n: int) -> None:
        for i in range(2):
            done = h.procs.cli("run", "chain", "--input", json.dumps({"name": f"cli{n}-{i}"}))
            if done.returncode != 0:
                errors.append(f"cli {done.returncode}: {done.stderr}")
                continue
            with lock:
                started.append(done.stdout.split()[1])

    threads = [threading.Thread(target=api_writer, args=(n,)) for n in range(3)]
    threads += [threading.Thread(target=engine_writer, args=(n,)) for n in range(2)]
    threads += [threading.Thread(target=cli_writer, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == [], errors
    assert len(started) == 3 * 6 + 2 * 6 + 2 * 2

    views = h.wait_all(started, timeout=90)

    for view in views:
        for s in view["steps"]:
            assert [a["status"] for a in s["attempt_log"]] == ["succeeded"], (view["id"], s)
        h.assert_effects_once(view["id"])
    for proc in h.procs.started:
        assert "database is locked" not in proc.log(), proc.tail()
    assert len({v["id"] for v in views}) == len(views)
    assert all("] succeeded in" in w.log() for w in workers), "both workers took steps"
