"""A kept header read back: the sealed part HEADER_PART_NAME at the destination.

Rules:
- A kept header is parsed with the same hardening as a document (UTF-8 only, no DTD:
  refused in the bytes and checked again in the parsed tree's docinfo, no entity
  expansion, no network, bounded size, elements and depth) and raises EdxmlError.
  The reader refuses at submission a document whose kept header this would refuse
  (parse.py), so a header the sender accepted is one the receiver reads.
- Its attachments are its ContentTransferEncoded placeholders in document order; an
  old header (a bare edXMLEnvelope without AttachmentEncoded, as Valise wrote it
  before) has none, and its manifest References stand for them.
- Each placeholder is paired with its Reference and described by the reader's own
  functions (reader.pair_references, reader.describe): the receiver sees the names
  and declared types the sender saw, and so the same zipped parts.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from lxml import etree

from gateway.bridges.edxml.errors import EdxmlError
from gateway.bridges.edxml.limits import MAX_DEPTH, MAX_ELEMENTS, MAX_HEADER_BYTES
from gateway.bridges.edxml.model import DeclaredPart
from gateway.bridges.edxml.names import kid, kids
from gateway.bridges.edxml.reader import content_elements, describe, envelope_of, pair_references
from gateway.bridges.edxml.scanner import check_declaration, check_utf8_start
from gateway.bridges.edxml.zips import is_wrapped_zip

__all__ = ["DeclaredPart", "declared_parts", "load_header", "zipped_parts"]

_DECLARATIONS = re.compile(rb"<!\s*(DOCTYPE|ENTITY|ELEMENT|ATTLIST)", re.IGNORECASE)


def load_header(header_xml: bytes) -> etree._Element:
    """The kept header's root element. Raises :class:`EdxmlError`."""
    if len(header_xml) > MAX_HEADER_BYTES:
        raise EdxmlError(f"the kept edXML header exceeds {MAX_HEADER_BYTES} bytes")
    check_utf8_start(header_xml)
    check_declaration(header_xml)
    if _DECLARATIONS.search(header_xml):
        raise EdxmlError("DTD and entity declarations are not allowed in edXML")
    parser = etree.XMLParser(
        encoding="utf-8",
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
        collect_ids=False,
    )
    try:
        root = etree.fromstring(header_xml, parser)
    except etree.XMLSyntaxError as exc:
        raise EdxmlError(f"the kept edXML header is not well-formed: {exc.msg}") from None
    if root is None or not isinstance(root.tag, str):
        raise EdxmlError("the kept edXML header has no root element")
    info = root.getroottree().docinfo
    if info.doctype or info.internalDTD is not None:
        raise EdxmlError("DTDs are not allowed in edXML")
    for n, el in enumerate(root.iter(), start=1):
        if n > MAX_ELEMENTS:
            raise EdxmlError(f"the kept edXML header has more than {MAX_ELEMENTS} elements")
        if len(el) == 0 and sum(1 for _ in el.iterancestors()) >= MAX_DEPTH:
            raise EdxmlError(f"the kept edXML header nests deeper than {MAX_DEPTH}")
    envelope_of(root)
    return root


def declared_parts(header_xml: bytes) -> tuple[DeclaredPart, ...]:
    """Each attachment the kept header describes, in the order of its placeholders
    (for an old header: its manifest References). Raises :class:`EdxmlError`."""
    root = load_header(header_xml)
    envelope = envelope_of(root)
    placeholders = content_elements(root)
    if not placeholders:
        refs = kids(kid(envelope, "edXMLBody", "edXMLManifest"), "Reference")
        return tuple(describe(ref, None, n) for n, ref in enumerate(refs, start=1))
    pairs = zip(placeholders, pair_references(envelope, placeholders), strict=True)
    return tuple(describe(el.getparent(), ref, n) for n, (el, ref) in enumerate(pairs, start=1))


def zipped_parts(header_xml: bytes, parts: Sequence[Path | bytes]) -> tuple[int, ...]:
    """The indexes of ``parts`` (the delivered attachments, in order, without the
    header part) that are the SDK's ZIP of a file, by what the kept header declares
    of each and by their content (zips.is_wrapped_zip). Raises :class:`EdxmlError`."""
    declared = declared_parts(header_xml)
    return tuple(
        i
        for i, (part, d) in enumerate(zip(parts, declared, strict=False))
        if is_wrapped_zip(part, d.name, d.declared_types)
    )
