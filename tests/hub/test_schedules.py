"""Schedules in SQL, fired by the scheduler's tick: sync, misfire, overlap, DST, two schedulers.

Every test but the last runs the hub in-process on a frozen clock (SQLite and
PostgreSQL) and reads what SQL holds. The last one runs two real
``hub scheduler`` processes against PostgreSQL and Redis for a minute.
"""

from __future__ import annotations

import os
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update

from hub import Flow, Schedule, schedules, step
from hub import models as m
from hub.errors import FlowDefinitionError
from hub.firetimes import fire_times
from hub.registry import Registry
from hub.scheduler import tick
from hub.schedules import MISSED_ROWS, ScheduleNotFound
from hub.testing import LocalHub
from tests.hub.rows import LocalHubFactory, events, rows

EVERY_10S = "* * * * * */10"
T0 = datetime(2025, 1, 6, 12, 0, 0, 500000)  # naive UTC, half a second past a fire time


@step(retries=0)
def record(data: dict[str, Any]) -> dict[str, Any]:
    return data


def scheduled(*triggers: Schedule, name: str = "report") -> Flow:
    return Flow(name, [record], triggers=list(triggers))


def at(hub: LocalHub, moment: datetime) -> LocalHub:
    """Freeze ``hub``'s clock at the naive UTC ``moment``."""
    hub.freeze()
    hub.now = moment
    return hub


def started(
    local_hub: LocalHubFactory, *triggers: Schedule, now: datetime = T0, name: str = "report"
) -> LocalHub:
    """A hub on a frozen clock whose schedule rows were synced at ``now``."""
    hub = at(local_hub([scheduled(*triggers, name=name)]), now)
    schedules.sync(hub)
    return hub


def row(hub: LocalHub, key: str = "report:1") -> m.ScheduleRow:
    (found,) = rows(hub, m.ScheduleRow, key=key)
    return found


def fires(hub: LocalHub, key: str = "report:1") -> list[m.ScheduleFire]:
    found = rows(hub, m.ScheduleFire, schedule_id=row(hub, key).id)
    return sorted(found, key=lambda f: f.fire_time)


def runs(hub: LocalHub, key: str = "report:1") -> list[m.Run]:
    found = rows(hub, m.Run, trigger=f"schedule:{key}")
    return sorted(found, key=lambda r: (r.created_at, r.id))


def fire(hub: LocalHub, seconds: float = 0, **kw: Any) -> dict[str, int]:
    hub.advance(seconds)
    return schedules.fire_due(hub, hub.now, **kw)


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    """A naive UTC time, as rows store it."""
    return datetime(year, month, day, hour, minute, second)


# ------------------------------------------------------------------------ sync
def test_sync_stores_each_declared_schedule_with_its_first_fire_time(
    local_hub: LocalHubFactory,
) -> None:
    hub = started(
        local_hub,
        Schedule("0 2 * * *", tz="Europe/Berlin", name="nightly", overlap="forbid"),
        Schedule(EVERY_10S),
        Schedule("*/15 8-18 * * MON-FRI", tz="Europe/Berlin", misfire="skip"),
    )

    stored = {r.key: r for r in rows(hub, m.ScheduleRow)}

    assert set(stored) == {"report:nightly", "report:1", "report:2"}
    nightly = stored["report:nightly"]
    assert (nightly.flow, nightly.name, nightly.cron, nightly.tz, nightly.overlap) == (
        "report",
        "nightly",
        "0 2 * * *",
        "Europe/Berlin",
        "forbid",
    )
    assert nightly.next_fire_at == utc(2025, 1, 7, 1)  # 02:00 CET
    assert stored["report:1"].next_fire_at == utc(2025, 1, 6, 12, 0, 10)
    assert stored["report:2"].next_fire_at == utc(2025, 1, 6, 12, 15)  # 13:15 CET
    assert all(r.declared and not r.paused and r.last_fire_at is None for r in stored.values())
    assert schedules.sync(hub) == {}  # nothing changed: nothing written


def test_a_changed_declaration_updates_its_row_and_a_dropped_one_is_kept_undeclared(
    local_hub: LocalHubFactory,
) -> None:
    hub = started(local_hub, Schedule(EVERY_10S), Schedule("0 * * * *", name="hourly"))
    fire(hub, 10)
    before = row(hub)

    changed = scheduled(Schedule("* * * * * */30", misfire="skip"))
    hub.registry = hub.engine.registry = Registry([changed])
    assert schedules.sync(hub) == {"updated": 1, "undeclared": 1}

    after = row(hub)
    assert after.id == before.id and after.last_fire_at == before.last_fire_at
    assert (after.cron, after.misfire) == ("* * * * * */30", "skip")
    assert after.next_fire_at == utc(2025, 1, 6, 12, 0, 30)
    assert len(fires(hub)) == 1  # its history stays
    assert not row(hub, "report:hourly").declared
    hub.now = utc(2025, 1, 6, 13, 0, 1)
    fire(hub)
    assert fires(hub, "report:hourly") == []  # undeclared: never fired

    hub.registry = hub.engine.registry = Registry(
        [scheduled(Schedule("* * * * * */30"), Schedule("0 * * * *", name="hourly"))]
    )
    assert schedules.sync(hub) == {"updated": 2}
    assert row(hub, "report:hourly").declared
    assert row(hub, "report:hourly").next_fire_at == utc(2025, 1, 6, 14)


def test_two_schedules_with_one_name_or_a_bad_name_are_refused() -> None:
    twice = scheduled(Schedule(EVERY_10S, name="a"), Schedule("0 * * * *", name="a"))
    with pytest.raises(FlowDefinitionError, match="two schedules named 'a'"):
        schedules.declarations(Registry([twice]))
    with pytest.raises(FlowDefinitionError, match="schedule name 'a b'"):
        schedules.declarations(Registry([scheduled(Schedule(EVERY_10S, name="a b"))]))


# ---------------------------------------------------------------------- firing
def test_a_fire_on_time_starts_one_run_with_the_fire_time_as_input(
    local_hub: LocalHubFactory,
) -> None:
    hub = started(local_hub, Schedule(EVERY_10S, tz="Europe/Berlin"))

    assert fire(hub, 9) == {}  # 12:00:09.5, nothing due yet
    assert fire(hub, 0.7) == {"started": 1}  # 12:00:10.2: the fire at :10 has come
    assert fire(hub) == {}  # the same tick again: nothing more

    (run,) = runs(hub)
    (recorded,) = fires(hub)
    assert run.input == {"fire_time": "2025-01-06T13:00:10+01:00"}
    assert (recorded.fire_time, recorded.outcome, recorded.run_id) == (
        utc(2025, 1, 6, 12, 0, 10),
        "started",
        run.id,
    )
    assert recorded.reason is None
    assert row(hub).last_fire_at == utc(2025, 1, 6, 12, 0, 10)
    assert row(hub).next_fire_at == utc(2025, 1, 6, 12, 0, 20)
    hub.drain()  # the first step was published after the commit
    assert hub.run(run.id)["status"] == "succeeded"


def test_the_declared_input_or_a_function_of_the_fire_time_is_the_runs_input(
    local_hub: LocalHubFactory,
) -> None:
    hub = started(
        local_hub,
        Schedule(EVERY_10S, name="fixed", input={"batch": "daily"}),
        Schedule(EVERY_10S, tz="Asia/Tokyo", name="dated", input=lambda t: {"day": f"{t:%F %H}"}),
        Schedule(EVERY_10S, name="broken", input=lambda t: 1 / 0),
        Schedule(EVERY_10S, name="refused", input=[1, 2]),
    )

    assert fire(hub, 10) == {"started": 2, "failed": 2}

    assert [r.input for r in runs(hub, "report:fixed")] == [{"batch": "daily"}]
    assert [r.input for r in runs(hub, "report:dated")] == [{"day": "2025-01-06 21"}]
    (broken,) = fires(hub, "report:broken")
    assert broken.outcome == "failed" and broken.run_id is None
    assert "input function raised ZeroDivisionError" in (broken.reason or "")
    (refused,) = fires(hub, "report:refused")
    assert refused.outcome == "failed" and "dict" in (refused.reason or "")
    assert row(hub, "report:broken").next_fire_at == utc(2025, 1, 6, 12, 0, 20)  # it goes on


# ------------------------------------------------ misfire (RELIABILITY 19)
@pytest.mark.parametrize(
    ("misfire", "catch_up", "started_for", "missed"),
    [
        ("run_once", 3600, [40], [20, 30]),
        ("skip", 3600, [], [20, 30, 40]),
        ("run_all", 3600, [20, 30, 40], []),
        ("run_all", 25, [30, 40], [20]),  # the window: only the last 25 s are caught up
    ],
)
def test_a_scheduler_down_across_three_fire_times_follows_the_misfire_policy(
    local_hub: LocalHubFactory,
    misfire: str,
    catch_up: float,
    started_for: list[int],
    missed: list[int],
) -> None:
    hub = started(local_hub, Schedule(EVERY_10S, misfire=misfire, catch_up=catch_up))
    assert fire(hub, 10) == {"started": 1}  # 12:00:10.5

    # no scheduler from here until 12:00:47.5: :20, :30 and :40 pass more than 5 s ago
    counts = fire(hub, 37)

    caught = [f for f in fires(hub) if f.outcome == "started"][1:]
    assert [f.fire_time.second for f in caught] == started_for
    assert [r.input["fire_time"][-11:-6] for r in runs(hub)[1:]] == [f"00:{s}" for s in started_for]
    assert all("catch-up of a missed fire time" in (f.reason or "") for f in caught)
    lost = [f for f in fires(hub) if f.outcome == "missed"]
    assert [f.fire_time.second for f in lost] == missed
    assert all((f.reason or "").startswith("not started") and f.run_id is None for f in lost)
    expected = {"started": len(started_for), "missed": len(missed)}
    assert counts == {k: v for k, v in expected.items() if v}
    assert fire(hub, 3) == {"started": 1}  # 12:00:50.5: on time again
    assert row(hub).next_fire_at == utc(2025, 1, 6, 12, 1)


def test_the_reasons_say_why_a_fire_time_was_not_started(local_hub: LocalHubFactory) -> None:
    hub = started(local_hub, Schedule(EVERY_10S, misfire="run_once", catch_up=25))
    fire(hub, 10)
    fire(hub, 37)
    by_second = {f.fire_time.second: f.reason for f in fires(hub)}
    assert by_second[20] == (
        "not started: no scheduler ticked within the catch-up window of 25 s (misfire=run_once)"
    )
    assert by_second[30] == (
        "not started: misfire=run_once starts one catch-up run, for 2025-01-06T12:00:40+00:00"
    )


def test_a_long_outage_writes_a_bounded_number_of_missed_rows(local_hub: LocalHubFactory) -> None:
    hub = started(local_hub, Schedule(EVERY_10S, misfire="skip"))
    fire(hub, 10)

    fire(hub, 300)  # five minutes down: 29 fire times missed, the 30th on time
    missed = [f for f in fires(hub) if f.outcome == "missed"]
    assert len(missed) == MISSED_ROWS
    summary = missed[0].reason or ""
    assert summary.startswith(f"{29 - (MISSED_ROWS - 1)} fire times from 2025-01-06T12:00:20")
    assert "misfire=skip" in summary

    fire(hub, 86400)  # a day down: the misses are counted in one row
    missed = [f for f in fires(hub) if f.outcome == "missed"]
    assert len(missed) == MISSED_ROWS + 1
    assert (missed[-1].fire_time, missed[-1].reason) == (
        utc(2025, 1, 6, 12, 5, 20),
        "more than 1000 fire times from 2025-01-06T12:05:20+00:00 on, each not started: "
        "no scheduler ticked within 5 s of it (misfire=skip)",
    )


# ------------------------------------------------- overlap (RELIABILITY 20)
def finish_runs_older_than(hub: LocalHub, seconds: float) -> None:
    """Execute the steps of runs that have been going for ``seconds``: a flow that long."""
    for run in runs(hub):
        if run.status in m.RUN_ACTIVE and hub.now - run.created_at >= timedelta(seconds=seconds):
            for step_row in rows(hub, m.Step, run_id=run.id, status=m.STEP_READY):
                hub.engine.execute(step_row.id)


@pytest.mark.parametrize(("overlap", "most"), [("forbid", 1), ("allow", 3)])
def test_a_25_s_flow_on_a_10_s_schedule_never_runs_twice_at_once_with_forbid(
    local_hub: LocalHubFactory, overlap: str, most: int
) -> None:
    hub = started(local_hub, Schedule(EVERY_10S, overlap=overlap))
    active = []
    for _ in range(100):  # a tick a second for 100 s
        hub.advance(1)
        finish_runs_older_than(hub, 25)
        tick(hub)
        active.append(sum(r.status in m.RUN_ACTIVE for r in runs(hub)))

    assert max(active) == most
    if overlap == "forbid":
        outcomes = [(f.fire_time.second % 60, f.outcome) for f in fires(hub)]
        assert outcomes[:7] == [
            (10, "started"),
            (20, "skipped"),
            (30, "skipped"),
            (40, "started"),
            (50, "skipped"),
            (0, "skipped"),
            (10, "started"),
        ]
        first = runs(hub)[0]
        assert fires(hub)[1].reason == f"run {first.id} still active (overlap=forbid)"
        assert len(runs(hub)) == 4


def test_replace_cancels_the_active_run_and_starts_a_new_one(local_hub: LocalHubFactory) -> None:
    hub = started(local_hub, Schedule(EVERY_10S, overlap="replace"))
    fire(hub, 10)
    (old,) = runs(hub)

    assert fire(hub, 10) == {"replaced": 1}

    old_now, new = runs(hub)
    assert (old_now.id, old_now.status, new.status) == (old.id, "cancelled", "queued")
    assert old_now.error == ("replaced by the run of schedule report:1 at 2025-01-06T12:00:20.000Z")
    (cancelled,) = events(hub, old.id, "run.cancelled")
    assert cancelled.actor == "scheduler"
    replaced = fires(hub)[1]
    assert (replaced.outcome, replaced.run_id) == ("replaced", new.id)
    assert replaced.reason == f"cancelled run {old.id}"
    hub.drain()
    assert [hub.run(r.id)["status"] for r in runs(hub)] == ["cancelled", "succeeded"]
    assert fire(hub, 10) == {"started": 1}  # nothing active any more: a plain start


# ------------------------------------------------------- DST (RELIABILITY 21, 22)
@pytest.fixture
def process_tz() -> Iterator[Callable[[str], None]]:
    saved = os.environ.get("TZ")

    def use(zone: str) -> None:
        os.environ["TZ"] = zone
        time.tzset()
        assert time.strftime("%Z") != "UTC"

    yield use
    if saved is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = saved
    time.tzset()


def tick_until(hub: LocalHub, end: datetime, every: float = 60) -> None:
    """Tick as a scheduler with HUB_TICK_SECONDS=every does (grace: five ticks)."""
    syncer = schedules.Syncer(hub)
    while hub.now < end:
        hub.advance(every)
        tick(hub, syncer, grace=5 * every)


def test_spring_forward_fires_once_right_after_the_jump(
    local_hub: LocalHubFactory, process_tz: Callable[[str], None]
) -> None:
    process_tz("Asia/Kathmandu")
    hub = at(
        local_hub([scheduled(Schedule("30 2 * * *", tz="Europe/Berlin"))]),
        utc(2025, 3, 29, 22, 0, 20),
    )

    tick_until(hub, utc(2025, 3, 30, 4))

    (run,) = runs(hub)
    (recorded,) = fires(hub)
    assert recorded.fire_time == utc(2025, 3, 30, 1)  # 02:00 CET became 03:00 CEST
    assert utc(2025, 3, 30, 1) <= run.created_at < utc(2025, 3, 30, 1, 1)  # the first tick after
    assert run.input == {"fire_time": "2025-03-30T03:00:00+02:00"}
    assert recorded.reason is None  # on time, not a catch-up
    assert row(hub).next_fire_at == utc(2025, 3, 31, 0, 30)  # 02:30 CEST the next day


def test_fall_back_fires_a_daily_time_once_and_an_hourly_one_every_utc_hour(
    local_hub: LocalHubFactory, process_tz: Callable[[str], None]
) -> None:
    process_tz("Pacific/Chatham")
    flow = scheduled(
        Schedule("30 1 * * *", tz="America/New_York", name="daily"),
        Schedule("0 * * * *", tz="America/New_York", name="hourly"),
    )
    hub = at(local_hub([flow]), utc(2025, 11, 2, 3, 0, 20))

    tick_until(hub, utc(2025, 11, 2, 8, 30))

    assert [f.fire_time for f in fires(hub, "report:daily")] == [utc(2025, 11, 2, 5, 30)]
    assert [r.input["fire_time"] for r in runs(hub, "report:daily")] == [
        "2025-11-02T01:30:00-04:00"  # the first 01:30, not the second one (EST)
    ]
    hourly = fires(hub, "report:hourly")
    assert [f.fire_time for f in hourly] == [utc(2025, 11, 2, h) for h in (4, 5, 6, 7, 8)]
    assert all(f.outcome == "started" and f.reason is None for f in hourly)
    assert [r.input["fire_time"] for r in runs(hub, "report:hourly")] == [
        "2025-11-02T00:00:00-04:00",
        "2025-11-02T01:00:00-04:00",
        "2025-11-02T01:00:00-05:00",
        "2025-11-02T02:00:00-05:00",
        "2025-11-02T03:00:00-05:00",
    ]


# ---------------------------------------------------------------- two schedulers
def test_a_fire_computed_twice_starts_one_run(local_hub: LocalHubFactory) -> None:
    hub = started(local_hub, Schedule(EVERY_10S))
    fire(hub, 10)
    fired = row(hub).next_fire_at
    # a scheduler that read the row before the first one committed computes the same fire
    with hub.store.transaction() as s:
        s.execute(
            update(m.ScheduleRow)
            .where(m.ScheduleRow.key == "report:1")
            .values(next_fire_at=utc(2025, 1, 6, 12, 0, 10))
        )

    assert fire(hub) == {"taken": 1}

    assert len(runs(hub)) == 1 and len(fires(hub)) == 1
    assert row(hub).next_fire_at == fired


def test_two_schedulers_at_once_on_postgresql_start_one_run_per_fire(pg_url: str) -> None:
    flow = scheduled(Schedule(EVERY_10S), Schedule(EVERY_10S, name="b", overlap="forbid"))
    hubs = [at(LocalHub([flow], database_url=pg_url), T0) for _ in range(2)]
    try:
        schedules.sync(hubs[0])
        assert schedules.sync(hubs[1]) == {}
        totals: list[dict[str, int]] = []
        for n in range(1, 6):
            gate = threading.Barrier(2)
            done: list[dict[str, int]] = []

            def one(
                hub: LocalHub, gate: threading.Barrier, done: list[dict[str, int]], n: int
            ) -> None:
                gate.wait()
                done.append(schedules.fire_due(hub, T0 + timedelta(seconds=10 * n)))

            threads = [threading.Thread(target=one, args=(h, gate, done, n)) for h in hubs]
            for t in threads:
                t.start()
            for t in threads:
                t.join(30)
            assert len(done) == 2
            totals.extend(done)

        with hubs[0].store.read() as s:
            per_fire = s.execute(
                select(m.ScheduleFire.schedule_id, m.ScheduleFire.fire_time, func.count()).group_by(
                    m.ScheduleFire.schedule_id, m.ScheduleFire.fire_time
                )
            ).all()
            run_count = s.scalar(select(func.count()).select_from(m.Run))
        assert len(per_fire) == 10 and all(c == 1 for *_, c in per_fire)
        assert sum(t.get("started", 0) for t in totals) == 5 + 1  # b: forbid after the first
        assert sum(t.get("skipped", 0) for t in totals) == 4
        assert run_count == 6
    finally:
        for h in hubs:
            h.close()


# ------------------------------------------------------------- pause, resume
def test_pause_and_resume_are_audited_and_resuming_catches_nothing_up(
    local_hub: LocalHubFactory,
) -> None:
    hub = started(local_hub, Schedule(EVERY_10S, misfire="run_all", catch_up=7200))
    fire(hub, 10)

    assert schedules.pause(hub, "report:1", by="olga") is True
    assert schedules.pause(hub, "report:1", by="olga") is False  # already paused
    paused = row(hub)
    assert (paused.paused, paused.paused_by, paused.paused_at) == (True, "olga", hub.now)
    assert fire(hub, 3600) == {}  # an hour paused: nothing starts, nothing is recorded

    assert schedules.resume(hub, "report:1", by="olga") is True
    assert row(hub).next_fire_at == utc(2025, 1, 6, 13, 0, 20)
    assert fire(hub) == {}
    assert fire(hub, 10) == {"started": 1}  # the next fire after the resume, no burst
    assert len(runs(hub)) == 2 and len(fires(hub)) == 2

    trail = sorted(rows(hub, m.AuditEntry, object_kind="schedule"), key=lambda a: a.id)
    assert [(a.action, a.actor, a.object_id) for a in trail] == [
        ("schedule.pause", "olga", paused.id),
        ("schedule.resume", "olga", paused.id),
    ]
    assert trail[0].before["paused"] is False and trail[0].after["paused"] is True
    assert trail[1].after == {
        "key": "report:1",
        "paused": False,
        "next_fire_at": "2025-01-06T13:00:20.000Z",
    }
    with pytest.raises(ScheduleNotFound):
        schedules.pause(hub, "report:nope", by="olga")


# ------------------------------------------------------------------- describe
def test_describe_shows_the_next_ten_fires_in_the_zone_and_the_history(
    local_hub: LocalHubFactory,
) -> None:
    hub = started(
        local_hub,
        Schedule("30 2 * * *", tz="Europe/Berlin", misfire="skip"),
        now=utc(2025, 3, 27, 12),
    )
    hub.now = utc(2025, 3, 28, 1, 30, 1)
    fire(hub)  # on time: 02:30 CET
    hub.now = utc(2025, 3, 30, 12)
    fire(hub)  # the scheduler was down at the jump: skip records it as missed

    view = schedules.describe(hub, "report:1")

    assert [f["wall"] for f in view["next_fires"][:3]] == [
        "2025-03-31 02:30:00 CEST",
        "2025-04-01 02:30:00 CEST",
        "2025-04-02 02:30:00 CEST",
    ]
    assert len(view["next_fires"]) == 10
    assert view["next_fires"][0]["utc"] == "2025-03-31T00:30:00.000Z"
    assert [(f["wall"], f["outcome"]) for f in view["fires"]] == [
        ("2025-03-30 03:00:00 CEST", "missed"),
        ("2025-03-29 02:30:00 CET", "missed"),
        ("2025-03-28 02:30:00 CET", "started"),
    ]
    assert view["fires"][2]["run_status"] == "queued"
    assert view["fires"][2]["run_id"] == runs(hub)[0].id
    assert [f["wall"] for f in view["missed"]] == [f["wall"] for f in view["fires"][:2]]
    assert view["active_runs"] == [runs(hub)[0].id]
    assert view["last_fire_local"] == "2025-03-28T02:30:00+01:00"
    assert view["next_fire_at"] == "2025-03-31T00:30:00.000Z"
    listed = schedules.list_schedules(hub)
    assert [(s["key"], s["last_outcome"]) for s in listed] == [("report:1", "missed")]


# ------------------------------------------- two real schedulers (RELIABILITY 18)
FLOWS_MODULE = """
from hub import Flow, Schedule, step


@step(retries=0)
def note(data: dict) -> dict:
    return data


every_ten = Flow("every_ten", [note], triggers=[Schedule("* * * * * */10")])
"""


@pytest.mark.slow
@pytest.mark.services
def test_two_scheduler_processes_for_a_minute_start_one_run_per_fire(
    tmp_path: Path, pg_url: str, redis_url: str
) -> None:
    from tests.support.harness import own_redis_db
    from tests.support.procs import HubProcesses, clean_env

    (tmp_path / "schedule_flows.py").write_text(textwrap.dedent(FLOWS_MODULE))
    env = clean_env(
        {
            "HUB_HOME": str(tmp_path / "home"),
            "HUB_FLOWS": "schedule_flows",
            "HUB_DATABASE_URL": pg_url,
            "HUB_BROKER_URL": own_redis_db(redis_url),
            "HUB_TICK_SECONDS": "0.2",
        }
    )
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), env["PYTHONPATH"]])
    procs = HubProcesses(tmp_path / "logs", env)
    try:
        first, second = procs.scheduler(), procs.scheduler()
        since = datetime.now(UTC).replace(tzinfo=None)
        time.sleep(62)
        assert first.running() and second.running(), procs.logs()
        first.terminate()
        second.terminate()
    finally:
        procs.close()

    hub = LocalHub(Registry(), database_url=pg_url)
    try:
        fired = sorted(
            (f for f in rows(hub, m.ScheduleFire) if f.fire_time > since), key=lambda f: f.fire_time
        )
        window = [f for f in fired if f.fire_time <= since + timedelta(seconds=60)]
        expected = list(fire_times(EVERY_10S, "UTC", since, until=since + timedelta(seconds=60)))
        assert [f.fire_time for f in window] == [e.replace(tzinfo=None) for e in expected], (
            procs.logs()
        )
        assert len(window) == 6  # a minute of a 10 s schedule, not 12
        assert all(f.outcome == "started" and f.run_id for f in window)
        started_runs = rows(hub, m.Run, trigger="schedule:every_ten:1")
        all_fires = rows(hub, m.ScheduleFire)
        assert len(started_runs) == len(all_fires)  # one run per fire, from either scheduler
        assert len({f.run_id for f in all_fires}) == len(all_fires)
    finally:
        hub.close()


def test_the_scheduler_refuses_to_start_with_two_schedules_of_one_name(
    local_hub: LocalHubFactory,
) -> None:
    from types import SimpleNamespace

    from hub.scheduler import serve

    twice = scheduled(Schedule(EVERY_10S, name="a"), Schedule("0 * * * *", name="a"))
    hub = local_hub([twice])
    process = SimpleNamespace(engine=hub.engine, settings=hub.engine.settings)
    with pytest.raises(SystemExit, match="error: flow 'report' declares two schedules named 'a'"):
        serve(process, once=True, stop=threading.Event())
    assert rows(hub, m.ScheduleRow) == []
