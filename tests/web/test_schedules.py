"""Schedules over HTTP: the API, the pages and ``hub schedules``, with their refusals.

The rows are synced and fired in-process (``hub.schedules``) on SQLite and
PostgreSQL; the CLI talks to a real uvicorn server on 127.0.0.1.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from flows.hello import hello
from hub import Flow, Schedule, schedules, step
from hub import models as m
from hub.cli import app as cli_app
from hub.registry import Registry
from hub.runtime import Hub
from hub.settings import Settings
from hub.web import create_app
from tests.support.server import serve
from tests.web.apps import TestClient, add_user, bearer, form_token, log_in, token_for

NOW = datetime(2025, 3, 28, 1, 30, 1)  # naive UTC: just after 02:30 CET
KEY = "nightly:report"


@step(retries=0)
def record(data: dict[str, Any]) -> dict[str, Any]:
    return data


nightly = Flow(
    "nightly",
    [record],
    triggers=[Schedule("30 2 * * *", tz="Europe/Berlin", name="report", overlap="forbid")],
)


@pytest.fixture
def hub(db_url: str, tmp_path: Path) -> Iterator[Hub]:
    settings = Settings(home=tmp_path / "home", database_url=db_url, broker_url=None)
    made = Hub(settings, registry=Registry([hello, nightly]))
    made.store.create_all()
    made.engine.publish = lambda *_args: None
    schedules.sync(made, datetime(2025, 3, 27, 12))
    schedules.fire_due(made, NOW)  # 02:30 CET on the 28th: one run
    for name, role in (("vic", "viewer"), ("ops", "operator")):
        add_user(made, name, role)
    yield made
    made.store.engine.dispose()


@pytest.fixture
def app(hub: Hub) -> Any:
    return create_app(hub, clock=lambda: NOW)


def as_user(app: Any, hub: Hub, name: str) -> TestClient:
    return bearer(TestClient(app), token_for(hub, name))


def audit(hub: Hub) -> list[tuple[str, str | None]]:
    with hub.store.read() as s:
        found = s.scalars(
            select(m.AuditEntry)
            .where(m.AuditEntry.object_kind == "schedule")
            .order_by(m.AuditEntry.id)
        ).all()
        return [(a.action, a.actor) for a in found]


# ------------------------------------------------------------------------- API
def test_viewers_list_schedules_and_read_one_with_its_next_fires_and_history(
    app: Any, hub: Hub
) -> None:
    client = as_user(app, hub, "vic")

    listed = client.get("/api/schedules")
    assert listed.status_code == 200
    (one,) = listed.json()
    assert (one["key"], one["flow"], one["cron"], one["tz"], one["overlap"]) == (
        KEY,
        "nightly",
        "30 2 * * *",
        "Europe/Berlin",
        "forbid",
    )
    assert (one["paused"], one["last_outcome"]) == (False, "started")
    assert one["last_fire_local"] == "2025-03-28T02:30:00+01:00"
    assert one["next_fire_local"] == "2025-03-29T02:30:00+01:00"

    shown = client.get(f"/api/schedules/{KEY}").json()
    assert [f["wall"] for f in shown["next_fires"][:3]] == [
        "2025-03-29 02:30:00 CET",
        "2025-03-30 03:00:00 CEST",  # the DST jump: once, at the jump
        "2025-03-31 02:30:00 CEST",
    ]
    assert len(shown["next_fires"]) == 10
    (fired,) = shown["fires"]
    assert (fired["utc"], fired["outcome"], fired["run_status"]) == (
        "2025-03-28T01:30:00.000Z",
        "started",
        "queued",
    )
    assert shown["active_runs"] == [fired["run_id"]]


def test_operators_pause_and_resume_audited_and_viewers_are_refused(app: Any, hub: Hub) -> None:
    viewer, operator = as_user(app, hub, "vic"), as_user(app, hub, "ops")

    refused = viewer.post(f"/api/schedules/{KEY}/pause")
    assert refused.status_code == 403
    assert "operator" in refused.json()["detail"]
    assert viewer.get(f"/api/schedules/{KEY}").json()["paused"] is False

    paused = operator.post(f"/api/schedules/{KEY}/pause")
    assert paused.status_code == 200
    assert (paused.json()["paused"], paused.json()["paused_by"], paused.json()["changed"]) == (
        True,
        "ops",
        True,
    )
    assert operator.post(f"/api/schedules/{KEY}/pause").json()["changed"] is False
    assert viewer.post(f"/api/schedules/{KEY}/resume").status_code == 403
    resumed = operator.post(f"/api/schedules/{KEY}/resume").json()
    assert (resumed["paused"], resumed["changed"]) == (False, True)
    assert audit(hub) == [("schedule.pause", "ops"), ("schedule.resume", "ops")]


def test_an_unknown_schedule_or_action_is_404_and_no_login_is_401(app: Any, hub: Hub) -> None:
    operator = as_user(app, hub, "ops")
    assert operator.get("/api/schedules/nightly:nope").status_code == 404
    assert operator.post("/api/schedules/nightly:nope/pause").status_code == 404
    assert operator.post(f"/api/schedules/{KEY}/delete").status_code == 404
    assert TestClient(app).get("/api/schedules").status_code == 401
    assert audit(hub) == []


# ----------------------------------------------------------------------- pages
def logged_in(app: Any, name: str) -> TestClient:
    client = TestClient(app)
    assert log_in(client, name).status_code == 303
    return client


def test_the_schedules_page_lists_them_and_one_page_shows_the_next_fires_in_its_zone(
    app: Any,
) -> None:
    client = logged_in(app, "vic")

    page = client.get("/schedules")
    assert page.status_code == 200
    assert f'href="/schedules/{KEY}"' in page.text
    assert "Europe/Berlin" in page.text and "run_once / forbid" in page.text
    assert "2025-03-29 02:30:00+01:00" in page.text  # the next fire, in its zone

    one = client.get(f"/schedules/{KEY}")
    assert one.status_code == 200
    assert "2025-03-30 03:00:00 CEST" in one.text
    assert "2025-03-28 02:30:00 CET" in one.text  # the fire, with its run
    assert "<form" in one.text and 'action="/logout"' in one.text
    assert f'action="/schedules/{KEY}/pause"' not in one.text  # viewers see no pause button
    assert "<script" not in one.text and "style=" not in one.text
    assert "script-src 'self'" in one.headers["content-security-policy"]
    assert client.get("/schedules/nightly:nope").status_code == 404


def test_an_operator_pauses_and_resumes_from_the_page_with_the_forms_token(
    app: Any, hub: Hub
) -> None:
    client = logged_in(app, "ops")
    page = client.get(f"/schedules/{KEY}").text
    assert f'action="/schedules/{KEY}/pause"' in page
    token = form_token(page)

    assert client.post(f"/schedules/{KEY}/pause", data={}).status_code == 403  # no token
    assert client.post(f"/schedules/{KEY}/pause", data={"csrf_token": "x" * 43}).status_code == 403
    done = client.post(
        f"/schedules/{KEY}/pause", data={"csrf_token": token}, follow_redirects=False
    )
    assert (done.status_code, done.headers["location"]) == (303, f"/schedules/{KEY}?done=pause")
    page = client.get(done.headers["location"]).text
    assert "The schedule is paused" in page
    assert f'action="/schedules/{KEY}/resume"' in page
    assert re.search(r"by ops", page)

    resumed = client.post(
        f"/schedules/{KEY}/resume", data={"csrf_token": token}, follow_redirects=False
    )
    assert resumed.status_code == 303
    assert audit(hub) == [("schedule.pause", "ops"), ("schedule.resume", "ops")]


def test_a_viewer_posting_the_form_is_refused(app: Any, hub: Hub) -> None:
    client = logged_in(app, "vic")
    token = form_token(client.get(f"/schedules/{KEY}").text)
    refused = client.post(f"/schedules/{KEY}/pause", data={"csrf_token": token})
    assert refused.status_code == 403
    assert audit(hub) == []


# ------------------------------------------------------------------------- CLI
@pytest.fixture
def cli(app: Any, hub: Hub) -> Iterator[Any]:
    tokens = {name: token_for(hub, name) for name in ("vic", "ops")}
    with serve(app) as url:

        def invoke(*args: str, user: str = "ops") -> Any:
            env = {"HUB_URL": url, "HUB_TOKEN": tokens[user]}
            return CliRunner().invoke(cli_app, ["schedules", *args], env=env)

        yield invoke


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_hub_schedules_lists_shows_pauses_and_resumes_over_the_api(cli: Any, hub: Hub) -> None:
    listed = cli(user="vic")
    assert listed.exit_code == 0, listed.output
    assert KEY in listed.output and "run_once/forbid" in listed.output
    assert "2025-03-29 02:30:00+01:00" in listed.output

    shown = cli("show", KEY, user="vic")
    assert shown.exit_code == 0, shown.output
    assert "2025-03-30 03:00:00 CEST" in shown.output
    assert "started" in shown.output and "(queued)" in shown.output

    refused = cli("pause", KEY, user="vic")
    assert refused.exit_code == 1
    assert "403" in refused.output and "operator" in refused.output

    paused = cli("pause", KEY)
    assert paused.exit_code == 0, paused.output
    assert f"schedule {KEY} paused" in paused.output
    assert "paused" in cli("--json", user="vic").output
    assert cli("pause", KEY).output.strip() == f"schedule {KEY} was already paused"
    resumed = cli("resume", KEY)
    assert resumed.exit_code == 0 and "resumed from now" in resumed.output

    missing = cli("show", "nightly:nope")
    assert missing.exit_code == 1 and "404" in missing.output
    assert audit(hub) == [("schedule.pause", "ops"), ("schedule.resume", "ops")]
