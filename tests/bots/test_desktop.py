"""Desktop bots on a real X display, in-process: the service starts its own Xvfb, leases it
to one step at a time and checks its health; the example flow keys orders into the legacy
Tk program once, classifies its error box, and leaves a screenshot a reviewer can use, with
no secret in it. Xvfb and Tk skip locally when missing and fail under CI."""

from __future__ import annotations

import io
import logging
import os
import random
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect, text

from bots.base import UnexpectedScreen
from bots.desktop import Desktop, DesktopService, grab
from bots.display import Lease, Xvfb
from flows.desktop_orders import FIELDS, key_order_desktop
from flows.legacy_orders import Keyed, Order
from hub import BusinessError, Flow, StepContext, TransientError, step
from hub import models as m
from hub.registry import Registry
from hub.settings import Settings
from hub.testing import LocalHub
from tests.bots.conftest import finish, succeeded
from tests.conftest import CI, ROOT, need
from tests.hub.rows import attempts_of, reviews_of, rows, step_row

try:
    import tkinter  # noqa: F401 - the legacy program needs Tk
except ImportError:
    if CI:
        raise
    pytest.skip("this Python has no tkinter (Debian: python3-tk)", allow_module_level=True)

pytestmark = pytest.mark.desktop

CANARY = "canary-Dk3!x9"
ORDER = {
    "reference": "PO-4711",
    "customer": "Albrecht Metallbau GmbH",
    "postal_code": "10115",
    "amount": "99.50",
}
LOGIN_BUTTON = (240, 260, 120, 32)


def xvfb_or_skip() -> None:
    if shutil.which("Xvfb") is None:
        need("Xvfb", "Xvfb is missing; apt-get install xvfb")


@pytest.fixture(scope="module")
def service() -> Iterator[DesktopService]:
    """One desktop worker's service with its own Xvfb, for the tests of this module."""
    xvfb_or_skip()
    saved = {k: os.environ.get(k) for k in ("DISPLAY", "XAUTHORITY")}
    made = DesktopService(Settings(desktop_display="xvfb", desktop_timeout=10))
    yield made
    made.shutdown()
    for key, value in saved.items():  # the service points this process at its display
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def program(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The legacy program's records file; the example flow starts it with the canary password."""
    records = tmp_path / "orders.jsonl"
    command = [sys.executable, "-m", "tests.sandbox.legacy_desktop", "--records", str(records)]
    command += ["--password", CANARY, "--log", str(tmp_path / "program.log")]
    monkeypatch.setenv("ORDER_ENTRY_COMMAND", " ".join(command))
    monkeypatch.setenv("HUB_SECRET_ORDER_ENTRY", CANARY)
    monkeypatch.chdir(ROOT)
    return records


def saved(records: Path) -> list[dict[str, Any]]:
    import json

    if not records.exists():
        return []
    return [json.loads(line) for line in records.read_text().splitlines() if line.strip()]


@step(queue="desktop", retries=2, backoff=0.1)
def key_then_lose_the_result(ctx: StepContext, order: Order) -> Keyed:
    """The example bot, whose first attempt dies after the order is saved."""
    keyed = key_order_desktop.fn(ctx, order)
    if ctx.attempt == 1:
        raise TransientError("the worker died before the result was stored")
    return keyed


@step(queue="desktop", retries=0)
def types_the_password_and_stops(ctx: StepContext, data: dict[str, Any]) -> dict[str, Any]:
    from flows.desktop_orders import LOGIN, middle, program

    desk = ctx.desktop
    desk.start(program(), window=LOGIN)
    desk.click(*middle("user"))
    desk.type("clerk")
    desk.click(*middle("password"))
    desk.type_secret(ctx.secret("order_entry"), field=FIELDS["password"])
    ctx.log.info("about to log in with %s", ctx.secret("order_entry"))
    raise BusinessError("stopped on purpose on the login screen")


FLOWS = [
    Flow("lost_result", [key_then_lose_the_result]),
    Flow("stops_on_login", [types_the_password_and_stops]),
]


@pytest.fixture
def hub(local_hub: Callable[..., LocalHub], service: DesktopService, program: Path) -> LocalHub:
    registry = Registry([*Registry.load(["flows.desktop_orders"]), *FLOWS])
    made = local_hub(registry)
    made.engine.services["desktop"] = service
    return made


def context(key: str = "probe") -> StepContext:
    return StepContext(
        run_id="r", flow="f", step=key, key=key, attempt=1, idempotency_key="k", run_input={}
    )


def image(png: bytes) -> Any:
    from PIL import Image

    return Image.open(io.BytesIO(png)).convert("RGB")


# ------------------------------------------------------------- the example bot
def test_the_example_bot_keys_an_order_and_a_second_run_finds_it_instead(
    hub: LocalHub, program: Path
) -> None:
    first = succeeded(hub, hub.start("desktop_orders", ORDER))
    again = succeeded(hub, hub.start("desktop_orders", ORDER))

    assert first["output"] == {"reference": "PO-4711", "number": 1, "created": True}
    assert again["output"] == {"reference": "PO-4711", "number": 1, "created": False}
    (order,) = saved(program)
    assert (order["customer"], order["postal_code"], order["amount"], order["user"]) == (
        "Albrecht Metallbau GmbH",
        "10115",
        "99.50",
        "clerk",
    )
    log = (program.parent / "program.log").read_text().splitlines()
    assert log.count("not found PO-4711") == 1 and log.count("found order 1") == 1


def test_an_attempt_whose_result_was_lost_is_retried_and_makes_no_second_order(
    hub: LocalHub, program: Path
) -> None:
    view = succeeded(hub, hub.start("lost_result", ORDER))

    assert view["output"] == {"reference": "PO-4711", "number": 1, "created": False}
    step_ = step_row(hub, view["id"], "key_then_lose_the_result")
    assert [a.status for a in attempts_of(hub, step_.id)] == ["failed", "succeeded"]
    assert len(saved(program)) == 1


def test_the_error_box_sends_the_step_to_review_with_the_screenshot_and_window_title(
    hub: LocalHub, program: Path
) -> None:
    view = finish(hub, hub.start("desktop_orders", {**ORDER, "postal_code": "1234"}))

    assert view["status"] == "needs_review"
    (item,) = reviews_of(hub, view["id"])
    assert item.reason == "business"
    assert "'Error'" in item.message and "saved$" in item.message
    assert step_row(hub, view["id"], "key_order_desktop").attempts == 1  # not retried
    assert saved(program) == []
    evidence = item.evidence
    assert evidence["window_title"] == "Error"
    assert "Error" in evidence["notes"]["windows"].split(", ")
    assert evidence["actions"][-2:] == ["typed '99,50'", "clicked (300, 316)"]
    assert "typed a secret" in evidence["actions"]
    (shot,) = [a for a in rows(hub, m.Artifact, run_id=view["id"]) if a.kind == "screenshot"]
    pixels = image(shot.data)
    assert pixels.size == (1024, 768)
    # the error box is on the picture: its dark-blue caption at +160+170
    assert pixels.getpixel((400, 180)) == (0, 0, 128)
    # the program ended with the step
    service = hub.engine.services["desktop"]
    assert isinstance(service, DesktopService) and service.xvfb is not None
    assert [w.title for w in service.windows(service.xvfb.name)] == []


def test_the_typed_password_is_painted_over_and_found_nowhere(
    hub: LocalHub, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    view = finish(hub, hub.start("stops_on_login", {}))

    assert view["status"] == "needs_review"
    (item,) = reviews_of(hub, view["id"])
    assert item.evidence["window_title"] == "Order Entry — Login"
    (shot,) = [a for a in rows(hub, m.Artifact, run_id=view["id"]) if a.kind == "screenshot"]
    pixels = image(shot.data)
    left, top, width, height = FIELDS["password"]
    inside = {pixels.getpixel((x, y)) for x in range(left, left + width, 7)
              for y in range(top, top + height, 5)}  # fmt: skip
    assert inside == {(0, 0, 0)}
    user = FIELDS["user"]  # the user name field, typed in the clear, is not painted over
    assert len({pixels.getpixel((x, user[1] + 14)) for x in range(user[0], user[0] + 60)}) > 1
    assert CANARY not in caplog.text
    assert "about to log in with [redacted]" in caplog.text
    with hub.store.engine.connect() as conn:
        for table in inspect(conn).get_table_names():
            for row in conn.execute(text(f'SELECT * FROM "{table}"')):
                for value in row:
                    data = value if isinstance(value, bytes) else str(value).encode()
                    assert CANARY.encode() not in data, f"the canary is in table {table}"


# ------------------------------------------------------------- the service
def test_the_worker_starts_its_own_xvfb_that_admits_only_its_cookie(
    service: DesktopService,
) -> None:
    ctx = context()
    desk = service.open(ctx)
    try:
        assert desk.size == (1024, 768)
        assert service.xvfb is not None and service.xvfb.alive()
        assert desk.display == service.xvfb.name
        assert os.environ["XAUTHORITY"] == str(service.xvfb.auth)
        assert (service.xvfb.auth.stat().st_mode & 0o777) == 0o600
    finally:
        service.close(ctx, desk, None)
    env = dict(os.environ, DISPLAY=service.xvfb.name, XAUTHORITY=os.devnull)
    probe = "import tkinter; tkinter.Tk()"
    refused = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True,
                             text=True, timeout=30)  # fmt: skip
    assert refused.returncode != 0 and "couldn't connect to display" in refused.stderr
    env["XAUTHORITY"] = str(service.xvfb.auth)
    admitted = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True,
                              text=True, timeout=30)  # fmt: skip
    assert admitted.returncode == 0, admitted.stderr


def test_an_xvfb_that_died_is_started_again_on_the_same_display(
    service: DesktopService,
) -> None:
    ctx = context()
    service.close(ctx, service.open(ctx), None)
    assert service.xvfb is not None
    name, old = service.xvfb.name, service.xvfb.process
    assert old is not None
    old.kill()
    old.wait(5)

    desk = service.open(ctx)
    try:
        assert desk.display == name and service.xvfb.pid != old.pid
        assert grab(name).size == (1024, 768)
        desk.gui.moveTo(10, 20)  # PyAutoGUI talks to the new server
        assert tuple(desk.gui.position()) == (10, 20)
    finally:
        service.close(ctx, desk, None)


def test_the_lease_keeps_a_second_bot_off_the_display(
    service: DesktopService, tmp_path: Path
) -> None:
    ctx = context()
    service.close(ctx, service.open(ctx), None)
    assert service.xvfb is not None
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from bots.display import Lease
            Lease({service.xvfb.name!r}).acquire(5)
            print("held", flush=True)
            time.sleep(60)
        """)],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        service.lease_timeout = 0.3
        with pytest.raises(TransientError, match=r"leased to another desktop step \(process \d+\)"):
            service.open(ctx)
        holder.kill()  # the kernel frees the lease of a killed process
        holder.wait(5)
        desk = service.open(ctx)
        assert desk.lease.held
        service.close(ctx, desk, None)
        assert not desk.lease.held
    finally:
        service.lease_timeout = 60
        if holder.poll() is None:
            holder.kill()
            holder.wait(5)
        if holder.stdout is not None:
            holder.stdout.close()


def test_locate_finds_an_image_with_a_confidence_and_waits_in_vain_for_a_missing_one(
    service: DesktopService, program: Path
) -> None:
    from flows.desktop_orders import LOGIN
    from flows.desktop_orders import program as command

    ctx = context()
    desk = service.open(ctx)
    try:
        desk.start(command(), window=LOGIN)
        left, top, width, height = LOGIN_BUTTON
        button = image(desk.screenshot((left, top, width, height)))
        # a little noise, as anti-aliasing or a cursor would make
        for x in range(0, width, 9):
            button.putpixel((x, height // 2), (255, 0, 0))
        assert desk.find(button, confidence=1.0) is None
        found = desk.find(button, confidence=0.8)
        assert found is not None and abs(found[0] - left) <= 2 and abs(found[1] - top) <= 2

        desk.click(image=button, confidence=0.8)  # the login button: an empty password
        desk.expect("^Error$")

        from PIL import Image

        noise = random.Random(7)
        absent = Image.new("RGB", (40, 40))
        absent.putdata([tuple(noise.randrange(256) for _ in "rgb") for _ in range(40 * 40)])
        started = time.monotonic()
        with pytest.raises(UnexpectedScreen, match=r"did not show on the screen within 0\.5 s"):
            desk.locate(absent, timeout=0.5)
        assert time.monotonic() - started >= 0.5
    finally:
        service.close(ctx, desk, None)
    assert desk.programs == []


def test_an_unexpected_window_is_named_and_a_missing_one_lists_what_is_open(
    service: DesktopService, program: Path
) -> None:
    from flows.desktop_orders import LOGIN
    from flows.desktop_orders import program as command

    ctx = context()
    desk = service.open(ctx)
    try:
        desk.start(command(), window=LOGIN)
        with pytest.raises(UnexpectedScreen, match=r"no window titled like 'Invoice' within 0.3 s; "
                           r"open windows: 'Order Entry — Login'"):  # fmt: skip
            desk.expect("Invoice", timeout=0.3)
        with pytest.raises(TransientError, match="Login"):
            desk.expect("Invoice", transient="Login$", timeout=0.3)
    finally:
        service.close(ctx, desk, None)


def test_a_program_that_exits_before_its_window_says_so(service: DesktopService) -> None:
    ctx = context()
    desk: Desktop = service.open(ctx)
    try:
        command = [sys.executable, "-c", "import sys; print('no licence'); sys.exit(3)"]
        with pytest.raises(BusinessError, match=r"exited with status 3 .*no licence"):
            desk.start(command, window="Main", timeout=1)
    finally:
        service.close(ctx, desk, None)


# ----------------------------------------------------------- health checks
@pytest.fixture
def other_display(tmp_path: Path) -> Iterator[Callable[..., str]]:
    """Start an Xvfb of the test's own (size, colour of the root) like a desktop someone
    else runs; yields a function returning its name."""
    xvfb_or_skip()
    started: list[Xvfb] = []

    def start(size: tuple[int, int] = (1024, 768), *, black: bool = False) -> str:
        server = Xvfb(size)
        name = server.start()
        if black:  # the server of a blanked or dead screen: a black root, nothing on it
            server.stop()
            server.process = subprocess.Popen(
                ["Xvfb", name, "-nolisten", "tcp", "-noreset", "-br", "-auth", str(server.auth),
                 "-screen", "0", f"{size[0]}x{size[1]}x24"],
                stderr=subprocess.DEVNULL,
            )  # fmt: skip
            deadline = time.monotonic() + 10
            while not Path(f"/tmp/.X11-unix/X{server.number}").exists():
                assert time.monotonic() < deadline, "Xvfb did not start"
                time.sleep(0.05)
        started.append(server)
        os.environ["XAUTHORITY"] = str(server.auth)
        return name

    saved = {k: os.environ.get(k) for k in ("DISPLAY", "XAUTHORITY")}
    yield start
    for server in started:
        server.remove()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def check(name: str, **settings: Any) -> BaseException | None:
    """Open a desktop service on display ``name``; the error its health check raises."""
    service = DesktopService(Settings(desktop_display=name, **settings))
    ctx = context()
    try:
        service.close(ctx, service.open(ctx), None)
    except BaseException as exc:
        return exc
    finally:
        service.shutdown()
    return None


def test_a_screen_of_another_size_than_the_bots_expect_is_refused(
    other_display: Callable[..., str],
) -> None:
    name = other_display((800, 600))

    error = check(name, desktop_size="1024x768")
    assert isinstance(error, TransientError)
    assert str(error) == (
        f"display {name} is 800x600, not the expected 1024x768: bots click by position and "
        "would miss; set the display to that size, or HUB_DESKTOP_SIZE=800x600 if the bots "
        "were made for it"
    )
    assert check(name, desktop_size="800x600") is None
    assert check(name) is None  # no size set: an outside display is not measured


def test_a_black_screen_is_refused(other_display: Callable[..., str]) -> None:
    name = other_display(black=True)

    error = check(name)
    assert isinstance(error, TransientError)
    assert "is black: a screen saver, a locked session or a dead display" in str(error)


def test_a_display_no_one_runs_is_a_clear_error(tmp_path: Path) -> None:
    xvfb_or_skip()
    free = next(n for n in range(400, 500) if not Path(f"/tmp/.X11-unix/X{n}").exists())
    error = check(f":{free}")
    assert isinstance(error, TransientError)
    assert f"display :{free} cannot be reached" in str(error)


def test_a_bad_display_setting_says_what_is_allowed() -> None:
    with pytest.raises(ValueError, match="a screen size is WIDTHxHEIGHT, like 1024x768"):
        Settings(desktop_size="big")
    error = check("screen-one")
    assert error is not None and "use auto, xvfb or :N" in str(error)


def test_importing_the_hub_bots_and_flows_never_imports_pyautogui() -> None:
    probe = (
        "import sys, hub, bots.desktop, bots.display, flows.desktop_orders; "
        "print('pyautogui' in sys.modules, 'Xlib' in sys.modules, 'PIL' in sys.modules)"
    )
    env = {k: v for k, v in os.environ.items() if k != "DISPLAY"}
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60, check=True)  # fmt: skip
    assert done.stdout.split() == ["False", "False", "False"]


def test_a_lease_is_per_display_number() -> None:
    assert Lease(":7").path == Lease("localhost:7.0").path != Lease(":8").path


def test_the_example_bots_recorded_positions_match_the_programs_layout() -> None:
    from tests.sandbox.legacy_desktop import LAYOUT

    names = {"log_in": "login"}
    assert {field: LAYOUT[names.get(field, field)] for field in FIELDS} == FIELDS
