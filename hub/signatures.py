"""Webhook signature verification: pure functions of headers, raw body, secrets and time.

The intake of ``POST /hooks/{name}`` reads the raw body (at most
``max_body`` bytes), then, before it parses or stores anything::

    secrets = hook.resolve_secrets()     # SecretConfigError -> 503, the operator's to fix
    verified = verify(hook, request.headers, body, secrets, now=time.time())
                                         # SignatureError -> 401, nothing stored

What each preset (``Webhook(verify=...)``) reads and what it signs; the
HMAC key is the secret's UTF-8 bytes unless said otherwise::

    verify=   signature header(s)                  signed bytes                 time   delivery id
    github    X-Hub-Signature-256: sha256=<hex>    body                         -      X-GitHub-Delivery*
    stripe    Stripe-Signature: t=<ts>,v1=<hex>..  {t}.{body}                   t      "id" of the JSON body
    standard  webhook-signature: v1,<b64> ...      {webhook-id}.{webhook-       yes    webhook-id
              webhook-id, webhook-timestamp        timestamp}.{body}; key is the
              (or Svix's svix-* names)             base64 after "whsec_"
    slack     X-Slack-Signature: v0=<hex>          v0:{timestamp}:{body}        yes    -
              X-Slack-Request-Timestamp
    hmac      header= (X-Signature), prefix=,      signed= ("{body}", or        opt.   -
              algorithm= (sha256), encoding= (hex) "{timestamp}.{body}" with
                                                   timestamp_header=)
    token     Authorization: Bearer <token>, or    nothing: the token itself    -      -
              X-Hub-Token: <token> (or header=)    is compared

    * not covered by GitHub's signature: a replayed body can carry a new one.

The signed bytes are the body exactly as received: a JSON document parsed
and dumped again (other whitespace, key order or escapes) no longer matches.
Every comparison goes through ``hmac.compare_digest``; a shared token is
hashed first so that not even its length leaks.

**Tolerance.** Presets that sign a time reject a delivery whose time is more
than ``tolerance`` seconds (default 300) from the hub's clock in either
direction: too old (a captured request replayed) or too far in the future (a
forged or badly skewed clock). The time is judged only after the signature
matched, so a forgery always reads "signature does not match".

**Rotation.** ``Webhook(secret=["env:NEW", "env:OLD"])`` accepts a delivery
signed with any of the secrets; ``Verified.secret_index`` says which one
matched, so the operator can see when the old one stops being used. Senders
that rotate on their side put several signatures in one header (Stripe's
``v1=`` entries, Standard Webhooks' ``v1,`` entries); any of them may match.

**Errors.** ``SignatureError`` (hub.errors) means the delivery is not
authentic: answer 401 and store nothing. Its message is short and safe to
return and log; no message here holds the body, a secret or an expected
signature. ``SecretConfigError`` means this deployment cannot verify at all
(an unset variable, a malformed key): the operator's fault, not the sender's,
so the intake answers 503 and the sender retries after the fix.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from hub.errors import HubError, SignatureError

if TYPE_CHECKING:
    from hub.triggers import Webhook

DEFAULT_TOLERANCE = 300.0
ALGORITHMS = ("sha1", "sha256", "sha512")
ENCODINGS = ("hex", "base64")
#: Entries read from one signature header: bounds the work a forged header causes.
MAX_SIGNATURES = 16

_DELIVERY_ID = re.compile(r"^[\x21-\x7e]{1,255}$")
_SHOWN_PREFIX = re.compile(r"^[A-Za-z0-9_-]{1,16}[=,]$")

Headers = Mapping[str, str]


class SecretConfigError(HubError):
    """A webhook's secret is unset or malformed here, so no delivery can be verified.

    The operator's problem, not the sender's: the intake answers 503 (the
    sender retries later) and logs the message, which names the environment
    variable, never its value.
    """


@dataclass(frozen=True)
class Verified:
    """An authentic delivery.

    ``delivery_id`` is the sender's id for the delivery when the preset has
    one (for de-duplication); ``signed_at`` the signed time (UTC) when the
    preset signs one; ``secret_index`` the position of the secret that
    matched in the list given (0 is the first, the newest).
    """

    preset: str
    delivery_id: str | None = None
    signed_at: datetime | None = None
    secret_index: int = 0


def verify(
    hook: Webhook,
    headers: Headers,
    body: bytes,
    secrets: Sequence[str],
    now: datetime | float,
) -> Verified:
    """Verify one delivery to ``hook`` with its preset and options.

    ``secrets`` are the values (``hook.resolve_secrets()``), newest first;
    ``now`` an aware datetime or Unix seconds. Returns ``Verified``; raises
    ``SignatureError`` (401) or ``SecretConfigError`` (503).
    """
    tolerance = DEFAULT_TOLERANCE if hook.tolerance is None else float(hook.tolerance)
    try:
        if hook.verify == "github":
            return verify_github(headers, body, secrets)
        if hook.verify == "stripe":
            return verify_stripe(headers, body, secrets, now, tolerance=tolerance)
        if hook.verify == "standard":
            return verify_standard(headers, body, secrets, now, tolerance=tolerance)
        if hook.verify == "slack":
            return verify_slack(headers, body, secrets, now, tolerance=tolerance)
        if hook.verify == "token":
            return verify_token(headers, secrets, header=hook.header, prefix=hook.prefix)
        return verify_hmac(
            headers,
            body,
            secrets,
            now,
            header=hook.header or "X-Signature",
            algorithm=hook.algorithm or "sha256",
            encoding=hook.encoding or "hex",
            prefix=hook.prefix or "",
            timestamp_header=hook.timestamp_header,
            signed=hook.signed,
            tolerance=tolerance,
        )
    except SecretConfigError as exc:
        raise SecretConfigError(f"webhook {hook.name!r}: {exc}") from None


# ----------------------------------------------------------------- presets


def verify_github(headers: Headers, body: bytes, secrets: Sequence[str]) -> Verified:
    """GitHub: ``X-Hub-Signature-256: sha256=<hex>``, HMAC-SHA256 of the body."""
    keys = _keys(secrets)
    h = _lowered(headers)
    value = h.get("x-hub-signature-256", "").strip()
    if not value:
        if h.get("x-hub-signature", "").strip():
            raise SignatureError(
                "missing X-Hub-Signature-256 header; the legacy sha1 X-Hub-Signature "
                "alone is not accepted"
            )
        raise SignatureError("missing X-Hub-Signature-256 header")
    signature = _after_prefix(value, "sha256=", "X-Hub-Signature-256", "GitHub signs with")
    index = _match([_decoded(signature, "hex", "X-Hub-Signature-256")], keys, (body,))
    delivery = _delivery_id(h, "X-GitHub-Delivery")
    return Verified("github", delivery_id=delivery, secret_index=index)


def verify_stripe(
    headers: Headers,
    body: bytes,
    secrets: Sequence[str],
    now: datetime | float,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
) -> Verified:
    """Stripe: ``Stripe-Signature: t=<ts>,v1=<hex>[,v1=...]`` over ``{t}.{body}``."""
    keys = _keys(secrets)
    value = _required(_lowered(headers), "Stripe-Signature")
    stamp: str | None = None
    candidates: list[bytes] = []
    for item in value.split(",", MAX_SIGNATURES)[:MAX_SIGNATURES]:
        key, _, text = item.strip().partition("=")
        if key == "t" and stamp is None:
            stamp = text
        elif key == "v1" and (digest := _decode(text, "hex")) is not None:
            candidates.append(digest)
    if stamp is None:
        raise SignatureError("Stripe-Signature has no t= timestamp")
    if not candidates:
        raise SignatureError("Stripe-Signature has no v1= signature; Stripe signs with v1=<hex>")
    signed_at = _unix_time(stamp, "Stripe-Signature t=")
    index = _match(candidates, keys, (stamp.encode(), b".", body))
    _within(signed_at, now, tolerance)
    return Verified(
        "stripe", delivery_id=_json_id(body), signed_at=_utc(signed_at), secret_index=index
    )


def verify_standard(
    headers: Headers,
    body: bytes,
    secrets: Sequence[str],
    now: datetime | float,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
) -> Verified:
    """Standard Webhooks: ``webhook-signature: v1,<base64> ...`` over ``{id}.{timestamp}.{body}``.

    Each secret is ``whsec_<base64>``; the HMAC key is the decoded bytes.
    Svix, where the scheme comes from, names the headers ``svix-*``; those
    are read when the ``webhook-*`` ones are absent.
    """
    keys = [_standard_key(secret, i) for i, secret in enumerate(_checked(secrets))]
    h = _lowered(headers)
    if "webhook-signature" not in h and "svix-signature" in h:
        h = {k.replace("svix-", "webhook-", 1): v for k, v in h.items() if k.startswith("svix-")}
    message_id = _delivery_id(h, "webhook-id", required=True)
    stamp = _required(h, "webhook-timestamp")
    value = _required(h, "webhook-signature")
    signed_at = _unix_time(stamp, "webhook-timestamp")
    candidates = []
    for entry in value.split()[:MAX_SIGNATURES]:
        version, _, text = entry.partition(",")
        if version == "v1" and (digest := _decode(text, "base64")) is not None:
            candidates.append(digest)
    if not candidates:
        raise SignatureError("webhook-signature has no v1,<base64> signature")
    parts = (f"{message_id}.{stamp}.".encode(), body)
    index = _match(candidates, keys, parts)
    _within(signed_at, now, tolerance)
    return Verified(
        "standard", delivery_id=message_id, signed_at=_utc(signed_at), secret_index=index
    )


def verify_slack(
    headers: Headers,
    body: bytes,
    secrets: Sequence[str],
    now: datetime | float,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
) -> Verified:
    """Slack: ``X-Slack-Signature: v0=<hex>`` over ``v0:{X-Slack-Request-Timestamp}:{body}``."""
    keys = _keys(secrets)
    h = _lowered(headers)
    value = _required(h, "X-Slack-Signature")
    stamp = _required(h, "X-Slack-Request-Timestamp")
    signature = _after_prefix(value, "v0=", "X-Slack-Signature", "Slack signs with")
    digest = _decoded(signature, "hex", "X-Slack-Signature")
    signed_at = _unix_time(stamp, "X-Slack-Request-Timestamp")
    index = _match([digest], keys, (f"v0:{stamp}:".encode(), body))
    _within(signed_at, now, tolerance)
    return Verified("slack", signed_at=_utc(signed_at), secret_index=index)


def verify_hmac(
    headers: Headers,
    body: bytes,
    secrets: Sequence[str],
    now: datetime | float,
    *,
    header: str = "X-Signature",
    algorithm: str = "sha256",
    encoding: str = "hex",
    prefix: str = "",
    timestamp_header: str | None = None,
    signed: str | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
) -> Verified:
    """Any sender that puts an HMAC of the body (and optionally a time) in a header.

    ``signed`` is a template of the signed bytes with ``{body}`` and, with a
    ``timestamp_header``, ``{timestamp}`` (the header's text as sent);
    default ``{body}``, or ``{timestamp}.{body}`` with a timestamp header.
    """
    keys = _keys(secrets)
    h = _lowered(headers)
    value = _required(h, header)
    if prefix:
        value = _after_prefix(value, prefix, header, "this webhook expects")
    digest = _decoded(value, encoding, header)
    template = signed or ("{timestamp}.{body}" if timestamp_header else "{body}")
    stamp, signed_at = "", None
    if timestamp_header:
        stamp = _required(h, timestamp_header)
        signed_at = _any_time(stamp, timestamp_header)
    before, _, after = template.replace("{timestamp}", stamp).partition("{body}")
    parts = (before.encode(), body, after.encode())
    index = _match([digest], keys, parts, algorithm)
    if signed_at is not None:
        _within(signed_at, now, tolerance)
    return Verified(
        "hmac", signed_at=None if signed_at is None else _utc(signed_at), secret_index=index
    )


def verify_token(
    headers: Headers,
    secrets: Sequence[str],
    *,
    header: str | None = None,
    prefix: str | None = None,
) -> Verified:
    """A shared token: ``Authorization: Bearer <token>`` or ``X-Hub-Token: <token>``.

    With ``header``, that header alone is read; it holds ``prefix`` then the
    token (``prefix`` defaults to ``"Bearer "`` for ``Authorization``).
    """
    tokens = [hashlib.sha256(key).digest() for key in _keys(secrets)]
    h = _lowered(headers)
    if header is None:
        auth = h.get("authorization", "").strip()
        if auth:
            scheme, _, presented = auth.partition(" ")
            if scheme.lower() != "bearer":
                raise SignatureError("Authorization header is not a Bearer token")
        else:
            presented = h.get("x-hub-token", "")
            if not presented.strip():
                raise SignatureError("missing Authorization: Bearer or X-Hub-Token header")
    else:
        value = _required(h, header)
        if prefix is None:
            prefix = "Bearer " if header.lower() == "authorization" else ""
        if not value.lower().startswith(prefix.lower()):
            raise SignatureError(f"{header} header does not start with {prefix!r}")
        presented = value[len(prefix) :]
    seen = hashlib.sha256(_utf8(presented.strip())).digest()
    for index, token in enumerate(tokens):
        if hmac.compare_digest(seen, token):
            return Verified("token", secret_index=index)
    raise SignatureError("token does not match")


# ----------------------------------------------------------------- helpers


def _lowered(headers: Headers) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


def _required(h: dict[str, str], name: str) -> str:
    value = h.get(name.lower(), "").strip()
    if not value:
        raise SignatureError(f"missing {name} header")
    return value


def _after_prefix(value: str, prefix: str, header: str, who: str) -> str:
    if value[: len(prefix)].lower() == prefix.lower():
        return value[len(prefix) :]
    found = re.match(r"[^=,]*[=,]", value[:17])
    if found and _SHOWN_PREFIX.match(found.group()):
        kind = "version" if prefix.startswith("v") else "algorithm"
        raise SignatureError(f"wrong {kind} prefix {found.group()!r}; {who} {prefix}")
    raise SignatureError(f"{header} header does not start with {prefix}")


def _decode(text: str, encoding: str) -> bytes | None:
    try:
        if encoding == "hex":
            return binascii.unhexlify(text.strip())
        return base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None


def _decoded(text: str, encoding: str, header: str) -> bytes:
    digest = _decode(text, encoding)
    if not digest:
        raise SignatureError(f"{header} header is not a {encoding} signature")
    return digest


def _checked(secrets: Sequence[str]) -> Sequence[str]:
    if isinstance(secrets, str | bytes):
        raise TypeError("secrets is a list of secret values, not one string")
    if not secrets:
        raise SecretConfigError("no secret to verify with")
    for i, secret in enumerate(secrets):
        if not isinstance(secret, str) or not secret:
            raise SecretConfigError(f"secret {i + 1} of {len(secrets)} is empty")
    return secrets


def _match(
    candidates: Sequence[bytes],
    keys: Sequence[bytes],
    parts: tuple[bytes, ...],
    algorithm: str = "sha256",
) -> int:
    """The index of the first key whose HMAC of ``parts`` equals one of ``candidates``."""
    for index, key in enumerate(keys):
        mac = hmac.new(key, digestmod=algorithm)
        for part in parts:
            mac.update(part)
        digest = mac.digest()
        if any(hmac.compare_digest(digest, candidate) for candidate in candidates):
            return index
    raise SignatureError("signature does not match")


def _keys(secrets: Sequence[str]) -> list[bytes]:
    return [_utf8(secret) for secret in _checked(secrets)]


def _standard_key(secret: str, index: int) -> bytes:
    try:
        key = base64.b64decode(secret.strip().removeprefix("whsec_"), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if not key:
        raise SecretConfigError(
            f"secret {index + 1} is not a Standard Webhooks key (whsec_ followed by base64)"
        )
    return key


def _delivery_id(h: dict[str, str], name: str, *, required: bool = False) -> str | None:
    value = _required(h, name) if required else h.get(name.lower(), "").strip()
    if not value:
        return None
    if not _DELIVERY_ID.match(value):
        raise SignatureError(f"{name} header is not a delivery id")
    return value


def _json_id(body: bytes) -> str | None:
    """The ``id`` of a JSON object body (Stripe's event id), or None."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return None
    value = data.get("id") if isinstance(data, dict) else None
    return value if isinstance(value, str) and _DELIVERY_ID.match(value) else None


def _unix_time(text: str, header: str) -> float:
    if text.isascii() and text.isdigit() and len(text) <= 12:
        return float(text)
    raise SignatureError(f"{header} is not a Unix time in seconds")


def _any_time(text: str, header: str) -> float:
    """Unix seconds, or an ISO 8601 time with a zone (``2024-05-01T10:00:00Z``)."""
    if text.isascii() and text.isdigit():
        return _unix_time(text, header)
    try:
        when = datetime.fromisoformat(text) if len(text) <= 40 else None
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        raise SignatureError(f"{header} is not a Unix time or an ISO 8601 time with a zone")
    return when.timestamp()


def _within(signed_at: float, now: datetime | float, tolerance: float) -> None:
    skew = _seconds(now) - signed_at
    if abs(skew) > tolerance:
        side = "old" if skew > 0 else "in the future"
        raise SignatureError(
            f"timestamp {abs(skew):.0f} s {side}, outside the {tolerance:g} s tolerance"
        )


def _seconds(now: datetime | float) -> float:
    if isinstance(now, datetime):
        if now.tzinfo is None:
            raise ValueError("now must be an aware datetime or Unix seconds")
        return now.timestamp()
    return float(now)


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")
