"""The hub: durable Python flows that reach ERP, CRM and CMS systems and legacy
screens, with a person in the loop when a step cannot finish on its own.

The vocabulary flow authors use is exported here; everything else is internal.
"""

from __future__ import annotations

from hub.context import StepContext
from hub.errors import (
    BusinessError,
    HubError,
    NeedsReview,
    PolicyViolation,
    TransientError,
)
from hub.flow import Branch, Escalate, Flow, ForEach, Parallel, SubFlow, step
from hub.triggers import Schedule, Webhook

__version__ = "0.1.0"

__all__ = [
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
