"""The contract every connector keeps, run against each connector and its sandbox.

A connector's test module subclasses :class:`Contract` and gives it a
``driver`` fixture: a :class:`Driver` that knows how to reach that kind's
sandbox, make one record there, count the records, and make the sandbox fail.
The tests here are then that connector's tests too:

- ``hub connections test`` (:meth:`Connector.check`) passes, and names the
  connection and the fix when the secret is wrong or unset;
- a change sent twice with one idempotency key is made once;
- transient failures within the retries are absorbed; more are a
  ``TransientError``; a refusal of the request is a ``BusinessError`` carrying
  the system's own words, with the exchange left as evidence;
- the secret appears in no evidence and no log line (RELIABILITY 39, the
  connector half);
- a target outside the allow-list is a ``PolicyViolation``, and nothing is sent
  (RELIABILITY 40, the connector half).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

import pytest

from hub.connections import ConnectionConfig, Connectors
from hub.context import StepContext
from hub.errors import BusinessError, ConnectionConfigError, PolicyViolation, TransientError
from hub.settings import Settings


class Driver(Protocol):
    """One connector kind and its sandbox, as the contract needs them."""

    #: the secret value the connection logs in with (a canary: it must leak nowhere)
    canary: str
    #: the environment variable the connection's secret is read from
    variable: str

    def config(self, **changes: Any) -> dict[str, Any]:
        """A connection to the sandbox (secret as ``env:VARIABLE``), with ``changes``."""
        ...

    def create(self, client: Any, ref: str) -> Any:
        """Make the record ``ref`` through the bound client, idempotently (the client's key)."""
        ...

    def effects(self, ref: str) -> int:
        """How many records the sandbox holds for ``ref``."""
        ...

    def fail_transient(self, times: int) -> None:
        """Make the sandbox's next ``times`` calls fail as a busy system does; no effect."""
        ...

    #: words of the system's own message that the error of :meth:`refused` must carry
    refusal: str

    def refused(self, client: Any) -> None:
        """Make a call the system refuses as a matter of business (it raises)."""
        ...

    def outside(self, client: Any) -> None:
        """Make a call that reaches outside the allow-list (another port of 127.0.0.1)."""
        ...

    def sent_outside(self) -> int:
        """How many requests reached the outside target."""
        ...


def context(key: str = "run-1:step") -> StepContext:
    return StepContext(
        run_id="run-1", flow="contract", step="step", key="step", attempt=1,
        idempotency_key=key, run_input={},
    )  # fmt: skip


@contextmanager
def connector(driver: Driver, **changes: Any) -> Iterator[Any]:
    config = ConnectionConfig.model_validate({"name": "sys", **driver.config(**changes)})
    connectors = Connectors(Settings(), configs={"sys": config})
    try:
        yield connectors.connector("sys")
    finally:
        connectors.shutdown()


class Contract:
    """Subclass with a ``driver`` fixture (and ``monkeypatch`` setting its secret). The
    driver's sandbox starts each test clean: no failures queued, no records."""

    def test_check_reaches_the_system_and_logs_in(self, driver: Driver) -> None:
        with connector(driver) as made:
            said = made.check()
        assert isinstance(said, str) and said

    def test_check_with_a_wrong_secret_names_the_connection(
        self, driver: Driver, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv(driver.variable, "not-the-" + driver.canary)
        with connector(driver) as made, pytest.raises(BusinessError) as caught:
            made.check()
        assert "'sys'" in str(caught.value)
        assert driver.canary not in str(caught.value)

    def test_an_unset_secret_names_its_variable(
        self, driver: Driver, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.delenv(driver.variable)
        with pytest.raises(ConnectionConfigError, match=driver.variable), connector(driver) as made:
            made.check()

    def test_a_change_sent_twice_with_one_key_is_made_once(self, driver: Driver) -> None:
        with connector(driver) as made:
            first = driver.create(made.bind(context()), "ref-once")
            again = driver.create(made.bind(context()), "ref-once")
        assert driver.effects("ref-once") == 1
        assert first == again

    def test_transient_failures_within_the_retries_are_absorbed(self, driver: Driver) -> None:
        driver.fail_transient(2)
        with connector(driver, retries=2, backoff=0.01) as made:
            driver.create(made.bind(context("run-2:step")), "ref-busy")
        assert driver.effects("ref-busy") == 1

    def test_more_transient_failures_are_a_transient_error(self, driver: Driver) -> None:
        driver.fail_transient(3)
        ctx = context("run-3:step")
        with connector(driver, retries=1, backoff=0.01) as made, pytest.raises(TransientError):
            driver.create(made.bind(ctx), "ref-down")
        assert driver.effects("ref-down") == 0

    def test_a_refusal_is_a_business_error_with_the_systems_words_and_evidence(
        self, driver: Driver, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.DEBUG)
        ctx = context("run-4:step")
        with ctx.evidence.capturing(), connector(driver) as made:
            client = made.bind(ctx)
            with pytest.raises(BusinessError) as caught:
                driver.refused(client)
        assert driver.refusal in str(caught.value)
        record = ctx.evidence.record() or {}
        assert "request" in record, record
        shown = repr(record) + repr([f.data for f in ctx.evidence.files]) + caplog.text
        assert driver.canary not in shown
        assert driver.canary not in str(caught.value)

    def test_a_target_outside_the_allow_list_is_a_policy_violation(self, driver: Driver) -> None:
        with connector(driver) as made, pytest.raises(PolicyViolation, match="allow-list"):
            driver.outside(made.bind(context("run-5:step")))
        assert driver.sent_outside() == 0
