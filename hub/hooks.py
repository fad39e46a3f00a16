"""Webhook intake, deliveries and replay: the service behind ``POST /hooks/{name}``.

::

    result = intake(hub, "orders", headers, body, source="203.0.113.9")
    # Result(status=202, delivery_id=..., run_id=..., duplicate=False)

What :func:`intake` does, in order, and what each refusal is (``Refused``)::

    no hook of that name                              404  not recorded
    body over the hook's max_body                     413  too_large
    not JSON (application/json, application/*+json;   415  content_type
      Slack's form posts for verify="slack")
    signature missing or wrong, timestamp out of      401  signature / timestamp
      the window (nothing stored, the body never logged)
    secret unset here (the operator's to fix)         503  secret_config
    body not JSON though signed                       400  malformed
    the flow refuses the input (field errors)         422  invalid_input
    database unavailable                              503  not recorded (Retry-After)

A refusal stores nothing of the request: one ``WebhookRejection`` row per
hook, reason and minute counts it (no body, no headers), written in its own
short transaction, best effort. An accepted delivery is stored together with
the run it starts, in ONE transaction, before the answer; the first step is
published after the commit (a lost publish is re-sent by the scheduler's
tick). So a 202 always means stored, and a 503 means nothing was.

**De-duplication.** ``(hook, delivery_key)`` is unique. The key is the
sender's signed delivery id (Standard Webhooks' ``webhook-id``, Stripe's
event id), else a SHA-256 of the signed time and the body, else of the body
alone. GitHub's ``X-GitHub-Delivery`` is not covered by its signature, so a
captured request could be replayed under a new id: GitHub deliveries are
keyed by the body's hash (a redelivery carries the same body). A sender
without a delivery id or a signed time must therefore make each event's body
unique (an event id or a time in it), or repeats are taken for duplicates. A
duplicate answers 200 with the first delivery's run and bumps its count.

**Replay.** :func:`replay` starts a new run from a stored delivery, through
the hook's current ``input`` mapper and the flow's current model, as a new
delivery row (status ``replayed``, key ``replay:<id>:<n>``) written with
its run and an audit entry in one transaction.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl

from pydantic import BaseModel, TypeAdapter, ValidationError
from sqlalchemy import bindparam, func, select, update
from sqlalchemy import insert as sa_insert
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from hub.errors import HubError, InvalidInput, SignatureError
from hub.flow import Flow
from hub.models import Base, Run, WebhookDelivery, WebhookRejection, new_id
from hub.runs import create_run, run_rows
from hub.signatures import SecretConfigError, verify
from hub.triggers import Webhook

log = logging.getLogger("hub.hooks")

#: Seconds a sender may ask the intake to wait for the run (``?wait=`` / ``Prefer: wait=``).
MAX_WAIT = 30.0
#: Seconds a sender is asked to wait before retrying when the database is away.
RETRY_AFTER = 30
#: Headers kept with a delivery: at most this many, each value at most this long.
MAX_HEADERS, MAX_HEADER_VALUE = 100, 1000
#: Header names never kept: signatures, tokens, cookies and anything secret-looking.
_SECRET_WORDS = ("signature", "token", "secret", "auth", "cookie", "key", "password", "session")
STORE_ATTEMPTS = 3


class Refused(HubError):
    """The intake refuses a request: ``status``, a short ``reason`` code and a safe ``detail``.

    ``detail`` never holds the body, a header's value or a secret. ``record``
    says whether the refusal is counted in ``webhook_rejections``.
    """

    def __init__(
        self,
        status: int,
        reason: str,
        detail: str,
        *,
        errors: list[dict[str, Any]] | None = None,
        record: bool = True,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.reason = reason
        self.detail = detail
        self.errors = errors or []
        self.record = record
        self.retry_after = retry_after


class DeliveryNotFound(HubError, LookupError):
    """No stored delivery of that id (or none the asker may see)."""


@dataclass(frozen=True)
class Result:
    """An accepted delivery: 202 when it started a run, 200 for a duplicate."""

    delivery_id: str
    run_id: str | None
    duplicate: bool = False
    dispatch: list[tuple[str, str, float | None]] = field(default_factory=list, repr=False)

    @property
    def status(self) -> int:
        return 200 if self.duplicate else 202


# ------------------------------------------------------------------- lookup
def declared(registry: Any) -> list[tuple[Flow, Webhook]]:
    """Every webhook the loaded flows declare, with its flow, by hook name."""
    found = [(f, t) for f in registry for t in f.triggers if isinstance(t, Webhook)]
    return sorted(found, key=lambda pair: pair[1].name)


def find(registry: Any, name: str) -> tuple[Flow, Webhook]:
    """The flow and declaration of hook ``name``; ``Refused`` 404 when there is none.

    ``Registry.check()`` refuses two flows declaring one hook name.
    """
    for flow, hook in declared(registry):
        if hook.name == name:
            return flow, hook
    raise Refused(404, "unknown", f"no webhook named {name!r}", record=False)


# ------------------------------------------------------------ request checks
def check_length(hook: Webhook, content_length: str | None) -> None:
    """413 at once when the declared ``Content-Length`` is over the hook's ``max_body``."""
    if content_length is None:
        return
    try:
        size = int(content_length)
    except ValueError:
        raise Refused(400, "malformed", "Content-Length is not a number") from None
    if size > hook.max_body:
        raise too_large(hook)


def too_large(hook: Webhook) -> Refused:
    return Refused(413, "too_large", f"body over this webhook's limit of {hook.max_body} bytes")


def content_kind(hook: Webhook, content_type: str | None) -> str:
    """``json``, or ``form`` (Slack's form posts); ``Refused`` 415 for anything else."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    ):
        return "json"
    if media == "application/x-www-form-urlencoded" and hook.verify == "slack":
        return "form"
    accepted = "application/json" + (
        " or application/x-www-form-urlencoded" if hook.verify == "slack" else ""
    )
    raise Refused(415, "content_type", f"Content-Type must be {accepted}")


def parse(kind: str, body: bytes) -> Any:
    """The payload: the JSON document, or a Slack form's ``payload`` JSON (else its fields)."""
    if kind == "form":
        try:
            fields = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
        except (UnicodeDecodeError, ValueError):
            raise Refused(400, "malformed", "form body is not UTF-8 text") from None
        if "payload" not in fields:
            return fields
        body = fields["payload"].encode()
    try:
        return json.loads(body, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno}"
        raise Refused(400, "malformed", f"body is not valid JSON ({where})") from None
    except UnicodeDecodeError:
        raise Refused(400, "malformed", "body is not UTF-8 JSON text") from None
    except (ValueError, RecursionError):
        raise Refused(400, "malformed", "body is not JSON this hub accepts") from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def map_input(flow: Flow, hook: Webhook, payload: Any) -> Any:
    """The run's input: the hook's ``input`` mapper applied, checked by the flow; else 422."""
    data = payload
    mapper = hook.input
    if mapper is not None:
        try:
            if isinstance(mapper, type):  # a pydantic model (or dataclass, TypedDict)
                adapter: TypeAdapter[Any] = TypeAdapter(mapper)
                data = adapter.dump_python(adapter.validate_python(payload), mode="json")
            else:
                data = mapper(payload)
        except ValidationError as exc:
            errors = [
                {"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()
            ]
            raise Refused(422, "invalid_input", _first(errors), errors=errors) from None
        except Exception as exc:
            # a payload the mapper did not expect; the message may quote the body, so only the kind
            log.warning("webhook %r: its input mapper raised %s", hook.name, type(exc).__name__)
            raise Refused(
                422,
                "invalid_input",
                f"the hook's input mapper refused the payload ({type(exc).__name__})",
            ) from None
        if isinstance(data, BaseModel):
            data = data.model_dump(mode="json")
    try:
        return flow.validate_input(data)
    except InvalidInput as exc:
        errors = [{k: v for k, v in e.items() if k in ("loc", "msg", "type")} for e in exc.errors]
        errors = json.loads(json.dumps(errors, default=str))
        raise Refused(
            422, "invalid_input", _first(errors) if errors else str(exc), errors=errors
        ) from None


def _first(errors: list[dict[str, Any]]) -> str:
    if not errors:
        return "the input is not valid for the flow"
    where = ".".join(str(p) for p in errors[0].get("loc", ())) or "(root)"
    return f"input {where}: {errors[0].get('msg')}"


def delivery_key(
    preset: str, delivery_id: str | None, signed_at: datetime | None, body: bytes
) -> str:
    """The de-duplication key of a verified delivery (see the module docstring)."""
    if delivery_id and preset != "github":
        if len(delivery_id) <= 190:
            return f"id:{delivery_id}"
        return "id-sha256:" + hashlib.sha256(delivery_id.encode()).hexdigest()
    digest = hashlib.sha256()
    if signed_at is not None and preset != "github":
        digest.update(signed_at.isoformat().encode() + b"\n")
    digest.update(body)
    return "sha256:" + digest.hexdigest()


def kept_headers(hook: Webhook, headers: Mapping[str, str]) -> dict[str, str]:
    """The headers stored with a delivery: no signature, token, cookie or secret-looking one."""
    drop = {hook.header.lower()} if hook.header else set()
    stamp = hook.timestamp_header.lower() if hook.timestamp_header else None
    kept: dict[str, str] = {}
    for name, value in headers.items():
        low = name.lower()
        if low != stamp and (low in drop or any(word in low for word in _SECRET_WORDS)):
            continue
        kept[low] = value[:MAX_HEADER_VALUE]
        if len(kept) >= MAX_HEADERS:
            break
    return kept


# ------------------------------------------------------------------- intake
def intake(
    hub: Any,
    name: str,
    headers: Mapping[str, str],
    body: bytes,
    source: str | None = None,
    *,
    now: float | None = None,
    dispatch: bool = True,
) -> Result:
    """Verify, parse, map and store one delivery to hook ``name``; publish its first step.

    Returns a :class:`Result` (202 or a 200 duplicate); raises :class:`Refused`
    after counting the refusal in ``webhook_rejections`` (best effort). The
    first step is published after the commit and before the answer (a lost
    publish is re-sent by the scheduler's tick); with ``dispatch=False`` the
    caller publishes (:func:`publish`) when it likes.
    """
    try:
        flow, hook = find(hub.registry, name)
        result = _intake(
            hub, flow, hook, headers, body, source, time.time() if now is None else now
        )
    except Refused as exc:
        if exc.record:
            record_rejection(hub, name, exc, source)
        raise
    if result.dispatch and dispatch:
        publish(hub, result)
    return result


def _intake(
    hub: Any,
    flow: Flow,
    hook: Webhook,
    headers: Mapping[str, str],
    body: bytes,
    source: str | None,
    now: float,
) -> Result:
    if len(body) > hook.max_body:
        raise too_large(hook)
    lowered = {k.lower(): v for k, v in headers.items()}
    kind = content_kind(hook, lowered.get("content-type"))
    try:
        secrets = hook.resolve_secrets()
        verified = verify(hook, headers, body, secrets, now=now)
    except SecretConfigError as exc:
        log.error("%s", exc)  # names the variable, never its value
        raise Refused(
            503,
            "secret_config",
            f"webhook {hook.name!r} cannot verify deliveries: its secret is not configured "
            "on this hub; the operator must set it",
            retry_after=RETRY_AFTER,
        ) from None
    except SignatureError as exc:
        reason = "timestamp" if str(exc).startswith("timestamp") else "signature"
        raise Refused(401, reason, str(exc)) from None
    data = map_input(flow, hook, parse(kind, body))
    key = delivery_key(verified.preset, verified.delivery_id, verified.signed_at, body)
    row = {
        "hook": hook.name,
        "flow": flow.name,
        "delivery_key": key,
        "verified_by": f"{verified.preset}#{verified.secret_index + 1}",
        "content_type": lowered.get("content-type", "")[:200] or None,
        "size": len(body),
        "headers": kept_headers(hook, headers),
        "body": body,
        "source": (source or None) and source[:64],
    }
    return store_delivery(hub, flow, data, row)


def store_delivery(hub: Any, flow: Flow, data: Any, row: dict[str, Any]) -> Result:
    """Insert the delivery and its run in one transaction, or find the delivery already there."""
    engine = hub.engine

    trigger = f"webhook:{row['hook']}"

    def insert(s: Session) -> Result:
        now = engine.clock()
        if s.get_bind().dialect.name == "postgresql":
            # one round trip: the run's rows as data-modifying CTEs of the delivery's INSERT
            started, dispatch, rows = run_rows(flow, data, trigger=trigger, now=now)
            delivery_id = new_id()
            fields: dict[str, Any] = {"status": "accepted", "duplicates": 0}  # Core: no defaults
            fields.update(row, id=delivery_id, run_id=started.run_id, received_at=now)
            rows["webhook_deliveries"] = fields
            params = {
                f"{table}_{k}": v for table, values in rows.items() for k, v in values.items()
            }
            shape = tuple((table, tuple(values)) for table, values in rows.items())
            # a duplicate fails here, on the unique (hook, delivery_key), and nothing stays
            s.connection().execute(_one_trip(shape), params)
            return Result(delivery_id, started.run_id, dispatch=dispatch)
        started, dispatch = create_run(engine, s, flow, data, trigger=trigger, key=None)
        s.flush()  # the run before the delivery that names it
        delivery = WebhookDelivery(id=new_id(), run_id=started.run_id, received_at=now, **row)
        s.add(delivery)
        s.flush()  # a duplicate fails here, on the unique (hook, delivery_key)
        return Result(delivery.id, started.run_id, dispatch=dispatch)

    def duplicate(s: Session) -> Result | None:
        found = s.execute(
            select(WebhookDelivery.id, WebhookDelivery.run_id).where(
                WebhookDelivery.hook == row["hook"],
                WebhookDelivery.delivery_key == row["delivery_key"],
            )
        ).first()
        if found is None:
            return None
        s.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == found.id)
            .values(duplicates=WebhookDelivery.duplicates + 1, last_duplicate_at=engine.clock())
        )
        return Result(found.id, found.run_id, duplicate=True)

    try:
        for _ in range(3):
            try:
                return hub.store.run(insert, attempts=STORE_ATTEMPTS)
            except IntegrityError:
                # the unique index decided: the transaction (and its run) rolled back
                found = hub.store.run(duplicate, attempts=STORE_ATTEMPTS)
                if found is not None:
                    return found
        raise IntegrityError("webhook delivery", None, Exception("no row after a conflict"))
    except SQLAlchemyError as exc:
        log.warning(
            "webhook %r: database unavailable, answered 503: %s", row["hook"], type(exc).__name__
        )
        raise Refused(
            503,
            "database",
            "the hub cannot store deliveries right now; retry later",
            record=False,
            retry_after=RETRY_AFTER,
        ) from None


@functools.cache
def _one_trip(shape: tuple[tuple[str, tuple[str, ...]], ...]) -> Any:
    """One INSERT statement for rows of several tables: the last table's row is the main
    INSERT, the others data-modifying CTEs before it (PostgreSQL checks the foreign keys
    at the end of the statement).

    ``shape`` is ``((table, columns), ...)``; the statement is built once per shape
    with bind parameters named ``<table>_<column>``, so each delivery costs no
    statement building and hits the compiled cache.
    """
    tables = Base.metadata.tables

    def values(table: str, columns: tuple[str, ...]) -> dict[str, Any]:
        cols = tables[table].c
        return {c: bindparam(f"{table}_{c}", type_=cols[c].type) for c in columns}

    *before, (main, columns) = shape
    ctes = [sa_insert(tables[t]).values(values(t, c)).cte(f"new_{t}") for t, c in before]
    return sa_insert(tables[main]).values(values(main, columns)).add_cte(*ctes)


def publish(hub: Any, result: Result) -> None:
    """Hand the new run's first step to a worker; if that fails, the scheduler's tick will."""
    try:
        hub.engine.dispatch(result.dispatch)
    except Exception as exc:
        log.warning(
            "run %s: first step not published (%s); the scheduler's tick publishes it",
            result.run_id,
            type(exc).__name__,
        )


def record_rejection(hub: Any, name: str, refusal: Refused, source: str | None) -> None:
    """Count a refusal for (hook, reason, minute), in its own transaction; never raises."""
    now = hub.engine.clock()
    minute = now.replace(second=0, microsecond=0)
    values = {
        "hook": name[:100],
        "reason": refusal.reason,
        "minute": minute,
        "count": 1,
        "status": refusal.status,
        "last_detail": refusal.detail[:300],
        "last_source": (source or None) and source[:64],
        "last_at": now,
    }

    def work(s: Session) -> None:
        if s.bind is not None and s.bind.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
        stmt = insert(WebhookRejection).values(**values)
        s.execute(
            stmt.on_conflict_do_update(
                index_elements=["hook", "reason", "minute"],
                set_={
                    "count": WebhookRejection.count + 1,
                    "status": stmt.excluded.status,
                    "last_detail": stmt.excluded.last_detail,
                    "last_source": stmt.excluded.last_source,
                    "last_at": stmt.excluded.last_at,
                },
            )
        )

    try:
        with hub.store.transaction() as s:
            work(s)
    except SQLAlchemyError as exc:
        log.warning("webhook %r: rejection not counted (%s)", name, type(exc).__name__)
    log.info("webhook %r refused (%s %s): %s", name, refusal.status, refusal.reason, refusal.detail)


# ------------------------------------------------------------------- replay
def replay(hub: Any, delivery_id: str, by: str) -> Result:
    """Start a new run from a stored delivery's body, as a ``replayed`` delivery row.

    Raises ``DeliveryNotFound``, ``Refused`` 409 when its hook is no longer
    declared, 400/422 when the stored body no longer maps to the flow's input,
    503 when the database is away. Audited as ``webhook.replay`` by ``by``.
    """
    from hub.reviews import audit

    with hub.store.read() as s:
        original = s.get(WebhookDelivery, delivery_id)
        if original is None:
            raise DeliveryNotFound(f"no webhook delivery with id {delivery_id!r}")
        s.expunge(original)
    try:
        flow, hook = find(hub.registry, original.hook)
    except Refused:
        raise Refused(
            409,
            "undeclared",
            f"webhook {original.hook!r} is no longer declared by any flow",
            record=False,
        ) from None
    kind = content_kind(hook, original.content_type) if original.content_type else "json"
    payload = parse(kind, original.body)
    data = map_input(flow, hook, payload)
    engine = hub.engine

    def work(s: Session) -> Result:
        now = engine.clock()
        prefix = f"replay:{original.id}:"
        n = s.scalar(
            select(func.count()).where(
                WebhookDelivery.hook == original.hook,
                WebhookDelivery.delivery_key.startswith(prefix, autoescape=True),
            )
        )
        started, dispatch = create_run(
            engine, s, flow, data, trigger=f"webhook:{hook.name}", key=None
        )
        s.flush()
        row = WebhookDelivery(
            id=new_id(),
            hook=hook.name,
            flow=flow.name,
            delivery_key=f"{prefix}{(n or 0) + 1}",
            run_id=started.run_id,
            status="replayed",
            verified_by=original.verified_by,
            content_type=original.content_type,
            size=original.size,
            headers=original.headers,
            body=original.body,
            source=original.source,
            received_at=now,
        )
        s.add(row)
        s.flush()
        after = {"delivery_id": row.id, "run_id": started.run_id, "hook": hook.name}
        audit(s, by, "webhook.replay", "webhook_delivery", original.id, None, after, now)
        return Result(row.id, started.run_id, dispatch=dispatch)

    for attempt in range(3):
        try:
            result: Result = hub.store.run(work, attempts=STORE_ATTEMPTS)
            break
        except IntegrityError:
            if attempt == 2:
                raise
        except SQLAlchemyError:
            raise Refused(
                503,
                "database",
                "the database is unavailable; retry later",
                record=False,
                retry_after=RETRY_AFTER,
            ) from None
    log.info("webhook delivery %s replayed by %s as %s", delivery_id, by, result.delivery_id)
    publish(hub, result)
    return result


# -------------------------------------------------------------------- wait
def run_state(hub: Any, run_id: str) -> dict[str, Any] | None:
    """The run's status, output and error, read from SQL (None if it is gone)."""
    with hub.store.read() as s:
        row = s.execute(select(Run.status, Run.output, Run.error).where(Run.id == run_id)).first()
    if row is None:
        return None
    return {"status": row.status, "output": row.output, "error": row.error}


def wait_seconds(query: str | None, prefer: str | None) -> float:
    """Seconds to wait for the run: ``?wait=N`` or ``Prefer: wait=N``, capped at ``MAX_WAIT``."""
    value = query
    if value is None and prefer:
        for part in prefer.split(","):
            token, _, arg = part.strip().partition("=")
            if token.strip().lower() == "wait":
                value = arg.strip().strip('"')
    if not value:
        return 0.0
    try:
        seconds = float(value)
    except ValueError:
        raise Refused(400, "malformed", "wait must be a number of seconds", record=False) from None
    if seconds != seconds or seconds < 0:
        raise Refused(400, "malformed", "wait must be a number of seconds", record=False)
    return min(seconds, MAX_WAIT)
