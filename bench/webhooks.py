"""Webhook intake benchmark: ``POST /hooks/{name}`` against a minimal FastAPI floor.

    .venv/bin/python bench/webhooks.py [--duration 10] [--connections 1,32]

Both servers run on Redis + PostgreSQL, each as ONE uvicorn worker in its own
process; the load comes from a third process (a small keep-alive HTTP/1.1
client on asyncio, one coroutine per connection, each request sent when the
previous answer arrived).

- hub: the flow ``bench_hook`` of this module with
  ``Webhook("bench", verify="hmac", ...)``: each request is signed
  (HMAC-SHA256 of ``{timestamp}.{body}``) with a fresh order id, so every one
  is verified, parsed, checked against the step's model, stored as a delivery
  plus its run (one transaction) and its first step published to Redis.
- floor: ``POST /floor`` that validates the JSON with a pydantic model,
  inserts one row and publishes one Celery message (json) to the same Redis.

No worker runs: intake is measured, and the published messages wait in Redis.
For each server and each number of connections: a 1 s warm-up, then
``--duration`` seconds of load; requests/s, p50 and p99 latency (ms, as the
client saw it), and errors (anything but 2xx, or a broken connection).
Afterwards the rows stored and messages queued are counted against the 2xx
answers. Figures are printed, never asserted; the last line is one JSON object.

A fresh PostgreSQL database (``hub_bench_webhooks``) is created and dropped;
Redis db 14 (``--redis-url``) is flushed before and after, and the bench
refuses to start when another client uses it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import hmac
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pydantic import BaseModel  # noqa: E402

from hub import Flow, Webhook, step  # noqa: E402

DB_NAME = "hub_bench_webhooks"
SECRET_VAR = "BENCH_HOOK_SECRET"
SECRET = "bench-secret-not-for-production"
FLOOR_QUEUE = "bench_floor"

# Targets, against the floor measured in the same run (printed, never asserted).
TARGET_RATIO_THROUGHPUT = 0.70
TARGET_HUB_C1_P50_MS = 5.0
TARGET_P99_VS_FLOOR = 1.2


# --------------------------------------------------------------- the hub side
class Order(BaseModel):
    order_id: str
    amount: int


@step(retries=0)
def book(data: Order) -> Order:
    return data


bench_hook = Flow(
    "bench_hook",
    [book],
    triggers=[
        Webhook(
            "bench",
            verify="hmac",
            secret=f"env:{SECRET_VAR}",
            prefix="sha256=",
            timestamp_header="X-Signature-Timestamp",
        )
    ],
)


def hub_app() -> Any:
    """The hub's web app (``uvicorn --factory bench.webhooks:hub_app``), from ``HUB_*``,
    made ready to serve as ``hub web`` does."""
    from hub.registry import Registry
    from hub.runtime import Hub
    from hub.settings import Settings
    from hub.web import create_app
    from hub.web.app import settle

    app = create_app(Hub(Settings(), registry=Registry([bench_hook])))
    settle()
    return app


# ------------------------------------------------------------------ the floor
def floor_app() -> Any:
    """Validate the JSON, insert one row, publish one Celery message (``BENCH_*``)."""
    from celery import Celery
    from fastapi import FastAPI
    from sqlalchemy import create_engine, text

    db = create_engine(os.environ["BENCH_DB"], pool_size=5, max_overflow=10)
    celery = Celery("bench_floor", set_as_current=False)
    celery.conf.update(
        broker_url=os.environ["BENCH_BROKER"],
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        result_backend=None,
        broker_connection_retry_on_startup=True,
    )
    app = FastAPI()

    @app.post("/floor", status_code=202)
    def receive(order: Order) -> dict[str, Any]:
        with db.begin() as conn:
            row_id = conn.execute(
                text("INSERT INTO floor_orders (order_id, amount) VALUES (:o, :a) RETURNING id"),
                {"o": order.order_id, "a": order.amount},
            ).scalar_one()
        celery.send_task("bench.floor.order", args=[row_id], queue=FLOOR_QUEUE)
        return {"id": row_id}

    return app


FLOOR_DDL = """CREATE TABLE IF NOT EXISTS floor_orders (
    id bigserial PRIMARY KEY, order_id text NOT NULL, amount integer NOT NULL,
    received_at timestamp NOT NULL DEFAULT now())"""


# ------------------------------------------------------------------ the driver
def request_bytes(kind: str, port: int, order_id: str, amount: int) -> bytes:
    body = json.dumps({"order_id": order_id, "amount": amount}).encode()
    head = [
        f"POST {'/hooks/bench' if kind == 'hub' else '/floor'} HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
    ]
    if kind == "hub":
        stamp = str(int(time.time()))
        mac = hmac.new(SECRET.encode(), stamp.encode() + b"." + body, hashlib.sha256)
        head += [f"X-Signature: sha256={mac.hexdigest()}", f"X-Signature-Timestamp: {stamp}"]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def one_connection(
    kind: str, port: int, tag: str, until: float, latencies: list[float], errors: list[str]
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    i = 0
    try:
        while time.perf_counter() < until:
            i += 1
            data = request_bytes(kind, port, f"{tag}-{i}", i)
            start = time.perf_counter()
            writer.write(data)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - start)
            status = int(head[9:12])
            if not 200 <= status < 300:
                errors.append(f"HTTP {status}")
    except (OSError, asyncio.IncompleteReadError) as exc:
        errors.append(type(exc).__name__)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def load(kind: str, port: int, connections: int, seconds: float, tag: str) -> dict[str, Any]:
    latencies: list[float] = []
    errors: list[str] = []
    start = time.perf_counter()
    until = start + seconds
    await asyncio.gather(
        *(
            one_connection(kind, port, f"{tag}-c{c}", until, latencies, errors)
            for c in range(connections)
        )
    )
    wall = time.perf_counter() - start
    ms = sorted(x * 1000 for x in latencies)
    return {
        "requests": len(ms),
        "rps": round(len(ms) / wall, 1),
        "p50_ms": rnd(pct(ms, 50)),
        "p99_ms": rnd(pct(ms, 99)),
        "errors": len(errors),
        "error_kinds": sorted(set(errors))[:5],
    }


def drive(argv: Sequence[str]) -> None:
    """The driver process: ``--drive KIND PORT CONNECTIONS SECONDS TAG``; prints one JSON line."""
    kind, port, connections, seconds, tag = argv
    result = asyncio.run(load(kind, int(port), int(connections), float(seconds), tag))
    print(json.dumps(result), flush=True)


def measure(kind: str, port: int, connections: int, seconds: float, tag: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--drive", kind, str(port), str(connections), str(seconds), tag],
        capture_output=True,
        text=True,
        timeout=seconds + 120,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"the driver failed: {out.stderr[-2000:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


# ------------------------------------------------------------------- helpers
def pct(values: Sequence[float], p: float) -> float | None:
    if not values:
        return None
    k = (len(values) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def rnd(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def log(text: str = "") -> None:
    print(text, flush=True)


def start_server(
    factory: str, env: dict[str, str], logdir: Path
) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    logfile = open(logdir / f"{factory.rsplit(':', 1)[1]}.log", "wb")  # noqa: SIM115 - lives with the process
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", factory, "--host", "127.0.0.1",
         "--port", str(port), "--workers", "1", "--log-level", "warning", "--no-access-log"],
        cwd=ROOT, env=env, stdout=logfile, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return proc, port
        if proc.poll() is not None:
            raise RuntimeError(f"{factory} exited: {(logdir / 'x').parent}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{factory} did not start")
        time.sleep(0.1)


def stop(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, 15)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        proc.wait(5)


def counts(db_url: str, redis_url: str) -> dict[str, int]:
    import psycopg
    import redis

    with psycopg.connect(db_url) as conn:
        deliveries = conn.execute("SELECT count(*) FROM webhook_deliveries").fetchone()
        runs = conn.execute("SELECT count(*) FROM runs").fetchone()
        floor = conn.execute("SELECT count(*) FROM floor_orders").fetchone()
    client = redis.Redis.from_url(redis_url)
    try:
        queued = {q: int(client.llen(q)) for q in ("default", FLOOR_QUEUE)}
    finally:
        client.close()
    return {
        "hub_deliveries": int(deliveries[0]) if deliveries else 0,
        "hub_runs": int(runs[0]) if runs else 0,
        "hub_messages": queued["default"],
        "floor_rows": int(floor[0]) if floor else 0,
        "floor_messages": queued[FLOOR_QUEUE],
    }


# ---------------------------------------------------------------------- main
def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--duration", type=float, default=10.0, help="seconds of load per measurement")
    p.add_argument("--connections", default="1,32", help="comma-separated connection counts")
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    p.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    from bench.engine import pg_create, pg_drop, redis_claim, redis_flush

    args = parse(argv)
    conns = [int(c) for c in args.connections.split(",")]
    redis_claim(args.redis_url)
    pg_drop(args.pg_url, DB_NAME)
    db = pg_create(args.pg_url, DB_NAME)
    sa_url = db.replace("postgresql://", "postgresql+psycopg://", 1)
    procs: list[subprocess.Popen[bytes]] = []
    results: dict[str, dict[str, Any]] = {}
    try:
        import psycopg

        from hub.store import Store

        store = Store(sa_url)
        store.migrate()
        store.engine.dispose()
        with psycopg.connect(db, autocommit=True) as conn:
            conn.execute(FLOOR_DDL)
        logdir = Path(tempfile.mkdtemp(prefix="bench-webhooks-"))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HUB_", "BENCH_"))}
        env.update(
            PYTHONPATH=str(ROOT),
            HUB_HOME=str(logdir / "home"),
            HUB_DATABASE_URL=sa_url,
            HUB_BROKER_URL=args.redis_url,
            BENCH_DB=sa_url,
            BENCH_BROKER=args.redis_url,
            **{SECRET_VAR: SECRET},
        )
        servers = {}
        for kind, factory in (
            ("floor", "bench.webhooks:floor_app"),
            ("hub", "bench.webhooks:hub_app"),
        ):
            proc, port = start_server(factory, env, logdir)
            procs.append(proc)
            servers[kind] = port
        log(f"servers: hub :{servers['hub']}, floor :{servers['floor']} (logs in {logdir})")
        for c in conns:
            for kind in ("floor", "hub"):
                measure(kind, servers[kind], c, 1.0, f"warm{c}")
                r = measure(kind, servers[kind], c, args.duration, f"m{c}")
                results[f"{kind}_c{c}"] = r
                log(
                    f"{kind:<6} {c:>3} conn  {r['rps']:>8.1f} req/s  p50 {r['p50_ms']:>7} ms  "
                    f"p99 {r['p99_ms']:>7} ms  errors {r['errors']} {r['error_kinds'] or ''}"
                )
        stored = counts(db, args.redis_url)
    finally:
        for proc in procs:
            stop(proc)
        pg_drop(args.pg_url, DB_NAME)
        redis_flush(args.redis_url)
    return summarize(results, stored, conns)


def summarize(
    results: dict[str, dict[str, Any]], stored: dict[str, int], conns: list[int]
) -> dict[str, Any]:
    lo, hi = min(conns), max(conns)
    hub_hi, floor_hi = results[f"hub_c{hi}"], results[f"floor_c{hi}"]
    out: dict[str, Any] = {
        "hub_rps": hub_hi["rps"],
        "floor_rps": floor_hi["rps"],
        "ratio_throughput": round(hub_hi["rps"] / floor_hi["rps"], 3) if floor_hi["rps"] else None,
        "hub_c1_p50_ms": results[f"hub_c{lo}"]["p50_ms"],
        "floor_c1_p50_ms": results[f"floor_c{lo}"]["p50_ms"],
        f"hub_c{hi}_p99_ms": hub_hi["p99_ms"],
        f"floor_c{hi}_p99_ms": floor_hi["p99_ms"],
        "hub_c1_rps": results[f"hub_c{lo}"]["rps"],
        "floor_c1_rps": results[f"floor_c{lo}"]["rps"],
        "hub_errors": sum(r["errors"] for k, r in results.items() if k.startswith("hub")),
        "floor_errors": sum(r["errors"] for k, r in results.items() if k.startswith("floor")),
        **stored,
    }
    answered = sum(r["requests"] - r["errors"] for k, r in results.items() if k.startswith("hub"))
    log(
        f"\nstored: hub {stored['hub_deliveries']} deliveries / {stored['hub_runs']} runs / "
        f"{stored['hub_messages']} messages for {answered} 2xx answers (warm-ups included in "
        f"the rows); floor {stored['floor_rows']} rows / {stored['floor_messages']} messages"
    )
    p99_ratio = (
        out[f"hub_c{hi}_p99_ms"] / out[f"floor_c{hi}_p99_ms"]
        if out[f"floor_c{hi}_p99_ms"]
        else None
    )
    checks = [
        ("target_throughput_met", f"hub req/s at {hi} conn >= 70% of the floor's",
         out["ratio_throughput"], lambda v: v >= TARGET_RATIO_THROUGHPUT),
        ("target_c1_p50_met", "hub p50 at 1 conn < 5 ms", out["hub_c1_p50_ms"],
         lambda v: v < TARGET_HUB_C1_P50_MS),
        ("target_p99_met", f"hub p99 at {hi} conn <= 1.2 x the floor's", rnd(p99_ratio, 3),
         lambda v: v <= TARGET_P99_VS_FLOOR),
        ("target_no_errors_met", "no errors", out["hub_errors"], lambda v: v == 0),
    ]  # fmt: skip
    log("targets (against the floor measured in this run; figures only, nothing asserted):")
    for key, text, value, ok in checks:
        met = None if value is None else bool(ok(value))
        log(f"  {text}: {value} -> {({None: 'n/a', True: 'met', False: 'MISSED'})[met]}")
        out[key] = met
    out["ratio_c32_p99"] = rnd(p99_ratio, 3)
    return out


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--drive":
        drive(sys.argv[2:])
        sys.exit(0)
    try:
        summary = main()
    except KeyboardInterrupt:
        print("interrupted; servers stopped, database dropped", file=sys.stderr)
        sys.exit(130)
    print(json.dumps(summary), flush=True)
