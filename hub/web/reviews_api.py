"""The review queue's JSON API: the same service (``hub.reviews``) the pages and the CLI use.

``GET /api/reviews`` lists a page of the queue (filters, sort, ``cursor``,
counts); ``GET /api/reviews/{id}`` shows one item with its run, timeline,
attempts, comments, audit trail and evidence;
``GET /api/reviews/{id}/artifacts/{artifact_id}`` serves one evidence file
(screenshot, trace, page HTML as text); ``POST /api/reviews/{id}/{action}`` acts
(claim, unclaim, assign, comment, retry, edit, complete, skip, abort) with a
JSON body of ``version``, ``input``, ``output``, ``reason``, ``text`` and
``assignee`` as the action needs. Answers: 404 for an item outside the
asker's teams, 403 for a role that may not act, 409 when the item is closed
or another reviewer acted first, 422 with field errors for a malformed input
or output (and then nothing changed).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Body, Depends, HTTPException, Query, Request, Response

from hub import reviews
from hub.auth import Principal
from hub.errors import Forbidden, ReviewNotFound
from hub.web.security import api_role, clock

router = APIRouter(prefix="/api/reviews", tags=["reviews"])
viewer = Depends(api_role("viewer"))


def _refuse(exc: Exception) -> HTTPException:
    if isinstance(exc, ReviewNotFound):
        return HTTPException(404, str(exc))
    return HTTPException(403, str(exc))


@router.get("")
def api_reviews(
    request: Request,
    flow: str | None = None,
    step: str | None = None,
    reason: str | None = None,
    status: str = "open",
    assignee: str | None = Query(None, description="A user name, `me` or `none`."),
    older_than: float | None = Query(None, ge=0, description="Seconds since created, at least."),
    newer_than: float | None = Query(None, ge=0, description="Seconds since created, at most."),
    overdue: bool | None = None,
    sort: str = Query("newest", description="newest, oldest or urgent (soonest due first)."),
    limit: int = Query(50, ge=1, le=reviews.MAX_LIMIT),
    cursor: str | None = None,
    counts: bool = True,
    who: Principal = viewer,
) -> Any:
    """The review queue the asker may see, filtered and sorted, a page at a time
    (``cursor`` from the previous page), with counts by status."""
    with request.app.state.hub.store.read() as s:
        return reviews.queue(
            s,
            who,
            now=clock(request),
            flow=flow,
            step=step,
            reason=reason,
            status=status,
            assignee=assignee,
            older_than=older_than,
            newer_than=newer_than,
            overdue=overdue,
            sort=sort,
            limit=limit,
            cursor=cursor,
            counts=counts,
        )


@router.get("/{item_id}")
def api_review(request: Request, item_id: str, who: Principal = viewer) -> Any:
    """One review item: the error, the evidence, the step's input, the form, comments and
    the audit trail; 404 for an item of another team."""
    hub = request.app.state.hub
    try:
        with hub.store.read() as s:
            return reviews.detail(s, who, item_id, registry=hub.registry, now=clock(request))
    except ReviewNotFound as exc:
        raise _refuse(exc) from None


@router.get("/{item_id}/artifacts/{artifact_id}", response_class=Response)
def api_review_artifact(
    request: Request, item_id: str, artifact_id: str, who: Principal = viewer
) -> Response:
    """One file of an item's evidence: screenshots inline, everything else as a download."""
    hub = request.app.state.hub
    try:
        with hub.store.read() as s:
            found = reviews.artifact(s, who, item_id, artifact_id)
            return artifact_response(found.data, found.name, found.content_type)
    except ReviewNotFound as exc:
        raise _refuse(exc) from None


INLINE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
ARTIFACT_CSP = "default-src 'none'; img-src 'self'; sandbox"


def artifact_response(data: bytes, name: str, content_type: str) -> Response:
    """The response for an evidence file, safe whatever it holds.

    Images show inline; anything else is a download. HTML a bot scraped is
    never served as a page (``text/plain``); a sandboxing CSP and ``nosniff``
    keep the browser from running anything in it.
    """
    kind = content_type.split(";")[0].strip().lower()
    inline = kind in INLINE_TYPES
    if not inline and (kind.startswith("text/") or "html" in kind or "xml" in kind):
        content_type = "text/plain; charset=utf-8"
    elif not inline and kind not in ("application/zip", "application/pdf", "application/json"):
        content_type = "application/octet-stream"
    disposition = "inline" if inline else "attachment"
    return Response(
        data,
        media_type=content_type,
        headers={
            "content-disposition": f"{disposition}; filename*=UTF-8''{quote(name, safe='')}",
            "content-security-policy": ARTIFACT_CSP,
            "x-content-type-options": "nosniff",
            "cache-control": "private, no-store",
        },
    )


@router.post("/{item_id}/{action}")
def api_review_act(
    request: Request,
    item_id: str,
    action: str,
    body: dict[str, Any] = Body(default={}),
    who: Principal = viewer,
) -> Any:
    """Act on a review item (claim, assign, retry, edit, complete, skip, abort, comment),
    with the ``version`` you read: 409 when someone acted first, 422 for a bad input."""
    if action not in reviews.ACTIONS:
        raise HTTPException(
            404, f"unknown action {action!r}; actions are {', '.join(reviews.ACTIONS)}"
        )
    version = body.get("version")
    if version is not None and (not isinstance(version, int) or isinstance(version, bool)):
        raise HTTPException(422, "version: a whole number (the item's version you read)")
    hub = request.app.state.hub
    try:
        reviews.act(
            hub.engine,
            who,
            item_id,
            action,
            version=version,
            input=body.get("input"),
            output=body.get("output"),
            reason=body.get("reason"),
            text=body.get("text"),
            assignee=body.get("assignee"),
        )
        with hub.store.read() as s:
            return reviews.detail(s, who, item_id, registry=hub.registry, now=clock(request))
    except (ReviewNotFound, Forbidden) as exc:
        raise _refuse(exc) from None
