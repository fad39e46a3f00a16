"""What web and desktop bots share: how they say the screen is not what they expect."""

from __future__ import annotations

from hub.errors import BusinessError


class UnexpectedScreen(BusinessError):
    """The screen is not what the bot expects: an element or window still missing after
    waiting, an unexpected dialog or pop-up. Goes to review with the evidence: the
    waits are already generous, and a person looking at the screenshot decides faster
    than a retry."""
