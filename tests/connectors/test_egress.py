"""The egress guard against DNS rebinding, for both HTTP stacks the connectors use:
httpx (REST, WordPress) and requests (Salesforce, SOAP).

A name in the allow-list first resolves to an outside address, then to this machine.
The guard must connect to the address it checked, or check again as it connects: a
connection that resolves the name on its own reaches this machine (RELIABILITY 40).
The resolver is the one thing faked: there is no DNS server here to point elsewhere.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import requests

from connectors.base import Egress, guarded_session, guarded_transport
from hub.connections import ConnectionConfig
from hub.errors import PolicyViolation
from tests.connectors.conftest import Outside

NAME = "rebind.example"
FIRST = "192.0.2.10"  # TEST-NET-1: an outside address, unreachable here


@pytest.fixture
def rebinding(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """``NAME`` resolves to ``FIRST`` once, then to 127.0.0.1; returns the answers given."""
    real = socket.getaddrinfo
    answers: list[str] = []

    def resolve(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host != NAME:
            return real(host, port, *args, **kwargs)
        address = FIRST if not answers else "127.0.0.1"
        answers.append(address)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, int(port or 80)))]

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    return answers


def egress(port: int) -> Egress:
    config = ConnectionConfig(name="crm", kind="rest", url=f"http://{NAME}:{port}")
    return Egress(config)


def via_httpx(guard: Egress, url: str) -> Any:
    transport = guarded_transport(guard, retries=0)
    with httpx.Client(transport=transport, timeout=httpx.Timeout(2.0, connect=1.0)) as client:
        return client.get(url)


def via_requests(guard: Egress, url: str) -> Any:
    with guarded_session(guard) as session:
        return session.get(url, timeout=(1.0, 2.0))


@pytest.mark.parametrize("send", [via_httpx, via_requests], ids=["httpx", "requests"])
def test_a_name_that_rebinds_to_this_machine_after_the_check_never_reaches_it(
    outside: Outside, rebinding: list[str], send: Callable[[Egress, str], Any]
) -> None:
    url = f"http://{NAME}:{outside.port}/steal"
    with pytest.raises((PolicyViolation, httpx.TransportError, requests.ConnectionError)) as err:
        send(egress(outside.port), url)
    assert outside.hits == []
    assert rebinding[0] == FIRST
    if isinstance(err.value, PolicyViolation):  # checked again as it connected
        assert "resolves to 127.0.0.1" in str(err.value)
    else:  # connected to the address it checked (unreachable here), never resolving again
        assert rebinding == [FIRST]
