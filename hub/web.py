"""The web app: JSON API for runs and flows, and a plain runs page.

Writes go through the engine; every read comes from SQL.
"""

from __future__ import annotations

import html
import json
from typing import Any

from fastapi import Body, FastAPI, Header, HTTPException, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse

from hub.errors import (
    FlowNotFound,
    HubError,
    IdempotencyConflict,
    InvalidInput,
    RunNotFound,
    RunStateError,
)
from hub.views import describe_run, list_runs

_STATUS = {
    FlowNotFound: 404,
    RunNotFound: 404,
    InvalidInput: 422,
    IdempotencyConflict: 422,
    RunStateError: 409,
}


ACTIONS = ("cancel", "abort", "resume", "skip", "complete")


def create_app(hub: Any) -> FastAPI:
    """Build the app around a :class:`hub.runtime.Hub`."""
    app = FastAPI(title="hub", version="0.1.0")

    @app.exception_handler(HubError)
    async def hub_error(_req: Request, exc: HubError) -> JSONResponse:
        status = next((v for k, v in _STATUS.items() if isinstance(exc, k)), 400)
        body: dict[str, Any] = {"error": type(exc).__name__, "detail": str(exc)}
        if isinstance(exc, InvalidInput):
            body["errors"] = json.loads(json.dumps(exc.errors, default=str))
        return JSONResponse(body, status_code=status)

    @app.exception_handler(RequestValidationError)
    async def request_error(_req: Request, exc: RequestValidationError) -> JSONResponse:
        # the same shape as InvalidInput, so clients read one kind of 422
        errors = [{k: v for k, v in e.items() if k in ("loc", "msg", "type")} for e in exc.errors()]
        first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first["loc"])
        body = {"error": "InvalidRequest", "detail": f"{where}: {first['msg']}", "errors": errors}
        return JSONResponse(jsonable_encoder(body), status_code=422)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        """200 when the database answers and has the hub's tables, else 503."""
        from sqlalchemy import select
        from sqlalchemy.exc import SQLAlchemyError

        from hub.models import Run

        try:
            with hub.store.read() as s:
                s.execute(select(Run.id).limit(1))
        except SQLAlchemyError as exc:
            raise HTTPException(
                503, f"database not ready: {type(exc).__name__} (see `hub doctor`)"
            ) from None
        return {"status": "ok"}

    @app.get("/api/flows")
    def api_flows() -> list[dict[str, Any]]:
        return [
            {"name": f.name, "description": f.description, "steps": f.describe()}
            for f in hub.registry
        ]

    @app.post("/api/flows/{flow}/runs", status_code=201)
    def api_start(
        flow: str,
        payload: Any = Body(default=None),
        idempotency_key: str | None = Header(default=None),
    ) -> JSONResponse:
        started = hub.engine.start_run(
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

    @app.get("/api/runs")
    def api_runs(
        flow: str | None = None,
        status: str | None = None,
        limit: int = Query(50, ge=1, le=500),
    ) -> Any:
        with hub.store.read() as s:
            return list_runs(s, limit=limit, flow=flow, status=status)

    @app.get("/api/runs/{run_id}")
    def api_run(run_id: str) -> Any:
        with hub.store.read() as s:
            return describe_run(s, run_id, attempts=True)

    @app.post("/api/runs/{run_id}/{action}")
    def api_act(run_id: str, action: str, body: dict[str, Any] = Body(default={})) -> Any:
        engine = hub.engine
        by = body.get("by")
        if action == "cancel":
            engine.cancel(run_id, by=by, reason=body.get("reason", "cancelled"))
        elif action == "abort":
            engine.abort(run_id, by=by, reason=body.get("reason", "aborted"))
        elif action == "resume":
            engine.resume(run_id, step=body.get("step"), input=body.get("input"), by=by)
        elif action == "skip":
            engine.skip(run_id, step=body.get("step"), reason=body.get("reason", ""), by=by)
        elif action == "complete":
            engine.complete(run_id, body.get("output"), step=body.get("step"), by=by)
        else:
            raise HTTPException(404, f"unknown action {action!r}; actions are {', '.join(ACTIONS)}")
        with hub.store.read() as s:
            return describe_run(s, run_id)

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        with hub.store.read() as s:
            rows = list_runs(s, limit=100)
        body = "".join(
            f"<tr><td><a href='/api/runs/{r['id']}'>{r['id']}</a></td>"
            f"<td>{html.escape(r['flow'])}</td><td>{r['status']}</td>"
            f"<td>{r['created_at']}</td><td>{r['duration_ms'] or ''}</td></tr>"
            for r in rows
        )
        return (
            "<!doctype html><meta charset=utf-8><title>hub: runs</title>"
            "<style>body{font:14px system-ui;margin:2em}td,th{padding:4px 10px;"
            "text-align:left}</style><h1>Runs</h1><table><tr><th>run</th><th>flow</th>"
            f"<th>status</th><th>created</th><th>ms</th></tr>{body}</table>"
        )

    return app
