"""The ERP's state and business rules, in plain Python (no XML here).

:class:`ErpStore` is not locked by itself: :class:`~.server.ErpSandbox` calls it under its
lock, so a check and the change it guards (idempotency, stock) happen atomically.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal

CENT = Decimal("0.01")


@dataclass(frozen=True)
class OrderLine:
    """One line of a stored order."""

    line_number: int
    sku: str
    quantity: int
    unit_price: Decimal
    line_total: Decimal


@dataclass(frozen=True)
class Order:
    """A stored sales order."""

    order_number: str
    external_reference: str
    customer_number: str
    requested_date: date
    currency: str
    status: str
    total: Decimal
    created_at: datetime
    lines: tuple[OrderLine, ...]


@dataclass(frozen=True)
class LineRequest:
    """One requested line, as the request carried it."""

    sku: str
    quantity: int
    unit_price: Decimal


@dataclass(frozen=True)
class OrderRequest:
    """A CreateSalesOrder request."""

    customer_number: str
    external_reference: str
    requested_date: date
    currency: str
    lines: tuple[LineRequest, ...]


@dataclass(frozen=True)
class StockLevel:
    """Stock of one SKU in its warehouse."""

    sku: str
    on_hand: int
    reserved: int
    warehouse: str

    @property
    def available(self) -> int:
        """What a new order may still reserve."""
        return self.on_hand - self.reserved


@dataclass(frozen=True)
class Customer:
    """An entry of the customer master."""

    customer_number: str
    name: str
    country: str


SEED_STOCK: tuple[StockLevel, ...] = (
    StockLevel("SKU-100", 100, 0, "WH-1"),
    StockLevel("SKU-200", 50, 5, "WH-1"),
    StockLevel("SKU-300", 5, 0, "WH-2"),
    StockLevel("SKU-400", 0, 0, "WH-2"),
    StockLevel("SKU-500", 1000, 250, "WH-3"),
)

_NAMES = (
    ("Acme Industrial", "DE"),
    ("Borealis Trading", "SE"),
    ("Cobalt Foods", "NL"),
    ("Delta Marine", "NO"),
    ("Evergreen Retail", "GB"),
    ("Fjord Logistics", "NO"),
    ("Granite Works", "AT"),
    ("Helios Energy", "ES"),
    ("Iris Textiles", "IT"),
    ("Juniper Health", "FR"),
    ("Kestrel Tools", "PL"),
)
SEED_CUSTOMERS: tuple[Customer, ...] = tuple(
    Customer(f"C-{1000 + i}", name, country) for i, (name, country) in enumerate(_NAMES)
)


class BusinessError(Exception):
    """A business rule refused the request; becomes an ``erp:BusinessFault``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def money(value: Decimal) -> Decimal:
    """``value`` rounded half-up to cents."""
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


class ErpStore:
    """Orders, stock and customers; call :meth:`reset` to go back to the seed."""

    def __init__(self) -> None:
        self.orders: dict[str, Order] = {}
        self.by_reference: dict[str, str] = {}
        self.effects: dict[str, int] = {}
        self.stock: dict[str, StockLevel] = {}
        self.customers: dict[str, Customer] = {}
        self.reset()

    def reset(self) -> None:
        """Seed stock and customers; no orders."""
        self.orders.clear()
        self.by_reference.clear()
        self.effects.clear()
        self.stock = {s.sku: s for s in SEED_STOCK}
        self.customers = {c.customer_number: c for c in SEED_CUSTOMERS}

    def create_order(self, request: OrderRequest) -> tuple[Order, bool]:
        """The order for ``request`` and whether it was created now.

        A known ``external_reference`` returns the first order unchanged (``False``) before
        any rule is checked. Otherwise the customer must exist, and line by line the
        quantity must be positive, the SKU known and the stock available (summed over the
        lines of one SKU); the first broken rule raises :class:`BusinessError` and nothing
        is stored. A created order reserves its quantities.
        """
        known = self.by_reference.get(request.external_reference)
        if known is not None:
            return self.orders[known], False
        if request.customer_number not in self.customers:
            raise BusinessError("UNKNOWN_CUSTOMER", f"Unknown customer {request.customer_number}")
        wanted: dict[str, int] = {}
        lines: list[OrderLine] = []
        for number, line in enumerate(request.lines, start=1):
            if line.quantity <= 0:
                raise BusinessError(
                    "INVALID_QUANTITY",
                    f"Line {number}: quantity must be positive, got {line.quantity}",
                )
            level = self.stock.get(line.sku)
            if level is None:
                raise BusinessError("UNKNOWN_SKU", f"Line {number}: unknown SKU {line.sku}")
            wanted[line.sku] = wanted.get(line.sku, 0) + line.quantity
            if wanted[line.sku] > level.available:
                raise BusinessError(
                    "INSUFFICIENT_STOCK",
                    f"Line {number}: {wanted[line.sku]} x {line.sku} requested, "
                    f"{level.available} available",
                )
            total = money(line.unit_price * line.quantity)
            lines.append(OrderLine(number, line.sku, line.quantity, line.unit_price, total))
        for sku, quantity in wanted.items():
            level = self.stock[sku]
            self.stock[sku] = replace(level, reserved=level.reserved + quantity)
        order = Order(
            order_number=f"SO-{len(self.orders) + 1:06d}",
            external_reference=request.external_reference,
            customer_number=request.customer_number,
            requested_date=request.requested_date,
            currency=request.currency,
            status="OPEN",
            total=money(sum((line.line_total for line in lines), Decimal(0))),
            created_at=datetime.now(UTC).replace(microsecond=0),
            lines=tuple(lines),
        )
        self.orders[order.order_number] = order
        self.by_reference[order.external_reference] = order.order_number
        self.effects[order.external_reference] = self.effects.get(order.external_reference, 0) + 1
        return order, True

    def find_order(
        self, order_number: str | None = None, external_reference: str | None = None
    ) -> Order:
        """The order with that number or reference, else ``ORDER_NOT_FOUND``."""
        if order_number is not None:
            order = self.orders.get(order_number)
            missing = f"No order {order_number}"
        else:
            number = self.by_reference.get(external_reference or "")
            order = self.orders.get(number) if number is not None else None
            missing = f"No order with external reference {external_reference}"
        if order is None:
            raise BusinessError("ORDER_NOT_FOUND", missing)
        return order

    def stock_for(self, skus: list[str]) -> list[StockLevel]:
        """The stock of each SKU in the order asked; an unknown SKU raises ``UNKNOWN_SKU``."""
        result = []
        for sku in skus:
            level = self.stock.get(sku)
            if level is None:
                raise BusinessError("UNKNOWN_SKU", f"Unknown SKU {sku}")
            result.append(level)
        return result

    def customers_page(self, page: int, page_size: int) -> tuple[list[Customer], int, int]:
        """Customers on ``page`` (from 1), the number of pages and of customers.

        A page past the last one is empty; the totals still say how many there are.
        """
        everyone = sorted(self.customers.values(), key=lambda c: c.customer_number)
        start = (page - 1) * page_size
        pages = math.ceil(len(everyone) / page_size)
        return everyone[start : start + page_size], pages, len(everyone)
