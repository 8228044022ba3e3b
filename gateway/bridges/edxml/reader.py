"""From the header tree and the decoded contents to an :class:`EdxmlDocument`.

Rules:
- Layout: the root is ``edXML`` holding ``edXMLEnvelope`` (the real files) or a bare
  ``edXMLEnvelope`` (older producers), both in the QCVN namespace.
- Kind: a MessageHeader with a StatusCode is a status; otherwise
  TraceHeaderList/Bussiness/BussinessDocType 0-3 (absent: new), see model.Kind.
- Required, as the standard gives them: every kind needs From/OrganId; a new
  document, revocation, update or replacement needs one To or more, each with an
  OrganId; a status needs ResponseFor/OrganId, ResponseFor/DocumentId and StatusCode,
  and has no To.
- Attachments: each manifest Reference names its content by ContentId, with or
  without ``cid:`` (``cid:209`` matches ``209`` and back); the content is the
  Reference's own ContentTransferEncoded or an Attachment under an AttachmentEncoded.
  A Reference whose content is nowhere is refused; an Attachment no Reference names
  is kept. Every ContentTransferEncoded must stand in an Attachment under an
  AttachmentEncoded or in a manifest Reference. Two manifest References with one
  ContentId (which would they describe?) or two Attachments with one are refused;
  a Reference holding its own content describes that content only, whatever its
  ContentId.
- One pairing, both sides: :func:`pair_references` (which Reference describes which
  placeholder) and :func:`describe` (what they say of it together) are what the
  sender reads here and what the receiver reads from the kept header
  (skeleton.declared_parts), so both see the same name and declared types, and
  zipped means the same part on both sides.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime

from lxml import etree

from gateway.bridges.edxml.dates import parse_date, parse_datetime
from gateway.bridges.edxml.errors import EdxmlError
from gateway.bridges.edxml.model import (
    BUSINESS_DOC_TYPES,
    Attachment,
    DeclaredPart,
    EdxmlDocument,
    Kind,
    Party,
    ReplacementInfo,
    ResponseFor,
)
from gateway.bridges.edxml.names import CONTENT, NS, XML_DECLARATION, is_named, kid, kids, q, text
from gateway.bridges.edxml.stream import ContentFile
from gateway.bridges.edxml.zips import is_wrapped_zip


def envelope_of(root: etree._Element) -> etree._Element:
    """The edXMLEnvelope of a document (the root itself for older producers)."""
    if root.tag == q("edXMLEnvelope"):
        return root
    if root.tag == q("edXML"):
        found = [c for c in root if c.tag == q("edXMLEnvelope")]
        if len(found) == 1:
            return found[0]
        raise EdxmlError(f"the edXML root holds {len(found)} edXMLEnvelope elements, not one")
    raise EdxmlError(f"expected an edXML or edXMLEnvelope root in namespace {NS}")


def cid_key(content_id: str) -> str:
    """ContentId without its ``cid:`` prefix: the form both sides are matched in."""
    cid = content_id.strip()
    return cid[4:].strip() if cid[:4].lower() == "cid:" else cid


def content_elements(root: etree._Element) -> list[etree._Element]:
    """Every ContentTransferEncoded, in document order (the attachment placeholders)."""
    return [
        el for el in root.iter() if isinstance(el.tag, str) and etree.QName(el).localname == CONTENT
    ]


def serialize(root: etree._Element) -> bytes:
    return XML_DECLARATION + etree.tostring(root, encoding="UTF-8", xml_declaration=False)


def read_document(
    root: etree._Element, files: Sequence[ContentFile], *, keep_data: bool = False
) -> EdxmlDocument:
    """The document ``root`` and its decoded ``files`` describe. Raises EdxmlError."""
    envelope = envelope_of(root)
    header = kid(envelope, "edXMLHeader", "MessageHeader")
    if header is None:
        raise EdxmlError("edXMLHeader/MessageHeader is missing")
    kind = _kind(envelope, header)
    sender_el = kid(header, "From")
    if sender_el is None or not text(sender_el, "OrganId"):
        raise EdxmlError("MessageHeader/From/OrganId is missing")
    recipients = tuple(_party(t) for t in kids(header, "To"))
    response_for = _response_for(header)
    if kind is Kind.STATUS:
        if response_for is None or not response_for.organ_id:
            raise EdxmlError("a status message needs MessageHeader/ResponseFor/OrganId")
        if not response_for.document_id:
            raise EdxmlError("a status message needs MessageHeader/ResponseFor/DocumentId")
        if recipients:
            raise EdxmlError("a status message has no MessageHeader/To (it goes to ResponseFor)")
    elif not recipients or not all(r.organ_id for r in recipients):
        raise EdxmlError("MessageHeader/To/OrganId is missing")
    notes: list[str] = []
    due_text = text(header, "DueDate")
    due = _date(due_text, "DueDate", notes)
    business = kid(envelope, "edXMLHeader", "TraceHeaderList", "Bussiness")
    status_time = text(header, "Timestamp")
    return EdxmlDocument(
        kind=kind,
        sender=_party(sender_el),
        recipients=recipients,
        document_id=text(header, "DocumentId"),
        code_number=text(header, "Code", "CodeNumber"),
        code_notation=text(header, "Code", "CodeNotation"),
        subject=text(header, "Subject"),
        document_type=text(header, "DocumentType", "Type"),
        document_type_name=text(header, "DocumentType", "TypeName"),
        promulgation_date=_date(text(header, "PromulgationInfo", "PromulgationDate"), "", []),
        due_date=due,
        due_date_text=due_text,
        priority=text(header, "OtherInfo", "Priority"),
        steering_type=text(header, "SteeringType"),
        business_document_id=text(business, "DocumentId"),
        business_reason=text(business, "BussinessDocReason"),
        replacement_info=tuple(
            ReplacementInfo(
                text(r, "DocumentId"),
                tuple(text(o) for o in kids(kid(r, "OrganIdList"), "OrganId")),
            )
            for r in kids(kid(business, "ReplacementInfoList"), "ReplacementInfo")
        ),
        response_for=response_for,
        status_code=text(header, "StatusCode") if kind is Kind.STATUS else "",
        status_description=text(header, "Description") if kind is Kind.STATUS else "",
        status_time=_datetime(status_time) if kind is Kind.STATUS else None,
        attachments=_attachments(root, envelope, files, keep_data),
        header_xml=serialize(root),
        notes=tuple(notes),
    )


def _kind(envelope: etree._Element, header: etree._Element) -> Kind:
    if text(header, "StatusCode"):
        return Kind.STATUS
    value = text(envelope, "edXMLHeader", "TraceHeaderList", "Bussiness", "BussinessDocType")
    if not value:
        return Kind.NEW
    if value not in BUSINESS_DOC_TYPES:
        raise EdxmlError(f"BussinessDocType {value[:20]!r} is not 0, 1, 2 or 3")
    return BUSINESS_DOC_TYPES[value]


def _party(el: etree._Element) -> Party:
    return Party(text(el, "OrganId"), text(el, "OrganName"))


def _response_for(header: etree._Element) -> ResponseFor | None:
    el = kid(header, "ResponseFor")
    if el is None or not any(text(el, n) for n in ("OrganId", "Code", "DocumentId")):
        return None  # absent, or empty as some producers leave it in a new document
    day = _date(text(el, "PromulgationDate"), "", [])
    return ResponseFor(text(el, "OrganId"), text(el, "Code"), text(el, "DocumentId"), day)


def _date(value: str, field: str, notes: list[str]) -> date | None:
    if not value:
        return None
    try:
        return parse_date(value)
    except EdxmlError as exc:
        if field:
            notes.append(f"{field} ignored: {exc}")
        return None


def _datetime(value: str) -> datetime | None:
    try:
        return parse_datetime(value) if value else None
    except EdxmlError:
        return None


def _holder_ok(el: etree._Element) -> bool:
    parent = el.getparent()
    grand = None if parent is None else parent.getparent()
    if parent is None or grand is None:
        return False
    if is_named(parent, "Attachment"):
        return is_named(grand, "AttachmentEncoded")
    return is_named(parent, "Reference") and is_named(grand, "edXMLManifest")


def _holds_content(ref: etree._Element) -> bool:
    return any(isinstance(c.tag, str) and etree.QName(c).localname == CONTENT for c in ref)


def pair_references(
    envelope: etree._Element, placeholders: Sequence[etree._Element]
) -> list[etree._Element | None]:
    """For each placeholder (a ContentTransferEncoded, document order) the manifest
    Reference that describes it, None when none does: the Reference that holds it,
    or for one in an Attachment the manifest Reference without content of its own
    whose ContentId (cid_key) is the Attachment's (the last such, should a header
    the reader refuses have two). Never raises: the receiver reads kept headers
    with it as they are; the checks are the reader's (_attachments)."""
    by_cid: dict[str, etree._Element] = {}
    for ref in kids(kid(envelope, "edXMLBody", "edXMLManifest"), "Reference"):
        key = cid_key(text(ref, "ContentId"))
        if key and not _holds_content(ref):
            by_cid[key] = ref
    out: list[etree._Element | None] = []
    for el in placeholders:
        holder = el.getparent()
        if holder is not None and is_named(holder, "Reference"):
            out.append(holder)
        elif holder is not None and is_named(holder, "Attachment"):
            out.append(by_cid.get(cid_key(text(holder, "ContentId"))))
        else:
            out.append(None)
    return out


def describe(own: etree._Element | None, ref: etree._Element | None, n: int) -> DeclaredPart:
    """What the holder ``own`` of the ``n``-th placeholder (1-based) and its
    Reference ``ref`` say of that attachment: the holder's own value first, then
    the Reference's, then ``attachment-<n>`` / ``cid:<n>``."""

    def first(name: str) -> str:
        return text(own, name) or text(ref, name)

    types = (text(ref, "ContentType"), text(own, "ContentType"))
    return DeclaredPart(
        content_id=first("ContentId") or f"cid:{n}",
        name=first("AttachmentName") or f"attachment-{n}",
        description=first("Description"),
        media_type=first("ContentType") or "application/octet-stream",
        declared_types=tuple(t.lower() for t in dict.fromkeys(types) if t),
    )


def _attachments(
    root: etree._Element, envelope: etree._Element, files: Sequence[ContentFile], keep_data: bool
) -> tuple[Attachment, ...]:
    contents = content_elements(root)
    if len(contents) != len(files):  # the splitter and the tree disagree: never trust either
        raise EdxmlError("ContentTransferEncoded elements could not be matched to their content")
    for el in contents:
        if etree.QName(el).namespace not in (NS, None):
            raise EdxmlError(f"ContentTransferEncoded in namespace {etree.QName(el).namespace}")
        if not _holder_ok(el):
            raise EdxmlError("ContentTransferEncoded outside an Attachment or manifest Reference")
    file_of = dict(zip(contents, files, strict=True))
    _check_content_ids(root, envelope, file_of)
    refs = pair_references(envelope, contents)
    declared = [
        describe(el.getparent(), ref, n)
        for n, (el, ref) in enumerate(zip(contents, refs, strict=True), start=1)
    ]
    # One ContentId per attachment, wherever its content stands (a Reference's own and
    # an Attachment's could share one): the export names each by it (review 12c).
    seen: set[str] = set()
    for d in declared:
        if cid_key(d.content_id) in seen:
            raise EdxmlError(f"two attachments have ContentId {d.content_id}")
        seen.add(cid_key(d.content_id))
    return tuple(
        _attachment(d, file_of[el], keep_data) for d, el in zip(declared, contents, strict=True)
    )


def _check_content_ids(
    root: etree._Element, envelope: etree._Element, file_of: dict[etree._Element, ContentFile]
) -> None:
    """Each Attachment and Reference holds one content at most; no two References
    and no two Attachments share a ContentId; a Reference without content of its
    own names an Attachment."""
    holders: set[str] = set()
    for att in root.iter(q("Attachment"), "Attachment"):
        parent = att.getparent()
        if parent is None or not is_named(parent, "AttachmentEncoded"):
            continue
        mine = [c for c in att if c in file_of]
        if len(mine) != 1:
            cid = text(att, "ContentId") or "?"
            raise EdxmlError(f"Attachment {cid} has {len(mine)} ContentTransferEncoded, not one")
        key = cid_key(text(att, "ContentId"))
        if key in holders:
            raise EdxmlError(f"two Attachments have ContentId {text(att, 'ContentId')}")
        holders.add(key)
    named: set[str] = set()
    manifest = kid(envelope, "edXMLBody", "edXMLManifest")
    for n, ref in enumerate(kids(manifest, "Reference"), start=1):
        cid = text(ref, "ContentId")
        key = cid_key(cid)
        if key and key in named:
            raise EdxmlError(f"two manifest References have ContentId {cid}")
        named.add(key)
        own = [c for c in ref if c in file_of]
        if len(own) > 1:
            raise EdxmlError(f"manifest Reference {n} has {len(own)} ContentTransferEncoded")
        if own:
            continue
        if not cid:
            raise EdxmlError(f"manifest Reference {n} has no ContentId")
        if key not in holders:
            raise EdxmlError(f"ContentId {cid} points to no attachment")


def _attachment(declared: DeclaredPart, content: ContentFile, keep_data: bool) -> Attachment:
    data = content.path.read_bytes() if keep_data else None
    name, types = declared.name, declared.declared_types
    return Attachment(
        content_id=declared.content_id,
        name=name,
        media_type=declared.media_type,
        description=declared.description,
        size=content.size,
        sha256=content.sha256,
        zipped=is_wrapped_zip(data if data is not None else content.path, name, types),
        declared_types=types,
        path=None if keep_data else content.path,
        content=data,
    )
