"""edXML out: headers made from Valise's facts and old kept headers, in the real
layout (checked by the structural test written from the real files)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from lxml import etree

from gateway.bridges import edxml
from tests.unit.edxml_support import (
    ATTACHMENT_ORDER,
    CTE,
    check_layout,
    is_subsequence,
    local,
    samples_dir,
)

NS = edxml.NS
CREATED = datetime(2026, 12, 1, 20, 30, tzinfo=UTC)  # 2026/12/02 03:30 in Hanoi
MID = "0190a000-0000-7000-8000-000000000001"
FILES = [("cong-van.pdf", "application/pdf", b"%PDF-1.4 x"), ("phu-luc.txt", "text/plain", b"pl")]
REQUIRED = [
    "From",
    "To",
    "DocumentId",
    "Code",
    "PromulgationInfo",
    "DocumentType",
    "Subject",
    "SignerInfo",
    "DueDate",
    "OtherInfo",
    "SteeringType",
]


def facts(**kw: object) -> edxml.Facts:
    base: dict[str, object] = dict(
        message_id=MID,
        origin="M-PARIS",
        here="M-HANOI",
        created=CREATED,
        subject="Công hàm",
        doc_class="edxml-3",
        dossier="45/BNG-LS",
        priority="immediate",
        originator="Nguyễn Văn A",
        sender=("000.00.00.G06", "Bộ Ngoại giao"),
        receivers=(("000.00.00.H41", "UBND Tỉnh Nghệ An"), ("000.00.00.H14", "UBND Cao Bằng")),
        expires=datetime(2027, 1, 31, 10, tzinfo=UTC),
    )
    base.update(kw)
    return edxml.Facts(**base)  # type: ignore[arg-type]


def _names(el: etree._Element) -> list[str]:
    return [local(c) for c in el if isinstance(c.tag, str)]


def _dedupe(names: list[str]) -> list[str]:
    return [n for i, n in enumerate(names) if i == 0 or names[i - 1] != n]


@pytest.fixture(scope="module")
def builder_orders() -> dict[str, list[str]]:
    """Child orders of the SDK builder's outputs, read from the real files."""
    orders: dict[str, list[str]] = {}
    for name in ("vpcp-sdk__xml_dc0bdef0.edxml", "vnpt-edxml102__gen_edoc_new.edxml"):
        root = etree.parse(str(samples_dir() / name)).getroot()
        for path in (
            "MessageHeader",
            "From",
            "TraceHeaderList",
            "Bussiness",
            "TraceHeader",
            "PromulgationInfo",
            "DocumentType",
            "SignerInfo",
            "Code",
        ):
            el = next(root.iter(f"{{{NS}}}{path}"))
            order = _dedupe(_names(el))
            assert orders.setdefault(path, order) == order  # both builder outputs agree
    return orders


def test_a_made_header_has_the_real_layout_and_order(builder_orders: dict[str, list[str]]) -> None:
    out = edxml.build_edxml(None, facts(), FILES)
    root = check_layout(out)
    header = next(root.iter(f"{{{NS}}}MessageHeader"))
    names = _dedupe(_names(header))
    assert is_subsequence(names, builder_orders["MessageHeader"]), names
    assert [n for n in names if n in REQUIRED] == REQUIRED
    for path in (
        "From",
        "TraceHeaderList",
        "Bussiness",
        "TraceHeader",
        "PromulgationInfo",
        "DocumentType",
        "SignerInfo",
        "Code",
    ):
        el = next(root.iter(f"{{{NS}}}{path}"))
        assert is_subsequence(_names(el), builder_orders[path]), (path, _names(el))
    for att in root.iter(f"{{{NS}}}Attachment"):
        assert _names(att) == ATTACHMENT_ORDER
    assert not [e for e in root.iter() if e.prefix not in (None, "edXML")]


def test_a_made_header_says_what_the_real_files_say() -> None:
    out = edxml.build_edxml(None, facts(), FILES)
    doc = edxml.parse_edxml(out, max_bytes=1 << 20)
    assert doc.kind is edxml.Kind.NEW
    assert doc.sender == edxml.Party("000.00.00.G06", "Bộ Ngoại giao")
    assert [r.organ_id for r in doc.recipients] == ["000.00.00.H41", "000.00.00.H14"]
    assert doc.document_id == "000.00.00.G06,2026/12/02,45/BNG-LS"
    assert doc.business_document_id == f"000.00.00.G06,2026/12/02,{MID}"  # Valise's id
    assert (doc.code_number, doc.code_notation) == ("45", "BNG-LS")
    assert (doc.document_type, doc.document_type_name) == ("3", "edxml-3")
    assert (doc.priority, doc.steering_type) == ("2", "1")
    assert doc.due_date is not None and doc.due_date.isoformat() == "2027-01-31"
    assert doc.due_date_text == "2027/01/31" and doc.promulgation_date is not None
    assert [
        (a.content_id, a.name, a.media_type, a.description, a.data) for a in doc.attachments
    ] == [
        ("cid:1", "cong-van.pdf", "application/pdf", "cong-van.pdf", b"%PDF-1.4 x"),
        ("cid:2", "phu-luc.txt", "text/plain", "phu-luc.txt", b"pl"),
    ]
    root = etree.fromstring(out)
    stamp = next(root.iter(f"{{{NS}}}Timestamp"))
    assert stamp.text == "2026/12/02 03:30:00"
    signer = next(root.iter(f"{{{NS}}}SignerInfo"))
    assert [(local(c), c.text) for c in signer] == [
        ("Competence", None),
        ("Position", None),
        ("FullName", "Nguyễn Văn A"),
    ]


def test_a_made_header_without_organs_uses_site_ids_and_empty_fields() -> None:
    out = edxml.build_edxml(
        None,
        facts(
            sender=None,
            receivers=(),
            dossier="",
            originator="",
            expires=None,
            doc_class="document",
            priority="flash",
        ),
        [],
    )
    root = check_layout(out)
    assert [local(c) for c in root] == ["edXMLEnvelope"]  # no attachment: no AttachmentEncoded
    doc = edxml.parse_edxml(out, max_bytes=1 << 20)
    assert doc.sender.organ_id == "M-PARIS" and [r.organ_id for r in doc.recipients] == ["M-HANOI"]
    assert doc.document_id == f"M-PARIS,2026/12/02,{MID}"  # no dossier: Valise's id
    assert (doc.document_type, doc.priority, doc.due_date) == ("1", "3", None)
    assert (doc.code_number, doc.code_notation) == ("", "")
    signer = next(root.iter(f"{{{NS}}}SignerInfo"))
    assert [c.text for c in signer] == [None, None, None]


OLD_HEADER = f"""<?xml version='1.0' encoding='UTF-8'?>
<edXML:edXMLEnvelope xmlns:edXML="{NS}"><edXML:edXMLHeader><edXML:MessageHeader>
<edXML:From><edXML:OrganId>000.00.00.G06</edXML:OrganId></edXML:From>
<edXML:To><edXML:OrganId>M-HANOI</edXML:OrganId></edXML:To><edXML:DocumentId>VB-45</edXML:DocumentId>
</edXML:MessageHeader></edXML:edXMLHeader><edXML:edXMLBody><edXML:edXMLManifest version="1.0">
<edXML:Reference><edXML:ContentId>cid:1</edXML:ContentId><edXML:ContentType>application/pdf</edXML:ContentType>
<edXML:Description>Công văn</edXML:Description>
<edXML:AttachmentName>cong-van.pdf</edXML:AttachmentName></edXML:Reference>
<edXML:Reference><edXML:ContentId>2</edXML:ContentId><edXML:ContentType>text/plain</edXML:ContentType>
<edXML:AttachmentName>phu-luc.txt</edXML:AttachmentName></edXML:Reference>
</edXML:edXMLManifest></edXML:edXMLBody></edXML:edXMLEnvelope>""".encode()


def test_an_old_envelope_only_header_is_rewrapped() -> None:
    out = edxml.build_edxml(OLD_HEADER, facts(), FILES)
    root = check_layout(out)
    attachments = list(root.iter(f"{{{NS}}}Attachment"))
    assert [[c.text for c in a][:4] for a in attachments] == [
        ["cid:1", "cong-van.pdf", "Công văn", "application/pdf"],
        ["2", "phu-luc.txt", "phu-luc.txt", "text/plain"],
    ]
    doc = edxml.parse_edxml(out, max_bytes=1 << 20)
    assert doc.document_id == "VB-45" and [a.data for a in doc.attachments] == [f[2] for f in FILES]
    # A part the old manifest did not name gets its own Reference.
    more = edxml.build_edxml(
        OLD_HEADER, facts(), [*FILES, ("x.bin", "application/octet-stream", b"x")]
    )
    check_layout(more)
    assert [a.name for a in edxml.parse_edxml(more, max_bytes=1 << 20).attachments][-1] == "x.bin"


def test_an_old_envelope_with_attachment_encoded_in_its_body_is_rewrapped() -> None:
    # The content of "2" comes first: parts follow the placeholders' order, and each
    # keeps its own ContentId (not the n-th manifest Reference's).
    inner = OLD_HEADER.replace(
        b"</edXML:edXMLManifest>",
        b"</edXML:edXMLManifest><AttachmentEncoded>"
        b"<Attachment><ContentId>2</ContentId><ContentTransferEncoded/></Attachment>"
        b"<Attachment><ContentId>cid:1</ContentId><ContentTransferEncoded/></Attachment>"
        b"</AttachmentEncoded>",
    )
    parts = FILES[::-1]
    out = edxml.build_edxml(inner, facts(), parts)
    root = check_layout(out)
    assert len(list(root.iter("AttachmentEncoded", f"{{{NS}}}AttachmentEncoded"))) == 1
    back = edxml.parse_edxml(out, max_bytes=1 << 20)
    assert [(a.content_id, a.name, a.data) for a in back.attachments] == [
        ("2", "phu-luc.txt", b"pl"),
        ("cid:1", "cong-van.pdf", b"%PDF-1.4 x"),
    ]
    with pytest.raises(edxml.EdxmlError, match="has 2 attachments, 1 given"):
        edxml.build_edxml(inner, facts(), parts[:1])


def test_a_kept_header_must_match_the_parts() -> None:
    kept = edxml.build_edxml(None, facts(), FILES)
    header = edxml.parse_edxml(kept, max_bytes=1 << 20).header_xml
    with pytest.raises(edxml.EdxmlError, match="has 2 attachments, 1 given"):
        edxml.build_edxml(header, facts(), FILES[:1])
    with pytest.raises(edxml.EdxmlError, match="names 2 attachments, 1 given"):
        edxml.build_edxml(OLD_HEADER, facts(), FILES[:1])
    for bad in (b"<x/>", b"not xml", b'<!DOCTYPE x [<!ENTITY a "b">]><x/>'):
        with pytest.raises(edxml.EdxmlError):
            edxml.build_edxml(bad, facts(), FILES)


def test_parts_from_files_and_bytes_give_the_same_document(tmp_path: Path) -> None:
    paths = []
    for name, media, data in FILES:
        (tmp_path / name).write_bytes(data)
        paths.append((name, media, tmp_path / name))
    assert edxml.build_edxml(None, facts(), paths) == edxml.build_edxml(None, facts(), FILES)
    with open(tmp_path / "out.edxml", "wb") as out:
        edxml.write_edxml(out, None, facts(), paths)
    assert (tmp_path / "out.edxml").read_bytes() == edxml.build_edxml(None, facts(), FILES)


@pytest.mark.parametrize(
    "bad",
    [
        # What Valise exported before issue 12: the envelope as root, AttachmentEncoded in
        # edXMLBody (the SDK's parser and iOffice's could not read it).
        f'<edXML:edXMLEnvelope xmlns:edXML="{NS}"><edXML:edXMLBody><edXML:AttachmentEncoded>'
        "</edXML:AttachmentEncoded></edXML:edXMLBody></edXML:edXMLEnvelope>",
        f'<edXML xmlns="{NS}"><edXML:edXMLEnvelope xmlns:edXML="{NS}"><edXML:edXMLBody>'
        "<AttachmentEncoded/></edXML:edXMLBody></edXML:edXMLEnvelope></edXML>",
        f'<edXML xmlns="{NS}" xmlns="{NS}"><edXML:edXMLEnvelope xmlns:edXML="{NS}"/></edXML>',
        f'<edXML xmlns="{NS}"><AttachmentEncoded/>'
        f'<edXML:edXMLEnvelope xmlns:edXML="{NS}"/></edXML>',
        f'<edXML xmlns="{NS}"><edXMLEnvelope/></edXML>',
        f'<edXML xmlns="{NS}"><edXML:edXMLEnvelope xmlns:edXML="{NS}"/><AttachmentEncoded>'
        f'<Attachment><edXML:ContentTransferEncoded xmlns:edXML="{NS}"/><ContentId/></Attachment>'
        "</AttachmentEncoded></edXML>",
    ],
)
def test_the_layout_check_has_teeth(bad: str) -> None:
    with pytest.raises((AssertionError, etree.XMLSyntaxError)):
        check_layout(bad.encode())


def test_base64_is_written_on_one_line() -> None:
    big = ("big.bin", "application/octet-stream", bytes(range(256)) * 1000)
    out = edxml.build_edxml(None, facts(), [big])
    text = next(etree.fromstring(out).iter(f"{{{NS}}}{CTE}")).text
    assert text is not None and "\n" not in text and len(text) == 4 * ((256_000 + 2) // 3)
