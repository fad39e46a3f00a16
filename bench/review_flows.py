"""The flows of the review queue bench (``bench/review.py``): ten flows of ten typed steps.

Their names, teams and due times are the ones the bench's rows carry, so an
item page finds each step's input and output schema, and a retry resumes a
run exactly as it would one of these flows' own. Every step passes an
``Order`` through unchanged; nothing here is timed.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from hub import Flow, step
from hub.registry import Registry

STEPS = 10
#: (flow, team, review_due seconds): five teams, two flows every reviewer sees
FLOWS = (
    ("invoice_match", "finance", 4 * 3600),
    ("payment_run", "finance", 24 * 3600),
    ("dunning", "billing", 3 * 24 * 3600),
    ("credit_note", "billing", None),
    ("shipment_book", "shipping", 8 * 3600),
    ("customs_entry", "shipping", 2 * 24 * 3600),
    ("employee_onboard", "hr", 7 * 24 * 3600),
    ("lead_import", "sales", None),
    ("master_data_sync", None, 24 * 3600),
    ("archive_docs", None, None),
)
TEAMS = sorted({team for _, team, _ in FLOWS if team})


class Order(BaseModel):
    order_id: str = Field(min_length=1)
    customer: str
    amount: int = Field(ge=0)
    currency: str = "EUR"
    lines: int = 1


def _pass(data: Order) -> Order:
    return data


def step_names() -> list[str]:
    return [f"s{i}" for i in range(STEPS)]


def make_flow(name: str, team: str | None, due: int | None) -> Flow:
    steps = [step(_pass, name=key, retries=2) for key in step_names()]
    return Flow(name, steps, team=team, review_due=due, description="review queue bench")


def registry() -> Registry:
    return Registry([make_flow(*spec) for spec in FLOWS])
