"""A connector that talks to no system: for fast tests of flows, and the contract's baseline.

::

    from hub.testing import LocalHub
    from connectors.fake import FakeConnector

    hub = LocalHub(flows, connections={"crm": {"kind": "fake", "url": "fake://crm"}})
    crm = hub.connector("crm")                       # this process's FakeConnector
    crm.respond("POST", "/orders", {"id": 7})        # what the system answers
    crm.fail("GET", "/customers", TransientError("busy"), times=2)
    ... run the flow ...
    assert crm.calls[0].key == run_key               # what the flow sent, with its key

Its client has the REST client's calls (``get``/``post``/``put``/``patch``/
``delete``/``request``/``paginate``), records each with the idempotency key
it would have sent, and keeps the REST semantics of keys: a change repeated
with the same key answers the first answer again and counts no new effect
(:attr:`FakeConnector.effects`).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from connectors.base import Bound, Connector, Retry, Verbs, retrying
from hub.errors import BusinessError, HubError, TransientError

if TYPE_CHECKING:
    from hub.connections import ConnectionConfig
    from hub.context import StepContext
    from hub.settings import Settings

CHANGES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    params: Any
    json: Any
    key: str | None
    replayed: bool


class FakeConnector(Connector):
    """Scripted answers by ``(method, path)``; unscripted calls answer ``None``."""

    kind = "fake"

    def __init__(self, config: ConnectionConfig, settings: Settings) -> None:
        super().__init__(config, settings)
        self.lock = threading.Lock()
        self.calls: list[Call] = []
        self.effects: Counter[str] = Counter()
        self._answers: dict[tuple[str, str], Any] = {}
        self._failures: dict[tuple[str, str], list[BaseException]] = {}
        self._replies: dict[str, Any] = {}

    def respond(self, method: str, path: str, answer: Any) -> None:
        """Answer ``answer`` to every ``method path`` call."""
        self._answers[(method.upper(), path)] = answer

    def fail(self, method: str, path: str, error: BaseException, *, times: int = 1) -> None:
        """Raise ``error`` on the next ``times`` calls of ``method path`` (no effect)."""
        self._failures.setdefault((method.upper(), path), []).extend([error] * times)

    def bind(self, ctx: StepContext | None) -> FakeClient:
        return FakeClient(self, ctx)

    def check(self) -> str:
        """Reads the connection's secrets (an unset variable fails as it would for real);
        with ``options.accept`` set, a secret other than that one is refused."""
        values = [self.secret(field) for field in self.config.auth.secrets()]
        accept = self.config.options.get("accept")
        if accept is not None and accept not in values:
            raise BusinessError(f"fake connection {self.name!r} refused the credentials")
        return f"fake connection {self.name!r}: nothing to reach"


class FakeClient(Verbs, Bound):
    connector: FakeConnector

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Any = None,
        json: Any = None,
        idempotency_key: str | None = None,
        **_: Any,
    ) -> Any:
        """One call, as a real connector makes it: an absolute URL is checked against the
        allow-list, a scripted ``TransientError`` is retried per the connection, and the
        request is left as evidence when the call fails."""
        method = method.upper()
        if "://" in path:
            self.connector.egress.check(path)
        key = self.idempotency_key(idempotency_key) if method in CHANGES else None

        def once() -> Any:
            try:
                return self._answer(method, path, params, json, key)
            except TransientError as exc:
                raise Retry(exc) from exc

        try:
            return retrying(self.config, once)
        except HubError:
            self.record(request={"method": method, "url": path, "headers": {}, "body": json})
            raise

    def _answer(self, method: str, path: str, params: Any, json: Any, key: str | None) -> Any:
        fake = self.connector
        with fake.lock:
            failures = fake._failures.get((method, path))
            if failures:
                error = failures.pop(0)
                fake.calls.append(Call(method, path, params, json, key, False))
                raise error
            if key is not None and key in fake._replies:
                fake.calls.append(Call(method, path, params, json, key, True))
                return fake._replies[key]
            answer = fake._answers.get((method, path))
            if isinstance(answer, BaseException):
                fake.calls.append(Call(method, path, params, json, key, False))
                raise answer
            fake.calls.append(Call(method, path, params, json, key, False))
            if method in CHANGES:
                fake.effects[key or f"{method} {path}"] += 1
                if key is not None:
                    fake._replies[key] = answer
            return answer

    def answer(self, method: str, path: str, **kw: Any) -> Any:
        return self.request(method, path, **kw)

    def paginate(self, path: str, **kw: Any) -> Iterator[Any]:
        answer = self.request("GET", path, params=kw.get("params"))
        if answer is None:
            return
        if not isinstance(answer, list):
            raise BusinessError(f"fake {path}: script a list of pages (lists of items)")
        for page in answer:
            yield from page
