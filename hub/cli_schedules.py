"""``hub schedules``: schedules, their next fire times, pause and resume."""

from __future__ import annotations

import typer

schedules_app = typer.Typer(
    help="Schedules: next fire times, pause and resume.", no_args_is_help=True
)
