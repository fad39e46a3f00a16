"""SOAP 1.1 plumbing of the ERP sandbox: namespaces, a safe parser, envelopes, faults, documents.

Requests are parsed with :func:`parse_request` (no entity resolution, no network, no DTD
loading); a message that carries a DTD at all is refused, as SOAP 1.1 section 3 forbids one.
Responses are built with lxml as real ``soap:Envelope`` documents; a fault is a
``soap:Fault`` whose ``faultcode``/``faultstring``/``detail`` children are unqualified, as
SOAP 1.1 section 4.4 lays out.
"""

from __future__ import annotations

import copy
import threading
from pathlib import Path

from lxml import etree

NS = "urn:example:erp:orders:v1"
SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12_ENV = "http://www.w3.org/2003/05/soap-envelope"
WSDL = "http://schemas.xmlsoap.org/wsdl/"
WSDL_SOAP = "http://schemas.xmlsoap.org/wsdl/soap/"
XSD = "http://www.w3.org/2001/XMLSchema"
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSU = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"

HERE = Path(__file__).resolve().parent
WSDL_FILE = HERE / "erp.wsdl"
XSD_FILE = HERE / "erp.xsd"

#: The prefix each fault code namespace is written with (``soap:Client``, ``wsse:...``).
_PREFIXES = {SOAP_ENV: "soap", WSSE: "wsse", NS: "erp"}

#: The external entity the hostile documents declare.
XXE_SYSTEM_ID = "file:///etc/hostname"
XXE_DOCTYPE = '<!DOCTYPE {root} [\n  <!ENTITY xxe SYSTEM "' + XXE_SYSTEM_ID + '">\n]>'
_XXE_MARKER = "__XXE_ENTITY_REFERENCE__"


def q(name: str, ns: str = NS) -> str:
    """The Clark name ``{ns}name`` lxml uses for a qualified name."""
    return f"{{{ns}}}{name}"


def safe_parser() -> etree.XMLParser:
    """A fresh parser that never resolves entities nor touches the network or DTDs."""
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_pis=True,
        collect_ids=False,
    )


class SoapFault(Exception):
    """A SOAP 1.1 fault to answer with (HTTP 500).

    ``faultcode`` is a ``(namespace, local name)`` pair, e.g. ``(SOAP_ENV, "Client")``.
    ``detail`` names the ``erp:`` detail element (``BusinessFault``, ``ValidationFault``,
    ``SystemFault``) that carries ``code`` and the message; ``None`` means no ``<detail>``
    (SOAP 1.1 forbids one for errors in header entries, such as authentication).
    ``reason`` is for the sandbox's call log only and is never sent.
    """

    def __init__(
        self,
        faultcode: tuple[str, str],
        faultstring: str,
        *,
        detail: str | None = None,
        code: str | None = None,
        reason: str | None = None,
    ) -> None:
        super().__init__(faultstring)
        self.faultcode = faultcode
        self.faultstring = faultstring
        self.detail = detail
        self.code = code
        self.reason = reason or faultstring

    @property
    def log_code(self) -> str:
        """The code the call log records: the detail code, else the faultcode's local name."""
        return self.code or self.faultcode[1]


def client_fault(detail: str, code: str, message: str) -> SoapFault:
    """A ``soap:Client`` fault with an ``erp:<detail>`` element of ``code`` and ``message``."""
    return SoapFault((SOAP_ENV, "Client"), message, detail=detail, code=code)


def server_fault(code: str, message: str) -> SoapFault:
    """A ``soap:Server`` fault with an ``erp:SystemFault`` detail."""
    return SoapFault((SOAP_ENV, "Server"), message, detail="SystemFault", code=code)


def _serialize(envelope: etree._Element) -> bytes:
    return etree.tostring(envelope, xml_declaration=True, encoding="UTF-8")


def response_envelope(payload: etree._Element) -> bytes:
    """A ``soap:Envelope`` whose body is ``payload``."""
    envelope = etree.Element(q("Envelope", SOAP_ENV), nsmap={"soap": SOAP_ENV, "erp": NS})
    etree.SubElement(envelope, q("Body", SOAP_ENV)).append(payload)
    return _serialize(envelope)


def fault_envelope(fault: SoapFault) -> bytes:
    """A ``soap:Envelope`` carrying ``fault`` as a SOAP 1.1 ``soap:Fault``."""
    ns, local = fault.faultcode
    nsmap = {"soap": SOAP_ENV, "erp": NS}
    nsmap[_PREFIXES[ns]] = ns
    envelope = etree.Element(q("Envelope", SOAP_ENV), nsmap=nsmap)
    body = etree.SubElement(envelope, q("Body", SOAP_ENV))
    node = etree.SubElement(body, q("Fault", SOAP_ENV))
    etree.SubElement(node, "faultcode").text = f"{_PREFIXES[ns]}:{local}"
    etree.SubElement(node, "faultstring").text = fault.faultstring
    if fault.detail is not None:
        info = etree.SubElement(etree.SubElement(node, "detail"), q(fault.detail))
        etree.SubElement(info, q("code")).text = fault.code or ""
        etree.SubElement(info, q("message")).text = fault.faultstring
    return _serialize(envelope)


def xxe_fault_envelope() -> bytes:
    """A fault response whose ``faultstring`` and detail message are the entity ``&xxe;``.

    The DOCTYPE declares ``xxe`` as the external entity ``file:///etc/hostname``: a client
    that expands entities would show that file's content as the fault message.
    """
    text = fault_envelope(server_fault("INTERNAL_ERROR", _XXE_MARKER)).decode()
    declaration, _, rest = text.partition("\n")
    doctype = XXE_DOCTYPE.format(root="soap:Envelope")
    return f"{declaration}\n{doctype}\n{rest}".replace(_XXE_MARKER, "&xxe;").encode()


def parse_request(data: bytes) -> etree._Element:
    """Parse a request body safely; raise a Client fault for bad XML or any DTD."""
    try:
        root = etree.fromstring(data, parser=safe_parser())
    except etree.XMLSyntaxError as exc:
        message = f"not well-formed XML: {exc}"
        raise client_fault("ValidationFault", "MALFORMED_REQUEST", message) from None
    if root is None:
        raise client_fault("ValidationFault", "MALFORMED_REQUEST", "empty request body")
    if root.getroottree().docinfo.doctype or root.getroottree().docinfo.internalDTD is not None:
        raise client_fault(
            "ValidationFault", "DTD_NOT_ALLOWED", "a SOAP message must not contain a DTD"
        )
    return root


# ------------------------------------------------------------------- schema validation
_local = threading.local()


def _schema() -> etree.XMLSchema:
    """The XSD compiled once per thread (lxml validators are not shared across threads)."""
    schema = getattr(_local, "schema", None)
    if schema is None:
        schema = etree.XMLSchema(etree.parse(str(XSD_FILE), parser=safe_parser()))
        _local.schema = schema
    return schema


def schema_error(element: etree._Element) -> str | None:
    """Why ``element`` breaks erp.xsd, or ``None`` when it is valid."""
    schema = _schema()
    if schema.validate(etree.ElementTree(copy.deepcopy(element))):
        return None
    error = schema.error_log.last_error
    return error.message if error is not None else "invalid"


# -------------------------------------------------------------------------- documents
def soap_actions() -> dict[str, str]:
    """Operation name -> its ``soapAction``, read from the binding in erp.wsdl."""
    tree = etree.parse(str(WSDL_FILE), parser=safe_parser())
    actions: dict[str, str] = {}
    for op in tree.iterfind(f"{q('binding', WSDL)}/{q('operation', WSDL)}"):
        soap_op = op.find(q("operation", WSDL_SOAP))
        actions[op.get("name", "")] = soap_op.get("soapAction", "") if soap_op is not None else ""
    return actions


def wsdl_document(address: str, schema_location: str = "erp.xsd", *, xxe: bool = False) -> bytes:
    """erp.wsdl with ``soap:address`` set to ``address`` and the XSD at ``schema_location``.

    With ``xxe`` the document gets a DOCTYPE declaring the external entity ``xxe``
    (``file:///etc/hostname``) and references ``&xxe;`` in its ``wsdl:documentation``.
    """
    tree = etree.parse(str(WSDL_FILE), parser=safe_parser())
    root = tree.getroot()
    for node in root.iter(q("address", WSDL_SOAP)):
        node.set("location", address)
    for node in root.iter(q("import", XSD)):
        node.set("schemaLocation", schema_location)
    if not xxe:
        return etree.tostring(tree, xml_declaration=True, encoding="UTF-8")
    documentation = root.find(q("documentation", WSDL))
    assert documentation is not None
    documentation.text = f"Host: {_XXE_MARKER}"
    text = etree.tostring(tree, encoding="unicode")
    doctype = XXE_DOCTYPE.format(root="wsdl:definitions")
    text = f'<?xml version="1.0" encoding="UTF-8"?>\n{doctype}\n{text}'
    return text.replace(_XXE_MARKER, "&xxe;").encode()


def xsd_document() -> bytes:
    """erp.xsd as stored."""
    return XSD_FILE.read_bytes()
