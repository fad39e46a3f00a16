"""The org's records: create, read, update, upsert and delete with Salesforce's checks.

Every public method takes :attr:`Store.lock` (re-entrant), so the HTTP
handlers' threads and the test's thread may call them at once. Records are
dicts holding every field of their object (null ones too); deletes are soft
(``IsDeleted`` true, still seen by ``queryAll``) unless ``hard``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Iterable
from datetime import UTC, datetime
from typing import Any

from tests.sandbox.salesforce import ids
from tests.sandbox.salesforce.schema import (
    ApiError,
    BadValue,
    Field,
    SObject,
    build_schema,
    check_email,
    coerce,
    not_found,
    sf_datetime,
)

#: What a CSV cell holds to set a field to null (an empty cell leaves it as it is).
CSV_NULL = "#N/A"


class MultipleMatches(Exception):
    """An external id value matched several records (the API answers 300)."""

    def __init__(self, ids_: list[str]) -> None:
        super().__init__(f"{len(ids_)} records match")
        self.ids = ids_


class Table:
    """The records of one object, in creation order, with indexes on external ids."""

    def __init__(self, sobject: SObject) -> None:
        self.sobject = sobject
        self.rows: dict[str, dict[str, Any]] = {}
        self.number = 0
        self.indexed = [f.name for f in sobject.fields.values() if f.external_id or f.unique]
        self.index: dict[str, dict[str, list[str]]] = {name: {} for name in self.indexed}

    def add_to_index(self, record: dict[str, Any]) -> None:
        for name in self.indexed:
            value = record.get(name)
            if value is not None:
                self.index[name].setdefault(_key(value), []).append(record["Id"])

    def remove_from_index(self, record: dict[str, Any]) -> None:
        for name in self.indexed:
            value = record.get(name)
            if value is not None:
                found = self.index[name].get(_key(value))
                if found and record["Id"] in found:
                    found.remove(record["Id"])
                    if not found:
                        del self.index[name][_key(value)]


def _json_token(value: Any) -> str:
    """The name the JSON parser gives a value's token, as its error messages show it."""
    if isinstance(value, bool):
        return "VALUE_TRUE" if value else "VALUE_FALSE"
    if isinstance(value, int):
        return "VALUE_NUMBER_INT"
    if isinstance(value, float):
        return "VALUE_NUMBER_FLOAT"
    if isinstance(value, dict):
        return "START_OBJECT"
    if isinstance(value, list):
        return "START_ARRAY"
    return "VALUE_STRING"


def _key(value: Any) -> str:
    """External ids and unique text match regardless of case, as in a default Salesforce org."""
    return str(value).casefold()


class Store:
    """All records of the org, with the user every change is made as."""

    def __init__(self, user_id: str, org_id: str, username: str) -> None:
        self.lock = threading.RLock()
        self.user_id = user_id
        self.org_id = org_id
        self.username = username
        self.schema = build_schema()
        self._lower = {name.lower(): s for name, s in self.schema.items()}
        self.tables: dict[str, Table] = {}
        self.clear()

    # ------------------------------------------------------------ lookups
    def find_sobject(self, name: str) -> SObject | None:
        """An object by name, regardless of case."""
        return self._lower.get(name.lower())

    def sobject(self, name: str) -> SObject:
        """An object by name; an unknown one is 404 ``NOT_FOUND`` as on the REST paths."""
        found = self.find_sobject(name)
        if found is None:
            raise not_found()
        return found

    def table(self, name: str) -> Table:
        return self.tables[self.sobject(name).name]

    def sobject_of_id(self, record_id: str) -> SObject | None:
        for sobject in self.schema.values():
            if record_id.startswith(sobject.key_prefix):
                return sobject
        return None

    def record(self, record_id: str) -> dict[str, Any] | None:
        """Any object's record by its 15- or 18-character id (deleted ones too)."""
        full = ids.normalize(record_id)
        sobject = self.sobject_of_id(full) if full else None
        if full is None or sobject is None:
            return None
        return self.tables[sobject.name].rows.get(full)

    def get(self, obj: str, record_id: str) -> dict[str, Any]:
        """A live record; 404 ``NOT_FOUND`` for an id of another shape or object, or no record.

        Salesforce reads a path segment that is not an id of this object as
        the name of an external id field, hence the message.
        """
        with self.lock:
            table = self.table(obj)
            full = ids.normalize(record_id)
            if full is None or not full.startswith(table.sobject.key_prefix):
                raise not_found(
                    f"Provided external ID field does not exist or is not accessible: {record_id}"
                )
            row = table.rows.get(full)
            if row is None:
                raise not_found()
            if row["IsDeleted"]:
                raise ApiError.one(404, "ENTITY_IS_DELETED", "entity is deleted", [])
            return row

    def lookup(self, obj: str, field_name: str, value: Any) -> list[str]:
        """Ids of live records whose external id field ``field_name`` equals ``value``."""
        with self.lock:
            table = self.table(obj)
            f = self.external_field(table.sobject, field_name)
            if f.name == "Id":
                full = ids.normalize(str(value))
                row = table.rows.get(full) if full else None
                return [row["Id"]] if row is not None and not row["IsDeleted"] else []
            return list(table.index[f.name].get(_key(value), []))

    def external_field(self, sobject: SObject, field_name: str) -> Field:
        """The field an upsert or a lookup by external id uses; 404 if it is not one."""
        f = sobject.field(field_name)
        if f is None or not (f.external_id or f.name == "Id"):
            raise not_found(
                f"Provided external ID field does not exist or is not accessible: {field_name}"
            )
        return f

    def resolve_parent(self, f: Field, ext_field: str, value: Any) -> str:
        """The id of the parent record a lookup names by one of the parent's external ids."""
        assert f.reference_to is not None
        parent = self.schema[f.reference_to]
        pf = parent.field(ext_field)
        if pf is None or not (pf.external_id or pf.name == "Id"):
            raise ApiError.one(
                400,
                "INVALID_FIELD",
                f"Field name provided, {ext_field} is not an External ID or indexed field "
                f"for {parent.name}",
                [],
            )
        found = self.lookup(parent.name, pf.name, value)
        if not found:
            raise ApiError.one(
                400,
                "INVALID_FIELD",
                f"Foreign key external ID: {value} not found for field {pf.name} in entity "
                f"{parent.name}",
                [],
            )
        if len(found) > 1:
            raise ApiError.one(
                400,
                "INVALID_FIELD",
                f"Foreign key external ID: {value} matches more than one record for field "
                f"{pf.name} in entity {parent.name}",
                [],
            )
        return found[0]

    # ------------------------------------------------------------ changes
    def prepare(
        self,
        sobject: SObject,
        values: dict[str, Any],
        *,
        creating: bool,
        from_csv: bool = False,
    ) -> dict[str, Any]:
        """Check a body's field names and value types; the changes in stored form."""
        changes: dict[str, Any] = {}
        for name, raw in values.items():
            if name == "attributes" or (name == "Id" and not creating):
                continue
            f = sobject.field(name)
            if f is None and isinstance(raw, dict):
                parent = sobject.relationship(name)
                if parent is not None and len(raw) - ("attributes" in raw) == 1:
                    ext_name, ext_value = next((k, v) for k, v in raw.items() if k != "attributes")
                    changes[parent.name] = self.resolve_parent(parent, ext_name, ext_value)
                    continue
            if f is None:
                raise ApiError.one(
                    400,
                    "INVALID_FIELD",
                    f"No such column '{name}' on sobject of type {sobject.name}",
                )
            if not (f.createable if creating else f.updateable):
                raise ApiError.one(
                    400,
                    "INVALID_FIELD_FOR_INSERT_UPDATE",
                    f"Unable to create/update fields: {f.name}. Please check the security "
                    "settings of this field and verify that it is read/write for your profile "
                    "or permission set.",
                    [f.name],
                )
            if from_csv and raw == CSV_NULL:
                changes[f.name] = coerce(f, None)
                continue
            try:
                changes[f.name] = coerce(f, raw)
            except BadValue:
                if from_csv:
                    raise ApiError.one(
                        400,
                        "INVALID_TYPE_ON_FIELD_IN_RECORD",
                        f"{f.label}: value not of required type: {raw}",
                        [f.name],
                    ) from None
                raise ApiError.one(
                    400,
                    "JSON_PARSER_ERROR",
                    f"Cannot deserialize instance of {f.type} from {_json_token(raw)} value {raw} "
                    "or request may be missing a required field",
                ) from None
        return changes

    def check(
        self,
        table: Table,
        record: dict[str, Any],
        changed: Collection[str],
    ) -> None:
        """Required fields, lengths, formats, lookups, validation rules and unique values."""
        sobject = table.sobject
        missing = [f.name for f in sobject.fields.values() if f.required and record[f.name] is None]
        if missing:
            raise ApiError.one(
                400,
                "REQUIRED_FIELD_MISSING",
                f"Required fields are missing: [{', '.join(missing)}]",
                missing,
            )
        for name in changed:
            f = sobject.fields[name]
            value = record[name]
            if value is None:
                continue
            if f.text and f.length and isinstance(value, str) and len(value) > f.length:
                raise ApiError.one(
                    400,
                    "STRING_TOO_LONG",
                    f"{f.label}: data value too large: {value[:80]} (max length={f.length})",
                    [f.name],
                )
            if f.type == "email" and not check_email(value):
                raise ApiError.one(
                    400,
                    "INVALID_EMAIL_ADDRESS",
                    f"{f.label}: invalid email address: {value}",
                    [f.name],
                )
            if f.restricted and value not in f.picklist:
                raise ApiError.one(
                    400,
                    "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                    f"{f.label}: bad value for restricted picklist field: {value}",
                    [f.name],
                )
            if f.type == "reference":
                record[name] = self._check_reference(f, value)
        for rule in sobject.rules:
            error = rule(record)
            if error is not None:
                raise ApiError(400, [error])
        for name in table.indexed:
            f = sobject.fields[name]
            value = record.get(name)
            if not f.unique or value is None or name not in changed:
                continue
            for other in table.index[name].get(_key(value), []):
                if other != record["Id"]:
                    raise ApiError.one(
                        400,
                        "DUPLICATE_VALUE",
                        f"duplicate value found: {name} duplicates value on record with id: "
                        f"{other}",
                        [],
                    )

    def _check_reference(self, f: Field, value: str) -> str:
        full = ids.normalize(value)
        if full is None:
            raise ApiError.one(
                400, "MALFORMED_ID", f"{f.label}: id value of incorrect type: {value}", [f.name]
            )
        assert f.reference_to is not None
        target = self.schema[f.reference_to]
        if not full.startswith(target.key_prefix):
            raise ApiError.one(
                400,
                "FIELD_INTEGRITY_EXCEPTION",
                f"{f.label}: id value of incorrect type: {value}",
                [f.name],
            )
        row = self.tables[target.name].rows.get(full)
        if row is None:
            raise ApiError.one(
                400,
                "INSUFFICIENT_ACCESS_ON_CROSS_REFERENCE_ENTITY",
                f"insufficient access rights on cross-reference id: {value}",
                [],
            )
        if row["IsDeleted"]:
            raise ApiError.one(400, "ENTITY_IS_DELETED", "entity is deleted", [f.name])
        return full

    def _blank(self, table: Table, now: str) -> dict[str, Any]:
        sobject = table.sobject
        record: dict[str, Any] = {name: None for name in sobject.fields}
        for f in sobject.fields.values():
            if f.type == "boolean":
                record[f.name] = False
            elif f.default is not None:
                record[f.name] = f.default
        table.number += 1
        record["Id"] = ids.make_id(sobject.key_prefix, table.number)
        record["CreatedDate"] = record["LastModifiedDate"] = record["SystemModstamp"] = now
        record["CreatedById"] = record["LastModifiedById"] = self.user_id
        if "OwnerId" in record:
            record["OwnerId"] = self.user_id
        return record

    def _computed(self, table: Table, record: dict[str, Any]) -> None:
        for name, compute in table.sobject.computed.items():
            record[name] = compute(record, table.number)

    def _writable(self, obj: str, verb: str) -> Table:
        table = self.table(obj)
        if not table.sobject.createable:
            raise ApiError.one(
                400,
                "INVALID_TYPE_FOR_OPERATION",
                f"entity type cannot be {verb}: {table.sobject.name}",
                [],
            )
        return table

    def create(self, obj: str, values: dict[str, Any], *, from_csv: bool = False) -> str:
        """Insert one record after every check; its new id."""
        with self.lock:
            table = self._writable(obj, "inserted")
            if "Id" in values and values["Id"] not in (None, ""):
                raise ApiError.one(
                    400,
                    "INVALID_FIELD_FOR_INSERT_UPDATE",
                    "Unable to create/update fields: Id. Please check the security settings of "
                    "this field and verify that it is read/write for your profile or permission "
                    "set.",
                    ["Id"],
                )
            values = {k: v for k, v in values.items() if k != "Id"}
            changes = self.prepare(table.sobject, values, creating=True, from_csv=from_csv)
            record = self._blank(table, sf_datetime(datetime.now(UTC)))
            record.update(changes)
            self._computed(table, record)
            try:
                self.check(table, record, changes)
            except ApiError:
                table.number -= 1  # the number is not used up by a rejected insert
                raise
            table.rows[record["Id"]] = record
            table.add_to_index(record)
            return str(record["Id"])

    def update(
        self, obj: str, record_id: str, values: dict[str, Any], *, from_csv: bool = False
    ) -> str:
        """Change one live record after every check; its id."""
        with self.lock:
            table = self._writable(obj, "updated")
            current = self.get(obj, record_id)
            changes = self.prepare(table.sobject, values, creating=False, from_csv=from_csv)
            record = dict(current)
            record.update(changes)
            self._computed_update(table, record)
            self.check(table, record, changes)
            now = sf_datetime(datetime.now(UTC))
            record["LastModifiedDate"] = record["SystemModstamp"] = now
            record["LastModifiedById"] = self.user_id
            table.remove_from_index(current)
            current.clear()
            current.update(record)
            table.add_to_index(current)
            return str(current["Id"])

    def _computed_update(self, table: Table, record: dict[str, Any]) -> None:
        for name, compute in table.sobject.computed.items():
            if name == "Name":  # formulas follow the record; autonumbers keep their value
                record[name] = compute(record, table.number)

    def upsert(
        self,
        obj: str,
        field_name: str,
        value: str,
        values: dict[str, Any],
        *,
        from_csv: bool = False,
    ) -> tuple[str, bool]:
        """Update the one record whose external id is ``value``, or create it: ``(id, created)``.

        Several matches raise :class:`MultipleMatches`. With field ``Id``, a
        record that does not exist is 404 ``NOT_FOUND``.
        """
        with self.lock:
            table = self._writable(obj, "inserted")
            f = self.external_field(table.sobject, field_name)
            found = self.lookup(obj, f.name, value)
            body = {k: v for k, v in values.items() if k.lower() != f.name.lower()}
            if len(found) > 1:
                raise MultipleMatches(found)
            if found:
                return self.update(obj, found[0], body, from_csv=from_csv), False
            if f.name == "Id":
                raise not_found()
            return self.create(obj, {**body, f.name: value}, from_csv=from_csv), True

    def delete(self, obj: str, record_id: str, *, hard: bool = False) -> str:
        """Delete one live record (to the recycle bin unless ``hard``); its id."""
        with self.lock:
            table = self._writable(obj, "deleted")
            row = self.get(obj, record_id)
            table.remove_from_index(row)
            if hard:
                del table.rows[row["Id"]]
            else:
                row["IsDeleted"] = True
                row["SystemModstamp"] = sf_datetime(datetime.now(UTC))
            return str(row["Id"])

    # ------------------------------------------------------------ seeding
    def clear(self) -> None:
        """No records but the org itself and its integration user."""
        with self.lock:
            self.tables = {name: Table(s) for name, s in self.schema.items()}
            now = sf_datetime(datetime.now(UTC))
            for name, record_id, values in (
                (
                    "Organization",
                    self.org_id,
                    {
                        "Name": "Hub Sandbox Org",
                        "IsSandbox": True,
                        "OrganizationType": "Developer Edition",
                        "InstanceName": "SBX1",
                    },
                ),
                (
                    "User",
                    self.user_id,
                    {
                        "Username": self.username,
                        "FirstName": "Integration",
                        "LastName": "User",
                        "Name": "Integration User",
                        "Email": "integration@example.com",
                        "IsActive": True,
                    },
                ),
            ):
                table = self.tables[name]
                record = self._blank(table, now)
                record.update(values, Id=record_id)
                record.pop("OwnerId", None)
                table.rows[record_id] = record

    def seed(self, obj: str, records: Iterable[dict[str, Any]]) -> list[str]:
        """Insert records as a data load would, skipping validation rules and unique checks.

        Field names and value types are still checked (a typo in a test
        fails loudly); required fields are not.
        """
        made: list[str] = []
        with self.lock:
            table = self.table(obj)
            now = sf_datetime(datetime.now(UTC))
            for values in records:
                changes = self.prepare(
                    table.sobject, {k: v for k, v in values.items() if k != "Id"}, creating=True
                )
                record = self._blank(table, now)
                record.update(changes)
                self._computed(table, record)
                table.rows[record["Id"]] = record
                table.add_to_index(record)
                made.append(record["Id"])
        return made

    def seed_many(
        self, obj: str, count: int, make: Callable[[int], dict[str, Any]] | None = None
    ) -> list[str]:
        """``count`` records fast: ``make(i)`` gives record i's values, stored as given.

        Without ``make``: Accounts ``Account 00001`` with ``External_Id__c``
        ``ACC-00001``, Contacts ``Contact 00001``, Order__c ``Order 00001``
        with ``ORD-00001``. Values are not checked.
        """
        with self.lock:
            table = self.table(obj)
            make = make or _default_maker(table.sobject)
            now = sf_datetime(datetime.now(UTC))
            template = self._blank(table, now)
            table.number -= 1
            start = table.number
            prefix = table.sobject.key_prefix
            rows = table.rows
            made: list[str] = []
            computed = table.sobject.computed
            for i in range(1, count + 1):
                record = template.copy()
                record.update(make(i))
                record_id = ids.make_id(prefix, start + i)
                record["Id"] = record_id
                if computed:
                    for name, compute in computed.items():
                        record[name] = compute(record, start + i)
                rows[record_id] = record
                made.append(record_id)
            table.number = start + count
            if table.indexed:
                for record_id in made:
                    table.add_to_index(rows[record_id])
            return made

    def live(self, obj: str, *, include_deleted: bool = False) -> list[dict[str, Any]]:
        """Copies of an object's records in creation order."""
        with self.lock:
            table = self.table(obj)
            return [dict(r) for r in table.rows.values() if include_deleted or not r["IsDeleted"]]


def _default_maker(sobject: SObject) -> Callable[[int], dict[str, Any]]:
    if sobject.name == "Account":
        return lambda i: {"Name": f"Account {i:05d}", "External_Id__c": f"ACC-{i:05d}"}
    if sobject.name == "Contact":
        return lambda i: {"LastName": f"Contact {i:05d}", "Email": f"contact{i}@example.com"}
    if sobject.name == "Order__c":
        return lambda i: {"Name": f"Order {i:05d}", "External_Id__c": f"ORD-{i:05d}"}
    return lambda i: {}
