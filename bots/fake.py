"""A desktop that is only a script: for fast tests of desktop bot flows, with no display.

::

    fake = FakeDesktopService()
    hub.engine.services["desktop"] = fake
    fake.script.on("start", lambda d: d.show("Order Entry — Login"))
    fake.script.on("press enter", lambda d: d.retitle("Login", "Order Entry — New order"))
    fake.script.on("click 440,316", lambda d: d.show_only("Order Entry — No order PO-1"))
    ... run the flow ...
    assert "typed 'PO-1'" in fake.script.actions

:class:`FakeDesktop` has the calls of :class:`bots.desktop.Desktop` that a flow uses
(``start``, ``click``, ``type``, ``type_secret``, ``press``, ``hotkey``, ``expect``,
``window``, ``wait_gone``, ``windows``, ``active_title``, ``screenshot``) and the same
errors: a window still missing is :class:`~bots.base.UnexpectedScreen` at once (no
waiting), one matching ``business`` a :class:`~hub.errors.BusinessError`. Each action
is recorded as the real desktop records it, and runs the script's reactions to it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from bots.base import UnexpectedScreen
from bots.desktop import Box, Window
from hub.errors import BusinessError, TransientError

if TYPE_CHECKING:
    from hub.context import StepContext

#: a 1x1 white PNG, the fake's screenshot
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010802000000907753de0000000c4944415478"
    "9c63f8ffff3f0005fe02fe0def46b80000000049454e44ae426082"
)


class Script:
    """The fake screen's windows, the reactions to actions, and what was done."""

    def __init__(self) -> None:
        self.titles: list[str] = []
        self.actions: list[str] = []
        self.secrets: list[str] = []
        self._reactions: list[tuple[str, Callable[[Script], None]]] = []

    def on(self, action: str, then: Callable[[Script], None]) -> None:
        """Run ``then`` after an action that starts with ``action`` ("click 440,316",
        "press enter", "type PO-1", "start")."""
        self._reactions.append((action, then))

    def show(self, title: str) -> None:
        self.titles.append(title)

    def close(self, pattern: str) -> None:
        self.titles = [t for t in self.titles if not re.search(pattern, t)]

    def show_only(self, title: str) -> None:
        self.titles = [title]

    def retitle(self, pattern: str, title: str) -> None:
        self.titles = [title if re.search(pattern, t) else t for t in self.titles]

    def did(self, action: str) -> None:
        self.actions.append(action)
        for prefix, then in list(self._reactions):
            if action.startswith(prefix):
                then(self)


class FakeDesktop:
    """``ctx.desktop`` on a :class:`Script` instead of a display."""

    def __init__(self, ctx: StepContext, script: Script) -> None:
        self.ctx = ctx
        self.script = script
        self.display = ":fake"
        self.size = (1024, 768)

    def _do(self, shown: str, action: str | None = None) -> None:
        self.ctx.evidence.action(shown)
        self.script.did(action or shown)

    def start(self, command: Sequence[str], *, window: str | None = None, **_: Any) -> None:
        self._do(f"started {command[0].rsplit('/', 1)[-1]}", "start")
        if window is not None:
            self.window(window)

    def click(self, x: int | None = None, y: int | None = None, **_: Any) -> None:
        self._do(f"clicked ({x}, {y})", f"click {x},{y}")

    def type(self, text: str, **_: Any) -> None:
        self._do(f"typed {text!r}", f"type {text}")

    def type_secret(self, text: str, **_: Any) -> None:
        self.ctx.evidence.mask(text)
        self.script.secrets.append(text)
        self._do("typed a secret")

    def press(self, *keys: str) -> None:
        self._do(f"pressed {' '.join(keys)}", f"press {' '.join(keys)}")

    def hotkey(self, *keys: str) -> None:
        self._do(f"pressed {'+'.join(keys)}", f"hotkey {'+'.join(keys)}")

    def windows(self) -> list[Window]:
        return [Window(i, t, (0, 0, 640, 480)) for i, t in enumerate(self.script.titles, 1)]

    @property
    def active_title(self) -> str | None:
        return self.script.titles[-1] if self.script.titles else None

    def expect(
        self,
        title: str,
        *,
        business: str | None = None,
        transient: str | None = None,
        **_: Any,
    ) -> Window:
        for window in reversed(self.windows()):
            if business and re.search(business, window.title):
                raise BusinessError(
                    f"the program showed the window {window.title!r} instead of {title!r}; "
                    "see the screenshot"
                )
            if transient and re.search(transient, window.title):
                raise TransientError(f"the program showed {window.title!r}")
            if re.search(title, window.title):
                self.ctx.evidence.window(window.title)
                return window
        shown = ", ".join(repr(t) for t in self.script.titles) or "none"
        raise UnexpectedScreen(f"no window titled like {title!r}; open windows: {shown}")

    def window(self, title: str, **kw: Any) -> Window:
        return self.expect(title, **kw)

    def wait_gone(self, title: str, **_: Any) -> None:
        if any(re.search(title, t) for t in self.script.titles):
            raise UnexpectedScreen(f"the window {title!r} is still open")

    def screenshot(self, region: Box | None = None, **_: Any) -> bytes:
        return PNG


class FakeDesktopService:
    """A :class:`hub.context.Service` lending :class:`FakeDesktop` s on one :class:`Script`;
    on failure it leaves the evidence the real one does (screenshot, titles)."""

    def __init__(self, script: Script | None = None) -> None:
        self.script = script or Script()

    def open(self, ctx: StepContext) -> FakeDesktop:
        return FakeDesktop(ctx, self.script)

    def close(self, ctx: StepContext, resource: Any, error: BaseException | None) -> None:
        if error is not None:
            ctx.evidence.screenshot(PNG)
            ctx.evidence.window(resource.active_title)
            ctx.evidence.note("windows", ", ".join(self.script.titles))
        self.script.titles = []  # the programs a step started end with it
