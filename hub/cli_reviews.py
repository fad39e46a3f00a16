"""``hub reviews``: the review queue from a terminal, over the hub's JSON API.

It talks to a running ``hub web`` at ``HUB_URL`` (default
http://127.0.0.1:8000) with the API token in ``HUB_TOKEN`` (make one with
``hub users token NAME``), so it sees and does exactly what that user may
in the browser: the same teams, roles, conflicts and audit trail.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

DEFAULT_URL = "http://127.0.0.1:8000"
ACTS = ("retry", "edit", "complete", "skip", "abort", "claim", "unclaim", "assign", "comment")

reviews_app = typer.Typer(
    help="The review queue (over the JSON API: HUB_URL, HUB_TOKEN).",
    invoke_without_command=True,
)


def fail(message: str, code: int = 1) -> NoReturn:
    from hub.cli import fail as cli_fail

    cli_fail(message, code)


def call(method: str, path: str, *, params: Any = None, body: Any = None) -> Any:
    """One API request; a clear message and exit code 1 (2 for bad input) on any refusal."""
    response = _request(method, path, params=params, body=body)
    try:
        data = response.json()
    except ValueError:
        data = None
    if response.status_code >= 400:
        _refused(response, data)
    return data


def _refused(response: Any, data: Any) -> NoReturn:
    detail = data.get("detail") if isinstance(data, dict) else response.text[:300]
    message = f"{response.status_code}: {detail}"
    for err in (data or {}).get("errors", []) if isinstance(data, dict) else []:
        where = ".".join(str(p) for p in err.get("loc", ())) or "(root)"
        message += f"\n  {where}: {err.get('msg')}"
    fail(message, 2 if response.status_code == 422 else 1)


def _request(method: str, path: str, *, params: Any = None, body: Any = None) -> Any:
    import httpx

    url = os.environ.get("HUB_URL") or DEFAULT_URL
    token = os.environ.get("HUB_TOKEN")
    if not token:
        fail("HUB_TOKEN is not set: make an API token with `hub users token NAME`", 2)
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    try:
        response = httpx.request(
            method,
            url.rstrip("/") + path,
            params=params,
            json=body,
            headers=headers,
            timeout=30.0,
        )
    except httpx.HTTPError as exc:
        fail(
            f"cannot reach the hub at {url} ({type(exc).__name__}: {exc}); "
            "is `hub web` running? set HUB_URL to its address"
        )
    if response.status_code == 401:
        fail(f"the hub at {url} refused HUB_TOKEN (401): make a new one with `hub users token`")
    return response


def _json_arg(text: str | None, what: str) -> Any:
    from hub.cli import _json_arg as parse

    return parse(text, what)


def _line(item: dict[str, Any]) -> str:
    due = item.get("due_at") or "-"
    late = " OVERDUE" if item.get("overdue") else ""
    who = item.get("assignee") or "-"
    message = (item.get("message") or "").replace("\n", " ")[:80]
    return (
        f"{item['id']}  {item['status']:<6} {item['flow']}/{item['step']}  "
        f"{item['reason']:<9} {who:<12} due {due}{late}  {message}"
    )


@reviews_app.callback()
def reviews_list(
    ctx: typer.Context,
    flow: Annotated[str | None, typer.Option(help="Only items of this flow.")] = None,
    step: Annotated[str | None, typer.Option(help="Only items of this step.")] = None,
    reason: Annotated[str | None, typer.Option(help="Only this error kind.")] = None,
    status: Annotated[str, typer.Option(help="open, closed or all.")] = "open",
    mine: Annotated[bool, typer.Option("--mine", help="Only items assigned to me.")] = False,
    overdue: Annotated[bool, typer.Option("--overdue", help="Only overdue items.")] = False,
    sort: Annotated[str, typer.Option(help="newest, oldest or urgent.")] = "newest",
    limit: Annotated[int, typer.Option(help="How many.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print the API's JSON.")] = False,
) -> None:
    """List the review queue: the items your teams may see."""
    if ctx.invoked_subcommand is not None:
        return
    params: dict[str, Any] = {"status": status, "sort": sort, "limit": limit}
    for key, value in (("flow", flow), ("step", step), ("reason", reason)):
        if value:
            params[key] = value
    if mine:
        params["assignee"] = "me"
    if overdue:
        params["overdue"] = "true"
    page = call("GET", "/api/reviews", params=params)
    if as_json:
        typer.echo(json.dumps(page))
        return
    counts = page.get("counts", {})
    typer.echo(
        f"{counts.get('open', 0)} open ({counts.get('overdue', 0)} overdue, "
        f"{counts.get('unassigned', 0)} unassigned, {counts.get('mine', 0)} mine), "
        f"{counts.get('closed', 0)}{'+' if counts.get('closed_more') else ''} closed"
    )
    for item in page["items"]:
        typer.echo(_line(item))
    if not page["items"]:
        typer.echo("nothing to review")
    elif page.get("next_cursor"):
        typer.echo("more: use --limit, or the API's cursor")


@reviews_app.command("show")
def reviews_show(
    item_id: Annotated[str, typer.Argument(help="Review item id (see `hub reviews`).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the API's JSON.")] = False,
) -> None:
    """Show one item: the error, the step's input, attempts, the run's timeline, comments."""
    item = call("GET", f"/api/reviews/{item_id}")
    if as_json:
        typer.echo(json.dumps(item))
        return
    typer.echo(_line(item))
    typer.echo(f"  run {item['run']['id']} ({item['run']['status']})  version {item['version']}")
    if item.get("error_class"):
        typer.echo(f"  error: {item['error_class']}: {item['message']}")
    typer.echo(f"  input: {json.dumps(item.get('current_input'))[:500]}")
    for a in item.get("attempts", []):
        typer.echo(f"  attempt {a['number']}: {a['status']} {a.get('error_kind') or ''}".rstrip())
    typer.echo("  timeline:")
    for st in item.get("timeline", []):
        mark = "  <- this step" if st["current"] else ""
        typer.echo(f"    {st['key']:<30} {st['status']}{mark}")
    _evidence(item)
    for c in item.get("comments", []):
        typer.echo(f"  [{c['created_at']}] {c['author']}: {c['body']}")
    if item["status"] == "open":
        typer.echo(f"  act: hub reviews act {item['id']} {'|'.join(ACTS)}")


def _evidence(item: dict[str, Any]) -> None:
    facts = item.get("evidence") or {}
    files = item.get("artifacts") or []
    if not facts and not files:
        return
    typer.echo("  evidence:")
    for key in ("url", "title", "window_title"):
        if facts.get(key):
            typer.echo(f"    {key.replace('_', ' ')}: {facts[key]}")
    for key, value in (facts.get("notes") or {}).items():
        typer.echo(f"    {key}: {value}")
    for name in ("request", "response"):
        exchange = facts.get(name)
        if exchange:
            head = " ".join(
                str(exchange[k]) for k in ("method", "url", "status") if exchange.get(k) is not None
            )
            typer.echo(f"    {name}: {head}")
    for action in (facts.get("actions") or [])[-5:]:
        typer.echo(f"    did: {action}")
    for line in (facts.get("log") or [])[-10:]:
        typer.echo(f"    log: {line}")
    for note in facts.get("omitted") or []:
        typer.echo(f"    left out: {note}")
    for f in files:
        typer.echo(
            f"    file {f['id']}  {f['kind']:<10} {f['name']} ({f['size']} bytes)  "
            f"hub reviews file {item['id']} {f['id']}"
        )


@reviews_app.command("file")
def reviews_file(
    item_id: Annotated[str, typer.Argument(help="Review item id (see `hub reviews`).")],
    file_id: Annotated[str, typer.Argument(help="File id (see `hub reviews show ID`).")],
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Where to save it; default: its name, here."),
    ] = None,
) -> None:
    """Download one evidence file of an item: a screenshot, trace, page HTML or download."""
    response = _request("GET", f"/api/reviews/{item_id}/artifacts/{file_id}")
    if response.status_code >= 400:
        try:
            data = response.json()
        except ValueError:
            data = None
        _refused(response, data)
    name = _filename(response.headers.get("content-disposition", "")) or file_id
    target = out or Path(name)
    if target.exists() and target.is_dir():
        target = target / name
    target.write_bytes(response.content)
    typer.echo(f"saved {target} ({len(response.content)} bytes)")


def _filename(disposition: str) -> str | None:
    from urllib.parse import unquote

    marker = "filename*=UTF-8''"
    if marker not in disposition:
        return None
    name = unquote(disposition.split(marker, 1)[1].split(";")[0])
    return Path(name).name or None


@reviews_app.command("act")
def reviews_act(
    item_id: Annotated[str, typer.Argument(help="Review item id (see `hub reviews`).")],
    action: Annotated[str, typer.Argument(help="|".join(ACTS))],
    input: Annotated[
        str | None, typer.Option("--input", "-i", help="edit: the new input (JSON or @file).")
    ] = None,
    output: Annotated[
        str | None, typer.Option("--output", "-o", help="complete: the output (JSON or @file).")
    ] = None,
    reason: Annotated[str | None, typer.Option(help="skip, abort: why.")] = None,
    text: Annotated[str | None, typer.Option(help="comment: the text.")] = None,
    assignee: Annotated[str | None, typer.Option(help="assign: the user's name.")] = None,
    version: Annotated[
        int | None, typer.Option(help="Refuse if the item changed since this version.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the item as JSON.")] = False,
) -> None:
    """Act on an item: the run goes on from its step at once.

    Exit codes: 0 done; 1 refused (not found, forbidden, closed, someone else
    acted first, server unreachable); 2 bad input (nothing changed).
    """
    if action not in ACTS:
        fail(f"unknown action {action!r}; actions are {', '.join(ACTS)}", 2)
    body: dict[str, Any] = {}
    if input is not None:
        body["input"] = _json_arg(input, "--input")
    if output is not None:
        body["output"] = _json_arg(output, "--output")
    for key, value in (("reason", reason), ("text", text), ("assignee", assignee)):
        if value is not None:
            body[key] = value
    if version is not None:
        body["version"] = version
    item = call("POST", f"/api/reviews/{item_id}/{action}", body=body)
    if as_json:
        typer.echo(json.dumps(item))
        return
    state = item["status"] + (f" ({item['resolution']})" if item.get("resolution") else "")
    typer.echo(f"{action}: review item {item['id']} is {state}; run {item['run']['status']}")
