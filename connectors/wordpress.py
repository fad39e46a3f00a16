"""WordPress sites over the REST API (``wp/v2``), logged in with an application password.

::

    [site]
    kind = "wordpress"
    url = "https://blog.example.com"        # the site; the client appends /wp-json/wp/v2/
    auth = { kind = "basic", username = "hub-bot", password = "env:WP_APP_PASSWORD" }

    wp = ctx.connector("site")
    post = wp.create_post("Summer sale", "<p>Until Sunday.</p>", "publish", slug="summer-sale")
    wp.update_post(post["id"], excerpt="Ends Sunday")
    for draft in wp.list_posts(status="draft", search="sale"):    # every page
        ...
    image = wp.upload_media("banner.png", png, "image/png", alt_text="Summer sale")
    wp.update_post(post["id"], featured_media=image["id"])
    wp.delete_post(post["id"])                                     # to the trash
    wp.delete_post(post["id"], force=True)                         # gone

Pages have the same calls (``create_page`` ... ``delete_page``); any other post
type is reached with the generic calls of :class:`~connectors.cms.CmsClient` and
its REST base (``wp.create_item("products", ...)``); anything else with the
REST client's own calls (``wp.get("categories")``, paths under ``/wp-json/wp/v2/``).
Items come back in the ``edit`` context (raw title and content, ``meta``,
``generated_slug``) when the connection logs in.

The application password is made in WordPress under Users → Profile →
Application Passwords (WordPress 5.6+), for a user whose role allows what the
flows do (an Editor for posts and pages of others; an Author only for their
own posts). Spaces in it may be kept or left out.

**Slugs, drafts and idempotency.** WordPress gives a post its slug when it is
published: a draft created *without* a slug has none (``slug`` is ``""``; its
``generated_slug`` only says what publishing will make of the title), so a draft
cannot be found by a slug it does not have. A draft created *with* a slug keeps
it, though WordPress makes slugs unique only on publishing (a taken one gets
``-2``). So :meth:`WordPressClient.create_post` looks first and creates only
when nothing is there (see :mod:`connectors.cms`):

- with ``slug=``: the post of that slug in any status but the trash
  (``?slug=...&status=any``) is returned as it is, whether draft or published;
- without: the step's idempotency key (or ``key=`` given by the flow) is sent
  in the post meta field ``hub_key`` (option ``key_meta``) and looked up there,
  among the posts of any status whose text matches the title's words
  (``?search=``), or the newest 100 when there is no title. Not by
  ``generated_slug``: two drafts may share a title, so a title is no key.

WordPress keeps only meta fields that are registered for the REST API, so the
site needs, once (a must-use plugin)::

    register_post_meta('', 'hub_key', ['show_in_rest' => true, 'single' => true,
                                       'type' => 'string']);

Until it has that, a create without a slug cannot be told from a new one (the
connector logs a warning when WordPress answers without the field): give a
slug, or register the field. ``key_meta = ""`` turns the key off.

**Errors** (``{"code", "message", "data": {"status"}}``) become the hub's:

- 401 (``incorrect_password``, ``invalid_username``): a
  :class:`~connectors.cms.CmsError` naming the connection and saying to check
  its application password;
- other 4xx (``rest_invalid_param``, ``rest_post_invalid_id``,
  ``rest_cannot_create``, ``rest_cannot_edit`` ...) and ``rest_upload_*``
  (which WordPress may answer with 500): a :class:`~connectors.cms.CmsError`
  (a :class:`~hub.errors.BusinessError`) with WordPress's message and code;
- 408, 425, 429, other 5xx and timeouts: retried in the call, then a
  :class:`~hub.errors.TransientError` (the REST connector's rules). A create
  or an upload is retried as a whole instead: the lookup runs again before the
  create is sent again (:meth:`~connectors.cms.CmsClient.retried_as_one`).

Options (``options = {...}``): ``key_meta`` (above); ``headers`` (sent on every
call); ``idempotency_header`` (none is sent unless this names one).
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx

from connectors.base import RETRY_STATUSES, retry_after
from connectors.cms import CmsClient, CmsError, Item
from connectors.rest import RestClient, RestConnector
from hub.errors import StepError, TransientError

if TYPE_CHECKING:
    from hub.connections import ConnectionConfig
    from hub.context import StepContext
    from hub.settings import Settings

log = logging.getLogger("hub.connectors")

#: where the REST API's wp/v2 routes live under the site's address
API_PATH = "wp-json/wp/v2/"
#: the post meta field that holds the key of the create that made a post
KEY_META = "hub_key"
#: the largest page WordPress serves
PER_PAGE = 100
#: answers no retry changes (the 4xx but 408, 425 and 429): translated here, not retried
REFUSALS = tuple(status for status in range(400, 500) if status not in RETRY_STATUSES)
#: words of a title used to search for a post by its key (WordPress ANDs them)
SEARCH_WORDS = 6


class WordPressConnector(RestConnector):
    """One connection to a WordPress site: the REST connector, rooted at ``/wp-json/wp/v2/``."""

    kind = "wordpress"

    def __init__(self, config: ConnectionConfig, settings: Settings) -> None:
        super().__init__(config, settings)
        #: the site's address, without the API path even when ``url`` gives it
        self.site = site_url(config.url)
        self.client.base_url = httpx.URL(f"{self.site}/{API_PATH}")
        self.key_meta = str(config.options.get("key_meta", KEY_META))
        #: the configuration with no retries inside a call (see ``single_tries``)
        self.one_try = config.model_copy(update={"retries": 0})
        self.warned = False

    def bind(self, ctx: StepContext | None) -> WordPressClient:
        return WordPressClient(self, ctx)

    def check(self) -> str:
        """Read ``/users/me`` with the credentials: ``logged in to SITE as NAME (roles)``."""
        me = self.bind(None).me()
        roles = ", ".join(str(role) for role in me.get("roles") or []) or "roles not shown"
        return f"logged in to {self.site} as {me.get('name') or me.get('slug')} ({roles})"


class WordPressClient(RestClient, CmsClient):
    """A step's client of a ``wordpress`` connection (``ctx.connector(name)``): the REST
    client's calls, rooted at ``/wp-json/wp/v2/``, and the CMS calls::

        wp = ctx.connector("site")
        page = wp.create_page("About us", "<p>...</p>", "publish", slug="about")
        wp.get("categories", params={"search": "news"})     # any other route
    """

    connector: WordPressConnector

    def __init__(self, connector: WordPressConnector, ctx: StepContext | None) -> None:
        super().__init__(connector, ctx)
        self._single = False

    @property
    def config(self) -> ConnectionConfig:
        return self.connector.one_try if self._single else self.connector.config

    @contextmanager
    def single_tries(self) -> Iterator[None]:
        before, self._single = self._single, True
        try:
            yield
        finally:
            self._single = before

    @property
    def logged_in(self) -> bool:
        return self.config.auth.kind != "none"

    # ------------------------------------------------------------- requests
    def request(
        self,
        method: str,
        path: str,
        *,
        ok: tuple[int, ...] = (),
        idempotency_key: str | None = None,
        **kw: Any,
    ) -> httpx.Response:
        """The REST client's call (retries, egress, evidence), with WordPress's
        errors translated (see the module's docstring); ``ok`` as there."""
        if idempotency_key is None and "idempotency_header" not in self.config.options:
            idempotency_key = ""  # WordPress reads no such header; keys go in post meta
        response = super().request(
            method, path, ok=(*ok, *REFUSALS), idempotency_key=idempotency_key, **kw
        )
        if response.status_code >= 400 and response.status_code not in ok:
            raise self._refused(method, path, response)
        return response

    def _refused(self, method: str, path: str, response: httpx.Response) -> StepError:
        """The hub's error for WordPress's error answer (left as evidence)."""
        self.record(request=response.request, response=response)
        code, message, data = wp_error(response)
        status = response.status_code
        what = f"{self._what(method, path)} answered {status}"
        if status in RETRY_STATUSES and not code.startswith("rest_upload_"):
            wait = retry_after(response.headers.get("Retry-After"))
            return TransientError(f"{what}: {message} [{code}]", retry_after=wait)
        text = f"{what}: {message} [{code}]"
        details = _details(data)
        if details:
            text += f" ({details})"
        if status == 401:
            text += f"; {self._login_fix(code)}"
        elif status == 403:
            text += (
                f"; the WordPress user {self.config.auth.username!r} of connection "
                f"{self.connector.name!r} may not do this: give it a role that may, or "
                "use another user"
            )
        return CmsError(text, code=code, status=status, data=data)

    def _login_fix(self, code: str) -> str:
        auth, name = self.config.auth, self.connector.name
        if auth.kind == "none":
            return (
                f"connection {name!r} logs in with no credentials: give it auth kind basic "
                "with a user and an application password"
            )
        if auth.kind != "basic":
            return f"check the credentials of connection {name!r}"
        where = "auth.password"
        if auth.password and auth.password.startswith("env:"):
            where += f" = {auth.password}"
        user = f"the user {auth.username!r}"
        if code == "invalid_username":
            user = f"auth.username: WordPress knows no user {auth.username!r}"
        return (
            f"check the application password of connection {name!r} ({where}) and {user}; "
            "make a new one under Users > Profile > Application Passwords if it was revoked"
        )

    # ----------------------------------------------------------- the basics
    def me(self) -> Item:
        """The logged-in user (``/users/me``, with ``roles`` and ``username``)."""
        result: Item = self.get("users/me", params={"context": "edit"})
        return result

    def download(self, url: str) -> bytes:
        """The bytes at ``url`` (a media item's ``source_url``), within the allow-list."""
        return self.request("GET", url).content

    def _edit(self) -> dict[str, Any]:
        return {"context": "edit"} if self.logged_in else {}

    def _walk(
        self, path: str, params: dict[str, Any], *, max_pages: int | None = None
    ) -> Iterator[Item]:
        """Every item of a listing, page by page (``?page=``) up to ``X-WP-TotalPages``,
        else as long as a ``Link: rel="next"`` is given."""
        page = 1
        while True:
            response = self.request("GET", path, params={**params, "page": page})
            items = response.json() if response.content else []
            if not isinstance(items, list):
                raise CmsError(
                    f"{self._what('GET', path)} answered no list: is {self.connector.site} "
                    "a WordPress site?",
                    code="not_a_list",
                    status=response.status_code,
                )
            yield from items
            total = response.headers.get("X-WP-TotalPages", "")
            more = page < int(total) if total.isdigit() else "next" in response.links
            if not more or not items or (max_pages is not None and page >= max_pages):
                return
            page += 1

    # ------------------------------------------------- CmsClient primitives
    def list_items(self, collection: str, **filters: Any) -> Iterator[Item]:
        """Every item of ``collection`` (``posts``, ``pages``, a post type's REST base)
        matching WordPress's filters (``status``, ``search``, ``categories``,
        ``per_page`` ...; lists may be given as lists), fetched page by page as the
        iterator is consumed::

            recent = [p["id"] for p in wp.list_items("posts", after="2024-06-01T00:00:00")]
        """
        return self._walk(collection, query({"per_page": PER_PAGE, **filters}))

    def get_item(self, collection: str, item_id: int | str, *, context: str | None = None) -> Item:
        """One item by id (``edit`` context when logged in); ``rest_post_invalid_id``
        when there is none."""
        params = {"context": context} if context else self._edit()
        result: Item = self.get(f"{collection}/{item_id}", params=params or None)
        return result

    def find_item(self, collection: str, *, slug: str) -> Item | None:
        """The item whose slug is ``slug`` (as WordPress writes it: see :func:`slugify`),
        in any status but the trash; the oldest when drafts share it; None if none."""
        wanted = slugify(slug)
        if not wanted:
            return None
        params: dict[str, Any] = {"slug": wanted, "orderby": "id", "order": "asc"}
        if self.logged_in:
            params.update(status="any", context="edit")
        for item in self._walk(collection, params, max_pages=1):
            if item.get("slug") == wanted:
                return item
        return None

    def find_by_key(self, collection: str, key: str, fields: dict[str, Any]) -> Item | None:
        """The item whose ``key_meta`` field holds ``key``, searched among the items
        (any status) matching the title's words, or among the newest 100."""
        field = self.connector.key_meta
        if not field:
            return None
        params: dict[str, Any] = {"status": "any", "orderby": "id", "order": "desc"}
        params.update(context="edit", per_page=PER_PAGE)
        terms = search_terms(fields.get("title"))
        if terms:
            params["search"] = terms
        for item in self._walk(collection, params, max_pages=None if terms else 1):
            meta = item.get("meta")
            if isinstance(meta, dict) and meta.get(field) == key:
                return item
        return None

    def insert_item(self, collection: str, fields: dict[str, Any], *, key: str | None) -> Item:
        """Create one item (``POST /wp/v2/{collection}``), ``key`` in its meta."""
        body = dict(fields)
        field = self.connector.key_meta
        if key is not None and field:
            body["meta"] = {**(body.get("meta") or {}), field: key}
        item: Item = self.post(collection, json=body)
        self._kept(collection, item, key, body.get("slug"))
        return item

    def _kept(self, collection: str, item: Item, key: str | None, slug: str | None) -> None:
        """Warn when WordPress dropped the key or changed the slug: a retry would not find
        the item, and would make another."""
        meta, field = item.get("meta"), self.connector.key_meta
        dropped = not isinstance(meta, dict) or meta.get(field) != key
        if key is not None and field and slug is None and dropped and not self.connector.warned:
            self.connector.warned = True
            log.warning(
                "%s: WordPress did not keep the post meta field %r, so a create without "
                "a slug cannot be found again when a step is retried; register it "
                "(register_post_meta('', %r, ['show_in_rest' => true, 'single' => true, "
                "'type' => 'string'])) or give slugs",
                self.connector.name,
                field,
                field,
            )
        given = slugify(slug) if slug is not None else ""
        if given and item.get("slug") not in ("", given):
            log.warning(
                "%s: WordPress gave the new item %s/%s the slug %r, not %r, which an item "
                "the lookup does not see holds; a retried step would create it again",
                self.connector.name,
                collection,
                item.get("id"),
                item.get("slug"),
                given,
            )

    def update_item(self, collection: str, item_id: int | str, **fields: Any) -> Item:
        """Change the given fields (``POST /wp/v2/{collection}/{id}``); the item now."""
        result: Item = self.post(f"{collection}/{item_id}", json=fields)
        return result

    def delete_item(
        self,
        collection: str,
        item_id: int | str,
        *,
        force: bool = False,
        missing_ok: bool = False,
    ) -> Item | None:
        """Move the item to the trash (an item already there is returned as it is), or,
        with ``force``, delete it for good (``{"deleted": true, "previous": {...}}``).
        ``missing_ok``: an id WordPress does not know answers None, not an error (a step
        retried after its delete went through)."""
        path = f"{collection}/{item_id}"
        params = {"force": "true"} if force else None
        response = self.request("DELETE", path, params=params, ok=(404, 410))
        if response.status_code < 400:
            result: Item = response.json()
            return result
        code = wp_error(response)[0]
        if response.status_code == 410 and code == "rest_already_trashed" and not force:
            return self.get_item(collection, item_id)
        if response.status_code == 404 and code == "rest_post_invalid_id" and missing_ok:
            return None
        raise self._refused("DELETE", path, response)

    def upload_media(
        self,
        filename: str,
        data: bytes,
        content_type: str,
        *,
        reuse: bool = False,
        **fields: Any,
    ) -> Item:
        """Upload a file to the media library as WordPress takes one: the bytes as the
        body, with ``Content-Type`` and ``Content-Disposition: attachment; filename=``;
        ``fields`` (``title``, ``alt_text``, ``caption``, ``description``, ``post``) go
        in the query. The media item (``id``, ``source_url``, ``mime_type`` ...)::

            pdf = wp.upload_media("Price list.pdf", data, "application/pdf", title="Prices")

        WordPress keeps every upload (a second ``x.png`` becomes ``x-1.png``). With
        ``reuse``, an earlier upload of the same file name and size is returned instead
        (:meth:`find_media`), so a retried step does not upload again.
        """
        headers = {"Content-Type": content_type, "Content-Disposition": disposition(filename)}
        params = query(fields) or None

        def make() -> Item:
            # WordPress answers some refusals (file type not allowed) with 500 rest_upload_*
            response = self.request(
                "POST", "media", content=data, headers=headers, params=params, ok=(500,)
            )
            if response.status_code >= 400:
                raise self._refused("POST", "media", response)
            result: Item = response.json()
            return result

        return self.ensure(
            lambda: self.find_media(filename, size=len(data)) if reuse else None, make
        )

    def find_media(self, filename: str, *, size: int | None = None) -> Item | None:
        """The newest media item stored as ``filename`` (as WordPress cleans names:
        :func:`file_name`) and, when given, of ``size`` bytes; None if none."""
        name = file_name(filename)
        stem = name.rpartition(".")[0] or name
        for item in self._walk("media", query({"search": stem, "per_page": PER_PAGE})):
            if str(item.get("source_url", "")).rsplit("/", 1)[-1] != name:
                continue
            details = item.get("media_details") or {}
            if size is None or details.get("filesize") == size:
                return item
        return None

    # ------------------------------------------------------------------ posts
    def create_post(
        self,
        title: str = "",
        content: str = "",
        status: str = "draft",
        slug: str | None = None,
        *,
        key: str | None = None,
        **fields: Any,
    ) -> Item:
        """Create a post unless it is there (see the module's docstring): with ``slug``,
        the post of that slug is returned, drafts included; without, the post made with
        the same key (the step's, or ``key``). ``fields``: ``excerpt``, ``categories``,
        ``tags``, ``meta``, ``featured_media``, ``date`` ...

        A draft made without a slug has none until it is published, so it is found by
        its key, kept in the post meta field ``hub_key`` (which the site must register)::

            wp.create_post("Weekly report", body, "draft", key=f"report-{week}")
        """
        return self.create_item(
            "posts", slug=slug, key=key, title=title, content=content, status=status, **fields
        )

    def update_post(self, post_id: int, **fields: Any) -> Item:
        """Change the given fields of a post (``title``, ``status="publish"`` ...)."""
        return self.update_item("posts", post_id, **fields)

    def get_post(self, post_id: int) -> Item:
        """A post by id; a :class:`~connectors.cms.CmsError` ``rest_post_invalid_id`` if none."""
        return self.get_item("posts", post_id)

    def find_post(self, *, slug: str) -> Item | None:
        """The post of ``slug`` in any status but the trash; None if none."""
        return self.find_item("posts", slug=slug)

    def list_posts(self, **filters: Any) -> Iterator[Item]:
        """Every post matching ``filters`` (WordPress's default: published ones), fetched
        page by page as the iterator is consumed::

            titles = [p["title"]["rendered"] for p in wp.list_posts(status="draft")]
        """
        return self.list_items("posts", **filters)

    def delete_post(
        self, post_id: int, force: bool = False, *, missing_ok: bool = False
    ) -> Item | None:
        """Trash a post, or delete it for good with ``force`` (see :meth:`delete_item`)."""
        return self.delete_item("posts", post_id, force=force, missing_ok=missing_ok)

    # ------------------------------------------------------------------ pages
    def create_page(
        self,
        title: str = "",
        content: str = "",
        status: str = "draft",
        slug: str | None = None,
        *,
        key: str | None = None,
        **fields: Any,
    ) -> Item:
        """Create a page unless it is there, as :meth:`create_post` does; ``fields``
        include ``parent`` and ``menu_order``."""
        return self.create_item(
            "pages", slug=slug, key=key, title=title, content=content, status=status, **fields
        )

    def update_page(self, page_id: int, **fields: Any) -> Item:
        return self.update_item("pages", page_id, **fields)

    def get_page(self, page_id: int) -> Item:
        return self.get_item("pages", page_id)

    def find_page(self, *, slug: str) -> Item | None:
        return self.find_item("pages", slug=slug)

    def list_pages(self, **filters: Any) -> Iterator[Item]:
        return self.list_items("pages", **filters)

    def delete_page(
        self, page_id: int, force: bool = False, *, missing_ok: bool = False
    ) -> Item | None:
        return self.delete_item("pages", page_id, force=force, missing_ok=missing_ok)


# ------------------------------------------------------------------ helpers
def site_url(url: str) -> str:
    """The site's address from a connection URL that may end in ``/wp-json[/wp/v2]``."""
    site = url.strip().rstrip("/")
    for suffix in ("/wp-json/wp/v2", "/wp-json"):
        if site.lower().endswith(suffix):
            return site[: -len(suffix)]
    return site


def query(filters: dict[str, Any]) -> dict[str, Any]:
    """Filters as WordPress reads a query: lists comma-separated (PHP keeps only the last
    of repeated names), booleans ``true``/``false``, None left out."""
    out: dict[str, Any] = {}
    for name, value in filters.items():
        if value is None:
            continue
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, list | tuple | set | frozenset):
            value = ",".join(str(item) for item in value)
        out[name] = value
    return out


def wp_error(response: httpx.Response) -> tuple[str, str, dict[str, Any]]:
    """WordPress's ``code``, ``message`` (tags removed) and ``data`` of an error answer;
    ``http_STATUS`` and the start of the text when the answer is not WordPress's."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("code"), str):
        message = re.sub(r"<[^>]*>", "", str(body.get("message") or "")).strip()
        data = body.get("data")
        return body["code"], message[:300] or body["code"], data if isinstance(data, dict) else {}
    text = re.sub(r"<[^>]*>", " ", response.text)
    text = " ".join(text.split())[:300] or response.reason_phrase
    return f"http_{response.status_code}", text, {}


def _details(data: dict[str, Any]) -> str:
    """``rest_invalid_param``'s message for each parameter."""
    params = data.get("params")
    if not isinstance(params, dict):
        return ""
    return "; ".join(f"{name}: {message}" for name, message in params.items())[:500]


def slugify(text: str) -> str:
    """A slug as WordPress makes one of ``text`` (lower-case, accents dropped, dashes for
    spaces and dots, other punctuation removed); a proper slug comes back unchanged."""
    text = re.sub(r"<[^>]*>", "", text)
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    text = re.sub(r"[\s.]+", "-", text)
    text = re.sub(r"[^a-z0-9_-]", "", text)
    return re.sub(r"-{2,}", "-", text).strip("-")


def search_terms(title: Any) -> str:
    """The first words of a title, as a WordPress search that finds it: no markup, and
    no word starting with ``-`` (WordPress reads that as "without")."""
    if isinstance(title, dict):
        title = title.get("raw")
    if not isinstance(title, str):
        return ""
    words = [w.lstrip("-") for w in re.sub(r"<[^>]*>", " ", title).replace('"', " ").split()]
    return " ".join([word for word in words if word][:SEARCH_WORDS])


def file_name(filename: str) -> str:
    """The name WordPress stores an upload under (``sanitize_file_name``'s main rules):
    the last path part, without the characters it removes, dashes for spaces."""
    name = filename.replace("\\", "/").rsplit("/", 1)[-1]
    name = re.sub(r"[?\[\]/\\=<>:;,'\"&$#*()|~`!{}%+\u2019\u00ab\u00bb\u201d\u201c]", "", name)
    name = re.sub(r"[\s-]+", "-", name)
    return name.strip(".-_")


def disposition(filename: str) -> str:
    """``attachment; filename="..."`` (ASCII, which WordPress reads) and, for other
    names, ``filename*=UTF-8''...`` (RFC 6266) with the name as it is."""
    name = filename.replace("\\", "/").rsplit("/", 1)[-1]
    plain = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    plain = re.sub(r'["\\;\x00-\x1f\x7f]', "", plain).strip() or "upload"
    if plain == name:
        return f'attachment; filename="{plain}"'
    return f"attachment; filename=\"{plain}\"; filename*=UTF-8''{quote(name, safe='')}"
