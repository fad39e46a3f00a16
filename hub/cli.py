"""The ``hub`` command: run the hub, start and inspect runs, act on paused steps."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from hub.errors import HubError
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

TERMINAL = {"succeeded", "failed", "cancelled"}


def _hub() -> Any:
    from hub.runtime import Hub

    return Hub(Settings())


def fail(message: str, code: int = 1) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _json_arg(text: str | None, what: str) -> Any:
    if text is None:
        return None
    if text.startswith("@"):
        path = Path(text[1:])
        if not path.exists():
            fail(f"{what}: file {path} not found")
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
        typer.echo(f"  {s['key']:<{width}}  {s['status']:<12} {dur}  x{s['attempts']}")
        if s["status"] in ("succeeded", "skipped") and s["output"] is not None:
            typer.echo(f"  {'':<{width}}  -> {json.dumps(s['output'])[:200]}")
        if s.get("error") and s["status"] not in ("succeeded",):
            typer.echo(f"  {'':<{width}}  !! {s['error'][:300]}")
    for r in run.get("reviews", []):
        if r["status"] == "open":
            typer.echo(
                f"  review {r['id']} open on {r['step']} ({r['reason']}): {r['message'][:200]}"
            )
    if run["status"] == "succeeded":
        typer.echo(f"output: {json.dumps(run['output'])}")


def _describe(hub: Any, run_id: str, attempts: bool = False) -> dict[str, Any]:
    from hub.views import describe_run

    with hub.store.transaction() as s:
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
    """Start a run of FLOW. With --wait, exits 0 only if the run succeeds."""
    hub = _hub()
    data = _json_arg(input, "--input")
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
        typer.echo(
            f"error: run {started.run_id} is still {view['status']} after {timeout:g} s; "
            "is a worker running (`hub worker` or `hub up`)?",
            err=True,
        )
        raise typer.Exit(3)
    raise typer.Exit(1)


@runs_app.callback()
def runs_list(
    ctx: typer.Context,
    flow: Annotated[str | None, typer.Option(help="Only runs of this flow.")] = None,
    status: Annotated[str | None, typer.Option(help="Only runs in this status.")] = None,
    limit: Annotated[int, typer.Option(help="How many, newest first.")] = 20,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List recent runs (newest first)."""
    if ctx.invoked_subcommand is not None:
        return
    from hub.views import list_runs

    hub = _hub()
    with hub.store.transaction() as s:
        rows = list_runs(s, limit=limit, flow=flow, status=status)
    if as_json:
        typer.echo(json.dumps(rows))
        return
    if not rows:
        typer.echo('no runs yet; start one with `hub run hello --input \'{"name": "Ada"}\'`')
    for r in rows:
        dur = f"{r['duration_ms']} ms" if r["duration_ms"] is not None else ""
        typer.echo(f"{r['id']}  {r['created_at']}  {r['flow']:<20} {r['status']:<13} {dur}")


@runs_app.command("show")
def runs_show(
    run_id: str,
    as_json: Annotated[bool, typer.Option("--json")] = False,
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


def _act(action: str, run_id: str, **kw: Any) -> None:
    hub = _hub()
    try:
        getattr(hub.engine, action)(run_id, **kw)
    except HubError as exc:
        fail(str(exc))
    typer.echo(f"run {run_id}: {action} done")


Who = Annotated[str | None, typer.Option("--by", help="Who acts (kept in the run's history).")]
StepKey = Annotated[str | None, typer.Option("--step", help="The paused step, when several are.")]


@runs_app.command("cancel")
def runs_cancel(run_id: str, reason: str = "cancelled from the CLI", by: Who = None) -> None:
    """Cancel a run; nothing of it runs afterwards."""
    _act("cancel", run_id, reason=reason, by=by or _user())


@runs_app.command("resume")
def runs_resume(
    run_id: str,
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
    run_id: str,
    reason: str = typer.Option(..., help="Why it is skipped."),
    step: StepKey = None,
    by: Who = None,
) -> None:
    """Skip the paused step; its input passes through as its output."""
    _act("skip", run_id, step=step, reason=reason, by=by or _user())


@runs_app.command("complete")
def runs_complete(
    run_id: str,
    output: Annotated[str, typer.Option(help="The step's output, JSON or @file, as done by hand.")],
    step: StepKey = None,
    by: Who = None,
) -> None:
    """Complete the paused step by hand with OUTPUT; the run goes on."""
    _act("complete", run_id, output=_json_arg(output, "--output"), step=step, by=by or _user())


@runs_app.command("abort")
def runs_abort(
    run_id: str, reason: str = typer.Option(..., help="Why the run is given up."), by: Who = None
) -> None:
    """End the run as failed."""
    _act("abort", run_id, reason=reason, by=by or _user())


def _user() -> str:
    return f"cli:{os.environ.get('USER') or os.environ.get('USERNAME') or 'unknown'}"


@app.command()
def flows(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List the flows, their steps and triggers."""
    hub = _hub()
    try:
        registry = hub.registry
    except HubError as exc:
        fail(str(exc))
    out = [
        {
            "name": f.name,
            "module": f.module,
            "description": f.description,
            "steps": f.describe(),
            "triggers": [repr(t) for t in f.triggers],
        }
        for f in registry
    ]
    if as_json:
        typer.echo(json.dumps(out))
        return
    for f in out:
        typer.echo(f"{f['name']}  ({f['module']})  {f['description']}")
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

    Store(settings.database).migrate(revision)
    typer.echo(f"database at {_safe_url(settings.database)} is at {revision}")


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
    try:
        hub.registry  # noqa: B018 - import flows before forking, fail fast
    except HubError as exc:
        fail(str(exc))
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
    try:
        hub.registry  # noqa: B018
    except HubError as exc:
        fail(str(exc))
    serve(hub, once=once)


@app.command()
def web(
    host: str = "127.0.0.1",
    port: int = 8000,
) -> None:
    """Serve the web app and JSON API."""
    import uvicorn

    from hub.web import create_app

    uvicorn.run(create_app(_hub()), host=host, port=port, log_level="info", access_log=False)


@app.command()
def up(
    port: Annotated[int, typer.Option(help="Web app port.")] = 8000,
    host: str = "127.0.0.1",
    concurrency: Annotated[int, typer.Option(help="Worker processes.")] = 2,
) -> None:
    """Run everything on this machine: web app, a worker and the scheduler. Ctrl-C stops it."""
    settings = Settings()
    from hub.store import Store

    try:
        _hub().registry  # noqa: B018
    except HubError as exc:
        fail(str(exc))
    Store(settings.database).migrate()
    exe = [sys.executable, "-m", "hub"]
    queues = "default,browser,desktop"
    procs = {
        "web": subprocess.Popen([*exe, "web", "--host", host, "--port", str(port)]),
        "worker": subprocess.Popen(
            [*exe, "worker", "--queues", queues, "--concurrency", str(concurrency)]
        ),
        "scheduler": subprocess.Popen([*exe, "scheduler"]),
    }
    typer.echo(f"hub is up: http://{host}:{port}  (home {settings.home.resolve()}, Ctrl-C stops)")
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
            if p.poll() is not None:
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
    app()
