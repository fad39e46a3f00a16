"""The browser a worker process lends to web bot steps: ``ctx.browser``.

:class:`BrowserService` is a :class:`hub.context.Service`. A worker of the
``browser`` queue has one; it launches Chromium (see :mod:`bots.chromium`)
through Playwright's sync API on the first browser step and keeps it warm.
It launches a fresh one when the browser has died, and after
``browser_max_steps`` steps. Each step gets a :class:`Session`: a new browser
context (its own cookies and storage) with one page, which is ``ctx.browser``.

A session:

- routes every request through the egress guard: a request to a target the
  allow-list does not permit, or a redirect to one, is aborted before it
  leaves the browser, and remembered as a violation (the allow-list starts
  empty; :class:`bots.web.WebBot` fills it). Service workers are blocked;
- records a Playwright trace (screenshots and DOM snapshots), paused from a
  secret fill until that field has left the page, and scrubbed of masked
  values before it is kept;
- on failure leaves the evidence a reviewer needs (:meth:`Session.finish`):
  a screenshot with secret and password fields masked, the trace, the HTML
  of the page and its frames, and the URL and title. On success it is dropped.

Playwright is imported on first use, never when ``hub`` or ``bots`` is imported.
Its objects belong to the thread that launched the browser: browser steps run
on the prefork or solo pool, not on threads.
"""

from __future__ import annotations

import io
import json
import logging
import shutil
import tempfile
import threading
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, quote_plus, urljoin

from bots.chromium import LAUNCH_ARGS, Found, find
from bots.egress import Allow
from hub.evidence import REDACTED

if TYPE_CHECKING:
    from hub.context import StepContext
    from hub.settings import Settings

log = logging.getLogger("hub.bots")
VIEWPORT = {"width": 1366, "height": 800}
#: How long closing work (screenshot, trace, context) may take, in milliseconds.
CLOSE_TIMEOUT_MS = 5_000
INSTALL = "web bots need the browser extra: pip install 'hub[browser]'"


class BrowserService:
    """One warm Chromium per worker process; a fresh context per step.

    ``open(ctx)`` returns the step's Playwright ``Page``; ``close(ctx, page,
    error)`` records evidence when ``error`` is set and closes the context.
    :meth:`shutdown` closes the browser (the worker calls it when it stops).
    """

    def __init__(self, settings: Settings | None = None, *, chromium: Found | None = None) -> None:
        from hub.settings import Settings

        settings = settings or Settings()
        self.max_steps = settings.browser_max_steps
        self.timeout_ms = settings.browser_timeout_ms
        self._chromium = chromium
        self._playwright: Any = None
        self._browser: Any = None
        self._thread: int | None = None
        self._served = 0
        self._sessions: dict[int, Session] = {}
        self._spare: Session | None = None
        #: browsers launched by this service so far (for tests and logs)
        self.launches = 0

    # --------------------------------------------------------------- service
    def open(self, ctx: StepContext) -> Any:
        _not_in_an_event_loop()
        spare, self._spare = self._spare, None
        if spare is not None:
            if self._browser is not None and self._browser.is_connected() and _answers(spare):
                spare.ctx = ctx  # made by idle() for the next step: never used before
                self._sessions[id(spare.page)] = spare
                return spare.page
            log.warning("the browser of this worker died; launching a new one")
            self.shutdown()
        try:
            session = Session(self._ready_browser(), ctx, self.timeout_ms)
        except Exception as exc:
            # a browser killed a moment ago may not have been noticed yet: launch anew, once
            if not ("closed" in str(exc) or "crashed" in str(exc)):
                raise
            log.warning("the browser of this worker died; launching a new one")
            self.shutdown()
            session = Session(self._ready_browser(), ctx, self.timeout_ms)
        self._sessions[id(session.page)] = session
        return session.page

    def close(self, ctx: StepContext, resource: Any, error: BaseException | None) -> None:
        session = self._sessions.pop(id(resource), None)
        if session is None:
            return
        try:
            session.finish(error)
        except Exception:
            log.exception("closing the browser context of step %s failed; relaunching", ctx.key)
            self.shutdown()
        self._served += 1
        if self._served >= self.max_steps:
            log.info("browser served %d steps; the next step gets a fresh one", self._served)
            self.shutdown()

    def idle(self) -> None:
        """Between steps (the engine calls it once a step's result is stored): make the
        next step's context and page now, so that step does not wait for Chromium to
        start a renderer. It is still a fresh context, used by one step only."""
        if self._spare is not None or self._browser is None or self._served >= self.max_steps:
            return
        try:
            if not self._browser.is_connected() or self._thread != threading.get_ident():
                return
            self._spare = Session(self._browser, None, self.timeout_ms)
        except Exception:  # a browser going away: the next step launches a new one
            log.debug("preparing the next browser context failed", exc_info=True)
            self._spare = None

    def session(self, page: Any) -> Session:
        """The :class:`Session` of a page this service opened (``ctx.browser``)."""
        try:
            return self._sessions[id(page)]
        except KeyError:
            raise LookupError("that page is not a browser step's ctx.browser") from None

    # -------------------------------------------------------------- browser
    @property
    def browser(self) -> Any:
        """The warm Playwright ``Browser``, or None before the first step."""
        return self._browser

    def _ready_browser(self) -> Any:
        me = threading.get_ident()
        if self._thread is not None and self._thread != me:
            raise RuntimeError(
                "the browser of this worker process was launched on another thread: run "
                "the browser queue on the prefork or solo pool (`hub worker --queues browser`)"
            )
        if self._browser is not None and not self._browser.is_connected():
            log.warning("the browser of this worker died; launching a new one")
            self.shutdown()
        if self._browser is None:
            self._launch()
            self._thread = me
        return self._browser

    def _launch(self) -> None:
        found = self._chromium or find()
        playwright = _DRIVER.acquire()
        try:
            self._browser = playwright.chromium.launch(
                executable_path=found.path, args=list(LAUNCH_ARGS), headless=True
            )
        except BaseException:
            _DRIVER.release()
            raise
        self._playwright = playwright
        self._served = 0
        self.launches += 1
        log.info("launched Chromium %s from %s", self._browser.version, found)

    def shutdown(self) -> None:
        """Close the browser (and Playwright's driver when no other service uses it);
        the next step launches a new one."""
        browser, playwright = self._browser, self._playwright
        self._browser = self._playwright = self._thread = None
        self._sessions.clear()
        self._spare = None  # its context closes with the browser
        if browser is not None:
            try:
                browser.close()
            except Exception:  # a dead browser: nothing left to close
                log.debug("closing a dead browser", exc_info=True)
        if playwright is not None:
            _DRIVER.release()


def _not_in_an_event_loop() -> None:
    """Playwright's sync API blocks: never inside an event loop (the web app's, say).

    Once this process's driver runs, the thread reports Playwright's own loop as
    running between calls; a foreign loop is only to be found before that (and
    Playwright refuses one itself after)."""
    import asyncio

    if _DRIVER.playwright is not None:
        return
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise RuntimeError(
        "a browser step ran inside an asyncio event loop (the web app?): web bots run only "
        "in worker processes of the browser queue (`hub worker --queues browser`)"
    )


class _Driver:
    """Playwright's driver process, one per worker process: its sync API allows one per thread."""

    def __init__(self) -> None:
        self.playwright: Any = None
        self.users = 0

    def acquire(self) -> Any:
        if self.playwright is None:
            try:
                from playwright.sync_api import sync_playwright
            except ImportError as exc:
                raise RuntimeError(INSTALL) from exc
            self.playwright = sync_playwright().start()
        self.users += 1
        return self.playwright

    def release(self) -> None:
        self.users -= 1
        if self.users <= 0:
            playwright, self.playwright, self.users = self.playwright, None, 0
            try:
                playwright.stop()
            except Exception:  # a driver that died with its browser
                log.debug("stopping a dead Playwright driver", exc_info=True)


_DRIVER = _Driver()


class Session:
    """One step's browser context and page, its egress guard, trace and secret fields."""

    def __init__(self, browser: Any, ctx: StepContext | None, timeout_ms: int) -> None:
        #: the step it serves (None for a spare made ahead; set before the step uses it)
        self.ctx: Any = ctx
        self.allow = Allow()
        #: requests refused by the guard, as "URL (why)"
        self.violations: list[str] = []
        #: dialogs and pop-ups no one expected
        self.surprises: list[str] = []
        #: dialogs the bot expects next: (text in the message or "", accept?)
        self.expected_dialogs: list[tuple[str, bool]] = []
        self.secret_fields: list[Any] = []
        self.secret_values: set[str] = set()
        self._folder = Path(tempfile.mkdtemp(prefix="hub-trace-"))
        self._parts: list[Path] = []
        self._tracing = False
        self.context = browser.new_context(
            service_workers="block", accept_downloads=True, viewport=VIEWPORT
        )
        try:
            self.context.set_default_timeout(timeout_ms)
            self.context.set_default_navigation_timeout(timeout_ms * 3)
            self.context.route("**/*", self._route)
            self.context.route_web_socket("**/*", self._route_socket)
            self.context.tracing.start(screenshots=True, snapshots=True)
            self._tracing = True
            self.page = self.context.new_page()
            self.page.on("dialog", self._on_dialog)
            self.context.on("page", self._on_popup)
        except BaseException:
            self._discard()
            raise

    # ----------------------------------------------------------------- guard
    def _route(self, route: Any) -> None:
        url = route.request.url
        if not self.allow.permits(url):
            self._refuse(route, url, "not in the allow-list")
            return
        try:
            response = route.fetch(max_redirects=0)
        except Exception as exc:
            # the page, the context or the target went away: fail the request as a browser would
            log.debug("egress fetch of %s failed: %s", url, exc)
            _quietly(route.abort, "failed")
            return
        location = response.headers.get("location")
        if 300 <= response.status < 400 and location:
            target = urljoin(url, location)
            if not self.allow.permits(target):
                self._refuse(route, target, f"a redirect from {url}")
                return
        _quietly(route.fulfill, response=response)

    def _refuse(self, route: Any, url: str, why: str) -> None:
        self.violations.append(f"{url} ({why}; allowed: {self.allow})")
        log.warning("blocked a request of step %s to %s (%s)", self.ctx.key, url, why)
        _quietly(route.abort, "blockedbyclient")

    def _route_socket(self, socket: Any) -> None:
        if self.allow.permits(socket.url):
            socket.connect_to_server()
        else:
            self.violations.append(f"{socket.url} (a web socket; allowed: {self.allow})")
            _quietly(socket.close)

    # ---------------------------------------------------------- dialogs, pop-ups
    def _on_dialog(self, dialog: Any) -> None:
        message = f"{dialog.type} {dialog.message!r}"
        for i, (text, accept) in enumerate(self.expected_dialogs):
            if text in dialog.message:
                del self.expected_dialogs[i]
                self.ctx.evidence.action(f"{'accepted' if accept else 'dismissed'} {message}")
                _quietly(dialog.accept if accept else dialog.dismiss)
                return
        self.surprises.append(f"an unexpected dialog: {message}")
        _quietly(dialog.dismiss)

    def _on_popup(self, page: Any) -> None:
        if page is self.page:
            return
        self.surprises.append(f"an unexpected pop-up window: {page.url}")
        _quietly(page.close)

    # ----------------------------------------------------------------- trace
    def secret_filled(self, field: Any, value: str) -> None:
        """Remember ``field`` for masking and ``value`` for scrubbing; call
        :meth:`pause_tracing` before filling it."""
        self.secret_fields.append(field)
        self.secret_values.add(value)
        self.ctx.evidence.mask(value)

    def pause_tracing(self) -> None:
        """Stop recording the trace until :meth:`resume_tracing` finds no secret on the page."""
        if self._tracing:
            self._save_part()
            self._tracing = False

    def resume_tracing(self) -> None:
        """Record again once every field that held a secret has left the page."""
        if self._tracing or any(_present(f) for f in self.secret_fields):
            return
        self.secret_fields = [f for f in self.secret_fields if _present(f)]
        self.context.tracing.start_chunk()
        self._tracing = True

    def _save_part(self) -> None:
        path = self._folder / f"trace-{len(self._parts) + 1}.zip"
        self.context.tracing.stop_chunk(path=str(path))
        self._parts.append(path)

    # ---------------------------------------------------------------- finish
    def finish(self, error: BaseException | None) -> None:
        """Leave the evidence of a failed step, then close the context. Raises if closing fails."""
        try:
            if error is not None:
                self._evidence()
        finally:
            self._discard()

    def _evidence(self) -> None:
        evidence = self.ctx.evidence
        attempts = (
            ("page", self._page_facts),
            ("screenshot", self._screenshot),
            ("trace", self._trace),
            ("html", self._html),
        )
        for what, record in attempts:
            try:
                record()
            except Exception as exc:  # evidence is best effort: note what is missing, go on
                evidence.note(f"no {what}", f"{type(exc).__name__}: {str(exc)[:300]}")
        if self.violations:
            evidence.note("blocked requests", "; ".join(self.violations[-10:]))
        if self.surprises:
            evidence.note("unexpected", "; ".join(self.surprises[-10:]))

    def _page_facts(self) -> None:
        self.ctx.evidence.page(url=self.page.url, title=self.page.title())

    def _screenshot(self) -> None:
        masks = list(self.secret_fields)
        masks += [frame.locator("input[type=password]") for frame in self.page.frames]
        png = self.page.screenshot(mask=masks, timeout=CLOSE_TIMEOUT_MS, animations="disabled")
        self.ctx.evidence.screenshot(png)

    def _trace(self) -> None:
        if self._tracing:
            self._save_part()
            self._tracing = False
        # the step's masked values (ctx.secret, evidence.mask) and what the bot typed as secret
        masked: set[str] = set(self.ctx.evidence.masked)
        scrub = _byte_forms(masked | self.secret_values)
        for i, part in enumerate(self._parts, 1):
            name = "trace.zip" if len(self._parts) == 1 else f"trace-{i}.zip"
            self.ctx.evidence.trace(_scrubbed_zip(part, scrub), name=name)

    def _html(self) -> None:
        parts = [self.page.content()]
        for frame in self.page.frames[1:]:
            label = frame.name or frame.url
            try:
                parts.append(f"\n<!-- frame {label!r}: {frame.url} -->\n{frame.content()}")
            except Exception as exc:  # a frame navigating away as we read it
                parts.append(f"\n<!-- frame {label!r}: unreadable ({type(exc).__name__}) -->\n")
        self.ctx.evidence.html("".join(parts))

    def _discard(self) -> None:
        try:
            self.context.close()
        finally:
            shutil.rmtree(self._folder, ignore_errors=True)


def _answers(session: Session) -> bool:
    """Whether the browser answers for the context (a browser killed a moment ago may
    still look connected): one round trip to the browser process, not to a renderer."""
    try:
        session.context.cookies()
    except Exception:
        return False
    return True


def _present(locator: Any) -> bool:
    try:
        return bool(locator.count())
    except Exception:  # its frame is gone: so is the field
        return False


def _quietly(action: Any, *args: Any, **kwargs: Any) -> None:
    """Answer a route, dialog or pop-up whose page may already be gone."""
    try:
        action(*args, **kwargs)
    except Exception as exc:
        log.debug("browser callback after its page closed: %s", exc)


def _byte_forms(secrets: set[str]) -> list[bytes]:
    """Each secret as it may appear in a trace: raw, URL-encoded, JSON-escaped."""
    forms: set[bytes] = set()
    for secret in secrets:
        for text in (secret, quote(secret, safe=""), quote_plus(secret), json.dumps(secret)[1:-1]):
            forms.add(text.encode())
    return sorted(forms, key=len, reverse=True)


def _scrubbed_zip(path: Path, secrets: list[bytes]) -> bytes:
    """The trace zip with every secret replaced in every member (network log, resources)."""
    out = io.BytesIO()
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            data = src.read(info)
            for secret in secrets:
                data = data.replace(secret, REDACTED.encode())
            dst.writestr(info, data)
    return out.getvalue()
