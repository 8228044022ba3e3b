"""What the sender accepts, the receiver reads back the same (review 12 F2, F5, F6):
one pairing of placeholders with manifest References on both sides, a kept header
never past what the receiver reads, and the kept header read with the document's
hardening (UTF-8 only, no DTD)."""

from __future__ import annotations

import base64

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.bridges import edxml
from gateway.bridges.edxml.names import text
from gateway.bridges.edxml.reader import cid_key
from gateway.bridges.edxml.skeleton import load_header
from tests.unit.edxml_support import check_layout
from tests.unit.test_edxml_export import facts

NS = edxml.NS


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def document(manifest: str, encoded: str) -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<edXML xmlns="{NS}">'
        f'<edXML:edXMLEnvelope xmlns:edXML="{NS}"><edXML:edXMLHeader><edXML:MessageHeader>'
        "<edXML:From><edXML:OrganId>000.00.00.G22</edXML:OrganId></edXML:From>"
        "<edXML:To><edXML:OrganId>000.00.00.H41</edXML:OrganId></edXML:To>"
        "</edXML:MessageHeader></edXML:edXMLHeader><edXML:edXMLBody>"
        f'<edXML:edXMLManifest version="1.0">{manifest}</edXML:edXMLManifest>'
        f"</edXML:edXMLBody></edXML:edXMLEnvelope><AttachmentEncoded>{encoded}"
        "</AttachmentEncoded></edXML>"
    ).encode()


def reference(cid: str, name: str = "", media: str = "", data: bytes | None = None) -> str:
    out = "<edXML:Reference>"
    out += f"<edXML:ContentId>{cid}</edXML:ContentId>" if cid else ""
    out += f"<edXML:ContentType>{media}</edXML:ContentType>" if media else ""
    out += f"<edXML:AttachmentName>{name}</edXML:AttachmentName>" if name else ""
    if data is not None:
        out += f"<edXML:ContentTransferEncoded>{b64(data)}</edXML:ContentTransferEncoded>"
    return out + "</edXML:Reference>"


def attachment(cid: str, name: str = "", media: str = "", data: bytes = b"x") -> str:
    out = "<Attachment>"
    out += f"<ContentId>{cid}</ContentId>" if cid else ""
    out += f"<AttachmentName>{name}</AttachmentName>" if name else ""
    out += f"<ContentType>{media}</ContentType>" if media else ""
    return out + (
        f'<edXML:ContentTransferEncoded xmlns:edXML="{NS}">{b64(data)}'
        "</edXML:ContentTransferEncoded></Attachment>"
    )


def sent_parts(doc: edxml.EdxmlDocument) -> list[tuple[str, str, str, tuple[str, ...]]]:
    return [(a.content_id, a.name, a.media_type, a.declared_types) for a in doc.attachments]


def read_parts(header_xml: bytes) -> list[tuple[str, str, str, tuple[str, ...]]]:
    return [
        (d.content_id, d.name, d.media_type, d.declared_types)
        for d in edxml.declared_parts(header_xml)
    ]


# F2: one pairing, both sides.


def test_two_references_with_one_content_id_are_refused() -> None:
    data = document(
        reference("cid:1", "a.zip") + reference("1", "b.pdf"), attachment("cid:1", "", "")
    )
    with pytest.raises(edxml.EdxmlError, match="two manifest References have ContentId 1"):
        edxml.parse_edxml(data, max_bytes=len(data))


def test_a_reference_with_its_own_content_describes_that_content_only() -> None:
    same = document(
        reference("cid:1", "cover.txt", "application/zip", b"cover"),
        attachment("cid:1", "report.pdf", "application/pdf", b"%PDF-1.4"),
    )
    with pytest.raises(edxml.EdxmlError, match="two attachments have ContentId cid:1"):
        edxml.parse_edxml(same, max_bytes=len(same))  # one ContentId, two contents (review 12c)
    data = document(
        reference("cid:1", "cover.txt", "application/zip", b"cover"),
        attachment("cid:2", "report.pdf", "application/pdf", b"%PDF-1.4"),
    )
    doc = edxml.parse_edxml(data, max_bytes=len(data))
    assert sent_parts(doc) == [
        ("cid:1", "cover.txt", "application/zip", ("application/zip",)),
        ("cid:2", "report.pdf", "application/pdf", ("application/pdf",)),
    ]
    assert read_parts(doc.header_xml) == sent_parts(doc)


def test_names_and_content_ids_fall_back_alike_on_both_sides() -> None:
    data = document("", attachment("", "", "") + attachment("cid:7", "", "text/plain"))
    doc = edxml.parse_edxml(data, max_bytes=len(data))
    assert sent_parts(doc) == [
        ("cid:1", "attachment-1", "application/octet-stream", ()),
        ("cid:7", "attachment-2", "text/plain", ("text/plain",)),
    ]
    assert read_parts(doc.header_xml) == sent_parts(doc)


def test_content_in_a_reference_outside_the_manifest_is_refused() -> None:
    data = document("", attachment("cid:1")).replace(
        b"</edXML:MessageHeader>",
        f"<edXML:Reference><edXML:ContentTransferEncoded>{b64(b'x')}"
        "</edXML:ContentTransferEncoded></edXML:Reference></edXML:MessageHeader>".encode(),
    )
    with pytest.raises(edxml.EdxmlError, match="outside an Attachment or manifest Reference"):
        edxml.parse_edxml(data, max_bytes=len(data))


CIDS = st.sampled_from(["", "cid:1", "1", "cid:2", "2", "cid:3"])
NAMES = st.sampled_from(["", "a.pdf", "b.zip", "c.txt"])
TYPES = st.sampled_from(["", "application/zip", "application/pdf", "Text/Plain"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.tuples(CIDS, NAMES, TYPES, st.booleans()), max_size=4),
    st.lists(st.tuples(CIDS, NAMES, TYPES), max_size=4),
)
def test_whatever_the_sender_accepts_the_receiver_reads_the_same(
    refs: list[tuple[str, str, str, bool]], atts: list[tuple[str, str, str]]
) -> None:
    data = document(
        "".join(reference(c, n, t, b"own" if own else None) for c, n, t, own in refs),
        "".join(attachment(c, n, t) for c, n, t in atts),
    )
    try:
        doc = edxml.parse_edxml(data, max_bytes=len(data))
    except edxml.EdxmlError as exc:
        # Refused by a rule of the reader, never by the read-back safety net: the
        # two sides pair alike by construction.
        assert "would describe" not in str(exc), exc
        return
    assert read_parts(doc.header_xml) == sent_parts(doc)
    contents = [a.content or b"" for a in doc.attachments]
    zipped = tuple(i for i, a in enumerate(doc.attachments) if a.zipped)
    assert edxml.zipped_parts(doc.header_xml, contents) == zipped
    # And its export has the real layout, every part named by a manifest Reference
    # (review 12c F3), with the contents in order.
    out = edxml.build_edxml(
        doc.header_xml, facts(), [(a.name, a.media_type, a.content or b"") for a in doc.attachments]
    )
    root = check_layout(out)
    named = {cid_key(text(r, "ContentId")) for r in root.iter(f"{{{edxml.NS}}}Reference")}
    assert all(
        cid_key(text(a, "ContentId")) in named for a in root.iter(f"{{{edxml.NS}}}Attachment")
    )
    back = edxml.parse_edxml(out, max_bytes=len(out))
    assert [a.content for a in back.attachments] == [a.content for a in doc.attachments]


# F5: the kept header is the tree written again; escapes can make it longer.


def test_a_header_that_escaping_makes_too_big_is_refused_at_submission() -> None:
    grows = '<Attachment note="' + ">" * (edxml.MAX_HEADER_BYTES // 2) + '">'
    data = document("", attachment("cid:1").replace("<Attachment>", grows, 1))
    assert len(data) < edxml.MAX_HEADER_BYTES  # the markup itself is within the bound
    with pytest.raises(edxml.EdxmlError, match="written back with its escapes"):
        edxml.parse_edxml(data, max_bytes=len(data))


# F6: the kept header read back with the document's hardening.

HEADER = (
    f'<edXML xmlns="{NS}"><edXMLEnvelope><edXMLHeader><MessageHeader>'
    "<From><OrganId>G</OrganId></From><To><OrganId>H</OrganId></To>"
    "<Subject>s</Subject></MessageHeader></edXMLHeader></edXMLEnvelope></edXML>"
)


@pytest.mark.parametrize(
    "raw",
    [
        ('<?xml version="1.0" encoding="UTF-16"?>' + HEADER).encode("utf-16"),
        ('<?xml version="1.0" encoding="UTF-16"?>' + HEADER).encode("utf-16-le"),
        ('<?xml version="1.0" encoding="UTF-32"?>' + HEADER).encode("utf-32"),
        ('<?xml version="1.0" encoding="ISO-8859-1"?>' + HEADER).encode("latin-1"),
        ('<?xml version="1.0" encoding="UTF-8"?><!DOCTYPE edXML>' + HEADER).encode(),
    ],
    ids=["utf16-bom", "utf16-no-bom", "utf32", "latin1", "doctype"],
)
def test_a_kept_header_not_utf8_or_with_a_dtd_is_refused(raw: bytes) -> None:
    with pytest.raises(edxml.EdxmlError):
        load_header(raw)


def test_a_kept_header_in_utf8_reads() -> None:
    bom = b'\xef\xbb\xbf<?xml version="1.0" encoding="utf-8"?>'
    assert load_header(bom + HEADER.encode()) is not None
    assert load_header(HEADER.encode()) is not None
