"""The hub's error tree: what a step raises decides what happens next.

::

    HubError                      base of everything the hub raises on purpose
    ├── StepError                 raised by steps, connectors and bots
    │   ├── TransientError        retried with exponential backoff and jitter
    │   ├── BusinessError         a business rule failed: no retry, goes to review
    │   ├── NeedsReview           the step asks a person (question, optional form)
    │   └── PolicyViolation       target outside the allow-list, secret leak guard
    ├── FlowDefinitionError       a flow or step is declared wrongly (import time)
    ├── FlowNotFound              a trigger named a flow the registry does not know
    ├── InvalidInput              input failed a step's model (trigger or review time)
    ├── RunStateError             an action that the run's state does not allow
    │   └── ReviewConflict        a review item closed or changed under a reviewer (409)
    ├── ReviewNotFound            no review item of that id the asker may see (404)
    ├── Forbidden                 the asker's role may not do that (403)
    ├── IdempotencyConflict       an idempotency key reused with another body
    │   └── RequestInFlight       that key's first request is still being handled (409)
    ├── SignatureError            a webhook delivery failed verification (401)
    ├── ConnectionConfigError     a connection missing, malformed, or its secret unreadable
    └── AccountError              a user or token that does not exist, or a bad name/role

Any other exception raised by a step is an *application error*: it is retried
per the step's policy (``retries``), then the run pauses for review.

Connectors and bots translate vendor exceptions (httpx, SalesforceError, zeep
faults, Playwright timeouts) into this tree at their boundary, chaining the
original with ``raise ... from exc``; flows never catch vendor exceptions.
"""

from __future__ import annotations

from typing import Any


class HubError(Exception):
    """Base class of every error the hub raises on purpose."""


class StepError(HubError):
    """Base class of errors raised inside steps to steer the engine."""

    #: How the engine classifies the error; stored on attempts and review items.
    kind = "error"


class TransientError(StepError):
    """A temporary failure (timeout, 429, 5xx, "system busy"): retry later.

    ``retry_after`` (seconds), when given, replaces the computed backoff for
    the next attempt, e.g. from an HTTP ``Retry-After`` header.
    """

    kind = "transient"

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class BusinessError(StepError):
    """A business rule failed (bad postal code, unknown customer).

    Never retried automatically: the run pauses and a review item is opened.
    """

    kind = "business"


class NeedsReview(StepError):
    """The step asks a person on purpose.

    ``form`` is an optional pydantic model; the reviewer's answer is validated
    against it and becomes the step's output.
    """

    kind = "question"

    def __init__(self, question: str, *, form: type[Any] | None = None) -> None:
        super().__init__(question)
        self.question = question
        self.form = form


class PolicyViolation(StepError):
    """A target outside the allow-list, or a secret about to leak. Never retried."""

    kind = "policy"


class FlowDefinitionError(HubError, TypeError):
    """A flow, step or trigger is declared wrongly. Raised at import time."""


class FlowNotFound(HubError, LookupError):
    """No flow of that name is registered."""


class InvalidInput(HubError, ValueError):
    """Input failed validation against a step's input (or output) model.

    ``errors`` holds pydantic's field errors, for forms and API responses.
    """

    def __init__(self, message: str, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.errors = errors or []


class RunStateError(HubError):
    """The action is not allowed in the run's or step's current state."""


class ReviewConflict(RunStateError):
    """A review action lost: the item is closed, or changed since the reviewer read it."""


class ReviewNotFound(HubError, LookupError):
    """No review item with that id, or none the asker's teams may see."""


class Forbidden(HubError, PermissionError):
    """The asker's role does not allow the action."""


class RunNotFound(HubError, LookupError):
    """No run with that id."""


class IdempotencyConflict(HubError):
    """An idempotency key was reused with a different input."""


class RequestInFlight(IdempotencyConflict):
    """Another request with the same idempotency key is being handled right now.

    Answered 409 with ``Retry-After``: retried a moment later, the request
    gets the run the first one made.
    """


class SignatureError(HubError):
    """A webhook delivery failed verification: answer 401 and store nothing.

    The message is a short reason safe to return and log (a missing header, a
    signature that does not match, a timestamp outside the window); it never
    holds the body, a secret or an expected signature.
    """


class AccountError(HubError, ValueError):
    """A user, team or token that cannot be created or found as asked."""


def classify(exc: BaseException) -> str:
    """Return the engine's name for an exception: a ``StepError.kind`` or ``"error"``."""
    if isinstance(exc, StepError):
        return exc.kind
    return "error"


class ConnectionConfigError(HubError):
    """A connection that is missing or malformed, or whose secret cannot be read.

    The message names the connection, where it is defined, and the fix. Raised
    in a step, it is an application error: retried per the step's policy, then
    review (a person fixes the configuration and retries).
    """
