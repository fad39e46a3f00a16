"""Sandbox servers on loopback that stand in for the systems the hub talks to."""

from __future__ import annotations

from tests.sandbox.records import RecordsServer

__all__ = ["RecordsServer"]
