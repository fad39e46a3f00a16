"""Who is asking, and may they: security headers, logins, CSRF and roles.

A request proves who it is with the session cookie (browsers) or an
``Authorization: Bearer <token>`` header (scripts). A write made with the
cookie must carry the session's CSRF token (the ``csrf_token`` form field,
or the ``X-CSRF-Token`` header for JSON) and must not come from another
site (``Origin``/``Referer``/``Sec-Fetch-Site``); a bearer token needs
neither, as browsers never send one on their own.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from fastapi import Depends, HTTPException, Request
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hub import auth
from hub.auth import Login, Principal

SESSION_COOKIE = "hub_session"
LOGIN_COOKIE = "hub_login"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
)
HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
    "cross-origin-opener-policy": "same-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=()",
}


class SecurityHeaders:
    """ASGI middleware: the CSP and friends on every response; ``no-store`` but for /static."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = scope["path"].startswith("/static/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in HEADERS.items():
                    headers.setdefault(name, value)
                if not static:
                    headers.setdefault("cache-control", "no-store")
            await send(message)

        await self.app(scope, receive, send_with_headers)


class LoginRequired(Exception):
    """A page was asked for without a live session: the app redirects to /login."""


def same(given: Any, expected: str | None) -> bool:
    """Constant-time comparison of a submitted token with the expected one."""
    if not isinstance(given, str) or not given or not expected:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


def clock(request: Request) -> datetime:
    now: datetime = request.app.state.clock()
    return now


def identify(request: Request, *, bearer: bool = True) -> Login | None:
    """The login a request carries (bearer token first, then the cookie), or None."""
    hub = request.app.state.hub
    now = clock(request)
    header = request.headers.get("authorization") if bearer else None
    with hub.store.read() as s:
        if header is not None:
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                return None
            login = auth.find_token(s, token.strip(), now=now)
        elif cookie := request.cookies.get(SESSION_COOKIE):
            idle = timedelta(minutes=hub.settings.session_idle_minutes)
            login = auth.find_session(s, cookie, now=now, idle=idle)
        else:
            return None
    if login is not None and login.stale:
        hub.store.run(lambda s: auth.touch(s, login, now=now))
    return login


def check_origin(request: Request) -> None:
    """403 unless the request comes from this site (or says nothing of where it comes from)."""
    if request.headers.get("sec-fetch-site") == "cross-site":
        raise HTTPException(403, "cross-site request refused")
    source = request.headers.get("origin") or request.headers.get("referer")
    if source is None:
        return  # a client that sends neither: the CSRF token alone decides
    if source == "null" or urlsplit(source).netloc != request.headers.get("host"):
        raise HTTPException(403, "cross-site request refused")


def api_login(request: Request) -> Login:
    """Dependency of every /api route: 401 without a login; writes by cookie need CSRF."""
    login = identify(request)
    if login is None:
        raise HTTPException(
            401,
            "log in, or send Authorization: Bearer <token> (see `hub users token`)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if request.method not in SAFE_METHODS and login.via == "session":
        check_origin(request)
        if not same(request.headers.get(CSRF_HEADER), login.csrf_token):
            raise HTTPException(403, f"missing or wrong {CSRF_HEADER} header (see GET /api/me)")
    return login


def require(principal: Principal, role: str) -> None:
    """403 unless ``principal`` has ``role`` or a stronger one."""
    if not principal.can(role):
        raise HTTPException(403, f"needs the {role} role; {principal.name} is {principal.role}")


def api_role(role: str) -> Callable[..., Principal]:
    """Dependency: the principal of an /api request whose role is at least ``role``."""

    def dependency(login: Login = Depends(api_login)) -> Principal:
        require(login.principal, role)
        return login.principal

    return dependency


def page_login(request: Request) -> Login:
    """Dependency of every page: the session's login, or a redirect to /login."""
    login = identify(request, bearer=False)
    if login is None:
        raise LoginRequired()
    return login


async def form_login(request: Request, login: Login = Depends(page_login)) -> Login:
    """Dependency of every form POST: same site, and the session's ``csrf_token`` field."""
    check_origin(request)
    form = await request.form()
    if not same(form.get("csrf_token"), login.csrf_token):
        raise HTTPException(403, "the form's security token is missing or stale; reload the page")
    return login
