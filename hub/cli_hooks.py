"""``hub hooks``: webhook deliveries from a terminal, over the hub's JSON API.

Like ``hub reviews`` it talks to a running ``hub web`` at ``HUB_URL`` with the
API token in ``HUB_TOKEN``: viewers list and show, operators replay.
"""

from __future__ import annotations

import json
from typing import Annotated, Any
from urllib.parse import quote

import typer

from hub.cli_reviews import call

hooks_app = typer.Typer(
    help="Webhooks and their deliveries (over the JSON API: HUB_URL, HUB_TOKEN).",
    invoke_without_command=True,
)


def _when(iso: str | None) -> str:
    return (iso or "-").replace("T", " ").replace("Z", "")[:19]


@hooks_app.callback()
def hooks_list(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print the API's JSON.")] = False,
) -> None:
    """List the webhooks: flow, preset, address and counts."""
    if ctx.invoked_subcommand is not None:
        return
    rows = call("GET", "/api/hooks")
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        typer.echo("no flow declares a webhook")
        return
    for h in rows:
        typer.echo(
            f"{h['name']:<20} {h['flow']:<20} {h['verify']:<8} POST {h['url']}  "
            f"{h['deliveries']} deliveries, {h['duplicates']} duplicates, "
            f"{h['rejected_24h']} refused in 24 h, last {_when(h['last_received_at'])}"
        )


@hooks_app.command("deliveries")
def hooks_deliveries(
    name: Annotated[str | None, typer.Argument(help="Only this hook's deliveries.")] = None,
    limit: Annotated[int, typer.Option(help="How many.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print the API's JSON.")] = False,
) -> None:
    """Recent deliveries, newest first, and what was refused in the last 24 h."""
    path = f"/api/hooks/{quote(name, safe='')}/deliveries" if name else "/api/hooks/deliveries"
    page = call("GET", path, params={"limit": limit})
    if as_json:
        typer.echo(json.dumps(page, indent=2))
        return
    rows = page["deliveries"]
    if not rows:
        typer.echo("no deliveries")
    for d in rows:
        run = f"run {d['run_id']} {d['run_status'] or ''}".rstrip() if d["run_id"] else "no run"
        extra = f", {d['duplicates']} duplicates" if d["duplicates"] else ""
        replay = f" (replay of {d['replay_of']})" if d["replay_of"] else ""
        typer.echo(
            f"{d['id']}  {_when(d['received_at'])}  {d['hook']:<16} {d['status']:<9} {run}  "
            f"{d['size']} B{extra}{replay}"
        )
    _refused(page.get("rejections") or {})


def _refused(rejections: dict[str, Any]) -> None:
    counts = rejections.get("counts") or {}
    if not counts:
        return
    total = ", ".join(f"{reason} {n}" for reason, n in counts.items())
    typer.echo(f"refused in the last 24 h: {total}")
    for r in rejections.get("recent", [])[:10]:
        typer.echo(
            f"  {_when(r['minute'])}  {r['hook']:<16} {r['status']} {r['reason']:<13} "
            f"x{r['count']}  {r['last_detail'] or ''}"
        )


@hooks_app.command("show")
def hooks_show(
    delivery_id: str,
    as_json: Annotated[bool, typer.Option("--json", help="Print the API's JSON.")] = False,
) -> None:
    """One delivery: its run, the headers kept and the body."""
    d = call("GET", f"/api/hooks/deliveries/{quote(delivery_id, safe='')}")
    if as_json:
        typer.echo(json.dumps(d, indent=2))
        return
    typer.echo(f"delivery {d['id']} to {d['hook']} (flow {d['flow']}), {d['status']}")
    typer.echo(f"received {_when(d['received_at'])} from {d['source'] or '-'}, {d['size']} bytes")
    if d["run_id"]:
        typer.echo(f"run {d['run_id']} {d['run_status'] or ''}".rstrip())
    for name, value in sorted((d.get("headers") or {}).items()):
        typer.echo(f"  {name}: {value}")
    typer.echo(d["body"])


@hooks_app.command("replay")
def hooks_replay(
    delivery_id: str,
    as_json: Annotated[bool, typer.Option("--json", help="Print the API's JSON.")] = False,
) -> None:
    """Start a new run from a stored delivery (operators)."""
    made = call("POST", f"/api/hooks/deliveries/{quote(delivery_id, safe='')}/replay")
    if as_json:
        typer.echo(json.dumps(made, indent=2))
        return
    typer.echo(f"replayed as delivery {made['delivery_id']}: run {made['run_id']}")
