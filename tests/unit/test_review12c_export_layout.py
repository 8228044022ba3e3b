"""Review 12c: documents the bridge accepts whose export is not in the real layout.

EDXML.md ("Fetching back as edXML"): "The output always has the real layout". A kept
header whose root is ``edXML`` is written back as it is, so every layout the reader
tolerates under an ``edXML`` root comes back out unchanged. The two first cases lose
their attachment in the iOffice parser (PVN API-Gateway-iOffice EdxmlParser reads
contents only from ``root.getChildren("AttachmentEncoded")`` and pairs them with the
manifest References); all fail the project's own structural check (check_layout,
written from the real files). Expected: each is refused at submission, or exported
in the real layout (re-wrapped like an old bare envelope).
"""

from __future__ import annotations

from base64 import b64encode
from datetime import UTC, datetime

import pytest

from gateway.bridges import edxml
from gateway.bridges.edxml.made import Facts
from tests.unit.edxml_support import check_layout

NS = edxml.NS
DECL = f'xmlns:edXML="{NS}"'
B64 = b64encode(b"%PDF-1.4 hello\n").decode()
FACTS = Facts(
    message_id="m", origin="M-PARIS", here="M-HANOI", created=datetime.now(UTC), subject="s",
    doc_class="edxml", dossier="", priority="routine", originator="",
    sender=("000.00.00.G22", "G22"), receivers=(("000.00.00.H41", "H41"),), expires=None,
)  # fmt: skip


def envelope(prefix: str = "edXML:", decl: str = DECL, body_extra: str = "", refs: str = "") -> str:
    refs = refs or (
        "<edXML:Reference><edXML:ContentId>cid:1</edXML:ContentId>"
        "<edXML:ContentType>application/pdf</edXML:ContentType>"
        "<edXML:AttachmentName>a.pdf</edXML:AttachmentName></edXML:Reference>"
    )
    return f"""<{prefix}edXMLEnvelope {decl}>
 <edXML:edXMLHeader {DECL}><edXML:MessageHeader>
  <edXML:From><edXML:OrganId>000.00.00.G22</edXML:OrganId></edXML:From>
  <edXML:To><edXML:OrganId>000.00.00.H41</edXML:OrganId></edXML:To>
 </edXML:MessageHeader></edXML:edXMLHeader>
 <edXML:edXMLBody {DECL}><edXML:edXMLManifest version="1.0">{refs}</edXML:edXMLManifest>{body_extra}
 </edXML:edXMLBody></{prefix}edXMLEnvelope>"""


def attachment(cid: str = "cid:1") -> str:
    return (
        f"<Attachment><ContentId>{cid}</ContentId><AttachmentName>a.pdf</AttachmentName>"
        f"<ContentType>application/pdf</ContentType>"
        f"<edXML:ContentTransferEncoded {DECL}>{B64}</edXML:ContentTransferEncoded></Attachment>"
    )


ENC = f"<AttachmentEncoded>{attachment()}</AttachmentEncoded>"
OWN_REF = (
    "<edXML:Reference><edXML:ContentId>cid:1</edXML:ContentId>"
    "<edXML:AttachmentName>a.pdf</edXML:AttachmentName>"
    f"<edXML:ContentTransferEncoded>{B64}</edXML:ContentTransferEncoded></edXML:Reference>"
)
REF2 = (
    "<edXML:Reference><edXML:ContentId>cid:1</edXML:ContentId></edXML:Reference>"
    "<edXML:Reference><edXML:ContentId>cid:2</edXML:ContentId></edXML:Reference>"
)

CASES = {
    # attachments lost by the iOffice parser:
    "content_in_a_manifest_reference": f'<edXML xmlns="{NS}">{envelope(refs=OWN_REF)}</edXML>',
    "attachment_encoded_in_the_body": f'<edXML xmlns="{NS}">{envelope(body_extra=ENC)}</edXML>',
    # not the real layout (check_layout):
    "two_attachment_encoded": (
        f'<edXML xmlns="{NS}">{envelope(refs=REF2)}<AttachmentEncoded>{attachment()}'
        f"</AttachmentEncoded><AttachmentEncoded>{attachment('cid:2')}</AttachmentEncoded></edXML>"
    ),
    "attachment_encoded_before_the_envelope": f'<edXML xmlns="{NS}">{ENC}{envelope()}</edXML>',
    "unprefixed_envelope": f'<edXML xmlns="{NS}">{envelope(prefix="", decl="")}{ENC}</edXML>',
    "prefixed_root": (
        f'<e:edXML xmlns:e="{NS}">{envelope()}'
        f"<e:AttachmentEncoded><e:Attachment><e:ContentId>cid:1</e:ContentId>"
        f"<edXML:ContentTransferEncoded {DECL}>{B64}</edXML:ContentTransferEncoded>"
        "</e:Attachment></e:AttachmentEncoded></e:edXML>"
    ),
    "another_element_beside_the_envelope": f'<edXML xmlns="{NS}">{envelope()}<Junk/>{ENC}</edXML>',
    "content_before_content_id": (
        f'<edXML xmlns="{NS}">{envelope()}<AttachmentEncoded><Attachment>'
        f"<edXML:ContentTransferEncoded {DECL}>{B64}</edXML:ContentTransferEncoded>"
        "<ContentId>cid:1</ContentId></Attachment></AttachmentEncoded></edXML>"
    ),
    "attachment_encoded_in_no_namespace": (
        f'<edXML xmlns="{NS}">{envelope()}<AttachmentEncoded xmlns=""><Attachment>'
        f"<ContentId>cid:1</ContentId><ContentTransferEncoded>{B64}</ContentTransferEncoded>"
        "</Attachment></AttachmentEncoded></edXML>"
    ),
    "edxml_prefix_declared_on_the_root_too": (
        f'<edXML xmlns="{NS}" {DECL}>{envelope(decl="")}{ENC}</edXML>'
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_an_accepted_document_is_exported_in_the_real_layout(name: str) -> None:
    data = ('<?xml version="1.0" encoding="UTF-8"?>\n' + CASES[name]).encode()
    try:
        doc = edxml.parse_edxml(data, max_bytes=len(data))
    except edxml.EdxmlError:
        return  # refused at submission: fine
    parts = [(a.name, a.media_type, a.data) for a in doc.attachments]
    out = edxml.build_edxml(doc.header_xml, FACTS, parts)
    try:
        check_layout(out)
    except AssertionError as exc:
        pytest.fail(
            f"accepted, and exported out of the real layout ({exc!s:.120}):\n{out.decode()[:1500]}"
        )


# The iOffice parser builds its attachment list from the manifest References only and
# fills each from the Attachment with the same ContentId: an Attachment no Reference
# names is lost there. The reader keeps such an Attachment (EDXML.md), and the rewrap
# of an old bare envelope gives it a new Reference, but a kept header in the real
# layout is written back without one.
def test_every_exported_attachment_is_named_by_a_manifest_reference() -> None:
    data = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<edXML xmlns="{NS}">{envelope(refs=" ")}{ENC}</edXML>'
    ).encode()
    doc = edxml.parse_edxml(data, max_bytes=len(data))  # accepted
    out = edxml.build_edxml(
        doc.header_xml, FACTS, [(a.name, a.media_type, a.data) for a in doc.attachments]
    )
    root = check_layout(out)
    from gateway.bridges.edxml.reader import cid_key

    named = {
        cid_key(r.findtext(f"{{{NS}}}ContentId") or "") for r in root.iter(f"{{{NS}}}Reference")
    }
    for att in root.iter(f"{{{NS}}}Attachment"):
        cid = cid_key(att.findtext(f"{{{NS}}}ContentId") or "")
        assert cid in named, (
            f"exported Attachment {cid} has no manifest Reference: {out.decode()[:900]}"
        )
