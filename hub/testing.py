"""Run flows in-process, without a broker: for flow authors' unit tests and the hub's own.

::

    hub = LocalHub([my_flow])          # SQLite in a temp folder unless a URL is given
    run_id = hub.start("my_flow", {"order_id": "A-1"})
    hub.drain()                         # run every published step until none is left
    assert hub.run(run_id)["status"] == "succeeded"

Countdown retries are held until :meth:`LocalHub.advance` moves the clock.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from hub.connections import ConnectionConfig, Connectors
from hub.engine import Engine
from hub.flow import Flow
from hub.models import utcnow
from hub.registry import Registry
from hub.settings import Settings
from hub.store import Store
from hub.views import describe_run


class LocalHub:
    """An engine whose publish appends to a list that :meth:`drain` executes."""

    def __init__(
        self,
        flows: Iterable[Flow] | Registry,
        *,
        database_url: str | None = None,
        settings: Settings | None = None,
        connections: Mapping[str, Mapping[str, Any] | ConnectionConfig] | None = None,
    ) -> None:
        self._tmp = None
        if database_url is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="hub-test-")
            database_url = f"sqlite:///{Path(self._tmp.name) / 'hub.db'}"
        self.store = Store(database_url)
        self.store.create_all()
        self.registry = flows if isinstance(flows, Registry) else Registry(flows)
        self.now = utcnow()
        self._frozen = False
        self.queue: list[tuple[str, str, datetime]] = []
        self.published: list[tuple[str, str, float | None]] = []
        self.engine = Engine(
            self.store, self.registry, self._publish, settings or Settings(), clock=self._clock
        )
        if connections is not None:
            # these connections only, as given: no file, environment or database is read
            configs = {
                name: c if isinstance(c, ConnectionConfig)
                else ConnectionConfig.model_validate({**c, "name": name, "source": "LocalHub"})
                for name, c in connections.items()
            }  # fmt: skip
            self.engine.services["connectors"] = Connectors(self.engine.settings, configs=configs)

    def connector(self, name: str) -> Any:
        """This process's connector of connection ``name`` (a FakeConnector for kind fake)."""
        connectors = self.engine.services["connectors"]
        assert isinstance(connectors, Connectors)
        return connectors.connector(name)

    def _clock(self) -> datetime:
        return self.now if self._frozen else max(self.now, utcnow())

    def _publish(self, step_id: str, queue: str, countdown: float | None) -> None:
        self.published.append((step_id, queue, countdown))
        due = self._clock() + timedelta(seconds=countdown or 0)
        self.queue.append((step_id, queue, due))

    def freeze(self) -> None:
        """Stop the clock at its current value; :meth:`advance` moves it."""
        self.now, self._frozen = self._clock(), True

    def advance(self, seconds: float) -> None:
        self.now = self._clock() + timedelta(seconds=seconds)

    def start(self, flow: str, input: Any, **kw: Any) -> str:
        return self.engine.start_run(flow, input, **kw).run_id

    def drain(self, *, limit: int = 10_000) -> int:
        """Execute due messages until none is due; returns how many were executed."""
        done = 0
        while done < limit:
            now = self._clock()
            due = [m for m in self.queue if m[2] <= now]
            if not due:
                return done
            self.queue.remove(due[0])
            self.engine.execute(due[0][0])
            done += 1
        raise RuntimeError(f"drain: still busy after {limit} messages (a loop?)")

    def run(self, run_id: str, *, attempts: bool = False) -> dict[str, Any]:
        with self.store.read() as s:
            return describe_run(s, run_id, attempts=attempts)

    def close(self) -> None:
        connectors = self.engine.services.get("connectors")
        if isinstance(connectors, Connectors):
            connectors.shutdown()
        self.store.engine.dispose()
        if self._tmp is not None:
            self._tmp.cleanup()
