"""The legacy desktop program behaves as its docstring says, under a real X server.

Each test starts the program under Xvfb and drives it with real X input
(``xdotool``: pointer moves, clicks, key presses), clicking by the
coordinates of its fixed layout, as a coordinate-based bot does. It reads
the program's log and records files and the screen's pixels (``xwd``). The
Debian packages xvfb, xdotool and x11-apps provide the three tools; a test
skips locally without them and fails under CI.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CI, ROOT, need

try:
    import tkinter  # noqa: F401 - the program needs Tk
except ImportError:
    if CI:
        raise
    pytest.skip("this Python has no tkinter (Debian: python3-tk)", allow_module_level=True)

from tests.sandbox.legacy_desktop import ERROR_BOX, LAYOUT, WINDOW, center, check, next_number

TOOLS = {"Xvfb": "xvfb", "xdotool": "xdotool", "xwd": "x11-apps"}
SCREEN = (1024, 768)
OUTPUT = ROOT / "test-output"
WAIT = 30.0  # seconds to wait for the program before the test fails
Pixels = list[list[tuple[int, int, int]]]


@pytest.fixture(scope="module")
def display(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fresh Xvfb on a free display number (``:N``), 1024x768, 24 bits."""
    for tool, package in TOOLS.items():
        if shutil.which(tool) is None:
            need(tool, f"{tool} is missing; apt-get install {package}")
    errors = tmp_path_factory.mktemp("xvfb") / "stderr"
    read, write = os.pipe()
    # -noreset: no server reset when the last client leaves, which refuses connections meanwhile
    command = ["Xvfb", "-displayfd", str(write), "-nolisten", "tcp", "-noreset"]
    command += ["-screen", "0", f"{SCREEN[0]}x{SCREEN[1]}x24"]
    with errors.open("wb") as err:
        server = subprocess.Popen(command, pass_fds=[write], stdout=subprocess.DEVNULL, stderr=err)
    os.close(write)
    with os.fdopen(read) as numbers:
        number = numbers.readline().strip()  # empty when Xvfb ended without a display
    if not number:
        server.wait(10)
        pytest.fail(f"Xvfb did not start: {errors.read_text()}", pytrace=False)
    yield f":{number}"
    server.terminate()
    server.wait(10)


@dataclass
class Desktop:
    """The program in its own process on ``display``, and the tools to drive and watch it."""

    display: str
    records: Path
    log: Path
    process: subprocess.Popen[bytes]

    def xdo(self, *args: str, check: bool = True) -> str:
        env = dict(os.environ, DISPLAY=self.display)
        try:
            done = subprocess.run(
                ["xdotool", *args], env=env, capture_output=True, text=True, timeout=WAIT
            )
        except subprocess.TimeoutExpired:
            log = self.log.read_text() if self.log.exists() else ""
            pytest.fail(
                f"xdotool {' '.join(args)} waited {WAIT} s; program log: {log}", pytrace=False
            )
        if check and done.returncode != 0:
            pytest.fail(f"xdotool {' '.join(args)}: {done.stderr}", pytrace=False)
        return done.stdout.strip()

    def window(self, pattern: str) -> str:
        """The name of the window whose name matches ``pattern``, once it is there."""
        window = self.xdo("search", "--sync", "--name", pattern).splitlines()[0]
        return self.xdo("getwindowname", window)

    def click(self, name: str) -> None:
        x, y = center(name)
        self.xdo("mousemove", str(x), str(y), "click", "1")

    def type(self, text: str) -> None:
        self.xdo("type", "--delay", "10", text)

    def key(self, *keys: str) -> None:
        self.xdo("key", *keys)

    def fill(self, **fields: str) -> None:
        for name, text in fields.items():
            self.click(name)
            self.type(text)

    def log_in(self, user: str = "clerk", password: str = "secret") -> None:
        self.window("^Order Entry .+ Login$")
        self.fill(user=user, password=password)
        self.click("login")

    def wait_for(self, line: str) -> list[str]:
        """The log's lines once ``line`` is among them."""
        deadline = time.monotonic() + WAIT
        while True:
            lines = self.log.read_text(encoding="utf-8").splitlines() if self.log.exists() else []
            if line in lines:
                return lines
            if self.process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the program never logged {line!r}; it logged {lines}", pytrace=False)
            time.sleep(0.05)

    def wait_gone(self, pattern: str) -> None:
        deadline = time.monotonic() + WAIT
        while self.xdo("search", "--name", pattern, check=False):
            if time.monotonic() > deadline:
                pytest.fail(f"a window {pattern!r} is still open", pytrace=False)
            time.sleep(0.05)

    def saved(self) -> list[dict[str, Any]]:
        if not self.records.exists():
            return []
        return [json.loads(line) for line in self.records.read_text(encoding="utf-8").splitlines()]

    def screenshot(self, name: str | None = None) -> Pixels:
        """The screen's pixels as rows of (r, g, b); saved to test-output/NAME.png when named."""
        env = dict(os.environ, DISPLAY=self.display)
        raw = subprocess.run(
            ["xwd", "-root", "-silent"], env=env, capture_output=True, check=True, timeout=WAIT
        ).stdout
        pixels = parse_xwd(raw)
        if name is not None:
            OUTPUT.mkdir(exist_ok=True)
            (OUTPUT / f"{name}.png").write_bytes(png(pixels))
        return pixels


@pytest.fixture
def desktop(display: str, tmp_path: Path) -> Iterator[Desktop]:
    records, log = tmp_path / "orders.jsonl", tmp_path / "program.log"
    command = [sys.executable, "-m", "tests.sandbox.legacy_desktop", "--records", str(records)]
    process = subprocess.Popen(
        [*command, "--log", str(log)], cwd=ROOT, env=dict(os.environ, DISPLAY=display)
    )
    yield Desktop(display, records, log, process)
    process.terminate()
    process.wait(10)


# ------------------------------------------------------------ the screen
def parse_xwd(raw: bytes) -> Pixels:
    """Rows of (r, g, b) from an X window dump of a 24/32-bit TrueColor screen."""
    fields = struct.unpack(">25I", raw[:100])
    header_size, pixmap_format, width, height = fields[0], fields[2], fields[4], fields[5]
    byte_order, bits_per_pixel, bytes_per_line, colors = (
        fields[7],
        fields[11],
        fields[12],
        fields[19],
    )
    assert (pixmap_format, bits_per_pixel) == (2, 32), fields
    start = header_size + colors * 12
    order = "<" if byte_order == 0 else ">"
    rows = []
    for y in range(height):
        line = raw[start + y * bytes_per_line : start + y * bytes_per_line + width * 4]
        values = struct.unpack(f"{order}{width}I", line)
        rows.append([(v >> 16 & 255, v >> 8 & 255, v & 255) for v in values])
    return rows


def png(pixels: Pixels) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    height, width = len(pixels), len(pixels[0])
    data = b"".join(b"\0" + bytes(c for p in row for c in p) for row in pixels)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(data)) + chunk(b"IEND", b"")  # fmt: skip


def colours(pixels: Pixels, box: tuple[int, int, int, int]) -> set[tuple[int, int, int]]:
    x, y, width, height = box
    return {p for row in pixels[y : y + height] for p in row[x : x + width]}


# ----------------------------------------------------------------- tests
def test_the_window_has_its_fixed_size_place_and_title(desktop: Desktop) -> None:
    name = desktop.window("^Order Entry .+ Login$")
    window = desktop.xdo("search", "--name", "^Order Entry").splitlines()[0]
    geometry = desktop.xdo("getwindowgeometry", window)
    desktop.wait_for("screen Login")
    pixels = desktop.screenshot("legacy-desktop-login")

    assert name == "Order Entry — Login"
    assert "Position: 0,0" in geometry and "Geometry: 640x480" in geometry
    assert len(pixels) == SCREEN[1] and len(pixels[0]) == SCREEN[0]
    assert colours(pixels, (WINDOW[0], 0, SCREEN[0] - WINDOW[0], SCREEN[1])) == {(0, 0, 0)}
    assert len(colours(pixels, (0, 0, WINDOW[0], WINDOW[1]))) > 2  # drawn, not black


def test_a_wrong_password_opens_the_modal_error_box_and_ok_closes_it(desktop: Desktop) -> None:
    desktop.log_in(password="wrong")

    assert desktop.window("^Error$") == "Error"
    desktop.wait_for("error Invalid user name or password.")
    pixels = desktop.screenshot("legacy-desktop-error")
    x, y = center("error_ok")
    caption = LAYOUT["error_caption"]
    assert pixels[ERROR_BOX[3] + 10][ERROR_BOX[2] + caption[2] // 2] == (0, 0, 128)
    desktop.click("user")  # behind the modal box: the field takes no input
    desktop.type("x")
    desktop.xdo("mousemove", str(x), str(y), "click", "1")
    desktop.wait_for("error closed")
    desktop.wait_gone("^Error$")
    assert desktop.window("^Order Entry .+ Login$") == "Order Entry — Login"
    desktop.type("secret")  # the user name stays; the cursor is back in the emptied password
    desktop.key("Return")
    assert desktop.window("^Order Entry .+ New order$") == "Order Entry — New order"


def test_an_order_typed_in_is_saved_as_a_json_line(desktop: Desktop) -> None:
    desktop.log_in()
    desktop.window("^Order Entry .+ New order$")
    desktop.fill(reference="REF-7", customer="Otto Metallbau GmbH", postal_code="80331")
    desktop.fill(amount="1234,5")
    desktop.screenshot("legacy-desktop-form")
    desktop.click("save")
    desktop.wait_for("saved order 1")
    # the form is empty again, with the cursor in Reference: keys alone make the second
    desktop.type("REF-8")
    for text in ("Bauer & Soehne KG", "10115", "19.99"):
        desktop.key("Tab")
        desktop.type(text)
    desktop.key("Return")

    desktop.wait_for("saved order 2")
    desktop.screenshot("legacy-desktop-saved")
    first, second = desktop.saved()
    assert {k: first[k] for k in ("number", "reference", "customer", "postal_code", "amount")} == {
        "number": 1,
        "reference": "REF-7",
        "customer": "Otto Metallbau GmbH",
        "postal_code": "80331",
        "amount": "1234.50",
    }
    assert (second["number"], second["reference"], second["customer"]) == (2, "REF-8", "Bauer & Soehne KG")  # fmt: skip
    assert (second["postal_code"], second["amount"], second["user"]) == ("10115", "19.99", "clerk")


def test_find_says_in_the_title_whether_the_reference_is_there(desktop: Desktop) -> None:
    desktop.log_in()
    desktop.window("^Order Entry .+ New order$")
    desktop.fill(reference="REF-3")
    desktop.click("find")
    assert desktop.window("No order REF-3$").endswith("No order REF-3")
    desktop.wait_for("not found REF-3")
    desktop.fill(customer="Otto Metallbau GmbH", postal_code="80331", amount="12")
    desktop.click("save")
    assert desktop.window("Order 1 saved$").endswith("Order 1 saved")
    desktop.fill(reference="REF-3")
    desktop.click("find")
    assert desktop.window("Order 1 found$").endswith("Order 1 found")
    assert desktop.wait_for("found order 1")[-1] == "found order 1"
    assert len(desktop.saved()) == 1


def test_a_bad_postal_code_saves_nothing_and_returns_to_the_field(desktop: Desktop) -> None:
    desktop.log_in()
    desktop.window("^Order Entry .+ New order$")
    desktop.fill(reference="REF-9", customer="Bäckerei Lorenz", postal_code="1234", amount="5")
    desktop.click("save")

    desktop.window("^Error$")
    desktop.wait_for("error Postal code 1234 is not valid")
    assert desktop.saved() == []
    desktop.key("Return")  # closes the box; the cursor is back in Postal code
    desktop.wait_for("error closed")
    desktop.key("End", "BackSpace", "BackSpace", "BackSpace", "BackSpace")
    desktop.type("04109")
    desktop.click("save")

    desktop.wait_for("saved order 1")
    [order] = desktop.saved()
    assert (order["reference"], order["customer"], order["postal_code"]) == (
        "REF-9",
        "Bäckerei Lorenz",
        "04109",
    )


# ------------------------------------------------------- without a display
def test_the_checks_name_the_first_bad_field() -> None:
    good = {"reference": "R", "customer": "C", "postal_code": "12345", "amount": "1,5"}

    assert check(good) is None
    assert check(good | {"postal_code": "1234"}) == ("postal_code", "Postal code 1234 is not valid")
    assert check(good | {"postal_code": "1234a"}) == ("postal_code", "Postal code 1234a is not valid")  # fmt: skip
    assert check(good | {"amount": "0"}) == ("amount", "Amount 0 is not valid")
    assert check(good | {"reference": "", "amount": "x"}) == ("reference", "Reference is required")


def test_order_numbers_go_on_from_the_records_file(tmp_path: Path) -> None:
    records = tmp_path / "orders.jsonl"
    assert next_number(records) == 1
    records.write_text('{"number": 15}\n{"number": 16}\n', encoding="utf-8")
    assert next_number(records) == 17
