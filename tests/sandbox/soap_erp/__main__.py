"""Serve the ERP sandbox until Ctrl-C: ``python -m tests.sandbox.soap_erp [--port N]``."""

from __future__ import annotations

import argparse
import time

from tests.sandbox.soap_erp.server import ErpSandbox


def main(argv: list[str] | None = None) -> None:
    """Start the sandbox, print where it is and how to log in, serve until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m tests.sandbox.soap_erp", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=0, help="port (default: any free port)")
    args = parser.parse_args(argv)
    sandbox = ErpSandbox(args.host, args.port).start()
    print(f"WSDL:     {sandbox.wsdl_url}", flush=True)
    print(f"Endpoint: {sandbox.url}", flush=True)
    print(f"Username: {sandbox.username}", flush=True)
    print(f"Password: {sandbox.password}", flush=True)
    print("Serving until Ctrl-C", flush=True)
    try:
        while True:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        sandbox.stop()


if __name__ == "__main__":
    main()
