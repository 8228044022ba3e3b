"""edXML (QCVN 102:2016): parsing, the mapping into envelope fields, producing it back,
and a hardened parser that raises only EdxmlError."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.bridges import edxml

MAX = 1024 * 1024
NS = edxml.NS


def sample(
    *,
    to: str = "M-HANOI",
    attachments: tuple[tuple[str, str, bytes], ...] = (("cv.pdf", "application/pdf", b"%PDF-1"),),
    priority: str = "2",
    due: str = "2099-06-30",
    wrapper: bool = False,
) -> bytes:
    refs = "".join(
        f"<edXML:Reference><edXML:ContentId>cid:{i}</edXML:ContentId>"
        f"<edXML:ContentType>{m}</edXML:ContentType>"
        f"<edXML:AttachmentName>{n}</edXML:AttachmentName></edXML:Reference>"
        for i, (n, m, _) in enumerate(attachments, start=1)
    )
    encoded = "".join(
        f"<Attachment><ContentId>cid:{i}</ContentId>"
        f"<ContentTransferEncoded>{base64.encodebytes(d).decode()}</ContentTransferEncoded>"
        "</Attachment>"
        for i, (_, _, d) in enumerate(attachments, start=1)
    )
    envelope = f"""<edXML:edXMLEnvelope xmlns:edXML="{NS}">
  <edXML:edXMLHeader>
    <edXML:MessageHeader>
      <edXML:From><edXML:OrganId>000.00.00.G06</edXML:OrganId>
        <edXML:OrganName>Bộ Ngoại giao</edXML:OrganName></edXML:From>
      <edXML:To><edXML:OrganId>{to}</edXML:OrganId>
        <edXML:OrganName>Sứ quán</edXML:OrganName></edXML:To>
      <edXML:Code><edXML:CodeNumber>123</edXML:CodeNumber>
        <edXML:CodeNotation>BNG-LS</edXML:CodeNotation></edXML:Code>
      <edXML:DocumentType><edXML:Type>1</edXML:Type>
        <edXML:TypeName>Công văn</edXML:TypeName></edXML:DocumentType>
      <edXML:Subject>Về việc
        cấp thị thực</edXML:Subject>
      <edXML:DueDate>{due}</edXML:DueDate>
      <edXML:OtherInfo><edXML:Priority>{priority}</edXML:Priority></edXML:OtherInfo>
      <edXML:DocumentId>DOC-1</edXML:DocumentId>
    </edXML:MessageHeader>
  </edXML:edXMLHeader>
  <edXML:edXMLBody><edXML:edXMLManifest version="1.0">{refs}</edXML:edXMLManifest>
  {"" if wrapper else f"<AttachmentEncoded>{encoded}</AttachmentEncoded>"}
  </edXML:edXMLBody>
</edXML:edXMLEnvelope>"""
    if wrapper:
        outside = f"<AttachmentEncoded>{encoded}</AttachmentEncoded>"
        envelope = f'<edXML:edXML xmlns:edXML="{NS}">{envelope}{outside}</edXML:edXML>'
    return ('<?xml version="1.0" encoding="UTF-8"?>\n' + envelope).encode()


def test_parse_maps_the_message_header() -> None:
    doc = edxml.parse_edxml(sample(), max_bytes=MAX)
    assert doc.sender == edxml.Party("000.00.00.G06", "Bộ Ngoại giao")
    assert [r.organ_id for r in doc.recipients] == ["M-HANOI"]
    assert (doc.code_number, doc.code_notation) == ("123", "BNG-LS")
    assert doc.subject == "Về việc cấp thị thực"  # whitespace folded: one line
    assert edxml.doc_class(doc) == "edxml-1"
    assert edxml.dossier(doc) == "123/BNG-LS"
    assert edxml.priority(doc) == "immediate"
    assert edxml.originator(doc) == "Bộ Ngoại giao <000.00.00.G06>"
    due = edxml.expires(doc, datetime(2026, 1, 1, tzinfo=UTC))
    assert due is not None and due.isoformat() == "2099-06-30T23:59:59+07:00"
    assert [(a.content_id, a.name, a.media_type, a.data) for a in doc.attachments] == [
        ("cid:1", "cv.pdf", "application/pdf", b"%PDF-1")
    ]
    assert doc.kind is edxml.Kind.NEW and edxml.kind(doc) == "new"
    # The whole document is kept, each ContentTransferEncoded emptied as a placeholder.
    assert b"<ContentTransferEncoded/>" in doc.header_xml and b"DOC-1" in doc.header_xml
    assert base64.b64encode(b"%PDF-1") not in doc.header_xml


def test_wrapper_root_with_attachments_outside_the_envelope() -> None:
    doc = edxml.parse_edxml(sample(wrapper=True), max_bytes=MAX)
    assert [a.data for a in doc.attachments] == [b"%PDF-1"]


def test_mapping_edges() -> None:
    doc = edxml.parse_edxml(sample(priority="9", due="2001-01-01"), max_bytes=MAX)
    assert edxml.priority(doc) == "routine"
    assert edxml.expires(doc, datetime(2026, 1, 1, tzinfo=UTC)) is None  # past: default expiry
    odd = edxml.parse_edxml(sample().replace(b"BNG-LS", "QĐ-TTg".encode()), max_bytes=MAX)
    assert edxml.dossier(odd) is None  # not expressible as a dossier id: kept in the header


def test_build_from_the_kept_header_round_trips() -> None:
    files = (
        ("a.txt", "text/plain", b"hello\n"),
        ("b.bin", "application/octet-stream", bytes(range(256))),
    )
    doc = edxml.parse_edxml(sample(attachments=files), max_bytes=MAX)
    facts = edxml.Facts(
        "x", "M-PARIS", "M-HANOI", datetime.now(UTC), "", "edxml", "", "routine", ""
    )
    out = edxml.build_edxml(
        header_xml=doc.header_xml,
        facts=facts,
        attachments=[(a.name, a.media_type, a.data) for a in doc.attachments],
    )
    again = edxml.parse_edxml(out, max_bytes=MAX)
    assert [(a.name, a.media_type, a.data) for a in again.attachments] == list(files)
    assert (again.sender, again.recipients, again.subject) == (
        doc.sender,
        doc.recipients,
        doc.subject,
    )
    assert again.document_id == "DOC-1"


def test_build_without_a_header_makes_one_from_the_facts() -> None:
    facts = edxml.Facts(
        "0190a000-0000-7000-8000-000000000001",
        "M-PARIS",
        "M-HANOI",
        datetime(2026, 12, 1, tzinfo=UTC),
        "Note verbale",
        "document",
        "NV/12",
        "flash",
        "",
    )
    out = edxml.build_edxml(
        header_xml=None, facts=facts, attachments=[("n.txt", "text/plain", b"x")]
    )
    doc = edxml.parse_edxml(out, max_bytes=MAX)
    assert doc.sender is not None and doc.sender.organ_id == "M-PARIS"
    assert [r.organ_id for r in doc.recipients] == ["M-HANOI"]
    assert (doc.subject, doc.code_number, doc.code_notation) == ("Note verbale", "NV", "12")
    assert edxml.priority(doc) == "flash"
    assert doc.document_id == "M-PARIS,2026/12/01,NV/12"  # the real form: organ,date,code
    assert doc.business_document_id == f"M-PARIS,2026/12/01,{facts.message_id}"
    assert [(a.name, a.data) for a in doc.attachments] == [("n.txt", b"x")]


LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>
<edXML:edXMLEnvelope xmlns:edXML="http://www.mic.gov.vn/TBT/QCVN_102_2016">&lol2;</edXML:edXMLEnvelope>"""
EXTERNAL = b"""<?xml version="1.0"?>
<!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><x>&xxe;</x>"""


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"", "well-formed"),
        (b"not xml at all", "well-formed"),
        (b"<a><b></a>", "well-formed"),
        (LAUGHS, "DTD"),
        (EXTERNAL, "DTD"),
        (b'<edXMLEnvelope xmlns="urn:other"/>', "edXMLEnvelope"),
        (
            sample()
            .replace(b"<edXML:edXMLHeader>", b"<edXML:edXMLHeaderX>")
            .replace(b"</edXML:edXMLHeader>", b"</edXML:edXMLHeaderX>"),
            "MessageHeader",
        ),
        (sample().replace(b"000.00.00.G06", b""), "From/OrganId"),
        (sample().replace(b"<edXML:OrganId>M-HANOI</edXML:OrganId>", b""), "To/OrganId"),
        (
            sample().replace(b"<Attachment>", b"<Other>").replace(b"</Attachment>", b"</Other>"),
            "outside an Attachment",
        ),
        (sample().replace(base64.encodebytes(b"%PDF-1").strip(), b"!!notbase64!!"), "base64"),
        (b"<a>" * 30 + b"</a>" * 30, "deeper"),
        (b"x" * (MAX + 1), "exceeds"),
    ],
)
def test_malformed_edxml_is_refused_with_a_clear_reason(data: bytes, why: str) -> None:
    with pytest.raises(edxml.EdxmlError, match=why):
        edxml.parse_edxml(data, max_bytes=MAX)


def test_too_many_elements() -> None:
    body = b"<a>" + b"<b/>" * (edxml.MAX_ELEMENTS + 1) + b"</a>"
    with pytest.raises(edxml.EdxmlError, match="elements"):
        edxml.parse_edxml(body, max_bytes=len(body))


PROPERTY = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
VALID = sample()


def _only_typed(data: bytes) -> None:
    try:
        edxml.parse_edxml(data, max_bytes=MAX)
    except edxml.EdxmlError as exc:
        assert str(exc) and "\n" not in str(exc)


@PROPERTY
@given(st.binary(max_size=2048))
def test_arbitrary_bytes_raise_only_edxml_error(data: bytes) -> None:
    _only_typed(data)


@PROPERTY
@given(st.integers(0, len(VALID) - 1), st.binary(min_size=0, max_size=16), st.integers(0, 16))
def test_mutated_documents_raise_only_edxml_error(at: int, insert: bytes, cut: int) -> None:
    _only_typed(VALID[:at] + insert + VALID[at + cut :])


@PROPERTY
@given(
    st.text(alphabet=st.sampled_from("<>/=\"' &;:!?xmlnsedXMLEnvelopeHeader" + NS), max_size=300)
)
def test_xmlish_text_raises_only_edxml_error(text: str) -> None:
    _only_typed(text.encode())
