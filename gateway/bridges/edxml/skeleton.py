"""A kept header read back: the sealed part HEADER_PART_NAME at the destination.

Rules:
- A kept header is parsed with the same hardening as a document (no DTD, no entity
  expansion, no network, bounded size, elements and depth) and raises EdxmlError.
- Its attachments are its ContentTransferEncoded placeholders in document order; an
  old header (a bare edXMLEnvelope without AttachmentEncoded, as Valise wrote it
  before) has none, and its manifest References stand for them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lxml import etree

from gateway.bridges.edxml.errors import EdxmlError
from gateway.bridges.edxml.limits import MAX_DEPTH, MAX_ELEMENTS, MAX_HEADER_BYTES
from gateway.bridges.edxml.names import is_named, kid, kids, text
from gateway.bridges.edxml.reader import cid_key, content_elements, envelope_of
from gateway.bridges.edxml.zips import is_wrapped_zip

_DECLARATIONS = re.compile(rb"<!\s*(DOCTYPE|ENTITY|ELEMENT|ATTLIST)", re.IGNORECASE)


@dataclass(frozen=True)
class DeclaredPart:
    """What a kept header says of one attachment."""

    content_id: str
    name: str
    description: str
    media_type: str
    declared_types: tuple[str, ...]  # every ContentType written for it, lower case


def load_header(header_xml: bytes) -> etree._Element:
    """The kept header's root element. Raises :class:`EdxmlError`."""
    if len(header_xml) > MAX_HEADER_BYTES:
        raise EdxmlError(f"the kept edXML header exceeds {MAX_HEADER_BYTES} bytes")
    if _DECLARATIONS.search(header_xml):
        raise EdxmlError("DTD and entity declarations are not allowed in edXML")
    parser = etree.XMLParser(
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
    refs = kids(kid(envelope, "edXMLBody", "edXMLManifest"), "Reference")
    placeholders = content_elements(root)
    if not placeholders:
        return tuple(_declared(ref, None) for ref in refs)
    by_cid = {cid_key(text(r, "ContentId")): r for r in refs}
    out = []
    for el in placeholders:
        holder = el.getparent()
        assert holder is not None
        ref = (
            holder
            if is_named(holder, "Reference")
            else by_cid.get(cid_key(text(holder, "ContentId")))
        )
        out.append(_declared(holder, ref))
    return tuple(out)


def _declared(own: etree._Element, ref: etree._Element | None) -> DeclaredPart:
    def first(name: str) -> str:
        return text(own, name) or text(ref, name)

    types = (text(ref, "ContentType"), text(own, "ContentType"))
    return DeclaredPart(
        content_id=first("ContentId"),
        name=first("AttachmentName"),
        description=first("Description"),
        media_type=text(own, "ContentType") or text(ref, "ContentType"),
        declared_types=tuple(t.lower() for t in dict.fromkeys(types) if t),
    )


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
