"""The engine in-process (no broker, no worker processes), on SQLite and PostgreSQL.

Every assertion reads stored rows: runs, steps, attempts, review items, events.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from datetime import date, timedelta
from typing import Any

import pytest
from pydantic import BaseModel
from sqlalchemy import update

from hub import (
    Branch,
    BusinessError,
    Flow,
    ForEach,
    NeedsReview,
    Parallel,
    PolicyViolation,
    StepContext,
    SubFlow,
    TransientError,
    step,
)
from hub import models as m
from hub.errors import FlowNotFound, IdempotencyConflict, InvalidInput, RunStateError
from hub.settings import Settings
from hub.testing import LocalHub
from tests.hub.rows import (
    LocalHubFactory,
    attempts_of,
    event_kinds,
    reviews_of,
    rows,
    run_row,
    step_row,
    step_rows,
)


# ---------------------------------------------------------------------- models
class Order(BaseModel):
    order_id: str
    qty: int = 1


class Priced(BaseModel):
    order_id: str
    total: float


class Line(BaseModel):
    sku: str
    qty: int


class Doc(BaseModel):
    order_id: str
    lines: list[Line]


class Ticket(BaseModel):
    kind: str
    text: str


class Approval(BaseModel):
    approved: bool
    note: str = ""


# --------------------------------------------------------------------- helpers
def settle(hub: LocalHub, *, rounds: int = 50) -> None:
    """Drain, then jump the frozen clock to each next due message until none is left."""
    hub.drain()
    for _ in range(rounds):
        if not hub.queue:
            return
        due = min(d for _, _, d in hub.queue)
        hub.advance(max(0.0, (due - hub.engine.clock()).total_seconds()))
        hub.drain()
    raise AssertionError(f"still {len(hub.queue)} messages queued after {rounds} rounds")


def nothing_running(hub: LocalHub) -> None:
    assert [r.key for r in rows(hub, m.Step, status="running")] == []
    assert [a.id for a in rows(hub, m.Attempt, status="running")] == []


# ----------------------------------------------------------------- linear flows
def test_a_linear_flow_passes_each_output_to_the_next_step_and_stores_it(
    local_hub: LocalHubFactory,
) -> None:
    @step
    def price(data: Order) -> Priced:
        return Priced(order_id=data.order_id, total=data.qty * 2.5)

    @step
    def add_tax(data: Priced) -> Priced:
        return Priced(order_id=data.order_id, total=round(data.total * 1.2, 2))

    @step
    def label(data: Priced) -> str:
        return f"{data.order_id}: {data.total:.2f}"

    hub = local_hub([Flow("orders", [price, add_tax, label])])
    run_id = hub.start("orders", {"order_id": "A-1", "qty": 4})
    hub.drain()

    run = run_row(hub, run_id)
    assert (run.status, run.output) == ("succeeded", "A-1: 12.00")
    assert run.started_at is not None and run.finished_at is not None
    steps = step_rows(hub, run_id)
    assert sorted(steps) == ["add_tax", "label", "price"]
    assert steps["price"].input == {"order_id": "A-1", "qty": 4}
    assert steps["price"].output == {"order_id": "A-1", "total": 10.0}
    assert steps["add_tax"].input == steps["price"].output
    assert steps["add_tax"].output == {"order_id": "A-1", "total": 12.0}
    assert steps["label"].input == steps["add_tax"].output
    assert steps["label"].output == "A-1: 12.00"
    for row in steps.values():
        assert (row.status, row.attempts) == ("succeeded", 1)
        assert [a.status for a in attempts_of(hub, row.id)] == ["succeeded"]
    assert event_kinds(hub, run_id) == ["run.created", "run.succeeded"]


def test_the_run_input_is_stored_after_validation_with_defaults_filled_in(
    local_hub: LocalHubFactory,
) -> None:
    @step
    def keep(data: Order) -> Order:
        return data

    hub = local_hub([Flow("orders", [keep])])
    run_id = hub.start("orders", {"order_id": "A-1"})
    assert run_row(hub, run_id).input == {"order_id": "A-1", "qty": 1}
    assert step_row(hub, run_id, "keep").input == {"order_id": "A-1", "qty": 1}


def test_the_idempotency_key_is_the_same_on_every_attempt_and_on_the_attempt_rows(
    local_hub: LocalHubFactory,
) -> None:
    seen: list[tuple[int, str]] = []

    @step(retries=3, backoff=1)
    def post(ctx: StepContext, data: Order) -> str:
        seen.append((ctx.attempt, ctx.idempotency_key))
        if ctx.attempt < 3:
            raise TransientError("ERP busy")
        return ctx.idempotency_key

    hub = local_hub([Flow("orders", [post])])
    hub.freeze()
    run_id = hub.start("orders", {"order_id": "A-1"})
    other_id = hub.start("orders", {"order_id": "A-2"})
    settle(hub)

    mine = [k for _, k in seen if k.startswith(run_id)]
    assert [a for a, k in seen if k.startswith(run_id)] == [1, 2, 3]
    assert len(set(mine)) == 1
    row = step_row(hub, run_id, "post")
    attempts = attempts_of(hub, row.id)
    assert [(a.number, a.status) for a in attempts] == [
        (1, "failed"),
        (2, "failed"),
        (3, "succeeded"),
    ]
    assert {a.idempotency_key for a in attempts} == set(mine)
    assert run_row(hub, run_id).output == mine[0]
    # another run of the same flow gets a key of its own
    other = step_row(hub, other_id, "post")
    assert {a.idempotency_key for a in attempts_of(hub, other.id)}.isdisjoint(mine)


def test_a_step_reads_an_earlier_steps_output_through_the_context(
    local_hub: LocalHubFactory,
) -> None:
    missing: list[str] = []

    @step
    def fetch(data: Order) -> Priced:
        return Priced(order_id=data.order_id, total=data.qty * 3.0)

    @step
    def stamp(data: Priced) -> str:
        return f"stamped {data.order_id}"

    @step
    def report(ctx: StepContext, data: str) -> dict[str, Any]:
        try:
            ctx.output_of("report")
        except KeyError as exc:
            missing.append(str(exc))
        return {"fetched": ctx.output_of("fetch"), "stamp": data, "input": ctx.run_input}

    hub = local_hub([Flow("orders", [fetch, stamp, report])])
    run_id = hub.start("orders", {"order_id": "A-7", "qty": 2})
    hub.drain()

    assert run_row(hub, run_id).output == {
        "fetched": step_row(hub, run_id, "fetch").output,
        "stamp": "stamped A-7",
        "input": {"order_id": "A-7", "qty": 2},
    }
    assert step_row(hub, run_id, "fetch").output == {"order_id": "A-7", "total": 6.0}
    assert len(missing) == 1 and "'report'" in missing[0]


def test_an_async_step_is_awaited(local_hub: LocalHubFactory) -> None:
    @step
    async def fetch(data: Order) -> Priced:
        return Priced(order_id=data.order_id, total=float(data.qty))

    hub = local_hub([Flow("orders", [fetch])])
    run_id = hub.start("orders", {"order_id": "A-1", "qty": 3})
    hub.drain()
    assert run_row(hub, run_id).output == {"order_id": "A-1", "total": 3.0}


# ------------------------------------------------------------------ start a run
def test_invalid_run_input_fails_at_start_and_stores_nothing(local_hub: LocalHubFactory) -> None:
    calls: list[Order] = []

    @step
    def keep(data: Order) -> Order:
        calls.append(data)
        return data

    hub = local_hub([Flow("orders", [keep])])
    with pytest.raises(InvalidInput) as err:
        hub.start("orders", {"order_id": "A-1", "qty": "many"})
    assert "qty" in str(err.value)
    assert "'orders'" in str(err.value)
    assert [e["loc"] for e in err.value.errors] == [("qty",)]
    for model in (m.Run, m.Step, m.Attempt, m.Event, m.ReviewItem):
        assert rows(hub, model) == [], model.__tablename__
    assert hub.published == []
    assert hub.drain() == 0 and calls == []


def test_starting_an_unknown_flow_stores_nothing(local_hub: LocalHubFactory) -> None:
    @step
    def keep(data: Order) -> Order:
        return data

    hub = local_hub([Flow("orders", [keep])])
    with pytest.raises(FlowNotFound) as err:
        hub.start("ordres", {"order_id": "A-1"})
    assert "known flows: orders" in str(err.value)
    assert rows(hub, m.Run) == []


def test_the_same_idempotency_key_and_input_return_the_same_run(
    local_hub: LocalHubFactory,
) -> None:
    @step
    def keep(data: Order) -> Order:
        return data

    hub = local_hub([Flow("orders", [keep]), Flow("archive", [keep])])
    first = hub.engine.start_run("orders", {"order_id": "A-1"}, idempotency_key="k-1")
    # same input once validated (default filled in, keys reordered)
    again = hub.engine.start_run("orders", {"qty": 1, "order_id": "A-1"}, idempotency_key="k-1")
    assert first.created is True
    assert (again.run_id, again.created) == (first.run_id, False)
    assert len(rows(hub, m.Run)) == 1
    assert len(rows(hub, m.Step)) == 1
    assert len(hub.published) == 1
    # the key is per flow: another flow with the same key is another run
    other = hub.engine.start_run("archive", {"order_id": "A-1"}, idempotency_key="k-1")
    assert other.created is True and other.run_id != first.run_id
    assert run_row(hub, first.run_id).idempotency_key == "k-1"


def test_the_same_idempotency_key_with_another_input_is_a_conflict(
    local_hub: LocalHubFactory,
) -> None:
    @step
    def keep(data: Order) -> Order:
        return data

    hub = local_hub([Flow("orders", [keep])])
    first = hub.engine.start_run("orders", {"order_id": "A-1"}, idempotency_key="k-1")
    with pytest.raises(IdempotencyConflict) as err:
        hub.engine.start_run("orders", {"order_id": "A-2"}, idempotency_key="k-1")
    assert "'k-1'" in str(err.value)
    assert first.run_id in str(err.value)
    assert [r.id for r in rows(hub, m.Run)] == [first.run_id]
    assert run_row(hub, first.run_id).input == {"order_id": "A-1", "qty": 1}


# ---------------------------------------------------------------------- for-each
def test_each_for_each_item_is_its_own_row_and_is_retried_alone(
    local_hub: LocalHubFactory,
) -> None:
    calls: Counter[str] = Counter()
    keys: dict[str, set[str]] = {}

    @step
    def load(data: Order) -> Doc:
        return Doc(
            order_id=data.order_id,
            lines=[Line(sku=f"S{i}", qty=i + 1) for i in range(3)],
        )

    @step(retries=3, backoff=1)
    def push_line(ctx: StepContext, data: Line) -> str:
        calls[data.sku] += 1
        keys.setdefault(data.sku, set()).add(ctx.idempotency_key)
        if data.sku == "S0" and calls["S0"] <= 2:
            raise TransientError("ERP busy")
        return f"{data.sku}x{data.qty}"

    @step
    def summary(data: list[str]) -> str:
        return ",".join(data)

    flow = Flow("orders", [load, ForEach(push_line, items=lambda doc: doc.lines), summary])
    hub = local_hub([flow])
    hub.freeze()
    run_id = hub.start("orders", {"order_id": "A-1"})
    settle(hub)

    assert calls == {"S0": 3, "S1": 1, "S2": 1}
    items = sorted(
        (r for r in rows(hub, m.Step, run_id=run_id) if r.item is not None),
        key=lambda r: r.item,
    )
    assert [(r.key, r.item, r.status, r.attempts) for r in items] == [
        ("push_line[0]", 0, "succeeded", 3),
        ("push_line[1]", 1, "succeeded", 1),
        ("push_line[2]", 2, "succeeded", 1),
    ]
    assert [r.input for r in items] == [
        {"sku": "S0", "qty": 1},
        {"sku": "S1", "qty": 2},
        {"sku": "S2", "qty": 3},
    ]
    assert [len(attempts_of(hub, r.id)) for r in items] == [3, 1, 1]
    # item 0 finished last, yet the output keeps item order
    container = step_row(hub, run_id, "push_line")
    assert (container.kind, container.status) == ("foreach", "succeeded")
    assert container.output == ["S0x1", "S1x2", "S2x3"]
    assert container.detail == {"items": 3}
    assert run_row(hub, run_id).output == "S0x1,S1x2,S2x3"
    # one key per item, stable across item 0's three attempts
    assert all(len(k) == 1 for k in keys.values())
    assert len(set().union(*keys.values())) == 3


def test_a_for_each_over_an_empty_list_outputs_an_empty_list(local_hub: LocalHubFactory) -> None:
    calls: list[Line] = []

    @step
    def load(data: Order) -> list[Line]:
        return []

    @step
    def push_line(data: Line) -> str:
        calls.append(data)
        return data.sku

    @step
    def summary(data: list[str]) -> int:
        return len(data)

    hub = local_hub([Flow("orders", [load, ForEach(push_line), summary])])
    run_id = hub.start("orders", {"order_id": "A-1"})
    hub.drain()

    assert calls == []
    steps = step_rows(hub, run_id)
    assert sorted(steps) == ["load", "push_line", "summary"]
    assert (steps["push_line"].status, steps["push_line"].output) == ("succeeded", [])
    assert steps["summary"].input == []
    assert (run_row(hub, run_id).status, run_row(hub, run_id).output) == ("succeeded", 0)


def test_a_for_each_item_that_fails_for_good_pauses_only_that_item(
    local_hub: LocalHubFactory,
) -> None:
    calls: Counter[str] = Counter()

    @step
    def push_line(data: Line) -> str:
        calls[data.sku] += 1
        if data.sku == "S1":
            raise BusinessError(f"unknown SKU {data.sku}")
        return data.sku

    @step
    def summary(data: list[str]) -> str:
        calls["summary"] += 1
        return ",".join(data)

    hub = local_hub([Flow("orders", [ForEach(push_line), summary])])
    lines = [{"sku": f"S{i}", "qty": 1} for i in range(3)]
    run_id = hub.start("orders", lines)
    hub.drain()

    assert calls == {"S0": 1, "S1": 1, "S2": 1}
    steps = step_rows(hub, run_id)
    assert steps["push_line[1]"].status == "needs_review"
    assert steps["push_line[0]"].status == steps["push_line[2]"].status == "succeeded"
    assert steps["push_line"].status == "waiting"
    assert "summary" not in steps
    (review,) = reviews_of(hub, run_id)
    assert (review.step_key, review.reason) == ("push_line[1]", "business")
    assert review.input == {"sku": "S1", "qty": 1}
    assert run_row(hub, run_id).status == "needs_review"


# ------------------------------------------------------------------------ branch
def _ticket_flow(calls: list[str]) -> Flow:
    @step
    def triage(data: Ticket) -> Ticket:
        calls.append("triage")
        return Ticket(kind=data.kind.lower(), text=data.text.strip())

    @step
    def refund(data: Ticket) -> str:
        calls.append("refund")
        return f"refunded: {data.text}"

    @step
    def escalate(data: Ticket) -> Ticket:
        calls.append("escalate")
        return Ticket(kind="bug", text=f"[P1] {data.text}")

    @step
    def notify(data: Ticket) -> str:
        calls.append("notify")
        return f"notified: {data.text}"

    @step
    def close(data: Any) -> dict[str, Any]:
        calls.append("close")
        return {"closed": data}

    route = Branch(
        on=lambda t: t.kind,
        cases={"refund": [refund], "bug": [escalate, notify], "spam": []},
        name="route",
    )
    return Flow("tickets", [triage, route, close])


def test_a_branch_runs_the_chosen_case_only(local_hub: LocalHubFactory) -> None:
    calls: list[str] = []
    hub = local_hub([_ticket_flow(calls)])
    run_id = hub.start("tickets", {"kind": "BUG", "text": " crash "})
    hub.drain()

    assert calls == ["triage", "escalate", "notify", "close"]
    steps = step_rows(hub, run_id)
    assert sorted(steps) == ["close", "route", "route/escalate", "route/notify", "triage"]
    assert steps["route"].detail == {"case": "bug"}
    assert steps["route"].output == "notified: [P1] crash"
    assert steps["close"].input == steps["route"].output
    assert run_row(hub, run_id).output == {"closed": "notified: [P1] crash"}


def test_an_empty_branch_case_passes_its_input_through(local_hub: LocalHubFactory) -> None:
    calls: list[str] = []
    hub = local_hub([_ticket_flow(calls)])
    run_id = hub.start("tickets", {"kind": "Spam", "text": "buy now"})
    hub.drain()

    assert calls == ["triage", "close"]
    steps = step_rows(hub, run_id)
    assert sorted(steps) == ["close", "route", "triage"]
    assert steps["route"].detail == {"case": "spam"}
    assert steps["route"].output == steps["triage"].output == {"kind": "spam", "text": "buy now"}
    assert run_row(hub, run_id).output == {"closed": {"kind": "spam", "text": "buy now"}}


def test_a_branch_value_with_no_case_pauses_the_run_naming_the_value(
    local_hub: LocalHubFactory,
) -> None:
    calls: list[str] = []
    hub = local_hub([_ticket_flow(calls)])
    run_id = hub.start("tickets", {"kind": "praise", "text": "great"})
    hub.drain()

    assert calls == ["triage"]
    assert run_row(hub, run_id).status == "needs_review"
    steps = step_rows(hub, run_id)
    assert sorted(steps) == ["route", "triage"]
    assert steps["route"].status == "needs_review"
    (review,) = reviews_of(hub, run_id)
    assert review.step_key == "route"
    assert review.reason == "business"
    assert "'praise'" in review.message
    assert "'refund'" in review.message  # the cases it could have been
    nothing_running(hub)


def test_a_branch_with_a_default_takes_it_for_unknown_values(local_hub: LocalHubFactory) -> None:
    @step
    def fallback(data: int) -> str:
        return f"other {data}"

    @step
    def small(data: int) -> str:
        return f"small {data}"

    flow = Flow(
        "numbers",
        [Branch(on=lambda n: n, cases={1: [small]}, default=[fallback], name="size")],
    )
    hub = local_hub([flow])
    one, seven = hub.start("numbers", 1), hub.start("numbers", 7)
    hub.drain()
    assert run_row(hub, one).output == "small 1"
    assert run_row(hub, seven).output == "other 7"
    assert step_row(hub, seven, "size").detail == {"case": "__default__"}


# ---------------------------------------------------------------------- parallel
@pytest.mark.parametrize("inline_steps", [0, 100], ids=["published", "inline"])
def test_parallel_branches_run_their_sequences_and_join_once(
    local_hub: LocalHubFactory, inline_steps: int
) -> None:
    calls: list[Any] = []

    @step
    def split(data: Order) -> Order:
        return data

    @step
    def erp_map(data: Order) -> dict[str, Any]:
        return {"id": data.order_id, "n": data.qty}

    @step
    def erp_post(data: dict[str, Any]) -> str:
        return f"erp:{data['id']}x{data['n']}"

    @step
    def crm_post(data: Order) -> str:
        return f"crm:{data.order_id}"

    @step
    def join(data: dict[str, str]) -> str:
        calls.append(data)
        return " + ".join(f"{k}={v}" for k, v in sorted(data.items()))

    flow = Flow(
        "sync",
        [split, Parallel(erp=[erp_map, erp_post], crm=[crm_post], name="fanout"), join],
    )
    hub = local_hub([flow], settings=Settings(inline_steps=inline_steps))
    run_id = hub.start("sync", {"order_id": "A-1", "qty": 2})
    hub.drain()

    steps = step_rows(hub, run_id)
    assert sorted(steps) == [
        "fanout",
        "fanout/crm_post",
        "fanout/erp_map",
        "fanout/erp_post",
        "join",
        "split",
    ]
    assert steps["fanout"].output == {"erp": "erp:A-1x2", "crm": "crm:A-1"}
    assert steps["fanout/erp_post"].input == steps["fanout/erp_map"].output
    assert steps["fanout/crm_post"].input == steps["split"].output
    assert calls == [{"erp": "erp:A-1x2", "crm": "crm:A-1"}]
    assert len(attempts_of(hub, steps["join"].id)) == 1
    assert run_row(hub, run_id).output == "crm=crm:A-1 + erp=erp:A-1x2"


def test_a_parallel_branch_in_review_holds_the_join_while_the_others_finish(
    local_hub: LocalHubFactory,
) -> None:
    calls: list[str] = []

    @step
    def erp_post(data: Order) -> str:
        calls.append("erp")
        raise BusinessError("ERP refused the order")

    @step
    def crm_post(data: Order) -> str:
        calls.append("crm")
        return "crm ok"

    @step
    def join(data: dict[str, str]) -> str:
        calls.append("join")
        return "joined"

    hub = local_hub([Flow("sync", [Parallel(erp_post, crm_post, name="fanout"), join])])
    run_id = hub.start("sync", {"order_id": "A-1"})
    hub.drain()

    assert sorted(calls) == ["crm", "erp"]
    steps = step_rows(hub, run_id)
    assert steps["fanout/crm_post"].status == "succeeded"
    assert steps["fanout/erp_post"].status == "needs_review"
    assert steps["fanout"].status == "waiting"
    assert "join" not in steps
    hub.engine.complete(run_id, "erp by hand", by="ana")
    hub.drain()
    assert calls.count("join") == 1
    assert step_rows(hub, run_id)["fanout"].output == {
        "erp_post": "erp by hand",
        "crm_post": "crm ok",
    }
    assert run_row(hub, run_id).status == "succeeded"


# ---------------------------------------------------------------------- sub-flow
def _archive_flows(child_step: Any) -> list[Flow]:
    @step
    def prepare(data: Order) -> Order:
        return Order(order_id=data.order_id.upper(), qty=data.qty)

    @step
    def finish(data: str) -> str:
        return f"done ({data})"

    parent = Flow("orders", [prepare, SubFlow("archive", name="archive_it"), finish])
    return [parent, Flow("archive", [child_step])]


def test_a_subflow_runs_a_child_run_whose_output_becomes_the_node_output(
    local_hub: LocalHubFactory,
) -> None:
    seen: list[dict[str, Any]] = []

    @step
    def archive_doc(ctx: StepContext, data: Order) -> str:
        seen.append(hub.run(ctx.run_id))
        return f"archived {data.order_id}"

    hub = local_hub(_archive_flows(archive_doc))
    run_id = hub.start("orders", {"order_id": "a-1"})
    hub.drain()

    node = step_row(hub, run_id, "archive_it")
    (child,) = rows(hub, m.Run, parent_run_id=run_id)
    assert (child.flow, child.parent_step_id, child.trigger) == (
        "archive",
        node.id,
        f"subflow:{run_id}",
    )
    assert child.input == {"order_id": "A-1", "qty": 1}
    assert (child.status, child.output) == ("succeeded", "archived A-1")
    assert child.started_at is not None
    assert (node.kind, node.status, node.output) == ("subflow", "succeeded", "archived A-1")
    assert node.detail == {"child_run": child.id}
    assert step_row(hub, run_id, "finish").input == "archived A-1"
    assert run_row(hub, run_id).output == "done (archived A-1)"
    # while its step ran, the child run was running (not still queued)
    assert [(s["id"], s["status"]) for s in seen] == [(child.id, "running")]


def test_a_child_that_fails_for_good_pauses_the_child_and_the_parent_waits(
    local_hub: LocalHubFactory,
) -> None:
    calls: list[str] = []

    @step
    def archive_doc(data: Order) -> str:
        calls.append(data.order_id)
        if len(calls) == 1:
            raise BusinessError("archive is full")
        return f"archived {data.order_id}"

    hub = local_hub(_archive_flows(archive_doc))
    run_id = hub.start("orders", {"order_id": "a-1"})
    hub.drain()

    (child,) = rows(hub, m.Run, parent_run_id=run_id)
    assert child.status == "needs_review"
    (review,) = reviews_of(hub, child.id)
    assert (review.step_key, review.message) == ("archive_doc", "archive is full")
    assert reviews_of(hub, run_id) == []
    assert run_row(hub, run_id).status == "running"
    parent_steps = step_rows(hub, run_id)
    assert parent_steps["archive_it"].status == "waiting"
    assert "finish" not in parent_steps

    hub.engine.resume(child.id, by="ana")
    hub.drain()
    assert calls == ["A-1", "A-1"]
    assert run_row(hub, child.id).status == "succeeded"
    assert run_row(hub, run_id).output == "done (archived A-1)"


def test_cancelling_the_parent_cancels_its_child(local_hub: LocalHubFactory) -> None:
    @step
    def archive_doc(data: Order) -> str:
        raise NeedsReview("which archive?")

    hub = local_hub(_archive_flows(archive_doc))
    run_id = hub.start("orders", {"order_id": "a-1"})
    hub.drain()
    (child,) = rows(hub, m.Run, parent_run_id=run_id)
    assert child.status == "needs_review"

    hub.engine.cancel(run_id, by="ops")
    assert run_row(hub, run_id).status == "cancelled"
    child = run_row(hub, child.id)
    assert child.status == "cancelled"
    assert child.error == f"parent run {run_id} cancelled"
    assert {r.status for r in rows(hub, m.Step, run_id=child.id)} == {"cancelled"}
    assert step_row(hub, run_id, "archive_it").status == "cancelled"
    (review,) = reviews_of(hub, child.id)
    assert (review.status, review.resolution, review.resolved_by) == ("closed", "cancelled", "ops")
    nothing_running(hub)


def test_a_subflow_input_mapping_that_does_not_fit_the_child_goes_to_review(
    local_hub: LocalHubFactory,
) -> None:
    @step
    def archive_doc(data: Order) -> str:
        return data.order_id

    @step
    def start(data: Order) -> Order:
        return data

    parent = Flow(
        "orders", [start, SubFlow("archive", input=lambda o: {"id": o.order_id}, name="arch")]
    )
    hub = local_hub([parent, Flow("archive", [archive_doc])])
    run_id = hub.start("orders", {"order_id": "A-1"})
    hub.drain()
    assert rows(hub, m.Run, parent_run_id=run_id) == []
    (review,) = reviews_of(hub, run_id)
    assert review.step_key == "arch"
    assert "sub-flow 'archive'" in review.message
    assert "order_id" in review.message


# ------------------------------------------------------------------------ errors
def test_a_transient_error_is_retried_with_backoff_then_goes_to_review(
    local_hub: LocalHubFactory,
) -> None:
    calls: list[int] = []

    @step(retries=2, backoff=10)
    def post(ctx: StepContext, data: Order) -> str:
        calls.append(ctx.attempt)
        raise TransientError("ERP busy")

    @step
    def after(data: str) -> str:
        calls.append(-1)
        return data

    hub = local_hub([Flow("orders", [post, after])])
    hub.freeze()
    run_id = hub.start("orders", {"order_id": "A-1"})
    hub.drain()

    waits = []
    for attempt, base in ((1, 10), (2, 20)):
        assert calls == list(range(1, attempt + 1))
        row = step_row(hub, run_id, "post")
        assert row.status == "ready"
        wait = (row.not_before - hub.engine.clock()).total_seconds()
        assert base * 0.5 <= wait <= base, wait  # exponential, with jitter
        waits.append(wait)
        hub.advance(wait - 0.5)
        assert hub.drain() == 0  # not due yet
        hub.advance(0.5)
        hub.drain()

    assert calls == [1, 2, 3]
    row = step_row(hub, run_id, "post")
    assert (row.status, row.error_kind, row.attempts) == ("needs_review", "transient", 3)
    assert [a.error_kind for a in attempts_of(hub, row.id)] == ["transient"] * 3
    (review,) = reviews_of(hub, run_id)
    assert (review.reason, review.message) == ("transient", "ERP busy")
    assert review.error_class == "hub.errors.TransientError"
    assert run_row(hub, run_id).status == "needs_review"
    assert event_kinds(hub, run_id).count("step.retry") == 2
    nothing_running(hub)


def test_an_application_error_is_retried_like_a_transient_one_then_goes_to_review(
    local_hub: LocalHubFactory,
) -> None:
    calls: list[int] = []

    @step(retries=1, backoff=1)
    def post(data: Order) -> str:
        calls.append(1)
        raise KeyError("customer_no")

    hub = local_hub([Flow("orders", [post])])
    hub.freeze()
    run_id = hub.start("orders", {"order_id": "A-1"})
    hub.drain()
    assert len(calls) == 1
    assert step_row(hub, run_id, "post").not_before > hub.engine.clock()
    settle(hub)

    assert len(calls) == 2
    row = step_row(hub, run_id, "post")
    assert (row.status, row.error_kind) == ("needs_review", "error")
    (review,) = reviews_of(hub, run_id)
    assert (review.reason, review.error_class) == ("error", "KeyError")
    assert "customer_no" in review.message
    assert "KeyError" in attempts_of(hub, row.id)[-1].error  # the traceback is kept


def test_a_business_error_goes_to_review_at_once_with_one_review_item(
    local_hub: LocalHubFactory,
) -> None:
    calls: list[str] = []

    @step(retries=5)
    def check(data: Order) -> Order:
        calls.append(data.order_id)
        raise BusinessError(f"postal code missing on {data.order_id}")

    hub = local_hub([Flow("orders", [check])])
    run_id = hub.start("orders", {"order_id": "A-1", "qty": 2})
    hub.drain()

    assert calls == ["A-1"]
    row = step_row(hub, run_id, "check")
    assert (row.status, row.attempts, row.not_before) == ("needs_review", 1, None)
    (review,) = reviews_of(hub, run_id)
    assert (review.status, review.reason, review.flow, review.step_id) == (
        "open",
        "business",
        "orders",
        row.id,
    )
    assert review.message == "postal code missing on A-1"
    assert review.error_class == "hub.errors.BusinessError"
    assert review.input == {"order_id": "A-1", "qty": 2}
    assert review.form_schema is None
    assert run_row(hub, run_id).status == "needs_review"
    assert "step.needs_review" in event_kinds(hub, run_id)


def test_needs_review_with_a_form_stores_the_form_schema(local_hub: LocalHubFactory) -> None:
    @step
    def approve(data: Order) -> Approval:
        raise NeedsReview(f"approve {data.qty} units?", form=Approval)

    hub = local_hub([Flow("orders", [approve])])
    run_id = hub.start("orders", {"order_id": "A-1", "qty": 900})
    hub.drain()

    (review,) = reviews_of(hub, run_id)
    assert (review.reason, review.message) == ("question", "approve 900 units?")
    schema = dict(review.form_schema)
    assert schema.pop("x-hub-form") == f"{Approval.__module__}:{Approval.__qualname__}"
    assert schema == Approval.model_json_schema()
    assert len(attempts_of(hub, review.step_id)) == 1


def test_a_policy_violation_is_not_retried(local_hub: LocalHubFactory) -> None:
    calls: list[str] = []

    @step(retries=5)
    def call_out(data: Order) -> str:
        calls.append(data.order_id)
        raise PolicyViolation("http://10.0.0.1 is outside the allow-list")

    hub = local_hub([Flow("orders", [call_out])])
    hub.freeze()
    run_id = hub.start("orders", {"order_id": "A-1"})
    settle(hub)

    assert calls == ["A-1"]
    (review,) = reviews_of(hub, run_id)
    assert review.reason == "policy"
    assert "allow-list" in review.message
    assert step_row(hub, run_id, "call_out").attempts == 1


def test_a_transient_error_with_retry_after_waits_exactly_that_long(
    local_hub: LocalHubFactory,
) -> None:
    calls: list[int] = []

    @step(retries=3, backoff=1)
    def post(data: Order) -> str:
        calls.append(1)
        if len(calls) == 1:
            raise TransientError("429 Too Many Requests", retry_after=7)
        return "posted"

    hub = local_hub([Flow("orders", [post])])
    hub.freeze()
    run_id = hub.start("orders", {"order_id": "A-1"})
    hub.drain()
    row = step_row(hub, run_id, "post")
    assert row.not_before == hub.engine.clock() + timedelta(seconds=7)
    assert [c for _, _, c in hub.published][-1] == 7
    hub.advance(6.9)
    assert hub.drain() == 0
    hub.advance(0.1)
    hub.drain()
    assert len(calls) == 2
    assert run_row(hub, run_id).output == "posted"


def test_a_long_retry_wait_lives_in_sql_and_the_reconciler_publishes_it_when_due(
    local_hub: LocalHubFactory,
) -> None:
    calls: list[int] = []

    @step(retries=1)
    def post(data: Order) -> str:
        calls.append(1)
        if len(calls) == 1:
            raise TransientError("maintenance window", retry_after=3600)
        return "posted"

    hub = local_hub([Flow("orders", [post])], settings=Settings(countdown_max=30))
    hub.freeze()
    run_id = hub.start("orders", {"order_id": "A-1"})
    hub.drain()
    row = step_row(hub, run_id, "post")
    assert (row.status, row.dispatched_at) == ("ready", None)
    assert hub.queue == []  # no broker message waits an hour
    hub.advance(3599)
    assert hub.engine.tick()["published"] == 0
    hub.advance(1)
    assert hub.engine.tick()["published"] == 1
    hub.drain()
    assert len(calls) == 2
    assert run_row(hub, run_id).status == "succeeded"


def test_a_step_returning_the_wrong_output_type_goes_to_review(
    local_hub: LocalHubFactory,
) -> None:
    calls: list[int] = []

    @step(retries=3)
    def price(data: Order) -> Priced:
        calls.append(1)
        return {"order_id": data.order_id}  # type: ignore[return-value]

    hub = local_hub([Flow("orders", [price])])
    run_id = hub.start("orders", {"order_id": "A-1"})
    hub.drain()

    assert len(calls) == 1  # a wrong output is a bug to look at, not to retry
    row = step_row(hub, run_id, "price")
    assert (row.status, row.output) == ("needs_review", None)
    (review,) = reviews_of(hub, run_id)
    assert review.reason == "business"
    assert "wrong output" in review.message
    assert "total" in review.message


def test_a_step_whose_input_does_not_fit_its_model_goes_to_review(
    local_hub: LocalHubFactory,
) -> None:
    @step
    def load(data: Order) -> dict[str, Any]:
        return {"sku": data.order_id}

    @step
    def push(data: Line) -> str:
        return data.sku

    hub = local_hub([Flow("orders", [load, push])])
    run_id = hub.start("orders", {"order_id": "A-1"})
    hub.drain()
    (review,) = reviews_of(hub, run_id)
    assert (review.step_key, review.reason) == ("push", "business")
    assert "qty" in review.message


def test_a_step_that_runs_past_its_timeout_counts_as_transient(
    local_hub: LocalHubFactory,
) -> None:
    @step(timeout=0.1, retries=0)
    def slow(data: Order) -> str:
        time.sleep(2)
        return "late"

    hub = local_hub([Flow("orders", [slow])])
    run_id = hub.start("orders", {"order_id": "A-1"})
    started = time.monotonic()
    hub.drain()
    assert time.monotonic() - started < 1.5
    (review,) = reviews_of(hub, run_id)
    assert review.reason == "transient"
    assert "ran past its timeout of 0.1 s" in review.message


def test_a_step_timeout_leaves_an_outer_alarm_armed(local_hub: LocalHubFactory) -> None:
    @step(timeout=5)
    def quick(data: Order) -> str:
        return "ok"

    hub = local_hub([Flow("orders", [quick])])
    previous = signal.signal(signal.SIGALRM, lambda *_: None)
    outer = signal.setitimer(signal.ITIMER_REAL, 100)
    try:
        hub.start("orders", {"order_id": "A-1"})
        hub.drain()
        left, _ = signal.getitimer(signal.ITIMER_REAL)
    finally:
        signal.setitimer(signal.ITIMER_REAL, *outer)
        signal.signal(signal.SIGALRM, previous)
    assert 90 < left <= 100  # e.g. pytest-timeout's alarm still guards this test


# ------------------------------------------------------- reliability, in-process
def test_a_non_retryable_error_in_a_middle_step_stops_the_run_with_one_review_item(
    local_hub: LocalHubFactory,
) -> None:
    """RELIABILITY.md item 14, in-process."""
    calls: list[str] = []

    @step
    def first(data: Order) -> Order:
        calls.append("first")
        return data

    @step(retries=3)
    def middle(data: Order) -> Order:
        calls.append("middle")
        raise BusinessError("customer blocked")

    @step
    def last(data: Order) -> Order:
        calls.append("last")
        return data

    hub = local_hub([Flow("orders", [first, middle, last])])
    run_id = hub.start("orders", {"order_id": "A-1"})
    hub.drain()
    hub.engine.tick()
    hub.drain()

    assert calls == ["first", "middle"]
    assert len(reviews_of(hub, run_id)) == 1
    steps = step_rows(hub, run_id)
    assert {k: s.status for k, s in steps.items()} == {
        "first": "succeeded",
        "middle": "needs_review",
    }
    assert steps["middle"].lease_owner is None and steps["middle"].lease_expires_at is None
    assert run_row(hub, run_id).status == "needs_review"
    nothing_running(hub)


def test_a_run_cancelled_before_its_first_step_ran_executes_nothing(
    local_hub: LocalHubFactory,
) -> None:
    """RELIABILITY.md item 16, in-process: the message is still queued, the run is not."""
    calls: list[str] = []

    @step
    def side_effect(data: Order) -> str:
        calls.append(data.order_id)
        return "done"

    hub = local_hub([Flow("orders", [side_effect])])
    run_id = hub.start("orders", {"order_id": "A-1"})
    assert len(hub.queue) == 1
    hub.engine.cancel(run_id, by="ops", reason="wrong customer")
    hub.drain()
    hub.engine.tick()
    hub.drain()

    assert calls == []
    run = run_row(hub, run_id)
    assert (run.status, run.error) == ("cancelled", "wrong customer")
    row = step_row(hub, run_id, "side_effect")
    assert (row.status, row.attempts) == ("cancelled", 0)
    assert attempts_of(hub, row.id) == []


def test_a_step_published_twice_runs_once(local_hub: LocalHubFactory) -> None:
    calls: list[str] = []

    @step
    def side_effect(data: Order) -> str:
        calls.append(data.order_id)
        return "done"

    hub = local_hub([Flow("orders", [side_effect])])
    run_id = hub.start("orders", {"order_id": "A-1"})
    hub.queue.append(hub.queue[0])  # a duplicate delivery
    assert hub.drain() == 2
    assert calls == ["A-1"]
    assert len(attempts_of(hub, step_row(hub, run_id, "side_effect").id)) == 1


class Crash(BaseException):
    """The worker process dies here (not an Exception: the engine must not catch it)."""


def test_a_lost_publish_after_a_commit_is_republished_by_the_reconciler(
    local_hub: LocalHubFactory,
) -> None:
    """RELIABILITY.md item 5, in-process: crash after the commit, before the next publish."""
    calls: Counter[str] = Counter()

    @step
    def first(data: Order) -> Order:
        calls["first"] += 1
        return data

    @step
    def second(data: Order) -> str:
        calls["second"] += 1
        return f"second {data.order_id}"

    settings = Settings(inline_steps=0, redeliver_after=0.1)
    hub = local_hub([Flow("orders", [first, second])], settings=settings)
    hub.freeze()
    run_id = hub.start("orders", {"order_id": "A-1"})
    ((first_id, _, _),) = hub.queue
    hub.queue.clear()

    def crash(step_id: str, queue: str, countdown: float | None) -> None:
        raise Crash

    hub.engine.publish = crash
    with pytest.raises(Crash):
        hub.engine.execute(first_id)
    hub.engine.publish = hub._publish

    assert step_row(hub, run_id, "first").status == "succeeded"
    assert step_row(hub, run_id, "second").status == "ready"
    assert hub.queue == []
    assert hub.engine.tick()["published"] == 0  # not stale yet
    hub.advance(1)
    assert hub.engine.tick()["published"] == 1
    hub.drain()

    assert calls == {"first": 1, "second": 1}
    assert run_row(hub, run_id).output == "second A-1"
    assert len(attempts_of(hub, step_row(hub, run_id, "first").id)) == 1


def test_a_worker_that_dies_mid_step_leaves_a_lease_the_reconciler_frees(
    local_hub: LocalHubFactory,
) -> None:
    calls: Counter[str] = Counter()

    @step
    def first(data: Order) -> Order:
        calls["first"] += 1
        return data

    @step
    def second(data: Order) -> str:
        calls["second"] += 1
        if calls["second"] == 1:
            raise Crash  # the worker process dies while the step runs
        return "ok"

    hub = local_hub([Flow("orders", [first, second])], settings=Settings(lease_seconds=30))
    hub.freeze()
    run_id = hub.start("orders", {"order_id": "A-1"})
    with pytest.raises(Crash):
        hub.drain()
    assert step_row(hub, run_id, "second").status == "running"
    hub.advance(29)
    assert hub.engine.tick()["lost"] == 0  # the lease still holds
    hub.advance(2)
    assert hub.engine.tick() == {"lost": 1, "published": 1}
    hub.drain()

    assert calls == {"first": 1, "second": 2}
    row = step_row(hub, run_id, "second")
    assert (row.status, row.losses) == ("succeeded", 1)
    assert [a.status for a in attempts_of(hub, row.id)] == ["lost", "succeeded"]
    assert run_row(hub, run_id).status == "succeeded"


def _expire_lease(hub: LocalHub, step_id: str) -> None:
    with hub.store.transaction() as s:
        s.execute(
            update(m.Step)
            .where(m.Step.id == step_id)
            .values(lease_expires_at=hub.engine.clock() - timedelta(seconds=1))
        )


def test_an_expired_lease_makes_the_step_ready_again_and_marks_the_attempt_lost(
    local_hub: LocalHubFactory,
) -> None:
    calls: list[int] = []

    @step(retries=0)
    def post(ctx: StepContext, data: Order) -> int:
        calls.append(ctx.attempt)
        return ctx.attempt

    hub = local_hub([Flow("orders", [post])])
    hub.freeze()
    run_id = hub.start("orders", {"order_id": "A-1"})
    ((step_id, _, _),) = hub.queue
    hub.queue.clear()
    assert hub.engine.claim(step_id) is not None  # a worker takes it, then dies
    _expire_lease(hub, step_id)

    assert hub.engine.tick() == {"lost": 1, "published": 1}
    row = step_row(hub, run_id, "post")
    assert (row.status, row.losses, row.lease_owner) == ("ready", 1, None)
    (lost,) = attempts_of(hub, step_id)
    assert (lost.status, lost.error_kind) == ("lost", "lost")
    assert "step.lost" in event_kinds(hub, run_id)
    hub.drain()

    assert calls == [2]  # a lost attempt does not use up the step's retries
    assert [a.status for a in attempts_of(hub, step_id)] == ["lost", "succeeded"]
    assert run_row(hub, run_id).output == 2


@pytest.mark.parametrize("where", ["step option", "setting"])
def test_a_step_lost_max_losses_times_goes_to_review_as_lost(
    local_hub: LocalHubFactory, where: str
) -> None:
    calls: list[int] = []

    def post(data: Order) -> str:
        calls.append(1)
        return "posted"

    if where == "step option":
        hub = local_hub([Flow("orders", [step(max_losses=2)(post)])])
    else:
        hub = local_hub([Flow("orders", [step(post)])], settings=Settings(max_losses=2))
    hub.freeze()
    run_id = hub.start("orders", {"order_id": "A-1"})
    ((step_id, _, _),) = hub.queue
    for _ in range(2):
        hub.queue.clear()
        assert hub.engine.claim(step_id) is not None
        _expire_lease(hub, step_id)
        hub.engine.tick()
    hub.drain()

    assert calls == []
    row = step_row(hub, run_id, "post")
    assert (row.status, row.losses) == ("needs_review", 2)
    assert [a.status for a in attempts_of(hub, step_id)] == ["lost", "lost"]
    (review,) = reviews_of(hub, run_id)
    assert (review.reason, review.error_class) == ("lost", "WorkerLost")
    assert "worker lost repeatedly" in review.message
    assert run_row(hub, run_id).status == "needs_review"
    nothing_running(hub)


def test_a_redelivered_step_whose_worker_process_is_gone_runs_at_once(
    local_hub: LocalHubFactory,
) -> None:
    calls: list[int] = []

    @step
    def post(ctx: StepContext, data: Order) -> int:
        calls.append(ctx.attempt)
        return ctx.attempt

    hub = local_hub([Flow("orders", [post])], settings=Settings(lease_seconds=3600))
    run_id = hub.start("orders", {"order_id": "A-1"})
    ((step_id, _, _),) = hub.queue
    gone = subprocess.run([sys.executable, "-c", "pass"], check=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    assert gone.returncode == 0
    assert hub.engine.claim(step_id) is not None
    with hub.store.transaction() as s:  # the claim belonged to a process that has exited
        s.execute(
            update(m.Step)
            .where(m.Step.id == step_id)
            .values(lease_owner=f"{socket.gethostname()}:{dead.pid}:0a0b0c")
        )
    hub.drain()  # the broker redelivers the message; the lease is still an hour long

    assert calls == [2]
    row = step_row(hub, run_id, "post")
    assert (row.status, row.losses) == ("succeeded", 1)
    assert [a.status for a in attempts_of(hub, step_id)] == ["lost", "succeeded"]


def test_a_run_cancelled_while_its_step_runs_does_not_go_on(local_hub: LocalHubFactory) -> None:
    calls: list[str] = []

    @step
    def first(ctx: StepContext, data: Order) -> Order:
        calls.append("first")
        hub.engine.cancel(ctx.run_id, by="ops")  # someone cancels meanwhile
        return data

    @step
    def second(data: Order) -> Order:
        calls.append("second")
        return data

    hub = local_hub([Flow("orders", [first, second])])
    run_id = hub.start("orders", {"order_id": "A-1"})
    hub.drain()

    assert calls == ["first"]
    assert run_row(hub, run_id).status == "cancelled"
    steps = step_rows(hub, run_id)
    assert list(steps) == ["first"]
    assert (steps["first"].status, steps["first"].output) == ("cancelled", None)
    nothing_running(hub)


class Shipment(BaseModel):
    order_id: str
    due: list[date]


def test_for_each_items_that_are_not_plain_json_are_stored_as_json(
    local_hub: LocalHubFactory,
) -> None:
    @step
    def plan(data: Order) -> Shipment:
        return Shipment(order_id=data.order_id, due=[date(2025, 3, 30), date(2025, 11, 2)])

    @step
    def book(data: date) -> str:
        return f"booked {data:%d.%m.}"

    each = ForEach(book, items=lambda s: s.due)  # typed: a list of `date` objects
    hub = local_hub([Flow("shipping", [plan, each])])
    run_id = hub.start("shipping", {"order_id": "A-1"})
    hub.drain()

    assert [r.input for r in rows(hub, m.Step, run_id=run_id, node="book") if r.item is not None]
    assert sorted(
        r.input for r in rows(hub, m.Step, run_id=run_id, node="book") if r.item is not None
    ) == ["2025-03-30", "2025-11-02"]
    assert run_row(hub, run_id).output == ["booked 30.03.", "booked 02.11."]


def test_a_for_each_of_subflows_starts_one_child_run_per_item(local_hub: LocalHubFactory) -> None:
    @step
    def archive_doc(data: Order) -> str:
        return f"archived {data.order_id}"

    @step
    def count(data: list[str]) -> str:
        return "; ".join(data)

    parent = Flow("batch", [ForEach(SubFlow("archive"), name="archive_each"), count])
    hub = local_hub([parent, Flow("archive", [archive_doc])])
    run_id = hub.start("batch", [{"order_id": "A-1"}, {"order_id": "A-2"}])
    hub.drain()

    children = rows(hub, m.Run, parent_run_id=run_id)
    items = {r.id: r for r in rows(hub, m.Step, run_id=run_id, node="archive_each")}
    assert sorted((c.status, c.output) for c in children) == [
        ("succeeded", "archived A-1"),
        ("succeeded", "archived A-2"),
    ]
    assert {items[c.parent_step_id].item for c in children} == {0, 1}
    assert run_row(hub, run_id).output == "archived A-1; archived A-2"


def test_a_step_on_another_queue_is_published_to_that_queue(local_hub: LocalHubFactory) -> None:
    @step
    def fetch(data: Order) -> Order:
        return data

    @step(queue="browser")
    def type_into_legacy_app(data: Order) -> str:
        return f"typed {data.order_id}"

    hub = local_hub([Flow("orders", [fetch, type_into_legacy_app])])
    run_id = hub.start("orders", {"order_id": "A-1"})
    hub.drain()

    row = step_row(hub, run_id, "type_into_legacy_app")
    assert row.queue == "browser"
    assert [(sid, q) for sid, q, _ in hub.published] == [
        (step_row(hub, run_id, "fetch").id, "default"),
        (row.id, "browser"),
    ]
    assert run_row(hub, run_id).output == "typed A-1"


def test_the_backoff_never_exceeds_backoff_max(local_hub: LocalHubFactory) -> None:
    @step(retries=6, backoff=10, backoff_max=25)
    def post(data: Order) -> str:
        raise TransientError("busy")

    hub = local_hub([Flow("orders", [post])])
    hub.freeze()
    run_id = hub.start("orders", {"order_id": "A-1"})
    hub.drain()
    waits = []
    for _ in range(5):
        row = step_row(hub, run_id, "post")
        waits.append((row.not_before - hub.engine.clock()).total_seconds())
        hub.advance(waits[-1])
        hub.drain()
    assert 5 <= waits[0] <= 10
    assert all(12.5 <= w <= 25 for w in waits[2:]), waits


def test_for_each_items_that_cannot_be_json_pause_the_run_instead_of_crashing_it(
    local_hub: LocalHubFactory,
) -> None:
    @step
    def start(data: Order) -> Order:
        return data

    @step
    def book(data: Any) -> str:
        return "booked"

    hub = local_hub([Flow("shipping", [start, ForEach(book, items=lambda o: [object()])])])
    run_id = hub.start("shipping", {"order_id": "A-1"})
    hub.drain()

    (review,) = reviews_of(hub, run_id)
    assert (review.step_key, review.reason) == ("book", "error")
    assert "object" in review.message
    assert run_row(hub, run_id).status == "needs_review"
    nothing_running(hub)


def test_containers_nest_and_each_reports_its_own_output(local_hub: LocalHubFactory) -> None:
    @step
    def double(data: int) -> int:
        return data * 2

    @step
    def left(data: list[int]) -> str:
        return f"left {data}"

    @step
    def right(data: list[int]) -> str:
        return f"right {sum(data)}"

    @step
    def join(data: dict[str, Any]) -> dict[str, Any]:
        return data

    inner = Parallel(left, right, name="inner")
    flow = Flow(
        "nested",
        [
            Parallel(
                each=[ForEach(double, name="doubled")],
                none=[ForEach(double, items=lambda _: [], name="nothing")],
                route=[Branch(on=len, cases={3: [inner]}, default=[], name="by_len")],
                name="outer",
            ),
            join,
        ],
    )
    hub = local_hub([flow])
    run_id = hub.start("nested", [1, 2, 3])
    hub.drain()

    assert run_row(hub, run_id).output == {
        "each": [2, 4, 6],
        "none": [],
        "route": {"left": "left [1, 2, 3]", "right": "right 6"},
    }
    steps = step_rows(hub, run_id)
    assert steps["outer/by_len/inner/left"].status == "succeeded"
    assert steps["outer/doubled[2]"].output == 6
    assert sorted(steps) == [
        "join",
        "outer",
        "outer/by_len",
        "outer/by_len/inner",
        "outer/by_len/inner/left",
        "outer/by_len/inner/right",
        "outer/doubled",
        "outer/doubled[0]",
        "outer/doubled[1]",
        "outer/doubled[2]",
        "outer/nothing",
    ]
    nothing_running(hub)


def test_cancelling_a_child_run_pauses_the_parents_node_for_review(
    local_hub: LocalHubFactory,
) -> None:
    @step
    def archive_doc(data: Order) -> str:
        raise NeedsReview("which archive?")

    hub = local_hub(_archive_flows(archive_doc))
    run_id = hub.start("orders", {"order_id": "a-1"})
    hub.drain()
    (child,) = rows(hub, m.Run, parent_run_id=run_id)
    hub.engine.cancel(child.id, by="ops", reason="not needed")

    assert run_row(hub, child.id).status == "cancelled"
    assert run_row(hub, run_id).status == "needs_review"
    (review,) = reviews_of(hub, run_id)
    assert (review.step_key, review.reason) == ("archive_it", "subflow")
    assert "not needed" in review.message
    with pytest.raises(RunStateError) as err:
        hub.engine.complete(run_id, "archived by hand", by="ops")
    assert "'archive_it' is a subflow" in str(err.value)
    assert run_row(hub, run_id).status == "needs_review"


def test_a_run_input_for_a_flow_without_an_entry_step_is_stored_as_json(
    local_hub: LocalHubFactory,
) -> None:
    @step
    def book(data: date) -> str:
        return f"booked {data:%d.%m.}"

    hub = local_hub([Flow("shipping", [ForEach(book)])])
    run_id = hub.start("shipping", [date(2025, 3, 30)])  # e.g. a schedule's input function
    hub.drain()
    assert run_row(hub, run_id).input == ["2025-03-30"]
    assert run_row(hub, run_id).output == ["booked 30.03."]
    with pytest.raises(InvalidInput) as err:
        hub.start("shipping", [object()])
    assert "flow 'shipping'" in str(err.value)
    assert len(rows(hub, m.Run)) == 1
