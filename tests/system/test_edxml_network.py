"""edXML across a live network, addressed by organ (issue 12's system test).

HQ serves organ G17, M-PARIS G22 (Văn phòng Chính phủ, the sender of the SDK's
samples), M-HANOI H41 and H14. Real documents from ../shared/edxml-samples, read in
place, go in at M-PARIS's HTTP API with no Valise-To: they are routed by To/OrganId,
delivered with receipts, exported at M-HANOI in the real layout (the same canonical
bytes as the file sent), the SDK's ZIP offered unzipped beside the original, and a
status message from M-HANOI goes back to M-PARIS's inbox by ResponseFor/OrganId.
Bad input is refused with its code and leaves nothing queued and no file behind.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import time
import zipfile
from base64 import b64encode
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from lxml import etree

from gateway.bridges import edxml
from gateway.demo.network import Network
from tests.system.test_http_api import ENV as HTTP_ENV
from tests.system.test_http_api import form, valise
from tests.unit.edxml_support import c14n, check_layout, emptied, samples_dir

WAIT_S = 60.0
MAX_BODY = 24 * 1024 * 1024  # a 12 MiB attachment is 16 MiB of base64: past libxml2's 10 MB
# The organ list reaches the missions when the running HQ takes up the directory
# `valise organ add` published (its key watcher's tick, [keys] check_seconds) and they
# fetch it (a directory poll): every second each here, not every minute (that minute
# was most of this module's setup).
ENV = {
    **HTTP_ENV,
    "VALISE_HTTP_MAX_BODY_BYTES": str(MAX_BODY),
    "VALISE_RELAY_DIRECTORY_POLL_SECONDS": "1",
    "VALISE_KEYS_CHECK_SECONDS": "1",
}
ORGANS = {
    "000.00.00.G22": "M-PARIS",
    "000.00.00.H41": "M-HANOI",
    "000.00.00.H14": "M-HANOI",
    "000.00.00.G17": "HQ",
}


@dataclass
class Net:
    net: Network
    tokens: dict[str, str]
    samples: Path

    def url(self, site: str, path: str) -> str:
        return f"http://127.0.0.1:{self.net.sites[site].ports['http']}{path}"

    def auth(self, site: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[site]}"}

    def folder(self, site: str) -> str:
        return str(self.net.sites[site].directory)


def organ_list(site_dir: str) -> dict[str, str]:
    out = valise("organ", "list", "--json", "--dir", site_dir)
    assert out.returncode == 0, out.stderr
    return {o["organ"]: o["site"] for o in json.loads(out.stdout)}


def wait_for(what: str, test: Any) -> None:
    deadline = time.monotonic() + WAIT_S
    while not test():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    samples = samples_dir()
    with Network(tmp_path_factory.mktemp("edxml-net"), env=ENV) as network:
        hq = str(network.sites["HQ"].directory)
        for organ, site in ORGANS.items():
            out = valise("organ", "add", organ, "--site", site, "--dir", hq)
            assert out.returncode == 0, out.stderr
        tokens = {}
        for site in ("M-PARIS", "M-HANOI"):
            made = valise(
                "integrator", "add", "dms", "--json", "--dir", str(network.sites[site].directory)
            )
            assert made.returncode == 0, made.stderr
            tokens[site] = json.loads(made.stdout)["token"]
            folder = str(network.sites[site].directory)
            wait_for(f"{site} to hold the organ list", lambda f=folder: organ_list(f) == ORGANS)
        yield Net(network, tokens, samples)


async def post_edxml(
    s: aiohttp.ClientSession, net: Net, site: str, data: bytes
) -> tuple[int, dict[str, Any]]:
    headers = {**net.auth(site), "Content-Type": edxml.MEDIA_TYPE}
    body = io.BytesIO(data)
    async with s.post(net.url(site, "/v1/documents"), data=body, headers=headers) as r:
        return r.status, await r.json()


async def get_json(s: aiohttp.ClientSession, net: Net, site: str, path: str) -> Any:
    async with s.get(net.url(site, path), headers=net.auth(site)) as r:
        assert r.status == 200, await r.text()
        return await r.json()


async def wait_inbox(s: aiohttp.ClientSession, net: Net, site: str, mid: str) -> dict[str, Any]:
    deadline = time.monotonic() + WAIT_S
    while True:
        async with s.get(net.url(site, f"/v1/inbox/{mid}"), headers=net.auth(site)) as r:
            if r.status == 200:
                item: dict[str, Any] = await r.json()
                return item
        assert time.monotonic() < deadline, f"{mid} never reached the {site} inbox"
        await asyncio.sleep(0.2)


async def wait_delivered(s: aiohttp.ClientSession, net: Net, mid: str) -> dict[str, Any]:
    deadline = time.monotonic() + WAIT_S
    while True:
        info: dict[str, Any] = await get_json(s, net, "M-PARIS", f"/v1/documents/{mid}")
        if info["status"] == "delivered":
            return info
        assert time.monotonic() < deadline, f"{mid} not delivered: {info}"
        await asyncio.sleep(0.2)


def canonical_without_base64(data: bytes) -> bytes:
    return c14n(emptied(data))


async def test_an_organ_addressed_document_is_delivered_and_exported_as_sent(net: Net) -> None:
    sent = (net.samples / "vnpt-edxml102__gen_edoc_new.edxml").read_bytes()  # To H41
    async with aiohttp.ClientSession() as s:
        status, body = await post_edxml(s, net, "M-PARIS", sent)
        assert status == 202, body
        mid = body["id"]
        info = await wait_delivered(s, net, mid)
        assert [d["site"] for d in info["destinations"]] == ["M-HANOI"], info
        item = await wait_inbox(s, net, "M-HANOI", mid)
        assert item["kind"] == "new" and item["from"] == "M-PARIS"
        assert item["edxml_header"]["document_id"] == "000.00.00.G22,2015/09/30,7816/VPCP-TTĐT"
        async with s.get(
            net.url("M-HANOI", f"/v1/inbox/{mid}?format=edxml"), headers=net.auth("M-HANOI")
        ) as r:
            assert r.status == 200 and r.content_type == edxml.MEDIA_TYPE
            back = await r.read()
    check_layout(back)
    assert canonical_without_base64(back) == canonical_without_base64(sent)
    original = edxml.parse_edxml(sent, max_bytes=len(sent))
    exported = edxml.parse_edxml(back, max_bytes=len(back))
    assert [a.data for a in exported.attachments] == [a.data for a in original.attachments]
    listed = valise("inbox", "list", "--json", "--dir", net.folder("M-HANOI"))
    assert any(row["id"] == mid and row["kind"] == "new" for row in json.loads(listed.stdout))


async def test_a_circular_by_organ_and_the_sdk_zip_offered_unzipped(net: Net) -> None:
    # To H41, H14 (both M-HANOI) and G17 (HQ): two destinations, one copy each.
    sent = (net.samples / "vpcp-sdk__xml_dc0bdef0.edxml").read_bytes()
    doc = edxml.parse_edxml(sent, max_bytes=len(sent))
    (zipped,) = doc.attachments
    assert zipped.zipped
    inner = zipfile.ZipFile(io.BytesIO(zipped.data))
    (entry,) = inner.infolist()
    async with aiohttp.ClientSession() as s:
        status, body = await post_edxml(s, net, "M-PARIS", sent)
        assert status == 202, body
        mid = body["id"]
        info = await wait_delivered(s, net, mid)
        assert sorted(d["site"] for d in info["destinations"]) == ["HQ", "M-HANOI"]
        item = await wait_inbox(s, net, "M-HANOI", mid)
        part = item["parts"][0]
        assert part["name"] == zipped.name and part["unzipped"].endswith("/parts/0/unzipped")
        assert "unzipped" not in item["parts"][1]  # the kept header
        async with s.get(net.url("M-HANOI", part["href"]), headers=net.auth("M-HANOI")) as r:
            assert await r.read() == zipped.data  # the original, as sent: the ZIP
        async with s.get(net.url("M-HANOI", part["unzipped"]), headers=net.auth("M-HANOI")) as r:
            assert r.status == 200, await r.text()
            assert await r.read() == inner.read(entry)
            assert Path(entry.filename).name in r.headers["Content-Disposition"]
        async with s.get(
            net.url("M-HANOI", f"/v1/inbox/{mid}/parts/1/unzipped"), headers=net.auth("M-HANOI")
        ) as r:
            assert r.status == 404


async def test_a_status_goes_back_to_the_origin_of_the_document(net: Net) -> None:
    # From H41 (M-HANOI), ResponseFor/OrganId G22 (M-PARIS), no To.
    sent = (net.samples / "vpcp-sdk__status.edxml").read_bytes()
    async with aiohttp.ClientSession() as s:
        status, body = await post_edxml(s, net, "M-HANOI", sent)
        assert status == 202, body
        mid = body["id"]
        item = await wait_inbox(s, net, "M-PARIS", mid)
        assert item["kind"] == "status" and item["class"] == "edxml-status"
        assert item["to"] == ["M-PARIS"] and item["from"] == "M-HANOI"
        header = item["edxml_header"]
        assert header["status_code"] == "01"
        assert header["response_for"] == {
            "organ_id": "000.00.00.G22",
            "code": "7816/VPCP-TTĐT",
            "document_id": "000.00.00.G22,2015/09/30,7816/VPCP-TTĐT",
        }
        async with s.get(
            net.url("M-PARIS", f"/v1/inbox/{mid}?format=edxml"), headers=net.auth("M-PARIS")
        ) as r:
            back = await r.read()
    check_layout(back)
    assert canonical_without_base64(back) == canonical_without_base64(sent)


def _bomb_document(template: bytes) -> bytes:
    """The SDK sample with its ZIP replaced by a ZIP of 20 MB of zeros named as the
    attachment (ratio about 1000: past the bound of 200)."""
    doc = edxml.parse_edxml(template, max_bytes=len(template))
    (att,) = doc.attachments
    raw = io.BytesIO()
    with zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(att.name, b"\0" * (20 * 1024 * 1024))
    root = etree.fromstring(template)
    (content,) = root.iter(f"{{{edxml.NS}}}ContentTransferEncoded")
    content.text = b64encode(raw.getvalue()).decode()
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def _nowhere_document(template: bytes) -> bytes:
    """A Reference naming a ContentId no Attachment has."""
    return template.replace(
        b"<edXML:ContentId>cid:209</edXML:ContentId>",
        b"<edXML:ContentId>cid:999</edXML:ContentId>",
        1,
    )


async def test_bad_edxml_is_refused_and_leaves_nothing(net: Net) -> None:
    template = (net.samples / "vpcp-sdk__xml_dc0bdef0.edxml").read_bytes()
    unknown = (net.samples / "bkav__edoc_new.edxml").read_bytes()  # To 000.00.01.A53
    jmeter = (net.samples / "more" / "vpcp-sdk__edoc.edxml").read_bytes()  # not well-formed
    assert b"cid:999" in _nowhere_document(template)

    def queued() -> list[str]:
        out = valise("queue", "list", "--all", "--json", "--dir", net.folder("M-PARIS"))
        assert out.returncode == 0, out.stderr
        return sorted(q["id"] for q in json.loads(out.stdout))

    before = queued()
    work = net.net.sites["M-PARIS"].directory / ".http-tmp"
    cases = [
        (jmeter, 400, "malformed_edxml", "not well-formed"),
        (_nowhere_document(template), 400, "malformed_edxml", "cid:999"),
        (_bomb_document(template), 422, "unsafe_attachment", "1896_QD-TTg_m_294779.doc"),
        (unknown, 422, "unknown_organ", "no site serves organ 000.00.01.A53"),
    ]
    async with aiohttp.ClientSession() as s:
        for data, code, name, says in cases:
            status, body = await post_edxml(s, net, "M-PARIS", data)
            assert (status, body["code"]) == (code, name), body
            assert says in body["message"], body
    assert queued() == before
    assert work.is_dir()
    assert not list(work.iterdir()), "files left in the work folder"


async def test_a_multipart_document_is_exported_with_a_made_header_naming_organs(net: Net) -> None:
    files = [("cong-van.pdf", "application/pdf", b"%PDF-1.4 made header\n")]
    meta = {"to": ["M-HANOI"], "subject": "Về việc", "class": "edxml-2", "dossier": "45/BNG"}
    async with aiohttp.ClientSession() as s:
        async with s.post(
            net.url("M-PARIS", "/v1/documents"), data=form(meta, files), headers=net.auth("M-PARIS")
        ) as r:
            assert r.status == 202, await r.text()
            mid = (await r.json())["id"]
        item = await wait_inbox(s, net, "M-HANOI", mid)
        assert item["kind"] is None and item["edxml_header"] is None
        async with s.get(
            net.url("M-HANOI", f"/v1/inbox/{mid}?format=edxml"), headers=net.auth("M-HANOI")
        ) as r:
            back = await r.read()
    root = check_layout(back)
    doc = edxml.parse_edxml(back, max_bytes=len(back))
    assert doc.sender.organ_id == "000.00.00.G22"  # M-PARIS's first organ
    assert [p.organ_id for p in doc.recipients] == ["000.00.00.H41"]  # M-HANOI's first
    assert doc.document_type == "2" and (doc.code_number, doc.code_notation) == ("45", "BNG")
    assert doc.promulgation_date is not None and doc.due_date is not None
    assert doc.document_id.startswith("000.00.00.G22,") and doc.kind is edxml.Kind.NEW
    texts = {etree.QName(e).localname: (e.text or "") for e in root.iter() if len(e) == 0}
    assert "/" in texts["PromulgationDate"] and "-" not in texts["PromulgationDate"]
    for name in ("SteeringType", "Timestamp", "FullName", "BussinessDocType"):
        assert name in texts, name
    assert mid in back.decode()  # the Valise message id is findable (TraceHeaderList)
    assert [a.data for a in doc.attachments] == [files[0][2]]


async def test_a_12_mib_attachment_streams_through_the_api(net: Net, tmp_path: Path) -> None:
    big = os.urandom(12 * 1024 * 1024)
    template = (net.samples / "vnpt-edxml102__gen_edoc_new.edxml").read_bytes()
    root = etree.fromstring(template)
    first = next(root.iter(f"{{{edxml.NS}}}ContentTransferEncoded"))
    first.text = b64encode(big).decode()
    data = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    assert len(data) > 16 * 1024 * 1024
    async with aiohttp.ClientSession() as s:
        status, body = await post_edxml(s, net, "M-PARIS", data)
        assert status == 202, body
        item = await wait_inbox(s, net, "M-HANOI", body["id"])
        async with s.get(
            net.url("M-HANOI", item["parts"][0]["href"]), headers=net.auth("M-HANOI")
        ) as r:
            got = await r.read()
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(big).hexdigest()
