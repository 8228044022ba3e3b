"""The one hardened XML parser, and the canonical serializer's building blocks.

Rules:
- Every document Valise reads goes through :func:`parse`. No DTD (internal or
  external), no entities, no network, no XInclude, no comments, no processing
  instructions; depth, element count, text and attribute sizes bounded by the
  named constants of :mod:`envelope.limits`; then the shipped XSD.
- The canonical form is Exclusive XML Canonicalization 1.0 without comments
  (W3C exc-c14n) of a document with no whitespace between elements and one
  default namespace, no prefixes. Valise writes it directly; a reader requires
  that canonicalising what it parsed gives back exactly the bytes it read, so
  the bytes that were signed are exactly the bytes the values came from.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable
from importlib import resources

from lxml import etree

from envelope import limits
from envelope.errors import LimitExceeded, MalformedXML, NonCanonical, SchemaError

NAMESPACE = "urn:valise:1"
_NS = "{" + NAMESPACE + "}"
# Characters the format never carries in text: C0 controls, DEL, and the
# non-characters XML 1.0 forbids. Tab, CR and LF are excluded too, since XML
# parsers normalise them and the canonical form could not round-trip.
_FORBIDDEN_TEXT = re.compile("[\x00-\x1f\x7f\ufffe\uffff\ud800-\udfff]")


def _load_schema() -> etree.XMLSchema:
    xsd = resources.files("envelope").joinpath("valise.xsd").read_bytes()
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    return etree.XMLSchema(etree.fromstring(xsd, parser))


_SCHEMA = _load_schema()


def _parser() -> etree.XMLParser:
    # A parser per call: lxml parsers must not be shared between threads, and
    # building one costs a few microseconds.
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_blank_text=False,
        remove_comments=False,
        remove_pis=False,
        collect_ids=False,
    )


def parse(data: bytes, *, root: str, max_bytes: int) -> etree._Element:
    """Parse ``data`` as the Valise document whose root element is ``root``.

    Raises :class:`LimitExceeded`, :class:`MalformedXML` or :class:`SchemaError`.
    """
    if len(data) > max_bytes:
        raise LimitExceeded(f"document of {len(data)} bytes exceeds the limit of {max_bytes}")
    if b"<!" in data:
        # DOCTYPE, ENTITY and CDATA all start so; none belongs in a Valise document.
        raise MalformedXML("DTDs, entities, comments and CDATA sections are not allowed")
    try:
        element = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as exc:
        raise MalformedXML(f"not well-formed XML: {_one_line(exc.msg)}") from None
    except ValueError as exc:  # lxml refuses some inputs (e.g. an encoding declaration)
        raise MalformedXML(f"not acceptable XML: {_one_line(str(exc))}") from None
    tree = element.getroottree()
    if tree.docinfo.doctype or tree.docinfo.internalDTD is not None:
        raise MalformedXML("DTDs are not allowed")
    _check_shape(element)
    if element.tag != _NS + root:
        raise SchemaError(f"expected a <{root}> document in namespace {NAMESPACE}")
    if not _SCHEMA.validate(element):
        error = _SCHEMA.error_log.last_error
        message = error.message if error is not None else "schema violation"
        raise SchemaError(f"schema: {_one_line(message)}")
    if etree.tostring(element, method="c14n", exclusive=True, with_comments=False) != data:
        raise NonCanonical(f"the <{root}> document is not in canonical form")
    return element


# The shape limits as compiled XPath: one pass in C instead of a Python walk.
_TOO_DEEP = etree.XPath("boolean(/" + "/".join(["*"] * (limits.MAX_XML_DEPTH + 1)) + ")")
_ELEMENT_COUNT = etree.XPath("count(//*)")
_HAS_PI = etree.XPath("boolean(//processing-instruction() | //comment())")
_PREFIXED = etree.XPath("boolean(//*[name() != local-name()] | //@*[name() != local-name()])")
# Text between elements (indentation, say) is not canonical Valise XML, even where
# the XSD tolerates it; trace and sealed are the containers that may be empty.
_TEXT_BETWEEN = etree.XPath(
    "boolean(//*[*]/text() | //*[local-name() = 'trace' or local-name() = 'sealed']/text())"
)
_TOO_MANY_ATTRIBUTES = etree.XPath(f"boolean(//*[count(@*) > {limits.MAX_XML_ATTRIBUTES}])")
_LONG_ATTRIBUTE = etree.XPath(f"boolean(//@*[string-length(.) > {limits.MAX_XML_ATTRIBUTE_CHARS}])")
_LONG_TEXT = etree.XPath(f"boolean(//text()[string-length(.) > {limits.MAX_XML_TEXT_CHARS}])")


_ANY_SHAPE_FAULT = etree.XPath(
    "boolean(/"
    + "/".join(["*"] * (limits.MAX_XML_DEPTH + 1))
    + " | //processing-instruction() | //comment() | //*[name() != local-name()]"
    + " | //@*[name() != local-name()] | //*[*]/text()"
    + " | //*[local-name() = 'trace' or local-name() = 'sealed']/text()"
    + f" | //*[count(@*) > {limits.MAX_XML_ATTRIBUTES}]"
    + f" | //@*[string-length(.) > {limits.MAX_XML_ATTRIBUTE_CHARS}]"
    + f" | //text()[string-length(.) > {limits.MAX_XML_TEXT_CHARS}]"
    + f" | /descendant::*[{limits.MAX_XML_ELEMENTS + 1}])"
)


def _one_line(message: str) -> str:
    return " ".join(message.split())


def _check_shape(root: etree._Element) -> None:
    # One XPath pass in C finds any fault; only then do we look for which one.
    if not _ANY_SHAPE_FAULT(root):
        return
    if _HAS_PI(root):
        raise MalformedXML("comments and processing instructions are not allowed")
    if _PREFIXED(root):
        raise SchemaError("namespace prefixes are not allowed: one default namespace only")
    if _TEXT_BETWEEN(root):
        raise NonCanonical("text or whitespace between elements is not canonical")
    if _TOO_DEEP(root):
        raise LimitExceeded(f"elements nested deeper than {limits.MAX_XML_DEPTH}")
    if float(_ELEMENT_COUNT(root)) > limits.MAX_XML_ELEMENTS:
        raise LimitExceeded(f"more than {limits.MAX_XML_ELEMENTS} elements")
    if _TOO_MANY_ATTRIBUTES(root):
        raise LimitExceeded(f"more than {limits.MAX_XML_ATTRIBUTES} attributes on an element")
    if _LONG_ATTRIBUTE(root):
        raise LimitExceeded(f"an attribute exceeds {limits.MAX_XML_ATTRIBUTE_CHARS} characters")
    raise LimitExceeded(f"a text node exceeds {limits.MAX_XML_TEXT_CHARS} characters")


def qualified(name: str) -> str:
    """The lxml tag of a Valise element: ``{urn:valise:1}name``."""
    return _NS + name


def local_name(element: etree._Element) -> str:
    tag = element.tag
    assert isinstance(tag, str)
    return tag[len(_NS) :] if tag.startswith(_NS) else tag


def children(element: etree._Element, name: str) -> list[etree._Element]:
    """The child elements named ``name`` (schema-validated input: order is known)."""
    tag = _NS + name
    return [c for c in element if c.tag == tag]


def child(element: etree._Element, name: str) -> etree._Element:
    tag = _NS + name
    for c in element:
        if c.tag == tag:
            return c
    raise SchemaError(f"<{name}> is missing")  # the schema makes this unreachable


def texts(element: etree._Element) -> dict[str, list[str]]:
    """Each child's local name mapped to the texts of the children of that name, in order."""
    out: dict[str, list[str]] = {}
    for c in element:
        out.setdefault(local_name(c), []).append(c.text or "")
    return out


def optional_text(element: etree._Element, name: str) -> str | None:
    tag = _NS + name
    for c in element:
        if c.tag == tag:
            return c.text or ""
    return None


def text(element: etree._Element) -> str:
    return element.text or ""


def b64decode(value: str, what: str) -> bytes:
    """Strict base64: standard alphabet, padded, canonical (re-encodes to itself)."""
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise SchemaError(f"{what} is not valid base64") from None
    if base64.b64encode(raw).decode() != value:
        raise SchemaError(f"{what} is not canonical base64")
    return raw


def b64encode(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


# -- canonical serializer ---------------------------------------------------------


def check_text(value: str, what: str) -> str:
    """Raise :class:`SchemaError` if ``value`` holds characters the format never carries."""
    if _FORBIDDEN_TEXT.search(value):
        raise SchemaError(f"{what} contains control characters")
    return value


def escape_text(value: str) -> str:
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def escape_attr(value: str) -> str:
    # exc-c14n escapes & < " in attributes (and never >).
    return value.replace("&", "&amp;").replace("<", "&lt;").replace('"', "&quot;")


def start(name: str, attrs: Iterable[tuple[str, str]] = (), *, root: bool = False) -> str:
    """A start tag; attributes are written in exc-c14n order (sorted by name)."""
    head = f'<{name} xmlns="{NAMESPACE}"' if root else f"<{name}"
    return head + "".join(f' {k}="{escape_attr(v)}"' for k, v in sorted(attrs)) + ">"


def leaf(name: str, value: str, attrs: Iterable[tuple[str, str]] = ()) -> str:
    return f"{start(name, attrs)}{escape_text(value)}</{name}>"
