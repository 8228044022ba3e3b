"""Review of issue 12 (edXML): failing tests for what the review found.

Each test is one finding of /tmp/h/review12.md; it fails on the code reviewed and
passes once the finding is fixed (whichever way: refusing at submission, or making
the receiver agree with the sender).
"""

from __future__ import annotations

import base64
import contextlib
import struct
import zlib
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.bridges import edxml
from gateway.bridges.edxml import scanner
from gateway.bridges.edxml.reader import cid_key
from gateway.bridges.edxml.skeleton import load_header

NS = edxml.NS


def zip_with_empty_entry_name(data: bytes = b"hello") -> bytes:
    """A stored ZIP of one entry whose file name is empty (length 0)."""
    crc = zlib.crc32(data)
    local = (
        struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 0, 0, 0, crc, len(data), len(data), 0, 0)
        + data
    )
    central = struct.pack(
        "<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, 0, 0, 0, crc, len(data), len(data),
        0, 0, 0, 0, 0, 0, 0,
    )  # fmt: skip
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 1, 1, len(central), len(local), 0)
    return local + central + end


def envelope(manifest: str, encoded: str, root: bool = True) -> bytes:
    head = f"""<edXML:edXMLEnvelope xmlns:edXML="{NS}">
 <edXML:edXMLHeader><edXML:MessageHeader>
  <edXML:From><edXML:OrganId>000.00.00.G22</edXML:OrganId></edXML:From>
  <edXML:To><edXML:OrganId>000.00.00.H41</edXML:OrganId></edXML:To>
  <edXML:Subject>review 12</edXML:Subject>
 </edXML:MessageHeader></edXML:edXMLHeader>
 <edXML:edXMLBody><edXML:edXMLManifest version="1.0">{manifest}</edXML:edXMLManifest>"""
    if root:
        return (
            f'<?xml version="1.0" encoding="UTF-8"?>\n<edXML xmlns="{NS}">{head}'
            f"</edXML:edXMLBody></edXML:edXMLEnvelope>"
            f"<AttachmentEncoded>{encoded}</AttachmentEncoded></edXML>"
        ).encode()
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n{head}'
        f"<edXML:AttachmentEncoded>{encoded}</edXML:AttachmentEncoded>"
        "</edXML:edXMLBody></edXML:edXMLEnvelope>"
    ).encode()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def facts() -> edxml.Facts:
    return edxml.Facts("m", "M-PARIS", "M-HANOI", datetime.now(UTC), "", "edxml", "", "routine", "")


# F3: a ZIP whose entry has an empty name makes zipfile's ZipInfo.is_dir() raise
# IndexError, which is_wrapped_zip does not catch: a 500 at submission, and (once
# such a part is delivered) a crash of every inbox listing at the receiver.


def test_is_wrapped_zip_survives_an_entry_without_a_name() -> None:
    data = zip_with_empty_entry_name()
    assert edxml.is_wrapped_zip(data, "a.pdf", ["application/zip"]) in (True, False)


def test_parse_raises_only_edxml_error_for_a_zip_without_entry_name() -> None:
    enc = (
        "<Attachment><ContentId>cid:1</ContentId><AttachmentName>a.pdf</AttachmentName>"
        f"<ContentType>application/zip</ContentType><edXML:ContentTransferEncoded "
        f'xmlns:edXML="{NS}">{b64(zip_with_empty_entry_name())}</edXML:ContentTransferEncoded>'
        "</Attachment>"
    )
    data = envelope("", enc)
    with contextlib.suppress(edxml.EdxmlError):  # refused in its own words: fine
        edxml.parse_edxml(data, max_bytes=len(data))


# F2: reader.py (at submission) and skeleton.py (at the receiver) pair an Attachment
# with a manifest Reference differently: the receiver's by_cid counts References
# that hold their own content and takes the last one; the sender skips those. So the
# receiver reads another name and other declared types for the same part.

POISON = envelope(
    "<edXML:Reference><edXML:ContentId>cid:1</edXML:ContentId>"
    "<edXML:AttachmentName>a.zip</edXML:AttachmentName></edXML:Reference>"
    "<edXML:Reference><edXML:ContentId>cid:1</edXML:ContentId>"
    "<edXML:AttachmentName>b.pdf</edXML:AttachmentName>"
    f"<edXML:ContentTransferEncoded>{b64(b'%PDF-1.4 plain')}</edXML:ContentTransferEncoded>"
    "</edXML:Reference>",
    "<Attachment><ContentId>cid:1</ContentId><ContentType>application/octet-stream</ContentType>"
    f'<edXML:ContentTransferEncoded xmlns:edXML="{NS}">{b64(zip_with_empty_entry_name())}'
    "</edXML:ContentTransferEncoded></Attachment>",
)


def _bomb(name: str = "x.bin") -> bytes:
    import io
    import zipfile

    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(name, b"\0" * (4 * 1024 * 1024))  # ratio ~1000, past UNZIP_MAX_RATIO
    return out.getvalue()


UNCHECKED_ZIP = envelope(
    "<edXML:Reference><edXML:ContentId>cid:1</edXML:ContentId>"
    "<edXML:ContentType>application/zip</edXML:ContentType>"
    "<edXML:AttachmentName>cover.txt</edXML:AttachmentName>"
    f"<edXML:ContentTransferEncoded>{b64(b'cover')}</edXML:ContentTransferEncoded>"
    "</edXML:Reference>",
    "<Attachment><ContentId>cid:1</ContentId><AttachmentName>report.pdf</AttachmentName>"
    "<ContentType>application/pdf</ContentType>"
    f'<edXML:ContentTransferEncoded xmlns:edXML="{NS}">{b64(_bomb())}'
    "</edXML:ContentTransferEncoded></Attachment>",
)


@pytest.mark.parametrize("data", [POISON, UNCHECKED_ZIP], ids=["names", "types"])
def test_sender_and_receiver_read_the_same_declared_parts(data: bytes) -> None:
    try:
        doc = edxml.parse_edxml(data, max_bytes=len(data))
    except edxml.EdxmlError:
        return  # refused at submission: nothing reaches a receiver
    declared = edxml.declared_parts(doc.header_xml)
    assert [d.name for d in declared] == [a.name for a in doc.attachments]
    assert [d.declared_types for d in declared] == [a.declared_types for a in doc.attachments]


def test_a_part_not_zip_checked_at_submission_is_not_zipped_at_the_receiver() -> None:
    # Since review 12c the Reference's own content and the Attachment may not share a
    # ContentId: refused at submission, nothing reaches a receiver.
    with pytest.raises(edxml.EdxmlError, match="two attachments have ContentId"):
        edxml.parse_edxml(UNCHECKED_ZIP, max_bytes=len(UNCHECKED_ZIP))
    data = UNCHECKED_ZIP.replace(
        b"<ContentId>cid:1</ContentId><AttachmentName>report",
        b"<ContentId>cid:2</ContentId><AttachmentName>report",
    )
    doc = edxml.parse_edxml(data, max_bytes=len(data))
    sender = tuple(i for i, a in enumerate(doc.attachments) if a.zipped)
    receiver = edxml.zipped_parts(doc.header_xml, [a.content or b"" for a in doc.attachments])
    assert receiver == sender


# F5: the kept header is the parsed tree serialised again; escaping ('>' -> '&gt;')
# makes it up to four times the markup it came from, past MAX_HEADER_BYTES, which is
# what the receiver accepts: a document accepted at submission whose header the
# receiver cannot read (kind, zipped parts and the sender's header lost on export).


def test_the_receiver_reads_back_every_header_the_sender_accepted() -> None:
    data = envelope(
        "",
        '<Attachment note="' + ">" * (3 * 1024 * 1024) + '"><ContentId>cid:1</ContentId>'
        f'<edXML:ContentTransferEncoded xmlns:edXML="{NS}">{b64(b"x")}'
        "</edXML:ContentTransferEncoded></Attachment>",
    )
    try:
        doc = edxml.parse_edxml(data, max_bytes=len(data))
    except edxml.EdxmlError:
        return  # refused at submission: fine
    assert len(edxml.declared_parts(doc.header_xml)) == 1


# F6: load_header (the receiver's export) refuses DTDs by a byte regex only; a kept
# header in UTF-16 carries a DOCTYPE and entity declarations past it, and the export
# then writes undefined entity references (a document no parser reads).


def test_a_kept_header_in_utf16_with_a_dtd_is_refused() -> None:
    doc = (
        '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE edXML [<!ENTITY e "x">]>'
        f'<edXML xmlns="{NS}"><edXMLEnvelope><edXMLHeader><MessageHeader>'
        "<From><OrganId>G</OrganId></From><To><OrganId>H</OrganId></To>"
        "<Subject>&e;</Subject></MessageHeader></edXMLHeader></edXMLEnvelope></edXML>"
    ).encode("utf-16")
    with pytest.raises(edxml.EdxmlError):
        load_header(doc)


# F4: an older kept header (a bare edXMLEnvelope) is re-wrapped on export by giving
# the n-th part the n-th manifest Reference's ContentId; parts are in the order of
# their content, not of the manifest. The export then says cid:1 is the contract
# and carries the invoice under cid:1: attachment substitution at the receiver.


def test_export_of_a_bare_envelope_keeps_each_content_id_with_its_content() -> None:
    contract, invoice = b"AAAA contract", b"BBBB invoice"
    sent = envelope(
        "<edXML:Reference><edXML:ContentId>cid:1</edXML:ContentId>"
        "<edXML:ContentType>application/pdf</edXML:ContentType>"
        "<edXML:AttachmentName>contract.pdf</edXML:AttachmentName></edXML:Reference>"
        "<edXML:Reference><edXML:ContentId>cid:2</edXML:ContentId>"
        "<edXML:ContentType>application/pdf</edXML:ContentType>"
        "<edXML:AttachmentName>invoice.pdf</edXML:AttachmentName></edXML:Reference>",
        "<edXML:Attachment><edXML:ContentId>cid:2</edXML:ContentId><edXML:ContentTransferEncoded>"
        f"{b64(invoice)}</edXML:ContentTransferEncoded></edXML:Attachment>"
        "<edXML:Attachment><edXML:ContentId>cid:1</edXML:ContentId><edXML:ContentTransferEncoded>"
        f"{b64(contract)}</edXML:ContentTransferEncoded></edXML:Attachment>",
        root=False,
    )
    doc = edxml.parse_edxml(sent, max_bytes=len(sent))
    by_cid = {cid_key(a.content_id): a.content for a in doc.attachments}
    assert by_cid == {"1": contract, "2": invoice}
    out = edxml.build_edxml(
        doc.header_xml, facts(), [(a.name, a.media_type, a.content or b"") for a in doc.attachments]
    )
    back = edxml.parse_edxml(out, max_bytes=len(out))
    assert {cid_key(a.content_id): a.content for a in back.attachments} == by_cid


# F7: the scanner holds an unfinished start tag and scans it again from its first
# byte on every 64 KiB chunk; attribute quotes are walked in Python, so a 4 MiB tag
# of short attributes costs ~64 full walks (seconds of CPU per request). Counted,
# not timed: the number of quote searches should grow linearly with the tag.


class _Counting:
    def __init__(self, pattern: object) -> None:
        self.pattern, self.calls = pattern, 0

    def search(self, *args: object) -> object:
        self.calls += 1
        return self.pattern.search(*args)  # type: ignore[attr-defined]


def test_an_unfinished_tag_is_not_rescanned_for_every_chunk(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    attributes = 100_000
    tag = (
        b'<edXML xmlns="'
        + NS.encode()
        + b'"'
        + b"".join(b' a%d=""' % i for i in range(attributes))
        + b"/>"
    )
    counting = _Counting(scanner._TAG_STOP)
    monkeypatch.setattr(scanner, "_TAG_STOP", counting)
    source = tmp_path / "in.edxml"
    source.write_bytes(b'<?xml version="1.0" encoding="UTF-8"?>' + tag)
    with pytest.raises(edxml.EdxmlError):
        edxml.parse_edxml_file(source, tmp_path, max_attachments=1)
    assert counting.calls <= 2 * attributes + 100, counting.calls
