"""Trigger declarations that sit beside a flow: schedules and webhooks.

::

    Flow("order_sync", [...], triggers=[
        Schedule("*/15 8-18 * * MON-FRI", tz="Europe/Berlin", misfire="run_once", overlap="forbid"),
        Webhook("orders", verify="github", secret="env:ORDERS_SECRET"),
    ])

Declarations are checked when the module is imported (cron syntax, time
zone, policy names, verification preset and its options), so a typo fails
at start-up with a ``FlowDefinitionError`` naming it. The CLI and ``POST /api/flows/{flow}/runs``
start runs by hand without any declaration.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from hub.errors import FlowDefinitionError
from hub.firetimes import MISFIRE, OVERLAP
from hub.signatures import ALGORITHMS, ENCODINGS, SecretConfigError

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
                "(five fields: minute hour day-of-month month day-of-week, and an "
                "optional sixth for seconds, e.g. '* * * * * */10' for every 10 s)"
            )
        try:
            ZoneInfo(self.tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise FlowDefinitionError(
                f"Schedule: unknown time zone {self.tz!r}; use an IANA name like 'Europe/Berlin'"
            ) from None
        _choice("Schedule misfire", self.misfire, MISFIRE)
        _choice("Schedule overlap", self.overlap, OVERLAP)
        if not self.next_fires(datetime.now(UTC), 1):
            raise FlowDefinitionError(
                f"Schedule: {self.cron!r} never fires (no date matches it); check the "
                "day-of-month and month fields"
            )

    def next_fires(self, after: datetime, count: int = 10) -> list[datetime]:
        """The next ``count`` fire times after ``after``, as aware UTC datetimes.

        Computed in the schedule's zone, DST as classic cron does it (see
        :mod:`hub.firetimes`); show them with ``.astimezone(ZoneInfo(tz))``.
        """
        from hub.firetimes import fire_times

        return list(fire_times(self.cron, self.tz, after, limit=count))

    def __str__(self) -> str:
        return f"schedule {self.cron!r} ({self.tz}, misfire={self.misfire}, overlap={self.overlap})"


@dataclass(frozen=True)
class Webhook:
    """Start a run from ``POST /hooks/{name}``, verified with the ``verify`` preset.

    ``secret`` is ``"env:NAME"``, read from the environment when a delivery
    arrives, or a list of them during a rotation (``["env:NEW", "env:OLD"]``:
    a delivery signed with either is accepted). Never the secret itself in
    code. ``max_body`` caps the body in bytes; ``input`` maps the parsed body
    to the run's input.

    Presets and the options they read (``hub.signatures`` says what is signed)::

        verify=    options
        github     -                       (X-Hub-Signature-256: sha256=<hex>)
        stripe     tolerance               (Stripe-Signature: t=...,v1=...)
        standard   tolerance               (webhook-id/-timestamp/-signature)
        slack      tolerance               (X-Slack-Signature: v0=<hex>)
        hmac       header="X-Signature", algorithm="sha256" (sha1, sha512),
                   encoding="hex" (base64), prefix="" (e.g. "sha256="),
                   timestamp_header=None, signed="{body}" (with a timestamp
                   header "{timestamp}.{body}"), tolerance (with a timestamp header)
        token      header (default: Authorization: Bearer, or X-Hub-Token), prefix

    ``tolerance`` is in seconds either way of the hub's clock (default 300).
    An option a preset does not read is a ``FlowDefinitionError`` at import.
    """

    name: str
    verify: str = "hmac"
    secret: str | Sequence[str] | None = None
    input: Callable[[Any], Any] | type | None = None
    max_body: int = 1024 * 1024
    header: str | None = None
    algorithm: str | None = None
    encoding: str | None = None
    prefix: str | None = None
    timestamp_header: str | None = None
    signed: str | None = None
    tolerance: float | None = None

    def __post_init__(self) -> None:
        _choice("Webhook verify", self.verify, VERIFY)
        if self.secret is None:
            raise FlowDefinitionError(
                f"Webhook {self.name!r}: set secret='env:NAME' so deliveries can be verified"
            )
        if not isinstance(self.secret, str):
            object.__setattr__(self, "secret", tuple(self.secret))
        _check_secrets(self)
        if self.max_body <= 0:
            raise FlowDefinitionError(f"Webhook {self.name!r}: max_body must be positive")
        _check_options(self)

    def secret_refs(self) -> tuple[str, ...]:
        """The ``env:NAME`` references, newest first."""
        return (self.secret,) if isinstance(self.secret, str) else tuple(self.secret or ())

    def resolve_secrets(self, environ: Mapping[str, str] | None = None) -> list[str]:
        """The secret values, newest first, read from ``environ`` (default ``os.environ``) now.

        Raises ``SecretConfigError`` naming the variable when one is unset or
        empty: a deployment problem, answered 503 rather than 401.
        """
        env = os.environ if environ is None else environ
        values = []
        for ref in self.secret_refs():
            variable = ref.removeprefix("env:")
            value = env.get(variable, "").strip()
            if not value:
                raise SecretConfigError(
                    f"webhook {self.name!r}: environment variable {variable} is not set "
                    f"(secret={ref!r}); set it to the sender's signing secret"
                )
            values.append(value)
        return values

    def __str__(self) -> str:
        return f"webhook POST /hooks/{self.name} (verify={self.verify})"


_ENV_REF = re.compile(r"^env:[A-Za-z_][A-Za-z0-9_]*$")
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
#: Which presets read each option; giving one to another preset is a mistake.
_OPTION_PRESETS = {
    "header": ("hmac", "token"),
    "prefix": ("hmac", "token"),
    "algorithm": ("hmac",),
    "encoding": ("hmac",),
    "timestamp_header": ("hmac",),
    "signed": ("hmac",),
    "tolerance": ("stripe", "standard", "slack", "hmac"),
}


def _check_secrets(hook: Webhook) -> None:
    refs = hook.secret_refs()
    if not refs:
        raise FlowDefinitionError(
            f"Webhook {hook.name!r}: secret=[] names no secret; give 'env:NAME' or a list of them"
        )
    for i, ref in enumerate(refs):
        if not isinstance(ref, str) or not _ENV_REF.match(ref):
            which = "secret" if len(refs) == 1 else f"secret {i + 1} of {len(refs)}"
            raise FlowDefinitionError(
                f"Webhook {hook.name!r}: {which} is not 'env:NAME' (value not shown); put the "
                "secret in an environment variable and name it here, never the secret itself"
            )
    if len(set(refs)) != len(refs):
        raise FlowDefinitionError(f"Webhook {hook.name!r}: secret lists a variable twice")


def _check_options(hook: Webhook) -> None:
    where = f"Webhook {hook.name!r}"
    for option, presets in _OPTION_PRESETS.items():
        if getattr(hook, option) is not None and hook.verify not in presets:
            readers = " or ".join(repr(p) for p in presets)
            raise FlowDefinitionError(
                f"{where}: verify={hook.verify!r} does not read {option}=; drop it "
                f"(it applies to verify={readers})"
            )
    for option in ("header", "timestamp_header"):
        value = getattr(hook, option)
        if value is not None and (not isinstance(value, str) or not _HEADER_NAME.match(value)):
            raise FlowDefinitionError(f"{where}: {option}={value!r} is not an HTTP header name")
    if hook.algorithm is not None:
        _choice(f"{where}: algorithm", hook.algorithm, ALGORITHMS)
    if hook.encoding is not None:
        _choice(f"{where}: encoding", hook.encoding, ENCODINGS)
    if hook.tolerance is not None:
        if isinstance(hook.tolerance, bool) or not isinstance(hook.tolerance, int | float):
            raise FlowDefinitionError(f"{where}: tolerance= is a number of seconds")
        if not 0 < hook.tolerance <= 86400:
            raise FlowDefinitionError(
                f"{where}: tolerance={hook.tolerance!r} must be between 0 and 86400 seconds"
            )
        if hook.verify == "hmac" and hook.timestamp_header is None:
            raise FlowDefinitionError(
                f"{where}: tolerance= needs timestamp_header= (the header the sender "
                "puts its signing time in)"
            )
    if hook.signed is not None:
        _check_signed(hook, where)


def _check_signed(hook: Webhook, where: str) -> None:
    signed = hook.signed
    if not isinstance(signed, str) or signed.count("{body}") != 1:
        raise FlowDefinitionError(f"{where}: signed= must hold {{body}} exactly once")
    rest = signed.replace("{body}", "").replace("{timestamp}", "")
    if "{" in rest or "}" in rest:
        raise FlowDefinitionError(
            f"{where}: signed={signed!r} may only use {{body}} and {{timestamp}}"
        )
    has_time = "{timestamp}" in signed
    if has_time and hook.timestamp_header is None:
        raise FlowDefinitionError(
            f"{where}: signed= uses {{timestamp}}; name its header with timestamp_header="
        )
    if hook.timestamp_header is not None and not has_time:
        raise FlowDefinitionError(
            f"{where}: signed= must include {{timestamp}} when timestamp_header= is set, "
            "or the time could be changed without breaking the signature"
        )


def _choice(what: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise FlowDefinitionError(f"{what}={value!r}; choose one of {', '.join(allowed)}")


Trigger = Schedule | Webhook
