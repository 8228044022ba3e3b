"""edXML out, in the real layout, with the attachments filled in.

Rules:
- The layout is the real files': a root ``<edXML xmlns=NS>`` holding
  ``edXML:edXMLEnvelope`` (``xmlns:edXML`` declared on it) and then, beside it, an
  unprefixed ``AttachmentEncoded`` whose ``Attachment`` elements hold ContentId,
  AttachmentName, Description, ContentType and ``edXML:ContentTransferEncoded``
  (the prefix declared there again). No element declares a namespace twice, and no
  AttachmentEncoded stands in edXMLBody.
- A kept header in that layout is written back as it is, each placeholder filled
  with the base64 of the part in the same position. An older kept header (a bare
  edXMLEnvelope, with or without an AttachmentEncoded in its body) is re-wrapped
  into the real layout; each part keeps the ContentId of its own placeholder
  (parts follow the content's document order, not the manifest's). Without one, a
  header is made (made.py).
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
from gateway.bridges.edxml.names import CONTENT, NS, PREFIX, is_named, kid, kids, q, text
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
    envelope: etree._Element, manifest: etree._Element, parts: Sequence[tuple[str, str]]
) -> list[tuple[str, str, str, str]] | None:
    """For an old header that has placeholders: one Attachment entry per part, the
    n-th part being the n-th placeholder (document order, not manifest order), with
    the ContentId and Description its holder and Reference give it (the reader's
    pairing). A part no Reference names gets one. None without placeholders."""
    placeholders = content_elements(envelope)
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


def _rewrap(envelope: etree._Element, parts: Sequence[tuple[str, str]]) -> etree._Element:
    """An older bare edXMLEnvelope in the real layout (the envelope is moved). With
    placeholders (an AttachmentEncoded in its body, or content in References), each
    part keeps its own ContentId; without (as Valise wrote headers before), the
    manifest References stand for the parts in order."""
    manifest = _manifest(envelope)
    kept = _kept_entries(envelope, manifest, parts)
    old: dict[str, etree._Element] = {}
    for encoded in [el for el in envelope.iter() if is_named(el, "AttachmentEncoded")]:
        for att in kids(encoded, "Attachment"):
            old[cid_key(text(att, "ContentId"))] = att
        parent = encoded.getparent()
        assert parent is not None
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
    if root is envelope:
        return _rewrap(envelope, parts)
    placeholders = content_elements(root)
    if len(placeholders) != len(parts):
        raise EdxmlError(
            f"the kept edXML header has {len(placeholders)} attachments, {len(parts)} given"
        )
    return root


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
