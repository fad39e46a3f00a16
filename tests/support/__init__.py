"""Helpers for end-to-end tests: hub processes, a private redis-server, the harness."""

from __future__ import annotations

from tests.support.harness import Harness
from tests.support.procs import HubProcess, HubProcesses, children_of, kill9, wait_until
from tests.support.redis_server import RedisServer

__all__ = [
    "Harness",
    "HubProcess",
    "HubProcesses",
    "RedisServer",
    "children_of",
    "kill9",
    "wait_until",
]
