"""The example flows that ship in flows/ behave as their docstrings say."""

from __future__ import annotations

import pytest

from hub.registry import Registry
from hub.testing import LocalHub
from tests.hub.rows import LocalHubFactory, reviews_of, run_row, step_row

SMALL = {
    "batch": "B-7",
    "invoices": [
        {"number": "INV-1", "customer": "ACME", "amount": 120.5},
        {"number": "INV-2", "customer": "Initech", "amount": 99},
    ],
}
LARGE = {"batch": "B-8", "invoices": [{"number": "INV-3", "customer": "ACME", "amount": 20000}]}


@pytest.fixture
def hub(local_hub: LocalHubFactory) -> LocalHub:
    return local_hub(Registry.load(["flows"]))


def test_hello_greets_the_cleaned_name(hub: LocalHub) -> None:
    run_id = hub.start("hello", {"name": "  ada   lovelace "})
    hub.drain()
    assert run_row(hub, run_id).status == "succeeded"
    assert step_row(hub, run_id, "greet").output == {
        "message": "Hello, Ada Lovelace!",
        "letters": 11,
    }
    assert run_row(hub, run_id).output["message"].startswith("Hello, Ada Lovelace! (run ")


def test_a_small_invoice_batch_is_checked_per_invoice_booked_and_notified(hub: LocalHub) -> None:
    run_id = hub.start("invoice_batch", SMALL)
    hub.drain()
    run = run_row(hub, run_id)
    assert run.status == "succeeded"
    assert run.output == {
        "message": "[invoices] Batch B-7: 2 invoices, 219.50 EUR for ACME, Initech"
    }
    assert step_row(hub, run_id, "check_invoice[1]").output["customer"] == "Initech"
    assert step_row(hub, run_id, "approval").detail == {"case": "normal"}
    assert step_row(hub, run_id, "book").output["ledger"]["lines"] == [
        {"account": "AR/ACME", "amount": 120.5},
        {"account": "AR/Initech", "amount": 99.0},
    ]


def test_a_large_batch_waits_for_an_approval_and_a_refusal_stops_it(hub: LocalHub) -> None:
    approved = hub.start("invoice_batch", LARGE)
    refused = hub.start("invoice_batch", {**LARGE, "batch": "B-9"})
    hub.drain()
    for run_id in (approved, refused):
        (item,) = reviews_of(hub, run_id)
        assert (item.reason, item.step_key) == ("question", "approval/approve")
        assert "20000.00 EUR" in item.message

    hub.engine.complete(approved, {"approved": True, "approver": "rita"}, by="rita")
    hub.engine.complete(refused, {"approved": False, "approver": "sam"}, by="sam")
    hub.drain()

    assert run_row(hub, approved).status == "succeeded"
    assert run_row(hub, refused).status == "needs_review"
    assert reviews_of(hub, refused)[-1].message == "batch refused by sam"


def test_an_invoice_in_another_currency_goes_to_review_alone(hub: LocalHub) -> None:
    batch = {
        **SMALL,
        "invoices": [
            *SMALL["invoices"],
            {"number": "X", "customer": "Q", "amount": 1, "currency": "USD"},
        ],
    }
    run_id = hub.start("invoice_batch", batch)
    hub.drain()
    assert [(r.step_key, r.reason) for r in reviews_of(hub, run_id)] == [
        ("check_invoice[2]", "business")
    ]
    assert step_row(hub, run_id, "check_invoice[0]").status == "succeeded"
    hub.engine.skip(run_id, reason="booked elsewhere", by="rita")
    hub.drain()
    assert run_row(hub, run_id).status == "succeeded"
    assert "2 invoices" in run_row(hub, run_id).output["message"]
