"""The customer master of the order-entry app: 57 fixed customers, numbered K-1001 to K-1057.

The list is the same on every start, so a test can name a customer (say
``Bäckerei Albrecht``) and find it in the autocomplete and on page 1 of the
customer table.
"""

from __future__ import annotations

from dataclasses import dataclass

_SURNAMES = [
    "Albrecht",
    "Bauer",
    "Claussen",
    "Dietrich",
    "Ebert",
    "Fischer",
    "Günther",
    "Hoffmann",
    "Illner",
    "Jäger",
    "Krüger",
    "Lorenz",
    "Möller",
    "Neumann",
    "Otto",
    "Peters",
    "Quandt",
    "Richter",
    "Schäfer",
]
_TRADES = ["Bäckerei {}", "{} Metallbau GmbH", "{} & Söhne KG"]
_CITIES = [
    ("Berlin", "10115"),
    ("Hamburg", "20095"),
    ("München", "80331"),
    ("Köln", "50667"),
    ("Frankfurt am Main", "60311"),
    ("Stuttgart", "70173"),
    ("Düsseldorf", "40213"),
    ("Leipzig", "04109"),
]


@dataclass(frozen=True)
class Customer:
    number: str
    name: str
    city: str
    postal_code: str


def _build() -> list[Customer]:
    customers: list[Customer] = []
    for trade in _TRADES:
        for surname in _SURNAMES:
            n = len(customers)
            city, postal = _CITIES[n % len(_CITIES)]
            customers.append(Customer(f"K-{1001 + n}", trade.format(surname), city, postal))
    return customers


CUSTOMERS: list[Customer] = _build()
BY_NUMBER: dict[str, Customer] = {c.number: c for c in CUSTOMERS}


def suggest(query: str, limit: int = 10) -> list[Customer]:
    """Customers whose name contains ``query`` (any case), in number order, at most ``limit``."""
    needle = query.strip().casefold()
    if not needle:
        return []
    return [c for c in CUSTOMERS if needle in c.name.casefold()][:limit]
