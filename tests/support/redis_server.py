"""A private ``redis-server`` on a free port, without persistence, for kill/restart tests."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
from pathlib import Path
from typing import IO

from tests.support.procs import wait_until


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def redis_server_binary() -> str | None:
    return shutil.which("redis-server")


class RedisServer:
    """``redis-server --save "" --appendonly no`` on 127.0.0.1; a restart comes back empty."""

    def __init__(self, folder: Path, port: int | None = None) -> None:
        binary = redis_server_binary()
        if binary is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        self.binary = binary
        self.folder = folder
        self.port = port or free_port()
        self.popen: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        folder.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def start(self) -> RedisServer:
        assert self.popen is None or self.popen.poll() is not None, "already running"
        self._close_log()
        self._log = open(self.folder / "redis.log", "ab")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.folder),
                "--daemonize",
                "no",
                "--protected-mode",
                "no",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_until(self.ping, 10, f"redis-server on port {self.port} to answer PING", self.tail)
        return self

    def kill(self) -> None:
        """``kill -9``: everything in it is gone (no persistence)."""
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGKILL)
            self.popen.wait(10)

    def restart(self) -> None:
        self.kill()
        self.start()

    def tail(self) -> str:
        try:
            return (self.folder / "redis.log").read_text(errors="replace")[-2000:]
        except FileNotFoundError:
            return ""

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def stop(self) -> None:
        try:
            self.kill()
        finally:
            self._close_log()
