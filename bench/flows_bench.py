"""The benchmark flow: ``bench_noop``, N no-op steps in a row (N from ``BENCH_STEPS``, default 10).

Loaded by the bench's workers with ``HUB_FLOWS=bench.flows_bench`` from the repo root.
Each step returns its input unchanged; all the time measured is the hub's own.
"""

from __future__ import annotations

import os
from typing import Any

from hub import Flow, step

N_STEPS = int(os.environ.get("BENCH_STEPS", "10"))


def _noop(data: dict[str, Any]) -> dict[str, Any]:
    return data


bench_noop = Flow(
    "bench_noop",
    [step(_noop, name=f"s{i:03d}") for i in range(N_STEPS)],
    description=f"{N_STEPS} no-op steps (bench/engine.py)",
)
