"""What the web tests share: a hub with two flows, users, and clients logged in two ways."""

from __future__ import annotations

import re
import struct
import warnings
import zlib
from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy import select
from starlette.exceptions import StarletteDeprecationWarning

from flows.hello import hello
from hub import BusinessError, Flow, NeedsReview, StepContext, auth, step
from hub import models as m
from hub.registry import Registry
from hub.runtime import Hub

with warnings.catch_warnings():
    # Starlette now wants httpx2 for its test client; httpx (the hub's client) still works
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

PASSWORD = "correct horse battery"


class Clock:
    """The app's notion of now (naive UTC), moved by tests: ``clock.now += timedelta(...)``."""

    def __init__(self) -> None:
        from hub.models import utcnow

        self.now = utcnow()

    def __call__(self) -> Any:
        return self.now


BIG = {"order_id": "A-1", "amount": 500}


class Order(BaseModel):
    order_id: str = Field(min_length=1)
    amount: int = Field(ge=0)


class Checked(BaseModel):
    order_id: str
    amount: int
    approved: bool = False


@step(retries=0)
def check(data: Order) -> Checked:
    if data.amount > 100:
        raise BusinessError(f"amount {data.amount} is over the limit of 100")
    return Checked(order_id=data.order_id, amount=data.amount, approved=True)


@step(retries=0)
def book(data: Checked) -> Checked:
    return data


approval = Flow("approval", [check, book], description="Big orders need a person.")
REGISTRY = Registry([hello, approval])


def add_user(hub: Hub, name: str, role: str, *teams: str, password: str = PASSWORD) -> None:
    hub.store.run(lambda s: auth.create_user(s, name, role=role, password=password, teams=teams))


def token_for(hub: Hub, name: str, label: str = "tests") -> str:
    return str(hub.store.run(lambda s: auth.create_token(s, auth.find_user(s, name), label)))


def bearer(client: TestClient, token: str) -> TestClient:
    client.headers["Authorization"] = f"Bearer {token}"
    return client


def form_token(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, html
    return found.group(1)


def log_in(client: TestClient, name: str, password: str = PASSWORD) -> Any:
    """Log in through the form, as a browser does; returns the POST /login response."""
    token = form_token(client.get("/login").text)
    return client.post(
        "/login",
        data={"name": name, "password": password, "csrf_token": token},
        follow_redirects=False,
    )


def work(hub: Hub) -> None:
    """Execute every ready step in this process, as a worker would."""
    while True:
        with hub.store.transaction() as s:
            ready = s.scalars(select(m.Step.id).where(m.Step.status == m.STEP_READY)).all()
        if not ready:
            return
        for step_id in ready:
            hub.engine.execute(step_id)


def paused_run(hub: Hub) -> str:
    """A run of ``approval`` paused for review, started through the engine."""
    run_id = hub.engine.start_run("approval", BIG, trigger="api").run_id
    work(hub)
    with hub.store.read() as s:
        assert s.get(m.Run, run_id).status == m.RUN_NEEDS_REVIEW  # type: ignore[union-attr]
    return str(run_id)


# ------------------------------------------------ review pages: a question and evidence
class Approval(BaseModel):
    """The answer a person gives to ``ask``'s question."""

    approved: bool
    approver: str = Field(min_length=1)
    level: Literal["low", "high"] = "low"


@step(retries=0)
def ask(data: Order) -> Approval:
    raise NeedsReview(f"Approve order {data.order_id} of {data.amount}?", form=Approval)


question = Flow("question", [ask], team="billing", description="Asks a person to approve.")


class Customer(BaseModel):
    name: str = Field(min_length=1)
    country: Literal["DE", "FR", "NL"] = "DE"


class Invoice(BaseModel):
    number: str = Field(min_length=1)
    customer: Customer
    amount: int = Field(ge=0, description="In whole euros.")
    express: bool = False
    note: str | None = None


class Keyed(BaseModel):
    number: str
    erp_id: str


#: The page the entry bot was on when the ERP refused an invoice: hostile on purpose.
ERP_PAGE = (
    "<html><head><title>New invoice</title><script>alert('erp')</script></head>"
    '<body><h1>New invoice</h1><p class="err">Amount over the limit</p>'
    '<img src=x onerror="alert(2)"></body></html>'
)


def screen_png(width: int = 480, height: int = 300) -> bytes:
    """A real PNG of a made-up form: a blue title bar, a white page, a red error box."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    def pixel(x: int, y: int) -> bytes:
        if y < 36:
            return b"\x1f\x5f\xbf"
        if 60 <= y < 100 and 24 <= x < width - 24:
            inside = 62 <= y < 98 and 26 <= x < width - 26
            return b"\xfd\xec\xea" if inside else b"\xb3\x26\x1e"
        if 130 <= y < 160 and 24 <= x < 300:
            return b"\xdd\xe1\xe6"
        return b"\xff\xff\xff"

    raw = b"".join(b"\x00" + b"".join(pixel(x, y) for x in range(width)) for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


@step(retries=0)
def key_in(ctx: StepContext, data: Invoice) -> Keyed:
    """Types the invoice into the ERP; leaves evidence, and refuses amounts over 1000."""
    ctx.evidence.action("opened New invoice")
    ctx.evidence.action(f"typed invoice {data.number} for {data.customer.name}")
    ctx.log.info("keying invoice %s", data.number)
    if data.amount > 1000:
        ctx.evidence.action("clicked Save")
        ctx.evidence.screenshot(screen_png(), name="screen.png")
        ctx.evidence.html(ERP_PAGE, url="https://erp.example/invoices/new", title="New invoice")
        ctx.evidence.note("invoice", data.number)
        ctx.evidence.http(
            request={
                "method": "POST",
                "url": "https://erp.example/api/invoices",
                "headers": {"Authorization": "Bearer s3cret-t0ken", "Content-Type": "text/plain"},
                "body": f"invoice {data.number}",
            },
            response={"status": 422, "headers": {}, "body": "<b>amount over the limit</b>"},
        )
        ctx.log.warning("the ERP refused invoice %s", data.number)
        raise BusinessError(f"the ERP refused invoice {data.number}: <b>amount over the limit</b>")
    return Keyed(number=data.number, erp_id=f"ERP-{data.number}")


@step(retries=0)
def confirm(data: Keyed) -> Keyed:
    return data


invoice_entry = Flow(
    "invoice_entry", [key_in, confirm], team="billing", review_due=3600, description="An ERP bot."
)
#: Every flow of this module: what ``HUB_FLOWS=tests.web.apps`` loads in a worker.
REVIEW_REGISTRY = Registry([hello, approval, question, invoice_entry])
LATE_INVOICE = {
    "number": "INV-7",
    "customer": {"name": "ACME", "country": "FR"},
    "amount": 5000,
    "express": True,
}


#: The people of the review tests: two billing reviewers, one of shipping, a viewer, an operator.
REVIEWERS = [
    ("anna", "reviewer", ("billing",)),
    ("bert", "reviewer", ("billing",)),
    ("sam", "reviewer", ("shipping",)),
    ("vera", "viewer", ("billing",)),
    ("olga", "operator", ()),
]


def review_hub(db_url: str, home: Any, clock: Any, registry: Registry) -> Hub:
    """A hub on ``db_url`` with :data:`REVIEWERS`, the test's clock, and its publishes recorded
    in ``hub.published`` instead of sent."""
    from hub.settings import Settings

    made = Hub(Settings(home=home, database_url=db_url, broker_url=None), registry=registry)
    made.store.create_all()
    made.engine.clock = clock
    published: list[tuple[str, str, float | None]] = []

    def record(step_id: str, queue: str, countdown: float | None = None) -> None:
        published.append((step_id, queue, countdown))

    made.engine.publish = record
    made.published = published  # type: ignore[attr-defined]
    for name, role, teams in REVIEWERS:
        add_user(made, name, role, *teams)
    return made
