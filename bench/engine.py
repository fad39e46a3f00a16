"""Engine benchmark: the hub against a bare Celery chain (the floor), on one machine.

    .venv/bin/python bench/engine.py [--runs 200] [--steps 10] [--only redis|embedded|floor]

In one invocation and one process tree it measures, one phase after another
(never two at once, so they do not share the CPUs):

- floor, Redis + PostgreSQL: a bare Celery app (``bench/floor.py``; json,
  acks_late, prefetch 1, results ignored) whose task inserts one row and lets
  a real ``celery.chain`` of N immutable signatures publish the next one;
  K chains submitted at once to a ``celery worker -c 2 -P prefork``.
- hub, Redis + PostgreSQL: the flow ``bench_noop`` (``bench/flows_bench.py``,
  N no-op steps) run by ``hub worker --concurrency 2`` plus ``hub scheduler``;
  K runs started at once with ``Hub(settings).engine.start_run``.
- hub, embedded: the same with no broker URL and no database URL
  (SQLite + Celery's filesystem transport under a temporary ``HUB_HOME``).
- floor, embedded: the floor on the filesystem transport + SQLite (WAL); its
  put is made atomic (``benchfs://``, see ``bench/floor.py``) because the stock
  one lets a consumer read an empty message file and kill the worker.

Each phase has a warm-up, then a sequential part (one run alone, ``--seq-runs``
times) and a throughput part (K runs submitted at once). It prints figures
and never asserts on time; its last line of output is one JSON object.

Definitions (all times from the rows the runs wrote, wall clock, same host):

- ``*_step_ms`` = step-to-step latency = ``started_at`` of step i+1 minus
  ``started_at`` of step i within one run, i.e. step i's duration plus the gap
  until step i+1 starts (N-1 samples per run). Hub: ``steps.started_at``;
  floor: the time its task function was entered.
- ``*_run_ms`` = run latency = the last step's finish stamp minus the run's
  submission. Hub: ``runs.finished_at - runs.created_at``; floor: the last
  task's ``finished`` minus the time the bench called ``apply_async``. Both
  finish stamps are taken just before the final write commits.
- ``*_steps_per_s`` = K*N / (latest finish stamp - time the first run was
  submitted), over the throughput part.
- ``*_seq_step_ms`` = median step-to-step latency of runs executed alone.
- ``*_worker_rss_mb`` = peak over the throughput part of the summed VmRSS of
  the worker's process tree (main process + pool children, from /proc); shared
  pages count once per process. ``*_worker_pss_mb`` counts them once.
- ``*_worker_cpu_ms_per_step``: CPU (user+sys) of that tree over the
  throughput part, per step; ``*_db_cpu_ms_per_step`` and
  ``*_broker_cpu_ms_per_step``: the same for the postgres / redis-server
  processes on this host (0 for the embedded phases' broker and database,
  whose work is done inside the workers).

Redis db 12 is flushed before and after; a fresh PostgreSQL database is
created and dropped; every subprocess is stopped, also on Ctrl-C or failure.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import warnings
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PY = sys.executable
FLOW = "bench_noop"
TERMINAL = ("succeeded", "failed", "cancelled", "needs_review")
PAGE = os.sysconf("SC_PAGE_SIZE")
TICKS = os.sysconf("SC_CLK_TCK")

# Targets of the spec, against the floor measured in the same run (printed, never asserted).
TARGET_RATIO_THROUGHPUT = 0.60
TARGET_EMBEDDED_P50_STEP_MS = 25.0


# ------------------------------------------------------------------ helpers
def pct(values: Sequence[float], p: float) -> float | None:
    """Percentile ``p`` (0-100) with linear interpolation; None for no values."""
    if not values:
        return None
    xs = sorted(values)
    k = (len(xs) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def rnd(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def epoch(value: Any) -> float:
    """A naive-UTC datetime (or its ISO text, as SQLite stores it) as epoch seconds."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC).timestamp()


def log(text: str = "") -> None:
    print(text, flush=True)


class PhaseError(RuntimeError):
    """A phase could not finish (worker died, timeout); the others still run."""


# ------------------------------------------------------------- /proc readers
def tree_pids(root: int) -> list[int]:
    """``root`` and all its descendants that are alive."""
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        if not Path(f"/proc/{pid}").exists():
            continue
        out.append(pid)
        try:
            for task in Path(f"/proc/{pid}/task").iterdir():
                text = (task / "children").read_text().split()
                todo.extend(int(c) for c in text)
        except OSError:
            pass
    return out


def rss_pss_kb(pid: int) -> tuple[int, int]:
    rss = pss = 0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                pss = int(line.split()[1])
    except OSError:
        pass
    return rss, pss


def cpu_s(pids: Sequence[int]) -> float:
    """User + system CPU seconds of ``pids`` (their own, not their reaped children's)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICKS


def pids_named(*names: str) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            if (d / "comm").read_text().strip() in names:
                out.append(int(d.name))
        except OSError:
            pass
    return out


class Sampler(threading.Thread):
    """Peak summed RSS/PSS of a process tree, sampled every 0.2 s until stopped."""

    def __init__(self, root: int) -> None:
        super().__init__(daemon=True)
        self.root = root
        self.peak_rss_kb = 0
        self.peak_pss_kb = 0
        self.done = threading.Event()

    def sample(self) -> None:
        rss = pss = 0
        for pid in tree_pids(self.root):
            r, p = rss_pss_kb(pid)
            rss, pss = rss + r, pss + p
        self.peak_rss_kb = max(self.peak_rss_kb, rss)
        self.peak_pss_kb = max(self.peak_pss_kb, pss)

    def run(self) -> None:
        while not self.done.wait(0.2):
            self.sample()

    def stop(self) -> None:
        self.done.set()
        self.join()
        self.sample()


class CpuMeter:
    """CPU seconds used by the worker tree, the database and the broker over a span."""

    def __init__(self, worker_root: int) -> None:
        self.root = worker_root

    def snapshot(self) -> dict[str, float]:
        return {
            "worker": cpu_s(tree_pids(self.root)),
            "db": cpu_s(pids_named("postgres")),
            "broker": cpu_s(pids_named("redis-server")),
        }


# ------------------------------------------------------------- subprocesses
class Procs:
    """The subprocesses this bench started; each in its own process group."""

    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir
        self.live: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        path = self.logdir / f"{name.replace(' ', '_')}.log"
        with open(path, "ab") as out:
            proc = subprocess.Popen(
                argv,
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches the bench only; it stops them
            )
        self.live[name] = (proc, path)
        return proc

    def check(self) -> None:
        for name, (proc, path) in self.live.items():
            if proc.poll() is not None:
                raise PhaseError(
                    f"{name} exited with code {proc.returncode}; last lines of {path}:\n"
                    + self.tail(path)
                )

    @staticmethod
    def tail(path: Path, lines: int = 25) -> str:
        try:
            return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, *names: str, grace: float = 10.0) -> None:
        """SIGTERM each process group, wait up to ``grace`` s, then SIGKILL what is left."""
        targets = [n for n in (names or list(self.live)) if n in self.live]
        for name in targets:
            proc, _ = self.live[name]
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for name in targets:
            proc, _ = self.live.pop(name)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            # the group too: a pool child can outlive its parent
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)


def base_env(**extra: str) -> dict[str, str]:
    """The bench's environment without any HUB_*/BENCH_* the caller had, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HUB_", "BENCH_"))}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


# ----------------------------------------------------------------- readers
class Reader:
    """Plain read-only queries on the run rows (no ORM; SQLite without BEGIN IMMEDIATE)."""

    def __init__(self, url: str) -> None:
        self.sqlite = url.startswith("sqlite")
        if self.sqlite:
            path = url.split("///", 1)[1]
            self.conn: Any = sqlite3.connect(path, timeout=30, isolation_level=None)
            self.conn.execute("PRAGMA busy_timeout=30000")
        else:
            import psycopg

            self.conn = psycopg.connect(url.replace("+psycopg", ""), autocommit=True)

    def q(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        if self.sqlite:
            return list(self.conn.execute(sql.replace("%s", "?"), args).fetchall())
        return list(self.conn.execute(sql, args).fetchall())

    def _in(self, ids: Sequence[str]) -> str:
        return "(" + ",".join(["%s"] * len(ids)) + ")"

    def hub_counts(self, ids: Sequence[str]) -> tuple[int, int]:
        """(finished, not succeeded) among runs ``ids``."""
        rows = self.q(
            f"SELECT status, count(*) FROM runs WHERE id IN {self._in(ids)} GROUP BY status", ids
        )
        done = sum(n for s, n in rows if s in TERMINAL)
        bad = sum(n for s, n in rows if s in TERMINAL and s != "succeeded")
        return done, bad

    def hub_runs(self, ids: Sequence[str]) -> list[tuple[str, str, float, float | None]]:
        rows = self.q(
            f"SELECT id, status, created_at, finished_at FROM runs WHERE id IN {self._in(ids)}", ids
        )
        return [(i, s, epoch(c), epoch(f) if f is not None else None) for i, s, c, f in rows]

    def hub_steps(self, ids: Sequence[str]) -> dict[str, list[tuple[float, float | None]]]:
        rows = self.q(
            "SELECT run_id, started_at, finished_at FROM steps "
            f"WHERE run_id IN {self._in(ids)} AND started_at IS NOT NULL",
            ids,
        )
        out: dict[str, list[tuple[float, float | None]]] = defaultdict(list)
        for run_id, st, fi in rows:
            out[run_id].append((epoch(st), epoch(fi) if fi is not None else None))
        return out

    def floor_count(self, phase: str, last: int) -> int:
        return int(
            self.q("SELECT count(*) FROM floor_steps WHERE phase = %s AND i = %s", (phase, last))[
                0
            ][0]
        )

    def floor_steps(self, phase: str) -> dict[str, list[tuple[int, float, float]]]:
        out: dict[str, list[tuple[int, float, float]]] = defaultdict(list)
        for run_id, i, st, fi in self.q(
            "SELECT run_id, i, started, finished FROM floor_steps WHERE phase = %s", (phase,)
        ):
            out[run_id].append((int(i), float(st), float(fi)))
        return out

    def close(self) -> None:
        self.conn.close()


# ----------------------------------------------------------------- results
@dataclass
class Result:
    steps_per_s: float | None = None
    p50_run_ms: float | None = None
    p99_run_ms: float | None = None
    p50_step_ms: float | None = None
    p99_step_ms: float | None = None
    seq_step_ms: float | None = None
    seq_run_ms: float | None = None
    worker_rss_mb: float | None = None
    worker_pss_mb: float | None = None
    worker_cpu_ms_per_step: float | None = None
    db_cpu_ms_per_step: float | None = None
    broker_cpu_ms_per_step: float | None = None
    throughput_wall_s: float | None = None
    failed_runs: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def step_gaps(starts_per_run: Sequence[Sequence[float]]) -> list[float]:
    """Step-to-step latencies (ms): next step's start minus this step's start, per run."""
    out = []
    for starts in starts_per_run:
        xs = sorted(starts)
        out.extend((b - a) * 1000 for a, b in itertools.pairwise(xs))
    return out


def wait_until(
    what: str, done: Callable[[], bool], procs: Procs, timeout: float, every: float
) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        procs.check()
        if time.monotonic() > deadline:
            raise PhaseError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(every)


# ------------------------------------------------------------------- floor
def floor_phase(
    label: str, args: argparse.Namespace, procs: Procs, env: dict[str, str], db_url: str
) -> Result:
    """K chains of N floor tasks, after a warm-up and ``--seq-runs`` chains alone."""
    from celery import chain

    from bench import floor

    app = floor.make_app(
        env["BENCH_FLOOR_BROKER"], env.get("BENCH_FLOOR_FOLDER"), args.poll_seconds
    )
    n, k = args.steps, args.runs
    reader = Reader(db_url)
    worker = procs.start(
        f"{label}_worker",
        [
            PY, "-m", "celery", "-A", "bench.floor:app", "worker",
            "-Q", floor.QUEUE, "-c", str(args.concurrency), "-P", "prefork",
            "--loglevel", args.loglevel, "-n", f"floor-{os.getpid()}@%h",
            "--without-gossip", "--without-mingle", "--without-heartbeat",
        ],
        env,
    )  # fmt: skip

    def submit(phase: str, count: int) -> dict[str, float]:
        sent = {}
        for _ in range(count):
            run_id = uuid.uuid4().hex
            sigs = [
                app.signature(
                    floor.TASK, args=(phase, run_id, i), immutable=True, queue=floor.QUEUE
                )
                for i in range(n)
            ]
            sent[run_id] = time.time()
            chain(*sigs).apply_async()
        return sent

    def wait(phase: str, count: int, timeout: float, every: float) -> None:
        wait_until(
            f"{count} {label} chains ({phase})",
            lambda: reader.floor_count(phase, n - 1) >= count,
            procs,
            timeout,
            every,
        )

    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=3)
        submit("warmup", 2 * args.concurrency)
        wait("warmup", 2 * args.concurrency, args.timeout, 0.05)

        seq_gaps, seq_runs = [], []
        for r in range(args.seq_runs):
            sent = submit(f"seq{r}", 1)
            wait(f"seq{r}", 1, args.timeout, 0.005)
            rows = reader.floor_steps(f"seq{r}")
            for run_id, steps in rows.items():
                seq_gaps += step_gaps([[st for _, st, _ in steps]])
                seq_runs.append((max(fi for _, _, fi in steps) - sent[run_id]) * 1000)

        sampler, meter = Sampler(worker.pid), CpuMeter(worker.pid)
        sampler.start()
        cpu0 = meter.snapshot()
        t0 = time.time()
        sent = submit("tp", k)
        wait("tp", k, args.timeout, 0.05)
        cpu1 = meter.snapshot()
        sampler.stop()
        rows = reader.floor_steps("tp")
    finally:
        reader.close()
        procs.stop(f"{label}_worker")

    run_ms = []
    last = t0
    for run_id, steps in rows.items():
        end = max(fi for _, _, fi in steps)
        last = max(last, end)
        run_ms.append((end - sent[run_id]) * 1000)
    gaps = step_gaps([[st for _, st, _ in steps] for steps in rows.values()])
    return finish_result(
        k * n, t0, last, run_ms, gaps, seq_gaps, seq_runs, sampler, cpu0, cpu1, failed=0
    )


def finish_result(
    total_steps: int,
    t0: float,
    last: float,
    run_ms: list[float],
    gaps: list[float],
    seq_gaps: list[float],
    seq_runs: list[float],
    sampler: Sampler,
    cpu0: dict[str, float],
    cpu1: dict[str, float],
    failed: int,
) -> Result:
    wall = max(last - t0, 1e-9)

    def per_step(key: str) -> float:
        return (cpu1[key] - cpu0[key]) * 1000 / total_steps

    return Result(
        steps_per_s=total_steps / wall,
        p50_run_ms=pct(run_ms, 50),
        p99_run_ms=pct(run_ms, 99),
        p50_step_ms=pct(gaps, 50),
        p99_step_ms=pct(gaps, 99),
        seq_step_ms=pct(seq_gaps, 50),
        seq_run_ms=pct(seq_runs, 50),
        worker_rss_mb=sampler.peak_rss_kb / 1024,
        worker_pss_mb=sampler.peak_pss_kb / 1024,
        worker_cpu_ms_per_step=per_step("worker"),
        db_cpu_ms_per_step=per_step("db"),
        broker_cpu_ms_per_step=per_step("broker"),
        throughput_wall_s=wall,
        failed_runs=failed,
    )


# --------------------------------------------------------------------- hub
def hub_phase(label: str, args: argparse.Namespace, procs: Procs, env: dict[str, str]) -> Result:
    """K runs of ``bench_noop`` on ``hub worker`` + ``hub scheduler``."""
    from hub.runtime import Hub
    from hub.settings import Settings
    from hub.store import Store

    settings = Settings(
        home=Path(env["HUB_HOME"]),
        database_url=env.get("HUB_DATABASE_URL"),
        broker_url=env.get("HUB_BROKER_URL"),
        flows=env["HUB_FLOWS"],
        broker_poll_seconds=float(env.get("HUB_BROKER_POLL_SECONDS", "0.01")),
    )
    Store(settings.database).migrate()
    n, k = args.steps, args.runs
    hub = Hub(settings)
    engine = hub.engine
    reader = Reader(settings.database)
    worker = procs.start(
        f"{label}_worker",
        [
            PY, "-m", "hub", "worker", "--concurrency", str(args.concurrency),
            "--loglevel", args.loglevel,
        ],
        env,
    )  # fmt: skip
    procs.start(f"{label}_scheduler", [PY, "-m", "hub", "scheduler"], env)

    def submit(count: int) -> list[str]:
        return [engine.start_run(FLOW, {"i": i}).run_id for i in range(count)]

    def wait(ids: list[str], timeout: float, every: float) -> None:
        wait_until(
            f"{len(ids)} {label} runs",
            lambda: reader.hub_counts(ids)[0] >= len(ids),
            procs,
            timeout,
            every,
        )

    try:
        warm = submit(2 * args.concurrency)
        wait(warm, args.timeout, 0.05)

        seq_gaps, seq_runs = [], []
        for _ in range(args.seq_runs):
            ids = submit(1)
            wait(ids, args.timeout, 0.005)
            for _, _, created, finished in reader.hub_runs(ids):
                if finished is not None:
                    seq_runs.append((finished - created) * 1000)
            seq_gaps += step_gaps([[st for st, _ in v] for v in reader.hub_steps(ids).values()])

        sampler, meter = Sampler(worker.pid), CpuMeter(worker.pid)
        sampler.start()
        cpu0 = meter.snapshot()
        t0 = time.time()
        ids = submit(k)
        submitted = time.time()
        wait(ids, args.timeout, 0.05)
        cpu1 = meter.snapshot()
        sampler.stop()
        runs = reader.hub_runs(ids)
        steps = reader.hub_steps(ids)
    finally:
        reader.close()
        procs.stop(f"{label}_worker", f"{label}_scheduler")
        hub.store.dispose()
        if "celery" in hub.__dict__:
            hub.celery.close()

    failed = sum(1 for _, status, _, _ in runs if status != "succeeded")
    run_ms = [(f - c) * 1000 for _, _, c, f in runs if f is not None]
    last = max((f for _, _, _, f in runs if f is not None), default=t0)
    gaps = step_gaps([[st for st, _ in v] for v in steps.values()])
    res = finish_result(
        k * n, t0, last, run_ms, gaps, seq_gaps, seq_runs, sampler, cpu0, cpu1, failed
    )
    res.extra["submit_ms_per_run"] = (submitted - t0) * 1000 / k
    return res


# -------------------------------------------------------------- databases
def pg_create(admin_url: str, name: str) -> str:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = admin_url.rsplit("/", 1)[0]
    return f"{base}/{name}"


def pg_drop(admin_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def floor_table(db_url: str) -> None:
    from bench import floor

    if db_url.startswith("sqlite:///"):
        conn = sqlite3.connect(db_url[len("sqlite:///") :], isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(floor.SQLITE_DDL)
        conn.close()
    else:
        import psycopg

        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute(floor.PG_DDL)


def redis_flush(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=3)
    try:
        client.flushdb()
    finally:
        client.close()


# -------------------------------------------------------------------- main
def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", "-k", type=int, default=200, help="runs submitted at once (K)")
    p.add_argument("--steps", "-n", type=int, default=10, help="steps per run (N)")
    p.add_argument(
        "--only",
        action="append",
        choices=("redis", "embedded", "floor"),
        help="run only these phases (repeatable): redis = hub on Redis+PostgreSQL, "
        "embedded = hub on SQLite+filesystem, floor = the bare Celery chains",
    )
    p.add_argument("--seq-runs", type=int, default=5, help="runs executed alone, one by one")
    p.add_argument("--concurrency", type=int, default=2, help="worker processes (prefork)")
    p.add_argument("--loglevel", default="WARNING", help="worker log level (same for all)")
    p.add_argument("--no-embedded-floor", action="store_true", help="skip the embedded floor")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per wait")
    p.add_argument("--poll-seconds", type=float, default=0.01, help="filesystem broker polling")
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/12")
    p.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    p.add_argument("--keep-logs", action="store_true", help="keep the workers' logs")
    return p.parse_args(argv)


def line(name: str, r: Result) -> str:
    def f(v: float | None, unit: str = "") -> str:
        return "n/a" if v is None else f"{v:.1f}{unit}"

    return (
        f"{name:<22} {f(r.steps_per_s):>8} steps/s  run p50 {f(r.p50_run_ms, ' ms'):>10} "
        f"p99 {f(r.p99_run_ms, ' ms'):>10}  step p50 {f(r.p50_step_ms, ' ms'):>8} "
        f"p99 {f(r.p99_step_ms, ' ms'):>8}  alone {f(r.seq_step_ms, ' ms'):>8}/step  "
        f"RSS {f(r.worker_rss_mb, ' MB')} (PSS {f(r.worker_pss_mb, ' MB')})  "
        f"CPU/step worker {f(r.worker_cpu_ms_per_step, ' ms')} db {f(r.db_cpu_ms_per_step, ' ms')} "
        f"broker {f(r.broker_cpu_ms_per_step, ' ms')}"
        + (f"  FAILED RUNS {r.failed_runs}" if r.failed_runs else "")
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    from celery.exceptions import DuplicateTaskNameWarning

    # This process builds two Hub objects (Redis and embedded). hub.runtime registers
    # its ``hub.step`` closure with shared=True, so every later Celery app gets the
    # first Hub's task too and Celery warns. Harmless here: this process only publishes.
    warnings.filterwarnings("ignore", category=DuplicateTaskNameWarning)
    only = set(args.only or ("redis", "embedded", "floor"))
    os.environ["BENCH_STEPS"] = str(args.steps)  # bench.flows_bench reads it on import

    def on_term(*_: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    started = time.monotonic()
    results: dict[str, Result] = {}
    errors: list[str] = []
    log(
        f"bench/engine.py: N={args.steps} steps, K={args.runs} runs at once, "
        f"{args.seq_runs} runs alone, concurrency {args.concurrency} (prefork), "
        f"{os.cpu_count()} CPUs, worker log level {args.loglevel}"
    )
    with contextlib.ExitStack() as stack:
        tmp = Path(tempfile.mkdtemp(prefix="hub-bench-"))
        stack.callback(
            lambda: (
                log(f"worker logs kept in {tmp}")
                if args.keep_logs or errors
                else shutil.rmtree(tmp, ignore_errors=True)
            )
        )
        need_services = bool(only & {"redis", "floor"})
        pg_url = ""
        if need_services:
            redis_flush(args.redis_url)
            stack.callback(redis_flush, args.redis_url)
            dbname = f"hub_bench_{os.getpid()}"
            pg_url = pg_create(args.pg_url, dbname)
            stack.callback(pg_drop, args.pg_url, dbname)
        procs = Procs(tmp)
        stack.callback(procs.stop)

        def phase(key: str, title: str, run: Callable[[], Result]) -> None:
            log(f"-- {title} ...")
            try:
                results[key] = r = run()
            except PhaseError as exc:
                errors.append(f"{key}: {exc}")
                log(f"!! {key} failed: {exc}")
                return
            log(line(key, r))

        common = {"BENCH_STEPS": str(args.steps)}
        if "floor" in only:
            env = base_env(
                **common,
                BENCH_FLOOR_BROKER=args.redis_url,
                BENCH_FLOOR_DB=pg_url,
            )
            floor_table(pg_url)
            phase(
                "floor",
                "floor: celery chain, Redis + PostgreSQL",
                lambda: floor_phase("floor", args, procs, env, pg_url),
            )
        if "redis" in only:
            env = base_env(
                **common,
                HUB_HOME=str(tmp / "hub-redis"),
                HUB_DATABASE_URL=pg_url.replace("postgresql://", "postgresql+psycopg://", 1),
                HUB_BROKER_URL=args.redis_url,
                HUB_FLOWS="bench.flows_bench",
            )
            phase(
                "hub",
                "hub: Redis + PostgreSQL",
                lambda: hub_phase("hub", args, procs, env),
            )
        if "embedded" in only:
            env = base_env(
                **common,
                HUB_HOME=str(tmp / "hub-embedded"),
                HUB_FLOWS="bench.flows_bench",
                HUB_BROKER_POLL_SECONDS=str(args.poll_seconds),
            )
            phase(
                "embedded",
                "hub: embedded (SQLite + filesystem broker)",
                lambda: hub_phase("embedded", args, procs, env),
            )
        if "floor" in only and not args.no_embedded_floor:
            db = f"sqlite:///{tmp / 'floor.db'}"
            env = base_env(
                **common,
                BENCH_FLOOR_BROKER="benchfs://",  # filesystem transport, atomic put
                BENCH_FLOOR_FOLDER=str(tmp / "floor-broker"),
                BENCH_FLOOR_POLL=str(args.poll_seconds),
                BENCH_FLOOR_DB=db,
            )
            floor_table(db)
            phase(
                "embedded_floor",
                "floor: celery chain, embedded (SQLite + filesystem broker)",
                lambda: floor_phase("embedded_floor", args, procs, env, db),
            )

    figures = summarize(args, results, errors, time.monotonic() - started)
    log(json.dumps(figures))
    return 1 if errors else 0


def summarize(
    args: argparse.Namespace, results: dict[str, Result], errors: list[str], wall: float
) -> dict[str, Any]:
    out: dict[str, Any] = {"n_steps": args.steps, "k_runs": args.runs, "seq_runs": args.seq_runs}
    out["concurrency"] = args.concurrency
    for key, r in results.items():
        out.update(
            {
                f"{key}_steps_per_s": rnd(r.steps_per_s, 1),
                f"{key}_p50_run_ms": rnd(r.p50_run_ms, 1),
                f"{key}_p99_run_ms": rnd(r.p99_run_ms, 1),
                f"{key}_p50_step_ms": rnd(r.p50_step_ms),
                f"{key}_p99_step_ms": rnd(r.p99_step_ms),
                f"{key}_seq_step_ms": rnd(r.seq_step_ms),
                f"{key}_seq_run_ms": rnd(r.seq_run_ms, 1),
                f"{key}_worker_rss_mb": rnd(r.worker_rss_mb, 1),
                f"{key}_worker_pss_mb": rnd(r.worker_pss_mb, 1),
                f"{key}_worker_cpu_ms_per_step": rnd(r.worker_cpu_ms_per_step),
                f"{key}_db_cpu_ms_per_step": rnd(r.db_cpu_ms_per_step),
                f"{key}_broker_cpu_ms_per_step": rnd(r.broker_cpu_ms_per_step),
                f"{key}_throughput_wall_s": rnd(r.throughput_wall_s),
            }
        )
        if key in ("hub", "embedded"):
            out[f"{key}_failed_runs"] = r.failed_runs
        for name, value in r.extra.items():
            out[f"{key}_{name}"] = rnd(value)
    out["step_ms_definition"] = "started_at(step i+1) - started_at(step i), same run"

    def ratio(a: str, b: str) -> float | None:
        x, y = out.get(a), out.get(b)
        return round(x / y, 3) if x and y else None

    out["ratio_throughput"] = ratio("hub_steps_per_s", "floor_steps_per_s")
    out["ratio_p50_step_vs_floor_seq_step"] = ratio("hub_p50_step_ms", "floor_seq_step_ms")
    out["ratio_p50_run"] = ratio("hub_p50_run_ms", "floor_p50_run_ms")
    out["embedded_ratio_throughput"] = ratio("embedded_steps_per_s", "embedded_floor_steps_per_s")

    log("")
    log("targets (against the floor measured in this run; figures only, nothing asserted):")
    checks = [
        (
            "target_throughput_met",
            "hub throughput >= 60% of floor's (Redis + PostgreSQL)",
            out["ratio_throughput"],
            lambda v: v >= TARGET_RATIO_THROUGHPUT,
            "(hub/floor)",
        ),
        (
            "target_p50_step_met",
            "hub p50 step-to-step <= floor's sequential per-step",
            out["ratio_p50_step_vs_floor_seq_step"],
            lambda v: v <= 1.0,
            "(hub p50 / floor alone)",
        ),
        (
            "target_embedded_p50_step_met",
            "embedded p50 step-to-step < 25 ms",
            out.get("embedded_p50_step_ms"),
            lambda v: v < TARGET_EMBEDDED_P50_STEP_MS,
            "ms",
        ),
    ]
    for key, text, value, ok, unit in checks:
        met = None if value is None else bool(ok(value))
        verdict = {None: "n/a", True: "met", False: "MISSED"}[met]
        log(f"  {text}: {value} {unit} -> {verdict}")
        out[key] = met
    log(
        f"  worker RSS: hub {out.get('hub_worker_rss_mb')} MB, floor "
        f"{out.get('floor_worker_rss_mb')} MB, embedded {out.get('embedded_worker_rss_mb')} MB"
    )
    for err in errors:
        log(f"  error: {err.splitlines()[0]}")
    out["errors"] = errors
    out["wall_s"] = round(wall, 1)
    return out


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted; subprocesses stopped, databases dropped", file=sys.stderr)
        sys.exit(130)
