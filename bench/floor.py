"""The floor: a bare Celery app whose task writes one row, chained N times per run.

Used by ``bench/engine.py`` both as a client (to send chains) and as a worker
(``celery -A bench.floor:app worker``). Configured from the environment:

- ``BENCH_FLOOR_BROKER``: ``redis://...`` or ``hubfs://`` (see below)
- ``BENCH_FLOOR_FOLDER``: the filesystem transport's folder (embedded only)
- ``BENCH_FLOOR_POLL``: filesystem polling interval in seconds (default 0.01)
- ``BENCH_FLOOR_DB``: ``postgresql://...`` (psycopg) or ``sqlite:///path``

Same worker settings as the hub: json only, acks_late, prefetch 1, results ignored.

``hubfs://`` is the hub's own embedded transport (``hub/brokerfs.py``): kombu's
filesystem transport with atomic hand-over, so both sides of the embedded
comparison use the same broker code.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path
from typing import Any

from celery import Celery

import hub.brokerfs  # noqa: F401 - registers hubfs://

QUEUE = "bench_floor"
TASK = "bench.floor.step"

PG_DDL = """CREATE TABLE IF NOT EXISTS floor_steps (
    id bigserial PRIMARY KEY, phase text NOT NULL, run_id text NOT NULL, i integer NOT NULL,
    started double precision NOT NULL, finished double precision NOT NULL)"""
SQLITE_DDL = """CREATE TABLE IF NOT EXISTS floor_steps (
    id integer PRIMARY KEY AUTOINCREMENT, phase text NOT NULL, run_id text NOT NULL,
    i integer NOT NULL, started real NOT NULL, finished real NOT NULL)"""


def config(broker: str, folder: str | None = None, poll: float = 0.01) -> dict[str, Any]:
    conf: dict[str, Any] = {
        "broker_url": broker,
        "task_serializer": "json",
        "accept_content": ["json"],
        "result_backend": None,
        "task_ignore_result": True,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_default_queue": QUEUE,
        "worker_hijack_root_logger": False,
        "worker_send_task_events": False,
        "broker_connection_retry_on_startup": True,
    }
    if broker.startswith(("filesystem://", "hubfs://")):
        assert folder, "BENCH_FLOOR_FOLDER is needed with the filesystem transport"
        for sub in ("queue", "processed", "control"):
            Path(folder, sub).mkdir(parents=True, exist_ok=True)
        conf["broker_transport_options"] = {
            "data_folder_in": str(Path(folder, "queue")),
            "data_folder_out": str(Path(folder, "queue")),
            "processed_folder": str(Path(folder, "processed")),
            "control_folder": str(Path(folder, "control")),
            "store_processed": False,
            "polling_interval": poll,
        }
    return conf


def make_app(broker: str, folder: str | None = None, poll: float = 0.01) -> Celery:
    app = Celery("bench_floor", set_as_current=False)
    app.conf.update(config(broker, folder, poll))
    app.task(name=TASK, ignore_result=True, shared=False)(floor_step)
    return app


_conn: Any = None


def _db() -> Any:
    """One connection per worker process, opened lazily (after the fork)."""
    global _conn
    if _conn is None:
        url = os.environ["BENCH_FLOOR_DB"]
        if url.startswith("sqlite:///"):
            # as the hub's embedded store: WAL, synchronous=NORMAL, busy timeout
            _conn = sqlite3.connect(url[len("sqlite:///") :], timeout=30, isolation_level=None)
            _conn.execute("PRAGMA journal_mode=WAL")
            _conn.execute("PRAGMA synchronous=NORMAL")
            _conn.execute("PRAGMA busy_timeout=30000")
        else:
            import psycopg

            _conn = psycopg.connect(url, autocommit=True)
    return _conn


def floor_step(phase: str, run_id: str, i: int) -> None:
    """A no-op step that writes one row (its own commit); the chain publishes the next."""
    started = time.time()
    conn = _db()
    # `finished` is taken before the write, like the hub's steps.finished_at
    # (stamped before the transaction that stores the step commits).
    args = (phase, run_id, i, started, time.time())
    if isinstance(conn, sqlite3.Connection):
        conn.execute(
            "INSERT INTO floor_steps (phase, run_id, i, started, finished) VALUES (?, ?, ?, ?, ?)",
            args,
        )
    else:
        conn.execute(
            "INSERT INTO floor_steps (phase, run_id, i, started, finished) "
            "VALUES (%s, %s, %s, %s, %s)",
            args,
        )


# The worker's app (``celery -A bench.floor:app worker``); unused when imported as a client.
app = make_app(
    os.environ.get("BENCH_FLOOR_BROKER", "memory://"),
    os.environ.get("BENCH_FLOOR_FOLDER"),
    float(os.environ.get("BENCH_FLOOR_POLL", "0.01")),
)
