"""WS-Security UsernameToken checks (OASIS WSS UsernameToken Profile 1.0).

The ``wsse:Security`` header must hold a ``wsse:UsernameToken`` with ``wsse:Username`` and
``wsse:Password``. The password ``Type`` is ``...#PasswordText`` (the default when absent) or
``...#PasswordDigest``; a digest is ``Base64(SHA-1(nonce + created + password))`` where
``nonce`` is the decoded ``wsse:Nonce`` and ``created`` the literal ``wsu:Created`` text.

As the profile recommends, a token with a nonce is refused when its nonce was seen before
(nonces are remembered for the freshness window) and a token with ``wsu:Created`` is refused
when Created is older than five minutes or more than a minute in the future. Every refusal is
the fault ``wsse:FailedAuthentication`` with the standard faultstring and no ``<detail>``
(SOAP 1.1 keeps header errors out of ``detail``); the precise reason goes to the call log.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from lxml import etree

from .soap import SOAP_ENV, WSSE, WSU, SoapFault, q

PASSWORD_TEXT = (
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0"
    "#PasswordText"
)
PASSWORD_DIGEST = (
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0"
    "#PasswordDigest"
)
BASE64_BINARY = (
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-soap-message-security-1.0#Base64Binary"
)
FAILED_AUTHENTICATION = "The security token could not be authenticated or authorized"


def failed(reason: str) -> SoapFault:
    """The ``wsse:FailedAuthentication`` fault; ``reason`` only reaches the call log."""
    return SoapFault((WSSE, "FailedAuthentication"), FAILED_AUTHENTICATION, reason=reason)


def password_digest(nonce: bytes, created: str, password: str) -> str:
    """``Base64(SHA-1(nonce + created + password))`` as the profile defines it."""
    raw = hashlib.sha1(nonce + created.encode() + password.encode()).digest()
    return base64.b64encode(raw).decode("ascii")


class UsernameTokenVerifier:
    """Checks the ``wsse:Security`` header of a request against known users; thread-safe."""

    def __init__(
        self,
        users: Mapping[str, str],
        *,
        max_age: float = 300.0,
        max_skew: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.users = dict(users)
        self.max_age = max_age
        self.max_skew = max_skew
        self.clock = clock
        self._lock = threading.Lock()
        self._nonces: set[bytes] = set()
        self._expiry: deque[tuple[float, bytes]] = deque()

    def reset(self) -> None:
        """Forget every nonce seen so far."""
        with self._lock:
            self._nonces.clear()
            self._expiry.clear()

    def verify(self, header: etree._Element | None) -> str:
        """The authenticated username, or raise ``wsse:FailedAuthentication``."""
        security = None if header is None else header.find(q("Security", WSSE))
        if security is None:
            raise failed("no wsse:Security header")
        token = security.find(q("UsernameToken", WSSE))
        if token is None:
            raise failed("no wsse:UsernameToken in wsse:Security")
        username = _text(token, q("Username", WSSE))
        password_node = token.find(q("Password", WSSE))
        if not username or password_node is None:
            raise failed("UsernameToken without Username or Password")
        kind = password_node.get("Type", PASSWORD_TEXT)
        supplied = (password_node.text or "").strip()
        nonce = self._nonce(token)
        created_text = _text(token, q("Created", WSU))
        if created_text is not None:
            self._check_fresh(created_text)
        expected = self.users.get(username)
        if kind == PASSWORD_TEXT:
            matches = expected is not None and hmac.compare_digest(
                supplied.encode(), expected.encode()
            )
        elif kind == PASSWORD_DIGEST:
            if nonce is None or created_text is None:
                raise failed("PasswordDigest needs wsse:Nonce and wsu:Created")
            matches = expected is not None and hmac.compare_digest(
                supplied.encode(), password_digest(nonce, created_text, expected).encode()
            )
        else:
            raise failed(f"unsupported password type {kind!r}")
        if not matches:
            raise failed("unknown user or wrong password")
        if nonce is not None:
            self._remember(nonce)
        return username

    # ------------------------------------------------------------------ helpers
    def _nonce(self, token: etree._Element) -> bytes | None:
        node = token.find(q("Nonce", WSSE))
        if node is None:
            return None
        if node.get("EncodingType", BASE64_BINARY) != BASE64_BINARY:
            raise failed("unsupported nonce EncodingType")
        try:
            nonce = base64.b64decode((node.text or "").strip(), validate=True)
        except (binascii.Error, ValueError):
            raise failed("nonce is not Base64") from None
        if not nonce:
            raise failed("empty nonce")
        return nonce

    def _check_fresh(self, created_text: str) -> None:
        try:
            created = datetime.fromisoformat(created_text)
        except ValueError:
            raise failed("malformed wsu:Created") from None
        if created.tzinfo is None:
            created = created.replace(tzinfo=UTC)
        age = self.clock() - created.timestamp()
        if age > self.max_age:
            raise failed("wsu:Created is older than five minutes")
        if age < -self.max_skew:
            raise failed("wsu:Created is in the future")

    def _remember(self, nonce: bytes) -> None:
        now = self.clock()
        with self._lock:
            while self._expiry and self._expiry[0][0] < now:
                self._nonces.discard(self._expiry.popleft()[1])
            if nonce in self._nonces:
                raise failed("nonce was used before")
            self._nonces.add(nonce)
            # Kept past the freshness window plus skew, so no fresh token can reuse it.
            self._expiry.append((now + self.max_age + self.max_skew, nonce))


def _text(parent: etree._Element, tag: str) -> str | None:
    node = parent.find(tag)
    return None if node is None else (node.text or "").strip()


def must_understand_violation(header: etree._Element | None) -> str | None:
    """The first header entry that demands to be understood but is not ``wsse:Security``."""
    if header is None:
        return None
    actor_next = "http://schemas.xmlsoap.org/soap/actor/next"
    for entry in header:
        if not isinstance(entry.tag, str) or entry.tag == q("Security", WSSE):
            continue
        if entry.get(q("actor", SOAP_ENV), actor_next) != actor_next:
            continue
        if (entry.get(q("mustUnderstand", SOAP_ENV)) or "0").strip() in ("1", "true"):
            return entry.tag
    return None
