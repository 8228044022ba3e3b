"""The streaming edXML parser: big attachments to disk, every limit at N and N+1,
the hardening kept, errors typed and one line, nothing left behind on refusal."""

from __future__ import annotations

import base64
import hashlib
import os
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from gateway.bridges import edxml
from gateway.bridges.edxml import limits
from gateway.bridges.edxml.scanner import Splitter
from tests.unit.edxml_support import check_layout

NS = edxml.NS
HEAD = f"""<?xml version="1.0" encoding="UTF-8"?>
<edXML xmlns="{NS}">
  <edXML:edXMLEnvelope xmlns:edXML="{NS}">
    <edXML:edXMLHeader><edXML:MessageHeader>
      <edXML:From><edXML:OrganId>000.00.00.G22</edXML:OrganId><edXML:OrganName>VPCP</edXML:OrganName></edXML:From>
      <edXML:To><edXML:OrganId>000.00.00.H41</edXML:OrganId></edXML:To>
      <edXML:DocumentId>000.00.00.G22,2026/12/01,1/VPCP</edXML:DocumentId>
      <edXML:Subject>Big</edXML:Subject>{{extra}}
    </edXML:MessageHeader></edXML:edXMLHeader>
    <edXML:edXMLBody><edXML:edXMLManifest version="1.0">{{refs}}</edXML:edXMLManifest>
    </edXML:edXMLBody>
  </edXML:edXMLEnvelope>
  <AttachmentEncoded>""".encode()


def ref(n: int) -> str:
    return (
        f"<edXML:Reference><edXML:ContentId>cid:{n}</edXML:ContentId>"
        f"<edXML:ContentType>application/pdf</edXML:ContentType>"
        f"<edXML:AttachmentName>f{n}.pdf</edXML:AttachmentName></edXML:Reference>"
    )


def attachment(n: int, b64: bytes) -> bytes:
    return (
        (
            f"<Attachment><ContentId>cid:{n}</ContentId><AttachmentName>f{n}.pdf</AttachmentName>"
            "<ContentType>application/pdf</ContentType>"
            f'<edXML:ContentTransferEncoded xmlns:edXML="{NS}">'
        ).encode()
        + b64
        + b"</edXML:ContentTransferEncoded></Attachment>"
    )


def document(datas: list[bytes], extra: str = "", wrap: bool = False) -> bytes:
    head = HEAD.replace(b"{extra}", extra.encode()).replace(
        b"{refs}", "".join(ref(n) for n in range(1, len(datas) + 1)).encode()
    )
    body = b"".join(
        attachment(n, base64.encodebytes(d) if wrap else base64.b64encode(d))
        for n, d in enumerate(datas, start=1)
    )
    return head + body + b"</AttachmentEncoded></edXML>"


def parse(data: bytes, out: Path, **kw: int) -> edxml.EdxmlDocument:
    source = out / "in.edxml"
    source.write_bytes(data)
    folder = out / "parts"
    folder.mkdir(exist_ok=True)
    try:
        return edxml.parse_edxml_file(source, folder, max_attachments=kw.get("max_attachments", 8))
    finally:
        source.unlink()


def test_an_attachment_over_libxml2s_text_limit_streams_to_disk(tmp_path: Path) -> None:
    payload = os.urandom(12 * 1024 * 1024)  # 16 MiB of base64: one text node > 10 MB
    source = tmp_path / "big.edxml"
    with open(source, "wb") as f:
        f.write(document([b"x"]).split(b"eA==")[0])
        for i in range(0, len(payload), 3 * 65536):
            f.write(base64.b64encode(payload[i : i + 3 * 65536]))
        f.write(b"</edXML:ContentTransferEncoded></Attachment></AttachmentEncoded></edXML>")
    # libxml2 without huge-tree mode refuses it whole: the reason for streaming.
    with pytest.raises(etree.XMLSyntaxError):
        etree.fromstring(source.read_bytes(), etree.XMLParser(huge_tree=False))
    out = tmp_path / "parts"
    out.mkdir()
    tracemalloc.start()
    try:
        doc = edxml.parse_edxml_file(source, out, max_attachments=1)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    (a,) = doc.attachments
    assert a.size == len(payload) and a.sha256 == hashlib.sha256(payload).hexdigest()
    assert peak < 2 * 1024 * 1024, peak  # chunks, never the attachment
    # And back out, streamed from the file, to the same bytes.
    exported = tmp_path / "out.edxml"
    with open(exported, "wb") as f:
        edxml.write_edxml(f, doc.header_xml, _facts(), [(a.name, a.media_type, a.path)])  # type: ignore[list-item]
    again = tmp_path / "again"
    again.mkdir()
    back = edxml.parse_edxml_file(exported, again, max_attachments=1)
    assert back.attachments[0].sha256 == a.sha256


def _facts() -> edxml.Facts:
    from datetime import UTC, datetime

    return edxml.Facts("m", "M-PARIS", "M-HANOI", datetime.now(UTC), "", "edxml", "", "routine", "")


def test_line_wrapped_base64_and_whitespace_references(tmp_path: Path) -> None:
    data = os.urandom(5000)
    wrapped = document([data], wrap=True)
    assert parse(wrapped, tmp_path).attachments[0].data == data
    crlf = base64.encodebytes(data).replace(b"\n", b"&#13;&#10;")
    doc = parse(document([b"y"]).replace(base64.b64encode(b"y"), crlf), tmp_path)
    assert doc.attachments[0].data == data


@pytest.mark.parametrize("size", [0, 1, 2, 3, 4, 100, 65535, 65536, 65537, 200_000])
def test_sizes_around_the_chunk_boundary(size: int, tmp_path: Path) -> None:
    data = os.urandom(size)
    doc = parse(document([data, b"tail"]), tmp_path)
    assert [a.data for a in doc.attachments] == [data, b"tail"]


@pytest.mark.parametrize(
    ("mutate", "why"),
    [
        (lambda b: b.replace(b"ZGF0YQ==", b"ZGF0YQ=!"), "not base64"),
        (lambda b: b.replace(b"ZGF0YQ==", b"ZGF0YQ==QUJD"), "after its padding|not base64"),
        (lambda b: b.replace(b"ZGF0YQ==", b"ZGF0YQ"), "truncated"),
        (lambda b: b.replace(b"ZGF0YQ==", b"ZGF0<b/>YQ=="), "holds markup"),
        (lambda b: b.replace(b"ZGF0YQ==", b"ZGF0<!-- c -->YQ=="), "holds markup"),
        (lambda b: b.replace(b"ZGF0YQ==", b"ZGF0&amp;YQ=="), "reference"),
        (lambda b: b.replace(b"ZGF0YQ==", b"<![CDATA[ZGF0YQ==]]>"), "holds markup"),
        (lambda b: b.split(b"ZGF0YQ==")[0] + b"ZGF0", "ends inside ContentTransferEncoded"),
        (lambda b: b"<!DOCTYPE edXML>" + b, "DTD"),
        (lambda b: b.replace(b"<edXML:Subject>", b'<!ENTITY x "y"><edXML:Subject>'), "DTD"),
        (lambda b: b.replace(b"<edXML:Subject>", b"<!ELEMENT x ANY><edXML:Subject>"), "DTD"),
        (
            lambda b: b.replace(
                b"<edXML:Subject>", b"<!ATTLIST x y CDATA #IMPLIED><edXML:Subject>"
            ),
            "DTD",
        ),
        (lambda b: b.replace(b"Big", b"&ent;"), "not well-formed"),
        (lambda b: b.replace(b'encoding="UTF-8"', b'encoding="ISO-8859-1"'), "UTF-8"),
        (lambda b: b.decode().encode("utf-16"), "UTF-8"),
        (lambda b: b.replace(b"</edXML>", b""), "not well-formed"),
        (lambda b: b + b"<again/>", "not well-formed"),
        (
            lambda b: b.replace(b"<AttachmentEncoded>", b"<AttachmentEncoded><Wrong>").replace(
                b"</AttachmentEncoded>", b"</Wrong></AttachmentEncoded>"
            ),
            "outside an Attachment",
        ),
        (
            lambda b: b.replace(b"cid:1</ContentId>", b"cid:2</ContentId>"),
            "points to no attachment",
        ),
        (lambda b: b.replace(b"<edXML:OrganId>000.00.00.H41</edXML:OrganId>", b""), "To/OrganId"),
        (lambda b: b.replace(b"<edXML:OrganId>000.00.00.G22</edXML:OrganId>", b""), "From/OrganId"),
        (
            lambda b: b.replace(
                f'xmlns:edXML="{NS}">\n    <edXML:edXMLHeader>'.encode(),
                b'xmlns:edXML="urn:x">\n    <edXML:edXMLHeader>',
            ),
            "edXMLEnvelope",
        ),
        (lambda b: b"", "empty"),
    ],
)
def test_malformed_documents_are_refused_and_leave_nothing(
    mutate: Callable[[bytes], bytes], why: str, tmp_path: Path
) -> None:
    good = document([b"data"])
    assert b"ZGF0YQ==" in good
    with pytest.raises(edxml.EdxmlError, match=why) as err:
        parse(mutate(good), tmp_path)
    assert "\n" not in str(err.value)
    assert list((tmp_path / "parts").iterdir()) == []


def test_a_bad_second_attachment_deletes_the_first(tmp_path: Path) -> None:
    data = document([os.urandom(300_000), b"data"]).replace(b"ZGF0YQ==", b"ZGF0YQ=!")
    with pytest.raises(edxml.EdxmlError, match="attachment 2"):
        parse(data, tmp_path)
    assert list((tmp_path / "parts").iterdir()) == []


def test_status_kinds_are_validated(tmp_path: Path) -> None:
    status = f"""<edXML xmlns="{NS}"><edXML:edXMLEnvelope xmlns:edXML="{NS}"><edXML:edXMLHeader>
<edXML:MessageHeader><edXML:From><edXML:OrganId>H41</edXML:OrganId></edXML:From>
{{to}}<edXML:ResponseFor><edXML:OrganId>{{organ}}</edXML:OrganId><edXML:Code>1/X</edXML:Code>
<edXML:DocumentId>{{doc}}</edXML:DocumentId></edXML:ResponseFor>
<edXML:StatusCode>03</edXML:StatusCode></edXML:MessageHeader></edXML:edXMLHeader>
</edXML:edXMLEnvelope></edXML>"""

    def make(to: str = "", organ: str = "G22", doc: str = "G22,2026/01/01,1/X") -> bytes:
        return status.replace("{to}", to).replace("{organ}", organ).replace("{doc}", doc).encode()

    ok = parse(make(), tmp_path)
    assert ok.kind is edxml.Kind.STATUS and edxml.dossier(ok) == "1/X"
    for bad, why in (
        (make(organ=""), "ResponseFor/OrganId"),
        (make(doc=""), "ResponseFor/DocumentId"),
        (make(to="<edXML:To><edXML:OrganId>X</edXML:OrganId></edXML:To>"), "no MessageHeader/To"),
    ):
        with pytest.raises(edxml.EdxmlError, match=why):
            parse(bad, tmp_path)
    business = document([b"data"]).replace(
        b"</edXML:MessageHeader>",
        b"</edXML:MessageHeader><edXML:TraceHeaderList><edXML:Bussiness>"
        b"<edXML:BussinessDocType>7</edXML:BussinessDocType></edXML:Bussiness></edXML:TraceHeaderList>",
    )
    with pytest.raises(edxml.EdxmlError, match="BussinessDocType '7'"):
        parse(business, tmp_path)


@pytest.mark.parametrize("n", [limits.MAX_ATTACHMENTS - 1, limits.MAX_ATTACHMENTS])
def test_max_attachments_n_and_n_plus_one(n: int, tmp_path: Path) -> None:
    data = document([b"d"] * n)
    assert len(parse(data, tmp_path, max_attachments=limits.MAX_ATTACHMENTS).attachments) == n
    with pytest.raises(edxml.EdxmlError, match=f"more than {n - 1} attachments"):
        parse(data, tmp_path, max_attachments=n - 1)
    assert len(list((tmp_path / "parts").iterdir())) == n  # the accepted run's files only


def _elements(n: int) -> bytes:
    """A well-formed (non-edXML) document of exactly n elements."""
    return b"<a>" + b"<b/>" * (n - 1) + b"</a>"


def test_element_count_n_and_n_plus_one(tmp_path: Path) -> None:
    with pytest.raises(edxml.EdxmlError, match="expected an edXML"):
        parse(_elements(limits.MAX_ELEMENTS), tmp_path)
    with pytest.raises(edxml.EdxmlError, match=f"more than {limits.MAX_ELEMENTS} elements"):
        parse(_elements(limits.MAX_ELEMENTS + 1), tmp_path)


def test_depth_n_and_n_plus_one(tmp_path: Path) -> None:
    deep = limits.MAX_DEPTH
    with pytest.raises(edxml.EdxmlError, match="expected an edXML"):
        parse(b"<a>" * deep + b"</a>" * deep, tmp_path)
    with pytest.raises(edxml.EdxmlError, match=f"deeper than {deep}"):
        parse(b"<a>" * (deep + 1) + b"</a>" * (deep + 1), tmp_path)


def test_header_text_n_and_n_plus_one(tmp_path: Path) -> None:
    base = document([b"data"])
    room = limits.MAX_HEADER_TEXT_CHARS - sum(
        len(t) for t in etree.fromstring(base).itertext() if "ZGF0" not in t
    )
    fits = base.replace(b"<edXML:Subject>Big", b"<edXML:Subject>Big" + b"x" * room)
    assert parse(fits, tmp_path).subject.startswith("Bigx")
    over = base.replace(b"<edXML:Subject>Big", b"<edXML:Subject>Big" + b"x" * (room + 1))
    with pytest.raises(edxml.EdxmlError, match="characters of header text"):
        parse(over, tmp_path)


def test_header_bytes_are_bounded(tmp_path: Path) -> None:
    comment = b"<!--" + b"c" * limits.MAX_HEADER_BYTES + b"-->"
    with pytest.raises(edxml.EdxmlError, match=str(limits.MAX_HEADER_BYTES)):
        parse(
            document([b"data"]).replace(b"<AttachmentEncoded>", comment + b"<AttachmentEncoded>"),
            tmp_path,
        )


def test_comments_and_processing_instructions_are_ignored(tmp_path: Path) -> None:
    data = document([b"data"]).replace(
        b"<edXML:Subject>", b"<!-- note --><?app do-something?><edXML:Subject>"
    )
    doc = parse(data, tmp_path)
    assert (
        doc.subject == "Big"
        and b"note" not in doc.header_xml
        and b"do-something" not in doc.header_xml
    )


def test_no_entity_expansion_and_no_network(tmp_path: Path) -> None:
    xxe = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "http://127.0.0.1:9/x">]><x>&e;</x>'
    with pytest.raises(edxml.EdxmlError, match="DTD"):
        parse(xxe, tmp_path)
    external = document([b"data"]).replace(b"Big", b"&xxe;")
    with pytest.raises(edxml.EdxmlError, match="not well-formed"):
        parse(external, tmp_path)


def test_files_are_created_exclusively(tmp_path: Path) -> None:
    doc = parse(document([b"one", b"two"]), tmp_path)
    paths = [a.path for a in doc.attachments]
    assert len({p for p in paths}) == 2 and all(p and p.parent == tmp_path / "parts" for p in paths)
    assert all(p and (p.stat().st_mode & 0o777) == 0o600 for p in paths)


class Recorder:
    def __init__(self) -> None:
        self.out: list[tuple[str, bytes]] = []

    def markup(self, data: bytes) -> None:
        self._add("m", data)

    def open_content(self) -> None:
        self.out.append(("open", b""))

    def content(self, data: bytes) -> None:
        self._add("c", data)

    def close_content(self) -> None:
        self.out.append(("close", b""))

    def _add(self, kind: str, data: bytes) -> None:
        if self.out and self.out[-1][0] == kind:
            self.out[-1] = (kind, self.out[-1][1] + data)
        else:
            self.out.append((kind, data))


def _split(data: bytes, cuts: list[int]) -> list[tuple[str, bytes]]:
    rec = Recorder()
    splitter = Splitter(rec, max_pending=1 << 20)
    last = 0
    for cut in sorted(set(c % (len(data) + 1) for c in cuts)):
        splitter.feed(data[last:cut])
        last = cut
    splitter.feed(data[last:])
    splitter.close()
    return rec.out


SAMPLE = (
    document([b"some data here", b""])
    .replace(
        b"<edXML:Subject>", b'<!-- a > b --><![CDATA[<x>]]><?pi "?><edXML:Subject a=">" b=\'"\'>'
    )
    .replace(b"c29tZSBk", b"c29t&#13;&#x0A;ZSBk")  # whitespace references in the base64
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, len(SAMPLE)), max_size=12))
def test_splitting_is_the_same_whatever_the_chunks(cuts: list[int]) -> None:
    whole = _split(SAMPLE, [])
    assert _split(SAMPLE, cuts) == whole
    assert [k for k, _ in whole].count("open") == 2
    assert [d for k, d in whole if k == "c"] == [base64.b64encode(b"some data here")]


PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
VALID = document([b"%PDF-1 body", b"second"])


def _only_typed(data: bytes, folder: Path) -> None:
    try:
        doc = edxml.parse_edxml(data, max_bytes=1 << 20, out_dir=folder)
    except edxml.EdxmlError as exc:
        assert str(exc) and "\n" not in str(exc)
        assert list(folder.iterdir()) == []
    else:
        for a in doc.attachments:
            assert a.path is not None
            a.path.unlink()


@PROPERTY
@given(st.integers(0, len(VALID) - 1), st.binary(max_size=24), st.integers(0, 24))
def test_mutated_streams_raise_only_edxml_error(
    tmp_path_factory: pytest.TempPathFactory, at: int, insert: bytes, cut: int
) -> None:
    _only_typed(VALID[:at] + insert + VALID[at + cut :], tmp_path_factory.mktemp("p"))


@PROPERTY
@given(st.binary(max_size=1024))
def test_any_bytes_raise_only_edxml_error(
    tmp_path_factory: pytest.TempPathFactory, data: bytes
) -> None:
    _only_typed(data, tmp_path_factory.mktemp("p"))


def test_export_of_a_streamed_document_has_the_real_layout(tmp_path: Path) -> None:
    doc = parse(document([b"a", b"bb"]), tmp_path)
    out = edxml.build_edxml(
        doc.header_xml, _facts(), [(a.name, a.media_type, a.data) for a in doc.attachments]
    )
    check_layout(out)


def test_splitting_byte_by_byte_and_at_every_cut_is_the_same() -> None:
    # The scan of an unfinished token resumes where it stopped (review 12 F7): feeding
    # one byte at a time, or cutting once anywhere, must not change the split.
    whole = _split(SAMPLE, [])
    assert _split(SAMPLE, list(range(len(SAMPLE)))) == whole
    for cut in range(len(SAMPLE)):
        assert _split(SAMPLE, [cut]) == whole, cut


def test_an_unfinished_comment_is_not_searched_from_its_start_again() -> None:
    # Counted through the bytes each search is handed, not timed.
    searched: list[int] = []

    class Buf(bytes):
        def find(self, sub: bytes, start: int = 0, *rest: int) -> int:  # type: ignore[override]
            if sub == b"-->":
                searched.append(len(self) - start)
            return super().find(sub, start, *rest)

    rec = Recorder()
    splitter = Splitter(rec, max_pending=1 << 20)
    splitter._buf = Buf(b"<!--")
    chunk = b"-" * 1000
    for _ in range(100):
        splitter._buf = Buf(splitter._buf + chunk)  # what feed() does, with Buf kept
        splitter._run(final=False)
    assert sum(searched) < 3 * 100 * len(chunk), sum(searched)
    splitter.feed(b">")
    assert rec.out[-1][0] == "m" and rec.out[-1][1].endswith(b"--->")
