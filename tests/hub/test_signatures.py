"""Webhook signatures: real signatures, computed here independently of the hub, are checked.

Every signature in this file is computed by the test itself with the standard
library (``hmac``, ``hashlib``, ``base64``) or copied from a provider's
published example; no hub code signs anything.
"""

from __future__ import annotations

import base64
import hmac
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from hub.errors import FlowDefinitionError, SignatureError
from hub.signatures import SecretConfigError, Verified, verify
from hub.triggers import Webhook

NOW = 1_700_000_000
BODY = json.dumps({"id": "evt_1NQ", "type": "order.created", "data": {"qty": 2}}).encode()
# Secrets in the Standard Webhooks form; the other presets use the whole string as the key.
NEW = "whsec_" + base64.b64encode(b"the new secret, 32 bytes long...").decode()
OLD = "whsec_" + base64.b64encode(b"the old secret, 32 bytes long...").decode()


def _hex(key: bytes, message: bytes, algorithm: str = "sha256") -> str:
    return hmac.new(key, message, algorithm).hexdigest()


def _b64(key: bytes, message: bytes, algorithm: str = "sha256") -> str:
    return base64.b64encode(hmac.new(key, message, algorithm).digest()).decode()


# ------------------------------------------------------------- independent signers
# Each returns the headers the provider would send for ``body`` signed with
# ``secret`` at Unix time ``ts``, following the provider's documentation.


def github_headers(secret: str, body: bytes, ts: int) -> dict[str, str]:
    return {
        "X-Hub-Signature-256": "sha256=" + _hex(secret.encode(), body),
        "X-GitHub-Delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
        "Content-Type": "application/json",
    }


def stripe_headers(secret: str, body: bytes, ts: int) -> dict[str, str]:
    # Stripe: HMAC-SHA256 keyed with the whole whsec_... string over "{t}.{body}".
    return {"Stripe-Signature": f"t={ts},v1={_hex(secret.encode(), f'{ts}.'.encode() + body)}"}


def standard_headers(secret: str, body: bytes, ts: int) -> dict[str, str]:
    # Standard Webhooks: the key is the base64 after "whsec_"; base64 HMAC-SHA256 over
    # "{id}.{timestamp}.{body}".
    key = base64.b64decode(secret.removeprefix("whsec_"))
    msg_id = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": "v1," + _b64(key, f"{msg_id}.{ts}.".encode() + body),
    }


def slack_headers(secret: str, body: bytes, ts: int) -> dict[str, str]:
    return {
        "X-Slack-Request-Timestamp": str(ts),
        "X-Slack-Signature": "v0=" + _hex(secret.encode(), f"v0:{ts}:".encode() + body),
    }


def hmac_headers(secret: str, body: bytes, ts: int) -> dict[str, str]:
    # The generic preset as declared in HOOKS["hmac"]: sha512, base64, "{timestamp}.{body}".
    return {
        "X-Timestamp": str(ts),
        "X-Signature": _b64(secret.encode(), f"{ts}.".encode() + body, "sha512"),
    }


def token_headers(secret: str, body: bytes, ts: int) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


SIGNERS: dict[str, Callable[[str, bytes, int], dict[str, str]]] = {
    "github": github_headers,
    "stripe": stripe_headers,
    "standard": standard_headers,
    "slack": slack_headers,
    "hmac": hmac_headers,
    "token": token_headers,
}
HOOKS = {
    "github": Webhook("gh", verify="github", secret=["env:NEW", "env:OLD"]),
    "stripe": Webhook("stripe", verify="stripe", secret=["env:NEW", "env:OLD"]),
    "standard": Webhook("std", verify="standard", secret=["env:NEW", "env:OLD"]),
    "slack": Webhook("slack", verify="slack", secret=["env:NEW", "env:OLD"]),
    "hmac": Webhook(
        "generic",
        verify="hmac",
        secret=["env:NEW", "env:OLD"],
        algorithm="sha512",
        encoding="base64",
        timestamp_header="X-Timestamp",
    ),
    "token": Webhook("tok", verify="token", secret=["env:NEW", "env:OLD"]),
}
SIGNED_HEADER = {
    "github": "X-Hub-Signature-256",
    "stripe": "Stripe-Signature",
    "standard": "webhook-signature",
    "slack": "X-Slack-Signature",
    "hmac": "X-Signature",
    "token": "Authorization",
}
TIMED = ["stripe", "standard", "slack", "hmac"]
TIME_HEADER = {
    "standard": "webhook-timestamp",
    "slack": "X-Slack-Request-Timestamp",
    "hmac": "X-Timestamp",
}


def check(
    preset: str,
    headers: dict[str, str],
    body: bytes = BODY,
    secrets: list[str] | None = None,
    now: float | datetime = NOW,
) -> Verified:
    return verify(HOOKS[preset], headers, body, secrets or [NEW], now)


def rejected(preset: str, headers: dict[str, str], body: bytes = BODY, **kw: Any) -> str:
    with pytest.raises(SignatureError) as exc:
        check(preset, headers, body, **kw)
    reason = str(exc.value)
    for secret in (NEW, OLD, NEW.removeprefix("whsec_")):
        assert secret not in reason
    assert BODY.decode() not in reason and "order.created" not in reason
    return reason


def with_time(preset: str, headers: dict[str, str], ts: int) -> dict[str, str]:
    """The same headers with only the signed time changed (signature left as it was)."""
    changed = dict(headers)
    if preset == "stripe":
        changed["Stripe-Signature"] = changed["Stripe-Signature"].replace(f"t={NOW}", f"t={ts}")
    else:
        changed[TIME_HEADER[preset]] = str(ts)
    return changed


# ------------------------------------------------------------- published examples


def test_github_accepts_its_published_example() -> None:
    # docs.github.com "Validating webhook deliveries", "Testing the webhook payload validation".
    headers = {
        "X-Hub-Signature-256": "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    }
    verified = verify(
        HOOKS["github"], headers, b"Hello, World!", ["It's a Secret to Everybody"], NOW
    )
    assert verified == Verified("github", delivery_id=None, signed_at=None, secret_index=0)
    with pytest.raises(SignatureError, match="signature does not match"):
        verify(HOOKS["github"], headers, b"Hello, World?", ["It's a Secret to Everybody"], NOW)


SLACK_BODY = (
    b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow"
    b"&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner"
    b"&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com"
    b"%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN"
    b"&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
)


def test_slack_accepts_its_published_example() -> None:
    # api.slack.com "Verifying requests from Slack", the worked example.
    headers = {
        "X-Slack-Request-Timestamp": "1531420618",
        "X-Slack-Signature": "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503",
    }
    secret = "8f742231b10e8888abcd99yyyzzz85a5"
    verified = verify(HOOKS["slack"], headers, SLACK_BODY, [secret], 1531420618 + 30)
    assert verified.signed_at == datetime(2018, 7, 12, 18, 36, 58, tzinfo=UTC)
    assert verified.delivery_id is None
    with pytest.raises(SignatureError, match="300 s tolerance"):
        verify(HOOKS["slack"], headers, SLACK_BODY, [secret], 1531420618 + 301)


def test_standard_webhooks_accepts_the_published_test_vector() -> None:
    # The test vector of the Standard Webhooks reference libraries (standard-webhooks/libraries).
    headers = {
        "webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
        "webhook-timestamp": "1614265330",
        "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
    }
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    verified = verify(HOOKS["standard"], headers, b'{"test": 2432232314}', [secret], 1614265330)
    assert verified.delivery_id == "msg_p5jXN8AQM9LWM0D4loKWxJek"
    assert verified.signed_at == datetime.fromtimestamp(1614265330, UTC)
    with pytest.raises(SignatureError, match="signature does not match"):
        verify(HOOKS["standard"], headers, b'{"test":2432232314}', [secret], 1614265330)


# ------------------------------------------------------------- every preset


@pytest.mark.parametrize("preset", SIGNERS)
def test_a_delivery_signed_with_the_secret_is_accepted(preset: str) -> None:
    verified = check(preset, SIGNERS[preset](NEW, BODY, NOW))
    assert verified.preset == preset
    assert verified.secret_index == 0


@pytest.mark.parametrize("preset", SIGNERS)
def test_a_delivery_signed_with_another_secret_is_rejected(preset: str) -> None:
    headers = SIGNERS[preset](OLD, BODY, NOW)
    reason = rejected(preset, headers)
    assert reason == ("token does not match" if preset == "token" else "signature does not match")


@pytest.mark.parametrize("preset", SIGNERS)
def test_a_delivery_without_its_signature_header_is_rejected(preset: str) -> None:
    headers = SIGNERS[preset](NEW, BODY, NOW)
    del headers[SIGNED_HEADER[preset]]
    assert rejected(preset, headers).startswith("missing ")


@pytest.mark.parametrize("preset", [p for p in SIGNERS if p != "token"])
def test_a_re_serialised_body_is_rejected(preset: str) -> None:
    headers = SIGNERS[preset](NEW, BODY, NOW)
    same_json = json.dumps(json.loads(BODY), indent=2).encode()
    assert json.loads(same_json) == json.loads(BODY)
    assert rejected(preset, headers, same_json) == "signature does not match"


@pytest.mark.parametrize("preset", SIGNERS)
def test_header_names_are_matched_whatever_their_case(preset: str) -> None:
    headers = SIGNERS[preset](NEW, BODY, NOW)
    assert check(preset, {k.upper(): v for k, v in headers.items()}).preset == preset
    assert check(preset, {k.lower(): v for k, v in headers.items()}).preset == preset


@pytest.mark.parametrize("preset", SIGNERS)
def test_during_a_rotation_both_secrets_are_accepted(preset: str) -> None:
    new = check(preset, SIGNERS[preset](NEW, BODY, NOW), secrets=[NEW, OLD])
    old = check(preset, SIGNERS[preset](OLD, BODY, NOW), secrets=[NEW, OLD])
    assert (new.secret_index, old.secret_index) == (0, 1)
    rejected(preset, SIGNERS[preset](OLD, BODY, NOW), secrets=[NEW])


@pytest.mark.parametrize("preset", SIGNERS)
def test_the_secrets_come_from_the_environment(
    preset: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEW", f"{NEW}\n")
    monkeypatch.setenv("OLD", OLD)
    secrets = HOOKS[preset].resolve_secrets()
    assert secrets == [NEW, OLD]
    assert check(preset, SIGNERS[preset](OLD, BODY, NOW), secrets=secrets).secret_index == 1


@pytest.mark.parametrize("preset", SIGNERS)
def test_an_unset_secret_variable_is_a_configuration_error_not_a_bad_signature(
    preset: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEW", NEW)
    monkeypatch.delenv("OLD", raising=False)
    with pytest.raises(SecretConfigError) as exc:
        HOOKS[preset].resolve_secrets()
    assert not isinstance(exc.value, SignatureError)
    assert "environment variable OLD is not set" in str(exc.value)
    assert NEW not in str(exc.value)
    with pytest.raises(SecretConfigError, match="OLD is not set"):
        HOOKS[preset].resolve_secrets({"NEW": NEW, "OLD": "  "})


@pytest.mark.parametrize("preset", SIGNERS)
def test_no_secret_at_all_is_a_configuration_error(preset: str) -> None:
    with pytest.raises(SecretConfigError, match="no secret"):
        verify(HOOKS[preset], SIGNERS[preset](NEW, BODY, NOW), BODY, [], NOW)
    with pytest.raises(TypeError, match="list"):
        verify(HOOKS[preset], SIGNERS[preset](NEW, BODY, NOW), BODY, NEW, NOW)


# ------------------------------------------------------------- signed time


@pytest.mark.parametrize("preset", TIMED)
def test_a_tampered_timestamp_breaks_the_signature(preset: str) -> None:
    headers = with_time(preset, SIGNERS[preset](NEW, BODY, NOW), NOW + 1)
    assert rejected(preset, headers, now=NOW + 1) == "signature does not match"


@pytest.mark.parametrize("preset", TIMED)
def test_a_timestamp_older_than_the_tolerance_is_rejected(preset: str) -> None:
    headers = SIGNERS[preset](NEW, BODY, NOW)
    assert check(preset, headers, now=NOW + 300).signed_at == datetime.fromtimestamp(NOW, UTC)
    reason = rejected(preset, headers, now=NOW + 301)
    assert reason == "timestamp 301 s old, outside the 300 s tolerance"


@pytest.mark.parametrize("preset", TIMED)
def test_a_timestamp_too_far_in_the_future_is_rejected(preset: str) -> None:
    headers = SIGNERS[preset](NEW, BODY, NOW)
    assert check(preset, headers, now=NOW - 300).preset == preset
    reason = rejected(preset, headers, now=NOW - 301)
    assert reason == "timestamp 301 s in the future, outside the 300 s tolerance"


@pytest.mark.parametrize("preset", TIMED)
def test_a_timestamp_that_is_not_a_time_is_rejected(preset: str) -> None:
    headers = SIGNERS[preset](NEW, BODY, NOW)
    if preset == "stripe":
        headers["Stripe-Signature"] = headers["Stripe-Signature"].replace(f"t={NOW}", "t=soon")
    else:
        headers[TIME_HEADER[preset]] = "soon"
    assert "is not a Unix time" in rejected(preset, headers)


@pytest.mark.parametrize("preset", TIMED)
def test_the_tolerance_can_be_declared(preset: str) -> None:
    base = HOOKS[preset]
    hook = Webhook(
        base.name,
        verify=preset,
        secret="env:NEW",
        algorithm=base.algorithm,
        encoding=base.encoding,
        timestamp_header=base.timestamp_header,
        tolerance=30,
    )
    headers = SIGNERS[preset](NEW, BODY, NOW)
    assert verify(hook, headers, BODY, [NEW], NOW + 30).preset == preset
    with pytest.raises(SignatureError, match="31 s old, outside the 30 s tolerance"):
        verify(hook, headers, BODY, [NEW], NOW + 31)


def test_now_may_be_an_aware_datetime_but_not_a_naive_one() -> None:
    headers = slack_headers(NEW, BODY, NOW)
    assert check("slack", headers, now=datetime.fromtimestamp(NOW + 10, UTC)).preset == "slack"
    with pytest.raises(ValueError, match="aware"):
        check("slack", headers, now=datetime(2023, 11, 14, 22, 13, 20))


# ------------------------------------------------------------- wrong algorithm or version


def test_github_rejects_another_algorithm_prefix() -> None:
    headers = {"X-Hub-Signature-256": "sha1=" + _hex(NEW.encode(), BODY, "sha1")}
    assert rejected("github", headers) == (
        "wrong algorithm prefix 'sha1='; GitHub signs with sha256="
    )
    bare = {"X-Hub-Signature-256": _hex(NEW.encode(), BODY)}
    assert rejected("github", bare) == "X-Hub-Signature-256 header does not start with sha256="


def test_github_rejects_the_legacy_sha1_header_alone() -> None:
    headers = {"X-Hub-Signature": "sha1=" + _hex(NEW.encode(), BODY, "sha1")}
    assert "legacy sha1 X-Hub-Signature alone is not accepted" in rejected("github", headers)


def test_github_reports_its_delivery_id_which_it_does_not_sign() -> None:
    headers = github_headers(NEW, BODY, NOW)
    assert check("github", headers).delivery_id == "72d3162e-cc78-11e3-81ab-4c9367dc0958"
    headers["X-GitHub-Delivery"] = "not\tone id"
    assert rejected("github", headers) == "X-GitHub-Delivery header is not a delivery id"


def test_slack_rejects_another_version() -> None:
    headers = slack_headers(NEW, BODY, NOW)
    headers["X-Slack-Signature"] = headers["X-Slack-Signature"].replace("v0=", "v1=")
    assert rejected("slack", headers) == "wrong version prefix 'v1='; Slack signs with v0="


def test_stripe_needs_a_v1_signature_and_a_time() -> None:
    v1 = _hex(NEW.encode(), f"{NOW}.".encode() + BODY)
    only_v0 = {"Stripe-Signature": f"t={NOW},v0={v1}"}
    assert "no v1= signature" in rejected("stripe", only_v0)
    no_time = {"Stripe-Signature": f"v1={v1}"}
    assert rejected("stripe", no_time) == "Stripe-Signature has no t= timestamp"


def test_stripe_accepts_any_of_several_v1_signatures() -> None:
    good = _hex(OLD.encode(), f"{NOW}.".encode() + BODY)
    forged = _hex(b"someone else", f"{NOW}.".encode() + BODY)
    headers = {"Stripe-Signature": f"t={NOW},v1={forged},v1=nothex,v1={good},v0={forged}"}
    verified = check("stripe", headers, secrets=[NEW, OLD])
    assert verified.secret_index == 1
    assert verified.delivery_id == "evt_1NQ"  # the signed event id from the body
    headers = {"Stripe-Signature": f"t={NOW},v1={forged}"}
    assert rejected("stripe", headers, secrets=[NEW, OLD]) == "signature does not match"


def test_stripe_without_a_json_id_has_no_delivery_id() -> None:
    body = b"not json"
    assert check("stripe", stripe_headers(NEW, body, NOW), body).delivery_id is None


def test_standard_webhooks_accepts_any_listed_signature_and_ignores_other_versions() -> None:
    headers = standard_headers(OLD, BODY, NOW)
    forged = base64.b64encode(b"x" * 32).decode()
    headers["webhook-signature"] = f"v1a,{forged} v1,{forged} " + headers["webhook-signature"]
    assert check("standard", headers, secrets=[NEW, OLD]).secret_index == 1
    headers["webhook-signature"] = headers["webhook-signature"].replace("v1,", "v2,")
    assert rejected("standard", headers) == "webhook-signature has no v1,<base64> signature"


def test_standard_webhooks_reads_svix_header_names_too() -> None:
    headers = {
        k.replace("webhook-", "svix-"): v for k, v in standard_headers(NEW, BODY, NOW).items()
    }
    assert check("standard", headers).delivery_id == "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"
    headers["svix-timestamp"] = str(NOW + 1)
    assert rejected("standard", headers, now=NOW + 1) == "signature does not match"


def test_standard_webhooks_signs_the_message_id() -> None:
    headers = standard_headers(NEW, BODY, NOW)
    headers["webhook-id"] = "msg_another"
    assert rejected("standard", headers) == "signature does not match"
    del headers["webhook-id"]
    assert rejected("standard", headers) == "missing webhook-id header"


def test_standard_webhooks_keys_must_be_whsec_base64() -> None:
    headers = standard_headers(NEW, BODY, NOW)
    with pytest.raises(SecretConfigError) as exc:
        check("standard", headers, secrets=[NEW, "whsec_***not base64***"])
    assert str(exc.value) == (
        "webhook 'std': secret 2 is not a Standard Webhooks key (whsec_ followed by base64)"
    )
    bare = NEW.removeprefix("whsec_")
    assert check("standard", headers, secrets=[bare]).preset == "standard"


# ------------------------------------------------------------- generic hmac


@pytest.mark.parametrize("algorithm", ["sha1", "sha256", "sha512"])
@pytest.mark.parametrize("encoding", ["hex", "base64"])
def test_the_generic_preset_reads_its_declared_algorithm_and_encoding(
    algorithm: str, encoding: str
) -> None:
    hook = Webhook(
        "shop",
        secret="env:S",
        header="X-Shop-Hmac",
        algorithm=algorithm,
        encoding=encoding,
        prefix=f"{algorithm}=",
    )
    mac = hmac.new(b"s3cret", BODY, algorithm)
    sent = mac.hexdigest() if encoding == "hex" else base64.b64encode(mac.digest()).decode()
    headers = {"X-Shop-Hmac": f"{algorithm}={sent}"}
    assert verify(hook, headers, BODY, ["s3cret"], NOW) == Verified("hmac")
    with pytest.raises(SignatureError, match="signature does not match"):
        verify(hook, headers, BODY + b" ", ["s3cret"], NOW)
    other = "sha1" if algorithm != "sha1" else "sha256"
    with pytest.raises(SignatureError) as exc:
        verify(hook, {"X-Shop-Hmac": f"{other}={sent}"}, BODY, ["s3cret"], NOW)
    assert str(exc.value) == (
        f"wrong algorithm prefix '{other}='; this webhook expects {algorithm}="
    )


def test_the_generic_preset_defaults_to_hex_sha256_in_x_signature() -> None:
    hook = Webhook("plain", secret="env:S")
    headers = {"x-signature": _hex(b"k", BODY)}
    assert verify(hook, headers, BODY, ["k"], NOW).signed_at is None
    with pytest.raises(SignatureError, match="X-Signature header is not a hex signature"):
        verify(hook, {"X-Signature": "zz"}, BODY, ["k"], NOW)


def test_the_generic_preset_signs_the_declared_template_with_an_iso_time() -> None:
    hook = Webhook(
        "zen",
        secret="env:S",
        header="X-Sig",
        encoding="base64",
        timestamp_header="X-Sig-Timestamp",
        signed="{timestamp}{body}",
    )
    stamp = "2023-11-14T22:13:20Z"
    headers = {"X-Sig": _b64(b"k", stamp.encode() + BODY), "X-Sig-Timestamp": stamp}
    verified = verify(hook, headers, BODY, ["k"], NOW + 5)
    assert verified.signed_at == datetime.fromtimestamp(NOW, UTC)
    with pytest.raises(SignatureError, match="301 s old"):
        verify(hook, headers, BODY, ["k"], NOW + 301)
    headers["X-Sig-Timestamp"] = "2023-11-14T22:13:20"  # no zone: ambiguous
    with pytest.raises(SignatureError, match="with a zone"):
        verify(hook, headers, BODY, ["k"], NOW)


# ------------------------------------------------------------- shared token


def test_the_token_preset_takes_a_bearer_token_or_x_hub_token() -> None:
    assert check("token", {"authorization": f"bearer {NEW}"}).secret_index == 0
    assert check("token", {"X-Hub-Token": NEW}).secret_index == 0
    assert rejected("token", {"X-Hub-Token": NEW + "x"}) == "token does not match"
    assert rejected("token", {"Authorization": f"Basic {NEW}"}) == (
        "Authorization header is not a Bearer token"
    )
    assert rejected("token", {}) == "missing Authorization: Bearer or X-Hub-Token header"


def test_the_token_preset_reads_a_declared_header_and_prefix() -> None:
    gitlab = Webhook("gl", verify="token", secret="env:T", header="X-Gitlab-Token")
    assert verify(gitlab, {"x-gitlab-token": "tok"}, b"", ["tok"], NOW).preset == "token"
    with pytest.raises(SignatureError, match="missing X-Gitlab-Token header"):
        verify(gitlab, {"Authorization": "Bearer tok"}, b"", ["tok"], NOW)
    auth = Webhook("auth", verify="token", secret="env:T", header="Authorization")
    assert verify(auth, {"Authorization": "Bearer tok"}, b"", ["tok"], NOW).preset == "token"
    keyed = Webhook("key", verify="token", secret="env:T", header="X-Api-Key", prefix="Key ")
    with pytest.raises(SignatureError, match="does not start with 'Key '"):
        verify(keyed, {"X-Api-Key": "tok"}, b"", ["tok"], NOW)


# ------------------------------------------------------------- declarations


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"verify": "github", "header": "X-Sig"},
            "verify='github' does not read header=; drop it (it applies to verify='hmac' or 'token')",
        ),
        (
            {"verify": "github", "tolerance": 60},
            "verify='github' does not read tolerance=",
        ),
        ({"verify": "slack", "algorithm": "sha1"}, "verify='slack' does not read algorithm="),
        ({"algorithm": "md5"}, "algorithm='md5'; choose one of sha1, sha256, sha512"),
        ({"encoding": "base32"}, "encoding='base32'; choose one of hex, base64"),
        ({"header": "X Sig"}, "header='X Sig' is not an HTTP header name"),
        ({"tolerance": 60}, "tolerance= needs timestamp_header="),
        ({"verify": "stripe", "tolerance": 0}, "must be between 0 and 86400 seconds"),
        ({"verify": "stripe", "tolerance": "5m"}, "tolerance= is a number of seconds"),
        ({"signed": "{body}.{body}"}, "signed= must hold {body} exactly once"),
        ({"signed": "{id}.{body}"}, "may only use {body} and {timestamp}"),
        ({"signed": "{timestamp}.{body}"}, "name its header with timestamp_header="),
        (
            {"timestamp_header": "X-T", "signed": "{body}"},
            "must include {timestamp} when timestamp_header= is set",
        ),
        ({"secret": []}, "secret=[] names no secret"),
        ({"secret": ["env:A", "env:A"]}, "secret lists a variable twice"),
    ],
)
def test_a_wrong_webhook_declaration_names_the_fix(options: dict[str, Any], message: str) -> None:
    options.setdefault("secret", "env:S")
    with pytest.raises(FlowDefinitionError) as exc:
        Webhook("hook", **options)
    assert message in str(exc.value)
    assert str(exc.value).startswith(("Webhook 'hook': ", "Webhook verify"))


def test_a_secret_written_in_code_is_refused_without_repeating_it() -> None:
    with pytest.raises(FlowDefinitionError) as exc:
        Webhook("hook", verify="github", secret="hunter2-the-real-secret")
    assert "is not 'env:NAME'" in str(exc.value)
    assert "hunter2" not in str(exc.value)
    with pytest.raises(FlowDefinitionError, match="secret 2 of 2 is not 'env:NAME'"):
        Webhook("hook", verify="github", secret=["env:NEW", "hunter2"])


def test_a_rotation_list_is_kept_newest_first_and_the_declaration_stays_hashable() -> None:
    hook = Webhook("hook", verify="github", secret=["env:NEW", "env:OLD"])
    assert hook.secret == ("env:NEW", "env:OLD")
    assert hook.secret_refs() == ("env:NEW", "env:OLD")
    assert hash(hook) == hash(Webhook("hook", verify="github", secret=("env:NEW", "env:OLD")))
    assert hook.resolve_secrets({"NEW": "n", "OLD": "o"}) == ["n", "o"]
