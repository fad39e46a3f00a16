"""Schedules over HTTP: the schedules API and pages (next fire times, last fires, pause).

``GET /api/schedules`` lists every schedule with its next and last fire;
``GET /api/schedules/{key}`` shows one with its next ten fire times (UTC and
in its zone), its fires with their outcome and run, and the misses and why;
``POST /api/schedules/{key}/pause`` and ``.../resume`` act. Viewers read;
pausing and resuming needs an operator and is audited with their name.
An unknown key is 404.

The pages ``GET /schedules`` and ``GET /schedules/{key}`` show the same; the
one schedule's page has a pause or resume form (CSRF token of the session)
for operators, which answers 303 back to the page.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import RedirectResponse, Response

from hub import schedules
from hub.auth import Login, Principal
from hub.schedules import ScheduleNotFound
from hub.web.pages import render
from hub.web.security import api_role, clock, form_login, page_login, require

ACTIONS = ("pause", "resume")
NOT_FOUND = "There is no schedule with this key."

router = APIRouter()
viewer = Depends(api_role("viewer"))


def _describe(request: Request, key: str) -> dict[str, Any]:
    try:
        return schedules.describe(request.app.state.hub, key, clock(request))
    except ScheduleNotFound as exc:
        raise HTTPException(404, str(exc)) from None


def _act(request: Request, key: str, action: str, who: Principal) -> bool:
    if action not in ACTIONS:
        raise HTTPException(404, f"unknown action {action!r}; actions are {', '.join(ACTIONS)}")
    require(who, "operator")
    act = schedules.pause if action == "pause" else schedules.resume
    try:
        return act(request.app.state.hub, key, by=who.name, now=clock(request))
    except ScheduleNotFound as exc:
        raise HTTPException(404, str(exc)) from None


# ------------------------------------------------------------------------ API
@router.get("/api/schedules", tags=["schedules"])
def api_schedules(request: Request, _: Principal = viewer) -> list[dict[str, Any]]:
    """Every schedule: flow, cron, zone, policies, paused, next and last fire."""
    return schedules.list_schedules(request.app.state.hub)


@router.get("/api/schedules/{key}", tags=["schedules"])
def api_schedule(request: Request, key: str, _: Principal = viewer) -> dict[str, Any]:
    """One schedule: next ten fire times, its fires with outcome and run, misses and why."""
    return _describe(request, key)


@router.post("/api/schedules/{key}/{action}", tags=["schedules"])
def api_schedule_act(
    request: Request, key: str, action: str, who: Principal = viewer
) -> dict[str, Any]:
    """Pause or resume (operators). ``changed`` is false when it already was so."""
    changed = _act(request, key, action, who)
    return {**_describe(request, key), "changed": changed}


# ---------------------------------------------------------------------- pages
@router.get("/schedules")
def schedules_page(request: Request, login: Login = Depends(page_login)) -> Response:
    require(login.principal, "viewer")
    rows = schedules.list_schedules(request.app.state.hub)
    return render(request, "schedules.html", login=login, schedules=rows)


@router.get("/schedules/{key}")
def schedule_page(request: Request, key: str, login: Login = Depends(page_login)) -> Response:
    require(login.principal, "viewer")
    try:
        view = schedules.describe(request.app.state.hub, key, clock(request))
    except ScheduleNotFound:
        raise HTTPException(404, NOT_FOUND) from None
    done = request.query_params.get("done")
    return render(
        request,
        "schedule.html",
        login=login,
        s=view,
        can_act=login.principal.can("operator"),
        done=done if done in ACTIONS else None,
    )


@router.post("/schedules/{key}/{action}")
def schedule_act(
    request: Request, key: str, action: str, login: Login = Depends(form_login)
) -> Response:
    try:
        _act(request, key, action, login.principal)
    except HTTPException as exc:
        if exc.status_code == 404:
            raise HTTPException(404, NOT_FOUND) from None
        raise
    return RedirectResponse(f"/schedules/{quote(key, safe=':')}?done={action}", status_code=303)
