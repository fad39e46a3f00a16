"""Serve the Salesforce sandbox until Ctrl-C: ``python -m tests.sandbox.salesforce``.

Prints the URL, the CA file to trust, the credentials and a ready access
token (``--json``: one JSON object on one line, for scripts).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import threading
from typing import Any

from tests.sandbox.salesforce.sandbox import SalesforceSandbox


def main(argv: list[str] | None = None) -> None:
    """Parse the arguments, start the sandbox, print how to reach it and serve."""
    parser = argparse.ArgumentParser(prog="python -m tests.sandbox.salesforce")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="port (0: any free one)")
    parser.add_argument("--seed-accounts", type=int, default=0, metavar="N")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before each answer")
    parser.add_argument("--bulk-delay", type=float, default=0.0, help="seconds a Bulk job takes")
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)  # stop as on Ctrl-C, removing the files
    sandbox = SalesforceSandbox(
        host=args.host, port=args.port, delay=args.delay, bulk_delay=args.bulk_delay
    )
    with sandbox:
        if args.seed_accounts:
            sandbox.seed_many("Account", args.seed_accounts)
        info = {
            "url": sandbox.url,
            "token_url": sandbox.token_url,
            "ca_path": sandbox.ca_path,
            "username": sandbox.username,
            "password": sandbox.password,
            "security_token": sandbox.security_token,
            "client_id": sandbox.client_id,
            "client_secret": sandbox.client_secret,
            "jwt_private_key_path": sandbox.jwt_private_key_path,
            "access_token": sandbox.token(),
            "api_version": sandbox.api_version,
            "accounts": args.seed_accounts,
        }
        if args.json:
            print(json.dumps(info), flush=True)
        else:
            print(f"Salesforce sandbox on {sandbox.url} (Ctrl-C stops it)")
            for key, value in info.items():
                if key != "url":
                    print(f"  {key:<21} {value}")
            print("", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


def _interrupt(*_: Any) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    main()
