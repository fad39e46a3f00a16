"""Webhooks over HTTP: ``POST /hooks/{name}`` (the intake), the deliveries API and pages.

The intake needs no login: the signature is the sender's proof. It reads the
body as a stream and stops at the hook's ``max_body`` (a ``Content-Length``
over it is refused before a byte is read), then hands the bytes to
:func:`hub.hooks.intake`. Answers::

    202  {"run_id", "delivery_id", "status_url"}      stored with its run
    200  the same, "duplicate": true                  seen before: the first run
    200  ... "status", "output", "error"              ?wait=N / Prefer: wait=N, run finished in time
    400 malformed · 401 signature · 404 unknown hook · 413 too large · 415 content type
    422 input refused by the flow (field errors) · 503 secret unset or database away (Retry-After)

Every refusal has the API's shape ``{"error", "detail"}`` plus ``reason``.
The deliveries API (viewers read, operators replay) and the pages are the
same read models (:mod:`hub.hooks`).
"""

from __future__ import annotations

import asyncio
import json
from http import HTTPStatus
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from hub import hook_views, hooks
from hub.auth import Login, Principal
from hub.errors import InvalidInput
from hub.models import RUN_ACTIVE, RUN_NEEDS_REVIEW
from hub.web.pages import render
from hub.web.security import api_role, clock, form_login, page_login, require

router = APIRouter()
viewer = Depends(api_role("viewer"))


# ------------------------------------------------------------------ intake
@router.post(
    "/hooks/{name}",
    tags=["webhooks"],
    status_code=202,
    summary="Receive a signed webhook delivery",
    responses={200: {"description": "a duplicate, or the run finished within the wait"}},
)
async def receive(request: Request, name: str) -> Response:
    hub = request.app.state.hub
    source = request.client.host if request.client else None
    prefer = request.headers.get("prefer")
    try:
        wait = hooks.wait_seconds(request.query_params.get("wait"), prefer)
        _flow, hook = hooks.find(hub.registry, name)
        try:
            hooks.check_length(hook, request.headers.get("content-length"))
            hooks.content_kind(hook, request.headers.get("content-type"))
            body = await _read(request, hook)
        except hooks.Refused as exc:
            await run_in_threadpool(hooks.record_rejection, hub, name, exc, source)
            raise
        result = await run_in_threadpool(
            hooks.intake, hub, name, request.headers, body, source, dispatch=True
        )
    except hooks.Refused as exc:
        return refusal(exc)
    except ClientDisconnect:
        return Response(status_code=400)
    answer: dict[str, Any] = {
        "run_id": result.run_id,
        "delivery_id": result.delivery_id,
        "status_url": f"/api/runs/{result.run_id}",
    }
    if result.duplicate:
        answer["duplicate"] = True
    headers = {"Location": answer["status_url"]}
    status = result.status
    if wait and result.run_id:
        if prefer and "wait" in prefer.lower():
            headers["Preference-Applied"] = f"wait={wait:g}"
        state = await _wait(hub, result.run_id, wait)
        if state is not None:
            answer.update(state)
            if state["status"] not in RUN_ACTIVE:
                status = 200
    return JSONResponse(answer, status_code=status, headers=headers)


async def _read(request: Request, hook: Any) -> bytes:
    """The body, read as it streams in; 413 as soon as it passes ``max_body``."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > hook.max_body:
            raise hooks.too_large(hook)
    return bytes(body)


async def _wait(hub: Any, run_id: str, seconds: float) -> dict[str, Any] | None:
    """Poll the run in SQL until it ends, pauses for review, or ``seconds`` pass."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    delay = 0.02
    state = None
    while True:
        try:
            state = await run_in_threadpool(hooks.run_state, hub, run_id)
        except SQLAlchemyError:
            return state  # stored already: answer 202 and let the sender poll
        if (
            state is None
            or state["status"] not in RUN_ACTIVE
            or state["status"] == RUN_NEEDS_REVIEW
        ):
            return state
        left = deadline - loop.time()
        if left <= 0:
            return state
        await asyncio.sleep(min(delay, left))
        delay = min(delay * 1.5, 0.5)


def refusal(exc: hooks.Refused) -> JSONResponse:
    body: dict[str, Any] = {
        "error": HTTPStatus(exc.status).phrase.replace(" ", ""),
        "detail": exc.detail,
        "reason": exc.reason,
    }
    if exc.errors:
        body["errors"] = exc.errors
    headers = {}
    if exc.retry_after is not None:
        headers["Retry-After"] = str(exc.retry_after)
    if exc.status == 413:
        headers["Connection"] = "close"  # the rest of the body is not read
    return JSONResponse(body, status_code=exc.status, headers=headers)


# --------------------------------------------------------------------- API
def _not_found(exc: Exception) -> HTTPException:
    return HTTPException(404, str(exc))


@router.get("/api/hooks", tags=["webhooks"])
def api_hooks(request: Request, _: Principal = viewer) -> Any:
    """The declared webhooks with their flow, preset, URL and counts."""
    hub = request.app.state.hub
    with hub.store.read() as s:
        return hook_views.overview(s, hub.registry, clock(request))


@router.get("/api/hooks/deliveries", tags=["webhooks"])
def api_deliveries(
    request: Request,
    hook: str | None = None,
    limit: int = Query(50, ge=1, le=500),
    cursor: str | None = None,
    who: Principal = viewer,
) -> Any:
    """Recent deliveries (of every hook, or of ``hook``), newest first, and the refusals."""
    hub = request.app.state.hub
    with hub.store.read() as s:
        page = hook_views.deliveries(s, who, hook=hook, limit=limit, cursor=cursor)
        page["rejections"] = hook_views.rejections(s, clock(request), hook=hook)
    return page


@router.get("/api/hooks/deliveries/{delivery_id}", tags=["webhooks"])
def api_delivery(request: Request, delivery_id: str, who: Principal = viewer) -> Any:
    """One delivery: the headers kept, the body as text (capped), its run and replays."""
    try:
        with request.app.state.hub.store.read() as s:
            return hook_views.detail(s, who, delivery_id)
    except hooks.DeliveryNotFound as exc:
        raise _not_found(exc) from None


@router.post("/api/hooks/deliveries/{delivery_id}/replay", tags=["webhooks"], status_code=201)
def api_replay(
    request: Request, delivery_id: str, who: Principal = Depends(api_role("operator"))
) -> Any:
    """Start a new run from a stored delivery (a new ``replayed`` delivery). Operators."""
    hub = request.app.state.hub
    try:
        with hub.store.read() as s:
            hook_views.detail(s, who, delivery_id)  # 404 for what the asker may not see
        result = hooks.replay(hub, delivery_id, who.name)
    except hooks.DeliveryNotFound as exc:
        raise _not_found(exc) from None
    except hooks.Refused as exc:
        return refusal(exc)
    status_url = f"/api/runs/{result.run_id}"
    return JSONResponse(
        {
            "delivery_id": result.delivery_id,
            "run_id": result.run_id,
            "replay_of": delivery_id,
            "status_url": status_url,
        },
        status_code=201,
        headers={"Location": f"/api/hooks/deliveries/{result.delivery_id}"},
    )


@router.get("/api/hooks/{name}/deliveries", tags=["webhooks"])
def api_hook_deliveries(
    request: Request,
    name: str,
    limit: int = Query(50, ge=1, le=500),
    cursor: str | None = None,
    who: Principal = viewer,
) -> Any:
    """Recent deliveries of hook ``name`` and its refusals in the last 24 h."""
    page = api_deliveries(request, hook=name, limit=limit, cursor=cursor, who=who)
    known = any(h.name == name for _f, h in hooks.declared(request.app.state.hub.registry))
    if not known and not page["deliveries"]:
        raise HTTPException(404, f"no webhook named {name!r}")
    return page


# ------------------------------------------------------------------- pages
@router.get("/hooks")
def hooks_page(
    request: Request,
    hook: str | None = None,
    cursor: str | None = None,
    login: Login = Depends(page_login),
) -> Response:
    """The webhooks, their recent deliveries and refusals."""
    require(login.principal, "viewer")
    hub = request.app.state.hub
    now = clock(request)
    with hub.store.read() as s:
        declared = hook_views.overview(s, hub.registry, now)
        try:
            page = hook_views.deliveries(
                s, login.principal, hook=hook or None, limit=50, cursor=cursor
            )
        except InvalidInput:
            raise HTTPException(400, "This page link is not valid any more.") from None
        refused = hook_views.rejections(s, now, hook=hook or None)
    return render(
        request,
        "hooks.html",
        login=login,
        hooks=declared,
        hook=hook,
        cursor=cursor,
        deliveries=page["deliveries"],
        next_cursor=page["next_cursor"],
        rejections=refused,
    )


@router.get("/hooks/deliveries/{delivery_id}")
def delivery_page(
    request: Request, delivery_id: str, login: Login = Depends(page_login)
) -> Response:
    """One delivery: what was received, the run it started, and (operators) a replay button."""
    return _delivery(request, delivery_id, login)


def _delivery(
    request: Request, delivery_id: str, login: Login, *, error: str = "", status: int = 200
) -> Response:
    require(login.principal, "viewer")
    try:
        with request.app.state.hub.store.read() as s:
            item = hook_views.detail(s, login.principal, delivery_id)
    except hooks.DeliveryNotFound:
        raise HTTPException(404, "There is no webhook delivery with this id.") from None
    return render(
        request,
        "hooks_delivery.html",
        status,
        login=login,
        d=item,
        body=_pretty(item["body"], item["body_truncated"]),
        can_replay=login.principal.can("operator"),
        error=error,
    )


def _pretty(text: str, truncated: bool) -> str:
    """A JSON body indented for reading; anything else as it came."""
    if truncated:
        return text
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except ValueError:
        return text


@router.post("/hooks/deliveries/{delivery_id}/replay")
def replay_form(request: Request, delivery_id: str, login: Login = Depends(form_login)) -> Response:
    """The replay button: a new run from the stored body, then that delivery's page."""
    if not login.principal.can("operator"):
        raise HTTPException(
            403, f"Replaying needs the operator role; you are {login.principal.role}."
        )
    hub = request.app.state.hub
    try:
        with hub.store.read() as s:
            hook_views.detail(s, login.principal, delivery_id)
        result = hooks.replay(hub, delivery_id, login.principal.name)
    except hooks.DeliveryNotFound:
        raise HTTPException(404, "There is no webhook delivery with this id.") from None
    except hooks.Refused as exc:
        return _delivery(request, delivery_id, login, error=exc.detail, status=exc.status)
    return RedirectResponse(f"/hooks/deliveries/{result.delivery_id}", status_code=303)
