"""A legacy ERP's SOAP 1.1 web service on 127.0.0.1, with a real WSDL 1.1 and XSD.

The service is document/literal (wrapped) in the namespace ``urn:example:erp:orders:v1``;
``erp.wsdl`` imports ``erp.xsd`` (both in this package). Requests are parsed with lxml
without entity resolution, network access or DTDs, validated against erp.xsd, and answered
with real ``soap:Envelope`` documents.

Endpoints (``base_url`` is ``http://127.0.0.1:<port>``)::

    POST /erp                       the SOAP endpoint (Content-Type text/xml, SOAPAction)
    GET  /erp?wsdl, /erp.wsdl       the WSDL, soap:address = the sandbox's real URL
    GET  /erp.xsd                   the schema the WSDL imports
    GET  /hostile/xxe.wsdl          the WSDL with a DOCTYPE declaring the external entity
                                    ``xxe`` = file:///etc/hostname, used in its documentation
    GET  /hostile/import.wsdl?target=URL
                                    the WSDL importing its XSD from URL (any host or port)

Operations (soapAction ``urn:example:erp:orders:v1/<Operation>``):

``CreateSalesOrder(order)``
    order = customerNumber, externalReference, requestedDate (xsd:date), currency
    ([A-Z]{3}), lines/line+ (sku, quantity xsd:int, unitPrice xsd:decimal). Returns
    orderNumber (``SO-000001``...), status (``OPEN``), created (xsd:boolean), total.
    Idempotent by externalReference: a repeat returns the first order with
    created=false and changes nothing. A created order reserves its stock.
``GetSalesOrder(orderNumber | externalReference)``
    The order with its lines (lineNumber, sku, quantity, unitPrice, lineTotal).
``GetStock(skus/sku+)``
    One item (sku, onHand, reserved, warehouse) per SKU asked, in that order.
``ListCustomers(page, pageSize)``
    customers/customer* (customerNumber, name, country), page, pageSize, totalPages,
    totalCount. Pages start at 1; a page past the last is empty.

Faults (SOAP 1.1, always HTTP 500; ``detail`` holds one ``erp:`` element with ``code`` and
``message``):

* ``soap:Client`` + ``erp:BusinessFault``: UNKNOWN_CUSTOMER, UNKNOWN_SKU, INSUFFICIENT_STOCK,
  INVALID_QUANTITY (CreateSalesOrder; lines checked in order), ORDER_NOT_FOUND
  (GetSalesOrder), UNKNOWN_SKU (GetStock).
* ``soap:Client`` + ``erp:ValidationFault``: SCHEMA_INVALID (breaks erp.xsd),
  MALFORMED_REQUEST (not well-formed, not an envelope, no SOAPAction header or one naming
  another operation), DTD_NOT_ALLOWED (any DOCTYPE), UNKNOWN_OPERATION.
* ``soap:Server`` + ``erp:SystemFault``: SYSTEM_BUSY "System busy, try again" (transient;
  from ``fail_next``), INTERNAL_ERROR.
* ``wsse:FailedAuthentication`` (no detail): missing ``wsse:Security`` header or
  UsernameToken, unknown user, wrong password or digest, a nonce used before, a
  ``wsu:Created`` older than five minutes (or over a minute ahead), PasswordDigest without
  Nonce/Created.
* ``soap:VersionMismatch`` (not a SOAP 1.1 envelope), ``soap:MustUnderstand`` (a header
  other than wsse:Security with mustUnderstand="1").

Other HTTP answers: 404 (unknown path), 411 (no Content-Length), 413 (body over 1 MiB),
415 (Content-Type not text/xml).

Credentials: :attr:`ErpSandbox.username` / :attr:`ErpSandbox.password`, as PasswordText or
PasswordDigest (Base64(SHA-1(nonce + created + password))).

Seed data: customers C-1000 .. C-1010; stock SKU-100 (100 on hand), SKU-200 (50, 5
reserved), SKU-300 (5), SKU-400 (0), SKU-500 (1000, 250 reserved).

Controls (thread-safe): ``delay`` (seconds before each call is handled; the call still
takes effect), ``fail_next(n, kind)`` with kind ``busy`` | ``http500_html`` (HTML error page)
| ``garbage`` (HTTP 200, not XML) | ``xxe`` (a fault whose text is the external entity
file:///etc/hostname), ``set_stock``, ``reset()``. Queries: ``calls``, ``http_log``,
``orders()``, ``effects(external_reference)``, ``stock``, ``customers``.

Run alone with ``python -m tests.sandbox.soap_erp [--port N]``.
"""

from __future__ import annotations

from tests.sandbox.soap_erp.erp import Customer, Order, OrderLine, StockLevel
from tests.sandbox.soap_erp.server import BUSY_MESSAGE, FAIL_KINDS, Call, ErpSandbox, FailKind
from tests.sandbox.soap_erp.soap import NS, SOAP_ENV, WSSE, XXE_SYSTEM_ID

__all__ = [
    "BUSY_MESSAGE",
    "FAIL_KINDS",
    "NS",
    "SOAP_ENV",
    "WSSE",
    "XXE_SYSTEM_ID",
    "Call",
    "Customer",
    "ErpSandbox",
    "FailKind",
    "Order",
    "OrderLine",
    "StockLevel",
]
