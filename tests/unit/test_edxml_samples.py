"""Every real edXML sample (../shared/edxml-samples, top level and more/), read in
place: accepted with what it says, or refused with the reason; its header kept
byte-exact after canonicalisation; exported back in the real layout to the same
canonical bytes."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from gateway.bridges import edxml
from tests.unit.edxml_support import base64_texts, c14n, check_layout, emptied, samples_dir

K = edxml.Kind
G22_3 = ["000.00.00.H41", "000.00.00.H14", "000.00.00.G17"]
# file -> what it must parse to: kind, sender, recipients, zipped flag per attachment,
# PromulgationDate, DueDate; or the refusal's reason.
EXPECTED: dict[str, dict[str, Any]] = {
    "bkav__edoc_new.edxml": dict(
        kind=K.NEW,
        sender="000.00.11.H53",
        to=["000.00.01.A53"],
        zipped=[True],
        promulgated=date(2020, 10, 30),
        due=None,  # dd/MM/yyyy; an empty DueDate
    ),
    "pvn__uploads_1da394ba.edxml": dict(
        kind=K.NEW,
        sender="vxp.saas.03",
        to=["vxp.saas.02"],
        zipped=[True, True, True],
        promulgated=date(2025, 10, 20),
        due=None,
    ),
    "pvn__xml_2025_874e0f18.edxml": dict(
        kind=K.NEW,
        sender="vxp.saas.03",
        to=["vxp.saas.03"],
        zipped=[True],
        promulgated=date(2025, 10, 23),
        due=None,
    ),
    "pvn__xml_2025_9e272474.edxml": dict(
        kind=K.NEW,
        sender="vxp.saas.03",
        to=["vxp.saas.03"],
        zipped=[False],
        promulgated=date(2025, 10, 20),
        due=None,
    ),
    "vnpt-edxml102__gen_edoc_new.edxml": dict(
        kind=K.NEW,
        sender="000.00.00.G22",
        to=["000.00.00.H41"],
        zipped=[False, False],
        promulgated=date(2026, 12, 7),
        due=date(2026, 12, 17),
    ),
    "vpcp-sdk__edoc_new.edxml": dict(
        kind=K.NEW,
        sender="000.00.00.A80",
        to=["28.22.H17"],
        zipped=[True],
        promulgated=date(2019, 1, 16),
        due=date(2018, 9, 28),
    ),
    "vpcp-sdk__edoc_revocation.edxml": dict(
        kind=K.REVOCATION,
        sender="000.00.00.G22",
        to=G22_3,
        zipped=[True],
        promulgated=date(2018, 9, 28),
        due=date(2018, 9, 28),
    ),
    "vpcp-sdk__status.edxml": dict(
        kind=K.STATUS,
        sender="000.00.00.H41",
        to=[],
        zipped=[],
        status="01",
        promulgated=None,
        due=None,
    ),
    "vpcp-sdk__xml_dc0bdef0.edxml": dict(
        kind=K.NEW,
        sender="000.00.00.G22",
        to=G22_3,
        zipped=[True],
        promulgated=date(2019, 4, 11),
        due=date(2019, 4, 11),
    ),
    "more/bkav__status_processing_05.edxml": dict(
        kind=K.STATUS,
        sender="000.00.00.H41",
        to=[],
        zipped=[],
        status="05",
        promulgated=None,
        due=None,
    ),
    "more/derived__dc0bdef0_cid_without_prefix.edxml": dict(
        kind=K.NEW,
        sender="000.00.00.G22",
        to=G22_3,
        zipped=[True],
        promulgated=date(2019, 4, 11),
        due=date(2019, 4, 11),
    ),
    "more/pvn__uploads_b6e1f29d.edxml": dict(
        kind=K.NEW,
        sender="vxp.saas.03",
        to=["vxp.saas.03"],
        zipped=[True, True],
        promulgated=date(2025, 10, 16),
        due=None,
    ),
    "more/pvn__xml_2019_852e179c.edxml": dict(
        kind=K.NEW,
        sender="000.00.15.H51",
        to=["000.00.15.H51"],
        zipped=[True],
        promulgated=date(2019, 1, 17),
        due=date(2018, 6, 25),
    ),
    "more/vpcp-sdk__edoc.edxml": dict(
        refused="not well-formed XML: Opening and ending tag mismatch: From"
    ),
    "more/vpcp-sdk__edoc_replacement.edxml": dict(
        kind=K.REPLACEMENT,
        sender="000.00.00.G22",
        to=G22_3,
        zipped=[True],
        promulgated=date(2018, 9, 28),
        due=date(2018, 9, 28),
    ),
    "more/vpcp-sdk__edoc_update.edxml": dict(
        kind=K.UPDATE,
        sender="000.00.00.G22",
        to=G22_3,
        zipped=[True],
        promulgated=date(2018, 9, 28),
        due=date(2018, 9, 28),
    ),
    "more/vpcp-sdk__status_inbox__01.edxml": dict(
        kind=K.STATUS,
        sender="000.00.00.H41",
        to=[],
        zipped=[],
        status="01",
        promulgated=None,
        due=None,
    ),
    "more/vpcp-sdk__status_processing_05.edxml": dict(
        kind=K.STATUS,
        sender="000.00.00.H41",
        to=[],
        zipped=[],
        status="05",
        promulgated=None,
        due=None,
    ),
}
# more/ also holds copies of top-level files: they must parse as their originals.
for _name in [n for n in EXPECTED if "/" not in n and not n.startswith("vnpt")]:
    EXPECTED[f"more/{_name}"] = EXPECTED[_name]
ACCEPTED = sorted(n for n, e in EXPECTED.items() if "refused" not in e)


@pytest.fixture(scope="module")
def samples() -> Path:
    return samples_dir()


def _parse(path: Path, out: Path) -> edxml.EdxmlDocument:
    return edxml.parse_edxml_file(path, out, max_attachments=edxml.MAX_ATTACHMENTS)


def test_every_sample_has_an_expectation(samples: Path) -> None:
    present = {str(p.relative_to(samples)) for p in samples.rglob("*.edxml")}
    assert present == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_sample_is_accepted_or_refused_with_the_reason(
    name: str, samples: Path, tmp_path: Path
) -> None:
    want = EXPECTED[name]
    raw = (samples / name).read_bytes()
    if "refused" in want:
        with pytest.raises(edxml.EdxmlError, match=want["refused"]):
            _parse(samples / name, tmp_path)
        assert list(tmp_path.iterdir()) == []  # nothing left behind
        return
    doc = _parse(samples / name, tmp_path)
    assert doc.kind is want["kind"]
    assert doc.sender.organ_id == want["sender"]
    assert [r.organ_id for r in doc.recipients] == want["to"]
    assert [a.zipped for a in doc.attachments] == want["zipped"]
    assert doc.promulgation_date == want["promulgated"] and doc.due_date == want["due"]
    # Each attachment is the base64 of the file's text, decoded, in document order.
    texts = base64_texts(raw)
    assert len(texts) == len(doc.attachments)
    for a, text in zip(doc.attachments, texts, strict=True):
        data = base64.b64decode(text)
        assert a.path is not None and a.path.parent == tmp_path
        assert a.path.read_bytes() == data and a.size == len(data)
        assert a.sha256 == hashlib.sha256(data).hexdigest()
        assert (a.path.stat().st_mode & 0o777) == 0o600
    if doc.kind is K.STATUS:
        assert doc.status_code == want["status"] and doc.response_for is not None
        assert doc.response_for.organ_id == "000.00.00.G22"
        assert edxml.wanted_organs(doc) == ("000.00.00.G22",)
        assert edxml.doc_class(doc) == "edxml-status"
        assert edxml.dossier(doc) is None  # 7816/VPCP-TTĐT: not ASCII, kept in the header
    else:
        assert list(edxml.wanted_organs(doc)) == list(dict.fromkeys(want["to"]))
        assert edxml.doc_class(doc) == f"edxml-{doc.document_type}"


def test_kinds_and_their_details(samples: Path, tmp_path: Path) -> None:
    replacement = _parse(samples / "more/vpcp-sdk__edoc_replacement.edxml", tmp_path)
    assert replacement.business_reason == "Văn bản thay thế"
    assert [r.document_id for r in replacement.replacement_info] == [
        "000.00.00.G22,2014/01/30,7806/VPCP-TTĐT"
    ] * 2
    assert replacement.replacement_info[0].organ_ids == ("000.00.00.H41", "000.00.00.H14")
    update = _parse(samples / "more/vpcp-sdk__edoc_update.edxml", tmp_path)
    assert update.business_reason == "Cập nhật văn bản điện tử"
    revocation = _parse(samples / "vpcp-sdk__edoc_revocation.edxml", tmp_path)
    assert revocation.business_reason == "Thu hồi văn bản điện tử"
    assert revocation.response_for is not None  # the revoked document
    assert revocation.response_for.document_id == "000.00.04.G14,2012/08/06,267/VPCP-TTĐT"
    status = _parse(samples / "vpcp-sdk__status.edxml", tmp_path)
    assert status.status_description.startswith("Văn thư - Phòng Văn thư")
    assert status.status_time == datetime(2018, 9, 28, 10, 25, 11, tzinfo=UTC)
    assert status.response_for is not None
    assert status.response_for.document_id == "000.00.00.G22,2015/09/30,7816/VPCP-TTĐT"
    assert status.response_for.promulgation_date == date(2018, 9, 28)
    empty_response = _parse(samples / "more/pvn__xml_2019_852e179c.edxml", tmp_path)
    assert empty_response.response_for is None  # an empty ResponseFor in a new document


def test_fields_of_the_sdk_builder_output(samples: Path, tmp_path: Path) -> None:
    doc = _parse(samples / "vpcp-sdk__xml_dc0bdef0.edxml", tmp_path)
    assert doc.sender == edxml.Party("000.00.00.G22", "Văn phòng Chính phủ")
    assert doc.document_id == "000.00.00.G22,2015/09/30,7816/VPCP-TTĐT"
    assert (doc.code_number, doc.code_notation) == ("7816", "VPCP-TTĐT")
    assert (doc.document_type, doc.document_type_name) == ("1", "Công văn")
    assert doc.subject == "V/v kết nối, liên thông phần mềm quản lý văn bản"
    assert (doc.priority, doc.steering_type) == ("0", "1")
    (a,) = doc.attachments
    assert (a.content_id, a.name, a.description) == (
        "cid:209",
        "1896_QD-TTg_m_294779.doc",
        "1896_QD-TTg_m_294779.doc",
    )
    assert a.media_type == "application/zip" and a.zipped
    assert edxml.originator(doc) == "Văn phòng Chính phủ <000.00.00.G22>"


def test_attachment_content_type_is_its_own(samples: Path, tmp_path: Path) -> None:
    vnpt = _parse(samples / "vnpt-edxml102__gen_edoc_new.edxml", tmp_path)
    # Reference says application/zip, the Attachment the real type: the Attachment wins.
    assert [a.media_type for a in vnpt.attachments] == ["application/pdf", "application/docx"]
    assert vnpt.attachments[1].declared_types == ("application/zip", "application/docx")
    pvn = _parse(samples / "more/pvn__uploads_b6e1f29d.edxml", tmp_path)
    assert [a.media_type for a in pvn.attachments] == ["application/zip"] * 2


def test_content_id_matches_with_or_without_the_cid_prefix(samples: Path, tmp_path: Path) -> None:
    doc = _parse(samples / "more/derived__dc0bdef0_cid_without_prefix.edxml", tmp_path)
    assert [(a.content_id, a.name) for a in doc.attachments] == [
        ("209", "1896_QD-TTg_m_294779.doc")
    ]
    raw = (samples / "vpcp-sdk__xml_dc0bdef0.edxml").read_bytes()
    swapped = raw.replace(
        b"<edXML:ContentId>cid:209</edXML:ContentId>", b"<edXML:ContentId>209</edXML:ContentId>"
    )
    assert swapped != raw
    back = edxml.parse_edxml(swapped, max_bytes=len(swapped))
    assert [a.content_id for a in back.attachments] == ["cid:209"]


def test_a_content_id_pointing_nowhere_is_refused(samples: Path, tmp_path: Path) -> None:
    raw = (samples / "vpcp-sdk__xml_dc0bdef0.edxml").read_bytes()
    bad = raw.replace(
        b"<edXML:ContentId>cid:209</edXML:ContentId>", b"<edXML:ContentId>cid:999</edXML:ContentId>"
    )
    source = tmp_path / "bad.edxml"
    source.write_bytes(bad)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(edxml.EdxmlError, match="ContentId cid:999 points to no attachment"):
        _parse(source, out)
    assert list(out.iterdir()) == []


def test_an_attachment_no_reference_names_is_kept(samples: Path) -> None:
    raw = (samples / "vpcp-sdk__xml_dc0bdef0.edxml").read_bytes()
    start = raw.index(b"<edXML:Reference>")
    end = raw.index(b"</edXML:Reference>") + len(b"</edXML:Reference>")
    doc = edxml.parse_edxml(raw[:start] + raw[end:], max_bytes=len(raw))
    assert [a.name for a in doc.attachments] == ["1896_QD-TTg_m_294779.doc"]


@pytest.mark.parametrize("name", ACCEPTED)
def test_header_is_kept_byte_exact_after_c14n(name: str, samples: Path) -> None:
    raw = (samples / name).read_bytes()
    doc = edxml.parse_edxml(raw, max_bytes=len(raw))
    assert c14n(emptied(doc.header_xml)) == c14n(emptied(raw))
    assert doc.header_xml.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')


def _facts() -> edxml.Facts:
    return edxml.Facts(
        "0190a000-0000-7000-8000-000000000001",
        "M-PARIS",
        "M-HANOI",
        datetime(2026, 12, 1, tzinfo=UTC),
        "",
        "edxml-1",
        "",
        "routine",
        "",
    )


@pytest.mark.parametrize("name", ACCEPTED)
def test_real_file_exports_back_to_the_same_canonical_bytes(
    name: str, samples: Path, tmp_path: Path
) -> None:
    raw = (samples / name).read_bytes()
    doc = _parse(samples / name, tmp_path)
    parts = [(a.name, a.media_type, a.path) for a in doc.attachments]
    out = edxml.build_edxml(doc.header_xml, _facts(), parts)  # type: ignore[arg-type]
    check_layout(out)
    check_layout(raw)  # the checker itself holds for the real file
    assert c14n(emptied(out)) == c14n(emptied(raw))
    assert base64_texts(out) == [b"".join(t.split()) for t in base64_texts(raw)]
    again = edxml.parse_edxml(out, max_bytes=len(out))
    assert [a.sha256 for a in again.attachments] == [a.sha256 for a in doc.attachments]
    assert (again.kind, again.sender, again.recipients) == (doc.kind, doc.sender, doc.recipients)


def test_zipped_parts_from_the_kept_header(samples: Path, tmp_path: Path) -> None:
    for name in (
        "vnpt-edxml102__gen_edoc_new.edxml",
        "more/pvn__uploads_b6e1f29d.edxml",
        "bkav__edoc_new.edxml",
        "pvn__xml_2025_9e272474.edxml",
    ):
        doc = _parse(samples / name, tmp_path)
        paths = [a.path for a in doc.attachments]
        assert edxml.zipped_parts(doc.header_xml, paths) == tuple(  # type: ignore[arg-type]
            i for i, a in enumerate(doc.attachments) if a.zipped
        )
        declared = edxml.declared_parts(doc.header_xml)
        assert [d.name for d in declared] == [a.name for a in doc.attachments]
        assert [d.media_type for d in declared] == [a.media_type for a in doc.attachments]


def test_the_sdk_zip_unzips_to_the_file(samples: Path, tmp_path: Path) -> None:
    doc = _parse(samples / "more/pvn__uploads_b6e1f29d.edxml", tmp_path)
    out = tmp_path / "unzipped"
    out.mkdir()
    assert doc.attachments[0].path is not None
    (entry,) = edxml.unzip_bounded(
        doc.attachments[0].path, out, max_total_bytes=1 << 20, max_entries=4, max_ratio=100
    )
    assert entry.name.endswith(".txt") and entry.path.read_bytes() == b"META A"
