"""Evidence: what a failing step leaves for its reviewer, redacted, capped, and stored once.

The engine half runs on SQLite and PostgreSQL: a step records evidence and
fails; the review item holds the facts, ``artifacts`` the files, and nothing
masked reaches any table.
"""

from __future__ import annotations

import logging
import struct
import zlib
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text

from hub import BusinessError, Flow, StepContext, TransientError, step
from hub import evidence as ev
from hub import models as m
from hub.evidence import REDACTED, Evidence, redact_body, redact_headers, redact_url
from hub.testing import LocalHub

CANARY = "canary-Secr3t-7f1c"


def png(width: int = 4, height: int = 3) -> bytes:
    """A real PNG: a grey image, written by hand (no imaging library needed)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    raw = b"".join(b"\x00" + b"\x80" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


# ------------------------------------------------------------------ unit
def test_secret_looking_headers_are_redacted_and_others_kept() -> None:
    shown = redact_headers(
        {
            "Authorization": "Bearer abc",
            "Cookie": "sid=1",
            "X-Api-Key": "k",
            "Content-Type": "application/json",
            "X-Request-Id": "r-1",
        }
    )
    assert shown["Authorization"] == shown["Cookie"] == shown["X-Api-Key"] == REDACTED
    assert shown["Content-Type"] == "application/json"
    assert shown["X-Request-Id"] == "r-1"


def test_urls_lose_passwords_and_secret_query_values() -> None:
    url = redact_url("https://bot:hunter22@erp.example/api?order=7&access_token=xyz&apikey=q")
    assert "hunter22" not in url and "xyz" not in url and "=q" not in url
    assert url.startswith("https://[redacted]@erp.example/api?order=7")


def test_json_and_form_bodies_lose_secret_fields_at_any_depth() -> None:
    body = redact_body(
        b'{"user": "bot", "password": "pw", "nested": [{"client_secret": "s", "n": 1}]}',
        "application/json",
    )
    assert '"user": "bot"' in body and '"n": 1' in body
    assert '"pw"' not in body and '"s"' not in body
    form = redact_body("username=bot&password=pw&ref=7", "application/x-www-form-urlencoded")
    assert form == "username=bot&password=%5Bredacted%5D&ref=7"


def test_long_bodies_are_capped_with_a_note() -> None:
    body = redact_body("x" * (ev.MAX_BODY + 10), "text/plain")
    assert body.endswith("[10 more characters]")
    assert len(body) < ev.MAX_BODY + 40


def test_http_exchange_from_httpx_objects_is_recorded_redacted() -> None:
    request = httpx.Request(
        "POST",
        "https://crm.example/orders?token=abc",
        headers={"Authorization": "Bearer abc"},
        json={"ref": "A-1", "api_key": "abc"},
    )
    response = httpx.Response(
        422, headers={"Set-Cookie": "sid=9"}, json={"error": "bad zip"}, request=request
    )
    e = Evidence()
    e.http(response=response)
    record = e.record()
    assert record is not None
    assert record["request"]["method"] == "POST"
    assert record["request"]["headers"]["authorization"] == REDACTED
    assert '"ref": "A-1"' in record["request"]["body"]
    assert "abc" not in str(record)
    assert record["response"]["status"] == 422
    assert record["response"]["headers"]["set-cookie"] == REDACTED
    assert "bad zip" in record["response"]["body"]


def test_masked_values_vanish_from_every_text() -> None:
    e = Evidence()
    e.mask(CANARY)
    e.action(f"typed {CANARY} into the password box")
    e.note("customer", f"id {CANARY}")
    e.note("api_token", "whatever")
    e.html(f"<input value='{CANARY}'>", url=f"https://x.example/?q={CANARY}", title="Login")
    e.log_line(f"logging in with {CANARY}")
    e.attach("export.csv", f"a,b\n{CANARY},1\n")
    record = e.record()
    assert CANARY not in str(record)
    assert record is not None and record["notes"]["api_token"] == REDACTED
    assert all(CANARY.encode() not in f.data for f in e.files)
    assert e.scrub(f"error: {CANARY}!") == "error: [redacted]!"


def test_files_over_the_limits_are_left_out_with_a_note(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ev, "MAX_FILE_BYTES", 100)
    monkeypatch.setattr(ev, "MAX_TOTAL_BYTES", 150)
    e = Evidence()
    e.screenshot(b"x" * 101, name="huge.png")
    e.screenshot(b"x" * 80, name="one.png")
    e.screenshot(b"x" * 80, name="two.png")
    assert [f.name for f in e.files] == ["one.png"]
    record = e.record()
    assert record is not None
    assert "huge.png: 101 bytes, over the 100-byte limit of one file" in record["omitted"]
    assert any(line.startswith("two.png") for line in record["omitted"])


def test_file_names_cannot_carry_paths_or_header_tricks() -> None:
    e = Evidence()
    e.attach('../../etc/passwd"\r\nX: y', b"data")
    (f,) = e.files
    assert "/" not in f.name and '"' not in f.name and "\n" not in f.name


def test_giving_text_where_bytes_belong_is_a_clear_error() -> None:
    with pytest.raises(TypeError, match=r"evidence screenshot 'screenshot\.png': give bytes"):
        Evidence().screenshot("not bytes")  # type: ignore[arg-type]


def test_log_lines_are_captured_only_inside_the_block_and_only_the_last_kept() -> None:
    e = Evidence()
    log = logging.getLogger("hub.step")
    log.info("before")
    with e.capturing():
        for n in range(ev.LOG_LINES + 5):
            log.info("line %d", n)
        logging.getLogger("some.library").warning("library warning")
    log.info("after")
    record = e.record()
    assert record is not None
    lines = record["log"]
    assert len(lines) == ev.LOG_LINES
    assert "line 6" in lines[0] and "library warning" in lines[-1]
    assert not any("before" in x or "after" in x for x in lines)


def test_masked_values_are_scrubbed_from_what_ctx_log_writes_anywhere(
    caplog: pytest.LogCaptureFixture,
) -> None:
    e = Evidence()
    e.mask(CANARY)
    with caplog.at_level(logging.INFO, logger="hub.step"), e.capturing():
        logging.getLogger("hub.step").info("password is %s", CANARY)
    logging.getLogger("hub.step").info("outside the step: %s", CANARY)  # no evidence: as is
    messages = [r.getMessage() for r in caplog.records]
    assert "password is [redacted]" in messages
    assert CANARY not in messages[0]


# ---------------------------------------------------------- engine, both DBs
class Order(dict[str, Any]):
    pass


@step(retries=0)
def key_in(ctx: StepContext, data: dict[str, Any]) -> dict[str, Any]:
    ctx.evidence.mask(CANARY)
    ctx.log.info("logging in as bot with %s", CANARY)
    ctx.evidence.page(url="http://legacy.local/orders/new", title="New order")
    ctx.evidence.action("filled postal code")
    ctx.evidence.action("clicked Save")
    ctx.evidence.screenshot(png(), name="order-form.png")
    ctx.evidence.html("<p class=err>Postal code 1234 is not valid</p><script>x()</script>")
    ctx.evidence.trace(b"PK\x03\x04 not really a zip")
    ctx.evidence.note("order", data["ref"])
    raise BusinessError(f"the legacy app refused postal code {data['zip']} (session {CANARY})")


@step(retries=2, backoff=0)
def flaky(ctx: StepContext, data: dict[str, Any]) -> dict[str, Any]:
    ctx.evidence.note("attempt", ctx.attempt)
    ctx.evidence.screenshot(png(), name=f"attempt-{ctx.attempt}.png")
    ctx.log.info("attempt %d", ctx.attempt)
    if ctx.attempt < 3:
        raise TransientError("system busy")
    raise BusinessError("still refused")


@step
def fine(ctx: StepContext, data: dict[str, Any]) -> dict[str, Any]:
    ctx.evidence.screenshot(png(), name="unused.png")
    return data


FLOWS = [
    Flow("entry", [key_in]),
    Flow("flaky", [flaky]),
    Flow("fine", [fine]),
]


def the_item(hub: LocalHub, run_id: str) -> m.ReviewItem:
    with hub.store.read() as s:
        item = s.scalar(select(m.ReviewItem).where(m.ReviewItem.run_id == run_id))
        assert item is not None
        s.expunge(item)
        return item


def files(hub: LocalHub, run_id: str) -> list[m.Artifact]:
    with hub.store.read() as s:
        rows = list(
            s.scalars(select(m.Artifact).where(m.Artifact.run_id == run_id).order_by(m.Artifact.id))
        )
        for row in rows:
            s.expunge(row)
        return rows


def test_a_step_sent_to_review_keeps_its_evidence_with_the_item(
    local_hub: Callable[..., LocalHub],
) -> None:
    hub = local_hub(FLOWS)
    run_id = hub.start("entry", {"ref": "PO-4711", "zip": "1234"})
    hub.drain()
    item = the_item(hub, run_id)
    assert item.reason == "business"
    record = item.evidence
    assert record["url"] == "http://legacy.local/orders/new"
    assert record["title"] == "New order"
    assert record["actions"] == ["filled postal code", "clicked Save"]
    assert record["notes"] == {"order": "PO-4711"}
    assert any("logging in as bot with [redacted]" in line for line in record["log"])
    kept = files(hub, run_id)
    assert [(f.kind, f.name, f.content_type) for f in kept] == [
        ("screenshot", "order-form.png", "image/png"),
        ("html", "page.html", "text/plain; charset=utf-8"),
        ("trace", "trace.zip", "application/zip"),
    ]
    assert all(f.item_id == item.id and f.attempt == 1 for f in kept)
    assert kept[0].data == png() and kept[0].size == len(png())
    assert b"Postal code 1234 is not valid" in kept[1].data


def test_a_masked_secret_reaches_no_table(local_hub: Callable[..., LocalHub]) -> None:
    hub = local_hub(FLOWS)
    run_id = hub.start("entry", {"ref": "PO-4711", "zip": "1234"})
    hub.drain()
    assert "session [redacted]" in the_item(hub, run_id).message
    found = []
    with hub.store.read() as s:
        for table in m.Base.metadata.sorted_tables:
            for row in s.execute(select(table)).all():
                for value in row:
                    if isinstance(value, bytes):
                        value = value.decode("utf-8", "replace")
                    if CANARY in str(value):
                        found.append(table.name)
    assert found == []


def test_only_the_attempt_that_sent_the_step_to_review_leaves_evidence(
    local_hub: Callable[..., LocalHub],
) -> None:
    hub = local_hub(FLOWS)
    run_id = hub.start("flaky", {})
    hub.drain()
    item = the_item(hub, run_id)
    assert item.evidence["notes"] == {"attempt": "3"}
    assert item.evidence["log"][-1].endswith("attempt 3")
    assert [(f.name, f.attempt) for f in files(hub, run_id)] == [("attempt-3.png", 3)]


def test_a_step_that_succeeds_stores_no_evidence(local_hub: Callable[..., LocalHub]) -> None:
    hub = local_hub(FLOWS)
    run_id = hub.start("fine", {"a": 1})
    hub.drain()
    assert hub.run(run_id)["status"] == "succeeded"
    assert files(hub, run_id) == []
    with hub.store.read() as s:
        assert s.scalar(select(text("count(*)")).select_from(m.Artifact)) == 0
