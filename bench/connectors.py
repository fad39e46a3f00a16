"""Connector benchmark: what the hub's connectors cost next to the bare libraries.

    .venv/bin/python bench/connectors.py [--calls 1000] [--records 50000] [--only rest]

- ``rest_ratio``: a REST call through ``ctx.connector`` (API-key auth, the egress
  check, the rate limiter with no limit, the retry wrapper, the idempotency header on
  POST) next to the same call with a bare ``httpx.Client`` on the same server, in the
  same run (target at most 1.3); GET and POST are both measured;
- ``salesforce_records_per_s``: a SOQL query of 50,000 records (25 pages of 2,000)
  through the Salesforce connector, and through bare simple-salesforce, against the
  HTTPS Salesforce sandbox;
- ``soap_ratio``: a SOAP call (GetStock) through the SOAP connector next to bare zeep
  on the ERP sandbox.

The sandboxes run in this process's threads, so both sides share their cost. It
prints figures and never asserts on time; its last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx

from hub.connections import ConnectionConfig, Connectors
from hub.context import StepContext
from hub.settings import Settings


def ctx() -> StepContext:
    return StepContext(
        run_id="bench", flow="bench", step="call", key="call", attempt=1,
        idempotency_key="bench:call", run_input={},
    )  # fmt: skip


def timed(count: int, call: Callable[[int], Any]) -> list[float]:
    out = []
    for i in range(count):
        started = time.perf_counter()
        call(i)
        out.append((time.perf_counter() - started) * 1000)
    return out


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)


def connectors_for(config: dict[str, Any]) -> Connectors:
    made = ConnectionConfig.model_validate({"name": "sys", **config})
    return Connectors(Settings(), configs={"sys": made})


def rest(calls: int) -> dict[str, Any]:
    from tests.sandbox.rest_api import RestSandbox

    with RestSandbox(api_key="bench-key", items=5) as sandbox:
        os.environ["BENCH_KEY"] = "bench-key"
        connectors = connectors_for(
            {
                "kind": "rest",
                "url": sandbox.url,
                "auth": {"kind": "api_key", "key": "env:BENCH_KEY"},
            }
        )
        client = connectors.connector("sys").bind(ctx())
        bare = httpx.Client(base_url=sandbox.url, headers={"X-API-Key": "bench-key"})
        figures: dict[str, Any] = {}
        for method in ("GET", "POST"):

            def through(i: int, method: str = method) -> None:
                if method == "GET":
                    client.get("/key/items/link", params={"per_page": 5})
                else:
                    client.post("/key/orders", json={"ref": f"c{i}"}, idempotency_key=f"c{i}")

            def plain(i: int, method: str = method) -> None:
                if method == "GET":
                    bare.get("/key/items/link", params={"per_page": 5}).raise_for_status()
                else:
                    bare.post("/key/orders", json={"ref": f"b{i}"},
                              headers={"Idempotency-Key": f"b{i}"}).raise_for_status()  # fmt: skip

            timed(50, through)  # warm both pools
            timed(50, plain)
            hub_ms, bare_ms = [], []
            for _ in range(4):  # interleaved rounds: drift hits both sides alike
                hub_ms += timed(calls // 4, through)
                bare_ms += timed(calls // 4, plain)
            name = method.lower()
            figures[f"rest_{name}_hub_p50_ms"] = pct(hub_ms, 0.5)
            figures[f"rest_{name}_bare_p50_ms"] = pct(bare_ms, 0.5)
            figures[f"rest_{name}_ratio"] = round(pct(hub_ms, 0.5) / pct(bare_ms, 0.5), 3)
        bare.close()
        connectors.shutdown()
    figures["rest_ratio"] = max(figures["rest_get_ratio"], figures["rest_post_ratio"])
    return figures


def salesforce(records: int) -> dict[str, Any]:
    from tests.sandbox.salesforce import SalesforceSandbox

    with SalesforceSandbox() as sandbox:
        sandbox.seed_many("Account", records)
        os.environ["BENCH_SF_SECRET"] = sandbox.client_secret
        connectors = connectors_for(
            {"kind": "salesforce", "url": sandbox.url, "verify": str(sandbox.ca_path),
             "auth": {"kind": "salesforce_client_credentials", "client_id": sandbox.client_id,
                      "client_secret": "env:BENCH_SF_SECRET"}}
        )  # fmt: skip
        sf = connectors.connector("sys").bind(ctx())
        soql = "SELECT Id, Name FROM Account"
        started = time.perf_counter()
        got = len(sf.query(soql))
        hub_s = time.perf_counter() - started
        bare = sandbox.client()
        started = time.perf_counter()
        bare_got = len(bare.query_all(soql)["records"])
        bare_s = time.perf_counter() - started
        connectors.shutdown()
    return {
        "salesforce_records": got,
        "salesforce_records_per_s": round(got / hub_s),
        "salesforce_bare_records_per_s": round(bare_got / bare_s),
        "salesforce_ratio": round(hub_s / bare_s, 3),
    }


def soap(calls: int) -> dict[str, Any]:
    import zeep
    from zeep.transports import Transport
    from zeep.wsse.username import UsernameToken

    from tests.sandbox.soap_erp import ErpSandbox

    with ErpSandbox() as erp:
        os.environ["BENCH_ERP_PASSWORD"] = erp.password
        connectors = connectors_for(
            {"kind": "soap", "url": erp.wsdl_url,
             "auth": {"kind": "wsse", "username": erp.username,
                      "password": "env:BENCH_ERP_PASSWORD"}}
        )  # fmt: skip
        client = connectors.connector("sys").bind(ctx())
        bare = zeep.Client(
            erp.wsdl_url,
            wsse=UsernameToken(erp.username, erp.password),
            transport=Transport(timeout=10, operation_timeout=30),
        )
        skus = {"sku": ["SKU-100", "SKU-200"]}

        def through(_: int) -> None:
            client.call("GetStock", skus=skus)

        def plain(_: int) -> None:
            bare.service.GetStock(skus=skus)

        timed(20, through)
        timed(20, plain)
        hub_ms, bare_ms = [], []
        for _ in range(4):
            hub_ms += timed(calls // 4, through)
            bare_ms += timed(calls // 4, plain)
        connectors.shutdown()
    return {
        "soap_hub_p50_ms": pct(hub_ms, 0.5),
        "soap_bare_p50_ms": pct(bare_ms, 0.5),
        "soap_ratio": round(pct(hub_ms, 0.5) / pct(bare_ms, 0.5), 3),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="bench/connectors.py")
    parser.add_argument("--calls", type=int, default=1000, help="calls measured per side")
    parser.add_argument("--records", type=int, default=50_000, help="Salesforce records")
    parser.add_argument("--only", choices=("all", "rest", "salesforce", "soap"), default="all")
    args = parser.parse_args(argv)
    figures: dict[str, Any] = {"load_average": round(os.getloadavg()[0], 1)}
    if args.only in ("all", "rest"):
        figures.update(rest(args.calls))
        print(
            f"REST GET   hub p50 {figures['rest_get_hub_p50_ms']} ms, bare httpx "
            f"{figures['rest_get_bare_p50_ms']} ms: x{figures['rest_get_ratio']} (target <= 1.3)"
        )
        print(f"REST POST  hub p50 {figures['rest_post_hub_p50_ms']} ms, bare httpx "
              f"{figures['rest_post_bare_p50_ms']} ms: x{figures['rest_post_ratio']}")  # fmt: skip
    if args.only in ("all", "salesforce"):
        figures.update(salesforce(args.records))
        print(f"Salesforce query of {figures['salesforce_records']} records: "
              f"{figures['salesforce_records_per_s']} records/s through the hub, "
              f"{figures['salesforce_bare_records_per_s']} bare")  # fmt: skip
    if args.only in ("all", "soap"):
        figures.update(soap(max(100, args.calls // 2)))
        print(f"SOAP GetStock hub p50 {figures['soap_hub_p50_ms']} ms, bare zeep "
              f"{figures['soap_bare_p50_ms']} ms: x{figures['soap_ratio']}")  # fmt: skip
    print(json.dumps(figures), flush=True)
    return figures


if __name__ == "__main__":
    main()
