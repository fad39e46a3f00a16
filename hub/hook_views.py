"""What people read of webhooks: the hooks declared, their deliveries and refusals.

The read side of :mod:`hub.hooks` (which takes deliveries in), for the API,
the pages and ``hub hooks``. A delivery whose run has an open review item
outside the asker's teams is not found to them, as the run is not.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, exists, func, not_, select
from sqlalchemy.orm import Session, defer

from hub.auth import Principal
from hub.errors import InvalidInput
from hub.hooks import DeliveryNotFound, declared
from hub.models import AuditEntry, ReviewItem, Run, WebhookDelivery, WebhookRejection
from hub.views import iso, run_summary

#: Characters of a stored body shown by the API and the pages.
BODY_SHOWN = 64 * 1024
#: Rejections are summed over this window on the overview.
REJECTION_WINDOW = timedelta(hours=24)
_CURSOR = re.compile(r"^[0-9a-f]{1,32}$")


def _hidden(who: Principal | None) -> ColumnElement[bool] | None:
    """Deliveries ``who`` may not see: their run has an open review item outside their teams."""
    if who is None or who.can("operator"):
        return None
    from hub.reviews import visible

    return exists(
        select(ReviewItem.id).where(
            ReviewItem.run_id == WebhookDelivery.run_id,
            ReviewItem.status == "open",
            not_(visible(who)),
        )
    )


def overview(s: Session, registry: Any, now: datetime) -> list[dict[str, Any]]:
    """Each declared hook with its flow, preset and counts (deliveries, rejections in 24 h)."""
    stored = {
        r.hook: r
        for r in s.execute(
            select(
                WebhookDelivery.hook,
                func.count().label("n"),
                func.coalesce(func.sum(WebhookDelivery.duplicates), 0).label("dups"),
                func.max(WebhookDelivery.received_at).label("last"),
            ).group_by(WebhookDelivery.hook)
        )
    }
    refused = dict(
        s.execute(
            select(WebhookRejection.hook, func.sum(WebhookRejection.count))
            .where(WebhookRejection.minute >= now - REJECTION_WINDOW)
            .group_by(WebhookRejection.hook)
        ).all()
    )
    out = []
    for flow, hook in declared(registry):
        row = stored.get(hook.name)
        out.append(
            {
                "name": hook.name,
                "flow": flow.name,
                "verify": hook.verify,
                "url": f"/hooks/{hook.name}",
                "max_body": hook.max_body,
                "secrets": len(hook.secret_refs()),
                "deliveries": row.n if row else 0,
                "duplicates": int(row.dups) if row else 0,
                "last_received_at": iso(row.last) if row else None,
                "rejected_24h": int(refused.get(hook.name) or 0),
            }
        )
    return out


def summary(row: WebhookDelivery, run_status: str | None = None) -> dict[str, Any]:
    key = row.delivery_key
    return {
        "id": row.id,
        "hook": row.hook,
        "flow": row.flow,
        "status": row.status,
        "delivery_key": key,
        "replay_of": key.split(":")[1] if key.startswith("replay:") else None,
        "run_id": row.run_id,
        "run_status": run_status,
        "verified_by": row.verified_by,
        "content_type": row.content_type,
        "size": row.size,
        "source": row.source,
        "duplicates": row.duplicates,
        "received_at": iso(row.received_at),
        "last_duplicate_at": iso(row.last_duplicate_at),
    }


def deliveries(
    s: Session,
    who: Principal | None,
    *,
    hook: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> dict[str, Any]:
    """A page of deliveries, newest first, and the cursor of the next page (None: the last)."""
    q = (
        select(WebhookDelivery, Run.status)
        .outerjoin(Run, Run.id == WebhookDelivery.run_id)
        .options(defer(WebhookDelivery.body), defer(WebhookDelivery.headers))
        .order_by(WebhookDelivery.id.desc())
        .limit(limit + 1)
    )
    if hook is not None:
        q = q.where(WebhookDelivery.hook == hook)
    if cursor:
        if not _CURSOR.match(cursor):
            raise InvalidInput(
                "cursor: not a cursor this list gave out; start again without it",
                [{"loc": ["cursor"], "msg": "invalid cursor", "type": "value_error"}],
            )
        q = q.where(WebhookDelivery.id < cursor)
    hidden = _hidden(who)
    if hidden is not None:
        q = q.where(not_(hidden))
    rows = s.execute(q).all()
    page = [summary(d, status) for d, status in rows[:limit]]
    more = len(rows) > limit
    return {"deliveries": page, "next_cursor": page[-1]["id"] if more and page else None}


def rejections(
    s: Session, now: datetime, *, hook: str | None = None, limit: int = 50
) -> dict[str, Any]:
    """Refusals in the last 24 h: totals by reason, and the latest rows (hook, reason, minute)."""
    since = now - REJECTION_WINDOW
    where = [WebhookRejection.minute >= since]
    if hook is not None:
        where.append(WebhookRejection.hook == hook)
    counts = dict(
        s.execute(
            select(WebhookRejection.reason, func.sum(WebhookRejection.count))
            .where(*where)
            .group_by(WebhookRejection.reason)
        ).all()
    )
    rows = s.scalars(
        select(WebhookRejection)
        .where(*where)
        .order_by(WebhookRejection.last_at.desc(), WebhookRejection.id.desc())
        .limit(limit)
    ).all()
    return {
        "counts": {reason: int(n) for reason, n in sorted(counts.items())},
        "recent": [
            {
                "hook": r.hook,
                "reason": r.reason,
                "status": r.status,
                "minute": iso(r.minute),
                "count": r.count,
                "last_detail": r.last_detail,
                "last_source": r.last_source,
                "last_at": iso(r.last_at),
            }
            for r in rows
        ],
    }


def detail(s: Session, who: Principal | None, delivery_id: str) -> dict[str, Any]:
    """One delivery: headers kept, body as text (capped), its run, replays and audit trail."""
    q = select(WebhookDelivery).where(WebhookDelivery.id == delivery_id)
    hidden = _hidden(who)
    if hidden is not None:
        q = q.where(not_(hidden))
    row = s.scalar(q)
    if row is None:
        raise DeliveryNotFound(f"no webhook delivery with id {delivery_id!r}")
    run = s.get(Run, row.run_id) if row.run_id else None
    out = summary(row, run.status if run else None)
    text = row.body.decode("utf-8", "replace")
    out.update(
        headers=row.headers or {},
        body=text[:BODY_SHOWN],
        body_truncated=len(text) > BODY_SHOWN,
        run=run_summary(run) if run else None,
        replays=[
            summary(r)
            for r in s.scalars(
                select(WebhookDelivery)
                .options(defer(WebhookDelivery.body), defer(WebhookDelivery.headers))
                .where(
                    WebhookDelivery.hook == row.hook,
                    WebhookDelivery.delivery_key.startswith(f"replay:{row.id}:", autoescape=True),
                )
                .order_by(WebhookDelivery.id)
            )
        ],
        audit=[
            {"at": iso(a.at), "actor": a.actor, "action": a.action, "after": a.after}
            for a in s.scalars(
                select(AuditEntry)
                .where(AuditEntry.object_kind == "webhook_delivery", AuditEntry.object_id == row.id)
                .order_by(AuditEntry.id)
            )
        ],
    )
    return out
