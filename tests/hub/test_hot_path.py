"""The hot path (a step done, the next plain step created in prebuilt statements)
keeps the general path's guarantees: the run row is locked, the lease is checked."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel
from sqlalchemy import create_engine, select, text
from sqlalchemy.exc import OperationalError

from hub import Flow, step
from hub import models as m
from hub.fastpath import STEP_DONE
from hub.testing import LocalHub


class Doc(BaseModel):
    n: int


@step
def one(data: Doc) -> Doc:
    return Doc(n=data.n + 1)


@step
def two(data: Doc) -> Doc:
    return Doc(n=data.n * 10)


FLOW = Flow("hot", [one, two])


def test_storing_a_step_output_locks_the_run_row_until_commit(pg_url: str) -> None:
    hub = LocalHub([FLOW], database_url=pg_url)
    run_id = hub.start("hot", {"n": 1})
    claim = hub.engine.claim(hub.queue[0][0])
    assert claim is not None
    engine = create_engine(pg_url)
    try:
        with engine.connect() as worker, engine.connect() as reviewer:
            tx = worker.begin()
            done = worker.execute(
                STEP_DONE,
                {
                    "b_run": run_id,
                    "b_step": claim.step_id,
                    "b_owner": claim.owner,
                    "b_output": {"n": 2},
                    "b_now": hub.engine.clock(),
                },
            )
            assert done.rowcount == 1
            with pytest.raises(OperationalError, match="lock"):
                reviewer.execute(
                    text("SELECT id FROM runs WHERE id = :r FOR UPDATE NOWAIT"), {"r": run_id}
                )
            tx.rollback()
    finally:
        engine.dispose()
        hub.close()


def test_the_hot_path_stores_nothing_for_a_lease_it_no_longer_holds(local_hub: Any) -> None:
    hub = local_hub([FLOW])
    run_id = hub.start("hot", {"n": 1})
    claim = hub.engine.claim(hub.queue.pop()[0])
    with hub.store.transaction() as s:  # another worker took the step over
        s.get(m.Step, claim.step_id).lease_owner = "elsewhere:1:x"
    hub.engine.dispatch(hub.engine.run_claimed(claim).dispatch)
    with hub.store.read() as s:
        steps = s.scalars(select(m.Step).where(m.Step.run_id == run_id)).all()
        attempt = s.scalars(select(m.Attempt).where(m.Attempt.step_id == claim.step_id)).one()
    assert [(st.key, st.status, st.output) for st in steps] == [("one", "running", None)]
    assert attempt.status == "superseded"
