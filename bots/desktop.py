"""The display a worker process lends to desktop bot steps: ``ctx.desktop``.

::

    @step(queue="desktop", retries=2)
    def key_order(ctx: StepContext, order: Order) -> Keyed:
        desk = ctx.desktop                                  # this display, leased to this step
        desk.start(["order-entry"], window=r"^Order Entry .+ Login$")
        desk.click(300, 164)                                # or desk.click(image="user.png")
        desk.type("clerk")
        desk.click(300, 214)
        desk.type_secret(ctx.secret("order_entry"), field=(240, 200, 240, 28))
        desk.press("enter")
        desk.expect(r"New order$", business=r"^Error$")
        ...

:class:`DesktopService` is a :class:`hub.context.Service`. A worker of the
``desktop`` queue has one. Before each step it:

1. finds the display: ``HUB_DESKTOP_DISPLAY=:N``; or ``auto`` (the default):
   ``DISPLAY`` when set, else an Xvfb of its own (:class:`bots.display.Xvfb`,
   ``HUB_DESKTOP_SIZE``, started on the first step, started again if it died);
   or ``xvfb``: always its own;
2. takes the display's exclusive lease (:class:`bots.display.Lease`): one bot
   per display, whatever the number of worker processes;
3. checks the display's health: reachable, the expected size, and the screen
   not black (a blanked, locked or dead screen). A failure is a
   :class:`~hub.errors.TransientError` that names the problem.

The step then gets a :class:`Desktop`. When the step fails, the service
leaves the evidence: a screenshot with the secret fields painted over, the
title of the active window and the titles of the open windows. Programs the
step started with :meth:`Desktop.start` are stopped at the end of the step,
and the lease released.

PyAutoGUI is imported on the first desktop step, with ``DISPLAY`` set: never
when ``hub`` or ``bots`` is imported. Desktop steps run on the prefork or solo
pool: PyAutoGUI's X connection belongs to the process.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import signal
import socket
import subprocess
import tempfile
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bots.base import UnexpectedScreen
from bots.display import DisplayBusy, DisplayError, Lease, Xvfb, die_with_parent, parse_size
from hub.errors import BusinessError, TransientError

if TYPE_CHECKING:
    from hub.context import StepContext
    from hub.settings import Settings

log = logging.getLogger("hub.bots")
INSTALL = "desktop bots need the desktop extra: pip install 'hub[desktop]'"
#: A screen whose brightest pixel is darker than this is black.
BLACK = 16
#: Seconds PyAutoGUI waits after each action, for the program to take it in.
PAUSE = 0.05

Box = tuple[int, int, int, int]  # left, top, width, height


@dataclass(frozen=True)
class Window:
    """A top-level window on the display: its X id, title and place on the screen."""

    id: int
    title: str
    box: Box

    @property
    def center(self) -> tuple[int, int]:
        left, top, width, height = self.box
        return left + width // 2, top + height // 2


class DesktopService:
    """One display per worker process, leased to one desktop step at a time.

    ``open(ctx)`` returns the step's :class:`Desktop`; ``close(ctx, desktop,
    error)`` records evidence when ``error`` is set, stops the programs the
    step started and releases the lease. :meth:`shutdown` stops this worker's
    Xvfb (the worker calls it when it stops).
    """

    def __init__(self, settings: Settings | None = None) -> None:
        from hub.settings import Settings

        settings = settings or Settings()
        self.mode = settings.desktop_display.strip()
        self.size = parse_size(settings.desktop_size) if settings.desktop_size else None
        self.lease_timeout = settings.desktop_lease_timeout
        self.timeout = settings.desktop_timeout
        self.xvfb: Xvfb | None = None
        self._x: Any = None  # this service's own Xlib connection
        self._x_name: str | None = None
        self._fresh = False  # our Xvfb started again since PyAutoGUI last connected
        #: health checks run so far, and the Xvfb starts (for tests and logs)
        self.checks = 0

    # --------------------------------------------------------------- service
    def open(self, ctx: StepContext) -> Desktop:
        name = self._display()
        lease = Lease(name)
        try:
            lease.acquire(self.lease_timeout)
        except DisplayBusy as exc:
            raise TransientError(str(exc)) from exc
        try:
            self._healthy(name)
            gui = _pyautogui(name, own=self.xvfb is not None, fresh=self._fresh)
            self._fresh = False
        except BaseException:
            lease.release()
            raise
        return Desktop(ctx, self, name, gui, lease)

    def close(self, ctx: StepContext, resource: Any, error: BaseException | None) -> None:
        desktop: Desktop = resource
        try:
            if error is not None:
                desktop.leave_evidence()
        finally:
            try:
                desktop.stop_programs()
            finally:
                desktop.lease.release()

    def shutdown(self) -> None:
        """Stop this worker's Xvfb, if it started one."""
        self._disconnect()
        if self.xvfb is not None:
            self.xvfb.remove()

    # --------------------------------------------------------------- display
    def _display(self) -> str:
        if self.mode == "auto" and os.environ.get("DISPLAY") and self.xvfb is None:
            return os.environ["DISPLAY"]
        if self.mode in ("auto", "xvfb"):
            if self.xvfb is None:
                self.xvfb = Xvfb(self.size or (1024, 768))
            if not self.xvfb.alive():
                if self.xvfb.number is not None:
                    log.warning(
                        "the Xvfb %s of this worker died; starting it again", self.xvfb.name
                    )
                self._disconnect()
                self.xvfb.start()
                self._fresh = True  # PyAutoGUI's connection is to the server that died
            # this process's X clients (PyAutoGUI, Pillow, the programs a step starts) show
            # the cookie of our own server
            os.environ["XAUTHORITY"] = str(self.xvfb.auth)
            return self.xvfb.name
        if not re.fullmatch(r"[\w.-]*:\d+(?:\.\d+)?", self.mode):
            raise DisplayError(
                f"HUB_DESKTOP_DISPLAY={self.mode!r} is not a display: use auto, xvfb or :N"
            )
        return self.mode

    def xlib(self, name: str) -> Any:
        """This service's own X connection to ``name`` (for window titles)."""
        if self._x is None or self._x_name != name:
            self._disconnect()
            try:
                self._x = _connect(name)
            except Exception as exc:
                raise TransientError(
                    f"display {name} cannot be reached ({type(exc).__name__}: {exc}): is its "
                    "X server running, and may this user connect to it (XAUTHORITY)?"
                ) from exc
            self._x_name = name
        return self._x

    def _disconnect(self) -> None:
        x, self._x, self._x_name = self._x, None, None
        if x is not None:
            with contextlib.suppress(Exception):
                x.close()

    def _healthy(self, name: str) -> None:
        """Reachable, the expected size, not black; once more after restarting our Xvfb."""
        self.checks += 1
        try:
            self._check(name)
        except TransientError:
            if self.xvfb is None:
                raise
            log.warning("display %s failed its health check; starting it again", name)
            self._disconnect()
            self.xvfb.stop()
            self.xvfb.start()
            self._fresh = True
            self._check(name)

    def _check(self, name: str) -> None:
        try:
            screen = self.xlib(name).screen()
            size = (screen.width_in_pixels, screen.height_in_pixels)
        except TransientError:
            raise
        except Exception as exc:  # the connection broke: reconnect on the next try
            self._disconnect()
            raise TransientError(f"display {name} cannot be reached: {exc}") from exc
        expected = self.size
        if expected is not None and size != expected:
            raise TransientError(
                f"display {name} is {size[0]}x{size[1]}, not the expected "
                f"{expected[0]}x{expected[1]}: bots click by position and would miss; set "
                f"the display to that size, or HUB_DESKTOP_SIZE={size[0]}x{size[1]} if the "
                "bots were made for it"
            )
        _, highest = grab(name).convert("L").getextrema()
        if highest < BLACK:
            raise TransientError(
                f"the screen of display {name} is black: a screen saver, a locked session or "
                "a dead display; a bot would type into nothing"
            )

    # ----------------------------------------------------------------- titles
    def windows(self, name: str) -> list[Window]:
        """The viewable top-level windows with a title, bottom to top."""
        try:
            return _windows(self.xlib(name))
        except TransientError:
            raise
        except Exception as exc:
            self._disconnect()
            raise TransientError(f"display {name} stopped answering: {exc}") from exc

    def active_title(self, name: str) -> str | None:
        """The title of the window with the keyboard focus (or the top one)."""
        x = self.xlib(name)
        try:
            focus = x.get_input_focus().focus
            while isinstance(focus, object) and hasattr(focus, "query_tree"):
                title = _title(x, focus)
                if title:
                    return title
                parent = focus.query_tree().parent
                if not parent or parent.id == x.screen().root.id:
                    break
                focus = parent
        except Exception:  # focus on a window that went away: fall back to the top one
            log.debug("reading the focused window of %s", name, exc_info=True)
        shown = self.windows(name)
        return shown[-1].title if shown else None


class Desktop:
    """``ctx.desktop``: drive the leased display with PyAutoGUI, read its windows.

    Coordinates are screen pixels. Waits default to ``HUB_DESKTOP_TIMEOUT``
    seconds. Each action is recorded with ``ctx.evidence.action`` (never a
    secret). Errors are the hub's: a window or image still missing after
    waiting is :class:`~bots.base.UnexpectedScreen` (straight to review, with
    the screenshot); see :meth:`expect` for classifying what the program says.
    """

    def __init__(
        self, ctx: StepContext, service: DesktopService, name: str, gui: Any, lease: Lease
    ) -> None:
        self.ctx = ctx
        self.display = name
        self.gui = gui
        self.lease = lease
        self._service = service
        self.timeout = service.timeout
        #: fields that hold a secret, and the title of the window they were typed into
        self.secret_boxes: list[tuple[Box, str | None]] = []
        self.programs: list[subprocess.Popen[bytes]] = []

    # ---------------------------------------------------------------- screen
    @property
    def size(self) -> tuple[int, int]:
        width, height = self.gui.size()
        return int(width), int(height)

    def screenshot(self, region: Box | None = None, *, masked: bool = True) -> bytes:
        """The screen (or ``region``) as PNG, secret fields painted over unless ``masked=False``."""
        image = grab(self.display)
        if masked and self.secret_boxes:
            titles = {w.title for w in self.windows()}
            image = _masked(image, [box for box, title in self.secret_boxes if title in titles])
        if region is not None:
            left, top, width, height = region
            image = image.crop((left, top, left + width, top + height))
        out = io.BytesIO()
        image.save(out, format="PNG")
        return out.getvalue()

    def find(
        self,
        image: str | Path | bytes | Any,
        *,
        confidence: float = 0.9,
        region: Box | None = None,
        grayscale: bool = False,
    ) -> Box | None:
        """Where ``image`` (a file, PNG bytes or a Pillow image) is on the screen now, or None.

        ``confidence`` below 1 finds it among small differences (anti-aliasing, a
        cursor); OpenCV does the matching, in grey when ``grayscale`` (faster, but
        blind to colour). An image of one flat colour matches anywhere: crop one
        with some edges in it."""
        import pyscreeze

        needle = _image(image)
        haystack = grab(self.display)
        try:
            box = pyscreeze.locate(
                needle, haystack, confidence=confidence, grayscale=grayscale, region=region
            )
        except pyscreeze.ImageNotFoundException:
            return None
        except NotImplementedError as exc:  # no OpenCV: confidence is not available
            raise RuntimeError(INSTALL + " (OpenCV finds images with a confidence)") from exc
        if box is None:
            return None
        return int(box.left), int(box.top), int(box.width), int(box.height)

    def locate(
        self,
        image: str | Path | bytes | Any,
        *,
        confidence: float = 0.9,
        region: Box | None = None,
        timeout: float | None = None,
    ) -> Box:
        """Wait for ``image`` on the screen; :class:`UnexpectedScreen` when it never shows."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            box = self.find(image, confidence=confidence, region=region)
            if box is not None:
                return box
            if time.monotonic() >= deadline:
                what = image if isinstance(image, (str, Path)) else "the image"
                raise UnexpectedScreen(
                    f"{what} did not show on the screen within "
                    f"{self.timeout if timeout is None else timeout:g} s "
                    f"(confidence {confidence})"
                )
            time.sleep(0.1)

    # --------------------------------------------------------------- windows
    def windows(self) -> list[Window]:
        """The open top-level windows with a title, bottom to top."""
        return self._service.windows(self.display)

    @property
    def active_title(self) -> str | None:
        """The title of the active window (the one with the keyboard focus)."""
        return self._service.active_title(self.display)

    def window(self, title: str, *, timeout: float | None = None) -> Window:
        """Wait for a window whose title matches the regular expression ``title``."""
        return self.expect(title, timeout=timeout)

    def expect(
        self,
        title: str,
        *,
        business: str | None = None,
        transient: str | None = None,
        timeout: float | None = None,
    ) -> Window:
        """Wait for a window titled like ``title`` (a regular expression, searched).

        Meanwhile a window titled like ``business`` (e.g. ``^Error$``: the
        program refused the input) raises :class:`~hub.errors.BusinessError`
        at once, and one like ``transient`` (``busy``) a
        :class:`~hub.errors.TransientError`; neither is retried by waiting
        longer. Nothing by the deadline: :class:`UnexpectedScreen`.
        """
        limit = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        wanted = re.compile(title)
        refused = re.compile(business) if business else None
        busy = re.compile(transient) if transient else None
        while True:
            shown = self.windows()
            for window in reversed(shown):  # the top one first
                if refused is not None and refused.search(window.title):
                    raise BusinessError(
                        f"the program showed the window {window.title!r} instead of "
                        f"{title!r}; see the screenshot"
                    )
                if busy is not None and busy.search(window.title):
                    raise TransientError(f"the program showed {window.title!r}")
                if wanted.search(window.title):
                    self.ctx.evidence.window(window.title)
                    return window
            if time.monotonic() >= deadline:
                titles = ", ".join(repr(w.title) for w in shown) or "none"
                raise UnexpectedScreen(
                    f"no window titled like {title!r} within {limit:g} s; open windows: {titles}"
                )
            time.sleep(0.05)

    def wait_gone(self, title: str, *, timeout: float | None = None) -> None:
        """Wait until no window's title matches ``title``."""
        limit = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        pattern = re.compile(title)
        while any(pattern.search(w.title) for w in self.windows()):
            if time.monotonic() >= deadline:
                raise UnexpectedScreen(f"the window {title!r} is still open after {limit:g} s")
            time.sleep(0.05)

    def focus(self, title: str, *, timeout: float | None = None) -> Window:
        """Raise the window titled like ``title`` and give it the keyboard focus."""
        window = self.window(title, timeout=timeout)
        from Xlib import X

        x = self._service.xlib(self.display)
        handle = x.create_resource_object("window", window.id)
        handle.configure(stack_mode=X.Above)
        handle.set_input_focus(X.RevertToParent, X.CurrentTime)
        x.sync()
        self.ctx.evidence.action(f"focused {window.title!r}")
        return window

    # -------------------------------------------------------------- programs
    def start(
        self,
        command: Sequence[str],
        *,
        window: str | None = None,
        cwd: str | Path | None = None,
        env: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start a program on this display; wait for its ``window`` when given.

        The program is stopped when the step ends (its whole process group), and
        when the worker process dies.
        Its output goes to a file whose tail becomes evidence if it exits early.
        """
        environment = dict(os.environ if env is None else env, DISPLAY=self.display)
        output = tempfile.TemporaryFile()  # noqa: SIM115 - closed by stop_programs
        try:
            program = subprocess.Popen(
                list(command),
                cwd=cwd,
                env=environment,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent,  # a killed worker leaves no program behind
            )
        except OSError as exc:
            raise BusinessError(f"could not start {command[0]!r}: {exc}") from exc
        program._hub_output = output  # type: ignore[attr-defined]
        self.programs.append(program)
        self.ctx.evidence.action(f"started {Path(command[0]).name}")
        if window is not None:
            try:
                self.window(window, timeout=timeout)
            except UnexpectedScreen:
                if program.poll() is not None:
                    raise BusinessError(
                        f"{command[0]!r} exited with status {program.returncode} before "
                        f"showing {window!r}: {_tail(output)}"
                    ) from None
                raise
        return program

    def stop_programs(self) -> None:
        """Stop what :meth:`start` started (SIGTERM to the process group, then SIGKILL)."""
        while self.programs:
            program = self.programs.pop()
            if program.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(program.pid, signal.SIGTERM)
                try:
                    program.wait(5)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(program.pid, signal.SIGKILL)
                    program.wait(5)
            output = getattr(program, "_hub_output", None)
            if output is not None:
                output.close()

    # ----------------------------------------------------------------- input
    def click(
        self,
        x: int | None = None,
        y: int | None = None,
        *,
        image: str | Path | bytes | Any = None,
        confidence: float = 0.9,
        clicks: int = 1,
        button: str = "left",
    ) -> None:
        """Click at (x, y), or in the middle of ``image`` once it is on the screen."""
        if image is not None:
            left, top, width, height = self.locate(image, confidence=confidence)
            x, y = left + width // 2, top + height // 2
            what = f"{image}" if isinstance(image, (str, Path)) else "the image"
        elif x is None or y is None:
            raise TypeError("click needs x and y, or image=")
        else:
            what = f"({x}, {y})"
        self.gui.click(x, y, clicks=clicks, button=button)
        self.ctx.evidence.action(f"clicked {what}")

    def type(self, text: str, *, interval: float = 0.0) -> None:
        """Type ``text`` key by key into the focused field."""
        self.gui.write(text, interval=interval)
        self.ctx.evidence.action(f"typed {text!r}")

    def type_secret(self, text: str, *, field: Box | None = None, interval: float = 0.0) -> None:
        """Type a secret key by key (never through the clipboard). The value is masked
        in evidence and logs; ``field`` (left, top, width, height) is painted over in
        screenshots for as long as the window it was typed into shows the same title."""
        self.ctx.evidence.mask(text)
        if field is not None:
            self.secret_boxes.append((field, self.active_title))
        self.gui.write(text, interval=interval)
        self.ctx.evidence.action("typed a secret")

    def press(self, *keys: str) -> None:
        """Press and release each key in turn (``"enter"``, ``"tab"``, ``"esc"``)."""
        self.gui.press(list(keys))
        self.ctx.evidence.action(f"pressed {' '.join(keys)}")

    def hotkey(self, *keys: str) -> None:
        """Hold the keys down together, then release them (``hotkey("ctrl", "s")``)."""
        self.gui.hotkey(*keys)
        self.ctx.evidence.action(f"pressed {'+'.join(keys)}")

    # -------------------------------------------------------------- evidence
    def leave_evidence(self) -> None:
        """What a reviewer needs: the screenshot (secrets painted over), the active
        window's title, the open windows, and the output of programs that died."""
        evidence = self.ctx.evidence
        attempts = (
            ("screenshot", lambda: evidence.screenshot(self.screenshot())),
            ("window title", lambda: evidence.window(self.active_title)),
            (
                "window list",
                lambda: evidence.note("windows", ", ".join(w.title for w in self.windows())),
            ),
        )
        for what, record in attempts:
            try:
                record()
            except Exception as exc:  # evidence is best effort: note what is missing, go on
                evidence.note(f"no {what}", f"{type(exc).__name__}: {str(exc)[:300]}")
        for program in self.programs:
            if program.poll() is not None:
                output = getattr(program, "_hub_output", None)
                name = program.args[0] if isinstance(program.args, list) else program.args
                evidence.note(
                    f"program {Path(str(name)).name}",
                    f"exited with status {program.returncode}: {_tail(output)}",
                )


# ---------------------------------------------------------------- X and PIL
def grab(name: str) -> Any:
    """The screen of display ``name`` as an RGB Pillow image (X's own, no scrot)."""
    from PIL import ImageGrab

    try:
        return ImageGrab.grab(xdisplay=name).convert("RGB")
    except OSError as exc:
        raise TransientError(f"cannot read the screen of display {name}: {exc}") from exc


def _masked(image: Any, boxes: list[Box]) -> Any:
    if not boxes:
        return image
    from PIL import ImageDraw

    image = image.copy()
    draw = ImageDraw.Draw(image)
    for left, top, width, height in boxes:
        draw.rectangle((left, top, left + width - 1, top + height - 1), fill=(0, 0, 0))
    return image


def _image(image: str | Path | bytes | Any) -> Any:
    from PIL import Image

    if isinstance(image, bytes):
        return Image.open(io.BytesIO(image)).convert("RGB")
    if isinstance(image, (str, Path)):
        try:
            return Image.open(image).convert("RGB")
        except FileNotFoundError:
            raise FileNotFoundError(
                f"the image {str(image)!r} to find on the screen does not exist"
            ) from None
    return image


def _windows(x: Any) -> list[Window]:
    from Xlib import X

    root = x.screen().root
    found: list[Window] = []
    for child in root.query_tree().children:
        try:
            if child.get_attributes().map_state != X.IsViewable:
                continue
            title = _title(x, child)
            if not title:
                continue
            geometry = child.get_geometry()
            place = child.translate_coords(root, 0, 0)
            found.append(
                Window(child.id, title, (-place.x, -place.y, geometry.width, geometry.height))
            )
        except Exception:  # the window went away while we looked: skip it
            continue
    return found


def _title(x: Any, window: Any) -> str | None:
    net = window.get_full_property(x.intern_atom("_NET_WM_NAME"), x.intern_atom("UTF8_STRING"))
    if net is not None and net.value:
        value = net.value
        return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    name = window.get_wm_name()
    if isinstance(name, bytes):
        return name.decode("latin-1")
    return name or None


def _tail(output: Any) -> str:
    if output is None:
        return ""
    try:
        output.seek(0)
        return output.read()[-600:].decode(errors="replace").strip()
    except (OSError, ValueError):
        return ""


def _pyautogui(name: str, *, own: bool, fresh: bool = False) -> Any:
    """PyAutoGUI bound to display ``name``: imported here, with DISPLAY set, the first time."""
    os.environ["DISPLAY"] = name
    os.environ.setdefault("XDG_SESSION_TYPE", "x11")
    try:
        with _library_noise():
            import pyautogui
    except ImportError as exc:
        raise RuntimeError(INSTALL) from exc
    except Exception as exc:  # Xlib could not connect while PyAutoGUI was imported
        raise TransientError(f"display {name} cannot be reached: {exc}") from exc
    pyautogui.PAUSE = PAUSE
    # the fail-safe (pointer in a corner stops the bot) is for a person at a real screen
    pyautogui.FAILSAFE = not own
    if fresh or _bound_to(pyautogui) != name:
        try:
            _reconnect(pyautogui, name)
        except Exception as exc:
            raise TransientError(f"display {name} cannot be reached: {exc}") from exc
    return pyautogui


def _bound_to(gui: Any) -> str | None:
    backend = getattr(gui, "platformModule", None)
    x = getattr(backend, "_display", None)
    return str(x.get_display_name()) if x is not None else None


def _reconnect(gui: Any, name: str) -> None:
    """Point PyAutoGUI's X connection at ``name`` again (after its server restarted)."""
    backend = getattr(gui, "platformModule", None)
    if backend is None or not hasattr(backend, "_display"):
        return
    with contextlib.suppress(Exception):
        backend._display.close()
    backend._display = _connect(name)


def _connect(name: str) -> Any:
    """A python-xlib connection to display ``name``."""
    from Xlib.display import Display

    host, _, rest = name.rpartition(":")
    if host in ("", "unix"):
        # ask the server's socket first: python-xlib leaks the socket of a failed connect
        number = rest.split(".")[0]
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(f"/tmp/.X11-unix/X{number}")
            except OSError as exc:
                raise TransientError(
                    f"display {name} cannot be reached: no X server listens on "
                    f"/tmp/.X11-unix/X{number} ({exc.strerror})"
                ) from None
    with _library_noise():
        return Display(name)


@contextlib.contextmanager
def _library_noise() -> Iterator[None]:
    """Hide the ResourceWarnings of python-xlib (it never closes the Xauthority file it
    reads) and PyScreeze (pipes of its import-time probes): theirs to fix, not ours."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        yield
