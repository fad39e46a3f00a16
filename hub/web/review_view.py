"""What the review pages show of the queue and of an item: times, diffs, rights, evidence.

Pure functions from the service's views (:func:`hub.reviews.queue`,
:func:`hub.reviews.detail`) to template context, as ``run_view`` is for the
run page. Times are UTC, shown to the minute; durations in words a person
reads at a glance. Data is shown as text, never as markup.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from hub import reviews
from hub.auth import Principal
from hub.web import forms
from hub.web.run_view import as_text

#: Bytes of a page's HTML shown on the item page; the whole file is a download.
PAGE_TEXT = 200 * 1024


def when(value: str | None) -> str:
    """An ISO time from the service as the pages show it: ``2026-05-01 12:30`` (UTC)."""
    return value.replace("T", " ")[:16] if value else "\u2013"


def _parse(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.removesuffix("Z")) if value else None


def span(seconds: float) -> str:
    """A duration in words a person reads at a glance: ``45 s``, ``12 min``, ``3 h 5 min``, ``2 d 4 h``."""
    seconds = abs(seconds)
    if seconds < 60:
        return f"{int(seconds)} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def _due(row: dict[str, Any], now: datetime) -> str:
    due = _parse(row.get("due_at"))
    if due is None:
        return "no due time"
    if row.get("overdue"):
        return f"overdue by {span((now - due).total_seconds())}"
    if row.get("status") != reviews.OPEN:
        return ""
    return f"due in {span((due - now).total_seconds())}"


def queue_row(item: dict[str, Any], now: datetime) -> dict[str, Any]:
    """One row of the queue (or the item page's header): times in words, the message cut short."""
    created = _parse(item["created_at"])
    until = _parse(item.get("resolved_at")) or now
    message = item.get("message") or ""
    return {
        **item,
        "created": when(item["created_at"]),
        "age": span((until - created).total_seconds()) if created else "",
        "due": when(item.get("due_at")),
        "due_text": _due(item, now),
        "short": message if len(message) <= 160 else message[:157] + "…",
    }


def _shown(value: Any) -> str:
    return "(none)" if value is None else as_text(value)


def changes(before: Any, after: Any, path: str = "") -> list[dict[str, str]]:
    """Field-level differences of two JSON values: ``{path, before, after}`` per changed leaf."""
    if isinstance(before, dict) and isinstance(after, dict):
        out: list[dict[str, str]] = []
        for key in list(before) + [k for k in after if k not in before]:
            sub = f"{path}.{key}" if path else str(key)
            if key not in after:
                out.append({"path": sub, "before": _shown(before[key]), "after": "(removed)"})
            elif key not in before:
                out.append({"path": sub, "before": "(none)", "after": _shown(after[key])})
            else:
                out += changes(before[key], after[key], sub)
        return out
    if before == after:
        return []
    return [{"path": path or "(whole value)", "before": _shown(before), "after": _shown(after)}]


def audit_trail(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for entry in entries:
        before, after = entry.get("before") or {}, entry.get("after") or {}
        state, data = [], []
        if isinstance(before, dict) and isinstance(after, dict):
            for key in ("status", "assignee", "resolution", "reason", "note"):
                if key in after and before.get(key) != after.get(key):
                    state.append(
                        {
                            "path": key,
                            "before": _shown(before.get(key)),
                            "after": _shown(after[key]),
                        }
                    )
            if "input" in after:
                data = changes(before.get("input"), after["input"])
        action = str(entry.get("action") or "").removeprefix("review.")
        text = after.get("text") if isinstance(after, dict) else None
        out.append(
            {
                **entry,
                "what": action,
                "when": when(entry.get("at")),
                "state": state,
                "diff": data,
                "text": text,
            }
        )
    return out


def rights(who: Principal, item: dict[str, Any]) -> dict[str, Any]:
    """What the reader may do on the item, so the page offers only that (the service decides)."""
    is_open = item["status"] == reviews.OPEN
    holder = item.get("assignee")
    taken = holder not in (None, who.name) and not who.can("operator")
    reviewer = who.can("reviewer")
    return {
        "comment": reviewer,
        "act": reviewer and is_open and not taken,
        "claim": reviewer and is_open and holder is None,
        "unclaim": reviewer and is_open and holder is not None and not taken,
        "assign": who.can("operator") and is_open,
        "taken_by": holder if taken and is_open else None,
    }


def size_text(size: Any) -> str:
    """A file's size for people: ``512 bytes``, ``1.4 KB``, ``3.2 MB``."""
    if not isinstance(size, int):
        return ""
    if size < 1024:
        return f"{size} bytes"
    if size < 1024 * 1024:
        return f"{size / 1024:.1f} KB"
    return f"{size / 1024 / 1024:.1f} MB"


def http_text(message: Any) -> str:
    """A recorded request or response as a person reads HTTP: first line, headers, body."""
    if not isinstance(message, dict):
        return as_text(message)
    first = " ".join(str(message[k]) for k in ("method", "url") if message.get(k))
    if message.get("status") is not None:
        first = f"{first} status {message['status']}".strip()
    headers = message.get("headers")
    lines = [first] if first else []
    if isinstance(headers, dict):
        lines += [f"{name}: {value}" for name, value in headers.items()]
    if message.get("body") not in (None, ""):
        lines += ["", as_text(message["body"])]
    return "\n".join(lines)


def page_text(data: bytes) -> tuple[str, bool]:
    """A page's HTML to show as text: UTF-8 (bad bytes replaced), cut at :data:`PAGE_TEXT` bytes."""
    return data[:PAGE_TEXT].decode("utf-8", errors="replace"), len(data) > PAGE_TEXT


def item_context(
    item: dict[str, Any], who: Principal, now: datetime, users: list[str]
) -> dict[str, Any]:
    """The item page's template context from a :func:`hub.reviews.detail` view."""
    question = bool(item.get("form_schema"))
    edit = forms.build(item.get("input_schema"), "input", item.get("current_input"))
    complete = forms.build(
        item.get("form_schema") or item.get("output_schema"),
        "output",
        None if question else item.get("current_input"),
    )
    artifacts = [
        {
            **a,
            "href": f"/reviews/{item['id']}/artifacts/{a['id']}",
            "size_text": size_text(a.get("size")),
        }
        for a in item.get("artifacts") or []
    ]
    found = item.get("evidence")
    evidence: dict[str, Any] = found if isinstance(found, dict) else {}
    return {
        "item": item,
        "row": queue_row(item, now),
        "run": item["run"],
        "rights": rights(who, item),
        "users": users,
        "question": question,
        "edit": edit,
        "complete": complete,
        "input_text": as_text(item.get("current_input")),
        "original_text": as_text(item.get("input")),
        "edited": item.get("input") != item.get("current_input"),
        "audit": audit_trail(item.get("audit") or []),
        "screenshots": [a for a in artifacts if a.get("kind") == "screenshot"],
        "pages": [a for a in artifacts if a.get("kind") == "html"],
        "files": [a for a in artifacts if a.get("kind") not in ("screenshot", "html")],
        "evidence": evidence,
        "request_text": http_text(evidence.get("request")),
        "response_text": http_text(evidence.get("response")),
        "kept": {},
        "kept_errors": {},
        "action": None,
        "problem": None,
        "problem_status": None,
        "done": None,
    }
