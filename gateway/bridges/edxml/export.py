"""edXML out, in the real layout, with the attachments filled in.

Rules:
- The layout is the real files': a root ``<edXML xmlns=NS>`` holding
  ``edXML:edXMLEnvelope`` (``xmlns:edXML`` declared on it) and then, beside it, an
  unprefixed ``AttachmentEncoded`` whose ``Attachment`` elements hold ContentId,
  AttachmentName, Description, ContentType and ``edXML:ContentTransferEncoded``
  (the prefix declared there again). No element declares a namespace twice, and no
  AttachmentEncoded stands in edXMLBody.
- A kept header in that layout (:func:`in_real_layout`: the checks of the structural
  test written from the real files, every Attachment named by a manifest Reference)
  is written back as it is, each placeholder filled with the base64 of the part in
  the same position. Any other kept header the reader accepted (an older bare
  edXMLEnvelope; an edXML root with its AttachmentEncoded in the body, content in a
  Reference, elements out of order or in other places, other prefixes or namespace
  declarations: review 12c F3) is re-wrapped into the real layout: the envelope's
  children moved into a new ``edXML:edXMLEnvelope``, every part in one
  ``AttachmentEncoded`` beside it, keeping the ContentId and Description of its own
  placeholder (parts follow the content's document order, not the manifest's), and
  a manifest Reference for each. Without one, a header is made (made.py).
- Base64 is written on one line, as the real files have it, streamed from each part:
  the output is the only whole copy (and :func:`write_edxml` holds none).
"""

from __future__ import annotations

import binascii
import io
import re
import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

from lxml import etree

from gateway.bridges.edxml.errors import EdxmlError
from gateway.bridges.edxml.made import Facts, made_root
from gateway.bridges.edxml.names import CONTENT, NS, PREFIX, is_named, kid, kids, local, q, text
from gateway.bridges.edxml.reader import (
    cid_key,
    content_elements,
    describe,
    envelope_of,
    pair_references,
    serialize,
)
from gateway.bridges.edxml.skeleton import load_header

_RAW_CHUNK = 3 * 16 * 1024  # a multiple of 3: base64 pieces join without padding


def _sub(parent: etree._Element, name: str, value: str | None = None) -> etree._Element:
    el = etree.SubElement(parent, q(name))
    el.text = value
    return el


def _append_encoded(root: etree._Element, entries: Sequence[tuple[str, str, str, str]]) -> None:
    """AttachmentEncoded beside the envelope: one Attachment per (ContentId, name,
    description, media type), each with an empty ContentTransferEncoded."""
    if not entries:
        return
    encoded = _sub(root, "AttachmentEncoded")
    for cid, name, description, media_type in entries:
        item = _sub(encoded, "Attachment")
        _sub(item, "ContentId", cid)
        _sub(item, "AttachmentName", name)
        _sub(item, "Description", description)
        _sub(item, "ContentType", media_type)
        etree.SubElement(item, q(CONTENT), nsmap={PREFIX: NS})


def _manifest(envelope: etree._Element) -> etree._Element:
    body = kid(envelope, "edXMLBody")
    if body is None:
        body = _sub(envelope, "edXMLBody")
    manifest = kid(body, "edXMLManifest")
    if manifest is None:
        manifest = _sub(body, "edXMLManifest")
        manifest.set("version", "1.0")
    return manifest


def _entries(
    manifest: etree._Element, parts: Sequence[tuple[str, str]], old: dict[str, etree._Element]
) -> list[tuple[str, str, str, str]]:
    """One Attachment entry per part: from its manifest Reference (in order), a new
    Reference for a part the manifest does not name."""
    refs = kids(manifest, "Reference")
    if len(refs) > len(parts):
        raise EdxmlError(f"the kept edXML header names {len(refs)} attachments, {len(parts)} given")
    entries = []
    for n, (name, media_type) in enumerate(parts, start=1):
        if n <= len(refs):
            ref = refs[n - 1]
            cid = text(ref, "ContentId") or f"cid:{n}"
            was = old.get(cid_key(cid))
            description = text(ref, "Description") or text(was, "Description") or name
        else:
            cid, description = f"cid:{n}", name
            ref = _sub(manifest, "Reference")
            _sub(ref, "ContentId", cid)
            _sub(ref, "ContentType", media_type)
            _sub(ref, "Description", description)
            _sub(ref, "AttachmentName", name)
        entries.append((cid, name, description, media_type))
    return entries


def _kept_entries(
    scope: etree._Element,
    envelope: etree._Element,
    manifest: etree._Element,
    parts: Sequence[tuple[str, str]],
) -> list[tuple[str, str, str, str]] | None:
    """For a header re-wrapped that has placeholders (anywhere in ``scope``): one
    Attachment entry per part, the n-th part being the n-th placeholder (document
    order, not manifest order), with the ContentId and Description its holder and
    Reference give it (the reader's pairing). A part no Reference names gets one.
    None without placeholders."""
    placeholders = content_elements(scope)
    if not placeholders:
        return None
    if len(placeholders) != len(parts):
        raise EdxmlError(
            f"the kept edXML header has {len(placeholders)} attachments, {len(parts)} given"
        )
    refs = pair_references(envelope, placeholders)
    entries = []
    for n, (el, ref, (name, media_type)) in enumerate(
        zip(placeholders, refs, parts, strict=True), start=1
    ):
        declared = describe(el.getparent(), ref, n)
        cid, description = declared.content_id, declared.description or name
        if ref is None:
            ref = _sub(manifest, "Reference")
            _sub(ref, "ContentId", cid)
            _sub(ref, "ContentType", media_type)
            _sub(ref, "Description", description)
            _sub(ref, "AttachmentName", name)
        elif not text(ref, "ContentId"):
            ref.insert(0, etree.Element(q("ContentId")))
            ref[0].text = cid
        entries.append((cid, name, description, media_type))
    return entries


def _rewrap(
    root: etree._Element, envelope: etree._Element, parts: Sequence[tuple[str, str]]
) -> etree._Element:
    """A kept header not in the real layout (``root``, an older bare edXMLEnvelope or an
    edXML root holding ``envelope``) re-wrapped into it (the envelope's children are
    moved; whatever else the old root held is left out). With placeholders (an
    AttachmentEncoded anywhere, or content in References), each part keeps its own
    ContentId; without (as Valise wrote headers before), the manifest References stand
    for the parts in order."""
    manifest = _manifest(envelope)
    kept = _kept_entries(root, envelope, manifest, parts)
    old: dict[str, etree._Element] = {}
    for encoded in [el for el in root.iter() if is_named(el, "AttachmentEncoded")]:
        for att in kids(encoded, "Attachment"):
            old[cid_key(text(att, "ContentId"))] = att
        parent = encoded.getparent()
        if parent is not None:
            parent.remove(encoded)
    for el in content_elements(envelope):
        parent = el.getparent()
        assert parent is not None
        parent.remove(el)
    # Appending the old envelope itself would let lxml drop its prefix for the root's
    # default namespace; its children are moved into a new edXML:edXMLEnvelope instead.
    # (An element in no namespace among them lands in the QCVN namespace: edXML has one.)
    root = etree.Element(q("edXML"), nsmap={None: NS})
    moved = etree.SubElement(root, q("edXMLEnvelope"), nsmap={PREFIX: NS})
    for key, value in envelope.attrib.items():
        moved.set(key, value)
    moved.text = envelope.text
    for child in list(envelope):
        moved.append(child)
    _append_encoded(root, kept if kept is not None else _entries(manifest, parts, old))
    return root


def layout(
    header_xml: bytes | None, facts: Facts, parts: Sequence[tuple[str, str]]
) -> etree._Element:
    """The document to write, its placeholders (empty ContentTransferEncoded, in
    document order) one per part. Raises :class:`EdxmlError`."""
    if header_xml is None:
        root = made_root(facts)
        envelope = envelope_of(root)
        _append_encoded(root, _entries(_manifest(envelope), parts, {}))
        return root
    root = load_header(header_xml)
    envelope = envelope_of(root)
    if not in_real_layout(root, envelope):
        return _rewrap(root, envelope, parts)
    placeholders = content_elements(root)
    if len(placeholders) != len(parts):
        raise EdxmlError(
            f"the kept edXML header has {len(placeholders)} attachments, {len(parts)} given"
        )
    return root


ATTACHMENT_ORDER = ("ContentId", "AttachmentName", "Description", "ContentType", CONTENT)
REFERENCE_ORDER = ("ContentId", "ContentType", "Description", "AttachmentName")


def _in_order(names: Sequence[str], order: Sequence[str]) -> bool:
    """``names`` appear in ``order``'s order (each at most once), none other."""
    it = iter(order)
    return all(any(n == o for o in it) for n in names)


def _names(el: etree._Element) -> list[str]:
    return [local(c) for c in el if isinstance(c.tag, str)]


def in_real_layout(root: etree._Element, envelope: etree._Element) -> bool:
    """Whether a kept header is in the real files' layout (module rules), as the
    structural test written from them checks it, and names every attachment in its
    manifest (the iOffice parser builds its list from the References)."""
    if root.tag != q("edXML") or root.prefix is not None or dict(root.nsmap) != {None: NS}:
        return False
    children = [c for c in root if isinstance(c.tag, str)]
    if children[:1] != [envelope] or envelope.prefix != PREFIX or len(children) > 2:
        return False
    if any(is_named(el, "AttachmentEncoded") for el in envelope.iter()):
        return False
    if content_elements(envelope):  # content in a Reference
        return False
    encoded = children[1] if len(children) == 2 else None
    if encoded is not None and (encoded.tag != q("AttachmentEncoded") or encoded.prefix):
        return False
    placeholders = content_elements(root)
    for att in [] if encoded is None else list(encoded):
        if not isinstance(att.tag, str):
            continue
        names = _names(att)
        if att.tag != q("Attachment") or att.prefix or not names or names[-1] != CONTENT:
            return False
        if not _in_order(names, ATTACHMENT_ORDER):
            return False
        content = att[-1]
        if content.tag != q(CONTENT) or content.prefix != PREFIX or PREFIX in att.nsmap:
            return False  # edXML:ContentTransferEncoded declares its prefix itself
    if any(ref is None for ref in pair_references(envelope, placeholders)):
        return False
    manifest = kid(envelope, "edXMLBody", "edXMLManifest")
    return all(_in_order(_names(ref), REFERENCE_ORDER) for ref in kids(manifest, "Reference"))


def _write_base64(out: BinaryIO, source: Path | bytes) -> None:
    if isinstance(source, bytes):
        for i in range(0, len(source), _RAW_CHUNK):
            out.write(binascii.b2a_base64(source[i : i + _RAW_CHUNK], newline=False))
        return
    with open(source, "rb") as raw:
        while chunk := raw.read(_RAW_CHUNK):
            out.write(binascii.b2a_base64(chunk, newline=False))


def write_edxml(
    out: BinaryIO,
    header_xml: bytes | None,
    facts: Facts,
    attachments: Sequence[tuple[str, str, Path | bytes]],
) -> None:
    """Write the edXML document of ``attachments`` (name, media type, file or bytes)
    to ``out``: the kept header filled in, re-wrapped, or made from ``facts``.
    Raises :class:`EdxmlError` (before writing anything) for a kept header that
    cannot carry these attachments."""
    root = layout(header_xml, facts, [(name, media) for name, media, _ in attachments])
    token = secrets.token_hex(8)
    for n, el in enumerate(content_elements(root)):
        for child in list(el):
            el.remove(child)
        el.text = f"VALISE-PART-{token}-{n}"
    pieces = re.split(rb"VALISE-PART-" + token.encode() + rb"-(\d+)", serialize(root))
    out.write(pieces[0])
    for i in range(1, len(pieces), 2):
        _write_base64(out, attachments[int(pieces[i])][2])
        out.write(pieces[i + 1])


def build_edxml(
    header_xml: bytes | None,
    facts: Facts,
    attachments: Sequence[tuple[str, str, Path | bytes]],
) -> bytes:
    """:func:`write_edxml` into bytes. Raises :class:`EdxmlError`."""
    out = io.BytesIO()
    write_edxml(out, header_xml, facts, attachments)
    return out.getvalue()
