"""What a person does with a paused run: resume, edit and retry, skip, complete, abort, cancel.

Each action is checked against the stored rows it leaves, and the audit event it writes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from pydantic import BaseModel

from hub import Branch, BusinessError, Flow, ForEach, Parallel, SubFlow, TransientError, step
from hub import models as m
from hub.errors import InvalidInput, RunNotFound, RunStateError
from hub.testing import LocalHub
from tests.hub.rows import LocalHubFactory, events, reviews_of, rows, run_row, step_row


class Order(BaseModel):
    order_id: str
    qty: int = 1


class Priced(BaseModel):
    order_id: str
    total: float


# --------------------------------------------------------------------- helpers
def snapshot(hub: LocalHub, run_id: str) -> dict[str, Any]:
    """Everything an action may change, to prove a refused action changed nothing."""
    return {
        "run": (lambda r: (r.status, r.error, r.output))(run_row(hub, run_id)),
        "steps": sorted(
            (s.key, s.status, s.input, s.output, s.attempts, s.budget)
            for s in rows(hub, m.Step, run_id=run_id)
        ),
        "reviews": [(r.status, r.resolution) for r in reviews_of(hub, run_id)],
        "events": len(events(hub, run_id)),
        "published": len(hub.published),
    }


def three_steps(calls: Counter[str], fail_middle: Callable[[Order, int], None]) -> Flow:
    """``load -> price -> label``; ``price`` calls ``fail_middle(data, call_number)`` first."""

    @step
    def load(data: Order) -> Order:
        calls["load"] += 1
        return data

    @step(retries=1, backoff=1)
    def price(data: Order) -> Priced:
        calls["price"] += 1
        fail_middle(data, calls["price"])
        return Priced(order_id=data.order_id, total=data.qty * 2.0)

    @step
    def label(data: Priced) -> str:
        calls["label"] += 1
        return f"{data.order_id}={data.total:g}"

    return Flow("orders", [load, price, label])


def business_once(data: Order, n: int) -> None:
    if n == 1:
        raise BusinessError(f"no price list for {data.order_id}")


def business_always(data: Order, n: int) -> None:
    raise BusinessError(f"no price list for {data.order_id}")


def paused(
    hub_factory: LocalHubFactory, fail: Callable[[Order, int], None]
) -> tuple[LocalHub, str, Counter[str]]:
    calls: Counter[str] = Counter()
    hub = hub_factory([three_steps(calls, fail)])
    hub.freeze()
    run_id = hub.start("orders", {"order_id": "A-1", "qty": 3})
    hub.drain()
    hub.advance(10)  # past the one retry's backoff, for errors that are retried
    hub.drain()
    assert run_row(hub, run_id).status == "needs_review"
    return hub, run_id, calls


# ------------------------------------------------------------------------ resume
def test_resume_runs_the_paused_step_again_and_never_reruns_finished_steps(
    local_hub: LocalHubFactory,
) -> None:
    hub, run_id, calls = paused(local_hub, business_once)
    hub.engine.resume(run_id, by="ana")
    hub.drain()

    assert calls == {"load": 1, "price": 2, "label": 1}
    assert run_row(hub, run_id).output == "A-1=6"
    assert len(rows(hub, m.Attempt, step_id=step_row(hub, run_id, "load").id)) == 1
    (review,) = reviews_of(hub, run_id)
    assert (review.status, review.resolution, review.resolved_by) == ("closed", "retried", "ana")
    (resumed,) = events(hub, run_id, "step.resumed")
    assert (resumed.actor, resumed.step_id) == ("ana", review.step_id)


def test_resume_gives_the_step_a_fresh_set_of_retries(local_hub: LocalHubFactory) -> None:
    def transient_always(data: Order, n: int) -> None:
        raise TransientError("price service down")

    hub, run_id, calls = paused(local_hub, transient_always)
    assert calls["price"] == 2  # retries=1: two attempts, then review
    hub.engine.resume(run_id, by="ana")
    for _ in range(5):
        hub.advance(10)
        hub.drain()

    assert calls["price"] == 4  # two more attempts after the resume
    assert calls["label"] == 0
    row = step_row(hub, run_id, "price")
    assert (row.status, row.attempts) == ("needs_review", 4)
    assert [(r.status, r.resolution) for r in reviews_of(hub, run_id)] == [
        ("closed", "retried"),
        ("open", None),
    ]


def test_resume_with_edited_input_validates_it_and_runs_with_it(
    local_hub: LocalHubFactory,
) -> None:
    def too_many(data: Order, n: int) -> None:
        if data.qty > 2:
            raise BusinessError(f"qty {data.qty} is over the limit")

    hub, run_id, calls = paused(local_hub, too_many)
    before = step_row(hub, run_id, "price").input
    hub.engine.resume(run_id, input={"order_id": "A-1", "qty": "2"}, by="ana")
    hub.drain()

    row = step_row(hub, run_id, "price")
    assert row.input == {"order_id": "A-1", "qty": 2}  # validated and stored as JSON
    assert row.output == {"order_id": "A-1", "total": 4.0}
    assert run_row(hub, run_id).output == "A-1=4"
    (edited,) = events(hub, run_id, "step.input_edited")
    assert edited.actor == "ana"
    assert edited.data == {"before": before, "after": {"order_id": "A-1", "qty": 2}}
    assert reviews_of(hub, run_id)[0].resolution == "edited"
    assert calls == {"load": 1, "price": 2, "label": 1}


def test_resume_with_invalid_edited_input_names_the_field_and_changes_nothing(
    local_hub: LocalHubFactory,
) -> None:
    hub, run_id, calls = paused(local_hub, business_always)
    before = snapshot(hub, run_id)
    with pytest.raises(InvalidInput) as err:
        hub.engine.resume(run_id, input={"order_id": "A-1", "qty": "lots"}, by="ana")
    assert "qty" in str(err.value)
    assert [e["loc"] for e in err.value.errors] == [("qty",)]
    assert snapshot(hub, run_id) == before
    assert hub.drain() == 0
    assert calls["price"] == 1


def test_two_resumes_of_one_review_apply_once(local_hub: LocalHubFactory) -> None:
    hub, run_id, calls = paused(local_hub, business_always)
    hub.engine.resume(run_id, by="ana")
    with pytest.raises(RunStateError) as err:
        hub.engine.resume(run_id, by="bob")
    assert "no step waiting for review" in str(err.value)
    assert [e.actor for e in events(hub, run_id, "step.resumed")] == ["ana"]
    assert hub.drain() == 1
    assert calls["price"] == 2


# -------------------------------------------------------------------------- skip
def test_skip_passes_the_steps_input_through_as_its_output(local_hub: LocalHubFactory) -> None:
    calls: Counter[str] = Counter()

    @step
    def load(data: Order) -> Order:
        return data

    @step
    def enrich(data: Order) -> Order:
        calls["enrich"] += 1
        raise BusinessError("CRM has no record")

    @step
    def ship(data: Order) -> str:
        calls["ship"] += 1
        return f"shipped {data.order_id} x{data.qty}"

    hub = local_hub([Flow("orders", [load, enrich, ship])])
    run_id = hub.start("orders", {"order_id": "A-1", "qty": 2})
    hub.drain()
    hub.engine.skip(run_id, reason="enrichment not needed", by="ana")
    hub.drain()

    row = step_row(hub, run_id, "enrich")
    assert (row.status, row.output, row.completed_by) == (
        "skipped",
        {"order_id": "A-1", "qty": 2},
        "ana",
    )
    assert step_row(hub, run_id, "ship").input == row.input
    assert run_row(hub, run_id).output == "shipped A-1 x2"
    assert calls == {"enrich": 1, "ship": 1}
    (review,) = reviews_of(hub, run_id)
    assert (review.resolution, review.resolved_by, review.note) == (
        "skipped",
        "ana",
        "enrichment not needed",
    )
    (skipped,) = events(hub, run_id, "step.skipped")
    assert (skipped.actor, skipped.data) == ("ana", {"reason": "enrichment not needed"})


def test_a_skipped_for_each_item_is_left_out_of_the_output(local_hub: LocalHubFactory) -> None:
    @step
    def push_line(data: Order) -> str:
        if data.qty == 0:
            raise BusinessError(f"{data.order_id}: zero quantity")
        return f"{data.order_id}x{data.qty}"

    @step
    def summary(data: list[str]) -> str:
        return ",".join(data)

    hub = local_hub([Flow("orders", [ForEach(push_line), summary])])
    lines = [
        {"order_id": "L0", "qty": 2},
        {"order_id": "L1", "qty": 0},
        {"order_id": "L2", "qty": 1},
    ]
    run_id = hub.start("orders", lines)
    hub.drain()
    assert step_row(hub, run_id, "push_line[1]").status == "needs_review"
    hub.engine.skip(run_id, step="push_line[1]", reason="line cancelled", by="ana")
    hub.drain()

    assert step_row(hub, run_id, "push_line").output == ["L0x2", "L2x1"]
    assert step_row(hub, run_id, "push_line[1]").status == "skipped"
    assert run_row(hub, run_id).output == "L0x2,L2x1"


def test_skipping_a_branch_with_no_case_goes_on_after_it(local_hub: LocalHubFactory) -> None:
    @step
    def refund(data: Order) -> Order:
        return data

    @step
    def close(data: Order) -> str:
        return f"closed {data.order_id}"

    route = Branch(on=lambda o: o.qty, cases={1: [refund]}, name="route")
    hub = local_hub([Flow("orders", [route, close])])
    run_id = hub.start("orders", {"order_id": "A-1", "qty": 5})
    hub.drain()
    with pytest.raises(RunStateError) as err:
        hub.engine.complete(run_id, {"order_id": "A-1"}, by="ana")
    assert "'route' is a branch; only a plain step can be completed by hand" in str(err.value)
    hub.engine.skip(run_id, by="ana")
    hub.drain()
    assert step_row(hub, run_id, "route").status == "skipped"
    assert run_row(hub, run_id).output == "closed A-1"


# ---------------------------------------------------------------------- complete
def test_complete_by_hand_validates_the_output_and_the_run_goes_on_with_it(
    local_hub: LocalHubFactory,
) -> None:
    hub, run_id, calls = paused(local_hub, business_always)
    before = snapshot(hub, run_id)
    with pytest.raises(InvalidInput) as err:
        hub.engine.complete(run_id, {"order_id": "A-1"}, by="ana")
    assert "total" in str(err.value)
    assert snapshot(hub, run_id) == before

    hub.engine.complete(run_id, {"order_id": "A-1", "total": "99.5"}, by="ana")
    hub.drain()
    row = step_row(hub, run_id, "price")
    assert (row.status, row.output, row.completed_by) == (
        "succeeded",
        {"order_id": "A-1", "total": 99.5},
        "ana",
    )
    assert step_row(hub, run_id, "label").input == row.output
    assert run_row(hub, run_id).output == "A-1=99.5"
    assert calls == {"load": 1, "price": 1, "label": 1}
    (review,) = reviews_of(hub, run_id)
    assert (review.resolution, review.resolved_by) == ("completed", "ana")
    (done,) = events(hub, run_id, "step.completed_by_hand")
    assert (done.actor, done.data) == ("ana", {"output": row.output})


def test_one_of_several_paused_steps_must_be_named(local_hub: LocalHubFactory) -> None:
    @step
    def erp_post(data: Order) -> str:
        raise BusinessError("ERP refused")

    @step
    def crm_post(data: Order) -> str:
        raise BusinessError("CRM refused")

    hub = local_hub([Flow("sync", [Parallel(erp_post, crm_post, name="fanout")])])
    run_id = hub.start("sync", {"order_id": "A-1"})
    hub.drain()
    with pytest.raises(RunStateError) as err:
        hub.engine.complete(run_id, "by hand", by="ana")
    text = str(err.value)
    assert "2 steps waiting for review" in text
    assert "fanout/crm_post" in text and "fanout/erp_post" in text
    assert "name one" in text
    with pytest.raises(RunStateError) as err:
        hub.engine.complete(run_id, "by hand", step="fanout/nope", by="ana")
    assert "no step named 'fanout/nope' waiting for review" in str(err.value)

    hub.engine.complete(run_id, "erp by hand", step="fanout/erp_post", by="ana")
    assert run_row(hub, run_id).status == "needs_review"  # crm_post still waits
    hub.engine.complete(run_id, "crm by hand", step="fanout/crm_post", by="bob")
    hub.drain()
    run = run_row(hub, run_id)
    assert (run.status, run.output) == (
        "succeeded",
        {"erp_post": "erp by hand", "crm_post": "crm by hand"},
    )


# ------------------------------------------------------------------ abort, cancel
def test_abort_fails_the_run_and_closes_its_review_items(local_hub: LocalHubFactory) -> None:
    hub, run_id, calls = paused(local_hub, business_always)
    hub.engine.abort(run_id, by="ana", reason="customer withdrew")
    hub.engine.tick()
    hub.drain()

    run = run_row(hub, run_id)
    assert (run.status, run.error) == ("failed", "customer withdrew")
    assert run.finished_at is not None
    assert step_row(hub, run_id, "price").status == "failed"
    assert step_row(hub, run_id, "load").status == "succeeded"
    (review,) = reviews_of(hub, run_id)
    assert (review.status, review.resolution, review.resolved_by, review.note) == (
        "closed",
        "failed",
        "ana",
        "customer withdrew",
    )
    (aborted,) = events(hub, run_id, "run.failed")
    assert (aborted.actor, aborted.data) == ("ana", {"reason": "customer withdrew"})
    assert calls == {"load": 1, "price": 1}


def test_cancel_stops_a_step_waiting_for_its_retry(local_hub: LocalHubFactory) -> None:
    calls: list[int] = []

    @step(retries=5, backoff=5)
    def post(data: Order) -> str:
        calls.append(1)
        raise TransientError("ERP busy")

    hub = local_hub([Flow("orders", [post])])
    hub.freeze()
    run_id = hub.start("orders", {"order_id": "A-1"})
    hub.drain()
    assert step_row(hub, run_id, "post").status == "ready"
    hub.engine.cancel(run_id, by="ops")
    hub.advance(600)
    hub.drain()
    assert hub.engine.tick()["published"] == 0

    assert calls == [1]
    assert step_row(hub, run_id, "post").status == "cancelled"
    (cancelled,) = events(hub, run_id, "run.cancelled")
    assert (cancelled.actor, run_row(hub, run_id).status) == ("ops", "cancelled")
    assert [a.status for a in rows(hub, m.Attempt, run_id=run_id)] == ["failed"]


def test_aborting_a_child_run_pauses_the_parent_which_can_start_a_new_child(
    local_hub: LocalHubFactory,
) -> None:
    calls: list[str] = []

    @step
    def archive_doc(data: Order) -> str:
        calls.append(data.order_id)
        if len(calls) == 1:
            raise BusinessError("archive is full")
        return f"archived {data.order_id}"

    @step
    def start(data: Order) -> Order:
        return data

    parent = Flow("orders", [start, SubFlow("archive", name="archive_it")])
    hub = local_hub([parent, Flow("archive", [archive_doc])])
    run_id = hub.start("orders", {"order_id": "A-1"})
    hub.drain()
    (child,) = rows(hub, m.Run, parent_run_id=run_id)
    hub.engine.abort(child.id, by="ana", reason="wrong archive")

    assert run_row(hub, child.id).status == "failed"
    node = step_row(hub, run_id, "archive_it")
    assert node.status == "needs_review"
    (review,) = reviews_of(hub, run_id)
    assert review.reason == "subflow"
    assert child.id in review.message and "wrong archive" in review.message
    assert run_row(hub, run_id).status == "needs_review"

    hub.engine.resume(run_id, by="ana")
    hub.drain()
    children = sorted(rows(hub, m.Run, parent_run_id=run_id), key=lambda r: r.created_at)
    assert [c.status for c in children] == ["failed", "succeeded"]
    assert run_row(hub, run_id).output == "archived A-1"
    assert step_row(hub, run_id, "archive_it").detail == {"child_run": children[1].id}


# ------------------------------------------------------------------ wrong states
@pytest.mark.parametrize("action", ["resume", "skip", "complete", "cancel", "abort"])
def test_an_action_on_a_finished_run_is_refused_and_changes_nothing(
    local_hub: LocalHubFactory, action: str
) -> None:
    hub, run_id, _ = paused(local_hub, business_once)
    hub.engine.resume(run_id)
    hub.drain()
    assert run_row(hub, run_id).status == "succeeded"
    before = snapshot(hub, run_id)
    do: dict[str, Callable[[], None]] = {
        "resume": lambda: hub.engine.resume(run_id, by="ana"),
        "skip": lambda: hub.engine.skip(run_id, by="ana"),
        "complete": lambda: hub.engine.complete(run_id, {"order_id": "A", "total": 1}, by="ana"),
        "cancel": lambda: hub.engine.cancel(run_id, by="ana"),
        "abort": lambda: hub.engine.abort(run_id, by="ana"),
    }
    with pytest.raises(RunStateError) as err:
        do[action]()
    text = str(err.value)
    assert run_id in text
    if action in ("cancel", "abort"):
        assert f"already succeeded; there is nothing to {action}" in text
    else:
        assert "(succeeded) has no step waiting for review" in text
    assert snapshot(hub, run_id) == before


@pytest.mark.parametrize("action", ["resume", "skip", "complete"])
def test_a_review_action_on_a_run_that_is_not_paused_is_refused(
    local_hub: LocalHubFactory, action: str
) -> None:
    calls: Counter[str] = Counter()
    hub = local_hub([three_steps(calls, business_always)])
    run_id = hub.start("orders", {"order_id": "A-1"})  # queued: its first step not run yet
    before = snapshot(hub, run_id)
    with pytest.raises(RunStateError) as err:
        if action == "resume":
            hub.engine.resume(run_id, by="ana")
        elif action == "skip":
            hub.engine.skip(run_id, by="ana")
        else:
            hub.engine.complete(run_id, {"order_id": "A-1"}, by="ana")
    assert f"run {run_id} (queued) has no step waiting for review" in str(err.value)
    assert snapshot(hub, run_id) == before


def test_cancelling_a_cancelled_run_is_refused(local_hub: LocalHubFactory) -> None:
    hub, run_id, _ = paused(local_hub, business_always)
    hub.engine.cancel(run_id, by="ana")
    with pytest.raises(RunStateError) as err:
        hub.engine.cancel(run_id, by="bob")
    assert "already cancelled" in str(err.value)
    with pytest.raises(RunStateError):
        hub.engine.resume(run_id, by="bob")
    assert [e.actor for e in events(hub, run_id, "run.cancelled")] == ["ana"]


def test_an_action_on_an_unknown_run_says_so(local_hub: LocalHubFactory) -> None:
    hub = local_hub([three_steps(Counter(), business_always)])
    with pytest.raises(RunNotFound) as err:
        hub.engine.resume("f" * 32, by="ana")
    assert "f" * 32 in str(err.value)


@pytest.mark.parametrize("action", ["resume", "skip", "complete"])
def test_an_action_on_a_step_the_flow_no_longer_has_says_so_and_changes_nothing(
    local_hub: LocalHubFactory, action: str
) -> None:
    hub, run_id, _ = paused(local_hub, business_always)

    @step
    def load(data: Order) -> Order:
        return data

    @step
    def price_v2(data: Order) -> Priced:  # `price` was renamed in a later release
        return Priced(order_id=data.order_id, total=1.0)

    deployed = local_hub([Flow("orders", [load, price_v2])])
    before = snapshot(hub, run_id)
    with pytest.raises(RunStateError) as err:
        if action == "resume":
            deployed.engine.resume(run_id, by="ana")
        elif action == "skip":
            deployed.engine.skip(run_id, by="ana")
        else:
            deployed.engine.complete(run_id, {"order_id": "A-1", "total": 1}, by="ana")
    text = str(err.value)
    assert "flow 'orders' has no node 'price'" in text
    assert "abort" in text
    assert snapshot(hub, run_id) == before
    deployed.engine.abort(run_id, by="ana", reason="flow changed")
    assert run_row(hub, run_id).status == "failed"


# ------------------------------------------------------------- asking a person
class RefundQuestion(BaseModel):
    approved: bool
    note: str = ""


def test_the_answer_to_a_question_is_validated_against_its_form_and_becomes_the_output(
    local_hub: LocalHubFactory,
) -> None:
    from hub import NeedsReview

    seen: list[Any] = []

    @step
    def ask(data: Order) -> Priced:  # the form, not this type, checks the answer
        raise NeedsReview(f"Approve refund for {data.order_id}?", form=RefundQuestion)

    @step
    def record(answer: RefundQuestion) -> RefundQuestion:
        seen.append(answer)
        return answer

    hub = local_hub([Flow("refund", [ask, record])])
    run_id = hub.start("refund", {"order_id": "R-1"})
    hub.drain()
    (item,) = reviews_of(hub, run_id)
    assert item.reason == "question"
    assert set(item.form_schema["properties"]) == {"approved", "note"}

    before = snapshot(hub, run_id)
    with pytest.raises(InvalidInput) as bad:
        hub.engine.complete(run_id, {"note": "missing the decision"}, by="rita")
    assert "approved" in str(bad.value)
    assert snapshot(hub, run_id) == before

    hub.engine.complete(run_id, {"approved": True, "note": "ok"}, by="rita")
    hub.drain()
    assert run_row(hub, run_id).status == "succeeded"
    assert step_row(hub, run_id, "ask").output == {"approved": True, "note": "ok"}
    assert seen == [RefundQuestion(approved=True, note="ok")]
