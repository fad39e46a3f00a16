"""The review queue: what a person sees of failed steps, and what they do about them.

Every read and every action takes the :class:`~hub.auth.Principal` asking.
Reviewers and viewers see the items of their teams and the items of flows
with no team; operators and admins see everything. An item the asker may
not see is "not found" (404), never "forbidden", so ids of other teams'
items leak nothing. Viewers read; acting needs a reviewer; assigning an
item to someone needs an operator.

Each action is one transaction holding ONE conditional UPDATE of the item::

    UPDATE review_items SET version = version + 1, ...
     WHERE id = :id AND status = 'open' AND version = :seen

together with the engine's control action (:mod:`hub.control`) and an
``audit_log`` row (who, what, when, before/after). Of two reviewers acting at
once, one applies; the other matches no row and gets :class:`ReviewConflict`
(409) with nothing changed. The steps the action made ready are published
after the commit, so exactly one resume goes out.

The audit log and the comments are append-only: this module only inserts them.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, and_, func, not_, or_, select, true, update
from sqlalchemy.orm import Session

from hub import control
from hub import models as m
from hub.auth import Principal
from hub.errors import Forbidden, InvalidInput, ReviewConflict, ReviewNotFound
from hub.models import AuditEntry, ReviewComment, ReviewItem, utcnow
from hub.runs import Dispatch, lock_run
from hub.views import iso

if TYPE_CHECKING:
    from hub.engine import Engine
    from hub.registry import Registry

OPEN, CLOSED = "open", "closed"
STATUSES = (OPEN, CLOSED, "all")
SORTS = ("newest", "oldest", "urgent")
#: The role each action needs; reading needs a viewer.
ACTIONS = {
    "claim": "reviewer",
    "unclaim": "reviewer",
    "assign": "operator",
    "comment": "reviewer",
    "retry": "reviewer",
    "edit": "reviewer",
    "complete": "reviewer",
    "skip": "reviewer",
    "abort": "reviewer",
}
#: Actions that hand the step back to the engine (they close the item).
ENGINE_ACTIONS = ("retry", "edit", "complete", "skip", "abort")
MAX_LIMIT = 500


# ------------------------------------------------------------------ access
def visible(who: Principal) -> ColumnElement[bool]:
    """The items ``who`` may see: all for operators, else their teams' and team-less ones."""
    if who.can("operator"):
        return true()  # no column to read: an index without the id can answer
    return or_(ReviewItem.team.is_(None), ReviewItem.team.in_(list(who.teams)))


def run_hidden(s: Session, who: Principal, run_id: str) -> bool:
    """True when ``run_id`` has an open review item outside ``who``'s teams.

    Such a run is reported as not found to them (pages and run actions), as
    another team's review item is: nothing shows what they may not touch.
    """
    if who.can("operator"):
        return False
    hidden = s.scalar(
        select(ReviewItem.id)
        .where(ReviewItem.run_id == run_id, ReviewItem.status == "open", not_(visible(who)))
        .limit(1)
    )
    return hidden is not None


def require(who: Principal, role: str, what: str) -> None:
    if not who.can(role):
        raise Forbidden(f"{what} needs the {role} role; {who.name} is {who.role}")


def load(s: Session, who: Principal, item_id: str) -> ReviewItem:
    """The item ``item_id`` if ``who`` may see it, else :class:`ReviewNotFound`."""
    item = s.scalar(
        select(ReviewItem)
        .where(ReviewItem.id == item_id, visible(who))
        .execution_options(populate_existing=True)
    )
    if item is None:
        raise ReviewNotFound(f"no review item {item_id!r} (see `hub reviews`)")
    return item


def _names(s: Session, ids: set[str | None]) -> dict[str, str]:
    wanted = [i for i in ids if i]
    if not wanted:
        return {}
    return dict(s.execute(select(m.User.id, m.User.name).where(m.User.id.in_(wanted))).all())


def summary(item: ReviewItem, assignee: str | None, now: datetime) -> dict[str, Any]:
    """One row of the queue."""
    return {
        "id": item.id,
        "run_id": item.run_id,
        "flow": item.flow,
        "step": item.step_key,
        "status": item.status,
        "reason": item.reason,
        "error_class": item.error_class,
        "message": item.message,
        "team": item.team,
        "assignee": assignee,
        "claimed_at": iso(item.claimed_at),
        "due_at": iso(item.due_at),
        "escalated_at": iso(item.escalated_at),
        "escalations": item.escalations or 0,
        "overdue": item.status == OPEN and item.due_at is not None and item.due_at < now,
        "created_at": iso(item.created_at),
        "updated_at": iso(item.updated_at),
        "version": item.version,
        "resolution": item.resolution,
        "resolved_by": item.resolved_by,
        "resolved_at": iso(item.resolved_at),
        "note": item.note,
    }


# ------------------------------------------------------------------- queue
def _cursor(sort: str, item: ReviewItem) -> str:
    due = item.due_at.isoformat() if item.due_at else None
    values = [sort, due, item.created_at.isoformat(), item.id]
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


Cursor = tuple[datetime | None, datetime, str]


def _decode(sort: str, cursor: str) -> Cursor:
    """The (due, created, id) of the last row a cursor names; ``InvalidInput`` if malformed."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        was, due, created_text, last_id = json.loads(raw)
        created = datetime.fromisoformat(created_text)
        due_at = datetime.fromisoformat(due) if due else None
        if not isinstance(last_id, str):
            raise TypeError(last_id)
    except (ValueError, TypeError, json.JSONDecodeError):
        raise InvalidInput(
            "cursor: not a cursor this queue gave out; start again without it",
            errors=[{"loc": ["cursor"], "msg": "invalid cursor", "type": "value_error"}],
        ) from None
    if was != sort:
        raise InvalidInput(
            f"cursor: it pages the {was!r} order, not {sort!r}; start again without it",
            errors=[{"loc": ["cursor"], "msg": "cursor of another sort", "type": "value_error"}],
        )
    return due_at, created, last_id


def _later(created: datetime, last_id: str) -> ColumnElement[bool]:
    c = ReviewItem.created_at
    return or_(c > created, and_(c == created, ReviewItem.id > last_id))


def _page(s: Session, q: Any, sort: str, after: Cursor | None, limit: int) -> list[Any]:
    """``limit`` rows of ``q`` after the cursor's row, in ``sort`` order, each by index order.

    "urgent" reads the items with a due time first (soonest first), then the
    ones without (oldest first): two index-ordered reads rather than one sort
    of every open item.
    """
    item, c = ReviewItem, ReviewItem.created_at
    if sort == "newest":
        if after is not None:
            q = q.where(or_(c < after[1], and_(c == after[1], item.id < after[2])))
        return list(s.execute(q.order_by(c.desc(), item.id.desc()).limit(limit)).all())
    if sort == "oldest":
        if after is not None:
            q = q.where(_later(after[1], after[2]))
        return list(s.execute(q.order_by(c, item.id).limit(limit)).all())
    rows: list[Any] = []
    if after is None or after[0] is not None:
        due = q.where(item.due_at.is_not(None))
        if after is not None and after[0] is not None:
            due = due.where(
                or_(
                    item.due_at > after[0],
                    and_(item.due_at == after[0], _later(after[1], after[2])),
                )
            )
        rows = list(s.execute(due.order_by(item.due_at, c, item.id).limit(limit)).all())
    if len(rows) < limit:
        undue = q.where(item.due_at.is_(None))
        if after is not None and after[0] is None:
            undue = undue.where(_later(after[1], after[2]))
        rows += s.execute(undue.order_by(c, item.id).limit(limit - len(rows))).all()
    return rows


def _bad(field: str, message: str) -> InvalidInput:
    return InvalidInput(
        f"{field}: {message}", errors=[{"loc": [field], "msg": message, "type": "value_error"}]
    )


def queue(
    s: Session,
    who: Principal,
    *,
    now: datetime | None = None,
    flow: str | None = None,
    step: str | None = None,
    reason: str | None = None,
    status: str = OPEN,
    assignee: str | None = None,
    older_than: float | None = None,
    newer_than: float | None = None,
    overdue: bool | None = None,
    sort: str = "newest",
    limit: int = 50,
    cursor: str | None = None,
    counts: bool = True,
) -> dict[str, Any]:
    """A page of the items ``who`` may see, with the cursor of the next page and counts.

    ``assignee`` is a user name, ``me`` or ``none``; ``older_than`` and
    ``newer_than`` are ages in seconds; ``sort`` is ``newest``, ``oldest`` or
    ``urgent`` (soonest due first). ``counts`` are over the same filters but
    for status: open, closed (up to :data:`CLOSED_COUNTED`; ``closed_more``
    when there are more), and of the open ones overdue, unassigned, mine.
    """
    now = now or utcnow()
    if status not in STATUSES:
        raise _bad("status", f"{status!r} is not one of {', '.join(STATUSES)}")
    if sort not in SORTS:
        raise _bad("sort", f"{sort!r} is not one of {', '.join(SORTS)}")
    if not 1 <= limit <= MAX_LIMIT:
        raise _bad("limit", f"must be between 1 and {MAX_LIMIT}")
    where: list[ColumnElement[bool]] = [visible(who)]
    if flow:
        where.append(ReviewItem.flow == flow)
    if step:
        where.append(ReviewItem.step_key == step)
    if reason:
        where.append(ReviewItem.reason == reason)
    if assignee == "me":
        where.append(ReviewItem.assignee_id == who.user_id)
    elif assignee == "none":
        where.append(ReviewItem.assignee_id.is_(None))
    elif assignee:
        where.append(ReviewItem.assignee_id.in_(select(m.User.id).where(m.User.name == assignee)))
    if older_than is not None:
        where.append(ReviewItem.created_at <= now - timedelta(seconds=older_than))
    if newer_than is not None:
        where.append(ReviewItem.created_at >= now - timedelta(seconds=newer_than))
    if overdue is not None:
        late = and_(ReviewItem.due_at.is_not(None), ReviewItem.due_at < now)
        where.append(late if overdue else ~late)
    page_where = list(where)
    if status != "all":
        page_where.append(ReviewItem.status == status)
    after = _decode(sort, cursor) if cursor else None
    q = (
        select(ReviewItem, m.User.name)
        .outerjoin(m.User, m.User.id == ReviewItem.assignee_id)
        .where(*page_where)
    )
    rows = _page(s, q, sort, after, limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    out: dict[str, Any] = {
        "items": [summary(item, name, now) for item, name in rows],
        "next_cursor": _cursor(sort, rows[-1][0]) if more else None,
    }
    if counts:
        out["counts"] = _counts(s, who, where, now)
    return out


#: Closed items are counted up to this many; past it the count says "at least".
CLOSED_COUNTED = 1000


def _counts(
    s: Session, who: Principal, where: list[ColumnElement[bool]], now: datetime
) -> dict[str, Any]:
    """Open items exactly (with overdue, unassigned, mine) in one pass; closed ones up to a cap.

    The closed history only grows, so counting it on every page would make
    the queue slower every day: it is counted up to :data:`CLOSED_COUNTED`
    and ``closed_more`` says when there are more.
    """
    is_open = [*where, ReviewItem.status == OPEN]
    open_, overdue, unassigned, mine = s.execute(
        select(
            func.count(),
            func.count().filter(ReviewItem.due_at < now),
            func.count().filter(ReviewItem.assignee_id.is_(None)),
            func.count().filter(ReviewItem.assignee_id == who.user_id),
        ).where(*is_open)
    ).one()
    some_closed = (
        select(ReviewItem.id)
        .where(*where, ReviewItem.status == CLOSED)
        .limit(CLOSED_COUNTED + 1)
        .subquery()
    )
    closed = int(s.scalar(select(func.count()).select_from(some_closed)) or 0)
    return {
        OPEN: int(open_),
        CLOSED: min(closed, CLOSED_COUNTED),
        "closed_more": closed > CLOSED_COUNTED,
        "overdue": int(overdue),
        "unassigned": int(unassigned),
        "mine": int(mine),
    }


# ------------------------------------------------------------------ detail
def _schema(adapter: Any, kind: Any) -> Any:
    if kind is Any:
        return None
    try:
        return adapter.json_schema()
    except Exception:  # a type pydantic cannot describe; the form falls back to JSON
        return None


def detail(
    s: Session, who: Principal, item_id: str, *, registry: Registry, now: datetime | None = None
) -> dict[str, Any]:
    """Everything a reviewer needs to decide: the item, the run, its timeline, the
    step's attempts, comments, the audit trail, and the schemas to validate against."""
    from hub.engine import executable
    from hub.flow import Step
    from hub.views import run_summary

    now = now or utcnow()
    item = load(s, who, item_id)
    run = s.get(m.Run, item.run_id)
    row = s.get(m.Step, item.step_id)
    assert run is not None and row is not None
    names = _names(s, {item.assignee_id})
    out = summary(item, names.get(item.assignee_id or ""), now)
    out["input"] = item.input
    out["current_input"] = row.input
    out["evidence"] = item.evidence
    out["form_schema"] = item.form_schema
    out["run"] = run_summary(run)
    steps = s.scalars(
        select(m.Step).where(m.Step.run_id == run.id).order_by(m.Step.created_at, m.Step.key)
    ).all()
    out["timeline"] = [
        {
            "key": st.key,
            "kind": st.kind,
            "status": st.status,
            "attempts": st.attempts,
            "error_kind": st.error_kind,
            "error": st.error,
            "completed_by": st.completed_by,
            "started_at": iso(st.started_at),
            "finished_at": iso(st.finished_at),
            "current": st.id == row.id,
        }
        for st in steps
    ]
    out["attempts"] = [
        {
            "number": a.number,
            "status": a.status,
            "worker": a.worker,
            "error_kind": a.error_kind,
            "error": a.error,
            "started_at": iso(a.started_at),
            "finished_at": iso(a.finished_at),
        }
        for a in s.scalars(
            select(m.Attempt).where(m.Attempt.step_id == row.id).order_by(m.Attempt.number)
        ).all()
    ]
    out["comments"] = [
        {"author": c.author, "body": c.body, "created_at": iso(c.created_at)}
        for c in s.scalars(
            select(ReviewComment)
            .where(ReviewComment.item_id == item.id)
            .order_by(ReviewComment.created_at, ReviewComment.id)
        ).all()
    ]
    out["audit"] = [
        {
            "at": iso(a.at),
            "actor": a.actor,
            "action": a.action,
            "before": a.before,
            "after": a.after,
        }
        for a in s.scalars(
            select(AuditEntry)
            .where(AuditEntry.object_kind == "review_item", AuditEntry.object_id == item.id)
            .order_by(AuditEntry.id)
        ).all()
    ]
    out["artifacts"] = [
        {
            "id": a.id,
            "kind": a.kind,
            "name": a.name,
            "content_type": a.content_type,
            "size": a.size,
            "url": f"/api/reviews/{item.id}/artifacts/{a.id}",
        }
        for a in s.execute(
            select(
                m.Artifact.id,
                m.Artifact.kind,
                m.Artifact.name,
                m.Artifact.content_type,
                m.Artifact.size,
            )
            .where(m.Artifact.item_id == item.id)
            .order_by(m.Artifact.id)
        ).all()
    ]
    out["input_schema"] = out["output_schema"] = None
    try:
        node = executable(registry.get(run.flow), row.node, row.item)
    except Exception:  # the deployed flow lost the step: no schema to offer
        node = None
    if isinstance(node, Step):
        out["input_schema"] = _schema(node.input_adapter, node.input_type)
        out["output_schema"] = _schema(node.output_adapter, node.output_type)
    return out


def artifact(s: Session, who: Principal, item_id: str, artifact_id: str) -> m.Artifact:
    """A file of the item's evidence, if ``who`` may see the item; else :class:`ReviewNotFound`.

    The same answer for another team's item, an unknown item, and an
    artifact of some other item: nothing tells them apart.
    """
    item = load(s, who, item_id)
    found = s.scalar(
        select(m.Artifact).where(m.Artifact.id == artifact_id, m.Artifact.item_id == item.id)
    )
    if found is None:
        raise ReviewNotFound(f"no file {artifact_id!r} in the evidence of review item {item_id!r}")
    return found


# ----------------------------------------------------------------- actions
def audit(
    s: Session,
    actor: str | None,
    action: str,
    kind: str,
    object_id: str,
    before: Any,
    after: Any,
    now: datetime,
) -> None:
    """Append one row to the audit log (the only way the hub writes it)."""
    s.add(
        AuditEntry(
            at=now,
            actor=actor,
            action=action,
            object_kind=kind,
            object_id=object_id,
            before=before,
            after=after,
        )
    )


def _state(s: Session, item: ReviewItem) -> dict[str, Any]:
    names = _names(s, {item.assignee_id})
    return {
        "status": item.status,
        "version": item.version,
        "assignee": names.get(item.assignee_id or ""),
        "resolution": item.resolution,
        "note": item.note,
    }


def _text(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _bad(field, "required: give a non-empty text")
    return value.strip()


def act(
    engine: Engine,
    who: Principal,
    item_id: str,
    action: str,
    *,
    version: int | None = None,
    input: Any = None,
    output: Any = None,
    reason: str | None = None,
    text: str | None = None,
    assignee: str | None = None,
) -> dict[str, Any]:
    """Do ``action`` on the item as ``who``; return the item's summary afterwards.

    ``version``, when given, is the version the reviewer saw: if the item
    changed since, the action is refused (409). Raises :class:`ReviewNotFound`,
    :class:`Forbidden`, :class:`ReviewConflict` (closed, changed, or claimed by
    someone else) or :class:`InvalidInput` (a malformed input, output or a
    missing reason), and then nothing changed.
    """
    if action not in ACTIONS:
        raise ReviewNotFound(f"unknown action {action!r}; actions are {', '.join(ACTIONS)}")

    def work(s: Session) -> tuple[dict[str, Any], list[Dispatch]]:
        now = engine.clock()
        item = load(s, who, item_id)
        require(who, ACTIONS[action], f"{action} on a review item")
        if action == "comment":
            body = _text(text, "text")
            s.add(ReviewComment(item_id=item.id, user_id=who.user_id, author=who.name, body=body))
            audit(s, who.name, "review.comment", "review_item", item.id, None, {"text": body}, now)
            return summary(item, _names(s, {item.assignee_id}).get(item.assignee_id or ""), now), []
        if item.status != OPEN:
            by = f" by {item.resolved_by}" if item.resolved_by else ""
            raise ReviewConflict(
                f"review item {item.id} is closed ({item.resolution}{by} at "
                f"{iso(item.resolved_at)}); nothing changed"
            )
        seen = item.version if version is None else version
        if seen != item.version:
            raise ReviewConflict(
                f"review item {item.id} changed since you read it (version {seen}, now "
                f"{item.version}); reload it and try again; nothing changed"
            )
        holder = item.assignee_id
        if holder not in (None, who.user_id) and not who.can("operator"):
            name = _names(s, {holder}).get(holder or "", "someone else")
            raise ReviewConflict(
                f"review item {item.id} is claimed by {name}; they or an operator can "
                "unclaim or reassign it; nothing changed"
            )
        values: dict[str, Any] = {}
        reason_text = ""
        if action == "claim":
            values = {"assignee_id": who.user_id, "claimed_at": now}
        elif action == "unclaim":
            values = {"assignee_id": None, "claimed_at": None}
        elif action == "assign":
            values = {"assignee_id": assignee_id(s, item, assignee), "claimed_at": now}
        elif action == "edit" and input is None:
            raise _bad("input", "required: the step's new input")
        elif action == "complete" and output is None:
            raise _bad("output", "required: the step's output")
        elif action in ("skip", "abort"):
            reason_text = _text(reason, "reason")
        if action in ENGINE_ACTIONS:
            lock_run(s, item.run_id)  # the run first, as every engine action does
        before = _state(s, item)
        row = s.get(m.Step, item.step_id)
        assert row is not None
        input_before = row.input
        done = s.execute(
            update(ReviewItem)
            .where(
                ReviewItem.id == item.id,
                ReviewItem.status == OPEN,
                ReviewItem.version == seen,
            )
            .values(version=ReviewItem.version + 1, updated_at=now, **values)
            .execution_options(synchronize_session=False)
        )
        if done.rowcount != 1:  # type: ignore[attr-defined]
            raise ReviewConflict(
                f"review item {item.id} was changed by someone else at the same moment; "
                "reload it and try again; nothing changed"
            )
        dispatch: list[Dispatch] = []
        by, step = who.name, item.step_key
        if action == "retry":
            dispatch = control.resume(engine, s, item.run_id, step=step, input=None, by=by)
        elif action == "edit":
            dispatch = control.resume(engine, s, item.run_id, step=step, input=input, by=by)
        elif action == "complete":
            dispatch = control.complete(engine, s, item.run_id, step=step, output=output, by=by)
        elif action == "skip":
            dispatch = control.skip(engine, s, item.run_id, step=step, reason=reason_text, by=by)
        elif action == "abort":
            control.abort(engine, s, item.run_id, by=by, reason=reason_text)
        s.flush()
        item = load(s, who, item.id)
        after = _state(s, item)
        if action == "edit":
            s.refresh(row)
            before["input"], after["input"] = input_before, row.input
        if action in ("skip", "abort"):
            after["reason"] = reason_text
        audit(s, by, f"review.{action}", "review_item", item.id, before, after, now)
        return summary(item, after["assignee"], now), dispatch

    result, dispatch = engine.store.run(work)
    engine.dispatch(dispatch)
    return result


def assignee_id(s: Session, item: ReviewItem, name: str | None) -> str:
    """The id of user ``name`` if they may be given ``item``, else :class:`InvalidInput`.

    They must be active, a reviewer or stronger, and in the item's team
    unless an operator. The one rule for assigning by hand and by escalation.
    """
    from hub.auth import principal

    if not name:
        raise _bad("assignee", "required: the name of the user to assign")
    user = s.scalar(select(m.User).where(m.User.name == name))
    if user is None or not user.active:
        raise _bad("assignee", f"no active user named {name!r}")
    them = principal(s, user)
    if not them.can("reviewer"):
        raise _bad("assignee", f"{name} is a {them.role}; assign a reviewer or stronger")
    if item.team and item.team not in them.teams and not them.can("operator"):
        raise _bad("assignee", f"{name} is not in team {item.team!r}, which owns this item")
    return user.id


def assignable(s: Session, item: ReviewItem) -> list[str]:
    """The names of everyone :func:`assignee_id` accepts for ``item``, in one query.

    Active reviewers of the item's team (any reviewer when it has none), and
    every active operator and admin.
    """
    strong = m.User.role.in_(("operator", "admin"))
    rule: ColumnElement[bool] = m.User.role.in_(("reviewer", "operator", "admin"))
    if item.team:
        in_team = (
            select(m.UserTeam.user_id)
            .join(m.Team, m.Team.id == m.UserTeam.team_id)
            .where(m.Team.name == item.team)
        )
        rule = and_(rule, or_(strong, m.User.id.in_(in_team)))
    names = s.scalars(
        select(m.User.name).where(m.User.active.is_(True), rule).order_by(m.User.name)
    ).all()
    return list(names)
