"""Evidence: what a step leaves for the person who reviews it.

Every step gets ``ctx.evidence``. While the step runs, it (or the bot or
connector it uses) records what a reviewer will want to see if the step ends
up in the review queue::

    ctx.evidence.page(url=page.url, title=page.title())
    ctx.evidence.screenshot(page.screenshot(), name="order-form.png")
    ctx.evidence.html(page.content())
    ctx.evidence.action("filled postal code")
    ctx.evidence.http(request=response.request, response=response)
    ctx.evidence.note("order", "PO-4711")

and the lines the step logs with ``ctx.log`` (or any logger) while it runs
are kept, the last :data:`LOG_LINES` of them. Values handed to
:meth:`Evidence.mask` are scrubbed from what ``ctx.log`` writes to every
handler too, not only from the evidence. When the attempt sends the step
to review, all of it is stored with the review item in the same transaction:
small facts as JSON on the item, files (screenshots, traces, HTML,
downloads) as rows of ``artifacts``. When the attempt succeeds or is retried,
it is dropped: a review item shows the evidence of the attempt that failed.

Nothing secret may reach the evidence. Headers and fields whose names look
secret (``Authorization``, ``Cookie``, ``password``, ``token``, ``api_key`` ...)
are replaced by ``[redacted]``; values handed to :meth:`Evidence.mask` are
replaced wherever they appear in text (log lines, HTML, bodies, the error
message). Pixels cannot be scrubbed: a bot masks secret fields before it takes
a screenshot.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections import deque
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

#: Log lines kept per attempt (the last ones).
LOG_LINES = 50
#: Actions kept per attempt (the last ones).
ACTIONS = 30
#: Largest file kept (bytes); a bigger one is left out with a note saying so.
MAX_FILE_BYTES = 20 * 1024 * 1024
#: Largest total of files per attempt (bytes).
MAX_TOTAL_BYTES = 50 * 1024 * 1024
#: Longest request or response body kept as text (characters).
MAX_BODY = 64 * 1024
#: Longest text of one log line, action or note (characters).
MAX_LINE = 2000

REDACTED = "[redacted]"
SECRET_NAME = re.compile(
    r"pass(word|wd|phrase)?|secret|token|api[-_]?key|auth|cookie|session|signature|"
    r"credential|private|bearer|sid$",
    re.IGNORECASE,
)
KINDS = ("screenshot", "trace", "html", "file")


@dataclass(frozen=True)
class File:
    """One file of evidence, as stored in ``artifacts``."""

    kind: str
    name: str
    content_type: str
    data: bytes


class Evidence:
    """The evidence of one attempt of one step. ``ctx.evidence`` is one of these.

    Every method is safe to call from the step's thread at any time; each
    returns ``None``. Text is capped, files are capped (:data:`MAX_FILE_BYTES`,
    :data:`MAX_TOTAL_BYTES`); what does not fit is left out with a note, never
    an error: recording evidence must not be what fails a step.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._secrets: set[str] = set()
        self._files: list[File] = []
        self._total = 0
        self._facts: dict[str, Any] = {}
        self._notes: dict[str, str] = {}
        self._actions: deque[str] = deque(maxlen=ACTIONS)
        self._log: deque[str] = deque(maxlen=LOG_LINES)
        self._omitted: list[str] = []

    # --------------------------------------------------------------- secrets
    def mask(self, *values: str | None) -> None:
        """Never show these values: they are replaced by ``[redacted]`` in all text."""
        with self._lock:
            self._secrets.update(v for v in values if isinstance(v, str) and len(v) >= 3)

    @property
    def masked(self) -> frozenset[str]:
        """The values handed to :meth:`mask` (for a bot that scrubs files of its own)."""
        with self._lock:
            return frozenset(self._secrets)

    def scrub(self, text: str) -> str:
        """``text`` with every masked value replaced by ``[redacted]``."""
        for secret in sorted(self._secrets, key=len, reverse=True):
            text = text.replace(secret, REDACTED)
        return text

    # ----------------------------------------------------------------- facts
    def page(self, *, url: str | None = None, title: str | None = None) -> None:
        """Where a web bot was: the page's URL (query secrets redacted) and title."""
        if url is not None:
            self._facts["url"] = self._line(redact_url(url))
        if title is not None:
            self._facts["title"] = self._line(title)

    def window(self, title: str | None) -> None:
        """The title of the desktop window a desktop bot was looking at."""
        if title is not None:
            self._facts["window_title"] = self._line(title)

    def action(self, text: str) -> None:
        """One thing the bot did ("clicked Save"); the last :data:`ACTIONS` are kept."""
        self._actions.append(self._line(text))

    def note(self, key: str, value: Any) -> None:
        """A fact for the reviewer (``note("order", "PO-4711")``), shown as text."""
        shown = REDACTED if SECRET_NAME.search(key) else self._line(str(value))
        self._notes[self._line(key)[:200]] = shown

    def http(self, *, request: Any = None, response: Any = None) -> None:
        """The last HTTP exchange, redacted: an ``httpx.Request``/``httpx.Response``
        (or anything with the same attributes), or a dict of method, url, headers, body."""
        if response is not None and request is None:
            request = (
                getattr(response, "request", None) if not isinstance(response, Mapping) else None
            )
        if request is not None:
            self._facts["request"] = self._message(request, ())
        if response is not None:
            self._facts["response"] = self._message(response, ("status_code", "status"))

    # ----------------------------------------------------------------- files
    def screenshot(
        self, data: bytes, *, name: str = "screenshot.png", content_type: str = "image/png"
    ) -> None:
        """A screenshot (PNG or JPEG bytes), shown inline on the review page."""
        self._add("screenshot", name, content_type, data)

    def trace(self, data: bytes | Path, *, name: str = "trace.zip") -> None:
        """A Playwright trace (the zip, or its path), offered as a download."""
        if isinstance(data, Path):
            data = data.read_bytes()
        self._add("trace", name, "application/zip", data)

    def html(
        self,
        text: str,
        *,
        url: str | None = None,
        title: str | None = None,
        name: str = "page.html",
    ) -> None:
        """A page's HTML. Reviewers see it as text, never as a page."""
        self.page(url=url, title=title)
        self._add("html", name, "text/plain; charset=utf-8", self.scrub(text).encode())

    def attach(
        self, name: str, data: bytes | str, *, content_type: str = "application/octet-stream"
    ) -> None:
        """Any other file (a download, an export), offered as a download."""
        if isinstance(data, str):
            data = self.scrub(data).encode()
            if content_type == "application/octet-stream":
                content_type = "text/plain; charset=utf-8"
        self._add("file", name, content_type, data)

    # ---------------------------------------------------------------- output
    @property
    def files(self) -> list[File]:
        with self._lock:
            return list(self._files)

    def record(self) -> dict[str, Any] | None:
        """The JSON kept on the review item (files excepted), or None when there is nothing."""
        out: dict[str, Any] = {}
        for key, value in self._facts.items():
            out[key] = self._scrub_json(value)
        if self._actions:
            out["actions"] = [self.scrub(a) for a in self._actions]
        if self._log:
            out["log"] = [self.scrub(line) for line in self._log]
        if self._notes:
            out["notes"] = {k: self.scrub(v) for k, v in self._notes.items()}
        if self._omitted:
            out["omitted"] = list(self._omitted)
        return out or None

    # -------------------------------------------------------------- logging
    def log_line(self, line: str) -> None:
        self._log.append(self._line(line))

    @contextmanager
    def capturing(self) -> Iterator[Evidence]:
        """Keep the log lines this thread emits while the block runs."""
        _install_handler()
        token = _CURRENT.set(self)
        try:
            yield self
        finally:
            _CURRENT.reset(token)

    # -------------------------------------------------------------- helpers
    def _line(self, text: str) -> str:
        text = str(text)
        return text if len(text) <= MAX_LINE else text[:MAX_LINE] + " …"

    def _add(self, kind: str, name: str, content_type: str, data: bytes) -> None:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"evidence {kind} {name!r}: give bytes, not {type(data).__name__}")
        data = bytes(data)
        name = _safe_name(name)
        with self._lock:
            if len(data) > MAX_FILE_BYTES:
                self._omitted.append(
                    f"{name}: {len(data)} bytes, over the {MAX_FILE_BYTES}-byte limit of one file"
                )
                return
            if self._total + len(data) > MAX_TOTAL_BYTES:
                self._omitted.append(
                    f"{name}: {len(data)} bytes would pass the {MAX_TOTAL_BYTES}-byte limit "
                    "of one attempt's files"
                )
                return
            self._total += len(data)
            self._files.append(File(kind, name, content_type, data))

    def _message(self, obj: Any, status_names: tuple[str, ...]) -> dict[str, Any]:
        if isinstance(obj, Mapping):
            raw = dict(obj)
            headers = raw.get("headers") or {}
            body = raw.get("body")
        else:
            raw = {}
            for attr in ("method", "url", *status_names):
                value = getattr(obj, attr, None)
                if value is not None and not callable(value):
                    raw[attr] = value
            headers = getattr(obj, "headers", {}) or {}
            body = _body_of(obj)
        out: dict[str, Any] = {}
        if "method" in raw:
            out["method"] = str(raw["method"])
        if raw.get("url") is not None:
            out["url"] = redact_url(str(raw["url"]))
        for name in status_names:
            if isinstance(raw.get(name), int):
                out["status"] = raw[name]
                break
        out["headers"] = redact_headers(headers)
        if body is not None:
            out["body"] = redact_body(body, _content_type(headers))
        return out

    def _scrub_json(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.scrub(value)
        if isinstance(value, dict):
            return {k: self._scrub_json(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._scrub_json(v) for v in value]
        return value


# ------------------------------------------------------------------ redaction
def redact_headers(headers: Any) -> dict[str, str]:
    """Headers as a dict, with secret-looking ones replaced by ``[redacted]``."""
    items = headers.multi_items() if hasattr(headers, "multi_items") else dict(headers).items()
    out: dict[str, str] = {}
    for name, value in items:
        name = str(name)
        shown = REDACTED if SECRET_NAME.search(name) else str(value)
        out[name] = f"{out[name]}, {shown}" if name in out else shown
    return out


def redact_url(url: str) -> str:
    """``url`` without a password and with secret-looking query values redacted."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{REDACTED}@{netloc.rpartition('@')[2]}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, REDACTED if SECRET_NAME.search(k) else v) for k, v in pairs])
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_body(body: Any, content_type: str = "") -> str:
    """A body as text (capped), with secret-looking JSON or form fields redacted."""
    if isinstance(body, bytes | bytearray):
        text = bytes(body).decode("utf-8", "replace")
    elif isinstance(body, str):
        text = body
    else:
        text = json.dumps(_redact_value(body), ensure_ascii=False, default=str)
        return _cap(text)
    if "json" in content_type or text.lstrip()[:1] in ("{", "["):
        try:
            return _cap(json.dumps(_redact_value(json.loads(text)), ensure_ascii=False))
        except ValueError:
            pass
    if "x-www-form-urlencoded" in content_type:
        pairs = parse_qsl(text, keep_blank_values=True)
        return _cap(urlencode([(k, REDACTED if SECRET_NAME.search(k) else v) for k, v in pairs]))
    return _cap(text)


def _redact_value(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: REDACTED if SECRET_NAME.search(str(k)) else _redact_value(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_redact_value(v) for v in value]
    return value


def _cap(text: str) -> str:
    if len(text) <= MAX_BODY:
        return text
    return text[:MAX_BODY] + f" … [{len(text) - MAX_BODY} more characters]"


def _content_type(headers: Any) -> str:
    try:
        return str(headers.get("content-type") or headers.get("Content-Type") or "")
    except AttributeError:
        return ""


def _body_of(obj: Any) -> Any:
    for attr in ("content", "body", "text"):
        try:
            value = getattr(obj, attr, None)
        except Exception:  # an unread streaming body: leave it out
            return None
        if value is not None and not callable(value):
            return value
    return None


def _safe_name(name: str) -> str:
    name = re.sub(r"[^\w.\- ]+", "_", str(name)).strip(" .") or "file"
    return name[:200]


# ----------------------------------------------------------------- log capture
_CURRENT: ContextVar[Evidence | None] = ContextVar("hub_evidence", default=None)
_FORMAT = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")


class _Capture(logging.Handler):
    """Copies each record emitted while a step runs into that step's evidence."""

    def emit(self, record: logging.LogRecord) -> None:
        evidence = _CURRENT.get()
        if evidence is None:
            return
        try:
            evidence.log_line(_FORMAT.format(record))
        except Exception:  # a record that cannot be formatted is not worth failing a step
            return


class _Mask(logging.Filter):
    """Scrubs the step's masked values from what ``ctx.log`` emits, for every handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        evidence = _CURRENT.get()
        if evidence is not None and evidence._secrets:
            try:
                message = record.getMessage()
            except Exception:  # leave a broken record to logging's own error report
                return True
            scrubbed = evidence.scrub(message)
            if scrubbed != message:
                record.msg, record.args = scrubbed, None
        return True


_HANDLER = _Capture(logging.INFO)
_installed = False
_install_lock = threading.Lock()


def _install_handler() -> None:
    """Hook the capture into the root logger once; make ``hub.step`` log at INFO."""
    global _installed
    if _installed:
        return
    with _install_lock:
        if _installed:
            return
        logging.getLogger().addHandler(_HANDLER)
        step_log = logging.getLogger("hub.step")
        step_log.addFilter(_Mask())
        if step_log.level == logging.NOTSET:
            step_log.setLevel(logging.INFO)
        _installed = True
