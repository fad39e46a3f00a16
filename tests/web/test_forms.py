"""Forms generated from JSON schemas (``hub/web/forms.py``): widgets by type, coercion, errors."""

from __future__ import annotations

import json
from datetime import date
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, Field, TypeAdapter
from starlette.datastructures import FormData

from hub.web import forms


class Address(BaseModel):
    street: str
    country: Literal["DE", "FR"] = "DE"


class Kind(StrEnum):
    plain = "plain"
    rush = "rush"


class Sample(BaseModel):
    name: str = Field(min_length=1, description="Who it is for.")
    count: int = Field(ge=0)
    ratio: float = 0.5
    active: bool = False
    maybe: bool | None = None
    kind: Kind = Kind.plain
    address: Address
    backup: Address | None = None
    tags: list[str] = []
    extra: dict[str, int] = {}
    note: str | None = None
    long: str = Field("", max_length=2000)
    when: date | None = None


class Tree(BaseModel):
    label: str
    child: Tree


SAMPLE = TypeAdapter(Sample).json_schema()
VALUE = {
    "name": "Ada",
    "count": 3,
    "ratio": 0.25,
    "active": True,
    "maybe": None,
    "kind": "rush",
    "address": {"street": "Main St 1", "country": "FR"},
    "backup": None,
    "tags": ["a", "b"],
    "extra": {"x": 1},
    "note": None,
    "long": "",
    "when": "2026-05-01",
}


def by_name(form: forms.Form) -> dict[str, forms.Field]:
    return {f.name: f for f in form.walk()}


def test_a_schema_becomes_fields_by_type_with_refs_and_optionals_resolved() -> None:
    fields = by_name(forms.build(SAMPLE, "input", VALUE))
    kinds = {name: f.kind for name, f in fields.items()}
    assert kinds == {
        "input.name": "text",
        "input.count": "number",
        "input.ratio": "number",
        "input.active": "checkbox",
        "input.maybe": "select",  # yes / no / none
        "input.kind": "select",
        "input.address": "group",
        "input.address.street": "text",
        "input.address.country": "select",
        "input.backup": "json",  # an object that may be null: edited as JSON
        "input.tags": "json",
        "input.extra": "json",
        "input.note": "text",
        "input.long": "textarea",
        "input.when": "text",
    }
    assert fields["input.count"].integer and not fields["input.ratio"].integer
    assert fields["input.count"].minimum == "0"
    assert fields["input.name"].required and not fields["input.ratio"].required
    assert fields["input.name"].description == "Who it is for."
    assert fields["input.note"].nullable and fields["input.when"].input_type == "date"
    assert fields["input.kind"].options == [("plain", "plain"), ("rush", "rush")]
    assert fields["input.address.country"].value == "FR"  # from the value, through $defs
    assert fields["input.active"].checked and fields["input.count"].value == "3"
    assert fields["input.tags"].value == '[\n  "a",\n  "b"\n]'
    assert fields["input.address.street"].id == "f-input-address-street"


def test_a_submitted_form_is_coerced_by_the_schema_into_valid_json() -> None:
    form = forms.build(SAMPLE, "input")
    posted = FormData(
        [
            ("input.name", "Ada"),
            ("input.count", "3"),
            ("input.ratio", "0.25"),
            ("input.active", "false"),
            ("input.active", "true"),
            ("input.maybe", ""),
            ("input.kind", "rush"),
            ("input.address.street", "Main St 1"),
            ("input.address.country", "FR"),
            ("input.backup", '{"street": "Side St 2"}'),
            ("input.tags", '["a", "b"]'),
            ("input.extra", ""),
            ("input.note", ""),
            ("input.long", "line one\nline two"),
            ("input.when", "2026-05-01"),
        ]
    )
    value, errors = forms.read(form, posted)
    assert errors == []
    assert value == {
        "name": "Ada",
        "count": 3,
        "ratio": 0.25,
        "active": True,
        "maybe": None,
        "kind": "rush",
        "address": {"street": "Main St 1", "country": "FR"},
        "backup": {"street": "Side St 2"},
        "tags": ["a", "b"],
        "note": None,
        "long": "line one\nline two",
        "when": "2026-05-01",
    }  # "extra" left empty: left out, so the model's default applies
    TypeAdapter(Sample).validate_python(value)
    unticked, _ = forms.read(form, FormData([("input.active", "false")]))
    assert unticked == {"active": False, "address": {}}


def test_text_that_cannot_be_coerced_is_a_field_error() -> None:
    form = forms.build(SAMPLE, "input")
    posted = FormData(
        [
            ("input.count", "12x"),
            ("input.ratio", "inf"),
            ("input.kind", "slow"),
            ("input.tags", '["a",'),
            ("input.address.street", "x"),
        ]
    )
    value, errors = forms.read(form, posted)
    assert {tuple(e["loc"]): e["msg"] for e in errors} == {
        ("count",): "not a whole number: '12x'",
        ("ratio",): "not a finite number: 'inf'",
        ("kind",): "choose one of: plain, rush",
        ("tags",): "not valid JSON (Expecting value at line 1, column 6)",
    }
    assert value == {"address": {"street": "x"}}
    assert forms.read(form, FormData([("input.count", "7.0")]))[0]["count"] == 7


def test_errors_go_beside_their_fields_and_the_rest_above_the_form() -> None:
    form = forms.build(SAMPLE, "input", VALUE)
    forms.refill(form, FormData([("input.count", "-4"), ("input.name", "")]))
    forms.place(
        form,
        [
            {"loc": ["count"], "msg": "Input should be greater than or equal to 0"},
            {"loc": ("address", "street"), "msg": "Field required"},
            {"loc": ["tags", 1], "msg": "Input should be a valid string"},
            {"loc": [], "msg": "the order and the customer disagree"},
            {"loc": ["nowhere"], "msg": "Extra inputs are not permitted"},
        ],
    )
    fields = by_name(form)
    assert fields["input.count"].error == "Input should be greater than or equal to 0"
    assert fields["input.count"].value == "-4"  # as typed
    assert fields["input.name"].value == ""
    assert fields["input.address.street"].error == "Field required"
    assert fields["input.tags"].error == "1: Input should be a valid string"
    assert form.errors == [
        "the order and the customer disagree",
        "nowhere: Extra inputs are not permitted",
    ]


def test_without_a_schema_the_whole_value_is_one_json_field() -> None:
    form = forms.build(None, "output", {"a": [1, 2]})
    assert form.whole and [(f.name, f.kind) for f in form.fields] == [("output", "json")]
    assert json.loads(form.fields[0].value) == {"a": [1, 2]}
    assert forms.read(form, FormData([("output", '{"b": true}')])) == ({"b": True}, [])
    value, errors = forms.read(form, FormData([("output", "{")]))
    assert value is None and errors[0]["loc"] == [] and "not valid JSON" in errors[0]["msg"]
    forms.place(form, [{"loc": [], "msg": "Input should be a valid dictionary"}])
    assert form.fields[0].error == "Input should be a valid dictionary" and form.errors == []
    number = forms.build({"type": "integer"}, "input", 5)
    assert number.whole and number.fields[0].kind == "number" and number.fields[0].value == "5"
    assert forms.read(number, FormData([("input", "6")])) == (6, [])


def test_a_model_that_refers_to_itself_stops_at_a_json_field() -> None:
    form = forms.build(TypeAdapter(Tree).json_schema(), "input")
    names = [f.name for f in form.walk()]
    assert names[:3] == ["input.label", "input.child", "input.child.label"]
    deepest = [f for f in form.walk() if f.kind == "json"]
    assert len(deepest) == 1 and deepest[0].name.count(".child") == forms.MAX_DEPTH
