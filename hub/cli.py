"""The ``hub`` command: run the hub, start and inspect runs, act on paused steps."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from hub.cli_connections import connections_app
from hub.cli_hooks import hooks_app
from hub.cli_reviews import reviews_app
from hub.cli_schedules import schedules_app
from hub.cli_users import first_admin, users_app
from hub.errors import HubError, InvalidInput
from hub.settings import Settings

app = typer.Typer(
    help="The hub: durable Python flows with a person in the loop.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
runs_app = typer.Typer(help="Run history and actions on runs.", invoke_without_command=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
app.add_typer(runs_app, name="runs")
app.add_typer(db_app, name="db")
app.add_typer(users_app, name="users")
app.add_typer(reviews_app, name="reviews")
app.add_typer(hooks_app, name="hooks")
app.add_typer(schedules_app, name="schedules")
app.add_typer(connections_app, name="connections")

TERMINAL = {"succeeded", "failed", "cancelled"}
STATUSES = ("queued", "running", "needs_review", "succeeded", "failed", "cancelled")
ACTIONS = "resume|skip|complete|abort"
RunId = Annotated[str, typer.Argument(help="Run id (see `hub runs`).")]


def _hub() -> Any:
    from hub.runtime import Hub

    return Hub(Settings())


def _loaded(hub: Any) -> Any:
    """Import the flow modules now; a broken one ends the command with its file and line."""
    try:
        return hub.registry
    except HubError as exc:
        fail(str(exc))


def _require_tables(hub: Any) -> None:
    """Stop a long-running process early when the database has no hub tables.

    An unreachable database is not checked here: workers and the scheduler
    keep retrying until it is back.
    """
    from sqlalchemy import inspect
    from sqlalchemy.exc import SQLAlchemyError

    try:
        missing = not inspect(hub.store.engine).has_table("runs")
    except SQLAlchemyError:
        return
    finally:
        hub.store.dispose()
    if missing:
        fail(f"database {_safe_url(hub.settings.database)} has no hub tables: run `hub db upgrade`")


def _json_logs(settings: Settings, level: str = "INFO") -> bool:
    """With ``HUB_LOG_FORMAT=json``, write every log line to stderr as JSON (``hub.logs``).

    Returns whether it did; with ``text`` each command logs as it always has.
    """
    if settings.log_format != "json":
        return False
    from hub import logs

    logs.configure(level, json=True)
    return True


def fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _json_arg(text: str | None, what: str) -> Any:
    if text is None:
        return None
    if text.startswith("@"):
        path = Path(text[1:])
        if not path.is_file():
            fail(f"{what}: file {path} not found", 2)
        text = path.read_text()
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        fail(
            f"{what} is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); "
            'quote it for your shell, e.g. --input \'{"name": "Ada"}\'',
            2,
        )


def _print_run(run: dict[str, Any]) -> None:
    typer.echo(
        f"run {run['id']}  {run['flow']}  {run['status']}"
        + (f"  ({run['duration_ms']} ms)" if run.get("duration_ms") is not None else "")
    )
    if run.get("error"):
        typer.echo(f"  error: {run['error']}")
    width = max((len(s["key"]) for s in run["steps"]), default=4)
    for s in run["steps"]:
        dur = f"{s['duration_ms']:>8} ms" if s["duration_ms"] is not None else " " * 11
        by = f"  by {s['completed_by']}" if s.get("completed_by") else ""
        typer.echo(f"  {s['key']:<{width}}  {s['status']:<12} {dur}  x{s['attempts']}{by}")
        pad = " " * width
        if s["status"] in ("succeeded", "skipped") and s["output"] is not None:
            typer.echo(f"  {pad}  -> {json.dumps(s['output'])[:200]}")
        if s.get("error") and s["status"] not in ("succeeded",):
            typer.echo(f"  {pad}  !! {_line(s['error'])}")
        for a in s.get("attempt_log", []):
            took = f"{a['duration_ms']} ms" if a["duration_ms"] is not None else "-"
            kind = f" ({a['error_kind']})" if a["error_kind"] else ""
            typer.echo(
                f"  {pad}  attempt {a['number']}: {a['status']}{kind}, {took}, "
                f"started {a['started_at']} on {a['worker']}"
            )
    for r in run.get("reviews", []):
        if r["status"] == "open":
            typer.echo(
                f"  review {r['id']} open on {r['step']} ({r['reason']}): {r['message'][:200]}"
            )
    if run["status"] == "needs_review":
        typer.echo(f"  act: hub runs {ACTIONS} {run['id']}  (see --help of each)")
    if run["status"] == "succeeded":
        typer.echo(f"output: {json.dumps(run['output'])}")


def _why(run: dict[str, Any]) -> str:
    """One line saying why a run did not succeed, and what to do about it."""
    rid = run["id"]
    if run["status"] == "needs_review":
        open_ = [r for r in run.get("reviews", []) if r["status"] == "open"]
        where = ""
        if open_:
            r = open_[0]
            where = f" at step {r['step']!r} ({r['reason']}: {_line(r['message'])})"
        return (
            f"run {rid} is waiting for review{where}; "
            f"see `hub runs show {rid}`, then `hub runs {ACTIONS} {rid}`"
        )
    error = run.get("error") or next(
        (s["error"] for s in run["steps"] if s.get("error") and s["status"] != "succeeded"), None
    )
    return f"run {rid} {run['status']}" + (f": {_line(error)}" if error else "")


def _line(text: str, limit: int = 300) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _describe(hub: Any, run_id: str, attempts: bool = False) -> dict[str, Any]:
    from hub.views import describe_run

    with hub.store.read() as s:
        return describe_run(s, run_id, attempts=attempts)


@app.command()
def run(
    flow: Annotated[str, typer.Argument(help="Flow name (see `hub flows`).")],
    input: Annotated[
        str | None, typer.Option("--input", "-i", help="Run input as JSON, or @file.json.")
    ] = None,
    wait: Annotated[bool, typer.Option(help="Wait until the run finishes or pauses.")] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the run as one JSON object.")
    ] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait with --wait.")] = 300.0,
    key: Annotated[
        str | None, typer.Option("--idempotency-key", help="Start at most one run per key.")
    ] = None,
) -> None:
    """Start a run of FLOW; with --wait, follow it until it finishes or pauses.

    Exit codes: 0 started (or, with --wait, succeeded); 1 failed, cancelled or
    waiting for review; 2 bad input or unknown flow (nothing stored); 3 still
    unfinished after --timeout (is a worker running?).
    """
    hub = _hub()
    data = _json_arg(input, "--input")
    _loaded(hub)
    try:
        started = hub.engine.start_run(
            flow, data if data is not None else {}, trigger="cli", idempotency_key=key
        )
    except HubError as exc:
        fail(str(exc), 2)
    if not wait:
        if as_json:
            typer.echo(json.dumps({"id": started.run_id, "created": started.created}))
        else:
            typer.echo(f"run {started.run_id} {'started' if started.created else 'already exists'}")
        return
    deadline = time.monotonic() + timeout
    view = _describe(hub, started.run_id)
    while view["status"] not in TERMINAL and view["status"] != "needs_review":
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
        view = _describe(hub, started.run_id)
    if as_json:
        typer.echo(json.dumps(view, default=str))
    else:
        _print_run(view)
    if view["status"] == "succeeded":
        return
    if view["status"] not in TERMINAL and view["status"] != "needs_review":
        fail(
            f"run {started.run_id} is still {view['status']} after {timeout:g} s; "
            "is a worker running (`hub worker` or `hub up`)? `hub doctor` checks the setup",
            3,
        )
    fail(_why(view))


@runs_app.callback()
def runs_list(
    ctx: typer.Context,
    flow: Annotated[str | None, typer.Option(help="Only runs of this flow.")] = None,
    status: Annotated[str | None, typer.Option(help="Only runs in this status.")] = None,
    limit: Annotated[int, typer.Option(help="How many, newest first.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list.")] = False,
) -> None:
    """List recent runs (newest first); the commands below act on one run."""
    if ctx.invoked_subcommand is not None:
        return
    from hub.views import list_runs

    if status is not None and status not in STATUSES:
        fail(f"unknown status {status!r}; statuses are {', '.join(STATUSES)}", 2)
    hub = _hub()
    with hub.store.read() as s:
        rows = list_runs(s, limit=limit, flow=flow, status=status)
    if as_json:
        typer.echo(json.dumps(rows))
        return
    if not rows:
        if flow or status:
            typer.echo("no runs match")
        else:
            typer.echo('no runs yet; start one with `hub run hello --input \'{"name": "Ada"}\'`')
        return
    typer.echo(f"{'RUN':<32}  {'CREATED (UTC)':<24}  {'FLOW':<20} {'STATUS':<13} DURATION")
    for r in rows:
        dur = f"{r['duration_ms']} ms" if r["duration_ms"] is not None else ""
        typer.echo(f"{r['id']}  {r['created_at']}  {r['flow']:<20} {r['status']:<13} {dur}")


@runs_app.command("show")
def runs_show(
    run_id: RunId,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object, with every attempt.")
    ] = False,
    attempts: Annotated[bool, typer.Option(help="Include every attempt of every step.")] = False,
) -> None:
    """Show one run: status, each step's status, duration and output."""
    hub = _hub()
    try:
        view = _describe(hub, run_id, attempts=attempts or as_json)
    except HubError as exc:
        fail(str(exc))
    if as_json:
        typer.echo(json.dumps(view, default=str))
    else:
        _print_run(view)


_DONE = {
    "cancel": "cancelled",
    "abort": "aborted",
    "resume": "paused step sent to run again",
    "skip": "paused step skipped",
    "complete": "paused step completed by hand",
}


def _act(action: str, run_id: str, **kw: Any) -> None:
    hub = _hub()
    _loaded(hub)
    try:
        getattr(hub.engine, action)(run_id, **kw)
        view = _describe(hub, run_id)
    except InvalidInput as exc:
        fail(str(exc), 2)
    except HubError as exc:
        fail(str(exc))
    typer.echo(f"run {run_id}: {_DONE[action]}; the run is now {view['status']}")


Who = Annotated[str | None, typer.Option("--by", help="Who acts (kept in the run's history).")]
StepKey = Annotated[str | None, typer.Option("--step", help="The paused step, when several are.")]


@runs_app.command("cancel")
def runs_cancel(run_id: RunId, reason: str = "cancelled from the CLI", by: Who = None) -> None:
    """Cancel a run; nothing of it runs afterwards."""
    _act("cancel", run_id, reason=reason, by=by or _user())


@runs_app.command("resume")
def runs_resume(
    run_id: RunId,
    step: StepKey = None,
    input: Annotated[
        str | None, typer.Option(help="Edited input for the step, JSON or @file.")
    ] = None,
    by: Who = None,
) -> None:
    """Retry the paused step (optionally with edited input); the run goes on from there."""
    _act("resume", run_id, step=step, input=_json_arg(input, "--input"), by=by or _user())


@runs_app.command("skip")
def runs_skip(
    run_id: RunId,
    reason: str = typer.Option(..., help="Why it is skipped."),
    step: StepKey = None,
    by: Who = None,
) -> None:
    """Skip the paused step; its input passes through as its output."""
    _act("skip", run_id, step=step, reason=reason, by=by or _user())


@runs_app.command("complete")
def runs_complete(
    run_id: RunId,
    output: Annotated[str, typer.Option(help="The step's output, JSON or @file, as done by hand.")],
    step: StepKey = None,
    by: Who = None,
) -> None:
    """Complete the paused step by hand with OUTPUT; the run goes on."""
    _act("complete", run_id, output=_json_arg(output, "--output"), step=step, by=by or _user())


@runs_app.command("abort")
def runs_abort(
    run_id: RunId, reason: str = typer.Option(..., help="Why the run is given up."), by: Who = None
) -> None:
    """End the run as failed."""
    _act("abort", run_id, reason=reason, by=by or _user())


def _user() -> str:
    """``cli:<login name>``, recorded as who acted when --by is not given."""
    import getpass

    try:
        name = getpass.getuser()
    except (KeyError, OSError):  # no login name, e.g. a uid without a passwd entry
        name = "unknown"
    return f"cli:{name}"


@app.command()
def flows(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List the flows, their steps and triggers."""
    registry = _loaded(_hub())
    out = [
        {
            "name": f.name,
            "module": f.module,
            "description": f.description,
            "steps": f.describe(),
            "triggers": [str(t) for t in f.triggers],
        }
        for f in registry
    ]
    if as_json:
        typer.echo(json.dumps(out))
        return
    if not out:
        typer.echo(f"no flows found in {Settings().flows!r}; set HUB_FLOWS to your flow modules")
    for f in out:
        typer.echo(f"{f['name']}  ({f['module']})  {f['description']}".rstrip())
        for s in f["steps"]:
            where = f" in {s['in']}" if "in" in s else ""
            extra = f" retries={s['retries']}" if "retries" in s else ""
            typer.echo(f"  - {s['name']} [{s['kind']}, queue {s['queue']}{where}]{extra}")
        for t in f["triggers"]:
            typer.echo(f"  trigger: {t}")


@db_app.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Apply database migrations (safe to run on every start)."""
    settings = Settings()
    from hub.store import Store

    store = Store(settings.database)
    before = store.revision()
    store.migrate(revision)
    after = store.revision()
    url = _safe_url(settings.database)
    if before == after:
        typer.echo(f"database {url} is already at revision {after}")
    else:
        typer.echo(f"database {url} upgraded from {before or 'empty'} to revision {after}")


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


@app.command()
def worker(
    queues: Annotated[str, typer.Option(help="Comma-separated queues to consume.")] = "default",
    concurrency: Annotated[int, typer.Option(help="Worker processes.")] = 2,
    loglevel: Annotated[str, typer.Option()] = "INFO",
    pool: Annotated[str, typer.Option(help="Celery pool: prefork, solo or threads.")] = "prefork",
) -> None:
    """Run a worker that executes steps from QUEUES."""
    hub = _hub()
    _json_logs(hub.settings, loglevel)  # before Celery's setup, which then keeps it
    _loaded(hub)  # import flows before forking, fail fast
    _require_tables(hub)
    hub.celery.worker_main(
        [
            "worker",
            "-Q",
            queues,
            "-c",
            str(concurrency),
            "--loglevel",
            loglevel,
            "-P",
            pool,
            "-n",
            f"hub-{os.getpid()}@%h",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ]
    )


@app.command()
def scheduler(
    once: Annotated[bool, typer.Option(help="Tick once and exit.")] = False,
) -> None:
    """Tick: re-publish lost or due steps, free leases of dead workers. Two are harmless."""
    from hub.scheduler import serve

    hub = _hub()
    _json_logs(hub.settings)
    _loaded(hub)
    _require_tables(hub)
    serve(hub, once=once)


@app.command()
def web(
    host: str = "127.0.0.1",
    port: int = 8000,
) -> None:
    """Serve the web app and JSON API."""
    import uvicorn

    from hub.web import create_app
    from hub.web.app import settle

    hub = _hub()
    # JSON: uvicorn's loggers go to the root logger's JSON handler instead of its own
    log_config = None if _json_logs(hub.settings) else uvicorn.config.LOGGING_CONFIG
    _loaded(hub)
    _require_tables(hub)
    first_admin(hub.store)
    served = create_app(hub)
    settle()
    uvicorn.run(
        served,
        host=host,
        port=port,
        log_level="info",
        access_log=False,
        log_config=log_config,
    )


@app.command()
def up(
    port: Annotated[int, typer.Option(help="Web app port.")] = 8000,
    host: str = "127.0.0.1",
    concurrency: Annotated[int, typer.Option(help="Worker processes.")] = 2,
    demo: Annotated[
        bool,
        typer.Option(
            "--demo",
            help="Also run the bundled legacy order-entry web app on :8100, with a webhook "
            "and a schedule for the legacy_orders flow, set up the desktop_orders flow on a "
            "display of the worker's own, and print what to try.",
        ),
    ] = False,
) -> None:
    """Run everything on this machine: web app, a worker and the scheduler. Ctrl-C stops it."""
    settings = Settings()
    extra: dict[str, str] = {}
    if demo:
        from hub import demo as demo_mode

        settings.home.mkdir(parents=True, exist_ok=True)
        extra = demo_mode.environment(settings.home.resolve())
        os.environ.update(extra)  # this process loads the flows too (their triggers)
    from hub.store import Store

    _loaded(_hub())
    store = Store(settings.database)
    store.migrate()
    first_admin(store)
    store.engine.dispose()
    exe = [sys.executable, "-m", "hub"]
    queues = "default,browser,desktop"
    procs: dict[str, subprocess.Popen[bytes]] = {}
    if demo:
        procs["legacy-app"] = subprocess.Popen(demo_mode.legacy_app(extra))
    procs |= {
        "web": subprocess.Popen([*exe, "web", "--host", host, "--port", str(port)]),
        "worker": subprocess.Popen(
            [*exe, "worker", "--queues", queues, "--concurrency", str(concurrency)]
        ),
        "scheduler": subprocess.Popen([*exe, "scheduler"]),
    }
    typer.echo(f"hub is up: http://{host}:{port}  (home {settings.home.resolve()}, Ctrl-C stops)")
    if demo:
        typer.echo(demo_mode.guide(f"http://{host}:{port}", extra))
    stopping = False

    def stop(*_: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    code = 0
    while not stopping:
        time.sleep(0.2)
        for name, p in procs.items():
            # on Ctrl-C the children get SIGINT too and may exit first: that is no failure
            if not stopping and p.poll() is not None:
                typer.echo(f"error: {name} exited with code {p.returncode}; stopping", err=True)
                stopping, code = True, 1
    for p in procs.values():
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 15
    for p in procs.values():
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
    typer.echo("hub stopped")
    raise typer.Exit(code)


@app.command()
def doctor() -> None:
    """Say what is reachable and what is missing, and how to fix it."""
    from hub.doctor import checks

    bad = 0
    for ok, name, detail in checks(Settings()):
        mark = "ok " if ok else ("-- " if ok is None else "NO ")
        bad += ok is False
        typer.echo(f"{mark} {name}: {detail}")
    raise typer.Exit(1 if bad else 0)


def main() -> None:
    """Entry point: run the CLI; an unreachable service or a bad setting is one line, exit 1."""
    try:
        app()
    except Exception as exc:
        message = _environment_error(exc)
        if message is None:
            raise
        typer.echo(f"error: {message}", err=True)
        sys.exit(1)


def _environment_error(exc: Exception) -> str | None:
    """Say what is wrong with the database, broker or settings; None for anything else."""
    from kombu.exceptions import OperationalError as BrokerError
    from pydantic import ValidationError
    from sqlalchemy.exc import OperationalError, ProgrammingError

    from hub.doctor import safe_broker_url, short_error

    if isinstance(exc, ValidationError) and exc.title == "Settings":
        err = exc.errors()[0]
        name = "HUB_" + "_".join(str(p) for p in err["loc"]).upper()
        return f"setting {name}: {err['msg']}"
    if isinstance(exc, (OperationalError, ProgrammingError)):
        url = _safe_url(Settings().database)
        if _schema_missing(exc):
            return (
                f"database {url} has no hub tables or an old schema ({short_error(exc)}): "
                "run `hub db upgrade`"
            )
        if isinstance(exc, OperationalError):
            return (
                f"database {url}: {short_error(exc)}; "
                "check HUB_DATABASE_URL and that the database is up (`hub doctor`)"
            )
    if isinstance(exc, BrokerError):
        url = safe_broker_url(Settings().broker)
        return (
            f"broker {url} unreachable: {short_error(exc)}; check HUB_BROKER_URL and that "
            "the broker is up (`hub doctor`). Runs already stored are sent by the scheduler "
            "once it is back"
        )
    return None


def _schema_missing(exc: Exception) -> bool:
    orig = getattr(exc, "orig", None)
    if getattr(orig, "sqlstate", None) in ("42P01", "42703"):  # undefined table / column
        return True
    text = str(orig).lower()
    return "no such table" in text or "no such column" in text
