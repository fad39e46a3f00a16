"""The review queue's pages: the queue, one item, its actions as plain forms, its evidence.

``GET /reviews`` is the queue (a GET form of filters; ``fragment=1`` returns
only its rows and counts, which ``static/hub.js`` swaps in every few
seconds). ``GET /reviews/{id}`` shows one item with everything a reviewer
needs to decide; ``POST /reviews/{id}/{action}`` acts through the same
service as the API (:func:`hub.reviews.act`), and answers:

- 303 back to the item (``?done=ACTION``) when the action applied;
- 422, the page again with each message beside its field and the
  reviewer's values kept, when the input, output or a reason is refused;
- 409, the page again with what happened and a reload link, when someone
  else acted first or the item is closed;
- 403 for a role that may not act, 404 for an item outside the reader's teams.

Every form carries the session's CSRF token and the item's ``version``, so
an action on a page that went stale is refused, never applied blindly.
Whatever a bot brought back (error text, page HTML, URLs) is shown as text.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from hub import models as m
from hub import reviews
from hub.auth import Login, Principal
from hub.errors import Forbidden, InvalidInput, ReviewConflict, ReviewNotFound, RunStateError
from hub.web import forms
from hub.web.pages import render
from hub.web.reviews_api import artifact_response
from hub.web.run_view import as_text
from hub.web.security import clock, form_login, page_login

router = APIRouter()

#: Queue filters, as the GET form names them.
FILTERS = ("flow", "step", "reason", "status", "assignee", "older_than", "newer_than", "overdue")
PAGE_SIZE = 50
#: Bytes of a page's HTML shown on the item page; the whole file is a download.
PAGE_TEXT = 200 * 1024
#: What the item page says after an action applied.
DONE = {
    "claim": "You claimed this item.",
    "unclaim": "You gave this item back to the queue.",
    "assign": "The item was assigned.",
    "comment": "Your comment was added.",
    "retry": "Retried: the step runs again.",
    "edit": "Input saved: the step runs again with it.",
    "complete": "Completed by hand: the run goes on from the next step.",
    "skip": "Skipped: the run goes on from the next step.",
    "abort": "Aborted: the run has failed.",
}
NOT_FOUND = "There is no review item with this id in your teams' queue."


# ------------------------------------------------------------------ helpers
def _when(value: str | None) -> str:
    """An ISO time from the service as the pages show it: ``2026-05-01 12:30`` (UTC)."""
    return value.replace("T", " ")[:16] if value else "\u2013"


def _parse(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.removesuffix("Z")) if value else None


def span(seconds: float) -> str:
    """A duration in words a person reads at a glance: ``45 s``, ``12 min``, ``3 h 5 min``, ``2 d 4 h``."""
    seconds = abs(seconds)
    if seconds < 60:
        return f"{int(seconds)} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def _due(row: dict[str, Any], now: datetime) -> str:
    due = _parse(row.get("due_at"))
    if due is None:
        return "no due time"
    if row.get("overdue"):
        return f"overdue by {span((now - due).total_seconds())}"
    if row.get("status") != reviews.OPEN:
        return ""
    return f"due in {span((due - now).total_seconds())}"


def _row(item: dict[str, Any], now: datetime) -> dict[str, Any]:
    created = _parse(item["created_at"])
    until = _parse(item.get("resolved_at")) or now
    message = item.get("message") or ""
    return {
        **item,
        "created": _when(item["created_at"]),
        "age": span((until - created).total_seconds()) if created else "",
        "due": _when(item.get("due_at")),
        "due_text": _due(item, now),
        "short": message if len(message) <= 160 else message[:157] + "…",
    }


def _blank(value: str | None) -> str | None:
    value = (value or "").strip()
    return value or None


def _hours(params: dict[str, str], name: str, problems: list[str]) -> float | None:
    text = params.get(name, "").strip()
    if not text:
        return None
    try:
        hours = float(text)
    except ValueError:
        hours = -1.0
    if not hours >= 0:
        problems.append(f"{name.replace('_', ' ')}: give a number of hours, like 2 or 0.5")
        return None
    return hours * 3600


def _queue_args(params: dict[str, str], problems: list[str]) -> dict[str, Any]:
    overdue = {"yes": True, "no": False}.get(params.get("overdue", ""))
    if params.get("overdue", "") not in ("", "yes", "no"):
        problems.append("overdue: choose yes, no or any")
    return {
        "flow": _blank(params.get("flow")),
        "step": _blank(params.get("step")),
        "reason": _blank(params.get("reason")),
        "status": params.get("status") or reviews.OPEN,
        "assignee": _blank(params.get("assignee")),
        "older_than": _hours(params, "older_than", problems),
        "newer_than": _hours(params, "newer_than", problems),
        "overdue": overdue,
        "sort": params.get("sort") or "newest",
        "cursor": _blank(params.get("cursor")),
    }


def _link(params: dict[str, str], cursor: str = "", **changes: str) -> str:
    """The queue URL with ``params`` changed; without ``cursor`` it is the first page."""
    merged = {
        k: v for k, v in {**params, **changes}.items() if v and k not in ("cursor", "fragment")
    }
    if cursor:
        merged["cursor"] = cursor
    return "/reviews" + (f"?{urlencode(merged)}" if merged else "")


def _chips(params: dict[str, str], counts: dict[str, int]) -> list[dict[str, Any]]:
    """The count chips: each a link to the queue filtered to that state."""
    chips = [
        ("open", "Open", {"status": "open", "overdue": "", "assignee": ""}),
        ("overdue", "Overdue", {"status": "open", "overdue": "yes", "assignee": ""}),
        ("unassigned", "Unassigned", {"status": "open", "overdue": "", "assignee": "none"}),
        ("mine", "Mine", {"status": "open", "overdue": "", "assignee": "me"}),
        ("closed", "Closed", {"status": "closed", "overdue": "", "assignee": ""}),
    ]
    out = []
    for key, label, changes in chips:
        current = all(
            (params.get(k) or ("open" if k == "status" else "")) == v for k, v in changes.items()
        )
        out.append(
            {
                "key": key,
                "label": label,
                "count": counts.get(key, 0),
                "href": _link(params, **changes),
                "current": current,
            }
        )
    return out


# -------------------------------------------------------------------- queue
@router.get("/reviews")
def queue_page(request: Request, login: Login = Depends(page_login)) -> Response:
    """The review queue: a page of items with filters, counts and the next page's link."""
    params = {k: v for k, v in request.query_params.items() if isinstance(v, str)}
    problems: list[str] = []
    args = _queue_args(params, problems)
    hub = request.app.state.hub
    now = clock(request)
    page: dict[str, Any] = {"items": [], "next_cursor": None, "counts": {}}
    flows = sorted(f.name for f in hub.registry)
    if not problems:
        try:
            with hub.store.read() as s:
                page = reviews.queue(s, login.principal, now=now, limit=PAGE_SIZE, **args)
        except InvalidInput as exc:
            problems.append(str(exc))
    status = 422 if problems else 200
    context = {
        "login": login,
        "rows": [_row(i, now) for i in page["items"]],
        "chips": _chips(params, page["counts"]),
        "next": _link(params, cursor=page["next_cursor"]) if page["next_cursor"] else None,
        "first": _link(params) if args["cursor"] else None,
        "params": params,
        "problems": problems,
        "flows": flows,
        "statuses": reviews.STATUSES,
        "sorts": reviews.SORTS,
        "poll": request.url.path + "?" + urlencode({**params, "fragment": "1"}),
    }
    template = "review_rows.html" if params.get("fragment") else "reviews.html"
    return render(request, template, status, **context)


# --------------------------------------------------------------------- item
def _shown(value: Any) -> str:
    return "(none)" if value is None else as_text(value)


def _changes(before: Any, after: Any, path: str = "") -> list[dict[str, str]]:
    """Field-level differences of two JSON values: ``{path, before, after}`` per changed leaf."""
    if isinstance(before, dict) and isinstance(after, dict):
        out: list[dict[str, str]] = []
        for key in list(before) + [k for k in after if k not in before]:
            sub = f"{path}.{key}" if path else str(key)
            if key not in after:
                out.append({"path": sub, "before": _shown(before[key]), "after": "(removed)"})
            elif key not in before:
                out.append({"path": sub, "before": "(none)", "after": _shown(after[key])})
            else:
                out += _changes(before[key], after[key], sub)
        return out
    if before == after:
        return []
    return [{"path": path or "(whole value)", "before": _shown(before), "after": _shown(after)}]


def _audit(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for entry in entries:
        before, after = entry.get("before") or {}, entry.get("after") or {}
        state, data = [], []
        if isinstance(before, dict) and isinstance(after, dict):
            for key in ("status", "assignee", "resolution", "reason", "note"):
                if key in after and before.get(key) != after.get(key):
                    state.append(
                        {
                            "path": key,
                            "before": _shown(before.get(key)),
                            "after": _shown(after[key]),
                        }
                    )
            if "input" in after:
                data = _changes(before.get("input"), after["input"])
        action = str(entry.get("action") or "").removeprefix("review.")
        text = after.get("text") if isinstance(after, dict) else None
        out.append(
            {
                **entry,
                "what": action,
                "when": _when(entry.get("at")),
                "state": state,
                "diff": data,
                "text": text,
            }
        )
    return out


def _assignable(s: Session, item: dict[str, Any]) -> list[str]:
    """Names of the active users an operator may assign this item to."""
    users = s.scalars(
        select(m.User).where(m.User.active.is_(True), m.User.role != "viewer").order_by(m.User.name)
    ).all()
    if not item.get("team"):
        return [u.name for u in users]
    members = set(
        s.scalars(
            select(m.UserTeam.user_id)
            .join(m.Team, m.Team.id == m.UserTeam.team_id)
            .where(m.Team.name == item["team"])
        ).all()
    )
    return [u.name for u in users if u.id in members or u.role in ("operator", "admin")]


def _rights(who: Principal, item: dict[str, Any]) -> dict[str, Any]:
    """What the reader may do on the item, so the page offers only that (the service decides)."""
    is_open = item["status"] == reviews.OPEN
    holder = item.get("assignee")
    taken = holder not in (None, who.name) and not who.can("operator")
    reviewer = who.can("reviewer")
    return {
        "comment": reviewer,
        "act": reviewer and is_open and not taken,
        "claim": reviewer and is_open and holder is None,
        "unclaim": reviewer and is_open and holder is not None and not taken,
        "assign": who.can("operator") and is_open,
        "taken_by": holder if taken and is_open else None,
    }


def item_context(
    item: dict[str, Any], who: Principal, now: datetime, users: list[str]
) -> dict[str, Any]:
    """The item page's template context from a :func:`hub.reviews.detail` view."""
    question = bool(item.get("form_schema"))
    edit = forms.build(item.get("input_schema"), "input", item.get("current_input"))
    complete = forms.build(
        item.get("form_schema") or item.get("output_schema"),
        "output",
        None if question else item.get("current_input"),
    )
    artifacts = [
        {
            **a,
            "href": f"/reviews/{item['id']}/artifacts/{a['id']}",
            "size_text": _size(a.get("size")),
        }
        for a in item.get("artifacts") or []
    ]
    found = item.get("evidence")
    evidence: dict[str, Any] = found if isinstance(found, dict) else {}
    return {
        "item": item,
        "row": _row(item, now),
        "run": item["run"],
        "rights": _rights(who, item),
        "users": users,
        "question": question,
        "edit": edit,
        "complete": complete,
        "input_text": as_text(item.get("current_input")),
        "original_text": as_text(item.get("input")),
        "edited": item.get("input") != item.get("current_input"),
        "audit": _audit(item.get("audit") or []),
        "screenshots": [a for a in artifacts if a.get("kind") == "screenshot"],
        "pages": [a for a in artifacts if a.get("kind") == "html"],
        "files": [a for a in artifacts if a.get("kind") not in ("screenshot", "html")],
        "evidence": evidence,
        "request_text": as_text(evidence.get("request")),
        "response_text": as_text(evidence.get("response")),
        "kept": {},
        "kept_errors": {},
        "action": None,
        "problem": None,
        "problem_status": None,
        "done": None,
    }


def _page_text(data: bytes) -> tuple[str, bool]:
    """A page's HTML to show as text: UTF-8 (bad bytes replaced), cut at :data:`PAGE_TEXT` bytes."""
    return data[:PAGE_TEXT].decode("utf-8", errors="replace"), len(data) > PAGE_TEXT


def _size(size: Any) -> str:
    if not isinstance(size, int):
        return ""
    if size < 1024:
        return f"{size} bytes"
    if size < 1024 * 1024:
        return f"{size / 1024:.1f} KB"
    return f"{size / 1024 / 1024:.1f} MB"


def _item(
    request: Request, login: Login, item_id: str, status: int = 200, **extra: Any
) -> Response:
    hub = request.app.state.hub
    who, now = login.principal, clock(request)
    try:
        with hub.store.read() as s:
            item = reviews.detail(s, who, item_id, registry=hub.registry, now=now)
            users = _assignable(s, item) if who.can("operator") else []
            texts = {
                a["id"]: _page_text(reviews.artifact(s, who, item_id, a["id"]).data)
                for a in item.get("artifacts") or []
                if a.get("kind") == "html"
            }
    except ReviewNotFound:
        raise HTTPException(404, NOT_FOUND) from None
    context = item_context(item, who, now, users)
    for page in context["pages"]:
        page["text"], page["truncated"] = texts.get(page["id"], ("", False))
    posted: FormData | None = extra.pop("posted", None)
    errors: list[dict[str, Any]] = extra.pop("errors", [])
    action = extra.get("action")
    if posted is not None:
        context["kept"] = {
            k: v for k in ("reason", "text", "assignee") if isinstance(v := posted.get(k), str)
        }
        form = {"edit": context["edit"], "complete": context["complete"]}.get(action or "")
        if form is not None:
            forms.refill(form, posted)
            forms.place(form, errors)
        else:
            context["kept_errors"] = {
                ".".join(str(p) for p in e.get("loc", ())): e.get("msg") for e in errors
            }
    context.update(extra)
    return render(request, "review.html", status, login=login, **context)


@router.get("/reviews/{item_id}")
def item_page(
    request: Request, item_id: str, done: str = "", login: Login = Depends(page_login)
) -> Response:
    """One review item: the failure, its evidence, the run around it, and the actions."""
    return _item(request, login, item_id, done=DONE.get(done))


@router.get("/reviews/{item_id}/state")
def item_state(request: Request, item_id: str, login: Login = Depends(page_login)) -> Any:
    """The item's version and status, for the page to notice someone else's change."""
    hub = request.app.state.hub
    try:
        with hub.store.read() as s:
            item = reviews.load(s, login.principal, item_id)
            return {"version": item.version, "status": item.status}
    except ReviewNotFound:
        raise HTTPException(404, NOT_FOUND) from None


@router.get("/reviews/{item_id}/artifacts/{artifact_id}")
def item_artifact(
    request: Request, item_id: str, artifact_id: str, login: Login = Depends(page_login)
) -> Response:
    """One file of the item's evidence: a screenshot inline, anything else as a download.

    Page HTML is never served as a page (``text/plain``, attachment), and the
    answer carries a CSP that lets nothing in it run. Another team's item, or a
    file of another item, is not found.
    """
    hub = request.app.state.hub
    try:
        with hub.store.read() as s:
            found = reviews.artifact(s, login.principal, item_id, artifact_id)
            return artifact_response(found.data, found.name, found.content_type)
    except ReviewNotFound:
        raise HTTPException(
            404, "There is no such file in the evidence of a review item in your teams' queue."
        ) from None


# ------------------------------------------------------------------ actions
async def posted_form(
    request: Request, login: Login = Depends(form_login)
) -> tuple[Login, FormData]:
    """Dependency of the action forms: the checked login (same site, CSRF) and the form."""
    return login, await request.form()


def _version(form: FormData) -> int:
    text = form.get("version")
    if not isinstance(text, str) or not text.strip().isdigit():
        raise HTTPException(
            422, "The form does not say which version of the item you saw; reload the page."
        )
    return int(text)


def _arguments(
    action: str, form: FormData, context: dict[str, Any]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The service's keyword arguments for ``action`` from the form, and coercion errors."""
    if action == "edit":
        value, errors = forms.read(context["edit"], form)
        return {"input": value}, errors
    if action == "complete":
        value, errors = forms.read(context["complete"], form)
        return {"output": value}, errors
    field = {"skip": "reason", "abort": "reason", "comment": "text", "assign": "assignee"}.get(
        action
    )
    if field is None:
        return {}, []
    text = form.get(field)
    return {field: text if isinstance(text, str) else None}, []


@router.post("/reviews/{item_id}/{action}")
def item_act(
    request: Request,
    item_id: str,
    action: str,
    posted: tuple[Login, FormData] = Depends(posted_form),
) -> Response:
    """Do ``action`` on the item from its page's form; see the module's docstring for answers."""
    login, form = posted
    if action not in reviews.ACTIONS:
        raise HTTPException(404, f"There is no action {action!r} on review items.")
    version = _version(form)
    hub = request.app.state.hub
    who, now = login.principal, clock(request)
    try:
        with hub.store.read() as s:
            item = reviews.detail(s, who, item_id, registry=hub.registry, now=now)
    except ReviewNotFound:
        raise HTTPException(404, NOT_FOUND) from None
    kwargs, errors = _arguments(action, form, item_context(item, who, now, []))
    again = {"posted": form, "action": action}
    if errors:  # a text that is not a number, broken JSON: nothing was sent to the service
        return _item(request, login, item_id, 422, errors=errors, problem=_refused(action), **again)
    try:
        reviews.act(hub.engine, who, item_id, action, version=version, **kwargs)
    except ReviewNotFound:
        raise HTTPException(404, NOT_FOUND) from None
    except Forbidden as exc:
        raise HTTPException(403, str(exc)) from None
    except InvalidInput as exc:
        return _item(
            request, login, item_id, 422, errors=exc.errors, problem=_refused(action, exc), **again
        )
    except (ReviewConflict, RunStateError) as exc:
        return _item(request, login, item_id, 409, problem=str(exc), problem_status=409, **again)
    return RedirectResponse(f"/reviews/{item_id}?done={action}", status_code=303)


def _refused(action: str, exc: InvalidInput | None = None) -> str:
    """The message above a refused form: what to do, and where the details are."""
    if action in ("edit", "complete"):
        what = "input" if action == "edit" else "output"
        return f"Nothing was changed: the {what} needs fixing (see the messages beside the fields)."
    return f"Nothing was changed: {exc}." if exc is not None else "Nothing was changed."
