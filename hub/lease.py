"""Step leases: who holds one, whether that process is still alive, and renewal.

A lease owner is ``host:pid:token``; on the same host a dead owner is seen at
once (no need to wait for the lease to run out). :class:`Heartbeat` renews
the leases of the steps this process runs, from one background thread.
"""

from __future__ import annotations

import os
import socket
import threading
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy import and_, update

from hub import models as m

if TYPE_CHECKING:
    from hub.engine import Claim, Engine

_BOOT = os.urandom(3).hex()


def worker_identity() -> str:
    """``host:pid:token`` of this process; a lease owner that can be checked for life."""
    return f"{socket.gethostname()}:{os.getpid()}:{_BOOT}"


def owner_is_dead(owner: str | None) -> bool:
    """True when ``owner`` was a process on this host that no longer exists."""
    if not owner:
        return False
    host, _, rest = owner.partition(":")
    pid_text, _, token = rest.partition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return token != _BOOT
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


class Heartbeat:
    """Renews the leases of the steps this process is running, from one thread."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.held: dict[str, str] = {}
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None
        self.pid = 0

    @contextmanager
    def hold(self, claim: Claim) -> Iterator[None]:
        with self.lock:
            self.held[claim.step_id] = claim.owner
            if self.thread is None or self.pid != os.getpid() or not self.thread.is_alive():
                self.pid = os.getpid()
                self.thread = threading.Thread(target=self._loop, name="hub-lease", daemon=True)
                self.thread.start()
        try:
            yield
        finally:
            with self.lock:
                self.held.pop(claim.step_id, None)

    def _loop(self) -> None:
        every = max(0.2, self.engine.settings.lease_seconds / 3)
        stop = threading.Event()
        while not stop.wait(every):
            with self.lock:
                held = dict(self.held)
            if not held:
                continue
            try:
                self._renew(held)
            except Exception:  # the database is away: the next beat tries again
                traceback.print_exc()

    def _renew(self, held: dict[str, str]) -> None:
        engine = self.engine
        until = engine.clock() + timedelta(seconds=engine.settings.lease_seconds)
        with engine.store.transaction() as s:
            for step_id, owner in held.items():
                s.execute(
                    update(m.Step)
                    .where(
                        and_(
                            m.Step.id == step_id,
                            m.Step.lease_owner == owner,
                            m.Step.status == m.STEP_RUNNING,
                        )
                    )
                    .values(lease_expires_at=until)
                    .execution_options(synchronize_session=False)
                )
