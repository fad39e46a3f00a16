"""A small REST system on 127.0.0.1 that honours ``Idempotency-Key``.

::

    POST /records            JSON body; header Idempotency-Key
        first time per key:  201 {"id": n, "key": ..., "ref": ...}  (one effect)
        same key again:      200 with the first response, no new effect
    GET  /effects            {"effects": {ref: n}, "keys": {ref: [key, ...]}, "calls": {key: n}}
    POST /control            {"delay": seconds, "fail": n, "status": 503}

A body's ``ref`` names the logical change (``run_id/step``): if two attempts
of one step sent different keys, ``effects[ref]`` would be 2. The server can
be made slow (``delay``) or made to fail the next ``n`` calls with ``status``
(no effect recorded), from the test (:meth:`RecordsServer.slow`,
:meth:`RecordsServer.fail`) or over HTTP. It runs in a thread of the test
process; workers reach it through its :attr:`url`.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Call:
    """One POST /records as the server saw it."""

    at: float
    key: str | None
    ref: str | None
    attempt: int | None
    pid: int | None
    replay: bool


class RecordsServer:
    """Start with :meth:`start` (or ``with``); :meth:`stop` joins the thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.responses: dict[str, dict[str, Any]] = {}
        self.effects: Counter[str] = Counter()
        self.keys: dict[str, list[str]] = {}
        self.log: list[Call] = []
        self.delay = 0.0
        self._fail_next = 0
        self._fail_status = 503
        self._next_id = 0
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ lifecycle
    @property
    def url(self) -> str:
        assert self._httpd is not None, "start() the sandbox first"
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> RecordsServer:
        handler = type("Handler", (_Handler,), {"sandbox": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> RecordsServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    # ------------------------------------------------------------- controls
    def slow(self, seconds: float) -> None:
        """Every later call takes ``seconds`` before it is handled."""
        self.delay = seconds

    def fail(self, count: int, status: int = 503) -> None:
        """The next ``count`` calls answer ``status`` and change nothing."""
        with self.lock:
            self._fail_next, self._fail_status = count, status

    # -------------------------------------------------------------- queries
    def effects_for(self, ref: str) -> int:
        with self.lock:
            return self.effects[ref]

    def calls_for(self, key: str) -> list[Call]:
        with self.lock:
            return [c for c in self.log if c.key == key]

    def calls_for_ref(self, ref: str) -> list[Call]:
        with self.lock:
            return [c for c in self.log if c.ref == ref]

    def refs(self, prefix: str = "") -> dict[str, int]:
        """Effects per ref (optionally only refs starting with ``prefix``)."""
        with self.lock:
            return {r: n for r, n in self.effects.items() if r.startswith(prefix)}

    def report(self) -> dict[str, Any]:
        with self.lock:
            calls = Counter(c.key or "" for c in self.log)
            return {"effects": dict(self.effects), "keys": dict(self.keys), "calls": dict(calls)}

    # ------------------------------------------------------------- handling
    def handle_post(self, key: str | None, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if self.delay:
            time.sleep(self.delay)
        ref = body.get("ref")
        with self.lock:
            if self._fail_next > 0:
                self._fail_next -= 1
                return self._fail_status, {"error": "sandbox told to fail"}
            replay = key is not None and key in self.responses
            self.log.append(
                Call(time.time(), key, ref, body.get("attempt"), body.get("pid"), replay)
            )
            if replay:
                assert key is not None
                return 200, self.responses[key]
            self._next_id += 1
            response = {"id": self._next_id, "key": key, "ref": ref}
            self.effects[ref or ""] += 1
            if key is not None:
                self.responses[key] = response
                self.keys.setdefault(ref or "", []).append(key)
            return 201, response


class _Handler(BaseHTTPRequestHandler):
    sandbox: RecordsServer

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the test prints the report on failure instead

    def _reply(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b"{}"
        try:
            return json.loads(raw or b"{}")
        except json.JSONDecodeError:
            return None

    def do_GET(self) -> None:
        if self.path == "/effects":
            self._reply(200, self.sandbox.report())
        else:
            self._reply(404, {"error": f"no route {self.path}"})

    def do_POST(self) -> None:
        body = self._body()
        if not isinstance(body, dict):
            self._reply(400, {"error": "body must be a JSON object"})
        elif self.path == "/records":
            self._reply(*self.sandbox.handle_post(self.headers.get("Idempotency-Key"), body))
        elif self.path == "/control":
            if "delay" in body:
                self.sandbox.slow(float(body["delay"]))
            if "fail" in body:
                self.sandbox.fail(int(body["fail"]), int(body.get("status", 503)))
            self._reply(200, {"ok": True})
        else:
            self._reply(404, {"error": f"no route {self.path}"})
