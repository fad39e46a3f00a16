"""HTML forms generated from a step's JSON schema, and what a reviewer submits back as JSON.

A review item offers two generated forms: *edit the input* (from the step's
input model) and *complete by hand* (from its output model, or from the form
of a ``NeedsReview`` question). :func:`build` turns a JSON schema into a tree
of :class:`Field`; the page renders the tree; :func:`read` turns the posted
form back into the JSON value, coercing each text by the schema's type.

How a schema maps to widgets:

=========================================  =========================================
schema                                     widget
=========================================  =========================================
``string`` (long, or with line breaks)     text input (textarea)
``integer`` / ``number``                   number input (``step`` 1 / any)
``boolean``                                checkbox, after a hidden ``false`` marker
``enum`` / ``const``                       select
``object`` with ``properties``             fieldset; its fields named with dots
``anyOf [X, null]`` (``Optional``)         the widget of X; left empty, it is null
arrays, maps, unions, anything else        a JSON textarea
no schema at all                           one JSON textarea for the whole value
=========================================  =========================================

``$ref`` to ``$defs`` is resolved (a model that refers to itself becomes a
JSON textarea past its first level). Field names are ``PREFIX.a.b``, so one
page can hold several forms. A text that cannot be coerced (``12x`` for a
whole number, broken JSON) becomes a field error with the field's ``loc``;
the model's own rules (lengths, bounds, required fields) are checked by the
service, whose errors :func:`place` puts beside the fields they name.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

#: A string input becomes a textarea past this many characters (maxLength or value).
LONG_TEXT = 120
#: Nested models deeper than this are edited as JSON.
MAX_DEPTH = 6
TRUE = "true"


class Posted(Protocol):
    """What a submitted form offers: Starlette's ``FormData`` or a test's ``MultiDict``."""

    def getlist(self, key: str) -> list[Any]: ...


@dataclass
class Field:
    """One input (or a fieldset of them) of a generated form.

    ``path`` is where the value sits in the JSON value (``("customer", "name")``);
    ``name`` is the form field's name (``PREFIX.customer.name``). ``kind`` is
    ``text``, ``textarea``, ``number``, ``checkbox``, ``select``, ``json`` or
    ``group`` (a fieldset whose ``children`` are the object's properties).
    ``value`` is the text shown (prefilled, or as the reviewer submitted it),
    ``error`` the message shown beside it; ``focus`` marks the first field to fix.
    """

    path: tuple[str, ...]
    name: str
    label: str
    kind: str
    required: bool = False
    nullable: bool = False
    description: str = ""
    integer: bool = False
    input_type: str = "text"
    options: list[tuple[str, str]] = field(default_factory=list)
    choices: dict[str, Any] = field(default_factory=dict)
    minimum: str | None = None
    maximum: str | None = None
    min_length: int | None = None
    max_length: int | None = None
    default: Any = None
    children: list[Field] = field(default_factory=list)
    value: str = ""
    checked: bool = False
    error: str = ""
    focus: bool = False

    @property
    def id(self) -> str:
        """The HTML id: the name with dots as dashes."""
        return "f-" + self.name.replace(".", "-")

    @property
    def rows(self) -> int:
        """Rows of a textarea: enough for the value, between 3 and 16."""
        return min(max(self.value.count("\n") + 2, 3), 16)


@dataclass
class Form:
    """A generated form: its fields, and whether one field stands for the whole value.

    ``whole`` is True when the schema is not an object with properties (or is
    missing): then ``fields`` holds one field, named ``PREFIX``, for the value.
    ``errors`` are the messages that name no field, shown above the form.
    """

    prefix: str
    fields: list[Field]
    whole: bool
    errors: list[str] = field(default_factory=list)

    def walk(self) -> Iterator[Field]:
        """Every field, fieldsets before their children."""
        todo = list(reversed(self.fields))
        while todo:
            f = todo.pop()
            yield f
            todo.extend(reversed(f.children))


# ------------------------------------------------------------------ schema
def _resolve(schema: Any, root: dict[str, Any]) -> Any:
    """Follow ``$ref`` (``#/$defs/X`` or ``#/definitions/X``) and single-item ``allOf``."""
    for _ in range(20):
        if not isinstance(schema, dict):
            return schema
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/"):
            target: Any = root
            for part in ref[2:].split("/"):
                target = target.get(part) if isinstance(target, dict) else None
            rest = {k: v for k, v in schema.items() if k != "$ref"}
            schema = {**(target or {}), **rest}
            continue
        all_of = schema.get("allOf")
        if isinstance(all_of, list) and len(all_of) == 1:
            rest = {k: v for k, v in schema.items() if k != "allOf"}
            schema = {**_resolve(all_of[0], root), **rest}
            continue
        return schema
    return {}


def _optional(schema: dict[str, Any], root: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """``anyOf [X, null]`` as (X, True); anything else as (schema, False)."""
    options = schema.get("anyOf") or schema.get("oneOf")
    if isinstance(options, list):
        kept = [o for o in options if not (isinstance(o, dict) and o.get("type") == "null")]
        if len(kept) == 1 and len(kept) < len(options):
            rest = {k: v for k, v in schema.items() if k not in ("anyOf", "oneOf")}
            return {**_resolve(kept[0], root), **rest}, True
    kind = schema.get("type")
    if isinstance(kind, list) and "null" in kind:
        kept_types = [t for t in kind if t != "null"]
        if len(kept_types) == 1:
            return {**schema, "type": kept_types[0]}, True
    return schema, False


def _bound(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return str(value)


def _field(
    schema: Any, root: dict[str, Any], path: tuple[str, ...], prefix: str, depth: int
) -> Field:
    schema = _resolve(schema, root)
    if not isinstance(schema, dict):
        schema = {}
    schema, nullable = _optional(schema, root)
    name = ".".join((prefix, *path))
    label = str(schema.get("title") or (path[-1] if path else "Value"))
    f = Field(
        path=path,
        name=name,
        label=label,
        kind="json",
        nullable=nullable,
        description=str(schema.get("description") or ""),
        default=schema.get("default"),
    )
    kind = schema.get("type")
    choices = schema.get("enum")
    if choices is None and "const" in schema:
        choices = [schema["const"]]
    if isinstance(choices, list) and choices:
        f.kind = "select"
        f.choices = {_as_text(c): c for c in choices}
        f.options = [(_as_text(c), _as_text(c)) for c in choices]
    elif kind == "string":
        f.kind = "text"
        f.min_length, f.max_length = schema.get("minLength"), schema.get("maxLength")
        fmt = schema.get("format")
        f.input_type = {"date": "date", "email": "email", "uri": "url"}.get(str(fmt), "text")
        if f.max_length is not None and f.max_length > LONG_TEXT:
            f.kind = "textarea"
    elif kind in ("integer", "number"):
        f.kind, f.integer = "number", kind == "integer"
        f.minimum = _bound(schema.get("minimum", schema.get("exclusiveMinimum")))
        f.maximum = _bound(schema.get("maximum", schema.get("exclusiveMaximum")))
    elif kind == "boolean":
        f.kind = "select" if nullable else "checkbox"
        if nullable:
            f.choices, f.options = {TRUE: True, "false": False}, [(TRUE, "yes"), ("false", "no")]
    elif _is_group(schema) and not nullable and depth < MAX_DEPTH:
        f.kind = "group"
        needed = set(schema.get("required") or ())
        for key, sub in schema["properties"].items():
            child = _field(sub, root, (*path, str(key)), prefix, depth + 1)
            child.required = key in needed
            f.children.append(child)
    return f


def _is_group(schema: dict[str, Any]) -> bool:
    props = schema.get("properties")
    return schema.get("type", "object") == "object" and isinstance(props, dict) and bool(props)


def build(schema: Any, prefix: str, value: Any = None) -> Form:
    """The form for ``schema`` (None: one raw JSON field), prefilled with ``value``.

    Its fields are named ``PREFIX.<dotted path>``; ``PREFIX`` alone when one
    field stands for the whole value.
    """
    root = schema if isinstance(schema, dict) else {}
    top = _field(root, root, (), prefix, 0)
    if top.kind == "group":
        form = Form(prefix, top.children, whole=False)
    else:
        top.required = True
        form = Form(prefix, [top], whole=True)
    fill(form, value)
    return form


# ------------------------------------------------------------------ values
def _as_text(value: Any) -> str:
    """A JSON value as a form shows it: strings as they are, the rest as JSON."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    return json.dumps(value, ensure_ascii=False)


def _at(value: Any, path: tuple[str, ...]) -> tuple[bool, Any]:
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return False, None
        value = value[key]
    return True, value


def fill(form: Form, value: Any) -> None:
    """Prefill every field from the JSON ``value`` (a field it lacks shows its default)."""
    for f in form.walk():
        found, current = _at(value, f.path)
        if not found:
            current = f.default
        if f.kind == "checkbox":
            f.checked = current is True
        elif f.kind == "json":
            f.value = "" if current is None else json.dumps(current, indent=2, ensure_ascii=False)
        elif f.kind != "group":
            f.value = _as_text(current)
        if f.kind == "text" and (len(f.value) > LONG_TEXT or "\n" in f.value):
            f.kind = "textarea"


def _last(posted: Posted, name: str) -> str | None:
    values = [v for v in posted.getlist(name) if isinstance(v, str)]
    return values[-1] if values else None


def refill(form: Form, posted: Posted) -> None:
    """Show what the reviewer submitted, as they typed it (after a refused action)."""
    for f in form.walk():
        if f.kind == "checkbox":
            f.checked = TRUE in posted.getlist(f.name)
        elif f.kind != "group":
            f.value = _last(posted, f.name) or ""


def _coerce(f: Field, text: str) -> tuple[bool, Any]:
    """(present, value) of one field's text; raises ``ValueError`` naming the problem."""
    if f.kind == "select":
        if text == "" and (f.nullable or not f.required):
            return f.nullable, None
        if text not in f.choices:
            raise ValueError(f"choose one of: {', '.join(f.choices)}")
        return True, f.choices[text]
    if f.kind in ("text", "textarea"):
        if text == "" and f.nullable:
            return True, None
        return True, text
    if text.strip() == "":
        return f.nullable, None  # absent: the model's default, or its "field required"
    if f.kind == "number":
        return True, _number(text.strip(), integer=f.integer)
    try:
        return True, json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})"
        ) from None


def _number(text: str, *, integer: bool) -> int | float:
    if integer:
        try:
            return int(text)
        except ValueError:
            try:
                number = float(text)
            except ValueError:
                number = math.nan
            if number.is_integer():
                return int(number)
            raise ValueError(f"not a whole number: {text!r}") from None
    try:
        number = float(text)
    except ValueError:
        raise ValueError(f"not a number: {text!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"not a finite number: {text!r}")
    return int(number) if number.is_integer() and "." not in text and "e" not in text else number


def _value(f: Field, posted: Posted, errors: list[dict[str, Any]]) -> tuple[bool, Any]:
    if f.kind == "group":
        out: dict[str, Any] = {}
        for child in f.children:
            present, value = _value(child, posted, errors)
            if present:
                out[child.path[-1]] = value
        return True, out
    if f.kind == "checkbox":
        values = posted.getlist(f.name)
        return bool(values), TRUE in values
    text = _last(posted, f.name)
    if text is None:
        return False, None
    try:
        return _coerce(f, text)
    except ValueError as exc:
        errors.append({"loc": list(f.path), "msg": str(exc), "type": "form_value"})
        return False, None


def read(form: Form, posted: Posted) -> tuple[Any, list[dict[str, Any]]]:
    """The JSON value the reviewer submitted, and the fields that could not be coerced.

    Errors have pydantic's shape (``loc``, ``msg``, ``type``), their ``loc``
    the field's path. A left-empty number or JSON field is left out (so the
    model's default applies, or it reports the field as required), or is
    null when the schema allows null.
    """
    errors: list[dict[str, Any]] = []
    if form.whole:
        present, value = _value(form.fields[0], posted, errors)
        return (value if present else None), errors
    out: dict[str, Any] = {}
    for f in form.fields:
        present, value = _value(f, posted, errors)
        if present:
            out[f.path[-1]] = value
    return out, errors


# ------------------------------------------------------------------ errors
def _message(error: Any) -> tuple[tuple[str, ...], str]:
    if not isinstance(error, dict):
        return (), str(error)
    loc = error.get("loc") or ()
    if isinstance(loc, str):
        loc = (loc,)
    return tuple(str(p) for p in loc), str(error.get("msg") or "invalid value")


def place(form: Form, errors: list[dict[str, Any]]) -> None:
    """Put each error beside the field its ``loc`` names; the rest go to ``form.errors``.

    An error inside a JSON field (``["lines", 0, "qty"]``) goes beside that
    field, prefixed with the rest of its path (``0.qty: ...``).
    """
    by_path = {f.path: f for f in form.walk() if f.kind != "group"}
    for error in errors:
        loc, msg = _message(error)
        target = None
        for n in range(len(loc), -1, -1):
            if loc[:n] in by_path:
                target, rest = by_path[loc[:n]], loc[n:]
                break
        if target is None:
            where = ".".join(loc)
            form.errors.append(f"{where}: {msg}" if where else msg)
            continue
        text = f"{'.'.join(rest)}: {msg}" if rest else msg
        target.error = f"{target.error}; {text}" if target.error else text
    first = next((f for f in form.walk() if f.error), None)
    if first is not None:
        first.focus = True  # the page opens on the first field to fix
