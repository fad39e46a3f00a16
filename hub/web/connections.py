"""Connections over HTTP: the pages and the JSON API, the web side of ``hub connections``.

Operators and admins read and test; reviewers and viewers get 403::

    GET  /connections                  every connection: kind, URL, login, rate limit, and
                                       where it is defined (file, environment, database)
    GET  /connections/{name}           its settings, secret values hidden, and a Test button
    POST /connections/{name}/test      runs the connector's check in a worker thread and
                                       shows the page again with what it said, or why it
                                       failed, and how long it took

Admins also add, change and delete the connections stored in the database::

    GET  /connections?add=1            the form to add one
    POST /connections                  store it: 303 to its page, or 422 with the form again
    GET  /connections/{name}/edit      the form, filled from the stored settings
    POST /connections/{name}/edit      store the change: 303 to its page, or 422
    POST /connections/{name}/delete    remove it (the form's confirm box ticked)

The JSON API takes the same roles (a bearer token, or the session with its
``X-CSRF-Token`` header on the POST)::

    GET  /api/connections              [{...public settings, "source", "defined_in"}]
    GET  /api/connections/{name}       one of them (404 when unknown)
    POST /api/connections/{name}/test  {"name", "ok", "message", "error", "seconds"}

Secret values never leave the server: pages and answers show
:meth:`~hub.connections.ConnectionConfig.public` (``[encrypted]`` for a stored
value, ``env:VAR`` references as written); the form's secret inputs are never
filled, one left blank keeps the stored value, and a form refused with 422
shows every field again but the secrets. A test's message has the
connection's secret values masked. Stores are audited (``connection.create``,
``connection.update``, ``connection.delete``) under the admin's name, with the
names of the secrets set but not their values.

Connections defined in the connections file or the environment are read-only
here (409, saying where to change them). A configuration the hub cannot read
(a malformed file, a secret that does not decrypt) is shown as its message,
with status 503.
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from hub import connections as conn
from hub import models as m
from hub.auth import Login, Principal
from hub.connections import KINDS, NEEDS, SECRET_FIELDS, ConnectionConfig, Connectors
from hub.errors import ConnectionConfigError, HubError
from hub.reviews import audit
from hub.web.pages import render
from hub.web.security import api_role, clock, form_login, page_login, require

log = logging.getLogger("hub.web.connections")

router = APIRouter()
operator = Depends(api_role("operator"))

NOT_FOUND = "There is no connection with this name."
#: Shown instead of a secret value in a test's message.
HIDDEN = "[hidden]"
#: The auth fields each kind of login uses: the form stores these and drops the others.
AUTH_FIELDS: dict[str, tuple[str, ...]] = {
    "none": (),
    "api_key": ("header", "key"),
    "basic": ("username", "password"),
    "bearer": ("token",),
    "oauth2": ("token_url", "client_id", "client_secret", "scope"),
    "salesforce_password": (
        "login_url",
        "client_id",
        "client_secret",
        "username",
        "password",
        "security_token",
    ),
    "salesforce_jwt": ("login_url", "client_id", "username", "private_key"),
    "salesforce_client_credentials": ("login_url", "client_id", "client_secret", "scope"),
    "wsse": ("username", "password", "digest"),
}
#: Auth fields that are neither secret nor a flag: text inputs, filled when editing.
PLAIN_AUTH = ("header", "username", "token_url", "login_url", "client_id", "scope")
NUMBERS = ("timeout", "connect_timeout", "retries", "backoff", "max_wait")
#: Every auth field the form has (the kind aside).
FORM_AUTH = frozenset(name for names in AUTH_FIELDS.values() for name in names)
#: Form fields named like the configuration's own top-level fields.
TOP_FIELDS = ("name", "kind", "url", *NUMBERS, "rate_limit", "allow", "verify", "options")
_PEM = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----(.*?)-----END \1-----", re.DOTALL)


# ------------------------------------------------------------------ reading
def load(hub: Any) -> dict[str, ConnectionConfig]:
    """Every connection the hub knows (file, environment, database); raises
    :class:`ConnectionConfigError` when one of them cannot be read."""
    return conn.load(hub.settings, hub.store)


def defined_in(config: ConnectionConfig, settings: Any) -> str:
    """Where ``config`` comes from: ``file``, ``environment`` or ``database``."""
    if config.source == "database":
        return "database"
    if settings.connections_file and config.source == str(Path(settings.connections_file)):
        return "file"
    return "environment"


def where_to_change(config: ConnectionConfig, settings: Any) -> str:
    """The sentence that says a connection is read-only here, and where to change it."""
    if defined_in(config, settings) == "file":
        place = f"the connections file {config.source} (HUB_CONNECTIONS_FILE)"
    else:
        place = f"the environment variable {config.source}"
    return (
        f"Connection {config.name!r} is defined in {place}, so it cannot be changed here: "
        "change it there, where the web app and the workers read it."
    )


def summary(config: ConnectionConfig, settings: Any) -> dict[str, Any]:
    """The public settings of ``config`` (secret values hidden) and where it is defined."""
    return {**config.public(), "source": config.source, "defined_in": defined_in(config, settings)}


def stored_by(hub: Any, name: str) -> dict[str, Any]:
    """When and by whom a stored connection was last saved (empty if it is not stored)."""
    with hub.store.read() as s:
        row = s.get(m.Connection, name)
        if row is None:
            return {}
        return {"updated_at": row.updated_at.isoformat(), "updated_by": row.updated_by}


# -------------------------------------------------------------------- tests
@dataclass(frozen=True)
class Checked:
    """The outcome of a connection test: what the check said, or the error and its message."""

    name: str
    ok: bool
    message: str
    error: str | None
    seconds: float


def secret_values(config: ConnectionConfig) -> list[str]:
    """The connection's secret values (references resolved where set), longest first."""
    found = []
    for name in config.auth.secrets():
        try:
            value = conn.resolve(config, name)
        except ConnectionConfigError:
            continue
        if value:
            found.append(value)
    return sorted(found, key=len, reverse=True)


def mask(text: str, config: ConnectionConfig) -> str:
    """``text`` with every secret value of ``config`` replaced by :data:`HIDDEN`."""
    for value in secret_values(config):
        text = text.replace(value, HIDDEN)
    return text


def run_check(hub: Any, config: ConnectionConfig, configs: dict[str, ConnectionConfig]) -> Checked:
    """Build the connector of ``config`` and run its check. Blocking: call it in a thread."""
    connectors = Connectors(hub.settings, hub.store, configs=configs)
    started = time.perf_counter()
    error: str | None = None
    try:
        message = str(connectors.connector(config.name).check())
    except HubError as exc:
        error, message = type(exc).__name__, str(exc)
    except Exception as exc:  # a bug or an unmapped library error: still say what it was
        error, message = f"unexpected {type(exc).__name__}", str(exc)
    finally:
        seconds = time.perf_counter() - started
        connectors.shutdown()
    return Checked(config.name, error is None, mask(message, config), error, round(seconds, 3))


def _test(hub: Any, name: str, who: str) -> tuple[ConnectionConfig, Checked]:
    """Load the connections and test ``name``; 404 when unknown. Blocking."""
    configs = load(hub)
    config = configs.get(name)
    if config is None:
        raise HTTPException(404, NOT_FOUND)
    result = run_check(hub, config, configs)
    outcome = "passed" if result.ok else f"failed ({result.error})"
    log.info("connection %s tested by %s: %s in %.3f s", name, who, outcome, result.seconds)
    return config, result


# -------------------------------------------------------------------- forms
@dataclass
class Posted:
    """A submitted connection form, read.

    ``data`` is what :class:`ConnectionConfig` validates; ``values`` the typed
    texts to show again (never the secrets); ``errors`` the messages by form
    field (``form`` for those that name none); ``retype`` says secrets were
    typed, which a refused form does not send back.
    """

    data: dict[str, Any] = field(default_factory=dict)
    values: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    retype: bool = False


def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def _secret(form: FormData, name: str) -> str:
    value = form.get(name)
    if not isinstance(value, str) or not value.strip():
        return ""
    return _pem(value) if name == "private_key" else value


def _pem(value: str) -> str:
    """A PEM key with the line breaks a password input drops put back (64 characters a line)."""
    if "\n" in value:
        return value
    found = _PEM.fullmatch(value.strip())
    if found is None:
        return value
    label, body = found.group(1), "".join(found.group(2).split())
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return "\n".join([f"-----BEGIN {label}-----", *lines, f"-----END {label}-----"]) + "\n"


def read_form(form: FormData, stored: ConnectionConfig | None) -> Posted:
    """The settings of a submitted form; a secret left blank keeps ``stored``'s value."""
    got = Posted()
    for name in ("name", "kind", "url", "auth_kind", *PLAIN_AUTH, *NUMBERS, "rate_limit"):
        got.values[name] = _text(form, name)
    got.values["allow"] = _text(form, "allow")
    got.values["verify"] = _text(form, "verify") or "true"
    got.values["ca_bundle"] = _text(form, "ca_bundle")
    got.values["options"] = _text(form, "options")
    got.values["digest"] = "true" if _text(form, "digest") == "true" else ""

    kind = got.values["auth_kind"] or "none"
    auth: dict[str, Any] = {"kind": kind}
    for name in AUTH_FIELDS.get(kind, ()):
        if name in SECRET_FIELDS:
            typed = _secret(form, name)
            kept = getattr(stored.auth, name) if stored is not None else None
            if typed or kept:
                auth[name] = typed or kept
        elif name == "digest":
            auth["digest"] = got.values["digest"] == "true"
        elif got.values[name]:
            auth[name] = got.values[name]
    for name in NEEDS.get(kind, ()):
        if not auth.get(name):
            got.errors[name] = f"A {kind} login needs this."
    got.retype = any(_secret(form, name) for name in SECRET_FIELDS)

    data: dict[str, Any] = {"kind": got.values["kind"], "url": got.values["url"], "auth": auth}
    if not got.values["url"]:
        got.errors["url"] = "Give the address of the system (or the WSDL of a SOAP service)."
    for name in NUMBERS:
        if got.values[name]:
            data[name] = got.values[name]
    data["rate_limit"] = got.values["rate_limit"] or None
    data["allow"] = [line.strip() for line in got.values["allow"].splitlines() if line.strip()]
    verify = got.values["verify"]
    if verify == "bundle":
        data["verify"] = got.values["ca_bundle"]
        if not got.values["ca_bundle"]:
            got.errors["ca_bundle"] = "Give the path of the CA bundle file, on the workers."
    elif verify in ("true", "false"):
        data["verify"] = verify == "true"
    else:
        got.errors["verify"] = "Choose one of the ways to check certificates."
    data["options"] = {}
    if got.values["options"]:
        try:
            options = json.loads(got.values["options"])
        except ValueError as exc:
            got.errors["options"] = f"This is not valid JSON: {exc}."
        else:
            if isinstance(options, dict):
                data["options"] = options
            else:
                got.errors["options"] = 'Write a JSON object, like {"check_path": "/health"}.'
    got.data = data
    return got


def _field_of(loc: tuple[Any, ...]) -> str:
    """The form field a validation error's ``loc`` points at (``form``: none)."""
    if not loc:
        return "form"
    head = str(loc[0])
    if head == "auth":
        inner = str(loc[1]) if len(loc) > 1 else "kind"
        return inner if inner in FORM_AUTH else "auth_kind"
    return head if head in TOP_FIELDS else "form"


def validate(name: str, got: Posted) -> ConnectionConfig | None:
    """The configuration of a read form, or None with its errors added to ``got.errors``."""
    try:
        config = ConnectionConfig.model_validate({**got.data, "name": name, "source": "database"})
    except ValidationError as exc:
        needs = any(f in got.errors for f in SECRET_FIELDS + PLAIN_AUTH)
        for error in exc.errors():
            loc = tuple(error["loc"])
            if loc == ("auth",) and needs:
                continue  # "auth kind ... needs ...": already said beside each field
            message = str(error["msg"]).removeprefix("Value error, ")
            got.errors.setdefault(_field_of(loc), message)
        return None
    return None if got.errors else config


def form_values(config: ConnectionConfig | None) -> dict[str, str]:
    """The texts of the form's fields for ``config`` (the defaults when None); no secrets."""
    if config is None:  # a new connection: the defaults, the name and URL left empty
        config = ConnectionConfig.model_construct(name="", kind="rest", url="")
    auth = config.auth
    values = {
        "name": config.name,
        "kind": config.kind,
        "url": config.url,
        "auth_kind": auth.kind,
        "digest": "true" if auth.digest else "",
        "rate_limit": config.rate_limit or "",
        "allow": "\n".join(config.allow),
        "verify": "bundle" if isinstance(config.verify, str) else str(config.verify).lower(),
        "ca_bundle": config.verify if isinstance(config.verify, str) else "",
        "options": json.dumps(config.options, indent=2) if config.options else "",
    }
    for name in PLAIN_AUTH:
        values[name] = getattr(auth, name) or ""
    for name in NUMBERS:
        values[name] = f"{getattr(config, name):g}"
    return values


def secret_hints(config: ConnectionConfig | None) -> dict[str, str]:
    """What each secret field holds now, said without its value, for the edit form."""
    hints: dict[str, str] = {}
    for name, written in (config.auth.secrets() if config is not None else {}).items():
        now = f"now {written}" if written.startswith("env:") else "a value is stored, encrypted"
        hints[name] = f"Set ({now}): leave it blank to keep it."
    return hints


def used_by() -> dict[str, str]:
    """Which kinds of login use each auth field, for the form's help texts."""
    kinds: dict[str, list[str]] = {}
    for kind, names in AUTH_FIELDS.items():
        for name in names:
            kinds.setdefault(name, []).append(kind)
    return {name: "Used by " + ", ".join(found) + "." for name, found in kinds.items()}


def _store(request: Request, who: str, config: ConnectionConfig, before: Any) -> None:
    """Save ``config`` (its secrets encrypted) and audit it under ``who``."""
    hub = request.app.state.hub
    conn.save(hub.store, hub.settings, config, by=who)
    changed = sorted(
        name
        for name, value in config.auth.secrets().items()
        if before is None or getattr(before.auth, name) != value
    )
    after = {**config.public(), "secrets_set": changed}
    action = "connection.update" if before is not None else "connection.create"
    earlier = before.public() if before is not None else None
    now = clock(request)
    hub.store.run(lambda s: audit(s, who, action, "connection", config.name, earlier, after, now))
    log.info("connection %s stored by %s (%s)", config.name, who, action)


# ------------------------------------------------------------------- pages
def _problem(request: Request, login: Login, exc: ConnectionConfigError) -> Response:
    """The list page with the message of a configuration the hub cannot read."""
    return render(
        request,
        "connections.html",
        503,
        login=login,
        connections=[],
        problem=str(exc),
        can_edit=login.principal.can("admin"),
    )


def _form(
    request: Request,
    login: Login,
    mode: str,
    *,
    status: int = 200,
    name: str = "",
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    stored: ConnectionConfig | None = None,
    problem: str = "",
    retype: bool = False,
) -> Response:
    """The add (``mode="add"``) or edit form."""
    return render(
        request,
        "connection.html",
        status,
        login=login,
        mode=mode,
        name=name,
        values=values if values is not None else form_values(stored),
        errors=errors or {},
        hints=secret_hints(stored),
        used_by=used_by(),
        kinds=[(kind, kind) for kind in KINDS],
        auth_kinds=[(kind, kind) for kind in NEEDS],
        problem=problem,
        retype=retype,
    )


def _show(
    request: Request,
    login: Login,
    config: ConnectionConfig,
    *,
    status: int = 200,
    result: Checked | None = None,
    delete_error: str = "",
) -> Response:
    """A connection's page: its settings, the test form and (admins) edit and delete."""
    hub = request.app.state.hub
    shown = summary(config, hub.settings)
    editable = shown["defined_in"] == "database"
    done = request.query_params.get("done")
    return render(
        request,
        "connection.html",
        status,
        login=login,
        mode="show",
        name=config.name,
        c=shown,
        login_fields={k: v for k, v in shown["auth"].items() if k != "kind"},
        options=json.dumps(config.options, indent=2) if config.options else "",
        stored=stored_by(hub, config.name),
        read_only="" if editable else where_to_change(config, hub.settings),
        can_edit=login.principal.can("admin"),
        result=result,
        delete_error=delete_error,
        done=done if done in ("added", "saved") else None,
    )


async def posted_form(
    request: Request, login: Login = Depends(form_login)
) -> tuple[Login, FormData]:
    """Dependency of the forms that carry fields: the checked login (CSRF) and the form."""
    return login, await request.form()


@router.get("/connections")
def connections_page(request: Request, login: Login = Depends(page_login)) -> Response:
    """Every connection, or with ``?add=1`` (admins) the form to add one."""
    require(login.principal, "operator")
    if "add" in request.query_params:
        require(login.principal, "admin")
        return _form(request, login, "add")
    hub = request.app.state.hub
    try:
        configs = load(hub)
    except ConnectionConfigError as exc:
        return _problem(request, login, exc)
    rows = [summary(c, hub.settings) for c in sorted(configs.values(), key=lambda c: c.name)]
    deleted = request.query_params.get("deleted")
    return render(
        request,
        "connections.html",
        login=login,
        connections=rows,
        problem="",
        can_edit=login.principal.can("admin"),
        deleted=deleted if deleted and deleted not in configs else None,
    )


@router.post("/connections")
def connection_add(
    request: Request, posted: tuple[Login, FormData] = Depends(posted_form)
) -> Response:
    """Store a new connection from the add form (admins)."""
    login, form = posted
    require(login.principal, "admin")
    hub = request.app.state.hub
    got = read_form(form, None)
    name = got.values["name"]
    again: dict[str, Any] = {"values": got.values, "retype": got.retype}
    try:
        configs = load(hub)
    except ConnectionConfigError as exc:
        return _form(request, login, "add", status=503, problem=str(exc), **again)
    if name in configs:
        where = configs[name].source
        got.errors["name"] = f"There is already a connection named {name!r} (in {where})."
    config = validate(name, got)
    if config is None:
        return _form(request, login, "add", status=422, errors=got.errors, **again)
    try:
        _store(request, login.principal.name, config, None)
    except ConnectionConfigError as exc:
        return _form(request, login, "add", status=503, problem=str(exc), **again)
    return RedirectResponse(f"/connections/{quote(name)}?done=added", status_code=303)


@router.get("/connections/{name}")
def connection_page(request: Request, name: str, login: Login = Depends(page_login)) -> Response:
    """One connection's settings (secrets hidden), with the test form."""
    require(login.principal, "operator")
    try:
        configs = load(request.app.state.hub)
    except ConnectionConfigError as exc:
        return _problem(request, login, exc)
    if name not in configs:
        raise HTTPException(404, NOT_FOUND)
    return _show(request, login, configs[name])


@router.post("/connections/{name}/test")
async def connection_test(
    request: Request, name: str, login: Login = Depends(form_login)
) -> Response:
    """Test the connection in a worker thread; the page again with the outcome."""
    require(login.principal, "operator")

    def test_page() -> Response:
        try:
            config, result = _test(request.app.state.hub, name, login.principal.name)
        except ConnectionConfigError as exc:
            return _problem(request, login, exc)
        return _show(request, login, config, result=result)

    return await run_in_threadpool(test_page)


def _editable(request: Request, name: str) -> ConnectionConfig:
    """The stored connection ``name``: 404 when unknown, 409 when defined elsewhere."""
    hub = request.app.state.hub
    config = load(hub).get(name)
    if config is None:
        raise HTTPException(404, NOT_FOUND)
    if config.source != "database":
        raise HTTPException(409, where_to_change(config, hub.settings))
    return config


@router.get("/connections/{name}/edit")
def connection_edit_page(
    request: Request, name: str, login: Login = Depends(page_login)
) -> Response:
    """The form to change a stored connection (admins)."""
    require(login.principal, "admin")
    try:
        stored = _editable(request, name)
    except ConnectionConfigError as exc:
        return _problem(request, login, exc)
    return _form(request, login, "edit", name=name, stored=stored)


@router.post("/connections/{name}/edit")
def connection_edit(
    request: Request, name: str, posted: tuple[Login, FormData] = Depends(posted_form)
) -> Response:
    """Store the change of a stored connection (admins); blank secrets keep their values."""
    login, form = posted
    require(login.principal, "admin")
    try:
        stored = _editable(request, name)
    except ConnectionConfigError as exc:
        return _problem(request, login, exc)
    got = read_form(form, stored)
    again: dict[str, Any] = {"name": name, "stored": stored, "retype": got.retype}
    config = validate(name, got)
    if config is None:
        return _form(
            request, login, "edit", status=422, values=got.values, errors=got.errors, **again
        )
    try:
        _store(request, login.principal.name, config, stored)
    except ConnectionConfigError as exc:
        return _form(
            request, login, "edit", status=503, values=got.values, problem=str(exc), **again
        )
    return RedirectResponse(f"/connections/{quote(name)}?done=saved", status_code=303)


@router.post("/connections/{name}/delete")
def connection_delete(
    request: Request, name: str, posted: tuple[Login, FormData] = Depends(posted_form)
) -> Response:
    """Remove a stored connection (admins), once the form's confirm box is ticked."""
    login, form = posted
    require(login.principal, "admin")
    hub = request.app.state.hub
    try:
        stored = _editable(request, name)
    except ConnectionConfigError as exc:
        return _problem(request, login, exc)
    if form.get("confirm") != "yes":
        message = "Tick the box to confirm that this connection is to be deleted."
        return _show(request, login, stored, status=422, delete_error=message)
    if not conn.delete(hub.store, name):
        raise HTTPException(404, NOT_FOUND)
    who, now, before = login.principal.name, clock(request), stored.public()
    hub.store.run(
        lambda s: audit(s, who, "connection.delete", "connection", name, before, None, now)
    )
    log.info("connection %s deleted by %s", name, who)
    return RedirectResponse(f"/connections?deleted={quote(name)}", status_code=303)


# --------------------------------------------------------------------- API
def _api_load(hub: Any) -> dict[str, ConnectionConfig]:
    try:
        return load(hub)
    except ConnectionConfigError as exc:
        raise HTTPException(503, str(exc)) from None


@router.get("/api/connections", tags=["connections"])
def api_connections(request: Request, _: Principal = operator) -> list[dict[str, Any]]:
    """Every connection: its public settings (secret values hidden) and where it is defined."""
    hub = request.app.state.hub
    configs = _api_load(hub)
    return [summary(c, hub.settings) for c in sorted(configs.values(), key=lambda c: c.name)]


@router.get("/api/connections/{name}", tags=["connections"])
def api_connection(request: Request, name: str, _: Principal = operator) -> dict[str, Any]:
    """One connection's public settings; stored ones say when and by whom."""
    hub = request.app.state.hub
    config = _api_load(hub).get(name)
    if config is None:
        raise HTTPException(404, f"no connection {name!r}")
    return {**summary(config, hub.settings), **stored_by(hub, name)}


@router.post("/api/connections/{name}/test", tags=["connections"])
async def api_connection_test(
    request: Request, name: str, who: Principal = operator
) -> dict[str, Any]:
    """Reach the system and log in, changing nothing: ``ok``, the check's ``message`` or the
    ``error`` and its message, and ``seconds``. A failed test is still a 200."""

    def test() -> Checked:
        try:
            return _test(request.app.state.hub, name, who.name)[1]
        except ConnectionConfigError as exc:
            raise HTTPException(503, str(exc)) from None

    return asdict(await run_in_threadpool(test))
