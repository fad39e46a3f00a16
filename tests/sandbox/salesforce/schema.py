"""The org's objects and fields, and how a value sent for a field is checked.

Objects: Account (``001``), Contact (``003``), Order (``801``), the custom
object Order__c (``a01``), and the read-only User (``005``) and Organization
(``00D``). Each has the system fields (Id, IsDeleted, CreatedDate,
CreatedById, LastModifiedDate, LastModifiedById, SystemModstamp) and, where
Salesforce has it, OwnerId.

Rules a write meets, in the order Salesforce applies them: unknown field
(``INVALID_FIELD``), read-only field (``INVALID_FIELD_FOR_INSERT_UPDATE``),
a value of the wrong type (``JSON_PARSER_ERROR`` over REST,
``INVALID_TYPE_ON_FIELD_IN_RECORD`` in a Bulk CSV), required fields
(``REQUIRED_FIELD_MISSING``), length (``STRING_TOO_LONG``), e-mail format
(``INVALID_EMAIL_ADDRESS``), restricted picklists
(``INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST``), lookups (``MALFORMED_ID``,
``INVALID_CROSS_REFERENCE_KEY``), validation rules
(``FIELD_CUSTOM_VALIDATION_EXCEPTION``) and unique fields (``DUPLICATE_VALUE``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

#: Field types whose values are text (compared without regard to case in SOQL).
TEXT_TYPES = frozenset(
    {"string", "textarea", "picklist", "email", "phone", "url", "id", "reference"}
)
NUMBER_TYPES = frozenset({"currency", "double", "int", "percent"})
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DATETIME_RE = re.compile(
    r"^(\d{4}-\d{2}-\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:?\d{2})?$"
)


class ApiError(Exception):
    """An error answer: an HTTP status and Salesforce's list of error objects."""

    def __init__(self, status: int, errors: list[dict[str, Any]]) -> None:
        super().__init__(errors[0]["message"] if errors else str(status))
        self.status = status
        self.errors = errors
        #: the record the error is about, for a Bulk failed result's sf__Id
        self.record_id = ""

    @classmethod
    def one(cls, status: int, code: str, message: str, fields: list[str] | None = None) -> ApiError:
        """An error with one entry; ``fields`` is included only when given (as DML errors do)."""
        entry: dict[str, Any] = {"message": message, "errorCode": code}
        if fields is not None:
            entry["fields"] = fields
        return cls(status, [entry])


def not_found(message: str = "The requested resource does not exist") -> ApiError:
    """404 ``NOT_FOUND``, the answer for an unknown resource, record or object."""
    return ApiError.one(404, "NOT_FOUND", message)


@dataclass(frozen=True)
class Field:
    """One field as describe shows it, with what the sandbox needs to check a value."""

    name: str
    type: str
    label: str
    length: int = 0
    nillable: bool = True
    createable: bool = True
    updateable: bool = True
    defaulted: bool = False
    external_id: bool = False
    unique: bool = False
    reference_to: str | None = None
    relationship_name: str | None = None
    picklist: tuple[str, ...] = ()
    restricted: bool = False
    default: Any = None

    @property
    def custom(self) -> bool:
        return self.name.endswith("__c")

    @property
    def required(self) -> bool:
        """A create without a value for this field fails with ``REQUIRED_FIELD_MISSING``."""
        return not self.nillable and self.createable and not self.defaulted

    @property
    def text(self) -> bool:
        return self.type in TEXT_TYPES

    def describe(self) -> dict[str, Any]:
        """This field's entry in ``describe``'s ``fields``."""
        soap = {
            "id": "tns:ID",
            "reference": "tns:ID",
            "boolean": "xsd:boolean",
            "currency": "xsd:double",
            "double": "xsd:double",
            "percent": "xsd:double",
            "int": "xsd:int",
            "date": "xsd:date",
            "datetime": "xsd:dateTime",
        }.get(self.type, "xsd:string")
        return {
            "name": self.name,
            "label": self.label,
            "type": self.type,
            "soapType": soap,
            "length": self.length,
            "nillable": self.nillable,
            "createable": self.createable,
            "updateable": self.updateable,
            "defaultedOnCreate": self.defaulted,
            "externalId": self.external_id,
            "unique": self.unique,
            "idLookup": self.name == "Id" or self.external_id,
            "custom": self.custom,
            "filterable": True,
            "sortable": self.type != "textarea",
            "referenceTo": [self.reference_to] if self.reference_to else [],
            "relationshipName": self.relationship_name,
            "picklistValues": [
                {"active": True, "defaultValue": v == self.default, "label": v, "value": v}
                for v in self.picklist
            ],
            "restrictedPicklist": self.restricted,
        }


Rule = Callable[[dict[str, Any]], "dict[str, Any] | None"]


@dataclass
class SObject:
    """One object: its name, key prefix, fields and validation rules."""

    name: str
    label: str
    label_plural: str
    key_prefix: str
    fields: dict[str, Field]
    rules: list[Rule] = field(default_factory=list)
    createable: bool = True
    #: Salesforce fills these on create (autonumbers, formulas); name -> f(record, number)
    computed: dict[str, Callable[[dict[str, Any], int], Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._by_lower = {name.lower(): f for name, f in self.fields.items()}
        self._by_relationship = {
            f.relationship_name.lower(): f for f in self.fields.values() if f.relationship_name
        }

    @property
    def custom(self) -> bool:
        return self.name.endswith("__c")

    def field(self, name: str) -> Field | None:
        """A field by name, regardless of case (as the API reads field names)."""
        return self._by_lower.get(name.lower())

    def relationship(self, name: str) -> Field | None:
        """The lookup field behind a relationship name (``Account`` or ``Account__r``)."""
        return self._by_relationship.get(name.lower())

    def urls(self, version: str) -> dict[str, str]:
        base = f"/services/data/v{version}/sobjects/{self.name}"
        return {
            "sobject": base,
            "describe": f"{base}/describe",
            "rowTemplate": f"{base}/{{ID}}",
        }

    def summary(self, version: str) -> dict[str, Any]:
        """This object's entry in the global describe and in ``objectDescribe``."""
        return {
            "name": self.name,
            "label": self.label,
            "labelPlural": self.label_plural,
            "keyPrefix": self.key_prefix,
            "custom": self.custom,
            "createable": self.createable,
            "updateable": self.createable,
            "deletable": self.createable,
            "queryable": True,
            "retrieveable": True,
            "searchable": True,
            "urls": self.urls(version),
        }

    def describe(self, version: str) -> dict[str, Any]:
        """``GET sobjects/{name}/describe``: the object and its fields."""
        return {
            **self.summary(version),
            "fields": [f.describe() for f in self.fields.values()],
            "childRelationships": [],
            "recordTypeInfos": [],
        }


# ----------------------------------------------------------------- values
def sf_datetime(moment: datetime) -> str:
    """The way Salesforce writes a dateTime: ``2024-05-01T09:30:00.000+0000``."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"


def parse_datetime(text: str) -> datetime | None:
    """A dateTime in any of the ISO 8601 forms Salesforce reads and writes."""
    match = _DATETIME_RE.match(text)
    if not match:
        return None
    day, hh, mm, ss, frac, zone = match.groups()
    try:
        base = datetime.fromisoformat(f"{day}T{hh}:{mm}:{ss}")
    except ValueError:
        return None
    micro = int((frac or "0")[:6].ljust(6, "0"))
    base = base.replace(microsecond=micro, tzinfo=UTC)
    if zone and zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        digits = zone[1:].replace(":", "")
        base -= timedelta(minutes=sign * (int(digits[:2]) * 60 + int(digits[2:])))
    return base


def valid_date(text: str) -> bool:
    if not _DATE_RE.match(text):
        return False
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return True


class BadValue(Exception):
    """A value that does not fit its field's type."""


def coerce(f: Field, value: Any) -> Any:
    """The stored form of ``value`` for field ``f``; raises :class:`BadValue`.

    Text is stored as ``str`` (an empty string is stored as null, as
    Salesforce does), numbers as ``float`` (``int`` for int fields), checkboxes
    as ``bool``, dates as ``YYYY-MM-DD`` and dateTimes in Salesforce's format.
    """
    if value is None:
        return False if f.type == "boolean" else None
    if f.type == "boolean":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
            return value.lower() in ("true", "1")
        raise BadValue(value)
    if f.type in NUMBER_TYPES:
        if isinstance(value, bool):
            raise BadValue(value)
        if isinstance(value, int | float):
            number = float(value)
        elif isinstance(value, str):
            if value.strip() == "":
                return None
            try:
                number = float(value)
            except ValueError:
                raise BadValue(value) from None
        else:
            raise BadValue(value)
        if math.isnan(number) or math.isinf(number):
            raise BadValue(value)
        if f.type == "int":
            if number != int(number):
                raise BadValue(value)
            return int(number)
        return number
    if f.type == "date":
        if isinstance(value, str) and valid_date(value):
            return value
        raise BadValue(value)
    if f.type == "datetime":
        if isinstance(value, str):
            moment = parse_datetime(value)
            if moment is not None:
                return sf_datetime(moment)
        raise BadValue(value)
    # text of any kind
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, int | float):
        text = repr(value) if isinstance(value, float) else str(value)
    elif isinstance(value, str):
        text = value
    else:
        raise BadValue(value)
    return text if text != "" else None


def csv_text(value: Any) -> str:
    """A stored value as a Bulk CSV cell."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return repr(value)
    return str(value)


# ---------------------------------------------------------------- objects
def _system(*, owner: bool = True) -> list[Field]:
    ro: dict[str, Any] = {
        "createable": False,
        "updateable": False,
        "nillable": False,
        "defaulted": True,
    }
    fields = [
        Field("Id", "id", "Record ID", 18, **ro),
        Field("IsDeleted", "boolean", "Deleted", **ro),
        Field("CreatedDate", "datetime", "Created Date", **ro),
        Field("CreatedById", "reference", "Created By ID", 18, reference_to="User", **ro),
        Field("LastModifiedDate", "datetime", "Last Modified Date", **ro),
        Field(
            "LastModifiedById", "reference", "Last Modified By ID", 18, reference_to="User", **ro
        ),
        Field("SystemModstamp", "datetime", "System Modstamp", **ro),
    ]
    if owner:
        fields.append(
            Field(
                "OwnerId",
                "reference",
                "Owner ID",
                18,
                nillable=False,
                defaulted=True,
                reference_to="User",
                relationship_name="Owner",
            )
        )
    return fields


def _fields(*items: Field, owner: bool = True) -> dict[str, Field]:
    system = _system(owner=owner)
    ordered = [system[0], *items, *system[1:]]
    return {f.name: f for f in ordered}


_POSTAL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 -]{2,9}$")


def _billing_postal_code(record: dict[str, Any]) -> dict[str, Any] | None:
    """Validation rule ``Billing_Postal_Code_Format`` on Account.

    A billing postal code, when given, is 3 to 10 letters, digits, spaces or
    hyphens starting with a letter or digit, and not only zeros.
    """
    code = record.get("BillingPostalCode")
    if code is None:
        return None
    if _POSTAL_RE.match(code) and code.strip("0 -") != "":
        return None
    return {
        "message": "Billing postal code is not valid.",
        "errorCode": "FIELD_CUSTOM_VALIDATION_EXCEPTION",
        "fields": ["BillingPostalCode"],
    }


def _contact_name(record: dict[str, Any], _number: int) -> str:
    return " ".join(p for p in (record.get("FirstName"), record.get("LastName")) if p)


def build_schema() -> dict[str, SObject]:
    """A fresh set of the org's objects, by name."""
    account = SObject(
        "Account",
        "Account",
        "Accounts",
        "001",
        _fields(
            Field("Name", "string", "Account Name", 255, nillable=False),
            Field("AccountNumber", "string", "Account Number", 40),
            Field(
                "Type",
                "picklist",
                "Account Type",
                255,
                picklist=("Prospect", "Customer - Direct", "Customer - Channel", "Partner"),
            ),
            Field(
                "Industry",
                "picklist",
                "Industry",
                255,
                picklist=("Agriculture", "Manufacturing", "Retail", "Technology", "Other"),
            ),
            Field("Phone", "phone", "Account Phone", 40),
            Field("Website", "url", "Website", 255),
            Field("BillingStreet", "textarea", "Billing Street", 255),
            Field("BillingCity", "string", "Billing City", 40),
            Field("BillingState", "string", "Billing State/Province", 80),
            Field("BillingPostalCode", "string", "Billing Zip/Postal Code", 20),
            Field("BillingCountry", "string", "Billing Country", 80),
            Field("AnnualRevenue", "currency", "Annual Revenue"),
            Field("NumberOfEmployees", "int", "Employees"),
            Field("Description", "textarea", "Account Description", 32000),
            Field("External_Id__c", "string", "External Id", 50, external_id=True, unique=True),
        ),
        rules=[_billing_postal_code],
    )
    contact = SObject(
        "Contact",
        "Contact",
        "Contacts",
        "003",
        _fields(
            Field("FirstName", "string", "First Name", 40),
            Field("LastName", "string", "Last Name", 80, nillable=False),
            Field("Name", "string", "Full Name", 121, createable=False, updateable=False),
            Field("Email", "email", "Email", 80),
            Field("Phone", "phone", "Business Phone", 40),
            Field("Title", "string", "Title", 128),
            Field(
                "AccountId",
                "reference",
                "Account ID",
                18,
                reference_to="Account",
                relationship_name="Account",
            ),
            Field("MailingPostalCode", "string", "Mailing Zip/Postal Code", 20),
            # an external id that is not unique: an upsert on it can match several contacts
            Field("Legacy_Id__c", "string", "Legacy Id", 50, external_id=True),
        ),
        computed={"Name": _contact_name},
    )
    order = SObject(
        "Order",
        "Order",
        "Orders",
        "801",
        _fields(
            Field(
                "AccountId",
                "reference",
                "Account ID",
                18,
                nillable=False,
                reference_to="Account",
                relationship_name="Account",
            ),
            Field("EffectiveDate", "date", "Order Start Date", nillable=False),
            Field(
                "Status",
                "picklist",
                "Status",
                40,
                nillable=False,
                defaulted=True,
                picklist=("Draft", "Activated"),
                restricted=True,
                default="Draft",
            ),
            Field("OrderNumber", "string", "Order Number", 30, createable=False, updateable=False),
            Field("Description", "textarea", "Description", 32000),
        ),
        computed={"OrderNumber": lambda _r, n: f"{n + 100:08d}"},
    )
    order_c = SObject(
        "Order__c",
        "Order",
        "Orders",
        "a01",
        _fields(
            Field("Name", "string", "Order Name", 80, nillable=False),
            Field(
                "Account__c",
                "reference",
                "Account",
                18,
                reference_to="Account",
                relationship_name="Account__r",
            ),
            Field("Amount__c", "currency", "Amount"),
            Field(
                "Status__c",
                "picklist",
                "Status",
                255,
                picklist=("New", "Confirmed", "Shipped", "Cancelled"),
            ),
            Field("Order_Date__c", "date", "Order Date"),
            Field("External_Id__c", "string", "External Id", 50, external_id=True, unique=True),
        ),
    )
    ro: dict[str, Any] = {"createable": False, "updateable": False}
    user = SObject(
        "User",
        "User",
        "Users",
        "005",
        _fields(
            Field("Username", "string", "Username", 80, nillable=False, **ro),
            Field("FirstName", "string", "First Name", 40, **ro),
            Field("LastName", "string", "Last Name", 80, nillable=False, **ro),
            Field("Name", "string", "Full Name", 121, **ro),
            Field("Email", "email", "Email", 128, nillable=False, **ro),
            Field("IsActive", "boolean", "Active", nillable=False, **ro),
            owner=False,
        ),
        createable=False,
    )
    organization = SObject(
        "Organization",
        "Organization",
        "Organizations",
        "00D",
        _fields(
            Field("Name", "string", "Name", 80, nillable=False, **ro),
            Field("IsSandbox", "boolean", "Is Sandbox", nillable=False, **ro),
            Field("OrganizationType", "picklist", "Edition", 40, **ro),
            Field("InstanceName", "string", "Instance Name", 5, **ro),
            owner=False,
        ),
        createable=False,
    )
    return {o.name: o for o in (account, contact, order, order_c, user, organization)}


def check_email(value: str) -> bool:
    return bool(_EMAIL_RE.match(value))
