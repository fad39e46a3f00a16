"""The sandbox's lifecycle, credentials and the controls tests steer it with."""

from __future__ import annotations

import secrets
import shutil
import socket
import ssl
import string
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trustme
import uvicorn
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.sandbox.salesforce import ids
from tests.sandbox.salesforce.app import Api, Call, Cursor
from tests.sandbox.salesforce.auth import Credentials, Tokens
from tests.sandbox.salesforce.bulk import Bulk
from tests.sandbox.salesforce.store import Store

if TYPE_CHECKING:
    import requests
    from simple_salesforce import Salesforce

#: Default messages of the failures :meth:`SalesforceSandbox.fail_next` injects.
FAILURE_MESSAGES = {
    "REQUEST_LIMIT_EXCEEDED": "TotalRequests Limit exceeded.",
    "SERVER_UNAVAILABLE": "Server temporarily unavailable. Please try again later.",
    "UNKNOWN_EXCEPTION": (
        "An unexpected error occurred. Please include this ErrorId if you contact support: "
        "1873465921-43210 (-1147483648)"
    ),
    "INVALID_SESSION_ID": "Session expired or invalid",
}
_FAILURE_CODES = {
    403: "REQUEST_LIMIT_EXCEEDED",
    500: "UNKNOWN_EXCEPTION",
    401: "INVALID_SESSION_ID",
}


def _random(alphabet: str, length: int) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(length))


class SalesforceSandbox:
    """A Salesforce org on ``https://127.0.0.1``: OAuth, REST, SOQL and Bulk API 2.0.

    Start with :meth:`start` or ``with``; :meth:`stop` joins the server's
    thread and removes its files. Clients trust :attr:`ca_path` (a PEM) and
    use :attr:`url` as both the login URL and the instance URL.

    Credentials (fresh random ones each time, except the username and
    password, which may be given): :attr:`username`, :attr:`password`,
    :attr:`security_token` (appended to the password in the password flow),
    :attr:`client_id` and :attr:`client_secret` (the connected app),
    :attr:`jwt_private_key_pem` (signs JWT bearer assertions; its public half
    is the certificate the connected app trusts), :attr:`org_id` and
    :attr:`user_id`.

    Controls, safe from any thread: :attr:`delay` (seconds before each
    answer), :attr:`bulk_delay` (seconds a Bulk job takes),
    :meth:`fail_next`, :meth:`expire_sessions`, :meth:`seed`,
    :meth:`seed_many`, :meth:`records`, :attr:`calls`, :meth:`reset`.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        username: str = "integration@hub-sandbox.example.com",
        password: str = "Sandbox-Passw0rd",
        delay: float = 0.0,
        bulk_delay: float = 0.0,
        api_version: str = "59.0",
    ) -> None:
        self.host = host
        self.port = port
        self.api_version = api_version
        #: seconds every request waits before it is handled (the connection stays open)
        self.delay = delay
        #: when not None, the org's daily API request limit: the call past it answers 403
        self.api_limit: int | None = None
        #: open query cursors a user may have; opening one more drops the oldest (as Salesforce)
        self.max_open_cursors = 10
        self.org_id = ids.make_id("00D", 4_000_001)
        self.user_id = ids.make_id("005", 4_000_001)
        self.credentials = Credentials(
            username=username,
            password=password,
            security_token=_random(string.ascii_letters + string.digits, 24),
            client_id="3MVG9" + _random(string.ascii_letters + string.digits + "._", 80),
            client_secret=_random("0123456789ABCDEF", 64),
            org_id=self.org_id,
            user_id=self.user_id,
        )
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        #: the connected app's private key (PKCS#8 PEM) for signing JWT bearer assertions
        self.jwt_private_key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        #: its public half, which the sandbox checks assertions against
        self.jwt_public_key_pem = (
            key.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )
        self.store = Store(self.user_id, self.org_id, username)
        self.bulk = Bulk(self.store)
        self.bulk.delay = bulk_delay
        self.tokens = Tokens(self.credentials, self.jwt_public_key_pem.encode())
        self._lock = self.store.lock
        self._calls: list[Call] = []
        self._failures: list[tuple[int, list[dict[str, Any]]]] = []
        self._cursors: OrderedDict[str, Cursor] = OrderedDict()
        self._cursor_number = 0
        self.api_requests = 0
        self._dir: Path | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None

    # ---------------------------------------------------------- credentials
    @property
    def username(self) -> str:
        return self.credentials.username

    @property
    def password(self) -> str:
        """The user's password, without the security token."""
        return self.credentials.password

    @property
    def security_token(self) -> str:
        return self.credentials.security_token

    @property
    def client_id(self) -> str:
        """The connected app's consumer key."""
        return self.credentials.client_id

    @property
    def client_secret(self) -> str:
        """The connected app's consumer secret."""
        return self.credentials.client_secret

    # ------------------------------------------------------------ lifecycle
    @property
    def url(self) -> str:
        """``https://127.0.0.1:PORT``: the login URL and the instance URL."""
        if self._sock is None:
            raise RuntimeError("start() the sandbox first")
        return f"https://{self.host}:{self._sock.getsockname()[1]}"

    @property
    def instance_url(self) -> str:
        return self.url

    @property
    def token_url(self) -> str:
        """Where the OAuth token requests go."""
        return f"{self.url}/services/oauth2/token"

    @property
    def ca_path(self) -> str:
        """A PEM file with the CA that signed the server's certificate (``verify=`` this)."""
        if self._dir is None:
            raise RuntimeError("start() the sandbox first")
        return str(self._dir / "ca.pem")

    @property
    def jwt_private_key_path(self) -> str:
        """The JWT signing key as a file, for clients that read it from disk."""
        if self._dir is None:
            raise RuntimeError("start() the sandbox first")
        return str(self._dir / "jwt-key.pem")

    def start(self, *, start_within: float = 10.0) -> SalesforceSandbox:
        """Serve HTTPS on :attr:`host` (a free port unless one was given) in a daemon thread."""
        self._dir = Path(tempfile.mkdtemp(prefix="sf-sandbox-"))
        ca = trustme.CA(organization_name="Hub Salesforce Sandbox CA")
        cert = ca.issue_cert(self.host, "localhost")
        ca.cert_pem.write_to_path(str(self._dir / "ca.pem"))
        cert.private_key_pem.write_to_path(str(self._dir / "server.key"))
        for blob in cert.cert_chain_pems:
            blob.write_to_path(str(self._dir / "server.pem"), append=True)
        (self._dir / "jwt-key.pem").write_text(self.jwt_private_key_pem)
        # IPPROTO_TCP, not 0: asyncio turns Nagle off only on sockets that name TCP, and
        # without TCP_NODELAY every answer waits ~40 ms for the client's delayed ACK
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self._sock = sock
        config = uvicorn.Config(
            Api(self),
            log_level="warning",
            lifespan="off",
            access_log=False,
            ssl_certfile=str(self._dir / "server.pem"),
            ssl_keyfile=str(self._dir / "server.key"),
            timeout_keep_alive=30,
            backlog=4096,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, daemon=True, name="sf-sandbox"
        )
        self._thread.start()
        deadline = time.monotonic() + start_within
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the Salesforce sandbox's server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Stop serving, join the thread and remove the certificate files."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._sock is not None:
            self._sock.close()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
        self._server = self._thread = None
        self._sock = None
        self._dir = None

    def __enter__(self) -> SalesforceSandbox:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    # -------------------------------------------------------------- clients
    def token(self) -> str:
        """A fresh access token, as if a token request had succeeded."""
        with self._lock:
            return self.tokens.new_token()

    def ssl_context(self) -> ssl.SSLContext:
        """A client context trusting the sandbox's CA (for httpx's ``verify=``)."""
        return ssl.create_default_context(cafile=self.ca_path)

    def requests_session(self) -> requests.Session:
        """A ``requests.Session`` that trusts the sandbox's CA; the caller closes it.

        ``trust_env`` is off: with ``REQUESTS_CA_BUNDLE`` or ``CURL_CA_BUNDLE``
        set, requests would otherwise verify against that bundle and ignore
        ``session.verify`` (and send loopback calls to an ``HTTPS_PROXY``).
        """
        import requests

        session = requests.Session()
        session.verify = self.ca_path
        session.trust_env = False
        return session

    def client(self, version: str | None = None) -> Salesforce:
        """A simple-salesforce client with a fresh token and a session trusting the CA.

        Close it with ``client.session.close()``.
        """
        from simple_salesforce import Salesforce

        return Salesforce(
            instance_url=self.url,
            session_id=self.token(),
            session=self.requests_session(),
            version=version or self.api_version,
        )

    # ------------------------------------------------------------- controls
    @property
    def bulk_delay(self) -> float:
        """Seconds between a Bulk job's ``UploadComplete`` (or creation) and ``JobComplete``."""
        return self.bulk.delay

    @bulk_delay.setter
    def bulk_delay(self, seconds: float) -> None:
        self.bulk.delay = seconds

    def fail_next(
        self,
        count: int = 1,
        *,
        status: int = 503,
        error_code: str | None = None,
        message: str | None = None,
    ) -> None:
        """The next ``count`` requests to the data API answer ``status`` and change nothing.

        The body is Salesforce's ``[{"message", "errorCode"}]``; the code
        defaults to ``SERVER_UNAVAILABLE`` (503), ``REQUEST_LIMIT_EXCEEDED``
        (403), ``UNKNOWN_EXCEPTION`` (500) or ``INVALID_SESSION_ID`` (401).
        The token endpoint is not affected.
        """
        code = error_code or _FAILURE_CODES.get(status, "SERVER_UNAVAILABLE")
        text = message or FAILURE_MESSAGES.get(code, code.replace("_", " ").capitalize())
        with self._lock:
            self._failures.extend([(status, [{"message": text, "errorCode": code}])] * count)

    def expire_sessions(self) -> None:
        """Every access token handed out so far answers 401 ``INVALID_SESSION_ID`` from now on."""
        with self._lock:
            self.tokens.expire_all()

    def seed(self, obj: str, records: Iterable[dict[str, Any]]) -> list[str]:
        """Insert records as a data load would (no validation rules or unique checks); their ids.

        Unknown field names and values of the wrong type still raise
        :class:`~tests.sandbox.salesforce.schema.ApiError`.
        """
        return self.store.seed(obj, records)

    def seed_many(
        self, obj: str, count: int, make: Callable[[int], dict[str, Any]] | None = None
    ) -> list[str]:
        """``count`` records quickly (50,000 Accounts in a fraction of a second); their ids.

        ``make(i)`` (i from 1) gives record i's values, stored unchecked; by
        default Account i is ``Account 0000i`` with ``External_Id__c``
        ``ACC-0000i``, Contact i ``Contact 0000i``, Order__c i ``Order 0000i``
        with ``ORD-0000i``.
        """
        return self.store.seed_many(obj, count, make)

    def records(self, obj: str, *, include_deleted: bool = False) -> list[dict[str, Any]]:
        """Copies of an object's records in creation order (deleted ones only if asked)."""
        return self.store.live(obj, include_deleted=include_deleted)

    def record(self, record_id: str) -> dict[str, Any] | None:
        """A copy of any record by id (15 or 18 characters), deleted or not; ``None`` if none."""
        with self._lock:
            row = self.store.record(record_id)
            return dict(row) if row is not None else None

    @property
    def calls(self) -> list[Call]:
        """Every request answered so far, ``(method, path, status)``, oldest first (a copy)."""
        with self._lock:
            return list(self._calls)

    def reset(self) -> None:
        """Back to an empty org: no records, jobs, cursors, calls, pending failures or delays.

        Access tokens stay valid, so clients made before keep working.
        """
        with self._lock:
            self.store.clear()
            self.bulk.clear()
            self._cursors.clear()
            self._calls.clear()
            self._failures.clear()
            self.delay = 0.0
            self.bulk.delay = 0.0
            self.api_requests = 0
            self.api_limit = None

    # ------------------------------------------------------ for the handler
    @property
    def api_limit_max(self) -> int:
        return self.api_limit if self.api_limit is not None else 1_000_000

    def limits(self) -> dict[str, dict[str, int]]:
        """``GET limits``: the org's limits, with the API requests made so far."""
        with self._lock:
            api_max = self.api_limit_max
            query_jobs = sum(1 for j in self.bulk.jobs.values() if j.kind == "query")
            ingest_jobs = sum(1 for j in self.bulk.jobs.values() if j.kind == "ingest")
            rows = sum(
                sum(1 for r in t.rows.values() if not r["IsDeleted"])
                for t in self.store.tables.values()
            )
        storage_max = 1024
        used_mb = (rows * 2 + 1023) // 1024  # Salesforce counts 2 KB a record
        return {
            "ConcurrentAsyncGetReportInstances": {"Max": 200, "Remaining": 200},
            "ConcurrentSyncReportRuns": {"Max": 20, "Remaining": 20},
            "DailyApiRequests": {"Max": api_max, "Remaining": max(0, api_max - self.api_requests)},
            "DailyAsyncApexExecutions": {"Max": 250000, "Remaining": 250000},
            "DailyBulkApiBatches": {"Max": 15000, "Remaining": 15000 - ingest_jobs},
            "DailyBulkV2QueryFileStorageMB": {"Max": 976562, "Remaining": 976562},
            "DailyBulkV2QueryJobs": {"Max": 10000, "Remaining": 10000 - query_jobs},
            "DataStorageMB": {"Max": storage_max, "Remaining": max(0, storage_max - used_mb)},
            "FileStorageMB": {"Max": 1024, "Remaining": 1024},
            "HourlyTimeBasedWorkflow": {"Max": 1000, "Remaining": 1000},
            "SingleEmail": {"Max": 5000, "Remaining": 5000},
        }

    def _log(self, call: Call) -> None:
        with self._lock:
            self._calls.append(call)

    def _take_failure(self) -> tuple[int, list[dict[str, Any]]] | None:
        with self._lock:
            return self._failures.pop(0) if self._failures else None

    def _count_request(self) -> int | None:
        """Count one API request; ``None`` when the daily limit is used up."""
        with self._lock:
            if self.api_limit is not None and self.api_requests >= self.api_limit:
                return None
            self.api_requests += 1
            return self.api_requests

    def _open_cursor(self, cursor: Cursor) -> str:
        with self._lock:
            self._cursor_number += 1
            locator = ids.make_id("01g", self._cursor_number)
            self._cursors[locator] = cursor
            while len(self._cursors) > self.max_open_cursors:
                self._cursors.popitem(last=False)
            return locator

    def _cursor(self, locator: str) -> Cursor | None:
        with self._lock:
            cursor = self._cursors.get(locator)
            if cursor is not None:
                self._cursors.move_to_end(locator)
            return cursor

    def _close_cursor(self, locator: str) -> None:
        with self._lock:
            self._cursors.pop(locator, None)
