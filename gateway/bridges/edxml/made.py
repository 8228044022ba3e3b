"""A header made from Valise's own facts, for documents that came without one
(multipart, raw or SMTP submissions).

Rules:
- It says what the real files say, in their element order (taken from the SDK
  builder's outputs vpcp-sdk__xml_dc0bdef0 and vnpt-edxml102__gen_edoc_new): From and
  To with OrganId/OrganName, DocumentId in the real form
  ``<sender organ>,<yyyy/MM/dd>,<dossier or Valise message id>``, Code,
  PromulgationInfo, DocumentType with a numeric Type, Subject, Content, SignerInfo,
  DueDate, OtherInfo/Priority, SteeringType, and a TraceHeaderList.
- The Valise message id is always findable: TraceHeaderList/Bussiness/DocumentId is
  ``<sender organ>,<yyyy/MM/dd>,<message id>``.
- Unknown values are written as empty elements, as the SDK writes them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from lxml import etree

from gateway.bridges.edxml.dates import VIETNAM, format_date, format_timestamp
from gateway.bridges.edxml.names import NS, PREFIX, q

PRIORITY_OUT = {"routine": "0", "priority": "1", "immediate": "2", "flash": "3"}
NEW_DOCUMENT_REASON = "Văn bản điện tử mới"
_NUMBERED_CLASS = re.compile(r"edxml-(\d{1,3})")


@dataclass(frozen=True)
class Facts:
    """What an inbox item says about itself, for a header made from scratch.
    ``sender`` and ``receivers`` are (organ id, organ name) from the organ directory;
    without them the site ids stand in."""

    message_id: str
    origin: str
    here: str
    created: datetime
    subject: str
    doc_class: str
    dossier: str
    priority: str
    originator: str
    sender: tuple[str, str] | None = None
    receivers: tuple[tuple[str, str], ...] = ()
    expires: datetime | None = None


def _sub(parent: etree._Element, name: str, value: str | None = None) -> etree._Element:
    el = etree.SubElement(parent, q(name))
    el.text = value
    return el


def _party(parent: etree._Element, name: str, organ: tuple[str, str]) -> None:
    el = _sub(parent, name)
    _sub(el, "OrganId", organ[0])
    _sub(el, "OrganName", organ[1] or organ[0])


def made_root(f: Facts) -> etree._Element:
    """The real layout's root holding a made edXMLEnvelope with an empty manifest."""
    root = etree.Element(q("edXML"), nsmap={None: NS})
    envelope = etree.SubElement(root, q("edXMLEnvelope"), nsmap={PREFIX: NS})
    head = _sub(envelope, "edXMLHeader")
    message = _sub(head, "MessageHeader")
    sender = f.sender or (f.origin, f.origin)
    _party(message, "From", sender)
    for organ in f.receivers or ((f.here, f.here),):
        _party(message, "To", organ)
    day = format_date(f.created.astimezone(VIETNAM).date())
    _sub(message, "DocumentId", f"{sender[0]},{day},{f.dossier or f.message_id}")
    code = _sub(message, "Code")
    number, _, notation = f.dossier.partition("/")
    _sub(code, "CodeNumber", number)
    _sub(code, "CodeNotation", notation)
    promulgation = _sub(message, "PromulgationInfo")
    _sub(promulgation, "Place", "")
    _sub(promulgation, "PromulgationDate", day)
    kind = _sub(message, "DocumentType")
    numbered = _NUMBERED_CLASS.fullmatch(f.doc_class)
    _sub(kind, "Type", str(int(numbered.group(1))) if numbered else "1")
    _sub(kind, "TypeDetail", "0")
    _sub(kind, "TypeName", f.doc_class)
    _sub(message, "Subject", f.subject)
    _sub(message, "Content", f.subject)
    signer = _sub(message, "SignerInfo")
    _sub(signer, "Competence", "")
    _sub(signer, "Position", "")
    _sub(signer, "FullName", f.originator)
    due = f.expires.astimezone(VIETNAM).date() if f.expires else None
    _sub(message, "DueDate", format_date(due) if due else "")
    _sub(_sub(message, "OtherInfo"), "Priority", PRIORITY_OUT.get(f.priority, "0"))
    _sub(message, "SteeringType", "1")
    trace = _sub(head, "TraceHeaderList")
    business = _sub(trace, "Bussiness")
    _sub(business, "DocumentId", f"{sender[0]},{day},{f.message_id}")
    _sub(business, "BussinessDocType", "0")
    _sub(business, "BussinessDocReason", NEW_DOCUMENT_REASON)
    _sub(business, "Paper", "0")
    hop = _sub(trace, "TraceHeader")
    _sub(hop, "OrganId", sender[0])
    _sub(hop, "Timestamp", format_timestamp(f.created))
    _sub(_sub(envelope, "edXMLBody"), "edXMLManifest").set("version", "1.0")
    return root
