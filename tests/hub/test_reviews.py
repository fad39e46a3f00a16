"""The review queue service (``hub.reviews``) on SQLite and PostgreSQL.

Every assertion reads stored rows: the item, the step, the run, the audit
log and what the engine published.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from pydantic import BaseModel, Field
from sqlalchemy import select, update

from hub import BusinessError, Flow, auth, reviews, step
from hub import models as m
from hub.auth import Principal
from hub.errors import FlowDefinitionError, Forbidden, InvalidInput, ReviewConflict, ReviewNotFound
from hub.testing import LocalHub
from tests.hub.rows import LocalHubFactory, reviews_of, rows, run_row, step_row


class Order(BaseModel):
    order_id: str = Field(min_length=1)
    amount: int = Field(ge=0)


class Booked(BaseModel):
    order_id: str
    amount: int
    booked: bool = True


@step(retries=0)
def check(data: Order) -> Order:
    if data.amount > 100:
        raise BusinessError(f"amount {data.amount} is over the limit of 100")
    return data


@step(retries=0)
def book(data: Order) -> Booked:
    return Booked(order_id=data.order_id, amount=data.amount)


FLOWS = [
    Flow("open_flow", [check, book]),
    Flow("billing", [check, book], team="billing", review_due=3600),
    Flow("shipping", [check, book], team="shipping", review_due=timedelta(hours=2)),
]
BIG = {"order_id": "A-1", "amount": 500}


# --------------------------------------------------------------------- helpers
def user(hub: LocalHub, name: str, role: str, *teams: str) -> Principal:
    def make(s: Any) -> Principal:
        return auth.principal(
            s, auth.create_user(s, name, role=role, password="x" * 12, teams=teams)
        )

    return hub.store.run(make)


def paused(hub: LocalHub, flow: str, data: Any = None) -> tuple[str, str]:
    """Start ``flow`` with a too-big order; return (run id, open review item id)."""
    run_id = hub.start(flow, data or BIG)
    hub.drain()
    (item,) = [r for r in reviews_of(hub, run_id) if r.status == "open"]
    return run_id, item.id


def item_row(hub: LocalHub, item_id: str) -> m.ReviewItem:
    (row,) = rows(hub, m.ReviewItem, id=item_id)
    return row


def snapshot(hub: LocalHub) -> dict[str, Any]:
    """Every row an action may touch, to prove a refused action changed nothing."""
    return {
        "items": sorted(
            (r.id, r.status, r.version, r.assignee_id, r.resolution, r.input)
            for r in rows(hub, m.ReviewItem)
        ),
        "steps": sorted((s.id, s.status, s.input, s.output) for s in rows(hub, m.Step)),
        "runs": sorted((r.id, r.status) for r in rows(hub, m.Run)),
        "events": len(rows(hub, m.Event)),
        "audit": len(rows(hub, m.AuditEntry)),
        "comments": len(rows(hub, m.ReviewComment)),
        "published": len(hub.published),
    }


@pytest.fixture
def hub(local_hub: LocalHubFactory) -> LocalHub:
    made = local_hub(FLOWS)
    made.freeze()
    return made


# ------------------------------------------------------------- flow policy
@pytest.mark.parametrize(
    ("kw", "needle"),
    [
        ({"review_due": -5}, "positive"),
        ({"review_due": 0}, "positive"),
        ({"review_due": True}, "seconds"),
        ({"review_due": "1h"}, "seconds"),
        ({"review_due": float("inf")}, "positive"),
        ({"team": ""}, "team name"),
        ({"team": 7}, "team name"),
    ],
)
def test_a_bad_review_policy_is_refused_when_the_flow_is_declared(
    kw: dict[str, Any], needle: str
) -> None:
    with pytest.raises(FlowDefinitionError, match=needle) as info:
        Flow("bad", [check], **kw)
    assert "'bad'" in str(info.value)


def test_review_due_in_seconds_becomes_a_timedelta() -> None:
    assert Flow("f", [check], review_due=90).review_due == timedelta(seconds=90)
    assert Flow("g", [check]).review_due is None


def test_a_paused_step_gets_the_flows_team_and_due_time(hub: LocalHub) -> None:
    _, billing = paused(hub, "billing")
    _, free = paused(hub, "open_flow")
    row = item_row(hub, billing)
    assert row.team == "billing"
    assert row.due_at == row.created_at + timedelta(hours=1)
    assert row.version == 1 and row.assignee_id is None
    assert (item_row(hub, free).team, item_row(hub, free).due_at) == (None, None)


# ------------------------------------------------------------------ queue
def test_reviewers_see_their_teams_items_and_team_less_ones_operators_see_all(
    hub: LocalHub,
) -> None:
    _, billing = paused(hub, "billing")
    _, shipping = paused(hub, "shipping")
    _, free = paused(hub, "open_flow")
    anna = user(hub, "anna", "reviewer", "billing")
    olga = user(hub, "olga", "operator")
    with hub.store.read() as s:
        mine = reviews.queue(s, anna, now=hub.now)
        every = reviews.queue(s, olga, now=hub.now)
        with pytest.raises(ReviewNotFound):
            reviews.load(s, anna, shipping)
    assert {i["id"] for i in mine["items"]} == {billing, free}
    assert {i["id"] for i in every["items"]} == {billing, shipping, free}
    assert mine["counts"] == {
        "open": 2,
        "closed": 0,
        "closed_more": False,
        "overdue": 0,
        "unassigned": 2,
        "mine": 0,
    }


def test_filters_narrow_the_queue(hub: LocalHub) -> None:
    _, billing = paused(hub, "billing")
    hub.advance(600)
    _, shipping = paused(hub, "shipping")
    olga = user(hub, "olga", "operator")

    def ids(**kw: Any) -> list[str]:
        with hub.store.read() as s:
            return [i["id"] for i in reviews.queue(s, olga, now=hub.now, **kw)["items"]]

    assert ids(flow="billing") == [billing]
    assert ids(step="check", reason="business") == [shipping, billing]
    assert ids(reason="transient") == []
    assert ids(older_than=300) == [billing]
    assert ids(newer_than=300) == [shipping]
    assert ids(assignee="none") == [shipping, billing]
    assert ids(assignee="me") == []
    assert ids(status="closed") == []
    assert ids(sort="oldest") == [billing, shipping]
    with pytest.raises(InvalidInput, match="status"):
        ids(status="pending")
    with pytest.raises(InvalidInput, match="sort"):
        ids(sort="random")


def test_overdue_items_are_flagged_filtered_and_sorted_first_by_urgency(hub: LocalHub) -> None:
    _, shipping = paused(hub, "shipping")  # due in 2 h
    hub.advance(60)
    _, billing = paused(hub, "billing")  # due in 1 h, so sooner
    _, free = paused(hub, "open_flow")  # never due
    olga = user(hub, "olga", "operator")
    with hub.store.read() as s:
        urgent = reviews.queue(s, olga, now=hub.now, sort="urgent")
        assert [i["id"] for i in urgent["items"]] == [billing, shipping, free]
        assert not any(i["overdue"] for i in urgent["items"])
        later = hub.now + timedelta(minutes=90)
        late = reviews.queue(s, olga, now=later, overdue=True)
        on_time = reviews.queue(s, olga, now=later, overdue=False)
    assert [(i["id"], i["overdue"]) for i in late["items"]] == [(billing, True)]
    assert {i["id"] for i in on_time["items"]} == {shipping, free}
    assert late["counts"]["overdue"] == 1


def _bulk(hub: LocalHub, count: int) -> list[str]:
    """``count`` open items on one run, some sharing a created time, some without a due time."""
    base = hub.now

    def make(s: Any) -> list[str]:
        run = m.Run(flow="billing", status=m.RUN_NEEDS_REVIEW, created_at=base)
        s.add(run)
        s.flush()
        row = m.Step(run_id=run.id, key="check", node="check", status=m.STEP_NEEDS_REVIEW)
        s.add(row)
        s.flush()
        made = []
        for n in range(count):
            item = m.ReviewItem(
                id=m.new_id(),
                run_id=run.id,
                step_id=row.id,
                flow="billing",
                step_key="check",
                reason="business",
                message=f"item {n}",
                team="billing",
                created_at=base - timedelta(seconds=n // 3),  # three share each second
                due_at=None if n % 4 == 0 else base + timedelta(minutes=n % 7),
            )
            s.add(item)
            made.append(item.id)
        return made

    return hub.store.run(make)


@pytest.mark.parametrize("sort", ["newest", "oldest", "urgent"])
def test_keyset_pages_cover_every_item_once_in_order(hub: LocalHub, sort: str) -> None:
    made = _bulk(hub, 310)
    anna = user(hub, "anna", "reviewer", "billing")
    seen: list[dict[str, Any]] = []
    cursor = None
    pages = 0
    with hub.store.read() as s:
        while True:
            page = reviews.queue(s, anna, now=hub.now, sort=sort, limit=50, cursor=cursor)
            seen += page["items"]
            pages += 1
            cursor = page["next_cursor"]
            if cursor is None:
                break
        full = reviews.queue(s, anna, now=hub.now, sort=sort, limit=500)
        assert page["counts"]["open"] == 310
        other = "oldest" if sort != "oldest" else "newest"
        with pytest.raises(InvalidInput, match="cursor"):
            reviews.queue(s, anna, sort=other, cursor=_first_cursor(s, anna, sort))
        with pytest.raises(InvalidInput, match="cursor"):
            reviews.queue(s, anna, cursor="not-a-cursor")
    assert pages == 7
    assert [i["id"] for i in seen] == [i["id"] for i in full["items"]]
    assert sorted(i["id"] for i in seen) == sorted(made)


def test_closed_items_are_counted_up_to_a_cap_and_open_ones_exactly(
    hub: LocalHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    _bulk(hub, 12)
    with hub.store.transaction() as s:  # close nine of them
        ids = s.scalars(select(m.ReviewItem.id).order_by(m.ReviewItem.id).limit(9)).all()
        s.execute(update(m.ReviewItem).where(m.ReviewItem.id.in_(ids)).values(status="closed"))
    anna = user(hub, "anna", "reviewer", "billing")
    monkeypatch.setattr(reviews, "CLOSED_COUNTED", 5)
    with hub.store.read() as s:
        counts = reviews.queue(s, anna, now=hub.now)["counts"]
        assert (counts["open"], counts["closed"], counts["closed_more"]) == (3, 5, True)
        monkeypatch.setattr(reviews, "CLOSED_COUNTED", 9)
        counts = reviews.queue(s, anna, now=hub.now)["counts"]
        assert (counts["open"], counts["closed"], counts["closed_more"]) == (3, 9, False)


def test_assignable_names_exactly_whom_assigning_accepts(hub: LocalHub) -> None:
    _, billing = paused(hub, "billing")
    _, free = paused(hub, "open_flow")
    user(hub, "anna", "reviewer", "billing")
    user(hub, "sam", "reviewer", "shipping")
    user(hub, "vera", "viewer", "billing")
    user(hub, "olga", "operator")
    user(hub, "adam", "admin")
    user(hub, "gone", "reviewer", "billing")
    with hub.store.transaction() as s:
        s.execute(update(m.User).where(m.User.name == "gone").values(active=False))
    with hub.store.read() as s:
        everyone = s.scalars(select(m.User.name)).all()
        for item_id, expected in [
            (billing, ["adam", "anna", "olga"]),
            (free, ["adam", "anna", "olga", "sam"]),
        ]:
            item = s.get(m.ReviewItem, item_id)
            assert item is not None
            assert reviews.assignable(s, item) == expected
            accepted = []
            for name in sorted(everyone):
                try:
                    reviews.assignee_id(s, item, name)
                except InvalidInput:
                    continue
                accepted.append(name)
            assert accepted == expected


def _first_cursor(s: Any, who: Principal, sort: str) -> str:
    cursor = reviews.queue(s, who, sort=sort, limit=1)["next_cursor"]
    assert cursor
    return str(cursor)


# ---------------------------------------------------------------- actions
def test_edit_and_retry_validates_stores_the_diff_and_the_run_goes_on(hub: LocalHub) -> None:
    run_id, item_id = paused(hub, "billing")
    anna = user(hub, "anna", "reviewer", "billing")
    out = reviews.act(hub.engine, anna, item_id, "edit", input={"order_id": "A-1", "amount": "50"})
    assert (out["status"], out["resolution"], out["version"]) == ("closed", "edited", 2)
    assert step_row(hub, run_id, "check").input == {"order_id": "A-1", "amount": 50}
    (entry,) = rows(hub, m.AuditEntry, object_id=item_id)
    assert (entry.actor, entry.action, entry.object_kind) == ("anna", "review.edit", "review_item")
    assert entry.before["input"] == BIG and entry.before["status"] == "open"
    assert entry.after["input"] == {"order_id": "A-1", "amount": 50}
    assert entry.after["status"] == "closed"
    assert len(hub.published) and hub.published[-1][0] == step_row(hub, run_id, "check").id
    hub.drain()
    assert run_row(hub, run_id).status == "succeeded"


def test_a_malformed_edit_gives_field_errors_and_changes_nothing(hub: LocalHub) -> None:
    _, item_id = paused(hub, "billing")
    anna = user(hub, "anna", "reviewer", "billing")
    before = snapshot(hub)
    with pytest.raises(InvalidInput) as info:
        reviews.act(hub.engine, anna, item_id, "edit", input={"order_id": "", "amount": -1})
    assert sorted(e["loc"] for e in info.value.errors) == [("amount",), ("order_id",)]
    assert snapshot(hub) == before


def test_a_stale_version_is_a_conflict_and_changes_nothing(hub: LocalHub) -> None:
    _, item_id = paused(hub, "billing")
    anna = user(hub, "anna", "reviewer", "billing")
    reviews.act(hub.engine, anna, item_id, "claim")
    before = snapshot(hub)
    with pytest.raises(ReviewConflict, match="changed since you read it"):
        reviews.act(hub.engine, anna, item_id, "retry", version=1)
    assert snapshot(hub) == before


def test_an_action_on_a_closed_item_is_refused_clearly(hub: LocalHub) -> None:
    _, item_id = paused(hub, "billing")
    anna = user(hub, "anna", "reviewer", "billing")
    reviews.act(hub.engine, anna, item_id, "skip", reason="done by phone")
    before = snapshot(hub)
    for action in ("retry", "claim", "abort"):
        with pytest.raises(ReviewConflict, match=r"is closed \(skipped by anna at .*nothing"):
            reviews.act(hub.engine, anna, item_id, action, reason="x")
    assert snapshot(hub) == before


def test_a_viewer_may_read_but_not_act(hub: LocalHub) -> None:
    _, item_id = paused(hub, "billing")
    vera = user(hub, "vera", "viewer", "billing")
    before = snapshot(hub)
    with hub.store.read() as s:
        assert reviews.detail(s, vera, item_id, registry=hub.registry)["id"] == item_id
    with pytest.raises(Forbidden, match="reviewer role"):
        reviews.act(hub.engine, vera, item_id, "retry")
    assert snapshot(hub) == before


def test_claimed_items_belong_to_their_holder_until_unclaimed_or_reassigned(
    hub: LocalHub,
) -> None:
    run_id, item_id = paused(hub, "billing")
    anna = user(hub, "anna", "reviewer", "billing")
    bert = user(hub, "bert", "reviewer", "billing")
    carl = user(hub, "carl", "reviewer", "shipping")
    olga = user(hub, "olga", "operator")
    reviews.act(hub.engine, anna, item_id, "claim")
    with pytest.raises(ReviewConflict, match="claimed by anna"):
        reviews.act(hub.engine, bert, item_id, "retry")
    with pytest.raises(Forbidden):
        reviews.act(hub.engine, bert, item_id, "assign", assignee="bert")
    with pytest.raises(InvalidInput, match="not in team 'billing'"):
        reviews.act(hub.engine, olga, item_id, "assign", assignee="carl")
    assert carl.teams == ("shipping",)
    out = reviews.act(hub.engine, olga, item_id, "assign", assignee="bert")
    assert out["assignee"] == "bert"
    with hub.store.read() as s:
        assert [i["id"] for i in reviews.queue(s, bert, assignee="me")["items"]] == [item_id]
    reviews.act(hub.engine, bert, item_id, "unclaim")
    out = reviews.act(hub.engine, anna, item_id, "abort", reason="customer cancelled")
    assert (out["status"], out["resolution"]) == ("closed", "failed")
    assert run_row(hub, run_id).status == "failed"
    actions = [a.action for a in sorted(rows(hub, m.AuditEntry), key=lambda a: a.id)]
    assert actions == ["review.claim", "review.assign", "review.unclaim", "review.abort"]


def test_complete_by_hand_validates_the_output_and_the_run_goes_on(hub: LocalHub) -> None:
    run_id, item_id = paused(hub, "open_flow")
    anna = user(hub, "anna", "reviewer")
    with pytest.raises(InvalidInput) as info:
        reviews.act(hub.engine, anna, item_id, "complete", output={"order_id": "A-1"})
    assert [e["loc"] for e in info.value.errors] == [("amount",)]
    assert item_row(hub, item_id).status == "open"
    out = reviews.act(
        hub.engine, anna, item_id, "complete", output={"order_id": "A-1", "amount": 500}
    )
    assert out["resolution"] == "completed"
    hub.drain()
    assert run_row(hub, run_id).status == "succeeded"
    assert step_row(hub, run_id, "check").completed_by == "anna"


def test_skip_and_abort_need_a_reason(hub: LocalHub) -> None:
    _, item_id = paused(hub, "open_flow")
    anna = user(hub, "anna", "reviewer")
    before = snapshot(hub)
    for action in ("skip", "abort"):
        with pytest.raises(InvalidInput, match="reason"):
            reviews.act(hub.engine, anna, item_id, action, reason="  ")
    with pytest.raises(InvalidInput, match="input"):
        reviews.act(hub.engine, anna, item_id, "edit")
    assert snapshot(hub) == before


def test_comments_are_kept_in_order_with_an_audit_row_even_on_closed_items(
    hub: LocalHub,
) -> None:
    _, item_id = paused(hub, "open_flow")
    anna = user(hub, "anna", "reviewer")
    reviews.act(hub.engine, anna, item_id, "comment", text="calling the customer")
    reviews.act(hub.engine, anna, item_id, "retry")
    reviews.act(hub.engine, anna, item_id, "comment", text="retried after the call")
    with pytest.raises(InvalidInput, match="text"):
        reviews.act(hub.engine, anna, item_id, "comment", text="")
    with hub.store.read() as s:
        shown = reviews.detail(s, anna, item_id, registry=hub.registry)
    assert [c["body"] for c in shown["comments"]] == [
        "calling the customer",
        "retried after the call",
    ]
    assert [a["action"] for a in shown["audit"]] == [
        "review.comment",
        "review.retry",
        "review.comment",
    ]


def test_detail_shows_the_run_timeline_attempts_and_schemas(hub: LocalHub) -> None:
    run_id, item_id = paused(hub, "billing")
    anna = user(hub, "anna", "reviewer", "billing")
    with hub.store.read() as s:
        shown = reviews.detail(s, anna, item_id, registry=hub.registry)
    assert shown["run"]["id"] == run_id and shown["run"]["status"] == "needs_review"
    assert [(t["key"], t["current"]) for t in shown["timeline"]] == [("check", True)]
    assert [a["status"] for a in shown["attempts"]] == ["failed"]
    assert shown["error_class"] == "hub.errors.BusinessError"
    assert shown["input"] == BIG
    assert set(shown["input_schema"]["properties"]) == {"order_id", "amount"}
    assert set(shown["output_schema"]["properties"]) == {"order_id", "amount"}


# ------------------------------------------------------------- concurrency
def test_two_reviewers_at_the_same_moment_one_applies_one_conflicts(hub: LocalHub) -> None:
    """RELIABILITY 37 at the service: threads released together by a barrier."""
    run_id, item_id = paused(hub, "billing")
    anna = user(hub, "anna", "reviewer", "billing")
    bert = user(hub, "bert", "reviewer", "billing")
    step_id = step_row(hub, run_id, "check").id
    published = len(hub.published)
    gate = threading.Barrier(2)
    results: dict[str, Any] = {}

    def act(who: Principal) -> None:
        gate.wait()
        try:
            results[who.name] = reviews.act(hub.engine, who, item_id, "retry", version=1)
        except Exception as exc:
            results[who.name] = exc

    threads = [threading.Thread(target=act, args=(p,)) for p in (anna, bert)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    won = [v for v in results.values() if isinstance(v, dict)]
    lost = [v for v in results.values() if not isinstance(v, dict)]
    assert len(won) == 1 and len(lost) == 1, results
    assert isinstance(lost[0], ReviewConflict)
    assert [p for p in hub.published[published:] if p[0] == step_id] == [(step_id, "default", None)]
    assert len(rows(hub, m.AuditEntry, object_id=item_id)) == 1
    assert item_row(hub, item_id).version == 2


def test_a_change_between_reading_and_updating_the_item_loses_with_nothing_changed(
    hub: LocalHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The conditional UPDATE itself: another transaction bumps the version after this
    action read the item (PostgreSQL only: SQLite lets no other writer in meanwhile)."""
    if hub.store.is_sqlite:
        pytest.skip("SQLite serialises whole write transactions")
    run_id, item_id = paused(hub, "billing")
    anna = user(hub, "anna", "reviewer", "billing")
    real_lock = reviews.lock_run

    def lock_after_a_rival(s: Any, rid: str) -> m.Run:
        with hub.store.transaction() as rival:
            rival.execute(
                update(m.ReviewItem)
                .where(m.ReviewItem.id == item_id)
                .values(version=m.ReviewItem.version + 1)
            )
        return real_lock(s, rid)

    monkeypatch.setattr(reviews, "lock_run", lock_after_a_rival)
    published = len(hub.published)
    with pytest.raises(ReviewConflict, match="at the same moment"):
        reviews.act(hub.engine, anna, item_id, "retry")
    row = item_row(hub, item_id)
    assert (row.status, row.version) == ("open", 2)
    assert step_row(hub, run_id, "check").status == m.STEP_NEEDS_REVIEW
    assert rows(hub, m.AuditEntry) == [] and len(hub.published) == published
