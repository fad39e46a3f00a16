"""The OAuth 2.0 token endpoint and the access tokens it hands out.

``POST /services/oauth2/token`` (form-encoded) answers three flows:

- ``grant_type=password``: ``client_id``, ``client_secret``, ``username`` and
  ``password`` (the password followed by the user's security token);
- ``grant_type=client_credentials``: the client's id and secret in the body
  or as HTTP Basic credentials; the token runs as the integration user;
- ``grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer``: ``assertion``
  is a JWT signed RS256 with the connected app's key, ``iss`` the client id,
  ``sub`` the username, ``aud`` the login URL (the sandbox's URL,
  ``https://login.salesforce.com`` or ``https://test.salesforce.com``) and
  ``exp`` not yet passed.

Success is 200 with ``access_token``, ``instance_url``, ``id``,
``token_type`` ``Bearer``, ``issued_at`` (milliseconds) and ``signature`` (the
HMAC-SHA256 of ``id`` + ``issued_at`` keyed by the client secret, base64), and
``scope`` for the two server flows. Failure is 400 with ``error`` and
``error_description``: ``unsupported_grant_type`` / "grant type not
supported", ``invalid_client_id`` / "client identifier invalid",
``invalid_client`` / "invalid client credentials", ``invalid_grant`` /
"authentication failure" (user or password), "invalid assertion" (a JWT
that is malformed, badly signed or expired), "audience is invalid" and
"user hasn't approved this consumer" (a JWT for another user).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import string
import time
from dataclasses import dataclass
from typing import Any

import jwt

JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
_TOKEN_CHARS = string.ascii_letters + string.digits + "._"


@dataclass(frozen=True)
class Credentials:
    """The org's one integration user and its connected app."""

    username: str
    password: str
    security_token: str
    client_id: str
    client_secret: str
    org_id: str
    user_id: str


class OAuthError(Exception):
    """A 400 answer of the token endpoint."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(f"{error}: {description}")
        self.body = {"error": error, "error_description": description}


class Tokens:
    """Access tokens in force; the caller holds the sandbox's lock around every call."""

    def __init__(self, credentials: Credentials, public_key_pem: bytes) -> None:
        self.credentials = credentials
        self.public_key_pem = public_key_pem
        self.live: dict[str, float] = {}
        self.issued = 0

    def new_token(self) -> str:
        """A fresh access token in Salesforce's shape: the org id, ``!``, then opaque text."""
        body = "".join(secrets.choice(_TOKEN_CHARS) for _ in range(96))
        token = f"{self.credentials.org_id[:15]}!{body}"
        self.live[token] = time.time()
        self.issued += 1
        return token

    def valid(self, token: str | None) -> bool:
        return token is not None and token in self.live

    def expire_all(self) -> None:
        self.live.clear()

    def revoke(self, token: str) -> bool:
        return self.live.pop(token, None) is not None

    # ----------------------------------------------------------- the flows
    def grant(
        self,
        form: dict[str, str],
        basic: tuple[str, str] | None,
        base_url: str,
    ) -> dict[str, Any]:
        """The token response for a token request; raises :class:`OAuthError`."""
        grant_type = form.get("grant_type", "")
        scope = None
        if grant_type == "password":
            self._client(form.get("client_id"), form.get("client_secret"))
            creds = self.credentials
            expected = creds.password + creds.security_token
            if not (
                hmac.compare_digest(form.get("username", ""), creds.username)
                and hmac.compare_digest(form.get("password", ""), expected)
            ):
                raise OAuthError("invalid_grant", "authentication failure")
        elif grant_type == "client_credentials":
            client_id, secret = basic or (form.get("client_id"), form.get("client_secret"))
            self._client(client_id, secret)
            scope = "api"
        elif grant_type == JWT_GRANT:
            self._assertion(form.get("assertion", ""), base_url)
            scope = "api"
        else:
            raise OAuthError("unsupported_grant_type", "grant type not supported")
        return self.response(base_url, scope)

    def response(self, base_url: str, scope: str | None = None) -> dict[str, Any]:
        creds = self.credentials
        identity = f"{base_url}/id/{creds.org_id}/{creds.user_id}"
        issued_at = str(int(time.time() * 1000))
        digest = hmac.new(
            creds.client_secret.encode(), (identity + issued_at).encode(), hashlib.sha256
        ).digest()
        body: dict[str, Any] = {"access_token": self.new_token()}
        if scope:
            body["scope"] = scope
        body.update(
            {
                "instance_url": base_url,
                "id": identity,
                "token_type": "Bearer",
                "issued_at": issued_at,
                "signature": base64.b64encode(digest).decode(),
            }
        )
        return body

    def _client(self, client_id: str | None, secret: str | None) -> None:
        creds = self.credentials
        if not client_id or not hmac.compare_digest(client_id, creds.client_id):
            raise OAuthError("invalid_client_id", "client identifier invalid")
        if not secret or not hmac.compare_digest(secret, creds.client_secret):
            raise OAuthError("invalid_client", "invalid client credentials")

    def _assertion(self, assertion: str, base_url: str) -> None:
        try:
            header = jwt.get_unverified_header(assertion)
            claims = jwt.decode(
                assertion,
                self.public_key_pem,
                algorithms=["RS256"],
                options={"verify_exp": False, "verify_aud": False, "verify_iat": False},
            )
        except jwt.PyJWTError:
            raise OAuthError("invalid_grant", "invalid assertion") from None
        if header.get("alg") != "RS256":
            raise OAuthError("invalid_grant", "invalid assertion")
        creds = self.credentials
        if claims.get("iss") != creds.client_id:
            raise OAuthError("invalid_client_id", "client identifier invalid")
        audiences = claims.get("aud")
        if isinstance(audiences, str):
            audiences = [audiences]
        accepted = {base_url, "https://login.salesforce.com", "https://test.salesforce.com"}
        if (
            not isinstance(audiences, list)
            or not {str(a).rstrip("/") for a in audiences} & accepted
        ):
            raise OAuthError("invalid_grant", "audience is invalid")
        try:
            expires = float(claims["exp"])  # simple-salesforce sends it as a string
        except (KeyError, TypeError, ValueError):
            raise OAuthError("invalid_grant", "invalid assertion") from None
        if expires <= time.time():
            raise OAuthError("invalid_grant", "invalid assertion")
        if claims.get("sub") != creds.username:
            raise OAuthError("invalid_grant", "user hasn't approved this consumer")


def basic_credentials(header: str | None) -> tuple[str, str] | None:
    """``(id, secret)`` of an ``Authorization: Basic`` header, else ``None``."""
    if not header or not header.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    client_id, sep, secret = decoded.partition(":")
    return (client_id, secret) if sep else None


def bearer(header: str | None) -> str | None:
    """The access token of an ``Authorization: Bearer`` (or ``OAuth``) header."""
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() not in ("bearer", "oauth"):
        return None
    return token.strip() or None
