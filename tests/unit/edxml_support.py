"""Helpers for the edXML tests: the real samples (read in place, never copied) and a
structural check of the real layout, written from the real files."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from lxml import etree

from gateway.bridges import edxml

NS = edxml.NS
CTE = "ContentTransferEncoded"


def samples_dir() -> Path:
    """../shared/edxml-samples beside the repository (CI's layout) or /work/shared.
    Skips when missing outside CI; fails in CI (CI=true)."""
    here = Path(__file__).resolve().parents[2]
    for candidate in (
        os.environ.get("VALISE_EDXML_SAMPLES"),
        here.parent / "shared" / "edxml-samples",
        Path("/work/shared/edxml-samples"),
    ):
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    if os.environ.get("CI") == "true":
        pytest.fail("the edXML samples folder ../shared/edxml-samples is missing in CI")
    pytest.skip("the edXML samples folder ../shared/edxml-samples is not here")


def big_parser() -> etree.XMLParser:
    """For tests only: reads the samples whole, as a reference to compare with."""
    return etree.XMLParser(huge_tree=True, remove_comments=True, resolve_entities=False)


def local(el: etree._Element) -> str:
    return etree.QName(el).localname


def c14n(root: etree._Element) -> bytes:
    return etree.tostring(root, method="c14n", with_comments=False)


def emptied(data: bytes) -> etree._Element:
    """The document with every ContentTransferEncoded's text removed."""
    root = etree.fromstring(data, big_parser())
    for el in root.iter(f"{{{NS}}}{CTE}", CTE):
        el.text = None
    return root


def base64_texts(data: bytes) -> list[bytes]:
    """Each ContentTransferEncoded's text, found without an XML parser."""
    return [
        m.group(1)
        for m in re.finditer(rb"<(?:[\w.-]+:)?ContentTransferEncoded(?:\s[^>]*)?>([^<]*)</", data)
    ]


# Written from the real files: the SDK builder's outputs (vpcp-sdk__xml_dc0bdef0,
# vnpt-edxml102__gen_edoc_new) and every other sample.
ATTACHMENT_ORDER = ["ContentId", "AttachmentName", "Description", "ContentType", CTE]
REFERENCE_ORDER = ["ContentId", "ContentType", "Description", "AttachmentName"]
_START_TAG = re.compile(
    rb"<([A-Za-z_][^\s/>]*)((?:\s+[^\s=/>]+\s*=\s*(?:\"[^\"]*\"|'[^']*'))*)\s*/?>"
)
_ATTR = re.compile(rb"([^\s=]+)\s*=")


def is_subsequence(names: list[str], order: list[str]) -> bool:
    it = iter(order)
    return all(any(n == o for o in it) for n in names)


def check_layout(data: bytes) -> etree._Element:
    """Assert ``data`` has the real layout; its root."""
    for tag in _START_TAG.finditer(data):
        attrs = _ATTR.findall(tag.group(2))
        declared = [a for a in attrs if a == b"xmlns" or a.startswith(b"xmlns:")]
        assert len(declared) == len(set(declared)), f"namespace declared twice: {tag.group()!r}"
        assert len(attrs) == len(set(attrs)), f"attribute twice: {tag.group()!r}"
    root = etree.fromstring(data, big_parser())
    assert root.tag == f"{{{NS}}}edXML" and root.prefix is None
    assert root.nsmap == {None: NS}
    kids = [c for c in root if isinstance(c.tag, str)]
    assert kids and kids[0].tag == f"{{{NS}}}edXMLEnvelope" and kids[0].prefix == "edXML"
    assert [local(k) for k in kids[1:]] in ([], ["AttachmentEncoded"])
    envelope = kids[0]
    assert not [e for e in envelope.iter() if local(e) == "AttachmentEncoded"]
    for k in kids[1:]:
        assert k.prefix is None
        for att in k:
            names = [local(c) for c in att]
            assert local(att) == "Attachment" and att.prefix is None
            assert names[-1] == CTE and is_subsequence(names, ATTACHMENT_ORDER), names
            content = att[-1]
            assert content.prefix == "edXML" and content.tag == f"{{{NS}}}{CTE}"
    raw_ctes = re.findall(rb"<edXML:ContentTransferEncoded[^>]*>", data)
    assert all(b'xmlns:edXML="' + NS.encode() + b'"' in t for t in raw_ctes)
    for ref in envelope.iter(f"{{{NS}}}Reference"):
        parent = ref.getparent()
        if parent is not None and local(parent) == "edXMLManifest":  # not the XML-DSig Reference
            assert is_subsequence([local(c) for c in ref], REFERENCE_ORDER)
    return root
