"""The JSON API: flows, runs and actions on runs. Every route needs a login.

Viewers read; starting and cancelling runs needs an operator; resume, skip,
complete and abort need a reviewer. The actor recorded on a run is the
logged-in user. Writes go through the engine; every read comes from SQL.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends, Header, HTTPException, Query, Request
from fastapi.responses import JSONResponse

from hub.auth import Login, Principal
from hub.errors import RunNotFound
from hub.reviews import run_hidden
from hub.views import describe_run, list_runs
from hub.web.security import api_login, api_role, require

#: The role each action needs.
ACTIONS = {
    "cancel": "operator",
    "abort": "reviewer",
    "resume": "reviewer",
    "skip": "reviewer",
    "complete": "reviewer",
}

router = APIRouter(prefix="/api")
viewer = Depends(api_role("viewer"))


@router.get("/me")
def api_me(login: Login = Depends(api_login)) -> dict[str, Any]:
    """Who this request acts as; with a session, the CSRF token its JSON writes must send."""
    p = login.principal
    me: dict[str, Any] = {"name": p.name, "role": p.role, "teams": list(p.teams), "via": login.via}
    if login.csrf_token is not None:
        me["csrf_token"] = login.csrf_token
    return me


@router.get("/flows")
def api_flows(request: Request, _: Principal = viewer) -> list[dict[str, Any]]:
    """The flows this hub has loaded, with their steps (name, queue, retries, timeout)."""
    return [
        {"name": f.name, "description": f.description, "steps": f.describe()}
        for f in request.app.state.hub.registry
    ]


@router.post("/flows/{flow}/runs", status_code=201)
def api_start(
    request: Request,
    flow: str,
    payload: Any = Body(default=None),
    idempotency_key: str | None = Header(default=None),
    _: Principal = Depends(api_role("operator")),
) -> JSONResponse:
    """Start a run of ``flow`` with the JSON body as its input.

    201 with the run's id and status URL; with an ``Idempotency-Key`` header a repeat
    answers 200 with the first run, and the key with another body answers 409.
    Input the flow refuses answers 422 naming the fields."""
    started = request.app.state.hub.engine.start_run(
        flow,
        payload if payload is not None else {},
        trigger="api",
        idempotency_key=idempotency_key,
    )
    status_url = f"/api/runs/{started.run_id}"
    return JSONResponse(
        {"id": started.run_id, "created": started.created, "status_url": status_url},
        status_code=201 if started.created else 200,
        headers={"Location": status_url},
    )


@router.get("/runs")
def api_runs(
    request: Request,
    flow: str | None = None,
    status: str | None = None,
    limit: int = Query(50, ge=1, le=500),
    _: Principal = viewer,
) -> Any:
    """Runs, newest first: id, flow, status, trigger, times (filter by flow and status)."""
    with request.app.state.hub.store.read() as s:
        return list_runs(s, limit=limit, flow=flow, status=status)


@router.get("/runs/{run_id}")
def api_run(request: Request, run_id: str, _: Principal = viewer) -> Any:
    """One run: its input and output, and each step with its status, attempts and errors."""
    with request.app.state.hub.store.read() as s:
        return describe_run(s, run_id, attempts=True)


@router.post("/runs/{run_id}/{action}")
def api_act(
    request: Request,
    run_id: str,
    action: str,
    body: dict[str, Any] = Body(default={}),
    who: Principal = viewer,
) -> Any:
    """Act on a run: ``cancel`` or ``abort`` (``reason``), ``resume`` (``step``, an edited
    ``input``), ``skip`` (``step``, ``reason``) or ``complete`` (``step``, ``output``); the
    run as it is after. 409 when the run's state does not allow the action."""
    if action not in ACTIONS:
        raise HTTPException(404, f"unknown action {action!r}; actions are {', '.join(ACTIONS)}")
    require(who, ACTIONS[action])
    hub = request.app.state.hub
    with hub.store.read() as s:
        if run_hidden(s, who, run_id):
            raise RunNotFound(f"no run with id {run_id!r}")
    engine, by = hub.engine, who.name
    if action == "cancel":
        engine.cancel(run_id, by=by, reason=body.get("reason", "cancelled"))
    elif action == "abort":
        engine.abort(run_id, by=by, reason=body.get("reason", "aborted"))
    elif action == "resume":
        engine.resume(run_id, step=body.get("step"), input=body.get("input"), by=by)
    elif action == "skip":
        engine.skip(run_id, step=body.get("step"), reason=body.get("reason", ""), by=by)
    else:
        engine.complete(run_id, body.get("output"), step=body.get("step"), by=by)
    with hub.store.read() as s:
        return describe_run(s, run_id)
