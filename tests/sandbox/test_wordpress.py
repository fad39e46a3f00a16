"""The WordPress sandbox, driven with raw httpx as a connector would drive a real site."""

from __future__ import annotations

import re
import signal
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.sandbox.wordpress import WordPressSandbox

API = "/wp-json/wp/v2"
ROOT = Path(__file__).resolve().parents[2]
DATE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d$")


def png(width: int, height: int) -> bytes:
    """A valid, tiny, all-black PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    pixels = zlib.compress(b"".join(b"\0" + b"\0" * width for _ in range(height)))
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


@pytest.fixture(scope="module")
def server() -> Iterator[WordPressSandbox]:
    with WordPressSandbox() as site:
        yield site


@pytest.fixture(scope="module")
def http(server: WordPressSandbox) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=5) as client:
        yield client


@pytest.fixture
def site(server: WordPressSandbox) -> WordPressSandbox:
    """The module's site, emptied for each test."""
    server.reset()
    return server


@pytest.fixture
def client(site: WordPressSandbox, http: httpx.Client) -> httpx.Client:
    return http


@pytest.fixture
def admin(site: WordPressSandbox) -> tuple[str, str]:
    return (site.username, site.app_password)


@pytest.fixture
def author(site: WordPressSandbox) -> tuple[str, str]:
    return (site.author_username, site.author_app_password)


def error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """Assert a WordPress error of ``status`` and ``code``; its body."""
    body: dict[str, Any] = response.json()
    assert (response.status_code, body.get("code")) == (status, code), response.text
    assert body["data"]["status"] == status
    assert isinstance(body["message"], str) and body["message"]
    return body


def create(client: httpx.Client, auth: tuple[str, str], kind: str = "posts", **fields: Any) -> Any:
    response = client.post(f"{API}/{kind}", json=fields, auth=auth)
    assert response.status_code == 201, response.text
    return response.json()


# ----------------------------------------------------------------------- discovery
def test_the_index_names_the_namespace_authentication_and_routes(
    client: httpx.Client, site: WordPressSandbox
) -> None:
    index = client.get("/wp-json/").json()
    assert index["url"] == site.url
    assert "wp/v2" in index["namespaces"]
    authorization = index["authentication"]["application-passwords"]["endpoints"]
    assert authorization["authorization"] == f"{site.url}/wp-admin/authorize-application.php"
    routes = index["routes"]
    assert routes["/wp/v2/posts"]["methods"] == ["GET", "POST"]
    assert routes["/wp/v2/posts"]["_links"]["self"][0]["href"] == f"{site.url}{API}/posts"
    assert set(routes["/wp/v2/posts/(?P<id>[\\d]+)"]["methods"]) == {
        "GET",
        "POST",
        "PUT",
        "PATCH",
        "DELETE",
    }
    assert {"/wp/v2/pages", "/wp/v2/media", "/wp/v2/users/me"} <= set(routes)
    namespace = client.get(API).json()
    assert namespace["namespace"] == "wp/v2" and "/" not in namespace["routes"]


# ---------------------------------------------------------------------- pagination
def test_posts_paginate_with_total_headers_and_link_relations(
    client: httpx.Client, site: WordPressSandbox
) -> None:
    ids = site.seed_posts(23)
    first = client.get(f"{API}/posts")
    assert first.headers["x-wp-total"] == "23" and first.headers["x-wp-totalpages"] == "3"
    assert len(first.json()) == 10  # the default per_page
    assert set(first.links) == {"next"}

    seen: list[int] = []
    url: str | None = f"{site.url}{API}/posts?search=post&per_page=10"
    while url is not None:
        response = client.get(url)
        assert response.status_code == 200
        seen += [post["id"] for post in response.json()]
        url = response.links.get("next", {}).get("url")
        assert url is None or ("search=post" in url and "per_page=10" in url)
    assert seen == ids[::-1]  # newest first

    middle = client.get(f"{API}/posts", params={"page": 2})
    assert middle.links["prev"]["url"] == f"{site.url}{API}/posts?page=1"
    assert middle.links["next"]["url"] == f"{site.url}{API}/posts?page=3"
    last = client.get(f"{API}/posts", params={"page": 3})
    assert [post["id"] for post in last.json()] == ids[2::-1]
    assert set(last.links) == {"prev"}
    beyond = client.get(f"{API}/posts", params={"page": 4})
    error(beyond, 400, "rest_post_invalid_page_number")
    assert client.get(f"{API}/posts", params={"per_page": 100}).headers["x-wp-totalpages"] == "1"


@pytest.mark.parametrize(
    ("params", "problem", "code"),
    [
        (
            {"per_page": 0},
            "per_page must be between 1 (inclusive) and 100 (inclusive)",
            "rest_out_of_bounds",
        ),
        (
            {"per_page": 101},
            "per_page must be between 1 (inclusive) and 100 (inclusive)",
            "rest_out_of_bounds",
        ),
        ({"per_page": "ten"}, "per_page is not of type integer.", "rest_invalid_type"),
        ({"page": 0}, "page must be greater than or equal to 1", "rest_out_of_bounds"),
    ],
)
def test_out_of_range_paging_is_rest_invalid_param(
    client: httpx.Client, params: dict[str, Any], problem: str, code: str
) -> None:
    body = error(client.get(f"{API}/posts", params=params), 400, "rest_invalid_param")
    (name,) = params
    assert body["message"] == f"Invalid parameter(s): {name}"
    assert body["data"]["params"] == {name: problem}
    assert body["data"]["details"][name]["code"] == code


def test_search_slug_status_and_order_filter_the_list(
    client: httpx.Client, admin: tuple[str, str]
) -> None:
    alpha = create(
        client, admin, title="Alpha report", content="Quarterly numbers", status="publish"
    )
    beta = create(client, admin, title="beta memo", content="Short note", status="publish")
    gamma = create(client, admin, title="Gamma report", content="Not ready yet")  # a draft

    def ids(**params: Any) -> list[int]:
        auth = params.pop("auth", None)
        response = client.get(f"{API}/posts", params=params, auth=auth)
        assert response.status_code == 200, response.text
        return [post["id"] for post in response.json()]

    assert ids(search="report") == [alpha["id"]]
    assert ids(search="quarterly NUMBERS") == [alpha["id"]]
    assert ids(search="report", status="publish,draft", auth=admin) == [gamma["id"], alpha["id"]]
    assert ids(status="draft", auth=admin) == [gamma["id"]]
    assert ids(status="any", auth=admin) == [gamma["id"], beta["id"], alpha["id"]]
    assert ids(slug="beta-memo") == [beta["id"]]
    assert ids(slug="alpha-report,beta-memo", orderby="id", order="asc") == [
        alpha["id"],
        beta["id"],
    ]
    assert ids(orderby="title", order="asc") == [alpha["id"], beta["id"]]
    assert ids(orderby="title", order="desc") == [beta["id"], alpha["id"]]
    bad = error(client.get(f"{API}/posts", params={"orderby": "rand"}), 400, "rest_invalid_param")
    assert bad["data"]["params"]["orderby"] == (
        "orderby is not one of author, date, id, modified, slug, and title."
    )


# --------------------------------------------------------------------------- posts
def test_create_answers_201_with_the_post_in_edit_context(
    client: httpx.Client, site: WordPressSandbox, admin: tuple[str, str]
) -> None:
    response = client.post(
        f"{API}/posts",
        json={
            "title": "Release notes",
            "content": "First paragraph.\n\nSecond paragraph.",
            "excerpt": "Notes",
            "status": "publish",
            "categories": [3, 4],
            "meta": {"source": "hub"},
        },
        auth=admin,
    )
    assert response.status_code == 201
    post = response.json()
    assert response.headers["location"] == f"{site.url}{API}/posts/{post['id']}"
    assert DATE.match(post["date"]) and DATE.match(post["date_gmt"])
    assert (post["slug"], post["status"], post["type"], post["author"]) == (
        "release-notes",
        "publish",
        "post",
        1,
    )
    assert post["link"] == f"{site.url}/?p={post['id']}"
    assert post["title"] == {"rendered": "Release notes", "raw": "Release notes"}
    assert post["content"]["raw"] == "First paragraph.\n\nSecond paragraph."
    assert post["content"]["rendered"] == "<p>First paragraph.</p>\n\n<p>Second paragraph.</p>\n"
    assert post["content"]["protected"] is False
    assert post["excerpt"]["raw"] == "Notes"
    assert (post["categories"], post["meta"]) == ([3, 4], {"source": "hub"})

    public = client.get(f"{API}/posts/{post['id']}").json()
    assert public["title"] == {"rendered": "Release notes"}
    assert "raw" not in public["content"]
    edit = client.get(f"{API}/posts/{post['id']}", params={"context": "edit"}, auth=admin).json()
    assert edit["content"]["raw"] == "First paragraph.\n\nSecond paragraph."

    form = client.post(
        f"{API}/posts",
        data={"title": "Form post", "status": "private", "categories[]": ["7", "8"]},
        auth=admin,
    )
    assert form.status_code == 201
    assert (form.json()["status"], form.json()["categories"]) == ("private", [7, 8])
    plain = create(client, admin, title={"raw": "Object title"})
    assert (plain["status"], plain["categories"]) == ("draft", [1])
    assert plain["excerpt"]["rendered"] == ""
    assert [p.title for p in site.posts()] == ["Release notes", "Form post", "Object title"]


def test_slugs_are_made_unique_the_way_wordpress_does(
    client: httpx.Client, site: WordPressSandbox, admin: tuple[str, str]
) -> None:
    first = create(client, admin, title="Hello World", status="publish")
    second = create(client, admin, title="Hello World", status="publish")
    chosen = create(client, admin, title="Other", slug="Hello World", status="publish")
    assert [first["slug"], second["slug"], chosen["slug"]] == [
        "hello-world",
        "hello-world-2",
        "hello-world-3",
    ]
    draft = create(client, admin, title="Hello World")
    assert (draft["slug"], draft["generated_slug"]) == ("", "hello-world")
    published = client.post(f"{API}/posts/{draft['id']}", json={"status": "publish"}, auth=admin)
    assert published.json()["slug"] == "hello-world-4"
    page = create(client, admin, "pages", title="Hello World", status="publish")
    assert page["slug"] == "hello-world"  # pages are another post type

    trashed = client.delete(f"{API}/posts/{first['id']}", auth=admin).json()
    assert trashed["slug"] == "hello-world__trashed"
    again = create(client, admin, title="Hello World", status="publish")
    assert again["slug"] == "hello-world"
    assert sorted(p.slug for p in site.posts()) == [
        "hello-world",
        "hello-world-2",
        "hello-world-3",
        "hello-world-4",
        "hello-world__trashed",
    ]


def test_post_put_and_patch_all_update(
    client: httpx.Client, site: WordPressSandbox, admin: tuple[str, str]
) -> None:
    post = create(client, admin, title="Draft", content="Body", meta={"a": "1", "b": "2"})
    url = f"{API}/posts/{post['id']}"
    by_post = client.post(url, json={"title": "Renamed"}, auth=admin)
    assert by_post.status_code == 200
    assert by_post.json()["title"]["raw"] == "Renamed"
    assert by_post.json()["content"]["raw"] == "Body"
    by_put = client.put(
        url, json={"content": "New body", "meta": {"a": None, "c": "3"}}, auth=admin
    )
    assert by_put.json()["content"]["raw"] == "New body"
    assert by_put.json()["meta"] == {"b": "2", "c": "3"}
    by_patch = client.patch(url, json={"status": "publish", "excerpt": "Short"}, auth=admin)
    assert by_patch.json()["status"] == "publish"
    assert by_patch.json()["slug"] == "renamed"
    (stored,) = site.posts()
    assert (stored.title, stored.content, stored.excerpt, stored.status) == (
        "Renamed",
        "New body",
        "Short",
        "publish",
    )
    assert by_patch.json()["date"] == post["date"]  # an update changes modified, not date


def test_delete_trashes_then_force_deletes(
    client: httpx.Client, site: WordPressSandbox, admin: tuple[str, str]
) -> None:
    post = create(client, admin, title="Doomed", status="publish")
    url = f"{API}/posts/{post['id']}"
    trashed = client.delete(url, auth=admin)
    assert trashed.status_code == 200 and trashed.json()["status"] == "trash"
    assert client.get(url, auth=admin).json()["status"] == "trash"
    error(client.get(url), 401, "rest_forbidden")
    assert client.get(f"{API}/posts").json() == []
    trash = client.get(f"{API}/posts", params={"status": "trash"}, auth=admin).json()
    assert [p["id"] for p in trash] == [post["id"]]
    error(client.delete(url, auth=admin), 410, "rest_already_trashed")

    deleted = client.delete(url, params={"force": "true"}, auth=admin)
    assert deleted.status_code == 200
    assert deleted.json()["deleted"] is True
    assert deleted.json()["previous"]["id"] == post["id"]
    assert deleted.json()["previous"]["status"] == "trash"
    error(client.get(url, auth=admin), 404, "rest_post_invalid_id")
    error(client.delete(url, params={"force": "true"}, auth=admin), 404, "rest_post_invalid_id")
    assert site.posts() == []
    direct = create(client, admin, title="Gone at once")
    forced = client.delete(f"{API}/posts/{direct['id']}?force=1", auth=admin)
    assert forced.json()["deleted"] is True and site.posts() == []


def test_pages_are_a_separate_type_with_the_same_operations(
    client: httpx.Client, site: WordPressSandbox, admin: tuple[str, str]
) -> None:
    parent = create(client, admin, "pages", title="About", status="publish")
    child = create(client, admin, "pages", title="Team", status="publish", parent=parent["id"])
    assert (child["type"], child["parent"], child["link"]) == (
        "page",
        parent["id"],
        f"{site.url}/?page_id={child['id']}",
    )
    assert "categories" not in child
    listed = client.get(f"{API}/pages", params={"orderby": "id", "order": "asc"})
    assert [p["id"] for p in listed.json()] == [parent["id"], child["id"]]
    assert listed.headers["x-wp-total"] == "2"
    assert client.get(f"{API}/posts").json() == []
    error(client.get(f"{API}/posts/{child['id']}"), 404, "rest_post_invalid_id")
    renamed = client.patch(f"{API}/pages/{child['id']}", json={"title": "People"}, auth=admin)
    assert renamed.json()["title"]["raw"] == "People"
    assert client.delete(f"{API}/pages/{child['id']}", auth=admin).json()["status"] == "trash"
    error(client.delete(f"{API}/pages/{child['id']}", auth=admin), 410, "rest_already_trashed")
    gone = client.delete(f"{API}/pages/{child['id']}", params={"force": "true"}, auth=admin)
    assert gone.json()["deleted"] is True
    assert [p.id for p in site.pages()] == [parent["id"]]


# --------------------------------------------------------------------------- media
def test_media_upload_from_the_raw_body_and_download_of_source_url(
    client: httpx.Client, site: WordPressSandbox, admin: tuple[str, str]
) -> None:
    image = png(16, 8)
    headers = {"Content-Type": "image/png", "Content-Disposition": "attachment; filename=chart.png"}
    response = client.post(f"{API}/media", content=image, headers=headers, auth=admin)
    assert response.status_code == 201, response.text
    media = response.json()
    assert response.headers["location"] == f"{site.url}{API}/media/{media['id']}"
    assert (media["type"], media["status"], media["mime_type"], media["media_type"]) == (
        "attachment",
        "inherit",
        "image/png",
        "image",
    )
    assert media["title"]["raw"] == "chart" and media["slug"] == "chart"
    assert media["media_details"]["filesize"] == len(image)
    assert (media["media_details"]["width"], media["media_details"]["height"]) == (16, 8)
    assert re.fullmatch(
        rf"{site.url}/wp-content/uploads/\d{{4}}/\d\d/chart\.png", media["source_url"]
    )

    download = client.get(media["source_url"])
    assert download.status_code == 200
    assert download.content == image
    assert download.headers["content-type"] == "image/png"
    public = client.get(f"{API}/media/{media['id']}").json()
    assert public["source_url"] == media["source_url"] and "raw" not in public["title"]
    assert [m["id"] for m in client.get(f"{API}/media").json()] == [media["id"]]

    quoted = {**headers, "Content-Disposition": 'attachment; filename="chart.png"'}
    twin = client.post(
        f"{API}/media", content=b"GIF89a\x02\x00\x03\x00", headers=quoted, auth=admin
    )
    assert twin.json()["source_url"].endswith("/chart-1.png")
    assert twin.json()["slug"] == "chart-2"
    assert client.get(twin.json()["source_url"]).content == b"GIF89a\x02\x00\x03\x00"
    assert [m.data for m in site.media()] == [image, b"GIF89a\x02\x00\x03\x00"]
    assert client.get(f"{site.url}/wp-content/uploads/2000/01/none.png").status_code == 404


def test_media_upload_as_a_multipart_file_field(
    client: httpx.Client, site: WordPressSandbox, author: tuple[str, str]
) -> None:
    pdf = b"%PDF-1.4\n% a tiny document\n%%EOF\n"
    response = client.post(
        f"{API}/media",
        files={"file": ("Q3 report.pdf", pdf, "application/pdf")},
        data={"title": "Third quarter", "alt_text": "report"},
        auth=author,
    )
    assert response.status_code == 201, response.text
    media = response.json()
    assert (media["title"]["raw"], media["alt_text"], media["author"]) == (
        "Third quarter",
        "report",
        2,
    )
    assert (media["mime_type"], media["media_type"]) == ("application/pdf", "file")
    assert media["media_details"] == {"filesize": len(pdf)}
    assert media["source_url"].endswith("/Q3-report.pdf")
    assert client.get(media["source_url"]).content == pdf
    assert [m.file.rsplit("/", 1)[-1] for m in site.media()] == ["Q3-report.pdf"]


def test_media_upload_refusals(
    client: httpx.Client, site: WordPressSandbox, admin: tuple[str, str]
) -> None:
    url = f"{API}/media"
    no_disposition = client.post(
        url, content=b"x", headers={"Content-Type": "text/plain"}, auth=admin
    )
    error(no_disposition, 400, "rest_upload_no_content_disposition")
    named = {"Content-Disposition": "attachment; filename=a.txt"}
    error(client.post(url, content=b"", headers=named, auth=admin), 400, "rest_upload_no_data")
    error(
        client.post(url, content=b"x", headers=named, auth=admin),
        400,
        "rest_upload_no_content_type",
    )
    nameless = {"Content-Type": "text/plain", "Content-Disposition": "attachment"}
    error(
        client.post(url, content=b"x", headers=nameless, auth=admin),
        400,
        "rest_upload_invalid_disposition",
    )
    program = {
        "Content-Type": "application/octet-stream",
        "Content-Disposition": "attachment; filename=run.exe",
    }
    error(
        client.post(url, content=b"MZ", headers=program, auth=admin),
        500,
        "rest_upload_sideload_error",
    )
    no_file = client.post(url, files={"other": ("a.txt", b"x", "text/plain")}, auth=admin)
    error(no_file, 400, "rest_upload_no_data")
    unreadable = {"Content-Type": "multipart/form-data; boundary=zz"}
    error(
        client.post(url, content=b"junk", headers=unreadable, auth=admin),
        400,
        "rest_upload_no_data",
    )
    good = {**named, "Content-Type": "text/plain"}
    error(client.post(url, content=b"x", headers=good), 401, "rest_cannot_create")
    assert site.media() == []


# -------------------------------------------------------------------- authentication
def test_application_passwords_with_or_without_spaces_and_by_email(
    client: httpx.Client, site: WordPressSandbox
) -> None:
    assert re.fullmatch(r"([A-Za-z0-9]{4} ){5}[A-Za-z0-9]{4}", site.app_password)
    for login, password in [
        (site.username, site.app_password),
        (site.username, site.app_password.replace(" ", "")),
        (site.email, site.app_password),
    ]:
        me = client.get(f"{API}/users/me", params={"context": "edit"}, auth=(login, password))
        assert me.status_code == 200, me.text
        assert (me.json()["id"], me.json()["username"], me.json()["roles"]) == (
            1,
            site.username,
            ["administrator"],
        )
    mine = client.get(f"{API}/users/me", auth=(site.author_username, site.author_app_password))
    assert mine.json()["id"] == 2 and "roles" not in mine.json()
    assert [c.user for c in site.calls] == [
        site.username,
        site.username,
        site.username,
        site.author_username,
    ]


def test_every_refusal_without_or_with_bad_credentials(
    client: httpx.Client, site: WordPressSandbox, admin: tuple[str, str]
) -> None:
    published = create(client, admin, title="Public", status="publish")
    draft = create(client, admin, title="Secret draft")
    url = f"{API}/posts/{published['id']}"

    error(client.post(f"{API}/posts", json={"title": "x"}), 401, "rest_cannot_create")
    error(client.get(f"{API}/users/me"), 401, "rest_not_logged_in")
    error(client.post(url, json={"title": "x"}), 401, "rest_cannot_edit")
    error(client.delete(url), 401, "rest_cannot_delete")
    error(client.get(f"{API}/posts/{draft['id']}"), 401, "rest_forbidden")
    error(client.get(url, params={"context": "edit"}), 401, "rest_forbidden_context")
    error(client.get(f"{API}/posts", params={"context": "edit"}), 401, "rest_forbidden_context")
    status = error(
        client.get(f"{API}/posts", params={"status": "draft"}), 400, "rest_invalid_param"
    )
    assert status["data"]["details"]["status"]["code"] == "rest_forbidden_status"

    wrong = (site.username, "abcd efgh ijkl mnop qrst uvwx")
    error(client.get(f"{API}/posts", auth=wrong), 401, "incorrect_password")  # even a public read
    error(client.post(f"{API}/posts", json={"title": "x"}, auth=wrong), 401, "incorrect_password")
    stranger = ("nobody", site.app_password)
    error(client.get(f"{API}/users/me", auth=stranger), 401, "invalid_username")
    bearer = client.get(url, headers={"Authorization": f"Bearer {site.app_password}"})
    assert bearer.status_code == 200  # another scheme is no login: a public read
    assert [p.title for p in site.posts()] == ["Public", "Secret draft"]
    assert client.get(url).json()["title"]["rendered"] == "Public"


def test_an_author_edits_only_their_own_posts(
    client: httpx.Client, site: WordPressSandbox, admin: tuple[str, str], author: tuple[str, str]
) -> None:
    others = create(client, admin, title="Admin's post", status="publish")
    others_draft = create(client, admin, title="Admin's draft")
    own = create(client, author, title="Author's post", status="publish")
    assert own["author"] == 2
    edited = client.patch(f"{API}/posts/{own['id']}", json={"title": "Edited"}, auth=author)
    assert edited.status_code == 200 and edited.json()["title"]["raw"] == "Edited"

    forbidden_edit = client.post(f"{API}/posts/{others['id']}", json={"title": "Mine"}, auth=author)
    error(forbidden_edit, 403, "rest_cannot_edit")
    error(client.delete(f"{API}/posts/{others['id']}", auth=author), 403, "rest_cannot_delete")
    error(client.get(f"{API}/posts/{others_draft['id']}", auth=author), 403, "rest_forbidden")
    error(
        client.post(f"{API}/pages", json={"title": "A page"}, auth=author),
        403,
        "rest_cannot_create",
    )
    drafts = client.get(f"{API}/posts", params={"status": "draft"}, auth=author).json()
    assert drafts == []  # others' drafts are not readable
    assert client.delete(f"{API}/posts/{own['id']}", auth=author).json()["status"] == "trash"
    assert [(p.title, p.status) for p in site.posts()] == [
        ("Admin's post", "publish"),
        ("Admin's draft", "draft"),
        ("Edited", "trash"),
    ]


# -------------------------------------------------------------------------- errors
def test_unknown_ids_routes_and_bad_bodies(
    client: httpx.Client, site: WordPressSandbox, admin: tuple[str, str]
) -> None:
    error(client.get(f"{API}/posts/999"), 404, "rest_post_invalid_id")
    error(
        client.post(f"{API}/posts/999", json={"title": "x"}, auth=admin),
        404,
        "rest_post_invalid_id",
    )
    error(client.get(f"{API}/media/999"), 404, "rest_post_invalid_id")
    error(client.get(f"{API}/nothing"), 404, "rest_no_route")
    error(client.delete(f"{API}/posts"), 404, "rest_no_route")
    error(client.get("/wp-json/other/v1/things"), 404, "rest_no_route")
    broken = client.post(
        f"{API}/posts",
        content=b"{not json",
        headers={"Content-Type": "application/json"},
        auth=admin,
    )
    error(broken, 400, "rest_invalid_json")
    status = error(
        client.post(f"{API}/posts", json={"title": "x", "status": "live"}, auth=admin),
        400,
        "rest_invalid_param",
    )
    assert status["data"]["params"]["status"] == (
        "status is not one of publish, future, draft, pending, and private."
    )
    terms = error(
        client.post(f"{API}/posts", json={"title": "x", "categories": ["a"]}, auth=admin),
        400,
        "rest_invalid_param",
    )
    assert terms["data"]["params"]["categories"] == "categories[0] is not of type integer."
    error(client.post(f"{API}/posts", json={}, auth=admin), 400, "empty_content")
    error(client.delete(f"{API}/posts/1", params={"force": "maybe"}), 400, "rest_invalid_param")
    assert client.get("/about/").status_code == 404
    assert site.posts() == []


# ------------------------------------------------------------------------ controls
def test_fail_next_changes_nothing_and_calls_are_logged(
    client: httpx.Client, site: WordPressSandbox, admin: tuple[str, str]
) -> None:
    site.fail_next(2)
    for _ in range(2):
        failed = client.post(f"{API}/posts", json={"title": "Retry me"}, auth=admin)
        assert failed.status_code == 503
    assert site.posts() == []
    create(client, admin, title="Retry me")
    site.fail_next(1, status=500)
    assert client.get(f"{API}/posts").status_code == 500
    assert [(c.method, c.path, c.status, c.user) for c in site.calls] == [
        ("POST", f"{API}/posts", 503, None),
        ("POST", f"{API}/posts", 503, None),
        ("POST", f"{API}/posts", 201, site.username),
        ("GET", f"{API}/posts", 500, None),
    ]
    assert len(site.posts()) == 1


def test_delay_makes_a_client_time_out(client: httpx.Client, site: WordPressSandbox) -> None:
    site.delay = 0.5
    with pytest.raises(httpx.ReadTimeout):
        client.get(f"{API}/posts", timeout=0.1)
    site.delay = 0
    assert client.get(f"{API}/posts", timeout=1).status_code == 200


def test_concurrent_writers_get_distinct_posts_and_slugs(
    client: httpx.Client, site: WordPressSandbox, admin: tuple[str, str]
) -> None:
    site.delay = 0.2

    def publish(n: int) -> Any:
        return create(client, admin, title="Same title", status="publish", meta={"n": n})

    started = time.monotonic()
    with ThreadPoolExecutor(30) as pool:
        posts = list(pool.map(publish, range(30)))
    assert time.monotonic() - started < 3
    assert len({p["id"] for p in posts}) == 30
    assert sorted(p["slug"] for p in posts) == sorted(
        ["same-title"] + [f"same-title-{n}" for n in range(2, 31)]
    )
    assert sorted(p.meta["n"] for p in site.posts()) == list(range(30))


def test_reset_empties_the_site(
    client: httpx.Client, site: WordPressSandbox, admin: tuple[str, str]
) -> None:
    site.seed_posts(3)
    site.fail_next(4)
    site.delay = 0.1
    site.reset()
    assert (site.posts(), site.pages(), site.media(), site.calls, site.delay) == ([], [], [], [], 0)
    assert create(client, admin, title="Fresh")["id"] == 1


def test_it_runs_alone_from_the_command_line() -> None:
    command = [sys.executable, "-m", "tests.sandbox.wordpress", "--port", "0", "--posts", "3"]
    with subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True) as process:
        try:
            assert process.stdout is not None
            banner = "".join(process.stdout.readline() for _ in range(3))
            url = re.search(r"on (http://127\.0\.0\.1:\d+)/wp-json/", banner)
            login = re.search(r"administrator '(\w+)' application password '([\w ]+)'", banner)
            assert url is not None and login is not None, banner
            me = httpx.get(f"{url[1]}{API}/users/me", auth=(login[1], login[2]))
            assert me.json()["id"] == 1
            assert httpx.get(f"{url[1]}{API}/posts").headers["x-wp-total"] == "3"
            process.send_signal(signal.SIGINT)
            assert process.wait(timeout=10) == 0
        finally:
            if process.poll() is None:
                process.kill()
