"""``GET /metrics``: the hub's Prometheus metrics (see :mod:`hub.metrics`).

Who may read them:

- a client on this machine (a loopback address, and no ``Forwarded``,
  ``X-Forwarded-For`` or ``X-Real-IP`` header: a proxy on this machine speaks
  for someone else) reads them without more ado;
- anyone else sends ``Authorization: Bearer <HUB_METRICS_TOKEN>`` (401
  without it or with another token);
- with ``HUB_METRICS_TOKEN`` unset, anyone else gets 404.

The numbers are computed from the database at each scrape, so any web process
of the hub answers for all of it. A database that does not answer is a 503
(Prometheus then records the target as down). The format is Prometheus text,
or OpenMetrics when the scraper asks for it (as Prometheus does).
"""

from __future__ import annotations

import ipaddress
import logging
import threading
from typing import Any

from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.responses import Response
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import CollectorRegistry
from sqlalchemy.exc import SQLAlchemyError

from hub.metrics import registry_for
from hub.settings import Settings
from hub.web.security import same

log = logging.getLogger("hub.web.metrics")

router = APIRouter()

#: Headers a reverse proxy adds: a request that carries one is not from this machine.
PROXY_HEADERS = ("forwarded", "x-forwarded-for", "x-real-ip")

_lock = threading.Lock()


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request) -> Response:
    """The metrics of the whole hub, read from SQL (and the Redis broker) now."""
    hub = request.app.state.hub
    settings = settings_of(hub)
    authorize(request, settings)
    registry = _registry(request.app, hub, settings)
    encoder, content_type = choose_encoder(request.headers.get("accept", ""))
    try:
        body = encoder(registry)
    except SQLAlchemyError as exc:
        log.warning("metrics: the database did not answer: %s", type(exc).__name__)
        raise HTTPException(
            503, f"database not ready: {type(exc).__name__} (see `hub doctor`)"
        ) from None
    return Response(body, media_type=content_type)


def authorize(request: Request, settings: Settings) -> None:
    """Let loopback clients through; others need the metrics token (401), or get 404."""
    if is_local(request):
        return
    token = settings.metrics_token.get_secret_value() if settings.metrics_token else ""
    if not token:
        raise HTTPException(404, "Not Found")
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not same(given.strip(), token):
        raise HTTPException(
            401,
            "send Authorization: Bearer <HUB_METRICS_TOKEN>",
            headers={"WWW-Authenticate": "Bearer"},
        )


def is_local(request: Request) -> bool:
    """Whether the request comes straight from this machine (loopback, not through a proxy)."""
    if any(name in request.headers for name in PROXY_HEADERS):
        return False
    host = request.client.host if request.client else ""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def settings_of(hub: Any) -> Settings:
    """The settings of the app's hub (a runtime ``Hub``, or a ``LocalHub`` in tests)."""
    settings = getattr(hub, "settings", None)
    if settings is None:
        settings = hub.engine.settings
    assert isinstance(settings, Settings)
    return settings


def _registry(app: FastAPI, hub: Any, settings: Settings) -> CollectorRegistry:
    """The app's metrics registry, built on the first scrape and kept on ``app.state``."""
    registry: CollectorRegistry | None = getattr(app.state, "metrics_registry", None)
    if registry is not None:
        return registry
    with _lock:
        registry = getattr(app.state, "metrics_registry", None)
        if registry is None:
            clock = getattr(app.state, "clock", None)
            registry = registry_for(
                hub.store,
                settings,
                flows=getattr(hub, "registry", None),
                **({"clock": clock} if clock is not None else {}),
            )
            app.state.metrics_registry = registry
        return registry
