"""Schedule declarations: checked at import, fire times from ``hub.firetimes``."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from hub import Schedule
from hub.errors import FlowDefinitionError


def test_next_fires_are_utc_and_keep_the_dst_rule() -> None:
    berlin = Schedule("30 2 * * *", tz="Europe/Berlin")
    fires = berlin.next_fires(datetime(2025, 3, 28, tzinfo=UTC), 3)
    # 02:30 does not exist on 2025-03-30: the run comes right after the jump, 03:00 CEST
    assert fires == [
        datetime(2025, 3, 28, 1, 30, tzinfo=UTC),
        datetime(2025, 3, 29, 1, 30, tzinfo=UTC),
        datetime(2025, 3, 30, 1, 0, tzinfo=UTC),
    ]


def test_a_seconds_field_is_allowed() -> None:
    every_10s = Schedule("* * * * * */10")
    fires = every_10s.next_fires(datetime(2025, 1, 1, tzinfo=UTC), 3)
    assert [f.second for f in fires] == [10, 20, 30]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cron": "61 * * * *"}, "not a valid cron expression"),
        ({"cron": "0 0 31 2 *"}, "never fires"),
        ({"cron": "0 * * * *", "tz": "Mars/Olympus"}, "unknown time zone 'Mars/Olympus'"),
        ({"cron": "0 * * * *", "misfire": "later"}, "choose one of skip, run_once, run_all"),
        ({"cron": "0 * * * *", "overlap": "queue"}, "choose one of allow, forbid, replace"),
    ],
)
def test_bad_schedules_fail_at_import_naming_the_fix(kwargs: dict[str, str], message: str) -> None:
    with pytest.raises(FlowDefinitionError, match=message):
        Schedule(**kwargs)
