"""Fire times: computed in the schedule's zone, DST as Vixie cron, independent of the process zone."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest

from hub.firetimes import DEFAULT_GRACE, due, fire_times, is_fixed_time, overlap_action

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
EVERY_10S = "* * * * * */10"


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def fires(
    cron: str, tz: str, after: datetime, until: datetime | None = None, limit: int | None = None
) -> list[datetime]:
    return list(fire_times(cron, tz, after, until=until, limit=limit))


def gaps(times: list[datetime]) -> set[timedelta]:
    return {b - a for a, b in pairwise(times)}


def local(times: list[datetime], zone: ZoneInfo) -> list[str]:
    return [t.astimezone(zone).strftime("%m-%d %H:%M %Z") for t in times]


# --- fixed-time schedules across DST ----------------------------------------------------------


def test_a_fixed_time_skipped_by_spring_forward_fires_once_right_after_the_jump() -> None:
    got = fires("30 2 * * *", "Europe/Berlin", utc(2025, 3, 29), limit=3)

    assert got == [utc(2025, 3, 29, 1, 30), utc(2025, 3, 30, 1, 0), utc(2025, 3, 31, 0, 30)]
    assert local(got, BERLIN) == ["03-29 02:30 CET", "03-30 03:00 CEST", "03-31 02:30 CEST"]


def test_a_fixed_time_repeated_by_fall_back_fires_once_at_its_first_occurrence() -> None:
    got = fires("30 1 * * *", "America/New_York", utc(2025, 11, 1), limit=3)

    assert got == [utc(2025, 11, 1, 5, 30), utc(2025, 11, 2, 5, 30), utc(2025, 11, 3, 6, 30)]
    assert local(got, NEW_YORK) == ["11-01 01:30 EDT", "11-02 01:30 EDT", "11-03 01:30 EST"]


def test_a_fixed_time_already_fired_in_the_first_occurrence_does_not_fire_in_the_second() -> None:
    after = utc(2025, 11, 2, 6, 10)  # 01:10 EST, the repeated hour

    assert fires("30 1 * * *", "America/New_York", after, limit=1) == [utc(2025, 11, 3, 6, 30)]


@pytest.mark.parametrize("year", [2024, 2025, 2026])
@pytest.mark.parametrize(
    ("tz", "cron"), [("Europe/Berlin", "30 2 * * *"), ("America/New_York", "30 1 * * *")]
)
def test_a_daily_fixed_time_fires_once_on_every_day_of_the_year(
    tz: str, cron: str, year: int
) -> None:
    zone = ZoneInfo(tz)
    start = datetime(year, 1, 1, tzinfo=zone)
    end = datetime(year + 1, 1, 1, tzinfo=zone)

    got = fires(cron, tz, start, until=end)

    days = (date(year + 1, 1, 1) - date(year, 1, 1)).days
    assert len(got) == days
    assert len({t.astimezone(zone).date() for t in got}) == days
    assert got == sorted(set(got))


def test_skipped_wall_times_of_a_fixed_schedule_fold_into_one_fire_at_the_jump() -> None:
    got = fires("0,15,30,45 2 * * *", "Europe/Berlin", utc(2025, 3, 29, 12), limit=2)
    assert got == [utc(2025, 3, 30, 1, 0), utc(2025, 3, 31, 0, 0)]

    moved_onto_regular = fires("0 2,3 * * *", "Europe/Berlin", utc(2025, 3, 29, 12), limit=3)
    assert moved_onto_regular == [
        utc(2025, 3, 30, 1, 0),
        utc(2025, 3, 31, 0, 0),
        utc(2025, 3, 31, 1, 0),
    ]


# --- wildcard schedules follow elapsed time ---------------------------------------------------


def test_an_hourly_schedule_fires_every_utc_hour_across_fall_back() -> None:
    got = fires("0 * * * *", "America/New_York", utc(2025, 11, 2, 3), until=utc(2025, 11, 2, 9))

    assert got == [utc(2025, 11, 2, h) for h in range(4, 10)]
    assert local(got, NEW_YORK) == [
        "11-02 00:00 EDT",
        "11-02 01:00 EDT",
        "11-02 01:00 EST",
        "11-02 02:00 EST",
        "11-02 03:00 EST",
        "11-02 04:00 EST",
    ]


def test_an_hourly_schedule_starting_inside_the_repeated_hour_fires_at_its_second_occurrence() -> (
    None
):
    after = utc(2025, 11, 2, 5, 45)  # 01:45 EDT; 01:00 EST comes next

    assert fires("0 * * * *", "America/New_York", after, limit=2) == [
        utc(2025, 11, 2, 6),
        utc(2025, 11, 2, 7),
    ]


def test_an_hourly_schedule_across_spring_forward_neither_invents_nor_repeats_an_hour() -> None:
    got = fires("0 * * * *", "America/New_York", utc(2025, 3, 9, 4), until=utc(2025, 3, 9, 9))

    assert got == [utc(2025, 3, 9, h) for h in range(5, 10)]
    assert local(got, NEW_YORK) == [
        "03-09 00:00 EST",
        "03-09 01:00 EST",
        "03-09 03:00 EDT",
        "03-09 04:00 EDT",
        "03-09 05:00 EDT",
    ]


def test_every_fifteen_minutes_is_every_fifteen_real_minutes_across_both_transitions() -> None:
    back = fires("*/15 * * * *", "America/New_York", utc(2025, 11, 2, 4), until=utc(2025, 11, 2, 8))
    forward = fires("*/15 * * * *", "Europe/Berlin", utc(2025, 3, 30, 0), until=utc(2025, 3, 30, 2))

    assert len(back) == 16 and gaps(back) == {timedelta(minutes=15)}
    assert len(forward) == 8 and gaps(forward) == {timedelta(minutes=15)}
    assert not [t for t in forward if t.astimezone(BERLIN).hour == 2]
    assert [t.astimezone(BERLIN).strftime("%H:%M") for t in forward[2:4]] == ["01:45", "03:00"]


def test_a_wildcard_minute_with_a_fixed_hour_runs_in_both_occurrences_of_the_hour() -> None:
    got = fires("*/30 1 * * *", "America/New_York", utc(2025, 11, 2), limit=5)

    assert got == [
        utc(2025, 11, 2, 5, 0),
        utc(2025, 11, 2, 5, 30),
        utc(2025, 11, 2, 6, 0),
        utc(2025, 11, 2, 6, 30),
        utc(2025, 11, 3, 6, 0),
    ]


def test_a_wildcard_hour_inside_the_gap_has_no_fire_that_day() -> None:
    got = fires("*/20 2 * * *", "Europe/Berlin", utc(2025, 3, 29, 12), limit=1)

    assert got == [utc(2025, 3, 31, 0, 0)]


@pytest.mark.parametrize(
    ("tz", "cron", "interval"),
    [
        ("Europe/Berlin", "0 * * * *", timedelta(hours=1)),
        ("America/New_York", "0 * * * *", timedelta(hours=1)),
        ("Pacific/Chatham", "0 * * * *", timedelta(hours=1)),  # UTC+12:45 / +13:45
        ("America/New_York", "*/30 * * * *", timedelta(minutes=30)),
        ("Australia/Lord_Howe", "*/30 * * * *", timedelta(minutes=30)),  # DST shifts by 30 minutes
    ],
)
def test_wildcard_schedules_keep_their_real_interval_for_a_whole_year(
    tz: str, cron: str, interval: timedelta
) -> None:
    got = fires(cron, tz, utc(2025, 1, 1), until=utc(2026, 1, 1))

    assert len(got) == timedelta(days=365) // interval
    assert gaps(got) == {interval}


# --- calendar fields, seconds, edges ----------------------------------------------------------


def test_weekday_and_month_fields_are_matched_in_the_schedule_zone() -> None:
    got = fires("0 9 * 1-3 MON-FRI", "Europe/Berlin", utc(2025, 3, 27), limit=4)

    assert local(got, BERLIN) == [
        "03-27 09:00 CET",
        "03-28 09:00 CET",
        "03-31 09:00 CEST",
        "01-01 09:00 CET",
    ]
    assert got[-1] == utc(2026, 1, 1, 8)


def test_day_of_month_or_day_of_week_as_in_vixie_cron() -> None:
    got = fires("0 0 13 * FRI", "UTC", utc(2025, 6, 1), limit=4)

    assert [t.date() for t in got] == [
        date(2025, 6, 6),
        date(2025, 6, 13),
        date(2025, 6, 20),
        date(2025, 6, 27),
    ]


def test_a_sixth_field_holds_seconds() -> None:
    got = fires(EVERY_10S, "Europe/Berlin", utc(2025, 1, 1), until=utc(2025, 1, 1, 0, 1))

    assert got == [utc(2025, 1, 1, 0, 0, s) for s in range(10, 60, 10)] + [utc(2025, 1, 1, 0, 1)]
    assert fires("30 2 * * * 15", "Europe/Berlin", utc(2025, 3, 29, 12), limit=2) == [
        utc(2025, 3, 30, 1, 0, 0),
        utc(2025, 3, 31, 0, 30, 15),
    ]


def test_an_alias_is_classified_like_its_expansion() -> None:
    assert fires("@hourly", "America/New_York", utc(2025, 11, 2, 5), limit=2) == [
        utc(2025, 11, 2, 6),
        utc(2025, 11, 2, 7),
    ]
    assert fires("@daily", "Europe/Berlin", utc(2025, 3, 29), limit=1) == [utc(2025, 3, 29, 23)]


@pytest.mark.parametrize(
    ("cron", "fixed"),
    [
        ("30 2 * * *", True),
        ("0 9,17 * * MON-FRI", True),
        ("0-30/10 1 * * *", True),
        ("30 2 * * * 15", True),
        ("@daily", True),
        ("0 * * * *", False),
        ("*/15 8-18 * * *", False),
        ("5 */2 * * *", False),
        ("30 2 * * * */10", False),
        ("@hourly", False),
    ],
)
def test_a_schedule_is_fixed_time_when_no_minute_hour_or_second_field_starts_with_a_star(
    cron: str, fixed: bool
) -> None:
    assert is_fixed_time(cron) is fixed


def test_fire_times_are_strictly_after_and_up_to_until_inclusive() -> None:
    at_nine = utc(2025, 5, 5, 9)

    assert fires("0 * * * *", "UTC", at_nine, limit=1) == [utc(2025, 5, 5, 10)]
    assert fires("0 * * * *", "UTC", at_nine, until=utc(2025, 5, 5, 11)) == [
        utc(2025, 5, 5, 10),
        utc(2025, 5, 5, 11),
    ]
    assert fires("0 * * * *", "UTC", at_nine, until=at_nine) == []
    assert fires("0 * * * *", "UTC", at_nine, limit=0) == []


def test_naive_times_are_utc_and_aware_times_may_be_in_any_zone() -> None:
    naive = fires("30 2 * * *", "Europe/Berlin", datetime(2025, 3, 29), limit=2)
    tokyo = fires(
        "30 2 * * *",
        "Europe/Berlin",
        datetime(2025, 3, 29, 9, tzinfo=ZoneInfo("Asia/Tokyo")),
        limit=2,
    )

    assert naive == tokyo == [utc(2025, 3, 29, 1, 30), utc(2025, 3, 30, 1, 0)]
    assert all(t.tzinfo is UTC for t in naive)


def test_an_expression_that_never_matches_has_no_fire_times() -> None:
    assert fires("0 0 31 2 *", "Europe/Berlin", utc(2025, 1, 1)) == []


def test_a_bad_expression_raises_value_error() -> None:
    with pytest.raises(ValueError):
        fires("61 * * * *", "UTC", utc(2025, 1, 1), limit=1)


# --- the process time zone does not matter ----------------------------------------------------


def _sample() -> list[object]:
    return [
        fires("30 2 * * *", "Europe/Berlin", utc(2025, 3, 29), limit=3),
        fires("30 1 * * *", "America/New_York", utc(2025, 11, 1), limit=3),
        fires("0 * * * *", "America/New_York", utc(2025, 11, 2, 3), until=utc(2025, 11, 2, 9)),
        fires("*/15 * * * *", "Europe/Berlin", utc(2025, 3, 30, 0), until=utc(2025, 3, 30, 2)),
        fires("0 9 * 1-3 MON-FRI", "Europe/Berlin", datetime(2025, 3, 27), limit=4),
        fires("*/10 * * * *", "Asia/Tokyo", datetime(2025, 1, 1, 12, 5), limit=2),  # naive: UTC
        due(EVERY_10S, "UTC", datetime(2025, 1, 1, 12), datetime(2025, 1, 1, 12, 0, 11), "skip", 0),
        due(EVERY_10S, "UTC", utc(2025, 1, 1, 12), utc(2025, 1, 1, 12, 0, 41), "run_all", 3600),
        due("30 2 * * *", "Europe/Berlin", None, utc(2025, 3, 30, 1, 0, 1), "skip", 0),
    ]


@pytest.fixture
def process_tz() -> Iterator[None]:
    saved = os.environ.get("TZ")
    yield
    if saved is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = saved
    time.tzset()


@pytest.mark.usefixtures("process_tz")
@pytest.mark.parametrize("zone", ["Pacific/Chatham", "America/Los_Angeles", "Asia/Kathmandu"])
def test_results_are_the_same_whatever_the_process_time_zone(zone: str) -> None:
    os.environ["TZ"] = "UTC"
    time.tzset()
    expected = _sample()

    os.environ["TZ"] = zone
    time.tzset()
    assert time.strftime("%Z") != "UTC"

    assert _sample() == expected


# --- due: what the scheduler starts on a tick -------------------------------------------------

NOON = utc(2025, 1, 1, 12)


def test_a_tick_starts_the_fire_time_that_just_passed_and_only_once() -> None:
    assert due(EVERY_10S, "UTC", NOON, NOON + timedelta(seconds=11), "skip", 3600) == [
        utc(2025, 1, 1, 12, 0, 10)
    ]
    assert (
        due(
            EVERY_10S,
            "UTC",
            utc(2025, 1, 1, 12, 0, 10),
            NOON + timedelta(seconds=11),
            "run_all",
            3600,
        )
        == []
    )
    assert due(EVERY_10S, "UTC", NOON, NOON + timedelta(seconds=9), "run_all", 3600) == []


@pytest.mark.parametrize(
    ("misfire", "catch_up", "expected"),
    [
        ("skip", 3600, []),
        ("run_once", 3600, [30]),
        ("run_all", 3600, [10, 20, 30]),
        ("run_all", 25, [20, 30]),
        ("run_once", 25, [30]),
        ("run_once", 5, []),
        ("run_all", 0, []),
    ],
)
def test_fire_times_missed_while_down_follow_the_misfire_policy_within_the_catch_up_window(
    misfire: str, catch_up: float, expected: list[int]
) -> None:
    now = NOON + timedelta(seconds=37)  # down across 12:00:10, :20 and :30

    got = due(EVERY_10S, "UTC", NOON, now, misfire, catch_up)

    assert got == [NOON + timedelta(seconds=s) for s in expected]


@pytest.mark.parametrize(
    ("misfire", "expected"),
    [("skip", [40]), ("run_once", [30, 40]), ("run_all", [10, 20, 30, 40])],
)
def test_an_on_time_fire_starts_under_every_policy_beside_the_catch_up(
    misfire: str, expected: list[int]
) -> None:
    got = due(EVERY_10S, "UTC", NOON, NOON + timedelta(seconds=41), misfire, 3600)

    assert got == [NOON + timedelta(seconds=s) for s in expected]


def test_a_fire_is_on_time_for_less_than_the_grace() -> None:
    last = NOON - timedelta(seconds=10)

    assert due(
        EVERY_10S, "UTC", last, NOON + timedelta(seconds=DEFAULT_GRACE - 0.5), "skip", 0
    ) == [NOON]
    assert due(EVERY_10S, "UTC", last, NOON + timedelta(seconds=DEFAULT_GRACE), "skip", 0) == []
    assert due(EVERY_10S, "UTC", last, NOON + timedelta(seconds=8), "skip", 0, grace=9) == [NOON]


def test_the_first_tick_does_not_back_fill() -> None:
    assert due(EVERY_10S, "UTC", None, NOON + timedelta(seconds=41), "run_all", 3600) == [
        NOON + timedelta(seconds=40)
    ]
    assert due(EVERY_10S, "UTC", None, NOON + timedelta(seconds=47), "run_all", 3600) == []


def test_an_hourly_schedule_down_three_hours_catches_up_within_its_window() -> None:
    last, now = utc(2025, 6, 1, 9), utc(2025, 6, 1, 12, 20)

    assert due("0 * * * *", "Europe/Berlin", last, now, "run_once", 600) == []
    assert due("0 * * * *", "Europe/Berlin", last, now, "run_all", 3600) == [utc(2025, 6, 1, 12)]
    assert due("0 * * * *", "Europe/Berlin", last, now, "run_once", 4 * 3600) == [
        utc(2025, 6, 1, 12)
    ]
    assert due("0 * * * *", "Europe/Berlin", last, now, "run_all", 4 * 3600) == [
        utc(2025, 6, 1, 10),
        utc(2025, 6, 1, 11),
        utc(2025, 6, 1, 12),
    ]
    assert due("0 * * * *", "Europe/Berlin", last, now, "skip", 4 * 3600) == []


def test_a_long_outage_costs_no_more_than_the_window() -> None:
    started = time.perf_counter()
    got = due(EVERY_10S, "UTC", utc(2020, 1, 1), NOON + timedelta(seconds=1), "run_once", 60)

    assert got == [NOON - timedelta(seconds=10), NOON]
    assert time.perf_counter() - started < 5  # a scan from 2020 would take minutes


def test_due_at_the_spring_forward_jump_starts_the_moved_fire() -> None:
    last = utc(2025, 3, 29, 1, 30)
    now = utc(2025, 3, 30, 1, 0, 1)

    assert due("30 2 * * *", "Europe/Berlin", last, now, "skip", 0) == [utc(2025, 3, 30, 1, 0)]


def test_an_unknown_misfire_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="run_once"):
        due(EVERY_10S, "UTC", None, NOON, "later", 60)


# --- overlap ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overlap", "active", "action"),
    [
        ("allow", 0, "start"),
        ("allow", 2, "start"),
        ("forbid", 0, "start"),
        ("forbid", 1, "skip"),
        ("replace", 0, "start"),
        ("replace", 1, "replace"),
    ],
)
def test_overlap_policy_decides_when_runs_are_still_active(
    overlap: str, active: int, action: str
) -> None:
    assert overlap_action(overlap, active) == action


def test_an_unknown_overlap_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="forbid"):
        overlap_action("queue", 1)
