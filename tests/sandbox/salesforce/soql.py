"""A small, strict SOQL: what the sandbox answers, and the errors Salesforce gives.

Supported::

    SELECT field, Parent.field, ... | COUNT() | COUNT(field) [alias]
    FROM Object
    [WHERE cond]        cond: field (= | != | <> | < | <= | > | >=) literal
                              field [NOT] IN (literal, ...)
                              field LIKE 'pattern'   (% and _, no case)
                              NOT cond, (cond), cond AND cond ..., cond OR cond ...
    [ORDER BY field [ASC|DESC] [NULLS FIRST|LAST], ...]
    [LIMIT n] [OFFSET n]

Literals: 'text' (backslash escapes), numbers, TRUE/FALSE, NULL, dates
``2024-05-01`` and dateTimes ``2024-05-01T09:30:00Z``. As in Salesforce, text
compares without regard to case, ``!=`` and ``NOT IN`` keep nulls, AND and OR
may not be mixed without parentheses, and a literal must have its field's
type (quoted for text and ids, unquoted otherwise). ``Parent.field`` follows
one lookup (``Account.Name`` on Contact, ``Account__r.Name`` on Order__c).

Errors are 400s whose message points at the place in the query, as
Salesforce's do: ``MALFORMED_QUERY`` (syntax), ``INVALID_TYPE`` (unknown
object), ``INVALID_FIELD`` (unknown field, wrong literal type) and
``INVALID_QUERY_FILTER_OPERATOR`` (an id literal that is not an id).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.sandbox.salesforce import ids
from tests.sandbox.salesforce.schema import (
    NUMBER_TYPES,
    ApiError,
    Field,
    SObject,
    parse_datetime,
    sf_datetime,
    valid_date,
)
from tests.sandbox.salesforce.store import Store

_TOKEN_RE = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<string>'(?:[^'\\]|\\.)*')
  | (?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2}))
  | (?P<date>\d{4}-\d{2}-\d{2})(?![\w:])
  | (?P<number>-?\d+(?:\.\d+)?)(?![\w.])
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
  | (?P<op>!=|<>|<=|>=|=|<|>)
  | (?P<punct>[(),])
    """,
    re.VERBOSE,
)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "'": "'", '"': '"', "\\": "\\"}
_UNQUOTED_TYPES = {
    "currency": "double",
    "double": "double",
    "percent": "double",
    "int": "int",
    "boolean": "boolean",
    "date": "date",
    "datetime": "dateTime",
}


@dataclass(frozen=True)
class Token:
    kind: str  # ident string number date datetime op punct eof
    text: str
    pos: int

    def keyword(self, *words: str) -> bool:
        return self.kind == "ident" and self.text.upper() in words


@dataclass(frozen=True)
class FieldRef:
    """A selected, filtered or sorted field: ``field`` of the object or of its parent."""

    path: str  # as Salesforce spells it: "Name", "Account.Name"
    field: Field
    lookup: Field | None = None  # the lookup field followed, for Parent.field

    def getter(self, store: Store) -> Callable[[dict[str, Any]], Any]:
        name = self.field.name
        if self.lookup is None:
            return lambda record: record[name]
        lookup = self.lookup.name

        def parent_value(record: dict[str, Any]) -> Any:
            parent_id = record[lookup]
            parent = store.record(parent_id) if parent_id else None
            return None if parent is None else parent[name]

        return parent_value


@dataclass
class Query:
    """A parsed query, ready to run against the store."""

    text: str
    sobject: SObject
    fields: list[FieldRef] = field(default_factory=list)
    count: bool = False  # SELECT COUNT()
    aggregate: FieldRef | None = None  # SELECT COUNT(field)
    aggregate_alias: str = "expr0"
    where: Callable[[dict[str, Any]], bool] | None = None
    order: list[tuple[FieldRef, bool, bool]] = field(default_factory=list)  # ref, desc, nulls 1st
    limit: int | None = None
    offset: int = 0


def error(text: str, pos: int, code: str, message: str) -> ApiError:
    """A query error whose message shows the query and a caret at ``pos``, as Salesforce's."""
    row = text.count("\n", 0, pos) + 1
    line_start = text.rfind("\n", 0, pos) + 1
    column = pos - line_start + 1
    line = text.split("\n")[row - 1]
    located = f"\n{line}\n{' ' * (column - 1)}^\nERROR at Row:{row}:Column:{column}\n{message}"
    return ApiError.one(400, code, located)


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN_RE.match(text, pos)
        if match is None:
            raise error(text, pos, "MALFORMED_QUERY", f"unexpected token: '{text[pos]}'")
        kind = match.lastgroup or ""
        if kind != "space":
            tokens.append(Token(kind, match.group(), pos))
        pos = match.end()
    tokens.append(Token("eof", "", len(text)))
    return tokens


def _unquote(literal: str) -> str:
    body = literal[1:-1]
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), body)


class _Parser:
    def __init__(self, text: str, store: Store) -> None:
        self.text = text
        self.store = store
        self.tokens = tokenize(text)
        self.i = 0

    # ------------------------------------------------------------ tokens
    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def next(self) -> Token:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def unexpected(self, tok: Token | None = None) -> ApiError:
        tok = tok or self.tok
        shown = "<EOF>" if tok.kind == "eof" else f"'{tok.text}'"
        return error(self.text, tok.pos, "MALFORMED_QUERY", f"unexpected token: {shown}")

    def expect_keyword(self, word: str) -> Token:
        if not self.tok.keyword(word):
            raise self.unexpected()
        return self.next()

    def expect_punct(self, char: str) -> Token:
        if not (self.tok.kind == "punct" and self.tok.text == char):
            raise self.unexpected()
        return self.next()

    def at_punct(self, char: str) -> bool:
        return self.tok.kind == "punct" and self.tok.text == char

    # ------------------------------------------------------------ clauses
    def parse(self) -> Query:
        self.expect_keyword("SELECT")
        select: list[Token] = []
        count = False
        aggregate: Token | None = None
        alias = "expr0"
        if self.tok.keyword("COUNT") and self.tokens[self.i + 1].text == "(":
            self.next()
            self.expect_punct("(")
            if self.at_punct(")"):
                count = True
            elif self.tok.kind == "ident":
                aggregate = self.next()
            else:
                raise self.unexpected()
            self.expect_punct(")")
            if aggregate is not None and self.tok.kind == "ident" and not self.tok.keyword("FROM"):
                alias = self.next().text
        else:
            while True:
                if self.tok.kind != "ident" or self.tok.keyword("FROM"):
                    raise self.unexpected()
                select.append(self.next())
                if not self.at_punct(","):
                    break
                self.next()
        self.expect_keyword("FROM")
        obj_tok = self.next()
        if obj_tok.kind != "ident" or "." in obj_tok.text:
            raise self.unexpected(obj_tok)
        sobject = self.store.find_sobject(obj_tok.text)
        if sobject is None:
            raise error(
                self.text,
                obj_tok.pos,
                "INVALID_TYPE",
                f"sObject type '{obj_tok.text}' is not supported. If you are attempting to use a "
                "custom object, be sure to append the '__c' after the entity name. Please "
                "reference your WSDL or the describe call for the appropriate names.",
            )
        query = Query(self.text, sobject, count=count, aggregate_alias=alias)
        seen: set[str] = set()
        for tok in select:
            ref = self.field_ref(sobject, tok)
            if ref.path.lower() in seen:
                raise error(
                    self.text, tok.pos, "MALFORMED_QUERY", f"duplicate field selected: {ref.path}"
                )
            seen.add(ref.path.lower())
            query.fields.append(ref)
        if aggregate is not None:
            query.aggregate = self.field_ref(sobject, aggregate)
        if self.tok.keyword("WHERE"):
            self.next()
            query.where = self.condition(sobject)
        if self.tok.keyword("ORDER"):
            self.next()
            self.expect_keyword("BY")
            while True:
                tok = self.next()
                if tok.kind != "ident":
                    raise self.unexpected(tok)
                ref = self.field_ref(sobject, tok)
                desc = False
                if self.tok.keyword("ASC", "DESC"):
                    desc = self.next().text.upper() == "DESC"
                nulls_first = not desc
                if self.tok.keyword("NULLS"):
                    self.next()
                    if not self.tok.keyword("FIRST", "LAST"):
                        raise self.unexpected()
                    nulls_first = self.next().text.upper() == "FIRST"
                query.order.append((ref, desc, nulls_first))
                if not self.at_punct(","):
                    break
                self.next()
        if self.tok.keyword("LIMIT"):
            self.next()
            query.limit = self.integer()
        if self.tok.keyword("OFFSET"):
            self.next()
            query.offset = self.integer()
        if self.tok.kind != "eof":
            raise self.unexpected()
        return query

    def integer(self) -> int:
        tok = self.next()
        if tok.kind != "number" or not tok.text.isdigit():
            raise self.unexpected(tok)
        return int(tok.text)

    def field_ref(self, sobject: SObject, tok: Token) -> FieldRef:
        parts = tok.text.split(".")
        if len(parts) == 2 and parts[0].lower() == sobject.name.lower():
            parts = parts[1:]  # Account.Name FROM Account names the object itself
        if len(parts) == 1:
            f = sobject.field(parts[0])
            if f is None:
                raise error(
                    self.text,
                    tok.pos,
                    "INVALID_FIELD",
                    f"No such column '{parts[0]}' on entity '{sobject.name}'. If you are "
                    "attempting to use a custom field, be sure to append the '__c' after the "
                    "custom field name. Please reference your WSDL or the describe call for the "
                    "appropriate names.",
                )
            return FieldRef(f.name, f)
        lookup = sobject.relationship(parts[0]) if len(parts) == 2 else None
        if lookup is None or lookup.reference_to is None:
            raise error(
                self.text,
                tok.pos,
                "INVALID_FIELD",
                f"Didn't understand relationship '{parts[0]}' in field path. If you are "
                "attempting to use a custom relationship, be sure to append the '__r' after the "
                "custom relationship name. Please reference your WSDL or the describe call for "
                "the appropriate names.",
            )
        parent = self.store.schema[lookup.reference_to]
        f = parent.field(parts[1])
        if f is None:
            raise error(
                self.text,
                tok.pos,
                "INVALID_FIELD",
                f"No such column '{parts[1]}' on entity '{parent.name}'. If you are attempting "
                "to use a custom field, be sure to append the '__c' after the custom field "
                "name. Please reference your WSDL or the describe call for the appropriate "
                "names.",
            )
        return FieldRef(f"{lookup.relationship_name}.{f.name}", f, lookup)

    # --------------------------------------------------------- conditions
    def condition(self, sobject: SObject) -> Callable[[dict[str, Any]], bool]:
        terms = [self.term(sobject)]
        joiner: str | None = None
        while self.tok.keyword("AND", "OR"):
            word = self.tok.text.upper()
            if joiner is not None and word != joiner:
                raise self.unexpected()
            joiner = word
            self.next()
            terms.append(self.term(sobject))
        if len(terms) == 1:
            return terms[0]
        if joiner == "AND":
            return lambda r: all(t(r) for t in terms)
        return lambda r: any(t(r) for t in terms)

    def term(self, sobject: SObject) -> Callable[[dict[str, Any]], bool]:
        if self.tok.keyword("NOT"):
            self.next()
            inner = self.term(sobject)
            return lambda r: not inner(r)
        if self.at_punct("("):
            self.next()
            inner = self.condition(sobject)
            self.expect_punct(")")
            return inner
        tok = self.next()
        if tok.kind != "ident" or tok.keyword("AND", "OR", "NOT"):
            raise self.unexpected(tok)
        ref = self.field_ref(sobject, tok)
        get = ref.getter(self.store)
        if self.tok.keyword("LIKE"):
            self.next()
            return self.like(tok, ref, get)
        negate = False
        if self.tok.keyword("NOT"):
            self.next()
            negate = True
            if not self.tok.keyword("IN"):
                raise self.unexpected()
        if self.tok.keyword("IN"):
            self.next()
            self.expect_punct("(")
            values = {self.literal(tok, ref)}
            while self.at_punct(","):
                self.next()
                values.add(self.literal(tok, ref))
            self.expect_punct(")")
            norm = _normalizer(ref.field)
            if negate:
                return lambda r: norm(get(r)) not in values
            return lambda r: norm(get(r)) in values
        op_tok = self.next()
        if op_tok.kind != "op":
            raise self.unexpected(op_tok)
        value = self.literal(tok, ref)
        return _compare(op_tok.text, get, _normalizer(ref.field), value)

    def like(
        self, field_tok: Token, ref: FieldRef, get: Callable[[dict[str, Any]], Any]
    ) -> Callable[[dict[str, Any]], bool]:
        tok = self.next()
        if tok.kind != "string":
            raise self.unexpected(tok)
        if not ref.field.text:
            raise error(
                self.text,
                field_tok.pos,
                "INVALID_FIELD",
                f"invalid operator on field: {ref.field.name}",
            )
        pattern = _like_regex(tok.text[1:-1])
        return lambda r: (v := get(r)) is not None and pattern.match(str(v)) is not None

    def literal(self, field_tok: Token, ref: FieldRef) -> Any:
        """The next literal, checked against the field's type, in the field's compared form."""
        tok = self.next()
        f = ref.field
        if tok.keyword("NULL"):
            return None
        if tok.kind == "eof" or tok.kind in ("op", "punct"):
            raise self.unexpected(tok)
        expected = _UNQUOTED_TYPES.get(f.type)

        def wrong() -> ApiError:
            if expected is None:
                detail = "must be of type string and should be enclosed in quotes"
            else:
                detail = f"must be of type {expected} and should not be enclosed in quotes"
            return error(
                self.text,
                field_tok.pos,
                "INVALID_FIELD",
                f"value of filter criterion for field '{f.name}' {detail}",
            )

        if expected is None:
            if tok.kind != "string":
                raise wrong()
            text = _unquote(tok.text)
            if f.type in ("id", "reference"):
                full = ids.normalize(text)
                if full is None:
                    raise error(
                        self.text,
                        tok.pos,
                        "INVALID_QUERY_FILTER_OPERATOR",
                        f"invalid ID field: {text}",
                    )
                return full
            return text.casefold()
        if f.type in NUMBER_TYPES:
            if tok.kind != "number":
                raise wrong()
            return float(tok.text)
        if f.type == "boolean":
            if not tok.keyword("TRUE", "FALSE"):
                raise wrong()
            return tok.text.upper() == "TRUE"
        if f.type == "date":
            if tok.kind != "date" or not valid_date(tok.text):
                raise wrong()
            return tok.text
        # datetime
        moment = parse_datetime(tok.text) if tok.kind == "datetime" else None
        if moment is None:
            raise wrong()
        return sf_datetime(moment)


def _normalizer(f: Field) -> Callable[[Any], Any]:
    """How a stored value is put in the form literals are compared in."""
    if f.text and f.type not in ("id", "reference"):
        return lambda v: None if v is None else str(v).casefold()
    if f.type in NUMBER_TYPES:
        return lambda v: None if v is None else float(v)
    return lambda v: v


def _compare(
    op: str, get: Callable[[dict[str, Any]], Any], norm: Callable[[Any], Any], value: Any
) -> Callable[[dict[str, Any]], bool]:
    if op == "=":
        return lambda r: norm(get(r)) == value
    if op in ("!=", "<>"):
        return lambda r: norm(get(r)) != value
    if value is None:
        return lambda r: False
    checks: dict[str, Callable[[Any], bool]] = {
        "<": lambda v: v < value,
        "<=": lambda v: v <= value,
        ">": lambda v: v > value,
        ">=": lambda v: v >= value,
    }
    check = checks[op]
    return lambda r: (v := norm(get(r))) is not None and check(v)


def _like_regex(pattern: str) -> re.Pattern[str]:
    out = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        out.append(".*" if char == "%" else "." if char == "_" else re.escape(char))
        i += 1
    return re.compile("".join(out) + r"\Z", re.IGNORECASE | re.DOTALL)


def parse(text: str, store: Store) -> Query:
    """Parse and check a query against the org's objects; raises :class:`ApiError` (400)."""
    if not text or not text.strip():
        raise ApiError.one(400, "MALFORMED_QUERY", "A query string has to be specified")
    return _Parser(text, store).parse()


def run(
    query: Query, store: Store, *, include_deleted: bool, version: str
) -> tuple[int, list[dict[str, Any]]]:
    """``(totalSize, records)`` of a parsed query, records shaped as the REST API sends them."""
    with store.lock:
        rows = list(store.tables[query.sobject.name].rows.values())
        if not include_deleted:
            rows = [r for r in rows if not r["IsDeleted"]]
        if query.where is not None:
            where = query.where
            rows = [r for r in rows if where(r)]
        for ref, desc, nulls_first in reversed(query.order):
            get = ref.getter(store)
            norm = _normalizer(ref.field)
            null_rank = 0 if nulls_first != desc else 1
            rows.sort(key=_sort_key(get, norm, null_rank), reverse=desc)
        rows = rows[query.offset :]
        if query.limit is not None:
            rows = rows[: query.limit]
        if query.count:
            return len(rows), []
        if query.aggregate is not None:
            get = query.aggregate.getter(store)
            number = sum(1 for r in rows if get(r) is not None)
            record = {"attributes": {"type": "AggregateResult"}, query.aggregate_alias: number}
            return 1, [record]
        return len(rows), [project(query, store, r, version) for r in rows]


def _sort_key(
    get: Callable[[dict[str, Any]], Any], norm: Callable[[Any], Any], null_rank: int
) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    """Sort nulls by ``null_rank`` (0: before values, 1: after) and values as compared."""

    def key(record: dict[str, Any]) -> tuple[Any, ...]:
        value = norm(get(record))
        return (null_rank,) if value is None else (1 - null_rank, value)

    return key


def project(query: Query, store: Store, row: dict[str, Any], version: str) -> dict[str, Any]:
    """One result record: ``attributes`` and the selected fields, parents nested."""
    name = query.sobject.name
    out: dict[str, Any] = {
        "attributes": {
            "type": name,
            "url": f"/services/data/v{version}/sobjects/{name}/{row['Id']}",
        }
    }
    for ref in query.fields:
        if ref.lookup is None:
            out[ref.field.name] = row[ref.field.name]
            continue
        relationship = ref.lookup.relationship_name or ""
        if relationship in out and out[relationship] is None:
            continue
        if relationship not in out:
            parent_id = row[ref.lookup.name]
            parent = store.record(parent_id) if parent_id else None
            if parent is None:
                out[relationship] = None
                continue
            ptype = ref.lookup.reference_to
            out[relationship] = {
                "attributes": {
                    "type": ptype,
                    "url": f"/services/data/v{version}/sobjects/{ptype}/{parent['Id']}",
                },
                "_row": parent,
            }
        nested = out[relationship]
        nested[ref.field.name] = nested["_row"][ref.field.name]
    for value in out.values():
        if isinstance(value, dict):
            value.pop("_row", None)
    return out
