"""The order form's checks, with the messages the old app shows in red above the form."""

from __future__ import annotations

import re
from decimal import Decimal

from tests.sandbox.legacy_web.customers import BY_NUMBER

MAX_REFERENCE = 20
_POSTAL = re.compile(r"\d{5}")  # German postal codes: exactly five digits
_AMOUNT = re.compile(r"\d{1,9}(?:[.,]\d{1,2})?")


def validate(values: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    """``(clean values, errors)``; the order may be saved only when ``errors`` is empty.

    ``values`` holds ``reference``, ``customer``, ``customer_number`` (set
    only by choosing from the autocomplete list), ``postal_code`` and
    ``amount`` (``1234.50`` or ``1234,50``; cleaned to ``1234.50``).
    """
    clean = dict(values)
    errors = []
    reference = values["reference"]
    if not reference:
        errors.append("Reference is required")
    elif len(reference) > MAX_REFERENCE:
        errors.append(f"Reference {reference} is too long (at most {MAX_REFERENCE} characters)")
    customer = BY_NUMBER.get(values["customer_number"])
    if customer is None or customer.name != values["customer"]:
        errors.append("Please choose a customer from the list")
    postal = values["postal_code"]
    if not postal:
        errors.append("Postal code is required")
    elif not _POSTAL.fullmatch(postal):
        errors.append(f"Postal code {postal} is not valid")
    amount = values["amount"]
    if _AMOUNT.fullmatch(amount) and Decimal(amount.replace(",", ".")) > 0:
        clean["amount"] = f"{Decimal(amount.replace(',', '.')):.2f}"
    else:
        errors.append(f"Amount {amount} is not valid" if amount else "Amount is required")
    return clean, errors
