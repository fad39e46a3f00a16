"""Start, watch and kill ``hub worker`` / ``hub scheduler`` processes for end-to-end tests.

Each process runs in its own session (process group), with its output in a
log file under the test's folder, so a test can kill one whole worker (main
process and pool children) with one ``killpg`` and print its log on failure.
Nothing here uses psutil: children are found through ``/proc``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[2]
LOG_TAIL = 6000


def clean_env(extra: Mapping[str, str]) -> dict[str, str]:
    """This process's environment without any ``HUB_*`` variable, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    env.update(extra)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


def wait_until(
    check: Callable[[], Any], timeout: float, what: str, detail: Callable[[], str] = str
) -> Any:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` and ``detail()``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}\n{detail()}")
        time.sleep(0.05)


def _stat(pid: int) -> list[str] | None:
    """Fields of ``/proc/PID/stat`` after the command name: state, ppid, pgrp, ..."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _all_pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def children_of(pid: int) -> list[int]:
    """Live (not zombie) child processes of ``pid``."""
    out = []
    for p in _all_pids():
        st = _stat(p)
        if st and st[1] == str(pid) and st[0] != "Z":
            out.append(p)
    return sorted(out)


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes in process group ``pgid``."""
    out = []
    for p in _all_pids():
        st = _stat(p)
        if st and st[2] == str(pgid) and st[0] != "Z":
            out.append(p)
    return sorted(out)


def is_alive(pid: int) -> bool:
    st = _stat(pid)
    return st is not None and st[0] != "Z"


def descendants(pid: int) -> list[int]:
    """Live children of ``pid``, their children, and so on."""
    found, todo = [], [pid]
    while todo:
        for child in children_of(todo.pop()):
            found.append(child)
            todo.append(child)
    return found


def command_name(pid: int) -> str:
    """What ``/proc/PID/comm`` says ("" for a process that is gone)."""
    try:
        with open(f"/proc/{pid}/comm") as fh:
            return fh.read().strip()
    except OSError:
        return ""


def kill9(pid: int) -> None:
    """``kill -9 pid``; a process already gone is fine."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


class HubProcess:
    """One ``python -m hub ...`` process in its own session, logging to ``log_path``."""

    def __init__(self, name: str, args: list[str], env: Mapping[str, str], log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        self._log: IO[bytes] = open(log_path, "ab")  # noqa: SIM115 - closed in close()
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "hub", *args],
            cwd=ROOT,
            env=dict(env),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.pid = self.popen.pid

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def tail(self, size: int = LOG_TAIL) -> str:
        text = self.log()
        return f"----- {self.name} (pid {self.pid}) log, last {size} chars -----\n{text[-size:]}"

    def running(self) -> bool:
        return self.popen.poll() is None

    def wait_for_log(self, text: str, timeout: float = 30.0, *, count: int = 1) -> None:
        """Wait until ``text`` appears ``count`` times in the log; fail early if the process died."""

        def seen() -> bool:
            if self.log().count(text) >= count:
                return True
            if not self.running():
                raise AssertionError(
                    f"{self.name} exited with code {self.popen.returncode} before logging "
                    f"{text!r}\n{self.tail()}"
                )
            return False

        wait_until(seen, timeout, f"{self.name} to log {text!r}", self.tail)

    def children(self) -> list[int]:
        """The pool processes of a prefork worker (live children of the main process)."""
        return children_of(self.pid)

    def kill(self) -> None:
        """``kill -9`` the whole process group (main process and children) and reap it."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        try:
            self.popen.wait(10)
        except subprocess.TimeoutExpired:  # pragma: no cover - a kernel problem, say so
            raise AssertionError(f"{self.name} (pid {self.pid}) survived SIGKILL") from None
        wait_until(
            lambda: not group_members(self.pid),
            10,
            f"every process of {self.name}'s group {self.pid} to be gone",
            lambda: str(group_members(self.pid)),
        )

    def terminate(self, timeout: float = 10.0) -> None:
        """SIGTERM (a warm shutdown), then ``kill -9`` whatever is left after ``timeout``."""
        if self.running():
            self.popen.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout)
        self.kill()

    def close(self) -> None:
        """Make sure nothing of this process is left, and close its log."""
        try:
            self.kill()
        finally:
            self._log.close()


class HubProcesses:
    """The hub processes of one test; :meth:`close` kills every one of them."""

    def __init__(self, folder: Path, env: Mapping[str, str]) -> None:
        self.folder = folder
        self.env = dict(env)
        self.started: list[HubProcess] = []
        folder.mkdir(parents=True, exist_ok=True)

    def _start(self, name: str, args: list[str], env: Mapping[str, str] | None) -> HubProcess:
        n = sum(p.name.startswith(name) for p in self.started) + 1
        label = f"{name}-{n}"
        proc = HubProcess(label, args, {**self.env, **(env or {})}, self.folder / f"{label}.log")
        self.started.append(proc)
        return proc

    def worker(
        self,
        *,
        concurrency: int = 2,
        queues: str = "default",
        env: Mapping[str, str] | None = None,
        wait: bool = True,
    ) -> HubProcess:
        """Start ``hub worker``; with ``wait``, return once Celery says it is ready."""
        args = ["worker", "--concurrency", str(concurrency), "--queues", queues]
        proc = self._start("worker", [*args, "--loglevel", "INFO"], env)
        if wait:
            proc.wait_for_log(" ready.", timeout=40)
        return proc

    def scheduler(self, *, env: Mapping[str, str] | None = None, wait: bool = True) -> HubProcess:
        """Start ``hub scheduler`` (the reconciler tick)."""
        proc = self._start("scheduler", ["scheduler"], env)
        if wait:
            proc.wait_for_log("scheduler ticking", timeout=40)
        return proc

    def cli(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """Run ``hub ARGS`` to completion with this test's environment."""
        return subprocess.run(
            [sys.executable, "-m", "hub", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def logs(self) -> str:
        return "\n".join(p.tail() for p in self.started)

    def close(self) -> None:
        errors = []
        for proc in self.started:
            try:
                proc.close()
            except Exception as exc:  # keep cleaning up the others, then report
                errors.append(f"{proc.name}: {exc}")
        if errors:
            raise AssertionError("cleanup failed: " + "; ".join(errors))
