"""The scheduler process: it only ticks. Each tick runs the reconciler, then escalation.

The reconciler re-publishes steps that are due but whose message was lost
(or whose retry wait, stored in SQL as ``not_before``, has passed) and frees
the leases of dead workers. Escalation (:mod:`hub.escalation`) acts on
review items past their due time as their flow's ``Escalate`` policy says.
Every action is guarded by a conditional UPDATE, so two schedulers running
at once are harmless.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from typing import Any

from hub.escalation import escalate_due

log = logging.getLogger("hub.scheduler")


def serve(hub: Any, *, once: bool = False, stop: threading.Event | None = None) -> None:
    """Tick every ``HUB_TICK_SECONDS`` until SIGTERM/SIGINT (or ``stop`` is set)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    every = hub.settings.tick_seconds
    log.info("scheduler ticking every %.2f s", every)
    while not stop.is_set():
        started = time.monotonic()
        try:
            counts = hub.engine.tick()
            if counts["lost"] or counts["published"]:
                log.info("tick: %s", counts)
        except Exception as exc:  # database or broker away: say so, tick again
            log.warning("tick failed, will retry: %s: %s", type(exc).__name__, exc)
        try:
            escalated = escalate_due(hub, hub.engine.clock())
            if escalated:
                log.info("escalated %d overdue review item(s)", escalated)
        except Exception as exc:  # database away: say so, escalate on a later tick
            log.warning("escalation failed, will retry: %s: %s", type(exc).__name__, exc)
        if once:
            return
        stop.wait(max(0.0, every - (time.monotonic() - started)))
