"""Helpers for web bot steps: find fields by their labels, wait sanely, classify what the page says.

::

    @step(queue="browser", retries=3)
    def key_order(ctx: StepContext, order: Order) -> Keyed:
        bot = WebBot(ctx, "http://127.0.0.1:8100")         # may reach this origin only
        bot.goto("/")
        bot.fill("User name", "clerk")
        bot.fill_secret("Password", ctx.secret("legacy_web"))  # never traced, logged or shown
        bot.click("Log in")
        main = bot.frame("main")
        bot.click("New order", within=bot.frame("menu"))
        bot.fill("Postal code", order.postal_code, within=main)
        bot.choose("Customer", order.customer, within=main)  # a slow autocomplete list
        bot.confirm_next_dialog("Save order?")
        bot.click("Save", within=main)
        bot.expect("text=Order saved", within=main, business=".error", transient="text=System busy")

Every helper waits for its element (the context's default timeout,
``HUB_BROWSER_TIMEOUT_MS``; navigations three times that), records what it
did with ``ctx.evidence.action`` (never a secret), and translates what goes
wrong into the hub's errors, chained to Playwright's:

- ``PolicyViolation``: the page asked for a target outside the allow-list
  (the bot's ``url`` and ``allow`` entries); the request was blocked;
- ``TransientError``: a navigation that timed out or could not connect, the
  browser gone, or a ``transient`` selector on the page ("System busy");
- ``BusinessError``: a ``business`` selector on the page (a validation message);
- :class:`UnexpectedScreen` (a ``BusinessError``): an element still missing
  after waiting, an unexpected dialog or pop-up, a page not as expected.
  It goes straight to review: the waits are already generous, and a person
  looking at the screenshot decides faster than a retry.

``within`` is a frame (``bot.frame("main")``) or any locator; by default the page.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

from bots.base import UnexpectedScreen
from bots.browser import Session
from hub.context import StepContext
from hub.errors import BusinessError, PolicyViolation, TransientError

__all__ = ["TABLE", "Downloaded", "UnexpectedScreen", "WebBot"]
from hub.evidence import redact_url

#: Selector of the table :meth:`WebBot.table_rows` reads by default: the first with headers.
TABLE = "table:has(th)"


@dataclass(frozen=True)
class Downloaded:
    name: str
    data: bytes


class WebBot:
    """A step's web bot over ``ctx.browser``. ``url`` is the system it drives: its origin
    is allowed, and paths given to :meth:`goto` are relative to it; ``allow`` adds
    other ``host:port`` entries. Nothing else is reachable from the page."""

    def __init__(
        self,
        ctx: StepContext,
        url: str | None = None,
        *,
        allow: Iterable[str] = (),
    ) -> None:
        self.ctx = ctx
        self.page: Any = ctx.browser
        self.session: Session = ctx.services["browser"].session(self.page)  # type: ignore[attr-defined]
        self.url = url.rstrip("/") + "/" if url else None
        if url:
            self.session.allow.add(url)
        self.session.allow.add(*allow)

    # ------------------------------------------------------------ navigation
    def goto(self, path: str = "/") -> None:
        """Open ``path`` (relative to the bot's ``url``) or a full URL; waits for the load."""
        url = urljoin(self.url, path) if self.url else path
        with self._doing(f"opened {redact_url(url)}", navigation=True):
            if not self.session.allow.permits(url):
                self.session.violations.append(
                    f"{url} (not in the allow-list: {self.session.allow})"
                )
                self.check()
            self.page.goto(url)

    def frame(self, name: str) -> Any:
        """The frame (or iframe) called ``name``, to pass as ``within``."""
        return self.page.frame_locator(f'frame[name="{name}"], iframe[name="{name}"]')

    # ---------------------------------------------------------------- fields
    def fill(self, label: str, value: str, *, within: Any = None) -> None:
        """Fill the field whose label reads ``label`` (ids and names may be generated)."""
        field = self._field(label, within)
        with self._doing(f"filled {label!r} with {value!r}"):
            field.fill(value)

    def fill_secret(self, label: str, value: str, *, within: Any = None) -> None:
        """Fill a field with a secret: masked in screenshots, scrubbed from evidence and
        logs, and the trace paused until the field has left the page (after the login)."""
        field = self._field(label, within)
        self.session.secret_filled(field, value)
        self.session.pause_tracing()
        with self._doing(f"filled {label!r} with a secret"):
            field.fill(value)

    def choose(
        self, label: str, option: str, *, typed: str | None = None, within: Any = None
    ) -> None:
        """Type ``typed`` (default: the first four letters of ``option``) into an
        autocomplete field key by key, wait for ``option`` in its list and click it."""
        field = self._field(label, within)
        typed = typed or option[:4]
        with self._doing(f"typed {typed!r} into {label!r}"):
            field.fill("")
            field.press_sequentially(typed, delay=20)
        with self._doing(f"chose {option!r} from the list of {label!r}"):
            (within or self.page).get_by_text(option, exact=True).last.click()

    # ---------------------------------------------------------------- clicks
    def click(self, name: str, *, within: Any = None) -> None:
        """Click the button or link whose visible name is ``name``."""
        scope = within or self.page
        target = scope.get_by_role("button", name=name, exact=True).or_(
            scope.get_by_role("link", name=name, exact=True)
        )
        with self._doing(f"clicked {name!r}"):
            target.first.click()

    def click_text(self, text: str, *, within: Any = None) -> None:
        """Click the element that shows exactly ``text``."""
        with self._doing(f"clicked the text {text!r}"):
            (within or self.page).get_by_text(text, exact=True).first.click()

    def confirm_next_dialog(self, text: str = "", *, accept: bool = True) -> None:
        """Accept (or dismiss) the next dialog whose message contains ``text``. Any other
        dialog is dismissed and fails the step as an :class:`UnexpectedScreen`."""
        self.session.expected_dialogs.append((text, accept))

    # --------------------------------------------------------------- reading
    def expect(
        self,
        selector: str,
        *,
        within: Any = None,
        business: str | Iterable[str] = (),
        transient: str | Iterable[str] = (),
        timeout_ms: float | None = None,
    ) -> str:
        """Wait until ``selector`` shows, and return its text; if a ``business`` selector
        shows first, raise ``BusinessError`` with its text, a ``transient`` one,
        ``TransientError``. Selectors are Playwright's: ``".error"``, ``"text=System busy"``."""
        scope = within or self.page
        named = {"ok": [selector], "business": _listed(business), "transient": _listed(transient)}
        seen, text = self.which(within=scope, timeout_ms=timeout_ms, what=selector, **named)
        if seen == "business":
            raise BusinessError(text)
        if seen == "transient":
            raise TransientError(text)
        return text

    def which(
        self,
        *,
        within: Any = None,
        timeout_ms: float | None = None,
        what: str = "",
        **selectors: str | Iterable[str],
    ) -> tuple[str, str]:
        """Wait until one of the named selectors shows; return its name and its text.

        ``bot.which(within=main, found="text=order(s) found", none="text=No order found")``
        """
        scope = within or self.page
        candidates = [
            (name, scope.locator(s)) for name, ss in selectors.items() for s in _listed(ss)
        ]
        if not candidates:
            raise ValueError("which() needs at least one selector")
        anyone = candidates[0][1]
        for _, locator in candidates[1:]:
            anyone = anyone.or_(locator)
        label = what or " or ".join(s for ss in selectors.values() for s in _listed(ss))
        with self._doing(f"waited for {label}"):
            anyone.first.wait_for(state="visible", timeout=timeout_ms)
            for name, locator in candidates:
                if locator.first.is_visible():
                    return name, " ".join(locator.first.inner_text().split())
        raise UnexpectedScreen(f"{label} showed and vanished again")

    def text(self, selector: str, *, within: Any = None) -> str:
        """The visible text of the first element matching ``selector``, once it shows."""
        with self._doing(f"read {selector}"):
            return " ".join((within or self.page).locator(selector).first.inner_text().split())

    def table_rows(
        self,
        table: str = TABLE,
        *,
        within: Any = None,
        next_page: str | None = "Next >",
        max_pages: int = 100,
    ) -> list[dict[str, str]]:
        """The rows of a table as dicts keyed by its header cells, following the
        ``next_page`` link (if any) across pages, up to ``max_pages``."""
        scope = within or self.page
        rows: list[dict[str, str]] = []
        for number in range(1, max_pages + 1):
            with self._doing(f"read page {number} of the table {table}"):
                cells = scope.locator(table).first.evaluate(_READ_TABLE)
            head, *body = cells or [[]]
            rows += [dict(zip(head, line, strict=False)) for line in body]
            more = scope.get_by_role("link", name=next_page, exact=True) if next_page else None
            if more is None or not more.count():
                return rows
            with self._doing(f"clicked {next_page!r}"):
                more.first.click()
            self._until_changed(scope.locator(table).first, cells)
        raise UnexpectedScreen(f"the table {table} has more than {max_pages} pages")

    def download(self, name: str, *, within: Any = None) -> Downloaded:
        """Click the button or link ``name`` and return the file it downloads."""
        scope = within or self.page
        target = scope.get_by_role("link", name=name, exact=True).or_(
            scope.get_by_role("button", name=name, exact=True)
        )
        with self._doing(f"downloaded {name!r}"), self.page.expect_download() as info:
            target.first.click()
        with self._doing(f"saved the download of {name!r}"):
            got = info.value
            return Downloaded(got.suggested_filename, Path(got.path()).read_bytes())

    # ---------------------------------------------------------------- checks
    def check(self) -> None:
        """Raise for what happened since the last action: a blocked request
        (``PolicyViolation``), an unexpected dialog or pop-up (:class:`UnexpectedScreen`)."""
        if self.session.violations:
            raise PolicyViolation("blocked a request to " + self.session.violations[0])
        if self.session.surprises:
            raise UnexpectedScreen(self.session.surprises[0])

    # --------------------------------------------------------------- helpers
    def _field(self, label: str, within: Any) -> Any:
        return (within or self.page).get_by_label(label, exact=True)

    @contextmanager
    def _doing(self, what: str, *, navigation: bool = False) -> Iterator[None]:
        from playwright.sync_api import Error, TimeoutError

        self.check()
        self.session.resume_tracing()
        self.ctx.evidence.action(what)
        try:
            yield
        except TimeoutError as exc:
            self.check()
            if navigation:
                raise TransientError(f"{what}: the page did not load in time") from exc
            raise UnexpectedScreen(f"{what}: {_first_line(exc)}") from exc
        except Error as exc:
            self.check()
            message = _first_line(exc)
            if navigation or "closed" in message or "crashed" in message:
                raise TransientError(f"{what}: {message}") from exc
            raise UnexpectedScreen(f"{what}: {message}") from exc
        self.check()

    def _until_changed(self, table: Any, before: Any) -> None:
        from playwright.sync_api import Error

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if table.evaluate(_READ_TABLE, timeout=1000) != before:
                    return
            except Error:  # the frame is loading the next page
                pass
            self.page.wait_for_timeout(50)
        raise UnexpectedScreen("the table did not change after going to the next page")


_READ_TABLE = "t => [...t.rows].map(r => [...r.cells].map(c => c.innerText.trim()))"


def _listed(value: str | Iterable[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__
