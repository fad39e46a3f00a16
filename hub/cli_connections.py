"""``hub connections``: list, store, test and remove connections; make a secret key.

Works on this machine's settings and database (like ``hub users``): run it
where the workers' ``HUB_*`` settings and secrets are set, so ``test`` sees
what a worker would.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any, NoReturn

import typer

from hub.settings import Settings

connections_app = typer.Typer(
    help="Connections to the systems flows talk to: with no command, list them.",
    invoke_without_command=True,
)

Name = Annotated[str, typer.Argument(help="The connection's name.")]


def fail(message: str, code: int = 1) -> NoReturn:
    from hub.cli import fail as cli_fail

    cli_fail(message, code)


def _store(settings: Settings) -> Any:
    from hub.store import Store

    return Store(settings.database)


def _configs(settings: Settings) -> dict[str, Any]:
    from hub.connections import load
    from hub.errors import ConnectionConfigError

    try:
        return load(settings, _store(settings))
    except ConnectionConfigError as exc:
        fail(str(exc))


@connections_app.callback()
def connections_list(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List the connections: name, kind, URL, auth and where each is defined."""
    if ctx.invoked_subcommand is not None:
        return
    configs = _configs(Settings())
    if as_json:
        shown = [{**c.public(), "source": c.source} for c in configs.values()]
        typer.echo(json.dumps(shown, indent=2))
        return
    if not configs:
        typer.echo(
            "no connections: add some to HUB_CONNECTIONS_FILE, set HUB_CONNECTION_<NAME>, "
            "or `hub connections set NAME --json '{...}'`"
        )
        return
    for c in sorted(configs.values(), key=lambda c: c.name):
        limit = f"  {c.rate_limit}" if c.rate_limit else ""
        typer.echo(f"{c.name:<20} {c.kind:<11} {c.url}  auth {c.auth.kind}{limit}  ({c.source})")


@connections_app.command("show")
def connections_show(name: Name) -> None:
    """A connection's settings, secret values hidden (env: references shown)."""
    configs = _configs(Settings())
    if name not in configs:
        fail(f"no connection {name!r} (known: {', '.join(sorted(configs)) or 'none'})")
    typer.echo(json.dumps({**configs[name].public(), "source": configs[name].source}, indent=2))


@connections_app.command("test")
def connections_test(name: Name) -> None:
    """Reach the system and log in, changing nothing; say what failed and how to fix it.

    Exit status 0 when it worked, 1 when it did not."""
    from hub.connections import Connectors
    from hub.errors import HubError

    settings = Settings()
    connectors = Connectors(settings, configs=_configs(settings))
    try:
        said = connectors.connector(name).check()
    except HubError as exc:
        fail(f"connection {name!r} failed its test ({type(exc).__name__}): {exc}")
    except Exception as exc:  # a bug or an unmapped library error: still say what it was
        fail(f"connection {name!r} failed its test (unexpected {type(exc).__name__}): {exc}")
    finally:
        connectors.shutdown()
    typer.echo(f"ok  {name}: {said}")


@connections_app.command("set")
def connections_set(
    name: Name,
    config: Annotated[
        str,
        typer.Option(
            "--json",
            help='The connection as JSON: {"kind": "rest", "url": ..., "auth": {...}}. '
            "Secret values are encrypted with HUB_SECRET_KEY; env:VAR references are kept. "
            "'-' reads it from standard input (keeps secrets out of the shell history).",
        ),
    ],
    by: Annotated[str, typer.Option(help="Who made the change (kept with it).")] = "cli",
) -> None:
    """Store a connection in the database (a new one, or replacing one stored before)."""
    from pydantic import ValidationError

    from hub.connections import ConnectionConfig, from_environment, from_file, save
    from hub.errors import ConnectionConfigError

    settings = Settings()
    text = sys.stdin.read() if config == "-" else config
    try:
        data = json.loads(text)
    except ValueError as exc:
        fail(f"--json is not valid JSON: {exc}", 2)
    if not isinstance(data, dict):
        fail('--json takes an object: {"kind": ..., "url": ..., "auth": {...}}', 2)
    try:
        parsed = ConnectionConfig.model_validate({**data, "name": name, "source": "database"})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'value'}: {e['msg']}" for e in exc.errors()
        )
        fail(f"connection {name!r}: {problems}", 2)
    try:
        elsewhere = [c for c in from_environment() if c.name == name]
        if settings.connections_file:
            from pathlib import Path

            elsewhere += [c for c in from_file(Path(settings.connections_file)) if c.name == name]
        if elsewhere:
            fail(
                f"connection {name!r} is already defined in {elsewhere[0].source}; "
                "change it there, or remove it there first"
            )
        save(_store(settings), settings, parsed, by=by)
    except ConnectionConfigError as exc:
        fail(str(exc))
    secrets = sorted(f for f, v in parsed.auth.secrets().items() if not v.startswith("env:"))
    note = f" ({', '.join(secrets)} encrypted)" if secrets else ""
    typer.echo(f"stored connection {name!r}{note}; test it with `hub connections test {name}`")


@connections_app.command("delete")
def connections_delete(name: Name) -> None:
    """Remove a connection stored in the database."""
    from hub.connections import delete

    if not delete(_store(Settings()), name):
        fail(f"the database has no connection {name!r} (file and environment ones stay there)")
    typer.echo(f"deleted connection {name!r}")


@connections_app.command("key")
def connections_key() -> None:
    """Print a new Fernet key for HUB_SECRET_KEY (to rotate: NEW,OLD until re-stored)."""
    from cryptography.fernet import Fernet

    typer.echo(Fernet.generate_key().decode())
