"""Fire times of cron schedules, computed in the schedule's own time zone.

Pure functions, no database: the scheduler asks :func:`due` on every tick
which fire times to start runs for, stores one row per ``(schedule_id,
fire_time)`` (so a second scheduler computing the same times is harmless),
and asks :func:`overlap_action` what to do when earlier runs are still
active. :func:`fire_times` lists upcoming fires, e.g. for the web pages.

Cron expressions
----------------
Five fields, ``minute hour day-of-month month day-of-week``, as in Vixie
cron (a day matches when day-of-month OR day-of-week matches, if both are
restricted), plus the aliases ``@hourly @daily @midnight @weekly @monthly
@yearly @annually``. An optional sixth field holds **seconds, last**, as
croniter orders them: ``"* * * * * */10"`` fires every 10 seconds,
``"30 2 * * * 15"`` at 02:30:15. Fields are matched against the wall clock of
the schedule's IANA zone (``tz``); every time returned is an aware UTC
``datetime``, and nothing depends on the time zone of the process.

Daylight saving time (the rule of Vixie cron)
---------------------------------------------
A schedule is *fixed-time* when none of its minute, hour (and seconds)
fields begins with ``*``: ``"30 2 * * *"``, ``"0 9,17 * * MON-FRI"``,
``"0-30/10 1 * * *"``. Otherwise it is a *wildcard* schedule and follows
elapsed time: ``"0 * * * *"``, ``"*/15 8-18 * * *"``, ``"5 * * * *"``.

- **Clocks go forward** (a wall time does not exist). A fixed-time schedule
  whose wall time falls in the gap fires once, at the instant of the jump.
  Example: ``"30 2 * * *"`` in Europe/Berlin on 2025-03-30, when 02:00 CET
  becomes 03:00 CEST, fires at 03:00 CEST (01:00 UTC), then at 02:30 CEST
  the next day. Several skipped wall times fold into that one fire. A
  wildcard schedule has nothing in the gap: ``"0 * * * *"`` fires at 01:00
  CET and 03:00 CEST, one real hour apart.
- **Clocks go back** (a wall time happens twice). A fixed-time schedule
  fires once, at the first occurrence. Example: ``"30 1 * * *"`` in
  America/New_York on 2025-11-02 fires at 01:30 EDT (05:30 UTC) and not at
  01:30 EST. A wildcard schedule fires at both occurrences, so an hourly
  schedule still fires every UTC hour (01:00 EDT = 05:00 UTC, 01:00 EST =
  06:00 UTC, 02:00 EST = 07:00 UTC).

Fire times are unique: a fixed-time fire moved to the jump that coincides
with a regular fire (``"0 2,3 * * *"`` on the spring-forward day) is one fire.
An expression that can never match again (``"0 0 31 2 *"``) has no fire
times: the iteration ends.

Misfires
--------
:func:`due` calls a fire time *on time* when it is less than ``grace``
seconds before ``now`` (the scheduler passes a few ticks; the default,
:data:`DEFAULT_GRACE`, is five of the default one-second ticks). On-time
fires always start a run. Older fire times since the last recorded fire were
*missed* (no scheduler ran, or it stalled); the schedule's ``misfire`` policy
decides, counting only those less than ``catch_up`` seconds before ``now``:

- ``skip``: none of the missed ones;
- ``run_once``: one catch-up run, for the latest missed fire time;
- ``run_all``: one run for each missed fire time.

The first tick of a schedule (no fire recorded yet) starts from ``now``:
only on-time fires, no back-fill. The work of one call is bounded by the
window looked at (``grace``, or ``catch_up`` when catching up), not by how
long the scheduler was down.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Literal
from zoneinfo import ZoneInfo

from croniter import CroniterBadDateError, croniter

MISFIRE = ("skip", "run_once", "run_all")
OVERLAP = ("allow", "forbid", "replace")
DEFAULT_GRACE = 5.0
"""Seconds a fire time may be late and still count as on time."""

OverlapAction = Literal["start", "skip", "replace"]

_ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_HOUR = timedelta(hours=1)
# Hours looked ahead for a fall back: a wall time up to this much before
# ``after`` can still happen again after it. Only pre-1900 changes of the
# zone database (Alaska, 1867) set clocks back further.
_LOOKAHEAD_HOURS = 26


def fire_times(
    cron: str,
    tz: str,
    after: datetime,
    until: datetime | None = None,
    limit: int | None = None,
) -> Iterator[datetime]:
    """Yield the fire times strictly after ``after`` and up to ``until`` (inclusive).

    ``after`` and ``until`` may be in any zone; naive ones are UTC. Times come
    as aware UTC datetimes, ascending, each once, at most ``limit`` of them.
    Without ``until`` and ``limit`` the iteration is endless for any
    expression that keeps matching. Iterating raises ``ValueError`` for a
    bad expression and ``zoneinfo.ZoneInfoNotFoundError`` for an unknown zone.
    """
    start = _utc(after)
    end = None if until is None else _utc(until)
    if limit is not None and limit <= 0:
        return
    count = 0
    last = start
    for instant in _ascending(cron, ZoneInfo(tz), start):
        if instant <= last:
            continue
        if end is not None and instant > end:
            return
        yield instant
        last = instant
        count += 1
        if count == limit:
            return


def due(
    cron: str,
    tz: str,
    last_fire: datetime | None,
    now: datetime,
    misfire: str,
    catch_up: float,
    grace: float = DEFAULT_GRACE,
) -> list[datetime]:
    """The fire times to start runs for at ``now``, ascending (aware UTC).

    ``last_fire`` is the latest fire time recorded for the schedule (``None``
    before the first). See "Misfires" in the module docstring. The scheduler
    records a run for each time returned; one it skips is not recorded and is
    looked at again only while it stays inside the window.
    """
    if misfire not in MISFIRE:
        raise ValueError(f"misfire={misfire!r}; choose one of {', '.join(MISFIRE)}")
    now = _utc(now)
    on_time_after = now - timedelta(seconds=grace)
    catch_up_after = now - timedelta(seconds=catch_up)
    if last_fire is None or misfire == "skip":
        start = on_time_after
    else:
        start = min(on_time_after, catch_up_after)
    if last_fire is not None:
        start = max(start, _utc(last_fire))
    fires = list(fire_times(cron, tz, start, until=now))
    on_time = [f for f in fires if f > on_time_after]
    missed = [f for f in fires if catch_up_after < f <= on_time_after]
    if misfire == "run_once":
        missed = missed[-1:]
    elif misfire == "skip":
        missed = []
    return missed + on_time


def overlap_action(overlap: str, active_runs: int) -> OverlapAction:
    """What to do at a fire time while ``active_runs`` runs of the schedule are active.

    ``start`` a run (nothing active, or ``allow``); ``skip`` this fire time
    (``forbid``); ``replace``: cancel the active runs, then start one.
    """
    if overlap not in OVERLAP:
        raise ValueError(f"overlap={overlap!r}; choose one of {', '.join(OVERLAP)}")
    if active_runs <= 0 or overlap == "allow":
        return "start"
    return "skip" if overlap == "forbid" else "replace"


def is_fixed_time(cron: str) -> bool:
    """True when no minute, hour or seconds field begins with ``*`` (see the DST rule)."""
    fields = _ALIASES.get(cron.strip().lower(), cron).split()
    times = fields[:2] + fields[5:6]
    return not any(field.startswith(("*", "?")) for field in times)


def _ascending(cron: str, zone: ZoneInfo, start: datetime) -> Iterator[datetime]:
    """Fire instants in ascending order, possibly repeated, some not after ``start``.

    First occurrences (and jumps) ascend with the wall clock; second
    occurrences of a repeated wall time (wildcard schedules only) ascend
    among themselves and come after every first occurrence seen before
    them, so a queue merges the two.
    """
    fixed = is_fixed_time(cron)
    repeats: deque[datetime] = deque()
    for wall in _walls(cron, _first_wall(start, zone)):
        first, second = _instants(wall, zone, fixed)
        if first is not None:
            while repeats and repeats[0] < first:
                yield repeats.popleft()
            yield first
        if second is not None:
            repeats.append(second)
    yield from repeats


def _walls(cron: str, after: datetime) -> Iterator[datetime]:
    """Naive wall times matching ``cron``, strictly after the naive ``after``.

    croniter walks a UTC clock here, which has no DST, so it only matches
    fields; the zone is applied by the caller.
    """
    it = croniter(cron, after.replace(tzinfo=UTC))
    while True:
        try:
            match = it.get_next(datetime)
        except CroniterBadDateError:
            return
        yield match.replace(tzinfo=None)


def _first_wall(start: datetime, zone: ZoneInfo) -> datetime:
    """A wall time early enough that no fire after ``start`` has an earlier one."""
    lowest = min(_offset((start + k * _HOUR).astimezone(zone)) for k in range(_LOOKAHEAD_HOURS + 1))
    return (start + lowest).replace(tzinfo=None)


def _instants(
    wall: datetime, zone: ZoneInfo, fixed: bool
) -> tuple[datetime | None, datetime | None]:
    """The UTC instants a matching wall time fires at: (first, second occurrence)."""
    early = _offset(wall.replace(tzinfo=zone))  # offset before a transition
    late = _offset(wall.replace(tzinfo=zone, fold=1))  # offset after it
    first = (wall - early).replace(tzinfo=UTC)
    if early == late:
        return first, None
    if early > late:  # clocks went back: the wall time happens twice
        return first, None if fixed else (wall - late).replace(tzinfo=UTC)
    if not fixed:  # clocks went forward: the wall time never happens
        return None, None
    return _jump(zone, (wall - late).replace(tzinfo=UTC), first), None


def _jump(zone: ZoneInfo, before: datetime, after: datetime) -> datetime:
    """The instant the offset changed, between ``before`` (old offset) and ``after`` (new)."""
    old = _offset(before.astimezone(zone))
    lo, hi = int(before.timestamp()), int(after.timestamp())
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _offset(datetime.fromtimestamp(mid, zone)) == old:
            lo = mid
        else:
            hi = mid
    return datetime.fromtimestamp(hi, UTC)


def _offset(moment: datetime) -> timedelta:
    return moment.utcoffset() or timedelta(0)


def _utc(moment: datetime) -> datetime:
    zone: tzinfo | None = moment.tzinfo
    if zone is None or zone.utcoffset(moment) is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)
