"""The fake connector keeps the contract too: what a flow's test learns from it holds for
the real connectors (keys, retries, refusals with evidence, the allow-list)."""

from __future__ import annotations

from typing import Any

import pytest

from connectors.fake import FakeClient, FakeConnector
from hub.errors import BusinessError, TransientError
from tests.connectors.conftest import Outside
from tests.connectors.contract import Contract

CANARY = "canary-fake-Pq3!"


class Driver:
    canary = CANARY
    variable = "FAKE_TOKEN"
    refusal = "the fake system refused it"

    def __init__(self, outside: Outside) -> None:
        self.outside_server = outside
        self.connectors: list[FakeConnector] = []
        self.failures = 0

    def config(self, **changes: Any) -> dict[str, Any]:
        return {
            "kind": "fake",
            "url": "fake://sys",
            "auth": {"kind": "bearer", "token": f"env:{self.variable}"},
            "options": {"accept": CANARY},
            **changes,
        }

    def _ready(self, client: FakeClient) -> FakeConnector:
        fake = client.connector
        if fake not in self.connectors:
            self.connectors.append(fake)
            fake.respond("POST", "/records", {"id": 1})
            if self.failures:
                fake.fail("POST", "/records", TransientError("busy"), times=self.failures)
        return fake

    def create(self, client: FakeClient, ref: str) -> Any:
        self._ready(client)
        return client.post("/records", json={"ref": ref})

    def effects(self, ref: str) -> int:
        """Changes made for ``ref``: keys whose call took effect (replays make none)."""
        return len(
            {
                (id(fake), call.key)
                for fake in self.connectors
                for call in fake.calls
                if call.json == {"ref": ref} and fake.effects.get(call.key or "", 0) > 0
            }
        )

    def fail_transient(self, times: int) -> None:
        self.failures = times

    def refused(self, client: FakeClient) -> None:
        self._ready(client).respond("POST", "/refuse", BusinessError(self.refusal))
        client.post("/refuse", json={"token": "[the body]"})

    def outside(self, client: FakeClient) -> None:
        client.get(f"{self.outside_server.url}/steal")

    def sent_outside(self) -> int:
        return len(self.outside_server.hits)


class TestFakeContract(Contract):
    @pytest.fixture
    def driver(self, outside: Outside, monkeypatch: pytest.MonkeyPatch) -> Driver:
        monkeypatch.setenv(Driver.variable, CANARY)
        outside.hits.clear()
        return Driver(outside)
