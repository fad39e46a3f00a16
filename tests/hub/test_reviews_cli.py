"""``hub reviews``: the CLI against a real HTTP server (uvicorn on 127.0.0.1) with an API token."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from hub import models as m
from hub.cli import app
from hub.registry import Registry
from hub.runtime import Hub
from hub.settings import Settings
from hub.web import create_app
from tests.hub.test_evidence import png
from tests.support.server import serve
from tests.web.apps import BIG, add_user, token_for, work
from tests.web.test_evidence_api import FLOWS as EVIDENCE_FLOWS
from tests.web.test_reviews_api import FLOWS as REVIEW_FLOWS

FLOWS = Registry([*REVIEW_FLOWS, *EVIDENCE_FLOWS])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Hub]:
    db = f"sqlite:///{tmp_path / 'hub.db'}"
    made = Hub(Settings(home=tmp_path / "home", database_url=db, broker_url=None), registry=FLOWS)
    made.store.create_all()
    made.engine.publish = lambda *_args: None
    add_user(made, "anna", "reviewer", "billing")
    add_user(made, "sam", "reviewer", "shipping")
    yield made
    made.store.engine.dispose()


@pytest.fixture
def server(hub: Hub) -> Iterator[str]:
    with serve(create_app(hub)) as url:
        yield url


@pytest.fixture
def cli(server: str, hub: Hub) -> Any:
    tokens = {name: token_for(hub, name) for name in ("anna", "sam")}

    def invoke(*args: str, user: str = "anna", url: str | None = None) -> Any:
        env = {"HUB_URL": url or server, "HUB_TOKEN": tokens.get(user, user)}
        return CliRunner().invoke(app, ["reviews", *args], env=env)

    return invoke


def paused(hub: Hub, flow: str = "billing") -> tuple[str, str]:
    run_id = hub.engine.start_run(flow, BIG).run_id
    work(hub)
    with hub.store.read() as s:
        item = s.scalars(select(m.ReviewItem).where(m.ReviewItem.run_id == run_id)).one()
    return str(run_id), item.id


def test_the_queue_lists_open_items_with_counts(cli: Any, hub: Hub) -> None:
    _, item_id = paused(hub)
    result = cli()
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "1 open (0 overdue, 1 unassigned, 0 mine), 0 closed"
    assert lines[1].startswith(f"{item_id}  open   billing/check  business")
    listed = json.loads(cli("--json", "--flow", "billing").output)
    assert [i["id"] for i in listed["items"]] == [item_id]
    assert cli("--mine").output.splitlines()[-1] == "nothing to review"


def test_show_then_edit_and_retry_then_the_run_finishes(cli: Any, hub: Hub) -> None:
    run_id, item_id = paused(hub)
    shown = cli("show", item_id)
    assert shown.exit_code == 0, shown.output
    assert "error: hub.errors.BusinessError: amount 500 is over the limit of 100" in shown.output
    assert "check" in shown.output and "<- this step" in shown.output
    done = cli("act", item_id, "edit", "--input", '{"order_id": "A-1", "amount": 5}')
    assert done.exit_code == 0, done.output
    assert done.output.strip() == f"edit: review item {item_id} is closed (edited); run running"
    work(hub)
    with hub.store.read() as s:
        assert s.get(m.Run, run_id).status == "succeeded"  # type: ignore[union-attr]


def test_refusals_are_clear_and_exit_non_zero(cli: Any, hub: Hub) -> None:
    _, item_id = paused(hub)
    bad = cli("act", item_id, "edit", "--input", '{"order_id": "", "amount": 5}')
    assert bad.exit_code == 2
    assert "422" in bad.output and "order_id: String should have at least 1 character" in bad.output
    assert cli("act", item_id, "skip").exit_code == 2  # no reason
    other_team = cli("show", item_id, user="sam")
    assert other_team.exit_code == 1 and "404" in other_team.output
    assert cli("act", item_id, "comment", "--text", "looking").exit_code == 0
    assert cli("act", item_id, "retry").exit_code == 0
    closed = cli("act", item_id, "retry")
    assert closed.exit_code == 1 and "409" in closed.output and "is closed" in closed.output
    assert cli("act", item_id, "approve").exit_code == 2


def test_a_missing_or_wrong_token_and_a_dead_server_are_explained(cli: Any) -> None:
    wrong = cli(user="hub_not-a-token")
    assert wrong.exit_code == 1 and "refused HUB_TOKEN" in wrong.output
    missing = cli(user="")
    assert missing.exit_code == 2 and "HUB_TOKEN is not set" in missing.output
    dead = cli(url=f"http://127.0.0.1:{free_port()}")
    assert dead.exit_code == 1 and "cannot reach the hub at" in dead.output


def test_show_lists_the_evidence_and_file_downloads_it(cli: Any, hub: Hub, tmp_path: Path) -> None:
    _run, item_id = paused(hub, "billing_entry")
    shown = cli("show", item_id)
    assert shown.exit_code == 0, shown.output
    assert "url: http://legacy.local/order" in shown.output
    assert "title: Order entry" in shown.output
    files = [line.split()[1] for line in shown.output.splitlines() if "file " in line]
    assert len(files) == 4
    assert f"hub reviews file {item_id} {files[0]}" in shown.output

    saved = cli("file", item_id, files[0], "--out", str(tmp_path))
    assert saved.exit_code == 0, saved.output
    assert (tmp_path / "form.png").read_bytes() == png()
    assert f"saved {tmp_path / 'form.png'}" in saved.output

    theirs = cli("file", item_id, files[0], "--out", str(tmp_path / "x.png"), user="sam")
    assert theirs.exit_code == 1
    assert "404" in theirs.output
    assert not (tmp_path / "x.png").exists()
