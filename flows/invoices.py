"""invoice_batch: every flow shape, with no outside system.

Checks each invoice of a batch on its own (for-each), totals them, asks a
person to approve a large batch (branch + a question with a form), builds a
summary and ledger lines side by side (parallel), then hands the summary to
the ``notify`` flow (sub-flow). An approval not given within four hours is
escalated to the webhook and email address named by the environment (each
skipped, and the skip recorded, while its variable is unset)::

    hub run invoice_batch --wait --input '{"batch": "B-7", "invoices": [
        {"number": "INV-1", "customer": "ACME", "amount": 120.5},
        {"number": "INV-2", "customer": "Initech", "amount": 99}]}'
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, Field

from hub import (
    Branch,
    BusinessError,
    Escalate,
    Flow,
    ForEach,
    NeedsReview,
    Parallel,
    StepContext,
    SubFlow,
    step,
)

APPROVAL_LIMIT = 10_000.0


class Invoice(BaseModel):
    number: str = Field(min_length=1)
    customer: str = Field(min_length=1)
    amount: float = Field(ge=0)
    currency: str = "EUR"


class Batch(BaseModel):
    batch: str = Field(min_length=1)
    invoices: list[Invoice] = Field(min_length=1, max_length=1000)


class Checked(BaseModel):
    number: str
    customer: str
    amount: float


class Totals(BaseModel):
    batch: str
    count: int
    total: float
    customers: list[str]


class Approval(BaseModel):
    approved: bool
    approver: str = Field(min_length=1)


class Summary(BaseModel):
    text: str


class LedgerLine(BaseModel):
    account: str
    amount: float


class Ledger(BaseModel):
    lines: list[LedgerLine]


class Notice(BaseModel):
    message: str


@step
def start(data: Batch) -> Batch:
    """Keep the batch as the flow's record; later steps read it with ctx.output_of."""
    return data


@step(retries=2)
def check_invoice(data: Invoice) -> Checked:
    """One invoice; a rule failure sends just this invoice to review."""
    if data.currency != "EUR":
        raise BusinessError(f"invoice {data.number}: currency {data.currency} is not booked here")
    return Checked(number=data.number, customer=data.customer, amount=round(data.amount, 2))


@step
def total(ctx: StepContext, checked: list[Checked]) -> Totals:
    batch = ctx.output_of("start")["batch"]
    return Totals(
        batch=batch,
        count=len(checked),
        total=round(sum(c.amount for c in checked), 2),
        customers=sorted({c.customer for c in checked}),
    )


@step
def approve(ctx: StepContext, data: Totals) -> Totals:
    """Ask a person; their answer (an Approval) becomes this step's output."""
    raise NeedsReview(
        f"Batch {data.batch} totals {data.total:.2f} EUR, over {APPROVAL_LIMIT:.0f}: approve it?",
        form=Approval,
    )


@step
def enforce(data: Approval) -> Approval:
    """A refusal ends here, in review, with who refused; an approval goes on."""
    if not data.approved:
        raise BusinessError(f"batch refused by {data.approver}")
    return data


@step
def summarize(ctx: StepContext, _: object) -> Summary:
    totals = Totals.model_validate(ctx.output_of("total"))
    return Summary(
        text=f"Batch {totals.batch}: {totals.count} invoices, {totals.total:.2f} EUR "
        f"for {', '.join(totals.customers)}"
    )


@step
def ledger(ctx: StepContext, _: object) -> Ledger:
    checked = [Checked.model_validate(c) for c in ctx.output_of("check_invoice")]
    return Ledger(lines=[LedgerLine(account=f"AR/{c.customer}", amount=c.amount) for c in checked])


@step
def send_notice(data: Summary) -> Notice:
    return Notice(message=f"[invoices] {data.text}")


invoice_batch = Flow(
    "invoice_batch",
    [
        start,
        ForEach(check_invoice, items=lambda batch: batch.invoices),
        total,
        Branch(
            on=lambda t: "large" if t.total > APPROVAL_LIMIT else "normal",
            cases={"large": [approve, enforce], "normal": []},
            name="approval",
        ),
        Parallel(summary=[summarize], ledger=[ledger], name="book"),
        SubFlow("notify", input=lambda booked: booked["summary"]),
    ],
    description="Checks, totals, approves and books a batch of invoices.",
    review_due=timedelta(hours=4),
    escalate=Escalate(
        # e.g. INVOICES_HOOK_URL=https://ops.example/hooks/reviews
        #      INVOICES_LEAD_EMAIL=mailto:lead@example.com
        notify=["env:INVOICES_HOOK_URL", "env:INVOICES_LEAD_EMAIL"],
        repeat=timedelta(hours=2),
    ),
)

notify = Flow(
    "notify", [send_notice], description="Formats a notice (a sub-flow of invoice_batch)."
)
