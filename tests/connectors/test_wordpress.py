"""The WordPress connector against the WordPress sandbox over real HTTP on loopback: the
contract, then what only WordPress has: pages of posts, slugs and drafts, the step's key in
post meta, trash and force delete, media uploads, and WordPress's errors as the hub's."""

from __future__ import annotations

import base64
import json
import logging
import re
import struct
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from connectors.cms import CmsError
from connectors.wordpress import WordPressClient, WordPressConnector
from hub.connections import ConnectionConfig, Connectors
from hub.errors import BusinessError, TransientError
from hub.settings import Settings
from tests.connectors.conftest import Outside
from tests.connectors.contract import Contract, context
from tests.sandbox.wordpress import WordPressSandbox

CANARY = "Wp7q Canr yA99 xk2L m3Pz Q8vT"
AUTHOR_PASSWORD = "Auth 0rPw dxxx 1234 abcd EFGH"
VARIABLE = "WP_APP_PASSWORD"
POSTS = "/wp-json/wp/v2/posts"


@pytest.fixture(scope="module")
def sandbox() -> Iterator[WordPressSandbox]:
    with WordPressSandbox(app_password=CANARY, author_app_password=AUTHOR_PASSWORD) as site:
        yield site


@pytest.fixture(autouse=True)
def clean(sandbox: WordPressSandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    sandbox.reset()
    monkeypatch.setenv(VARIABLE, CANARY)
    monkeypatch.setenv("WP_AUTHOR_PASSWORD", AUTHOR_PASSWORD)


def settings(sandbox: WordPressSandbox, **changes: Any) -> dict[str, Any]:
    return {
        "kind": "wordpress",
        "url": sandbox.url,
        "auth": {"kind": "basic", "username": "admin", "password": f"env:{VARIABLE}"},
        "backoff": 0.01,
        **changes,
    }


@contextmanager
def site(sandbox: WordPressSandbox, **changes: Any) -> Iterator[WordPressConnector]:
    config = ConnectionConfig.model_validate({"name": "site", **settings(sandbox, **changes)})
    connectors = Connectors(Settings(), configs={"site": config})
    try:
        yield connectors.connector("site")
    finally:
        connectors.shutdown()


@pytest.fixture
def connector(sandbox: WordPressSandbox) -> Iterator[WordPressConnector]:
    with site(sandbox) as made:
        yield made


@pytest.fixture
def wp(connector: WordPressConnector) -> WordPressClient:
    return connector.bind(context())


@pytest.fixture
def author(sandbox: WordPressSandbox) -> Iterator[WordPressClient]:
    auth = {"kind": "basic", "username": "author", "password": "env:WP_AUTHOR_PASSWORD"}
    with site(sandbox, auth=auth) as made:
        yield made.bind(context())


def calls(sandbox: WordPressSandbox, method: str, path: str = POSTS) -> list[str]:
    """The query strings of the calls of ``method`` to ``path``."""
    return [c.query for c in sandbox.calls if c.method == method and c.path == path]


def live(sandbox: WordPressSandbox) -> list[Any]:
    return [p for p in sandbox.posts() if p.status != "trash"]


def png(width: int, height: int) -> bytes:
    """A small valid PNG image."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows = zlib.compress(b"".join(b"\0" * (width + 1) for _ in range(height)))
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")
    )


# --------------------------------------------------------------- the contract
class Driver:
    canary = CANARY
    variable = VARIABLE
    refusal = "Invalid parameter(s): per_page"

    def __init__(self, sandbox: WordPressSandbox, outside: Outside) -> None:
        self.sandbox, self.outside_server = sandbox, outside

    def config(self, **changes: Any) -> dict[str, Any]:
        return settings(self.sandbox, **changes)

    def create(self, client: WordPressClient, ref: str) -> Any:
        return client.create_post(f"Record {ref}", "Made by the contract.", "publish", slug=ref)[
            "id"
        ]

    def effects(self, ref: str) -> int:
        # a second post would get the slug REF-2: count those too
        pattern = re.compile(rf"{re.escape(ref)}(-\d+)?")
        return sum(1 for post in live(self.sandbox) if pattern.fullmatch(post.slug))

    def fail_transient(self, times: int) -> None:
        self.sandbox.fail_next(times, 503)

    def refused(self, client: WordPressClient) -> None:
        list(client.list_posts(per_page=500))

    def outside(self, client: WordPressClient) -> None:
        client.download(f"{self.outside_server.url}/wp-content/uploads/2024/01/steal.png")

    def sent_outside(self) -> int:
        return len(self.outside_server.hits)


class TestWordPressContract(Contract):
    @pytest.fixture
    def driver(
        self, sandbox: WordPressSandbox, outside: Outside, monkeypatch: pytest.MonkeyPatch
    ) -> Driver:
        monkeypatch.setenv(VARIABLE, CANARY)
        outside.hits.clear()
        return Driver(sandbox, outside)


# --------------------------------------------------------------------- check
def test_check_says_who_is_logged_in_where(sandbox: WordPressSandbox) -> None:
    with site(sandbox) as made:
        assert made.check() == f"logged in to {sandbox.url} as Site Admin (administrator)"
    auth = {"kind": "basic", "username": "author", "password": "env:WP_AUTHOR_PASSWORD"}
    with site(sandbox, auth=auth) as made:
        assert made.check() == f"logged in to {sandbox.url} as Post Author (author)"
    assert calls(sandbox, "GET", "/wp-json/wp/v2/users/me") == ["context=edit"] * 2


def test_the_url_may_name_the_api_root(sandbox: WordPressSandbox) -> None:
    with site(sandbox, url=f"{sandbox.url}/wp-json/wp/v2/") as made:
        made.bind(context()).create_post("Rooted", "Text.", "publish", slug="rooted")
    assert [c.path for c in sandbox.calls if c.method == "POST"] == [POSTS]


# ---------------------------------------------------------------- listings
def test_a_listing_walks_every_page(sandbox: WordPressSandbox, wp: WordPressClient) -> None:
    ids = sandbox.seed_posts(35)
    found = [post["id"] for post in wp.list_posts(per_page=10)]
    assert found == ids[::-1]  # newest first, each once
    assert calls(sandbox, "GET") == [f"per_page=10&page={n}" for n in (1, 2, 3, 4)]


def test_list_filters_are_sent_as_wordpress_reads_them(
    sandbox: WordPressSandbox, wp: WordPressClient
) -> None:
    sandbox.seed_posts(5)
    sandbox.seed_posts(2, status="draft")
    chosen = wp.list_posts(slug=["post-1", "post-3"], orderby="slug", order="asc")
    assert [post["slug"] for post in chosen] == ["post-1", "post-3"]
    assert len(list(wp.list_posts(status="draft"))) == 2
    assert list(wp.list_posts(search="nothing like it")) == []


# ---------------------------------------------- creates, drafts and idempotency
def test_a_draft_has_no_slug_and_is_found_again_by_the_steps_key(
    sandbox: WordPressSandbox, connector: WordPressConnector
) -> None:
    first = connector.bind(context()).create_post("Weekly report", "Numbers.", "draft")
    again = connector.bind(context()).create_post("Weekly report", "Numbers.", "draft")
    assert again == first
    assert (first["slug"], first["generated_slug"]) == ("", "weekly-report")
    assert first["meta"] == {"hub_key": "run-1:step"}
    other = connector.bind(context("run-2:step")).create_post("Weekly report", "More.", "draft")
    assert other["id"] != first["id"]  # another step's draft of the same title is its own
    assert [p.meta["hub_key"] for p in sandbox.posts()] == ["run-1:step", "run-2:step"]
    assert len(calls(sandbox, "POST")) == 2


def test_each_create_of_a_step_gets_its_own_key_the_same_on_every_attempt(
    sandbox: WordPressSandbox, connector: WordPressConnector
) -> None:
    for _ in range(2):  # the step, then its retry
        wp = connector.bind(context())
        wp.create_post("Same title", "One.", "draft")
        wp.create_post("Same title", "Two.", "draft")
    assert [(p.content, p.meta) for p in sandbox.posts()] == [
        ("One.", {"hub_key": "run-1:step"}),
        ("Two.", {"hub_key": "run-1:step-2"}),
    ]


def test_a_key_given_by_the_flow_wins(
    sandbox: WordPressSandbox, connector: WordPressConnector
) -> None:
    made = connector.bind(context("run-1:a")).create_post("Order 42", "x", key="order-42")
    again = connector.bind(context("run-9:b")).create_post("Order 42", "x", key="order-42")
    assert again["id"] == made["id"]
    assert [p.meta for p in sandbox.posts()] == [{"hub_key": "order-42"}]


def test_a_slug_finds_the_post_in_any_status(
    sandbox: WordPressSandbox, connector: WordPressConnector
) -> None:
    draft = connector.bind(context()).create_post("Launch", "Soon.", "draft", slug="launch")
    assert (draft["slug"], draft["status"]) == ("launch", "draft")  # a given slug is kept
    again = connector.bind(context("run-2:step")).create_post(
        "Launch!", "Now.", "publish", slug="Launch"
    )
    assert (again["id"], again["status"]) == (draft["id"], "draft")  # returned as it is
    connector.bind(None).update_post(draft["id"], status="publish")
    published = connector.bind(None).create_post("Launch", "Now.", "publish", slug="launch")
    assert (published["id"], published["status"]) == (draft["id"], "publish")
    assert [p.slug for p in sandbox.posts()] == ["launch"]
    assert connector.bind(None).find_post(slug="launch") == published
    assert connector.bind(None).find_post(slug="no-such-post") is None


def test_an_existing_published_post_is_returned_not_a_second_one_made(
    sandbox: WordPressSandbox, wp: WordPressClient
) -> None:
    (seeded,) = sandbox.seed_posts(1)
    found = wp.create_post("Something else", "x", "publish", slug="post-1")
    assert found["id"] == seeded
    assert [p.slug for p in sandbox.posts()] == ["post-1"]
    assert calls(sandbox, "POST") == []


class LosingTransport(httpx.BaseTransport):
    """Passes every request on, but loses the answer to the first POST (a timeout after
    WordPress made the post)."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner, self.lost = inner, False

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if request.method == "POST" and not self.lost:
            self.lost = True
            response.read()
            response.close()
            raise httpx.ReadTimeout("the answer was lost", request=request)
        return response

    def close(self) -> None:
        self.inner.close()


@pytest.mark.parametrize("slug", ["lost-answer", None])
def test_a_create_whose_answer_was_lost_is_looked_up_before_it_is_sent_again(
    sandbox: WordPressSandbox, connector: WordPressConnector, slug: str | None
) -> None:
    connector.client._transport = LosingTransport(connector.client._transport)
    post = connector.bind(context()).create_post("Lost answer", "x", "publish", slug=slug)
    assert [p.id for p in sandbox.posts()] == [post["id"]]
    assert [c.method for c in sandbox.calls] == ["GET", "POST", "GET"]


class DroppingMeta(httpx.BaseTransport):
    """A site that has not registered the key's meta field: WordPress drops it."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST" and request.url.path == POSTS:
            body = json.loads(request.read())
            body.get("meta", {}).pop("hub_key", None)
            headers = {k: v for k, v in request.headers.items() if k != "content-length"}
            request = httpx.Request("POST", request.url, headers=headers, json=body)
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


def test_a_site_that_drops_the_key_field_is_warned_about_once(
    sandbox: WordPressSandbox, connector: WordPressConnector, caplog: pytest.LogCaptureFixture
) -> None:
    connector.client._transport = DroppingMeta(connector.client._transport)
    for _ in range(2):
        connector.bind(context()).create_post("Unkeyed", "x", "draft")
    assert len(sandbox.posts()) == 2  # what the warning is about
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "did not keep the post meta field 'hub_key'" in warnings[0]
    assert "register_post_meta" in warnings[0]


def test_key_meta_off_sends_no_key(sandbox: WordPressSandbox) -> None:
    with site(sandbox, options={"key_meta": ""}) as made:
        made.bind(context()).create_post("Plain", "x", "draft")
        made.bind(context()).create_post("Plain", "x", "draft")
    assert [p.meta for p in sandbox.posts()] == [{}, {}]
    assert calls(sandbox, "GET") == []


def test_without_a_step_or_a_slug_a_create_is_made_as_asked(
    sandbox: WordPressSandbox, connector: WordPressConnector
) -> None:
    connector.bind(None).create_post("Script", "x")
    connector.bind(None).create_post("Script", "x")
    assert [p.status for p in sandbox.posts()] == ["draft", "draft"]
    assert [c.method for c in sandbox.calls] == ["POST", "POST"]


# ------------------------------------------------------- update, get, delete
def test_update_changes_only_the_given_fields(
    sandbox: WordPressSandbox, wp: WordPressClient
) -> None:
    post = wp.create_post("Old title", "Kept content.", "draft")
    updated = wp.update_post(post["id"], title="New title", status="publish")
    assert (updated["title"]["raw"], updated["status"], updated["slug"]) == (
        "New title",
        "publish",
        "new-title",
    )
    (stored,) = sandbox.posts()
    assert (stored.title, stored.content) == ("New title", "Kept content.")
    assert wp.get_post(post["id"])["title"]["raw"] == "New title"


def test_an_unknown_id_is_rest_post_invalid_id(
    sandbox: WordPressSandbox, wp: WordPressClient
) -> None:
    with pytest.raises(CmsError) as caught:
        wp.get_post(999)
    assert (caught.value.code, caught.value.status) == ("rest_post_invalid_id", 404)
    assert "Invalid post ID." in str(caught.value)
    assert isinstance(caught.value, BusinessError)
    with pytest.raises(CmsError, match="rest_post_invalid_id"):
        wp.update_post(999, title="x")
    assert len(sandbox.calls) == 2  # not retried


def test_delete_moves_to_the_trash_and_force_deletes(
    sandbox: WordPressSandbox, wp: WordPressClient
) -> None:
    post = wp.create_post("Doomed", "x", "publish", slug="doomed")
    trashed = wp.delete_post(post["id"])
    assert trashed is not None and trashed["status"] == "trash"
    assert [(p.status, p.slug) for p in sandbox.posts()] == [("trash", "doomed__trashed")]
    assert wp.find_post(slug="doomed") is None
    again = wp.delete_post(post["id"])  # already in the trash: done, no error
    assert again is not None and again["status"] == "trash"

    gone = wp.delete_post(post["id"], force=True)
    assert gone is not None and gone["deleted"] is True and gone["previous"]["id"] == post["id"]
    assert sandbox.posts() == []
    with pytest.raises(CmsError, match="rest_post_invalid_id"):
        wp.delete_post(post["id"], force=True)
    assert wp.delete_post(post["id"], force=True, missing_ok=True) is None


def test_pages_have_the_same_calls(sandbox: WordPressSandbox, wp: WordPressClient) -> None:
    about = wp.create_page("About", "Us.", "publish", slug="about")
    team = wp.create_page("Team", "All of us.", "publish", slug="team", parent=about["id"])
    assert wp.create_page("About", "Us.", "publish", slug="about")["id"] == about["id"]
    assert [(p.slug, p.parent) for p in sandbox.pages()] == [("about", 0), ("team", about["id"])]
    assert wp.find_page(slug="team") == wp.get_page(team["id"])
    assert [p["id"] for p in wp.list_pages(orderby="id", order="asc")] == [about["id"], team["id"]]
    wp.update_page(team["id"], menu_order=3)
    assert wp.delete_page(team["id"], force=True) is not None
    assert [p.slug for p in sandbox.pages()] == ["about"]
    assert sandbox.posts() == []


# --------------------------------------------------------------------- media
def test_a_file_uploaded_is_downloadable_from_its_source_url(
    sandbox: WordPressSandbox, wp: WordPressClient
) -> None:
    image = png(3, 2)
    media = wp.upload_media("Summer banner.png", image, "image/png", alt_text="Sale")
    assert media["mime_type"] == "image/png"
    assert media["alt_text"] == "Sale"
    assert (media["media_details"]["width"], media["media_details"]["height"]) == (3, 2)
    assert media["source_url"].startswith(f"{sandbox.url}/wp-content/uploads/")
    assert media["source_url"].endswith("/Summer-banner.png")
    assert wp.download(media["source_url"]) == image
    assert httpx.get(media["source_url"]).content == image
    assert [m.data for m in sandbox.media()] == [image]


def test_a_file_name_outside_ascii_is_sent_as_rfc_6266_says(
    sandbox: WordPressSandbox, wp: WordPressClient
) -> None:
    media = wp.upload_media("Prüfbericht März.pdf", b"%PDF-1.4 report", "application/pdf")
    assert media["source_url"].endswith("/Prüfbericht-März.pdf")
    assert wp.download(media["source_url"]) == b"%PDF-1.4 report"


def test_an_upload_refused_is_a_business_error_even_when_wordpress_answers_500(
    sandbox: WordPressSandbox, wp: WordPressClient
) -> None:
    with pytest.raises(CmsError) as caught:
        wp.upload_media("tool.exe", b"MZ", "application/octet-stream")
    assert caught.value.code == "rest_upload_sideload_error"
    assert "Sorry, you are not allowed to upload this file type." in str(caught.value)
    assert len(calls(sandbox, "POST", "/wp-json/wp/v2/media")) == 1  # not retried
    assert sandbox.media() == []


def test_an_upload_is_made_once_with_reuse(sandbox: WordPressSandbox, wp: WordPressClient) -> None:
    image = png(1, 1)
    first = wp.upload_media("logo.png", image, "image/png", reuse=True)
    assert wp.upload_media("logo.png", image, "image/png", reuse=True)["id"] == first["id"]
    other = wp.upload_media("logo.png", png(2, 2), "image/png", reuse=True)  # another size
    plain = wp.upload_media("logo.png", image, "image/png")
    assert [m.file.rsplit("/", 1)[1] for m in sandbox.media()] == [
        "logo.png",
        "logo-1.png",
        "logo-2.png",
    ]
    assert len({first["id"], other["id"], plain["id"]}) == 3


def test_a_transient_failure_during_an_upload_is_retried(
    sandbox: WordPressSandbox, wp: WordPressClient
) -> None:
    sandbox.fail_next(2, 502)
    media = wp.upload_media("retry.txt", b"again", "text/plain")
    assert [m.id for m in sandbox.media()] == [media["id"]]
    assert [c.status for c in sandbox.calls] == [502, 502, 201]


# -------------------------------------------------------------------- errors
def test_the_authors_403_is_a_business_error_naming_the_user(
    sandbox: WordPressSandbox, wp: WordPressClient, author: WordPressClient
) -> None:
    post = wp.create_post("Admin's", "x", "publish", slug="admins")
    with pytest.raises(CmsError) as caught:
        author.update_post(post["id"], title="Mine now")
    error = caught.value
    assert (error.code, error.status) == ("rest_cannot_edit", 403)
    assert "Sorry, you are not allowed to edit this post." in str(error)
    assert "WordPress user 'author' of connection 'site'" in str(error)
    assert [c.status for c in sandbox.calls if c.user == "author"] == [403]  # not retried
    assert sandbox.posts()[0].title == "Admin's"
    own = author.create_post("Author's", "x", "publish", slug="authors")
    assert own["author"] == 2


def test_a_wrong_app_password_names_the_connection_and_the_fix(
    sandbox: WordPressSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(VARIABLE, "aaaa bbbb cccc dddd eeee ffff")
    with site(sandbox) as made, pytest.raises(CmsError) as caught:
        made.bind(context()).create_post("Never", "x", "publish", slug="never")
    message = str(caught.value)
    assert (caught.value.code, caught.value.status) == ("incorrect_password", 401)
    assert "The provided password is an invalid application password." in message
    assert "check the application password of connection 'site'" in message
    assert f"auth.password = env:{VARIABLE}" in message
    assert "aaaa" not in message
    assert [c.status for c in sandbox.calls] == [401]  # not retried
    assert sandbox.posts() == []


def test_an_unknown_user_is_named(sandbox: WordPressSandbox) -> None:
    auth = {"kind": "basic", "username": "nobody", "password": f"env:{VARIABLE}"}
    with site(sandbox, auth=auth) as made, pytest.raises(CmsError) as caught:
        made.check()
    assert caught.value.code == "invalid_username"
    assert "WordPress knows no user 'nobody'" in str(caught.value)
    assert "check the application password of connection 'site'" in str(caught.value)


def test_timeouts_and_busy_answers_are_transient_after_the_retries(
    sandbox: WordPressSandbox,
) -> None:
    with site(sandbox, retries=1, timeout=0.2) as made:
        sandbox.delay = 0.5
        with pytest.raises(TransientError, match="timed out"):
            made.bind(context()).create_post("Slow", "x", "publish", slug="slow")
        sandbox.delay = 0
        deadline = time.monotonic() + 5
        while len(sandbox.calls) < 2 and time.monotonic() < deadline:  # the slow ones answered
            time.sleep(0.05)
        sandbox.fail_next(2, 429)
        with pytest.raises(TransientError, match="answered 429"):
            made.bind(context()).create_post("Busy", "x", "publish", slug="busy")
    assert sandbox.posts() == []


def test_the_app_password_is_in_no_evidence_and_no_log(
    sandbox: WordPressSandbox,
    connector: WordPressConnector,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    ctx = context()
    with ctx.evidence.capturing():
        wp = connector.bind(ctx)
        post = wp.create_post("Evidence", "x", "publish", slug="evidence")
        sandbox.fail_next(1, 503)
        wp.get_post(post["id"])
        with pytest.raises(CmsError) as caught:
            wp.update_post(post["id"], status="gone")
    record = ctx.evidence.record() or {}
    assert record["response"]["status"] == 400
    assert record["request"]["headers"]["authorization"] == "[redacted]"
    assert "rest_invalid_param" in record["response"]["body"]
    basic = base64.b64encode(f"admin:{CANARY}".encode()).decode()
    shown = repr(record) + caplog.text + str(caught.value)
    for secret in (CANARY, CANARY.replace(" ", ""), basic):
        assert secret not in shown
    assert "status is not one of publish, future, draft, pending, and private." in str(caught.value)
