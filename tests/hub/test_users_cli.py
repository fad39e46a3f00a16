"""``hub users``: add users, list them, hand out API tokens; and the first admin at start-up."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from hub import auth
from hub.cli import app
from hub.cli_users import first_admin
from hub.models import utcnow
from hub.store import Store


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    made = Store(db_url)
    made.create_all()
    yield made
    made.engine.dispose()


@pytest.fixture
def hub_cli(store: Store, tmp_path: Path) -> Any:
    env = {"HUB_HOME": str(tmp_path / "home"), "HUB_DATABASE_URL": store.url}

    def invoke(*args: str, input: str | None = None) -> Any:
        return CliRunner().invoke(app, ["users", *args], env=env, input=input)

    return invoke


def password_works(store: Store, name: str, password: str) -> bool:
    return store.run(lambda s: auth.check_password(s, name, password)) is not None


def test_add_prints_a_generated_password_that_logs_in(hub_cli: Any, store: Store) -> None:
    result = hub_cli("add", "rita", "--role", "reviewer", "--team", "finance", "--team", "ops")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "user rita added: reviewer, teams finance, ops"
    assert lines[1].startswith("password: ")
    password = lines[1].split()[1]
    assert password_works(store, "rita", password)
    with store.read() as s:
        assert auth.principal(s, auth.find_user(s, "rita")).teams == ("finance", "ops")


def test_add_reads_the_password_from_stdin_and_prints_none(hub_cli: Any, store: Store) -> None:
    result = hub_cli(
        "add", "otto", "--role", "operator", "--password-stdin", input="s3cret pass phrase\n"
    )
    assert result.exit_code == 0, result.output
    assert "password" not in result.output
    assert password_works(store, "otto", "s3cret pass phrase")


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (("add", "admin2", "--role", "boss"), None, "unknown role 'boss'"),
        (("add", "x y"), None, "user name 'x y'"),
        (("add", "short", "--password-stdin"), "abc\n", "password too short"),
    ],
)
def test_add_refuses_bad_input_with_one_line(
    hub_cli: Any, args: tuple[str, ...], stdin: str | None, message: str
) -> None:
    result = hub_cli(*args, input=stdin)
    assert result.exit_code == 2
    assert result.output.startswith("error: ") and message in result.output


def test_add_refuses_a_taken_name(hub_cli: Any) -> None:
    assert hub_cli("add", "rita").exit_code == 0
    again = hub_cli("add", "rita")
    assert again.exit_code == 2
    assert "user 'rita' already exists" in again.output


def test_list_shows_each_user(hub_cli: Any) -> None:
    assert "no users yet" in hub_cli("list").output
    hub_cli("add", "rita", "--role", "reviewer", "--team", "finance")
    hub_cli("add", "vic")
    result = hub_cli("list")
    assert result.exit_code == 0
    lines = [line.split() for line in result.output.splitlines()]
    assert lines == [
        ["NAME", "ROLE", "ACTIVE", "TEAMS"],
        ["rita", "reviewer", "yes", "finance"],
        ["vic", "viewer", "yes"],
    ]
    assert '"name": "rita"' in hub_cli("list", "--json").output


def test_token_prints_a_new_token_once_and_revoke_ends_it(hub_cli: Any, store: Store) -> None:
    hub_cli("add", "otto", "--role", "operator")
    result = hub_cli("token", "otto", "--name", "ci")
    assert result.exit_code == 0, result.output
    token = result.output.strip()
    assert token.startswith("hub_")
    with store.read() as s:
        found = auth.find_token(s, token, now=utcnow())
    assert found is not None and found.principal.name == "otto"
    other = hub_cli("token", "otto", "--name", "ci").output.strip()
    assert other != token
    revoked = hub_cli("token", "otto", "--name", "ci", "--revoke")
    assert revoked.output.strip() == "2 token(s) 'ci' of otto revoked"
    with store.read() as s:
        assert auth.find_token(s, token, now=utcnow()) is None


def test_token_for_an_unknown_user_is_an_error(hub_cli: Any) -> None:
    result = hub_cli("token", "ghost")
    assert result.exit_code == 1
    assert "no user named 'ghost'" in result.output


@pytest.mark.parametrize("command", ["users", "users add", "users list", "users token"])
def test_each_users_command_has_help(command: str) -> None:
    result = CliRunner().invoke(app, [*command.split(), "--help"], prog_name="hub")
    assert result.exit_code == 0, result.output
    assert "Usage: hub " + command in " ".join(result.output.split())


def test_the_first_start_creates_admin_and_prints_its_password_once(
    store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    first_admin(store)
    first = capsys.readouterr().out
    assert first.startswith("admin password: ")
    password = first.split()[2]
    assert password_works(store, "admin", password)
    with store.read() as s:
        assert auth.find_user(s, "admin").role == "admin"
    first_admin(store)
    assert capsys.readouterr().out == ""
