"""X displays for desktop bots: a worker's own Xvfb, and an exclusive lease on a display.

A desktop bot moves the one pointer and types into the one keyboard focus of
its display, so two bots on one display would type into each other's
windows. :class:`Lease` makes that impossible: a step holds an exclusive
``flock`` on a file named after the display for as long as it runs, shared
by every process on the machine, and released by the kernel when its
process dies (a ``kill -9`` never leaves a display leased).

:class:`Xvfb` is the display a desktop worker starts for itself on a server
without a screen (``HUB_DESKTOP_DISPLAY=auto`` with no ``DISPLAY``, or
``xvfb``). Its root window is white, so a black screen means a dead or
blanked display. Xvfb is started with ``PR_SET_PDEATHSIG``: it ends with the
worker process, even one killed with ``kill -9``. It admits only clients
holding its MIT-MAGIC-COOKIE-1, written to an Xauthority file of its own
(:attr:`Xvfb.auth`; the desktop service points ``XAUTHORITY`` at it), so no
other local user can watch the screen or type into it.

Nothing here imports PyAutoGUI or needs a display to import.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import logging
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("hub.bots")

INSTALL_XVFB = "install Xvfb (Debian: apt-get install xvfb) or set HUB_DESKTOP_DISPLAY=:N"
_PR_SET_PDEATHSIG = 1


class DisplayError(RuntimeError):
    """No display for a desktop step: the message says what is missing and the fix."""


def parse_size(text: str) -> tuple[int, int]:
    """``"1024x768"`` as ``(1024, 768)``; a ``ValueError`` naming the form otherwise."""
    match = re.fullmatch(r"\s*(\d{2,5})\s*[xX]\s*(\d{2,5})\s*", text)
    if match is None:
        raise ValueError(f"a screen size is WIDTHxHEIGHT, like 1024x768, not {text!r}")
    return int(match.group(1)), int(match.group(2))


def die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """``preexec_fn`` for a child that must end with this process: SIGTERM on its death."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class Xvfb:
    """An Xvfb server owned by this process. :meth:`start` picks a free display
    number the first time and reuses it on a restart, so programs already told
    ``DISPLAY=:N`` (PyAutoGUI among them) reach the new server."""

    def __init__(self, size: tuple[int, int] = (1024, 768), *, depth: int = 24) -> None:
        self.size = size
        self.depth = depth
        self.number: int | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self._errors = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as this server
        self._folder = Path(tempfile.mkdtemp(prefix="hub-xvfb-"))
        #: the Xauthority file holding this server's cookie, for XAUTHORITY
        self.auth = self._folder / "Xauthority"
        self._cookie = os.urandom(16)

    @property
    def name(self) -> str:
        """``:N``, once started."""
        if self.number is None:
            raise DisplayError("the Xvfb of this worker has not started")
        return f":{self.number}"

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, *, within: float = 10.0) -> str:
        """Start the server (again, on the same number after it died); returns ``:N``."""
        if self.alive():
            return self.name
        binary = shutil.which("Xvfb")
        if binary is None:
            raise DisplayError(f"a desktop step needs a display and there is none: {INSTALL_XVFB}")
        width, height = self.size
        _write_cookie(self.auth, self.number or 0, self._cookie)  # the server reads it at start
        command = [binary, "-nolisten", "tcp", "-noreset", "-wr", "-auth", str(self.auth)]
        command += ["-screen", "0", f"{width}x{height}x{self.depth}"]
        self._errors.seek(0)
        self._errors.truncate()
        if self.number is None:
            read, write = os.pipe()
            try:
                self.process = subprocess.Popen(
                    [*command, "-displayfd", str(write)],
                    pass_fds=[write],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=self._errors,
                    preexec_fn=die_with_parent,
                )
            finally:
                os.close(write)
            number = _read_number(read, within)
            if number is None:
                raise DisplayError(f"Xvfb did not start: {self._stderr() or 'no display number'}")
            self.number = number
            _write_cookie(self.auth, number, self._cookie)  # for clients: now with the number
        else:
            self.process = subprocess.Popen(
                [binary, self.name, *command[1:]],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=self._errors,
                preexec_fn=die_with_parent,
            )
            _wait_for_socket(self.number, self.process, within, self._stderr)
        log.info("started Xvfb %s (%dx%d) as process %d", self.name, width, height, self.pid)
        return self.name

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)

    def remove(self) -> None:
        """Stop the server and delete its Xauthority file."""
        self.stop()
        self._errors.close()
        shutil.rmtree(self._folder, ignore_errors=True)

    def _stderr(self) -> str:
        self._errors.seek(0)
        return self._errors.read().decode(errors="replace").strip()[-500:]


def _write_cookie(path: Path, number: int, cookie: bytes) -> None:
    """An Xauthority file with one entry: this host, display ``number``, ``cookie``."""

    def counted(data: bytes) -> bytes:
        return struct.pack(">H", len(data)) + data

    family_local = 256
    entry = struct.pack(">H", family_local) + counted(socket.gethostname().encode())
    entry += counted(str(number).encode()) + counted(b"MIT-MAGIC-COOKIE-1") + counted(cookie)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(entry)


def _read_number(read: int, within: float) -> int | None:
    import select

    with os.fdopen(read) as numbers:
        ready, _, _ = select.select([numbers], [], [], within)
        line = numbers.readline().strip() if ready else ""
    return int(line) if line.isdigit() else None


def _wait_for_socket(
    number: int, process: subprocess.Popen[bytes], within: float, errors: Callable[[], str]
) -> None:
    """Wait until the server accepts connections (a dead server's socket file may linger)."""
    path = f"/tmp/.X11-unix/X{number}"
    deadline = time.monotonic() + within
    while True:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(path)
                return
            except OSError:
                pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise DisplayError(f"Xvfb :{number} did not start again: {errors()}")
        time.sleep(0.02)


def display_number(name: str) -> int:
    """The N of ``:N``, ``:N.S`` or ``host:N``; a ``DisplayError`` for anything else."""
    match = re.fullmatch(r"[\w.-]*:(\d+)(?:\.\d+)?", name.strip())
    if match is None:
        raise DisplayError(f"{name!r} is not an X display name; use :N, like :0 or :99")
    return int(match.group(1))


class Lease:
    """An exclusive hold on display ``name`` for one step, across processes.

    ``acquire(timeout)`` waits for the display, then holds it until
    :meth:`release` (or the process ends). Raises :class:`DisplayBusy` when
    another step keeps it longer than ``timeout`` seconds.
    """

    def __init__(self, name: str, folder: Path | None = None) -> None:
        self.name = name
        folder = folder or Path(tempfile.gettempdir())
        self.path = folder / f"hub-display-{display_number(name)}.lease"
        self._file: int | None = None

    @property
    def held(self) -> bool:
        return self._file is not None

    def acquire(self, timeout: float) -> None:
        if self._file is not None:
            return
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = _read_holder(fd)
                    os.close(fd)
                    raise DisplayBusy(
                        f"display {self.name} is leased to another desktop step{holder} and "
                        f"stayed busy for {timeout:g} s: one bot drives one display; run more "
                        "desktop workers, each with its own display, or raise "
                        "HUB_DESKTOP_LEASE_TIMEOUT"
                    ) from None
                time.sleep(0.05)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._file = fd

    def release(self) -> None:
        fd, self._file = self._file, None
        if fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


class DisplayBusy(DisplayError):
    """Another step holds the display's lease."""


def _read_holder(fd: int) -> str:
    try:
        pid = os.pread(fd, 32, 0).decode().strip()
    except OSError:
        return ""
    return f" (process {pid})" if pid.isdigit() else ""
