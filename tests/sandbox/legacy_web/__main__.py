"""Run the legacy order-entry app by hand: ``python -m tests.sandbox.legacy_web --port 8100``."""

from __future__ import annotations

import argparse
import contextlib
import threading
from pathlib import Path

from tests.sandbox.legacy_web.app import LegacyWebApp


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.sandbox.legacy_web")
    parser.add_argument("--port", type=int, default=8100, help="port on 127.0.0.1 (0: any free)")
    parser.add_argument("--user", default="clerk")
    parser.add_argument("--password", default="secret")
    parser.add_argument("--session-seconds", type=float, default=600.0)
    parser.add_argument("--suggest-delay", type=float, default=0.8)
    parser.add_argument("--busy-status", type=int, default=200)
    parser.add_argument("--orders-file", type=Path, help="append each saved order as JSON")
    args = parser.parse_args(argv)
    app = LegacyWebApp(
        args.user,
        args.password,
        session_seconds=args.session_seconds,
        suggest_delay=args.suggest_delay,
        busy_status=args.busy_status,
        port=args.port,
        orders_file=args.orders_file,
    )
    with app:
        print(f"Order Entry 2.3 on {app.url}/ (user {args.user!r}); Ctrl-C stops it", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()
