"""Trigger declarations that sit beside a flow: schedules and webhooks.

::

    Flow("order_sync", [...], triggers=[
        Schedule("*/15 8-18 * * MON-FRI", tz="Europe/Berlin", misfire="run_once", overlap="forbid"),
        Webhook("orders", verify="github", secret="env:ORDERS_SECRET"),
    ])

Declarations are checked when the module is imported (cron syntax, time
zone, policy names, verification preset), so a typo fails at start-up with a
``FlowDefinitionError`` naming it. The CLI and ``POST /api/flows/{flow}/runs``
start runs by hand without any declaration.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from hub.errors import FlowDefinitionError

MISFIRE = ("skip", "run_once", "run_all")
OVERLAP = ("allow", "forbid", "replace")
VERIFY = ("github", "stripe", "standard", "slack", "hmac", "token")


@dataclass(frozen=True)
class Schedule:
    """Start a run at each fire time of ``cron`` in the IANA zone ``tz``.

    ``misfire``: what to do with fire times missed while no scheduler ran
    (``skip``, ``run_once``, ``run_all`` within ``catch_up`` seconds).
    ``overlap``: when the previous run is still active (``allow``, ``forbid``,
    ``replace``). ``input`` is the run's input (a dict, or a function of the
    fire time returning one).
    """

    cron: str
    tz: str = "UTC"
    misfire: str = "run_once"
    overlap: str = "allow"
    catch_up: float = 3600.0
    input: Any = None
    name: str | None = None

    def __post_init__(self) -> None:
        from croniter import croniter

        if not croniter.is_valid(self.cron):
            raise FlowDefinitionError(
                f"Schedule: {self.cron!r} is not a valid cron expression "
                "(five fields: minute hour day-of-month month day-of-week)"
            )
        try:
            ZoneInfo(self.tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise FlowDefinitionError(
                f"Schedule: unknown time zone {self.tz!r}; use an IANA name like 'Europe/Berlin'"
            ) from None
        _choice("Schedule misfire", self.misfire, MISFIRE)
        _choice("Schedule overlap", self.overlap, OVERLAP)

    def next_fires(self, after: datetime, count: int = 10) -> list[datetime]:
        """The next ``count`` fire times after ``after`` (aware), in the schedule's zone."""
        from croniter import croniter

        zone = ZoneInfo(self.tz)
        it = croniter(self.cron, after.astimezone(zone))
        return [it.get_next(datetime) for _ in range(count)]

    def __str__(self) -> str:
        return f"schedule {self.cron!r} ({self.tz}, misfire={self.misfire}, overlap={self.overlap})"


@dataclass(frozen=True)
class Webhook:
    """Start a run from ``POST /hooks/{name}``, verified with the ``verify`` preset.

    ``secret`` is ``env:NAME`` (read from the environment) or the name of a
    stored connection secret; never the secret itself in code.
    """

    name: str
    verify: str = "hmac"
    secret: str | None = None
    input: Callable[[Any], Any] | type | None = None
    max_body: int = 1024 * 1024

    def __post_init__(self) -> None:
        _choice("Webhook verify", self.verify, VERIFY)
        if self.secret is None:
            raise FlowDefinitionError(
                f"Webhook {self.name!r}: set secret='env:NAME' so deliveries can be verified"
            )
        if self.max_body <= 0:
            raise FlowDefinitionError(f"Webhook {self.name!r}: max_body must be positive")

    def __str__(self) -> str:
        return f"webhook POST /hooks/{self.name} (verify={self.verify})"


def _choice(what: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise FlowDefinitionError(f"{what}={value!r}; choose one of {', '.join(allowed)}")


Trigger = Schedule | Webhook
