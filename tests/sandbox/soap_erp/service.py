"""The four operations: a schema-valid request element in, a response element out.

Each handler reads its ``erp:`` request element (already validated against erp.xsd), calls
:class:`~.erp.ErpStore` and builds the ``...Response`` element. A
:class:`~.erp.BusinessError` becomes a ``soap:Client`` fault with an ``erp:BusinessFault``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from lxml import etree
from lxml.builder import ElementMaker

from .erp import ErpStore, LineRequest, Order, OrderRequest
from .soap import NS, q

E = ElementMaker(namespace=NS, nsmap={"erp": NS})


@dataclass(frozen=True)
class Result:
    """A handled call: the response element and how the call went."""

    payload: etree._Element
    outcome: str  # "created", "replayed" or "ok"


def _text(parent: etree._Element, name: str) -> str:
    node = parent.find(q(name))
    if node is None:
        raise ValueError(f"missing erp:{name}")
    return " ".join((node.text or "").split())


def _date(text: str) -> date:
    # xsd:date may carry a timezone ("2024-05-01Z", "2024-05-01+02:00"); the day is enough.
    return date.fromisoformat(text[:10])


def _decimal(value: Decimal) -> str:
    return format(value, "f")


def _order_element(order: Order) -> etree._Element:
    return E.order(
        E.orderNumber(order.order_number),
        E.externalReference(order.external_reference),
        E.customerNumber(order.customer_number),
        E.requestedDate(order.requested_date.isoformat()),
        E.currency(order.currency),
        E.status(order.status),
        E.total(_decimal(order.total)),
        E.createdAt(order.created_at.isoformat()),
        E.lines(
            *(
                E.line(
                    E.lineNumber(str(line.line_number)),
                    E.sku(line.sku),
                    E.quantity(str(line.quantity)),
                    E.unitPrice(_decimal(line.unit_price)),
                    E.lineTotal(_decimal(line.line_total)),
                )
                for line in order.lines
            )
        ),
    )


def create_sales_order(store: ErpStore, request: etree._Element) -> Result:
    """``CreateSalesOrder(order)`` -> orderNumber, status, created, total."""
    order_node = request.find(q("order"))
    assert order_node is not None
    lines_node = order_node.find(q("lines"))
    assert lines_node is not None
    order_request = OrderRequest(
        customer_number=_text(order_node, "customerNumber"),
        external_reference=_text(order_node, "externalReference"),
        requested_date=_date(_text(order_node, "requestedDate")),
        currency=_text(order_node, "currency"),
        lines=tuple(
            LineRequest(
                sku=_text(line, "sku"),
                quantity=int(_text(line, "quantity")),
                unit_price=Decimal(_text(line, "unitPrice")),
            )
            for line in lines_node.iterfind(q("line"))
        ),
    )
    order, created = store.create_order(order_request)
    payload = E.CreateSalesOrderResponse(
        E.orderNumber(order.order_number),
        E.status(order.status),
        E.created("true" if created else "false"),
        E.total(_decimal(order.total)),
    )
    return Result(payload, "created" if created else "replayed")


def get_sales_order(store: ErpStore, request: etree._Element) -> Result:
    """``GetSalesOrder(orderNumber | externalReference)`` -> the order with its lines."""
    if request.find(q("orderNumber")) is not None:
        order = store.find_order(order_number=_text(request, "orderNumber"))
    else:
        order = store.find_order(external_reference=_text(request, "externalReference"))
    return Result(E.GetSalesOrderResponse(_order_element(order)), "ok")


def get_stock(store: ErpStore, request: etree._Element) -> Result:
    """``GetStock(skus)`` -> one item (sku, onHand, reserved, warehouse) per SKU asked."""
    skus_node = request.find(q("skus"))
    assert skus_node is not None
    skus = [" ".join((node.text or "").split()) for node in skus_node.iterfind(q("sku"))]
    items = [
        E.item(
            E.sku(level.sku),
            E.onHand(str(level.on_hand)),
            E.reserved(str(level.reserved)),
            E.warehouse(level.warehouse),
        )
        for level in store.stock_for(skus)
    ]
    return Result(E.GetStockResponse(*items), "ok")


def list_customers(store: ErpStore, request: etree._Element) -> Result:
    """``ListCustomers(page, pageSize)`` -> customers, page, pageSize, totalPages, totalCount."""
    page = int(_text(request, "page"))
    page_size = int(_text(request, "pageSize"))
    customers, pages, count = store.customers_page(page, page_size)
    payload = E.ListCustomersResponse(
        E.customers(
            *(
                E.customer(
                    E.customerNumber(c.customer_number), E.name(c.name), E.country(c.country)
                )
                for c in customers
            )
        ),
        E.page(str(page)),
        E.pageSize(str(page_size)),
        E.totalPages(str(pages)),
        E.totalCount(str(count)),
    )
    return Result(payload, "ok")


OPERATIONS: dict[str, Callable[[ErpStore, etree._Element], Result]] = {
    "CreateSalesOrder": create_sales_order,
    "GetSalesOrder": get_sales_order,
    "GetStock": get_stock,
    "ListCustomers": list_customers,
}


def external_reference_of(request: etree._Element) -> str | None:
    """The externalReference a request names, if any (read before validation, for the log)."""
    for path in (f"{q('order')}/{q('externalReference')}", q("externalReference")):
        node = request.find(path)
        if node is not None and node.text:
            return node.text.strip()
    return None
