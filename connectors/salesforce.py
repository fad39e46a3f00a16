"""Salesforce connections: SOQL, sObject records, upsert by external ID, Bulk API 2.0.

::

    sf = ctx.connector("crm")                              # kind = "salesforce"
    for account in sf.query("SELECT Id, Name FROM Account WHERE Industry = 'Energy'"):
        ...                                                # every page, no "attributes"
    sf.upsert("Account", "External_Id__c", order.customer_no, {"Name": order.customer})
    # -> {"id": "001...", "created": True}; the same call again -> created False
    result = sf.bulk("Contact", "upsert", rows, external_id_field="Legacy_Id__c")
    for failure in result["failures"]:
        ctx.log.warning("%s: %s", failure["record"], failure["error"])

A connection (``kind = "salesforce"``)::

    [crm]
    kind = "salesforce"
    url = "https://acme.my.salesforce.com"          # the instance (My Domain) URL
    rate_limit = "20/s"
    options = { api_version = "59.0", bulk_wait = 2 }
    auth = { kind = "salesforce_jwt", login_url = "https://login.salesforce.com",
             client_id = "3MVG9...", username = "integration@acme.com",
             private_key = "env:CRM_JWT_KEY" }

**Login.** The connector makes the OAuth 2.0 token request itself, at
``{login_url or url}/services/oauth2/token`` (the login host is added to the
allow-list): ``salesforce_password`` (``client_id``, ``client_secret``,
``username``, ``password`` followed by ``security_token`` when one is set),
``salesforce_client_credentials`` (``client_id``, ``client_secret``; the
connected app's run-as user) or ``salesforce_jwt`` (an RS256 assertion signed
with ``private_key``: ``iss`` the client id, ``sub`` the username, ``aud`` the
login URL, valid three minutes). The session is kept by the connector and
shared by every step of the process; Salesforce hands out no refresh token in
these flows, so when a call answers 401 ``INVALID_SESSION_ID`` the connector
logs in again, once, and repeats the call. The ``instance_url`` of the token
answer must be in the allow-list too (it is when ``url`` is the instance URL).

**Options** (``options = {...}``): ``api_version`` (default ``"59.0"``),
``bulk_wait`` (seconds between polls of a Bulk job, default 2),
``bulk_timeout`` (seconds a step waits for a Bulk job, default 1800) and
``bulk_batch_size`` (records per Bulk job, default 50,000).

**Idempotency.** :meth:`SalesforceClient.upsert` is the path that is safe to
repeat: keyed by an external ID field, a second call updates the record the
first one made. Give it a business key (an order number) or, when there is
none, the step's ``ctx.idempotency_key``, stored in an external ID field.
:meth:`SalesforceClient.create` makes a new record on every call; a step that
is retried after a create that succeeded makes a second one. A Bulk
``upsert`` is safe to repeat for the same reason; a Bulk ``insert`` is not.

**Errors** (the vendor's exception is chained with ``raise ... from``; the
failed request and its answer, redacted, are left as the step's evidence):

===================================================  =====================================
Salesforce answers                                   the step gets
===================================================  =====================================
``REQUEST_LIMIT_EXCEEDED``, ``SERVER_UNAVAILABLE``,  :class:`~hub.errors.TransientError`,
``UNABLE_TO_LOCK_ROW``, ``UNKNOWN_EXCEPTION``,       after the connection's ``retries``
HTTP 408/425/429/5xx, timeouts, refused or reset     within the call (``Retry-After``
connections                                          honoured)
401 ``INVALID_SESSION_ID``                           one new login and the call again;
                                                     a second 401 is a BusinessError
``INVALID_FIELD``, ``MALFORMED_QUERY``,              :class:`~hub.errors.BusinessError`
``INVALID_TYPE``, ``REQUIRED_FIELD_MISSING``,        with Salesforce's ``errorCode`` and
``DUPLICATE_VALUE``,                                 message (and the fields it names)
``FIELD_CUSTOM_VALIDATION_EXCEPTION``,
``NOT_FOUND`` and every other refusal
300 on an upsert (several records match)             BusinessError naming the records
a failed login (``invalid_grant``,                   BusinessError naming the connection:
``invalid_client``, ...)                             "check client_id/secret/username/..."
a TLS certificate that does not verify               BusinessError (check ``verify``)
a Bulk job that fails or is aborted                  BusinessError with its errorMessage
a target outside the allow-list                      :class:`~hub.errors.PolicyViolation`
===================================================  =====================================

Rows a Bulk job refuses are no error: they are listed in the result's
``failures``, each with Salesforce's code and message.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qsl, quote, urlencode

import jwt
import requests
from requests.adapters import BaseAdapter
from simple_salesforce import Salesforce, SFType
from simple_salesforce.bulk2 import Operation, _Bulk2Client
from simple_salesforce.exceptions import (
    SalesforceError,
    SalesforceExpiredSession,
    SalesforceMoreThanOneRecord,
    SalesforceOperationError,
)
from simple_salesforce.util import exception_handler

from connectors.base import (
    RETRY_STATUSES,
    Bound,
    Connector,
    Retry,
    guarded_session,
    retry_after,
    retrying,
)
from hub.errors import (
    BusinessError,
    ConnectionConfigError,
    HubError,
    PolicyViolation,
    TransientError,
)

if TYPE_CHECKING:
    from hub.connections import ConnectionConfig
    from hub.context import StepContext
    from hub.settings import Settings

log = logging.getLogger("hub.connectors.salesforce")
T = TypeVar("T")

API_VERSION = "59.0"
TOKEN_PATH = "/services/oauth2/token"
JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
#: Salesforce's error codes for a busy or briefly unavailable org: worth another try
TRANSIENT_CODES = frozenset(
    {"REQUEST_LIMIT_EXCEEDED", "SERVER_UNAVAILABLE", "UNABLE_TO_LOCK_ROW", "UNKNOWN_EXCEPTION"}
)
#: what to check when a login of each kind is refused
LOGIN_HINTS = {
    "bearer": (
        "the session given in auth.token expired or is wrong: the hub cannot renew a "
        "session it did not log in for; set a fresh one, or use a login kind"
    ),
    "salesforce_password": "check client_id/secret/username/password and the security token",
    "salesforce_client_credentials": (
        "check client_id/secret, and that the connected app's client credentials flow "
        "has a run-as user"
    ),
    "salesforce_jwt": (
        "check client_id/username/private_key, and that the user is pre-authorized for "
        "the connected app whose certificate matches the key"
    ),
}
BULK_OPERATIONS = ("insert", "update", "upsert", "delete", "hardDelete")
#: the largest CSV one Bulk 2.0 job takes
MAX_BULK_BYTES = 100 * 1024 * 1024
#: token request fields never shown in evidence
_SECRET_FORM_FIELDS = frozenset({"password", "client_secret", "assertion"})
_VERSION = re.compile(r"v?(\d{2,3}\.\d)")


@dataclass(frozen=True)
class Login:
    """One session: the client built on its access token, and where it came from."""

    sf: Salesforce
    instance_url: str
    identity: str | None


class _Exchange(threading.local):
    """The last request a thread sent and the answer it got (for evidence)."""

    request: Any = None
    response: Any = None


class _Metered(BaseAdapter):
    """Wraps the guarded adapter: waits for the rate limit, sets the timeouts and keeps
    the thread's last exchange. The guarded adapter still checks every target."""

    def __init__(self, inner: BaseAdapter, connector: SalesforceConnector) -> None:
        super().__init__()
        self.inner = inner
        self.connector = connector
        config = connector.config
        self.timeout = (config.connect_timeout, config.timeout)

    def send(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        self.connector.limiter.acquire()
        last = self.connector.last
        last.request, last.response = request, None
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.timeout
        response = self.inner.send(request, *args, **kwargs)
        last.response = response
        return response

    def close(self) -> None:
        # close the pooled connections now: urllib3 2 only forgets its pools and leaves
        # their sockets to the garbage collector, which waits while a response (kept in a
        # traceback, say) still refers to its pool
        manager = getattr(self.inner, "poolmanager", None)
        if manager is not None:
            for key in list(manager.pools.keys()):
                pool = manager.pools.get(key)
                if pool is not None:
                    pool.close()
        self.inner.close()


class SalesforceConnector(Connector):
    """One login and one HTTP session per connection and worker process."""

    kind = "salesforce"

    def __init__(self, config: ConnectionConfig, settings: Settings) -> None:
        super().__init__(config, settings)
        if config.auth.kind not in LOGIN_HINTS:
            raise ConnectionConfigError(
                f"connection {config.name!r}: a Salesforce connection cannot log in with "
                f"{config.auth.kind!r}; use {', '.join(LOGIN_HINTS)}"
            )
        options = config.options
        match = _VERSION.fullmatch(str(options.get("api_version", API_VERSION)).strip())
        if match is None:
            raise ConnectionConfigError(
                f"connection {config.name!r}: options.api_version "
                f'{options.get("api_version")!r} is not an API version like "59.0"'
            )
        self.version = match.group(1)
        try:
            self.bulk_wait = float(options.get("bulk_wait", 2.0))
            self.bulk_timeout = float(options.get("bulk_timeout", 1800.0))
            self.bulk_batch_size = int(options.get("bulk_batch_size", 50_000))
        except (TypeError, ValueError) as exc:
            raise ConnectionConfigError(
                f"connection {config.name!r}: options bulk_wait, bulk_timeout and "
                f"bulk_batch_size are numbers ({exc})"
            ) from exc
        login_url = (config.auth.login_url or config.url).rstrip("/")
        if login_url.endswith(TOKEN_PATH):
            login_url = login_url[: -len(TOKEN_PATH)]
        #: the login host (scheme, host and port): the token endpoint's base and the JWT audience
        self.login_url = login_url
        self.egress.allow.add(login_url)
        self.last = _Exchange()
        self.session = guarded_session(self.egress, verify=config.verify)
        metered = _Metered(self.session.get_adapter("https://"), self)
        self.session.mount("https://", metered)
        self.session.mount("http://", metered)
        self._lock = threading.Lock()
        self._login: Login | None = None
        #: logins made so far (for tests and logs)
        self.logins = 0

    @property
    def token_url(self) -> str:
        return self.login_url + TOKEN_PATH

    def bind(self, ctx: StepContext | None) -> SalesforceClient:
        return SalesforceClient(self, ctx)

    def check(self) -> str:
        """Log in anew and read the org's limits: what ``hub connections test`` shows."""
        self.logout()
        return self.bind(None).summary()

    def close(self) -> None:
        with self._lock:
            self._login = None
        self.session.close()

    # ---------------------------------------------------------------- login
    def current(self) -> Login:
        """The session in force, logging in first when there is none."""
        with self._lock:
            if self._login is None:
                self._login = self._log_in()
            return self._login

    def expired(self, login: Login) -> None:
        """Forget ``login`` (Salesforce said it expired) unless another thread has
        already replaced it; the next :meth:`current` logs in again."""
        with self._lock:
            if self._login is login:
                self._login = None

    def logout(self) -> None:
        """Forget the session (nothing is revoked); the next call logs in."""
        with self._lock:
            self._login = None

    def _grant(self) -> dict[str, str]:
        auth = self.config.auth
        client_id = auth.client_id or ""
        if auth.kind == "salesforce_password":
            return {
                "grant_type": "password",
                "client_id": client_id,
                "client_secret": self.secret("client_secret") or "",
                "username": auth.username or "",
                "password": (self.secret("password") or "") + (self.secret("security_token") or ""),
            }
        if auth.kind == "salesforce_client_credentials":
            form = {
                "grant_type": "client_credentials",
                "client_id": client_id,
                "client_secret": self.secret("client_secret") or "",
            }
            if auth.scope:
                form["scope"] = auth.scope
            return form
        key = self.secret("private_key") or ""
        if "\\n" in key and "\n" not in key:  # a PEM squeezed onto one line of an env file
            key = key.replace("\\n", "\n")
        claims = {
            "iss": client_id,
            "sub": auth.username,
            "aud": self.login_url,
            "exp": int(time.time()) + 180,
        }
        try:
            assertion = jwt.encode(claims, key, algorithm="RS256")
        except (ValueError, TypeError, jwt.PyJWTError) as exc:
            raise BusinessError(
                f"connection {self.name!r}: auth.private_key is not a PEM RSA private key "
                f"({type(exc).__name__}); {LOGIN_HINTS['salesforce_jwt']}"
            ) from exc
        return {"grant_type": JWT_GRANT, "assertion": assertion}

    def _log_in(self) -> Login:
        """The OAuth token request (through the guarded session) and a client on its token.
        Raises Retry for a busy token endpoint, BusinessError for a refused login. With
        auth ``bearer`` the given session is used as it is, on the connection's url."""
        if self.config.auth.kind == "bearer":
            instance_url = self.config.url.rstrip("/")
            sf = Salesforce(
                instance_url=instance_url,
                session_id=self.secret("token") or "",
                session=self.session,
                version=self.version,
                object_pairs_hook=dict,
            )
            self.logins += 1
            return Login(sf, instance_url, None)
        form = self._grant()
        response = self.session.post(
            self.token_url, data=form, headers={"Accept": "application/json"}
        )
        status = response.status_code
        try:
            body = response.json()
        except ValueError:
            body = None
        if status != 200 or not isinstance(body, dict) or not body.get("access_token"):
            words = _oauth_words(body, response)
            message = (
                f"connection {self.name!r}: the login at {self.token_url} answered {status}: "
                f"{words}"
            )
            if status in RETRY_STATUSES or status >= 500:
                raise Retry(
                    TransientError(
                        message, retry_after=retry_after(response.headers.get("Retry-After"))
                    )
                )
            raise BusinessError(f"{message}; {LOGIN_HINTS[self.config.auth.kind]}")
        instance_url = str(body.get("instance_url") or self.config.url).rstrip("/")
        if not self.egress.allow.permits(instance_url):
            raise PolicyViolation(
                f"connection {self.name!r}: the login answered instance_url {instance_url}, "
                f"which is not in its allow-list ({self.egress.allow}); set url to the "
                "instance (My Domain) URL, or add it to the connection's allow entries"
            )
        sf = Salesforce(
            instance_url=instance_url,
            session_id=str(body["access_token"]),
            session=self.session,
            version=self.version,
            object_pairs_hook=dict,
        )
        self.logins += 1
        log.info("%s: logged in to %s (%s)", self.name, instance_url, self.config.auth.kind)
        identity = body.get("id")
        return Login(sf, instance_url, str(identity) if identity else None)


class SalesforceClient(Bound):
    """A step's Salesforce client (``ctx.connector(name)`` of a ``salesforce`` connection)."""

    connector: SalesforceConnector

    # ---------------------------------------------------------------- SOQL
    def query(self, soql: str, *, include_deleted: bool = False) -> list[dict[str, Any]]:
        """Every record the query selects, across all pages, without ``attributes``."""
        return list(self.query_iter(soql, include_deleted=include_deleted))

    def query_iter(self, soql: str, *, include_deleted: bool = False) -> Iterator[dict[str, Any]]:
        """The records one at a time, fetching the next page only when it is reached."""
        for page in self.query_pages(soql, include_deleted=include_deleted):
            yield from page

    def query_pages(
        self, soql: str, *, include_deleted: bool = False
    ) -> Iterator[list[dict[str, Any]]]:
        """Each page of records (2,000 at most) as Salesforce sends it, following
        ``nextRecordsUrl``; ``include_deleted`` reads the recycle bin too (``queryAll``)."""
        body = self._call("query", lambda sf: sf.query(soql, include_deleted=include_deleted))
        while True:
            yield [_plain(r) for r in body.get("records") or []]
            following = body.get("nextRecordsUrl")
            if body.get("done", True) or not following:
                return
            body = self._more(str(following))

    def _more(self, following: str) -> Any:
        return self._call(
            "query (next page)", lambda sf: sf.query_more(following, identifier_is_url=True)
        )

    # -------------------------------------------------------------- records
    def get(self, obj: str, record_id: str, fields: Iterable[str] | None = None) -> dict[str, Any]:
        """One record by id (all fields, or ``fields``), without ``attributes``."""
        params = {"fields": ",".join(fields)} if fields is not None else None
        return _plain(
            self._call(
                f"get {obj}/{record_id}",
                lambda sf: self._sobject(sf, obj).get(quote(record_id, safe=""), params=params),
            )
        )

    def create(self, obj: str, fields: Mapping[str, Any]) -> str:
        """A new record; its id. Not safe to repeat: see :meth:`upsert`."""
        body = self._call(f"create {obj}", lambda sf: self._sobject(sf, obj).create(dict(fields)))
        return str(body["id"])

    def update(self, obj: str, record_id: str, fields: Mapping[str, Any]) -> None:
        """Change fields of one record (safe to repeat)."""
        self._call(
            f"update {obj}/{record_id}",
            lambda sf: self._sobject(sf, obj).update(quote(record_id, safe=""), dict(fields)),
        )

    def delete(self, obj: str, record_id: str) -> None:
        """Move one record to the recycle bin."""
        self._call(
            f"delete {obj}/{record_id}",
            lambda sf: self._sobject(sf, obj).delete(quote(record_id, safe="")),
        )

    def upsert(
        self, obj: str, external_id_field: str, value: str, fields: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Update the record whose ``external_id_field`` is ``value``, or create it:
        ``{"id", "created"}``. The idempotent way to make a record: repeated, it
        updates what the first call made. ``fields`` need not hold the external ID
        (the value in the URL is the one that counts). Several matching records
        are a BusinessError."""
        path = f"{external_id_field}/{quote(str(value), safe='')}"
        body = {k: v for k, v in fields.items() if k.lower() != external_id_field.lower()}
        what = f"upsert {obj}/{external_id_field}/{value}"

        def send(sf: Salesforce) -> dict[str, Any]:
            sobject = self._sobject(sf, obj)
            response = sobject.upsert(path, body, raw_response=True)
            if response.status_code in (200, 201) and response.content:
                answer = response.json()
                created = answer.get("created", response.status_code == 201)
                return {"id": str(answer["id"]), "created": bool(created)}
            # 204: an update on an API version before 46.0, which says no more; look it up
            found = sobject.get(path, params={"fields": "Id"})
            return {"id": str(found["Id"]), "created": False}

        return self._call(what, send)

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
    ) -> Any:
        """One call to what the other methods do not cover; its JSON (None when empty).

        ``path`` is relative to the API version (``"sobjects/Account/describe"``,
        ``"limits"``), an absolute path on the instance (``"/services/apexrest/orders"``)
        or a full URL, which must be in the allow-list like every target.
        """
        method = method.upper()

        def send(sf: Salesforce) -> Any:
            if "://" in path:
                url = path
            elif path.startswith("/"):
                url = f"https://{sf.sf_instance}{path}"
            else:
                url = sf.base_url + path
            response = sf.session.request(
                method,
                url,
                headers=sf.headers,
                params=dict(params) if params else None,
                data=json.dumps(json_body) if json_body is not None else None,
            )
            if response.status_code >= 300:
                exception_handler(response, name=path)
            return response.json() if response.content else None

        return self._call(f"{method} {path}", send)

    def limits(self) -> dict[str, Any]:
        """The org's limits (``DailyApiRequests``, ``DataStorageMB``, ...)."""
        return dict(self._call("limits", lambda sf: sf.limits()))

    def summary(self) -> str:
        """Where the client is logged in, as whom, and the API requests left today."""
        limits = self.limits()
        login = self.connector.current()
        who = self.config.auth.username or self._identity(login)
        daily = limits.get("DailyApiRequests") or {}
        return (
            f"logged in to {login.instance_url} as {who}; API v{self.connector.version}; "
            f"DailyApiRequests {daily.get('Remaining', '?')}/{daily.get('Max', '?')} left"
        )

    def _identity(self, login: Login) -> str:
        if not login.identity:
            return "the connected app's run-as user"

        def read(sf: Salesforce) -> Any:
            response = sf.session.get(str(login.identity), headers=sf.headers)
            if response.status_code >= 300:
                exception_handler(response, name="identity")
            return response.json()

        return str(self._call("identity", read).get("username") or "an unnamed user")

    # ----------------------------------------------------------------- bulk
    def bulk(
        self,
        obj: str,
        operation: str,
        records: Iterable[Mapping[str, Any]],
        external_id_field: str | None = None,
    ) -> dict[str, Any]:
        """Load many records with Bulk API 2.0 and wait for the jobs to finish.

        ``operation`` is ``insert``, ``update`` (rows carry ``Id``), ``upsert``
        (``external_id_field`` names the key), ``delete`` or ``hardDelete``
        (rows hold only ``Id``). Values are sent as CSV text: ``None`` is an
        empty cell (left as it is), ``"#N/A"`` clears a field. One job takes
        ``bulk_batch_size`` rows; more make more jobs, one after another.

        Returns ``{"object", "operation", "jobs", "processed", "succeeded",
        "failed", "successes", "failures", "unprocessed"}``: ``successes`` are
        ``{"id", "created", "record"}``, ``failures`` ``{"id", "code",
        "message", "fields", "error", "record"}`` (Salesforce's ``sf__Error``
        split), with
        ``record`` the row as uploaded. Rows Salesforce refuses are no error;
        a job that fails as a whole is a BusinessError.
        """
        if operation not in BULK_OPERATIONS:
            raise ValueError(f"bulk operation {operation!r}: use {', '.join(BULK_OPERATIONS)}")
        if operation == "upsert" and not external_id_field:
            raise ValueError("a bulk upsert needs external_id_field")
        rows = [dict(r) for r in records]
        result: dict[str, Any] = {
            "object": obj,
            "operation": operation,
            "jobs": [],
            "processed": 0,
            "succeeded": 0,
            "failed": 0,
            "successes": [],
            "failures": [],
            "unprocessed": [],
        }
        size = max(1, self.connector.bulk_batch_size)
        for start in range(0, len(rows), size):
            self._bulk_job(obj, operation, rows[start : start + size], external_id_field, result)
        result["succeeded"] = len(result["successes"])
        result["failed"] = len(result["failures"])
        return result

    def _bulk_job(
        self,
        obj: str,
        operation: str,
        rows: list[dict[str, Any]],
        external_id_field: str | None,
        result: dict[str, Any],
    ) -> None:
        data = _csv(rows)
        if len(data.encode()) > MAX_BULK_BYTES:
            raise BusinessError(
                f"{self.connector.name}: bulk {operation} {obj}: {len(rows)} rows make more "
                f"than the {MAX_BULK_BYTES // (1024 * 1024)} MB one job takes; set a smaller "
                "options.bulk_batch_size"
            )
        what = f"bulk {operation} {obj}"
        created = self._call(
            f"{what}: create the job",
            lambda sf: _bulk(sf, obj).create_job(
                Operation(operation), external_id_field=external_id_field
            ),
        )
        job_id = str(created["id"])
        result["jobs"].append(job_id)
        what = f"{what} (job {job_id})"
        try:
            self._call(f"{what}: upload", lambda sf: _bulk(sf, obj).upload_job_data(job_id, data))
            self._call(f"{what}: close", lambda sf: _bulk(sf, obj).close_job(job_id))
            info = self._wait(obj, job_id, what)
        except BaseException:
            self._abort(obj, job_id)
            raise
        if info.get("state") != "JobComplete":
            raise BusinessError(
                f"{self.name}: {what} ended {info.get('state')}: "
                f"{info.get('errorMessage') or 'no reason given'}"
            )
        result["processed"] += int(info.get("numberRecordsProcessed") or 0)
        for row in self._results(obj, job_id, "successfulResults", what):
            result["successes"].append(
                {
                    "id": row.pop("sf__Id", None) or None,
                    "created": row.pop("sf__Created", "").lower() == "true",
                    "record": row,
                }
            )
        for row in self._results(obj, job_id, "failedResults", what):
            error = row.pop("sf__Error", "")
            code, message, fields = _bulk_error(error)
            result["failures"].append(
                {
                    "id": row.pop("sf__Id", None) or None,
                    "code": code,
                    "message": message,
                    "fields": fields,
                    "error": error,
                    "record": row,
                }
            )
        result["unprocessed"].extend(self._results(obj, job_id, "unprocessedrecords", what))

    def _wait(self, obj: str, job_id: str, what: str) -> dict[str, Any]:
        """The job's info once it has ended (``JobComplete``, ``Failed`` or ``Aborted``)."""
        deadline = time.monotonic() + self.connector.bulk_timeout
        while True:
            time.sleep(self.connector.bulk_wait)
            info = self._call(f"{what}: state", lambda sf: _bulk(sf, obj).get_job(job_id, False))
            state = info.get("state")
            if state in ("JobComplete", "Failed", "Aborted"):
                return dict(info)
            if time.monotonic() > deadline:
                raise BusinessError(
                    f"{self.name}: {what} is still {state} after "
                    f"{self.connector.bulk_timeout:g} s, so it is aborted; see Setup > Bulk "
                    "Data Load Jobs for the rows it loaded before running the step again"
                )

    def _results(self, obj: str, job_id: str, kind: str, what: str) -> list[dict[str, str]]:
        text = self._call(
            f"{what}: {kind}", lambda sf: _bulk(sf, obj).get_ingest_results(job_id, kind)
        )
        return [dict(row) for row in csv.DictReader(io.StringIO(text))]

    def _abort(self, obj: str, job_id: str) -> None:
        """Abort a job a failure left open or running (best effort: the failure counts)."""
        try:
            self._call(
                f"abort bulk job {job_id}", lambda sf: _bulk(sf, obj).abort_job(job_id, False)
            )
        except Exception as exc:
            log.info("%s: could not abort bulk job %s: %s", self.name, job_id, exc)

    # ------------------------------------------------------------ the calls
    @staticmethod
    def _sobject(sf: Salesforce, obj: str) -> SFType:
        return SFType(
            obj,
            sf.session_id,
            sf.sf_instance,
            sf_version=sf.sf_version,
            session=sf.session,
            salesforce=sf,
            object_pairs_hook=dict,
        )

    def _call(self, what: str, send: Callable[[Salesforce], T]) -> T:
        """Run ``send`` on the session in force, retried per the connection: a session
        Salesforce calls expired is replaced once; errors are translated."""
        connector = self.connector
        renewed = False

        def once() -> T:
            nonlocal renewed
            while True:
                connector.last.request = connector.last.response = None
                try:
                    login = connector.current()
                    try:
                        return send(login.sf)
                    except SalesforceExpiredSession as exc:
                        if renewed:
                            raise self._failed(what, exc) from exc
                        renewed = True
                        log.info("%s: %s: the session expired; logging in again", self.name, what)
                        connector.expired(login)
                except (Retry, BusinessError):
                    self._record_last()  # a refused login, a failed Bulk job: the last exchange
                    raise
                except HubError:  # outside the allow-list, at the rate limit, misconfigured
                    raise
                except (
                    SalesforceError,
                    SalesforceOperationError,
                    requests.RequestException,
                ) as exc:
                    raise self._failed(what, exc) from exc

        try:
            return retrying(self.config, once)
        finally:  # a kept response would hold its socket open after the pool is closed
            connector.last.request = connector.last.response = None

    @property
    def name(self) -> str:
        return self.connector.name

    def _failed(self, what: str, exc: Exception) -> Exception:
        """The hub's error for ``exc`` (a Retry for what may pass), the exchange recorded."""
        self._record_last()
        where = f"{self.name}: {what}"
        if isinstance(exc, requests.exceptions.SSLError):
            return BusinessError(
                f"{where}: the TLS certificate did not verify ({type(exc).__name__}); check "
                "the connection's verify (a CA bundle path) and its url"
            )
        if isinstance(exc, requests.Timeout):
            return Retry(TransientError(f"{where} timed out"))
        if isinstance(exc, requests.ConnectionError):
            return Retry(TransientError(f"{where} failed: {type(exc).__name__}"))
        if isinstance(exc, requests.RequestException):
            return BusinessError(f"{where} failed: {type(exc).__name__}")
        if isinstance(exc, SalesforceMoreThanOneRecord):
            matches: list[Any] = exc.content if isinstance(exc.content, list) else []
            shown = ", ".join(str(m).rsplit("/", 1)[-1] for m in matches[:10])
            return BusinessError(
                f"{where}: {len(matches)} records match, so Salesforce cannot tell which "
                f"one to change ({shown}); make the external ID unique"
            )
        if isinstance(exc, SalesforceError):
            errors = _errors(exc.content)
            words = "; ".join(_word(e) for e in errors) or _text(exc.content)
            message = f"{where} answered {exc.status}: {words}"
            codes = {str(e.get("errorCode") or "") for e in errors}
            if codes & TRANSIENT_CODES or exc.status in RETRY_STATUSES or exc.status >= 500:
                return Retry(TransientError(message, retry_after=self._retry_after()))
            if isinstance(exc, SalesforceExpiredSession) and self.config.auth.kind == "bearer":
                message += f"; {LOGIN_HINTS['bearer']} (connection {self.name!r})"
            elif isinstance(exc, SalesforceExpiredSession):
                message += (
                    f"; the session expired again right after a new login: check the "
                    f"credentials of connection {self.name!r} and the user's session settings"
                )
            return BusinessError(message)
        return BusinessError(f"{where}: {exc}")

    def _retry_after(self) -> float | None:
        response = self.connector.last.response
        if response is None:
            return None
        return retry_after(response.headers.get("Retry-After"))

    def _record_last(self) -> None:
        last = self.connector.last
        if last.request is None:
            return
        request = last.request
        if str(request.url).startswith(self.connector.token_url):
            request = _token_request_shown(request)
        self.record(request=request, response=last.response)


# ------------------------------------------------------------------- helpers
def _bulk(sf: Salesforce, obj: str) -> _Bulk2Client:
    """simple-salesforce's Bulk 2.0 calls, one request each, on the session in force."""
    return _Bulk2Client(obj, sf.bulk2_url, dict(sf.headers), sf.session)


def _bulk_error(error: str) -> tuple[str, str, list[str]]:
    """``CODE:message:Field1,Field2 --`` (a Bulk result's ``sf__Error``) split in three."""
    code, _, rest = error.partition(":")
    fields: list[str] = []
    rest = rest.strip()
    if rest.endswith("--"):
        head, sep, named = rest[:-2].rstrip().rpartition(":")
        if sep:
            rest = head
            fields = [f.strip() for f in named.split(",") if f.strip()]
    return code.strip(), rest.strip(), fields


def _plain(value: Any) -> Any:
    """Records as plain dicts, without Salesforce's ``attributes`` at any depth."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if k != "attributes"}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _csv(rows: list[dict[str, Any]]) -> str:
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(v) for k, v in row.items()})
    return out.getvalue()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _errors(content: Any) -> list[dict[str, Any]]:
    """Salesforce's error entries (``[{"message", "errorCode", "fields"}]``)."""
    if isinstance(content, dict):
        content = [content]
    if not isinstance(content, list):
        return []
    return [e for e in content if isinstance(e, dict) and (e.get("errorCode") or e.get("message"))]


def _word(error: dict[str, Any]) -> str:
    text = f"{error.get('errorCode') or 'ERROR'}: {error.get('message') or ''}".strip()
    fields = error.get("fields")
    if isinstance(fields, list) and fields:
        text += f" (fields: {', '.join(str(f) for f in fields)})"
    return text


def _text(content: Any) -> str:
    if isinstance(content, bytes):
        content = content.decode("utf-8", "replace")
    text = str(content).strip()
    return text[:300] or "no message"


def _oauth_words(body: Any, response: requests.Response) -> str:
    if isinstance(body, dict) and (body.get("error") or body.get("error_description")):
        return f"{body.get('error') or 'error'}: {body.get('error_description') or ''}".strip()
    if isinstance(body, list):
        return "; ".join(_word(e) for e in _errors(body)) or _text(body)
    return _text(response.text) if response.text else response.reason or "no message"


def _token_request_shown(request: Any) -> dict[str, Any]:
    """A token request for evidence: its form without the password, secret or assertion."""
    body = request.body
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    pairs = parse_qsl(body or "", keep_blank_values=True)
    shown = urlencode([(k, "[redacted]" if k in _SECRET_FORM_FIELDS else v) for k, v in pairs])
    return {
        "method": request.method,
        "url": request.url,
        "headers": dict(request.headers),
        "body": shown,
    }
