"""What the web tests share: a hub with two flows, users, and clients logged in two ways."""

from __future__ import annotations

import re
import warnings
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import select
from starlette.exceptions import StarletteDeprecationWarning

from flows.hello import hello
from hub import BusinessError, Flow, auth, step
from hub import models as m
from hub.registry import Registry
from hub.runtime import Hub

with warnings.catch_warnings():
    # Starlette now wants httpx2 for its test client; httpx (the hub's client) still works
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

PASSWORD = "correct horse battery"
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
