"""``hub hooks``: webhook deliveries from a terminal."""

from __future__ import annotations

import typer

hooks_app = typer.Typer(help="Webhooks and their deliveries.", no_args_is_help=True)
