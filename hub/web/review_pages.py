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

from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from hub import reviews
from hub.auth import Login, Principal
from hub.errors import Forbidden, InvalidInput, ReviewConflict, ReviewNotFound, RunStateError
from hub.web import forms
from hub.web import review_view as view
from hub.web.pages import render
from hub.web.reviews_api import artifact_response
from hub.web.security import clock, form_login, page_login

router = APIRouter()

PAGE_SIZE = 50
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


# ------------------------------------------------------------------ filters
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


def _chips(params: dict[str, str], counts: dict[str, Any]) -> list[dict[str, Any]]:
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
                "count": f"{counts.get(key, 0)}+"
                if key == "closed" and counts.get("closed_more")
                else counts.get(key, 0),
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
        "rows": [view.queue_row(i, now) for i in page["items"]],
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
def _assignable(s: Session, who: Principal, item_id: str) -> list[str]:
    """Names of the users an operator may assign the item to, by the service's one rule."""
    return reviews.assignable(s, reviews.load(s, who, item_id))


def _item(
    request: Request, login: Login, item_id: str, status: int = 200, **extra: Any
) -> Response:
    hub = request.app.state.hub
    who, now = login.principal, clock(request)
    try:
        with hub.store.read() as s:
            item = reviews.detail(s, who, item_id, registry=hub.registry, now=now)
            users = _assignable(s, who, item_id) if who.can("operator") else []
            texts = {
                a["id"]: view.page_text(reviews.artifact(s, who, item_id, a["id"]).data)
                for a in item.get("artifacts") or []
                if a.get("kind") == "html"
            }
    except ReviewNotFound:
        raise HTTPException(404, NOT_FOUND) from None
    context = view.item_context(item, who, now, users)
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
    kwargs, errors = _arguments(action, form, view.item_context(item, who, now, []))
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
