"""Names of the edXML bridge and small helpers over its element trees.

Rules:
- Elements are matched by local name in the QCVN namespace or in no namespace:
  producers differ (an unprefixed ``AttachmentEncoded`` is in the QCVN namespace
  through the root's default namespace in the real files, in no namespace in some
  hand-written ones).
- Text is read with whitespace folded to single spaces, so a value is one line.
"""

from __future__ import annotations

from lxml import etree

NS = "http://www.mic.gov.vn/TBT/QCVN_102_2016"
PREFIX = "edXML"
MEDIA_TYPE = "application/edxml+xml"
HEADER_PART_NAME = "edxml-header.xml"
HEADER_MEDIA_TYPE = "application/vnd.valise.edxml-header+xml"
CONTENT = "ContentTransferEncoded"
XML_DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>\n'


def q(name: str) -> str:
    """The Clark name of ``name`` in the QCVN namespace."""
    return f"{{{NS}}}{name}"


def is_named(el: etree._Element, name: str) -> bool:
    """``el`` is ``name`` in the QCVN namespace or in no namespace."""
    return isinstance(el.tag, str) and el.tag in (q(name), name)


def local(el: etree._Element) -> str:
    return etree.QName(el).localname if isinstance(el.tag, str) else ""


def kids(el: etree._Element | None, name: str) -> list[etree._Element]:
    return [] if el is None else [c for c in el if is_named(c, name)]


def kid(el: etree._Element | None, *path: str) -> etree._Element | None:
    for name in path:
        found = kids(el, name)
        el = found[0] if found else None
    return el


def text(el: etree._Element | None, *path: str) -> str:
    """The folded text of the element at ``path`` below ``el``; "" when absent."""
    found = kid(el, *path)
    return " ".join((found.text or "").split()) if found is not None else ""
