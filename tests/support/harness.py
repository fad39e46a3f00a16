"""One end-to-end test's hub: settings as environment, worker processes, SQL reads.

The test side starts runs through a real :class:`hub.runtime.Hub` (so they are
published to the real broker) and reads every status from SQL, never from
Celery. Process logs and the sandbox's report go into every failure message.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from functools import cached_property
from pathlib import Path
from typing import Any

import kombu.pools

from hub.runtime import Hub
from hub.settings import Settings
from hub.store import Store
from hub.views import describe_run
from tests.sandbox import RecordsServer
from tests.support.procs import HubProcesses, clean_env, wait_until

FLOWS = "tests.flows.chain"
FAST = {
    "HUB_LEASE_SECONDS": "2",
    "HUB_REDELIVER_AFTER": "2",
    "HUB_TICK_SECONDS": "0.2",
    "HUB_MAX_LOSSES": "3",
}
TERMINAL = ("succeeded", "failed", "cancelled")
E2E_REDIS_DBS = (12, 13, 11, 10, 15)


def own_redis_db(redis_url: str) -> str:
    """A database of the same Redis server that no other client uses, emptied.

    Other test sessions and the benchmarks on this machine flush and consume
    from their own databases (the fixtures' 9, the bench's 14); a worker test
    must neither lose its queued messages to them nor take theirs.
    """
    import redis

    base = redis_url.rsplit("/", 1)[0]
    for db in E2E_REDIS_DBS:
        client = redis.Redis.from_url(f"{base}/{db}", socket_connect_timeout=2)
        try:
            me = client.client_id()
            others = [c for c in client.client_list() if int(c["db"]) == db and int(c["id"]) != me]
            if not others:
                client.flushdb()
                return f"{base}/{db}"
        finally:
            client.close()
    raise AssertionError(f"every Redis database in {E2E_REDIS_DBS} of {base} has other clients")


class Harness:
    """Environment, processes and SQL reads for one test; :meth:`close` cleans up."""

    def __init__(
        self,
        folder: Path,
        sandbox: RecordsServer,
        *,
        database_url: str | None = None,
        broker_url: str | None = None,
        settings: Mapping[str, str] | None = None,
    ) -> None:
        self.folder = folder
        self.sandbox = sandbox
        values = {
            "HUB_HOME": str(folder / "home"),
            "HUB_FLOWS": FLOWS,
            **FAST,
            "HUB_TEST_SANDBOX_URL": sandbox.url,
            **({"HUB_DATABASE_URL": database_url} if database_url else {}),
            **({"HUB_BROKER_URL": broker_url} if broker_url else {}),
            **(settings or {}),
        }
        self.env = clean_env(values)
        fields = Settings.model_fields
        self.settings = Settings(
            **{k[4:].lower(): v for k, v in values.items() if k[4:].lower() in fields}
        )
        self.procs = HubProcesses(folder / "logs", self.env)
        if database_url is None:
            store = Store(self.settings.database)
            try:
                store.migrate()
            finally:
                store.engine.dispose()

    @property
    def backend(self) -> str:
        return "embedded" if self.settings.embedded_broker else "redis+postgres"

    @cached_property
    def hub(self) -> Hub:
        """The test side's hub: starts runs (published to the real broker), reads SQL."""
        return Hub(self.settings)

    # ------------------------------------------------------------------ runs
    def start(self, name: str = "ada", behave: Mapping[str, Any] | None = None, **kw: Any) -> str:
        data = {"name": name, "behave": dict(behave or {})}
        return self.hub.engine.start_run("chain", data, **kw).run_id

    def view(self, run_id: str) -> dict[str, Any]:
        """The run as stored in SQL, with every attempt."""
        with self.hub.store.read() as s:
            return describe_run(s, run_id, attempts=True)

    def step(self, run_id: str, key: str) -> dict[str, Any] | None:
        return next((s for s in self.view(run_id)["steps"] if s["key"] == key), None)

    def wait_status(
        self, run_id: str, statuses: Iterable[str] = ("succeeded",), timeout: float = 30.0
    ) -> dict[str, Any]:
        """Wait until the run is in one of ``statuses``; fail at once on another end state."""
        wanted = tuple(statuses)

        def reached() -> dict[str, Any] | None:
            view = self.view(run_id)
            if view["status"] in wanted:
                return view
            if view["status"] in TERMINAL or (
                view["status"] == "needs_review" and "needs_review" not in wanted
            ):
                raise AssertionError(
                    f"run {run_id} ended {view['status']}, expected {wanted}\n"
                    + self.diagnostics(run_id)
                )
            return None

        return wait_until(
            reached, timeout, f"run {run_id} to be {wanted}", lambda: self.diagnostics(run_id)
        )

    def wait_all(
        self, run_ids: Iterable[str], statuses: Iterable[str] = ("succeeded",), timeout: float = 60
    ) -> list[dict[str, Any]]:
        ids = list(run_ids)
        wanted = tuple(statuses)
        views: dict[str, dict[str, Any]] = {}

        def done() -> bool:
            for rid in ids:
                if rid not in views:
                    view = self.view(rid)
                    if view["status"] in wanted:
                        views[rid] = view
            return len(views) == len(ids)

        def detail() -> str:
            pending = [rid for rid in ids if rid not in views]
            states = {rid: self.view(rid)["status"] for rid in pending}
            return f"still pending: {states}\n" + self.diagnostics(pending[0] if pending else None)

        wait_until(done, timeout, f"{len(ids)} runs to be {wanted}", detail)
        return [views[rid] for rid in ids]

    # ------------------------------------------------------------ sandbox
    def effects(self, run_id: str, step: str) -> int:
        """How many effective changes the sandbox saw for this step of this run."""
        return self.sandbox.effects_for(f"{run_id}/{step}")

    def assert_effects_once(self, run_id: str, steps: Iterable[str] = ("a", "b", "c")) -> None:
        for key in steps:
            ref = f"{run_id}/{key}"
            assert self.sandbox.effects_for(ref) == 1, (
                f"{ref}: {self.sandbox.effects_for(ref)} effects, calls "
                f"{self.sandbox.calls_for_ref(ref)}\n" + self.diagnostics(run_id)
            )

    # -------------------------------------------------------------- output
    def diagnostics(self, run_id: str | None = None) -> str:
        parts = [f"backend: {self.backend}"]
        if run_id is not None:
            try:
                parts.append("run: " + json.dumps(self.view(run_id), indent=1, default=str))
            except Exception as exc:  # the database itself may be the problem
                parts.append(f"run {run_id} unreadable: {type(exc).__name__}: {exc}")
        parts.append("sandbox: " + json.dumps(self.sandbox.report(), default=str)[:3000])
        parts.append(self.procs.logs())
        return "\n".join(parts)

    def close(self) -> None:
        try:
            self.procs.close()
        finally:
            print(self.procs.logs())  # shown by pytest when the test failed
            if "hub" in self.__dict__:
                self.hub.close()
                kombu.pools.reset()  # the broker connections this process opened
