"""Which network targets a bot may reach: see :mod:`hub.egress` (bots and connectors share it)."""

from hub.egress import DEFAULT_PORTS, Allow

__all__ = ["DEFAULT_PORTS", "Allow"]
