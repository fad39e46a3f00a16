"""Server-rendered pages: login, logout, the runs list and a run's page.

Every form carries a CSRF token: the session's, or before login a one-off
token in a cookie scoped to /login (double submit). A failed login sets no
session and says so plainly; after too many failures for one name (or from
one address) within a window, logins for it are refused with 429 for a while,
without even checking the password (see :func:`hub.auth.login_wait`).
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import RedirectResponse, Response

from hub import auth
from hub.auth import Login
from hub.errors import RunNotFound
from hub.reviews import run_hidden
from hub.views import describe_run, list_runs
from hub.web.run_view import page_context
from hub.web.security import (
    LOGIN_COOKIE,
    SESSION_COOKIE,
    check_origin,
    clock,
    form_login,
    page_login,
    require,
    same,
)

router = APIRouter()


def render(request: Request, template: str, status: int = 200, **context: Any) -> Response:
    templates = request.app.state.templates
    return templates.TemplateResponse(request, template, context, status_code=status)


def safe_next(target: str) -> str:
    """Where to go after login: a path on this site only, never another host."""
    if target.startswith("/") and not target.startswith(("//", "/\\")) and "\\" not in target:
        return target
    return "/"


def _login_form(
    request: Request, *, status: int = 200, error: str = "", name: str = ""
) -> Response:
    token = request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(32)
    next_ = safe_next(request.query_params.get("next", "/"))
    response = render(
        request, "login.html", status, csrf_token=token, error=error, name=name, next=next_
    )
    response.set_cookie(
        LOGIN_COOKIE,
        token,
        path="/login",
        httponly=True,
        samesite="strict",
        secure=request.app.state.hub.settings.cookie_secure,
    )
    return response


@router.get("/login")
def login_page(request: Request) -> Response:
    return _login_form(request)


@router.post("/login")
def login_submit(
    request: Request,
    name: str = Form(""),
    password: str = Form(""),
    csrf_token: str = Form(""),
    next: str = Form("/"),
) -> Response:
    check_origin(request)
    if not same(csrf_token, request.cookies.get(LOGIN_COOKIE)):
        request.cookies.pop(LOGIN_COOKIE, None)  # a fresh token in the form shown again
        return _login_form(request, status=403, error="The login form expired. Please try again.")
    hub = request.app.state.hub
    settings = hub.settings
    now = clock(request)
    old = request.cookies.get(SESSION_COOKIE)
    address = request.client.host if request.client else None

    def log_in(s: Any) -> str | float | None:
        wait = auth.login_wait(
            s,
            name,
            address,
            now=now,
            per_name=settings.login_failures,
            per_address=settings.login_failures_per_address,
            window=timedelta(minutes=settings.login_window_minutes),
        )
        if wait is not None:
            return wait  # not even the password is checked: no guessing while locked
        user = auth.check_password(s, name.strip(), password)
        if user is None:
            auth.login_failed(s, name, address, now=now)
            return None
        return auth.start_session(
            s,
            user,
            now=now,
            lifetime=timedelta(hours=settings.session_max_hours),
            idle=timedelta(minutes=settings.session_idle_minutes),
            replaces=old,
        )

    session_id = hub.store.run(log_in)
    if isinstance(session_id, float):
        minutes = max(1, round(session_id / 60))
        response = _login_form(
            request,
            status=429,
            error=f"Too many failed logins. Try again in {minutes} minute"
            f"{'s' if minutes != 1 else ''}.",
            name=name.strip(),
        )
        response.headers["retry-after"] = str(int(session_id + 0.999))
        return response
    if session_id is None:
        return _login_form(
            request, status=401, error="Wrong user name or password.", name=name.strip()
        )
    response = RedirectResponse(safe_next(next), status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        session_id,
        path="/",
        httponly=True,
        samesite="lax",
        secure=settings.cookie_secure,
    )
    response.delete_cookie(LOGIN_COOKIE, path="/login")
    return response


@router.post("/logout")
def logout(request: Request, _: Login = Depends(form_login)) -> Response:
    session_id = request.cookies.get(SESSION_COOKIE, "")
    request.app.state.hub.store.run(lambda s: auth.end_session(s, session_id))
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/")
def runs_page(request: Request, login: Login = Depends(page_login)) -> Response:
    with request.app.state.hub.store.read() as s:
        rows = list_runs(s, limit=100)
    return render(request, "runs.html", login=login, runs=rows)


@router.get("/runs/{run_id}")
def run_page(request: Request, run_id: str, login: Login = Depends(page_login)) -> Response:
    """One run: its header, its steps on a time line with their data, and open review items."""
    require(login.principal, "viewer")
    with request.app.state.hub.store.read() as s:
        try:
            if run_hidden(s, login.principal, run_id):
                raise RunNotFound(run_id)
            run = describe_run(s, run_id, attempts=True)
        except RunNotFound:
            raise HTTPException(404, "There is no run with this id.") from None
    return render(request, "run.html", login=login, **page_context(run))
