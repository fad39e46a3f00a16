"""Reading stored rows in engine tests: every assertion is about what SQL holds."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import select

from hub import models as m
from hub.testing import LocalHub

LocalHubFactory = Callable[..., LocalHub]


def rows(hub: LocalHub, model: Any, **where: Any) -> list[Any]:
    """Stored rows of ``model`` matching ``where`` (column == value)."""
    with hub.store.read() as s:
        q = select(model)
        for column, value in where.items():
            q = q.where(getattr(model, column) == value)
        return list(s.scalars(q).all())


def run_row(hub: LocalHub, run_id: str) -> m.Run:
    (run,) = rows(hub, m.Run, id=run_id)
    return run


def step_rows(hub: LocalHub, run_id: str) -> dict[str, m.Step]:
    return {r.key: r for r in rows(hub, m.Step, run_id=run_id)}


def step_row(hub: LocalHub, run_id: str, key: str) -> m.Step:
    (row,) = rows(hub, m.Step, run_id=run_id, key=key)
    return row


def attempts_of(hub: LocalHub, step_id: str) -> list[m.Attempt]:
    return sorted(rows(hub, m.Attempt, step_id=step_id), key=lambda a: a.number)


def reviews_of(hub: LocalHub, run_id: str) -> list[m.ReviewItem]:
    return sorted(rows(hub, m.ReviewItem, run_id=run_id), key=lambda r: r.created_at)


def events(hub: LocalHub, run_id: str, kind: str | None = None) -> list[m.Event]:
    found = sorted(rows(hub, m.Event, run_id=run_id), key=lambda e: e.id)
    return [e for e in found if kind is None or e.kind == kind]


def event_kinds(hub: LocalHub, run_id: str) -> list[str]:
    return [e.kind for e in events(hub, run_id)]
