"""The web app: JSON API for runs and flows, and a plain runs page.

Writes go through the engine; every read comes from SQL.
"""

from __future__ import annotations

import html
import json
from typing import Any

from fastapi import Body, FastAPI, Header, HTTPException, Request
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

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        from sqlalchemy import text

        try:
            with hub.store.transaction() as s:
                s.execute(text("select 1"))
        except Exception as exc:
            raise HTTPException(503, f"database unreachable: {type(exc).__name__}") from None
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
        return JSONResponse(
            {
                "id": started.run_id,
                "created": started.created,
                "status_url": f"/api/runs/{started.run_id}",
            },
            status_code=201 if started.created else 200,
        )

    @app.get("/api/runs")
    def api_runs(flow: str | None = None, status: str | None = None, limit: int = 50) -> Any:
        with hub.store.transaction() as s:
            return list_runs(s, limit=min(limit, 500), flow=flow, status=status)

    @app.get("/api/runs/{run_id}")
    def api_run(run_id: str) -> Any:
        with hub.store.transaction() as s:
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
            raise HTTPException(404, f"unknown action {action!r}")
        with hub.store.transaction() as s:
            return describe_run(s, run_id)

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        with hub.store.transaction() as s:
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
