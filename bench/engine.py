"""Engine benchmark: the hub against a bare Celery chain (the floor), on one machine.

    .venv/bin/python bench/engine.py [--runs 200] [--steps 10] [--only redis|embedded|floor]

In one invocation and one process tree it measures four systems, in two groups:

Redis + PostgreSQL
  - floor: a bare Celery app (``bench/floor.py``; json, acks_late, prefetch 1,
    results ignored) whose task inserts one row and lets a real ``celery.chain``
    of N immutable signatures publish the next one, on ``celery worker -c 2 -P prefork``;
  - hub: the flow ``bench_noop`` (``bench/flows_bench.py``, N no-op steps) on
    ``hub worker --concurrency 2`` plus ``hub scheduler``, runs started with
    ``Hub(settings).engine.start_run`` from this process.
embedded (no broker URL, no database URL)
  - embedded: the hub on SQLite + Celery's filesystem transport (temporary ``HUB_HOME``);
  - embedded_floor: the floor on the filesystem transport + SQLite (WAL); its
    broker is the hub's own ``hubfs://`` transport (atomic hand-over; the stock
    one lets a consumer read an empty message file and kill the worker).

Within a group both workers are started and warmed up, then ``--rounds`` rounds
alternate between them (A B A B ...; the idle one blocks on its broker), so a
drift in the machine's load (other jobs share these CPUs) hits both sides of a
ratio. Each round: ``--seq-runs`` runs one at a time, then K runs submitted at
once. Reported figures are medians over the rounds (memory: the peak). It
prints figures and never asserts on time; its last line is one JSON object.

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
  processes on this host, whoever uses them (0 for the embedded phases,
  whose broker and database work is done inside the workers).

Redis db 14 (``--redis-url``) is flushed before and after (the bench refuses
to start when another client uses that db); a fresh PostgreSQL database is
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
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
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


def cpu_s(pids: Sequence[int]) -> dict[int, float]:
    """User + system CPU seconds of each of ``pids`` (its own, not its reaped children's)."""
    out = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[pid] = (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime
    return out


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

    def snapshot(self) -> dict[str, dict[int, float]]:
        return {
            "worker": cpu_s(tree_pids(self.root)),
            "db": cpu_s(pids_named("postgres")),
            "broker": cpu_s(pids_named("redis-server")),
        }

    @staticmethod
    def used(before: dict[int, float], after: dict[int, float]) -> float:
        """CPU seconds between two snapshots of a group; a process gone by then is left out."""
        return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


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
    """Figures of one system in one round (or the median over rounds)."""

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
    submit_ms_per_run: float | None = None
    failed_runs: int = 0
    rounds: int = 1


PEAK_FIELDS = ("worker_rss_mb", "worker_pss_mb", "failed_runs")


def combine(rounds: list[Result]) -> Result:
    """Median of each figure over the rounds; peak for memory, sum for failures."""
    out = Result()
    for name in Result.__dataclass_fields__:
        values = [getattr(r, name) for r in rounds if getattr(r, name) is not None]
        if not values:
            continue
        if name in ("failed_runs", "rounds"):
            setattr(out, name, sum(values))
        elif name in PEAK_FIELDS:
            setattr(out, name, max(values))
        else:
            setattr(out, name, pct(values, 50))
    return out


def step_gaps(starts_per_run: Iterable[Sequence[float]]) -> list[float]:
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


@dataclass
class Sample:
    """Raw timings of one batch of runs: per run (submitted, finished, step starts)."""

    runs: list[tuple[float, float, list[float]]]
    failed: int = 0


class System:
    """One system under test: a worker (and maybe a scheduler) plus a way to submit runs."""

    def __init__(
        self, label: str, args: argparse.Namespace, procs: Procs, *, services: bool
    ) -> None:
        self.label, self.args, self.procs = label, args, procs
        self.services = services  # uses the PostgreSQL and Redis servers of this host
        self.worker_pid = 0
        self.rounds: list[Result] = []
        self._seq: tuple[list[float], list[float]] = ([], [])
        self.batches = 0

    # implemented by the two kinds
    def start(self) -> None: ...
    def submit(self, tag: str, count: int) -> Any: ...
    def finished(self, tag: str, handle: Any) -> bool: ...
    def collect(self, tag: str, handle: Any) -> Sample: ...
    def stop(self) -> None: ...

    def batch(self, count: int, every: float) -> tuple[Sample, float, float]:
        """Submit ``count`` runs at once and wait for them: (sample, t_first_submit, t_submitted)."""
        self.batches += 1
        tag = f"b{self.batches}"
        t0 = time.time()
        handle = self.submit(tag, count)
        t1 = time.time()
        wait_until(
            f"{count} {self.label} runs",
            lambda: self.finished(tag, handle),
            self.procs,
            self.args.timeout,
            every,
        )
        return self.collect(tag, handle), t0, t1

    def warm_up(self) -> None:
        self.batch(2 * self.args.concurrency, 0.05)

    def sequential(self) -> None:
        """``--seq-runs`` runs one after the other, each alone on the worker."""
        gaps, runs = [], []
        for _ in range(self.args.seq_runs):
            sample, _, _ = self.batch(1, 0.005)
            for submitted, finished, starts in sample.runs:
                gaps += step_gaps([starts])
                runs.append((finished - submitted) * 1000)
        self._seq = (gaps, runs)

    def throughput(self) -> Result:
        """K runs at once; figures of this round (with the last ``sequential()``)."""
        n, k = self.args.steps, self.args.runs
        sampler, meter = Sampler(self.worker_pid), CpuMeter(self.worker_pid)
        sampler.start()
        cpu0 = meter.snapshot()
        try:
            sample, t0, t1 = self.batch(k, 0.05)
        finally:
            cpu1 = meter.snapshot()
            sampler.stop()
        last = max((f for _, f, _ in sample.runs), default=t0)
        wall = max(last - t0, 1e-9)

        def per_step(key: str) -> float | None:
            if key != "worker" and not self.services:
                return None  # embedded: no database or broker process of its own
            return CpuMeter.used(cpu0[key], cpu1[key]) * 1000 / (k * n)

        seq_gaps, seq_runs = self._seq
        res = Result(
            steps_per_s=k * n / wall,
            p50_run_ms=pct([(f - s) * 1000 for s, f, _ in sample.runs], 50),
            p99_run_ms=pct([(f - s) * 1000 for s, f, _ in sample.runs], 99),
            p50_step_ms=pct(step_gaps(st for _, _, st in sample.runs), 50),
            p99_step_ms=pct(step_gaps(st for _, _, st in sample.runs), 99),
            seq_step_ms=pct(seq_gaps, 50),
            seq_run_ms=pct(seq_runs, 50),
            worker_rss_mb=sampler.peak_rss_kb / 1024,
            worker_pss_mb=sampler.peak_pss_kb / 1024,
            worker_cpu_ms_per_step=per_step("worker"),
            db_cpu_ms_per_step=per_step("db"),
            broker_cpu_ms_per_step=per_step("broker"),
            throughput_wall_s=wall,
            submit_ms_per_run=(t1 - t0) * 1000 / k,
            failed_runs=sample.failed,
        )
        self.rounds.append(res)
        return res


# ------------------------------------------------------------------- floor
class Floor(System):
    """The bare Celery chain (``bench/floor.py``) on its own worker."""

    def __init__(
        self,
        label: str,
        args: argparse.Namespace,
        procs: Procs,
        env: dict[str, str],
        db_url: str,
    ) -> None:
        super().__init__(label, args, procs, services=not db_url.startswith("sqlite"))
        from bench import floor

        self.floor = floor
        self.env, self.db_url = env, db_url
        self.app = floor.make_app(
            env["BENCH_FLOOR_BROKER"], env.get("BENCH_FLOOR_FOLDER"), args.poll_seconds
        )
        self.reader: Reader | None = None

    def start(self) -> None:
        floor_table(self.db_url)
        self.reader = Reader(self.db_url)
        a = self.args
        proc = self.procs.start(
            f"{self.label}_worker",
            [
                PY, "-m", "celery", "-A", "bench.floor:app", "worker",
                "-Q", self.floor.QUEUE, "-c", str(a.concurrency), "-P", "prefork",
                "--loglevel", a.loglevel, "-n", f"{self.label}-{os.getpid()}@%h",
                "--without-gossip", "--without-mingle", "--without-heartbeat",
            ],
            self.env,
        )  # fmt: skip
        self.worker_pid = proc.pid
        with self.app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=3)

    def submit(self, tag: str, count: int) -> dict[str, float]:
        from celery import chain

        sent = {}
        for _ in range(count):
            run_id = uuid.uuid4().hex
            sigs = [
                self.app.signature(
                    self.floor.TASK, args=(tag, run_id, i), immutable=True, queue=self.floor.QUEUE
                )
                for i in range(self.args.steps)
            ]
            sent[run_id] = time.time()
            chain(*sigs).apply_async()
        return sent

    def finished(self, tag: str, handle: dict[str, float]) -> bool:
        assert self.reader is not None
        return self.reader.floor_count(tag, self.args.steps - 1) >= len(handle)

    def collect(self, tag: str, handle: dict[str, float]) -> Sample:
        assert self.reader is not None
        rows = self.reader.floor_steps(tag)
        return Sample(
            [
                (handle[run_id], max(fi for _, _, fi in steps), [st for _, st, _ in steps])
                for run_id, steps in rows.items()
            ]
        )

    def stop(self) -> None:
        if self.reader is not None:
            self.reader.close()
        self.procs.stop(f"{self.label}_worker")
        self.app.close()


# --------------------------------------------------------------------- hub
class HubSystem(System):
    """``bench_noop`` on ``hub worker`` + ``hub scheduler``; runs started with start_run."""

    def __init__(
        self, label: str, args: argparse.Namespace, procs: Procs, env: dict[str, str]
    ) -> None:
        super().__init__(label, args, procs, services="HUB_DATABASE_URL" in env)
        from hub.runtime import Hub
        from hub.settings import Settings

        self.env = env
        self.settings = Settings(
            home=Path(env["HUB_HOME"]),
            database_url=env.get("HUB_DATABASE_URL"),
            broker_url=env.get("HUB_BROKER_URL"),
            flows=env["HUB_FLOWS"],
            broker_poll_seconds=float(env.get("HUB_BROKER_POLL_SECONDS", "0.01")),
        )
        self.hub = Hub(self.settings)
        self.reader: Reader | None = None

    def start(self) -> None:
        from hub.store import Store

        store = Store(self.settings.database)
        store.migrate()
        store.dispose()
        self.reader = Reader(self.settings.database)
        a = self.args
        proc = self.procs.start(
            f"{self.label}_worker",
            [
                PY, "-m", "hub", "worker", "--concurrency", str(a.concurrency),
                "--loglevel", a.loglevel,
            ],
            self.env,
        )  # fmt: skip
        self.worker_pid = proc.pid
        self.procs.start(f"{self.label}_scheduler", [PY, "-m", "hub", "scheduler"], self.env)

    def submit(self, tag: str, count: int) -> list[str]:
        engine = self.hub.engine
        return [engine.start_run(FLOW, {"batch": tag, "i": i}).run_id for i in range(count)]

    def finished(self, tag: str, handle: list[str]) -> bool:
        assert self.reader is not None
        return self.reader.hub_counts(handle)[0] >= len(handle)

    def collect(self, tag: str, handle: list[str]) -> Sample:
        assert self.reader is not None
        runs = self.reader.hub_runs(handle)
        steps = self.reader.hub_steps(handle)
        return Sample(
            [
                (created, finished, [st for st, _ in steps.get(run_id, [])])
                for run_id, _, created, finished in runs
                if finished is not None
            ],
            failed=sum(1 for _, status, _, _ in runs if status != "succeeded"),
        )

    def stop(self) -> None:
        if self.reader is not None:
            self.reader.close()
        self.procs.stop(f"{self.label}_worker", f"{self.label}_scheduler")
        if "store" in self.hub.__dict__:
            self.hub.store.dispose()
        if "celery" in self.hub.__dict__:
            self.hub.celery.close()


def compare(title: str, systems: list[System], rounds: int, results: dict[str, Result]) -> None:
    """Start every system, warm it up, then alternate them round by round (ABAB...).

    Alternating spreads a drift in the machine's load over both sides of a ratio;
    the idle system waits on its broker meanwhile (blocking read or 10 ms polls).
    """
    if not systems:
        return
    log(f"-- {title}: starting {', '.join(s.label for s in systems)}")
    try:
        for s in systems:
            s.start()
        for s in systems:
            s.warm_up()
        for r in range(rounds):
            for s in systems:
                s.sequential()
                res = s.throughput()
                log(line(f"{s.label} [{r + 1}/{rounds}]", res))
    finally:
        for s in systems:
            with contextlib.suppress(Exception):
                s.stop()
        # figures of the rounds that completed, also when a later one failed
        for s in systems:
            if s.rounds:
                results[s.label] = combine(s.rounds)
                if rounds > 1:
                    log(line(f"{s.label} ({len(s.rounds)} rounds, median)", results[s.label]))


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


def redis_claim(url: str) -> None:
    """Flush the bench's Redis db, refusing when another client is connected to it.

    Another consumer on the same db would take the bench's messages (and the
    flush would drop its own): the e2e tests use db 12, the test fixtures db 9.
    """
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=3)
    try:
        db = client.connection_pool.connection_kwargs.get("db", 0)
        me = client.client_id()
        others = [
            c for c in client.client_list() if int(c.get("db", -1)) == db and int(c["id"]) != me
        ]
        if others:
            raise SystemExit(
                f"error: {len(others)} other Redis client(s) use db {db} of {url} "
                f"(e.g. {others[0].get('addr')}, last command {others[0].get('cmd')}); "
                "pick a free db with --redis-url redis://127.0.0.1:6379/<n>"
            )
        client.flushdb()
    finally:
        client.close()


def redis_flush(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=3)
    try:
        client.flushdb()
    finally:
        client.close()


# -------------------------------------------------------------------- main
def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--runs", "-k", type=int, default=200, help="runs submitted at once (K)")
    p.add_argument("--steps", "-n", type=int, default=10, help="steps per run (N)")
    p.add_argument(
        "--only",
        action="append",
        choices=("redis", "embedded", "floor"),
        help="run only these (repeatable): redis = hub on Redis + PostgreSQL, "
        "embedded = hub on SQLite + filesystem broker, floor = the bare Celery chains",
    )
    p.add_argument(
        "--rounds", type=int, default=3, help="alternating rounds per system (median reported)"
    )
    p.add_argument("--seq-runs", type=int, default=10, help="runs executed alone, per round")
    p.add_argument("--concurrency", type=int, default=2, help="worker processes (prefork)")
    p.add_argument("--loglevel", default="WARNING", help="worker log level (same for all)")
    p.add_argument("--no-embedded-floor", action="store_true", help="skip the embedded floor")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per wait")
    p.add_argument("--poll-seconds", type=float, default=0.01, help="filesystem broker polling")
    p.add_argument(
        "--redis-url",
        default="redis://127.0.0.1:6379/14",
        help="a Redis db of its own, flushed before and after (tests use 9 and 12)",
    )
    p.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    p.add_argument("--keep-logs", action="store_true", help="keep the workers' logs")
    return p.parse_args(argv)


def line(name: str, r: Result) -> str:
    def f(v: float | None, unit: str = "") -> str:
        return "n/a" if v is None else f"{v:.1f}{unit}"

    return (
        f"{name:<26} {f(r.steps_per_s):>6} steps/s | run p50 {f(r.p50_run_ms):>7} "
        f"p99 {f(r.p99_run_ms):>7} ms | step p50 {f(r.p50_step_ms):>5} p99 {f(r.p99_step_ms):>5} "
        f"alone {f(r.seq_step_ms):>5} ms | RSS {f(r.worker_rss_mb)} PSS {f(r.worker_pss_mb)} MB | "
        f"CPU/step worker {f(r.worker_cpu_ms_per_step)} db {f(r.db_cpu_ms_per_step)} "
        f"broker {f(r.broker_cpu_ms_per_step)} ms"
        + (f" | FAILED RUNS {r.failed_runs}" if r.failed_runs else "")
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

    # SIGINT too: a shell starts background jobs with SIGINT ignored
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    started = time.monotonic()
    load_start = os.getloadavg()[0]
    results: dict[str, Result] = {}
    errors: list[str] = []
    log(
        f"bench/engine.py: N={args.steps} steps, K={args.runs} runs at once, "
        f"{args.rounds} alternating rounds, {args.seq_runs} runs alone per round, "
        f"concurrency {args.concurrency} (prefork), {os.cpu_count()} CPUs, "
        f"worker log level {args.loglevel}, load average {load_start:.2f}"
    )
    log(
        "step = started_at(step i+1) - started_at(step i) in one run; run = last finish - "
        "submission; alone = p50 step of runs executed one at a time"
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
        pg_url = ""
        if only & {"redis", "floor"}:
            redis_claim(args.redis_url)
            stack.callback(redis_flush, args.redis_url)
            dbname = f"hub_bench_{os.getpid()}"
            pg_url = pg_create(args.pg_url, dbname)
            stack.callback(pg_drop, args.pg_url, dbname)
        procs = Procs(tmp)
        stack.callback(procs.stop)
        common = {"BENCH_STEPS": str(args.steps)}

        services: list[System] = []
        if "floor" in only:
            env = base_env(**common, BENCH_FLOOR_BROKER=args.redis_url, BENCH_FLOOR_DB=pg_url)
            services.append(Floor("floor", args, procs, env, pg_url))
        if "redis" in only:
            env = base_env(
                **common,
                HUB_HOME=str(tmp / "hub-redis"),
                HUB_DATABASE_URL=pg_url.replace("postgresql://", "postgresql+psycopg://", 1),
                HUB_BROKER_URL=args.redis_url,
                HUB_FLOWS="bench.flows_bench",
            )
            services.append(HubSystem("hub", args, procs, env))
        embedded: list[System] = []
        if "embedded" in only:
            env = base_env(
                **common,
                HUB_HOME=str(tmp / "hub-embedded"),
                HUB_FLOWS="bench.flows_bench",
                HUB_BROKER_POLL_SECONDS=str(args.poll_seconds),
            )
            embedded.append(HubSystem("embedded", args, procs, env))
        if "floor" in only and not args.no_embedded_floor:
            env = base_env(
                **common,
                BENCH_FLOOR_BROKER="hubfs://",  # the hub's filesystem transport
                BENCH_FLOOR_FOLDER=str(tmp / "floor-broker"),
                BENCH_FLOOR_POLL=str(args.poll_seconds),
                BENCH_FLOOR_DB=f"sqlite:///{tmp / 'floor.db'}",
            )
            embedded.append(
                Floor("embedded_floor", args, procs, env, f"sqlite:///{tmp / 'floor.db'}")
            )

        for title, group in (
            ("Redis + PostgreSQL", services),
            ("embedded: SQLite + filesystem broker", embedded),
        ):
            try:
                compare(title, group, args.rounds, results)
            except PhaseError as exc:
                errors.append(f"{title}: {exc}")
                log(f"!! {title} failed: {exc}")

    figures = summarize(args, results, errors, time.monotonic() - started)
    figures["load_avg_1m_start"] = round(load_start, 2)
    figures["load_avg_1m_end"] = round(os.getloadavg()[0], 2)
    log(json.dumps(figures))
    return 1 if errors else 0


def summarize(
    args: argparse.Namespace, results: dict[str, Result], errors: list[str], wall: float
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "n_steps": args.steps,
        "k_runs": args.runs,
        "rounds": args.rounds,
        "seq_runs_per_round": args.seq_runs,
        "concurrency": args.concurrency,
    }
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
                f"{key}_submit_ms_per_run": rnd(r.submit_ms_per_run),
            }
        )
        out[f"{key}_rounds_done"] = r.rounds
        if key in ("hub", "embedded"):
            out[f"{key}_failed_runs"] = r.failed_runs
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
