"""``hub users``: web app accounts and API tokens; the first admin at start-up."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any, NoReturn

import typer

from hub.settings import Settings

users_app = typer.Typer(help="Web app accounts and API tokens.", no_args_is_help=True)


def fail(message: str, code: int = 1) -> NoReturn:
    from hub.cli import fail as cli_fail

    cli_fail(message, code)


def first_admin(store: Any) -> None:
    """On a database without users, create ``admin`` and print its password, this once."""
    from sqlalchemy.exc import IntegrityError

    from hub.auth import ensure_admin

    try:
        password = store.run(ensure_admin)
    except IntegrityError:  # another process made it at the same moment
        return
    if password is not None:
        typer.echo(
            f"admin password: {password}\n"
            "  (the first user, `admin`; shown this once: keep it, "
            "or add users with `hub users add`)"
        )


def _store() -> Any:
    from hub.store import Store

    return Store(Settings().database)


UserName = Annotated[str, typer.Argument(help="The user's login name.")]


@users_app.command("add")
def users_add(
    name: UserName,
    role: Annotated[str, typer.Option(help="viewer, reviewer, operator or admin.")] = "viewer",
    team: Annotated[
        list[str] | None, typer.Option("--team", help="A team of the user (repeat for more).")
    ] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
) -> None:
    """Add a user; without --password-stdin a password is generated and printed once."""
    from hub import auth
    from hub.errors import AccountError

    password = sys.stdin.readline().rstrip("\r\n") if password_stdin else auth.new_password()
    teams = tuple(team or ())
    store = _store()
    try:
        store.run(lambda s: auth.create_user(s, name, role=role, password=password, teams=teams))
    except AccountError as exc:
        fail(str(exc), 2)
    finally:
        store.engine.dispose()
    typer.echo(f"user {name} added: {role}" + (f", teams {', '.join(teams)}" if teams else ""))
    if not password_stdin:
        typer.echo(f"password: {password}  (shown once)")


@users_app.command("list")
def users_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list.")] = False,
) -> None:
    """List the users: name, role, teams, whether active."""
    from sqlalchemy import select

    from hub import auth
    from hub import models as m

    store = _store()
    with store.read() as s:
        rows = []
        for user in s.scalars(select(m.User).order_by(m.User.name)):
            p = auth.principal(s, user)
            rows.append(
                {
                    "name": p.name,
                    "role": p.role,
                    "teams": list(p.teams),
                    "active": user.active,
                    "created_at": user.created_at.isoformat(timespec="seconds") + "Z",
                }
            )
    store.engine.dispose()
    if as_json:
        typer.echo(json.dumps(rows))
        return
    if not rows:
        typer.echo("no users yet; `hub web` or `hub up` creates `admin`, or `hub users add NAME`")
        return
    typer.echo(f"{'NAME':<20} {'ROLE':<9} {'ACTIVE':<6} TEAMS")
    for r in rows:
        active = "yes" if r["active"] else "no"
        typer.echo(f"{r['name']:<20} {r['role']:<9} {active:<6} {', '.join(r['teams'])}".rstrip())


@users_app.command("token")
def users_token(
    name: UserName,
    label: Annotated[str, typer.Option("--name", help="What the token is for.")] = "api",
    revoke: Annotated[
        bool, typer.Option("--revoke", help="Revoke the user's tokens of that name instead.")
    ] = False,
) -> None:
    """Print a new API token for NAME, once (send it as `Authorization: Bearer <token>`)."""
    from hub import auth
    from hub.errors import AccountError

    store = _store()
    try:
        if revoke:
            count = store.run(lambda s: auth.revoke_tokens(s, auth.find_user(s, name), label))
            typer.echo(f"{count} token(s) {label!r} of {name} revoked")
            return
        token = store.run(lambda s: auth.create_token(s, auth.find_user(s, name), label))
    except AccountError as exc:
        fail(str(exc))
    finally:
        store.engine.dispose()
    typer.echo(token)
