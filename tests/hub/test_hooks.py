"""``hub.hooks`` as pure functions: the de-duplication key, content types, parsing, headers kept."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pytest

from hub import Webhook
from hub.hooks import Refused, content_kind, delivery_key, kept_headers, parse, wait_seconds

HMAC = Webhook("h", verify="hmac", secret="env:S", header="X-Sig", timestamp_header="X-Sig-Time")
SLACK = Webhook("s", verify="slack", secret="env:S")


def test_a_signed_provider_id_is_the_key() -> None:
    assert delivery_key("standard", "msg_1", datetime.now(UTC), b"{}") == "id:msg_1"
    long_id = "x" * 250
    assert delivery_key("stripe", long_id, None, b"{}") == (
        "id-sha256:" + hashlib.sha256(long_id.encode()).hexdigest()
    )


def test_githubs_unsigned_delivery_id_is_not_the_key_its_body_is() -> None:
    key = delivery_key("github", "d-1", None, b'{"a":1}')
    assert key == "sha256:" + hashlib.sha256(b'{"a":1}').hexdigest()
    assert delivery_key("github", "d-2-forged", None, b'{"a":1}') == key


def test_without_an_id_the_signed_time_and_the_body_make_the_key() -> None:
    at = datetime(2025, 3, 4, 12, 0, tzinfo=UTC)
    later = datetime(2025, 3, 4, 12, 0, 5, tzinfo=UTC)
    assert delivery_key("hmac", None, at, b"{}") == delivery_key("hmac", None, at, b"{}")
    assert delivery_key("hmac", None, at, b"{}") != delivery_key("hmac", None, later, b"{}")
    assert delivery_key("hmac", None, at, b"{}") != delivery_key("hmac", None, at, b"[]")


@pytest.mark.parametrize(
    "media", ["application/json", "Application/JSON; charset=utf-8", "application/cloudevents+json"]
)
def test_json_media_types_are_accepted(media: str) -> None:
    assert content_kind(HMAC, media) == "json"


@pytest.mark.parametrize("media", [None, "", "text/json", "application/x-www-form-urlencoded"])
def test_other_media_types_are_415(media: str | None) -> None:
    with pytest.raises(Refused) as refused:
        content_kind(HMAC, media)
    assert refused.value.status == 415


def test_only_slack_hooks_take_form_posts() -> None:
    assert content_kind(SLACK, "application/x-www-form-urlencoded") == "form"
    assert parse("form", b"command=%2Fdeploy&text=prod") == {"command": "/deploy", "text": "prod"}
    assert parse("form", b"payload=%7B%22type%22%3A%22x%22%7D") == {"type": "x"}


@pytest.mark.parametrize("body", [b"{", b"\xff\xfe{", b'{"a": NaN}', b"[" * 100_000])
def test_bodies_that_are_not_plain_json_are_400(body: bytes) -> None:
    with pytest.raises(Refused) as refused:
        parse("json", body)
    assert (refused.value.status, refused.value.reason) == (400, "malformed")


def test_signatures_tokens_and_cookies_are_not_kept_but_the_signed_time_is() -> None:
    headers = {
        "Content-Type": "application/json",
        "X-Sig": "abc",
        "X-Sig-Time": "1700000000",
        "Authorization": "Bearer t",
        "Cookie": "a=b",
        "X-Api-Key": "k",
        "X-Hub-Signature-256": "sha256=00",
        "User-Agent": "sender/1",
    }
    assert kept_headers(HMAC, headers) == {
        "content-type": "application/json",
        "x-sig-time": "1700000000",
        "user-agent": "sender/1",
    }


def test_the_wait_comes_from_the_query_or_prefer_and_is_capped() -> None:
    assert wait_seconds(None, None) == 0
    assert wait_seconds("2.5", None) == 2.5
    assert wait_seconds(None, 'respond-async, wait="7"') == 7
    assert wait_seconds("600", None) == 30
    for bad in ("soon", "-1", "nan"):
        with pytest.raises(Refused):
            wait_seconds(bad, None)
