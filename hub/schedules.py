"""Schedules in SQL: the flows' ``Schedule`` declarations as rows, fired by the scheduler's tick.

Keys
----
A schedule's key is ``flow:name``. ``name`` is the declaration's ``name=``,
or, for unnamed ones, their position among the flow's unnamed schedules
(``1``, ``2``, ...), so editing the cron of ``report:1`` keeps its row, its
pause and its history. Give every schedule a name when a flow has several
and their order may change. A name holds letters, digits, ``_`` and ``-``.

Sync
----
:func:`sync` makes the rows match the deployed declarations: a new one is
inserted with its first fire time after now; one whose cron, zone or
policies changed is updated, and its next fire is computed afresh from now
(fire times of the old timing are not owed); one no longer declared is
marked ``declared=False`` and kept with its history. The scheduler syncs
when it starts and again only when its declarations change (or until a
sync succeeded): two schedulers of different releases never fight over a
row on every tick.

Firing
------
``next_fire_at`` is the first fire time not handled yet. :func:`fire_due`
reads the schedules whose ``next_fire_at`` has come (one indexed query) and
handles each in ONE transaction that locks its row (``FOR UPDATE SKIP
LOCKED`` on PostgreSQL: a second scheduler passes over a schedule the first
is firing). :func:`hub.firetimes.due` says which fire times since
``next_fire_at`` start runs under the schedule's ``misfire`` policy. Each one
is a ``schedule_fires`` row, inserted in a savepoint before anything else:
the unique ``(schedule_id, fire_time)`` lets one scheduler have it, and the
other does nothing for that fire. Then the ``overlap`` policy looks at the
schedule's active runs (queued, running or waiting for review, with trigger
``schedule:{key}``): ``allow`` starts a run; ``forbid`` records the fire as
``skipped`` ("run X still active"); ``replace`` cancels them (actor
``scheduler``) and starts one. The run, the fire row and the schedule's new
``last_fire_at``/``next_fire_at`` commit together; the first step is
published after the commit.

Fire times not started because of the misfire policy are ``missed`` rows
with the reason. After a long outage only the latest few get a row each;
the ones before are counted in one row, so a week down writes no more rows
than a minute down.

Input
-----
The run's input is the declaration's ``input``: a dict as it is, or a
function called with the fire time (aware, in the schedule's zone). Without
one it is ``{"fire_time": "2025-03-30T03:00:00+02:00"}``. The flow validates
it as any input; a refused input, or a function that raises, records the
fire as ``failed`` with why, and the schedule goes on.

Pause and resume
----------------
:func:`pause` and :func:`resume` are audited (``schedule.pause``,
``schedule.resume``). A paused schedule starts nothing and records nothing.
Resuming computes the next fire from the moment of the resume: what fell
due while paused is not caught up, so a long pause ends without a burst.
"""

from __future__ import annotations

import contextlib
import copy
import re
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hub import control
from hub import models as m
from hub.errors import FlowDefinitionError, HubError, RunStateError
from hub.firetimes import DEFAULT_GRACE, due, fire_times, overlap_action
from hub.models import Run, ScheduleFire, ScheduleRow
from hub.registry import Registry
from hub.reviews import audit
from hub.runs import Dispatch, create_run
from hub.triggers import Schedule
from hub.views import iso

#: Schedules handled per tick; the rest wait for the next one.
LIMIT = 100
#: ``missed`` rows written per schedule and tick; earlier misses are counted in one row.
MISSED_ROWS = 10
#: Missed fire times counted one by one before "more than".
COUNT_LIMIT = 1000
ACTOR = "scheduler"
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_\-]*$")
_TIMING = ("cron", "tz", "misfire", "overlap", "catch_up")


class ScheduleNotFound(HubError):
    """No schedule has that key."""


@dataclass(frozen=True)
class Declared:
    """A ``Schedule`` of a loaded flow, with the key its row has."""

    key: str
    flow: str
    name: str
    schedule: Schedule


def declarations(registry: Registry) -> dict[str, Declared]:
    """Every schedule the loaded flows declare, by key (see "Keys").

    Raises ``FlowDefinitionError`` for a malformed name, or two schedules
    with one key.
    """
    found: dict[str, Declared] = {}
    for flow in registry:
        unnamed = 0
        for trigger in flow.triggers:
            if not isinstance(trigger, Schedule):
                continue
            if trigger.name is None:
                unnamed += 1
            name = trigger.name if trigger.name is not None else str(unnamed)
            if not isinstance(name, str) or not _NAME.match(name) or len(name) > 100:
                raise FlowDefinitionError(
                    f"flow {flow.name!r}: schedule name {name!r} must be letters, digits, "
                    "'_' and '-' (at most 100)"
                )
            key = f"{flow.name}:{name}"
            if len(key) > 190:
                raise FlowDefinitionError(f"flow {flow.name!r}: schedule key {key!r} is too long")
            if key in found:
                raise FlowDefinitionError(
                    f"flow {flow.name!r} declares two schedules named {name!r}; give each "
                    "Schedule its own name="
                )
            found[key] = Declared(key, flow.name, name, trigger)
    return found


def trigger_of(key: str) -> str:
    """The ``trigger`` of the runs a schedule starts."""
    return f"schedule:{key}"


# ----------------------------------------------------------------------- sync
def sync(
    hub: Any, now: datetime | None = None, found: dict[str, Declared] | None = None
) -> dict[str, int]:
    """Make the rows match the declarations of the loaded flows (see "Sync").

    ``hub`` here and below is the runtime hub, a ``LocalHub``, or an engine.
    Returns counts: ``added``, ``updated``, ``undeclared``.
    """
    engine = _engine(hub)
    now = now or engine.clock()
    wanted = declarations(engine.registry) if found is None else found

    def work(s: Session) -> dict[str, int]:
        return _sync(s, wanted, now)

    try:
        return dict(engine.store.run(work))
    except IntegrityError:  # another scheduler inserted the same new key first
        return dict(engine.store.run(work))


def _sync(s: Session, wanted: dict[str, Declared], now: datetime) -> dict[str, int]:
    rows = {r.key: r for r in s.scalars(select(ScheduleRow).with_for_update()).all()}
    counts: Counter[str] = Counter()
    for key, d in wanted.items():
        sched = d.schedule
        timing = {f: getattr(sched, f) for f in _TIMING}
        timing["catch_up"] = float(sched.catch_up)
        row = rows.get(key)
        if row is None:
            s.add(
                ScheduleRow(
                    key=key,
                    flow=d.flow,
                    name=d.name,
                    **timing,
                    paused=False,
                    declared=True,
                    next_fire_at=next_fire(sched.cron, sched.tz, now),
                    created_at=now,
                )
            )
            counts["added"] += 1
        elif not row.declared or any(getattr(row, f) != v for f, v in timing.items()):
            for field, value in timing.items():
                setattr(row, field, value)
            row.declared, row.updated_at = True, now
            row.next_fire_at = next_fire(sched.cron, sched.tz, now)
            counts["updated"] += 1
    for key, row in rows.items():
        if key not in wanted and row.declared:
            row.declared, row.updated_at = False, now
            counts["undeclared"] += 1
    return dict(counts)


class Syncer:
    """Syncs ``hub``'s schedules when its declarations differ from the last successful sync."""

    def __init__(self, hub: Any) -> None:
        self.hub = hub
        self._synced: tuple[Any, ...] | None = None

    def __call__(self, now: datetime) -> dict[str, int] | None:
        """Sync if needed; None when nothing changed. Raises what :func:`sync` raises."""
        found = declarations(_engine(self.hub).registry)
        mark = tuple(
            (k, *(getattr(d.schedule, f) for f in _TIMING)) for k, d in sorted(found.items())
        )
        if mark == self._synced:
            return None
        counts = sync(self.hub, now, found)
        self._synced = mark
        return counts


# --------------------------------------------------------------------- firing
def fire_due(
    hub: Any, now: datetime | None = None, *, grace: float = DEFAULT_GRACE, limit: int = LIMIT
) -> dict[str, int]:
    """Start the runs of every schedule whose next fire time has come (see "Firing").

    ``now`` is naive UTC (default: the engine's clock); ``grace`` is how
    late a fire may be and still be on time. Returns counts by outcome
    (``started``, ``replaced``, ``skipped``, ``missed``, ``failed``) and
    ``taken``: fires another scheduler had already recorded. Database errors
    propagate (the scheduler logs them and ticks again).
    """
    engine = _engine(hub)
    now = now or engine.clock()
    with engine.store.read() as s:
        ids = s.scalars(
            select(ScheduleRow.id)
            .where(
                ScheduleRow.next_fire_at <= now,
                ScheduleRow.paused.is_(False),
                ScheduleRow.declared.is_(True),
            )
            .order_by(ScheduleRow.next_fire_at)
            .limit(limit)
        ).all()
    if not ids:
        return {}
    found = declarations(engine.registry)
    counts: Counter[str] = Counter()
    for schedule_id in ids:

        def work(s: Session, schedule_id: str = schedule_id) -> tuple[list[Dispatch], Counter[str]]:
            return _fire(engine, s, schedule_id, found, now, grace)

        dispatch, done = engine.store.run(work)
        engine.dispatch(dispatch)
        counts.update(done)
    return dict(counts)


def _fire(
    engine: Any,
    s: Session,
    schedule_id: str,
    found: dict[str, Declared],
    now: datetime,
    grace: float,
) -> tuple[list[Dispatch], Counter[str]]:
    """Handle one schedule's due fire times in the caller's transaction."""
    counts: Counter[str] = Counter()
    row = s.execute(
        select(ScheduleRow)
        .where(ScheduleRow.id == schedule_id)
        .with_for_update(skip_locked=True)
        .execution_options(populate_existing=True)
    ).scalar_one_or_none()
    if (
        row is None
        or row.paused
        or not row.declared
        or row.next_fire_at is None
        or row.next_fire_at > now
    ):
        return [], counts  # another scheduler has it, or handled it already
    since = _aware(row.next_fire_at) - timedelta(microseconds=1)
    chosen = due(row.cron, row.tz, since, _aware(now), row.misfire, row.catch_up, grace)
    for fire_time, reason in _missed(row, since, now, chosen, grace):
        counts["missed" if _record(s, row, fire_time, "missed", reason, now) else "taken"] += 1
    dispatch: list[Dispatch] = []
    for fire_time in chosen:
        outcome = _start(engine, s, row, found.get(row.key), fire_time, now, grace, dispatch)
        counts[outcome] += 1
    row.next_fire_at = next_fire(row.cron, row.tz, now)
    return dispatch, counts


def _start(
    engine: Any,
    s: Session,
    row: ScheduleRow,
    declared: Declared | None,
    fire_time: datetime,
    now: datetime,
    grace: float,
    dispatch: list[Dispatch],
) -> str:
    """Record one fire time and act on it; returns its outcome (``taken`` if not ours)."""
    trigger = trigger_of(row.key)
    active = s.scalars(
        select(Run.id)
        .where(Run.status.in_(m.RUN_ACTIVE), Run.flow == row.flow, Run.trigger == trigger)
        .order_by(Run.created_at)
    ).all()
    action = overlap_action(row.overlap, len(active))
    if action == "skip":
        reason = f"run {active[-1]} still active (overlap=forbid)"
        return "skipped" if _record(s, row, fire_time, "skipped", reason, now) else "taken"
    try:
        flow, data = _input(engine, row, declared, fire_time)
    except Exception as exc:
        reason = _short(f"not started: {exc}")
        return "failed" if _record(s, row, fire_time, "failed", reason, now) else "taken"
    late = fire_time <= _aware(now) - timedelta(seconds=grace)
    outcome = "replaced" if action == "replace" else "started"
    try:
        with s.begin_nested():
            fire = _fire_row(row, fire_time, outcome, now)
            s.add(fire)
            s.flush()
            for run_id in active if action == "replace" else ():
                with contextlib.suppress(RunStateError):  # it finished meanwhile
                    control.cancel(
                        engine,
                        s,
                        run_id,
                        by=ACTOR,
                        reason=f"replaced by the run of schedule {row.key} at {_iso(fire_time)}",
                    )
            started, first = create_run(engine, s, flow, data, trigger=trigger, key=None)
            s.flush()
            fire.run_id = started.run_id
            notes = [f"cancelled run {', '.join(active)}"] if action == "replace" else []
            if late:
                notes.append(f"catch-up of a missed fire time (misfire={row.misfire})")
            fire.reason = "; ".join(notes) or None
            s.flush()
    except IntegrityError:
        return "taken"
    row.last_fire_at = _naive(fire_time)
    dispatch.extend(first)
    return outcome


def _input(
    engine: Any, row: ScheduleRow, declared: Declared | None, fire_time: datetime
) -> tuple[Any, Any]:
    """The flow and the validated input of a run for ``fire_time`` (see "Input")."""
    flow = engine.registry.get(row.flow)
    if declared is None:
        raise HubError(f"this scheduler's flows do not declare schedule {row.key!r}")
    given = declared.schedule.input
    local = fire_time.astimezone(ZoneInfo(row.tz))
    if given is None:
        data: Any = {"fire_time": local.isoformat()}
    elif callable(given):
        try:
            data = given(local)
        except Exception as exc:
            raise HubError(
                f"the schedule's input function raised {type(exc).__name__}: {exc}"
            ) from exc
    else:
        data = copy.deepcopy(given)
    return flow, flow.validate_input(data)


def _missed(
    row: ScheduleRow, since: datetime, now: datetime, chosen: list[datetime], grace: float
) -> list[tuple[datetime, str]]:
    """The fire times since ``since`` not started, with why; at most ``MISSED_ROWS``."""
    window = row.catch_up if row.misfire != "skip" else 0.0
    start = _aware(now) - timedelta(seconds=max(window, grace))
    older = []
    if since < start:
        older = list(fire_times(row.cron, row.tz, since, until=start, limit=COUNT_LIMIT + 1))
    recent = fire_times(row.cron, row.tz, max(since, start), until=_aware(now))
    picked = set(chosen)
    dropped = older + [f for f in recent if f not in picked]
    if not dropped:
        return []
    late = [f for f in chosen if f <= _aware(now) - timedelta(seconds=grace)]

    def why(fire_time: datetime) -> str:
        if fire_time > start and late:
            return (
                "not started: misfire=run_once starts one catch-up run, "
                f"for {_iso(late[-1], row.tz)}"
            )
        if row.misfire == "skip":
            return f"not started: no scheduler ticked within {grace:g} s of it (misfire=skip)"
        return (
            f"not started: no scheduler ticked within the catch-up window of {row.catch_up:g} s "
            f"(misfire={row.misfire})"
        )

    truncated = len(older) > COUNT_LIMIT
    if not truncated and len(dropped) <= MISSED_ROWS:
        return [(f, why(f)) for f in dropped]
    # the latest few each get a row; the ones before are counted in one row at the first
    tail = ([f for f in dropped if f > start] if truncated else dropped)[-(MISSED_ROWS - 1) :]
    head = dropped[: len(dropped) - len(tail)]
    if truncated:
        text = f"more than {COUNT_LIMIT} fire times from {_iso(head[0], row.tz)} on"
    else:
        text = f"{len(head)} fire times from {_iso(head[0], row.tz)} to {_iso(head[-1], row.tz)}"
    return [(head[0], _short(f"{text}, each {why(head[-1])}")), *((f, why(f)) for f in tail)]


def _record(
    s: Session, row: ScheduleRow, fire_time: datetime, outcome: str, reason: str, now: datetime
) -> bool:
    """Insert a fire without a run; False when another scheduler recorded it first."""
    try:
        with s.begin_nested():
            fire = _fire_row(row, fire_time, outcome, now)
            fire.reason = reason
            s.add(fire)
            s.flush()
    except IntegrityError:
        return False
    return True


def _fire_row(row: ScheduleRow, fire_time: datetime, outcome: str, now: datetime) -> ScheduleFire:
    return ScheduleFire(
        id=m.new_id(),
        schedule_id=row.id,
        fire_time=_naive(fire_time),
        outcome=outcome,
        created_at=now,
    )


# ------------------------------------------------------------ pause, resume
def pause(hub: Any, key: str, *, by: str, now: datetime | None = None) -> bool:
    """Pause the schedule ``key``; False if it was paused already. Audited."""
    engine = _engine(hub)
    return bool(engine.store.run(lambda s: _set_paused(s, key, True, by, now or engine.clock())))


def resume(hub: Any, key: str, *, by: str, now: datetime | None = None) -> bool:
    """Resume ``key`` from now (nothing due while paused is caught up). Audited."""
    engine = _engine(hub)
    return bool(engine.store.run(lambda s: _set_paused(s, key, False, by, now or engine.clock())))


def _set_paused(s: Session, key: str, paused: bool, by: str, now: datetime) -> bool:
    row = s.execute(
        select(ScheduleRow)
        .where(ScheduleRow.key == key)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).scalar_one_or_none()
    if row is None:
        raise ScheduleNotFound(f"no schedule {key!r}; `hub schedules` lists them")
    if row.paused == paused:
        return False
    before = _state(row)
    row.paused, row.updated_at = paused, now
    row.paused_by, row.paused_at = (by, now) if paused else (None, None)
    if not paused:
        row.next_fire_at = next_fire(row.cron, row.tz, now)
    action = "schedule.pause" if paused else "schedule.resume"
    audit(s, by, action, "schedule", row.id, before, _state(row), now)
    return True


def _state(row: ScheduleRow) -> dict[str, Any]:
    return {"key": row.key, "paused": row.paused, "next_fire_at": _iso(row.next_fire_at)}


# -------------------------------------------------------------------- reads
def list_schedules(hub: Any) -> list[dict[str, Any]]:
    """Every schedule row, declared ones first, with its last fire's outcome."""
    with _engine(hub).store.read() as s:
        rows = s.scalars(
            select(ScheduleRow).order_by(ScheduleRow.declared.desc(), ScheduleRow.key)
        ).all()
        out = []
        for row in rows:
            last = s.scalars(
                select(ScheduleFire)
                .where(ScheduleFire.schedule_id == row.id)
                .order_by(ScheduleFire.fire_time.desc())
                .limit(1)
            ).first()
            item = summary(row)
            item["last_outcome"] = last.outcome if last is not None else None
            out.append(item)
    return out


def describe(
    hub: Any, key: str, now: datetime | None = None, *, history: int = 50
) -> dict[str, Any]:
    """One schedule: its summary, next ten fire times, fires with outcome and run, misses."""
    engine = _engine(hub)
    now = now or engine.clock()
    with engine.store.read() as s:
        row = s.scalar(select(ScheduleRow).where(ScheduleRow.key == key))
        if row is None:
            raise ScheduleNotFound(f"no schedule {key!r}; `hub schedules` lists them")
        fires = s.execute(
            select(ScheduleFire, Run.status)
            .outerjoin(Run, Run.id == ScheduleFire.run_id)
            .where(ScheduleFire.schedule_id == row.id)
            .order_by(ScheduleFire.fire_time.desc())
            .limit(history)
        ).all()
        active = s.scalars(
            select(Run.id)
            .where(
                Run.status.in_(m.RUN_ACTIVE),
                Run.flow == row.flow,
                Run.trigger == trigger_of(row.key),
            )
            .order_by(Run.created_at)
        ).all()
        out = summary(row)
    out["next_fires"] = [_times(f, row.tz) for f in fire_times(row.cron, row.tz, now, limit=10)]
    out["fires"] = [_fire_view(f, status, row.tz) for f, status in fires]
    out["missed"] = [f for f in out["fires"] if f["outcome"] != "started"][:20]
    out["active_runs"] = list(active)
    return out


def summary(row: ScheduleRow) -> dict[str, Any]:
    return {
        "key": row.key,
        "flow": row.flow,
        "name": row.name,
        "cron": row.cron,
        "tz": row.tz,
        "misfire": row.misfire,
        "overlap": row.overlap,
        "catch_up": row.catch_up,
        "paused": row.paused,
        "paused_by": row.paused_by,
        "paused_at": _iso(row.paused_at),
        "declared": row.declared,
        "next_fire_at": _iso(row.next_fire_at) if row.declared else None,
        "next_fire_local": _local(row.next_fire_at, row.tz) if row.declared else None,
        "last_fire_at": _iso(row.last_fire_at),
        "last_fire_local": _local(row.last_fire_at, row.tz),
    }


def _fire_view(fire: ScheduleFire, run_status: str | None, tz: str) -> dict[str, Any]:
    return {
        **_times(_aware(fire.fire_time), tz),
        "outcome": fire.outcome,
        "reason": fire.reason,
        "run_id": fire.run_id,
        "run_status": run_status,
        "recorded_at": _iso(fire.created_at),
    }


def _times(moment: datetime, tz: str) -> dict[str, str]:
    """A fire time in UTC and in the schedule's zone (ISO, and with the zone's abbreviation)."""
    local = moment.astimezone(ZoneInfo(tz))
    return {
        "utc": _iso(moment) or "",
        "local": local.isoformat(),
        "wall": f"{local:%Y-%m-%d %H:%M:%S} {local.tzname()}",
    }


# ----------------------------------------------------------------- helpers
def _engine(hub: Any) -> Any:
    """The engine of a runtime hub or ``LocalHub`` (or ``hub`` itself, an engine)."""
    return getattr(hub, "engine", hub)


def next_fire(cron: str, tz: str, after: datetime) -> datetime | None:
    """The first fire time strictly after ``after``, naive UTC; None if it never fires."""
    upcoming = next(fire_times(cron, tz, after, limit=1), None)
    return _naive(upcoming) if upcoming is not None else None


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _naive(value: datetime) -> datetime:
    return _aware(value).replace(tzinfo=None)


def _iso(value: datetime | None, tz: str | None = None) -> str | None:
    """``value`` as ISO 8601: UTC with ``Z``, or in the zone ``tz`` with its offset."""
    if value is None:
        return None
    if tz is not None:
        return _aware(value).astimezone(ZoneInfo(tz)).isoformat()
    return iso(_naive(value))


def _local(value: datetime | None, tz: str) -> str | None:
    return _iso(value, tz) if value is not None else None


def _short(text: str, limit: int = 300) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."
