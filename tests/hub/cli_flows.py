"""A flow that pauses for review, for the CLI tests (``HUB_FLOWS=tests.hub.cli_flows``).

``check`` stops orders over 100 with a ``BusinessError``; a person then
resumes (with an edited amount), skips, completes by hand or aborts.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from hub import BusinessError, Flow, step


class Order(BaseModel):
    order_id: str = Field(min_length=1)
    amount: int = Field(ge=0)


class Checked(BaseModel):
    order_id: str
    amount: int
    approved: bool = False


class Booking(BaseModel):
    order_id: str
    amount: int
    approved: bool
    booked: bool


@step(retries=0)
def check(data: Order) -> Checked:
    """Approve small orders; a person decides on big ones."""
    if data.amount > 100:
        raise BusinessError(f"amount {data.amount} is over the limit of 100")
    return Checked(order_id=data.order_id, amount=data.amount, approved=True)


@step(retries=0)
def book(data: Checked) -> Booking:
    """Book the order."""
    return Booking(order_id=data.order_id, amount=data.amount, approved=data.approved, booked=True)


cli_review = Flow("cli_review", [check, book], description="Books orders; big ones need a person.")
