"""Salesforce-style record ids: 15 case-sensitive characters and a 3-character checksum.

An id is a 3-character key prefix naming the object (``001`` Account), 2
characters for the instance, a reserved ``0`` and a 9-character base-62
number. The 18-character form appends one character per 5-character chunk
telling which of its letters are upper case, so the id survives tools that
ignore case. Both forms name the same record; the API answers with 18.
"""

from __future__ import annotations

import re

BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_SUFFIX = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
#: The instance part of every id the sandbox makes (real ones look like ``5g``, ``8c``).
INSTANCE = "5g"
#: Record numbers start here, so ids look like real ones (``0015g00000Ab3xYAAS``).
FIRST_NUMBER = 2_500_000_000
_ID_RE = re.compile(r"^[a-zA-Z0-9]{15}(?:[A-Z0-5]{3})?$")


def checksum(id15: str) -> str:
    """The 3-character suffix of a 15-character id."""
    out = []
    for start in (0, 5, 10):
        flags = 0
        for bit, char in enumerate(id15[start : start + 5]):
            if "A" <= char <= "Z":
                flags |= 1 << bit
        out.append(_SUFFIX[flags])
    return "".join(out)


def make_id(prefix: str, number: int) -> str:
    """The 18-character id number ``number`` of the object with key prefix ``prefix``."""
    digits = []
    number += FIRST_NUMBER
    for _ in range(9):
        number, rest = divmod(number, 62)
        digits.append(BASE62[rest])
    id15 = f"{prefix}{INSTANCE}0{''.join(reversed(digits))}"
    return id15 + checksum(id15)


def normalize(value: str) -> str | None:
    """The 18-character form of a 15- or 18-character id, or ``None`` if it is not one."""
    if not _ID_RE.match(value):
        return None
    id15 = value[:15]
    full = id15 + checksum(id15)
    if len(value) == 18 and value[15:] != full[15:]:
        return None
    return full
