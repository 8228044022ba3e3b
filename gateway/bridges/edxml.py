"""edXML (QCVN 102:2016) documents in and out of the HTTP API; see EDXML.md for the mapping.

Rules:
- Parsing goes through one hardened lxml parser: no DTD (a DOCTYPE or ENTITY
  declaration is refused outright), no entity expansion, no network, no huge-tree
  mode (so libxml2's own limits hold: a text node is at most 10 MB), the input
  size bounded by the caller, element count and depth bounded by named constants.
- :func:`parse_edxml` raises :class:`EdxmlError` and nothing else, whatever bytes it
  is given (a property test holds it to that).
- The header is kept: the edXMLEnvelope without attachment content travels as one
  more sealed part (HEADER_PART_NAME), so the destination hands back the sender's
  MessageHeader as sent, with the attachments re-encoded from the delivered parts.
"""

from __future__ import annotations

import base64
import binascii
import copy
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone

from lxml import etree

NS = "http://www.mic.gov.vn/TBT/QCVN_102_2016"
PREFIX = "edXML"
MEDIA_TYPE = "application/edxml+xml"
HEADER_PART_NAME = "edxml-header.xml"
HEADER_MEDIA_TYPE = "application/vnd.valise.edxml-header+xml"
MAX_ELEMENTS = 10_000
MAX_DEPTH = 24
VIETNAM = timezone(timedelta(hours=7))
# OtherInfo/Priority: 0 thường, 1 khẩn, 2 thượng khẩn, 3 hỏa tốc, 4 hỏa tốc hẹn giờ.
PRIORITY_IN = {"0": "routine", "1": "priority", "2": "immediate", "3": "flash", "4": "flash"}
PRIORITY_OUT = {"routine": "0", "priority": "1", "immediate": "2", "flash": "3"}
_DECLARATIONS = re.compile(rb"<!\s*(DOCTYPE|ENTITY|ELEMENT|ATTLIST)", re.IGNORECASE)
_TOO_DEEP = etree.XPath("boolean(/" + "/".join(["*"] * (MAX_DEPTH + 1)) + ")")


class EdxmlError(ValueError):
    """The bytes are not an edXML document this gateway accepts. One line."""


@dataclass(frozen=True)
class Party:
    organ_id: str
    organ_name: str


@dataclass(frozen=True)
class Attachment:
    content_id: str
    name: str
    media_type: str
    data: bytes


@dataclass(frozen=True)
class EdxmlDocument:
    sender: Party | None
    recipients: tuple[Party, ...]
    code_number: str
    code_notation: str
    subject: str
    document_type: str
    due_date: str
    priority: str
    document_id: str
    attachments: tuple[Attachment, ...]
    header_xml: bytes  # the edXMLEnvelope without attachment content


def _q(name: str) -> str:
    return f"{{{NS}}}{name}"


def _kids(el: etree._Element, name: str) -> list[etree._Element]:
    return [c for c in el if isinstance(c.tag, str) and c.tag in (_q(name), name)]


def _kid(el: etree._Element | None, name: str) -> etree._Element | None:
    if el is None:
        return None
    found = _kids(el, name)
    return found[0] if found else None


def _text(el: etree._Element | None, *path: str) -> str:
    for name in path:
        el = _kid(el, name)
    return " ".join((el.text or "").split()) if el is not None else ""


def _party(el: etree._Element) -> Party:
    return Party(_text(el, "OrganId"), _text(el, "OrganName"))


def _b64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise EdxmlError(f"{what}: ContentTransferEncoded is not base64") from None


def _parse_xml(data: bytes, max_bytes: int) -> etree._Element:
    if len(data) > max_bytes:
        raise EdxmlError(f"edXML document of {len(data)} bytes exceeds {max_bytes}")
    if _DECLARATIONS.search(data):
        raise EdxmlError("DTD and entity declarations are not allowed in edXML")
    parser = etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
        collect_ids=False,
    )
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        raise EdxmlError(f"not well-formed XML: {' '.join(str(exc.msg).split())}") from None
    if root is None or not isinstance(root.tag, str):
        raise EdxmlError("no root element")
    tree = root.getroottree()
    if tree.docinfo.doctype or tree.docinfo.internalDTD is not None:
        raise EdxmlError("DTDs are not allowed in edXML")
    if _TOO_DEEP(root):
        raise EdxmlError(f"elements nested deeper than {MAX_DEPTH}")
    for n, _ in enumerate(root.iter(), start=1):
        if n > MAX_ELEMENTS:
            raise EdxmlError(f"more than {MAX_ELEMENTS} elements")
    return root


def parse_edxml(data: bytes, *, max_bytes: int) -> EdxmlDocument:
    """Parse an edXML document. Raises :class:`EdxmlError` (only)."""
    try:
        return _parse(data, max_bytes)
    except EdxmlError:
        raise
    except (etree.LxmlError, ValueError, TypeError, UnicodeError) as exc:
        raise EdxmlError(f"not acceptable edXML: {' '.join(str(exc).split())}") from None


def _parse(data: bytes, max_bytes: int) -> EdxmlDocument:
    root = _parse_xml(data, max_bytes)
    envelope = root if root.tag == _q("edXMLEnvelope") else _kid(root, "edXMLEnvelope")
    if envelope is None or envelope.tag != _q("edXMLEnvelope"):
        raise EdxmlError(f"expected an edXMLEnvelope in namespace {NS}")
    header = _kid(_kid(envelope, "edXMLHeader"), "MessageHeader")
    if header is None:
        raise EdxmlError("edXMLHeader/MessageHeader is missing")
    sender = _kid(header, "From")
    recipients = tuple(_party(t) for t in _kids(header, "To"))
    if sender is None or not _text(sender, "OrganId"):
        raise EdxmlError("MessageHeader/From/OrganId is missing")
    if not recipients or not all(r.organ_id for r in recipients):
        raise EdxmlError("MessageHeader/To/OrganId is missing")
    encoded: dict[str, etree._Element] = {}
    for a in root.iter(_q("Attachment"), "Attachment"):
        parent = a.getparent()
        if parent is not None and etree.QName(parent).localname == "AttachmentEncoded":
            encoded[_text(a, "ContentId")] = a
    attachments: list[Attachment] = []
    manifest = _kid(_kid(envelope, "edXMLBody"), "edXMLManifest")
    references = _kids(manifest, "Reference") if manifest is not None else []
    for i, ref in enumerate(references, start=1):
        cid = _text(ref, "ContentId")
        holder = ref if _kid(ref, "ContentTransferEncoded") is not None else encoded.pop(cid, None)
        if holder is None:
            raise EdxmlError(f"attachment {cid or i} has no ContentTransferEncoded content")
        attachments.append(_attachment(ref, holder, cid or f"cid:{i}", i))
    for i, (cid, holder) in enumerate(encoded.items(), start=len(attachments) + 1):
        attachments.append(_attachment(holder, holder, cid or f"cid:{i}", i))
    other = _kid(header, "OtherInfo")
    return EdxmlDocument(
        sender=_party(sender),
        recipients=recipients,
        code_number=_text(header, "Code", "CodeNumber"),
        code_notation=_text(header, "Code", "CodeNotation"),
        subject=_text(header, "Subject"),
        document_type=_text(header, "DocumentType", "Type"),
        due_date=_text(header, "DueDate"),
        priority=_text(other, "Priority"),
        document_id=_text(header, "DocumentId"),
        attachments=tuple(attachments),
        header_xml=_strip_content(envelope),
    )


def _attachment(ref: etree._Element, holder: etree._Element, cid: str, i: int) -> Attachment:
    name = _text(ref, "AttachmentName") or _text(holder, "AttachmentName") or f"attachment-{i}"
    media = _text(ref, "ContentType") or _text(holder, "ContentType")
    content = _kid(holder, "ContentTransferEncoded")
    data = _b64((content if content is not None else holder).text or "", cid)
    return Attachment(cid, name, media or "application/octet-stream", data)


def _strip_content(envelope: etree._Element) -> bytes:
    kept = copy.deepcopy(envelope)
    for el in list(kept.iter(_q("AttachmentEncoded"), "AttachmentEncoded")):
        el.getparent().remove(el)  # type: ignore[union-attr]
    for el in list(kept.iter(_q("ContentTransferEncoded"), "ContentTransferEncoded")):
        el.getparent().remove(el)  # type: ignore[union-attr]
    return etree.tostring(kept, encoding="UTF-8", xml_declaration=True)


# -- mapping into an envelope -----------------------------------------------------------

_CLASS_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,56}")
_DOSSIER_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/:-]{0,127}")


def doc_class(doc: EdxmlDocument) -> str:
    t = doc.document_type.lower()
    return f"edxml-{t}" if _CLASS_RE.fullmatch(t) else "edxml"


def dossier(doc: EdxmlDocument) -> str | None:
    code = "/".join(p for p in (doc.code_number, doc.code_notation) if p)
    return code if _DOSSIER_RE.fullmatch(code) else None


def originator(doc: EdxmlDocument) -> str | None:
    if doc.sender is None:
        return None
    s = doc.sender
    return f"{s.organ_name} <{s.organ_id}>" if s.organ_name else s.organ_id


def priority(doc: EdxmlDocument) -> str:
    return PRIORITY_IN.get(doc.priority, "routine")


def expires(doc: EdxmlDocument, now: datetime) -> datetime | None:
    """The end of DueDate in Vietnam time, if at least an hour ahead; else None (default)."""
    try:
        day = date.fromisoformat(doc.due_date[:10])
    except ValueError:
        return None
    end = datetime.combine(day, time(23, 59, 59), tzinfo=VIETNAM)
    return end if end > now + timedelta(hours=1) else None


# -- producing edXML ------------------------------------------------------------------


@dataclass(frozen=True)
class Facts:
    """What an inbox item says about itself, for a MessageHeader made from scratch."""

    message_id: str
    origin: str
    here: str
    created: datetime
    subject: str
    doc_class: str
    dossier: str
    priority: str
    originator: str


def _sub(parent: etree._Element, name: str, text: str | None = None) -> etree._Element:
    el = etree.SubElement(parent, _q(name))
    if text is not None:
        el.text = text
    return el


def _made_header(f: Facts) -> etree._Element:
    env = etree.Element(_q("edXMLEnvelope"), nsmap={PREFIX: NS})
    head = _sub(_sub(env, "edXMLHeader"), "MessageHeader")
    frm = _sub(head, "From")
    _sub(frm, "OrganId", f.origin)
    _sub(frm, "OrganName", f.originator or f.origin)
    to = _sub(head, "To")
    _sub(to, "OrganId", f.here)
    _sub(to, "OrganName", f.here)
    if f.dossier:
        code = _sub(head, "Code")
        number, _, notation = f.dossier.partition("/")
        _sub(code, "CodeNumber", number)
        _sub(code, "CodeNotation", notation)
    _sub(_sub(head, "PromulgationInfo"), "PromulgationDate", f.created.date().isoformat())
    kind = _sub(head, "DocumentType")
    _sub(kind, "Type", f.doc_class.removeprefix("edxml-"))
    _sub(kind, "TypeName", f.doc_class)
    _sub(head, "Subject", f.subject)
    _sub(_sub(head, "OtherInfo"), "Priority", PRIORITY_OUT.get(f.priority, "0"))
    _sub(head, "DocumentId", f.message_id)
    return env


def build_edxml(
    *, header_xml: bytes | None, facts: Facts, attachments: Sequence[tuple[str, str, bytes]]
) -> bytes:
    """An edXML document of ``attachments`` (name, media type, data): the sender's kept
    header when there is one, else a MessageHeader made from ``facts``."""
    env = _parse_xml(header_xml, len(header_xml)) if header_xml else _made_header(facts)
    if env.tag != _q("edXMLEnvelope"):
        raise EdxmlError("the kept edXML header is not an edXMLEnvelope")
    body = _kid(env, "edXMLBody")
    if body is None:
        body = _sub(env, "edXMLBody")
    manifest = _kid(body, "edXMLManifest")
    if manifest is None:
        manifest = _sub(body, "edXMLManifest")
        manifest.set("version", "1.0")
    refs = _kids(manifest, "Reference")
    encoded = _sub(body, "AttachmentEncoded")
    for i, (name, media_type, data) in enumerate(attachments, start=1):
        if i <= len(refs):
            cid = _text(refs[i - 1], "ContentId") or f"cid:{i}"
        else:
            cid = f"cid:{i}"
            ref = _sub(manifest, "Reference")
            _sub(ref, "ContentId", cid)
            _sub(ref, "ContentType", media_type)
            _sub(ref, "AttachmentName", name)
        item = _sub(encoded, "Attachment")
        _sub(item, "ContentId", cid)
        _sub(item, "AttachmentName", name)
        _sub(item, "ContentType", media_type)
        _sub(item, "ContentTransferEncoded", base64.b64encode(data).decode())
    return etree.tostring(env, encoding="UTF-8", xml_declaration=True)
