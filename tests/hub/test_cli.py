"""The ``hub`` command, run as an operator runs it: real subprocesses, real workers.

Every command runs with ``cwd`` at the repository root (so the default
``HUB_FLOWS=flows`` finds ``flows/hello.py``) and ``HUB_HOME`` in a temp folder.
Workers and ``hub up`` run in their own process group, killed whatever happens.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from hub.cli import app
from hub.models import Run
from hub.store import Store, head_revision
from hub.views import describe_run
from tests.conftest import ROOT

HUB = str(Path(sys.executable).parent / "hub")
REVIEW_FLOWS = "flows,tests.hub.cli_flows"
BIG = '{"order_id": "A-1", "amount": 500}'

pytestmark = pytest.mark.timeout(120)


# ------------------------------------------------------------------ helpers
def hub_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of a hub command: this test's HUB_HOME, no stray HUB_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    env.pop("PYTHONPATH", None)
    env["HUB_HOME"] = str(home)
    env.update(extra)
    return env


def hub(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [HUB, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """The command's stderr, checked to be one ``error: ...`` line without a traceback."""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), result.stderr
    return lines[0]


@contextmanager
def background(env: dict[str, str], *args: str, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``hub ARGS`` in its own process group; SIGKILL the whole group on the way out.

    Tests that check a graceful stop send their signal themselves first.
    """
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [HUB, *args],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield proc
    finally:
        _kill_group(proc)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with suppress(ProcessLookupError):  # the group is gone already
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


def read_run(home: Path, run_id: str) -> dict[str, Any]:
    store = Store(f"sqlite:///{home / 'hub.db'}")
    try:
        with store.transaction() as s:
            return describe_run(s, run_id)
    finally:
        store.engine.dispose()


def run_count(home: Path) -> int:
    store = Store(f"sqlite:///{home / 'hub.db'}")
    try:
        with store.transaction() as s:
            return int(s.scalar(select(func.count()).select_from(Run)) or 0)
    finally:
        store.engine.dispose()


def wait_for(home: Path, run_id: str, status: str, timeout: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        run = read_run(home, run_id)
        if run["status"] == status or time.monotonic() > deadline:
            assert run["status"] == status, run
            return run
        time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid``, read from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


# ----------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A migrated hub home with one worker running, shared by this module's tests."""
    home = tmp_path_factory.mktemp("served")
    env = hub_env(home, HUB_FLOWS=REVIEW_FLOWS)
    assert hub(env, "db", "upgrade").returncode == 0
    log = home / "worker.log"
    with background(env, "worker", "--concurrency", "1", "--loglevel", "WARNING", log=log) as w:
        yield {"home": home, "env": env, "worker": w}
        if w.poll() is not None:
            pytest.fail(f"the worker died:\n{log.read_text()}")


@pytest.fixture(scope="module")
def idle(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A migrated hub home with no worker: runs stay queued."""
    home = tmp_path_factory.mktemp("idle")
    env = hub_env(home)
    assert hub(env, "db", "upgrade").returncode == 0
    return {"home": home, "env": env}


@pytest.fixture
def paused(served: dict[str, Any]) -> Callable[[], str]:
    """Factory: start a cli_review run that pauses for review; returns its id."""

    def make() -> str:
        result = hub(served["env"], "run", "cli_review", "--input", BIG, "--wait", "--json")
        assert result.returncode == 1, result.stderr
        run = json.loads(result.stdout)
        assert run["status"] == "needs_review"
        return str(run["id"])

    return make


# --------------------------------------------------------------------- help
def test_hub_help_lists_every_command(tmp_path: Path) -> None:
    result = hub(hub_env(tmp_path), "--help")
    assert result.returncode == 0, result.stderr
    for command in (
        "run",
        "runs",
        "flows",
        "worker",
        "scheduler",
        "web",
        "up",
        "doctor",
        "db",
        "users",
    ):
        assert f" {command} " in result.stdout


@pytest.mark.parametrize(
    "command",
    [
        "run",
        "flows",
        "worker",
        "scheduler",
        "web",
        "up",
        "doctor",
        "db",
        "db upgrade",
        "runs",
        "runs show",
        "runs cancel",
        "runs resume",
        "runs skip",
        "runs complete",
        "runs abort",
    ],
)
def test_each_subcommand_has_help(command: str) -> None:
    result = CliRunner().invoke(app, [*command.split(), "--help"], prog_name="hub")
    assert result.exit_code == 0, result.output
    assert "Usage: hub " + command in " ".join(result.output.split())


def test_run_help_documents_the_exit_codes() -> None:
    result = CliRunner().invoke(app, ["run", "--help"])
    text = " ".join(result.output.replace("│", " ").split())
    assert "2 bad input or unknown flow" in text
    assert "3 still unfinished after --timeout" in text


# ------------------------------------------------------------- db, doctor
def test_db_upgrade_creates_the_schema_once(tmp_path: Path) -> None:
    env = hub_env(tmp_path)
    first = hub(env, "db", "upgrade")
    assert first.returncode == 0, first.stderr
    assert f"upgraded from empty to revision {head_revision()}" in first.stdout
    again = hub(env, "db", "upgrade")
    assert again.returncode == 0, again.stderr
    assert f"already at revision {head_revision()}" in again.stdout
    assert Store(f"sqlite:///{tmp_path / 'hub.db'}").revision() == head_revision()


def test_doctor_says_to_upgrade_a_database_without_tables(tmp_path: Path) -> None:
    result = hub(hub_env(tmp_path), "doctor")
    assert result.returncode == 1
    line = next(x for x in result.stdout.splitlines() if "database" in x)
    assert line.startswith("NO ")
    assert "run `hub db upgrade`" in line


def test_doctor_reports_database_broker_and_flows_ok(idle: dict[str, Any]) -> None:
    result = hub(idle["env"], "doctor")
    assert result.returncode == 0, result.stdout
    lines = result.stdout.splitlines()
    assert any(x.startswith("ok  database: sqlite:///") for x in lines), result.stdout
    assert any(x.startswith("ok  broker: embedded") for x in lines), result.stdout
    assert "ok  flows: desktop_orders, hello, invoice_batch, legacy_orders, notify" in lines


def test_commands_on_a_database_without_tables_say_to_upgrade(tmp_path: Path) -> None:
    env = hub_env(tmp_path)
    for args in (("run", "hello", "--input", '{"name": "Ada"}'), ("worker",)):
        result = hub(env, *args)
        assert result.returncode == 1, args
        assert "run `hub db upgrade`" in one_line_error(result)


def test_an_unreachable_database_is_one_line_naming_the_setting(tmp_path: Path) -> None:
    env = hub_env(tmp_path, HUB_DATABASE_URL="postgresql+psycopg://hub:secret@127.0.0.1:1/hub")
    result = hub(env, "runs")
    assert result.returncode == 1
    line = one_line_error(result)
    assert "HUB_DATABASE_URL" in line
    assert "secret" not in line


def test_a_bad_setting_is_one_line_naming_the_variable(tmp_path: Path) -> None:
    result = hub(hub_env(tmp_path, HUB_LEASE_SECONDS="soon"), "runs")
    assert result.returncode == 1
    assert "HUB_LEASE_SECONDS" in one_line_error(result)


# -------------------------------------------------------------------- flows
def test_flows_lists_hello_and_its_three_steps(tmp_path: Path) -> None:
    result = hub(hub_env(tmp_path), "flows")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("hello "))
    assert lines[at].startswith("hello  (flows.hello)  Greets a person by name.")
    assert [x.split()[1] for x in lines[at + 1 : at + 4]] == ["clean", "greet", "sign"]
    as_json = json.loads(hub(hub_env(tmp_path), "flows", "--json").stdout)
    hello = next(f for f in as_json if f["name"] == "hello")
    assert [s["name"] for s in hello["steps"]] == ["clean", "greet", "sign"]


def test_a_broken_flow_module_is_one_line_naming_file_and_line(tmp_path: Path) -> None:
    module = tmp_path / "cli_broken_flows.py"
    module.write_text("from hub import Flow\n\nGREETING = 'hi'\nflow = Flow(nmae, [])\n")
    env = hub_env(tmp_path, HUB_FLOWS="cli_broken_flows", PYTHONPATH=str(tmp_path))
    for args in (("flows",), ("run", "hello", "--input", '{"name": "Ada"}')):
        result = hub(env, *args)
        assert result.returncode == 1, (args, result.stderr)
        line = one_line_error(result)
        assert f"{module}:4" in line
        assert "NameError" in line and "nmae" in line


def test_a_missing_flow_module_says_to_check_hub_flows(tmp_path: Path) -> None:
    result = hub(hub_env(tmp_path, HUB_FLOWS="no_such_flows_here"), "flows")
    assert result.returncode == 1
    assert "HUB_FLOWS" in one_line_error(result)


# ---------------------------------------------------------------------- run
def test_run_hello_waits_and_prints_one_json_object(served: dict[str, Any]) -> None:
    result = hub(
        served["env"],
        "run",
        "hello",
        "--input",
        '{"name": "Ada"}',
        "--wait",
        "--json",
        "--timeout",
        "30",
    )
    assert result.returncode == 0, result.stderr
    run = json.loads(result.stdout)  # the whole of stdout is one object
    assert run["status"] == "succeeded"
    steps = {s["key"]: s for s in run["steps"]}
    assert list(steps) == ["clean", "greet", "sign"]
    assert all(s["status"] == "succeeded" for s in steps.values())
    assert steps["clean"]["output"] == {"name": "Ada", "letters": 3}
    assert steps["greet"]["output"] == {"message": "Hello, Ada!", "letters": 3}
    assert steps["sign"]["output"]["message"] == f"Hello, Ada! (run {run['id'][-6:]})"
    assert run["output"] == steps["sign"]["output"]


def test_run_hello_on_redis_and_postgresql(redis_url: str, pg_url: str, tmp_path: Path) -> None:
    env = hub_env(tmp_path, HUB_BROKER_URL=redis_url, HUB_DATABASE_URL=pg_url)
    doctor = hub(env, "doctor")
    assert f"ok  broker: {redis_url}" in doctor.stdout.splitlines(), doctor.stdout
    assert any(x.startswith("ok  database: postgresql") for x in doctor.stdout.splitlines())
    with background(
        env, "worker", "--concurrency", "1", "--loglevel", "WARNING", log=tmp_path / "worker.log"
    ):
        result = hub(
            env,
            "run",
            "hello",
            "--input",
            '{"name": "Ada"}',
            "--wait",
            "--json",
            "--timeout",
            "30",
        )
    assert result.returncode == 0, result.stderr + (tmp_path / "worker.log").read_text()
    run = json.loads(result.stdout)
    assert run["status"] == "succeeded"
    assert [s["output"]["letters"] for s in run["steps"]] == [3, 3, 3]


def test_input_failing_the_first_step_is_one_line_and_stores_nothing(
    idle: dict[str, Any],
) -> None:
    before = run_count(idle["home"])
    result = hub(idle["env"], "run", "hello", "--input", '{"name": ""}', "--wait")
    assert result.returncode == 2
    line = one_line_error(result)
    assert "name" in line and "at least 1 character" in line
    assert result.stdout == ""
    assert run_count(idle["home"]) == before


def test_an_unknown_flow_is_one_line_listing_the_known_flows(idle: dict[str, Any]) -> None:
    result = hub(idle["env"], "run", "helo")
    assert result.returncode == 2
    assert one_line_error(result) == (
        "error: unknown flow 'helo'; known flows: desktop_orders, hello, invoice_batch, legacy_orders, notify"
    )


def test_malformed_input_json_is_a_clear_error(idle: dict[str, Any]) -> None:
    result = hub(idle["env"], "run", "hello", "--input", "{name: Ada}")
    assert result.returncode == 2
    line = one_line_error(result)
    assert "--input is not valid JSON" in line
    assert "column" in line


def test_input_from_a_missing_file_is_a_clear_error(idle: dict[str, Any]) -> None:
    result = hub(idle["env"], "run", "hello", "--input", "@/no/such/input.json")
    assert result.returncode == 2
    assert "file /no/such/input.json not found" in one_line_error(result)


def test_input_can_be_read_from_a_file(idle: dict[str, Any], tmp_path: Path) -> None:
    (tmp_path / "in.json").write_text('{"name": "Ada"}')
    result = hub(idle["env"], "run", "hello", "--input", f"@{tmp_path / 'in.json'}", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["created"] is True


def test_run_without_a_worker_exits_3_after_the_timeout(idle: dict[str, Any]) -> None:
    started = time.monotonic()
    result = hub(idle["env"], "run", "hello", "-i", '{"name": "Ada"}', "--wait", "--timeout", "0.5")
    assert result.returncode == 3
    assert time.monotonic() - started < 15
    line = one_line_error(result)
    assert "still queued after 0.5 s" in line and "hub worker" in line


def test_the_same_idempotency_key_starts_one_run(idle: dict[str, Any]) -> None:
    args = ("run", "hello", "-i", '{"name": "Ada"}', "--idempotency-key", "k-1", "--json")
    first = json.loads(hub(idle["env"], *args).stdout)
    second = json.loads(hub(idle["env"], *args).stdout)
    assert (first["created"], second["created"]) == (True, False)
    assert first["id"] == second["id"]
    other = hub(idle["env"], "run", "hello", "-i", '{"name": "Bob"}', "--idempotency-key", "k-1")
    assert other.returncode == 2
    assert "idempotency key 'k-1'" in one_line_error(other)


def test_a_run_that_pauses_for_review_exits_1_and_says_what_to_do(
    served: dict[str, Any],
) -> None:
    result = hub(served["env"], "run", "cli_review", "--input", BIG, "--wait")
    assert result.returncode == 1
    assert " cli_review  needs_review" in result.stdout.splitlines()[0]
    line = one_line_error(result)
    assert "waiting for review at step 'check'" in line
    assert "amount 500 is over the limit of 100" in line
    assert "hub runs resume|skip|complete|abort" in line


# --------------------------------------------------------------------- runs
def test_runs_lists_recent_runs_and_shows_one(served: dict[str, Any]) -> None:
    env = served["env"]
    result = hub(env, "run", "hello", "-i", '{"name": " grace  hopper "}', "--wait")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("run ") and " hello  succeeded" in lines[0]
    assert lines[-1].startswith('output: {"message": "Hello, Grace Hopper! (run ')
    started = {"id": lines[0].split()[1]}
    listing = hub(env, "runs", "--flow", "hello")
    assert listing.returncode == 0, listing.stderr
    assert listing.stdout.splitlines()[0].split() == [
        "RUN",
        "CREATED",
        "(UTC)",
        "FLOW",
        "STATUS",
        "DURATION",
    ]
    assert any(
        x.startswith(started["id"]) and "succeeded" in x for x in listing.stdout.splitlines()
    )
    as_json = json.loads(hub(env, "runs", "--json", "--status", "succeeded").stdout)
    assert started["id"] in [r["id"] for r in as_json]
    assert {r["status"] for r in as_json} == {"succeeded"}

    shown = hub(env, "runs", "show", started["id"])
    assert shown.returncode == 0, shown.stderr
    assert [x.split()[0] for x in shown.stdout.splitlines() if "x1" in x] == [
        "clean",
        "greet",
        "sign",
    ]
    assert '-> {"name": "Grace Hopper", "letters": 11}' in shown.stdout
    view = json.loads(hub(env, "runs", "show", started["id"], "--json").stdout)
    assert view["id"] == started["id"]
    assert [len(s["attempt_log"]) for s in view["steps"]] == [1, 1, 1]


def test_runs_show_of_an_unknown_id_is_one_line(idle: dict[str, Any]) -> None:
    result = hub(idle["env"], "runs", "show", "nope")
    assert result.returncode == 1
    assert one_line_error(result) == "error: no run with id 'nope'; `hub runs` lists recent runs"


def test_runs_rejects_an_unknown_status(idle: dict[str, Any]) -> None:
    result = hub(idle["env"], "runs", "--status", "done")
    assert result.returncode == 2
    assert "statuses are queued, running, needs_review" in one_line_error(result)


def test_resume_with_edited_input_finishes_the_run(
    served: dict[str, Any], paused: Callable[[], str]
) -> None:
    run_id = paused()
    edited = '{"order_id": "A-1", "amount": 50}'
    result = hub(served["env"], "runs", "resume", run_id, "--input", edited, "--by", "ops")
    assert result.returncode == 0, result.stderr
    assert (
        result.stdout.strip()
        == f"run {run_id}: paused step sent to run again; the run is now running"
    )
    run = wait_for(served["home"], run_id, "succeeded")
    assert run["output"] == {"order_id": "A-1", "amount": 50, "approved": True, "booked": True}
    assert run["reviews"][0]["resolution"] == "edited"
    assert run["reviews"][0]["resolved_by"] == "ops"


def test_resume_with_input_failing_the_model_is_one_line(
    served: dict[str, Any], paused: Callable[[], str]
) -> None:
    run_id = paused()
    result = hub(served["env"], "runs", "resume", run_id, "--input", '{"order_id": "A-1"}')
    assert result.returncode == 2
    assert "amount: Field required" in one_line_error(result)
    assert read_run(served["home"], run_id)["status"] == "needs_review"


def test_skip_passes_the_input_through(served: dict[str, Any], paused: Callable[[], str]) -> None:
    run_id = paused()
    result = hub(served["env"], "runs", "skip", run_id, "--reason", "approved by phone")
    assert result.returncode == 0, result.stderr
    assert "paused step skipped" in result.stdout
    run = wait_for(served["home"], run_id, "succeeded")
    assert [s["status"] for s in run["steps"]] == ["skipped", "succeeded"]
    assert run["output"] == {"order_id": "A-1", "amount": 500, "approved": False, "booked": True}


def test_complete_by_hand_validates_and_goes_on(
    served: dict[str, Any], paused: Callable[[], str]
) -> None:
    run_id = paused()
    env = served["env"]
    bad = hub(env, "runs", "complete", run_id, "--output", '{"order_id": "A-1"}')
    assert bad.returncode == 2
    assert "output of step 'check'" in one_line_error(bad)
    done = '{"order_id": "A-1", "amount": 500, "approved": true}'
    result = hub(env, "runs", "complete", run_id, "--output", done, "--by", "ada")
    assert result.returncode == 0, result.stderr
    assert "paused step completed by hand" in result.stdout
    run = wait_for(served["home"], run_id, "succeeded")
    assert run["steps"][0]["completed_by"] == "ada"
    assert run["output"]["approved"] is True
    shown = hub(env, "runs", "show", run_id, "--attempts").stdout.splitlines()
    assert shown[1].split()[:2] == ["check", "succeeded"] and shown[1].endswith("by ada")
    assert shown[3].strip().startswith("attempt 1: failed (business), ")


def test_abort_fails_the_run_with_the_reason(
    served: dict[str, Any], paused: Callable[[], str]
) -> None:
    run_id = paused()
    result = hub(served["env"], "runs", "abort", run_id, "--reason", "customer withdrew")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"run {run_id}: aborted; the run is now failed"
    run = read_run(served["home"], run_id)
    assert (run["status"], run["error"]) == ("failed", "customer withdrew")
    assert [s["status"] for s in run["steps"]] == ["failed"]


def test_cancel_stops_a_paused_run(served: dict[str, Any], paused: Callable[[], str]) -> None:
    run_id = paused()
    result = hub(served["env"], "runs", "cancel", run_id)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"run {run_id}: cancelled; the run is now cancelled"
    run = read_run(served["home"], run_id)
    assert run["status"] == "cancelled"
    assert run["reviews"][0]["status"] == "closed"


def test_actions_on_a_run_in_the_wrong_state_are_one_line_errors(
    served: dict[str, Any], paused: Callable[[], str]
) -> None:
    env = served["env"]
    run_id = paused()
    assert hub(env, "runs", "cancel", run_id).returncode == 0
    for args, expected in [
        (("resume", run_id), f"run {run_id} (cancelled) has no step waiting for review"),
        (("skip", run_id, "--reason", "x"), "has no step waiting for review"),
        (("abort", run_id, "--reason", "x"), f"run {run_id} is already cancelled"),
        (("cancel", "nope"), "no run with id 'nope'"),
    ]:
        result = hub(env, "runs", *args)
        assert result.returncode == 1, args
        assert expected in one_line_error(result), args


def test_resume_of_a_queued_run_names_its_state(idle: dict[str, Any]) -> None:
    run_id = json.loads(hub(idle["env"], "run", "hello", "-i", '{"name": "Ada"}', "--json").stdout)[
        "id"
    ]
    result = hub(idle["env"], "runs", "resume", run_id)
    assert result.returncode == 1
    assert f"run {run_id} (queued) has no step waiting for review" in one_line_error(result)


# ---------------------------------------------------------------------- web
def wait_healthy(proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + 30
    while True:
        assert proc.poll() is None, log.read_text()
        with suppress(httpx.HTTPError):
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)


def test_web_prints_the_first_admin_password_once_and_it_logs_in(tmp_path: Path) -> None:
    env = hub_env(tmp_path)
    assert hub(env, "db", "upgrade").returncode == 0
    logs = [tmp_path / "web1.log", tmp_path / "web2.log"]
    for log in logs:
        port = free_port()
        with background(env, "web", "--port", str(port), log=log) as web:
            wait_healthy(web, port, log)
            base = f"http://127.0.0.1:{port}"
            with httpx.Client(base_url=base) as browser:
                form = browser.get("/login").text
                token = form.split('name="csrf_token" value="')[1].split('"')[0]
                password = logs[0].read_text().split("admin password: ")[1].split()[0]
                done = browser.post(
                    "/login", data={"name": "admin", "password": password, "csrf_token": token}
                )
                assert done.status_code == 303, done.text
                assert browser.get("/api/me").json()["role"] == "admin"
    assert logs[0].read_text().count("admin password: ") == 1
    assert "admin password" not in logs[1].read_text()


# ----------------------------------------------------------------------- up
def test_up_serves_runs_and_stops_everything_on_sigint(tmp_path: Path) -> None:
    """SIGINT to `hub up` alone (as a supervisor sends it) must reach every child."""
    env = hub_env(tmp_path)
    port = free_port()
    log = tmp_path / "up.log"
    with background(env, "up", "--port", str(port), "--concurrency", "1", log=log) as up:
        deadline = time.monotonic() + 30
        while True:
            assert up.poll() is None, log.read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        result = hub(
            env, "run", "hello", "-i", '{"name": "Ada"}', "--wait", "--json", "--timeout", "30"
        )
        assert result.returncode == 0, result.stderr + log.read_text()
        assert json.loads(result.stdout)["status"] == "succeeded"
        url = f"http://127.0.0.1:{port}/api/runs/{json.loads(result.stdout)['id']}"
        assert httpx.get(url).status_code == 401
        token = hub(env, "users", "token", "admin").stdout.strip()
        api = httpx.get(url, headers={"Authorization": f"Bearer {token}"})
        assert api.json()["status"] == "succeeded"

        children = descendants(up.pid)
        assert len(children) >= 3, children  # web, worker (and its pool), scheduler
        up.send_signal(signal.SIGINT)
        assert up.wait(timeout=30) == 0, log.read_text()
        deadline = time.monotonic() + 10
        while any(alive(p) for p in children) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [p for p in children if alive(p)], log.read_text()
    text = log.read_text()
    assert f"hub is up: http://127.0.0.1:{port}" in text
    assert text.count("admin password: ") == 1  # printed by `up`; its `web` child finds a user
    assert "hub stopped" in text
    assert "exited with code" not in text
