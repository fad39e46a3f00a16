"""A WordPress site's REST API (a subset of ``wp/v2``) on 127.0.0.1, for connector tests.

Written from the WordPress REST API Handbook. Endpoints::

    GET    /wp-json/                    index: name, url, namespaces (wp/v2), authentication
                                        (application-passwords), routes
    GET    /wp-json/wp/v2               the namespace's routes
    GET    /wp-json/wp/v2/posts         ?page ?per_page (1..100, default 10) ?search ?slug ?status
                                        ?orderby (author|date|id|modified|slug|title) ?order
                                        ?context (view|embed|edit); headers X-WP-Total,
                                        X-WP-TotalPages, Link (rel="prev"/"next")
    POST   /wp-json/wp/v2/posts         create: title, content, excerpt, status, slug,
                                        categories, tags, meta -> 201, the post (context=edit)
    GET    /wp-json/wp/v2/posts/{id}    ?context=view|edit
    POST|PUT|PATCH /wp-json/wp/v2/posts/{id}   update -> 200
    DELETE /wp-json/wp/v2/posts/{id}    to the trash (again: 410 rest_already_trashed);
                                        ?force=true deletes -> {"deleted": true, "previous": ...}
    ...    /wp-json/wp/v2/pages[/{id}]  the same for pages (parent, menu_order; no terms)
    GET    /wp-json/wp/v2/media         attachments, paginated like posts
    POST   /wp-json/wp/v2/media         upload: the file as the body with Content-Disposition:
                                        attachment; filename=x.png and its Content-Type, or a
                                        multipart "file" field -> 201 (source_url, mime_type,
                                        media_details.filesize)
    GET    /wp-json/wp/v2/media/{id}
    GET    /wp-json/wp/v2/users/me      the authenticated user
    GET    /wp-content/uploads/YYYY/MM/{file}   an upload's bytes (a media item's source_url)

Authentication is by application password over HTTP Basic, as in WordPress 5.6+: the user's
login (or e-mail) and the 24-character password, with or without the spaces it is shown
with. Published content is public; drafts, ``context=edit`` and every write need a user. A
wrong password fails every request (401 ``incorrect_password`` / ``invalid_username``). The
administrator (:attr:`WordPressSandbox.username`) may do anything; the author
(:attr:`WordPressSandbox.author_username`) writes posts and uploads, but edits only their own
posts and no pages (403).

Errors are WordPress's: ``{"code", "message", "data": {"status"}}``; ``rest_invalid_param``
adds ``params`` and ``details`` to ``data``. Parameters are validated before permissions are
checked, as WordPress does. The site uses plain permalinks (``/?p=ID``), UTC and no
``wptexturize``: a title's ``rendered`` is its ``raw``; content and excerpt get paragraphs.

Controls for the test: :meth:`~WordPressSandbox.fail_next`, :attr:`~WordPressSandbox.delay`,
:attr:`~WordPressSandbox.calls`, :meth:`~WordPressSandbox.posts`,
:meth:`~WordPressSandbox.pages`, :meth:`~WordPressSandbox.media`,
:meth:`~WordPressSandbox.seed_posts`, :meth:`~WordPressSandbox.reset`. Run it alone with
``python -m tests.sandbox.wordpress [--port N]``.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import math
import re
import secrets
import string
import struct
import threading
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode

from starlette.datastructures import Headers, UploadFile
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from tests.sandbox.rest_api import ThreadedServer, basic_credentials

SITE_NAME = "Sandbox Site"
PASSWORD_LENGTH = 24
POST_STATUSES = ("publish", "future", "draft", "pending", "private")
LIST_STATUSES = (*POST_STATUSES, "trash", "any")
ORDERBY = ("author", "date", "id", "modified", "slug", "title")
CONTEXTS = ("view", "embed", "edit")
#: Upload types allowed (WordPress's default list, in part), by file extension.
MIME_TYPES = {
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "png": "image/png",
    "gif": "image/gif",
    "webp": "image/webp",
    "pdf": "application/pdf",
    "txt": "text/plain",
    "csv": "text/csv",
    "zip": "application/zip",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "mp3": "audio/mpeg",
    "mp4": "video/mp4",
}
#: rest_base -> post type
TYPES = {"posts": "post", "pages": "page", "media": "attachment"}
REST_BASE = {ptype: base for base, ptype in TYPES.items()}
_DATE = "%Y-%m-%dT%H:%M:%S"
#: A route handler's answer: status, JSON body, headers.
Answer = tuple[int, Any, dict[str, str]]
Handler = Callable[..., Answer]


@dataclass(frozen=True)
class User:
    """A WordPress user with one application password."""

    id: int
    username: str
    email: str
    name: str
    role: str  # "administrator" or "author"
    app_password: str  # as WordPress shows it: six groups of four, separated by spaces


@dataclass
class Post:
    """A row of ``wp_posts``: a post, a page or an attachment."""

    id: int
    type: str  # "post", "page", "attachment"
    author: int
    title: str
    content: str
    excerpt: str
    status: str
    slug: str
    date: datetime
    modified: datetime
    categories: list[int] = field(default_factory=list)
    tags: list[int] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    parent: int = 0
    menu_order: int = 0
    trashed_status: str = ""  # the status before trashing
    file: str = ""  # an attachment's path under /wp-content/uploads/
    mime_type: str = ""
    data: bytes = b""
    alt_text: str = ""
    caption: str = ""


@dataclass(frozen=True)
class Call:
    """One request as the site saw it."""

    at: float
    method: str
    path: str
    query: str
    status: int
    user: str | None  # the authenticated login, if any


class WPError(Exception):
    """A ``WP_Error`` the REST server turns into ``{"code", "message", "data"}``."""

    def __init__(self, code: str, message: str, status: int, **data: Any) -> None:
        super().__init__(message)
        self.code, self.message, self.status, self.data = code, message, status, data

    def body(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "message": self.message,
            "data": {"status": self.status, **self.data},
        }


@dataclass
class _Request:
    """What a route handler needs of one request."""

    method: str
    query: list[tuple[str, str]]  # the query string's pairs, in order
    params: dict[str, Any]  # query parameters, overridden by body parameters
    headers: Headers
    body: bytes
    upload: tuple[str, str, bytes] | None  # multipart "file": name, content type, bytes
    user: User | None


def generate_app_password() -> str:
    """A new application password, shown as WordPress shows it: ``abcd efgh ijkl mnop qrst uvwx``."""
    alphabet = string.ascii_letters + string.digits
    raw = "".join(secrets.choice(alphabet) for _ in range(PASSWORD_LENGTH))
    return " ".join(raw[i : i + 4] for i in range(0, PASSWORD_LENGTH, 4))


def sanitize_title(title: str) -> str:
    """A slug from a title, after ``sanitize_title_with_dashes``: lower case, dashes."""
    text = unicodedata.normalize("NFKD", re.sub(r"<[^>]*>", "", title))
    text = text.encode("ascii", "ignore").decode().lower()
    text = re.sub(r"[\s.]+", "-", text)
    text = re.sub(r"[^a-z0-9_-]", "", text)
    return re.sub(r"-+", "-", text).strip("-")


def sanitize_file_name(name: str) -> str:
    """A safe upload file name, after ``sanitize_file_name``: no specials, dashes for spaces."""
    name = re.sub(
        r"[?\[\]/\\=<>:;,'\"&$#*()|~`!{}%+\u2019\u00ab\u00bb\u201d\u201c]",
        "",
        name.rsplit("/", 1)[-1],
    )
    name = re.sub(r"[\s-]+", "-", name)
    return name.strip(".-_")


def autop(text: str) -> str:
    """Paragraphs as ``wpautop`` makes them: blank-line separated blocks in ``<p>``."""
    blocks = [b.strip() for b in re.split(r"\n\s*\n", text.replace("\r\n", "\n").strip())]
    out = []
    for block in filter(None, blocks):
        if re.match(r"<(p|div|h[1-6]|ul|ol|table|blockquote|pre|figure)\b", block, re.I):
            out.append(block + "\n")
        else:
            out.append("<p>" + block.replace("\n", "<br />\n") + "</p>\n")
    return "\n".join(out)


def wp_list(items: tuple[str, ...] | list[str]) -> str:
    """A list the way ``wp_sprintf_l`` writes it: ``a, b, and c``; ``a and b``."""
    if len(items) <= 2:
        return " and ".join(items)
    return ", ".join(items[:-1]) + ", and " + items[-1]


def _excerpt_from(content: str) -> str:
    words = re.sub(r"<[^>]*>", "", content).split()
    return " ".join(words[:55]) + (" [&hellip;]" if len(words) > 55 else "")


def _image_size(data: bytes) -> tuple[int, int] | None:
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
        return struct.unpack(">II", data[16:24])
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return struct.unpack("<HH", data[6:10])
    return None


def _filename_from_disposition(value: str) -> str | None:
    """The file name of a Content-Disposition (``filename*=`` before ``filename=``)."""
    starred = re.search(r"filename\*\s*=\s*([^;]+)", value, re.I)
    if starred:
        charset, _, rest = starred[1].strip().strip('"').partition("''")
        if rest:
            return unquote(rest, encoding=charset or "utf-8", errors="replace")
    plain = re.search(r'filename\s*=\s*("([^"]*)"|[^;]+)', value, re.I)
    if plain:
        name = plain[2] if plain[2] is not None else plain[1].strip()
        return name or None
    return None


def _php_params(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Form or query pairs as PHP reads them: ``a[]=1&a[]=2`` a list, ``m[k]=v`` a dict."""
    params: dict[str, Any] = {}
    for key, value in pairs:
        match = re.fullmatch(r"([^\[\]]+)\[([^\[\]]*)\]", key)
        if match is None:
            params[key] = value
        elif match[2] == "":
            params.setdefault(match[1], [])
            if isinstance(params[match[1]], list):
                params[match[1]].append(value)
        else:
            params.setdefault(match[1], {})
            if isinstance(params[match[1]], dict):
                params[match[1]][match[2]] = value
    return params


class _Params:
    """Validates request parameters against a schema, collecting every failure."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values
        self.invalid: dict[str, str] = {}
        self.details: dict[str, Any] = {}

    def bad(self, name: str, code: str, message: str, data: Any = None) -> None:
        self.invalid[name] = message
        self.details[name] = {"code": code, "message": message, "data": data}

    def check(self) -> None:
        """Raise ``rest_invalid_param`` if anything failed."""
        if self.invalid:
            raise WPError(
                "rest_invalid_param",
                f"Invalid parameter(s): {', '.join(self.invalid)}",
                400,
                params=self.invalid,
                details=self.details,
            )

    def integer(
        self, name: str, default: int, low: int | None = None, high: int | None = None
    ) -> int:
        value = self.values.get(name)
        if value is None:
            return default
        if isinstance(value, bool) or not re.fullmatch(r"-?\d+", str(value).strip()):
            self.bad(name, "rest_invalid_type", f"{name} is not of type integer.")
            return default
        number = int(str(value).strip())
        if low is not None and high is not None and not low <= number <= high:
            message = f"{name} must be between {low} (inclusive) and {high} (inclusive)"
            self.bad(name, "rest_out_of_bounds", message)
        elif low is not None and number < low:
            self.bad(name, "rest_out_of_bounds", f"{name} must be greater than or equal to {low}")
        return number

    def enum(self, name: str, allowed: tuple[str, ...], default: str) -> str:
        value = self.values.get(name, default)
        if value not in allowed:
            self.bad(name, "rest_not_in_enum", f"{name} is not one of {wp_list(allowed)}.")
            return default
        return str(value)

    def boolean(self, name: str, default: bool) -> bool:
        value = self.values.get(name)
        if value is None:
            return default
        text = str(value).lower()
        if isinstance(value, bool) or text in ("true", "false", "1", "0", ""):
            return value if isinstance(value, bool) else text in ("true", "1")
        self.bad(name, "rest_invalid_type", f"{name} is not of type boolean.")
        return default

    def text(self, name: str) -> str | None:
        """A string, or the ``raw`` of ``{"raw": ...}`` (title, content, excerpt)."""
        value = self.values.get(name)
        if value is None:
            return None
        if isinstance(value, dict):
            value = value.get("raw", "")
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            self.bad(name, "rest_invalid_type", f"{name} is not of type string.")
            return None
        return str(value)

    def strings(self, name: str) -> list[str]:
        """A list given as an array or as a comma-separated string."""
        value = self.values.get(name)
        if value is None:
            return []
        items = value if isinstance(value, list) else str(value).split(",")
        return [str(item).strip() for item in items if str(item).strip()]

    def integers(self, name: str) -> list[int] | None:
        value = self.values.get(name)
        if value is None:
            return None
        result = []
        for index, item in enumerate(self.strings(name) if not isinstance(value, list) else value):
            if isinstance(item, bool) or not re.fullmatch(r"\d+", str(item).strip()):
                self.bad(name, "rest_invalid_type", f"{name}[{index}] is not of type integer.")
                return None
            result.append(int(str(item).strip()))
        return result

    def mapping(self, name: str) -> dict[str, Any] | None:
        value = self.values.get(name)
        if value is None:
            return None
        if not isinstance(value, dict):
            self.bad(name, "rest_invalid_type", f"{name} is not of type object.")
            return None
        return value


class WordPressSandbox:
    """The site: start with :meth:`start` (or ``with``); :meth:`stop` joins the thread.

    Credentials are attributes: :attr:`username`, :attr:`email` and :attr:`app_password`
    (an administrator, user 1), :attr:`author_username`, :attr:`author_email` and
    :attr:`author_app_password` (an author, user 2). Passwords are random per instance unless
    given. Control methods are safe to call while requests are being served.
    """

    def __init__(
        self,
        *,
        port: int = 0,
        username: str = "admin",
        app_password: str | None = None,
        author_username: str = "author",
        author_app_password: str | None = None,
    ) -> None:
        self.admin = User(
            1,
            username,
            f"{username}@example.org",
            "Site Admin",
            "administrator",
            app_password or generate_app_password(),
        )
        self.author = User(
            2,
            author_username,
            f"{author_username}@example.org",
            "Post Author",
            "author",
            author_app_password or generate_app_password(),
        )
        self.username, self.email, self.app_password = (
            self.admin.username,
            self.admin.email,
            self.admin.app_password,
        )
        self.author_username, self.author_email, self.author_app_password = (
            self.author.username,
            self.author.email,
            self.author.app_password,
        )
        #: Seconds every request waits before it is answered (for client timeouts).
        self.delay = 0.0
        self._lock = threading.Lock()
        self._server = ThreadedServer(self, port)
        self._posts: dict[int, Post] = {}
        self._calls: list[Call] = []
        self._fail_count = 0
        self._fail_status = 503
        self._next_id = 1
        self._routes = self._route_table()

    # ------------------------------------------------------------ lifecycle
    @property
    def url(self) -> str:
        """The site's address, e.g. ``http://127.0.0.1:41234`` (the API is under /wp-json/)."""
        return self._server.url

    @property
    def api_url(self) -> str:
        """``{url}/wp-json/wp/v2``."""
        return f"{self.url}/wp-json/wp/v2"

    def start(self) -> WordPressSandbox:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> WordPressSandbox:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    # ------------------------------------------------------------- controls
    def fail_next(self, count: int, status: int = 503) -> None:
        """The next ``count`` requests answer ``status`` and change nothing."""
        with self._lock:
            self._fail_count, self._fail_status = count, status

    def seed_posts(
        self, count: int, *, status: str = "publish", post_type: str = "post", author: int = 1
    ) -> list[int]:
        """Add ``count`` posts "Post 1".. one minute apart (the last is the newest); their ids."""
        now = datetime.now(UTC).replace(microsecond=0)
        ids = []
        with self._lock:
            for n in range(1, count + 1):
                when = now - timedelta(minutes=count - n)
                post = self._new(post_type, author, f"Post {n}", f"Content of post {n}.", "")
                post.date = post.modified = when
                post.status = status
                self._settle_slug(post, None)
                ids.append(post.id)
        return ids

    def reset(self) -> None:
        """Delete all content, forget calls and failures; ids start at 1 again."""
        with self._lock:
            self._posts.clear()
            self._calls.clear()
            self._fail_count = 0
            self._next_id = 1
            self.delay = 0.0

    # -------------------------------------------------------------- queries
    @property
    def calls(self) -> list[Call]:
        """Every request so far, oldest first."""
        with self._lock:
            return list(self._calls)

    def posts(self) -> list[Post]:
        """Copies of all posts (any status, trash included), by id."""
        return self._of_type("post")

    def pages(self) -> list[Post]:
        """Copies of all pages, by id."""
        return self._of_type("page")

    def media(self) -> list[Post]:
        """Copies of all attachments (with their bytes in ``data``), by id."""
        return self._of_type("attachment")

    def _of_type(self, post_type: str) -> list[Post]:
        with self._lock:
            return [copy.deepcopy(p) for _, p in sorted(self._posts.items()) if p.type == post_type]

    # ------------------------------------------------------------- serving
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        body = await request.body()
        upload = None
        form: list[tuple[str, str]] = []
        if request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
            with contextlib.suppress(MultiPartException):  # unreadable: no fields, no file
                async with request.form() as data:
                    for name, value in data.multi_items():
                        if not isinstance(value, UploadFile):
                            form.append((name, value))
                        elif name == "file" and upload is None:
                            content = await value.read()
                            upload = (value.filename or "", value.content_type or "", content)
        if self.delay > 0:
            await self._server.pause(self.delay)
        with self._lock:
            user_name, response = self._respond(request, body, upload, form)
            call = Call(
                time.time(),
                request.method,
                request.url.path,
                request.url.query,
                response.status_code,
                user_name,
            )
            self._calls.append(call)
        await response(scope, receive, send)

    def _respond(
        self,
        request: Request,
        body: bytes,
        upload: tuple[str, str, bytes] | None,
        form: list[tuple[str, str]],
    ) -> tuple[str | None, Response]:
        """The user's login (if authenticated) and the answer."""
        if self._fail_count > 0:
            self._fail_count -= 1
            error = WPError("sandbox_failure", "The sandbox was told to fail.", self._fail_status)
            return None, _json(self._fail_status, error.body())
        path = request.url.path
        if path.startswith("/wp-content/uploads/"):
            return None, self._download(path.removeprefix("/wp-content/uploads/"))
        if path != "/wp-json" and not path.startswith("/wp-json/"):
            return None, Response(b"<h1>Not Found</h1>", 404, media_type="text/html")
        route = "/" + path.removeprefix("/wp-json").strip("/")
        user: User | None = None
        try:
            user = self._authenticate(request.headers)
            query = parse_qsl(request.url.query, keep_blank_values=True)
            params = _php_params(query)
            params.update(self._body_params(request.headers, body, form))
            req = _Request(request.method, query, params, request.headers, body, upload, user)
            status, answer, headers = self._dispatch(route, req)
        except WPError as error:
            status, answer, headers = error.status, error.body(), {}
        return (user.username if user else None), _json(status, answer, headers)

    def _body_params(
        self, headers: Headers, body: bytes, form: list[tuple[str, str]]
    ) -> dict[str, Any]:
        content_type = headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type == "application/json" and body.strip():
            try:
                value = json.loads(body)
            except ValueError as exc:
                raise WPError(
                    "rest_invalid_json",
                    "Invalid JSON body passed.",
                    400,
                    json_error_code=4,
                    json_error_message=f"Syntax error ({exc})",
                ) from None
            return value if isinstance(value, dict) else {}
        if content_type == "application/x-www-form-urlencoded":
            return _php_params(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        if content_type == "multipart/form-data":
            return _php_params(form)
        return {}

    def _authenticate(self, headers: Headers) -> User | None:
        """The user of an application password, None without Basic; a wrong one fails."""
        creds = basic_credentials(headers)
        if creds is None:
            return None
        login, password = creds
        user = next((u for u in (self.admin, self.author) if login in (u.username, u.email)), None)
        if user is None:
            raise WPError(
                "invalid_username", "Unknown username. Check again or try your email address.", 401
            )
        given = re.sub(r"[^a-z\d]", "", password, flags=re.I)
        expected = re.sub(r"[^a-z\d]", "", user.app_password, flags=re.I)
        if not secrets.compare_digest(given.encode(), expected.encode()):
            raise WPError(
                "incorrect_password",
                "The provided password is an invalid application password.",
                401,
            )
        return user

    def _route_table(self) -> list[tuple[str, re.Pattern[str], dict[str, Handler]]]:
        """WordPress route patterns with their handlers by method."""
        table: list[tuple[str, dict[str, Handler]]] = [
            ("/", {"GET": self._index}),
            ("/wp/v2", {"GET": self._namespace}),
        ]
        for base in ("posts", "pages"):
            ptype = TYPES[base]
            edit = partial(self._update, ptype)
            table.append(
                (
                    f"/wp/v2/{base}",
                    {"GET": partial(self._list, ptype), "POST": partial(self._create, ptype)},
                )
            )
            item: dict[str, Handler] = {"GET": partial(self._get, ptype)}
            item.update(POST=edit, PUT=edit, PATCH=edit)
            item["DELETE"] = partial(self._delete, ptype)
            table.append((f"/wp/v2/{base}/(?P<id>[\\d]+)", item))
        table.append(
            ("/wp/v2/media", {"GET": partial(self._list, "attachment"), "POST": self._upload})
        )
        table.append(("/wp/v2/media/(?P<id>[\\d]+)", {"GET": partial(self._get, "attachment")}))
        table.append(("/wp/v2/users/me", {"GET": self._me}))
        return [(route, re.compile(route, re.I), handlers) for route, handlers in table]

    def _dispatch(self, route: str, req: _Request) -> Answer:
        for _, pattern, handlers in self._routes:
            match = pattern.fullmatch(route)
            if match is not None and req.method in handlers:
                args = {k: int(v) for k, v in match.groupdict().items()}
                return handlers[req.method](req, **args)
        raise WPError(
            "rest_no_route", "No route was found matching the URL and request method.", 404
        )

    # ------------------------------------------------------------- discovery
    def _index(self, req: _Request) -> Answer:
        routes = {}
        for route, _, handlers in self._routes:
            entry: dict[str, Any] = {
                "namespace": "" if route == "/" else "wp/v2",
                "methods": list(handlers),
                "endpoints": [{"methods": list(handlers), "args": {}}],
            }
            if "(?P" not in route:
                entry["_links"] = {"self": [{"href": f"{self.url}/wp-json{route}"}]}
            routes[route] = entry
        body = {
            "name": SITE_NAME,
            "description": "A WordPress REST API sandbox",
            "url": self.url,
            "home": self.url,
            "gmt_offset": 0,
            "timezone_string": "UTC",
            "namespaces": ["oembed/1.0", "wp/v2"],
            "authentication": {
                "application-passwords": {
                    "endpoints": {"authorization": f"{self.url}/wp-admin/authorize-application.php"}
                }
            },
            "routes": routes,
            "_links": {"help": [{"href": "https://developer.wordpress.org/rest-api/"}]},
        }
        return 200, body, {}

    def _namespace(self, req: _Request) -> Answer:
        _, index, _ = self._index(req)
        routes = {k: v for k, v in index["routes"].items() if k.startswith("/wp/v2")}
        return 200, {"namespace": "wp/v2", "routes": routes}, {}

    def _me(self, req: _Request) -> Answer:
        context = _Params(req.params)
        edit = context.enum("context", CONTEXTS, "view") == "edit"
        context.check()
        user = req.user
        if user is None:
            raise WPError("rest_not_logged_in", "You are not currently logged in.", 401)
        body: dict[str, Any] = {
            "id": user.id,
            "name": user.name,
            "url": "",
            "description": "",
            "link": f"{self.url}/?author={user.id}",
            "slug": user.username,
            "avatar_urls": {},
            "meta": [],
        }
        if edit:
            body.update(username=user.username, email=user.email, roles=[user.role])
        return 200, body, {}

    # ----------------------------------------------------------- permissions
    @staticmethod
    def _auth_code(user: User | None) -> int:
        """``rest_authorization_required_code()``: 401 for nobody, 403 for a user."""
        return 401 if user is None else 403

    @staticmethod
    def _can_create(user: User | None, post_type: str) -> bool:
        if user is None:
            return False
        return user.role == "administrator" or post_type in ("post", "attachment")

    def _can_edit(self, user: User | None, post: Post) -> bool:
        if user is None:
            return False
        if user.role == "administrator":
            return True
        return self._can_create(user, post.type) and post.author == user.id

    def _can_read(self, user: User | None, post: Post) -> bool:
        if post.status in ("publish", "inherit"):
            return True
        return self._can_edit(user, post)

    # ------------------------------------------------------------------ posts
    def _found(self, post_type: str, post_id: int) -> Post:
        post = self._posts.get(post_id)
        if post is None or post.type != post_type:
            raise WPError("rest_post_invalid_id", "Invalid post ID.", 404)
        return post

    def _list(self, post_type: str, req: _Request) -> Answer:
        p = _Params(req.params)
        context = p.enum("context", CONTEXTS, "view")
        page = p.integer("page", 1, low=1)
        per_page = p.integer("per_page", 10, low=1, high=100)
        order = p.enum("order", ("asc", "desc"), "desc")
        orderby = p.enum("orderby", ORDERBY, "date")
        search = str(req.params.get("search") or "")
        slugs = p.strings("slug")
        statuses = ["inherit"] if post_type == "attachment" else p.strings("status") or ["publish"]
        if post_type != "attachment":
            for status in statuses:
                if status not in LIST_STATUSES:
                    p.bad(
                        "status",
                        "rest_not_in_enum",
                        f"status is not one of {wp_list(LIST_STATUSES)}.",
                    )
                    break
                if status != "publish" and not self._can_create(req.user, post_type):
                    data = {"status": self._auth_code(req.user)}
                    p.bad("status", "rest_forbidden_status", "Status is forbidden.", data)
                    break
        p.check()
        if context == "edit" and not self._can_create(req.user, post_type):
            raise WPError(
                "rest_forbidden_context",
                "Sorry, you are not allowed to edit posts in this post type.",
                self._auth_code(req.user),
            )
        wanted = set(statuses)
        found = []
        for post in self._posts.values():
            if post.type != post_type or not self._can_read(req.user, post):
                continue
            if "any" in wanted and post.status == "trash":
                continue
            if "any" not in wanted and post.status not in wanted:
                continue
            if slugs and post.slug not in slugs:
                continue
            haystack = f"{post.title}\n{post.excerpt}\n{post.content}".lower()
            if not all(term in haystack for term in search.lower().split()):
                continue
            found.append(post)
        key: Callable[[Post], Any] = {
            "author": lambda q: (q.author, q.id),
            "date": lambda q: (q.date, q.id),
            "id": lambda q: q.id,
            "modified": lambda q: (q.modified, q.id),
            "slug": lambda q: (q.slug, q.id),
            "title": lambda q: (q.title.lower(), q.id),
        }[orderby]
        found.sort(key=key, reverse=order == "desc")
        total = len(found)
        pages = math.ceil(total / per_page)
        if page > pages and total > 0:
            raise WPError(
                "rest_post_invalid_page_number",
                "The page number requested is larger than the number of pages available.",
                400,
            )
        chosen = found[(page - 1) * per_page : page * per_page]
        body = [self._render(post, context) for post in chosen]
        headers = {"X-WP-Total": str(total), "X-WP-TotalPages": str(pages)}
        links = []
        collection = f"{self.api_url}/{REST_BASE[post_type]}"
        query = [(k, v) for k, v in req.query if k != "page"]
        if page > 1:
            links.append((min(page - 1, pages), "prev"))
        if pages > page:
            links.append((page + 1, "next"))
        if links:
            headers["Link"] = ", ".join(
                f'<{collection}?{urlencode([*query, ("page", str(n))])}>; rel="{rel}"'
                for n, rel in links
            )
        return 200, body, headers

    def _get(self, post_type: str, req: _Request, id: int) -> Answer:
        p = _Params(req.params)
        context = p.enum("context", CONTEXTS, "view")
        p.check()
        post = self._found(post_type, id)
        if context == "edit" and not self._can_edit(req.user, post):
            raise WPError(
                "rest_forbidden_context",
                "Sorry, you are not allowed to edit this post.",
                self._auth_code(req.user),
            )
        if not self._can_read(req.user, post):
            raise WPError(
                "rest_forbidden",
                "Sorry, you are not allowed to do that.",
                self._auth_code(req.user),
            )
        return 200, self._render(post, context), {}

    def _create(self, post_type: str, req: _Request) -> Answer:
        p = _Params(req.params)
        fields = self._fields(p, post_type)
        p.check()
        if req.params.get("id"):
            raise WPError("rest_post_exists", "Cannot create existing post.", 400)
        if req.user is None or not self._can_create(req.user, post_type):
            raise WPError(
                "rest_cannot_create",
                "Sorry, you are not allowed to create posts as this user.",
                self._auth_code(req.user),
            )
        if not any(fields.get(name) for name in ("title", "content", "excerpt")):
            raise WPError("empty_content", "Content, title, and excerpt are empty.", 400)
        post = self._new(post_type, req.user.id, "", "", "")
        self._apply(post, fields)
        location = f"{self.api_url}/{REST_BASE[post_type]}/{post.id}"
        return 201, self._render(post, "edit"), {"Location": location}

    def _update(self, post_type: str, req: _Request, id: int) -> Answer:
        p = _Params(req.params)
        fields = self._fields(p, post_type)
        p.check()
        post = self._found(post_type, id)
        if not self._can_edit(req.user, post):
            raise WPError(
                "rest_cannot_edit",
                "Sorry, you are not allowed to edit this post.",
                self._auth_code(req.user),
            )
        merged = {
            name: fields.get(name, getattr(post, name)) for name in ("title", "content", "excerpt")
        }
        if not any(merged.values()):
            raise WPError("empty_content", "Content, title, and excerpt are empty.", 400)
        self._apply(post, fields)
        post.modified = datetime.now(UTC).replace(microsecond=0)
        return 200, self._render(post, "edit"), {}

    def _delete(self, post_type: str, req: _Request, id: int) -> Answer:
        p = _Params(req.params)
        force = p.boolean("force", False)
        p.check()
        post = self._found(post_type, id)
        if not self._can_edit(req.user, post):
            raise WPError(
                "rest_cannot_delete",
                "Sorry, you are not allowed to delete this post.",
                self._auth_code(req.user),
            )
        if force:
            previous = self._render(post, "edit")
            del self._posts[post.id]
            return 200, {"deleted": True, "previous": previous}, {}
        if post.status == "trash":
            raise WPError("rest_already_trashed", "The post has already been deleted.", 410)
        post.trashed_status, post.status = post.status, "trash"
        if post.slug and not post.slug.endswith("__trashed"):
            post.slug += "__trashed"
        post.modified = datetime.now(UTC).replace(microsecond=0)
        return 200, self._render(post, "edit"), {}

    def _fields(self, p: _Params, post_type: str) -> dict[str, Any]:
        """The writable fields a create or update request gives (validated into ``p``)."""
        fields: dict[str, Any] = {}
        for name in ("title", "content", "excerpt"):
            value = p.text(name)
            if value is not None:
                fields[name] = value
        if "status" in p.values:
            fields["status"] = p.enum("status", POST_STATUSES, "draft")
        slug = p.text("slug")
        if slug is not None:
            fields["slug"] = sanitize_title(slug)
        if post_type == "post":
            for name in ("categories", "tags"):
                terms = p.integers(name)
                if terms is not None:
                    fields[name] = terms
        elif post_type == "page":
            for name in ("parent", "menu_order"):
                if name in p.values:
                    fields[name] = p.integer(name, 0, low=0)
        meta = p.mapping("meta")
        if meta is not None:
            fields["meta"] = meta
        return fields

    def _new(self, post_type: str, author: int, title: str, content: str, excerpt: str) -> Post:
        now = datetime.now(UTC).replace(microsecond=0)
        post = Post(
            id=self._next_id,
            type=post_type,
            author=author,
            title=title,
            content=content,
            excerpt=excerpt,
            status="inherit" if post_type == "attachment" else "draft",
            slug="",
            date=now,
            modified=now,
            categories=[1] if post_type == "post" else [],
        )
        self._next_id += 1
        self._posts[post.id] = post
        return post

    def _apply(self, post: Post, fields: dict[str, Any]) -> None:
        slug = fields.pop("slug", None)
        for name, value in fields.items():
            if name == "status":
                post.status = "publish" if value == "future" else value  # no date: published
            elif name == "meta":
                for key, item in value.items():
                    if item is None:
                        post.meta.pop(key, None)
                    else:
                        post.meta[key] = item
            else:
                setattr(post, name, value)
        self._settle_slug(post, slug)

    def _settle_slug(self, post: Post, slug: str | None) -> None:
        """``wp_insert_post``'s slug: none for drafts, else from the title and unique."""
        slug = post.slug if slug is None else slug
        if post.status in ("draft", "pending"):
            post.slug = slug
            return
        if not slug:
            slug = sanitize_title(post.title) or str(post.id)
        post.slug = self._unique_slug(post, slug)

    def _unique_slug(self, post: Post, slug: str) -> str:
        """``wp_unique_post_slug``: ``slug``, else ``slug-2``, ``slug-3``..."""

        def taken(candidate: str) -> bool:
            for other in self._posts.values():
                if other.id == post.id or other.slug != candidate:
                    continue
                if post.type == "attachment" or other.type == post.type == "post":
                    return True
                if (
                    post.type == "page"
                    and other.type in ("page", "attachment")
                    and other.parent == post.parent
                ):
                    return True
            return False

        number, candidate = 2, slug
        while taken(candidate):
            candidate = f"{slug}-{number}"
            number += 1
        return candidate

    def _render(self, post: Post, context: str) -> dict[str, Any]:
        """The post as ``prepare_item_for_response`` shows it in ``context``."""
        edit = context == "edit"
        query = {"post": "p", "page": "page_id", "attachment": "attachment_id"}[post.type]
        link = f"{self.url}/?{query}={post.id}"
        source_url = f"{self.url}/wp-content/uploads/{post.file}" if post.file else ""
        guid = source_url or link
        body: dict[str, Any] = {
            "id": post.id,
            "date": post.date.strftime(_DATE),
            "date_gmt": post.date.strftime(_DATE),
            "guid": {"rendered": guid, **({"raw": guid} if edit else {})},
            "modified": post.modified.strftime(_DATE),
            "modified_gmt": post.modified.strftime(_DATE),
            "slug": post.slug,
            "status": post.status,
            "type": post.type,
            "link": link,
            "title": {"rendered": post.title, **({"raw": post.title} if edit else {})},
            "author": post.author,
            "featured_media": 0,
            "comment_status": "closed" if post.type == "page" else "open",
            "ping_status": "closed" if post.type == "page" else "open",
            "template": "",
            "meta": dict(post.meta),
        }
        if post.type == "attachment":
            size = _image_size(post.data)
            details: dict[str, Any] = {"filesize": len(post.data)}
            if size is not None:
                details.update(width=size[0], height=size[1], file=post.file, sizes={})
            body.update(
                description=self._text(post.content, edit),
                caption=self._text(post.caption, edit),
                alt_text=post.alt_text,
                media_type="image" if post.mime_type.startswith("image/") else "file",
                mime_type=post.mime_type,
                media_details=details,
                post=post.parent or None,
                source_url=source_url,
            )
        else:
            body["content"] = {**self._text(post.content, edit), "protected": False}
            if edit:
                body["content"]["block_version"] = 0
            excerpt = self._text(post.excerpt, edit)
            if not post.excerpt:
                excerpt["rendered"] = autop(_excerpt_from(post.content))
            body["excerpt"] = {**excerpt, "protected": False}
        if post.type == "post":
            body.update(
                sticky=False,
                format="standard",
                categories=list(post.categories),
                tags=list(post.tags),
            )
        elif post.type == "page":
            body.update(parent=post.parent, menu_order=post.menu_order)
        if edit:
            body["password"] = ""
            body["permalink_template"] = link
            body["generated_slug"] = post.slug or sanitize_title(post.title) or str(post.id)
        base = f"{self.api_url}/{REST_BASE[post.type]}"
        body["_links"] = {
            "self": [{"href": f"{base}/{post.id}"}],
            "collection": [{"href": base}],
            "about": [{"href": f"{self.api_url}/types/{post.type}"}],
            "author": [{"embeddable": True, "href": f"{self.api_url}/users/{post.author}"}],
        }
        return body

    @staticmethod
    def _text(raw: str, edit: bool) -> dict[str, Any]:
        return {"rendered": autop(raw), **({"raw": raw} if edit else {})}

    # ------------------------------------------------------------------ media
    def _upload(self, req: _Request) -> Answer:
        """``POST /media``: the raw body with Content-Disposition, or multipart ``file``."""
        p = _Params(req.params)
        title, caption = p.text("title"), p.text("caption")
        alt_text, description = p.text("alt_text"), p.text("description")
        p.check()
        if req.user is None or not self._can_create(req.user, "attachment"):
            raise WPError(
                "rest_cannot_create",
                "Sorry, you are not allowed to create posts as this user.",
                self._auth_code(req.user),
            )
        if req.upload is not None:
            name, _, data = req.upload
            failure = "rest_upload_unknown_error"
        else:
            content_type = req.headers.get("content-type", "")
            if content_type.lower().startswith("multipart/") or not req.body:
                raise WPError("rest_upload_no_data", "No data supplied.", 400)
            if not content_type:
                raise WPError("rest_upload_no_content_type", "No Content-Type supplied.", 400)
            disposition = req.headers.get("content-disposition")
            if not disposition:
                raise WPError(
                    "rest_upload_no_content_disposition", "No Content-Disposition supplied.", 400
                )
            name = _filename_from_disposition(disposition) or ""
            if not name:
                raise WPError(
                    "rest_upload_invalid_disposition",
                    "Invalid Content-Disposition supplied. Content-Disposition needs to be"
                    ' formatted as `attachment; filename="image.png"` or similar.',
                    400,
                )
            data = req.body
            failure = "rest_upload_sideload_error"
        name = sanitize_file_name(name)
        stem, dot, extension = name.rpartition(".")
        mime_type = MIME_TYPES.get(extension.lower()) if dot and stem else None
        if mime_type is None:
            raise WPError(failure, "Sorry, you are not allowed to upload this file type.", 500)
        now = datetime.now(UTC)
        taken = {post.file for post in self._posts.values() if post.type == "attachment"}
        folder, candidate, number = now.strftime("%Y/%m"), name, 1
        while f"{folder}/{candidate}" in taken:
            candidate = f"{stem}-{number}.{extension}"
            number += 1
        post = self._new("attachment", req.user.id, title or stem, description or "", "")
        post.file, post.mime_type, post.data = f"{folder}/{candidate}", mime_type, data
        post.caption, post.alt_text = caption or "", alt_text or ""
        self._settle_slug(post, sanitize_title(post.title))
        location = f"{self.api_url}/media/{post.id}"
        return 201, self._render(post, "edit"), {"Location": location}

    def _download(self, relative: str) -> Response:
        for post in self._posts.values():
            if post.type == "attachment" and post.file == relative:
                return Response(post.data, 200, media_type=post.mime_type)
        return Response(b"<h1>Not Found</h1>", 404, media_type="text/html")


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    data = json.dumps(body, ensure_ascii=False).encode()
    return Response(data, status, headers, media_type="application/json; charset=UTF-8")


def main(argv: list[str] | None = None) -> None:
    """Serve the site until Ctrl-C, printing its URL and the two users' credentials."""
    parser = argparse.ArgumentParser(prog="python -m tests.sandbox.wordpress")
    parser.add_argument("--port", type=int, default=8300, help="port on 127.0.0.1 (0: any free)")
    parser.add_argument("--posts", type=int, default=0, help="published posts to start with")
    args = parser.parse_args(argv)
    site = WordPressSandbox(port=args.port)
    with site:
        site.seed_posts(args.posts)
        print(
            f"WordPress sandbox on {site.url}/wp-json/ ({args.posts} posts); Ctrl-C stops it\n"
            f"  administrator {site.username!r} application password {site.app_password!r}\n"
            f"  author {site.author_username!r} application password {site.author_app_password!r}",
            flush=True,
        )
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()
