"""Connections: read from a file, the environment and the database; secrets encrypted at
rest and never written out in files; clear errors; ``hub connections`` end to end; and
``ctx.connector`` in a flow, with the fake connector and its idempotency keys."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from pydantic import BaseModel
from sqlalchemy import inspect, text

from connectors.fake import FakeConnector
from hub import Flow, StepContext, TransientError, step
from hub.connections import ConnectionConfig, Connectors, load, rate_per_second, save
from hub.errors import ConnectionConfigError
from hub.settings import Settings
from hub.store import Store
from hub.testing import LocalHub
from tests.hub.test_cli import hub, hub_env, one_line_error
from tests.sandbox.rest_api import RestSandbox

CANARY = "canary-conn-Vb7!k"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    made = Store(f"sqlite:///{tmp_path / 'hub.db'}")
    made.migrate()
    yield made
    made.engine.dispose()


@pytest.fixture
def key() -> str:
    return Fernet.generate_key().decode()


def settings(**values: Any) -> Settings:
    return Settings(**values)


# ---------------------------------------------------------------- sources
def test_a_toml_file_and_the_environment_are_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    file = tmp_path / "connections.toml"
    file.write_text(
        '[crm]\nkind = "rest"\nurl = "https://crm.example.com/api"\nrate_limit = "600/min"\n'
        'auth = { kind = "bearer", token = "env:CRM_TOKEN" }\n'
    )
    monkeypatch.setenv(
        "HUB_CONNECTION_ERP", json.dumps({"kind": "soap", "url": "/srv/erp.wsdl", "timeout": 5})
    )
    found = load(settings(connections_file=file))

    assert sorted(found) == ["crm", "erp"]
    assert found["crm"].auth.token == "env:CRM_TOKEN" and found["crm"].rate == 10.0
    assert found["crm"].source == str(file)
    assert (found["erp"].kind, found["erp"].timeout, found["erp"].source) == (
        "soap",
        5.0,
        "HUB_CONNECTION_ERP",
    )


def test_a_secret_written_into_a_file_is_refused_with_the_fix(tmp_path: Path) -> None:
    file = tmp_path / "connections.toml"
    file.write_text('[crm]\nkind = "rest"\nurl = "https://x"\nauth = {kind="basic", '
                    'username="u", password="hunter2"}\n')  # fmt: skip
    with pytest.raises(ConnectionConfigError) as caught:
        load(settings(connections_file=file))
    message = str(caught.value)
    assert message.startswith(f"connection 'crm' ({file}): auth.password is written out")
    assert '"env:VARIABLE"' in message and "hub connections set" in message
    assert "hunter2" not in message


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"kind": "rest", "url": "https://x", "auth": {"kind": "basic", "username": "u"}},
         "auth: Value error, auth kind 'basic' needs password"),
        ({"kind": "ftp", "url": "x"}, "kind: Input should be 'rest', 'salesforce'"),
        ({"kind": "rest", "url": "https://x", "rate_limit": "fast"},
         "rate_limit 'fast': write calls per time, like \"10/s\""),
        ({"kind": "rest", "url": "https://x", "allow": ["a b:c"]},
         "allow-list entry 'a b:c' is not host:port"),
        ({"kind": "rest", "url": "https://x", "tiemout": 3}, "tiemout: Extra inputs"),
    ],
)  # fmt: skip
def test_a_malformed_connection_names_itself_its_source_and_the_field(
    monkeypatch: pytest.MonkeyPatch, body: dict[str, Any], says: str
) -> None:
    monkeypatch.setenv("HUB_CONNECTION_CRM", json.dumps(body))
    with pytest.raises(ConnectionConfigError) as caught:
        load(settings())
    assert str(caught.value).startswith("connection 'crm' (HUB_CONNECTION_CRM): ")
    assert says in str(caught.value)


def test_a_name_defined_twice_is_an_error_naming_both_places(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    file = tmp_path / "c.json"
    file.write_text(json.dumps({"crm": {"kind": "rest", "url": "https://a"}}))
    monkeypatch.setenv("HUB_CONNECTION_CRM", json.dumps({"kind": "rest", "url": "https://b"}))
    with pytest.raises(ConnectionConfigError, match=r"'crm' is defined twice: in .*c\.json and in"):
        load(settings(connections_file=file))


def test_rates_read_per_second_minute_and_hour() -> None:
    assert rate_per_second("10/s") == 10
    assert rate_per_second("600 / min") == 10
    assert rate_per_second("3600/hour") == 1


def test_an_unknown_connection_suggests_the_close_one() -> None:
    configs = {"crm": ConnectionConfig(name="crm", kind="fake", url="fake://")}
    with pytest.raises(ConnectionConfigError, match=r"no connection 'cmr'; did you mean 'crm'\?"):
        Connectors(Settings(), configs=configs).config("cmr")


# --------------------------------------------------------------- database
def test_stored_secrets_are_encrypted_and_read_back(store: Store, key: str) -> None:
    config = ConnectionConfig.model_validate(
        {"name": "crm", "kind": "rest", "url": "https://crm.example.com",
         "auth": {"kind": "basic", "username": "svc", "password": CANARY}}
    )  # fmt: skip
    save(store, settings(secret_key=key), config, by="ada")

    with store.engine.connect() as conn:
        for table in inspect(conn).get_table_names():
            for row in conn.execute(text(f'SELECT * FROM "{table}"')):
                assert CANARY not in repr(tuple(row)), f"the secret is readable in {table}"
        row = conn.execute(text("SELECT secrets, updated_by FROM connections")).one()
    assert json.loads(Fernet(key.encode()).decrypt(row.secrets.encode())) == {"password": CANARY}
    assert row.updated_by == "ada"

    found = load(settings(secret_key=key), store)["crm"]
    assert (found.auth.password, found.auth.username, found.source) == (CANARY, "svc", "database")
    assert found.public()["auth"] == {"kind": "basic", "header": "X-API-Key", "username": "svc",
                                      "password": "[encrypted]"}  # fmt: skip


def test_keys_rotate_and_a_wrong_key_says_so(store: Store, key: str) -> None:
    config = ConnectionConfig.model_validate(
        {"name": "crm", "kind": "rest", "url": "https://x",
         "auth": {"kind": "bearer", "token": CANARY}}
    )  # fmt: skip
    save(store, settings(secret_key=key), config)
    new = Fernet.generate_key().decode()

    assert load(settings(secret_key=f"{new},{key}"), store)["crm"].auth.token == CANARY
    with pytest.raises(ConnectionConfigError, match="cannot be decrypted with HUB_SECRET_KEY"):
        load(settings(secret_key=new), store)
    with pytest.raises(ConnectionConfigError, match="HUB_SECRET_KEY is not set"):
        load(settings(), store)
    with pytest.raises(ConnectionConfigError, match="not a Fernet key"):
        save(store, settings(secret_key="short"), config)


# --------------------------------------------------------------------- CLI
def test_the_cli_stores_lists_shows_tests_and_deletes(tmp_path: Path, key: str) -> None:
    with RestSandbox(api_key=CANARY) as sandbox:
        env = hub_env(tmp_path, HUB_SECRET_KEY=key)
        assert hub(env, "db", "upgrade").returncode == 0
        body = {"kind": "rest", "url": sandbox.url, "auth": {"kind": "api_key", "key": CANARY},
                "options": {"check_path": "/key/items/link"}}  # fmt: skip
        stored = hub(env, "connections", "set", "crm", "--json", json.dumps(body), "--by", "ops")
        assert stored.returncode == 0, stored.stderr
        assert "stored connection 'crm' (key encrypted)" in stored.stdout

        listed = hub(env, "connections")
        assert listed.stdout.split() == [
            "crm",
            "rest",
            sandbox.url,
            "auth",
            "api_key",
            "(database)",
        ]
        shown = json.loads(hub(env, "connections", "show", "crm").stdout)
        assert shown["auth"]["key"] == "[encrypted]" and CANARY not in json.dumps(shown)

        tested = hub(env, "connections", "test", "crm")
        assert tested.returncode == 0, tested.stderr
        assert tested.stdout.startswith(f"ok  crm: GET {sandbox.url}/key/items/link answered 200")

        body["auth"]["key"] = "wrong-key"
        hub(env, "connections", "set", "crm", "--json", json.dumps(body))
        refused = hub(env, "connections", "test", "crm")
        assert refused.returncode == 1
        line = one_line_error(refused)
        assert line == (
            "error: connection 'crm' failed its test (BusinessError): crm: GET /key/items/link "
            "answered 401: Invalid API key; check the credentials of connection 'crm'"
        )
        assert CANARY not in refused.stdout + refused.stderr

        assert hub(env, "connections", "delete", "crm").returncode == 0
        assert "no connections" in hub(env, "connections").stdout
        gone = hub(env, "connections", "delete", "crm")
        assert gone.returncode == 1 and "has no connection 'crm'" in gone.stderr


def test_the_cli_refuses_bad_json_and_makes_keys(tmp_path: Path) -> None:
    env = hub_env(tmp_path)
    assert hub(env, "db", "upgrade").returncode == 0
    bad = hub(env, "connections", "set", "crm", "--json", "{kind: rest}")
    assert bad.returncode == 2 and "--json is not valid JSON" in one_line_error(bad)
    wrong = hub(env, "connections", "set", "crm", "--json", '{"kind": "rest"}')
    assert wrong.returncode == 2 and "connection 'crm': url: Field required" in wrong.stderr
    made = hub(env, "connections", "key").stdout.strip()
    Fernet(made.encode())  # a valid key


# ------------------------------------------------------------- in a flow
class Order(BaseModel):
    ref: str


@step(retries=2, backoff=0.1)
def send(ctx: StepContext, order: Order) -> dict[str, Any]:
    crm = ctx.connector("crm")
    made = crm.post("/orders", json={"ref": order.ref})
    crm.post("/notes", json={"order": made["id"]})
    if ctx.attempt == 1:
        raise TransientError("the worker lost the result")
    return {"id": made["id"]}


def test_a_flow_uses_ctx_connector_and_its_keys_hold_across_a_retry() -> None:
    local = LocalHub(
        [Flow("send", [send])], connections={"crm": {"kind": "fake", "url": "fake://crm"}}
    )
    fake = local.connector("crm")
    assert isinstance(fake, FakeConnector)
    fake.respond("POST", "/orders", {"id": 7})
    run_id = local.start("send", {"ref": "PO-1"})
    for _ in range(5):
        local.drain()
        if local.run(run_id)["status"] != "running":
            break
        local.advance(1)

    assert local.run(run_id)["status"] == "succeeded"
    assert local.run(run_id)["output"] == {"id": 7}
    keys = [(c.path, c.key, c.replayed) for c in fake.calls]
    key = keys[0][1]
    assert keys == [
        ("/orders", key, False),
        ("/notes", f"{key}-2", False),
        ("/orders", key, True),
        ("/notes", f"{key}-2", True),
    ]
    assert fake.effects == {key: 1, f"{key}-2": 1}
    local.close()
