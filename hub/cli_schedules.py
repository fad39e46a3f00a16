"""``hub schedules``: schedules, their next fire times, pause and resume.

Like ``hub reviews`` it talks to a running ``hub web`` at ``HUB_URL``
(default http://127.0.0.1:8000) with the API token in ``HUB_TOKEN``: pausing
is checked against the token user's role (operator) and audited under their
name, exactly as from the schedule's page, and an operator's laptop needs
no database credentials.
"""

from __future__ import annotations

import json
from typing import Annotated, Any
from urllib.parse import quote

import typer

from hub.cli_reviews import call

schedules_app = typer.Typer(
    help="Schedules: next fire times, pause and resume (over the JSON API: HUB_URL, HUB_TOKEN).",
    invoke_without_command=True,
)
Key = Annotated[str, typer.Argument(help="Schedule key, flow:name (see `hub schedules`).")]
AsJson = Annotated[bool, typer.Option("--json", help="Print the API's JSON.")]


def _when(value: str | None) -> str:
    return value.replace("T", " ") if value else "-"


def _state(s: dict[str, Any]) -> str:
    if not s["declared"]:
        return "undeclared"
    return "paused" if s["paused"] else "active"


@schedules_app.callback()
def schedules_list(ctx: typer.Context, as_json: AsJson = False) -> None:
    """List the schedules: flow, cron, zone, policies, state, next and last fire."""
    if ctx.invoked_subcommand is not None:
        return
    rows = call("GET", "/api/schedules")
    if as_json:
        typer.echo(json.dumps(rows))
        return
    if not rows:
        typer.echo("no schedules (they appear once `hub scheduler` has started with your flows)")
        return
    width = max(len(s["key"]) for s in rows)
    typer.echo(
        f"{'KEY':<{width}}  {'CRON':<16} {'ZONE':<18} {'MISFIRE/OVERLAP':<17} {'STATE':<10} "
        "NEXT FIRE (ITS ZONE)        LAST RUN STARTED"
    )
    for s in rows:
        nxt = "-" if s["paused"] or not s["declared"] else _when(s["next_fire_local"])
        policies = f"{s['misfire']}/{s['overlap']}"
        typer.echo(
            f"{s['key']:<{width}}  {s['cron']:<16} {s['tz']:<18} {policies:<17} "
            f"{_state(s):<10} {nxt:<27} {_when(s['last_fire_local'])}"
        )


@schedules_app.command("show")
def schedules_show(key: Key, as_json: AsJson = False) -> None:
    """Show one schedule: next ten fire times (its zone and UTC), recent fires and misses."""
    s = call("GET", f"/api/schedules/{quote(key, safe=':')}")
    if as_json:
        typer.echo(json.dumps(s))
        return
    _print(s)


def _print(s: dict[str, Any]) -> None:
    typer.echo(f"schedule {s['key']}  {_state(s)}  flow {s['flow']}")
    window = f" within {s['catch_up']:g} s" if s["misfire"] != "skip" else ""
    typer.echo(
        f"  cron {s['cron']!r} in {s['tz']}; misfire={s['misfire']}{window}, overlap={s['overlap']}"
    )
    if s["paused"]:
        typer.echo(f"  paused {_when(s['paused_at'])} by {s['paused_by']}")
    if s["active_runs"]:
        typer.echo(f"  active runs: {', '.join(s['active_runs'])}")
    typer.echo("  next fire times" + (" (once resumed):" if s["paused"] else ":"))
    for f in s["next_fires"]:
        typer.echo(f"    {f['wall']:<28} {_when(f['utc'])}")
    if not s["next_fires"]:
        typer.echo("    none: the cron expression never fires again")
    typer.echo("  recent fires:" if s["fires"] else "  no fires yet")
    for f in s["fires"][:20]:
        run = f"run {f['run_id']} ({f['run_status']})" if f["run_id"] else ""
        why = f"  {f['reason']}" if f["reason"] else ""
        typer.echo(f"    {f['wall']:<28} {f['outcome']:<9} {run}{why}".rstrip())


def _act(action: str, key: str, as_json: bool) -> None:
    s = call("POST", f"/api/schedules/{quote(key, safe=':')}/{action}")
    if as_json:
        typer.echo(json.dumps(s))
        return
    done = "paused" if action == "pause" else "resumed"
    if not s["changed"]:
        typer.echo(f"schedule {key} was already {done}")
    elif action == "pause":
        typer.echo(f"schedule {key} paused: it starts no runs until `hub schedules resume {key}`")
    else:
        nxt = _when(s["next_fire_local"])
        typer.echo(f"schedule {key} resumed from now; next fire {nxt}")


@schedules_app.command("pause")
def schedules_pause(key: Key, as_json: AsJson = False) -> None:
    """Pause a schedule (operators): it starts no runs until resumed."""
    _act("pause", key, as_json)


@schedules_app.command("resume")
def schedules_resume(key: Key, as_json: AsJson = False) -> None:
    """Resume a schedule (operators) from now: what passed while paused is not caught up."""
    _act("resume", key, as_json)
