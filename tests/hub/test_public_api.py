"""The vocabulary flow authors import from ``hub`` is locked: changing it is a decision."""

from __future__ import annotations

import importlib

import hub

PUBLIC = [
    "Branch",
    "BusinessError",
    "Escalate",
    "Flow",
    "ForEach",
    "HubError",
    "NeedsReview",
    "Parallel",
    "PolicyViolation",
    "Schedule",
    "StepContext",
    "SubFlow",
    "TransientError",
    "Webhook",
    "step",
]


def test_the_public_api_is_exactly_the_flow_authors_vocabulary() -> None:
    assert hub.__all__ == PUBLIC


def test_every_public_name_imports_from_hub() -> None:
    module = importlib.import_module("hub")
    for name in PUBLIC:
        assert getattr(module, name, None) is not None, f"hub.{name} is missing"
    namespace: dict[str, object] = {}
    exec(f"from hub import {', '.join(PUBLIC)}", namespace)
    assert set(PUBLIC) <= set(namespace)


def test_the_public_errors_belong_to_the_hub_error_tree() -> None:
    for name in ("BusinessError", "NeedsReview", "PolicyViolation", "TransientError"):
        assert issubclass(getattr(hub, name), hub.HubError), name


def test_the_package_has_a_version() -> None:
    assert hub.__version__.count(".") == 2
