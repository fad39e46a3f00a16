"""Evidence files over the JSON API: served safely, and only to those who may see the item.

RELIABILITY item 36 for artifacts: a reviewer of another team, asking for a
screenshot or trace by its URL, gets 404, as for the item itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from hub import BusinessError, Flow, StepContext, step
from hub import models as m
from hub.registry import Registry
from hub.runtime import Hub
from hub.settings import Settings
from hub.web import create_app
from tests.hub.test_evidence import png
from tests.web.apps import TestClient, add_user, bearer, token_for, work

PAGE = '<h1>Order</h1><p class="err">Postal code is not valid</p><script>alert(1)</script>'


@step(retries=0)
def enter_order(ctx: StepContext, data: dict[str, Any]) -> dict[str, Any]:
    ctx.evidence.screenshot(png(), name="form.png")
    ctx.evidence.html(PAGE, url="http://legacy.local/order", title="Order entry")
    ctx.evidence.trace(b"PK\x03\x04trace")
    ctx.evidence.attach("notes.svg", b"<svg onload='alert(1)'/>", content_type="image/svg+xml")
    raise BusinessError("postal code refused")


FLOWS = Registry(
    [
        Flow("billing_entry", [enter_order], team="billing"),
        Flow("shipping_entry", [enter_order], team="shipping"),
    ]
)


@pytest.fixture
def hub(db_url: str, tmp_path: Path) -> Iterator[Hub]:
    made = Hub(Settings(home=tmp_path / "home", database_url=db_url), registry=FLOWS)
    made.store.create_all()
    made.engine.publish = lambda *_a: None
    for name, role, teams in [
        ("anna", "reviewer", ("billing",)),
        ("sam", "reviewer", ("shipping",)),
        ("vera", "viewer", ("billing",)),
    ]:
        add_user(made, name, role, *teams)
    yield made
    made.store.engine.dispose()


@pytest.fixture
def as_user(hub: Hub) -> Iterator[Callable[[str], TestClient]]:
    made: list[TestClient] = []

    def make(name: str) -> TestClient:
        client = TestClient(create_app(hub))
        client.__enter__()
        made.append(client)
        return bearer(client, token_for(hub, name))

    yield make
    for client in made:
        client.__exit__(None, None, None)


def paused(hub: Hub, flow: str) -> str:
    run_id = hub.engine.start_run(flow, {"ref": "A-1"}).run_id
    work(hub)
    with hub.store.read() as s:
        return str(s.scalars(select(m.ReviewItem.id).where(m.ReviewItem.run_id == run_id)).one())


def by_name(detail: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {a["name"]: a for a in detail["artifacts"]}


def test_the_item_lists_its_evidence_and_serves_each_file_safely(
    hub: Hub, as_user: Callable[[str], TestClient]
) -> None:
    item_id = paused(hub, "billing_entry")
    anna = as_user("anna")
    detail = anna.get(f"/api/reviews/{item_id}").json()
    assert detail["evidence"]["url"] == "http://legacy.local/order"
    assert detail["evidence"]["title"] == "Order entry"
    files = by_name(detail)
    assert [(a["kind"], a["name"]) for a in detail["artifacts"]] == [
        ("screenshot", "form.png"),
        ("html", "page.html"),
        ("trace", "trace.zip"),
        ("file", "notes.svg"),
    ]
    assert files["form.png"]["size"] == len(png())

    shot = anna.get(files["form.png"]["url"])
    assert shot.status_code == 200
    assert shot.content == png()
    assert shot.headers["content-type"] == "image/png"
    assert shot.headers["content-disposition"].startswith("inline;")
    assert "sandbox" in shot.headers["content-security-policy"]
    assert shot.headers["x-content-type-options"] == "nosniff"

    html = anna.get(files["page.html"]["url"])
    assert html.status_code == 200
    assert html.text == PAGE
    assert html.headers["content-type"] == "text/plain; charset=utf-8"
    assert html.headers["content-disposition"] == "attachment; filename*=UTF-8''page.html"

    trace = anna.get(files["trace.zip"]["url"])
    assert trace.headers["content-type"] == "application/zip"
    assert trace.headers["content-disposition"].startswith("attachment;")

    svg = anna.get(files["notes.svg"]["url"])  # an image type that can carry script
    assert svg.headers["content-type"] == "text/plain; charset=utf-8"
    assert svg.headers["content-disposition"].startswith("attachment;")


def test_another_teams_reviewer_gets_404_for_the_item_and_each_of_its_files(
    hub: Hub, as_user: Callable[[str], TestClient]
) -> None:
    item_id = paused(hub, "billing_entry")
    urls = [a["url"] for a in as_user("anna").get(f"/api/reviews/{item_id}").json()["artifacts"]]
    assert len(urls) == 4
    sam = as_user("sam")
    assert sam.get(f"/api/reviews/{item_id}").status_code == 404
    for url in urls:
        answer = sam.get(url)
        assert answer.status_code == 404, url
        assert answer.json()["error"] == "NotFound"
        assert b"PK" not in answer.content and b"PNG" not in answer.content


def test_a_file_is_found_only_under_its_own_item(
    hub: Hub, as_user: Callable[[str], TestClient]
) -> None:
    mine = paused(hub, "billing_entry")
    theirs = paused(hub, "shipping_entry")
    sam = as_user("sam")
    their_file = sam.get(f"/api/reviews/{theirs}").json()["artifacts"][0]["id"]
    # sam sees his own item, but not anna's, whatever file id he puts in the path
    assert sam.get(f"/api/reviews/{mine}/artifacts/{their_file}").status_code == 404
    anna = as_user("anna")
    assert anna.get(f"/api/reviews/{mine}/artifacts/{their_file}").status_code == 404
    assert anna.get(f"/api/reviews/{mine}/artifacts/nope").status_code == 404


def test_viewers_read_evidence_and_strangers_are_asked_to_log_in(
    hub: Hub, as_user: Callable[[str], TestClient]
) -> None:
    item_id = paused(hub, "billing_entry")
    url = as_user("vera").get(f"/api/reviews/{item_id}").json()["artifacts"][0]["url"]
    assert as_user("vera").get(url).content == png()
    with TestClient(create_app(hub)) as anonymous:
        answer = anonymous.get(url)
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == "Bearer"
