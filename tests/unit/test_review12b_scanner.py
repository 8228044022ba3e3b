"""Review 12b: the scanner's split must not depend on where the 64 KiB reads cut."""

from __future__ import annotations

from gateway.bridges import edxml
from gateway.bridges.edxml.limits import CHUNK_BYTES
from tests.unit.test_edxml_readback import attachment, document

# A whitespace character reference, zero-padded: XML reads it as a line feed and the
# scanner's own _WHITESPACE_REF accepts it (x0*a), but it is longer than _LONGEST_REF.
REF = b"&#x" + b"0" * 20 + b"A;"


def _with_ref_at(cut_offset: int) -> bytes:
    data = document("", attachment("cid:1", "a.bin", "application/octet-stream", b"\0" * 60_000))
    data += b" " * (CHUNK_BYTES + 4096 - len(data))  # room: the content is moved below
    start = data.index(b"ContentTransferEncoded", data.index(b"<Attachment>"))
    start = data.index(b">", start) + 1
    end = data.index(b"</edXML:ContentTransferEncoded>", start)
    content = data[start:end]
    where = CHUNK_BYTES - cut_offset - start  # REF starts cut_offset bytes before a read ends
    return data[:start] + content[:where] + REF + content[where:] + data[end:]


def test_a_zero_padded_whitespace_reference_reads_wherever_the_read_cuts() -> None:
    """Accepted when the reference lies inside one 64 KiB read, refused ('holds a
    reference') when a read ends 12 or more bytes into it: the same document is
    accepted or refused depending on its byte offset. lxml reads it either way."""
    for before_cut in (100, 14):  # inside one read (accepted today), across a cut
        data = _with_ref_at(before_cut)
        doc = edxml.parse_edxml(data, max_bytes=len(data))
        assert doc.attachments[0].data == b"\0" * 60_000, before_cut
