"""The web app: the JSON API (``api.py``), the pages (``pages.py``) and what guards them.

Errors have one JSON shape on the API, ``{"error": ..., "detail": ...}``;
pages answer errors with a small HTML page, and a page asked for without a
login redirects to ``/login``.
"""

from __future__ import annotations

import gc
import json
from collections.abc import Callable
from datetime import datetime
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, HTTPException, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader
from starlette.exceptions import HTTPException as StarletteHTTPException

from hub.errors import (
    AccountError,
    FlowNotFound,
    HubError,
    IdempotencyConflict,
    InvalidInput,
    RequestInFlight,
    RunNotFound,
    RunStateError,
)
from hub.models import utcnow
from hub.web import api, connections, hooks, metrics, pages, review_pages, reviews_api, schedules
from hub.web.dashboard import router as dashboard_router
from hub.web.security import LoginRequired, SecurityHeaders

HERE = Path(__file__).parent

_STATUS = {
    RequestInFlight: 409,
    FlowNotFound: 404,
    RunNotFound: 404,
    AccountError: 404,
    InvalidInput: 422,
    IdempotencyConflict: 422,
    RunStateError: 409,
}


def create_app(hub: Any, *, clock: Callable[[], datetime] = utcnow) -> FastAPI:
    """Build the app around a :class:`hub.runtime.Hub`; ``clock`` gives naive UTC "now"."""
    app = FastAPI(title="hub", version="0.1.0", docs_url=None, redoc_url=None)
    app.state.hub = hub
    app.state.clock = clock
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=True)
    app.state.templates = Jinja2Templates(env=env)
    app.add_middleware(SecurityHeaders)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    _errors(app)

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

    app.include_router(api.router)
    app.include_router(reviews_api.router)
    app.include_router(pages.router)
    app.include_router(dashboard_router)
    app.include_router(review_pages.router)
    app.include_router(hooks.router)
    app.include_router(schedules.router)
    app.include_router(connections.router)
    app.include_router(metrics.router)
    return app


def settle() -> None:
    """Call once in a serving process, after its app is built and before it serves.

    What the process has built by then (modules, the app, the flows, templates) lives
    as long as the process. This hides it from Python's cycle collector, so a full
    collection in the middle of a burst of requests walks only what the requests made:
    those pauses set the slowest answers (p99) of the webhook intake.
    """
    gc.collect()
    gc.freeze()


def _wants_json(request: Request) -> bool:
    path = request.url.path
    return (
        path.startswith("/api/")
        or path == "/healthz"
        or "html" not in request.headers.get("accept", "")
    )


def _errors(app: FastAPI) -> None:
    @app.exception_handler(HubError)
    async def hub_error(_req: Request, exc: HubError) -> JSONResponse:
        status = next((v for k, v in _STATUS.items() if isinstance(exc, k)), 400)
        body: dict[str, Any] = {"error": type(exc).__name__, "detail": str(exc)}
        if isinstance(exc, InvalidInput):
            body["errors"] = json.loads(json.dumps(exc.errors, default=str))
        headers = {"retry-after": "1"} if isinstance(exc, RequestInFlight) else None
        return JSONResponse(body, status_code=status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def request_error(_req: Request, exc: RequestValidationError) -> JSONResponse:
        # the same shape as InvalidInput, so clients read one kind of 422
        errors = [{k: v for k, v in e.items() if k in ("loc", "msg", "type")} for e in exc.errors()]
        first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first["loc"])
        body = {"error": "InvalidRequest", "detail": f"{where}: {first['msg']}", "errors": errors}
        return JSONResponse(jsonable_encoder(body), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        phrase = HTTPStatus(exc.status_code).phrase
        if _wants_json(request):
            body = {"error": phrase.replace(" ", ""), "detail": exc.detail}
            return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)
        response = pages.render(
            request, "error.html", exc.status_code, title=phrase, detail=exc.detail
        )
        for name, value in (exc.headers or {}).items():
            response.headers[name] = value
        return response

    @app.exception_handler(LoginRequired)
    async def login_required(request: Request, _exc: LoginRequired) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)
