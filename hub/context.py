"""What a step sees while it runs, and the services a worker lends it (browser, desktop)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from hub.evidence import Evidence

log = logging.getLogger("hub.context")


class Service(Protocol):
    """Something a worker process lends to steps: a warm browser, a display.

    The engine calls :meth:`open` the first time a step asks for it (``ctx.browser``)
    and :meth:`close` when the step has returned or raised, BEFORE the result is
    stored: with ``error`` set, ``close`` records what the reviewer will need
    (screenshot, trace, page HTML) in ``ctx.evidence``. ``close`` must not raise.

    A service may also have ``idle()``: the engine calls it after a published step
    (and the steps it ran inline) is stored, to prepare for the next step ahead of
    time (a browser makes the next context). It must not raise.
    """

    def open(self, ctx: StepContext) -> Any: ...

    def close(self, ctx: StepContext, resource: Any, error: BaseException | None) -> None: ...


#: What to do when a step asks for a service this worker does not have.
MISSING = {
    "browser": 'run the step on a browser worker: `@step(queue="browser")` and '
    "`hub worker --queues browser` (needs the `browser` extra and Chromium; see `hub doctor`)",
    "desktop": 'run the step on a desktop worker: `@step(queue="desktop")` and '
    "`hub worker --queues desktop` (needs the `desktop` extra and a display; see `hub doctor`)",
}


@dataclass
class StepContext:
    """Passed as ``ctx`` to a step that asks for it. New fields may be added.

    ``idempotency_key`` is the same on every attempt of this step in this run:
    send it to the systems you change (``Idempotency-Key`` header, external-ID
    upsert), or check for it before creating a record.

    ``evidence`` collects what a reviewer sees if this attempt sends the step
    to review (screenshots, page HTML, the last HTTP exchange, actions, notes;
    see :mod:`hub.evidence`); the lines logged with ``log`` are kept too.
    """

    run_id: str
    flow: str
    step: str
    key: str
    attempt: int
    idempotency_key: str
    run_input: Any
    item: int | None = None
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("hub.step"))
    _outputs: Callable[[str], Any] | None = field(default=None, repr=False)
    services: dict[str, Service] = field(default_factory=dict, repr=False)
    evidence: Evidence = field(default_factory=Evidence, repr=False)
    _open: dict[str, Any] = field(default_factory=dict, repr=False)

    def service(self, name: str) -> Any:
        """The resource of service ``name`` for this step, opened on first use."""
        if name in self._open:
            return self._open[name]
        provider = self.services.get(name)
        if provider is None:
            fix = MISSING.get(name, f"register a {name!r} service on this worker")
            raise RuntimeError(
                f"step {self.step!r} asked for ctx.{name}, but this worker has none: {fix}"
            )
        resource = provider.open(self)
        self._open[name] = resource
        return resource

    def secret(self, name: str) -> str:
        """The secret called ``name``, from the environment variable ``HUB_SECRET_<NAME>``.

        The value is masked in this step's evidence and log lines at once
        (see :meth:`hub.evidence.Evidence.mask`). Raises ``KeyError`` naming
        the variable to set when it is missing.
        """
        import os
        import re

        variable = "HUB_SECRET_" + re.sub(r"[^A-Za-z0-9]+", "_", name).upper()
        value = os.environ.get(variable)
        if not value:
            raise KeyError(
                f"secret {name!r} is not set: set the environment variable {variable} "
                "on the workers that run this step"
            )
        self.evidence.mask(value)
        return value

    def connector(self, name: str) -> Any:
        """The ready client of connection ``name``, bound to this step (see
        :mod:`hub.connections`): its secrets are masked in this step's evidence and logs,
        and it sends this step's idempotency key where the system takes one."""
        return self.service("connectors")(name)

    @property
    def browser(self) -> Any:
        """A Playwright ``Page`` in a fresh browser context of this worker's warm browser."""
        return self.service("browser")

    @property
    def desktop(self) -> Any:
        """This worker's display, leased to this step alone (see ``bots.desktop``)."""
        return self.service("desktop")

    def close_services(self, error: BaseException | None) -> None:
        """Close what the step opened, newest first; a failing close is logged, not raised."""
        while self._open:
            name, resource = self._open.popitem()
            try:
                self.services[name].close(self, resource, error)
            except Exception:
                log.exception("closing the %s of step %s failed", name, self.key)

    def output_of(self, step: str) -> Any:
        """The stored output of an earlier step of this run (JSON, as stored).

        Raises ``KeyError`` when that step has not finished.
        """
        if self._outputs is None:
            raise KeyError(step)
        return self._outputs(step)
