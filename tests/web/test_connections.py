"""Connections in the web app: the pages and the JSON API, with their roles and refusals.

Three connections on SQLite and PostgreSQL: ``erp`` from the connections file,
``mail`` from the environment and, stored by the tests, ``crm`` in the
database, tested against the REST sandbox on 127.0.0.1. A canary key stored
through the form is looked for in every page, answer, log line and table.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import func, inspect, select, text

from connectors.rest import RestConnector
from hub import connections as conn
from hub import models as m
from hub.runtime import Hub
from hub.settings import Settings
from hub.web import create_app
from tests.sandbox.rest_api import RestSandbox
from tests.web.apps import REGISTRY, TestClient, add_user, bearer, form_token, log_in, token_for

CANARY = "canary-web-conn-Q7x!p2"
USERS = (("vic", "viewer"), ("rex", "reviewer"), ("ops", "operator"), ("ada", "admin"))
CHECK = {"check_path": "/key/items/link"}


@pytest.fixture(scope="module")
def sandbox() -> Iterator[RestSandbox]:
    with RestSandbox(api_key=CANARY) as running:
        yield running


@pytest.fixture
def file(tmp_path: Path) -> Path:
    path = tmp_path / "connections.toml"
    path.write_text(
        '[erp]\nkind = "rest"\nurl = "https://erp.example.com/api"\nrate_limit = "600/min"\n'
        'auth = { kind = "bearer", token = "env:ERP_TOKEN" }\n'
    )
    return path


@pytest.fixture
def settings(db_url: str, tmp_path: Path, file: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    for variable in os.environ:
        if variable.startswith("HUB_CONNECTION"):
            monkeypatch.delenv(variable)
    monkeypatch.setenv("HUB_CONNECTION_MAIL", json.dumps({"kind": "fake", "url": "fake://mail"}))
    return Settings(
        home=tmp_path / "home",
        database_url=db_url,
        broker_url=None,
        secret_key=Fernet.generate_key().decode(),
        connections_file=file,
    )


@pytest.fixture
def hub(settings: Settings) -> Iterator[Hub]:
    made = Hub(settings, registry=REGISTRY)
    made.store.create_all()
    for name, role in USERS:
        add_user(made, name, role)
    yield made
    made.store.engine.dispose()


@pytest.fixture
def app(hub: Hub) -> Any:
    return create_app(hub)


def logged_in(app: Any, name: str) -> TestClient:
    client = TestClient(app)
    assert log_in(client, name).status_code == 303
    return client


def as_user(app: Any, hub: Hub, name: str) -> TestClient:
    return bearer(TestClient(app), token_for(hub, name))


def store(hub: Hub, url: str, key: str, **more: Any) -> None:
    """Store ``crm`` (an API key login to ``url``) as ``hub connections set`` would."""
    config = conn.ConnectionConfig.model_validate(
        {"name": "crm", "kind": "rest", "url": url, "auth": {"kind": "api_key", "key": key},
         "options": CHECK, **more}
    )  # fmt: skip
    conn.save(hub.store, hub.settings, config, by="setup")


def stored(hub: Hub) -> conn.ConnectionConfig | None:
    return conn.from_database(hub.store, hub.settings)[0] if rows(hub) else None


def rows(hub: Hub) -> int:
    with hub.store.read() as s:
        return int(s.scalar(select(func.count()).select_from(m.Connection)) or 0)


def audit(hub: Hub) -> list[tuple[str, str | None, str]]:
    with hub.store.read() as s:
        found = s.scalars(
            select(m.AuditEntry)
            .where(m.AuditEntry.object_kind == "connection")
            .order_by(m.AuditEntry.id)
        ).all()
        return [(a.action, a.actor, a.object_id) for a in found]


def form(url: str = "", **fields: str) -> dict[str, str]:
    """The add or edit form as a browser sends it (every field, secrets blank)."""
    sent = {
        "kind": "rest", "url": url, "auth_kind": "none", "header": "X-API-Key", "username": "",
        "password": "", "key": "", "token": "", "token_url": "", "login_url": "",
        "client_id": "", "client_secret": "", "scope": "", "private_key": "",
        "security_token": "", "timeout": "30", "connect_timeout": "10", "retries": "3",
        "backoff": "0.5", "max_wait": "30", "rate_limit": "", "allow": "", "verify": "true",
        "ca_bundle": "", "options": json.dumps(CHECK),
    }  # fmt: skip
    return {**sent, **fields}


# ------------------------------------------------------------------- roles
def test_operators_and_admins_read_and_reviewers_and_viewers_are_refused(
    app: Any, hub: Hub
) -> None:
    for name, allowed in (("vic", False), ("rex", False), ("ops", True), ("ada", True)):
        api = as_user(app, hub, name)
        answers = [
            api.get("/api/connections"),
            api.get("/api/connections/erp"),
            api.post("/api/connections/nope/test"),
        ]
        page = logged_in(app, name)
        answers += [page.get("/connections"), page.get("/connections/erp")]
        token = form_token(page.get("/").text)
        answers.append(page.post("/connections/nope/test", data={"csrf_token": token}))
        expected = [200, 200, 404, 200, 200, 404] if allowed else [403] * 6
        assert [a.status_code for a in answers] == expected, name
        nav = page.get("/").text
        assert ('href="/connections"' in nav) is allowed, name
        if not allowed:
            assert "operator" in answers[0].json()["detail"]

    anonymous = TestClient(app)
    assert anonymous.get("/api/connections").status_code == 401
    away = anonymous.get("/connections/erp", follow_redirects=False)
    assert (away.status_code, away.headers["location"]) == (303, "/login?next=%2Fconnections%2Ferp")


def test_only_admins_get_the_forms(app: Any, hub: Hub) -> None:
    store(hub, "https://crm.example.com", "k-123")
    operator = logged_in(app, "ops")
    page = operator.get("/connections/crm").text
    assert 'action="/connections/crm/test"' in page
    assert "/connections/crm/edit" not in page and "/delete" not in page
    assert "Add a connection" not in operator.get("/connections").text
    assert operator.get("/connections?add=1").status_code == 403
    assert operator.get("/connections/crm/edit").status_code == 403
    token = form_token(page)
    posted = form("https://x.example.com", name="new1", csrf_token=token)
    assert operator.post("/connections", data=posted).status_code == 403
    edited = form("https://x.example.com", csrf_token=token)
    assert operator.post("/connections/crm/edit", data=edited).status_code == 403
    deleting = {"csrf_token": token, "confirm": "yes"}
    assert operator.post("/connections/crm/delete", data=deleting).status_code == 403
    assert rows(hub) == 1 and stored(hub).url == "https://crm.example.com"  # type: ignore[union-attr]
    assert audit(hub) == []


# --------------------------------------------------------------- list, show
def test_the_list_and_the_api_say_where_each_is_defined_with_secrets_hidden(
    app: Any, hub: Hub, file: Path
) -> None:
    store(hub, "https://crm.example.com", "k-s3cret-value", rate_limit="5/s")
    page = logged_in(app, "ops").get("/connections")
    assert page.status_code == 200
    cells = [
        [c.strip() for c in row]
        for row in re.findall(
            r"<tr>\s*<td><a[^>]*>([^<]+)</a></td>\s*<td>([^<]+)</td>\s*<td[^>]*>([^<]+)</td>"
            r"\s*<td>([^<]+)</td>\s*<td>([^<]+)</td>\s*<td>(\w+)",
            page.text,
        )
    ]
    assert cells == [
        ["crm", "rest", "https://crm.example.com", "api_key", "5/s", "database"],
        ["erp", "rest", "https://erp.example.com/api", "bearer", "600/min", "file"],
        ["mail", "fake", "fake://mail", "none", "\N{EN DASH}", "environment"],
    ]
    assert "HUB_CONNECTION_MAIL" in page.text and str(file) in page.text

    api = as_user(app, hub, "ops")
    listed = api.get("/api/connections").json()
    assert [(c["name"], c["defined_in"], c["source"]) for c in listed] == [
        ("crm", "database", "database"),
        ("erp", "file", str(file)),
        ("mail", "environment", "HUB_CONNECTION_MAIL"),
    ]
    crm = api.get("/api/connections/crm").json()
    assert crm["auth"] == {"kind": "api_key", "header": "X-API-Key", "key": "[encrypted]"}
    assert (crm["updated_by"], crm["rate_limit"], crm["options"]) == ("setup", "5/s", CHECK)
    assert api.get("/api/connections/erp").json()["auth"]["token"] == "env:ERP_TOKEN"
    assert api.get("/api/connections/nope").status_code == 404

    one = logged_in(app, "ops").get("/connections/crm")
    assert "[encrypted]" in one.text and "k-s3cret-value" not in one.text
    assert "stored by setup" in one.text and "/key/items/link" in one.text
    assert "k-s3cret-value" not in json.dumps(listed) + json.dumps(crm)


def test_a_configuration_the_hub_cannot_read_is_a_message_not_a_500(
    app: Any, hub: Hub, settings: Settings, file: Path
) -> None:
    store(hub, "https://crm.example.com", "k-123")
    file.write_text("[erp\nkind = rest\n")
    client, api = logged_in(app, "ada"), as_user(app, hub, "ops")
    for page in (client.get("/connections"), client.get("/connections/crm")):
        assert page.status_code == 503
        assert f"{file}: not valid TOML" in page.text and "cannot be read" in page.text
    token = form_token(client.get("/").text)
    tested = client.post("/connections/crm/test", data={"csrf_token": token})
    assert tested.status_code == 503 and "not valid TOML" in tested.text
    for answer in (api.get("/api/connections"), api.post("/api/connections/crm/test")):
        assert answer.status_code == 503 and "not valid TOML" in answer.json()["detail"]

    file.write_text("")
    other = Settings(**{**settings.model_dump(), "secret_key": Fernet.generate_key().decode()})
    other_hub = Hub(other, registry=REGISTRY)
    try:
        page = logged_in(create_app(other_hub), "ops").get("/connections")
    finally:
        other_hub.store.engine.dispose()
    assert page.status_code == 503
    assert "connection &#39;crm&#39; (database): its secrets cannot be decrypted" in page.text


# --------------------------------------------------------------------- test
def test_the_test_passes_with_the_key_and_fails_with_a_wrong_one_in_a_worker_thread(
    app: Any, hub: Hub, sandbox: RestSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    where: list[str] = []
    check = RestConnector.check

    def spy(self: RestConnector) -> str:
        try:
            asyncio.get_running_loop()
            where.append("event loop")
        except RuntimeError:
            where.append("worker thread")
        return check(self)

    monkeypatch.setattr(RestConnector, "check", spy)
    store(hub, sandbox.url, CANARY)
    client, api = logged_in(app, "ops"), as_user(app, hub, "ops")
    token = form_token(client.get("/connections/crm").text)

    assert client.post("/connections/crm/test", data={}).status_code == 403  # no token
    passed = client.post("/connections/crm/test", data={"csrf_token": token})
    assert passed.status_code == 200
    assert f"GET {sandbox.url}/key/items/link answered 200" in passed.text
    assert "Passed in " in passed.text and "Failed" not in passed.text
    answer = api.post("/api/connections/crm/test").json()
    assert (answer["ok"], answer["error"]) == (True, None)
    assert answer["message"].startswith(f"GET {sandbox.url}/key/items/link answered 200")
    assert 0 < answer["seconds"] < 10

    store(hub, sandbox.url, "wrong-key")
    failed = client.post("/connections/crm/test", data={"csrf_token": token})
    assert failed.status_code == 200
    said = (
        "crm: GET /key/items/link answered 401: Invalid API key; "
        "check the credentials of connection &#39;crm&#39;"
    )
    assert "Failed in " in failed.text and f"(BusinessError): {said}" in failed.text
    assert "Traceback" not in failed.text
    answer = api.post("/api/connections/crm/test").json()
    assert (answer["ok"], answer["error"]) == (False, "BusinessError")
    assert answer["message"] == said.replace("&#39;", "'")
    assert where == ["worker thread"] * 4


def test_a_test_message_never_shows_the_secret(
    app: Any, hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    def leaky(self: RestConnector) -> str:
        raise RuntimeError(f"the server said: key {self.secret('key')} is not valid")

    monkeypatch.setattr(RestConnector, "check", leaky)
    store(hub, "https://crm.example.com", CANARY)
    answer = as_user(app, hub, "ops").post("/api/connections/crm/test").json()
    assert answer == {
        "name": "crm",
        "ok": False,
        "message": "the server said: key [hidden] is not valid",
        "error": "unexpected RuntimeError",
        "seconds": answer["seconds"],
    }


# ------------------------------------------------------------ add, change, delete
def test_an_admin_adds_changes_and_deletes_with_the_forms_token(
    app: Any, hub: Hub, sandbox: RestSandbox
) -> None:
    client = logged_in(app, "ada")
    listing = client.get("/connections").text
    assert 'href="/connections?add=1"' in listing
    blank = client.get("/connections?add=1")
    assert blank.status_code == 200 and 'action="/connections"' in blank.text
    token = form_token(blank.text)
    new = form(sandbox.url, name="crm", auth_kind="api_key", key=CANARY, rate_limit="20/s")

    assert client.post("/connections", data=new).status_code == 403  # no token
    assert client.post("/connections", data={**new, "csrf_token": "x" * 43}).status_code == 403
    assert rows(hub) == 0
    added = client.post("/connections", data={**new, "csrf_token": token}, follow_redirects=False)
    assert (added.status_code, added.headers["location"]) == (303, "/connections/crm?done=added")
    config = stored(hub)
    assert config is not None and (config.auth.key, config.rate_limit) == (CANARY, "20/s")
    assert "The connection is stored" in client.get(added.headers["location"]).text

    edit = client.get("/connections/crm/edit")
    assert edit.status_code == 200
    assert f'value="{sandbox.url}"' in edit.text and 'value="20/s"' in edit.text
    assert 'name="key" value=""' in edit.text and "a value is stored, encrypted" in edit.text
    changed = form(sandbox.url, auth_kind="api_key", key="", timeout="5", rate_limit="")
    assert client.post("/connections/crm/edit", data=changed).status_code == 403  # no token
    saved = client.post(
        "/connections/crm/edit", data={**changed, "csrf_token": token}, follow_redirects=False
    )
    assert (saved.status_code, saved.headers["location"]) == (303, "/connections/crm?done=saved")
    config = stored(hub)
    assert config is not None
    assert (config.auth.key, config.timeout, config.rate_limit) == (CANARY, 5.0, None)
    tested = client.post("/connections/crm/test", data={"csrf_token": token})
    assert "answered 200" in tested.text  # the kept key still logs in

    by_env = form(sandbox.url, auth_kind="api_key", key="env:CRM_KEY")
    client.post("/connections/crm/edit", data={**by_env, "csrf_token": token})
    assert stored(hub).auth.key == "env:CRM_KEY"  # type: ignore[union-attr]
    assert "now env:CRM_KEY" in client.get("/connections/crm/edit").text

    page = client.get("/connections/crm").text
    assert 'action="/connections/crm/delete"' in page
    unconfirmed = client.post("/connections/crm/delete", data={"csrf_token": token})
    assert unconfirmed.status_code == 422 and "Tick the box" in unconfirmed.text
    assert client.post("/connections/crm/delete", data={"confirm": "yes"}).status_code == 403
    assert rows(hub) == 1
    deleted = client.post(
        "/connections/crm/delete",
        data={"csrf_token": token, "confirm": "yes"},
        follow_redirects=False,
    )
    assert (deleted.status_code, deleted.headers["location"]) == (303, "/connections?deleted=crm")
    assert rows(hub) == 0
    assert "The connection crm is deleted" in client.get(deleted.headers["location"]).text
    assert client.get("/connections/crm").status_code == 404
    assert audit(hub) == [
        ("connection.create", "ada", "crm"),
        ("connection.update", "ada", "crm"),
        ("connection.update", "ada", "crm"),
        ("connection.delete", "ada", "crm"),
    ]
    with hub.store.read() as s:
        entry = s.scalars(select(m.AuditEntry).order_by(m.AuditEntry.id)).first()
        assert entry is not None and entry.after["secrets_set"] == ["key"]
        assert entry.after["auth"]["key"] == "[encrypted]"


def test_a_bad_field_answers_422_beside_it_with_the_typed_values_and_nothing_stored(
    app: Any, hub: Hub
) -> None:
    client = logged_in(app, "ada")
    token = form_token(client.get("/connections?add=1").text)
    typed = form(
        "https://crm.example.com/api",
        name="crm",
        auth_kind="api_key",
        key="typed-secret-Zq9",
        rate_limit="fast",
        retries="2.5",
        options="{oops",
        allow="crm-files.example.com:443",
        csrf_token=token,
    )
    refused = client.post("/connections", data=typed)
    assert refused.status_code == 422
    page = refused.text
    assert "Nothing was stored" in page
    assert 'id="f-rate_limit-error">rate_limit &#39;fast&#39;: write calls per time' in page
    assert 'id="f-retries-error">Input should be a valid integer' in page
    assert 'id="f-options-error">This is not valid JSON' in page
    assert 'aria-invalid="true"' in page
    assert 'value="https://crm.example.com/api"' in page and 'value="fast"' in page
    assert "crm-files.example.com:443</textarea>" in page and "{oops</textarea>" in page
    assert "typed-secret-Zq9" not in page and "type the ones you changed again" in page

    basic = form("https://crm.example.com", name="Bad Name", auth_kind="basic", username="svc")
    refused = client.post("/connections", data={**basic, "csrf_token": token})
    assert refused.status_code == 422
    assert 'id="f-password-error">A basic login needs this.' in refused.text
    assert 'id="f-name-error">connection name &#39;Bad Name&#39;: lower-case' in refused.text
    assert 'value="svc"' in refused.text
    assert rows(hub) == 0 and audit(hub) == []

    store(hub, "https://crm.example.com", "k-123")
    bad = form("", auth_kind="api_key", csrf_token=token)
    refused = client.post("/connections/crm/edit", data=bad)
    assert refused.status_code == 422
    assert 'id="f-url-error">Give the address of the system' in refused.text
    assert 'id="f-key-error"' not in refused.text  # blank: the stored key is kept
    assert stored(hub).auth.key == "k-123"  # type: ignore[union-attr]
    taken = client.post("/connections", data=form("https://x", name="crm", csrf_token=token))
    assert taken.status_code == 422
    assert "There is already a connection named &#39;crm&#39; (in database)" in taken.text


def test_file_and_environment_connections_are_read_only_here(
    app: Any, hub: Hub, file: Path
) -> None:
    client = logged_in(app, "ada")
    token = form_token(client.get("/connections?add=1").text)
    for name, where in (("erp", f"the connections file {file}"), ("mail", "HUB_CONNECTION_MAIL")):
        page = client.get(f"/connections/{name}").text
        assert where in page and "change it there" in page
        assert f"/connections/{name}/edit" not in page and "/delete" not in page
        answers = [
            client.get(f"/connections/{name}/edit"),
            client.post(f"/connections/{name}/edit", data=form("https://x", csrf_token=token)),
            client.post(
                f"/connections/{name}/delete", data={"csrf_token": token, "confirm": "yes"}
            ),
        ]
        assert [a.status_code for a in answers] == [409, 409, 409]
        assert all(where in a.text for a in answers)
        taken = client.post("/connections", data=form("https://x", name=name, csrf_token=token))
        assert taken.status_code == 422 and "There is already a connection named" in taken.text
    assert rows(hub) == 0 and audit(hub) == []


def test_a_pem_key_typed_in_a_password_input_gets_its_line_breaks_back(app: Any, hub: Hub) -> None:
    body = "MIIEv" + "A" * 150
    squeezed = f"-----BEGIN PRIVATE KEY-----{body}-----END PRIVATE KEY-----"
    client = logged_in(app, "ada")
    token = form_token(client.get("/connections?add=1").text)
    sent = form(
        "https://login.example.com",
        name="sf",
        kind="salesforce",
        auth_kind="salesforce_jwt",
        client_id="cid",
        username="svc@example.com",
        private_key=squeezed,
        password="dropped: basic logins use it, JWT ones do not",
        csrf_token=token,
    )
    assert client.post("/connections", data=sent, follow_redirects=False).status_code == 303
    auth = stored(hub).auth  # type: ignore[union-attr]
    assert auth.private_key == (
        f"-----BEGIN PRIVATE KEY-----\n{body[:64]}\n{body[64:128]}\n{body[128:]}\n"
        "-----END PRIVATE KEY-----\n"
    )
    assert (auth.client_id, auth.username, auth.password) == ("cid", "svc@example.com", None)


# ------------------------------------------------------------------- canary
def test_a_key_stored_through_the_form_is_found_nowhere_but_encrypted(
    app: Any, hub: Hub, sandbox: RestSandbox, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    admin, operator, api = logged_in(app, "ada"), logged_in(app, "ops"), as_user(app, hub, "ops")
    token = form_token(admin.get("/connections?add=1").text)
    sent = form(sandbox.url, name="crm", auth_kind="api_key", key=CANARY, csrf_token=token)
    answers = [admin.post("/connections", data=sent)]  # follows to the page
    assert answers[0].status_code == 200 and rows(hub) == 1

    again = {**sent, "key": CANARY, "timeout": "soon"}
    answers.append(admin.post("/connections/crm/edit", data=again))  # 422
    answers.append(admin.post("/connections", data=again))  # 422: the name is taken
    assert [a.status_code for a in answers[1:]] == [422, 422]
    for client in (admin, operator):
        for path in ("/", "/connections", "/connections/crm", "/connections/crm/edit"):
            answers.append(client.get(path))
        answers.append(client.post("/connections/crm/test", data={"csrf_token": form_token(
            client.get("/connections/crm").text)}))  # fmt: skip
    answers += [
        api.get("/api/connections"),
        api.get("/api/connections/crm"),
        api.post("/api/connections/crm/test"),
    ]
    assert "answered 200" in answers[-1].json()["message"]  # the stored key is the canary
    for answer in answers:
        assert CANARY not in answer.text, answer.url
        assert CANARY not in str(answer.headers), answer.url
    assert CANARY not in caplog.text

    with hub.store.engine.connect() as db:
        for table in inspect(db).get_table_names():
            for row in db.execute(text(f'SELECT * FROM "{table}"')):
                assert CANARY not in repr(tuple(row)), f"the key is readable in {table}"
        token_text = db.execute(text("SELECT secrets FROM connections")).scalar_one()
    key = hub.settings.secret_key.get_secret_value()  # type: ignore[union-attr]
    assert json.loads(Fernet(key.encode()).decrypt(token_text.encode())) == {"key": CANARY}
