"""REST connections over httpx: JSON calls, retries, idempotency keys, pagination.

::

    crm = ctx.connector("crm")                    # kind = "rest"
    order = crm.post("/orders", json={...})       # Idempotency-Key: the step's key
    for customer in crm.paginate("/customers", style="link"):
        ...

A connection's options (``options = {...}``):

- ``idempotency_header``: the header that carries the step's key on POST and
  PATCH (default ``Idempotency-Key``; ``""`` sends none);
- ``check_path``: what ``hub connections test`` reads (default: the base URL);
- ``headers``: extra headers sent on every call.

Auth: ``api_key`` (``header``, ``key``), ``basic``, ``bearer``, and
``oauth2`` client credentials (``token_url``, ``client_id``,
``client_secret``, ``scope``): the token is fetched on first use, kept
until it expires, and fetched again once when the API answers 401.

A call answers the JSON body (``None`` when there is none); :meth:`RestClient.request`
answers the ``httpx.Response``. What goes wrong is translated (see
:mod:`connectors.base`): 408, 425, 429 and 5xx are retried and then a
:class:`~hub.errors.TransientError`; other 4xx are a
:class:`~hub.errors.BusinessError` carrying the API's own message; a target
outside the allow-list, or a redirect to one, is a
:class:`~hub.errors.PolicyViolation`.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Generator, Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin

import httpx

from connectors.base import (
    RETRY_STATUSES,
    Bound,
    Connector,
    Retry,
    Verbs,
    guarded_transport,
    retry_after,
    retrying,
)
from hub.errors import BusinessError, PolicyViolation, TransientError

if TYPE_CHECKING:
    from hub.connections import ConnectionConfig
    from hub.context import StepContext
    from hub.settings import Settings

CHANGES = frozenset({"POST", "PATCH"})
USER_AGENT = "hub-connector/0.1"


class RestConnector(Connector):
    """One httpx client (and connection pool) per connection and worker process."""

    kind = "rest"

    def __init__(self, config: ConnectionConfig, settings: Settings) -> None:
        super().__init__(config, settings)
        if config.auth.token_url:
            self.egress.allow.add(config.auth.token_url)
        self.client = httpx.Client(
            base_url=config.url.rstrip("/") + "/",
            timeout=httpx.Timeout(config.timeout, connect=config.connect_timeout),
            transport=guarded_transport(self.egress, verify=tls(config.verify), retries=0),
            follow_redirects=True,
            max_redirects=5,
            headers={"User-Agent": USER_AGENT, **config.options.get("headers", {})},
            auth=self._auth(),
            trust_env=False,
        )

    def _auth(self) -> httpx.Auth | None:
        auth = self.config.auth
        if auth.kind == "none":
            return None
        if auth.kind == "basic":
            return httpx.BasicAuth(auth.username or "", self.secret("password") or "")
        if auth.kind == "bearer":
            return _Header("Authorization", f"Bearer {self.secret('token')}")
        if auth.kind == "api_key":
            return _Header(auth.header, self.secret("key") or "")
        if auth.kind == "oauth2":
            return ClientCredentials(self)
        raise BusinessError(
            f"connection {self.name!r}: a REST connection cannot log in with {auth.kind!r}; "
            "use none, api_key, basic, bearer or oauth2"
        )

    def bind(self, ctx: StepContext | None) -> RestClient:
        return RestClient(self, ctx)

    def check(self) -> str:
        path = self.config.options.get("check_path", "")
        client = self.bind(None)
        started = time.perf_counter()
        response = client.request("GET", path)
        took = (time.perf_counter() - started) * 1000
        return f"GET {response.request.url} answered {response.status_code} in {took:.0f} ms"

    def close(self) -> None:
        self.client.close()


def tls(verify: bool | str) -> bool | ssl.SSLContext:
    """``verify`` as httpx takes it: a CA bundle path becomes an SSL context."""
    if isinstance(verify, str):
        return ssl.create_default_context(cafile=verify)
    return verify


class _Header(httpx.Auth):
    def __init__(self, name: str, value: str) -> None:
        self.name, self.value = name, value

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers[self.name] = self.value
        yield request


class ClientCredentials(httpx.Auth):
    """OAuth 2.0 client credentials (RFC 6749 §4.4): a token fetched on first use,
    kept until shortly before it expires, fetched again once on a 401."""

    requires_response_body = True

    def __init__(self, connector: RestConnector) -> None:
        self.connector = connector
        self.token: str | None = None
        self.expires = 0.0
        self.lock = threading.Lock()
        #: tokens fetched so far (for tests and logs)
        self.fetched = 0

    def _token_request(self) -> httpx.Request:
        auth = self.connector.config.auth
        form = {"grant_type": "client_credentials"}
        if auth.scope:
            form["scope"] = auth.scope
        request = httpx.Request("POST", auth.token_url or "", data=form)
        basic = httpx.BasicAuth(auth.client_id or "", self.connector.secret("client_secret") or "")
        return next(basic.auth_flow(request))

    def _keep(self, response: httpx.Response) -> None:
        name = self.connector.name
        if response.status_code != 200:
            message = _message(response)
            error = f"connection {name!r}: the token endpoint answered {response.status_code}"
            if response.status_code in RETRY_STATUSES:
                raise TransientError(f"{error}: {message}")
            raise BusinessError(f"{error}: {message}; check client_id and client_secret")
        try:
            body = response.json()
            self.token = str(body["access_token"])
        except (ValueError, KeyError, TypeError) as exc:
            raise BusinessError(
                f"connection {name!r}: the token endpoint answered without an access_token"
            ) from exc
        lifetime = float(body.get("expires_in") or 3600)
        self.expires = time.monotonic() + max(0.0, lifetime - min(30.0, lifetime / 10))
        self.fetched += 1

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        with self.lock:
            if self.token is None or time.monotonic() >= self.expires:
                self._keep((yield self._token_request()))
            token = self.token
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code == 401:
            with self.lock:
                if self.token == token:  # no other thread has fetched a new one meanwhile
                    self._keep((yield self._token_request()))
                token = self.token
            request.headers["Authorization"] = f"Bearer {token}"
            yield request


class RestClient(Verbs, Bound):
    """A step's REST client (``ctx.connector(name)`` of a ``rest`` connection)."""

    connector: RestConnector

    # ---------------------------------------------------------------- calls
    def answer(self, method: str, path: str, **kw: Any) -> Any:
        """The body of one call's answer: JSON decoded, text, or None when empty."""
        return _body(self.request(method, path, **kw))

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Any = None,
        json: Any = None,
        data: Any = None,
        content: bytes | None = None,
        files: Any = None,
        headers: dict[str, str] | None = None,
        idempotency_key: str | None = None,
        ok: tuple[int, ...] = (),
    ) -> httpx.Response:
        """Send one call, retried per the connection; the response when its status is
        below 400 or in ``ok`` (``ok=(404,)`` to look something up), else the error."""
        method = method.upper()
        headers = dict(headers or {})
        header = self.config.options.get("idempotency_header", "Idempotency-Key")
        if method in CHANGES and header and header not in headers:
            key = self.idempotency_key(idempotency_key)
            if key:
                headers[header] = key
        url = path if "://" in path else path.lstrip("/")
        client = self.connector.client

        def once() -> httpx.Response:
            self.connector.limiter.acquire()
            try:
                response = client.request(
                    method, url, params=params, json=json, data=data, content=content,
                    files=files, headers=headers,
                )  # fmt: skip
            except PolicyViolation:
                raise
            except httpx.TooManyRedirects as exc:
                self.record(request=exc.request)
                raise BusinessError(f"{self._what(method, path)}: too many redirects") from exc
            except httpx.TimeoutException as exc:
                self.record(request=exc.request)
                raise Retry(TransientError(f"{self._what(method, path)} timed out")) from exc
            except httpx.TransportError as exc:
                self.record(request=_request_of(exc))
                raise Retry(
                    TransientError(f"{self._what(method, path)} failed: {type(exc).__name__}")
                ) from exc
            if response.status_code < 400 or response.status_code in ok:
                return response
            self.record(request=response.request, response=response)
            message = f"{self._what(method, path)} answered {response.status_code}: "
            message += _message(response)
            if response.status_code in RETRY_STATUSES:
                wait = retry_after(response.headers.get("Retry-After"))
                raise Retry(TransientError(message, retry_after=wait))
            if response.status_code in (401, 403):
                message += f"; check the credentials of connection {self.connector.name!r}"
            raise BusinessError(message)

        return retrying(self.config, once)

    def _what(self, method: str, path: str) -> str:
        return f"{self.connector.name}: {method} {path}"

    # ----------------------------------------------------------- pagination
    def pages(
        self,
        path: str,
        *,
        style: str = "link",
        params: dict[str, Any] | None = None,
        items: str | None = None,
        limit: int = 100,
        cursor: str = "cursor",
        next_field: str | None = None,
        max_pages: int = 10_000,
    ) -> Iterator[list[Any]]:
        """Each page's items, following the API's pagination:

        - ``link``: RFC 8288 ``Link: <...>; rel="next"`` headers (GitHub, WordPress);
        - ``cursor``: ``?cursor=`` from the body's ``next_cursor`` (``next_field``);
        - ``offset``: ``?offset=&limit=`` until a short page or the body's ``total``;
        - ``next``: the body's ``next`` URL (Django REST framework).

        ``items`` is the body's field holding the list (``data``, ``results``;
        default: the body itself when it is a list, else ``data``/``results``/``items``).
        """
        query = dict(params or {})
        url: str | None = path
        offset = int(query.get("offset", 0))
        for _ in range(max_pages):
            if url is None:
                return
            if style == "offset":
                query.update(offset=offset, limit=limit)
            response = self.request("GET", url, params=query or None)
            body = _body(response)
            found = _items(body, items)
            yield found
            if style == "link":
                url = response.links.get("next", {}).get("url")
                query = {}
            elif style == "cursor":
                token = body.get(next_field or "next_cursor") if isinstance(body, dict) else None
                if not token:
                    return
                query[cursor] = token
            elif style == "offset":
                offset += len(found)
                total = body.get("total") if isinstance(body, dict) else None
                if len(found) < limit or (isinstance(total, int) and offset >= total):
                    return
            elif style == "next":
                nxt = body.get(next_field or "next") if isinstance(body, dict) else None
                url = urljoin(str(response.request.url), nxt) if nxt else None
                query = {}
            else:
                raise ValueError(f"pagination style {style!r}: use link, cursor, offset or next")
        raise BusinessError(f"{self._what('GET', path)}: more than {max_pages} pages")

    def paginate(self, path: str, **kw: Any) -> Iterator[Any]:
        """Every item across the pages (see :meth:`pages`)."""
        for page in self.pages(path, **kw):
            yield from page


def _request_of(exc: httpx.RequestError) -> httpx.Request | None:
    try:
        return exc.request
    except RuntimeError:  # raised before a request was made
        return None


def _items(body: Any, field: str | None) -> list[Any]:
    if field is not None:
        for part in field.split("."):
            body = body.get(part) if isinstance(body, dict) else None
        return list(body or [])
    if isinstance(body, list):
        return body
    if isinstance(body, dict):
        for name in ("data", "results", "items", "records"):
            if isinstance(body.get(name), list):
                return list(body[name])
    raise BusinessError("the page holds no list of items; pass items= to name its field")


def _body(response: httpx.Response) -> Any:
    if not response.content:
        return None
    kind = response.headers.get("content-type", "")
    if "json" in kind:
        try:
            return response.json()
        except ValueError as exc:
            raise BusinessError(f"the answer to {response.request.url} is not JSON") from exc
    return response.text


def _message(response: httpx.Response) -> str:
    """The API's own words: the usual JSON error fields, else the start of the text."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:300] or response.reason_phrase
    if isinstance(body, dict):
        for key in ("message", "error_description", "detail", "title", "error"):
            value = body.get(key)
            if isinstance(value, str) and value:
                return value[:300]
            if isinstance(value, dict) and isinstance(value.get("message"), str):
                return str(value["message"])[:300]
    return str(body)[:300]
