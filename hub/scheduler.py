"""The scheduler process: it only ticks. Each tick reconciles, fires schedules, then escalates.

The reconciler re-publishes steps that are due but whose message was lost
(or whose retry wait, stored in SQL as ``not_before``, has passed) and frees
the leases of dead workers. Schedules (:mod:`hub.schedules`) start the runs
whose fire time has come, as their misfire and overlap policies say; their
rows are synced with the loaded flows' declarations when the scheduler
starts. Escalation (:mod:`hub.escalation`) acts on review items past their
due time as their flow's ``Escalate`` policy says. Every action is guarded by
a conditional UPDATE, a row lock or a unique index, so two schedulers
running at once are harmless.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from typing import Any

from hub import schedules
from hub.errors import FlowDefinitionError
from hub.escalation import escalate_due
from hub.firetimes import DEFAULT_GRACE

log = logging.getLogger("hub.scheduler")


def serve(hub: Any, *, once: bool = False, stop: threading.Event | None = None) -> None:
    """Tick every ``HUB_TICK_SECONDS`` until SIGTERM/SIGINT (or ``stop`` is set).

    A malformed schedule declaration (two with one name) ends the process
    at once with the error, as a flow module that does not import does.
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        schedules.declarations(hub.engine.registry)
    except FlowDefinitionError as exc:
        raise SystemExit(f"error: {exc}") from None
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    every = hub.settings.tick_seconds
    syncer = schedules.Syncer(hub)
    log.info("scheduler ticking every %.2f s", every)
    while not stop.is_set():
        started = time.monotonic()
        tick(hub, syncer, grace=max(DEFAULT_GRACE, 5 * every))
        if once:
            return
        stop.wait(max(0.0, every - (time.monotonic() - started)))


def tick(hub: Any, syncer: schedules.Syncer | None = None, *, grace: float = DEFAULT_GRACE) -> None:
    """One tick: reconcile, sync and fire schedules, escalate. Each part's errors are logged.

    ``hub`` is the runtime hub or a ``LocalHub``; times come from its
    engine's clock. ``grace`` is how late a fire may be and still be on time
    (a few ticks).
    """
    try:
        counts = hub.engine.tick()
        if counts["lost"] or counts["published"]:
            log.info("tick: %s", counts)
    except Exception as exc:  # database or broker away: say so, tick again
        log.warning("tick failed, will retry: %s: %s", type(exc).__name__, exc)
    try:
        now = hub.engine.clock()
        synced = (syncer or schedules.Syncer(hub))(now)
        if synced:
            log.info("schedules synced: %s", synced)
        fired = schedules.fire_due(hub, now, grace=grace)
        if fired:
            log.info("schedules fired: %s", fired)
    except Exception as exc:  # database away: say so, fire on a later tick
        log.warning("schedules failed, will retry: %s: %s", type(exc).__name__, exc)
    try:
        escalated = escalate_due(hub, hub.engine.clock())
        if escalated:
            log.info("escalated %d overdue review item(s)", escalated)
    except Exception as exc:  # database away: say so, escalate on a later tick
        log.warning("escalation failed, will retry: %s: %s", type(exc).__name__, exc)
