"""``hub db upgrade`` on a database made by the previous release, with runs in flight.

The previous release's schema is revision 0005 (triggers; before stored
connections). A run of ``hello`` is started and its first step run on that
schema, leaving the run in the middle; ``hub db upgrade`` (the real command)
brings the database to the head while a second run waits in the queue; then
a worker of this release finishes both runs from where they were, on SQLite and
on PostgreSQL.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

from hub.engine import Engine
from hub.registry import Registry
from hub.settings import Settings
from hub.store import Store, head_revision
from hub.testing import LocalHub
from hub.views import describe_run
from tests.hub.test_cli import hub, hub_env
from tests.hub.test_migrations import empty_url  # noqa: F401 - the fixture

PREVIOUS = "0005"


def revision(url: str) -> str | None:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


@pytest.mark.slow
def test_upgrading_with_runs_in_flight_loses_nothing(
    empty_url: str,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    url = empty_url
    Store(url).migrate(PREVIOUS)
    assert revision(url) == PREVIOUS

    registry = Registry.load(["flows.hello"])
    published: list[tuple[str, str, float | None]] = []
    old_store = Store(url)
    old = Engine(old_store, registry, lambda *m: published.append(m), Settings(inline_steps=0))
    first = old.start_run("hello", {"name": "Ada"}).run_id
    second = old.start_run("hello", {"name": "Grace"}).run_id
    old.execute(published.pop(0)[0])  # one step of the first run; the rest is in flight
    with old_store.read() as s:
        steps = [v["status"] for v in describe_run(s, first)["steps"]]
    assert steps == ["succeeded", "ready"] or steps[:2] == ["succeeded", "ready"], steps
    pending = [(step_id, queue) for step_id, queue, _ in published]
    assert len(pending) == 2  # the first run's next step, and the second run's first
    old_store.engine.dispose()

    env = hub_env(tmp_path, HUB_DATABASE_URL=url)
    upgraded = hub(env, "db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    assert revision(url) == head_revision()
    again = hub(env, "db", "upgrade")  # already at the head: nothing to do, no error
    assert again.returncode == 0, again.stderr

    new = LocalHub(registry, database_url=url)
    now = new._clock()
    new.queue.extend((step_id, queue, now) for step_id, queue in pending)  # kept by the broker
    new.drain()
    for run_id, name in ((first, "Ada"), (second, "Grace")):
        view = new.run(run_id)
        assert view["status"] == "succeeded", view
        assert name in json.dumps(view["output"])
    new.store.engine.dispose()
